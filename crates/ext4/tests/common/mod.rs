//! Shared test support: build real ext4 images with `mke2fs -d`, run e2fsprogs as an oracle, and a
//! minimal reader (superblock -> group -> inode -> extents -> directory) over the image bytes
//! that exercises every decoder with checksums verified.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use aios_ext4::format::dir::{dir_entries, verify_dir_tail};
use aios_ext4::format::extent::{verify_extent_tail, Extent, ExtentEntries, ExtentNode};
use aios_ext4::format::group::GroupDesc;
use aios_ext4::format::inode::Inode;
use aios_ext4::format::superblock::{Superblock, SUPERBLOCK_OFFSET_BYTES, SUPERBLOCK_SIZE_BYTES};
use aios_ext4::Location;

/// Block size of every test image.
pub const BLOCK_SIZE_BYTES: usize = 4096;

/// True when e2fsprogs is installed; otherwise prints why the test is skipped.
pub fn have_e2fsprogs(test: &str) -> bool {
    let ok = ["mke2fs", "dumpe2fs", "debugfs"]
        .iter()
        .all(|tool| Command::new(tool).arg("-V").output().is_ok());
    if !ok {
        eprintln!("SKIPPED {test}: e2fsprogs (mke2fs, dumpe2fs, debugfs) not installed");
    }
    ok
}

/// A source tree and the image `mke2fs -d` made from it.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub src: PathBuf,
    pub image: PathBuf,
}

/// Fill `src` with files, directories, symlinks, a sparse file and a 150-entry directory.
fn populate(src: &Path) {
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    std::fs::create_dir_all(src.join("many")).unwrap();
    std::fs::write(src.join("hello.txt"), b"hello, ext4\n").unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    let big: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(src.join("sub/big.bin"), &big).unwrap();
    std::fs::write(src.join("sub/deeper/note"), b"deep\n").unwrap();
    std::os::unix::fs::symlink("hello.txt", src.join("fast_link")).unwrap();
    let long_target = "sub/deeper/".repeat(8) + "note";
    std::os::unix::fs::symlink(long_target, src.join("slow_link")).unwrap();
    // 20 one-block extents separated by holes: more than the 4 that fit in i_block, so depth 1.
    let mut sparse = vec![0u8; 20 * 3 * BLOCK_SIZE_BYTES];
    for i in 0..20 {
        let start = i * 3 * BLOCK_SIZE_BYTES;
        sparse[start..start + BLOCK_SIZE_BYTES].fill(i as u8 + 1);
    }
    let file = std::fs::File::create(src.join("sparse")).unwrap();
    for i in 0..20 {
        let start = i * 3 * BLOCK_SIZE_BYTES;
        std::os::unix::fs::FileExt::write_all_at(
            &file,
            &sparse[start..start + BLOCK_SIZE_BYTES],
            start as u64,
        )
        .unwrap();
    }
    for i in 0..150 {
        std::fs::write(
            src.join(format!("many/entry_with_a_longish_name_{i:03}")),
            format!("{i}\n"),
        )
        .unwrap();
    }
}

/// Build a 64 MiB image with `extra_args` added to `mke2fs -q -t ext4 -F -b 4096 -d SRC`.
pub fn build(extra_args: &[&str]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    populate(&src);
    let image = dir.path().join("img");
    let status = Command::new("mke2fs")
        .args(["-q", "-t", "ext4", "-F", "-b", "4096"])
        .args(extra_args)
        .arg("-d")
        .arg(&src)
        .arg(&image)
        .arg("64M")
        .env("MKE2FS_CONFIG", "/etc/mke2fs.conf")
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "mke2fs failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    Fixture { dir, src, image }
}

