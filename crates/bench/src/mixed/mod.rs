//! `aios bench mixed`: readers and appenders side by side on one read-write mount, next to
//! each alone and next to the kernel's ext4 running the same mix on the same device path.
//!
//! # Setup
//! One ext4 image (`mke2fs`, the features of `aios mkfs`) holding `/data` (`--file-size` bytes
//! of random data, written through aios's read-write mount, fsynced and checkpointed) and, per
//! appender `T`, `/append.T` (empty). The kernel runs on a copy of the same image: on the host
//! disk loop-mounted with direct I/O, on zram the image on `/dev/zram0` (`target.rs`).
//!
//! # Workloads (QD1 per thread)
//! - reader: random 4 KiB-aligned 4 KiB reads of `/data`, by handle. The file is far larger
//!   than aios's page cache (the default `cache_pages`, 16 MiB), and every phase mounts afresh,
//!   so its reads are misses but for a few percent; the mount's read requests per read are the
//!   records' `miss_ratio`. The kernel's page cache has no such bound: its data file is dropped
//!   (`posix_fadvise(DONTNEED)`) before every phase, read with `POSIX_FADV_RANDOM` (no
//!   readahead, as aios's random reads), and each page read is dropped again right after its
//!   read, untimed and taken off the thread's time, so every kernel read is a miss too instead
//!   of the whole file becoming cached within a phase.
//! - appender: 4 KiB written at the end of the thread's own file, then `fsync`; the latency is
//!   of the pair. At 64 MiB the file is emptied (truncate + fsync, untimed, as `aios bench
//!   fsync` does).
//!
//! # Phases (cases)
//! Per target and stack, each for `--seconds` per repetition: `R` readers alone, `A`
//! appenders alone, the mix (`R` readers and `A` appenders started together), and one and two
//! readers alone (for `two_readers_vs_one`; a count equal to `R` is the same phase). `R` and
//! `A` are the target's: 2 + 2 on the host disk and zram, 1 + 1 on `emu:ull` (completion by
//! spinning on 2 vCPUs). Every aios phase mounts afresh (cold cache) and unmounts after.
//!
//! # Stacks
//! - aios in `--order` `sync` (vanilla read and commit order) and/or `async` (AIOS): one
//!   [`aios_fs::RwFs`] shared by every thread ([`aios_fs::RwShared`]), each thread with its
//!   own context and handle; completions as the target's (io_uring sleeping on the host, the
//!   emulated device spinning, psync on zram).
//! - kernel `buffered`: `pread` of the data file and `pwrite` + `fsync` of the appended files,
//!   on the kernel's journaled ext4 (`data=ordered`) of the same image on the same device path.
//!   Root only; skipped with the reason otherwise.
//!
//! Cases are interleaved and rotated across repetitions like the other benchmarks. The output
//! is the per-phase table of [`crate::report`] (`vs kern` against the kernel's same phase),
//! then one row per target and stack with the ratios the one-stack issue asks for
//! (`summary.rs`): `readers_vs_alone`, `appenders_vs_alone`, `ops_vs_kernel`,
//! `two_readers_vs_one`; `--json` writes both.

mod aios;
mod kernel;
mod phase;
mod summary;
mod target;
#[cfg(test)]
mod tests;

use crate::device::progress_bar;
use crate::read::TargetSpec;
use crate::report::{self, Record, Shape};
use crate::runner::{Run, Sample};
use aios_fs::ReadMode;
use aios_journal::runtime::CommitOrder;
use aios_spec::size::{parse_size, show_size};
use anyhow::{bail, Context, Result};
use phase::{PhaseOut, RoleOut};
use std::path::PathBuf;
use std::time::Duration;
use target::{Setup, Target};

/// Bytes of every read and every append.
const IO_BYTES: u64 = aios_device::BLOCK_SIZE as u64;

/// The data file the readers read, in the image and in the kernel's mount.
const DATA_NAME: &str = "data";

/// An appender's file, in the image and in the kernel's mount.
fn append_name(appender: usize) -> String {
    format!("append.{appender}")
}

#[derive(Debug, Clone, clap::Args)]
pub struct MixedArgs {
    /// The ext4 image aios reads and writes (made afresh).
    #[arg(long, default_value = "aios-mixed-bench.img")]
    pub image: PathBuf,
    /// Where: host (io_uring on the image file, 2 readers + 2 appenders; the kernel on a
    /// loop-mounted copy, root only), zram (psync on its own zram device, 2 + 2; the kernel on
    /// the image on /dev/zram0; root and an unused zram0, else skipped), emu:PRESET (the
    /// emulated device, 1 + 1; aios only).
    #[arg(long, value_delimiter = ',', default_value = "host,zram,emu:ull")]
    pub target: Vec<TargetSpec>,
    /// aios orders: sync (vanilla read and commit order), async (AIOS).
    #[arg(long, value_delimiter = ',', default_value = "async")]
    pub order: Vec<MixedOrder>,
    /// Size of the file the readers read (far larger than aios's 16 MiB page cache).
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    pub file_size: u64,
    /// Measured seconds per phase and repetition.
    #[arg(long, default_value = "2.0")]
    pub seconds: f64,
    /// Repetitions, interleaved across cases.
    #[arg(long, default_value = "3")]
    pub reps: usize,
    /// Also write the results as JSON: the ratios per target and stack, and every record.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// aios's read and commit order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MixedOrder {
    /// Vanilla: reads in the vanilla order, commits in ext4's.
    Sync,
    /// AIOS: both in the AIOS order.
    Async,
}

