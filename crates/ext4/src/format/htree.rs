//! htree (`dir_index`) interior blocks: `dx_root` (logical block 0 of an indexed directory) and
//! `dx_node`, with their `dx_tail` checksums.
//!
//! | Block | Layout (byte offsets) |
//! | --- | --- |
//! | `dx_root` | `.` dirent (12 bytes), `..` dirent with `rec_len` to the block end, `dx_root_info` at `0x18` (`reserved_zero` le32, `hash_version`, `info_length` = 8, `indirect_levels`, `unused_flags`), `dx_countlimit` at `0x20`, then `dx_entry`s |
//! | `dx_node` | fake dirent (inode 0, `rec_len` = block size, `name_len` 0) at `0x00`; `dx_countlimit` at `0x08`, then `dx_entry`s |
//! | `dx_entry` | `hash` le32, `block` le32 (logical block in the directory); the first entry's hash slot holds `dx_countlimit` (`limit` le16, `count` le16) |
//! | `dx_tail` | with `metadata_csum`, after `limit` entries: `dt_reserved` le32, `dt_checksum` le32 |
//!
//! The checksum is `crc32c_raw(inode seed, block[..count_offset + count * 8])` continued over
//! `dt_reserved` and four zero bytes (the kernel's `ext4_dx_csum`). With the tail, `limit` is
//! one entry less than fits (507 in a 4 KiB root, 510 in a node). Names are hashed by
//! [`super::hash`]; leaves are ordinary linear blocks ([`super::dir`]).

use super::bytes::{Reader, Writer};
use super::csum::crc32c_raw;
use super::dir::{file_type, DIRENT_HEADER_SIZE_BYTES};
use super::hash::DX_HASH_TEA;
use crate::error::{FormatError, Location, Result};

/// Offset of `dx_root_info` in a `dx_root` block.
pub const DX_ROOT_INFO: usize = 0x18;
const INFO_RESERVED_ZERO: usize = 0x0;
const INFO_HASH_VERSION: usize = 0x4;
const INFO_LENGTH: usize = 0x5;
const INFO_INDIRECT_LEVELS: usize = 0x6;
const INFO_UNUSED_FLAGS: usize = 0x7;
/// `info_length`: the size of `dx_root_info`.
pub const DX_ROOT_INFO_LENGTH_BYTES: u8 = 8;
/// Offset of `dx_countlimit` in a `dx_root` block.
pub const DX_ROOT_COUNTLIMIT: usize = 0x20;
/// Offset of `dx_countlimit` in a `dx_node` block.
pub const DX_NODE_COUNTLIMIT: usize = 0x8;
/// Size of a `dx_entry`.
pub const DX_ENTRY_SIZE_BYTES: usize = 8;
/// Size of `dx_tail`.
pub const DX_TAIL_SIZE_BYTES: usize = 8;
const DX_TAIL_CHECKSUM: usize = 4;
const CL_LIMIT: usize = 0x0;
const CL_COUNT: usize = 0x2;
const ENTRY_HASH: usize = 0x0;
const ENTRY_BLOCK: usize = 0x4;
/// Deepest `indirect_levels` (3 levels with `largedir`; this crate refuses `largedir`).
pub const DX_INDIRECT_LEVELS_MAX: u8 = 1;
// The `.` and `..` records of a dx_root.
const DOT_REC_LEN: u16 = 12;
const DOTDOT_OFFSET: usize = 12;

/// One index entry: names hashing at or above `hash` live under logical block `block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DxEntry {
    /// Lowest hash of the subtree (0 for the first entry, whose slot holds the count/limit).
    pub hash: u32,
    /// Logical block (within the directory) of the child.
    pub block: u32,
}

/// A decoded `dx_root` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DxRoot {
    /// Inode of `.` (the directory itself).
    pub dot_inode: u32,
    /// Inode of `..`.
    pub dotdot_inode: u32,
    /// `hash_version` as stored (0 legacy, 1 half_md4, 2 tea).
    pub hash_version: u8,
    /// `indirect_levels`: 0 = entries point at leaves, 1 = at `dx_node`s.
    pub indirect_levels: u8,
    /// `unused_flags` as stored.
    pub unused_flags: u8,
    /// `limit`: capacity in entries.
    pub limit: u16,
    /// The entries (`count` of them, at least one).
    pub entries: Vec<DxEntry>,
}

/// A decoded `dx_node` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DxNode {
    /// `limit`: capacity in entries.
    pub limit: u16,
    /// The entries (`count` of them, at least one).
    pub entries: Vec<DxEntry>,
}

/// Which interior block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DxKind {
    /// `dx_root`.
    Root,
    /// `dx_node`.
    Node,
}

