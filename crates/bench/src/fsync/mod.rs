//! `aios bench fsync`: durable writes through aios's read-write mount next to the kernel's ext4.
//!
//! # Setup
//! An ext4 image (`mke2fs`, the features of `aios mkfs`) holding, per thread `T` of the largest
//! `--threads`, `/append.T` (empty) and `/overwrite.T` (`--file-size` bytes, written once); the
//! kernel gets the same files in `--dir` on the host's file system, in a loop-mounted copy of the
//! image (host) or in the image on `/dev/zram0` (zram). All are made afresh by every invocation;
//! `target.rs` tabulates the targets; the devices and the root-only kernel set-ups (and their
//! clean-up) are the shared `crate::target`.
//!
//! # Stacks
//! - aios `sync` (vanilla commit order) and `async` (AIOS order): one [`aios_fs::RwFs::write`]
//!   per operation, which is one journaled transaction committed before it returns (data,
//!   journal blocks, flush, commit block with FUA): a write plus fsync. Every run mounts the
//!   image afresh and unmounts it (checkpoint) after the window. On the host (io_uring, which
//!   sleeps for completions by default) also `sync+poll` and `async+poll`: the same with
//!   completions busy-polled, the paper's optional polling (technique 5). A flush still sleeps
//!   in `fdatasync` (see `aios_device_uring::FlushPath`).
//! - kernel `fsync`/`fdatasync`: `pwrite` + `fsync` (append) or `pwrite` + `fdatasync`
//!   (overwrite) on a buffered descriptor. On the host these are the files in `--dir` on the
//!   root file system, **an ext4 without a journal on this machine** (`/proc/fs/jbd2` empty):
//!   the unjournaled kernel. On zram, the kernel's journaled ext4 (`data=ordered`) on the same
//!   image.
//! - kernel `fsync-img`/`fdsync-img` (host, root only): the same calls on the files of a copy of
//!   the image, loop-mounted with direct I/O and `data=ordered`: the kernel's *journaled* stack
//!   on the same device path as aios (O_DIRECT writes and fsyncs of an image file).
//!
//! # Workloads (QD1 per thread)
//! - `append`: `bs` bytes at the end of the file: block allocation, extent and size updates every
//!   time. When the file reaches `--file-size` it is truncated to empty (untimed: the pause is
//!   taken off the thread's measured time too).
//! - `overwrite`: `bs` bytes at a random `bs`-aligned offset of the preallocated file, then
//!   `fdatasync`. Only the times change, so both aios and the kernel skip the journal: the data
//!   goes in place, then a flush (aios's data-only sync).
//!
//! `--threads N`: N threads, each writing its own files (`append.T`, `overwrite.T`), started
//! together behind a barrier and measured in one window ([`crate::runner::run_threads`]);
//! IOPS are summed over threads, latencies taken over every operation. aios's threads share one
//! read-write mount, each with its own handle; concurrent fsyncs share commits.
//!
//! Cases are interleaved and rotated across repetitions like the other benchmarks; the table,
//! `--json` records and `vs kern` (against the plain kernel row on the same target and shape)
//! are theirs. After the table: the ratios to the journaled kernel (host), then per aios order
//! the mean operation time, what each commit wrote ([`aios_fs::RwStats`]) and the per-stage
//! [`aios_journal::runtime::CommitTimes`] per commit. `--svg DIR` draws `fsync-breakdown.svg`:
//! those stages in us per durable write, stacked, with the kernel's mean beside.

mod runs;
mod summary;
mod svg;
mod target;

use crate::device::progress_bar;
use crate::read::TargetSpec;
use crate::report::{self, Record, Shape};
use crate::runner::{Run, Sample};
use aios_fs::RwStats;
use aios_journal::runtime::CommitOrder;
use aios_spec::size::{parse_size, show_size};
use anyhow::{bail, Context, Result};
use runs::*;
use std::path::PathBuf;
use std::time::Duration;
use target::*;

