//! The operations: create, mkdir, symlink, write, truncate, unlink, rmdir, and lookups.
//!
//! # Semantics
//! - Names: 1..=255 bytes, no `/` or NUL, not `.` or `..`; an existing name is
//!   [`FsError::Exists`]. The parent must be a directory.
//! - Link counts: a new file has 1 link, a new directory 2 (`.` and its entry) and its parent
//!   gains one (`..`). With `dir_nlink`, a parent that would pass [`LINK_MAX`] links gets 1
//!   ("many"), and a parent at 1 stays at 1 when a subdirectory goes (the kernel's
//!   `ext4_inc_count`/`ext4_dec_count`); without `dir_nlink` that is `TooManyLinks`.
//! - Times: the changed inode's ctime (and mtime for content or entry changes) become now, with
//!   nanoseconds.
//! - `write` allocates unmapped blocks in runs (goal: after the previous extent, else the
//!   inode's flex group), zero-fills the unwritten part of a new block, and reads the old block
//!   for a partial write to a mapped one (from this batch's pending data first). Size grows to
//!   the end of the write.
//! - `truncate` frees every block past the new size (pending free), zeroes the tail of a
//!   partial last block, and sets the size; growing leaves a hole.
//! - `unlink` of the last link and `rmdir` free the inode and its blocks at once, setting
//!   `dtime`; an unlink while the file is open is `unlink_open` (the orphan list, in `ns`).
//! - Every public operation is all-or-nothing ([`Mutator::atomic`]): a write that runs out of
//!   space or past the largest file changes nothing.
//! - `write` over unwritten (fallocated) blocks converts them to written first (splitting the
//!   extent), treating them as new: the part of a block the write does not cover is zeros.

use aios_device::BLOCK_SIZE;
use aios_ext4::format::dir::{file_type, NewDirEntry, NAME_LEN_MAX};
use aios_ext4::format::extent::EXT_INIT_MAX_LEN_BLOCKS;
use aios_ext4::format::features::ro_compat;
use aios_ext4::format::inode::{Inode, I_BLOCK_SIZE_BYTES, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
use aios_ext4::Location;

use super::extents::Tree;
use super::inode::now;
use super::{BlockRead, Mutator};
use crate::error::display_path;
use crate::{FsError, ROOT_INO};

/// Most links the kernel counts (`EXT4_LINK_MAX`).
pub const LINK_MAX: u16 = 65000;
/// Largest file: 2^32 blocks of 4 KiB.
pub(super) const FILE_SIZE_MAX_BYTES: u64 = (1 << 32) * BLOCK_SIZE as u64;

/// What to create in a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewNode<'a> {
    /// A regular file with these permission bits.
    File { perm: u16 },
    /// A directory with these permission bits.
    Dir { perm: u16 },
    /// A symbolic link to `target` (1..4095 bytes): fast (in the inode) below 60 bytes.
    Symlink { target: &'a [u8] },
}

pub(super) fn check_name(name: &[u8]) -> Result<(), FsError> {
    if name.len() > NAME_LEN_MAX {
        return Err(FsError::NameTooLong {
            path: display_path(name),
        });
    }
    if name.is_empty() || name == b"." || name == b".." || name.iter().any(|&b| b == b'/' || b == 0)
    {
        return Err(FsError::InvalidPath {
            path: display_path(name),
            reason: "not a valid file name",
        });
    }
    Ok(())
}

/// What one [`Mutator::write_report`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// The data blocks it dirtied, in file order.
    pub blocks: Vec<u64>,
    /// It allocated blocks, converted unwritten extents or grew the size: reading the data
    /// back after a crash needs its metadata, so `fdatasync` must commit it. False for an
    /// in-place overwrite (only the times changed).
    pub remapped: bool,
}

impl Mutator {
    /// Inode `ino` as it is now (including changes not yet taken).
    pub fn inode(&mut self, r: &mut dyn BlockRead, ino: u32) -> Result<Inode, FsError> {
        self.load_inode(r, ino)
    }

    /// The extents of regular file `ino` as they are now (sorted by logical block; an inline
    /// or block-mapped file has none this layer can report).
    pub fn extents(
        &mut self,
        r: &mut dyn BlockRead,
        ino: u32,
    ) -> Result<Vec<aios_ext4::format::extent::Extent>, FsError> {
        let inode = self.load_inode(r, ino)?;
        Ok(Tree::load(self, r, &inode)?.extents())
    }

