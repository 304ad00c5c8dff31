//! A seeded crash property of the read-write mount ([`aios_fs::RwFs`]): whatever a power cut
//! leaves, our recovery turns it into the state after some prefix of the operations, and that
//! prefix holds everything a completed `sync`, `fsync` or `fdatasync` acknowledged.
//!
//! # What runs
//! Each case is a random sequence of 20-60 operations on one thread, generated against a model
//! as it runs: create, mkdir, symlink, write (at 0, appending, in-place overwrites, past the
//! end leaving a hole), truncate, fallocate, unlink, rename, link, rmdir, fsync, fdatasync and
//! sync, on a fresh 32 MiB ext4 image on the emulated `nand` device (volatile write cache,
//! virtual clock). Cases cycle through `data=ordered`/`data=journal`, commit order
//! `Sync`/`Async`, and now and then `-o sync`; the periodic commit is off, so commits happen
//! only at syncs that need one, at the transaction limits, and with `-o sync` after every
//! operation. `stats().commits` after each operation says where the commits were: a commit
//! holds every operation applied before it, so the *commit boundaries* (the states after the
//! operations during which a commit happened, and the empty start) are the only prefixes a
//! recovery may show.
//!
//! # What is checked, per crash state
//! At a few crash points (after some operations and at the end), `EmuDevice::crash(seed)` for
//! several seeds (one when no write is unflushed) gives the durable image with each unflushed
//! write kept or dropped. Our read-write mount recovers it and unmounts; then:
//! - `e2fsck -fn` exits 0;
//! - the tree (a fresh read-only [`Fs::mount`] walk) equals the model at some commit boundary
//!   `b` at least the *durable bound*: the last successful `sync`, and for each successful
//!   `fsync` of an inode the last operation before it that changed the inode (its data, size,
//!   names, link count or, for a directory, entries), for `fdatasync` in `data=ordered` the
//!   last one that changed its size or mapping (create, truncate, fallocate, extending
//!   write). Equal means names, types, sizes, symlink targets and which names share an inode,
//!   exactly;
//! - file contents equal the model's at `b`, except bytes that a write after `b` to the same
//!   inode put there, or zeros a truncate after `b` put in the tail of the block holding its
//!   new end (ordered mode writes data in place before the commit, and `fdatasync` of an
//!   overwrite writes it without a commit);
//! - the data of the last successful `fsync`/`fdatasync` of each inode after `b` is there:
//!   every byte a write between `b` and that sync changed holds the synced value, or a value
//!   a still later write put there.
//!
//! A violation panics with the case seed, options, crash point and seed, the operations and
//! what differed. Seeded and deterministic: `AIOS_CRASHPROP_SEED` (the first case's seed; case
//! `i` runs seed + i) and `AIOS_CRASHPROP_CASES` replay it. Skips loudly without e2fsprogs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use aios_device_emu::{DiskImage, EmuConfig, EmuDevice};
use aios_device_psync::{PsyncConfig, PsyncDevice};
use aios_fs::{DataMode, Fs, MountOptions, RwError, RwFs, RwOptions, ROOT_INO};
use aios_journal::runtime::CommitOrder;
use common::{have_mke2fs, pattern};

/// The device the operations run on: volatile cache, so unflushed writes may be lost; its
/// write log is recorded for crash points inside operations.
const EMU: &str = "nand,size=32M,arena=16M,clock=virtual,record";
/// The device recovery runs on (timing does not matter there).
const EMU_RECOVER: &str = "instant,size=32M,arena=16M,clock=virtual";
const NAMES: [&str; 4] = ["a", "b", "c", "d"];
const MAX_DEPTH: usize = 3;
/// Crash seeds of the live device at the end of a case.
const CRASH_SEEDS: [u64; 4] = [0, 1, 2, 0x5eed];
/// Crash points per case besides the end.
/// Crash points taken from the write log per case, and seeds per point.
const LOG_POINTS: usize = 8;
const LOG_SEEDS: usize = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    File(Vec<u8>),
    Dir,
    Link(Vec<u8>),
}

