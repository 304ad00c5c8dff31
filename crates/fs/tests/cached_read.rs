//! Cached reads (`Fs::read`) in both read modes and both completion modes, over the emulated
//! device loaded with a real `mke2fs -d` image: every file reads back byte-identical cold, then
//! hot without any I/O; a contiguous 128 KiB cold read is one request; a failed device read is a
//! typed error that leaves nothing cached, and a retry succeeds.

mod common;

use std::path::{Path, PathBuf};

use aios_cache::CacheError;
use aios_device::{CompletionMode, Device, DeviceError, FaultPlan, OpFilter};
use aios_device_emu::EmuDevice;
use aios_fs::{File, Fs, FsError, IoCtx, MountOptions, ReadMode};
use common::{build, have_mke2fs};

/// Enough for every page of the fixture (~4,700): nothing is evicted.
const CACHE_PAGES: usize = 8192;
const MODES: [ReadMode; 2] = [ReadMode::Sync, ReadMode::Async];
const COMPLETIONS: [CompletionMode; 2] = [CompletionMode::Interrupt, CompletionMode::Poll];

pub fn mount_emu(image: &Path, preset: &str, options: MountOptions) -> Fs<EmuDevice> {
    let spec = format!("{preset},file={},arena=64M", image.display());
    let device = EmuDevice::open(&spec).unwrap();
    Fs::mount(device, options).unwrap()
}

/// These tests count the requests of demand reads: readahead (tested in `cached_race.rs` and
/// `read_prop.rs`) is off.
pub fn options(read_mode: ReadMode, completion: CompletionMode) -> MountOptions {
    MountOptions {
        read_mode,
        completion,
        cache_pages: CACHE_PAGES,
        readahead_pages: 0,
        ..MountOptions::default()
    }
}

/// Every regular file under `src`, as (path in the image, path on the host).
fn regular_files(src: &Path, image_dir: &str, out: &mut Vec<(String, PathBuf)>) {
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let path = format!("{image_dir}/{name}");
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            regular_files(&entry.path(), &path, out);
        } else if kind.is_file() {
            out.push((path, entry.path()));
        }
    }
}

/// Reads the whole file through `Fs::read` in 200 KiB pieces (several miss runs each).
fn read_whole<D: Device>(fs: &Fs<D>, io: &mut IoCtx<D::Queue>, file: &File) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 200 * 1024];
    loop {
        let n = fs.read(io, file, out.len() as u64, &mut chunk).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    out
}

#[test]
fn every_file_reads_back_cold_then_hot_without_io() {
    if !have_mke2fs("every_file_reads_back_cold_then_hot_without_io") {
        return;
    }
    let fx = build();
    let mut files = Vec::new();
    regular_files(&fx.src, "", &mut files);
    assert!(files.len() > common::BIG_DIR_ENTRIES);
    for mode in MODES {
        for completion in COMPLETIONS {
            let what = format!("{} {}", mode.name(), completion.name());
            let fs = mount_emu(&fx.image, "instant", options(mode, completion));
            let mut io = fs.io().unwrap();
            let opened: Vec<(File, PathBuf)> = files
                .iter()
                .map(|(path, host)| {
                    let ino = fs.lookup(&mut io, path).unwrap();
                    (fs.open(&mut io, ino).unwrap(), host.clone())
                })
                .collect();
            for pass in ["cold", "hot"] {
                let before = io.block_stats();
                let cache_before = fs.cache().stats();
                for (file, host) in &opened {
                    let data = read_whole(&fs, &mut io, file);
                    assert!(
                        data == std::fs::read(host).unwrap(),
                        "{what} {pass}: {} differs",
                        host.display()
                    );
                }
                let stats = fs.cache().stats();
                if pass == "hot" {
                    assert_eq!(io.block_stats(), before, "{what}: a hot read did I/O");
                    assert_eq!(stats.misses, cache_before.misses, "{what}: hot misses");
                    assert!(stats.hits > cache_before.hits);
                } else {
                    assert!(io.block_stats().completed > before.completed);
                }
                assert_eq!(stats.evictions, 0, "{what}");
                assert_eq!(
                    stats.inserts + stats.duplicates + stats.raced + stats.uncached,
                    stats.misses,
                    "{what}: accounting {stats:?}"
                );
            }
            eprintln!("{what}: {:?}", fs.cache().stats());
        }
    }
}

/// Opens `/size1m3` (1 MiB + 3 bytes of `pattern(size)`), returning it and its source bytes.
fn open_big<D: Device>(fs: &Fs<D>, io: &mut IoCtx<D::Queue>) -> (File, Vec<u8>) {
    let ino = fs.lookup(io, "/size1m3").unwrap();
    let file = fs.open(io, ino).unwrap();
    let size = (1usize << 20) + 3;
    (file, common::pattern(size as u64, size))
}

