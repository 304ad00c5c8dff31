//! Journal seeds: small logs (32 blocks of 4 KiB) laid out with `aios_journal::layout` in every
//! supported format, and the e2fsprogs journal test cases rebuilt on them. e2fsprogs ships its
//! cases as compressed images (`tests/j_corrupt_*/image.gz`); these are the same faults made
//! with our encoders, each [`Case`] naming the case it reproduces and the outcome recovery must
//! give (the kernel's `do_one_pass`, which e2fsck's recovery mirrors):
//!
//! | case | fault | outcome |
//! | --- | --- | --- |
//! | `j_corrupt_commit_csum` | commit block of the second transaction fails its checksum | the first transaction replays, the log ends there ([`Expect::BadCommit`]) |
//! | `j_corrupt_commit_tid` | commit block of the second transaction carries another sequence | the first transaction replays ([`Expect::Replays`]) |
//! | `j_corrupt_descr_csum` | descriptor of the second transaction fails its tail checksum | recovery fails, nothing replays ([`Expect::Fails`]) |
//! | `j_corrupt_descr_tid` | descriptor of the second transaction carries another sequence | the first transaction replays |
//! | `j_corrupt_revoke_csum` | revoke block fails its tail checksum | recovery fails |
//! | `j_corrupt_revoke_rcount` | revoke `r_count` past the block (tail resealed) | recovery fails (kernel `-EINVAL`) |
//! | `j_corrupt_journal_block` | a logged data block differs from its tag checksum | all replays but that block ([`Expect::BadData`]) |
//! | `j_corrupt_sb_csum`, `j_corrupt_sb_magic` | the journal superblock's checksum / magic | the superblock is refused ([`Expect::BadSuperblock`]) |

use aios_journal::format::descriptor::set_block_tail;
use aios_journal::format::features::{incompat, CsumVersion, CHECKSUM_TYPE_CRC32C};
use aios_journal::format::header::{blocktype, Header, JBD2_MAGIC};
use aios_journal::format::superblock::{JournalSuperblock, SUPERBLOCK_SIZE_BYTES};
use aios_journal::format::{Block, BLOCK_SIZE_BYTES};
use aios_journal::layout::{layout, DataBlock, Log, LogPosition, WriteKind};
use aios_journal::Location;

use crate::targets::{journal_format, JOURNAL_UUID};

/// Journal blocks of every seed log (superblock included).
pub const LOG_BLOCKS: u32 = 32;
/// The first transaction's sequence.
pub const FIRST_SEQUENCE: u32 = 0x51;
/// Where the first transaction starts: late, so the second one wraps the log.
const START_BLOCK: u32 = 20;

/// Journal block kinds, for the block-target corpora.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Descriptor blocks.
    Descriptor,
    /// Commit blocks.
    Commit,
    /// Revoke blocks.
    Revoke,
}

/// What recovery must make of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// `Ok`, replaying this many transactions, no bad data block.
    Replays(u32),
    /// `Ok`, this many transactions, the log ending at a commit block that fails its checksum.
    BadCommit(u32),
    /// `Ok`, every transaction, one logged block skipped for its tag checksum.
    BadData(u32),
    /// Recovery returns an error.
    Fails,
    /// The journal superblock does not decode.
    BadSuperblock,
}

/// One seed journal.
#[derive(Debug, Clone)]
pub struct Case {
    /// `clean/<format>` or the e2fsprogs case name.
    pub name: String,
    /// The first byte the block targets take ([`journal_format`]).
    pub format: u8,
    /// The log: [`LOG_BLOCKS`] blocks, block 0 the journal superblock.
    pub log: Vec<u8>,
    /// Journal block index and kind of every descriptor, revoke and commit block.
    pub blocks: Vec<(u32, Kind)>,
    /// What recovery must give.
    pub expect: Expect,
}

