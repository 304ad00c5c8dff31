//! Eight threads on one read-write mount, each reading and writing its own file and its own
//! region of one shared file, reading the other threads' regions, with fsyncs and the periodic
//! commit running; a cache small enough to evict. Checked against a model: every read of a
//! thread's own bytes returns what it last wrote; every page read from another thread's
//! region is one whole version that thread wrote (never torn, never another region's);
//! after unmount, the image is `e2fsck`-clean and a fresh mount reads every model back.

mod common;

use std::time::Duration;

use aios_device_emu::{DiskImage, EmuConfig, EmuDevice};
use aios_fs::{MountOptions, OpenOptions, RwFs, RwOptions, RwShared};
use common::have_mke2fs;

const THREADS: u64 = 8;
const OWN_PAGES: u64 = 48;
const REGION_PAGES: u64 = 16;
const STEPS: u64 = 2000;
const PAGE: u64 = 4096;

/// A 4 KiB page that says who wrote it: `(thread, page index in the file, version)` in its
/// first 24 bytes, and bytes derived from them in the rest, so a torn or misplaced page shows.
fn stamped_page(thread: u64, page: u64, version: u64) -> Vec<u8> {
    let mut out = common::pattern(thread << 40 ^ page << 20 ^ version, PAGE as usize);
    out[..8].copy_from_slice(&thread.to_le_bytes());
    out[8..16].copy_from_slice(&page.to_le_bytes());
    out[16..24].copy_from_slice(&version.to_le_bytes());
    out
}

/// Checks that `bytes` is a whole page `thread` wrote at `page` (or zeros: never written).
fn check_page(bytes: &[u8], thread: u64, page: u64, what: &str) {
    if bytes.iter().all(|&b| b == 0) {
        return;
    }
    let field = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
    assert_eq!(
        (field(0), field(1)),
        (thread, page),
        "{what}: page from elsewhere"
    );
    assert!(
        bytes == stamped_page(thread, page, field(2)),
        "{what}: torn page (version {})",
        field(2)
    );
}

/// xorshift64: each thread's own sequence of choices.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn worker(shared: &RwShared<EmuDevice>, t: u64) -> Vec<u8> {
    let mut ctx = shared.ctx().unwrap();
    let create = OpenOptions {
        create: true,
        ..OpenOptions::default()
    };
    let own = shared.open(&mut ctx, format!("/own.{t}"), create).unwrap();
    let common = shared.open(&mut ctx, "/shared", create).unwrap();
    let mut model = vec![0u8; (OWN_PAGES * PAGE) as usize];
    let mut version = 0u64;
    let mut x = 0x9e37_79b9 ^ ((t + 1) * 0x1234_5678_9abc);
    let region = t * REGION_PAGES;
    let mut buf = vec![0u8; (4 * PAGE) as usize];
    for step in 0..STEPS {
        let what = format!("thread {t} step {step}");
        match next(&mut x) % 8 {
            // Own file: a write of 1-3 pages at a random byte offset (partial pages too).
            0 | 1 => {
                version += 1;
                let at = next(&mut x) % ((OWN_PAGES - 3) * PAGE);
                let len = 1 + next(&mut x) % (3 * PAGE);
                let bytes = common::pattern(t << 32 ^ version, len as usize);
                shared.write_at(&mut ctx, &own, at, &bytes).unwrap();
                model[at as usize..(at + len) as usize].copy_from_slice(&bytes);
            }
            // Own file: read back a random range.
            2 | 3 => {
                let at = next(&mut x) % ((OWN_PAGES - 4) * PAGE);
                let len = 1 + next(&mut x) % (4 * PAGE);
                let out = &mut buf[..len as usize];
                let n = shared.read_at(&mut ctx, &own, at, out).unwrap();
                let size = model.len() as u64;
                let want_len = len.min(size.saturating_sub(at)) as usize;
                // The file is as long as the furthest write; past it reads end early.
                assert!(n <= want_len, "{what}: read past the model");
                assert!(
                    out[..n] == model[at as usize..at as usize + n],
                    "{what}: own bytes differ at {at}"
                );
            }
            // Own region of the shared file: a whole stamped page.
            4 => {
                version += 1;
                let page = region + next(&mut x) % REGION_PAGES;
                let bytes = stamped_page(t, page, version);
                shared
                    .write_at(&mut ctx, &common, page * PAGE, &bytes)
                    .unwrap();
            }
            // Any region of the shared file: every page a whole version of its owner's.
            5 | 6 => {
                let page = next(&mut x) % (THREADS * REGION_PAGES);
                let out = &mut buf[..PAGE as usize];
                let n = shared.read_at(&mut ctx, &common, page * PAGE, out).unwrap();
                if n == PAGE as usize {
                    check_page(out, page / REGION_PAGES, page, &what);
                }
            }
            _ => {
                if next(&mut x).is_multiple_of(2) {
                    shared.fsync_file(&mut ctx, &own).unwrap();
                } else {
                    shared.fdatasync_file(&mut ctx, &common).unwrap();
                }
            }
        }
    }
    shared.fsync_file(&mut ctx, &own).unwrap();
    shared.close(&mut ctx, own).unwrap();
    shared.close(&mut ctx, common).unwrap();
    model
}

