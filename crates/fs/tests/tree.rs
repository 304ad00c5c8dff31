//! Issue 3 acceptance (read path) on a big generated tree: every file of an image built by
//! `mke2fs -d DIR` from a seeded tree (thousands of files, deep directories, a directory of 20k+
//! entries, sparse files, a file with a depth-2 extent tree, symlinks, odd names) reads back
//! byte-identical, `stat` agrees with the source, and random cached reads match the source.
//!
//! The tree and its image are built once per test process (see [`fixture`]) and shared by the
//! tests, which run in parallel on their own mounts.
//!
//! What `mke2fs -d` (1.47.0) copies from `lstat`: mode (type, permission, setuid/setgid/sticky),
//! uid, gid (32 bits), size, hard links (one inode, nlink > 1), and atime, mtime and ctime in whole
//! seconds (1.47.0 drops nanoseconds; newer releases may keep them, see [`NanosPolicy`]). Source
//! times are therefore compared with an `lstat` snapshot taken after the last metadata change and
//! before `mke2fs` ran: reading a file or listing a directory later (as `mke2fs` itself does, after
//! its own `lstat`) moves its atime under `relatime`. The root is the exception: `mke2fs` gives
//! it its own mode, owner and times, so only its type and link count are compared.

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::ffi::{CString, OsStr};
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

use aios_device::{Device, TargetOptions};
use aios_device_psync::{PsyncConfig, PsyncDevice};
use aios_ext4::format::dir::file_type;
use aios_ext4::format::inode::EXT4_INDEX_FL;
use aios_fs::{Fs, IoCtx, MountOptions, ReadMode, Stat, ROOT_INO};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Seed of everything generated: names, sizes, contents, modes, owners, times.
const SEED: u64 = 0x5EED_A105_0003;
/// Regular files spread over `tree/` (besides the big directory and the special files).
const TREE_FILES: usize = 5000;
/// Entries of `big/`. `mke2fs -d` links each name by scanning the directory from its first block
/// (quadratic: with names of 130 bytes on average this took over a minute), so most names are
/// short; `e2fsck -D` then leaves [`HTREE_SLACK_PERCENT`] of every leaf free, which spreads them
/// over more leaves (~800) than a `dx_root` indexes (507): a two-level htree.
const BIG_DIR_ENTRIES: usize = 20_500;
/// `indexed_dir_slack_percentage` given to `e2fsck -D` (its default is 20).
const HTREE_SLACK_PERCENT: u32 = 85;
/// Levels of the `deep/` chain (short names) and of the `long/` chain (250-byte names).
const DEEP_LEVELS: usize = 20;
const LONG_LEVELS: usize = 13;
/// One-block extents of `frag/depth2`, separated by one-block holes: more than 4 * 340, so the
/// extent tree needs depth 2.
const FRAG_EXTENTS: usize = 1500;
/// Names of `big/` whose path lookup is checked (a lookup scans the directory linearly, so all
/// 20k would take minutes); `read_dir`, `stat` and the contents cover every entry.
const BIG_LOOKUPS: usize = 150;

// ---------------------------------------------------------------------------------------------
// Generation
// ---------------------------------------------------------------------------------------------

/// splitmix64: small, fast, and the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// Deterministic contents: a splitmix stream seeded by `seed`, 8 bytes per step.
fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng(seed ^ SEED);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
}

/// Builds the source tree, remembering every inode it creates (hard links are not new inodes) in
/// creation order, so metadata can be applied children first.
struct Gen {
    root: PathBuf,
    rng: Rng,
    created: Vec<(PathBuf, Kind)>,
    seq: u64,
}

