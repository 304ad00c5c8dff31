//! `aios crashtest --concurrent` end to end, bounded for debug builds: 4 threads x 1,000
//! actions with 10 crashes taken mid-run find no violation (in `data=ordered` with the async
//! commit and `data=journal` with the sync one), and the crashes did demand acknowledged
//! syncs. The harness must also fail when it should: crash images from before any op are
//! reported, and a thread that stops progressing trips the watchdog, which names it.
//! `aios crashtest --concurrent` runs 4 x 10,000 with 100 crashes. Skips loudly without
//! e2fsprogs.

mod common;
use common::have_e2fsprogs;

use std::time::{Duration, Instant};

use aios_crashtest::concurrent::{run, Options};
use aios_fs::DataMode;
use aios_journal::runtime::CommitOrder;

fn bounded(data: DataMode, order: CommitOrder, seed: u64) -> Options {
    Options {
        data,
        order,
        seed,
        threads: 4,
        ops_per_thread: 1_000,
        crashes: 10,
        ..Options::default()
    }
}

fn assert_clean_run(options: &Options) {
    let started = Instant::now();
    let report = run(options).unwrap_or_else(|e| panic!("{options:?}: {e}"));
    report.print(options);
    eprintln!("{:?}: {:.1?}", options.flags(), started.elapsed());
    assert_eq!(
        report.violations_total,
        0,
        "{}:\n{}",
        options.flags(),
        report.violations.join("\n")
    );
    assert_eq!(
        report.actions,
        vec![1_000; 4],
        "every thread ran to the end"
    );
    assert!(report.syncs_acked > 100, "{report:?}");
    assert_eq!(report.crashes_taken, 10, "{report:?}");
    assert_eq!(report.crashes_checked, 10, "{report:?}");
    assert!(
        report.crashes_demanding >= 5,
        "too few crashes demanded an acknowledged sync (vacuous): {report:?}"
    );
    assert!(report.replayed > 0, "no crash needed recovery: {report:?}");
    assert!(
        report.cross_thread_demands >= 10,
        "the cross-thread order check demanded almost nothing: {report:?}"
    );
    assert_eq!(report.e2fsck_runs, 11, "10 crashes and the final image");
}

#[test]
fn four_threads_with_crashes_mid_run_ordered_async() {
    if !have_e2fsprogs("four_threads_with_crashes_mid_run_ordered_async") {
        return;
    }
    assert_clean_run(&bounded(DataMode::Ordered, CommitOrder::Async, 0x5eed));
}

#[test]
fn four_threads_with_crashes_mid_run_journal_sync() {
    if !have_e2fsprogs("four_threads_with_crashes_mid_run_journal_sync") {
        return;
    }
    assert_clean_run(&bounded(DataMode::Journal, CommitOrder::Sync, 0x5eee));
}

/// Crash images taken before any op, judged with the counters of real crash moments: every
/// crash that demands an acknowledged sync must be reported.
#[test]
fn stale_crash_images_are_reported() {
    if !have_e2fsprogs("stale_crash_images_are_reported") {
        return;
    }
    let options = Options {
        ops_per_thread: 300,
        crashes: 5,
        stale_images: true,
        ..bounded(DataMode::Ordered, CommitOrder::Async, 7)
    };
    let report = run(&options).unwrap_or_else(|e| panic!("{e}"));
    report.print(&options);
    assert_eq!(report.crashes_checked, 5, "{report:?}");
    assert!(report.crashes_demanding >= 4, "{report:?}");
    assert!(
        report.violations_total >= report.crashes_demanding,
        "{report:?}"
    );
    // Each one is a crash judged against its models, and nothing else is wrong (the final
    // image is its models). A stale (empty) image can also match a prefix of one thread that
    // ends in an unlink while another thread's earlier op is missing: then the cross-thread
    // order check is the one that reports it (which one fires depends on the interleaving).
    assert!(
        report.violations.iter().all(|v| v.starts_with("crash ")
            && (v.contains("no allowed prefix") || v.contains("cross-thread order"))),
        "{:#?}",
        report.violations
    );
}

/// A thread that stops making progress fails the run within the watchdog's time, and the
/// dump says which thread and what it was doing.
#[test]
fn watchdog_names_a_stalled_thread() {
    if !have_e2fsprogs("watchdog_names_a_stalled_thread") {
        return;
    }
    let options = Options {
        ops_per_thread: 200,
        crashes: 0,
        watchdog: Duration::from_millis(1500),
        // Thread 2 stalls at its 50th action; the others finish theirs, then nothing moves.
        stall: Some((2, 50)),
        ..bounded(DataMode::Ordered, CommitOrder::Async, 3)
    };
    let started = Instant::now();
    let dump = match run(&options) {
        Ok(r) => panic!("the watchdog did not fire: {r:?}"),
        Err(e) => e,
    };
    eprintln!("{dump}");
    assert!(dump.starts_with("watchdog: no action finished"), "{dump}");
    assert!(
        dump.contains("thread 2: 50 actions") && dump.contains("stalled on purpose"),
        "{dump}"
    );
    assert!(
        !dump.contains("left running"),
        "the stalled thread should stop at the abort: {dump}"
    );
    assert!(started.elapsed() < Duration::from_secs(60), "{dump}");
}
