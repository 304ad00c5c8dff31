//! Property test: random lookups, fills (both orders), held references and evictions against a
//! model (a map from key to the byte its page was filled with), single thread.
//!
//! Checked after every step: a lookup hits iff the model has the key, and then returns the
//! model's bytes; the index holds exactly the model's pages, never more than the cap; an
//! eviction (explicit or made by an insertion at the cap) removes exactly one unheld page.

use aios_cache::{CacheConfig, Insert, InsertOrder, Key, PageCache, PagePool, PageRef};
use aios_device::{Arena, BLOCK_SIZE};
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

const MAX_PAGES: usize = 4;
const KEYS: u64 = 10;

#[derive(Debug, Clone)]
enum Step {
    Read { page: u64, lazy: bool },
    Hold { page: u64 },
    DropHolds,
    Evict,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..KEYS, any::<bool>()).prop_map(|(page, lazy)| Step::Read { page, lazy }),
        2 => (0..KEYS).prop_map(|page| Step::Hold { page }),
        1 => Just(Step::DropHolds),
        1 => Just(Step::Evict),
    ]
}

struct Harness {
    cache: PageCache,
    pool: PagePool,
    model: HashMap<Key, u8>,
    holds: Vec<PageRef>,
    version: u8,
}

impl Harness {
    fn held(&self, key: Key) -> bool {
        self.holds.iter().any(|h| h.key() == key)
    }

    fn read(&mut self, key: Key, lazy: bool) {
        let hit = self.cache.lookup(key);
        assert_eq!(hit.is_some(), self.model.contains_key(&key), "{key}");
        if let Some(page) = hit {
            let mut out = vec![0u8; BLOCK_SIZE];
            self.cache.copy_out(&page, 0, &mut out).unwrap();
            assert!(out.iter().all(|&b| b == self.model[&key]), "{key}");
            return;
        }
        let was_full = self.model.len() == MAX_PAGES;
        let order = if lazy {
            InsertOrder::AfterSubmit
        } else {
            InsertOrder::BeforeSubmit
        };
        match self.cache.insert(key, order) {
            Insert::Fill(ticket) => {
                let vanished: Vec<Key> = self
                    .model
                    .keys()
                    .copied()
                    .filter(|k| !self.cache.contains(*k))
                    .collect();
                assert_eq!(vanished.len(), usize::from(was_full), "{vanished:?}");
                for k in vanished {
                    assert!(!self.held(k), "evicted held page {k}");
                    self.model.remove(&k);
                }
                self.version = self.version.wrapping_add(1);
                let mut buf = self.pool.take_or_refill(&self.cache, key).unwrap();
                self.cache.arena().bytes_mut(&mut buf).fill(self.version);
                self.cache
                    .complete_fill(ticket, buf, Ok(BLOCK_SIZE as u32))
                    .unwrap();
                self.model.insert(key, self.version);
            }
            Insert::Present(_) => panic!("{key}: present after a miss on one thread"),
            Insert::Uncached => {
                assert!(was_full);
                assert!(self.model.keys().all(|k| self.held(*k)));
            }
        }
    }

    fn run(&mut self, step: Step) {
        match step {
            Step::Read { page, lazy } => self.read(Key::new(1, page), lazy),
            Step::Hold { page } => {
                if let Some(page) = self.cache.lookup(Key::new(1, page)) {
                    self.holds.push(page);
                }
            }
            Step::DropHolds => self.holds.clear(),
            Step::Evict => match self.cache.evict() {
                Some(evicted) => {
                    assert!(!self.held(evicted.key), "evicted held page {}", evicted.key);
                    assert!(self.model.remove(&evicted.key).is_some());
                    self.pool.release(evicted.buf);
                }
                None => assert!(self.model.keys().all(|k| self.held(*k))),
            },
        }
        assert_eq!(self.cache.resident_pages(), self.model.len());
        assert!(self.model.len() <= MAX_PAGES);
        assert!(self.model.keys().all(|k| self.cache.contains(*k)));
        for held in &self.holds {
            let want = self
                .model
                .get(&held.key())
                .expect("a held page stays cached");
            let bytes = held
                .bytes(self.cache.arena())
                .expect("held page up to date");
            assert!(bytes.iter().all(|b| b == want), "{}", held.key());
        }
    }
}

proptest! {
    #[test]
    fn cache_matches_a_model(steps in proptest::collection::vec(step(), 1..200)) {
        let arena = Arc::new(Arena::new(64 * BLOCK_SIZE).unwrap());
        let config = CacheConfig { shards: 2, ..CacheConfig::with_max_pages(MAX_PAGES) };
        let cache = PageCache::new(arena.clone(), config).unwrap();
        let pool = PagePool::new(&cache, 2);
        let mut h = Harness { cache, pool, model: HashMap::new(), holds: Vec::new(), version: 0 };
        for step in steps {
            h.run(step);
        }
        // Teardown returns every page to the arena.
        let Harness { cache, pool, holds, .. } = h;
        drop(holds);
        drop(pool);
        drop(cache);
        prop_assert_eq!(arena.free_pages(), 64);
    }
}
