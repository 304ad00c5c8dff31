//! Crashes: what a power loss keeps and loses, under the durability rules of the crate docs.

mod common;

use aios_device::{Device, FaultPlan, OpFilter};
use aios_device_emu::{BlockWrite, DiskImage, EmuConfig, EmuDevice};
use common::{pattern, patterns, Driver, BLOCK};
use std::collections::HashSet;

const SEEDS: u64 = 200;

fn block_of(image: &DiskImage, block: u64) -> Vec<u8> {
    image.block(block).expect("inside the image").to_vec()
}

#[test]
fn unflushed_writes_can_vanish_at_a_crash() {
    let mut d = Driver::open("instant,size=1M,arena=1M,clock=virtual");
    d.write(0, &pattern(1, 0), true).unwrap();
    d.write(0, &pattern(2, 0), false).unwrap(); // completed, never flushed
    assert_eq!(d.read(0, 1), pattern(2, 0), "reads see it");
    let seen: HashSet<Vec<u8>> = (0..SEEDS)
        .map(|seed| block_of(&d.dev.crash(seed).unwrap(), 0))
        .collect();
    let expected: HashSet<Vec<u8>> = [pattern(1, 0), pattern(2, 0)].into();
    assert_eq!(seen, expected, "some seed loses the write, some keep it");
    assert_eq!(block_of(&d.dev.durable_image().unwrap(), 0), pattern(1, 0));
    assert_eq!(d.dev.unflushed_bytes(), BLOCK as u64);
}

#[test]
fn flushed_and_fua_writes_never_vanish() {
    for spec in [
        "instant,size=1M,arena=1M,clock=virtual",
        "nand,size=1M,arena=1M,clock=virtual",
    ] {
        let mut d = Driver::open(spec);
        d.write(0, &patterns(1, 8), false).unwrap();
        d.flush().unwrap();
        d.write(8, &patterns(2, 8), true).unwrap();
        // Later writes, some over the same blocks, none durable.
        d.write(16, &patterns(3, 8), false).unwrap();
        d.push_write(4, &patterns(4, 8), false);
        d.submit();
        for seed in 0..SEEDS {
            let image = d.dev.crash(seed).unwrap();
            for b in 0..4 {
                assert_eq!(block_of(&image, b), pattern(1, b), "{spec} seed {seed}");
            }
            for b in 12..16 {
                assert_eq!(block_of(&image, b), pattern(2, b - 8), "{spec} seed {seed}");
            }
        }
        d.reap_all();
    }
}

#[test]
fn a_write_in_flight_when_a_flush_is_issued_is_not_covered() {
    // ull timing (write 6 us, flush 1 us) with a volatile cache.
    let mut d = Driver::open("ull,size=1M,arena=1M,clock=virtual,cache=volatile");
    d.push_write(0, &pattern(1, 0), false);
    d.submit(); // due at 6 us
    d.push_flush();
    d.submit(); // issued at 0 us: the write has not completed
    let done = d.reap_all();
    assert_eq!(done.len(), 2);
    assert_eq!(d.dev.now_ns(), 6_000);
    let durable = d.dev.durable_image().unwrap();
    assert_eq!(
        block_of(&durable, 0),
        vec![0; BLOCK],
        "the flush did not cover it"
    );
    assert_eq!(
        d.dev.crash_candidates(),
        [BlockWrite {
            write_id: 1,
            block: 0
        }]
    );
    let lost = (0..SEEDS).any(|s| block_of(&d.dev.crash(s).unwrap(), 0) == vec![0; BLOCK]);
    assert!(lost, "some crash loses the write");

    // A flush issued after the write's due time covers it, reaped or not.
    d.push_write(1, &pattern(2, 0), false);
    d.submit(); // due at 12 us
    d.dev.advance_clock_to(12_000).unwrap();
    d.push_flush();
    d.submit();
    d.reap_all();
    let durable = d.dev.durable_image().unwrap();
    assert_eq!(
        block_of(&durable, 1),
        pattern(2, 0),
        "completed before the flush: covered"
    );
    assert_eq!(
        block_of(&durable, 0),
        pattern(1, 0),
        "and the earlier write too, now"
    );
}

#[test]
fn a_flush_is_durable_only_when_it_completes() {
    let mut d = Driver::open("nand,size=1M,arena=1M,clock=virtual");
    d.write(0, &pattern(1, 0), false).unwrap();
    d.push_flush();
    d.submit(); // 1 ms + 1 us
    assert_eq!(
        d.dev.crash_candidates().len(),
        1,
        "covered but not yet durable"
    );
    d.dev.advance_clock_to(d.dev.now_ns() + 1_001_000).unwrap();
    assert!(d.dev.crash_candidates().is_empty(), "the flush completed");
    d.reap_all();
}

#[test]
fn the_same_seed_gives_the_same_image() {
    let mut d = Driver::open("instant,size=1M,arena=4M,clock=virtual");
    for i in 0..40 {
        d.write(i % 13, &patterns(i, 2), false).unwrap();
    }
    let digests: HashSet<u64> = (0..20).map(|s| d.dev.crash(s).unwrap().digest()).collect();
    assert!(digests.len() > 10, "seeds differ: {}", digests.len());
    for seed in 0..20 {
        assert_eq!(d.dev.crash(seed).unwrap(), d.dev.crash(seed).unwrap());
    }
}

