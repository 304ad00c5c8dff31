//! Reading file contents through a read-write mount: the read path of the read-only mount
//! ([`crate::Fs::read`]: the page cache, the vanilla or AIOS order of a miss, polled or
//! interrupt completion, the per-stage breakdown), over the mount's own view of each file.
//!
//! The mount's own view is the truth: the mutator's inode and extent tree (changes not yet
//! committed included), then for each block its newest contents: a dirty block of the running
//! transaction, a block not yet home ([`super::state::State::unhomed`]: taken by a commit or
//! data sync in flight, or logged by `data=journal` and not yet checkpointed), or the device
//! through the page cache. Holes and unwritten extents read as zeros.
//!
//! # Two steps, the device outside the lock
//! 1. *Plan*, under the state lock (memory only, once the inode's metadata is cached): the size,
//!    the block map and the inode's cache epoch become a [`File`] (for a read by handle, the
//!    open file's view of its current epoch is reused: no inode decode, no extent-tree walk,
//!    `view`); the pages whose newest bytes
//!    are in memory are copied into the caller's buffer at once, and split the rest of the read
//!    into *segments*. A read with segments registers with [`super::reads::ReadsInFlight`], so
//!    a block freed meanwhile is not reused before the read ends.
//! 2. *Cache*, without the lock: each segment is a [`crate::Fs::read`] of that [`File`]: hits
//!    are copied, runs of misses become one device request each (a 64 KiB read of a contiguous
//!    file is one request), in the mount's [`crate::ReadMode`]; then the read deregisters.
//!
//! # Why a cached page is never stale
//! - A page whose newest bytes are in memory is never read from home into the cache: it is
//!   not in any segment.
//! - Every operation that changes an inode's data, size, block map or existence bumps its cache
//!   epoch (`State::note`: creation, write, truncate, fallocate, the free at the last close of
//!   an unlinked open file; an inode number freed and reused is bumped by its creation), and the
//!   epoch is part of every cache key (`crate::cache_id::CacheId`): a page cached before a
//!   change, or by a read planned before it and still in flight, is keyed in an older epoch and
//!   never found again (CLOCK evicts it). A page cached in the current epoch was read from home
//!   after the last change, when no newer bytes were in memory.
//!
//! The price: a write to a file makes all of its cached pages unreachable, not only the pages
//! it wrote. It goes when dirty data lives in the page cache itself (the one-stack issue).
//!
//! A read concurrent with a write of the same bytes returns them as they were when the plan was
//! taken or as the write left them; a block read from the device while its new bytes are being
//! written home is whole only if the device writes 4 KiB atomically (the device contract says
//! it does; a disk with 512-byte sectors may not).
//!
//! # Readahead (reads by handle)
//! A [`super::RwFile`] keeps its sequential state across reads; the [`File`] of a plan takes
//! it in and gives it back, so a sequential stream reads ahead as on the read-only mount
//! (`crate::readahead`). A page read ahead is read from home into the current epoch, so the
//! plan's map stops where the first page whose newest bytes are in memory lies within the
//! farthest readahead may reach (`readahead_limit`): past that the file reads as a hole to
//! readahead, which stops at a hole. A read that copies any page from memory does not read
//! ahead at all: its segments end before such pages, and readahead starts from a segment's
//! end. The lock-free hit path advances the handle's sequential
//! state, and takes the locked path once a read comes within half a window of the frontier,
//! so the next window is read while the stream still hits (the kernel's `PG_readahead`).
//! Reads by path have no history and never read ahead.

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

use aios_device::{Device, BLOCK_SIZE, SEGMENTS_MAX};
use aios_ext4::Location;

use super::file::RwFile;
use super::published::SIZE_UNKNOWN;
use super::reads::{ReadTicket, ReadsInFlight};
use super::state::State;
use super::view::FileView;
use super::{RwCtx, RwError, RwShared};
use crate::cache_id::FILE_PAGES_MAX;
use crate::error::display_path;
use crate::readahead_state::SeqState;
use crate::{Access, ExtentMap, File, FsError};

const BLOCK_BYTES: u64 = BLOCK_SIZE as u64;

/// What is left of a read after its plan.
struct Plan {
    /// Bytes the read returns (short only at the end of the file).
    len: usize,
    /// The file as the plan saw it: size, block map, cache epoch.
    file: File,
    /// File byte ranges left for the page cache, ascending.
    segments: Vec<Range<u64>>,
}

