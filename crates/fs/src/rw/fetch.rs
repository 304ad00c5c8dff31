//! Blocks an operation needs, read from the device *outside* the state lock.
//!
//! # Protocol (read unlocked, revalidate under the lock, retry)
//! An operation runs on the mutator under the state lock with a [`MemoryBlocks`] reader, which
//! never touches the device: it serves a block from the data not yet home
//! ([`super::state::State::unhomed`]), else from the blocks fetched for this operation
//! ([`Fetched`]), else it records the block as missing and fails. An operation is all-or-nothing
//! (`Mutator::atomic`), so the failed attempt changed nothing but the metadata blocks it read
//! (those stay cached: they are what the disk holds). The caller drops the lock, reads the
//! missing blocks through its own queue, takes the lock again and runs the operation afresh
//! with them (`RwShared::run_locked`). A path walk over cold directories takes one round per
//! level, as the kernel's does.
//!
//! # Why a fetched block is still right when it is used
//! - *Metadata*: the mutator's [`crate::MetaBlocks`] is the truth for every block it holds,
//!   never evicts, and asks the reader only for a block it does not hold. A block whose home
//!   copy changes (checkpoint) was held there before it changed, so a fetched copy of it is
//!   never asked for again.
//! - *File data* (the old contents under a partial-block write or a truncate's tail): its
//!   home copy changes only by a write of a block that was in `unhomed` (a commit's or data
//!   sync's in-place write, a `data=journal` checkpoint), and every block leaving `unhomed` is
//!   logged in the [`HomeLog`]. A fetched block is used only if the log shows no block of the
//!   fetch left `unhomed` since the fetch started; otherwise all are read again.
//! - The fetch is stamped under the lock, before it is dropped, so a write home that starts
//!   after the attempt and completes before the retry is always seen in the log.
//!
//! # Invariants
//! - No device I/O under the state lock for an operation's reads (the one exception is mount,
//!   which runs before any other thread can take the lock).
//! - A fetched block is served only to the operation that fetched it, and only while the
//!   [`HomeLog`] vouches for it.

use std::collections::{HashMap, VecDeque};

use aios_device::Device;
use aios_ext4::Location;

use super::unhomed::Unhomed;
use crate::write::BlockRead;
use crate::{FsBlocks, FsError};
use std::collections::BTreeMap;

/// Blocks leaving `unhomed` remembered by the [`HomeLog`]: far more than leave it during one
/// fetch (a few device reads), so a fetch is rarely thrown away for the log's size alone.
pub(super) const HOME_LOG_ENTRIES: usize = 4096;

/// The most recent blocks whose home copy may have changed, with a sequence number each.
#[derive(Debug, Default)]
pub(super) struct HomeLog {
    /// Sequence number of the last entry (0: none yet).
    seq: u64,
    recent: VecDeque<(u64, u64)>,
    /// A fetch stamped before this is stale whatever it read ([`HomeLog::barrier`]).
    barrier: u64,
}

impl HomeLog {
    /// The stamp a fetch starting now carries.
    pub(super) fn stamp(&self) -> u64 {
        self.seq
    }

    /// Block `block` left `unhomed`: its home copy changed or is about to be reused.
    pub(super) fn note(&mut self, block: u64) {
        self.seq += 1;
        self.recent.push_back((self.seq, block));
        if self.recent.len() > HOME_LOG_ENTRIES {
            self.recent.pop_front();
        }
    }

    /// Home copies of blocks not listed may have changed (a checkpoint wrote metadata home):
    /// every fetch that started before now is stale.
    pub(super) fn barrier(&mut self) {
        self.seq += 1;
        self.barrier = self.seq;
    }

    /// True if no block of `blocks` left `unhomed` after `stamp` (false too when the log no
    /// longer reaches back that far, or a barrier came after `stamp`).
    pub(super) fn unchanged_since(&self, stamp: u64, blocks: impl Fn(u64) -> bool) -> bool {
        if self.seq == stamp {
            return true;
        }
        if stamp < self.barrier {
            return false;
        }
        match self.recent.front() {
            Some(&(first, _)) if first <= stamp + 1 => {}
            _ => return false,
        }
        self.recent
            .iter()
            .rev()
            .take_while(|(seq, _)| *seq > stamp)
            .all(|(_, block)| !blocks(*block))
    }
}

