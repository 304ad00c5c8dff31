//! Measures what the emulator adds to a QD1 4 KiB read beyond the modelled device time: the mean
//! of (observed push-to-reap latency - modelled latency) over many reads, real clock, polling.
//!
//! `cargo run --release -p aios-device-emu --example overhead [spec] [count] [read|write]`
//! (default spec `ull,size=1G,arena=4M`, 100000 reads; the even blocks of the first 64 MiB are
//! written first so reads hit both written and never-written blocks; `write` measures non-FUA
//! 4 KiB writes instead).

use aios_device::{CompletionMode, Device, Io, Op, Queue, QueueConfig, BLOCK_SIZE};
use aios_device_emu::EmuDevice;
use rand::{Rng, SeedableRng};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let spec = args.get(1).map_or("ull,size=1G,arena=4M", String::as_str);
    let reads: usize = args.get(2).map_or(Ok(100_000), |s| s.parse())?;
    let write = args.get(3).is_some_and(|s| s == "write");
    let op = if write {
        Op::Write { fua: false }
    } else {
        Op::Read
    };
    let dev = EmuDevice::open(spec)?;
    let model = dev.config().latency;
    let device_ns = model.idle_latency_ns(op, BLOCK_SIZE as u64);
    let mut q = dev.open_queue(QueueConfig {
        depth: 32,
        completion: CompletionMode::Poll,
        registered_buffers: true,
    })?;
    let buf = dev.arena().alloc(1)?;
    let seg = [buf.segment()];
    let blocks = dev.info().capacity_bytes / BLOCK_SIZE as u64;
    let mut out = Vec::with_capacity(32);
    // Write the even 4 KiB blocks of the first 64 MiB, so reads see written data too.
    for b in (0..blocks.min(16384)).step_by(2) {
        // SAFETY: `buf` is not touched until the completion is reaped just below.
        unsafe { q.push(0, &Io::write(b * BLOCK_SIZE as u64, &seg, false))? };
        out.clear();
        q.reap(1, &mut out)?;
    }
    let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
    let span = blocks.min(16384);
    let mut extra_ns: Vec<i64> = Vec::with_capacity(reads);
    for _ in 0..reads {
        let offset = rng.gen_range(0..span) * BLOCK_SIZE as u64;
        out.clear();
        let start = Instant::now();
        // SAFETY: as above.
        unsafe {
            q.push(
                0,
                &Io {
                    op,
                    offset_bytes: offset,
                    segments: &seg,
                },
            )?
        };
        q.submit()?;
        q.reap(1, &mut out)?;
        let ns = start.elapsed().as_nanos() as i64;
        extra_ns.push(ns - device_ns as i64);
        assert_eq!(out[0].result, Ok(BLOCK_SIZE as u32));
    }
    extra_ns.sort_unstable();
    let mean = extra_ns.iter().sum::<i64>() as f64 / reads as f64;
    let pct = |p: f64| extra_ns[((reads as f64 - 1.0) * p) as usize];
    println!(
        "{spec}: {reads} QD1 4 KiB {}s, modelled {device_ns} ns; overhead mean {mean:.0} ns, \
         p50 {} ns, p99 {} ns, p99.9 {} ns, min {} ns",
        op.name(),
        pct(0.5),
        pct(0.99),
        pct(0.999),
        extra_ns[0]
    );
    Ok(())
}
