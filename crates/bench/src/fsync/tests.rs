//! `aios bench fsync` argument parsing, the case matrix and the figures' arithmetic (no timed
//! runs).

use super::*;

fn parse(argv: &[&str]) -> FsyncArgs {
    #[derive(clap::Parser)]
    struct Only {
        #[command(flatten)]
        args: FsyncArgs,
    }
    <Only as clap::Parser>::parse_from(argv).args
}

#[test]
fn defaults_are_short_and_cover_both_workloads() {
    let args = parse(&["fsync"]);
    assert_eq!(
        args.target,
        vec![TargetSpec::Host, TargetSpec::Emu("ull".into())]
    );
    assert_eq!(
        args.workload,
        vec![FsyncWorkload::Append, FsyncWorkload::Overwrite]
    );
    assert_eq!(
        (args.bs.clone(), args.reps, args.seconds),
        (vec![4096], 3, 1.0)
    );
    assert!(validate(&args).is_ok());
    let args = parse(&["fsync", "--bs", "16k", "--file-size", "16k"]);
    assert!(validate(&args).is_err(), "one write does not fit twice");
}

#[test]
fn the_kernel_runs_only_where_it_has_files_and_names_its_call() {
    let targets = vec![
        Target::for_test("host disk", true, true, true),
        Target::for_test("emu:ull", false, false, false),
        Target::for_test("zram", true, false, false),
    ];
    let mut args = parse(&["fsync", "--bs", "4k,16k"]);
    args.workload = vec![FsyncWorkload::Append, FsyncWorkload::Overwrite];
    let cases = matrix(&args, &targets);
    // 2 workloads x (6 stacks on host: aios sleeping and polled + 2 kernels; 2 on emu; 3 on
    // zram) x 2 sizes.
    assert_eq!(cases.len(), 2 * 11 * 2);
    assert!(cases
        .iter()
        .filter(|c| c.stack == FsyncStack::Kernel)
        .all(|c| c.target != 1));
    assert!(cases
        .iter()
        .filter(|c| c.stack == FsyncStack::KernelImg)
        .all(|c| c.target == 0));
    assert_eq!(
        FsyncStack::Kernel.mode_name(FsyncWorkload::Overwrite),
        "fdatasync"
    );
    assert_eq!(
        FsyncStack::KernelImg.mode_name(FsyncWorkload::Append),
        "fsync-img"
    );
    assert_eq!(FsyncStack::KernelImg.stack_name(), "kernel");
    assert_eq!(
        FsyncStack::Aios {
            order: CommitOrder::Async,
            polled: false
        }
        .mode_name(FsyncWorkload::Append),
        "async"
    );
    assert_eq!(
        FsyncStack::Aios {
            order: CommitOrder::Sync,
            polled: true
        }
        .mode_name(FsyncWorkload::Overwrite),
        "sync+poll"
    );
}

#[test]
fn targets_and_threads_parse_and_are_checked() {
    let args = parse(&[
        "fsync",
        "--target",
        "host,zram,emu:ull",
        "--threads",
        "1,2,4",
    ]);
    assert_eq!(
        args.target,
        vec![
            TargetSpec::Host,
            TargetSpec::Zram,
            TargetSpec::Emu("ull".into())
        ]
    );
    assert_eq!(args.threads, vec![1, 2, 4]);
    assert!(validate(&args).is_ok());
    assert_eq!(parse(&["fsync"]).threads, vec![1]);
    assert_eq!(parse(&["fsync"]).svg, None);
    let args = parse(&["fsync", "--svg", "out"]);
    assert_eq!(args.svg, Some(PathBuf::from("out")));
    assert!(validate(&parse(&["fsync", "--threads", "0"])).is_err());
    assert!(validate(&parse(&["fsync", "--threads", "65"])).is_err());
}

