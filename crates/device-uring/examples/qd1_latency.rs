//! QD1 4 KiB random-read latency: this backend's ring setups against `pread` on an `O_DIRECT`
//! descriptor, interleaved in one run so they see the same device.
//!
//! ```text
//! cargo run --release -p aios-device-uring --example qd1_latency -- [FILE] [SECS] [REPS]
//! ```
//! Each repetition gives every variant SECS seconds, in round-robin slices of SECS/20, so that
//! the drift of a shared virtual disk lands on all variants alike.
//! Without FILE, writes a 1 GiB image of real (non-zero, non-sparse) data under /tmp, and deletes
//! it at the end; holes would be read without any I/O. Not a test: numbers depend on the machine.

use aios_device::{Buf, CompletionMode, Device, Io, Queue, QueueConfig, BLOCK_SIZE};
use aios_device_uring::{
    InterruptSetup, PollFallback, Tuning, UringConfig, UringDevice, UringQueue,
};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const IMAGE_BYTES: u64 = 1 << 30;
/// Round-robin slices per variant per repetition.
const SLICES_PER_REP: u32 = 20;

#[derive(Clone, Copy)]
enum Variant {
    Pread,
    Uring {
        name: &'static str,
        completion: CompletionMode,
        registered_buffers: bool,
        tuning: Tuning,
        /// Call `submit()` before `reap(1)` (two kernel entries); else `reap` submits and waits
        /// in one.
        submit: bool,
    },
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Pread => "pread O_DIRECT",
            Variant::Uring { name, .. } => name,
        }
    }
}

fn variants() -> Vec<Variant> {
    let tuning = |interrupt, poll_fallback| Tuning {
        interrupt,
        iopoll: aios_device_uring::IopollPolicy::Probe,
        poll_fallback,
        flush: aios_device_uring::FlushPath::Inline,
    };
    let uring = |name, completion, registered_buffers, tuning| Variant::Uring {
        name,
        completion,
        registered_buffers,
        tuning,
        submit: true,
    };
    use CompletionMode::{Interrupt, Poll};
    use InterruptSetup::{CoopTaskrun, DeferTaskrun, Plain};
    use PollFallback::{CqSpin, EnterSpin};
    vec![
        Variant::Pread,
        uring("irq plain fixed", Interrupt, true, tuning(Plain, CqSpin)),
        uring(
            "irq coop fixed",
            Interrupt,
            true,
            tuning(CoopTaskrun, CqSpin),
        ),
        uring(
            "irq defer fixed",
            Interrupt,
            true,
            tuning(DeferTaskrun, CqSpin),
        ),
        Variant::Uring {
            name: "irq defer fixed, no submit",
            completion: Interrupt,
            registered_buffers: true,
            tuning: tuning(DeferTaskrun, CqSpin),
            submit: false,
        },
        uring(
            "irq plain unregistered",
            Interrupt,
            false,
            tuning(Plain, CqSpin),
        ),
        uring("poll cq-spin fixed", Poll, true, tuning(Plain, CqSpin)),
        uring(
            "poll enter-spin fixed",
            Poll,
            true,
            tuning(Plain, EnterSpin),
        ),
        uring(
            "poll cq-spin unregistered",
            Poll,
            false,
            tuning(Plain, CqSpin),
        ),
    ]
}

/// xorshift64*: a block number in the image, uniformly enough.
struct Blocks(u64);

impl Blocks {
    fn next_offset(&mut self, capacity_bytes: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (r % (capacity_bytes / BLOCK_SIZE as u64)) * BLOCK_SIZE as u64
    }
}

struct Stats {
    mean_us: f64,
    p50_us: f64,
    p99_us: f64,
    ios: usize,
}

fn stats(mut latencies_ns: Vec<u64>) -> Stats {
    latencies_ns.sort_unstable();
    let n = latencies_ns.len().max(1);
    let at = |q: f64| latencies_ns[((n - 1) as f64 * q) as usize] as f64 / 1e3;
    Stats {
        mean_us: latencies_ns.iter().sum::<u64>() as f64 / n as f64 / 1e3,
        p50_us: at(0.50),
        p99_us: at(0.99),
        ios: latencies_ns.len(),
    }
}

/// One variant, open for the whole run, timing QD1 reads in slices.
enum Runner {
    Pread {
        file: File,
        arena: aios_device::Arena,
        page: Buf,
    },
    Uring {
        dev: UringDevice,
        queue: Box<UringQueue>,
        page: Buf,
        submit: bool,
    },
}

