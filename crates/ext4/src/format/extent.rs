//! Extent tree nodes: the 60-byte root in `i_block`, and 4 KiB index/leaf blocks below it.
//!
//! Every node starts with a 12-byte header (magic `0xF30A`, entries, max, depth); 12-byte entries
//! follow. Interior nodes (depth > 0) hold [`ExtentIndex`] entries pointing at child blocks; leaves
//! (depth 0) hold [`Extent`]s. A leaf length above 32768 marks an unwritten (preallocated) extent
//! whose true length is `len - 32768`; it reads as zeros. With `metadata_csum`, a node stored in
//! its own block has a 4-byte tail right after `eh_max` entries:
//! `crc32c_raw(inode_seed, node bytes before the tail)`.
//!
//! [`ExtentNode::encode_into`] writes a node (header and entries; bytes past the last entry are
//! kept) into the 60-byte root or a node block; [`set_extent_tail`] then seals a node block.

use super::bytes::{hi32, lo16, lo32, Reader, Writer};
use super::csum::crc32c_raw;
use crate::error::{FormatError, Location, Result};

/// `eh_magic`.
pub const EXT4_EXT_MAGIC: u16 = 0xF30A;
/// Size of the header and of each entry.
pub const EXTENT_ENTRY_SIZE_BYTES: usize = 12;
/// Maximum tree depth (`EXT4_MAX_EXTENT_DEPTH`).
pub const EXTENT_DEPTH_MAX: u16 = 5;
/// Largest initialised extent; `ee_len` above this marks an unwritten extent.
pub const EXT_INIT_MAX_LEN_BLOCKS: u16 = 32768;
/// Size of the checksum tail of a node block.
pub const EXTENT_TAIL_SIZE_BYTES: usize = 4;

// Header fields.
const EH_MAGIC: usize = 0x0;
const EH_ENTRIES: usize = 0x2;
const EH_MAX: usize = 0x4;
const EH_DEPTH: usize = 0x6;
const EH_GENERATION: usize = 0x8;
// Index entry fields.
const EI_BLOCK: usize = 0x0;
const EI_LEAF_LO: usize = 0x4;
const EI_LEAF_HI: usize = 0x8;
// Leaf entry fields.
const EE_BLOCK: usize = 0x0;
const EE_LEN: usize = 0x4;
const EE_START_HI: usize = 0x6;
const EE_START_LO: usize = 0x8;

/// A node header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtentHeader {
    /// Valid entries.
    pub entries: u16,
    /// Capacity in entries.
    pub max: u16,
    /// 0 for a leaf; otherwise the height of the subtree.
    pub depth: u16,
    /// `eh_generation`.
    pub generation: u32,
}

/// An interior entry: the child covering logical blocks from `first_logical_block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtentIndex {
    /// First logical block covered by the child.
    pub first_logical_block: u32,
    /// Physical block of the child node.
    pub child_block: u64,
}

/// A leaf entry: `len_blocks` logical blocks from `first_logical_block` map to physical blocks
/// from `start_block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// First logical block.
    pub first_logical_block: u32,
    /// Length in blocks (1..=32768), unwritten flag removed.
    pub len_blocks: u16,
    /// First physical block.
    pub start_block: u64,
    /// Preallocated but never written: reads as zeros.
    pub unwritten: bool,
}

/// The entries of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtentEntries {
    /// Depth > 0.
    Index(Vec<ExtentIndex>),
    /// Depth 0.
    Leaf(Vec<Extent>),
}

/// One decoded extent tree node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtentNode {
    /// The header.
    pub header: ExtentHeader,
    /// Its entries, sorted by logical block and checked not to overlap.
    pub entries: ExtentEntries,
}