fn p(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

impl Gen {
    fn path(&self, rel: &[u8]) -> PathBuf {
        self.root.join(p(rel))
    }

    fn dir(&mut self, rel: &[u8]) {
        let path = self.path(rel);
        std::fs::create_dir(&path).unwrap();
        self.created.push((path, Kind::Dir));
    }

    fn file(&mut self, rel: &[u8], data: &[u8]) {
        let path = self.path(rel);
        std::fs::write(&path, data).unwrap();
        self.created.push((path, Kind::File));
    }

    /// A file of `size` seeded bytes.
    fn sized(&mut self, rel: &[u8], size: usize) {
        self.seq += 1;
        let data = content(self.seq, size);
        self.file(rel, &data);
    }

    /// A file with `(offset, len)` seeded pieces and length `size` (holes elsewhere).
    fn sparse(&mut self, rel: &[u8], pieces: &[(u64, usize)], size: u64) {
        let path = self.path(rel);
        let f = std::fs::File::create(&path).unwrap();
        for &(offset, len) in pieces {
            self.seq += 1;
            f.write_all_at(&content(self.seq, len), offset).unwrap();
        }
        f.set_len(size).unwrap();
        self.created.push((path, Kind::File));
    }

    fn link(&mut self, target: &[u8], rel: &[u8]) {
        let path = self.path(rel);
        symlink(p(target), &path).unwrap();
        self.created.push((path, Kind::Symlink));
    }

    fn hard(&mut self, existing: &[u8], rel: &[u8]) {
        std::fs::hard_link(self.path(existing), self.path(rel)).unwrap();
    }

    fn fifo(&mut self, rel: &[u8]) {
        let path = self.path(rel);
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: `c` is a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        self.created.push((path, Kind::Fifo));
    }

    /// A file size: special boundaries first, then mostly small (log-uniform), a few MiB-sized.
    fn tree_file_size(&mut self, i: usize) -> usize {
        const SPECIAL: [usize; 20] = [
            0,
            1,
            2,
            511,
            4095,
            4096,
            4097,
            8191,
            8192,
            8193,
            65_535,
            65_536,
            131_071,
            131_072,
            131_073,
            262_145,
            (1 << 20) - 1,
            1 << 20,
            (1 << 20) + 1,
            (4 << 20) + 4097,
        ];
        if let Some(&s) = SPECIAL.get(i) {
            return s;
        }
        if i % 500 == 250 {
            return (1 << 20) + self.rng.below(3 << 19) as usize;
        }
        let bits = self.rng.below(17);
        self.rng.below(1 << bits) as usize
    }
}

/// Generates the whole source tree under `root` (which exists).
fn generate(root: &Path) -> Gen {
    let mut g = Gen {
        root: root.to_path_buf(),
        rng: Rng(SEED),
        created: Vec::new(),
        seq: 0,
    };

    // tree/: TREE_FILES files over 8 top directories of 6 subdirectories each.
    g.dir(b"tree");
    for a in 0..8 {
        g.dir(format!("tree/d{a}").as_bytes());
        for b in 0..6 {
            g.dir(format!("tree/d{a}/s{b}").as_bytes());
        }
    }
    for i in 0..TREE_FILES {
        let size = g.tree_file_size(i);
        let (a, b) = (i % 8, (i / 8) % 7);
        let rel = if b == 6 {
            format!("tree/d{a}/f{i:04}")
        } else {
            format!("tree/d{a}/s{b}/f{i:04}")
        };
        g.sized(rel.as_bytes(), size);
    }
    // A file whose data has zero blocks in the middle: mke2fs -d stores them as holes.
    let mut zeros = content(9001, 40_000);
    zeros[8192..20_480].fill(0);
    g.file(b"tree/zero_blocks_inside", &zeros);

    // deep/: DEEP_LEVELS nested levels, a file at each; long/: 250-byte names, a long path.
    let mut rel = b"deep".to_vec();
    g.dir(&rel);
    for level in 0..DEEP_LEVELS {
        rel.extend_from_slice(format!("/l{level:02}").as_bytes());
        g.dir(&rel);
        let size = g.rng.pick(&[0usize, 17, 4096, 5000, 70_000]);
        g.sized(&[rel.as_slice(), b"/file"].concat(), size);
    }
    g.link(b"../../../../l16", &[rel.as_slice(), b"/up_four"].concat());
    g.sized(&[rel.as_slice(), b"/bottom.txt"].concat(), 12_345);
    let mut rel = b"long".to_vec();
    g.dir(&rel);
    for level in 0..LONG_LEVELS {
        let name = format!("{level:02}{}", "L".repeat(248));
        rel.extend_from_slice(format!("/{name}").as_bytes());
        g.dir(&rel);
    }
    g.sized(&[rel.as_slice(), b"/at_the_end"].concat(), 9999);

    // big/: BIG_DIR_ENTRIES entries, names of every length up to 255 bytes (mostly short, see
    // BIG_DIR_ENTRIES), some not UTF-8; mostly small files, a few directories and symlinks.
    g.dir(b"big");
    for i in 0..BIG_DIR_ENTRIES {
        let mut name = format!("{i:05}").into_bytes();
        let extra = match g.rng.below(100) {
            0..90 => g.below_len(8),
            90..98 => 9 + g.below_len(51),
            _ => 61 + g.below_len(189),
        };
        for k in 0..extra {
            let c = match g.rng.below(40) {
                0 => b' ',
                1 => 0x80 + (g.rng.below(0x7f) as u8),
                2 => b'-',
                3 => b'.',
                _ => b'a' + ((i + k) % 26) as u8,
            };
            name.push(c);
        }
        let rel = [b"big/".as_slice(), &name].concat();
        if i % 1009 == 3 {
            g.dir(&rel);
            g.sized(&[rel.as_slice(), b"/inside"].concat(), 100);
        } else if i % 1013 == 5 {
            g.link(b"../tree/d0/s1/f0008", &rel);
        } else {
            let size = (i * 37) % 300;
            g.sized(&rel, size);
        }
    }

    // sparse/: holes at the start, the middle and the end; sizes ending inside holes.
    g.dir(b"sparse");
    g.sparse(
        b"sparse/hole_start",
        &[(2 << 20, 10_000)],
        (2 << 20) + 10_000,
    );
    g.sparse(
        b"sparse/hole_middle",
        &[(0, 100_000), (6 << 20, 50_000)],
        (6 << 20) + 50_000,
    );
    g.sparse(b"sparse/hole_end", &[(0, 30_000)], 5 << 20);
    g.sparse(
        b"sparse/ends_inside_hole",
        &[((1 << 20) + 123, 5000)],
        (3 << 20) + 17,
    );
    g.sparse(b"sparse/all_hole", &[], (2 << 20) + 5);
    let islands: Vec<(u64, usize)> = (0..60)
        .map(|k| (k * 130_001 + 13, 1 + (k as usize * 977) % 9000))
        .collect();
    g.sparse(b"sparse/islands", &islands, 8 << 20);

    // frag/: many one-block extents separated by holes (depth-2 tree), and irregular ones.
    g.dir(b"frag");
    let pieces: Vec<(u64, usize)> = (0..FRAG_EXTENTS as u64).map(|k| (k * 8192, 4096)).collect();
    g.sparse(b"frag/depth2", &pieces, FRAG_EXTENTS as u64 * 8192 - 4096);
    let mut pieces = Vec::new();
    let mut block = 0u64;
    for _ in 0..800 {
        let len = 1 + g.rng.below(3);
        pieces.push((block * 4096, len as usize * 4096));
        block += len + 1 + g.rng.below(5);
    }
    g.sparse(b"frag/irregular", &pieces, block * 4096 - 3000);

    // links/: fast (< 60 bytes, in the inode) and slow (a block) symlinks, to files and to
    // directories, relative and absolute (in the image's namespace), dangling, and not UTF-8.
    g.dir(b"links");
    g.link(b"../tree/d1/s0/f0001", b"links/fast_file");
    g.link(b"../deep/l00/l01", b"links/to_dir");
    g.link(b"/deep/l00", b"links/absolute_dir");
    g.link(b"to_dir", b"links/to_link_to_dir");
    g.link(b"does/not/exist", b"links/dangling");
    g.link(b"\xff\xfe not utf-8 \x80", b"links/non_utf8_target");
    for len in [59usize, 60, 61] {
        g.link(&vec![b'x'; len], format!("links/len{len}").as_bytes());
    }
    let mut slow = b"../deep".to_vec();
    for level in 0..DEEP_LEVELS {
        slow.extend_from_slice(format!("/l{level:02}").as_bytes());
    }
    slow.extend_from_slice(b"/bottom.txt");
    g.link(&slow, b"links/slow_to_bottom");
    let long_target: Vec<u8> = b"a/b/../".repeat(570);
    g.link(&long_target, b"links/slow_3990");

    // odd/: names with spaces, control characters, leading dashes and dots, non-UTF-8 bytes,
    // multi-byte UTF-8, 255 bytes; a fifo; an odd directory name.
    g.dir(b"odd");
    let names: Vec<Vec<u8>> = vec![
        b"with space".to_vec(),
        b" leading space".to_vec(),
        b"trailing space ".to_vec(),
        b"new\nline".to_vec(),
        b"tab\there".to_vec(),
        b"-leading-dash".to_vec(),
        b"-".to_vec(),
        b"--".to_vec(),
        b"..x".to_vec(),
        b"...".to_vec(),
        b".hidden".to_vec(),
        b"\xff\xfe\x80".to_vec(),
        b"latin1_\xe9t\xe9".to_vec(),
        "ünïcødé_名前_😀".as_bytes().to_vec(),
        vec![b'n'; 255],
        "語".repeat(85).into_bytes(),
        vec![0xEE; 255],
        b"\x01\x1b\x7f ctrl".to_vec(),
        b"*?[]{}|<>".to_vec(),
        b"back\\slash'\"quote".to_vec(),
        b"~#%:=@!$&()".to_vec(),
    ];
    for (i, name) in names.iter().enumerate() {
        let size = [0usize, 1, 4097, 300][i % 4];
        g.sized(&[b"odd/".as_slice(), name].concat(), size);
    }
    g.dir(b"odd/dir \n\xff");
    g.sized(b"odd/dir \n\xff/inner", 4096);
    g.fifo(b"odd/fifo");
    g.link(b"dir \n\xff/inner", b"odd/link \xfe");

    // hard/: one inode under three names in three directories, one under two, an empty one.
    g.dir(b"hard");
    g.sized(b"hard/a", 7000);
    g.hard(b"hard/a", b"hard/b");
    g.hard(b"hard/a", b"tree/d2/also_a");
    g.sized(b"hard/c", 0);
    g.hard(b"hard/c", b"odd/-hard \xe9");
    g.dir(b"empty_dir");
    g
}

impl Gen {
    fn below_len(&mut self, max: u64) -> usize {
        self.rng.below(max + 1) as usize
    }

    /// Owners, modes and times for every created inode, children before parents (no directory
    /// is modified after its own times are set).
    fn apply_metadata(&mut self) {
        const FILE_MODES: [u32; 10] = [
            0o644, 0o600, 0o755, 0o4755, 0o2711, 0o6755, 0o400, 0o000, 0o777, 0o1644,
        ];
        const DIR_MODES: [u32; 6] = [0o755, 0o700, 0o1777, 0o2775, 0o555, 0o711];
        const IDS: [u32; 8] = [0, 1, 1000, 65_534, 65_535, 65_536, 100_000, 4_000_000_000];
        const SECS: [i64; 7] = [
            0,
            1,
            -1,
            i32::MAX as i64,
            i32::MIN as i64,
            1_000_000_000,
            -1_000_000_000,
        ];
        let root = is_root();
        let created = std::mem::take(&mut self.created);
        for (path, kind) in created.iter().rev() {
            let c = CString::new(path.as_os_str().as_bytes()).unwrap();
            if root {
                let (uid, gid) = (self.rng.pick(&IDS), self.rng.pick(&IDS));
                std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
            }
            // chmod after chown: chown clears setuid and setgid.
            let mode = match kind {
                Kind::Dir => self.rng.pick(&DIR_MODES) | if root { 0 } else { 0o700 },
                Kind::File => self.rng.pick(&FILE_MODES) | if root { 0 } else { 0o600 },
                Kind::Fifo => self.rng.pick(&[0o600, 0o644, 0o620]),
                Kind::Symlink => 0,
            };
            if *kind != Kind::Symlink {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
            }
            let mut time = || {
                let secs = if self.rng.below(4) == 0 {
                    self.rng.pick(&SECS)
                } else {
                    self.rng.below(1 << 32) as i64 - (1 << 31)
                };
                let nanos = if self.rng.below(5) == 0 {
                    0
                } else {
                    self.rng.below(1_000_000_000) as i64
                };
                libc::timespec {
                    tv_sec: secs as libc::time_t,
                    tv_nsec: nanos as _,
                }
            };
            let times = [time(), time()];
            // SAFETY: `c` is a NUL-terminated path and `times` two timespecs, both outliving the
            // call.
            let rc = unsafe {
                libc::utimensat(
                    libc::AT_FDCWD,
                    c.as_ptr(),
                    times.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
            assert_eq!(rc, 0, "utimensat {}", path.display());
        }
        self.created = created;
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

// ---------------------------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------------------------

/// The source tree, its image, and `lstat` of every source entry taken before `mke2fs` ran, keyed
/// by path relative to the source root ("" is the root).
struct Fixture {
    dir: PathBuf,
    src: PathBuf,
    image: PathBuf,
    snapshot: HashMap<Vec<u8>, Metadata>,
}

/// Tests of this file that take the fixture: the last to finish removes its directory.
const FIXTURE_USERS: usize = 7;
static FIXTURE_DONE: AtomicUsize = AtomicUsize::new(0);
static FIXTURE_FAILED: AtomicBool = AtomicBool::new(false);

/// One test's hold on the fixture.
struct Held(&'static Fixture);

impl Drop for Held {
    fn drop(&mut self) {
        if std::thread::panicking() {
            FIXTURE_FAILED.store(true, Ordering::SeqCst);
        }
        if FIXTURE_DONE.fetch_add(1, Ordering::SeqCst) + 1 == FIXTURE_USERS {
            if FIXTURE_FAILED.load(Ordering::SeqCst) {
                eprintln!("tree fixture kept for inspection: {}", self.0.dir.display());
            } else {
                let _ = std::fs::remove_dir_all(&self.0.dir);
            }
        }
    }
}

/// The fixture, built by the first test that asks; `None` (after saying so) when e2fsprogs is
/// missing. It lives in `/dev/shm/aios-tree-PID` (tmpfs: writing ~25k files and reading them
/// back off a disk took minutes), else in `CARGO_TARGET_TMPDIR`. Statics are never dropped: the
/// last of [`FIXTURE_USERS`] tests removes it (unless one failed), and directories left by
/// processes that are gone (a filtered run) are removed when the next one starts.
fn fixture(test: &str) -> Option<Held> {
    static FIXTURE: OnceLock<Option<Fixture>> = OnceLock::new();
    let fx = FIXTURE
        .get_or_init(|| common::have_mke2fs("tree.rs").then(build))
        .as_ref();
    if fx.is_none() {
        eprintln!("SKIPPED {test}: e2fsprogs not installed");
    }
    fx.map(Held)
}

fn build() -> Fixture {
    let started = std::time::Instant::now();
    let shm = Path::new("/dev/shm");
    let base = if free_bytes(shm) > 1 << 30 {
        shm
    } else {
        Path::new(env!("CARGO_TARGET_TMPDIR"))
    };
    std::fs::create_dir_all(base).unwrap();
    for entry in std::fs::read_dir(base).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("aios-tree-") {
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = base.join(format!("aios-tree-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut g = generate(&src);
    g.apply_metadata();
    // lstat only from here on: listing or reading an entry may move its atime.
    let mut snapshot = HashMap::new();
    for (path, _) in &g.created {
        let rel = path.strip_prefix(&src).unwrap().as_os_str().as_bytes();
        snapshot.insert(rel.to_vec(), std::fs::symlink_metadata(path).unwrap());
    }
    snapshot.insert(Vec::new(), std::fs::symlink_metadata(&src).unwrap());
    // Hard links: the second and third names share the first one's inode.
    for (name, of) in [
        (b"hard/b".as_slice(), b"hard/a".as_slice()),
        (b"tree/d2/also_a", b"hard/a"),
        (b"odd/-hard \xe9", b"hard/c"),
    ] {
        let meta = std::fs::symlink_metadata(src.join(p(name))).unwrap();
        assert_eq!(meta.ino(), snapshot[of].ino());
        snapshot.insert(name.to_vec(), meta);
    }
    let generated = started.elapsed();

    let image = dir.join("img");
    // 1 GiB: 65536 inodes at mke2fs's default ratio, for ~26k; the image file stays sparse.
    let out = Command::new("mke2fs")
        .args(["-q", "-t", "ext4", "-F", "-b", "4096", "-d"])
        .arg(&src)
        .arg(&image)
        .arg("1G")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mke2fs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made = started.elapsed();
    // mke2fs -d links entries linearly; `e2fsck -D` rebuilds directories, indexing big/ (and
    // the others that span several blocks once leaves keep the slack).
    let conf = dir.join("e2fsck.conf");
    std::fs::write(
        &conf,
        format!("[options]\n\tindexed_dir_slack_percentage = {HTREE_SLACK_PERCENT}\n"),
    )
    .unwrap();
    let out = Command::new("e2fsck")
        .env("E2FSCK_CONFIG", &conf)
        .args(["-f", "-y", "-D"])
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0..=1)),
        "e2fsck -fyD failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "tree fixture: {} names generated in {generated:?}, mke2fs done at {made:?}, e2fsck at {:?}",
        snapshot.len(),
        started.elapsed()
    );
    Fixture {
        dir,
        src,
        image,
        snapshot,
    }
}

/// Bytes free for an unprivileged user in the file system holding `dir` (0 if it does not exist).
// `f_bavail` and `f_frsize` are u64 here, narrower on some targets.
#[allow(clippy::useless_conversion)]
fn free_bytes(dir: &Path) -> u64 {
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
        return 0;
    };
    // SAFETY: an all-zero statvfs is a valid value of this plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a statvfs, both outliving the call.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize))
}

fn mount(fx: &Fixture, options: MountOptions) -> Fs<PsyncDevice> {
    // Read-only and shared: the tests mount the one image at the same time.
    let config = PsyncConfig {
        target: TargetOptions {
            read_only: true,
            exclusive: false,
        },
        ..PsyncConfig::default()
    };
    let device = PsyncDevice::open(&fx.image, config).unwrap();
    Fs::mount(device, options).unwrap()
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        name.to_vec()
    } else {
        [dir, b"/", name].concat()
    }
}

/// `/` + a path relative to the image root.
fn abs(rel: &[u8]) -> Vec<u8> {
    [b"/".as_slice(), rel].concat()
}

fn show(rel: &[u8]) -> String {
    format!("/{}", rel.escape_ascii())
}

/// Every regular file of the image, `(path relative to the root, inode)`, found through
/// `read_dir` alone (no path lookups), in a stable order.
fn regular_files<D: Device>(fs: &Fs<D>, io: &mut IoCtx<D::Queue>) -> Vec<(Vec<u8>, u32)> {
    let mut out = Vec::new();
    let mut dirs = vec![(Vec::new(), ROOT_INO)];
    while let Some((rel, ino)) = dirs.pop() {
        for e in fs.read_dir(io, ino).unwrap() {
            let child = join(&rel, &e.name);
            match e.file_type {
                file_type::DIR if child != b"lost+found" => dirs.push((child, e.ino)),
                file_type::REG_FILE => out.push((child, e.ino)),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------
// Names, types, lookups, stat, symlinks
// ---------------------------------------------------------------------------------------------

fn expected_type(meta: &Metadata) -> u8 {
    let t = meta.file_type();
    if t.is_dir() {
        file_type::DIR
    } else if t.is_symlink() {
        file_type::SYMLINK
    } else if t.is_file() {
        file_type::REG_FILE
    } else {
        file_type::FIFO
    }
}

/// Whether the image keeps source nanoseconds: `mke2fs` 1.47.0 stores whole seconds, later
/// releases the nanoseconds too. Either way, every inode must follow the same rule.
#[derive(Default)]
struct NanosPolicy {
    kept: usize,
    dropped: usize,
}

impl NanosPolicy {
    fn check(&mut self, what: &str, image: aios_fs::Timestamp, secs: i64, nanos: i64, at: &str) {
        assert_eq!(image.secs, secs, "{what} seconds of {at}");
        let nanos = nanos as u32;
        assert!(
            image.nanos == nanos || image.nanos == 0,
            "{what} nanoseconds of {at}: image {} source {nanos}",
            image.nanos
        );
        if nanos != 0 {
            if image.nanos == nanos {
                self.kept += 1;
            } else {
                self.dropped += 1;
            }
        }
    }
}

fn check_stat(stat: &Stat, meta: &Metadata, at: &str, nanos: &mut NanosPolicy) {
    assert_eq!(u32::from(stat.mode), meta.mode(), "mode of {at}");
    assert_eq!(stat.uid, meta.uid(), "uid of {at}");
    assert_eq!(stat.gid, meta.gid(), "gid of {at}");
    assert_eq!(u64::from(stat.nlink), meta.nlink(), "nlink of {at}");
    if !meta.is_dir() {
        // Directory sizes depend on the layout, which differs between the two file systems.
        assert_eq!(stat.size_bytes, meta.len(), "size of {at}");
    }
    nanos.check("mtime", stat.mtime, meta.mtime(), meta.mtime_nsec(), at);
    nanos.check("atime", stat.atime, meta.atime(), meta.atime_nsec(), at);
    nanos.check("ctime", stat.ctime, meta.ctime(), meta.ctime_nsec(), at);
}

#[derive(Default)]
struct Walk {
    entries: usize,
    lookups: usize,
    symlinks: usize,
    /// Source inode -> image inode, and back: hard links must map one to one.
    inodes: HashMap<u64, u32>,
    image_inodes: HashMap<u32, u64>,
    nanos: NanosPolicy,
    max_depth: usize,
}

/// Compares directory `rel` (image inode `ino`) and everything below it with the source.
fn walk_dir<D: Device>(
    fx: &Fixture,
    fs: &Fs<D>,
    io: &mut IoCtx<D::Queue>,
    rel: &[u8],
    ino: u32,
    depth: usize,
    w: &mut Walk,
) {
    w.max_depth = w.max_depth.max(depth);
    let mut image: BTreeMap<Vec<u8>, (u32, u8)> = BTreeMap::new();
    for e in fs.read_dir(io, ino).unwrap() {
        if rel.is_empty() && e.name == b"lost+found" {
            continue;
        }
        let twice = image.insert(e.name.clone(), (e.ino, e.file_type));
        assert!(
            twice.is_none(),
            "{} listed twice",
            show(&join(rel, &e.name))
        );
    }
    let mut source: Vec<Vec<u8>> = std::fs::read_dir(fx.src.join(p(rel)))
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    source.sort();
    let listed: Vec<&Vec<u8>> = image.keys().collect();
    assert!(
        listed.iter().copied().eq(source.iter()),
        "entries of {} differ: {} in the image, {} in the source",
        show(rel),
        listed.len(),
        source.len()
    );
    // In big/, only a seeded sample (and the first and last names) is looked up by path.
    let big = rel == b"big";
    let mut sample = Rng(SEED ^ 0xB16);
    let big_stride = (BIG_DIR_ENTRIES / BIG_LOOKUPS) as u64;
    for (i, (name, &(child_ino, ftype))) in image.iter().enumerate() {
        let child = join(rel, name);
        let at = show(&child);
        let meta = fx
            .snapshot
            .get(&child)
            .unwrap_or_else(|| panic!("{at}: not generated"));
        assert_eq!(ftype, expected_type(meta), "file type of {at}");
        w.entries += 1;
        if !big || i == 0 || i + 1 == image.len() || sample.below(big_stride) == 0 {
            assert_eq!(
                fs.lookup(io, abs(&child)).unwrap(),
                child_ino,
                "lookup of {at}"
            );
            w.lookups += 1;
        }
        let stat = fs.stat(io, child_ino).unwrap();
        assert_eq!(stat.ino, child_ino);
        check_stat(&stat, meta, &at, &mut w.nanos);
        let prior = w.inodes.insert(meta.ino(), child_ino);
        assert!(
            prior.is_none_or(|p| p == child_ino),
            "hard link {at} is another inode"
        );
        let prior = w.image_inodes.insert(child_ino, meta.ino());
        assert!(
            prior.is_none_or(|p| p == meta.ino()),
            "{at} shares inode {child_ino} with an unrelated entry"
        );
        match ftype {
            file_type::DIR => walk_dir(fx, fs, io, &child, child_ino, depth + 1, w),
            file_type::SYMLINK => {
                let target = std::fs::read_link(fx.src.join(p(&child))).unwrap();
                assert_eq!(
                    fs.read_link(io, child_ino).unwrap(),
                    target.as_os_str().as_bytes(),
                    "target of {at}"
                );
                w.symlinks += 1;
            }
            _ => {}
        }
    }
}

#[test]
fn names_types_lookups_stat_and_symlinks_agree_with_the_source() {
    let Some(held) = fixture("names_types_lookups_stat_and_symlinks_agree_with_the_source") else {
        return;
    };
    let fx = held.0;
    let fs = mount(fx, MountOptions::default());
    let mut io = fs.io().unwrap();
    let mut w = Walk::default();
    let root = fs.stat(&mut io, ROOT_INO).unwrap();
    // mke2fs -d gives the root its own owner, mode and times, not the source's; its links are
    // the source's plus lost+found.
    let source_root = &fx.snapshot[&Vec::new()];
    assert_eq!(u32::from(root.mode) & 0o170000, 0o040000);
    assert_eq!(u64::from(root.nlink), source_root.nlink() + 1);
    walk_dir(fx, &fs, &mut io, b"", ROOT_INO, 0, &mut w);
    eprintln!(
        "walked {} entries ({} path lookups, {} symlinks, depth {}); nanoseconds kept {} dropped {}",
        w.entries, w.lookups, w.symlinks, w.max_depth, w.nanos.kept, w.nanos.dropped
    );
    // Every generated name was found (the walk fails on any name the source lacks).
    assert_eq!(w.entries, fx.snapshot.len() - 1);
    assert!(w.entries > TREE_FILES + BIG_DIR_ENTRIES);
    assert!(w.max_depth > DEEP_LEVELS, "depth {}", w.max_depth);
    assert!(w.lookups > TREE_FILES + BIG_LOOKUPS / 2);
    // One rule for the whole image, and the tree did exercise it.
    assert!(
        (w.nanos.kept == 0) != (w.nanos.dropped == 0),
        "nanoseconds kept for {} times, dropped for {}",
        w.nanos.kept,
        w.nanos.dropped
    );
}

/// Lookups through symlinks to directories, chains, absolute targets, and the long path.
#[test]
fn lookups_follow_directory_links_and_long_paths() {
    let Some(held) = fixture("lookups_follow_directory_links_and_long_paths") else {
        return;
    };
    let fx = held.0;
    let fs = mount(fx, MountOptions::default());
    let mut io = fs.io().unwrap();
    let mut l = |path: &[u8]| fs.lookup(&mut io, path).unwrap();
    let l01 = l(b"/deep/l00/l01");
    // A trailing slash follows a last symlink, as in Linux.
    assert_eq!(l(b"/links/to_dir/"), l01);
    assert_eq!(l(b"/links/to_link_to_dir/l02/.."), l01);
    assert_eq!(l(b"/links/absolute_dir/l01"), l01);
    let mut bottom = b"/deep".to_vec();
    for level in 0..DEEP_LEVELS {
        bottom.extend_from_slice(format!("/l{level:02}").as_bytes());
    }
    let up_four = [bottom.as_slice(), b"/up_four/file"].concat();
    bottom.extend_from_slice(b"/bottom.txt");
    let bottom = l(&bottom);
    assert_eq!(
        l(&up_four),
        l(b"/deep/l00/l01/l02/l03/l04/l05/l06/l07/l08/l09/l10/l11/l12/l13/l14/l15/l16/file")
    );
    assert_eq!(
        fs.lookup_follow(&mut io, "/links/slow_to_bottom").unwrap(),
        bottom
    );
    assert_ne!(fs.lookup(&mut io, "/links/slow_to_bottom").unwrap(), bottom);
    assert_eq!(
        fs.lookup(&mut io, b"/odd/link \xfe").unwrap(),
        fs.lookup(&mut io, b"/odd/link \xfe").unwrap()
    );
    assert_eq!(
        fs.lookup_follow(&mut io, b"/odd/link \xfe").unwrap(),
        fs.lookup(&mut io, b"/odd/dir \n\xff/inner").unwrap()
    );
    assert!(fs.lookup_follow(&mut io, "/links/dangling").is_err());
    assert!(fs.lookup(&mut io, "/links/dangling").is_ok());
    assert_eq!(
        fs.lookup_follow(&mut io, "/links/fast_file").unwrap(),
        fs.lookup(&mut io, "/tree/d1/s0/f0001").unwrap()
    );
    assert!(matches!(
        fs.lookup(&mut io, "/links/fast_file/"),
        Err(aios_fs::FsError::NotADirectory { .. })
    ));
    let mut long = b"/long".to_vec();
    for level in 0..LONG_LEVELS {
        long.extend_from_slice(format!("/{level:02}{}", "L".repeat(248)).as_bytes());
    }
    long.extend_from_slice(b"/at_the_end");
    assert!(long.len() > 3000);
    let ino = fs.lookup(&mut io, &long).unwrap();
    assert_eq!(fs.stat(&mut io, ino).unwrap().size_bytes, 9999);
}

/// The image really has the structures the acceptance point names.
#[test]
fn the_image_has_a_two_level_htree_a_depth_2_extent_tree_and_holes() {
    let Some(held) = fixture("the_image_has_a_two_level_htree_a_depth_2_extent_tree_and_holes")
    else {
        return;
    };
    let fx = held.0;
    let fs = mount(fx, MountOptions::default());
    let mut io = fs.io().unwrap();
    let big = fs.lookup(&mut io, "/big").unwrap();
    let inode = fs.read_inode(&mut io, big).unwrap();
    assert_ne!(inode.flags & EXT4_INDEX_FL, 0, "/big is not htree-indexed");
    assert_eq!(fs.read_dir(&mut io, big).unwrap().len(), BIG_DIR_ENTRIES);
    let htree = common::debugfs("htree /big", &fx.image);
    assert!(htree.contains("Root node dump"), "debugfs htree: {htree}");
    assert!(
        htree.contains("Indirect levels: 1"),
        "/big should have a two-level htree: {}",
        htree.lines().take(8).collect::<Vec<_>>().join("\n")
    );
    // Depth-2 extent tree with one extent per written block.
    let frag = fs.lookup(&mut io, "/frag/depth2").unwrap();
    let file = fs.open(&mut io, frag).unwrap();
    assert_eq!(file.extents().mappings().len(), FRAG_EXTENTS);
    assert!(file.extents().depth() >= 2, "extent depth of /frag/depth2");
    // Holes at the start, in the middle, at the end, and a file that is all hole.
    let first_block = |path: &str, io: &mut IoCtx<_>| {
        let ino = fs.lookup(io, path).unwrap();
        let file = fs.open(io, ino).unwrap();
        let m = file.extents().mappings().to_vec();
        (file.size_bytes().div_ceil(4096), m)
    };
    let (_, m) = first_block("/sparse/hole_start", &mut io);
    assert!(m[0].logical_block >= (2 << 20) / 4096);
    let (_, m) = first_block("/sparse/hole_middle", &mut io);
    assert!(m.len() >= 2 && m[1].logical_block > m[0].end_block() + 1000);
    let (blocks, m) = first_block("/sparse/hole_end", &mut io);
    assert!(m.last().unwrap().end_block() < blocks - 1000);
    assert!(blocks > 1000);
    let (_, m) = first_block("/sparse/all_hole", &mut io);
    assert!(m.is_empty());
    // Zero blocks written as data became a hole.
    let (_, m) = first_block("/tree/zero_blocks_inside", &mut io);
    assert!(m.len() >= 2, "zero blocks were stored: {m:?}");
    // Fast symlinks live in the inode, slow ones in a block.
    for (path, fast) in [
        ("/links/len59", true),
        ("/links/len60", false),
        ("/links/fast_file", true),
        ("/links/slow_3990", false),
    ] {
        let ino = fs.lookup(&mut io, path).unwrap();
        let inode = fs.read_inode(&mut io, ino).unwrap();
        assert_eq!(!inode.uses_extents(), fast, "{path}");
    }
    let a = fs.lookup(&mut io, "/hard/a").unwrap();
    assert_eq!(fs.stat(&mut io, a).unwrap().nlink, 3);
    assert_eq!(fs.lookup(&mut io, "/tree/d2/also_a").unwrap(), a);
}

// ---------------------------------------------------------------------------------------------
// Contents
// ---------------------------------------------------------------------------------------------

/// Read sizes cycled through while reading whole files: single bytes, page boundaries, one
/// maximal request and more.
const CHUNKS: [usize; 8] = [4097, 1, 65_536, 4095, 131_073, 300, 1 << 20, 4096];

/// Reads every regular file whole with `read` (`cached` = `Fs::read`, else `Fs::read_at`) and
/// compares it with the source; returns (files, bytes).
fn read_every_file(fx: &Fixture, options: MountOptions, cached: bool) -> (usize, u64) {
    let started = std::time::Instant::now();
    let fs = mount(fx, options);
    let mut io = fs.io().unwrap();
    let files = regular_files(&fs, &mut io);
    let regular = fx.snapshot.values().filter(|m| m.is_file()).count();
    // Hard links are one file under several names: count names.
    assert_eq!(files.len(), regular, "regular files in the image");
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    for (k, (rel, ino)) in files.iter().enumerate() {
        let file = fs.open(&mut io, *ino).unwrap();
        let source = std::fs::read(fx.src.join(p(rel))).unwrap();
        assert_eq!(
            file.size_bytes(),
            source.len() as u64,
            "size of {}",
            show(rel)
        );
        let mut pos = 0usize;
        let mut step = k;
        loop {
            let want = CHUNKS[step % CHUNKS.len()];
            step += 1;
            let chunk = &mut buf[..want];
            let n = if cached {
                fs.read(&mut io, &file, pos as u64, chunk).unwrap()
            } else {
                fs.read_at(&mut io, &file, pos as u64, chunk).unwrap()
            };
            let expect = want.min(source.len() - pos);
            assert_eq!(n, expect, "length of a read at {pos} of {}", show(rel));
            if n == 0 {
                break;
            }
            assert!(
                chunk[..n] == source[pos..pos + n],
                "bytes {pos}..{} of {}",
                pos + n,
                show(rel)
            );
            pos += n;
        }
        bytes += source.len() as u64;
    }
    eprintln!(
        "{} {}: {} files, {bytes} bytes in {:?}",
        options.read_mode.name(),
        if cached { "read" } else { "read_at" },
        files.len(),
        started.elapsed()
    );
    assert!(files.len() > TREE_FILES + BIG_DIR_ENTRIES - 100);
    (files.len(), bytes)
}

#[test]
fn every_file_reads_back_byte_identical_through_read_at() {
    let Some(held) = fixture("every_file_reads_back_byte_identical_through_read_at") else {
        return;
    };
    let fx = held.0;
    read_every_file(fx, MountOptions::default(), false);
}

#[test]
fn every_file_reads_back_byte_identical_through_the_cache_in_sync_mode() {
    let Some(held) = fixture("every_file_reads_back_byte_identical_through_the_cache_in_sync_mode")
    else {
        return;
    };
    let fx = held.0;
    let options = MountOptions {
        read_mode: ReadMode::Sync,
        ..MountOptions::default()
    };
    read_every_file(fx, options, true);
}

#[test]
fn every_file_reads_back_byte_identical_through_the_cache_in_async_mode() {
    let Some(held) =
        fixture("every_file_reads_back_byte_identical_through_the_cache_in_async_mode")
    else {
        return;
    };
    let fx = held.0;
    let options = MountOptions {
        read_mode: ReadMode::Async,
        ..MountOptions::default()
    };
    read_every_file(fx, options, true);
}

/// Property: random `(file, offset, len)` cached reads on an async mount (small cache, readahead
/// on) return the source bytes, with offsets near the end, in holes and across page boundaries.
#[test]
fn random_cached_reads_match_the_source_tree() {
    let Some(held) = fixture("random_cached_reads_match_the_source_tree") else {
        return;
    };
    let fx = held.0;
    let options = MountOptions {
        read_mode: ReadMode::Async,
        cache_pages: 512,
        pool_pages: 32,
        readahead_pages: 8,
        ..MountOptions::default()
    };
    let fs = mount(fx, options);
    let mut io = fs.io().unwrap();
    let all = regular_files(&fs, &mut io);
    // Half the cases pick a file with holes or many extents, or a large one.
    let interesting: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, (rel, _))| {
            rel.starts_with(b"sparse/")
                || rel.starts_with(b"frag/")
                || fx.snapshot[rel].len() > 1 << 20
                || rel == b"tree/zero_blocks_inside"
        })
        .map(|(i, _)| i)
        .collect();
    assert!(interesting.len() > 10);
    let opened: RefCell<HashMap<usize, (aios_fs::File, std::fs::File)>> = RefCell::default();
    let io = RefCell::new(io);
    let mut runner = TestRunner::new(Config {
        cases: 600,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        any::<bool>(),
        any::<usize>(),
        0u8..4,
        any::<u64>(),
        prop_oneof![0usize..10, 0usize..9000, 0usize..400_000],
    );
    runner
        .run(&strategy, |(pick_interesting, which, kind, raw, len)| {
            let index = if pick_interesting {
                interesting[which % interesting.len()]
            } else {
                which % all.len()
            };
            let (rel, ino) = &all[index];
            let mut opened = opened.borrow_mut();
            let (file, source) = opened.entry(index).or_insert_with(|| {
                let file = fs.open(&mut io.borrow_mut(), *ino).unwrap();
                (file, std::fs::File::open(fx.src.join(p(rel))).unwrap())
            });
            let size = file.size_bytes();
            let offset = match kind {
                // Near the end (reads turn short) and past it.
                0 => (size + 4096).saturating_sub(raw % 70_000),
                // Anywhere.
                1 => raw % (size + 1),
                // Inside a hole, if the file has one.
                2 => {
                    let holes: Vec<(u64, u64)> = holes(file.extents().mappings(), size);
                    match holes.get((raw % 64) as usize % holes.len().max(1)) {
                        Some(&(from, to)) => from + (raw >> 8) % (to - from).max(1),
                        None => raw % (size + 1),
                    }
                }
                // Just around a page boundary.
                _ => {
                    let page = (raw >> 4) % (size / 4096 + 1);
                    (page * 4096 + (raw % 9)).saturating_sub(4)
                }
            };
            let mut buf = vec![0xA5u8; len];
            let n = fs
                .read(&mut io.borrow_mut(), file, offset, &mut buf)
                .unwrap();
            let expect = (size.saturating_sub(offset) as usize).min(len);
            prop_assert_eq!(n, expect, "length at {} of {}", offset, show(rel));
            let mut want = vec![0u8; expect];
            source.read_exact_at(&mut want, offset).unwrap();
            prop_assert!(
                buf[..n] == want[..],
                "bytes at {} (+{}) of {}",
                offset,
                len,
                show(rel)
            );
            prop_assert!(buf[n..].iter().all(|&b| b == 0xA5), "wrote past the end");
            Ok(())
        })
        .unwrap();
    fs.finish_readahead(&mut io.borrow_mut());
    let stats = fs.cache().stats();
    assert!(stats.evictions > 0, "the small cache must evict: {stats:?}");
}

/// The holes `[from, to)` (bytes) below `size` between the mappings of an extent map.
fn holes(mappings: &[aios_fs::Mapping], size: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = 0u64;
    for m in mappings {
        let start = m.logical_block * 4096;
        if start > at {
            out.push((at, start.min(size)));
        }
        at = m.end_block() * 4096;
    }
    if at < size {
        out.push((at, size));
    }
    out.retain(|(a, b)| a < b);
    out
}
