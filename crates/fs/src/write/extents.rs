//! One inode's extent tree, loaded whole, mutated in memory, stored back.
//!
//! # Role
//! [`Tree::load`] reads the root from `i_block` and every node block below it (through the
//! cached metadata blocks, tails verified). Mutations:
//! - [`Tree::insert`] maps a run of unmapped logical blocks: it merges with the previous extent
//!   when both logical and physical ranges are contiguous (and the sum fits one extent), else
//!   inserts a new extent in order. A node holding more than its `eh_max` entries is split: an
//!   append at the end moves only the last entry to a new sibling (the kernel's behaviour for
//!   sequential growth, which keeps leaves full), any other insert moves the upper half. The
//!   sibling is indexed in the parent, which may split in turn. When the root (four entries in
//!   the inode) overflows, the tree grows: the root's entries move to a new node block and the
//!   root becomes an index with one entry, one level deeper.
//! - [`Tree::truncate_from`] unmaps every block at or after a logical block: extents are dropped
//!   or shortened, empty nodes are freed, and when everything left fits the root (four extents
//!   or fewer) the tree collapses to a depth-0 root and every node block is freed; a root left
//!   with a single child whose entries fit the root absorbs it (one level less).
//!
//! [`Tree::store`] encodes the root into the inode and every node block (sealing the checksum
//! tail), writing only blocks whose bytes changed. New node blocks are allocated by the caller's
//! closure (so the allocator's goal stays the caller's), freed ones reported back.
//!
//! # Invariants kept
//! Entries sorted and non-overlapping; each index key is at most the first logical block of its
//! subtree and its subtree stays below the next key; child depth = parent depth - 1; every node
//! within `eh_max` after `insert` returns.

use aios_ext4::format::extent::{
    block_entries_max, set_extent_tail, verify_extent_tail, Extent, ExtentEntries, ExtentHeader,
    ExtentIndex, ExtentNode, EXTENT_DEPTH_MAX, EXT_INIT_MAX_LEN_BLOCKS, ROOT_ENTRIES_MAX,
};
use aios_ext4::format::inode::Inode;
use aios_ext4::Location;

use aios_device::BLOCK_SIZE;

use super::{BlockRead, Mutator};
use crate::FsError;

/// A node in memory: its block (`None` for the root in `i_block`) and entries.
#[derive(Debug, Clone)]
struct Node {
    block: Option<u64>,
    generation: u32,
    entries: Entries,
}

#[derive(Debug, Clone)]
enum Entries {
    Leaf(Vec<Extent>),
    /// `(first logical block key, child)`.
    Index(Vec<(u32, Node)>),
}

impl Node {
    fn len(&self) -> usize {
        match &self.entries {
            Entries::Leaf(v) => v.len(),
            Entries::Index(v) => v.len(),
        }
    }

    fn max(&self, block_size: u32) -> usize {
        match self.block {
            None => ROOT_ENTRIES_MAX.into(),
            Some(_) => block_entries_max(block_size).into(),
        }
    }

    fn depth(&self) -> u16 {
        match &self.entries {
            Entries::Leaf(_) => 0,
            Entries::Index(v) => v.first().map_or(1, |(_, c)| c.depth() + 1),
        }
    }

    fn first_key(&self) -> Option<u32> {
        match &self.entries {
            Entries::Leaf(v) => v.first().map(|e| e.first_logical_block),
            Entries::Index(v) => v.first().map(|(k, _)| *k),
        }
    }

    /// Every node block of this subtree (this node's included).
    fn blocks(&self, out: &mut Vec<u64>) {
        out.extend(self.block);
        if let Entries::Index(v) = &self.entries {
            for (_, c) in v {
                c.blocks(out);
            }
        }
    }

    fn extents(&self, out: &mut Vec<Extent>) {
        match &self.entries {
            Entries::Leaf(v) => out.extend_from_slice(v),
            Entries::Index(v) => v.iter().for_each(|(_, c)| c.extents(out)),
        }
    }
}

/// An inode's extent tree (see the module doc).
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    ino: u32,
    root: Node,
}

/// Allocates one node block.
pub(crate) type NodeAlloc<'a> = dyn FnMut() -> Result<u64, FsError> + 'a;

