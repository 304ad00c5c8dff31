//! # aios-fs: ext4 mount, namespace and file reads over the block layer
//!
//! # Role
//! The file system layer of the read path. It reads ext4 metadata and file data through the
//! per-thread LBIO [`aios_block::BlockQueue`] and hands metadata bytes to the validated decoders of
//! [`aios_ext4`]. This crate adds what the decoders cannot know on their own: where structures
//! live (group -> inode table -> inode -> extent tree -> blocks), how they refer to each other
//! (directories, symlinks) and the checks that only make sense across structures (extent depth
//! decreasing, no node reached twice, directory blocks without holes).
//!
//! # Threads
//! [`Fs`] is shared by threads (`Send + Sync`): it holds the device, the superblock and every group
//! descriptor, read and verified once at mount, and never changes afterwards. Each thread opens its
//! own [`IoCtx`] with [`Fs::io`] (a block queue plus a few scratch arena pages, like the paper's
//! per-core structures) and passes it explicitly to every operation. Queues may be `!Send`: open
//! the context on the thread that uses it.
//!
//! # Assumptions from below
//! - The device honours the [`aios_device`] contract; this layer only reads, so durability rules do
//!   not apply yet.
//! - Nothing else writes the image while it is mounted (read-only mount, no locking).
//!
//! # Promises above
//! - Mount refuses what [`aios_ext4`] refuses (unknown incompat/ro_compat features by name, a
//!   journal that needs recovery, block sizes other than 4 KiB) and group descriptors whose
//!   checksum is wrong.
//! - Every metadata block read is checksum-verified when `metadata_csum` is set: inodes, extent
//!   blocks, directory blocks (linear tails and htree `dx_tail`s).
//! - Nothing read from disk can make this crate panic; a bad structure is an [`FsError`] naming
//!   it (and, for path operations, the path).
//! - Holes and unwritten extents read as zeros without I/O; contiguous data is read in requests
//!   of up to [`aios_device::IO_BYTES_MAX`].
//! - [`Fs::read`] goes through one page cache shared by all threads: a hit costs no system call
//!   and no I/O; a miss runs the paper's vanilla order ([`ReadMode::Sync`]) or the AIOS order
//!   ([`ReadMode::Async`]), chosen at mount; the cache never holds a page whose read failed.
//!
//! # Modules
//! | Module | What |
//! | --- | --- |
//! | [`error`] | [`FsError`]: typed errors with path and structure context |
//! | `read_mode` | [`ReadMode`]: the vanilla or the AIOS order of a miss |
//! | [`mount`] | [`Fs`], [`MountOptions`]: superblock and group descriptors at mount |
//! | `io` | [`IoCtx`]: per-thread block queue and scratch pages, synchronous block reads |
//! | `inode` | locating and decoding inodes; [`Stat`] |
//! | [`extent_map`] | [`ExtentMap`]: an inode's whole extent tree, loaded into memory |
//! | `dir` | directory block scanning (linear and htree), [`DirEntry`] |
//! | `htree` | `dx_root`/`dx_node` recognition and `dx_tail` checksums |
//! | `namei` | path lookup and symlinks |
//! | `cache_id` | `CacheId`: an inode and the epoch of its data, the page cache's key |
//! | [`data_page`] | [`DataPage`]: a data block's newest 4 KiB while only in memory, shared, never changed |
//! | `file` | [`File`] and `read_at` (plain, uncached) |
//! | `dst` | `Dst`: the caller's buffer of one cached read, filled page by page |
//! | `cached_read` | [`Fs::read`]: hits, holes, miss runs |
//! | `miss` | the step functions of a miss and the sync (vanilla) and async (AIOS) orders |
//! | [`breakdown`] | [`Breakdown`]: per-stage latency of misses, off by default |
//! | `readahead_state` | what readahead keeps between reads: a handle's sequential state, requests in flight, counters |
//! | [`readahead`] | sequential readahead per file handle ([`MountOptions::readahead_pages`]) |
//! | [`write`] | [`Mutator`]: the in-memory mutation layer of the write path |
//! | [`rw`] | [`RwFs`]: the read-write mount, one journaled transaction per operation |
//! | [`mkfs`] | [`mkfs::make_ext4`]: `mke2fs` with exactly the features this crate mounts |
//!
//! The read-write mount ([`rw`]) reads file data through the same [`Fs::read`] path and page
//! cache, over its own view of each file (`rw/read.rs`). Its buffered writes keep their blocks
//! as [`DataPage`]s in the device's arena, written to the device without a copy. Not here yet:
//! written pages in the page cache's index (a write bumps its inode's cache epoch instead), a
//! cache hit without the state lock for reads by path (reads by handle have one and read
//! ahead), block-mapped (non-extent) files, extended attributes.

#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

pub mod breakdown;
mod cache_id;
mod cached_read;
pub mod data_page;
mod dir;
mod dst;
pub mod error;
pub mod extent_map;
mod file;
mod htree;
mod inode;
mod io;
mod miss;
pub mod mkfs;
pub mod mount;
mod namei;
mod read_mode;
pub mod readahead;
mod readahead_state;
pub mod rw;
pub mod write;

pub use breakdown::{Breakdown, Stage};
pub use data_page::DataPage;
pub use dir::DirEntry;
pub use error::FsError;
pub use extent_map::{ExtentMap, Mapping};
pub use file::{Access, File};
pub use inode::Stat;
pub use io::IoCtx;
pub use mount::{Fs, MountOptions};
pub use read_mode::ReadMode;
pub use readahead_state::ReadaheadStats;
pub use rw::{
    DataMode, OpenOptions, RwCtx, RwError, RwFile, RwFs, RwOptions, RwShared, RwStats,
    COMMIT_INTERVAL_DEFAULT, PUT_CHUNK_BYTES,
};
pub use write::{BlockRead, Changes, FsBlocks, MetaBlocks, Mutator, NewNode, SetAttr, WriteReport};

pub use aios_ext4::format::inode::{Inode, Timestamp};

/// Inode number of the root directory.
pub const ROOT_INO: u32 = 2;
/// Symlinks followed during one lookup before it fails with [`FsError::SymlinkLoop`] (Linux's
/// `MAXSYMLINKS`).
pub const SYMLINKS_FOLLOWED_MAX: u32 = 40;