impl<D: Device> RwShared<D> {
    /// Reads up to `out.len()` bytes of the regular file `path` at `offset_bytes`; returns the
    /// bytes read (short only at the end of the file).
    pub fn read(
        &self,
        ctx: &mut RwCtx<D>,
        path: impl AsRef<[u8]>,
        offset_bytes: u64,
        out: &mut [u8],
    ) -> Result<usize, RwError> {
        self.read_inode(ctx, path.as_ref(), None, None, offset_bytes, out)
    }

    /// Reads inode `ino` (named `path` in errors) through a handle whose sequential state is
    /// `seq`; see [`RwShared::read`].
    pub(super) fn read_ino(
        &self,
        ctx: &mut RwCtx<D>,
        path: &[u8],
        ino: u32,
        seq: Option<&SeqState>,
        offset_bytes: u64,
        out: &mut [u8],
    ) -> Result<usize, RwError> {
        self.read_inode(ctx, path, Some(ino), seq, offset_bytes, out)
    }

    /// Reads inode `ino`, or the one `path` names (looked up in the same hold of the state lock
    /// as the plan, so an unlink and a reuse of the inode number in between cannot make a read
    /// of `path` return another file's bytes).
    fn read_inode(
        &self,
        ctx: &mut RwCtx<D>,
        path: &[u8],
        ino: Option<u32>,
        seq: Option<&SeqState>,
        offset_bytes: u64,
        out: &mut [u8],
    ) -> Result<usize, RwError> {
        let _busy = self.busy();
        let (plan, _in_flight) = {
            // A read by handle of an unchanged open file reuses its view: no inode decode, no
            // extent-tree walk under the lock.
            let cached = |st: &State| Ok(ino.and_then(|ino| st.view(ino)));
            let (mut st, cached, loaded) = self.run_locked(ctx, cached, |m, r, cached| {
                if cached.is_some() {
                    return Ok(None);
                }
                let ino = match ino {
                    Some(ino) => ino,
                    None => m.lookup_path(r, path)?.ok_or_else(|| FsError::NotFound {
                        path: display_path(path),
                    })?,
                };
                let inode = m.inode(r, ino)?;
                if !inode.is_regular() {
                    return Err(FsError::NotARegularFile { ino });
                }
                let extents = m.extents(r, ino)?;
                let map = ExtentMap::from_extents(ino, &extents, self.fs.sb.blocks_count)?;
                Ok(Some((inode, map)))
            })?;
            let view = match (cached, loaded) {
                (_, Err(cause)) => return Err(op_error(path, cause)),
                (Some(view), _) if view.clean => view,
                (Some(view), _) => {
                    // Its bytes in memory may have gone home since: look again.
                    let view = Arc::new(view.with_clean(is_clean(&st, &view.map)));
                    keep_view(&mut st, &view);
                    view
                }
                (None, Ok(Some((inode, map)))) => {
                    let ino = inode.ino;
                    let clean = is_clean(&st, &map);
                    let view = Arc::new(FileView {
                        epoch: st.cache_epoch.get(&ino).copied().unwrap_or(0),
                        inode,
                        map: Arc::new(map),
                        clean,
                    });
                    keep_view(&mut st, &view);
                    view
                }
                (None, Ok(None)) => unreachable!("a load without a cached view returns one"),
            };
            if offset_bytes >= view.inode.size_bytes || out.is_empty() {
                return Ok(0);
            }
            let inode = view.inode.clone();
            let file = match seq {
                Some(seq) => {
                    let end = offset_bytes.saturating_add(out.len() as u64);
                    let limit =
                        readahead_limit(&st, &view.map, end, self.fs.options.readahead_pages);
                    let map = if limit < map_end(&view.map) {
                        Arc::new((*view.map).clone().clipped(limit))
                    } else {
                        Arc::clone(&view.map)
                    };
                    let mut file = File::with_map(inode, map, view.epoch);
                    file.seq = seq.clone();
                    file
                }
                None => {
                    let file = File::with_map(inode, Arc::clone(&view.map), view.epoch);
                    file.advise(Access::Random);
                    file
                }
            };
            let plan = plan(&st, file, offset_bytes, out).map_err(|cause| op_error(path, cause))?;
            let segment_bytes: u64 = plan.segments.iter().map(|s| s.end - s.start).sum();
            if segment_bytes != plan.len as u64 {
                // Some pages came from memory: readahead would start from the end of the
                // segment before one of them and read it from home, stale (`readahead_limit`
                // guards only what lies past the read's end).
                plan.file.advise(Access::Random);
            }
            let running = st.running;
            let in_flight = (!plan.segments.is_empty()).then(|| InFlight {
                shared: self,
                ticket: Some(self.reads().begin(running)),
            });
            (plan, in_flight)
        };
        // `_in_flight` ends the read when dropped: after the segments, on an error or a panic.
        self.read_segments(ctx, &plan, offset_bytes, out)
            .map_err(|cause| op_error(path, cause))?;
        if let Some(seq) = seq {
            seq.follow(offset_bytes + plan.len as u64, &plan.file.seq);
        }
        Ok(plan.len)
    }

