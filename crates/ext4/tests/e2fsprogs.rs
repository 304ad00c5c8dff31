//! Cross-checks of every decoder against e2fsprogs on real `mke2fs -d` images: `dumpe2fs` for the
//! superblock and group descriptors, `debugfs stat`/`ls -p`/`dump_extents` for inodes,
//! directories and extent trees, and the source tree for file contents. All checksums are
//! verified on the way (the image reader in `common` unwraps every verification).

mod common;

use std::collections::BTreeSet;

use aios_ext4::format::inode::{EXT4_INDEX_FL, I_BLOCK};
use common::{build, debugfs, dumpe2fs_header, have_e2fsprogs, run, Image};

fn hex_u32(s: &str) -> u32 {
    u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).unwrap()
}

#[test]
fn superblock_matches_dumpe2fs() {
    if !have_e2fsprogs("superblock_matches_dumpe2fs") {
        return;
    }
    let fx = build(&["-L", "aiosvol"]);
    let img = Image::open(&fx.image);
    let sb = &img.sb;
    let h = dumpe2fs_header(&fx.image);
    let num = |k: &str| -> u64 { h[k].split_whitespace().next().unwrap().parse().unwrap() };
    assert_eq!(u64::from(sb.inodes_count), num("Inode count"));
    assert_eq!(sb.blocks_count, num("Block count"));
    assert_eq!(sb.reserved_blocks_count, num("Reserved block count"));
    assert_eq!(sb.free_blocks_count, num("Free blocks"));
    assert_eq!(u64::from(sb.free_inodes_count), num("Free inodes"));
    assert_eq!(u64::from(sb.first_data_block), num("First block"));
    assert_eq!(u64::from(sb.block_size_bytes), num("Block size"));
    assert_eq!(u64::from(sb.blocks_per_group), num("Blocks per group"));
    assert_eq!(u64::from(sb.inodes_per_group), num("Inodes per group"));
    assert_eq!(u64::from(sb.inode_size_bytes), num("Inode size"));
    assert_eq!(u64::from(sb.desc_size_bytes), num("Group descriptor size"));
    assert_eq!(
        u64::from(sb.reserved_gdt_blocks),
        num("Reserved GDT blocks")
    );
    assert_eq!(u64::from(sb.first_ino), num("First inode"));
    assert_eq!(u64::from(sb.journal_inum), num("Journal inode"));
    assert_eq!(u64::from(sb.min_extra_isize), num("Required extra isize"));
    assert_eq!(u64::from(sb.want_extra_isize), num("Desired extra isize"));
    assert_eq!(sb.uuid_string(), h["Filesystem UUID"]);
    assert_eq!(sb.volume_name_lossy(), h["Filesystem volume name"]);
    assert_eq!(sb.checksum, hex_u32(&h["Checksum"]));
    assert_eq!(h["Checksum type"], "crc32c");
    assert_eq!(h["Filesystem state"], "clean");
    assert_eq!(sb.state, 1);
    let ours: BTreeSet<String> = sb.feature_list().into_iter().collect();
    let theirs: BTreeSet<String> = h["Filesystem features"]
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(ours, theirs);
    assert!(sb.has_metadata_csum() && sb.is_64bit() && sb.has_journal());
    assert!(sb.mkfs_time_secs > 1_600_000_000);
}

/// Per-group facts from `dumpe2fs` (no `-h`).
#[derive(Debug, Default)]
struct GroupLine {
    csum: u16,
    block_bitmap: u64,
    inode_bitmap: u64,
    inode_table: u64,
    free_blocks: u32,
    free_inodes: u32,
    dirs: u32,
}

fn parse_groups(text: &str) -> Vec<GroupLine> {
    let mut groups: Vec<GroupLine> = Vec::new();
    let first_num = |s: &str| -> u64 {
        s.split(|c: char| !c.is_ascii_digit())
            .find(|t| !t.is_empty())
            .unwrap()
            .parse()
            .unwrap()
    };
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("Group ") && t.contains("(Blocks ") {
            let csum = t
                .split("csum 0x")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap();
            groups.push(GroupLine {
                csum: u16::from_str_radix(csum, 16).unwrap(),
                ..Default::default()
            });
        }
        let Some(g) = groups.last_mut() else { continue };
        if let Some(rest) = t.strip_prefix("Block bitmap at ") {
            g.block_bitmap = first_num(rest);
        } else if let Some(rest) = t.strip_prefix("Inode bitmap at ") {
            g.inode_bitmap = first_num(rest);
        } else if let Some(rest) = t.strip_prefix("Inode table at ") {
            g.inode_table = first_num(rest);
        } else if t.contains(" free blocks, ") {
            let nums: Vec<u64> = t
                .split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().unwrap())
                .collect();
            g.free_blocks = nums[0] as u32;
            g.free_inodes = nums[1] as u32;
            g.dirs = nums[2] as u32;
        }
    }
    groups
}

