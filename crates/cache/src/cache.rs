//! The page cache: a sharded index of [`CachedPage`]s, the two insertion orders, fill completion,
//! copy-out and CLOCK eviction under a page cap.

use crate::error::{CacheError, ECANCELED, EIO};
use crate::hint::{self, Hints};
use crate::page::{CachedPage, PageRef};
use crate::shard::Shard;
use crate::stats::{bump, CacheStats, Counters};
use crate::{CacheConfig, Key};
use aios_device::{Arena, Buf, DeviceError, BLOCK_SIZE};
use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Evictions an insertion tries before giving up and reading uncached.
const EVICT_TRIES_MAX: usize = 4;
/// Evicted pages parked for pools; beyond this they go straight back to the arena.
const RECLAIMED_PAGES_MAX: usize = 1024;

/// When the page enters the index relative to the read that fills it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOrder {
    /// Vanilla: insert a locked page, then submit. A page found there means "wait for theirs".
    BeforeSubmit,
    /// AIOS lazy insertion: submit, then insert while the device works. A page found there means
    /// the caller's read was a duplicate.
    AfterSubmit,
}

/// What [`PageCache::read_cached`] found.
#[derive(Debug)]
pub enum Cached {
    /// The page was up to date; the bytes are copied.
    Copied,
    /// The page is indexed but still being filled: wait on it with [`PageCache::copy_out`].
    Filling(PageRef),
    /// Not indexed: a miss.
    Missing,
}

/// The outcome of an insertion.
#[must_use = "a fill ticket must be completed, or waiters time out on the locked page"]
#[derive(Debug)]
pub enum Insert<'c> {
    /// The caller's page is in the index, locked: fill it and call [`PageCache::complete_fill`].
    Fill(FillTicket<'c>),
    /// Another thread's page is there (locked or up to date). Vanilla: wait and copy from it.
    /// AIOS: the caller's read is a duplicate; copy from the caller's own buffer after it
    /// completes and release that buffer to the pool.
    Present(PageRef),
    /// The cache is at its cap and nothing is evictable: read without caching.
    Uncached,
}

/// The right and duty to fill one locked page. Dropping it uncompleted fails the page with
/// `ECANCELED`, so waiters never hang.
pub struct FillTicket<'c> {
    cache: &'c PageCache,
    page: Arc<CachedPage>,
    done: bool,
}

impl std::fmt::Debug for FillTicket<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FillTicket")
            .field("key", &self.page.key())
            .field("done", &self.done)
            .finish()
    }
}

impl FillTicket<'_> {
    pub fn key(&self) -> Key {
        self.page.key()
    }
}

impl Drop for FillTicket<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.cache.abandon(&self.page, ECANCELED);
        }
    }
}

/// A failed fill: the error, and the caller's buffer back (it goes to the caller's pool).
#[derive(Debug)]
pub struct FillFailed {
    pub error: CacheError,
    pub buf: Buf,
}

/// A page CLOCK evicted: its key and its memory, now owned by the caller.
#[derive(Debug)]
pub struct Evicted {
    pub key: Key,
    pub buf: Buf,
}

/// The page cache. Share it between threads (`&PageCache` or `Arc<PageCache>`).
///
/// # Invariants
/// - `resident` == pages in all shards' maps <= `max_pages` (a slot is reserved before a page
///   is indexed and given back when one leaves).
/// - The index holds only locked and up-to-date pages; see the invariants of `shard.rs` for
///   why eviction never frees memory a reader can still see.
pub struct PageCache {
    arena: Arc<Arena>,
    /// Each shard on cache lines of its own: hits of different shards by different threads
    /// never write a line another thread reads (unpadded, a hot 4 KiB read on 2 threads ran
    /// at 0.92x one thread's rate, the time in the shard lock's `cmpxchg`).
    shards: Box<[CachePadded<Mutex<Shard>>]>,
    /// The write-free hit path, and the hit counter of every path (`hint.rs`).
    hints: Hints,
    max_pages: usize,
    wait_timeout: Duration,
    /// Pages in the index (locked or up to date); never above `max_pages`.
    resident: AtomicUsize,
    /// Where the next eviction starts (global hand over the shards).
    clock_shard: AtomicUsize,
    /// Pages evicted to make room for an insertion, waiting for a pool's refill.
    reclaimed: Mutex<Vec<Buf>>,
    counters: Counters,
}

