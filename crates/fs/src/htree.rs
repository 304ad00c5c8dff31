//! htree (`dir_index`) interior blocks: recognising them and verifying their `dx_tail`.
//!
//! # Role
//! Lookups here scan every directory block linearly, which is correct for indexed directories
//! too: names live only in leaf blocks. The interior blocks must be recognised and skipped, and
//! under `metadata_csum` their checksums verified:
//!
//! | Block | Layout (byte offsets) |
//! | --- | --- |
//! | `dx_root` (logical block 0) | `.` dirent (12 bytes), `..` dirent with `rec_len` to the block end, `dx_root_info` at `0x18` (`info_length` at `0x1D`), `dx_countlimit` after it, then `dx_entry`s |
//! | `dx_node` | fake dirent: inode 0, `rec_len` = block size, at `0x00`; `dx_countlimit` at `0x08`, then `dx_entry`s |
//! | `dx_tail` | after `limit` 8-byte entries: `dt_reserved` (4), `dt_checksum` (4) |
//!
//! The checksum is `crc32c_raw(inode seed, block[..count_offset + count * 8])`, continued over
//! `dt_reserved` and four zero bytes (the kernel's `ext4_dx_csum`).
//!
//! This belongs with the other format decoders in `aios-ext4`; it lives here until that crate
//! grows htree support.

use aios_ext4::format::csum::crc32c_raw;
use aios_ext4::{FormatError, Location};

use crate::FsError;

/// Offset of `dx_root_info` in a `dx_root` block.
const DX_ROOT_INFO: usize = 0x18;
/// Offset of `info_length` within `dx_root_info`.
const DX_ROOT_INFO_LENGTH: usize = 0x5;
/// Offset of `dx_countlimit` in a `dx_node` block.
const DX_NODE_COUNTLIMIT: usize = 0x8;
/// Size of one `dx_entry` (and of `dx_countlimit`, which takes the first entry's hash slot).
const DX_ENTRY_SIZE_BYTES: usize = 8;
/// Size of `dx_tail`.
const DX_TAIL_SIZE_BYTES: usize = 8;
/// Offset of `dt_checksum` within `dx_tail`.
const DX_TAIL_CHECKSUM: usize = 4;

/// Which interior block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DxKind {
    Root,
    Node,
}

/// True if `block` starts with the fake dirent of a `dx_node` (inode 0, `rec_len` = the block).
/// An empty leaf without a checksum tail looks the same and holds no names either.
pub(crate) fn looks_like_dx_node(block: &[u8]) -> bool {
    le32(block, 0) == Some(0) && le16(block, 4).map(usize::from) == Some(block.len())
}

/// Verifies the `dx_tail` checksum of an interior block of directory `ino`.
pub(crate) fn verify_dx_tail(
    block: &[u8],
    kind: DxKind,
    at: Location,
    inode_csum_seed: u32,
) -> Result<(), FsError> {
    let corrupt = |what| FsError::Corrupt { at, what };
    let count_offset = match kind {
        DxKind::Root => {
            let info_len = block
                .get(DX_ROOT_INFO + DX_ROOT_INFO_LENGTH)
                .ok_or(corrupt("dx_root truncated"))?;
            DX_ROOT_INFO + usize::from(*info_len)
        }
        DxKind::Node => DX_NODE_COUNTLIMIT,
    };
    let limit = le16(block, count_offset).ok_or(corrupt("dx_countlimit truncated"))?;
    let count = le16(block, count_offset + 2).ok_or(corrupt("dx_countlimit truncated"))?;
    let (limit, count) = (usize::from(limit), usize::from(count));
    let tail = count_offset + limit * DX_ENTRY_SIZE_BYTES;
    if count > limit || tail + DX_TAIL_SIZE_BYTES > block.len() {
        return Err(corrupt("dx_countlimit count/limit do not fit the block"));
    }
    let covered = block
        .get(..count_offset + count * DX_ENTRY_SIZE_BYTES)
        .ok_or(corrupt("dx entries truncated"))?;
    let reserved = block
        .get(tail..tail + DX_TAIL_CHECKSUM)
        .ok_or(corrupt("dx_tail truncated"))?;
    let stored = le32(block, tail + DX_TAIL_CHECKSUM).ok_or(corrupt("dx_tail truncated"))?;
    let crc = crc32c_raw(inode_csum_seed, covered);
    let crc = crc32c_raw(crc, reserved);
    let computed = crc32c_raw(crc, &[0; 4]);
    if computed != stored {
        return Err(FormatError::ChecksumMismatch {
            at,
            expected: computed,
            found: stored,
        }
        .into());
    }
    Ok(())
}

fn le16(block: &[u8], off: usize) -> Option<u16> {
    let b = block.get(off..off.checked_add(2)?)?;
    <[u8; 2]>::try_from(b).ok().map(u16::from_le_bytes)
}

fn le32(block: &[u8], off: usize) -> Option<u32> {
    let b = block.get(off..off.checked_add(4)?)?;
    <[u8; 4]>::try_from(b).ok().map(u32::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: Location = Location::DirBlock { ino: 12, block: 99 };
    const SEED: u32 = 0x1234_5678;

    /// A `dx_node` with `count` of `limit` entries and a correct tail.
    fn dx_node(limit: u16, count: u16) -> Vec<u8> {
        let mut block = vec![0u8; 4096];
        block[4..6].copy_from_slice(&4096u16.to_le_bytes());
        block[8..10].copy_from_slice(&limit.to_le_bytes());
        block[10..12].copy_from_slice(&count.to_le_bytes());
        for i in 1..usize::from(count) {
            block[8 + i * 8] = i as u8;
        }
        let tail = 8 + usize::from(limit) * 8;
        let crc = crc32c_raw(SEED, &block[..8 + usize::from(count) * 8]);
        let crc = crc32c_raw(crc32c_raw(crc, &block[tail..tail + 4]), &[0; 4]);
        block[tail + 4..tail + 8].copy_from_slice(&crc.to_le_bytes());
        block
    }

    #[test]
    fn a_dx_node_is_recognised_and_its_tail_verified() {
        let block = dx_node(510, 3);
        assert!(looks_like_dx_node(&block));
        verify_dx_tail(&block, DxKind::Node, AT, SEED).unwrap();
        let mut bad = block.clone();
        bad[17] ^= 1;
        assert!(matches!(
            verify_dx_tail(&bad, DxKind::Node, AT, SEED),
            Err(FsError::Format(FormatError::ChecksumMismatch {
                at: AT,
                ..
            }))
        ));
        // Bytes past `count` entries are not covered, as in the kernel.
        let mut unused = block;
        unused[8 + 5 * 8] ^= 1;
        verify_dx_tail(&unused, DxKind::Node, AT, SEED).unwrap();
    }

    #[test]
    fn impossible_count_and_limit_are_corrupt_not_panics() {
        let mut block = dx_node(510, 3);
        block[8..10].copy_from_slice(&600u16.to_le_bytes());
        assert!(matches!(
            verify_dx_tail(&block, DxKind::Node, AT, SEED),
            Err(FsError::Corrupt { .. })
        ));
        block[8..10].copy_from_slice(&2u16.to_le_bytes());
        assert!(matches!(
            verify_dx_tail(&block, DxKind::Node, AT, SEED),
            Err(FsError::Corrupt { .. })
        ));
        assert!(verify_dx_tail(&[0u8; 10], DxKind::Root, AT, SEED).is_err());
        assert!(!looks_like_dx_node(&[0u8; 3]));
    }
}
