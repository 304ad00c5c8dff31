//! `aios crashtest` end to end: the 1-op campaign in both data modes and both commit orders
//! finds no violation, and the checker does report a crash state that lost an acknowledged
//! write, holds foreign data, or disagrees with the model (a harness that cannot fail is
//! worthless).
//!
//! The campaign tests are bounded for debug builds: each of the four configurations runs a
//! quarter of the 1-op workloads (every workload runs in one of them), a few 2-op and one
//! random workload per set, `e2fsck -fn` on every third or fourth distinct recovered image.
//! The CI budget proper (all 1-op workloads in every configuration, 500 2-op, 200 random) runs
//! in release: `aios crashtest --ci`, from `.ci/run`. Skips loudly without e2fsprogs.

mod common;
use common::have_e2fsprogs;

use aios_crashtest::model::{tag_record, tagged, Node, Tag};
use aios_crashtest::{
    check, check_image, parse_replay, record_named, replay_one, run, Options, WorkloadSet,
};
use aios_device_emu::DiskImage;
use aios_fs::DataMode;
use aios_journal::runtime::CommitOrder;

#[test]
fn one_op_campaign_finds_no_violation_in_both_modes_and_orders() {
    if !have_e2fsprogs("one_op_campaign") {
        return;
    }
    let configs = [
        (DataMode::Ordered, CommitOrder::Async),
        (DataMode::Ordered, CommitOrder::Sync),
        (DataMode::Journal, CommitOrder::Async),
        (DataMode::Journal, CommitOrder::Sync),
    ];
    let started = std::time::Instant::now();
    for pair in configs.chunks(2) {
        std::thread::scope(|s| {
            let runs: Vec<_> = pair
                .iter()
                .map(|&(data, order)| {
                    let r = configs
                        .iter()
                        .position(|c| *c == (data, order))
                        .unwrap_or(0);
                    s.spawn(move || {
                        let options = Options {
                            data,
                            order,
                            seed: 0xc4a5,
                            fsck_every: 3,
                            stride: Some((configs.len(), r)),
                            ..Options::default()
                        };
                        let report = run(&options).unwrap_or_else(|e| panic!("{e}"));
                        report.print(&options);
                        (options, report)
                    })
                })
                .collect();
            for h in runs {
                let (options, report) = h.join().expect("campaign thread");
                assert!(report.workloads >= 15, "{options:?}: {report:?}");
                assert!(report.states > 0 && report.e2fsck_runs > 0, "{report:?}");
                assert!(report.replayed > 0, "no state needed recovery: {report:?}");
                let first: Vec<String> = report.violations.iter().map(|v| v.to_string()).collect();
                assert_eq!(
                    report.violations_total,
                    0,
                    "{options:?}:\n{}",
                    first.join("\n")
                );
            }
        });
    }
    eprintln!("campaign: {:.1?}", started.elapsed());
}

/// The device block whose first record is `tag`, in `image`.
fn block_with(image: &DiskImage, tag: Tag) -> u64 {
    let want = tag_record(tag);
    let found = image
        .written_blocks()
        .find(|&b| image.block(b).is_some_and(|d| d[..32] == want));
    found.unwrap_or_else(|| panic!("no block starts with {tag:?}"))
}

#[test]
fn the_checker_reports_a_lost_acknowledged_write_foreign_data_and_a_wrong_model() {
    if !have_e2fsprogs("the_checker_reports") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default();
    // Overwrite /foo's second block, then fdatasync it (a data-only sync: no commit).
    let (prepared, wl, mut rec) =
        record_named(dir.path(), &options, "overwrite6-fdatasync").unwrap();
    assert_eq!(wl.ops.len(), 2);
    let foo = prepared.model.ns["/foo"];
    let other = prepared.model.ns["/A/foo"];
    let acked = rec.acked[1];
    let log = rec.log.clone();
    let replay = log.replay_to(log.point(acked)).unwrap();
    let good = replay.image_with(|_| true).unwrap();
    let check = |image: DiskImage, rec: &aios_crashtest::workload::Recording, point: usize| {
        let tree = check_image(
            image,
            options.rw(),
            (1, options.recovery_crashes),
            Some(dir.path()),
        )?
        .tree;
        check::check_state(rec, &wl.ops, &tree, point, true)
    };
    // The real state passes.
    check(good.try_clone().unwrap(), &rec, acked).unwrap();

    // 1. The acknowledged block reverted to its old contents.
    let new = Tag {
        file: foo,
        generation: 2,
        offset_bytes: 4096,
    };
    let block = block_with(&good, new);
    let mut lost = good.try_clone().unwrap();
    lost.write_at(block * 4096, &tagged(foo, 4096, 4096, 1))
        .unwrap();
    let e = check(lost.try_clone().unwrap(), &rec, acked).unwrap_err();
    assert!(e.contains("lost") && e.contains("fdatasync"), "{e}");
    // ... which a crash before the fdatasync returned may show (the old state).
    check(lost, &rec, 0).unwrap();

    // 2. Another file's data in /foo's block.
    let mut foreign = good.try_clone().unwrap();
    foreign
        .write_at(block * 4096, &tagged(other, 4096, 4096, 2))
        .unwrap();
    let e = check(foreign, &rec, 0).unwrap_err();
    assert!(e.contains("foreign data"), "{e}");

    // 3. A model that disagrees with the disk everywhere (a byte no op wrote).
    for state in &mut rec.states {
        let Some(Node::File(d)) = state.inodes.get_mut(&foo) else {
            panic!("/foo")
        };
        d[100] ^= 0xff;
    }
    let e = check(good, &rec, acked).unwrap_err();
    assert!(e.contains("byte"), "{e}");
}