#[test]
fn group_descriptors_match_dumpe2fs() {
    if !have_e2fsprogs("group_descriptors_match_dumpe2fs") {
        return;
    }
    // Default geometry (one group) and 8192 blocks per group (two groups, flex_bg packing).
    for args in [&[][..], &["-g", "8192"][..]] {
        let fx = build(args);
        let img = Image::open(&fx.image);
        let lines = parse_groups(&run("dumpe2fs", &[], &fx.image));
        assert_eq!(lines.len() as u32, img.sb.group_count(), "args {args:?}");
        for (g, line) in lines.iter().enumerate() {
            let desc = img.group(g as u32);
            assert_eq!(desc.checksum, line.csum, "group {g}");
            assert_eq!(desc.block_bitmap_block, line.block_bitmap, "group {g}");
            assert_eq!(desc.inode_bitmap_block, line.inode_bitmap, "group {g}");
            assert_eq!(desc.inode_table_block, line.inode_table, "group {g}");
            assert_eq!(desc.free_blocks_count, line.free_blocks, "group {g}");
            assert_eq!(desc.free_inodes_count, line.free_inodes, "group {g}");
            assert_eq!(desc.used_dirs_count, line.dirs, "group {g}");
        }
    }
}

/// `Key: value` pairs from `debugfs stat` (several per line).
fn stat_field<'a>(stat: &'a str, key: &str) -> &'a str {
    let pos = stat
        .find(&format!("{key}:"))
        .unwrap_or_else(|| panic!("{key} missing in {stat}"));
    stat[pos + key.len() + 1..]
        .split_whitespace()
        .next()
        .unwrap()
}

#[test]
fn inodes_match_debugfs_stat() {
    if !have_e2fsprogs("inodes_match_debugfs_stat") {
        return;
    }
    let fx = build(&[]);
    let img = Image::open(&fx.image);
    let paths = [
        "/",
        "/hello.txt",
        "/empty",
        "/sub",
        "/sub/big.bin",
        "/sub/deeper",
        "/sub/deeper/note",
        "/fast_link",
        "/slow_link",
        "/sparse",
        "/many",
    ];
    for path in paths {
        let ino = img.lookup(path);
        let inode = img.inode(ino);
        let stat = debugfs(&format!("stat {path}"), &fx.image);
        assert_eq!(ino.to_string(), stat_field(&stat, "Inode"), "{path}");
        assert_eq!(
            u64::from(inode.mode & 0o7777),
            u64::from_str_radix(stat_field(&stat, "Mode"), 8).unwrap(),
            "{path}"
        );
        assert_eq!(
            inode.size_bytes.to_string(),
            stat_field(&stat, "Size"),
            "{path}"
        );
        assert_eq!(
            inode.links_count.to_string(),
            stat_field(&stat, "Links"),
            "{path}"
        );
        assert_eq!(inode.uid.to_string(), stat_field(&stat, "User"), "{path}");
        assert_eq!(inode.gid.to_string(), stat_field(&stat, "Group"), "{path}");
        assert_eq!(inode.flags, hex_u32(stat_field(&stat, "Flags")), "{path}");
        assert_eq!(
            inode.blocks_512(4096).to_string(),
            stat_field(&stat, "Blockcount"),
            "{path}"
        );
        let stored = hex_u32(stat_field(&stat, "Inode checksum"));
        let raw = img.inode_bytes(ino);
        let lo = u32::from(u16::from_le_bytes([raw[0x7C], raw[0x7D]]));
        let hi = u32::from(u16::from_le_bytes([raw[0x82], raw[0x83]]));
        assert_eq!(stored, lo | (hi << 16), "{path}");
        let (mtime_secs, mtime_extra) = stat_field(&stat, "mtime").split_once(':').unwrap();
        assert_eq!(inode.mtime.secs as u32, hex_u32(mtime_secs), "{path}");
        assert_eq!(inode.mtime.nanos, hex_u32(mtime_extra) >> 2, "{path}");
        let type_ok = match stat_field(&stat, "Type") {
            "regular" => inode.is_regular(),
            "directory" => inode.is_dir(),
            "symlink" => inode.is_symlink(),
            other => panic!("unexpected type {other}"),
        };
        assert!(type_ok, "{path}");
    }
    // A fast symlink keeps its target in i_block; a slow one in a data block.
    let fast = img.inode(img.lookup("/fast_link"));
    assert_eq!(&fast.block[..fast.size_bytes as usize], b"hello.txt");
    let slow = img.inode(img.lookup("/slow_link"));
    let target = std::fs::read_link(fx.src.join("slow_link")).unwrap();
    assert_eq!(img.read_file(&slow), target.as_os_str().as_encoded_bytes());
    assert_eq!(I_BLOCK, 0x28);
}

