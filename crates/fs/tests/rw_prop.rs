//! A model-based property test of the read-write mount ([`aios_fs::RwFs`]) over an `mke2fs`
//! image file (psync backend), against an in-memory model (issue 4's acceptance).
//!
//! Each case is a random sequence of 30-80 operations on a fresh 32 MiB ext4 image: create,
//! mkdir, symlink (fast and slow targets), write (at 0, appending, inside, past the end leaving
//! a hole, far out: sparse and extending; small and multi-extent lengths), truncate (to 0,
//! shrinking, extending), unlink, rmdir, rename (files and directories, over files and empty or
//! non-empty directories, into its own subtree, onto another name of the same inode), hard
//! link (to files and symlinks; to a directory fails with `NotPermitted`), `set_attr` (mode,
//! uid and gid both sides of 65535, mtime before 1970 and past 2038; a chown clears
//! set-user-ID), `fallocate` (unwritten extents, growing the size or `keep_size`), READ through
//! the read-write mount (at 0, inside, at and past the end, across holes and unwritten
//! extents: the bytes and the count must equal the model's, zeros for holes, short at the end
//! of the file), FSYNC and FDATASYNC of any entry, SYNC, and REMOUNT: a clean
//! [`RwFs::unmount`] and a fresh [`RwFs::mount`] of the same image file.
//!
//! Operations are buffered: each joins the running transaction, which commits at an
//! `fsync`/`fdatasync` that needs it (an `fdatasync` of in-place overwrites in
//! `data=ordered` writes the data and flushes, without a commit), at `sync`, when the
//! transaction outgrows its limits, and at unmount; the periodic commit is off
//! (`commit_interval: None`) so a case replays exactly. A REMOUNT is a clean unmount, which
//! commits everything, so the image then holds every operation; what an interrupted mount
//! keeps is `rw_crash_prop`'s subject. Each case runs in one mix of [`RwOptions`], chosen
//! from the case (so shrinking keeps it): `data=ordered` or `data=journal`, commit order
//! `Sync` or `Async`, and in about one case in five `-o sync` (every operation commits).
//!
//! The model is of inodes: several names may share one inode (contents, size, attributes),
//! whose link count is its number of names; a write through one name shows through all.
//!
//! Paths are drawn from a small universe (names `a`..`d`, depth <= 3) or from the model's
//! current entries, so operations often collide: many must fail. The model says which, and
//! with which error kind (`rename(2)`'s order of checks: parents first, then
//! the entry, then types); a failed operation must leave the mount writable and commit no
//! transaction (the mutator is all-or-nothing). After every successful operation the mount's
//! own lookup agrees with the model (type, size, link count, attributes).
//!
//! After each remount and at the end of each case (image unmounted cleanly):
//! - `e2fsck -fn` exits 0 and reports nothing;
//! - a fresh read-only [`Fs::mount`] walk equals the model: names, types, sizes, contents,
//!   symlink targets, link counts (directories: 2 + subdirectories), which names share an
//!   inode, mode, uid, gid, and mtime where the model knows it (set by `set_attr` and not
//!   since changed to "now");
//! - as root, the Linux kernel loop-mounts the image read-only and its walk equals the model
//!   the same way, attributes included (skipped loudly when not root or when the loop mount
//!   fails).
//!
//! Seeded and deterministic (`AIOS_RWPROP_SEED`, `AIOS_RWPROP_CASES` override the seed and the
//! number of cases). Skips loudly without e2fsprogs.

mod common;

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use aios_device_psync::{PsyncConfig, PsyncDevice};
use aios_fs::{
    DataMode, Fs, FsError, MountOptions, RwError, RwFs, RwOptions, SetAttr, Timestamp, ROOT_INO,
};
use aios_journal::runtime::CommitOrder;
use common::{have_mke2fs, pattern};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

const NAMES: [&str; 4] = ["a", "b", "c", "d"];
const MAX_DEPTH: usize = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    File(Vec<u8>),
    Dir,
    Link(Vec<u8>),
}

/// Attributes `set_attr` changes, as compared: `None` in the model means "not known" (the
/// root's, or an mtime since changed to "now" by some operation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Attrs {
    mode: Option<u16>,
    uid: Option<u32>,
    gid: Option<u32>,
    mtime: Option<(i64, u32)>,
}

/// One inode of the model: its node (contents) and attributes; its link count is the number
/// of names naming it (directories: 2 + subdirectories).
#[derive(Debug, Clone)]
struct MInode {
    node: Node,
    attrs: Attrs,
}

/// Absolute path (`/a/b`) -> inode id -> inode; the root and `lost+found` are implicit. Hard
/// links are several names with one id.
#[derive(Debug, Clone, Default)]
struct Model {
    ns: BTreeMap<String, u32>,
    inodes: BTreeMap<u32, MInode>,
    next: u32,
}

impl Model {
    fn new() -> Model {
        Model::default()
    }

    fn get(&self, p: &str) -> Option<&Node> {
        self.ns.get(p).map(|id| &self.inodes[id].node)
    }

    fn get_mut(&mut self, p: &str) -> Option<&mut Node> {
        let id = *self.ns.get(p)?;
        Some(&mut self.inodes.get_mut(&id).unwrap().node)
    }

    fn inode_mut(&mut self, p: &str) -> Option<&mut MInode> {
        let id = *self.ns.get(p)?;
        self.inodes.get_mut(&id)
    }

    fn contains_key(&self, p: &str) -> bool {
        self.ns.contains_key(p)
    }

    fn is_empty(&self) -> bool {
        self.ns.is_empty()
    }

    fn keys(&self) -> impl Iterator<Item = &String> {
        self.ns.keys()
    }

    fn iter(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.ns.iter().map(|(k, id)| (k, &self.inodes[id].node))
    }

    /// A new inode named `p`, with the attributes `RwFs` gives new inodes.
    fn insert(&mut self, p: String, node: Node) {
        let mode = match node {
            Node::File(_) => 0o644,
            Node::Dir => 0o755,
            Node::Link(_) => 0o777,
        };
        let attrs = Attrs {
            mode: Some(mode),
            uid: Some(0),
            gid: Some(0),
            mtime: None,
        };
        self.next += 1;
        self.inodes.insert(self.next, MInode { node, attrs });
        self.ns.insert(p, self.next);
    }

