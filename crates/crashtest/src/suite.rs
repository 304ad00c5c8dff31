//! The CI budget (`aios crashtest --ci`): every campaign once, bounded, in every data mode and
//! commit order, on all cores.
//!
//! # What runs
//! For each of the four configurations (`data=ordered|journal` x `sync|async` order):
//! - every 1-op workload, every crash point, the full subset rule, recoveries crashed at every
//!   event;
//! - a quarter of a fixed sample of [`TWO_OP_WORKLOADS`] 2-op workloads (each pair runs in one
//!   configuration), every crash point, [`TWO_OP_SUBSETS`];
//! - a quarter of [`RANDOM_WORKLOADS`] random workloads, [`RANDOM_POINTS`] crash points each,
//!   [`RANDOM_SUBSETS`].
//!
//! The sets beyond 1-op crash each recovery once (seeded) and take fewer subsets per point, to
//! fit the budget on two cores; `--soak` runs them in full. The EIO sweep runs in both data
//! modes.
//!
//! Then every planted bug once (ordered mode, async order): each must be caught within
//! [`PLANT_FIRST_VIOLATION_MAX`] of harness time.
//!
//! `e2fsck -fn` checks every [`FSCK_EVERY`]-th distinct recovered image (our own fsck checks
//! every one). Jobs are pulled by one worker per core; the total reports crash states checked
//! and states per second of wall time.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aios_fs::DataMode;
use aios_journal::runtime::{CommitOrder, PlantedBug};

use super::recover::RecoveryCrashes;
use super::states::SubsetPolicy;
use super::{eio, run, Options, Report, WorkloadSet};

pub const TWO_OP_WORKLOADS: usize = 500;
pub const RANDOM_WORKLOADS: usize = 200;
pub const RANDOM_POINTS: usize = 20;
pub const FSCK_EVERY: usize = 10;
/// Subsets per crash point of the 2-op set: all up to 6 unflushed writes, else 16.
pub const TWO_OP_SUBSETS: SubsetPolicy = SubsetPolicy {
    all_max: 6,
    seeded: 14,
};
/// Subsets per crash point of the random set: all up to 2, else 8.
pub const RANDOM_SUBSETS: SubsetPolicy = SubsetPolicy {
    all_max: 2,
    seeded: 6,
};
/// The campaigns' seed: CI checks the same states every run.
const SEED: u64 = 0xc1;
/// The bound on a planted bug's time to its first violation.
pub const PLANT_FIRST_VIOLATION_MAX: Duration = Duration::from_secs(30);

/// One unit of the budget.
#[derive(Debug, Clone)]
pub enum Job {
    Campaign(Options),
    Eio(Options),
    /// A campaign with a bug planted: it must find a violation, soon.
    Plant(Options),
}

/// What the budget found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The campaigns and EIO sweeps, added up (EIO runs count as states).
    pub total: Report,
    /// Per planted bug: its name and the time to its first violation (`None`: not caught).
    pub planted: Vec<(String, Option<Duration>)>,
}

impl Outcome {
    /// Violations of the campaigns and sweeps, plus planted bugs caught late or never.
    pub fn failures(&self) -> usize {
        self.total.violations_total
            + self
                .planted
                .iter()
                .filter(|(_, t)| t.is_none_or(|t| t > PLANT_FIRST_VIOLATION_MAX))
                .count()
    }
}

const CONFIGS: [(DataMode, CommitOrder); 4] = [
    (DataMode::Ordered, CommitOrder::Async),
    (DataMode::Ordered, CommitOrder::Sync),
    (DataMode::Journal, CommitOrder::Async),
    (DataMode::Journal, CommitOrder::Sync),
];

/// The budget: the campaigns and EIO sweeps of every configuration, every planted bug.
pub fn jobs() -> Vec<Job> {
    let mut jobs: Vec<Job> = campaigns().into_iter().map(Job::Campaign).collect();
    for (data, order) in [CONFIGS[0], CONFIGS[3]] {
        jobs.push(Job::Eio(Options {
            data,
            order,
            seed: SEED,
            ..Options::default()
        }));
    }
    let base = Options {
        seed: SEED,
        ..Options::default()
    };
    jobs.extend(
        PlantedBug::ALL
            .iter()
            .map(|&bug| Job::Plant(base.planted(bug))),
    );
    jobs
}

