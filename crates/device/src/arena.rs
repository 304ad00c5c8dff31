//! The buffer arena: one page-aligned, pre-faulted memory region per device, from which every
//! I/O buffer is taken. The io_uring backend registers it once as fixed buffers (the user-space
//! analogue of AIOS's pre-DMA-mapped page pool), so no I/O pins or maps memory.
//!
//! # Invariants
//! - The region is `pages * BLOCK_SIZE` bytes, page aligned, and never moves or shrinks while the
//!   `Arena` lives.
//! - A page belongs to at most one live [`Buf`]; the free list and the live `Buf`s partition the
//!   pages. This is what makes [`Arena::bytes_mut`] sound.
//! - A `Buf` can only be made by its arena (fields private, not `Clone`), and is checked against the
//!   arena's id on every access, so a `Buf` of one arena cannot read another's memory.
//!
//! Allocation takes a mutex: it is meant for start-up and pool refills, off the I/O critical path.

use crate::op::Segment;
use crate::BLOCK_SIZE;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use thiserror::Error;

/// Largest arena: io_uring registers each buffer up to 1 GiB, and we register the arena as one.
pub const ARENA_BYTES_MAX: usize = 1 << 30;

static NEXT_ARENA_ID: AtomicU32 = AtomicU32::new(1);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ArenaError {
    #[error("arena of {bytes} bytes: size must be a positive multiple of 4096 and at most 1 GiB")]
    BadSize { bytes: usize },
    #[error("cannot map an arena of {bytes} bytes: {}", std::io::Error::from_raw_os_error(*errno))]
    Map { bytes: usize, errno: i32 },
    #[error("arena exhausted: no run of {pages} free pages")]
    Exhausted { pages: u32 },
}

/// A unique handle to `pages` consecutive pages of one arena. Owned by the caller while idle, by
/// the device while a command naming it is in flight (see the crate docs).
#[derive(Debug, PartialEq, Eq)]
pub struct Buf {
    arena_id: u32,
    first_page: u32,
    pages: u32,
}

impl Buf {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.pages as usize * BLOCK_SIZE
    }

    /// Never true: a `Buf` holds at least one page. Present for clippy's `len` convention.
    pub fn is_empty(&self) -> bool {
        self.pages == 0
    }

    /// The index of its first page in its arena (see [`Arena::page_ptr`]).
    pub fn first_page(&self) -> u32 {
        self.first_page
    }

    /// The whole buffer as a segment of a command.
    pub fn segment(&self) -> Segment {
        Segment {
            arena_offset: self.arena_offset(),
            len: self.len() as u32,
        }
    }

    /// A byte range of the buffer as a segment. Ranges that are not block aligned are accepted here
    /// and refused by [`crate::Io::validate`], so misuse becomes a typed error at submission.
    ///
    /// # Panics
    /// If the range does not lie within the buffer (a programming error, not bad input).
    pub fn segment_range(&self, offset: usize, len: usize) -> Segment {
        assert!(
            offset + len <= self.len(),
            "segment {offset}+{len} outside a {} byte Buf",
            self.len()
        );
        Segment {
            arena_offset: self.arena_offset() + offset as u64,
            len: len as u32,
        }
    }

    fn arena_offset(&self) -> u64 {
        u64::from(self.first_page) * BLOCK_SIZE as u64
    }
}

/// A page-aligned memory region that buffers are carved from. Share it with `Arc`.
pub struct Arena {
    id: u32,
    base: NonNull<u8>,
    pages: u32,
    /// Free runs `(first_page, pages)`, sorted by `first_page`, never adjacent (coalesced).
    free: Mutex<Vec<(u32, u32)>>,
    _map: memmap2::MmapMut,
}

// SAFETY: the arena hands out disjoint page ranges through unique `Buf`s; the raw base pointer is
// only dereferenced through `bytes`/`bytes_mut`, which borrow a `Buf`, or by a device holding the
// memory of an in-flight command (see `Queue::push`). The free list is behind a mutex.
unsafe impl Send for Arena {}
// SAFETY: as above: shared access never creates overlapping mutable slices.
unsafe impl Sync for Arena {}

