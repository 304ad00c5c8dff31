//! `aios bench fsync`: durable writes through aios's read-write mount next to the kernel's ext4.
//!
//! # Setup
//! An ext4 image (`mke2fs`, the features of `aios mkfs`) holding `/append` (empty) and
//! `/overwrite` (`--file-size` bytes, written once); the kernel gets the same two files in
//! `--dir` on the host's file system. Both are made afresh by every invocation.
//!
//! # Stacks
//! - aios `sync` (vanilla commit order) and `async` (AIOS order): one [`aios_fs::RwFs::write`]
//!   per operation, which is one journaled transaction committed before it returns (data,
//!   journal blocks, flush, commit block with FUA): a write plus fsync. Every run mounts the
//!   image afresh and unmounts it (checkpoint) after the window.
//! - kernel (host target only): `pwrite` + `fsync` (append) or `pwrite` + `fdatasync`
//!   (overwrite) on a buffered descriptor of the file in `--dir`. The mode column names the call.
//!
//! # Workloads (one thread, QD1)
//! - `append`: `bs` bytes at the end of the file: block allocation, extent and size updates every
//!   time. When the file reaches `--file-size` it is truncated to empty (untimed: the pause is
//!   taken off the run's elapsed time too).
//! - `overwrite`: `bs` bytes at a random `bs`-aligned offset of the preallocated file. The
//!   inode's mtime changes, so aios commits a transaction each time (it has no fdatasync yet);
//!   the kernel's fdatasync skips the journal when only timestamps changed.
//!
//! Cases are interleaved and rotated across repetitions like the other benchmarks; the table,
//! `--json` records and `vs kern` (against the kernel on the same target and shape) are theirs.
//! After the table, per aios order: the mean operation time and what each commit wrote
//! ([`aios_fs::RwStats`]), and the per-stage [`aios_journal::runtime::CommitTimes`] per commit.

mod runs;
mod target;

use crate::bench::device::progress_bar;
use crate::bench::read::TargetSpec;
use crate::bench::report::{self, Record, Shape};
use crate::bench::runner::{Run, Sample};
use crate::spec::OpenDevice;
use crate::units::{parse_size, show_size};
use aios_fs::RwStats;
use aios_journal::runtime::CommitOrder;
use anyhow::{bail, Context, Result};
use runs::*;
use std::path::PathBuf;
use std::time::Duration;
use target::*;

/// The files, in the image (absolute) and in the kernel's directory.
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
    /// writes files in --dir), emu:PRESET (the emulated device, image in RAM; aios only).
    /// zram is not supported yet (skipped).
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
    /// Also write the results as JSON, one record per case.
    #[arg(long)]
    pub json: Option<PathBuf>,
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

    fn file_name(self) -> &'static str {
        match self {
            FsyncWorkload::Append => APPEND_NAME,
            FsyncWorkload::Overwrite => OVERWRITE_NAME,
        }
    }
}

/// The software path of a durable write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FsyncStack {
    Aios(CommitOrder),
    Kernel,
}

impl FsyncStack {
    fn stack_name(self) -> &'static str {
        match self {
            FsyncStack::Aios(_) => "aios",
            FsyncStack::Kernel => "kernel",
        }
    }

    fn mode_name(self, workload: FsyncWorkload) -> &'static str {
        match (self, workload) {
            (FsyncStack::Aios(order), _) => order_name(order),
            (FsyncStack::Kernel, FsyncWorkload::Append) => "fsync",
            (FsyncStack::Kernel, FsyncWorkload::Overwrite) => "fdatasync",
        }
    }
}

fn order_name(order: CommitOrder) -> &'static str {
    match order {
        CommitOrder::Sync => "sync",
        CommitOrder::Async => "async",
    }
}

#[derive(Debug, Clone, Copy)]
struct FsyncCase {
    /// Index into the prepared targets.
    target: usize,
    stack: FsyncStack,
    workload: FsyncWorkload,
    bs: u64,
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
    crate::bench::check_run_args(&args.bs, args.reps, args.seconds)?;
    if args.workload.is_empty() || args.bs.is_empty() || args.target.is_empty() {
        bail!("--workload, --bs and --target need at least one value");
    }
    let bs_max = args.bs.iter().copied().max().unwrap_or(0);
    if args.file_size < 2 * bs_max || !args.file_size.is_multiple_of(bs_max.max(1)) {
        bail!("--file-size must be a multiple of every --bs, and hold at least two writes");
    }
    Ok(())
}

