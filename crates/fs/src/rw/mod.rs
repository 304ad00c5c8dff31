//! The read-write mount: every operation one journaled transaction (issue 4, first slice).
//!
//! # Role
//! [`RwFs`] joins the in-memory mutation layer ([`Mutator`]) and the journal runtime
//! ([`Journal`]): an operation (see the list below, and [`RwFs::put`] built from them) is
//! applied to the mutator, its changes taken and committed as
//! one ordered-mode transaction in the mount's [`CommitOrder`], and only then does it return.
//! Mount recovers a journal left by a crash (ours or the kernel's) and sets `needs_recovery`
//! while mounted; clean unmount checkpoints and clears it (`mount`).
//!
//! # Invariants
//! - An operation that returned `Ok` is durable: its commit block completed with FUA after a
//!   flush that covered its data and journal blocks. A crash recovers to the state after some
//!   prefix of the operations, including every one that returned `Ok` (`txn`).
//! - Once a commit fails (the journal aborts) or a transaction cannot be built, the mount is
//!   read-only: every later operation fails with [`RwError::ReadOnly`] naming the first failure,
//!   and unmount leaves `needs_recovery` set for the next mount.
//! - Paths are absolute (`/a/b`); no symlink is followed by these operations.
//!
//! Operations: create, mkdir, symlink, write, truncate, fallocate, link, set_attr, rename,
//! unlink, rmdir, put; each one transaction.
//!
//! # Not here yet (this slice)
//! - Reading back through this mount: the read path's page cache and metadata reads go to home
//!   locations, which lag the journal until a checkpoint, so this mount offers lookups only
//!   (through the mutator's own metadata). Read files back with a fresh read-only
//!   [`crate::Fs::mount`] after [`RwFs::unmount`].
//! - Buffered writes, fsync and group commit: each operation commits at once; `put` commits
//!   every chunk of [`PUT_CHUNK_BYTES`] as its own transaction (like `cp`, not atomic as a whole:
//!   a crash keeps a prefix of the chunks).
//! - Open files: `unlink` frees at its last link at once (the orphan list exists in the mutator,
//!   and mount processes a list left on disk, but no operation here keeps a file open);
//!   `data=journal`.
//! - One thread: `&mut self` everywhere.

mod error;
mod mount;
mod txn;

use std::io::Read;
use std::sync::Arc;

use aios_block::BlockQueue;
use aios_device::Device;
use aios_journal::runtime::{CommitOrder, Journal, Replayed};

pub use error::RwError;

use crate::error::display_path;
use crate::{Fs, FsError, Inode, IoCtx, MountOptions, Mutator, NewNode, SetAttr};

/// Bytes of one write transaction of [`RwFs::put`].
pub const PUT_CHUNK_BYTES: usize = 1 << 20;

/// How to mount read-write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RwOptions {
    /// Queue and cache settings (as a read-only mount's).
    pub mount: MountOptions,
    /// The commit order of every transaction (`sync`: vanilla ext4, `async`: AIOS).
    pub order: CommitOrder,
}

/// Counters of one read-write mount.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RwStats {
    /// Transactions committed.
    pub commits: u64,
    /// Commits that checkpointed first because the log was full.
    pub checkpoints: u64,
    /// Journal blocks written by commits.
    pub journal_blocks: u64,
    /// Per-stage nanoseconds summed over every commit (the fsync breakdown).
    pub commit_times: aios_journal::runtime::CommitTimes,
}

impl RwStats {
    /// What happened between `before` and `self` (counters and times are monotonic).
    pub fn since(&self, before: &RwStats) -> RwStats {
        let (a, b) = (&self.commit_times, &before.commit_times);
        RwStats {
            commits: self.commits - before.commits,
            checkpoints: self.checkpoints - before.checkpoints,
            journal_blocks: self.journal_blocks - before.journal_blocks,
            commit_times: aios_journal::runtime::CommitTimes {
                checkpoint_ns: a.checkpoint_ns - b.checkpoint_ns,
                build_journal_ns: a.build_journal_ns - b.build_journal_ns,
                submit_ns: a.submit_ns - b.submit_ns,
                wait_ns: a.wait_ns - b.wait_ns,
                flush_ns: a.flush_ns - b.flush_ns,
                commit_ns: a.commit_ns - b.commit_ns,
            },
        }
    }
}

/// A file system mounted read-write. See the module documentation.
pub struct RwFs<D: Device> {
    fs: Fs<D>,
    io: IoCtx<D::Queue>,
    /// The journal's queue (idle between calls, as [`Journal`] requires).
    q: BlockQueue<D::Queue>,
    journal: Journal,
    mutator: Mutator,
    /// The first failure, once the mount is read-only.
    failed: Option<Arc<str>>,
    stats: RwStats,
    replayed: Option<Replayed>,
}

