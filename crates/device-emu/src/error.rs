//! Errors of the emulator's own API: the spec parser, device construction, images and the write
//! log. Errors of commands (what a [`aios_device::Queue`] returns) stay [`DeviceError`]s; an
//! [`EmuError`] converts into a [`DeviceError::Setup`] for callers that only speak the contract.
//! Also the spec's option list [`OPTIONS`], which an unknown-option message quotes. This file
//! imports nothing from the rest of the crate.

use aios_device::{ArenaError, DeviceError};
use std::path::PathBuf;
use thiserror::Error;

/// The option names of a spec (the grammar is [`crate::spec`]'s, which re-exports this list), for
/// the message of [`EmuError::UnknownOption`].
pub const OPTIONS: &str = "size, arena, cache, cache_size, channels, clock, file, record, \
                           prefault, read, write, flush, flush_block, bw";

/// What went wrong outside the command path. Every variant names what it concerns.
#[derive(Debug, Error)]
pub enum EmuError {
    /// The spec string names no preset.
    #[error("empty emulator spec: expected a preset (ull, nand or instant) and options")]
    EmptySpec,

    /// The first word of the spec is not a preset.
    #[error("unknown emulator preset `{0}`: expected ull, nand or instant")]
    UnknownPreset(String),

    /// An option the parser does not know.
    #[error("unknown emulator option `{option}`: expected one of {}", OPTIONS)]
    UnknownOption { option: String },

    /// A known option with a value it cannot take.
    #[error("emulator option `{option}={value}`: expected {expected}")]
    BadValue {
        option: String,
        value: String,
        expected: &'static str,
    },

    /// The same option twice in one spec.
    #[error("emulator option `{0}` is given twice")]
    DuplicateOption(String),

    /// A configuration that is well formed but impossible (sizes, limits).
    #[error("invalid emulator configuration: {0}")]
    BadConfig(String),

    /// The kernel refused the anonymous mapping that holds an image.
    #[error("cannot map {bytes} bytes for an emulated image: {}",
            std::io::Error::from_raw_os_error(*errno))]
    Map { bytes: u64, errno: i32 },

    /// The buffer arena could not be made.
    #[error("emulated device arena: {0}")]
    Arena(#[from] ArenaError),

    /// Reading or writing an image file failed.
    #[error("{op} image file {}: {source}", path.display())]
    ImageIo {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// An image file whose length does not fit the device.
    #[error("image file {} holds {len_bytes} bytes: expected a positive multiple of 4096 of at most {capacity_bytes}",
            path.display())]
    ImageSize {
        path: PathBuf,
        len_bytes: u64,
        capacity_bytes: u64,
    },

    /// A byte range outside an image.
    #[error("bytes {offset_bytes}..+{len_bytes} are not whole blocks inside the image's {capacity_bytes} bytes")]
    OutOfRange {
        offset_bytes: u64,
        len_bytes: u64,
        capacity_bytes: u64,
    },

    /// Log queries on a device opened without `record`.
    #[error("the write log is off: open the device with `record=on`")]
    NotRecording,

    /// A crash point past the end of the log.
    #[error("crash point {requested} lies beyond the log's {events} events")]
    BadCrashPoint { requested: usize, events: usize },

    /// A replay asked to move backwards.
    #[error("a replay only moves forward: it is at event {at}, asked for {requested}")]
    ReplayBackwards { at: usize, requested: usize },

    /// A subset mask whose length differs from the candidate list.
    #[error("a subset of {given} choices for {candidates} crash candidates")]
    SubsetLength { given: usize, candidates: usize },

    /// A log whose events do not match its commands (built by hand, or corrupted).
    #[error("write log event {index} is inconsistent: {reason}")]
    BadLog { index: usize, reason: &'static str },

    /// Advancing the clock by hand needs the virtual clock.
    #[error("only a virtual clock can be moved by hand; this device runs on the real clock")]
    RealClock,
}

impl From<EmuError> for DeviceError {
    fn from(e: EmuError) -> DeviceError {
        let errno = match &e {
            EmuError::Map { errno, .. } => *errno,
            EmuError::ImageIo { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            EmuError::Arena(ArenaError::Map { errno, .. }) => *errno,
            _ => libc::EINVAL,
        };
        DeviceError::Setup {
            what: e.to_string(),
            errno,
        }
    }
}
