//! The images of the campaign: a small `mke2fs` image (journal, `metadata_csum`, files, a
//! sparse and a fragmented file, fast and slow symlinks, nested directories, an htree directory),
//! the same image crashed by [`RwFs`] with committed transactions in its journal that need
//! recovery (`C`), and `C` recovered (`R`); and the map of their metadata blocks, each named by
//! what it holds.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use aios_device_emu::{DiskImage, EmuConfig, EmuDevice};
use aios_ext4::format::extent::{ExtentEntries, ExtentNode};
use aios_ext4::Location;
use aios_fs::{Fs, MountOptions, RwFs, RwOptions, ROOT_INO};

use crate::common::pattern;

pub const IMAGE_BYTES: u64 = 8 << 20;
pub const BLOCK: usize = 4096;
/// The emulated device every mount of the campaign runs on: no latency, virtual clock.
pub const EMU: &str = "instant,size=8M,arena=2M,clock=virtual";

/// Hard links with 255-byte names in `/htree`: two leaf blocks, so `e2fsck -D` indexes it.
const HTREE_ENTRIES: usize = 16;
const FRAG_EXTENTS: u64 = 8;

fn populate(src: &Path) {
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::write(src.join("a/b/deep.txt"), b"deep down\n").unwrap();
    std::fs::write(src.join("a/b/mid"), pattern(7, 5000)).unwrap();
    std::fs::write(src.join("small"), b"small\n").unwrap();
    std::fs::write(src.join("block"), pattern(4096, 4096)).unwrap();
    let mut sparse = std::fs::File::create(src.join("sparse")).unwrap();
    sparse.write_all(&pattern(1, 5000)).unwrap();
    sparse.seek(SeekFrom::Start(256 << 10)).unwrap();
    sparse.write_all(&pattern(2, 3000)).unwrap();
    sparse.set_len((300 << 10) + 7).unwrap();
    let frag = std::fs::File::create(src.join("frag")).unwrap();
    for i in 0..FRAG_EXTENTS {
        frag.write_all_at(&pattern(100 + i, 4096), i * 8192)
            .unwrap();
    }
    std::os::unix::fs::symlink("a/b/deep.txt", src.join("fast_link")).unwrap();
    let slow = format!("{}a/b/deep.txt", "./".repeat(30));
    std::os::unix::fs::symlink(slow, src.join("slow_link")).unwrap();
    std::fs::create_dir(src.join("htree")).unwrap();
    std::fs::write(src.join("htree/target"), b"linked\n").unwrap();
    for i in 0..HTREE_ENTRIES {
        std::fs::hard_link(
            src.join("htree/target"),
            src.join(format!("htree/h{i:03}_{}", "x".repeat(250))),
        )
        .unwrap();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd
        .env("E2FSPROGS_FAKE_TIME", "1700000000")
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0..=1)),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `mke2fs -d` (fixed UUID and hash seed) then `e2fsck -fyD` (indexes `/htree`).
pub fn build_base(dir: &Path) -> Vec<u8> {
    let src = dir.join("src");
    std::fs::create_dir(&src).unwrap();
    populate(&src);
    let image = dir.join("base.img");
    run(Command::new("mke2fs")
        .args([
            "-q",
            "-t",
            "ext4",
            "-F",
            "-b",
            "4096",
            "-O",
            "metadata_csum",
        ])
        .args(["-U", "0b6f5c1e-2f7a-4d7e-9d0c-5a4b3c2d1e0f"])
        .args(["-E", "hash_seed=3c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f", "-d"])
        .arg(&src)
        .arg(&image)
        .arg("8M"));
    run(Command::new("e2fsck").args(["-f", "-y", "-D"]).arg(&image));
    std::fs::read(&image).unwrap()
}

pub fn disk(bytes: &[u8]) -> DiskImage {
    let mut d = DiskImage::zeroed(IMAGE_BYTES).unwrap();
    d.write_at(0, bytes).unwrap();
    d
}

pub fn device(bytes: &[u8]) -> EmuDevice {
    EmuDevice::with_image(EmuConfig::parse(EMU).unwrap(), disk(bytes)).unwrap()
}

pub fn bytes_of(d: &DiskImage) -> Vec<u8> {
    let mut out = vec![0u8; IMAGE_BYTES as usize];
    d.read_at(0, &mut out).unwrap();
    out
}

pub fn options() -> MountOptions {
    MountOptions {
        queue_depth: 8,
        cache_pages: 64,
        pool_pages: 16,
        ..MountOptions::default()
    }
}

/// `-o sync` (each operation one transaction, durable when it returns) and no periodic commit:
/// the crash leaves exactly the committed operations in the log, and every case is deterministic.
pub fn rw_options() -> RwOptions {
    RwOptions {
        mount: options(),
        sync: true,
        commit_interval: None,
        ..RwOptions::default()
    }
}

/// The operations run by every read-write mount of the campaign (after recovery): a new file
/// written, a name added to the htree directory, a file removed.
pub fn operations(fs: &mut RwFs<EmuDevice>) -> Vec<Result<(), aios_fs::RwError>> {
    vec![
        fs.create("/bad_new", 0o644).map(drop),
        fs.write("/bad_new", 0, &pattern(77, 9000)),
        fs.create(format!("/htree/z_{}", "n".repeat(200)), 0o644)
            .map(drop),
        fs.unlink("/small"),
    ]
}

