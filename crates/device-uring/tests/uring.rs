//! Behaviour specific to the io_uring backend: the `IOPOLL` fallback, every ring setup, exclusive
//! opens, real kernel errors, and queue/device lifetimes.

use aios_device::{
    Buf, Completion, CompletionMode, Device, DeviceError, Io, Op, Queue, QueueConfig,
    TargetOptions, BLOCK_SIZE,
};
use aios_device_uring::{
    FlushPath, InterruptSetup, IopollPolicy, PollFallback, Tuning, UringConfig, UringDevice,
    UringQueue,
};
use std::path::Path;

const IMAGE_BYTES: u64 = 16 << 20;

fn image() -> tempfile::NamedTempFile {
    let image = tempfile::NamedTempFile::new().expect("temp image");
    image.as_file().set_len(IMAGE_BYTES).expect("size image");
    image
}

fn config() -> UringConfig {
    UringConfig {
        arena_bytes: 1 << 20,
        ..UringConfig::default()
    }
}

fn open(path: &Path, config: UringConfig) -> UringDevice {
    UringDevice::open(path, config).expect("open device")
}

fn queue(dev: &UringDevice, completion: CompletionMode, registered_buffers: bool) -> UringQueue {
    dev.open_queue(QueueConfig {
        depth: 8,
        completion,
        registered_buffers,
    })
    .expect("open queue")
}

/// Pushes one command naming `bufs`, submits and waits for its completion.
fn run(q: &mut UringQueue, op: Op, offset_bytes: u64, bufs: &[Buf]) -> Completion {
    let segments: Vec<_> = bufs.iter().map(Buf::segment).collect();
    let io = Io {
        op,
        offset_bytes,
        segments: &segments,
    };
    // SAFETY: `bufs` is borrowed for this whole function, and nobody touches its memory until
    // `reap` below has returned the command's completion.
    unsafe { q.push(5, &io) }.expect("push");
    assert_eq!(q.submit().expect("submit"), 1);
    let mut out = Vec::new();
    while out.is_empty() {
        q.reap(1, &mut out).expect("reap");
    }
    assert_eq!(q.outstanding(), 0);
    out.pop().expect("one completion")
}

/// Writes a pattern in two segments and reads it back in one.
fn write_read_back(dev: &UringDevice, q: &mut UringQueue, offset_bytes: u64, seed: u8) {
    let arena = dev.arena();
    let mut parts = [
        arena.alloc(1).expect("arena"),
        arena.alloc(2).expect("arena"),
    ];
    for (i, part) in parts.iter_mut().enumerate() {
        arena.bytes_mut(part).fill(seed.wrapping_add(i as u8));
    }
    let written: Vec<u8> = parts.iter().flat_map(|b| arena.bytes(b).to_vec()).collect();
    let done = run(q, Op::Write { fua: true }, offset_bytes, &parts);
    assert_eq!(done.result, Ok(3 * BLOCK_SIZE as u32));
    let target = [arena.alloc(3).expect("arena")];
    let done = run(q, Op::Read, offset_bytes, &target);
    assert_eq!(done.result, Ok(3 * BLOCK_SIZE as u32));
    assert!(
        arena.bytes(&target[0]) == written.as_slice(),
        "read back what was written"
    );
    assert_eq!(run(q, Op::Flush, 0, &[]).result, Ok(0));
    for buf in parts.into_iter().chain(target) {
        arena.free(buf);
    }
}

#[test]
fn poll_mode_falls_back_when_iopoll_is_refused() {
    let image = image();
    let dev = open(image.path(), config());
    let support = dev.iopoll_support();
    let mut q = queue(&dev, CompletionMode::Poll, true);
    match support {
        Ok(()) => assert!(q.uses_iopoll(), "a device that polls gets an IOPOLL ring"),
        Err(errno) => {
            // This machine's virtio disk has no poll queues: the kernel says EOPNOTSUPP.
            eprintln!(
                "iopoll refused: {}",
                std::io::Error::from_raw_os_error(errno)
            );
            assert!(
                !q.uses_iopoll(),
                "refused IOPOLL falls back to a normal ring"
            );
        }
    }
    write_read_back(&dev, &mut q, 64 * BLOCK_SIZE as u64, 1);
    assert_eq!(dev.iopoll_support(), support, "the probe result is cached");
}

