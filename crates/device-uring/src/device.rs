//! [`UringDevice`]: the open target, its arena and fault injector, shared by every queue.
//!
//! # Invariants
//! - Everything a ring refers to (the file, the arena, the probe page) lives in [`Shared`], and
//!   every queue holds an `Arc<Shared>`: the arena stays mapped and the file open while any ring
//!   of this device exists, even after the `UringDevice` itself is dropped.
//! - Kernel feature probes run at most once per device and are cached here.

use crate::config::{Tuning, UringConfig};
use crate::probe;
use crate::queue::UringQueue;
use crate::target::{self, Target};
use aios_device::{Arena, Device, DeviceError, DeviceInfo, FaultInjector, QueueConfig, BLOCK_SIZE};
use std::os::unix::io::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// An image file or block device driven through io_uring with `O_DIRECT`.
///
/// Open with [`UringDevice::open`]; each thread then calls [`Device::open_queue`] for its own ring.
#[derive(Debug)]
pub struct UringDevice {
    shared: Arc<Shared>,
}

/// What queues share with their device.
#[derive(Debug)]
pub(crate) struct Shared {
    pub path: PathBuf,
    target: Target,
    pub arena: Arc<Arena>,
    pub faults: FaultInjector,
    pub tuning: Tuning,
    /// One page outside the arena for probe reads, so a probe never touches a caller's buffer.
    pub probe_page: Arc<Arena>,
    /// `Ok` if the device completes `IOPOLL` reads, else the errno of the refusal.
    iopoll: OnceLock<Result<(), i32>>,
    /// True if the kernel has `READV_FIXED`/`WRITEV_FIXED`.
    vectored_fixed: OnceLock<bool>,
}

impl Shared {
    pub fn fd(&self) -> RawFd {
        self.target.file.as_raw_fd()
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn capacity_bytes(&self) -> u64 {
        self.target.capacity_bytes
    }

    /// Whether `IOPOLL` works on this device; probed by the first poll-mode queue.
    pub fn iopoll(&self) -> Result<(), i32> {
        *self.iopoll.get_or_init(|| probe::probe_iopoll(self))
    }

    /// Whether vectored fixed-buffer opcodes work; probed with the first registered-buffer ring.
    pub fn vectored_fixed(&self, probe: impl FnOnce() -> bool) -> bool {
        *self.vectored_fixed.get_or_init(probe)
    }
}

impl UringDevice {
    /// Opens `path` (an image file or a block device) for direct I/O and maps the arena.
    pub fn open(path: impl AsRef<Path>, config: UringConfig) -> Result<UringDevice, DeviceError> {
        let path = path.as_ref();
        let target = target::open(path, config.target)?;
        let arena = Arena::new(config.arena_bytes).map_err(|e| DeviceError::Setup {
            what: format!("arena for {}: {e}", path.display()),
            errno: match e {
                aios_device::ArenaError::Map { errno, .. } => errno,
                _ => libc::EINVAL,
            },
        })?;
        let probe_page = Arena::new(BLOCK_SIZE).map_err(|e| DeviceError::Setup {
            what: format!("probe page for {}: {e}", path.display()),
            errno: libc::ENOMEM,
        })?;
        Ok(UringDevice {
            shared: Arc::new(Shared {
                path: path.to_path_buf(),
                target,
                arena: Arc::new(arena),
                faults: FaultInjector::default(),
                tuning: config.tuning,
                probe_page: Arc::new(probe_page),
                iopoll: OnceLock::new(),
                vectored_fixed: OnceLock::new(),
            }),
        })
    }

    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The path this device was opened with.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Whether the device completes `IOPOLL` I/O, as [`crate::IopollPolicy::Probe`] decides it:
    /// `Err(errno)` is why not (poll-mode queues then busy-poll a normal ring). Probes on first
    /// use, then answers from the cache.
    pub fn iopoll_support(&self) -> Result<(), i32> {
        self.shared.iopoll()
    }
}

impl Device for UringDevice {
    type Queue = UringQueue;

    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            name: format!("uring:{}", self.shared.path.display()),
            capacity_bytes: self.shared.capacity_bytes(),
            volatile_cache: self.shared.target.volatile_cache,
        }
    }

    fn arena(&self) -> &Arc<Arena> {
        &self.shared.arena
    }

    fn open_queue(&self, config: QueueConfig) -> Result<UringQueue, DeviceError> {
        UringQueue::open(Arc::clone(&self.shared), config)
    }

    fn faults(&self) -> &FaultInjector {
        &self.shared.faults
    }
}
