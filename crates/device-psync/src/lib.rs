//! # aios-device-psync: the synchronous backend
//!
//! `preadv`/`pwritev2` on an `O_DIRECT` file descriptor, one system call per command, performed
//! inside [`Queue::submit`]. For devices that complete synchronously anyway (`/dev/zram0`, where
//! io_uring must punt every request to a worker thread) and as the reference the kernel itself
//! offers applications.
//!
//! Mapping of the contract: FUA is `RWF_DSYNC` on the write; flush is `fdatasync`. Completion
//! mode and buffer registration have no meaning here: the data has moved when `submit` returns
//! (so [`DeviceInfo::completes_in_submit`] is true: there is no device time for the layers above
//! to overlap), and `reap` (after submitting anything still staged) hands out the completions in
//! submission order.
//!
//! Invariant: a tag is `busy` from `push` until its completion is handed out by `reap`; the iovecs
//! of a busy slot point into arena memory the caller gave up in `push`.

use aios_device::{
    check_tag, open_target, Arena, Completion, Device, DeviceError, DeviceInfo, FaultInjector, Io,
    Op, Queue, QueueConfig, Tag, TargetOptions, SEGMENTS_MAX,
};
use arrayvec::ArrayVec;
use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Arc;

/// Settings of a [`PsyncDevice`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PsyncConfig {
    pub arena_bytes: usize,
    pub target: TargetOptions,
}

impl Default for PsyncConfig {
    fn default() -> Self {
        PsyncConfig {
            arena_bytes: 64 << 20,
            target: TargetOptions::default(),
        }
    }
}

struct Shared {
    file: File,
    arena: Arc<Arena>,
    faults: FaultInjector,
    info: DeviceInfo,
}

/// A file or block device driven with synchronous system calls.
pub struct PsyncDevice {
    shared: Arc<Shared>,
}

impl PsyncDevice {
    pub fn open(path: &Path, config: PsyncConfig) -> Result<PsyncDevice, DeviceError> {
        let target = open_target(path, config.target)?;
        let arena = Arena::new(config.arena_bytes).map_err(|e| DeviceError::Setup {
            what: e.to_string(),
            errno: libc::ENOMEM,
        })?;
        let info = DeviceInfo {
            name: format!("psync:{}", path.display()),
            capacity_bytes: target.capacity_bytes,
            volatile_cache: target.volatile_cache,
            // The system call runs inside `submit`.
            completes_in_submit: true,
        };
        let shared = Shared {
            file: target.file,
            arena: Arc::new(arena),
            faults: FaultInjector::default(),
            info,
        };
        Ok(PsyncDevice {
            shared: Arc::new(shared),
        })
    }
}

impl Device for PsyncDevice {
    type Queue = PsyncQueue;

    fn info(&self) -> DeviceInfo {
        self.shared.info.clone()
    }

    fn arena(&self) -> &Arc<Arena> {
        &self.shared.arena
    }

    fn open_queue(&self, config: QueueConfig) -> Result<PsyncQueue, DeviceError> {
        if config.depth == 0 {
            return Err(DeviceError::Unsupported("queue depth 0".into()));
        }
        let slots = (0..config.depth).map(|_| Slot::default()).collect();
        Ok(PsyncQueue {
            shared: self.shared.clone(),
            slots,
            staged: Vec::new(),
            done: Vec::new(),
            outstanding: 0,
        })
    }

    fn faults(&self) -> &FaultInjector {
        &self.shared.faults
    }
}

#[derive(Default)]
struct Slot {
    busy: bool,
    op: Option<Op>,
    offset_bytes: u64,
    len_bytes: u32,
    iov: ArrayVec<libc::iovec, SEGMENTS_MAX>,
}

/// One thread's queue on a [`PsyncDevice`].
pub struct PsyncQueue {
    shared: Arc<Shared>,
    slots: Box<[Slot]>,
    staged: Vec<Tag>,
    done: Vec<Completion>,
    outstanding: usize,
}

