//! `aios bench read`: random file reads through aios's ext4 read path next to the kernel's.
//!
//! # Setup
//! A source directory holds one file of `--file-size` random bytes; an ext4 image is made from
//! it with `mke2fs -d` (the features of `aios mkfs`). Both are reused while they match. aios
//! reads `/data` in the image through the target's device (`target`: io_uring with O_DIRECT
//! on the image file, the emulated device, or zram); the kernel reads the *same bytes* from
//! the source file on the host file system (on zram, from its own mount of the image).
//!
//! # Stacks
//! - aios `sync` (vanilla order, interrupt completions), `async` (AIOS order, interrupts) and
//!   `async+poll` (AIOS order, polling), each on the mounts of `--mount`:
//!   - `rw` (the default): the read-write mount, `RwFs`, the one stack the application sees.
//!     Each thread has its own `RwCtx` and opens `/data` once (`RwShared::open`); reads are
//!     `RwShared::read_at` by handle. The mount takes the read-only stack's `MountOptions`
//!     (order, completion, cache cap) and no periodic commit; a read-only workload commits
//!     nothing (`target` says what the mount itself writes).
//!   - `ro`: the read-only mount, `Fs`, kept for comparison: each thread has its own `IoCtx`,
//!     reads are `Fs::read` with the handle advised `Random` (random reads never look
//!     sequential to the read-write mount's readahead either).
//!
//!   Every run mounts the image afresh, so its page cache starts cold. With both mounts the
//!   table's stack column names the mount (`aios ro`, `aios rw`), both get the read-write
//!   mount's cache cap (`aios_cache_pages`), and every `--json` record of aios carries
//!   `mount`.
//! - kernel `buffered`: `pread` on the source file after `posix_fadvise(DONTNEED)` at the start
//!   of every run; kernel `direct`: `pread` on an `O_DIRECT` descriptor (cold only: it has no
//!   cache to be hot in).
//!
//! # Workloads
//! - `randread-cold`: random 4 KiB-aligned offsets over the whole file.
//! - `randread-hot`: the first `--hot-set` bytes are read once (not timed), then random reads
//!   fall inside them only.
//!
//! Every thread has its own context (aios) or descriptor (kernel). Cases are interleaved and
//! rotated across repetitions with distinct offset seeds, like `aios bench device`; the table,
//! `--json` records and `vs kern` (against kernel *buffered* of the same shape) are the device
//! benchmark's. The page-cache miss ratio is the cache's own count on the read-only mount and
//! an estimate from device requests on the read-write mount, whose cache counters are not
//! exposed (`rw::RwCounts`). `--svg DIR` adds `breakdown.svg` (per-stage mean ns per miss,
//! from a separate run with the breakdown recorder on, on the read-only mount whatever
//! `--mount` says: the read-write mount's contexts do not expose their recorders),
//! `latency-cdf.svg` and `iops-threads.svg`.

mod runs;
mod rw;
mod setup;
mod stack;
pub(crate) mod svg;
mod target;

use crate::device::progress_bar;
use crate::report::{self, Record, Shape};
use crate::runner::{new_histogram, run_threads, Ready, Run, Sample};
use crate::scratch;
use aios_device::{Arena, CompletionMode, Device, TargetOptions, BLOCK_SIZE, IO_BYTES_MAX};
use aios_device_uring::{UringConfig, UringDevice};
use aios_fs::mkfs::make_ext4;
use aios_fs::{Fs, MountOptions, ReadMode, Stage};
use aios_spec::size::{parse_size, show_size};
use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use rand::{rngs::SmallRng, Rng, SeedableRng};
use runs::*;
use rw::*;
use setup::*;
pub use stack::Mount;
use stack::*;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use svg::*;
pub use target::TargetSpec;
use target::*;

/// Name of the data file in the source directory and in the image.
const DATA_NAME: &str = "data";
/// Bytes per read while warming the hot set.
const FILL_BYTES: usize = 128 * 1024;
const PAGE: u64 = BLOCK_SIZE as u64;

