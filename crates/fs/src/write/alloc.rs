//! Block and inode allocation through the group bitmaps and descriptors.
//!
//! # Blocks
//! [`Mutator::alloc_blocks`] returns one run of up to `want` (at most
//! [`EXT_INIT_MAX_LEN_BLOCKS`], one extent) contiguous free blocks, searching from a *goal*
//! forward group by group and wrapping around; the goal group is searched last from its start.
//! [`Mutator::goal_for_inode`] is the kernel's `ext4_inode_to_goal_block`: the first block of the
//! inode's group, or with `flex_bg` of its flex group, where the search then skips the packed
//! bitmaps and inode tables (all in use) and lands right after them; a regular file's first data
//! block aims at one of 16 regions of that group ([`Mutator::goal_for_file_data`]). Callers
//! that extend a file pass the block after its previous extent instead. A run never crosses a group and never
//! includes a pending-free block. Allocation sets the bits, clears `BLOCK_UNINIT` (installing
//! the computed bitmap first), and updates the group's and the superblock's free counts.
//!
//! # Freeing
//! [`Mutator::free_blocks`] clears the bits and raises the counts at once, and puts the blocks in
//! the pending-free set (see the module doc of [`super`]). Freeing a block that is already free
//! is [`FsError::Corrupt`] (a double free means the metadata lied).
//!
//! # Inodes
//! [`Mutator::alloc_inode`]: directories go to the group with the fewest directories among those
//! with at least the average number of free inodes (spread, like Orlov's top level); other files
//! to the parent's group, else the next group with a free inode. It sets the bit, clears
//! `INODE_UNINIT` (and `BLOCK_UNINIT`, as `ext4_new_inode` does), shrinks `itable_unused` when
//! the inode lies in the never-used tail of the table, and counts `used_dirs`.

use aios_ext4::format::bitmap::{
    bit, find_first_zero, group_blocks, group_first_block, set_bit, uninit_block_bitmap,
    uninit_inode_bitmap, verify_bitmap, BitmapKind,
};
use aios_ext4::format::extent::EXT_INIT_MAX_LEN_BLOCKS;
use aios_ext4::format::features::incompat;
use aios_ext4::format::group::{BG_BLOCK_UNINIT, BG_INODE_UNINIT};
use std::collections::BTreeMap;

use super::{BlockRead, Mutator};
use crate::FsError;

/// The end of a window in `reserved` covering `block` that belongs to someone but `owner`.
fn reserved_for_other(
    reserved: &BTreeMap<u64, (u64, u32)>,
    block: u64,
    owner: Option<u32>,
) -> Option<u64> {
    let (_, &(end, o)) = reserved.range(..=block).next_back()?;
    (block < end && Some(o) != owner).then_some(end)
}

/// Blocks of a file's append window (1 MiB).
const RESERVE_BLOCKS: u64 = 256;
/// Windows kept at most; past this all are dropped (they are only hints).
const RESERVATIONS_MAX: usize = 4096;

impl Mutator {
    /// Loads the bitmap `kind` of `group` into the cache (computed for `*_UNINIT`, verified
    /// otherwise) and returns its block number.
    fn bitmap_block(
        &mut self,
        r: &mut dyn BlockRead,
        kind: BitmapKind,
        group: u32,
    ) -> Result<u64, FsError> {
        let desc = self.desc(group)?;
        let block = match kind {
            BitmapKind::Block => desc.block_bitmap_block,
            BitmapKind::Inode => desc.inode_bitmap_block,
        };
        let key = (kind as u8, group);
        if self.loaded_bitmaps.contains(&key) {
            return Ok(block);
        }
        let at = kind.location(group);
        if desc.flags & kind.uninit_flag() != 0 {
            let computed = match kind {
                BitmapKind::Block => uninit_block_bitmap(&self.sb, &desc)?,
                BitmapKind::Inode => uninit_inode_bitmap(&self.sb),
            };
            // Installed clean: it becomes dirty when the flag is cleared by an allocation.
            self.meta.fresh(block, at)?.copy_from_slice(&computed);
            self.meta.take_dirty_one(block);
        } else {
            let bytes = self.meta.get(r, block, at)?;
            verify_bitmap(&self.sb, &desc, kind, bytes)?;
        }
        self.loaded_bitmaps.insert(key);
        Ok(block)
    }

