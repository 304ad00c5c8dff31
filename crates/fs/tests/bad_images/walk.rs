//! The full walk every image gets, as "our check": from the root, every directory listed,
//! every entry looked up by path (through htree indexes) and stat'ed, every symlink read and
//! followed, every regular file read whole with `read_at` and through the page cache. Each step
//! is keyed by what it did and where, so a corrupted image's walk can be compared step by step
//! with the clean one: an `Ok` step must give the clean value (when the comparison is strict), an
//! error must be typed (every `FsError` is; its kind is counted).

use std::collections::BTreeMap;

use aios_device::Device;
use aios_fs::{Fs, FsError, IoCtx, Stat, ROOT_INO};

/// A file is read at most this far (a corrupt size must not make the walk allocate it).
const READ_MAX_BYTES: u64 = 1 << 20;
const CHUNK_BYTES: usize = 64 << 10;
/// Directories walked at most.
const DIRS_MAX: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Ino(u32),
    Stat(Stat),
    Names(Vec<(Vec<u8>, u32, u8)>),
    Bytes(Vec<u8>),
}

/// Step key -> result; errors as their kind.
pub type Walk = BTreeMap<String, Result<Value, String>>;

/// A short name for an error: the chain of enum variants in its `Debug` form, e.g.
/// `Fs/Format/ChecksumMismatch` (no allocation-heavy `Display` per error: there are thousands).
pub fn kind(err: &dyn std::fmt::Debug) -> String {
    let text = format!("{err:?}");
    let mut out: Vec<&str> = Vec::new();
    let bytes = text.as_bytes();
    let mut start = None;
    for (i, &c) in bytes.iter().enumerate() {
        let ident = c.is_ascii_alphanumeric() || c == b'_';
        match (start, ident) {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                let word = &text[s..i];
                let opens = c == b'(' || (c == b' ' && bytes.get(i + 1) == Some(&b'{'));
                let unit = c == b')' || c == b',';
                if (opens || unit) && word.starts_with(|ch: char| ch.is_ascii_uppercase()) {
                    out.push(word);
                    if unit {
                        break;
                    }
                }
                start = None;
            }
            _ => {}
        }
        if out.len() == 3 {
            break;
        }
    }
    if out.is_empty() && start.is_some_and(|s| text[s..].starts_with(char::is_uppercase)) {
        out.push(&text[start.unwrap_or(0)..]);
    }
    if out.is_empty() {
        text.split(|c: char| !c.is_ascii_alphanumeric())
            .next()
            .unwrap_or("?")
            .to_string()
    } else {
        out.join("/")
    }
}

fn put<T>(walk: &mut Walk, key: String, r: Result<T, FsError>, f: impl FnOnce(T) -> Value) {
    walk.insert(key, r.map(f).map_err(|e| kind(&e)));
}

/// Times zeroed: the operations stamp the wall clock.
pub fn mask_times(mut s: Stat) -> Stat {
    let zero = aios_ext4::format::inode::Timestamp::default();
    s.atime = zero;
    s.mtime = zero;
    s.ctime = zero;
    s.crtime = s.crtime.map(|_| zero);
    s
}

fn read_file<D: Device>(
    fs: &Fs<D>,
    io: &mut IoCtx<D::Queue>,
    ino: u32,
) -> Result<Vec<u8>, FsError> {
    let file = fs.open(io, ino)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; CHUNK_BYTES];
    while (out.len() as u64) < READ_MAX_BYTES {
        let n = fs.read_at(io, &file, out.len() as u64, &mut buf)?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    // The cached read of the same range must agree with `read_at`.
    let mut cached = vec![0u8; out.len()];
    let mut at = 0;
    while at < out.len() {
        let n = fs.read(io, &file, at as u64, &mut cached[at..])?;
        if n == 0 {
            break;
        }
        at += n;
    }
    assert!(
        cached[..at] == out[..at],
        "inode {ino}: read_at and the cached read disagree"
    );
    Ok(out)
}

