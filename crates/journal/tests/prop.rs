//! Property tests on an in-memory journal: `layout` then `recovery` round-trips random
//! transactions (random blocks, contents, revokes, several transactions, wrap-around) to the
//! final contents a model predicts; random corruption never panics and never replays anything of
//! an uncommitted transaction.

use std::collections::BTreeMap;

use aios_journal::format::features::incompat;
use aios_journal::format::features::{CsumVersion, JournalFormat, CHECKSUM_TYPE_CRC32C};
use aios_journal::format::header::{blocktype, Header, JBD2_MAGIC};
use aios_journal::format::superblock::{JournalSuperblock, SUPERBLOCK_SIZE_BYTES};
use aios_journal::format::{Block, BLOCK_SIZE_BYTES};
use aios_journal::layout::{layout, DataBlock, Log, LogPosition};
use aios_journal::recovery::recover;
use aios_journal::Location;
use proptest::prelude::*;

const MAXLEN: u32 = 64;

fn superblock(start: u32, sequence: u32) -> JournalSuperblock {
    let mut raw = [0u8; SUPERBLOCK_SIZE_BYTES];
    Header {
        blocktype: blocktype::SUPERBLOCK_V2,
        sequence: 0,
    }
    .encode(&mut raw, Location::Superblock)
    .unwrap();
    raw[0x0C..0x10].copy_from_slice(&4096u32.to_be_bytes());
    raw[0x10..0x14].copy_from_slice(&MAXLEN.to_be_bytes());
    raw[0x14..0x18].copy_from_slice(&1u32.to_be_bytes());
    let mut sb = JournalSuperblock::decode(&raw).unwrap();
    sb.features.incompat = incompat::REVOKE | incompat::BIT64 | incompat::CSUM_V3;
    sb.checksum_type = CHECKSUM_TYPE_CRC32C;
    sb.uuid = *b"aios-journal-uid";
    sb.start_block = start;
    sb.sequence = sequence;
    sb.encode().unwrap();
    sb
}

/// A block whose bytes name its transaction and home, first word optionally the magic.
fn contents(seq: u32, fs_block: u64, magic: bool) -> Block {
    let mut b = [0u8; BLOCK_SIZE_BYTES];
    for (i, chunk) in b.chunks_mut(16).enumerate() {
        chunk[..4].copy_from_slice(&seq.to_le_bytes());
        chunk[4..12].copy_from_slice(&fs_block.to_le_bytes());
        chunk[12..16].copy_from_slice(&(i as u32).to_le_bytes());
    }
    if magic {
        b[..4].copy_from_slice(&JBD2_MAGIC.to_be_bytes());
    }
    b
}

#[derive(Debug, Clone)]
struct TxSpec {
    blocks: Vec<(u64, bool)>,
    revoked: Vec<u64>,
}

fn tx_strategy() -> impl Strategy<Value = TxSpec> {
    (
        proptest::collection::btree_map(0u64..40, any::<bool>(), 0..12),
        proptest::collection::btree_set(0u64..40, 0..4),
    )
        .prop_map(|(blocks, revoked)| TxSpec {
            revoked: revoked
                .into_iter()
                .filter(|r| !blocks.contains_key(r))
                .collect(),
            blocks: blocks.into_iter().map(|(b, m)| (b << 40 | b, m)).collect(),
        })
}

