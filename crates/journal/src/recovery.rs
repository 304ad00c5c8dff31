//! Journal recovery: the kernel's three passes (fs/jbd2/recovery.c `do_one_pass`, mirrored by
//! e2fsprogs' e2fsck/recovery.c) over a block-reading callback, without I/O of its own.
//!
//! # Passes
//! 1. **SCAN** walks the log from `s_start`/`s_sequence`, transaction by transaction, and finds
//!    `end_sequence`, the first transaction not to replay. The log ends at a block without the
//!    jbd2 magic, with another sequence, or of an unknown type. With csum v2/v3 it also checks
//!    descriptor and revoke tails and commit checksums:
//!    - a commit block whose checksum fails ends the log *at* that transaction (it is not
//!      replayed), silently when its commit time is older than the previous commit's (stale
//!      block), else recorded as [`LogEnd::BadCommitChecksum`] (the kernel's `j_failed_commit`);
//!    - a descriptor or revoke block whose tail fails makes the kernel look at its transaction's
//!      commit block: older commit time than the previous commit → stale, the log ends there
//!      ([`LogEnd::StaleTransaction`]); otherwise recovery fails with
//!      [`JournalError::CorruptTransaction`] (kernel `-EFSBADCRC`, nothing replayed).
//! 2. **REVOKE** reads the revoke records of transactions `[s_sequence, end_sequence)`; a record
//!    of transaction R revokes its block for every transaction T <= R.
//! 3. **REPLAY** collects, in log order, every logged block of those transactions that is not
//!    revoked, unescaping `ESCAPE` blocks. A block whose tag checksum (csum v2/v3) fails is
//!    skipped and listed in [`Recovered::bad_data_blocks`]; the kernel does the same, replays the
//!    rest, and then fails the mount with `-EFSBADCRC` (e2fsck marks the file system with errors
//!    and goes on checking): deciding that is the caller's.
//!
//! # Promises
//! - Nothing of a transaction at or after `end_sequence` is returned, whatever the journal holds.
//! - [`Recovered::writes`] holds each file system block once, with its final contents, in the
//!   order of its first replay: writing them home in any order gives the state the kernel's
//!   replay gives.
//! - Never panics; a log that runs longer than the journal without ending is
//!   [`JournalError::LogOverrun`], a revoke block with an impossible `r_count` is an error (kernel
//!   `-EINVAL`), a failed read is [`JournalError::Read`].
//! - After recovery the next transaction should use [`Recovered::next_sequence`]
//!   (`end_sequence + 1`, as `jbd2_journal_recover` does) and the journal be marked clean.
//!
//! # Not handled
//! `async_commit` and `fast_commit` journals are refused when the superblock is decoded;
//! block numbers are not checked against the file system size (the caller's).

use std::collections::HashMap;

use crate::error::{JournalError, Location, Result};
use crate::format::commit::{verify_commit_csum, CommitBlock};
use crate::format::descriptor::{verify_block_tail, Descriptor};
use crate::format::header::{blocktype, Header, JBD2_MAGIC};
use crate::format::revoke::RevokeBlock;
use crate::format::superblock::JournalSuperblock;
use crate::format::Block;
use crate::layout::Log;

/// Why the scan stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogEnd {
    /// `s_start == 0`: the journal was clean, nothing to recover.
    Clean,
    /// A block without the jbd2 magic where a descriptor, revoke or commit block was expected.
    NoMagic {
        /// Journal block index.
        journal_block: u32,
    },
    /// A metadata block of another transaction.
    SequenceMismatch {
        /// Journal block index.
        journal_block: u32,
        /// Its `h_sequence`.
        found: u32,
    },
    /// A block type that cannot appear in the log.
    UnknownBlockType {
        /// Journal block index.
        journal_block: u32,
        /// Its `h_blocktype`.
        blocktype: u32,
    },
    /// The commit block of `sequence` failed its checksum: that transaction and the rest of the
    /// log are not replayed.
    BadCommitChecksum {
        /// The transaction.
        sequence: u32,
        /// Journal block of its commit block.
        journal_block: u32,
    },
    /// A transaction with a bad checksum whose commit time is older than the previous commit's:
    /// stale blocks from an earlier use of the log, the end of the valid log.
    StaleTransaction {
        /// The transaction.
        sequence: u32,
        /// Journal block of its commit block.
        journal_block: u32,
    },
}

/// A logged block skipped because its tag checksum failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadDataBlock {
    /// Transaction.
    pub sequence: u32,
    /// Home location it would have been written to.
    pub fs_block: u64,
    /// Where it lies in the journal.
    pub journal_block: u32,
}