    /// The goal block for a file with no blocks yet: its (flex) group's first block.
    pub(crate) fn goal_for_inode(&self, ino: u32) -> u64 {
        let group = self
            .sb
            .inode_group_index(ino)
            .map(|(g, _)| g)
            .unwrap_or_default();
        let group = if self.sb.feature_incompat & incompat::FLEX_BG != 0 {
            let per_flex = 1u32 << self.sb.log_groups_per_flex.min(31);
            group & !(per_flex - 1)
        } else {
            group
        };
        group_first_block(&self.sb, group)
    }

    /// The goal block for the first data block of regular file `ino`: its (flex) group's
    /// first block plus a *colour*, one of 16 slots of the group, as the kernel's
    /// `ext4_inode_to_goal_block` adds by process id. Files appended side by side then grow in
    /// separate regions instead of interleaving single blocks (which left every file with one
    /// extent per block: deep trees, slow appends). The colour here comes from the inode
    /// number, so placement stays deterministic.
    pub(crate) fn goal_for_file_data(&self, ino: u32) -> u64 {
        let colour = u64::from(ino % 16) * u64::from(self.sb.blocks_per_group / 16);
        let goal = self.goal_for_inode(ino).saturating_add(colour);
        if goal < self.sb.blocks_count {
            goal
        } else {
            self.goal_for_inode(ino)
        }
    }

    /// Allocates one run of `1..=want` contiguous blocks near `goal` (see the module doc).
    pub(crate) fn alloc_blocks(
        &mut self,
        r: &mut dyn BlockRead,
        goal: u64,
        want: u32,
    ) -> Result<(u64, u32), FsError> {
        self.alloc_blocks_for(r, goal, want, None)
    }

    /// [`Mutator::alloc_blocks`] for `owner`'s file data: other owners' reservations are
    /// skipped while any other free run exists (see [`Mutator::reserve_after`]).
    pub(crate) fn alloc_blocks_for(
        &mut self,
        r: &mut dyn BlockRead,
        goal: u64,
        want: u32,
        owner: Option<u32>,
    ) -> Result<(u64, u32), FsError> {
        match self.alloc_pass(r, goal, want, Some(owner)) {
            Err(FsError::NoSpace { .. }) if !self.reserved.is_empty() => {
                self.alloc_pass(r, goal, want, None)
            }
            other => other,
        }
    }

    /// Reserves (in memory only) the `RESERVE_BLOCKS` blocks after `end` for `owner`'s next
    /// appends, replacing its earlier window: the allocator steers everyone else around it, so
    /// files appended side by side stay contiguous (mballoc's per-inode preallocation, without
    /// taking the blocks). Nothing of it reaches the disk.
    pub(crate) fn reserve_after(&mut self, owner: u32, end: u64) {
        if self.reserved.len() >= RESERVATIONS_MAX {
            self.reserved.clear();
        }
        self.reserved.retain(|_, (_, o)| *o != owner);
        self.reserved
            .insert(end, (end.saturating_add(RESERVE_BLOCKS), owner));
    }

    /// Forgets `owner`'s window (its file was truncated or freed).
    pub(crate) fn unreserve(&mut self, owner: u32) {
        self.reserved.retain(|_, (_, o)| *o != owner);
    }

    fn alloc_pass(
        &mut self,
        r: &mut dyn BlockRead,
        goal: u64,
        want: u32,
        honor: Option<Option<u32>>,
    ) -> Result<(u64, u32), FsError> {
        let want = want.clamp(1, EXT_INIT_MAX_LEN_BLOCKS.into());
        let groups = self.sb.group_count();
        let goal = if goal >= self.sb.blocks_count {
            0
        } else {
            goal
        };
        let bpg = u64::from(self.sb.blocks_per_group);
        let goal_group = (goal / bpg) as u32;
        for step in 0..=groups {
            let group = (goal_group + step) % groups;
            let desc = self.desc(group)?;
            if desc.free_blocks_count == 0 {
                continue;
            }
            let from = if step == 0 { (goal % bpg) as u32 } else { 0 };
            if let Some(run) = self.take_run(r, group, from, want, honor)? {
                return Ok(run);
            }
        }
        Err(FsError::NoSpace { what: "blocks" })
    }

