//! [`SharedBuf`]: a filled arena buffer, frozen, that many may read at once: threads through
//! [`SharedBuf::bytes`], and any number of *write* commands, which only read their memory.
//! It is how a page the file system keeps (a dirty data page) goes to the device without a
//! copy while readers still see it (the kernel writes back page-cache pages the same way).
//!
//! # Invariants
//! - The pages are never written while the `SharedBuf` lives: it has no mutable access, and a
//!   device only reads the memory of a write. A read command never names a `SharedBuf` (the
//!   block layer offers shared buffers to writes only).
//! - The pages return to their arena when the last `SharedBuf` owner drops it: a command in
//!   flight keeps an owner (an `Arc`) until its completion is reaped.

use std::sync::Arc;

use crate::{Arena, Buf, Segment};

/// See the module documentation.
pub struct SharedBuf {
    /// `Some` until dropped.
    buf: Option<Buf>,
    arena: Arc<Arena>,
}

impl SharedBuf {
    /// Freezes `buf`, a buffer of `arena` its owner filled.
    ///
    /// # Panics
    /// If `buf` is not of `arena` (a programming error).
    pub fn new(arena: &Arc<Arena>, buf: Buf) -> SharedBuf {
        // Checks the arena.
        let _ = arena.bytes(&buf);
        SharedBuf {
            buf: Some(buf),
            arena: Arc::clone(arena),
        }
    }

    /// The contents.
    pub fn bytes(&self) -> &[u8] {
        match &self.buf {
            Some(buf) => self.arena.bytes(buf),
            None => &[],
        }
    }

    /// The whole buffer as a segment of a write command.
    pub fn segment(&self) -> Segment {
        match &self.buf {
            Some(buf) => buf.segment(),
            None => Segment {
                arena_offset: 0,
                len: 0,
            },
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.buf.as_ref().map_or(0, Buf::len)
    }

    /// Never true while it lives. Present for clippy's `len` convention.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True if this buffer's pages belong to `arena`.
    pub fn is_of(&self, arena: &Arena) -> bool {
        std::ptr::eq(Arc::as_ptr(&self.arena), arena)
    }
}

impl Drop for SharedBuf {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            self.arena.free(buf);
        }
    }
}

impl std::fmt::Debug for SharedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBuf").field("buf", &self.buf).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::SharedBuf;
    use crate::{Arena, BLOCK_SIZE};
    use std::sync::Arc;

    #[test]
    fn pages_go_back_at_the_last_drop() {
        let arena = Arc::new(Arena::new(4 * BLOCK_SIZE).unwrap());
        let mut buf = arena.alloc(2).unwrap();
        arena.bytes_mut(&mut buf).fill(7);
        let shared = Arc::new(SharedBuf::new(&arena, buf));
        let other = Arc::clone(&shared);
        assert_eq!(arena.free_pages(), 2);
        drop(shared);
        assert_eq!(arena.free_pages(), 2, "still owned by the other");
        assert!(other.bytes().iter().all(|&b| b == 7));
        assert_eq!(other.len(), 2 * BLOCK_SIZE);
        assert!(other.is_of(&arena));
        drop(other);
        assert_eq!(arena.free_pages(), 4);
    }
}