impl DxKind {
    /// Offset of `dx_countlimit`.
    pub fn countlimit_offset(self) -> usize {
        match self {
            DxKind::Root => DX_ROOT_COUNTLIMIT,
            DxKind::Node => DX_NODE_COUNTLIMIT,
        }
    }

    /// `limit` for a block of `block_size_bytes` (`dx_root_limit`/`dx_node_limit`).
    pub fn limit(self, block_size_bytes: u32, has_csum_tail: bool) -> u16 {
        let space = (block_size_bytes as usize).saturating_sub(self.countlimit_offset());
        let tail = if has_csum_tail { DX_TAIL_SIZE_BYTES } else { 0 };
        u16::try_from(space.saturating_sub(tail) / DX_ENTRY_SIZE_BYTES).unwrap_or(u16::MAX)
    }
}

/// Decode `dx_countlimit` and the entries at `cl`; `limit` must fit the block (with the tail).
fn decode_entries(r: &Reader<'_>, cl: usize, has_csum_tail: bool) -> Result<(u16, Vec<DxEntry>)> {
    let limit = r.le16(cl + CL_LIMIT)?;
    let count = r.le16(cl + CL_COUNT)?;
    let tail = if has_csum_tail { DX_TAIL_SIZE_BYTES } else { 0 };
    r.require(cl + usize::from(limit) * DX_ENTRY_SIZE_BYTES + tail)?;
    if count == 0 || count > limit {
        return Err(r.out_of_range("dx_countlimit.count", count.into(), "zero or above limit"));
    }
    let mut entries: Vec<DxEntry> = Vec::with_capacity(count.into());
    for i in 0..usize::from(count) {
        let off = cl + i * DX_ENTRY_SIZE_BYTES;
        let hash = if i == 0 { 0 } else { r.le32(off + ENTRY_HASH)? };
        if entries.last().is_some_and(|prev| prev.hash > hash) {
            return Err(r.out_of_range("dx_entry.hash", hash.into(), "hashes not sorted"));
        }
        entries.push(DxEntry {
            hash,
            block: r.le32(off + ENTRY_BLOCK)?,
        });
    }
    Ok((limit, entries))
}

/// Write `dx_countlimit` and the entries at `cl`.
fn encode_entries(w: &mut Writer<'_>, cl: usize, limit: u16, entries: &[DxEntry]) -> Result<()> {
    let count = u16::try_from(entries.len()).unwrap_or(u16::MAX);
    if count == 0 || count > limit {
        return Err(w.out_of_range("dx_countlimit.count", count.into(), "zero or above limit"));
    }
    w.require(cl + usize::from(limit) * DX_ENTRY_SIZE_BYTES)?;
    let mut prev = 0u32;
    for (i, e) in entries.iter().enumerate() {
        let off = cl + i * DX_ENTRY_SIZE_BYTES;
        if i > 0 {
            if e.hash < prev {
                return Err(w.out_of_range("dx_entry.hash", e.hash.into(), "hashes not sorted"));
            }
            w.le32(off + ENTRY_HASH, e.hash)?;
        }
        prev = e.hash;
        w.le32(off + ENTRY_BLOCK, e.block)?;
    }
    w.le16(cl + CL_LIMIT, limit)?;
    w.le16(cl + CL_COUNT, count)
}

impl DxRoot {
    /// Decode the `dx_root` in `block`. With `inode_csum_seed = Some(seed)` (metadata_csum) the
    /// `dx_tail` is required and verified.
    pub fn decode(block: &[u8], at: Location, inode_csum_seed: Option<u32>) -> Result<Self> {
        let r = Reader::new(block, at);
        let info = DX_ROOT_INFO;
        if r.u8(info + INFO_LENGTH)? != DX_ROOT_INFO_LENGTH_BYTES {
            return Err(r.out_of_range(
                "dx_root_info.info_length",
                r.u8(info + INFO_LENGTH)?.into(),
                "must be 8",
            ));
        }
        let hash_version = r.u8(info + INFO_HASH_VERSION)?;
        if hash_version > DX_HASH_TEA {
            return Err(r.out_of_range(
                "dx_root_info.hash_version",
                hash_version.into(),
                "only legacy, half_md4 and tea",
            ));
        }
        let indirect_levels = r.u8(info + INFO_INDIRECT_LEVELS)?;
        if indirect_levels > DX_INDIRECT_LEVELS_MAX {
            return Err(r.out_of_range(
                "dx_root_info.indirect_levels",
                indirect_levels.into(),
                "more than 2 levels need largedir",
            ));
        }
        if let Some(seed) = inode_csum_seed {
            verify_dx_tail(block, DxKind::Root, at, seed)?;
        }
        let (limit, entries) = decode_entries(&r, DX_ROOT_COUNTLIMIT, inode_csum_seed.is_some())?;
        Ok(DxRoot {
            dot_inode: r.le32(0)?,
            dotdot_inode: r.le32(DOTDOT_OFFSET)?,
            hash_version,
            indirect_levels,
            unused_flags: r.u8(info + INFO_UNUSED_FLAGS)?,
            limit,
            entries,
        })
    }

