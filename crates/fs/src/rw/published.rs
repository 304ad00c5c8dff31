//! What an open file publishes for reads that take no mount-wide lock: its size and the epoch
//! of its data in the page cache's keys, behind a sequence lock.
//!
//! # Protocol
//! - Writers are serialized by the mount's state lock: [`Published::publish`] is called under
//!   it, after every operation that changed the inode's data, size, block map or existence
//!   (`State::note` bumped the epoch) and when the first handle opens it.
//! - A reader ([`Published::snapshot`]) reads the sequence, the two values, then the
//!   sequence again, and retries while a publish is in progress (odd) or happened in between:
//!   it gets a size and an epoch that were published together. Readers write nothing, so
//!   readers of one file on many cores share its cache line.
//! - [`SIZE_UNKNOWN`] is published when the size could not be read (the inode was freed): a
//!   reader that sees it takes the locked path.
//! - Beside them, behind a mutex of this file's own, the file's last clean view
//!   (`view::FileView`): a miss uses it only if its epoch is the one snapshot, so a miss of a
//!   clean file plans without the state lock too (`read::read_unlocked`).
//!
//! # Why a hit in the published epoch is never stale
//! A page is cached in epoch `e` only when it was read from home by a read planned in `e` and
//! no newer bytes were in memory then (`read.rs`); any later change of the file bumps the
//! epoch past `e` and publishes it before the changing call returns. So a reader that sees
//! epoch `e` and finds a page under it returns the file's bytes as of a moment after the last
//! change that returned before the read began.

use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_utils::CachePadded;

use super::view::FileView;

/// Published when the size is not known: readers take the locked path.
pub(super) const SIZE_UNKNOWN: u64 = u64::MAX;

/// See the module documentation.
#[derive(Debug)]
pub(super) struct Published {
    /// The sequence lock and what it guards, on cache lines no one else writes: every hit
    /// of every thread reads them (next to a written line, a hot read on 2 threads spent
    /// half its `snapshot` time waiting for the line).
    values: CachePadded<Values>,
    /// The file's last clean view (`view`), for misses planned without the state lock; a
    /// reader uses it only if its epoch is the published one. A lock of this file's own, on
    /// lines of its own: misses write it.
    clean_view: CachePadded<Mutex<Option<Arc<FileView>>>>,
}

#[derive(Debug)]
struct Values {
    seq: AtomicU64,
    size_bytes: AtomicU64,
    epoch: AtomicU64,
}

impl Published {
    pub(super) fn new(size_bytes: u64, epoch: u64) -> Published {
        Published {
            values: CachePadded::new(Values {
                seq: AtomicU64::new(0),
                size_bytes: AtomicU64::new(size_bytes),
                epoch: AtomicU64::new(epoch),
            }),
            clean_view: CachePadded::new(Mutex::new(None)),
        }
    }

    /// Offers `view` (clean) to readers. Called under the state lock.
    pub(super) fn set_clean_view(&self, view: Arc<FileView>) {
        debug_assert!(view.clean);
        *self.clean_view.lock().unwrap_or_else(|p| p.into_inner()) = Some(view);
    }

    /// The last clean view, if any (check its epoch against [`Published::snapshot`]).
    pub(super) fn clean_view(&self) -> Option<Arc<FileView>> {
        self.clean_view
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Publishes a new size and epoch. Callers hold the state lock (one writer at a time).
    pub(super) fn publish(&self, size_bytes: u64, epoch: u64) {
        let v = &*self.values;
        let seq = v.seq.load(Ordering::Relaxed);
        debug_assert!(
            seq.is_multiple_of(2),
            "publishes are serialized by the state lock"
        );
        v.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        v.size_bytes.store(size_bytes, Ordering::Relaxed);
        v.epoch.store(epoch, Ordering::Relaxed);
        v.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    /// A size and epoch published together: `(size_bytes, epoch)`.
    pub(super) fn snapshot(&self) -> (u64, u64) {
        let v = &*self.values;
        loop {
            let before = v.seq.load(Ordering::Acquire);
            if !before.is_multiple_of(2) {
                std::hint::spin_loop();
                continue;
            }
            let size_bytes = v.size_bytes.load(Ordering::Relaxed);
            let epoch = v.epoch.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if v.seq.load(Ordering::Relaxed) == before {
                return (size_bytes, epoch);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Published;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn a_snapshot_never_mixes_two_publishes() {
        let p = Published::new(0, 0);
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 1..200_000u64 {
                    p.publish(i * 4096, i);
                }
                stop.store(true, Ordering::Relaxed);
            });
            while !stop.load(Ordering::Relaxed) {
                let (size, epoch) = p.snapshot();
                assert_eq!(size, epoch * 4096, "size and epoch of one publish");
            }
        });
    }
}
