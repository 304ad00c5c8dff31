//! [`ReadMode`]: the order of a cached read's miss, the paper's vanilla order or the AIOS
//! order, chosen at mount. A leaf: the mount, the read path and the breakdown all name it.

/// The order of a cached-read miss, chosen at mount (see the `cached_read` module).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadMode {
    /// Vanilla order: allocate, insert a locked page, map, submit (unregistered buffers), wait.
    Sync,
    /// AIOS order: pool page, map, submit (registered buffers); insert and refill the pool while
    /// the device works; wait.
    ///
    /// Where there is no device time to overlap, the async order does not pay for overlapping:
    /// on a device whose commands complete inside `submit`
    /// ([`aios_device::DeviceInfo::completes_in_submit`]: pread, as on zram) there is no window
    /// to move the insertion and the refill into, so misses run the vanilla steps
    /// ([`crate::Fs::miss_order`]); the queues still use registered buffers.
    #[default]
    Async,
}

impl ReadMode {
    pub fn name(self) -> &'static str {
        match self {
            ReadMode::Sync => "sync",
            ReadMode::Async => "async",
        }
    }
}
