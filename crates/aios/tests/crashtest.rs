//! `aios crashtest` end to end: the 1-op campaign in both data modes and both commit orders
//! finds no violation, and the checker does report a crash state that lost an acknowledged
//! write, holds foreign data, or disagrees with the model (a harness that cannot fail is
//! worthless).
//!
//! The campaign test is bounded for debug builds: each of the four configurations runs a
//! quarter of the workloads (every workload runs in one of them), `e2fsck -fn` on every third
//! distinct recovered image, two configurations at a time. `aios crashtest` runs them all.
//! Skips loudly without e2fsprogs.

use std::process::Command;

use aios::crashtest::model::{tag_record, tagged, Node, Tag};
use aios::crashtest::{check, check_image, parse_replay, record_named, replay_one, run, Options};
use aios_device_emu::DiskImage;
use aios_fs::DataMode;
use aios_journal::runtime::CommitOrder;

fn have_e2fsprogs(test: &str) -> bool {
    let ok = ["mke2fs", "e2fsck"]
        .iter()
        .all(|t| Command::new(t).arg("-V").output().is_ok());
    if !ok {
        eprintln!("SKIPPED {test}: e2fsprogs (mke2fs, e2fsck) not installed");
    }
    ok
}

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
    let check = |image: DiskImage, rec: &aios::crashtest::workload::Recording, point: usize| {
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
