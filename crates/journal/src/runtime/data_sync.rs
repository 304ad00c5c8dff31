//! A data-only sync: `fdatasync` of in-place overwrites, which need no commit.
//!
//! When no metadata a read of the data depends on changed (the block map, the size; only the
//! times did), the data written in place plus a flush make the data durable: after a crash
//! the committed metadata still points at those blocks. ext4 does the same (its
//! `ext4_sync_file` skips the journal when `i_datasync_tid` is committed and issues a cache
//! flush).
//!
//! It does not touch the log, so it needs no [`super::Journal`]: the file system runs data
//! syncs of different files side by side, and never beside a commit.
//!
//! # One write: FUA instead of write, wait, flush (`Async` order)
//! A data sync needs only its own writes durable: every earlier write path (commit, data
//! sync, checkpoint) flushed before it reported. So when the data is one command, the `Async`
//! order writes it with FUA and skips the flush: one device round trip and one completion
//! instead of two. The `Sync` (vanilla) order keeps ext4's write, wait, flush. Measured on the
//! virtio disk, where FUA is a write then a flush inside the host kernel
//! (`examples/durable_write_latency.rs`): 87.3 us sleeping and 76.6 us polled, against 92.9
//! and 84.9 us for the write and the flush as two commands. Several commands keep the single
//! flush: N FUA writes cost N flushes on such a device.
//!
//! # Promises
//! - The flush is staged only after every data write completed without error; `Ok` only when
//!   the flush completed (or the one FUA write did).
//! - Any failure is returned: the data is not durable. The caller must then stop every later
//!   commit and sync from reporting it durable (fsyncgate); `aios-fs` makes the mount
//!   read-only.
//! - Every buffer comes back in [`CommitOutcome::data`] (input order), except after a
//!   [`super::RuntimeError::Queue`] failure.

use std::time::Instant;

use aios_block::BlockQueue;
use aios_device::{Arena, Queue};

use super::commit::{
    returned_data, stage_data, CommitOutcome, CommitTimes, Committed, DataWrite, Lap,
};
use super::error::Phase;
use super::io::Batch;
use super::journal::CommitOrder;

/// Writes `data` in place, waits for it, flushes (in `Async` order one command is written
/// with FUA instead). See the module documentation. The result's [`Committed`] has sequence 0
/// and zero journal blocks; its times fill `submit_ns`, `wait_ns` and `flush_ns`.
pub fn sync_data<Q: Queue>(
    q: &mut BlockQueue<Q>,
    arena: &Arena,
    data: Vec<DataWrite>,
    order: CommitOrder,
) -> CommitOutcome {
    let phase = Phase::DataSync;
    let mut times = CommitTimes::default();
    let mut lap = Lap(Instant::now());
    let offsets: Vec<u64> = data.iter().map(|d| d.offset_bytes).collect();
    let mut batch = match Batch::new(q, arena, phase, data.len()) {
        Ok(b) => b,
        Err(e) => {
            return CommitOutcome {
                result: Err(e),
                data,
            }
        }
    };
    let fua = order == CommitOrder::Async && data.len() == 1;
    stage_data(&mut batch, data, fua);
    batch.submit();
    times.submit_ns = lap.take();
    batch.wait_all();
    times.wait_ns = lap.take();
    let mut error = batch.take_error();
    if error.is_none() && !fua {
        batch.stage_flush();
        batch.wait_all();
        times.flush_ns = lap.take();
        error = batch.take_error();
    }
    let data = returned_data(offsets, batch);
    let result = match error {
        Some(e) => Err(e),
        None => Ok(Committed {
            sequence: 0,
            journal_block: 0,
            journal_blocks: 0,
            checkpointed: false,
            times,
        }),
    };
    CommitOutcome { result, data }
}
