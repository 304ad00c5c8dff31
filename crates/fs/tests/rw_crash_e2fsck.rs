//! Journal interop under crashes: `e2fsck -fy` replays a crash left by [`aios_fs::RwFs`] to the
//! same state as our own recovery (issue 4, acceptance "journal interop both ways", first half).
//!
//! # What runs
//! A fixed workload (mkdir, create, writes of 1 B to 130 KB, in-place overwrites, truncate,
//! rename, rename over an existing file, directory rename, symlink, unlink, rmdir; enough
//! transactions to wrap the 1024-block journal of a 32 MiB `mke2fs -t ext4` image, which has
//! `metadata_csum`) runs through [`RwFs`] on the emulated `nand` device (volatile write cache,
//! virtual clock, write log recorded), then unmounts. From the write log, a deterministic sample
//! of crash points (the first and last boundary, and evenly spread ones with a fixed jitter) is
//! rebuilt with [`aios_device_emu::Replay`], each keeping or dropping the unflushed block-writes
//! by a per-point seed, as `EmuDevice::crash(seed)` does.
//!
//! # What is compared, per crash state
//! - copy A: our recovery (`RwFs::mount` then `unmount`, on an `instant` emulated device);
//!   `e2fsck -fn` must find it clean.
//! - copy B: `e2fsck -fy` (replays the journal, then checks). Exit 0 or 1, and its output may only
//!   say it recovered the journal, the pass headers, "FILE SYSTEM WAS MODIFIED" and the summary:
//!   any repair beyond the replay fails the test with the whole output.
//! - The trees of A and B, read with the read-only [`Fs::mount`]: names, types, every `stat` field
//!   (mode, uid, gid, size, link count, times, blocks, inode number) and contents (file bytes,
//!   link targets) identical.
//! - The images block by block: identical but for the fields listed in [`masked_fields`], each a
//!   field that a mount or a check legitimately stamps differently (see there).
//! - A's tree is the model after a prefix of the operations that holds every operation
//!   acknowledged before the crash point (each operation is one transaction, so the op in flight
//!   is either wholly there or not; its in-place data writes may show, as ordered mode allows).
//!
//! Skips loudly without e2fsprogs.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use aios_device_emu::{DiskImage, EmuConfig, EmuDevice, LoggedCommand};
use aios_fs::{Fs, MountOptions, RwError, RwFs, RwOptions, Stat};
use common::{have_mke2fs, pattern};

/// The device the workload runs on: `nand` preset (volatile cache), write log on.
const EMU_RECORD: &str = "nand,size=32M,arena=16M,clock=virtual,record";
/// The device our recovery runs on (timing does not matter there).
const EMU_RECOVER: &str = "instant,size=32M,arena=16M,clock=virtual";
/// Crash points spread over the whole log.
const SPREAD: usize = 64;
/// Boundaries checked before each write of the journal superblock.
const JSB_BEFORE: usize = 12;
/// The first 8 bytes of a jbd2 superblock (v2): magic, block type 4, big-endian.
const JSB_MAGIC: [u8; 8] = [0xC0, 0x3B, 0x39, 0x98, 0, 0, 0, 4];