/// Walks `fs` (see the module documentation); `masked`: stat times zeroed.
pub fn walk<D: Device>(fs: &Fs<D>, masked: bool) -> Walk {
    let mut w = Walk::new();
    let mut io = match fs.io() {
        Ok(io) => io,
        Err(e) => {
            w.insert("io".into(), Err(kind(&e)));
            return w;
        }
    };
    let stat_of = |s: Stat| Value::Stat(if masked { mask_times(s) } else { s });
    put(&mut w, "stat:/".into(), fs.stat(&mut io, ROOT_INO), stat_of);
    let mut dirs = vec![(String::new(), ROOT_INO)];
    // A corrupt tree may link a directory under itself: each directory inode is walked once.
    let mut seen = std::collections::BTreeSet::from([ROOT_INO]);
    let mut walked = 0;
    while let Some((path, ino)) = dirs.pop() {
        walked += 1;
        if walked > DIRS_MAX {
            w.insert("dirs".into(), Err("TooManyDirectories".into()));
            break;
        }
        let entries = match fs.read_dir(&mut io, ino) {
            Ok(e) => e,
            Err(e) => {
                w.insert(format!("dir:{path}/"), Err(kind(&e)));
                continue;
            }
        };
        let names = entries
            .iter()
            .map(|e| (e.name.clone(), e.ino, e.file_type))
            .collect();
        w.insert(format!("dir:{path}/"), Ok(Value::Names(names)));
        for e in entries {
            if e.name == b"." || e.name == b".." {
                continue;
            }
            let child = format!("{path}/{}", String::from_utf8_lossy(&e.name));
            put(
                &mut w,
                format!("lookup:{child}"),
                fs.lookup(&mut io, &child),
                Value::Ino,
            );
            let stat = fs.stat(&mut io, e.ino);
            let mode = stat.as_ref().map(|s| s.mode & 0o170000).unwrap_or(0);
            put(&mut w, format!("stat:{child}"), stat, stat_of);
            match mode {
                0o040000 if seen.insert(e.ino) => dirs.push((child, e.ino)),
                0o120000 => {
                    let link = fs.read_link(&mut io, e.ino);
                    put(&mut w, format!("link:{child}"), link, Value::Bytes);
                    let follow = fs.lookup_follow(&mut io, &child);
                    put(&mut w, format!("follow:{child}"), follow, Value::Ino);
                }
                0o100000 => {
                    let data = read_file(fs, &mut io, e.ino);
                    put(&mut w, format!("data:{child}"), data, Value::Bytes);
                }
                _ => {}
            }
        }
    }
    w
}

/// How a walk compares with the clean one.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Compared {
    /// Steps that gave the clean value.
    pub same: usize,
    /// Steps that gave a typed error.
    pub errors: usize,
    /// `Ok` steps with another value than the clean walk's (or absent from it).
    pub differ: usize,
}

/// Compares `got` with `clean`; the first differing step is returned for the report.
pub fn compare(got: &Walk, clean: &Walk) -> (Compared, Option<String>) {
    let mut c = Compared::default();
    let mut first = None;
    for (key, r) in got {
        match (r, clean.get(key)) {
            (Err(_), _) => c.errors += 1,
            (Ok(v), Some(Ok(w))) if v == w => c.same += 1,
            (Ok(v), want) => {
                c.differ += 1;
                if first.is_none() {
                    let v = format!("{v:?}");
                    let want = format!("{want:?}");
                    first = Some(format!(
                        "{key}: Ok({}) instead of {}",
                        v.get(..200).unwrap_or(&v),
                        want.get(..200).unwrap_or(&want)
                    ));
                }
            }
        }
    }
    (c, first)
}

/// The error kinds of a walk, for the tally.
pub fn error_kinds(w: &Walk) -> impl Iterator<Item = &String> {
    w.values().filter_map(|r| r.as_ref().err())
}
