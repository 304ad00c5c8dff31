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
//! - The cached copy is the truth: nothing else may write metadata blocks home behind this
//!   map's back except what `take_dirty` returned (through the journal).
//! - A block leaves the map (eviction, [`MetaBlocks::trim`]) only while its home copy is the
//!   truth too: not dirty, not pinned, and not sealed by a transaction whose checkpoint has not
//!   completed ([`MetaBlocks::home_through`]). Reading it again from home then gives the same
//!   bytes. Until the caller says checkpoints happened, nothing sealed is ever evicted.
//!
//! # Bound
//! With [`MetaBlocks::set_cap`], [`MetaBlocks::trim`] (which the owner calls between
//! operations: the read-write mount before an operation's first attempt) cuts the map to nine
//! tenths of the cap when it holds more, evicting only blocks as above: the map holds at most
//! the cap plus one operation's blocks, plus what cannot be evicted (dirty, pinned, sealed and
//! not yet home).
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
    /// Calls of `take_dirty` so far: the seal generation.
    sealed_gen: u64,
    /// Sealed blocks whose home copy may be older: block -> generation of its last seal.
    /// Entries at or below `home_gen` are dropped (their checkpoint completed).
    not_home: HashMap<u64, u64>,
    home_gen: u64,
    /// Never evicted (what sealing rewrites without an operation having read it).
    pinned: BTreeSet<u64>,
    /// Most blocks kept before `begin` trims (`None`: no bound).
    cap: Option<usize>,
    /// Blocks evicted so far.
    evicted: u64,
}

/// A block's state before the running operation first changed it.
type Saved = (Option<Box<[u8]>>, bool);

impl MetaBlocks {
    /// An empty map for a file system of `blocks_count` blocks.
    pub fn new(blocks_count: u64) -> Self {
        MetaBlocks {
            blocks_count,
            ..MetaBlocks::default()
        }
    }

    /// Bounds the map to about `blocks` blocks (see the module doc).
    pub fn set_cap(&mut self, blocks: usize) {
        self.cap = Some(blocks);
    }

    /// Never evicts `block`.
    pub fn pin(&mut self, block: u64) {
        self.pinned.insert(block);
    }

    /// The generation the next [`MetaBlocks::take_dirty`] seals at, minus one: the last one.
    pub fn sealed_generation(&self) -> u64 {
        self.sealed_gen
    }

    /// Every block sealed at generation `generation` or before is home (its transaction's
    /// checkpoint completed, or a later one wrote it).
    pub fn home_through(&mut self, generation: u64) {
        if generation > self.home_gen {
            self.home_gen = generation;
            self.not_home.retain(|_, g| *g > generation);
        }
    }

    /// Blocks held now, and blocks evicted so far.
    pub fn counts(&self) -> (usize, u64) {
        (self.blocks.len(), self.evicted)
    }

    /// Starts recording undo state (see the module doc); a running record is kept.
    pub fn begin(&mut self) {
        self.undo.get_or_insert_with(HashMap::new);
    }

    /// Evicts blocks whose home copy is the truth until nine tenths of the cap are left (or
    /// nothing more may go).
    pub fn trim(&mut self) {
        let Some(cap) = self.cap else { return };
        if self.blocks.len() <= cap || self.undo.is_some() {
            return;
        }
        let excess = self.blocks.len() - cap * 9 / 10;
        let victims: Vec<u64> = self
            .blocks
            .keys()
            .filter(|b| {
                !self.dirty.contains(b)
                    && !self.pinned.contains(b)
                    && !self.not_home.contains_key(b)
            })
            .take(excess)
            .copied()
            .collect();
        for b in &victims {
            self.blocks.remove(b);
        }
        self.evicted += victims.len() as u64;
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
        self.sealed_gen += 1;
        let out: Vec<(u64, Box<[u8]>)> = dirty
            .into_iter()
            .filter_map(|b| self.blocks.get(&b).map(|bytes| (b, bytes.clone())))
            .collect();
        for (b, _) in &out {
            self.not_home.insert(*b, self.sealed_gen);
        }
        out
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
