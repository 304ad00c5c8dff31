//! One group of commands in flight: staging with back-pressure, completion bookkeeping, the first
//! error, and where each request's buffers go when it completes.
//!
//! # Invariants
//! - `slots[tag]` is `Some` exactly while the journal's request with that tag is staged or in
//!   flight; `outstanding` counts them.
//! - Every buffer handed to [`Batch::stage`] ends up, exactly once, either in `kept` (the caller
//!   wants it back: read buffers) or back in the arena, except when the device queue itself
//!   fails: then the requests stay with the device and so do their buffers. Shared pages
//!   ([`Batch::stage_shared`]: data writes) stay owned by their request until it completes.
//! - The first failure is kept; later ones are dropped (the first names the cause).

use aios_block::{BlockQueue, Finished};
use std::sync::Arc;

use aios_device::{Arena, Buf, Op, Queue, SharedBuf};

use super::error::{IoWhat, Phase, RuntimeError};

/// Where a request's buffers go at completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dest {
    /// Back to the caller, in `kept[index]`.
    Keep(usize),
    /// Back to the arena.
    Free,
}

/// The commands of one step of the journal. See the module documentation.
pub(crate) struct Batch<'a, Q: Queue> {
    q: &'a mut BlockQueue<Q>,
    arena: &'a Arena,
    phase: Phase,
    slots: Vec<Option<(IoWhat, Dest)>>,
    outstanding: usize,
    first_error: Option<RuntimeError>,
    queue_failed: bool,
    /// Buffers handed back, by `Dest::Keep` index.
    pub(crate) kept: Vec<Option<Buf>>,
}

impl<'a, Q: Queue> Batch<'a, Q> {
    /// A batch over an idle queue.
    pub(crate) fn new(
        q: &'a mut BlockQueue<Q>,
        arena: &'a Arena,
        phase: Phase,
        kept_slots: usize,
    ) -> Result<Self, RuntimeError> {
        let busy = q.busy();
        if busy != 0 {
            return Err(RuntimeError::QueueBusy { phase, busy });
        }
        let depth = usize::from(q.depth());
        Ok(Batch {
            q,
            arena,
            phase,
            slots: (0..depth).map(|_| None).collect(),
            outstanding: 0,
            first_error: None,
            queue_failed: false,
            kept: (0..kept_slots).map(|_| None).collect(),
        })
    }

    pub(crate) fn arena(&self) -> &'a Arena {
        self.arena
    }

    /// True once any command failed or was refused.
    pub(crate) fn failed(&self) -> bool {
        self.first_error.is_some()
    }

    /// The first failure, if any (the batch keeps no error afterwards).
    pub(crate) fn take_error(&mut self) -> Option<RuntimeError> {
        self.first_error.take()
    }

    /// Records a failure found outside the device (e.g. building a block).
    pub(crate) fn record(&mut self, error: RuntimeError) {
        if self.first_error.is_none() {
            self.first_error = Some(error);
        }
    }

    /// Stages one command, first waiting for a free request slot if all are busy. A refusal is
    /// recorded as the batch's failure and the buffers go where `dest` says. Returns whether the
    /// command was staged.
    pub(crate) fn stage(
        &mut self,
        op: Op,
        offset_bytes: u64,
        bufs: Vec<Buf>,
        what: IoWhat,
        dest: Dest,
    ) -> bool {
        while !self.q.has_free_slot() && !self.queue_failed {
            self.submit();
            self.reap(1);
        }
        if self.queue_failed {
            self.give_back(bufs, dest);
            return false;
        }
        match self.q.stage(op, offset_bytes, bufs) {
            Ok(tag) => {
                if let Some(slot) = self.slots.get_mut(usize::from(tag)) {
                    *slot = Some((what, dest));
                }
                self.outstanding += 1;
                true
            }
            Err(refused) => {
                self.record(RuntimeError::Refused {
                    phase: self.phase,
                    what,
                    source: refused.error,
                });
                self.give_back(refused.bufs, dest);
                false
            }
        }
    }

    /// Stages one write of shared pages (a data write), like [`Batch::stage`]; the request
    /// keeps its owners of the pages until it completes. Returns whether it was staged.
    pub(crate) fn stage_shared(
        &mut self,
        offset_bytes: u64,
        pages: &[Arc<SharedBuf>],
        what: IoWhat,
    ) -> bool {
        while !self.q.has_free_slot() && !self.queue_failed {
            self.submit();
            self.reap(1);
        }
        if self.queue_failed {
            return false;
        }
        match self
            .q
            .stage_shared_write(false, offset_bytes, pages.iter().cloned())
        {
            Ok(tag) => {
                if let Some(slot) = self.slots.get_mut(usize::from(tag)) {
                    *slot = Some((what, Dest::Free));
                }
                self.outstanding += 1;
                true
            }
            Err(source) => {
                self.record(RuntimeError::Refused {
                    phase: self.phase,
                    what,
                    source,
                });
                false
            }
        }
    }

    /// Starts everything staged.
    pub(crate) fn submit(&mut self) {
        if self.queue_failed {
            return;
        }
        if let Err(source) = self.q.submit() {
            self.fail_queue(source);
        }
    }

    /// Waits for every command of the batch (submitting what is staged first).
    pub(crate) fn wait_all(&mut self) {
        self.submit();
        while self.outstanding > 0 && !self.queue_failed {
            self.reap(1);
        }
    }

    fn reap(&mut self, min: usize) {
        if let Err(source) = self.q.wait(min) {
            self.fail_queue(source);
            return;
        }
        while let Some(tag) = self.q.pop_done() {
            let finished = self.q.finish(tag);
            self.complete(finished);
        }
    }

    fn complete(&mut self, finished: Finished) {
        let entry = self
            .slots
            .get_mut(usize::from(finished.tag))
            .and_then(Option::take);
        let (what, dest) = match entry {
            Some(e) => e,
            // Not ours (the queue was idle at the start, so this cannot happen): free the memory.
            None => (IoWhat::Flush, Dest::Free),
        };
        self.outstanding = self.outstanding.saturating_sub(1);
        if let Err(source) = finished.result {
            self.record(RuntimeError::Io {
                phase: self.phase,
                what,
                source,
            });
        }
        self.give_back(finished.bufs.into_iter().collect(), dest);
    }

    fn give_back(&mut self, bufs: Vec<Buf>, dest: Dest) {
        let mut bufs = bufs.into_iter();
        if let Dest::Keep(i) = dest {
            if let Some(slot) = self.kept.get_mut(i) {
                *slot = bufs.next();
            }
        }
        for b in bufs {
            self.arena.free(b);
        }
    }

    fn fail_queue(&mut self, source: aios_device::DeviceError) {
        self.queue_failed = true;
        // The queue error is the cause of everything after it: it replaces a later-reported one
        // only if nothing failed before.
        self.record(RuntimeError::Queue {
            phase: self.phase,
            source,
        });
    }
}