#[test]
fn a_cold_contiguous_128k_read_is_one_request() {
    if !have_mke2fs("a_cold_contiguous_128k_read_is_one_request") {
        return;
    }
    let fx = build();
    for mode in MODES {
        let fs = mount_emu(
            &fx.image,
            "instant",
            options(mode, CompletionMode::Interrupt),
        );
        let mut io = fs.io().unwrap();
        let (file, source) = open_big(&fs, &mut io);
        let first = file.extents().find(0).copied().unwrap();
        assert!(
            first.len_blocks >= 64,
            "size1m3 is not contiguous: {first:?}"
        );
        for offset in [0usize, 128 << 10] {
            let before = io.block_stats();
            let mut buf = vec![0u8; 128 << 10];
            assert_eq!(
                fs.read(&mut io, &file, offset as u64, &mut buf).unwrap(),
                buf.len()
            );
            assert!(buf == source[offset..offset + buf.len()], "{}", mode.name());
            let after = io.block_stats();
            assert_eq!(after.staged - before.staged, 1, "{}", mode.name());
            assert_eq!(after.submitted - before.submitted, 1, "{}", mode.name());
        }
        // An unaligned read over cached and uncached pages: the cached ones cost nothing.
        let before = io.block_stats();
        let mut buf = vec![0u8; 100_000];
        let offset = (256 << 10) - 5000;
        assert_eq!(
            fs.read(&mut io, &file, offset as u64, &mut buf).unwrap(),
            buf.len()
        );
        assert!(buf == source[offset..offset + buf.len()]);
        assert_eq!(io.block_stats().staged - before.staged, 1);
    }
}

#[test]
fn a_failed_read_is_a_typed_error_and_a_retry_succeeds() {
    if !have_mke2fs("a_failed_read_is_a_typed_error_and_a_retry_succeeds") {
        return;
    }
    let fx = build();
    for mode in MODES {
        for len in [4096usize, 128 << 10] {
            let what = format!("{} {len} bytes", mode.name());
            let fs = mount_emu(
                &fx.image,
                "instant",
                options(mode, CompletionMode::Interrupt),
            );
            let mut io = fs.io().unwrap();
            let (file, source) = open_big(&fs, &mut io);
            let offset = 40_000usize;
            fs.device().faults().arm(FaultPlan::nth(0, OpFilter::Reads));
            let mut buf = vec![0u8; len];
            let err = fs
                .read(&mut io, &file, offset as u64, &mut buf)
                .unwrap_err();
            match &err {
                FsError::Read {
                    ino, offset_bytes, ..
                } => {
                    assert_eq!(*ino, file.ino(), "{what}");
                    assert_eq!(*offset_bytes, offset as u64, "{what}");
                }
                other => panic!("{what}: untyped error {other:?}"),
            }
            assert!(
                matches!(
                    err.root_cause(),
                    FsError::Cache(CacheError::Fill {
                        source: DeviceError::Io { .. },
                        ..
                    })
                ),
                "{what}: {err}"
            );
            let stats = fs.cache().stats();
            assert!(stats.fill_failures >= 1, "{what}");
            assert_eq!(
                fs.cache().resident_pages(),
                0,
                "{what}: a failed page stayed"
            );
            assert_eq!(
                fs.read(&mut io, &file, offset as u64, &mut buf).unwrap(),
                len
            );
            assert!(buf == source[offset..offset + len], "{what}: retry data");
            let before = io.block_stats();
            assert_eq!(
                fs.read(&mut io, &file, offset as u64, &mut buf).unwrap(),
                len
            );
            assert_eq!(io.block_stats(), before, "{what}: retry not cached");
        }
    }
}

#[test]
fn reads_past_eof_and_into_holes() {
    if !have_mke2fs("reads_past_eof_and_into_holes") {
        return;
    }
    let fx = build();
    for mode in MODES {
        let fs = mount_emu(
            &fx.image,
            "instant",
            options(mode, CompletionMode::Interrupt),
        );
        let mut io = fs.io().unwrap();
        let ino = fs.lookup(&mut io, "/sparse").unwrap();
        let file = fs.open(&mut io, ino).unwrap();
        let source = std::fs::read(fx.src.join("sparse")).unwrap();
        // A read spanning data, the hole and the far data.
        let offset = 8000usize;
        let mut buf = vec![0xA5u8; source.len()];
        let n = fs.read(&mut io, &file, offset as u64, &mut buf).unwrap();
        assert_eq!(n, source.len() - offset);
        assert!(buf[..n] == source[offset..]);
        assert!(buf[n..].iter().all(|&b| b == 0xA5));
        let mut buf = [0u8; 10];
        assert_eq!(
            fs.read(&mut io, &file, source.len() as u64, &mut buf)
                .unwrap(),
            0
        );
        // Hole pages are never cached: only the data pages are.
        assert!(fs.cache().resident_pages() <= 5, "{}", mode.name());
    }
}

#[test]
fn unmount_returns_every_page_and_the_device_mounts_again_cold() {
    if !have_mke2fs("unmount_returns_every_page_and_the_device_mounts_again_cold") {
        return;
    }
    let fx = build();
    let fs = mount_emu(
        &fx.image,
        "instant",
        options(ReadMode::Async, CompletionMode::Interrupt),
    );
    let free_at_mount = fs.device().arena().free_pages();
    let mut device = None;
    for round in 0..2 {
        let fs = match device.take() {
            None => mount_emu(
                &fx.image,
                "instant",
                options(ReadMode::Async, CompletionMode::Interrupt),
            ),
            Some(d) => Fs::mount(d, options(ReadMode::Sync, CompletionMode::Interrupt)).unwrap(),
        };
        let mut io = fs.io().unwrap();
        let (file, source) = open_big(&fs, &mut io);
        assert!(read_whole(&fs, &mut io, &file) == source, "round {round}");
        let stats = fs.cache().stats();
        // A fresh mount starts cold even on a reused device.
        assert_eq!(stats.hits, 0, "round {round}: {stats:?}");
        assert!(stats.misses > 0);
        drop(io);
        let d = fs.unmount();
        assert_eq!(d.arena().free_pages(), free_at_mount, "round {round}");
        device = Some(d);
    }
    drop(fs);
}
