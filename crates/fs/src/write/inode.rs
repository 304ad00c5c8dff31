//! Inode records in the cached inode-table blocks: read, write, and fresh inodes.
//!
//! # Role
//! Inode `ino` is `s_inode_size` bytes at index `(ino - 1) % s_inodes_per_group` of its group's
//! table. [`Mutator::load_inode`] decodes (checksum verified) from the cached table block;
//! [`Mutator::store_inode`] encodes every modelled field back into the same record and reseals
//! its checksum (bytes this layer does not model, such as in-inode xattrs, are kept).
//! [`Mutator::fresh_inode`] builds the record of a newly allocated inode from zeros: the given
//! mode and link count, all four times now (nanoseconds kept), `i_extra_isize` =
//! `s_want_extra_isize`, a new generation, and (unless a fast symlink) `EXTENTS_FL` with an empty
//! extent root.

use std::time::{SystemTime, UNIX_EPOCH};

use aios_device::BLOCK_SIZE;
use aios_ext4::format::extent::{ExtentNode, ROOT_ENTRIES_MAX};
use aios_ext4::format::inode::{Inode, EXT4_EXTENTS_FL, I_BLOCK_SIZE_BYTES};
use aios_ext4::Location;

use super::{BlockRead, Mutator};
use crate::{FsError, Timestamp};

/// `i_extra_isize` used when the superblock asks for none.
const EXTRA_ISIZE_DEFAULT_BYTES: u16 = 32;

/// The current time with nanoseconds.
pub(crate) fn now() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        secs: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: d.subsec_nanos(),
    }
}

impl Mutator {
    /// Table block and byte offset of inode `ino`'s record.
    fn inode_slot(&self, ino: u32) -> Result<(u64, usize), FsError> {
        let at = Location::Inode { ino };
        let (group, index) = self.sb.inode_group_index(ino).ok_or(FsError::Corrupt {
            at,
            what: "inode number out of range",
        })?;
        let desc = self.desc(group)?;
        let offset_bytes = u64::from(index) * u64::from(self.sb.inode_size_bytes);
        Ok((
            desc.inode_table_block + offset_bytes / BLOCK_SIZE as u64,
            (offset_bytes % BLOCK_SIZE as u64) as usize,
        ))
    }

    /// Reads and verifies inode `ino`; a free record (mode 0) is corrupt when referenced.
    pub(crate) fn load_inode(&mut self, r: &mut dyn BlockRead, ino: u32) -> Result<Inode, FsError> {
        let at = Location::Inode { ino };
        let (block, within) = self.inode_slot(ino)?;
        let size = usize::from(self.sb.inode_size_bytes);
        let raw = self.meta.get(r, block, at)?;
        let rec = raw.get(within..within + size).ok_or(FsError::Corrupt {
            at,
            what: "record crosses its inode table block",
        })?;
        let inode = Inode::decode(rec, ino, self.csum_seed)?;
        if inode.mode == 0 {
            return Err(FsError::Corrupt {
                at,
                what: "referenced inode is free (mode 0)",
            });
        }
        Ok(inode)
    }

    /// Writes `inode` into its record (checksum resealed). With `fresh`, the record is zeroed
    /// first (a newly allocated inode must not inherit a former inode's bytes).
    pub(crate) fn store_inode(
        &mut self,
        r: &mut dyn BlockRead,
        inode: &Inode,
        fresh: bool,
    ) -> Result<(), FsError> {
        let at = Location::Inode { ino: inode.ino };
        let (block, within) = self.inode_slot(inode.ino)?;
        let size = usize::from(self.sb.inode_size_bytes);
        let seed = self.csum_seed;
        let raw = self.meta.get_mut(r, block, at)?;
        let rec = raw.get_mut(within..within + size).ok_or(FsError::Corrupt {
            at,
            what: "record crosses its inode table block",
        })?;
        if fresh {
            rec.fill(0);
        }
        inode.encode_into(rec, seed)?;
        Ok(())
    }

    /// A new inode record (not yet stored) for `ino`; see the module doc.
    pub(crate) fn fresh_inode(&mut self, ino: u32, mode: u16, links: u16, extents: bool) -> Inode {
        let t = now();
        self.next_generation = self
            .next_generation
            .wrapping_mul(1_664_525)
            .wrapping_add(1_013_904_223);
        let extra = if self.sb.inode_size_bytes > 128 {
            match self.sb.want_extra_isize {
                0 => EXTRA_ISIZE_DEFAULT_BYTES,
                n => n,
            }
            .min(self.sb.inode_size_bytes - 128)
        } else {
            0
        };
        let mut block = [0u8; I_BLOCK_SIZE_BYTES];
        if extents {
            // An empty leaf root: 12-byte header, room for four extents. Cannot fail: the
            // buffer is exactly the root's size.
            let _ = ExtentNode::leaf(Vec::new(), ROOT_ENTRIES_MAX)
                .encode_into(&mut block, Location::ExtentRoot { ino });
        }
        Inode {
            ino,
            mode,
            uid: 0,
            gid: 0,
            size_bytes: 0,
            atime: t,
            ctime: t,
            mtime: t,
            crtime: (extra >= 24).then_some(t),
            dtime: 0,
            links_count: links,
            blocks_raw: 0,
            flags: if extents { EXT4_EXTENTS_FL } else { 0 },
            block,
            generation: self.next_generation,
            file_acl_block: 0,
            extra_isize_bytes: extra,
        }
    }
}
