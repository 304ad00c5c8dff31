//! What readahead keeps between reads (the logic is `readahead.rs`): a file handle's
//! sequential-access state ([`SeqState`]), a context's requests in flight ([`Pending`]) and its
//! counters ([`ReadaheadStats`]). A leaf: the I/O context and file handles hold these.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use aios_device::Tag;

use crate::cache_id::CacheId;

/// A file handle's sequential-access state (atomics, so a shared `&File` stays `Sync`).
#[derive(Debug, Default)]
pub(crate) struct SeqState {
    /// Where the previous read on this handle ended.
    pub(crate) next_offset_bytes: AtomicU64,
    /// First page not yet read ahead (0: no readahead stream).
    pub(crate) frontier_page: AtomicU64,
    /// Advised random access: never read ahead.
    pub(crate) random: AtomicBool,
}

impl SeqState {
    pub(crate) fn set_random(&self, random: bool) {
        self.random.store(random, Ordering::Relaxed);
    }

    /// Takes `from`'s stream: a read ends at `next_offset_bytes`, readahead stood where
    /// `from`'s frontier is (a handle lending its state to a read through another `File`, and
    /// taking it back).
    pub(crate) fn follow(&self, next_offset_bytes: u64, from: &SeqState) {
        self.next_offset_bytes
            .store(next_offset_bytes, Ordering::Relaxed);
        self.frontier_page.store(
            from.frontier_page.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
    }

    /// Where the previous read ended.
    pub(crate) fn next_offset(&self) -> u64 {
        self.next_offset_bytes.load(Ordering::Relaxed)
    }
}

impl Clone for SeqState {
    fn clone(&self) -> Self {
        SeqState {
            next_offset_bytes: AtomicU64::new(self.next_offset_bytes.load(Ordering::Relaxed)),
            frontier_page: AtomicU64::new(self.frontier_page.load(Ordering::Relaxed)),
            random: AtomicBool::new(self.random.load(Ordering::Relaxed)),
        }
    }
}

/// A readahead request in flight.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pending {
    pub(crate) tag: Tag,
    /// Whose pages (inode and data epoch) it reads.
    pub(crate) cache: CacheId,
    pub(crate) first_page: u64,
    pub(crate) pages: usize,
}

/// What one context's readahead did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadaheadStats {
    /// Readahead requests submitted.
    pub requests: u64,
    /// Pages they covered.
    pub pages: u64,
    /// Pages published into the cache when reaped.
    pub cached_pages: u64,
    /// Requests that failed (nothing cached).
    pub failed: u64,
}
