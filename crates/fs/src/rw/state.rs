//! The shared state of a read-write mount and applying one operation to it.
//!
//! # Transaction ids
//! Transactions are numbered from 1; `running` is the one operations join, every id below it
//! has been sealed, and `committed` is the highest one whose commit completed (ids commit in
//! order). Per inode, two ids say which transaction a sync of it must wait for:
//! - `sync_tid`: the last transaction that changed the inode, its data or its names (what
//!   `fsync` waits for);
//! - `datasync_tid`: the last one that changed what reading its data depends on: block map,
//!   unwritten flags, size, creation (what `fdatasync` waits for in `data=ordered`).
//!
//! Entries at or below `committed` say nothing more and are pruned at each commit.
//!
//! Data is tracked by write sequence numbers, since a data-only sync makes data durable
//! without a commit: every write with blocks gets the next `write_seq`, kept as the inode's
//! `last_write`; `durable_write` is the highest sequence whose data is known durable (set when
//! the commit or data sync that took the inode's dirty blocks completes). The running
//! transaction's dirty blocks are listed per inode in `dirty`: an inode is there iff it has
//! data that no completed or in-flight commit, data sync or writeback took. A *writeback*
//! (`data=ordered`, past the dirty marks: the kernel's writeback of dirty pages) writes an
//! inode's dirty blocks in place without a flush; what it covered waits in `written_back`
//! until a flush issued after it completed (the next commit's or data sync's) makes it
//! durable.
//!
//! A sync snapshots its targets when it starts ([`Want`]), so writes made after it started
//! (by other threads) never keep it waiting.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, MutexGuard};
use std::time::Instant;

use aios_device::Device;
use aios_journal::runtime::{Journal, Replayed};

use super::fetch::{Fetched, HomeLog, MemoryBlocks};
use super::published::{Published, SIZE_UNKNOWN};
use super::unhomed::Unhomed;
use super::view::FileView;
use super::{RwCtx, RwError, RwShared, RwStats};
use crate::error::display_path;
use crate::{BlockRead, DataPage, FsBlocks, FsError, Mutator};

/// The state lock, still held, with an attempt's gate value and result (`run_locked`).
pub(super) type Locked<'a, G, T> = (MutexGuard<'a, State>, G, Result<T, FsError>);

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
    pub(super) write_seq: u64,
    pub(super) last_write: HashMap<u32, u64>,
    pub(super) durable_write: HashMap<u32, u64>,
    /// The running transaction's dirty data blocks, by inode.
    pub(super) dirty: HashMap<u32, BTreeSet<u64>>,
    /// Inodes whose dirty blocks a data-only sync or writeback in flight is writing. Data
    /// syncs of different inodes run concurrently (their blocks are disjoint); a commit starts
    /// only when this is empty, and a data sync only when no commit is in flight.
    pub(super) data_syncing: BTreeSet<u32>,
    /// Data written in place by completed writebacks and not flushed since (inode, write
    /// sequence covered): durable once a flush issued after those writes completed does.
    pub(super) written_back: Vec<(u32, u64)>,
    /// Syncs that have needed transaction `join.0` so far (`join.1`): its group.
    pub(super) join: (u64, usize),
    /// Per recent commit (the last [`GROUPS_KEPT`], a ring), its group plus the syncs that
    /// joined the next transaction while it ran: how many were syncing (see
    /// `sync::wait_for_group`).
    pub(super) recent_groups: RecentGroups,
    /// Moving average of a commit's duration, nanoseconds.
    pub(super) commit_avg_ns: u64,
    /// Open handles per inode (see `file`).
    pub(super) open_count: HashMap<u32, usize>,
    /// Open inodes whose last name was unlinked: on the orphan list until the last close.
    pub(super) orphaned_open: BTreeSet<u32>,
    /// Syncs waiting for a commit that data syncs in flight hold up: while any, no new data
    /// sync starts, so commits are not starved.
    pub(super) commits_wanted: usize,
    /// Inodes whose `fdatasync` waits for a data-only sync (a leader takes them along).
    pub(super) datasync_wanted: BTreeSet<u32>,
    /// Data blocks whose newest contents are not home yet: taken from the running transaction
    /// by a commit or data sync still in flight, or logged by `data=journal` and not yet
    /// checkpointed. Every read of a data block (read-modify-write, [`RwShared::read`]) sees
    /// these before the device, or it would read the old contents and lose the update.
    /// Entries leave only through [`State::homed`], [`State::forget_unhomed`] and
    /// [`State::checkpointed`], which log them in `home_log`.
    unhomed: BTreeMap<u64, Unhomed>,
    /// The blocks that left `unhomed` lately: what an operation's blocks fetched outside the
    /// lock are checked against (`fetch`).
    pub(super) home_log: HomeLog,
    /// Per committed transaction not yet checkpointed, the metadata seal generation it
    /// sealed at (`MetaBlocks::sealed_generation`): a checkpoint of it makes those blocks
    /// evictable (`checkpointed`).
    pub(super) sealed_gens: std::collections::VecDeque<(u64, u64)>,
    /// Per inode, the epoch of its data in the page cache's keys (0 if never changed while
    /// mounted): bumped by every operation that changes its data, size, block map or
    /// existence (`note`), so pages cached before a change are never found after it
    /// (`crate::cache_id::CacheId`). One entry per inode changed while mounted.
    pub(super) cache_epoch: HashMap<u32, u64>,
    /// Size and epoch of every open inode, for reads by handle without this lock (see
    /// `published`); an entry lives while the inode has open handles.
    pub(super) published: HashMap<u32, Arc<Published>>,
    /// Open regular files' inode and block map as of their current epoch (see `view`).
    pub(super) views: HashMap<u32, Arc<FileView>>,
    pub(super) replayed: Option<Replayed>,
}

