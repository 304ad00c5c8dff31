//! Typed decoding errors.
//!
//! Every error names the structure that failed to decode, where it lives (block number, group
//! number or inode number), and what is wrong with it. Callers above the format layer add their own
//! context (path, operation) on top; this layer never panics and never guesses.

use std::fmt;

/// Where a structure that failed to decode lives on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// The primary superblock (byte 1024).
    Superblock,
    /// A group descriptor, by group number.
    GroupDesc {
        /// Block group number.
        group: u32,
    },
    /// An inode record, by inode number.
    Inode {
        /// Inode number (1-based).
        ino: u32,
    },
    /// The extent tree root kept in an inode's `i_block`.
    ExtentRoot {
        /// Owning inode number.
        ino: u32,
    },
    /// An extent tree node stored in its own block.
    ExtentBlock {
        /// Owning inode number.
        ino: u32,
        /// Physical block number of the node.
        block: u64,
    },
    /// The block bitmap of a group.
    BlockBitmap {
        /// Block group number.
        group: u32,
    },
    /// The inode bitmap of a group.
    InodeBitmap {
        /// Block group number.
        group: u32,
    },
    /// A directory block (linear leaf, or htree `dx_root`/`dx_node`).
    DirBlock {
        /// Owning directory inode number.
        ino: u32,
        /// Physical block number.
        block: u64,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Location::Superblock => write!(f, "superblock"),
            Location::GroupDesc { group } => write!(f, "group descriptor {group}"),
            Location::Inode { ino } => write!(f, "inode {ino}"),
            Location::ExtentRoot { ino } => write!(f, "extent root of inode {ino}"),
            Location::ExtentBlock { ino, block } => {
                write!(f, "extent block {block} of inode {ino}")
            }
            Location::BlockBitmap { group } => write!(f, "block bitmap of group {group}"),
            Location::InodeBitmap { group } => write!(f, "inode bitmap of group {group}"),
            Location::DirBlock { ino, block } => {
                write!(f, "directory block {block} of inode {ino}")
            }
        }
    }
}

/// Which feature word an unsupported feature was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureKind {
    /// `s_feature_incompat`: the file system cannot be read without it.
    Incompat,
    /// `s_feature_ro_compat`: the file system could be read, but we refuse anything we do not know.
    RoCompat,
}

impl fmt::Display for FeatureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeatureKind::Incompat => write!(f, "incompat"),
            FeatureKind::RoCompat => write!(f, "ro_compat"),
        }
    }
}

/// A structure read from disk is not one we can trust or support.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The buffer is shorter than the structure (or than a length field claims).
    #[error("{at}: truncated: need {needed_bytes} bytes, have {len_bytes}")]
    Truncated {
        /// The structure.
        at: Location,
        /// Bytes the decoder needed.
        needed_bytes: u64,
        /// Bytes it was given.
        len_bytes: u64,
    },
    /// A magic number is wrong.
    #[error("{at}: bad magic: expected {expected:#x}, found {found:#x}")]
    BadMagic {
        /// The structure.
        at: Location,
        /// The magic the format requires.
        expected: u32,
        /// The magic on disk.
        found: u32,
    },
    /// A stored checksum does not match the computed one.
    #[error("{at}: checksum mismatch: computed {expected:#010x}, stored {found:#010x}")]
    ChecksumMismatch {
        /// The structure.
        at: Location,
        /// The checksum computed over the bytes read.
        expected: u32,
        /// The checksum stored on disk.
        found: u32,
    },
    /// A field holds a value this decoder cannot accept.
    #[error("{at}: {field} = {value} is out of range: {reason}")]
    FieldOutOfRange {
        /// The structure.
        at: Location,
        /// The on-disk field name (kernel spelling).
        field: &'static str,
        /// The value found.
        value: u64,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The superblock asks for features we do not implement.
    #[error("superblock: unsupported {kind} features: {names}")]
    UnsupportedFeature {
        /// Which feature word.
        kind: FeatureKind,
        /// Space-separated names (kernel spelling, or `FEATURE_X_0x..` for unnamed bits).
        names: String,
        /// The unsupported bits.
        bits: u32,
    },
    /// The journal holds transactions that must be replayed before the file system is consistent.
    #[error(
        "superblock: journal needs recovery (incompat `recover` set); replay is not supported"
    )]
    JournalNeedsRecovery,
}

/// Result of a format decoder.
pub type Result<T> = std::result::Result<T, FormatError>;