/// The outcome of recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Blocks to write home: each once, final contents, in order of first replay.
    pub writes: Vec<(u64, Box<Block>)>,
    /// `s_sequence`: the first transaction looked at.
    pub start_sequence: u32,
    /// The first transaction not replayed (the kernel's `info->end_transaction`).
    pub end_sequence: u32,
    /// The sequence the journal restarts at, `end_sequence + 1`.
    pub next_sequence: u32,
    /// Why the scan stopped.
    pub end: LogEnd,
    /// Logged blocks replayed (a block logged by several transactions counts each time).
    pub replayed_blocks: u64,
    /// Revoke records read.
    pub revoke_records: u64,
    /// Logged blocks skipped because a revoke record covered them.
    pub revoke_hits: u64,
    /// Logged blocks skipped because their tag checksum failed.
    pub bad_data_blocks: Vec<BadDataBlock>,
}

impl Recovered {
    /// Transactions replayed.
    pub fn transactions(&self) -> u32 {
        self.end_sequence.wrapping_sub(self.start_sequence)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    Scan,
    Revoke,
    Replay,
}

/// `tid_gt`: sequence `a` is after `b`, modulo 2^32.
fn tid_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// `tid_geq`.
fn tid_geq(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

struct State {
    end_sequence: Option<u32>,
    end: Option<LogEnd>,
    revoked: HashMap<u64, u32>,
    writes: Vec<(u64, Box<Block>)>,
    index: HashMap<u64, usize>,
    replayed_blocks: u64,
    revoke_records: u64,
    revoke_hits: u64,
    bad_data_blocks: Vec<BadDataBlock>,
}

/// Recover the journal described by `sb`, reading journal blocks through `read_block` (logical
/// journal block index -> its 4 KiB). See the module documentation.
pub fn recover<F, E>(sb: &JournalSuperblock, mut read_block: F) -> Result<Recovered>
where
    F: FnMut(u32) -> std::result::Result<Block, E>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if !sb.needs_recovery() {
        return Ok(Recovered {
            writes: Vec::new(),
            start_sequence: sb.sequence,
            end_sequence: sb.sequence,
            next_sequence: sb.sequence.wrapping_add(1),
            end: LogEnd::Clean,
            replayed_blocks: 0,
            revoke_records: 0,
            revoke_hits: 0,
            bad_data_blocks: Vec::new(),
        });
    }
    let log = Log::from_superblock(sb)?;
    let mut st = State {
        end_sequence: None,
        end: None,
        revoked: HashMap::new(),
        writes: Vec::new(),
        index: HashMap::new(),
        replayed_blocks: 0,
        revoke_records: 0,
        revoke_hits: 0,
        bad_data_blocks: Vec::new(),
    };
    let mut read = |journal_block: u32| -> Result<Block> {
        read_block(journal_block).map_err(|e| JournalError::Read {
            journal_block,
            source: e.into(),
        })
    };
    for pass in [Pass::Scan, Pass::Revoke, Pass::Replay] {
        one_pass(sb, &log, pass, &mut st, &mut read)?;
    }
    let end_sequence = st.end_sequence.unwrap_or(sb.sequence);
    Ok(Recovered {
        writes: st.writes,
        start_sequence: sb.sequence,
        end_sequence,
        next_sequence: end_sequence.wrapping_add(1),
        end: st.end.unwrap_or(LogEnd::Clean),
        replayed_blocks: st.replayed_blocks,
        revoke_records: st.revoke_records,
        revoke_hits: st.revoke_hits,
        bad_data_blocks: st.bad_data_blocks,
    })
}

fn one_pass(
    sb: &JournalSuperblock,
    log: &Log,
    pass: Pass,
    st: &mut State,
    read: &mut dyn FnMut(u32) -> Result<Block>,
) -> Result<()> {
    let fmt = log.format;
    let log_blocks = u64::from(log.log_blocks());
    let mut next_id = sb.sequence;
    let mut next_block = sb.start_block;
    let mut walked: u64 = 0;
    let mut need_check_commit_time = false;
    let mut last_commit_time: u64 = 0;
    let mut scan_end: Option<LogEnd> = None;

    loop {
        if pass != Pass::Scan {
            if let Some(end) = st.end_sequence {
                if tid_geq(next_id, end) {
                    break;
                }
            }
        }
        if walked > log_blocks {
            return Err(JournalError::LogOverrun {
                start_block: sb.start_block,
                walked_blocks: walked,
                log_blocks,
            });
        }
        let this_block = next_block;
        let block = read(this_block)?;
        walked += 1;
        next_block = log.next_block(next_block);
        let at = Location::Block {
            journal_block: this_block,
        };
        let header = match Header::decode(&block, at)? {
            Some(h) => h,
            None => {
                scan_end = Some(LogEnd::NoMagic {
                    journal_block: this_block,
                });
                break;
            }
        };
        if header.sequence != next_id {
            scan_end = Some(LogEnd::SequenceMismatch {
                journal_block: this_block,
                found: header.sequence,
            });
            break;
        }
        match header.blocktype {
            blocktype::DESCRIPTOR => {
                let desc_at = Location::Descriptor {
                    journal_block: this_block,
                };
                if let Err(e) = verify_block_tail(&fmt, &block, desc_at) {
                    if pass != Pass::Scan {
                        return Err(e);
                    }
                    need_check_commit_time = true;
                }
                let desc = Descriptor::decode(&fmt, &block, this_block)?;
                if pass != Pass::Replay {
                    let n = desc.tags.len() as u64;
                    next_block = log.advance(next_block, n);
                    walked += n;
                    continue;
                }
                for tag in &desc.tags {
                    let io_block = next_block;
                    next_block = log.next_block(next_block);
                    walked += 1;
                    let mut data = read(io_block)?;
                    if is_revoked(&st.revoked, tag.fs_block, next_id) {
                        st.revoke_hits += 1;
                        continue;
                    }
                    if !tag.csum_matches(&fmt, header.sequence, &data) {
                        st.bad_data_blocks.push(BadDataBlock {
                            sequence: next_id,
                            fs_block: tag.fs_block,
                            journal_block: io_block,
                        });
                        continue;
                    }
                    if tag.escaped() {
                        if let Some(magic) = data.get_mut(..4) {
                            magic.copy_from_slice(&JBD2_MAGIC.to_be_bytes());
                        }
                    }
                    st.replayed_blocks += 1;
                    match st.index.get(&tag.fs_block) {
                        Some(&i) => {
                            if let Some(slot) = st.writes.get_mut(i) {
                                *slot.1 = data;
                            }
                        }
                        None => {
                            st.index.insert(tag.fs_block, st.writes.len());
                            st.writes.push((tag.fs_block, Box::new(data)));
                        }
                    }
                }
            }
            blocktype::COMMIT => {
                let commit = CommitBlock::decode(&block, this_block)?;
                let commit_time = commit.commit_sec;
                let stale = LogEnd::StaleTransaction {
                    sequence: next_id,
                    journal_block: this_block,
                };
                if need_check_commit_time {
                    if commit_time >= last_commit_time {
                        return Err(JournalError::CorruptTransaction {
                            sequence: next_id,
                            journal_block: this_block,
                            reason: "a descriptor or revoke block failed its checksum",
                        });
                    }
                    scan_end = Some(stale);
                    break;
                }
                if pass == Pass::Scan && verify_commit_csum(&fmt, &block, this_block).is_err() {
                    if commit_time < last_commit_time {
                        scan_end = Some(stale);
                        break;
                    }
                    st.end_sequence = Some(next_id);
                    scan_end = Some(LogEnd::BadCommitChecksum {
                        sequence: next_id,
                        journal_block: this_block,
                    });
                    break;
                }
                if pass == Pass::Scan {
                    last_commit_time = commit_time;
                }
                next_id = next_id.wrapping_add(1);
            }
            blocktype::REVOKE => {
                let rev_at = Location::Revoke {
                    journal_block: this_block,
                };
                if pass == Pass::Scan && verify_block_tail(&fmt, &block, rev_at).is_err() {
                    need_check_commit_time = true;
                }
                if pass != Pass::Revoke {
                    continue;
                }
                let records = RevokeBlock::decode(&fmt, &block, this_block)?;
                for b in records.blocks {
                    st.revoke_records += 1;
                    let seq = st.revoked.entry(b).or_insert(next_id);
                    if tid_gt(next_id, *seq) {
                        *seq = next_id;
                    }
                }
            }
            other => {
                scan_end = Some(LogEnd::UnknownBlockType {
                    journal_block: this_block,
                    blocktype: other,
                });
                break;
            }
        }
    }

    match pass {
        Pass::Scan => {
            if st.end_sequence.is_none() {
                st.end_sequence = Some(next_id);
            }
            st.end = scan_end;
        }
        Pass::Revoke | Pass::Replay => {
            let expected = st.end_sequence.unwrap_or(next_id);
            if expected != next_id {
                return Err(JournalError::PassMismatch {
                    pass: if pass == Pass::Revoke {
                        "revoke"
                    } else {
                        "replay"
                    },
                    ended: next_id,
                    expected,
                });
            }
        }
    }
    Ok(())
}

/// `jbd2_journal_test_revoke`: revoked when a record exists from a transaction not before `seq`.
fn is_revoked(revoked: &HashMap<u64, u32>, fs_block: u64, seq: u32) -> bool {
    revoked.get(&fs_block).is_some_and(|&r| !tid_gt(seq, r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tid_comparisons_wrap() {
        assert!(tid_gt(1, u32::MAX));
        assert!(!tid_gt(5, 5));
        assert!(tid_geq(5, 5));
        let mut m = HashMap::new();
        m.insert(9u64, 10u32);
        assert!(is_revoked(&m, 9, 10));
        assert!(is_revoked(&m, 9, 3));
        assert!(!is_revoked(&m, 9, 11));
        assert!(!is_revoked(&m, 8, 1));
    }
}
