//! `aios bench write` figures, all computed from the repetitions (no timing here): a row per
//! target and stack, the ratios per target, and where aios's time went.
//!
//! | ratio | what |
//! | --- | --- |
//! | `vs_kernel` (per row) | the row's mean MiB/s over the kernel's on the same target |
//! | `seq_write_vs_kernel` | aios `async` (the AIOS order) over the kernel, per target: issue 14 asks >= 0.9; `null` without a kernel row |
//! | `async_vs_sync` | aios `async` over aios `sync`, per target |
//!
//! A row's MiB/s is the mean of its repetitions' rates (file size over the time from the first
//! write to the fsync's return); the spread is their min..max and sample standard deviation.

use super::*;
use serde::Serialize;

const MIB: f64 = (1u64 << 20) as f64;

/// One row: a stack on a target over every repetition; also the JSON record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WriteRecord {
    pub device: String,
    pub stack: &'static str,
    pub mode: &'static str,
    pub file_size: u64,
    pub bs: u64,
    pub reps: usize,
    /// Mean of the repetitions' MiB/s.
    pub mib_s: f64,
    pub min_mib_s: f64,
    pub max_mib_s: f64,
    /// Sample standard deviation of the repetitions' MiB/s (0 with one repetition).
    pub stdev_mib_s: f64,
    pub rep_mib_s: Vec<f64>,
    /// Mean seconds in the writes, and in the fsync after them.
    pub write_s: f64,
    pub fsync_s: f64,
    /// `mib_s` over the kernel's on the same target.
    pub vs_kernel: Option<f64>,
    /// aios's commits, per repetition (the mean).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commits: Option<CommitFigures>,
}

/// What aios's mount did per repetition, from [`RwStats`] over the writes and the fsync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CommitFigures {
    pub commits: f64,
    /// Of those, by the periodic commit thread (beside the writer).
    pub periodic_commits: f64,
    pub checkpoints: f64,
    pub journal_blocks: f64,
    /// Seconds in each commit stage ([`aios_journal::runtime::CommitTimes`]), summed over the
    /// repetition's commits.
    pub checkpoint_s: f64,
    pub build_journal_s: f64,
    pub submit_s: f64,
    pub wait_s: f64,
    pub flush_s: f64,
    pub commit_s: f64,
}

impl CommitFigures {
    /// The mean over `stats`, one per repetition.
    fn mean_of(stats: &[RwStats]) -> CommitFigures {
        let n = stats.len().max(1) as f64;
        let sum = |f: &dyn Fn(&RwStats) -> u64| stats.iter().map(f).sum::<u64>() as f64 / n;
        let secs = |f: &dyn Fn(&RwStats) -> u64| sum(f) / 1e9;
        CommitFigures {
            commits: sum(&|s| s.commits),
            periodic_commits: sum(&|s| s.periodic_commits),
            checkpoints: sum(&|s| s.checkpoints),
            journal_blocks: sum(&|s| s.journal_blocks),
            checkpoint_s: secs(&|s| s.commit_times.checkpoint_ns),
            build_journal_s: secs(&|s| s.commit_times.build_journal_ns),
            submit_s: secs(&|s| s.commit_times.submit_ns),
            wait_s: secs(&|s| s.commit_times.wait_ns),
            flush_s: secs(&|s| s.commit_times.flush_ns),
            commit_s: secs(&|s| s.commit_times.commit_ns),
        }
    }

    /// Seconds in every stage of every commit.
    pub fn total_s(&self) -> f64 {
        self.checkpoint_s
            + self.build_journal_s
            + self.submit_s
            + self.wait_s
            + self.flush_s
            + self.commit_s
    }
}

/// A target's ratios, the JSON's per-target object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct TargetRatios {
    pub device: String,
    pub seq_write_vs_kernel: Option<f64>,
    pub async_vs_sync: Option<f64>,
}

/// The `--json` document.
#[derive(Debug, Serialize)]
pub(super) struct Json<'a> {
    pub file_size: u64,
    pub bs: u64,
    /// aios's page cache (the mount's default), in bytes.
    pub aios_cache_bytes: u64,
    pub targets: &'a [TargetRatios],
    pub records: &'a [WriteRecord],
}

