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
}