    /// Removes the name `p`; the inode goes with its last name.
    fn remove(&mut self, p: &str) {
        if let Some(id) = self.ns.remove(p) {
            if !self.ns.values().any(|&i| i == id) {
                self.inodes.remove(&id);
            }
        }
    }

    fn links(&self, id: u32) -> u64 {
        self.ns.values().filter(|&&i| i == id).count() as u64
    }

    /// The mtime of `p` (the root: unknown anyway) became "now".
    fn touch(&mut self, p: &str) {
        if let Some(i) = self.inode_mut(p) {
            i.attrs.mtime = None;
        }
    }
}

/// How an operation picks a path: `sel` 0..10 chooses the source (the model's entries of the
/// preferred kind, any entry, a new name in an existing directory, or the fixed universe),
/// `idx` and `name` which one.
#[derive(Debug, Clone, Copy)]
struct Pick {
    sel: u8,
    idx: u32,
    name: u8,
}

#[derive(Debug, Clone)]
enum Op {
    Create(Pick),
    Mkdir(Pick),
    Symlink(Pick, u16),
    Write {
        at: Pick,
        how: u8,
        raw: u32,
        len: u32,
    },
    Truncate {
        at: Pick,
        how: u8,
        raw: u32,
    },
    Unlink(Pick),
    Rmdir(Pick),
    Rename(Pick, Pick),
    Link(Pick, Pick),
    /// `fields`: a bit per attribute given (mode, uid, gid, mtime); `ids` pick uid, gid, mtime.
    SetAttr {
        at: Pick,
        fields: u8,
        mode: u16,
        ids: [u8; 3],
        nanos: u32,
    },
    Fallocate {
        at: Pick,
        how: u8,
        raw: u32,
        len: u32,
        keep_size: bool,
    },
    /// Read through the mount: `how` picks the offset, `len` the buffer.
    Read {
        at: Pick,
        how: u8,
        raw: u32,
        len: u32,
    },
    Fsync(Pick),
    Fdatasync(Pick),
    Sync,
    Remount,
}

/// Owners `set_attr` gives: both 16-bit halves of ext4's split uid/gid fields.
const IDS: [u32; 7] = [0, 1, 1000, 65534, 65535, 65536, 0x1234_5678];
/// mtimes `set_attr` gives: before 1970, 2038 and past it (ext4's epoch bits), 2446.
const SECS: [i64; 8] = [
    0,
    -1,
    1_000_000_000,
    (1 << 31) - 1,
    1 << 31,
    (1 << 32) + 5,
    -(1 << 31),
    (1 << 34) - (1 << 31) - 1,
];

fn pick() -> impl Strategy<Value = Pick> {
    (0u8..10, any::<u32>(), any::<u8>()).prop_map(|(sel, idx, name)| Pick { sel, idx, name })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => pick().prop_map(Op::Create),
        3 => pick().prop_map(Op::Mkdir),
        1 => (pick(), 1u16..300).prop_map(|(p, l)| Op::Symlink(p, l)),
        6 => (pick(), 0u8..7, any::<u32>(), prop_oneof![4 => 1u32..20_000, 1 => 20_000u32..200_000])
            .prop_map(|(at, how, raw, len)| Op::Write { at, how, raw, len }),
        2 => (pick(), 0u8..4, any::<u32>()).prop_map(|(at, how, raw)| Op::Truncate { at, how, raw }),
        2 => pick().prop_map(Op::Unlink),
        2 => pick().prop_map(Op::Rmdir),
        3 => (pick(), pick()).prop_map(|(a, b)| Op::Rename(a, b)),
        3 => (pick(), pick()).prop_map(|(a, b)| Op::Link(a, b)),
        2 => (pick(), 1u8..16, 0u16..0o10000, any::<[u8; 3]>(), 0u32..1_000_000_000)
            .prop_map(|(at, fields, mode, ids, nanos)| Op::SetAttr { at, fields, mode, ids, nanos }),
        2 => (pick(), 0u8..5, any::<u32>(), prop_oneof![1 => Just(0u32), 20 => 1u32..300_000], any::<bool>())
            .prop_map(|(at, how, raw, len, keep_size)| Op::Fallocate { at, how, raw, len, keep_size }),
        3 => (pick(), 0u8..5, any::<u32>(), prop_oneof![1 => Just(0u32), 10 => 1u32..20_000, 2 => 20_000u32..300_000])
            .prop_map(|(at, how, raw, len)| Op::Read { at, how, raw, len }),
        2 => pick().prop_map(Op::Fsync),
        2 => pick().prop_map(Op::Fdatasync),
        2 => Just(Op::Sync),
        1 => Just(Op::Remount),
    ]
}

/// Every path of names `a`..`d` up to depth [`MAX_DEPTH`].
fn universe() -> Vec<String> {
    let mut all = Vec::new();
    let mut level = vec![String::new()];
    for _ in 0..MAX_DEPTH {
        let mut next = Vec::new();
        for p in &level {
            for n in NAMES {
                next.push(format!("{p}/{n}"));
            }
        }
        all.extend(next.iter().cloned());
        level = next;
    }
    all
}

fn depth(p: &str) -> usize {
    p.matches('/').count()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Files,
    Dirs,
    NonDirs,
    Any,
}

fn wanted(n: &Node, w: Want) -> bool {
    match w {
        Want::Files => matches!(n, Node::File(_)),
        Want::Dirs => *n == Node::Dir,
        Want::NonDirs => *n != Node::Dir,
        Want::Any => true,
    }
}

