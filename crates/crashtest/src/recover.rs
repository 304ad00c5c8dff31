//! Recovering a crash image and reading it back: our recovery, a crash during it, our check
//! (a read-only walk of everything) and `e2fsck -fn`.
//!
//! # Role
//! [`recover`] mounts a crash image read-write (journal recovery, orphan cleanup) and
//! unmounts, on a recording device; then it crashes that recovery ([`RecoveryCrashes`]: at one
//! point and subset chosen by the image's key, and optionally at every event of its write log
//! with its unflushed writes all dropped, all kept, or a few seeded subsets), recovers again,
//! and requires the same tree ("recovering twice gives the same result"). [`read_tree`] is our fsck: every directory, file and symlink read back through
//! the read-only mount; any error is a finding. [`e2fsck`] runs `e2fsck -fn` on a saved copy.
//!
//! # Invariants
//! Nothing here panics on what the disk holds: every failure is a `String` naming the step.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use aios_device_emu::{DiskImage, EmuConfig, EmuDevice};
use aios_fs::{Fs, MountOptions, RwFs, RwOptions, ROOT_INO};

use super::model::Node;
use super::states::splitmix;
use super::workload::EMU_CHECK;

const S_IFMT: u16 = 0o170000;
const S_IFDIR: u16 = 0o040000;
const S_IFREG: u16 = 0o100000;
const S_IFLNK: u16 = 0o120000;

/// One path as read back: what it is, its inode number and link count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub node: Node,
    pub ino: u32,
    pub nlink: u16,
}

/// Every path but the root and `/lost+found`.
pub type Tree = BTreeMap<String, Seen>;

fn device(image: DiskImage, record: bool) -> Result<EmuDevice, String> {
    let spec = if record {
        format!("{EMU_CHECK},record")
    } else {
        EMU_CHECK.to_string()
    };
    let config = EmuConfig::parse(&spec).map_err(|e| e.to_string())?;
    EmuDevice::with_image(config, image).map_err(|e| format!("device: {e}"))
}

/// Recovery mount and clean unmount; the device afterwards, and whether a journal was replayed.
fn mount_unmount(dev: &EmuDevice, options: RwOptions, what: &str) -> Result<bool, String> {
    let fs = RwFs::mount(dev.clone(), options).map_err(|e| format!("{what}: mount: {e}"))?;
    let replayed = fs.replayed().is_some();
    let (_, r) = fs.unmount();
    r.map_err(|e| format!("{what}: unmount: {e}"))?;
    Ok(replayed)
}

/// Where recovery itself is crashed before it is redone (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryCrashes {
    /// One point strictly inside the recovery and one seeded subset, both chosen by the
    /// image's key (the cheapest).
    Seeded,
    /// The `Seeded` state, and every event of the recovery's write log with its unflushed
    /// writes all dropped (the durable image there), all kept when `all_kept`, and
    /// `seeded_subsets` seeded subsets; equal images are recovered once.
    EveryPoint {
        all_kept: bool,
        seeded_subsets: usize,
    },
}

/// What recovering one crash image gave.
pub struct Recovered {
    pub tree: Tree,
    pub image: DiskImage,
    /// Recovery replayed a journal (and was crashed and redone).
    pub replayed: bool,
    /// Crashed recoveries redone (distinct images).
    pub redone: usize,
}

/// Recovers `crashed`, then redoes the recovery after crashes inside it (see the module doc).
pub fn recover(
    crashed: DiskImage,
    options: RwOptions,
    key: u64,
    crashes: RecoveryCrashes,
) -> Result<Recovered, String> {
    let dev = device(crashed, true)?;
    let replayed = mount_unmount(&dev, options, "recovery")?;
    let image = dev.current_image().map_err(|e| e.to_string())?;
    let tree = read_tree(dev.clone())?;
    let mut redone = 0;
    if replayed {
        let log = dev.log().map_err(|e| e.to_string())?;
        let events = log.events().len();
        let r = splitmix(key);
        // A point strictly inside the recovery, and a seed for what its cache loses.
        let mut states = vec![(1 + (r % events.max(1) as u64) as usize, splitmix(r))];
        if let RecoveryCrashes::EveryPoint {
            all_kept,
            seeded_subsets,
        } = crashes
        {
            for p in 1..events {
                states.push((p, 0));
                if all_kept {
                    states.push((p, u64::MAX));
                }
                let mut x = r ^ (p as u64).wrapping_mul(0x9E37);
                for _ in 0..seeded_subsets {
                    x = splitmix(x);
                    states.push((p, x));
                }
            }
            // Replays only go forward.
            states.sort_by_key(|&(p, _)| p);
        }
        let mut replay = log.replay().map_err(|e| e.to_string())?;
        let mut seen = std::collections::HashSet::new();
        for (point, seed) in states {
            let point = point.min(events);
            replay
                .advance_to(log.point(point))
                .map_err(|e| e.to_string())?;
            // Each seed a subset (`states::kept`), as the crash states of a workload.
            let cands = replay.candidates();
            let flags = super::states::kept(seed, &cands);
            if !seen.insert(super::states::image_key(&log, &replay, &cands, &flags)) {
                continue;
            }
            let again = replay.image_subset(&flags).map_err(|e| e.to_string())?;
            redone += 1;
            let dev2 = device(again, false)?;
            let what = format!("recovery after a crash at recovery event {point}/{events}");
            mount_unmount(&dev2, options, &what)?;
            let tree2 = read_tree(dev2)?;
            if tree2 != tree {
                return Err(format!(
                    "{what} (state seed {seed:#x}) gives another tree than one recovery:\n{}",
                    tree_diff(&tree, &tree2)
                ));
            }
        }
    }
    Ok(Recovered {
        tree,
        image,
        replayed,
        redone,
    })
}

