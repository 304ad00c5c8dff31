//! Dirty data of the read-write mount, bounded in units of the page cache: past
//! `dirty_background_percent` the commit thread writes it back while the writer goes on; past
//! `dirty_percent` the writer commits before it returns.

mod common;

use std::time::{Duration, Instant};

use aios_device_emu::{EmuConfig, EmuDevice};
use aios_fs::{MountOptions, RwFs, RwOptions};
use common::{have_mke2fs, pattern};

/// 1000 cache pages: 10 % is 100 pages, 20 % is 200.
const CACHE_PAGES: usize = 1000;

fn mount(dir: &std::path::Path, commit_interval: Option<Duration>) -> RwFs<EmuDevice> {
    let config = EmuConfig::parse("instant,size=32M,arena=16M").unwrap();
    let dev = EmuDevice::with_image(config, common::base_image(dir)).unwrap();
    let options = RwOptions {
        mount: MountOptions {
            cache_pages: CACHE_PAGES,
            ..MountOptions::default()
        },
        commit_interval,
        dirty_background_percent: 10,
        dirty_percent: 20,
        ..RwOptions::default()
    };
    RwFs::mount(dev, options).unwrap()
}

#[test]
fn dirty_data_past_the_background_mark_is_committed_by_the_commit_thread() {
    let name = "dirty_data_past_the_background_mark_is_committed_by_the_commit_thread";
    if !have_mke2fs(name) {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // An interval no test waits for: only the background mark can start this commit.
    let mut fs = mount(dir.path(), Some(Duration::from_secs(3600)));
    fs.create("/f", 0o644).unwrap();
    let below = pattern(1, 90 * 4096);
    fs.write("/f", 0, &below).unwrap();
    assert_eq!(fs.stats().commits, 0, "90 pages: below the background mark");
    fs.write("/f", below.len() as u64, &pattern(2, 20 * 4096))
        .unwrap();
    let started = Instant::now();
    while fs.stats().periodic_commits == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no background commit past the mark"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let stats = fs.stats();
    assert_eq!(
        stats.commits, stats.periodic_commits,
        "110 pages: the commit thread committed, not the writer"
    );
    let (_, result) = fs.unmount();
    result.unwrap();
}

#[test]
fn a_writer_past_the_dirty_limit_commits_before_it_returns() {
    let name = "a_writer_past_the_dirty_limit_commits_before_it_returns";
    if !have_mke2fs(name) {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut fs = mount(dir.path(), None);
    fs.create("/f", 0o644).unwrap();
    // Writes of 50 pages: the fifth leaves 250 dirty, past 20 % of 1000.
    for i in 0..4u64 {
        fs.write("/f", i * 50 * 4096, &pattern(i, 50 * 4096))
            .unwrap();
    }
    assert_eq!(
        fs.stats().commits,
        0,
        "200 pages: at the limit, not past it"
    );
    fs.write("/f", 200 * 4096, &pattern(9, 50 * 4096)).unwrap();
    assert_eq!(
        fs.stats().commits,
        1,
        "past the limit: the writer committed"
    );
    let (_, result) = fs.unmount();
    result.unwrap();
}
