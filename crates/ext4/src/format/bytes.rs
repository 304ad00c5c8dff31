//! Bounds-checked little-endian field reads and writes.
//!
//! All on-disk fields are read through [`Reader`] and written through [`Writer`], whose accessors
//! return [`FormatError::Truncated`] instead of panicking when an offset runs past the buffer.
//! Format code never indexes disk bytes directly.

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

/// A mutable view of one on-disk structure, for encoders that patch fields in place.
#[derive(Debug)]
pub(crate) struct Writer<'a> {
    buf: &'a mut [u8],
    at: Location,
}

impl<'a> Writer<'a> {
    /// Wrap `buf`, which holds the structure at `at`.
    pub(crate) fn new(buf: &'a mut [u8], at: Location) -> Self {
        Self { buf, at }
    }

    /// Length of the buffer.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// A read-only view of the same bytes.
    pub(crate) fn reader(&self) -> Reader<'_> {
        Reader::new(self.buf, self.at)
    }

    /// Mutable bytes `offset..offset + len`, or `Truncated`.
    pub(crate) fn bytes_mut(&mut self, offset: usize, len: usize) -> Result<&mut [u8]> {
        let len_bytes = self.buf.len() as u64;
        let at = self.at;
        let end = offset.checked_add(len);
        match end.and_then(|end| self.buf.get_mut(offset..end)) {
            Some(slice) => Ok(slice),
            None => Err(FormatError::Truncated {
                at,
                needed_bytes: (offset as u64).saturating_add(len as u64),
                len_bytes,
            }),
        }
    }

    /// Copy `data` to `offset`.
    pub(crate) fn put(&mut self, offset: usize, data: &[u8]) -> Result<()> {
        self.bytes_mut(offset, data.len())?.copy_from_slice(data);
        Ok(())
    }

    /// A byte at `offset`.
    pub(crate) fn u8(&mut self, offset: usize, value: u8) -> Result<()> {
        self.put(offset, &[value])
    }

    /// A little-endian u16 at `offset`.
    pub(crate) fn le16(&mut self, offset: usize, value: u16) -> Result<()> {
        self.put(offset, &value.to_le_bytes())
    }

    /// A little-endian u32 at `offset`.
    pub(crate) fn le32(&mut self, offset: usize, value: u32) -> Result<()> {
        self.put(offset, &value.to_le_bytes())
    }

    /// Require the buffer to hold at least `len` bytes.
    pub(crate) fn require(&self, len: usize) -> Result<()> {
        self.reader().require(len)
    }

    /// A `FieldOutOfRange` error at this location (a value the format cannot hold).
    pub(crate) fn out_of_range(
        &self,
        field: &'static str,
        value: u64,
        reason: &'static str,
    ) -> FormatError {
        self.reader().out_of_range(field, value, reason)
    }
}

/// The low 16 bits of `value` (the `_lo` half of a split field).
pub(crate) fn lo16(value: u32) -> u16 {
    (value & 0xFFFF) as u16
}

/// The high 16 bits of `value` (the `_hi` half of a split field).
pub(crate) fn hi16(value: u32) -> u16 {
    (value >> 16) as u16
}

/// The low 32 bits of `value`.
pub(crate) fn lo32(value: u64) -> u32 {
    (value & 0xFFFF_FFFF) as u32
}

/// The high 32 bits of `value`.
pub(crate) fn hi32(value: u64) -> u32 {
    (value >> 32) as u32
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

    #[test]
    fn writes_past_the_end_are_truncated_errors() {
        let mut buf = [0u8; 3];
        let mut w = Writer::new(&mut buf, Location::Superblock);
        w.le16(1, 0x0302).unwrap();
        assert!(matches!(
            w.le16(2, 1),
            Err(FormatError::Truncated {
                needed_bytes: 4,
                len_bytes: 3,
                ..
            })
        ));
        assert!(w.le32(usize::MAX, 1).is_err());
        assert_eq!(buf, [0, 2, 3]);
        assert_eq!((lo16(0x1234_5678), hi16(0x1234_5678)), (0x5678, 0x1234));
        assert_eq!((lo32(0x1_0000_0002), hi32(0x1_0000_0002)), (2, 1));
    }
}
