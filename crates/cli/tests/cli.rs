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

#[test]
fn fs_commands_read_an_image_made_by_aios_mkfs() {
    if std::process::Command::new("mke2fs")
        .arg("-V")
        .output()
        .is_err()
    {
        eprintln!("=== SKIPPED: mke2fs not installed (apt-get install e2fsprogs) ===");
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), b"hello\n").unwrap();
    let blob: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(src.join("sub/blob"), &blob).unwrap();
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    let img = dir.path().join("t.img");
    let ok = |args: &[&std::ffi::OsStr]| {
        let out = aios().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let (i, s) = (img.as_os_str(), src.as_os_str());
    ok(&[
        "mkfs".as_ref(),
        i,
        "--size".as_ref(),
        "32M".as_ref(),
        "-d".as_ref(),
        s,
    ]);
    let listing = String::from_utf8(ok(&["ls".as_ref(), i])).unwrap();
    assert!(
        listing.contains("a.txt") && listing.contains("link -> a.txt") && listing.contains("sub"),
        "{listing}"
    );
    assert_eq!(ok(&["cat".as_ref(), i, "/link".as_ref()]), b"hello\n");
    let out = dir.path().join("blob.out");
    ok(&["get".as_ref(), i, "/sub/blob".as_ref(), out.as_os_str()]);
    assert!(
        std::fs::read(&out).unwrap() == blob,
        "get copies the file byte for byte"
    );
    let st = String::from_utf8(ok(&["stat".as_ref(), i, "/sub/blob".as_ref()])).unwrap();
    assert!(st.contains("Size: 300000"), "{st}");
    let info = String::from_utf8(ok(&["info".as_ref(), i])).unwrap();
    assert!(
        info.contains("metadata_csum") && info.contains("journal:          inode 8"),
        "{info}"
    );
    // The journal's size as dumpe2fs reports it, read from the journal superblock.
    let dump = std::process::Command::new("dumpe2fs")
        .arg("-h")
        .arg(i)
        .output()
        .unwrap();
    let dump = String::from_utf8_lossy(&dump.stdout);
    let length = dump
        .lines()
        .find_map(|l| l.strip_prefix("Total journal blocks:"))
        .map(str::trim)
        .expect("dumpe2fs prints the journal size in blocks");
    assert!(
        info.contains(&format!("inode 8, {length} blocks")) && info.contains(", clean"),
        "{info}"
    );
    // Errors name the path and the cause, without a backtrace.
    let bad = aios()
        .args(["cat".as_ref(), i, "/nope".as_ref()])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let msg = String::from_utf8_lossy(&bad.stderr);
    assert!(
        msg.starts_with("aios: ") && msg.contains("/nope") && msg.contains("no such file"),
        "{msg}"
    );
}

