//! Block layer tests over the null device (no data) and the pread backend (real data).

use super::*;
use aios_device::{FaultPlan, NullDevice, OpFilter, BLOCK_SIZE};

fn null_queue(depth: u16) -> (NullDevice, BlockQueue<aios_device::null::NullQueue>) {
    let dev = NullDevice::new(1 << 30, 4 << 20).unwrap();
    let q = BlockQueue::open(
        &dev,
        QueueConfig {
            depth,
            ..QueueConfig::default()
        },
    )
    .unwrap();
    (dev, q)
}

#[test]
fn request_cycle_returns_buffers_and_reuses_tags() {
    let (dev, mut q) = null_queue(4);
    let buf = dev.arena().alloc(2).unwrap();
    let tag = q.stage(Op::Read, 8192, [buf]).unwrap();
    assert_eq!(tag, 0, "the first free slot is tag 0");
    assert_eq!(q.request(tag).state(), State::InFlight);
    assert_eq!(q.submit(), Ok(1));
    assert_eq!(q.wait(1), Ok(1));
    assert_eq!(q.pop_done(), Some(tag));
    let done = q.finish(tag);
    assert_eq!(
        (done.tag, done.op, done.offset_bytes, done.result),
        (0, Op::Read, 8192, Ok(8192))
    );
    assert_eq!(done.bufs.len(), 1);
    assert_eq!(q.busy(), 0);
    let again = q.stage(Op::Flush, 0, []).unwrap();
    assert_eq!(again, 0, "LIFO reuse of the hottest slot");
}

#[test]
fn a_batch_is_one_submit_call() {
    let (dev, mut q) = null_queue(8);
    for i in 0..8u64 {
        let buf = dev.arena().alloc(1).unwrap();
        q.stage(Op::Write { fua: false }, i * BLOCK_SIZE as u64, [buf])
            .unwrap();
    }
    assert!(!q.has_free_slot());
    assert_eq!(q.submit(), Ok(8));
    assert_eq!(q.wait(8), Ok(8));
    let stats = q.stats();
    assert_eq!(
        (
            stats.staged,
            stats.submitted,
            stats.submit_calls,
            stats.completed
        ),
        (8, 8, 1, 8)
    );
    let mut tags: Vec<Tag> = std::iter::from_fn(|| q.pop_done()).collect();
    tags.sort_unstable();
    assert_eq!(tags, (0..8).collect::<Vec<_>>(), "tag = slot index");
}

#[test]
fn refusals_give_the_buffers_back_and_free_the_slot() {
    let (dev, mut q) = null_queue(1);
    // Misaligned device offset.
    let refused = q
        .stage(Op::Read, 100, [dev.arena().alloc(1).unwrap()])
        .unwrap_err();
    assert!(matches!(refused.error, DeviceError::Misaligned { .. }));
    assert_eq!(refused.bufs.len(), 1);
    assert!(
        q.has_free_slot(),
        "a refused request does not keep its slot"
    );
    // More than 32 segments.
    let many: Vec<Buf> = (0..33).map(|_| dev.arena().alloc(1).unwrap()).collect();
    let refused = q.stage(Op::Read, 0, many).unwrap_err();
    assert_eq!(refused.bufs.len(), 33, "every buffer comes back");
    assert!(
        matches!(refused.error, DeviceError::TooLarge { segments: 33, len_bytes, .. } if len_bytes == 33 * 4096)
    );
    for b in refused.bufs {
        dev.arena().free(b);
    }
    // No free slot.
    q.stage(Op::Flush, 0, []).unwrap();
    let refused = q
        .stage(Op::Read, 0, [dev.arena().alloc(1).unwrap()])
        .unwrap_err();
    assert!(
        refused.error.to_string().contains("every request is busy"),
        "{}",
        refused.error
    );
    assert_eq!(refused.bufs.len(), 1);
}

#[test]
fn device_errors_reach_the_finished_request() {
    let (dev, mut q) = null_queue(4);
    dev.faults().arm(FaultPlan::nth(0, OpFilter::Writes));
    let done = q
        .run(
            Op::Write { fua: true },
            4096,
            [dev.arena().alloc(1).unwrap()],
        )
        .unwrap();
    assert!(matches!(
        done.result,
        Err(DeviceError::Io {
            op: Op::Write { fua: true },
            offset_bytes: 4096,
            ..
        })
    ));
    assert_eq!(
        done.bufs.len(),
        1,
        "buffers come back even when the device failed"
    );
    assert_eq!(q.stats().errors, 1);
}

#[test]
#[should_panic(expected = "not done")]
fn finishing_an_in_flight_request_is_refused() {
    let (dev, mut q) = null_queue(2);
    let tag = q
        .stage(Op::Read, 0, [dev.arena().alloc(1).unwrap()])
        .unwrap();
    let _ = q.finish(tag);
}

