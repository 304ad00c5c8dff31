//! Corruption: flipped bytes in inodes, directory blocks, htree blocks and group descriptors are
//! typed errors naming the structure (and the path, for lookups), or correct data; never a panic.

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use aios_device::TargetOptions;
use aios_device_psync::{PsyncConfig, PsyncDevice};
use aios_ext4::{FormatError, Location};
use aios_fs::{Fs, FsError, MountOptions};

/// Byte offsets of structures in the clean image, found through the mounted file system.
struct Layout {
    file_ino: u32,
    inode_offset: u64,
    dir_ino: u32,
    dir_block: u64,
    big_ino: u32,
    dx_root_block: u64,
    group_desc_offset: u64,
}

fn layout(image: &Path) -> Layout {
    let fs = common::mount(image);
    let mut io = fs.io().unwrap();
    let sb = fs.superblock();
    let file_ino = fs.lookup(&mut io, "/size4097").unwrap();
    let (group, index) = sb.inode_group_index(file_ino).unwrap();
    let inode_offset = fs.groups()[group as usize].inode_table_block * 4096
        + u64::from(index) * u64::from(sb.inode_size_bytes);
    let block_of = |io: &mut _, path: &str| {
        let ino = fs.lookup(io, path).unwrap();
        let inode = fs.read_inode(io, ino).unwrap();
        (
            ino,
            fs.extent_map(io, &inode).unwrap().mappings()[0].physical_block,
        )
    };
    let (dir_ino, dir_block) = block_of(&mut io, "/a");
    let (big_ino, dx_root_block) = block_of(&mut io, "/big");
    Layout {
        file_ino,
        inode_offset,
        dir_ino,
        dir_block,
        big_ino,
        dx_root_block,
        group_desc_offset: sb.group_desc_offset_bytes(0).unwrap(),
    }
}

/// A copy of `image` at `dir/name`.
fn copy(image: &Path, dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::copy(image, &path).unwrap();
    path
}

fn flip(path: &Path, offset: u64, mask: u8) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset).unwrap();
    byte[0] ^= mask;
    file.write_all_at(&byte, offset).unwrap();
}

fn mount_small(path: &Path) -> Result<Fs<PsyncDevice>, FsError> {
    // Not exclusive: thousands of mounts per test while other tests of this binary spawn
    // mke2fs/debugfs; a child forked between our open and its exec briefly shares the
    // descriptor, so a flock of the next open could fail with EWOULDBLOCK (seen as a flake).
    let config = PsyncConfig {
        arena_bytes: 1 << 20,
        target: TargetOptions {
            read_only: true,
            exclusive: false,
        },
    };
    Fs::mount(PsyncDevice::open(path, config)?, MountOptions::default())
}

fn is_checksum_error_at(err: &FsError, at: Location) -> bool {
    matches!(err.format_error(), Some(FormatError::ChecksumMismatch { at: found, .. }) if *found == at)
}

#[test]
fn flipped_bytes_are_checksum_errors_naming_the_structure() {
    if !common::have_mke2fs("flipped_bytes_are_checksum_errors_naming_the_structure") {
        return;
    }
    let fx = common::build();
    let l = layout(&fx.image);

    // An inode: its stat and open fail, naming the inode.
    let img = copy(&fx.image, fx.dir.path(), "inode");
    flip(&img, l.inode_offset + 0x4, 0x10);
    let fs = mount_small(&img).unwrap();
    let mut io = fs.io().unwrap();
    let err = fs.stat(&mut io, l.file_ino).unwrap_err();
    assert!(
        is_checksum_error_at(&err, Location::Inode { ino: l.file_ino }),
        "{err}"
    );
    assert!(
        err.to_string().contains(&format!("inode {}", l.file_ino)),
        "{err}"
    );

    // A linear directory block: lookups through it fail naming the path and the block.
    let img = copy(&fx.image, fx.dir.path(), "dir");
    flip(&img, l.dir_block * 4096 + 100, 0x01);
    let fs = mount_small(&img).unwrap();
    let mut io = fs.io().unwrap();
    let at = Location::DirBlock {
        ino: l.dir_ino,
        block: l.dir_block,
    };
    let err = fs.lookup(&mut io, "/a/b/c").unwrap_err();
    assert!(is_checksum_error_at(&err, at), "{err}");
    assert!(err.to_string().contains("/a/b/c"), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("directory block {}", l.dir_block)),
        "{err}"
    );
    let err = fs.read_dir(&mut io, l.dir_ino).unwrap_err();
    assert!(is_checksum_error_at(&err, at), "{err}");

    // The htree root of the big directory.
    let img = copy(&fx.image, fx.dir.path(), "dx");
    flip(&img, l.dx_root_block * 4096 + 0x24, 0x01);
    let fs = mount_small(&img).unwrap();
    let mut io = fs.io().unwrap();
    let err = fs.read_dir(&mut io, l.big_ino).unwrap_err();
    let at = Location::DirBlock {
        ino: l.big_ino,
        block: l.dx_root_block,
    };
    assert!(is_checksum_error_at(&err, at), "{err}");

    // A group descriptor: mount refuses.
    let img = copy(&fx.image, fx.dir.path(), "gd");
    flip(&img, l.group_desc_offset + 0x0C, 0x01);
    let err = mount_small(&img).err().unwrap();
    assert!(
        is_checksum_error_at(&err, Location::GroupDesc { group: 0 }),
        "{err}"
    );
}