/// An existing entry (sel 0..8: preferring kind `w`; 8: any), else a universe path.
fn pick_existing(model: &Model, uni: &[String], p: Pick, w: Want) -> String {
    let choose = |w: Want| -> Option<String> {
        let c: Vec<&String> = model
            .iter()
            .filter(|(_, n)| wanted(n, w))
            .map(|(k, _)| k)
            .collect();
        (!c.is_empty()).then(|| c[p.idx as usize % c.len()].clone())
    };
    let found = match p.sel {
        0..=7 => choose(w).or_else(|| choose(Want::Any)),
        8 => choose(Want::Any),
        _ => None,
    };
    found.unwrap_or_else(|| uni[p.idx as usize % uni.len()].clone())
}

/// A new name in an existing directory (sel 0..7), an existing entry (7), else a universe
/// path.
fn pick_new(model: &Model, uni: &[String], p: Pick) -> String {
    match p.sel {
        0..=6 => {
            let dirs: Vec<&str> = std::iter::once("")
                .chain(
                    model
                        .iter()
                        .filter(|(k, n)| **n == Node::Dir && depth(k) < MAX_DEPTH)
                        .map(|(k, _)| k.as_str()),
                )
                .collect();
            let d = dirs[p.idx as usize % dirs.len()];
            format!("{d}/{}", NAMES[usize::from(p.name) % NAMES.len()])
        }
        7 if !model.is_empty() => {
            let keys: Vec<&String> = model.keys().collect();
            keys[p.idx as usize % keys.len()].clone()
        }
        _ => uni[p.idx as usize % uni.len()].clone(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    NotFound,
    NotADirectory,
    IsADirectory,
    NotARegularFile,
    NotEmpty,
    Exists,
    InvalidArgument,
    NotPermitted,
}

fn kind_of(e: &RwError) -> Kind {
    let RwError::Op { cause, .. } = e else {
        panic!("not an operation error (the mount failed?): {e}");
    };
    let mut c = cause;
    while let FsError::At { source, .. } = c {
        c = source;
    }
    match c {
        FsError::NotFound { .. } => Kind::NotFound,
        FsError::NotADirectory { .. } => Kind::NotADirectory,
        FsError::IsADirectory { .. } => Kind::IsADirectory,
        FsError::NotARegularFile { .. } => Kind::NotARegularFile,
        FsError::NotEmpty { .. } => Kind::NotEmpty,
        FsError::Exists { .. } => Kind::Exists,
        FsError::InvalidArgument { .. } => Kind::InvalidArgument,
        FsError::NotPermitted { .. } => Kind::NotPermitted,
        other => panic!("unexpected error kind: {e} ({other:?})"),
    }
}

fn parent_of(p: &str) -> &str {
    p.rsplit_once('/').map_or("", |(d, _)| d)
}

fn is_dir(model: &Model, p: &str) -> bool {
    p.is_empty() || model.get(p) == Some(&Node::Dir)
}

/// `lookup_path` of `path` as the mutator walks it: every component's parent must be a
/// directory, every component must exist.
fn walk(model: &Model, path: &str) -> Result<(), Kind> {
    let mut cur = String::new();
    for comp in path.split('/').filter(|c| !c.is_empty()) {
        if !is_dir(model, &cur) {
            return Err(Kind::NotADirectory);
        }
        cur = format!("{cur}/{comp}");
        if !model.contains_key(&cur) {
            return Err(Kind::NotFound);
        }
    }
    Ok(())
}

/// `RwFs::parent` then the mutator's `load_dir(parent)`.
fn walk_parent(model: &Model, path: &str) -> Result<(), Kind> {
    let parent = parent_of(path);
    walk(model, parent)?;
    if is_dir(model, parent) {
        Ok(())
    } else {
        Err(Kind::NotADirectory)
    }
}

fn has_children(model: &Model, p: &str) -> bool {
    let prefix = format!("{p}/");
    model
        .ns
        .range(prefix.clone()..)
        .next()
        .is_some_and(|(k, _)| k.starts_with(&prefix))
}

/// A resolved operation: paths and bytes fixed against the model before it runs.
#[derive(Debug, Clone)]
enum Step {
    Create(String),
    Mkdir(String),
    Symlink(String, Vec<u8>),
    Write(String, u64, Vec<u8>),
    Truncate(String, u64),
    Unlink(String),
    Rmdir(String),
    Rename(String, String),
    Link(String, String),
    SetAttr(String, SetAttr),
    Fallocate(String, u64, u64, bool),
    Read(String, u64, usize),
    Fsync(String),
    Fdatasync(String),
    Sync,
    Remount,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Create(p) => write!(f, "create {p}"),
            Step::Mkdir(p) => write!(f, "mkdir {p}"),
            Step::Symlink(p, t) => write!(f, "symlink {p} -> ({} bytes)", t.len()),
            Step::Write(p, o, d) => write!(f, "write {p} at {o}, {} bytes", d.len()),
            Step::Truncate(p, s) => write!(f, "truncate {p} to {s}"),
            Step::Unlink(p) => write!(f, "unlink {p}"),
            Step::Rmdir(p) => write!(f, "rmdir {p}"),
            Step::Rename(a, b) => write!(f, "rename {a} -> {b}"),
            Step::Link(a, b) => write!(f, "link {a} -> {b}"),
            Step::SetAttr(p, a) => write!(f, "set_attr {p} {a:?}"),
            Step::Fallocate(p, o, l, k) => {
                write!(f, "fallocate {p} at {o}, {l} bytes, keep_size {k}")
            }
            Step::Read(p, o, l) => write!(f, "read {p} at {o}, {l} bytes"),
            Step::Fsync(p) => write!(f, "fsync {p}"),
            Step::Fdatasync(p) => write!(f, "fdatasync {p}"),
            Step::Sync => write!(f, "sync"),
            Step::Remount => write!(f, "remount"),
        }
    }
}

impl Step {
    /// The operation's name, for the tallies.
    fn name(&self) -> &'static str {
        match self {
            Step::Create(_) => "create",
            Step::Mkdir(_) => "mkdir",
            Step::Symlink(..) => "symlink",
            Step::Write(..) => "write",
            Step::Truncate(..) => "truncate",
            Step::Unlink(_) => "unlink",
            Step::Rmdir(_) => "rmdir",
            Step::Rename(..) => "rename",
            Step::Link(..) => "link",
            Step::SetAttr(..) => "set_attr",
            Step::Fallocate(..) => "fallocate",
            Step::Read(..) => "read",
            Step::Fsync(_) => "fsync",
            Step::Fdatasync(_) => "fdatasync",
            Step::Sync => "sync",
            Step::Remount => "remount",
        }
    }
}

