//! The crash harness's model: the namespace and file contents a workload should leave, the
//! operations of the workload vocabulary, and the data tags.
//!
//! # Role
//! [`Model`] is what the file system should look like after a prefix of operations: path ->
//! model inode id -> [`Node`]. [`Op`] is one operation with its paths and bytes fixed;
//! [`Model::apply`] runs it on the model and returns its [`Effect`] (which inodes it touched
//! and remapped), from which the checker derives what a later `fsync`/`fdatasync` makes
//! durable.
//!
//! # Tags
//! Every byte a workload writes belongs to a 32-byte *record* aligned in the file: magic,
//! model inode id, write generation, file offset of the record, and a check over those
//! ([`tag_record`]). A record read back that is not all zeros must decode to a tag naming this
//! file and this offset; anything else is foreign, misplaced or torn data, and the generation
//! says which state (prepared image: 1, workload: 2) it came from.
//!
//! # Invariants
//! - The root (id 0) and `lost+found` are implicit: never in `ns`.
//! - Every id in `ns` is in `inodes`; an inode leaves `inodes` with its last name.

use std::collections::BTreeMap;

/// Bytes of one tag record.
pub const RECORD_BYTES: usize = 32;
const TAG_MAGIC: [u8; 8] = *b"AIOSTAG\x01";

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    File(Vec<u8>),
    Dir,
    Symlink(Vec<u8>),
}

impl Node {
    pub fn kind(&self) -> &'static str {
        match self {
            Node::File(_) => "a file",
            Node::Dir => "a directory",
            Node::Symlink(_) => "a symlink",
        }
    }
}

/// A decoded tag record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    pub file: u32,
    pub generation: u32,
    pub offset_bytes: u64,
}

fn tag_check(head: &[u8]) -> u64 {
    head.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The record at file offset `offset_bytes` (a multiple of [`RECORD_BYTES`]).
pub fn tag_record(tag: Tag) -> [u8; RECORD_BYTES] {
    let mut r = [0u8; RECORD_BYTES];
    r[0..8].copy_from_slice(&TAG_MAGIC);
    r[8..12].copy_from_slice(&tag.file.to_le_bytes());
    r[12..16].copy_from_slice(&tag.generation.to_le_bytes());
    r[16..24].copy_from_slice(&tag.offset_bytes.to_le_bytes());
    let check = tag_check(&r[0..24]);
    r[24..32].copy_from_slice(&check.to_le_bytes());
    r
}

/// What a record read back holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    Zero,
    Tag(Tag),
    /// Neither zeros nor a whole tag (torn or foreign bytes).
    Garbage,
}

pub fn decode_record(r: &[u8]) -> Record {
    if r.iter().all(|&b| b == 0) {
        return Record::Zero;
    }
    let field = |at: usize| r.get(at..at + 8).and_then(|s| <[u8; 8]>::try_from(s).ok());
    let (Some(magic), Some(id_gen), Some(off), Some(check)) =
        (field(0), field(8), field(16), field(24))
    else {
        return Record::Garbage;
    };
    let head = [magic, id_gen, off].concat();
    if magic != TAG_MAGIC || u64::from_le_bytes(check) != tag_check(&head) {
        return Record::Garbage;
    }
    let [a, b, c, d, e, f, g, h] = id_gen;
    Record::Tag(Tag {
        file: u32::from_le_bytes([a, b, c, d]),
        generation: u32::from_le_bytes([e, f, g, h]),
        offset_bytes: u64::from_le_bytes(off),
    })
}

/// The byte a write of generation `generation` puts at offset `at_bytes` of file `file`.
pub fn tagged_byte(file: u32, generation: u32, at_bytes: usize) -> u8 {
    let start = at_bytes - at_bytes % RECORD_BYTES;
    tag_record(Tag {
        file,
        generation,
        offset_bytes: start as u64,
    })[at_bytes - start]
}

/// The bytes a write of `len` bytes at `offset` of file `file` puts there.
pub fn tagged(file: u32, offset_bytes: u64, len: usize, generation: u32) -> Vec<u8> {
    let rec = RECORD_BYTES as u64;
    (offset_bytes..offset_bytes + len as u64)
        .map(|at| {
            let start = at - at % rec;
            let r = tag_record(Tag {
                file,
                generation,
                offset_bytes: start,
            });
            r[(at - start) as usize]
        })
        .collect()
}

