//! Namespace and attribute operations: rename, link, set_attr, fallocate, and the orphan list.
//!
//! # Rename
//! `rename(old_parent, old_name, new_parent, new_name)` is one operation (one transaction
//! later): the new entry is added (an existing target's entry is removed first), the old entry
//! removed, a moved directory's `..` repointed, link counts fixed, and an existing target
//! released — or, on any error, nothing changes ([`Mutator::atomic`]). Checks, all before any
//! change, as `rename(2)`:
//! - both names valid, both parents directories, the source exists (`NotFound`);
//! - source and target the same inode (the same name, or two hard links): success, no change;
//! - directory over non-directory: `NotADirectory`; non-directory over directory:
//!   `IsADirectory`; directory over a non-empty directory: `NotEmpty`;
//! - a directory moved into itself or its own subtree: `InvalidArgument` (`EINVAL`), found by
//!   walking `..` from the new parent up to the root;
//! - a directory moved to a new parent at the link limit without `dir_nlink`: `TooManyLinks`.
//!
//! Link counts follow the kernel's `ext4_rename`: renaming a directory drops one link of the
//! old parent (`ext4_dec_count`: not below 2, and a parent at 1, "many", stays 1) and, unless it
//! replaces a directory, adds one to the new parent (`ext4_inc_count`, 1 past [`LINK_MAX`]); a
//! replaced directory is released outright, a replaced file loses one link (released at 0).
//! Times: both parents get mtime and ctime now, the moved inode ctime now.
//!
//! # Link
//! `link(ino, new_parent, name)` adds a name for a non-directory (`NotPermitted`, `EPERM`, for a
//! directory; `NotFound` for an inode already unlinked, as without `O_TMPFILE`; `TooManyLinks`
//! at [`LINK_MAX`]); the inode's ctime and the parent's mtime and ctime become now.
//!
//! # The orphan list (unlinked while open)
//! The kernel's list without the `orphan_file` feature: `s_last_orphan` names the head inode,
//! and each listed inode's `i_dtime` holds the next inode number (0 ends the list).
//! [`Mutator::unlink_open`] removes a name like `unlink`; if that was the last link the inode
//! keeps its blocks and goes on the head of the list (links 0, `i_dtime` = old head, in the same
//! operation, so one transaction), and the caller (the open-file table) calls
//! [`Mutator::release_orphan`] at the last close, which unchains it (from the head, or by
//! rewriting its predecessor's `i_dtime`) and frees it, again in one operation.
//!
//! After a crash, listed inodes are still allocated and hold their blocks. The read-write mount
//! calls [`Mutator::process_orphans`] after journal recovery and before any other operation, as
//! the kernel's `ext4_orphan_cleanup` does: every listed inode is freed (an inode with links
//! left, the kernel's truncate orphans, is cut to its size instead and unchained), and
//! `s_last_orphan` ends at 0; those changes are the mount's first transaction. `e2fsck` (not
//! read-only) does the same in its superblock pass (`release_orphan_inodes`). The list is
//! walked with a bound of `s_inodes_count` steps; a number outside
//! `s_first_ino..=s_inodes_count`, a free inode or a cycle is [`FsError::Corrupt`].
//!
//! # set_attr
//! chmod, chown and utimes in one call ([`SetAttr`]); the file type bits never change. As Linux
//! (`notify_change`): any change sets ctime to now (or to the given ctime, for restoring a
//! backup), and a chown of a non-directory clears set-user-ID, and set-group-ID when the group
//! may execute.
//!
//! # fallocate
//! `fallocate(ino, offset, len, keep_size)` maps every unmapped block of the range to new
//! *unwritten* extents (at most 32767 blocks each, the unwritten bit being the length's top
//! bit); mapped blocks are kept. Reads of unwritten blocks return zeros; a later `write`
//! converts the blocks it covers to written. Without `keep_size` the size grows to the range's
//! end; with it, blocks past the size stay allocated (e2fsck accepts unwritten blocks past EOF).

use std::ops::Range;