fn file_len(model: &Model, p: &str) -> u64 {
    match model.get(p) {
        Some(Node::File(d)) => d.len() as u64,
        _ => 0,
    }
}

/// `op` against the model; `last_write` (the path of the last write) is what a sync with
/// `sel` 5..10 picks, so that overwrites are often synced before anything else commits.
fn resolve(model: &Model, uni: &[String], op: &Op, seq: u64, last_write: Option<&str>) -> Step {
    let sync_pick = |p: Pick, w: Want| match last_write {
        Some(last) if p.sel >= 5 => last.to_string(),
        _ => pick_existing(model, uni, p, w),
    };
    match *op {
        Op::Create(p) => Step::Create(pick_new(model, uni, p)),
        Op::Mkdir(p) => Step::Mkdir(pick_new(model, uni, p)),
        Op::Symlink(p, len) => {
            let target: Vec<u8> = pattern(seq, usize::from(len))
                .iter()
                .map(|b| b'a' + b % 26)
                .collect();
            Step::Symlink(pick_new(model, uni, p), target)
        }
        Op::Write { at, how, raw, len } => {
            let path = pick_existing(model, uni, at, Want::Files);
            let size = file_len(model, &path);
            let (offset, len) = match how {
                0 => (0, len),
                1 => (size, len),
                2 => (u64::from(raw) % (size + 1), len),
                3 => (size + u64::from(raw % 100_000), len),
                4 => (u64::from(raw % (2 << 20)), len),
                // Inside the file (an in-place overwrite once its blocks are committed), or
                // appending to an empty one.
                _ => {
                    let offset = u64::from(raw) % size.max(1);
                    (offset, len.min((size - offset).max(1) as u32))
                }
            };
            Step::Write(path, offset, pattern(seq, len as usize))
        }
        Op::Truncate { at, how, raw } => {
            let path = pick_existing(model, uni, at, Want::Files);
            let size = file_len(model, &path);
            let to = match how {
                0 => 0,
                1 => u64::from(raw) % (size + 1),
                2 => size + u64::from(raw % 100_000),
                _ => u64::from(raw % 400_000),
            };
            Step::Truncate(path, to)
        }
        Op::Unlink(p) => Step::Unlink(pick_existing(model, uni, p, Want::NonDirs)),
        Op::Rmdir(p) => Step::Rmdir(pick_existing(model, uni, p, Want::Dirs)),
        Op::Rename(a, b) => Step::Rename(
            pick_existing(model, uni, a, Want::Any),
            pick_new(model, uni, b),
        ),
        Op::Link(a, b) => Step::Link(
            pick_existing(model, uni, a, Want::Files),
            pick_new(model, uni, b),
        ),
        Op::SetAttr {
            at,
            fields,
            mode,
            ids,
            nanos,
        } => {
            let has = |bit: u8| fields & (1 << bit) != 0;
            let attr = SetAttr {
                mode: has(0).then_some(mode),
                uid: has(1).then(|| IDS[usize::from(ids[0]) % IDS.len()]),
                gid: has(2).then(|| IDS[usize::from(ids[1]) % IDS.len()]),
                mtime: has(3).then(|| Timestamp {
                    secs: SECS[usize::from(ids[2]) % SECS.len()],
                    nanos,
                }),
                ..SetAttr::default()
            };
            Step::SetAttr(pick_existing(model, uni, at, Want::Any), attr)
        }
        Op::Fallocate {
            at,
            how,
            raw,
            len,
            keep_size,
        } => {
            let path = pick_existing(model, uni, at, Want::Files);
            let size = file_len(model, &path);
            let offset = match how {
                0 => 0,
                1 => size,
                2 => u64::from(raw) % (size + 1),
                3 => size + u64::from(raw % 100_000),
                _ => u64::from(raw % (2 << 20)),
            };
            Step::Fallocate(path, offset, u64::from(len), keep_size)
        }
        Op::Read { at, how, raw, len } => {
            let path = pick_existing(model, uni, at, Want::Files);
            let size = file_len(model, &path);
            let offset = match how {
                0 => 0,
                1 => size,
                2 => u64::from(raw) % (size + 1),
                3 => size + u64::from(raw % 10_000),
                // Ending past the end: a short read.
                _ => size.saturating_sub(u64::from(raw % 5000)),
            };
            Step::Read(path, offset, len as usize)
        }
        Op::Fsync(p) => Step::Fsync(sync_pick(p, Want::Any)),
        Op::Fdatasync(p) => Step::Fdatasync(sync_pick(p, Want::Files)),
        Op::Sync => Step::Sync,
        Op::Remount => Step::Remount,
    }
}