/// How many recent commits' group sizes the batching looks at.
pub(super) const GROUPS_KEPT: usize = 8;

/// How many were syncing around each of the last [`GROUPS_KEPT`] commits (1 before any).
#[derive(Debug, Clone, Copy)]
pub(super) struct RecentGroups {
    sizes: [usize; GROUPS_KEPT],
    /// Where the next size goes.
    next: usize,
}

impl Default for RecentGroups {
    fn default() -> Self {
        RecentGroups {
            sizes: [1; GROUPS_KEPT],
            next: 0,
        }
    }
}

impl RecentGroups {
    /// The group the next commit waits to gather: the largest recent one (see
    /// `sync::wait_for_group`).
    pub(super) fn target(&self) -> usize {
        self.sizes.iter().copied().max().unwrap_or(1)
    }

    /// Records how many were syncing around a commit, forgetting the oldest record.
    pub(super) fn record(&mut self, syncing: usize) {
        if let Some(slot) = self.sizes.get_mut(self.next) {
            *slot = syncing;
        }
        self.next = (self.next + 1) % GROUPS_KEPT;
    }

    /// A batching wait ran out with only `joined` syncs: no record above that is trusted.
    pub(super) fn lower_to(&mut self, joined: usize) {
        for size in &mut self.sizes {
            *size = (*size).min(joined.max(1));
        }
    }
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
            write_seq: 0,
            last_write: HashMap::new(),
            durable_write: HashMap::new(),
            written_back: Vec::new(),
            sealed_gens: std::collections::VecDeque::new(),
            dirty: HashMap::new(),
            data_syncing: BTreeSet::new(),
            join: (0, 0),
            recent_groups: RecentGroups::default(),
            commit_avg_ns: 0,
            open_count: HashMap::new(),
            orphaned_open: BTreeSet::new(),
            commits_wanted: 0,
            datasync_wanted: BTreeSet::new(),
            unhomed: BTreeMap::new(),
            home_log: HomeLog::default(),
            cache_epoch: HashMap::new(),
            published: HashMap::new(),
            views: HashMap::new(),
            replayed,
        }
    }

    /// Records what an operation that returned `Ok` touched, in the running transaction.
    fn note(&mut self, touched: Touched) {
        let tid = self.running;
        // An inode whose data, size, block map or existence changed may read differently now:
        // pages cached before (or by reads planned before) must never be found again. Names
        // and attributes (`sync` alone) do not change what a read returns.
        for ino in touched.data_changed() {
            *self.cache_epoch.entry(ino).or_insert(0) += 1;
        }
        if let Some(ino) = touched.opened {
            *self.open_count.entry(ino).or_insert(0) += 1;
        }
        self.orphaned_open.extend(touched.orphaned);
        for ino in touched.sync {
            self.sync_tid.insert(ino, tid);
        }
        for ino in touched.datasync {
            self.sync_tid.insert(ino, tid);
            self.datasync_tid.insert(ino, tid);
        }
        for (ino, blocks) in touched.data {
            self.sync_tid.insert(ino, tid);
            if blocks.is_empty() {
                continue;
            }
            self.write_seq += 1;
            self.last_write.insert(ino, self.write_seq);
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
    }

    /// Takes the dirty-block lists of `inodes` (all of them: `None`) out of the running
    /// transaction; returns the blocks and, per inode, the write sequence they cover (for
    /// [`State::made_durable`] when the I/O completes).
    pub(super) fn take_dirty(&mut self, inodes: Option<&[u32]>) -> (Vec<u64>, Vec<(u32, u64)>) {
        let taken: Vec<(u32, BTreeSet<u64>)> = match inodes {
            None => self.dirty.drain().collect(),
            Some(list) => list
                .iter()
                .filter_map(|i| self.dirty.remove(i).map(|b| (*i, b)))
                .collect(),
        };
        let mut blocks = Vec::new();
        let mut covered = Vec::with_capacity(taken.len());
        for (ino, set) in taken {
            blocks.extend(set);
            covered.push((ino, self.last_write.get(&ino).copied().unwrap_or(0)));
        }
        (blocks, covered)
    }

    /// The data of `covered` (from [`State::take_dirty`]) is durable.
    pub(super) fn made_durable(&mut self, covered: &[(u32, u64)]) {
        for &(ino, seq) in covered {
            let d = self.durable_write.entry(ino).or_insert(0);
            *d = (*d).max(seq);
        }
    }

    /// True if written-back data of `ino` waits for a flush.
    pub(super) fn written_back_of(&self, ino: u32) -> bool {
        self.written_back.iter().any(|&(i, _)| i == ino)
    }

    /// Counts a sync that needs the running transaction into its group.
    pub(super) fn join_running(&mut self) {
        if self.join.0 != self.running {
            self.join = (self.running, 0);
        }
        self.join.1 += 1;
    }

    /// How many syncs need the running transaction so far.
    pub(super) fn joined(&self) -> usize {
        if self.join.0 == self.running {
            self.join.1
        } else {
            0
        }
    }

    /// Counts a sync in `commits_wanted` while `blocked` (its commit waits for data syncs),
    /// keeping `wanting` as that sync's own flag.
    pub(super) fn want_commit(&mut self, wanting: &mut bool, blocked: bool) {
        if blocked != *wanting {
            *wanting = blocked;
            if blocked {
                self.commits_wanted += 1;
            } else {
                self.commits_wanted -= 1;
            }
        }
    }

    /// True if a commit may start now: none in flight and no data sync writing.
    pub(super) fn can_commit(&self) -> bool {
        self.journal.is_some() && self.data_syncing.is_empty()
    }

    /// True if nothing is being written: no commit and no data sync in flight.
    pub(super) fn idle(&self) -> bool {
        self.can_commit()
    }

    /// What a sync of `ino` must wait for, as of now.
    pub(super) fn want(&self, ino: u32, meta: MetaWant) -> Want {
        let tids = match meta {
            MetaWant::All => &self.sync_tid,
            MetaWant::DataMapping => &self.datasync_tid,
        };
        Want {
            meta_tid: tids.get(&ino).copied().unwrap_or(0),
            write_seq: self.last_write.get(&ino).copied().unwrap_or(0),
        }
    }
}

