//! One worker of `aios crashtest --concurrent`: seeded mixed operations inside its own
//! directory, through its own [`RwCtx`] on the shared mount, with its own [`Model`].
//!
//! # Role
//! [`work`] runs `actions` seeded actions ([`super::gen`]): every op of the vocabulary
//! ([`Op`]), reads through the mount and open files, each one chosen so that it must succeed
//! on the model (the directory is the thread's alone, so the model predicts every result).
//! A write or sync by handle of a file that still has a name is logged as the same op by one
//! of its names; by handle of an orphan (no name left) it is not logged (nothing visible
//! changes) and its bytes are checked against the thread's copy. It logs each op with its
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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use aios_device_emu::EmuDevice;
use aios_fs::{DataMode, OpenOptions, RwCtx, RwError, RwFile, RwShared};

use crate::model::{decode_record, tagged, Effect, Model, Node, Op, Record, RECORD_BYTES};
use crate::states::splitmix;

use super::gen::{file_len, next_action, Action, Rng, FILE_BYTES_MAX};

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
    /// A global event counter: each op takes a stamp when it starts and when it returns, so
    /// the checker knows which ops of other threads had returned before an op began.
    pub clock: AtomicU64,
}

impl Board {
    pub fn new(threads: usize) -> Board {
        Board {
            threads: (0..threads).map(|_| Progress::default()).collect(),
            abort: AtomicBool::new(false),
            clock: AtomicU64::new(0),
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

/// One logged op: the op, what it changed, the model id of the file a write or truncate
/// named (for the in-place rule of `data=ordered`), and its `Board::clock` stamps.
#[derive(Debug, Clone)]
pub struct Step {
    pub op: Op,
    pub effect: Effect,
    pub target: Option<u32>,
    pub started_at: u64,
    pub returned_at: u64,
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
    /// Reads of another thread's files while it changed them.
    pub cross_reads: usize,
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

/// Runs `op` (model paths, under the thread's directory `dir`) on the mount; a write or sync
/// through `via` when given.
fn run_op(
    fs: &RwShared<EmuDevice>,
    ctx: &mut RwCtx<EmuDevice>,
    dir: &str,
    (m, via): (&Model, Option<&RwFile>),
    op: &Op,
) -> Result<(), RwError> {
    if let Some(file) = via {
        return match op {
            Op::Write { offset, .. } => fs.write_at(ctx, file, *offset, &m.data_of(op)),
            Op::Fsync(_) => fs.fsync_file(ctx, file),
            Op::Fdatasync(_) => fs.fdatasync_file(ctx, file),
            _ => Err(RwError::Unsupported {
                step: "crashtest",
                what: "only writes and syncs go through a handle",
            }),
        };
    }
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

/// An open file and its model inode.
struct Handle {
    id: u32,
    file: RwFile,
}

/// One worker's running state.
struct Worker<'a> {
    fs: &'a RwShared<EmuDevice>,
    ctx: RwCtx<EmuDevice>,
    cfg: &'a WorkerConfig,
    board: &'a Board,
    dir: String,
    log: ThreadLog,
    last: Last,
    handles: Vec<Handle>,
    /// Bytes of each open inode whose last name is gone (shared by its handles).
    orphans: HashMap<u32, Vec<u8>>,
}

/// Runs one worker (see the module documentation).
pub fn work(fs: &RwShared<EmuDevice>, cfg: &WorkerConfig, board: &Board) -> ThreadLog {
    let t = cfg.thread;
    let me = &board.threads[t];
    let mut log = ThreadLog {
        thread: t,
        bound_after: vec![0],
        model: Model::with_id_base(id_base(t)),
        ..ThreadLog::default()
    };
    let ctx = match fs.ctx() {
        Ok(c) => c,
        Err(e) => {
            log.failures.push(format!("thread {t}: context: {e}"));
            me.finished.store(true, Ordering::Release);
            return log;
        }
    };
    let mut w = Worker {
        fs,
        ctx,
        cfg,
        board,
        dir: thread_dir(t),
        log,
        last: Last::default(),
        handles: Vec::new(),
        orphans: HashMap::new(),
    };
    let mut rng = Rng(splitmix(
        cfg.seed ^ (t as u64).wrapping_mul(0x51_7CC1_B727_220A),
    ));
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
        if let Err(what) = w.action(action_index, &mut rng) {
            w.log
                .failures
                .push(format!("thread {t} action {action_index}: {what}"));
            break;
        }
        w.log.actions += 1;
        me.actions.fetch_add(1, Ordering::AcqRel);
    }
    set_doing(me, "closing its files".into());
    while let Some(h) = w.handles.pop() {
        if let Err(e) = w.fs.close(&mut w.ctx, h.file) {
            w.log.failures.push(format!("thread {t}: close: {e}"));
        }
    }
    set_doing(me, "finished".into());
    me.finished.store(true, Ordering::Release);
    w.log
}

fn set_doing(p: &Progress, what: String) {
    *p.doing.lock().unwrap_or_else(|e| e.into_inner()) = what;
}

impl Worker<'_> {
    /// Chooses and runs one action; `Err` is a finding.
    fn action(&mut self, index: usize, rng: &mut Rng) -> Result<(), String> {
        let j = self.log.steps.len();
        let generation = u32::try_from(j + 1).unwrap_or(u32::MAX);
        let open: Vec<u64> = self.handles.iter().map(|h| self.size_of(h)).collect();
        let me = &self.board.threads[self.cfg.thread];
        let dir = self.dir.clone();
        let action = next_action(&self.log.model, &open, rng, generation);
        let what = match &action {
            Action::Op(op) => format!("(op {j}) {op}"),
            Action::Read(p) => format!("read {dir}{p}"),
            Action::Open(p) => format!("open {dir}{p}"),
            Action::HandleWrite { slot, offset, len } => {
                format!("write by handle {slot} at {offset}, {len} bytes")
            }
            Action::HandleRead(slot) => format!("read by handle {slot}"),
            Action::HandleSync { slot, data } => format!("sync by handle {slot} (data {data})"),
            Action::Close(slot) => format!("close handle {slot}"),
            Action::CrossRead { path, by_handle } => {
                format!("read another thread's {path} (by handle {by_handle})")
            }
        };
        set_doing(me, format!("action {index}: {what}"));
        match action {
            Action::Op(op) => self.one_op(op, None),
            Action::Read(p) => {
                self.log.reads += 1;
                let Some(Node::File(want)) = self.log.model.get(&p) else {
                    return Ok(());
                };
                read_back(self.fs, &mut self.ctx, &dir, &p, want)
            }
            Action::Open(p) => {
                let id = self
                    .log
                    .model
                    .ns
                    .get(&p)
                    .copied()
                    .ok_or("open: no such file")?;
                let file = self
                    .fs
                    .open(&mut self.ctx, format!("{dir}{p}"), OpenOptions::default())
                    .map_err(|e| format!("open {dir}{p}: {e}"))?;
                self.handles.push(Handle { id, file });
                Ok(())
            }
            Action::HandleWrite { slot, offset, len } => {
                self.handle_write(slot, offset, len as usize, generation)
            }
            Action::HandleRead(slot) => self.handle_read(slot),
            Action::HandleSync { slot, data } => self.handle_sync(slot, data),
            Action::CrossRead { path, by_handle } => {
                let threads = self.board.threads.len();
                if threads < 2 {
                    return Ok(());
                }
                let t = self.cfg.thread;
                let other = (t + 1 + rng.below(threads as u64 - 1) as usize) % threads;
                self.log.cross_reads += 1;
                self.cross_read(other, &format!("{}{path}", thread_dir(other)), by_handle)
            }
            Action::Close(slot) => {
                let h = self.handles.swap_remove(slot);
                if !self.handles.iter().any(|o| o.id == h.id) {
                    self.orphans.remove(&h.id);
                }
                self.fs
                    .close(&mut self.ctx, h.file)
                    .map_err(|e| format!("close: {e}"))
            }
        }
    }

    /// Reads `path`, a name in thread `other`'s directory, while `other` may change it:
    /// whatever it names then (if a regular file) must hold only zeros and `other`'s tags, each
    /// at its own offset. Read twice through a handle when `by_handle` (the second read hits
    /// the cache or follows a change). A name that is missing or not a regular file is no
    /// finding.
    fn cross_read(&mut self, other: usize, path: &str, by_handle: bool) -> Result<(), String> {
        let mut buf = vec![0u8; FILE_BYTES_MAX as usize + 4096];
        if !by_handle {
            return match self.fs.read(&mut self.ctx, path, 0, &mut buf) {
                Ok(n) => foreign_records(&buf[..n], other, &format!("read {path}")),
                Err(_) => Ok(()),
            };
        }
        let Ok(file) = self.fs.open(&mut self.ctx, path, OpenOptions::default()) else {
            return Ok(());
        };
        let mut result = Ok(());
        for round in 0..2 {
            match self.fs.read_at(&mut self.ctx, &file, 0, &mut buf) {
                Ok(n) => {
                    let what = format!("read {path} by handle (round {round})");
                    result = foreign_records(&buf[..n], other, &what);
                }
                // The name was a directory (which opens, like O_RDONLY on one).
                Err(RwError::Op {
                    cause: aios_fs::FsError::NotARegularFile { .. },
                    ..
                }) => break,
                Err(e) => result = Err(format!("read {path} by handle: {e}")),
            }
            if result.is_err() {
                break;
            }
        }
        let closed = self
            .fs
            .close(&mut self.ctx, file)
            .map_err(|e| format!("close {path}: {e}"));
        result.and(closed)
    }

    /// Bytes of handle `h`'s file now.
    fn size_of(&self, h: &Handle) -> u64 {
        self.bytes_of(h.id).map_or(0, |d| d.len() as u64)
    }

    /// The bytes of model inode `id` (named or orphan).
    fn bytes_of(&self, id: u32) -> Option<&Vec<u8>> {
        match (self.orphans.get(&id), self.log.model.inodes.get(&id)) {
            (Some(d), _) | (None, Some(Node::File(d))) => Some(d),
            _ => None,
        }
    }

    /// A name of model inode `id`, if it has one left.
    fn name_of(&self, id: u32) -> Option<String> {
        self.log
            .model
            .ns
            .iter()
            .find(|(_, &i)| i == id)
            .map(|(p, _)| p.clone())
    }

    fn handle_write(
        &mut self,
        slot: usize,
        offset: u64,
        len: usize,
        generation: u32,
    ) -> Result<(), String> {
        let h = &self.handles[slot];
        let Some(path) = self.name_of(h.id) else {
            let data = tagged(h.id, offset, len, generation);
            self.fs
                .write_at(&mut self.ctx, &h.file, offset, &data)
                .map_err(|e| format!("write to an orphan: {e}"))?;
            let d = self.orphans.entry(h.id).or_default();
            let end = offset as usize + len;
            if d.len() < end {
                d.resize(end, 0);
            }
            d[offset as usize..end].copy_from_slice(&data);
            return Ok(());
        };
        let op = Op::Write {
            path,
            offset,
            len,
            generation,
        };
        self.one_op(op, Some(slot))
    }

    fn handle_read(&mut self, slot: usize) -> Result<(), String> {
        let h = &self.handles[slot];
        let Some(want) = self.bytes_of(h.id).cloned() else {
            return Err(format!("handle of inode {} without a model", h.id));
        };
        self.log.reads += 1;
        let mut buf = vec![0u8; want.len() + 64];
        let n = self
            .fs
            .read_at(&mut self.ctx, &h.file, 0, &mut buf)
            .map_err(|e| format!("read by handle: {e}"))?;
        compare("read by handle", &buf[..n], &want)
    }

    fn handle_sync(&mut self, slot: usize, data: bool) -> Result<(), String> {
        let h = &self.handles[slot];
        let Some(path) = self.name_of(h.id) else {
            let r = if data {
                self.fs.fdatasync_file(&mut self.ctx, &h.file)
            } else {
                self.fs.fsync_file(&mut self.ctx, &h.file)
            };
            return r.map_err(|e| format!("sync of an orphan: {e}"));
        };
        let op = if data {
            Op::Fdatasync(path)
        } else {
            Op::Fsync(path)
        };
        self.one_op(op, Some(slot))
    }

    /// Runs and logs one op (through handle `via` if given); `Err` when the file system
    /// refused what the model allows.
    fn one_op(&mut self, op: Op, via: Option<usize>) -> Result<(), String> {
        let (t, j) = (self.cfg.thread, self.log.steps.len());
        let board = self.board;
        let m = &self.log.model;
        let target = match &op {
            Op::Write { path, .. } | Op::Truncate(path, _) => m.ns.get(path).copied(),
            _ => None,
        };
        // Open files this op may orphan: their bytes as the last name goes.
        let before: Vec<Option<Node>> = match op {
            Op::Unlink(_) | Op::Rename(..) => self
                .handles
                .iter()
                .map(|h| m.inodes.get(&h.id).cloned())
                .collect(),
            _ => Vec::new(),
        };
        // What every thread had acknowledged before a sync was called: it covers those.
        let before_sync = matches!(op, Op::Sync).then(|| board.acked());
        let file = via.map(|s| &self.handles[s].file);
        let started_at = board.clock.fetch_add(1, Ordering::AcqRel);
        run_op(self.fs, &mut self.ctx, &self.dir, (m, file), &op)
            .map_err(|e| format!("op {j} ({op}) failed: {e}"))?;
        let returned_at = board.clock.fetch_add(1, Ordering::AcqRel);
        if let Some(acked) = before_sync {
            for (p, a) in board.threads.iter().zip(acked) {
                p.floor.fetch_max(a, Ordering::AcqRel);
            }
        }
        if matches!(op, Op::Sync | Op::Fsync(_) | Op::Fdatasync(_)) {
            self.log.syncs_acked += 1;
            let log = &mut self.log;
            self.last
                .acknowledge(j, &op, &log.model, self.cfg.data, &mut log.needs);
        }
        let effect = self
            .log
            .model
            .apply(&op)
            .map_err(|e| format!("op {j}: {e}"))?;
        for (h, node) in self.handles.iter().zip(before) {
            if let (None, Some(Node::File(d))) = (self.log.model.inodes.get(&h.id), node) {
                self.orphans.entry(h.id).or_insert(d);
            }
        }
        self.last.record(j, &effect);
        self.log.steps.push(Step {
            op,
            effect,
            target,
            started_at,
            returned_at,
        });
        self.log.bound_after.push(self.last.bound);
        board.threads[t].acked.store(j + 1, Ordering::Release);
        Ok(())
    }
}

/// Reads file `p` through the mount and compares it with the model's `want`.
fn read_back(
    fs: &RwShared<EmuDevice>,
    ctx: &mut RwCtx<EmuDevice>,
    dir: &str,
    p: &str,
    want: &[u8],
) -> Result<(), String> {
    let mut buf = vec![0u8; want.len() + 64];
    let n = fs
        .read(ctx, format!("{dir}{p}"), 0, &mut buf)
        .map_err(|e| format!("read {dir}{p}: {e}"))?;
    compare(&format!("read {dir}{p}"), &buf[..n], want)
}

/// Every whole record of `got` (a file's bytes from offset 0) is zeros or a tag of thread
/// `other`'s model naming the record's own offset.
fn foreign_records(got: &[u8], other: usize, what: &str) -> Result<(), String> {
    let ids = id_base(other)..id_base(other + 1);
    for (i, r) in got.chunks_exact(RECORD_BYTES).enumerate() {
        let at = (i * RECORD_BYTES) as u64;
        match decode_record(r) {
            Record::Zero => {}
            Record::Tag(tag) if tag.offset_bytes == at && ids.contains(&tag.file) => {}
            other_record => {
                return Err(format!(
                    "{what}: the record at byte {at} is {other_record:?}, not zeros or a tag of \
                     the thread's own at that offset"
                ))
            }
        }
    }
    Ok(())
}

fn compare(what: &str, got: &[u8], want: &[u8]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: {} bytes, the model has {}",
            got.len(),
            want.len()
        ));
    }
    match (0..got.len()).find(|&i| got[i] != want[i]) {
        None => Ok(()),
        Some(i) => Err(format!(
            "{what}: byte {i} is {:#04x}, the model has {:#04x}",
            got[i], want[i]
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::{foreign_records, id_base};
    use crate::model::{tagged, RECORD_BYTES};

    #[test]
    fn a_cross_read_accepts_zeros_and_the_threads_own_tags_only() {
        let own = id_base(2) + 5;
        let mut bytes = vec![0u8; 2 * RECORD_BYTES];
        bytes.extend(tagged(own, 2 * RECORD_BYTES as u64, 3 * RECORD_BYTES, 9));
        assert!(foreign_records(&bytes, 2, "own").is_ok());
        // Another thread's block (a freed block reused under the read).
        let mut reused = bytes.clone();
        reused[..RECORD_BYTES].copy_from_slice(&tagged(id_base(1), 0, RECORD_BYTES, 1));
        assert!(foreign_records(&reused, 2, "reused").is_err());
        // The thread's own bytes at the wrong offset (a stale or misplaced block).
        let mut misplaced = bytes.clone();
        misplaced[..RECORD_BYTES].copy_from_slice(&tagged(own, 4096, RECORD_BYTES, 1));
        assert!(foreign_records(&misplaced, 2, "misplaced").is_err());
        // A torn record.
        let mut torn = bytes;
        torn[2 * RECORD_BYTES + 3] ^= 1;
        assert!(foreign_records(&torn, 2, "torn").is_err());
    }
}
