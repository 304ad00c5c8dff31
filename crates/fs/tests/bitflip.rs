//! Issue 3 acceptance: flipping any bit of any metadata block of a small image gives a typed
//! error or correct data, never a panic, a hang or wrong bytes.
//!
//! # What is enumerated
//! A small image (8 MiB, the smallest `mke2fs` gives a journal; default features, so
//! `metadata_csum`) holds every metadata kind the read path decodes: the superblock, the group
//! descriptors, inodes (regular files, fast and slow symlinks, directories), an extent tree of
//! depth 1 (a fragmented file: one leaf block), a linear directory of three blocks (full, partly
//! used, empty), an htree directory (`dx_root` and two leaves), lost+found (four empty blocks)
//! and a sparse file.
//!
//! The metadata blocks are the blocks a mount plus a full walk read from the device (recorded by
//! an in-memory device), minus file data (the blocks of regular files' and symlinks' extent
//! maps, which carry no checksum: a flip there is wrong data by design). For every bit of every
//! metadata block, the image with that bit flipped is mounted and walked: every path looked up
//! (and followed, for symlinks), every inode stat'ed, every directory listed, every symlink read,
//! every regular file read whole with `read_at` and through the page cache. Each step must give
//! exactly the clean image's result or a typed [`FsError`]; a panic, a case slower than
//! [`SLOW_CASE`], arena pages not returned, or `Ok` with a different result fails the test,
//! naming block, byte and bit. A case that never returns aborts the binary, naming it.
//!
//! # Cost
//! About 590k cases. No file I/O per case: the device serves reads from one shared copy of the
//! clean image and applies the flip on the fly; each worker thread (one per CPU, at most 4) reuses
//! one small arena; and a case runs only the steps whose result the flip can change (see
//! [`flipped_walk`]): all of them when the mount decoded anything differently from the clean
//! mount, otherwise those that read the flipped block in the clean walk.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aios_device::{
    check_tag, Arena, Completion, Device, DeviceError, DeviceInfo, FaultInjector, Io, Op, Queue,
    QueueConfig, Tag, BLOCK_SIZE,
};
use aios_ext4::format::group::GroupDesc;
use aios_ext4::format::superblock::Superblock;
use aios_ext4::FormatError;
use aios_fs::{DirEntry, Fs, FsError, MountOptions, Stat, ROOT_INO};

/// A case slower than this is reported as a (near) hang.
const SLOW_CASE: Duration = Duration::from_secs(2);
/// A case slower than this aborts the whole test binary (a real hang would never return).
const HUNG_CASE: Duration = Duration::from_secs(30);
/// Pages of each worker's arena: scratch pages, the page pool and the page cache of one mount.
const ARENA_PAGES: usize = 128;
const IMAGE_SIZE: &str = "8M";
/// Hard links in the htree directory: 255-byte names, so that they fill two leaf blocks.
const HTREE_ENTRIES: usize = 16;
/// Hard links in the linear directory (made with debugfs, which does not index): 255-byte names
/// fill its first block, spill into the second and leave the third empty.
const LINEAR_ENTRIES: usize = 17;
/// One-block extents of the fragmented file: more than the 4 the inode holds, so depth 1.
const FRAG_EXTENTS: usize = 8;
/// Longer than the 60 bytes of `i_block`; `.` components cost no lookups.
const SLOW_LINK_TARGET: &str = "a/././././././././././././././././././././././././././b/deep.txt";

// ---------------------------------------------------------------------------------------------
// An in-memory device: the clean image, shared, with at most one bit flipped on the way out.

/// Reads come from `image` with `flip` applied; writes are refused; every block read is recorded
/// when `reads` is set.
struct MemDevice {
    image: Arc<Vec<u8>>,
    /// `(byte offset, mask)`.
    flip: Option<(u64, u8)>,
    arena: Arc<Arena>,
    faults: FaultInjector,
    reads: Option<Arc<Mutex<BTreeSet<u64>>>>,
}

