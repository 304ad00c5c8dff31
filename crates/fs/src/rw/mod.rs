//! The read-write mount: buffered operations, jbd2 transactions, fsync and fdatasync with
//! group commit, the periodic commit, `data=ordered` and `data=journal` (issue 4).
//!
//! # Role
//! [`RwShared`] joins the in-memory mutation layer ([`crate::Mutator`]) and the journal runtime
//! ([`aios_journal::runtime::Journal`]) for any number of threads, each with its own [`RwCtx`] (its read context and
//! block queue: queues may be `!Send`). An operation is applied to the mutator under the state
//! lock and joins the *running transaction*; it is durable once that transaction commits:
//! at an `fsync`/`fdatasync` that needs it, at [`RwShared::sync`], when the transaction grows
//! past its limits, at the periodic commit (the kernel's `commit=5`), or at unmount. With
//! [`RwOptions::sync`] (`mount -o sync`) every operation commits before it returns.
//! [`RwFs`] is the one-thread face of the same mount: it owns a context and the periodic
//! commit thread, and [`RwFs::shared`] lends the shared part to more threads.
//!
//! # Commit (`sync`)
//! One thread at a time leads: it takes the journal out of the state (others see it absent
//! and wait on the condition variable), seals the running transaction's changes, starts the
//! next transaction, and commits with the state unlocked in the mount's [`CommitOrder`];
//! operations keep running meanwhile. Every thread whose inode changed in the committed
//! transaction returns when it completes: concurrent fsyncs share one commit (group commit).
//! `fdatasync` of an inode whose last block-map or size change is committed writes its dirty
//! blocks in place and flushes, without a commit ([`aios_journal::runtime::sync_data`]), and
//! also takes the dirty blocks of every other inode waiting for the same; data syncs of
//! different inodes run side by side, never beside a commit. Dirty data past the dirty marks
//! ([`RwOptions::dirty_background_percent`], [`RwOptions::dirty_percent`]) is *written back*
//! in `data=ordered`: in place, without a flush or a commit (`sync::InPlace::Writeback`); the
//! next flush (a commit's, a data sync's) makes it durable.
//!
//! # Invariants
//! - An `fsync`/`fdatasync`/`sync` that returns `Ok` made durable every operation on its inode
//!   (all operations for `sync`) that returned before it was called: a crash recovers to the
//!   state after some prefix of the transactions, including those.
//! - Transactions commit in order, one at a time; blocks a transaction freed become
//!   allocatable only after it committed (`Mutator::release_blocks`) and no read that may be
//!   reading them is in flight (`reads`), and every one of them is revoked in it.
//! - No thread does device I/O while it holds the state lock (mount aside, before any other
//!   thread exists). Operations run on the mutator with memory-only reads; a block they need
//!   from the device is read with the lock dropped and the operation runs again, the fetched
//!   block checked against what went home meanwhile (`fetch`). Commits, data syncs and
//!   checkpoints take the journal out of the state and write unlocked (`sync`).
//! - A read of file data holds the state lock only to plan (memory); its device reads run
//!   without it, consecutive blocks in one request (`read`). A read by handle whose pages are
//!   all cached in the file's published epoch takes no mount-wide lock at all (`published`),
//!   nor does a miss by handle of a file with no page newer in memory (its clean view,
//!   `view`): it registers as in flight under the reads mutex and checks the epoch again.
//! - A sync waits for another's commit by spinning only while a CPU is spare beside the reads
//!   in flight that hold one (a synchronous device's or polled ones: `sync::cpu_spare`), else
//!   it sleeps at once and leads without batching.
//! - Once a commit or data sync fails (the journal aborts) or a transaction cannot be built,
//!   the mount is read-only: every later operation and sync fails with
//!   [`RwError::ReadOnly`] naming the first failure — no data is reported durable after a
//!   failed write (fsyncgate) — and unmount leaves `needs_recovery` set for the next mount.
//!   This is stricter than Linux, which keeps a file system writable after a data write error.
//! - Metadata blocks past [`RwOptions::metadata_pages`] are dropped before an operation
//!   starts, only once their home copy is the truth (after their checkpoint); a checkpoint
//!   makes every fetch that started before it read again (`fetch`).
//! - Operations are all-or-nothing (`Mutator::atomic`): a failed one changes nothing. A
//!   `write` larger than half a transaction's limit is applied in pieces, each one operation
//!   (`RwShared::write_chunk_bytes`), as a large `write(2)` may be cut by a crash.
//! - Paths are absolute (`/a/b`); no symlink is followed by these operations.
//!
//! # Modules
//! | Module | What |
//! | --- | --- |
//! | `ops` | the operations by path (create, write, rename, ...) and what each touches |
//! | `state` | the shared state, applying an operation, what it touched |
//! | `sync` | leading a commit or a data sync, fsync/fdatasync/sync, waiting |
//! | `txn` | a sealed transaction turned into journal input (`data=ordered`/`journal`) |
//! | `fetch` | blocks an operation needs, read outside the state lock, revalidated, and the operation retried |
//! | `read` | reading file contents through this mount: planned under the lock, the device read without it |
//! | `reads` | reads in flight, and the freed blocks they keep from reuse |
//! | `view` | an open file's inode and block map as of one cache epoch, reused by its reads |
//! | `unhomed` | a data block's newest contents while they are not home (the page itself, shared) |
//! | `published` | an open file's size and cache epoch, for cache hits by handle without the state lock |
//! | `file` | open files: open, close, I/O and syncs by handle |
//! | `flusher` | the periodic commit thread |
//! | `mount` | mount (recovery, orphans) and unmount |
//!
//! Files can also be opened ([`RwShared::open`]: create, exclusive, truncate, append) and
//! used by handle; an open file unlinked, or replaced by a rename, stays readable and writable
//! until its last close (the orphan list, `file`).

