//! The cached read: [`Fs::read`], through the shared page cache, in the mount's read mode.
//!
//! # Role
//! `read` walks the requested range page by page:
//! - **holes and unwritten extents** (known from the extent map loaded at open) are zero-filled:
//!   no I/O, no cache entry; one cache probe per hole range (the cache is tried before the map,
//!   so a hit never consults the map), not counted as a miss;
//! - **a cached page** is copied out: no lock (`aios_cache`'s write-free hit) or one shard lock,
//!   and a memcpy, no system call, no I/O (a page another thread is still filling is waited
//!   for, bounded by the cache's wait limit);
//! - **a miss** starts a *miss run*: the following pages of the same written extent that miss
//!   too, up to [`SEGMENTS_MAX`] (128 KiB), become one device request, in the order of the
//!   mount's [`ReadMode`](crate::ReadMode) (see the `miss` module for both orders). Where there
//!   is no device time to overlap, the async order does not pay for overlapping: on a device
//!   that completes inside `submit` (pread on zram) misses run the vanilla order
//!   ([`Fs::miss_order`](crate::Fs::miss_order)).
//!
//! The cache key of a page is `(inode number, data epoch, page index)` (`file.rs`'s `CacheId`):
//! a read-only mount's epoch never changes; a read-write mount's changes when the file does, so
//! a cached page never goes stale, it becomes unreachable.
//!
//! # Promises
//! - `read` returns the bytes `[offset, min(offset + buf.len(), size))` of the file and their
//!   count: short only at end of file, 0 at or past it.
//! - An error names the file and byte offset ([`FsError::Read`]); bytes before it may have been
//!   copied. The failed page is not cached: retrying reads it from the device again.
//! - With the breakdown off (the default) no clock is read.
//!
//! The caller's buffer, as both this walk and the miss run fill it, is `dst.rs`'s `Dst`.

use aios_cache::{Cached, PageRef};
use aios_device::{Device, BLOCK_SIZE, SEGMENTS_MAX};
use std::time::Instant;

use crate::breakdown::{Laps, Stage};
use crate::cache_id::FILE_PAGES_MAX;
use crate::dst::Dst;
use crate::miss::RunStart;
use crate::{File, Fs, FsError, IoCtx, ReadMode};

const BLOCK_BYTES: u64 = BLOCK_SIZE as u64;

impl<D: Device> Fs<D> {
    /// Reads from `offset` into `buf` through the page cache; returns the bytes read (short only
    /// at end of file). Misses follow the mount's [`ReadMode`] ([`Fs::miss_order`]).
    pub fn read(
        &self,
        io: &mut IoCtx<D::Queue>,
        file: &File,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, FsError> {
        if io.fs_id != self.id {
            return Err(FsError::ForeignIoCtx);
        }
        let size = file.size_bytes();
        if offset >= size {
            return Ok(0);
        }
        let len = usize::try_from(size - offset).map_or(buf.len(), |left| left.min(buf.len()));
        let mut dst = Dst::new(offset, buf.get_mut(..len).unwrap_or_default());
        let end = dst.end();
        self.reap_readahead(io, file, offset / BLOCK_BYTES, end.div_ceil(BLOCK_BYTES));
        // Submitted before this read's own pages: the device reads ahead during its copy-out.
        self.start_readahead(io, file, offset, end);
        let mut pos = offset;
        // A page found right after a miss run: copied from next, without a second lookup.
        let mut next: Option<PageRef> = None;
        while pos < end {
            let page = pos / BLOCK_BYTES;
            if page >= FILE_PAGES_MAX {
                // No extent maps a page this far (a 32-bit logical block): a hole, and never a
                // cache key (a corrupt size can point here).
                dst.zero(pos, end);
                break;
            }
            let lookup_start = io.recording().then(Instant::now);
            let key = file.cache.key(page);
            let (within, out) = dst.span(page);
            // The cache first, the extent map only on a miss: a hit never needs the map (holes
            // are never cached, so a hole is a miss here, then zero-filled below).
            let found = match next.take() {
                Some(page_ref) => Cached::Filling(page_ref),
                None => self
                    .cache
                    .read_cached(key, within, out)
                    .map_err(|e| read_error(file, pos, e))?,
            };
            match found {
                Cached::Copied => {}
                Cached::Filling(page_ref) => self
                    .cache
                    .copy_out(&page_ref, within, out)
                    .map_err(|e| read_error(file, pos, e))?,
                Cached::Missing => {
                    let mapping = match file.extents().find(page) {
                        Some(m) if !m.unwritten => *m,
                        other => {
                            let hole_end_page = match other {
                                Some(m) => m.end_block(),
                                None => file.extents().next_mapped(page).unwrap_or(u64::MAX),
                            };
                            let hole_end = hole_end_page.saturating_mul(BLOCK_BYTES).min(end);
                            dst.zero(pos, hole_end);
                            pos = hole_end;
                            continue;
                        }
                    };
                    self.cache.count_miss();
                    let mut laps = Laps::started_at(lookup_start);
                    laps.lap(Stage::Lookup);
                    let run_end = mapping
                        .end_block()
                        .min(end.div_ceil(BLOCK_BYTES))
                        .min(page + SEGMENTS_MAX as u64);
                    let start = RunStart {
                        page,
                        max_pages: run_end.saturating_sub(page).max(1) as usize,
                    };
                    let progress = match self.miss_order {
                        ReadMode::Sync => self.miss_sync(io, file, start, laps, &mut dst)?,
                        ReadMode::Async => self.miss_async(io, file, start, laps, &mut dst)?,
                    };
                    next = progress.next;
                    pos = pos.max((page + progress.pages as u64).saturating_mul(BLOCK_BYTES));
                    continue;
                }
            }
            pos = (page + 1).saturating_mul(BLOCK_BYTES);
        }
        Ok(len)
    }
}

fn read_error(file: &File, offset_bytes: u64, e: aios_cache::CacheError) -> FsError {
    FsError::Read {
        ino: file.ino(),
        offset_bytes,
        source: Box::new(e.into()),
    }
}
