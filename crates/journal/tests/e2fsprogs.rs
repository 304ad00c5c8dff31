//! The journal format and layout against e2fsprogs: the superblock `mke2fs` writes decodes to what
//! `dumpe2fs -h` prints; transactions laid out by `aios_journal::layout` are parsed by
//! `debugfs logdump`, replayed by `e2fsck` byte for byte (revoked blocks and the uncommitted
//! transaction left alone), and give the same blocks as our own recovery.

mod common;

use std::collections::BTreeMap;
use std::fs::File;

use aios_journal::format::features::{incompat, CHECKSUM_TYPE_CRC32C};
use aios_journal::format::header::JBD2_MAGIC;
use aios_journal::format::superblock::JournalSuperblock;
use aios_journal::format::Block;
use aios_journal::layout::{layout, DataBlock, Log, LogPosition};
use aios_journal::recovery::{recover, LogEnd};
use common::*;

#[test]
fn superblock_matches_dumpe2fs_and_logdump() {
    if !have_e2fsprogs("superblock_matches_dumpe2fs_and_logdump") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for size in [64u64, 300] {
        let image = mkfs(dir.path(), &format!("sb{size}.img"), size, None);
        let jmap = journal_map(&image);
        let (jstart, jlen) = (jmap[0], jmap.len() as u32);
        let file = File::open(&image).unwrap();
        let sb = JournalSuperblock::decode(&read_block(&file, jstart)).unwrap();
        let dump = stdout(&run("dumpe2fs", &["-h", &image.to_string_lossy()]));
        assert_eq!(sb.block_size_bytes, 4096);
        assert_eq!(sb.maxlen_blocks, jlen);
        assert_eq!(
            sb.maxlen_blocks.to_string(),
            field(&dump, "Total journal blocks").unwrap()
        );
        let seq = field(&dump, "Journal sequence").unwrap();
        assert_eq!(format!("{:#010x}", sb.sequence), seq);
        assert_eq!(
            sb.start_block.to_string(),
            field(&dump, "Journal start").unwrap()
        );
        let feats = field(&dump, "Journal features").unwrap();
        let ours = sb.features.names();
        assert_eq!(if ours.is_empty() { "(none)" } else { &ours }, feats);
        assert_eq!(sb.first_block, 1);
        assert!(!sb.needs_recovery());
        let logdump = debugfs(&image, "logdump");
        assert!(
            logdump.contains(&format!(
                "Journal starts at block {}, transaction {}",
                sb.start_block, sb.sequence
            )),
            "{logdump}"
        );
        // Encoding what we decoded gives the same bytes.
        let mut copy = sb.clone();
        assert_eq!(
            &copy.encode().unwrap()[..],
            &read_block(&file, jstart)[..1024]
        );
    }
}

/// What a transaction does, for the expected final image.
struct Tx {
    blocks: Vec<(u64, Block)>,
    revoked: Vec<u64>,
    committed: bool,
}

