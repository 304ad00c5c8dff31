//! `aios bench write`: buffered sequential write throughput through aios's read-write mount
//! next to the kernel's ext4 on the same device path (issue 14: >= 0.9x the kernel).
//!
//! # Setup
//! One empty ext4 image (`mke2fs`, the features of `aios mkfs`) of twice `--file-size` plus
//! room for the journal and metadata, every block rewritten before use; the targets and the
//! kernel's mounts are the shared `crate::target`'s (`target.rs` here): on the host disk aios
//! by io_uring with O_DIRECT on the image file, the kernel on a copy loop-mounted with direct
//! I/O; on zram aios by pread/pwrite on its own zram device, the kernel on the image on
//! `/dev/zram0`; on `emu:PRESET` aios only (its RAM backed up front). The kernel's rows need
//! root; without it they are skipped with the reason.
//!
//! # Workload (one repetition of one stack)
//! The file `/seq` left by the previous repetition on the same file system (aios's two orders
//! share one image, the kernel has its copy) is removed and the removal made durable
//! (untimed); a new `/seq` is created, then `--file-size` bytes are written to it in `--bs`
//! writes at increasing offsets, then one fsync. The time is from the first write to the
//! fsync's return; throughput is `--file-size` over it (MiB/s).
//! - aios `sync` (the vanilla read and commit order) and `async` (the AIOS order): a read-write
//!   mount made afresh per repetition with the mount's default options otherwise (page cache
//!   [`aios_fs::mount::CACHE_PAGES_DEFAULT`] pages, 16 MiB; dirty marks of 10 and 20 % of it; the
//!   periodic commit every 5 s), one context, `RwShared::open` (create), `write_at` by handle,
//!   `fsync_file`; unmounted (checkpoint) after the time is taken.
//! - kernel `buffered`: `write(2)` on a descriptor of a file created in the kernel's mount
//!   (journaled ext4, `data=ordered`), then `fsync` (`File::sync_all`). Before each repetition
//!   the file is deleted, the file system synced (`syncfs`) and the kernel's caches dropped
//!   (`echo 3 > /proc/sys/vm/drop_caches`); no `fstrim` (aios discards nothing either, and on
//!   the host a discard would punch holes in the loop's backing file).
//!
//! # Order and output
//! Per repetition, target by target, the stacks run one after the other (aios `sync`, aios
//! `async`, the kernel), the order rotated by one each repetition so no stack always runs
//! first. The table (`summary.rs`) has a row per target and stack: mean MiB/s, the spread of
//! the repetitions (min..max, standard deviation), seconds in the writes and in the fsync, and
//! the ratio to the kernel's mean; then per target `seq_write_vs_kernel` (aios `async` over the
//! kernel) and `async_vs_sync`; then where aios's time went (commits per repetition and their
//! stages, [`aios_journal::runtime::CommitTimes`]). `--json` writes the ratios and every row.

mod runs;
mod summary;
mod target;
#[cfg(test)]
mod tests;

use crate::device::progress_bar;
use crate::read::TargetSpec;
use aios_fs::RwStats;
use aios_journal::runtime::CommitOrder;
use aios_spec::size::{parse_size, show_size};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
pub use summary::{CommitFigures, WriteRecord};
use target::{Setup, Target};

/// The file every repetition writes, in the image and in the kernel's mount.
const FILE_NAME: &str = "seq";

#[derive(Debug, Clone, clap::Args)]
pub struct WriteArgs {
    /// The ext4 image aios writes (made afresh).
    #[arg(long, default_value = "aios-write-bench.img")]
    pub image: PathBuf,
    /// Where: host (io_uring, O_DIRECT on the image file; the kernel on a copy loop-mounted
    /// with direct I/O, root only), zram (aios by pread/pwrite on its own zram device, the
    /// kernel on the image on /dev/zram0; root and an unused zram0, else skipped), emu:PRESET
    /// (the emulated device, image in RAM; aios only).
    #[arg(long, value_delimiter = ',', default_value = "host,zram,emu:ull")]
    pub target: Vec<TargetSpec>,
    /// Bytes written per repetition, into one new file.
    #[arg(long, default_value = "1G", value_parser = parse_size)]
    pub file_size: u64,
    /// Bytes per write, 4k to 128k.
    #[arg(long, default_value = "128k", value_parser = parse_size)]
    pub bs: u64,
    /// Repetitions, interleaved across stacks.
    #[arg(long, default_value = "3")]
    pub reps: usize,
    /// Also write the results as JSON: the ratios per target, and every row.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The software path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteStack {
    /// aios in a commit order (reads, if any, in the matching read order).
    Aios(CommitOrder),
    /// The kernel's ext4 on a copy of the image, on the same device path.
    Kernel,
}

