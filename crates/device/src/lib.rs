//! # aios-device: the device contract
//!
//! The bottom of the stack. Every backend (io_uring, the emulated NVMe device, pread/pwrite)
//! implements [`Device`] and [`Queue`]; everything above talks to them only through these two
//! traits, so the same file system code runs on a real disk, on RAM with a latency model, or in a
//! deterministic simulation.
//!
//! ## Commands
//! [`Op::Read`], [`Op::Write`] (with a FUA flag) and [`Op::Flush`]. A read or write names a byte
//! offset on the device and up to [`SEGMENTS_MAX`] memory segments in the [`Arena`], together at
//! most [`IO_BYTES_MAX`] bytes. Offsets and lengths are multiples of [`BLOCK_SIZE`]; anything else
//! is refused with [`DeviceError::Misaligned`] before it reaches the device, never undefined
//! behaviour.
//!
//! ## Durability (what the file system may rely on, and nothing more)
//! - Completions arrive in **any order**; a command is done only when its completion is reaped.
//! - A write **without FUA** may sit in a volatile write cache and be lost at a crash until a
//!   flush covers it.
//! - A **flush** covers the writes that *completed* before the flush was *issued*. Writes still in
//!   flight when the flush is issued are not covered.
//! - A write **with FUA** is durable when its completion arrives.
//! - A write of one aligned [`BLOCK_SIZE`] block is atomic: after a crash the block holds the old or
//!   the new contents. A larger write may tear at block boundaries.
//! - A failed command ([`DeviceError::Io`]) says nothing about what reached the media; callers must
//!   treat the affected blocks as unknown and never report them durable.
//!
//! ## Buffers and ownership
//! Data moves only through the [`Arena`]: one page-aligned region allocated once per device, which
//! the io_uring backend registers with the kernel so no I/O pins memory. A [`Buf`] is a unique
//! handle to pages of the arena: the caller owns it while idle; while a command naming it is in
//! flight the device owns that memory. [`Queue::push`] is `unsafe` because it cannot enforce that
//! hand-over itself; the block layer (`aios-block`) is the safe owner that keeps `Buf`s inside its
//! request slots until completion. A write only *reads* its memory, so a filled buffer may be
//! frozen into a [`SharedBuf`]: readers and any number of write commands share it meanwhile,
//! and its pages go back to the arena when the last owner drops it.
//!
//! ## Queues and threads
//! A [`Device`] is shared by threads; each thread opens its own [`Queue`] (one io_uring per thread,
//! no lock on submit or completion). Tags are per queue: `0..depth`, chosen by the caller, unique
//! among the queue's in-flight commands (the block layer uses the request slot index).

pub mod arena;
pub mod command;
pub mod contract;
pub mod error;
pub mod fault;
pub mod null;
pub mod op;
pub mod shared;
pub mod spin;
pub mod target;

pub use arena::{Arena, ArenaError, Buf};
pub use command::{check_tag, Completion, CompletionMode, Io, QueueConfig};
pub use error::DeviceError;
pub use fault::{FaultInjector, FaultPlan, FaultRule, OpFilter, Persistence, Trigger};
pub use null::NullDevice;
pub use op::{Op, Segment, Tag};
pub use shared::SharedBuf;
pub use spin::PoliteSpin;
pub use target::{open_target, Target, TargetOptions};

use std::sync::Arc;

/// The unit of alignment and of atomic writes, in bytes (an ext4 block, an NVMe LBA of 4 KiB).
pub const BLOCK_SIZE: usize = 4096;
/// The largest read or write the stack issues: 32 pages, like the paper's 128 KiB requests.
pub const IO_BYTES_MAX: usize = 128 * 1024;
/// Scatter-gather limit of one command.
pub const SEGMENTS_MAX: usize = IO_BYTES_MAX / BLOCK_SIZE;

/// What a device is and what it promises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Human-readable backend and target, e.g. `uring:/dev/vda` or `emu:ull`.
    pub name: String,
    /// Usable size; every command must lie below it.
    pub capacity_bytes: u64,
    /// True when non-FUA writes may be lost at a crash until flushed.
    pub volatile_cache: bool,
    /// True when every command is complete by the time [`Queue::submit`] returns (the data has
    /// moved; the next [`Queue::reap`] hands out its completion without waiting): a synchronous
    /// backend such as pread/pwrite. Such a device offers no device time to overlap with CPU
    /// work, so a caller may skip what only pays off while the device works (the file system's
    /// AIOS read order does). A hint, never needed for correctness: `false` is always safe.
    pub completes_in_submit: bool,
}

/// A storage device shared by the threads of a process. Each thread opens its own [`Queue`].
pub trait Device: Send + Sync {
    /// The per-thread submission/completion queue of this backend.
    type Queue: Queue;

    /// Name, capacity, durability properties and whether commands complete inside `submit`.
    fn info(&self) -> DeviceInfo;

    /// The memory every command's segments must lie in.
    fn arena(&self) -> &Arc<Arena>;

    /// Opens a queue for the calling thread. A queue is `!Sync` in spirit: one thread drives it.
    fn open_queue(&self, config: QueueConfig) -> Result<Self::Queue, DeviceError>;

    /// Fault injection shared by all queues of this device (tests, crash campaigns).
    fn faults(&self) -> &FaultInjector;
}

/// One thread's submission and completion queue.
///
/// The life of a command: [`push`](Queue::push) stages it (no system call), [`submit`](Queue::submit)
/// hands every staged command to the device with at most one kernel entry, and
/// [`reap`](Queue::reap) returns completions in whatever order the device finishes them.
///
/// A queue belongs to the thread that opened it and may be `!Send` (the io_uring queue is a
/// single-issuer ring): open it on the thread that drives it.
pub trait Queue {
    /// The most commands this queue holds at once (staged plus in flight); tags are `0..depth`.
    fn depth(&self) -> u16;

    /// Stages `io` under `tag`. Validates alignment, bounds and the tag first: on `Err` nothing was
    /// staged and the caller keeps its memory.
    ///
    /// # Safety
    /// On `Ok`, the arena memory named by `io.segments` belongs to the device until the completion
    /// carrying `tag` has been returned by [`reap`](Queue::reap): the caller must not read or write
    /// it, nor let any other command name it, before then. (The block layer guarantees this by
    /// keeping the owning [`Buf`]s in the request slot.) The one relaxation: the device only
    /// reads the memory of an [`Op::Write`], so that memory may meanwhile be read by the caller
    /// and named by other writes, as long as no one writes it (a [`SharedBuf`]).
    unsafe fn push(&mut self, tag: Tag, io: &Io<'_>) -> Result<(), DeviceError>;

    /// Starts every staged command. Returns how many were started.
    fn submit(&mut self) -> Result<usize, DeviceError>;

    /// Appends completions to `out`, waiting until at least `min` have been appended (or nothing is
    /// outstanding). Returns how many were appended. Commands still staged are submitted first,
    /// so waiting never deadlocks on a forgotten `submit`. `reap(0, ..)` never blocks but makes
    /// progress: repeated calls eventually return every completion. How it waits (sleep or
    /// busy-poll) is the queue's [`CompletionMode`].
    fn reap(&mut self, min: usize, out: &mut Vec<Completion>) -> Result<usize, DeviceError>;

    /// Commands staged or in flight, i.e. pushed and not yet reaped.
    fn outstanding(&self) -> usize;
}