/// Which metadata changes a sync needs committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MetaWant {
    /// Everything (`fsync`, and `fdatasync` in `data=journal`).
    All,
    /// What reading the data depends on (`fdatasync` in `data=ordered`).
    DataMapping,
}

/// A sync's targets, snapshot when it starts (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Want {
    /// This transaction must be committed.
    pub(super) meta_tid: u64,
    /// The inode's data up to this write sequence must be durable.
    pub(super) write_seq: u64,
}

impl State {
    /// Records blocks being taken out of the running transaction by a commit or data sync;
    /// [`State::homed`] takes the same blocks when that completes.
    pub(super) fn unhome(&mut self, blocks: &[(u64, Arc<DataPage>)], logged_by: Option<u64>) {
        for (block, page) in blocks {
            let page = Arc::clone(page);
            self.unhomed.insert(*block, Unhomed { page, logged_by });
        }
    }

    /// The in-place writes of `blocks` completed (or failed: the mount is then read-only):
    /// reads go home again, unless a later commit took a newer version meanwhile.
    pub(super) fn homed(&mut self, blocks: &[(u64, Arc<DataPage>)]) {
        for (block, page) in blocks {
            if self
                .unhomed
                .get(block)
                .is_some_and(|u| u.logged_by.is_none() && Arc::ptr_eq(&u.page, page))
            {
                self.unhomed.remove(block);
                self.home_log.note(*block);
            }
        }
    }