/// Blocks read for one operation outside the lock, and the [`HomeLog`] stamp of that read.
#[derive(Debug, Default)]
pub(super) struct Fetched {
    stamp: u64,
    blocks: HashMap<u64, Vec<u8>>,
}

impl Fetched {
    /// True if nothing was fetched yet (an operation's first attempt).
    pub(super) fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Drops every block if any may have changed at home since it was read; false if it did.
    pub(super) fn revalidate(&mut self, log: &HomeLog) -> bool {
        if self.blocks.is_empty()
            || log.unchanged_since(self.stamp, |b| self.blocks.contains_key(&b))
        {
            return true;
        }
        self.blocks.clear();
        false
    }

    /// Reads `missing` from the device (no lock held), stamped `stamp`, added to what was
    /// fetched before.
    pub(super) fn fetch<D: Device>(
        &mut self,
        reader: &mut FsBlocks<'_, D>,
        missing: &[(u64, Location)],
        stamp: u64,
    ) -> Result<(), FsError> {
        if self.blocks.is_empty() {
            self.stamp = stamp;
        }
        // Older blocks keep their older stamp: the stamp is the oldest read's.
        for &(block, at) in missing {
            let bytes = reader.read_block(block, at)?;
            self.blocks.insert(block, bytes);
        }
        Ok(())
    }
}

/// The reader of an operation under the state lock: memory only (see the module doc).
pub(super) struct MemoryBlocks<'a> {
    pub(super) unhomed: &'a BTreeMap<u64, Unhomed>,
    pub(super) fetched: &'a Fetched,
    /// Blocks asked for and not in memory, in the order asked.
    pub(super) missing: Vec<(u64, Location)>,
}

impl BlockRead for MemoryBlocks<'_> {
    fn read_block(&mut self, block: u64, at: Location) -> Result<Vec<u8>, FsError> {
        if let Some(u) = self.unhomed.get(&block) {
            return Ok(u.page.bytes().to_vec());
        }
        if let Some(bytes) = self.fetched.blocks.get(&block) {
            return Ok(bytes.clone());
        }
        if !self.missing.iter().any(|(b, _)| *b == block) {
            self.missing.push((block, at));
        }
        Err(FsError::NotInMemory { block })
    }
}

#[cfg(test)]
mod tests {
    use super::{HomeLog, HOME_LOG_ENTRIES};
    use crate::rw::test_mount::{mount, options};
    use crate::rw::RwFs;
    use aios_device::fault::{FaultPlan, OpFilter};
    use aios_device::{Device, BLOCK_SIZE};
    use aios_device_emu::EmuDevice;
    use std::sync::Arc;

    /// Unmounts and mounts again: every metadata block is cold.
    fn remount(fs: RwFs<EmuDevice>) -> RwFs<EmuDevice> {
        let (dev, result) = fs.unmount();
        result.unwrap();
        RwFs::mount(dev, options()).unwrap()
    }

    #[test]
    fn a_partial_write_never_uses_a_fetched_block_that_went_home_meanwhile() {
        let Some(mut fs) = mount() else { return };
        fs.create("/f", 0o644).unwrap();
        fs.write("/f", 0, &[b'a'; BLOCK_SIZE]).unwrap();
        fs.fsync("/f").unwrap();
        // The block is home, in no dirty list: the next partial write must fetch it. While
        // the fetch is in hand (lock dropped), another thread overwrites other bytes of the
        // same block and makes them durable, which writes the block home anew.
        let shared = Arc::clone(&fs.shared);
        *fs.shared.after_fetch.lock().unwrap() = Some(Box::new(move || {
            let mut ctx = shared.ctx().unwrap();
            shared.write(&mut ctx, "/f", 100, b"other").unwrap();
            shared.fdatasync(&mut ctx, "/f").unwrap();
        }));
        let before = fs.stats();
        fs.write("/f", 10, b"mine").unwrap();
        let stats = fs.stats().since(&before);
        assert_eq!(stats.fetches_stale, 1, "the race was staged");
        let mut out = vec![0u8; BLOCK_SIZE];
        assert_eq!(fs.read("/f", 0, &mut out).unwrap(), BLOCK_SIZE);
        assert_eq!(&out[10..14], b"mine");
        assert_eq!(&out[100..105], b"other", "the stale fetched copy was used");
        assert!(out[..10].iter().all(|&b| b == b'a'));
    }