#[test]
fn eight_threads_reading_and_writing_own_and_shared_files_match_a_model() {
    let name = "eight_threads_reading_and_writing_own_and_shared_files_match_a_model";
    if !have_mke2fs(name) {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let config = EmuConfig::parse("ull,size=32M,arena=16M").unwrap();
    let dev = EmuDevice::with_image(config, common::base_image(dir.path())).unwrap();
    let options = RwOptions {
        // Small enough that the threads' pages evict each other.
        mount: MountOptions {
            cache_pages: 256,
            ..MountOptions::default()
        },
        commit_interval: Some(Duration::from_millis(2)),
        ..RwOptions::default()
    };
    let fs = RwFs::mount(dev, options).unwrap();
    // A deadlock fails the test instead of hanging the suite.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watched = std::sync::Arc::clone(&done);
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(300));
        if !watched.load(std::sync::atomic::Ordering::Relaxed) {
            eprintln!("{name}: no progress in 300 s (deadlock?)");
            std::process::abort();
        }
    });
    let models: Vec<Vec<u8>> = std::thread::scope(|s| {
        let shared = fs.shared();
        let workers: Vec<_> = (0..THREADS)
            .map(|t| s.spawn(move || worker(shared, t)))
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (dev, result) = fs.unmount();
    result.unwrap();
    let image = dir.path().join("after.img");
    dev.current_image().unwrap().save(&image).unwrap();
    common::assert_fsck_clean(&image, name);

    // A fresh mount of what is on the device reads every model back.
    let config = EmuConfig::parse("instant,size=32M,arena=16M").unwrap();
    let dev = EmuDevice::with_image(config, DiskImage::load(&image).unwrap()).unwrap();
    let mut fs = RwFs::mount(
        dev,
        RwOptions {
            commit_interval: None,
            ..RwOptions::default()
        },
    )
    .unwrap();
    for (t, model) in models.iter().enumerate() {
        let mut back = vec![0u8; model.len()];
        let n = fs.read(format!("/own.{t}"), 0, &mut back).unwrap();
        assert!(
            back[..n] == model[..n] && model[n..].iter().all(|&b| b == 0),
            "thread {t}'s file after remount"
        );
    }
    let mut page = vec![0u8; PAGE as usize];
    for p in 0..THREADS * REGION_PAGES {
        let n = fs.read("/shared", p * PAGE, &mut page).unwrap();
        if n == PAGE as usize {
            check_page(&page, p / REGION_PAGES, p, "shared file after remount");
        }
    }
    let (_, result) = fs.unmount();
    result.unwrap();
}
