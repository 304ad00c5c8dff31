//! Open files of a read-write mount: `open` with create/truncate/append/exclusive semantics,
//! I/O and syncs by handle (no path lookup per call), and `close`.
//!
//! # Invariants
//! - `State::open_count[ino]` is the number of [`RwFile`]s of `ino` not yet closed.
//! - `unlink` (or a replacing `rename`) of an open file's last name puts the inode on the
//!   on-disk orphan list instead of freeing it (`Mutator::unlink_open`), so the handle keeps
//!   reading and writing it; the last `close` frees it in a transaction of its own. A crash (or an unmount with the file still
//!   open) leaves it on the list, and the next mount frees it, as the kernel's orphan cleanup
//!   does.
//! - A handle names an inode, not a path: renames do not affect it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use aios_cache::Cached;
use aios_device::{Device, BLOCK_SIZE};

use super::published::{Published, SIZE_UNKNOWN};
use super::{RwCtx, RwError, RwShared};
use crate::cache_id::{CacheId, FILE_PAGES_MAX};
use crate::error::display_path;
use crate::readahead_state::SeqState;
use crate::{FsError, NewNode};

/// How to open (the `O_*` flags that matter here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    /// `O_CREAT`: create a regular file if the name does not exist.
    pub create: bool,
    /// `O_EXCL` (with `create`): fail if the name exists.
    pub exclusive: bool,
    /// `O_TRUNC`: empty an existing regular file.
    pub truncate: bool,
    /// `O_APPEND`: every write goes to the end of the file, whatever its offset.
    pub append: bool,
    /// Permission bits of a created file.
    pub perm: u16,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            create: false,
            exclusive: false,
            truncate: false,
            append: false,
            perm: 0o644,
        }
    }
}

/// An open file of a [`RwShared`] mount. Close it with [`RwShared::close`]; a handle dropped
/// without closing keeps the inode counted open until unmount.
#[derive(Debug)]
pub struct RwFile {
    ino: u32,
    append: bool,
    pub(super) path: Box<[u8]>,
    /// The inode's size and cache epoch, for reads without the state lock.
    pub(super) published: Arc<Published>,
    /// Sequential-access detection for readahead, kept across this handle's reads.
    pub(super) seq: SeqState,
}

impl RwFile {
    /// Its inode number.
    pub fn ino(&self) -> u32 {
        self.ino
    }
}

impl<D: Device> RwShared<D> {
    /// Opens `path` (see [`OpenOptions`]); the file is created or truncated in the running
    /// transaction, like any operation.
    pub fn open(
        &self,
        ctx: &mut RwCtx<D>,
        path: impl AsRef<[u8]>,
        how: OpenOptions,
    ) -> Result<RwFile, RwError> {
        let path = path.as_ref();
        let ino = self.apply(ctx, "open", path, |m, r, t| {
            let (dir, name) = super::ops::parent(m, r, path)?;
            let ino = match m.lookup(r, dir, &name)? {
                Some(_) if how.create && how.exclusive => {
                    return Err(FsError::Exists {
                        name: display_path(path),
                    })
                }
                Some(ino) => {
                    if how.truncate {
                        m.truncate(r, ino, 0)?;
                        t.datasync.push(ino);
                    }
                    ino
                }
                None if how.create => {
                    let ino = m.create(r, dir, &name, NewNode::File { perm: how.perm })?;
                    t.sync.push(dir);
                    t.datasync.push(ino);
                    ino
                }
                None => {
                    return Err(FsError::NotFound {
                        path: display_path(path),
                    })
                }
            };
            t.opened = Some(ino);
            Ok(ino)
        })?;
        let published = {
            let mut st = self.lock();
            match st.published.get(&ino).cloned() {
                Some(published) => published,
                None => {
                    let published = Arc::new(Published::new(SIZE_UNKNOWN, 0));
                    st.published.insert(ino, Arc::clone(&published));
                    self.publish(&mut st, ino);
                    published
                }
            }
        };
        Ok(RwFile {
            ino,
            append: how.append,
            path: path.into(),
            published,
            seq: SeqState::default(),
        })
    }

