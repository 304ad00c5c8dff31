//! Sequential readahead for cached reads (window [`crate::MountOptions::readahead_pages`], 32
//! pages by default, 0 turns it off).
//!
//! # Role
//! A [`File`] handle remembers where its last [`Fs::read`] ended. A read that starts there is
//! sequential; it then keeps a *frontier* (the first page not yet read ahead) up to one window
//! past the read's end: before the read's own pages are looked up, the next uncached pages of
//! the same written extent (at most the window, at most 128 KiB) are submitted as one
//! asynchronous request. The request stays in flight while the read copies its own bytes out and
//! returns, so the device works during the copy-out and between the caller's reads.
//!
//! # Lazy insertion, at reap time
//! A pending readahead is reaped at the start of a later read on the same context: without
//! blocking if it is done, or blocking if the new read needs its pages. Its pages are then
//! inserted with `insert_filled_later` (after the submit, as the AIOS order does) and published
//! with `complete_fill`; a page another thread cached meanwhile makes ours a counted duplicate,
//! released to its pool. While in flight the pages are not in the cache, so no other reader ever
//! waits on a request that only this thread can reap.
//!
//! # Promises
//! - Readahead never changes what a read returns; a failed readahead caches nothing and is only
//!   counted ([`ReadaheadStats::failed`]): the next read of those pages reads them itself.
//! - At most [`RA_PENDING_MAX`] readahead requests are in flight per context; none is started
//!   when the queue has no free request.
//! - [`Fs::finish_readahead`] reaps everything (call it before reading cache statistics: a
//!   pending readahead's lookups have missed but it has not inserted yet). Dropping the context
//!   waits for its pending requests and frees their pages.

use std::sync::atomic::Ordering;

use aios_cache::Insert;
use aios_device::{Device, BLOCK_SIZE, SEGMENTS_MAX};

use crate::io::wait;
use crate::miss::{alloc_page, in_address_order, key, map, page_result, release_page, submit};
use crate::readahead_state::Pending;
use crate::{File, Fs, IoCtx};

const BLOCK_BYTES: u64 = BLOCK_SIZE as u64;
/// Readahead requests in flight per context, at most.
pub const RA_PENDING_MAX: usize = 2;

impl<D: Device> Fs<D> {
    /// Reaps every pending readahead of `io`, waiting for those still in flight.
    pub fn finish_readahead(&self, io: &mut IoCtx<D::Queue>) {
        while let Some(p) = io.readahead.pop() {
            self.reap_one(io, p);
        }
    }

    /// Before a read of pages `[first, end)` of `file`: reaps finished readaheads, and waits for
    /// those holding pages the read needs.
    pub(crate) fn reap_readahead(
        &self,
        io: &mut IoCtx<D::Queue>,
        file: &File,
        first: u64,
        end: u64,
    ) {
        if io.readahead.is_empty() {
            return;
        }
        // A poll: marks finished requests done without blocking (an error surfaces later).
        let _ = io.queue.wait(0);
        let mut i = 0;
        while let Some(&p) = io.readahead.get(i) {
            let done = io.queue.request(p.tag).state() == aios_block::State::Done;
            let needed = p.cache == file.cache
                && p.first_page < end
                && first < p.first_page + p.pages as u64;
            if done || needed {
                io.readahead.swap_remove(i);
                self.reap_one(io, p);
            } else {
                i += 1;
            }
        }
    }

    /// Waits for one readahead, then inserts and publishes its pages (lazy insertion).
    fn reap_one(&self, io: &mut IoCtx<D::Queue>, p: Pending) {
        let Ok(done) = wait(&mut io.queue, p.tag) else {
            io.readahead_stats.failed += 1;
            return;
        };
        if done.result.is_err() {
            io.readahead_stats.failed += 1;
        }
        let cache = &self.cache;
        for (i, buf) in done.bufs.into_iter().enumerate() {
            let key = p.cache.key(p.first_page + i as u64);
            let result = page_result(&done.result, i);
            match cache.insert_filled_later(key) {
                Insert::Fill(ticket) => match cache.complete_fill(ticket, buf, result) {
                    Ok(_) => io.readahead_stats.cached_pages += 1,
                    Err(failed) => release_page(cache, io.page_pool.as_mut(), failed.buf),
                },
                Insert::Present(_) | Insert::Uncached => {
                    release_page(cache, io.page_pool.as_mut(), buf)
                }
            }
        }
    }

    /// Starts the next window's readahead if this read of `[offset, end)` is sequential.
    pub(crate) fn start_readahead(
        &self,
        io: &mut IoCtx<D::Queue>,
        file: &File,
        offset: u64,
        end: u64,
    ) {
        let window = self.options.readahead_pages.min(SEGMENTS_MAX) as u64;
        let seq = &file.seq;
        if window == 0 || seq.random.load(Ordering::Relaxed) {
            return;
        }
        // A load and a store, not a swap: threads sharing a handle may race here, which only
        // blurs sequential detection, and a locked instruction per read is not free.
        let sequential = seq.next_offset_bytes.load(Ordering::Relaxed) == offset;
        seq.next_offset_bytes.store(end, Ordering::Relaxed);
        if !sequential {
            seq.frontier_page.store(0, Ordering::Relaxed);
            return;
        }
        let end_page = end.div_ceil(BLOCK_BYTES);
        let frontier = seq.frontier_page.load(Ordering::Relaxed);
        let size_pages = file.size_bytes().div_ceil(BLOCK_BYTES);
        let from = frontier.max(end_page);
        if frontier >= end_page + window
            || from >= size_pages
            || io.readahead.len() >= RA_PENDING_MAX
            || !io.queue.has_free_slot()
        {
            return;
        }
        let max_pages = match file.extents().find(from) {
            Some(m) if !m.unwritten => (m.end_block().min(size_pages) - from).min(window),
            _ => 0,
        };
        let cache = &self.cache;
        let mut pages = 0;
        while pages < max_pages && cache.lookup(key(file, from + pages)).is_none() {
            pages += 1;
        }
        // Past what was looked at, cached or not: the next sequential read moves on from there.
        seq.frontier_page
            .store(from + pages.max(1), Ordering::Relaxed);
        if pages == 0 {
            return;
        }
        self.submit_readahead(io, file, from, pages as usize);
    }

    fn submit_readahead(&self, io: &mut IoCtx<D::Queue>, file: &File, from: u64, pages: usize) {
        let cache = &self.cache;
        let mut bufs = aios_block::Bufs::new();
        for i in 0..pages {
            match alloc_page(cache, io.page_pool.as_mut(), key(file, from + i as u64)) {
                Ok(buf) => bufs.push(buf),
                Err(_) => break,
            }
        }
        in_address_order(&mut bufs);
        let pages = bufs.len();
        let offset_bytes = match map(file, from) {
            Ok(offset_bytes) if pages > 0 => offset_bytes,
            _ => {
                for buf in bufs {
                    release_page(cache, io.page_pool.as_mut(), buf);
                }
                return;
            }
        };
        let submitted = submit(&mut io.queue, offset_bytes, bufs);
        match submitted {
            Ok(tag) => {
                io.readahead_stats.requests += 1;
                io.readahead_stats.pages += pages as u64;
                io.readahead.push(Pending {
                    tag,
                    cache: file.cache,
                    first_page: from,
                    pages,
                });
            }
            Err((_, bufs)) => {
                for buf in bufs {
                    release_page(cache, io.page_pool.as_mut(), buf);
                }
            }
        }
    }
}
