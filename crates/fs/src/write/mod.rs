//! The in-memory mutation layer of the write path (issue 4, before the journal).
//!
//! # Role
//! A [`Mutator`] turns file-system operations (create, mkdir, symlink, write, truncate, unlink,
//! rmdir, rename, link, set_attr, fallocate, the orphan list) into changed metadata blocks and data block writes, without doing any write I/O
//! itself. Metadata is read through a [`BlockRead`] (normally [`FsBlocks`]: the read path's
//! `IoCtx`), cached and modified in place in [`MetaBlocks`]; [`Mutator::take_changes`] returns
//! what changed since the last call as [`Changes`]: `(fs block, 4 KiB)` metadata blocks with every
//! checksum recomputed, plus data blocks. Until the journal exists, a caller (the tests) writes
//! both home directly; later the journal takes the metadata blocks of a transaction instead.
//!
//! # Modules
//! | Module | What |
//! | --- | --- |
//! | [`meta`] | [`MetaBlocks`], [`BlockRead`] |
//! | `alloc` | block allocation (goal, flex_bg, runs, pending free) and inode allocation |
//! | `inode` | reading/writing inode records, new inodes, clock |
//! | `extents` | the extent tree of one inode: insert (merge, split, grow), truncate (shrink) |
//! | `dir` | directory entries: lookup, add (linear and htree), remove, drop-index |
//! | `ops` | the operations: create, mkdir, symlink, write, truncate, unlink, rmdir |
//! | `ns` | rename, link, set_attr, fallocate, the orphan list |
//!
//! # Invariants (after every public operation returns, successful or not)
//! - The cached superblock and group descriptors agree with the bitmaps: free counts, flags,
//!   `itable_unused`, `used_dirs`.
//! - Every public operation is all-or-nothing: it runs under [`Mutator::atomic`], which records
//!   the state it changes (a [`MetaBlocks`] undo record, the data-block map's previous values,
//!   and a copy of the small state: superblock, descriptors, pending-free and dirty sets) and
//!   puts it all back when the operation returns an error. An operation that fails midway
//!   (ENOSPC or `FileTooBig` in a large write, a full directory, a corrupt block met late)
//!   therefore leaves exactly the state before it: nothing half-written reaches
//!   [`Mutator::take_changes`], so a transaction built from the changes is always a whole
//!   operation (issue 4, "ENOSPC leaves nothing half-written").
//! - A freed block is clear in its bitmap at once (the on-disk state must say free), but it is in
//!   the *pending-free* set and the allocator skips it until [`Mutator::release_pending`]: the
//!   journal will call that after the freeing transaction commits (docs/write-path.md).
//! - Nothing read from disk makes this layer panic; bad structures are [`FsError`]s.
//!
//! # Ownership
//! One mutator at a time: the `Mutator` is `Send`, has `&mut self` methods and no internal
//! locking; share it behind a `Mutex`. Data pages are not cached here (the page cache will take
//! them); a partial-block write reads the old block through the [`BlockRead`].
//!
//! # Htree policy
//! Names are added to an indexed directory in the leaf `dx_find` selects, so the index stays
//! valid. When that leaf is full, the index is dropped instead of split: the `INDEX` flag is
//! cleared and the `dx_root` and `dx_node` blocks are rewritten as ordinary linear blocks (`.` and
//! `..`, resp. empty, with checksum tails); the directory is linear from then on, as e2fsck
//! accepts (and `e2fsck -D` can re-index it). New directories are linear.

mod alloc;
mod dir;
mod extents;
mod inode;
pub mod meta;
mod ns;
mod ops;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use aios_device::{Device, BLOCK_SIZE};
use aios_ext4::format::bitmap::{set_bitmap_csum, BitmapKind};
use aios_ext4::format::group::GroupDesc;
use aios_ext4::format::superblock::{Superblock, SUPERBLOCK_OFFSET_BYTES, SUPERBLOCK_SIZE_BYTES};
use aios_ext4::Location;

pub use meta::{BlockRead, MetaBlocks};
pub use ns::SetAttr;
pub use ops::{NewNode, WriteReport};

use crate::data_page::PageSource;
use crate::{DataPage, Fs, FsError, IoCtx};

/// Reads blocks for a [`Mutator`] through a mounted [`Fs`] and this thread's [`IoCtx`].
pub struct FsBlocks<'a, D: Device> {
    pub fs: &'a Fs<D>,
    pub io: &'a mut IoCtx<D::Queue>,
}