#[test]
fn directories_match_debugfs_ls() {
    if !have_e2fsprogs("directories_match_debugfs_ls") {
        return;
    }
    let fx = build(&[]);
    let img = Image::open(&fx.image);
    for path in ["/", "/sub", "/sub/deeper", "/many"] {
        let dir = img.inode(img.lookup(path));
        assert_eq!(
            dir.flags & EXT4_INDEX_FL,
            0,
            "{path}: htree directories are not decoded here"
        );
        let ours: BTreeSet<(String, u32)> = img
            .list_dir(&dir)
            .into_iter()
            .map(|(n, i, _)| (n, i))
            .collect();
        // `ls -p` lines: /ino/mode/uid/gid/name/size/
        let theirs: BTreeSet<(String, u32)> = debugfs(&format!("ls -p {path}"), &fx.image)
            .lines()
            .filter(|l| l.starts_with('/'))
            .map(|l| {
                let f: Vec<&str> = l.split('/').collect();
                (f[5].to_string(), f[1].parse().unwrap())
            })
            .collect();
        assert_eq!(ours, theirs, "{path}");
    }
    let many = img.inode(img.lookup("/many"));
    assert!(
        img.dir_blocks(&many).len() >= 2,
        "/many should span several blocks"
    );
    // The file type byte agrees with the inode's mode.
    for (name, ino, ft) in img.list_dir(&img.inode(2)) {
        let inode = img.inode(ino);
        let expect = if inode.is_dir() {
            2
        } else if inode.is_symlink() {
            7
        } else {
            1
        };
        assert_eq!(ft, expect, "{name}");
    }
}

#[test]
fn extent_tree_and_contents_match_source() {
    if !have_e2fsprogs("extent_tree_and_contents_match_source") {
        return;
    }
    let fx = build(&[]);
    let img = Image::open(&fx.image);
    let sparse = img.inode(img.lookup("/sparse"));
    assert!(
        !img.extent_node_blocks(&sparse).is_empty(),
        "sparse file should have a depth-1 tree"
    );
    // dump_extents leaf lines: "1/ 1   3/ 20     6 -     6  2219 -  2219      1"
    let dump = debugfs("dump_extents /sparse", &fx.image);
    let theirs: Vec<(u32, u64, u16)> = dump
        .lines()
        .skip(1)
        .filter_map(|l| {
            let nums: Vec<u64> = l
                .split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().unwrap())
                .collect();
            (nums.len() == 9 && nums[0] == nums[1])
                .then(|| (nums[4] as u32, nums[6], nums[8] as u16))
        })
        .collect();
    let ours: Vec<(u32, u64, u16)> = img
        .extents(&sparse)
        .iter()
        .map(|e| (e.first_logical_block, e.start_block, e.len_blocks))
        .collect();
    assert_eq!(ours, theirs);
    assert_eq!(ours.len(), 20);
    for path in [
        "/hello.txt",
        "/empty",
        "/sub/big.bin",
        "/sub/deeper/note",
        "/sparse",
    ] {
        let inode = img.inode(img.lookup(path));
        let source = std::fs::read(fx.src.join(&path[1..])).unwrap();
        assert!(
            img.read_file(&inode) == source,
            "{path} differs from its source"
        );
    }
}
