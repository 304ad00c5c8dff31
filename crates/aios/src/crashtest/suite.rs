//! The CI budget (`aios crashtest --ci`): every campaign once, bounded, in every data mode and
//! commit order, on all cores.
//!
//! # What runs
//! For each of the four configurations (`data=ordered|journal` x `sync|async` order):
//! - every 1-op workload, every crash point, the full subset rule;
//! - a quarter of a fixed sample of [`TWO_OP_WORKLOADS`] 2-op workloads (each pair runs in one
//!   configuration), every crash point, the full subset rule;
//! - a quarter of [`RANDOM_WORKLOADS`] random workloads, [`RANDOM_POINTS`] crash points each.
//!
//! `e2fsck -fn` checks every [`FSCK_EVERY`]-th distinct recovered image (our own fsck checks
//! every one). Jobs are pulled by one worker per core; the total reports crash states checked
//! and states per second of wall time.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

use aios_fs::DataMode;
use aios_journal::runtime::CommitOrder;

use super::{run, Options, Report, WorkloadSet};

pub const TWO_OP_WORKLOADS: usize = 500;
pub const RANDOM_WORKLOADS: usize = 200;
pub const RANDOM_POINTS: usize = 20;
pub const FSCK_EVERY: usize = 10;
/// The campaigns' seed: CI checks the same states every run.
const SEED: u64 = 0xc1;

const CONFIGS: [(DataMode, CommitOrder); 4] = [
    (DataMode::Ordered, CommitOrder::Async),
    (DataMode::Ordered, CommitOrder::Sync),
    (DataMode::Journal, CommitOrder::Async),
    (DataMode::Journal, CommitOrder::Sync),
];

/// The campaigns of the budget, one [`Options`] each.
pub fn jobs() -> Vec<Options> {
    let sets = [
        WorkloadSet::OneOp,
        WorkloadSet::TwoOp {
            count: TWO_OP_WORKLOADS,
        },
        WorkloadSet::Random {
            count: RANDOM_WORKLOADS,
            ops_max: 200,
            points: RANDOM_POINTS,
        },
    ];
    let mut jobs = Vec::new();
    for set in sets {
        for (r, &(data, order)) in CONFIGS.iter().enumerate() {
            let stride = match set {
                WorkloadSet::OneOp => None,
                _ => Some((CONFIGS.len(), r)),
            };
            jobs.push(Options {
                set,
                data,
                order,
                seed: SEED,
                fsck_every: FSCK_EVERY,
                stride,
                ..Options::default()
            });
        }
    }
    jobs
}

/// Runs `jobs` on `workers` threads, printing each report to `out` as it ends; the total.
pub fn run_jobs(jobs: Vec<Options>, workers: usize, out: &mut (impl Write + Send)) -> Report {
    let started = Instant::now();
    let queue = Mutex::new(jobs.into_iter().collect::<VecDeque<_>>());
    let total = Mutex::new(Report::default());
    let out = Mutex::new(out);
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| loop {
                let Some(options) = queue.lock().ok().and_then(|mut q| q.pop_front()) else {
                    return;
                };
                let report = run(&options).unwrap_or_else(|e| Report {
                    violations_total: 1,
                    detail: vec![format!("campaign did not run: {e}")],
                    ..Report::default()
                });
                if let Ok(mut out) = out.lock() {
                    let _ = report.write_to(&mut **out, &options);
                }
                if let Ok(mut t) = total.lock() {
                    t.absorb(report);
                }
            });
        }
    });
    let mut total = total.into_inner().unwrap_or_default();
    total.elapsed = started.elapsed();
    total
}
