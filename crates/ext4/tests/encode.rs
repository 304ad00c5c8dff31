//! Encoders checked against e2fsprogs: exact round trips over every superblock field, group
//! descriptor, inode, extent node, directory and htree block and bitmap of `mke2fs -d` images
//! (re-indexed by `e2fsck -fyD` so one directory is an htree); hashes against `debugfs dx_hash`;
//! an image edited only through the encoders (two new files, one in a linear and one in an htree
//! directory, one of them in a `BLOCK_UNINIT` group) that `e2fsck -fn` finds clean and
//! `debugfs cat` reads back; and a wrong bitmap checksum that both `e2fsck` and
//! [`verify_bitmap`] report.

mod common;

use std::path::Path;
use std::process::Command;

use aios_ext4::format::bitmap::{
    count_zeros, find_first_zero, group_blocks, load_block_bitmap, load_inode_bitmap, set_bit,
    set_bitmap_csum, uninit_block_bitmap, verify_bitmap, BitmapKind,
};
use aios_ext4::format::dir::{
    dir_entries, encode_dir_block, file_type, insert_dir_entry, set_dir_tail, NewDirEntry,
};
use aios_ext4::format::extent::{set_extent_tail, Extent, ExtentNode, ROOT_ENTRIES_MAX};
use aios_ext4::format::group::{GroupDesc, BG_BLOCK_UNINIT, BG_INODE_UNINIT};
use aios_ext4::format::hash::{dx_hash, effective_hash_version};
use aios_ext4::format::htree::{dx_find, DxNode, DxRoot};
use aios_ext4::format::inode::{Inode, Timestamp, EXT4_EXTENTS_FL, EXT4_INDEX_FL, S_IFREG};
use aios_ext4::format::superblock::{
    ro_compat, Superblock, SUPERBLOCK_OFFSET_BYTES, SUPERBLOCK_SIZE_BYTES,
};
use aios_ext4::{FormatError, Location};
use common::{build, debugfs, dumpe2fs_header, have_e2fsprogs, Fixture, Image, BLOCK_SIZE_BYTES};

/// e2fsprogs including e2fsck, or a loud skip.
fn have_tools(test: &str) -> bool {
    let fsck = Command::new("e2fsck").arg("-V").output().is_ok();
    if !fsck {
        eprintln!("SKIPPED {test}: e2fsck not installed");
    }
    have_e2fsprogs(test) && fsck
}

