//! [`EmuDevice`]: the emulated NVMe device, shared by threads, and its crash and image API.
//!
//! The device is an `Arc` around the shared part ([`Shared`], in `shared.rs`: configuration,
//! arena, fault injector, clock, and the media [`State`] behind one mutex). Queues hold the same
//! `Arc`; there is no device thread: commands take effect when submitted and complete when a
//! reaping thread's clock passes their due time. This file builds that part and opens queues on it
//! ([`Device`] for [`EmuDevice`]).
//!
//! Crash and image calls take a snapshot under the mutex after completing everything due by
//! "now"; with several threads submitting at once, "now" is whenever the call gets the lock.

use crate::clock::Clock;
use crate::config::{ClockKind, EmuConfig};
use crate::durability::{seeded_choice, BlockWrite};
use crate::queue::EmuQueue;
use crate::shared::Shared;
use crate::state::State;
use crate::timing::Timing;
use crate::tracker::Tracker;
use crate::{DiskImage, EmuError, WriteLog};
use aios_device::{Arena, Device, DeviceError, DeviceInfo, FaultInjector, QueueConfig};
use std::path::Path;
use std::sync::Arc;

/// An emulated NVMe device: sparse RAM, a latency model, a volatile or non-volatile write cache,
/// crashes on demand and an optional write log. See the crate docs for the model. Clones are
/// handles to the same device.
#[derive(Debug, Clone)]
pub struct EmuDevice {
    shared: Arc<Shared>,
}

impl EmuDevice {
    /// Opens a device: loads `config.image_file` if set, else starts all zero.
    pub fn new(config: EmuConfig) -> Result<EmuDevice, EmuError> {
        config.validate()?;
        let image = match &config.image_file {
            Some(path) => DiskImage::load_with_capacity(path, config.capacity_bytes)?,
            None => DiskImage::zeroed(config.capacity_bytes)?,
        };
        EmuDevice::build(config, image)
    }

    /// Parses a spec (see [`crate::spec`]) and opens the device.
    pub fn open(spec: &str) -> Result<EmuDevice, EmuError> {
        EmuDevice::new(EmuConfig::parse(spec)?)
    }

    /// Opens a device on `image` (e.g. a crash image, to run recovery on it). The capacity is the
    /// image's; `config.capacity_bytes` and `config.image_file` are ignored.
    pub fn with_image(mut config: EmuConfig, image: DiskImage) -> Result<EmuDevice, EmuError> {
        config.capacity_bytes = image.capacity_bytes();
        config.image_file = None;
        config.validate()?;
        EmuDevice::build(config, image)
    }

    fn build(config: EmuConfig, mut current: DiskImage) -> Result<EmuDevice, EmuError> {
        let arena = Arc::new(Arena::new(config.arena_bytes)?);
        let mut durable = current.try_clone()?;
        if config.prefault == Some(true) {
            prefault([&mut current, &mut durable])?;
        }
        let tracker = Tracker::new(
            durable,
            config.volatile_cache,
            config.cache_bytes_max,
            config.record,
        )?;
        let state = State {
            current,
            timing: Timing::new(config.latency),
            tracker,
            next_seq: 0,
        };
        let info = DeviceInfo {
            name: config.name(),
            capacity_bytes: config.capacity_bytes,
            volatile_cache: config.volatile_cache,
            // Completion is due after the modelled latency, noticed at reap.
            completes_in_submit: false,
        };
        let clock = Clock::new(config.clock);
        let shared = Shared::new(config, info, arena, clock, state);
        Ok(EmuDevice {
            shared: Arc::new(shared),
        })
    }

    pub fn config(&self) -> &EmuConfig {
        &self.shared.config
    }

    /// The device clock: nanoseconds since open (real) or the simulated time (virtual).
    pub fn now_ns(&self) -> u64 {
        self.shared.clock.now_ns()
    }