struct MemQueue {
    image: Arc<Vec<u8>>,
    flip: Option<(u64, u8)>,
    arena: Arc<Arena>,
    busy: Vec<bool>,
    done: Vec<Completion>,
    reads: Option<Arc<Mutex<BTreeSet<u64>>>>,
}

impl Device for MemDevice {
    type Queue = MemQueue;

    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            name: "mem".into(),
            capacity_bytes: self.image.len() as u64,
            volatile_cache: false,
            completes_in_submit: false,
        }
    }

    fn arena(&self) -> &Arc<Arena> {
        &self.arena
    }

    fn open_queue(&self, config: QueueConfig) -> Result<MemQueue, DeviceError> {
        Ok(MemQueue {
            image: self.image.clone(),
            flip: self.flip,
            arena: self.arena.clone(),
            busy: vec![false; usize::from(config.depth)],
            done: Vec::new(),
            reads: self.reads.clone(),
        })
    }

    fn faults(&self) -> &FaultInjector {
        &self.faults
    }
}

impl Queue for MemQueue {
    fn depth(&self) -> u16 {
        self.busy.len() as u16
    }

    unsafe fn push(&mut self, tag: Tag, io: &Io<'_>) -> Result<(), DeviceError> {
        let len = io.validate(&self.arena, self.image.len() as u64)?;
        check_tag(tag, self.depth(), self.busy.get(usize::from(tag)).copied())?;
        self.busy[usize::from(tag)] = true;
        let result = match io.op {
            Op::Read => {
                let mut at = io.offset_bytes;
                for seg in io.segments {
                    let n = seg.len as usize;
                    let src = &self.image[at as usize..at as usize + n];
                    // SAFETY: `validate` checked the segment lies in the arena; the caller handed
                    // its memory to the device until this command's completion is reaped.
                    let dst =
                        unsafe { std::slice::from_raw_parts_mut(self.arena.segment_ptr(*seg), n) };
                    dst.copy_from_slice(src);
                    if let Some((byte, mask)) = self.flip {
                        if (at..at + n as u64).contains(&byte) {
                            dst[(byte - at) as usize] ^= mask;
                        }
                    }
                    at += n as u64;
                }
                if let Some(reads) = &self.reads {
                    let first = io.offset_bytes / BLOCK_SIZE as u64;
                    let blocks = u64::from(len) / BLOCK_SIZE as u64;
                    reads.lock().unwrap().extend(first..first + blocks);
                }
                Ok(len)
            }
            Op::Write { .. } => Err(DeviceError::Invalid {
                op: io.op,
                reason: "read-only test device",
            }),
            Op::Flush => Ok(0),
        };
        self.done.push(Completion { tag, result });
        Ok(())
    }

    fn submit(&mut self) -> Result<usize, DeviceError> {
        Ok(self.done.len())
    }

    fn reap(&mut self, _min: usize, out: &mut Vec<Completion>) -> Result<usize, DeviceError> {
        let n = self.done.len();
        for c in self.done.drain(..) {
            self.busy[usize::from(c.tag)] = false;
            out.push(c);
        }
        Ok(n)
    }

    fn outstanding(&self) -> usize {
        self.done.len()
    }
}

fn options() -> MountOptions {
    MountOptions {
        queue_depth: 4,
        cache_pages: 48,
        pool_pages: 8,
        ..MountOptions::default()
    }
}

fn mount(
    image: &Arc<Vec<u8>>,
    arena: &Arc<Arena>,
    flip: Option<(u64, u8)>,
    reads: Option<Arc<Mutex<BTreeSet<u64>>>>,
) -> Result<Fs<MemDevice>, FsError> {
    let device = MemDevice {
        image: image.clone(),
        flip,
        arena: arena.clone(),
        faults: FaultInjector::default(),
        reads,
    };
    Fs::mount(device, options())
}

// ---------------------------------------------------------------------------------------------
// The image.