impl std::fmt::Debug for PageCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageCache")
            .field("max_pages", &self.max_pages)
            .field("resident_pages", &self.resident_pages())
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PageCache {
    /// A cache of at most `config.max_pages` pages of `arena`.
    pub fn new(arena: Arc<Arena>, config: CacheConfig) -> Result<PageCache, CacheError> {
        config.validate()?;
        Ok(PageCache {
            hints: Hints::new(&arena, config.max_pages),
            arena,
            shards: (0..config.shards)
                .map(|_| CachePadded::new(Mutex::default()))
                .collect(),
            max_pages: config.max_pages,
            wait_timeout: Duration::from_millis(config.wait_timeout_ms),
            resident: AtomicUsize::new(0),
            clock_shard: AtomicUsize::new(0),
            reclaimed: Mutex::new(Vec::new()),
            counters: Counters::default(),
        })
    }

    pub fn arena(&self) -> &Arc<Arena> {
        &self.arena
    }

    pub fn max_pages(&self) -> usize {
        self.max_pages
    }

    /// Pages in the index, locked or up to date.
    pub fn resident_pages(&self) -> usize {
        self.resident.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hints.hits(),
            ..self.counters.snapshot()
        }
    }

    fn shard(&self, key: Key) -> MutexGuard<'_, Shard> {
        lock(&self.shards[key.shard(self.shards.len())])
    }

    /// A reference to the page of `key`, if indexed (up to date or being filled). Sets the
    /// page's referenced bit. [`copy_out`](Self::copy_out) waits for a locked page. For the
    /// plain hit, [`read_cached`](Self::read_cached) is cheaper.
    pub fn lookup(&self, key: Key) -> Option<PageRef> {
        let shard = self.shard(key);
        match shard.map.get(&key) {
            Some(page) => {
                self.hints.count_hit();
                page.touch();
                Some(PageRef { page: page.clone() })
            }
            None => {
                drop(shard);
                self.count_miss();
                None
            }
        }
    }

    /// Counts a miss found by [`read_cached`](Self::read_cached) that the caller will read
    /// (not a hole).
    pub fn count_miss(&self) {
        bump(&self.counters.misses);
    }

    /// The hit path: copies `out.len()` bytes at `offset_bytes` of the page of `key` if it is
    /// indexed and up to date. First the write-free hit (`hint.rs`: no lock, nothing written
    /// that another thread reads); else one shard lock, a probe and the memcpy under the lock
    /// (eviction needs that lock too, so the memory cannot be reused meanwhile), which also
    /// publishes the page for write-free hits. No system call, no reference count. A page
    /// still being filled is returned as a reference to wait on with
    /// [`copy_out`](Self::copy_out); counted as a hit like the copied one. Unless the result
    /// is `Copied`, `out` holds unspecified bytes (a write-free attempt that failed its check).
    /// `Missing` is not counted: the caller may find the page is a hole (never cached) and
    /// calls [`count_miss`](Self::count_miss) when it reads the page instead. That lets a file
    /// system try the cache before its block map, keeping the map off the hit path.
    pub fn read_cached(
        &self,
        key: Key,
        offset_bytes: usize,
        out: &mut [u8],
    ) -> Result<Cached, CacheError> {
        let range = page_range(key, offset_bytes, out.len())?;
        if hint::worth_probing() && self.hints.copy(&self.arena, key, offset_bytes, out) {
            hint::note_lookup(true);
            return Ok(Cached::Copied);
        }
        let shard = self.shard(key);
        let Some(page) = shard.map.get(&key) else {
            hint::note_lookup(false);
            return Ok(Cached::Missing);
        };
        hint::note_lookup(true);
        self.hints.count_hit();
        page.touch();
        match page.bytes(&self.arena).and_then(|bytes| bytes.get(range)) {
            Some(bytes) => {
                out.copy_from_slice(bytes);
                // Hit twice: its next hits go without the lock. A page read once (a cold
                // stream) never costs the slot and entry writes (and their cache misses).
                if let Some(arena_page) = page.arena_page() {
                    page.set_hinted();
                    self.hints.publish(arena_page, key);
                }
                Ok(Cached::Copied)
            }
            None => Ok(Cached::Filling(PageRef { page: page.clone() })),
        }
    }

    /// True if the key is indexed. No statistics, no referenced bit (for tests and tools).
    pub fn contains(&self, key: Key) -> bool {
        self.shard(key).map.contains_key(&key)
    }

    /// Vanilla order: call after a miss, BEFORE submitting the read.
    pub fn insert_locked(&self, key: Key) -> Insert<'_> {
        self.insert(key, InsertOrder::BeforeSubmit)
    }

    /// AIOS lazy insertion: call after a miss, AFTER submitting the read into the caller's own
    /// pool page, while the device works.
    pub fn insert_filled_later(&self, key: Key) -> Insert<'_> {
        self.insert(key, InsertOrder::AfterSubmit)
    }

    /// The shared steps of both orders: look, reserve room under the cap (maybe evicting), insert
    /// a locked page unless someone else did meanwhile.
    pub fn insert(&self, key: Key, order: InsertOrder) -> Insert<'_> {
        if let Some(found) = self.present(key, order) {
            return found;
        }
        // Reserve outside the shard lock: eviction locks other shards, one at a time.
        if !self.reserve() {
            bump(&self.counters.uncached);
            return Insert::Uncached;
        }
        let mut shard = self.shard(key);
        if let Some(page) = shard.map.get(&key) {
            let page = PageRef { page: page.clone() };
            drop(shard);
            self.resident.fetch_sub(1, Ordering::Relaxed);
            return self.found(page, order);
        }
        let page = Arc::new(CachedPage::locked(key));
        shard.insert_new(key, page.clone());
        drop(shard);
        bump(&self.counters.inserts);
        Insert::Fill(FillTicket {
            cache: self,
            page,
            done: false,
        })
    }

    fn present(&self, key: Key, order: InsertOrder) -> Option<Insert<'_>> {
        let page = self
            .shard(key)
            .map
            .get(&key)
            .map(|page| PageRef { page: page.clone() })?;
        Some(self.found(page, order))
    }

    fn found(&self, page: PageRef, order: InsertOrder) -> Insert<'_> {
        page.page.touch();
        bump(match order {
            InsertOrder::BeforeSubmit => &self.counters.raced,
            InsertOrder::AfterSubmit => &self.counters.duplicates,
        });
        Insert::Present(page)
    }

    /// Takes one slot under the cap, evicting if the cache is full. False if nothing could be
    /// evicted.
    fn reserve(&self) -> bool {
        let mut evict_tries = 0;
        loop {
            let cur = self.resident.load(Ordering::Relaxed);
            if cur < self.max_pages {
                if self
                    .resident
                    .compare_exchange_weak(cur, cur + 1, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    return true;
                }
                continue;
            }
            if evict_tries == EVICT_TRIES_MAX {
                return false;
            }
            evict_tries += 1;
            match self.evict() {
                Some(evicted) => self.park_reclaimed(evicted.buf),
                None => return false,
            }
        }
    }

    fn park_reclaimed(&self, buf: Buf) {
        let mut reclaimed = lock(&self.reclaimed);
        if reclaimed.len() < RECLAIMED_PAGES_MAX {
            reclaimed.push(buf);
        } else {
            drop(reclaimed);
            self.arena.free(buf);
        }
    }

    /// Publishes a fill. On success the page is up to date and the returned reference reads it.
    /// On failure (device error, short read) the page leaves the index before it is marked
    /// failed, waiters get [`CacheError::FillFailedElsewhere`], a later read retries, and the
    /// caller gets its buffer back.
    pub fn complete_fill(
        &self,
        mut ticket: FillTicket<'_>,
        buf: Buf,
        result: Result<u32, DeviceError>,
    ) -> Result<PageRef, FillFailed> {
        let key = ticket.key();
        ticket.done = true;
        let error = match result {
            Ok(read_bytes) if read_bytes as usize == BLOCK_SIZE && buf.len() == BLOCK_SIZE => {
                return match ticket.page.publish(buf) {
                    Ok(()) => Ok(PageRef {
                        page: ticket.page.clone(),
                    }),
                    // Unreachable (only this ticket completes the page); still never leave a
                    // locked page behind.
                    Err(buf) => {
                        self.fail(&ticket.page, EIO);
                        Err(FillFailed {
                            error: CacheError::NotLocked { key },
                            buf,
                        })
                    }
                };
            }
            Ok(read_bytes) => CacheError::BadFill {
                key,
                buf_bytes: buf.len(),
                read_bytes,
            },
            Err(source) => CacheError::Fill { key, source },
        };
        let errno = match &error {
            CacheError::Fill {
                source: DeviceError::Io { errno, .. },
                ..
            } => *errno,
            _ => EIO,
        };
        self.fail(&ticket.page, errno);
        Err(FillFailed { error, buf })
    }

    fn fail(&self, page: &Arc<CachedPage>, errno: i32) {
        bump(&self.counters.fill_failures);
        self.abandon(page, errno);
    }

    /// Removes a locked page from the index, then marks it failed (in that order, so the index
    /// never holds a failed page).
    fn abandon(&self, page: &Arc<CachedPage>, errno: i32) {
        let mut shard = self.shard(page.key());
        if shard.remove_same(page) {
            // Only locked pages come here; should a published one ever, its lock-free hits
            // end before it leaves the shard's lock.
            if let Some(arena_page) = page.hinted().then(|| page.arena_page()).flatten() {
                self.hints.retire(arena_page);
            }
            drop(shard);
            self.resident.fetch_sub(1, Ordering::Relaxed);
        }
        page.fail(errno);
    }

    /// Waits (bounded) until the page is up to date, then copies `out.len()` bytes from
    /// `offset_bytes` within the page.
    pub fn copy_out(
        &self,
        page: &PageRef,
        offset_bytes: usize,
        out: &mut [u8],
    ) -> Result<(), CacheError> {
        let key = page.key();
        let range = page_range(key, offset_bytes, out.len())?;
        if page.page.wait(self.wait_timeout)? {
            bump(&self.counters.waits);
        }
        let bytes = page
            .bytes(&self.arena)
            .ok_or(CacheError::FillFailedElsewhere { key, errno: EIO })?;
        out.copy_from_slice(&bytes[range]);
        Ok(())
    }

    /// CLOCK eviction: one up-to-date page no reader holds, starting at the global hand and
    /// trying every shard once. The caller owns the returned memory.
    pub fn evict(&self) -> Option<Evicted> {
        let start = self.clock_shard.fetch_add(1, Ordering::Relaxed);
        (0..self.shards.len()).find_map(|i| {
            let index = (start + i) % self.shards.len();
            let (key, buf) = lock(&self.shards[index]).evict_one(&self.hints)?;
            self.resident.fetch_sub(1, Ordering::Relaxed);
            bump(&self.counters.evictions);
            Some(Evicted { key, buf })
        })
    }

    /// A page for a pool: a reclaimed one, else a free arena page, else an evicted one.
    pub fn spare_page(&self) -> Option<Buf> {
        if let Some(buf) = lock(&self.reclaimed).pop() {
            return Some(buf);
        }
        if let Ok(buf) = self.arena.alloc(1) {
            return Some(buf);
        }
        self.evict().map(|evicted| evicted.buf)
    }
}

/// The bytes `[offset_bytes, offset_bytes + len_bytes)` of a page, if they lie inside it.
fn page_range(
    key: Key,
    offset_bytes: usize,
    len_bytes: usize,
) -> Result<std::ops::Range<usize>, CacheError> {
    let range = offset_bytes..offset_bytes.saturating_add(len_bytes);
    if range.end > BLOCK_SIZE {
        return Err(CacheError::Range {
            key,
            offset_bytes,
            len_bytes,
        });
    }
    Ok(range)
}

impl Drop for PageCache {
    /// Returns every page no one else holds to the arena (pages still held by a `PageRef` after
    /// the cache is gone are not returned: the arena stays sound, only smaller).
    fn drop(&mut self) {
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            let pages: Vec<_> = shard.drain().collect();
            drop(shard);
            for page in pages {
                if let Some(buf) = Arc::try_unwrap(page).ok().and_then(CachedPage::into_buf) {
                    self.arena.free(buf);
                }
            }
        }
        for buf in lock(&self.reclaimed).drain(..) {
            self.arena.free(buf);
        }
    }
}
