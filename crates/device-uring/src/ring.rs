//! [`Ring`]: one io_uring and the two counters a queue needs to know what the kernel holds.
//!
//! # Invariants
//! - `staged` counts SQEs written to the submission queue (tail published) and not yet consumed
//!   by the kernel; `in_kernel` counts SQEs consumed whose CQE has not been reaped.
//! - Every `io_uring_enter` passes all staged SQEs, so entering to wait also submits: a queue
//!   never waits for a command it has not started.
//! - A ring is only dropped when `in_kernel == 0` (the queue's `Drop` waits, or leaks the ring).

use crate::slot::Slots;
use aios_device::{Completion, DeviceError};
use io_uring::{squeue, EnterFlags, IoUring};

/// Errors after which `io_uring_enter` should simply be called again.
pub(crate) fn retryable(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY | libc::ETIME)
    )
}

/// One io_uring with its counters (see the module invariants).
pub(crate) struct Ring {
    uring: IoUring,
    staged: u32,
    in_kernel: usize,
    /// Completions reach the completion queue only inside `io_uring_enter(GETEVENTS)`
    /// (`DEFER_TASKRUN` or `IOPOLL` rings).
    completes_in_enter: bool,
}

impl Ring {
    pub fn new(uring: IoUring, completes_in_enter: bool) -> Ring {
        Ring {
            uring,
            staged: 0,
            in_kernel: 0,
            completes_in_enter,
        }
    }

    pub fn staged(&self) -> u32 {
        self.staged
    }

    pub fn in_kernel(&self) -> usize {
        self.in_kernel
    }

    /// Writes one SQE to the submission queue (no system call).
    ///
    /// # Safety
    /// Every memory address in `entry` must stay valid, and untouched by anyone but the kernel,
    /// until its completion is reaped.
    pub unsafe fn push(&mut self, entry: &squeue::Entry) -> Result<(), DeviceError> {
        // SAFETY: the caller upholds the buffer lifetime contract of `SubmissionQueue::push`.
        let pushed = unsafe { self.uring.submission().push(entry) };
        pushed.map_err(|_| DeviceError::Queue {
            what: "io_uring submission queue full",
            errno: libc::EBUSY,
        })?;
        self.staged += 1;
        Ok(())
    }

    /// Starts every staged SQE, with one `io_uring_enter` (retried on `EINTR`); on a ring that
    /// completes in enter, the same call also posts finished completions. Returns how many
    /// started. No system call when there is nothing to do.
    pub fn submit(&mut self) -> Result<usize, DeviceError> {
        let post = self.completes_in_enter && self.in_kernel > 0;
        if self.staged == 0 && !post {
            return Ok(0);
        }
        loop {
            match self.enter(0, self.completes_in_enter) {
                Ok(started) => return Ok(started),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(queue_error("io_uring_enter (submit)", &e)),
            }
        }
    }

    /// Starts what is staged and waits until `want` completions are posted, in one
    /// `io_uring_enter`: sleeping, or on an `IOPOLL` ring polling the device. With `want == 0` it
    /// only posts what has finished. Interrupted waits return early; callers loop.
    pub fn wait(&mut self, want: usize) -> Result<(), DeviceError> {
        match self.enter(want, true) {
            Err(e) if !retryable(&e) => Err(queue_error("io_uring_enter (wait)", &e)),
            _ => Ok(()),
        }
    }

    fn enter(&mut self, want: usize, get_events: bool) -> std::io::Result<usize> {
        let flags = if get_events {
            EnterFlags::GETEVENTS.bits()
        } else {
            0
        };
        let want = u32::try_from(want).unwrap_or(u32::MAX);
        // SAFETY: no argument structure is passed (`None`); the SQEs handed over were pushed
        // through `push`, whose callers keep their memory valid until completion.
        let res = unsafe {
            self.uring
                .submitter()
                .enter::<libc::sigset_t>(self.staged, want, flags, None)
        };
        // The kernel returns how many SQEs it consumed, or (if none) the wait's result.
        let started = res?.min(self.staged as usize);
        self.staged -= started as u32;
        self.in_kernel += started;
        Ok(started)
    }

    /// Moves every available completion to `out`; returns how many.
    pub fn drain(&mut self, slots: &mut Slots, out: &mut Vec<Completion>) -> usize {
        let mut n = 0;
        for cqe in self.uring.completion() {
            let Some(done) = slots.finish(cqe.user_data(), cqe.result()) else {
                debug_assert!(false, "CQE for no outstanding tag: {cqe:?}");
                continue;
            };
            out.push(done);
            n += 1;
        }
        self.in_kernel -= n;
        n
    }

    /// True if a completion is waiting in the completion queue (no system call).
    pub fn has_completions(&mut self) -> bool {
        !self.uring.completion().is_empty()
    }

    /// Drops the ring's references to the device file and the arena now. Closing the ring fd
    /// tears it down asynchronously, which would keep the file (and its `flock`, or the block
    /// device's `O_EXCL` claim) alive for a while after the queue is gone. Call only when
    /// nothing is in the kernel. Failure is harmless (the asynchronous teardown still happens).
    pub fn unregister(&mut self) {
        debug_assert_eq!(self.in_kernel, 0);
        let submitter = self.uring.submitter();
        let _ = submitter.unregister_files();
        let _ = submitter.unregister_buffers();
    }
}

fn queue_error(what: &'static str, e: &std::io::Error) -> DeviceError {
    DeviceError::Queue {
        what,
        errno: e.raw_os_error().unwrap_or(libc::EIO),
    }
}
