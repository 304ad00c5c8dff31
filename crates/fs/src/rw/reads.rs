//! Reads in flight, and the freed blocks they hold back from reuse.
//!
//! A read of file data takes its plan (the block map, the size, the blocks whose newest bytes
//! are in memory) under the state lock and then reads the device without the lock
//! (`read.rs`). A block the plan names may be freed meanwhile by a truncate, unlink or rename
//! in a transaction `T`. The journal's rule makes it allocatable once `T` committed; if it were
//! then given to another file and written home while the read is still in flight, the read
//! would return the other file's bytes. So a freed block also waits for every read that took
//! its plan in a transaction at or before `T` (the kernel pins the page instead; our reads
//! hold no page of a freed block, so the rule is kept by the allocator).
//!
//! # Locking
//! The set has a mutex of its own (`RwShared::reads`), taken after the state lock when both
//! are held: a read begins under the state lock (in the same hold as its plan, so its start
//! transaction is the one its map belongs to) and a commit parks under it, but a read ends
//! with this mutex alone, and takes the state lock only to release blocks it held back.
//!
//! # Invariants
//! - A read that took its plan while transaction `s` was running is counted in `by_start` under
//!   `s` until it ends; it can only be reading blocks freed in a transaction `>= s` (a block
//!   freed before `s` was not in its map).
//! - Blocks freed in `T` are parked iff, when `T` committed, a read with `s <= T` was in
//!   flight; they come back (by [`ReadsInFlight::end`]) once the oldest read in flight started
//!   after `T`, or none is in flight.

/// See the module documentation.
#[derive(Debug, Default)]
pub(super) struct ReadsInFlight {
    /// Reads in flight by the transaction that was running when each took its plan.
    /// `(transaction, reads)`, ascending by transaction, no zero counts. A sorted `Vec`
    /// rather than a map: it keeps its memory when the last read ends, where a `BTreeMap`
    /// freed and allocated a node per read on an otherwise idle mount.
    by_start: Vec<(u64, usize)>,
    /// Blocks freed by a committed transaction (its id first), waiting for older reads.
    parked: Vec<(u64, Vec<u64>)>,
}

/// A read in flight; give it back to [`ReadsInFlight::end`].
#[derive(Debug)]
#[must_use = "a read that never ends holds freed blocks back for the mount's life"]
pub(super) struct ReadTicket {
    started_in: u64,
}

impl ReadsInFlight {
    /// A read takes its plan while transaction `running` runs.
    pub(super) fn begin(&mut self, running: u64) -> ReadTicket {
        match self.position(running) {
            Ok(i) => {
                if let Some((_, n)) = self.by_start.get_mut(i) {
                    *n += 1;
                }
            }
            Err(i) => self.by_start.insert(i, (running, 1)),
        }
        ReadTicket {
            started_in: running,
        }
    }

    /// The read ended (its device reads completed or failed); returns the parked blocks no
    /// read in flight can be reading any more, to be made allocatable.
    pub(super) fn end(&mut self, ticket: ReadTicket) -> Vec<u64> {
        let at = self.position(ticket.started_in).ok();
        if let Some((i, (_, n))) = at.and_then(|i| Some((i, self.by_start.get_mut(i)?))) {
            *n -= 1;
            if *n == 0 {
                self.by_start.remove(i);
            }
        } else {
            debug_assert!(false, "a read ended twice");
        }
        let oldest = self.oldest();
        let mut free = Vec::new();
        self.parked.retain_mut(|(freed_in, blocks)| {
            let safe = oldest.is_none_or(|s| s > *freed_in);
            if safe {
                free.append(blocks);
            }
            !safe
        });
        free
    }

    /// Transaction `freed_in` committed, freeing `blocks`: true if a read in flight may still
    /// be reading one of them, and they are parked until it ends (the caller keeps them from
    /// the allocator); false if they may be reused now.
    pub(super) fn park_if_read(&mut self, freed_in: u64, blocks: &[u64]) -> bool {
        if blocks.is_empty() || self.oldest().is_none_or(|s| s > freed_in) {
            return false;
        }
        self.parked.push((freed_in, blocks.to_vec()));
        true
    }

    /// Reads in flight now.
    #[cfg(test)]
    pub(super) fn in_flight(&self) -> usize {
        self.by_start.iter().map(|&(_, n)| n).sum()
    }

    /// Where transaction `started_in`'s count is in `by_start` (`Ok`), or would go (`Err`).
    fn position(&self, started_in: u64) -> Result<usize, usize> {
        self.by_start.binary_search_by_key(&started_in, |&(s, _)| s)
    }

    fn oldest(&self) -> Option<u64> {
        self.by_start.first().map(|&(s, _)| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_blocks_wait_for_reads_that_began_at_or_before_their_transaction() {
        let mut reads = ReadsInFlight::default();
        let old = reads.begin(3);
        let new = reads.begin(5);
        // Freed in 2: neither read's map had them.
        assert!(!reads.park_if_read(2, &[10]));
        // Freed in 3 and 4: the read that began in 3 may be reading them.
        assert!(reads.park_if_read(3, &[11]));
        assert!(reads.park_if_read(4, &[12, 13]));
        assert_eq!(reads.in_flight(), 2);
        let mut free = reads.end(old);
        free.sort_unstable();
        assert_eq!(free, [11, 12, 13], "the oldest read left began in 5");
        // Freed in 5: the read that began in 5 holds them until it ends.
        assert!(reads.park_if_read(5, &[14]));
        assert_eq!(reads.end(new), [14]);
        assert_eq!(reads.in_flight(), 0);
        assert!(!reads.park_if_read(6, &[15]), "no read in flight");
    }
}