impl MixedOrder {
    fn name(self) -> &'static str {
        match self {
            MixedOrder::Sync => "sync",
            MixedOrder::Async => "async",
        }
    }

    fn commit(self) -> CommitOrder {
        match self {
            MixedOrder::Sync => CommitOrder::Sync,
            MixedOrder::Async => CommitOrder::Async,
        }
    }

    fn read_mode(self) -> ReadMode {
        match self {
            MixedOrder::Sync => ReadMode::Sync,
            MixedOrder::Async => ReadMode::Async,
        }
    }
}

/// The software path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MixedStack {
    Aios(MixedOrder),
    /// The kernel's ext4 on the same image and device path.
    Kernel,
}

/// The kernel's mode name: buffered `pread`, `pwrite` + `fsync`.
const KERNEL_MODE: &str = "buffered";

impl MixedStack {
    fn stack_name(self) -> &'static str {
        match self {
            MixedStack::Aios(_) => "aios",
            MixedStack::Kernel => "kernel",
        }
    }

    fn mode_name(self) -> &'static str {
        match self {
            MixedStack::Aios(order) => order.name(),
            MixedStack::Kernel => KERNEL_MODE,
        }
    }
}

/// Which threads run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Readers(usize),
    Appenders(usize),
    Mixed { readers: usize, appenders: usize },
}

impl Phase {
    fn readers(self) -> usize {
        match self {
            Phase::Readers(n) | Phase::Mixed { readers: n, .. } => n,
            Phase::Appenders(_) => 0,
        }
    }

    fn appenders(self) -> usize {
        match self {
            Phase::Appenders(n) | Phase::Mixed { appenders: n, .. } => n,
            Phase::Readers(_) => 0,
        }
    }

    fn is_mixed(self) -> bool {
        matches!(self, Phase::Mixed { .. })
    }

    /// The phases of a target with `readers` + `appenders`: each alone, the mix, and one and
    /// two readers alone (once each).
    fn of_target(readers: usize, appenders: usize) -> Vec<Phase> {
        let mut phases = vec![
            Phase::Readers(readers),
            Phase::Appenders(appenders),
            Phase::Mixed { readers, appenders },
        ];
        for n in [1, 2] {
            if n != readers {
                phases.push(Phase::Readers(n));
            }
        }
        phases
    }
}

/// The records' workload names: role and whether the other role ran beside.
const READ_ALONE: &str = "read-alone";
const READ_MIXED: &str = "read-mixed";
const APPEND_ALONE: &str = "append-alone";
const APPEND_MIXED: &str = "append-mixed";

#[derive(Debug, Clone, Copy)]
struct MixedCase {
    /// Index into the prepared targets.
    target: usize,
    stack: MixedStack,
    phase: Phase,
}

/// Every repetition of one case: per role, its samples and read counters.
#[derive(Default)]
struct CaseRuns {
    reads: Vec<Sample>,
    appends: Vec<Sample>,
    /// Reads issued and read requests submitted (aios readers), warm-up included.
    reads_issued: u64,
    read_requests: u64,
}

impl CaseRuns {
    fn add(&mut self, out: PhaseOut) {
        if let Some(RoleOut {
            sample,
            issued,
            requests,
        }) = out.readers
        {
            self.reads.push(sample);
            self.reads_issued += issued;
            self.read_requests += requests;
        }
        if let Some(appends) = out.appenders {
            self.appends.push(appends.sample);
        }
    }
}

fn validate(args: &MixedArgs) -> Result<()> {
    crate::check_run_args(&[IO_BYTES], args.reps, args.seconds)?;
    if args.target.is_empty() || args.order.is_empty() {
        bail!("--target and --order need at least one value");
    }
    if args.file_size < FILE_BYTES_MIN || !args.file_size.is_multiple_of(IO_BYTES) {
        bail!(
            "--file-size: a multiple of 4K, at least {}",
            show_size(FILE_BYTES_MIN)
        );
    }
    Ok(())
}

/// The smallest data file: larger than aios's default page cache.
const FILE_BYTES_MIN: u64 = 32 << 20;

