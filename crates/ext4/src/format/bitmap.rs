//! Block and inode bitmaps: one bit per block (or inode) of a group, 1 = in use.
//!
//! Each group has one block-bitmap block and one inode-bitmap block. Only the first
//! `s_blocks_per_group` (resp. `s_inodes_per_group`) bits describe the group; the rest of the
//! block is padding set to 1 (`ext4_mark_bitmap_end`).
//!
//! With `metadata_csum` each bitmap's checksum lives in the group descriptor:
//! `crc32c_raw(fs_seed, first bits/8 bytes)` (the kernel's `ext4_block_bitmap_csum_set` with
//! `EXT4_CLUSTERS_PER_GROUP / 8` bytes, `ext4_inode_bitmap_csum_set` with
//! `EXT4_INODES_PER_GROUP / 8` bytes); the low 16 bits in `bg_*_bitmap_csum_lo`, the high 16 in
//! `bg_*_bitmap_csum_hi` when descriptors are wider than 32 bytes. Padding is not covered.
//!
//! Uninitialised groups: with `BLOCK_UNINIT` the on-disk block bitmap is garbage and the bitmap
//! is *computed* ([`uninit_block_bitmap`], the kernel's `ext4_init_block_bitmap`: superblock
//! backup, descriptor table and reserved GDT blocks, the group's own bitmaps and inode table
//! where they lie inside the group, and the padding); with `INODE_UNINIT` the inode bitmap is all
//! free ([`uninit_inode_bitmap`]). [`load_block_bitmap`] and [`load_inode_bitmap`] apply these
//! rules and verify the checksum of bitmaps that are read.

use super::bytes::Reader;
use super::csum::crc32c_raw;
use super::features::{compat, ro_compat};
use super::group::{GroupDesc, BG_BLOCK_UNINIT, BG_INODE_UNINIT};
use super::superblock::Superblock;
use crate::error::{FormatError, Location, Result};

/// Bits per byte of a bitmap.
const BITS_PER_BYTE: u32 = 8;

/// The value of bit `n` (1 = in use).
pub fn bit(bitmap: &[u8], at: Location, n: u32) -> Result<bool> {
    let r = Reader::new(bitmap, at);
    let byte = r.u8((n / BITS_PER_BYTE) as usize)?;
    Ok(byte & (1 << (n % BITS_PER_BYTE)) != 0)
}

/// Set bit `n` to `value`; returns its previous value.
pub fn set_bit(bitmap: &mut [u8], at: Location, n: u32, value: bool) -> Result<bool> {
    let len_bytes = bitmap.len() as u64;
    let Some(byte) = bitmap.get_mut((n / BITS_PER_BYTE) as usize) else {
        return Err(FormatError::Truncated {
            at,
            needed_bytes: u64::from(n / BITS_PER_BYTE) + 1,
            len_bytes,
        });
    };
    let mask = 1u8 << (n % BITS_PER_BYTE);
    let old = *byte & mask != 0;
    if value {
        *byte |= mask;
    } else {
        *byte &= !mask;
    }
    Ok(old)
}

/// The first clear bit in `from..end` (bits past the buffer count as set), if any.
pub fn find_first_zero(bitmap: &[u8], from: u32, end: u32) -> Option<u32> {
    (from..end).find(|&n| {
        bitmap
            .get((n / BITS_PER_BYTE) as usize)
            .is_some_and(|byte| byte & (1 << (n % BITS_PER_BYTE)) == 0)
    })
}

/// Clear bits among the first `bits` (free blocks or inodes of the group).
pub fn count_zeros(bitmap: &[u8], bits: u32) -> u32 {
    (0..bits)
        .filter(|&n| {
            bitmap
                .get((n / BITS_PER_BYTE) as usize)
                .is_some_and(|byte| byte & (1 << (n % BITS_PER_BYTE)) == 0)
        })
        .count() as u32
}

/// `crc32c_raw(fs_seed, bitmap[..bits / 8])`: the checksum of a bitmap describing `bits` items.
pub fn bitmap_csum(fs_csum_seed: u32, bitmap: &[u8], at: Location, bits: u32) -> Result<u32> {
    let covered = Reader::new(bitmap, at).bytes(0, (bits / BITS_PER_BYTE) as usize)?;
    Ok(crc32c_raw(fs_csum_seed, covered))
}

/// Which bitmap of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitmapKind {
    /// The block bitmap (`s_blocks_per_group` bits).
    Block,
    /// The inode bitmap (`s_inodes_per_group` bits).
    Inode,
}

impl BitmapKind {
    /// Bits that describe the group (and that the checksum covers).
    pub fn bits(self, sb: &Superblock) -> u32 {
        match self {
            BitmapKind::Block => sb.blocks_per_group,
            BitmapKind::Inode => sb.inodes_per_group,
        }
    }

    /// Where the bitmap of `group` lives, for errors.
    pub fn location(self, group: u32) -> Location {
        match self {
            BitmapKind::Block => Location::BlockBitmap { group },
            BitmapKind::Inode => Location::InodeBitmap { group },
        }
    }