impl<Q: Queue> Drop for Batch<'_, Q> {
    /// A batch is always waited for before it goes; this catches an early return that forgot.
    fn drop(&mut self) {
        if self.outstanding > 0 && !self.queue_failed {
            self.wait_all();
        }
    }
}

impl<Q: Queue> Batch<'_, Q> {
    /// Copies `blocks` (4 KiB each) into one new arena buffer. An allocation failure is
    /// recorded as the batch's failure.
    pub(crate) fn copy_to_buf<'b>(
        &mut self,
        blocks: impl ExactSizeIterator<Item = &'b [u8]>,
    ) -> Option<Buf> {
        let pages = blocks.len() as u32;
        let mut buf = match self.arena.alloc(pages.max(1)) {
            Ok(b) => b,
            Err(source) => {
                self.record(RuntimeError::Arena {
                    phase: self.phase,
                    source,
                });
                return None;
            }
        };
        let bytes = self.arena.bytes_mut(&mut buf);
        for (dst, src) in bytes.chunks_exact_mut(BLOCK_BYTES).zip(blocks) {
            let n = src.len().min(BLOCK_BYTES);
            if let (Some(d), Some(s)) = (dst.get_mut(..n), src.get(..n)) {
                d.copy_from_slice(s);
            }
        }
        Some(buf)
    }

    /// Stages a write of a journal-owned buffer at `device_block`; the buffer goes back to the
    /// arena at completion.
    pub(crate) fn stage_owned(
        &mut self,
        fua: bool,
        device_block: u64,
        buf: Buf,
        what: IoWhat,
    ) -> bool {
        let offset_bytes = device_block.saturating_mul(BLOCK_BYTES as u64);
        self.stage(Op::Write { fua }, offset_bytes, vec![buf], what, Dest::Free)
    }

    /// [`Batch::copy_to_buf`], then [`Batch::stage_owned`].
    pub(crate) fn stage_copy<'b>(
        &mut self,
        fua: bool,
        device_block: u64,
        blocks: impl ExactSizeIterator<Item = &'b [u8]>,
        what: IoWhat,
    ) -> bool {
        match self.copy_to_buf(blocks) {
            Some(buf) => self.stage_owned(fua, device_block, buf, what),
            None => false,
        }
    }

    /// Stages a flush.
    pub(crate) fn stage_flush(&mut self) -> bool {
        self.stage(Op::Flush, 0, Vec::new(), IoWhat::Flush, Dest::Free)
    }
}

/// Bytes of a block (journal, file system and device blocks are all 4 KiB).
pub(crate) const BLOCK_BYTES: usize = crate::format::BLOCK_SIZE_BYTES;

/// Runs of consecutive file system blocks, at most `max` each: `(first block, indexes)`.
pub(crate) fn home_runs(blocks: &[u64], max: usize) -> Vec<(u64, std::ops::Range<usize>)> {
    let mut runs: Vec<(u64, std::ops::Range<usize>)> = Vec::new();
    for (i, &b) in blocks.iter().enumerate() {
        match runs.last_mut() {
            Some((first, r)) if r.len() < max && first.checked_add(r.len() as u64) == Some(b) => {
                r.end = i + 1;
            }
            _ => runs.push((b, i..i + 1)),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    #[test]
    fn home_runs_split_at_gaps_and_max() {
        let runs = super::home_runs(&[1, 2, 3, 7, 8, 9, 10], 3);
        assert_eq!(runs, vec![(1, 0..3), (7, 3..6), (10, 6..7)]);
        assert!(super::home_runs(&[], 3).is_empty());
    }
}
