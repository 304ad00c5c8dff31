//! A cached-read miss: the step functions, and the two orders that run them.
//!
//! # Role
//! A *miss run* is 1..=[`SEGMENTS_MAX`] consecutive pages of one file that are not cached and
//! lie in one written extent (so they are physically contiguous): it becomes ONE device request,
//! one page [`Buf`] per scatter-gather segment. Both read modes run the same steps; only their
//! order and where the wait sits differ, so a comparison measures the order, not the code:
//!
//! | step | sync (vanilla) | async (AIOS) |
//! | --- | --- | --- |
//! | 1 | per page: `lookup` -> `page_alloc` (arena) -> `cache_insert` (`insert_locked`) | `lookup` of every page |
//! | 2 | `map` (extent map, loaded at open) | `page_alloc` (per-thread pool) |
//! | 3 | `submit` (unregistered buffers) | `map` |
//! | 4 | `device_wait` | `submit` (registered buffers) |
//! | 5 | `complete` (`complete_fill`) | in the device window: `cache_insert` (`insert_filled_later`), `pool_refill` |
//! | 6 | `copy_out` | `device_wait`, `complete`, `copy_out` |
//!
//! Where there is no device time to overlap, the async order does not pay for overlapping. On a
//! device that completes inside `submit` (`DeviceInfo::completes_in_submit`: the pread backend,
//! zram) the window of steps 5-6 is empty: the insertion and the refill would run on the
//! critical path anyway, the pool's refill costs more than the arena page it replaces, and a
//! lazy insertion lets another thread miss on a page we are reading. So such a mount runs the
//! sync column for `ReadMode::Async` too (the mount decides once, `Fs::miss_order`; its contexts
//! get no pool). Measured with pread over RAM, cold 4 KiB reads, one thread: the async column
//! cost ~360 more instructions per miss than the sync one (~100 for the pool's take and refill
//! over an arena page, ~200 for collecting the lazy insertions and moving them, ~40 for extra
//! stopwatch laps) and was ~4% slower; now both run the same steps.
//!
//! # Promises
//! - **Never wrong data.** A page enters the cache up to date only through `complete_fill` with
//!   a full, successful read; a failed read publishes nothing (the cache removes the page), its
//!   memory goes back where it came from and the caller gets [`FsError::Read`] naming the file,
//!   the byte offset and the device's error.
//! - **Lost races.** Sync: `insert_locked` finding another thread's page ends the run there;
//!   that page is handed back as the next page to copy from (waiting for theirs). Async:
//!   `insert_filled_later` finding one makes our read a duplicate (the cache counts it); we copy
//!   from our own, correct buffer and release it to the pool.
//! - **Accounting.** Every lookup that misses is followed by exactly one insertion call, so the
//!   cache's identity `inserts + duplicates + raced + uncached == misses` holds.
//! - A request the device never reports back keeps its pages (leaked, never reused).

use aios_block::{BlockQueue, Bufs, Finished};
use aios_cache::{CacheError, FillTicket, Insert, InsertOrder, Key, PageCache, PagePool, PageRef};
use aios_device::{Buf, Device, DeviceError, Op, Queue, Tag, BLOCK_SIZE, SEGMENTS_MAX};
use aios_ext4::Location;
use arrayvec::ArrayVec;

use crate::breakdown::{Laps, Stage};
use crate::dst::Dst;
use crate::io::wait;
use crate::{File, Fs, FsError, IoCtx};

const BLOCK_BYTES: u64 = BLOCK_SIZE as u64;

/// Who publishes a page of a run once its read completes.
enum Owner<'c> {
    /// Our page is indexed and locked: publish it with `complete_fill`.
    Fill(FillTicket<'c>),
    /// Our page is not cached (a duplicate read, or the cache is full): copy from it, release it.
    Own,
}

/// Where a completed page's bytes are read from by the copy-out.
enum Source {
    Cached(PageRef),
    Own(Buf),
    Failed,
}

/// What a miss run did: pages read, and a page found right after them (a hit or, in sync mode,
/// another thread's page) that the caller copies from next instead of looking it up again.
pub(crate) struct Progress {
    pub pages: usize,
    pub next: Option<PageRef>,
}

/// The first page of a miss run, already looked up (and missed) by the caller.
#[derive(Clone, Copy)]
pub(crate) struct RunStart {
    pub page: u64,
    /// Most pages the run may cover: within one written extent, the read and `SEGMENTS_MAX`.
    pub max_pages: usize,
}

