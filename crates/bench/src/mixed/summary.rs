//! `aios bench mixed` figures after the per-phase table: one row per target and stack with
//! the alone and mixed means, and the ratios the one-stack issue names, all computed from the
//! records (no timing here):
//!
//! | ratio | what |
//! | --- | --- |
//! | `readers_vs_alone` | the readers' mean latency in the mix over the same readers alone |
//! | `appenders_vs_alone` | the appenders' append+fsync mean in the mix over the same appenders alone |
//! | `ops_vs_kernel` | aios's total ops/s in the mix (reads + appends) over the kernel's on the same target; `null` without a kernel row, and on the kernel's own row |
//! | `two_readers_vs_one` | reads/s of two readers alone over one reader alone |
//!
//! Means are over every operation of every repetition; per second figures are the mean of
//! the repetitions' rates.

use super::*;
use serde::Serialize;

/// What a target runs: its device column and thread counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct TargetShape {
    pub device: String,
    pub readers: usize,
    pub appenders: usize,
}

/// One stack on one target: the phases' figures and the ratios.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct StackRow {
    pub stack: &'static str,
    pub mode: String,
    pub read_mean_ns_alone: Option<f64>,
    pub read_mean_ns_mixed: Option<f64>,
    pub reads_per_s_alone: Option<f64>,
    pub reads_per_s_mixed: Option<f64>,
    /// Device read requests per read in the mix (aios only): the page cache's miss ratio.
    pub read_miss_ratio_mixed: Option<f64>,
    pub append_mean_ns_alone: Option<f64>,
    pub append_mean_ns_mixed: Option<f64>,
    /// Reads and appends per second in the mix.
    pub ops_per_s_mixed: Option<f64>,
    pub readers_vs_alone: Option<f64>,
    pub appenders_vs_alone: Option<f64>,
    pub ops_vs_kernel: Option<f64>,
    pub two_readers_vs_one: Option<f64>,
}

/// A target's rows, the JSON's per-target object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct TargetSummary {
    #[serde(flatten)]
    pub shape: TargetShape,
    pub stacks: Vec<StackRow>,
}

/// The `--json` document.
#[derive(Debug, Serialize)]
pub(super) struct Json<'a> {
    pub targets: &'a [TargetSummary],
    pub records: &'a [Record],
}

pub(super) fn json<'a>(targets: &'a [TargetSummary], records: &'a [Record]) -> Json<'a> {
    Json { targets, records }
}