    /// Block `block` was freed by a committing transaction: its contents are no one's.
    pub(super) fn forget_unhomed(&mut self, block: u64) {
        if self.unhomed.remove(&block).is_some() {
            self.home_log.note(block);
        }
    }

    /// A checkpoint wrote home every block logged by a transaction before `tid` (every one
    /// logged so far: `None`).
    pub(super) fn checkpointed(&mut self, tid: Option<u64>) {
        // Metadata sealed by those transactions is home: evictable again. A fetch that read a
        // metadata block from home before this may have read an older version.
        let mut home_gen = None;
        while let Some(&(t, generation)) = self.sealed_gens.front() {
            if tid.is_some_and(|tid| t >= tid) {
                break;
            }
            home_gen = Some(generation);
            self.sealed_gens.pop_front();
        }
        if let Some(generation) = home_gen {
            self.mutator.meta.home_through(generation);
        }
        self.home_log.barrier();
        let home_log = &mut self.home_log;
        self.unhomed.retain(|block, u| {
            let home = u.logged_by.is_some_and(|t| tid.is_none_or(|tid| t < tid));
            if home {
                home_log.note(*block);
            }
            !home
        });
    }

    /// The view of open inode `ino` if it is of the inode's current cache epoch.
    pub(super) fn view(&self, ino: u32) -> Option<Arc<FileView>> {
        let epoch = self.cache_epoch.get(&ino).copied().unwrap_or(0);
        self.views.get(&ino).filter(|v| v.epoch == epoch).cloned()
    }

    /// The lowest block in `blocks` whose newest contents are in memory (dirty in the running
    /// transaction, or not yet home).
    pub(super) fn first_in_memory(&self, blocks: std::ops::Range<u64>) -> Option<u64> {
        let dirty = self.mutator.first_dirty_data(blocks.clone());
        let unhomed = self.unhomed.range(blocks).next().map(|(b, _)| *b);
        dirty.into_iter().chain(unhomed).min()
    }

    /// The newest contents of data block `block` if they are not home.
    pub(super) fn unhomed(&self, block: u64) -> Option<&[u8]> {
        self.unhomed.get(&block).map(|u| u.page.bytes())
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
    /// In: the inodes with open handles when the operation started.
    pub(super) open_inodes: Vec<u32>,
    /// An inode the operation opened a handle of.
    pub(super) opened: Option<u32>,
    /// Open inodes the operation put on the orphan list (their last name went).
    pub(super) orphaned: Vec<u32>,
}

impl Touched {
    /// The inodes whose data, size, block map or existence the operation changed.
    fn data_changed(&self) -> impl Iterator<Item = u32> + '_ {
        let changed = self.datasync.iter().chain(&self.orphaned).copied();
        changed.chain(self.data.iter().map(|(ino, _)| *ino))
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
        self.wake_all();
        e
    }

    /// Counters so far.
    pub fn stats(&self) -> RwStats {
        let st = self.lock();
        let (_, evicted) = st.mutator.meta.counts();
        RwStats {
            metadata_evictions: evicted,
            ..st.stats
        }
    }

    /// Metadata blocks held in memory now (see [`super::RwOptions::metadata_pages`]).
    pub fn metadata_blocks(&self) -> usize {
        self.lock().mutator.meta.counts().0
    }