mod error;
mod fetch;
mod file;
mod flusher;
mod mount;
mod ops;
mod published;
mod read;
mod reads;
mod state;
mod sync;
#[cfg(test)]
mod test_mount;
mod txn;
mod unhomed;
mod view;

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use aios_block::BlockQueue;
use aios_device::Device;
use aios_journal::runtime::{CommitOrder, CommitTimes, Committed};

pub use error::RwError;
pub use file::{OpenOptions, RwFile};

use crate::data_page::PageSource;
use crate::{Fs, IoCtx, MountOptions};
use flusher::Flusher;
use state::State;

/// Bytes of one write of [`RwFs::put`] (the whole file is made durable at the end).
pub const PUT_CHUNK_BYTES: usize = 1 << 20;

/// The kernel's default `dirty_background_ratio`, of the page cache here.
pub const DIRTY_BACKGROUND_PERCENT_DEFAULT: u8 = 10;

/// The kernel's default `dirty_ratio`, of the page cache here.
pub const DIRTY_PERCENT_DEFAULT: u8 = 20;

/// The kernel's default periodic commit interval (`commit=5`).
pub const COMMIT_INTERVAL_DEFAULT: Duration = Duration::from_secs(5);

/// How file contents reach the disk (the `data=` mount option).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DataMode {
    /// `data=ordered`: data written in place before the commit that makes it reachable.
    #[default]
    Ordered,
    /// `data=journal`: data logged in the journal with the metadata, written home at
    /// checkpoint; `fdatasync` always commits.
    Journal,
}

/// How to mount read-write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RwOptions {
    /// Queue and cache settings (as a read-only mount's).
    pub mount: MountOptions,
    /// The commit order of every transaction (`sync`: vanilla ext4, `async`: AIOS).
    pub order: CommitOrder,
    /// `data=ordered` or `data=journal`.
    pub data: DataMode,
    /// `mount -o sync`: every operation is durable when it returns.
    pub sync: bool,
    /// The periodic commit of [`RwFs`] (`None`: only syncs, limits and unmount commit).
    pub commit_interval: Option<Duration>,
    /// Dirty data, in percent of the page cache's pages, past which the periodic commit
    /// thread writes it back at once (`data=journal`: commits) (the kernel's
    /// `dirty_background_ratio`). Needs `commit_interval`. Also where a writer past
    /// `dirty_percent` stops writing back.
    pub dirty_background_percent: u8,
    /// Dirty data, in percent of the page cache's pages, past which the writer itself
    /// writes back down to `dirty_background_percent` (`data=journal`: commits) before it
    /// returns (the kernel's `dirty_ratio`). Bounded further by an eighth of the arena (the
    /// budget of arena pages for data), and at least 16 pages.
    pub dirty_percent: u8,
    /// Most metadata blocks (inode tables, directories, extent trees, bitmaps) the mount keeps
    /// in memory past an operation, in pages; `None`: as many as the page cache's pages.
    /// Blocks whose home copy is older (changed, or logged and not yet checkpointed) stay
    /// whatever the bound.
    pub metadata_pages: Option<usize>,
    /// Test-only: a protocol bug to plant ([`aios_journal::runtime::PlantedBug`]); never set
    /// outside tests and `aios crashtest --plant`.
    pub plant: Option<aios_journal::runtime::PlantedBug>,
}

