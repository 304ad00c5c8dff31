//! Making operations durable: leading a commit or a data-only sync, and the waits of
//! `fsync`, `fdatasync` and `sync` (see the module documentation of `rw` and `state`).
//!
//! # Leading
//! A thread leads by taking the journal out of the state; it seals what it writes under the
//! lock, does the I/O unlocked (its own queue), puts the journal back and wakes every waiter.
//! A data-only sync does not take the journal: data syncs of different inodes run side by
//! side, and a commit starts only once none is writing (`State::can_commit`).
//! A thread that needs a transaction in flight, or finds the journal taken, waits and then
//! decides again: a sync always re-checks its condition after any wake-up, so one commit can
//! satisfy many waiters (group commit) and no waiter returns before its condition holds.

use std::sync::atomic::Ordering;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use aios_device::{Device, PoliteSpin};
use aios_journal::runtime::PlantedBug;

use super::state::{MetaWant, State, Want};
use super::txn::{self, Sealed};
use super::{DataMode, RwCtx, RwError, RwShared};
use crate::error::display_path;

/// The longest a leader waits for its group (see `RwShared::wait_for_group`).
const BATCH_MAX: Duration = Duration::from_micros(200);

/// How long a waiter spins before it sleeps (see `RwShared::wait`).
const WAIT_SPIN: Duration = Duration::from_micros(50);

/// A thread counted busy (`RwShared::busy`) while this lives.
pub(super) struct Busy<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a sync of an inode still needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Nothing,
    /// Another thread's commit or data sync is in flight and may be what is needed.
    Wait,
    /// The running transaction must commit.
    Commit,
    /// Only dirty blocks of overwrites: write them and flush.
    DataSync,
}

/// What a data-only write of dirty blocks in place is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum InPlace {
    /// `fdatasync` of this inode (and of every inode waiting for the same): write, flush.
    Sync(u32),
    /// Writeback of every dirty inode not already being written: write, no flush.
    Writeback,
}

impl<D: Device> RwShared<D> {
    /// Makes every operation on regular file or directory `path` that returned before this
    /// call durable (`fsync(2)`).
    pub fn fsync(&self, ctx: &mut RwCtx<D>, path: impl AsRef<[u8]>) -> Result<(), RwError> {
        let path = path.as_ref();
        let ino = self.resolve(ctx, "fsync", path)?;
        self.sync_inode(ctx, "fsync", path, ino, false)
    }

    /// Makes the data of `path` written before this call durable, and the metadata needed to
    /// read it back (`fdatasync(2)`): no commit when the running transaction only overwrote
    /// its blocks in place (`data=ordered`).
    pub fn fdatasync(&self, ctx: &mut RwCtx<D>, path: impl AsRef<[u8]>) -> Result<(), RwError> {
        let path = path.as_ref();
        let ino = self.resolve(ctx, "fdatasync", path)?;
        self.sync_inode(ctx, "fdatasync", path, ino, true)
    }

    /// Makes every operation that returned before this call durable (`syncfs(2)`).
    pub fn sync(&self, ctx: &mut RwCtx<D>) -> Result<(), RwError> {
        let st = self.lock();
        self.sync_all(ctx, st, "sync", b"")
    }

    fn resolve(&self, ctx: &mut RwCtx<D>, op: &'static str, path: &[u8]) -> Result<u32, RwError> {
        self.read_op(ctx, op, path, |m, r| {
            m.lookup_path(r, path)?
                .ok_or_else(|| crate::FsError::NotFound {
                    path: display_path(path),
                })
        })
    }

    /// What a sync of `ino` with targets `want` still needs.
    fn need(&self, st: &State, ino: u32, want: Want) -> Need {
        if want.meta_tid > st.committed {
            return if !st.can_commit() || want.meta_tid < st.running {
                Need::Wait
            } else {
                Need::Commit
            };
        }
        let durable = st.durable_write.get(&ino).copied().unwrap_or(0);
        if want.write_seq <= durable {
            return Need::Nothing;
        }
        if st.journal.is_none() || st.data_syncing.contains(&ino) {
            // The commit or this inode's data sync in flight may hold the data.
            return Need::Wait;
        }
        if !st.dirty.contains_key(&ino) && st.written_back_of(ino) {
            // Written back, not flushed: a flush-only data sync, unless a wanted commit will
            // flush anyway.
            return if st.commits_wanted == 0 {
                Need::DataSync
            } else {
                Need::Wait
            };
        }
        if !st.dirty.contains_key(&ino) {
            // Not dirty, not written back and nothing in flight for it: whatever took the
            // blocks has completed and recorded them durable; only a bookkeeping bug gets here.
            debug_assert!(
                false,
                "inode {ino}: data neither dirty, in flight nor durable"
            );
            return if st.can_commit() {
                Need::Commit
            } else {
                Need::Wait
            };
        }
        let mapped = st.datasync_tid.get(&ino).copied().unwrap_or(0) <= st.committed;
        if self.options.data == DataMode::Ordered && mapped && st.commits_wanted == 0 {
            Need::DataSync
        } else if self.options.data == DataMode::Ordered && mapped {
            // A commit waits for the data syncs in flight: start no new one before it.
            Need::Wait
        } else if st.can_commit() {
            Need::Commit
        } else {
            Need::Wait
        }
    }