    /// The first free, non-pending run in `group` at or after bit `from`, taken.
    /// `honor`: `Some(owner)` skips windows reserved for anyone but `owner`; `None` ignores
    /// reservations.
    fn take_run(
        &mut self,
        r: &mut dyn BlockRead,
        group: u32,
        from: u32,
        want: u32,
        honor: Option<Option<u32>>,
    ) -> Result<Option<(u64, u32)>, FsError> {
        let block = self.bitmap_block(r, BitmapKind::Block, group)?;
        let at = BitmapKind::Block.location(group);
        let first = group_first_block(&self.sb, group);
        let end = group_blocks(&self.sb, group);
        let bitmap = self.meta.get(r, block, at)?;
        let mut cursor = from;
        // PLANTED BUG (g), test-only: freed blocks are reused before their transaction commits.
        let reuse_early = self.plant == Some(aios_journal::runtime::PlantedBug::ReuseBeforeCommit);
        let pending = |b: u64| {
            !reuse_early && (self.pending_free.contains(&b) || self.held_for_reads.contains(&b))
        };
        let found = loop {
            let Some(start) = find_first_zero(bitmap, cursor, end) else {
                break None;
            };
            if pending(first + u64::from(start)) {
                cursor = start + 1;
                continue;
            }
            let reserved = &self.reserved;
            let other = |block: u64| honor.and_then(|o| reserved_for_other(reserved, block, o));
            if let Some(window_end) = other(first + u64::from(start)) {
                cursor = u32::try_from(window_end.saturating_sub(first))
                    .unwrap_or(end)
                    .max(start + 1);
                continue;
            }
            let mut len = 1;
            while len < want
                && start + len < end
                && !bit(bitmap, at, start + len)?
                && !pending(first + u64::from(start + len))
                && other(first + u64::from(start + len)).is_none()
            {
                len += 1;
            }
            break Some((start, len));
        };
        let Some((start, len)) = found else {
            return Ok(None);
        };
        let bitmap = self.meta.get_mut(r, block, at)?;
        for n in start..start + len {
            set_bit(bitmap, at, n, true)?;
        }
        let mut desc = self.desc(group)?;
        desc.flags &= !BG_BLOCK_UNINIT;
        desc.free_blocks_count = desc.free_blocks_count.saturating_sub(len);
        self.set_desc(desc);
        self.sb.free_blocks_count = self.sb.free_blocks_count.saturating_sub(len.into());
        self.dirty_groups.insert(group);
        self.dirty_block_bitmaps.insert(group);
        self.sb_dirty = true;
        Ok(Some((first + u64::from(start), len)))
    }

    /// Frees `len` blocks from `start` into the pending-free set (see the module doc).
    pub(crate) fn free_blocks(
        &mut self,
        r: &mut dyn BlockRead,
        start: u64,
        len: u64,
    ) -> Result<(), FsError> {
        let bpg = u64::from(self.sb.blocks_per_group);
        if self.zones.overlaps(start, len) {
            return Err(FsError::Corrupt {
                at: BitmapKind::Block.location((start / bpg.max(1)) as u32),
                what: "freeing file-system metadata (a system zone)",
            });
        }
        for b in start..start.saturating_add(len) {
            let group = (b / bpg) as u32;
            let block = self.bitmap_block(r, BitmapKind::Block, group)?;
            let at = BitmapKind::Block.location(group);
            if b == 0 || b >= self.sb.blocks_count {
                return Err(FsError::Corrupt {
                    at,
                    what: "freeing a block outside the file system",
                });
            }
            let bitmap = self.meta.get_mut(r, block, at)?;
            if !set_bit(bitmap, at, (b % bpg) as u32, false)? {
                return Err(FsError::Corrupt {
                    at,
                    what: "freeing a block that is already free",
                });
            }
            let mut desc = self.desc(group)?;
            desc.free_blocks_count += 1;
            self.set_desc(desc);
            self.sb.free_blocks_count += 1;
            self.dirty_groups.insert(group);
            self.dirty_block_bitmaps.insert(group);
            self.meta.forget(b);
            self.drop_data(b);
            self.pending_free.insert(b);
        }
        self.sb_dirty = true;
        Ok(())
    }