pub(super) fn json<'a>(
    setup: &Setup,
    targets: &'a [TargetRatios],
    records: &'a [WriteRecord],
) -> Json<'a> {
    Json {
        file_size: setup.file_size,
        bs: setup.bs,
        aios_cache_bytes: aios_cache_bytes(),
        targets,
        records,
    }
}

/// The page cache of a mount with the default options.
fn aios_cache_bytes() -> u64 {
    (aios_fs::mount::CACHE_PAGES_DEFAULT * aios_device::BLOCK_SIZE) as u64
}

/// One record per case with repetitions, in case order; `vs_kernel` filled.
pub(super) fn records(
    setup: &Setup,
    cases: &[WriteCase],
    runs: &[Vec<RunOut>],
) -> Vec<WriteRecord> {
    let mut records: Vec<WriteRecord> = cases
        .iter()
        .zip(runs)
        .filter(|(_, runs)| !runs.is_empty())
        .map(|(case, runs)| {
            let device = setup
                .targets
                .get(case.target)
                .map_or("?", |t| t.label())
                .to_string();
            record_of(device, case.stack, setup.file_size, setup.bs, runs)
        })
        .collect();
    let kernel: Vec<(String, f64)> = records
        .iter()
        .filter(|r| r.stack == WriteStack::Kernel.stack_name())
        .map(|r| (r.device.clone(), r.mib_s))
        .collect();
    for r in &mut records {
        let twin = kernel.iter().find(|(device, _)| *device == r.device);
        r.vs_kernel = twin.and_then(|&(_, mib_s)| ratio(r.mib_s, mib_s));
    }
    records
}

/// Folds one case's repetitions into a row.
fn record_of(
    device: String,
    stack: WriteStack,
    file_size: u64,
    bs: u64,
    runs: &[RunOut],
) -> WriteRecord {
    let rep_mib_s: Vec<f64> = runs
        .iter()
        .map(|r| file_size as f64 / MIB / (r.elapsed_ns.max(1) as f64 / 1e9))
        .collect();
    let n = rep_mib_s.len().max(1) as f64;
    let mean = rep_mib_s.iter().sum::<f64>() / n;
    let stdev = if rep_mib_s.len() > 1 {
        let squares: f64 = rep_mib_s.iter().map(|v| (v - mean).powi(2)).sum();
        (squares / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    let mean_s = |f: &dyn Fn(&RunOut) -> u64| runs.iter().map(f).sum::<u64>() as f64 / n / 1e9;
    let stats: Vec<RwStats> = runs.iter().filter_map(|r| r.stats).collect();
    WriteRecord {
        device,
        stack: stack.stack_name(),
        mode: stack.mode_name(),
        file_size,
        bs,
        reps: runs.len(),
        mib_s: mean,
        min_mib_s: rep_mib_s.iter().copied().fold(f64::INFINITY, f64::min),
        max_mib_s: rep_mib_s.iter().copied().fold(0.0, f64::max),
        stdev_mib_s: stdev,
        rep_mib_s,
        write_s: mean_s(&|r| r.write_ns),
        fsync_s: mean_s(&|r| r.elapsed_ns - r.write_ns),
        vs_kernel: None,
        commits: (!stats.is_empty()).then(|| CommitFigures::mean_of(&stats)),
    }
}

/// Per target: aios `async` over the kernel, and over aios `sync`.
pub(super) fn ratios(targets: &[Target], records: &[WriteRecord]) -> Vec<TargetRatios> {
    targets
        .iter()
        .map(|t| {
            let mib_s = |stack: WriteStack| {
                records
                    .iter()
                    .find(|r| {
                        (r.device.as_str(), r.stack, r.mode)
                            == (t.label(), stack.stack_name(), stack.mode_name())
                    })
                    .map(|r| r.mib_s)
            };
            let sync = mib_s(WriteStack::Aios(CommitOrder::Sync));
            let aios = mib_s(WriteStack::Aios(CommitOrder::Async));
            let kernel = mib_s(WriteStack::Kernel);
            TargetRatios {
                device: t.label().to_string(),
                seq_write_vs_kernel: aios.zip(kernel).and_then(|(a, k)| ratio(a, k)),
                async_vs_sync: aios.zip(sync).and_then(|(a, s)| ratio(a, s)),
            }
        })
        .collect()
}

/// `a / b` when `b` is positive.
fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite()).then(|| a / b)
}