    /// Depth of inode `ino`'s extent tree.
    pub fn extent_depth(&mut self, r: &mut dyn BlockRead, ino: u32) -> Result<u16, FsError> {
        let inode = self.load_inode(r, ino)?;
        Ok(Tree::load(self, r, &inode)?.depth())
    }

    /// The physical block logical block `logical` of inode `ino` maps to (`None`: a hole).
    pub fn physical_block(
        &mut self,
        r: &mut dyn BlockRead,
        ino: u32,
        logical: u32,
    ) -> Result<Option<u64>, FsError> {
        let inode = self.load_inode(r, ino)?;
        let tree = Tree::load(self, r, &inode)?;
        Ok(tree
            .find(logical)
            .map(|e| e.start_block + u64::from(logical - e.first_logical_block)))
    }

    /// The inode `name` names in directory `dir`.
    pub fn lookup(
        &mut self,
        r: &mut dyn BlockRead,
        dir: u32,
        name: &[u8],
    ) -> Result<Option<u32>, FsError> {
        let dir = self.load_dir(r, dir)?;
        match name {
            b"." => Ok(Some(dir.ino)),
            b".." => self.dir_dotdot(r, &dir).map(Some),
            _ => Ok(self.dir_lookup(r, &dir, name)?.map(|(ino, _)| ino)),
        }
    }

