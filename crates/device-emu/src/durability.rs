//! The durability state machine: which writes would survive a power loss, and what a crash image
//! may hold. The live device and the log replay both drive this one machine with the same
//! events, so a replayed crash state is the live one by construction.
//!
//! # Events (driven by the caller, in the canonical order of [`crate::log`])
//! - `submit_write(offset, data, fua)`: the write reaches the device. It is *pending*: not durable.
//! - `submit_flush()`: the flush reaches the device and *covers* every write completed by now and
//!   not yet durable. Writes still in flight are not covered.
//! - `complete(id)`: a write or flush completes (its due time passes).
//!   - a write with FUA, or any write when the cache is non-volatile, becomes durable now;
//!   - a flush makes every write it covers durable now (unless already durable).
//!
//! A write becoming durable stores its blocks in the durable image, except blocks for which a
//! *newer* (later submitted) write is already durable: per block, the newest durable write wins,
//! so the durable image never goes back in time.
//!
//! # Crash candidates and images
//! At any moment the *candidates* are the block-writes `(write, block)` of pending writes whose
//! block holds no newer durable write. A crash image is the durable image with a chosen subset of
//! candidates applied in submission order (per block, the newest chosen candidate wins). Each
//! 4 KiB block-write is atomic; a multi-block write may land partially (tear) at block boundaries.
//! [`seeded_choice`] chooses each candidate independently with probability 1/2 from a ChaCha8
//! stream seeded by the caller, in candidate order: the same seed gives the same image.
//!
//! Invariants: ids are consecutive from 1 in submission order; `dirty_bytes` is the data of
//! completed, not yet durable writes; `durable_id[b]` only grows.

use crate::{DiskImage, EmuError};
use aios_device::BLOCK_SIZE;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;

const BLOCK: u64 = BLOCK_SIZE as u64;
/// Data buffers kept for reuse, so steady-state writes do not allocate.
const POOL_BUFFERS_MAX: usize = 256;
/// Lists of covered ids kept for reuse, so steady-state flushes do not allocate.
const POOL_ID_LISTS_MAX: usize = 16;

/// One 4 KiB block of a not-yet-durable write: a unit a crash may or may not keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockWrite {
    /// The write's id: its position in submission order among logged writes and flushes, from 1.
    pub write_id: u64,
    /// The device block (byte offset / 4096) this part of the write covers.
    pub block: u64,
}

/// A `keep` function for [`crate::EmuDevice::crash_with`] and [`crate::Replay::image_with`] that
/// keeps each candidate with probability 1/2, drawn in candidate order from ChaCha8 seeded with `seed`.
pub fn seeded_choice(seed: u64) -> impl FnMut(&BlockWrite) -> bool {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    move |_| rng.gen_bool(0.5)
}

#[derive(Debug)]
struct PendingWrite {
    offset_bytes: u64,
    data: Vec<u8>,
    fua: bool,
    completed: bool,
}

#[derive(Debug)]
enum Pending {
    Write(PendingWrite),
    /// The ids of the writes the flush covers.
    Flush(Vec<u64>),
}

/// Why an event does not fit the state (only a malformed log can cause one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadEvent(pub(crate) &'static str);

#[derive(Debug)]
pub(crate) struct Durability {
    volatile_cache: bool,
    durable: DiskImage,
    /// Per block: the id of the write whose data `durable` holds there (0: the starting image).
    durable_id: Vec<u64>,
    /// Submitted writes and flushes not yet retired; `pending[i]` has id `first_id + i`.
    pending: VecDeque<Option<Pending>>,
    first_id: u64,
    dirty_bytes: u64,
    /// Ids made durable, in that order (kept for replays only).
    durable_ids: Option<Vec<u64>>,
    pool: Vec<Vec<u8>>,
    id_pool: Vec<Vec<u64>>,
}

