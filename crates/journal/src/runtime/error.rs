//! Typed errors of the journal runtime: each names the phase (which transaction's commit, a
//! checkpoint, recovery), the I/O that failed and the device's own error.

use std::fmt;
use std::sync::Arc;

use aios_device::{ArenaError, DeviceError};

use crate::JournalError;

/// What the journal was doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Opening the journal (reading its superblock).
    Open,
    /// Committing the transaction with this sequence.
    Commit {
        /// Its sequence.
        sequence: u32,
    },
    /// Writing committed metadata home and advancing the tail.
    Checkpoint,
    /// Replaying the log at mount.
    Recovery,
    /// Checkpointing and marking the journal clean.
    Unmount,
    /// Writing data in place and flushing without a commit (`fdatasync` of an overwrite).
    DataSync,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::Open => write!(f, "journal open"),
            Phase::Commit { sequence } => write!(f, "commit of transaction {sequence}"),
            Phase::Checkpoint => write!(f, "checkpoint"),
            Phase::Recovery => write!(f, "journal recovery"),
            Phase::Unmount => write!(f, "journal unmount"),
            Phase::DataSync => write!(f, "data sync"),
        }
    }
}

/// Which I/O failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoWhat {
    /// An ordered-mode data write of the transaction.
    Data {
        /// Device byte offset.
        offset_bytes: u64,
    },
    /// Journal blocks (descriptor, logged copies, revoke) starting at this journal block.
    Journal {
        /// First journal block of the request.
        journal_block: u32,
    },
    /// The commit block.
    Commit {
        /// Its journal block.
        journal_block: u32,
    },
    /// The journal superblock.
    Superblock,
    /// A cache flush.
    Flush,
    /// Home-location writes (checkpoint, replay) starting at this file system block.
    Home {
        /// First file system block of the request.
        fs_block: u64,
    },
    /// A read of journal blocks starting at this journal block.
    Read {
        /// First journal block of the request.
        journal_block: u32,
    },
}

impl fmt::Display for IoWhat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IoWhat::Data { offset_bytes } => write!(f, "data write at byte {offset_bytes}"),
            IoWhat::Journal { journal_block } => {
                write!(f, "journal write at journal block {journal_block}")
            }
            IoWhat::Commit { journal_block } => {
                write!(f, "commit block write at journal block {journal_block}")
            }
            IoWhat::Superblock => write!(f, "journal superblock write"),
            IoWhat::Flush => write!(f, "flush"),
            IoWhat::Home { fs_block } => write!(f, "home write at file system block {fs_block}"),
            IoWhat::Read { journal_block } => write!(f, "read of journal block {journal_block}"),
        }
    }
}

/// An error of the journal runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The device failed a command.
    #[error("{phase}: {what} failed: {source}")]
    Io {
        /// What the journal was doing.
        phase: Phase,
        /// The command.
        what: IoWhat,
        /// The device's error.
        #[source]
        source: DeviceError,
    },
    /// The block layer refused to stage a command (misaligned, out of range, too large).
    #[error("{phase}: {what} refused by the block layer: {source}")]
    Refused {
        /// What the journal was doing.
        phase: Phase,
        /// The command.
        what: IoWhat,
        /// Why.
        #[source]
        source: DeviceError,
    },
    /// Submitting or reaping failed: the commands in flight stay with the device.
    #[error("{phase}: the device queue failed: {source}")]
    Queue {
        /// What the journal was doing.
        phase: Phase,
        /// The queue's error.
        #[source]
        source: DeviceError,
    },
    /// The queue handed to the journal had requests in flight.
    #[error("{phase}: the block queue has {busy} requests in flight; the journal needs it idle")]
    QueueBusy {
        /// What the journal was about to do.
        phase: Phase,
        /// Requests not finished.
        busy: usize,
    },
    /// No arena memory for journal buffers.
    #[error("{phase}: journal buffers: {source}")]
    Arena {
        /// What the journal was doing.
        phase: Phase,
        /// The arena's error.
        #[source]
        source: ArenaError,
    },
    /// A journal structure could not be decoded, encoded or laid out, or recovery failed.
    #[error(transparent)]
    Format(#[from] JournalError),
    /// The journal's extents do not describe a usable journal.
    #[error("journal extents: {reason} (journal block {journal_block})")]
    BadExtents {
        /// The offending journal block.
        journal_block: u32,
        /// What is wrong.
        reason: &'static str,
    },
    /// A journal block beyond the extents.
    #[error(
        "journal block {journal_block} is not mapped: the extents cover {mapped_blocks} blocks"
    )]
    Unmapped {
        /// The journal block.
        journal_block: u32,
        /// Blocks the extents map.
        mapped_blocks: u32,
    },
    /// The superblock says the log must be replayed first ([`crate::runtime::recover`]).
    #[error("the journal needs recovery (s_start = {start_block}, s_sequence = {sequence})")]
    NeedsRecovery {
        /// `s_start`.
        start_block: u32,
        /// `s_sequence`.
        sequence: u32,
    },
    /// A data write the journal cannot issue.
    #[error("transaction {sequence}: data write {index} at byte {offset_bytes} of {len_bytes} bytes: {reason}")]
    BadDataWrite {
        /// The transaction.
        sequence: u32,
        /// Its index in the transaction.
        index: usize,
        /// Device byte offset.
        offset_bytes: u64,
        /// Buffer length.
        len_bytes: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// Recovery skipped logged blocks whose tag checksum failed; the journal is left dirty (the
    /// kernel fails the mount with `-EFSBADCRC`; e2fsck repairs).
    #[error("journal recovery: {count} logged blocks failed their checksum (first: file system block {fs_block} of transaction {sequence}); the journal is left for e2fsck")]
    RecoveryChecksum {
        /// Blocks skipped.
        count: usize,
        /// The first one's home location.
        fs_block: u64,
        /// Its transaction.
        sequence: u32,
    },
    /// The journal was aborted by an earlier failure.
    #[error("the journal is aborted: {first}")]
    Aborted {
        /// The failure that aborted it.
        #[source]
        first: Arc<RuntimeError>,
    },
}

impl RuntimeError {
    /// The device error behind this failure, if it was one.
    pub fn device_error(&self) -> Option<&DeviceError> {
        match self {
            RuntimeError::Io { source, .. }
            | RuntimeError::Refused { source, .. }
            | RuntimeError::Queue { source, .. } => Some(source),
            RuntimeError::Aborted { first } => first.device_error(),
            _ => None,
        }
    }

    /// The I/O that failed, if this is an I/O failure.
    pub fn failed_io(&self) -> Option<IoWhat> {
        match self {
            RuntimeError::Io { what, .. } | RuntimeError::Refused { what, .. } => Some(*what),
            RuntimeError::Aborted { first } => first.failed_io(),
            _ => None,
        }
    }
}
