//! `aios crashtest --eio` end to end: the EIO sweep (a fault at each write and each flush of a
//! 50-op run, once and sticky) finds nothing in both data modes, and it does catch the planted
//! "clean after a failed write" bug through both its durability check (an `Ok` sync of data
//! that is not durable) and its read-only check (the mount stayed writable after the failure).
//!
//! The whole sweep runs in each mode (about 160 runs each, seconds). Skips loudly without
//! e2fsprogs.

mod common;
use common::have_e2fsprogs;

use aios_crashtest::{eio, Options};
use aios_fs::DataMode;
use aios_journal::runtime::{CommitOrder, PlantedBug};

#[test]
fn eio_sweep_finds_nothing_in_both_modes() {
    if !have_e2fsprogs("eio_sweep_finds_nothing") {
        return;
    }
    for (data, order) in [
        (DataMode::Ordered, CommitOrder::Async),
        (DataMode::Journal, CommitOrder::Sync),
    ] {
        let options = Options {
            data,
            order,
            ..Options::default()
        };
        let r = eio::run(&options).unwrap_or_else(|e| panic!("{e}"));
        r.write_to(&mut std::io::stderr(), &options).unwrap();
        assert!(r.writes > 20 && r.flushes > 10, "{r:?}");
        assert_eq!(r.runs as u64, 2 * (r.writes + r.flushes));
        assert_eq!(r.fired, r.runs, "every swept command is reached");
        assert_eq!(r.e2fsck_runs, r.runs);
        assert_eq!(r.violations_total, 0, "{:#?}", r.violations);
    }
}

#[test]
fn eio_sweep_catches_a_failed_write_reported_durable_later() {
    if !have_e2fsprogs("eio_sweep_catches") {
        return;
    }
    let options = Options {
        plant: Some(PlantedBug::CleanAfterFailedWrite),
        fsck_every: 4,
        ..Options::default()
    };
    let r = eio::run(&options).unwrap_or_else(|e| panic!("{e}"));
    r.write_to(&mut std::io::stderr(), &options).unwrap();
    assert!(r.violations_total > 0);
    let has = |what: &str| r.violations.iter().any(|v| v.contains(what));
    assert!(has("the mount stays writable"), "{:#?}", r.violations);
    // Sticky: the second fdatasync of /e0 (op 9) returned Ok for the overwrite (op 7) whose
    // write failed in op 8, and no later write of that block healed it.
    assert!(
        r.violations.iter().any(|v| v.starts_with("write:8:sticky")
            && v.contains("durable image")
            && v.contains("lost")
            && v.contains("(fdatasync /e0)")),
        "{:#?}",
        r.violations
    );
    // Replaying a reported fault reproduces it.
    let spec = r.violations[0]
        .split(':')
        .take(3)
        .collect::<Vec<_>>()
        .join(":");
    let again = eio::replay_one(&options, &spec).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.violations_total, 1);
}