    /// Step 2 (no lock): each segment through the page cache.
    fn read_segments(
        &self,
        ctx: &mut RwCtx<D>,
        plan: &Plan,
        offset_bytes: u64,
        out: &mut [u8],
    ) -> Result<(), FsError> {
        for segment in &plan.segments {
            let dst = out
                .get_mut(
                    (segment.start - offset_bytes) as usize..(segment.end - offset_bytes) as usize,
                )
                .ok_or(FsError::Corrupt {
                    at: Location::Inode {
                        ino: plan.file.ino(),
                    },
                    what: "read segment outside the buffer",
                })?;
            let n = self.fs.read(&mut ctx.io, &plan.file, segment.start, dst)?;
            debug_assert_eq!(n, dst.len(), "a segment ends inside the file");
        }
        Ok(())
    }
}

/// A read registered in [`super::reads::ReadsInFlight`]; dropping it ends the read, whatever
/// way the read ends (a leaked registration would hold every later freed block forever).
struct InFlight<'a, D: Device> {
    shared: &'a RwShared<D>,
    ticket: Option<ReadTicket>,
}

impl<D: Device> Drop for InFlight<'_, D> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.shared.end_read(ticket);
        }
    }
}

impl<D: Device> RwShared<D> {
    /// A read by handle planned without the state lock: when the file's published epoch has
    /// a clean view (no page newer in memory), every page comes from the cache or home, so
    /// the read registers as in flight, checks that the epoch is still the published one,
    /// and reads through the cache. `None`: the locked path must plan it.
    ///
    /// Registering before the check is what keeps freed blocks safe: a truncate or unlink
    /// that frees a block of this map publishes a new epoch before its transaction can
    /// commit; if the check did not see that epoch, the commit comes after the registration
    /// (both under the reads mutex) and parks the blocks until this read ends.
    pub(super) fn read_unlocked(
        &self,
        ctx: &mut RwCtx<D>,
        file: &RwFile,
        offset_bytes: u64,
        out: &mut [u8],
    ) -> Option<Result<usize, RwError>> {
        let snapshot = file.published.snapshot();
        let (size_bytes, epoch) = snapshot;
        if size_bytes == SIZE_UNKNOWN {
            return None;
        }
        let view = file
            .published
            .clean_view()
            .filter(|v| v.clean && v.epoch == epoch && v.inode.size_bytes == size_bytes)?;
        if offset_bytes >= size_bytes || out.is_empty() {
            return Some(Ok(0));
        }
        let _busy = self.busy();
        let running = self.running_now.load(Ordering::Acquire);
        let _in_flight = InFlight {
            shared: self,
            ticket: Some(self.reads().begin(running)),
        };
        if file.published.snapshot() != snapshot {
            return None;
        }
        let f = File::with_map(view.inode.clone(), Arc::clone(&view.map), epoch);
        f.seq.follow(file.seq.next_offset(), &file.seq);
        let read = self
            .fs
            .read(&mut ctx.io, &f, offset_bytes, out)
            .map_err(|cause| op_error(&file.path, cause));
        if let Ok(n) = read {
            file.seq.follow(offset_bytes + n as u64, &f.seq);
        }
        Some(read)
    }

    /// The reads in flight. Lock order: the state lock first, when both are held.
    pub(super) fn reads(&self) -> MutexGuard<'_, ReadsInFlight> {
        self.reads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A read's device reads are all done: freed blocks it held back may be reused. Takes the
    /// state lock only when it releases some.
    pub(super) fn end_read(&self, ticket: ReadTicket) {
        let free = self.reads().end(ticket);
        if !free.is_empty() {
            // Still held in the allocator meanwhile: no one else releases them (they left
            // `parked` above), so the only effect of the gap is a later reuse.
            self.lock().mutator.unhold_blocks(&free);
        }
    }
}