/// Splits absolute `path` into its parent path and last name.
fn split(path: &[u8]) -> Result<(&[u8], &[u8]), FsError> {
    let trimmed = path.strip_suffix(b"/").unwrap_or(path);
    if !trimmed.starts_with(b"/") {
        return Err(FsError::InvalidPath {
            path: display_path(path),
            reason: "not an absolute path with a last name",
        });
    }
    let cut = trimmed.iter().rposition(|&b| b == b'/').unwrap_or(0);
    let (parent, name) = trimmed.split_at(cut);
    let name = name.get(1..).unwrap_or_default();
    Ok((if parent.is_empty() { b"/" } else { parent }, name))
}

impl<D: Device> RwFs<D> {
    /// What mount-time recovery replayed (`None`: the file system was clean).
    pub fn replayed(&self) -> Option<&Replayed> {
        self.replayed.as_ref()
    }

    /// Counters so far.
    pub fn stats(&self) -> RwStats {
        self.stats
    }

    /// True once a failure made the mount read-only.
    pub fn is_read_only(&self) -> bool {
        self.failed.is_some()
    }

    /// The device under the file system (e.g. to crash an emulated one).
    pub fn device(&self) -> &D {
        &self.fs.device
    }

    /// The inode of absolute `path` (no symlink followed), `None` if it does not exist.
    pub fn lookup(&mut self, path: impl AsRef<[u8]>) -> Result<Option<u32>, RwError> {
        let path = path.as_ref();
        self.read("lookup", path, |m, r| m.lookup_path(r, path))
    }

    /// Inode `ino` as this mount sees it.
    pub fn inode(&mut self, ino: u32) -> Result<Inode, RwError> {
        let path = format!("<inode {ino}>");
        self.read("stat", path.as_bytes(), |m, r| m.inode(r, ino))
    }

    fn parent(
        m: &mut Mutator,
        r: &mut dyn crate::BlockRead,
        path: &[u8],
    ) -> Result<(u32, Vec<u8>), FsError> {
        let (parent, name) = split(path)?;
        let ino = m.lookup_path(r, parent)?.ok_or_else(|| FsError::NotFound {
            path: display_path(parent),
        })?;
        Ok((ino, name.to_vec()))
    }

    fn create_node(
        &mut self,
        op: &'static str,
        path: &[u8],
        node: NewNode<'_>,
    ) -> Result<u32, RwError> {
        self.apply(op, path, |m, r| {
            let (parent, name) = Self::parent(m, r, path)?;
            m.create(r, parent, &name, node)
        })
    }

    /// Creates the regular file `path` (permission bits `perm`); returns its inode.
    pub fn create(&mut self, path: impl AsRef<[u8]>, perm: u16) -> Result<u32, RwError> {
        self.create_node("create", path.as_ref(), NewNode::File { perm })
    }

    /// Creates the directory `path`; returns its inode.
    pub fn mkdir(&mut self, path: impl AsRef<[u8]>, perm: u16) -> Result<u32, RwError> {
        self.create_node("mkdir", path.as_ref(), NewNode::Dir { perm })
    }

    /// Creates the symbolic link `path` to `target`; returns its inode.
    pub fn symlink(&mut self, path: impl AsRef<[u8]>, target: &[u8]) -> Result<u32, RwError> {
        self.create_node("symlink", path.as_ref(), NewNode::Symlink { target })
    }

    /// Writes `data` at `offset_bytes` of the regular file `path`, as one transaction.
    pub fn write(
        &mut self,
        path: impl AsRef<[u8]>,
        offset_bytes: u64,
        data: &[u8],
    ) -> Result<(), RwError> {
        let path = path.as_ref();
        self.apply("write", path, |m, r| {
            let ino = resolve(m, r, path)?;
            m.write(r, ino, offset_bytes, data)
        })
    }

    /// Sets the size of the regular file `path`.
    pub fn truncate(&mut self, path: impl AsRef<[u8]>, size_bytes: u64) -> Result<(), RwError> {
        let path = path.as_ref();
        self.apply("truncate", path, |m, r| {
            let ino = resolve(m, r, path)?;
            m.truncate(r, ino, size_bytes)
        })
    }

    /// Removes the non-directory `path` (frees it at its last link).
    pub fn unlink(&mut self, path: impl AsRef<[u8]>) -> Result<(), RwError> {
        let path = path.as_ref();
        self.apply("unlink", path, |m, r| {
            let (parent, name) = Self::parent(m, r, path)?;
            m.unlink(r, parent, &name)
        })
    }