/// One operation of the vocabulary, paths absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Create(String),
    Mkdir(String),
    Symlink(String, String),
    /// Write `len` tagged bytes of generation `gen` at `offset`.
    Write {
        path: String,
        offset: u64,
        len: usize,
        generation: u32,
    },
    Truncate(String, u64),
    Fallocate {
        path: String,
        offset: u64,
        len: u64,
        keep_size: bool,
    },
    Unlink(String),
    Rmdir(String),
    Rename(String, String),
    Link(String, String),
    Fsync(String),
    Fdatasync(String),
    Sync,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Create(p) => write!(f, "create {p}"),
            Op::Mkdir(p) => write!(f, "mkdir {p}"),
            Op::Symlink(p, t) => write!(f, "symlink {p} -> {t}"),
            Op::Write {
                path,
                offset,
                len,
                generation,
            } => write!(
                f,
                "write {path} at {offset}, {len} bytes (gen {generation})"
            ),
            Op::Truncate(p, s) => write!(f, "truncate {p} to {s}"),
            Op::Fallocate {
                path,
                offset,
                len,
                keep_size,
            } => write!(
                f,
                "fallocate {path} at {offset}, {len} bytes, keep {keep_size}"
            ),
            Op::Unlink(p) => write!(f, "unlink {p}"),
            Op::Rmdir(p) => write!(f, "rmdir {p}"),
            Op::Rename(a, b) => write!(f, "rename {a} -> {b}"),
            Op::Link(a, b) => write!(f, "link {a} -> {b}"),
            Op::Fsync(p) => write!(f, "fsync {p}"),
            Op::Fdatasync(p) => write!(f, "fdatasync {p}"),
            Op::Sync => write!(f, "sync"),
        }
    }
}

/// What an applied operation changed, for the durability rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effect {
    /// Inodes whose data, size, names, links or entries changed (what `fsync` covers).
    pub touched: Vec<u32>,
    /// Inodes whose size or block map changed (what `fdatasync` in `data=ordered` covers).
    pub remapped: Vec<u32>,
    /// The inode whose bytes a write changed, and the byte range.
    pub wrote: Option<(u32, u64, u64)>,
}

/// Path -> id -> node; see the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    pub ns: BTreeMap<String, u32>,
    pub inodes: BTreeMap<u32, Node>,
    next: u32,
}

pub fn parent_of(p: &str) -> &str {
    p.rsplit_once('/').map_or("", |(d, _)| d)
}

impl Model {
    /// An empty model whose inode ids start above `base`: models with different bases never
    /// share an id, so their tags never pass for each other's (one per concurrent thread).
    pub fn with_id_base(base: u32) -> Model {
        Model {
            next: base,
            ..Model::default()
        }
    }

    pub fn get(&self, p: &str) -> Option<&Node> {
        self.ns.get(p).and_then(|id| self.inodes.get(id))
    }

    /// The id of directory `p` (the root: 0).
    pub fn id(&self, p: &str) -> Option<u32> {
        if p.is_empty() {
            Some(0)
        } else {
            self.ns.get(p).copied()
        }
    }

    /// How many names `id` has (hard links).
    pub fn names_of(&self, id: u32) -> usize {
        self.ns.values().filter(|&&i| i == id).count()
    }

    /// Directories directly under `dir` ("" is the root).
    pub fn subdirs(&self, dir: &str) -> usize {
        self.ns
            .iter()
            .filter(|(k, id)| parent_of(k) == dir && matches!(self.inodes.get(id), Some(Node::Dir)))
            .count()
    }

    /// The bytes `op` writes (empty unless it is a write); `op` must apply to this model.
    pub fn data_of(&self, op: &Op) -> Vec<u8> {
        match op {
            Op::Write {
                path,
                offset,
                len,
                generation,
            } => {
                let id = self.ns.get(path).copied().unwrap_or(u32::MAX);
                tagged(id, *offset, *len, *generation)
            }
            _ => Vec::new(),
        }
    }

    fn remove(&mut self, p: &str) -> Option<u32> {
        let id = self.ns.remove(p)?;
        if self.ns.values().any(|&i| i == id) {
            Some(id)
        } else {
            self.inodes.remove(&id);
            None
        }
    }

    fn add(&mut self, p: &str, node: Node) -> u32 {
        self.next += 1;
        self.inodes.insert(self.next, node);
        self.ns.insert(p.to_string(), self.next);
        self.next
    }

    /// Whether POSIX lets `op` succeed here: the names it creates are free, the ones it
    /// uses exist with the right kind, a removed directory is empty, a directory is not
    /// renamed into itself. [`Model::apply`] refuses what this refuses, so a workload (and
    /// the random generator) holds only ops the file system must accept.
    pub fn allows(&self, op: &Op) -> bool {
        let is_dir = |p: &str| p.is_empty() || matches!(self.get(p), Some(Node::Dir));
        let free = |p: &str| !p.is_empty() && !self.ns.contains_key(p) && is_dir(parent_of(p));
        let empty = |p: &str| self.subdirs(p) == 0 && !self.ns.keys().any(|k| parent_of(k) == p);
        match op {
            Op::Create(p) | Op::Mkdir(p) | Op::Symlink(p, _) => free(p),
            Op::Write { path, .. }
            | Op::Truncate(path, _)
            | Op::Fallocate { path, .. }
            | Op::Fdatasync(path) => matches!(self.get(path), Some(Node::File(_))),
            Op::Fsync(p) => p == "/" || self.ns.contains_key(p),
            Op::Sync => true,
            Op::Unlink(p) => matches!(self.get(p), Some(Node::File(_) | Node::Symlink(_))),
            Op::Rmdir(p) => matches!(self.get(p), Some(Node::Dir)) && empty(p),
            Op::Link(a, b) => matches!(self.get(a), Some(Node::File(_))) && free(b),
            Op::Rename(a, b) => {
                let Some(from) = self.get(a) else {
                    return false;
                };
                if a == b || b.starts_with(&format!("{a}/")) || !is_dir(parent_of(b)) {
                    return false;
                }
                match (from, self.get(b)) {
                    (_, None) => true,
                    (Node::Dir, Some(Node::Dir)) => empty(b),
                    (Node::Dir, Some(_)) | (_, Some(Node::Dir)) => false,
                    // Renaming one hard link over another of the same inode is a no-op in
                    // POSIX; the model would drop a name, so the vocabulary avoids it.
                    _ => self.ns.get(a) != self.ns.get(b),
                }
            }
        }
    }

