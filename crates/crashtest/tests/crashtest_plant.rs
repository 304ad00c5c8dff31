//! The harness catches every planted protocol bug (`aios crashtest --plant NAME`): for each of
//! the nine, a campaign (or for the failed-write bug, the EIO sweep) with the bug planted
//! reports a violation within 30 s of harness time, and the violating state, replayed without
//! the bug, passes (so the bug, not the harness, made it fail).
//!
//! The bugs run one after another (timings of side-by-side runs would measure the machine).
//! Skips loudly without e2fsprogs.

mod common;
use common::have_e2fsprogs;

use std::time::Duration;

use aios_crashtest::{eio, replay_one, run, Options};
use aios_journal::runtime::PlantedBug;

/// The bound on the time to the first violation.
const FIRST_VIOLATION_MAX: Duration = Duration::from_secs(30);

/// The spec `--replay` takes, from a violation's replay command (its last word).
fn replay_spec(replay: &str) -> &str {
    replay.rsplit(' ').next().unwrap_or_default()
}

#[test]
fn every_planted_bug_is_caught_within_30_s() {
    if !have_e2fsprogs("every_planted_bug_is_caught") {
        return;
    }
    let base = Options {
        seed: 0xc4a5,
        ..Options::default()
    };
    let mut table = Vec::new();
    for bug in PlantedBug::ALL {
        let options = base.planted(bug);
        let (violations, first, what, spec) = if bug == PlantedBug::CleanAfterFailedWrite {
            let r = eio::run(&options).unwrap_or_else(|e| panic!("{bug}: {e}"));
            let v = r.violations.first().cloned().unwrap_or_default();
            let spec = v.split(':').take(3).collect::<Vec<_>>().join(":");
            (r.violations_total, r.first_violation, v, spec)
        } else {
            let r = run(&options).unwrap_or_else(|e| panic!("{bug}: {e}"));
            r.print(&options);
            let v = r.violations.first();
            let what = v.map(|v| v.to_string()).unwrap_or_default();
            let spec = v.map(|v| replay_spec(&v.replay).to_string());
            (
                r.violations_total,
                r.first_violation,
                what,
                spec.unwrap_or_default(),
            )
        };
        assert!(violations >= 1, "{bug}: the harness found nothing");
        let first = first.unwrap_or_else(|| panic!("{bug}: no time of the first violation"));
        eprintln!(
            "{bug}: first violation after {:.2} s: {what}",
            first.as_secs_f64()
        );
        assert!(
            first <= FIRST_VIOLATION_MAX,
            "{bug}: first violation after {first:?}"
        );
        // The same state without the bug passes: the bug made the violation.
        let clean = Options {
            plant: None,
            ..options.clone()
        };
        let again = if bug == PlantedBug::CleanAfterFailedWrite {
            eio::replay_one(&clean, &spec).map(|r| r.violations_total)
        } else {
            replay_one(&clean, &spec).map(|r| r.violations_total)
        };
        assert_eq!(again, Ok(0), "{bug}: {spec} without the bug");
        table.push(format!("{bug:<22} {:>7.2} s  {spec}", first.as_secs_f64()));
    }
    eprintln!("planted bug, time to the first violation, state:");
    for line in table {
        eprintln!("  {line}");
    }
}