/// What `step` must do: `Err(kind)` (and change nothing), or `Ok` with the model updated.
fn expect(model: &mut Model, step: &Step) -> Result<(), Kind> {
    match step {
        Step::Create(p) | Step::Mkdir(p) | Step::Symlink(p, _) => {
            walk_parent(model, p)?;
            if model.contains_key(p) {
                return Err(Kind::Exists);
            }
            let node = match step {
                Step::Create(_) => Node::File(Vec::new()),
                Step::Mkdir(_) => Node::Dir,
                Step::Symlink(_, t) => Node::Link(t.clone()),
                _ => unreachable!(),
            };
            model.insert(p.clone(), node);
            model.touch(parent_of(p));
        }
        Step::Write(p, off, data) => {
            walk(model, p)?;
            let Some(Node::File(d)) = model.get_mut(p) else {
                return Err(Kind::NotARegularFile);
            };
            let (off, end) = (*off as usize, *off as usize + data.len());
            if d.len() < end {
                d.resize(end, 0);
            }
            d[off..end].copy_from_slice(data);
            model.touch(p);
        }
        Step::Truncate(p, size) => {
            walk(model, p)?;
            let Some(Node::File(d)) = model.get_mut(p) else {
                return Err(Kind::NotARegularFile);
            };
            d.resize(*size as usize, 0);
            model.touch(p);
        }
        Step::Unlink(p) => {
            walk_parent(model, p)?;
            match model.get(p) {
                None => return Err(Kind::NotFound),
                Some(Node::Dir) => return Err(Kind::IsADirectory),
                Some(_) => {
                    model.remove(p);
                    model.touch(parent_of(p));
                }
            }
        }
        Step::Rmdir(p) => {
            walk_parent(model, p)?;
            match model.get(p) {
                None => return Err(Kind::NotFound),
                Some(Node::Dir) if has_children(model, p) => return Err(Kind::NotEmpty),
                Some(Node::Dir) => {
                    model.remove(p);
                    model.touch(parent_of(p));
                }
                Some(_) => return Err(Kind::NotADirectory),
            }
        }
        Step::Rename(from, to) => {
            // rename(2)'s order: `from`'s parent resolved and a directory, then `to`'s, then
            // the source must exist.
            let (fp, tp) = (parent_of(from), parent_of(to));
            walk_parent(model, from)?;
            walk_parent(model, to)?;
            let Some(src) = model.get(from).cloned() else {
                return Err(Kind::NotFound);
            };
            if from == to || model.ns.get(from) == model.ns.get(to) {
                // rename(2): two names of one inode, nothing happens.
                return Ok(());
            }
            if src == Node::Dir && fp != tp && (tp == from || tp.starts_with(&format!("{from}/"))) {
                return Err(Kind::InvalidArgument);
            }
            match model.get(to) {
                Some(Node::Dir) if src != Node::Dir => return Err(Kind::IsADirectory),
                Some(n) if *n != Node::Dir && src == Node::Dir => return Err(Kind::NotADirectory),
                Some(Node::Dir) if has_children(model, to) => return Err(Kind::NotEmpty),
                _ => {}
            }
            model.remove(to);
            let prefix = format!("{from}/");
            let moved: Vec<String> = model
                .keys()
                .filter(|k| *k == from || k.starts_with(&prefix))
                .cloned()
                .collect();
            for k in moved {
                let id = model.ns.remove(&k).unwrap();
                model.ns.insert(format!("{to}{}", &k[from.len()..]), id);
            }
            model.touch(to);
            model.touch(fp);
            model.touch(tp);
        }
        Step::Link(existing, new) => {
            // `RwFs::link`: `existing` resolved, then `new`'s parent, then the type, then the
            // parent's type and the name.
            walk(model, existing)?;
            let np = parent_of(new);
            walk(model, np)?;
            if model.get(existing) == Some(&Node::Dir) {
                return Err(Kind::NotPermitted);
            }
            if !is_dir(model, np) {
                return Err(Kind::NotADirectory);
            }
            if model.contains_key(new) {
                return Err(Kind::Exists);
            }
            let id = model.ns[existing];
            model.ns.insert(new.clone(), id);
            model.touch(np);
        }
        Step::SetAttr(p, attr) => {
            walk(model, p)?;
            if *attr == SetAttr::default() {
                return Ok(());
            }
            let i = model.inode_mut(p).unwrap();
            let is_dir = i.node == Node::Dir;
            let a = &mut i.attrs;
            let mut mode = a.mode.unwrap();
            if let Some(m) = attr.mode {
                mode = m;
            } else if (attr.uid.is_some() || attr.gid.is_some()) && !is_dir {
                mode &= !0o4000;
                if mode & 0o010 != 0 {
                    mode &= !0o2000;
                }
            }
            a.mode = Some(mode);
            a.uid = attr.uid.or(a.uid);
            a.gid = attr.gid.or(a.gid);
            a.mtime = attr.mtime.map(|t| (t.secs, t.nanos)).or(a.mtime);
        }
        Step::Fallocate(p, off, len, keep_size) => {
            walk(model, p)?;
            match model.get_mut(p) {
                Some(Node::Dir) => return Err(Kind::IsADirectory),
                Some(Node::File(d)) => {
                    if *len == 0 {
                        return Err(Kind::InvalidArgument);
                    }
                    let end = (off + len) as usize;
                    if !keep_size && d.len() < end {
                        d.resize(end, 0);
                    }
                }
                _ => return Err(Kind::NotARegularFile),
            }
            model.touch(p);
        }
        Step::Read(p, _, _) => {
            walk(model, p)?;
            if !matches!(model.get(p), Some(Node::File(_))) {
                return Err(Kind::NotARegularFile);
            }
        }
        Step::Fsync(p) | Step::Fdatasync(p) => walk(model, p)?,
        Step::Sync | Step::Remount => {}
    }
    Ok(())
}

/// The bytes a read of `len` at `off` of file `p` returns: short at the end, none past it.
fn model_read(model: &Model, p: &str, off: u64, len: usize) -> Vec<u8> {
    match model.get(p) {
        Some(Node::File(d)) => {
            let start = (off as usize).min(d.len());
            let end = start.saturating_add(len).min(d.len());
            d[start..end].to_vec()
        }
        _ => Vec::new(),
    }
}

/// Runs `step` on the mount; a read returns the bytes it read, everything else nothing.
fn run(fs: &mut RwFs<PsyncDevice>, step: &Step) -> Result<Vec<u8>, RwError> {
    if let Step::Read(p, off, len) = step {
        // Not zeros, so that a hole must be written by the read.
        let mut buf = vec![0xA5u8; *len];
        let n = fs.read(p, *off, &mut buf)?;
        buf.truncate(n);
        return Ok(buf);
    }
    match step {
        Step::Create(p) => fs.create(p, 0o644).map(drop),
        Step::Mkdir(p) => fs.mkdir(p, 0o755).map(drop),
        Step::Symlink(p, t) => fs.symlink(p, t).map(drop),
        Step::Write(p, off, data) => fs.write(p, *off, data),
        Step::Truncate(p, size) => fs.truncate(p, *size),
        Step::Unlink(p) => fs.unlink(p),
        Step::Rmdir(p) => fs.rmdir(p),
        Step::Rename(a, b) => fs.rename(a, b),
        Step::Link(a, b) => fs.link(a, b),
        Step::SetAttr(p, a) => fs.set_attr(p, a),
        Step::Fallocate(p, o, l, k) => fs.fallocate(p, *o, *l, *k),
        Step::Fsync(p) => fs.fsync(p),
        Step::Fdatasync(p) => fs.fdatasync(p),
        Step::Sync => fs.sync(),
        Step::Read(..) | Step::Remount => Ok(()),
    }
    .map(|()| Vec::new())
}