impl Case {
    fn block_mut(&mut self, journal_block: u32) -> &mut [u8] {
        let at = journal_block as usize * BLOCK_SIZE_BYTES;
        &mut self.log[at..at + BLOCK_SIZE_BYTES]
    }

    /// The `n`th block of `kind`.
    fn nth(&self, kind: Kind, n: usize) -> u32 {
        self.blocks
            .iter()
            .filter(|(_, k)| *k == kind)
            .nth(n)
            .map(|(b, _)| *b)
            .expect("seed journal block")
    }

    /// Rewrite the tail checksum of the descriptor or revoke block at `journal_block`.
    fn reseal_tail(&mut self, journal_block: u32) {
        let fmt = journal_format(self.format);
        let mut b: Block = self.block_mut(journal_block).try_into().unwrap();
        set_block_tail(&fmt, &mut b, Location::Block { journal_block }).unwrap();
        self.block_mut(journal_block).copy_from_slice(&b);
    }
}

fn superblock(format: u8) -> JournalSuperblock {
    let mut raw = [0u8; SUPERBLOCK_SIZE_BYTES];
    Header {
        blocktype: blocktype::SUPERBLOCK_V2,
        sequence: 0,
    }
    .encode(&mut raw, Location::Superblock)
    .unwrap();
    raw[0x0C..0x10].copy_from_slice(&4096u32.to_be_bytes());
    raw[0x10..0x14].copy_from_slice(&LOG_BLOCKS.to_be_bytes());
    raw[0x14..0x18].copy_from_slice(&1u32.to_be_bytes());
    let mut sb = JournalSuperblock::decode(&raw).unwrap();
    let fmt = journal_format(format);
    sb.features.incompat = incompat::REVOKE;
    if fmt.bit64 {
        sb.features.incompat |= incompat::BIT64;
    }
    match fmt.csum {
        CsumVersion::V3 => sb.features.incompat |= incompat::CSUM_V3,
        CsumVersion::V2 => sb.features.incompat |= incompat::CSUM_V2,
        CsumVersion::None => {}
    }
    if fmt.has_csum() {
        sb.checksum_type = CHECKSUM_TYPE_CRC32C;
    }
    sb.uuid = JOURNAL_UUID;
    sb.start_block = START_BLOCK;
    sb.sequence = FIRST_SEQUENCE;
    sb
}

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

/// A clean committed log in format `format`: transaction 1 logs blocks 100..104 (one escaped),
/// transaction 2 logs 104..110 and revokes 101 (and wraps the log), transaction 3 logs 100
/// again and revokes 200..205; a fourth, uncommitted, logs 300.
pub fn clean(format: u8) -> Case {
    let mut sb = superblock(format);
    let log = Log::from_superblock(&sb).unwrap();
    let mut case = Case {
        name: format!("clean/{format}"),
        format,
        log: vec![0u8; LOG_BLOCKS as usize * BLOCK_SIZE_BYTES],
        blocks: Vec::new(),
        expect: Expect::Replays(3),
    };
    case.log[..SUPERBLOCK_SIZE_BYTES].copy_from_slice(&sb.encode().unwrap());
    let txs: [(Vec<u64>, Vec<u64>, bool); 4] = [
        ((100..104).collect(), vec![], true),
        ((104..110).collect(), vec![101], true),
        (vec![100], (200..205).collect(), true),
        (vec![300], vec![], false),
    ];
    let mut at = LogPosition {
        sequence: FIRST_SEQUENCE,
        journal_block: START_BLOCK,
    };
    for (blocks, revoked, committed) in &txs {
        let bytes: Vec<Block> = blocks
            .iter()
            .map(|&b| contents(at.sequence, b, b == 102))
            .collect();
        let data: Vec<DataBlock> = blocks
            .iter()
            .zip(&bytes)
            .map(|(&fs_block, contents)| DataBlock { fs_block, contents })
            .collect();
        let l = layout(&log, at, &data, revoked).unwrap();
        let mut writes = l.writes.clone();
        if *committed {
            writes.push(l.commit(1_700_000_000 + u64::from(at.sequence), 0).unwrap());
        }
        for w in writes {
            case.block_mut(w.journal_block)
                .copy_from_slice(&w.bytes[..]);
            let kind = match w.kind {
                WriteKind::Descriptor => Some(Kind::Descriptor),
                WriteKind::Revoke => Some(Kind::Revoke),
                WriteKind::Commit => Some(Kind::Commit),
                WriteKind::Data { .. } => None,
            };
            if let Some(kind) = kind {
                case.blocks.push((w.journal_block, kind));
            }
        }
        at = l.next;
    }
    case
}