    /// The inode of absolute `path`, following no symlinks.
    pub fn lookup_path(
        &mut self,
        r: &mut dyn BlockRead,
        path: &[u8],
    ) -> Result<Option<u32>, FsError> {
        let mut cur = ROOT_INO;
        for name in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            match self.lookup(r, cur, name)? {
                Some(ino) => cur = ino,
                None => return Ok(None),
            }
        }
        Ok(Some(cur))
    }

    pub(super) fn load_dir(&mut self, r: &mut dyn BlockRead, ino: u32) -> Result<Inode, FsError> {
        let dir = self.load_inode(r, ino)?;
        if !dir.is_dir() {
            return Err(FsError::NotADirectory {
                path: format!("inode {ino}"),
            });
        }
        Ok(dir)
    }

    /// Creates `name` in directory `parent`; returns the new inode number.
    pub fn create(
        &mut self,
        r: &mut dyn BlockRead,
        parent: u32,
        name: &[u8],
        node: NewNode<'_>,
    ) -> Result<u32, FsError> {
        self.atomic(r, |m, r| m.create_op(r, parent, name, node))
    }

    fn create_op(
        &mut self,
        r: &mut dyn BlockRead,
        parent: u32,
        name: &[u8],
        node: NewNode<'_>,
    ) -> Result<u32, FsError> {
        check_name(name)?;
        let mut dir = self.load_dir(r, parent)?;
        if self.dir_lookup(r, &dir, name)?.is_some() {
            return Err(FsError::Exists {
                name: display_path(name),
            });
        }
        if let NewNode::Symlink { target } = node {
            if target.is_empty() || target.len() >= BLOCK_SIZE {
                return Err(FsError::NameTooLong {
                    path: display_path(target),
                });
            }
        }
        let is_dir = matches!(node, NewNode::Dir { .. });
        if is_dir {
            self.check_can_inc_links(&dir)?;
        }
        let ino = self.alloc_inode(r, parent, is_dir)?;
        let ft = match node {
            NewNode::File { perm } => {
                let inode = self.fresh_inode(ino, S_IFREG | (perm & !S_IFMT), 1, true);
                self.store_inode(r, &inode, true)?;
                file_type::REG_FILE
            }
            NewNode::Dir { perm } => {
                self.new_dir_inode(r, ino, parent, perm)?;
                file_type::DIR
            }
            NewNode::Symlink { target } => {
                self.new_symlink_inode(r, ino, target)?;
                file_type::SYMLINK
            }
        };
        let entry = NewDirEntry {
            inode: ino,
            file_type: ft,
            name,
        };
        self.dir_add(r, &mut dir, &entry)?;
        let t = now();
        dir.mtime = t;
        dir.ctime = t;
        if is_dir {
            self.inc_links(&mut dir)?;
        }
        self.store_inode(r, &dir, false)?;
        Ok(ino)
    }

    fn new_dir_inode(
        &mut self,
        r: &mut dyn BlockRead,
        ino: u32,
        parent: u32,
        perm: u16,
    ) -> Result<(), FsError> {
        let mut inode = self.fresh_inode(ino, S_IFDIR | (perm & !S_IFMT), 2, true);
        let mut tree = Tree::load(self, r, &inode)?;
        let goal = self.goal_for_inode(ino);
        let (block, _) = self.alloc_blocks(r, goal, 1)?;
        let at = Location::DirBlock { ino, block };
        let has_tail = self.csum_seed.is_some();
        let seed = self.csum_seed.map(|s| inode.csum_seed(s));
        let bytes = self.meta.fresh(block, at)?;
        let dots = [
            NewDirEntry {
                inode: ino,
                file_type: file_type::DIR,
                name: b".",
            },
            NewDirEntry {
                inode: parent,
                file_type: file_type::DIR,
                name: b"..",
            },
        ];
        aios_ext4::format::dir::encode_dir_block(bytes, at, &dots, has_tail)?;
        if let Some(seed) = seed {
            aios_ext4::format::dir::set_dir_tail(bytes, at, seed)?;
        }
        self.map_blocks(r, &mut inode, &mut tree, 0, block, 1)?;
        inode.size_bytes = BLOCK_SIZE as u64;
        self.store_inode(r, &inode, true)
    }

    fn new_symlink_inode(
        &mut self,
        r: &mut dyn BlockRead,
        ino: u32,
        target: &[u8],
    ) -> Result<(), FsError> {
        let fast = target.len() < I_BLOCK_SIZE_BYTES;
        let mut inode = self.fresh_inode(ino, S_IFLNK | 0o777, 1, !fast);
        inode.size_bytes = target.len() as u64;
        if fast {
            if let Some(slot) = inode.block.get_mut(..target.len()) {
                slot.copy_from_slice(target);
            }
            return self.store_inode(r, &inode, true);
        }
        let mut tree = Tree::load(self, r, &inode)?;
        let goal = self.goal_for_inode(ino);
        let (block, _) = self.alloc_blocks(r, goal, 1)?;
        let page = self
            .pages
            .build(None, 0, target.get(..BLOCK_SIZE).unwrap_or(target));
        self.put_data(block, page);
        self.map_blocks(r, &mut inode, &mut tree, 0, block, 1)?;
        self.store_inode(r, &inode, true)
    }

    pub(super) fn check_can_inc_links(&self, dir: &Inode) -> Result<(), FsError> {
        let dir_nlink = self.sb.feature_ro_compat & ro_compat::DIR_NLINK != 0;
        if dir.links_count >= LINK_MAX && !dir_nlink {
            return Err(FsError::TooManyLinks { ino: dir.ino });
        }
        Ok(())
    }

    pub(super) fn inc_links(&self, dir: &mut Inode) -> Result<(), FsError> {
        self.check_can_inc_links(dir)?;
        if dir.links_count != 1 {
            dir.links_count += 1;
            if dir.links_count > LINK_MAX {
                dir.links_count = 1;
            }
        }
        Ok(())
    }

    /// Writes `data` at byte `offset_bytes` of regular file `ino` (see the module doc).
    pub fn write(
        &mut self,
        r: &mut dyn BlockRead,
        ino: u32,
        offset_bytes: u64,
        data: &[u8],
    ) -> Result<(), FsError> {
        self.write_report(r, ino, offset_bytes, data).map(drop)
    }

    /// [`Mutator::write`], also saying which data blocks it dirtied and whether it changed
    /// anything a later read of the data depends on (what `fdatasync` must commit).
    pub fn write_report(
        &mut self,
        r: &mut dyn BlockRead,
        ino: u32,
        offset_bytes: u64,
        data: &[u8],
    ) -> Result<WriteReport, FsError> {
        self.atomic(r, |m, r| m.write_op(r, ino, offset_bytes, data))
    }

    fn write_op(
        &mut self,
        r: &mut dyn BlockRead,
        ino: u32,
        offset_bytes: u64,
        data: &[u8],
    ) -> Result<WriteReport, FsError> {
        let mut inode = self.load_inode(r, ino)?;
        if !inode.is_regular() {
            return Err(FsError::NotARegularFile { ino });
        }
        let end = offset_bytes
            .checked_add(data.len() as u64)
            .filter(|&e| e <= FILE_SIZE_MAX_BYTES)
            .ok_or(FsError::FileTooBig { ino })?;
        let mut report = WriteReport::default();
        if data.is_empty() {
            return Ok(report);
        }
        let bs = BLOCK_SIZE as u64;
        let mut tree = Tree::load(self, r, &inode)?;
        let first = (offset_bytes / bs) as u32;
        let last = ((end - 1) / bs) as u32;
        // Unwritten (fallocated) blocks in range become written; their old bytes are never read.
        let converted = self.convert_unwritten(r, &mut inode, &mut tree, first, last)?;
        // Logical blocks allocated by this write: their old contents are garbage, never read.
        let mut fresh_end = u64::from(first);
        for logical in first..=last {
            let (physical, fresh) = match tree.find(logical) {
                Some(e) => (
                    e.start_block + u64::from(logical - e.first_logical_block),
                    u64::from(logical) < fresh_end
                        || converted.iter().any(|c| c.contains(&logical)),
                ),
                None => {
                    let (start, got) =
                        self.alloc_for_write(r, &mut inode, &mut tree, logical, last)?;
                    fresh_end = u64::from(logical) + u64::from(got);
                    report.remapped = true;
                    (start, true)
                }
            };
            let block_start = u64::from(logical) * bs;
            let lo = offset_bytes.max(block_start);
            let hi = end.min(block_start + bs);
            let src = data
                .get((lo - offset_bytes) as usize..(hi - offset_bytes) as usize)
                .unwrap_or_default();
            let at = (lo - block_start) as usize;
            let page = if hi - lo == bs || fresh {
                self.pages.build(None, at, src)
            } else {
                self.patched_block(r, ino, physical, at, src)?
            };
            self.put_data(physical, page);
            report.blocks.push(physical);
        }
        report.remapped |= !converted.is_empty() || end > inode.size_bytes;
        inode.size_bytes = inode.size_bytes.max(end);
        let t = now();
        inode.mtime = t;
        inode.ctime = t;
        self.store_inode(r, &inode, false)?;
        Ok(report)
    }

    /// A new page of data block `physical` of inode `ino`: its newest bytes (pending here, or
    /// read) with `src` written at byte `at` (a read-modify-write of part of a block).
    fn patched_block(
        &self,
        r: &mut dyn BlockRead,
        ino: u32,
        physical: u64,
        at: usize,
        src: &[u8],
    ) -> Result<std::sync::Arc<crate::DataPage>, FsError> {
        Ok(match self.data.get(&physical) {
            Some(old) => self.pages.build(Some(old.bytes()), at, src),
            None => {
                let old = r.read_block(physical, Location::Inode { ino })?;
                self.pages.build(Some(&old), at, src)
            }
        })
    }

    /// Allocates and maps the unmapped run starting at `logical` (up to `last` and one
    /// extent); returns its first physical block and length.
    fn alloc_for_write(
        &mut self,
        r: &mut dyn BlockRead,
        inode: &mut Inode,
        tree: &mut Tree,
        logical: u32,
        last: u32,
    ) -> Result<(u64, u32), FsError> {
        let mut run = 1u32;
        while run <= last - logical
            && run < u32::from(EXT_INIT_MAX_LEN_BLOCKS)
            && tree.find(logical + run).is_none()
        {
            run += 1;
        }
        let goal = tree.before(logical).map_or_else(
            || self.goal_for_file_data(inode.ino),
            |e| e.start_block + u64::from(logical - e.first_logical_block),
        );
        let (start, got) = self.alloc_blocks_for(r, goal, run, Some(inode.ino))?;
        self.map_blocks(r, inode, tree, logical, start, got)?;
        // Appending: keep the blocks after this run for the file's next append.
        if tree.find(logical + got).is_none() {
            self.reserve_after(inode.ino, start + u64::from(got));
        }
        Ok((start, got))
    }

    /// Sets the size of regular file `ino` (see the module doc).
    pub fn truncate(
        &mut self,
        r: &mut dyn BlockRead,
        ino: u32,
        size_bytes: u64,
    ) -> Result<(), FsError> {
        self.atomic(r, |m, r| m.truncate_op(r, ino, size_bytes))
    }

    fn truncate_op(
        &mut self,
        r: &mut dyn BlockRead,
        ino: u32,
        size_bytes: u64,
    ) -> Result<(), FsError> {
        self.unreserve(ino);
        let mut inode = self.load_inode(r, ino)?;
        if !inode.is_regular() {
            return Err(FsError::NotARegularFile { ino });
        }
        if size_bytes > FILE_SIZE_MAX_BYTES {
            return Err(FsError::FileTooBig { ino });
        }
        if size_bytes < inode.size_bytes {
            let bs = BLOCK_SIZE as u64;
            let keep = size_bytes.div_ceil(bs) as u32;
            let mut tree = Tree::load(self, r, &inode)?;
            self.free_tree_from(r, &mut inode, &mut tree, keep)?;
            let within = (size_bytes % bs) as usize;
            if within != 0 {
                let logical = (size_bytes / bs) as u32;
                if let Some(e) = tree.find(logical).filter(|e| !e.unwritten) {
                    let physical = e.start_block + u64::from(logical - e.first_logical_block);
                    let zeros = [0u8; BLOCK_SIZE];
                    let tail = zeros.get(within..).unwrap_or_default();
                    let page = self.patched_block(r, ino, physical, within, tail)?;
                    self.put_data(physical, page);
                }
            }
        }
        inode.size_bytes = size_bytes;
        let t = now();
        inode.mtime = t;
        inode.ctime = t;
        self.store_inode(r, &inode, false)
    }

    /// Unmaps and frees every block of `inode` from logical block `keep` on.
    pub(super) fn free_tree_from(
        &mut self,
        r: &mut dyn BlockRead,
        inode: &mut Inode,
        tree: &mut Tree,
        keep: u32,
    ) -> Result<(), FsError> {
        let (data, nodes) = tree.truncate_from(keep);
        tree.store(self, r, inode)?;
        self.set_i_blocks(inode, tree)?;
        for (start, len) in data {
            self.free_blocks(r, start, len)?;
        }
        for block in nodes {
            self.free_blocks(r, block, 1)?;
        }
        Ok(())
    }

    /// Removes the non-directory `name` from `parent`; frees the inode at its last link.
    pub fn unlink(
        &mut self,
        r: &mut dyn BlockRead,
        parent: u32,
        name: &[u8],
    ) -> Result<(), FsError> {
        self.atomic(r, |m, r| m.unlink_op(r, parent, name))
    }

    fn unlink_op(
        &mut self,
        r: &mut dyn BlockRead,
        parent: u32,
        name: &[u8],
    ) -> Result<(), FsError> {
        let inode = self.unlink_entry(r, parent, name)?;
        if inode.links_count > 0 {
            return self.store_inode(r, &inode, false);
        }
        self.release_inode(r, inode, false)
    }

    /// Removes the non-directory entry `name` of `parent` (times updated, directory stored);
    /// returns its inode with one link less and ctime now, not yet stored.
    pub(super) fn unlink_entry(
        &mut self,
        r: &mut dyn BlockRead,
        parent: u32,
        name: &[u8],
    ) -> Result<Inode, FsError> {
        check_name(name)?;
        let mut dir = self.load_dir(r, parent)?;
        let (ino, _) = self
            .dir_lookup(r, &dir, name)?
            .ok_or_else(|| FsError::NotFound {
                path: display_path(name),
            })?;
        let mut inode = self.load_inode(r, ino)?;
        if inode.is_dir() {
            return Err(FsError::IsADirectory { ino });
        }
        self.dir_remove(r, &dir, name)?;
        let t = now();
        dir.mtime = t;
        dir.ctime = t;
        self.store_inode(r, &dir, false)?;
        inode.links_count = inode.links_count.saturating_sub(1);
        inode.ctime = t;
        Ok(inode)
    }

    /// Removes the empty directory `name` from `parent`.
    pub fn rmdir(
        &mut self,
        r: &mut dyn BlockRead,
        parent: u32,
        name: &[u8],
    ) -> Result<(), FsError> {
        self.atomic(r, |m, r| m.rmdir_op(r, parent, name))
    }

    fn rmdir_op(&mut self, r: &mut dyn BlockRead, parent: u32, name: &[u8]) -> Result<(), FsError> {
        check_name(name)?;
        let mut dir = self.load_dir(r, parent)?;
        let (ino, _) = self
            .dir_lookup(r, &dir, name)?
            .ok_or_else(|| FsError::NotFound {
                path: display_path(name),
            })?;
        let child = self.load_dir(r, ino)?;
        if self.dir_count(r, &child)? != 0 {
            return Err(FsError::NotEmpty { ino });
        }
        self.dir_remove(r, &dir, name)?;
        let t = now();
        dir.mtime = t;
        dir.ctime = t;
        if dir.links_count > 2 {
            dir.links_count -= 1;
        }
        self.store_inode(r, &dir, false)?;
        self.release_inode(r, child, true)
    }

    /// Frees every block of `inode`, marks it deleted and frees its number.
    pub(super) fn release_inode(
        &mut self,
        r: &mut dyn BlockRead,
        mut inode: Inode,
        is_dir: bool,
    ) -> Result<(), FsError> {
        self.unreserve(inode.ino);
        if inode.uses_extents() {
            let mut tree = Tree::load(self, r, &inode)?;
            self.free_tree_from(r, &mut inode, &mut tree, 0)?;
        }
        let t = now();
        inode.links_count = 0;
        inode.size_bytes = 0;
        inode.dtime = u32::try_from(t.secs).unwrap_or(u32::MAX);
        inode.ctime = t;
        self.store_inode(r, &inode, false)?;
        self.free_inode(r, inode.ino, is_dir)
    }
}
