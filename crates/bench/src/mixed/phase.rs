//! `aios bench mixed` phases: readers and appenders started together behind one barrier and
//! measured in one window, each role's latencies and operation count kept apart.
//!
//! Every thread sets up (context, handle, emptied file), then waits at the barrier; the window
//! `(start, deadline)` is fixed when the last one arrives: warm up until `start`, count the
//! operations that start from then on, stop at the first one ending after `deadline`. Untimed
//! work inside the window (the kernel's eviction of the page just read, emptying a full
//! appended file) is taken off the thread's end, so a role's elapsed time is from `start` to
//! its latest thread's end.

use super::Phase;
use crate::runner::{new_histogram, Run, Sample};
use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use rand::{rngs::SmallRng, Rng, SeedableRng};
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};

/// What a thread does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Reader,
    Appender,
}

/// What one thread measured.
pub(super) struct ThreadOut {
    pub hist: Histogram<u64>,
    /// Operations counted in the window.
    pub ops: u64,
    /// Operations issued, warm-up included.
    pub issued: u64,
    /// Device read requests over the thread's run (aios readers; 0 elsewhere).
    pub requests: u64,
    /// The last operation's end, less the untimed work inside the window.
    pub end: Instant,
}

/// One role's result in a phase.
pub(super) struct RoleOut {
    pub sample: Sample,
    pub issued: u64,
    pub requests: u64,
}

/// A phase's result: each role that ran.
pub(super) struct PhaseOut {
    pub readers: Option<RoleOut>,
    pub appenders: Option<RoleOut>,
}

/// The measured window, fixed once every thread has finished its set-up.
pub(super) struct Gate<'g> {
    barrier: &'g Barrier,
    window: &'g OnceLock<(Instant, Instant)>,
    run: Run,
    arrived: bool,
}

impl Gate<'_> {
    /// Waits until every thread is ready; returns `(start, deadline)`.
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

/// Runs `phase`: `worker(role, index, gate)` on one thread per reader (index `0..R`) and per
/// appender (index `0..A`), all measured in one window.
pub(super) fn run_phase<F>(phase: Phase, run: Run, worker: F) -> Result<PhaseOut>
where
    F: Fn(Role, usize, &mut Gate) -> Result<ThreadOut> + Sync,
{
    let roles: Vec<(Role, usize)> = (0..phase.readers())
        .map(|i| (Role::Reader, i))
        .chain((0..phase.appenders()).map(|i| (Role::Appender, i)))
        .collect();
    let barrier = Barrier::new(roles.len());
    let window = OnceLock::new();
    let results: Vec<(Role, Result<ThreadOut>)> = std::thread::scope(|s| {
        let handles: Vec<_> = roles
            .iter()
            .map(|&(role, index)| {
                let worker = &worker;
                let mut gate = Gate {
                    barrier: &barrier,
                    window: &window,
                    run,
                    arrived: false,
                };
                s.spawn(move || {
                    let result =
                        worker(role, index, &mut gate).with_context(|| format!("{role:?} {index}"));
                    // A thread that failed before `go` still arrives, so the others finish.
                    gate.go();
                    result
                })
            })
            .collect();
        handles
            .into_iter()
            .zip(&roles)
            .map(|(h, &(role, _))| {
                let result = h
                    .join()
                    .unwrap_or_else(|_| bail!("benchmark thread panicked"));
                (role, result)
            })
            .collect()
    });
    let start = window.get().map(|&(start, _)| start);
    let mut readers = Vec::new();
    let mut appenders = Vec::new();
    for (role, result) in results {
        match role {
            Role::Reader => readers.push(result?),
            Role::Appender => appenders.push(result?),
        }
    }
    Ok(PhaseOut {
        readers: merge(readers, start, run)?,
        appenders: merge(appenders, start, run)?,
    })
}

