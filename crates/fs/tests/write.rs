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
use aios_fs::{
    Changes, Fs, FsBlocks, FsError, IoCtx, MountOptions, Mutator, NewNode, SetAttr, ROOT_INO,
};
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
    make_image_sized(big_entries, "64M")
}

/// [`make_image`] of `size` (an `mke2fs` size argument).
fn make_image_sized(big_entries: usize, size: &str) -> Image {
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
        .arg(size)
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
    for (block, page) in &changes.data_blocks {
        f.write_all_at(page.bytes(), block * 4096).unwrap();
    }
    for (block, bytes) in &changes.meta_blocks {
        f.write_all_at(bytes, block * 4096).unwrap();
    }
    f.sync_all().unwrap();
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
    // Hard links: a file's link count is the number of model paths naming its inode.
    let mut names_of = BTreeMap::<u32, u16>::new();
    for (rel, node) in model {
        if let Node::File(_) = node {
            *names_of
                .entry(fs.lookup(&mut io, format!("/{rel}")).unwrap())
                .or_default() += 1;
        }
    }
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
                assert_eq!(Some(&st.nlink), names_of.get(&ino), "links of {rel}");
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
        common::assert_fsck_clean(path, when);
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
    common::assert_fsck_clean(&path, "free then allocate before release");
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
    Create {
        dir: usize,
        name: u8,
        size: usize,
    },
    Mkdir {
        dir: usize,
        name: u8,
    },
    Write {
        file: usize,
        offset: u32,
        len: u16,
    },
    Truncate {
        file: usize,
        size: u32,
    },
    Unlink {
        file: usize,
    },
    Rmdir {
        dir: usize,
    },
    Symlink {
        dir: usize,
        name: u8,
        len: u8,
    },
    Rename {
        src: usize,
        dir: usize,
        name: u8,
    },
    Link {
        file: usize,
        dir: usize,
        name: u8,
    },
    SetAttr {
        file: usize,
        mode: u16,
        nanos: u32,
    },
    Fallocate {
        file: usize,
        offset: u32,
        len: u32,
        keep: bool,
    },
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
        2 => (any::<usize>(), any::<usize>(), 0u8..40)
            .prop_map(|(src, dir, name)| Op::Rename { src, dir, name }),
        1 => (any::<usize>(), any::<usize>(), 0u8..40)
            .prop_map(|(file, dir, name)| Op::Link { file, dir, name }),
        1 => (any::<usize>(), 0u16..0o400, 0u32..1_000_000_000)
            .prop_map(|(file, mode, nanos)| Op::SetAttr { file, mode, nanos }),
        2 => (any::<usize>(), 0u32..300_000, 1u32..200_000, any::<bool>())
            .prop_map(|(file, offset, len, keep)| Op::Fallocate { file, offset, len, keep }),
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
            for name in names_of(s, model, ino) {
                if let Some(Node::File(d)) = model.get_mut(&name) {
                    let end = offset as usize + data.len();
                    if d.len() < end {
                        d.resize(end, 0);
                    }
                    d[offset as usize..end].copy_from_slice(&data);
                }
            }
        }
        Op::Truncate { file, size } if !files.is_empty() => {
            let rel = &files[file % files.len()];
            let ino = s.ino(rel);
            s.with(|m, r| m.truncate(r, ino, size.into())).unwrap();
            for name in names_of(s, model, ino) {
                if let Some(Node::File(d)) = model.get_mut(&name) {
                    d.resize(size as usize, 0);
                }
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
        Op::Rename { src, dir, name } => apply_rename(s, model, src, &dirs, dir, name),
        Op::Link { file, dir, name } if !files.is_empty() => {
            let rel = &files[file % files.len()];
            let dest = join(&dirs[dir % dirs.len()], format!("h{name}"));
            let ino = s.ino(rel);
            let (parent, new_name) = s.parent_and_name(&dest);
            let r = s.with(|m, r| m.link(r, ino, parent, new_name.as_bytes()));
            if model.contains_key(&dest) {
                assert!(
                    matches!(r, Err(FsError::Exists { .. })),
                    "link {dest}: {r:?}"
                );
            } else {
                r.unwrap();
                let node = model[rel].clone();
                model.insert(dest, node);
            }
        }
        Op::SetAttr { file, mode, nanos } if !files.is_empty() => {
            let rel = &files[file % files.len()];
            let ino = s.ino(rel);
            let t = aios_fs::Timestamp {
                secs: 1_600_000_000 + i64::from(nanos % 1000),
                nanos,
            };
            let attr = SetAttr {
                mode: Some(0o400 | mode),
                uid: Some(1000 + u32::from(mode)),
                gid: Some(77),
                atime: Some(t),
                mtime: Some(t),
                ctime: None,
            };
            let before = s.with(|m, r| m.inode(r, ino)).unwrap().ctime;
            s.with(|m, r| m.set_attr(r, ino, &attr)).unwrap();
            let after = s.with(|m, r| m.inode(r, ino)).unwrap();
            assert_eq!(after.mode & 0o7777, 0o400 | mode);
            assert_eq!(
                (after.uid, after.gid, after.mtime, after.atime),
                (1000 + u32::from(mode), 77, t, t)
            );
            assert!(
                (after.ctime.secs, after.ctime.nanos) >= (before.secs, before.nanos),
                "ctime moves forward"
            );
        }
        Op::Fallocate {
            file,
            offset,
            len,
            keep,
        } if !files.is_empty() => {
            let rel = &files[file % files.len()];
            let ino = s.ino(rel);
            s.with(|m, r| m.fallocate(r, ino, offset.into(), len.into(), keep))
                .unwrap();
            if !keep {
                for name in names_of(s, model, ino) {
                    if let Some(Node::File(d)) = model.get_mut(&name) {
                        let end = (offset + len) as usize;
                        if d.len() < end {
                            d.resize(end, 0);
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// Model paths (files) naming inode `ino`.
fn names_of(s: &mut Session, model: &Model, ino: u32) -> Vec<String> {
    let files: Vec<String> = model
        .iter()
        .filter(|(_, v)| matches!(v, Node::File(_)))
        .map(|(k, _)| k.clone())
        .collect();
    files.into_iter().filter(|f| s.ino(f) == ino).collect()
}

/// Renames a random entry (outside `big/`) to `r{name}` in a random directory and checks the
/// outcome `rename(2)` prescribes against the model.
fn apply_rename(
    s: &mut Session,
    model: &mut Model,
    src: usize,
    dirs: &[String],
    dir: usize,
    name: u8,
) {
    let entries: Vec<String> = model
        .keys()
        .filter(|k| !k.starts_with("big"))
        .cloned()
        .collect();
    if entries.is_empty() {
        return;
    }
    let from = entries[src % entries.len()].clone();
    let dest_dir = &dirs[dir % dirs.len()];
    // Half the time reuse an existing name in the destination, to exercise replacement.
    let existing: Vec<&String> = model
        .keys()
        .filter(|k| {
            let parent = k.rsplit_once('/').map_or("", |(d, _)| d);
            parent == dest_dir.as_str() && !k.starts_with("big")
        })
        .collect();
    let to = if name.is_multiple_of(2) && !existing.is_empty() {
        existing[usize::from(name) % existing.len()].clone()
    } else if dest_dir.is_empty() {
        format!("r{name}")
    } else {
        format!("{dest_dir}/r{name}")
    };
    let src_node = model[&from].clone();
    let (op, on) = s.parent_and_name(&from);
    let (np, nn) = s.parent_and_name(&to);
    let same_inode = model.contains_key(&to) && s.ino(&from) == s.ino(&to);
    let r = s.with(|m, r| m.rename(r, op, on.as_bytes(), np, nn.as_bytes()));
    let within = src_node == Node::Dir && (to == from || to.starts_with(&format!("{from}/")));
    let expect = if same_inode || to == from {
        "ok-noop"
    } else if within || (src_node == Node::Dir && dest_dir.starts_with(&format!("{from}/"))) {
        "einval"
    } else {
        match model.get(&to) {
            Some(Node::Dir) if src_node != Node::Dir => "eisdir",
            Some(n) if *n != Node::Dir && src_node == Node::Dir => "enotdir",
            Some(Node::Dir) if model.keys().any(|k| k.starts_with(&format!("{to}/"))) => {
                "enotempty"
            }
            _ => "ok",
        }
    };
    let got = match &r {
        Ok(()) if expect == "ok-noop" => "ok-noop",
        Ok(()) => "ok",
        Err(FsError::InvalidArgument { .. }) => "einval",
        Err(FsError::IsADirectory { .. }) => "eisdir",
        Err(FsError::NotADirectory { .. }) => "enotdir",
        Err(FsError::NotEmpty { .. }) => "enotempty",
        Err(_) => "other",
    };
    assert_eq!(got, expect, "rename {from} -> {to}: {r:?}");
    if expect != "ok" {
        return;
    }
    model.remove(&to);
    let moved: Vec<String> = model
        .keys()
        .filter(|k| **k == from || k.starts_with(&format!("{from}/")))
        .cloned()
        .collect();
    for k in moved {
        let node = model.remove(&k).unwrap();
        model.insert(format!("{to}{}", &k[from.len()..]), node);
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

/// Raw `e2fsck -fn` output and exit code.
fn fsck_output(path: &Path) -> (Option<i32>, String) {
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
    (out.status.code(), text)
}

#[test]
fn rename_edge_cases() {
    if !have_mke2fs("rename_edge_cases") {
        return;
    }
    let img = make_image(BIG_ENTRIES);
    let path = img.path.clone();
    let mut model = img.model;
    let mut s = Session::open(&path);
    for d in ["a", "a/sub", "a/sub/deep", "b", "empty1", "empty2", "full"] {
        s.create(&mut model, d, Node::Dir).unwrap();
    }
    s.create(&mut model, "full/x", Node::File(b"x".to_vec()))
        .unwrap();
    s.create(&mut model, "f1", Node::File(pattern(1, 5000)))
        .unwrap();
    s.create(&mut model, "f2", Node::File(pattern(2, 9000)))
        .unwrap();
    s.create(&mut model, "a/sub/deep/g", Node::File(pattern(3, 100)))
        .unwrap();
    s.check(&path, &model, "setup", false);
    let [a, b, sub, root] = ["a", "b", "a/sub", ""].map(|p| s.ino(p));
    let links = |s: &mut Session, ino: u32| s.with(|m, r| m.inode(r, ino)).unwrap().links_count;
    let (a_links, b_links, root_links) = (links(&mut s, a), links(&mut s, b), links(&mut s, root));
    let rename = |s: &mut Session, from: u32, on: &str, to: u32, nn: &str| {
        s.with(|m, r| m.rename(r, from, on.as_bytes(), to, nn.as_bytes()))
    };
    // Refusals change nothing.
    let errs = [
        (rename(&mut s, root, "a", sub, "a2"), "into its own subtree"),
        (rename(&mut s, root, "a", a, "self"), "into itself"),
        (rename(&mut s, root, "empty1", root, "f1"), "dir over file"),
        (rename(&mut s, root, "f1", root, "empty1"), "file over dir"),
        (
            rename(&mut s, root, "empty1", root, "full"),
            "dir over non-empty dir",
        ),
        (rename(&mut s, root, "nope", root, "x"), "missing source"),
        (rename(&mut s, root, "f1", root, ".."), "bad name"),
    ];
    assert!(
        matches!(errs[0].0, Err(FsError::InvalidArgument { .. })),
        "{errs:?}"
    );
    assert!(
        matches!(errs[1].0, Err(FsError::InvalidArgument { .. })),
        "{errs:?}"
    );
    assert!(
        matches!(errs[2].0, Err(FsError::NotADirectory { .. })),
        "{errs:?}"
    );
    assert!(
        matches!(errs[3].0, Err(FsError::IsADirectory { .. })),
        "{errs:?}"
    );
    assert!(
        matches!(errs[4].0, Err(FsError::NotEmpty { .. })),
        "{errs:?}"
    );
    assert!(
        matches!(errs[5].0, Err(FsError::NotFound { .. })),
        "{errs:?}"
    );
    assert!(
        matches!(errs[6].0, Err(FsError::InvalidPath { .. })),
        "{errs:?}"
    );
    let changes = s.check(&path, &model, "refused renames", true);
    assert!(
        changes.meta_blocks.is_empty(),
        "a refused rename changed metadata"
    );
    // Same name, and a no-op between hard links of one inode.
    rename(&mut s, root, "f1", root, "f1").unwrap();
    let f1 = s.ino("f1");
    s.with(|m, r| m.link(r, f1, b, b"f1link")).unwrap();
    model.insert("b/f1link".into(), model["f1"].clone());
    rename(&mut s, root, "f1", b, "f1link").unwrap();
    s.check(&path, &model, "link, rename between links", true);
    // File over file: the target's inode is freed.
    let f2 = s.ino("f2");
    let free_inodes = s.m.superblock().free_inodes_count;
    rename(&mut s, root, "f2", b, "f1link").unwrap();
    let f2_data = model.remove("f2").unwrap();
    model.insert("b/f1link".into(), f2_data);
    assert_eq!(s.ino("b/f1link"), f2);
    assert_eq!(
        s.m.superblock().free_inodes_count,
        free_inodes,
        "f1 keeps a link"
    );
    s.check(&path, &model, "file over file", true);
    // Moving a directory: `..` and both parents' links.
    rename(&mut s, a, "sub", b, "moved").unwrap();
    for k in ["a/sub", "a/sub/deep", "a/sub/deep/g"] {
        let v = model.remove(k).unwrap();
        model.insert(k.replacen("a/sub", "b/moved", 1), v);
    }
    assert_eq!(s.with(|m, r| m.lookup(r, sub, b"..")).unwrap(), Some(b));
    assert_eq!(
        (links(&mut s, a), links(&mut s, b)),
        (a_links - 1, b_links + 1)
    );
    s.check(&path, &model, "directory moved", true);
    // Empty dir over empty dir, across parents, and into the indexed big/.
    rename(&mut s, root, "empty1", b, "moved").unwrap_err();
    rename(&mut s, root, "empty1", root, "empty2").unwrap();
    model.remove("empty1");
    assert_eq!(links(&mut s, root), root_links - 1);
    let big = s.ino("big");
    rename(&mut s, root, "empty2", big, "entry_00007").unwrap_err();
    s.with(|m, r| m.unlink(r, big, b"entry_00007")).unwrap();
    model.remove("big/entry_00007");
    rename(&mut s, root, "empty2", big, "entry_00007").unwrap();
    model.remove("empty2");
    model.insert("big/entry_00007".into(), Node::Dir);
    assert!(s.with(|m, r| m.inode(r, big)).unwrap().flags & EXT4_INDEX_FL != 0);
    s.check(&path, &model, "dir over dir, into an htree", true);
    // A directory whose `..` lives in a dx_root moves: big/ itself.
    rename(&mut s, root, "big", b, "big2").unwrap();
    let moved: Vec<String> = model
        .keys()
        .filter(|k| k.starts_with("big"))
        .cloned()
        .collect();
    for k in moved {
        let v = model.remove(&k).unwrap();
        model.insert(format!("b/{}", k.replacen("big", "big2", 1)), v);
    }
    assert_eq!(s.with(|m, r| m.lookup(r, big, b"..")).unwrap(), Some(b));
    s.check(&path, &model, "indexed directory moved", true);
}

#[test]
fn links_and_the_orphan_list() {
    if !have_mke2fs("links_and_the_orphan_list") {
        return;
    }
    let img = make_image(0);
    let path = img.path.clone();
    let mut model = img.model;
    let mut s = Session::open(&path);
    let d = s.create(&mut model, "d", Node::Dir).unwrap();
    let f = s
        .create(&mut model, "f", Node::File(pattern(1, 20_000)))
        .unwrap();
    assert!(matches!(
        s.with(|m, r| m.link(r, d, ROOT_INO, b"dlink")),
        Err(FsError::NotPermitted { .. })
    ));
    s.with(|m, r| m.link(r, f, d, b"f2")).unwrap();
    model.insert("d/f2".into(), model["f"].clone());
    assert!(matches!(
        s.with(|m, r| m.link(r, f, d, b"f2")),
        Err(FsError::Exists { .. })
    ));
    s.check(&path, &model, "hard link", true);
    // Unlinking one name keeps the inode.
    assert_eq!(
        s.with(|m, r| m.unlink_open(r, ROOT_INO, b"f")).unwrap(),
        None
    );
    model.remove("f");
    s.check(&path, &model, "unlink one of two names", true);
    // The last name of an open file: the inode goes on the orphan list, blocks kept.
    let free_blocks = s.m.superblock().free_blocks_count;
    assert_eq!(s.with(|m, r| m.unlink_open(r, d, b"f2")).unwrap(), Some(f));
    model.remove("d/f2");
    assert_eq!(s.m.superblock().last_orphan, f);
    assert_eq!(s.m.superblock().free_blocks_count, free_blocks);
    assert!(matches!(
        s.with(|m, r| m.link(r, f, d, b"back")),
        Err(FsError::NotFound { .. })
    ));
    let changes = s.with(|m, r| m.take_changes(r)).unwrap();
    write_home(&path, &changes);
    kernel_orphan_list_as_e2fsck_sees_it(&path, &[f], 1);
    s.with(|m, r| m.release_orphan(r, f)).unwrap();
    assert_eq!(s.m.superblock().last_orphan, 0);
    assert!(s.m.superblock().free_blocks_count > free_blocks);
    s.check(&path, &model, "orphan released", true);
    // Three orphans, the middle one released (predecessor relinked), the rest at "mount".
    let mut inos = Vec::new();
    for i in 0..3 {
        let name = format!("o{i}");
        let ino = s
            .create(&mut model, &name, Node::File(pattern(i, 9000)))
            .unwrap();
        s.with(|m, r| m.unlink_open(r, ROOT_INO, name.as_bytes()))
            .unwrap();
        model.remove(&name);
        inos.push(ino);
    }
    assert_eq!(
        s.with(|m, r| m.orphans(r)).unwrap(),
        [inos[2], inos[1], inos[0]]
    );
    s.with(|m, r| m.release_orphan(r, inos[1])).unwrap();
    assert_eq!(s.with(|m, r| m.orphans(r)).unwrap(), [inos[2], inos[0]]);
    assert!(matches!(
        s.with(|m, r| m.release_orphan(r, inos[1])),
        Err(FsError::InvalidArgument { .. })
    ));
    let changes = s.with(|m, r| m.take_changes(r)).unwrap();
    write_home(&path, &changes);
    // A crash now: the next mount's mutator finds the list on disk and frees it.
    drop(s);
    kernel_orphan_list_as_e2fsck_sees_it(&path, &inos, 2);
    let rw_copy = path.with_extension("rw-copy");
    std::fs::copy(&path, &rw_copy).unwrap();
    let mut s = Session::open(&path);
    assert_eq!(s.with(|m, r| m.process_orphans(r)).unwrap(), 2);
    assert_eq!(s.m.superblock().last_orphan, 0);
    s.check(&path, &model, "orphans processed at mount", true);
    drop(s);
    // The read-write mount does the same as its first transaction.
    let device = PsyncDevice::open(&rw_copy, aios_device_psync::PsyncConfig::default()).unwrap();
    let rw = aios_fs::RwFs::mount(device, aios_fs::RwOptions::default()).unwrap();
    assert_eq!(rw.stats().commits, 1, "the orphan cleanup commits once");
    let (_, unmounted) = rw.unmount();
    unmounted.unwrap();
    common::assert_fsck_clean(&rw_copy, "orphans processed by the read-write mount");
    assert_eq!(mount(&rw_copy).superblock().last_orphan, 0);
    read_path_matches(&rw_copy, &model);
    std::fs::remove_file(&rw_copy).unwrap();
}

/// A list of `count` orphans (among `inos`) left on disk is the kernel's orphan list to
/// e2fsprogs: `e2fsck -fn` (read-only, which never runs the list) reports the listed inodes as
/// deleted-but-in-use and nothing else; `e2fsck -fy` on a copy clears each one in its
/// superblock pass ("Clearing orphaned inode", `release_orphan_inodes`) and leaves the copy
/// clean.
fn kernel_orphan_list_as_e2fsck_sees_it(path: &Path, inos: &[u32], count: usize) {
    let (code, text) = fsck_output(path);
    assert_eq!(code, Some(4), "{text}");
    for line in text.lines() {
        let orphan_related = line.trim().is_empty()
            || line.starts_with("Pass ")
            || line.starts_with("e2fsck ")
            || line.contains("dtime")
            || line.contains("orphan")
            || line.contains("bitmap differences")
            || line.starts_with("Fix? no")
            || line.contains("still has errors")
            || line.contains(" files (");
        assert!(
            orphan_related,
            "e2fsck -fn with orphans: unexpected {line:?}\n{text}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy");
    std::fs::copy(path, &copy).unwrap();
    let out = Command::new("e2fsck")
        .arg("-fy")
        .arg(&copy)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let cleared = text.matches("Clearing orphaned inode").count();
    assert_eq!(cleared, count, "e2fsck -fy:\n{text}");
    assert!(
        inos.iter()
            .any(|i| text.contains(&format!("Clearing orphaned inode {i} "))),
        "{text}"
    );
    common::assert_fsck_clean(&copy, "e2fsck -fy processed the orphan list");
}

#[test]
fn fallocate_unwritten_extents_convert_on_write() {
    if !have_mke2fs("fallocate_unwritten_extents_convert_on_write") {
        return;
    }
    let img = make_image_sized(0, "256M");
    let path = img.path.clone();
    let mut model = img.model;
    let mut s = Session::open(&path);
    let f = s.create(&mut model, "f", Node::File(vec![])).unwrap();
    // 40000 blocks: more than one unwritten extent can hold.
    let len = 40_000u64 * 4096;
    s.with(|m, r| m.fallocate(r, f, 0, len, false)).unwrap();
    model.insert("f".into(), Node::File(vec![0; len as usize]));
    s.check(&path, &model, "fallocate 40000 blocks", true);
    let unwritten = |path: &Path| -> Vec<(u64, u32, bool)> {
        let fs = mount(path);
        let mut io = fs.io().unwrap();
        let file = fs.open(&mut io, f).unwrap();
        file.extents()
            .mappings()
            .iter()
            .map(|m| (m.logical_block, m.len_blocks, m.unwritten))
            .collect()
    };
    let before = unwritten(&path);
    assert!(
        before.len() >= 2 && before.iter().all(|&(_, l, u)| u && l <= 32767),
        "{before:?}"
    );
    // A partial write in the middle splits one extent into unwritten/written/unwritten.
    let data = pattern(5, 3 * 4096 + 10);
    s.with(|m, r| m.write(r, f, 100 * 4096 + 7, &data)).unwrap();
    if let Some(Node::File(d)) = model.get_mut("f") {
        d[100 * 4096 + 7..100 * 4096 + 7 + data.len()].copy_from_slice(&data);
    }
    s.check(&path, &model, "write into unwritten", true);
    let after = unwritten(&path);
    assert!(after.contains(&(100, 4, false)), "{after:?}");
    assert!(after.contains(&(0, 100, true)), "{after:?}");
    // keep_size past EOF, then a write across the boundary of mapped and unmapped.
    let g = s
        .create(&mut model, "g", Node::File(pattern(6, 5000)))
        .unwrap();
    s.with(|m, r| m.fallocate(r, g, 8192, 10 * 4096, true))
        .unwrap();
    assert_eq!(s.with(|m, r| m.inode(r, g)).unwrap().size_bytes, 5000);
    s.check(&path, &model, "fallocate keep_size", true);
    s.with(|m, r| m.write(r, g, 4000, &pattern(7, 20_000)))
        .unwrap();
    let mut gd = pattern(6, 5000);
    gd.resize(24_000, 0);
    gd[4000..].copy_from_slice(&pattern(7, 20_000));
    model.insert("g".into(), Node::File(gd));
    s.check(&path, &model, "write over fallocated tail", true);
}

/// Regression (issue 4 item 4): an operation that ran out of space midway left what it had
/// done so far (blocks allocated and mapped, part of the data) in the changes.
#[test]
fn enospc_leaves_nothing_half_written() {
    if !have_mke2fs("enospc_leaves_nothing_half_written") {
        return;
    }
    let img = make_image(0);
    let path = img.path.clone();
    let mut model = img.model;
    let mut s = Session::open(&path);
    let chunk = 3 << 20;
    let mut i = 0;
    // Fill with 3 MiB files until one does not fit; then single blocks until none fits.
    let mut size = chunk;
    loop {
        let rel = format!("fill{i}");
        i += 1;
        let ino = match s.create(&mut model, &rel, Node::File(vec![])) {
            Ok(ino) => ino,
            Err(e) => {
                assert!(matches!(e, FsError::NoSpace { .. }), "{e:?}");
                break;
            }
        };
        let sb = s.m.superblock().clone();
        let data = pattern(i, size);
        match s.with(|m, r| m.write(r, ino, 0, &data)) {
            Ok(()) => {
                model.insert(rel, Node::File(data));
            }
            Err(e) => {
                assert!(matches!(e, FsError::NoSpace { .. }), "{e:?}");
                let now = s.m.superblock();
                assert_eq!(
                    (now.free_blocks_count, now.free_inodes_count),
                    (sb.free_blocks_count, sb.free_inodes_count),
                    "a failed write changed the counts"
                );
                assert_eq!(s.with(|m, r| m.inode(r, ino)).unwrap().size_bytes, 0);
                assert_eq!(s.with(|m, r| m.physical_block(r, ino, 0)).unwrap(), None);
                if size == 4096 {
                    break;
                }
                size = 4096;
                s.check(&path, &model, "first ENOSPC", false);
            }
        }
        if i % 8 == 0 {
            s.check(&path, &model, "filling", false);
        }
    }
    let free = s.m.superblock().free_blocks_count;
    let f = s.ino("fill0");
    let r = s.with(|m, r| m.fallocate(r, f, 1 << 30, 1 << 20, false));
    assert!(matches!(r, Err(FsError::NoSpace { .. })), "{r:?}");
    assert_eq!(s.m.superblock().free_blocks_count, free);
    assert_eq!(
        s.with(|m, r| m.inode(r, f)).unwrap().size_bytes,
        chunk as u64
    );
    s.check(&path, &model, "file system full", true);
    // Freeing space makes it usable again.
    s.with(|m, r| m.unlink(r, ROOT_INO, b"fill0")).unwrap();
    model.remove("fill0");
    s.check(&path, &model, "after unlink", false);
    s.create(&mut model, "again", Node::File(pattern(99, chunk)))
        .unwrap();
    s.check(&path, &model, "space reused", true);
}