#[derive(Debug, Clone, clap::Args)]
pub struct ReadArgs {
    /// Size of the data file read by every stack.
    #[arg(long, default_value = "1G", value_parser = parse_size)]
    pub file_size: u64,
    /// The ext4 image aios reads (made, or reused when it matches).
    #[arg(long, default_value = "aios-read-bench.img")]
    pub image: PathBuf,
    /// The source directory of the image; the kernel reads its data file.
    #[arg(long, default_value = "aios-read-bench.src")]
    pub src: PathBuf,
    /// Where aios reads the image: host (io_uring on the image file; the kernel reads the source
    /// file), emu:PRESET (the emulated device, image in RAM), zram (the image on /dev/zram0, the
    /// kernel mounts it; needs root and an unused zram0, else skipped).
    #[arg(long, value_delimiter = ',', default_value = "host,emu:ull,zram")]
    pub target: Vec<TargetSpec>,
    /// Cache states: cold (random over the whole file), hot (random inside --hot-set; on the
    /// first target only: a hit never reaches the device).
    #[arg(long, value_delimiter = ',', default_value = "cold,hot")]
    pub cache: Vec<CacheState>,
    /// Bytes at the start of the file read first and then hit by the hot workload. The default
    /// fits a core's L2 cache, so hits measure the software path of each stack; larger sets add
    /// the same memory traffic to both (try 16M).
    #[arg(long, default_value = "512K", value_parser = parse_size)]
    pub hot_set: u64,
    /// Read sizes, 4k to 128k.
    #[arg(long, value_delimiter = ',', default_value = "4k", value_parser = parse_size)]
    pub bs: Vec<u64>,
    /// Thread counts, each thread with its own I/O context or descriptor.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub threads: Vec<usize>,
    /// Measured seconds per case and repetition.
    #[arg(long, default_value = "1.0")]
    pub seconds: f64,
    /// Repetitions, interleaved across cases.
    #[arg(long, default_value = "3")]
    pub reps: usize,
    /// Also write the results as JSON, one record per case.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also draw breakdown.svg, latency-cdf.svg and iops-threads.svg into this directory.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// The mounts each aios stack reads through: rw (the read-write mount, the one stack),
    /// ro (the read-only mount, for comparison). With both, the table's stack column says
    /// which (`aios ro`, `aios rw`) and both mounts get the same page-cache cap.
    #[arg(long, value_delimiter = ',', default_value = "rw")]
    pub mount: Vec<Mount>,
}

impl ReadArgs {
    /// Every option at its default, as `aios bench read` without options.
    pub fn defaults() -> ReadArgs {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            args: ReadArgs,
        }
        <Only as clap::Parser>::parse_from(["read"]).args
    }
}

/// Whether the reads find their pages cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CacheState {
    Cold,
    Hot,
}

impl CacheState {
    fn workload(self) -> &'static str {
        match self {
            CacheState::Cold => "randread-cold",
            CacheState::Hot => "randread-hot",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct ReadCase {
    /// Index into `Setup::targets`.
    target: usize,
    stack: ReadStack,
    cache: CacheState,
    bs: u64,
    threads: usize,
}

/// Where the files are, how big the regions read are, and the prepared targets.
struct Setup {
    image: PathBuf,
    data: PathBuf,
    file_size: u64,
    hot_set: u64,
    /// The page-cache cap of every aios mount (see `aios_cache_pages`).
    cache_pages: usize,
    /// The aios mounts requested, each once, in `--mount` order.
    mounts: Vec<Mount>,
    targets: Vec<Target>,
}

impl Setup {
    /// Whether the table names each aios stack's mount (more than one is measured).
    fn mounts_shown(&self) -> bool {
        self.mounts.len() > 1
    }

    fn stack_name(&self, stack: ReadStack) -> &'static str {
        stack.stack_name(self.mounts_shown())
    }

    fn has_rw(&self) -> bool {
        self.mounts.contains(&Mount::Rw)
    }

    fn target(&self, case: &ReadCase) -> Result<&Target> {
        self.targets
            .get(case.target)
            .context("case names a target that was not prepared")
    }

    fn region(&self, cache: CacheState) -> u64 {
        match cache {
            CacheState::Cold => self.file_size,
            CacheState::Hot => self.hot_set,
        }
    }
}

/// Per-stage sums of the breakdown recorders of every thread of a run.
#[derive(Debug, Clone, Default)]
pub struct StageSums {
    totals_ns: [u64; Stage::ALL.len()],
    misses: u64,
    critical_path_ns: u64,
}

impl StageSums {
    fn add(&mut self, b: &aios_fs::Breakdown) {
        for (total, stage) in self.totals_ns.iter_mut().zip(Stage::ALL) {
            *total += b.total_ns(stage);
        }
        self.misses += b.misses;
        self.critical_path_ns += b.critical_path_ns;
    }

    /// Mean nanoseconds per miss run spent in `stage`.
    fn per_miss(&self, stage: Stage) -> f64 {
        let i = Stage::ALL.iter().position(|&s| s == stage).unwrap_or(0);
        self.totals_ns.get(i).copied().unwrap_or(0) as f64 / self.misses.max(1) as f64
    }

