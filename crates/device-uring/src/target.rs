//! The target below the rings: [`aios_device::open_target`] (shared with the pread backend:
//! `O_DIRECT`, read-only option, `O_EXCL` / `flock` exclusivity, capacity from the file length or
//! `BLKGETSIZE64`), plus what io_uring needs to know about the block device underneath.
//!
//! Adds: the device's request queue attributes from sysfs (`io_poll` for the `IOPOLL` probe,
//! `write_cache` for [`aios_device::DeviceInfo::volatile_cache`]). (`open_target` already refuses
//! block devices whose logical blocks exceed [`aios_device::BLOCK_SIZE`].)
//!
//! Assumptions: a regular file lives on a file system whose device has logical blocks of at most
//! [`aios_device::BLOCK_SIZE`] (otherwise `O_DIRECT` fails with `EINVAL` at the first command). When sysfs
//! does not say (device-mapper stacks, multi-device file systems), the answers are the safe
//! ones: volatile cache, and the `IOPOLL` probe decides alone.

use aios_device::{open_target, DeviceError, TargetOptions};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// An open direct-I/O target.
#[derive(Debug)]
pub(crate) struct Target {
    pub file: File,
    pub capacity_bytes: u64,
    pub is_block_device: bool,
    /// True when the write cache below may lose non-FUA writes at a crash.
    pub volatile_cache: bool,
    /// The block device whose request queue serves our I/O: the device itself, or the one
    /// holding the file system of an image file (`st_dev`).
    queue_dev: u64,
}

impl Target {
    /// A `queue/` attribute of the block device below (a partition's queue is its disk's), e.g.
    /// `io_poll` or `write_cache`; `None` when sysfs does not say.
    pub fn queue_attr(&self, name: &str) -> Option<String> {
        queue_attr(self.queue_dev, name)
    }
}

/// Opens `path` for direct I/O; see the module docs.
pub(crate) fn open(path: &Path, options: TargetOptions) -> Result<Target, DeviceError> {
    let target = open_target(path, options)?;
    let meta = target
        .file
        .metadata()
        .map_err(|e| DeviceError::setup(format!("fstat {}", path.display()), &e))?;
    let (queue_dev, volatile_cache) = if target.is_block_device {
        let cache = queue_attr(meta.rdev(), "write_cache");
        (meta.rdev(), cache.is_none_or(|c| c != "write through"))
    } else {
        // A file system may hold writes (and its metadata) until fdatasync: treat as volatile.
        (meta.dev(), true)
    };
    Ok(Target {
        file: target.file,
        capacity_bytes: target.capacity_bytes,
        is_block_device: target.is_block_device,
        volatile_cache,
        queue_dev,
    })
}

fn queue_attr(dev: u64, name: &str) -> Option<String> {
    let dir = format!("/sys/dev/block/{}:{}", libc::major(dev), libc::minor(dev));
    std::fs::read_to_string(format!("{dir}/queue/{name}"))
        .or_else(|_| std::fs::read_to_string(format!("{dir}/../queue/{name}")))
        .ok()
        .map(|value| value.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aios_device::BLOCK_SIZE;

    #[test]
    fn capacity_is_rounded_down_and_files_are_volatile() {
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(3 * BLOCK_SIZE as u64 + 100).unwrap();
        let t = open(file.path(), TargetOptions::default()).unwrap();
        assert_eq!(t.capacity_bytes, 3 * BLOCK_SIZE as u64);
        assert!(!t.is_block_device);
        assert!(t.volatile_cache, "files are treated as volatile");
    }

    #[test]
    fn sysfs_describes_the_disk_below_a_file() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let t = open(file.path(), TargetOptions::default()).unwrap();
        // /tmp is on a real disk here; elsewhere (overlay, tmpfs) sysfs may not say.
        if let Some(poll) = t.queue_attr("io_poll") {
            assert!(poll == "0" || poll == "1", "{poll:?}");
        } else {
            eprintln!("=== no sysfs queue for the file system of /tmp ===");
        }
        assert_eq!(t.queue_attr("no_such_attribute"), None);
    }

    #[test]
    fn errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-image");
        let err = open(&missing, TargetOptions::default()).unwrap_err();
        assert!(err.to_string().contains("no-such-image"), "{err}");
        assert_eq!(err.errno(), Some(libc::ENOENT));
    }
}