/// A 1 MiB scratch disk through the pread backend, in a directory of its own (`name`) that the
/// caller removes.
fn psync_disk(
    name: &str,
) -> (
    std::path::PathBuf,
    aios_device_psync::PsyncDevice,
    BlockQueue<aios_device_psync::PsyncQueue>,
) {
    let dir = std::env::temp_dir().join(format!("aios-block-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("disk.img");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let config = aios_device_psync::PsyncConfig {
        arena_bytes: 1 << 20,
        ..Default::default()
    };
    let dev = aios_device_psync::PsyncDevice::open(&path, config).unwrap();
    let q = BlockQueue::open(&dev, QueueConfig::default()).unwrap();
    (dir, dev, q)
}

#[test]
fn data_round_trips_through_a_real_backend() {
    let (dir, dev, mut q) = psync_disk("round-trip");
    // A scattered write of three pages, read back as one.
    let mut bufs: Vec<Buf> = (0..3).map(|_| dev.arena().alloc(1).unwrap()).collect();
    for (i, b) in bufs.iter_mut().enumerate() {
        dev.arena().bytes_mut(b).fill(i as u8 + 1);
    }
    let done = q.run(Op::Write { fua: false }, 12288, bufs).unwrap();
    assert_eq!(done.result, Ok(3 * 4096));
    let done = q
        .run(Op::Read, 12288, [dev.arena().alloc(3).unwrap()])
        .unwrap();
    let bytes = dev.arena().bytes(&done.bufs[0]);
    assert!(bytes[..4096].iter().all(|&b| b == 1) && bytes[8192..].iter().all(|&b| b == 3));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_shared_write_keeps_its_pages_until_finish_and_lands_in_order() {
    let (dir, dev, mut q) = psync_disk("shared");
    let arena = dev.arena().clone();
    let pages: Vec<Arc<SharedBuf>> = (0..2u8)
        .map(|i| {
            let mut buf = arena.alloc(1).unwrap();
            arena.bytes_mut(&mut buf).fill(i + 5);
            Arc::new(SharedBuf::new(&arena, buf))
        })
        .collect();
    let free_before = arena.free_pages();
    // The second page first: segments go in the order given.
    let tag = q
        .stage_shared_write(false, 8192, [pages[1].clone(), pages[0].clone()])
        .unwrap();
    assert_eq!(Arc::strong_count(&pages[0]), 2, "the request owns one");
    // Readers may look while the write is in flight.
    assert!(pages[0].bytes().iter().all(|&b| b == 5));
    q.submit().unwrap();
    while q.pop_done() != Some(tag) {
        q.wait(1).unwrap();
    }
    let done = q.finish(tag);
    assert_eq!(done.result, Ok(2 * 4096));
    assert!(done.bufs.is_empty());
    assert_eq!(Arc::strong_count(&pages[0]), 1, "finish let go of it");
    drop(pages);
    assert_eq!(arena.free_pages(), free_before + 2);
    let done = q.run(Op::Read, 8192, [arena.alloc(2).unwrap()]).unwrap();
    let bytes = arena.bytes(&done.bufs[0]);
    assert!(bytes[..4096].iter().all(|&b| b == 6) && bytes[4096..].iter().all(|&b| b == 5));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_shared_write_over_the_segment_limit_is_refused_whole() {
    let (dev, mut q) = null_queue(2);
    let arena = dev.arena().clone();
    let pages: Vec<Arc<SharedBuf>> = (0..=SEGMENTS_MAX)
        .map(|_| Arc::new(SharedBuf::new(&arena, arena.alloc(1).unwrap())))
        .collect();
    let err = q.stage_shared_write(false, 0, pages.iter().cloned());
    assert!(matches!(err, Err(DeviceError::TooLarge { .. })), "{err:?}");
    assert_eq!(q.busy(), 0);
    assert!(pages.iter().all(|p| Arc::strong_count(p) == 1));
}

/// A device without a volatile write cache (the null device, zram, `emu:ull`) has nothing to
/// flush: the flush is done when staged and never reaches it. Over a queue that says nothing
/// about its cache, every flush reaches the device.
#[test]
fn a_flush_reaches_only_a_device_with_a_volatile_cache() {
    let (dev, mut q) = null_queue(4);
    assert!(!dev.info().volatile_cache);
    dev.faults().arm(FaultPlan::nth(0, OpFilter::Flushes));
    let tag = q.stage(Op::Flush, 0, []).unwrap();
    assert_eq!(q.request(tag).state(), State::Done, "done when staged");
    assert_eq!(q.pop_done(), Some(tag));
    assert_eq!(q.finish(tag).result, Ok(0), "the armed fault never fired");
    let done = q.run(Op::Flush, 0, []).unwrap();
    assert_eq!(done.result, Ok(0));
    assert_eq!(q.stats().flushes_done_at_stage, 2);
    assert_eq!(q.stats().submitted, 0, "nothing reached the device");
    let buf = dev.arena().alloc(1).unwrap();
    let refused = q.stage(Op::Flush, 0, [buf]).unwrap_err();
    assert_eq!(refused.bufs.len(), 1, "a flush naming memory is refused");

    let mut raw = BlockQueue::over(dev.open_queue(QueueConfig::default()).unwrap());
    let done = raw.run(Op::Flush, 0, []).unwrap();
    assert!(
        done.result.is_err(),
        "the flush reached the device and its fault"
    );
    assert_eq!(raw.stats().flushes_done_at_stage, 0);
}