impl Runner {
    fn open(v: Variant, path: &Path) -> Runner {
        match v {
            Variant::Pread => {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_DIRECT)
                    .open(path)
                    .expect("open O_DIRECT");
                let arena = aios_device::Arena::new(BLOCK_SIZE).expect("aligned page");
                let page = arena.alloc(1).expect("page");
                Runner::Pread { file, arena, page }
            }
            Variant::Uring {
                completion,
                registered_buffers,
                tuning,
                submit,
                ..
            } => {
                let config = UringConfig {
                    target: aios_device::TargetOptions::default(),
                    arena_bytes: 1 << 20,
                    tuning,
                };
                let dev = UringDevice::open(path, config).expect("open device");
                let queue = dev
                    .open_queue(QueueConfig {
                        depth: 1,
                        completion,
                        registered_buffers,
                    })
                    .expect("open queue");
                let page = dev.arena().alloc(1).expect("page");
                Runner::Uring {
                    dev,
                    queue: Box::new(queue),
                    page,
                    submit,
                }
            }
        }
    }

    /// Reads random blocks one at a time for `dur`, appending each latency.
    fn slice(&mut self, dur: Duration, blocks: &mut Blocks, latencies_ns: &mut Vec<u64>) {
        let end = Instant::now() + dur;
        let mut out = Vec::with_capacity(4);
        while Instant::now() < end {
            let offset = blocks.next_offset(IMAGE_BYTES);
            let start = Instant::now();
            match self {
                Runner::Pread { file, arena, page } => {
                    let n = file.read_at(arena.bytes_mut(page), offset).expect("pread");
                    assert_eq!(n, BLOCK_SIZE);
                }
                Runner::Uring {
                    queue,
                    page,
                    submit,
                    ..
                } => {
                    let seg = [page.segment()];
                    // SAFETY: `page` is not touched until `reap` has returned the completion.
                    unsafe { queue.push(0, &Io::read(offset, &seg)) }.expect("push");
                    if *submit {
                        queue.submit().expect("submit");
                    }
                    out.clear();
                    queue.reap(1, &mut out).expect("reap");
                    assert_eq!(out[0].result, Ok(BLOCK_SIZE as u32));
                }
            }
            latencies_ns.push(start.elapsed().as_nanos() as u64);
        }
    }
}

fn write_image(path: &Path) {
    eprintln!("writing {IMAGE_BYTES} bytes of data to {}", path.display());
    let mut file = File::create(path).expect("create image");
    let mut chunk = vec![0u8; 1 << 20];
    let mut blocks = Blocks(0x9e37_79b9_7f4a_7c15);
    for _ in 0..IMAGE_BYTES / chunk.len() as u64 {
        for word in chunk.chunks_mut(8) {
            word.copy_from_slice(&blocks.next_offset(u64::MAX).to_le_bytes());
        }
        file.write_all(&chunk).expect("write image");
    }
    file.sync_all().expect("sync image");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (path, temporary) = match args.get(1) {
        Some(p) => (PathBuf::from(p), false),
        None => (std::env::temp_dir().join("aios-qd1-latency.img"), true),
    };
    let secs: f64 = args.get(2).map_or(2.0, |s| s.parse().expect("seconds"));
    let reps: usize = args.get(3).map_or(3, |s| s.parse().expect("repetitions"));
    if temporary {
        write_image(&path);
    }
    let slice = Duration::from_secs_f64(secs / SLICES_PER_REP as f64);
    let variants = variants();
    let mut runners: Vec<Runner> = variants.iter().map(|v| Runner::open(*v, &path)).collect();
    let mut results: Vec<Vec<Stats>> = variants.iter().map(|_| Vec::new()).collect();
    let mut blocks = Blocks(0x2545_f491_4f6c_dd1d);
    for rep in 0..reps {
        // Round-robin short slices, so slow drift of the device hits every variant alike.
        let mut latencies_ns: Vec<Vec<u64>> = variants.iter().map(|_| Vec::new()).collect();
        for _ in 0..SLICES_PER_REP {
            for (runner, lat) in runners.iter_mut().zip(&mut latencies_ns) {
                runner.slice(slice, &mut blocks, lat);
            }
        }
        for ((v, lat), r) in variants.iter().zip(latencies_ns).zip(&mut results) {
            let s = stats(lat);
            eprintln!(
                "rep {rep} {:<26} mean {:6.1} us  p50 {:6.1}  p99 {:6.1}  ({} I/Os)",
                v.name(),
                s.mean_us,
                s.p50_us,
                s.p99_us,
                s.ios
            );
            r.push(s);
        }
    }
    for runner in runners {
        if let Runner::Uring {
            dev, queue, page, ..
        } = runner
        {
            drop(queue);
            dev.arena().free(page);
        }
    }
    report(&variants, &results);
    if temporary {
        std::fs::remove_file(&path).expect("remove image");
    }
}

fn report(variants: &[Variant], results: &[Vec<Stats>]) {
    let mean_of = |r: &[Stats], f: fn(&Stats) -> f64| r.iter().map(f).sum::<f64>() / r.len() as f64;
    println!(
        "{:<26} {:>8} {:>11} {:>7} {:>7} {:>9} {:>15}",
        "variant", "mean us", "rep min-max", "p50 us", "p99 us", "vs pread", "per-rep min-max"
    );
    for (v, r) in variants.iter().zip(results) {
        // Paired with pread's mean of the same repetition.
        let deltas: Vec<f64> = r
            .iter()
            .zip(&results[0])
            .map(|(s, p)| (s.mean_us / p.mean_us - 1.0) * 100.0)
            .collect();
        let lo = |xs: &mut dyn Iterator<Item = f64>| xs.fold(f64::MAX, f64::min);
        let hi = |xs: &mut dyn Iterator<Item = f64>| xs.fold(f64::MIN, f64::max);
        println!(
            "{:<26} {:>8.1} {:>5.1}-{:<5.1} {:>7.1} {:>7.1} {:>+8.1}% {:>+6.1}..{:<+6.1}%",
            v.name(),
            mean_of(r, |s| s.mean_us),
            lo(&mut r.iter().map(|s| s.mean_us)),
            hi(&mut r.iter().map(|s| s.mean_us)),
            mean_of(r, |s| s.p50_us),
            mean_of(r, |s| s.p99_us),
            deltas.iter().sum::<f64>() / deltas.len() as f64,
            lo(&mut deltas.iter().copied()),
            hi(&mut deltas.iter().copied()),
        );
    }
}
