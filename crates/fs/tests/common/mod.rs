//! Test support: a generated source tree, the ext4 image `mke2fs -d` makes from it, and mounting
//! that image over the pread/pwrite backend.

#![allow(dead_code)]

use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use aios_device_psync::{PsyncConfig, PsyncDevice};
use aios_fs::{Fs, MountOptions};

/// Entries of the directory made large enough to be htree-indexed.
pub const BIG_DIR_ENTRIES: usize = 3000;
/// One-block extents of the fragmented file: more than 4 * 340, so its tree has depth 2.
pub const FRAG_EXTENTS: usize = 1400;
pub const SLOW_LINK_TARGET: &str =
    "a/b/c/d/../../c/d/../../c/d/../../c/d/../../c/d/../../c/d/../d/deep.txt";

/// True when e2fsprogs is installed; otherwise says loudly that `test` is skipped.
pub fn have_mke2fs(test: &str) -> bool {
    let ok = ["mke2fs", "e2fsck", "debugfs"]
        .iter()
        .all(|tool| Command::new(tool).arg("-V").output().is_ok());
    if !ok {
        eprintln!("SKIPPED {test}: e2fsprogs (mke2fs, e2fsck, debugfs) not installed");
    }
    ok
}

/// Deterministic bytes: an xorshift stream seeded by `seed`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Fills `src` with the tree every test reads back.
pub fn populate(src: &Path) {
    std::fs::create_dir_all(src.join("a/b/c/d")).unwrap();
    std::fs::write(src.join("a/b/c/d/deep.txt"), b"deep down\n").unwrap();
    std::fs::write(src.join("a/b/mid"), pattern(7, 5000)).unwrap();
    for (name, size) in [
        ("size0", 0usize),
        ("size1", 1),
        ("size4095", 4095),
        ("size4096", 4096),
        ("size4097", 4097),
        ("size1m3", (1 << 20) + 3),
    ] {
        std::fs::write(src.join(name), pattern(size as u64, size)).unwrap();
    }
    std::fs::create_dir(src.join("big")).unwrap();
    for i in 0..BIG_DIR_ENTRIES {
        std::fs::write(
            src.join(format!("big/entry_{i:05}_of_the_big_dir")),
            format!("{i}\n"),
        )
        .unwrap();
    }
    // Sparse: data at 0 and at 50 MiB, a hole between.
    let mut sparse = std::fs::File::create(src.join("sparse")).unwrap();
    sparse.write_all(&pattern(1, 10_000)).unwrap();
    sparse.seek(SeekFrom::Start(50 << 20)).unwrap();
    sparse.write_all(&pattern(2, 7000)).unwrap();
    sparse.set_len((50 << 20) + 9000).unwrap();
    // Fragmented: one 4 KiB block every other block.
    let frag = std::fs::File::create(src.join("frag")).unwrap();
    for i in 0..FRAG_EXTENTS {
        frag.write_all_at(&pattern(100 + i as u64, 4096), (i * 8192) as u64)
            .unwrap();
    }
    std::os::unix::fs::symlink("a/b/c/d/deep.txt", src.join("fast_link")).unwrap();
    std::os::unix::fs::symlink(SLOW_LINK_TARGET, src.join("slow_link")).unwrap();
    std::os::unix::fs::symlink("/a/b", src.join("dir_link")).unwrap();
    std::os::unix::fs::symlink("loop2", src.join("loop1")).unwrap();
    std::os::unix::fs::symlink("loop1", src.join("loop2")).unwrap();
    std::fs::write(src.join("with space"), b"spaced\n").unwrap();
    std::fs::write(src.join("ünïcødé_名前"), b"utf-8\n").unwrap();
    std::fs::write(src.join("n".repeat(255)), b"long name\n").unwrap();
}

/// A source tree and its image, in a directory removed at drop.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub src: PathBuf,
    pub image: PathBuf,
}

/// Builds the fixture: `mke2fs -q -t ext4 -F -b 4096 -d SRC IMG 160M`, then `e2fsck -fyD IMG`.
pub fn build() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    populate(&src);
    let image = dir.path().join("img");
    let out = Command::new("mke2fs")
        .args(["-q", "-t", "ext4", "-F", "-b", "4096", "-d"])
        .arg(&src)
        .arg(&image)
        .arg("160M")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mke2fs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // mke2fs -d links entries linearly; `e2fsck -D` rebuilds directories, indexing the big one.
    let out = Command::new("e2fsck")
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
    Fixture { dir, src, image }
}

/// Mounts `image` over the pread/pwrite backend.
pub fn mount(image: &Path) -> Fs<PsyncDevice> {
    let device = PsyncDevice::open(image, PsyncConfig::default()).unwrap();
    Fs::mount(device, MountOptions::default()).unwrap()
}

/// `debugfs -R CMD IMAGE` stdout.
pub fn debugfs(cmd: &str, image: &Path) -> String {
    let out = Command::new("debugfs")
        .args(["-R", cmd])
        .arg(image)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Makes `dir/name`: a 32 MiB `mke2fs -t ext4` image with 4 KiB blocks (the write tests'
/// image), plus `extra` options (e.g. `-O metadata_csum`).
pub fn mke2fs_32m(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let image = dir.join(name);
    let out = Command::new("mke2fs")
        .args(["-q", "-t", "ext4", "-F", "-b", "4096"])
        .args(extra)
        .arg(&image)
        .arg("32M")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    image
}

/// `e2fsck -fn` exits 0 and prints nothing but its pass headers and summary.
pub fn assert_fsck_clean(image: &Path, what: &str) {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(image)
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
        "e2fsck -fn after {what}: exit {:?}\n{text}",
        out.status.code()
    );
}

/// [`mke2fs_32m`] as `dir/base.img`, loaded for the emulated device.
pub fn base_image(dir: &Path) -> aios_device_emu::DiskImage {
    aios_device_emu::DiskImage::load(&mke2fs_32m(dir, "base.img", &[])).unwrap()
}
