//! Directory entries: lookup, add, remove, emptiness, and dropping an htree index.
//!
//! # Role
//! A directory's blocks are found through its extent tree ([`super::extents::Tree`]) and
//! handled as cached metadata blocks. Leaf blocks are linear `ext4_dir_entry_2` blocks; with
//! `metadata_csum` every block read is verified and every block changed is resealed
//! ([`set_dir_tail`]).
//!
//! - Lookup and remove scan every leaf block (the interior blocks of an indexed directory,
//!   `dx_root` at logical block 0 and the `dx_node`s it points to, are skipped).
//! - Add, linear directory: the first block with a record that has room (a dead record or the
//!   slack of a live one), else a new block appended (allocated after the directory's last block,
//!   size grows by one block).
//! - Add, indexed directory: the leaf that `dx_find` picks for the name's hash (via a `dx_node`
//!   with `indirect_levels` 1), so the index stays valid. If that leaf is full the index is
//!   dropped (see the htree policy in [`super`]) and the name is added linearly.
//! - Remove never shrinks the directory (as the kernel).

use aios_device::BLOCK_SIZE;
use aios_ext4::format::dir::{
    dir_entries, dir_rec_len, encode_dir_block, file_type, insert_dir_entry, remove_dir_entry,
    set_dir_tail, verify_dir_tail, NewDirEntry,
};
use aios_ext4::format::extent::Extent;
use aios_ext4::format::hash::{dx_hash, effective_hash_version};
use aios_ext4::format::htree::{dx_find, DxNode, DxRoot};
use aios_ext4::format::inode::{Inode, EXT4_INDEX_FL};
use aios_ext4::Location;

use super::extents::{NodeAlloc, Tree};
use super::{BlockRead, Mutator};
use crate::FsError;

/// A directory's block layout: physical block per logical block, and which are interior.
struct Layout {
    tree: Tree,
    physical: Vec<u64>,
    interior: Vec<bool>,
}

impl Mutator {
    fn dir_layout(&mut self, r: &mut dyn BlockRead, dir: &Inode) -> Result<Layout, FsError> {
        let at = Location::Inode { ino: dir.ino };
        let tree = Tree::load(self, r, dir)?;
        let blocks = dir.size_bytes.div_ceil(BLOCK_SIZE as u64);
        let mut physical = Vec::new();
        for logical in 0..blocks {
            let e = u32::try_from(logical)
                .ok()
                .and_then(|l| tree.find(l).map(|e| (l, e)))
                .filter(|(_, e)| !e.unwritten)
                .ok_or(FsError::Corrupt {
                    at,
                    what: "directory has a hole or unwritten block below its size",
                })?;
            physical.push(e.1.start_block + u64::from(e.0 - e.1.first_logical_block));
        }
        let mut interior = vec![false; physical.len()];
        if dir.flags & EXT4_INDEX_FL != 0 {
            let root = self.dx_root(r, dir, &physical)?;
            if let Some(x) = interior.first_mut() {
                *x = true;
            }
            if root.indirect_levels == 1 {
                for e in &root.entries {
                    let slot = interior.get_mut(e.block as usize).ok_or(FsError::Corrupt {
                        at,
                        what: "dx_entry points past the directory",
                    })?;
                    *slot = true;
                }
            }
        }
        Ok(Layout {
            tree,
            physical,
            interior,
        })
    }

    fn dx_root(
        &mut self,
        r: &mut dyn BlockRead,
        dir: &Inode,
        physical: &[u64],
    ) -> Result<DxRoot, FsError> {
        let block = *physical.first().ok_or(FsError::Corrupt {
            at: Location::Inode { ino: dir.ino },
            what: "indexed directory without blocks",
        })?;
        let at = Location::DirBlock {
            ino: dir.ino,
            block,
        };
        let seed = self.csum_seed.map(|s| dir.csum_seed(s));
        Ok(DxRoot::decode(self.meta.get(r, block, at)?, at, seed)?)
    }

    /// Reads leaf block `block` of `dir` (verified) and returns a copy.
    fn leaf(&mut self, r: &mut dyn BlockRead, dir: &Inode, block: u64) -> Result<Vec<u8>, FsError> {
        let at = Location::DirBlock {
            ino: dir.ino,
            block,
        };
        let seed = self.csum_seed.map(|s| dir.csum_seed(s));
        let bytes = self.meta.get(r, block, at)?;
        if let Some(seed) = seed {
            verify_dir_tail(bytes, at, seed)?;
        }
        Ok(bytes.to_vec())
    }