    /// The descriptor's `BG_*_UNINIT` flag for this bitmap.
    pub fn uninit_flag(self) -> u16 {
        match self {
            BitmapKind::Block => BG_BLOCK_UNINIT,
            BitmapKind::Inode => BG_INODE_UNINIT,
        }
    }

    fn stored_csum(self, desc: &GroupDesc) -> u32 {
        match self {
            BitmapKind::Block => desc.block_bitmap_csum,
            BitmapKind::Inode => desc.inode_bitmap_csum,
        }
    }
}

/// The checksum as the descriptor can hold it: 32 bits, or the low 16 with 32-byte descriptors.
fn stored_width(sb: &Superblock, csum: u32) -> u32 {
    if GroupDesc::has_bitmap_csum_hi(sb.desc_size_bytes) {
        csum
    } else {
        csum & 0xFFFF
    }
}

/// Compute the checksum of `bitmap` and store it in `desc` (then re-encode the descriptor).
/// Without `metadata_csum` this does nothing.
pub fn set_bitmap_csum(
    sb: &Superblock,
    desc: &mut GroupDesc,
    kind: BitmapKind,
    bitmap: &[u8],
) -> Result<()> {
    let Some(seed) = sb.verify_seed() else {
        return Ok(());
    };
    let csum = stored_width(
        sb,
        bitmap_csum(seed, bitmap, kind.location(desc.group), kind.bits(sb))?,
    );
    match kind {
        BitmapKind::Block => desc.block_bitmap_csum = csum,
        BitmapKind::Inode => desc.inode_bitmap_csum = csum,
    }
    Ok(())
}

/// Verify `bitmap` against the checksum in `desc` (no-op without `metadata_csum`).
pub fn verify_bitmap(
    sb: &Superblock,
    desc: &GroupDesc,
    kind: BitmapKind,
    bitmap: &[u8],
) -> Result<()> {
    let Some(seed) = sb.verify_seed() else {
        return Ok(());
    };
    let at = kind.location(desc.group);
    let computed = stored_width(sb, bitmap_csum(seed, bitmap, at, kind.bits(sb))?);
    let stored = kind.stored_csum(desc);
    if computed != stored {
        return Err(FormatError::ChecksumMismatch {
            at,
            expected: computed,
            found: stored,
        });
    }
    Ok(())
}

/// The block bitmap of `desc`'s group as the file system sees it: computed with `BLOCK_UNINIT`
/// (`on_disk` is then ignored), else `on_disk` (one block) with its checksum verified.
pub fn load_block_bitmap(sb: &Superblock, desc: &GroupDesc, on_disk: &[u8]) -> Result<Vec<u8>> {
    if desc.flags & BG_BLOCK_UNINIT != 0 {
        return uninit_block_bitmap(sb, desc);
    }
    verify_bitmap(sb, desc, BitmapKind::Block, on_disk)?;
    Ok(on_disk.to_vec())
}

/// The inode bitmap of `desc`'s group: all free with `INODE_UNINIT`, else `on_disk` verified.
pub fn load_inode_bitmap(sb: &Superblock, desc: &GroupDesc, on_disk: &[u8]) -> Result<Vec<u8>> {
    if desc.flags & BG_INODE_UNINIT != 0 {
        return Ok(uninit_inode_bitmap(sb));
    }
    verify_bitmap(sb, desc, BitmapKind::Inode, on_disk)?;
    Ok(on_disk.to_vec())
}

/// The inode bitmap of an `INODE_UNINIT` group: no inode in use, padding set.
pub fn uninit_inode_bitmap(sb: &Superblock) -> Vec<u8> {
    let mut bitmap = vec![0u8; sb.block_size_bytes as usize];
    mark_bitmap_end(&mut bitmap, sb.inodes_per_group);
    bitmap
}

/// The block bitmap of a `BLOCK_UNINIT` group (the kernel's `ext4_init_block_bitmap`).
/// Refuses `sparse_super2` (backup groups not modelled).
pub fn uninit_block_bitmap(sb: &Superblock, desc: &GroupDesc) -> Result<Vec<u8>> {
    let group = desc.group;
    let at = Location::BlockBitmap { group };
    if sb.feature_compat & compat::SPARSE_SUPER2 != 0 {
        return Err(FormatError::FieldOutOfRange {
            at,
            field: "s_feature_compat",
            value: compat::SPARSE_SUPER2.into(),
            reason: "sparse_super2 backup groups are not supported",
        });
    }
    let mut bitmap = vec![0u8; sb.block_size_bytes as usize];
    for n in 0..base_meta_blocks(sb, group) {
        set_bit(&mut bitmap, at, n, true)?;
    }
    let first = group_first_block(sb, group);
    let in_group = group_blocks(sb, group);
    let itable_blocks = inode_table_blocks(sb);
    let own = [desc.block_bitmap_block, desc.inode_bitmap_block]
        .into_iter()
        .chain((0..itable_blocks).map(|i| desc.inode_table_block.saturating_add(i)));
    for block in own {
        if let Some(n) = block.checked_sub(first).filter(|&n| n < in_group.into()) {
            set_bit(&mut bitmap, at, n as u32, true)?;
        }
    }
    mark_bitmap_end(&mut bitmap, in_group);
    Ok(bitmap)
}

