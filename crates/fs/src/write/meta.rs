//! `MetaBlocks`: the block-keyed map of metadata blocks the write path modifies in place.
//!
//! # Role
//! Every metadata block an operation touches (superblock block 0, group descriptor blocks,
//! bitmaps, inode-table blocks, directory, extent and htree blocks) is read once through a
//! [`BlockRead`] (the existing `IoCtx` path, see [`super::FsBlocks`]) and kept here, keyed by its
//! file system block number. Mutations happen on these copies; [`MetaBlocks::get_mut`] and
//! [`MetaBlocks::fresh`] mark a block dirty, [`MetaBlocks::take_dirty`] hands the changed blocks
//! out (in block order) and starts a new dirty set.
//!
//! # Invariants
//! - Every cached block is exactly [`BLOCK_SIZE`] bytes and lies inside the file system.
//! - A block is read from the device at most once while cached: the cached copy is the truth,
//!   so nothing else may write metadata blocks home behind this map's back except what
//!   `take_dirty` returned.
//! - Checksums are *not* this map's business: structures with per-inode seeds are sealed by the
//!   operation that changes them, and bitmap/descriptor/superblock checksums by
//!   [`super::Mutator::take_changes`] before it calls `take_dirty`.
//!
//! # Ownership
//! One mutator at a time: the map is owned by the [`super::Mutator`], which callers share behind
//! a `Mutex` (no internal locking, no per-block locks yet).

use std::collections::{BTreeSet, HashMap};

use aios_device::BLOCK_SIZE;
use aios_ext4::Location;

use crate::FsError;

/// Reads one file system block (4 KiB) from the device.
pub trait BlockRead {
    /// The bytes of block `block`; `at` names the structure wanted, for errors.
    fn read_block(&mut self, block: u64, at: Location) -> Result<Vec<u8>, FsError>;
}

/// The cached metadata blocks and the dirty set of the running operation(s).
#[derive(Debug, Default)]
pub struct MetaBlocks {
    blocks: HashMap<u64, Box<[u8]>>,
    dirty: BTreeSet<u64>,
    blocks_count: u64,
}

impl MetaBlocks {
    /// An empty map for a file system of `blocks_count` blocks.
    pub fn new(blocks_count: u64) -> Self {
        MetaBlocks {
            blocks: HashMap::new(),
            dirty: BTreeSet::new(),
            blocks_count,
        }
    }

    fn load(&mut self, r: &mut dyn BlockRead, block: u64, at: Location) -> Result<(), FsError> {
        if block >= self.blocks_count {
            return Err(FsError::Corrupt {
                at,
                what: "metadata block outside the file system",
            });
        }
        if let std::collections::hash_map::Entry::Vacant(slot) = self.blocks.entry(block) {
            let bytes = r.read_block(block, at)?;
            if bytes.len() != BLOCK_SIZE {
                return Err(FsError::Corrupt {
                    at,
                    what: "short metadata block read",
                });
            }
            slot.insert(bytes.into_boxed_slice());
        }
        Ok(())
    }

    /// Block `block`, read on first use.
    pub fn get(
        &mut self,
        r: &mut dyn BlockRead,
        block: u64,
        at: Location,
    ) -> Result<&[u8], FsError> {
        self.load(r, block, at)?;
        self.blocks
            .get(&block)
            .map(|b| &b[..])
            .ok_or(FsError::Corrupt {
                at,
                what: "metadata block vanished from the cache",
            })
    }

    /// Block `block` for modification (read on first use); marks it dirty.
    pub fn get_mut(
        &mut self,
        r: &mut dyn BlockRead,
        block: u64,
        at: Location,
    ) -> Result<&mut [u8], FsError> {
        self.load(r, block, at)?;
        self.dirty.insert(block);
        self.blocks
            .get_mut(&block)
            .map(|b| &mut b[..])
            .ok_or(FsError::Corrupt {
                at,
                what: "metadata block vanished from the cache",
            })
    }

    /// A newly allocated metadata block: zeroed without reading the device, marked dirty.
    pub fn fresh(&mut self, block: u64, at: Location) -> Result<&mut [u8], FsError> {
        if block >= self.blocks_count {
            return Err(FsError::Corrupt {
                at,
                what: "new metadata block outside the file system",
            });
        }
        self.dirty.insert(block);
        let slot = self
            .blocks
            .entry(block)
            .or_insert_with(|| vec![0u8; BLOCK_SIZE].into_boxed_slice());
        slot.fill(0);
        Ok(&mut slot[..])
    }

    /// Replace block `block` with `bytes` if they differ (marking it dirty only then).
    pub fn put_if_changed(
        &mut self,
        r: &mut dyn BlockRead,
        block: u64,
        at: Location,
        bytes: &[u8],
    ) -> Result<(), FsError> {
        if self.get(r, block, at)? != bytes {
            self.get_mut(r, block, at)?.copy_from_slice(bytes);
        }
        Ok(())
    }

    /// Drop a freed block from the cache and the dirty set (its contents no longer matter; it
    /// may come back as data).
    pub fn forget(&mut self, block: u64) {
        self.blocks.remove(&block);
        self.dirty.remove(&block);
    }

    /// Marks `block` clean again (a block installed from computed contents equal to what the
    /// disk means, e.g. an uninitialised bitmap).
    pub fn take_dirty_one(&mut self, block: u64) {
        self.dirty.remove(&block);
    }

    /// Blocks changed since the last call.
    pub fn dirty_count(&self) -> usize {
        self.dirty.len()
    }

    /// The changed blocks in block order, copied out; the dirty set starts empty again.
    pub fn take_dirty(&mut self) -> Vec<(u64, Box<[u8]>)> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .filter_map(|b| self.blocks.get(&b).map(|bytes| (b, bytes.clone())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(u32);
    impl BlockRead for Fake {
        fn read_block(&mut self, block: u64, _at: Location) -> Result<Vec<u8>, FsError> {
            self.0 += 1;
            Ok(vec![block as u8; BLOCK_SIZE])
        }
    }

    #[test]
    fn reads_once_tracks_dirty_and_refuses_outside() {
        let mut m = MetaBlocks::new(10);
        let mut r = Fake(0);
        let at = Location::Superblock;
        assert_eq!(m.get(&mut r, 3, at).unwrap()[0], 3);
        m.get_mut(&mut r, 3, at).unwrap()[0] = 9;
        assert_eq!(r.0, 1);
        m.put_if_changed(&mut r, 4, at, &[4u8; BLOCK_SIZE]).unwrap();
        assert_eq!(m.dirty_count(), 1);
        m.fresh(5, at).unwrap()[1] = 1;
        let dirty = m.take_dirty();
        assert_eq!(dirty.iter().map(|d| d.0).collect::<Vec<_>>(), [3, 5]);
        assert_eq!(dirty[0].1[0], 9);
        assert_eq!(m.dirty_count(), 0);
        assert!(m.get(&mut r, 10, at).is_err());
        assert!(m.fresh(10, at).is_err());
    }
}
