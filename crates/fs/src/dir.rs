//! Directories: scanning every block of a directory, linear or htree-indexed.
//!
//! # Role
//! A directory's blocks are found through its [`crate::ExtentMap`] and read one at a time. Names
//! live only in leaf blocks, so a linear scan over all blocks finds every entry of an indexed
//! (`dir_index`) directory too; its interior blocks are recognised and skipped
//! (see [`crate::htree`]).
//!
//! # Checks
//! - Leaf blocks: with `metadata_csum`, the 12-byte checksum tail ([`verify_dir_tail`]); every
//!   record through the validating [`dir_entries`] iterator.
//! - htree blocks: with `metadata_csum`, the `dx_tail` checksum; of a `dx_root`, only `.` and
//!   `..` are read as entries.
//! - A directory has no holes and no unwritten blocks below its size: either is corruption.
//!
//! # Promises
//! [`crate::Fs::read_dir`] returns the live entries (inode != 0) in on-disk order, without `.`
//! and `..`.

use aios_device::{Device, BLOCK_SIZE};
use aios_ext4::format::dir::{self as ext4_dir, dir_entries, verify_dir_tail};
use aios_ext4::format::inode::{Inode, EXT4_INDEX_FL};
use aios_ext4::Location;

use crate::htree::{looks_like_dx_node, verify_dx_tail, DxKind};
use crate::{Fs, FsError, IoCtx};

/// One live directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The name, raw bytes (ext4 names need not be UTF-8).
    pub name: Vec<u8>,
    pub ino: u32,
    /// `file_type` of the entry (`aios_ext4::format::dir::file_type`).
    pub file_type: u8,
}

impl<D: Device> Fs<D> {
    /// The entries of directory `ino`, without `.` and `..`.
    pub fn read_dir(&self, io: &mut IoCtx<D::Queue>, ino: u32) -> Result<Vec<DirEntry>, FsError> {
        let dir = self.read_inode(io, ino)?;
        if !dir.is_dir() {
            return Err(FsError::NotADirectory {
                path: format!("inode {ino}"),
            });
        }
        let mut out = Vec::new();
        self.scan_dir(io, &dir, |e| {
            if e.name != b"." && e.name != b".." {
                out.push(DirEntry {
                    name: e.name.to_vec(),
                    ino: e.inode,
                    file_type: e.file_type,
                });
            }
            false
        })?;
        Ok(out)
    }

    /// The inode number `name` refers to in directory `dir`, if it is there.
    pub(crate) fn find_entry(
        &self,
        io: &mut IoCtx<D::Queue>,
        dir: &Inode,
        name: &[u8],
    ) -> Result<Option<u32>, FsError> {
        let mut found = None;
        self.scan_dir(io, dir, |e| {
            if e.name == name {
                found = Some(e.inode);
            }
            found.is_some()
        })?;
        Ok(found)
    }

    /// Calls `visit` on every live entry of `dir` in on-disk order until it returns `true`.
    fn scan_dir<F>(
        &self,
        io: &mut IoCtx<D::Queue>,
        dir: &Inode,
        mut visit: F,
    ) -> Result<(), FsError>
    where
        F: FnMut(&ext4_dir::DirEntry<'_>) -> bool,
    {
        let map = self.extent_map(io, dir)?;
        let indexed = dir.flags & EXT4_INDEX_FL != 0;
        let seed = self.csum_seed.map(|s| dir.csum_seed(s));
        let blocks = dir.size_bytes.div_ceil(BLOCK_SIZE as u64);
        for logical in 0..blocks {
            let mapping = map
                .find(logical)
                .filter(|m| !m.unwritten)
                .ok_or(FsError::Corrupt {
                    at: Location::Inode { ino: dir.ino },
                    what: "directory has a hole or unwritten block below its size",
                })?;
            let physical = mapping.physical_block + (logical - mapping.logical_block);
            let at = Location::DirBlock {
                ino: dir.ino,
                block: physical,
            };
            self.read_blocks(io, physical, 1, at)?;
            let block = io.page(0);
            let (entries, limit) = if indexed && logical == 0 {
                if let Some(seed) = seed {
                    verify_dx_tail(block, DxKind::Root, at, seed)?;
                }
                // `.` and `..`; the `..` record spans the dx_root data up to the block end.
                (dir_entries(block, at, false), 2)
            } else if looks_like_dx_node(block) && (indexed || seed.is_none()) {
                if let Some(seed) = seed {
                    verify_dx_tail(block, DxKind::Node, at, seed)?;
                }
                continue;
            } else {
                if let Some(seed) = seed {
                    verify_dir_tail(block, at, seed)?;
                }
                (dir_entries(block, at, seed.is_some()), usize::MAX)
            };
            for entry in entries.take(limit) {
                let entry = entry?;
                if entry.is_live() && visit(&entry) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}