/// Set every bit from `from` to the end of the buffer (`ext4_mark_bitmap_end`).
pub fn mark_bitmap_end(bitmap: &mut [u8], from: u32) {
    let end = (bitmap.len() as u64 * u64::from(BITS_PER_BYTE)).min(u32::MAX.into()) as u32;
    for n in from..end {
        if let Some(byte) = bitmap.get_mut((n / BITS_PER_BYTE) as usize) {
            *byte |= 1 << (n % BITS_PER_BYTE);
        }
    }
}

/// Group `group` holds a superblock backup (and descriptor table copy).
pub fn group_has_super(sb: &Superblock, group: u32) -> bool {
    if group <= 1 || sb.feature_ro_compat & ro_compat::SPARSE_SUPER == 0 {
        return true;
    }
    if group.is_multiple_of(2) {
        return false;
    }
    [3u32, 5, 7].iter().any(|&base| is_power_of(group, base))
}

fn is_power_of(mut n: u32, base: u32) -> bool {
    while n > 1 && n.is_multiple_of(base) {
        n /= base;
    }
    n == 1
}

/// Blocks of the group descriptor table (without `meta_bg`).
pub fn desc_table_blocks(sb: &Superblock) -> u32 {
    let bytes = u64::from(sb.group_count()) * u64::from(sb.desc_size_bytes);
    bytes.div_ceil(u64::from(sb.block_size_bytes.max(1))) as u32
}

/// Blocks at the start of `group` taken by the superblock copy, descriptor table and reserved
/// GDT blocks (`ext4_num_base_meta_clusters`).
pub fn base_meta_blocks(sb: &Superblock, group: u32) -> u32 {
    if !group_has_super(sb, group) {
        return 0;
    }
    1 + desc_table_blocks(sb) + u32::from(sb.reserved_gdt_blocks)
}

/// First block of `group`.
pub fn group_first_block(sb: &Superblock, group: u32) -> u64 {
    u64::from(sb.first_data_block) + u64::from(group) * u64::from(sb.blocks_per_group)
}

/// Blocks in `group` (the last group may be short).
pub fn group_blocks(sb: &Superblock, group: u32) -> u32 {
    let left = sb.blocks_count.saturating_sub(group_first_block(sb, group));
    left.min(sb.blocks_per_group.into()) as u32
}

/// Blocks of one group's inode table.
pub fn inode_table_blocks(sb: &Superblock) -> u64 {
    (u64::from(sb.inodes_per_group) * u64::from(sb.inode_size_bytes))
        .div_ceil(u64::from(sb.block_size_bytes.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: Location = Location::BlockBitmap { group: 0 };

    #[test]
    fn bit_operations_and_bounds() {
        let mut bitmap = vec![0u8; 4];
        assert!(!set_bit(&mut bitmap, AT, 9, true).unwrap());
        assert!(set_bit(&mut bitmap, AT, 9, true).unwrap());
        assert_eq!(bitmap, [0, 2, 0, 0]);
        assert!(bit(&bitmap, AT, 9).unwrap() && !bit(&bitmap, AT, 8).unwrap());
        assert!(matches!(
            set_bit(&mut bitmap, AT, 32, true),
            Err(FormatError::Truncated { .. })
        ));
        assert!(bit(&bitmap, AT, 32).is_err());
        bitmap[0] = 0xFF;
        assert_eq!(find_first_zero(&bitmap, 0, 32), Some(8));
        assert_eq!(find_first_zero(&bitmap, 9, 32), Some(10));
        assert_eq!(find_first_zero(&bitmap, 0, 8), None);
        assert_eq!(find_first_zero(&bitmap, 30, 40), Some(30));
        assert_eq!(count_zeros(&bitmap, 16), 7);
        mark_bitmap_end(&mut bitmap, 20);
        assert_eq!(bitmap, [0xFF, 2, 0xF0, 0xFF]);
    }

    #[test]
    fn checksum_covers_only_the_described_bits() {
        let mut bitmap = vec![0u8; 4096];
        let c = bitmap_csum(7, &bitmap, AT, 8192).unwrap();
        bitmap[1500] = 0xFF; // padding beyond 8192 bits
        assert_eq!(bitmap_csum(7, &bitmap, AT, 8192).unwrap(), c);
        bitmap[10] = 1;
        assert_ne!(bitmap_csum(7, &bitmap, AT, 8192).unwrap(), c);
        assert!(bitmap_csum(7, &bitmap[..100], AT, 8192).is_err());
    }

    #[test]
    fn sparse_super_groups() {
        let powers: Vec<u32> = (0..100)
            .filter(|&g| g <= 1 || (g % 2 == 1 && [3, 5, 7].iter().any(|&b| is_power_of(g, b))))
            .collect();
        assert_eq!(powers, [0, 1, 3, 5, 7, 9, 25, 27, 49, 81]);
    }
}