/// Rows per target, one per (stack, mode) found in `records`, in record order.
pub(super) fn summarize(shapes: &[TargetShape], records: &[Record]) -> Vec<TargetSummary> {
    shapes
        .iter()
        .map(|shape| {
            let mut stacks: Vec<(&'static str, &str)> = Vec::new();
            for r in records.iter().filter(|r| r.device == shape.device) {
                if !stacks.contains(&(r.stack, r.mode.as_str())) {
                    stacks.push((r.stack, r.mode.as_str()));
                }
            }
            let mut rows: Vec<StackRow> = stacks
                .iter()
                .map(|&(stack, mode)| stack_row(shape, stack, mode, records))
                .collect();
            let kernel_ops = rows
                .iter()
                .find(|r| r.stack == MixedStack::Kernel.stack_name())
                .and_then(|r| r.ops_per_s_mixed);
            for row in rows
                .iter_mut()
                .filter(|r| r.stack != MixedStack::Kernel.stack_name())
            {
                row.ops_vs_kernel = ratio(row.ops_per_s_mixed, kernel_ops);
            }
            TargetSummary {
                shape: shape.clone(),
                stacks: rows,
            }
        })
        .collect()
}

fn stack_row(shape: &TargetShape, stack: &'static str, mode: &str, records: &[Record]) -> StackRow {
    let find = |workload: &str, threads: usize| {
        records.iter().find(|r| {
            (
                r.device.as_str(),
                r.stack,
                r.mode.as_str(),
                r.workload,
                r.threads,
            ) == (shape.device.as_str(), stack, mode, workload, threads)
        })
    };
    let read_alone = find(READ_ALONE, shape.readers);
    let read_mixed = find(READ_MIXED, shape.readers);
    let append_alone = find(APPEND_ALONE, shape.appenders);
    let append_mixed = find(APPEND_MIXED, shape.appenders);
    let mean = |r: Option<&Record>| r.map(|r| r.mean_ns);
    let rate = |r: Option<&Record>| r.map(|r| r.iops);
    let ops_per_s_mixed = match (rate(read_mixed), rate(append_mixed)) {
        (Some(reads), Some(appends)) => Some(reads + appends),
        _ => None,
    };
    StackRow {
        stack,
        mode: mode.to_string(),
        read_mean_ns_alone: mean(read_alone),
        read_mean_ns_mixed: mean(read_mixed),
        reads_per_s_alone: rate(read_alone),
        reads_per_s_mixed: rate(read_mixed),
        read_miss_ratio_mixed: read_mixed.and_then(|r| r.miss_ratio),
        append_mean_ns_alone: mean(append_alone),
        append_mean_ns_mixed: mean(append_mixed),
        ops_per_s_mixed,
        readers_vs_alone: ratio(mean(read_mixed), mean(read_alone)),
        appenders_vs_alone: ratio(mean(append_mixed), mean(append_alone)),
        ops_vs_kernel: None,
        two_readers_vs_one: ratio(rate(find(READ_ALONE, 2)), rate(find(READ_ALONE, 1))),
    }
}

/// `a / b` when both are known and `b` is positive.
fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() => Some(a / b),
        _ => None,
    }
}

/// The rows as text: latencies in us, rates per second, ratios.
pub(super) fn table(targets: &[TargetSummary]) -> String {
    let mut out = String::from(
        "\nreaders beside appenders (means; x = mixed over alone; R readers + A appenders; miss = \
         aios's device read requests per read in the mix, the kernel's reads all miss):\n",
    );
    out.push_str(&format!(
        "{:<10} {:<7} {:<9} {:>3} {:>9} {:>9} {:>10} {:>10} {:>6} {:>5} {:>10} {:>10} {:>6} {:>10} {:>8} {:>8}\n",
        "device", "stack", "mode", "R+A", "read us", "mixed us", "reads/s", "mixed /s", "x", "miss",
        "append us", "mixed us", "x", "mix ops/s", "vs kern", "2rd/1rd",
    ));
    for t in targets {
        for r in &t.stacks {
            let threads = format!("{}+{}", t.shape.readers, t.shape.appenders);
            out.push_str(&format!(
                "{:<10} {:<7} {:<9} {:>3} {:>9} {:>9} {:>10} {:>10} {:>6} {:>5} {:>10} {:>10} {:>6} {:>10} {:>8} {:>8}\n",
                t.shape.device,
                r.stack,
                r.mode,
                threads,
                us(r.read_mean_ns_alone),
                us(r.read_mean_ns_mixed),
                count(r.reads_per_s_alone),
                count(r.reads_per_s_mixed),
                times(r.readers_vs_alone),
                times(r.read_miss_ratio_mixed),
                us(r.append_mean_ns_alone),
                us(r.append_mean_ns_mixed),
                times(r.appenders_vs_alone),
                count(r.ops_per_s_mixed),
                times(r.ops_vs_kernel),
                times(r.two_readers_vs_one),
            ));
        }
    }
    out
}

fn us(ns: Option<f64>) -> String {
    ns.map_or("-".into(), |ns| format!("{:.1}", ns / 1e3))
}

fn count(per_s: Option<f64>) -> String {
    per_s.map_or("-".into(), |v| format!("{v:.0}"))
}

fn times(ratio: Option<f64>) -> String {
    ratio.map_or("-".into(), |v| format!("{v:.2}"))
}