#[derive(Debug, Clone)]
enum Op {
    Mkdir(String),
    Create(String),
    Write(String, u64, Vec<u8>),
    Truncate(String, u64),
    Rename(String, String),
    Symlink(String, String),
    Unlink(String),
    Rmdir(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    File(Vec<u8>),
    Symlink(Vec<u8>),
}

/// The model: every path (root and `lost+found` excluded) and what it is.
type Model = BTreeMap<String, Node>;

fn apply(m: &mut Model, op: &Op) {
    match op {
        Op::Mkdir(p) => {
            assert!(m.insert(p.clone(), Node::Dir).is_none(), "{op:?}");
        }
        Op::Create(p) => {
            assert!(
                m.insert(p.clone(), Node::File(Vec::new())).is_none(),
                "{op:?}"
            );
        }
        Op::Symlink(p, t) => {
            assert!(
                m.insert(p.clone(), Node::Symlink(t.as_bytes().to_vec()))
                    .is_none(),
                "{op:?}"
            );
        }
        Op::Write(p, off, data) => {
            let Some(Node::File(f)) = m.get_mut(p) else {
                panic!("{op:?}")
            };
            let end = *off as usize + data.len();
            if f.len() < end {
                f.resize(end, 0);
            }
            f[*off as usize..end].copy_from_slice(data);
        }
        Op::Truncate(p, size) => {
            let Some(Node::File(f)) = m.get_mut(p) else {
                panic!("{op:?}")
            };
            f.resize(*size as usize, 0);
        }
        Op::Unlink(p) => {
            assert!(!matches!(m.remove(p), Some(Node::Dir) | None), "{op:?}");
        }
        Op::Rmdir(p) => {
            assert_eq!(m.remove(p), Some(Node::Dir), "{op:?}");
            assert!(!m.keys().any(|k| k.starts_with(&format!("{p}/"))), "{op:?}");
        }
        Op::Rename(from, to) => {
            let node = m.remove(from).unwrap_or_else(|| panic!("{op:?}"));
            let prefix = format!("{from}/");
            let moved: Vec<String> = m
                .keys()
                .filter(|k| k.starts_with(&prefix))
                .cloned()
                .collect();
            for k in moved {
                let n = m.remove(&k).unwrap();
                m.insert(format!("{to}/{}", &k[prefix.len()..]), n);
            }
            if let Some(old) = m.insert(to.clone(), node) {
                assert!(!matches!(old, Node::Dir), "{op:?}: replaces a directory");
            }
        }
    }
}

/// ~230 transactions, more journal blocks than the 1024-block log holds: commits checkpoint.
fn workload() -> Vec<Op> {
    let mut ops = Vec::new();
    for d in 0..4 {
        ops.push(Op::Mkdir(format!("/d{d}")));
    }
    let sizes = [1usize, 4096, 5000, 40_000, 130_000, 300];
    for i in 0..56u64 {
        let p = format!("/d{}/f{i}", i % 4);
        ops.push(Op::Create(p.clone()));
        let len = sizes[i as usize % sizes.len()];
        ops.push(Op::Write(p.clone(), 0, pattern(i, len)));
        if i % 3 == 0 {
            // In place over mapped blocks (and past the end for the short ones).
            ops.push(Op::Write(p.clone(), len as u64 / 2, pattern(i + 100, 3000)));
        }
        if i % 5 == 2 {
            ops.push(Op::Truncate(p.clone(), 1234));
        }
        if i % 7 == 6 {
            ops.push(Op::Symlink(
                format!("/d{}/l{i}", (i + 1) % 4),
                format!("../d{}/f{i}", i % 4),
            ));
        }
        if i % 4 == 3 {
            // f{i-2} was created two rounds ago in d{(i-2)%4} and never moved.
            ops.push(Op::Rename(
                format!("/d{}/f{}", (i - 2) % 4, i - 2),
                format!("/d{}/r{}", (i + 1) % 4, i - 2),
            ));
        }
        if i % 8 == 5 {
            // f{i-1} (i-1 = 4 mod 8) is never renamed.
            ops.push(Op::Unlink(format!("/d{}/f{}", (i - 1) % 4, i - 1)));
        }
    }
    // Rename over an existing file, a directory rename with contents, then teardown.
    ops.push(Op::Rename("/d0/f48".into(), "/d3/f55".into()));
    ops.push(Op::Mkdir("/d0/sub".into()));
    ops.push(Op::Create("/d0/sub/x".into()));
    ops.push(Op::Write("/d0/sub/x".into(), 0, pattern(900, 7000)));
    ops.push(Op::Rename("/d0/sub".into(), "/d1/sub2".into()));
    ops.push(Op::Truncate("/d1/sub2/x".into(), 9000));
    ops.push(Op::Unlink("/d1/sub2/x".into()));
    ops.push(Op::Rmdir("/d1/sub2".into()));
    ops
}

fn short(op: &Op) -> String {
    match op {
        Op::Write(p, off, d) => format!("write {p} at {off}, {} bytes", d.len()),
        other => format!("{other:?}"),
    }
}

fn run_op(fs: &mut RwFs<EmuDevice>, op: &Op) -> Result<(), RwError> {
    match op {
        Op::Mkdir(p) => fs.mkdir(p, 0o755).map(drop),
        Op::Create(p) => fs.create(p, 0o644).map(drop),
        Op::Symlink(p, t) => fs.symlink(p, t.as_bytes()).map(drop),
        Op::Write(p, off, data) => fs.write(p, *off, data),
        Op::Truncate(p, size) => fs.truncate(p, *size),
        Op::Rename(from, to) => fs.rename(from, to),
        Op::Unlink(p) => fs.unlink(p),
        Op::Rmdir(p) => fs.rmdir(p),
    }
}

fn e2fsck(args: &str, image: &Path) -> (Option<i32>, String) {
    let out = Command::new("e2fsck")
        .arg(args)
        .arg(image)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// What one path looks like on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    stat: Stat,
    /// File bytes or link target; empty for a directory.
    content: Vec<u8>,
}

const S_IFMT: u16 = 0o170000;
const S_IFDIR: u16 = 0o040000;
const S_IFREG: u16 = 0o100000;
const S_IFLNK: u16 = 0o120000;

/// Every path through a fresh read-only mount (psync over the image file), `lost+found` skipped.
/// The root is the entry "/".
fn read_tree(image: &Path) -> BTreeMap<String, Seen> {
    let device =
        aios_device_psync::PsyncDevice::open(image, aios_device_psync::PsyncConfig::default())
            .unwrap();
    let fs = Fs::mount(device, MountOptions::default()).unwrap();
    let mut io = fs.io().unwrap();
    let mut tree = BTreeMap::new();
    let root = fs.stat(&mut io, aios_fs::ROOT_INO).unwrap();
    tree.insert(
        "/".to_string(),
        Seen {
            stat: root,
            content: Vec::new(),
        },
    );
    let mut stack = vec![(String::new(), aios_fs::ROOT_INO)];
    while let Some((path, ino)) = stack.pop() {
        for e in fs.read_dir(&mut io, ino).unwrap() {
            let n = String::from_utf8(e.name.clone()).unwrap();
            if path.is_empty() && n == "lost+found" {
                continue;
            }
            let child = format!("{path}/{n}");
            let stat = fs.stat(&mut io, e.ino).unwrap();
            let content = match stat.mode & S_IFMT {
                S_IFDIR => {
                    stack.push((child.clone(), e.ino));
                    Vec::new()
                }
                S_IFLNK => fs.read_link(&mut io, e.ino).unwrap(),
                S_IFREG => {
                    let file = fs.open(&mut io, e.ino).unwrap();
                    let mut buf = vec![0u8; stat.size_bytes as usize];
                    assert_eq!(fs.read_at(&mut io, &file, 0, &mut buf).unwrap(), buf.len());
                    buf
                }
                other => panic!("{child}: unexpected type {other:o}"),
            };
            tree.insert(child, Seen { stat, content });
        }
    }
    tree
}

/// Whether byte `at` of file `path` may differ from the model because `inflight`, the operation
/// whose transaction was not committed at the crash, wrote data in place before its commit
/// (ordered mode allows it, as the kernel's: an overwrite of mapped blocks, a truncate's zeroed
/// tail): the byte must then be what `inflight` wrote.
fn in_place_effect(inflight: Option<&Op>, path: &str, at: usize, got: u8) -> bool {
    match inflight {
        Some(Op::Truncate(p, size)) => p == path && at >= *size as usize && got == 0,
        Some(Op::Write(p, off, data)) => {
            p == path && at >= *off as usize && data.get(at - *off as usize) == Some(&got)
        }
        _ => false,
    }
}

/// Why `seen` is not `model` (types, perms 0644/0755/0777, sizes, link counts, contents), or
/// `None` when it is. Bytes may differ where `inflight` wrote in place.
fn model_mismatch(
    seen: &BTreeMap<String, Seen>,
    model: &Model,
    inflight: Option<&Op>,
) -> Option<String> {
    let got: Vec<&String> = seen.keys().filter(|k| *k != "/").collect();
    let want: Vec<&String> = model.keys().collect();
    if got != want {
        return Some(format!("paths {got:?} vs model {want:?}"));
    }
    let subdirs = |dir: &str| {
        let prefix = if dir == "/" {
            "/".to_string()
        } else {
            format!("{dir}/")
        };
        model
            .iter()
            .filter(|(k, n)| {
                **n == Node::Dir
                    && k.strip_prefix(&prefix)
                        .is_some_and(|rest| !rest.contains('/'))
            })
            .count()
    };
    for (path, s) in seen {
        let (fmt, perm, nlink) = match (path.as_str(), model.get(path)) {
            // Root: lost+found and the model's top-level directories.
            ("/", _) => (S_IFDIR, 0o755, 3 + subdirs("/")),
            (_, Some(Node::Dir)) => (S_IFDIR, 0o755, 2 + subdirs(path)),
            (_, Some(Node::File(_))) => (S_IFREG, 0o644, 1),
            (_, Some(Node::Symlink(_))) => (S_IFLNK, 0o777, 1),
            (_, None) => unreachable!(),
        };
        if s.stat.mode != fmt | perm || usize::from(s.stat.nlink) != nlink {
            return Some(format!(
                "{path}: mode {:o} nlink {} vs model {:o} {nlink}",
                s.stat.mode,
                s.stat.nlink,
                fmt | perm
            ));
        }
        match model.get(path) {
            Some(Node::Symlink(t)) if *t != s.content => {
                return Some(format!("{path}: link target {:?}", s.content))
            }
            Some(Node::File(w)) => {
                if s.content.len() != w.len() || s.stat.size_bytes != w.len() as u64 {
                    return Some(format!("{path}: size {} vs {}", s.content.len(), w.len()));
                }
                let bad = (0..w.len()).find(|&i| {
                    s.content[i] != w[i] && !in_place_effect(inflight, path, i, s.content[i])
                });
                if let Some(i) = bad {
                    return Some(format!("{path}: wrong byte at {i}"));
                }
            }
            _ => {}
        }
    }
    None
}

/// Byte ranges (within one 4 KiB block) where copy A and copy B may differ, by the kind of
/// block, each a field a mount or a check stamps on its own:
/// - block 0, the ext4 superblock (at 1024): free block and inode counts (our mount sums the
///   group descriptors, e2fsck recounts them), mount and write times, mount count (our mount
///   counts one), state and last check (e2fsck stamps its check), lifetime kbytes written (each
///   writer adds its own), the high bytes of those times, and the checksum over all of it.
/// - the journal superblock (jbd2 magic, block type 4): `s_sequence` (the next transaction id:
///   e2fsck and our journal pick it differently after a replay, both past every replayed one),
///   `s_start` (0 on both: clean) and the checksum.
/// - group descriptors (block 1, 64-byte descriptors): free counts, `bg_itable_unused` and the
///   descriptor checksum. e2fsck rewrites every descriptor when it closes
///   (`ext2fs_set_gdt_csum`), setting `bg_itable_unused` from the last inode in use in the inode
///   bitmap; like the kernel's `ext4_free_inode`, we never raise it when an inode is freed. So B's
///   value may be higher than A's, never lower ([`image_differences`] checks that).
fn masked_fields(block: u64, a: &[u8]) -> Vec<(usize, usize, &'static str)> {
    const SB: usize = 1024;
    if block == 0 {
        return vec![
            (SB + 0x0C, 4, "s_free_blocks_count_lo"),
            (SB + 0x10, 4, "s_free_inodes_count"),
            (SB + 0x2C, 4, "s_mtime"),
            (SB + 0x30, 4, "s_wtime"),
            (SB + 0x34, 2, "s_mnt_count"),
            (SB + 0x3A, 2, "s_state"),
            (SB + 0x40, 4, "s_lastcheck"),
            (SB + 0x158, 4, "s_free_blocks_count_hi"),
            (SB + 0x178, 8, "s_kbytes_written"),
            (
                SB + 0x274,
                4,
                "s_wtime_hi, s_mtime_hi, s_mkfs_time_hi, s_lastcheck_hi",
            ),
            (SB + 0x3FC, 4, "s_checksum"),
        ];
    }
    if a.get(0..8) == Some(&JSB_MAGIC[..]) {
        return vec![
            (0x18, 4, "journal s_sequence"),
            (0x1C, 4, "journal s_start"),
            (0xFC, 4, "journal s_checksum"),
        ];
    }
    if block == 1 {
        let mut v = Vec::new();
        for g in 0..4096 / 64 {
            let d = g * 64;
            v.push((
                d + 0x0C,
                4,
                "bg_free_blocks_count_lo, bg_free_inodes_count_lo",
            ));
            v.push((d + 0x1C, 2, "bg_itable_unused_lo"));
            v.push((d + 0x1E, 2, "bg_checksum"));
            v.push((
                d + 0x2C,
                4,
                "bg_free_blocks_count_hi, bg_free_inodes_count_hi",
            ));
            v.push((d + 0x32, 2, "bg_itable_unused_hi"));
        }
        return v;
    }
    Vec::new()
}

/// Differences between A and B outside the allowed fields, described.
fn image_differences(a: &DiskImage, b: &DiskImage) -> Vec<String> {
    let mut out = Vec::new();
    for block in a.diff_blocks(b) {
        let (ba, bb) = (a.block(block).unwrap(), b.block(block).unwrap());
        let masked = masked_fields(block, ba);
        let allowed = |i: usize| masked.iter().any(|&(at, len, _)| i >= at && i < at + len);
        let bad: Vec<usize> = (0..ba.len())
            .filter(|&i| ba[i] != bb[i] && !allowed(i))
            .collect();
        if block == 1 {
            let unused = |b: &[u8], d: usize| {
                u32::from(u16::from_le_bytes([b[d + 0x1C], b[d + 0x1D]]))
                    | u32::from(u16::from_le_bytes([b[d + 0x32], b[d + 0x33]])) << 16
            };
            for d in (0..ba.len()).step_by(64) {
                if unused(bb, d) < unused(ba, d) {
                    out.push(format!(
                        "group {}: e2fsck lowered bg_itable_unused from {} to {}",
                        d / 64,
                        unused(ba, d),
                        unused(bb, d)
                    ));
                }
            }
        }
        if let (Some(first), Some(last)) = (bad.first(), bad.last()) {
            out.push(format!(
                "block {block}: {} bytes differ in {first:#x}..={last:#x} (A {:02x?} vs B {:02x?})",
                bad.len(),
                &ba[*first..(*first + 16).min(ba.len())],
                &bb[*first..(*first + 16).min(bb.len())],
            ));
        }
    }
    out
}

/// `e2fsck -fy` output lines that say nothing beyond replaying the journal and checking.
fn benign_fsck_line(line: &str) -> bool {
    let l = line.trim();
    l.is_empty()
        || l.starts_with("e2fsck ")
        || l.ends_with("recovering journal")
        || l.starts_with("Pass 1: ")
        || l.starts_with("Pass 2: ")
        || l.starts_with("Pass 3: ")
        || l.starts_with("Pass 4: ")
        || l.starts_with("Pass 5: ")
        || l.contains("***** FILE SYSTEM WAS MODIFIED *****")
        || (l.contains(" files (") && l.contains(" blocks"))
}

#[test]
fn e2fsck_replays_our_crashes_to_the_state_our_recovery_produces() {
    let name = "e2fsck_replays_our_crashes_to_the_state_our_recovery_produces";
    if !have_mke2fs(name) {
        return;
    }
    let started = std::time::Instant::now();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let base = DiskImage::load(&common::mke2fs_32m(
        dir.path(),
        "base.img",
        &["-O", "metadata_csum"],
    ))
    .unwrap();
    let ops = workload();
    let mut snapshots = vec![Model::new()];
    for op in &ops {
        let mut m = snapshots.last().unwrap().clone();
        apply(&mut m, op);
        snapshots.push(m);
    }

    // The workload, recording; acked[i] = events in the log when operation i returned Ok.
    let dev = EmuDevice::with_image(EmuConfig::parse(EMU_RECORD).unwrap(), base).unwrap();
    // `-o sync`: each operation is one transaction, durable when it returns.
    let sync = RwOptions {
        sync: true,
        ..RwOptions::default()
    };
    let mut fs = RwFs::mount(dev.clone(), sync).unwrap();
    let mut acked = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        run_op(&mut fs, op).unwrap_or_else(|e| panic!("op {i} {}: {e}", short(op)));
        acked.push(dev.log().unwrap().events().len());
    }
    let stats = fs.stats();
    assert!(
        stats.checkpoints >= 1,
        "the workload must wrap the log: {stats:?}"
    );
    let (_, r) = fs.unmount();
    r.unwrap();
    let log = dev.log().unwrap();
    let events = log.events().len();