/// The mount's own view of `p` agrees with the model (existence, type, size).
fn lookup_agrees(fs: &mut RwFs<PsyncDevice>, model: &Model, p: &str, what: &str) {
    let ino = match (walk(model, p), fs.lookup(p)) {
        (Err(Kind::NotADirectory), Err(_)) => return,
        (Err(Kind::NotADirectory), Ok(got)) => {
            panic!("{what}: lookup {p} through a non-directory: {got:?}")
        }
        (_, Ok(ino)) => ino,
        (_, Err(e)) => panic!("{what}: lookup {p}: {e}"),
    };
    match (model.get(p), ino) {
        (None, None) => {}
        (Some(node), Some(ino)) => {
            let inode = fs.inode(ino).unwrap();
            match node {
                Node::Dir => assert!(inode.is_dir(), "{what}: {p} is not a directory"),
                Node::Link(t) => {
                    assert!(inode.is_symlink(), "{what}: {p} is not a symlink");
                    assert_eq!(inode.size_bytes, t.len() as u64, "{what}: {p}: link size");
                }
                Node::File(d) => {
                    assert!(inode.is_regular(), "{what}: {p} is not a file");
                    assert_eq!(inode.size_bytes, d.len() as u64, "{what}: {p}: size");
                    let links = model.links(model.ns[p]);
                    assert_eq!(u64::from(inode.links_count), links, "{what}: {p}: links");
                }
            }
            let got = Attrs {
                mode: Some(inode.mode & 0o7777),
                uid: Some(inode.uid),
                gid: Some(inode.gid),
                mtime: Some((inode.mtime.secs, inode.mtime.nanos)),
            };
            let want = model.inodes[&model.ns[p]].attrs;
            assert_eq!(masked(got, want), want, "{what}: {p}: attributes");
        }
        (want, got) => panic!("{what}: lookup {p}: model {want:?}, mount {got:?}"),
    }
}

/// One walked entry: node, link count, attributes, and the first path (in order) naming the
/// same inode (so hard links must name one inode).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    node: Node,
    links: u64,
    attrs: Attrs,
    first: String,
}

type Tree = BTreeMap<String, Entry>;

/// `got` with the fields the model does not know (`None` in `want`) dropped.
fn masked(got: Attrs, want: Attrs) -> Attrs {
    Attrs {
        mode: want.mode.and(got.mode),
        uid: want.uid.and(got.uid),
        gid: want.gid.and(got.gid),
        mtime: want.mtime.and(got.mtime),
    }
}

/// A walk's (node, links, attributes, inode number) per path -> [`Tree`].
fn tree(walked: BTreeMap<String, (Node, u64, Attrs, u64)>) -> Tree {
    let mut first: BTreeMap<u64, String> = BTreeMap::new();
    for (k, (_, _, _, ino)) in &walked {
        first.entry(*ino).or_insert_with(|| k.clone());
    }
    walked
        .into_iter()
        .map(|(k, (node, links, attrs, ino))| {
            let first = first[&ino].clone();
            (
                k,
                Entry {
                    node,
                    links,
                    attrs,
                    first,
                },
            )
        })
        .collect()
}

/// Model -> entry per path, the root (`/`, with `lost+found`) included.
fn expected(model: &Model) -> Tree {
    let mut out = BTreeMap::new();
    let subdirs = |p: &str| {
        model
            .iter()
            .filter(|(k, n)| **n == Node::Dir && parent_of(k) == p)
            .count() as u64
    };
    out.insert(
        "/".to_string(),
        (Node::Dir, 3 + subdirs(""), Attrs::default(), 0),
    );
    for (k, id) in &model.ns {
        let i = &model.inodes[id];
        let links = if i.node == Node::Dir {
            2 + subdirs(k)
        } else {
            model.links(*id)
        };
        out.insert(k.clone(), (i.node.clone(), links, i.attrs, u64::from(*id)));
    }
    tree(out)
}

fn compare(model: &Model, got: &Tree, who: &str, what: &str) {
    let want = expected(model);
    let got: Tree = got
        .iter()
        .map(|(k, e)| {
            let mut e = e.clone();
            if let Some(w) = want.get(k) {
                e.attrs = masked(e.attrs, w.attrs);
            }
            (k.clone(), e)
        })
        .collect();
    if want == got {
        return;
    }
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    let differ: Vec<String> = want
        .iter()
        .filter_map(|(k, w)| {
            let g = got.get(k)?;
            let size = |n: &Node| match n {
                Node::File(d) => format!("file {} bytes", d.len()),
                Node::Link(t) => format!("link {}", String::from_utf8_lossy(t)),
                Node::Dir => "dir".into(),
            };
            (g != w).then(|| {
                let at = match (&w.node, &g.node) {
                    (Node::File(a), Node::File(b)) => a
                        .iter()
                        .zip(b)
                        .position(|(x, y)| x != y)
                        .map(|i| format!(", first differing byte {i}"))
                        .unwrap_or_default(),
                    _ => String::new(),
                };
                format!(
                    "{k}: want {} links {} {:?} inode of {}, got {} links {} {:?} inode of {}{at}",
                    size(&w.node),
                    w.links,
                    w.attrs,
                    w.first,
                    size(&g.node),
                    g.links,
                    g.attrs,
                    g.first
                )
            })
        })
        .collect();
    panic!("{who} after {what}: missing {missing:?}, extra {extra:?}, differ {differ:#?}");
}

