//! The read-write mount ([`aios_fs::RwFs`]) under crashes and failures, and against the kernel's
//! journal.
//!
//! - Crashes: a fixed workload (mkdir, create, write, truncate, unlink, rmdir; enough
//!   transactions to wrap the log, so commits checkpoint) runs on the emulated NVMe device
//!   (volatile write cache, virtual clock). A failure is injected at the n-th write or flush (for
//!   several n): that commit fails, the mount turns read-only and every later operation is
//!   refused. Then power is lost (`crash(seed)`: each unflushed block write kept or lost), the
//!   crash image is mounted read-write again (our recovery), unmounted, and must pass
//!   `e2fsck -fn` and hold exactly the model's tree after the operations that returned `Ok`.
//!   Without a failure, a crash before unmount must recover every operation.
//! - Kernel journal: the kernel writes through a loop mount and is shut down with
//!   `EXT4_IOC_SHUTDOWN` (`LOGFLUSH`), leaving committed transactions in its journal; our
//!   read-write mount replays them, and the files read back as the kernel wrote them (root only).
//!
//! Tests skip loudly without e2fsprogs (and without root for the kernel part).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use aios_device::{Device, FaultPlan, OpFilter};
use aios_device_emu::{DiskImage, EmuConfig, EmuDevice};
use aios_fs::{Fs, MountOptions, RwError, RwFs, RwOptions};
use aios_journal::runtime::CommitOrder;
use common::{have_mke2fs, pattern};

#[derive(Debug, Clone)]
enum Op {
    Mkdir(String),
    Create(String),
    Write(String, u64, Vec<u8>),
    Truncate(String, u64),
    Unlink(String),
    Rmdir(String),
}

/// Files (path -> bytes) and directories, root excluded, `lost+found` excluded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Tree {
    files: BTreeMap<String, Vec<u8>>,
    dirs: BTreeSet<String>,
}

impl Tree {
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Mkdir(p) => {
                self.dirs.insert(p.clone());
            }
            Op::Create(p) => {
                self.files.insert(p.clone(), Vec::new());
            }
            Op::Write(p, off, data) => {
                let f = self.files.get_mut(p).unwrap();
                let end = *off as usize + data.len();
                if f.len() < end {
                    f.resize(end, 0);
                }
                f[*off as usize..end].copy_from_slice(data);
            }
            Op::Truncate(p, size) => self.files.get_mut(p).unwrap().resize(*size as usize, 0),
            Op::Unlink(p) => {
                self.files.remove(p);
            }
            Op::Rmdir(p) => {
                self.dirs.remove(p);
            }
        }
    }
}

/// ~200 transactions: more journal blocks than the 1024-block log holds, so commits checkpoint.
fn workload() -> Vec<Op> {
    let mut ops = Vec::new();
    for d in 0..4 {
        ops.push(Op::Mkdir(format!("/d{d}")));
    }
    for i in 0..64u64 {
        let p = format!("/d{}/f{i}", i % 4);
        ops.push(Op::Create(p.clone()));
        let len = [1usize, 4096, 5000, 40_000, 130_000][i as usize % 5];
        ops.push(Op::Write(p.clone(), 0, pattern(i, len)));
        if i % 3 == 0 {
            ops.push(Op::Write(
                p.clone(),
                len as u64 + 3000,
                pattern(i + 100, 2000),
            ));
        }
        if i % 5 == 2 {
            ops.push(Op::Truncate(p.clone(), 1234));
        }
        if i % 4 == 3 {
            ops.push(Op::Unlink(format!("/d{}/f{}", (i - 2) % 4, i - 2)));
        }
    }
    ops.push(Op::Mkdir("/d0/sub".into()));
    ops.push(Op::Create("/d0/sub/x".into()));
    ops.push(Op::Unlink("/d0/sub/x".into()));
    ops.push(Op::Rmdir("/d0/sub".into()));
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
        Op::Write(p, off, data) => fs.write(p, *off, data),
        Op::Truncate(p, size) => fs.truncate(p, *size),
        Op::Unlink(p) => fs.unlink(p),
        Op::Rmdir(p) => fs.rmdir(p),
    }
}