    /// Applies `op`, which succeeded on the file system. `Err` when it cannot apply here (a
    /// workload bug: the harness reports it).
    pub fn apply(&mut self, op: &Op) -> Result<Effect, String> {
        let mut e = Effect::default();
        let bad = || format!("{op}: does not apply to the model");
        if !self.allows(op) {
            return Err(format!("{op}: POSIX refuses it here"));
        }
        let parent = |m: &Model, p: &str| m.id(parent_of(p)).ok_or_else(bad);
        match op {
            Op::Create(p) | Op::Mkdir(p) | Op::Symlink(p, _) => {
                let node = match op {
                    Op::Create(_) => Node::File(Vec::new()),
                    Op::Mkdir(_) => Node::Dir,
                    Op::Symlink(_, t) => Node::Symlink(t.as_bytes().to_vec()),
                    _ => return Err(bad()),
                };
                let dir = parent(self, p)?;
                let id = self.add(p, node);
                e.touched = vec![id, dir];
                e.remapped = vec![id];
            }
            Op::Write { path, offset, .. }
            | Op::Truncate(path, offset)
            | Op::Fallocate { path, offset, .. } => {
                let data = self.data_of(op);
                let id = self.ns.get(path).copied().ok_or_else(bad)?;
                let Some(Node::File(d)) = self.inodes.get_mut(&id) else {
                    return Err(bad());
                };
                let before = d.len();
                let off = usize::try_from(*offset).map_err(|_| bad())?;
                match op {
                    Op::Write { len, .. } => {
                        let end = off + len;
                        if d.len() < end {
                            d.resize(end, 0);
                        }
                        d[off..end].copy_from_slice(&data);
                        e.wrote = Some((id, *offset, end as u64));
                    }
                    Op::Truncate(..) => d.resize(off, 0),
                    Op::Fallocate { len, keep_size, .. } => {
                        let end = off + usize::try_from(*len).map_err(|_| bad())?;
                        if !keep_size && d.len() < end {
                            d.resize(end, 0);
                        }
                    }
                    _ => return Err(bad()),
                }
                e.touched = vec![id];
                // A write into existing blocks keeps the map; anything else may change it.
                if d.len() != before || !matches!(op, Op::Write { .. }) {
                    e.remapped = vec![id];
                }
            }
            Op::Unlink(p) | Op::Rmdir(p) => {
                e.touched.push(parent(self, p)?);
                let id = self.ns.get(p).copied().ok_or_else(bad)?;
                e.touched.push(id);
                self.remove(p);
            }
            Op::Rename(from, to) => {
                let id = self.ns.get(from).copied().ok_or_else(bad)?;
                e.touched = vec![parent(self, from)?, parent(self, to)?, id];
                if let Some(old) = self.ns.get(to).copied() {
                    e.touched.push(old);
                    self.remove(to);
                }
                let prefix = format!("{from}/");
                let moved: Vec<String> = self
                    .ns
                    .keys()
                    .filter(|k| *k == from || k.starts_with(&prefix))
                    .cloned()
                    .collect();
                for k in moved {
                    if let Some(i) = self.ns.remove(&k) {
                        self.ns.insert(format!("{to}{}", &k[from.len()..]), i);
                    }
                }
            }
            Op::Link(existing, new) => {
                let id = self.ns.get(existing).copied().ok_or_else(bad)?;
                let dir = parent(self, new)?;
                self.ns.insert(new.clone(), id);
                e.touched = vec![id, dir];
            }
            Op::Fsync(_) | Op::Fdatasync(_) | Op::Sync => {}
        }
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_garbage_is_not_a_tag() {
        let t = Tag {
            file: 7,
            generation: 2,
            offset_bytes: 4096,
        };
        assert_eq!(decode_record(&tag_record(t)), Record::Tag(t));
        assert_eq!(decode_record(&[0u8; 32]), Record::Zero);
        let mut r = tag_record(t);
        r[9] ^= 1;
        assert_eq!(decode_record(&r), Record::Garbage);
        let d = tagged(3, 40, 60, 1);
        assert_eq!(d.len(), 60);
        assert_eq!(
            &d[24..56],
            &tag_record(Tag {
                file: 3,
                generation: 1,
                offset_bytes: 64
            })
        );
    }
}
