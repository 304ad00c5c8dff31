//! Transaction layout: which bytes go to which journal blocks for one transaction.
//!
//! # Role
//! Given where the log's head is ([`LogPosition`]: the next sequence and journal block) and a
//! transaction (file system blocks with their 4 KiB contents, and revoked block numbers),
//! [`layout`] returns the journal writes in log order: for every run of up to
//! [`tags_per_descriptor`] blocks a descriptor block followed by the data blocks, then the
//! revoke blocks; and where the commit block goes. The commit block itself is built by
//! [`Layout::commit`], separately, so the AIOS fsync can build it while the other blocks are in
//! flight, and write it only after they completed and were flushed.
//!
//! # Invariants
//! - Positions wrap in the circular log `[s_first, s_maxlen)`; the next transaction starts right
//!   after the commit block with the next sequence ([`Layout::next`]).
//! - A data block whose first 4 bytes are the jbd2 magic is logged with them zeroed and its tag
//!   marked `ESCAPE`; tag checksums (csum v2/v3) cover the block as logged, as the kernel's.
//! - Unescaped data blocks are borrowed, not copied.
//!
//! # Assumptions (the caller's)
//! - The log has room: this module only refuses a transaction larger than the whole log; keeping
//!   the head from overrunning the tail (checkpointing) is the journal's job.
//! - A block is both logged and revoked in one transaction never: that is refused, since a revoke
//!   record of transaction T also suppresses T's own copy at recovery.

use std::borrow::Cow;

use crate::error::{JournalError, Location, Result};
use crate::format::commit::CommitBlock;
use crate::format::descriptor::{tag_flags, tags_per_descriptor, Descriptor, Tag};
use crate::format::features::JournalFormat;
use crate::format::header::starts_with_magic;
use crate::format::revoke::{records_per_revoke_block, RevokeBlock};
use crate::format::superblock::JournalSuperblock;
use crate::format::{csum::data_block_csum, Block};

/// The geometry and format of one journal's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Log {
    /// Block layout.
    pub format: JournalFormat,
    /// `s_first`: first block of the circular log.
    pub first_block: u32,
    /// `s_maxlen`: one past the last block of the log.
    pub maxlen_blocks: u32,
}

impl Log {
    /// The log described by a decoded superblock.
    pub fn from_superblock(sb: &JournalSuperblock) -> Result<Self> {
        Ok(Log {
            format: sb.format()?,
            first_block: sb.first_block,
            maxlen_blocks: sb.maxlen_blocks,
        })
    }

    /// Blocks in the circular log.
    pub fn log_blocks(&self) -> u32 {
        self.maxlen_blocks.saturating_sub(self.first_block)
    }

    /// The block after `journal_block`, wrapping from `s_maxlen - 1` to `s_first`.
    pub fn next_block(&self, journal_block: u32) -> u32 {
        self.advance(journal_block, 1)
    }

    /// `journal_block` moved `by` blocks forward, wrapping (the kernel's `wrap()` applied as often
    /// as needed).
    pub fn advance(&self, journal_block: u32, by: u64) -> u32 {
        let len = u64::from(self.log_blocks().max(1));
        // Each term reduced first: `by` may be anything (found by the journal_superblock fuzz
        // target with `by = u64::MAX`), and the sum of two values below 2^32 cannot overflow.
        let rel = u64::from(journal_block.saturating_sub(self.first_block)) % len + by % len;
        self.first_block + (rel % len) as u32
    }
}

/// Where the next transaction begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPosition {
    /// Its sequence (transaction ID).
    pub sequence: u32,
    /// The journal block its first block goes to.
    pub journal_block: u32,
}

/// One file system block of a transaction.
#[derive(Debug, Clone, Copy)]
pub struct DataBlock<'a> {
    /// Home location.
    pub fs_block: u64,
    /// New contents.
    pub contents: &'a Block,
}

/// What a journal write holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// A descriptor block.
    Descriptor,
    /// A logged copy of a file system block.
    Data {
        /// Its home location.
        fs_block: u64,
        /// Logged with its magic zeroed.
        escaped: bool,
    },
    /// A revoke block.
    Revoke,
    /// The commit block.
    Commit,
}

/// One block to write into the journal.
#[derive(Debug, Clone)]
pub struct JournalWrite<'a> {
    /// Journal block index (0 is the superblock).
    pub journal_block: u32,
    /// What it is.
    pub kind: WriteKind,
    /// The bytes.
    pub bytes: Cow<'a, Block>,
}

/// A transaction laid out in the log.
#[derive(Debug, Clone)]
pub struct Layout<'a> {
    /// The transaction's sequence.
    pub sequence: u32,
    /// Every block but the commit block, in log order.
    pub writes: Vec<JournalWrite<'a>>,
    /// Where the commit block goes.
    pub commit_block: u32,
    /// Where the next transaction starts.
    pub next: LogPosition,
    format: JournalFormat,
}

