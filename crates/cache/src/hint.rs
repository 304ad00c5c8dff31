//! The write-free hit: a reader copies a cached page without writing any memory another
//! thread reads, so hits of many threads on the same pages scale with the cores.
//!
//! The locked hit (`PageCache::read_cached`'s fallback) takes its shard's mutex: two atomic
//! writes to a line the last hit of that shard, likely another thread's, left in another
//! core's cache. With two threads hitting random pages about every hit pays that line's move
//! (a hot 4 KiB read on 2 threads ran 1.33x one thread, the time in the lock's `cmpxchg`).
//! Here a hit only reads shared memory, like a sequence-lock reader:
//!
//! 1. `slots[digest(key)]` names the arena page last published for a key with that digest,
//!    beside the digest's high half, so a slot left by another key is told apart without
//!    touching the page's entry: a miss costs one more cache miss, not two (direct mapped: a
//!    collision overwrites, and the loser's reads take the locked path);
//! 2. the page's sequence count is even and its key is `key`: it holds `key`'s bytes;
//! 3. the bytes are copied out;
//! 4. the sequence count is read again: unchanged, the copy is good; else it is thrown away
//!    and the locked path reads the page.
//!
//! A thread whose last lookups all missed (a cold stream) skips step 1 until a locked lookup
//! hits again ([`worth_probing`]): a slot is a cache miss of its own.
//!
//! # Invariants
//! - A page's sequence count is even only while the page is indexed, up to date, and holds the
//!   bytes of the key stored beside it ([`Hints::publish`], at the page's first locked hit: a
//!   page read once, as in a cold stream, never costs the slot and entry their cache misses;
//!   a cold 4 KiB read from zram took 0.15-0.3 us longer when every fill published).
//! - It turns odd ([`Hints::retire`]) before the page's memory can be written again: eviction
//!   retires a page before it hands the buffer on (to a pool, the arena, another fill), and
//!   nothing else takes an up-to-date page's buffer while the cache lives.
//! - Writers of one page's count and key never overlap: a publish and the retire of the same
//!   indexed page both hold its shard's lock, and the buffer's next owner publishes only after
//!   it was handed on, after the retire. (The `referenced` bit beside them is a hint for CLOCK,
//!   written by hits and the hand without the lock.)
//!
//! # What it assumes
//! Page memory stays mapped while the cache lives (the cache holds its `Arena`). A copy that
//! raced a reuse of the page reads bytes being overwritten; the second look at the sequence
//! count discards it. That racy copy is the one thing Rust's memory model does not bless
//! (crossbeam's `AtomicCell` makes the same read); the bytes never reach a caller unvalidated.
//! That the second look sees a rewrite made by the buffer's next owner, on a third thread,
//! after a hand-over, relies on multi-copy-atomic hardware (x86-64, ARMv8).

use std::cell::Cell;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};

use aios_device::{Arena, BLOCK_SIZE};
use crossbeam_utils::CachePadded;

use crate::Key;

/// Slots per page of the cache's cap: few collisions among the hot pages, in a table small
/// enough that a miss's probe of it mostly stays in the core's caches.
const SLOTS_PER_PAGE: usize = 2;

/// Stripes of the hit counter; a thread counts into its own (mostly).
const HIT_STRIPES: usize = 16;

/// One arena page's entry.
#[derive(Debug, Default)]
struct PageSeq {
    /// Even: the page holds `file_id`/`page_index`'s up-to-date bytes. Odd: anything else.
    seq: AtomicU64,
    file_id: AtomicU64,
    page_index: AtomicU64,
    /// CLOCK's referenced bit for hits that never see the `CachedPage`.
    referenced: AtomicBool,
}

impl PageSeq {
    /// True if `seq` (this entry's count, just loaded) is even and the entry's key is `key`.
    fn holds(&self, seq: u64, key: Key) -> bool {
        seq.is_multiple_of(2)
            && self.file_id.load(Ordering::Relaxed) == key.file_id
            && self.page_index.load(Ordering::Relaxed) == key.page_index
    }
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Hints {
    pages: Box<[PageSeq]>,
    /// The high 32 bits of the digest of the last key published here, over its arena page + 1
    /// in the low 32; 0: none.
    slots: Box<[AtomicU64]>,
    /// Hits of every path, striped by thread so a hit writes a line only its thread writes.
    hits: Box<[CachePadded<AtomicU64>]>,
}

impl Hints {
    /// Entries for every page of `arena`, slots for a cap of `max_pages` (no more than the
    /// arena's pages can be cached, whatever the cap).
    pub(crate) fn new(arena: &Arena, max_pages: usize) -> Hints {
        let slots = max_pages
            .min(arena.pages() as usize)
            .saturating_mul(SLOTS_PER_PAGE)
            .next_power_of_two()
            .max(1);
        Hints {
            pages: (0..arena.pages())
                .map(|_| PageSeq {
                    // Odd: no page holds a key yet.
                    seq: AtomicU64::new(1),
                    ..PageSeq::default()
                })
                .collect(),
            slots: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            hits: (0..HIT_STRIPES)
                .map(|_| CachePadded::new(AtomicU64::new(0)))
                .collect(),
        }
    }