    pub(super) fn sync_inode(
        &self,
        ctx: &mut RwCtx<D>,
        op: &'static str,
        path: &[u8],
        ino: u32,
        datasync: bool,
    ) -> Result<(), RwError> {
        let mut st = self.lock();
        let meta = if datasync && self.options.data == DataMode::Ordered {
            MetaWant::DataMapping
        } else {
            MetaWant::All
        };
        let want = st.want(ino, meta);
        if want.meta_tid == st.running {
            st.join_running();
        }
        let mut batched = false;
        // Counted in `commits_wanted` while this sync needs a commit that data syncs block.
        let mut wanting = false;
        let result = loop {
            if let Err(e) = Self::check_writable(&st, op, path) {
                break Err(e);
            }
            let need = self.need(&st, ino, want);
            let blocked_commit = need == Need::Wait
                && want.meta_tid == st.running
                && st.journal.is_some()
                && !st.data_syncing.is_empty();
            st.want_commit(&mut wanting, blocked_commit);
            st = match need {
                Need::Nothing => {
                    st.stats.syncs += 1;
                    break Ok(());
                }
                Need::Wait => {
                    if datasync {
                        st.datasync_wanted.insert(ino);
                    }
                    self.wait(st)
                }
                Need::Commit if !batched && st.recent_groups.target() > 1 => {
                    batched = true;
                    self.wait_for_group(st)
                }
                Need::Commit => match self.lead_commit(ctx, st, op, path, false) {
                    Ok(st) => st,
                    Err(e) => {
                        st = self.lock();
                        break Err(e);
                    }
                },
                Need::DataSync => {
                    match self.lead_data_sync(ctx, st, op, path, InPlace::Sync(ino)) {
                        Ok(st) => st,
                        Err(e) => {
                            st = self.lock();
                            break Err(e);
                        }
                    }
                }
            };
        };
        st.want_commit(&mut wanting, false);
        // Waiting ones re-register at each wait; a stale entry would make a later data sync
        // write this inode's blocks for nobody.
        st.datasync_wanted.remove(&ino);
        result
    }

