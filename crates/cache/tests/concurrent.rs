//! Many threads reading the same cold pages over the emulated device, in both insertion orders:
//! every byte is checked, and the insertion accounting adds up.

mod common;

use aios_block::BlockQueue;
use aios_cache::{CacheConfig, Cached, InsertOrder, Key, PageCache, PagePool};
use aios_device::{Device, QueueConfig, BLOCK_SIZE};
use aios_device_emu::EmuDevice;
use common::{check_pattern, read_page, write_pattern};
use std::sync::Barrier;

const THREADS: usize = 8;
const KEYS: u64 = 256;
const POOL_PAGES: usize = 64;

fn device() -> EmuDevice {
    let dev = EmuDevice::open("ull,size=64M,arena=16M").expect("emu device");
    let mut q = BlockQueue::open(&dev, QueueConfig::default()).expect("queue");
    write_pattern(&mut q, dev.arena(), KEYS);
    dev
}

/// Every thread reads every key `rounds` times, starting together, checking every byte.
fn read_all(dev: &EmuDevice, cache: &PageCache, order: InsertOrder, rounds: usize) {
    let start = Barrier::new(THREADS);
    std::thread::scope(|s| {
        for thread in 0..THREADS {
            let start = &start;
            s.spawn(move || {
                let mut q = BlockQueue::open(dev, QueueConfig::default()).expect("queue");
                let mut pool = PagePool::new(cache, POOL_PAGES);
                let mut out = vec![0u8; BLOCK_SIZE];
                start.wait();
                for round in 0..rounds {
                    for page in 0..KEYS {
                        // Half the threads walk backwards, so races happen at both ends.
                        let page = if (thread + round) % 2 == 0 {
                            page
                        } else {
                            KEYS - 1 - page
                        };
                        let key = Key::new(1, page);
                        read_page(cache, &mut pool, &mut q, key, order, &mut out)
                            .unwrap_or_else(|e| panic!("thread {thread} {key}: {e}"));
                        check_pattern(&out, page);
                    }
                }
            });
        }
    });
}

fn same_cold_pages(order: InsertOrder) {
    let dev = device();
    let cache = PageCache::new(dev.arena().clone(), CacheConfig::with_max_pages(1024)).unwrap();
    read_all(&dev, &cache, order, 2);
    let stats = cache.stats();
    let reads = (THREADS as u64) * KEYS * 2;
    assert_eq!(stats.hits + stats.misses, reads, "{stats:?}");
    assert_eq!(
        stats.inserts + stats.duplicates + stats.raced + stats.uncached,
        stats.misses,
        "every miss ends in exactly one insertion outcome: {stats:?}"
    );
    assert_eq!(stats.inserts, KEYS, "each page inserted once: {stats:?}");
    assert_eq!(
        (stats.evictions, stats.uncached, stats.fill_failures),
        (0, 0, 0)
    );
    match order {
        InsertOrder::AfterSubmit => assert_eq!(stats.raced, 0),
        InsertOrder::BeforeSubmit => assert_eq!(stats.duplicates, 0),
    }
    assert_eq!(cache.resident_pages(), KEYS as usize);
    eprintln!("{order:?}: {stats:?}");
}

#[test]
fn many_threads_same_cold_pages_lazy_insertion() {
    same_cold_pages(InsertOrder::AfterSubmit);
}

#[test]
fn many_threads_same_cold_pages_vanilla_insertion() {
    same_cold_pages(InsertOrder::BeforeSubmit);
}

/// The same, with a cap of a quarter of the pages: eviction runs concurrently with readers.
#[test]
fn many_threads_under_a_small_cap_get_correct_data() {
    let dev = device();
    let max_pages = KEYS as usize / 4;
    let cache =
        PageCache::new(dev.arena().clone(), CacheConfig::with_max_pages(max_pages)).unwrap();
    for order in [InsertOrder::AfterSubmit, InsertOrder::BeforeSubmit] {
        read_all(&dev, &cache, order, 2);
        assert!(cache.resident_pages() <= max_pages);
    }
    let stats = cache.stats();
    assert_eq!(
        stats.inserts + stats.duplicates + stats.raced + stats.uncached,
        stats.misses,
        "{stats:?}"
    );
    assert!(stats.evictions > 0, "{stats:?}");
    assert_eq!(stats.fill_failures, 0);
}

/// Hits without the shard lock (`read_cached`'s first try) race eviction and the reuse of the
/// evicted memory for other keys' fills: a tiny cap over random keys makes every few reads
/// rewrite a page another thread may be copying. Every byte returned is the key's own.
#[test]
fn lock_free_hits_never_return_a_reused_pages_new_bytes() {
    let dev = device();
    let max_pages = 8;
    let cache =
        PageCache::new(dev.arena().clone(), CacheConfig::with_max_pages(max_pages)).unwrap();
    let start = Barrier::new(THREADS);
    std::thread::scope(|s| {
        for thread in 0..THREADS {
            let (start, cache, dev) = (&start, &cache, &dev);
            s.spawn(move || {
                let mut q = BlockQueue::open(dev, QueueConfig::default()).expect("queue");
                let mut pool = PagePool::new(cache, 4);
                let mut out = vec![0u8; BLOCK_SIZE];
                let mut x = thread as u64 + 1;
                start.wait();
                for _ in 0..20_000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Mostly a hot dozen keys (hits), sometimes any key (fills that evict).
                    let page = if x.is_multiple_of(4) {
                        x % KEYS
                    } else {
                        x % 12
                    };
                    let key = Key::new(1, page);
                    match cache.read_cached(key, 0, &mut out).expect("in range") {
                        Cached::Copied => {}
                        Cached::Filling(page) => cache.copy_out(&page, 0, &mut out).unwrap(),
                        Cached::Missing => read_page(
                            cache,
                            &mut pool,
                            &mut q,
                            key,
                            InsertOrder::AfterSubmit,
                            &mut out,
                        )
                        .unwrap_or_else(|e| panic!("thread {thread} {key}: {e}")),
                    }
                    check_pattern(&out, page);
                }
            });
        }
    });
    let stats = cache.stats();
    assert!(stats.evictions > 1000 && stats.hits > 10_000, "{stats:?}");
}
