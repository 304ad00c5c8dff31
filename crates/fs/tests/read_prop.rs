//! Property: any read at any offset and length returns exactly the source file's bytes.

mod common;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

#[test]
fn random_reads_match_the_source_files() {
    if !common::have_mke2fs("random_reads_match_the_source_files") {
        return;
    }
    let fx = common::build();
    let fs = common::mount(&fx.image);
    let mut io = fs.io().unwrap();
    let names = [
        "size1", "size4095", "size4097", "size1m3", "sparse", "frag", "a/b/mid",
    ];
    let files: Vec<(aios_fs::File, Vec<u8>)> = names
        .iter()
        .map(|name| {
            let ino = fs.lookup(&mut io, format!("/{name}")).unwrap();
            let file = fs.open(&mut io, ino).unwrap();
            (file, std::fs::read(fx.src.join(name)).unwrap())
        })
        .collect();
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    let io = std::cell::RefCell::new(io);
    let strategy = (0..files.len(), any::<u64>(), 0usize..300_000, any::<bool>());
    runner
        .run(&strategy, |(which, raw_offset, len, near_end)| {
            let (file, source) = &files[which];
            let size = source.len() as u64;
            // Half the cases land within 64 KiB of the end, where reads turn short.
            let offset = if near_end {
                size.saturating_sub(raw_offset % 65_536)
            } else {
                raw_offset % (size + 4096)
            };
            let mut buf = vec![0xA5u8; len];
            let n = fs
                .read_at(&mut io.borrow_mut(), file, offset, &mut buf)
                .unwrap();
            let start = (offset.min(size)) as usize;
            let end = (start + len).min(source.len());
            prop_assert_eq!(
                n,
                end - start,
                "length at offset {} of {}",
                offset,
                names[which]
            );
            prop_assert!(
                buf[..n] == source[start..end],
                "bytes at offset {} of {}",
                offset,
                names[which]
            );
            prop_assert!(
                buf[n..].iter().all(|&b| b == 0xA5),
                "wrote past the returned length"
            );
            Ok(())
        })
        .unwrap();
}

/// Property: cached reads (`Fs::read`) return the source bytes in both read modes, with a cache
/// far smaller than the files (constant eviction, pool refills from evicted pages) and with
/// readahead on: same cases as above, checked against `read_at` and the source.
#[test]
fn random_cached_reads_match_under_eviction_in_both_modes() {
    use aios_device_psync::{PsyncConfig, PsyncDevice};
    use aios_fs::{Fs, MountOptions, ReadMode};
    if !common::have_mke2fs("random_cached_reads_match_under_eviction_in_both_modes") {
        return;
    }
    let fx = common::build();
    let names = ["size4097", "size1m3", "sparse", "frag", "a/b/mid"];
    for (mode, readahead_pages) in [
        (ReadMode::Sync, 0),
        (ReadMode::Async, 0),
        (ReadMode::Async, 8),
    ] {
        let options = MountOptions {
            read_mode: mode,
            cache_pages: 48,
            pool_pages: 16,
            readahead_pages,
            ..MountOptions::default()
        };
        let device = PsyncDevice::open(&fx.image, PsyncConfig::default()).unwrap();
        let fs = Fs::mount(device, options).unwrap();
        let mut io = fs.io().unwrap();
        let files: Vec<(aios_fs::File, Vec<u8>)> = names
            .iter()
            .map(|name| {
                let ino = fs.lookup(&mut io, format!("/{name}")).unwrap();
                (
                    fs.open(&mut io, ino).unwrap(),
                    std::fs::read(fx.src.join(name)).unwrap(),
                )
            })
            .collect();
        let mut runner = TestRunner::new(Config {
            cases: 300,
            failure_persistence: None,
            ..Config::default()
        });
        let io = std::cell::RefCell::new(io);
        let strategy = (0..files.len(), any::<u64>(), 0usize..300_000, 0u8..3);
        runner
            .run(&strategy, |(which, raw_offset, len, kind)| {
                let (file, source) = &files[which];
                let size = source.len() as u64;
                let offset = match kind {
                    0 => size.saturating_sub(raw_offset % 65_536),
                    1 => raw_offset % (size + 4096),
                    // Small reads near the start: hits and partial pages.
                    _ => raw_offset % 20_000,
                };
                let mut buf = vec![0xA5u8; len];
                let n = fs
                    .read(&mut io.borrow_mut(), file, offset, &mut buf)
                    .unwrap();
                let start = offset.min(size) as usize;
                let end = (start + len).min(source.len());
                prop_assert_eq!(n, end - start, "{} length at {}", names[which], offset);
                prop_assert!(
                    buf[..n] == source[start..end],
                    "{} bytes at {}",
                    names[which],
                    offset
                );
                prop_assert!(buf[n..].iter().all(|&b| b == 0xA5));
                Ok(())
            })
            .unwrap();
        fs.finish_readahead(&mut io.borrow_mut());
        let stats = fs.cache().stats();
        eprintln!("{} readahead {readahead_pages}: {stats:?}", mode.name());
        assert!(stats.evictions > 0, "the cap must force eviction");
        assert!(fs.cache().resident_pages() <= 48);
        assert_eq!(
            stats.inserts + stats.duplicates + stats.raced + stats.uncached,
            stats.misses
        );
    }
}
