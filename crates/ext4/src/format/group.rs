//! Group descriptors: where each block group keeps its bitmaps and inode table.
//!
//! The descriptor table starts in the block after the superblock; each entry is 32 bytes, or
//! `s_desc_size` (64) bytes with the `64bit` feature, which adds the high halves of every location
//! and count. With `metadata_csum`, `bg_checksum` is the low 16 bits of
//! `crc32c_raw(fs_seed, le32 group || descriptor with bg_checksum zeroed)`
//! (the kernel's `ext4_group_desc_csum`).
//!
//! [`GroupDesc::encode_into`] patches every modelled field back into the raw descriptor (the
//! unmodelled `bg_exclude_bitmap` and reserved bytes are kept) and recomputes `bg_checksum`.
//! The bitmap checksums themselves are computed in [`super::bitmap`].

use super::bytes::{hi16, hi32, lo16, lo32, Reader, Writer};
use super::csum::crc32c_raw;
use crate::error::{FormatError, Location, Result};

// Field offsets (Documentation/filesystems/ext4/group_descr.rst).
const BG_BLOCK_BITMAP_LO: usize = 0x0;
const BG_INODE_BITMAP_LO: usize = 0x4;
const BG_INODE_TABLE_LO: usize = 0x8;
const BG_FREE_BLOCKS_COUNT_LO: usize = 0xC;
const BG_FREE_INODES_COUNT_LO: usize = 0xE;
const BG_USED_DIRS_COUNT_LO: usize = 0x10;
const BG_FLAGS: usize = 0x12;
const BG_BLOCK_BITMAP_CSUM_LO: usize = 0x18;
const BG_INODE_BITMAP_CSUM_LO: usize = 0x1A;
const BG_ITABLE_UNUSED_LO: usize = 0x1C;
/// Offset of `bg_checksum`.
pub const BG_CHECKSUM: usize = 0x1E;
const BG_BLOCK_BITMAP_HI: usize = 0x20;
const BG_INODE_BITMAP_HI: usize = 0x24;
const BG_INODE_TABLE_HI: usize = 0x28;
const BG_FREE_BLOCKS_COUNT_HI: usize = 0x2C;
const BG_FREE_INODES_COUNT_HI: usize = 0x2E;
const BG_USED_DIRS_COUNT_HI: usize = 0x30;
const BG_ITABLE_UNUSED_HI: usize = 0x32;
const BG_BLOCK_BITMAP_CSUM_HI: usize = 0x38;
const BG_INODE_BITMAP_CSUM_HI: usize = 0x3A;
/// Size of a descriptor without `64bit`; the high halves start here.
pub const DESC_SIZE_32_BYTES: usize = 32;

/// `bg_flags`: inode table and bitmap are not initialised.
pub const BG_INODE_UNINIT: u16 = 0x1;
/// `bg_flags`: block bitmap is not initialised.
pub const BG_BLOCK_UNINIT: u16 = 0x2;
/// `bg_flags`: inode table is zeroed.
pub const BG_INODE_ZEROED: u16 = 0x4;

/// One decoded group descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupDesc {
    /// Block group number.
    pub group: u32,
    /// Block of the block bitmap.
    pub block_bitmap_block: u64,
    /// Block of the inode bitmap.
    pub inode_bitmap_block: u64,
    /// First block of the inode table.
    pub inode_table_block: u64,
    /// Free blocks in the group.
    pub free_blocks_count: u32,
    /// Free inodes in the group.
    pub free_inodes_count: u32,
    /// Directories in the group.
    pub used_dirs_count: u32,
    /// Unused inodes at the end of the inode table.
    pub itable_unused: u32,
    /// `bg_flags` (`BG_*`).
    pub flags: u16,
    /// Block bitmap checksum (lo, | hi << 16 with 64-byte descriptors).
    pub block_bitmap_csum: u32,
    /// Inode bitmap checksum.
    pub inode_bitmap_csum: u32,
    /// `bg_checksum` as stored.
    pub checksum: u16,
}