impl ExtentNode {
    /// Decode the node in `buf` (the 60-byte `i_block`, or a whole node block), stored at `at`.
    /// Child and physical blocks must lie below `blocks_count`. Does not verify the tail
    /// checksum: see [`verify_extent_tail`].
    pub fn decode(buf: &[u8], at: Location, blocks_count: u64) -> Result<Self> {
        let r = Reader::new(buf, at);
        let magic = r.le16(EH_MAGIC)?;
        if magic != EXT4_EXT_MAGIC {
            return Err(FormatError::BadMagic {
                at,
                expected: EXT4_EXT_MAGIC.into(),
                found: magic.into(),
            });
        }
        let header = ExtentHeader {
            entries: r.le16(EH_ENTRIES)?,
            max: r.le16(EH_MAX)?,
            depth: r.le16(EH_DEPTH)?,
            generation: r.le32(EH_GENERATION)?,
        };
        let capacity = (buf.len() / EXTENT_ENTRY_SIZE_BYTES).saturating_sub(1);
        if header.max == 0 || usize::from(header.max) > capacity {
            return Err(r.out_of_range(
                "eh_max",
                header.max.into(),
                "zero or larger than the node",
            ));
        }
        if header.entries > header.max {
            return Err(r.out_of_range("eh_entries", header.entries.into(), "exceeds eh_max"));
        }
        if header.depth > EXTENT_DEPTH_MAX {
            return Err(r.out_of_range("eh_depth", header.depth.into(), "deeper than 5"));
        }
        let entry_offsets = (1..=usize::from(header.entries)).map(|i| i * EXTENT_ENTRY_SIZE_BYTES);
        let entries = if header.depth > 0 {
            let mut out: Vec<ExtentIndex> = Vec::with_capacity(header.entries.into());
            for off in entry_offsets {
                let index = ExtentIndex {
                    first_logical_block: r.le32(off + EI_BLOCK)?,
                    child_block: u64::from(r.le32(off + EI_LEAF_LO)?)
                        | (u64::from(r.le16(off + EI_LEAF_HI)?) << 32),
                };
                if index.child_block == 0 || index.child_block >= blocks_count {
                    return Err(r.out_of_range(
                        "ei_leaf",
                        index.child_block,
                        "block outside the file system",
                    ));
                }
                if out
                    .last()
                    .is_some_and(|prev| prev.first_logical_block >= index.first_logical_block)
                {
                    return Err(r.out_of_range(
                        "ei_block",
                        index.first_logical_block.into(),
                        "index entries not increasing",
                    ));
                }
                out.push(index);
            }
            ExtentEntries::Index(out)
        } else {
            let mut out: Vec<Extent> = Vec::with_capacity(header.entries.into());
            let mut next_free_logical: u64 = 0;
            for off in entry_offsets {
                let extent = decode_leaf_entry(&r, off)?;
                let end_logical =
                    u64::from(extent.first_logical_block) + u64::from(extent.len_blocks);
                if u64::from(extent.first_logical_block) < next_free_logical {
                    return Err(r.out_of_range(
                        "ee_block",
                        extent.first_logical_block.into(),
                        "extents overlap or unsorted",
                    ));
                }
                if end_logical > 1 << 32 {
                    return Err(r.out_of_range(
                        "ee_len",
                        extent.len_blocks.into(),
                        "extent runs past logical block 2^32",
                    ));
                }
                let end_physical = extent.start_block + u64::from(extent.len_blocks);
                // `ee_start` is 48 bits: an extent running past 2^48 cannot be addressed (nor
                // re-encoded), whatever `blocks_count` says.
                if extent.start_block == 0 || end_physical > blocks_count.min(1 << 48) {
                    return Err(r.out_of_range(
                        "ee_start",
                        extent.start_block,
                        "extent outside the file system",
                    ));
                }
                next_free_logical = end_logical;
                out.push(extent);
            }
            ExtentEntries::Leaf(out)
        };
        Ok(ExtentNode { header, entries })
    }
}

/// Entries of the in-inode root (`i_block` is 60 bytes: a header and four entries).
pub const ROOT_ENTRIES_MAX: u16 = 4;
/// Largest physical block an entry can hold (48 bits).
const PHYS_BLOCK_MAX: u64 = (1 << 48) - 1;

/// `eh_max` of a node block of `block_size_bytes` with room for the checksum tail.
pub fn block_entries_max(block_size_bytes: u32) -> u16 {
    let usable = (block_size_bytes as usize).saturating_sub(EXTENT_TAIL_SIZE_BYTES);
    let entries = (usable / EXTENT_ENTRY_SIZE_BYTES).saturating_sub(1);
    u16::try_from(entries).unwrap_or(u16::MAX)
}

impl ExtentNode {
    /// A leaf node holding `extents`, with capacity `max` (see [`ROOT_ENTRIES_MAX`] and
    /// [`block_entries_max`]).
    pub fn leaf(extents: Vec<Extent>, max: u16) -> Self {
        ExtentNode {
            header: ExtentHeader {
                entries: u16::try_from(extents.len()).unwrap_or(u16::MAX),
                max,
                depth: 0,
                generation: 0,
            },
            entries: ExtentEntries::Leaf(extents),
        }
    }

