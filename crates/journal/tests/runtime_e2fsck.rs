//! Interop on a real `mke2fs` image through the pread/pwrite backend: transactions committed by
//! the runtime (both orders) into the image's own journal, left un-checkpointed with ext4's
//! `needs_recovery` set, are replayed by `e2fsck -E journal_only` to the expected blocks, and our
//! recovery on a copy of the same image gives the same blocks; both images then pass `e2fsck -fn`.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::Arc;

use aios_block::BlockQueue;
use aios_device::{Device, QueueConfig, SharedBuf, TargetOptions};
use aios_device_psync::{PsyncConfig, PsyncDevice};
use aios_journal::format::Block;
use aios_journal::layout::DataBlock;
use aios_journal::runtime::{
    recover, CommitOrder, DataWrite, Journal, JournalExtents, JournalOptions, Transaction,
};
use common::*;

fn psync(image: &std::path::Path) -> PsyncDevice {
    PsyncDevice::open(
        image,
        PsyncConfig {
            arena_bytes: 4 << 20,
            target: TargetOptions {
                read_only: false,
                exclusive: false,
            },
        },
    )
    .unwrap()
}

#[test]
fn e2fsck_replays_what_the_runtime_commits_and_so_do_we() {
    let name = "e2fsck_replays_what_the_runtime_commits_and_so_do_we";
    if !have_e2fsprogs(name) {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("big"), pattern(7, 64 * 4096)).unwrap();
    std::fs::write(src.join("data"), pattern(8, 8 * 4096)).unwrap();
    let image = mkfs(dir.path(), "rt.img", 64, Some(&src));
    let big = file_blocks(&image, "/big");
    let data_blocks = file_blocks(&image, "/data");
    let extents = JournalExtents::from_blocks(&journal_map(&image)).unwrap();

    let dev = psync(&image);
    let arena = dev.arena();
    let mut q = BlockQueue::open(&dev, QueueConfig::default()).unwrap();
    let mut expected: BTreeMap<u64, Block> = BTreeMap::new();
    let mut j = Journal::open(
        &mut q,
        arena,
        extents.clone(),
        JournalOptions {
            order: CommitOrder::Sync,
            bit64: true,
            csum_v3: true,
            plant: None,
        },
    )
    .unwrap();
    let plan: Vec<(CommitOrder, Vec<usize>, Vec<usize>)> = vec![
        (CommitOrder::Sync, (0..20).collect(), vec![]),
        (CommitOrder::Async, (10..30).collect(), vec![]),
        (CommitOrder::Async, vec![0, 40], vec![25]),
    ];
    for (t, (order, logged, revoked)) in plan.into_iter().enumerate() {
        j.set_order(order);
        let contents: Vec<Block> = logged
            .iter()
            .map(|&i| block_of(100 * t as u64 + i as u64))
            .collect();
        let meta: Vec<DataBlock> = logged
            .iter()
            .zip(&contents)
            .map(|(&i, c)| DataBlock {
                fs_block: big[i],
                contents: c,
            })
            .collect();
        let revoked: Vec<u64> = revoked.iter().map(|&i| big[i]).collect();
        let mut buf = arena.alloc(1).unwrap();
        let data_block = block_of(900 + t as u64);
        arena.bytes_mut(&mut buf).copy_from_slice(&data_block);
        let out = j.commit(
            &mut q,
            arena,
            Transaction {
                data: vec![DataWrite {
                    offset_bytes: data_blocks[t] * 4096,
                    pages: vec![Arc::new(SharedBuf::new(arena, buf))],
                }],
                metadata: &meta,
                revoked: &revoked,
            },
        );
        let c = out.unwrap();
        eprintln!("tx {} ({order:?}): {:?}", c.sequence, c.times);
        for (m, c) in meta.iter().zip(&contents) {
            expected.insert(m.fs_block, *c);
        }
        for r in &revoked {
            expected.remove(r);
        }
        expected.insert(data_blocks[t], data_block);
    }
    assert_eq!(j.pending_blocks(), 30, "nothing checkpointed");
    drop(j); // a crash: no checkpoint, no clean unmount
    drop(q);
    drop(dev);
    set_needs_recovery(&image, true);
    let ours = dir.path().join("ours.img");
    std::fs::copy(&image, &ours).unwrap();
    let originals = {
        let f = File::open(&image).unwrap();
        big.iter().map(|&b| read_block(&f, b)).collect::<Vec<_>>()
    };

    // e2fsck replays.
    let out = run(
        "e2fsck",
        &["-fy", "-E", "journal_only", &image.to_string_lossy()],
    );
    assert!(out.status.code().unwrap_or(8) < 4, "e2fsck -fy: {out:?}");
    let theirs = File::open(&image).unwrap();
    for (i, &b) in big.iter().enumerate() {
        let now = read_block(&theirs, b);
        match expected.get(&b) {
            Some(want) => assert!(now == *want, "big block {i} ({b}) not replayed"),
            None => assert!(now == originals[i], "big block {i} ({b}) changed"),
        }
    }
    for (t, &b) in data_blocks.iter().take(3).enumerate() {
        assert!(
            read_block(&theirs, b) == block_of(900 + t as u64),
            "data {t}"
        );
    }
    let check = run("e2fsck", &["-fn", &image.to_string_lossy()]);
    assert!(
        check.status.success(),
        "e2fsck -fn after its replay: {check:?}"
    );

    // Our recovery on the copy.
    let dev = psync(&ours);
    let mut q = BlockQueue::open(&dev, QueueConfig::default()).unwrap();
    let r = recover(&mut q, dev.arena(), &extents).unwrap();
    assert!(r.needed);
    assert_eq!(r.transactions(), 3);
    assert_eq!(r.revoke_hits, 1, "big[25], logged by tx 2, revoked by tx 3");
    drop(q);
    drop(dev);
    set_needs_recovery(&ours, false); // the file system's step after replay
    let mine = File::open(&ours).unwrap();
    for &b in big.iter().chain(&data_blocks) {
        assert!(
            read_block(&mine, b) == read_block(&theirs, b),
            "block {b} differs from e2fsck's"
        );
    }
    let check = run("e2fsck", &["-fn", &ours.to_string_lossy()]);
    assert!(
        check.status.success(),
        "e2fsck -fn after our replay: {check:?}"
    );
    // A second recovery finds a clean journal.
    let dev = psync(&ours);
    let mut q = BlockQueue::open(&dev, QueueConfig::default()).unwrap();
    assert!(!recover(&mut q, dev.arena(), &extents).unwrap().needed);
}