fn populate(src: &Path) {
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::write(src.join("a/b/deep.txt"), b"deep down\n").unwrap();
    std::fs::write(src.join("a/b/mid"), common::pattern(7, 5000)).unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    std::fs::write(src.join("small"), b"small\n").unwrap();
    std::fs::write(src.join("block"), common::pattern(4096, 4096)).unwrap();
    // Sparse: data at 0 and at 256 KiB, a hole between and after.
    let mut sparse = std::fs::File::create(src.join("sparse")).unwrap();
    sparse.write_all(&common::pattern(1, 5000)).unwrap();
    sparse.seek(SeekFrom::Start(256 << 10)).unwrap();
    sparse.write_all(&common::pattern(2, 3000)).unwrap();
    sparse.set_len((300 << 10) + 7).unwrap();
    // Fragmented: one block every other block, so every block is its own extent.
    let frag = std::fs::File::create(src.join("frag")).unwrap();
    for i in 0..FRAG_EXTENTS {
        frag.write_all_at(&common::pattern(100 + i as u64, 4096), (i * 8192) as u64)
            .unwrap();
    }
    std::os::unix::fs::symlink("a/b/deep.txt", src.join("fast_link")).unwrap();
    std::os::unix::fs::symlink(SLOW_LINK_TARGET, src.join("slow_link")).unwrap();
    std::os::unix::fs::symlink("/a/b", src.join("dir_link")).unwrap();
    std::fs::create_dir(src.join("htree")).unwrap();
    std::fs::write(src.join("htree/target"), b"linked\n").unwrap();
    for i in 0..HTREE_ENTRIES {
        std::fs::hard_link(
            src.join("htree/target"),
            src.join(format!("htree/h{i:03}_{}", "x".repeat(250))),
        )
        .unwrap();
    }
}

/// Runs an e2fsprogs tool with a fixed clock, so that the image's layout is the same every run.
fn run(cmd: &mut Command) {
    let out = cmd
        .env("E2FSPROGS_FAKE_TIME", "1700000000")
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0..=1)),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `mke2fs -d`, `e2fsck -fyD` (indexes `/htree`), then a linear three-block `/lin` made with
/// debugfs (which links without indexing); `e2fsck -fn` must find the result clean.
fn build_image(dir: &Path) -> Vec<u8> {
    let src = dir.join("src");
    std::fs::create_dir(&src).unwrap();
    populate(&src);
    let image = dir.join("img");
    run(Command::new("mke2fs")
        .args(["-q", "-t", "ext4", "-F", "-b", "4096"])
        // Fixed UUID and directory hash seed: the same checksums seeds and htree leaves each run.
        .args(["-U", "6b33f7ab-54d3-4bd0-9c8a-3a1c55d6e7f1"])
        .args(["-E", "hash_seed=0e5bb9b1-3d2c-4c7e-8a57-6b0f2f3c9d11", "-d"])
        .arg(&src)
        .arg(&image)
        .arg(IMAGE_SIZE));
    run(Command::new("e2fsck").args(["-f", "-y", "-D"]).arg(&image));
    let mut cmds = String::from("mkdir /lin\nexpand_dir /lin\nexpand_dir /lin\n");
    for i in 0..LINEAR_ENTRIES {
        cmds += &format!("ln /small /lin/l{i:03}_{}\n", "y".repeat(250));
    }
    cmds += &format!("sif /small links_count {}\n", LINEAR_ENTRIES + 1);
    let cmd_file = dir.join("cmds");
    std::fs::write(&cmd_file, cmds).unwrap();
    run(Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&cmd_file)
        .arg(&image));
    let out = Command::new("e2fsck")
        .args(["-f", "-n"])
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "e2fsck -fn: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::fs::read(&image).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The walk.

