//! [`DataPage`]: the newest contents of one 4 KiB data block while they live only in memory.
//!
//! A buffered write makes one page per block it touches and never changes it afterwards: a
//! later write of the same block makes a new page (copying the old one first only when it
//! covers part of the block). So a page is shared, by reference count and without copies, by
//! everyone who needs those bytes at once: the running transaction, an operation's undo
//! record, a commit or data sync writing it, and readers while it is not home. That
//! immutability is also what makes pages *stable*: bytes handed to the device (and, in
//! `data=journal`, checksummed into a journal tag) cannot change in flight.
//!
//! # Where the memory comes from
//! A page is made in the device's arena while the mount's budget of arena pages for data
//! lasts ([`PageSource`]): a commit or data sync then hands the same memory to the device as
//! a shared buffer ([`aios_device::SharedBuf`]), so a written byte is copied once, from the
//! caller into the page. Past the budget (or without an arena: the offline tools) a page is
//! made on the heap, and the write to the device copies it into the arena first. The budget
//! keeps dirty data from taking the arena the page cache and the journal need.
//!
//! # Invariants
//! - A page holds exactly [`BLOCK_SIZE`] bytes, set once when it is made.
//! - An arena page counts against its source's budget from when it is made until it drops.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aios_device::{Arena, SharedBuf, BLOCK_SIZE};

/// See the module documentation.
#[derive(Debug)]
pub struct DataPage {
    mem: Mem,
}

#[derive(Debug)]
enum Mem {
    /// In the arena; `live` is the source's count of such pages.
    Arena {
        buf: Arc<SharedBuf>,
        live: Arc<AtomicUsize>,
    },
    Heap(Box<[u8]>),
}

impl DataPage {
    /// The page's 4 KiB.
    pub fn bytes(&self) -> &[u8] {
        match &self.mem {
            Mem::Arena { buf, .. } => buf.bytes(),
            Mem::Heap(bytes) => bytes,
        }
    }

    /// The page as a buffer of `arena` a write command can name: the page itself when it
    /// lives there, else a copy (`None` when the arena has no free page).
    pub fn shared(&self, arena: &Arc<Arena>) -> Option<Arc<SharedBuf>> {
        match &self.mem {
            Mem::Arena { buf, .. } if buf.is_of(arena) => Some(Arc::clone(buf)),
            _ => {
                let mut buf = arena.alloc(1).ok()?;
                arena.bytes_mut(&mut buf).copy_from_slice(self.bytes());
                Some(Arc::new(SharedBuf::new(arena, buf)))
            }
        }
    }

    /// True if the page lives in an arena (a write names it without a copy).
    pub fn in_arena(&self) -> bool {
        matches!(self.mem, Mem::Arena { .. })
    }
}