impl Durability {
    /// Starts from `durable` (nothing pending). `track_durable_ids` keeps the list of ids made
    /// durable, for [`crate::Replay::durable_writes`].
    pub(crate) fn new(durable: DiskImage, volatile_cache: bool, track_durable_ids: bool) -> Self {
        let blocks = durable.capacity_bytes() / BLOCK;
        Durability {
            volatile_cache,
            durable,
            durable_id: vec![0; blocks as usize],
            pending: VecDeque::new(),
            first_id: 1,
            dirty_bytes: 0,
            durable_ids: track_durable_ids.then(Vec::new),
            pool: Vec::new(),
            id_pool: Vec::new(),
        }
    }

    /// The id the next submitted command gets.
    pub(crate) fn next_id(&self) -> u64 {
        self.first_id + self.pending.len() as u64
    }

    /// Bytes of completed writes waiting in a volatile cache for a flush.
    pub(crate) fn dirty_bytes(&self) -> u64 {
        self.dirty_bytes
    }

    pub(crate) fn durable(&self) -> &DiskImage {
        &self.durable
    }

    pub(crate) fn durable_ids(&self) -> &[u64] {
        self.durable_ids.as_deref().unwrap_or(&[])
    }

    /// A write (whole blocks at a block-aligned offset, already validated) reaches the device.
    pub(crate) fn submit_write(&mut self, offset_bytes: u64, data: &[u8], fua: bool) -> u64 {
        let mut buf = self.pool.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(data);
        self.pending.push_back(Some(Pending::Write(PendingWrite {
            offset_bytes,
            data: buf,
            fua,
            completed: false,
        })));
        self.next_id() - 1
    }

    /// A flush reaches the device; returns its id and how many dirty blocks it covers.
    pub(crate) fn submit_flush(&mut self) -> (u64, u64) {
        let mut covered = self.id_pool.pop().unwrap_or_default();
        covered.clear();
        covered.extend(
            self.pending
                .iter()
                .enumerate()
                .filter(|(_, p)| matches!(p, Some(Pending::Write(w)) if w.completed))
                .map(|(i, _)| self.first_id + i as u64),
        );
        let dirty_blocks = self.dirty_bytes / BLOCK;
        self.pending.push_back(Some(Pending::Flush(covered)));
        (self.next_id() - 1, dirty_blocks)
    }

    /// A command completes.
    pub(crate) fn complete(&mut self, id: u64) -> Result<(), BadEvent> {
        let volatile = self.volatile_cache;
        let Some(slot) = self.slot_mut(id) else {
            return Err(BadEvent("completion of a command never submitted"));
        };
        match slot {
            Some(Pending::Write(w)) => {
                if w.completed {
                    return Err(BadEvent("a write completes twice"));
                }
                w.completed = true;
                let len_bytes = w.data.len() as u64;
                if !volatile || w.fua {
                    self.make_durable(id);
                } else {
                    self.dirty_bytes += len_bytes;
                }
            }
            Some(Pending::Flush(covered)) => {
                let covered = std::mem::take(covered);
                *slot = None;
                for &write_id in &covered {
                    self.make_durable(write_id);
                }
                if self.id_pool.len() < POOL_ID_LISTS_MAX {
                    self.id_pool.push(covered);
                }
                self.trim();
            }
            None => return Err(BadEvent("completion of a retired command")),
        }
        Ok(())
    }

    /// The block-writes a crash may or may not keep, in (id, block) order.
    pub(crate) fn candidates(&self) -> Vec<BlockWrite> {
        let mut out = Vec::new();
        self.for_each_candidate(|c, _| out.push(c));
        out
    }

    /// The durable image plus the candidates `keep` accepts (asked once per candidate, in
    /// candidate order), applied in submission order.
    pub(crate) fn image_with(
        &self,
        mut keep: impl FnMut(&BlockWrite) -> bool,
    ) -> Result<DiskImage, EmuError> {
        let mut image = self.durable.try_clone()?;
        self.for_each_candidate(|c, data| {
            if keep(&c) {
                image.write_block(c.block, data);
            }
        });
        Ok(image)
    }

