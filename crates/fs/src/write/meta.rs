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
//! # Undo (all-or-nothing operations)
//! [`MetaBlocks::begin`] starts recording: the first time a block is changed, forgotten or
//! installed afterwards, its previous state (bytes or absence, dirty or not) is saved once.
//! [`MetaBlocks::rollback`] puts every saved state back, so the map is exactly as at `begin`
//! (blocks merely *read* since then stay cached: they are what the disk holds);
//! [`MetaBlocks::commit`] drops the record. Recording costs one copy per block touched.
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
    /// While recording: block -> (bytes before, was dirty), saved at the first change.
    undo: Option<HashMap<u64, Saved>>,
}

/// A block's state before the running operation first changed it.
type Saved = (Option<Box<[u8]>>, bool);

impl MetaBlocks {
    /// An empty map for a file system of `blocks_count` blocks.
    pub fn new(blocks_count: u64) -> Self {
        MetaBlocks {
            blocks: HashMap::new(),
            dirty: BTreeSet::new(),
            blocks_count,
            undo: None,
        }
    }

    /// Starts recording undo state (see the module doc); a running record is kept.
    pub fn begin(&mut self) {
        self.undo.get_or_insert_with(HashMap::new);
    }

    /// Whether an undo record is running.
    pub fn recording(&self) -> bool {
        self.undo.is_some()
    }

    /// Keeps every change since [`MetaBlocks::begin`] and stops recording.
    pub fn commit(&mut self) {
        self.undo = None;
    }

    /// Restores every block changed since [`MetaBlocks::begin`] and stops recording.
    pub fn rollback(&mut self) {
        for (block, (bytes, was_dirty)) in self.undo.take().unwrap_or_default() {
            match bytes {
                Some(b) => {
                    self.blocks.insert(block, b);
                }
                None => {
                    self.blocks.remove(&block);
                }
            }
            if was_dirty {
                self.dirty.insert(block);
            } else {
                self.dirty.remove(&block);
            }
        }
    }

    /// Saves `block`'s state before its first change under a running record.
    fn save(&mut self, block: u64) {
        if let Some(undo) = &mut self.undo {
            if let std::collections::hash_map::Entry::Vacant(slot) = undo.entry(block) {
                slot.insert((
                    self.blocks.get(&block).cloned(),
                    self.dirty.contains(&block),
                ));
            }
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
        self.save(block);
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
        self.save(block);
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
        self.save(block);
        self.blocks.remove(&block);
        self.dirty.remove(&block);
    }

    /// Marks `block` clean again (a block installed from computed contents equal to what the
    /// disk means, e.g. an uninitialised bitmap).
    pub fn take_dirty_one(&mut self, block: u64) {
        self.save(block);
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

    #[test]
    fn rollback_restores_changed_installed_and_forgotten_blocks() {
        let mut m = MetaBlocks::new(10);
        let mut r = Fake(0);
        let at = Location::Superblock;
        m.get_mut(&mut r, 1, at).unwrap()[0] = 7;
        m.get(&mut r, 2, at).unwrap();
        m.begin();
        m.get_mut(&mut r, 1, at).unwrap()[0] = 8;
        m.get_mut(&mut r, 2, at).unwrap()[0] = 8;
        m.fresh(3, at).unwrap()[0] = 8;
        m.forget(1);
        m.get(&mut r, 4, at).unwrap();
        m.rollback();
        assert!(!m.recording());
        assert_eq!(m.get(&mut r, 1, at).unwrap()[0], 7);
        assert_eq!(m.get(&mut r, 2, at).unwrap()[0], 2);
        assert_eq!(m.dirty_count(), 1, "only block 1 was dirty before begin");
        assert_eq!(m.take_dirty()[0].0, 1);
        let reads = r.0;
        assert_eq!(
            m.get(&mut r, 3, at).unwrap()[0],
            3,
            "installed block dropped"
        );
        assert_eq!(r.0, reads + 1);
    }
}