/// Every bit of an inode, every byte of a directory block and of the htree root: each flip gives
/// an error or the correct answer.
#[test]
fn every_flip_of_an_inode_or_directory_block_is_an_error_or_correct() {
    if !common::have_mke2fs("every_flip_of_an_inode_or_directory_block_is_an_error_or_correct") {
        return;
    }
    let fx = common::build();
    let l = layout(&fx.image);
    let img = copy(&fx.image, fx.dir.path(), "sweep");
    let source = std::fs::read(fx.src.join("size4097")).unwrap();
    let mut a_names: Vec<Vec<u8>> = vec![b"b".to_vec()];
    a_names.sort();
    let mut cases = 0;
    let mut errors = 0;
    let mut check =
        |offset: u64, mask: u8, probe: &dyn Fn(&Fs<PsyncDevice>) -> Result<(), FsError>| {
            flip(&img, offset, mask);
            let result = mount_small(&img).and_then(|fs| probe(&fs));
            flip(&img, offset, mask);
            cases += 1;
            if let Err(err) = result {
                assert!(!err.to_string().is_empty());
                errors += 1;
            }
        };
    let read_file = |fs: &Fs<PsyncDevice>| -> Result<(), FsError> {
        let mut io = fs.io()?;
        let file = fs.open(&mut io, l.file_ino)?;
        let mut buf = vec![0u8; 8192];
        let n = fs.read_at(&mut io, &file, 0, &mut buf)?;
        assert!(buf[..n] == source[..], "wrong bytes read without an error");
        Ok(())
    };
    for byte in 0..256u64 {
        for bit in 0..8 {
            check(l.inode_offset + byte, 1 << bit, &read_file);
        }
    }
    let list_a = |fs: &Fs<PsyncDevice>| -> Result<(), FsError> {
        let mut io = fs.io()?;
        let names: Vec<Vec<u8>> = fs
            .read_dir(&mut io, l.dir_ino)?
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, a_names, "wrong entries listed without an error");
        Ok(())
    };
    for byte in 0..4096u64 {
        check(l.dir_block * 4096 + byte, 0x41, &list_a);
    }
    let find_in_big = |fs: &Fs<PsyncDevice>| -> Result<(), FsError> {
        let mut io = fs.io()?;
        let ino = fs.lookup(&mut io, "/big/entry_02999_of_the_big_dir")?;
        assert_ne!(ino, 0);
        Ok(())
    };
    for byte in 0..512u64 {
        check(l.dx_root_block * 4096 + byte, 0x41, &find_in_big);
    }
    eprintln!("{cases} flips, {errors} errors");
    // metadata_csum covers every byte of these structures except unused inode space.
    assert!(errors * 10 >= cases * 9, "{errors} errors in {cases} flips");
}

/// Blocks of the extent tree nodes below the root of `path`, from `debugfs -R "ex PATH"`: the
/// physical column of index lines (`level/max` with level < max), in tree order.
fn extent_node_blocks(image: &Path, path: &str) -> Vec<u64> {
    common::debugfs(&format!("ex {path}"), image)
        .lines()
        .skip(1)
        .filter_map(|line| {
            let tokens: Vec<&str> = line.split_whitespace().collect();
            let level: u32 = tokens.first()?.trim_end_matches('/').parse().ok()?;
            let max: u32 = tokens.get(1)?.parse().ok()?;
            (level < max).then(|| tokens.get(7)?.parse().ok())?
        })
        .collect()
}