    /// Closes `file`; the last close of an unlinked file frees it.
    pub fn close(&self, ctx: &mut RwCtx<D>, file: RwFile) -> Result<(), RwError> {
        let last_of_orphan = {
            let mut st = self.lock();
            let n = st.open_count.entry(file.ino).or_insert(1);
            *n -= 1;
            if *n == 0 {
                st.open_count.remove(&file.ino);
                st.published.remove(&file.ino);
                st.views.remove(&file.ino);
                st.orphaned_open.remove(&file.ino)
            } else {
                false
            }
        };
        if last_of_orphan {
            self.apply(ctx, "close", &file.path, |m, r, t| {
                m.release_orphan(r, file.ino)?;
                // Freed: its pages must not outlive it (see `State::note`).
                t.datasync.push(file.ino);
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Writes `data` at `offset_bytes` of `file` (at its end if opened with `append`);
    /// buffered like [`RwShared::write`].
    pub fn write_at(
        &self,
        ctx: &mut RwCtx<D>,
        file: &RwFile,
        offset_bytes: u64,
        data: &[u8],
    ) -> Result<(), RwError> {
        let ino = file.ino;
        self.write_pieces(ctx, &file.path, data, |m, r, done| {
            let at = if file.append {
                m.inode(r, ino)?.size_bytes
            } else {
                offset_bytes + done
            };
            Ok((ino, at))
        })
    }

    /// Reads from `file` (see [`RwShared::read`]). When every page is cached in the file's
    /// published epoch the read takes no mount-wide lock: one snapshot of the published size
    /// and epoch, then the page cache's hits, which write nothing another thread reads
    /// (`published`, `aios_cache`'s write-free hit). A miss takes no mount-wide lock either
    /// while the file has no page newer in memory (`RwShared::read_unlocked`); otherwise it
    /// plans under the state lock.
    pub fn read_at(
        &self,
        ctx: &mut RwCtx<D>,
        file: &RwFile,
        offset_bytes: u64,
        out: &mut [u8],
    ) -> Result<usize, RwError> {
        if let Some(n) = self.read_cached(file, offset_bytes, out) {
            return Ok(n);
        }
        if let Some(read) = self.read_unlocked(ctx, file, offset_bytes, out) {
            return read;
        }
        self.read_ino(
            ctx,
            &file.path,
            file.ino,
            Some(&file.seq),
            offset_bytes,
            out,
        )
    }

    /// The lock-free hit: `Some(bytes read)` if every page of the read was a cache hit in the
    /// published epoch (or the read is at or past the end), `None` to take the locked path.
    fn read_cached(&self, file: &RwFile, offset_bytes: u64, out: &mut [u8]) -> Option<usize> {
        let (size_bytes, epoch) = file.published.snapshot();
        if size_bytes == SIZE_UNKNOWN {
            return None;
        }
        if offset_bytes >= size_bytes || out.is_empty() {
            return Some(0);
        }
        let end = size_bytes.min(offset_bytes.saturating_add(out.len() as u64));
        if self.readahead_due(&file.seq, offset_bytes, end) {
            return None;
        }
        let cache = CacheId {
            ino: file.ino,
            epoch,
        };
        let block = BLOCK_SIZE as u64;
        let mut pos = offset_bytes;
        while pos < end {
            let page = pos / block;
            if page >= FILE_PAGES_MAX {
                return None;
            }
            let within = (pos % block) as usize;
            let to = ((page + 1) * block).min(end);
            let dst = out.get_mut((pos - offset_bytes) as usize..(to - offset_bytes) as usize)?;
            match self.fs.cache.read_cached(cache.key(page), within, dst) {
                Ok(Cached::Copied) => {}
                _ => return None,
            }
            pos = to;
        }
        file.seq.next_offset_bytes.store(end, Ordering::Relaxed);
        Some((end - offset_bytes) as usize)
    }

    /// True if a sequential read of `[offset_bytes, end)` on a handle with a readahead stream
    /// comes within half a window of its frontier: it takes the locked path, which starts the
    /// next window while these pages are still cached (the kernel's `PG_readahead` mark).
    fn readahead_due(&self, seq: &SeqState, offset_bytes: u64, end: u64) -> bool {
        let frontier = seq.frontier_page.load(Ordering::Relaxed);
        let window = self.fs.options.readahead_pages as u64;
        frontier != 0
            && seq.next_offset_bytes.load(Ordering::Relaxed) == offset_bytes
            && end.div_ceil(BLOCK_SIZE as u64) + window / 2 >= frontier
    }

    /// `fsync(2)` of `file`.
    pub fn fsync_file(&self, ctx: &mut RwCtx<D>, file: &RwFile) -> Result<(), RwError> {
        self.sync_inode(ctx, "fsync", &file.path, file.ino, false)
    }

    /// `fdatasync(2)` of `file`.
    pub fn fdatasync_file(&self, ctx: &mut RwCtx<D>, file: &RwFile) -> Result<(), RwError> {
        self.sync_inode(ctx, "fdatasync", &file.path, file.ino, true)
    }
}