impl GroupDesc {
    /// Decode descriptor `group` from `buf`, which holds exactly `desc_size_bytes` bytes (32, or
    /// 64+ with `64bit`). With `csum_seed = Some(fs seed)` (metadata_csum), verify `bg_checksum`.
    /// Block locations must lie below `blocks_count`.
    pub fn decode(
        buf: &[u8],
        group: u32,
        desc_size_bytes: u16,
        blocks_count: u64,
        csum_seed: Option<u32>,
    ) -> Result<Self> {
        let r = Reader::new(buf, Location::GroupDesc { group });
        let size = usize::from(desc_size_bytes);
        if size < DESC_SIZE_32_BYTES {
            return Err(r.out_of_range(
                "desc_size",
                size as u64,
                "descriptors are at least 32 bytes",
            ));
        }
        let raw = r.bytes(0, size)?;
        let checksum = r.le16(BG_CHECKSUM)?;
        if let Some(seed) = csum_seed {
            let computed = desc_csum(seed, group, raw);
            if computed != checksum {
                return Err(FormatError::ChecksumMismatch {
                    at: r.at(),
                    expected: computed.into(),
                    found: checksum.into(),
                });
            }
        }
        let wide = size > DESC_SIZE_32_BYTES;
        let hi32 = |off: usize| -> Result<u64> {
            Ok(if wide {
                u64::from(r.le32(off)?) << 32
            } else {
                0
            })
        };
        let hi16 = |off: usize| -> Result<u32> {
            Ok(if wide {
                u32::from(r.le16(off)?) << 16
            } else {
                0
            })
        };
        let desc = GroupDesc {
            group,
            block_bitmap_block: u64::from(r.le32(BG_BLOCK_BITMAP_LO)?) | hi32(BG_BLOCK_BITMAP_HI)?,
            inode_bitmap_block: u64::from(r.le32(BG_INODE_BITMAP_LO)?) | hi32(BG_INODE_BITMAP_HI)?,
            inode_table_block: u64::from(r.le32(BG_INODE_TABLE_LO)?) | hi32(BG_INODE_TABLE_HI)?,
            free_blocks_count: u32::from(r.le16(BG_FREE_BLOCKS_COUNT_LO)?)
                | hi16(BG_FREE_BLOCKS_COUNT_HI)?,
            free_inodes_count: u32::from(r.le16(BG_FREE_INODES_COUNT_LO)?)
                | hi16(BG_FREE_INODES_COUNT_HI)?,
            used_dirs_count: u32::from(r.le16(BG_USED_DIRS_COUNT_LO)?)
                | hi16(BG_USED_DIRS_COUNT_HI)?,
            itable_unused: u32::from(r.le16(BG_ITABLE_UNUSED_LO)?) | hi16(BG_ITABLE_UNUSED_HI)?,
            flags: r.le16(BG_FLAGS)?,
            block_bitmap_csum: u32::from(r.le16(BG_BLOCK_BITMAP_CSUM_LO)?)
                | hi16(BG_BLOCK_BITMAP_CSUM_HI)?,
            inode_bitmap_csum: u32::from(r.le16(BG_INODE_BITMAP_CSUM_LO)?)
                | hi16(BG_INODE_BITMAP_CSUM_HI)?,
            checksum,
        };
        for (field, block) in [
            ("bg_block_bitmap", desc.block_bitmap_block),
            ("bg_inode_bitmap", desc.inode_bitmap_block),
            ("bg_inode_table", desc.inode_table_block),
        ] {
            if block == 0 || block >= blocks_count {
                return Err(r.out_of_range(field, block, "block outside the file system"));
            }
        }
        Ok(desc)
    }
}

/// `ext4_group_desc_csum` for `metadata_csum`: low 16 bits of the crc32c over the group number and
/// the descriptor with `bg_checksum` read as zero.
pub fn desc_csum(fs_csum_seed: u32, group: u32, raw: &[u8]) -> u16 {
    let crc = crc32c_raw(fs_csum_seed, &group.to_le_bytes());
    let crc = crc32c_raw(crc, raw.get(..BG_CHECKSUM).unwrap_or(raw));
    let crc = crc32c_raw(crc, &[0, 0]);
    let crc = crc32c_raw(crc, raw.get(BG_CHECKSUM + 2..).unwrap_or_default());
    (crc & 0xFFFF) as u16
}