    /// Encode this node into `buf` (the 60-byte `i_block`, or a node block) stored at `at`.
    /// `eh_entries` must equal the number of entries, which must fit `eh_max`, which must fit
    /// `buf`; entries must match the depth (index iff depth > 0), be sorted and not overlap,
    /// and lengths and blocks must fit their fields. Bytes after the last entry are kept; for a
    /// node block call [`set_extent_tail`] afterwards.
    pub fn encode_into(&self, buf: &mut [u8], at: Location) -> Result<()> {
        let mut w = Writer::new(buf, at);
        let h = self.header;
        let capacity = (w.len() / EXTENT_ENTRY_SIZE_BYTES).saturating_sub(1);
        if h.max == 0 || usize::from(h.max) > capacity {
            return Err(w.out_of_range("eh_max", h.max.into(), "zero or larger than the node"));
        }
        let count = match &self.entries {
            ExtentEntries::Index(v) => v.len(),
            ExtentEntries::Leaf(v) => v.len(),
        };
        if count != usize::from(h.entries) || h.entries > h.max {
            return Err(w.out_of_range(
                "eh_entries",
                count as u64,
                "differs from the entries given or exceeds eh_max",
            ));
        }
        if h.depth > EXTENT_DEPTH_MAX
            || (h.depth > 0) != matches!(self.entries, ExtentEntries::Index(_))
        {
            return Err(w.out_of_range(
                "eh_depth",
                h.depth.into(),
                "deeper than 5, or entries of the wrong kind",
            ));
        }
        w.le16(EH_MAGIC, EXT4_EXT_MAGIC)?;
        w.le16(EH_ENTRIES, h.entries)?;
        w.le16(EH_MAX, h.max)?;
        w.le16(EH_DEPTH, h.depth)?;
        w.le32(EH_GENERATION, h.generation)?;
        match &self.entries {
            ExtentEntries::Index(index) => encode_index_entries(&mut w, index),
            ExtentEntries::Leaf(extents) => encode_leaf_entries(&mut w, extents),
        }
    }
}

fn encode_index_entries(w: &mut Writer<'_>, index: &[ExtentIndex]) -> Result<()> {
    let mut prev: Option<u32> = None;
    for (i, entry) in index.iter().enumerate() {
        let off = (i + 1) * EXTENT_ENTRY_SIZE_BYTES;
        if entry.child_block == 0 || entry.child_block > PHYS_BLOCK_MAX {
            return Err(w.out_of_range("ei_leaf", entry.child_block, "not a 48-bit block"));
        }
        if prev.is_some_and(|p| p >= entry.first_logical_block) {
            return Err(w.out_of_range(
                "ei_block",
                entry.first_logical_block.into(),
                "index entries not increasing",
            ));
        }
        prev = Some(entry.first_logical_block);
        w.le32(off + EI_BLOCK, entry.first_logical_block)?;
        w.le32(off + EI_LEAF_LO, lo32(entry.child_block))?;
        w.le16(off + EI_LEAF_HI, lo16(hi32(entry.child_block)))?;
        w.le16(off + EI_LEAF_HI + 2, 0)?; // ei_unused
    }
    Ok(())
}

fn encode_leaf_entries(w: &mut Writer<'_>, extents: &[Extent]) -> Result<()> {
    let mut next_free_logical: u64 = 0;
    for (i, e) in extents.iter().enumerate() {
        let off = (i + 1) * EXTENT_ENTRY_SIZE_BYTES;
        let max_len = if e.unwritten {
            EXT_INIT_MAX_LEN_BLOCKS - 1
        } else {
            EXT_INIT_MAX_LEN_BLOCKS
        };
        if e.len_blocks == 0 || e.len_blocks > max_len {
            return Err(w.out_of_range(
                "ee_len",
                e.len_blocks.into(),
                "must be 1..=32768 (32767 unwritten)",
            ));
        }
        let end_physical = e.start_block.saturating_add(e.len_blocks.into());
        if e.start_block == 0 || end_physical > PHYS_BLOCK_MAX + 1 {
            return Err(w.out_of_range("ee_start", e.start_block, "not a 48-bit block range"));
        }
        let end_logical = u64::from(e.first_logical_block) + u64::from(e.len_blocks);
        if u64::from(e.first_logical_block) < next_free_logical || end_logical > 1 << 32 {
            return Err(w.out_of_range(
                "ee_block",
                e.first_logical_block.into(),
                "extents overlap, unsorted, or past logical block 2^32",
            ));
        }
        next_free_logical = end_logical;
        let raw_len = if e.unwritten {
            e.len_blocks + EXT_INIT_MAX_LEN_BLOCKS
        } else {
            e.len_blocks
        };
        w.le32(off + EE_BLOCK, e.first_logical_block)?;
        w.le16(off + EE_LEN, raw_len)?;
        w.le16(off + EE_START_HI, lo16(hi32(e.start_block)))?;
        w.le32(off + EE_START_LO, lo32(e.start_block))?;
    }
    Ok(())
}