impl Layout<'_> {
    /// The commit block, stamped with the commit time.
    pub fn commit(&self, commit_sec: u64, commit_nsec: u32) -> Result<JournalWrite<'static>> {
        let bytes = CommitBlock::build(
            &self.format,
            self.sequence,
            commit_sec,
            commit_nsec,
            self.commit_block,
        )?;
        Ok(JournalWrite {
            journal_block: self.commit_block,
            kind: WriteKind::Commit,
            bytes: Cow::Owned(bytes),
        })
    }

    /// Journal blocks the transaction takes, commit block included.
    pub fn len_blocks(&self) -> u64 {
        self.writes.len() as u64 + 1
    }
}

/// Journal blocks a transaction of `data_blocks` blocks and `revoked` records takes, commit
/// block included.
pub fn blocks_needed(format: &JournalFormat, data_blocks: usize, revoked: usize) -> u64 {
    let per_desc = tags_per_descriptor(format) as u64;
    let per_revoke = records_per_revoke_block(format) as u64;
    let (d, r) = (data_blocks as u64, revoked as u64);
    d + d.div_ceil(per_desc) + r.div_ceil(per_revoke) + 1
}

fn invalid(sequence: u32, fs_block: u64, reason: &'static str) -> JournalError {
    JournalError::InvalidTransaction {
        sequence,
        fs_block,
        reason,
    }
}

