//! The actions of a concurrent worker, chosen by a seeded generator so that each one must
//! succeed on the thread's model (the directory is the thread's alone).
//!
//! # Vocabulary
//! Every op of [`Op`] by path, a read through the mount, and open files: open an existing
//! file, write, read, `fsync`/`fdatasync` and close by handle. A handle names an inode: when
//! its last name goes (unlink, or a rename over it) the file lives on as an orphan, written
//! and read by handle, invisible in the namespace until the last close frees it. And reads of
//! files in *another* thread's directory while that thread writes, truncates, renames and
//! unlinks them (`CrossRead`): the model cannot predict those bytes, but every record must be
//! zeros or a tag of that thread's naming its own offset (no freed, reused or torn block).
//!
//! # Shapes
//! Writes and sizes are whole 32-byte tag records (a record half of one write and half of
//! another would read as torn); files stay below [`FILE_BYTES_MAX`], so no write is split
//! into pieces; names come from a small pool (`n0`.. at the root and in `d0`..), so ops
//! collide on names often.

use crate::model::{Model, Node, Op, RECORD_BYTES};
use crate::states::splitmix;

/// A file never grows past this (tags and the model stay small; no write is split in pieces).
pub const FILE_BYTES_MAX: u64 = 96 * 1024;
/// The largest single write.
pub const WRITE_BYTES_MAX: u64 = 16 * 1024;
/// Names a directory level may hold (`n0`..), and directories at the thread's root (`d0`..).
const NAMES_PER_DIR: u64 = 10;
const DIRS_MAX: u64 = 3;

/// Bytes of one tag record: writes and sizes are multiples of it.
pub const REC: u64 = RECORD_BYTES as u64;

pub(super) fn align(bytes: u64) -> u64 {
    bytes - bytes % REC
}

pub struct Rng(pub u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = splitmix(self.0);
        self.0
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> Option<&'a T> {
        v.get(self.below(v.len() as u64) as usize)
    }
}

/// One action: an op of the vocabulary, or a read of a file through the mount.
pub enum Action {
    Op(Op),
    Read(String),
    /// Open the file at this path (nothing changes on disk).
    Open(String),
    /// Write `len` bytes at `offset` through open handle `slot`.
    HandleWrite {
        slot: usize,
        offset: u64,
        len: u64,
    },
    /// Read the whole file through handle `slot`.
    HandleRead(usize),
    /// `fsync` (`data`: `fdatasync`) through handle `slot`.
    HandleSync {
        slot: usize,
        data: bool,
    },
    Close(usize),
    /// Read `path` in another thread's directory (chosen by the worker) while that thread
    /// changes it: by path, or through a handle opened for the read.
    CrossRead {
        path: String,
        by_handle: bool,
    },
}

/// Paths of the model by kind.
pub(super) fn paths(m: &Model, want: fn(&Node) -> bool) -> Vec<String> {
    m.ns.iter()
        .filter(|(_, id)| m.inodes.get(id).is_some_and(want))
        .map(|(p, _)| p.clone())
        .collect()
}

pub(super) fn file_len(m: &Model, p: &str) -> u64 {
    match m.get(p) {
        Some(Node::File(d)) => d.len() as u64,
        _ => 0,
    }
}

/// A name not in use at the root or in an existing directory.
pub(super) fn free_name(m: &Model, rng: &mut Rng) -> Option<String> {
    let mut parents = vec![String::new()];
    parents.extend(paths(m, |n| matches!(n, Node::Dir)));
    let parent = rng.pick(&parents)?.clone();
    let p = format!("{parent}/n{}", rng.below(NAMES_PER_DIR));
    (!m.ns.contains_key(&p)).then_some(p)
}

/// Ops chosen by weight (out of the sum); reads are `read`.
const WEIGHTS: [(&str, u64); 22] = [
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
    ("open", 3),
    ("hwrite", 5),
    ("hread", 2),
    ("hsync", 3),
    ("close", 3),
    ("xread", 6),
];

/// Files a thread holds open at once.
pub const HANDLES_MAX: usize = 3;

/// An action that must succeed on `m`; `generation` tags a write's bytes.
pub fn next_action(m: &Model, open: &[u64], rng: &mut Rng, generation: u32) -> Action {
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
        if let Some(a) = try_action(word, m, open, rng, generation) {
            return a;
        }
    }
    Action::Op(Op::Fsync("/".into()))
}

fn try_action(
    word: &str,
    m: &Model,
    open: &[u64],
    rng: &mut Rng,
    generation: u32,
) -> Option<Action> {
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
        "open" if open.len() < HANDLES_MAX => return Some(Action::Open(rng.pick(&files)?.clone())),
        "hwrite" => {
            let slot = rng.below(open.len() as u64) as usize;
            let size = *open.get(slot)?;
            let len = align(1 + rng.below(8192)).max(REC);
            // Half of the writes append, the others land anywhere up to the end.
            let offset = if rng.below(2) == 0 {
                align(size)
            } else {
                align(rng.below(size + 1))
            };
            (offset + len <= FILE_BYTES_MAX).then_some(())?;
            return Some(Action::HandleWrite { slot, offset, len });
        }
        "hread" if !open.is_empty() => {
            return Some(Action::HandleRead(rng.below(open.len() as u64) as usize))
        }
        "hsync" if !open.is_empty() => {
            let slot = rng.below(open.len() as u64) as usize;
            return Some(Action::HandleSync {
                slot,
                data: rng.below(2) == 0,
            });
        }
        "close" if !open.is_empty() => {
            return Some(Action::Close(rng.below(open.len() as u64) as usize))
        }
        "xread" => {
            // A name the other thread may use; it may be missing, a directory or a symlink.
            let name = format!("n{}", rng.below(NAMES_PER_DIR));
            let path = match rng.below(DIRS_MAX + 1) {
                0 => format!("/{name}"),
                d => format!("/d{}/{name}", d - 1),
            };
            return Some(Action::CrossRead {
                path,
                by_handle: rng.below(2) == 0,
            });
        }
        _ => return None,
    };
    Some(Action::Op(op))
}

/// A rename that must succeed: a non-directory to a free name or over another non-directory
/// (never one of its own hard links), or a directory to a free directory name.
pub(super) fn rename(m: &Model, rng: &mut Rng, dirs: &[String]) -> Option<Op> {
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
