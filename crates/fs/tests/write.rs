//! The write path's mutation layer ([`aios_fs::Mutator`]) against e2fsprogs and the read path.
//!
//! Each test starts from an image `mke2fs -t ext4 -d SRC` makes (this machine's defaults:
//! `metadata_csum`, `flex_bg`, `64bit`, ...), with a directory `big/` that `e2fsck -fyD` indexes,
//! applies operations, writes the changed blocks home directly (no journal yet: data first, then
//! metadata), and checks:
//! - `e2fsck -fn` exits 0 and reports nothing (bitmaps, counts, checksums, extent trees, htree
//!   order, link counts all as e2fsck expects);
//! - `debugfs -R "rdump / OUT"` extracts exactly the tree an in-memory model holds (names, types,
//!   contents, symlink targets);
//! - a fresh read-only mount (`Fs::mount`) reads the same tree back.
//!
//! Tests skip loudly without e2fsprogs.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use aios_device_psync::{PsyncConfig, PsyncDevice};
use aios_ext4::format::inode::EXT4_INDEX_FL;
use aios_fs::{Changes, Fs, FsBlocks, FsError, IoCtx, MountOptions, Mutator, NewNode, ROOT_INO};
use common::{have_mke2fs, pattern};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Entries of `big/` before the test: enough for several leaves, so `e2fsck -D` indexes it.
const BIG_ENTRIES: usize = 300;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    File(Vec<u8>),
    Dir,
    Link(Vec<u8>),
}

/// Path (relative, no leading `/`) -> node.
type Model = BTreeMap<String, Node>;

struct Image {
    _dir: tempfile::TempDir,
    path: PathBuf,
    model: Model,
}

/// A 64 MiB image holding `big/` (indexed) and one small file.
fn make_image(big_entries: usize) -> Image {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("big")).unwrap();
    let mut model = Model::new();
    model.insert("big".into(), Node::Dir);
    for i in 0..big_entries {
        let name = format!("big/entry_{i:05}");
        std::fs::write(src.join(&name), b"x").unwrap();
        model.insert(name, Node::File(b"x".to_vec()));
    }
    std::fs::write(src.join("hello"), b"hello\n").unwrap();
    model.insert("hello".into(), Node::File(b"hello\n".to_vec()));
    let path = dir.path().join("img");
    let out = Command::new("mke2fs")
        .args(["-q", "-t", "ext4", "-F", "-b", "4096", "-d"])
        .arg(&src)
        .arg(&path)
        .arg("64M")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("e2fsck")
        .args(["-f", "-y", "-D"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0..=1)),
        "e2fsck -fyD failed"
    );
    Image {
        _dir: dir,
        path,
        model,
    }
}

/// Mounts `path` shared (the session's mount and a read-back mount coexist; the test writes
/// home only between operations) with a small arena.
fn mount(path: &Path) -> Fs<PsyncDevice> {
    let config = PsyncConfig {
        arena_bytes: PsyncConfig::default().arena_bytes,
        target: aios_device::TargetOptions {
            read_only: false,
            exclusive: false,
        },
    };
    let device = PsyncDevice::open(path, config).unwrap();
    Fs::mount(device, MountOptions::default()).unwrap()
}

/// Writes `changes` home: data blocks, then metadata blocks.
fn write_home(path: &Path, changes: &Changes) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    for (block, bytes) in &changes.data_blocks {
        f.write_all_at(bytes, block * 4096).unwrap();
    }
    for (block, bytes) in &changes.meta_blocks {
        f.write_all_at(bytes, block * 4096).unwrap();
    }
    f.sync_all().unwrap();
}

/// `e2fsck -fn` must exit 0 and print no problem.
fn fsck_clean(path: &Path, when: &str) {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let problems: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("Pass ") && !l.contains(" files (") && !l.starts_with("e2fsck "))
        .collect();
    assert!(
        out.status.code() == Some(0) && problems.is_empty(),
        "e2fsck -fn after {when}: exit {:?}\n{text}",
        out.status.code()
    );
}

