//! Fault injection on the emulated device: an EIO on a data, journal or commit write, or on the
//! flush, fails that commit with an error naming the I/O, aborts the journal (every later commit
//! and the unmount fail), and no crash image recovers the failed transaction.

mod rt;

use aios_device::{Device, FaultPlan, OpFilter};
use aios_journal::runtime::{CommitOrder, IoWhat, JournalState, RuntimeError};
use rt::*;

/// Which I/O of transaction `FAILED` fails.
#[derive(Debug, Clone, Copy)]
enum Target {
    Data,
    Journal,
    Commit,
    Flush,
}

const FAILED: usize = 3;

fn inject(order: CommitOrder, target: Target) {
    let dev = device(false);
    let mut q = queue(&dev, 8);
    let mut j = open(&dev, &mut q, order);
    let txs = workload(11, 6);
    for tx in &txs[..FAILED] {
        commit(&mut j, &mut q, &dev, tx).unwrap();
    }
    let tx = &txs[FAILED];
    let writes = tx.data.len() as u64 + 1 + 1; // data, one journal run (no wrap yet), commit
    let plan = match target {
        Target::Data => FaultPlan::nth(0, OpFilter::Writes),
        Target::Journal => FaultPlan::nth(tx.data.len() as u64, OpFilter::Writes),
        Target::Commit => FaultPlan::nth(writes - 1, OpFilter::Writes),
        Target::Flush => FaultPlan::nth(0, OpFilter::Flushes),
    };
    dev.faults().arm(plan);
    let out = commit(&mut j, &mut q, &dev, tx);
    dev.faults().disarm();
    let err = out.expect_err("the commit must fail");
    let what = err.failed_io();
    let named = matches!(
        (target, what),
        (Target::Data, Some(IoWhat::Data { .. }))
            | (Target::Journal, Some(IoWhat::Journal { .. }))
            | (Target::Commit, Some(IoWhat::Commit { .. }))
            | (Target::Flush, Some(IoWhat::Flush))
    );
    assert!(named, "{order:?} {target:?}: error names {what:?}: {err}");
    assert_eq!(err.device_error().and_then(|e| e.errno()), Some(libc::EIO));
    assert!(
        err.to_string()
            .contains(&format!("transaction {}", 8 + FAILED)),
        "{err}"
    );
    match j.state() {
        JournalState::Aborted(first) => assert_eq!(first.failed_io(), what),
        JournalState::Running => panic!("{order:?} {target:?}: not aborted"),
    }
    // Later commits fail, naming the first failure; nothing is written.
    let writes_before = dev.current_image().unwrap().digest();
    let later = commit(&mut j, &mut q, &dev, &txs[FAILED + 1]);
    match later {
        Err(RuntimeError::Aborted { first }) => assert_eq!(first.failed_io(), what),
        other => panic!("{order:?} {target:?}: later commit gave {other:?}"),
    }
    assert_eq!(dev.current_image().unwrap().digest(), writes_before);
    assert!(matches!(
        j.unmount(&mut q, dev.arena()),
        Err(RuntimeError::Aborted { .. })
    ));
    // Whatever a power loss keeps, the failed transaction's metadata never comes back.
    let base = {
        let d = device(false);
        d.current_image().unwrap()
    };
    let candidates = dev.crash_candidates().len();
    for seed in 0..24 {
        let (rec, _) = recover_image(dev.crash(seed).unwrap());
        let got = rec.current_image().unwrap();
        let k = matching_prefix(&got, &base, &txs, FAILED, FAILED, FAILED + 1);
        assert_eq!(
            k,
            Ok(FAILED),
            "{order:?} {target:?} seed {seed} ({candidates} candidates)"
        );
    }
}

#[test]
fn eio_on_each_write_kind_and_the_flush_aborts_the_journal() {
    for order in [CommitOrder::Sync, CommitOrder::Async] {
        for target in [Target::Data, Target::Journal, Target::Commit, Target::Flush] {
            inject(order, target);
        }
    }
}