/// A fresh read-only mount's walk.
fn read_ours(image: &Path) -> Tree {
    let device = PsyncDevice::open(image, PsyncConfig::default()).unwrap();
    let fs = Fs::mount(device, MountOptions::default()).unwrap();
    let mut io = fs.io().unwrap();
    let mut out = BTreeMap::new();
    let root = fs.stat(&mut io, ROOT_INO).unwrap();
    let attrs = |st: &aios_fs::Stat| Attrs {
        mode: Some(st.mode & 0o7777),
        uid: Some(st.uid),
        gid: Some(st.gid),
        mtime: Some((st.mtime.secs, st.mtime.nanos)),
    };
    out.insert(
        "/".to_string(),
        (
            Node::Dir,
            u64::from(root.nlink),
            attrs(&root),
            u64::from(ROOT_INO),
        ),
    );
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
            out.insert(
                child,
                (node, u64::from(st.nlink), attrs(&st), u64::from(e.ino)),
            );
        }
    }
    tree(out)
}

static KERNEL_CHECKS: AtomicUsize = AtomicUsize::new(0);
static KERNEL_SKIPS: AtomicUsize = AtomicUsize::new(0);

/// The kernel's walk of a read-only loop mount, or `None` (said loudly) when it cannot mount.
fn read_kernel(image: &Path) -> Option<Tree> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        if KERNEL_SKIPS.fetch_add(1, Ordering::Relaxed) == 0 {
            eprintln!("SKIPPED rw_prop (kernel part): needs root to loop-mount");
        }
        return None;
    }
    let mnt = tempfile::tempdir().unwrap();
    let out = Command::new("mount")
        .args(["-o", "loop,ro"])
        .arg(image)
        .arg(mnt.path())
        .output()
        .unwrap();
    if !out.status.success() {
        KERNEL_SKIPS.fetch_add(1, Ordering::Relaxed);
        eprintln!(
            "SKIPPED rw_prop (kernel part): loop mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let root = mnt.path().to_path_buf();
    let walked = std::panic::catch_unwind(|| {
        let mut out = BTreeMap::new();
        let attrs = |m: &std::fs::Metadata| Attrs {
            mode: Some((m.mode() & 0o7777) as u16),
            uid: Some(m.uid()),
            gid: Some(m.gid()),
            mtime: Some((m.mtime(), m.mtime_nsec() as u32)),
        };
        let meta = std::fs::symlink_metadata(&root).unwrap();
        out.insert(
            "/".to_string(),
            (Node::Dir, meta.nlink(), attrs(&meta), meta.ino()),
        );
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let rel = format!("/{}", p.strip_prefix(&root).unwrap().to_string_lossy());
                if rel == "/lost+found" {
                    continue;
                }
                let meta = std::fs::symlink_metadata(&p).unwrap();
                let node = if meta.file_type().is_symlink() {
                    let t = std::fs::read_link(&p).unwrap();
                    assert_eq!(meta.len(), t.as_os_str().len() as u64, "{rel}: link size");
                    Node::Link(t.as_os_str().as_bytes().to_vec())
                } else if meta.is_dir() {
                    stack.push(p.clone());
                    Node::Dir
                } else {
                    assert!(meta.is_file(), "{rel}: {meta:?}");
                    let bytes = std::fs::read(&p).unwrap();
                    assert_eq!(meta.len(), bytes.len() as u64, "{rel}: size vs read");
                    Node::File(bytes)
                };
                out.insert(rel, (node, meta.nlink(), attrs(&meta), meta.ino()));
            }
        }
        tree(out)
    });
    let umount = Command::new("umount").arg(mnt.path()).output().unwrap();
    assert!(umount.status.success(), "umount: {umount:?}");
    let tree = walked.unwrap_or_else(|e| std::panic::resume_unwind(e));
    KERNEL_CHECKS.fetch_add(1, Ordering::Relaxed);
    Some(tree)
}

/// The image (cleanly unmounted) against the model: e2fsck, our read-only mount, the kernel.
fn check_image(image: &Path, model: &Model, what: &str) {
    common::assert_fsck_clean(image, what);
    compare(model, &read_ours(image), "our read-only mount", what);
    if let Some(tree) = read_kernel(image) {
        compare(model, &tree, "the kernel", what);
    }
}

/// The mount options of a case: from its length, so that shrinking keeps them (about one
/// case in five with `-o sync`).
fn case_options(ops: &[Op]) -> RwOptions {
    let n = ops.len();
    RwOptions {
        order: if n.is_multiple_of(2) {
            CommitOrder::Async
        } else {
            CommitOrder::Sync
        },
        data: if (n / 2).is_multiple_of(2) {
            DataMode::Ordered
        } else {
            DataMode::Journal
        },
        sync: n.is_multiple_of(5),
        commit_interval: None,
        ..RwOptions::default()
    }
}

fn options_name(o: &RwOptions) -> String {
    format!("order {:?}, data {:?}, sync {}", o.order, o.data, o.sync)
}

fn mount_rw(image: &Path, options: RwOptions, what: &str) -> RwFs<PsyncDevice> {
    let device = PsyncDevice::open(image, PsyncConfig::default()).unwrap();
    let fs = RwFs::mount(device, options).unwrap_or_else(|e| panic!("{what}: mount: {e}"));
    assert!(
        fs.replayed().is_none_or(|r| !r.needed),
        "{what}: a cleanly unmounted image needed recovery: {:?}",
        fs.replayed()
    );
    fs
}

fn unmount(fs: RwFs<PsyncDevice>, tally: &mut Tally, what: &str) {
    tally.commits += fs.stats().commits;
    tally.checkpoints += fs.stats().checkpoints;
    tally.syncs += fs.stats().syncs;
    tally.data_syncs += fs.stats().data_syncs;
    let (_, r) = fs.unmount();
    r.unwrap_or_else(|e| panic!("{what}: unmount: {e}"));
}

/// Counts of one case, summed over the run.
#[derive(Debug, Default)]
struct Tally {
    ok: BTreeMap<&'static str, usize>,
    read_bytes: u64,
    syncs: u64,
    data_syncs: u64,
    options: BTreeMap<String, usize>,
    failed: BTreeMap<String, usize>,
    remounts: usize,
    checks: usize,
    commits: u64,
    checkpoints: u64,
}