/// Path -> inode id -> node; the root (id 0) and `lost+found` are implicit.
#[derive(Debug, Clone, Default)]
struct Model {
    ns: BTreeMap<String, u32>,
    inodes: BTreeMap<u32, Node>,
    next: u32,
}

fn parent_of(p: &str) -> &str {
    p.rsplit_once('/').map_or("", |(d, _)| d)
}

fn depth(p: &str) -> usize {
    p.matches('/').count()
}

impl Model {
    fn get(&self, p: &str) -> Option<&Node> {
        self.ns.get(p).map(|id| &self.inodes[id])
    }

    /// The inode id of directory `p` (the root: 0).
    fn id(&self, p: &str) -> u32 {
        if p.is_empty() {
            0
        } else {
            self.ns[p]
        }
    }

    fn file(&self, id: u32) -> &[u8] {
        match self.inodes.get(&id) {
            Some(Node::File(d)) => d,
            _ => &[],
        }
    }

    /// Removes the name `p`; returns its inode if other names keep it.
    fn remove(&mut self, p: &str) -> Option<u32> {
        let id = self.ns.remove(p)?;
        if self.ns.values().any(|&i| i == id) {
            Some(id)
        } else {
            self.inodes.remove(&id);
            None
        }
    }

    fn entries(&self, want: impl Fn(&Node) -> bool) -> Vec<String> {
        self.ns
            .iter()
            .filter(|(_, id)| want(&self.inodes[id]))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// An operation with its paths and bytes fixed.
#[derive(Debug, Clone)]
enum Step {
    Create(String),
    Mkdir(String),
    Symlink(String, Vec<u8>),
    Write(String, u64, Vec<u8>),
    Truncate(String, u64),
    Fallocate(String, u64, u64, bool),
    Unlink(String),
    Rmdir(String),
    Rename(String, String),
    Link(String, String),
    Fsync(String),
    Fdatasync(String),
    Sync,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Create(p) => write!(f, "create {p}"),
            Step::Mkdir(p) => write!(f, "mkdir {p}"),
            Step::Symlink(p, t) => write!(f, "symlink {p} ({} bytes)", t.len()),
            Step::Write(p, o, d) => write!(f, "write {p} at {o}, {} bytes", d.len()),
            Step::Truncate(p, s) => write!(f, "truncate {p} to {s}"),
            Step::Fallocate(p, o, l, k) => write!(f, "fallocate {p} at {o}, {l} bytes, keep {k}"),
            Step::Unlink(p) => write!(f, "unlink {p}"),
            Step::Rmdir(p) => write!(f, "rmdir {p}"),
            Step::Rename(a, b) => write!(f, "rename {a} -> {b}"),
            Step::Link(a, b) => write!(f, "link {a} -> {b}"),
            Step::Fsync(p) => write!(f, "fsync {p}"),
            Step::Fdatasync(p) => write!(f, "fdatasync {p}"),
            Step::Sync => write!(f, "sync"),
        }
    }
}

/// xorshift64*: the case's only source of randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<T: Clone>(&mut self, v: &[T]) -> Option<T> {
        (!v.is_empty()).then(|| v[self.below(v.len() as u64) as usize].clone())
    }
}

/// A new name in an existing directory (it may exist: the operation then fails).
fn new_path(rng: &mut Rng, m: &Model) -> String {
    let mut dirs = vec![String::new()];
    dirs.extend(
        m.entries(|n| *n == Node::Dir)
            .into_iter()
            .filter(|d| depth(d) < MAX_DEPTH),
    );
    let d = rng.pick(&dirs).unwrap();
    format!("{d}/{}", NAMES[rng.below(4) as usize])
}

/// An existing entry `want` accepts, else any entry, else a new path.
fn existing(rng: &mut Rng, m: &Model, want: impl Fn(&Node) -> bool) -> String {
    let c = m.entries(want);
    rng.pick(&c)
        .or_else(|| rng.pick(&m.entries(|_| true)))
        .unwrap_or_else(|| new_path(rng, m))
}

