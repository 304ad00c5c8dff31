//! Commit of one ordered-mode transaction, in either [`CommitOrder`] (`docs/write-path.md`).
//!
//! | step | `Sync` | `Async` |
//! | --- | --- | --- |
//! | 1 | submit data | submit data |
//! | 2 | wait for data | build journal blocks, submit them |
//! | 3 | build journal blocks, submit them | build the commit block |
//! | 4 | wait for journal blocks | wait for data and journal blocks |
//! | 5 | flush, wait | flush, wait |
//! | 6 | build the commit block, write it with FUA, wait | write it with FUA, wait |
//!
//! # Promises
//! - The flush is staged only after every data and journal write of the transaction completed
//!   without error; the commit block only after the flush completed without error, with FUA.
//! - `Ok` only when the commit block completed: the transaction and its data are durable.
//! - Refused before any I/O (aborted journal, bad data write, transaction larger than the log,
//!   busy queue): nothing is written and the journal is unchanged. Any failure after the first
//!   command was staged (a failed data, journal, superblock or commit write, a failed flush, a
//!   refused command, no arena memory) aborts the journal. A transaction that cannot be laid out
//!   (a block logged twice, logged and revoked) fails without abort when its data writes
//!   succeeded: they are written, not committed, as ordered mode allows.
//! - Data pages are written from the caller's [`SharedBuf`]s, never copied; each write
//!   command keeps an owner of its pages until it completes (after a [`RuntimeError::Queue`]
//!   failure the device keeps those of what was in flight).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use aios_block::BlockQueue;
use std::sync::Arc;

use aios_device::{Arena, Buf, Queue, SharedBuf, IO_BYTES_MAX, SEGMENTS_MAX};

use super::error::{IoWhat, Phase, RuntimeError};
use super::io::{home_runs, Batch, BLOCK_BYTES};
use super::journal::{CommitOrder, Journal};
use super::plant::PlantedBug;
use super::RtResult;
use crate::layout::{blocks_needed, layout, DataBlock, JournalWrite, LogPosition};
use crate::JournalError;

/// An ordered-mode data write: filled pages, shared with their owner (who may keep reading
/// them), and where they go on the device, consecutively.
#[derive(Debug, Clone)]
pub struct DataWrite {
    /// Device byte offset (a multiple of 4096).
    pub offset_bytes: u64,
    /// The data, in order; at most 32 buffers and 128 KiB.
    pub pages: Vec<Arc<SharedBuf>>,
}

impl DataWrite {
    /// Bytes written.
    pub fn len_bytes(&self) -> u64 {
        self.pages.iter().map(|p| p.len() as u64).sum()
    }
}

/// One transaction to commit.
#[derive(Debug)]
pub struct Transaction<'a> {
    /// Data pages written in place before the commit (ordered mode).
    pub data: Vec<DataWrite>,
    /// Metadata blocks to log (copied into journal buffers).
    pub metadata: &'a [DataBlock<'a>],
    /// File system blocks freed by this transaction (revoke records).
    pub revoked: &'a [u64],
}

/// Nanoseconds spent in each stage of one commit (real clock), for the fsync breakdown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitTimes {
    /// Checkpointing first because the log was full (0 when it was not).
    pub checkpoint_ns: u64,
    /// Building journal blocks (layout, copies into journal buffers), and in `Async` order the
    /// commit block.
    pub build_journal_ns: u64,
    /// Submitting data and journal writes.
    pub submit_ns: u64,
    /// Waiting for data and journal writes.
    pub wait_ns: u64,
    /// The flush, issued and waited for.
    pub flush_ns: u64,
    /// The commit block (built here in `Sync` order), written with FUA and waited for.
    pub commit_ns: u64,
}

impl CommitTimes {
    /// The whole commit.
    pub fn total_ns(&self) -> u64 {
        self.checkpoint_ns
            + self.build_journal_ns
            + self.submit_ns
            + self.wait_ns
            + self.flush_ns
            + self.commit_ns
    }
}

/// A committed transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// Its sequence.
    pub sequence: u32,
    /// Where it starts in the log.
    pub journal_block: u32,
    /// Journal blocks it took (commit block included).
    pub journal_blocks: u64,
    /// True when a checkpoint ran first to make room.
    pub checkpointed: bool,
    /// Per-stage times.
    pub times: CommitTimes,
}

/// Lap timer over the real clock.
pub(super) struct Lap(pub(super) Instant);

impl Lap {
    pub(super) fn take(&mut self) -> u64 {
        let now = Instant::now();
        let ns = now.duration_since(self.0).as_nanos() as u64;
        self.0 = now;
        ns
    }
}

/// Stages the in-place data writes (stops at the first refusal, which the batch records).
pub(super) fn stage_data<Q: Queue>(batch: &mut Batch<'_, Q>, data: &[DataWrite]) {
    for d in data {
        let what = IoWhat::Data {
            offset_bytes: d.offset_bytes,
        };
        if !batch.stage_shared(d.offset_bytes, &d.pages, what) {
            break;
        }
    }
}

