//! Single-thread semantics without a device: fills are written by hand into pool pages.

use aios_cache::{CacheConfig, CacheError, Cached, Insert, Key, PageCache, PagePool, PageState};
use aios_device::{Arena, BLOCK_SIZE};
use std::sync::Arc;

fn cache(arena_pages: usize, max_pages: usize) -> PageCache {
    let arena = Arc::new(Arena::new(arena_pages * BLOCK_SIZE).unwrap());
    PageCache::new(arena, CacheConfig::with_max_pages(max_pages)).unwrap()
}

/// Inserts `key` (vanilla order) and fills it with `byte`, as a completed read would.
fn fill(cache: &PageCache, pool: &mut PagePool, key: Key, byte: u8) -> Result<(), CacheError> {
    let Insert::Fill(ticket) = cache.insert_locked(key) else {
        panic!("{key}: expected a fresh key");
    };
    let mut buf = pool.take_or_refill(cache, key)?;
    cache.arena().bytes_mut(&mut buf).fill(byte);
    cache
        .complete_fill(ticket, buf, Ok(BLOCK_SIZE as u32))
        .map(drop)
        .map_err(|f| f.error)
}

fn read(cache: &PageCache, key: Key) -> Option<Vec<u8>> {
    let page = cache.lookup(key)?;
    let mut out = vec![0u8; BLOCK_SIZE];
    cache.copy_out(&page, 0, &mut out).expect("up to date");
    Some(out)
}

#[test]
fn miss_fill_hit_returns_the_same_bytes() {
    let cache = cache(16, 8);
    let mut pool = PagePool::new(&cache, 2);
    let key = Key::new(7, 3);
    assert!(cache.lookup(key).is_none());
    fill(&cache, &mut pool, key, 0xa5).unwrap();
    let page = cache.lookup(key).expect("hit");
    assert_eq!(page.state(), PageState::UpToDate);
    let mut out = [0u8; 100];
    cache.copy_out(&page, 4000, &mut out[..96]).unwrap();
    assert!(out[..96].iter().all(|&b| b == 0xa5));
    assert_eq!(read(&cache, key), Some(vec![0xa5; BLOCK_SIZE]));
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.inserts), (2, 1, 1));
    assert!(matches!(
        cache.copy_out(&page, 4000, &mut out),
        Err(CacheError::Range { key: k, .. }) if k == key
    ));
}

#[test]
fn read_cached_copies_hits_hands_out_filling_pages_and_counts_like_lookup() {
    let cache = cache(16, 8);
    let mut pool = PagePool::new(&cache, 2);
    let done = Key::new(9, 0);
    let filling = Key::new(9, 1);
    fill(&cache, &mut pool, done, 0x3c).unwrap();
    let Insert::Fill(ticket) = cache.insert_locked(filling) else {
        panic!("fresh key");
    };
    let mut out = [0u8; 96];
    assert!(matches!(
        cache.read_cached(done, 4000, &mut out).unwrap(),
        Cached::Copied
    ));
    assert!(out.iter().all(|&b| b == 0x3c));
    // A page still being filled is not copied: the caller gets it to wait on.
    let mut untouched = [0u8; 8];
    let Cached::Filling(page) = cache.read_cached(filling, 0, &mut untouched).unwrap() else {
        panic!("expected the locked page");
    };
    assert_eq!(page.state(), PageState::Locked);
    assert_eq!(untouched, [0; 8]);
    assert!(matches!(
        cache.read_cached(Key::new(9, 2), 0, &mut out).unwrap(),
        Cached::Missing
    ));
    assert!(matches!(
        cache.read_cached(done, 4001, &mut out),
        Err(CacheError::Range { key, .. }) if key == done
    ));
    // `Missing` is the caller's to count (it may be a hole).
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses), (2, 0));
    cache.count_miss();
    assert_eq!(cache.stats().misses, 1);
    drop(page);
    drop(ticket);
    // The abandoned fill left the index: a miss now, and no wrong bytes ever copied.
    assert!(matches!(
        cache.read_cached(filling, 0, &mut out).unwrap(),
        Cached::Missing
    ));
}

#[test]
fn eviction_respects_the_cap_and_never_takes_a_held_page() {
    let max_pages = 4;
    let cache = cache(64, max_pages);
    let mut pool = PagePool::new(&cache, 2);
    fill(&cache, &mut pool, Key::new(1, 0), 0).unwrap();
    let held = cache.lookup(Key::new(1, 0)).unwrap();
    for page in 1..40u64 {
        fill(&cache, &mut pool, Key::new(1, page), page as u8).unwrap();
        assert!(cache.resident_pages() <= max_pages);
        assert!(cache.contains(Key::new(1, 0)), "held page evicted");
        assert!(cache.contains(Key::new(1, page)), "newest page missing");
    }
    assert_eq!(held.bytes(cache.arena()), Some(&[0u8; BLOCK_SIZE][..]));
    assert_eq!(cache.stats().evictions, 39 - 3);
    // Once released, the formerly held page is evictable again.
    drop(held);
    let evicted: Vec<Key> = std::iter::from_fn(|| cache.evict().map(|e| e.key)).collect();
    assert!(evicted.contains(&Key::new(1, 0)));
    assert_eq!(cache.resident_pages(), 0);
}

