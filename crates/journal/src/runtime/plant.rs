//! Planted protocol bugs: **test-only, never set outside tests and `aios crashtest --plant`.**
//!
//! # Role
//! Each [`PlantedBug`] breaks exactly one rule of the write and recovery protocols that the
//! module docs of `commit`, `checkpoint`, `recover` and `aios-fs`'s `rw` promise, so that the
//! crash harness can prove it catches a broken protocol (a harness that cannot fail is
//! worthless). A bug is carried per mount (`JournalOptions::plant`, `aios_fs::RwOptions::plant`),
//! never in a global, so tests running side by side do not see each other's bugs.
//!
//! # Invariants
//! - `None` (every mount but a harness's) runs the protocol as documented: each planted
//!   branch is guarded by one `Option` compare and marked `PLANTED BUG`.
//! - One bug at a time: a mount carries at most one.

/// One known protocol bug to plant (see the module documentation: test-only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlantedBug {
    /// (a) The commit's flush is issued without waiting for its data and journal writes to
    /// complete (it then covers none of them).
    FlushBeforeWritesComplete,
    /// (b) The commit block is written (and completes) before the flush of the data and
    /// journal blocks.
    CommitBeforeFlush,
    /// (c) The commit block is written without FUA and nothing flushes after it.
    CommitWithoutFua,
    /// (d) A transaction's metadata is written home beside its journal blocks, before its
    /// commit block is durable (a checkpoint ahead of the commit).
    CheckpointBeforeCommit,
    /// (e) A checkpoint writes the journal superblock (tail advanced, or clean at unmount)
    /// right after staging the home writes, without waiting for them or flushing.
    TailBeforeHomeFlush,
    /// (f) A transaction's revoke records are left out (freed metadata is not revoked).
    NoRevoke,
    /// (g) A freed block is allocatable at once, before the transaction that freed it commits
    /// (`aios-fs`'s allocator).
    ReuseBeforeCommit,
    /// (h) After a failed data-only sync the dirty blocks count as durable and the mount stays
    /// writable, so a later `fsync`/`fdatasync` reports success (`aios-fs`; fsyncgate).
    CleanAfterFailedWrite,
    /// (i) Recovery marks the journal clean before its replayed blocks are flushed (the clean
    /// superblock written with FUA right after the home writes are staged).
    CleanBeforeReplayFlushed,
}

impl PlantedBug {
    /// Every bug, in the order of the list (a)..(i).
    pub const ALL: [PlantedBug; 9] = [
        PlantedBug::FlushBeforeWritesComplete,
        PlantedBug::CommitBeforeFlush,
        PlantedBug::CommitWithoutFua,
        PlantedBug::CheckpointBeforeCommit,
        PlantedBug::TailBeforeHomeFlush,
        PlantedBug::NoRevoke,
        PlantedBug::ReuseBeforeCommit,
        PlantedBug::CleanAfterFailedWrite,
        PlantedBug::CleanBeforeReplayFlushed,
    ];

    /// The command-line name (`aios crashtest --plant NAME`).
    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::FlushBeforeWritesComplete => "flush-early",
            PlantedBug::CommitBeforeFlush => "commit-before-flush",
            PlantedBug::CommitWithoutFua => "commit-no-fua",
            PlantedBug::CheckpointBeforeCommit => "checkpoint-early",
            PlantedBug::TailBeforeHomeFlush => "tail-early",
            PlantedBug::NoRevoke => "no-revoke",
            PlantedBug::ReuseBeforeCommit => "reuse-early",
            PlantedBug::CleanAfterFailedWrite => "clean-after-eio",
            PlantedBug::CleanBeforeReplayFlushed => "recovery-clean-early",
        }
    }

    /// The bug named `name` (see [`PlantedBug::name`]).
    pub fn parse(name: &str) -> Option<PlantedBug> {
        PlantedBug::ALL.into_iter().find(|b| b.name() == name)
    }
}

impl std::fmt::Display for PlantedBug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::PlantedBug;

    #[test]
    fn every_name_parses_back() {
        for b in PlantedBug::ALL {
            assert_eq!(PlantedBug::parse(b.name()), Some(b));
        }
        assert_eq!(PlantedBug::parse("nope"), None);
    }
}
