//! ext4 seeds cut out of a real image (made by `mke2fs`, see the tests): the superblock, every
//! group descriptor, every inode in use, every extent root and extent node block, every linear
//! directory block and every htree `dx_root`, each with the prefix its target takes (checksum
//! seed, inode number; see [`crate::targets::prefix`]). Only the ext4 decoders are used to find
//! them, so a clean image is required.

use aios_ext4::format::extent::{ExtentEntries, ExtentNode};
use aios_ext4::format::group::GroupDesc;
use aios_ext4::format::htree::{DxKind, DxNode, DxRoot};
use aios_ext4::format::inode::{Inode, EXT4_INDEX_FL};
use aios_ext4::format::superblock::Superblock;
use aios_ext4::Location;

use crate::targets::prefix;

const BLOCK: usize = 4096;
/// Seeds kept per target: enough variety, a bounded corpus.
const PER_TARGET_MAX: usize = 64;

/// The ext4 corpora, by target.
#[derive(Debug, Clone, Default)]
pub struct Ext4Seeds {
    /// 1024-byte superblocks.
    pub superblock: Vec<Vec<u8>>,
    /// Group descriptors.
    pub group_desc: Vec<Vec<u8>>,
    /// Inode records.
    pub inode: Vec<Vec<u8>>,
    /// Extent roots (60 bytes) and node blocks.
    pub extent_node: Vec<Vec<u8>>,
    /// Linear directory blocks and htree leaves.
    pub dir_block: Vec<Vec<u8>>,
    /// htree `dx_root` blocks.
    pub dx_block: Vec<Vec<u8>>,
}

fn block(image: &[u8], b: u64) -> Option<&[u8]> {
    let at = usize::try_from(b).ok()?.checked_mul(BLOCK)?;
    image.get(at..at + BLOCK)
}

fn with_prefix(mut p: Vec<u8>, bytes: &[u8]) -> Vec<u8> {
    p.extend_from_slice(bytes);
    p
}

/// The physical blocks of `inode`'s extent tree nodes below the root, and its mappings
/// `(logical, physical, len)`, read from `image`.
fn walk_extents(
    image: &[u8],
    sb: &Superblock,
    inode: &Inode,
    nodes: &mut Vec<u64>,
) -> Vec<(u32, u64, u16)> {
    let mut maps = Vec::new();
    let root = Location::ExtentRoot { ino: inode.ino };
    let Ok(node) = ExtentNode::decode(&inode.block, root, sb.blocks_count) else {
        return maps;
    };
    let mut stack = vec![node];
    while let Some(node) = stack.pop() {
        match node.entries {
            ExtentEntries::Leaf(extents) => maps.extend(
                extents
                    .iter()
                    .map(|e| (e.first_logical_block, e.start_block, e.len_blocks)),
            ),
            ExtentEntries::Index(children) => {
                for c in children {
                    let at = Location::ExtentBlock {
                        ino: inode.ino,
                        block: c.child_block,
                    };
                    let Some(raw) = block(image, c.child_block) else {
                        continue;
                    };
                    if let Ok(child) = ExtentNode::decode(raw, at, sb.blocks_count) {
                        nodes.push(c.child_block);
                        stack.push(child);
                    }
                }
            }
        }
    }
    maps
}

/// Every seed of `image` (a whole clean ext4 image with 4 KiB blocks and `metadata_csum`).
/// Returns `None` when the superblock does not decode.
pub fn from_image(image: &[u8]) -> Option<Ext4Seeds> {
    let sb_raw = image.get(1024..2048)?;
    let sb = Superblock::decode(sb_raw).ok()?;
    let fs_seed = sb.csum_seed();
    let mut s = Ext4Seeds {
        superblock: vec![sb_raw.to_vec()],
        ..Ext4Seeds::default()
    };
    let mut tables = Vec::new();
    for g in 0..sb.group_count() {
        let off = usize::try_from(sb.group_desc_offset_bytes(g)?).ok()?;
        let raw = image.get(off..off + usize::from(sb.desc_size_bytes))?;
        let desc = GroupDesc::decode(raw, g, sb.desc_size_bytes, sb.blocks_count, Some(fs_seed));
        tables.push(desc.ok()?.inode_table_block);
        let p = prefix::group_desc(fs_seed, g, sb.desc_size_bytes, sb.blocks_count);
        s.group_desc.push(with_prefix(p, raw));
    }
    let isize = usize::from(sb.inode_size_bytes);
    for ino in 1..=sb.inodes_count {
        let (group, index) = sb.inode_group_index(ino)?;
        let table = *tables.get(group as usize)?;
        let off = usize::try_from(table).ok()? * BLOCK + index as usize * isize;
        let raw = image.get(off..off + isize)?;
        let Ok(inode) = Inode::decode(raw, ino, Some(fs_seed)) else {
            continue;
        };
        if inode.mode == 0 {
            continue;
        }
        s.inode
            .push(with_prefix(prefix::seed_ino(fs_seed, ino), raw));
        if !inode.uses_extents() {
            continue;
        }
        let iseed = inode.csum_seed(fs_seed);
        let extent_prefix = || {
            let mut p = prefix::seed_ino(iseed, ino);
            p.extend(sb.blocks_count.to_le_bytes());
            p
        };
        s.extent_node
            .push(with_prefix(extent_prefix(), &inode.block));
        let mut nodes = Vec::new();
        let maps = walk_extents(image, &sb, &inode, &mut nodes);
        for n in nodes {
            s.extent_node
                .push(with_prefix(extent_prefix(), block(image, n)?));
        }
        if !inode.is_dir() {
            continue;
        }
        for (logical, physical, len) in maps {
            for i in 0..u64::from(len) {
                let raw = block(image, physical + i)?;
                let seed = with_prefix(prefix::seed_ino(iseed, ino), raw);
                if logical == 0 && i == 0 && inode.flags & EXT4_INDEX_FL != 0 {
                    s.dx_block.push(seed);
                    // mke2fs images this small hold no `dx_node`: one with the root's entries.
                    let at = Location::DirBlock { ino, block: 7 };
                    if let Ok(root) = DxRoot::decode(raw, at, Some(iseed)) {
                        let limit = DxKind::Node.limit(BLOCK as u32, true);
                        let node = DxNode {
                            limit,
                            entries: root.entries,
                        };
                        let mut b = vec![0u8; BLOCK];
                        if node.encode_into(&mut b, at, Some(iseed)).is_ok() {
                            s.dx_block
                                .push(with_prefix(prefix::seed_ino(iseed, ino), &b));
                        }
                    }
                } else {
                    s.dir_block.push(seed);
                }
            }
        }
    }
    for v in [
        &mut s.group_desc,
        &mut s.inode,
        &mut s.extent_node,
        &mut s.dir_block,
        &mut s.dx_block,
    ] {
        v.truncate(PER_TARGET_MAX);
    }
    Some(s)
}
