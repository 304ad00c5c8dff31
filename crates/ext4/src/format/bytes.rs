//! Bounds-checked little-endian field reads.
//!
//! All on-disk fields are read through [`Reader`], whose accessors return [`FormatError::Truncated`]
//! instead of panicking when an offset runs past the buffer. Format code never indexes disk bytes
//! directly.

use crate::error::{FormatError, Location, Result};

/// A view of one on-disk structure, tagged with where it came from for error messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    at: Location,
}

impl<'a> Reader<'a> {
    /// Wrap `buf`, which holds the structure at `at`.
    pub(crate) fn new(buf: &'a [u8], at: Location) -> Self {
        Self { buf, at }
    }

    /// The location used in errors.
    pub(crate) fn at(&self) -> Location {
        self.at
    }

    /// Bytes `offset..offset + len`, or `Truncated`.
    pub(crate) fn bytes(&self, offset: usize, len: usize) -> Result<&'a [u8]> {
        let end = offset.checked_add(len);
        match end.and_then(|end| self.buf.get(offset..end)) {
            Some(slice) => Ok(slice),
            None => Err(FormatError::Truncated {
                at: self.at,
                needed_bytes: (offset as u64).saturating_add(len as u64),
                len_bytes: self.buf.len() as u64,
            }),
        }
    }

    /// A fixed-size array at `offset`.
    pub(crate) fn array<const N: usize>(&self, offset: usize) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(offset, N)?);
        Ok(out)
    }

    /// A byte at `offset`.
    pub(crate) fn u8(&self, offset: usize) -> Result<u8> {
        Ok(self.array::<1>(offset)?[0])
    }

    /// A little-endian u16 at `offset`.
    pub(crate) fn le16(&self, offset: usize) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(offset)?))
    }

    /// A little-endian u32 at `offset`.
    pub(crate) fn le32(&self, offset: usize) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(offset)?))
    }

    /// Require the buffer to hold at least `len` bytes.
    pub(crate) fn require(&self, len: usize) -> Result<()> {
        self.bytes(0, len).map(|_| ())
    }

    /// A `FieldOutOfRange` error at this location.
    pub(crate) fn out_of_range(
        &self,
        field: &'static str,
        value: u64,
        reason: &'static str,
    ) -> FormatError {
        FormatError::FieldOutOfRange {
            at: self.at,
            field,
            value,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_end_are_truncated_errors() {
        let buf = [1u8, 2, 3];
        let r = Reader::new(&buf, Location::Superblock);
        assert_eq!(r.le16(1).ok(), Some(0x0302));
        assert!(matches!(
            r.le16(2),
            Err(FormatError::Truncated {
                needed_bytes: 4,
                len_bytes: 3,
                ..
            })
        ));
        assert!(r.le32(usize::MAX).is_err());
        assert!(r.bytes(usize::MAX, 2).is_err());
    }
}
