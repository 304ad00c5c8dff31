//! The data-only sync (`fdatasync` of overwrites) on the emulated device: the data is durable
//! when it returns `Ok`, whichever way it got there. In the AIOS order one command goes with
//! FUA and no flush; the vanilla order, and several commands in either order, write and then
//! flush once.

mod rt;

use aios_device::{Device, FaultPlan, OpFilter};
use aios_journal::runtime::{sync_data, CommitOrder, DataWrite};
use rt::*;

/// Writes `blocks` (device block numbers, each tagged) through a data sync in `order`; returns
/// how many flushes the device saw.
fn data_sync(order: CommitOrder, blocks: &[u64]) -> u64 {
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
                buf,
            }
        })
        .collect();
    // Never fires: only counts the flushes.
    dev.faults()
        .arm(FaultPlan::nth(u64::MAX, OpFilter::Flushes));
    let out = sync_data(&mut q, dev.arena(), data, order);
    let flushes = dev.faults().counts().first().copied().unwrap_or(0);
    dev.faults().disarm();
    for d in out.data {
        dev.arena().free(d.buf);
    }
    let committed = out.result.expect("the data sync succeeds");
    assert_eq!((committed.sequence, committed.journal_blocks), (0, 0));
    assert!(
        dev.crash_candidates().is_empty(),
        "{order:?} {blocks:?}: a write is still volatile after Ok"
    );
    let durable = dev.durable_image().unwrap();
    for &b in blocks {
        assert_eq!(
            durable.block(b),
            Some(&tagged(1, b)[..]),
            "{order:?}: block {b} not durable"
        );
    }
    flushes
}

#[test]
fn one_command_goes_with_fua_in_the_aios_order_and_is_durable() {
    assert_eq!(data_sync(CommitOrder::Async, &[DATA.start]), 0);
}

#[test]
fn the_vanilla_order_writes_then_flushes() {
    assert_eq!(data_sync(CommitOrder::Sync, &[DATA.start]), 1);
}

#[test]
fn several_commands_share_one_flush_in_either_order() {
    let apart = [DATA.start, DATA.start + 5];
    assert_eq!(data_sync(CommitOrder::Async, &apart), 1);
    assert_eq!(data_sync(CommitOrder::Sync, &apart), 1);
}

#[test]
fn a_failed_fua_write_fails_the_sync() {
    let dev = device(false);
    let mut q = queue(&dev, 8);
    let mut buf = dev.arena().alloc(1).unwrap();
    dev.arena()
        .bytes_mut(&mut buf)
        .copy_from_slice(&tagged(1, DATA.start));
    let data = vec![DataWrite {
        offset_bytes: DATA.start * BLOCK as u64,
        buf,
    }];
    dev.faults().arm(FaultPlan::nth(0, OpFilter::Writes));
    let out = sync_data(&mut q, dev.arena(), data, CommitOrder::Async);
    dev.faults().disarm();
    for d in out.data {
        dev.arena().free(d.buf);
    }
    let err = out
        .result
        .expect_err("an EIO on the only write fails the sync");
    assert_eq!(err.device_error().and_then(|e| e.errno()), Some(libc::EIO));
}