use aios_device::BLOCK_SIZE;
use aios_ext4::format::dir::{file_type, NewDirEntry};
use aios_ext4::format::extent::Extent;
use aios_ext4::format::inode::{Inode, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
use aios_ext4::Location;

use super::extents::{extent_len_max, Tree};
use super::inode::now;
use super::ops::{check_name, FILE_SIZE_MAX_BYTES, LINK_MAX};
use super::{BlockRead, Mutator};
use crate::error::display_path;
use crate::{FsError, Timestamp, ROOT_INO};

/// `S_ISUID`, `S_ISGID`, `S_IXGRP`.
const S_ISUID: u16 = 0o4000;
const S_ISGID: u16 = 0o2000;
const S_IXGRP: u16 = 0o0010;

/// Attributes to change; `None` keeps the current value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// Permission bits (`0o7777`; the file type is kept).
    pub mode: Option<u16>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: Option<Timestamp>,
    pub mtime: Option<Timestamp>,
    /// Normally `None`: ctime becomes now whenever anything changes.
    pub ctime: Option<Timestamp>,
}

/// The directory-entry file type of `inode`.
fn dirent_type(inode: &Inode) -> u8 {
    match inode.mode & S_IFMT {
        S_IFREG => file_type::REG_FILE,
        S_IFDIR => file_type::DIR,
        S_IFLNK => file_type::SYMLINK,
        0x2000 => file_type::CHRDEV,
        0x6000 => file_type::BLKDEV,
        0x1000 => file_type::FIFO,
        0xC000 => file_type::SOCK,
        _ => file_type::UNKNOWN,
    }
}

/// The kernel's `ext4_dec_count` for a directory losing a subdirectory.
fn dec_dir_links(dir: &mut Inode) {
    if dir.links_count > 2 {
        dir.links_count -= 1;
    }
}

impl Mutator {
    /// Renames `old_name` in `old_parent` to `new_name` in `new_parent` (see the module doc).
    pub fn rename(
        &mut self,
        r: &mut dyn BlockRead,
        old_parent: u32,
        old_name: &[u8],
        new_parent: u32,
        new_name: &[u8],
    ) -> Result<(), FsError> {
        self.atomic(r, |m, r| {
            m.rename_op(r, old_parent, old_name, new_parent, new_name)
        })
    }

    fn rename_op(
        &mut self,
        r: &mut dyn BlockRead,
        old_parent: u32,
        old_name: &[u8],
        new_parent: u32,
        new_name: &[u8],
    ) -> Result<(), FsError> {
        check_name(old_name)?;
        check_name(new_name)?;
        let odir = self.load_dir(r, old_parent)?;
        let ndir = self.load_dir(r, new_parent)?;
        let (src, ft) = self
            .dir_lookup(r, &odir, old_name)?
            .ok_or_else(|| FsError::NotFound {
                path: display_path(old_name),
            })?;
        let target = self.dir_lookup(r, &ndir, new_name)?.map(|(t, _)| t);
        if target == Some(src) {
            return Ok(());
        }
        let mut inode = self.load_inode(r, src)?;
        let is_dir = inode.is_dir();
        if is_dir && old_parent != new_parent {
            self.check_not_within(r, src, new_parent)?;
        }
        let target = match target {
            Some(t) => Some(self.load_inode(r, t)?),
            None => None,
        };
        if let Some(t) = &target {
            self.check_replace(r, is_dir, t, new_name)?;
        } else if is_dir && old_parent != new_parent {
            self.check_can_inc_links(&ndir)?;
        }
        let t = now();
        if target.is_some() {
            self.dir_remove(r, &ndir, new_name)?;
        }
        let mut ndir = self.load_dir(r, new_parent)?;
        let entry = NewDirEntry {
            inode: src,
            file_type: ft,
            name: new_name,
        };
        self.dir_add(r, &mut ndir, &entry)?;
        (ndir.mtime, ndir.ctime) = (t, t);
        self.store_inode(r, &ndir, false)?;
        let mut odir = self.load_dir(r, old_parent)?;
        self.dir_remove(r, &odir, old_name)?;
        (odir.mtime, odir.ctime) = (t, t);
        if is_dir {
            dec_dir_links(&mut odir);
        }
        self.store_inode(r, &odir, false)?;
        if is_dir {
            if old_parent != new_parent {
                self.dir_set_dotdot(r, &inode, new_parent)?;
            }
            if target.is_none() {
                let mut ndir = self.load_dir(r, new_parent)?;
                self.inc_links(&mut ndir)?;
                self.store_inode(r, &ndir, false)?;
            }
        }
        inode.ctime = t;
        self.store_inode(r, &inode, false)?;
        match target {
            Some(t) if t.is_dir() => self.release_inode(r, t, true),
            Some(mut victim) => {
                victim.links_count = victim.links_count.saturating_sub(1);
                victim.ctime = t;
                if victim.links_count > 0 {
                    self.store_inode(r, &victim, false)
                } else {
                    self.release_inode(r, victim, false)
                }
            }
            None => Ok(()),
        }
    }

