//! How a [`crate::UringDevice`] is opened and how its rings are set up.
//!
//! [`UringConfig::default`] is what the stack should use; [`Tuning`] exists so benchmarks can
//! compare ring setups on the same device in the same run. The defaults were chosen by measuring
//! QD1 4 KiB random reads (see `setup.rs` for the numbers): `DEFER_TASKRUN` for sleeping rings,
//! a plain ring spun on in user space for poll mode without `IOPOLL`.

use aios_device::TargetOptions;

/// Opening options of a [`crate::UringDevice`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UringConfig {
    /// `read_only`: writes then complete with the kernel's `EBADF`. `exclusive` (default on
    /// here): `O_EXCL` on a block device (refused while mounted or used as swap),
    /// `flock(LOCK_EX | LOCK_NB)` on a regular file, so nothing else that asks for exclusivity
    /// shares the target.
    pub target: TargetOptions,
    /// Size of the buffer arena, a positive multiple of 4096 up to 1 GiB.
    pub arena_bytes: usize,
    /// Ring setup flags per completion mode.
    pub tuning: Tuning,
}

impl Default for UringConfig {
    fn default() -> Self {
        UringConfig {
            target: TargetOptions {
                read_only: false,
                exclusive: true,
            },
            arena_bytes: 64 << 20,
            tuning: Tuning::default(),
        }
    }
}

/// Ring setup per [`aios_device::CompletionMode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// Setup of rings that sleep for completions.
    pub interrupt: InterruptSetup,
    /// Poll mode: whether to use an `IOPOLL` ring.
    pub iopoll: IopollPolicy,
    /// Poll mode without `IOPOLL`.
    pub poll_fallback: PollFallback,
    /// How a flush is carried out.
    pub flush: FlushPath,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            interrupt: InterruptSetup::DeferTaskrun,
            iopoll: IopollPolicy::Probe,
            poll_fallback: PollFallback::CqSpin,
            flush: FlushPath::Inline,
        }
    }
}

/// Setup flags of an interrupt-mode ring; the thread sleeps in `io_uring_enter` either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterruptSetup {
    /// No task-run flags: completions are posted by task work that interrupts the task.
    Plain,
    /// `COOP_TASKRUN | TASKRUN_FLAG`: task work waits for the next kernel entry.
    CoopTaskrun,
    /// `SINGLE_ISSUER | DEFER_TASKRUN`: completions are posted only inside `io_uring_enter`, by
    /// the thread that opened the ring (the kernel refuses others with `EEXIST`; this is why
    /// [`crate::UringQueue`] is not `Send`).
    DeferTaskrun,
}

/// Whether poll-mode queues use an `IOPOLL` ring (the kernel polls the device for completions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IopollPolicy {
    /// Never: always [`PollFallback`].
    Off,
    /// If a probe read (once per device) shows the device completes polled I/O.
    Probe,
    /// Always, without probing: for devices the probe cannot judge (an image file holding no
    /// data yet), and for tests. On a device without poll queues every read and write then
    /// completes with `EOPNOTSUPP`.
    Force,
}

/// How a poll-mode queue busy-waits on a ring without `IOPOLL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollFallback {
    /// A ring without task-run flags; spin on the completion queue in user space, no system calls.
    CqSpin,
    /// A `SINGLE_ISSUER | DEFER_TASKRUN` ring; spin calling `io_uring_enter(GETEVENTS)` with no
    /// minimum, which runs the deferred completions and returns at once.
    EnterSpin,
}

/// How a queue carries out a flush.
///
/// io_uring cannot run `fsync` without blocking, so it always hands an `IORING_OP_FSYNC` to an
/// io-wq worker thread; waking that thread costs a cross-CPU wake-up (16 us at p50 on the
/// 2-vCPU VM of `/work/shared/baselines.md`), on the critical path of every fsync. A flush is
/// issued only after the writes it covers have completed, so nothing is gained by queueing it.
/// Measured (`examples/durable_write_latency.rs`, 4 KiB write then flush on the virtio disk,
/// interleaved, 3 x 2 s): `pwrite`+`fdatasync` 88.2 us, ring 105.5 us, inline 91.1 us; a FUA
/// write costs the same through the ring as `pwritev2(RWF_DSYNC)` (99.9 vs 96.6 us), so only
/// the flush runs inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPath {
    /// `fdatasync(2)` on the submitting thread, in [`aios_device::Queue::submit`]; the
    /// completion is reapable when `submit` returns.
    Inline,
    /// `IORING_OP_FSYNC` (`DATASYNC`) through the ring.
    Ring,
}
