//! `aios bench mixed` argument parsing, the phases and cases, and the ratios and JSON shape
//! computed from records (no timed runs).

use super::summary::{summarize, TargetShape};
use super::*;
use crate::runner::new_histogram;

fn parse(argv: &[&str]) -> MixedArgs {
    #[derive(clap::Parser)]
    struct Only {
        #[command(flatten)]
        args: MixedArgs,
    }
    <Only as clap::Parser>::parse_from(argv).args
}

#[test]
fn defaults_name_the_three_targets_and_the_aios_order() {
    let args = parse(&["mixed"]);
    assert_eq!(
        args.target,
        vec![
            TargetSpec::Host,
            TargetSpec::Zram,
            TargetSpec::Emu("ull".into())
        ]
    );
    assert_eq!(args.order, vec![MixedOrder::Async]);
    assert_eq!(
        (args.file_size, args.reps, args.seconds),
        (256 << 20, 3, 2.0)
    );
    assert!(validate(&args).is_ok());
    assert!(validate(&parse(&["mixed", "--file-size", "1M"])).is_err());
    assert!(validate(&parse(&["mixed", "--reps", "0"])).is_err());
}

#[test]
fn phases_cover_alone_mixed_and_one_and_two_readers_once() {
    assert_eq!(
        Phase::of_target(2, 2),
        vec![
            Phase::Readers(2),
            Phase::Appenders(2),
            Phase::Mixed {
                readers: 2,
                appenders: 2
            },
            Phase::Readers(1),
        ]
    );
    assert_eq!(
        Phase::of_target(1, 1),
        vec![
            Phase::Readers(1),
            Phase::Appenders(1),
            Phase::Mixed {
                readers: 1,
                appenders: 1
            },
            Phase::Readers(2),
        ]
    );
}

#[test]
fn the_kernel_runs_only_where_it_has_a_mount() {
    let targets = vec![
        Target::for_test("host disk", 2, 2, true),
        Target::for_test("emu:ull", 1, 1, false),
    ];
    let args = parse(&["mixed", "--order", "sync,async"]);
    let cases = matrix(&args, &targets);
    // host: 3 stacks x 4 phases; emu: 2 stacks x 4 phases.
    assert_eq!(cases.len(), 12 + 8);
    assert!(cases
        .iter()
        .filter(|c| c.stack == MixedStack::Kernel)
        .all(|c| c.target == 0));
}

/// A record of `ops` operations of `mean_us` each over one second.
fn record(
    device: &str,
    stack: MixedStack,
    workload: &'static str,
    threads: usize,
    mean_us: u64,
    ops: u64,
) -> Record {
    let mut latency_ns = new_histogram();
    latency_ns.record_n(mean_us * 1000, ops).unwrap();
    let sample = Sample {
        latency_ns,
        ops,
        elapsed_ns: 1_000_000_000,
    };
    let shape = Shape {
        device: device.into(),
        stack: stack.stack_name(),
        mode: stack.mode_name().into(),
        workload,
        bs: IO_BYTES,
        threads,
        qd: 1,
    };
    report::record_of(shape, &[sample], None)
}

/// A stack's five records on a 2 + 2 target: reads of `read_us` alone, `read_mixed_us` mixed;
/// appends of 100 us alone, 130 us mixed.
fn stack_records(device: &str, stack: MixedStack, read_us: u64, read_mixed_us: u64) -> Vec<Record> {
    vec![
        record(device, stack, READ_ALONE, 2, read_us, 2000),
        record(device, stack, READ_ALONE, 1, read_us, 1000),
        record(device, stack, APPEND_ALONE, 2, 100, 500),
        record(device, stack, READ_MIXED, 2, read_mixed_us, 1500),
        record(device, stack, APPEND_MIXED, 2, 130, 400),
    ]
}

#[test]
fn ratios_come_from_the_matching_records() {
    let aios = MixedStack::Aios(MixedOrder::Async);
    let mut records = stack_records("host disk", aios, 100, 110);
    records.extend(stack_records("host disk", MixedStack::Kernel, 100, 150));
    records.extend(stack_records("emu:ull", aios, 10, 12));
    let shapes = [
        TargetShape {
            device: "host disk".into(),
            readers: 2,
            appenders: 2,
        },
        TargetShape {
            device: "emu:ull".into(),
            readers: 2,
            appenders: 2,
        },
    ];
    let targets = summarize(&shapes, &records);
    let host = &targets[0].stacks;
    assert_eq!((host[0].stack, host[0].mode.as_str()), ("aios", "async"));
    assert_eq!(host[1].stack, "kernel");
    let close = |a: Option<f64>, b: f64| assert!((a.unwrap() - b).abs() < 0.01, "{a:?} vs {b}");
    close(host[0].readers_vs_alone, 1.10);
    close(host[0].appenders_vs_alone, 1.30);
    close(host[0].two_readers_vs_one, 2.0);
    close(host[0].ops_per_s_mixed, 1900.0);
    // Same totals on both stacks.
    close(host[0].ops_vs_kernel, 1.0);
    close(host[1].readers_vs_alone, 1.50);
    assert_eq!(host[1].ops_vs_kernel, None, "the kernel's own row");
    assert_eq!(targets[1].stacks.len(), 1);
    assert_eq!(targets[1].stacks[0].ops_vs_kernel, None, "no kernel on emu");
}

#[test]
fn json_names_each_ratio_per_target_and_stack() {
    let records = stack_records("zram", MixedStack::Aios(MixedOrder::Async), 5, 6);
    let shapes = [TargetShape {
        device: "zram".into(),
        readers: 2,
        appenders: 2,
    }];
    let targets = summarize(&shapes, &records);
    let value = serde_json::to_value(summary::json(&targets, &records)).unwrap();
    let target = &value["targets"][0];
    assert_eq!(target["device"], "zram");
    assert_eq!(
        (target["readers"].as_u64(), target["appenders"].as_u64()),
        (Some(2), Some(2))
    );
    let row = &target["stacks"][0];
    for key in [
        "readers_vs_alone",
        "appenders_vs_alone",
        "two_readers_vs_one",
    ] {
        assert!(row[key].is_f64(), "{key}: {row}");
    }
    assert!(row["ops_vs_kernel"].is_null());
    assert_eq!(value["records"].as_array().map(Vec::len), Some(5));
}