    /// Picks a group for a new inode (see the module doc).
    fn inode_group(&self, parent: u32, is_dir: bool) -> Result<u32, FsError> {
        let groups = self.groups.len() as u32;
        let free_total: u64 = self
            .groups
            .iter()
            .map(|g| u64::from(g.free_inodes_count))
            .sum();
        if free_total == 0 {
            return Err(FsError::NoSpace { what: "inodes" });
        }
        if is_dir {
            let avg = free_total / u64::from(groups.max(1));
            let best = self
                .groups
                .iter()
                .filter(|g| g.free_inodes_count > 0 && u64::from(g.free_inodes_count) >= avg)
                .min_by_key(|g| (g.used_dirs_count, u32::MAX - g.free_blocks_count, g.group));
            if let Some(g) = best {
                return Ok(g.group);
            }
        }
        let start = self
            .sb
            .inode_group_index(parent)
            .map(|(g, _)| g)
            .unwrap_or_default();
        (0..groups)
            .map(|step| (start + step) % groups)
            .find(|&g| {
                self.groups
                    .get(g as usize)
                    .is_some_and(|d| d.free_inodes_count > 0)
            })
            .ok_or(FsError::NoSpace { what: "inodes" })
    }

    /// Allocates an inode number for a child of `parent` (see the module doc).
    pub(crate) fn alloc_inode(
        &mut self,
        r: &mut dyn BlockRead,
        parent: u32,
        is_dir: bool,
    ) -> Result<u32, FsError> {
        let ipg = self.sb.inodes_per_group;
        let groups = self.groups.len() as u32;
        let first = self.inode_group(parent, is_dir)?;
        for step in 0..groups {
            let group = (first + step) % groups;
            if self.desc(group)?.free_inodes_count == 0 {
                continue;
            }
            let block = self.bitmap_block(r, BitmapKind::Inode, group)?;
            let at = BitmapKind::Inode.location(group);
            let base = group * ipg;
            // Reserved inodes (below s_first_ino) are never handed out.
            let from = self.sb.first_ino.saturating_sub(1).saturating_sub(base);
            let bitmap = self.meta.get(r, block, at)?;
            let Some(index) = find_first_zero(bitmap, from.min(ipg), ipg) else {
                continue;
            };
            set_bit(self.meta.get_mut(r, block, at)?, at, index, true)?;
            if self.desc(group)?.flags & BG_BLOCK_UNINIT != 0 {
                self.init_block_bitmap(r, group)?;
            }
            let mut desc = self.desc(group)?;
            desc.flags &= !BG_INODE_UNINIT;
            desc.free_inodes_count = desc.free_inodes_count.saturating_sub(1);
            if is_dir {
                desc.used_dirs_count += 1;
            }
            let used_below = ipg - desc.itable_unused.min(ipg);
            if index >= used_below {
                desc.itable_unused = ipg - index - 1;
            }
            self.set_desc(desc);
            self.sb.free_inodes_count = self.sb.free_inodes_count.saturating_sub(1);
            self.dirty_groups.insert(group);
            self.dirty_inode_bitmaps.insert(group);
            self.sb_dirty = true;
            return Ok(base + index + 1);
        }
        Err(FsError::NoSpace { what: "inodes" })
    }

    /// Clears `BLOCK_UNINIT` of `group`, writing its computed bitmap.
    fn init_block_bitmap(&mut self, r: &mut dyn BlockRead, group: u32) -> Result<(), FsError> {
        let block = self.bitmap_block(r, BitmapKind::Block, group)?;
        self.meta
            .get_mut(r, block, BitmapKind::Block.location(group))?;
        let mut desc = self.desc(group)?;
        desc.flags &= !BG_BLOCK_UNINIT;
        self.set_desc(desc);
        self.dirty_groups.insert(group);
        self.dirty_block_bitmaps.insert(group);
        Ok(())
    }

    /// Frees inode `ino` (its record must already be released: links 0, dtime set).
    pub(crate) fn free_inode(
        &mut self,
        r: &mut dyn BlockRead,
        ino: u32,
        was_dir: bool,
    ) -> Result<(), FsError> {
        let (group, index) = self.sb.inode_group_index(ino).ok_or(FsError::Corrupt {
            at: aios_ext4::Location::Inode { ino },
            what: "inode number out of range",
        })?;
        let block = self.bitmap_block(r, BitmapKind::Inode, group)?;
        let at = BitmapKind::Inode.location(group);
        if !set_bit(self.meta.get_mut(r, block, at)?, at, index, false)? {
            return Err(FsError::Corrupt {
                at,
                what: "freeing an inode that is already free",
            });
        }
        let mut desc = self.desc(group)?;
        desc.free_inodes_count += 1;
        if was_dir {
            desc.used_dirs_count = desc.used_dirs_count.saturating_sub(1);
        }
        self.set_desc(desc);
        self.sb.free_inodes_count += 1;
        self.dirty_groups.insert(group);
        self.dirty_inode_bitmaps.insert(group);
        self.sb_dirty = true;
        Ok(())
    }
}