#[derive(Debug, Clone)]
enum Step {
    Lookup(Vec<u8>),
    LookupFollow(Vec<u8>),
    Stat(u32),
    ReadDir(u32),
    ReadLink(u32),
    /// `read_at` and the cached `read` of the whole file, into a buffer one byte longer than the
    /// clean file (a read must stop at end of file).
    ReadFile {
        ino: u32,
        buf_len: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Ino(u32),
    Stat(Stat),
    Entries(Vec<DirEntry>),
    Link(Vec<u8>),
    Bytes(Vec<u8>),
}

/// Reads the whole file twice: plain and through the page cache; both must agree.
fn read_file<D: Device>(
    fs: &Fs<D>,
    io: &mut aios_fs::IoCtx<D::Queue>,
    ino: u32,
    buf_len: usize,
) -> Result<Value, FsError> {
    let file = fs.open(io, ino)?;
    let mut plain = vec![0xA5u8; buf_len];
    let n = fs.read_at(io, &file, 0, &mut plain)?;
    plain.truncate(n);
    let mut cached = vec![0x5Au8; buf_len];
    let n = fs.read(io, &file, 0, &mut cached)?;
    cached.truncate(n);
    // Different bytes from the two reads of one open file are wrong data whatever the image.
    assert!(plain == cached, "inode {ino}: read_at and read disagree");
    Ok(Value::Bytes(plain))
}

fn step<D: Device>(
    fs: &Fs<D>,
    io: &mut aios_fs::IoCtx<D::Queue>,
    step: &Step,
) -> Result<Value, FsError> {
    match step {
        Step::Lookup(path) => fs.lookup(io, path).map(Value::Ino),
        Step::LookupFollow(path) => fs.lookup_follow(io, path).map(Value::Ino),
        Step::Stat(ino) => fs.stat(io, *ino).map(Value::Stat),
        Step::ReadDir(ino) => fs.read_dir(io, *ino).map(Value::Entries),
        Step::ReadLink(ino) => fs.read_link(io, *ino).map(Value::Link),
        Step::ReadFile { ino, buf_len } => read_file(fs, io, *ino, *buf_len),
    }
}

/// The steps of a full walk, from the clean image: every path by a tree walk from the root.
/// Also returns the data blocks (regular files' and symlinks' extents).
fn plan<D: Device>(fs: &Fs<D>) -> (Vec<Step>, BTreeSet<u64>) {
    let mut io = fs.io().unwrap();
    let mut steps = vec![Step::Stat(ROOT_INO), Step::ReadDir(ROOT_INO)];
    let mut data = BTreeSet::new();
    let mut seen = BTreeSet::from([ROOT_INO]);
    let mut dirs = vec![(b"".to_vec(), ROOT_INO)];
    while let Some((dir_path, dir_ino)) = dirs.pop() {
        for e in fs.read_dir(&mut io, dir_ino).unwrap() {
            let mut path = dir_path.clone();
            path.push(b'/');
            path.extend_from_slice(&e.name);
            steps.push(Step::Lookup(path.clone()));
            let inode = fs.read_inode(&mut io, e.ino).unwrap();
            if inode.is_symlink() {
                steps.push(Step::LookupFollow(path.clone()));
            }
            if !seen.insert(e.ino) {
                continue;
            }
            steps.push(Step::Stat(e.ino));
            if inode.is_dir() {
                steps.push(Step::ReadDir(e.ino));
                dirs.push((path, e.ino));
                continue;
            }
            if inode.is_symlink() {
                steps.push(Step::ReadLink(e.ino));
            } else {
                let buf_len = usize::try_from(inode.size_bytes).unwrap() + 1;
                steps.push(Step::ReadFile {
                    ino: e.ino,
                    buf_len,
                });
            }
            if inode.uses_extents() {
                for m in fs.extent_map(&mut io, &inode).unwrap().mappings() {
                    data.extend(m.physical_block..m.physical_block + u64::from(m.len_blocks));
                }
            }
        }
    }
    (steps, data)
}

/// The clean image's walk: results, mounted state, and which steps read which block.
struct Clean {
    steps: Vec<Step>,
    results: Vec<Value>,
    sb: Superblock,
    groups: Vec<GroupDesc>,
    /// Blocks the mount reads.
    mount_reads: BTreeSet<u64>,
    /// For each block read by the walk, the steps that read it.
    readers: BTreeMap<u64, Vec<usize>>,
}

fn clean_walk(image: &Arc<Vec<u8>>, arena: &Arc<Arena>, steps: Vec<Step>) -> Clean {
    let reads = Arc::new(Mutex::new(BTreeSet::new()));
    let fs = mount(image, arena, None, Some(reads.clone())).unwrap();
    let mount_reads = std::mem::take(&mut *reads.lock().unwrap());
    let mut io = fs.io().unwrap();
    let mut results = Vec::new();
    let mut readers: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, s) in steps.iter().enumerate() {
        let value = step(&fs, &mut io, s);
        results.push(value.unwrap_or_else(|e| panic!("clean image: {s:?}: {e}")));
        for b in std::mem::take(&mut *reads.lock().unwrap()) {
            readers.entry(b).or_default().push(i);
        }
    }
    Clean {
        steps,
        results,
        sb: fs.superblock().clone(),
        groups: fs.groups().to_vec(),
        mount_reads,
        readers,
    }
}

