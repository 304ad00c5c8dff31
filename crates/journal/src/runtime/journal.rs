//! [`Journal`]: the state of one mounted journal and the I/O every operation shares (reading
//! journal blocks, writing the journal superblock).
//!
//! # Invariants
//! - `tail..head` (circular, `used_blocks` long) holds the committed transactions not yet
//!   checkpointed; `used_blocks + 1 <= log_blocks` always (one block stays free, so a full log is
//!   never mistaken for an empty one).
//! - `on_disk_start` is what the journal superblock on the device says `s_start` is: 0 (clean)
//!   until the first commit writes it, then the tail as of the last superblock write. The on-disk
//!   tail never lies after a transaction whose home writes have not been flushed.
//! - `pending` holds, for each file system block logged by a committed, not yet checkpointed
//!   transaction and not revoked since, its newest committed contents.
//! - `Aborted` is final.

use std::collections::BTreeMap;
use std::sync::Arc;

use aios_block::BlockQueue;
use aios_device::{Arena, Op, Queue};

use super::error::{IoWhat, Phase, RuntimeError};
use super::extents::JournalExtents;
use super::io::{Batch, Dest, BLOCK_BYTES};
use super::RtResult;
use crate::format::features::{incompat, CHECKSUM_TYPE_CRC32C};
use crate::format::superblock::{JournalSuperblock, SUPERBLOCK_SIZE_BYTES};
use crate::format::Block;
use crate::layout::{Log, LogPosition};

/// The two fsync orders (`docs/write-path.md`): the same steps, different waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CommitOrder {
    /// Vanilla ext4: submit data, wait; build and submit journal blocks, wait; flush; commit
    /// block with FUA, wait.
    #[default]
    Sync,
    /// AIOS: submit data; build and submit journal blocks; build the commit block; wait for data
    /// and journal; flush; commit block with FUA, wait.
    Async,
}

/// How to run a journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JournalOptions {
    /// The fsync order.
    pub order: CommitOrder,
    /// Turn on `64bit` tags (the kernel does for a `64bit` ext4).
    pub bit64: bool,
    /// Turn on `checksum_v3` (the kernel does for a `metadata_csum` ext4).
    pub csum_v3: bool,
    /// Test-only: a protocol bug to plant ([`super::PlantedBug`]); `None` outside tests.
    pub plant: Option<super::PlantedBug>,
}

/// Whether the journal still works.
#[derive(Debug, Clone)]
pub enum JournalState {
    /// Commits are accepted.
    Running,
    /// A write or flush failed; nothing more is written. Holds the first failure.
    Aborted(Arc<RuntimeError>),
}

/// One mounted journal. See the module documentation.
#[derive(Debug)]
pub struct Journal {
    pub(crate) extents: JournalExtents,
    pub(crate) sb: JournalSuperblock,
    /// Journal block 0 as read (the bytes after the 1024-byte superblock are kept).
    pub(crate) block0: Box<Block>,
    pub(crate) log: Log,
    pub(crate) head: LogPosition,
    pub(crate) tail: LogPosition,
    pub(crate) used_blocks: u64,
    pub(crate) on_disk_start: u32,
    pub(crate) pending: BTreeMap<u64, Box<Block>>,
    pub(crate) options: JournalOptions,
    pub(crate) state: JournalState,
}

impl Journal {
    /// Opens a clean journal (run [`super::recover`] first): reads and decodes its superblock,
    /// turns on the features `options` asks for (and `revoke`, as ext4 does), and starts the log
    /// empty at `s_first` with sequence `s_sequence + 1` (as the kernel does). Nothing is written
    /// until the first commit.
    pub fn open<Q: Queue>(
        q: &mut BlockQueue<Q>,
        arena: &Arena,
        extents: JournalExtents,
        options: JournalOptions,
    ) -> RtResult<Journal> {
        let block0 = read_blocks(q, arena, &extents, Phase::Open, 0, 1)?
            .into_iter()
            .next()
            .ok_or(RuntimeError::Unmapped {
                journal_block: 0,
                mapped_blocks: extents.len_blocks(),
            })?;
        let mut sb = JournalSuperblock::decode(&block0[..])?;
        if sb.needs_recovery() {
            return Err(RuntimeError::NeedsRecovery {
                start_block: sb.start_block,
                sequence: sb.sequence,
            });
        }
        check_geometry(&sb, &extents)?;
        sb.features.incompat |= incompat::REVOKE;
        if options.bit64 {
            sb.features.incompat |= incompat::BIT64;
        }
        if options.csum_v3 {
            sb.features.incompat |= incompat::CSUM_V3;
            sb.features.incompat &= !incompat::CSUM_V2;
            sb.checksum_type = CHECKSUM_TYPE_CRC32C;
        }
        sb.encode()?; // validates the combination
        let log = Log::from_superblock(&sb)?;
        let start = LogPosition {
            sequence: sb.sequence.wrapping_add(1),
            journal_block: sb.first_block,
        };
        Ok(Journal {
            extents,
            sb,
            block0,
            log,
            head: start,
            tail: start,
            used_blocks: 0,
            on_disk_start: 0,
            pending: BTreeMap::new(),
            options,
            state: JournalState::Running,
        })
    }

    /// Running or aborted (with the first failure).
    pub fn state(&self) -> &JournalState {
        &self.state
    }

    /// True once a failure aborted the journal.
    pub fn is_aborted(&self) -> bool {
        matches!(self.state, JournalState::Aborted(_))
    }

    /// True when `bug` is planted in this journal (test-only, see [`super::PlantedBug`]).
    pub(crate) fn planted(&self, bug: super::PlantedBug) -> bool {
        self.options.plant == Some(bug)
    }

