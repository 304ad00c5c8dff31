//! Checkpoint: committed metadata goes home, then the tail advances; and clean unmount.
//!
//! # Order (each step only after the previous one completed without error)
//! 1. Write every pending block (newest committed contents, revoked blocks excluded) to its home
//!    location, in runs of consecutive blocks.
//! 2. Flush (only when step 1 wrote anything).
//! 3. Write the journal superblock with FUA: `s_start` = the head (the log is empty) and
//!    `s_sequence` = the next sequence; on unmount `s_start = 0` (clean).
//!
//! A failure at any step aborts the journal; the tail stays where the device has it, so
//! recovery replays the transactions again (idempotent: the same blocks, the same contents).

use aios_block::BlockQueue;
use aios_device::{Arena, Queue, SEGMENTS_MAX};

use super::error::{IoWhat, Phase};
use super::io::{home_runs, Batch};
use super::journal::Journal;
use super::plant::PlantedBug;
use super::RtResult;

/// What a checkpoint did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checkpointed {
    /// Blocks written home.
    pub home_blocks: u64,
    /// Journal blocks freed.
    pub freed_blocks: u64,
}

impl Journal {
    /// Writes every committed metadata block home, flushes, and advances the tail to the head
    /// (the log is then empty). Called by [`Journal::commit`] when the next transaction does not
    /// fit; callable any time between commits.
    pub fn checkpoint<Q: Queue>(
        &mut self,
        q: &mut BlockQueue<Q>,
        arena: &Arena,
    ) -> RtResult<Checkpointed> {
        self.check_running()?;
        if self.pending.is_empty() && self.used_blocks == 0 {
            return Ok(Checkpointed::default());
        }
        self.checkpoint_to(q, arena, Phase::Checkpoint, false)
    }

    /// Checkpoints and marks the journal clean (`s_start = 0`) with FUA. An aborted journal is
    /// left as it is for recovery and the abort is returned.
    pub fn unmount<Q: Queue>(mut self, q: &mut BlockQueue<Q>, arena: &Arena) -> RtResult<()> {
        self.check_running()?;
        if self.on_disk_start == 0 && self.pending.is_empty() {
            return Ok(()); // never used since open: the device already says clean
        }
        self.checkpoint_to(q, arena, Phase::Unmount, true)
            .map(|_| ())
    }

    fn checkpoint_to<Q: Queue>(
        &mut self,
        q: &mut BlockQueue<Q>,
        arena: &Arena,
        phase: Phase,
        clean: bool,
    ) -> RtResult<Checkpointed> {
        let mut batch = Batch::new(q, arena, phase, 0)?;
        let blocks: Vec<u64> = self.pending.keys().copied().collect();
        for (first, range) in home_runs(&blocks, SEGMENTS_MAX) {
            let contents = blocks
                .get(range)
                .unwrap_or_default()
                .iter()
                .filter_map(|b| self.pending.get(b))
                .map(|c| &c[..])
                .collect::<Vec<&[u8]>>();
            let what = IoWhat::Home { fs_block: first };
            if !batch.stage_copy(false, first, contents.into_iter(), what) {
                break;
            }
        }
        let start = if clean { 0 } else { self.head.journal_block };
        let sequence = self.head.sequence;
        let tail_early = self.planted(PlantedBug::TailBeforeHomeFlush);
        if tail_early {
            // PLANTED BUG (e), test-only: the superblock goes out beside the home writes.
            if let Err(e) = self.stage_superblock(&mut batch, start, sequence, true) {
                batch.record(e);
            }
        }
        if !blocks.is_empty() {
            batch.wait_all();
            if let Some(e) = batch.take_error() {
                return Err(self.abort(e));
            }
            batch.stage_flush();
            batch.wait_all();
            if let Some(e) = batch.take_error() {
                return Err(self.abort(e));
            }
        }
        if !tail_early {
            if let Err(e) = self.stage_superblock(&mut batch, start, sequence, true) {
                batch.record(e);
            }
        }
        batch.wait_all();
        if let Some(e) = batch.take_error() {
            return Err(self.abort(e));
        }
        let done = Checkpointed {
            home_blocks: blocks.len() as u64,
            freed_blocks: self.used_blocks,
        };
        self.pending.clear();
        self.tail = self.head;
        self.used_blocks = 0;
        self.on_disk_start = start;
        Ok(done)
    }
}
