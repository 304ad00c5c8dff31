//! Commands, completions and queue settings: what a backend's `push` takes, what `reap` returns,
//! and how a queue is configured.
//!
//! [`Io::validate`] is the one place that checks a command against the contract (alignment,
//! bounds, segment limits); every backend calls it in `push` before touching anything.
//! [`check_tag`] does the same for tags. The words a command is made of ([`Op`], [`Tag`],
//! [`Segment`]) live in `op.rs` and are re-exported here, so `command::Op` etc. still work.

pub use crate::op::{Op, Segment, Tag};
use crate::{Arena, DeviceError, BLOCK_SIZE, IO_BYTES_MAX, SEGMENTS_MAX};

/// One command as handed to [`crate::Queue::push`].
#[derive(Debug, Clone, Copy)]
pub struct Io<'a> {
    pub op: Op,
    /// Byte offset on the device. Ignored for [`Op::Flush`].
    pub offset_bytes: u64,
    /// Memory to read into or write from, in device order. Empty for [`Op::Flush`].
    pub segments: &'a [Segment],
}

impl<'a> Io<'a> {
    pub fn read(offset_bytes: u64, segments: &'a [Segment]) -> Self {
        Io {
            op: Op::Read,
            offset_bytes,
            segments,
        }
    }

    pub fn write(offset_bytes: u64, segments: &'a [Segment], fua: bool) -> Self {
        Io {
            op: Op::Write { fua },
            offset_bytes,
            segments,
        }
    }

    pub fn flush() -> Io<'static> {
        Io {
            op: Op::Flush,
            offset_bytes: 0,
            segments: &[],
        }
    }

    /// Checks the command against the contract and returns its data length in bytes
    /// (0 for a flush). Backends call this first in `push`.
    pub fn validate(&self, arena: &Arena, capacity_bytes: u64) -> Result<u32, DeviceError> {
        if !self.op.has_data() {
            if !self.segments.is_empty() {
                return Err(DeviceError::Invalid {
                    op: self.op,
                    reason: "a flush carries no data",
                });
            }
            return Ok(0);
        }
        if self.segments.is_empty() {
            return Err(DeviceError::Invalid {
                op: self.op,
                reason: "no data segments",
            });
        }
        if self.segments.len() > SEGMENTS_MAX {
            return Err(DeviceError::TooLarge {
                op: self.op,
                len_bytes: self.total_len(),
                segments: self.segments.len(),
            });
        }
        let block = BLOCK_SIZE as u64;
        if !self.offset_bytes.is_multiple_of(block) {
            return Err(DeviceError::Misaligned {
                op: self.op,
                what: "device offset",
                value: self.offset_bytes,
            });
        }
        for seg in self.segments {
            if seg.arena_offset % block != 0 {
                return Err(DeviceError::Misaligned {
                    op: self.op,
                    what: "buffer address",
                    value: seg.arena_offset,
                });
            }
            if seg.len == 0 || u64::from(seg.len) % block != 0 {
                return Err(DeviceError::Misaligned {
                    op: self.op,
                    what: "buffer length",
                    value: u64::from(seg.len),
                });
            }
            if !arena.contains(*seg) {
                return Err(DeviceError::Invalid {
                    op: self.op,
                    reason: "segment outside the arena",
                });
            }
        }
        let len = self.total_len();
        if len > IO_BYTES_MAX as u64 {
            return Err(DeviceError::TooLarge {
                op: self.op,
                len_bytes: len,
                segments: self.segments.len(),
            });
        }
        let end = self.offset_bytes.checked_add(len);
        if end.is_none_or(|end| end > capacity_bytes) {
            return Err(DeviceError::OutOfRange {
                op: self.op,
                offset_bytes: self.offset_bytes,
                len_bytes: len,
                capacity_bytes,
            });
        }
        // Bounded by IO_BYTES_MAX above.
        Ok(len as u32)
    }

    fn total_len(&self) -> u64 {
        self.segments.iter().map(|s| u64::from(s.len)).sum()
    }
}

/// Checks a tag for `push`: `busy` is the state of the tag's slot, `None` when the tag is outside
/// `0..depth`. Every backend refuses bad tags with the same error.
pub fn check_tag(tag: Tag, depth: u16, busy: Option<bool>) -> Result<(), DeviceError> {
    let reason = match busy {
        None => "out of range",
        Some(true) => "already outstanding",
        Some(false) => return Ok(()),
    };
    Err(DeviceError::BadTag { tag, depth, reason })
}

/// The end of a command, in any order relative to others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub tag: Tag,
    /// Bytes transferred (0 for a flush), or what went wrong.
    pub result: Result<u32, DeviceError>,
}

/// How a queue notices completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CompletionMode {
    /// Sleep in the kernel until a completion arrives (interrupt-driven).
    #[default]
    Interrupt,
    /// Busy-poll for completions on the submitting thread, never sleeping.
    Poll,
}

impl CompletionMode {
    pub fn name(self) -> &'static str {
        match self {
            CompletionMode::Interrupt => "irq",
            CompletionMode::Poll => "poll",
        }
    }
}

/// Per-queue settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Commands staged plus in flight at most; tags are `0..depth`.
    pub depth: u16,
    pub completion: CompletionMode,
    /// Use buffers registered with the kernel (io_uring fixed buffers). `false` is the vanilla
    /// path where the kernel pins and maps the pages of every I/O. Backends without the notion
    /// ignore it.
    pub registered_buffers: bool,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            depth: 64,
            completion: CompletionMode::Interrupt,
            registered_buffers: true,
        }
    }
}
