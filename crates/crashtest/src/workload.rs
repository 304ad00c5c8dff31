//! Workloads: the small prepared image (ACE's approach) and every 1-op workload over it, run
//! on a recording emulated device.
//!
//! # Role
//! [`prepare`] makes a 32 MiB ext4 image with `mke2fs` and fills it through our own mount
//! (directories, tagged files, a symlink, a hard link), then unmounts cleanly: that image and
//! its [`Model`] are every workload's starting state. [`one_op`] lists the workloads: each op of
//! the vocabulary on one or two targets, followed by one persistence op (`fsync` or
//! `fdatasync` of the target, or `sync`), so something is acknowledged. [`record`] runs one
//! on the `nand` emulated device (volatile write cache, virtual clock, write log) and notes the
//! event count when each op returned, then unmounts (its checkpoint is crash-tested too).
//!
//! # Invariants
//! - Deterministic: same workload, same image, same options -> same write log.
//! - Every workload op succeeds on the prepared image; one that fails is reported, never
//!   skipped silently.

use std::path::Path;
use std::process::Command;

use aios_device_emu::{DiskImage, EmuConfig, EmuDevice, WriteLog};
use aios_fs::{RwCtx, RwError, RwFs, RwOptions, RwShared};

use super::model::{Model, Node, Op};

/// The device a workload runs on: volatile cache, so unflushed writes may be lost.
pub const EMU_RECORD: &str = "nand,size=32M,arena=16M,clock=virtual,record";
/// The device recovery and checks run on (timing does not matter there).
pub const EMU_CHECK: &str = "instant,size=32M,arena=2M,clock=virtual";
/// Generation of the prepared image's data, and of the workloads' writes.
pub const GEN_PREPARED: u32 = 1;
pub const GEN_WORKLOAD: u32 = 2;

/// One workload: its ops (the last one persists) and a name without spaces or ':'.
#[derive(Debug, Clone)]
pub struct Workload {
    pub name: String,
    pub ops: Vec<Op>,
    /// `ctx[i]`: the thread context that runs op `i` (empty: all on context 0). Contexts
    /// take turns on one OS thread, so a run is deterministic.
    pub ctx: Vec<usize>,
}

impl Workload {
    pub fn new(name: String, ops: Vec<Op>) -> Self {
        Workload {
            name,
            ops,
            ctx: Vec::new(),
        }
    }

    /// How many thread contexts the workload uses.
    pub fn threads(&self) -> usize {
        self.ctx.iter().max().map_or(1, |m| m + 1)
    }
}

/// A write op (short: workload lists are made of them, here and in `eio`).
pub(super) fn w(path: &str, offset: u64, len: usize, generation: u32) -> Op {
    Op::Write {
        path: path.into(),
        offset,
        len,
        generation,
    }
}

/// The prepared image's contents, as operations.
fn prepare_ops() -> Vec<Op> {
    let g = GEN_PREPARED;
    vec![
        Op::Mkdir("/A".into()),
        Op::Mkdir("/B".into()),
        Op::Mkdir("/D".into()),
        Op::Create("/foo".into()),
        w("/foo", 0, 8192, g),
        Op::Create("/A/foo".into()),
        w("/A/foo", 0, 13_312, g),
        Op::Create("/A/bar".into()),
        Op::Link("/A/foo".into(), "/A/hl".into()),
        Op::Symlink("/s".into(), "foo".into()),
    ]
}

/// Runs `op` on the mount through thread context `ctx`.
pub fn run_op(
    fs: &RwShared<EmuDevice>,
    ctx: &mut RwCtx<EmuDevice>,
    model: &Model,
    op: &Op,
) -> Result<(), RwError> {
    match op {
        Op::Create(p) => fs.create(ctx, p, 0o644).map(drop),
        Op::Mkdir(p) => fs.mkdir(ctx, p, 0o755).map(drop),
        Op::Symlink(p, t) => fs.symlink(ctx, p, t.as_bytes()).map(drop),
        Op::Write { path, offset, .. } => fs.write(ctx, path, *offset, &model.data_of(op)),
        Op::Truncate(p, s) => fs.truncate(ctx, p, *s),
        Op::Fallocate {
            path,
            offset,
            len,
            keep_size,
        } => fs.fallocate(ctx, path, *offset, *len, *keep_size),
        Op::Unlink(p) => fs.unlink(ctx, p),
        Op::Rmdir(p) => fs.rmdir(ctx, p),
        Op::Rename(a, b) => fs.rename(ctx, a, b),
        Op::Link(a, b) => fs.link(ctx, a, b),
        Op::Fsync(p) => fs.fsync(ctx, p),
        Op::Fdatasync(p) => fs.fdatasync(ctx, p),
        Op::Sync => fs.sync(ctx),
    }
}