/// Run an e2fsprogs tool and return its stdout.
pub fn run(tool: &str, args: &[&str], image: &Path) -> String {
    let out = Command::new(tool).args(args).arg(image).output().unwrap();
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `debugfs -R CMD IMAGE`.
pub fn debugfs(cmd: &str, image: &Path) -> String {
    run("debugfs", &["-R", cmd], image)
}

/// `Key: value` lines of `dumpe2fs -h`.
pub fn dumpe2fs_header(image: &Path) -> BTreeMap<String, String> {
    run("dumpe2fs", &["-h"], image)
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The image bytes with the decoders on top.
pub struct Image {
    pub bytes: Vec<u8>,
    pub sb: Superblock,
}

impl Image {
    pub fn open(path: &Path) -> Image {
        let bytes = std::fs::read(path).unwrap();
        let start = SUPERBLOCK_OFFSET_BYTES as usize;
        let sb = Superblock::decode(&bytes[start..start + SUPERBLOCK_SIZE_BYTES]).unwrap();
        Image { bytes, sb }
    }

    pub fn superblock_bytes(&self) -> &[u8] {
        let start = SUPERBLOCK_OFFSET_BYTES as usize;
        &self.bytes[start..start + SUPERBLOCK_SIZE_BYTES]
    }

    pub fn block(&self, block: u64) -> &[u8] {
        let start = block as usize * BLOCK_SIZE_BYTES;
        &self.bytes[start..start + BLOCK_SIZE_BYTES]
    }

    pub fn group_desc_bytes(&self, group: u32) -> &[u8] {
        let start = self.sb.group_desc_offset_bytes(group).unwrap() as usize;
        &self.bytes[start..start + usize::from(self.sb.desc_size_bytes)]
    }

    pub fn group(&self, group: u32) -> GroupDesc {
        let raw = self.group_desc_bytes(group);
        GroupDesc::decode(
            raw,
            group,
            self.sb.desc_size_bytes,
            self.sb.blocks_count,
            self.sb.verify_seed(),
        )
        .unwrap()
    }

    pub fn inode_bytes(&self, ino: u32) -> &[u8] {
        let (group, index) = self.sb.inode_group_index(ino).unwrap();
        let table = self.group(group).inode_table_block as usize * BLOCK_SIZE_BYTES;
        let size = usize::from(self.sb.inode_size_bytes);
        let start = table + index as usize * size;
        &self.bytes[start..start + size]
    }

    pub fn inode(&self, ino: u32) -> Inode {
        Inode::decode(self.inode_bytes(ino), ino, self.sb.verify_seed()).unwrap()
    }

    /// All leaf extents of `inode`, walking the tree and verifying every node's tail.
    pub fn extents(&self, inode: &Inode) -> Vec<Extent> {
        let root = ExtentNode::decode(
            &inode.block,
            Location::ExtentRoot { ino: inode.ino },
            self.sb.blocks_count,
        )
        .unwrap();
        let mut out = Vec::new();
        self.walk(inode, root, &mut out);
        out
    }

    /// Blocks of extent nodes below the root of `inode` (depth >= 1 trees only).
    pub fn extent_node_blocks(&self, inode: &Inode) -> Vec<u64> {
        let root = ExtentNode::decode(
            &inode.block,
            Location::ExtentRoot { ino: inode.ino },
            self.sb.blocks_count,
        )
        .unwrap();
        match root.entries {
            ExtentEntries::Index(index) => index.iter().map(|i| i.child_block).collect(),
            ExtentEntries::Leaf(_) => Vec::new(),
        }
    }

    fn walk(&self, inode: &Inode, node: ExtentNode, out: &mut Vec<Extent>) {
        match node.entries {
            ExtentEntries::Leaf(extents) => out.extend(extents),
            ExtentEntries::Index(index) => {
                for child in index {
                    let at = Location::ExtentBlock {
                        ino: inode.ino,
                        block: child.child_block,
                    };
                    let block = self.block(child.child_block);
                    if let Some(seed) = self.sb.verify_seed() {
                        verify_extent_tail(block, at, inode.csum_seed(seed)).unwrap();
                    }
                    let node = ExtentNode::decode(block, at, self.sb.blocks_count).unwrap();
                    self.walk(inode, node, out);
                }
            }
        }
    }

    /// File contents via the extent map (holes and unwritten extents read as zeros).
    pub fn read_file(&self, inode: &Inode) -> Vec<u8> {
        let mut data = vec![0u8; inode.size_bytes as usize];
        for extent in self.extents(inode) {
            if extent.unwritten {
                continue;
            }
            for i in 0..u64::from(extent.len_blocks) {
                let offset =
                    (u64::from(extent.first_logical_block) + i) as usize * BLOCK_SIZE_BYTES;
                if offset >= data.len() {
                    break;
                }
                let n = (data.len() - offset).min(BLOCK_SIZE_BYTES);
                data[offset..offset + n].copy_from_slice(&self.block(extent.start_block + i)[..n]);
            }
        }
        data
    }

    /// Physical blocks of directory `dir`, in logical order.
    pub fn dir_blocks(&self, dir: &Inode) -> Vec<u64> {
        self.extents(dir)
            .iter()
            .flat_map(|e| (0..u64::from(e.len_blocks)).map(move |i| e.start_block + i))
            .collect()
    }

    /// Live entries `(name, inode, file_type)` of directory `dir`, tails verified.
    pub fn list_dir(&self, dir: &Inode) -> Vec<(String, u32, u8)> {
        let mut out = Vec::new();
        let csum = self.sb.has_metadata_csum();
        for block_nr in self.dir_blocks(dir) {
            let at = Location::DirBlock {
                ino: dir.ino,
                block: block_nr,
            };
            let block = self.block(block_nr);
            if let Some(seed) = self.sb.verify_seed() {
                verify_dir_tail(block, at, dir.csum_seed(seed)).unwrap();
            }
            for entry in dir_entries(block, at, csum) {
                let entry = entry.unwrap();
                if entry.is_live() {
                    out.push((
                        String::from_utf8_lossy(entry.name).into_owned(),
                        entry.inode,
                        entry.file_type,
                    ));
                }
            }
        }
        out
    }

    /// Resolve an absolute path to an inode number.
    pub fn lookup(&self, path: &str) -> u32 {
        let mut ino = 2;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            let dir = self.inode(ino);
            ino = self
                .list_dir(&dir)
                .into_iter()
                .find(|(name, _, _)| name == part)
                .unwrap_or_else(|| panic!("{part} not found in {path}"))
                .1;
        }
        ino
    }

    /// Offset in the image of the inode record of `ino`.
    pub fn inode_offset_bytes(&self, ino: u32) -> usize {
        let inode_start = self.inode_bytes(ino).as_ptr() as usize;
        inode_start - self.bytes.as_ptr() as usize
    }
}