    // Crash points: first, last, SPREAD spread evenly with a fixed jitter, and every boundary
    // near a write of the journal superblock (mount, the checkpoint of the wrap, unmount).
    let slot = (events / SPREAD).max(1);
    let mut points: Vec<usize> = (0..SPREAD)
        .map(|k| {
            let jitter = (k as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
            (k * slot + jitter as usize % slot).min(events)
        })
        .collect();
    points.push(0);
    points.push(events);
    for (index, e) in log.events().iter().enumerate() {
        let is_jsb = matches!(
            log.command(e.id),
            Some(LoggedCommand::Write { data, .. }) if data.get(0..8) == Some(&JSB_MAGIC[..])
        );
        if is_jsb {
            points.extend(index.saturating_sub(JSB_BEFORE)..=(index + 1).min(events));
        }
    }
    points.sort_unstable();
    points.dedup();
    assert!(points.len() >= 40, "{} crash points", points.len());
    eprintln!(
        "{name}: {} ops, {} commits, {} checkpoints, {} commands, {events} events, {} crash states",
        ops.len(),
        stats.commits,
        stats.checkpoints,
        log.commands().len(),
        points.len()
    );

    let path_a = dir.path().join("a.img");
    let path_b = dir.path().join("b.img");
    let mut replay = log.replay().unwrap();
    let mut replayed_by_e2fsck = 0;
    for (n, &at) in points.iter().enumerate() {
        replay.advance_to(log.point(at)).unwrap();
        let seed = n as u64;
        let crashed = replay.image_seeded(seed).unwrap();
        let done = acked.partition_point(|&e| e <= at);
        let what = format!(
            "crash point {at}/{events} (seed {seed}, {done} ops acknowledged, {} candidates)",
            replay.candidates().len()
        );

        // B: e2fsck -fy.
        crashed.save(&path_b).unwrap();
        let (code, out) = e2fsck("-fy", &path_b);
        assert!(
            matches!(code, Some(0 | 1)),
            "{what}: e2fsck -fy exit {code:?}:\n{out}"
        );
        let odd: Vec<&str> = out.lines().filter(|l| !benign_fsck_line(l)).collect();
        assert!(
            odd.is_empty(),
            "{what}: e2fsck -fy fixed more than the journal: {odd:?}\n{out}"
        );
        replayed_by_e2fsck += usize::from(out.contains("recovering journal"));

        // A: our recovery.
        let dev_a = EmuDevice::with_image(EmuConfig::parse(EMU_RECOVER).unwrap(), crashed).unwrap();
        let fs_a = RwFs::mount(dev_a.clone(), RwOptions::default())
            .unwrap_or_else(|e| panic!("{what}: recovery mount: {e}"));
        let (_, r) = fs_a.unmount();
        r.unwrap_or_else(|e| panic!("{what}: unmount after recovery: {e}"));
        dev_a.save(&path_a).unwrap();
        let (code, out) = e2fsck("-fn", &path_a);
        assert_eq!(code, Some(0), "{what}: e2fsck -fn on our recovery:\n{out}");

        // Same trees.
        let tree_a = read_tree(&path_a);
        let tree_b = read_tree(&path_b);
        if tree_a != tree_b {
            let keys_a: Vec<_> = tree_a.keys().collect();
            let keys_b: Vec<_> = tree_b.keys().collect();
            let first = tree_a
                .iter()
                .find(|(k, v)| tree_b.get(*k) != Some(v))
                .map(|(k, v)| (k.clone(), v.stat, tree_b.get(k).map(|s| s.stat)));
            panic!("{what}: trees differ: A {keys_a:?} vs B {keys_b:?}; first: {first:?}");
        }

        // Same images but for the stamped fields.
        let image_a = DiskImage::load(&path_a).unwrap();
        let image_b = DiskImage::load(&path_b).unwrap();
        let diffs = image_differences(&image_a, &image_b);
        assert!(
            diffs.is_empty(),
            "{what}: images differ:\n{}",
            diffs.join("\n")
        );

        // A prefix of the operations holding every acknowledged one.
        let inflight = ops.get(done);
        let exact = [done, done + 1]
            .into_iter()
            .filter(|&k| k < snapshots.len())
            .find(|&k| model_mismatch(&tree_a, &snapshots[k], None).is_none());
        if exact.is_none() {
            if let Some(why) = model_mismatch(&tree_a, &snapshots[done], inflight) {
                let inflight = inflight.map(short);
                panic!("{what}: not the model after {done} ops (in flight {inflight:?}): {why}");
            }
        }
    }
    eprintln!(
        "{name}: {} crash states, e2fsck replayed a journal in {replayed_by_e2fsck}, \
         all equal to our recovery, {:.1} s",
        points.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        replayed_by_e2fsck >= points.len() / 2,
        "{replayed_by_e2fsck}"
    );
}
