//! `aios bench write` argument parsing, the cases and their order, the figures computed from
//! repetitions, and one tiny timed run on the emulated device.

use super::*;

fn parse(argv: &[&str]) -> WriteArgs {
    #[derive(clap::Parser)]
    struct Only {
        #[command(flatten)]
        args: WriteArgs,
    }
    <Only as clap::Parser>::parse_from(argv).args
}

#[test]
fn defaults_are_issue_14s_workload_on_the_three_targets() {
    let args = parse(&["write"]);
    assert_eq!(
        args.target,
        vec![
            TargetSpec::Host,
            TargetSpec::Zram,
            TargetSpec::Emu("ull".into())
        ]
    );
    assert_eq!(
        (args.file_size, args.bs, args.reps),
        (1 << 30, 128 << 10, 3)
    );
    assert_eq!(args.json, None);
    assert!(validate(&args).is_ok());
    let args = parse(&["write", "--file-size", "512M", "--bs", "4k", "--reps", "1"]);
    assert_eq!((args.file_size, args.bs, args.reps), (512 << 20, 4096, 1));
    assert!(validate(&args).is_ok());
}

#[test]
fn sizes_and_repetitions_are_checked() {
    for argv in [
        ["write", "--bs", "256k"].as_slice(),
        &["write", "--bs", "6k"],
        &["write", "--file-size", "64k"],
        &["write", "--file-size", "1000k"],
        &["write", "--reps", "0"],
    ] {
        assert!(validate(&parse(argv)).is_err(), "{argv:?}");
    }
    // The image holds the file twice over and the journal and metadata, in whole MiB.
    let size = target::image_size(1 << 30);
    assert!(((2 << 30) + (64 << 20)..=3 << 30).contains(&size), "{size}");
    assert_eq!(target::image_size(4 << 20) % (1 << 20), 0);
}

fn targets() -> Vec<Target> {
    vec![
        Target::for_test("host disk", true),
        Target::for_test("emu:ull", false),
    ]
}

#[test]
fn the_kernel_runs_where_it_has_a_mount_and_no_stack_always_runs_first() {
    let cases = matrix(&targets());
    let stacks: Vec<(usize, WriteStack)> = cases.iter().map(|c| (c.target, c.stack)).collect();
    assert_eq!(
        stacks,
        vec![
            (0, WriteStack::Aios(CommitOrder::Sync)),
            (0, WriteStack::Aios(CommitOrder::Async)),
            (0, WriteStack::Kernel),
            (1, WriteStack::Aios(CommitOrder::Sync)),
            (1, WriteStack::Aios(CommitOrder::Async)),
        ]
    );
    assert_eq!(order(&cases, 0), vec![0, 1, 2, 3, 4]);
    assert_eq!(order(&cases, 1), vec![1, 2, 0, 4, 3]);
    assert_eq!(order(&cases, 2), vec![2, 0, 1, 3, 4]);
    assert_eq!(
        [WriteStack::Aios(CommitOrder::Sync), WriteStack::Kernel].map(WriteStack::mode_name),
        ["sync", KERNEL_MODE]
    );
}

/// A repetition of 1 GiB in `secs` seconds, a quarter of them in the fsync.
fn rep(secs: f64, aios: bool) -> RunOut {
    let elapsed_ns = (secs * 1e9) as u64;
    RunOut {
        elapsed_ns,
        write_ns: elapsed_ns / 4 * 3,
        stats: aios.then(|| RwStats {
            commits: 300,
            periodic_commits: 2,
            ..RwStats::default()
        }),
    }
}

