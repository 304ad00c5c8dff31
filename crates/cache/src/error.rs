//! Errors of the page cache. Every variant names the page ([`Key`]) it concerns and the cause.

use crate::Key;
use aios_device::DeviceError;
use thiserror::Error;

/// `EIO`, reported to waiters when a fill failed with a device error that carries no errno.
pub const EIO: i32 = 5;
/// `ECANCELED` (Linux), reported to waiters when a filler dropped its [`crate::FillTicket`]
/// without completing it.
pub const ECANCELED: i32 = 125;

/// Errors of the page cache layer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CacheError {
    /// The configuration is unusable.
    #[error("bad cache configuration: {reason}")]
    BadConfig { reason: &'static str },

    /// The read that was filling this page failed; seen by the filler, with the device's error.
    #[error("read of page {key} failed: {source}")]
    Fill {
        key: Key,
        #[source]
        source: DeviceError,
    },

    /// The read another thread was doing for this page failed (or was abandoned); seen by waiters.
    /// The page is no longer cached: a later read retries.
    #[error("read of page {key} by another thread failed: {}", std::io::Error::from_raw_os_error(*errno))]
    FillFailedElsewhere { key: Key, errno: i32 },

    /// A page stayed locked (I/O in flight) longer than the configured wait limit.
    #[error("page {key} still locked after waiting {waited_ms} ms")]
    WaitTimeout { key: Key, waited_ms: u64 },

    /// A copy-out that does not lie within one page.
    #[error("copy of {len_bytes} bytes at offset {offset_bytes} lies outside page {key}")]
    Range {
        key: Key,
        offset_bytes: usize,
        len_bytes: usize,
    },

    /// A fill that is not exactly one page of device data: a short read would publish stale bytes.
    #[error("fill of page {key}: {read_bytes} bytes read into a {buf_bytes}-byte buffer; a page is 4096 bytes")]
    BadFill {
        key: Key,
        buf_bytes: usize,
        read_bytes: u32,
    },

    /// A page completed twice (a ticket is completed once; the second completion is refused).
    #[error("page {key} is not locked: already completed")]
    NotLocked { key: Key },

    /// No page could be found for a fill: the arena is exhausted and every cached page is in use
    /// or being filled.
    #[error("no free page for {key}: arena exhausted and nothing evictable under a cap of {max_pages} pages")]
    NoPage { key: Key, max_pages: usize },
}
