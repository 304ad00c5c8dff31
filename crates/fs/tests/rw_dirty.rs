//! Memory of the read-write mount under control. Dirty data, bounded in units of the page cache: past
//! `dirty_background_percent` the commit thread writes it back while the writer goes on; past
//! `dirty_percent` the writer writes back itself, down to the background mark, before it
//! returns. Writeback writes data in place without a commit (`data=ordered`); `data=journal`
//! commits instead. Metadata buffers, bounded by `metadata_pages`.

mod common;

use std::time::{Duration, Instant};

use aios_device_emu::{EmuConfig, EmuDevice};
use aios_fs::{DataMode, MountOptions, RwFs, RwOptions};
use common::{have_mke2fs, pattern};

/// 1000 cache pages: 10 % is 100 pages, 20 % is 200.
const CACHE_PAGES: usize = 1000;

fn mount(
    dir: &std::path::Path,
    commit_interval: Option<Duration>,
    data: DataMode,
) -> RwFs<EmuDevice> {
    let config = EmuConfig::parse("instant,size=32M,arena=16M").unwrap();
    let dev = EmuDevice::with_image(config, common::base_image(dir)).unwrap();
    let options = RwOptions {
        mount: MountOptions {
            cache_pages: CACHE_PAGES,
            ..MountOptions::default()
        },
        commit_interval,
        data,
        dirty_background_percent: 10,
        dirty_percent: 20,
        ..RwOptions::default()
    };
    RwFs::mount(dev, options).unwrap()
}

