//! `aios bench read` runs on the read-write mount: `RwFs` mounted afresh on the target's device,
//! each thread with its own `RwCtx` and handle of `/data`, reads by handle (`read_at`), the
//! handles closed and the mount unmounted at the end (its superblock written back clean).

use super::*;
use aios_fs::{OpenOptions, RwFs, RwOptions, RwShared};
use std::sync::atomic::{AtomicU64, Ordering};

/// One aios run on the read-write mount, generic over the target's device.
pub(super) struct RwCase<'a> {
    setup: &'a Setup,
    case: &'a ReadCase,
    options: RwOptions,
    run: Run,
}

impl<'a> RwCase<'a> {
    /// `mount`: the read order, completion mode and cache cap, as the read-only stack's. No
    /// periodic commit: a read-only workload has nothing to commit.
    pub(super) fn new(setup: &'a Setup, case: &'a ReadCase, mount: MountOptions, run: Run) -> Self {
        let options = RwOptions {
            mount,
            commit_interval: None,
            ..RwOptions::default()
        };
        RwCase {
            setup,
            case,
            options,
            run,
        }
    }
}

/// Page-cache counts of a run on the read-write mount, which does not expose its cache's
/// counters. Pages looked up: the pages the threads' reads asked for. Pages missed: the device
/// requests of the threads' contexts times the pages of one read, since a read's misses are one
/// request when its pages are contiguous on disk (a `bs`-aligned read of the benchmark's file
/// always is but where it crosses an extent's end, at most every 128 MiB). A thread's first
/// reads of the extent tree count as requests too; the ratio is capped at 1.
#[derive(Default)]
struct RwCounts {
    pages: AtomicU64,
    requests: AtomicU64,
}

impl RwCounts {
    /// (hits, misses) in pages.
    fn lookups(&self, pages_per_read: u64) -> (u64, u64) {
        let pages = self.pages.load(Ordering::Relaxed);
        let requests = self.requests.load(Ordering::Relaxed);
        let misses = requests.saturating_mul(pages_per_read).min(pages);
        (pages - misses, misses)
    }
}

impl AiosRun<RunOut> for RwCase<'_> {
    fn run<D: Device + Sync + 'static>(self, device: D) -> Result<(RunOut, D)> {
        let fs = RwFs::mount(device, self.options).context("mount read-write")?;
        // Unmounted whatever the run did, so the image is left clean.
        let measured = self.measure(fs.shared());
        let (device, unmounted) = fs.unmount();
        let out = measured?;
        unmounted.context("unmount read-write")?;
        Ok((out, device))
    }
}

impl RwCase<'_> {
    fn measure<D: Device + Sync>(&self, shared: &RwShared<D>) -> Result<RunOut> {
        let RwCase {
            setup, case, run, ..
        } = *self;
        let path = format!("/{DATA_NAME}");
        if case.cache == CacheState::Hot {
            let mut ctx = shared.ctx()?;
            let file = shared.open(&mut ctx, &path, OpenOptions::default())?;
            let mut buf = vec![0u8; FILL_BYTES];
            let mut off = 0;
            while off < setup.hot_set {
                let n = shared.read_at(&mut ctx, &file, off, &mut buf)?;
                if n == 0 {
                    break;
                }
                off += n as u64;
            }
            shared.close(&mut ctx, file)?;
        }
        let counts = RwCounts::default();
        let region = setup.region(case.cache);
        let pages_per_read = case.bs / PAGE;
        let sample = run_threads(case.threads, run, |t, ready| {
            let mut ctx = shared.ctx()?;
            let file = shared.open(&mut ctx, &path, OpenOptions::default())?;
            let mut user = UserBuf::new(case.bs as usize)?;
            let buf = user.bytes();
            let requests_before = ctx.read_stats().staged;
            let mut reads = 0u64;
            let out = timed_reads(case, region, run, t, ready, |step| {
                if let Step::Read(offset) = step {
                    let n = shared.read_at(&mut ctx, &file, offset, buf)?;
                    if n != buf.len() {
                        bail!("short read at {offset}: {n} bytes");
                    }
                    reads += 1;
                }
                Ok(())
            })?;
            let requests = ctx.read_stats().staged - requests_before;
            counts.requests.fetch_add(requests, Ordering::Relaxed);
            counts
                .pages
                .fetch_add(reads * pages_per_read, Ordering::Relaxed);
            shared.close(&mut ctx, file)?;
            Ok(out)
        })?;
        Ok(RunOut {
            sample,
            lookups: Some(counts.lookups(pages_per_read)),
            resident_end: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misses_count_each_request_as_one_read_and_never_exceed_the_lookups() {
        let counts = RwCounts::default();
        counts.pages.store(1600, Ordering::Relaxed);
        counts.requests.store(0, Ordering::Relaxed);
        assert_eq!(counts.lookups(16), (1600, 0));
        counts.requests.store(60, Ordering::Relaxed);
        assert_eq!(counts.lookups(16), (640, 960));
        // Metadata requests on top of one per read: capped at every page missing.
        counts.requests.store(103, Ordering::Relaxed);
        assert_eq!(counts.lookups(16), (0, 1600));
    }
}