/// `base` mounted read-write, changed (committed transactions: a directory, files written, a
/// rename, a symlink, names added to and removed from the htree directory), then crashed before
/// any checkpoint: the home blocks are stale and the journal must be replayed.
pub fn crash(base: &[u8]) -> Vec<u8> {
    let dev = device(base);
    let mut fs = RwFs::mount(dev.clone(), rw_options()).unwrap();
    fs.mkdir("/w", 0o755).unwrap();
    fs.create("/w/f1", 0o644).unwrap();
    fs.write("/w/f1", 0, &pattern(11, 20_000)).unwrap();
    fs.symlink("/w/l1", b"f1").unwrap();
    fs.rename("/a/b/mid", "/w/mid2").unwrap();
    fs.write("/block", 100, &pattern(12, 3000)).unwrap();
    fs.create("/htree/added", 0o644).unwrap();
    fs.unlink(format!("/htree/h003_{}", "x".repeat(250)))
        .unwrap();
    fs.truncate("/sparse", 4000).unwrap();
    assert_eq!(
        fs.stats().checkpoints,
        0,
        "the crash must leave the log unreplayed"
    );
    let crashed = dev.crash(0x5EED).unwrap();
    drop(fs);
    bytes_of(&crashed)
}

/// `crashed` recovered by [`RwFs::mount`] and unmounted.
pub fn recover(crashed: &[u8]) -> Vec<u8> {
    let dev = device(crashed);
    let fs = RwFs::mount(dev.clone(), rw_options()).unwrap();
    let replayed = fs.replayed().expect("the crash image needs recovery");
    assert!(replayed.needed && replayed.end_sequence != replayed.start_sequence);
    let (_, r) = fs.unmount();
    r.unwrap();
    bytes_of(&dev.current_image().unwrap())
}

/// Metadata blocks of `image` (a clean, mountable one) by what they hold, and the journal's
/// blocks.
pub struct BlockMap {
    pub kinds: BTreeMap<u64, String>,
    pub journal: BTreeSet<u64>,
    /// Directory and extent node blocks: the owning inode and its checksum seed.
    pub owners: BTreeMap<u64, (u32, u32)>,
    /// The file system checksum seed.
    pub fs_seed: u32,
    /// First inode table block of each group.
    pub inode_tables: Vec<u64>,
}

/// Superblock, group descriptors, bitmaps, inode table blocks up to the last inode in use,
/// every directory block, every extent node block; and the journal's blocks.
pub fn block_map(image: &[u8]) -> BlockMap {
    let fs = Fs::mount(device(image), options()).unwrap();
    let mut io = fs.io().unwrap();
    let sb = fs.superblock().clone();
    let mut kinds = BTreeMap::new();
    kinds.insert(0, "superblock".to_string());
    kinds.insert(
        sb.group_desc_offset_bytes(0).unwrap() / BLOCK as u64,
        "group descriptors".to_string(),
    );
    let per_block = BLOCK as u64 / u64::from(sb.inode_size_bytes);
    let mut last_ino = 11;
    let mut dirs = vec![("/".to_string(), ROOT_INO)];
    let mut inodes = vec![8u32];
    let mut owners = BTreeMap::new();
    let fs_seed = sb.csum_seed();
    while let Some((path, ino)) = dirs.pop() {
        inodes.push(ino);
        for e in fs.read_dir(&mut io, ino).unwrap() {
            last_ino = last_ino.max(e.ino);
            if e.name == b"." || e.name == b".." {
                continue;
            }
            let name = String::from_utf8_lossy(&e.name);
            if e.file_type == aios_ext4::format::dir::file_type::DIR {
                dirs.push((format!("{path}{name}/"), e.ino));
            } else {
                inodes.push(e.ino);
            }
        }
        let inode = fs.read_inode(&mut io, ino).unwrap();
        for m in fs.extent_map(&mut io, &inode).unwrap().mappings() {
            for i in 0..u64::from(m.len_blocks) {
                let what = format!("directory {path} block {}", m.logical_block + i);
                kinds.insert(m.physical_block + i, what);
                owners.insert(m.physical_block + i, (ino, inode.csum_seed(fs_seed)));
            }
        }
    }
    for g in fs.groups() {
        kinds.insert(g.block_bitmap_block, format!("block bitmap {}", g.group));
        kinds.insert(g.inode_bitmap_block, format!("inode bitmap {}", g.group));
        let used = u64::from(last_ino.min(sb.inodes_per_group)).div_ceil(per_block);
        for b in 0..used {
            let what = format!("inode table {} block {b}", g.group);
            kinds.insert(g.inode_table_block + b, what);
        }
    }
    // Extent node blocks below the roots.
    for ino in inodes {
        let inode = fs.read_inode(&mut io, ino).unwrap();
        let root = Location::ExtentRoot { ino };
        if let Ok(node) = ExtentNode::decode(&inode.block, root, sb.blocks_count) {
            if let ExtentEntries::Index(children) = node.entries {
                for c in children {
                    kinds.insert(c.child_block, format!("extent node of inode {ino}"));
                    owners.insert(c.child_block, (ino, inode.csum_seed(fs_seed)));
                }
            }
        }
    }
    let journal = fs.read_inode(&mut io, sb.journal_inum).unwrap();
    let map = fs.extent_map(&mut io, &journal).unwrap();
    let journal: BTreeSet<u64> = map
        .mappings()
        .iter()
        .flat_map(|m| m.physical_block..m.physical_block + u64::from(m.len_blocks))
        .collect();
    let inode_tables = fs.groups().iter().map(|g| g.inode_table_block).collect();
    drop(io);
    drop(fs);
    BlockMap {
        kinds,
        journal,
        owners,
        fs_seed,
        inode_tables,
    }
}