/// `e2fsck -fn IMAGE`: (clean, output).
fn e2fsck_n(image: &Path) -> (bool, String) {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(image)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// A 4-group image whose `/many` is an htree (e2fsck -D indexes multi-block directories).
fn htree_fixture() -> Fixture {
    let fx = build(&["-g", "4096"]);
    let out = Command::new("e2fsck")
        .arg("-fyD")
        .arg(&fx.image)
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "e2fsck -fyD: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    fx
}

fn sb_range() -> std::ops::Range<usize> {
    let start = SUPERBLOCK_OFFSET_BYTES as usize;
    start..start + SUPERBLOCK_SIZE_BYTES
}

fn block_range(block: u64) -> std::ops::Range<usize> {
    let start = block as usize * BLOCK_SIZE_BYTES;
    start..start + BLOCK_SIZE_BYTES
}

#[test]
fn dx_hash_matches_debugfs() {
    if !have_tools("dx_hash_matches_debugfs") {
        return;
    }
    let fx = build(&[]);
    let img = Image::open(&fx.image);
    let h = dumpe2fs_header(&fx.image);
    assert_eq!(h["Default directory hash"], "half_md4");
    assert_eq!(h["Filesystem flags"], "signed_directory_hash");
    assert_eq!(img.sb.def_hash_version, 1);
    assert!(!img.sb.unsigned_dir_hash());
    let seed_str = &h["Directory Hash Seed"];
    let long = "x".repeat(200);
    let names = [
        "a",
        "hello",
        "entry_with_a_longish_name_042",
        "h\u{e9}\u{ff}",
        &long,
    ];
    for version in 0..=5u8 {
        for name in names {
            let theirs = debugfs(
                &format!("dx_hash -h {version} -s {seed_str} {name}"),
                &fx.image,
            );
            let ours = dx_hash(
                name.as_bytes(),
                version,
                &img.sb.hash_seed,
                Location::Inode { ino: 2 },
            )
            .unwrap();
            let expect = format!(
                "Hash of {name} is {:#x} (minor {:#x})",
                ours.major, ours.minor
            );
            assert!(
                theirs.contains(&expect),
                "v{version} {name}: {theirs} vs {expect}"
            );
        }
    }
}

#[test]
fn every_structure_round_trips() {
    if !have_tools("every_structure_round_trips") {
        return;
    }
    let fx = htree_fixture();
    let img = Image::open(&fx.image);
    let sb = &img.sb;
    let seed = sb.verify_seed().unwrap();
    // Superblock: encode(decode(raw)) == raw, and decode(encode(sb)) == sb.
    let mut raw = img.superblock_bytes().to_vec();
    let mut sb2 = sb.clone();
    sb2.encode_into(&mut raw).unwrap();
    assert_eq!(raw, img.superblock_bytes());
    assert_eq!(sb2, *sb);
    // Group descriptors and bitmaps.
    let mut uninit_groups = 0;
    for g in 0..sb.group_count() {
        let raw = img.group_desc_bytes(g).to_vec();
        let desc = img.group(g);
        let mut out = raw.clone();
        let mut again = desc;
        again
            .encode_into(&mut out, sb.desc_size_bytes, Some(seed))
            .unwrap();
        assert_eq!(out, raw, "group {g}");
        assert_eq!(again, desc);
        for kind in [BitmapKind::Block, BitmapKind::Inode] {
            let block = match kind {
                BitmapKind::Block => desc.block_bitmap_block,
                BitmapKind::Inode => desc.inode_bitmap_block,
            };
            let on_disk = img.block(block);
            let loaded = match kind {
                BitmapKind::Block => load_block_bitmap(sb, &desc, on_disk).unwrap(),
                BitmapKind::Inode => load_inode_bitmap(sb, &desc, on_disk).unwrap(),
            };
            let free = count_zeros(&loaded, kind.bits(sb));
            let expect_free = match kind {
                BitmapKind::Block => desc.free_blocks_count,
                BitmapKind::Inode => desc.free_inodes_count,
            };
            assert_eq!(free, expect_free, "group {g} {kind:?}: free count");
            if desc.flags & kind.uninit_flag() == 0 {
                let mut recomputed = desc;
                set_bitmap_csum(sb, &mut recomputed, kind, on_disk).unwrap();
                assert_eq!(recomputed, desc, "group {g} {kind:?}: checksum");
            } else {
                uninit_groups += 1;
            }
        }
    }
    assert!(uninit_groups >= 3, "expected uninit groups with -g 4096");
    // Every inode.
    let mut extent_nodes = 0;
    let mut htree_blocks = 0;
    let mut dir_blocks = 0;
    for ino in 1..=sb.inodes_count {
        let raw = img.inode_bytes(ino);
        let inode = Inode::decode(raw, ino, Some(seed)).unwrap();
        let mut out = raw.to_vec();
        inode.encode_into(&mut out, Some(seed)).unwrap();
        assert!(out == raw, "inode {ino}");
        let mut fresh = vec![0u8; raw.len()];
        inode.encode_into(&mut fresh, Some(seed)).unwrap();
        assert_eq!(
            Inode::decode(&fresh, ino, Some(seed)).unwrap(),
            inode,
            "inode {ino}"
        );
        if inode.links_count == 0 || !inode.uses_extents() {
            continue;
        }
        // Extent root and node blocks.
        let at = Location::ExtentRoot { ino };
        let root = ExtentNode::decode(&inode.block, at, sb.blocks_count).unwrap();
        let mut out = inode.block;
        root.encode_into(&mut out, at).unwrap();
        assert_eq!(out, inode.block, "extent root of {ino}");
        for node_block in img.extent_node_blocks(&inode) {
            let at = Location::ExtentBlock {
                ino,
                block: node_block,
            };
            let raw = img.block(node_block);
            let node = ExtentNode::decode(raw, at, sb.blocks_count).unwrap();
            // Encode over a copy with the entries and the tail wiped (bytes past the last entry
            // are kept by the encoder, stale or not).
            let used = 12 * (usize::from(node.header.entries) + 1);
            let tail = 12 * (usize::from(node.header.max) + 1);
            let mut out = raw.to_vec();
            out[..used].fill(0);
            out[tail..tail + 4].fill(0);
            node.encode_into(&mut out, at).unwrap();
            set_extent_tail(&mut out, at, inode.csum_seed(seed)).unwrap();
            assert!(out == raw, "extent block {node_block} of {ino}");
            extent_nodes += 1;
        }
        if !inode.is_dir() {
            continue;
        }
        let dseed = inode.csum_seed(seed);
        let indexed = inode.flags & EXT4_INDEX_FL != 0;
        for (logical, block_nr) in img.dir_blocks(&inode).into_iter().enumerate() {
            let at = Location::DirBlock {
                ino,
                block: block_nr,
            };
            let raw = img.block(block_nr);
            if indexed && logical == 0 {
                let root = DxRoot::decode(raw, at, Some(dseed)).unwrap();
                let tail = 0x20 + 8 * usize::from(root.limit);
                let mut out = raw.to_vec();
                out[..0x20 + 8 * root.entries.len()].fill(0);
                out[tail..tail + 8].fill(0);
                root.encode_into(&mut out, at, Some(dseed)).unwrap();
                assert!(out == raw, "dx_root of {ino}");
                htree_blocks += 1;
                continue;
            }
            if indexed && DxNode::decode(raw, at, Some(dseed)).is_ok() {
                htree_blocks += 1;
                continue;
            }
            // A linear block: re-laid out from its live entries it is byte-identical.
            let live: Vec<(u32, u8, Vec<u8>)> = dir_entries(raw, at, true)
                .map(|e| e.unwrap())
                .filter(|e| e.is_live())
                .map(|e| (e.inode, e.file_type, e.name.to_vec()))
                .collect();
            let entries: Vec<NewDirEntry<'_>> = live
                .iter()
                .map(|(inode, ft, name)| NewDirEntry {
                    inode: *inode,
                    file_type: *ft,
                    name,
                })
                .collect();
            let mut out = vec![0xA5u8; BLOCK_SIZE_BYTES];
            encode_dir_block(&mut out, at, &entries, true).unwrap();
            set_dir_tail(&mut out, at, dseed).unwrap();
            assert!(out == raw, "directory block {block_nr} of {ino}");
            dir_blocks += 1;
        }
    }
    assert!(extent_nodes >= 1 && htree_blocks >= 1 && dir_blocks >= 6);
}

#[test]
fn superblock_patch_is_what_dumpe2fs_reports() {
    if !have_tools("superblock_patch_is_what_dumpe2fs_reports") {
        return;
    }
    let fx = build(&[]);
    let mut bytes = std::fs::read(&fx.image).unwrap();
    let mut sb = Superblock::decode(&bytes[sb_range()]).unwrap();
    sb.mount_count = 7;
    sb.kbytes_written = 5 << 20;
    sb.last_orphan = 13;
    sb.wtime_secs = 1_700_000_000;
    sb.set_needs_recovery(true);
    sb.encode_into(&mut bytes[sb_range()]).unwrap();
    assert_eq!(
        Superblock::decode_recovering(&bytes[sb_range()]).unwrap(),
        sb
    );
    assert_eq!(
        Superblock::decode(&bytes[sb_range()]),
        Err(FormatError::JournalNeedsRecovery)
    );
    std::fs::write(&fx.image, &bytes).unwrap();
    let h = dumpe2fs_header(&fx.image);
    assert_eq!(h["Mount count"], "7");
    assert_eq!(h["Lifetime writes"], "5120 MB");
    assert_eq!(h["First orphan inode"], "13");
    assert!(h["Filesystem features"].contains("needs_recovery"));
    assert_eq!(
        u32::from_str_radix(h["Checksum"].trim_start_matches("0x"), 16).unwrap(),
        sb.checksum
    );
}

/// An image being edited through the encoders only.
struct Editor {
    img: Image,
    seed: u32,
}

impl Editor {
    fn desc(&self, g: u32) -> GroupDesc {
        self.img.group(g)
    }

    fn put_desc(&mut self, mut desc: GroupDesc) {
        let off = self.img.sb.group_desc_offset_bytes(desc.group).unwrap() as usize;
        let size = self.img.sb.desc_size_bytes;
        let raw = &mut self.img.bytes[off..off + usize::from(size)];
        desc.encode_into(raw, size, Some(self.seed)).unwrap();
    }

    fn put_sb(&mut self) {
        let mut sb = self.img.sb.clone();
        sb.encode_into(&mut self.img.bytes[sb_range()]).unwrap();
        self.img.sb = sb;
    }

    /// Allocate the first free inode of group 0.
    fn alloc_inode(&mut self) -> u32 {
        let sb = self.img.sb.clone();
        let mut desc = self.desc(0);
        let mut bitmap =
            load_inode_bitmap(&sb, &desc, self.img.block(desc.inode_bitmap_block)).unwrap();
        let index = find_first_zero(&bitmap, sb.first_ino - 1, sb.inodes_per_group).unwrap();
        let at = Location::InodeBitmap { group: 0 };
        assert!(!set_bit(&mut bitmap, at, index, true).unwrap());
        desc.flags &= !BG_INODE_UNINIT;
        desc.free_inodes_count -= 1;
        let used = sb.inodes_per_group - desc.itable_unused;
        if index >= used {
            desc.itable_unused = sb.inodes_per_group - index - 1;
        }
        set_bitmap_csum(&sb, &mut desc, BitmapKind::Inode, &bitmap).unwrap();
        self.img.bytes[block_range(desc.inode_bitmap_block)].copy_from_slice(&bitmap);
        self.put_desc(desc);
        self.img.sb.free_inodes_count -= 1;
        self.put_sb();
        index + 1
    }

    /// Allocate the first free block of group `g` (computing the bitmap if BLOCK_UNINIT).
    fn alloc_block(&mut self, g: u32) -> u64 {
        let sb = self.img.sb.clone();
        let mut desc = self.desc(g);
        let mut bitmap =
            load_block_bitmap(&sb, &desc, self.img.block(desc.block_bitmap_block)).unwrap();
        let n = find_first_zero(&bitmap, 0, group_blocks(&sb, g)).unwrap();
        set_bit(&mut bitmap, Location::BlockBitmap { group: g }, n, true).unwrap();
        desc.flags &= !BG_BLOCK_UNINIT;
        desc.free_blocks_count -= 1;
        set_bitmap_csum(&sb, &mut desc, BitmapKind::Block, &bitmap).unwrap();
        self.img.bytes[block_range(desc.block_bitmap_block)].copy_from_slice(&bitmap);
        self.put_desc(desc);
        self.img.sb.free_blocks_count -= 1;
        self.put_sb();
        u64::from(g) * u64::from(sb.blocks_per_group) + u64::from(n)
    }

    /// Write a new one-extent regular file `ino` holding `data` (at most one block) at `block`.
    fn write_file(&mut self, ino: u32, block: u64, data: &[u8]) {
        let mut padded = data.to_vec();
        padded.resize(BLOCK_SIZE_BYTES, 0);
        self.img.bytes[block_range(block)].copy_from_slice(&padded);
        let now = Timestamp {
            secs: 1_700_000_000,
            nanos: 123_456_789,
        };
        let mut i_block = [0u8; 60];
        let root = ExtentNode::leaf(
            vec![Extent {
                first_logical_block: 0,
                len_blocks: 1,
                start_block: block,
                unwritten: false,
            }],
            ROOT_ENTRIES_MAX,
        );
        root.encode_into(&mut i_block, Location::ExtentRoot { ino })
            .unwrap();
        let mut inode = Inode {
            ino,
            mode: S_IFREG | 0o644,
            uid: 0,
            gid: 0,
            size_bytes: data.len() as u64,
            atime: now,
            ctime: now,
            mtime: now,
            crtime: Some(now),
            dtime: 0,
            links_count: 1,
            blocks_raw: 0,
            flags: EXT4_EXTENTS_FL,
            block: i_block,
            generation: 0x5EED_0000 + ino,
            file_acl_block: 0,
            extra_isize_bytes: self.img.sb.want_extra_isize,
        };
        let huge = self.img.sb.feature_ro_compat & ro_compat::HUGE_FILE != 0;
        inode.set_blocks_512(8, 4096, huge).unwrap();
        let off = self.img.inode_offset_bytes(ino);
        let size = usize::from(self.img.sb.inode_size_bytes);
        let record = &mut self.img.bytes[off..off + size];
        record.fill(0);
        inode.encode_into(record, Some(self.seed)).unwrap();
    }

    /// Insert `name -> ino` into directory block `block_nr` of `dir`; false if it is full.
    fn link_in_block(&mut self, dir: &Inode, block_nr: u64, name: &[u8], ino: u32) -> bool {
        let at = Location::DirBlock {
            ino: dir.ino,
            block: block_nr,
        };
        let entry = NewDirEntry {
            inode: ino,
            file_type: file_type::REG_FILE,
            name,
        };
        let block = &mut self.img.bytes[block_range(block_nr)];
        if insert_dir_entry(block, at, true, &entry).unwrap().is_none() {
            return false;
        }
        set_dir_tail(block, at, dir.csum_seed(self.seed)).unwrap();
        true
    }
}

#[test]
fn image_edited_through_encoders_is_clean() {
    if !have_tools("image_edited_through_encoders_is_clean") {
        return;
    }
    let fx = htree_fixture();
    let img = Image::open(&fx.image);
    let seed = img.sb.verify_seed().unwrap();
    let mut ed = Editor { img, seed };
    assert_ne!(
        ed.desc(1).flags & BG_BLOCK_UNINIT,
        0,
        "group 1 starts BLOCK_UNINIT"
    );

    // 1. /newfile in the linear root directory, data in group 0.
    let data1: Vec<u8> = (0..3000u32).map(|i| b'a' + (i * 7 % 26) as u8).collect();
    let ino1 = ed.alloc_inode();
    let block1 = ed.alloc_block(0);
    ed.write_file(ino1, block1, &data1);
    let root = ed.img.inode(2);
    assert_eq!(root.flags & EXT4_INDEX_FL, 0);
    let root_block = ed.img.dir_blocks(&root)[0];
    assert!(ed.link_in_block(&root, root_block, b"newfile", ino1));

    // 2. A file in the htree directory /many, data in BLOCK_UNINIT group 1: the name's hash
    //    picks the leaf; take the first candidate name whose leaf has room.
    let data2 = b"hashed into an htree leaf\n".to_vec();
    let ino2 = ed.alloc_inode();
    let block2 = ed.alloc_block(1);
    ed.write_file(ino2, block2, &data2);
    let many = ed.img.inode(ed.img.lookup("/many"));
    assert_ne!(
        many.flags & EXT4_INDEX_FL,
        0,
        "/many should be an htree after e2fsck -D"
    );
    let blocks = ed.img.dir_blocks(&many);
    let at = Location::DirBlock {
        ino: many.ino,
        block: blocks[0],
    };
    let dx = DxRoot::decode(ed.img.block(blocks[0]), at, Some(many.csum_seed(seed))).unwrap();
    assert_eq!(dx.indirect_levels, 0);
    let version = effective_hash_version(dx.hash_version, ed.img.sb.unsigned_dir_hash());
    let mut linked = None;
    for i in 0..64 {
        let name = format!("hashed_{i}");
        let hash = dx_hash(name.as_bytes(), version, &ed.img.sb.hash_seed, at).unwrap();
        let leaf = dx_find(&dx.entries, hash.major).unwrap().block;
        if ed.link_in_block(&many, blocks[leaf as usize], name.as_bytes(), ino2) {
            linked = Some(name);
            break;
        }
    }
    let name2 = linked.expect("no htree leaf had room");

    let free_before = ed.img.sb.free_blocks_count;
    std::fs::write(&fx.image, &ed.img.bytes).unwrap();
    let (clean, report) = e2fsck_n(&fx.image);
    assert!(clean, "e2fsck -fn after the edit:\n{report}");
    assert!(debugfs("cat /newfile", &fx.image).as_bytes() == &data1[..]);
    assert!(debugfs(&format!("cat /many/{name2}"), &fx.image).as_bytes() == &data2[..]);
    let h = dumpe2fs_header(&fx.image);
    assert_eq!(h["Free blocks"], free_before.to_string());
    // Our own decoders agree (every checksum verified on the way).
    let reread = Image::open(&fx.image);
    assert_eq!(reread.lookup("/newfile"), ino1);
    assert!(reread.read_file(&reread.inode(ino1)) == data1);
    assert_eq!(reread.group(1).flags & BG_BLOCK_UNINIT, 0);
}

#[test]
fn wrong_bitmap_checksum_is_reported_by_e2fsck_and_verify() {
    if !have_tools("wrong_bitmap_checksum_is_reported_by_e2fsck_and_verify") {
        return;
    }
    let fx = build(&[]);
    let (clean, report) = e2fsck_n(&fx.image);
    assert!(clean, "fresh image not clean:\n{report}");
    let mut img = Image::open(&fx.image);
    let seed = img.sb.verify_seed().unwrap();
    let mut desc = img.group(0);
    desc.block_bitmap_csum ^= 0x0001_0000; // wrong hi half, correct descriptor checksum
    let off = img.sb.group_desc_offset_bytes(0).unwrap() as usize;
    let size = img.sb.desc_size_bytes;
    desc.encode_into(
        &mut img.bytes[off..off + usize::from(size)],
        size,
        Some(seed),
    )
    .unwrap();
    let desc = img.group(0); // the descriptor itself still verifies
    let bitmap = img.block(desc.block_bitmap_block);
    assert!(matches!(
        verify_bitmap(&img.sb, &desc, BitmapKind::Block, bitmap),
        Err(FormatError::ChecksumMismatch {
            at: Location::BlockBitmap { group: 0 },
            ..
        })
    ));
    assert!(load_block_bitmap(&img.sb, &desc, bitmap).is_err());
    verify_bitmap(
        &img.sb,
        &desc,
        BitmapKind::Inode,
        img.block(desc.inode_bitmap_block),
    )
    .unwrap();
    std::fs::write(&fx.image, &img.bytes).unwrap();
    let (clean, report) = e2fsck_n(&fx.image);
    assert!(!clean, "e2fsck missed the bad bitmap checksum:\n{report}");
    assert!(
        report.to_lowercase().contains("bitmap") && report.to_lowercase().contains("checksum"),
        "{report}"
    );
}

#[test]
fn uninit_block_bitmap_is_what_e2fsck_expects() {
    if !have_tools("uninit_block_bitmap_is_what_e2fsck_expects") {
        return;
    }
    // 8 groups: backups in 1, 3, 5, 7; none in 2, 4, 6; the last group full.
    let fx = build(&["-g", "2048"]);
    let mut img = Image::open(&fx.image);
    let seed = img.sb.verify_seed().unwrap();
    let sb = img.sb.clone();
    let mut initialised = 0;
    for g in 1..sb.group_count() {
        let mut desc = img.group(g);
        if desc.flags & BG_BLOCK_UNINIT == 0 {
            continue;
        }
        let bitmap = uninit_block_bitmap(&sb, &desc).unwrap();
        assert_eq!(
            count_zeros(&bitmap, sb.blocks_per_group),
            desc.free_blocks_count,
            "group {g}"
        );
        img.bytes[block_range(desc.block_bitmap_block)].copy_from_slice(&bitmap);
        desc.flags &= !BG_BLOCK_UNINIT;
        set_bitmap_csum(&sb, &mut desc, BitmapKind::Block, &bitmap).unwrap();
        let off = sb.group_desc_offset_bytes(g).unwrap() as usize;
        let size = sb.desc_size_bytes;
        desc.encode_into(
            &mut img.bytes[off..off + usize::from(size)],
            size,
            Some(seed),
        )
        .unwrap();
        initialised += 1;
    }
    assert!(initialised >= 4, "only {initialised} BLOCK_UNINIT groups");
    std::fs::write(&fx.image, &img.bytes).unwrap();
    let (clean, report) = e2fsck_n(&fx.image);
    assert!(
        clean,
        "e2fsck -fn after initialising the bitmaps:\n{report}"
    );
}