/// `debugfs rdump` of the whole image must equal the model.
fn debugfs_matches(path: &Path, model: &Model) {
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump / {}", out_dir.path().display()))
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let root = out_dir.path();
    let mut found = Model::new();
    walk(root, root, &mut found);
    found.remove("lost+found");
    let expect: Model = model.clone();
    if found != expect {
        let missing: Vec<_> = expect.keys().filter(|k| !found.contains_key(*k)).collect();
        let extra: Vec<_> = found.keys().filter(|k| !expect.contains_key(*k)).collect();
        let differ: Vec<_> = expect
            .iter()
            .filter(|(k, v)| found.get(*k).is_some_and(|f| f != *v))
            .map(|(k, _)| k)
            .collect();
        panic!("debugfs rdump differs: missing {missing:?} extra {extra:?} differ {differ:?}");
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Model) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.file_type().is_symlink() {
            use std::os::unix::ffi::OsStrExt;
            let t = std::fs::read_link(&p).unwrap();
            out.insert(rel, Node::Link(t.as_os_str().as_bytes().to_vec()));
        } else if meta.is_dir() {
            if rel != "lost+found" {
                walk(root, &p, out);
            }
            out.insert(rel, Node::Dir);
        } else {
            out.insert(rel, Node::File(std::fs::read(&p).unwrap()));
        }
    }
}

/// A fresh read-only mount must read the model back (names, types, sizes, contents, links).
fn read_path_matches(path: &Path, model: &Model) {
    let fs = mount(path);
    let mut io = fs.io().unwrap();
    for (rel, node) in model {
        let ino = fs.lookup(&mut io, format!("/{rel}")).unwrap();
        match node {
            Node::Dir => {
                let mut names: Vec<String> = fs
                    .read_dir(&mut io, ino)
                    .unwrap()
                    .into_iter()
                    .map(|e| String::from_utf8(e.name).unwrap())
                    .collect();
                names.sort();
                let prefix = format!("{rel}/");
                let mut want: Vec<String> = model
                    .keys()
                    .filter_map(|k| k.strip_prefix(&prefix))
                    .filter(|k| !k.contains('/'))
                    .map(str::to_string)
                    .collect();
                want.sort();
                assert_eq!(names, want, "read_dir of {rel}");
                let subdirs = model
                    .iter()
                    .filter(|(k, v)| {
                        **v == Node::Dir
                            && k.strip_prefix(&prefix).is_some_and(|r| !r.contains('/'))
                    })
                    .count();
                assert_eq!(
                    fs.stat(&mut io, ino).unwrap().nlink as usize,
                    2 + subdirs,
                    "links of {rel}"
                );
            }
            Node::File(data) => {
                let file = fs.open(&mut io, ino).unwrap();
                assert_eq!(file.size_bytes(), data.len() as u64, "size of {rel}");
                let mut buf = vec![0u8; data.len()];
                let n = fs.read_at(&mut io, &file, 0, &mut buf).unwrap();
                assert_eq!(n, data.len());
                assert!(buf == *data, "contents of {rel}");
                let st = fs.stat(&mut io, ino).unwrap();
                assert_eq!(st.nlink, 1);
            }
            Node::Link(target) => {
                assert_eq!(&fs.read_link(&mut io, ino).unwrap(), target, "link {rel}");
            }
        }
    }
}

/// The mutator, its mount and an I/O context; ops go through `r()`.
struct Session {
    fs: Fs<PsyncDevice>,
    io: IoCtx<<PsyncDevice as aios_device::Device>::Queue>,
    m: Mutator,
}

impl Session {
    fn open(path: &Path) -> Session {
        let fs = mount(path);
        let io = fs.io().unwrap();
        let m = Mutator::new(&fs);
        Session { fs, io, m }
    }

