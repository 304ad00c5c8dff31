//! The data-only sync (`fdatasync` of overwrites) on the emulated device: the data is durable
//! when it returns `Ok`, after one flush however many commands it wrote; a failed write fails
//! it. (A FUA write instead of write and flush for one command was tried: on the virtio disk
//! no faster sleeping, slower polled; see `docs/results/fsync.md`.)

mod rt;

use std::sync::Arc;

use aios_device::{Device, FaultPlan, OpFilter, SharedBuf};
use aios_journal::runtime::{sync_data, DataWrite};
use rt::*;

/// Writes `blocks` (device block numbers, each tagged) through a data sync; returns how many
/// flushes the device saw.
fn data_sync(blocks: &[u64]) -> u64 {
    let dev = device(false);
    let mut q = queue(&dev, 8);
    let data: Vec<DataWrite> = blocks
        .iter()
        .map(|&b| {
            let mut buf = dev.arena().alloc(1).unwrap();
            dev.arena()
                .bytes_mut(&mut buf)
                .copy_from_slice(&tagged(1, b));
            DataWrite {
                offset_bytes: b * BLOCK as u64,
                pages: vec![Arc::new(SharedBuf::new(dev.arena(), buf))],
            }
        })
        .collect();
    // Never fires: only counts the flushes.
    dev.faults()
        .arm(FaultPlan::nth(u64::MAX, OpFilter::Flushes));
    let out = sync_data(&mut q, dev.arena(), &data);
    let flushes = dev.faults().counts().first().copied().unwrap_or(0);
    dev.faults().disarm();
    assert!(
        data.iter().all(|d| Arc::strong_count(&d.pages[0]) == 1),
        "the sync let go of every page"
    );
    let committed = out.expect("the data sync succeeds");
    assert_eq!((committed.sequence, committed.journal_blocks), (0, 0));
    assert!(
        dev.crash_candidates().is_empty(),
        "{blocks:?}: a write is still volatile after Ok"
    );
    let durable = dev.durable_image().unwrap();
    for &b in blocks {
        assert_eq!(
            durable.block(b),
            Some(&tagged(1, b)[..]),
            "block {b} not durable"
        );
    }
    flushes
}

#[test]
fn one_or_several_commands_are_durable_after_one_flush() {
    assert_eq!(data_sync(&[DATA.start]), 1);
    assert_eq!(data_sync(&[DATA.start, DATA.start + 5]), 1);
}

#[test]
fn a_failed_write_fails_the_sync() {
    let dev = device(false);
    let mut q = queue(&dev, 8);
    let mut buf = dev.arena().alloc(1).unwrap();
    dev.arena()
        .bytes_mut(&mut buf)
        .copy_from_slice(&tagged(1, DATA.start));
    let data = vec![DataWrite {
        offset_bytes: DATA.start * BLOCK as u64,
        pages: vec![Arc::new(SharedBuf::new(dev.arena(), buf))],
    }];
    dev.faults().arm(FaultPlan::nth(0, OpFilter::Writes));
    let out = sync_data(&mut q, dev.arena(), &data);
    dev.faults().disarm();
    let err = out.expect_err("an EIO on the only write fails the sync");
    assert_eq!(err.device_error().and_then(|e| e.errno()), Some(libc::EIO));
}