/// What a successful run leaves for the bookkeeping.
struct Done {
    next: LogPosition,
    wrote_superblock: bool,
}

impl Journal {
    /// Commits one transaction. See the module documentation.
    pub fn commit<Q: Queue>(
        &mut self,
        q: &mut BlockQueue<Q>,
        arena: &Arena,
        tx: Transaction<'_>,
    ) -> RtResult<Committed> {
        let Transaction {
            data,
            metadata,
            revoked,
        } = tx;
        let at = self.head;
        let phase = Phase::Commit {
            sequence: at.sequence,
        };
        self.check_running()?;
        check_data(at.sequence, &data)?;
        let needed = blocks_needed(&self.log.format, metadata.len(), revoked.len());
        if needed.saturating_add(1) > self.log_blocks() {
            let e = JournalError::TransactionTooLarge {
                sequence: at.sequence,
                needed_blocks: needed,
                log_blocks: self.log_blocks(),
            };
            return Err(e.into());
        }
        if q.busy() != 0 {
            let busy = q.busy();
            return Err(RuntimeError::QueueBusy { phase, busy });
        }

        let mut times = CommitTimes::default();
        let mut lap = Lap(Instant::now());
        let checkpointed = needed > self.free_blocks();
        if checkpointed {
            self.checkpoint(q, arena)?;
            times.checkpoint_ns = lap.take();
        }

        let mut batch = Batch::new(q, arena, phase, 0)?;
        // PLANTED BUG (f), test-only: the revoke records are left out of the log.
        let logged_revokes = if self.planted(PlantedBug::NoRevoke) {
            &[][..]
        } else {
            revoked
        };
        let run = self.run(
            &mut batch,
            &mut lap,
            &mut times,
            &data,
            metadata,
            logged_revokes,
        );
        batch.wait_all(); // only waits when a step returned early
        drop(batch);
        run.map(|done| {
            self.head = done.next;
            self.used_blocks += needed;
            if done.wrote_superblock {
                self.on_disk_start = self.tail.journal_block;
            }
            for r in revoked {
                self.pending.remove(r);
            }
            for b in metadata {
                self.pending.insert(b.fs_block, Box::new(*b.contents));
            }
            Committed {
                sequence: at.sequence,
                journal_block: at.journal_block,
                journal_blocks: needed,
                checkpointed,
                times,
            }
        })
    }

