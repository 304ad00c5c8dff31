//! Benchmark results: one record per case, printed as a table and written as JSON.
//!
//! Every record merges the latency histograms of all repetitions; `rep_mean_ns` keeps each
//! repetition's mean so the spread is visible. `vs_kernel` is this record's mean divided by the
//! kernel path's mean for the same device and shape, measured in the same run.

use super::case::{Case, Stack};
use super::runner::{new_histogram, Sample};
use aios_spec::size::show_size;
use hdrhistogram::Histogram;
use serde::Serialize;

/// One line of the results, also the JSON record.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub device: String,
    pub stack: &'static str,
    pub mode: String,
    pub workload: &'static str,
    pub bs: u64,
    pub threads: usize,
    pub qd: u16,
    pub mean_ns: f64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub iops: f64,
    pub reps: usize,
    pub rep_mean_ns: Vec<f64>,
    pub rep_iops: Vec<f64>,
    /// The emulated device's modelled time for one such command at QD1, if known.
    pub device_time_ns: Option<u64>,
    /// `mean_ns` over the kernel path's `mean_ns` for the same device and shape.
    pub vs_kernel: Option<f64>,
    /// Page-cache lookups that missed over all lookups, for file-system benchmarks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub miss_ratio: Option<f64>,
}

/// What a record describes, for benchmarks whose cases are not a [`Case`].
#[derive(Debug, Clone)]
pub struct Shape {
    pub device: String,
    pub stack: &'static str,
    pub mode: String,
    pub workload: &'static str,
    pub bs: u64,
    pub threads: usize,
    pub qd: u16,
}

/// Folds the repetitions of one case into a record.
pub fn record(
    case: &Case,
    device: &str,
    samples: &[Sample],
    device_time_ns: Option<u64>,
) -> Record {
    let shape = Shape {
        device: device.to_string(),
        stack: case.stack.stack_name(),
        mode: case.stack.mode_name(),
        workload: case.workload.name(),
        bs: case.bs_bytes,
        threads: case.threads,
        qd: case.qd,
    };
    record_of(shape, samples, device_time_ns)
}

/// Folds the repetitions of one shape into a record.
pub fn record_of(shape: Shape, samples: &[Sample], device_time_ns: Option<u64>) -> Record {
    let mut all: Histogram<u64> = new_histogram();
    for s in samples {
        all.add(&s.latency_ns).ok();
    }
    let rep_iops: Vec<f64> = samples.iter().map(Sample::iops).collect();
    Record {
        device: shape.device,
        stack: shape.stack,
        mode: shape.mode,
        workload: shape.workload,
        bs: shape.bs,
        threads: shape.threads,
        qd: shape.qd,
        mean_ns: all.mean(),
        p50_ns: all.value_at_quantile(0.50),
        p99_ns: all.value_at_quantile(0.99),
        p999_ns: all.value_at_quantile(0.999),
        iops: rep_iops.iter().sum::<f64>() / rep_iops.len().max(1) as f64,
        reps: samples.len(),
        rep_mean_ns: samples.iter().map(|s| s.latency_ns.mean()).collect(),
        rep_iops,
        device_time_ns,
        vs_kernel: None,
        miss_ratio: None,
    }
}

/// Fills `vs_kernel` for every record that has a kernel twin.
pub fn compare_with_kernel(records: &mut [Record]) {
    compare_with(records, |r| r.stack == Stack::KernelPread.stack_name());
}

/// Fills `vs_kernel` against the first record of the same device and shape that
/// `is_reference` picks.
pub fn compare_with(records: &mut [Record], is_reference: impl Fn(&Record) -> bool) {
    let kernel: Vec<Record> = records
        .iter()
        .filter(|r| is_reference(r))
        .cloned()
        .collect();
    for r in records.iter_mut() {
        let twin = kernel.iter().find(|k| {
            (k.device.as_str(), k.workload, k.bs, k.threads, k.qd)
                == (r.device.as_str(), r.workload, r.bs, r.threads, r.qd)
        });
        r.vs_kernel = twin.map(|k| r.mean_ns / k.mean_ns);
    }
}

/// The results as a readable table.
pub fn table(records: &[Record]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<24} {:<7} {:<10} {:<13} {:>5} {:>3} {:>3} {:>9} {:>9} {:>9} {:>9} {:>9} {:>17} {:>8} {:>8}\n",
        "device", "stack", "mode", "workload", "bs", "thr", "qd", "mean us", "p50 us", "p99 us", "p99.9 us", "IOPS",
        "rep means us", "vs kern", "-dev us"
    ));
    for r in records {
        let (lo, hi) = r
            .rep_mean_ns
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), &m| (lo.min(m), hi.max(m)));
        let vs = r.vs_kernel.map_or("-".into(), |v| format!("{v:.3}"));
        let overhead = r.device_time_ns.map_or("-".into(), |d| {
            format!("{:.2}", (r.mean_ns - d as f64) / 1e3)
        });
        out.push_str(&format!(
            "{:<24} {:<7} {:<10} {:<13} {:>5} {:>3} {:>3} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.0} {:>8.2}..{:<7.2} {:>8} {:>8}\n",
            truncate(&r.device, 24),
            r.stack,
            r.mode,
            r.workload,
            show_size(r.bs),
            r.threads,
            r.qd,
            r.mean_ns / 1e3,
            r.p50_ns as f64 / 1e3,
            r.p99_ns as f64 / 1e3,
            r.p999_ns as f64 / 1e3,
            r.iops,
            lo / 1e3,
            hi / 1e3,
            vs,
            overhead,
        ));
    }
    out
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let tail: String = s
            .chars()
            .rev()
            .take(n - 1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("…{tail}")
    }
}