pub(crate) fn key(file: &File, page: u64) -> Key {
    file.cache.key(page)
}

/// `page_alloc`: a page for `key`'s read, from the pool (async) or the arena (sync; when the
/// arena is exhausted, a reclaimed or evicted cache page).
pub(crate) fn alloc_page(
    cache: &PageCache,
    pool: Option<&mut PagePool>,
    key: Key,
) -> Result<Buf, FsError> {
    if let Some(pool) = pool {
        return Ok(pool.take_or_refill(cache, key)?);
    }
    match cache.arena().alloc(1).ok().or_else(|| cache.spare_page()) {
        Some(buf) => Ok(buf),
        None => Err(CacheError::NoPage {
            key,
            max_pages: cache.max_pages(),
        }
        .into()),
    }
}

/// Sorts a multi-page request's fresh pages by arena address (they are not bound to file pages
/// until completion, by position). A pool hands pages out as a stack, so a run's pages would
/// otherwise be contiguous but descending; ascending, the kernel merges them into few DMA
/// segments (on the virtio disk, a 128 KiB read with 32 separate segments took 35 us longer).
pub(crate) fn in_address_order(bufs: &mut aios_block::Bufs) {
    if bufs.len() > 1 {
        bufs.sort_unstable_by_key(|b| b.segment().arena_offset);
    }
}

/// Gives a page back to where it came from: the pool (deferred) or the arena.
pub(crate) fn release_page(cache: &PageCache, pool: Option<&mut PagePool>, buf: Buf) {
    match pool {
        Some(pool) => pool.release(buf),
        None => cache.arena().free(buf),
    }
}

/// `map`: the device byte offset of logical page `page` of `file` (a written extent, as the
/// caller checked against the same in-memory map).
pub(crate) fn map(file: &File, page: u64) -> Result<u64, FsError> {
    match file.extents().find(page) {
        Some(m) if !m.unwritten => {
            let block = m.physical_block + (page - m.logical_block);
            Ok(block.saturating_mul(BLOCK_BYTES))
        }
        _ => Err(FsError::Corrupt {
            at: Location::ExtentRoot { ino: file.ino() },
            what: "miss run outside a written extent",
        }),
    }
}

/// `submit`: stages one read of `bufs` at `offset_bytes` and rings the device. On refusal the
/// buffers come back with the error.
pub(crate) fn submit<Q: Queue>(
    q: &mut BlockQueue<Q>,
    offset_bytes: u64,
    bufs: Bufs,
) -> Result<Tag, (FsError, Vec<Buf>)> {
    let tag = q
        .stage(Op::Read, offset_bytes, bufs)
        .map_err(|refused| (FsError::from(refused.error), refused.bufs))?;
    // A failed submit leaves the request with the device: its pages cannot be reclaimed.
    q.submit().map_err(|error| (error.into(), Vec::new()))?;
    Ok(tag)
}

/// The result of page `i` of a request whose overall result is `result`.
pub(crate) fn page_result(result: &Result<u32, DeviceError>, i: usize) -> Result<u32, DeviceError> {
    match result {
        Ok(total) => {
            let before = u32::try_from(i * BLOCK_SIZE).unwrap_or(u32::MAX);
            Ok(total.saturating_sub(before).min(BLOCK_SIZE as u32))
        }
        Err(e) => Err(e.clone()),
    }
}

impl<D: Device> Fs<D> {
    fn read_error(file: &File, page: u64, read_offset: u64, source: FsError) -> FsError {
        FsError::Read {
            ino: file.ino(),
            offset_bytes: page.saturating_mul(BLOCK_BYTES).max(read_offset),
            source: Box::new(source),
        }
    }

