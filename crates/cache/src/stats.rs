//! Counters of the page cache: relaxed atomics, read as a [`CacheStats`] snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the cache's counters.
///
/// Accounting: every [`crate::PageCache::lookup`] is a hit or a miss. When every miss is followed
/// by exactly one insertion call, `inserts + duplicates + raced + uncached == misses`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups that found the page (up to date or being filled).
    pub hits: u64,
    /// Lookups that found nothing.
    pub misses: u64,
    /// Insertions that created a locked page (the caller fills it).
    pub inserts: u64,
    /// Lazy (AIOS) insertions that found the page already there: the caller's read was a
    /// duplicate I/O; its page goes back to its pool.
    pub duplicates: u64,
    /// Vanilla insertions that found the page already there: no I/O, the caller waits for theirs.
    pub raced: u64,
    /// Insertions refused because nothing could be evicted under the cap: read without caching.
    pub uncached: u64,
    /// Up-to-date pages evicted by CLOCK.
    pub evictions: u64,
    /// Copy-outs that had to wait for a locked page.
    pub waits: u64,
    /// Fills that completed with an error (or were abandoned).
    pub fill_failures: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    // hits: counted in stripes per thread (`hint.rs`'s `Hints::count_hit`).
    pub misses: AtomicU64,
    pub inserts: AtomicU64,
    pub duplicates: AtomicU64,
    pub raced: AtomicU64,
    pub uncached: AtomicU64,
    pub evictions: AtomicU64,
    pub waits: AtomicU64,
    pub fill_failures: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub fn snapshot(&self) -> CacheStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheStats {
            hits: 0,
            misses: get(&self.misses),
            inserts: get(&self.inserts),
            duplicates: get(&self.duplicates),
            raced: get(&self.raced),
            uncached: get(&self.uncached),
            evictions: get(&self.evictions),
            waits: get(&self.waits),
            fill_failures: get(&self.fill_failures),
        }
    }
}