#[test]
fn clock_gives_a_hit_page_a_second_chance() {
    let arena = Arc::new(Arena::new(16 * BLOCK_SIZE).unwrap());
    let config = CacheConfig {
        shards: 1,
        ..CacheConfig::with_max_pages(8)
    };
    let cache = PageCache::new(arena, config).unwrap();
    let mut pool = PagePool::new(&cache, 4);
    let [a, b, c] = [0, 1, 2].map(|page| Key::new(1, page));
    for key in [a, b, c] {
        fill(&cache, &mut pool, key, 1).unwrap();
    }
    // New pages start unreferenced: the hand takes the oldest.
    assert_eq!(cache.evict().map(|e| e.key), Some(a));
    // A hit on b sets its bit again: the hand passes over b and takes c.
    assert!(cache.lookup(b).is_some());
    assert_eq!(cache.evict().map(|e| e.key), Some(c));
    assert_eq!(cache.evict().map(|e| e.key), Some(b));
    assert!(cache.evict().is_none());
}

#[test]
fn a_full_cache_of_held_pages_reads_uncached() {
    let cache = cache(16, 2);
    let mut pool = PagePool::new(&cache, 2);
    fill(&cache, &mut pool, Key::new(1, 0), 1).unwrap();
    fill(&cache, &mut pool, Key::new(1, 1), 2).unwrap();
    let _a = cache.lookup(Key::new(1, 0)).unwrap();
    let _b = cache.lookup(Key::new(1, 1)).unwrap();
    assert!(matches!(
        cache.insert_filled_later(Key::new(1, 2)),
        Insert::Uncached
    ));
    assert!(cache.evict().is_none());
    assert_eq!(cache.stats().uncached, 1);
}

#[test]
fn evicted_pages_are_reused_from_the_pool() {
    // Arena of 4 pages, all of them ending up in the cache.
    let cache = cache(4, 100);
    let mut pool = PagePool::new(&cache, 1);
    for page in 0..4u64 {
        fill(&cache, &mut pool, Key::new(1, page), page as u8).unwrap();
    }
    assert_eq!((cache.arena().free_pages(), pool.len()), (0, 0));
    assert_eq!(cache.resident_pages(), 4);
    // The arena is exhausted: the refill evicts a cached page and takes its memory.
    assert_eq!(pool.refill(&cache), 1);
    assert_eq!(cache.resident_pages(), 3);
    assert_eq!(cache.stats().evictions, 1);
    assert_eq!(
        cache.arena().free_pages(),
        0,
        "the page came from the cache"
    );
    // A fill on the reused page is correct, and the survivors are untouched.
    fill(&cache, &mut pool, Key::new(2, 0), 0xee).unwrap();
    assert_eq!(read(&cache, Key::new(2, 0)), Some(vec![0xee; BLOCK_SIZE]));
    for page in 0..4u64 {
        if let Some(bytes) = read(&cache, Key::new(1, page)) {
            assert_eq!(bytes, vec![page as u8; BLOCK_SIZE]);
        }
    }
}

#[test]
fn room_made_by_an_insertion_goes_to_the_next_refill() {
    let cache = cache(16, 2);
    let mut pool = PagePool::new(&cache, 1);
    for page in 0..2u64 {
        fill(&cache, &mut pool, Key::new(1, page), 9).unwrap();
    }
    assert!(pool.is_empty());
    let free_before = cache.arena().free_pages();
    // The cache is full: this insertion evicts, parks the page, and the fill's refill takes it.
    fill(&cache, &mut pool, Key::new(1, 2), 9).unwrap();
    assert_eq!(cache.stats().evictions, 1);
    assert_eq!(
        cache.arena().free_pages(),
        free_before,
        "the evicted page was reused, not a new arena page"
    );
    assert_eq!(cache.resident_pages(), 2);
}

#[test]
fn released_pages_wait_for_the_refill() {
    let cache = cache(8, 8);
    let mut pool = PagePool::new(&cache, 2);
    let a = pool.take().unwrap();
    let b = pool.take().unwrap();
    assert!(pool.take().is_none());
    pool.release(a);
    pool.release(b);
    assert!(pool.is_empty(), "lazy release: not reusable before refill");
    assert_eq!(cache.arena().free_pages(), 6);
    assert_eq!(pool.refill(&cache), 2);
    assert_eq!(
        cache.arena().free_pages(),
        6,
        "refilled from the released pages"
    );
    drop(pool);
    drop(cache);
}

#[test]
fn a_dropped_ticket_fails_its_waiters_and_a_stuck_page_times_out() {
    let arena = Arc::new(Arena::new(8 * BLOCK_SIZE).unwrap());
    let config = CacheConfig {
        wait_timeout_ms: 1,
        ..CacheConfig::with_max_pages(4)
    };
    let cache = PageCache::new(arena, config).unwrap();
    let key = Key::new(3, 3);
    let Insert::Fill(ticket) = cache.insert_locked(key) else {
        panic!("fresh key");
    };
    let waiter = cache.lookup(key).unwrap();
    let mut out = [0u8; 8];
    assert!(matches!(
        cache.copy_out(&waiter, 0, &mut out),
        Err(CacheError::WaitTimeout { key: k, .. }) if k == key
    ));
    drop(ticket);
    assert_eq!(
        cache.copy_out(&waiter, 0, &mut out),
        Err(CacheError::FillFailedElsewhere {
            key,
            errno: aios_cache::error::ECANCELED
        })
    );
    assert!(!cache.contains(key));
    assert_eq!(cache.resident_pages(), 0);
}

#[test]
fn bad_configurations_are_refused() {
    let arena = Arc::new(Arena::new(BLOCK_SIZE).unwrap());
    for config in [
        CacheConfig::with_max_pages(0),
        CacheConfig {
            shards: 0,
            ..CacheConfig::with_max_pages(1)
        },
    ] {
        assert!(matches!(
            PageCache::new(arena.clone(), config),
            Err(CacheError::BadConfig { .. })
        ));
    }
}