fn gen_step(rng: &mut Rng, m: &Model, seq: u64, last_write: Option<&str>) -> Step {
    let is_file = |n: &Node| matches!(n, Node::File(_));
    let file = |rng: &mut Rng| match last_write {
        Some(p) if rng.below(2) == 0 => p.to_string(),
        _ => existing(rng, m, is_file),
    };
    let size = |p: &str| match m.get(p) {
        Some(Node::File(d)) => d.len() as u64,
        _ => 0,
    };
    // Weights: create 5, mkdir 2, symlink 1, write 9, truncate 2, fallocate 1, unlink 2,
    // rmdir 1, rename 2, link 2, fsync 3, fdatasync 3, sync 2.
    let mut roll = rng.below(35);
    let mut take = |w: u64| {
        let hit = roll < w;
        roll = roll.wrapping_sub(w);
        hit
    };
    if take(5) {
        Step::Create(new_path(rng, m))
    } else if take(2) {
        Step::Mkdir(new_path(rng, m))
    } else if take(1) {
        let len = 1 + rng.below(200) as usize;
        let t = pattern(seq, len).iter().map(|b| b'a' + b % 26).collect();
        Step::Symlink(new_path(rng, m), t)
    } else if take(9) {
        let p = file(rng);
        let s = size(&p);
        let mut len = if rng.below(5) == 0 {
            20_000 + rng.below(100_000)
        } else {
            1 + rng.below(20_000)
        };
        let off = match rng.below(5) {
            0 => 0,
            1 => s,
            2 => s + rng.below(50_000),
            _ => {
                // An overwrite inside the file.
                let off = rng.below(s);
                len = len.min((s - off).max(1));
                off
            }
        };
        Step::Write(p, off, pattern(seq, len as usize))
    } else if take(2) {
        let p = file(rng);
        let s = size(&p);
        let to = match rng.below(3) {
            0 => 0,
            1 => rng.below(s + 1),
            _ => s + rng.below(30_000),
        };
        Step::Truncate(p, to)
    } else if take(1) {
        let p = file(rng);
        let s = size(&p);
        let off = rng.below(s + 20_000);
        Step::Fallocate(p, off, 1 + rng.below(60_000), rng.below(2) == 0)
    } else if take(2) {
        Step::Unlink(existing(rng, m, |n| *n != Node::Dir))
    } else if take(1) {
        Step::Rmdir(existing(rng, m, |n| *n == Node::Dir))
    } else if take(2) {
        Step::Rename(existing(rng, m, |_| true), new_path(rng, m))
    } else if take(2) {
        Step::Link(existing(rng, m, |n| *n != Node::Dir), new_path(rng, m))
    } else if take(3) {
        Step::Fsync(match last_write {
            Some(p) if rng.below(2) == 0 => p.to_string(),
            _ => existing(rng, m, |_| true),
        })
    } else if take(3) {
        Step::Fdatasync(file(rng))
    } else {
        Step::Sync
    }
}

fn run(fs: &mut RwFs<EmuDevice>, step: &Step) -> Result<(), RwError> {
    match step {
        Step::Create(p) => fs.create(p, 0o644).map(drop),
        Step::Mkdir(p) => fs.mkdir(p, 0o755).map(drop),
        Step::Symlink(p, t) => fs.symlink(p, t).map(drop),
        Step::Write(p, o, d) => fs.write(p, *o, d),
        Step::Truncate(p, s) => fs.truncate(p, *s),
        Step::Fallocate(p, o, l, k) => fs.fallocate(p, *o, *l, *k),
        Step::Unlink(p) => fs.unlink(p),
        Step::Rmdir(p) => fs.rmdir(p),
        Step::Rename(a, b) => fs.rename(a, b),
        Step::Link(a, b) => fs.link(a, b),
        Step::Fsync(p) => fs.fsync(p),
        Step::Fdatasync(p) => fs.fdatasync(p),
        Step::Sync => fs.sync(),
    }
}

/// What a successful operation changed, for the durable bound.
#[derive(Debug, Default)]
struct Effect {
    /// Inodes whose data, size, names, link count or entries changed (what `fsync` covers).
    touched: Vec<u32>,
    /// Inodes whose size or mapping changed (what `fdatasync` in `data=ordered` covers).
    remapped: Vec<u32>,
    /// The inode a write or truncate changed the data of.
    wrote: Option<u32>,
}

