//! Making a file system this crate mounts: `mke2fs` (e2fsprogs) with exactly the features aios
//! supports (`docs/format.md`), 4 KiB blocks. The one place aios makes file systems; the `aios
//! mkfs` command, the benchmarks' images and any later front end call [`make_ext4`].
//!
//! Assumes `mke2fs` is on the `PATH`; says how to install it when it is not.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The features [`make_ext4`] asks for: exactly what aios reads (docs/format.md).
pub const MKFS_FEATURES: &str =
    "none,has_journal,ext_attr,resize_inode,dir_index,filetype,extent,64bit,flex_bg,\
sparse_super,large_file,huge_file,dir_nlink,extra_isize,metadata_csum";

/// Why `mke2fs` did not make the file system.
#[derive(Debug, thiserror::Error)]
pub enum MkfsError {
    /// `mke2fs` could not be started (not installed, say).
    #[error("run mke2fs (apt-get install e2fsprogs)")]
    Spawn(#[source] std::io::Error),
    /// `mke2fs` ran and refused; its standard error says why.
    #[error("mke2fs {} failed: {stderr}", image.display())]
    Failed { image: PathBuf, stderr: String },
}

/// Runs `mke2fs` for a 4 KiB-block ext4 image of `size_bytes` with [`MKFS_FEATURES`] on `image`
/// (a file, created if missing, or a block device), optionally populated from a directory (`-d`).
pub fn make_ext4(
    image: &Path,
    size_bytes: u64,
    populate_from: Option<&Path>,
) -> Result<(), MkfsError> {
    let mut cmd = Command::new("mke2fs");
    cmd.args(["-q", "-F", "-t", "ext4", "-b", "4096", "-O", MKFS_FEATURES]);
    if let Some(dir) = populate_from {
        cmd.arg("-d").arg(dir);
    }
    cmd.arg(image).arg(format!("{}k", size_bytes / 1024));
    let out = cmd.output().map_err(MkfsError::Spawn)?;
    if !out.status.success() {
        return Err(MkfsError::Failed {
            image: image.to_path_buf(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}