    #[test]
    fn cold_metadata_is_read_with_the_state_lock_dropped() {
        let Some(mut fs) = mount() else { return };
        fs.mkdir("/a", 0o755).unwrap();
        fs.mkdir("/a/b", 0o755).unwrap();
        fs.create("/a/b/f", 0o644).unwrap();
        fs.write("/a/b/f", 0, b"deep").unwrap();
        let mut fs = remount(fs);
        let shared = Arc::clone(&fs.shared);
        *fs.shared.after_fetch.lock().unwrap() = Some(Box::new(move || {
            // This thread fetched; had it kept the lock, this would fail (or deadlock).
            assert!(
                shared.state.try_lock().is_ok(),
                "fetched under the state lock"
            );
            let mut ctx = shared.ctx().unwrap();
            shared.create(&mut ctx, "/beside", 0o644).unwrap();
        }));
        let before = fs.stats();
        let mut out = [0u8; 4];
        assert_eq!(fs.read("/a/b/f", 0, &mut out).unwrap(), 4);
        assert_eq!(&out, b"deep");
        assert!(
            fs.stats().since(&before).blocks_fetched >= 3,
            "cold path walked"
        );
        assert!(fs.lookup("/beside").unwrap().is_some(), "the hook ran");
    }

    #[test]
    fn a_failed_fetch_fails_only_that_operation_and_changes_nothing() {
        let Some(mut fs) = mount() else { return };
        fs.mkdir("/d", 0o755).unwrap();
        fs.create("/d/x", 0o644).unwrap();
        let d = fs.lookup("/d").unwrap().unwrap();
        let blocks = {
            let (shared, ctx) = fs.parts();
            let mut st = shared.lock();
            shared
                .with_device_reads(&mut st, ctx, |m, r| m.extents(r, d))
                .unwrap()
        };
        let dir_block = blocks[0].start_block;
        let mut fs = remount(fs);
        let start = dir_block * BLOCK_SIZE as u64;
        fs.device().faults().arm(FaultPlan::range(
            start,
            start + BLOCK_SIZE as u64,
            OpFilter::Reads,
        ));
        assert!(
            fs.create("/d/y", 0o644).is_err(),
            "the directory is unreadable"
        );
        assert!(
            !fs.is_read_only(),
            "a failed read is that operation's error"
        );
        fs.device().faults().disarm();
        fs.create("/d/y", 0o644).unwrap();
        assert!(fs.lookup("/d/x").unwrap().is_some());
        assert!(fs.lookup("/d/y").unwrap().is_some());
    }

    #[test]
    fn a_fetch_stays_valid_while_no_block_of_it_goes_home() {
        let mut log = HomeLog::default();
        log.note(7);
        let stamp = log.stamp();
        assert!(log.unchanged_since(stamp, |_| true), "nothing since");
        log.note(8);
        log.note(9);
        assert!(log.unchanged_since(stamp, |b| b == 7 || b == 10));
        assert!(!log.unchanged_since(stamp, |b| b == 9));
        assert!(
            !log.unchanged_since(stamp - 1, |b| b == 7),
            "7 went home after an earlier stamp"
        );
    }

    #[test]
    fn a_fetch_older_than_the_log_is_never_trusted() {
        let mut log = HomeLog::default();
        let stamp = log.stamp();
        for b in 0..HOME_LOG_ENTRIES as u64 {
            log.note(1_000_000 + b);
        }
        assert!(
            log.unchanged_since(stamp, |b| b == 5),
            "log still reaches back"
        );
        log.note(1);
        assert!(
            !log.unchanged_since(stamp, |b| b == 5),
            "the entries right after the stamp are forgotten: unknown"
        );
    }
}