/// The campaigns of the budget, one [`Options`] each.
pub fn campaigns() -> Vec<Options> {
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
            let (stride, subsets, recovery_crashes) = match set {
                WorkloadSet::OneOp => (None, None, Options::default().recovery_crashes),
                WorkloadSet::TwoOp { .. } => (
                    Some((CONFIGS.len(), r)),
                    Some(TWO_OP_SUBSETS),
                    RecoveryCrashes::Seeded,
                ),
                WorkloadSet::Random { .. } => (
                    Some((CONFIGS.len(), r)),
                    Some(RANDOM_SUBSETS),
                    RecoveryCrashes::Seeded,
                ),
            };
            jobs.push(Options {
                set,
                data,
                order,
                seed: SEED,
                fsck_every: FSCK_EVERY,
                stride,
                subsets,
                recovery_crashes,
                ..Options::default()
            });
        }
    }
    jobs
}

/// Runs `jobs` on `workers` threads, printing each report to `out` as it ends.
pub fn run_jobs(jobs: Vec<Job>, workers: usize, out: &mut (impl Write + Send)) -> Outcome {
    let started = Instant::now();
    let queue = Mutex::new(jobs.into_iter().collect::<VecDeque<_>>());
    let outcome = Mutex::new(Outcome::default());
    let out = Mutex::new(out);
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| loop {
                let Some(job) = queue.lock().ok().and_then(|mut q| q.pop_front()) else {
                    return;
                };
                let mut text = Vec::new();
                let done = run_job(&job, &mut text);
                if let Ok(mut out) = out.lock() {
                    let _ = out.write_all(&text);
                }
                if let Ok(mut o) = outcome.lock() {
                    match done {
                        Done::Report(r) => o.total.absorb(r),
                        Done::Planted(name, first) => o.planted.push((name, first)),
                    }
                }
            });
        }
    });
    let mut outcome = outcome.into_inner().unwrap_or_default();
    outcome.total.elapsed = started.elapsed();
    outcome
}

enum Done {
    Report(Report),
    Planted(String, Option<Duration>),
}

fn failed(e: String) -> Report {
    Report {
        violations_total: 1,
        detail: vec![format!("campaign did not run: {e}")],
        ..Report::default()
    }
}

/// Runs one job, its report written to `text`.
fn run_job(job: &Job, text: &mut Vec<u8>) -> Done {
    match job {
        Job::Campaign(options) => {
            let report = run(options).unwrap_or_else(failed);
            let _ = report.write_to(text, options);
            Done::Report(report)
        }
        Job::Eio(options) => match eio::run(options) {
            Ok(r) => {
                let _ = r.write_to(text, options);
                Done::Report(Report {
                    workloads: 1,
                    states: r.runs,
                    e2fsck_runs: r.e2fsck_runs,
                    violations_total: r.violations_total,
                    elapsed: r.elapsed,
                    ..Report::default()
                })
            }
            Err(e) => Done::Report(failed(e)),
        },
        Job::Plant(options) => {
            let bug = options
                .plant
                .map_or("none".to_string(), |b| b.name().to_string());
            // The failed-write bug shows only when a write fails: the EIO sweep finds it.
            let first = if options.plant == Some(PlantedBug::CleanAfterFailedWrite) {
                eio::run(options).ok().and_then(|r| r.first_violation)
            } else {
                run(options).ok().and_then(|r| r.first_violation)
            };
            let _ = writeln!(
                text,
                "planted bug {bug}: {}",
                first.map_or("NOT CAUGHT".to_string(), |t| format!(
                    "first violation after {:.1} s",
                    t.as_secs_f64()
                ))
            );
            Done::Planted(bug, first)
        }
    }
}
