//! Ring setup: which flags each completion mode gets, and what every ring registers.
//!
//! Every ring registers the device file (index 0, used through `types::Fixed`); a ring for
//! registered buffers also registers the whole arena as fixed buffer 0, once, so no I/O pins
//! memory. All rings use `SUBMIT_ALL`, so one `io_uring_enter` consumes a whole batch even when an
//! SQE fails early (its error then arrives as a CQE). The completion queue is twice the
//! submission queue (the kernel's default), at least twice `depth`, so it cannot overflow.

use crate::config::{InterruptSetup, IopollPolicy, PollFallback};
use crate::probe;
use crate::ring::Ring;
use crate::shared::Shared;
use aios_device::{CompletionMode, DeviceError, QueueConfig};
use io_uring::IoUring;

/// How the kernel is asked to set a ring up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// No task-run flags: completions are posted by task work that interrupts the task, so they
    /// appear in the completion queue even while the task spins in user space.
    Plain,
    /// `COOP_TASKRUN | TASKRUN_FLAG`.
    Coop,
    /// `SINGLE_ISSUER | DEFER_TASKRUN`: completions are posted only inside `io_uring_enter`.
    Defer,
    /// `IOPOLL`: the kernel polls the device inside `io_uring_enter`.
    IoPoll,
}

impl Setup {
    /// True if completions reach the completion queue only during `io_uring_enter(GETEVENTS)`.
    fn completes_in_enter(self) -> bool {
        matches!(self, Setup::Defer | Setup::IoPoll)
    }
}

/// How a queue waits for completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Sleep in `io_uring_enter` until enough completions arrive.
    Sleep,
    /// Spin on the completion queue in user space (a `Plain` ring).
    CqSpin,
    /// Spin calling `io_uring_enter(GETEVENTS)` with no minimum (a `Defer` ring).
    EnterSpin,
    /// `io_uring_enter(GETEVENTS)` on an `IOPOLL` ring: the kernel polls the device.
    IoPoll,
}

/// The rings of one queue.
pub(crate) struct Rings {
    pub main: Ring,
    /// Flushes of an `IOPOLL` queue (`IOPOLL` rings take only reads and writes); a `Plain` ring,
    /// busy-polled.
    pub flush: Option<Ring>,
    pub wait: Wait,
    /// Whether multi-segment commands on registered buffers may use `READV_FIXED`/`WRITEV_FIXED`.
    pub vectored_fixed: bool,
}

/// Opens the rings a queue with `config` needs.
pub(crate) fn open_rings(shared: &Shared, config: &QueueConfig) -> Result<Rings, DeviceError> {
    let entries = u32::from(config.depth).next_power_of_two();
    let register_arena = config.registered_buffers;
    let tuning = shared.tuning;
    // Measured on this machine (2 vCPU Firecracker VM, virtio-blk, Linux 6.18): QD1 4 KiB random
    // reads of a 1 GiB file of written data, 6 repetitions x 4 s per variant in interleaved
    // 200 ms slices (examples/qd1_latency.rs). Mean us, and the change against pread O_DIRECT in
    // the same repetitions, from two runs:
    //   pread O_DIRECT                          48.0          / 48.7
    //   irq, no task-run flags                  47.8 (-0.4 %) / 49.1 (+0.8 %)
    //   irq, COOP_TASKRUN | TASKRUN_FLAG        47.8 (-0.4 %) / 49.1 (+0.7 %)
    //   irq, SINGLE_ISSUER | DEFER_TASKRUN      47.2 (-1.5 %) / 48.4 (-0.5 %)   <- chosen
    //   poll, plain ring, user-space CQ spin    32.7 (-32 %)  / 33.4 (-31 %)    <- chosen
    //   poll, DEFER_TASKRUN ring, enter spin    33.5 (-30 %)  / 34.4 (-29 %)
    // IOPOLL itself is refused by this disk. Spinning saves ~15 us because the vCPU never halts,
    // so no wake-up is paid; DEFER_TASKRUN spares the sleeping task a task-work interruption.
    let (setup, wait) = match config.completion {
        CompletionMode::Interrupt => match tuning.interrupt {
            InterruptSetup::Plain => (Setup::Plain, Wait::Sleep),
            InterruptSetup::CoopTaskrun => (Setup::Coop, Wait::Sleep),
            InterruptSetup::DeferTaskrun => (Setup::Defer, Wait::Sleep),
        },
        CompletionMode::Poll if use_iopoll(shared, tuning.iopoll) => (Setup::IoPoll, Wait::IoPoll),
        // Never COOP_TASKRUN here: its completions wait for a kernel entry, so a pure user-space
        // spin would stall until some unrelated interrupt returns to user mode.
        CompletionMode::Poll => match tuning.poll_fallback {
            PollFallback::CqSpin => (Setup::Plain, Wait::CqSpin),
            PollFallback::EnterSpin => (Setup::Defer, Wait::EnterSpin),
        },
    };
    let main = build(shared, setup, entries, register_arena)?;
    let vectored_fixed =
        register_arena && shared.vectored_fixed(|| probe::vectored_fixed(shared, &main));
    // An IOPOLL ring fails FSYNC with EINVAL (checked on this kernel): flushes get their own ring.
    let flush = match wait {
        Wait::IoPoll => Some(Ring::new(
            build(shared, Setup::Plain, entries, false)?,
            false,
        )),
        _ => None,
    };
    Ok(Rings {
        main: Ring::new(main, setup.completes_in_enter()),
        flush,
        wait,
        vectored_fixed,
    })
}

fn use_iopoll(shared: &Shared, policy: IopollPolicy) -> bool {
    match policy {
        IopollPolicy::Off => false,
        IopollPolicy::Probe => probe::iopoll_usable(shared),
        IopollPolicy::Force => true,
    }
}

fn build(
    shared: &Shared,
    setup: Setup,
    entries: u32,
    register_arena: bool,
) -> Result<IoUring, DeviceError> {
    let path = shared.path.display();
    let mut builder = IoUring::builder();
    builder.setup_submit_all();
    match setup {
        Setup::Plain => {}
        Setup::Coop => {
            builder.setup_coop_taskrun().setup_taskrun_flag();
        }
        Setup::Defer => {
            builder.setup_single_issuer().setup_defer_taskrun();
        }
        Setup::IoPoll => {
            builder.setup_iopoll();
        }
    }
    let uring = builder.build(entries).map_err(|e| {
        DeviceError::setup(
            format!("io_uring setup ({setup:?}, {entries} entries) for {path}"),
            &e,
        )
    })?;
    uring
        .submitter()
        .register_files(&[shared.fd()])
        .map_err(|e| DeviceError::setup(format!("io_uring register_files {path}"), &e))?;
    if register_arena {
        let arena = &shared.arena;
        let region = libc::iovec {
            iov_base: arena.base_ptr().cast(),
            iov_len: arena.len_bytes(),
        };
        // SAFETY: the region is the arena's mapping, which stays mapped as long as `shared` lives;
        // every queue holds an `Arc<Shared>` and drops its rings before it (see `queue.rs`), so
        // the registration never outlives the memory.
        unsafe { uring.submitter().register_buffers(&[region]) }.map_err(|e| {
            DeviceError::setup(
                format!(
                    "io_uring register_buffers ({} byte arena) for {path}",
                    arena.len_bytes()
                ),
                &e,
            )
        })?;
    }
    Ok(uring)
}