    /// Sync (vanilla) order. See the module table.
    pub(crate) fn miss_sync(
        &self,
        io: &mut IoCtx<D::Queue>,
        file: &File,
        start: RunStart,
        mut laps: Laps,
        dst: &mut Dst<'_>,
    ) -> Result<Progress, FsError> {
        let cache = &self.cache;
        let mut bufs = Bufs::new();
        let mut owners: ArrayVec<Owner<'_>, SEGMENTS_MAX> = ArrayVec::new();
        let mut next = None;
        for i in 0..start.max_pages.min(SEGMENTS_MAX) {
            let page = start.page + i as u64;
            let key = key(file, page);
            if i > 0 {
                next = cache.lookup(key);
                laps.lap(Stage::Lookup);
                if next.is_some() {
                    break;
                }
            }
            let buf = match alloc_page(cache, None, key) {
                Ok(buf) => buf,
                Err(e) => {
                    bufs.into_iter().for_each(|b| cache.arena().free(b));
                    return Err(Self::read_error(file, page, dst.offset, e));
                }
            };
            laps.lap(Stage::PageAlloc);
            let owner = match cache.insert(key, InsertOrder::BeforeSubmit) {
                Insert::Fill(ticket) => Owner::Fill(ticket),
                Insert::Uncached => Owner::Own,
                Insert::Present(theirs) => {
                    cache.arena().free(buf);
                    laps.lap(Stage::CacheInsert);
                    next = Some(theirs);
                    break;
                }
            };
            laps.lap(Stage::CacheInsert);
            owners.push(owner);
            bufs.push(buf);
        }
        let pages = owners.len();
        if pages == 0 {
            return Ok(Progress { pages, next });
        }
        let offset_bytes = match map(file, start.page) {
            Ok(offset) => offset,
            Err(e) => {
                bufs.into_iter().for_each(|b| cache.arena().free(b));
                return Err(e);
            }
        };
        laps.lap(Stage::Map);
        let tag = submit(&mut io.queue, offset_bytes, bufs).map_err(|(e, bufs)| {
            bufs.into_iter().for_each(|b| cache.arena().free(b));
            Self::read_error(file, start.page, dst.offset, e)
        })?;
        laps.lap(Stage::Submit);
        let window = laps.mark();
        let done = wait(&mut io.queue, tag)
            .map_err(|e| Self::read_error(file, start.page, dst.offset, e))?;
        laps.window(Stage::DeviceWait, window);
        self.finish_run(io, file, start.page, owners, done, &mut laps, dst)?;
        io.record(laps.finish(pages));
        Ok(Progress { pages, next })
    }

    /// Async (AIOS) order. See the module table.
    pub(crate) fn miss_async(
        &self,
        io: &mut IoCtx<D::Queue>,
        file: &File,
        start: RunStart,
        mut laps: Laps,
        dst: &mut Dst<'_>,
    ) -> Result<Progress, FsError> {
        let cache = &self.cache;
        let mut pages = 1;
        let mut next = None;
        while pages < start.max_pages.min(SEGMENTS_MAX) {
            next = cache.lookup(key(file, start.page + pages as u64));
            if next.is_some() {
                break;
            }
            pages += 1;
        }
        laps.lap(Stage::Lookup);
        let mut bufs = Bufs::new();
        for i in 0..pages {
            let page = start.page + i as u64;
            match alloc_page(cache, io.page_pool.as_mut(), key(file, page)) {
                Ok(buf) => bufs.push(buf),
                Err(e) => {
                    self.release_all(io, bufs);
                    return Err(Self::read_error(file, page, dst.offset, e));
                }
            }
        }
        in_address_order(&mut bufs);
        laps.lap(Stage::PageAlloc);
        let offset_bytes = match map(file, start.page) {
            Ok(offset) => offset,
            Err(e) => {
                self.release_all(io, bufs);
                return Err(e);
            }
        };
        laps.lap(Stage::Map);
        let tag = match submit(&mut io.queue, offset_bytes, bufs) {
            Ok(tag) => tag,
            Err((e, bufs)) => {
                self.release_all(io, bufs);
                return Err(Self::read_error(file, start.page, dst.offset, e));
            }
        };
        laps.lap(Stage::Submit);
        let window = laps.mark();
        // While the device works: lazy insertion, then the pool refill (which also drains the
        // pages released by earlier duplicates: the deferred release).
        let owners: ArrayVec<Owner<'_>, SEGMENTS_MAX> = (0..pages)
            .map(|i| {
                let key = key(file, start.page + i as u64);
                match cache.insert(key, InsertOrder::AfterSubmit) {
                    Insert::Fill(ticket) => Owner::Fill(ticket),
                    Insert::Present(_) | Insert::Uncached => Owner::Own,
                }
            })
            .collect();
        laps.lap(Stage::CacheInsert);
        if let Some(pool) = io.page_pool.as_mut() {
            pool.refill(cache);
        }
        laps.lap(Stage::PoolRefill);
        let done = wait(&mut io.queue, tag)
            .map_err(|e| Self::read_error(file, start.page, dst.offset, e))?;
        laps.window(Stage::DeviceWait, window);
        self.finish_run(io, file, start.page, owners, done, &mut laps, dst)?;
        io.record(laps.finish(pages));
        Ok(Progress { pages, next })
    }