/// The files, in the image (absolute) and in the kernel's directory, suffixed `.T` per thread.
const APPEND_NAME: &str = "append";
const OVERWRITE_NAME: &str = "overwrite";

#[derive(Debug, Clone, clap::Args)]
pub struct FsyncArgs {
    /// The ext4 image aios writes (made afresh).
    #[arg(long, default_value = "aios-fsync-bench.img")]
    pub image: PathBuf,
    /// The directory on the host's file system where the kernel writes its files.
    #[arg(long, default_value = "aios-fsync-bench.dir")]
    pub dir: PathBuf,
    /// Where aios writes the image: host (io_uring, O_DIRECT on the image file; the kernel
    /// writes files in --dir and, as root, in a loop-mounted copy of the image), zram (aios by
    /// pread/pwrite on its own zram device, the kernel on the image mounted from /dev/zram0;
    /// needs root and an unused zram0, else skipped), emu:PRESET (the emulated device, image in
    /// RAM; aios only).
    #[arg(long, value_delimiter = ',', default_value = "host,emu:ull")]
    pub target: Vec<TargetSpec>,
    /// Workloads: append (write at the end: allocation each time), overwrite (random blocks
    /// of a preallocated file).
    #[arg(long, value_delimiter = ',', default_value = "append,overwrite")]
    pub workload: Vec<FsyncWorkload>,
    /// Write sizes, 4k to 128k.
    #[arg(long, value_delimiter = ',', default_value = "4k", value_parser = parse_size)]
    pub bs: Vec<u64>,
    /// Size of the overwritten file, and the size at which the appended file starts over.
    #[arg(long, default_value = "16M", value_parser = parse_size)]
    pub file_size: u64,
    /// Measured seconds per case and repetition.
    #[arg(long, default_value = "1.0")]
    pub seconds: f64,
    /// Repetitions, interleaved across cases.
    #[arg(long, default_value = "3")]
    pub reps: usize,
    /// Thread counts, each thread writing its own files.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub threads: Vec<usize>,
    /// Also write the results as JSON, one record per case.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also draw fsync-breakdown.svg (per-stage us per durable write) into this directory.
    #[arg(long)]
    pub svg: Option<PathBuf>,
}

impl FsyncArgs {
    /// The defaults, as `aios bench fsync` with no options (the main job's last part).
    pub fn defaults() -> FsyncArgs {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            args: FsyncArgs,
        }
        <Only as clap::Parser>::parse_from(["fsync"]).args
    }
}

/// What each durable write does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FsyncWorkload {
    Append,
    Overwrite,
}

impl FsyncWorkload {
    fn name(self) -> &'static str {
        match self {
            FsyncWorkload::Append => "append",
            FsyncWorkload::Overwrite => "overwrite",
        }
    }

    /// The file thread `thread` writes.
    fn file_name(self, thread: usize) -> String {
        let base = match self {
            FsyncWorkload::Append => APPEND_NAME,
            FsyncWorkload::Overwrite => OVERWRITE_NAME,
        };
        format!("{base}.{thread}")
    }
}

/// The software path of a durable write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FsyncStack {
    /// aios in a commit order; `polled`: completions busy-polled instead of the target's own
    /// mode (the paper's optional polling; offered where the target sleeps by default).
    Aios { order: CommitOrder, polled: bool },
    /// The kernel's files on the target's own file system (on the host: no journal).
    Kernel,
    /// The kernel's journaled ext4 on a loop-mounted copy of the image (host only).
    KernelImg,
}

