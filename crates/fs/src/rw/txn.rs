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
//! - Arena buffers taken for data writes all go back, whatever happens.

use aios_block::BlockQueue;
use aios_device::{Arena, Buf, Queue, BLOCK_SIZE, SEGMENTS_MAX};
use aios_journal::format::Block;
use aios_journal::layout::DataBlock;
use aios_journal::runtime::{Committed, DataWrite, Journal, RuntimeError, Transaction};

use super::{DataMode, RwError};
use crate::error::display_path;
use crate::{BlockRead, Changes, FsError, Mutator};

/// A block number and its 4 KiB.
type Block4k = (u64, Vec<u8>);

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
    arena: &Arena,
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
        .chain(logged_data.iter().map(|(b, bytes)| (*b, bytes.as_slice())));
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
    let out = journal.commit(
        q,
        arena,
        Transaction {
            data,
            metadata: &metadata,
            revoked: &sealed.revoked,
        },
    );
    for d in out.data {
        arena.free(d.buf);
    }
    out.result.map_err(TxnError::Journal)
}

/// Writes `blocks` in place and flushes ([`aios_journal::runtime::sync_data`]). A failure
/// makes the caller's mount read-only, which stops every later commit.
pub(super) fn sync_data<Q: Queue>(
    q: &mut BlockQueue<Q>,
    arena: &Arena,
    blocks: &[(u64, Vec<u8>)],
) -> Result<Committed, TxnError> {
    let data = data_writes(arena, blocks).map_err(TxnError::Build)?;
    let out = aios_journal::runtime::sync_data(q, arena, data);
    for d in out.data {
        arena.free(d.buf);
    }
    out.result.map_err(TxnError::Journal)
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
/// (32 blocks) each, copied into arena buffers. On failure every buffer taken is freed.
fn data_writes(arena: &Arena, blocks: &[(u64, Vec<u8>)]) -> Result<Vec<DataWrite>, String> {
    let mut out: Vec<DataWrite> = Vec::new();
    let free_all = |out: Vec<DataWrite>| {
        for d in out {
            arena.free(d.buf);
        }
    };
    let mut rest = blocks;
    while let Some(&(first, _)) = rest.first() {
        let mut n = 1;
        while n < SEGMENTS_MAX && rest.get(n).map(|b| b.0) == first.checked_add(n as u64) {
            n += 1;
        }
        // A fragmented arena may lack a long run: fall back to shorter requests.
        let mut buf: Buf = loop {
            match arena.alloc(n as u32) {
                Ok(b) => break b,
                Err(_) if n > 1 => n /= 2,
                Err(e) => {
                    free_all(out);
                    return Err(format!("arena for a data block: {e}"));
                }
            }
        };
        let (run, tail) = rest.split_at(n.min(rest.len()));
        let bytes = arena.bytes_mut(&mut buf);
        for ((block, src), dst) in run.iter().zip(bytes.chunks_exact_mut(BLOCK_SIZE)) {
            if src.len() != BLOCK_SIZE {
                arena.free(buf);
                free_all(out);
                return Err(format!("data block {block} has {} bytes", src.len()));
            }
            dst.copy_from_slice(src);
        }
        out.push(DataWrite {
            offset_bytes: first * BLOCK_SIZE as u64,
            buf,
        });
        rest = tail;
    }
    Ok(out)
}