const EMU: &str = "nand,size=32M,arena=16M,clock=virtual";

fn emu(image: DiskImage) -> EmuDevice {
    EmuDevice::with_image(EmuConfig::parse(EMU).unwrap(), image).unwrap()
}

/// Every file and directory through a fresh read-only mount (psync over the image file).
fn read_tree(image: &Path) -> Tree {
    let device =
        aios_device_psync::PsyncDevice::open(image, aios_device_psync::PsyncConfig::default())
            .unwrap();
    let fs = Fs::mount(device, MountOptions::default()).unwrap();
    let mut io = fs.io().unwrap();
    let mut tree = Tree::default();
    let mut stack = vec![(String::new(), aios_fs::ROOT_INO)];
    while let Some((path, ino)) = stack.pop() {
        for e in fs.read_dir(&mut io, ino).unwrap() {
            let n = String::from_utf8(e.name.clone()).unwrap();
            if n == "." || n == ".." || (path.is_empty() && n == "lost+found") {
                continue;
            }
            let child = format!("{path}/{n}");
            let st = fs.stat(&mut io, e.ino).unwrap();
            if st.mode & 0o170000 == 0o040000 {
                tree.dirs.insert(child.clone());
                stack.push((child, e.ino));
            } else {
                let file = fs.open(&mut io, e.ino).unwrap();
                let mut buf = vec![0u8; st.size_bytes as usize];
                assert_eq!(fs.read_at(&mut io, &file, 0, &mut buf).unwrap(), buf.len());
                tree.files.insert(child, buf);
            }
        }
    }
    tree
}

/// Whether byte `at` of file `path` may differ from the model (`old`) because `failed`, an
/// operation whose commit failed, wrote data in place before its commit (ordered mode allows
/// that, as the kernel's: a truncate's zeroed tail, an overwrite of mapped blocks): the byte
/// must then be what `failed` wrote.
fn in_place_effect(failed: Option<&Op>, path: &str, at: usize, got: u8) -> bool {
    match failed {
        Some(Op::Truncate(p, size)) => p == path && at >= *size as usize && got == 0,
        Some(Op::Write(p, off, data)) => {
            p == path && at >= *off as usize && data.get(at - *off as usize) == Some(&got)
        }
        _ => false,
    }
}

/// Recovers `crashed` with our read-write mount, unmounts, and checks it against `want`
/// (names, types and sizes exactly; contents exactly but for in-place data of `failed`).
fn recover_and_check(dir: &Path, crashed: DiskImage, want: &Tree, failed: Option<&Op>, what: &str) {
    let dev = emu(crashed);
    let fs = RwFs::mount(dev.clone(), RwOptions::default())
        .unwrap_or_else(|e| panic!("{what}: recovery mount: {e}"));
    let (_, r) = fs.unmount();
    r.unwrap_or_else(|e| panic!("{what}: unmount after recovery: {e}"));
    let path = dir.join("recovered.img");
    dev.save(&path).unwrap();
    common::assert_fsck_clean(&path, what);
    let mut got = read_tree(&path);
    for (p, w) in &want.files {
        if let Some(g) = got.files.get_mut(p) {
            assert_eq!(g.len(), w.len(), "{what}: {p}: size");
            let bad = (0..g.len()).find(|&i| g[i] != w[i] && !in_place_effect(failed, p, i, g[i]));
            assert!(bad.is_none(), "{what}: {p}: wrong byte at {bad:?}");
            g.clone_from(w);
        }
    }
    assert!(
        got == *want,
        "{what}: recovered tree differs: files {:?} vs {:?}, dirs {:?} vs {:?}",
        got.files.keys().collect::<Vec<_>>(),
        want.files.keys().collect::<Vec<_>>(),
        got.dirs,
        want.dirs
    );
}