impl Default for RwOptions {
    fn default() -> Self {
        RwOptions {
            mount: MountOptions::default(),
            order: CommitOrder::default(),
            data: DataMode::default(),
            sync: false,
            commit_interval: Some(COMMIT_INTERVAL_DEFAULT),
            dirty_background_percent: DIRTY_BACKGROUND_PERCENT_DEFAULT,
            dirty_percent: DIRTY_PERCENT_DEFAULT,
            metadata_pages: None,
            plant: None,
        }
    }
}

/// Counters of one read-write mount.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RwStats {
    /// Transactions committed.
    pub commits: u64,
    /// Of those, commits started by the periodic commit.
    pub periodic_commits: u64,
    /// Commits that checkpointed first because the log was full.
    pub checkpoints: u64,
    /// Journal blocks written by commits.
    pub journal_blocks: u64,
    /// `fsync`/`fdatasync`/`sync` calls that returned `Ok`.
    pub syncs: u64,
    /// Data-only syncs (`fdatasync` of overwrites: data in place and a flush, no commit).
    pub data_syncs: u64,
    /// Writebacks: dirty data past the dirty marks written in place, without a flush or a
    /// commit (`data=ordered`).
    pub writebacks: u64,
    /// Metadata blocks dropped from memory to stay within
    /// [`RwOptions::metadata_pages`] (read from home again when needed).
    pub metadata_evictions: u64,
    /// Per-stage nanoseconds summed over every commit and data sync (the fsync breakdown).
    pub commit_times: CommitTimes,
    /// Blocks operations read from the device with the state lock dropped (`fetch`).
    pub blocks_fetched: u64,
    /// Fetched blocks thrown away because their home copy may have changed meanwhile.
    pub fetches_stale: u64,
}

impl RwStats {
    /// What happened between `before` and `self` (counters and times are monotonic).
    pub fn since(&self, before: &RwStats) -> RwStats {
        let (a, b) = (&self.commit_times, &before.commit_times);
        RwStats {
            commits: self.commits - before.commits,
            periodic_commits: self.periodic_commits - before.periodic_commits,
            checkpoints: self.checkpoints - before.checkpoints,
            journal_blocks: self.journal_blocks - before.journal_blocks,
            syncs: self.syncs - before.syncs,
            data_syncs: self.data_syncs - before.data_syncs,
            writebacks: self.writebacks - before.writebacks,
            metadata_evictions: self.metadata_evictions - before.metadata_evictions,
            blocks_fetched: self.blocks_fetched - before.blocks_fetched,
            fetches_stale: self.fetches_stale - before.fetches_stale,
            commit_times: CommitTimes {
                checkpoint_ns: a.checkpoint_ns - b.checkpoint_ns,
                build_journal_ns: a.build_journal_ns - b.build_journal_ns,
                submit_ns: a.submit_ns - b.submit_ns,
                wait_ns: a.wait_ns - b.wait_ns,
                flush_ns: a.flush_ns - b.flush_ns,
                commit_ns: a.commit_ns - b.commit_ns,
            },
        }
    }

    fn add_times(&mut self, c: &Committed) {
        let (sum, t) = (&mut self.commit_times, &c.times);
        sum.checkpoint_ns += t.checkpoint_ns;
        sum.build_journal_ns += t.build_journal_ns;
        sum.submit_ns += t.submit_ns;
        sum.wait_ns += t.wait_ns;
        sum.flush_ns += t.flush_ns;
        sum.commit_ns += t.commit_ns;
    }
}

/// One thread's context for a [`RwShared`]: its read context and its block queue. Make one
/// per thread with [`RwShared::ctx`]; it stays on that thread.
pub struct RwCtx<D: Device> {
    io: IoCtx<D::Queue>,
    q: BlockQueue<D::Queue>,
}

impl<D: Device> RwCtx<D> {
    /// The counters of this context's reads (file data and metadata): requests, kernel
    /// entries. Commits and data syncs write through the other queue and are not counted.
    pub fn read_stats(&self) -> aios_block::BlockStats {
        self.io.block_stats()
    }
}