    /// Whether a `src` (a directory iff `src_is_dir`) may replace `target` (module doc).
    fn check_replace(
        &mut self,
        r: &mut dyn BlockRead,
        src_is_dir: bool,
        target: &Inode,
        new_name: &[u8],
    ) -> Result<(), FsError> {
        match (src_is_dir, target.is_dir()) {
            (true, false) => Err(FsError::NotADirectory {
                path: display_path(new_name),
            }),
            (false, true) => Err(FsError::IsADirectory { ino: target.ino }),
            (true, true) if self.dir_count(r, target)? != 0 => {
                Err(FsError::NotEmpty { ino: target.ino })
            }
            _ => Ok(()),
        }
    }

    /// Refuses `dir` when it is `ino` or one of its ancestors (walking `..` to the root).
    fn check_not_within(
        &mut self,
        r: &mut dyn BlockRead,
        ino: u32,
        dir: u32,
    ) -> Result<(), FsError> {
        let mut cur = dir;
        for _ in 0..=self.sb.inodes_count {
            if cur == ino {
                return Err(FsError::InvalidArgument {
                    what: "a directory cannot move into its own subtree",
                });
            }
            if cur == ROOT_INO {
                return Ok(());
            }
            let d = self.load_dir(r, cur)?;
            cur = self.dir_dotdot(r, &d)?;
        }
        Err(FsError::Corrupt {
            at: Location::Inode { ino: dir },
            what: "`..` chain does not reach the root",
        })
    }

    /// Adds the name `name` in `new_parent` for non-directory `ino` (see the module doc).
    pub fn link(
        &mut self,
        r: &mut dyn BlockRead,
        ino: u32,
        new_parent: u32,
        name: &[u8],
    ) -> Result<(), FsError> {
        self.atomic(r, |m, r| m.link_op(r, ino, new_parent, name))
    }

    fn link_op(
        &mut self,
        r: &mut dyn BlockRead,
        ino: u32,
        new_parent: u32,
        name: &[u8],
    ) -> Result<(), FsError> {
        check_name(name)?;
        let mut inode = self.load_inode(r, ino)?;
        if inode.is_dir() {
            return Err(FsError::NotPermitted {
                ino,
                what: "hard link to a directory",
            });
        }
        if inode.links_count == 0 {
            return Err(FsError::NotFound {
                path: format!("inode {ino}"),
            });
        }
        if inode.links_count >= LINK_MAX {
            return Err(FsError::TooManyLinks { ino });
        }
        let mut dir = self.load_dir(r, new_parent)?;
        if self.dir_lookup(r, &dir, name)?.is_some() {
            return Err(FsError::Exists {
                name: display_path(name),
            });
        }
        let entry = NewDirEntry {
            inode: ino,
            file_type: dirent_type(&inode),
            name,
        };
        self.dir_add(r, &mut dir, &entry)?;
        let t = now();
        (dir.mtime, dir.ctime) = (t, t);
        self.store_inode(r, &dir, false)?;
        inode.links_count += 1;
        inode.ctime = t;
        self.store_inode(r, &inode, false)
    }

    /// Unlinks `name` from `parent` while the file is open: at the last link the inode goes on
    /// the orphan list instead of being freed, and its number is returned (the caller calls
    /// [`Mutator::release_orphan`] at the last close). `None`: links remain, nothing to do.
    pub fn unlink_open(
        &mut self,
        r: &mut dyn BlockRead,
        parent: u32,
        name: &[u8],
    ) -> Result<Option<u32>, FsError> {
        self.atomic(r, |m, r| {
            let mut inode = m.unlink_entry(r, parent, name)?;
            if inode.links_count > 0 {
                m.store_inode(r, &inode, false)?;
                return Ok(None);
            }
            inode.dtime = m.sb.last_orphan;
            m.sb.last_orphan = inode.ino;
            m.sb_dirty = true;
            m.store_inode(r, &inode, false)?;
            Ok(Some(inode.ino))
        })
    }

