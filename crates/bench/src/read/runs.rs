//! `aios bench read` runs: one case for a fixed time through aios or the kernel, and the
//! separate breakdown runs.

use super::*;

pub(super) fn run_case(
    setup: &Setup,
    case: &ReadCase,
    run: Run,
    breakdown: Option<&Mutex<StageSums>>,
) -> Result<RunOut> {
    let target = setup.target(case)?;
    match case.stack {
        ReadStack::Aios {
            mode,
            completion,
            mount,
        } => {
            let options = MountOptions {
                read_mode: mode,
                completion,
                queue_depth: 2,
                cache_pages: setup.cache_pages,
                breakdown: breakdown.is_some(),
                ..MountOptions::default()
            };
            match mount {
                Mount::Ro => {
                    let aios = AiosCase {
                        setup,
                        case,
                        options,
                        run,
                        breakdown,
                    };
                    target.with_device(setup, aios)
                }
                Mount::Rw => {
                    if breakdown.is_some() {
                        bail!("the read-write mount records no per-stage breakdown");
                    }
                    target.with_device(setup, RwCase::new(setup, case, options, run))
                }
            }
        }
        ReadStack::KernelBuffered | ReadStack::KernelDirect => {
            let data = target
                .kernel_data
                .as_deref()
                .with_context(|| format!("no kernel path on {}", target.label))?;
            run_kernel(data, setup, case, run)
        }
    }
}

/// Reads timed together. A hot read takes about 100 ns, and a pair of clock reads about 20 ns
/// on this machine kind: timing each read would add that to every stack's mean and shrink
/// their differences. Hot reads are therefore timed in batches (each read recorded as the
/// batch's mean; the distribution is of batch means). Cold reads (tens of us) are timed one by
/// one.
pub(super) const HOT_TIMING_BATCH: u64 = 16;

fn timing_batch(cache: CacheState) -> u64 {
    match cache {
        CacheState::Cold => 1,
        CacheState::Hot => HOT_TIMING_BATCH,
    }
}

fn record_batch(hist: &mut Histogram<u64>, elapsed: Duration, batch: u64) {
    let mean_ns = elapsed.as_nanos() as u64 / batch;
    hist.record_n(mean_ns.max(1), batch).ok();
}

/// Where one thread's reads fall.
///
/// - **cold**: every `bs`-aligned slot of the file at most once per run, in a seeded
///   pseudo-random order (an affine permutation of the slots), the threads of a run taking
///   disjoint shares. So no read of a cold run finds its page in any cache, aios's or the
///   kernel's (which starts each run empty, `DONTNEED`), however fast the device: on zram or
///   the emulated device a 1 s run would otherwise re-read much of the file. A thread that has
///   read its whole share stops early; IOPS count the time actually measured.
/// - **hot**: uniformly random 4 KiB-aligned offsets inside the hot set (repeats are the point).
pub(super) enum Offsets {
    Cold {
        slots: u64,
        /// Multiplier of the permutation, coprime with `slots`.
        a: u64,
        b: u64,
        /// Next index of this thread (advances by `step`, the thread count).
        i: u64,
        step: u64,
        bs: u64,
    },
    Hot {
        rng: SmallRng,
        slots: u64,
    },
}

impl Offsets {
    fn new(
        cache: CacheState,
        region: u64,
        bs: u64,
        seed: u64,
        thread: usize,
        threads: usize,
    ) -> Offsets {
        let mut rng = SmallRng::seed_from_u64(seed);
        match cache {
            CacheState::Cold => {
                let slots = (region / bs).max(1);
                let mut a = rng.gen_range(1..slots.max(2)) % slots;
                while gcd(a, slots) != 1 {
                    a = (a + 1) % slots;
                }
                Offsets::Cold {
                    slots,
                    a,
                    b: rng.gen_range(0..slots),
                    i: thread as u64,
                    step: threads.max(1) as u64,
                    bs,
                }
            }
            CacheState::Hot => Offsets::Hot {
                rng,
                slots: (region.saturating_sub(bs) / PAGE + 1).max(1),
            },
        }
    }

    /// The next offset; `None` when a cold thread has read its whole share.
    fn next(&mut self) -> Option<u64> {
        match self {
            Offsets::Cold {
                slots,
                a,
                b,
                i,
                step,
                bs,
            } => {
                if *i >= *slots {
                    return None;
                }
                let slot = ((u128::from(*a) * u128::from(*i) + u128::from(*b)) % u128::from(*slots))
                    as u64;
                *i += *step;
                Some(slot * *bs)
            }
            Offsets::Hot { rng, slots } => Some(rng.gen_range(0..*slots) * PAGE),
        }
    }
}