/// What one flipped image gave: a mount error, or the results of the steps that were run.
type Outcome = Result<Vec<(usize, Result<Value, FsError>)>, FsError>;

/// Mounts the image with `flip` (a bit of `block`) and walks it.
///
/// The walk skips the steps that provably give the clean result: when the mount decoded exactly
/// the clean superblock and group descriptors, a step that did not read `block` in the clean walk
/// reads exactly the clean bytes (each read's offset depends only on bytes read before it, and
/// steps share no state but the page cache of file data, whose keys one step each owns), so it
/// computes exactly the clean result. Every other step runs.
fn flipped_walk(
    image: &Arc<Vec<u8>>,
    arena: &Arc<Arena>,
    clean: &Clean,
    block: u64,
    flip: (u64, u8),
) -> Outcome {
    let fs = mount(image, arena, Some(flip), None)?;
    let mut io = fs.io()?;
    let same_mount = fs.superblock() == &clean.sb && fs.groups() == clean.groups.as_slice();
    let all: Vec<usize>;
    let run = match clean.readers.get(&block) {
        _ if !same_mount => {
            all = (0..clean.steps.len()).collect();
            &all
        }
        Some(readers) => readers,
        None => &Vec::new(),
    };
    Ok(run
        .iter()
        .map(|&i| (i, step(&fs, &mut io, &clean.steps[i])))
        .collect())
}

/// The kind of an error: its `FsError` variant under any path context, and the `FormatError`
/// variant for decoder errors (no formatting: there are millions of errors to count).
fn kind(err: &FsError) -> &'static str {
    match err.root_cause() {
        FsError::Format(f) => match f {
            FormatError::Truncated { .. } => "Format::Truncated",
            FormatError::BadMagic { .. } => "Format::BadMagic",
            FormatError::ChecksumMismatch { .. } => "Format::ChecksumMismatch",
            FormatError::FieldOutOfRange { .. } => "Format::FieldOutOfRange",
            FormatError::UnsupportedFeature { .. } => "Format::UnsupportedFeature",
            FormatError::JournalNeedsRecovery => "Format::JournalNeedsRecovery",
        },
        FsError::Device(_) => "Device",
        FsError::ShortRead { .. } => "ShortRead",
        FsError::Arena(_) => "Arena",
        FsError::NotFound { .. } => "NotFound",
        FsError::NotADirectory { .. } => "NotADirectory",
        FsError::IsADirectory { .. } => "IsADirectory",
        FsError::NotARegularFile { .. } => "NotARegularFile",
        FsError::NotASymlink { .. } => "NotASymlink",
        FsError::NameTooLong { .. } => "NameTooLong",
        FsError::SymlinkLoop { .. } => "SymlinkLoop",
        FsError::InvalidPath { .. } => "InvalidPath",
        FsError::Corrupt { .. } => "Corrupt",
        FsError::Unsupported { .. } => "Unsupported",
        FsError::NotInMemory { .. } => "NotInMemory",
        FsError::ForeignIoCtx => "ForeignIoCtx",
        FsError::Cache(_) => "Cache",
        FsError::NoSpace { .. } => "NoSpace",
        FsError::Exists { .. } => "Exists",
        FsError::NotEmpty { .. } => "NotEmpty",
        FsError::FileTooBig { .. } => "FileTooBig",
        FsError::TooManyLinks { .. } => "TooManyLinks",
        FsError::InvalidArgument { .. } => "InvalidArgument",
        FsError::NotPermitted { .. } => "NotPermitted",
        FsError::Read { .. } | FsError::At { .. } => "context without a cause",
    }
}