impl PsyncQueue {
    fn execute(&self, tag: Tag) -> Completion {
        let slot = &self.slots[usize::from(tag)];
        let op = slot.op.expect("staged slots carry an op");
        let fd = self.shared.file.as_raw_fd();
        let iovcnt = slot.iov.len() as libc::c_int;
        let off = slot.offset_bytes as libc::off_t;
        // SAFETY: the iovecs point into arena memory that `push`'s caller gave to the device until
        // this completion is reaped (the `Queue::push` contract); lengths were validated.
        let rc = unsafe {
            match (op, slot.iov.as_slice()) {
                // One segment: plain pread/pwrite, sparing the kernel the iovec import.
                (Op::Read, [one]) => libc::pread(fd, one.iov_base, one.iov_len, off),
                (Op::Write { fua: false }, [one]) => {
                    libc::pwrite(fd, one.iov_base, one.iov_len, off)
                }
                (Op::Read, _) => libc::preadv(fd, slot.iov.as_ptr(), iovcnt, off),
                (Op::Write { fua }, _) => {
                    let flags = if fua { libc::RWF_DSYNC } else { 0 };
                    libc::pwritev2(fd, slot.iov.as_ptr(), iovcnt, off, flags)
                }
                (Op::Flush, _) => libc::fdatasync(fd) as isize,
            }
        };
        let errno = if rc < 0 {
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO)
        } else if rc as u64 != u64::from(slot.len_bytes) {
            // The contract never reaches past the capacity, so a short transfer is a failure.
            libc::EIO
        } else {
            return Completion {
                tag,
                result: Ok(slot.len_bytes),
            };
        };
        Completion {
            tag,
            result: Err(io_error(op, tag, slot.offset_bytes, slot.len_bytes, errno)),
        }
    }
}

fn io_error(op: Op, tag: Tag, offset_bytes: u64, len_bytes: u32, errno: i32) -> DeviceError {
    DeviceError::Io {
        op,
        tag,
        offset_bytes,
        len_bytes,
        errno,
    }
}

impl Queue for PsyncQueue {
    fn depth(&self) -> u16 {
        self.slots.len() as u16
    }

    unsafe fn push(&mut self, tag: Tag, io: &Io<'_>) -> Result<(), DeviceError> {
        let len_bytes = io.validate(&self.shared.arena, self.shared.info.capacity_bytes)?;
        let busy = self.slots.get(usize::from(tag)).map(|slot| slot.busy);
        check_tag(tag, self.depth(), busy)?;
        let slot = &mut self.slots[usize::from(tag)];
        slot.busy = true;
        self.outstanding += 1;
        if let Some(errno) = self.shared.faults.check(io, len_bytes) {
            self.done.push(Completion {
                tag,
                result: Err(io_error(io.op, tag, io.offset_bytes, len_bytes, errno)),
            });
            return Ok(());
        }
        slot.op = Some(io.op);
        slot.offset_bytes = io.offset_bytes;
        slot.len_bytes = len_bytes;
        slot.iov.clear();
        for seg in io.segments {
            let iov_base = self.shared.arena.segment_ptr(*seg).cast();
            slot.iov.push(libc::iovec {
                iov_base,
                iov_len: seg.len as usize,
            });
        }
        self.staged.push(tag);
        Ok(())
    }

    fn submit(&mut self) -> Result<usize, DeviceError> {
        let staged = std::mem::take(&mut self.staged);
        for &tag in &staged {
            let completion = self.execute(tag);
            self.done.push(completion);
        }
        let n = staged.len();
        self.staged = staged;
        self.staged.clear();
        Ok(n)
    }

    fn reap(&mut self, _min: usize, out: &mut Vec<Completion>) -> Result<usize, DeviceError> {
        // Everything submitted is complete; staged commands run now, as the contract asks.
        self.submit()?;
        let n = self.done.len();
        for c in self.done.drain(..) {
            self.slots[usize::from(c.tag)].busy = false;
            out.push(c);
        }
        self.outstanding -= n;
        Ok(n)
    }

    fn outstanding(&self) -> usize {
        self.outstanding
    }
}
