//! Shared test helpers: a known data pattern, and the two read protocols written out step by step
//! over a real block queue, exactly as the file system will run them.

#![allow(dead_code)]

use aios_block::{BlockQueue, Finished, State};
use aios_cache::{CacheError, Insert, InsertOrder, Key, PageCache, PagePool};
use aios_device::{Buf, Op, Queue, BLOCK_SIZE};

/// The byte at `offset` of device page `page`: differs between pages and within a page.
pub fn pattern(page: u64, offset: usize) -> u8 {
    let mixed = page.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56;
    (mixed as usize ^ offset.wrapping_mul(131) ^ (offset >> 8)) as u8
}

pub fn fill_pattern(bytes: &mut [u8], page: u64) {
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = pattern(page, i);
    }
}

/// Asserts `bytes` hold page `page` of the pattern, naming the first wrong byte.
pub fn check_pattern(bytes: &[u8], page: u64) {
    assert_eq!(bytes.len(), BLOCK_SIZE);
    if let Some(i) = (0..BLOCK_SIZE).find(|&i| bytes[i] != pattern(page, i)) {
        panic!(
            "page {page} byte {i}: got {} want {}",
            bytes[i],
            pattern(page, i)
        );
    }
}

/// Writes the pattern to device pages `0..pages`.
pub fn write_pattern<Q: Queue>(q: &mut BlockQueue<Q>, arena: &aios_device::Arena, pages: u64) {
    for page in 0..pages {
        let mut buf = arena.alloc(1).expect("arena page");
        fill_pattern(arena.bytes_mut(&mut buf), page);
        let done = q
            .run(Op::Write { fua: false }, page * BLOCK_SIZE as u64, [buf])
            .expect("write staged");
        done.result.expect("pattern write");
        for buf in done.bufs {
            arena.free(buf);
        }
    }
}

fn wait_for<Q: Queue>(q: &mut BlockQueue<Q>, tag: aios_device::Tag) -> Finished {
    while q.request(tag).state() != State::Done {
        q.wait(1).expect("reap");
    }
    q.finish(tag)
}

/// Stages and submits a read of one page into `buf`; on refusal the page goes back to the pool.
fn submit_read<Q: Queue>(
    q: &mut BlockQueue<Q>,
    pool: &mut PagePool,
    key: Key,
    buf: Buf,
) -> Result<aios_device::Tag, CacheError> {
    let offset_bytes = key.page_index * BLOCK_SIZE as u64;
    match q.stage(Op::Read, offset_bytes, [buf]) {
        Ok(tag) => {
            q.submit().expect("submit");
            Ok(tag)
        }
        Err(refused) => {
            refused.bufs.into_iter().for_each(|b| pool.release(b));
            Err(CacheError::Fill {
                key,
                source: refused.error,
            })
        }
    }
}

fn one_buf(mut done: Finished) -> Buf {
    done.bufs.pop().expect("a read returns its page")
}

/// Reads `key` (device page = `key.page_index`) through the cache in the given order.
pub fn read_page<Q: Queue>(
    cache: &PageCache,
    pool: &mut PagePool,
    q: &mut BlockQueue<Q>,
    key: Key,
    order: InsertOrder,
    out: &mut [u8],
) -> Result<(), CacheError> {
    if let Some(page) = cache.lookup(key) {
        return cache.copy_out(&page, 0, out);
    }
    match order {
        InsertOrder::BeforeSubmit => read_vanilla(cache, pool, q, key, out),
        InsertOrder::AfterSubmit => read_lazy(cache, pool, q, key, out),
    }
}

/// Vanilla: insert a locked page, then take memory, submit, wait, publish, copy out.
fn read_vanilla<Q: Queue>(
    cache: &PageCache,
    pool: &mut PagePool,
    q: &mut BlockQueue<Q>,
    key: Key,
    out: &mut [u8],
) -> Result<(), CacheError> {
    let ticket = match cache.insert_locked(key) {
        Insert::Present(page) => return cache.copy_out(&page, 0, out),
        Insert::Fill(ticket) => Some(ticket),
        Insert::Uncached => None,
    };
    let buf = pool.take_or_refill(cache, key)?;
    let tag = submit_read(q, pool, key, buf)?;
    let done = wait_for(q, tag);
    let result = done.result.clone();
    let buf = one_buf(done);
    finish(cache, pool, key, ticket, buf, result, out)
}

/// AIOS: take a pool page, submit, insert while the device works, refill, wait, then publish or
/// (duplicate) copy from the caller's own page.
fn read_lazy<Q: Queue>(
    cache: &PageCache,
    pool: &mut PagePool,
    q: &mut BlockQueue<Q>,
    key: Key,
    out: &mut [u8],
) -> Result<(), CacheError> {
    let buf = pool.take_or_refill(cache, key)?;
    let tag = submit_read(q, pool, key, buf)?;
    let ticket = match cache.insert_filled_later(key) {
        Insert::Fill(ticket) => Some(ticket),
        Insert::Present(_) | Insert::Uncached => None,
    };
    pool.refill(cache);
    let done = wait_for(q, tag);
    let result = done.result.clone();
    let buf = one_buf(done);
    finish(cache, pool, key, ticket, buf, result, out)
}

/// The common tail: publish and copy from the cache, or copy from our own page and release it.
fn finish(
    cache: &PageCache,
    pool: &mut PagePool,
    key: Key,
    ticket: Option<aios_cache::FillTicket<'_>>,
    buf: Buf,
    result: Result<u32, aios_device::DeviceError>,
    out: &mut [u8],
) -> Result<(), CacheError> {
    match ticket {
        Some(ticket) => match cache.complete_fill(ticket, buf, result) {
            Ok(page) => cache.copy_out(&page, 0, out),
            Err(failed) => {
                pool.release(failed.buf);
                Err(failed.error)
            }
        },
        None => {
            let copied = match result {
                Ok(_) => {
                    out.copy_from_slice(&cache.arena().bytes(&buf)[..out.len()]);
                    Ok(())
                }
                Err(source) => Err(CacheError::Fill { key, source }),
            };
            pool.release(buf);
            copied
        }
    }
}