/// The seed of a thread's offsets: cold threads share the run's permutation (each takes its own
/// indices of it, so their pages are disjoint); hot threads draw independently.
fn offset_seed(cache: CacheState, run: Run, thread: usize) -> u64 {
    match cache {
        CacheState::Cold => run.seed,
        CacheState::Hot => run.thread_seed(thread),
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// What the measuring loop asks of a stack.
pub(super) enum Step {
    /// Read `bs` bytes at this offset.
    Read(u64),
    /// The batch just timed is counted (it ended inside the window): sent before it is
    /// recorded, so a stack can start its own counters with the window.
    Measured,
}

/// The measuring loop of one thread, the same for every stack: reads at the thread's offsets,
/// timed in batches (see [`HOT_TIMING_BATCH`]), counted from the window's start until its
/// deadline or the end of the thread's cold share. Returns the latencies, the reads counted
/// and when it stopped.
pub(super) fn timed_reads(
    case: &ReadCase,
    region: u64,
    run: Run,
    thread: usize,
    ready: &mut Ready,
    mut stack: impl FnMut(Step) -> Result<()>,
) -> Result<(Histogram<u64>, u64, Instant)> {
    let seed = offset_seed(case.cache, run, thread);
    let mut offsets = Offsets::new(case.cache, region, case.bs, seed, thread, case.threads);
    let mut hist = new_histogram();
    let mut ops = 0u64;
    let batch = timing_batch(case.cache);
    let (start, deadline) = ready.go();
    let mut now = Instant::now();
    'run: loop {
        let t0 = Instant::now();
        for _ in 0..batch {
            let Some(offset) = offsets.next() else {
                break 'run;
            };
            stack(Step::Read(offset))?;
        }
        now = Instant::now();
        if now >= start {
            stack(Step::Measured)?;
            record_batch(&mut hist, now - t0, batch);
            ops += batch;
        }
        if now >= deadline {
            break;
        }
    }
    Ok((hist, ops, now))
}

/// One aios run on the read-only mount, generic over the target's device.
struct AiosCase<'a> {
    setup: &'a Setup,
    case: &'a ReadCase,
    options: MountOptions,
    run: Run,
    breakdown: Option<&'a Mutex<StageSums>>,
}

impl AiosRun<RunOut> for AiosCase<'_> {
    fn run<D: Device + Sync + 'static>(self, device: D) -> Result<(RunOut, D)> {
        let AiosCase {
            setup,
            case,
            options,
            run,
            breakdown,
        } = self;
        let fs = Fs::mount(device, options).context("mount")?;
        let ino = {
            let mut io = fs.io()?;
            let ino = fs.lookup(&mut io, format!("/{DATA_NAME}"))?;
            if case.cache == CacheState::Hot {
                let file = fs.open(&mut io, ino)?;
                let mut buf = vec![0u8; FILL_BYTES];
                let mut off = 0;
                while off < setup.hot_set {
                    let n = fs.read(&mut io, &file, off, &mut buf)?;
                    if n == 0 {
                        break;
                    }
                    off += n as u64;
                }
            }
            ino
        };
        let before = fs.cache().stats();
        let region = setup.region(case.cache);
        let sample = run_threads(case.threads, run, |t, ready| {
            let mut io = fs.io()?;
            let file = fs.open(&mut io, ino)?;
            // Random reads, advised as such like the kernel's descriptors (see `run_kernel`).
            file.advise(aios_fs::Access::Random);
            let mut user = UserBuf::new(case.bs as usize)?;
            let buf = user.bytes();
            let mut measuring = false;
            let out = timed_reads(case, region, run, t, ready, |step| {
                match step {
                    Step::Read(offset) => {
                        let n = fs.read(&mut io, &file, offset, buf)?;
                        if n != buf.len() {
                            bail!("short read at {offset}: {n} bytes");
                        }
                    }
                    // The breakdown counts the measured window only.
                    Step::Measured if !measuring => {
                        measuring = true;
                        io.reset_breakdown();
                    }
                    Step::Measured => {}
                }
                Ok(())
            })?;
            if let (Some(sums), Some(b)) = (breakdown, io.breakdown()) {
                if let Ok(mut sums) = sums.lock() {
                    sums.add(b);
                }
            }
            Ok(out)
        })?;
        let after = fs.cache().stats();
        let out = RunOut {
            sample,
            lookups: Some((after.hits - before.hits, after.misses - before.misses)),
            resident_end: None,
        };
        Ok((out, fs.unmount()))
    }
}

