//! Reads through one read-write mount on the emulated `ull` device, next to the read-only
//! mount's cold read of the same file: the numbers the one-stack issue starts from.
//!
//! 1. A 64 MiB file written through the read-write mount, synced and checkpointed.
//! 2. 800 cold 64 KiB reads at shuffled offsets through the read-write mount (mean).
//! 3. Random 4 KiB reads of the file for 1 s on 1, then 2 threads of that mount (reads/s).
//! 4. Hot 4 KiB reads of one cached page for 0.5 s: by handle (no mount-wide lock), by path
//!    (planned under the state lock), and the kernel's `pread` of a cached host file (ns each).
//! 5. The mount unmounted, the image mounted read-only (async order): 200 more cold 64 KiB
//!    reads at offsets not read before (mean).
//! 6. Sequential 4 KiB reads of the whole file from a cold cache, through a fresh read-write
//!    mount by handle and through a fresh read-only mount (MiB/s; both read ahead).
//!
//! Run: `cargo run --release -p aios-fs --example rw_reads` (needs `mke2fs`).

use std::time::{Duration, Instant};

use aios_device_emu::{DiskImage, EmuConfig, EmuDevice};
use aios_fs::{Fs, MountOptions, OpenOptions, ReadMode, RwFs, RwOptions, RwShared};

const FILE_BYTES: u64 = 64 << 20;
const CHUNK_BYTES: u64 = 64 << 10;

/// xorshift64: a fixed, cheap sequence (the example needs no statistics, only spread).
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn main() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("fs.img");
    aios_fs::mkfs::make_ext4(&path, 256 << 20, None).expect("mke2fs");
    let config = EmuConfig::parse("ull,size=256M,arena=64M,prefault=true").expect("emu spec");
    let image = DiskImage::load(&path).expect("image");
    let dev = EmuDevice::with_image(config, image).expect("emulated device");
    let options = RwOptions {
        commit_interval: None,
        ..RwOptions::default()
    };
    let mut fs = RwFs::mount(dev, options).expect("mount read-write");
    fs.create("/f", 0o644).expect("create");
    let chunk = vec![0xab_u8; 1 << 20];
    for i in 0..(FILE_BYTES >> 20) {
        fs.write("/f", i << 20, &chunk).expect("write");
    }
    fs.fsync("/f").expect("fsync");
    fs.checkpoint().expect("checkpoint");

    let mut order: Vec<u64> = (0..FILE_BYTES / CHUNK_BYTES).collect();
    let mut x = 12345;
    for i in (1..order.len()).rev() {
        order.swap(i, (next(&mut x) % (i as u64 + 1)) as usize);
    }
    let (rw_part, ro_part) = order.split_at(800);
    {
        let shared = fs.shared();
        let mut ctx = shared.ctx().expect("context");
        let mut buf = vec![0u8; CHUNK_BYTES as usize];
        let started = Instant::now();
        for &c in rw_part {
            shared
                .read(&mut ctx, "/f", c * CHUNK_BYTES, &mut buf)
                .expect("read");
        }
        let mean_us = started.elapsed().as_secs_f64() * 1e6 / rw_part.len() as f64;
        println!("read-write mount, cold 64 KiB read: mean {mean_us:.1} us");
        for threads in [1u64, 2] {
            let reads: u64 = std::thread::scope(|s| {
                let workers: Vec<_> = (0..threads)
                    .map(|t| {
                        s.spawn(move || {
                            let mut ctx = shared.ctx().expect("context");
                            let mut page = vec![0u8; 4096];
                            let mut y = 99 + t;
                            let mut n = 0u64;
                            let end = Instant::now() + Duration::from_secs(1);
                            while Instant::now() < end {
                                let at = next(&mut y) % (FILE_BYTES / 4096) * 4096;
                                shared.read(&mut ctx, "/f", at, &mut page).expect("read");
                                n += 1;
                            }
                            n
                        })
                    })
                    .collect();
                workers.into_iter().map(|w| w.join().expect("reader")).sum()
            });
            println!("read-write mount, random 4 KiB reads, {threads} thread(s): {reads} /s");
        }
        hot_reads(shared);
    }
    let (dev, unmounted) = fs.unmount();
    unmounted.expect("unmount");
    let options = MountOptions {
        read_mode: ReadMode::Async,
        ..MountOptions::default()
    };
    let ro = Fs::mount(dev, options).expect("mount read-only");
    let mut io = ro.io().expect("context");
    let ino = ro.lookup(&mut io, "/f").expect("lookup");
    let file = ro.open(&mut io, ino).expect("open");
    let mut buf = vec![0u8; CHUNK_BYTES as usize];
    let sample = &ro_part[..200];
    let started = Instant::now();
    for &c in sample {
        ro.read(&mut io, &file, c * CHUNK_BYTES, &mut buf)
            .expect("read");
    }
    let mean_us = started.elapsed().as_secs_f64() * 1e6 / sample.len() as f64;
    println!("read-only mount (async), cold 64 KiB read: mean {mean_us:.1} us");
    drop(io);
    sequential_reads(ro.unmount());
}