    fn release_all(&self, io: &mut IoCtx<D::Queue>, bufs: impl IntoIterator<Item = Buf>) {
        for buf in bufs {
            release_page(&self.cache, io.page_pool.as_mut(), buf);
        }
    }

    /// `complete` then `copy_out`, shared by both orders: publish our locked pages (or drop them
    /// from the cache if the read failed), then copy every page's wanted bytes to the caller and
    /// release the pages the cache did not take.
    #[allow(clippy::too_many_arguments)]
    fn finish_run(
        &self,
        io: &mut IoCtx<D::Queue>,
        file: &File,
        first_page: u64,
        owners: ArrayVec<Owner<'_>, SEGMENTS_MAX>,
        done: Finished,
        laps: &mut Laps,
        dst: &mut Dst<'_>,
    ) -> Result<(), FsError> {
        let cache = &self.cache;
        let read_offset = dst.offset;
        let mut failed: Option<FsError> = None;
        let mut sources: ArrayVec<Source, SEGMENTS_MAX> = ArrayVec::new();
        for (i, (owner, buf)) in owners.into_iter().zip(done.bufs).enumerate() {
            let page = first_page + i as u64;
            let result = page_result(&done.result, i);
            let source = match owner {
                Owner::Fill(ticket) => match cache.complete_fill(ticket, buf, result) {
                    Ok(page) => Source::Cached(page),
                    Err(f) => {
                        release_page(cache, io.page_pool.as_mut(), f.buf);
                        failed.get_or_insert_with(|| {
                            Self::read_error(file, page, read_offset, f.error.into())
                        });
                        Source::Failed
                    }
                },
                Owner::Own => match result {
                    Ok(n) if n as usize == BLOCK_SIZE => Source::Own(buf),
                    other => {
                        release_page(cache, io.page_pool.as_mut(), buf);
                        let key = key(file, page);
                        let error = match other {
                            Err(source) => CacheError::Fill { key, source },
                            Ok(read_bytes) => CacheError::BadFill {
                                key,
                                buf_bytes: BLOCK_SIZE,
                                read_bytes,
                            },
                        };
                        failed.get_or_insert_with(|| {
                            Self::read_error(file, page, read_offset, error.into())
                        });
                        Source::Failed
                    }
                },
            };
            sources.push(source);
        }
        laps.lap(Stage::Complete);
        for (i, source) in sources.into_iter().enumerate() {
            let page = first_page + i as u64;
            let (within, out) = dst.span(page);
            match source {
                Source::Cached(cached) => {
                    if let Err(e) = cache.copy_out(&cached, within, out) {
                        failed.get_or_insert_with(|| {
                            Self::read_error(file, page, read_offset, e.into())
                        });
                    }
                }
                Source::Own(buf) => {
                    let bytes = cache.arena().bytes(&buf);
                    if let Some(src) = bytes.get(within..within + out.len()) {
                        out.copy_from_slice(src);
                    }
                    release_page(cache, io.page_pool.as_mut(), buf);
                }
                Source::Failed => {}
            }
        }
        laps.lap(Stage::CopyOut);
        failed.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::in_address_order;
    use crate::{Fs, MountOptions, ReadMode, Stage};
    use aios_cache::{CacheConfig, Key, PageCache, PagePool};
    use aios_device::{Arena, Device, BLOCK_SIZE};
    use aios_device_emu::{DiskImage, EmuConfig, EmuDevice};
    use aios_device_psync::{PsyncConfig, PsyncDevice};
    use std::sync::Arc;

    const FILE_PAGES: usize = 16;

    /// Reads every other page of `/f` cold (one single-page miss run each), checks the bytes and
    /// returns the breakdown of those misses and the context's pool pages afterwards.
    fn read_cold<D: Device>(fs: &Fs<D>, expected: &[u8]) -> (crate::Breakdown, usize) {
        let mut io = fs.io().unwrap();
        let ino = fs.lookup(&mut io, "/f").unwrap();
        let file = fs.open(&mut io, ino).unwrap();
        let mut page = vec![0u8; BLOCK_SIZE];
        for i in (0..FILE_PAGES).step_by(2) {
            let offset = i * BLOCK_SIZE;
            assert_eq!(
                fs.read(&mut io, &file, offset as u64, &mut page).unwrap(),
                BLOCK_SIZE
            );
            assert!(page == expected[offset..offset + BLOCK_SIZE], "page {i}");
        }
        let stats = fs.cache().stats();
        assert_eq!(stats.misses, (FILE_PAGES / 2) as u64);
        assert_eq!(stats.inserts, stats.misses);
        (io.breakdown().unwrap().clone(), io.pool_pages())
    }

    /// Where there is no device time to overlap, the async order does not pay for overlapping:
    /// an async mount on a device that completes inside `submit` (pread) runs the vanilla steps
    /// (insertion before the submit, no pool, no refill); the same image on the emulated device
    /// keeps the AIOS order (insertion and refill in the device window).
    #[test]
    fn async_order_on_a_device_that_completes_in_submit_runs_the_vanilla_steps() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let expected: Vec<u8> = (0..FILE_PAGES * BLOCK_SIZE)
            .map(|i| (i / BLOCK_SIZE * 7 + i % 251) as u8)
            .collect();
        std::fs::write(src.join("f"), &expected).unwrap();
        let image = dir.path().join("fs.img");
        if let Err(e) = crate::mkfs::make_ext4(&image, 16 << 20, Some(&src)) {
            eprintln!("SKIPPED: {e}");
            return;
        }
        let options = MountOptions {
            read_mode: ReadMode::Async,
            readahead_pages: 0,
            breakdown: true,
            ..MountOptions::default()
        };

        let dev = PsyncDevice::open(&image, PsyncConfig::default()).unwrap();
        assert!(dev.info().completes_in_submit);
        let fs = Fs::mount(dev, options).unwrap();
        assert_eq!(fs.miss_order(), ReadMode::Sync);
        let (b, pool_pages) = read_cold(&fs, &expected);
        assert_eq!(b.misses, (FILE_PAGES / 2) as u64);
        assert_eq!(
            pool_pages, 0,
            "no pool: nothing to refill in a device window"
        );
        assert_eq!(b.count(Stage::PoolRefill), 0);
        assert_eq!(b.count(Stage::CacheInsert), b.misses);
        assert_eq!(b.count(Stage::PageAlloc), b.misses);
        drop(fs);

        let config = EmuConfig::parse("ull,size=16M,arena=64M").unwrap();
        let dev = EmuDevice::with_image(config, DiskImage::load(&image).unwrap()).unwrap();
        assert!(!dev.info().completes_in_submit);
        let fs = Fs::mount(dev, options).unwrap();
        assert_eq!(fs.miss_order(), ReadMode::Async);
        let (b, pool_pages) = read_cold(&fs, &expected);
        assert_eq!(b.misses, (FILE_PAGES / 2) as u64);
        assert!(pool_pages > 0);
        assert_eq!(
            b.count(Stage::PoolRefill),
            b.misses,
            "refilled in every device window"
        );
        assert_eq!(b.count(Stage::CacheInsert), b.misses);
    }

