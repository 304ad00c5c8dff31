//! The shared state of a read-write mount and applying one operation to it.
//!
//! # Transaction ids
//! Transactions are numbered from 1; `running` is the one operations join, every id below it
//! has been sealed, and `committed` is the highest one whose commit completed (ids commit in
//! order). Per inode, three ids say what a sync of it still needs:
//! - `sync_tid`: the last transaction that changed the inode or its names (what `fsync` waits
//!   for);
//! - `datasync_tid`: the last one that changed what reading its data depends on: block map,
//!   unwritten flags, size, creation (what `fdatasync` waits for in `data=ordered`);
//! - `data_tid`: the last one that dirtied its data. Dirty blocks of the running transaction
//!   are also listed per inode in `dirty` (what a data-only sync writes).
//!
//! Entries at or below `committed` say nothing more and are pruned at each commit.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, MutexGuard};
use std::time::Instant;

use aios_device::Device;
use aios_ext4::Location;
use aios_journal::runtime::{Journal, Replayed};

use super::{RwCtx, RwError, RwShared, RwStats};
use crate::error::display_path;
use crate::{BlockRead, FsBlocks, FsError, Mutator};

/// See the module documentation.
pub(super) struct State {
    pub(super) mutator: Mutator,
    /// `None` while a thread leads a commit or a data sync with it.
    pub(super) journal: Option<Journal>,
    /// The first failure, once the mount is read-only.
    pub(super) failed: Option<Arc<str>>,
    pub(super) stats: RwStats,
    pub(super) running: u64,
    pub(super) committed: u64,
    /// When the running transaction got its first change (`None`: it has none).
    pub(super) running_since: Option<Instant>,
    pub(super) sync_tid: HashMap<u32, u64>,
    pub(super) datasync_tid: HashMap<u32, u64>,
    pub(super) data_tid: HashMap<u32, u64>,
    /// The running transaction's dirty data blocks, by inode.
    pub(super) dirty: HashMap<u32, BTreeSet<u64>>,
    /// Inodes whose `fdatasync` waits for a data-only sync (a leader takes them along).
    pub(super) datasync_wanted: BTreeSet<u32>,
    /// `data=journal`: data blocks sealed into a transaction and not yet written home by a
    /// checkpoint, with the id of that transaction (reads must see these, not home).
    pub(super) journaled: BTreeMap<u64, (u64, Arc<[u8]>)>,
    pub(super) replayed: Option<Replayed>,
}

impl State {
    pub(super) fn new(mutator: Mutator, journal: Journal, replayed: Option<Replayed>) -> Self {
        State {
            mutator,
            journal: Some(journal),
            failed: None,
            stats: RwStats::default(),
            running: 1,
            committed: 0,
            running_since: None,
            sync_tid: HashMap::new(),
            datasync_tid: HashMap::new(),
            data_tid: HashMap::new(),
            dirty: HashMap::new(),
            datasync_wanted: BTreeSet::new(),
            journaled: BTreeMap::new(),
            replayed,
        }
    }

    /// Records what an operation that returned `Ok` touched, in the running transaction.
    fn note(&mut self, touched: Touched) {
        let tid = self.running;
        for ino in touched.sync {
            self.sync_tid.insert(ino, tid);
        }
        for ino in touched.datasync {
            self.sync_tid.insert(ino, tid);
            self.datasync_tid.insert(ino, tid);
        }
        for (ino, blocks) in touched.data {
            self.sync_tid.insert(ino, tid);
            self.data_tid.insert(ino, tid);
            self.dirty.entry(ino).or_default().extend(blocks);
        }
        if self.running_since.is_none() && self.mutator.has_changes() {
            self.running_since = Some(Instant::now());
        }
    }

    /// Forgets ids that a completed commit made meaningless.
    pub(super) fn prune(&mut self) {
        let c = self.committed;
        self.sync_tid.retain(|_, t| *t > c);
        self.datasync_tid.retain(|_, t| *t > c);
        self.data_tid.retain(|_, t| *t > c);
    }
}

/// What an operation changed, for the sync decisions (see the module documentation).
#[derive(Debug, Default)]
pub(super) struct Touched {
    /// Inodes whose attributes or names changed.
    pub(super) sync: Vec<u32>,
    /// Inodes whose block map, size or existence changed.
    pub(super) datasync: Vec<u32>,
    /// Inodes with newly dirtied data blocks (an in-place overwrite when only here).
    pub(super) data: Vec<(u32, Vec<u64>)>,
}