/// Compute and store the checksum tail of the node block `block` (after `eh_max` entries).
pub fn set_extent_tail(block: &mut [u8], at: Location, inode_csum_seed: u32) -> Result<()> {
    let mut w = Writer::new(block, at);
    let r = w.reader();
    let tail_offset = EXTENT_ENTRY_SIZE_BYTES * (usize::from(r.le16(EH_MAX)?) + 1);
    let crc = crc32c_raw(inode_csum_seed, r.bytes(0, tail_offset)?);
    w.le32(tail_offset, crc)
}

/// Decode the leaf entry at byte `off`.
fn decode_leaf_entry(r: &Reader<'_>, off: usize) -> Result<Extent> {
    let raw_len = r.le16(off + EE_LEN)?;
    let (len_blocks, unwritten) = if raw_len > EXT_INIT_MAX_LEN_BLOCKS {
        (raw_len - EXT_INIT_MAX_LEN_BLOCKS, true)
    } else {
        (raw_len, false)
    };
    if len_blocks == 0 {
        return Err(r.out_of_range("ee_len", raw_len.into(), "empty extent"));
    }
    Ok(Extent {
        first_logical_block: r.le32(off + EE_BLOCK)?,
        len_blocks,
        start_block: u64::from(r.le32(off + EE_START_LO)?)
            | (u64::from(r.le16(off + EE_START_HI)?) << 32),
        unwritten,
    })
}

