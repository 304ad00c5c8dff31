//! # aios-cache: the page cache and per-thread page pools (the AIOS read path)
//!
//! Role: sits above the block layer and below the file system. It keeps file pages in memory,
//! lets many threads share them, and lets a reader overlap cache bookkeeping with the device.
//!
//! ## What it assumes from below
//! - The device's [`Arena`](aios_device::Arena): a cached page *is* a one-page
//!   [`Buf`](aios_device::Buf) of the arena, so a read fills it with no copy and, on io_uring,
//!   through a registered (fixed) buffer. A `Buf` is unique; whoever holds it owns the page.
//! - The caller does the I/O (through `aios-block`) and reports each fill's result honestly:
//!   the bytes read and the device's error. This crate never touches a queue.
//!
//! ## What it promises above
//! - **A hit costs no system call**: [`PageCache::lookup`] is one shard lock (64 shards by
//!   default, by key hash) and an `Arc` clone.
//! - **Never wrong data**: a page becomes `UpToDate` only with a full, successful page read; an
//!   up-to-date page is never written, so readers share it immutably. A failed fill leaves the
//!   index *before* it is marked failed: waiters get [`CacheError::FillFailedElsewhere`], the
//!   filler [`CacheError::Fill`] naming the key and the device error, and the next read retries.
//! - **Never a hang**: a reader of a locked page spins politely
//!   ([`aios_device::PoliteSpin`]) for at most [`CacheConfig::wait_timeout_ms`], then gets
//!   [`CacheError::WaitTimeout`]; a filler that drops its [`FillTicket`] fails the page.
//! - **A cap**: at most [`CacheConfig::max_pages`] pages are indexed (locked or up to date).
//!   Pages in per-thread pools and in flight are outside the cap: arena use is bounded by
//!   `max_pages` + the pools' capacities + reclaimed pages parked for pools.
//!
//! ## The two insertion orders (the mount's `sync` and `async` read modes)
//! Both share [`PageCache::insert`]; only *when* it runs relative to the submit differs.
//! - **Vanilla** ([`PageCache::insert_locked`]), before the I/O: `lookup` misses ->
//!   `insert_locked` -> `Fill(ticket)`: take a page, submit, wait, [`PageCache::complete_fill`],
//!   copy out; or `Present(page)`: someone else fills it, [`PageCache::copy_out`] waits for
//!   theirs (counted `raced`).
//! - **AIOS lazy insertion** ([`PageCache::insert_filled_later`]): `lookup` misses -> take a page
//!   from the thread's [`PagePool`] -> submit the read -> `insert_filled_later` while the device
//!   works -> [`PagePool::refill`] -> wait. Then `Fill(ticket)`: `complete_fill` publishes the
//!   caller's page; `Present(_)`: the read was a **duplicate** (counted): the caller copies out of
//!   its own, correct buffer and [`PagePool::release`]s it; `Uncached`: same, without counting.
//!
//! ## Eviction and reuse (soundness)
//! CLOCK per shard, the hand moving over shards globally: a hit sets a page's referenced bit; the
//! hand clears it once (second chance) and evicts only an `UpToDate` page whose `Arc` is held by
//! the index alone. Readers hold a [`PageRef`] (an `Arc`) while they copy, and new references are
//! made only under the shard lock, so "count == 1 under the lock" means no one can read the page;
//! the evictor then owns the `CachedPage` outright (`Arc::try_unwrap`) before taking its `Buf`.
//! A page held by a reader is skipped, never freed under it. Evicted memory goes to a pool
//! (directly from [`PagePool::refill`], or parked when an insertion had to make room).
//!
//! ## Later
//! `Dirty` pages (write path), writeback, and readahead windows are not here yet; see
//! [`PageState`].

mod cache;
pub mod error;
mod page;
mod pool;
mod shard;
mod stats;

pub use cache::{Evicted, FillFailed, FillTicket, Insert, InsertOrder, PageCache};
pub use error::CacheError;
pub use page::{CachedPage, PageRef, PageState};
pub use pool::PagePool;
pub use stats::CacheStats;

use std::fmt;

/// Shards of the index by default: enough that 8-64 threads rarely meet on one lock.
pub const SHARDS_DEFAULT: usize = 64;
/// Default bound on waiting for a locked page: generous, a safety net rather than a latency.
pub const WAIT_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// A page of a file: which file and which 4 KiB page of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub file_id: u64,
    pub page_index: u64,
}

impl Key {
    pub fn new(file_id: u64, page_index: u64) -> Key {
        Key {
            file_id,
            page_index,
        }
    }

    /// The shard of this key among `shards` (a cheap mix, so consecutive pages spread).
    fn shard(self, shards: usize) -> usize {
        let mut x = self.file_id.rotate_left(32) ^ self.page_index;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        (x % shards as u64) as usize
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "file {} page {}", self.file_id, self.page_index)
    }
}

/// Limits of a [`PageCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Most pages indexed at once (the memory cap, in 4 KiB pages).
    pub max_pages: usize,
    /// Shards of the index.
    pub shards: usize,
    /// Longest wait for a locked page before [`CacheError::WaitTimeout`].
    pub wait_timeout_ms: u64,
}

impl CacheConfig {
    /// A cache of `max_pages` pages with default sharding and wait limit.
    pub fn with_max_pages(max_pages: usize) -> CacheConfig {
        CacheConfig {
            max_pages,
            shards: SHARDS_DEFAULT,
            wait_timeout_ms: WAIT_TIMEOUT_MS_DEFAULT,
        }
    }

    fn validate(&self) -> Result<(), CacheError> {
        let reason = if self.max_pages == 0 {
            "max_pages must be at least 1"
        } else if self.shards == 0 {
            "shards must be at least 1"
        } else if self.wait_timeout_ms == 0 {
            "wait_timeout_ms must be at least 1"
        } else {
            return Ok(());
        };
        Err(CacheError::BadConfig { reason })
    }
}
