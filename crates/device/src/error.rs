//! Device errors. Every variant names the command it concerns, so a failure deep in the stack
//! still tells which operation, where, and why.

use crate::op::{Op, Tag};
use thiserror::Error;

/// Errors of the device layer. `Clone` and `PartialEq` so completions can be compared in tests and
/// stored as sticky failures by the journal.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DeviceError {
    /// The device failed the command. `errno` is the OS error (EIO for injected faults).
    #[error("{} tag {tag} at byte {offset_bytes} ({len_bytes} bytes) failed: {}",
            op.name(), std::io::Error::from_raw_os_error(*errno))]
    Io {
        op: Op,
        tag: Tag,
        offset_bytes: u64,
        len_bytes: u32,
        errno: i32,
    },

    /// An offset, buffer address or length that is not a multiple of the block size.
    #[error("{}: {what} {value} is not a multiple of {} bytes", op.name(), crate::BLOCK_SIZE)]
    Misaligned {
        op: Op,
        what: &'static str,
        value: u64,
    },

    /// The command reaches past the end of the device.
    #[error("{}: bytes {offset_bytes}..+{len_bytes} lie beyond the device's {capacity_bytes} bytes",
            op.name())]
    OutOfRange {
        op: Op,
        offset_bytes: u64,
        len_bytes: u64,
        capacity_bytes: u64,
    },

    /// More data or segments than one command may carry.
    #[error("{}: {len_bytes} bytes in {segments} segments exceed the limit of {} bytes in {} segments",
            op.name(), crate::IO_BYTES_MAX, crate::SEGMENTS_MAX)]
    TooLarge {
        op: Op,
        len_bytes: u64,
        segments: usize,
    },

    /// A malformed command.
    #[error("{}: {reason}", op.name())]
    Invalid { op: Op, reason: &'static str },

    /// The tag is outside `0..depth` or already outstanding.
    #[error("tag {tag} is {reason} (queue depth {depth})")]
    BadTag {
        tag: Tag,
        depth: u16,
        reason: &'static str,
    },

    /// Opening or configuring the device or a queue failed.
    #[error("{what}: {}", std::io::Error::from_raw_os_error(*errno))]
    Setup { what: String, errno: i32 },

    /// The kernel refused to take submissions or report completions.
    #[error("{what}: {}", std::io::Error::from_raw_os_error(*errno))]
    Queue { what: &'static str, errno: i32 },

    /// The backend cannot do what was asked (e.g. a feature this kernel lacks).
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl DeviceError {
    /// A setup error from an `std::io::Error`, keeping its errno.
    pub fn setup(what: impl Into<String>, err: &std::io::Error) -> Self {
        DeviceError::Setup {
            what: what.into(),
            errno: err.raw_os_error().unwrap_or(libc::EIO),
        }
    }

    /// The errno of an I/O failure, if this is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            DeviceError::Io { errno, .. }
            | DeviceError::Setup { errno, .. }
            | DeviceError::Queue { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}