    /// The inodes on the orphan list, head first.
    pub fn orphans(&mut self, r: &mut dyn BlockRead) -> Result<Vec<u32>, FsError> {
        let mut out = Vec::new();
        let mut cur = self.sb.last_orphan;
        while cur != 0 {
            self.check_orphan_number(cur, out.len())?;
            out.push(cur);
            cur = self.load_inode(r, cur)?.dtime;
        }
        Ok(out)
    }

    /// `ino` must be a plausible list entry, met as the `step`-th.
    fn check_orphan_number(&self, ino: u32, step: usize) -> Result<(), FsError> {
        if ino < self.sb.first_ino || ino > self.sb.inodes_count {
            return Err(FsError::Corrupt {
                at: Location::Superblock,
                what: "orphan list names a reserved or out-of-range inode",
            });
        }
        if step as u64 >= u64::from(self.sb.inodes_count) {
            return Err(FsError::Corrupt {
                at: Location::Superblock,
                what: "orphan list has a cycle",
            });
        }
        Ok(())
    }

    /// Takes orphan `ino` off the list and frees it (see the module doc).
    pub fn release_orphan(&mut self, r: &mut dyn BlockRead, ino: u32) -> Result<(), FsError> {
        self.atomic(r, |m, r| m.release_orphan_op(r, ino))
    }

    fn release_orphan_op(&mut self, r: &mut dyn BlockRead, ino: u32) -> Result<(), FsError> {
        let list = self.orphans(r)?;
        let pos = list
            .iter()
            .position(|&o| o == ino)
            .ok_or(FsError::InvalidArgument {
                what: "inode is not on the orphan list",
            })?;
        let mut inode = self.load_inode(r, ino)?;
        let next = inode.dtime;
        match pos.checked_sub(1).and_then(|p| list.get(p)) {
            None => {
                self.sb.last_orphan = next;
                self.sb_dirty = true;
            }
            Some(&prev) => {
                let mut prev = self.load_inode(r, prev)?;
                prev.dtime = next;
                self.store_inode(r, &prev, false)?;
            }
        }
        if inode.links_count == 0 {
            let is_dir = inode.is_dir();
            return self.release_inode(r, inode, is_dir);
        }
        // A truncate orphan (the kernel's): cut to the size and keep.
        inode.dtime = 0;
        if inode.uses_extents() {
            let keep =
                u32::try_from(inode.size_bytes.div_ceil(BLOCK_SIZE as u64)).unwrap_or(u32::MAX);
            let mut tree = Tree::load(self, r, &inode)?;
            self.free_tree_from(r, &mut inode, &mut tree, keep)?;
        }
        self.store_inode(r, &inode, false)
    }

    /// Frees every inode on the orphan list (mount-time cleanup, see the module doc); returns
    /// how many.
    pub fn process_orphans(&mut self, r: &mut dyn BlockRead) -> Result<usize, FsError> {
        self.atomic(r, |m, r| {
            let mut n = 0;
            while m.sb.last_orphan != 0 {
                m.check_orphan_number(m.sb.last_orphan, n)?;
                m.release_orphan_op(r, m.sb.last_orphan)?;
                n += 1;
            }
            Ok(n)
        })
    }

    /// chmod/chown/utimes of `ino` (see the module doc).
    pub fn set_attr(
        &mut self,
        r: &mut dyn BlockRead,
        ino: u32,
        attr: &SetAttr,
    ) -> Result<(), FsError> {
        self.atomic(r, |m, r| {
            let mut inode = m.load_inode(r, ino)?;
            if *attr == SetAttr::default() {
                return Ok(());
            }
            if let Some(mode) = attr.mode {
                inode.mode = (inode.mode & S_IFMT) | (mode & !S_IFMT);
            } else if (attr.uid.is_some() || attr.gid.is_some()) && !inode.is_dir() {
                inode.mode &= !S_ISUID;
                if inode.mode & S_IXGRP != 0 {
                    inode.mode &= !S_ISGID;
                }
            }
            inode.uid = attr.uid.unwrap_or(inode.uid);
            inode.gid = attr.gid.unwrap_or(inode.gid);
            inode.atime = attr.atime.unwrap_or(inode.atime);
            inode.mtime = attr.mtime.unwrap_or(inode.mtime);
            inode.ctime = attr.ctime.unwrap_or_else(now);
            m.store_inode(r, &inode, false)
        })
    }

