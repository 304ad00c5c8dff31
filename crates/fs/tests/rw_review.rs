//! Liveness and error paths of the read-write mount's sync engine, each a bug found by a
//! review: a commit starved behind back-to-back data-only syncs, one large `write` that made
//! the mount read-only, and stale reads after a failed sync.
//!
//! Runs on the emulated `nand` device (real clock, a flush costs ~1 ms) like `rw_sync.rs`.
//! Skips loudly without e2fsprogs.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aios_device_emu::{EmuConfig, EmuDevice};
use aios_fs::{DataMode, RwFs, RwOptions};
use aios_journal::runtime::CommitOrder;
use common::{have_mke2fs, pattern};

fn options(data: DataMode) -> RwOptions {
    RwOptions {
        order: CommitOrder::Async,
        data,
        commit_interval: None,
        ..RwOptions::default()
    }
}

/// Finding 1: data-only syncs of different inodes run side by side and a commit may start
/// only when none is writing (`State::can_commit`), but nothing stops a new data sync from
/// starting while a commit waits. Threads that keep overwriting + `fdatasync`ing their own
/// files keep `data_syncing` non-empty forever, so an `fsync` (or `sync`, the periodic
/// commit, the dirty-limit commit) on another thread starves for as long as they run.
#[test]
fn fsync_is_not_starved_by_concurrent_data_syncs() {
    let name = "fsync_is_not_starved_by_concurrent_data_syncs";
    if !have_mke2fs(name) {
        return;
    }
    const SYNCERS: usize = 4;
    const RUN: Duration = Duration::from_secs(4);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dev = EmuDevice::with_image(
        EmuConfig::parse("nand,size=32M,arena=16M").unwrap(),
        common::base_image(dir.path()),
    )
    .unwrap();
    let mut fs = RwFs::mount(dev, options(DataMode::Ordered)).unwrap();
    for t in 0..SYNCERS {
        fs.create(format!("/o{t}"), 0o644).unwrap();
        fs.write(format!("/o{t}"), 0, &pattern(t as u64, 4 * 4096))
            .unwrap();
    }
    fs.create("/x", 0o644).unwrap();
    fs.sync().unwrap();
    let shared = fs.shared();
    let stop = AtomicBool::new(false);
    let fsync_took = std::thread::scope(|s| {
        for t in 0..SYNCERS {
            let stop = &stop;
            s.spawn(move || {
                let mut ctx = shared.ctx().unwrap();
                let path = format!("/o{t}");
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let at = (i % 4) * 4096;
                    shared
                        .write(&mut ctx, &path, at, &pattern(i + 100 * t as u64, 4096))
                        .unwrap();
                    shared.fdatasync(&mut ctx, &path).unwrap();
                    i += 1;
                }
            });
        }
        let stopper = s.spawn(|| {
            let until = Instant::now() + RUN;
            while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
            }
            stop.store(true, Ordering::Relaxed);
        });
        // Let the data syncs get going, then fsync a file that needs a commit.
        std::thread::sleep(Duration::from_millis(200));
        let mut ctx = shared.ctx().unwrap();
        shared.write(&mut ctx, "/x", 0, b"hello").unwrap();
        let started = Instant::now();
        shared.fsync(&mut ctx, "/x").unwrap();
        let took = started.elapsed();
        // Liveness, not speed: the fsync must finish while the loops still run.
        let loops_still_ran = !stop.swap(true, Ordering::Relaxed);
        stopper.join().unwrap();
        (took, loops_still_ran)
    });
    let (fsync_took, loops_still_ran) = fsync_took;
    let s = fs.stats();
    eprintln!("{name}: fsync took {fsync_took:?}; {s:?}");
    assert!(
        loops_still_ran,
        "fsync waited {fsync_took:?} behind back-to-back data-only syncs \
         (commit starved; it ran only once the fdatasync loops stopped)"
    );
    let (_, r) = fs.unmount();
    r.unwrap();
}

/// Finding 2: one `write` larger than what a commit can copy into the arena (or, in
/// `data=journal`, larger than the log) is accepted by the mutator, then the dirty-limit
/// commit at the end of the same operation cannot be built, and the whole mount turns
/// read-only: a single large user write takes the file system down.
#[test]
fn one_large_write_does_not_make_the_mount_read_only() {
    large_write(
        "one_large_write_does_not_make_the_mount_read_only",
        DataMode::Ordered,
        "nand,size=32M,arena=4M",
        8 << 20,
    );
}

#[test]
fn one_large_write_does_not_make_a_data_journal_mount_read_only() {
    large_write(
        "one_large_write_does_not_make_a_data_journal_mount_read_only",
        DataMode::Journal,
        "nand,size=32M,arena=64M",
        6 << 20,
    );
}

fn large_write(name: &str, data: DataMode, spec: &str, len: usize) {
    if !have_mke2fs(name) {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    {
        let dev = EmuDevice::with_image(
            EmuConfig::parse(spec).unwrap(),
            common::base_image(dir.path()),
        )
        .unwrap();
        let mut fs = RwFs::mount(dev, options(data)).unwrap();
        fs.create("/big", 0o644).unwrap();
        let r = fs.write("/big", 0, &pattern(5, len));
        let what = format!("{data:?}, {spec}, one write of {len} bytes");
        assert!(
            r.is_ok() && !fs.is_read_only(),
            "{what}: {r:?}; read-only: {}",
            fs.is_read_only()
        );
        fs.fsync("/big").unwrap();
        let (_, r) = fs.unmount();
        r.unwrap();
    }
}

/// Finding 3: a failed data-only sync (or commit) drops the taken blocks' newest contents
/// from memory (`State::homed` runs on the error path too, and the mutator no longer holds
/// them), so the read-only mount then reads the old block from home: a read after the error
/// returns bytes older than an acknowledged `write` (for a newly allocated block of a failed
/// commit: whatever the free block held before, possibly another file's deleted data).
#[test]
fn reads_after_a_failed_data_sync_keep_the_written_bytes() {
    use aios_device::{Device, FaultPlan, OpFilter};
    let name = "reads_after_a_failed_data_sync_keep_the_written_bytes";
    if !have_mke2fs(name) {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dev = EmuDevice::with_image(
        EmuConfig::parse("nand,size=32M,arena=16M").unwrap(),
        common::base_image(dir.path()),
    )
    .unwrap();
    let mut fs = RwFs::mount(dev.clone(), options(DataMode::Ordered)).unwrap();
    fs.create("/f", 0o644).unwrap();
    fs.write("/f", 0, &pattern(50, 8192)).unwrap();
    fs.fsync("/f").unwrap();
    let new = pattern(51, 4096);
    fs.write("/f", 0, &new).unwrap();
    dev.faults().arm(FaultPlan::nth(0, OpFilter::Writes));
    assert!(fs.fdatasync("/f").is_err());
    dev.faults().disarm();
    assert!(fs.is_read_only());
    let mut back = vec![0u8; 4096];
    match fs.read("/f", 0, &mut back) {
        Err(_) => {} // refusing to read would also be consistent
        Ok(n) => {
            assert_eq!(n, 4096);
            assert!(
                back == new,
                "read after the failed fdatasync returned the old block, not the written one"
            );
        }
    }
    let (_, r) = fs.unmount();
    assert!(r.is_err());
}
