//! Path lookup and symbolic links.
//!
//! # Role
//! [`Fs::lookup`] resolves an absolute path component by component from the root directory,
//! reading each directory with a linear scan ([`crate::dir`]). Symlinks met as intermediate
//! components are followed (an absolute target restarts at the root, a relative one continues in
//! the directory holding the link); the final component is followed only by
//! [`Fs::lookup_follow`], or when the path ends in `/` (then it must be a directory, as in Linux).
//! `..` is the on-disk `..` entry; empty components and `.` are skipped.
//!
//! # Limits
//! - A component longer than [`NAME_LEN_MAX`] bytes is [`FsError::NameTooLong`].
//! - More than [`SYMLINKS_FOLLOWED_MAX`] symlinks in one lookup is [`FsError::SymlinkLoop`].
//! - A symlink target is at most one block (the kernel's limit for a 4 KiB block file system).
//!
//! Fast symlinks keep their target in `i_block` (size < 60, no extents); slow ones in a data
//! block reached through the extent map.

use aios_device::{Device, BLOCK_SIZE};
use aios_ext4::format::dir::NAME_LEN_MAX;
use aios_ext4::format::inode::{Inode, I_BLOCK_SIZE_BYTES};
use aios_ext4::Location;

use crate::error::display_path;
use crate::{Fs, FsError, IoCtx, ROOT_INO, SYMLINKS_FOLLOWED_MAX};

impl<D: Device> Fs<D> {
    /// The inode of absolute `path`, not following a symlink in its last component (`lstat`).
    pub fn lookup(&self, io: &mut IoCtx<D::Queue>, path: impl AsRef<[u8]>) -> Result<u32, FsError> {
        let path = path.as_ref();
        self.resolve(io, path, false).map_err(|e| e.at_path(path))
    }

    /// The inode of absolute `path`, following a symlink in its last component too (`stat`).
    pub fn lookup_follow(
        &self,
        io: &mut IoCtx<D::Queue>,
        path: impl AsRef<[u8]>,
    ) -> Result<u32, FsError> {
        let path = path.as_ref();
        self.resolve(io, path, true).map_err(|e| e.at_path(path))
    }

    /// The target of symlink `ino`.
    pub fn read_link(&self, io: &mut IoCtx<D::Queue>, ino: u32) -> Result<Vec<u8>, FsError> {
        let inode = self.read_inode(io, ino)?;
        self.link_target(io, &inode)
    }

    fn resolve(
        &self,
        io: &mut IoCtx<D::Queue>,
        path: &[u8],
        follow_last: bool,
    ) -> Result<u32, FsError> {
        if path.first() != Some(&b'/') {
            return Err(FsError::InvalidPath {
                path: display_path(path),
                reason: "not an absolute path",
            });
        }
        // A trailing `/` (or `/.`) makes the path name a directory, as in Linux's path resolution:
        // a symlink in the last component is followed even by `lookup` (`lstat("link/")` is the
        // target directory's) and anything but a directory is `NotADirectory`.
        let must_be_dir = path.ends_with(b"/") || path.ends_with(b"/.");
        let follow_last = follow_last || must_be_dir;
        // Components still to resolve, the next one last.
        let mut pending: Vec<Vec<u8>> = Vec::new();
        push_components(&mut pending, path);
        let mut cur = ROOT_INO;
        let mut links_followed = 0;
        while let Some(name) = pending.pop() {
            if name.len() > NAME_LEN_MAX {
                return Err(FsError::NameTooLong {
                    path: display_path(path),
                });
            }
            let dir = self.read_inode(io, cur)?;
            if !dir.is_dir() {
                return Err(FsError::NotADirectory {
                    path: display_path(path),
                });
            }
            let child = self
                .find_entry(io, &dir, &name)?
                .ok_or_else(|| FsError::NotFound {
                    path: display_path(path),
                })?;
            if pending.is_empty() && !follow_last {
                return Ok(child);
            }
            let inode = self.read_inode(io, child)?;
            if !inode.is_symlink() {
                if pending.is_empty() && must_be_dir && !inode.is_dir() {
                    return Err(FsError::NotADirectory {
                        path: display_path(path),
                    });
                }
                cur = child;
                continue;
            }
            links_followed += 1;
            if links_followed > SYMLINKS_FOLLOWED_MAX {
                return Err(FsError::SymlinkLoop {
                    path: display_path(path),
                });
            }
            let target = self.link_target(io, &inode)?;
            if target.is_empty() {
                return Err(FsError::NotFound {
                    path: display_path(path),
                });
            }
            if target.first() == Some(&b'/') {
                cur = ROOT_INO;
            }
            push_components(&mut pending, &target);
        }
        Ok(cur)
    }

    fn link_target(&self, io: &mut IoCtx<D::Queue>, inode: &Inode) -> Result<Vec<u8>, FsError> {
        let ino = inode.ino;
        if !inode.is_symlink() {
            return Err(FsError::NotASymlink { ino });
        }
        let corrupt = |what| FsError::Corrupt {
            at: Location::Inode { ino },
            what,
        };
        let len = usize::try_from(inode.size_bytes)
            .ok()
            .filter(|&n| n < BLOCK_SIZE)
            .ok_or(corrupt("symlink longer than a block"))?;
        if !inode.uses_extents() && len < I_BLOCK_SIZE_BYTES {
            let target = inode.block.get(..len).ok_or(corrupt("fast symlink size"))?;
            return Ok(target.to_vec());
        }
        let map = self.extent_map(io, inode)?;
        let mapping = map
            .find(0)
            .filter(|m| !m.unwritten)
            .ok_or(corrupt("slow symlink without a data block"))?;
        self.read_blocks(io, mapping.physical_block, 1, Location::Inode { ino })?;
        let target = io.page(0).get(..len).ok_or(corrupt("symlink target"))?;
        Ok(target.to_vec())
    }
}

/// Pushes the components of `path` onto `pending` so that the first one is popped first.
fn push_components(pending: &mut Vec<Vec<u8>>, path: &[u8]) {
    let start = pending.len();
    pending.extend(
        path.split(|&b| b == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
            .map(<[u8]>::to_vec),
    );
    if let Some(added) = pending.get_mut(start..) {
        added.reverse();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_pop_in_path_order_without_empty_or_dot() {
        let mut pending = vec![b"rest".to_vec()];
        push_components(&mut pending, b"//a/./b//c/");
        assert_eq!(pending.pop().unwrap(), b"a");
        assert_eq!(pending.pop().unwrap(), b"b");
        assert_eq!(pending.pop().unwrap(), b"c");
        assert_eq!(pending.pop().unwrap(), b"rest");
        assert!(pending.is_empty());
    }
}
