//! ext4 on-disk structures, one file each, decoded from little-endian bytes.
//!
//! | Module | Structure | Where it lives | Checksum (`metadata_csum`) |
//! | --- | --- | --- | --- |
//! | [`superblock`] | `ext4_super_block` | byte 1024, 1024 bytes | crc32c of bytes `0..0x3FC` at `0x3FC` |
//! | [`group`] | `ext4_group_desc` | blocks after the superblock, 32/64 bytes each | low 16 bits, seeded by fs seed + group |
//! | [`inode`] | `ext4_inode` | inode tables, `s_inode_size` bytes each | lo 16 at `0x7C`, hi 16 at `0x82`, seeded by fs seed + ino + generation |
//! | [`extent`] | `ext4_extent_header`/`_idx`/`ext4_extent` | `i_block` and extent blocks | 4-byte tail after `eh_max` entries, inode seed |
//! | [`dir`] | `ext4_dir_entry_2`, `ext4_dir_entry_tail` | directory blocks | 12-byte fake entry at block end, inode seed |
//! | [`htree`] | `dx_root`, `dx_node`, `dx_tail` | interior blocks of indexed directories | `dx_tail` after `limit` entries, inode seed |
//! | [`bitmap`] | block and inode bitmaps | one block each per group | in the group descriptor (lo/hi 16), fs seed |
//!
//! Every module decodes and encodes its structure (encoders patch in place, see the crate doc).
//! [`features`] names the superblock feature flags and the supported sets; [`csum`] holds the
//! crc32c convention and seeds; [`hash`] the htree name hashes; `bytes` the bounds-checked field
//! readers and writers that every decoder and encoder goes through.

pub mod bitmap;
mod bytes;
pub mod csum;
pub mod dir;
pub mod extent;
pub mod features;
pub mod group;
pub mod hash;
pub mod htree;
pub mod inode;
pub mod superblock;
pub mod zones;