/// Pages of each thread's pool and of the arena's headroom, beyond the cache.
const THREAD_PAGES: usize = 256;
const SPARE_PAGES: usize = 1024;

/// The page-cache cap of aios's mounts: the whole file if the arena can hold it, else as much
/// as fits. The kernel's page cache has no cap of its own here (it keeps every page a cold run
/// reads); a smaller aios cache would make aios's cold runs colder than the kernel's.
///
/// The read-write mount caps its cache at half the device's arena (commits need the rest,
/// `aios_fs::rw`); with it among the mounts every mount gets that cap, so the mounts read
/// through caches of one size. (At the largest arena, 1 GiB, that is 512 MiB: less than the
/// default 1 GiB file, which a cold run on a fast device may read more of than that in a run.)
pub(super) fn aios_cache_pages(setup: &Setup, threads: usize) -> usize {
    let file_pages = (setup.file_size / PAGE) as usize + THREAD_PAGES;
    let arena_pages = aios_device::arena::ARENA_BYTES_MAX / BLOCK_SIZE;
    let pools = threads * (MountOptions::default().pool_pages + THREAD_PAGES);
    let fits = arena_pages.saturating_sub(pools + SPARE_PAGES);
    let cap = if setup.has_rw() {
        fits.min(arena_pages / 2)
    } else {
        fits
    };
    file_pages.min(cap)
}

/// The arena of a target's device: the cache, every thread's pool and a margin, for the most
/// threads any case runs; with the read-write mount, at least twice the cache (its cap, see
/// [`aios_cache_pages`]).
pub(super) fn arena_bytes(setup: &Setup, threads_max: usize) -> usize {
    let pool_pages = MountOptions::default().pool_pages;
    let cache_pages = aios_cache_pages(setup, threads_max);
    let mut pages = cache_pages + threads_max * (pool_pages + THREAD_PAGES) + SPARE_PAGES;
    if setup.has_rw() {
        pages = pages.max(2 * cache_pages);
    }
    (pages * BLOCK_SIZE).clamp(64 << 20, aios_device::arena::ARENA_BYTES_MAX)
}

/// The caller's buffer of every stack in a run: page aligned, as fio's (`iomem_align`) and
/// O_DIRECT's must be, so no stack's copy-out pays for a buffer straddling cache lines (an
/// unaligned 4 KiB copy made a hit about a third slower).
pub(super) struct UserBuf {
    arena: Arena,
    buf: aios_device::Buf,
}

impl UserBuf {
    pub(super) fn new(bytes: usize) -> Result<UserBuf> {
        let arena = Arena::new(bytes.next_multiple_of(BLOCK_SIZE)).context("read buffer")?;
        let buf = arena.alloc_bytes(bytes)?;
        Ok(UserBuf { arena, buf })
    }

    pub(super) fn bytes(&mut self) -> &mut [u8] {
        self.arena.bytes_mut(&mut self.buf)
    }
}

pub(super) fn run_kernel(data: &Path, setup: &Setup, case: &ReadCase, run: Run) -> Result<RunOut> {
    let direct = case.stack == ReadStack::KernelDirect;
    let open = || -> Result<std::fs::File> {
        let mut o = std::fs::OpenOptions::new();
        o.read(true);
        if direct {
            o.custom_flags(libc::O_DIRECT);
        }
        o.open(data)
            .with_context(|| format!("open {}", data.display()))
    };
    if !direct {
        let file = open()?;
        fadvise(&file, libc::POSIX_FADV_DONTNEED, "DONTNEED")?;
        if case.cache == CacheState::Hot {
            let mut buf = vec![0u8; FILL_BYTES];
            let mut off = 0;
            while off < setup.hot_set {
                let n = std::os::unix::fs::FileExt::read_at(&file, &mut buf, off)?;
                if n == 0 {
                    break;
                }
                off += n as u64;
            }
        }
    }
    let region = setup.region(case.cache);
    let sample = run_threads(case.threads, run, |t, ready| {
        let file = open()?;
        if !direct {
            // Random reads: say so, as fio does for its random workloads (`fadvise_hint`) and
            // RocksDB for its table files. Otherwise the kernel's context readahead pulls in
            // neighbours of earlier reads, and a "cold" run turns warm on a fast device (on
            // zram, the whole file ended up cached within one 1 s run).
            fadvise(&file, libc::POSIX_FADV_RANDOM, "RANDOM")?;
        }
        let fd = file.as_raw_fd();
        let mut user = UserBuf::new(case.bs as usize)?;
        let bytes = user.bytes();
        timed_reads(case, region, run, t, ready, |step| {
            let Step::Read(offset) = step else {
                return Ok(());
            };
            // SAFETY: `bytes` is a live, exclusively borrowed slice of `len` bytes.
            let rc = unsafe {
                libc::pread(
                    fd,
                    bytes.as_mut_ptr().cast(),
                    bytes.len(),
                    offset as libc::off_t,
                )
            };
            if rc != bytes.len() as isize {
                bail!("pread at {offset}: {}", std::io::Error::last_os_error());
            }
            Ok(())
        })
    })?;
    let resident_end = if direct {
        None
    } else {
        resident_fraction(&open()?, setup.file_size)
    };
    Ok(RunOut {
        sample,
        lookups: None,
        resident_end,
    })
}