impl Tree {
    /// Loads the whole tree of `inode` (which must use extents).
    pub(crate) fn load(
        m: &mut Mutator,
        r: &mut dyn BlockRead,
        inode: &Inode,
    ) -> Result<Tree, FsError> {
        let ino = inode.ino;
        if !inode.uses_extents() {
            return Err(FsError::Unsupported {
                ino,
                what: "block-mapped (non-extent) file",
            });
        }
        let root = ExtentNode::decode(
            &inode.block,
            Location::ExtentRoot { ino },
            m.sb.blocks_count,
        )?;
        let seed = m.csum_seed.map(|s| inode.csum_seed(s));
        let root = load_node(m, r, ino, seed, root, None, 0)?;
        Ok(Tree { ino, root })
    }

    /// Depth of the tree (0: the root is a leaf).
    pub(crate) fn depth(&self) -> u16 {
        self.root.depth()
    }

    /// All extents in logical order.
    pub(crate) fn extents(&self) -> Vec<Extent> {
        let mut out = Vec::new();
        self.root.extents(&mut out);
        out
    }

    /// Node blocks (not counting the root), for `i_blocks` accounting.
    pub(crate) fn node_blocks(&self) -> Vec<u64> {
        let mut out = Vec::new();
        self.root.blocks(&mut out);
        out
    }

    /// The extent covering `logical`, if any.
    pub(crate) fn find(&self, logical: u32) -> Option<Extent> {
        let mut node = &self.root;
        loop {
            match &node.entries {
                Entries::Leaf(v) => {
                    return v
                        .iter()
                        .find(|e| {
                            e.first_logical_block <= logical
                                && u64::from(logical)
                                    < u64::from(e.first_logical_block) + u64::from(e.len_blocks)
                        })
                        .copied();
                }
                Entries::Index(v) => {
                    let i = v.iter().rposition(|(k, _)| *k <= logical)?;
                    node = &v.get(i)?.1;
                }
            }
        }
    }

    /// The last extent starting before `logical` (for allocation goals).
    pub(crate) fn before(&self, logical: u32) -> Option<Extent> {
        self.extents()
            .into_iter()
            .take_while(|e| e.first_logical_block < logical)
            .last()
    }

    /// Maps `e` (a run of currently unmapped logical blocks); see the module doc.
    pub(crate) fn insert(&mut self, e: Extent, alloc: &mut NodeAlloc<'_>) -> Result<(), FsError> {
        let at = Location::ExtentRoot { ino: self.ino };
        if self.find(e.first_logical_block).is_some() {
            return Err(FsError::Corrupt {
                at,
                what: "inserting an extent over mapped blocks",
            });
        }
        insert_into(&mut self.root, e, alloc, at)?;
        if self.root.len() > usize::from(ROOT_ENTRIES_MAX) {
            if self.root.depth() >= EXTENT_DEPTH_MAX {
                return Err(FsError::FileTooBig { ino: self.ino });
            }
            let child = Node {
                block: Some(alloc()?),
                generation: 0,
                entries: std::mem::replace(&mut self.root.entries, Entries::Index(Vec::new())),
            };
            let key = child.first_key().unwrap_or(0);
            self.root.entries = Entries::Index(vec![(key, child)]);
            split_overfull_children(&mut self.root, alloc)?;
        }
        Ok(())
    }

    /// Replaces the extent starting at `old_first` by `pieces`, which must cover exactly the
    /// same logical range (used to split an unwritten extent into unwritten and written
    /// parts). Leaves may split (node blocks from `alloc`).
    pub(crate) fn replace(
        &mut self,
        old_first: u32,
        pieces: &[Extent],
        alloc: &mut NodeAlloc<'_>,
    ) -> Result<(), FsError> {
        let at = Location::ExtentRoot { ino: self.ino };
        let old = self
            .find(old_first)
            .filter(|e| e.first_logical_block == old_first)
            .ok_or(FsError::Corrupt {
                at,
                what: "replacing an extent that is not there",
            })?;
        let covered: u64 = pieces.iter().map(|p| u64::from(p.len_blocks)).sum();
        if covered != u64::from(old.len_blocks)
            || pieces.first().map(|p| p.first_logical_block) != Some(old_first)
        {
            return Err(FsError::Corrupt {
                at,
                what: "extent pieces do not cover the extent they replace",
            });
        }
        remove_from(&mut self.root, old_first);
        for p in pieces {
            self.insert(*p, alloc)?;
        }
        Ok(())
    }

