//! Runs one case for a fixed time and returns its latency histogram and operation count.
//!
//! Each thread opens its own queue (one ring per thread), allocates its buffers up front, warms
//! up, then keeps `qd` I/Os in flight at random block-aligned offsets until the deadline. The
//! latency of an I/O is from staging it to seeing its completion, on the thread's monotonic clock.
//! The kernel path is the same loop calling `pread`/`pwrite` on an `O_DIRECT` descriptor.

use super::case::{Case, Stack, Workload};
use aios_block::BlockQueue;
use aios_device::{Arena, Buf, CompletionMode, Device, Op, QueueConfig, BLOCK_SIZE};
use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use rand::{rngs::SmallRng, Rng, SeedableRng};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};

/// How long one run of a case lasts, and where its random offsets come from.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub warmup: Duration,
    pub duration: Duration,
    /// Distinct per case and repetition: cases sharing an offset sequence would warm caches
    /// below the device (the host's, for a virtual disk) for each other.
    pub seed: u64,
}

impl Run {
    pub(crate) fn thread_seed(&self, thread: usize) -> u64 {
        self.seed ^ (thread as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

/// What one run of a case produced.
pub struct Sample {
    pub latency_ns: Histogram<u64>,
    pub ops: u64,
    pub elapsed_ns: u64,
}

impl Sample {
    pub fn iops(&self) -> f64 {
        self.ops as f64 * 1e9 / self.elapsed_ns.max(1) as f64
    }
}

/// Histogram of nanoseconds from 10 ns to 10 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(10, 10_000_000_000, 3).expect("static histogram bounds are valid")
}

/// Where the random offsets fall: the whole target, block aligned to the I/O size.
struct Offsets {
    rng: SmallRng,
    slots: u64,
    bs_bytes: u64,
}

impl Offsets {
    fn new(capacity_bytes: u64, bs_bytes: u64, seed: u64) -> Result<Self> {
        let slots = capacity_bytes / bs_bytes;
        if slots == 0 {
            bail!("target of {capacity_bytes} bytes is smaller than one {bs_bytes}-byte I/O");
        }
        Ok(Offsets {
            rng: SmallRng::seed_from_u64(seed),
            slots,
            bs_bytes,
        })
    }

    fn next(&mut self) -> u64 {
        self.rng.gen_range(0..self.slots) * self.bs_bytes
    }
}

pub fn op_of(workload: Workload) -> Op {
    match workload {
        Workload::Randread => Op::Read,
        Workload::Randwrite => Op::Write { fua: false },
    }
}

/// Runs `case` on `dev` through aios, with `threads` threads, for `duration` after `warmup`.
pub fn run_aios<D: Device>(dev: &D, case: &Case, run: Run) -> Result<Sample> {
    let (completion, registered_buffers) = match case.stack {
        Stack::Aios {
            completion,
            registered_buffers,
        } => (completion, registered_buffers),
        Stack::AiosSync => (CompletionMode::Interrupt, true),
        Stack::KernelPread => bail!("run_aios needs an aios stack"),
    };
    let config = QueueConfig {
        depth: case.qd,
        completion,
        registered_buffers,
    };
    run_threads(case.threads, run, |thread, ready| {
        aios_thread(dev, case, config, run.thread_seed(thread), ready)
    })
}

/// Runs `case` on the kernel's `pread`/`pwrite` path against `path`.
pub fn run_kernel(path: &Path, capacity_bytes: u64, case: &Case, run: Run) -> Result<Sample> {
    if case.qd != 1 {
        bail!("the kernel's pread path is synchronous: QD1 only");
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(case.workload == Workload::Randwrite)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .with_context(|| format!("open {} with O_DIRECT", path.display()))?;
    run_threads(case.threads, run, |thread, ready| {
        kernel_thread(&file, capacity_bytes, case, run.thread_seed(thread), ready)
    })
}

/// The measured window of a run, fixed once every worker has finished its set-up (opened its
/// ring, mounted, allocated): a slow set-up must not eat into one thread's measured time.
pub(crate) struct Ready<'g> {
    barrier: &'g Barrier,
    window: &'g OnceLock<(Instant, Instant)>,
    run: Run,
    arrived: bool,
}

impl Ready<'_> {
    /// Waits until every worker is ready; returns the window `(start, deadline)`: warm up until
    /// `start`, count from `start`, stop at `deadline`.
    pub fn go(&mut self) -> (Instant, Instant) {
        if !self.arrived {
            self.arrived = true;
            self.barrier.wait();
        }
        *self.window.get_or_init(|| {
            let start = Instant::now() + self.run.warmup;
            (start, start + self.run.duration)
        })
    }
}

/// Starts `threads` workers, each calling [`Ready::go`] after its set-up and measuring in the
/// window it returns, and merges their samples.
pub(crate) fn run_threads<F>(threads: usize, run: Run, worker: F) -> Result<Sample>
where
    F: Fn(usize, &mut Ready) -> Result<(Histogram<u64>, u64, Instant)> + Sync,
{
    let barrier = Barrier::new(threads);
    let window = OnceLock::new();
    let results: Vec<Result<(Histogram<u64>, u64, Instant)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let worker = &worker;
                let mut ready = Ready {
                    barrier: &barrier,
                    window: &window,
                    run,
                    arrived: false,
                };
                s.spawn(move || {
                    let result = worker(t, &mut ready);
                    // A worker that failed before `go` still arrives, so the others finish.
                    ready.go();
                    result
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| bail!("benchmark thread panicked"))
            })
            .collect()
    });
    let mut latency_ns = new_histogram();
    let mut ops = 0;
    let mut end: Option<Instant> = None;
    for r in results {
        let (h, n, thread_end) = r?;
        latency_ns.add(&h).context("merge histograms")?;
        ops += n;
        end = end.max(Some(thread_end));
    }
    // Measured from the window's start to the last thread's last operation: the deadline, or
    // earlier when every thread ran out of work.
    let start = window.get().map(|&(start, _)| start);
    let elapsed = match (start, end) {
        (Some(start), Some(end)) => end.saturating_duration_since(start),
        _ => run.duration,
    };
    Ok(Sample {
        latency_ns,
        ops,
        elapsed_ns: elapsed.as_nanos() as u64,
    })
}