/// Applies `step`, which succeeded on the mount, to the model.
fn apply(m: &mut Model, step: &Step) -> Effect {
    let mut e = Effect::default();
    match step {
        Step::Create(p) | Step::Mkdir(p) | Step::Symlink(p, _) => {
            let node = match step {
                Step::Create(_) => Node::File(Vec::new()),
                Step::Mkdir(_) => Node::Dir,
                Step::Symlink(_, t) => Node::Link(t.clone()),
                _ => unreachable!(),
            };
            m.next += 1;
            m.inodes.insert(m.next, node);
            m.ns.insert(p.clone(), m.next);
            e.touched = vec![m.next, m.id(parent_of(p))];
            e.remapped = vec![m.next];
        }
        Step::Write(p, off, _) | Step::Truncate(p, off) | Step::Fallocate(p, off, _, _) => {
            let id = m.ns[p];
            let Some(Node::File(d)) = m.inodes.get_mut(&id) else {
                panic!("{step} succeeded on a non-file");
            };
            let before = d.len();
            let off = *off as usize;
            match step {
                Step::Write(_, _, data) => {
                    let end = off + data.len();
                    if d.len() < end {
                        d.resize(end, 0);
                    }
                    d[off..end].copy_from_slice(data);
                    e.wrote = Some(id);
                }
                Step::Truncate(..) => {
                    d.resize(off, 0);
                    e.wrote = Some(id);
                }
                Step::Fallocate(_, _, len, keep) => {
                    let end = off + *len as usize;
                    if !keep && d.len() < end {
                        d.resize(end, 0);
                    }
                }
                _ => unreachable!(),
            }
            e.touched = vec![id];
            if d.len() != before || !matches!(step, Step::Write(..)) {
                e.remapped = vec![id];
            }
        }
        Step::Unlink(p) | Step::Rmdir(p) => {
            e.touched.push(m.id(parent_of(p)));
            e.touched.extend(m.remove(p));
        }
        Step::Rename(from, to) => {
            if m.ns.get(from) == m.ns.get(to) {
                return e;
            }
            e.touched = vec![m.id(parent_of(from)), m.id(parent_of(to)), m.ns[from]];
            e.touched.extend(m.remove(to));
            let prefix = format!("{from}/");
            let moved: Vec<String> =
                m.ns.keys()
                    .filter(|k| *k == from || k.starts_with(&prefix))
                    .cloned()
                    .collect();
            for k in moved {
                let id = m.ns.remove(&k).unwrap();
                m.ns.insert(format!("{to}{}", &k[from.len()..]), id);
            }
        }
        Step::Link(existing, new) => {
            let id = m.ns[existing];
            m.ns.insert(new.clone(), id);
            e.touched = vec![id, m.id(parent_of(new))];
        }
        Step::Fsync(_) | Step::Fdatasync(_) | Step::Sync => {}
    }
    e
}

/// One recovered entry: node and inode number.
type Tree = BTreeMap<String, (Node, u32)>;

/// A fresh read-only mount's walk of `image` (`lost+found` left out).
fn read_tree(image: &Path) -> Tree {
    let device = PsyncDevice::open(image, PsyncConfig::default()).unwrap();
    let fs = Fs::mount(device, MountOptions::default()).unwrap();
    let mut io = fs.io().unwrap();
    let mut out = BTreeMap::new();
    let mut stack = vec![(String::new(), ROOT_INO)];
    while let Some((path, ino)) = stack.pop() {
        for e in fs.read_dir(&mut io, ino).unwrap() {
            let n = String::from_utf8(e.name.clone()).unwrap();
            if n == "." || n == ".." || (path.is_empty() && n == "lost+found") {
                continue;
            }
            let child = format!("{path}/{n}");
            let st = fs.stat(&mut io, e.ino).unwrap();
            let node = match st.mode & 0o170000 {
                0o040000 => {
                    stack.push((child.clone(), e.ino));
                    Node::Dir
                }
                0o120000 => Node::Link(fs.read_link(&mut io, e.ino).unwrap()),
                0o100000 => {
                    let file = fs.open(&mut io, e.ino).unwrap();
                    let mut buf = vec![0u8; st.size_bytes as usize];
                    let got = fs.read_at(&mut io, &file, 0, &mut buf).unwrap();
                    assert_eq!(got, buf.len(), "{child}: short read");
                    Node::File(buf)
                }
                m => panic!("{child}: unexpected mode {m:o}"),
            };
            out.insert(child, (node, e.ino));
        }
    }
    out
}