    /// Encode this root into `block` (the `.` and `..` records, `dx_root_info`, the entries;
    /// bytes past the last entry are kept) and, with `inode_csum_seed`, its `dx_tail`.
    pub fn encode_into(
        &self,
        block: &mut [u8],
        at: Location,
        inode_csum_seed: Option<u32>,
    ) -> Result<()> {
        let mut w = Writer::new(block, at);
        let dotdot_rec = w.len().saturating_sub(DOTDOT_OFFSET);
        let dotdot_rec = u16::try_from(dotdot_rec)
            .map_err(|_| w.out_of_range("rec_len", dotdot_rec as u64, "exceeds 16 bits"))?;
        put_dot(&mut w, 0, self.dot_inode, DOT_REC_LEN, b".")?;
        put_dot(&mut w, DOTDOT_OFFSET, self.dotdot_inode, dotdot_rec, b"..")?;
        let info = DX_ROOT_INFO;
        w.le32(info + INFO_RESERVED_ZERO, 0)?;
        w.u8(info + INFO_HASH_VERSION, self.hash_version)?;
        w.u8(info + INFO_LENGTH, DX_ROOT_INFO_LENGTH_BYTES)?;
        w.u8(info + INFO_INDIRECT_LEVELS, self.indirect_levels)?;
        w.u8(info + INFO_UNUSED_FLAGS, self.unused_flags)?;
        encode_entries(&mut w, DX_ROOT_COUNTLIMIT, self.limit, &self.entries)?;
        if let Some(seed) = inode_csum_seed {
            set_dx_tail(block, DxKind::Root, at, seed)?;
        }
        Ok(())
    }
}

/// The `.` or `..` record of a dx_root.
fn put_dot(w: &mut Writer<'_>, off: usize, inode: u32, rec_len: u16, name: &[u8]) -> Result<()> {
    w.le32(off, inode)?;
    w.le16(off + 4, rec_len)?;
    w.u8(off + 6, name.len() as u8)?;
    w.u8(off + 7, file_type::DIR)?;
    w.bytes_mut(off + DIRENT_HEADER_SIZE_BYTES, 4)?.fill(0);
    w.put(off + DIRENT_HEADER_SIZE_BYTES, name)
}

impl DxNode {
    /// Decode the `dx_node` in `block` (its fake dirent must span the block). With
    /// `inode_csum_seed = Some(seed)` the `dx_tail` is required and verified.
    pub fn decode(block: &[u8], at: Location, inode_csum_seed: Option<u32>) -> Result<Self> {
        let r = Reader::new(block, at);
        let rec_len = r.le16(4)?;
        if r.le32(0)? != 0 || usize::from(rec_len) != block.len() {
            return Err(r.out_of_range(
                "rec_len",
                rec_len.into(),
                "a dx_node starts with an empty record spanning the block",
            ));
        }
        if let Some(seed) = inode_csum_seed {
            verify_dx_tail(block, DxKind::Node, at, seed)?;
        }
        let (limit, entries) = decode_entries(&r, DX_NODE_COUNTLIMIT, inode_csum_seed.is_some())?;
        Ok(DxNode { limit, entries })
    }

    /// Encode this node into `block` (fake dirent, entries; later bytes kept) and, with
    /// `inode_csum_seed`, its `dx_tail`.
    pub fn encode_into(
        &self,
        block: &mut [u8],
        at: Location,
        inode_csum_seed: Option<u32>,
    ) -> Result<()> {
        let mut w = Writer::new(block, at);
        let len = w.len();
        let rec = u16::try_from(len)
            .map_err(|_| w.out_of_range("rec_len", len as u64, "exceeds 16 bits"))?;
        w.le32(0, 0)?;
        w.le16(4, rec)?;
        w.le16(6, 0)?;
        encode_entries(&mut w, DX_NODE_COUNTLIMIT, self.limit, &self.entries)?;
        if let Some(seed) = inode_csum_seed {
            set_dx_tail(block, DxKind::Node, at, seed)?;
        }
        Ok(())
    }
}