/// Sums of the counters of one aios case over its repetitions.
#[derive(Debug, Clone, Copy, Default)]
struct CommitSums {
    writes: u64,
    commits: u64,
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
                device: setup.targets[case.target].label.clone(),
                stack: case.stack.stack_name(),
                mode: case.stack.mode_name(case.workload).to_string(),
                workload: case.workload.name(),
                bs: case.bs,
                threads: 1,
                qd: 1,
            };
            report::record_of(shape, s, None)
        })
        .collect();
    report::compare_with(&mut records, |r| r.stack == "kernel");
    print!("{}", report::table(&records));
    print_commits(&records, &cases, &sums);
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&records)?;
        std::fs::write(path, json).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(records)
}

/// Per aios case: the mean operation time and what its commits wrote.
fn print_commits(records: &[Record], cases: &[FsyncCase], sums: &[CommitSums]) {
    println!(
        "aios per durable write (all writes of the runs, warm-up included); commit stages in us \
         per commit ({}), the rest of the write is the in-memory operation:",
        COMMIT_STAGES.join(", ")
    );
    for ((r, case), s) in records.iter().zip(cases).zip(sums) {
        if !matches!(case.stack, FsyncStack::Aios(_)) || s.writes == 0 {
            continue;
        }
        println!(
            "  {:<12} {:<6} {:<10} {:>5}  op mean {:>8.2} us  commits/write {:.3}  journal \
             blocks/commit {:.2}  checkpoints {}",
            r.device,
            r.mode,
            r.workload,
            show_size(r.bs),
            r.mean_ns / 1e3,
            s.commits as f64 / s.writes as f64,
            s.journal_blocks as f64 / s.commits.max(1) as f64,
            s.checkpoints
        );
        let per_commit: Vec<String> = s
            .stage_ns
            .iter()
            .map(|&ns| format!("{:.2}", ns as f64 / 1e3 / s.commits.max(1) as f64))
            .collect();
        println!("      stages: {}", per_commit.join(" / "));
    }
}

fn matrix(args: &FsyncArgs, targets: &[Target]) -> Vec<FsyncCase> {
    let mut cases = Vec::new();
    for &workload in &args.workload {
        for (t, target) in targets.iter().enumerate() {
            let mut stacks = vec![
                FsyncStack::Aios(CommitOrder::Sync),
                FsyncStack::Aios(CommitOrder::Async),
            ];
            if target.kernel_dir.is_some() {
                stacks.push(FsyncStack::Kernel);
            }
            for stack in stacks {
                for &bs in &args.bs {
                    cases.push(FsyncCase {
                        target: t,
                        stack,
                        workload,
                        bs,
                    });
                }
            }
        }
    }
    cases
}

fn describe(setup: &Setup, case: &FsyncCase) -> String {
    format!(
        "{} {} {} {} bs={}",
        setup
            .targets
            .get(case.target)
            .map_or("?", |t| t.label.as_str()),
        case.stack.stack_name(),
        case.stack.mode_name(case.workload),
        case.workload.name(),
        show_size(case.bs),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> FsyncArgs {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            args: FsyncArgs,
        }
        <Only as clap::Parser>::parse_from(argv).args
    }

    #[test]
    fn defaults_are_short_and_cover_both_workloads() {
        let args = parse(&["fsync"]);
        assert_eq!(
            args.target,
            vec![TargetSpec::Host, TargetSpec::Emu("ull".into())]
        );
        assert_eq!(
            args.workload,
            vec![FsyncWorkload::Append, FsyncWorkload::Overwrite]
        );
        assert_eq!(
            (args.bs.clone(), args.reps, args.seconds),
            (vec![4096], 3, 1.0)
        );
        assert!(validate(&args).is_ok());
        let args = parse(&["fsync", "--bs", "16k", "--file-size", "16k"]);
        assert!(validate(&args).is_err(), "one write does not fit twice");
    }

    #[test]
    fn the_kernel_runs_only_where_it_has_files_and_names_its_call() {
        let targets = vec![
            Target::for_test("host disk", true),
            Target::for_test("emu:ull", false),
        ];
        let mut args = parse(&["fsync", "--bs", "4k,16k"]);
        args.workload = vec![FsyncWorkload::Append, FsyncWorkload::Overwrite];
        let cases = matrix(&args, &targets);
        // 2 workloads x (3 stacks on host + 2 on emu) x 2 sizes.
        assert_eq!(cases.len(), 2 * 5 * 2);
        assert!(cases
            .iter()
            .filter(|c| c.stack == FsyncStack::Kernel)
            .all(|c| c.target == 0));
        assert_eq!(
            FsyncStack::Kernel.mode_name(FsyncWorkload::Overwrite),
            "fdatasync"
        );
        assert_eq!(
            FsyncStack::Aios(CommitOrder::Async).mode_name(FsyncWorkload::Append),
            "async"
        );
    }
}