/// One role's threads as one sample: elapsed from the window's start to the latest end.
fn merge(threads: Vec<ThreadOut>, start: Option<Instant>, run: Run) -> Result<Option<RoleOut>> {
    if threads.is_empty() {
        return Ok(None);
    }
    let mut latency_ns = new_histogram();
    let (mut ops, mut issued, mut requests) = (0, 0, 0);
    let mut end: Option<Instant> = None;
    for t in threads {
        latency_ns.add(&t.hist).context("merge histograms")?;
        ops += t.ops;
        issued += t.issued;
        requests += t.requests;
        end = end.max(Some(t.end));
    }
    let elapsed = match (start, end) {
        (Some(start), Some(end)) => end.saturating_duration_since(start),
        _ => run.duration,
    };
    Ok(Some(RoleOut {
        sample: Sample {
            latency_ns,
            ops,
            elapsed_ns: elapsed.as_nanos() as u64,
        },
        issued,
        requests,
    }))
}

/// A thread's clock: latencies of the timed operations in the window, and the untimed work in
/// it.
struct Meter {
    start: Instant,
    hist: Histogram<u64>,
    ops: u64,
    issued: u64,
    paused: Duration,
}

impl Meter {
    fn new(start: Instant) -> Meter {
        Meter {
            start,
            hist: new_histogram(),
            ops: 0,
            issued: 0,
            paused: Duration::ZERO,
        }
    }

    fn timed(&mut self, t0: Instant, now: Instant) {
        self.issued += 1;
        if t0 >= self.start {
            self.hist.record((now - t0).as_nanos() as u64).ok();
            self.ops += 1;
        }
    }

    fn untimed(&mut self, t0: Instant, now: Instant) {
        if t0 >= self.start {
            self.paused += now - t0;
        }
    }

    fn finish(self, now: Instant) -> ThreadOut {
        ThreadOut {
            hist: self.hist,
            ops: self.ops,
            issued: self.issued,
            requests: 0,
            end: now.checked_sub(self.paused).unwrap_or(now).max(self.start),
        }
    }
}

/// A reader: `read(offset)` timed at random 4 KiB-aligned offsets below `pages` * 4 KiB, then
/// `after(offset)` untimed (the kernel drops the page it read; aios does nothing).
pub(super) fn read_loop(
    window: (Instant, Instant),
    pages: u64,
    seed: u64,
    mut read: impl FnMut(u64) -> Result<()>,
    mut after: impl FnMut(u64) -> Result<()>,
) -> Result<ThreadOut> {
    let (start, deadline) = window;
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut meter = Meter::new(start);
    let mut now = Instant::now();
    while now < deadline {
        let offset = rng.gen_range(0..pages.max(1)) * super::IO_BYTES;
        let t0 = Instant::now();
        read(offset)?;
        now = Instant::now();
        meter.timed(t0, now);
        after(offset)?;
        let t1 = now;
        now = Instant::now();
        meter.untimed(t1, now);
    }
    Ok(meter.finish(now))
}

/// An appender: `append(offset)` (4 KiB at the end, then fsync) timed; when the file would
/// pass `limit_bytes`, `restart()` empties it, untimed.
pub(super) fn append_loop(
    window: (Instant, Instant),
    limit_bytes: u64,
    mut append: impl FnMut(u64) -> Result<()>,
    mut restart: impl FnMut() -> Result<()>,
) -> Result<ThreadOut> {
    let (start, deadline) = window;
    let mut meter = Meter::new(start);
    let mut end_bytes = 0u64;
    let mut now = Instant::now();
    while now < deadline {
        if end_bytes + super::IO_BYTES > limit_bytes {
            let t0 = Instant::now();
            restart()?;
            now = Instant::now();
            meter.untimed(t0, now);
            end_bytes = 0;
            continue;
        }
        let t0 = Instant::now();
        append(end_bytes)?;
        now = Instant::now();
        meter.timed(t0, now);
        end_bytes += super::IO_BYTES;
    }
    Ok(meter.finish(now))
}