impl Drop for DataPage {
    fn drop(&mut self) {
        if let Mem::Arena { live, .. } = &self.mem {
            live.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Where a mount's new data pages come from (see the module documentation).
#[derive(Debug, Clone)]
pub struct PageSource {
    arena: Option<Arc<Arena>>,
    /// Arena pages made by this source and alive.
    live: Arc<AtomicUsize>,
    budget_pages: usize,
}

impl PageSource {
    /// Pages on the heap only.
    pub fn heap() -> PageSource {
        PageSource {
            arena: None,
            live: Arc::new(AtomicUsize::new(0)),
            budget_pages: 0,
        }
    }

    /// Pages in `arena`, at most `budget_pages` alive at once, then on the heap.
    pub fn arena(arena: Arc<Arena>, budget_pages: usize) -> PageSource {
        PageSource {
            arena: Some(arena),
            live: Arc::new(AtomicUsize::new(0)),
            budget_pages,
        }
    }

    /// Arena pages of this source alive now.
    pub fn arena_pages(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// A page of `base` (zeros when `None`: a block just allocated) with `src` written at byte
    /// `at`. Copies each byte once: `base` only where `src` does not cover it.
    ///
    /// # Panics
    /// If `base` is not one block long or `src` does not fit at `at` (callers compute both
    /// from block boundaries).
    pub fn build(&self, base: Option<&[u8]>, at: usize, src: &[u8]) -> Arc<DataPage> {
        assert!(
            at + src.len() <= BLOCK_SIZE && base.is_none_or(|b| b.len() == BLOCK_SIZE),
            "page of {at}+{} bytes over a base of {:?}",
            src.len(),
            base.map(<[u8]>::len)
        );
        if let Some(page) = self.build_in_arena(base, at, src) {
            return page;
        }
        let bytes: Box<[u8]> = if src.len() == BLOCK_SIZE {
            // Written whole: nothing of `base` survives.
            Box::from(src)
        } else {
            let mut bytes = vec![0u8; BLOCK_SIZE].into_boxed_slice();
            fill(&mut bytes, base, at, src);
            bytes
        };
        Arc::new(DataPage {
            mem: Mem::Heap(bytes),
        })
    }

    /// A page holding a copy of `bytes` (one block).
    pub fn copy_of(&self, bytes: &[u8]) -> Arc<DataPage> {
        self.build(None, 0, bytes)
    }

    fn build_in_arena(&self, base: Option<&[u8]>, at: usize, src: &[u8]) -> Option<Arc<DataPage>> {
        let arena = self.arena.as_ref()?;
        if self.live.fetch_add(1, Ordering::Relaxed) >= self.budget_pages {
            self.live.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let Ok(mut buf) = arena.alloc(1) else {
            self.live.fetch_sub(1, Ordering::Relaxed);
            return None;
        };
        fill(arena.bytes_mut(&mut buf), base, at, src);
        Some(Arc::new(DataPage {
            mem: Mem::Arena {
                buf: Arc::new(SharedBuf::new(arena, buf)),
                live: Arc::clone(&self.live),
            },
        }))
    }
}

/// Fills the 4 KiB `page`: `src` at `at`, the rest from `base` (zeros if `None`).
fn fill(page: &mut [u8], base: Option<&[u8]>, at: usize, src: &[u8]) {
    let end = at + src.len();
    if src.len() != BLOCK_SIZE {
        match base {
            Some(base) => {
                copy(page, base, ..at);
                copy(page, base, end..);
            }
            None => {
                zero(page, ..at);
                zero(page, end..);
            }
        }
    }
    if let Some(dst) = page.get_mut(at..end) {
        dst.copy_from_slice(src);
    }
}

fn copy<R: std::slice::SliceIndex<[u8], Output = [u8]> + Clone>(
    page: &mut [u8],
    from: &[u8],
    r: R,
) {
    if let (Some(dst), Some(src)) = (page.get_mut(r.clone()), from.get(r)) {
        dst.copy_from_slice(src);
    }
}

fn zero<R: std::slice::SliceIndex<[u8], Output = [u8]>>(page: &mut [u8], r: R) {
    if let Some(dst) = page.get_mut(r) {
        dst.fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::PageSource;
    use aios_device::{Arena, BLOCK_SIZE};
    use std::sync::Arc;

    fn sources() -> Vec<(PageSource, Arc<Arena>)> {
        let arena = Arc::new(Arena::new(4 * BLOCK_SIZE).unwrap());
        vec![
            (PageSource::heap(), Arc::clone(&arena)),
            (PageSource::arena(Arc::clone(&arena), 2), arena),
        ]
    }

    #[test]
    fn a_partial_write_keeps_the_rest_of_its_base() {
        for (source, _) in sources() {
            let base = vec![7u8; BLOCK_SIZE];
            let page = source.build(Some(&base), 100, &[1, 2, 3]);
            assert_eq!(&page.bytes()[99..104], &[7, 1, 2, 3, 7]);
            assert_eq!(page.bytes().len(), BLOCK_SIZE);
            assert!(page.bytes()[104..].iter().all(|&b| b == 7));
        }
    }

    #[test]
    fn a_fresh_block_is_zero_outside_the_write() {
        for (source, arena) in sources() {
            // Leave garbage in the arena page the source will reuse.
            let mut junk = arena.alloc(1).unwrap();
            arena.bytes_mut(&mut junk).fill(0xee);
            arena.free(junk);
            let page = source.build(None, BLOCK_SIZE - 2, &[9, 9]);
            assert!(page.bytes()[..BLOCK_SIZE - 2].iter().all(|&b| b == 0));
            assert_eq!(&page.bytes()[BLOCK_SIZE - 2..], &[9, 9]);
        }
    }

    #[test]
    fn a_whole_block_write_copies_only_the_source() {
        for (source, _) in sources() {
            let src: Vec<u8> = (0..BLOCK_SIZE).map(|i| i as u8).collect();
            assert_eq!(source.copy_of(&src).bytes(), &src[..]);
        }
    }

    #[test]
    fn arena_pages_stay_within_the_budget_and_return_when_dropped() {
        let arena = Arc::new(Arena::new(4 * BLOCK_SIZE).unwrap());
        let source = PageSource::arena(Arc::clone(&arena), 2);
        let zeros = [0u8; BLOCK_SIZE];
        let pages: Vec<_> = (0..3).map(|_| source.copy_of(&zeros)).collect();
        assert_eq!(
            pages.iter().map(|p| p.in_arena()).collect::<Vec<_>>(),
            [true, true, false]
        );
        assert_eq!((source.arena_pages(), arena.free_pages()), (2, 2));
        // The device gets the arena page itself, and a copy of the heap one.
        let own = pages[0].shared(&arena).unwrap();
        let copy = pages[2].shared(&arena).unwrap();
        assert_eq!(arena.free_pages(), 1);
        drop((own, copy, pages));
        assert_eq!((source.arena_pages(), arena.free_pages()), (0, 4));
    }
}
