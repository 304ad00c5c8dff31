//! The kernel's journal through our recovery: loop-mount a fresh image, write, `sync`, write
//! more, shut the file system down with `EXT4_IOC_SHUTDOWN` (`LOGFLUSH`: commit, then abort the
//! journal, so committed transactions stay un-checkpointed), unmount; then our recovery on one
//! copy and `e2fsck -E journal_only -fy` on another must give the same image outside the blocks
//! e2fsck itself rewrites (the superblock block and the journal).

mod common;

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::process::Command;

use aios_journal::format::superblock::JournalSuperblock;
use aios_journal::format::{Block, BLOCK_SIZE_BYTES};
use aios_journal::recovery::recover;
use common::*;

/// `EXT4_IOC_SHUTDOWN` = `_IOR('X', 125, __u32)`.
const EXT4_IOC_SHUTDOWN: u64 = (2 << 30) | (4 << 16) | ((b'X' as u64) << 8) | 125;
/// `EXT4_GOING_FLAGS_LOGFLUSH`.
const EXT4_GOING_FLAGS_LOGFLUSH: u32 = 1;

#[test]
fn our_recovery_matches_e2fsck_on_a_kernel_journal() {
    let name = "our_recovery_matches_e2fsck_on_a_kernel_journal";
    if !have_e2fsprogs(name) {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED {name}: needs root to loop-mount");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = mkfs(dir.path(), "kernel.img", 64, None);
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mount = Command::new("mount")
        .args(["-o", "loop"])
        .arg(&image)
        .arg(&mnt)
        .output()
        .unwrap();
    if !mount.status.success() {
        eprintln!("SKIPPED {name}: loop mount failed: {mount:?}");
        return;
    }
    let result = std::panic::catch_unwind(|| {
        for i in 0..20u64 {
            std::fs::create_dir_all(mnt.join(format!("d{}", i % 4))).unwrap();
            std::fs::write(
                mnt.join(format!("d{}/f{i}", i % 4)),
                pattern(i, 5000 + i as usize * 300),
            )
            .unwrap();
        }
        assert!(run("sync", &[]).status.success());
        for i in 20..60u64 {
            std::fs::write(mnt.join(format!("g{i}")), pattern(i, 100 + i as usize)).unwrap();
        }
        std::fs::remove_file(mnt.join("d1/f1")).unwrap();
        std::fs::rename(mnt.join("d2/f2"), mnt.join("renamed")).unwrap();
        let d = File::open(&mnt).unwrap();
        let flag = EXT4_GOING_FLAGS_LOGFLUSH;
        // SAFETY: EXT4_IOC_SHUTDOWN reads one u32 from the pointer, which is valid for the call.
        let rc = unsafe { libc::ioctl(d.as_raw_fd(), EXT4_IOC_SHUTDOWN as _, &flag as *const u32) };
        assert_eq!(
            rc,
            0,
            "EXT4_IOC_SHUTDOWN: {}",
            std::io::Error::last_os_error()
        );
    });
    let umount = run("umount", &[&mnt.to_string_lossy()]);
    assert!(umount.status.success(), "umount: {umount:?}");
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }

    let ours = dir.path().join("ours.img");
    let theirs = dir.path().join("theirs.img");
    std::fs::copy(&image, &ours).unwrap();
    std::fs::copy(&image, &theirs).unwrap();
    let jmap = journal_map(&image);

    let file = File::options().read(true).write(true).open(&ours).unwrap();
    let sb = JournalSuperblock::decode(&read_block(&file, jmap[0])).unwrap();
    assert!(
        sb.needs_recovery(),
        "the kernel left a clean journal: {sb:?}"
    );
    let rec = recover(&sb, |i| -> std::io::Result<Block> {
        let phys = jmap
            .get(i as usize)
            .ok_or_else(|| std::io::Error::other("beyond journal"))?;
        Ok(read_block(&file, *phys))
    })
    .unwrap();
    eprintln!(
        "kernel journal: features [{}], transactions {}..{}, {} blocks replayed, {} revoke records, end {:?}",
        sb.features.names(),
        rec.start_sequence,
        rec.end_sequence,
        rec.writes.len(),
        rec.revoke_records,
        rec.end
    );
    assert!(rec.transactions() >= 1 && !rec.writes.is_empty());
    assert!(rec.bad_data_blocks.is_empty());
    for (b, c) in &rec.writes {
        write_at(&file, *b, &c[..]);
    }
    drop(file);

    let out = run(
        "e2fsck",
        &["-fy", "-E", "journal_only", &theirs.to_string_lossy()],
    );
    assert!(out.status.code().unwrap_or(8) < 4, "e2fsck: {out:?}");

    let a = std::fs::read(&ours).unwrap();
    let b = std::fs::read(&theirs).unwrap();
    assert_eq!(a.len(), b.len());
    let mut differ = Vec::new();
    for (i, (x, y)) in a
        .chunks(BLOCK_SIZE_BYTES)
        .zip(b.chunks(BLOCK_SIZE_BYTES))
        .enumerate()
    {
        if x != y {
            differ.push(i as u64);
        }
    }
    let explained = |blk: &u64| *blk == 0 || jmap.contains(blk);
    let unexplained: Vec<u64> = differ.iter().copied().filter(|b| !explained(b)).collect();
    assert!(
        unexplained.is_empty(),
        "blocks differ between our replay and e2fsck's: {unexplained:?}"
    );
    // Every block we replayed (but the superblock block, which e2fsck rewrites) is what e2fsck wrote.
    for (blk, c) in &rec.writes {
        if *blk != 0 {
            let off = *blk as usize * BLOCK_SIZE_BYTES;
            assert!(b[off..off + BLOCK_SIZE_BYTES] == c[..], "block {blk}");
        }
    }
    eprintln!("blocks differing (superblock/journal only): {differ:?}");
}