#[test]
fn e2fsck_replays_our_transactions() {
    if !have_e2fsprogs("e2fsck_replays_our_transactions") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("big"), pattern(99, 700 * 4096)).unwrap();
    let image = mkfs(dir.path(), "replay.img", 64, Some(&src));
    let big = file_blocks(&image, "/big");
    assert_eq!(big.len(), 700);
    let jmap = journal_map(&image);
    let (jstart, jlen) = (jmap[0], jmap.len() as u32);
    let file = File::options().read(true).write(true).open(&image).unwrap();

    // Turn on what the kernel turns on for a metadata_csum file system.
    let mut sb = JournalSuperblock::decode(&read_block(&file, jstart)).unwrap();
    sb.features.incompat = incompat::REVOKE | incompat::BIT64 | incompat::CSUM_V3;
    sb.checksum_type = CHECKSUM_TYPE_CRC32C;
    let log = Log::from_superblock(&sb).unwrap();

    let mut escaped = block_of(5);
    escaped[..4].copy_from_slice(&JBD2_MAGIC.to_be_bytes());
    let txs = [
        // 600 blocks: three descriptor blocks, wraps the log, one escaped block.
        Tx {
            blocks: (0..600)
                .map(|i| {
                    (
                        big[i],
                        if i == 5 {
                            escaped
                        } else {
                            block_of(1000 + i as u64)
                        },
                    )
                })
                .collect(),
            revoked: vec![],
            committed: true,
        },
        // Revokes two blocks the first transaction logged.
        Tx {
            blocks: (600..650)
                .map(|i| (big[i], block_of(2000 + i as u64)))
                .collect(),
            revoked: vec![big[10], big[11]],
            committed: true,
        },
        // Logs a block again.
        Tx {
            blocks: vec![(big[0], block_of(3000))],
            revoked: vec![],
            committed: true,
        },
        // Never committed: must not reach the file system.
        Tx {
            blocks: (650..660)
                .map(|i| (big[i], block_of(4000 + i as u64)))
                .collect(),
            revoked: vec![],
            committed: false,
        },
    ];
    let first_seq = 0x1234;
    let start = sb.maxlen_blocks - 300;
    let mut at = LogPosition {
        sequence: first_seq,
        journal_block: start,
    };
    let mut expected: BTreeMap<u64, Block> = BTreeMap::new();
    for tx in &txs {
        let data: Vec<DataBlock> = tx
            .blocks
            .iter()
            .map(|(b, c)| DataBlock {
                fs_block: *b,
                contents: c,
            })
            .collect();
        let l = layout(&log, at, &data, &tx.revoked).unwrap();
        for w in &l.writes {
            assert!(w.journal_block < jlen);
            write_at(&file, jmap[w.journal_block as usize], &w.bytes[..]);
        }
        if tx.committed {
            let c = l.commit(1_700_000_000 + u64::from(at.sequence), 0).unwrap();
            write_at(&file, jmap[c.journal_block as usize], &c.bytes[..]);
            for (b, c) in &tx.blocks {
                expected.insert(*b, *c);
            }
        }
        at = l.next;
    }
    // Revoke records apply to their own and earlier transactions.
    expected.remove(&big[10]);
    expected.remove(&big[11]);
    sb.start_block = start;
    sb.sequence = first_seq;
    let raw = sb.encode().unwrap();
    write_at(&file, jstart, &raw);
    set_needs_recovery(&image, true);

    // debugfs parses our journal.
    let logdump = debugfs(&image, "logdump");
    for seq in first_seq..first_seq + 3 {
        let commit = format!("Found expected sequence {seq}, type 2 (commit block)");
        assert!(logdump.contains(&commit), "{commit} missing in\n{logdump}");
    }
    assert_eq!(
        logdump.matches("type 1 (descriptor block)").count(),
        3 + 1 + 1 + 1
    );
    assert!(logdump.contains("type 5 (revoke table)"), "{logdump}");
    assert!(
        !logdump.contains(&format!("sequence {}, type 2", first_seq + 3)),
        "{logdump}"
    );

    // Our recovery.
    let rec = recover(&sb, |i| -> std::io::Result<Block> {
        Ok(read_block(&file, jmap[i as usize]))
    })
    .unwrap();
    assert_eq!(rec.end_sequence, first_seq + 3);
    assert_eq!(rec.next_sequence, first_seq + 4);
    assert!(matches!(rec.end, LogEnd::NoMagic { .. }), "{:?}", rec.end);
    assert_eq!(rec.revoke_hits, 2);
    assert!(rec.bad_data_blocks.is_empty());
    let ours: BTreeMap<u64, Block> = rec.writes.iter().map(|(b, c)| (*b, **c)).collect();
    assert!(
        ours == expected,
        "our recovery differs from the expected blocks"
    );

    // e2fsck replays the same.
    let originals: Vec<Block> = big.iter().map(|&b| read_block(&file, b)).collect();
    let out = run(
        "e2fsck",
        &["-fy", "-E", "journal_only", &image.to_string_lossy()],
    );
    assert!(out.status.code().unwrap_or(8) < 4, "e2fsck -fy: {out:?}");
    for (i, &b) in big.iter().enumerate() {
        let now = read_block(&file, b);
        match expected.get(&b) {
            Some(want) => assert!(now == *want, "block {i} ({b}) not replayed as logged"),
            None => assert!(
                now == originals[i],
                "block {i} ({b}) changed but was not to be replayed"
            ),
        }
    }
    let check = run("e2fsck", &["-fn", &image.to_string_lossy()]);
    assert!(check.status.success(), "e2fsck -fn after replay: {check:?}");
    let after = JournalSuperblock::decode(&read_block(&file, jstart)).unwrap();
    assert!(!after.needs_recovery());
}