/// The kernel's mode name: buffered `write` + `fsync`.
const KERNEL_MODE: &str = "buffered";

impl WriteStack {
    fn stack_name(self) -> &'static str {
        match self {
            WriteStack::Aios(_) => "aios",
            WriteStack::Kernel => "kernel",
        }
    }

    fn mode_name(self) -> &'static str {
        match self {
            WriteStack::Aios(CommitOrder::Sync) => "sync",
            WriteStack::Aios(CommitOrder::Async) => "async",
            WriteStack::Kernel => KERNEL_MODE,
        }
    }
}

/// One row of the table: a stack on a target.
#[derive(Debug, Clone, Copy)]
struct WriteCase {
    /// Index into the prepared targets.
    target: usize,
    stack: WriteStack,
}

/// What one repetition measured.
#[derive(Debug, Clone, Copy)]
struct RunOut {
    /// From the first write to the fsync's return.
    elapsed_ns: u64,
    /// Of which in the writes (the rest is the fsync).
    write_ns: u64,
    /// The mount's counters over the writes and the fsync (aios only).
    stats: Option<RwStats>,
}

fn validate(args: &WriteArgs) -> Result<()> {
    crate::check_run_args(&[args.bs], args.reps, 1.0)?;
    if args.target.is_empty() {
        bail!("--target needs at least one value");
    }
    if args.file_size < args.bs || !args.file_size.is_multiple_of(args.bs) {
        bail!(
            "--file-size must be a multiple of --bs ({}), at least one write",
            show_size(args.bs)
        );
    }
    Ok(())
}

/// Runs the write benchmark and prints the tables; returns the rows.
pub fn run(args: WriteArgs) -> Result<Vec<WriteRecord>> {
    validate(&args)?;
    let setup = target::prepare(&args)?;
    let cases = matrix(&setup.targets);
    let mut runs: Vec<Vec<RunOut>> = cases.iter().map(|_| Vec::new()).collect();
    let progress = progress_bar((cases.len() * args.reps) as u64);
    for rep in 0..args.reps {
        for i in order(&cases, rep) {
            let (Some(case), Some(case_runs)) = (cases.get(i), runs.get_mut(i)) else {
                continue;
            };
            progress.set_message(describe(&setup, case));
            let out = runs::run_case(&setup, case)
                .with_context(|| format!("{} (rep {rep})", describe(&setup, case)))?;
            case_runs.push(out);
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    let records = summary::records(&setup, &cases, &runs);
    let ratios = summary::ratios(&setup.targets, &records);
    print!("{}", summary::table(&records));
    print!("{}", summary::ratio_table(&ratios));
    print!("{}", summary::commit_table(&records));
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&summary::json(&setup, &ratios, &records))?;
        std::fs::write(path, json).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(records)
}

/// The cases: per target, aios in both orders, then the kernel where it has a mount.
fn matrix(targets: &[Target]) -> Vec<WriteCase> {
    let mut cases = Vec::new();
    for (t, target) in targets.iter().enumerate() {
        let mut stacks = vec![
            WriteStack::Aios(CommitOrder::Sync),
            WriteStack::Aios(CommitOrder::Async),
        ];
        if target.devices.kernel_dir.is_some() {
            stacks.push(WriteStack::Kernel);
        }
        for stack in stacks {
            cases.push(WriteCase { target: t, stack });
        }
    }
    cases
}

/// The order of the cases in repetition `rep`: target by target, each target's stacks rotated
/// by `rep`.
fn order(cases: &[WriteCase], rep: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(cases.len());
    let mut start = 0;
    while start < cases.len() {
        let target = cases[start].target;
        let n = cases[start..]
            .iter()
            .take_while(|c| c.target == target)
            .count();
        out.extend((0..n).map(|k| start + (k + rep) % n));
        start += n;
    }
    out
}

fn describe(setup: &Setup, case: &WriteCase) -> String {
    format!(
        "{} {} {} {} in {}",
        setup.targets.get(case.target).map_or("?", |t| t.label()),
        case.stack.stack_name(),
        case.stack.mode_name(),
        show_size(setup.file_size),
        show_size(setup.bs),
    )
}
