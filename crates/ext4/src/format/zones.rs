//! System zones: the blocks that hold file-system metadata at fixed places, which no file may
//! map or free (the kernel's `block_validity.c`, `ext4_inode_block_valid`).
//!
//! A zone is a superblock copy with its descriptor table and reserved GDT blocks, a block or
//! inode bitmap, an inode table, or (added by the caller) the journal. An extent that overlaps
//! a zone is corruption: reading it would return metadata as file data, and freeing or
//! reallocating it would overwrite metadata (found by the corrupted-image campaign: an extent
//! pointed at an inode-table block, whose unlink freed it for reuse as file data).
//!
//! # Promises
//! - [`SystemZones::overlaps`] is exact for the zones added, in O(log n).
//! - Built only from decoded structures; never panics on their values (ranges saturate).

use super::bitmap::{base_meta_blocks, group_first_block, inode_table_blocks};
use super::group::GroupDesc;
use super::superblock::Superblock;

/// The metadata blocks of a file system as sorted, merged `[start, end)` ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemZones {
    ranges: Vec<(u64, u64)>,
}

impl SystemZones {
    /// The zones of every group: superblock copies and descriptor tables, bitmaps, inode
    /// tables.
    pub fn new(sb: &Superblock, groups: &[GroupDesc]) -> SystemZones {
        let itable = inode_table_blocks(sb);
        let mut ranges = Vec::with_capacity(groups.len() * 4);
        for desc in groups {
            let first = group_first_block(sb, desc.group);
            let base = u64::from(base_meta_blocks(sb, desc.group));
            if base > 0 {
                ranges.push((first, first.saturating_add(base)));
            }
            for (start, len) in [
                (desc.block_bitmap_block, 1),
                (desc.inode_bitmap_block, 1),
                (desc.inode_table_block, itable),
            ] {
                ranges.push((start, start.saturating_add(len)));
            }
        }
        let mut zones = SystemZones { ranges: Vec::new() };
        zones.extend(ranges);
        zones
    }

    /// Adds `[start, start + len)` (e.g. the journal's extents).
    pub fn add(&mut self, start: u64, len: u64) {
        self.extend([(start, start.saturating_add(len))]);
    }

    fn extend(&mut self, more: impl IntoIterator<Item = (u64, u64)>) {
        self.ranges.extend(more.into_iter().filter(|(s, e)| s < e));
        self.ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.ranges.len());
        for (s, e) in self.ranges.drain(..) {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.ranges = merged;
    }

    /// True if any block of `[start, start + len)` is a system block.
    pub fn overlaps(&self, start: u64, len: u64) -> bool {
        let end = start.saturating_add(len);
        if len == 0 {
            return false;
        }
        // The first range ending after `start` is the only candidate.
        let i = self.ranges.partition_point(|&(_, e)| e <= start);
        self.ranges.get(i).is_some_and(|&(s, _)| s < end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_is_exact_at_range_edges() {
        let mut z = SystemZones::default();
        z.add(10, 5); // 10..15
        z.add(20, 1); // 20
        z.add(14, 3); // merges: 10..17
        assert_eq!(z.ranges, vec![(10, 17), (20, 21)]);
        assert!(!z.overlaps(0, 10));
        assert!(z.overlaps(0, 11));
        assert!(z.overlaps(16, 1));
        assert!(!z.overlaps(17, 3));
        assert!(z.overlaps(17, 4));
        assert!(!z.overlaps(21, u64::MAX));
        assert!(!z.overlaps(12, 0));
        assert!(!z.overlaps(u64::MAX - 1, 5));
    }
}
