//! The write commands end to end: `aios mkdir|put|rm|rmdir` sequences on a fresh `aios mkfs`
//! image, then four readers must agree with an in-memory model of the tree: `aios fsck` (our
//! walk plus `e2fsck -fn`), `e2fsck -fn` itself, `debugfs -R "cat PATH"`, our read-only mount,
//! and the Linux kernel (`mount -o loop,ro`, as root only). Tests skip loudly without
//! e2fsprogs; the kernel part skips loudly when not root or when the loop mount fails.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aios_device_psync::{PsyncConfig, PsyncDevice};
use aios_fs::{Fs, MountOptions};

fn aios() -> Command {
    Command::new(env!("CARGO_BIN_EXE_aios"))
}

fn have_e2fsprogs(test: &str) -> bool {
    let ok = ["mke2fs", "e2fsck", "debugfs"]
        .iter()
        .all(|tool| Command::new(tool).arg("-V").output().is_ok());
    if !ok {
        eprintln!("SKIPPED {test}: e2fsprogs (mke2fs, e2fsck, debugfs) not installed");
    }
    ok
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
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

fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Files (absolute path -> bytes) and directories the image must hold (besides lost+found).
#[derive(Default)]
struct Model {
    files: BTreeMap<String, Vec<u8>>,
    dirs: BTreeSet<String>,
}

struct Session {
    dir: tempfile::TempDir,
    image: PathBuf,
    model: Model,
    n: u64,
}

impl Session {
    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = aios();
        cmd.arg(args[0]).arg(&self.image).args(&args[1..]);
        ok(cmd.output().unwrap(), &format!("aios {args:?}"))
    }

    fn mkdir(&mut self, path: &str) {
        self.run(&["mkdir", path]);
        self.model.dirs.insert(path.to_string());
    }

    fn put(&mut self, dest: &str, len: usize) {
        self.n += 1;
        let bytes = pattern(self.n, len);
        let local = self.dir.path().join(format!("local{}", self.n));
        std::fs::write(&local, &bytes).unwrap();
        self.run(&["put", &local.to_string_lossy(), dest]);
        self.model.files.insert(dest.to_string(), bytes);
    }

    fn rm(&mut self, path: &str) {
        self.run(&["rm", path]);
        self.model.files.remove(path);
    }

    fn rmdir(&mut self, path: &str) {
        self.run(&["rmdir", path]);
        self.model.dirs.remove(path);
    }

    /// Renames a file (replacing a file at `to`) or a directory with everything under it.
    fn mv(&mut self, from: &str, to: &str) {
        self.run(&["mv", from, to]);
        if let Some(bytes) = self.model.files.remove(from) {
            self.model.files.insert(to.to_string(), bytes);
            return;
        }
        let moved = |p: &str| p == from || p.starts_with(&format!("{from}/"));
        let dirs: Vec<String> = self
            .model
            .dirs
            .iter()
            .filter(|p| moved(p))
            .cloned()
            .collect();
        for d in dirs {
            self.model.dirs.remove(&d);
            self.model.dirs.insert(format!("{to}{}", &d[from.len()..]));
        }
        let files: Vec<String> = self
            .model
            .files
            .keys()
            .filter(|p| moved(p))
            .cloned()
            .collect();
        for f in files {
            let bytes = self.model.files.remove(&f).unwrap();
            self.model
                .files
                .insert(format!("{to}{}", &f[from.len()..]), bytes);
        }
    }
}

