//! Failed reads (injected EIO) reach the filler and every waiter as typed errors, leave no
//! up-to-date page, and the next read succeeds. Plus a deterministic duplicate I/O.

mod common;

use aios_block::BlockQueue;
use aios_cache::{
    error::EIO, CacheConfig, CacheError, Insert, InsertOrder, Key, PageCache, PagePool, PageState,
};
use aios_device::{Device, DeviceError, FaultPlan, Op, OpFilter, QueueConfig, BLOCK_SIZE};
use aios_device_emu::EmuDevice;
use common::{check_pattern, read_page, write_pattern};

fn setup() -> (EmuDevice, PageCache) {
    let dev = EmuDevice::open("instant,size=16M,arena=4M").expect("emu device");
    let mut q = BlockQueue::open(&dev, QueueConfig::default()).expect("queue");
    write_pattern(&mut q, dev.arena(), 8);
    let cache = PageCache::new(dev.arena().clone(), CacheConfig::with_max_pages(64)).unwrap();
    (dev, cache)
}

fn failed_read_is_reported_everywhere(order: InsertOrder) {
    let (dev, cache) = setup();
    let mut q = BlockQueue::open(&dev, QueueConfig::default()).unwrap();
    let mut pool = PagePool::new(&cache, 4);
    let key = Key::new(1, 5);
    // The filler's read fails; a waiter thread that found the locked page gets the error too.
    let ticket = match cache.insert(key, order) {
        Insert::Fill(ticket) => ticket,
        other => panic!("fresh key: {other:?}"),
    };
    let waiter = cache.lookup(key).expect("locked page is indexed");
    assert_eq!(waiter.state(), PageState::Locked);
    dev.faults().arm(FaultPlan::nth(0, OpFilter::Reads));
    let waited = std::thread::scope(|s| {
        let waiting = s.spawn(|| {
            let mut out = vec![0u8; BLOCK_SIZE];
            cache.copy_out(&waiter, 0, &mut out)
        });
        let buf = pool.take().unwrap();
        let done = q
            .run(Op::Read, key.page_index * BLOCK_SIZE as u64, [buf])
            .unwrap();
        let result = done.result.clone();
        let buf = done.bufs.into_iter().next().unwrap();
        let failed = cache.complete_fill(ticket, buf, result).unwrap_err();
        assert!(
            matches!(
                failed.error,
                CacheError::Fill { key: k, source: DeviceError::Io { errno: EIO, .. } } if k == key
            ),
            "{:?}",
            failed.error
        );
        pool.release(failed.buf);
        waiting.join().unwrap()
    });
    assert_eq!(
        waited,
        Err(CacheError::FillFailedElsewhere { key, errno: EIO })
    );
    assert_eq!(waiter.state(), PageState::Failed { errno: EIO });
    assert!(waiter.bytes(cache.arena()).is_none());
    assert!(!cache.contains(key), "no poisoned page left behind");
    assert_eq!(cache.resident_pages(), 0);
    assert_eq!(cache.stats().fill_failures, 1);
    // The next read retries and gets the data.
    let mut out = vec![0u8; BLOCK_SIZE];
    read_page(&cache, &mut pool, &mut q, key, order, &mut out).unwrap();
    check_pattern(&out, key.page_index);
    assert!(cache.contains(key));
}

#[test]
fn failed_read_vanilla_order() {
    failed_read_is_reported_everywhere(InsertOrder::BeforeSubmit);
}

#[test]
fn failed_read_lazy_order() {
    failed_read_is_reported_everywhere(InsertOrder::AfterSubmit);
}

#[test]
fn a_failed_duplicate_read_leaves_the_cached_page_intact() {
    let (dev, cache) = setup();
    let mut q = BlockQueue::open(&dev, QueueConfig::default()).unwrap();
    let mut pool = PagePool::new(&cache, 4);
    let key = Key::new(1, 2);
    let mut out = vec![0u8; BLOCK_SIZE];
    read_page(
        &cache,
        &mut pool,
        &mut q,
        key,
        InsertOrder::AfterSubmit,
        &mut out,
    )
    .unwrap();
    // A read that misses in between (simulated by inserting directly) and fails: error, cache
    // untouched.
    dev.faults().arm(FaultPlan::nth(0, OpFilter::Reads));
    let buf = pool.take().unwrap();
    let done = q.run(Op::Read, 2 * BLOCK_SIZE as u64, [buf]).unwrap();
    assert!(matches!(cache.insert_filled_later(key), Insert::Present(_)));
    assert!(done.result.is_err());
    done.bufs.into_iter().for_each(|b| pool.release(b));
    let page = cache.lookup(key).unwrap();
    cache.copy_out(&page, 0, &mut out).unwrap();
    check_pattern(&out, 2);
}

/// Two readers of one cold page, interleaved by hand on one thread: both submit before either
/// inserts. The second insertion finds the first's page: a duplicate, counted; both get the data.
#[test]
fn lazy_insertion_race_is_a_counted_duplicate_with_correct_data() {
    let (dev, cache) = setup();
    let mut q1 = BlockQueue::open(&dev, QueueConfig::default()).unwrap();
    let mut q2 = BlockQueue::open(&dev, QueueConfig::default()).unwrap();
    let mut pool1 = PagePool::new(&cache, 2);
    let mut pool2 = PagePool::new(&cache, 2);
    let key = Key::new(1, 6);
    let offset = 6 * BLOCK_SIZE as u64;
    assert!(cache.lookup(key).is_none() && cache.lookup(key).is_none());
    let t1 = q1.stage(Op::Read, offset, [pool1.take().unwrap()]).unwrap();
    q1.submit().unwrap();
    let t2 = q2.stage(Op::Read, offset, [pool2.take().unwrap()]).unwrap();
    q2.submit().unwrap();
    let Insert::Fill(ticket) = cache.insert_filled_later(key) else {
        panic!("first insertion wins");
    };
    let Insert::Present(theirs) = cache.insert_filled_later(key) else {
        panic!("second insertion finds the first");
    };
    assert_eq!(theirs.state(), PageState::Locked);
    q1.wait(1).unwrap();
    let done1 = q1.finish(t1);
    q2.wait(1).unwrap();
    let done2 = q2.finish(t2);
    // The loser copies from its own page (its read is complete and correct) and releases it.
    let own = done2.bufs.into_iter().next().unwrap();
    check_pattern(cache.arena().bytes(&own), 6);
    pool2.release(own);
    let buf1 = done1.bufs.into_iter().next().unwrap();
    let page = cache.complete_fill(ticket, buf1, done1.result).unwrap();
    let mut out = vec![0u8; BLOCK_SIZE];
    cache.copy_out(&theirs, 0, &mut out).unwrap();
    check_pattern(&out, 6);
    cache.copy_out(&page, 0, &mut out).unwrap();
    check_pattern(&out, 6);
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.inserts, stats.duplicates), (2, 1, 1));
}

#[test]
fn a_short_read_is_not_published() {
    let (_dev, cache) = setup();
    let mut pool = PagePool::new(&cache, 1);
    let key = Key::new(9, 9);
    let Insert::Fill(ticket) = cache.insert_locked(key) else {
        panic!("fresh key");
    };
    let failed = cache
        .complete_fill(ticket, pool.take().unwrap(), Ok(512))
        .unwrap_err();
    assert!(matches!(
        failed.error,
        CacheError::BadFill {
            read_bytes: 512,
            ..
        }
    ));
    assert!(!cache.contains(key));
    pool.release(failed.buf);
}