impl std::fmt::Debug for Arena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arena")
            .field("id", &self.id)
            .field("pages", &self.pages)
            .finish()
    }
}

impl Arena {
    /// Maps and pre-faults `bytes` of anonymous memory (transparent huge pages if available).
    pub fn new(bytes: usize) -> Result<Arena, ArenaError> {
        if bytes == 0 || !bytes.is_multiple_of(BLOCK_SIZE) || bytes > ARENA_BYTES_MAX {
            return Err(ArenaError::BadSize { bytes });
        }
        let map_error = |e: std::io::Error| ArenaError::Map {
            bytes,
            errno: e.raw_os_error().unwrap_or(libc::ENOMEM),
        };
        let mut map = memmap2::MmapOptions::new()
            .len(bytes)
            .map_anon()
            .map_err(map_error)?;
        // Transparent huge pages where the kernel offers them: the page cache touches arena
        // pages at random, and with 4 KiB pages nearly every cache hit would be a TLB miss (a
        // two-level walk in a VM), where the kernel's own page cache sits in its huge-page
        // direct map. Also makes pre-faulting 512 times cheaper. Best effort: without THP the
        // arena works the same.
        let _ = map.advise(memmap2::Advice::HugePage);
        // Pre-fault now rather than on the first I/O into each page.
        if map.advise(memmap2::Advice::PopulateWrite).is_err() {
            for byte in map.iter_mut().step_by(BLOCK_SIZE) {
                *byte = 0;
            }
        }
        let base = NonNull::new(map.as_mut_ptr()).ok_or(ArenaError::Map {
            bytes,
            errno: libc::ENOMEM,
        })?;
        debug_assert_eq!(
            base.as_ptr() as usize % BLOCK_SIZE,
            0,
            "mmap returns page-aligned memory"
        );
        let pages = (bytes / BLOCK_SIZE) as u32;
        Ok(Arena {
            id: NEXT_ARENA_ID.fetch_add(1, Ordering::Relaxed),
            base,
            pages,
            free: Mutex::new(vec![(0, pages)]),
            _map: map,
        })
    }

    /// Total size in bytes.
    pub fn len_bytes(&self) -> usize {
        self.pages as usize * BLOCK_SIZE
    }

    /// Pages in the region.
    pub fn pages(&self) -> u32 {
        self.pages
    }

    /// The address of page `page` (`None` past the region), whoever owns it now. For a reader
    /// that validates what it read afterwards (a sequence lock): the bytes behind it may be
    /// changing, so never make a reference from it.
    pub fn page_ptr(&self, page: u32) -> Option<*const u8> {
        (page < self.pages).then(|| {
            self.base
                .as_ptr()
                .wrapping_add(page as usize * BLOCK_SIZE)
                .cast_const()
        })
    }

    /// Start of the region, for registering it with the kernel.
    pub fn base_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// The address of a segment's first byte. Callers must have validated the segment
    /// ([`Arena::contains`]); the pointer is only for handing to the kernel or a device model.
    pub fn segment_ptr(&self, seg: Segment) -> *mut u8 {
        debug_assert!(self.contains(seg));
        self.base.as_ptr().wrapping_add(seg.arena_offset as usize)
    }

    /// True if the segment lies wholly inside the arena.
    pub fn contains(&self, seg: Segment) -> bool {
        seg.arena_offset
            .checked_add(u64::from(seg.len))
            .is_some_and(|end| end <= self.len_bytes() as u64)
    }

    /// Takes `pages` consecutive free pages (first fit).
    pub fn alloc(&self, pages: u32) -> Result<Buf, ArenaError> {
        assert!(pages > 0, "a Buf holds at least one page");
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let Some(i) = free.iter().position(|&(_, n)| n >= pages) else {
            return Err(ArenaError::Exhausted { pages });
        };
        let (first, n) = free[i];
        if n == pages {
            free.remove(i);
        } else {
            free[i] = (first + pages, n - pages);
        }
        Ok(Buf {
            arena_id: self.id,
            first_page: first,
            pages,
        })
    }