/// Verify the checksum tail of an extent node block (`metadata_csum` only). `inode_csum_seed` is
/// the owning inode's seed ([`super::inode::Inode::csum_seed`]).
pub fn verify_extent_tail(block: &[u8], at: Location, inode_csum_seed: u32) -> Result<()> {
    let r = Reader::new(block, at);
    let max = usize::from(r.le16(EH_MAX)?);
    let tail_offset = EXTENT_ENTRY_SIZE_BYTES * (max + 1);
    let covered = r.bytes(0, tail_offset)?;
    let stored = r.le32(tail_offset)?;
    let computed = crc32c_raw(inode_csum_seed, covered);
    if computed != stored {
        return Err(FormatError::ChecksumMismatch {
            at,
            expected: computed,
            found: stored,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: Location = Location::ExtentRoot { ino: 12 };

    fn header(entries: u16, max: u16, depth: u16) -> Vec<u8> {
        let mut node = Vec::new();
        for field in [EXT4_EXT_MAGIC, entries, max, depth, 0, 0] {
            node.extend_from_slice(&field.to_le_bytes());
        }
        node
    }

    fn leaf(node: &mut Vec<u8>, logical: u32, len: u16, start: u64) {
        node.extend_from_slice(&logical.to_le_bytes());
        node.extend_from_slice(&len.to_le_bytes());
        node.extend_from_slice(&((start >> 32) as u16).to_le_bytes());
        node.extend_from_slice(&(start as u32).to_le_bytes());
    }

    #[test]
    fn decodes_leaves_with_unwritten_and_high_blocks() {
        let mut node = header(2, 4, 0);
        leaf(&mut node, 0, 8, 0x1_0000_0010);
        leaf(&mut node, 100, EXT_INIT_MAX_LEN_BLOCKS + 5, 500);
        node.resize(60, 0);
        let decoded = ExtentNode::decode(&node, AT, 1 << 40).unwrap();
        let ExtentEntries::Leaf(extents) = decoded.entries else {
            panic!("expected a leaf")
        };
        assert_eq!(
            extents[0],
            Extent {
                first_logical_block: 0,
                len_blocks: 8,
                start_block: 0x1_0000_0010,
                unwritten: false
            }
        );
        assert_eq!(
            extents[1],
            Extent {
                first_logical_block: 100,
                len_blocks: 5,
                start_block: 500,
                unwritten: true
            }
        );
    }

    /// Found by the `extent_node` fuzz target: with `blocks_count` above 2^48 an extent ending
    /// past 2^48 decoded, and then did not encode.
    #[test]
    fn refuses_extents_past_48_bits_whatever_blocks_count() {
        let mut node = header(1, 4, 0);
        leaf(&mut node, 0, 2, (1 << 48) - 1);
        node.resize(60, 0);
        assert!(matches!(
            ExtentNode::decode(&node, AT, u64::MAX),
            Err(FormatError::FieldOutOfRange {
                field: "ee_start",
                ..
            })
        ));
        let mut node = header(1, 4, 0);
        leaf(&mut node, 0, 1, (1 << 48) - 1);
        node.resize(60, 0);
        let decoded = ExtentNode::decode(&node, AT, u64::MAX).unwrap();
        let mut raw = [0u8; 60];
        decoded.encode_into(&mut raw, AT).unwrap();
    }

    #[test]
    fn refuses_bad_headers_and_overlaps() {
        let mut node = header(5, 4, 0);
        node.resize(60, 0);
        assert!(matches!(
            ExtentNode::decode(&node, AT, 1000),
            Err(FormatError::FieldOutOfRange {
                field: "eh_entries",
                ..
            })
        ));
        let mut node = header(0, 5, 0); // 5 entries do not fit in 60 bytes
        node.resize(60, 0);
        assert!(matches!(
            ExtentNode::decode(&node, AT, 1000),
            Err(FormatError::FieldOutOfRange {
                field: "eh_max",
                ..
            })
        ));
        let mut node = header(0, 4, 6);
        node.resize(60, 0);
        assert!(matches!(
            ExtentNode::decode(&node, AT, 1000),
            Err(FormatError::FieldOutOfRange {
                field: "eh_depth",
                ..
            })
        ));
        let mut node = header(2, 4, 0);
        leaf(&mut node, 0, 8, 10);
        leaf(&mut node, 4, 8, 30);
        node.resize(60, 0);
        assert!(matches!(
            ExtentNode::decode(&node, AT, 1000),
            Err(FormatError::FieldOutOfRange {
                field: "ee_block",
                ..
            })
        ));
        let mut node = header(1, 4, 0);
        leaf(&mut node, 0, 8, 995);
        node.resize(60, 0);
        assert!(matches!(
            ExtentNode::decode(&node, AT, 1000),
            Err(FormatError::FieldOutOfRange {
                field: "ee_start",
                ..
            })
        ));
        assert!(matches!(
            ExtentNode::decode(&node[..6], AT, 1000),
            Err(FormatError::Truncated { .. })
        ));
    }

    #[test]
    fn encodes_what_it_decodes_and_refuses_invalid_nodes() {
        let mut node = header(2, 4, 0);
        leaf(&mut node, 0, 8, 0x1_0000_0010);
        leaf(&mut node, 100, EXT_INIT_MAX_LEN_BLOCKS + 5, 500);
        node.resize(60, 0xEE);
        let decoded = ExtentNode::decode(&node, AT, 1 << 40).unwrap();
        let mut out = vec![0xEEu8; 60];
        decoded.encode_into(&mut out, AT).unwrap();
        assert_eq!(out, node);
        let index = ExtentNode {
            header: ExtentHeader {
                entries: 1,
                max: 4,
                depth: 1,
                generation: 0,
            },
            entries: ExtentEntries::Index(vec![ExtentIndex {
                first_logical_block: 0,
                child_block: 0x2_0000_0001,
            }]),
        };
        index.encode_into(&mut out, AT).unwrap();
        assert_eq!(ExtentNode::decode(&out, AT, 1 << 40).unwrap(), index);
        let bad_len = ExtentNode::leaf(
            vec![Extent {
                first_logical_block: 0,
                len_blocks: EXT_INIT_MAX_LEN_BLOCKS,
                start_block: 9,
                unwritten: true,
            }],
            4,
        );
        assert!(matches!(
            bad_len.encode_into(&mut out, AT),
            Err(FormatError::FieldOutOfRange {
                field: "ee_len",
                ..
            })
        ));
        let too_many = ExtentNode::leaf(vec![], 5);
        assert!(too_many.encode_into(&mut out, AT).is_err());
        let mut wrong_kind = index.clone();
        wrong_kind.header.depth = 0;
        assert!(wrong_kind.encode_into(&mut out, AT).is_err());
    }

    #[test]
    fn tail_checksum_covers_the_node() {
        let mut block = header(1, 340, 0);
        leaf(&mut block, 0, 1, 10);
        block.resize(4092, 0);
        let crc = crc32c_raw(5, &block);
        block.extend_from_slice(&crc.to_le_bytes());
        let at = Location::ExtentBlock { ino: 12, block: 77 };
        verify_extent_tail(&block, at, 5).unwrap();
        let mut resealed = block.clone();
        resealed[4092..].fill(0);
        set_extent_tail(&mut resealed, at, 5).unwrap();
        assert_eq!(resealed, block);
        assert_eq!(block_entries_max(4096), 340);
        block[13] ^= 1;
        assert!(matches!(
            verify_extent_tail(&block, at, 5),
            Err(FormatError::ChecksumMismatch { .. })
        ));
    }
}
