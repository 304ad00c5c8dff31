//! Mounting read-write and unmounting: recovery, the `needs_recovery` flag, the journal's place.
//!
//! # Order at mount (each step only after the previous one succeeded)
//! 1. A first look ([`Fs::mount_inner`], `needs_recovery` accepted): the superblock and the
//!    journal inode's extent map, turned into [`JournalExtents`] (only the journal's own blocks
//!    are trusted from this look; nothing else is read).
//! 2. If the superblock says `needs_recovery`: [`recover`] (replay home, flush, journal
//!    superblock clean with FUA), then the ext4 superblock re-read, `needs_recovery` cleared and
//!    written with FUA. Recovering twice is harmless: until that write the same log replays to
//!    the same blocks.
//! 3. A strict mount of the recovered image (the group descriptors as replayed) and
//!    [`Journal::open`] (it refuses a journal that still needs recovery).
//! 4. The ext4 superblock with `needs_recovery` set, `s_mnt_count` + 1 and the free counts
//!    summed from the group descriptors, written with FUA before any transaction.
//!
//! # Why the flag is set while mounted
//! The kernel does the same: `ext4_setup_super` sets `EXT4_FEATURE_INCOMPAT_RECOVER` on every
//! read-write mount with a journal and commits the superblock; `ext4_put_super` clears it after
//! `jbd2_journal_destroy` (which checkpoints and marks the journal clean), and only when the
//! journal was not aborted. So the flag on disk means "this journal may hold transactions":
//! a crash at any moment of the mount leaves it set, and the next mount (ours, the kernel's,
//! `e2fsck`) replays. The free counts are recomputed at mount as the kernel's per-cpu counters
//! are (`ext4_count_free_clusters`): a superblock replayed from an older transaction may lag.
//!
//! # Order at unmount
//! [`Journal::unmount`] (checkpoint: home writes, flush, journal superblock clean with FUA), then
//! the ext4 superblock with `needs_recovery` cleared, written with FUA. After an abort nothing is
//! written: the flag stays set and the next mount recovers.

use aios_block::BlockQueue;
use aios_device::{Arena, Device, Op, Queue, BLOCK_SIZE};
use aios_ext4::format::superblock::{Superblock, SUPERBLOCK_OFFSET_BYTES, SUPERBLOCK_SIZE_BYTES};
use aios_ext4::Location;
use aios_journal::runtime::{recover_with, Journal, JournalExtent, JournalExtents, JournalOptions};

use std::sync::Arc;

use super::flusher::Flusher;
use super::state::State;
use super::{RwCtx, RwError, RwFs, RwOptions, RwShared};
use crate::{Fs, FsBlocks, FsError, IoCtx, Mutator};

const SB_START: usize = SUPERBLOCK_OFFSET_BYTES as usize;
const SB_END: usize = SB_START + SUPERBLOCK_SIZE_BYTES;

fn fs_err(step: &'static str) -> impl Fn(FsError) -> RwError {
    move |cause| RwError::Fs { step, cause }
}

fn journal_err(step: &'static str) -> impl Fn(aios_journal::runtime::RuntimeError) -> RwError {
    move |cause| RwError::Journal { step, cause }
}