/// True if no block `map` names has newer bytes in memory.
fn is_clean(st: &State, map: &ExtentMap) -> bool {
    map.mappings().iter().all(|m| {
        let end = m.physical_block + u64::from(m.len_blocks);
        st.first_in_memory(m.physical_block..end).is_none()
    })
}

/// Keeps `view` for the next reads if its inode is open, and offers it to reads without the
/// state lock if it is clean.
fn keep_view(st: &mut State, view: &Arc<FileView>) {
    let ino = view.inode.ino;
    if !st.open_count.contains_key(&ino) {
        return;
    }
    st.views.insert(ino, Arc::clone(view));
    if view.clean {
        if let Some(published) = st.published.get(&ino) {
            published.set_clean_view(Arc::clone(view));
        }
    }
}

/// One past the last mapped block of `map` (0 if none).
fn map_end(map: &ExtentMap) -> u64 {
    map.mappings().last().map_or(0, |m| m.end_block())
}

/// Where readahead past a read ending at byte `end` must stop: the first page whose newest
/// bytes are in memory (dirty, or not yet home), within the farthest a readahead may reach
/// from there (a frontier up to one window ahead, plus a window). A page read ahead from home
/// while newer bytes are in memory would be cached in the current epoch and served once those
/// bytes went home; pages written later are safe, their write moves the epoch on.
fn readahead_limit(
    st: &super::state::State,
    map: &ExtentMap,
    end: u64,
    window_pages: usize,
) -> u64 {
    let first = end.div_ceil(BLOCK_BYTES);
    let reach = first.saturating_add(2 * window_pages.min(SEGMENTS_MAX) as u64);
    let mut page = first;
    while page < reach {
        let Some(m) = map.find(page) else {
            // A hole: readahead stops at the end of an extent anyway; look past it.
            match map.next_mapped(page) {
                Some(next) => {
                    page = next;
                    continue;
                }
                None => return reach,
            }
        };
        let to = m.end_block().min(reach);
        let from_phys = m.physical_block + (page - m.logical_block);
        let to_phys = from_phys + (to - page);
        if let Some(b) = st.first_in_memory(from_phys..to_phys) {
            return page + (b - from_phys);
        }
        page = to;
    }
    reach
}

/// Step 1 (state locked): copies the pages of `[offset_bytes, end)` whose newest bytes are in
/// memory (dirty, not yet home) into `out` and lists the byte ranges between them as segments
/// for the page cache.
fn plan(
    st: &super::state::State,
    file: File,
    offset_bytes: u64,
    out: &mut [u8],
) -> Result<Plan, FsError> {
    let ino = file.ino();
    let end = file
        .size_bytes()
        .min(offset_bytes.saturating_add(out.len() as u64));
    let mut segments: Vec<Range<u64>> = Vec::new();
    // Past the last page an ext4 file can map (a corrupt size) the file reads as a hole; the
    // cached read zero-fills it without a cache key.
    let mapped_end = end.min(FILE_PAGES_MAX * BLOCK_BYTES);
    if mapped_end < end {
        segments.push(mapped_end.max(offset_bytes)..end);
    }
    let mut page = offset_bytes / BLOCK_BYTES;
    while page * BLOCK_BYTES < mapped_end {
        let from = (page * BLOCK_BYTES).max(offset_bytes);
        let to = ((page + 1) * BLOCK_BYTES).min(mapped_end);
        let physical = match file.extents().find(page) {
            Some(m) if !m.unwritten => Some(m.physical_block + (page - m.logical_block)),
            _ => None,
        };
        let memory = physical.and_then(|b| st.mutator.dirty_data(b).or_else(|| st.unhomed(b)));
        match memory {
            Some(bytes) => {
                let within =
                    (from - page * BLOCK_BYTES) as usize..(to - page * BLOCK_BYTES) as usize;
                let src = bytes.get(within).ok_or(FsError::Corrupt {
                    at: Location::Inode { ino },
                    what: "short data block",
                })?;
                let dst = out
                    .get_mut((from - offset_bytes) as usize..(to - offset_bytes) as usize)
                    .ok_or(FsError::Corrupt {
                        at: Location::Inode { ino },
                        what: "read range outside the buffer",
                    })?;
                dst.copy_from_slice(src);
            }
            None => match segments.last_mut() {
                Some(last) if last.end == from => last.end = to,
                _ => segments.push(from..to),
            },
        }
        page += 1;
    }
    segments.sort_by_key(|s| s.start);
    Ok(Plan {
        len: (end - offset_bytes) as usize,
        file,
        segments,
    })
}

