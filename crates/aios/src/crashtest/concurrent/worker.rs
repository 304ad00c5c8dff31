//! One worker of `aios crashtest --concurrent`: seeded mixed operations inside its own
//! directory, through its own [`RwCtx`] on the shared mount, with its own [`Model`].
//!
//! # Role
//! [`work`] runs `actions` seeded actions: every op of the vocabulary ([`Op`]) plus reads
//! through the mount, each one chosen so that it must succeed on the model (the directory is
//! the thread's alone, so the model predicts every result). It logs each op with its
//! [`Effect`] and, as the syncs are acknowledged, the *durable bound* (the least per-thread
//! prefix a crash may recover to) and the byte ranges an `fdatasync` made durable in place.
//!
//! # Invariants
//! - `Progress::acked` is stored only after the op returned `Ok` and was logged: a crash taken
//!   after reading it holds at least that prefix's acknowledged syncs.
//! - A sync raises every thread's `Progress::floor` to the ops that thread had acknowledged
//!   before the sync was called (they are in the transactions it committed), only after it
//!   returned.
//! - An op that fails where the model says it must succeed, or a read that differs from the
//!   model, is a finding (`ThreadLog::failures`); the thread stops there, since its model no
//!   longer predicts the file system.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use aios_device_emu::EmuDevice;
use aios_fs::{DataMode, RwCtx, RwError, RwShared};

use crate::crashtest::model::{Effect, Model, Node, Op, RECORD_BYTES};
use crate::crashtest::states::splitmix;

/// A file never grows past this (tags and the model stay small; no write is split in pieces).
pub const FILE_BYTES_MAX: u64 = 96 * 1024;
/// The largest single write.
pub const WRITE_BYTES_MAX: u64 = 16 * 1024;
/// Names a directory level may hold (`n0`..), and directories at the thread's root (`d0`..).
const NAMES_PER_DIR: u64 = 10;
const DIRS_MAX: u64 = 3;

/// What the monitor reads of one thread while it runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Logged ops that returned `Ok`.
    pub acked: AtomicUsize,
    /// Actions finished, reads included (the watchdog's progress).
    pub actions: AtomicUsize,
    /// Ops of this thread made durable by some thread's acknowledged `sync`.
    pub floor: AtomicUsize,
    /// The action under way, for the watchdog's dump.
    pub doing: Mutex<String>,
    pub finished: AtomicBool,
}

/// Progress of every thread, and the stop flag the watchdog raises.
#[derive(Debug, Default)]
pub struct Board {
    pub threads: Vec<Progress>,
    pub abort: AtomicBool,
}

impl Board {
    pub fn new(threads: usize) -> Board {
        Board {
            threads: (0..threads).map(|_| Progress::default()).collect(),
            abort: AtomicBool::new(false),
        }
    }

    pub fn acked(&self) -> Vec<usize> {
        self.threads
            .iter()
            .map(|p| p.acked.load(Ordering::Acquire))
            .collect()
    }

    pub fn floors(&self) -> Vec<usize> {
        self.threads
            .iter()
            .map(|p| p.floor.load(Ordering::Acquire))
            .collect()
    }

    pub fn actions_total(&self) -> usize {
        self.threads
            .iter()
            .map(|p| p.actions.load(Ordering::Acquire))
            .sum()
    }
}

/// One logged op: the op, what it changed, and the model id of the file a write or truncate
/// named (for the in-place rule of `data=ordered`).
#[derive(Debug, Clone)]
pub struct Step {
    pub op: Op,
    pub effect: Effect,
    pub target: Option<u32>,
}

/// Bytes `start..end` of model inode `id`, as op `write_op` wrote them, made durable by the
/// `fdatasync` at op `sync_op`.
#[derive(Debug, Clone)]
pub struct Need {
    pub sync_op: usize,
    pub id: u32,
    pub write_op: usize,
    pub start: u64,
    pub end: u64,
}

