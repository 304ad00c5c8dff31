//! Opening a real target (an image file or a block device) for direct I/O, shared by the io_uring
//! and pread backends.
//!
//! Promises: the file is open with `O_DIRECT` (the page cache never sees our I/O); the capacity
//! is the file length or the block device size, rounded down to [`BLOCK_SIZE`]; with `exclusive`,
//! no other exclusive opener (and for block devices, no mounted file system) shares the target;
//! `volatile_cache` is false only when sysfs says the block device's cache is `write through`.

use crate::{DeviceError, BLOCK_SIZE};
use std::fs::File;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// How to open a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetOptions {
    pub read_only: bool,
    /// Refuse to share the target: `O_EXCL` on block devices (refused while mounted),
    /// `flock(LOCK_EX)` on files. On by default: aios must never write under someone else.
    pub exclusive: bool,
}

impl Default for TargetOptions {
    fn default() -> Self {
        TargetOptions {
            read_only: false,
            exclusive: true,
        }
    }
}

/// An open direct-I/O target.
#[derive(Debug)]
pub struct Target {
    pub file: File,
    pub capacity_bytes: u64,
    pub is_block_device: bool,
    /// True when completed writes may be lost at a crash until a flush (see
    /// [`crate::DeviceInfo::volatile_cache`]): a block device's `queue/write_cache` says `write
    /// back`, or sysfs does not say; always for a file (its file system may hold writes and
    /// its own metadata until `fdatasync`). zram and other `write through` devices are not.
    pub volatile_cache: bool,
    /// The device whose request queue serves the target (its own for a block device, the
    /// file system's for a file), for [`Target::queue_attr`].
    queue_dev: u64,
}

impl Target {
    /// An attribute of the target's request queue from sysfs (`io_poll`, `write_cache`...), if
    /// sysfs has it.
    pub fn queue_attr(&self, name: &str) -> Option<String> {
        queue_attr(self.queue_dev, name)
    }
}

fn queue_attr(dev: u64, name: &str) -> Option<String> {
    let dir = format!("/sys/dev/block/{}:{}", libc::major(dev), libc::minor(dev));
    std::fs::read_to_string(format!("{dir}/queue/{name}"))
        .or_else(|_| std::fs::read_to_string(format!("{dir}/../queue/{name}")))
        .ok()
        .map(|value| value.trim().to_string())
}

// From <linux/fs.h>: _IOR(0x12, 114, size_t).
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
// From <linux/fs.h>: _IO(0x12, 104), the logical block size of a block device.
const BLKSSZGET: libc::c_ulong = 0x1268;

/// Opens `path` for direct I/O.
pub fn open_target(path: &Path, opts: TargetOptions) -> Result<Target, DeviceError> {
    let shown = path.display();
    let meta =
        std::fs::metadata(path).map_err(|e| DeviceError::setup(format!("stat {shown}"), &e))?;
    let is_block_device = meta.file_type().is_block_device();
    if !is_block_device && !meta.is_file() {
        return Err(DeviceError::Setup {
            what: format!("{shown} is neither a file nor a block device"),
            errno: libc::EINVAL,
        });
    }
    let mut flags = libc::O_DIRECT | libc::O_CLOEXEC;
    if opts.exclusive && is_block_device {
        flags |= libc::O_EXCL;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(!opts.read_only)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| DeviceError::setup(format!("open {shown} with O_DIRECT"), &e))?;
    if opts.exclusive && !is_block_device {
        if let Some(loop_dev) = loop_device_backed_by(path) {
            return Err(DeviceError::Setup {
                what: format!("{shown} is in use by the kernel as the backing file of {loop_dev}"),
                errno: libc::EBUSY,
            });
        }
        // SAFETY: flock on a valid, owned descriptor; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            return Err(DeviceError::setup(
                format!("{shown} is in use by another process (flock)"),
                &e,
            ));
        }
    }
    let bytes = if is_block_device {
        check_logical_block_size(&file, path)?;
        block_device_size(&file, path)?
    } else {
        meta.len()
    };
    let (queue_dev, volatile_cache) = if is_block_device {
        let cache = queue_attr(meta.rdev(), "write_cache");
        (meta.rdev(), cache.is_none_or(|c| c != "write through"))
    } else {
        (meta.dev(), true)
    };
    Ok(Target {
        file,
        capacity_bytes: bytes - bytes % BLOCK_SIZE as u64,
        is_block_device,
        volatile_cache,
        queue_dev,
    })
}