/// The prepared image and its model.
pub struct Prepared {
    pub image: DiskImage,
    pub model: Model,
}

/// Makes the prepared image in `dir` (needs `mke2fs`).
pub fn prepare(dir: &Path, options: RwOptions) -> Result<Prepared, String> {
    prepare_with(dir, options, &prepare_ops(), None)
}

/// A fresh 32 MiB ext4 image holding `ops` (made through our mount, cleanly unmounted, never
/// with a planted bug); with `journal_blocks`, its journal's `s_maxlen` is cut to that many
/// blocks first.
pub fn prepare_with(
    dir: &Path,
    mut options: RwOptions,
    ops: &[Op],
    journal_blocks: Option<u32>,
) -> Result<Prepared, String> {
    options.plant = None;
    let path = dir.join("prepared.img");
    let out = Command::new("mke2fs")
        .args(["-q", "-t", "ext4", "-F", "-b", "4096"])
        .arg(&path)
        .arg("32M")
        .output()
        .map_err(|e| format!("run mke2fs (apt-get install e2fsprogs): {e}"))?;
    if !out.status.success() {
        return Err(format!("mke2fs: {}", String::from_utf8_lossy(&out.stderr)));
    }
    if let Some(blocks) = journal_blocks {
        shrink_journal(&path, blocks)?;
    }
    let image = DiskImage::load(&path).map_err(|e| format!("load {}: {e}", path.display()))?;
    let config = EmuConfig::parse(EMU_CHECK).map_err(|e| e.to_string())?;
    let dev = EmuDevice::with_image(config, image).map_err(|e| e.to_string())?;
    let fs = RwFs::mount(dev.clone(), options).map_err(|e| format!("prepare mount: {e}"))?;
    let mut ctx = fs.shared().ctx().map_err(|e| e.to_string())?;
    let mut model = Model::default();
    for op in ops {
        run_op(fs.shared(), &mut ctx, &model, op).map_err(|e| format!("prepare {op}: {e}"))?;
        model.apply(op)?;
    }
    drop(ctx);
    let (_, r) = fs.unmount();
    r.map_err(|e| format!("prepare unmount: {e}"))?;
    let image = dev.current_image().map_err(|e| e.to_string())?;
    Ok(Prepared { image, model })
}

