//! ext4 on-disk format for aios: decoders for the structures the read path needs.
//!
//! # Role
//! This crate turns bytes read from an ext4 image into validated Rust values. It performs no I/O:
//! callers (the fs layer above the block layer) read blocks and hand the bytes in. Decoding
//! **never panics**, whatever the input: every field is read through bounds-checked helpers, every
//! count and length is validated, and anything wrong is a [`FormatError`] that names the
//! structure, its location (block, group or inode number) and the fault.
//!
//! # Supported
//! File systems made by `mke2fs -t ext4` with this machine's defaults: 4 KiB blocks; features
//! `has_journal ext_attr resize_inode dir_index filetype extent 64bit flex_bg sparse_super
//! large_file huge_file dir_nlink extra_isize metadata_csum`. With `metadata_csum`, the
//! superblock, group descriptor, inode, extent block and linear directory block checksums are
//! verified (crc32c, kernel seeding; see [`format::csum`]).
//!
//! # Refused
//! - Block sizes other than 4 KiB ([`FormatError::FieldOutOfRange`] on `s_log_block_size`).
//! - Any incompat or ro_compat feature outside the set above
//!   ([`FormatError::UnsupportedFeature`], naming the features), e.g. `inline_data`, `bigalloc`,
//!   `meta_bg`, `encrypt`, `casefold`, `uninit_bg` without `metadata_csum`. Unknown compat
//!   features are accepted, as the kernel does.
//! - A journal that needs recovery ([`FormatError::JournalNeedsRecovery`]); replay comes with the
//!   write path.
//!
//! # Not here (yet)
//! htree (`dx_root`/`dx_node`) blocks and their `dx_tail` checksums, extended attribute blocks,
//! bitmap checksums, the jbd2 journal.

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