    /// Renames `from` to `to` atomically (one transaction), replacing a file or an empty
    /// directory at `to` as `rename(2)` does.
    pub fn rename(&mut self, from: impl AsRef<[u8]>, to: impl AsRef<[u8]>) -> Result<(), RwError> {
        let (from, to) = (from.as_ref(), to.as_ref());
        self.apply("rename", from, |m, r| {
            // rename(2)'s order: each parent is resolved and must be a directory (`from`'s
            // first), then the source must exist.
            let (old_parent, old_name) = Self::parent(m, r, from)?;
            m.lookup(r, old_parent, b".")?;
            let (new_parent, new_name) = Self::parent(m, r, to)?;
            m.lookup(r, new_parent, b".")?;
            m.rename(r, old_parent, &old_name, new_parent, &new_name)
        })
    }

    /// Adds the name `new_path` for the existing non-directory `existing` (a hard link).
    pub fn link(
        &mut self,
        existing: impl AsRef<[u8]>,
        new_path: impl AsRef<[u8]>,
    ) -> Result<(), RwError> {
        let (existing, new_path) = (existing.as_ref(), new_path.as_ref());
        self.apply("link", new_path, |m, r| {
            let ino = resolve(m, r, existing)?;
            let (parent, name) = Self::parent(m, r, new_path)?;
            m.link(r, ino, parent, &name)
        })
    }

    /// Changes mode bits, owner, group or times of `path` (chmod, chown, utimes); ctime
    /// becomes now, as in Linux.
    pub fn set_attr(&mut self, path: impl AsRef<[u8]>, attr: &SetAttr) -> Result<(), RwError> {
        let path = path.as_ref();
        self.apply("set_attr", path, |m, r| {
            let ino = resolve(m, r, path)?;
            m.set_attr(r, ino, attr)
        })
    }

    /// Allocates `[offset_bytes, offset_bytes + len_bytes)` of the regular file `path` as
    /// unwritten extents (reads return zeros); grows the size unless `keep_size`.
    pub fn fallocate(
        &mut self,
        path: impl AsRef<[u8]>,
        offset_bytes: u64,
        len_bytes: u64,
        keep_size: bool,
    ) -> Result<(), RwError> {
        let path = path.as_ref();
        self.apply("fallocate", path, |m, r| {
            let ino = resolve(m, r, path)?;
            m.fallocate(r, ino, offset_bytes, len_bytes, keep_size)
        })
    }

    /// Removes the empty directory `path`.
    pub fn rmdir(&mut self, path: impl AsRef<[u8]>) -> Result<(), RwError> {
        let path = path.as_ref();
        self.apply("rmdir", path, |m, r| {
            let (parent, name) = Self::parent(m, r, path)?;
            m.rmdir(r, parent, &name)
        })
    }

    /// Creates `path` (mode 0644) or empties it if it is a regular file, then writes everything
    /// `src` yields, [`PUT_CHUNK_BYTES`] per transaction. Returns the bytes written.
    pub fn put(&mut self, path: impl AsRef<[u8]>, src: &mut dyn Read) -> Result<u64, RwError> {
        let path = path.as_ref();
        match self.lookup(path)? {
            Some(_) => self.truncate(path, 0)?,
            None => {
                self.create(path, 0o644)?;
            }
        }
        let mut buf = vec![0u8; PUT_CHUNK_BYTES];
        let mut offset = 0u64;
        loop {
            let mut filled = 0;
            while filled < buf.len() {
                let rest = buf.get_mut(filled..).unwrap_or_default();
                match src.read(rest) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        return Err(RwError::Source {
                            path: display_path(path),
                            offset_bytes: offset + filled as u64,
                            cause: e,
                        })
                    }
                }
            }
            if filled == 0 {
                return Ok(offset);
            }
            self.write(path, offset, buf.get(..filled).unwrap_or_default())?;
            offset += filled as u64;
        }
    }

    /// Writes every committed metadata block home and empties the log.
    pub fn checkpoint(&mut self) -> Result<(), RwError> {
        self.check_writable("checkpoint", b"")?;
        let arena = self.fs.device.arena().clone();
        match self.journal.checkpoint(&mut self.q, &arena) {
            Ok(_) => Ok(()),
            Err(cause) => {
                let e = RwError::Journal {
                    step: "checkpoint",
                    cause,
                };
                self.failed.get_or_insert_with(|| Arc::from(e.to_string()));
                Err(e)
            }
        }
    }
}

/// The inode of absolute `path`, which must exist.
fn resolve(m: &mut Mutator, r: &mut dyn crate::BlockRead, path: &[u8]) -> Result<u32, FsError> {
    m.lookup_path(r, path)?.ok_or_else(|| FsError::NotFound {
        path: display_path(path),
    })
}
