//! The operations of a read-write mount, each applied in the running transaction (`state`),
//! with what each touched for the sync decisions.

use std::io::Read;

use aios_device::Device;

use super::{RwCtx, RwError, RwShared, PUT_CHUNK_BYTES};
use crate::error::display_path;
use crate::{BlockRead, FsError, Inode, Mutator, NewNode, SetAttr};

/// Splits absolute `path` into its parent path and last name.
pub(super) fn split(path: &[u8]) -> Result<(&[u8], &[u8]), FsError> {
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

/// The parent directory's inode and the last name of `path`.
pub(super) fn parent(
    m: &mut Mutator,
    r: &mut dyn BlockRead,
    path: &[u8],
) -> Result<(u32, Vec<u8>), FsError> {
    let (parent, name) = split(path)?;
    let ino = m.lookup_path(r, parent)?.ok_or_else(|| FsError::NotFound {
        path: display_path(parent),
    })?;
    Ok((ino, name.to_vec()))
}

/// The inode of absolute `path`, which must exist.
fn resolve(m: &mut Mutator, r: &mut dyn BlockRead, path: &[u8]) -> Result<u32, FsError> {
    m.lookup_path(r, path)?.ok_or_else(|| FsError::NotFound {
        path: display_path(path),
    })
}

impl<D: Device> RwShared<D> {
    /// The inode of absolute `path` (no symlink followed), `None` if it does not exist.
    pub fn lookup(
        &self,
        ctx: &mut RwCtx<D>,
        path: impl AsRef<[u8]>,
    ) -> Result<Option<u32>, RwError> {
        let path = path.as_ref();
        self.read_op(ctx, "lookup", path, |m, r| m.lookup_path(r, path))
    }

    /// Inode `ino` as this mount sees it (changes not yet committed included).
    pub fn inode(&self, ctx: &mut RwCtx<D>, ino: u32) -> Result<Inode, RwError> {
        let path = format!("<inode {ino}>");
        self.read_op(ctx, "stat", path.as_bytes(), |m, r| m.inode(r, ino))
    }

    fn create_node(
        &self,
        ctx: &mut RwCtx<D>,
        op: &'static str,
        path: &[u8],
        node: NewNode<'_>,
    ) -> Result<u32, RwError> {
        self.apply(ctx, op, path, |m, r, t| {
            let (dir, name) = parent(m, r, path)?;
            let ino = m.create(r, dir, &name, node)?;
            t.sync.push(dir);
            t.datasync.push(ino);
            Ok(ino)
        })
    }

    /// Creates the regular file `path` (permission bits `perm`); returns its inode.
    pub fn create(
        &self,
        ctx: &mut RwCtx<D>,
        path: impl AsRef<[u8]>,
        perm: u16,
    ) -> Result<u32, RwError> {
        self.create_node(ctx, "create", path.as_ref(), NewNode::File { perm })
    }

    /// Creates the directory `path`; returns its inode.
    pub fn mkdir(
        &self,
        ctx: &mut RwCtx<D>,
        path: impl AsRef<[u8]>,
        perm: u16,
    ) -> Result<u32, RwError> {
        self.create_node(ctx, "mkdir", path.as_ref(), NewNode::Dir { perm })
    }

    /// Creates the symbolic link `path` to `target`; returns its inode.
    pub fn symlink(
        &self,
        ctx: &mut RwCtx<D>,
        path: impl AsRef<[u8]>,
        target: &[u8],
    ) -> Result<u32, RwError> {
        self.create_node(ctx, "symlink", path.as_ref(), NewNode::Symlink { target })
    }

    /// Writes `data` at `offset_bytes` of the regular file `path` (buffered: durable at the
    /// next sync of it, or commit).
    pub fn write(
        &self,
        ctx: &mut RwCtx<D>,
        path: impl AsRef<[u8]>,
        offset_bytes: u64,
        data: &[u8],
    ) -> Result<(), RwError> {
        let path = path.as_ref();
        self.write_pieces(ctx, path, data, |m, r, done| {
            Ok((resolve(m, r, path)?, offset_bytes + done))
        })
    }

    /// Writes `data` in pieces of [`RwShared::write_chunk_bytes`], each one operation;
    /// `place(m, r, bytes done)` names the inode and the offset of each piece. An empty write
    /// is still one operation (it checks the file exists).
    pub(super) fn write_pieces(
        &self,
        ctx: &mut RwCtx<D>,
        path: &[u8],
        data: &[u8],
        place: impl Fn(&mut Mutator, &mut dyn BlockRead, u64) -> Result<(u32, u64), FsError>,
    ) -> Result<(), RwError> {
        let pieces: Vec<&[u8]> = if data.is_empty() {
            vec![data]
        } else {
            data.chunks(self.write_chunk_bytes()).collect()
        };
        let mut done = 0u64;
        for piece in pieces {
            self.apply(ctx, "write", path, |m, r, t| {
                let (ino, at) = place(m, r, done)?;
                let report = m.write_report(r, ino, at, piece)?;
                if report.remapped {
                    t.datasync.push(ino);
                }
                t.data.push((ino, report.blocks));
                Ok(())
            })?;
            done += piece.len() as u64;
        }
        Ok(())
    }

    /// The largest piece of one `write` applied as one operation: half a transaction's
    /// limit, so a large write commits between pieces (as jbd2 does per handle) instead of
    /// growing a transaction past what the log and the arena hold. A crash keeps a prefix of
    /// the pieces, as it may keep part of a large `write(2)`.
    pub(super) fn write_chunk_bytes(&self) -> usize {
        (self.txn_blocks_max.min(self.dirty_blocks_max) / 2).max(1) * aios_device::BLOCK_SIZE
    }

    /// Sets the size of the regular file `path`.
    pub fn truncate(
        &self,
        ctx: &mut RwCtx<D>,
        path: impl AsRef<[u8]>,
        size_bytes: u64,
    ) -> Result<(), RwError> {
        let path = path.as_ref();
        self.apply(ctx, "truncate", path, |m, r, t| {
            let ino = resolve(m, r, path)?;
            m.truncate(r, ino, size_bytes)?;
            t.datasync.push(ino);
            Ok(())
        })
    }

    /// Removes the non-directory `path` (frees it at its last link).
    pub fn unlink(&self, ctx: &mut RwCtx<D>, path: impl AsRef<[u8]>) -> Result<(), RwError> {
        let path = path.as_ref();
        self.apply(ctx, "unlink", path, |m, r, t| {
            let (dir, name) = parent(m, r, path)?;
            // Its link count changes: an fsync through another name must commit that.
            let victim = m.lookup(r, dir, &name)?;
            match victim {
                // Open: its last name going puts it on the orphan list until the last close.
                Some(ino) if t.open_inodes.contains(&ino) => {
                    t.orphaned.extend(m.unlink_open(r, dir, &name)?);
                }
                _ => m.unlink(r, dir, &name)?,
            }
            t.sync.push(dir);
            t.sync.extend(victim);
            Ok(())
        })
    }

    /// Renames `from` to `to` atomically (one transaction), replacing a file or an empty
    /// directory at `to` as `rename(2)` does.
    pub fn rename(
        &self,
        ctx: &mut RwCtx<D>,
        from: impl AsRef<[u8]>,
        to: impl AsRef<[u8]>,
    ) -> Result<(), RwError> {
        let (from, to) = (from.as_ref(), to.as_ref());
        self.apply(ctx, "rename", from, |m, r, t| {
            // rename(2)'s order: each parent is resolved and must be a directory (`from`'s
            // first), then the source must exist.
            let (old_parent, old_name) = parent(m, r, from)?;
            m.lookup(r, old_parent, b".")?;
            let (new_parent, new_name) = parent(m, r, to)?;
            m.lookup(r, new_parent, b".")?;
            let moved = m.lookup(r, old_parent, &old_name)?;
            // A replaced entry's inode loses a link (see `unlink`).
            let replaced = m.lookup(r, new_parent, &new_name)?;
            // An open file replaced at its last name goes on the orphan list (freed at its
            // last close), as `unlink` does; a handle must never write into a freed inode.
            let orphan_first = match (moved, replaced) {
                (Some(src), Some(victim)) if src != victim && t.open_inodes.contains(&victim) => {
                    !m.inode(r, src)?.is_dir() && !m.inode(r, victim)?.is_dir()
                }
                _ => false,
            };
            let orphaned = &mut t.orphaned;
            m.atomic(r, |m, r| {
                if orphan_first {
                    orphaned.extend(m.unlink_open(r, new_parent, &new_name)?);
                }
                m.rename(r, old_parent, &old_name, new_parent, &new_name)
            })?;
            t.sync.extend([old_parent, new_parent]);
            t.sync.extend(moved);
            t.sync.extend(replaced);
            Ok(())
        })
    }

    /// Adds the name `new_path` for the existing non-directory `existing` (a hard link).
    pub fn link(
        &self,
        ctx: &mut RwCtx<D>,
        existing: impl AsRef<[u8]>,
        new_path: impl AsRef<[u8]>,
    ) -> Result<(), RwError> {
        let (existing, new_path) = (existing.as_ref(), new_path.as_ref());
        self.apply(ctx, "link", new_path, |m, r, t| {
            let ino = resolve(m, r, existing)?;
            let (dir, name) = parent(m, r, new_path)?;
            m.link(r, ino, dir, &name)?;
            t.sync.extend([ino, dir]);
            Ok(())
        })
    }

    /// Changes mode bits, owner, group or times of `path` (chmod, chown, utimes); ctime
    /// becomes now, as in Linux.
    pub fn set_attr(
        &self,
        ctx: &mut RwCtx<D>,
        path: impl AsRef<[u8]>,
        attr: &SetAttr,
    ) -> Result<(), RwError> {
        let path = path.as_ref();
        self.apply(ctx, "set_attr", path, |m, r, t| {
            let ino = resolve(m, r, path)?;
            m.set_attr(r, ino, attr)?;
            t.sync.push(ino);
            Ok(())
        })
    }

    /// Allocates `[offset_bytes, offset_bytes + len_bytes)` of the regular file `path` as
    /// unwritten extents (reads return zeros); grows the size unless `keep_size`.
    pub fn fallocate(
        &self,
        ctx: &mut RwCtx<D>,
        path: impl AsRef<[u8]>,
        offset_bytes: u64,
        len_bytes: u64,
        keep_size: bool,
    ) -> Result<(), RwError> {
        let path = path.as_ref();
        self.apply(ctx, "fallocate", path, |m, r, t| {
            let ino = resolve(m, r, path)?;
            m.fallocate(r, ino, offset_bytes, len_bytes, keep_size)?;
            t.datasync.push(ino);
            Ok(())
        })
    }

    /// Removes the empty directory `path`.
    pub fn rmdir(&self, ctx: &mut RwCtx<D>, path: impl AsRef<[u8]>) -> Result<(), RwError> {
        let path = path.as_ref();
        self.apply(ctx, "rmdir", path, |m, r, t| {
            let (dir, name) = parent(m, r, path)?;
            m.rmdir(r, dir, &name)?;
            t.sync.push(dir);
            Ok(())
        })
    }

    /// Creates `path` (mode 0644) or empties it if it is a regular file, writes everything
    /// `src` yields ([`PUT_CHUNK_BYTES`] per write), then fsyncs it, like `cp` followed by
    /// `sync`. A crash before the fsync keeps a prefix of the writes. Returns the bytes
    /// written.
    pub fn put(
        &self,
        ctx: &mut RwCtx<D>,
        path: impl AsRef<[u8]>,
        src: &mut dyn Read,
    ) -> Result<u64, RwError> {
        let path = path.as_ref();
        match self.lookup(ctx, path)? {
            Some(_) => self.truncate(ctx, path, 0)?,
            None => {
                self.create(ctx, path, 0o644)?;
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
                self.fsync(ctx, path)?;
                return Ok(offset);
            }
            self.write(ctx, path, offset, buf.get(..filled).unwrap_or_default())?;
            offset += filled as u64;
        }
    }

    /// Commits everything, then writes every committed metadata block home and empties the
    /// log. Like a commit, it takes the journal out of the state and writes unlocked:
    /// operations go on meanwhile, commits and data syncs wait.
    pub fn checkpoint(&self, ctx: &mut RwCtx<D>) -> Result<(), RwError> {
        let st = self.lock();
        self.sync_all(ctx, st, "checkpoint", b"")?;
        let mut st = self.lock();
        loop {
            Self::check_writable(&st, "checkpoint", b"")?;
            if st.idle() {
                break;
            }
            st = self.wait(st);
        }
        let Some(mut journal) = st.journal.take() else {
            unreachable!("checked just above, under the same lock");
        };
        // Checkpointed up to the last committed transaction: what commits later is not home.
        let committed = st.committed;
        drop(st);
        let arena = self.fs.device.arena();
        let result = journal.checkpoint(&mut ctx.q, arena);
        let mut st = self.lock();
        st.journal = Some(journal);
        self.wake_all();
        match result {
            Ok(_) => {
                st.checkpointed(Some(committed + 1));
                Ok(())
            }
            Err(cause) => {
                let e = RwError::Journal {
                    step: "checkpoint",
                    cause,
                };
                Err(self.fail(&mut st, e))
            }
        }
    }
}