/// The loop device (e.g. `/dev/loop0`) whose backing file is `path`, if any: the kernel may have
/// it mounted, and a `flock` would not keep us out.
fn loop_device_backed_by(path: &Path) -> Option<String> {
    let wanted = std::fs::canonicalize(path).ok()?;
    let entries = std::fs::read_dir("/sys/block").ok()?;
    entries.flatten().find_map(|entry| {
        let name = entry.file_name().into_string().ok()?;
        let backing = std::fs::read_to_string(entry.path().join("loop/backing_file")).ok()?;
        (Path::new(backing.trim()) == wanted).then(|| format!("/dev/{name}"))
    })
}

fn block_device_size(file: &File, path: &Path) -> Result<u64, DeviceError> {
    let mut bytes: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points to a live local.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut bytes as *mut u64) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return Err(DeviceError::setup(
            format!("size of block device {}", path.display()),
            &e,
        ));
    }
    Ok(bytes)
}

/// Every command is a multiple of [`BLOCK_SIZE`]; a device with larger logical blocks would fail
/// them all, so it is refused at open.
fn check_logical_block_size(file: &File, path: &Path) -> Result<(), DeviceError> {
    let mut block_bytes: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int through the pointer, which points to a live local.
    let rc = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            BLKSSZGET,
            &mut block_bytes as *mut libc::c_int,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return Err(DeviceError::setup(
            format!("logical block size of {}", path.display()),
            &e,
        ));
    }
    if block_bytes <= 0 || block_bytes as usize > BLOCK_SIZE {
        return Err(DeviceError::Setup {
            what: format!(
                "{}: logical block size {block_bytes} is not in 1..={BLOCK_SIZE}",
                path.display()
            ),
            errno: libc::EINVAL,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_capacity_is_rounded_to_blocks_and_exclusive_is_enforced() {
        let dir = std::env::temp_dir().join(format!("aios-target-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("img");
        std::fs::write(&path, vec![0u8; 3 * BLOCK_SIZE + 100]).unwrap();
        let excl = TargetOptions {
            read_only: false,
            exclusive: true,
        };
        let t = open_target(&path, excl).unwrap();
        assert_eq!(t.capacity_bytes, 3 * BLOCK_SIZE as u64);
        assert!(!t.is_block_device);
        let second = open_target(&path, excl).unwrap_err();
        assert!(second.to_string().contains("in use"), "{second}");
        drop(t);
        assert!(open_target(&path, excl).is_ok(), "free again after close");
        let missing = open_target(&dir.join("nope"), excl).unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_backing_a_loop_device_is_refused_exclusively() {
        let dir = std::env::temp_dir().join(format!("aios-loop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("img");
        std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
        let attach = std::process::Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&path)
            .output();
        let Some(loop_dev) = attach
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        else {
            eprintln!("=== SKIPPED: cannot attach a loop device (needs root and losetup) ===");
            std::fs::remove_dir_all(&dir).unwrap();
            return;
        };
        let err = open_target(&path, TargetOptions::default()).unwrap_err();
        let shared = open_target(
            &path,
            TargetOptions {
                read_only: true,
                exclusive: false,
            },
        );
        let _ = std::process::Command::new("losetup")
            .args(["-d", &loop_dev])
            .status();
        assert!(err.to_string().contains(&loop_dev), "{err}");
        assert_eq!(err.errno(), Some(libc::EBUSY));
        assert!(shared.is_ok(), "non-exclusive opens are not refused");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
