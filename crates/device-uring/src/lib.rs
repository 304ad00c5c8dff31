//! # aios-device-uring: the io_uring backend
//!
//! Drives an image file or a block device with `O_DIRECT` through io_uring: the user-space
//! counterpart of AIOS's lightweight block layer. Implements [`aios_device::Device`] and
//! [`aios_device::Queue`]; read the contract in `aios_device` first.
//!
//! ```no_run
//! use aios_device::{Device, QueueConfig};
//! use aios_device_uring::{UringConfig, UringDevice};
//! let dev = UringDevice::open("/dev/vdb", UringConfig::default())?;
//! let queue = dev.open_queue(QueueConfig::default())?; // one per thread
//! # Ok::<(), aios_device::DeviceError>(())
//! ```
//!
//! ## What each piece does
//! - `target`: opening with `O_DIRECT`, exclusivity (`O_EXCL` / `flock`), capacity.
//! - `device`: [`UringDevice`]: opening, and [`aios_device::Device`] (queues).
//! - `shared`: what the device and every queue share through an `Arc`: the target, the arena,
//!   the fault injector and the cached kernel probes.
//! - `setup`: ring setup flags per completion mode (with the measurements behind the defaults),
//!   registration of the file and the arena.
//! - `probe`: the `IOPOLL` and `READV_FIXED` probes, once per device.
//! - `queue`: [`UringQueue`], one ring per thread; push, batched submit, reap, drain on drop.
//! - `ring`: one io_uring and its counters (staged, in the kernel).
//! - `slot`, `sqe`: per-tag state (including iovec arrays) and command-to-SQE translation.
//!
//! ## Promises beyond the contract
//! - One ring per queue, no lock on submit or completion; `submit` is at most one
//!   `io_uring_enter` per ring (two only for a batch holding flushes on an `IOPOLL` queue).
//! - With registered buffers, the arena is registered once per ring as fixed buffer 0 and every
//!   read or write uses the fixed-buffer opcodes: no per-I/O pinning. Without, the kernel pins and
//!   maps every I/O (the vanilla path the paper compares against).
//! - FUA is `RWF_DSYNC` on the write; a flush is `fdatasync` (`IORING_OP_FSYNC`, `DATASYNC`).
//! - Interrupt mode sleeps in `io_uring_enter`; its rings are `SINGLE_ISSUER | DEFER_TASKRUN`
//!   (measured fastest), which is why [`UringQueue`] is not `Send`: open it on the thread that
//!   drives it.
//! - Poll mode uses `IOPOLL` when the device supports it (probed once per device: sysfs
//!   `io_poll`, then a 4 KiB read of a block that holds data, into a private page); otherwise it
//!   says so once on stderr and busy-polls the completion queue of a normal ring on the calling
//!   thread, never sleeping.
//! - A queue never allocates or locks per command, and `reap` never waits for a command that
//!   was not started (waiting submits what is staged).
//! - Dropping a queue submits what is staged and waits for every command the kernel holds, then
//!   releases the file at once (so an exclusive reopen right after succeeds).
//!
//! ## Assumptions
//! Linux 6.1+ (`SUBMIT_ALL`, `SINGLE_ISSUER`, `DEFER_TASKRUN`); `READV_FIXED`/`WRITEV_FIXED`
//! need 6.15+, else a logged fallback. The target accepts 4096-byte aligned direct I/O.

mod config;
mod device;
mod probe;
mod queue;
mod ring;
mod setup;
mod shared;
mod slot;
mod sqe;
mod target;

pub use config::{FlushPath, InterruptSetup, IopollPolicy, PollFallback, Tuning, UringConfig};
pub use device::UringDevice;
pub use queue::{UringQueue, DEPTH_MAX};
