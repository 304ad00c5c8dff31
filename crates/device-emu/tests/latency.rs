//! The latency model, observed through the queue on the virtual clock (exact and deterministic),
//! plus one real-clock check that waits really spin to the due time.

mod common;

use aios_device::{Device, Op};
use aios_device_emu::{EmuDevice, LatencyModel};
use common::{pattern, Done, Driver, BLOCK};

/// `(tag, reaped_ns)` of completions, one reap at a time.
fn timeline(done: &[Done]) -> Vec<(u16, u64)> {
    done.iter().map(|d| (d.tag, d.reaped_ns)).collect()
}

#[test]
fn ull_and_nand_presets_give_their_due_times() {
    let mut d = Driver::open("ull,size=1M,arena=1M,clock=virtual");
    d.push_read(0, 1);
    assert_eq!(
        d.reap_all()[0].reaped_ns,
        6_000,
        "ull 4 KiB read: 5 us + 1 us link"
    );
    d.write(0, &pattern(1, 0), false).unwrap();
    assert_eq!(d.dev.now_ns(), 12_000, "ull 4 KiB write: 6 us");
    d.flush().unwrap();
    assert_eq!(d.dev.now_ns(), 13_000, "ull flush: 1 us");

    let mut d = Driver::open("nand,size=1M,arena=1M,clock=virtual");
    d.push_read(0, 1);
    assert_eq!(d.reap_all()[0].reaped_ns, 80_000, "nand 4 KiB read");
    d.write(0, &[pattern(1, 0), pattern(1, 1)].concat(), false)
        .unwrap();
    assert_eq!(
        d.dev.now_ns(),
        80_000 + 18_000 + 4_000,
        "nand 8 KiB write: 4 us link"
    );
    d.flush().unwrap();
    assert_eq!(
        d.dev.now_ns(),
        102_000 + 1_000_000 + 2 * 1_000,
        "nand flush: 1 ms + 1 us per dirty block"
    );
    d.flush().unwrap();
    assert_eq!(
        d.dev.now_ns(),
        1_104_000 + 1_000_000,
        "nothing dirty any more"
    );
}

#[test]
fn the_command_after_all_channels_are_busy_waits() {
    // ull's 4 channels, unlimited link: 5 us media per read.
    let mut d = Driver::open("ull,size=1M,arena=1M,clock=virtual,bw=0");
    for b in 0..5 {
        d.push_read(b, 1);
    }
    d.submit();
    let t = timeline(&d.reap_all());
    assert_eq!(
        t,
        [(0, 5_000), (1, 5_000), (2, 5_000), (3, 5_000), (4, 10_000)]
    );
    // With the link: transfers end at 1,2,3,4,5 us; channels free at 6,7,8,9 us; the fifth read
    // waits for the first channel (6 us), not for its transfer.
    let mut d = Driver::open("ull,size=1M,arena=1M,clock=virtual");
    for b in 0..5 {
        d.push_read(b, 1);
    }
    d.submit();
    let t = timeline(&d.reap_all());
    assert_eq!(
        t,
        [(0, 6_000), (1, 7_000), (2, 8_000), (3, 9_000), (4, 11_000)]
    );
}

#[test]
fn the_link_serializes_transfers() {
    // 1 GB/s, no media time, unlimited channels: each 128 KiB read moves for 131,072 ns.
    let mut d = Driver::open("instant,size=1M,arena=1M,clock=virtual,bw=1G");
    for b in 0..4 {
        d.push_read(b * 32, 32);
    }
    d.submit();
    let t = timeline(&d.reap_all());
    assert_eq!(t, [(0, 131_072), (1, 262_144), (2, 393_216), (3, 524_288)]);
    // A flush carries no data: it does not wait for the link.
    let mut d = Driver::open("instant,size=1M,arena=1M,clock=virtual,bw=1G,flush=10ns");
    d.push_read(0, 32);
    d.push_flush();
    d.submit();
    assert_eq!(timeline(&d.reap_all()), [(1, 10), (0, 131_072)]);
}