#[test]
fn rows_and_ratios_come_from_the_repetitions() {
    let setup = Setup {
        file_size: 1 << 30,
        bs: 128 << 10,
        targets: targets(),
    };
    let cases = matrix(&setup.targets);
    // host: sync 1024 and 512 MiB/s, async 1024 twice, the kernel 2048 and 1024 MiB/s.
    let runs = vec![
        vec![rep(1.0, true), rep(2.0, true)],
        vec![rep(1.0, true), rep(1.0, true)],
        vec![rep(0.5, false), rep(1.0, false)],
        vec![rep(2.0, true)],
        vec![],
    ];
    let records = summary::records(&setup, &cases, &runs);
    assert_eq!(records.len(), 4, "a case without repetitions has no row");
    let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    let sync = &records[0];
    close(sync.mib_s, 768.0);
    close(sync.min_mib_s, 512.0);
    close(sync.max_mib_s, 1024.0);
    close(sync.stdev_mib_s, 256.0 * 2f64.sqrt());
    close(sync.write_s, 1.125);
    close(sync.fsync_s, 0.375);
    close(sync.vs_kernel.unwrap(), 768.0 / 1536.0);
    assert_eq!(sync.commits.map(|c| c.commits), Some(300.0));
    close(records[1].stdev_mib_s, 0.0);
    assert_eq!(records[2].stack, "kernel");
    assert_eq!(records[2].commits, None);
    assert_eq!(records[3].vs_kernel, None, "no kernel on emu");
    let ratios = summary::ratios(&setup.targets, &records);
    close(ratios[0].seq_write_vs_kernel.unwrap(), 1024.0 / 1536.0);
    close(ratios[0].async_vs_sync.unwrap(), 1024.0 / 768.0);
    assert_eq!(ratios[1].seq_write_vs_kernel, None);
    assert_eq!(ratios[1].async_vs_sync, None, "no async row on emu here");
    let value = serde_json::to_value(summary::json(&setup, &ratios, &records)).unwrap();
    assert_eq!(value["targets"][0]["device"], "host disk");
    assert!(value["targets"][0]["seq_write_vs_kernel"].is_f64());
    assert!(value["targets"][0]["async_vs_sync"].is_f64());
    assert!(value["targets"][1]["seq_write_vs_kernel"].is_null());
    assert_eq!(value["aios_cache_bytes"].as_u64(), Some(16 << 20));
    assert_eq!(value["records"].as_array().map(Vec::len), Some(4));
    assert_eq!(
        value["records"][0]["rep_mib_s"].as_array().map(Vec::len),
        Some(2)
    );
    assert!(value["records"][2].get("commits").is_none());
    let text = summary::table(&records) + &summary::ratio_table(&ratios);
    assert!(
        text.contains("seq_write_vs_kernel") && text.contains("0.667"),
        "{text}"
    );
    assert!(summary::commit_table(&records).contains("300.0"));
}

fn have_mke2fs() -> bool {
    std::process::Command::new("mke2fs")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn a_tiny_run_on_the_emulated_device_writes_both_orders() {
    if !have_mke2fs() {
        eprintln!("SKIPPED bench write run: mke2fs is missing (apt-get install e2fsprogs)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("write.json");
    let args = parse(&[
        "write",
        "--target",
        "emu:ull",
        "--file-size",
        "4M",
        "--reps",
        "2",
    ]);
    let args = WriteArgs {
        image: dir.path().join("write.img"),
        json: Some(json.clone()),
        ..args
    };
    let records = run(args).unwrap();
    let modes: Vec<(&str, &str)> = records.iter().map(|r| (r.stack, r.mode)).collect();
    assert_eq!(modes, vec![("aios", "sync"), ("aios", "async")]);
    for r in &records {
        assert_eq!((r.device.as_str(), r.reps), ("emu:ull", 2));
        assert!(r.mib_s > 0.0 && r.min_mib_s <= r.max_mib_s, "{r:?}");
        let commits = r.commits.expect("aios counts its commits");
        assert!(commits.commits >= 1.0, "the fsync commits: {r:?}");
        assert!(commits.total_s() > 0.0, "{r:?}");
    }
    let value: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(value["file_size"].as_u64(), Some(4 << 20));
    assert!(value["targets"][0]["async_vs_sync"].is_f64(), "{value}");
    assert!(
        value["targets"][0]["seq_write_vs_kernel"].is_null(),
        "{value}"
    );
}