/// Journal image after writing `txs` from `start`; the last `uncommitted` lack commit blocks.
fn build(
    txs: &[TxSpec],
    start: u32,
    seq0: u32,
    uncommitted: usize,
) -> (
    JournalSuperblock,
    Vec<Block>,
    BTreeMap<u64, Block>,
    Vec<Block>,
) {
    let sb = superblock(start, seq0);
    let log = Log::from_superblock(&sb).unwrap();
    let mut journal = vec![[0u8; BLOCK_SIZE_BYTES]; MAXLEN as usize];
    let mut at = LogPosition {
        sequence: seq0,
        journal_block: start,
    };
    let mut model: BTreeMap<u64, (u32, Block)> = BTreeMap::new();
    let mut revokes: Vec<(u64, u32)> = Vec::new();
    let mut forbidden = Vec::new();
    let committed = txs.len() - uncommitted;
    for (i, tx) in txs.iter().enumerate() {
        let owned: Vec<(u64, Block)> = tx
            .blocks
            .iter()
            .map(|&(b, m)| (b, contents(at.sequence, b, m)))
            .collect();
        let data: Vec<DataBlock> = owned
            .iter()
            .map(|(b, c)| DataBlock {
                fs_block: *b,
                contents: c,
            })
            .collect();
        let l = layout(&log, at, &data, &tx.revoked).unwrap();
        for w in &l.writes {
            journal[w.journal_block as usize] = *w.bytes;
        }
        if i < committed {
            let c = l.commit(u64::from(at.sequence), 0).unwrap();
            journal[c.journal_block as usize] = *c.bytes;
        }
        let next = l.next;
        drop(l);
        drop(data);
        if i < committed {
            for (b, c) in owned {
                model.insert(b, (at.sequence, c));
            }
            for &r in &tx.revoked {
                revokes.push((r, at.sequence));
            }
        } else {
            forbidden.extend(owned.into_iter().map(|(_, c)| c));
        }
        at = next;
    }
    // A revoke record of transaction R hides every copy from transactions <= R.
    for (r, rseq) in revokes {
        if model.get(&r).is_some_and(|(s, _)| *s <= rseq) {
            model.remove(&r);
        }
    }
    let expected = model.into_iter().map(|(b, (_, c))| (b, c)).collect();
    (sb, journal, expected, forbidden)
}

fn total_blocks(txs: &[TxSpec]) -> u64 {
    let f = JournalFormat {
        bit64: true,
        csum: CsumVersion::V3,
        csum_seed: 0,
        uuid: [0; 16],
    };
    txs.iter()
        .map(|t| aios_journal::layout::blocks_needed(&f, t.blocks.len(), t.revoked.len()))
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn layout_then_recovery_round_trips(
        txs in proptest::collection::vec(tx_strategy(), 1..5),
        start in 1u32..MAXLEN,
        seq0 in any::<u32>(),
        uncommitted in 0usize..2,
    ) {
        let uncommitted = uncommitted.min(txs.len() - 1);
        // Everything must fit in the log at once (no checkpointing here).
        prop_assume!(total_blocks(&txs) < u64::from(MAXLEN - 1));
        let (sb, journal, expected, _) = build(&txs, start, seq0, uncommitted);
        let rec = recover(&sb, |i| -> Result<Block, std::io::Error> { Ok(journal[i as usize]) }).unwrap();
        let got: BTreeMap<u64, Block> = rec.writes.iter().map(|(b, c)| (*b, **c)).collect();
        prop_assert!(got == expected, "replayed {:?}, expected {:?}", got.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
        let committed = (txs.len() - uncommitted) as u32;
        prop_assert_eq!(rec.end_sequence, seq0.wrapping_add(committed));
        prop_assert_eq!(rec.next_sequence, seq0.wrapping_add(committed).wrapping_add(1));
        prop_assert!(rec.bad_data_blocks.is_empty());
    }

    #[test]
    fn corruption_never_panics_nor_replays_uncommitted(
        txs in proptest::collection::vec(tx_strategy(), 2..5),
        start in 1u32..MAXLEN,
        flips in proptest::collection::vec((0usize..MAXLEN as usize, 0usize..BLOCK_SIZE_BYTES, any::<u8>()), 1..20),
    ) {
        prop_assume!(total_blocks(&txs) < u64::from(MAXLEN - 1));
        let (sb, mut journal, _, forbidden) = build(&txs, start, 7, 1);
        for (blk, off, x) in flips {
            if blk != 0 {
                journal[blk][off] ^= x | 1;
            }
        }
        let got = recover(&sb, |i| -> Result<Block, std::io::Error> { Ok(journal[i as usize]) });
        if let Ok(rec) = got {
            for (b, c) in &rec.writes {
                prop_assert!(!forbidden.iter().any(|f| f == &**c), "replayed an uncommitted block {b}");
                // Anything replayed is what some committed transaction logged for that block.
                prop_assert_eq!(&c[4..12], &b.to_le_bytes()[..]);
            }
        }
    }
}