    /// Unmaps every block at or after `logical`; returns the freed data runs
    /// `(physical, len)` and the freed node blocks.
    pub(crate) fn truncate_from(&mut self, logical: u32) -> (Vec<(u64, u64)>, Vec<u64>) {
        let mut data = Vec::new();
        let mut nodes = Vec::new();
        trim(&mut self.root, logical, &mut data, &mut nodes);
        let extents = self.extents();
        if self.root.depth() > 0 && extents.len() <= usize::from(ROOT_ENTRIES_MAX) {
            self.root.blocks(&mut nodes);
            self.root.entries = Entries::Leaf(extents);
        }
        // A root with one child whose entries fit the root loses a level (e2fsck: "could be
        // shorter").
        while let Entries::Index(v) = &mut self.root.entries {
            if v.len() != 1
                || v.first()
                    .is_none_or(|(_, c)| c.len() > usize::from(ROOT_ENTRIES_MAX))
            {
                break;
            }
            let Some((_, child)) = v.pop() else {
                break;
            };
            nodes.extend(child.block);
            self.root.entries = child.entries;
        }
        (data, nodes)
    }

    /// Encodes the root into `inode.block` and every node block into the cache.
    pub(crate) fn store(
        &self,
        m: &mut Mutator,
        r: &mut dyn BlockRead,
        inode: &mut Inode,
    ) -> Result<(), FsError> {
        let seed = m.csum_seed.map(|s| inode.csum_seed(s));
        store_node(m, r, self.ino, &self.root, seed, &mut inode.block)
    }
}

fn load_node(
    m: &mut Mutator,
    r: &mut dyn BlockRead,
    ino: u32,
    seed: Option<u32>,
    node: ExtentNode,
    block: Option<u64>,
    level: u16,
) -> Result<Node, FsError> {
    let at = Location::ExtentRoot { ino };
    if level > EXTENT_DEPTH_MAX {
        return Err(FsError::Corrupt {
            at,
            what: "extent tree deeper than 5",
        });
    }
    let in_zone = |m: &Mutator, start: u64, len: u64| {
        ino != m.sb.journal_inum && m.zones.overlaps(start, len)
    };
    let entries = match node.entries {
        ExtentEntries::Leaf(v) => {
            if v.iter()
                .any(|e| in_zone(m, e.start_block, e.len_blocks.into()))
            {
                return Err(FsError::Corrupt {
                    at,
                    what: "an extent maps file-system metadata (a system zone)",
                });
            }
            Entries::Leaf(v)
        }
        ExtentEntries::Index(v) => {
            let mut children = Vec::with_capacity(v.len());
            for ExtentIndex {
                first_logical_block,
                child_block,
            } in v
            {
                let cat = Location::ExtentBlock {
                    ino,
                    block: child_block,
                };
                if in_zone(m, child_block, 1) {
                    return Err(FsError::Corrupt {
                        at: cat,
                        what: "an extent node lies in file-system metadata (a system zone)",
                    });
                }
                let bytes = m.meta.get(r, child_block, cat)?;
                if let Some(seed) = seed {
                    verify_extent_tail(bytes, cat, seed)?;
                }
                let child = ExtentNode::decode(bytes, cat, m.sb.blocks_count)?;
                if child.header.depth.checked_add(1) != Some(node.header.depth) {
                    return Err(FsError::Corrupt {
                        at: cat,
                        what: "extent node depth is not its parent's minus one",
                    });
                }
                let child = load_node(m, r, ino, seed, child, Some(child_block), level + 1)?;
                children.push((first_logical_block, child));
            }
            Entries::Index(children)
        }
    };
    Ok(Node {
        block,
        generation: node.header.generation,
        entries,
    })
}

fn insert_into(
    node: &mut Node,
    e: Extent,
    alloc: &mut NodeAlloc<'_>,
    at: Location,
) -> Result<(), FsError> {
    match &mut node.entries {
        Entries::Leaf(v) => {
            let pos = v.partition_point(|x| x.first_logical_block < e.first_logical_block);
            if let Some(prev) = pos.checked_sub(1).and_then(|p| v.get_mut(p)) {
                let logical_end = u64::from(prev.first_logical_block) + u64::from(prev.len_blocks);
                let physical_end = prev.start_block + u64::from(prev.len_blocks);
                let sum = u32::from(prev.len_blocks) + u32::from(e.len_blocks);
                if prev.unwritten == e.unwritten
                    && logical_end == u64::from(e.first_logical_block)
                    && physical_end == e.start_block
                    && sum <= u32::from(extent_len_max(e.unwritten))
                {
                    prev.len_blocks = sum as u16;
                    return Ok(());
                }
            }
            v.insert(pos, e);
            Ok(())
        }
        Entries::Index(v) => {
            let i = v
                .iter()
                .rposition(|(k, _)| *k <= e.first_logical_block)
                .unwrap_or(0);
            let Some((key, child)) = v.get_mut(i) else {
                return Err(FsError::Corrupt {
                    at,
                    what: "extent index node without entries",
                });
            };
            *key = (*key).min(e.first_logical_block);
            insert_into(child, e, alloc, at)?;
            split_overfull_children(node, alloc)
        }
    }
}

