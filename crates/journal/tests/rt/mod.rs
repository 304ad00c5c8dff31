//! Test support for the journal runtime on the emulated device: a small device with a journal
//! split over two extents, a seeded workload of ordered-mode transactions, and the model that
//! says which images a crash may leave.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use aios_block::BlockQueue;
use aios_device::{Device, QueueConfig, SharedBuf};
use aios_device_emu::{DiskImage, EmuConfig, EmuDevice, EmuQueue};
use aios_journal::format::Block;
use aios_journal::layout::DataBlock;
use aios_journal::runtime::{
    recover, CommitOrder, Committed, DataWrite, Journal, JournalExtent, JournalExtents,
    JournalOptions, Replayed, RuntimeError, Transaction,
};

pub const BLOCK: usize = 4096;
/// Journal: journal blocks 0..40 at device 64.., 40..100 at device 200...
pub const JOURNAL_BLOCKS: u32 = 100;
/// Metadata homes.
pub const META: std::ops::Range<u64> = 600..640;
/// Data blocks.
pub const DATA: std::ops::Range<u64> = 1000..1040;

pub fn extents() -> JournalExtents {
    JournalExtents::new(vec![
        JournalExtent {
            journal_block: 0,
            device_block: 64,
            len_blocks: 40,
        },
        JournalExtent {
            journal_block: 40,
            device_block: 200,
            len_blocks: 60,
        },
    ])
    .unwrap()
}

/// A fresh, clean jbd2 v2 superblock (what mke2fs writes): 4 KiB blocks, `s_first` 1.
pub fn fresh_superblock(maxlen: u32, sequence: u32) -> Block {
    let mut b = [0u8; BLOCK];
    let mut put = |off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_be_bytes());
    put(0, 0xC03B_3998);
    put(4, 4); // superblock v2
    put(0x0C, 4096);
    put(0x10, maxlen);
    put(0x14, 1);
    put(0x18, sequence);
    put(0x40, 1); // nr_users
    b[0x30..0x40].copy_from_slice(&[0x5A; 16]);
    b
}

/// A block that says which transaction wrote it where.
pub fn tagged(tx: u64, block: u64) -> Block {
    let mut b = [0u8; BLOCK];
    for (i, c) in b.chunks_exact_mut(16).enumerate() {
        c[..8].copy_from_slice(&tx.to_le_bytes());
        c[8..].copy_from_slice(&(block ^ ((i as u64) << 32)).to_le_bytes());
    }
    b
}

pub fn config(record: bool) -> EmuConfig {
    let mut c = EmuConfig::parse("nand,size=8M,arena=2M,clock=virtual").unwrap();
    c.record = record;
    c
}

pub fn queue(dev: &EmuDevice, depth: u16) -> BlockQueue<EmuQueue> {
    BlockQueue::open(
        dev,
        QueueConfig {
            depth,
            ..QueueConfig::default()
        },
    )
    .unwrap()
}

/// A device whose journal superblock is written and durable (before recording starts).
pub fn device(record: bool) -> EmuDevice {
    let mut image = DiskImage::zeroed(8 << 20).unwrap();
    image
        .write_at(64 * BLOCK as u64, &fresh_superblock(JOURNAL_BLOCKS, 7))
        .unwrap();
    EmuDevice::with_image(config(record), image).unwrap()
}

/// What one transaction does.
#[derive(Debug, Clone)]
pub struct Tx {
    pub meta: Vec<(u64, Block)>,
    pub data: Vec<(u64, Block)>,
    pub revoked: Vec<u64>,
}

/// A seeded workload: metadata blocks from `META`, data from `DATA` and from metadata blocks
/// freed (revoked) by an earlier transaction.
pub fn workload(seed: u64, count: usize) -> Vec<Tx> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut meta_pool: Vec<u64> = META.collect();
    let mut freed: Vec<u64> = Vec::new();
    let mut logged: BTreeSet<u64> = BTreeSet::new();
    let mut txs = Vec::new();
    for i in 0..count as u64 {
        let tx_id = i + 1;
        let mut meta = BTreeMap::new();
        for _ in 0..3 + rnd(10) {
            let b = meta_pool[rnd(meta_pool.len() as u64) as usize];
            meta.insert(b, tagged(tx_id, b));
        }
        let mut data = BTreeMap::new();
        for _ in 0..1 + rnd(4) {
            let b = DATA.start + rnd(DATA.end - DATA.start);
            data.insert(b, tagged(tx_id, b));
        }
        if let Some(&b) = freed.last() {
            if rnd(2) == 0 {
                data.insert(b, tagged(tx_id, b));
            }
        }
        let mut revoked = Vec::new();
        if i % 4 == 3 {
            if let Some(&b) = logged.iter().find(|b| !meta.contains_key(b)) {
                revoked.push(b);
                logged.remove(&b);
                meta_pool.retain(|&m| m != b);
            }
        }
        logged.extend(meta.keys().copied());
        txs.push(Tx {
            meta: meta.into_iter().collect(),
            data: data.into_iter().collect(),
            revoked: revoked.clone(),
        });
        // Freed blocks may hold data only from the next transaction on.
        freed.extend(revoked);
    }
    txs
}

