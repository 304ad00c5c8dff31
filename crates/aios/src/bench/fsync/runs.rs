//! `aios bench fsync` runs: one case for a fixed time through aios's read-write mount or the
//! kernel's `pwrite` + `fsync`/`fdatasync`.

use super::*;
use crate::bench::runner::new_histogram;
use aios_device::Device;
use aios_fs::{MountOptions, RwFs, RwOptions};
use hdrhistogram::Histogram;
use rand::{rngs::SmallRng, Rng, SeedableRng};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

pub(super) fn run_case(setup: &Setup, case: &FsyncCase, run: Run) -> Result<RunOut> {
    let target = setup.target(case)?;
    match case.stack {
        FsyncStack::Aios(order) => {
            let options = RwOptions {
                mount: MountOptions {
                    completion: target.completion,
                    ..MountOptions::default()
                },
                order,
                ..RwOptions::default()
            };
            let device = target.take()?;
            let (result, device) =
                match device {
                    OpenDevice::Uring(d) => run_aios(d, options, case, setup, run)
                        .map(|(r, d)| (r, OpenDevice::Uring(d))),
                    OpenDevice::Emu(d) => {
                        run_aios(d, options, case, setup, run).map(|(r, d)| (r, OpenDevice::Emu(d)))
                    }
                    OpenDevice::Psync(d) => run_aios(d, options, case, setup, run)
                        .map(|(r, d)| (r, OpenDevice::Psync(d))),
                    OpenDevice::Null(d) => run_aios(d, options, case, setup, run)
                        .map(|(r, d)| (r, OpenDevice::Null(d))),
                }?;
            target.put_back(device);
            result
        }
        FsyncStack::Kernel => {
            let dir = target
                .kernel_dir
                .as_deref()
                .with_context(|| format!("no kernel files on {}", target.label))?;
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

/// The loop both stacks share: `write(offset)` durable, `restart()` empties the appended file.
/// Latency per write; the time spent restarting is taken off the run's elapsed time.
fn measure(
    case: &FsyncCase,
    setup: &Setup,
    run: Run,
    mut write: impl FnMut(u64) -> Result<()>,
    mut restart: impl FnMut() -> Result<()>,
) -> Result<(Sample, u64)> {
    let mut offsets = Offsets::new(case, setup.file_size, run.seed);
    let mut hist: Histogram<u64> = new_histogram();
    let (mut ops, mut writes) = (0u64, 0u64);
    let mut paused = Duration::ZERO;
    let start = Instant::now() + run.warmup;
    let deadline = start + run.duration;
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
    let elapsed = now.saturating_duration_since(start).saturating_sub(paused);
    let sample = Sample {
        latency_ns: hist,
        ops,
        elapsed_ns: elapsed.as_nanos() as u64,
    };
    Ok((sample, writes))
}

/// One aios run on `device`: mount, empty the appended file, measure, unmount. Once mounted,
/// the device comes back with the run's first error if any; a failed mount loses it (`mount`
/// takes it by value) and is the outer error.
fn run_aios<D: Device + 'static>(
    device: D,
    options: RwOptions,
    case: &FsyncCase,
    setup: &Setup,
    run: Run,
) -> Result<(Result<RunOut>, D)> {
    let mut fs = RwFs::mount(device, options).context("mount read-write")?;
    let path = format!("/{}", case.workload.file_name());
    let data = target::pattern(case.bs as usize);
    let result = (|| -> Result<RunOut> {
        if case.workload == FsyncWorkload::Append {
            fs.truncate(&path, 0)?;
        }
        let before = fs.stats();
        let fs = std::cell::RefCell::new(&mut fs);
        let (sample, writes) = measure(
            case,
            setup,
            run,
            |offset| {
                let mut fs = fs.borrow_mut();
                fs.write(&path, offset, &data)?;
                match case.workload {
                    FsyncWorkload::Append => fs.fsync(&path)?,
                    FsyncWorkload::Overwrite => fs.fdatasync(&path)?,
                }
                Ok(())
            },
            || Ok(fs.borrow_mut().truncate(&path, 0)?),
        )?;
        let after = fs.borrow().stats();
        let stats = after.since(&before);
        Ok(RunOut {
            sample,
            stats: Some(stats),
            writes,
        })
    })();
    let (device, unmounted) = fs.unmount();
    let result = match (result, unmounted) {
        (Err(e), _) => Err(e),
        (Ok(out), Ok(())) => Ok(out),
        (Ok(_), Err(e)) => Err(anyhow::Error::new(e).context("unmount")),
    };
    Ok((result, device))
}

pub(super) fn run_kernel(dir: &Path, setup: &Setup, case: &FsyncCase, run: Run) -> Result<RunOut> {
    let path = dir.join(case.workload.file_name());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    let what = case.stack.mode_name(case.workload);
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
    let data = target::pattern(case.bs as usize);
    let (sample, writes) = measure(
        case,
        setup,
        run,
        |offset| {
            file.write_all_at(&data, offset)
                .with_context(|| format!("pwrite {} at {offset}", path.display()))?;
            sync().with_context(|| format!("{what} {}", path.display()))
        },
        restart,
    )?;
    Ok(RunOut {
        sample,
        stats: None,
        writes,
    })
}