// ---------------------------------------------------------------------------------------------
// The enumeration.

#[derive(Default)]
struct Tally {
    cases: u64,
    /// Cases that mounted and whose every step gave the clean result.
    identical: u64,
    /// Cases refused at mount.
    mount_errors: u64,
    /// Cases that mounted, with at least one step a typed error (every `Ok` step identical).
    step_errors: u64,
    /// Steps run (the others provably read no flipped byte; see [`flipped_walk`]).
    steps_run: u64,
    /// Typed errors by (refused at mount, kind).
    errors: BTreeMap<(bool, &'static str), u64>,
    failures: Vec<String>,
    slowest: Duration,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.cases += other.cases;
        self.identical += other.identical;
        self.mount_errors += other.mount_errors;
        self.step_errors += other.step_errors;
        self.steps_run += other.steps_run;
        for (k, n) in other.errors {
            *self.errors.entry(k).or_default() += n;
        }
        self.failures.extend(other.failures);
        self.slowest = self.slowest.max(other.slowest);
    }

    /// Checks one case against the clean walk: a step is either `Ok` with the clean value or a
    /// typed error.
    fn judge(&mut self, clean: &Clean, outcome: Outcome) {
        let results = match outcome {
            Err(e) => {
                *self.errors.entry((true, kind(&e))).or_default() += 1;
                self.mount_errors += 1;
                return;
            }
            Ok(r) => r,
        };
        self.steps_run += results.len() as u64;
        let mut errors = 0;
        for (i, got) in results {
            match got {
                Err(e) => {
                    errors += 1;
                    *self.errors.entry((false, kind(&e))).or_default() += 1;
                }
                Ok(g) if g == clean.results[i] => {}
                Ok(g) => {
                    let g = format!("{g:?}");
                    let w = format!("{:?}", clean.results[i]);
                    self.failures.push(format!(
                        "{:?}: Ok({}) instead of Ok({})",
                        clean.steps[i],
                        g.get(..300).unwrap_or(&g),
                        w.get(..300).unwrap_or(&w)
                    ));
                }
            }
        }
        if errors == 0 {
            self.identical += 1;
        } else {
            self.step_errors += 1;
        }
    }
}

/// Milliseconds since `epoch` (plus one) at which a worker started its current case (0: idle),
/// and the case, for the watchdog.
#[derive(Default)]
struct Watch {
    started_ms: AtomicU64,
    case: AtomicU64,
}

const BITS_PER_BLOCK: u64 = BLOCK_SIZE as u64 * 8;

/// Case `case`: block `blocks[case / BITS_PER_BLOCK]`, bit `case % BITS_PER_BLOCK` of it.
fn case_flip(case: u64, blocks: &[(u64, String)]) -> (u64, (u64, u8)) {
    let block = blocks[(case / BITS_PER_BLOCK) as usize].0;
    let bit = case % BITS_PER_BLOCK;
    (
        block,
        (block * BLOCK_SIZE as u64 + bit / 8, 1u8 << (bit % 8)),
    )
}