impl<D: Device> BlockRead for FsBlocks<'_, D> {
    fn read_block(&mut self, block: u64, at: Location) -> Result<Vec<u8>, FsError> {
        if self.io.fs_id != self.fs.id {
            return Err(FsError::ForeignIoCtx);
        }
        if block >= self.fs.sb.blocks_count {
            return Err(FsError::Corrupt {
                at,
                what: "points outside the file system",
            });
        }
        self.io.read_blocks(block, 1)?;
        Ok(self.io.page(0).to_vec())
    }
}

/// What operations changed since the last [`Mutator::take_changes`].
#[derive(Debug, Default)]
pub struct Changes {
    /// Metadata blocks, checksums sealed, in block order.
    pub meta_blocks: Vec<(u64, Box<[u8]>)>,
    /// Data blocks (file contents, slow symlink targets), in block order.
    pub data_blocks: Vec<(u64, Arc<DataPage>)>,
}

/// The write state of one mounted file system (see the module doc).
pub struct Mutator {
    pub(crate) sb: Superblock,
    pub(crate) groups: Vec<GroupDesc>,
    /// `Some(fs seed)` iff `metadata_csum`.
    pub(crate) csum_seed: Option<u32>,
    pub(crate) meta: MetaBlocks,
    /// Metadata blocks no file may map or free (the mount's, plus the journal's).
    pub(crate) zones: aios_ext4::format::zones::SystemZones,
    /// Append windows: start -> (end, owner inode); in memory only (see `reserve_after`).
    pub(crate) reserved: BTreeMap<u64, (u64, u32)>,
    /// Freed blocks the allocator must not hand out before `release_pending`.
    pub(crate) pending_free: BTreeSet<u64>,
    /// Freed blocks whose transaction committed but that a read in flight may still be
    /// reading (`rw/reads.rs`): skipped by the allocator like pending ones, but no longer part
    /// of any transaction (not revoked again, no change to commit).
    pub(crate) held_for_reads: BTreeSet<u64>,
    /// Bitmaps loaded (and verified, or computed for `*_UNINIT`) so far.
    pub(crate) loaded_bitmaps: BTreeSet<(u8, u32)>,
    pub(crate) dirty_groups: BTreeSet<u32>,
    pub(crate) dirty_block_bitmaps: BTreeSet<u32>,
    pub(crate) dirty_inode_bitmaps: BTreeSet<u32>,
    pub(crate) sb_dirty: bool,
    /// Data block writes of the running operation(s); later writes of a block replace earlier.
    pub(crate) data: BTreeMap<u64, Arc<DataPage>>,
    /// Where the pages of `data` come from ([`PageSource`]).
    pub(crate) pages: PageSource,
    pub(crate) next_generation: u32,
    /// While an operation runs under [`Mutator::atomic`]: data blocks' values before it.
    pub(crate) data_undo: Option<BTreeMap<u64, Option<Arc<DataPage>>>>,
    /// Test-only: PLANTED BUG (g) hands out pending-free blocks (`None` outside tests).
    pub(crate) plant: Option<aios_journal::runtime::PlantedBug>,
}

/// The small state [`Mutator::atomic`] copies before an operation.
struct Snapshot {
    sb: Superblock,
    groups: Vec<GroupDesc>,
    pending_free: BTreeSet<u64>,
    loaded_bitmaps: BTreeSet<(u8, u32)>,
    dirty_groups: BTreeSet<u32>,
    dirty_block_bitmaps: BTreeSet<u32>,
    dirty_inode_bitmaps: BTreeSet<u32>,
    sb_dirty: bool,
    next_generation: u32,
}

impl Mutator {
    /// The write state of `fs`: its superblock and descriptors as mounted. Nothing else may
    /// write the image while this mutator lives.
    pub fn new<D: Device>(fs: &Fs<D>) -> Mutator {
        Mutator {
            plant: None,
            sb: fs.sb.clone(),
            groups: fs.groups.clone(),
            csum_seed: fs.csum_seed,
            meta: MetaBlocks::new(fs.sb.blocks_count),
            zones: fs.zones.clone(),
            reserved: BTreeMap::new(),
            pending_free: BTreeSet::new(),
            held_for_reads: BTreeSet::new(),
            loaded_bitmaps: BTreeSet::new(),
            dirty_groups: BTreeSet::new(),
            dirty_block_bitmaps: BTreeSet::new(),
            dirty_inode_bitmaps: BTreeSet::new(),
            sb_dirty: false,
            data: BTreeMap::new(),
            pages: PageSource::heap(),
            next_generation: fs.sb.free_inodes_count ^ 0x5A5A_0001,
            data_undo: None,
        }
    }