    /// Copies `out.len()` bytes at `offset_bytes` of `key`'s page into `out` if it is cached and
    /// up to date; false (and `out` unspecified) otherwise: take the locked path.
    pub(crate) fn copy(
        &self,
        arena: &Arena,
        key: Key,
        offset_bytes: usize,
        out: &mut [u8],
    ) -> bool {
        if offset_bytes.saturating_add(out.len()) > BLOCK_SIZE {
            return false;
        }
        let digest = key.mixed();
        let named = self.slots[self.slot(digest)].load(Ordering::Acquire);
        if named >> 32 != digest >> 32 {
            return false;
        }
        let Some(page) = (named as u32).checked_sub(1) else {
            return false;
        };
        let (Some(entry), Some(src)) = (self.pages.get(page as usize), arena.page_ptr(page)) else {
            return false;
        };
        let seq = entry.seq.load(Ordering::Acquire);
        if !entry.holds(seq, key) {
            return false;
        }
        // SAFETY: `src` is the start of a page of the arena, which stays mapped while the
        // cache holds it, and `offset_bytes + out.len() <= BLOCK_SIZE` (checked above), so the
        // source range is inside that page; `out` is a distinct, exclusively borrowed buffer.
        // The page may be being rewritten after an eviction that raced this read: then the
        // sequence count below has moved and the copied bytes are discarded (module docs).
        unsafe {
            std::ptr::copy_nonoverlapping(src.add(offset_bytes), out.as_mut_ptr(), out.len());
        }
        fence(Ordering::Acquire);
        if entry.seq.load(Ordering::Relaxed) != seq {
            return false;
        }
        if !entry.referenced.load(Ordering::Relaxed) {
            entry.referenced.store(true, Ordering::Relaxed);
        }
        self.count_hit();
        true
    }

    /// Page `page` of the arena holds `key`'s up-to-date bytes and is indexed: hits may read
    /// it without the lock. Called on a locked hit, under the key's shard lock (which eviction
    /// holds to retire it); again on a later locked hit, it only takes the slot back from a
    /// colliding key, writing nothing when the slot is already its own.
    pub(crate) fn publish(&self, page: u32, key: Key) {
        let Some(entry) = self.pages.get(page as usize) else {
            debug_assert!(false, "page {page} outside the arena");
            return;
        };
        let seq = entry.seq.load(Ordering::Relaxed);
        if !entry.holds(seq, key) {
            if seq.is_multiple_of(2) {
                // Another key's bytes were published here and not retired: a broken
                // invariant; retiring first keeps a racing reader off the change.
                debug_assert!(false, "page {page} republished without a retire");
                self.retire(page);
            }
            let seq = entry.seq.load(Ordering::Relaxed);
            // The odd count may have been stored by the evictor on another thread: order it
            // before the key changes in the language's model too, not only on the hardware.
            fence(Ordering::Release);
            entry.file_id.store(key.file_id, Ordering::Relaxed);
            entry.page_index.store(key.page_index, Ordering::Relaxed);
            entry.referenced.store(true, Ordering::Relaxed);
            entry.seq.store(seq + 1, Ordering::Release);
        }
        let digest = key.mixed();
        let named = (digest >> 32) << 32 | u64::from(page + 1);
        let slot = &self.slots[self.slot(digest)];
        if slot.load(Ordering::Relaxed) != named {
            slot.store(named, Ordering::Release);
        }
    }

    /// Page `page` leaves the index: from now on its memory may be written. Call before the
    /// buffer is handed on.
    pub(crate) fn retire(&self, page: u32) {
        let Some(entry) = self.pages.get(page as usize) else {
            return;
        };
        let seq = entry.seq.load(Ordering::Relaxed);
        if seq.is_multiple_of(2) {
            entry.seq.store(seq + 1, Ordering::Relaxed);
            // Orders the odd count before every later write of the page's memory.
            fence(Ordering::Release);
        }
    }

    /// CLOCK's second chance for hits made here: clears the bit, returning whether it was set.
    pub(crate) fn take_referenced(&self, page: u32) -> bool {
        self.pages
            .get(page as usize)
            .is_some_and(|entry| entry.referenced.swap(false, Ordering::Relaxed))
    }