/// Where the tail is and what the checksum covers: `(count_offset, count, tail_offset)`.
fn tail_layout(r: &Reader<'_>, kind: DxKind) -> Result<(usize, usize, usize)> {
    let cl = match kind {
        DxKind::Root => DX_ROOT_INFO + usize::from(r.u8(DX_ROOT_INFO + INFO_LENGTH)?),
        DxKind::Node => DX_NODE_COUNTLIMIT,
    };
    let limit = usize::from(r.le16(cl + CL_LIMIT)?);
    let count = usize::from(r.le16(cl + CL_COUNT)?);
    let tail = cl + limit * DX_ENTRY_SIZE_BYTES;
    r.require(tail + DX_TAIL_SIZE_BYTES)?;
    if count > limit {
        return Err(r.out_of_range("dx_countlimit.count", count as u64, "above limit"));
    }
    Ok((cl, count, tail))
}

/// `ext4_dx_csum`: see the module doc.
fn dx_csum(r: &Reader<'_>, kind: DxKind, seed: u32) -> Result<(u32, usize)> {
    let (cl, count, tail) = tail_layout(r, kind)?;
    let crc = crc32c_raw(seed, r.bytes(0, cl + count * DX_ENTRY_SIZE_BYTES)?);
    let crc = crc32c_raw(crc, r.bytes(tail, DX_TAIL_CHECKSUM)?);
    Ok((crc32c_raw(crc, &[0; 4]), tail))
}

/// Verify the `dx_tail` checksum of an interior block (`inode_csum_seed`: the directory's seed).
pub fn verify_dx_tail(
    block: &[u8],
    kind: DxKind,
    at: Location,
    inode_csum_seed: u32,
) -> Result<()> {
    let r = Reader::new(block, at);
    let (computed, tail) = dx_csum(&r, kind, inode_csum_seed)?;
    let stored = r.le32(tail + DX_TAIL_CHECKSUM)?;
    if computed != stored {
        return Err(FormatError::ChecksumMismatch {
            at,
            expected: computed,
            found: stored,
        });
    }
    Ok(())
}

/// Write the `dx_tail` (reserved 0, checksum) of an interior block.
pub fn set_dx_tail(
    block: &mut [u8],
    kind: DxKind,
    at: Location,
    inode_csum_seed: u32,
) -> Result<()> {
    let mut w = Writer::new(block, at);
    let (_, _, tail) = tail_layout(&w.reader(), kind)?;
    w.le32(tail, 0)?;
    let (crc, _) = dx_csum(&w.reader(), kind, inode_csum_seed)?;
    w.le32(tail + DX_TAIL_CHECKSUM, crc)
}

/// The index entry whose subtree holds `hash` (the last entry with `entry.hash <= hash`).
pub fn dx_find(entries: &[DxEntry], hash: u32) -> Option<&DxEntry> {
    entries
        .iter()
        .take_while(|e| e.hash <= hash)
        .last()
        .or(entries.first())
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: Location = Location::DirBlock { ino: 12, block: 99 };

    #[test]
    fn root_and_node_round_trip_with_tails() {
        let root = DxRoot {
            dot_inode: 12,
            dotdot_inode: 2,
            hash_version: 1,
            indirect_levels: 0,
            unused_flags: 0,
            limit: DxKind::Root.limit(4096, true),
            entries: vec![
                DxEntry { hash: 0, block: 1 },
                DxEntry {
                    hash: 0x8000_0000,
                    block: 2,
                },
            ],
        };
        assert_eq!(root.limit, 507);
        let mut block = vec![0u8; 4096];
        root.encode_into(&mut block, AT, Some(9)).unwrap();
        assert_eq!(DxRoot::decode(&block, AT, Some(9)).unwrap(), root);
        assert!(matches!(
            DxRoot::decode(&block, AT, Some(8)),
            Err(FormatError::ChecksumMismatch { .. })
        ));
        let node = DxNode {
            limit: DxKind::Node.limit(4096, true),
            entries: vec![DxEntry { hash: 0, block: 3 }],
        };
        assert_eq!(node.limit, 510);
        node.encode_into(&mut block, AT, Some(9)).unwrap();
        assert_eq!(DxNode::decode(&block, AT, Some(9)).unwrap(), node);
        assert_eq!(dx_find(&root.entries, 5).unwrap().block, 1);
        assert_eq!(dx_find(&root.entries, 0x9000_0000).unwrap().block, 2);
        let unsorted = DxNode {
            limit: 510,
            entries: vec![
                DxEntry { hash: 0, block: 3 },
                DxEntry { hash: 7, block: 4 },
                DxEntry { hash: 6, block: 5 },
            ],
        };
        assert!(unsorted.encode_into(&mut block, AT, None).is_err());
        let empty = DxNode {
            limit: 510,
            entries: vec![],
        };
        assert!(empty.encode_into(&mut block, AT, None).is_err());
    }
}
