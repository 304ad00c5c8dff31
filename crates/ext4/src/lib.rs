//! ext4 on-disk format for aios: decoders for the read path, encoders for the write path.
//!
//! # Role
//! This crate turns bytes read from an ext4 image into validated Rust values, and values back
//! into bytes. It performs no I/O: callers (the fs layer above the block layer) read blocks and
//! hand the bytes in, and write back what the encoders produced. Decoding **never panics**,
//! whatever the input: every field is read through bounds-checked helpers, every count and length
//! is validated, and anything wrong is a [`FormatError`] that names the structure, its location
//! (block, group or inode number) and the fault. Encoders patch fields **in place** into the raw
//! record they were decoded from (superblock, group descriptor, inode, extent node), so bytes this
//! crate does not model survive a write; values that do not fit their fields are
//! `FieldOutOfRange`, never truncated silently. Each encoder round-trips exactly against
//! `mke2fs` images (`tests/encode.rs`), and an image edited only through them passes `e2fsck -fn`.
//!
//! # Supported
//! File systems made by `mke2fs -t ext4` with this machine's defaults: 4 KiB blocks; features
//! `has_journal ext_attr resize_inode dir_index filetype extent 64bit flex_bg sparse_super
//! large_file huge_file dir_nlink extra_isize metadata_csum`. With `metadata_csum`, the
//! superblock, group descriptor, inode, extent block, linear directory block, htree `dx_tail`
//! and block/inode bitmap checksums are verified and computed (crc32c, kernel seeding; see
//! [`format::csum`]). htree hashes: legacy, half_md4 and tea, signed or unsigned
//! ([`format::hash`]). `BLOCK_UNINIT`/`INODE_UNINIT` bitmaps are computed
//! ([`format::bitmap`]).
//!
//! # Refused
//! - Block sizes other than 4 KiB ([`FormatError::FieldOutOfRange`] on `s_log_block_size`).
//! - Any incompat or ro_compat feature outside the set above
//!   ([`FormatError::UnsupportedFeature`], naming the features), e.g. `inline_data`, `bigalloc`,
//!   `meta_bg`, `encrypt`, `casefold`, `uninit_bg` without `metadata_csum`. Unknown compat
//!   features are accepted, as the kernel does.
//! - A journal that needs recovery ([`FormatError::JournalNeedsRecovery`]) by
//!   `Superblock::decode`; `Superblock::decode_recovering` accepts it for the replay code.
//! - htree `indirect_levels` above 1 (`largedir`), the `siphash` directory hash.
//!
//! # Not here (yet)
//! Extended attribute blocks and in-inode xattrs (kept byte-for-byte, not decoded), `sparse_super2`
//! backup groups, the orphan file, the jbd2 journal (its own crate), and policy: which inode or
//! block to allocate, when to split an extent node or a directory leaf, htree splits (the fs
//! layer builds those from the encoders here).

#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

mod error;
pub mod format;

pub use error::{FeatureKind, FormatError, Location, Result};