impl FsyncStack {
    fn stack_name(self) -> &'static str {
        match self {
            FsyncStack::Aios { .. } => "aios",
            FsyncStack::Kernel | FsyncStack::KernelImg => "kernel",
        }
    }

    fn mode_name(self, workload: FsyncWorkload) -> &'static str {
        match (self, workload) {
            (FsyncStack::Aios { order, polled }, _) => order_name(order, polled),
            (FsyncStack::Kernel, FsyncWorkload::Append) => "fsync",
            (FsyncStack::Kernel, FsyncWorkload::Overwrite) => "fdatasync",
            (FsyncStack::KernelImg, FsyncWorkload::Append) => JOURNALED_FSYNC,
            (FsyncStack::KernelImg, FsyncWorkload::Overwrite) => JOURNALED_FDATASYNC,
        }
    }
}

/// The journaled kernel's mode names (kept within the table's mode column).
const JOURNALED_FSYNC: &str = "fsync-img";
const JOURNALED_FDATASYNC: &str = "fdsync-img";

/// Whether a record is the journaled kernel's.
fn is_journaled_kernel(r: &Record) -> bool {
    r.stack == "kernel" && (r.mode == JOURNALED_FSYNC || r.mode == JOURNALED_FDATASYNC)
}

/// Whether a record is the plain kernel's, the reference of `vs kern`.
fn is_plain_kernel(r: &Record) -> bool {
    r.stack == "kernel" && !is_journaled_kernel(r)
}

fn order_name(order: CommitOrder, polled: bool) -> &'static str {
    match (order, polled) {
        (CommitOrder::Sync, false) => "sync",
        (CommitOrder::Async, false) => "async",
        (CommitOrder::Sync, true) => "sync+poll",
        (CommitOrder::Async, true) => "async+poll",
    }
}

#[derive(Debug, Clone, Copy)]
struct FsyncCase {
    /// Index into the prepared targets.
    target: usize,
    stack: FsyncStack,
    workload: FsyncWorkload,
    bs: u64,
    threads: usize,
}

/// What one run produced beyond its latencies.
struct RunOut {
    sample: Sample,
    /// The mount's counters over the run (aios only), warm-up and truncations included.
    stats: Option<RwStats>,
    /// Writes issued over the run, warm-up included.
    writes: u64,
}

fn validate(args: &FsyncArgs) -> Result<()> {
    crate::check_run_args(&args.bs, args.reps, args.seconds)?;
    if args.workload.is_empty()
        || args.bs.is_empty()
        || args.target.is_empty()
        || args.threads.is_empty()
    {
        bail!("--workload, --bs, --target and --threads need at least one value");
    }
    if args.threads.iter().any(|&t| t == 0 || t > THREADS_MAX) {
        bail!("--threads: 1 to {THREADS_MAX}");
    }
    let bs_max = args.bs.iter().copied().max().unwrap_or(0);
    if args.file_size < 2 * bs_max || !args.file_size.is_multiple_of(bs_max.max(1)) {
        bail!("--file-size must be a multiple of every --bs, and hold at least two writes");
    }
    Ok(())
}

/// The most threads a case may have (each has two files of --file-size in the image).
const THREADS_MAX: usize = 64;

/// Sums of the counters of one aios case over its repetitions.
#[derive(Debug, Clone, Copy, Default)]
struct CommitSums {
    writes: u64,
    commits: u64,
    /// Data-only syncs (`fdatasync` of overwrites, no commit).
    data_syncs: u64,
    checkpoints: u64,
    journal_blocks: u64,
    /// Per-stage commit nanoseconds: checkpoint, build journal, submit, wait, flush, commit.
    stage_ns: [u64; 6],
}

/// The commit stages, in the order of `CommitSums::stage_ns`.
const COMMIT_STAGES: [&str; 6] = [
    "checkpoint",
    "build_journal",
    "submit",
    "wait",
    "flush",
    "commit",
];

impl CommitSums {
    fn add(&mut self, writes: u64, s: RwStats) {
        self.writes += writes;
        self.commits += s.commits;
        self.data_syncs += s.data_syncs;
        self.checkpoints += s.checkpoints;
        self.journal_blocks += s.journal_blocks;
        let t = s.commit_times;
        let stages = [
            t.checkpoint_ns,
            t.build_journal_ns,
            t.submit_ns,
            t.wait_ns,
            t.flush_ns,
            t.commit_ns,
        ];
        for (sum, ns) in self.stage_ns.iter_mut().zip(stages) {
            *sum += ns;
        }
    }
}