    /// Commits until everything applied before the call is committed.
    pub(super) fn sync_all<'a>(
        &'a self,
        ctx: &mut RwCtx<D>,
        mut st: MutexGuard<'a, State>,
        op: &'static str,
        path: &[u8],
    ) -> Result<(), RwError> {
        let target = if st.mutator.has_changes() {
            st.running
        } else {
            st.running - 1
        };
        // Counted in `commits_wanted` while data syncs in flight hold this up.
        let mut wanting = false;
        let result = loop {
            if let Err(e) = Self::check_writable(&st, op, path) {
                break Err(e);
            }
            let blocked = st.journal.is_some() && !st.data_syncing.is_empty();
            st.want_commit(&mut wanting, blocked);
            if st.committed >= target && st.idle() && !st.written_back.is_empty() {
                // Everything is committed, but written-back data waits for a flush.
                st = match self.lead_data_sync(ctx, st, op, path, InPlace::Sync(0)) {
                    Ok(st) => st,
                    Err(e) => {
                        st = self.lock();
                        break Err(e);
                    }
                };
                continue;
            }
            if st.committed >= target && st.idle() {
                st.stats.syncs += 1;
                break Ok(());
            }
            st = if !st.can_commit() {
                self.wait(st)
            } else {
                match self.lead_commit(ctx, st, op, path, false) {
                    Ok(st) => st,
                    Err(e) => {
                        st = self.lock();
                        break Err(e);
                    }
                }
            };
        };
        st.want_commit(&mut wanting, false);
        result
    }

    /// Commits the running transaction if it has changes and no commit is in flight (the
    /// periodic commit); never waits for another leader.
    pub(super) fn commit_if_idle(&self, ctx: &mut RwCtx<D>) -> Result<(), RwError> {
        let st = self.lock();
        if st.failed.is_some() || !st.can_commit() || !st.mutator.has_changes() {
            return Ok(());
        }
        self.lead_commit(ctx, st, "periodic commit", b"", true)
            .map(drop)
    }

    /// Wakes every waiter: a commit or data sync finished (or failed). Call with the state
    /// locked.
    pub(super) fn wake_all(&self) {
        self.generation.fetch_add(1, Ordering::Release);
        self.changed.notify_all();
    }

    /// Counts the calling thread busy until the guard drops: a read that misses, when its
    /// device wait takes the CPU (a synchronous device, or polled completions).
    pub(super) fn busy(&self) -> Option<Busy<'_>> {
        if !self.reads_take_cpu {
            return None;
        }
        self.busy_threads.fetch_add(1, Ordering::Relaxed);
        Some(Busy(&self.busy_threads))
    }

    /// True if a CPU is left for a spinning waiter besides the one the commit it waits for
    /// runs on and those of the reads in flight. With every CPU taken (readers of a
    /// synchronous device beside appenders: reads are CPU work there), a spin or a batching
    /// wait only delays the commit it waits for (zram, 2 readers + 2 appenders: append+fsync
    /// 10x slower beside the readers with spinning, 0.9x without).
    fn cpu_spare(&self) -> bool {
        self.busy_threads.load(Ordering::Relaxed) + 1 < self.cpus
    }

    /// Waits for the next [`RwShared::wake_all`], state unlocked meanwhile. Spins for up to
    /// [`WAIT_SPIN`] first while a CPU is spare: a commit on a fast device ends within tens of
    /// microseconds, and waking a sleeping thread costs ~16 us at p50 and 400 us at p99 on a
    /// 2-vCPU VM (`/work/shared/baselines.md`). The spin yields often, so the leader keeps its
    /// CPU.
    pub(super) fn wait<'a>(&'a self, st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let seen = self.generation.load(Ordering::Acquire);
        drop(st);
        let spin = if self.cpu_spare() {
            WAIT_SPIN
        } else {
            Duration::ZERO
        };
        let deadline = Instant::now() + spin;
        let mut spin = PoliteSpin::new();
        while Instant::now() < deadline {
            if self.generation.load(Ordering::Acquire) != seen {
                return self.lock();
            }
            spin.pause();
        }
        let mut st = self.lock();
        // Bumped only under the lock: checked under it, no wake-up is missed.
        while self.generation.load(Ordering::Acquire) == seen {
            st = self
                .changed
                .wait(st)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        st
    }

    /// Group commit's batching (jbd2's `max_batch_time` idea): when recent commits served
    /// several syncs, the thread about to lead the next one first waits, up to one average
    /// commit time ([`BATCH_MAX`] at most), for the target (`RecentGroups::target`) syncs to need the
    /// running transaction, so that threads returning from the last commit join this one
    /// instead of the one after. Returns early when another thread led meanwhile or a commit
    /// cannot start.
    ///
    /// The target counts, per recent commit, its group and the syncs that joined the next
    /// transaction while it ran. Counting the group alone, four threads settled on groups of
    /// three: the thread that missed a commit leads the next as soon as two of the three
    /// return, and the third misses it in turn (`docs/results/fsync.md` has the numbers).
    ///
    /// A wait that runs out of time is evidence the target is stale (threads left): the
    /// target drops to the syncs that did join, so a thread left alone after a burst pays the
    /// wait once, as before.
    fn wait_for_group<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let tid = st.running;
        if !self.cpu_spare() {
            // The syncs it would wait for need this CPU to get there.
            return st;
        }
        let budget = Duration::from_nanos(st.commit_avg_ns).min(BATCH_MAX);
        let deadline = Instant::now() + budget;
        let mut spin = PoliteSpin::new();
        while st.running == tid
            && st.can_commit()
            && st.joined() < st.recent_groups.target()
            && Instant::now() < deadline
        {
            drop(st);
            for _ in 0..8 {
                spin.pause();
            }
            st = self.lock();
            if Instant::now() >= deadline && st.running == tid && st.can_commit() {
                let joined = st.joined();
                st.recent_groups.lower_to(joined);
            }
        }
        st
    }

    /// Seals the running transaction and commits it (see the module documentation). The
    /// journal must be in the state.
    pub(super) fn lead_commit<'a>(
        &'a self,
        ctx: &mut RwCtx<D>,
        mut st: MutexGuard<'a, State>,
        op: &'static str,
        path: &[u8],
        periodic: bool,
    ) -> Result<MutexGuard<'a, State>, RwError> {
        let started = Instant::now();
        let tid = st.running;
        // The syncs this commit serves (0 for a periodic commit or `sync` nobody joined).
        let group = st.joined();
        st.running += 1;
        self.running_now.store(st.running, Ordering::Release);
        st.running_since = None;
        let (_, covered) = st.take_dirty(None);
        // No writeback is in flight (a commit starts only then): this commit's flush covers
        // every written-back block.
        let flushed_back = std::mem::take(&mut st.written_back);
        // Sealing reads only blocks in memory: those the transaction changed, and block 0 and
        // the descriptor blocks, loaded at mount.
        let sealed = self.in_memory(&mut st, txn::seal);
        let sealed = match sealed {
            Ok(s) => s,
            Err(e) => {
                let e = RwError::Build {
                    op,
                    path: display_path(path),
                    what: format!("sealing the changes: {e}"),
                };
                return Err(self.fail(&mut st, e));
            }
        };
        let sealed_at = st.mutator.meta.sealed_generation();
        st.sealed_gens.push_back((tid, sealed_at));
        for b in &sealed.revoked {
            st.forget_unhomed(*b);
        }
        let logged_by = (self.options.data == DataMode::Journal).then_some(tid);
        st.unhome(&sealed.changes.data_blocks, logged_by);
        let Some(mut journal) = st.journal.take() else {
            unreachable!("lead_commit is called only with the journal in the state");
        };
        drop(st);
        let arena = self.fs.device.arena();
        let out = txn::commit(&mut journal, &mut ctx.q, arena, &sealed, self.options.data);
        let mut st = self.lock();
        st.journal = Some(journal);
        if out.is_ok() {
            // On failure the blocks stay readable from memory: the mount is read-only, and
            // reads must keep showing what the writes stored.
            st.homed(&sealed.changes.data_blocks);
        }
        self.wake_all();
        match out {
            Ok(c) => {
                st.committed = tid;
                // Those that joined the next transaction meanwhile were syncing too: the
                // next group can be as large as both together.
                let next = st.joined();
                st.recent_groups.record(group + next);
                let ns = started.elapsed().as_nanos() as u64;
                st.commit_avg_ns = (st.commit_avg_ns * 7 + ns) / 8;
                st.made_durable(&covered);
                if c.journal_blocks == 0 {
                    // An empty transaction wrote and flushed nothing.
                    st.written_back.extend(flushed_back);
                } else {
                    st.made_durable(&flushed_back);
                }
                st.stats.commits += 1;
                st.stats.periodic_commits += u64::from(periodic);
                st.stats.checkpoints += u64::from(c.checkpointed);
                st.stats.journal_blocks += c.journal_blocks;
                st.stats.add_times(&c);
                st.mutator.release_blocks(&sealed.revoked);
                if self.reads().park_if_read(tid, &sealed.revoked) {
                    st.mutator.hold_blocks(&sealed.revoked);
                }
                if c.checkpointed {
                    // The checkpoint before this commit wrote every earlier transaction home.
                    st.checkpointed(Some(tid));
                }
                st.prune();
                Ok(st)
            }
            Err(e) => Err(self.fail(&mut st, e.into_rw(op, path))),
        }
    }

    /// Writes dirty blocks in place without a commit: for `InPlace::Sync(ino)` those of `ino`
    /// and of every inode waiting for the same, then a flush, which also makes every
    /// written-back block durable (`Sync(0)`: the flush alone); for `InPlace::Writeback` those
    /// of every dirty inode not being written already, and no flush. Runs beside other data
    /// syncs and writebacks (of other inodes), never beside a commit.
    pub(super) fn lead_data_sync<'a>(
        &'a self,
        ctx: &mut RwCtx<D>,
        mut st: MutexGuard<'a, State>,
        op: &'static str,
        path: &[u8],
        what: InPlace,
    ) -> Result<MutexGuard<'a, State>, RwError> {
        let inodes: Vec<u32> = match what {
            InPlace::Sync(ino) => {
                let mut wanted = std::mem::take(&mut st.datasync_wanted);
                wanted.insert(ino);
                // Every waiting inode with only overwrites in the running transaction comes
                // along.
                let eligible = |st: &State, i: u32| {
                    st.dirty.contains_key(&i)
                        && !st.data_syncing.contains(&i)
                        && st.datasync_tid.get(&i).copied().unwrap_or(0) <= st.committed
                };
                wanted.into_iter().filter(|&i| eligible(&st, i)).collect()
            }
            InPlace::Writeback => {
                let mut all: Vec<u32> = st
                    .dirty
                    .keys()
                    .filter(|i| !st.data_syncing.contains(i))
                    .copied()
                    .collect();
                all.sort_unstable();
                if all.is_empty() {
                    return Ok(st);
                }
                all
            }
        };
        let flush = matches!(what, InPlace::Sync(_));
        // Written back before this flush is issued: durable once it completes. They stay
        // listed meanwhile, so a sync of one of them sees them (and flushes, or waits).
        let flushed_back = if flush {
            st.written_back.clone()
        } else {
            Vec::new()
        };
        let (taken, covered) = st.take_dirty(Some(&inodes));
        let mut blocks = Vec::with_capacity(taken.len());
        for b in taken {
            // A block truncated away since it was dirtied has nothing left to write.
            if let Some(page) = st.mutator.take_dirty_data(b) {
                blocks.push((b, page));
            }
        }
        blocks.sort_unstable_by_key(|(b, _)| *b);
        st.unhome(&blocks, None);
        st.data_syncing.extend(inodes.iter().copied());
        drop(st);
        let arena = self.fs.device.arena();
        let out = txn::sync_data(&mut ctx.q, arena, &blocks, flush);
        let mut st = self.lock();
        if out.is_ok() {
            st.homed(&blocks);
        }
        for i in &inodes {
            st.data_syncing.remove(i);
        }
        self.wake_all();
        match out {
            Ok(c) => {
                st.stats.add_times(&c);
                if flush {
                    st.stats.data_syncs += 1;
                    st.made_durable(&covered);
                    st.made_durable(&flushed_back);
                    st.written_back.retain(|e| !flushed_back.contains(e));
                } else {
                    st.stats.writebacks += 1;
                    st.written_back.extend(covered);
                }
                if !st.mutator.has_changes() {
                    // Nothing left to commit: the periodic commit's clock restarts.
                    st.running_since = None;
                }
                Ok(st)
            }
            Err(e) if self.options.plant == Some(PlantedBug::CleanAfterFailedWrite) => {
                // PLANTED BUG (h), test-only: the blocks count as durable and the mount stays
                // writable, so the next sync of this inode reports success.
                st.made_durable(&covered);
                Err(e.into_rw(op, path))
            }
            Err(e) => Err(self.fail(&mut st, e.into_rw(op, path))),
        }
    }

    /// Writes back dirty data (`data=ordered`) until at most `max_blocks` are dirty: past
    /// the hard dirty mark a writer waits for writeback, as in the kernel. Dirty blocks that no
    /// inode lists (a slow symlink's target) only a commit takes: with nothing else left to
    /// write back, it commits.
    pub(super) fn write_back_to<'a>(
        &'a self,
        ctx: &mut RwCtx<D>,
        mut st: MutexGuard<'a, State>,
        max_blocks: usize,
        op: &'static str,
        path: &[u8],
    ) -> Result<(), RwError> {
        debug_assert_eq!(self.options.data, DataMode::Ordered);
        loop {
            Self::check_writable(&st, op, path)?;
            if st.mutator.dirty_data_blocks() <= max_blocks {
                return Ok(());
            }
            if st.journal.is_none() {
                st = self.wait(st);
                continue;
            }
            let free = st.dirty.keys().any(|i| !st.data_syncing.contains(i));
            st = if free {
                self.lead_data_sync(ctx, st, op, path, InPlace::Writeback)?
            } else if st.data_syncing.is_empty() {
                return self.sync_all(ctx, st, op, path);
            } else {
                // Every dirty inode is being written by others: wait for them.
                self.wait(st)
            };
        }
    }

    /// The background writeback (the commit thread, kicked past the background mark): writes
    /// back the dirty data if no commit is in flight; never waits for another leader.
    pub(super) fn write_back_if_idle(&self, ctx: &mut RwCtx<D>) -> Result<(), RwError> {
        let st = self.lock();
        if st.failed.is_some() || st.journal.is_none() || self.options.data != DataMode::Ordered {
            return Ok(());
        }
        self.lead_data_sync(ctx, st, "writeback", b"", InPlace::Writeback)
            .map(drop)
    }
}

impl Sealed {
    /// Nothing to write: a transaction with no change at all.
    pub(super) fn is_empty(&self) -> bool {
        self.changes.meta_blocks.is_empty()
            && self.changes.data_blocks.is_empty()
            && self.revoked.is_empty()
    }
}