#[test]
fn every_stack_runs_at_every_thread_count() {
    let targets = vec![Target::for_test("host disk", true, true, true)];
    let mut args = parse(&["fsync", "--threads", "1,2,4"]);
    args.workload = vec![FsyncWorkload::Append];
    let cases = matrix(&args, &targets);
    // aios x2 orders x2 completions (the host sleeps by default, polls as a choice) + kernel
    // x2 at each of 3 thread counts.
    assert_eq!(cases.len(), 3 * 6);
    for threads in [1, 2, 4] {
        let at: Vec<_> = cases.iter().filter(|c| c.threads == threads).collect();
        assert_eq!(at.len(), 6);
        for polled in [false, true] {
            let stack = FsyncStack::Aios {
                order: CommitOrder::Async,
                polled,
            };
            assert!(at.iter().any(|c| c.stack == stack));
        }
    }
}

#[test]
fn every_thread_has_its_own_files_and_room_in_the_image() {
    assert_eq!(FsyncWorkload::Append.file_name(0), "append.0");
    assert_eq!(FsyncWorkload::Overwrite.file_name(3), "overwrite.3");
    let one = image_size(16 << 20, 1);
    assert_eq!(one, (64 + 64) << 20);
    assert!(image_size(16 << 20, 4) >= 4 * 2 * (16 << 20) + (64 << 20));
    assert_eq!(image_size(16 << 20, 4) % (1 << 20), 0);
}

fn record(device: &str, stack: &'static str, mode: &str, mean_us: f64) -> Record {
    let shape = Shape {
        device: device.into(),
        stack,
        mode: mode.into(),
        workload: "append",
        bs: 4096,
        threads: 1,
        qd: 1,
    };
    let mut r = report::record_of(shape, &[], None);
    r.mean_ns = mean_us * 1e3;
    r
}

#[test]
fn vs_kern_is_the_plain_kernel_and_the_journaled_ratio_is_separate() {
    let mut records = vec![
        record("host disk", "aios", "sync", 300.0),
        record("host disk", "kernel", "fsync", 150.0),
        record("host disk", "kernel", JOURNALED_FSYNC, 200.0),
        record("zram", "aios", "sync", 40.0),
        record("zram", "kernel", "fsync", 80.0),
    ];
    report::compare_with(&mut records, is_plain_kernel);
    assert_eq!(records[0].vs_kernel, Some(2.0));
    assert_eq!(records[3].vs_kernel, Some(0.5));
    let ratios = summary::journaled_ratios(&records);
    // aios and the plain kernel on the host, against the journaled kernel; nothing on zram.
    assert_eq!(ratios, vec![(0, 1.5), (1, 0.75)]);
}

#[test]
fn breakdown_bars_stack_the_stages_and_the_rest_of_the_write() {
    let targets = vec![Target::for_test("host disk", true, false, false)];
    let mut args = parse(&["fsync"]);
    args.workload = vec![FsyncWorkload::Append];
    let cases = matrix(&args, &targets);
    assert_eq!(cases.len(), 3, "aios sync, async, the kernel");
    let records = vec![
        record("host disk", "aios", "sync", 100.0),
        record("host disk", "aios", "async", 90.0),
        record("host disk", "kernel", "fsync", 150.0),
    ];
    let mut sums = vec![CommitSums::default(); 3];
    sums[0].writes = 10;
    sums[0].stage_ns = [0, 10_000, 20_000, 300_000, 400_000, 100_000];
    let bars = svg::bars(&records, &cases, &sums);
    assert_eq!(bars.len(), 3);
    let us: Vec<f64> = bars[0].segments.iter().map(|s| s.1).collect();
    assert_eq!(us, vec![0.0, 1.0, 2.0, 30.0, 40.0, 10.0, 17.0]);
    assert_eq!(bars[1].segments.last().map(|s| s.1), Some(90.0));
    assert_eq!(bars[2].segments, vec![(7, 150.0)]);
    assert!(bars[2].label.contains("kernel fsync"));
}
