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
//! # Promises
//! - The flush is staged only after every data write completed without error; `Ok` only when
//!   the flush completed.
//! - Any failure is returned: the data is not durable. The caller must then stop every later
//!   commit and sync from reporting it durable (fsyncgate); `aios-fs` makes the mount
//!   read-only.
//! - The pages are written from the caller's shared buffers, never copied.

use std::time::Instant;

use aios_block::BlockQueue;
use aios_device::{Arena, Queue};

use super::commit::{stage_data, CommitTimes, Committed, DataWrite, Lap};
use super::error::Phase;
use super::io::Batch;
use super::RtResult;

/// Writes `data` in place, waits for it, flushes. See the module documentation. The result's
/// [`Committed`] has sequence 0 and zero journal blocks; its times fill `submit_ns`, `wait_ns`
/// and `flush_ns`.
pub fn sync_data<Q: Queue>(
    q: &mut BlockQueue<Q>,
    arena: &Arena,
    data: &[DataWrite],
) -> RtResult<Committed> {
    write_in_place(q, arena, data, true)
}

/// Writes `data` in place and waits for it, without a flush: the kernel's writeback of dirty
/// pages. The data is *not* durable on `Ok`; a later flush (a commit's, a data sync's) that
/// is issued after this returned makes it so.
pub fn write_data<Q: Queue>(
    q: &mut BlockQueue<Q>,
    arena: &Arena,
    data: &[DataWrite],
) -> RtResult<Committed> {
    write_in_place(q, arena, data, false)
}

fn write_in_place<Q: Queue>(
    q: &mut BlockQueue<Q>,
    arena: &Arena,
    data: &[DataWrite],
    flush: bool,
) -> RtResult<Committed> {
    let phase = Phase::DataSync;
    let mut times = CommitTimes::default();
    let mut lap = Lap(Instant::now());
    let mut batch = Batch::new(q, arena, phase, 0)?;
    stage_data(&mut batch, data);
    batch.submit();
    times.submit_ns = lap.take();
    batch.wait_all();
    times.wait_ns = lap.take();
    let mut error = batch.take_error();
    if error.is_none() && flush {
        batch.stage_flush();
        batch.wait_all();
        times.flush_ns = lap.take();
        error = batch.take_error();
    }
    drop(batch);
    match error {
        Some(e) => Err(e),
        None => Ok(Committed {
            sequence: 0,
            journal_block: 0,
            journal_blocks: 0,
            checkpointed: false,
            times,
        }),
    }
}