/// Runs the mixed benchmark, prints the tables; returns the records.
pub fn run(args: MixedArgs) -> Result<Vec<Record>> {
    validate(&args)?;
    let setup = target::prepare(&args)?;
    let cases = matrix(&args, &setup.targets);
    let mut runs: Vec<CaseRuns> = cases.iter().map(|_| CaseRuns::default()).collect();
    let mut failures: Vec<String> = Vec::new();
    let progress = progress_bar((cases.len() * args.reps) as u64);
    let duration = Duration::from_secs_f64(args.seconds);
    let warmup = duration.mul_f64(0.1).max(Duration::from_millis(10));
    for rep in 0..args.reps {
        for k in 0..cases.len() {
            let i = (k + rep * 7) % cases.len();
            let (Some(case), Some(case_runs)) = (cases.get(i), runs.get_mut(i)) else {
                continue;
            };
            progress.set_message(describe(&setup, case));
            let run = Run {
                warmup,
                duration,
                seed: ((rep as u64) << 32) | i as u64,
            };
            // A failed case is reported after the tables; the others still run.
            match run_case(&setup, case, run) {
                Ok(out) => case_runs.add(out),
                Err(e) => failures.push(format!("{} (rep {rep}): {e:#}", describe(&setup, case))),
            }
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    let records = records_of(&setup, &cases, &runs);
    print!("{}", report::table(&records));
    let shapes: Vec<summary::TargetShape> = setup.targets.iter().map(Target::shape).collect();
    let targets = summary::summarize(&shapes, &records);
    print!("{}", summary::table(&targets));
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&summary::json(&targets, &records))?;
        std::fs::write(path, json).with_context(|| format!("write {}", path.display()))?;
    }
    if !failures.is_empty() {
        for failure in &failures {
            eprintln!("aios: failed: {failure}");
        }
        bail!(
            "{} of {} runs failed",
            failures.len(),
            cases.len() * args.reps
        );
    }
    Ok(records)
}

fn run_case(setup: &Setup, case: &MixedCase, run: Run) -> Result<PhaseOut> {
    let target = setup.target(case.target)?;
    match case.stack {
        MixedStack::Aios(order) => aios::run_case(setup, target, order, case.phase, run),
        MixedStack::Kernel => {
            let dir = target
                .devices
                .kernel_dir
                .as_deref()
                .with_context(|| format!("no kernel mount on {}", target.label()))?;
            kernel::run_case(dir, setup.file_size, case.phase, run)
        }
    }
}

/// The cases: per target, each stack it has, each phase.
fn matrix(args: &MixedArgs, targets: &[Target]) -> Vec<MixedCase> {
    let mut cases = Vec::new();
    for (t, target) in targets.iter().enumerate() {
        let mut stacks: Vec<MixedStack> = args.order.iter().map(|&o| MixedStack::Aios(o)).collect();
        if target.devices.kernel_dir.is_some() {
            stacks.push(MixedStack::Kernel);
        }
        for &stack in &stacks {
            for phase in Phase::of_target(target.readers, target.appenders) {
                cases.push(MixedCase {
                    target: t,
                    stack,
                    phase,
                });
            }
        }
    }
    cases
}

/// One record per case and role, in case order.
fn records_of(setup: &Setup, cases: &[MixedCase], runs: &[CaseRuns]) -> Vec<Record> {
    let mut records = Vec::new();
    for (case, case_runs) in cases.iter().zip(runs) {
        let Some(target) = setup.targets.get(case.target) else {
            continue;
        };
        let shape = |workload, threads| Shape {
            device: target.label().to_string(),
            stack: case.stack.stack_name(),
            mode: case.stack.mode_name().to_string(),
            workload,
            bs: IO_BYTES,
            threads,
            qd: 1,
        };
        let mixed = case.phase.is_mixed();
        if case.phase.readers() > 0 && !case_runs.reads.is_empty() {
            let workload = if mixed { READ_MIXED } else { READ_ALONE };
            let mut r = report::record_of(
                shape(workload, case.phase.readers()),
                &case_runs.reads,
                target.device_read_ns,
            );
            if case_runs.read_requests > 0 {
                r.miss_ratio =
                    Some(case_runs.read_requests as f64 / case_runs.reads_issued.max(1) as f64);
            }
            records.push(r);
        }
        if case.phase.appenders() > 0 && !case_runs.appends.is_empty() {
            let workload = if mixed { APPEND_MIXED } else { APPEND_ALONE };
            records.push(report::record_of(
                shape(workload, case.phase.appenders()),
                &case_runs.appends,
                None,
            ));
        }
    }
    report::compare_with(&mut records, |r| r.stack == MixedStack::Kernel.stack_name());
    records
}

fn describe(setup: &Setup, case: &MixedCase) -> String {
    format!(
        "{} {} {} readers={} appenders={}",
        setup.targets.get(case.target).map_or("?", |t| t.label()),
        case.stack.stack_name(),
        case.stack.mode_name(),
        case.phase.readers(),
        case.phase.appenders(),
    )
}
