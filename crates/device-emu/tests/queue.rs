//! Queue mechanics beyond the contract suite: depth and tags, outstanding counts, reap submitting
//! staged commands, both completion modes, and no heap allocation on the read and write paths.

use aios_device::{
    Completion, CompletionMode, Device, DeviceError, Io, Queue, QueueConfig, BLOCK_SIZE,
};
use aios_device_emu::EmuDevice;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts allocations made by the current thread while `COUNTING` is set.
struct CountingAlloc;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; the counters are thread-local `Cell`s
// with const initializers, which never allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn queue(dev: &EmuDevice, depth: u16, completion: CompletionMode) -> aios_device_emu::EmuQueue {
    dev.open_queue(QueueConfig {
        depth,
        completion,
        registered_buffers: false,
    })
    .expect("queue")
}

#[test]
fn depth_tags_and_outstanding() {
    let dev = EmuDevice::open("ull,size=1M,arena=1M,clock=virtual").unwrap();
    let err = dev
        .open_queue(QueueConfig {
            depth: 0,
            ..QueueConfig::default()
        })
        .unwrap_err();
    assert!(matches!(err, DeviceError::Setup { .. }), "{err}");
    let mut q = queue(&dev, 2, CompletionMode::Poll);
    assert_eq!(q.depth(), 2);
    // SAFETY: flushes carry no memory.
    unsafe {
        q.push(0, &Io::flush()).unwrap();
        assert!(matches!(
            q.push(0, &Io::flush()),
            Err(DeviceError::BadTag {
                tag: 0,
                depth: 2,
                reason: "already outstanding"
            })
        ));
        assert!(matches!(
            q.push(2, &Io::flush()),
            Err(DeviceError::BadTag {
                tag: 2,
                reason: "out of range",
                ..
            })
        ));
        q.push(1, &Io::flush()).unwrap();
    }
    assert_eq!(q.outstanding(), 2, "staged count");
    assert_eq!(q.submit(), Ok(2));
    assert_eq!(q.submit(), Ok(0));
    assert_eq!(q.outstanding(), 2, "in flight count");
    let mut out = Vec::new();
    assert_eq!(q.reap(2, &mut out), Ok(2));
    assert_eq!(q.outstanding(), 0);
    assert_eq!(q.reap(1, &mut out), Ok(0), "nothing in flight: no wait");
}

#[test]
fn reap_submits_what_is_staged_in_both_modes() {
    for mode in [CompletionMode::Interrupt, CompletionMode::Poll] {
        let dev = EmuDevice::open("ull,size=1M,arena=1M").unwrap();
        let mut q = queue(&dev, 4, mode);
        // SAFETY: flushes carry no memory.
        unsafe { q.push(3, &Io::flush()).unwrap() };
        let mut out = Vec::new();
        assert_eq!(q.reap(1, &mut out), Ok(1), "{mode:?}");
        assert_eq!(
            out,
            [Completion {
                tag: 3,
                result: Ok(0)
            }]
        );
    }
}

#[test]
fn the_read_path_does_not_allocate() {
    let dev = EmuDevice::open("ull,size=1M,arena=1M,clock=virtual").unwrap();
    let mut q = queue(&dev, 8, CompletionMode::Poll);
    let bufs: Vec<_> = (0..8).map(|_| dev.arena().alloc(2).unwrap()).collect();
    let segs: Vec<_> = bufs.iter().map(|b| [b.segment()]).collect();
    let mut out: Vec<Completion> = Vec::with_capacity(8);
    let mut run = |rounds: u64| {
        for round in 0..rounds {
            for (tag, seg) in segs.iter().enumerate() {
                let offset = ((round * 8 + tag as u64) % 128) * BLOCK_SIZE as u64;
                // SAFETY: `bufs` are not touched until the completions are reaped below.
                unsafe { q.push(tag as u16, &Io::read(offset, seg)).unwrap() };
            }
            q.submit().unwrap();
            out.clear();
            assert_eq!(q.reap(8, &mut out), Ok(8));
        }
    };
    run(2); // warm up
    COUNTING.with(|c| c.set(true));
    run(200);
    COUNTING.with(|c| c.set(false));
    assert_eq!(
        ALLOCATIONS.with(Cell::get),
        0,
        "allocations on the read path"
    );
}