    fn with<T>(&mut self, f: impl FnOnce(&mut Mutator, &mut FsBlocks<'_, PsyncDevice>) -> T) -> T {
        let mut r = FsBlocks {
            fs: &self.fs,
            io: &mut self.io,
        };
        f(&mut self.m, &mut r)
    }

    fn ino(&mut self, rel: &str) -> u32 {
        self.with(|m, r| m.lookup_path(r, rel.as_bytes()))
            .unwrap()
            .unwrap_or_else(|| panic!("{rel} missing"))
    }

    fn parent_and_name(&mut self, rel: &str) -> (u32, String) {
        match rel.rsplit_once('/') {
            Some((dir, name)) => (self.ino(dir), name.to_string()),
            None => (ROOT_INO, rel.to_string()),
        }
    }

    fn create(&mut self, model: &mut Model, rel: &str, node: Node) -> Result<u32, FsError> {
        let (parent, name) = self.parent_and_name(rel);
        let ino = self.with(|m, r| match &node {
            Node::File(_) => m.create(r, parent, name.as_bytes(), NewNode::File { perm: 0o644 }),
            Node::Dir => m.create(r, parent, name.as_bytes(), NewNode::Dir { perm: 0o755 }),
            Node::Link(t) => m.create(r, parent, name.as_bytes(), NewNode::Symlink { target: t }),
        })?;
        if let Node::File(data) = &node {
            if !data.is_empty() {
                self.with(|m, r| m.write(r, ino, 0, data))?;
            }
        }
        model.insert(rel.to_string(), node);
        Ok(ino)
    }

    /// Takes the changes, writes them home, checks e2fsck and (with `full`) debugfs and the
    /// read path against `model`.
    fn check(&mut self, path: &Path, model: &Model, when: &str, full: bool) -> Changes {
        let changes = self.with(|m, r| m.take_changes(r)).unwrap();
        write_home(path, &changes);
        self.m.release_pending();
        fsck_clean(path, when);
        if full {
            debugfs_matches(path, model);
            read_path_matches(path, model);
        }
        changes
    }
}

#[test]
fn operation_sequence_is_fsck_clean_and_reads_back() {
    if !have_mke2fs("operation_sequence_is_fsck_clean_and_reads_back") {
        return;
    }
    let img = make_image(BIG_ENTRIES);
    let path = img.path.clone();
    let mut model = img.model;
    let mut s = Session::open(&path);
    let free_before = s.m.superblock().free_blocks_count;

    // Nested directories and files of various sizes.
    for d in ["d1", "d1/d2", "d1/d2/d3", "many"] {
        s.create(&mut model, d, Node::Dir).unwrap();
    }
    for (i, size) in [0usize, 1, 4095, 4096, 4097, 100_000, (1 << 20) + 3]
        .into_iter()
        .enumerate()
    {
        s.create(
            &mut model,
            &format!("d1/d2/d3/f{size}"),
            Node::File(pattern(i as u64, size)),
        )
        .unwrap();
    }
    s.create(&mut model, "fast", Node::Link(b"d1/d2".to_vec()))
        .unwrap();
    let slow = "x/".repeat(60).into_bytes();
    s.create(&mut model, "slow", Node::Link(slow)).unwrap();
    assert!(matches!(
        s.create(&mut model, "fast", Node::Dir),
        Err(FsError::Exists { .. })
    ));
    s.check(&path, &model, "mkdir, files, symlinks", true);

    // Enough names to fill several linear blocks.
    for i in 0..400 {
        s.create(
            &mut model,
            &format!("many/file_with_a_longish_name_{i:04}"),
            Node::File(vec![]),
        )
        .unwrap();
    }
    let many = s.ino("many");
    let many_size = s.with(|m, r| m.inode(r, many)).unwrap().size_bytes;
    assert!(
        many_size >= 4 * 4096,
        "many/ should span blocks: {many_size}"
    );
    s.check(&path, &model, "400 creates in a linear directory", true);

    // The indexed directory: names go into the leaf dx_find picks; the index stays valid until
    // a leaf fills, then it is dropped.
    let big = s.ino("big");
    assert!(s.with(|m, r| m.inode(r, big)).unwrap().flags & EXT4_INDEX_FL != 0);
    let mut added_indexed = 0;
    let mut i = 0;
    loop {
        s.create(&mut model, &format!("big/new_{i:05}"), Node::File(vec![]))
            .unwrap();
        i += 1;
        if s.with(|m, r| m.inode(r, big)).unwrap().flags & EXT4_INDEX_FL == 0 {
            break;
        }
        added_indexed += 1;
        if added_indexed == 5 {
            s.check(&path, &model, "adds into a valid htree", false);
        }
        assert!(i < 5000, "the htree leaf never filled");
    }
    assert!(
        added_indexed >= 5,
        "only {added_indexed} names fit the htree"
    );
    for j in i..i + 50 {
        s.create(&mut model, &format!("big/new_{j:05}"), Node::File(vec![]))
            .unwrap();
    }
    s.check(&path, &model, "htree index dropped", true);

    // A file written every other block: its extent tree splits leaves and grows to depth 2.
    let frag = s.create(&mut model, "frag", Node::File(vec![])).unwrap();
    let mut frag_data = Vec::new();
    for b in 0..1400u64 {
        let chunk = pattern(1000 + b, 4096);
        s.with(|m, r| m.write(r, frag, b * 8192, &chunk)).unwrap();
        frag_data.resize((b * 8192) as usize, 0);
        frag_data.extend_from_slice(&chunk);
    }
    assert_eq!(s.with(|m, r| m.extent_depth(r, frag)).unwrap(), 2);
    model.insert("frag".into(), Node::File(frag_data.clone()));
    // Overwrite inside a mapped block and extend past EOF with a hole.
    let patch = pattern(77, 5000);
    s.with(|m, r| m.write(r, frag, 3000, &patch)).unwrap();
    frag_data[3000..8000].copy_from_slice(&patch);
    model.insert("frag".into(), Node::File(frag_data.clone()));
    s.check(&path, &model, "depth-2 extent tree", true);

    // Truncate: shrink the depth-2 file partway (partial block), then to three blocks (the tree
    // collapses into the inode), and grow a file with a hole.
    s.with(|m, r| m.truncate(r, frag, 1_000_001)).unwrap();
    frag_data.truncate(1_000_001);
    model.insert("frag".into(), Node::File(frag_data.clone()));
    s.check(&path, &model, "truncate to 1000001", true);
    s.with(|m, r| m.truncate(r, frag, 3 * 4096)).unwrap();
    frag_data.truncate(3 * 4096);
    model.insert("frag".into(), Node::File(frag_data.clone()));
    assert_eq!(s.with(|m, r| m.extent_depth(r, frag)).unwrap(), 0);
    let f1m = s.ino("d1/d2/d3/f1048579");
    s.with(|m, r| m.truncate(r, f1m, 10)).unwrap();
    s.with(|m, r| m.truncate(r, f1m, 3 << 20)).unwrap();
    let mut grown = pattern(6, 10);
    grown.resize(3 << 20, 0);
    s.with(|m, r| m.write(r, f1m, (2 << 20) + 5, b"tail"))
        .unwrap();
    grown[(2 << 20) + 5..(2 << 20) + 9].copy_from_slice(b"tail");
    model.insert("d1/d2/d3/f1048579".into(), Node::File(grown));
    s.check(&path, &model, "truncates", true);

    // Unlink and rmdir.
    for i in (0..400).step_by(3) {
        let rel = format!("many/file_with_a_longish_name_{i:04}");
        s.with(|m, r| m.unlink(r, many, rel.rsplit('/').next().unwrap().as_bytes()))
            .unwrap();
        model.remove(&rel);
    }
    let d2 = s.ino("d1/d2");
    assert!(matches!(
        s.with(|m, r| m.rmdir(r, d2, b"d3")),
        Err(FsError::NotEmpty { .. })
    ));
    let d3 = s.ino("d1/d2/d3");
    let names: Vec<String> = model
        .keys()
        .filter_map(|k| k.strip_prefix("d1/d2/d3/"))
        .map(str::to_string)
        .collect();
    for n in names {
        s.with(|m, r| m.unlink(r, d3, n.as_bytes())).unwrap();
        model.remove(&format!("d1/d2/d3/{n}"));
    }
    s.with(|m, r| m.rmdir(r, d2, b"d3")).unwrap();
    model.remove("d1/d2/d3");
    s.with(|m, r| m.unlink(r, ROOT_INO, b"frag")).unwrap();
    model.remove("frag");
    s.with(|m, r| m.unlink(r, ROOT_INO, b"slow")).unwrap();
    model.remove("slow");
    s.check(&path, &model, "unlink and rmdir", true);
    // Only the directories' blocks and the surviving names' blocks remain in use.
    let used_now = free_before - s.m.superblock().free_blocks_count;
    assert!(
        used_now < 64,
        "{used_now} blocks still in use after the deletes"
    );
}

#[test]
fn freed_blocks_are_not_reused_before_release() {
    if !have_mke2fs("freed_blocks_are_not_reused_before_release") {
        return;
    }
    let img = make_image(0);
    let path = img.path.clone();
    let mut model = img.model;
    let mut s = Session::open(&path);
    let a = s
        .create(&mut model, "a", Node::File(pattern(1, 64 * 4096)))
        .unwrap();
    s.check(&path, &model, "write a", false);
    let freed: Vec<u64> = {
        let fs = mount(&path);
        let mut io = fs.io().unwrap();
        let file = fs.open(&mut io, a).unwrap();
        file.extents()
            .mappings()
            .iter()
            .flat_map(|m| m.physical_block..m.physical_block + u64::from(m.len_blocks))
            .collect()
    };
    assert_eq!(freed.len(), 64);
    s.with(|m, r| m.unlink(r, ROOT_INO, b"a")).unwrap();
    model.remove("a");
    assert_eq!(s.m.pending_free_blocks(), 64);
    // Same goal (same flex group): without the pending set these blocks would come back first.
    let b = s
        .create(&mut model, "b", Node::File(pattern(2, 64 * 4096)))
        .unwrap();
    let b_blocks = mapped_blocks(&mut s, b);
    assert!(
        b_blocks.iter().all(|x| !freed.contains(x)),
        "pending-free blocks reused before release_pending"
    );
    let changes = s.with(|m, r| m.take_changes(r)).unwrap();
    write_home(&path, &changes);
    fsck_clean(&path, "free then allocate before release");
    s.m.release_pending();
    assert_eq!(s.m.pending_free_blocks(), 0);
    let c = s
        .create(&mut model, "c", Node::File(pattern(3, 64 * 4096)))
        .unwrap();
    let c_blocks = mapped_blocks(&mut s, c);
    assert!(
        c_blocks.iter().any(|x| freed.contains(x)),
        "after release_pending the freed blocks are allocatable again"
    );
    s.check(&path, &model, "allocate after release", true);
}

/// Regression: a write allocating a multi-block run whose last block is partial read that
/// block's stale on-disk bytes (only the run's first block was treated as new) instead of
/// zero-filling it.
#[test]
fn partial_last_block_of_a_new_run_is_zero_filled() {
    if !have_mke2fs("partial_last_block_of_a_new_run_is_zero_filled") {
        return;
    }
    let img = make_image(0);
    let path = img.path.clone();
    let mut model = img.model;
    let mut s = Session::open(&path);
    // Fill blocks with non-zero bytes, free them and make them reusable.
    s.create(&mut model, "junk", Node::File(vec![0xAB; 16 * 4096]))
        .unwrap();
    s.check(&path, &model, "junk written", false);
    s.with(|m, r| m.unlink(r, ROOT_INO, b"junk")).unwrap();
    model.remove("junk");
    s.check(&path, &model, "junk freed", false);
    // Two and a bit blocks at a block boundary: one new run of three, the last one partial.
    let data = pattern(9, 2 * 4096 + 100);
    s.create(&mut model, "f", Node::File(data.clone())).unwrap();
    s.check(&path, &model, "partial run", true);
    let fs = mount(&path);
    let mut io = fs.io().unwrap();
    let ino = fs.lookup(&mut io, "/f").unwrap();
    let file = fs.open(&mut io, ino).unwrap();
    let last = file.extents().find(2).unwrap();
    let block = last.physical_block + (2 - last.logical_block);
    let mut raw = vec![0u8; 4096];
    std::fs::File::open(&path)
        .unwrap()
        .read_exact_at(&mut raw, block * 4096)
        .unwrap();
    assert!(raw[100..].iter().all(|&b| b == 0), "stale bytes past EOF");
    // Growing the file must show zeros there.
    s.with(|m, r| m.truncate(r, ino, 3 * 4096)).unwrap();
    let mut grown = data;
    grown.resize(3 * 4096, 0);
    model.insert("f".into(), Node::File(grown));
    s.check(&path, &model, "grown", true);
}

fn mapped_blocks(s: &mut Session, ino: u32) -> Vec<u64> {
    // The mutator's own view: changes not yet written home.
    let inode = s.with(|m, r| m.inode(r, ino)).unwrap();
    let mut out = Vec::new();
    let size_blocks = inode.size_bytes.div_ceil(4096);
    for l in 0..size_blocks {
        if let Some(p) = s.with(|m, r| m.physical_block(r, ino, l as u32)).unwrap() {
            out.push(p);
        }
    }
    out
}

#[derive(Debug, Clone)]
enum Op {
    Create { dir: usize, name: u8, size: usize },
    Mkdir { dir: usize, name: u8 },
    Write { file: usize, offset: u32, len: u16 },
    Truncate { file: usize, size: u32 },
    Unlink { file: usize },
    Rmdir { dir: usize },
    Symlink { dir: usize, name: u8, len: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any::<usize>(), 0u8..40, 0usize..20_000)
            .prop_map(|(dir, name, size)| Op::Create { dir, name, size }),
        1 => (any::<usize>(), 0u8..40).prop_map(|(dir, name)| Op::Mkdir { dir, name }),
        3 => (any::<usize>(), 0u32..300_000, 1u16..20_000)
            .prop_map(|(file, offset, len)| Op::Write { file, offset, len }),
        2 => (any::<usize>(), 0u32..200_000).prop_map(|(file, size)| Op::Truncate { file, size }),
        1 => any::<usize>().prop_map(|file| Op::Unlink { file }),
        1 => any::<usize>().prop_map(|dir| Op::Rmdir { dir }),
        1 => (any::<usize>(), 0u8..40, 1u8..120)
            .prop_map(|(dir, name, len)| Op::Symlink { dir, name, len }),
    ]
}

