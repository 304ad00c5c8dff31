//! [`UringQueue`]: one thread's ring(s), implementing [`aios_device::Queue`].
//!
//! Life of a command: `push` validates it, checks the tag, asks the fault injector, and writes an
//! SQE into the submission queue (no system call), or, for an injected fault, records the failure
//! without touching the kernel. `submit` hands every staged SQE to the kernel in one
//! `io_uring_enter`, runs staged flushes inline (`fdatasync` on this thread, by default: see
//! [`crate::FlushPath`]) and makes those and staged injected failures reapable. `reap` collects completions,
//! waiting per the queue's completion mode.
//!
//! # Invariants
//! - `outstanding()` = commands pushed and not reaped = busy slots = staged SQEs + SQEs in the
//!   kernel + injected failures and inline flushes not yet reaped.
//! - No lock and no heap allocation per command: slots, iovec arrays and fault lists are sized to
//!   `depth` at open (the caller's `out` vector is the caller's business).
//! - The rings are dropped only after every command the kernel holds has completed. If waiting
//!   fails (the kernel refusing `io_uring_enter`, never seen), the rings and the device's shared
//!   state are leaked instead, so the arena stays mapped and registered under the kernel's
//!   writes; the owner of those commands' buffers is not told (the trait has no way to say it).

use crate::config::FlushPath;
use crate::ring::Ring;
use crate::setup::{self, Rings, Wait};
use crate::shared::Shared;
use crate::slot::Slots;
use crate::sqe::{self, Prep};
use aios_device::{Completion, DeviceError, Io, Op, PoliteSpin, Queue, QueueConfig, Tag};
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::sync::Arc;

/// The deepest queue: io_uring's limit on submission queue entries.
pub const DEPTH_MAX: u16 = 32768;

/// One thread's io_uring queue on a [`crate::UringDevice`]. Made by
/// [`aios_device::Device::open_queue`] on the thread that will drive it; not `Send`, because the
/// default interrupt-mode ring is `SINGLE_ISSUER | DEFER_TASKRUN` and the kernel refuses its use
/// from any other thread.
///
/// ```compile_fail
/// fn send<T: Send>() {}
/// send::<aios_device_uring::UringQueue>();
/// ```
pub struct UringQueue {
    rings: ManuallyDrop<Rings>,
    slots: Slots,
    prep: Prep,
    /// Injected failures pushed and not yet submitted: `(tag, errno)`.
    faults_staged: Vec<(Tag, i32)>,
    /// Flushes pushed and not yet submitted, to run inline ([`crate::FlushPath::Inline`]).
    flushes_staged: Vec<Tag>,
    /// Commands finished without the ring (injected failures, inline flushes) and not yet
    /// reaped: `(tag, errno)`, errno 0 for success.
    faults_ready: Vec<(Tag, i32)>,
    /// Declared last: outlives the rings (see `Drop`).
    shared: Arc<Shared>,
    /// Not `Send`: a `SINGLE_ISSUER` ring refuses every thread but the one that opened it.
    _one_thread: PhantomData<*const ()>,
}

impl std::fmt::Debug for UringQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringQueue")
            .field("path", &self.shared.path)
            .field("depth", &self.slots.depth())
            .field("wait", &self.rings.wait)
            .field("prep", &self.prep)
            .field("outstanding", &self.slots.outstanding())
            .finish()
    }
}

impl UringQueue {
    pub(crate) fn open(
        shared: Arc<Shared>,
        config: QueueConfig,
    ) -> Result<UringQueue, DeviceError> {
        if config.depth == 0 || config.depth > DEPTH_MAX {
            return Err(DeviceError::Setup {
                what: format!(
                    "queue depth {} on {}: must be 1..={DEPTH_MAX}",
                    config.depth,
                    shared.path.display()
                ),
                errno: libc::EINVAL,
            });
        }
        let rings = setup::open_rings(&shared, &config)?;
        let depth = usize::from(config.depth);
        Ok(UringQueue {
            prep: Prep {
                fixed_buffers: config.registered_buffers,
                vectored_fixed: rings.vectored_fixed,
            },
            rings: ManuallyDrop::new(rings),
            slots: Slots::new(config.depth),
            faults_staged: Vec::with_capacity(depth),
            flushes_staged: Vec::with_capacity(depth),
            faults_ready: Vec::with_capacity(depth),
            shared,
            _one_thread: PhantomData,
        })
    }