fn op_error(path: &[u8], cause: FsError) -> RwError {
    RwError::Op {
        op: "read",
        path: display_path(path),
        cause,
    }
}

#[cfg(test)]
mod tests {
    use crate::rw::test_mount::mount;
    use crate::rw::RwFs;
    use aios_device::Device;
    use std::collections::BTreeSet;

    fn blocks_of<D: Device + 'static>(fs: &mut RwFs<D>, path: &str) -> BTreeSet<u64> {
        let ino = fs.lookup(path).unwrap().unwrap();
        let (shared, ctx) = fs.parts();
        let mut st = shared.lock();
        let extents = shared
            .with_device_reads(&mut st, ctx, |m, r| m.extents(r, ino))
            .unwrap();
        extents
            .iter()
            .flat_map(|e| e.start_block..e.start_block + u64::from(e.len_blocks))
            .collect()
    }

    #[test]
    fn a_miss_by_handle_of_a_clean_file_takes_no_state_lock() {
        let Some(mut fs) = mount() else { return };
        let data: Vec<u8> = (0..64 * 4096).map(|i| (i / 4096) as u8).collect();
        fs.create("/clean", 0o644).unwrap();
        fs.write("/clean", 0, &data).unwrap();
        fs.fsync("/clean").unwrap();
        let shared = std::sync::Arc::clone(&fs.shared);
        let mut ctx = shared.ctx().unwrap();
        let file = shared
            .open(&mut ctx, "/clean", crate::OpenOptions::default())
            .unwrap();
        let mut page = vec![0u8; 4096];
        // The first read plans under the lock and offers the file's clean view.
        shared.read_at(&mut ctx, &file, 0, &mut page).unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        let held = shared.lock();
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut ctx = shared.ctx().unwrap();
                let mut page = vec![0u8; 4096];
                // Page 40 is not cached: a miss, read while another thread holds the lock.
                let n = shared
                    .read_at(&mut ctx, &file, 40 * 4096, &mut page)
                    .unwrap();
                done.send((n, page[0])).unwrap();
            });
            let got = finished.recv_timeout(std::time::Duration::from_secs(30));
            drop(held);
            assert_eq!(
                got.ok(),
                Some((4096, 40)),
                "the miss waited for the state lock"
            );
        });
        // A write moves the epoch on: the next miss plans under the lock again and sees it.
        shared
            .write(&mut ctx, "/clean", 50 * 4096, &[0xee; 4096])
            .unwrap();
        shared
            .read_at(&mut ctx, &file, 50 * 4096, &mut page)
            .unwrap();
        assert!(page.iter().all(|&b| b == 0xee));
        shared.close(&mut ctx, file).unwrap();
    }

    #[test]
    fn blocks_freed_under_a_read_in_flight_are_reused_only_after_it_ends() {
        let Some(mut fs) = mount() else { return };
        let data = vec![0x5a; 64 * 4096];
        fs.create("/victim", 0o644).unwrap();
        fs.write("/victim", 0, &data).unwrap();
        fs.fsync("/victim").unwrap();
        let freed = blocks_of(&mut fs, "/victim");
        assert_eq!(freed.len(), 64);

        // A read took its plan (the victim's blocks) and is reading the device.
        let ticket = {
            let st = fs.shared.lock();
            let running = st.running;
            fs.shared.reads().begin(running)
        };
        fs.truncate("/victim", 0).unwrap();
        fs.fsync("/victim").unwrap();
        {
            let st = fs.shared.lock();
            assert_eq!(
                st.mutator.held_for_reads, freed,
                "committed, but held for the read"
            );
            assert_eq!(st.mutator.pending_free_blocks(), 0);
        }
        // Files written meanwhile get other blocks, however many.
        for i in 0..8 {
            let path = format!("/other{i}");
            fs.create(&path, 0o644).unwrap();
            fs.write(&path, 0, &data).unwrap();
            fs.fsync(&path).unwrap();
            let got = blocks_of(&mut fs, &path);
            assert!(
                got.is_disjoint(&freed),
                "{path} reused a block under a read"
            );
        }
        fs.shared.end_read(ticket);
        assert!(fs.shared.lock().mutator.held_for_reads.is_empty());
        let (_, r) = fs.unmount();
        r.unwrap();
    }

    #[test]
    fn a_cache_hit_by_handle_takes_no_state_lock_and_sees_every_change() {
        let Some(fs) = mount() else { return };
        let shared = &fs.shared;
        let mut ctx = shared.ctx().unwrap();
        let how = crate::rw::OpenOptions {
            create: true,
            ..Default::default()
        };
        let file = shared.open(&mut ctx, "/f", how).unwrap();
        let first = vec![1u8; 8 * 4096];
        shared.write_at(&mut ctx, &file, 0, &first).unwrap();
        shared.fsync_file(&mut ctx, &file).unwrap();
        let mut back = vec![0u8; first.len()];
        shared.read_at(&mut ctx, &file, 0, &mut back).unwrap();
        assert_eq!(back, first);

        // Cached now: a second read completes while this thread holds the state lock.
        let held = shared.lock();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut ctx = shared.ctx().unwrap();
                let mut back = vec![0u8; 8 * 4096];
                let n = shared.read_at(&mut ctx, &file, 0, &mut back).unwrap();
                tx.send((n, back)).unwrap();
            });
            let got = rx.recv_timeout(std::time::Duration::from_secs(10));
            // Released before the scope joins the reader, so a failing read cannot hang it.
            drop(held);
            let (n, back) = got.expect("a cached read by handle waited for the state lock");
            assert_eq!((n, back), (first.len(), first.clone()));
        });

        // Every change through the handle or the path is seen by the next read.
        shared
            .write_at(&mut ctx, &file, 4096, &[2u8; 4096])
            .unwrap();
        shared.read_at(&mut ctx, &file, 0, &mut back).unwrap();
        assert_eq!(&back[4096..8192], &[2u8; 4096][..]);
        assert_eq!(&back[..4096], &first[..4096]);
        shared.fdatasync_file(&mut ctx, &file).unwrap();
        shared.read_at(&mut ctx, &file, 0, &mut back).unwrap();
        shared.read_at(&mut ctx, &file, 0, &mut back).unwrap();
        assert_eq!(&back[4096..8192], &[2u8; 4096][..]);
        shared.truncate(&mut ctx, "/f", 4096).unwrap();
        assert_eq!(shared.read_at(&mut ctx, &file, 0, &mut back).unwrap(), 4096);
        assert_eq!(shared.read_at(&mut ctx, &file, 4096, &mut back).unwrap(), 0);
        shared.write(&mut ctx, "/f", 0, &[3u8; 100]).unwrap();
        shared
            .read_at(&mut ctx, &file, 0, &mut back[..4096])
            .unwrap();
        assert_eq!(&back[..100], &[3u8; 100][..]);
        assert_eq!(&back[100..4096], &first[100..4096]);
        shared.close(&mut ctx, file).unwrap();
        assert!(
            shared.lock().published.is_empty(),
            "the last close unpublishes"
        );
    }

    /// A read that fails on the device still ends its registration (a registration that outlived
    /// its read would hold every block freed afterwards from the allocator for the mount's life).
    #[test]
    fn a_failed_read_holds_no_freed_block() {
        let Some(mut fs) = mount() else { return };
        fs.create("/f", 0o644).unwrap();
        fs.write("/f", 0, &vec![7u8; 16 * 4096]).unwrap();
        fs.fsync("/f").unwrap();
        fs.device()
            .faults()
            .arm(aios_device::FaultPlan::nth(0, aios_device::OpFilter::Reads).sticky());
        let mut buf = vec![0u8; 16 * 4096];
        assert!(
            fs.read("/f", 0, &mut buf).is_err(),
            "every device read fails"
        );
        fs.device().faults().disarm();
        fs.truncate("/f", 0).unwrap();
        fs.fsync("/f").unwrap();
        let st = fs.shared.lock();
        assert!(st.mutator.held_for_reads.is_empty(), "no read is in flight");
        assert_eq!(st.mutator.pending_free_blocks(), 0);
    }
}