#[test]
fn iopoll_refusal_is_eopnotsupp_on_the_virtio_disk() {
    let image = image();
    let dev = open(image.path(), config());
    let on_virtio = std::fs::read_to_string("/sys/block/vda/queue/io_poll")
        .is_ok_and(|poll| poll.trim() == "0");
    if !on_virtio {
        eprintln!("=== SKIPPED: not on a virtio disk without poll queues ===");
        return;
    }
    assert_eq!(dev.iopoll_support(), Err(libc::EOPNOTSUPP));
}

/// A forced `IOPOLL` ring on a device without poll queues: the kernel fails reads and writes of
/// real data with `EOPNOTSUPP` (reported per command, not at setup), while flushes, which
/// `IOPOLL` rings cannot take, go through the queue's second ring and succeed.
#[test]
fn forced_iopoll_reports_eopnotsupp_per_command_and_flushes_still_work() {
    let image = image();
    std::os::unix::fs::FileExt::write_all_at(image.as_file(), &[3u8; BLOCK_SIZE], 0)
        .expect("write data");
    image.as_file().sync_all().expect("sync data");
    let tuning = Tuning {
        iopoll: IopollPolicy::Force,
        ..Tuning::default()
    };
    let dev = open(image.path(), UringConfig { tuning, ..config() });
    let mut q = queue(&dev, CompletionMode::Poll, true);
    assert!(q.uses_iopoll());
    if dev.iopoll_support().is_ok() {
        eprintln!("=== SKIPPED: this device supports IOPOLL ===");
        return;
    }
    let buf = [dev.arena().alloc(1).expect("arena")];
    let read = run(&mut q, Op::Read, 0, &buf);
    assert!(
        matches!(
            read.result,
            Err(DeviceError::Io {
                op: Op::Read,
                errno: libc::EOPNOTSUPP,
                ..
            })
        ),
        "{:?}",
        read.result
    );
    assert_eq!(run(&mut q, Op::Flush, 0, &[]).result, Ok(0));
    // A batch over both rings: every command completes exactly once.
    let seg = [buf[0].segment()];
    // SAFETY: `buf` is not touched until both completions have been reaped below.
    unsafe {
        q.push(0, &Io::read(0, &seg)).expect("push read");
        q.push(1, &Io::flush()).expect("push flush");
    }
    assert_eq!(q.submit().expect("submit"), 2);
    let mut out = Vec::new();
    while q.outstanding() > 0 {
        q.reap(1, &mut out).expect("reap");
    }
    out.sort_by_key(|c| c.tag);
    assert_eq!(out.len(), 2);
    assert!(out[0].result.is_err(), "{:?}", out[0]);
    assert_eq!(out[1].result, Ok(0));
}

#[test]
fn every_ring_setup_moves_data() {
    let image = image();
    let setups = [
        (InterruptSetup::Plain, PollFallback::CqSpin),
        (InterruptSetup::CoopTaskrun, PollFallback::EnterSpin),
        (InterruptSetup::DeferTaskrun, PollFallback::CqSpin),
    ];
    for (i, (interrupt, poll_fallback)) in setups.into_iter().enumerate() {
        let tuning = Tuning {
            interrupt,
            iopoll: IopollPolicy::Off,
            poll_fallback,
            flush: FlushPath::Ring,
        };
        let dev = open(image.path(), UringConfig { tuning, ..config() });
        for (j, completion) in [CompletionMode::Interrupt, CompletionMode::Poll]
            .into_iter()
            .enumerate()
        {
            for registered in [true, false] {
                let mut q = queue(&dev, completion, registered);
                assert!(!q.uses_iopoll());
                let offset = ((i * 4 + j * 2) as u64 * 8) * BLOCK_SIZE as u64;
                write_read_back(&dev, &mut q, offset, (i * 10 + j) as u8);
            }
        }
    }
}

