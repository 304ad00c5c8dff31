//! The journal runtime on the emulated NVMe device (volatile cache, virtual clock): every crash
//! state of a recorded workload recovers to the state after some prefix of the issued
//! transactions that includes every acknowledged one; the device command order of both commit
//! orders; recovery twice gives the same image.

mod rt;

use aios_device::Device;
use aios_device_emu::{CrashPoint, EventKind, LoggedCommand, WriteLog};
use aios_journal::runtime::CommitOrder;
use rt::*;

/// Command ids (1-based, the write log's) of each transaction: `first..=last`, last = commit.
struct Recorded {
    log: WriteLog,
    txs: Vec<Tx>,
    ranges: Vec<(u64, u64)>,
}

fn run_workload(order: CommitOrder, seed: u64, count: usize, min_checkpoints: usize) -> Recorded {
    let dev = device(true);
    let mut q = queue(&dev, 8); // small depth: commits must wait for slots
    let mut j = open(&dev, &mut q, order);
    let txs = workload(seed, count);
    let mut ranges = Vec::new();
    let mut checkpoints = 0;
    for (i, tx) in txs.iter().enumerate() {
        let before = dev.log().unwrap().commands().len() as u64;
        let out = commit(&mut j, &mut q, &dev, tx);
        if let Ok(c) = &out {
            checkpoints += usize::from(c.checkpointed);
        }
        out.map(drop).unwrap_or_else(|e| panic!("tx {i}: {e}"));
        let after = dev.log().unwrap().commands().len() as u64;
        match dev.log().unwrap().command(after) {
            Some(LoggedCommand::Write { fua: true, .. }) => {}
            other => panic!("tx {i}: last command is not a FUA write: {other:?}"),
        }
        ranges.push((before + 1, after));
        // Acknowledged: the durable image alone (every volatile write lost) holds it.
        assert!(
            dev.crash_candidates().is_empty(),
            "tx {i}: nothing volatile after Ok"
        );
        let (rec, _) = recover_image(dev.crash(i as u64).unwrap());
        let base = dev.log().unwrap().base_image().try_clone().unwrap();
        let k = matching_prefix(
            &rec.current_image().unwrap(),
            &base,
            &txs,
            i + 1,
            i + 1,
            i + 1,
        );
        assert_eq!(k, Ok(i + 1), "tx {i} acknowledged but not recovered");
    }
    assert!(
        checkpoints >= min_checkpoints,
        "the workload must wrap the log ({checkpoints} checkpoints)"
    );
    Recorded {
        log: dev.log().unwrap(),
        txs,
        ranges,
    }
}

/// Every crash point, every subset of up to 6 candidates, else 12 seeds plus all and none.
fn check_all_crash_states(r: &Recorded, what: &str) -> usize {
    let base = r.log.base_image();
    let events = r.log.events();
    let mut replay = r.log.replay().unwrap();
    let mut states = 0;
    let mut max_submitted = 0u64;
    let mut completed = std::collections::HashSet::new();
    for p in 0..=events.len() {
        if p > 0 {
            let e = events[p - 1];
            match e.kind {
                EventKind::Submit => max_submitted = max_submitted.max(e.id),
                EventKind::Complete => {
                    completed.insert(e.id);
                }
            }
        }
        replay.advance_to(r.log.point(p)).unwrap();
        let issued = r.ranges.iter().filter(|(f, _)| *f <= max_submitted).count();
        let acked = r
            .ranges
            .iter()
            .filter(|(_, c)| completed.contains(c))
            .count();
        let n = replay.candidates().len();
        let mut images = Vec::new();
        if n <= 6 {
            for mask in 0u32..(1 << n) {
                let chosen: Vec<bool> = (0..n).map(|i| mask >> i & 1 == 1).collect();
                images.push((
                    format!("subset {mask:#b}"),
                    replay.image_subset(&chosen).unwrap(),
                ));
            }
        } else {
            images.push(("all".into(), replay.image_with(|_| true).unwrap()));
            images.push(("none".into(), replay.image_with(|_| false).unwrap()));
            for seed in 0..12 {
                images.push((format!("seed {seed}"), replay.image_seeded(seed).unwrap()));
            }
        }
        for (name, image) in images {
            let (dev, _) = recover_image(image);
            let got = dev.current_image().unwrap();
            if let Err(e) = matching_prefix(&got, base, &r.txs, acked, issued, issued) {
                panic!(
                    "{what}: crash point {p} ({:?}), {name}: {e}",
                    r.log.point(p)
                );
            }
            states += 1;
        }
    }
    states
}

#[test]
fn every_crash_state_recovers_to_a_prefix_sync() {
    let r = run_workload(CommitOrder::Sync, 1, 24, 2);
    let n = check_all_crash_states(&r, "sync");
    eprintln!("sync: {n} crash states checked");
}