fn case_name(case: u64, blocks: &[(u64, String)]) -> String {
    let (block, what) = &blocks[(case / BITS_PER_BLOCK) as usize];
    let bit = case % BITS_PER_BLOCK;
    format!("block {block} ({what}) byte {} bit {}", bit / 8, bit % 8)
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Runs cases `first, first + stride, ...` below `total`.
fn worker(
    image: &Arc<Vec<u8>>,
    clean: &Clean,
    blocks: &[(u64, String)],
    (first, stride, total): (u64, usize, u64),
    watch: &Watch,
    epoch: Instant,
) -> Tally {
    let mut t = Tally::default();
    let mut arena = Arc::new(Arena::new(ARENA_PAGES * BLOCK_SIZE).unwrap());
    for case in (first..total).step_by(stride) {
        let (block, flip) = case_flip(case, blocks);
        watch.case.store(case, Ordering::Relaxed);
        let started_ms = epoch.elapsed().as_millis() as u64 + 1;
        watch.started_ms.store(started_ms, Ordering::Relaxed);
        let start = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            flipped_walk(image, &arena, clean, block, flip)
        }));
        let took = start.elapsed();
        watch.started_ms.store(0, Ordering::Relaxed);
        t.cases += 1;
        t.slowest = t.slowest.max(took);
        let before = t.failures.len();
        match outcome {
            Ok(outcome) => t.judge(clean, outcome),
            Err(payload) => t
                .failures
                .push(format!("panic: {}", panic_message(&*payload))),
        }
        if took > SLOW_CASE {
            t.failures.push(format!("took {took:?}"));
        }
        let free = arena.free_pages() as usize;
        if free != ARENA_PAGES {
            t.failures
                .push(format!("{} arena pages not returned", ARENA_PAGES - free));
            arena = Arc::new(Arena::new(ARENA_PAGES * BLOCK_SIZE).unwrap());
        }
        for f in &mut t.failures[before..] {
            *f = format!("{}: {f}", case_name(case, blocks));
        }
    }
    t
}

#[test]
fn every_bit_of_every_metadata_block_is_an_error_or_correct() {
    if !common::have_mke2fs("every_bit_of_every_metadata_block_is_an_error_or_correct") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = Arc::new(build_image(dir.path()));

    // The clean walk: its steps, results, and the blocks each step reads.
    let arena = Arc::new(Arena::new(ARENA_PAGES * BLOCK_SIZE).unwrap());
    let (steps, data) = plan(&mount(&image, &arena, None, None).unwrap());
    let clean = clean_walk(&image, &arena, steps);
    let read: BTreeSet<u64> = clean
        .mount_reads
        .iter()
        .chain(clean.readers.keys())
        .copied()
        .collect();
    let metadata: Vec<u64> = read.difference(&data).copied().collect();
    let blocks = classify(&image, &arena, &metadata);
    eprintln!(
        "{} steps per walk; {} blocks read, {} of them file data; metadata blocks:",
        clean.steps.len(),
        read.len(),
        read.intersection(&data).count()
    );
    for (b, what) in &blocks {
        let readers = clean.readers.get(b).map_or(0, Vec::len);
        eprintln!("  {b:5} {what} (read by {readers} steps)");
    }
    for required in [
        "superblock",
        "group descriptors",
        "inode table",
        "extent node",
    ] {
        assert!(
            blocks.iter().any(|(_, w)| w.starts_with(required)),
            "no {required} block among {blocks:?}"
        );
    }
    for (dir, min_blocks) in [("/a/", 1), ("/htree/", 3), ("/lin/", 3)] {
        let n = blocks.iter().filter(|(_, w)| w.contains(dir)).count();
        assert!(n >= min_blocks, "{dir}: {blocks:?}");
    }

    // The judge sees wrong data: a flipped bit of file data (no checksum) must be a failure.
    let data_block = *data.first().unwrap();
    let mut t = Tally::default();
    let flip = (data_block * BLOCK_SIZE as u64, 1);
    t.judge(
        &clean,
        flipped_walk(&image, &arena, &clean, data_block, flip),
    );
    assert!(
        !t.failures.is_empty(),
        "flipped data block {data_block}: no failure"
    );

    // Every bit of every metadata block, on every CPU (at most 4).
    let total = blocks.len() as u64 * BITS_PER_BLOCK;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let epoch = Instant::now();
    let watches: Vec<Watch> = (0..workers).map(|_| Watch::default()).collect();
    let prev_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut tally = Tally::default();
    std::thread::scope(|scope| {
        let handles: Vec<_> = watches
            .iter()
            .enumerate()
            .map(|(w, watch)| {
                let (image, clean, blocks) = (&image, &clean, &blocks);
                let range = (w as u64, workers, total);
                scope.spawn(move || worker(image, clean, blocks, range, watch, epoch))
            })
            .collect();
        // Watchdog: a case that never returns aborts the test binary, naming the case.
        while !handles.iter().all(|h| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(100));
            let now_ms = epoch.elapsed().as_millis() as u64 + 1;
            for watch in &watches {
                let started = watch.started_ms.load(Ordering::Relaxed);
                if started != 0 && now_ms - started > HUNG_CASE.as_millis() as u64 {
                    let case = watch.case.load(Ordering::Relaxed);
                    eprintln!("HUNG for {HUNG_CASE:?}: {}", case_name(case, &blocks));
                    std::process::abort();
                }
            }
        }
        for h in handles {
            tally.add(h.join().unwrap());
        }
    });
    std::panic::set_hook(prev_hook);

    eprintln!(
        "{} cases ({} blocks x {BITS_PER_BLOCK} bits) in {:.1?} on {workers} threads \
         (slowest case {:?}); {} steps run",
        tally.cases,
        blocks.len(),
        epoch.elapsed(),
        tally.slowest,
        tally.steps_run
    );
    eprintln!(
        "  refused at mount: {}; mounted, some step a typed error: {}; \
         mounted, every step identical: {}; failures: {}",
        tally.mount_errors,
        tally.step_errors,
        tally.identical,
        tally.failures.len()
    );
    for ((at_mount, kind), n) in &tally.errors {
        let at = if *at_mount {
            "mount refused"
        } else {
            "step error"
        };
        eprintln!("  {n:8} {at}: {kind}");
    }
    for f in tally.failures.iter().take(40) {
        eprintln!("FAIL {f}");
    }
    assert_eq!(tally.cases, total);
    assert!(
        tally.failures.is_empty(),
        "{} failures, first: {}",
        tally.failures.len(),
        tally.failures[0]
    );
}