/// The first differences between two trees, for messages.
pub fn tree_diff(a: &Tree, b: &Tree) -> String {
    let mut out = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            None => out.push(format!("{k}: only in the first")),
            Some(w) if w != v => out.push(format!(
                "{k}: {} ino {} nlink {} vs {} ino {} nlink {}",
                describe(&v.node),
                v.ino,
                v.nlink,
                describe(&w.node),
                w.ino,
                w.nlink
            )),
            _ => {}
        }
    }
    out.extend(
        b.keys()
            .filter(|k| !a.contains_key(*k))
            .map(|k| format!("{k}: only in the second")),
    );
    out.truncate(8);
    out.join("\n")
}

fn describe(n: &Node) -> String {
    match n {
        Node::File(d) => format!("file of {} bytes", d.len()),
        Node::Dir => "directory".into(),
        Node::Symlink(t) => format!("symlink to {:?}", String::from_utf8_lossy(t)),
    }
}

/// Our fsck: walks and reads everything through a read-only mount of `dev`.
pub fn read_tree(dev: EmuDevice) -> Result<Tree, String> {
    let fs =
        Fs::mount(dev, MountOptions::default()).map_err(|e| format!("our fsck: mount: {e}"))?;
    let mut io = fs.io().map_err(|e| format!("our fsck: {e}"))?;
    let mut tree = Tree::new();
    let mut stack = vec![(String::new(), ROOT_INO)];
    let mut dirs = 0usize;
    while let Some((path, ino)) = stack.pop() {
        dirs += 1;
        if dirs > 10_000 {
            return Err("our fsck: more than 10000 directories (a loop?)".into());
        }
        let entries = fs
            .read_dir(&mut io, ino)
            .map_err(|e| format!("our fsck: readdir {path}/: {e}"))?;
        for e in entries {
            if e.name == b"." || e.name == b".." || (path.is_empty() && e.name == b"lost+found") {
                continue;
            }
            let child = format!("{path}/{}", String::from_utf8_lossy(&e.name));
            let err = |what: &str, e: aios_fs::FsError| format!("our fsck: {what} {child}: {e}");
            let st = fs.stat(&mut io, e.ino).map_err(|x| err("stat", x))?;
            let node = match st.mode & S_IFMT {
                S_IFDIR => {
                    stack.push((child.clone(), e.ino));
                    Node::Dir
                }
                S_IFLNK => Node::Symlink(
                    fs.read_link(&mut io, e.ino)
                        .map_err(|x| err("readlink", x))?,
                ),
                S_IFREG => {
                    let len = usize::try_from(st.size_bytes)
                        .ok()
                        .filter(|&l| l <= 64 << 20)
                        .ok_or_else(|| format!("our fsck: {child}: size {}", st.size_bytes))?;
                    let file = fs.open(&mut io, e.ino).map_err(|x| err("open", x))?;
                    let mut buf = vec![0u8; len];
                    let n = fs
                        .read_at(&mut io, &file, 0, &mut buf)
                        .map_err(|x| err("read", x))?;
                    if n != len {
                        return Err(format!("our fsck: {child}: read {n} of {len} bytes"));
                    }
                    Node::File(buf)
                }
                other => return Err(format!("our fsck: {child}: unexpected type {other:o}")),
            };
            tree.insert(
                child,
                Seen {
                    node,
                    ino: e.ino,
                    nlink: st.nlink,
                },
            );
        }
    }
    Ok(tree)
}

/// `e2fsck -fn` on `image` saved at `path`: `Err` with its output unless it exits 0.
pub fn e2fsck(image: &DiskImage, path: &Path) -> Result<(), String> {
    image
        .save(path)
        .map_err(|e| format!("save {}: {e}", path.display()))?;
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(path)
        .output()
        .map_err(|e| format!("run e2fsck (apt-get install e2fsprogs): {e}"))?;
    if out.status.code() == Some(0) {
        return Ok(());
    }
    Err(format!(
        "e2fsck -fn exited {:?}:\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}
