//! Dirty data of the read-write mount, bounded in units of the page cache: past
//! `dirty_background_percent` the commit thread writes it back while the writer goes on; past
//! `dirty_percent` the writer writes back itself, down to the background mark, before it
//! returns. Writeback writes data in place without a commit (`data=ordered`); `data=journal`
//! commits instead.

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