#[test]
fn dirty_data_past_the_background_mark_is_written_back_by_the_commit_thread() {
    let name = "dirty_data_past_the_background_mark_is_written_back_by_the_commit_thread";
    if !have_mke2fs(name) {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // An interval no test waits for: only the background mark can start this writeback.
    let mut fs = mount(
        dir.path(),
        Some(Duration::from_secs(3600)),
        DataMode::Ordered,
    );
    fs.create("/f", 0o644).unwrap();
    let below = pattern(1, 90 * 4096);
    fs.write("/f", 0, &below).unwrap();
    assert_eq!(
        fs.stats().writebacks,
        0,
        "90 pages: below the background mark"
    );
    fs.write("/f", below.len() as u64, &pattern(2, 20 * 4096))
        .unwrap();
    let started = Instant::now();
    while fs.stats().writebacks == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no background writeback past the mark"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let stats = fs.stats();
    assert_eq!(stats.commits, 0, "a writeback needs no commit: {stats:?}");
    let (_, result) = fs.unmount();
    result.unwrap();
}

#[test]
fn a_writer_past_the_dirty_limit_writes_back_before_it_returns() {
    let name = "a_writer_past_the_dirty_limit_writes_back_before_it_returns";
    if !have_mke2fs(name) {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for data in [DataMode::Ordered, DataMode::Journal] {
        let mut fs = mount(dir.path(), None, data);
        fs.create("/f", 0o644).unwrap();
        // Writes of 50 pages: the fifth leaves 250 dirty, past 20 % of 1000.
        for i in 0..4u64 {
            fs.write("/f", i * 50 * 4096, &pattern(i, 50 * 4096))
                .unwrap();
        }
        let s = fs.stats();
        assert_eq!(
            (s.commits, s.writebacks),
            (0, 0),
            "{data:?}, 200 pages: at the limit, not past it"
        );
        fs.write("/f", 200 * 4096, &pattern(9, 50 * 4096)).unwrap();
        let s = fs.stats();
        let want = match data {
            DataMode::Ordered => (0, 1),
            DataMode::Journal => (1, 0),
        };
        assert_eq!(
            (s.commits, s.writebacks),
            want,
            "{data:?}, past the limit: the writer wrote back (data=journal: committed)"
        );
        let mut back = vec![0u8; 250 * 4096];
        assert_eq!(fs.read("/f", 0, &mut back).unwrap(), back.len());
        for i in 0..5u64 {
            let want = pattern(if i == 4 { 9 } else { i }, 50 * 4096);
            let at = (i * 50 * 4096) as usize;
            assert!(
                back[at..at + want.len()] == want[..],
                "{data:?}: write {i} read back"
            );
        }
        let (_, result) = fs.unmount();
        result.unwrap();
    }
}

/// Metadata buffers are bounded too: past `metadata_pages` the mount drops blocks whose home
/// copy is the truth (after their checkpoint), reads them from home again when needed, and
/// everything reads back right and checks clean.
#[test]
fn metadata_buffers_stay_bounded_and_evicted_blocks_read_back_right() {
    let name = "metadata_buffers_stay_bounded_and_evicted_blocks_read_back_right";
    if !have_mke2fs(name) {
        return;
    }
    const CAP: usize = 64;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let config = EmuConfig::parse("instant,size=32M,arena=16M").unwrap();
    let dev = EmuDevice::with_image(config, common::base_image(dir.path())).unwrap();
    let options = RwOptions {
        commit_interval: None,
        metadata_pages: Some(CAP),
        ..RwOptions::default()
    };
    let mut fs = RwFs::mount(dev, options).unwrap();
    let mut files = Vec::new();
    for d in 0..40 {
        fs.mkdir(format!("/d{d}"), 0o755).unwrap();
        for f in 0..30 {
            let path = format!("/d{d}/f{f}");
            fs.create(&path, 0o644).unwrap();
            let data = pattern((d * 100 + f) as u64, 100 + f * 37);
            fs.write(&path, 0, &data).unwrap();
            files.push((path, data));
        }
        if d % 10 == 9 {
            // Committed and written home: their blocks may go.
            fs.sync().unwrap();
            fs.checkpoint().unwrap();
        }
    }
    assert!(
        fs.stats().metadata_evictions > 0,
        "1,240 inodes and directories in {CAP} pages: {:?}",
        fs.stats()
    );
    // Every path and file again: evicted inode-table and directory blocks come back from home.
    for (path, want) in &files {
        let mut back = vec![0u8; want.len() + 10];
        assert_eq!(fs.read(path, 0, &mut back).unwrap(), want.len(), "{path}");
        assert!(back[..want.len()] == want[..], "{path} read back");
    }
    let held = fs.shared().metadata_blocks();
    // The cap, plus one operation's blocks and the pinned superblock and descriptor blocks.
    assert!(held <= CAP + 16, "{held} metadata blocks held, cap {CAP}");
    let (dev, result) = fs.unmount();
    result.unwrap();
    let image = dir.path().join("after.img");
    dev.save(&image).unwrap();
    common::assert_fsck_clean(&image, name);
    let fs = RwFs::mount(
        EmuDevice::with_image(
            EmuConfig::parse("instant,size=32M,arena=16M").unwrap(),
            aios_device_emu::DiskImage::load(&image).unwrap(),
        )
        .unwrap(),
        RwOptions {
            commit_interval: None,
            ..RwOptions::default()
        },
    );
    let mut fs = fs.unwrap();
    for (path, want) in files.iter().step_by(7) {
        let mut back = vec![0u8; want.len()];
        assert_eq!(
            fs.read(path, 0, &mut back).unwrap(),
            want.len(),
            "{path} after remount"
        );
        assert!(back == *want, "{path} after remount");
    }
    let (_, result) = fs.unmount();
    result.unwrap();
}

/// Regression: dirty blocks that no inode lists as dirty data (slow symlink targets) kept a
/// writer past the hard mark waiting forever for a writeback that could not take them (the
/// crash campaign, with the least dirty data allowed, hung). Now the writer commits them.
#[test]
fn a_writer_past_the_mark_with_only_symlink_targets_dirty_commits() {
    let name = "a_writer_past_the_mark_with_only_symlink_targets_dirty_commits";
    if !have_mke2fs(name) {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let config = EmuConfig::parse("instant,size=32M,arena=16M").unwrap();
    let dev = EmuDevice::with_image(config, common::base_image(dir.path())).unwrap();
    let options = RwOptions {
        commit_interval: None,
        dirty_percent: 0,
        dirty_background_percent: 0,
        ..RwOptions::default()
    };
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut fs = RwFs::mount(dev, options).unwrap();
        // A target longer than the inode's 60 bytes takes a data block.
        let target = "t".repeat(100);
        for i in 0..40 {
            fs.symlink(format!("/s{i}"), target.as_bytes()).unwrap();
        }
        let stats = fs.stats();
        let (_, result) = fs.unmount();
        result.unwrap();
        done_tx.send(stats).unwrap();
    });
    let stats = done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("symlinks past the dirty limit never returned");
    assert!(stats.commits >= 1, "{stats:?}");
}