fn have_mke2fs() -> bool {
    Command::new("mke2fs")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn bench_read_writes_one_record_per_stack_mode_and_cache_and_a_breakdown_svg() {
    if !have_mke2fs() {
        eprintln!("SKIPPED bench_read test: mke2fs is missing (apt-get install e2fsprogs)");
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let json = dir.path().join("read.json");
    let svg = dir.path().join("plots");
    let out = aios()
        .current_dir(dir.path())
        .args([
            "bench",
            "read",
            "--file-size",
            "8M",
            "--seconds",
            "0.05",
            "--reps",
            "1",
            "--target",
            "host,emu:ull",
            "--json",
        ])
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("aios-read-bench.img").exists());
    assert!(dir.path().join("aios-read-bench.src/data").exists());
    let records: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let mut expected = Vec::new();
    for cache in ["randread-cold", "randread-hot"] {
        for (stack, mode) in [
            ("aios", "sync"),
            ("aios", "async"),
            ("aios", "async+poll"),
            ("kernel", "buffered"),
            ("kernel", "direct"),
        ] {
            if !(mode == "direct" && cache == "randread-hot") {
                expected.push(("host disk", stack, mode, cache));
            }
        }
    }
    // The emulated device: cold only (hot runs on the first target), polled only, no kernel.
    expected.push(("emu:ull", "aios", "sync+poll", "randread-cold"));
    expected.push(("emu:ull", "aios", "async+poll", "randread-cold"));
    assert_eq!(records.len(), expected.len(), "{records:?}");
    for (device, stack, mode, cache) in expected {
        let found: Vec<_> = records
            .iter()
            .filter(|r| {
                r["device"] == device
                    && r["stack"] == stack
                    && r["mode"] == mode
                    && r["workload"] == cache
            })
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{device} {stack} {mode} {cache}: {records:?}"
        );
        let r = found[0];
        assert!(r["iops"].as_f64().unwrap() > 0.0, "{r}");
        if device == "emu:ull" {
            assert_eq!(r["device_time_ns"].as_u64(), Some(6000), "{r}");
            assert!(r["vs_kernel"].is_null(), "{r}");
        } else {
            assert!(r["vs_kernel"].as_f64().is_some(), "{r}");
        }
        if stack == "aios" {
            // Cold reads never repeat a page within a run: every lookup misses.
            let expected_miss = if cache == "randread-cold" { 1.0 } else { 0.0 };
            assert_eq!(r["miss_ratio"].as_f64(), Some(expected_miss), "{r}");
        }
    }
    let breakdown = std::fs::read_to_string(svg.join("breakdown.svg")).unwrap();
    assert!(!breakdown.is_empty());
    for stage in [
        "lookup",
        "page_alloc",
        "cache_insert",
        "map",
        "submit",
        "device_wait",
        "pool_refill",
        "complete",
        "copy_out",
    ] {
        assert!(breakdown.contains(stage), "breakdown.svg lacks {stage}");
    }
    for bar in [
        "host disk: aios sync",
        "host disk: aios async",
        "emu:ull: aios sync+poll",
        "emu:ull: aios async+poll",
    ] {
        assert!(breakdown.contains(bar), "breakdown.svg lacks {bar}");
    }
}

#[test]
fn bench_fsync_writes_one_record_per_stack_mode_and_workload() {
    if !have_mke2fs() {
        eprintln!("SKIPPED bench_fsync test: mke2fs is missing (apt-get install e2fsprogs)");
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let json = dir.path().join("fsync.json");
    let out = aios()
        .current_dir(dir.path())
        .args([
            "bench",
            "fsync",
            "--target",
            "emu:ull",
            "--seconds",
            "0.05",
            "--reps",
            "1",
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
    let records: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    // The emulated device: aios only (no kernel there), both commit orders, both workloads.
    let mut expected = Vec::new();
    for workload in ["append", "overwrite"] {
        for mode in ["sync", "async"] {
            expected.push((mode, workload));
        }
    }
    assert_eq!(records.len(), expected.len(), "{records:?}");
    for (mode, workload) in expected {
        let found: Vec<_> = records
            .iter()
            .filter(|r| r["stack"] == "aios" && r["mode"] == mode && r["workload"] == workload)
            .collect();
        assert_eq!(found.len(), 1, "aios {mode} {workload}: {records:?}");
        let r = found[0];
        assert_eq!(r["device"], "emu:ull", "{r}");
        assert_eq!(
            (r["bs"].as_u64(), r["threads"].as_u64()),
            (Some(4096), Some(1))
        );
        assert!(r["iops"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["vs_kernel"].is_null(), "{r}");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("journal blocks/commit"), "{stdout}");
}

#[test]
fn bench_write_prints_the_rows_and_writes_the_ratios() {
    if !have_mke2fs() {
        eprintln!("SKIPPED bench_write test: mke2fs is missing (apt-get install e2fsprogs)");
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let json = dir.path().join("write.json");
    let out = aios()
        .current_dir(dir.path())
        .args([
            "bench",
            "write",
            "--target",
            "emu:ull",
            "--file-size",
            "2M",
            "--reps",
            "1",
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
    let value: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let modes: Vec<_> = value["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["device"].clone(), r["mode"].clone()))
        .collect();
    assert_eq!(
        modes,
        vec![
            ("emu:ull".into(), "sync".into()),
            ("emu:ull".into(), "async".into())
        ]
    );
    assert!(value["targets"][0]["async_vs_sync"].is_f64(), "{value}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("seq_write_vs_kernel"), "{stdout}");
}