impl<D: Device + 'static> RwFs<D> {
    /// Mounts `device` read-write (see the module documentation for the order of steps).
    pub fn mount(device: D, options: RwOptions) -> Result<RwFs<D>, RwError> {
        // 1. First look: the journal's extents.
        let first = Fs::mount_inner(device, options.mount, true).map_err(fs_err("mount"))?;
        if !first.sb.has_journal() || first.sb.journal_inum == 0 {
            return Err(RwError::Unsupported {
                step: "mount read-write",
                what: "the file system has no journal (aios writes only through one)",
            });
        }
        let mut io = first.io().map_err(fs_err("mount"))?;
        let extents = journal_extents(&first, &mut io)?;
        // No other file may map the journal's blocks (a system zone, as in the kernel).
        let journal_zone: Vec<(u64, u64)> = extents
            .extents()
            .iter()
            .map(|e| (e.device_block, u64::from(e.len_blocks)))
            .collect();
        let mut replayed = None;
        if first.sb.needs_recovery() {
            // 2. Recovery, then the ext4 flag cleared.
            let mut q =
                BlockQueue::open(&first.device, first.options.queue_config()).map_err(|cause| {
                    RwError::Device {
                        step: "journal recovery",
                        cause,
                    }
                })?;
            let arena = first.device.arena();
            let r = recover_with(&mut q, arena, &extents, options.plant)
                .map_err(journal_err("journal recovery"))?;
            let mut block0 = read_block0(&mut io).map_err(fs_err("journal recovery"))?;
            let mut sb = decode_sb(&block0, true).map_err(fs_err("journal recovery"))?;
            sb.set_needs_recovery(false);
            encode_sb(&mut sb, &mut block0).map_err(fs_err("journal recovery"))?;
            write_block0(
                &mut q,
                arena,
                &block0,
                "clear needs_recovery after recovery",
            )?;
            replayed = Some(r);
        }
        drop(io);
        // 3. The recovered image, strictly.
        let device = first.unmount();
        // The page cache shares the arena with commits (each may copy up to an eighth of it
        // for data and as much for journal blocks), checkpoints and the thread contexts: it
        // gets half at most, so a full cache never makes a commit fail for memory. (The other
        // half also holds each async context's page pool, 64 pages: a small arena shared by
        // many threads can still run out; commits do not take pages back from the cache yet.)
        let arena_pages = device.arena().len_bytes() / aios_device::BLOCK_SIZE;
        let mut mount_options = options.mount;
        mount_options.cache_pages = mount_options.cache_pages.min(arena_pages / 2).max(1);
        let mut fs = Fs::mount_inner(device, mount_options, false).map_err(fs_err("mount"))?;
        let mut io = fs.io().map_err(fs_err("mount"))?;
        let mut q = BlockQueue::open(&fs.device, fs.options.queue_config()).map_err(|cause| {
            RwError::Device {
                step: "mount",
                cause,
            }
        })?;
        let jopts = JournalOptions {
            order: options.order,
            bit64: fs.sb.is_64bit(),
            csum_v3: fs.sb.has_metadata_csum(),
            plant: options.plant,
        };
        let journal = Journal::open(&mut q, fs.device.arena(), extents, jopts)
            .map_err(journal_err("journal open"))?;
        // 4. needs_recovery set while mounted, free counts from the descriptors.
        let mut block0 = read_block0(&mut io).map_err(fs_err("mount"))?;
        let mut sb = decode_sb(&block0, false).map_err(fs_err("mount"))?;
        sb.free_blocks_count = fs
            .groups
            .iter()
            .map(|g| u64::from(g.free_blocks_count))
            .sum();
        sb.free_inodes_count = fs.groups.iter().map(|g| g.free_inodes_count).sum();
        sb.mount_count = sb.mount_count.wrapping_add(1);
        sb.set_needs_recovery(true);
        encode_sb(&mut sb, &mut block0).map_err(fs_err("mount"))?;
        write_block0(&mut q, fs.device.arena(), &block0, "set needs_recovery")?;
        fs.sb = sb;
        for e in &journal_zone {
            fs.zones.add(e.0, e.1);
        }
        let mut mutator = Mutator::new(&fs);
        mutator.plant = options.plant;
        let has_orphans = fs.sb.last_orphan != 0;
        drop(io);
        drop(q);
        let log_blocks = journal.log_blocks();
        let state = State::new(mutator, journal, replayed);
        let shared = Arc::new(RwShared::new(fs, options, state, log_blocks));
        let mut ctx = shared.ctx()?;
        // Sealing a transaction runs under the state lock, reading from memory only: what it
        // may rewrite without an operation having read it is loaded now, before any other
        // thread can take the lock.
        {
            let mut st = shared.lock();
            shared
                .with_device_reads(&mut st, &mut ctx, |m, r| m.load_commit_blocks(r))
                .map_err(fs_err("mount"))?;
        }
        // 5. Inodes unlinked while open when the last session ended (crash or not): freed now,
        //    as the kernel's orphan cleanup does at mount, in one transaction.
        if has_orphans {
            shared.apply(&mut ctx, "orphan cleanup", b"/", |m, r, _| {
                m.process_orphans(r).map(drop)
            })?;
            shared.sync(&mut ctx)?;
        }
        let flusher = match options.commit_interval {
            Some(interval) => Some(Flusher::start(Arc::clone(&shared), interval).map_err(|e| {
                RwError::Thread {
                    step: "start the periodic commit",
                    cause: e,
                }
            })?),
            None => None,
        };
        Ok(RwFs {
            shared,
            ctx,
            flusher,
        })
    }

    /// Commits what is running, checkpoints, marks the journal clean, clears
    /// `needs_recovery` and returns the device. After a failure (the mount is read-only)
    /// nothing more is written and the error says why: the image then needs recovery, which
    /// the next read-write mount (or `e2fsck`) does.
    pub fn unmount(self) -> (D, Result<(), RwError>) {
        let RwFs {
            shared,
            mut ctx,
            flusher,
        } = self;
        if let Some(f) = flusher {
            f.stop();
        }
        let result = shared.sync(&mut ctx).and_then(|()| {
            let mut st = shared.lock();
            let journal = st.journal.take().ok_or(RwError::Unsupported {
                step: "unmount",
                what: "a commit is still in flight (a bug: every thread has returned)",
            })?;
            let State { mutator, .. } = &mut *st;
            clean_unmount(&shared.fs, &mut ctx, journal, mutator)
        });
        drop(ctx);
        let shared = match Arc::try_unwrap(shared) {
            Ok(s) => s,
            Err(_) => {
                unreachable!("the periodic commit thread has ended and no other owner exists")
            }
        };
        (shared.fs.unmount(), result)
    }
}