fn apply(s: &mut Session, model: &mut Model, op: &Op, seq: u64) {
    let dirs: Vec<String> = std::iter::once(String::new())
        .chain(
            model
                .iter()
                .filter(|(k, v)| **v == Node::Dir && !k.starts_with("big"))
                .map(|(k, _)| k.clone()),
        )
        .collect();
    let files: Vec<String> = model
        .iter()
        .filter(|(k, v)| matches!(v, Node::File(_)) && !k.starts_with("big/"))
        .map(|(k, _)| k.clone())
        .collect();
    let join = |d: &str, n: String| if d.is_empty() { n } else { format!("{d}/{n}") };
    match *op {
        Op::Create { dir, name, size } => {
            let rel = join(&dirs[dir % dirs.len()], format!("f{name}"));
            let node = Node::File(pattern(seq, size));
            let exists = model.contains_key(&rel);
            let r = s.create(model, &rel, node);
            assert_eq!(
                exists,
                matches!(r, Err(FsError::Exists { .. })),
                "{rel}: {r:?}"
            );
        }
        Op::Mkdir { dir, name } => {
            let rel = join(&dirs[dir % dirs.len()], format!("d{name}"));
            if !model.contains_key(&rel) {
                s.create(model, &rel, Node::Dir).unwrap();
            }
        }
        Op::Symlink { dir, name, len } => {
            let rel = join(&dirs[dir % dirs.len()], format!("l{name}"));
            if !model.contains_key(&rel) {
                let target = vec![b'a' + (seq % 26) as u8; usize::from(len)];
                s.create(model, &rel, Node::Link(target)).unwrap();
            }
        }
        Op::Write { file, offset, len } if !files.is_empty() => {
            let rel = &files[file % files.len()];
            let data = pattern(seq, usize::from(len));
            let ino = s.ino(rel);
            s.with(|m, r| m.write(r, ino, offset.into(), &data))
                .unwrap();
            if let Some(Node::File(d)) = model.get_mut(rel) {
                let end = offset as usize + data.len();
                if d.len() < end {
                    d.resize(end, 0);
                }
                d[offset as usize..end].copy_from_slice(&data);
            }
        }
        Op::Truncate { file, size } if !files.is_empty() => {
            let rel = &files[file % files.len()];
            let ino = s.ino(rel);
            s.with(|m, r| m.truncate(r, ino, size.into())).unwrap();
            if let Some(Node::File(d)) = model.get_mut(rel) {
                d.resize(size as usize, 0);
            }
        }
        Op::Unlink { file } if !files.is_empty() => {
            let rel = files[file % files.len()].clone();
            let (parent, name) = s.parent_and_name(&rel);
            s.with(|m, r| m.unlink(r, parent, name.as_bytes())).unwrap();
            model.remove(&rel);
        }
        Op::Rmdir { dir } if dirs.len() > 1 => {
            let rel = dirs[1 + dir % (dirs.len() - 1)].clone();
            let (parent, name) = s.parent_and_name(&rel);
            let empty = !model.keys().any(|k| k.starts_with(&format!("{rel}/")));
            let r = s.with(|m, r| m.rmdir(r, parent, name.as_bytes()));
            assert_eq!(empty, r.is_ok(), "rmdir {rel}: {r:?}");
            if empty {
                model.remove(&rel);
            }
        }
        _ => {}
    }
}

#[test]
fn random_operation_sequences_match_the_model() {
    if !have_mke2fs("random_operation_sequences_match_the_model") {
        return;
    }
    let mut runner = TestRunner::new(Config {
        cases: 6,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(op(), 10..40), |ops| {
            let img = make_image(0);
            let path = img.path.clone();
            let mut model = img.model;
            let mut s = Session::open(&path);
            for (i, op) in ops.iter().enumerate() {
                apply(&mut s, &mut model, op, i as u64);
                if i % 10 == 9 {
                    s.check(&path, &model, &format!("{:?}", &ops[..=i]), false);
                }
            }
            s.check(&path, &model, &format!("{ops:?}"), true);
            Ok(())
        })
        .unwrap();
}