    /// Preallocates `[offset, offset + len)` of regular file `ino` (see the module doc).
    pub fn fallocate(
        &mut self,
        r: &mut dyn BlockRead,
        ino: u32,
        offset_bytes: u64,
        len_bytes: u64,
        keep_size: bool,
    ) -> Result<(), FsError> {
        self.atomic(r, |m, r| {
            m.fallocate_op(r, ino, offset_bytes, len_bytes, keep_size)
        })
    }

    fn fallocate_op(
        &mut self,
        r: &mut dyn BlockRead,
        ino: u32,
        offset_bytes: u64,
        len_bytes: u64,
        keep_size: bool,
    ) -> Result<(), FsError> {
        let mut inode = self.load_inode(r, ino)?;
        if inode.is_dir() {
            return Err(FsError::IsADirectory { ino });
        }
        if !inode.is_regular() {
            return Err(FsError::NotARegularFile { ino });
        }
        if len_bytes == 0 {
            return Err(FsError::InvalidArgument {
                what: "fallocate of zero bytes",
            });
        }
        let end = offset_bytes
            .checked_add(len_bytes)
            .filter(|&e| e <= FILE_SIZE_MAX_BYTES)
            .ok_or(FsError::FileTooBig { ino })?;
        let bs = BLOCK_SIZE as u64;
        let mut tree = Tree::load(self, r, &inode)?;
        let mut logical = offset_bytes / bs;
        let last = (end - 1) / bs;
        while logical <= last {
            let l32 = logical as u32;
            if let Some(e) = tree.find(l32) {
                logical = u64::from(e.first_logical_block) + u64::from(e.len_blocks);
                continue;
            }
            let mut run = 1u32;
            while u64::from(run) <= last - logical
                && run < u32::from(extent_len_max(true))
                && tree.find(l32 + run).is_none()
            {
                run += 1;
            }
            let goal = tree.before(l32).map_or_else(
                || self.goal_for_file_data(ino),
                |e| e.start_block + u64::from(l32 - e.first_logical_block),
            );
            let (start, got) = self.alloc_blocks(r, goal, run)?;
            let extent = Extent {
                first_logical_block: l32,
                len_blocks: got as u16,
                start_block: start,
                unwritten: true,
            };
            self.edit_tree(r, &mut inode, &mut tree, start + u64::from(got), |t, a| {
                t.insert(extent, a)
            })?;
            logical += u64::from(got);
        }
        if !keep_size {
            inode.size_bytes = inode.size_bytes.max(end);
        }
        let t = now();
        (inode.mtime, inode.ctime) = (t, t);
        self.store_inode(r, &inode, false)
    }

    /// Turns the unwritten blocks among logical `first..=last` of `inode` written, splitting
    /// their extents; returns the converted ranges.
    pub(super) fn convert_unwritten(
        &mut self,
        r: &mut dyn BlockRead,
        inode: &mut Inode,
        tree: &mut Tree,
        first: u32,
        last: u32,
    ) -> Result<Vec<Range<u32>>, FsError> {
        let mut out = Vec::new();
        let mut logical = u64::from(first);
        while logical <= u64::from(last) {
            let Some(e) = tree.find(logical as u32) else {
                logical += 1;
                continue;
            };
            let e_first = u64::from(e.first_logical_block);
            let e_end = e_first + u64::from(e.len_blocks);
            if !e.unwritten {
                logical = e_end;
                continue;
            }
            let to = e_end.min(u64::from(last) + 1);
            let piece = |from: u64, to: u64, unwritten: bool| Extent {
                first_logical_block: from as u32,
                len_blocks: (to - from) as u16,
                start_block: e.start_block + (from - e_first),
                unwritten,
            };
            let pieces: Vec<Extent> = [
                piece(e_first, logical, true),
                piece(logical, to, false),
                piece(to, e_end, true),
            ]
            .into_iter()
            .filter(|p| p.len_blocks > 0)
            .collect();
            self.edit_tree(r, inode, tree, e.start_block, |t, a| {
                t.replace(e.first_logical_block, &pieces, a)
            })?;
            out.push(logical as u32..to as u32);
            logical = to;
        }
        Ok(out)
    }
}