impl GroupDesc {
    /// Patch this descriptor into `raw` (its `desc_size_bytes`-byte slot, holding the old
    /// descriptor) and, with `csum_seed = Some(fs seed)`, recompute `bg_checksum` into `raw` and
    /// `self.checksum`. Every modelled field is written (locations, counts, flags, bitmap
    /// checksums); high halves only with descriptors larger than 32 bytes, where a value needing
    /// them is `FieldOutOfRange`.
    pub fn encode_into(
        &mut self,
        raw: &mut [u8],
        desc_size_bytes: u16,
        csum_seed: Option<u32>,
    ) -> Result<()> {
        let at = Location::GroupDesc { group: self.group };
        let size = usize::from(desc_size_bytes);
        let mut w = Writer::new(raw, at);
        if size < DESC_SIZE_32_BYTES {
            return Err(w.out_of_range(
                "desc_size",
                size as u64,
                "descriptors are at least 32 bytes",
            ));
        }
        w.require(size)?;
        let wide = size > DESC_SIZE_32_BYTES;
        for (field, lo, hi, value) in [
            (
                "bg_block_bitmap",
                BG_BLOCK_BITMAP_LO,
                BG_BLOCK_BITMAP_HI,
                self.block_bitmap_block,
            ),
            (
                "bg_inode_bitmap",
                BG_INODE_BITMAP_LO,
                BG_INODE_BITMAP_HI,
                self.inode_bitmap_block,
            ),
            (
                "bg_inode_table",
                BG_INODE_TABLE_LO,
                BG_INODE_TABLE_HI,
                self.inode_table_block,
            ),
        ] {
            put_split32(&mut w, field, lo, hi, value, wide)?;
        }
        for (field, lo, hi, value) in [
            (
                "bg_free_blocks_count",
                BG_FREE_BLOCKS_COUNT_LO,
                BG_FREE_BLOCKS_COUNT_HI,
                self.free_blocks_count,
            ),
            (
                "bg_free_inodes_count",
                BG_FREE_INODES_COUNT_LO,
                BG_FREE_INODES_COUNT_HI,
                self.free_inodes_count,
            ),
            (
                "bg_used_dirs_count",
                BG_USED_DIRS_COUNT_LO,
                BG_USED_DIRS_COUNT_HI,
                self.used_dirs_count,
            ),
            (
                "bg_itable_unused",
                BG_ITABLE_UNUSED_LO,
                BG_ITABLE_UNUSED_HI,
                self.itable_unused,
            ),
            (
                "bg_block_bitmap_csum",
                BG_BLOCK_BITMAP_CSUM_LO,
                BG_BLOCK_BITMAP_CSUM_HI,
                self.block_bitmap_csum,
            ),
            (
                "bg_inode_bitmap_csum",
                BG_INODE_BITMAP_CSUM_LO,
                BG_INODE_BITMAP_CSUM_HI,
                self.inode_bitmap_csum,
            ),
        ] {
            put_split16(&mut w, field, lo, hi, value, wide)?;
        }
        w.le16(BG_FLAGS, self.flags)?;
        if let Some(seed) = csum_seed {
            self.checksum = desc_csum(seed, self.group, w.reader().bytes(0, size)?);
            w.le16(BG_CHECKSUM, self.checksum)?;
        }
        Ok(())
    }

    /// The descriptor holds the high 16 bits of the bitmap checksums (it is wider than 32 bytes).
    pub fn has_bitmap_csum_hi(desc_size_bytes: u16) -> bool {
        usize::from(desc_size_bytes) > DESC_SIZE_32_BYTES
    }
}

/// A 64-bit value as le32 lo at `lo` and le32 hi at `hi` (only when `wide`).
fn put_split32(
    w: &mut Writer<'_>,
    field: &'static str,
    lo: usize,
    hi: usize,
    value: u64,
    wide: bool,
) -> Result<()> {
    w.le32(lo, lo32(value))?;
    if wide {
        w.le32(hi, hi32(value))
    } else if hi32(value) != 0 {
        Err(w.out_of_range(field, value, "needs 64-byte descriptors"))
    } else {
        Ok(())
    }
}