/// Blocks for the mutator: `data=journal` blocks not yet home first, then the device.
pub(super) struct RwBlocks<'a, D: Device> {
    pub(super) inner: FsBlocks<'a, D>,
    pub(super) journaled: &'a BTreeMap<u64, (u64, Arc<[u8]>)>,
}

impl<D: Device> BlockRead for RwBlocks<'_, D> {
    fn read_block(&mut self, block: u64, at: Location) -> Result<Vec<u8>, FsError> {
        match self.journaled.get(&block) {
            Some((_, bytes)) => Ok(bytes.to_vec()),
            None => self.inner.read_block(block, at),
        }
    }
}

impl<D: Device> RwShared<D> {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A thread that panicked while holding the lock left the mutator mid-operation: the
        // mount is unusable, but the panic is reported where it happened, not here again.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Fails with [`RwError::ReadOnly`] once an earlier failure made the mount read-only.
    pub(super) fn check_writable(st: &State, op: &'static str, path: &[u8]) -> Result<(), RwError> {
        match &st.failed {
            Some(first) => Err(RwError::ReadOnly {
                op,
                path: display_path(path),
                first: Arc::clone(first),
            }),
            None => Ok(()),
        }
    }

    /// Makes the mount read-only with `e` as the first failure (if it is) and returns `e`.
    pub(super) fn fail(&self, st: &mut State, e: RwError) -> RwError {
        st.failed.get_or_insert_with(|| Arc::from(e.to_string()));
        self.changed.notify_all();
        e
    }

    /// Counters so far.
    pub fn stats(&self) -> RwStats {
        self.lock().stats
    }

    /// True once a failure made the mount read-only.
    pub fn is_read_only(&self) -> bool {
        self.lock().failed.is_some()
    }

    /// What mount-time recovery replayed (`None`: the file system was clean).
    pub fn replayed(&self) -> Option<Replayed> {
        self.lock().replayed.clone()
    }

    /// Runs `f` on the mutator without changing anything (lookups).
    pub(super) fn read_op<T>(
        &self,
        ctx: &mut RwCtx<D>,
        op: &'static str,
        path: &[u8],
        f: impl FnOnce(&mut Mutator, &mut dyn BlockRead) -> Result<T, FsError>,
    ) -> Result<T, RwError> {
        let mut st = self.lock();
        let State {
            mutator, journaled, ..
        } = &mut *st;
        let mut r = RwBlocks {
            inner: FsBlocks {
                fs: &self.fs,
                io: &mut ctx.io,
            },
            journaled,
        };
        f(mutator, &mut r).map_err(|cause| RwError::Op {
            op,
            path: display_path(path),
            cause,
        })
    }

    /// Runs operation `f` in the running transaction (see the module documentation), then
    /// commits if `-o sync` or the transaction's limits say so.
    pub(super) fn apply<T>(
        &self,
        ctx: &mut RwCtx<D>,
        op: &'static str,
        path: &[u8],
        f: impl FnOnce(&mut Mutator, &mut dyn BlockRead, &mut Touched) -> Result<T, FsError>,
    ) -> Result<T, RwError> {
        let mut st = self.lock();
        Self::check_writable(&st, op, path)?;
        let mut touched = Touched::default();
        let result = {
            let State {
                mutator, journaled, ..
            } = &mut *st;
            let mut r = RwBlocks {
                inner: FsBlocks {
                    fs: &self.fs,
                    io: &mut ctx.io,
                },
                journaled,
            };
            f(mutator, &mut r, &mut touched)
        };
        let value = result.map_err(|cause| RwError::Op {
            op,
            path: display_path(path),
            cause,
        })?;
        st.note(touched);
        let over = st.mutator.dirty_meta_blocks()
            + match self.options.data {
                super::DataMode::Ordered => 0,
                super::DataMode::Journal => st.mutator.dirty_data_blocks(),
            }
            > self.txn_blocks_max
            || st.mutator.dirty_data_blocks() > self.dirty_blocks_max;
        if self.options.sync || over {
            self.sync_all(ctx, st, op, path)?;
        }
        Ok(value)
    }
}