/// Commits `tx` (data pages filled from the arena, shared with the commit), and checks the
/// commit let go of every page.
pub fn commit(
    j: &mut Journal,
    q: &mut BlockQueue<EmuQueue>,
    dev: &EmuDevice,
    tx: &Tx,
) -> Result<Committed, RuntimeError> {
    let arena = dev.arena();
    let data: Vec<DataWrite> = tx
        .data
        .iter()
        .map(|(b, c)| {
            let mut buf = arena.alloc(1).unwrap();
            arena.bytes_mut(&mut buf).copy_from_slice(c);
            DataWrite {
                offset_bytes: b * BLOCK as u64,
                pages: vec![Arc::new(SharedBuf::new(arena, buf))],
            }
        })
        .collect();
    let meta: Vec<DataBlock> = tx
        .meta
        .iter()
        .map(|(b, c)| DataBlock {
            fs_block: *b,
            contents: c,
        })
        .collect();
    let out = j.commit(
        q,
        arena,
        Transaction {
            data: data.clone(),
            metadata: &meta,
            revoked: &tx.revoked,
        },
    );
    for d in &data {
        for page in &d.pages {
            assert_eq!(Arc::strong_count(page), 1, "the commit still holds a page");
        }
    }
    out
}

pub fn open(dev: &EmuDevice, q: &mut BlockQueue<EmuQueue>, order: CommitOrder) -> Journal {
    Journal::open(
        q,
        dev.arena(),
        extents(),
        JournalOptions {
            order,
            bit64: true,
            csum_v3: true,
            plant: None,
        },
    )
    .unwrap()
}

/// Recovers `image` on a fresh device; returns the device (its current image is the result).
pub fn recover_image(image: DiskImage) -> (EmuDevice, Replayed) {
    let dev = EmuDevice::with_image(config(false), image).unwrap();
    let mut q = queue(&dev, 16);
    let r = recover(&mut q, dev.arena(), &extents()).unwrap_or_else(|e| panic!("recovery: {e}"));
    drop(q);
    (dev, r)
}

/// What a block may hold after a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Exact(Box<Block>),
    Any,
}

/// The prefix `k` in `lo..=hi` whose state `image` shows: metadata exactly as after `k`
/// transactions; data as after `k`, or any data write of a transaction in `k..issued` (ordered
/// mode writes data before the commit, so it may land without it).
pub fn matching_prefix(
    image: &DiskImage,
    base: &DiskImage,
    txs: &[Tx],
    lo: usize,
    hi: usize,
    issued: usize,
) -> Result<usize, String> {
    let mut blocks = BTreeSet::new();
    for tx in &txs[..issued] {
        blocks.extend(tx.meta.iter().map(|m| m.0));
        blocks.extend(tx.data.iter().map(|m| m.0));
        blocks.extend(tx.revoked.iter().copied());
    }
    let mut why = String::new();
    'k: for k in lo..=hi {
        for &b in &blocks {
            let mut expect = Expect::Exact(Box::new(base.block(b).unwrap().try_into().unwrap()));
            for tx in &txs[..k] {
                if let Some((_, c)) = tx.meta.iter().chain(tx.data.iter()).find(|m| m.0 == b) {
                    expect = Expect::Exact(Box::new(*c));
                }
                if tx.revoked.contains(&b) {
                    expect = Expect::Any;
                }
            }
            let have = image.block(b).unwrap();
            let ok = match &expect {
                Expect::Any => true,
                Expect::Exact(c) => {
                    have == &c[..]
                        || txs[k..issued]
                            .iter()
                            .any(|tx| tx.data.iter().any(|(d, c)| *d == b && have == &c[..]))
                }
            };
            if !ok {
                let tx_of = u64::from_le_bytes(have[..8].try_into().unwrap());
                why += &format!("prefix {k}: block {b} holds tx {tx_of}'s bytes; ");
                continue 'k;
            }
        }
        return Ok(k);
    }
    Err(format!("no prefix in {lo}..={hi} (issued {issued}): {why}"))
}
