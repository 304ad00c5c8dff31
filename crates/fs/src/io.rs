//! The per-thread I/O context: one block queue and a few scratch arena pages.
//!
//! # Role
//! Every operation of [`crate::Fs`] takes `&mut IoCtx`: the thread's own LBIO queue (queues may
//! be `!Send`, so a context stays on the thread that opened it) and up to
//! [`aios_device::SEGMENTS_MAX`] one-page buffers. A read of `n` blocks stages the last `n` pool
//! pages as the scatter-gather list of one request and waits for it ([`BlockQueue::run`]); the
//! pages then stay "loaded" and readable until the next read.
//!
//! # Invariants
//! - Every page of `pool` and `loaded` is an idle [`Buf`] of `arena` (the device's arena); pages
//!   of a request the device never reported back are not in either and are leaked, not reused.
//! - `loaded` holds the pages of the last successful read, in device order, and nothing else.
//! - Dropping the context returns its pages to the arena.

use std::sync::Arc;

use aios_block::{BlockQueue, Bufs};
use aios_device::{Arena, Buf, Op, Queue, BLOCK_SIZE, SEGMENTS_MAX};

use crate::FsError;

/// One thread's I/O context for one mounted [`crate::Fs`]. Make it with [`crate::Fs::io`].
pub struct IoCtx<Q: Queue> {
    pub(crate) fs_id: u64,
    queue: BlockQueue<Q>,
    arena: Arc<Arena>,
    pool: Vec<Buf>,
    loaded: Bufs,
}

impl<Q: Queue> IoCtx<Q> {
    pub(crate) fn new(fs_id: u64, queue: BlockQueue<Q>, arena: Arc<Arena>) -> Self {
        IoCtx {
            fs_id,
            queue,
            arena,
            pool: Vec::with_capacity(SEGMENTS_MAX),
            loaded: Bufs::new(),
        }
    }

    /// Reads `count` (1..=[`SEGMENTS_MAX`]) device blocks from `first_block` in one request.
    /// Afterwards [`page`](Self::page)`(i)` holds block `first_block + i`. Bounds against the file
    /// system are the caller's; the device refuses reads past its end.
    pub(crate) fn read_blocks(&mut self, first_block: u64, count: usize) -> Result<(), FsError> {
        debug_assert!((1..=SEGMENTS_MAX).contains(&count));
        let count = count.clamp(1, SEGMENTS_MAX);
        self.pool.extend(self.loaded.drain(..));
        while self.pool.len() < count {
            self.pool.push(self.arena.alloc(1)?);
        }
        let start = self.pool.len() - count;
        let offset_bytes = first_block.saturating_mul(BLOCK_SIZE as u64);
        match self
            .queue
            .run(Op::Read, offset_bytes, self.pool.drain(start..))
        {
            Ok(finished) => match finished.result {
                Ok(bytes) if bytes as usize == count * BLOCK_SIZE => {
                    self.loaded = finished.bufs;
                    Ok(())
                }
                Ok(bytes) => {
                    self.pool.extend(finished.bufs);
                    Err(FsError::ShortRead {
                        offset_bytes,
                        expected_bytes: count * BLOCK_SIZE,
                        read_bytes: bytes as usize,
                    })
                }
                Err(error) => {
                    self.pool.extend(finished.bufs);
                    Err(error.into())
                }
            },
            Err(refused) => {
                self.pool.extend(refused.bufs);
                Err(refused.error.into())
            }
        }
    }

    /// Block `i` of the last read: `BLOCK_SIZE` bytes, or empty if there is no such page.
    pub(crate) fn page(&self, i: usize) -> &[u8] {
        match self.loaded.get(i) {
            Some(buf) => self.arena.bytes(buf),
            None => &[],
        }
    }

    /// Pages currently held (pool and loaded), for tests and accounting.
    pub fn pages_held(&self) -> usize {
        self.pool.len() + self.loaded.len()
    }

    /// The block queue's counters.
    pub fn block_stats(&self) -> aios_block::BlockStats {
        self.queue.stats()
    }
}

impl<Q: Queue> Drop for IoCtx<Q> {
    fn drop(&mut self) {
        for buf in self.pool.drain(..).chain(self.loaded.drain(..)) {
            self.arena.free(buf);
        }
    }
}