/// A 32-bit value as le16 lo at `lo` and le16 hi at `hi` (only when `wide`).
fn put_split16(
    w: &mut Writer<'_>,
    field: &'static str,
    lo: usize,
    hi: usize,
    value: u32,
    wide: bool,
) -> Result<()> {
    w.le16(lo, lo16(value))?;
    if wide {
        w.le16(hi, hi16(value))
    } else if hi16(value) != 0 {
        Err(w.out_of_range(field, value.into(), "needs 64-byte descriptors"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc32() -> Vec<u8> {
        let mut raw = vec![0u8; 32];
        raw[BG_BLOCK_BITMAP_LO..BG_BLOCK_BITMAP_LO + 4].copy_from_slice(&5u32.to_le_bytes());
        raw[BG_INODE_BITMAP_LO..BG_INODE_BITMAP_LO + 4].copy_from_slice(&6u32.to_le_bytes());
        raw[BG_INODE_TABLE_LO..BG_INODE_TABLE_LO + 4].copy_from_slice(&7u32.to_le_bytes());
        raw[BG_FREE_BLOCKS_COUNT_LO] = 9;
        raw
    }

    #[test]
    fn decodes_32_byte_descriptors_and_checks_the_checksum() {
        let mut raw = desc32();
        let csum = desc_csum(42, 3, &raw);
        raw[BG_CHECKSUM..BG_CHECKSUM + 2].copy_from_slice(&csum.to_le_bytes());
        let desc = GroupDesc::decode(&raw, 3, 32, 100, Some(42)).unwrap();
        assert_eq!(
            (
                desc.block_bitmap_block,
                desc.inode_bitmap_block,
                desc.inode_table_block
            ),
            (5, 6, 7)
        );
        assert_eq!(desc.free_blocks_count, 9);
        assert!(matches!(
            GroupDesc::decode(&raw, 4, 32, 100, Some(42)),
            Err(FormatError::ChecksumMismatch { .. })
        ));
        // The stored checksum does not feed into its own computation.
        raw[BG_CHECKSUM] ^= 0xFF;
        assert_eq!(desc_csum(42, 3, &raw), csum);
    }

    #[test]
    fn refuses_locations_outside_the_file_system_and_short_buffers() {
        let raw = desc32();
        assert!(matches!(
            GroupDesc::decode(&raw, 0, 32, 7, None),
            Err(FormatError::FieldOutOfRange {
                field: "bg_inode_table",
                value: 7,
                ..
            })
        ));
        assert!(matches!(
            GroupDesc::decode(&raw, 0, 64, 100, None),
            Err(FormatError::Truncated { .. })
        ));
        assert!(GroupDesc::decode(&raw, 0, 16, 100, None).is_err());
    }

    #[test]
    fn encodes_wide_fields_and_refuses_them_in_narrow_descriptors() {
        let mut raw = vec![0xAAu8; 64];
        let mut desc = GroupDesc {
            group: 7,
            block_bitmap_block: 0x1_0000_0005,
            inode_bitmap_block: 6,
            inode_table_block: 7,
            free_blocks_count: 0x1_0002,
            free_inodes_count: 3,
            used_dirs_count: 4,
            itable_unused: 5,
            flags: BG_INODE_ZEROED,
            block_bitmap_csum: 0xDEAD_BEEF,
            inode_bitmap_csum: 0x1234_5678,
            checksum: 0,
        };
        desc.encode_into(&mut raw, 64, Some(9)).unwrap();
        assert_eq!(
            GroupDesc::decode(&raw, 7, 64, 1 << 40, Some(9)).unwrap(),
            desc
        );
        assert_eq!(
            raw[0x14], 0xAA,
            "bg_exclude_bitmap_lo is not modelled and kept"
        );
        let mut narrow = vec![0u8; 32];
        assert!(matches!(
            desc.encode_into(&mut narrow, 32, None),
            Err(FormatError::FieldOutOfRange {
                field: "bg_block_bitmap",
                ..
            })
        ));
        assert!(desc.encode_into(&mut narrow, 64, None).is_err());
    }
}