    /// True if completions are polled from the device by the kernel (`IOPOLL`); false if this
    /// queue sleeps, or busy-polls a normal ring because the device refused `IOPOLL`.
    pub fn uses_iopoll(&self) -> bool {
        self.rings.wait == Wait::IoPoll
    }

    /// SQEs in the submission queues, not yet handed to the kernel.
    fn staged_sqes(&self) -> usize {
        let flush = self.rings.flush.as_ref().map_or(0, Ring::staged);
        (self.rings.main.staged() + flush) as usize
    }

    /// Commands the kernel holds.
    fn in_kernel(&self) -> usize {
        self.rings.main.in_kernel() + self.rings.flush.as_ref().map_or(0, Ring::in_kernel)
    }

    /// Moves every available completion (injected or from the kernel) to `out`.
    fn collect(&mut self, out: &mut Vec<Completion>) {
        for (tag, errno) in self.faults_ready.drain(..) {
            out.push(self.slots.fail(tag, errno));
        }
        self.rings.main.drain(&mut self.slots, out);
        if let Some(flush) = &mut self.rings.flush {
            flush.drain(&mut self.slots, out);
        }
    }

    /// Runs the staged inline flushes (after the ring's staged commands were started, as a
    /// ring would have ordered them); each completes at once. Returns how many ran.
    fn run_inline_flushes(&mut self) -> usize {
        let n = self.flushes_staged.len();
        for tag in self.flushes_staged.drain(..) {
            // SAFETY: `fd` is the device's open descriptor, alive while `shared` lives.
            let rc = unsafe { libc::fdatasync(self.shared.fd()) };
            let errno = if rc == 0 {
                0
            } else {
                std::io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EIO)
            };
            self.faults_ready.push((tag, errno));
        }
        n
    }

    /// Starts every staged SQE (one `io_uring_enter` per ring that has any); on rings that only
    /// complete inside `io_uring_enter`, the same call posts what has finished.
    fn start_staged(&mut self) -> Result<usize, DeviceError> {
        let mut started = self.rings.main.submit()?;
        if let Some(flush) = &mut self.rings.flush {
            started += flush.submit()?;
        }
        Ok(started)
    }

    /// Waits, per the completion mode, until some completion is likely available, starting what
    /// is staged on the way (a sleeping wait submits and waits in one `io_uring_enter`). May
    /// return early (interrupted); the caller collects and loops.
    fn wait(&mut self, want: usize) -> Result<(), DeviceError> {
        let rings = &mut *self.rings;
        let main = &mut rings.main;
        let main_want = want.min(main.in_kernel() + main.staged() as usize);
        let flush_busy = match &mut rings.flush {
            Some(flush) => {
                flush.submit()?;
                flush.in_kernel() > 0
            }
            None => false,
        };
        match rings.wait {
            Wait::Sleep => main.wait(main_want),
            Wait::IoPoll if !flush_busy => main.wait(main_want),
            Wait::CqSpin => {
                main.submit()?;
                let mut spin = PoliteSpin::new();
                while !main.has_completions() {
                    spin.pause();
                }
                Ok(())
            }
            Wait::EnterSpin | Wait::IoPoll => {
                let mut spin = PoliteSpin::new();
                loop {
                    // No minimum: posts (or, with IOPOLL, polls once for) what has finished.
                    main.wait(0)?;
                    let flushed = rings.flush.as_mut().is_some_and(Ring::has_completions);
                    if main.has_completions() || flushed {
                        return Ok(());
                    }
                    spin.pause();
                }
            }
        }
    }

    /// Submits what is staged and waits for everything the kernel holds.
    fn quiesce(&mut self) -> Result<(), DeviceError> {
        let mut sink = Vec::with_capacity(usize::from(self.slots.depth()));
        loop {
            sink.clear();
            self.reap(1, &mut sink)?;
            if self.in_kernel() == 0 {
                return Ok(());
            }
        }
    }
}

