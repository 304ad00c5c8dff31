//! Making operations durable: leading a commit or a data-only sync, and the waits of
//! `fsync`, `fdatasync` and `sync` (see the module documentation of `rw` and `state`).
//!
//! # Leading
//! A thread leads by taking the journal out of the state; it seals what it writes under the
//! lock, does the I/O unlocked (its own queue), puts the journal back and wakes every waiter.
//! A thread that needs a transaction in flight, or finds the journal taken, waits and then
//! decides again: a sync always re-checks its condition after any wake-up, so one commit can
//! satisfy many waiters (group commit) and no waiter returns before its condition holds.

use std::sync::{Arc, MutexGuard};

use aios_device::Device;

use super::state::{RwBlocks, State};
use super::txn::{self, Sealed};
use super::{DataMode, RwCtx, RwError, RwShared};
use crate::error::display_path;
use crate::FsBlocks;

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

    fn need(&self, st: &State, ino: u32, datasync: bool) -> Need {
        let busy = st.journal.is_none();
        let meta_tid = if datasync && self.options.data == DataMode::Ordered {
            st.datasync_tid.get(&ino)
        } else {
            st.sync_tid.get(&ino)
        };
        let meta_tid = meta_tid.copied().unwrap_or(0);
        let data_tid = st.data_tid.get(&ino).copied().unwrap_or(0);
        if meta_tid > st.committed
            || (datasync && self.options.data == DataMode::Journal && data_tid > st.committed)
        {
            return if busy || meta_tid < st.running {
                Need::Wait
            } else {
                Need::Commit
            };
        }
        if data_tid > st.committed {
            return if busy || data_tid < st.running {
                Need::Wait
            } else {
                Need::DataSync
            };
        }
        Need::Nothing
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
        loop {
            Self::check_writable(&st, op, path)?;
            st = match self.need(&st, ino, datasync) {
                Need::Nothing => {
                    st.stats.syncs += 1;
                    return Ok(());
                }
                Need::Wait => {
                    if datasync {
                        st.datasync_wanted.insert(ino);
                    }
                    self.wait(st)
                }
                Need::Commit => self.lead_commit(ctx, st, op, path, false)?,
                Need::DataSync => self.lead_data_sync(ctx, st, op, path, ino)?,
            };
        }
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
        loop {
            Self::check_writable(&st, op, path)?;
            if st.committed >= target && st.journal.is_some() {
                st.stats.syncs += 1;
                return Ok(());
            }
            st = if st.journal.is_none() {
                self.wait(st)
            } else {
                self.lead_commit(ctx, st, op, path, false)?
            };
        }
    }

    /// Commits the running transaction if it has changes and no commit is in flight (the
    /// periodic commit); never waits for another leader.
    pub(super) fn commit_if_idle(&self, ctx: &mut RwCtx<D>) -> Result<(), RwError> {
        let st = self.lock();
        if st.failed.is_some() || st.journal.is_none() || !st.mutator.has_changes() {
            return Ok(());
        }
        self.lead_commit(ctx, st, "periodic commit", b"", true)
            .map(drop)
    }

    pub(super) fn wait<'a>(&'a self, st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed
            .wait(st)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
        let tid = st.running;
        st.running += 1;
        st.running_since = None;
        st.dirty.clear();
        let sealed = {
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
            txn::seal(mutator, &mut r)
        };
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
        if self.options.data == DataMode::Journal {
            for b in &sealed.revoked {
                st.journaled.remove(b);
            }
            for (block, bytes) in &sealed.changes.data_blocks {
                st.journaled
                    .insert(*block, (tid, Arc::from(bytes.as_slice())));
            }
        }
        let Some(mut journal) = st.journal.take() else {
            unreachable!("lead_commit is called only with the journal in the state");
        };
        drop(st);
        let arena = self.fs.device.arena();
        let out = txn::commit(&mut journal, &mut ctx.q, arena, &sealed, self.options.data);
        let mut st = self.lock();
        st.journal = Some(journal);
        self.changed.notify_all();
        match out {
            Ok(c) => {
                st.committed = tid;
                st.stats.commits += 1;
                st.stats.periodic_commits += u64::from(periodic);
                st.stats.checkpoints += u64::from(c.checkpointed);
                st.stats.journal_blocks += c.journal_blocks;
                st.stats.add_times(&c);
                st.mutator.release_blocks(&sealed.revoked);
                if c.checkpointed {
                    // The checkpoint before this commit wrote every earlier transaction home.
                    st.journaled.retain(|_, (t, _)| *t >= tid);
                }
                st.prune();
                Ok(st)
            }
            Err(e) => Err(self.fail(&mut st, e.into_rw(op, path))),
        }
    }

    /// Writes the dirty blocks of `ino` (and of every inode waiting for the same) in place and
    /// flushes, without a commit. The journal must be in the state.
    fn lead_data_sync<'a>(
        &'a self,
        ctx: &mut RwCtx<D>,
        mut st: MutexGuard<'a, State>,
        op: &'static str,
        path: &[u8],
        ino: u32,
    ) -> Result<MutexGuard<'a, State>, RwError> {
        let mut wanted = std::mem::take(&mut st.datasync_wanted);
        wanted.insert(ino);
        let mut blocks = Vec::new();
        let mut inodes = Vec::new();
        for i in wanted {
            if self.need(&st, i, true) != Need::DataSync {
                continue;
            }
            for b in st.dirty.remove(&i).unwrap_or_default() {
                if let Some(bytes) = st.mutator.take_dirty_data(b) {
                    blocks.push((b, bytes));
                }
            }
            inodes.push(i);
        }
        blocks.sort_unstable_by_key(|(b, _)| *b);
        let Some(mut journal) = st.journal.take() else {
            unreachable!("lead_data_sync is called only with the journal in the state");
        };
        drop(st);
        let arena = self.fs.device.arena();
        let out = txn::sync_data(&mut journal, &mut ctx.q, arena, &blocks);
        let mut st = self.lock();
        st.journal = Some(journal);
        self.changed.notify_all();
        match out {
            Ok(c) => {
                st.stats.data_syncs += 1;
                st.stats.add_times(&c);
                for i in inodes {
                    // Dirtied again while the I/O ran: those blocks still need a sync.
                    if !st.dirty.contains_key(&i) {
                        st.data_tid.remove(&i);
                    }
                }
                Ok(st)
            }
            Err(e) => Err(self.fail(&mut st, e.into_rw(op, path))),
        }
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