/// The shared part of a read-write mount (`Sync`); see the module documentation.
pub struct RwShared<D: Device> {
    fs: Fs<D>,
    options: RwOptions,
    state: Mutex<State>,
    /// Signalled whenever a commit or data sync finishes (or fails).
    changed: Condvar,
    /// Bumped (under the state lock) at each such signal: a waiter spins on it before
    /// sleeping on `changed` (see `sync::wait`).
    generation: std::sync::atomic::AtomicU64,
    /// A running transaction with more metadata (plus journaled data) blocks than this commits
    /// at the end of the operation that grew it (a quarter of the log, as jbd2).
    txn_blocks_max: usize,
    /// Past this many dirty data pages the writer writes back (`data=journal`: commits) before
    /// it returns ([`RwOptions::dirty_percent`] of the cache, at most an eighth of the arena).
    dirty_blocks_max: usize,
    /// Past this many dirty data pages the periodic commit thread is woken to write back
    /// ([`RwOptions::dirty_background_percent`] of the cache); a writer writing back stops
    /// here.
    dirty_background_blocks: usize,
    /// Wakes the periodic commit thread early (`flusher`).
    flusher_kick: Arc<flusher::Kick>,
    /// Blocks of the journal's log (`s_maxlen - s_first`).
    log_blocks: u64,
    /// Reads of file data with device I/O in flight, and the freed blocks they hold back
    /// (`reads`). A lock of its own, taken after the state lock when both are held, so a read
    /// ends without the state lock (unless it releases parked blocks).
    reads: Mutex<reads::ReadsInFlight>,
    /// `State::running`, readable without the state lock (a read by handle that takes no
    /// lock registers with it: `file`).
    running_now: std::sync::atomic::AtomicU64,
    /// Threads inside a read that misses right now (`Busy`), against the CPUs this process may
    /// use: a sync waiting by spinning pays only while a CPU is spare (`sync::cpu_spare`).
    busy_threads: std::sync::atomic::AtomicUsize,
    cpus: usize,
    /// A read's device wait takes its CPU: the device completes inside `submit` (a
    /// synchronous backend) or completions are polled. Otherwise the reader sleeps while the
    /// device works and is not counted busy.
    reads_take_cpu: bool,
    /// Test-only: run once right after an operation's blocks were fetched outside the lock,
    /// before it takes the lock again (`fetch`), to stage a race there.
    #[cfg(test)]
    after_fetch: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

/// A file system mounted read-write, driven from one thread (more through [`RwFs::shared`]).
pub struct RwFs<D: Device + 'static> {
    shared: Arc<RwShared<D>>,
    ctx: RwCtx<D>,
    flusher: Option<Flusher>,
}

impl<D: Device> RwShared<D> {
    /// A context for the calling thread.
    pub fn ctx(&self) -> Result<RwCtx<D>, RwError> {
        let io = self.fs.io().map_err(|cause| RwError::Fs {
            step: "thread context",
            cause,
        })?;
        let q =
            BlockQueue::open(&self.fs.device, self.fs.options.queue_config()).map_err(|cause| {
                RwError::Device {
                    step: "thread context",
                    cause,
                }
            })?;
        Ok(RwCtx { io, q })
    }

    /// The options this mount was made with.
    pub fn options(&self) -> &RwOptions {
        &self.options
    }

    /// The device under the file system (e.g. to crash an emulated one).
    pub fn device(&self) -> &D {
        &self.fs.device
    }

    /// Blocks of the journal's log: with [`RwStats::journal_blocks`], how often it wrapped.
    pub fn log_blocks(&self) -> u64 {
        self.log_blocks
    }

    fn new(fs: Fs<D>, options: RwOptions, mut state: State, log_blocks: u64) -> Self {
        // Next to the page cache and the thread contexts, dirty data pages may take an eighth
        // of the arena (past it they go to the heap and are copied in when written), and a
        // commit's journal blocks (and copies of heap pages) another.
        let arena_share = fs.device.arena().len_bytes() / aios_device::BLOCK_SIZE / 8;
        state.mutator.set_page_source(PageSource::arena(
            Arc::clone(fs.device.arena()),
            arena_share,
        ));
        state
            .mutator
            .meta
            .set_cap(options.metadata_pages.unwrap_or(fs.cache.max_pages()));
        let log_quarter = usize::try_from(log_blocks / 4).unwrap_or(usize::MAX);
        let cache_pages = fs.cache.max_pages();
        let reads_take_cpu = fs.device.info().completes_in_submit
            || options.mount.completion == aios_device::CompletionMode::Poll;
        RwShared {
            fs,
            options,
            state: Mutex::new(state),
            changed: Condvar::new(),
            generation: std::sync::atomic::AtomicU64::new(0),
            txn_blocks_max: log_quarter.min(arena_share).max(16),
            dirty_blocks_max: percent_of(cache_pages, options.dirty_percent)
                .min(arena_share)
                .max(16),
            dirty_background_blocks: percent_of(cache_pages, options.dirty_background_percent),
            flusher_kick: Arc::new(flusher::Kick::default()),
            log_blocks,
            reads: Mutex::new(reads::ReadsInFlight::default()),
            running_now: std::sync::atomic::AtomicU64::new(1),
            busy_threads: std::sync::atomic::AtomicUsize::new(0),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            reads_take_cpu,
            #[cfg(test)]
            after_fetch: Mutex::new(None),
        }
    }
}