#[test]
fn a_campaign_violation_prints_a_replay_that_reproduces_it() {
    if !have_e2fsprogs("a_campaign_violation_prints_a_replay") {
        return;
    }
    let options = Options {
        only: vec!["overwrite6-fdatasync".into()],
        sabotage_model: true,
        fsck_every: 0,
        ..Options::default()
    };
    let report = run(&options).unwrap();
    assert!(report.violations_total > 0, "{report:?}");
    let v = &report.violations[0];
    assert!(v.what.contains("lost"), "{v}");
    let spec = v.replay.rsplit(' ').next().unwrap();
    assert_eq!(
        parse_replay(spec).unwrap(),
        (v.seed, v.workload.clone(), v.point)
    );
    let again = replay_one(&options, spec).unwrap();
    assert_eq!(again.states, 1);
    assert_eq!(again.violations_total, 1, "{again:?}");
    assert_eq!(again.violations[0].what, v.what);
    // Without the sabotage the same state is fine.
    let honest = Options {
        sabotage_model: false,
        ..options
    };
    assert_eq!(replay_one(&honest, spec).unwrap().violations_total, 0);
}

#[test]
fn a_tree_inside_a_transaction_is_no_allowed_prefix() {
    if !have_e2fsprogs("a_tree_inside_a_transaction") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default();
    // create /new, create /A/new, sync: both creates are in one transaction.
    let (_, wl, mut rec) = record_named(dir.path(), &options, "create0+create1-sync").unwrap();
    assert_eq!(
        rec.tids[0].0, rec.tids[1].1,
        "one transaction: {:?}",
        rec.tids
    );
    let log = rec.log.clone();
    let end = log.events().len();
    let image = log
        .replay_to(log.point(end))
        .unwrap()
        .image_with(|_| true)
        .unwrap();
    let mut tree = check_image(image, options.rw(), (1, options.recovery_crashes), None)
        .unwrap()
        .tree;
    check::check_state(&rec, &wl.ops, &tree, 0, true).unwrap();
    // Half the transaction: the model after op 0, which no crash can leave.
    tree.remove("/A/new");
    let e = check::check_state(&rec, &wl.ops, &tree, 0, true).unwrap_err();
    assert!(e.contains("no allowed prefix"), "{e}");
    // Had the two creates been in different transactions, it would be allowed.
    rec.tids[1] = (rec.tids[0].1 + 1, rec.tids[0].1 + 1);
    check::check_state(&rec, &wl.ops, &tree, 0, true).unwrap();
}

#[test]
fn two_op_and_random_workloads_find_no_violation_and_the_journal_wraps() {
    if !have_e2fsprogs("two_op_and_random_workloads") {
        return;
    }
    let started = std::time::Instant::now();
    let sets = [
        (
            WorkloadSet::TwoOp { count: 4 },
            DataMode::Ordered,
            CommitOrder::Async,
        ),
        (
            WorkloadSet::TwoOp { count: 4 },
            DataMode::Journal,
            CommitOrder::Sync,
        ),
        (
            WorkloadSet::Random {
                count: 1,
                ops_max: 200,
                points: 6,
            },
            DataMode::Ordered,
            CommitOrder::Sync,
        ),
        (
            WorkloadSet::Random {
                count: 1,
                ops_max: 200,
                points: 6,
            },
            DataMode::Journal,
            CommitOrder::Async,
        ),
    ];
    std::thread::scope(|s| {
        let runs: Vec<_> = sets
            .iter()
            .map(|&(set, data, order)| {
                s.spawn(move || {
                    let options = Options {
                        set,
                        data,
                        order,
                        seed: 0x2b,
                        fsck_every: 4,
                        ..Options::default()
                    };
                    let report = run(&options).unwrap_or_else(|e| panic!("{e}"));
                    report.print(&options);
                    (options, report)
                })
            })
            .collect();
        for h in runs {
            let (options, report) = h.join().expect("campaign thread");
            assert!(
                report.acked_states > 0 && report.e2fsck_runs > 0,
                "{report:?}"
            );
            if let WorkloadSet::Random { .. } = options.set {
                let wraps = report.wraps_min.unwrap_or(0.0);
                assert!(wraps >= 3.0, "journal written {wraps} times its length");
                assert!(report.ops >= 150, "{report:?}");
            }
            let first: Vec<String> = report.violations.iter().map(|v| v.to_string()).collect();
            assert_eq!(
                report.violations_total,
                0,
                "{options:?}:\n{}",
                first.join("\n")
            );
        }
    });
    eprintln!("two-op and random: {:.1?}", started.elapsed());
}

#[test]
fn a_random_workload_replays_by_name_and_a_sabotaged_model_is_caught() {
    if !have_e2fsprogs("a_random_workload_replays") {
        return;
    }
    let options = Options {
        set: WorkloadSet::Random {
            count: 1,
            ops_max: 40,
            points: 4,
        },
        sabotage_model: true,
        fsck_every: 0,
        seed: 5,
        ..Options::default()
    };
    let report = run(&options).unwrap();
    assert!(report.violations_total > 0, "{report:?}");
    let v = &report.violations[0];
    let spec = v.replay.rsplit(' ').next().unwrap();
    let again = replay_one(&options, spec).unwrap();
    assert_eq!(again.violations_total, 1, "{again:?}");
    assert_eq!(again.violations[0].what, v.what);
}
