//! jbd2 journal for aios: the on-disk format, transaction layout and recovery (pure), and the
//! runtime that drives them over the block layer ([`runtime`]: commit, checkpoint, recovery I/O).
//!
//! # Role
//! The ext4 journal (inode 8 of images made by `mke2fs -t ext4`) is a jbd2 log: a circular run of
//! 4 KiB blocks `[s_first, s_maxlen)` after a journal superblock at index 0. This crate is the
//! pure half of aios's journal: [`format`] decodes and encodes every jbd2 block (superblock,
//! descriptor with its tags, commit, revoke); [`layout`] turns one transaction (file system blocks
//! and revoked block numbers) into the journal blocks to write, with the commit block built
//! separately so the AIOS fsync can prepare it while the other blocks are in flight; [`recovery`]
//! runs the kernel's three passes (SCAN, REVOKE, REPLAY) over a block-reading callback and
//! returns what to write home. [`runtime`] is the I/O half: a mounted [`runtime::Journal`]
//! commits ordered-mode transactions in the vanilla or the AIOS fsync order, checkpoints, and
//! [`runtime::recover`] replays a crashed journal at mount.
//!
//! # Assumptions
//! - 4 KiB journal blocks (`s_blocksize`); anything else is refused.
//! - Journal block indexes are logical (0 = journal superblock); mapping them to device blocks is
//!   the caller's (the journal inode's extent map).
//!
//! # Promises
//! - Decoding never panics on disk bytes (`unwrap`, indexing and `panic` are denied in non-test
//!   code); every fault is a [`JournalError`] naming the structure and journal block.
//! - Unknown incompat features, and the known ones we do not implement (`async_commit`,
//!   `fast_commit`, the v1 compat `checksum`), are refused by name.
//! - What [`layout`] writes, `e2fsck` and the Linux kernel replay (tested against e2fsprogs);
//!   what the kernel leaves in a journal, [`recovery`] replays to the same blocks `e2fsck` does.
//! - Recovery never replays a block of a transaction whose commit block is missing, mismatched or
//!   fails its checksum, nor anything after it.

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
pub mod layout;
pub mod recovery;
pub mod runtime;

pub use error::{FeatureKind, JournalError, Location, Result};