    /// Only the async order on a device without a window changes: a sync mount stays sync.
    #[test]
    fn miss_order_is_the_read_mode_except_async_without_a_device_window() {
        use crate::mount::miss_order;
        assert_eq!(miss_order(ReadMode::Sync, false), ReadMode::Sync);
        assert_eq!(miss_order(ReadMode::Sync, true), ReadMode::Sync);
        assert_eq!(miss_order(ReadMode::Async, false), ReadMode::Async);
        assert_eq!(miss_order(ReadMode::Async, true), ReadMode::Sync);
    }

    /// Regression: a run's pages came out of the pool in descending address order, so the
    /// kernel could not merge them into one DMA segment (128 KiB async reads 35 us slower).
    #[test]
    fn a_runs_pool_pages_are_submitted_contiguous_and_ascending() {
        let arena = Arc::new(Arena::new(256 * BLOCK_SIZE).unwrap());
        let cache = PageCache::new(arena, CacheConfig::with_max_pages(128)).unwrap();
        let mut pool = PagePool::new(&cache, 64);
        let mut bufs = aios_block::Bufs::new();
        for i in 0..32 {
            bufs.push(pool.take_or_refill(&cache, Key::new(1, i)).unwrap());
        }
        let offsets = |bufs: &aios_block::Bufs| -> Vec<u64> {
            bufs.iter().map(|b| b.segment().arena_offset).collect()
        };
        assert!(
            offsets(&bufs).windows(2).any(|w| w[0] > w[1]),
            "the pool no longer hands out descending pages: this test lost its point"
        );
        in_address_order(&mut bufs);
        let sorted = offsets(&bufs);
        assert!(sorted.windows(2).all(|w| w[1] == w[0] + BLOCK_SIZE as u64));
        for buf in bufs {
            pool.release(buf);
        }
    }
}