#[test]
fn a_fast_command_overtakes_a_slow_one() {
    let mut d = Driver::open("nand,size=1M,arena=1M,clock=virtual");
    d.push_read(0, 1); // 80 us
    d.push_write(1, &pattern(1, 0), false); // its transfer waits for the read's: 2 + 2 + 18 us
    d.push_flush(); // 1 ms, covers nothing: the write is in flight
    d.submit();
    assert_eq!(
        timeline(&d.reap_all()),
        [(1, 22_000), (0, 80_000), (2, 1_000_000)]
    );
}

#[test]
fn equal_due_times_complete_in_submission_order() {
    let mut d = Driver::open("instant,size=1M,arena=1M,clock=virtual");
    // Submission order differs from tag order (and from any hash of it).
    let tags = [5u16, 2, 7, 0, 6, 1, 4, 3];
    for (block, &tag) in tags.iter().enumerate() {
        d.push_read_as(tag, block as u64, 1).unwrap();
    }
    d.submit();
    let mut out = Vec::new();
    assert_eq!(aios_device::Queue::reap(&mut d.q, 0, &mut out).unwrap(), 8);
    let order: Vec<u16> = out.iter().map(|c| c.tag).collect();
    assert_eq!(order, tags);
}

#[test]
fn reap_waits_only_until_min() {
    let mut d = Driver::open("nand,size=1M,arena=1M,clock=virtual");
    d.push_read(0, 1); // 80 us
    d.push_write(1, &pattern(1, 0), false); // 22 us
    d.submit();
    assert!(
        d.reap(0).is_empty(),
        "nothing due at time 0: reap(0) does not wait"
    );
    assert_eq!(
        d.dev.now_ns(),
        22_000,
        "an idle poll lasts until the next due time"
    );
    assert_eq!(timeline(&d.reap(1)), [(1, 22_000)]);
    assert_eq!(
        timeline(&d.reap(5)),
        [(0, 80_000)],
        "stops when nothing is in flight"
    );
    assert_eq!(aios_device::Queue::outstanding(&d.q), 0);
}

#[test]
fn the_same_workload_gives_the_same_times_order_and_crash_images() {
    let run = || {
        let mut d = Driver::open("nand,size=1M,arena=4M,clock=virtual");
        let mut times = Vec::new();
        for round in 0..6u64 {
            for i in 0..5 {
                let block = (round * 7 + i * 3) % 200;
                d.push_write(block, &pattern(round * 10 + i, 0), round % 3 == 1);
                d.push_read((block + 11) % 200, 1 + (i as u32 % 3));
            }
            if round % 2 == 0 {
                d.push_flush();
            }
            d.submit();
            times.extend(timeline(&d.reap(3)));
        }
        times.extend(timeline(&d.reap_all()));
        let crash = d.dev.crash(42).unwrap().digest();
        (times, crash, d.dev.now_ns())
    };
    let first = run();
    assert!(first.0.len() > 60);
    assert_eq!(first, run());
}

#[test]
fn real_clock_waits_spin_to_the_due_time() {
    let dev = EmuDevice::open("ull,size=1M,arena=1M").unwrap();
    assert_eq!(dev.config().latency, LatencyModel::ULL);
    let mut d = Driver::new(dev);
    for _ in 0..20 {
        let start = std::time::Instant::now();
        d.push_read(0, 1);
        let done = d.reap_all();
        let elapsed = start.elapsed();
        assert_eq!(done[0].result, Ok(BLOCK as u32));
        let modelled = LatencyModel::ULL.idle_latency_ns(Op::Read, BLOCK as u64);
        assert!(
            elapsed.as_nanos() >= u128::from(modelled),
            "completed after {elapsed:?}, before the modelled {modelled} ns"
        );
    }
    assert_eq!(d.dev.info().name, "emu:ull");
}