    /// True once a failure made the mount read-only.
    pub fn is_read_only(&self) -> bool {
        self.lock().failed.is_some()
    }

    /// What mount-time recovery replayed (`None`: the file system was clean).
    pub fn replayed(&self) -> Option<Replayed> {
        self.lock().replayed.clone()
    }

    /// The id of the running transaction, the one operations join now. An operation's
    /// changes lie in the transactions from the id read before it to the id read after it
    /// (with no other thread in between): crash checkers derive commit boundaries from this.
    pub fn running_tid(&self) -> u64 {
        self.lock().running
    }

    /// Runs `f` on the mutator under the state lock, its reads served from memory only; the
    /// blocks it needs from the device are read with the lock dropped and `f` runs again
    /// (`fetch`). `gate` runs first in every attempt, in the same hold of the lock; its error
    /// ends the call. Returns the lock, still held, with `gate`'s value and `f`'s result.
    pub(super) fn run_locked<'a, G, T>(
        &'a self,
        ctx: &mut RwCtx<D>,
        mut gate: impl FnMut(&State) -> Result<G, RwError>,
        mut f: impl FnMut(&mut Mutator, &mut dyn BlockRead, &mut G) -> Result<T, FsError>,
    ) -> Result<Locked<'a, G, T>, RwError> {
        let mut fetched = Fetched::default();
        loop {
            let mut st = self.lock();
            let mut g = gate(&st)?;
            if fetched.is_empty() {
                // Before an operation's first attempt: drop metadata past the bound (a retry
                // keeps what its earlier attempts read, in `fetched` if not here).
                st.mutator.meta.trim();
            }
            if !fetched.revalidate(&st.home_log) {
                st.stats.fetches_stale += 1;
            }
            let State {
                mutator, unhomed, ..
            } = &mut *st;
            let mut r = MemoryBlocks {
                unhomed,
                fetched: &fetched,
                missing: Vec::new(),
            };
            let out = f(mutator, &mut r, &mut g);
            let missing = r.missing;
            if missing.is_empty() {
                return Ok((st, g, out));
            }
            // Operations are all-or-nothing and none swallows a read error: the attempt
            // failed and changed nothing.
            debug_assert!(
                out.is_err(),
                "an operation went on without a block it needed"
            );
            let stamp = st.home_log.stamp();
            st.stats.blocks_fetched += missing.len() as u64;
            drop(st);
            let mut reader = FsBlocks {
                fs: &self.fs,
                io: &mut ctx.io,
            };
            if let Err(e) = fetched.fetch(&mut reader, &missing, stamp) {
                return Ok((self.lock(), g, Err(e)));
            }
            #[cfg(test)]
            {
                let hook = self.after_fetch.lock().ok().and_then(|mut h| h.take());
                if let Some(hook) = hook {
                    hook();
                }
            }
        }
    }

    /// Runs `f` on the mutator with memory-only reads and no retry, for what needs only
    /// blocks an earlier step loaded (sealing a transaction, publishing a size): a block
    /// not in memory is [`FsError::NotInMemory`].
    pub(super) fn in_memory<T>(
        &self,
        st: &mut State,
        f: impl FnOnce(&mut Mutator, &mut dyn BlockRead) -> Result<T, FsError>,
    ) -> Result<T, FsError> {
        let fetched = Fetched::default();
        let State {
            mutator, unhomed, ..
        } = st;
        let mut r = MemoryBlocks {
            unhomed,
            fetched: &fetched,
            missing: Vec::new(),
        };
        f(mutator, &mut r)
    }

    /// Runs `f` on the mutator reading through the device under the lock: for mount, before
    /// any other thread can take it, and for tests.
    pub(super) fn with_device_reads<T>(
        &self,
        st: &mut State,
        ctx: &mut RwCtx<D>,
        f: impl FnOnce(&mut Mutator, &mut dyn BlockRead) -> Result<T, FsError>,
    ) -> Result<T, FsError> {
        let mut r = FsBlocks {
            fs: &self.fs,
            io: &mut ctx.io,
        };
        f(&mut st.mutator, &mut r)
    }

    /// Runs `f` on the mutator without changing anything (lookups).
    pub(super) fn read_op<T>(
        &self,
        ctx: &mut RwCtx<D>,
        op: &'static str,
        path: &[u8],
        mut f: impl FnMut(&mut Mutator, &mut dyn BlockRead) -> Result<T, FsError>,
    ) -> Result<T, RwError> {
        let (_st, (), out) = self.run_locked(ctx, |_| Ok(()), |m, r, _| f(m, r))?;
        out.map_err(|cause| RwError::Op {
            op,
            path: display_path(path),
            cause,
        })
    }

    /// Publishes the size and cache epoch of `ino` if it is open (see `published`).
    /// The operation that changed it loaded its inode; were it not in memory, the size is
    /// published unknown and reads by handle plan under the lock.
    pub(super) fn publish(&self, st: &mut State, ino: u32) {
        let Some(published) = st.published.get(&ino).cloned() else {
            return;
        };
        let epoch = st.cache_epoch.get(&ino).copied().unwrap_or(0);
        let size = self
            .in_memory(st, |m, r| m.inode(r, ino))
            .map_or(SIZE_UNKNOWN, |inode| inode.size_bytes);
        published.publish(size, epoch);
    }

    /// Runs operation `f` in the running transaction (see the module documentation), then
    /// commits if `-o sync` or the transaction's limits say so.
    pub(super) fn apply<T>(
        &self,
        ctx: &mut RwCtx<D>,
        op: &'static str,
        path: &[u8],
        f: impl FnMut(&mut Mutator, &mut dyn BlockRead, &mut Touched) -> Result<T, FsError>,
    ) -> Result<T, RwError> {
        let gate = |st: &State| {
            Self::check_writable(st, op, path)?;
            Ok(Touched {
                open_inodes: st.open_count.keys().copied().collect(),
                ..Touched::default()
            })
        };
        let (mut st, touched, result) = self.run_locked(ctx, gate, f)?;
        let value = result.map_err(|cause| RwError::Op {
            op,
            path: display_path(path),
            cause,
        })?;
        let changed: Vec<u32> = touched.data_changed().collect();
        st.note(touched);
        for ino in changed {
            self.publish(&mut st, ino);
        }
        let ordered = self.options.data == super::DataMode::Ordered;
        let dirty = st.mutator.dirty_data_blocks();
        let log_over =
            st.mutator.dirty_meta_blocks() + if ordered { 0 } else { dirty } > self.txn_blocks_max;
        let dirty_over = dirty > self.dirty_blocks_max;
        if !log_over && !dirty_over && dirty > self.dirty_background_blocks && st.can_commit() {
            // Background writeback: the commit thread writes the data back (`data=journal`:
            // commits it) while this writer goes on.
            self.flusher_kick.kick();
        }
        if self.options.sync || log_over || (dirty_over && !ordered) {
            self.sync_all(ctx, st, op, path)?;
        } else if dirty_over {
            // Past the hard mark a writer waits for writeback, down to the background mark.
            self.write_back_to(ctx, st, self.dirty_background_blocks, op, path)?;
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::{RecentGroups, GROUPS_KEPT};

    #[test]
    fn the_group_target_is_the_largest_recent_group_and_forgets_old_ones() {
        let mut groups = RecentGroups::default();
        assert_eq!(groups.target(), 1, "no commit yet: no batching");
        groups.record(4);
        groups.record(2);
        assert_eq!(groups.target(), 4);
        for _ in 0..GROUPS_KEPT - 2 {
            groups.record(2);
        }
        assert_eq!(
            groups.target(),
            4,
            "the 4 is the oldest of the last GROUPS_KEPT"
        );
        groups.record(2);
        assert_eq!(
            groups.target(),
            2,
            "the 4 is older than the last GROUPS_KEPT"
        );
    }

    #[test]
    fn a_batching_wait_that_runs_out_lowers_the_target_at_once() {
        let mut groups = RecentGroups::default();
        groups.record(4);
        groups.record(3);
        groups.lower_to(1);
        assert_eq!(
            groups.target(),
            1,
            "a lone thread stops waiting for the others"
        );
        groups.record(4);
        groups.lower_to(0);
        assert_eq!(groups.target(), 1, "never below one");
    }
}
