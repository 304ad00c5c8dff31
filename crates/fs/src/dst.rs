//! [`Dst`]: the caller's buffer of one cached read and the file offset it starts at, filled page
//! by page by the read walk (`cached_read.rs`) and by miss runs (`miss.rs`).
//!
//! # Promises
//! - [`Dst::span`] clips every page to the read: a page outside it gets an empty slice.
//!   [`Dst::zero`] fills only the part of a range that lies inside the read.

use aios_device::BLOCK_SIZE;

const BLOCK_BYTES: u64 = BLOCK_SIZE as u64;

/// The caller's buffer and where in the file it starts.
pub(crate) struct Dst<'b> {
    /// File offset of `out[0]`.
    pub offset: u64,
    out: &'b mut [u8],
}

impl<'b> Dst<'b> {
    /// A read into `out` of the file bytes from `offset` on.
    pub fn new(offset: u64, out: &'b mut [u8]) -> Dst<'b> {
        Dst { offset, out }
    }

    /// The file offset just past the read.
    pub fn end(&self) -> u64 {
        self.offset + self.out.len() as u64
    }

    /// The part of file page `page` this read wants: its offset within the page and the
    /// destination bytes (empty if the page lies outside the read).
    pub fn span(&mut self, page: u64) -> (usize, &mut [u8]) {
        let page_start = page.saturating_mul(BLOCK_BYTES);
        let start = page_start.max(self.offset);
        let end = page_start
            .saturating_add(BLOCK_BYTES)
            .min(self.end())
            .max(start);
        let within = (start - page_start) as usize;
        let from = (start - self.offset) as usize;
        let to = (end - self.offset) as usize;
        (within, self.out.get_mut(from..to).unwrap_or_default())
    }

    /// Zero-fills the file range `[from, to)` of the read.
    pub fn zero(&mut self, from: u64, to: u64) {
        let a = from.saturating_sub(self.offset) as usize;
        let b = to.saturating_sub(self.offset) as usize;
        if let Some(dst) = self.out.get_mut(a..b) {
            dst.fill(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Dst;

    #[test]
    fn span_clips_to_the_read() {
        let mut buf = vec![0u8; 5000];
        let mut dst = Dst {
            offset: 4000,
            out: &mut buf,
        };
        let (within, out) = dst.span(0);
        assert_eq!((within, out.len()), (4000, 96));
        let (within, out) = dst.span(1);
        assert_eq!((within, out.len()), (0, 4096));
        let (within, out) = dst.span(2);
        assert_eq!((within, out.len()), (0, 808));
        let (_, out) = dst.span(3);
        assert!(out.is_empty());
        dst.zero(4000, 9000);
        assert!(buf.iter().all(|&b| b == 0));
    }
}
