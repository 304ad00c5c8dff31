//! Open files and the plain, uncached read.
//!
//! # Role
//! [`Fs::open`] reads a regular file's inode and loads its whole extent map, so a read maps
//! offsets to blocks without metadata I/O. [`Fs::read_at`] walks the requested range:
//! - holes and unwritten extents are zero-filled, no I/O;
//! - a written run is read as one request of up to [`SEGMENTS_MAX`] blocks
//!   ([`aios_device::IO_BYTES_MAX`]) into the context's scratch pages, then copied out.
//!
//! This is the uncached read path; the page cache and the AIOS ordering build on top of it.
//!
//! # Promises
//! `read_at` returns the bytes `[offset, min(offset + buf.len(), size))` of the file as of open,
//! and their count: short only at end of file, 0 at or past it.

use std::sync::Arc;

use aios_device::{Device, BLOCK_SIZE, SEGMENTS_MAX};
use aios_ext4::format::inode::Inode;
use aios_ext4::Location;

use crate::cache_id::CacheId;
use crate::readahead_state::SeqState;
use crate::{ExtentMap, Fs, FsError, IoCtx};

/// A regular file opened for reading: its inode and extent map, loaded at open.
#[derive(Debug, Clone)]
pub struct File {
    inode: Inode,
    /// Shared: a read-write mount hands one map to every read of an unchanged open file.
    extents: Arc<ExtentMap>,
    /// Whose pages its reads find in the page cache.
    pub(crate) cache: CacheId,
    /// Sequential-access detection for readahead (per handle).
    pub(crate) seq: SeqState,
}

/// How a handle's reads will go, like `posix_fadvise`'s advice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Access {
    /// Sequential runs are detected and read ahead.
    #[default]
    Normal,
    /// No readahead on this handle: every read fetches only what it asks for.
    Random,
}

impl File {
    /// A file whose inode and map the caller has (a read-write mount's plan), its pages in
    /// cache epoch `epoch`.
    pub(crate) fn with_map(inode: Inode, extents: Arc<ExtentMap>, epoch: u64) -> File {
        File {
            cache: CacheId {
                ino: inode.ino,
                epoch,
            },
            inode,
            extents,
            seq: SeqState::default(),
        }
    }

    /// Advises how this handle will be read (`POSIX_FADV_NORMAL` / `POSIX_FADV_RANDOM`).
    pub fn advise(&self, access: Access) {
        self.seq.set_random(access == Access::Random);
    }
    pub fn ino(&self) -> u32 {
        self.inode.ino
    }

    pub fn size_bytes(&self) -> u64 {
        self.inode.size_bytes
    }

    pub fn inode(&self) -> &Inode {
        &self.inode
    }

    pub fn extents(&self) -> &ExtentMap {
        &self.extents
    }
}

impl<D: Device> Fs<D> {
    /// Opens regular file `ino`: reads its inode and its whole extent tree.
    pub fn open(&self, io: &mut IoCtx<D::Queue>, ino: u32) -> Result<File, FsError> {
        let inode = self.read_inode(io, ino)?;
        if inode.is_dir() {
            return Err(FsError::IsADirectory { ino });
        }
        if !inode.is_regular() {
            return Err(FsError::NotARegularFile { ino });
        }
        let extents = self.extent_map(io, &inode)?;
        Ok(File::with_map(inode, Arc::new(extents), 0))
    }

    /// Reads from `offset` into `buf`; returns the bytes read (short only at end of file).
    pub fn read_at(
        &self,
        io: &mut IoCtx<D::Queue>,
        file: &File,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, FsError> {
        let size = file.size_bytes();
        if offset >= size {
            return Ok(0);
        }
        let len = usize::try_from(size - offset).map_or(buf.len(), |left| left.min(buf.len()));
        let block_bytes = BLOCK_SIZE as u64;
        let mut done = 0usize;
        while done < len {
            let pos = offset + done as u64;
            let logical = pos / block_bytes;
            let within = (pos % block_bytes) as usize;
            let want = len - done;
            let out = buf.get_mut(done..len).unwrap_or_default();
            let copied = match file.extents.find(logical) {
                Some(m) if !m.unwritten => {
                    let end_block = (pos + want as u64).div_ceil(block_bytes);
                    let run = (m.end_block().min(end_block) - logical).min(SEGMENTS_MAX as u64);
                    let physical = m.physical_block + (logical - m.logical_block);
                    let at = Location::ExtentRoot { ino: file.ino() };
                    self.read_blocks(io, physical, run as usize, at)?;
                    copy_out(io, run as usize, within, out)
                }
                Some(m) => zero(out, (m.end_block() - logical) * block_bytes - within as u64),
                None => {
                    let next = file.extents.next_mapped(logical);
                    let hole_bytes = next.map_or(u64::MAX, |n| (n - logical) * block_bytes);
                    zero(out, hole_bytes - within as u64)
                }
            };
            if copied == 0 {
                break;
            }
            done += copied;
        }
        Ok(done)
    }
}

/// Copies from the `pages` loaded pages, starting `within` bytes into the first, into `out`.
fn copy_out<Q: aios_device::Queue>(
    io: &IoCtx<Q>,
    pages: usize,
    within: usize,
    out: &mut [u8],
) -> usize {
    let mut copied = 0;
    let mut skip = within;
    for i in 0..pages {
        let page = io.page(i).get(skip..).unwrap_or_default();
        skip = 0;
        let n = page.len().min(out.len() - copied);
        if let (Some(dst), Some(src)) = (out.get_mut(copied..copied + n), page.get(..n)) {
            dst.copy_from_slice(src);
        }
        copied += n;
        if copied == out.len() {
            break;
        }
    }
    copied
}

/// Zero-fills up to `max_bytes` of `out`; returns how many.
fn zero(out: &mut [u8], max_bytes: u64) -> usize {
    let n = usize::try_from(max_bytes).map_or(out.len(), |m| m.min(out.len()));
    if let Some(dst) = out.get_mut(..n) {
        dst.fill(0);
    }
    n
}