/// Everything one thread did.
#[derive(Debug, Default)]
pub struct ThreadLog {
    pub thread: usize,
    pub steps: Vec<Step>,
    /// `bound_after[a]`: the durable bound once the first `a` ops are acknowledged.
    pub bound_after: Vec<usize>,
    pub needs: Vec<Need>,
    /// The model after every logged op.
    pub model: Model,
    pub actions: usize,
    pub reads: usize,
    pub syncs_acked: usize,
    pub failures: Vec<String>,
}

/// How one worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub thread: usize,
    pub actions: usize,
    pub seed: u64,
    pub data: DataMode,
    /// Self-test of the watchdog: at this action the thread stops making progress (until the
    /// watchdog raises `abort`).
    pub stall_at: Option<usize>,
}

/// The thread's directory on the mount.
pub fn thread_dir(thread: usize) -> String {
    format!("/t{thread}")
}

/// Model ids of thread `t` start here (tags of different threads never collide).
pub fn id_base(thread: usize) -> u32 {
    (thread as u32 + 1) << 20
}

/// Bytes of one tag record: writes and sizes are multiples of it.
const REC: u64 = RECORD_BYTES as u64;

fn align(bytes: u64) -> u64 {
    bytes - bytes % REC
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = splitmix(self.0);
        self.0
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a, T>(&mut self, v: &'a [T]) -> Option<&'a T> {
        v.get(self.below(v.len() as u64) as usize)
    }
}

/// One action: an op of the vocabulary, or a read of a file through the mount.
enum Action {
    Op(Op),
    Read(String),
}

/// Paths of the model by kind.
fn paths(m: &Model, want: fn(&Node) -> bool) -> Vec<String> {
    m.ns.iter()
        .filter(|(_, id)| m.inodes.get(id).is_some_and(want))
        .map(|(p, _)| p.clone())
        .collect()
}

fn file_len(m: &Model, p: &str) -> u64 {
    match m.get(p) {
        Some(Node::File(d)) => d.len() as u64,
        _ => 0,
    }
}

/// A name not in use at the root or in an existing directory.
fn free_name(m: &Model, rng: &mut Rng) -> Option<String> {
    let mut parents = vec![String::new()];
    parents.extend(paths(m, |n| matches!(n, Node::Dir)));
    let parent = rng.pick(&parents)?.clone();
    let p = format!("{parent}/n{}", rng.below(NAMES_PER_DIR));
    (!m.ns.contains_key(&p)).then_some(p)
}

/// Ops chosen by weight (out of the sum); reads are `read`.
const WEIGHTS: [(&str, u64); 16] = [
    ("create", 8),
    ("write", 12),
    ("append", 10),
    ("overwrite", 12),
    ("truncate", 4),
    ("fallocate", 4),
    ("unlink", 5),
    ("rename", 6),
    ("link", 3),
    ("symlink", 3),
    ("mkdir", 3),
    ("rmdir", 3),
    ("fsync", 8),
    ("fdatasync", 7),
    ("sync", 3),
    ("read", 9),
];

/// An action that must succeed on `m`; `generation` tags a write's bytes.
fn next_action(m: &Model, rng: &mut Rng, generation: u32) -> Action {
    let total: u64 = WEIGHTS.iter().map(|w| w.1).sum();
    for _ in 0..32 {
        let mut r = rng.below(total);
        let word = WEIGHTS
            .iter()
            .find(|(_, w)| {
                let hit = r < *w;
                r = r.saturating_sub(*w);
                hit
            })
            .map_or("sync", |w| w.0);
        if let Some(a) = try_action(word, m, rng, generation) {
            return a;
        }
    }
    Action::Op(Op::Fsync("/".into()))
}

fn try_action(word: &str, m: &Model, rng: &mut Rng, generation: u32) -> Option<Action> {
    let files = paths(m, |n| matches!(n, Node::File(_)));
    let dirs = paths(m, |n| matches!(n, Node::Dir));
    // Whole tag records only: a record half of one write and half of another (or of zeros)
    // would read as torn.
    let write = |path: &String, offset: u64, len: u64| {
        let (offset, len) = (align(offset), align(len).max(REC));
        (offset + len <= FILE_BYTES_MAX).then(|| {
            Action::Op(Op::Write {
                path: path.clone(),
                offset,
                len: len as usize,
                generation,
            })
        })
    };
    let op = match word {
        "create" => Op::Create(free_name(m, rng)?),
        "write" => {
            let f = rng.pick(&files)?.clone();
            let len = 1 + rng.below(WRITE_BYTES_MAX);
            return write(&f, rng.below(FILE_BYTES_MAX - len), len);
        }
        "append" => {
            let f = rng.pick(&files)?.clone();
            return write(&f, file_len(m, &f), 1 + rng.below(8192));
        }
        "overwrite" => {
            let f = rng.pick(&files)?.clone();
            let size = file_len(m, &f);
            let offset = rng.below(size);
            return write(
                &f,
                offset,
                1 + rng.below((size - offset).min(WRITE_BYTES_MAX)),
            );
        }
        "truncate" => {
            let f = rng.pick(&files)?.clone();
            let size = rng.below((file_len(m, &f) + 8192).min(FILE_BYTES_MAX));
            Op::Truncate(f, align(size))
        }
        "fallocate" => {
            let path = rng.pick(&files)?.clone();
            let offset = rng.below(64 * 1024);
            let len = 1 + rng.below(WRITE_BYTES_MAX);
            (offset + len <= FILE_BYTES_MAX).then_some(())?;
            Op::Fallocate {
                path,
                offset,
                len,
                keep_size: rng.below(2) == 0,
            }
        }
        "unlink" => Op::Unlink(rng.pick(&paths(m, |n| !matches!(n, Node::Dir)))?.clone()),
        "rename" => rename(m, rng, &dirs)?,
        "link" => Op::Link(rng.pick(&files)?.clone(), free_name(m, rng)?),
        "symlink" => Op::Symlink(free_name(m, rng)?, format!("n{}", rng.below(NAMES_PER_DIR))),
        "mkdir" => {
            let p = format!("/d{}", rng.below(DIRS_MAX));
            (!m.ns.contains_key(&p)).then_some(())?;
            Op::Mkdir(p)
        }
        "rmdir" => {
            let d = rng.pick(&dirs)?.clone();
            let prefix = format!("{d}/");
            (!m.ns.keys().any(|k| k.starts_with(&prefix))).then_some(())?;
            Op::Rmdir(d)
        }
        "fsync" => {
            let mut targets = files.clone();
            targets.extend(dirs.iter().cloned());
            targets.push("/".into());
            Op::Fsync(rng.pick(&targets)?.clone())
        }
        "fdatasync" => Op::Fdatasync(rng.pick(&files)?.clone()),
        "sync" => Op::Sync,
        "read" => return Some(Action::Read(rng.pick(&files)?.clone())),
        _ => return None,
    };
    Some(Action::Op(op))
}

/// A rename that must succeed: a non-directory to a free name or over another non-directory
/// (never one of its own hard links), or a directory to a free directory name.
fn rename(m: &Model, rng: &mut Rng, dirs: &[String]) -> Option<Op> {
    if rng.below(4) == 0 {
        let from = rng.pick(dirs)?.clone();
        let to = format!("/d{}", rng.below(DIRS_MAX));
        return (!m.ns.contains_key(&to)).then_some(Op::Rename(from, to));
    }
    let others = paths(m, |n| !matches!(n, Node::Dir));
    let from = rng.pick(&others)?.clone();
    let to = if rng.below(3) == 0 {
        let to = rng.pick(&others)?.clone();
        (m.ns.get(&to) != m.ns.get(&from)).then_some(to)?
    } else {
        free_name(m, rng)?
    };
    Some(Op::Rename(from, to))
}

/// Runs `op` (model paths, under the thread's directory `dir`) on the mount.
fn run_op(
    fs: &RwShared<EmuDevice>,
    ctx: &mut RwCtx<EmuDevice>,
    dir: &str,
    m: &Model,
    op: &Op,
) -> Result<(), RwError> {
    let real = |p: &str| {
        if p == "/" {
            dir.to_string()
        } else {
            format!("{dir}{p}")
        }
    };
    match op {
        Op::Create(p) => fs.create(ctx, real(p), 0o644).map(drop),
        Op::Mkdir(p) => fs.mkdir(ctx, real(p), 0o755).map(drop),
        Op::Symlink(p, t) => fs.symlink(ctx, real(p), t.as_bytes()).map(drop),
        Op::Write { path, offset, .. } => fs.write(ctx, real(path), *offset, &m.data_of(op)),
        Op::Truncate(p, s) => fs.truncate(ctx, real(p), *s),
        Op::Fallocate {
            path,
            offset,
            len,
            keep_size,
        } => fs.fallocate(ctx, real(path), *offset, *len, *keep_size),
        Op::Unlink(p) => fs.unlink(ctx, real(p)),
        Op::Rmdir(p) => fs.rmdir(ctx, real(p)),
        Op::Rename(a, b) => fs.rename(ctx, real(a), real(b)),
        Op::Link(a, b) => fs.link(ctx, real(a), real(b)),
        Op::Fsync(p) => fs.fsync(ctx, real(p)),
        Op::Fdatasync(p) => fs.fdatasync(ctx, real(p)),
        Op::Sync => fs.sync(ctx),
    }
}

/// The per-inode history the durable bound is computed from.
#[derive(Default)]
struct Last {
    touched: HashMap<u32, usize>,
    remapped: HashMap<u32, usize>,
    /// The last write of each inode: op and byte range.
    wrote: HashMap<u32, (usize, u64, u64)>,
    bound: usize,
}

impl Last {
    /// Raises the bound for sync op `j` (acknowledged), before it is applied to `m`.
    fn acknowledge(&mut self, j: usize, op: &Op, m: &Model, data: DataMode, needs: &mut Vec<Need>) {
        let id = |p: &str| {
            if p == "/" {
                Some(0)
            } else {
                m.ns.get(p).copied()
            }
        };
        match op {
            Op::Sync => self.bound = self.bound.max(j),
            Op::Fsync(p) => {
                if let Some(k) = id(p).and_then(|id| self.touched.get(&id)) {
                    self.bound = self.bound.max(k + 1);
                }
            }
            Op::Fdatasync(p) => {
                let Some(id) = id(p) else { return };
                let map = match data {
                    DataMode::Ordered => &self.remapped,
                    DataMode::Journal => &self.touched,
                };
                if let Some(k) = map.get(&id) {
                    self.bound = self.bound.max(k + 1);
                }
                if let Some(&(w, start, end)) = self.wrote.get(&id) {
                    let end = end.min(file_len(m, p));
                    if start < end {
                        needs.push(Need {
                            sync_op: j,
                            id,
                            write_op: w,
                            start,
                            end,
                        });
                    }
                }
            }
            _ => {}
        }
    }

    fn record(&mut self, j: usize, e: &Effect) {
        for &id in &e.touched {
            self.touched.insert(id, j);
        }
        for &id in &e.remapped {
            self.remapped.insert(id, j);
        }
        if let Some((id, s, end)) = e.wrote {
            self.wrote.insert(id, (j, s, end));
        }
    }
}

/// Runs one worker (see the module documentation).
pub fn work(fs: &RwShared<EmuDevice>, cfg: &WorkerConfig, board: &Board) -> ThreadLog {
    let t = cfg.thread;
    let me = &board.threads[t];
    let dir = thread_dir(t);
    let mut log = ThreadLog {
        thread: t,
        bound_after: vec![0],
        model: Model::with_id_base(id_base(t)),
        ..ThreadLog::default()
    };
    let mut ctx = match fs.ctx() {
        Ok(c) => c,
        Err(e) => {
            log.failures.push(format!("thread {t}: context: {e}"));
            me.finished.store(true, Ordering::Release);
            return log;
        }
    };
    let mut rng = Rng(splitmix(
        cfg.seed ^ (t as u64).wrapping_mul(0x51_7CC1_B727_220A),
    ));
    let mut last = Last::default();
    for action_index in 0..cfg.actions {
        if board.abort.load(Ordering::Acquire) {
            break;
        }
        if cfg.stall_at == Some(action_index) {
            set_doing(me, "stalled on purpose (watchdog self-test)".into());
            while !board.abort.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(5));
            }
            break;
        }
        let j = log.steps.len();
        let generation = u32::try_from(j + 1).unwrap_or(u32::MAX);
        let outcome = match next_action(&log.model, &mut rng, generation) {
            Action::Read(p) => {
                set_doing(me, format!("action {action_index}: read {dir}{p}"));
                log.reads += 1;
                read_back(fs, &mut ctx, &dir, &log.model, &p)
            }
            Action::Op(op) => {
                set_doing(me, format!("action {action_index} (op {j}): {op}"));
                one_op(fs, &mut ctx, (cfg, board), &mut log, &mut last, op)
            }
        };
        if let Err(what) = outcome {
            log.failures
                .push(format!("thread {t} action {action_index}: {what}"));
            break;
        }
        log.actions += 1;
        me.actions.fetch_add(1, Ordering::AcqRel);
    }
    set_doing(me, "finished".into());
    me.finished.store(true, Ordering::Release);
    log
}

