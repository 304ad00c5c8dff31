//! `aios bench read` runs: one case for a fixed time through aios or the kernel, and the
//! separate breakdown runs.

use super::*;

pub(super) fn run_case(
    setup: &Setup,
    case: &ReadCase,
    run: Run,
    breakdown: Option<&Mutex<StageSums>>,
) -> Result<RunOut> {
    match case.stack {
        ReadStack::Aios { mode, completion } => {
            run_aios(setup, case, mode, completion, run, breakdown)
        }
        ReadStack::KernelBuffered | ReadStack::KernelDirect => run_kernel(setup, case, run),
    }
}

/// Random page-aligned offsets of `bs`-byte reads inside `region` bytes.
pub(super) struct Offsets {
    rng: SmallRng,
    slots: u64,
}

impl Offsets {
    fn new(region: u64, bs: u64, seed: u64) -> Offsets {
        Offsets {
            rng: SmallRng::seed_from_u64(seed),
            slots: (region.saturating_sub(bs) / PAGE + 1).max(1),
        }
    }

    fn next(&mut self) -> u64 {
        self.rng.gen_range(0..self.slots) * PAGE
    }
}

pub(super) fn run_aios(
    setup: &Setup,
    case: &ReadCase,
    mode: ReadMode,
    completion: CompletionMode,
    run: Run,
    breakdown: Option<&Mutex<StageSums>>,
) -> Result<RunOut> {
    let options = MountOptions {
        read_mode: mode,
        completion,
        queue_depth: 2,
        cache_pages: aios_cache_pages(setup),
        breakdown: breakdown.is_some(),
        ..MountOptions::default()
    };
    let fs = mount(&setup.image, options, case.threads)?;
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
    let sample = run_threads(case.threads, run, |t, start, deadline| {
        let mut io = fs.io()?;
        let file = fs.open(&mut io, ino)?;
        let mut buf = vec![0u8; case.bs as usize];
        let mut offsets = Offsets::new(region, case.bs, run.thread_seed(t));
        let mut hist = new_histogram();
        let mut ops = 0u64;
        let mut measuring = false;
        loop {
            let offset = offsets.next();
            let t0 = Instant::now();
            let n = fs.read(&mut io, &file, offset, &mut buf)?;
            let now = Instant::now();
            if n != buf.len() {
                bail!("short read at {offset}: {n} bytes");
            }
            if now >= start {
                if !measuring {
                    measuring = true;
                    io.reset_breakdown();
                }
                hist.record((now - t0).as_nanos() as u64).ok();
                ops += 1;
            }
            if now >= deadline {
                break;
            }
        }
        if let (Some(sums), Some(b)) = (breakdown, io.breakdown()) {
            if let Ok(mut sums) = sums.lock() {
                sums.add(b);
            }
        }
        Ok((hist, ops))
    })?;
    let after = fs.cache().stats();
    Ok(RunOut {
        sample,
        lookups: Some((after.hits - before.hits, after.misses - before.misses)),
        resident_end: None,
    })
}

/// The page-cache cap of aios's mounts: the default, or the hot set with room to spare.
pub(super) fn aios_cache_pages(setup: &Setup) -> usize {
    let hot_pages = (setup.hot_set / PAGE) as usize;
    aios_fs::mount::CACHE_PAGES_DEFAULT.max(hot_pages + 256)
}

pub(super) fn run_kernel(setup: &Setup, case: &ReadCase, run: Run) -> Result<RunOut> {
    let direct = case.stack == ReadStack::KernelDirect;
    let open = || -> Result<std::fs::File> {
        let mut o = std::fs::OpenOptions::new();
        o.read(true);
        if direct {
            o.custom_flags(libc::O_DIRECT);
        }
        o.open(&setup.data)
            .with_context(|| format!("open {}", setup.data.display()))
    };
    if !direct {
        let file = open()?;
        // SAFETY: fadvise on a descriptor we own; no memory is passed.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if rc != 0 {
            bail!(
                "posix_fadvise(DONTNEED): {}",
                std::io::Error::from_raw_os_error(rc)
            );
        }
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
    let sample = run_threads(case.threads, run, |t, start, deadline| {
        let file = open()?;
        let fd = file.as_raw_fd();
        let arena = Arena::new(case.bs as usize).context("kernel path buffer")?;
        let mut buf = arena.alloc_bytes(case.bs as usize)?;
        let bytes = arena.bytes_mut(&mut buf);
        let mut offsets = Offsets::new(region, case.bs, run.thread_seed(t));
        let mut hist = new_histogram();
        let mut ops = 0u64;
        loop {
            let offset = offsets.next() as libc::off_t;
            let t0 = Instant::now();
            // SAFETY: `bytes` is a live, exclusively borrowed slice of `len` bytes.
            let rc = unsafe { libc::pread(fd, bytes.as_mut_ptr().cast(), bytes.len(), offset) };
            let now = Instant::now();
            if rc != bytes.len() as isize {
                bail!("pread at {offset}: {}", std::io::Error::last_os_error());
            }
            if now >= start {
                hist.record((now - t0).as_nanos() as u64).ok();
                ops += 1;
            }
            if now >= deadline {
                return Ok((hist, ops));
            }
        }
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

/// Cold 4 KiB reads, one thread, with the breakdown recorder on, for every aios mode.
pub(super) fn breakdown_runs(
    setup: &Setup,
    duration: Duration,
    warmup: Duration,
) -> Result<Vec<Bar>> {
    let mut bars = Vec::new();
    for (i, stack) in AIOS_STACKS.iter().enumerate() {
        let ReadStack::Aios { mode, .. } = *stack else {
            continue;
        };
        let case = ReadCase {
            stack: *stack,
            cache: CacheState::Cold,
            bs: PAGE,
            threads: 1,
        };
        let sums = Mutex::new(StageSums::default());
        let run = Run {
            warmup,
            duration,
            seed: 0xB4EA_0000 + i as u64,
        };
        run_case(setup, &case, run, Some(&sums)).context("breakdown run")?;
        let sums = sums.into_inner().unwrap_or_default();
        bars.push((format!("aios {}", stack.mode_name()), mode, sums));
    }
    Ok(bars)
}