/// Runs the workload with `fault` armed after mount; returns the device and how many
/// operations returned `Ok` (all before the failure; every one after it is refused).
fn run_with_fault(
    base: &DiskImage,
    ops: &[Op],
    order: CommitOrder,
    fault: Option<FaultPlan>,
) -> (EmuDevice, RwFs<EmuDevice>, usize, Option<usize>) {
    let dev = emu(base.try_clone().unwrap());
    // `-o sync`: every operation is durable when it returns, so "acknowledged" is exact.
    let options = RwOptions {
        order,
        sync: true,
        ..RwOptions::default()
    };
    let mut fs = RwFs::mount(dev.clone(), options).unwrap();
    if let Some(plan) = fault {
        dev.faults().arm(plan);
    }
    let mut acked = 0;
    let mut failed = None;
    for (i, op) in ops.iter().enumerate() {
        match run_op(&mut fs, op) {
            Ok(()) if failed.is_none() => acked += 1,
            Ok(()) => panic!("op {i} {op:?} succeeded after a failure"),
            Err(RwError::ReadOnly { .. }) if failed.is_some() => {}
            Err(e @ (RwError::Commit { .. } | RwError::Build { .. })) if failed.is_none() => {
                assert!(fs.is_read_only(), "{e}");
                eprintln!("op {i} {} failed: {e}", short(op));
                failed = Some(i);
            }
            Err(e) => panic!("op {i} {op:?}: unexpected error: {e}"),
        }
    }
    (dev, fs, acked, failed)
}

