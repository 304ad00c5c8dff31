//! One cached page: its state machine and its memory.
//!
//! # States
//! ```text
//!   (insert) --> Locked --complete_fill(Ok)--> UpToDate --(evict, sole owner)--> gone
//!                  |
//!                  +--complete_fill(Err) / ticket dropped--> Failed(errno)  (already out of the index)
//! ```
//! `Dirty` joins with the write path: an up-to-date page written by the file system, not yet
//! written back, never evictable. Its place is [`PageState`] and the `DIRTY` code below.
//!
//! # Invariants
//! - `buf` is set exactly once, by the filler, *before* the state becomes `UpToDate` (release
//!   store); a reader that sees `UpToDate` (acquire load) sees the `Buf`.
//! - An `UpToDate` page is never written: its bytes are shared, immutable, read through
//!   [`aios_device::Arena::bytes`] (or, by write-free hits, through `Arena::page_ptr`).
//! - The `Buf` leaves the page only when the page itself is owned by one party (the evictor after
//!   `Arc::try_unwrap`), so no reader holding a reference can be reading it when it is reused;
//!   a write-free hit holds none, and the evictor's retire (`hint.rs`) makes it discard a copy
//!   that raced the reuse.

use crate::{error::CacheError, Key};
use aios_device::{Arena, Buf, PoliteSpin};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const LOCKED: u8 = 0;
const UP_TO_DATE: u8 = 1;
const FAILED: u8 = 2;
// const DIRTY: u8 = 3; // with the write path: up to date, modified, pinned until written back.

/// Spins between two looks at the clock while waiting for a locked page.
const SPINS_PER_CLOCK_CHECK: u32 = 256;

/// The state of a cached page as seen by a reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageState {
    /// Inserted; the read filling it is in flight.
    Locked,
    /// Holds the device's data; immutable.
    UpToDate,
    /// The fill failed with this errno; the page is no longer in the index.
    Failed { errno: i32 },
}

/// A page of the cache: key, state, referenced bit (CLOCK) and, once filled, its arena page.
#[derive(Debug)]
pub struct CachedPage {
    key: Key,
    state: AtomicU8,
    errno: AtomicI32,
    referenced: AtomicBool,
    /// Published for hits without the lock (`hint.rs`): eviction must retire it.
    hinted: AtomicBool,
    buf: OnceLock<Buf>,
}

impl CachedPage {
    pub(crate) fn locked(key: Key) -> Self {
        CachedPage {
            key,
            state: AtomicU8::new(LOCKED),
            errno: AtomicI32::new(0),
            // Not yet: a page read once is the first to go (the kernel's inactive list); a
            // hit earns it a second chance. A cold stream then evicts on the hand's first look
            // instead of its second.
            referenced: AtomicBool::new(false),
            hinted: AtomicBool::new(false),
            buf: OnceLock::new(),
        }
    }

    pub fn key(&self) -> Key {
        self.key
    }

    pub fn state(&self) -> PageState {
        match self.state.load(Ordering::Acquire) {
            LOCKED => PageState::Locked,
            UP_TO_DATE => PageState::UpToDate,
            _ => PageState::Failed {
                errno: self.errno.load(Ordering::Relaxed),
            },
        }
    }

    /// Publishes the filled page. Returns the `Buf` back if the page was already published or
    /// failed (a filler completes a page once; a second completion is refused, never overwrites).
    pub(crate) fn publish(&self, buf: Buf) -> Result<(), Buf> {
        if self.state.load(Ordering::Acquire) != LOCKED {
            return Err(buf);
        }
        self.buf.set(buf)?;
        self.state.store(UP_TO_DATE, Ordering::Release);
        Ok(())
    }

    /// Marks a locked page failed. Call after it left the index.
    pub(crate) fn fail(&self, errno: i32) {
        self.errno.store(errno, Ordering::Relaxed);
        let _ = self
            .state
            .compare_exchange(LOCKED, FAILED, Ordering::Release, Ordering::Relaxed);
    }

    pub(crate) fn touch(&self) {
        // Avoid dirtying the cache line on every hit when the bit is already set.
        if !self.referenced.load(Ordering::Relaxed) {
            self.referenced.store(true, Ordering::Relaxed);
        }
    }

    /// CLOCK's second chance: clears the bit, returning whether it was set.
    pub(crate) fn take_referenced(&self) -> bool {
        self.referenced.swap(false, Ordering::Relaxed)
    }

    /// Marks it published for hits without the lock. Under its shard's lock.
    pub(crate) fn set_hinted(&self) {
        if !self.hinted.load(Ordering::Relaxed) {
            self.hinted.store(true, Ordering::Relaxed);
        }
    }

    /// True once published for hits without the lock.
    pub(crate) fn hinted(&self) -> bool {
        self.hinted.load(Ordering::Relaxed)
    }

    /// The arena page holding its bytes, once filled.
    pub(crate) fn arena_page(&self) -> Option<u32> {
        self.buf.get().map(Buf::first_page)
    }

    /// The page memory of a uniquely owned page (after eviction).
    pub(crate) fn into_buf(self) -> Option<Buf> {
        self.buf.into_inner()
    }

    /// Waits until the page is no longer locked, at most `timeout`. Returns whether it spun.
    pub(crate) fn wait(&self, timeout: Duration) -> Result<bool, CacheError> {
        let mut spin = PoliteSpin::new();
        let mut spins: u32 = 0;
        let mut started: Option<Instant> = None;
        loop {
            match self.state() {
                PageState::UpToDate => return Ok(spins > 0),
                PageState::Failed { errno } => {
                    return Err(CacheError::FillFailedElsewhere {
                        key: self.key,
                        errno,
                    })
                }
                PageState::Locked => {}
            }
            if spins.is_multiple_of(SPINS_PER_CLOCK_CHECK) {
                let since = *started.get_or_insert_with(Instant::now);
                if since.elapsed() > timeout {
                    return Err(CacheError::WaitTimeout {
                        key: self.key,
                        waited_ms: since.elapsed().as_millis() as u64,
                    });
                }
            }
            spins = spins.wrapping_add(1);
            spin.pause();
        }
    }

    /// The bytes of an up-to-date page.
    pub(crate) fn bytes<'a>(&'a self, arena: &'a Arena) -> Option<&'a [u8]> {
        if self.state.load(Ordering::Acquire) != UP_TO_DATE {
            return None;
        }
        self.buf.get().map(|buf| arena.bytes(buf))
    }
}

/// A reader's reference to a cached page. While it lives the page's memory is never reused
/// (eviction requires the index to hold the only reference).
#[derive(Debug, Clone)]
pub struct PageRef {
    pub(crate) page: Arc<CachedPage>,
}

impl PageRef {
    pub fn key(&self) -> Key {
        self.page.key
    }

    pub fn state(&self) -> PageState {
        self.page.state()
    }

    /// The page's bytes if it is up to date (no waiting).
    pub fn bytes<'a>(&'a self, arena: &'a Arena) -> Option<&'a [u8]> {
        self.page.bytes(arena)
    }
}
