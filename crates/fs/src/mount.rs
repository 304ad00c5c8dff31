//! Mounting: the superblock and every group descriptor, read once and verified.
//!
//! # Role
//! [`Fs::mount`] reads block 0 (the superblock lives at byte 1024), decodes it with
//! [`Superblock::decode`] (which checks its checksum and refuses unknown features and a journal
//! that needs recovery), checks that the device holds every block the superblock claims, then
//! reads the group descriptor table that follows it and decodes and verifies every descriptor.
//!
//! # Invariants of a mounted [`Fs`]
//! - `groups[g].group == g` for every group, and `groups.len() == sb.group_count()`.
//! - The block size is 4096 bytes, equal to the device's [`BLOCK_SIZE`] (the decoder refuses
//!   anything else), so file system block `b` is device byte `b * 4096`.
//! - `sb.blocks_count * 4096 <= device capacity`.
//! - Nothing on disk changes after mount: the mount is read-only and `Fs` is shared as `&Fs`.
//!   The only shared mutable state is the page cache, which synchronizes itself. (The
//!   read-write mount, [`crate::RwFs`], owns its `Fs` privately and never reads file data
//!   through it; its superblock and descriptors there are the mount-time ones.)
//!
//! # Read modes
//! [`MountOptions::read_mode`] picks the order of a cached-read miss for the whole mount
//! ([`ReadMode`]); the sync mode's queues use unregistered buffers (the vanilla per-I/O
//! pin/map), the async mode's registered ones and a per-thread page pool. See `cached_read`.
//!
//! Where there is no device time to overlap, the async order does not pay for overlapping: on a
//! device whose commands complete inside `submit`
//! ([`aios_device::DeviceInfo::completes_in_submit`], the pread backend on zram), misses run the
//! vanilla steps and contexts get no page pool ([`Fs::miss_order`] says which order misses run
//! in).

use aios_ext4::format::zones::SystemZones;
use std::sync::atomic::{AtomicU64, Ordering};

use aios_block::BlockQueue;
use aios_cache::{CacheConfig, PageCache, PagePool};
use aios_device::{CompletionMode, Device, QueueConfig, BLOCK_SIZE};
use aios_ext4::format::group::GroupDesc;
use aios_ext4::format::superblock::{Superblock, SUPERBLOCK_OFFSET_BYTES, SUPERBLOCK_SIZE_BYTES};
use aios_ext4::Location;

use crate::{FsError, IoCtx, ReadMode};

static NEXT_FS_ID: AtomicU64 = AtomicU64::new(1);

/// Default page-cache cap: 16 MiB of 4 KiB pages.
pub const CACHE_PAGES_DEFAULT: usize = 4096;
/// Default per-thread pool: the paper's 64 pre-mapped pages per CPU.
pub const POOL_PAGES_DEFAULT: usize = 64;

/// Default sequential readahead window: 128 KiB, as the kernel's default `read_ahead_kb`.
pub const READAHEAD_PAGES_DEFAULT: usize = 32;

/// How to mount. Read-only is the only mode so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountOptions {
    /// Order of cached-read misses (and buffer registration of every queue).
    pub read_mode: ReadMode,
    /// Interrupt-like sleeping or busy polling for completions, on every queue.
    pub completion: CompletionMode,
    /// Requests per thread's queue.
    pub queue_depth: u16,
    /// Most pages the shared page cache indexes. Keep it below the device arena's pages minus
    /// the pools and scratch pages of every thread. A read-write mount caps it at half the
    /// arena (commits need the rest).
    pub cache_pages: usize,
    /// Pages of each thread's pool (async mode only).
    pub pool_pages: usize,
    /// Sequential readahead window in pages (at most 32; 0: off). On by default with 32 pages
    /// (128 KiB, the kernel's default `read_ahead_kb`); random reads never trigger it. See
    /// `readahead`.
    pub readahead_pages: usize,
    /// Record the per-stage [`crate::Breakdown`] in every new [`IoCtx`] (off: no clock reads).
    pub breakdown: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            read_mode: ReadMode::default(),
            completion: CompletionMode::default(),
            queue_depth: 8,
            cache_pages: CACHE_PAGES_DEFAULT,
            pool_pages: POOL_PAGES_DEFAULT,
            readahead_pages: READAHEAD_PAGES_DEFAULT,
            breakdown: false,
        }
    }
}