/// Splits every child of `node` holding more than its `eh_max` entries (at most one per call
/// in practice) and indexes the new siblings.
fn split_overfull_children(node: &mut Node, alloc: &mut NodeAlloc<'_>) -> Result<(), FsError> {
    let Entries::Index(v) = &mut node.entries else {
        return Ok(());
    };
    let mut i = 0;
    while let Some((_, child)) = v.get_mut(i) {
        let max = child.max(BLOCK_SIZE as u32);
        if child.len() <= max {
            i += 1;
            continue;
        }
        let len = child.len();
        // Appending (the new entry is last and the node was full): move just the last entry.
        let at = if len == max + 1 { len - 1 } else { len / 2 };
        let entries = match &mut child.entries {
            Entries::Leaf(x) => Entries::Leaf(x.split_off(at)),
            Entries::Index(x) => Entries::Index(x.split_off(at)),
        };
        let sibling = Node {
            block: Some(alloc()?),
            generation: 0,
            entries,
        };
        let key = sibling.first_key().unwrap_or(0);
        v.insert(i + 1, (key, sibling));
        i += 1;
    }
    Ok(())
}

/// Longest extent: 32768 blocks written, 32767 unwritten (the kernel's
/// `EXT_UNWRITTEN_MAX_LEN`: the length's top bit is the unwritten flag).
pub(crate) fn extent_len_max(unwritten: bool) -> u16 {
    if unwritten {
        EXT_INIT_MAX_LEN_BLOCKS - 1
    } else {
        EXT_INIT_MAX_LEN_BLOCKS
    }
}

/// Removes the leaf entry starting at `first` (the index keys stay: the caller reinserts the
/// same range at once, starting at the same block).
fn remove_from(node: &mut Node, first: u32) {
    match &mut node.entries {
        Entries::Leaf(v) => v.retain(|e| e.first_logical_block != first),
        Entries::Index(v) => {
            if let Some((_, child)) = v.iter_mut().rev().find(|(k, _)| *k <= first) {
                remove_from(child, first);
            }
        }
    }
}

fn trim(node: &mut Node, logical: u32, data: &mut Vec<(u64, u64)>, nodes: &mut Vec<u64>) {
    match &mut node.entries {
        Entries::Leaf(v) => {
            v.retain_mut(|e| {
                let first = e.first_logical_block;
                let len = u32::from(e.len_blocks);
                if first >= logical {
                    data.push((e.start_block, len.into()));
                    false
                } else if u64::from(first) + u64::from(len) > u64::from(logical) {
                    let keep = logical - first;
                    data.push((e.start_block + u64::from(keep), u64::from(len - keep)));
                    e.len_blocks = keep as u16;
                    true
                } else {
                    true
                }
            });
        }
        Entries::Index(v) => {
            for (_, child) in v.iter_mut() {
                trim(child, logical, data, nodes);
            }
            v.retain(|(_, child)| {
                if child.len() == 0 {
                    child.blocks(nodes);
                    false
                } else {
                    true
                }
            });
            if v.is_empty() {
                node.entries = Entries::Leaf(Vec::new());
            }
        }
    }
}

