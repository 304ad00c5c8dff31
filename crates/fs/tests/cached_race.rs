//! Many threads on the same cold pages through one `Fs` (over the emulated ultra-low-latency
//! device), and the per-stage breakdown: counts match the misses, every stage of the mode is
//! recorded, nothing is recorded when it is off.

mod common;

use std::path::Path;
use std::sync::Barrier;

use aios_device::CompletionMode;
use aios_device_emu::EmuDevice;
use aios_fs::{Fs, MountOptions, ReadMode, Stage};
use common::{build, have_mke2fs};

const THREADS: usize = 8;

fn mount_emu(image: &Path, preset: &str, options: MountOptions) -> Fs<EmuDevice> {
    let spec = format!("{preset},file={},arena=64M", image.display());
    Fs::mount(EmuDevice::open(&spec).unwrap(), options).unwrap()
}

#[test]
fn many_threads_on_the_same_cold_pages_get_correct_data() {
    if !have_mke2fs("many_threads_on_the_same_cold_pages_get_correct_data") {
        return;
    }
    let fx = build();
    let size = (1usize << 20) + 3;
    let source = common::pattern(size as u64, size);
    for (mode, completion, readahead_pages) in [
        (ReadMode::Async, CompletionMode::Interrupt, 0),
        (ReadMode::Async, CompletionMode::Poll, 0),
        (ReadMode::Sync, CompletionMode::Interrupt, 0),
        (ReadMode::Async, CompletionMode::Poll, 32),
        (ReadMode::Sync, CompletionMode::Interrupt, 32),
    ] {
        let options = MountOptions {
            read_mode: mode,
            completion,
            cache_pages: 1024,
            readahead_pages,
            ..MountOptions::default()
        };
        let fs = mount_emu(&fx.image, "ull", options);
        let barrier = Barrier::new(THREADS);
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (fs, barrier, source) = (&fs, &barrier, &source);
                s.spawn(move || {
                    let mut io = fs.io().unwrap();
                    let ino = fs.lookup(&mut io, "/size1m3").unwrap();
                    let file = fs.open(&mut io, ino).unwrap();
                    // Odd threads read in single pages, even ones in 64 KiB runs, all from the
                    // start: they meet on the same cold pages.
                    let chunk = if t % 2 == 1 { 4096 } else { 64 << 10 };
                    let mut buf = vec![0u8; chunk];
                    barrier.wait();
                    let mut offset = 0usize;
                    while offset < size {
                        let n = fs.read(&mut io, &file, offset as u64, &mut buf).unwrap();
                        assert!(n > 0);
                        assert!(
                            buf[..n] == source[offset..offset + n],
                            "thread {t} at {offset}"
                        );
                        offset += n;
                    }
                    // Pending readahead inserts when reaped; reap it before reading statistics.
                    fs.finish_readahead(&mut io);
                });
            }
        });
        let stats = fs.cache().stats();
        eprintln!(
            "{} {} readahead {readahead_pages}: {THREADS} threads: duplicates {} raced {} \
             waits {} {stats:?}",
            mode.name(),
            completion.name(),
            stats.duplicates,
            stats.raced,
            stats.waits
        );
        assert_eq!(
            stats.inserts + stats.duplicates + stats.raced + stats.uncached,
            stats.misses,
            "accounting: {stats:?}"
        );
        assert_eq!(stats.fill_failures, 0);
        assert_eq!(stats.inserts, size.div_ceil(4096) as u64, "{stats:?}");
        // Readahead inserts lazily in both modes (a page locked by a request only its own
        // thread can reap would stall other readers), so its lost races are duplicates.
        if mode == ReadMode::Sync && readahead_pages == 0 {
            assert_eq!(stats.duplicates, 0);
        }
        if mode == ReadMode::Async {
            assert_eq!(stats.raced, 0);
        }
    }
}