/// Lay out one transaction starting at `at`. See the module documentation.
pub fn layout<'a>(
    log: &Log,
    at: LogPosition,
    blocks: &[DataBlock<'a>],
    revoked: &[u64],
) -> Result<Layout<'a>> {
    let fmt = log.format;
    let seq = at.sequence;
    if at.journal_block < log.first_block || at.journal_block >= log.maxlen_blocks {
        return Err(JournalError::FieldOutOfRange {
            at: Location::Block {
                journal_block: at.journal_block,
            },
            field: "log position",
            value: at.journal_block.into(),
            reason: "outside the log [s_first, s_maxlen)",
        });
    }
    let needed = blocks_needed(&fmt, blocks.len(), revoked.len());
    if needed > u64::from(log.log_blocks()) {
        return Err(JournalError::TransactionTooLarge {
            sequence: seq,
            needed_blocks: needed,
            log_blocks: log.log_blocks().into(),
        });
    }
    let mut logged = std::collections::HashSet::with_capacity(blocks.len());
    for b in blocks {
        if !fmt.bit64 && b.fs_block > u64::from(u32::MAX) {
            return Err(invalid(seq, b.fs_block, "block above 2^32 without 64bit"));
        }
        if !logged.insert(b.fs_block) {
            return Err(invalid(seq, b.fs_block, "block logged twice"));
        }
    }
    if let Some(&r) = revoked.iter().find(|r| logged.contains(r)) {
        return Err(invalid(seq, r, "block both logged and revoked"));
    }

    let mut writes = Vec::with_capacity(needed as usize);
    let mut pos = at.journal_block;
    for chunk in blocks.chunks(tags_per_descriptor(&fmt).max(1)) {
        let desc_block = pos;
        pos = log.next_block(pos);
        let mut tags = Vec::with_capacity(chunk.len());
        let mut data = Vec::with_capacity(chunk.len());
        for b in chunk {
            let escaped = starts_with_magic(b.contents);
            let bytes: Cow<'a, Block> = if escaped {
                let mut copy = *b.contents;
                if let Some(magic) = copy.get_mut(..4) {
                    magic.fill(0);
                }
                Cow::Owned(copy)
            } else {
                Cow::Borrowed(b.contents)
            };
            let checksum = if fmt.has_csum() {
                let c = data_block_csum(fmt.csum_seed, seq, bytes.as_slice());
                match fmt.csum {
                    crate::format::features::CsumVersion::V2 => c & 0xFFFF,
                    _ => c,
                }
            } else {
                0
            };
            tags.push(Tag {
                fs_block: b.fs_block,
                flags: if escaped { tag_flags::ESCAPE } else { 0 },
                checksum,
            });
            data.push(JournalWrite {
                journal_block: pos,
                kind: WriteKind::Data {
                    fs_block: b.fs_block,
                    escaped,
                },
                bytes,
            });
            pos = log.next_block(pos);
        }
        let desc = Descriptor {
            sequence: seq,
            tags,
        }
        .encode(&fmt, desc_block)?;
        writes.push(JournalWrite {
            journal_block: desc_block,
            kind: WriteKind::Descriptor,
            bytes: Cow::Owned(desc),
        });
        writes.extend(data);
    }
    for chunk in revoked.chunks(records_per_revoke_block(&fmt).max(1)) {
        let block = RevokeBlock {
            sequence: seq,
            blocks: chunk.to_vec(),
        }
        .encode(&fmt, pos)?;
        writes.push(JournalWrite {
            journal_block: pos,
            kind: WriteKind::Revoke,
            bytes: Cow::Owned(block),
        });
        pos = log.next_block(pos);
    }
    let commit_block = pos;
    Ok(Layout {
        sequence: seq,
        writes,
        commit_block,
        next: LogPosition {
            sequence: seq.wrapping_add(1),
            journal_block: log.next_block(commit_block),
        },
        format: fmt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::features::CsumVersion;
    use crate::format::header::JBD2_MAGIC;

    fn log() -> Log {
        Log {
            format: JournalFormat {
                bit64: true,
                csum: CsumVersion::V3,
                csum_seed: 1,
                uuid: [7; 16],
            },
            first_block: 1,
            maxlen_blocks: 1024,
        }
    }

    /// Found by the `journal_superblock` fuzz target: `advance` by `u64::MAX` overflowed.
    #[test]
    fn advance_by_any_distance_wraps_without_overflow() {
        let log = log();
        assert_eq!(log.advance(1023, 1), 1);
        assert_eq!(log.advance(5, 1023 * 3), 5);
        let by = u64::MAX;
        assert_eq!(
            log.advance(1023, by),
            1 + ((1022 + by % 1023) % 1023) as u32
        );
        assert_eq!(log.advance(u32::MAX, by), log.advance(u32::MAX, by % 1023));
    }

    #[test]
    fn wraps_and_escapes() {
        let log = log();
        let mut magic = [5u8; 4096];
        magic[..4].copy_from_slice(&JBD2_MAGIC.to_be_bytes());
        let plain = [9u8; 4096];
        let blocks: Vec<DataBlock> = (0..300u64)
            .map(|i| DataBlock {
                fs_block: 1000 + i,
                contents: if i == 7 { &magic } else { &plain },
            })
            .collect();
        let at = LogPosition {
            sequence: 10,
            journal_block: 1000,
        };
        let l = layout(&log, at, &blocks, &[5, 6]).unwrap();
        // 2 descriptors + 300 data + 1 revoke.
        assert_eq!(l.writes.len(), 303);
        assert_eq!(l.len_blocks(), blocks_needed(&log.format, 300, 2));
        assert_eq!(l.writes[0].journal_block, 1000);
        assert_eq!(l.writes[23].journal_block, 1023);
        assert_eq!(l.writes[24].journal_block, 1);
        assert_eq!(l.writes[255].kind, WriteKind::Descriptor);
        assert_eq!(l.writes[302].kind, WriteKind::Revoke);
        assert_eq!(l.commit_block, 1 + 303 - 24);
        assert_eq!(
            l.next,
            LogPosition {
                sequence: 11,
                journal_block: l.commit_block + 1
            }
        );
        let esc = &l.writes[8];
        assert_eq!(
            esc.kind,
            WriteKind::Data {
                fs_block: 1007,
                escaped: true
            }
        );
        assert_eq!(&esc.bytes[..4], &[0, 0, 0, 0]);
        assert!(matches!(l.writes[9].bytes, Cow::Borrowed(_)));
        let commit = l.commit(1, 2).unwrap();
        assert_eq!(commit.journal_block, l.commit_block);
    }

    #[test]
    fn refuses_bad_transactions() {
        let log = log();
        let b = [0u8; 4096];
        let at = LogPosition {
            sequence: 1,
            journal_block: 1,
        };
        let twice = [
            DataBlock {
                fs_block: 3,
                contents: &b,
            },
            DataBlock {
                fs_block: 3,
                contents: &b,
            },
        ];
        assert!(matches!(
            layout(&log, at, &twice, &[]),
            Err(JournalError::InvalidTransaction { fs_block: 3, .. })
        ));
        assert!(layout(&log, at, &twice[..1], &[3]).is_err());
        let many: Vec<DataBlock> = (0..1100)
            .map(|i| DataBlock {
                fs_block: i,
                contents: &b,
            })
            .collect();
        assert!(matches!(
            layout(&log, at, &many, &[]),
            Err(JournalError::TransactionTooLarge { .. })
        ));
        let bad_at = LogPosition {
            sequence: 1,
            journal_block: 0,
        };
        assert!(layout(&log, bad_at, &[], &[]).is_err());
        let empty = layout(&log, at, &[], &[]).unwrap();
        assert!(empty.writes.is_empty());
        assert_eq!(empty.commit_block, 1);
    }
}
