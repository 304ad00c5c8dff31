//! The target below the rings: [`aios_device::open_target`] (shared with the pread backend:
//! `O_DIRECT`, read-only option, `O_EXCL` / `flock` exclusivity, capacity from the file length or
//! `BLKGETSIZE64`, the request queue's sysfs attributes: `write_cache` for
//! [`aios_device::DeviceInfo::volatile_cache`], `io_poll` for the `IOPOLL` probe). These tests
//! pin what the rings rely on. (`open_target` already refuses block devices whose logical
//! blocks exceed [`aios_device::BLOCK_SIZE`].)
//!
//! Assumptions: a regular file lives on a file system whose device has logical blocks of at most
//! [`aios_device::BLOCK_SIZE`] (otherwise `O_DIRECT` fails with `EINVAL` at the first command). When sysfs
//! does not say (device-mapper stacks, multi-device file systems), the answers are the safe
//! ones: volatile cache, and the `IOPOLL` probe decides alone.

#[cfg(test)]
mod tests {
    use aios_device::BLOCK_SIZE;
    use aios_device::{open_target, TargetOptions};

    #[test]
    fn capacity_is_rounded_down_and_files_are_volatile() {
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(3 * BLOCK_SIZE as u64 + 100).unwrap();
        let t = open_target(file.path(), TargetOptions::default()).unwrap();
        assert_eq!(t.capacity_bytes, 3 * BLOCK_SIZE as u64);
        assert!(!t.is_block_device);
        assert!(t.volatile_cache, "files are treated as volatile");
    }

    #[test]
    fn sysfs_describes_the_disk_below_a_file() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let t = open_target(file.path(), TargetOptions::default()).unwrap();
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
        let err = open_target(&missing, TargetOptions::default()).unwrap_err();
        assert!(err.to_string().contains("no-such-image"), "{err}");
        assert_eq!(err.errno(), Some(libc::ENOENT));
    }
}
