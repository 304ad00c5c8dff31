//! One file-system operation = one transaction: apply through the [`Mutator`], take its
//! changes, commit them ([`Journal::commit`]: data blocks as ordered-mode writes in place,
//! metadata blocks logged, every freed block revoked), then release the blocks it freed.
//!
//! # Invariants
//! - Nothing is written by an operation before its commit; the freed blocks become allocatable
//!   ([`Mutator::release_pending`]) only after the commit returned `Ok`.
//! - Every block freed by the transaction is revoked in it: a metadata block logged by an
//!   earlier transaction and reused as data later is never replayed or checkpointed over the
//!   data (the journal also drops it from its checkpoint list). Freed blocks are never logged in
//!   the same transaction (the mutator forgets them), so the layout never sees a block both
//!   logged and revoked.
//! - An operation that fails midway commits what it already changed (the mutator's state stays
//!   consistent; no rollback), then reports its own error.
//! - Any failure once the mutator changed state (a refused or failed commit, no arena memory)
//!   makes the mount read-only: memory may be ahead of the disk, so every later operation fails
//!   with [`RwError::ReadOnly`] naming the first failure, and unmount leaves the journal for
//!   recovery.

use std::sync::Arc;

use aios_device::{Buf, Device, BLOCK_SIZE, SEGMENTS_MAX};
use aios_journal::format::Block;
use aios_journal::layout::DataBlock;
use aios_journal::runtime::{DataWrite, Journal, Transaction};

use super::{RwError, RwFs};
use crate::error::display_path;
use crate::{BlockRead, Changes, FsBlocks, FsError, Mutator};

impl<D: Device> RwFs<D> {
    /// Fails with [`RwError::ReadOnly`] once an earlier failure made the mount read-only.
    pub(super) fn check_writable(&self, op: &'static str, path: &[u8]) -> Result<(), RwError> {
        match &self.failed {
            Some(first) => Err(RwError::ReadOnly {
                op,
                path: display_path(path),
                first: Arc::clone(first),
            }),
            None => Ok(()),
        }
    }

    /// Runs `f` on the mutator without committing (lookups).
    pub(super) fn read<T>(
        &mut self,
        op: &'static str,
        path: &[u8],
        f: impl FnOnce(&mut Mutator, &mut dyn BlockRead) -> Result<T, FsError>,
    ) -> Result<T, RwError> {
        let mut r = FsBlocks {
            fs: &self.fs,
            io: &mut self.io,
        };
        f(&mut self.mutator, &mut r).map_err(|cause| RwError::Op {
            op,
            path: display_path(path),
            cause,
        })
    }

    /// Runs `f` as one transaction (see the module documentation).
    pub(super) fn apply<T>(
        &mut self,
        op: &'static str,
        path: &[u8],
        f: impl FnOnce(&mut Mutator, &mut dyn BlockRead) -> Result<T, FsError>,
    ) -> Result<T, RwError> {
        self.check_writable(op, path)?;
        let mut r = FsBlocks {
            fs: &self.fs,
            io: &mut self.io,
        };
        let result = f(&mut self.mutator, &mut r);
        let changes = match self.mutator.take_changes(&mut r) {
            Ok(c) => c,
            Err(e) => return Err(self.fail(op, path, format!("sealing the changes: {e}"))),
        };
        let revoked: Vec<u64> = self.mutator.pending_free.iter().copied().collect();
        if !changes.meta_blocks.is_empty() || !changes.data_blocks.is_empty() || !revoked.is_empty()
        {
            self.commit(op, path, changes, &revoked)?;
            self.mutator.release_pending();
        }
        result.map_err(|cause| RwError::Op {
            op,
            path: display_path(path),
            cause,
        })
    }

    /// Makes the mount read-only with a [`RwError::Build`] failure and returns it.
    fn fail(&mut self, op: &'static str, path: &[u8], what: String) -> RwError {
        let e = RwError::Build {
            op,
            path: display_path(path),
            what,
        };
        self.failed.get_or_insert_with(|| Arc::from(e.to_string()));
        e
    }

    fn commit(
        &mut self,
        op: &'static str,
        path: &[u8],
        changes: Changes,
        revoked: &[u64],
    ) -> Result<(), RwError> {
        let arena = self.fs.device.arena().clone();
        let arena = &arena;
        let data = match data_writes(arena, &changes.data_blocks) {
            Ok(d) => d,
            Err(what) => return Err(self.fail(op, path, what)),
        };
        let mut metadata = Vec::with_capacity(changes.meta_blocks.len());
        for (block, bytes) in &changes.meta_blocks {
            match <&Block>::try_from(&bytes[..]) {
                Ok(contents) => metadata.push(DataBlock {
                    fs_block: *block,
                    contents,
                }),
                Err(_) => {
                    for d in data {
                        arena.free(d.buf);
                    }
                    let what = format!("metadata block {block} is not 4 KiB");
                    return Err(self.fail(op, path, what));
                }
            }
        }
        let out = Journal::commit(
            &mut self.journal,
            &mut self.q,
            arena,
            Transaction {
                data,
                metadata: &metadata,
                revoked,
            },
        );
        for d in out.data {
            arena.free(d.buf);
        }
        match out.result {
            Ok(c) => {
                self.stats.commits += 1;
                self.stats.checkpoints += u64::from(c.checkpointed);
                self.stats.journal_blocks += c.journal_blocks;
                let (sum, t) = (&mut self.stats.commit_times, &c.times);
                sum.checkpoint_ns += t.checkpoint_ns;
                sum.build_journal_ns += t.build_journal_ns;
                sum.submit_ns += t.submit_ns;
                sum.wait_ns += t.wait_ns;
                sum.flush_ns += t.flush_ns;
                sum.commit_ns += t.commit_ns;
                Ok(())
            }
            Err(cause) => {
                let e = RwError::Commit {
                    op,
                    path: display_path(path),
                    cause,
                };
                self.failed.get_or_insert_with(|| Arc::from(e.to_string()));
                Err(e)
            }
        }
    }
}

/// The data blocks as ordered-mode writes: runs of consecutive blocks, at most one request
/// (32 blocks) each, copied into arena buffers. On failure every buffer taken is freed.
fn data_writes(
    arena: &aios_device::Arena,
    blocks: &[(u64, Vec<u8>)],
) -> Result<Vec<DataWrite>, String> {
    let mut out: Vec<DataWrite> = Vec::new();
    let free_all = |out: Vec<DataWrite>| {
        for d in out {
            arena.free(d.buf);
        }
    };
    let mut rest = blocks;
    while let Some(&(first, _)) = rest.first() {
        let mut n = 1;
        while n < SEGMENTS_MAX && rest.get(n).map(|b| b.0) == first.checked_add(n as u64) {
            n += 1;
        }
        let (run, tail) = rest.split_at(n.min(rest.len()));
        let mut buf: Buf = match arena.alloc(run.len() as u32) {
            Ok(b) => b,
            Err(e) => {
                free_all(out);
                return Err(format!("arena for {} data blocks: {e}", run.len()));
            }
        };
        let bytes = arena.bytes_mut(&mut buf);
        for ((block, src), dst) in run.iter().zip(bytes.chunks_exact_mut(BLOCK_SIZE)) {
            if src.len() != BLOCK_SIZE {
                arena.free(buf);
                free_all(out);
                return Err(format!("data block {block} has {} bytes", src.len()));
            }
            dst.copy_from_slice(src);
        }
        out.push(DataWrite {
            offset_bytes: first * BLOCK_SIZE as u64,
            buf,
        });
        rest = tail;
    }
    Ok(out)
}