/// Runs the fsync benchmark and prints the table; returns the records.
pub fn run(args: FsyncArgs) -> Result<Vec<Record>> {
    validate(&args)?;
    let setup = prepare(&args)?;
    let cases = matrix(&args, &setup.targets);
    let mut samples: Vec<Vec<Sample>> = cases.iter().map(|_| Vec::new()).collect();
    let mut sums = vec![CommitSums::default(); cases.len()];
    let progress = progress_bar((cases.len() * args.reps) as u64);
    let duration = Duration::from_secs_f64(args.seconds);
    let warmup = duration.mul_f64(0.1).max(Duration::from_millis(10));
    for rep in 0..args.reps {
        for k in 0..cases.len() {
            let i = (k + rep * 7) % cases.len();
            let case = &cases[i];
            progress.set_message(describe(&setup, case));
            let run = Run {
                warmup,
                duration,
                seed: ((rep as u64) << 32) | i as u64,
            };
            let out = run_case(&setup, case, run).with_context(|| describe(&setup, case))?;
            if let Some(stats) = out.stats {
                sums[i].add(out.writes, stats);
            }
            samples[i].push(out.sample);
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    let mut records: Vec<Record> = cases
        .iter()
        .zip(&samples)
        .map(|(case, s)| {
            let shape = Shape {
                device: setup.targets[case.target].label().to_string(),
                stack: case.stack.stack_name(),
                mode: case.stack.mode_name(case.workload).to_string(),
                workload: case.workload.name(),
                bs: case.bs,
                threads: case.threads,
                qd: 1,
            };
            report::record_of(shape, s, None)
        })
        .collect();
    report::compare_with(&mut records, is_plain_kernel);
    print!("{}", report::table(&records));
    summary::print_journaled_ratios(&records);
    summary::print_commits(&records, &cases, &sums);
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&records)?;
        std::fs::write(path, json).with_context(|| format!("write {}", path.display()))?;
    }
    if let Some(dir) = &args.svg {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let path = dir.join("fsync-breakdown.svg");
        let bars = svg::bars(&records, &cases, &sums);
        svg::breakdown_svg(&path, &bars)
            .map_err(|e| anyhow::anyhow!("draw {}: {e}", path.display()))?;
        eprintln!("aios: wrote {}", path.display());
    }
    Ok(records)
}

/// The cases to run.
fn matrix(args: &FsyncArgs, targets: &[Target]) -> Vec<FsyncCase> {
    let mut cases = Vec::new();
    for &workload in &args.workload {
        for (t, target) in targets.iter().enumerate() {
            let mut stacks = Vec::new();
            let polled_too: &[bool] = if target.poll_rows {
                &[false, true]
            } else {
                &[false]
            };
            for &polled in polled_too {
                for order in [CommitOrder::Sync, CommitOrder::Async] {
                    stacks.push(FsyncStack::Aios { order, polled });
                }
            }
            for kernel in [FsyncStack::Kernel, FsyncStack::KernelImg] {
                if target.dir_of(kernel).is_some() {
                    stacks.push(kernel);
                }
            }
            for &threads in &args.threads {
                for &stack in &stacks {
                    for &bs in &args.bs {
                        cases.push(FsyncCase {
                            target: t,
                            stack,
                            workload,
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

fn describe(setup: &Setup, case: &FsyncCase) -> String {
    format!(
        "{} {} {} {} bs={} threads={}",
        setup.targets.get(case.target).map_or("?", |t| t.label()),
        case.stack.stack_name(),
        case.stack.mode_name(case.workload),
        case.workload.name(),
        show_size(case.bs),
        case.threads,
    )
}

#[cfg(test)]
mod tests;