/// Every setup a queue can get, as (tuning, completion mode); flushes through the ring for
/// `Plain` rings, inline for the others, so the contract covers both paths.
fn all_setups() -> Vec<(Tuning, CompletionMode)> {
    let tuning = |interrupt, poll_fallback| Tuning {
        interrupt,
        iopoll: IopollPolicy::Probe,
        poll_fallback,
        flush: if interrupt == InterruptSetup::Plain {
            FlushPath::Ring
        } else {
            FlushPath::Inline
        },
    };
    vec![
        (
            tuning(InterruptSetup::Plain, PollFallback::CqSpin),
            CompletionMode::Interrupt,
        ),
        (
            tuning(InterruptSetup::CoopTaskrun, PollFallback::CqSpin),
            CompletionMode::Interrupt,
        ),
        (
            tuning(InterruptSetup::DeferTaskrun, PollFallback::CqSpin),
            CompletionMode::Interrupt,
        ),
        (
            tuning(InterruptSetup::Plain, PollFallback::CqSpin),
            CompletionMode::Poll,
        ),
        (
            tuning(InterruptSetup::Plain, PollFallback::EnterSpin),
            CompletionMode::Poll,
        ),
    ]
}

/// `reap(0, ..)` never blocks, yet sees completions even on rings that only post them inside
/// `io_uring_enter` (DEFER_TASKRUN); and `reap` starts commands that were pushed but not submitted.
#[test]
fn nonblocking_reap_makes_progress_and_reap_starts_staged_commands() {
    let image = image();
    // Real data: reads of holes complete inline at submission, without device I/O.
    std::os::unix::fs::FileExt::write_all_at(image.as_file(), &[9u8; 4 * BLOCK_SIZE], 0)
        .expect("write data");
    image.as_file().sync_all().expect("sync data");
    for (tuning, completion) in all_setups() {
        let dev = open(image.path(), UringConfig { tuning, ..config() });
        let mut q = queue(&dev, completion, true);
        let bufs: Vec<Buf> = (0..4)
            .map(|_| dev.arena().alloc(1).expect("arena"))
            .collect();
        let segs: Vec<_> = bufs.iter().map(|b| [b.segment()]).collect();
        let push = |q: &mut UringQueue, tag: usize| {
            let io = Io::read(tag as u64 * BLOCK_SIZE as u64, &segs[tag]);
            // SAFETY: `bufs` outlives the queue's use of it: every completion is reaped below
            // before the buffers are freed.
            unsafe { q.push(tag as u16, &io) }.expect("push");
        };
        let mut out = Vec::new();
        // Two through reap(1) without any submit() ...
        push(&mut q, 0);
        push(&mut q, 1);
        while out.len() < 2 {
            q.reap(1, &mut out).expect("reap");
        }
        // ... two more submitted, then collected through non-blocking reaps only.
        push(&mut q, 2);
        push(&mut q, 3);
        assert_eq!(q.submit().expect("submit"), 2);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while q.outstanding() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "{tuning:?} {completion:?}: reap(0) made no progress"
            );
            q.reap(0, &mut out).expect("reap(0)");
        }
        let mut tags: Vec<u16> = out.iter().map(|c| c.tag).collect();
        tags.sort_unstable();
        assert_eq!(tags, [0, 1, 2, 3], "{tuning:?} {completion:?}");
        assert!(out.iter().all(|c| c.result == Ok(BLOCK_SIZE as u32)));
        drop(q);
        for buf in bufs {
            dev.arena().free(buf);
        }
    }
}

