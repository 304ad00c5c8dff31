//! Soak mode (`aios crashtest --soak --minutes N`): the campaigns again and again on fresh
//! seeds until the time is up, in every data mode and commit order.
//!
//! # Role
//! Each round takes the next seed of a stream (from `--seed`, or the clock when it is 0) and
//! runs, for each of the four configurations, the 1-op workloads (fresh seeded subsets), a
//! fresh sample of 2-op workloads and fresh random workloads. Reports add up; a line per
//! round shows progress. Every violation keeps its replay command, which names its seed, so
//! a soak finding replays like any other.
//!
//! # Invariants
//! A round is never cut short: the time is checked between rounds, so the totals count whole
//! campaigns.

use std::io::Write;
use std::time::{Duration, Instant};

use aios_fs::DataMode;
use aios_journal::runtime::CommitOrder;

use super::{run, states, Options, Report, WorkloadSet};

/// 2-op workloads per configuration and round.
const TWO_OP_PER_ROUND: usize = 40;
/// Random workloads per configuration and round.
const RANDOM_PER_ROUND: usize = 4;

/// Runs rounds until `minutes` have passed; progress lines go to `out`.
pub fn soak(base: &Options, minutes: f64, out: &mut impl Write) -> Result<Report, String> {
    let started = Instant::now();
    let budget = Duration::from_secs_f64(minutes.max(0.0) * 60.0);
    let mut seed = match base.seed {
        0 => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
        s => s,
    };
    let _ = writeln!(out, "soak: {minutes} minutes from seed {seed:#x}");
    let mut total = Report::default();
    let mut round = 0u64;
    while round == 0 || started.elapsed() < budget {
        round += 1;
        for (data, order) in configs() {
            for set in round_sets() {
                seed = states::splitmix(seed);
                let options = Options {
                    set,
                    data,
                    order,
                    seed,
                    ..base.clone()
                };
                let r = run(&options)?;
                if r.violations_total > 0 {
                    let _ = r.write_to(out, &options);
                }
                total.absorb(r);
            }
        }
        let _ = writeln!(
            out,
            "soak round {round}: {:.0} s, {} workloads, {} ops, {} crash states ({:.0}/s), {} \
             e2fsck runs, {} violations",
            started.elapsed().as_secs_f64(),
            total.workloads,
            total.ops,
            total.states,
            total.states as f64 / started.elapsed().as_secs_f64().max(1e-9),
            total.e2fsck_runs,
            total.violations_total
        );
    }
    total.elapsed = started.elapsed();
    let _ = writeln!(
        out,
        "soak total: {round} rounds in {:.1} min, {} workloads ({} ops), {} crash points, {} \
         crash states ({} after an acknowledged sync), {} distinct images ({} replayed a \
         journal), {} recoveries crashed and redone, {} e2fsck runs, {:.0} states/s, {} \
         violations",
        total.elapsed.as_secs_f64() / 60.0,
        total.workloads,
        total.ops,
        total.crash_points,
        total.states,
        total.acked_states,
        total.distinct_images,
        total.replayed,
        total.recovery_crashes,
        total.e2fsck_runs,
        total.states_per_second(),
        total.violations_total
    );
    for v in &total.violations {
        let _ = writeln!(out, "{v}");
    }
    Ok(total)
}

fn configs() -> [(DataMode, CommitOrder); 4] {
    [
        (DataMode::Ordered, CommitOrder::Async),
        (DataMode::Ordered, CommitOrder::Sync),
        (DataMode::Journal, CommitOrder::Async),
        (DataMode::Journal, CommitOrder::Sync),
    ]
}

fn round_sets() -> [WorkloadSet; 3] {
    [
        WorkloadSet::OneOp,
        WorkloadSet::TwoOp {
            count: TWO_OP_PER_ROUND,
        },
        WorkloadSet::Random {
            count: RANDOM_PER_ROUND,
            ops_max: 200,
            points: 20,
        },
    ]
}