/// `percent` % of `pages`, rounded down.
fn percent_of(pages: usize, percent: u8) -> usize {
    pages.saturating_mul(usize::from(percent)) / 100
}

impl<D: Device + 'static> RwFs<D> {
    /// The part other threads use (each with its own [`RwShared::ctx`]), e.g. in
    /// `std::thread::scope`.
    pub fn shared(&self) -> &RwShared<D> {
        &self.shared
    }

    fn parts(&mut self) -> (&RwShared<D>, &mut RwCtx<D>) {
        (&self.shared, &mut self.ctx)
    }

    /// Counters so far.
    pub fn stats(&self) -> RwStats {
        self.shared.stats()
    }

    /// True once a failure made the mount read-only.
    pub fn is_read_only(&self) -> bool {
        self.shared.is_read_only()
    }

    /// The device under the file system (e.g. to crash an emulated one).
    pub fn device(&self) -> &D {
        self.shared.device()
    }

    /// What mount-time recovery replayed (`None`: the file system was clean).
    pub fn replayed(&self) -> Option<aios_journal::runtime::Replayed> {
        self.shared.replayed()
    }
}

/// Forwards each listed operation of [`RwShared`] to [`RwFs`] with its own context.
macro_rules! forward {
    ($( $(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty; )*) => {
        impl<D: Device + 'static> RwFs<D> {
            $(
                $(#[$doc])*
                pub fn $name(&mut self, $($arg: $ty),*) -> Result<$ret, RwError> {
                    let (shared, ctx) = self.parts();
                    shared.$name(ctx, $($arg),*)
                }
            )*
        }
    };
}

forward! {
    /// [`RwShared::lookup`].
    fn lookup(path: impl AsRef<[u8]>) -> Option<u32>;
    /// [`RwShared::inode`].
    fn inode(ino: u32) -> crate::Inode;
    /// [`RwShared::create`].
    fn create(path: impl AsRef<[u8]>, perm: u16) -> u32;
    /// [`RwShared::mkdir`].
    fn mkdir(path: impl AsRef<[u8]>, perm: u16) -> u32;
    /// [`RwShared::symlink`].
    fn symlink(path: impl AsRef<[u8]>, target: &[u8]) -> u32;
    /// [`RwShared::write`].
    fn write(path: impl AsRef<[u8]>, offset_bytes: u64, data: &[u8]) -> ();
    /// [`RwShared::read`].
    fn read(path: impl AsRef<[u8]>, offset_bytes: u64, out: &mut [u8]) -> usize;
    /// [`RwShared::truncate`].
    fn truncate(path: impl AsRef<[u8]>, size_bytes: u64) -> ();
    /// [`RwShared::unlink`].
    fn unlink(path: impl AsRef<[u8]>) -> ();
    /// [`RwShared::rename`].
    fn rename(from: impl AsRef<[u8]>, to: impl AsRef<[u8]>) -> ();
    /// [`RwShared::link`].
    fn link(existing: impl AsRef<[u8]>, new_path: impl AsRef<[u8]>) -> ();
    /// [`RwShared::set_attr`].
    fn set_attr(path: impl AsRef<[u8]>, attr: &crate::SetAttr) -> ();
    /// [`RwShared::fallocate`].
    fn fallocate(path: impl AsRef<[u8]>, offset_bytes: u64, len_bytes: u64, keep_size: bool) -> ();
    /// [`RwShared::rmdir`].
    fn rmdir(path: impl AsRef<[u8]>) -> ();
    /// [`RwShared::put`].
    fn put(path: impl AsRef<[u8]>, src: &mut dyn std::io::Read) -> u64;
    /// [`RwShared::fsync`].
    fn fsync(path: impl AsRef<[u8]>) -> ();
    /// [`RwShared::fdatasync`].
    fn fdatasync(path: impl AsRef<[u8]>) -> ();
    /// [`RwShared::sync`].
    fn sync() -> ();
    /// [`RwShared::checkpoint`].
    fn checkpoint() -> ();
}
