//! [`UringDevice`]: opens the target, its arena and probe page, and implements [`Device`] by
//! opening a [`UringQueue`] on them.
//!
//! What the device and its queues hold in common (and why it outlives the device) is [`Shared`],
//! in `shared.rs`; the kernel feature probes cached there are `probe.rs`'s.

use crate::config::UringConfig;
use crate::queue::UringQueue;
use crate::shared::Shared;
use aios_device::{Arena, Device, DeviceError, DeviceInfo, FaultInjector, QueueConfig, BLOCK_SIZE};
use std::path::Path;
use std::sync::Arc;

/// An image file or block device driven through io_uring with `O_DIRECT`.
///
/// Open with [`UringDevice::open`]; each thread then calls [`Device::open_queue`] for its own ring.
#[derive(Debug)]
pub struct UringDevice {
    shared: Arc<Shared>,
}

impl UringDevice {
    /// Opens `path` (an image file or a block device) for direct I/O and maps the arena.
    pub fn open(path: impl AsRef<Path>, config: UringConfig) -> Result<UringDevice, DeviceError> {
        let path = path.as_ref();
        let target = aios_device::open_target(path, config.target)?;
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
            shared: Arc::new(Shared::new(
                path.to_path_buf(),
                target,
                Arc::new(arena),
                config.tuning,
                Arc::new(probe_page),
            )),
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
            volatile_cache: self.shared.target().volatile_cache,
            completes_in_submit: false,
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
