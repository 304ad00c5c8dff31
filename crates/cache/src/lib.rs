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
//! - **A hit costs no system call and writes nothing another thread reads**:
//!   [`PageCache::read_cached`] first tries the write-free hit (`hint.rs`): a direct-mapped slot
//!   names the arena page last published for the key, whose sequence count and stored key say
//!   it still holds the key's bytes; the bytes are copied and the count checked again (a
//!   sequence-lock read). Hits of many threads scale with the cores. A page's first hit (which
//!   publishes it), a slot lost to a collision, a page being filled, and the lookups of a
//!   thread whose last ones all missed (a cold stream skips the probe) take the locked hit: one shard lock (64 shards by default, by key
//!   hash, each on cache lines of its own), one probe of a map keyed by a pre-mixed hash, and
//!   the memcpy under the lock.
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
//! CLOCK per shard, the hand moving over shards globally: a page starts unreferenced (read once,
//! it is the first to go, as on the kernel's inactive list); a hit sets its referenced bit; the
//! hand clears it once (second chance) and evicts only an `UpToDate` page whose `Arc` is held by
//! the index alone. Readers hold a [`PageRef`] (an `Arc`) while they copy, and new references are
//! made only under the shard lock, so "count == 1 under the lock" means no one can read the page;
//! the evictor then owns the `CachedPage` outright (`Arc::try_unwrap`) before taking its `Buf`.
//! A page held by a reader is skipped, never freed under it. Write-free hits hold nothing: the
//! evictor retires the page's sequence count before its `Buf` goes anywhere, so a hit that
//! copied while the memory was being reused sees the count move and discards its copy; their
//! referenced bits live beside the count, and the hand clears both. Evicted memory goes to a pool
//! (directly from [`PagePool::refill`], or parked when an insertion had to make room).
//!
//! ## Later
//! Written pages are not indexed here yet: the read-write mount keeps a buffered write's bytes
//! as immutable `aios_fs::DataPage`s in the same arena and writes them back itself, and bumps
//! the file's key epoch so no older page of it is found here. Indexing those pages (a `Dirty`
//! state, see [`PageState`]) and readahead windows are still to come.

mod cache;
pub mod error;
mod hint;
mod page;
mod pool;
mod shard;
mod stats;

pub use cache::{Cached, Evicted, FillFailed, FillTicket, Insert, InsertOrder, PageCache};
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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

    /// A well-mixed 64-bit digest (splitmix64 finaliser), so consecutive pages spread over
    /// shards and buckets. Computed once per lookup: it picks the shard and is the map's hash.
    fn mixed(self) -> u64 {
        let mut x = self.file_id.rotate_left(32) ^ self.page_index;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    /// The shard of this key among `shards`. Takes bits 32..48 of the digest: the map uses the
    /// low bits for its bucket and the top 7 as tags, so keys of one shard still differ there.
    fn shard(self, shards: usize) -> usize {
        ((self.mixed() >> 32) as u16 as usize) % shards
    }
}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.mixed());
    }
}

/// The shard maps' hasher: the key already hashed itself ([`Key::mixed`]), so this passes the
/// digest through instead of running SipHash over it (a third of a cache hit's instructions).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `Key` is hashed with this hasher, through `write_u64`; stay correct regardless.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_u64(&mut self, x: u64) {
        self.0 = x;
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

#[cfg(test)]
mod tests {
    use super::Key;

    #[test]
    fn consecutive_pages_spread_evenly_over_shards() {
        let shards = 64;
        let mut per_shard = vec![0u32; shards];
        for page in 0..65_536u64 {
            per_shard[Key::new(12, page).shard(shards)] += 1;
        }
        let mean = 65_536 / shards as u32;
        for (shard, &n) in per_shard.iter().enumerate() {
            assert!(
                n > mean * 8 / 10 && n < mean * 12 / 10,
                "shard {shard}: {n} keys"
            );
        }
    }

    #[test]
    fn keys_of_one_shard_still_differ_in_the_bits_the_map_uses() {
        // The map takes its bucket from the low bits and its tag from the top 7: keys of one
        // shard must not agree there.
        let keys: Vec<u64> = (0..65_536u64)
            .map(|page| Key::new(3, page))
            .filter(|k| k.shard(64) == 0)
            .map(|k| k.mixed())
            .collect();
        assert!(keys.len() > 500);
        let low: std::collections::HashSet<u64> = keys.iter().map(|h| h & 0x3ff).collect();
        let tags: std::collections::HashSet<u64> = keys.iter().map(|h| h >> 57).collect();
        assert!(low.len() > 300, "{} distinct low-bit buckets", low.len());
        assert_eq!(tags.len(), 128, "top-7-bit tags");
    }
}