#[test]
fn second_exclusive_open_is_refused_naming_the_path() {
    let image = image();
    let first = open(image.path(), config());
    let q = queue(&first, CompletionMode::Interrupt, true);
    let err = UringDevice::open(image.path(), config()).expect_err("second exclusive open");
    let msg = err.to_string();
    assert!(
        matches!(err, DeviceError::Setup { errno, .. } if errno == libc::EWOULDBLOCK),
        "{err:?}"
    );
    assert_eq!(err.errno(), Some(libc::EWOULDBLOCK));
    assert!(
        msg.contains(&image.path().display().to_string()) && msg.contains("in use"),
        "{msg}"
    );
    let shared = UringConfig {
        target: TargetOptions {
            read_only: false,
            exclusive: false,
        },
        ..config()
    };
    assert!(
        UringDevice::open(image.path(), shared).is_ok(),
        "a non-exclusive opener is not refused"
    );
    // Once the device and its queue are gone (rings torn down synchronously), it opens again.
    drop(q);
    drop(first);
    UringDevice::open(image.path(), config()).expect("exclusive open after close");
}

#[test]
fn kernel_errors_complete_with_their_errno() {
    let image = image();
    let read_only = UringConfig {
        target: TargetOptions {
            read_only: true,
            exclusive: false,
        },
        ..config()
    };
    let dev = open(image.path(), read_only);
    let buf = [dev.arena().alloc(1).expect("arena")];
    for registered in [true, false] {
        let mut q = queue(&dev, CompletionMode::Interrupt, registered);
        let done = run(
            &mut q,
            Op::Write { fua: false },
            4 * BLOCK_SIZE as u64,
            &buf,
        );
        assert_eq!(
            done.result,
            Err(DeviceError::Io {
                op: Op::Write { fua: false },
                tag: 5,
                offset_bytes: 4 * BLOCK_SIZE as u64,
                len_bytes: BLOCK_SIZE as u32,
                errno: libc::EBADF,
            }),
            "a write to a read-only file fails in the kernel with EBADF"
        );
        assert_eq!(run(&mut q, Op::Read, 0, &buf).result, Ok(BLOCK_SIZE as u32));
    }
}

#[test]
fn short_transfer_is_an_io_error() {
    let image = image();
    let dev = open(image.path(), config());
    // Shrink the file under the device: reads past the new end return 0 bytes.
    image
        .as_file()
        .set_len(BLOCK_SIZE as u64)
        .expect("truncate");
    let mut q = queue(&dev, CompletionMode::Interrupt, true);
    let buf = [dev.arena().alloc(1).expect("arena")];
    let done = run(&mut q, Op::Read, 8 * BLOCK_SIZE as u64, &buf);
    assert!(
        matches!(
            done.result,
            Err(DeviceError::Io {
                op: Op::Read,
                errno: libc::EIO,
                ..
            })
        ),
        "{:?}",
        done.result
    );
}

#[test]
fn queue_outlives_its_device_and_drop_waits_for_in_flight_reads() {
    let image = image();
    let dev = open(image.path(), config());
    let arena = std::sync::Arc::clone(dev.arena());
    let mut q = queue(&dev, CompletionMode::Interrupt, true);
    drop(dev);
    let bufs: Vec<Buf> = (0..8).map(|_| arena.alloc(1).expect("arena")).collect();
    for (tag, buf) in bufs.iter().enumerate() {
        let seg = [buf.segment()];
        // SAFETY: `bufs` lives until after the queue is dropped, and dropping the queue waits
        // for every command; nothing touches the buffers before that.
        unsafe { q.push(tag as u16, &Io::read(tag as u64 * BLOCK_SIZE as u64, &seg)) }
            .expect("push");
    }
    assert_eq!(q.outstanding(), 8);
    assert_eq!(q.submit().expect("submit"), 8);
    drop(q);
    for buf in bufs {
        arena.free(buf);
    }
}

#[test]
fn bad_depths_are_refused() {
    let image = image();
    let dev = open(image.path(), config());
    for depth in [0, u16::MAX] {
        let err = dev
            .open_queue(QueueConfig {
                depth,
                ..QueueConfig::default()
            })
            .expect_err("bad depth");
        assert!(
            matches!(
                err,
                DeviceError::Setup {
                    errno: libc::EINVAL,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
