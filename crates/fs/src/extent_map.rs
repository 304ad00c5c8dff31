//! An inode's whole extent tree, loaded into memory at open.
//!
//! # Role
//! [`Fs::extent_map`] walks the tree rooted in `i_block` depth first, reading every index and
//! leaf block below it (checksum tails verified under `metadata_csum`), and flattens the leaves
//! into an [`ExtentMap`]: sorted, non-overlapping [`Mapping`]s. Reads then map a logical block
//! with one binary search and no I/O.
//!
//! # Checks across nodes (the decoder checks each node on its own)
//! - A child's `eh_depth` is exactly its parent's minus one: depth strictly decreases, so the walk
//!   ends after at most [`EXTENT_DEPTH_MAX`] levels.
//! - No node block is reached twice: no cycles, no shared subtrees, at most one read per block.
//! - Leaf extents appear in increasing logical order without overlap across the whole tree, and
//!   each lies within the range its parent index entries give it.
//!
//! # Invariants of an [`ExtentMap`]
//! `mappings` is sorted by `logical_block`; `m.logical_block + m.len_blocks <=` the next one's
//! `logical_block`; every `len_blocks >= 1`; every physical range lies inside the file system.

use std::collections::HashSet;

use aios_device::Device;
use aios_ext4::format::extent::{
    verify_extent_tail, ExtentEntries, ExtentIndex, ExtentNode, EXTENT_DEPTH_MAX,
};
use aios_ext4::format::inode::Inode;
use aios_ext4::Location;

use crate::{Fs, FsError, IoCtx};

/// `len_blocks` logical blocks from `logical_block` live at physical blocks from `physical_block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    pub logical_block: u64,
    pub len_blocks: u32,
    pub physical_block: u64,
    /// Allocated but never written: reads as zeros.
    pub unwritten: bool,
}

impl Mapping {
    /// One past the last logical block.
    pub fn end_block(&self) -> u64 {
        self.logical_block + u64::from(self.len_blocks)
    }
}

/// An inode's logical -> physical block map (see the module doc for invariants).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtentMap {
    mappings: Vec<Mapping>,
    /// Tree depth as found in the root (0: the root is a leaf).
    depth: u16,
}

impl ExtentMap {
    /// The mappings, sorted by logical block.
    pub fn mappings(&self) -> &[Mapping] {
        &self.mappings
    }

    /// Depth of the tree this map was loaded from.
    pub fn depth(&self) -> u16 {
        self.depth
    }

    /// The mapping covering `logical_block`, if any (a hole otherwise).
    pub fn find(&self, logical_block: u64) -> Option<&Mapping> {
        let i = self
            .mappings
            .partition_point(|m| m.end_block() <= logical_block);
        self.mappings
            .get(i)
            .filter(|m| m.logical_block <= logical_block)
    }

    /// The map of an extent list the write path holds in memory (the read-write mount's
    /// view, changes not yet committed included), checked against this type's invariants:
    /// sorted, no overlap, no empty extent, every physical range below `blocks_count`.
    pub(crate) fn from_extents(
        ino: u32,
        extents: &[aios_ext4::format::extent::Extent],
        blocks_count: u64,
    ) -> Result<ExtentMap, FsError> {
        let mut mappings: Vec<Mapping> = Vec::with_capacity(extents.len());
        for e in extents {
            let m = Mapping {
                logical_block: u64::from(e.first_logical_block),
                len_blocks: u32::from(e.len_blocks),
                physical_block: e.start_block,
                unwritten: e.unwritten,
            };
            let after_previous = mappings
                .last()
                .is_none_or(|p| p.end_block() <= m.logical_block);
            let inside = m
                .physical_block
                .checked_add(u64::from(m.len_blocks))
                .is_some_and(|end| end <= blocks_count);
            if !after_previous || m.len_blocks == 0 || !inside {
                return Err(FsError::Corrupt {
                    at: Location::ExtentRoot { ino },
                    what: "extents overlap, are empty or lie outside the file system",
                });
            }
            mappings.push(m);
        }
        Ok(ExtentMap { mappings, depth: 0 })
    }

    /// This map without anything at or past `end_block` (those blocks read as holes).
    pub(crate) fn clipped(mut self, end_block: u64) -> ExtentMap {
        self.mappings.retain(|m| m.logical_block < end_block);
        if let Some(last) = self.mappings.last_mut() {
            if last.end_block() > end_block {
                // Shorter than it was, so it fits its u32.
                last.len_blocks = (end_block - last.logical_block) as u32;
            }
        }
        self
    }

    /// The first logical block at or after `logical_block` that is mapped, if any.
    pub fn next_mapped(&self, logical_block: u64) -> Option<u64> {
        let i = self
            .mappings
            .partition_point(|m| m.end_block() <= logical_block);
        self.mappings
            .get(i)
            .map(|m| m.logical_block.max(logical_block))
    }
}

/// The logical range `[start, end)` a node may cover, as given by its parent's index entries.
#[derive(Clone, Copy)]
struct Range {
    start: u64,
    end: u64,
}

