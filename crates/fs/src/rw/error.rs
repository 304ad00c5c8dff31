//! Errors of the read-write mount: each names the operation, the path it concerned and the
//! cause (a file-system error, a journal error, or the earlier failure that made the mount
//! read-only).

use std::sync::Arc;

use aios_journal::runtime::RuntimeError;

use crate::FsError;

/// What went wrong in a read-write mount.
#[derive(Debug, thiserror::Error)]
pub enum RwError {
    /// The operation itself failed (no such file, exists, no space, corrupt metadata, ...).
    /// It changed nothing (operations are all-or-nothing).
    #[error("{op} {path}: {cause}")]
    Op {
        op: &'static str,
        path: String,
        cause: FsError,
    },
    /// Committing a transaction (or a data-only sync) failed: the journal is aborted and the
    /// mount is read-only from now on; the image holds what the last successful commit left.
    #[error("{op} {path}: journal commit failed, the file system is now read-only: {cause}")]
    Commit {
        op: &'static str,
        path: String,
        cause: RuntimeError,
    },
    /// The operation's changes could not be turned into a transaction (no arena memory, a
    /// malformed block): nothing was written, but memory is ahead of the disk, so the mount is
    /// read-only from now on.
    #[error("{op} {path}: cannot build the transaction, the file system is now read-only: {what}")]
    Build {
        op: &'static str,
        path: String,
        what: String,
    },
    /// An earlier failure made the mount read-only; nothing was done.
    #[error("{op} {path}: the file system is read-only after an earlier failure ({first})")]
    ReadOnly {
        op: &'static str,
        path: String,
        first: Arc<str>,
    },
    /// Mounting or unmounting failed in the file-system layer (`step` says where).
    #[error("{step}: {cause}")]
    Fs { step: &'static str, cause: FsError },
    /// Mounting or unmounting failed in the journal (recovery, open, checkpoint, unmount).
    #[error("{step}: {cause}")]
    Journal {
        step: &'static str,
        cause: RuntimeError,
    },
    /// The image cannot be mounted read-write (no journal, a journal this mount cannot map, ...).
    #[error("{step}: {what}")]
    Unsupported {
        step: &'static str,
        what: &'static str,
    },
    /// Reading the source of [`super::RwFs::put`] failed (what was written so far stays).
    #[error("put {path}: reading the source at byte {offset_bytes}: {cause}")]
    Source {
        path: String,
        offset_bytes: u64,
        cause: std::io::Error,
    },
    /// No arena memory for the mount's own superblock writes.
    #[error("{step}: arena: {cause}")]
    Arena {
        step: &'static str,
        cause: aios_device::ArenaError,
    },
    /// A thread of the mount could not be started.
    #[error("{step}: {cause}")]
    Thread {
        step: &'static str,
        cause: std::io::Error,
    },
    /// A device command of the mount's own superblock writes failed.
    #[error("{step}: device: {cause}")]
    Device {
        step: &'static str,
        cause: aios_device::DeviceError,
    },
}