#[test]
fn every_crash_state_recovers_to_a_prefix_async() {
    let r = run_workload(CommitOrder::Async, 2, 24, 2);
    let n = check_all_crash_states(&r, "async");
    eprintln!("async: {n} crash states checked");
}

/// Per transaction: the event index of each command's submission and completion.
fn event_index(log: &WriteLog, id: u64, kind: EventKind) -> usize {
    log.events()
        .iter()
        .position(|e| e.id == id && e.kind == kind)
        .unwrap_or_else(|| panic!("no {kind:?} event for command {id}"))
}

#[test]
fn command_order_of_both_orders() {
    let journal_bytes = |off: u64| {
        let b = off / BLOCK as u64;
        (64..104).contains(&b) || (200..260).contains(&b)
    };
    for order in [CommitOrder::Sync, CommitOrder::Async] {
        let r = run_workload(order, 3, 6, 0);
        let log = &r.log;
        for (t, &(first, last)) in r.ranges.iter().enumerate() {
            let mut data = Vec::new();
            let mut journal = Vec::new();
            let mut flushes = Vec::new();
            for id in first..=last {
                match log.command(id).unwrap() {
                    LoggedCommand::Write {
                        offset_bytes, fua, ..
                    } => {
                        if id == last {
                            assert!(*fua, "{order:?} tx {t}: commit without FUA");
                            assert!(journal_bytes(*offset_bytes));
                        } else if journal_bytes(*offset_bytes) {
                            assert!(!fua || t == 0, "journal block with FUA");
                            journal.push(id);
                        } else {
                            data.push(id);
                        }
                    }
                    LoggedCommand::Flush { .. } => flushes.push(id),
                }
            }
            // The last flush of the transaction is its commit flush (a checkpoint may flush
            // earlier, before any of its writes).
            let flush = *flushes.last().expect("a flush");
            let flush_submit = event_index(log, flush, EventKind::Submit);
            let flush_done = event_index(log, flush, EventKind::Complete);
            let data_journal_done = data
                .iter()
                .chain(&journal)
                .filter(|&&id| id > flushes[..flushes.len() - 1].last().copied().unwrap_or(0))
                .map(|&id| event_index(log, id, EventKind::Complete))
                .max()
                .unwrap();
            assert!(
                flush_submit > data_journal_done,
                "{order:?} tx {t}: flush issued before every data/journal write completed"
            );
            let commit_submit = event_index(log, last, EventKind::Submit);
            assert!(
                commit_submit > flush_done,
                "{order:?} tx {t}: commit before the flush completed"
            );
            let data_done = data
                .iter()
                .map(|&id| event_index(log, id, EventKind::Complete))
                .max()
                .unwrap();
            let journal_submit = journal
                .iter()
                .filter(|&&id| id > data[0])
                .map(|&id| event_index(log, id, EventKind::Submit))
                .min()
                .unwrap();
            match order {
                CommitOrder::Async => assert!(
                    journal_submit < data_done,
                    "async tx {t}: journal writes waited for the data"
                ),
                CommitOrder::Sync => assert!(
                    journal_submit > data_done,
                    "sync tx {t}: journal writes submitted before the data completed"
                ),
            }
        }
    }
}

#[test]
fn recovering_twice_gives_the_same_image() {
    let r = run_workload(CommitOrder::Async, 4, 10, 0);
    // A crash at the end with nothing volatile: the log holds un-checkpointed transactions.
    let end = r
        .log
        .replay_to(CrashPoint {
            ..r.log.point(usize::MAX)
        })
        .unwrap();
    let image = end.image_with(|_| false).unwrap();
    let mut config = config(true);
    config.record = true;
    let dev = aios_device_emu::EmuDevice::with_image(config, image.try_clone().unwrap()).unwrap();
    let mut q = queue(&dev, 16);
    let first = aios_journal::runtime::recover(&mut q, dev.arena(), &extents()).unwrap();
    assert!(first.needed && !first.fs_blocks.is_empty());
    let want = dev.current_image().unwrap();
    // Crash the recovery itself at every point, with seeded subsets, and recover again.
    let log = dev.log().unwrap();
    let mut states = 0;
    for p in 0..=log.events().len() {
        let replay = log.replay_to(log.point(p)).unwrap();
        for seed in 0..6 {
            let (again, second) = recover_image(replay.image_seeded(seed).unwrap());
            let got = again.current_image().unwrap();
            assert!(
                got.diff_blocks(&want).is_empty(),
                "crash at recovery point {p} seed {seed}: {:?} differ (second pass {second:?})",
                got.diff_blocks(&want)
            );
            states += 1;
        }
    }
    eprintln!("recovery crashed at {states} states, all recovered to the same image");
}
