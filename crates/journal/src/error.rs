//! Typed journal errors.
//!
//! Every error names the structure and the journal block it came from; recovery errors name the
//! transaction (sequence) too. Read failures from the caller's callback are carried as the source.

use std::fmt;

/// Where a journal structure lives: a logical journal block index (0 is the journal superblock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// The journal superblock (journal block 0).
    Superblock,
    /// A descriptor block.
    Descriptor {
        /// Journal block index.
        journal_block: u32,
    },
    /// A commit block.
    Commit {
        /// Journal block index.
        journal_block: u32,
    },
    /// A revoke block.
    Revoke {
        /// Journal block index.
        journal_block: u32,
    },
    /// A data block logged by a transaction.
    Data {
        /// Journal block index.
        journal_block: u32,
    },
    /// A block whose type is not known yet.
    Block {
        /// Journal block index.
        journal_block: u32,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Location::Superblock => write!(f, "journal superblock"),
            Location::Descriptor { journal_block } => {
                write!(f, "descriptor block at journal block {journal_block}")
            }
            Location::Commit { journal_block } => {
                write!(f, "commit block at journal block {journal_block}")
            }
            Location::Revoke { journal_block } => {
                write!(f, "revoke block at journal block {journal_block}")
            }
            Location::Data { journal_block } => {
                write!(f, "data block at journal block {journal_block}")
            }
            Location::Block { journal_block } => write!(f, "journal block {journal_block}"),
        }
    }
}

/// Which feature word an unsupported feature was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureKind {
    /// `s_feature_compat`.
    Compat,
    /// `s_feature_incompat`.
    Incompat,
    /// `s_feature_ro_compat`.
    RoCompat,
}

impl fmt::Display for FeatureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeatureKind::Compat => write!(f, "compat"),
            FeatureKind::Incompat => write!(f, "incompat"),
            FeatureKind::RoCompat => write!(f, "ro_compat"),
        }
    }
}

/// A journal structure or transaction that cannot be decoded, encoded, laid out or recovered.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The buffer is shorter than the structure needs.
    #[error("{at}: truncated: need {needed_bytes} bytes, have {len_bytes}")]
    Truncated {
        /// The structure.
        at: Location,
        /// Bytes needed.
        needed_bytes: u64,
        /// Bytes available.
        len_bytes: u64,
    },
    /// `h_magic` is not `0xC03B3998`.
    #[error("{at}: bad magic {found:#010x}")]
    BadMagic {
        /// The structure.
        at: Location,
        /// The magic found.
        found: u32,
    },
    /// `h_blocktype` is not the one expected.
    #[error("{at}: block type {found}, expected {expected}")]
    BadBlockType {
        /// The structure.
        at: Location,
        /// Expected `h_blocktype`.
        expected: u32,
        /// Found `h_blocktype`.
        found: u32,
    },
    /// A stored checksum does not match.
    #[error("{at}: checksum mismatch: computed {computed:#010x}, stored {stored:#010x}")]
    ChecksumMismatch {
        /// The structure.
        at: Location,
        /// Computed over the bytes.
        computed: u32,
        /// Stored on disk.
        stored: u32,
    },
    /// A field holds a value we cannot accept.
    #[error("{at}: {field} = {value} is out of range: {reason}")]
    FieldOutOfRange {
        /// The structure.
        at: Location,
        /// Kernel field name.
        field: &'static str,
        /// Value found.
        value: u64,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The journal superblock asks for features we do not implement.
    #[error("journal superblock: unsupported {kind} features: {names}")]
    UnsupportedFeature {
        /// Which feature word.
        kind: FeatureKind,
        /// Space-separated names (kernel spelling, `FEATURE_?_0x..` for unknown bits).
        names: String,
        /// The refused bits.
        bits: u32,
    },
    /// A transaction handed to [`crate::layout`] is not one the journal can log.
    #[error("transaction {sequence}: {reason} (file system block {fs_block})")]
    InvalidTransaction {
        /// Sequence the transaction would have had.
        sequence: u32,
        /// The offending file system block.
        fs_block: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A transaction needs more journal blocks than the log holds.
    #[error(
        "transaction {sequence} needs {needed_blocks} journal blocks, the log holds {log_blocks}"
    )]
    TransactionTooLarge {
        /// Sequence of the transaction.
        sequence: u32,
        /// Journal blocks it needs (descriptors, data, revokes, commit).
        needed_blocks: u64,
        /// Blocks in the circular log (`s_maxlen - s_first`).
        log_blocks: u64,
    },
    /// Recovery found a transaction the kernel refuses to replay (its descriptor or revoke
    /// checksum failed, yet its commit block is newer than the previous one: `-EFSBADCRC`).
    #[error("transaction {sequence}: {reason} (commit at journal block {journal_block})")]
    CorruptTransaction {
        /// Sequence of the transaction.
        sequence: u32,
        /// Journal block of its commit block.
        journal_block: u32,
        /// What is wrong.
        reason: &'static str,
    },
    /// Recovery walked more blocks than the log holds without ending (a corrupt log).
    #[error("recovery walked {walked_blocks} blocks from journal block {start_block} without reaching the end of a {log_blocks}-block log")]
    LogOverrun {
        /// `s_start` of the walk.
        start_block: u32,
        /// Blocks walked.
        walked_blocks: u64,
        /// Blocks in the log.
        log_blocks: u64,
    },
    /// The two later passes of recovery ended elsewhere than the scan (kernel: `-EIO`).
    #[error("recovery pass {pass} ended at transaction {ended}, scan ended at {expected}")]
    PassMismatch {
        /// `revoke` or `replay`.
        pass: &'static str,
        /// Where this pass stopped.
        ended: u32,
        /// Where the scan stopped.
        expected: u32,
    },
    /// The caller's block reader failed.
    #[error("reading journal block {journal_block}: {source}")]
    Read {
        /// Journal block index.
        journal_block: u32,
        /// The reader's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Result of a journal operation.
pub type Result<T> = std::result::Result<T, JournalError>;
