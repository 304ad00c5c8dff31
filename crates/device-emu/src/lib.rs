//! # aios-device-emu: an emulated NVMe device
//!
//! A backend of the [`aios_device`] contract that keeps the device in RAM and models its timing
//! and its write cache. It serves two purposes: the microsecond-device regime for benchmarks (like
//! the paper's Optane, preset `ull`), and deterministic crash and fault testing of the file system
//! and journal built on top (preset `instant` or any preset on the virtual clock, with crashes on
//! demand and a write log for crash-state enumeration).
//!
//! ```
//! use aios_device::{Device, Io, Queue, QueueConfig};
//! use aios_device_emu::{EmuDevice, EmuConfig};
//!
//! let dev = EmuDevice::open("instant,size=1M,arena=1M,clock=virtual")?;
//! let mut q = dev.open_queue(QueueConfig::default())?; // one per thread
//! let mut buf = dev.arena().alloc(1)?;
//! dev.arena().bytes_mut(&mut buf).fill(7);
//! let seg = [buf.segment()];
//! // SAFETY: `buf` is not touched until its completion is reaped.
//! unsafe { q.push(0, &Io::write(0, &seg, false))? };
//! let mut done = Vec::new();
//! q.reap(1, &mut done)?; // submits, then waits (here: jumps the virtual clock)
//! assert_eq!(done[0].result, Ok(4096));
//!
//! // Power loss now: the unflushed write may or may not survive, by seed.
//! let image = dev.crash(1)?;
//! assert!(image.block(0) == Some(&[7; 4096][..]) || image.block(0) == Some(&[0; 4096][..]));
//! // Run recovery on the crash image with a fresh device.
//! let after = EmuDevice::with_image(EmuConfig::instant(), image)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Timing model (see [`LatencyModel`], [`config`] for the presets)
//! No device thread. A command's due time is computed when it is submitted: its data crosses one
//! shared link at `link_bytes_per_sec` (transfers serialized), then it holds one of `channels`
//! for its media time (waiting when all are busy). `reap` returns completions whose due time has
//! passed, in (due time, submission) order, so a fast command overtakes a slow one submitted
//! before it; when it must wait it spins the calling thread (real clock) or jumps the virtual
//! clock to the next due time. A `reap(0)` never waits; on the virtual clock, one that finds
//! nothing due moves the clock to the next due time for the following call, so polling makes
//! progress. Both completion modes behave so; `registered_buffers` is ignored.
//!
//! ## Fault and crash model (what tests may assume, and nothing more)
//! - **Storage**: a sparse image in RAM (an anonymous mapping: only touched pages cost memory),
//!   optionally loaded from a file at open; [`EmuDevice::save`] writes the durable image back.
//!   With `prefault=on` ([`EmuConfig::prefault`]) the device instead backs its two images (what
//!   reads see, what is durable) with RAM at open, `2 * capacity` bytes, so that no write pays
//!   first-touch page faults, which cost more than a modelled microsecond write.
//! - **Data moves at submission**, the moment a command reaches the device: a read copies the
//!   current image (every submitted write applied) into its buffers, a write copies its buffers
//!   into the current image. Its completion is visible at its due time.
//! - **Durability** ([`durability`] has the exact rules): with a *non-volatile* cache every write
//!   is durable when it completes. With a *volatile* cache a write with FUA is durable when it
//!   completes; a write without FUA becomes durable when a flush that covers it completes. A flush
//!   covers the writes that had **completed** (due time passed) when the flush was **submitted**;
//!   a write still in flight then is not covered. Per block, the newest durable write wins.
//!   A volatile cache holding more than `cache_bytes_max` (default 256 MiB) of completed,
//!   unflushed data writes it all back at the next submission, as a logged implicit flush.
//! - **Power loss** ([`EmuDevice::crash`]): the image holds the durable data plus a random subset,
//!   chosen by a seed independently per 4 KiB block-write, of the writes submitted and not yet
//!   durable (in flight or waiting for a flush), applied in submission order. A 4 KiB block is
//!   atomic; a larger write may tear at block boundaries. Staged (pushed, not submitted) commands
//!   never reached the device and leave no trace. Same state and seed: same image.
//! - **Injected faults** ([`aios_device::FaultInjector`], asked in `push` after validation): a
//!   matched command takes its modelled time, moves no data, changes no durability state (a failed
//!   flush makes nothing durable), is not logged, and completes with [`DeviceError::Io`] naming
//!   its op, tag, offset and length, with `EIO`.
//! - **Malformed commands** are refused in `push` with a typed error, before any effect; so are
//!   tags outside `0..depth` or already outstanding ([`DeviceError::BadTag`]).
//! - **Determinism**: with the virtual clock and one thread, the same workload gives the same
//!   due times, completion order, logs and crash images on every run.
//! - **Write log** ([`log`]): with `record=on`, the base image, every write and flush, and their
//!   events in a canonical order, from which [`Replay`] rebuilds the crash state at any boundary.
//!
//! Not modelled: media errors other than injected ones, bit rot, misdirected or lost writes that
//! report success, torn sectors inside a 4 KiB block, a controller's own queue limits, and any
//! cost of the CPU work of the caller (the virtual clock stands still while the caller computes).
//!
//! [`DeviceError::Io`]: aios_device::DeviceError::Io
//! [`DeviceError::BadTag`]: aios_device::DeviceError::BadTag

mod clock;
pub mod config;
mod device;
pub mod durability;
mod error;
mod image;
pub mod log;
mod queue;
mod shared;
pub mod spec;
mod state;
mod timing;
mod tracker;

pub use config::{ClockKind, EmuConfig, LatencyModel, Preset};
pub use device::EmuDevice;
pub use durability::{seeded_choice, BlockWrite};
pub use error::EmuError;
pub use image::DiskImage;
pub use log::{CrashPoint, EventKind, LogEvent, LoggedCommand, Replay, WriteLog};
pub use queue::EmuQueue;