/// The rows as text.
pub(super) fn table(records: &[WriteRecord]) -> String {
    let mut out = format!(
        "sequential buffered writes, one fsync at the end (aios: default mount options, a {} page \
         cache; the kernel: caches dropped before each repetition):\n",
        show_size(aios_cache_bytes())
    );
    out.push_str(&format!(
        "{:<10} {:<7} {:<9} {:>5} {:>5} {:>8} {:>17} {:>6} {:>8} {:>8} {:>8}\n",
        "device",
        "stack",
        "mode",
        "file",
        "bs",
        "MiB/s",
        "reps min..max",
        "sd %",
        "write s",
        "fsync s",
        "vs kern",
    ));
    for r in records {
        out.push_str(&format!(
            "{:<10} {:<7} {:<9} {:>5} {:>5} {:>8.1} {:>8.1}..{:<7.1} {:>6.1} {:>8.3} {:>8.3} {:>8}\n",
            r.device,
            r.stack,
            r.mode,
            show_size(r.file_size),
            show_size(r.bs),
            r.mib_s,
            r.min_mib_s,
            r.max_mib_s,
            100.0 * r.stdev_mib_s / r.mib_s.max(f64::MIN_POSITIVE),
            r.write_s,
            r.fsync_s,
            times(r.vs_kernel),
        ));
    }
    out
}

/// The ratios per target as text.
pub(super) fn ratio_table(targets: &[TargetRatios]) -> String {
    let mut out = String::from(
        "\nratios per target (seq_write_vs_kernel: aios async over the kernel, issue 14 asks \
         >= 0.9):\n",
    );
    out.push_str(&format!(
        "{:<10} {:>20} {:>14}\n",
        "device", "seq_write_vs_kernel", "async_vs_sync"
    ));
    for t in targets {
        out.push_str(&format!(
            "{:<10} {:>20} {:>14}\n",
            t.device,
            times(t.seq_write_vs_kernel),
            times(t.async_vs_sync),
        ));
    }
    out
}

/// Where aios's time went, per aios row: commits per repetition and the seconds of their
/// stages (summed over the repetition's commits, the periodic thread's included, which run
/// beside the writer).
pub(super) fn commit_table(records: &[WriteRecord]) -> String {
    let rows: Vec<(&WriteRecord, &CommitFigures)> = records
        .iter()
        .filter_map(|r| r.commits.as_ref().map(|c| (r, c)))
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\naios's commits per repetition (seconds summed over its commits; periodic ones run \
         beside the writer):\n",
    );
    out.push_str(&format!(
        "{:<10} {:<6} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}\n",
        "device",
        "mode",
        "commits",
        "periodic",
        "MiB/cmt",
        "build s",
        "submit s",
        "wait s",
        "flush s",
        "commit s",
        "all s",
        "elapsed s",
    ));
    for (r, c) in rows {
        out.push_str(&format!(
            "{:<10} {:<6} {:>8.1} {:>8.1} {:>9.2} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>9.3}\n",
            r.device,
            r.mode,
            c.commits,
            c.periodic_commits,
            r.file_size as f64 / MIB / c.commits.max(1.0),
            c.build_journal_s + c.checkpoint_s,
            c.submit_s,
            c.wait_s,
            c.flush_s,
            c.commit_s,
            c.total_s(),
            r.write_s + r.fsync_s,
        ));
    }
    out
}

fn times(ratio: Option<f64>) -> String {
    ratio.map_or("-".into(), |v| format!("{v:.3}"))
}
