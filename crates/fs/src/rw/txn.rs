//! A sealed transaction turned into journal input, and the two kinds of durable write:
//! a commit ([`Journal::commit`]) and a data-only sync
//! ([`aios_journal::runtime::sync_data`]).
//!
//! # Invariants
//! - `data=ordered`: data blocks are written in place by the commit, before its journal
//!   blocks are flushed; metadata blocks are logged. `data=journal`: data blocks are logged
//!   with the metadata (written home at checkpoint), nothing is written in place.
//! - Every block freed by the transaction is revoked in it: a block logged by an earlier
//!   transaction and reused later is never replayed or checkpointed over its new contents.
//!   Freed blocks are never logged in the same transaction (the mutator forgets them).
//! - Data pages go to the device as they are (shared, never copied when they live in the
//!   arena); a page on the heap is copied into an arena buffer that goes back with the write.

use std::sync::Arc;

use aios_block::BlockQueue;
use aios_device::{Arena, Queue, BLOCK_SIZE, SEGMENTS_MAX};
use aios_journal::format::Block;
use aios_journal::layout::DataBlock;
use aios_journal::runtime::{Committed, DataWrite, Journal, RuntimeError, Transaction};

use super::{DataMode, RwError};
use crate::error::display_path;
use crate::{BlockRead, Changes, DataPage, FsError, Mutator};

/// A block number and its 4 KiB.
type Block4k = (u64, Arc<DataPage>);

/// The running transaction's changes, taken from the mutator.
pub(super) struct Sealed {
    pub(super) changes: Changes,
    /// Blocks it freed (its revoke records), ascending.
    pub(super) revoked: Vec<u64>,
}

/// Why a commit or data sync failed.
pub(super) enum TxnError {
    /// The transaction could not be built (arena memory, a malformed block); nothing written.
    Build(String),
    /// The journal refused or failed (it is aborted when anything was written).
    Journal(RuntimeError),
}

impl TxnError {
    pub(super) fn into_rw(self, op: &'static str, path: &[u8]) -> RwError {
        match self {
            TxnError::Build(what) => RwError::Build {
                op,
                path: display_path(path),
                what,
            },
            TxnError::Journal(cause) => RwError::Commit {
                op,
                path: display_path(path),
                cause,
            },
        }
    }
}

/// Takes the mutator's changes (checksums sealed) and the blocks freed since the last seal.
pub(super) fn seal(m: &mut Mutator, r: &mut dyn BlockRead) -> Result<Sealed, FsError> {
    let changes = m.take_changes(r)?;
    Ok(Sealed {
        changes,
        revoked: m.pending_free_list(),
    })
}

/// Commits `sealed` (see the module documentation). An empty transaction writes nothing and
/// returns a zero [`Committed`].
pub(super) fn commit<Q: Queue>(
    journal: &mut Journal,
    q: &mut BlockQueue<Q>,
    arena: &Arc<Arena>,
    sealed: &Sealed,
    mode: DataMode,
) -> Result<Committed, TxnError> {
    if sealed.is_empty() {
        return Ok(empty(journal));
    }
    let (in_place, logged_data): (&[Block4k], &[Block4k]) = match mode {
        DataMode::Ordered => (&sealed.changes.data_blocks, &[]),
        DataMode::Journal => (&[], &sealed.changes.data_blocks),
    };
    let meta = sealed
        .changes
        .meta_blocks
        .iter()
        .map(|(b, bytes)| (*b, &bytes[..]))
        .chain(logged_data.iter().map(|(b, page)| (*b, page.bytes())));
    let mut metadata = Vec::with_capacity(sealed.changes.meta_blocks.len() + logged_data.len());
    for (block, bytes) in meta {
        match <&Block>::try_from(bytes) {
            Ok(contents) => metadata.push(DataBlock {
                fs_block: block,
                contents,
            }),
            Err(_) => return Err(TxnError::Build(format!("block {block} is not 4 KiB"))),
        }
    }
    // The journal wants each block once, in block order; data and metadata blocks are
    // disjoint (a block is one or the other), so sorting merges the two lists.
    metadata.sort_unstable_by_key(|d| d.fs_block);
    let data = data_writes(arena, in_place).map_err(TxnError::Build)?;
    journal
        .commit(
            q,
            arena,
            Transaction {
                data,
                metadata: &metadata,
                revoked: &sealed.revoked,
            },
        )
        .map_err(TxnError::Journal)
}

/// Writes `blocks` in place and, with `flush`, flushes ([`aios_journal::runtime::sync_data`];
/// without: [`aios_journal::runtime::write_data`], a writeback). A failure makes the caller's
/// mount read-only, which stops every later commit.
pub(super) fn sync_data<Q: Queue>(
    q: &mut BlockQueue<Q>,
    arena: &Arc<Arena>,
    blocks: &[Block4k],
    flush: bool,
) -> Result<Committed, TxnError> {
    let data = data_writes(arena, blocks).map_err(TxnError::Build)?;
    let out = if flush {
        aios_journal::runtime::sync_data(q, arena, &data)
    } else {
        aios_journal::runtime::write_data(q, arena, &data)
    };
    out.map_err(TxnError::Journal)
}

fn empty(journal: &Journal) -> Committed {
    let at = journal.head();
    Committed {
        sequence: at.sequence,
        journal_block: at.journal_block,
        journal_blocks: 0,
        checkpointed: false,
        times: Default::default(),
    }
}

/// The data blocks as in-place writes: runs of consecutive blocks, at most one request
/// (32 blocks) each, naming the pages themselves (a page outside the arena is copied in).
fn data_writes(arena: &Arc<Arena>, blocks: &[Block4k]) -> Result<Vec<DataWrite>, String> {
    let mut out: Vec<DataWrite> = Vec::new();
    for (block, page) in blocks {
        let shared = page
            .shared(arena)
            .ok_or_else(|| format!("no arena page to write data block {block} from"))?;
        let offset_bytes = block * BLOCK_SIZE as u64;
        match out.last_mut() {
            Some(run)
                if run.pages.len() < SEGMENTS_MAX
                    && run.offset_bytes + run.len_bytes() == offset_bytes =>
            {
                run.pages.push(shared);
            }
            _ => out.push(DataWrite {
                offset_bytes,
                pages: vec![shared],
            }),
        }
    }
    Ok(out)
}