fn clean_unmount<D: Device>(
    fs: &Fs<D>,
    ctx: &mut RwCtx<D>,
    journal: Journal,
    mutator: &mut Mutator,
) -> Result<(), RwError> {
    let step = "unmount";
    journal
        .unmount(&mut ctx.q, fs.device.arena())
        .map_err(journal_err(step))?;
    mutator.sb.set_needs_recovery(false);
    mutator.sb_dirty = true;
    let mut r = FsBlocks {
        fs,
        io: &mut ctx.io,
    };
    let changes = mutator.take_changes(&mut r).map_err(fs_err(step))?;
    if !changes.data_blocks.is_empty() || changes.meta_blocks.len() != 1 {
        return Err(RwError::Unsupported {
            step,
            what: "changes left uncommitted at unmount (a bug: unmount commits first)",
        });
    }
    match changes.meta_blocks.first() {
        Some((0, block0)) => write_block0(
            &mut ctx.q,
            fs.device.arena(),
            block0,
            "clear needs_recovery",
        ),
        _ => Err(RwError::Unsupported {
            step,
            what: "the superblock change is not in block 0",
        }),
    }
}

/// The journal inode's extent map as [`JournalExtents`]: every block mapped, none unwritten.
fn journal_extents<D: Device>(
    fs: &Fs<D>,
    io: &mut IoCtx<D::Queue>,
) -> Result<JournalExtents, RwError> {
    let step = "journal inode";
    let file = fs.open(io, fs.sb.journal_inum).map_err(fs_err(step))?;
    let mut extents = Vec::new();
    for m in file.extents().mappings() {
        if m.unwritten {
            return Err(RwError::Unsupported {
                step,
                what: "the journal has an unwritten extent",
            });
        }
        let journal_block = u32::try_from(m.logical_block).map_err(|_| RwError::Unsupported {
            step,
            what: "the journal maps a block past 2^32",
        })?;
        extents.push(JournalExtent {
            journal_block,
            device_block: m.physical_block,
            len_blocks: m.len_blocks,
        });
    }
    JournalExtents::new(extents).map_err(journal_err(step))
}

/// Block 0 (boot area, superblock, rest) as on the device now.
fn read_block0<Q: Queue>(io: &mut IoCtx<Q>) -> Result<Vec<u8>, FsError> {
    io.read_blocks(0, 1)?;
    Ok(io.page(0).to_vec())
}

fn decode_sb(block0: &[u8], recovering: bool) -> Result<Superblock, FsError> {
    let raw = block0.get(SB_START..SB_END).unwrap_or_default();
    Ok(if recovering {
        Superblock::decode_recovering(raw)?
    } else {
        Superblock::decode(raw)?
    })
}

fn encode_sb(sb: &mut Superblock, block0: &mut [u8]) -> Result<(), FsError> {
    let raw = block0.get_mut(SB_START..SB_END).ok_or(FsError::Corrupt {
        at: Location::Superblock,
        what: "superblock outside block 0",
    })?;
    Ok(sb.encode_into(raw)?)
}

/// Writes block 0 with FUA and waits: durable at completion.
fn write_block0<Q: Queue>(
    q: &mut BlockQueue<Q>,
    arena: &Arena,
    bytes: &[u8],
    step: &'static str,
) -> Result<(), RwError> {
    let device = |cause| RwError::Device { step, cause };
    if bytes.len() != BLOCK_SIZE {
        return Err(RwError::Unsupported {
            step,
            what: "superblock block is not 4 KiB",
        });
    }
    let mut buf = arena
        .alloc(1)
        .map_err(|cause| RwError::Arena { step, cause })?;
    arena.bytes_mut(&mut buf).copy_from_slice(bytes);
    let tag = match q.stage(Op::Write { fua: true }, 0, [buf]) {
        Ok(tag) => tag,
        Err(refused) => {
            for b in refused.bufs {
                arena.free(b);
            }
            return Err(device(refused.error));
        }
    };
    q.submit().map_err(device)?;
    loop {
        while let Some(done) = q.pop_done() {
            let finished = q.finish(done);
            for b in finished.bufs {
                arena.free(b);
            }
            if done == tag {
                return finished.result.map(drop).map_err(device);
            }
        }
        q.wait(1).map_err(device)?;
    }
}
