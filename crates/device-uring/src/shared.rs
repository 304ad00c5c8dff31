//! [`Shared`]: what every queue of a [`crate::UringDevice`] shares with it through an `Arc`: the
//! open target, the arena, the fault injector, the tuning, the probe page, and the cached answers
//! of the kernel feature probes (filled by `probe.rs`, which owns [`Shared::iopoll`]).
//!
//! # Invariants
//! - Everything a ring refers to (the file, the arena, the probe page) lives here, and every
//!   queue holds an `Arc<Shared>`: the arena stays mapped and the file open while any ring of the
//!   device exists, even after the `UringDevice` itself is dropped.
//! - Kernel feature probes run at most once per device and are cached here.

use crate::config::Tuning;
use aios_device::Target;
use aios_device::{Arena, FaultInjector};
use std::os::unix::io::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

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
    /// `Ok` if the device completes `IOPOLL` reads, else the errno of the refusal. Filled by
    /// [`Shared::iopoll`] (in `probe.rs`).
    pub iopoll: OnceLock<Result<(), i32>>,
    /// True if the kernel has `READV_FIXED`/`WRITEV_FIXED`.
    vectored_fixed: OnceLock<bool>,
}

impl Shared {
    /// The shared part of a device opened on `target`: no fault plan, nothing probed yet.
    pub fn new(
        path: PathBuf,
        target: Target,
        arena: Arc<Arena>,
        tuning: Tuning,
        probe_page: Arc<Arena>,
    ) -> Shared {
        Shared {
            path,
            target,
            arena,
            faults: FaultInjector::default(),
            tuning,
            probe_page,
            iopoll: OnceLock::new(),
            vectored_fixed: OnceLock::new(),
        }
    }

    pub fn fd(&self) -> RawFd {
        self.target.file.as_raw_fd()
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn capacity_bytes(&self) -> u64 {
        self.target.capacity_bytes
    }

    /// Whether vectored fixed-buffer opcodes work; probed with the first registered-buffer ring.
    pub fn vectored_fixed(&self, probe: impl FnOnce() -> bool) -> bool {
        *self.vectored_fixed.get_or_init(probe)
    }
}