    /// Takes one buffer of `bytes` (rounded up to pages).
    pub fn alloc_bytes(&self, bytes: usize) -> Result<Buf, ArenaError> {
        self.alloc(bytes.div_ceil(BLOCK_SIZE).max(1) as u32)
    }

    /// Returns a buffer's pages to the arena.
    pub fn free(&self, buf: Buf) {
        self.check(&buf);
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let i = free.partition_point(|&(first, _)| first < buf.first_page);
        free.insert(i, (buf.first_page, buf.pages));
        // Coalesce with the right neighbour, then the left.
        if i + 1 < free.len() && free[i].0 + free[i].1 == free[i + 1].0 {
            free[i].1 += free[i + 1].1;
            free.remove(i + 1);
        }
        if i > 0 && free[i - 1].0 + free[i - 1].1 == free[i].0 {
            free[i - 1].1 += free[i].1;
            free.remove(i);
        }
    }

    /// Free pages left.
    pub fn free_pages(&self) -> u32 {
        self.free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|r| r.1)
            .sum()
    }

    /// The contents of an idle buffer.
    pub fn bytes<'a>(&'a self, buf: &'a Buf) -> &'a [u8] {
        self.check(buf);
        // SAFETY: `buf` was made by this arena (checked), so its pages lie inside the mapping, and
        // no other live `Buf` covers them (invariant). A shared borrow of `buf` excludes `bytes_mut`.
        unsafe { std::slice::from_raw_parts(self.segment_ptr(buf.segment()), buf.len()) }
    }

    /// The contents of an idle buffer, writable.
    pub fn bytes_mut<'a>(&'a self, buf: &'a mut Buf) -> &'a mut [u8] {
        self.check(buf);
        // SAFETY: as in `bytes`; the unique borrow of the unique `Buf` makes this the only slice of
        // these pages.
        unsafe { std::slice::from_raw_parts_mut(self.segment_ptr(buf.segment()), buf.len()) }
    }

    fn check(&self, buf: &Buf) {
        assert_eq!(
            buf.arena_id, self.id,
            "Buf used with an arena that did not make it"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_disjoint_and_recycled() {
        let arena = Arena::new(16 * BLOCK_SIZE).unwrap();
        let mut a = arena.alloc(4).unwrap();
        let b = arena.alloc(12).unwrap();
        assert_eq!(arena.alloc(1), Err(ArenaError::Exhausted { pages: 1 }));
        assert_eq!(arena.segment_ptr(a.segment()) as usize % BLOCK_SIZE, 0);
        arena.bytes_mut(&mut a).fill(7);
        assert!(
            arena.bytes(&b).iter().all(|&x| x == 0),
            "b untouched by writes to a"
        );
        arena.free(a);
        arena.free(b);
        assert_eq!(arena.free_pages(), 16);
        // Fully coalesced: one run of 16 is available again.
        let all = arena.alloc(16).unwrap();
        assert_eq!(all.len(), 16 * BLOCK_SIZE);
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert!(matches!(Arena::new(0), Err(ArenaError::BadSize { .. })));
        assert!(matches!(Arena::new(100), Err(ArenaError::BadSize { .. })));
        assert!(matches!(
            Arena::new(ARENA_BYTES_MAX + BLOCK_SIZE),
            Err(ArenaError::BadSize { .. })
        ));
    }

    #[test]
    #[should_panic(expected = "did not make it")]
    fn foreign_buf_is_refused() {
        let a = Arena::new(BLOCK_SIZE).unwrap();
        let b = Arena::new(BLOCK_SIZE).unwrap();
        let buf = a.alloc(1).unwrap();
        let _ = b.bytes(&buf);
    }
}