    fn for_each_candidate(&self, mut f: impl FnMut(BlockWrite, &[u8])) {
        for (i, p) in self.pending.iter().enumerate() {
            let Some(Pending::Write(w)) = p else { continue };
            let write_id = self.first_id + i as u64;
            let first_block = w.offset_bytes / BLOCK;
            for (j, data) in w.data.chunks_exact(BLOCK_SIZE).enumerate() {
                let block = first_block + j as u64;
                if self.durable_id[block as usize] < write_id {
                    f(BlockWrite { write_id, block }, data);
                }
            }
        }
    }

    fn slot_mut(&mut self, id: u64) -> Option<&mut Option<Pending>> {
        let index = id.checked_sub(self.first_id)?;
        self.pending.get_mut(usize::try_from(index).ok()?)
    }

    /// Moves a pending write into the durable image (blocks with a newer durable write excepted).
    fn make_durable(&mut self, id: u64) {
        let Some(slot) = self.slot_mut(id) else {
            return;
        };
        if !matches!(slot, Some(Pending::Write(_))) {
            return; // already durable (retired)
        }
        let Some(Pending::Write(w)) = slot.take() else {
            return;
        };
        if w.completed && self.volatile_cache && !w.fua {
            self.dirty_bytes -= w.data.len() as u64;
        }
        let first_block = w.offset_bytes / BLOCK;
        for (j, data) in w.data.chunks_exact(BLOCK_SIZE).enumerate() {
            let block = first_block + j as u64;
            if self.durable_id[block as usize] < id {
                self.durable.write_block(block, data);
                self.durable_id[block as usize] = id;
            }
        }
        if let Some(ids) = &mut self.durable_ids {
            ids.push(id);
        }
        if self.pool.len() < POOL_BUFFERS_MAX {
            self.pool.push(w.data);
        }
        self.trim();
    }

    /// Drops retired entries from the front.
    fn trim(&mut self) {
        while let Some(None) = self.pending.front() {
            self.pending.pop_front();
            self.first_id += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(v: u8) -> Vec<u8> {
        vec![v; BLOCK_SIZE]
    }

    fn state(volatile: bool) -> Durability {
        Durability::new(DiskImage::zeroed(16 * BLOCK).unwrap(), volatile, true)
    }

    #[test]
    fn flush_covers_completed_writes_only() {
        let mut d = state(true);
        let a = d.submit_write(0, &block(1), false);
        d.complete(a).unwrap();
        let b = d.submit_write(BLOCK, &block(2), false); // still in flight
        let (f, dirty) = d.submit_flush();
        assert_eq!(dirty, 1);
        d.complete(b).unwrap();
        d.complete(f).unwrap();
        assert_eq!(d.durable().block(0), Some(&block(1)[..]));
        assert_eq!(
            d.durable().block(1),
            Some(&block(0)[..]),
            "b was not covered"
        );
        assert_eq!(
            d.candidates(),
            [BlockWrite {
                write_id: b,
                block: 1
            }]
        );
        assert_eq!(d.durable_ids(), [a]);
        assert_eq!(d.dirty_bytes(), BLOCK);
    }

    #[test]
    fn newest_durable_write_wins_per_block() {
        let mut d = state(true);
        let old = d.submit_write(0, &[block(1), block(1)].concat(), false);
        let new = d.submit_write(0, &block(2), true);
        d.complete(new).unwrap();
        d.complete(old).unwrap();
        // Block 0 of `old` is superseded by the durable `new`; block 1 of `old` is a candidate.
        assert_eq!(
            d.candidates(),
            [BlockWrite {
                write_id: old,
                block: 1
            }]
        );
        let (f, _) = d.submit_flush();
        d.complete(f).unwrap();
        assert_eq!(
            d.durable().block(0),
            Some(&block(2)[..]),
            "never back in time"
        );
        assert_eq!(d.durable().block(1), Some(&block(1)[..]));
        assert!(d.candidates().is_empty());
        assert_eq!(d.dirty_bytes(), 0);
    }

    #[test]
    fn bad_events_are_reported() {
        let mut d = state(false);
        assert!(d.complete(1).is_err());
        let a = d.submit_write(0, &block(1), false);
        d.complete(a).unwrap();
        assert!(d.complete(a).is_err(), "retired");
    }
}
