//! The journal runtime: commit, checkpoint and mount-time recovery, with I/O through the block
//! layer (`aios-block`) on any device of the `aios-device` contract.
//!
//! # Role
//! [`Journal`] owns the jbd2 log of one mounted file system: where it lies on the device
//! ([`JournalExtents`], from the journal inode's extent map, supplied by the file system), its
//! superblock, the head (next sequence and journal block), the tail (oldest transaction not yet
//! checkpointed), free-space accounting in the circular log, and the committed metadata blocks
//! not yet written home. [`Journal::commit`] commits one ordered-mode transaction in one of two
//! [`CommitOrder`]s (the same steps, different waits; `docs/write-path.md`);
//! [`Journal::checkpoint`] writes committed metadata home and advances the tail;
//! [`sync_data`] writes data in place and flushes without a commit (`fdatasync` of an
//! overwrite); [`Journal::unmount`] checkpoints and marks the journal clean; [`recover`] replays a journal
//! left by a crash (ours, the kernel's) before [`Journal::open`].
//!
//! # Invariants (each kept by one function, each checked by the crash tests)
//! - Commit: the flush is issued only after every data and journal write of the transaction
//!   *completed* successfully; the commit block is written with FUA only after the flush
//!   completed successfully; success is reported only when the commit block completed.
//! - Checkpoint and recovery: home writes, then a flush, then the journal superblock (FUA). The
//!   tail never advances, and the journal is never marked clean, before that flush completed.
//! - Abort: once any write or flush of a commit or checkpoint has been issued, any failure aborts
//!   the journal: nothing more is written to it, every later call fails with
//!   [`RuntimeError::Aborted`] carrying the first error, and the on-disk log stays as the last
//!   successful commit left it (recovery proves it).
//! - The head never overruns the tail: a transaction that does not fit in the free part of the
//!   log is preceded by a checkpoint; one that does not fit in the whole log is refused.
//!
//! # Assumptions
//! - 4 KiB file system blocks, the file system at device byte 0 (fs block `b` is at byte
//!   `b * 4096`), and the journal's extents map every block of `[0, s_maxlen)`.
//! - The caller gives the journal its `BlockQueue` with nothing in flight for the duration of each
//!   call (one thread drives a journal), and an arena with room for the journal's buffers.
//! - The device keeps the `aios-device` durability contract; a failed command has no effect
//!   (the emulated device's fault model). On real hardware a failed FUA commit write might still
//!   have reached the media; see `docs/write-path.md`.

mod checkpoint;
mod commit;
mod data_sync;
mod error;
mod extents;
mod io;
mod journal;
mod plant;
mod recover;

pub use checkpoint::Checkpointed;
pub use commit::{CommitTimes, Committed, DataWrite, Transaction};
pub use data_sync::{sync_data, write_data};
pub use error::{IoWhat, Phase, RuntimeError};
pub use extents::{JournalExtent, JournalExtents};
pub use journal::{CommitOrder, Journal, JournalOptions, JournalState};
pub use plant::PlantedBug;
pub use recover::{recover, recover_with, Replayed};

/// Result of a runtime operation.
pub type RtResult<T> = std::result::Result<T, RuntimeError>;
