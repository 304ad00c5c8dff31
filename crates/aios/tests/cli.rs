//! The `aios` binary end to end: the benchmarks run, print their table and write the JSON
//! records the issue specifies.

use std::process::Command;

fn aios() -> Command {
    Command::new(env!("CARGO_BIN_EXE_aios"))
}

#[test]
fn bench_device_writes_one_json_record_per_case() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let img = dir.path().join("scratch.img");
    let json = dir.path().join("out.json");
    let out = aios()
        .args(["bench", "device", "-d", "null", "-d"])
        .arg(format!("psync:{}", img.display()))
        .args([
            "--scratch-size",
            "4M",
            "--bs",
            "4k,8k",
            "--seconds",
            "0.05",
            "--reps",
            "2",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("mean us") && table.contains("kernel"),
        "{table}"
    );
    let records: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    // null: 1 stack; psync: aios + kernel; x 2 workloads x 2 block sizes.
    assert_eq!(records.len(), (1 + 2) * 2 * 2);
    for r in &records {
        for key in [
            "stack", "mode", "workload", "bs", "threads", "qd", "mean_ns", "p50_ns", "p99_ns",
            "p999_ns", "iops",
        ] {
            assert!(r.get(key).is_some(), "record lacks {key}: {r}");
        }
        assert!(r["iops"].as_f64().unwrap() > 0.0, "{r}");
        assert_eq!(r["reps"], 2);
    }
    let aios_psync = records
        .iter()
        .find(|r| r["stack"] == "aios" && r["mode"] == "sync")
        .unwrap();
    assert!(
        aios_psync["vs_kernel"].as_f64().is_some(),
        "psync results are compared with the kernel"
    );
}

#[test]
fn bad_arguments_are_clear_errors() {
    let out = aios()
        .args(["bench", "device", "-d", "nvme:/x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown backend"));
    let out = aios()
        .args(["bench", "device", "-d", "null", "--bs", "3k"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("multiple of 4096"));
    let out = aios()
        .args(["bench", "device", "-d", "psync:/nonexistent-dir/x.img"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nonexistent-dir"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bench_lbio_reports_ns_per_request() {
    let out = aios()
        .args(["bench", "lbio", "--requests", "10000"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ns per request"), "{text}");
}