impl Queue for UringQueue {
    fn depth(&self) -> u16 {
        self.slots.depth()
    }

    unsafe fn push(&mut self, tag: Tag, io: &Io<'_>) -> Result<(), DeviceError> {
        let len_bytes = io.validate(&self.shared.arena, self.shared.capacity_bytes())?;
        self.slots.check_free(tag)?;
        if let Some(errno) = self.shared.faults.check(io, len_bytes) {
            // Never sent to the kernel: a failed command has no effect.
            self.slots.occupy(tag, io, len_bytes);
            self.faults_staged.push((tag, errno));
            return Ok(());
        }
        if io.op == Op::Flush && self.shared.tuning.flush == FlushPath::Inline {
            self.slots.occupy(tag, io, len_bytes);
            self.flushes_staged.push(tag);
            return Ok(());
        }
        let slot = self.slots.occupy(tag, io, len_bytes);
        let entry = sqe::entry(self.prep, &self.shared.arena, slot, tag, io);
        let rings = &mut *self.rings;
        let ring = match (io.op, &mut rings.flush) {
            (Op::Flush, Some(flush)) => flush,
            _ => &mut rings.main,
        };
        // SAFETY: the caller gives us the segments' memory until this tag's completion is reaped
        // (`Queue::push` contract); the arena stays mapped while `shared` lives; the iovecs a
        // vectored entry points at live in this tag's slot, untouched while it is busy.
        if let Err(e) = unsafe { ring.push(&entry) } {
            self.slots.release(tag);
            return Err(e);
        }
        Ok(())
    }

    fn submit(&mut self) -> Result<usize, DeviceError> {
        let faults = self.faults_staged.len();
        // Within capacity: at most `depth` commands are outstanding.
        self.faults_ready.append(&mut self.faults_staged);
        let started = self.start_staged()?;
        Ok(faults + self.run_inline_flushes() + started)
    }

    fn reap(&mut self, min: usize, out: &mut Vec<Completion>) -> Result<usize, DeviceError> {
        let start = out.len();
        self.faults_ready.append(&mut self.faults_staged);
        if min == 0 {
            self.start_staged()?;
        }
        self.run_inline_flushes();
        loop {
            self.collect(out);
            let got = out.len() - start;
            if got >= min || self.in_kernel() + self.staged_sqes() == 0 {
                if self.staged_sqes() > 0 {
                    self.start_staged()?;
                }
                return Ok(got);
            }
            self.wait(min - got)?;
        }
    }

    fn outstanding(&self) -> usize {
        self.slots.outstanding()
    }
}

impl Drop for UringQueue {
    fn drop(&mut self) {
        match self.quiesce() {
            Ok(()) => {
                self.rings.main.unregister();
                if let Some(flush) = &mut self.rings.flush {
                    flush.unregister();
                }
                // SAFETY: `rings` is dropped exactly once, here, and not used afterwards; the
                // kernel holds no command of ours any more.
                unsafe { ManuallyDrop::drop(&mut self.rings) }
            }
            Err(e) => {
                eprintln!(
                    "aios: cannot wait for {} commands in flight on {} ({e}); leaking the ring \
                     and the arena so no I/O lands in reused memory",
                    self.in_kernel(),
                    self.shared.path.display()
                );
                std::mem::forget(Arc::clone(&self.shared));
            }
        }
    }
}
