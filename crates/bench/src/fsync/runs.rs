//! `aios bench fsync` runs: one case for a fixed time through aios's read-write mount or the
//! kernel's `pwrite` + `fsync`/`fdatasync`, on one thread or several.
//!
//! Each thread measures with [`measure`] in a window `(start, deadline)`: warm up until `start`,
//! count the writes that start from then on, stop at the first write ending after `deadline`.
//! The time a thread spends emptying its appended file is taken off its end, so a run's elapsed
//! time is from `start` to the latest thread's end.

use super::*;
use crate::runner::{new_histogram, run_threads};
use crate::target::{pattern, DeviceRun};
use aios_device::{CompletionMode, Device};
use aios_fs::{MountOptions, RwFs, RwOptions};
use hdrhistogram::Histogram;
use rand::{rngs::SmallRng, Rng, SeedableRng};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

pub(super) fn run_case(setup: &Setup, case: &FsyncCase, run: Run) -> Result<RunOut> {
    let target = setup.target(case)?;
    match case.stack {
        FsyncStack::Aios { order, polled } => {
            let options = RwOptions {
                mount: MountOptions {
                    completion: if polled {
                        CompletionMode::Poll
                    } else {
                        target.devices.completion
                    },
                    ..MountOptions::default()
                },
                order,
                ..RwOptions::default()
            };
            target.devices.run(AiosRun {
                options,
                case,
                setup,
                run,
            })?
        }
        FsyncStack::Kernel | FsyncStack::KernelImg => {
            let dir = target
                .dir_of(case.stack)
                .with_context(|| format!("no kernel files on {}", target.label()))?;
            run_kernel(dir, setup, case, run)
        }
    }
}

/// Where each write of a run goes, and whether the file must start over first.
struct Offsets {
    workload: FsyncWorkload,
    rng: SmallRng,
    /// Next append offset.
    end: u64,
    file_size: u64,
    bs: u64,
}

enum Next {
    At(u64),
    /// The appended file is full: truncate it to empty (untimed), then write at 0.
    Restart,
}

impl Offsets {
    fn new(case: &FsyncCase, file_size: u64, seed: u64) -> Offsets {
        Offsets {
            workload: case.workload,
            rng: SmallRng::seed_from_u64(seed),
            end: 0,
            file_size,
            bs: case.bs,
        }
    }

    fn next(&mut self) -> Next {
        match self.workload {
            FsyncWorkload::Append => {
                if self.end + self.bs > self.file_size {
                    self.end = 0;
                    return Next::Restart;
                }
                let at = self.end;
                self.end += self.bs;
                Next::At(at)
            }
            FsyncWorkload::Overwrite => {
                Next::At(self.rng.gen_range(0..self.file_size / self.bs) * self.bs)
            }
        }
    }
}

/// What one thread measured.
struct ThreadOut {
    hist: Histogram<u64>,
    /// Writes counted in the window.
    ops: u64,
    /// Writes issued, warm-up included.
    writes: u64,
    /// The last write's end, less the time spent restarting the appended file in the window.
    end: Instant,
}

/// The loop every stack and thread shares: `write(offset)` durable, `restart()` empties the
/// appended file. Latency per write, counted from `window.0` until `window.1`.
fn measure(
    mut offsets: Offsets,
    window: (Instant, Instant),
    mut write: impl FnMut(u64) -> Result<()>,
    mut restart: impl FnMut() -> Result<()>,
) -> Result<ThreadOut> {
    let (start, deadline) = window;
    let mut hist: Histogram<u64> = new_histogram();
    let (mut ops, mut writes) = (0u64, 0u64);
    let mut paused = Duration::ZERO;
    let mut now = Instant::now();
    while now < deadline {
        let offset = match offsets.next() {
            Next::At(offset) => offset,
            Next::Restart => {
                let t0 = Instant::now();
                restart()?;
                now = Instant::now();
                if t0 >= start {
                    paused += now - t0;
                }
                continue;
            }
        };
        let t0 = Instant::now();
        write(offset)?;
        now = Instant::now();
        writes += 1;
        if t0 >= start {
            hist.record((now - t0).as_nanos() as u64).ok();
            ops += 1;
        }
    }
    let end = now.checked_sub(paused).unwrap_or(now).max(start);
    Ok(ThreadOut {
        hist,
        ops,
        writes,
        end,
    })
}

/// One aios run of a case, on whichever device its target holds.
struct AiosRun<'a> {
    options: RwOptions,
    case: &'a FsyncCase,
    setup: &'a Setup,
    run: Run,
}