    /// The six steps; any error is returned after the journal was aborted where the rules say.
    fn run<Q: Queue>(
        &mut self,
        batch: &mut Batch<'_, Q>,
        lap: &mut Lap,
        times: &mut CommitTimes,
        data: &[DataWrite],
        metadata: &[DataBlock<'_>],
        revoked: &[u64],
    ) -> RtResult<Done> {
        let order = self.options.order;
        // 1. Data.
        stage_data(batch, data);
        batch.submit();
        times.submit_ns += lap.take();
        if order == CommitOrder::Sync {
            batch.wait_all();
            times.wait_ns += lap.take();
        }
        if let Some(e) = batch.take_error() {
            batch.wait_all();
            return Err(self.abort(e));
        }

        // 2/3. Journal blocks.
        let l = match layout(&self.log, self.head, metadata, revoked) {
            Ok(l) => l,
            Err(e) => {
                batch.wait_all();
                return Err(match batch.take_error() {
                    Some(io) => self.abort(io),
                    None => e.into(),
                });
            }
        };
        let wrote_superblock = self.on_disk_start == 0;
        if wrote_superblock {
            let (start, seq) = (self.tail.journal_block, self.tail.sequence);
            if let Err(e) = self.stage_superblock(batch, start, seq, false) {
                batch.record(e);
            }
        }
        if !batch.failed() {
            if let Err(e) = self.stage_journal(batch, &l.writes) {
                batch.record(e);
            }
        }
        if self.planted(PlantedBug::CheckpointBeforeCommit) && !batch.failed() {
            // PLANTED BUG (d), test-only: the metadata goes home before the commit is durable.
            stage_home(batch, metadata);
        }
        times.build_journal_ns += lap.take();
        batch.submit();
        times.submit_ns += lap.take();
        let mut commit_buf = None;
        if order == CommitOrder::Async && !batch.failed() {
            let (sec, nsec) = now_sec_nsec();
            commit_buf = self.build_commit(batch, l.commit(sec, nsec));
            times.build_journal_ns += lap.take();
        }

        // 4. Wait for data and journal.
        if !self.planted(PlantedBug::FlushBeforeWritesComplete) {
            batch.wait_all();
        } // else PLANTED BUG (a), test-only: the flush below goes out with them in flight.
        times.wait_ns += lap.take();
        if let Some(e) = batch.take_error() {
            if let Some(b) = commit_buf {
                batch.arena().free(b);
            }
            return Err(self.abort(e));
        }

        // 5. Flush (PLANTED BUG (b), test-only: after the commit block instead).
        let flush_late = self.planted(PlantedBug::CommitBeforeFlush);
        if !flush_late {
            batch.stage_flush();
            batch.wait_all();
        }
        times.flush_ns += lap.take();
        if let Some(e) = batch.take_error() {
            if let Some(b) = commit_buf {
                batch.arena().free(b);
            }
            return Err(self.abort(e));
        }

        // 6. Commit block, FUA.
        let commit_buf = match commit_buf {
            Some(b) => Some(b),
            None => {
                let (sec, nsec) = now_sec_nsec();
                self.build_commit(batch, l.commit(sec, nsec))
            }
        };
        if let Some(buf) = commit_buf {
            match self.extents.device_block(l.commit_block) {
                Ok(device_block) => {
                    let what = IoWhat::Commit {
                        journal_block: l.commit_block,
                    };
                    // PLANTED BUG (c), test-only: no FUA (and no flush after it).
                    let fua = !self.planted(PlantedBug::CommitWithoutFua);
                    batch.stage_owned(fua, device_block, buf, what);
                }
                Err(e) => {
                    batch.arena().free(buf);
                    batch.record(e);
                }
            }
        }
        batch.wait_all();
        if flush_late && !batch.failed() {
            batch.stage_flush();
            batch.wait_all();
        }
        times.commit_ns += lap.take();
        if let Some(e) = batch.take_error() {
            return Err(self.abort(e));
        }
        Ok(Done {
            next: l.next,
            wrote_superblock,
        })
    }

    /// Stages the journal writes, one request per physically contiguous run of at most 32
    /// consecutive journal blocks.
    fn stage_journal<Q: Queue>(
        &self,
        batch: &mut Batch<'_, Q>,
        writes: &[JournalWrite<'_>],
    ) -> RtResult<()> {
        let mut rest = writes;
        while let Some(first) = rest.first() {
            let (device_block, contiguous) = self.extents.run(first.journal_block)?;
            let max = (contiguous as usize).min(SEGMENTS_MAX);
            let mut n = 1;
            while n < max
                && rest.get(n).map(|w| w.journal_block)
                    == Some(first.journal_block.wrapping_add(n as u32))
            {
                n += 1;
            }
            let (run, tail) = rest.split_at(n.min(rest.len()));
            let what = IoWhat::Journal {
                journal_block: first.journal_block,
            };
            let blocks = run.iter().map(|w| &w.bytes[..]);
            if !batch.stage_copy(false, device_block, blocks, what) {
                return Ok(()); // the batch holds the failure
            }
            rest = tail;
        }
        Ok(())
    }

    /// The commit block in a journal buffer, or `None` with the failure recorded.
    fn build_commit<Q: Queue>(
        &self,
        batch: &mut Batch<'_, Q>,
        commit: crate::Result<JournalWrite<'static>>,
    ) -> Option<Buf> {
        match commit {
            Ok(w) => batch.copy_to_buf(std::iter::once(&w.bytes[..])),
            Err(e) => {
                batch.record(e.into());
                None
            }
        }
    }
}

/// PLANTED BUG (d)'s home writes of `metadata` (test-only; see [`PlantedBug`]).
fn stage_home<Q: Queue>(batch: &mut Batch<'_, Q>, metadata: &[DataBlock<'_>]) {
    let blocks: Vec<u64> = metadata.iter().map(|d| d.fs_block).collect();
    for (first, range) in home_runs(&blocks, SEGMENTS_MAX) {
        let run = metadata.get(range).unwrap_or_default();
        let what = IoWhat::Home { fs_block: first };
        if !batch.stage_copy(false, first, run.iter().map(|d| &d.contents[..]), what) {
            return;
        }
    }
}

/// Data writes must be aligned, non-empty and at most one request each.
fn check_data(sequence: u32, data: &[DataWrite]) -> RtResult<()> {
    for (index, d) in data.iter().enumerate() {
        let reason = if d.offset_bytes % BLOCK_BYTES as u64 != 0 {
            Some("offset is not a multiple of 4096")
        } else if d.len_bytes() > IO_BYTES_MAX as u64 || d.pages.len() > SEGMENTS_MAX {
            Some("larger than one request (128 KiB, 32 buffers)")
        } else if d.pages.is_empty() {
            Some("no pages")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(RuntimeError::BadDataWrite {
                sequence,
                index,
                offset_bytes: d.offset_bytes,
                len_bytes: d.len_bytes(),
                reason,
            });
        }
    }
    Ok(())
}

/// Wall-clock time for the commit block (recovery compares commit times of stale blocks).
fn now_sec_nsec() -> (u64, u32) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs(), d.subsec_nanos())
}
