//! Checksums recomputed after a corruption, so that the corrupt fields reach the decoders'
//! field checks and the layers above instead of stopping at a checksum mismatch: what a buggy
//! writer or a crafted image presents. The superblock, group descriptors, every in-use inode of
//! an inode table block, directory tails, the `dx_root` tail and extent node tails are resealed;
//! bitmaps and journal blocks are left as they are.

use aios_ext4::format::csum::crc32c_raw;
use aios_ext4::format::dir::set_dir_tail;
use aios_ext4::format::extent::set_extent_tail;
use aios_ext4::format::group::desc_csum;
use aios_ext4::format::htree::{set_dx_tail, DxKind};
use aios_ext4::format::inode::inode_csum;
use aios_ext4::Location;

use crate::image::{BlockMap, BLOCK};

const INODE_BYTES: usize = 256;

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// Reseals `block` (block number `b`, holding `kind`) in place. Structures too damaged to
/// locate their checksum are left alone.
pub fn reseal(block: &mut [u8], b: u64, kind: &str, map: &BlockMap) {
    if kind == "superblock" {
        let sb = &mut block[1024..2048];
        let crc = crc32c_raw(!0, &sb[..0x3FC]);
        sb[0x3FC..].copy_from_slice(&crc.to_le_bytes());
    } else if kind == "group descriptors" {
        let desc = &mut block[..64];
        let crc = desc_csum(map.fs_seed, 0, desc);
        desc[0x1E..0x20].copy_from_slice(&crc.to_le_bytes());
    } else if kind.starts_with("inode table") {
        let Some(&table) = map.inode_tables.first() else {
            return;
        };
        let first_ino = (b - table) as usize * (BLOCK / INODE_BYTES) + 1;
        for slot in 0..BLOCK / INODE_BYTES {
            let raw = &mut block[slot * INODE_BYTES..(slot + 1) * INODE_BYTES];
            if le16(raw, 0) == 0 {
                continue;
            }
            let ino = (first_ino + slot) as u32;
            let has_hi = le16(raw, 0x80) >= 4;
            let crc = inode_csum(map.fs_seed, ino, le32(raw, 0x64), raw, has_hi);
            raw[0x7C..0x7E].copy_from_slice(&(crc as u16).to_le_bytes());
            if has_hi {
                raw[0x82..0x84].copy_from_slice(&((crc >> 16) as u16).to_le_bytes());
            }
        }
    } else if let Some(&(ino, seed)) = map.owners.get(&b) {
        if kind.starts_with("extent node") {
            let _ = set_extent_tail(block, Location::ExtentBlock { ino, block: b }, seed);
        } else if kind.ends_with(" block 0") && block[0x18..0x1C] == [0; 4] && block[0x1D] == 8 {
            // A dx_root: `dx_root_info.reserved_zero` then the info length 8.
            let _ = set_dx_tail(
                block,
                DxKind::Root,
                Location::DirBlock { ino, block: b },
                seed,
            );
        } else {
            let _ = set_dir_tail(block, Location::DirBlock { ino, block: b }, seed);
        }
    }
}
