//! Reading file contents through a read-write mount.
//!
//! The mount's own view is the truth: the mutator's inode and extent tree (changes not yet
//! committed included), then for each block its newest contents: a dirty block of the running
//! transaction, a `data=journal` block not yet written home, or the device. Holes and
//! unwritten extents read as zeros. This path copies under the state lock and reads one block
//! at a time; it is for correctness (tests, tools), not the read benchmark, which uses the
//! read-only mount's page cache.

use aios_device::{Device, BLOCK_SIZE};
use aios_ext4::Location;

use super::{RwCtx, RwError, RwShared};
use crate::error::display_path;
use crate::FsError;

impl<D: Device> RwShared<D> {
    /// Reads up to `out.len()` bytes of the regular file `path` at `offset_bytes`; returns the
    /// bytes read (short only at the end of the file).
    pub fn read(
        &self,
        ctx: &mut RwCtx<D>,
        path: impl AsRef<[u8]>,
        offset_bytes: u64,
        out: &mut [u8],
    ) -> Result<usize, RwError> {
        let path = path.as_ref();
        let ino = self.read_op(ctx, "read", path, |m, r| {
            m.lookup_path(r, path)?.ok_or_else(|| FsError::NotFound {
                path: display_path(path),
            })
        })?;
        self.read_ino(ctx, path, ino, offset_bytes, out)
    }

    /// Reads inode `ino` (named `path` in errors); see [`RwShared::read`].
    pub(super) fn read_ino(
        &self,
        ctx: &mut RwCtx<D>,
        path: &[u8],
        ino: u32,
        offset_bytes: u64,
        out: &mut [u8],
    ) -> Result<usize, RwError> {
        self.read_op(ctx, "read", path, |m, r| {
            let inode = m.inode(r, ino)?;
            if !inode.is_regular() {
                return Err(FsError::NotARegularFile { ino });
            }
            let end = inode
                .size_bytes
                .min(offset_bytes.saturating_add(out.len() as u64));
            if offset_bytes >= end {
                return Ok(0);
            }
            let extents = m.extents(r, ino)?;
            let bs = BLOCK_SIZE as u64;
            let mut pos = offset_bytes;
            while pos < end {
                let logical = pos / bs;
                let within = (pos % bs) as usize;
                let n = ((bs - within as u64).min(end - pos)) as usize;
                let dst_at = (pos - offset_bytes) as usize;
                let dst = out.get_mut(dst_at..dst_at + n).ok_or(FsError::Corrupt {
                    at: Location::Inode { ino },
                    what: "read range outside the buffer",
                })?;
                let mapped = extents.iter().find(|e| {
                    u64::from(e.first_logical_block) <= logical
                        && logical < u64::from(e.first_logical_block) + u64::from(e.len_blocks)
                });
                match mapped {
                    Some(e) if !e.unwritten => {
                        let physical = e.start_block + (logical - u64::from(e.first_logical_block));
                        // The reader sees `data=journal` blocks not yet home before the device.
                        let src = match m.dirty_data(physical) {
                            Some(bytes) => bytes.to_vec(),
                            None => r.read_block(physical, Location::Inode { ino })?,
                        };
                        let src = src.get(within..within + n).ok_or(FsError::Corrupt {
                            at: Location::Inode { ino },
                            what: "short data block",
                        })?;
                        dst.copy_from_slice(src);
                    }
                    _ => dst.fill(0),
                }
                pos += n as u64;
            }
            Ok((end - offset_bytes) as usize)
        })
    }
}