    fn critical_per_miss(&self) -> f64 {
        self.critical_path_ns as f64 / self.misses.max(1) as f64
    }
}

/// What one run produced beyond its latencies.
struct RunOut {
    sample: Sample,
    /// (hits, misses) of the page-cache lookups during the run (aios only).
    lookups: Option<(u64, u64)>,
    /// Fraction of the file in the kernel's page cache when the run ended (kernel buffered).
    resident_end: Option<f64>,
}

fn validate(args: &ReadArgs) -> Result<()> {
    crate::check_run_args(&args.bs, args.reps, args.seconds)?;
    if args.threads.iter().any(|&t| t == 0 || t > 64) {
        bail!("threads must be 1..=64");
    }
    if args.file_size < IO_BYTES_MAX as u64 || !args.file_size.is_multiple_of(PAGE) {
        bail!("--file-size must be a multiple of 4096 of at least 128K");
    }
    if args.cache.is_empty()
        || args.bs.is_empty()
        || args.threads.is_empty()
        || args.mount.is_empty()
    {
        bail!("--cache, --bs, --threads and --mount need at least one value");
    }
    Ok(())
}

/// Runs the file-read benchmark and prints the table; returns the records.
pub fn run(args: ReadArgs) -> Result<Vec<Record>> {
    validate(&args)?;
    let mut setup = prepare(&args)?;
    let threads_max = args.threads.iter().copied().max().unwrap_or(1);
    setup.cache_pages = aios_cache_pages(&setup, threads_max);
    setup.targets = prepare_targets(&args.target, &setup, arena_bytes(&setup, threads_max))?;
    let cases = matrix(&args, &setup.targets);
    let mut samples: Vec<Vec<Sample>> = cases.iter().map(|_| Vec::new()).collect();
    let mut lookups: Vec<(u64, u64)> = vec![(0, 0); cases.len()];
    let mut resident: Vec<Vec<f64>> = cases.iter().map(|_| Vec::new()).collect();
    let progress = progress_bar((cases.len() * args.reps) as u64);
    let duration = Duration::from_secs_f64(args.seconds);
    let warmup = duration.mul_f64(0.1).max(Duration::from_millis(20));
    for rep in 0..args.reps {
        for k in 0..cases.len() {
            let i = (k + rep * 7) % cases.len();
            let case = &cases[i];
            progress.set_message(describe(&setup, case));
            let run = Run {
                // A cold run reads every page at most once (see `Offsets`): a warm-up would only
                // use up pages. The ring and the mount are set up before the window opens.
                warmup: match case.cache {
                    CacheState::Cold => Duration::ZERO,
                    CacheState::Hot => warmup,
                },
                duration,
                seed: ((rep as u64) << 32) | i as u64,
            };
            let out = run_case(&setup, case, run, None).with_context(|| describe(&setup, case))?;
            if let Some((h, m)) = out.lookups {
                lookups[i].0 += h;
                lookups[i].1 += m;
            }
            resident[i].extend(out.resident_end);
            samples[i].push(out.sample);
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    let mut records: Vec<Record> = cases
        .iter()
        .zip(&samples)
        .zip(&lookups)
        .map(|((case, s), &(hits, misses))| {
            let target = &setup.targets[case.target];
            let shape = Shape {
                device: target.label.clone(),
                stack: setup.stack_name(case.stack),
                mode: case.stack.mode_name(),
                workload: case.cache.workload(),
                bs: case.bs,
                threads: case.threads,
                qd: 1,
            };
            let mut r = report::record_of(shape, s, target.device_time_ns(case.bs));
            if matches!(case.stack, ReadStack::Aios { .. }) && hits + misses > 0 {
                r.miss_ratio = Some(misses as f64 / (hits + misses) as f64);
            }
            r
        })
        .collect();
    report::compare_with(&mut records, |r| {
        r.stack == "kernel" && r.mode == "buffered"
    });
    print!("{}", report::table(&records));
    print_miss_ratios(&records);
    for (case, fractions) in cases.iter().zip(&resident) {
        if let Some(max) = fractions.iter().copied().reduce(f64::max) {
            let aios_pages = setup.cache_pages;
            println!(
                "  kernel buffered {} {} {} thr{}: {:.1}% of the file in its page cache at run \
                 end (aios's cache cap: {} pages, {:.1}%)",
                setup.targets[case.target].label,
                case.cache.workload(),
                show_size(case.bs),
                case.threads,
                max * 100.0,
                aios_pages,
                aios_pages as f64 * PAGE as f64 * 100.0 / setup.file_size as f64
            );
        }
    }
    if let Some(path) = &args.json {
        let with_mounts: Vec<MountRecord> = records
            .iter()
            .zip(&cases)
            .map(|(record, case)| MountRecord {
                record,
                mount: case.stack.mount().map(Mount::name),
            })
            .collect();
        let json = serde_json::to_string_pretty(&with_mounts)?;
        std::fs::write(path, json).with_context(|| format!("write {}", path.display()))?;
    }
    if let Some(dir) = &args.svg {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let bars = breakdown_runs(&setup, duration)?;
        print_breakdown(&bars);
        let path = dir.join("breakdown.svg");
        breakdown_svg(&path, &bars).map_err(|e| anyhow::anyhow!("draw {}: {e}", path.display()))?;
        let path = dir.join("latency-cdf.svg");
        let hists: Vec<(String, Histogram<u64>)> = cases
            .iter()
            .zip(&samples)
            .map(|(c, s)| {
                let mut all = new_histogram();
                for x in s {
                    all.add(&x.latency_ns).ok();
                }
                (
                    format!(
                        "{} {} {} {} {} thr{}",
                        setup.targets[c.target].label,
                        setup.stack_name(c.stack),
                        c.stack.mode_name(),
                        c.cache.workload(),
                        show_size(c.bs),
                        c.threads
                    ),
                    all,
                )
            })
            .collect();
        latency_cdf_svg(&path, &hists)
            .map_err(|e| anyhow::anyhow!("draw {}: {e}", path.display()))?;
        let path = dir.join("iops-threads.svg");
        iops_svg(&path, &records).map_err(|e| anyhow::anyhow!("draw {}: {e}", path.display()))?;
        eprintln!("aios: plots written to {}", dir.display());
    }
    Ok(records)
}

/// A `--json` record: the report's fields and, for aios, the mount read through.
#[derive(serde::Serialize)]
struct MountRecord<'a> {
    #[serde(flatten)]
    record: &'a Record,
    #[serde(skip_serializing_if = "Option::is_none")]
    mount: Option<&'static str>,
}

fn print_miss_ratios(records: &[Record]) {
    let with: Vec<&Record> = records.iter().filter(|r| r.miss_ratio.is_some()).collect();
    if with.is_empty() {
        return;
    }
    println!(
        "aios page-cache miss ratio (lookups that missed, warm-up included; on the read-write \
         mount estimated from its device requests):"
    );
    for r in with {
        println!(
            "  {:<10} {:<7} {:<10} {:<13} {:>5} thr{:<2} {:.4}",
            r.device,
            r.stack,
            r.mode,
            r.workload,
            show_size(r.bs),
            r.threads,
            r.miss_ratio.unwrap_or(0.0)
        );
    }
    println!(
        "  kernel buffered: no per-lookup counts; each run starts with its page cache emptied \
         (DONTNEED), reads advised RANDOM; the file's share in its page cache at run end:"
    );
}

fn matrix(args: &ReadArgs, targets: &[Target]) -> Vec<ReadCase> {
    let mounts = setup_mounts(args);
    let mut cases = Vec::new();
    for &cache in &args.cache {
        for (t, target) in targets.iter().enumerate() {
            if cache == CacheState::Hot && t > 0 {
                continue;
            }
            let mut stacks: Vec<ReadStack> = target
                .aios_modes()
                .into_iter()
                .flat_map(|(mode, completion)| {
                    mounts.iter().map(move |&mount| ReadStack::Aios {
                        mode,
                        completion,
                        mount,
                    })
                })
                .collect();
            if target.kernel_data.is_some() {
                stacks.push(ReadStack::KernelBuffered);
                if cache == CacheState::Cold {
                    stacks.push(ReadStack::KernelDirect);
                }
            }
            for stack in stacks {
                for &bs in &args.bs {
                    for &threads in &args.threads {
                        cases.push(ReadCase {
                            target: t,
                            stack,
                            cache,
                            bs,
                            threads,
                        });
                    }
                }
            }
        }
    }
    cases
}

/// `--mount` without repeats, in its order.
fn setup_mounts(args: &ReadArgs) -> Vec<Mount> {
    let mut mounts = Vec::new();
    for &m in &args.mount {
        if !mounts.contains(&m) {
            mounts.push(m);
        }
    }
    mounts
}

fn describe(setup: &Setup, case: &ReadCase) -> String {
    format!(
        "{} {} {} {} bs={} threads={}",
        setup
            .targets
            .get(case.target)
            .map_or("?", |t| t.label.as_str()),
        setup.stack_name(case.stack),
        case.stack.mode_name(),
        case.cache.workload(),
        show_size(case.bs),
        case.threads
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_main_job_reads_every_target_cold_and_hot() {
        let args = ReadArgs::defaults();
        assert_eq!(
            args.target,
            vec![
                TargetSpec::Host,
                TargetSpec::Emu("ull".into()),
                TargetSpec::Zram
            ]
        );
        assert_eq!(args.cache, vec![CacheState::Cold, CacheState::Hot]);
        // The one stack, the read-write mount; the read-only one on request.
        assert_eq!(args.mount, vec![Mount::Rw]);
        assert_eq!((args.file_size, args.hot_set), (1 << 30, 512 << 10));
        assert!(validate(&args).is_ok());
        assert!("emu:nope".parse::<TargetSpec>().is_err());
        assert!("disk".parse::<TargetSpec>().is_err());
    }
}