/// Cuts the journal of the (clean) image at `path` to `blocks` blocks by lowering `s_maxlen`,
/// so short workloads wrap it. `e2fsck` and our mount accept this; the kernel's jbd2 refuses
/// logs under 1024 blocks, so such images are for the harness only.
fn shrink_journal(path: &Path, blocks: u32) -> Result<(), String> {
    use aios_journal::format::superblock::{
        superblock_csum, JournalSuperblock, SUPERBLOCK_SIZE_BYTES, S_CHECKSUM, S_MAXLEN,
    };
    use std::io::{Read, Seek, SeekFrom, Write};
    let out = Command::new("debugfs")
        .args(["-R", "bmap <8> 0"])
        .arg(path)
        .output()
        .map_err(|e| format!("run debugfs: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let block: u64 = text
        .trim()
        .parse()
        .map_err(|_| format!("debugfs bmap of the journal: {text:?}"))?;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    let mut raw = [0u8; SUPERBLOCK_SIZE_BYTES];
    let at = SeekFrom::Start(block * 4096);
    f.seek(at)
        .and_then(|_| f.read_exact(&mut raw))
        .map_err(|e| format!("read the journal superblock: {e}"))?;
    let sb = JournalSuperblock::decode(&raw).map_err(|e| format!("journal superblock: {e}"))?;
    // A log of fewer than 32 blocks could not hold one transaction of the smallest limit.
    if blocks >= sb.maxlen_blocks || blocks < sb.first_block + 32 {
        return Err(format!(
            "journal of {blocks} blocks: must be below {} and at least {}",
            sb.maxlen_blocks,
            sb.first_block + 32
        ));
    }
    raw[S_MAXLEN..S_MAXLEN + 4].copy_from_slice(&blocks.to_be_bytes());
    if sb.checksum_type != 0 || sb.checksum != 0 {
        let csum = superblock_csum(&raw);
        raw[S_CHECKSUM..S_CHECKSUM + 4].copy_from_slice(&csum.to_be_bytes());
    }
    f.seek(at)
        .and_then(|_| f.write_all(&raw))
        .map_err(|e| format!("write the journal superblock: {e}"))
}

/// The persistence ops that fit after an op whose main path is `target` (`is_file`: a
/// regular file there afterwards).
fn persists(target: &str, is_file: bool) -> Vec<(String, Op)> {
    let mut v = vec![("fsync".to_string(), Op::Fsync(target.into()))];
    if is_file {
        v.push(("fdatasync".into(), Op::Fdatasync(target.into())));
    }
    v.push(("sync".into(), Op::Sync));
    v
}

/// The vocabulary over the prepared image: (word, op, the path its persistence op syncs).
fn vocabulary() -> Vec<(&'static str, Op, &'static str)> {
    let g = GEN_WORKLOAD;
    vec![
        ("create", Op::Create("/new".into()), "/new"),
        ("create", Op::Create("/A/new".into()), "/A/new"),
        ("write", w("/A/bar", 0, 8192, g), "/A/bar"),
        ("write", w("/foo", 16_384, 4096, g), "/foo"),
        ("append", w("/foo", 8192, 5024, g), "/foo"),
        ("append", w("/A/foo", 13_312, 96, g), "/A/foo"),
        ("overwrite", w("/foo", 4096, 4096, g), "/foo"),
        ("overwrite", w("/A/foo", 992, 2976, g), "/A/foo"),
        ("truncate", Op::Truncate("/A/foo".into(), 4992), "/A/foo"),
        ("truncate", Op::Truncate("/foo".into(), 20_000), "/foo"),
        ("truncate", Op::Truncate("/foo".into(), 0), "/foo"),
        (
            "fallocate",
            Op::Fallocate {
                path: "/foo".into(),
                offset: 8192,
                len: 16_384,
                keep_size: false,
            },
            "/foo",
        ),
        (
            "fallocate",
            Op::Fallocate {
                path: "/A/bar".into(),
                offset: 0,
                len: 8192,
                keep_size: true,
            },
            "/A/bar",
        ),
        ("unlink", Op::Unlink("/foo".into()), "/"),
        ("unlink", Op::Unlink("/A/hl".into()), "/A/foo"),
        (
            "rename",
            Op::Rename("/foo".into(), "/A/new".into()),
            "/A/new",
        ),
        (
            "rename",
            Op::Rename("/foo".into(), "/A/bar".into()),
            "/A/bar",
        ),
        ("rename", Op::Rename("/A".into(), "/B/A".into()), "/B/A"),
        ("link", Op::Link("/foo".into(), "/B/foo2".into()), "/B/foo2"),
        (
            "symlink",
            Op::Symlink("/B/sl".into(), "../foo".into()),
            "/B/sl",
        ),
        ("mkdir", Op::Mkdir("/B/sub".into()), "/B/sub"),
        ("rmdir", Op::Rmdir("/D".into()), "/"),
        ("fsync", Op::Fsync("/foo".into()), "/foo"),
        ("fdatasync", Op::Fdatasync("/A/foo".into()), "/A/foo"),
    ]
}

/// Every 1-op workload over the prepared image (see the module documentation).
pub fn one_op(prepared: &Model) -> Vec<Workload> {
    let mut out = Vec::new();
    for (i, (word, op, target)) in vocabulary().into_iter().enumerate() {
        let mut after = prepared.clone();
        let is_file = after.apply(&op).is_ok() && matches!(after.get(target), Some(Node::File(_)));
        for (p, persist) in persists(target, is_file) {
            out.push(Workload::new(
                format!("{word}{i}-{p}"),
                vec![op.clone(), persist],
            ));
        }
    }
    out
}

/// Every 2-op workload over the prepared image: op `a`, optionally an `fsync` of its target,
/// op `b`, then a persistence op of `b`'s target; pairs POSIX refuses in that order (the
/// first removed what the second needs, a name taken twice) are left out. Named
/// `WORDi+WORDj-[mid-]PERSIST`.
pub fn two_op_all(prepared: &Model) -> Vec<Workload> {
    let vocab = vocabulary();
    let mut out = Vec::new();
    for (i, (wa, a, ta)) in vocab.iter().enumerate() {
        for (j, (wb, b, tb)) in vocab.iter().enumerate() {
            for mid in [false, true] {
                let mut ops = vec![a.clone()];
                if mid {
                    ops.push(Op::Fsync(ta.to_string()));
                }
                ops.push(b.clone());
                let mut after = prepared.clone();
                if ops.iter().any(|op| after.apply(op).is_err()) {
                    continue;
                }
                let is_file = matches!(after.get(tb), Some(Node::File(_)));
                let exists = *tb == "/" || after.ns.contains_key(*tb);
                for (p, persist) in persists(tb, is_file) {
                    if !exists && p != "sync" {
                        continue;
                    }
                    let mid_name = if mid { "mid-" } else { "" };
                    let mut ops = ops.clone();
                    ops.push(persist);
                    out.push(Workload::new(format!("{wa}{i}+{wb}{j}-{mid_name}{p}"), ops));
                }
            }
        }
    }
    out
}

/// A seeded sample of `count` 2-op workloads (the same seed, the same sample).
pub fn two_op(prepared: &Model, seed: u64, count: usize) -> Vec<Workload> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut all = two_op_all(prepared);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    all.shuffle(&mut rng);
    all.truncate(count);
    all
}

/// Multi-op workloads for `--plant` campaigns: each frees a block and reuses it, which only
/// a broken revoke or reuse rule turns into a wrong tree (1-op workloads cannot).
/// - `plant-reuse-freed`: a file's blocks are freed (unlink) and a new file's data lands in
///   them in the same transaction; a crash before it commits shows them in the old file only
///   when the allocator reused them early.
/// - `plant-reuse-meta`: a directory block is logged (mkdir), freed (rmdir) and, once that
///   committed, reused as file data; replaying the old directory block over the data needs a
///   missing revoke record. `/q` takes an inode first so that `/x`'s, freed and given to
///   `/r`, has a colour past the image's end: `/r`'s data then aims at the first free block,
///   the directory block (`Mutator::goal_for_file_data`).
pub fn planted() -> Vec<Workload> {
    let g = GEN_WORKLOAD;
    vec![
        Workload::new(
            "plant-reuse-freed".into(),
            vec![
                Op::Unlink("/foo".into()),
                Op::Create("/r".into()),
                w("/r", 0, 8192, g),
                Op::Fsync("/r".into()),
            ],
        ),
        Workload::new(
            "plant-reuse-meta".into(),
            vec![
                Op::Create("/q".into()),
                Op::Mkdir("/x".into()),
                Op::Fsync("/x".into()),
                Op::Rmdir("/x".into()),
                Op::Fsync("/".into()),
                Op::Create("/r".into()),
                w("/r", 0, 4096, g),
                Op::Fsync("/r".into()),
            ],
        ),
    ]
}

/// A recorded run of one workload.
pub struct Recording {
    pub log: WriteLog,
    /// `acked[i]`: events in the log when op `i` returned `Ok`.
    pub acked: Vec<usize>,
    /// Events when the clean unmount returned (everything durable from there).
    pub unmounted: usize,
    /// `states[i]`: the model after the first `i` ops.
    pub states: Vec<Model>,
    pub effects: Vec<super::model::Effect>,
    /// `tids[i]`: the running transaction before and after op `i`; its changes lie in
    /// transactions between the two (the checker's commit boundaries).
    pub tids: Vec<(u64, u64)>,
    /// Journal blocks the run wrote (commits and the unmount's), and the log's length.
    pub journal_blocks: u64,
    pub log_blocks: u64,
    /// Writebacks the run made (dirty data written in place without a commit).
    pub writebacks: u64,
    /// Metadata blocks the run's mount evicted (and read again when needed).
    pub metadata_evictions: u64,
}

/// Runs `wl` from the prepared image on a recording device.
pub fn record(p: &Prepared, wl: &Workload, options: RwOptions) -> Result<Recording, String> {
    let config = EmuConfig::parse(EMU_RECORD).map_err(|e| e.to_string())?;
    let image = p.image.try_clone().map_err(|e| e.to_string())?;
    let dev = EmuDevice::with_image(config, image).map_err(|e| e.to_string())?;
    let events = |dev: &EmuDevice| dev.log().map(|l| l.events().len()).unwrap_or(0);
    let fs = RwFs::mount(dev.clone(), options).map_err(|e| format!("mount: {e}"))?;
    let shared = fs.shared();
    let mut ctxs = (0..wl.threads())
        .map(|_| shared.ctx())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("thread context: {e}"))?;
    let mut model = p.model.clone();
    let mut rec = Recording {
        log: dev.log().map_err(|e| e.to_string())?,
        acked: Vec::new(),
        unmounted: 0,
        states: vec![model.clone()],
        effects: Vec::new(),
        tids: Vec::new(),
        journal_blocks: 0,
        log_blocks: 0,
        writebacks: 0,
        metadata_evictions: 0,
    };
    for (i, op) in wl.ops.iter().enumerate() {
        let ctx = &mut ctxs[wl.ctx.get(i).copied().unwrap_or(0)];
        let before = shared.running_tid();
        run_op(shared, ctx, &model, op).map_err(|e| format!("{}: {op} failed: {e}", wl.name))?;
        rec.tids.push((before, shared.running_tid()));
        rec.acked.push(events(&dev));
        rec.effects.push(model.apply(op)?);
        rec.states.push(model.clone());
    }
    drop(ctxs);
    rec.log_blocks = shared.log_blocks();
    let stats_before_unmount = shared.stats();
    let (_, r) = fs.unmount();
    r.map_err(|e| format!("{}: unmount: {e}", wl.name))?;
    rec.journal_blocks = stats_before_unmount.journal_blocks;
    rec.writebacks = stats_before_unmount.writebacks;
    rec.metadata_evictions = stats_before_unmount.metadata_evictions;
    rec.log = dev.log().map_err(|e| e.to_string())?;
    rec.unmounted = rec.log.events().len();
    Ok(rec)
}