    /// The entry `name` of `dir`: `(inode, file_type)`.
    pub(crate) fn dir_lookup(
        &mut self,
        r: &mut dyn BlockRead,
        dir: &Inode,
        name: &[u8],
    ) -> Result<Option<(u32, u8)>, FsError> {
        let layout = self.dir_layout(r, dir)?;
        let has_tail = self.csum_seed.is_some();
        for (i, &block) in layout.physical.iter().enumerate() {
            if layout.interior.get(i) == Some(&true) {
                continue;
            }
            let bytes = self.leaf(r, dir, block)?;
            let at = Location::DirBlock {
                ino: dir.ino,
                block,
            };
            for e in dir_entries(&bytes, at, has_tail) {
                let e = e?;
                if e.is_live() && e.name == name {
                    return Ok(Some((e.inode, e.file_type)));
                }
            }
        }
        Ok(None)
    }

    /// Live entries of `dir` other than `.` and `..`.
    pub(crate) fn dir_count(&mut self, r: &mut dyn BlockRead, dir: &Inode) -> Result<u64, FsError> {
        let layout = self.dir_layout(r, dir)?;
        let has_tail = self.csum_seed.is_some();
        let mut n = 0;
        for (i, &block) in layout.physical.iter().enumerate() {
            if layout.interior.get(i) == Some(&true) {
                continue;
            }
            let bytes = self.leaf(r, dir, block)?;
            let at = Location::DirBlock {
                ino: dir.ino,
                block,
            };
            for e in dir_entries(&bytes, at, has_tail) {
                let e = e?;
                if e.is_live() && e.name != b"." && e.name != b".." {
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Adds `entry` to `dir` (the caller checked the name is absent); updates `dir`'s size,
    /// extent root and `i_blocks` in `dir` (the caller stores the inode).
    pub(crate) fn dir_add(
        &mut self,
        r: &mut dyn BlockRead,
        dir: &mut Inode,
        entry: &NewDirEntry<'_>,
    ) -> Result<(), FsError> {
        let mut layout = self.dir_layout(r, dir)?;
        if dir.flags & EXT4_INDEX_FL != 0 {
            let leaf = self.htree_leaf(r, dir, &layout, entry.name)?;
            if self.try_insert(r, dir, leaf, entry)? {
                return Ok(());
            }
            self.drop_index(r, dir, &layout)?;
            layout.interior.fill(false);
        }
        for (i, &block) in layout.physical.iter().enumerate() {
            if layout.interior.get(i) == Some(&true) {
                continue;
            }
            if self.try_insert(r, dir, block, entry)? {
                return Ok(());
            }
        }
        self.dir_append_block(r, dir, &mut layout, entry)
    }

    /// The physical leaf block that holds (or would hold) `name` in indexed `dir`.
    fn htree_leaf(
        &mut self,
        r: &mut dyn BlockRead,
        dir: &Inode,
        layout: &Layout,
        name: &[u8],
    ) -> Result<u64, FsError> {
        let root = self.dx_root(r, dir, &layout.physical)?;
        let at = Location::Inode { ino: dir.ino };
        let version = effective_hash_version(root.hash_version, self.sb.unsigned_dir_hash());
        let hash = dx_hash(name, version, &self.sb.hash_seed, at)?.major;
        let corrupt = FsError::Corrupt {
            at,
            what: "dx_entry points outside the directory",
        };
        let mut e = *dx_find(&root.entries, hash).ok_or(corrupt.clone())?;
        if root.indirect_levels == 1 {
            let block = *layout
                .physical
                .get(e.block as usize)
                .ok_or(corrupt.clone())?;
            let nat = Location::DirBlock {
                ino: dir.ino,
                block,
            };
            let seed = self.csum_seed.map(|s| dir.csum_seed(s));
            let node = DxNode::decode(self.meta.get(r, block, nat)?, nat, seed)?;
            e = *dx_find(&node.entries, hash).ok_or(corrupt.clone())?;
        }
        if layout.interior.get(e.block as usize) != Some(&false) {
            return Err(corrupt);
        }
        layout
            .physical
            .get(e.block as usize)
            .copied()
            .ok_or(corrupt)
    }

    /// Inserts `entry` into leaf `block` if it has room; reseals the tail.
    fn try_insert(
        &mut self,
        r: &mut dyn BlockRead,
        dir: &Inode,
        block: u64,
        entry: &NewDirEntry<'_>,
    ) -> Result<bool, FsError> {
        let at = Location::DirBlock {
            ino: dir.ino,
            block,
        };
        let has_tail = self.csum_seed.is_some();
        let need = dir_rec_len(entry.name.len());
        let bytes = self.leaf(r, dir, block)?;
        let mut room = false;
        for e in dir_entries(&bytes, at, has_tail) {
            let e = e?;
            let used = if e.is_live() {
                dir_rec_len(e.name.len())
            } else {
                0
            };
            if usize::from(e.rec_len) >= used + need {
                room = true;
                break;
            }
        }
        if !room {
            return Ok(false);
        }
        let seed = self.csum_seed.map(|s| dir.csum_seed(s));
        let bytes = self.meta.get_mut(r, block, at)?;
        let placed = insert_dir_entry(bytes, at, has_tail, entry)?;
        if let Some(seed) = seed {
            set_dir_tail(bytes, at, seed)?;
        }
        Ok(placed.is_some())
    }

    /// Appends a block holding just `entry` to `dir`.
    fn dir_append_block(
        &mut self,
        r: &mut dyn BlockRead,
        dir: &mut Inode,
        layout: &mut Layout,
        entry: &NewDirEntry<'_>,
    ) -> Result<(), FsError> {
        let logical = u32::try_from(layout.physical.len())
            .map_err(|_| FsError::FileTooBig { ino: dir.ino })?;
        let goal = layout
            .physical
            .last()
            .map_or_else(|| self.goal_for_inode(dir.ino), |b| b + 1);
        let (block, _) = self.alloc_blocks(r, goal, 1)?;
        let at = Location::DirBlock {
            ino: dir.ino,
            block,
        };
        let has_tail = self.csum_seed.is_some();
        let seed = self.csum_seed.map(|s| dir.csum_seed(s));
        let bytes = self.meta.fresh(block, at)?;
        encode_dir_block(bytes, at, std::slice::from_ref(entry), has_tail)?;
        if let Some(seed) = seed {
            set_dir_tail(bytes, at, seed)?;
        }
        self.map_blocks(r, dir, &mut layout.tree, logical, block, 1)?;
        dir.size_bytes += BLOCK_SIZE as u64;
        layout.physical.push(block);
        layout.interior.push(false);
        Ok(())
    }

    /// Removes `name` from `dir`; returns the inode it named.
    pub(crate) fn dir_remove(
        &mut self,
        r: &mut dyn BlockRead,
        dir: &Inode,
        name: &[u8],
    ) -> Result<Option<u32>, FsError> {
        let layout = self.dir_layout(r, dir)?;
        let has_tail = self.csum_seed.is_some();
        let seed = self.csum_seed.map(|s| dir.csum_seed(s));
        for (i, &block) in layout.physical.iter().enumerate() {
            if layout.interior.get(i) == Some(&true) {
                continue;
            }
            let at = Location::DirBlock {
                ino: dir.ino,
                block,
            };
            let bytes = self.leaf(r, dir, block)?;
            let mut present = false;
            for e in dir_entries(&bytes, at, has_tail) {
                let e = e?;
                present |= e.is_live() && e.name == name;
            }
            if !present {
                continue;
            }
            let bytes = self.meta.get_mut(r, block, at)?;
            let removed = remove_dir_entry(bytes, at, has_tail, name)?;
            if let Some(seed) = seed {
                set_dir_tail(bytes, at, seed)?;
            }
            return Ok(removed);
        }
        Ok(None)
    }

    /// The inode `..` of directory `dir` names (kept in the `dx_root` of an indexed
    /// directory, whose block 0 lookups skip).
    pub(crate) fn dir_dotdot(
        &mut self,
        r: &mut dyn BlockRead,
        dir: &Inode,
    ) -> Result<u32, FsError> {
        if dir.flags & EXT4_INDEX_FL != 0 {
            let layout = self.dir_layout(r, dir)?;
            return Ok(self.dx_root(r, dir, &layout.physical)?.dotdot_inode);
        }
        self.dir_lookup(r, dir, b"..")?
            .map(|(p, _)| p)
            .ok_or(FsError::Corrupt {
                at: Location::Inode { ino: dir.ino },
                what: "directory without `..`",
            })
    }

    /// Points the `..` entry of directory `dir` at `parent` (rename moving a directory). The
    /// `..` record is the second record of block 0, in a `dx_root` as in a linear block.
    pub(crate) fn dir_set_dotdot(
        &mut self,
        r: &mut dyn BlockRead,
        dir: &Inode,
        parent: u32,
    ) -> Result<(), FsError> {
        let layout = self.dir_layout(r, dir)?;
        let block = *layout.physical.first().ok_or(FsError::Corrupt {
            at: Location::Inode { ino: dir.ino },
            what: "directory without blocks",
        })?;
        let at = Location::DirBlock {
            ino: dir.ino,
            block,
        };
        let seed = self.csum_seed.map(|s| dir.csum_seed(s));
        if dir.flags & EXT4_INDEX_FL != 0 {
            let mut root = self.dx_root(r, dir, &layout.physical)?;
            root.dotdot_inode = parent;
            let bytes = self.meta.get_mut(r, block, at)?;
            root.encode_into(bytes, at, seed)?;
            return Ok(());
        }
        let has_tail = self.csum_seed.is_some();
        let bytes = self.leaf(r, dir, block)?;
        let offset = match dir_entries(&bytes, at, has_tail).nth(1).transpose()? {
            Some(e) if e.is_live() && e.name == b".." => e.offset_bytes,
            _ => {
                return Err(FsError::Corrupt {
                    at,
                    what: "second record of a directory is not `..`",
                })
            }
        };
        let bytes = self.meta.get_mut(r, block, at)?;
        let slot = bytes.get_mut(offset..offset + 4).ok_or(FsError::Corrupt {
            at,
            what: "`..` record outside its block",
        })?;
        slot.copy_from_slice(&parent.to_le_bytes());
        if let Some(seed) = seed {
            set_dir_tail(bytes, at, seed)?;
        }
        Ok(())
    }

    /// Turns indexed `dir` linear: clears `INDEX_FL` and rewrites the `dx_root` as a block
    /// holding `.` and `..` and every `dx_node` as an empty block, all with checksum tails.
    fn drop_index(
        &mut self,
        r: &mut dyn BlockRead,
        dir: &mut Inode,
        layout: &Layout,
    ) -> Result<(), FsError> {
        let root = self.dx_root(r, dir, &layout.physical)?;
        let has_tail = self.csum_seed.is_some();
        let seed = self.csum_seed.map(|s| dir.csum_seed(s));
        for (i, &block) in layout.physical.iter().enumerate() {
            if layout.interior.get(i) != Some(&true) {
                continue;
            }
            let at = Location::DirBlock {
                ino: dir.ino,
                block,
            };
            let dots = [
                NewDirEntry {
                    inode: root.dot_inode,
                    file_type: file_type::DIR,
                    name: b".",
                },
                NewDirEntry {
                    inode: root.dotdot_inode,
                    file_type: file_type::DIR,
                    name: b"..",
                },
            ];
            let entries: &[NewDirEntry<'_>] = if i == 0 { &dots } else { &[] };
            let bytes = self.meta.get_mut(r, block, at)?;
            encode_dir_block(bytes, at, entries, has_tail)?;
            if let Some(seed) = seed {
                set_dir_tail(bytes, at, seed)?;
            }
        }
        dir.flags &= !EXT4_INDEX_FL;
        Ok(())
    }

    /// Maps `len` logical blocks from `logical` of `inode` to physical blocks from `physical`
    /// in `tree` (allocating node blocks near `physical`), stores the tree into `inode` and
    /// recomputes `i_blocks`.
    pub(crate) fn map_blocks(
        &mut self,
        r: &mut dyn BlockRead,
        inode: &mut Inode,
        tree: &mut Tree,
        logical: u32,
        physical: u64,
        len: u32,
    ) -> Result<(), FsError> {
        let extent = Extent {
            first_logical_block: logical,
            len_blocks: u16::try_from(len).map_err(|_| FsError::FileTooBig { ino: inode.ino })?,
            start_block: physical,
            unwritten: false,
        };
        self.edit_tree(r, inode, tree, physical + u64::from(len), |t, alloc| {
            t.insert(extent, alloc)
        })
    }

    /// Applies `edit` to `tree` (node blocks allocated near `goal`), stores the tree into
    /// `inode` and recomputes `i_blocks`.
    pub(crate) fn edit_tree(
        &mut self,
        r: &mut dyn BlockRead,
        inode: &mut Inode,
        tree: &mut Tree,
        goal: u64,
        edit: impl FnOnce(&mut Tree, &mut NodeAlloc<'_>) -> Result<(), FsError>,
    ) -> Result<(), FsError> {
        let ino = inode.ino;
        {
            let mut alloc = || -> Result<u64, FsError> {
                let (block, _) = self.alloc_blocks(r, goal, 1)?;
                self.meta
                    .fresh(block, Location::ExtentBlock { ino, block })?;
                Ok(block)
            };
            edit(tree, &mut alloc)?;
        }
        tree.store(self, r, inode)?;
        self.set_i_blocks(inode, tree)
    }

    /// `i_blocks` from the tree: mapped blocks, node blocks and the xattr block.
    pub(crate) fn set_i_blocks(&self, inode: &mut Inode, tree: &Tree) -> Result<(), FsError> {
        let data: u64 = tree.extents().iter().map(|e| u64::from(e.len_blocks)).sum();
        let blocks = data + tree.node_blocks().len() as u64 + u64::from(inode.file_acl_block != 0);
        let huge =
            self.sb.feature_ro_compat & aios_ext4::format::features::ro_compat::HUGE_FILE != 0;
        inode.set_blocks_512(blocks * (BLOCK_SIZE as u64 / 512), BLOCK_SIZE as u32, huge)?;
        Ok(())
    }
}