#[test]
fn crashes_and_failed_commits_recover_to_the_acknowledged_operations() {
    let name = "crashes_and_failed_commits_recover_to_the_acknowledged_operations";
    if !have_mke2fs(name) {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let base = common::base_image(dir.path());
    let ops = workload();
    let mut snapshots = vec![Tree::default()];
    for op in &ops {
        let mut t = snapshots.last().unwrap().clone();
        t.apply(op);
        snapshots.push(t);
    }

    // No failure: a crash before unmount recovers everything; so does a clean unmount.
    for order in [CommitOrder::Sync, CommitOrder::Async] {
        let (dev, fs, acked, failed) = run_with_fault(&base, &ops, order, None);
        assert!(failed.is_none() && acked == ops.len());
        assert!(
            fs.stats().checkpoints >= 1,
            "the workload must wrap the log: {:?}",
            fs.stats()
        );
        let what = format!("{order:?}, crash before unmount");
        recover_and_check(
            dir.path(),
            dev.crash(1).unwrap(),
            &snapshots[acked],
            None,
            &what,
        );
        let (dev, r) = fs.unmount();
        r.unwrap();
        let path = dir.path().join("clean.img");
        dev.save(&path).unwrap();
        common::assert_fsck_clean(&path, "clean unmount");
        assert_eq!(read_tree(&path), snapshots[acked], "clean unmount");
    }

    // A failed write or flush at several points, then power loss.
    let mut plans = Vec::new();
    for n in [0u64, 2, 9, 31, 100, 250, 400, 520] {
        plans.push((format!("write {n}"), FaultPlan::nth(n, OpFilter::Writes)));
    }
    for n in [0u64, 5, 60] {
        plans.push((format!("flush {n}"), FaultPlan::nth(n, OpFilter::Flushes)));
    }
    let mut failures = 0;
    for (i, (label, plan)) in plans.into_iter().enumerate() {
        let order = if i % 2 == 0 {
            CommitOrder::Async
        } else {
            CommitOrder::Sync
        };
        let (dev, fs, acked, failed) = run_with_fault(&base, &ops, order, Some(plan));
        failures += usize::from(failed.is_some());
        if failed.is_some() {
            // Unmount refuses and leaves the journal for recovery.
            let (_, r) = fs.unmount();
            assert!(matches!(r, Err(RwError::ReadOnly { .. })), "{r:?}");
        } else {
            drop(fs);
        }
        for seed in 0..2 {
            let what = format!("{label} ({order:?}), {acked} acknowledged, crash seed {seed}");
            recover_and_check(
                dir.path(),
                dev.crash(seed).unwrap(),
                &snapshots[acked],
                failed.map(|i| &ops[i]),
                &what,
            );
        }
    }
    assert!(
        failures >= 8,
        "most fault points must hit a commit ({failures})"
    );
}

/// `EXT4_IOC_SHUTDOWN` = `_IOR('X', 125, __u32)`.
const EXT4_IOC_SHUTDOWN: u64 = (2 << 30) | (4 << 16) | ((b'X' as u64) << 8) | 125;
/// `EXT4_GOING_FLAGS_LOGFLUSH`.
const EXT4_GOING_FLAGS_LOGFLUSH: u32 = 1;

#[test]
fn a_journal_the_kernel_left_is_replayed_by_our_read_write_mount() {
    use std::os::unix::io::AsRawFd;
    let name = "a_journal_the_kernel_left_is_replayed_by_our_read_write_mount";
    if !have_mke2fs(name) {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED {name}: needs root to loop-mount");
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let image = common::mke2fs_32m(dir.path(), "base.img", &[]);
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let out = Command::new("mount")
        .args(["-o", "loop"])
        .arg(&image)
        .arg(&mnt)
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!("SKIPPED {name}: loop mount failed: {out:?}");
        return;
    }
    let mut want = Tree::default();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for d in 0..3 {
            std::fs::create_dir(mnt.join(format!("k{d}"))).unwrap();
            want.dirs.insert(format!("/k{d}"));
        }
        for i in 0..12u64 {
            let p = format!("/k{}/f{i}", i % 3);
            let bytes = pattern(i + 7, 3000 + i as usize * 5000);
            std::fs::write(mnt.join(&p[1..]), &bytes).unwrap();
            want.files.insert(p, bytes);
        }
        assert!(Command::new("sync").status().unwrap().success());
        for i in 12..30u64 {
            let p = format!("/g{i}");
            let bytes = pattern(i, 100 + i as usize * 33);
            let f = std::fs::File::create(mnt.join(&p[1..])).unwrap();
            use std::io::Write;
            (&f).write_all(&bytes).unwrap();
            f.sync_all().unwrap(); // data and metadata committed by the kernel's journal
            want.files.insert(p, bytes);
        }
        std::fs::remove_file(mnt.join("k1/f1")).unwrap();
        std::fs::File::open(&mnt).unwrap().sync_all().unwrap();
        want.files.remove("/k1/f1");
        let d = std::fs::File::open(&mnt).unwrap();
        let flag = EXT4_GOING_FLAGS_LOGFLUSH;
        // SAFETY: EXT4_IOC_SHUTDOWN reads one u32 from the pointer, valid for the call.
        let rc = unsafe { libc::ioctl(d.as_raw_fd(), EXT4_IOC_SHUTDOWN as _, &flag as *const u32) };
        assert_eq!(
            rc,
            0,
            "EXT4_IOC_SHUTDOWN: {}",
            std::io::Error::last_os_error()
        );
    }));
    let umount = Command::new("umount").arg(&mnt).output().unwrap();
    assert!(umount.status.success(), "umount: {umount:?}");
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }

    let dev = emu(DiskImage::load(&image).unwrap());
    let mut fs = RwFs::mount(dev.clone(), RwOptions::default()).unwrap();
    let replayed = fs
        .replayed()
        .expect("the kernel left a journal to recover")
        .clone();
    assert!(
        replayed.needed && replayed.transactions() >= 1,
        "{replayed:?}"
    );
    eprintln!(
        "{name}: replayed {} kernel transactions, {} blocks",
        replayed.transactions(),
        replayed.fs_blocks.len()
    );
    // Our own transaction on top of the kernel's, then a clean unmount.
    let mine = pattern(99, 10_000);
    fs.put("/k0/ours", &mut &mine[..]).unwrap();
    want.files.insert("/k0/ours".into(), mine);
    let (_, r) = fs.unmount();
    r.unwrap();
    let path = dir.path().join("after.img");
    dev.save(&path).unwrap();
    common::assert_fsck_clean(&path, "kernel journal replayed by aios");
    assert_eq!(read_tree(&path), want, "files as the kernel wrote them");
}

