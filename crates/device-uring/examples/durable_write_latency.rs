//! QD1 durable 4 KiB writes: what a commit's last two steps cost through this backend, a flush
//! after a completed write and a FUA write, with the flush through the ring
//! (`IORING_OP_FSYNC`, run by an io-wq worker) or inline (`fdatasync` on the submitting thread,
//! [`FlushPath::Inline`]), sleeping or busy-polling for completions, next to the same system
//! calls made directly. Interleaved in one run.
//!
//! ```text
//! cargo run --release -p aios-device-uring --example durable_write_latency -- FILE [SECS] [REPS]
//! ```
//! FILE must exist, be fully written (no holes: a hole makes the host file system allocate and
//! every flush commit its journal) and may be overwritten: it is a scratch image. Not a test:
//! numbers depend on the machine.

use aios_device::{Buf, CompletionMode, Device, Io, Queue, QueueConfig, BLOCK_SIZE};
use aios_device_uring::{FlushPath, Tuning, UringConfig, UringDevice, UringQueue};
use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// Round-robin slices per variant per repetition.
const SLICES_PER_REP: u32 = 20;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    /// A write, wait, then a flush, wait (the pre-commit flush after data and journal).
    WriteThenFlush,
    /// One write with FUA, wait (the commit block).
    FuaWrite,
}

enum Runner {
    Syscalls {
        file: File,
        arena: aios_device::Arena,
        page: Buf,
    },
    Uring {
        dev: UringDevice,
        queue: Box<UringQueue>,
        page: Buf,
    },
}

impl Runner {
    fn open_uring(path: &Path, flush: FlushPath, completion: CompletionMode) -> Runner {
        let tuning = Tuning {
            flush,
            ..Tuning::default()
        };
        let config = UringConfig {
            tuning,
            arena_bytes: 1 << 20,
            // Two devices of this run open the same file.
            target: aios_device::TargetOptions {
                read_only: false,
                exclusive: false,
            },
        };
        let dev = UringDevice::open(path, config).expect("open with io_uring");
        let queue = Box::new(
            dev.open_queue(QueueConfig {
                depth: 4,
                completion,
                registered_buffers: true,
            })
            .expect("queue"),
        );
        let mut page = dev.arena().alloc(1).expect("page");
        dev.arena().bytes_mut(&mut page).fill(0x5a);
        Runner::Uring { dev, queue, page }
    }

    fn open_syscalls(path: &Path) -> Runner {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .expect("open O_DIRECT");
        let arena = aios_device::Arena::new(BLOCK_SIZE).expect("aligned page");
        let mut page = arena.alloc(1).expect("page");
        arena.bytes_mut(&mut page).fill(0x5a);
        Runner::Syscalls { file, arena, page }
    }

    fn one(&mut self, step: Step, offset: u64) {
        match self {
            Runner::Syscalls { file, arena, page } => match step {
                Step::WriteThenFlush => {
                    file.write_all_at(arena.bytes(page), offset)
                        .expect("pwrite");
                    file.sync_data().expect("fdatasync");
                }
                Step::FuaWrite => {
                    let iov = libc::iovec {
                        iov_base: arena.bytes(page).as_ptr() as *mut libc::c_void,
                        iov_len: BLOCK_SIZE,
                    };
                    // SAFETY: one iovec over a live 4 KiB page, an open descriptor.
                    let n = unsafe {
                        libc::pwritev2(file.as_raw_fd(), &iov, 1, offset as i64, libc::RWF_DSYNC)
                    };
                    assert_eq!(n, BLOCK_SIZE as isize, "pwritev2 RWF_DSYNC");
                }
            },
            Runner::Uring { queue, page, .. } => {
                let seg = [page.segment()];
                let mut out = Vec::with_capacity(2);
                let mut run = |io: &Io<'_>| {
                    // SAFETY: `page` is not touched until `reap` returned the completion.
                    unsafe { queue.push(0, io) }.expect("push");
                    queue.submit().expect("submit");
                    out.clear();
                    queue.reap(1, &mut out).expect("reap");
                    assert!(out[0].result.is_ok(), "{:?}", out[0].result);
                };
                match step {
                    Step::WriteThenFlush => {
                        run(&Io::write(offset, &seg, false));
                        run(&Io::flush());
                    }
                    Step::FuaWrite => run(&Io::write(offset, &seg, true)),
                }
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = Path::new(
        args.get(1)
            .expect("usage: durable_write_latency FILE [SECS] [REPS]"),
    );
    let secs: f64 = args.get(2).map_or(2.0, |s| s.parse().expect("seconds"));
    let reps: usize = args.get(3).map_or(3, |s| s.parse().expect("repetitions"));
    let blocks = std::fs::metadata(path).expect("stat FILE").len() / BLOCK_SIZE as u64;
    let mut runners = [
        ("syscalls", Runner::open_syscalls(path)),
        (
            "uring, flush in ring",
            Runner::open_uring(path, FlushPath::Ring, CompletionMode::Interrupt),
        ),
        (
            "uring, flush inline",
            Runner::open_uring(path, FlushPath::Inline, CompletionMode::Interrupt),
        ),
        (
            "uring, flush in ring, poll",
            Runner::open_uring(path, FlushPath::Ring, CompletionMode::Poll),
        ),
        (
            "uring, flush inline, poll",
            Runner::open_uring(path, FlushPath::Inline, CompletionMode::Poll),
        ),
    ];
    let slice = Duration::from_secs_f64(secs / SLICES_PER_REP as f64);
    let mut next = 0x9e37_79b9_7f4a_7c15u64;
    for step in [Step::WriteThenFlush, Step::FuaWrite] {
        let mut all: Vec<Vec<u64>> = runners.iter().map(|_| Vec::new()).collect();
        for _ in 0..reps * SLICES_PER_REP as usize {
            for ((_, r), lat) in runners.iter_mut().zip(&mut all) {
                let end = Instant::now() + slice;
                while Instant::now() < end {
                    next = next
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let offset = ((next >> 11) % blocks) * BLOCK_SIZE as u64;
                    let t = Instant::now();
                    r.one(step, offset);
                    lat.push(t.elapsed().as_nanos() as u64);
                }
            }
        }
        for ((name, _), mut lat) in runners.iter().zip(all) {
            lat.sort_unstable();
            let n = lat.len().max(1);
            let mean = lat.iter().sum::<u64>() as f64 / n as f64 / 1e3;
            let p50 = lat[(n - 1) / 2] as f64 / 1e3;
            let p99 = lat[(n - 1) * 99 / 100] as f64 / 1e3;
            println!(
                "{step:?}  {name:<26} mean {mean:7.1} us  p50 {p50:7.1}  p99 {p99:7.1}  ({n} ops)"
            );
        }
    }
    for (_, r) in runners {
        if let Runner::Uring { dev, queue, page } = r {
            drop(queue);
            dev.arena().free(page);
        }
    }
}
