//! The per-thread page pool: the paper's pre-mapped page pool, over the registered arena.
//!
//! A miss takes a page with [`PagePool::take`] (a `Vec::pop`: O(1), no lock, the pool belongs to
//! one thread). Pages are registered with the device already (they are arena pages), so the read
//! needs no mapping. [`PagePool::refill`] is meant to run *after* the read is submitted, while the
//! device works: it first drains the deferred-release list (pages the thread
//! [`release`](PagePool::release)d: duplicates, uncached reads; the paper's lazy release), then
//! takes pages the cache reclaimed, then free arena pages, and when the arena is exhausted evicts
//! from the cache.
//!
//! # Invariants
//! - Every page in `free` and `deferred` is a one-page `Buf` of `arena`, owned by the pool alone.
//! - `free.len() <= capacity_pages` after `refill`; surplus deferred pages go back to the arena.
//!
//! Dropping the pool returns its pages to the arena.

use crate::error::CacheError;
use crate::{Key, PageCache};
use aios_device::{Arena, Buf, BLOCK_SIZE};
use std::sync::Arc;

/// One thread's pool of pre-registered pages.
#[derive(Debug)]
pub struct PagePool {
    arena: Arc<Arena>,
    free: Vec<Buf>,
    deferred: Vec<Buf>,
    capacity_pages: usize,
}

impl PagePool {
    /// A pool of up to `capacity_pages` pages of the cache's arena, filled now (as far as the
    /// arena and the cache allow).
    pub fn new(cache: &PageCache, capacity_pages: usize) -> PagePool {
        let mut pool = PagePool {
            arena: cache.arena().clone(),
            free: Vec::with_capacity(capacity_pages),
            deferred: Vec::with_capacity(capacity_pages),
            capacity_pages,
        };
        pool.refill(cache);
        pool
    }

    /// A page, if the pool has one. O(1), no lock, no system call.
    pub fn take(&mut self) -> Option<Buf> {
        self.free.pop()
    }

    /// A page for `key`'s read: from the pool, else after a refill.
    pub fn take_or_refill(&mut self, cache: &PageCache, key: Key) -> Result<Buf, CacheError> {
        if let Some(buf) = self.take() {
            return Ok(buf);
        }
        self.refill(cache);
        self.take().ok_or(CacheError::NoPage {
            key,
            max_pages: cache.max_pages(),
        })
    }

    /// Hands a page back. It is reused only after the next [`refill`](Self::refill) (lazy
    /// release): the caller may still be finishing with it on the critical path.
    /// A buffer of more than one page goes straight back to the arena.
    pub fn release(&mut self, buf: Buf) {
        if buf.len() == BLOCK_SIZE {
            self.deferred.push(buf);
        } else {
            self.arena.free(buf);
        }
    }

    /// Tops the pool up to its capacity. Returns how many pages were added.
    pub fn refill(&mut self, cache: &PageCache) -> usize {
        let before = self.free.len();
        while self.free.len() < self.capacity_pages {
            match self.deferred.pop().or_else(|| cache.spare_page()) {
                Some(buf) => self.free.push(buf),
                None => break,
            }
        }
        for buf in self.deferred.drain(..) {
            self.arena.free(buf);
        }
        self.free.len() - before
    }

    /// Pages ready for [`take`](Self::take).
    pub fn len(&self) -> usize {
        self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.free.is_empty()
    }

    pub fn capacity_pages(&self) -> usize {
        self.capacity_pages
    }
}

impl Drop for PagePool {
    fn drop(&mut self) {
        for buf in self.free.drain(..).chain(self.deferred.drain(..)) {
            self.arena.free(buf);
        }
    }
}