fn store_node(
    m: &mut Mutator,
    r: &mut dyn BlockRead,
    ino: u32,
    node: &Node,
    seed: Option<u32>,
    root_buf: &mut [u8],
) -> Result<(), FsError> {
    let depth = node.depth();
    let entries = match &node.entries {
        Entries::Leaf(v) => ExtentEntries::Leaf(v.clone()),
        Entries::Index(v) => {
            for (_, child) in v {
                store_node(m, r, ino, child, seed, &mut [])?;
            }
            ExtentEntries::Index(
                v.iter()
                    .map(|(k, c)| ExtentIndex {
                        first_logical_block: *k,
                        child_block: c.block.unwrap_or(0),
                    })
                    .collect(),
            )
        }
    };
    let encoded = ExtentNode {
        header: ExtentHeader {
            entries: u16::try_from(node.len()).unwrap_or(u16::MAX),
            max: node.max(BLOCK_SIZE as u32) as u16,
            depth,
            generation: node.generation,
        },
        entries,
    };
    match node.block {
        None => {
            let at = Location::ExtentRoot { ino };
            encoded.encode_into(root_buf, at)?;
        }
        Some(block) => {
            let at = Location::ExtentBlock { ino, block };
            let mut bytes = m.meta.get(r, block, at).map(<[u8]>::to_vec)?;
            encoded.encode_into(&mut bytes, at)?;
            if let Some(seed) = seed {
                set_extent_tail(&mut bytes, at, seed)?;
            }
            m.meta.put_if_changed(r, block, at, &bytes)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> Tree {
        Tree {
            ino: 12,
            root: Node {
                block: None,
                generation: 0,
                entries: Entries::Leaf(Vec::new()),
            },
        }
    }

    fn one(logical: u32, physical: u64) -> Extent {
        Extent {
            first_logical_block: logical,
            len_blocks: 1,
            start_block: physical,
            unwritten: false,
        }
    }

    #[test]
    fn merges_contiguous_and_grows_to_depth_two_then_shrinks() {
        let mut t = empty();
        let mut next = 100_000u64;
        let mut alloc = || -> Result<u64, FsError> {
            next += 1;
            Ok(next)
        };
        t.insert(one(0, 10), &mut alloc).unwrap();
        t.insert(one(1, 11), &mut alloc).unwrap();
        assert_eq!(t.extents().len(), 1, "contiguous blocks merge");
        assert!(
            t.insert(one(1, 50), &mut alloc).is_err(),
            "no double mapping"
        );
        // Every other block: one extent each, 340 per leaf, more than 4 leaves -> depth 2.
        for i in 1..1500u32 {
            t.insert(one(2 * i, 1000 + 2 * u64::from(i)), &mut alloc)
                .unwrap();
        }
        assert_eq!(t.depth(), 2);
        assert_eq!(t.extents().len(), 1500);
        assert_eq!(t.find(2 * 777).map(|e| e.start_block), Some(1000 + 2 * 777));
        assert_eq!(t.find(2 * 777 + 1), None);
        let nodes = t.node_blocks().len();
        // Truncating to 600 blocks (300 extents, one leaf) drops a level; to 6 flattens.
        let (data, freed) = t.truncate_from(600);
        assert_eq!(data.len(), 1200);
        assert_eq!(t.depth(), 1, "a root with one small child absorbs it");
        assert_eq!(freed.len() + t.node_blocks().len(), nodes);
        let (_, freed) = t.truncate_from(6);
        assert_eq!(
            (t.depth(), t.extents().len(), t.node_blocks().len()),
            (0, 3, 0)
        );
        assert_eq!(freed.len(), 1);
    }

    #[test]
    fn unwritten_extents_merge_to_32767_and_split_on_replace() {
        let mut t = empty();
        let mut next = 100_000u64;
        let mut alloc = || -> Result<u64, FsError> {
            next += 1;
            Ok(next)
        };
        let unwritten = |first: u32, len: u16, start: u64| Extent {
            first_logical_block: first,
            len_blocks: len,
            start_block: start,
            unwritten: true,
        };
        t.insert(unwritten(0, 32000, 1000), &mut alloc).unwrap();
        t.insert(unwritten(32000, 767, 33000), &mut alloc).unwrap();
        assert_eq!(t.extents().len(), 1, "merged up to 32767");
        t.insert(unwritten(32767, 1, 33767), &mut alloc).unwrap();
        assert_eq!(
            t.extents().len(),
            2,
            "an unwritten extent holds at most 32767"
        );
        t.insert(one(32768, 33768), &mut alloc).unwrap();
        assert_eq!(t.extents().len(), 3, "written never merges into unwritten");
        let pieces = [
            unwritten(0, 10, 1000),
            Extent {
                first_logical_block: 10,
                len_blocks: 5,
                start_block: 1010,
                unwritten: false,
            },
            unwritten(15, 32752, 1015),
        ];
        t.replace(0, &pieces, &mut alloc).unwrap();
        assert_eq!(t.extents().len(), 5);
        assert!(!t.find(12).unwrap().unwritten);
        assert!(t.find(15).unwrap().unwritten);
        assert!(t.replace(1, &pieces, &mut alloc).is_err());
    }
}