fn aios_thread<D: Device>(
    dev: &D,
    case: &Case,
    config: QueueConfig,
    seed: u64,
    ready: &mut Ready,
) -> Result<(Histogram<u64>, u64, Instant)> {
    let mut q = BlockQueue::open(dev, config).context("open queue")?;
    let pages = (case.bs_bytes / BLOCK_SIZE as u64) as u32;
    let mut idle: Vec<Buf> = Vec::with_capacity(usize::from(case.qd));
    for _ in 0..case.qd {
        let mut buf = dev.arena().alloc(pages).context("benchmark buffers")?;
        dev.arena().bytes_mut(&mut buf).fill(0xA5);
        idle.push(buf);
    }
    let mut offsets = Offsets::new(dev.info().capacity_bytes, case.bs_bytes, seed)?;
    let op = op_of(case.workload);
    let (start, deadline) = ready.go();
    let mut staged_at = vec![start; usize::from(case.qd)];
    let mut hist = new_histogram();
    let mut ops = 0u64;
    let mut measure = || -> Result<()> {
        loop {
            while let Some(buf) = idle.pop() {
                match q.stage(op, offsets.next(), [buf]) {
                    Ok(tag) => staged_at[usize::from(tag)] = Instant::now(),
                    Err(refused) => {
                        idle.extend(refused.bufs);
                        return Err(refused.error).context("stage");
                    }
                }
            }
            q.submit()?;
            q.wait(1)?;
            let now = Instant::now();
            while let Some(tag) = q.pop_done() {
                let mut done = q.finish(tag);
                idle.extend(done.bufs.drain(..));
                done.result.context("benchmark I/O failed")?;
                if now >= start {
                    hist.record((now - staged_at[usize::from(tag)]).as_nanos() as u64)
                        .ok();
                    ops += 1;
                }
            }
            if now >= deadline {
                return Ok(());
            }
        }
    };
    let result = measure();
    drain(&mut q, &mut idle);
    for buf in idle {
        dev.arena().free(buf);
    }
    result.map(|()| (hist, ops, deadline))
}

/// Waits for every request still in flight so their buffers can be freed.
fn drain<Q: aios_device::Queue>(q: &mut BlockQueue<Q>, idle: &mut Vec<Buf>) {
    while q.busy() > 0 {
        while let Some(tag) = q.pop_done() {
            idle.extend(q.finish(tag).bufs.drain(..));
        }
        if q.busy() > 0 && q.wait(1).is_err() {
            return;
        }
    }
}

fn kernel_thread(
    file: &std::fs::File,
    capacity_bytes: u64,
    case: &Case,
    seed: u64,
    ready: &mut Ready,
) -> Result<(Histogram<u64>, u64, Instant)> {
    let arena = Arena::new(case.bs_bytes as usize).context("kernel path buffer")?;
    let mut buf = arena.alloc_bytes(case.bs_bytes as usize)?;
    let bytes = arena.bytes_mut(&mut buf);
    bytes.fill(0xA5);
    let mut offsets = Offsets::new(capacity_bytes, case.bs_bytes, seed)?;
    let fd = file.as_raw_fd();
    let mut hist = new_histogram();
    let mut ops = 0u64;
    let (start, deadline) = ready.go();
    loop {
        let offset = offsets.next() as libc::off_t;
        let t0 = Instant::now();
        // SAFETY: `bytes` is a live, exclusively borrowed slice of `len` bytes for both calls.
        let rc = unsafe {
            match case.workload {
                Workload::Randread => {
                    libc::pread(fd, bytes.as_mut_ptr().cast(), bytes.len(), offset)
                }
                Workload::Randwrite => libc::pwrite(fd, bytes.as_ptr().cast(), bytes.len(), offset),
            }
        };
        let now = Instant::now();
        if rc != bytes.len() as isize {
            bail!(
                "kernel {} at {offset}: {}",
                case.workload.name(),
                std::io::Error::last_os_error()
            );
        }
        if now >= start {
            hist.record((now - t0).as_nanos() as u64).ok();
            ops += 1;
        }
        if now >= deadline {
            return Ok((hist, ops, deadline));
        }
    }
}
