//! Mount-time recovery with I/O: SCAN, REVOKE and REPLAY ([`crate::recovery`]) over reads
//! through the block layer, then the replayed blocks home, a flush, and the journal superblock
//! marked clean with FUA.
//!
//! # Promises
//! - The journal is marked clean only after every replayed block was written home and the flush
//!   that covers them completed.
//! - Recovering again (a crash during recovery, or after) gives the same image: until the clean
//!   superblock is durable the same log replays to the same blocks.
//! - Logged blocks whose tag checksum failed are skipped, the rest written home and flushed, and
//!   the journal left dirty with [`RuntimeError::RecoveryChecksum`] (the kernel fails the mount
//!   the same way).
//! - The ext4 superblock (its `needs_recovery` flag) is the file system's: this only reports
//!   what it replayed.

use std::collections::HashMap;

use aios_block::BlockQueue;
use aios_device::{Arena, Queue, SEGMENTS_MAX};

use super::error::{IoWhat, Phase, RuntimeError};
use super::extents::JournalExtents;
use super::io::{home_runs, Batch};
use super::journal::{check_geometry, read_blocks};
use super::plant::PlantedBug;
use super::RtResult;
use crate::format::superblock::{JournalSuperblock, SUPERBLOCK_SIZE_BYTES};
use crate::format::Block;
use crate::recovery::LogEnd;

/// What recovery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// False when the journal was clean (nothing read beyond the superblock, nothing written).
    pub needed: bool,
    /// The first transaction looked at (`s_sequence`).
    pub start_sequence: u32,
    /// The first transaction not replayed.
    pub end_sequence: u32,
    /// The sequence the clean superblock now holds.
    pub next_sequence: u32,
    /// Why the log ended.
    pub end: LogEnd,
    /// File system blocks written home, ascending.
    pub fs_blocks: Vec<u64>,
    /// Revoke records read.
    pub revoke_records: u64,
    /// Logged blocks a revoke record suppressed.
    pub revoke_hits: u64,
}

impl Replayed {
    /// Transactions replayed.
    pub fn transactions(&self) -> u32 {
        self.end_sequence.wrapping_sub(self.start_sequence)
    }
}

/// Recovers the journal at `extents` if its superblock asks for it. See the module docs.
pub fn recover<Q: Queue>(
    q: &mut BlockQueue<Q>,
    arena: &Arena,
    extents: &JournalExtents,
) -> RtResult<Replayed> {
    recover_with(q, arena, extents, None)
}

/// [`recover`], with a planted bug (test-only: `plant` is `None` outside tests).
pub fn recover_with<Q: Queue>(
    q: &mut BlockQueue<Q>,
    arena: &Arena,
    extents: &JournalExtents,
    plant: Option<PlantedBug>,
) -> RtResult<Replayed> {
    let phase = Phase::Recovery;
    let block0 = read_blocks(q, arena, extents, phase, 0, 1)?
        .into_iter()
        .next()
        .ok_or(RuntimeError::Unmapped {
            journal_block: 0,
            mapped_blocks: extents.len_blocks(),
        })?;
    let mut sb = JournalSuperblock::decode(&block0[..])?;
    if !sb.needs_recovery() {
        return Ok(Replayed {
            needed: false,
            start_sequence: sb.sequence,
            end_sequence: sb.sequence,
            next_sequence: sb.sequence,
            end: LogEnd::Clean,
            fs_blocks: Vec::new(),
            revoke_records: 0,
            revoke_hits: 0,
        });
    }
    check_geometry(&sb, extents)?;
    let maxlen = sb.maxlen_blocks;

    // Reads go by physically contiguous runs of up to 32 blocks, each block read once.
    let mut cache: HashMap<u32, Box<Block>> = HashMap::new();
    let rec = crate::recovery::recover(&sb, |journal_block| -> RtResult<Block> {
        if let Some(b) = cache.get(&journal_block) {
            return Ok(**b);
        }
        let unmapped = RuntimeError::Unmapped {
            journal_block,
            mapped_blocks: maxlen,
        };
        if journal_block >= maxlen {
            return Err(unmapped);
        }
        let (_, contiguous) = extents.run(journal_block)?;
        let n = contiguous
            .min(maxlen - journal_block)
            .min(SEGMENTS_MAX as u32);
        let blocks = read_blocks(q, arena, extents, phase, journal_block, n)?;
        for (i, b) in blocks.into_iter().enumerate() {
            cache.insert(journal_block + i as u32, b);
        }
        cache.get(&journal_block).map(|b| **b).ok_or(unmapped)
    })?;
    drop(cache);

    let mut writes: Vec<(u64, &Block)> = rec.writes.iter().map(|(b, c)| (*b, &**c)).collect();
    writes.sort_unstable_by_key(|w| w.0);
    let fs_blocks: Vec<u64> = writes.iter().map(|w| w.0).collect();
    sb.start_block = 0;
    sb.sequence = rec.next_sequence;
    let raw = sb.encode()?;
    let mut clean = *block0;
    if let Some(head) = clean.get_mut(..SUPERBLOCK_SIZE_BYTES) {
        head.copy_from_slice(&raw);
    }
    let device_block = extents.device_block(0)?;
    let mut batch = Batch::new(q, arena, phase, 0)?;
    for (first, range) in home_runs(&fs_blocks, SEGMENTS_MAX) {
        let run = writes.get(range).unwrap_or_default();
        let what = IoWhat::Home { fs_block: first };
        if !batch.stage_copy(false, first, run.iter().map(|w| &w.1[..]), what) {
            break;
        }
    }
    let clean_early = plant == Some(PlantedBug::CleanBeforeReplayFlushed);
    if clean_early {
        // PLANTED BUG (i), test-only: clean before the replayed blocks are flushed.
        let what = IoWhat::Superblock;
        batch.stage_copy(true, device_block, std::iter::once(&clean[..]), what);
    }
    batch.wait_all();
    if let Some(e) = batch.take_error() {
        return Err(e);
    }
    batch.stage_flush();
    batch.wait_all();
    if let Some(e) = batch.take_error() {
        return Err(e);
    }
    if let Some(bad) = rec.bad_data_blocks.first() {
        return Err(RuntimeError::RecoveryChecksum {
            count: rec.bad_data_blocks.len(),
            fs_block: bad.fs_block,
            sequence: bad.sequence,
        });
    }

    if !clean_early {
        batch.stage_copy(
            true,
            device_block,
            std::iter::once(&clean[..]),
            IoWhat::Superblock,
        );
    }
    batch.wait_all();
    if let Some(e) = batch.take_error() {
        return Err(e);
    }
    Ok(Replayed {
        needed: true,
        start_sequence: rec.start_sequence,
        end_sequence: rec.end_sequence,
        next_sequence: rec.next_sequence,
        end: rec.end,
        fs_blocks,
        revoke_records: rec.revoke_records,
        revoke_hits: rec.revoke_hits,
    })
}
