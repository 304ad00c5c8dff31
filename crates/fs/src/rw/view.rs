//! What a read of an open file needs from the state, kept between reads: the inode and its
//! block map as of one cache epoch. Loading them costs an inode decode and an extent-tree walk
//! with a checksum per tree block, under the state lock; every operation that changes the
//! inode's data, size, block map or existence moves its epoch on (`State::note`), so a view of
//! the current epoch is still the truth and the next read reuses it.
//!
//! A clean view of the published epoch lets a read by handle plan without the state lock
//! at all (`file`): the open file publishes it next to its size and epoch (`published`).
//!
//! # Invariants
//! - `State::views` holds views of open inodes only; the last close drops the inode's.
//! - A view is used only while its epoch is the inode's current one (`State::view`).

use std::sync::Arc;

use aios_ext4::format::inode::Inode;

use crate::ExtentMap;

/// An open regular file's inode and block map in cache epoch `epoch`.
#[derive(Debug)]
pub(super) struct FileView {
    pub(super) epoch: u64,
    pub(super) inode: Inode,
    pub(super) map: Arc<ExtentMap>,
    /// When the view was taken, no block the map names had newer bytes in memory (dirty, or
    /// not yet home): every page of the file reads from home or the cache. Bytes enter memory
    /// only by a write, which moves the epoch on; they leave it without one, so a view that
    /// is not clean is checked again by the next read that plans under the lock.
    pub(super) clean: bool,
}

impl FileView {
    /// The same view, `clean` as now judged.
    pub(super) fn with_clean(&self, clean: bool) -> FileView {
        FileView {
            epoch: self.epoch,
            inode: self.inode.clone(),
            map: Arc::clone(&self.map),
            clean,
        }
    }
}