/// Found by `aios bench`: writes must cost what reads cost beyond the model, so the write path
/// recycles its pending-write buffers and flush lists instead of allocating per command. Covers a
/// non-volatile cache (writes retire at completion) and a volatile one (writes wait for a flush,
/// FUA writes do not), with 4 KiB and 128 KiB writes mixed.
#[test]
fn the_write_path_does_not_allocate() {
    for spec in [
        "ull,size=8M,arena=2M,clock=virtual",
        "nand,size=8M,arena=2M,clock=virtual",
    ] {
        let dev = EmuDevice::open(spec).unwrap();
        let mut q = queue(&dev, 8, CompletionMode::Poll);
        let bufs: Vec<_> = (0..8).map(|_| dev.arena().alloc(32).unwrap()).collect();
        let mut out: Vec<Completion> = Vec::with_capacity(8);
        let mut run = |rounds: u64, mixed: bool| {
            for round in 0..rounds {
                for (tag, buf) in bufs.iter().enumerate().take(7) {
                    let small = mixed && (round + tag as u64).is_multiple_of(2);
                    let len = if small { BLOCK_SIZE } else { 32 * BLOCK_SIZE };
                    let seg = [buf.segment_range(0, len)];
                    let offset = ((round * 7 + tag as u64) % 64) * 32 * BLOCK_SIZE as u64;
                    let write = Io::write(offset, &seg, tag == 6);
                    // SAFETY: `bufs` are not touched until the completions are reaped below.
                    unsafe { q.push(tag as u16, &write).unwrap() };
                }
                // SAFETY: flushes carry no memory.
                unsafe { q.push(7, &Io::flush()).unwrap() };
                out.clear();
                assert_eq!(q.reap(8, &mut out), Ok(8));
                assert!(out.iter().all(|c| c.result.is_ok()), "{out:?}");
            }
        };
        run(4, false); // warm up: every recycled buffer grows to 128 KiB
        COUNTING.with(|c| c.set(true));
        run(200, true);
        COUNTING.with(|c| c.set(false));
        assert_eq!(
            ALLOCATIONS.with(|a| a.replace(0)),
            0,
            "allocations on the write path of {spec}"
        );
    }
}

#[test]
fn threads_share_one_device_through_their_own_queues() {
    let dev = EmuDevice::open("ull,size=4M,arena=1M").unwrap();
    std::thread::scope(|s| {
        for t in 0..2u8 {
            let dev = &dev;
            s.spawn(move || {
                let mut q = queue(dev, 4, CompletionMode::Poll);
                let mut buf = dev.arena().alloc(1).unwrap();
                let mut out = Vec::new();
                for i in 0..200u64 {
                    let offset = (u64::from(t) * 512 + i) * BLOCK_SIZE as u64;
                    dev.arena().bytes_mut(&mut buf).fill(t + i as u8);
                    let seg = [buf.segment()];
                    // SAFETY: `buf` is not touched until the completion is reaped.
                    unsafe { q.push(0, &Io::write(offset, &seg, false)).unwrap() };
                    assert_eq!(q.reap(1, &mut out), Ok(1));
                    dev.arena().bytes_mut(&mut buf).fill(0xee);
                    // SAFETY: as above.
                    unsafe { q.push(1, &Io::read(offset, &seg)).unwrap() };
                    assert_eq!(q.reap(1, &mut out), Ok(1));
                    assert!(dev.arena().bytes(&buf).iter().all(|&b| b == t + i as u8));
                }
                assert!(out.iter().all(|c| c.result == Ok(BLOCK_SIZE as u32)));
            });
        }
    });
}
