//! Real images made by `mke2fs -d` from a generated tree: every file, directory and symlink
//! reads back as the source has it, and path errors are typed and name the path.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use aios_device::Device;
use aios_ext4::format::inode::EXT4_INDEX_FL;
use aios_fs::{Fs, FsError, IoCtx, ROOT_INO};
use common::{build, have_mke2fs, mount};

/// Reads the whole file at `path` through `read_at` in 200 KiB pieces (more than one request).
fn read_whole<D: Device>(fs: &Fs<D>, io: &mut IoCtx<D::Queue>, path: &[u8]) -> Vec<u8> {
    let ino = fs.lookup(io, path).unwrap();
    let file = fs.open(io, ino).unwrap();
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 200 * 1024];
    loop {
        let n = fs.read_at(io, &file, out.len() as u64, &mut chunk).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    out
}

/// Compares the image subtree at `path` with the source subtree at `src`, recursively.
fn compare_tree<D: Device>(fs: &Fs<D>, io: &mut IoCtx<D::Queue>, src: &Path, path: &str) -> usize {
    let mut checked = 0;
    let ino = fs.lookup(io, path).unwrap();
    let mut names: Vec<Vec<u8>> = fs
        .read_dir(io, ino)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .filter(|n| !(path == "/" && n == b"lost+found"))
        .collect();
    let mut expected: Vec<Vec<u8>> = std::fs::read_dir(src)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_encoded_bytes())
        .collect();
    names.sort();
    expected.sort();
    assert_eq!(names, expected, "entries of {path}");
    for name in expected {
        let name = String::from_utf8(name).unwrap();
        let child = format!("{}/{name}", path.trim_end_matches('/'));
        let src_child = src.join(&name);
        let meta = std::fs::symlink_metadata(&src_child).unwrap();
        let ino = fs.lookup(io, &child).unwrap();
        let stat = fs.stat(io, ino).unwrap();
        assert_eq!(u32::from(stat.mode), meta.mode(), "mode of {child}");
        assert_eq!(stat.uid, meta.uid(), "uid of {child}");
        assert_eq!(stat.gid, meta.gid(), "gid of {child}");
        assert_eq!(u64::from(stat.nlink), meta.nlink(), "nlink of {child}");
        assert_eq!(stat.mtime.secs, meta.mtime(), "mtime of {child}");
        assert!(
            stat.mtime.nanos == meta.mtime_nsec() as u32 || stat.mtime.nanos == 0,
            "mtime nanoseconds of {child}: {} vs {}",
            stat.mtime.nanos,
            meta.mtime_nsec()
        );
        if meta.is_dir() {
            checked += compare_tree(fs, io, &src_child, &child);
        } else {
            assert_eq!(stat.size_bytes, meta.len(), "size of {child}");
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&src_child).unwrap();
                assert_eq!(
                    fs.read_link(io, ino).unwrap(),
                    target.into_os_string().into_encoded_bytes(),
                    "target of {child}"
                );
            } else {
                let data = read_whole(fs, io, child.as_bytes());
                assert!(
                    data == std::fs::read(&src_child).unwrap(),
                    "contents of {child}"
                );
            }
        }
        checked += 1;
    }
    checked
}

#[test]
fn every_file_directory_and_symlink_reads_back_as_the_source() {
    if !have_mke2fs("every_file_directory_and_symlink_reads_back_as_the_source") {
        return;
    }
    let fx = build();
    let fs = mount(&fx.image);
    let mut io = fs.io().unwrap();
    let checked = compare_tree(&fs, &mut io, &fx.src, "/");
    assert!(
        checked > common::BIG_DIR_ENTRIES,
        "checked {checked} entries"
    );
}