#[test]
fn put_mkdir_rm_then_e2fsck_debugfs_our_mount_and_the_kernel_agree() {
    let name = "put_mkdir_rm_then_e2fsck_debugfs_our_mount_and_the_kernel_agree";
    if !have_e2fsprogs(name) {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let image = dir.path().join("w.img");
    ok(
        aios()
            .arg("mkfs")
            .arg(&image)
            .args(["--size", "64M"])
            .output()
            .unwrap(),
        "aios mkfs",
    );
    let mut s = Session {
        dir,
        image,
        model: Model::default(),
        n: 0,
    };
    s.mkdir("/a");
    s.mkdir("/a/b");
    s.mkdir("/gone");
    for (i, len) in [0usize, 1, 4095, 4096, 4097, 100_000]
        .into_iter()
        .enumerate()
    {
        s.put(&format!("/a/f{i}"), len);
    }
    s.put("/a/b/multi_chunk", (1 << 20) * 2 + 12_345); // three put transactions
    s.put("/top", 70_000);
    s.put("/a/f5", 10); // replace with less
    s.put("/a/f1", 300_000); // replace with more
    s.rm("/a/f2");
    s.rm("/top");
    s.rmdir("/gone");
    s.put("/after_rm", 50_000); // may reuse the freed blocks (released after their commit)
    s.mv("/a/f0", "/a/b/moved"); // a file across directories
    s.mv("/a/f3", "/a/f4"); // replacing a file
    s.mv("/a/b", "/b_moved"); // a directory with its files, to the root
                              // Errors name the path and the cause, and change nothing.
    let out = aios()
        .arg("rm")
        .arg(&s.image)
        .arg("/a/nope")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/a/nope") && err.contains("no such file"),
        "{err}"
    );
    let out = aios()
        .arg("mkdir")
        .arg(&s.image)
        .arg("/a")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"));

    // aios fsck: our walk and e2fsck -fn.
    let out = ok(
        aios().arg("fsck").arg(&s.image).output().unwrap(),
        "aios fsck",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("read back without error"), "{text}");
    // e2fsck -fn on its own: exit 0.
    ok(
        Command::new("e2fsck")
            .arg("-fn")
            .arg(&s.image)
            .output()
            .unwrap(),
        "e2fsck -fn",
    );
    // debugfs cat.
    for (path, bytes) in &s.model.files {
        let out = Command::new("debugfs")
            .args(["-R", &format!("cat {path}")])
            .arg(&s.image)
            .output()
            .unwrap();
        assert!(out.stdout == *bytes, "debugfs cat {path}: contents differ");
    }
    // Our read-only mount.
    let tree = read_with_aios(&s.image);
    assert_model(&s.model, &tree, "our read-only mount");
    // The kernel.
    kernel_reads_back(name, &s.image, &s.model);
}

type Tree = (BTreeMap<String, Vec<u8>>, BTreeSet<String>);

fn read_with_aios(image: &Path) -> Tree {
    let device = PsyncDevice::open(image, PsyncConfig::default()).unwrap();
    let fs = Fs::mount(device, MountOptions::default()).unwrap();
    let mut io = fs.io().unwrap();
    let mut files = BTreeMap::new();
    let mut dirs = BTreeSet::new();
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
                dirs.insert(child.clone());
                stack.push((child, e.ino));
            } else {
                let file = fs.open(&mut io, e.ino).unwrap();
                let mut buf = vec![0u8; st.size_bytes as usize];
                let got = fs.read_at(&mut io, &file, 0, &mut buf).unwrap();
                assert_eq!(got, buf.len(), "{child}: short read");
                files.insert(child, buf);
            }
        }
    }
    (files, dirs)
}

fn assert_model(model: &Model, (files, dirs): &Tree, who: &str) {
    assert_eq!(&model.dirs, dirs, "{who}: directories differ");
    let want: Vec<&String> = model.files.keys().collect();
    let got: Vec<&String> = files.keys().collect();
    assert_eq!(want, got, "{who}: file names differ");
    for (path, bytes) in &model.files {
        assert!(files[path] == *bytes, "{who}: {path}: contents differ");
    }
}

fn kernel_reads_back(name: &str, image: &Path, model: &Model) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED {name} (kernel part): needs root to loop-mount");
        return;
    }
    let mnt = tempfile::tempdir().unwrap();
    let out = Command::new("mount")
        .args(["-o", "loop,ro"])
        .arg(image)
        .arg(mnt.path())
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!(
            "SKIPPED {name} (kernel part): loop mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let walked = std::panic::catch_unwind(|| {
        let mut files = BTreeMap::new();
        let mut dirs = BTreeSet::new();
        let mut stack = vec![mnt.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                let rel = format!(
                    "/{}",
                    e.path().strip_prefix(mnt.path()).unwrap().to_string_lossy()
                );
                if rel == "/lost+found" {
                    continue;
                }
                if e.file_type().unwrap().is_dir() {
                    dirs.insert(rel);
                    stack.push(e.path());
                } else {
                    files.insert(rel, std::fs::read(e.path()).unwrap());
                }
            }
        }
        (files, dirs)
    });
    let umount = Command::new("umount").arg(mnt.path()).output().unwrap();
    assert!(umount.status.success(), "umount: {umount:?}");
    let tree = walked.unwrap_or_else(|e| std::panic::resume_unwind(e));
    assert_model(model, &tree, "the kernel");
    eprintln!(
        "{name}: the kernel read back {} files, {} directories",
        tree.0.len(),
        tree.1.len()
    );
}
