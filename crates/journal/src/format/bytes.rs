//! Bounds-checked big-endian field access for jbd2 structures.
//!
//! Every read and write goes through `get`/`put` here and fails with
//! [`JournalError::Truncated`] instead of panicking when an offset runs past the buffer.

use crate::error::{JournalError, Location, Result};

fn truncated(at: Location, offset: usize, len: usize, have: usize) -> JournalError {
    JournalError::Truncated {
        at,
        needed_bytes: (offset as u64).saturating_add(len as u64),
        len_bytes: have as u64,
    }
}

/// Bytes `offset..offset + len` of `buf`.
pub(crate) fn slice(buf: &[u8], at: Location, offset: usize, len: usize) -> Result<&[u8]> {
    offset
        .checked_add(len)
        .and_then(|end| buf.get(offset..end))
        .ok_or_else(|| truncated(at, offset, len, buf.len()))
}

/// Mutable bytes `offset..offset + len` of `buf`.
pub(crate) fn slice_mut(
    buf: &mut [u8],
    at: Location,
    offset: usize,
    len: usize,
) -> Result<&mut [u8]> {
    let have = buf.len();
    offset
        .checked_add(len)
        .and_then(|end| buf.get_mut(offset..end))
        .ok_or_else(|| truncated(at, offset, len, have))
}

/// A fixed-size array at `offset`.
pub(crate) fn array<const N: usize>(buf: &[u8], at: Location, offset: usize) -> Result<[u8; N]> {
    let mut out = [0u8; N];
    out.copy_from_slice(slice(buf, at, offset, N)?);
    Ok(out)
}

/// A byte at `offset`.
pub(crate) fn u8_at(buf: &[u8], at: Location, offset: usize) -> Result<u8> {
    Ok(array::<1>(buf, at, offset)?[0])
}

/// A big-endian u16 at `offset`.
pub(crate) fn be16(buf: &[u8], at: Location, offset: usize) -> Result<u16> {
    Ok(u16::from_be_bytes(array(buf, at, offset)?))
}

/// A big-endian u32 at `offset`.
pub(crate) fn be32(buf: &[u8], at: Location, offset: usize) -> Result<u32> {
    Ok(u32::from_be_bytes(array(buf, at, offset)?))
}

/// A big-endian u64 at `offset`.
pub(crate) fn be64(buf: &[u8], at: Location, offset: usize) -> Result<u64> {
    Ok(u64::from_be_bytes(array(buf, at, offset)?))
}

/// Write `bytes` at `offset`.
pub(crate) fn put(buf: &mut [u8], at: Location, offset: usize, bytes: &[u8]) -> Result<()> {
    slice_mut(buf, at, offset, bytes.len())?.copy_from_slice(bytes);
    Ok(())
}

/// Write a big-endian u16 at `offset`.
pub(crate) fn put_be16(buf: &mut [u8], at: Location, offset: usize, v: u16) -> Result<()> {
    put(buf, at, offset, &v.to_be_bytes())
}

/// Write a big-endian u32 at `offset`.
pub(crate) fn put_be32(buf: &mut [u8], at: Location, offset: usize, v: u32) -> Result<()> {
    put(buf, at, offset, &v.to_be_bytes())
}

/// Write a big-endian u64 at `offset`.
pub(crate) fn put_be64(buf: &mut [u8], at: Location, offset: usize, v: u64) -> Result<()> {
    put(buf, at, offset, &v.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_is_truncated_not_panic() {
        let mut buf = [1u8, 2, 3, 4, 5];
        let at = Location::Superblock;
        assert_eq!(be32(&buf, at, 1).unwrap(), 0x0203_0405);
        assert!(matches!(
            be32(&buf, at, 2),
            Err(JournalError::Truncated {
                needed_bytes: 6,
                len_bytes: 5,
                ..
            })
        ));
        assert!(be64(&buf, at, usize::MAX).is_err());
        assert!(put_be32(&mut buf, at, 3, 7).is_err());
        put_be16(&mut buf, at, 3, 0xABCD).unwrap();
        assert_eq!(buf, [1, 2, 3, 0xAB, 0xCD]);
    }
}