fn fsck_clean(image: &Path) -> Result<(), String> {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(image)
        .output()
        .unwrap();
    match out.status.code() {
        Some(0) => Ok(()),
        code => Err(format!(
            "e2fsck -fn exit {code:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

/// Everything recorded while the operations ran, indexed by operation (1-based; 0 is the
/// state after mount).
struct History {
    steps: Vec<Step>,
    /// The model after each operation.
    states: Vec<Model>,
    /// `stats().commits` after each operation.
    commits: Vec<u64>,
    /// The inode each successful write went to.
    wrote: Vec<Option<u32>>,
    /// The bound each operation sets on the recovered prefix (for `sync` the last operation
    /// that changed anything, for `fsync`/`fdatasync` the last one it covers, 0 for the rest).
    bound: Vec<usize>,
    /// The inode a successful `fsync`/`fdatasync` made durable.
    synced: Vec<Option<u32>>,
}

impl History {
    /// Commit boundaries up to operation `k`, newest first.
    fn boundaries(&self, k: usize) -> Vec<usize> {
        let mut b: Vec<usize> = (1..=k)
            .filter(|&i| self.commits[i] > self.commits[i - 1])
            .collect();
        b.insert(0, 0);
        b.reverse();
        b
    }

    /// Whether a write in `(after, upto]` to inode `id` put `byte` at `at`, or a truncate
    /// zeroed it (the tail of the block holding the new end: in-place data too).
    fn written(&self, after: usize, upto: usize, id: u32, at: usize, byte: u8) -> bool {
        (after + 1..=upto).any(|i| match (&self.steps[i], self.wrote[i]) {
            (Step::Write(_, off, data), Some(w)) if w == id => {
                let off = *off as usize;
                at >= off && data.get(at - off) == Some(&byte)
            }
            (Step::Truncate(_, size), Some(w)) if w == id => {
                let size = *size as usize;
                byte == 0 && at >= size && at < size.next_multiple_of(4096)
            }
            _ => false,
        })
    }

    /// Whether the recovered `got` is the state after prefix `b` of the first `k` operations,
    /// as the module documentation says.
    /// `acked`: operations that returned before the crash; `upto`: operations whose writes
    /// may show (one more when the crash is inside an operation).
    fn matches(&self, got: &Tree, b: usize, acked: usize, upto: usize) -> Result<(), String> {
        let want = &self.states[b];
        let (gk, wk): (BTreeSet<&String>, BTreeSet<&String>) =
            (got.keys().collect(), want.ns.keys().collect());
        if gk != wk {
            let missing: Vec<_> = wk.difference(&gk).collect();
            let extra: Vec<_> = gk.difference(&wk).collect();
            return Err(format!("names: missing {missing:?}, extra {extra:?}"));
        }
        // Which names share an inode: the same partition on both sides.
        let mut same: BTreeMap<u32, u32> = BTreeMap::new();
        for (p, (node, ino)) in got {
            let id = want.ns[p];
            if *same.entry(id).or_insert(*ino) != *ino {
                return Err(format!("{p}: not the inode its hard links have"));
            }
            match (node, &want.inodes[&id]) {
                (Node::Dir, Node::Dir) => {}
                (Node::Link(g), Node::Link(w)) if g == w => {}
                (Node::File(g), Node::File(w)) => {
                    self.file_matches(p, id, g, w, b, (acked, upto))?
                }
                (g, w) => return Err(format!("{p}: {} instead of {}", kind(g), kind(w))),
            }
        }
        let inos: BTreeSet<u32> = same.values().copied().collect();
        if inos.len() != same.len() {
            return Err("two model inodes share one recovered inode".into());
        }
        Ok(())
    }

    fn file_matches(
        &self,
        p: &str,
        id: u32,
        g: &[u8],
        w: &[u8],
        b: usize,
        crash: (usize, usize),
    ) -> Result<(), String> {
        if g.len() != w.len() {
            return Err(format!("{p}: {} bytes, want {}", g.len(), w.len()));
        }
        let (acked, k) = crash;
        if let Some(i) = (0..g.len()).find(|&i| g[i] != w[i] && !self.written(b, k, id, i, g[i])) {
            return Err(format!(
                "{p}: byte {i} is {:#x}, want {:#x} (and no later write put it there)",
                g[i], w[i]
            ));
        }
        // The last sync of this inode after `b` up to `k`: its data must be there.
        let Some(j) = (b + 1..=acked).rev().find(|&j| self.synced[j] == Some(id)) else {
            return Ok(());
        };
        let synced = self.states[j].file(id);
        let lost = (0..g.len().min(synced.len()))
            .find(|&i| synced[i] != w[i] && g[i] != synced[i] && !self.written(j, k, id, i, g[i]));
        match lost {
            Some(i) => Err(format!(
                "{p}: byte {i} is {:#x}, but op {j} ({}) made {:#x} durable",
                g[i], self.steps[j], synced[i]
            )),
            None => Ok(()),
        }
    }
}

fn kind(n: &Node) -> &'static str {
    match n {
        Node::File(_) => "a file",
        Node::Dir => "a directory",
        Node::Link(_) => "a symlink",
    }
}

fn case_options(case_seed: u64) -> RwOptions {
    RwOptions {
        order: if case_seed.is_multiple_of(2) {
            CommitOrder::Async
        } else {
            CommitOrder::Sync
        },
        data: if (case_seed / 2).is_multiple_of(2) {
            DataMode::Ordered
        } else {
            DataMode::Journal
        },
        sync: case_seed % 8 == 7,
        commit_interval: None,
        ..RwOptions::default()
    }
}

/// Counts over the run.
#[derive(Debug, Default)]
struct Tally {
    ops_ok: usize,
    ops_failed: usize,
    commits: u64,
    data_syncs: u64,
    crash_states: usize,
    unflushed_states: usize,
    /// Crash states that recovered to the newest commit boundary, and to an older one.
    newest: usize,
    older: usize,
}

/// Recovers `crashed` (crash state `at`), checks it with e2fsck, and matches it against the
/// operations: `acked` of them returned before the crash, the writes of `upto` may show.
fn check_crash(
    crashed: DiskImage,
    h: &History,
    (acked, upto): (usize, usize),
    at: &str,
    dir: &Path,
    tally: &mut Tally,
) -> Result<(), String> {
    tally.crash_states += 1;
    let dev = EmuDevice::with_image(EmuConfig::parse(EMU_RECOVER).unwrap(), crashed).unwrap();
    let options = RwOptions {
        commit_interval: None,
        ..RwOptions::default()
    };
    let fs = RwFs::mount(dev.clone(), options).map_err(|e| format!("{at}: recovery mount: {e}"))?;
    let (_, r) = fs.unmount();
    r.map_err(|e| format!("{at}: unmount after recovery: {e}"))?;
    let image = dir.join("recovered.img");
    dev.save(&image).unwrap();
    fsck_clean(&image).map_err(|e| format!("{at}: {e}"))?;
    let got = read_tree(&image);
    let bound = h.bound[..=acked].iter().copied().max().unwrap_or(0);
    let all = h.boundaries(upto);
    let mut why = Vec::new();
    for &b in all.iter().filter(|&&b| b >= bound) {
        match h.matches(&got, b, acked, upto) {
            Ok(()) if b == all[0] => {
                tally.newest += 1;
                return Ok(());
            }
            Ok(()) => {
                tally.older += 1;
                return Ok(());
            }
            Err(e) => why.push(format!("prefix {b}: {e}")),
        }
    }
    if why.is_empty() {
        why.push("no commit boundary at or above the bound".into());
    }
    Err(format!(
        "{at} ({acked} ops returned): the recovered tree is no allowed prefix (durable bound: \
         op {bound}, commit boundaries {all:?}):\n{}",
        why.join("\n")
    ))
}

/// Crash states inside the recorded run: up to [`LOG_POINTS`] points, one at random inside
/// each operation that did I/O, each with [`LOG_SEEDS`] seeds (one when no write is
/// unflushed there). `times[i]` is the device clock when operation `i` returned.
fn check_log(
    dev: &EmuDevice,
    h: &History,
    times: &[u64],
    rng: &mut Rng,
    dir: &Path,
    tally: &mut Tally,
) -> Result<(), String> {
    let log = dev.log().unwrap();
    let events = log.events();
    // Events at or before the time operation `i` returned: all of its own, perhaps the first
    // of the next one (submitted at the same virtual time).
    let upto_op: Vec<usize> = times
        .iter()
        .map(|&t| events.partition_point(|e| e.time_ns <= t))
        .collect();
    let mut points: Vec<usize> = (1..upto_op.len())
        .filter(|&i| upto_op[i] > upto_op[i - 1])
        .map(|i| upto_op[i - 1] + 1 + rng.below((upto_op[i] - upto_op[i - 1]) as u64) as usize)
        .collect();
    while points.len() > LOG_POINTS {
        points.remove(rng.below(points.len() as u64) as usize);
    }
    if std::env::var_os("AIOS_CRASHPROP_LOG").is_some() {
        eprintln!("op return times {times:?}, events by op {upto_op:?}");
        for (i, e) in events.iter().enumerate() {
            let c = match log.command(e.id) {
                Some(aios_device_emu::LoggedCommand::Write {
                    offset_bytes,
                    data,
                    fua,
                    ..
                }) => {
                    format!(
                        "write block {} x{} fua {fua}",
                        offset_bytes / 4096,
                        data.len() / 4096
                    )
                }
                other => format!("{other:?}"),
            };
            eprintln!("event {i}: {:?} #{} at {} ns: {c}", e.kind, e.id, e.time_ns);
        }
    }
    let mut replay = log.replay().unwrap();
    for e in points {
        replay.advance_to(log.point(e)).unwrap();
        // Conservative: `acked` only operations whose window ends by `e` (a window may hold
        // the first events of the next operations, submitted at the same virtual time).
        let acked = upto_op.iter().rposition(|&u| u <= e).unwrap_or(0);
        // Event `e - 1` may come from any operation that started by its time.
        let last = events[e - 1].time_ns;
        let upto = times[..times.len() - 1]
            .iter()
            .rposition(|&t| t <= last)
            .map_or(0, |i| i + 1);
        let seeds = if replay.candidates().is_empty() {
            1
        } else {
            tally.unflushed_states += LOG_SEEDS;
            LOG_SEEDS
        };
        for seed in 0..seeds as u64 {
            let at = format!("log crash point {e}/{} seed {seed}", events.len());
            check_crash(
                replay.image_seeded(seed).unwrap(),
                h,
                (acked, upto),
                &at,
                dir,
                tally,
            )?;
        }
    }
    Ok(())
}

/// Runs one case; `Err` describes a violation (the caller adds the replay details).
fn run_case(
    case_seed: u64,
    options: RwOptions,
    log: &mut Vec<String>,
    tally: &mut Tally,
) -> Result<(), String> {
    let mut rng = Rng(case_seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let n = 20 + rng.below(41) as usize;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dev = EmuDevice::with_image(
        EmuConfig::parse(EMU).unwrap(),
        common::base_image(dir.path()),
    )
    .unwrap();
    let mut fs = RwFs::mount(dev.clone(), options).map_err(|e| format!("mount: {e}"))?;
    let mut model = Model::default();
    let mut h = History {
        steps: vec![Step::Sync],
        states: vec![model.clone()],
        commits: vec![fs.stats().commits],
        wrote: vec![None],
        bound: vec![0],
        synced: vec![None],
    };
    // Per inode: the last operation that touched it, and that remapped it.
    let mut touched: BTreeMap<u32, usize> = BTreeMap::new();
    let mut remapped: BTreeMap<u32, usize> = BTreeMap::new();
    let mut last_write: Option<String> = None;
    // The last operation that changed anything.
    let mut last_change = 0;
    let mut times = vec![dev.now_ns()];
    for i in 1..=n {
        let step = gen_step(
            &mut rng,
            &model,
            case_seed ^ (i as u64) << 32,
            last_write.as_deref(),
        );
        let result = run(&mut fs, &step);
        log.push(format!(
            "{i}: {step}{}",
            if result.is_ok() { "" } else { " (failed)" }
        ));
        let (mut wrote, mut bound, mut synced) = (None, 0, None);
        match result {
            Ok(()) => {
                tally.ops_ok += 1;
                let id = |p: &str| model.ns.get(p).copied();
                match &step {
                    Step::Sync => bound = last_change,
                    Step::Fsync(p) => {
                        let ino = id(p).unwrap_or(0);
                        bound = touched.get(&ino).copied().unwrap_or(0);
                        synced = Some(ino);
                    }
                    Step::Fdatasync(p) => {
                        let ino = id(p).unwrap_or(0);
                        let by = match options.data {
                            DataMode::Ordered => &remapped,
                            DataMode::Journal => &touched,
                        };
                        bound = by.get(&ino).copied().unwrap_or(0);
                        synced = Some(ino);
                    }
                    _ => {}
                }
                let e = apply(&mut model, &step);
                if !e.touched.is_empty() {
                    last_change = i;
                }
                for ino in e.touched {
                    touched.insert(ino, i);
                }
                for ino in e.remapped {
                    remapped.insert(ino, i);
                }
                wrote = e.wrote;
                if let Step::Write(p, _, _) = &step {
                    last_write = Some(p.clone());
                }
            }
            Err(e) => {
                tally.ops_failed += 1;
                if !matches!(e, RwError::Op { .. }) || fs.is_read_only() {
                    return Err(format!(
                        "op {i} failed with {e} (read-only: {})",
                        fs.is_read_only()
                    ));
                }
            }
        }
        h.steps.push(step);
        h.states.push(model.clone());
        h.commits.push(fs.stats().commits);
        h.wrote.push(wrote);
        h.bound.push(bound);
        h.synced.push(synced);
        times.push(dev.now_ns());
    }
    // The live device at the end: every operation returned.
    let seeds: &[u64] = if dev.crash_candidates().is_empty() {
        &CRASH_SEEDS[..1]
    } else {
        tally.unflushed_states += CRASH_SEEDS.len();
        &CRASH_SEEDS
    };
    for &seed in seeds {
        let at = format!("crash at the end with seed {seed:#x}");
        check_crash(dev.crash(seed).unwrap(), &h, (n, n), &at, dir.path(), tally)?;
    }
    check_log(&dev, &h, &times, &mut rng, dir.path(), tally)?;
    tally.commits += fs.stats().commits;
    tally.data_syncs += fs.stats().data_syncs;
    drop(fs);
    Ok(())
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn a_crash_recovers_a_prefix_holding_every_acknowledged_sync() {
    let name = "a_crash_recovers_a_prefix_holding_every_acknowledged_sync";
    if !have_mke2fs(name) {
        return;
    }
    let seed = env_u64("AIOS_CRASHPROP_SEED").unwrap_or(0xc4a5_0000);
    let cases = env_u64("AIOS_CRASHPROP_CASES").unwrap_or(64);
    let started = std::time::Instant::now();
    let mut tally = Tally::default();
    for c in 0..cases {
        let case_seed = seed + c;
        let options = case_options(case_seed);
        let mut log = Vec::new();
        if let Err(e) = run_case(case_seed, options, &mut log, &mut tally) {
            panic!(
                "{name}: case seed {case_seed} (replay: AIOS_CRASHPROP_SEED={case_seed} \
                 AIOS_CRASHPROP_CASES=1), order {:?}, data {:?}, sync {}:\n{e}\nops:\n{}",
                options.order,
                options.data,
                options.sync,
                log.join("\n")
            );
        }
    }
    eprintln!(
        "{name}: seed {seed}, {cases} cases, {tally:?}, {:.1?}",
        started.elapsed()
    );
}