/// Sequential 4 KiB reads of the whole file from a cold cache: by handle through a fresh
/// read-write mount, then through a fresh read-only mount (both read ahead).
fn sequential_reads(dev: EmuDevice) {
    let options = RwOptions {
        commit_interval: None,
        ..RwOptions::default()
    };
    let fs = RwFs::mount(dev, options).expect("mount read-write");
    let shared = fs.shared();
    let mut ctx = shared.ctx().expect("context");
    let file = shared
        .open(&mut ctx, "/f", OpenOptions::default())
        .expect("open");
    let mut page = vec![0u8; 4096];
    let started = Instant::now();
    for i in 0..FILE_BYTES / 4096 {
        shared
            .read_at(&mut ctx, &file, i * 4096, &mut page)
            .expect("read");
    }
    let rw_mib_s = FILE_BYTES as f64 / (1 << 20) as f64 / started.elapsed().as_secs_f64();
    shared.close(&mut ctx, file).expect("close");
    drop(ctx);
    let (dev, unmounted) = fs.unmount();
    unmounted.expect("unmount");
    let ro = Fs::mount(dev, MountOptions::default()).expect("mount read-only");
    let mut io = ro.io().expect("context");
    let ino = ro.lookup(&mut io, "/f").expect("lookup");
    let file = ro.open(&mut io, ino).expect("open");
    let started = Instant::now();
    for i in 0..FILE_BYTES / 4096 {
        ro.read(&mut io, &file, i * 4096, &mut page).expect("read");
    }
    let ro_mib_s = FILE_BYTES as f64 / (1 << 20) as f64 / started.elapsed().as_secs_f64();
    println!(
        "sequential 4 KiB reads, cold: read-write mount by handle {rw_mib_s:.0} MiB/s, read-only mount {ro_mib_s:.0} MiB/s"
    );
}

/// Nanoseconds per call of `read` over 0.5 s.
fn ns_per_read(mut read: impl FnMut()) -> f64 {
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_millis(500) {
        for _ in 0..1000 {
            read();
        }
        n += 1000;
    }
    started.elapsed().as_nanos() as f64 / n as f64
}

fn hot_reads(shared: &RwShared<EmuDevice>) {
    let mut ctx = shared.ctx().expect("context");
    let file = shared
        .open(&mut ctx, "/f", OpenOptions::default())
        .expect("open");
    let mut page = vec![0u8; 4096];
    shared.read_at(&mut ctx, &file, 0, &mut page).expect("read");
    let by_handle = ns_per_read(|| {
        shared.read_at(&mut ctx, &file, 0, &mut page).expect("read");
    });
    let mut ctx = shared.ctx().expect("context");
    let by_path = ns_per_read(|| {
        shared.read(&mut ctx, "/f", 0, &mut page).expect("read");
    });
    let dir = tempfile::tempdir().expect("temporary directory");
    let host = dir.path().join("hot");
    std::fs::write(&host, vec![0xab_u8; 4096]).expect("host file");
    let host = std::fs::File::open(&host).expect("host file");
    let kernel = ns_per_read(|| {
        std::os::unix::fs::FileExt::read_at(&host, &mut page, 0).expect("pread");
    });
    println!(
        "hot 4 KiB read: by handle {by_handle:.0} ns, by path {by_path:.0} ns, kernel pread {kernel:.0} ns"
    );
    shared.close(&mut ctx, file).expect("close");
}
