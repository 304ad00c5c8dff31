//! Counters of one block queue, cheap enough to keep always on.

/// What a [`crate::BlockQueue`] has done since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockStats {
    /// Requests accepted by `stage`.
    pub staged: u64,
    /// Requests started by `submit`.
    pub submitted: u64,
    /// `submit` calls that started anything: kernel entries for submission, at most.
    pub submit_calls: u64,
    /// Requests whose completion was reaped.
    pub completed: u64,
    /// Completions carrying an error.
    pub errors: u64,
    /// Flushes done when staged, never sent: the device has no volatile write cache.
    pub flushes_done_at_stage: u64,
}