impl MountOptions {
    /// The settings of each thread's queue: sync mode uses unregistered buffers (the kernel pins
    /// and maps every I/O, the vanilla cost), async mode registered (fixed) ones.
    pub fn queue_config(&self) -> QueueConfig {
        QueueConfig {
            depth: self.queue_depth,
            completion: self.completion,
            registered_buffers: self.read_mode == ReadMode::Async,
        }
    }
}

/// A mounted ext4 file system, shared by threads.
pub struct Fs<D: Device> {
    pub(crate) id: u64,
    pub(crate) device: D,
    pub(crate) sb: Superblock,
    pub(crate) groups: Vec<GroupDesc>,
    /// `Some(fs seed)` iff `metadata_csum`: passed to every verifying decoder.
    pub(crate) csum_seed: Option<u32>,
    /// Metadata blocks no file may map ([`SystemZones`]); the journal's are added by the
    /// read-write mount, which maps it.
    pub(crate) zones: SystemZones,
    /// The page cache shared by every thread's cached reads; key: (inode number, page index).
    pub(crate) cache: PageCache,
    pub(crate) options: MountOptions,
    /// The order misses run in: `options.read_mode`, except [`ReadMode::Sync`] on a device that
    /// completes inside `submit` (see the module docs).
    pub(crate) miss_order: ReadMode,
}

impl<D: Device> Fs<D> {
    /// Mounts `device` read-only. Opens a queue on the calling thread for the mount reads.
    pub fn mount(device: D, options: MountOptions) -> Result<Fs<D>, FsError> {
        Fs::mount_inner(device, options, false)
    }

    /// As [`Fs::mount`]; with `recovering`, a superblock whose `needs_recovery` is set is
    /// accepted (the read-write mount's first look, to find the journal inode before replay:
    /// nothing but the journal's own blocks may be trusted from such a mount).
    pub(crate) fn mount_inner(
        device: D,
        options: MountOptions,
        recovering: bool,
    ) -> Result<Fs<D>, FsError> {
        let id = NEXT_FS_ID.fetch_add(1, Ordering::Relaxed);
        let queue = BlockQueue::open(&device, options.queue_config())?;
        let mut io = IoCtx::new(id, queue, device.arena().clone(), None, false);
        io.read_blocks(0, 1)?;
        let start = SUPERBLOCK_OFFSET_BYTES as usize;
        let sb_bytes = io
            .page(0)
            .get(start..start + SUPERBLOCK_SIZE_BYTES)
            .unwrap_or_default();
        let sb = if recovering {
            Superblock::decode_recovering(sb_bytes)?
        } else {
            Superblock::decode(sb_bytes)?
        };
        let capacity_blocks = device.info().capacity_bytes / BLOCK_SIZE as u64;
        if sb.blocks_count > capacity_blocks {
            return Err(FsError::Corrupt {
                at: Location::Superblock,
                what: "s_blocks_count exceeds the device",
            });
        }
        let csum_seed = sb.verify_seed();
        let groups = read_groups(&mut io, &sb, csum_seed)?;
        drop(io);
        let cache = PageCache::new(
            device.arena().clone(),
            CacheConfig::with_max_pages(options.cache_pages),
        )?;
        let zones = SystemZones::new(&sb, &groups);
        let miss_order = miss_order(options.read_mode, device.info().completes_in_submit);
        Ok(Fs {
            id,
            device,
            sb,
            groups,
            csum_seed,
            zones,
            cache,
            options,
            miss_order,
        })
    }

    /// Opens this thread's I/O context: a block queue, scratch pages and, when misses run the
    /// async order ([`Fs::miss_order`]), a page pool filled now (off the read path).
    pub fn io(&self) -> Result<IoCtx<D::Queue>, FsError> {
        let queue = BlockQueue::open(&self.device, self.options.queue_config())?;
        let pool = (self.miss_order == ReadMode::Async)
            .then(|| PagePool::new(&self.cache, self.options.pool_pages));
        Ok(IoCtx::new(
            self.id,
            queue,
            self.device.arena().clone(),
            pool,
            self.options.breakdown,
        ))
    }