/// Every seed journal: the clean log in each of the six formats, and the e2fsprogs cases (see
/// the module documentation) in csum v3 / 64bit (format 0) and, for the checksum cases, csum v2
/// (format 2).
pub fn cases() -> Vec<Case> {
    let mut out: Vec<Case> = (0..6).map(clean).collect();
    for format in [0u8, 2] {
        out.extend(e2fsprogs_cases(format));
    }
    out
}

fn e2fsprogs_cases(format: u8) -> Vec<Case> {
    let variant = |name: &str, expect: Expect, fault: &dyn Fn(&mut Case)| {
        let mut c = clean(format);
        c.name = format!("{name}/{format}");
        c.expect = expect;
        fault(&mut c);
        c
    };
    vec![
        variant("j_corrupt_commit_csum", Expect::BadCommit(1), &|c| {
            let b = c.nth(Kind::Commit, 1);
            c.block_mut(b)[0x10] ^= 0x01; // h_chksum[0]
        }),
        variant("j_corrupt_commit_tid", Expect::Replays(1), &|c| {
            let b = c.nth(Kind::Commit, 1);
            c.block_mut(b)[0x0B] ^= 0x40; // h_sequence
        }),
        variant("j_corrupt_descr_csum", Expect::Fails, &|c| {
            let b = c.nth(Kind::Descriptor, 1);
            c.block_mut(b)[BLOCK_SIZE_BYTES - 1] ^= 0x01; // the tail checksum
        }),
        variant("j_corrupt_descr_tid", Expect::Replays(1), &|c| {
            let b = c.nth(Kind::Descriptor, 1);
            c.block_mut(b)[0x0B] ^= 0x40;
        }),
        variant("j_corrupt_revoke_csum", Expect::Fails, &|c| {
            let b = c.nth(Kind::Revoke, 0);
            c.block_mut(b)[BLOCK_SIZE_BYTES - 2] ^= 0x80;
        }),
        variant("j_corrupt_revoke_rcount", Expect::Fails, &|c| {
            let b = c.nth(Kind::Revoke, 0);
            c.block_mut(b)[0x0C..0x10].copy_from_slice(&0x0001_0000u32.to_be_bytes());
            c.reseal_tail(b);
        }),
        variant("j_corrupt_journal_block", Expect::BadData(3), &|c| {
            // The first data block of transaction 1 follows its descriptor.
            let b = c.nth(Kind::Descriptor, 0) + 1;
            c.block_mut(b)[100] ^= 0x01;
        }),
        variant("j_corrupt_sb_csum", Expect::BadSuperblock, &|c| {
            c.log[0xFC] ^= 0x01;
        }),
        variant("j_corrupt_sb_magic", Expect::BadSuperblock, &|c| {
            c.log[0x00] ^= 0x01;
        }),
    ]
}

/// `[format][block]` seeds of every block of `kind` in `cases`.
pub fn blocks_of_kind(cases: &[Case], kind: Kind) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for c in cases {
        for (b, k) in &c.blocks {
            if *k == kind {
                let at = *b as usize * BLOCK_SIZE_BYTES;
                let mut seed = crate::targets::prefix::format(c.format);
                seed.extend_from_slice(&c.log[at..at + BLOCK_SIZE_BYTES]);
                out.push(seed);
            }
        }
    }
    out
}
