//! Inodes: where they live, decoding them, and what `stat` reports.
//!
//! # Role
//! Inode `ino` lives in group `(ino - 1) / s_inodes_per_group` at index
//! `(ino - 1) % s_inodes_per_group` of that group's inode table, `s_inode_size` bytes each. The
//! table block holding it is read synchronously and the record handed to [`Inode::decode`], which
//! verifies the inode checksum under `metadata_csum`.
//!
//! # Promises
//! - An inode number of 0 or beyond `s_inodes_count` is [`FsError::Corrupt`] (it came from a
//!   directory entry or a caller, never from nowhere).
//! - An all-zero or mode-0 record (a free inode) is refused as corrupt when referenced.

use aios_device::{Device, BLOCK_SIZE};
use aios_ext4::format::inode::Inode;
use aios_ext4::Location;

use crate::{Fs, FsError, IoCtx, Timestamp};

/// What `stat` reports about an inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub ino: u32,
    /// Type and permission bits (`S_IF*` | mode).
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub size_bytes: u64,
    pub nlink: u16,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    /// Creation time, when the inode is large enough to hold it.
    pub crtime: Option<Timestamp>,
    /// Space used in 512-byte sectors (`st_blocks`).
    pub blocks_512: u64,
}

impl Stat {
    pub(crate) fn of(inode: &Inode, block_size_bytes: u32) -> Stat {
        Stat {
            ino: inode.ino,
            mode: inode.mode,
            uid: inode.uid,
            gid: inode.gid,
            size_bytes: inode.size_bytes,
            nlink: inode.links_count,
            atime: inode.atime,
            mtime: inode.mtime,
            ctime: inode.ctime,
            crtime: inode.crtime,
            blocks_512: inode.blocks_512(block_size_bytes),
        }
    }
}

impl<D: Device> Fs<D> {
    /// Reads and verifies inode `ino`.
    pub fn read_inode(&self, io: &mut IoCtx<D::Queue>, ino: u32) -> Result<Inode, FsError> {
        let at = Location::Inode { ino };
        let corrupt = |what| FsError::Corrupt { at, what };
        let (group, index) = self
            .sb
            .inode_group_index(ino)
            .ok_or(corrupt("inode number out of range"))?;
        let desc = self
            .groups
            .get(group as usize)
            .ok_or(corrupt("inode in a group past the last"))?;
        let size = u64::from(self.sb.inode_size_bytes);
        let offset_bytes = u64::from(index) * size;
        let block = desc.inode_table_block + offset_bytes / BLOCK_SIZE as u64;
        let within = (offset_bytes % BLOCK_SIZE as u64) as usize;
        self.read_blocks(io, block, 1, at)?;
        let raw = io
            .page(0)
            .get(within..within + size as usize)
            .ok_or(corrupt("record crosses its inode table block"))?;
        let inode = Inode::decode(raw, ino, self.csum_seed)?;
        if inode.mode == 0 {
            return Err(corrupt("referenced inode is free (mode 0)"));
        }
        Ok(inode)
    }

    /// `stat` of inode `ino`.
    pub fn stat(&self, io: &mut IoCtx<D::Queue>, ino: u32) -> Result<Stat, FsError> {
        let inode = self.read_inode(io, ino)?;
        Ok(Stat::of(&inode, self.sb.block_size_bytes))
    }
}
