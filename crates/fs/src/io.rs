//! The per-thread I/O context: one block queue, a few scratch arena pages, the page pool of the
//! async read mode and the optional per-stage [`Breakdown`].
//!
//! # Role
//! Every operation of [`crate::Fs`] takes `&mut IoCtx`: the thread's own LBIO queue (queues may
//! be `!Send`, so a context stays on the thread that opened it) and up to
//! [`aios_device::SEGMENTS_MAX`] one-page scratch buffers for metadata and `read_at`.
//! Cached reads ([`crate::Fs::read`]) use the queue, the [`PagePool`] (async mode: `Some`) and
//! record into the breakdown when it is on. A read of `n` blocks stages the last `n` pool
//! pages as the scatter-gather list of one request and waits for it ([`BlockQueue::run`]); the
//! pages then stay "loaded" and readable until the next read.
//!
//! # Invariants
//! - Every page of `pool` and `loaded` is an idle [`Buf`] of `arena` (the device's arena); pages
//!   of a request the device never reported back are not in either and are leaked, not reused.
//! - `loaded` holds the pages of the last successful read, in device order, and nothing else.
//! - Dropping the context returns its pages to the arena.

use std::sync::Arc;

use aios_block::{BlockQueue, Bufs, Finished, State};
use aios_cache::PagePool;
use aios_device::{Arena, Buf, Op, Queue, Tag, BLOCK_SIZE, SEGMENTS_MAX};

use crate::breakdown::Sample;
use crate::readahead_state::{Pending, ReadaheadStats};
use crate::{Breakdown, FsError};

/// One thread's I/O context for one mounted [`crate::Fs`]. Make it with [`crate::Fs::io`].
pub struct IoCtx<Q: Queue> {
    pub(crate) fs_id: u64,
    pub(crate) queue: BlockQueue<Q>,
    arena: Arc<Arena>,
    pool: Vec<Buf>,
    loaded: Bufs,
    /// The async order's pre-registered pages (`None` when misses run the vanilla order: sync
    /// mode, or async on a device that completes inside `submit`; see `Fs::miss_order`).
    pub(crate) page_pool: Option<PagePool>,
    breakdown: Option<Breakdown>,
    /// Readahead requests in flight (see `readahead`).
    pub(crate) readahead: Vec<Pending>,
    pub(crate) readahead_stats: ReadaheadStats,
}

impl<Q: Queue> IoCtx<Q> {
    pub(crate) fn new(
        fs_id: u64,
        queue: BlockQueue<Q>,
        arena: Arc<Arena>,
        page_pool: Option<PagePool>,
        breakdown: bool,
    ) -> Self {
        IoCtx {
            fs_id,
            queue,
            arena,
            pool: Vec::with_capacity(SEGMENTS_MAX),
            loaded: Bufs::new(),
            page_pool,
            breakdown: breakdown.then(Breakdown::default),
            readahead: Vec::new(),
            readahead_stats: ReadaheadStats::default(),
        }
    }

    /// The per-stage breakdown recorded so far, if recording is on.
    pub fn breakdown(&self) -> Option<&Breakdown> {
        self.breakdown.as_ref()
    }

    /// Starts recording (keeping what was recorded) or stops (forgetting it).
    pub fn set_breakdown(&mut self, on: bool) {
        match (on, self.breakdown.is_some()) {
            (true, false) => self.breakdown = Some(Breakdown::default()),
            (false, true) => self.breakdown = None,
            _ => {}
        }
    }

    /// Clears the recorded breakdown, keeping recording on if it was.
    pub fn reset_breakdown(&mut self) {
        if let Some(b) = self.breakdown.as_mut() {
            b.reset();
        }
    }

    pub(crate) fn recording(&self) -> bool {
        self.breakdown.is_some()
    }

    pub(crate) fn record(&mut self, sample: Option<Sample>) {
        if let (Some(b), Some(sample)) = (self.breakdown.as_mut(), sample) {
            b.add(&sample);
        }
    }

    /// What this context's sequential readahead did.
    pub fn readahead_stats(&self) -> ReadaheadStats {
        self.readahead_stats
    }

    /// Pages ready in the async order's pool (0 when misses run the vanilla order).
    pub fn pool_pages(&self) -> usize {
        self.page_pool.as_ref().map_or(0, PagePool::len)
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
        abandon_pending(&mut self.queue, &self.arena, &mut self.readahead);
        for buf in self.pool.drain(..).chain(self.loaded.drain(..)) {
            self.arena.free(buf);
        }
    }
}

/// `device_wait`: reaps until `tag` is done and finishes it.
pub(crate) fn wait<Q: Queue>(q: &mut BlockQueue<Q>, tag: Tag) -> Result<Finished, FsError> {
    while q.request(tag).state() != State::Done {
        q.wait(1)?;
    }
    Ok(q.finish(tag))
}

/// Waits for and frees the pages of readaheads still pending when a context is dropped.
fn abandon_pending<Q: Queue>(queue: &mut BlockQueue<Q>, arena: &Arena, pending: &mut Vec<Pending>) {
    for p in pending.drain(..) {
        if let Ok(done) = wait(queue, p.tag) {
            for buf in done.bufs {
                arena.free(buf);
            }
        }
    }
}
