//! Errors of the file system layer.
//!
//! Lower-layer errors ([`FormatError`] from the decoders, [`DeviceError`] from the device) are
//! wrapped unchanged so callers can still match on them (e.g. a checksum mismatch naming the
//! structure and block). Path operations add the path with [`FsError::At`]; use
//! [`FsError::root_cause`] to see through that context.

use aios_cache::CacheError;
use aios_device::{ArenaError, DeviceError};
use aios_ext4::{FormatError, Location};

/// What went wrong in the file system layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    /// A structure on disk failed to decode or verify.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The device failed a command.
    #[error("device: {0}")]
    Device(#[from] DeviceError),
    /// The device completed a read with fewer bytes than asked (it should fail instead).
    #[error("read at byte {offset_bytes}: {read_bytes} of {expected_bytes} bytes")]
    ShortRead {
        offset_bytes: u64,
        expected_bytes: usize,
        read_bytes: usize,
    },
    /// No arena pages left for this thread's scratch buffers.
    #[error("scratch buffers: {0}")]
    Arena(#[from] ArenaError),
    /// A path component does not exist.
    #[error("{path}: no such file or directory")]
    NotFound { path: String },
    /// A component used as a directory is not one.
    #[error("{path}: not a directory")]
    NotADirectory { path: String },
    /// A file operation on a directory.
    #[error("inode {ino}: is a directory")]
    IsADirectory { ino: u32 },
    /// A file operation on something that is neither a regular file nor a directory.
    #[error("inode {ino}: not a regular file")]
    NotARegularFile { ino: u32 },
    /// `read_link` of an inode that is not a symlink.
    #[error("inode {ino}: not a symbolic link")]
    NotASymlink { ino: u32 },
    /// A path component longer than 255 bytes.
    #[error("{path}: name too long")]
    NameTooLong { path: String },
    /// More than [`crate::SYMLINKS_FOLLOWED_MAX`] symlinks in one lookup.
    #[error("{path}: too many levels of symbolic links")]
    SymlinkLoop { path: String },
    /// A path that is not absolute.
    #[error("{path}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    /// Structures that decode on their own but contradict each other.
    #[error("{at}: corrupt: {what}")]
    Corrupt { at: Location, what: &'static str },
    /// Something valid ext4 may contain that this layer does not read yet.
    #[error("inode {ino}: unsupported: {what}")]
    Unsupported { ino: u32, what: &'static str },
    /// Internal to the read-write mount: an operation under its state lock needed block
    /// `block`, which is not in memory; the mount reads it without the lock and runs the
    /// operation again (`rw/fetch.rs`). Never returned by a public call.
    #[error("block {block} is not in memory")]
    NotInMemory { block: u64 },
    /// An [`crate::IoCtx`] opened by another [`crate::Fs`].
    #[error("I/O context belongs to another mounted file system")]
    ForeignIoCtx,
    /// The page cache refused something or a page read failed (names the page and the cause).
    #[error("page cache: {0}")]
    Cache(#[from] CacheError),
    /// A cached read of file data failed: which file, which byte of it, and why.
    #[error("inode {ino}: read at byte {offset_bytes}: {source}")]
    Read {
        ino: u32,
        offset_bytes: u64,
        source: Box<FsError>,
    },
    /// No free blocks or inodes left (`what` says which).
    #[error("no space left: no free {what}")]
    NoSpace { what: &'static str },
    /// A name to create already exists in its directory.
    #[error("{name}: file exists")]
    Exists { name: String },
    /// `rmdir` of a directory that still has entries.
    #[error("inode {ino}: directory not empty")]
    NotEmpty { ino: u32 },
    /// A file would exceed the largest size or extent tree the format allows.
    #[error("inode {ino}: file too big")]
    FileTooBig { ino: u32 },
    /// A directory already has the most links the format counts (without `dir_nlink`).
    #[error("inode {ino}: too many links")]
    TooManyLinks { ino: u32 },
    /// An argument the operation refuses (`EINVAL`), e.g. renaming a directory into its own
    /// subtree, or releasing an inode that is not on the orphan list.
    #[error("invalid argument: {what}")]
    InvalidArgument { what: &'static str },
    /// An operation the file system never allows on this object (`EPERM`), e.g. a hard link to
    /// a directory.
    #[error("inode {ino}: operation not permitted: {what}")]
    NotPermitted { ino: u32, what: &'static str },
    /// An error met while resolving `path`.
    #[error("{path}: {source}")]
    At { path: String, source: Box<FsError> },
}

impl FsError {
    /// The error without any path context.
    pub fn root_cause(&self) -> &FsError {
        match self {
            FsError::At { source, .. } | FsError::Read { source, .. } => source.root_cause(),
            other => other,
        }
    }

    /// The decoder error underneath, if the cause is a bad on-disk structure.
    pub fn format_error(&self) -> Option<&FormatError> {
        match self.root_cause() {
            FsError::Format(e) => Some(e),
            _ => None,
        }
    }

    /// Wraps `self` with the path it concerns, unless it already names a path.
    pub(crate) fn at_path(self, path: &[u8]) -> FsError {
        match self {
            FsError::NotFound { .. }
            | FsError::NotADirectory { .. }
            | FsError::NameTooLong { .. }
            | FsError::SymlinkLoop { .. }
            | FsError::InvalidPath { .. }
            | FsError::At { .. } => self,
            other => FsError::At {
                path: display_path(path),
                source: Box::new(other),
            },
        }
    }
}

/// A path for messages: lossy UTF-8.
pub(crate) fn display_path(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}