/// mke2fs 1.47.0 drops nanoseconds (`-d` stores whole seconds), so set some with debugfs (which
/// recomputes the inode checksum) and read them back: `i_*_extra` = nanoseconds << 2 | epoch.
#[test]
fn nanoseconds_and_epoch_bits_are_decoded() {
    if !have_mke2fs("nanoseconds_and_epoch_bits_are_decoded") {
        return;
    }
    let fx = build();
    let before = {
        let fs = mount(&fx.image);
        let mut io = fs.io().unwrap();
        let ino = fs.lookup(&mut io, "/size1").unwrap();
        fs.stat(&mut io, ino).unwrap()
    };
    let nanos: u32 = 123_456_789;
    for (field, extra) in [
        ("mtime_extra", nanos << 2),
        ("atime_extra", (nanos << 2) | 1),
    ] {
        let out = std::process::Command::new("debugfs")
            .args(["-w", "-R", &format!("sif /size1 {field} {extra:#x}")])
            .arg(&fx.image)
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let fs = mount(&fx.image);
    let mut io = fs.io().unwrap();
    let ino = fs.lookup(&mut io, "/size1").unwrap();
    let stat = fs.stat(&mut io, ino).unwrap();
    let secs = std::fs::metadata(fx.src.join("size1")).unwrap().mtime();
    assert_eq!((stat.mtime.secs, stat.mtime.nanos), (secs, nanos));
    let atime = (before.atime.secs + (1 << 32), nanos);
    assert_eq!(
        (stat.atime.secs, stat.atime.nanos),
        atime,
        "epoch bit 1 adds 2^32 s"
    );
}

#[test]
fn structures_the_image_must_contain_are_there() {
    if !have_mke2fs("structures_the_image_must_contain_are_there") {
        return;
    }
    let fx = build();
    let fs = mount(&fx.image);
    let mut io = fs.io().unwrap();
    // The big directory is htree-indexed (so the linear scan crossed dx blocks) and multi-block.
    let big = fs.lookup(&mut io, "/big").unwrap();
    let inode = fs.read_inode(&mut io, big).unwrap();
    assert_ne!(inode.flags & EXT4_INDEX_FL, 0, "/big is not indexed");
    assert!(inode.size_bytes > 4096 * 4);
    let htree = common::debugfs("htree /big", &fx.image);
    assert!(htree.contains("Root node dump"), "debugfs htree: {htree}");
    assert_eq!(
        fs.read_dir(&mut io, big).unwrap().len(),
        common::BIG_DIR_ENTRIES
    );
    // Fragmented file: one extent per written block, tree of depth 2.
    let frag = fs.lookup(&mut io, "/frag").unwrap();
    let file = fs.open(&mut io, frag).unwrap();
    assert_eq!(file.extents().mappings().len(), common::FRAG_EXTENTS);
    assert_eq!(file.extents().depth(), 2, "extent depth of /frag");
    // Fast and slow symlinks are what they claim.
    let fast = fs.lookup(&mut io, "/fast_link").unwrap();
    assert!(!fs.read_inode(&mut io, fast).unwrap().uses_extents());
    let slow = fs.lookup(&mut io, "/slow_link").unwrap();
    assert!(fs.read_inode(&mut io, slow).unwrap().uses_extents());
    assert_eq!(
        fs.read_link(&mut io, slow).unwrap(),
        common::SLOW_LINK_TARGET.as_bytes()
    );
}

#[test]
fn holes_read_as_zeros_without_io() {
    if !have_mke2fs("holes_read_as_zeros_without_io") {
        return;
    }
    let fx = build();
    let fs = mount(&fx.image);
    let mut io = fs.io().unwrap();
    let ino = fs.lookup(&mut io, "/sparse").unwrap();
    let file = fs.open(&mut io, ino).unwrap();
    let before = io.block_stats().staged;
    let mut buf = vec![0xFFu8; 1 << 20];
    assert_eq!(
        fs.read_at(&mut io, &file, 1 << 20, &mut buf).unwrap(),
        1 << 20
    );
    assert!(buf.iter().all(|&b| b == 0));
    assert_eq!(io.block_stats().staged, before, "a hole cost I/O");
    // A 1 MiB + 3 read of a contiguous file takes ceil(257 / 32) = 9 requests.
    let ino = fs.lookup(&mut io, "/size1m3").unwrap();
    let file = fs.open(&mut io, ino).unwrap();
    let mut buf = vec![0u8; (1 << 20) + 3];
    let before = io.block_stats().staged;
    assert_eq!(fs.read_at(&mut io, &file, 0, &mut buf).unwrap(), buf.len());
    let requests = io.block_stats().staged - before;
    assert!(
        requests <= 9 + 1,
        "{requests} requests for 257 contiguous blocks"
    );
    // Reads at and past the end are empty; one straddling it is short.
    assert_eq!(
        fs.read_at(&mut io, &file, (1 << 20) + 3, &mut buf).unwrap(),
        0
    );
    assert_eq!(fs.read_at(&mut io, &file, u64::MAX, &mut buf).unwrap(), 0);
    assert_eq!(fs.read_at(&mut io, &file, 1 << 20, &mut buf).unwrap(), 3);
}

#[test]
fn lookup_follows_symlinks_and_names_the_path_in_errors() {
    if !have_mke2fs("lookup_follows_symlinks_and_names_the_path_in_errors") {
        return;
    }
    let fx = build();
    let fs = mount(&fx.image);
    let mut io = fs.io().unwrap();
    let deep = fs.lookup(&mut io, "/a/b/c/d/deep.txt").unwrap();
    assert_eq!(fs.lookup(&mut io, "/").unwrap(), ROOT_INO);
    assert_eq!(
        fs.lookup(&mut io, "//a/./b/../b/c/d/deep.txt").unwrap(),
        deep
    );
    assert_eq!(fs.lookup(&mut io, "/dir_link/c/d/deep.txt").unwrap(), deep);
    assert_eq!(fs.lookup_follow(&mut io, "/fast_link").unwrap(), deep);
    assert_eq!(fs.lookup_follow(&mut io, "/slow_link").unwrap(), deep);
    assert_ne!(fs.lookup(&mut io, "/fast_link").unwrap(), deep);

    let err = fs.lookup(&mut io, "/a/nope/x").unwrap_err();
    assert_eq!(
        err,
        FsError::NotFound {
            path: "/a/nope/x".into()
        }
    );
    assert!(err.to_string().contains("/a/nope/x"));
    let err = fs.lookup(&mut io, "/size1/x").unwrap_err();
    assert_eq!(
        err,
        FsError::NotADirectory {
            path: "/size1/x".into()
        }
    );
    let long = format!("/{}", "n".repeat(256));
    assert!(matches!(
        fs.lookup(&mut io, &long),
        Err(FsError::NameTooLong { .. })
    ));
    assert!(fs.lookup(&mut io, format!("/{}", "n".repeat(255))).is_ok());
    assert_eq!(
        fs.lookup(&mut io, "/loop1/x").unwrap_err(),
        FsError::SymlinkLoop {
            path: "/loop1/x".into()
        }
    );
    assert!(matches!(
        fs.lookup(&mut io, "a/b"),
        Err(FsError::InvalidPath { .. })
    ));
    assert!(matches!(
        fs.open(&mut io, ROOT_INO),
        Err(FsError::IsADirectory { ino: 2 })
    ));
    assert!(matches!(
        fs.read_dir(&mut io, deep),
        Err(FsError::NotADirectory { .. })
    ));
    assert!(matches!(
        fs.read_link(&mut io, deep),
        Err(FsError::NotASymlink { .. })
    ));
    assert!(fs.read_inode(&mut io, 0).is_err());
    assert!(fs.read_inode(&mut io, u32::MAX).is_err());
}

/// Regression: a trailing `/` names a directory, as in Linux: `lookup("/dir_link/")` is the
/// directory the link points to (it used to be the symlink itself), and `"/size1/"` is not a
/// directory (it used to be the file).
#[test]
fn a_trailing_slash_follows_a_last_symlink_and_requires_a_directory() {
    if !have_mke2fs("a_trailing_slash_follows_a_last_symlink_and_requires_a_directory") {
        return;
    }
    let fx = build();
    let fs = mount(&fx.image);
    let mut io = fs.io().unwrap();
    let b = fs.lookup(&mut io, "/a/b").unwrap();
    let link = fs.lookup(&mut io, "/dir_link").unwrap();
    assert_ne!(link, b);
    assert_eq!(fs.lookup(&mut io, "/dir_link/").unwrap(), b);
    assert_eq!(fs.lookup(&mut io, "/dir_link/.").unwrap(), b);
    assert_eq!(fs.lookup(&mut io, "/a/b/").unwrap(), b);
    assert_eq!(fs.lookup(&mut io, "/").unwrap(), ROOT_INO);
    for path in ["/size1/", "/size1/.", "/fast_link/"] {
        assert_eq!(
            fs.lookup(&mut io, path).unwrap_err(),
            FsError::NotADirectory { path: path.into() },
            "{path}"
        );
    }
}

#[test]
fn threads_share_one_mount_with_their_own_contexts() {
    if !have_mke2fs("threads_share_one_mount_with_their_own_contexts") {
        return;
    }
    let fx = build();
    let fs = mount(&fx.image);
    let expected = std::fs::read(fx.src.join("size1m3")).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let mut io = fs.io().unwrap();
                assert!(read_whole(&fs, &mut io, b"/size1m3") == expected);
            });
        }
    });
}

#[test]
fn the_emulated_device_reads_the_same_image() {
    if !have_mke2fs("the_emulated_device_reads_the_same_image") {
        return;
    }
    let fx = build();
    let spec = format!("instant,file={},arena=16M", fx.image.display());
    let device = aios_device_emu::EmuDevice::open(&spec).unwrap();
    let fs = Fs::mount(device, aios_fs::MountOptions::default()).unwrap();
    let mut io = fs.io().unwrap();
    let data = read_whole(&fs, &mut io, b"/frag");
    assert!(data == std::fs::read(fx.src.join("frag")).unwrap());
    let link = fs.lookup(&mut io, "/fast_link").unwrap();
    assert_eq!(fs.read_link(&mut io, link).unwrap(), b"a/b/c/d/deep.txt");
    // A context belongs to the mount that opened it.
    let other = aios_device_emu::EmuDevice::open(&spec).unwrap();
    let other = Fs::mount(other, aios_fs::MountOptions::default()).unwrap();
    assert_eq!(
        other.lookup(&mut io, "/a").unwrap_err().root_cause(),
        &FsError::ForeignIoCtx
    );
}