    /// Runs `f` all-or-nothing (see the module doc): on error every change it made is undone.
    /// Nested calls join the outer operation.
    pub(crate) fn atomic<T>(
        &mut self,
        r: &mut dyn BlockRead,
        f: impl FnOnce(&mut Mutator, &mut dyn BlockRead) -> Result<T, FsError>,
    ) -> Result<T, FsError> {
        if self.meta.recording() {
            return f(self, r);
        }
        let snap = Snapshot {
            sb: self.sb.clone(),
            groups: self.groups.clone(),
            pending_free: self.pending_free.clone(),
            loaded_bitmaps: self.loaded_bitmaps.clone(),
            dirty_groups: self.dirty_groups.clone(),
            dirty_block_bitmaps: self.dirty_block_bitmaps.clone(),
            dirty_inode_bitmaps: self.dirty_inode_bitmaps.clone(),
            sb_dirty: self.sb_dirty,
            next_generation: self.next_generation,
        };
        self.meta.begin();
        self.data_undo = Some(BTreeMap::new());
        let out = f(self, r);
        if out.is_ok() {
            self.meta.commit();
            self.data_undo = None;
            return out;
        }
        self.meta.rollback();
        for (block, old) in self.data_undo.take().unwrap_or_default() {
            match old {
                Some(bytes) => self.data.insert(block, bytes),
                None => self.data.remove(&block),
            };
        }
        self.sb = snap.sb;
        self.groups = snap.groups;
        self.pending_free = snap.pending_free;
        self.loaded_bitmaps = snap.loaded_bitmaps;
        self.dirty_groups = snap.dirty_groups;
        self.dirty_block_bitmaps = snap.dirty_block_bitmaps;
        self.dirty_inode_bitmaps = snap.dirty_inode_bitmaps;
        self.sb_dirty = snap.sb_dirty;
        self.next_generation = snap.next_generation;
        out
    }

    /// Makes new data pages from `source` (the read-write mount: its device's arena).
    pub fn set_page_source(&mut self, source: PageSource) {
        self.pages = source;
    }

    /// Sets data block `block`'s new contents (recorded for undo).
    pub(crate) fn put_data(&mut self, block: u64, page: Arc<DataPage>) {
        self.save_data(block);
        self.data.insert(block, page);
    }

    /// Drops a pending write of data block `block` (recorded for undo).
    pub(crate) fn drop_data(&mut self, block: u64) {
        self.save_data(block);
        self.data.remove(&block);
    }

    fn save_data(&mut self, block: u64) {
        if let Some(undo) = &mut self.data_undo {
            undo.entry(block)
                .or_insert_with(|| self.data.get(&block).cloned());
        }
    }

    /// The superblock as this mutator sees it (free counts current).
    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    /// The group descriptors as this mutator sees them.
    pub fn groups(&self) -> &[GroupDesc] {
        &self.groups
    }

    /// Blocks freed and not yet reusable.
    pub fn pending_free_blocks(&self) -> usize {
        self.pending_free.len()
    }

    /// Makes blocks freed so far allocatable again (the journal calls this once the transaction
    /// that freed them has committed).
    pub fn release_pending(&mut self) {
        self.pending_free.clear();
    }

    /// Makes `blocks` (freed by a transaction that has now committed) allocatable again;
    /// blocks freed later stay pending.
    pub fn release_blocks(&mut self, blocks: &[u64]) {
        for block in blocks {
            self.pending_free.remove(block);
        }
    }

    /// Keeps `blocks` (freed by a committed transaction, see [`Mutator::release_blocks`]) from
    /// the allocator while reads in flight may still be reading them.
    pub fn hold_blocks(&mut self, blocks: &[u64]) {
        self.held_for_reads.extend(blocks.iter().copied());
    }

    /// Makes blocks held by [`Mutator::hold_blocks`] allocatable: no read of them is in flight.
    pub fn unhold_blocks(&mut self, blocks: &[u64]) {
        for block in blocks {
            self.held_for_reads.remove(block);
        }
    }

    /// Blocks freed and not yet reusable, ascending (the revoke records of a transaction).
    pub fn pending_free_list(&self) -> Vec<u64> {
        self.pending_free.iter().copied().collect()
    }

    /// True if an operation changed anything since the last [`Mutator::take_changes`].
    pub fn has_changes(&self) -> bool {
        self.meta.dirty_count() != 0
            || !self.data.is_empty()
            || !self.pending_free.is_empty()
            || !self.dirty_groups.is_empty()
            || !self.dirty_block_bitmaps.is_empty()
            || !self.dirty_inode_bitmaps.is_empty()
            || self.sb_dirty
    }

    /// Dirty data blocks held (the running transaction's file contents).
    pub fn dirty_data_blocks(&self) -> usize {
        self.data.len()
    }

    /// Metadata blocks changed since the last [`Mutator::take_changes`] (cached, not yet taken).
    pub fn dirty_meta_blocks(&self) -> usize {
        self.meta.dirty_count()
    }