/// Hard links, chmod/chown/utimes and fallocate through the read-write mount: each one
/// transaction, e2fsck clean afterwards, and a read-only mount sees exactly what was set.
#[test]
fn links_attributes_and_fallocate_through_the_rw_mount() {
    let name = "links_attributes_and_fallocate_through_the_rw_mount";
    if !have_mke2fs(name) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = common::mke2fs_32m(dir.path(), "base.img", &[]);
    let device = aios_device_psync::PsyncDevice::open(&image, Default::default()).unwrap();
    let sync = RwOptions {
        sync: true,
        ..RwOptions::default()
    };
    let mut fs = RwFs::mount(device, sync).unwrap();
    fs.mkdir("/d", 0o755).unwrap();
    fs.create("/f", 0o644).unwrap();
    fs.write("/f", 0, &pattern(9, 10_000)).unwrap();
    fs.link("/f", "/d/f2").unwrap();
    assert!(matches!(
        fs.link("/d", "/dlink"),
        Err(RwError::Op {
            cause: aios_fs::FsError::NotPermitted { .. },
            ..
        })
    ));
    let mtime = aios_fs::Timestamp {
        secs: 1_700_000_000,
        nanos: 123_456_789,
    };
    let attr = aios_fs::SetAttr {
        mode: Some(0o600),
        uid: Some(4242),
        gid: Some(77),
        mtime: Some(mtime),
        ..Default::default()
    };
    fs.set_attr("/d/f2", &attr).unwrap();
    fs.create("/pre", 0o644).unwrap();
    fs.fallocate("/pre", 0, 1 << 20, false).unwrap();
    fs.fallocate("/pre", 1 << 20, 1 << 20, true).unwrap();
    let commits = fs.stats().commits;
    assert!(commits >= 8, "one transaction per operation: {commits}");
    let (_, unmounted) = fs.unmount();
    unmounted.unwrap();
    common::assert_fsck_clean(&image, name);

    let ro = aios_device_psync::PsyncDevice::open(&image, Default::default()).unwrap();
    let ro = Fs::mount(ro, MountOptions::default()).unwrap();
    let mut io = ro.io().unwrap();
    let f = ro.lookup(&mut io, "/f").unwrap();
    assert_eq!(
        ro.lookup(&mut io, "/d/f2").unwrap(),
        f,
        "a hard link names the same inode"
    );
    let st = ro.stat(&mut io, f).unwrap();
    assert_eq!(st.nlink, 2);
    assert_eq!(st.mode, 0o100_600);
    assert_eq!((st.uid, st.gid), (4242, 77));
    assert_eq!(st.mtime, mtime);
    let pre = ro.lookup(&mut io, "/pre").unwrap();
    let st = ro.stat(&mut io, pre).unwrap();
    assert_eq!(st.size_bytes, 1 << 20, "keep_size leaves the size");
    assert!(
        st.blocks_512 >= (2 << 20) / 512,
        "both ranges are allocated"
    );
    let file = ro.open(&mut io, pre).unwrap();
    let mut buf = vec![0xA5u8; 1 << 20];
    assert_eq!(ro.read(&mut io, &file, 0, &mut buf).unwrap(), 1 << 20);
    assert!(
        buf.iter().all(|&b| b == 0),
        "unwritten extents read as zeros"
    );
}