#[test]
fn breakdown_counts_every_stage_of_each_miss_and_nothing_when_off() {
    if !have_mke2fs("breakdown_counts_every_stage_of_each_miss_and_nothing_when_off") {
        return;
    }
    let fx = build();
    const READS: u64 = 16;
    for mode in [ReadMode::Sync, ReadMode::Async] {
        let options = MountOptions {
            read_mode: mode,
            breakdown: true,
            // The first read at offset 0 counts as sequential and would read ahead the pages
            // this test wants to miss one by one.
            readahead_pages: 0,
            ..MountOptions::default()
        };
        let fs = mount_emu(&fx.image, "ull", options);
        let mut io = fs.io().unwrap();
        let ino = fs.lookup(&mut io, "/size1m3").unwrap();
        let file = fs.open(&mut io, ino).unwrap();
        let mut buf = [0u8; 4096];
        // Every other page: N separate one-page misses.
        for i in 0..READS {
            fs.read(&mut io, &file, i * 8192, &mut buf).unwrap();
        }
        // Hits are not recorded.
        fs.read(&mut io, &file, 0, &mut buf).unwrap();
        let b = io.breakdown().unwrap().clone();
        assert_eq!(b.misses, READS, "{}", mode.name());
        assert_eq!(b.pages, READS);
        for stage in Stage::ALL {
            if stage.applies(mode) {
                assert_eq!(b.count(stage), READS, "{} {}", mode.name(), stage.name());
                assert!(b.total_ns(stage) > 0, "{} {}", mode.name(), stage.name());
            } else {
                assert_eq!(b.count(stage), 0, "{} {}", mode.name(), stage.name());
            }
        }
        assert!(b.critical_path_ns >= b.total_ns(Stage::DeviceWait));
        let mut line = format!("{} per miss:", mode.name());
        for stage in Stage::ALL {
            let tag = if stage.overlapped(mode) { "*" } else { "" };
            line += &format!(" {}{tag}={}ns", stage.name(), b.mean_ns(stage));
        }
        eprintln!("{line} critical={}ns", b.mean_critical_path_ns());

        // Off: a fresh context of a mount without the option records nothing.
        let options = MountOptions {
            read_mode: mode,
            readahead_pages: 0,
            ..MountOptions::default()
        };
        let fs = mount_emu(&fx.image, "ull", options);
        let mut io = fs.io().unwrap();
        let file = fs.open(&mut io, ino).unwrap();
        fs.read(&mut io, &file, 0, &mut buf).unwrap();
        assert!(io.breakdown().is_none());
        io.set_breakdown(true);
        fs.read(&mut io, &file, 8192, &mut buf).unwrap();
        assert_eq!(io.breakdown().unwrap().misses, 1);
        io.reset_breakdown();
        assert_eq!(io.breakdown().unwrap().misses, 0);
    }
}

#[test]
fn sequential_reads_are_read_ahead_and_random_ones_are_not() {
    if !have_mke2fs("sequential_reads_are_read_ahead_and_random_ones_are_not") {
        return;
    }
    let fx = build();
    let size = (1usize << 20) + 3;
    let source = common::pattern(size as u64, size);
    for mode in [ReadMode::Sync, ReadMode::Async] {
        let options = MountOptions {
            read_mode: mode,
            readahead_pages: 32,
            ..MountOptions::default()
        };
        let fs = mount_emu(&fx.image, "ull", options);
        let mut io = fs.io().unwrap();
        let ino = fs.lookup(&mut io, "/size1m3").unwrap();
        let file = fs.open(&mut io, ino).unwrap();
        let before = io.block_stats();
        let mut buf = vec![0u8; 16 << 10];
        let mut offset = 0usize;
        while offset < size {
            let n = fs.read(&mut io, &file, offset as u64, &mut buf).unwrap();
            assert!(
                buf[..n] == source[offset..offset + n],
                "{} at {offset}",
                mode.name()
            );
            offset += n;
        }
        fs.finish_readahead(&mut io);
        let ra = io.readahead_stats();
        let requests = io.block_stats().staged - before.staged;
        let stats = fs.cache().stats();
        eprintln!(
            "{} sequential 16 KiB: {requests} requests, {ra:?}",
            mode.name()
        );
        // Without readahead: 65 requests of 4 pages. With a 32-page window: ~9 + the first.
        assert!(requests <= 16, "{} requests", requests);
        assert!(ra.requests >= 7 && ra.cached_pages >= 200, "{ra:?}");
        assert_eq!(ra.failed, 0);
        assert_eq!(
            stats.inserts + stats.duplicates + stats.raced + stats.uncached,
            stats.misses,
            "{stats:?}"
        );
        assert_eq!(stats.inserts, size.div_ceil(4096) as u64);

        // Backwards reads are never sequential: no readahead.
        let file = fs.open(&mut io, ino).unwrap();
        let ra_before = io.readahead_stats();
        for page in (0..64u64).rev() {
            let n = fs
                .read(&mut io, &file, page * 4096 + 5, &mut buf[..100])
                .unwrap();
            let at = page as usize * 4096 + 5;
            assert!(buf[..n] == source[at..at + 100]);
        }
        assert_eq!(io.readahead_stats(), ra_before);

        // A handle advised random never reads ahead, even when its reads are sequential; the
        // advice is per handle, like `posix_fadvise` on a descriptor.
        let cold = mount_emu(&fx.image, "ull", options);
        let mut io = cold.io().unwrap();
        let random = cold.open(&mut io, ino).unwrap();
        random.advise(aios_fs::Access::Random);
        for page in 0..64u64 {
            let n = cold
                .read(&mut io, &random, page * 4096, &mut buf[..4096])
                .unwrap();
            let at = page as usize * 4096;
            assert!(buf[..n] == source[at..at + 4096]);
        }
        assert_eq!(io.readahead_stats().requests, 0);
        let normal = cold.open(&mut io, ino).unwrap();
        for page in 64..128u64 {
            cold.read(&mut io, &normal, page * 4096, &mut buf[..4096])
                .unwrap();
        }
        assert!(io.readahead_stats().requests > 0);
    }
}