    /// The pending (uncommitted) contents of data block `block`, if an operation wrote it.
    pub fn dirty_data(&self, block: u64) -> Option<&[u8]> {
        self.data.get(&block).map(|p| p.bytes())
    }

    /// The lowest block in `blocks` with a pending write, if any.
    pub fn first_dirty_data(&self, blocks: std::ops::Range<u64>) -> Option<u64> {
        self.data.range(blocks).next().map(|(b, _)| *b)
    }

    /// Takes data block `block`'s pending write out of the transaction (it is being written
    /// in place by a data-only sync); `None` if there is none.
    pub fn take_dirty_data(&mut self, block: u64) -> Option<Arc<DataPage>> {
        debug_assert!(self.data_undo.is_none(), "inside an operation");
        self.data.remove(&block)
    }

    /// Loads the blocks [`Mutator::take_changes`] may rewrite without an operation having
    /// read them: block 0 (the superblock) and every group descriptor block, pinned (never
    /// evicted). After this, sealing needs no device read (the read-write mount seals under
    /// its state lock).
    pub fn load_commit_blocks(&mut self, r: &mut dyn BlockRead) -> Result<(), FsError> {
        self.meta.get(r, 0, Location::Superblock)?;
        self.meta.pin(0);
        for group in 0..self.groups.len() as u32 {
            let at = Location::GroupDesc { group };
            let offset_bytes = self
                .sb
                .group_desc_offset_bytes(group)
                .ok_or(FsError::Corrupt {
                    at,
                    what: "group past the last",
                })?;
            let block = offset_bytes / BLOCK_SIZE as u64;
            self.meta.get(r, block, at)?;
            self.meta.pin(block);
        }
        Ok(())
    }

    /// Seals the bitmap, descriptor and superblock checksums of everything changed and hands
    /// out the changed metadata and data blocks.
    pub fn take_changes(&mut self, r: &mut dyn BlockRead) -> Result<Changes, FsError> {
        let block_bitmaps = std::mem::take(&mut self.dirty_block_bitmaps);
        let inode_bitmaps = std::mem::take(&mut self.dirty_inode_bitmaps);
        for (kinds, kind) in [
            (block_bitmaps, BitmapKind::Block),
            (inode_bitmaps, BitmapKind::Inode),
        ] {
            for group in kinds {
                let desc = self.desc(group)?;
                let block = match kind {
                    BitmapKind::Block => desc.block_bitmap_block,
                    BitmapKind::Inode => desc.inode_bitmap_block,
                };
                let bytes = self.meta.get(r, block, kind.location(group))?.to_vec();
                let mut desc = desc;
                set_bitmap_csum(&self.sb, &mut desc, kind, &bytes)?;
                self.set_desc(desc);
                self.dirty_groups.insert(group);
            }
        }
        for group in std::mem::take(&mut self.dirty_groups) {
            let mut desc = self.desc(group)?;
            let at = Location::GroupDesc { group };
            let offset_bytes = self
                .sb
                .group_desc_offset_bytes(group)
                .ok_or(FsError::Corrupt {
                    at,
                    what: "group past the last",
                })?;
            let block = offset_bytes / BLOCK_SIZE as u64;
            let within = (offset_bytes % BLOCK_SIZE as u64) as usize;
            let size = usize::from(self.sb.desc_size_bytes);
            let raw = self.meta.get_mut(r, block, at)?;
            let slot = raw.get_mut(within..within + size).ok_or(FsError::Corrupt {
                at,
                what: "descriptor crosses its block",
            })?;
            desc.encode_into(slot, self.sb.desc_size_bytes, self.csum_seed)?;
            self.set_desc(desc);
        }
        if std::mem::take(&mut self.sb_dirty) {
            let start = SUPERBLOCK_OFFSET_BYTES as usize;
            let raw = self.meta.get_mut(r, 0, Location::Superblock)?;
            let slot =
                raw.get_mut(start..start + SUPERBLOCK_SIZE_BYTES)
                    .ok_or(FsError::Corrupt {
                        at: Location::Superblock,
                        what: "superblock outside block 0",
                    })?;
            self.sb.encode_into(slot)?;
        }
        Ok(Changes {
            meta_blocks: self.meta.take_dirty(),
            data_blocks: std::mem::take(&mut self.data).into_iter().collect(),
        })
    }

    pub(crate) fn desc(&self, group: u32) -> Result<GroupDesc, FsError> {
        self.groups
            .get(group as usize)
            .copied()
            .ok_or(FsError::Corrupt {
                at: Location::GroupDesc { group },
                what: "group past the last",
            })
    }

    pub(crate) fn set_desc(&mut self, desc: GroupDesc) {
        if let Some(slot) = self.groups.get_mut(desc.group as usize) {
            *slot = desc;
        }
    }
}