impl DeviceRun for AiosRun<'_> {
    type Out = Result<RunOut>;

    fn run<D: Device + 'static>(self, device: D) -> Result<(Result<RunOut>, D)> {
        run_aios(device, self.options, self.case, self.setup, self.run)
    }
}

/// One aios run on `device`: mount, measure, unmount. Once mounted, the device comes back with
/// the run's first error if any; a failed mount loses it (`mount` takes it by value) and is the
/// outer error.
///
/// Every worker of [`run_threads`] gets its own context on the shared mount
/// ([`aios_fs::RwShared::ctx`]), opens its own file and writes it by handle: `write_at` then
/// `fsync` (append) or `fdatasync` (overwrite), as the kernel's rows do with a descriptor;
/// concurrent fsyncs share commits.
fn run_aios<D: Device + 'static>(
    device: D,
    options: RwOptions,
    case: &FsyncCase,
    setup: &Setup,
    run: Run,
) -> Result<(Result<RunOut>, D)> {
    let fs = RwFs::mount(device, options).context("mount read-write")?;
    let data = pattern(case.bs as usize);
    let shared = fs.shared();
    let result = (|| -> Result<RunOut> {
        let before = shared.stats();
        let writes = std::sync::atomic::AtomicU64::new(0);
        let sample = run_threads(case.threads, run, |t, ready| {
            let mut ctx = shared.ctx()?;
            let path = format!("/{}", case.workload.file_name(t));
            // A handle, as the kernel's rows use a descriptor: no path lookup per write.
            let file = shared.open(&mut ctx, &path, aios_fs::OpenOptions::default())?;
            if case.workload == FsyncWorkload::Append {
                shared.truncate(&mut ctx, &path, 0)?;
                shared.fsync_file(&mut ctx, &file)?;
            }
            let ctx = std::cell::RefCell::new(ctx);
            let offsets = Offsets::new(case, setup.file_size, run.thread_seed(t));
            let out = measure(
                offsets,
                ready.go(),
                |offset| {
                    let ctx = &mut *ctx.borrow_mut();
                    shared.write_at(ctx, &file, offset, &data)?;
                    match case.workload {
                        FsyncWorkload::Append => shared.fsync_file(ctx, &file)?,
                        FsyncWorkload::Overwrite => shared.fdatasync_file(ctx, &file)?,
                    }
                    Ok(())
                },
                || {
                    let ctx = &mut *ctx.borrow_mut();
                    shared.truncate(ctx, &path, 0)?;
                    Ok(shared.fsync_file(ctx, &file)?)
                },
            );
            let mut ctx = ctx.into_inner();
            shared.close(&mut ctx, file)?;
            let out = out?;
            writes.fetch_add(out.writes, std::sync::atomic::Ordering::Relaxed);
            Ok((out.hist, out.ops, out.end))
        })?;
        let stats = shared.stats().since(&before);
        let writes = writes.into_inner();
        Ok(RunOut {
            sample,
            stats: Some(stats),
            writes,
        })
    })();
    Ok(crate::target::unmount_after(fs, result))
}

/// The kernel's run: every thread opens its own file in `dir`, empties it if it appends, then
/// writes it with `pwrite` + `fsync`/`fdatasync` in the shared window.
pub(super) fn run_kernel(dir: &Path, setup: &Setup, case: &FsyncCase, run: Run) -> Result<RunOut> {
    let what = case.stack.mode_name(case.workload);
    let data = pattern(case.bs as usize);
    let sample = run_threads(case.threads, run, |t, ready| {
        let path = dir.join(case.workload.file_name(t));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("open {}", path.display()))?;
        // `sync_all` is fsync(2), `sync_data` fdatasync(2).
        let sync = || match case.workload {
            FsyncWorkload::Append => file.sync_all(),
            FsyncWorkload::Overwrite => file.sync_data(),
        };
        let restart = || -> Result<()> {
            file.set_len(0)
                .and_then(|()| file.sync_all())
                .with_context(|| format!("truncate and fsync {}", path.display()))
        };
        if case.workload == FsyncWorkload::Append {
            restart()?;
        }
        let offsets = Offsets::new(case, setup.file_size, run.thread_seed(t));
        let out = measure(
            offsets,
            ready.go(),
            |offset| {
                file.write_all_at(&data, offset)
                    .with_context(|| format!("pwrite {} at {offset}", path.display()))?;
                sync().with_context(|| format!("{what} {}", path.display()))
            },
            restart,
        )?;
        Ok((out.hist, out.ops, out.end))
    })?;
    let writes = sample.ops;
    Ok(RunOut {
        sample,
        stats: None,
        writes,
    })
}
