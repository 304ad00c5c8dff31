//! Test support: ext4 images made by `mke2fs`, their journal (inode 8) located with `debugfs`,
//! block-level image access, and the ext4 superblock patch that asks for recovery.

#![allow(dead_code)]

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aios_journal::format::{Block, BLOCK_SIZE_BYTES};

/// True when e2fsprogs is installed; otherwise says loudly that `test` is skipped.
pub fn have_e2fsprogs(test: &str) -> bool {
    let ok = ["mke2fs", "e2fsck", "debugfs", "dumpe2fs"]
        .iter()
        .all(|tool| Command::new(tool).arg("-V").output().is_ok());
    if !ok {
        eprintln!("SKIPPED {test}: e2fsprogs (mke2fs, e2fsck, debugfs, dumpe2fs) not installed");
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

/// A deterministic 4 KiB block.
pub fn block_of(seed: u64) -> Block {
    let mut b = [0u8; BLOCK_SIZE_BYTES];
    b.copy_from_slice(&pattern(seed, BLOCK_SIZE_BYTES));
    b
}

pub fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"))
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `mke2fs -t ext4` an image of `size_mib` MiB (a sparse file made first, so mke2fs sizes the
/// journal from the file), from `src` when given.
pub fn mkfs(dir: &Path, name: &str, size_mib: u64, src: Option<&Path>) -> PathBuf {
    let image = dir.join(name);
    File::create(&image)
        .unwrap()
        .set_len(size_mib << 20)
        .unwrap();
    let mut args = vec!["-q", "-F", "-t", "ext4", "-b", "4096", "-T", "default"];
    let src_s;
    if let Some(src) = src {
        src_s = src.to_string_lossy().into_owned();
        args.push("-d");
        args.push(&src_s);
    }
    let image_s = image.to_string_lossy().into_owned();
    args.push(&image_s);
    let out = run("mke2fs", &args);
    assert!(out.status.success(), "mke2fs: {out:?}");
    image
}

/// `debugfs -R <request> image` stdout.
pub fn debugfs(image: &Path, request: &str) -> String {
    let out = run("debugfs", &["-R", request, &image.to_string_lossy()]);
    assert!(out.status.success(), "debugfs {request}: {out:?}");
    stdout(&out)
}

/// The physical blocks of a file or inode spec (`/path` or `<8>`), in logical order.
pub fn file_blocks(image: &Path, spec: &str) -> Vec<u64> {
    debugfs(image, &format!("blocks {spec}"))
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect()
}

/// The journal's physical blocks, by journal block index (from `debugfs blocks <8>`). mke2fs
/// 1.47 does not always make it contiguous: a 64 MiB 4 KiB-block image gets 15-24, 26-40, ...
pub fn journal_map(image: &Path) -> Vec<u64> {
    let blocks = file_blocks(image, "<8>");
    assert!(!blocks.is_empty(), "no journal in {image:?}");
    blocks
}

pub fn read_block(file: &File, block: u64) -> Block {
    let mut b = [0u8; BLOCK_SIZE_BYTES];
    file.read_exact_at(&mut b, block * BLOCK_SIZE_BYTES as u64)
        .unwrap();
    b
}

pub fn write_at(file: &File, block: u64, bytes: &[u8]) {
    file.write_all_at(bytes, block * BLOCK_SIZE_BYTES as u64)
        .unwrap();
}

/// Set (or clear) ext4's `needs_recovery` incompat flag (0x4 at superblock offset 0x60) and fix
/// the superblock checksum (crc32c of bytes 0..0x3FC, seed ~0, at 0x3FC).
pub fn set_needs_recovery(image: &Path, on: bool) {
    let file = File::options().read(true).write(true).open(image).unwrap();
    let mut sb = [0u8; 1024];
    file.read_exact_at(&mut sb, 1024).unwrap();
    let mut incompat = u32::from_le_bytes(sb[0x60..0x64].try_into().unwrap());
    if on {
        incompat |= 0x4;
    } else {
        incompat &= !0x4;
    }
    sb[0x60..0x64].copy_from_slice(&incompat.to_le_bytes());
    let csum = aios_journal::format::csum::crc32c_raw(!0, &sb[..0x3FC]);
    sb[0x3FC..].copy_from_slice(&csum.to_le_bytes());
    file.write_all_at(&sb, 1024).unwrap();
}

/// A line's value after `key:` in `dumpe2fs -h` output.
pub fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .map(str::trim)
}