#[test]
fn a_multi_block_write_tears_only_at_block_boundaries() {
    let mut d = Driver::open("instant,size=1M,arena=1M,clock=virtual");
    d.write(0, &patterns(1, 8), true).unwrap();
    d.write(0, &patterns(2, 8), false).unwrap();
    let mut torn = false;
    for seed in 0..SEEDS {
        let image = d.dev.crash(seed).unwrap();
        let new: Vec<bool> = (0..8)
            .map(|b| {
                let got = block_of(&image, b);
                assert!(
                    got == pattern(1, b) || got == pattern(2, b),
                    "seed {seed} block {b}: each 4 KiB block is old or new, never mixed"
                );
                got == pattern(2, b)
            })
            .collect();
        torn |= new.iter().any(|&n| n) && new.iter().any(|&n| !n);
    }
    assert!(torn, "some crash keeps part of the write");
}

#[test]
fn failed_writes_and_flushes_change_nothing() {
    let mut d = Driver::open("instant,size=1M,arena=1M,clock=virtual,record");
    d.write(0, &pattern(1, 0), true).unwrap();
    let before = d.dev.durable_image().unwrap();

    d.dev.faults().arm(FaultPlan::nth(0, OpFilter::Writes));
    assert!(d.write(0, &pattern(2, 0), true).is_err());
    d.dev.faults().disarm();
    assert_eq!(d.read(0, 1), pattern(1, 0), "not even the current image");
    assert!(d.dev.crash_candidates().is_empty(), "nothing pending");
    assert_eq!(d.dev.durable_image().unwrap(), before);

    d.write(1, &pattern(3, 0), false).unwrap();
    d.dev.faults().arm(FaultPlan::nth(0, OpFilter::Flushes));
    assert!(d.flush().is_err());
    d.dev.faults().disarm();
    assert_eq!(
        d.dev.durable_image().unwrap(),
        before,
        "a failed flush makes nothing durable"
    );
    assert_eq!(d.dev.crash_candidates().len(), 1);
    assert_eq!(
        d.dev.log().unwrap().commands().len(),
        2,
        "failed commands are not logged"
    );
    d.flush().unwrap();
    assert_eq!(block_of(&d.dev.durable_image().unwrap(), 1), pattern(3, 0));
}

#[test]
fn a_non_volatile_cache_loses_only_writes_in_flight() {
    let mut d = Driver::open("ull,size=1M,arena=1M,clock=virtual");
    d.write(0, &pattern(1, 0), false).unwrap();
    d.push_write(1, &pattern(2, 0), false);
    d.submit();
    assert_eq!(d.dev.crash_candidates().len(), 1, "only the one in flight");
    for seed in 0..SEEDS {
        assert_eq!(block_of(&d.dev.crash(seed).unwrap(), 0), pattern(1, 0));
    }
    d.reap_all();
    assert!(d.dev.crash_candidates().is_empty());
}

#[test]
fn staged_commands_never_reached_the_device() {
    let mut d = Driver::open("instant,size=1M,arena=1M,clock=virtual");
    d.push_write(0, &pattern(1, 0), true);
    assert!(d.dev.crash_candidates().is_empty());
    assert_eq!(block_of(&d.dev.current_image().unwrap(), 0), vec![0; BLOCK]);
    d.reap_all();
    assert_eq!(block_of(&d.dev.durable_image().unwrap(), 0), pattern(1, 0));
}

#[test]
fn a_full_volatile_cache_writes_back_on_its_own() {
    let mut d = Driver::open("instant,size=1M,arena=1M,clock=virtual,cache_size=8K,record");
    for b in 0..3 {
        d.write(b, &pattern(b, 0), false).unwrap();
    }
    // 12 KiB completed and unflushed > 8 KiB: the next submission writes everything back.
    d.write(3, &pattern(3, 0), false).unwrap();
    let durable = d.dev.durable_image().unwrap();
    for b in 0..3 {
        assert_eq!(block_of(&durable, b), pattern(b, 0));
    }
    assert_eq!(d.dev.unflushed_bytes(), BLOCK as u64);
    let log = d.dev.log().unwrap();
    assert!(matches!(
        log.commands()[3],
        aios_device_emu::LoggedCommand::Flush { implicit: true, .. }
    ));
}

#[test]
fn crash_images_open_as_devices_and_save_to_files() {
    let mut d = Driver::open("nand,size=1M,arena=1M,clock=virtual");
    d.write(0, &pattern(1, 0), false).unwrap();
    d.flush().unwrap();
    d.write(1, &pattern(2, 0), false).unwrap();
    let image = d.dev.crash_with(|_| false).unwrap();
    let mut after = Driver::new(EmuDevice::with_image(EmuConfig::instant(), image).unwrap());
    assert_eq!(after.dev.info().capacity_bytes, 1 << 20);
    assert_eq!(after.read(0, 2), [pattern(1, 0), vec![0; BLOCK]].concat());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dev.img");
    d.dev.save(&path).unwrap();
    let mut reopened = Driver::open(&format!("instant,arena=1M,file={}", path.display()));
    assert_eq!(
        reopened.read(0, 2),
        [pattern(1, 0), vec![0; BLOCK]].concat(),
        "only durable data"
    );
}