impl<D: Device> Fs<D> {
    /// Loads the whole extent tree of `inode`.
    pub fn extent_map(
        &self,
        io: &mut IoCtx<D::Queue>,
        inode: &Inode,
    ) -> Result<ExtentMap, FsError> {
        if !inode.uses_extents() {
            return Err(FsError::Unsupported {
                ino: inode.ino,
                what: "block-mapped (non-extent) file",
            });
        }
        let root = ExtentNode::decode(
            &inode.block,
            Location::ExtentRoot { ino: inode.ino },
            self.sb.blocks_count,
        )?;
        let mut map = ExtentMap {
            mappings: Vec::new(),
            depth: root.header.depth,
        };
        let mut visited = HashSet::new();
        let all = Range {
            start: 0,
            end: 1 << 32,
        };
        self.walk(io, inode, root, all, &mut visited, &mut map.mappings)?;
        Ok(map)
    }

    fn walk(
        &self,
        io: &mut IoCtx<D::Queue>,
        inode: &Inode,
        node: ExtentNode,
        range: Range,
        visited: &mut HashSet<u64>,
        out: &mut Vec<Mapping>,
    ) -> Result<(), FsError> {
        match node.entries {
            ExtentEntries::Leaf(extents) => {
                for e in extents {
                    let m = Mapping {
                        logical_block: u64::from(e.first_logical_block),
                        len_blocks: u32::from(e.len_blocks),
                        physical_block: e.start_block,
                        unwritten: e.unwritten,
                    };
                    if self.in_system_zone(inode, m.physical_block, m.len_blocks.into()) {
                        return Err(FsError::Corrupt {
                            at: Location::ExtentRoot { ino: inode.ino },
                            what: "an extent maps file-system metadata (a system zone)",
                        });
                    }
                    let after_previous =
                        out.last().is_none_or(|p| p.end_block() <= m.logical_block);
                    if !after_previous || m.logical_block < range.start || m.end_block() > range.end
                    {
                        return Err(FsError::Corrupt {
                            at: Location::ExtentRoot { ino: inode.ino },
                            what: "extents overlap or lie outside their index range",
                        });
                    }
                    out.push(m);
                }
                Ok(())
            }
            ExtentEntries::Index(index) => {
                for (i, entry) in index.iter().enumerate() {
                    let next = index.get(i + 1).map(|n| u64::from(n.first_logical_block));
                    let child_range = Range {
                        start: u64::from(entry.first_logical_block).max(range.start),
                        end: next.unwrap_or(range.end).min(range.end),
                    };
                    let child = self.read_node(io, inode, entry, node.header.depth, visited)?;
                    self.walk(io, inode, child, child_range, visited, out)?;
                }
                Ok(())
            }
        }
    }

    /// True if `[start, start + len)` holds metadata `inode` may not map (the journal inode
    /// maps its own zone).
    fn in_system_zone(&self, inode: &Inode, start: u64, len: u64) -> bool {
        inode.ino != self.sb.journal_inum && self.zones.overlaps(start, len)
    }

    /// Reads, verifies and decodes the child node `entry` of a node at `parent_depth`.
    fn read_node(
        &self,
        io: &mut IoCtx<D::Queue>,
        inode: &Inode,
        entry: &ExtentIndex,
        parent_depth: u16,
        visited: &mut HashSet<u64>,
    ) -> Result<ExtentNode, FsError> {
        let block = entry.child_block;
        let at = Location::ExtentBlock {
            ino: inode.ino,
            block,
        };
        if self.in_system_zone(inode, block, 1) {
            return Err(FsError::Corrupt {
                at,
                what: "an extent node lies in file-system metadata (a system zone)",
            });
        }
        if !visited.insert(block) {
            return Err(FsError::Corrupt {
                at,
                what: "extent node reached twice (cycle or shared subtree)",
            });
        }
        self.read_blocks(io, block, 1, at)?;
        let bytes = io.page(0);
        if let Some(seed) = self.csum_seed {
            verify_extent_tail(bytes, at, inode.csum_seed(seed))?;
        }
        let node = ExtentNode::decode(bytes, at, self.sb.blocks_count)?;
        if node.header.depth.checked_add(1) != Some(parent_depth) || parent_depth > EXTENT_DEPTH_MAX
        {
            return Err(FsError::Corrupt {
                at,
                what: "extent node depth is not its parent's minus one",
            });
        }
        Ok(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(mappings: &[(u64, u32)]) -> ExtentMap {
        ExtentMap {
            mappings: mappings
                .iter()
                .map(|&(l, n)| Mapping {
                    logical_block: l,
                    len_blocks: n,
                    physical_block: 1000 + l,
                    unwritten: false,
                })
                .collect(),
            depth: 0,
        }
    }

    #[test]
    fn find_and_next_mapped_see_holes() {
        let m = map(&[(2, 3), (10, 1)]);
        assert_eq!(m.find(0), None);
        assert_eq!(m.find(2).map(|x| x.logical_block), Some(2));
        assert_eq!(m.find(4).map(|x| x.logical_block), Some(2));
        assert_eq!(m.find(5), None);
        assert_eq!(m.find(10).map(|x| x.logical_block), Some(10));
        assert_eq!(m.find(11), None);
        assert_eq!(m.next_mapped(0), Some(2));
        assert_eq!(m.next_mapped(3), Some(3));
        assert_eq!(m.next_mapped(5), Some(10));
        assert_eq!(m.next_mapped(11), None);
    }
}
