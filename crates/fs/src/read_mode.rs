//! [`ReadMode`]: the order of a cached read's miss, the paper's vanilla order or the AIOS
//! order, chosen at mount. A leaf: the mount, the read path and the breakdown all name it.

/// The order of a cached-read miss, chosen at mount (see the `cached_read` module).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadMode {
    /// Vanilla order: allocate, insert a locked page, map, submit (unregistered buffers), wait.
    Sync,
    /// AIOS order: pool page, map, submit (registered buffers); insert and refill the pool while
    /// the device works; wait.
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