    /// The order commits use.
    pub fn order(&self) -> CommitOrder {
        self.options.order
    }

    /// Switches the fsync order (between commits).
    pub fn set_order(&mut self, order: CommitOrder) {
        self.options.order = order;
    }

    /// Where the next transaction goes (its sequence and first journal block).
    pub fn head(&self) -> LogPosition {
        self.head
    }

    /// The oldest transaction not checkpointed (equal to the head when the log is empty).
    pub fn tail(&self) -> LogPosition {
        self.tail
    }

    /// The log's geometry and format.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Blocks in the circular log.
    pub fn log_blocks(&self) -> u64 {
        u64::from(self.log.log_blocks())
    }

    /// Journal blocks holding committed, not yet checkpointed transactions.
    pub fn used_blocks(&self) -> u64 {
        self.used_blocks
    }

    /// Journal blocks a new transaction may take now (one block always stays free).
    pub fn free_blocks(&self) -> u64 {
        self.log_blocks()
            .saturating_sub(self.used_blocks)
            .saturating_sub(1)
    }

    /// File system blocks committed and not yet written home.
    pub fn pending_blocks(&self) -> usize {
        self.pending.len()
    }

    /// The error every call returns once aborted.
    pub(crate) fn check_running(&self) -> RtResult<()> {
        match &self.state {
            JournalState::Running => Ok(()),
            JournalState::Aborted(first) => Err(RuntimeError::Aborted {
                first: Arc::clone(first),
            }),
        }
    }

    /// Aborts with `error` (the first abort wins) and returns the error for the caller.
    pub(crate) fn abort(&mut self, error: RuntimeError) -> RuntimeError {
        let first = Arc::new(error);
        if let JournalState::Running = self.state {
            self.state = JournalState::Aborted(Arc::clone(&first));
        }
        match Arc::try_unwrap(first) {
            Ok(e) => e,
            Err(shared) => RuntimeError::Aborted { first: shared },
        }
    }

    /// The journal block 0 bytes with the superblock saying `s_start`/`s_sequence`.
    pub(crate) fn superblock_bytes(&mut self, start_block: u32, sequence: u32) -> RtResult<Block> {
        self.sb.start_block = start_block;
        self.sb.sequence = sequence;
        let raw = self.sb.encode()?;
        let mut block = *self.block0;
        if let Some(head) = block.get_mut(..SUPERBLOCK_SIZE_BYTES) {
            head.copy_from_slice(&raw);
        }
        Ok(block)
    }

    /// Stages the journal superblock write into `batch`.
    pub(crate) fn stage_superblock<Q: Queue>(
        &mut self,
        batch: &mut Batch<'_, Q>,
        start_block: u32,
        sequence: u32,
        fua: bool,
    ) -> RtResult<bool> {
        let bytes = self.superblock_bytes(start_block, sequence)?;
        let device_block = self.extents.device_block(0)?;
        Ok(batch.stage_copy(
            fua,
            device_block,
            std::iter::once(&bytes[..]),
            IoWhat::Superblock,
        ))
    }
}

/// The superblock's log must lie inside the extents.
pub(crate) fn check_geometry(sb: &JournalSuperblock, extents: &JournalExtents) -> RtResult<()> {
    if sb.maxlen_blocks > extents.len_blocks() {
        return Err(RuntimeError::BadExtents {
            journal_block: sb.maxlen_blocks.saturating_sub(1),
            reason: "s_maxlen reaches beyond the journal's extents",
        });
    }
    if sb.first_block == 0 || sb.first_block >= sb.maxlen_blocks {
        return Err(RuntimeError::BadExtents {
            journal_block: sb.first_block,
            reason: "s_first is not inside [1, s_maxlen)",
        });
    }
    Ok(())
}

/// Reads `count` journal blocks from `journal_block` (one request per physically contiguous run
/// of at most 32 blocks), returning them in order.
pub(crate) fn read_blocks<Q: Queue>(
    q: &mut BlockQueue<Q>,
    arena: &Arena,
    extents: &JournalExtents,
    phase: Phase,
    journal_block: u32,
    count: u32,
) -> RtResult<Vec<Box<Block>>> {
    let mut runs = Vec::new();
    let mut at = journal_block;
    let end = journal_block.saturating_add(count);
    while at < end {
        let (device_block, contiguous) = extents.run(at)?;
        let n = contiguous
            .min(end - at)
            .min(aios_device::SEGMENTS_MAX as u32);
        runs.push((at, device_block, n));
        at += n;
    }
    let mut batch = Batch::new(q, arena, phase, runs.len())?;
    for (i, &(jb, device_block, n)) in runs.iter().enumerate() {
        let buf = match arena.alloc(n) {
            Ok(b) => b,
            Err(source) => {
                batch.record(RuntimeError::Arena { phase, source });
                break;
            }
        };
        let offset_bytes = device_block.saturating_mul(BLOCK_BYTES as u64);
        let what = IoWhat::Read { journal_block: jb };
        if !batch.stage(Op::Read, offset_bytes, vec![buf], what, Dest::Keep(i)) {
            break;
        }
    }
    batch.wait_all();
    let mut out = Vec::with_capacity(count as usize);
    let kept = std::mem::take(&mut batch.kept);
    let error = batch.take_error();
    for buf in kept.into_iter().flatten() {
        if error.is_none() {
            for chunk in arena.bytes(&buf).chunks_exact(BLOCK_BYTES) {
                let mut block = Box::new([0u8; BLOCK_BYTES]);
                block.copy_from_slice(chunk);
                out.push(block);
            }
        }
        arena.free(buf);
    }
    match error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
