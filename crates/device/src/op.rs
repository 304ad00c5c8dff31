//! The words a command is made of: its operation ([`Op`]), its tag ([`Tag`]) and the arena memory
//! it names ([`Segment`]).
//!
//! A leaf of the crate: plain values with no behaviour beyond naming themselves, shared by the
//! arena (which makes segments), the errors (which name the op and tag that failed) and the
//! commands built from them (`command.rs`). It imports nothing from the crate, so those files can
//! all depend on it without depending on each other.

/// A command's identity within one queue: `0..depth`. The block layer uses the request slot index.
pub type Tag = u16;

/// What the device is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Read `len` bytes at the offset into the segments.
    Read,
    /// Write the segments at the offset. `fua`: durable when the completion arrives.
    Write { fua: bool },
    /// Make every write completed before this flush was issued durable.
    Flush,
}

impl Op {
    /// A short lowercase name for errors and logs.
    pub fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write { fua: false } => "write",
            Op::Write { fua: true } => "write+fua",
            Op::Flush => "flush",
        }
    }

    /// True for reads and writes, which carry data.
    pub fn has_data(self) -> bool {
        !matches!(self, Op::Flush)
    }
}

/// A byte range of the [`Arena`](crate::Arena). Built from a [`crate::Buf`] (`buf.segment()`), so
/// a segment names memory its creator owned; it stays valid for the arena's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Byte offset from the start of the arena.
    pub arena_offset: u64,
    /// Length in bytes.
    pub len: u32,
}