    /// Moves a virtual clock forward to `time_ns` (never back). Refused on the real clock.
    pub fn advance_clock_to(&self, time_ns: u64) -> Result<(), EmuError> {
        if self.shared.config.clock != ClockKind::Virtual {
            return Err(EmuError::RealClock);
        }
        self.shared.clock.wait_until(time_ns);
        Ok(())
    }

    /// The image after a power loss now: durable data plus each crash candidate (a 4 KiB
    /// block-write not yet durable) kept with probability 1/2, chosen by `seed`. The device itself
    /// is unchanged and keeps running. Same state and seed: same image.
    pub fn crash(&self, seed: u64) -> Result<DiskImage, EmuError> {
        self.shared
            .lock_now()
            .tracker
            .state()
            .image_with(seeded_choice(seed))
    }

    /// The image after a power loss now, keeping the candidates `keep` accepts (asked once each,
    /// in the order of [`EmuDevice::crash_candidates`]).
    pub fn crash_with(&self, keep: impl FnMut(&BlockWrite) -> bool) -> Result<DiskImage, EmuError> {
        self.shared.lock_now().tracker.state().image_with(keep)
    }

    /// The 4 KiB block-writes a power loss now may or may not keep, in (write id, block) order.
    pub fn crash_candidates(&self) -> Vec<BlockWrite> {
        self.shared.lock_now().tracker.state().candidates()
    }

    /// The image a power loss now would leave at the least: durable writes only.
    pub fn durable_image(&self) -> Result<DiskImage, EmuError> {
        self.shared.lock_now().tracker.state().durable().try_clone()
    }

    /// What reads see now: every submitted write applied.
    pub fn current_image(&self) -> Result<DiskImage, EmuError> {
        self.shared.lock().current.try_clone()
    }

    /// Completed writes waiting in a volatile cache for a flush, in bytes.
    pub fn unflushed_bytes(&self) -> u64 {
        self.shared.lock_now().tracker.state().dirty_bytes()
    }

    /// Saves the durable image (what survives a power loss now, no candidates) to `path`.
    pub fn save(&self, path: &Path) -> Result<(), EmuError> {
        self.shared.lock_now().tracker.state().durable().save(path)
    }

    /// A copy of the write log so far (cheap: data is shared). Needs `record=on`.
    pub fn log(&self) -> Result<WriteLog, EmuError> {
        self.shared
            .lock_now()
            .tracker
            .log()
            .cloned()
            .ok_or(EmuError::NotRecording)
    }
}

/// Populates the images a write touches (see [`EmuConfig::prefault`]), first checking that they
/// fit in the memory available now: populating more than that would summon the OOM killer.
fn prefault(images: [&mut DiskImage; 2]) -> Result<(), EmuError> {
    let needed_bytes: u64 = images.iter().map(|i| i.capacity_bytes()).sum();
    if let Some(available_bytes) = available_memory_bytes() {
        if needed_bytes > available_bytes {
            return Err(EmuError::BadConfig(format!(
                "prefault=on needs {needed_bytes} bytes of RAM (two images of the capacity), \
                 only {available_bytes} are available: use prefault=off or a smaller size"
            )));
        }
    }
    for image in images {
        image.populate()?;
    }
    Ok(())
}

/// `MemAvailable` of `/proc/meminfo`, if the kernel tells.
fn available_memory_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

impl Device for EmuDevice {
    type Queue = EmuQueue;

    fn info(&self) -> DeviceInfo {
        self.shared.info.clone()
    }

    fn arena(&self) -> &Arc<Arena> {
        &self.shared.arena
    }

    /// Opens a queue of `config.depth` tags. Both completion modes behave the same (the reaping
    /// thread always spins, or jumps a virtual clock), and `registered_buffers` has no effect.
    fn open_queue(&self, config: QueueConfig) -> Result<EmuQueue, DeviceError> {
        EmuQueue::new(Arc::clone(&self.shared), config)
    }

    fn faults(&self) -> &FaultInjector {
        &self.shared.faults
    }
}
