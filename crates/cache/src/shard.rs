//! One shard of the index: a map from [`Key`] to page and a CLOCK ring over the same keys.
//!
//! # Invariants (under the shard's mutex)
//! - A key is in `clock` exactly once iff it is in `map`.
//! - `map` holds only `Locked` and `UpToDate` pages; a failed page is removed before it is marked
//!   failed.
//! - References to a page are created only from `map` under this mutex (or by cloning one that
//!   already exists), so `Arc::strong_count == 1` under the mutex means no reader holds the page
//!   and none can appear before the mutex is released. (Write-free hits hold no reference; they
//!   validate their copy instead: `hint.rs`.)

use crate::hint::Hints;
use crate::page::{CachedPage, PageState};
use crate::{Key, KeyHasher};
use aios_device::Buf;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::sync::Arc;

#[derive(Debug, Default)]
pub(crate) struct Shard {
    pub map: HashMap<Key, Arc<CachedPage>, BuildHasherDefault<KeyHasher>>,
    clock: VecDeque<Key>,
}

impl Shard {
    pub fn insert_new(&mut self, key: Key, page: Arc<CachedPage>) {
        debug_assert!(!self.map.contains_key(&key));
        self.map.insert(key, page);
        self.clock.push_back(key);
    }

    /// Removes `page` if it is the one indexed under its key. Returns whether it was.
    pub fn remove_same(&mut self, page: &Arc<CachedPage>) -> bool {
        let key = page.key();
        if !self.map.get(&key).is_some_and(|p| Arc::ptr_eq(p, page)) {
            return false;
        }
        self.map.remove(&key);
        // Error path only: O(pages of the shard).
        self.clock.retain(|k| *k != key);
        true
    }

    /// CLOCK: advances the hand at most two turns, giving referenced pages a second chance and
    /// skipping pages that are locked or held by a reader. Returns the evicted key and its page.
    /// A page hit without the lock (`hints`) has its referenced bit there.
    pub fn evict_one(&mut self, hints: &Hints) -> Option<(Key, Buf)> {
        let mut steps = 2 * self.clock.len();
        while steps > 0 {
            steps -= 1;
            let key = self.clock.pop_front()?;
            // One probe for the look and the removal.
            let Entry::Occupied(entry) = self.map.entry(key) else {
                debug_assert!(false, "clock key {key} not in the map");
                continue;
            };
            let page = entry.get();
            let busy = page.state() != PageState::UpToDate || Arc::strong_count(page) > 1;
            // Both bits are cleared: a second chance is one turn of the hand.
            let hinted = page.hinted().then(|| page.arena_page()).flatten();
            // A busy page keeps its bits: it is passed over, not given its second chance.
            if busy || (page.take_referenced() | hinted.is_some_and(|p| hints.take_referenced(p))) {
                self.clock.push_back(key);
                continue;
            }
            match Arc::try_unwrap(entry.remove()) {
                Ok(page) => match page.into_buf() {
                    Some(buf) => {
                        // Before anyone can write the page again (still under this shard's
                        // lock, which its publishes take): hits without the lock stop here.
                        if let Some(arena_page) = hinted {
                            hints.retire(arena_page);
                        }
                        return Some((key, buf));
                    }
                    None => debug_assert!(false, "up-to-date page {key} without memory"),
                },
                // Unreachable under the invariant; restore rather than lose the page.
                Err(page) => {
                    self.map.insert(key, page);
                    self.clock.push_back(key);
                }
            }
        }
        None
    }

    /// Takes every page out (cache teardown).
    pub fn drain(&mut self) -> impl Iterator<Item = Arc<CachedPage>> + '_ {
        self.clock.clear();
        self.map.drain().map(|(_, page)| page)
    }
}