fn run_case(ops: &[Op], tally: &mut Tally) {
    let options = case_options(ops);
    let order = options_name(&options);
    *tally.options.entry(order.clone()).or_default() += 1;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let image = common::mke2fs_32m(dir.path(), "img", &[]);
    let uni = universe();
    let mut model = Model::new();
    let mut log: Vec<String> = Vec::new();
    let mut last_write: Option<String> = None;
    let mut fs = mount_rw(&image, options, "first mount");
    for (i, op) in ops.iter().enumerate() {
        let step = resolve(&model, &uni, op, i as u64 + 1, last_write.as_deref());
        if let Step::Write(p, _, _) = &step {
            last_write = Some(p.clone());
        }
        log.push(format!("{i}: {step}"));
        let what = || format!("{order}, ops:\n{}", log.join("\n"));
        if let Step::Remount = step {
            unmount(fs, tally, &what());
            check_image(&image, &model, &what());
            tally.remounts += 1;
            tally.checks += 1;
            fs = mount_rw(&image, options, &what());
            continue;
        }
        let mut after = model.clone();
        let want = expect(&mut after, &step);
        let before = fs.stats().commits;
        let got = run(&mut fs, &step);
        match (&want, &got) {
            (Ok(()), Ok(bytes)) => {
                if let Step::Read(p, off, len) = &step {
                    let model_bytes = model_read(&model, p, *off, *len);
                    if *bytes != model_bytes {
                        let at = bytes.iter().zip(&model_bytes).position(|(a, b)| a != b);
                        panic!(
                            "{}: read returned {} bytes, the model {} (first differing byte {at:?})",
                            what(),
                            bytes.len(),
                            model_bytes.len()
                        );
                    }
                    tally.read_bytes += bytes.len() as u64;
                }
                *tally.ok.entry(step.name()).or_default() += 1;
                model = after;
            }
            (Err(k), Err(e)) => {
                let kind = kind_of(e);
                assert_eq!(kind, *k, "{}: {e}", what());
                assert!(!fs.is_read_only(), "{}: read-only after {e}", what());
                assert_eq!(
                    fs.stats().commits,
                    before,
                    "{}: a failed operation committed a transaction",
                    what()
                );
                *tally.failed.entry(format!("{k:?}")).or_default() += 1;
            }
            _ => panic!("{}: model says {want:?}, RwFs says {got:?}", what()),
        }
        match &step {
            Step::Rename(a, b) => {
                lookup_agrees(&mut fs, &model, a, &what());
                lookup_agrees(&mut fs, &model, b, &what());
            }
            Step::Create(p)
            | Step::Mkdir(p)
            | Step::Symlink(p, _)
            | Step::Write(p, _, _)
            | Step::Truncate(p, _)
            | Step::Unlink(p)
            | Step::Rmdir(p)
            | Step::SetAttr(p, _)
            | Step::Fallocate(p, _, _, _)
            | Step::Read(p, _, _)
            | Step::Fsync(p)
            | Step::Fdatasync(p) => lookup_agrees(&mut fs, &model, p, &what()),
            Step::Link(a, b) => {
                lookup_agrees(&mut fs, &model, a, &what());
                lookup_agrees(&mut fs, &model, b, &what());
            }
            Step::Sync | Step::Remount => {}
        }
    }
    let what = format!("{order}, end of case, ops:\n{}", log.join("\n"));
    unmount(fs, tally, &what);
    check_image(&image, &model, &what);
    tally.checks += 1;
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn random_namespace_and_data_operations_with_remounts_match_the_model() {
    let name = "random_namespace_and_data_operations_with_remounts_match_the_model";
    if !have_mke2fs(name) {
        return;
    }
    let seed = env_u64("AIOS_RWPROP_SEED").unwrap_or(0x4a10_5e4d);
    let cases = env_u64("AIOS_RWPROP_CASES").map_or(96, |c| c as u32);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases,
            failure_persistence: None,
            max_shrink_iters: 300,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let started = std::time::Instant::now();
    let tally = std::cell::RefCell::new(Tally::default());
    let n = std::cell::Cell::new(0u64);
    let result = runner.run(&proptest::collection::vec(op(), 30..80), |ops| {
        n.set(n.get() + 1);
        run_case(&ops, &mut tally.borrow_mut());
        Ok(())
    });
    let (tally, n) = (tally.into_inner(), n.get());
    eprintln!(
        "{name}: seed {seed:#x}, {n} cases run (incl. shrinking), options {:?}, ok {:?} ({} bytes \
         read), failed as expected {:?}, {} remounts, {} commits ({} checkpointing), {} syncs \
         ({} data-only), {} image checks, {} by the kernel ({} kernel skips), {:.1?}",
        tally.options,
        tally.ok,
        tally.read_bytes,
        tally.failed,
        tally.remounts,
        tally.commits,
        tally.checkpoints,
        tally.syncs,
        tally.data_syncs,
        tally.checks,
        KERNEL_CHECKS.load(Ordering::Relaxed),
        KERNEL_SKIPS.load(Ordering::Relaxed),
        started.elapsed()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Regression: with a file as `from`'s parent and a missing `to` parent, `rename` reported the
/// missing `to` parent (ENOENT); rename(2) resolves `from`'s parent first (ENOTDIR).
#[test]
fn rename_checks_the_source_parent_before_the_destination_parent() {
    if !have_mke2fs("rename_checks_the_source_parent_before_the_destination_parent") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = common::mke2fs_32m(dir.path(), "img", &[]);
    let options = RwOptions {
        commit_interval: None,
        ..RwOptions::default()
    };
    let mut fs = mount_rw(&image, options, "rename order");
    fs.create("/c", 0o644).unwrap();
    let e = fs.rename("/c/a", "/d/a/a").unwrap_err();
    assert_eq!(kind_of(&e), Kind::NotADirectory, "{e}");
    let (_, unmounted) = fs.unmount();
    unmounted.unwrap();
}
