//! Kernel and device feature probes, each run at most once per device (cached in
//! `shared::Shared`; the cached `IOPOLL` answer is [`Shared::iopoll`], here), each saying once per
//! process on stderr when it forces a fallback. Their tests, which open a whole
//! [`crate::UringDevice`], are in `probe/tests.rs`.
//!
//! - `IOPOLL`: can poll-mode queues let the kernel poll the device? (virtio-blk and zram here:
//!   no, `EOPNOTSUPP`; poll mode then busy-polls the completion queue of a normal ring.)
//! - `READV_FIXED`/`WRITEV_FIXED` (Linux 6.15): can multi-segment I/O use the registered arena?
//!   (If not, it uses `READV`/`WRITEV` and the kernel pins those pages per I/O.)
//!
//! A probe never touches the caller's arena: the `IOPOLL` read lands in a private page.

use crate::shared::Shared;
use aios_device::BLOCK_SIZE;
use io_uring::{opcode, types, IoUring, Probe};
use std::sync::Once;

static IOPOLL_NOTICE: Once = Once::new();
static VECTORED_FIXED_NOTICE: Once = Once::new();

impl Shared {
    /// Whether `IOPOLL` works on this device; probed by the first poll-mode queue.
    pub fn iopoll(&self) -> Result<(), i32> {
        *self.iopoll.get_or_init(|| probe_iopoll(self))
    }
}

/// `IOPOLL` usable on this device? Prints the fallback once per process when not.
pub(crate) fn iopoll_usable(shared: &Shared) -> bool {
    let Err(errno) = shared.iopoll() else {
        return true;
    };
    IOPOLL_NOTICE.call_once(|| {
        eprintln!(
            "aios: IOPOLL not supported by {} ({}); busy-polling the completion queue instead",
            shared.path.display(),
            std::io::Error::from_raw_os_error(errno)
        );
    });
    false
}

/// Whether `IOPOLL` works on this device: `Err(errno)` says why not.
///
/// The ground truth is a 4 KiB read through an `IOPOLL` ring: devices without poll queues
/// (virtio-blk, zram here) accept the ring and fail the I/O with `EOPNOTSUPP`. The read must
/// reach the device, and a file's holes are read without I/O, so a file is probed at its first
/// data block (`SEEK_DATA`). sysfs (`queue/io_poll` of the block device below) answers first
/// when it says no, and decides when there is nothing to read.
pub(crate) fn probe_iopoll(shared: &Shared) -> Result<(), i32> {
    let polls = shared.target().queue_attr("io_poll").map(|v| v == "1");
    if polls == Some(false) {
        return Err(libc::EOPNOTSUPP);
    }
    match probe_offset(shared) {
        Some(offset_bytes) => probe_read(shared, offset_bytes),
        None if polls == Some(true) => Ok(()),
        None => Err(libc::ENODATA),
    }
}

/// A block that is backed by the device: 0 on a block device, the first data block of a file.
fn probe_offset(shared: &Shared) -> Option<u64> {
    let block = BLOCK_SIZE as u64;
    if shared.target().is_block_device {
        return (shared.capacity_bytes() >= block).then_some(0);
    }
    // SAFETY: lseek on a descriptor owned by `shared`; it moves the file position, which no one
    // uses (all our I/O is positional).
    let data = unsafe { libc::lseek(shared.fd(), 0, libc::SEEK_DATA) };
    let offset = u64::try_from(data).ok()? / block * block;
    (offset + block <= shared.capacity_bytes()).then_some(offset)
}

/// Reads one block at `offset_bytes` into the probe page through an `IOPOLL` ring.
pub(crate) fn probe_read(shared: &Shared, offset_bytes: u64) -> Result<(), i32> {
    let errno = |e: std::io::Error| e.raw_os_error().unwrap_or(libc::EIO);
    let mut uring: IoUring = IoUring::builder().setup_iopoll().build(2).map_err(errno)?;
    let page = shared.probe_page.base_ptr();
    let read = opcode::Read::new(types::Fd(shared.fd()), page, BLOCK_SIZE as u32)
        .offset(offset_bytes)
        .build();
    // SAFETY: the probe page is one mapped page owned by `shared`, which outlives this function;
    // if we give up before the read's completion, `abandon` leaks the ring and the page.
    unsafe { uring.submission().push(&read) }.map_err(|_| libc::EBUSY)?;
    loop {
        if let Err(e) = uring.submit_and_wait(1) {
            if !crate::ring::retryable(&e) {
                abandon(uring, shared);
                return Err(errno(e));
            }
        }
        if let Some(cqe) = uring.completion().next() {
            return if cqe.result() < 0 {
                Err(-cqe.result())
            } else {
                Ok(())
            };
        }
    }
}

/// Leaks a ring whose I/O may still be in flight, and the probe page it targets.
fn abandon(uring: IoUring, shared: &Shared) {
    std::mem::forget(uring);
    std::mem::forget(std::sync::Arc::clone(&shared.probe_page));
}

/// Whether the kernel has `READV_FIXED`/`WRITEV_FIXED` (`IORING_REGISTER_PROBE` on a live ring).
/// Prints the fallback once per process when not.
pub(crate) fn vectored_fixed(shared: &Shared, uring: &IoUring) -> bool {
    let mut probe = Probe::new();
    let supported = uring.submitter().register_probe(&mut probe).is_ok()
        && probe.is_supported(opcode::ReadvFixed::CODE)
        && probe.is_supported(opcode::WritevFixed::CODE);
    if !supported {
        VECTORED_FIXED_NOTICE.call_once(|| {
            eprintln!(
                "aios: this kernel lacks READV_FIXED/WRITEV_FIXED; multi-segment I/O on {} uses \
                 READV/WRITEV (pinned per I/O)",
                shared.path.display()
            );
        });
    }
    supported
}

#[cfg(test)]
mod tests;