fn set_doing(p: &Progress, what: String) {
    *p.doing.lock().unwrap_or_else(|e| e.into_inner()) = what;
}

/// Runs and logs one op; `Err` when the file system refused what the model allows.
fn one_op(
    fs: &RwShared<EmuDevice>,
    ctx: &mut RwCtx<EmuDevice>,
    (cfg, board): (&WorkerConfig, &Board),
    log: &mut ThreadLog,
    last: &mut Last,
    op: Op,
) -> Result<(), String> {
    let (t, j) = (cfg.thread, log.steps.len());
    let dir = thread_dir(t);
    let target = match &op {
        Op::Write { path, .. } | Op::Truncate(path, _) => log.model.ns.get(path).copied(),
        _ => None,
    };
    // What every thread had acknowledged before a sync was called: it covers those.
    let before_sync = matches!(op, Op::Sync).then(|| board.acked());
    run_op(fs, ctx, &dir, &log.model, &op).map_err(|e| format!("op {j} ({op}) failed: {e}"))?;
    if let Some(acked) = before_sync {
        for (p, a) in board.threads.iter().zip(acked) {
            p.floor.fetch_max(a, Ordering::AcqRel);
        }
    }
    if matches!(op, Op::Sync | Op::Fsync(_) | Op::Fdatasync(_)) {
        log.syncs_acked += 1;
        last.acknowledge(j, &op, &log.model, cfg.data, &mut log.needs);
    }
    let effect = log.model.apply(&op).map_err(|e| format!("op {j}: {e}"))?;
    last.record(j, &effect);
    log.steps.push(Step { op, effect, target });
    log.bound_after.push(last.bound);
    board.threads[t].acked.store(j + 1, Ordering::Release);
    Ok(())
}

/// Reads file `p` through the mount and compares it with the model.
fn read_back(
    fs: &RwShared<EmuDevice>,
    ctx: &mut RwCtx<EmuDevice>,
    dir: &str,
    m: &Model,
    p: &str,
) -> Result<(), String> {
    let Some(Node::File(want)) = m.get(p) else {
        return Ok(());
    };
    let mut buf = vec![0u8; want.len() + 64];
    let n = fs
        .read(ctx, format!("{dir}{p}"), 0, &mut buf)
        .map_err(|e| format!("read {dir}{p}: {e}"))?;
    if n != want.len() {
        return Err(format!(
            "read {dir}{p}: {n} bytes, the model has {}",
            want.len()
        ));
    }
    if let Some(i) = (0..n).find(|&i| buf[i] != want[i]) {
        return Err(format!(
            "read {dir}{p}: byte {i} is {:#04x}, the model has {:#04x}",
            buf[i], want[i]
        ));
    }
    Ok(())
}