/// Every byte of the depth-1 index node and of the first leaf of a depth-2 extent tree: each
/// flip gives an error or exactly the clean extent map.
#[test]
fn every_flip_of_extent_tree_nodes_is_an_error_or_the_same_map() {
    if !common::have_mke2fs("every_flip_of_extent_tree_nodes_is_an_error_or_the_same_map") {
        return;
    }
    let fx = common::build();
    let nodes = extent_node_blocks(&fx.image, "/frag");
    let (ino, clean) = {
        let fs = common::mount(&fx.image);
        let mut io = fs.io().unwrap();
        let ino = fs.lookup(&mut io, "/frag").unwrap();
        (ino, fs.open(&mut io, ino).unwrap().extents().clone())
    };
    assert_eq!(clean.depth(), 2);
    // One level-1 node, then at least five leaves (1400 extents / 340 per leaf).
    assert!(nodes.len() >= 6, "extent nodes of /frag: {nodes:?}");
    let img = copy(&fx.image, fx.dir.path(), "extents");
    let (mut cases, mut errors) = (0, 0);
    for node in &nodes[..2] {
        for byte in 0..4096u64 {
            let offset = node * 4096 + byte;
            flip(&img, offset, 0x41);
            let result = mount_small(&img).and_then(|fs| {
                let mut io = fs.io()?;
                fs.open(&mut io, ino).map(|f| f.extents().clone())
            });
            flip(&img, offset, 0x41);
            cases += 1;
            match result {
                Ok(map) => assert!(map == clean, "flip at {offset}: wrong map without an error"),
                Err(err) => {
                    let cause = err.root_cause();
                    assert!(
                        matches!(cause, FsError::Format(_) | FsError::Corrupt { .. }),
                        "flip at {offset}: {err}"
                    );
                    errors += 1;
                }
            }
        }
    }
    eprintln!("{cases} flips of extent nodes, {errors} errors");
    assert!(errors * 10 >= cases * 9, "{errors} errors in {cases} flips");
}

/// Mount refuses what the decoders refuse, naming the reason.
#[test]
fn mount_refuses_unknown_features_and_a_journal_needing_recovery() {
    if !common::have_mke2fs("mount_refuses_unknown_features_and_a_journal_needing_recovery") {
        return;
    }
    let fx = common::build();
    let set_feature = |name: &str| {
        let img = copy(&fx.image, fx.dir.path(), name);
        let out = std::process::Command::new("debugfs")
            .args(["-w", "-R", &format!("feature {name}")])
            .arg(&img)
            .output()
            .unwrap();
        assert!(out.status.success());
        img
    };
    let err = mount_small(&set_feature("needs_recovery")).err().unwrap();
    assert_eq!(err, FsError::Format(FormatError::JournalNeedsRecovery));
    assert!(err.to_string().contains("needs recovery"), "{err}");
    let err = mount_small(&set_feature("inline_data")).err().unwrap();
    assert!(
        matches!(&err, FsError::Format(FormatError::UnsupportedFeature { names, .. }) if names.contains("inline_data")),
        "{err}"
    );
    assert!(err.to_string().contains("inline_data"), "{err}");
}

/// Regression (found by the corrupted-image campaign): an extent pointing into an inode table,
/// with every checksum valid, was read as file data, and unlinking the file freed the
/// inode-table block for reuse as data (e2fsck: "multiply-claimed blocks ... shared with
/// <filesystem metadata>"). Both paths now refuse it as a system zone, as the kernel's
/// block-validity check does.
#[test]
fn an_extent_into_metadata_is_refused_by_reads_and_frees() {
    let name = "an_extent_into_metadata_is_refused_by_reads_and_frees";
    if !common::have_mke2fs(name) {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("small"), b"hello").unwrap();
    let image = dir.path().join("zone.img");
    let out = std::process::Command::new("mke2fs")
        .args(["-q", "-t", "ext4", "-F", "-b", "4096", "-d"])
        .arg(&src)
        .arg(&image)
        .arg("8M")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let itable = {
        let fs = common::mount(&image);
        fs.groups()[0].inode_table_block
    };
    // i_block[5] is the first extent's ee_start_lo; debugfs reseals the inode checksum.
    let cmd = format!("sif /small block[5] {itable}");
    let out = std::process::Command::new("debugfs")
        .args(["-w", "-R", &cmd])
        .arg(&image)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let fs = common::mount(&image);
    let mut io = fs.io().unwrap();
    let ino = fs.lookup(&mut io, "/small").unwrap();
    let inode = fs.read_inode(&mut io, ino).unwrap();
    let err = fs.extent_map(&mut io, &inode).unwrap_err();
    assert!(
        matches!(err, FsError::Corrupt { what, .. } if what.contains("system zone")),
        "read: {err}"
    );
    drop(io);
    drop(fs);

    let device = PsyncDevice::open(&image, PsyncConfig::default()).unwrap();
    let options = aios_fs::RwOptions {
        sync: true,
        ..aios_fs::RwOptions::default()
    };
    let mut rw = aios_fs::RwFs::mount(device, options).unwrap();
    let err = rw.unlink("/small").unwrap_err();
    assert!(err.to_string().contains("system zone"), "unlink: {err}");
    for i in 0..4 {
        let path = format!("/x{i}");
        rw.create(&path, 0o644).unwrap();
        rw.write(&path, 0, &vec![i as u8; 8192]).unwrap();
    }
    let (_, r) = rw.unmount();
    r.unwrap();
    // e2fsck still reports the planted extent (its block shared with the metadata), but no
    // file written afterwards shares a block: nothing was freed and handed out again.
    let out = std::process::Command::new("e2fsck")
        .arg("-fn")
        .arg(&image)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("shared with 1 file(s)"), "{text}");
    assert!(!text.contains("/x"), "{text}");
}