    /// Counts a hit of any path. Exact however threads share stripes (a locked add on a line
    /// its thread alone writes costs what a plain store would: both wait for the copy's stores).
    pub(crate) fn count_hit(&self) {
        self.hits[stripe()].fetch_add(1, Ordering::Relaxed);
    }

    /// Hits so far.
    pub(crate) fn hits(&self) -> u64 {
        self.hits.iter().map(|h| h.load(Ordering::Relaxed)).sum()
    }

    fn slot(&self, digest: u64) -> usize {
        digest as usize & (self.slots.len() - 1)
    }
}

/// Lookups in a row that found nothing, after which a thread stops probing the slots.
const MISSES_BEFORE_SKIPPING: u32 = 8;

thread_local! {
    /// This thread's lookups in a row that found nothing (in any cache).
    static MISSES_IN_A_ROW: Cell<u32> = const { Cell::new(0) };
}

/// False while this thread's lookups keep missing: a cold stream then goes straight to the
/// locked probe, which it needs anyway, instead of first paying a cache miss on a slot (a cold
/// 4 KiB read from zram spent 0.12 us more in its lookup with the probe). A hit found by the
/// locked probe turns probing back on.
pub(crate) fn worth_probing() -> bool {
    MISSES_IN_A_ROW.with(|m| m.get() < MISSES_BEFORE_SKIPPING)
}

/// A lookup of this thread found its page (`hit`) or nothing.
pub(crate) fn note_lookup(hit: bool) {
    MISSES_IN_A_ROW.with(|m| {
        let misses = m.get();
        let next = if hit { 0 } else { misses.saturating_add(1) };
        if next != misses {
            m.set(next);
        }
    });
}

/// This thread's stripe of the hit counter.
fn stripe() -> usize {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) as usize % HIT_STRIPES;
    }
    STRIPE.with(|s| *s)
}

#[cfg(test)]
mod tests {
    use super::Hints;
    use crate::Key;
    use aios_device::{Arena, BLOCK_SIZE};

    #[test]
    fn a_published_page_is_read_and_a_retired_one_never() {
        let arena = Arena::new(4 * BLOCK_SIZE).unwrap();
        let hints = Hints::new(&arena, 4);
        let mut buf = arena.alloc(1).unwrap();
        arena.bytes_mut(&mut buf).fill(7);
        let key = Key::new(3, 9);
        let mut out = [0u8; 100];
        assert!(!hints.copy(&arena, key, 0, &mut out), "nothing published");
        hints.publish(buf.first_page(), key);
        assert!(hints.copy(&arena, key, 10, &mut out));
        assert_eq!(out, [7u8; 100]);
        assert!(
            !hints.copy(&arena, Key::new(3, 10), 0, &mut out),
            "another key"
        );
        assert!(
            !hints.copy(&arena, key, BLOCK_SIZE - 10, &mut out),
            "past the page"
        );
        hints.retire(buf.first_page());
        assert!(!hints.copy(&arena, key, 0, &mut out), "retired");
        assert_eq!(hints.hits(), 1);
    }

    /// A page rewritten for another key while a reader copies it: the reader gets either the
    /// whole old page or nothing, never a mixture (the second look at the sequence count).
    #[test]
    fn a_copy_racing_a_rewrite_is_whole_or_refused() {
        let arena = Arena::new(4 * BLOCK_SIZE).unwrap();
        let hints = Hints::new(&arena, 4);
        let mut buf = arena.alloc(1).unwrap();
        let page = buf.first_page();
        let (a, b) = (Key::new(1, 1), Key::new(1, 2));
        arena.bytes_mut(&mut buf).fill(0xaa);
        hints.publish(page, a);
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (mut whole, mut refused) = (0u64, 0u64);
        std::thread::scope(|s| {
            s.spawn(|| {
                for round in 0..200_000u32 {
                    let (key, byte) = if round % 2 == 0 { (b, 0x55) } else { (a, 0xaa) };
                    hints.retire(page);
                    arena.bytes_mut(&mut buf).fill(byte);
                    hints.publish(page, key);
                }
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            });
            let mut out = vec![0u8; BLOCK_SIZE];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if hints.copy(&arena, a, 0, &mut out) {
                    assert!(out.iter().all(|&x| x == 0xaa), "a torn copy was accepted");
                    whole += 1;
                } else {
                    refused += 1;
                }
            }
        });
        assert!(
            whole > 0 && refused > 0,
            "no race: {whole} whole, {refused} refused"
        );
    }
}