fn fadvise(file: &std::fs::File, advice: libc::c_int, name: &str) -> Result<()> {
    // SAFETY: fadvise on a descriptor we own; no memory is passed.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, advice) };
    if rc != 0 {
        bail!(
            "posix_fadvise({name}): {}",
            std::io::Error::from_raw_os_error(rc)
        );
    }
    Ok(())
}

/// Fraction of `file`'s first `len` bytes in the kernel's page cache (`mincore` over a
/// read-only mapping that is never touched).
pub(super) fn resident_fraction(file: &std::fs::File, len: u64) -> Option<f64> {
    let len = usize::try_from(len).ok()?;
    // SAFETY: a fresh read-only mapping of an open file; never dereferenced, unmapped below.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return None;
    }
    let pages = len.div_ceil(BLOCK_SIZE);
    let mut vec = vec![0u8; pages];
    // SAFETY: `addr..addr + len` is the mapping above; `vec` has one byte per 4 KiB page.
    let rc = unsafe { libc::mincore(addr, len, vec.as_mut_ptr()) };
    // SAFETY: unmaps exactly the mapping made above.
    unsafe { libc::munmap(addr, len) };
    (rc == 0).then(|| vec.iter().filter(|&&b| b & 1 != 0).count() as f64 / pages.max(1) as f64)
}

/// One breakdown bar: a label, the read mode and the stage sums.
pub(super) type Bar = (String, ReadMode, StageSums);

/// Cold 4 KiB reads, one thread, with the breakdown recorder on, for every aios mode of every
/// target, on the read-only mount (the read-write mount's contexts do not expose their
/// recorders).
pub(super) fn breakdown_runs(setup: &Setup, duration: Duration) -> Result<Vec<Bar>> {
    let mut bars = Vec::new();
    for (t, target) in setup.targets.iter().enumerate() {
        for (i, (mode, completion)) in target.aios_modes().into_iter().enumerate() {
            let stack = ReadStack::Aios {
                mode,
                completion,
                mount: Mount::Ro,
            };
            let case = ReadCase {
                target: t,
                stack,
                cache: CacheState::Cold,
                bs: PAGE,
                threads: 1,
            };
            let sums = Mutex::new(StageSums::default());
            let run = Run {
                warmup: Duration::ZERO,
                duration,
                seed: 0xB4EA_0000 + ((t as u64) << 8) + i as u64,
            };
            run_case(setup, &case, run, Some(&sums)).context("breakdown run")?;
            let sums = sums.into_inner().unwrap_or_default();
            let label = format!("{}: aios {}", target.label, stack.mode_name());
            bars.push((label, mode, sums));
        }
    }
    Ok(bars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cold_threads_read_every_slot_exactly_once_between_them() {
        let (region, bs, threads) = (1000 * PAGE, 2 * PAGE, 3);
        let mut seen = std::collections::HashMap::new();
        for t in 0..threads {
            let seed = offset_seed(
                CacheState::Cold,
                Run {
                    warmup: Duration::ZERO,
                    duration: Duration::ZERO,
                    seed: 42,
                },
                t,
            );
            let mut offsets = Offsets::new(CacheState::Cold, region, bs, seed, t, threads);
            while let Some(offset) = offsets.next() {
                assert!(offset.is_multiple_of(bs));
                assert!(offset + bs <= region);
                *seen.entry(offset).or_insert(0) += 1;
            }
        }
        assert_eq!(seen.len(), 500);
        assert!(seen.values().all(|&n| n == 1));
    }

    #[test]
    fn hot_offsets_stay_in_the_hot_set_and_repeat() {
        let mut offsets = Offsets::new(CacheState::Hot, 64 * PAGE, PAGE, 7, 0, 1);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let offset = offsets.next().unwrap();
            assert!(offset < 64 * PAGE && offset.is_multiple_of(PAGE));
            seen.insert(offset);
        }
        assert_eq!(seen.len(), 64);
    }
}