    /// The options this file system was mounted with.
    pub fn options(&self) -> &MountOptions {
        &self.options
    }

    /// The order cached-read misses run in: the mount's [`MountOptions::read_mode`], except
    /// that [`ReadMode::Async`] runs the vanilla steps ([`ReadMode::Sync`]) on a device that
    /// completes inside `submit`, where there is no device time to overlap. Read a
    /// [`crate::Breakdown`] in this order.
    pub fn miss_order(&self) -> ReadMode {
        self.miss_order
    }

    /// The page cache shared by this mount's cached reads.
    pub fn cache(&self) -> &PageCache {
        &self.cache
    }

    /// The decoded superblock.
    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    /// Every group descriptor, by group number.
    pub fn groups(&self) -> &[GroupDesc] {
        &self.groups
    }

    /// The device under the file system.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// Unmounts: drops the page cache, whose pages go back to the device's arena, and returns
    /// the device, so it can be mounted again (say, with other options) without reopening it
    /// and re-faulting its arena.
    pub fn unmount(self) -> D {
        let Fs { device, cache, .. } = self;
        drop(cache);
        device
    }

    /// Reads `count` blocks from `first_block` into `io`, refusing blocks outside the file system
    /// (reported as corruption of the structure at `at`, which pointed there).
    pub(crate) fn read_blocks(
        &self,
        io: &mut IoCtx<D::Queue>,
        first_block: u64,
        count: usize,
        at: Location,
    ) -> Result<(), FsError> {
        if io.fs_id != self.id {
            return Err(FsError::ForeignIoCtx);
        }
        let end = first_block.checked_add(count as u64);
        if first_block == 0 || end.is_none_or(|end| end > self.sb.blocks_count) {
            return Err(FsError::Corrupt {
                at,
                what: "points outside the file system",
            });
        }
        io.read_blocks(first_block, count)
    }
}

/// The order misses run in for `read_mode` on a device that does (or does not) complete its
/// commands inside `submit`. The AIOS order gains by moving work (the cache insertion, the pool
/// refill) into the device's time and by pages registered once (which only a queue that maps
/// buffers per I/O can save). With the command done when `submit` returns there is neither: the
/// moved work would run on the critical path anyway, with more steps (the pool's refill
/// costs more than the vanilla page allocation), and a lazy insertion would let another thread
/// read the page again instead of waiting for ours.
pub(crate) fn miss_order(read_mode: ReadMode, completes_in_submit: bool) -> ReadMode {
    match read_mode {
        ReadMode::Async if completes_in_submit => ReadMode::Sync,
        mode => mode,
    }
}

/// Reads and verifies the primary group descriptor table (right after the superblock's block).
fn read_groups<Q: aios_device::Queue>(
    io: &mut IoCtx<Q>,
    sb: &Superblock,
    csum_seed: Option<u32>,
) -> Result<Vec<GroupDesc>, FsError> {
    let count = sb.group_count();
    let desc_size = usize::from(sb.desc_size_bytes);
    let mut groups = Vec::with_capacity(count as usize);
    let mut loaded_block = None;
    for group in 0..count {
        let Some(offset_bytes) = sb.group_desc_offset_bytes(group) else {
            break;
        };
        let block = offset_bytes / BLOCK_SIZE as u64;
        let within = (offset_bytes % BLOCK_SIZE as u64) as usize;
        if block >= sb.blocks_count {
            return Err(FsError::Corrupt {
                at: Location::GroupDesc { group },
                what: "descriptor table runs past the file system",
            });
        }
        if loaded_block != Some(block) {
            io.read_blocks(block, 1)?;
            loaded_block = Some(block);
        }
        let raw = io
            .page(0)
            .get(within..within + desc_size)
            .unwrap_or_default();
        groups.push(GroupDesc::decode(
            raw,
            group,
            sb.desc_size_bytes,
            sb.blocks_count,
            csum_seed,
        )?);
    }
    Ok(groups)
}