/// Names what each metadata block holds, from the clean mount.
fn classify(image: &Arc<Vec<u8>>, arena: &Arc<Arena>, metadata: &[u64]) -> Vec<(u64, String)> {
    let fs = mount(image, arena, None, None).unwrap();
    let mut io = fs.io().unwrap();
    let sb = fs.superblock();
    let gdt = sb.group_desc_offset_bytes(0).unwrap() / BLOCK_SIZE as u64;
    let per_block = BLOCK_SIZE as u64 / u64::from(sb.inode_size_bytes);
    let table_blocks = u64::from(sb.inodes_per_group).div_ceil(per_block);
    // Directory blocks, by walking the clean tree.
    let mut dir_blocks = BTreeMap::new();
    let mut dirs = vec![(String::from("/"), ROOT_INO)];
    while let Some((path, ino)) = dirs.pop() {
        let inode = fs.read_inode(&mut io, ino).unwrap();
        for m in fs.extent_map(&mut io, &inode).unwrap().mappings() {
            for i in 0..u64::from(m.len_blocks) {
                let logical = m.logical_block + i;
                let name = format!("directory {path} block {logical}");
                dir_blocks.insert(m.physical_block + i, name);
            }
        }
        for e in fs.read_dir(&mut io, ino).unwrap() {
            if e.file_type == aios_ext4::format::dir::file_type::DIR {
                let name = String::from_utf8_lossy(&e.name);
                dirs.push((format!("{path}{name}/"), e.ino));
            }
        }
    }
    let what = |b: u64| {
        if b == 0 {
            return "superblock".to_string();
        }
        if b == gdt {
            return "group descriptors".to_string();
        }
        for g in fs.groups() {
            if (g.inode_table_block..g.inode_table_block + table_blocks).contains(&b) {
                let first = (b - g.inode_table_block) * per_block + 1;
                let group = g.group;
                return format!("inode table of group {group}, inodes {first}..");
            }
        }
        dir_blocks
            .get(&b)
            .cloned()
            .unwrap_or_else(|| "extent node".to_string())
    };
    metadata.iter().map(|&b| (b, what(b))).collect()
}
