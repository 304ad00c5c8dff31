//! The kernel stacks of the write benchmarks that need root: zram devices holding copies of
//! the image, loop devices, and the kernel's ext4 mounts of them. Every piece is a guard that
//! undoes itself when dropped (unmount, detach, reset), on success, on error and on unwinding;
//! a guard is made only once the thing it undoes is ours, so a device found busy is never
//! reset.
//!
//! # zram: one device per stack
//! The kernel mounts `/dev/zram0` (journaled ext4, default `data=ordered`) for the whole
//! benchmark; aios writes its own copy of the image on a second zram device made for the purpose
//! (`/sys/class/zram-control/hot_add`, removed at the end). Two devices rather than mounting and
//! unmounting zram0 around the kernel's runs: aios opens its device exclusively (`O_EXCL`,
//! refused while mounted) and keeps it open across runs, the kernel's cached view of the device
//! would go stale under aios's writes, and a bug in one stack cannot corrupt the other's image.
//! Both devices hold the same bytes at the start and live in RAM: the copies cost 2x the image.
//!
//! # loop: the journaled kernel on the host disk
//! The host root's ext4 has no journal (`aios bench fsync`'s plain kernel rows time an
//! unjournaled ext4). A copy of the image file is attached with `losetup --direct-io=on` (the
//! loop driver writes the file with O_DIRECT and turns flushes into fsyncs of it, as aios's
//! device does) and mounted `-o data=ordered`: the kernel's journaled stack on the same device
//! path as aios.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

const ZRAM_CONTROL: &str = "/sys/class/zram-control";
/// The zram device the kernel mounts.
const KERNEL_ZRAM: u32 = 0;

/// Fails unless running as root.
pub(crate) fn need_root(what: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("needs root ({what})");
    }
    Ok(())
}

/// Runs a command; its stderr is the error.
fn run(cmd: &mut Command) -> Result<String> {
    let what = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("run {what}"))?;
    if !out.status.success() {
        bail!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A zram device this benchmark sized and loaded; reset (and removed, if hot-added) on drop.
pub(super) struct Zram {
    index: u32,
    hot_added: bool,
}

impl Zram {
    /// Claims `/dev/zram<index>` if it is present and unused (no disksize, not swap).
    fn claim(index: u32) -> Result<Zram> {
        let sys = format!("/sys/block/zram{index}");
        if !Path::new(&sys).exists() {
            bail!("/dev/zram{index} not present (modprobe zram)");
        }
        let disksize: u64 = std::fs::read_to_string(format!("{sys}/disksize"))
            .with_context(|| format!("read {sys}/disksize"))?
            .trim()
            .parse()
            .unwrap_or(u64::MAX);
        let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
        if disksize != 0 || swaps.contains(&format!("/dev/zram{index}")) {
            bail!(
                "/dev/zram{index} is in use (disksize {disksize}); reset it to let the benchmark \
                 use it"
            );
        }
        Ok(Zram {
            index,
            hot_added: false,
        })
    }

    /// Makes a new zram device.
    fn hot_add() -> Result<Zram> {
        let text = std::fs::read_to_string(format!("{ZRAM_CONTROL}/hot_add"))
            .with_context(|| format!("add a zram device ({ZRAM_CONTROL}/hot_add)"))?;
        let index = text
            .trim()
            .parse()
            .with_context(|| format!("{ZRAM_CONTROL}/hot_add said {text:?}"))?;
        Ok(Zram {
            index,
            hot_added: true,
        })
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/dev/zram{}", self.index))
    }

    /// Sizes the device to `image` and copies the image onto it.
    fn load(&self, image: &Path) -> Result<()> {
        let len = std::fs::metadata(image)
            .with_context(|| format!("stat {}", image.display()))?
            .len();
        std::fs::write(
            format!("/sys/block/zram{}/disksize", self.index),
            len.to_string(),
        )
        .with_context(|| format!("set the disksize of {}", self.path().display()))?;
        eprintln!(
            "aios: copying {} onto {}",
            image.display(),
            self.path().display()
        );
        let mut src =
            std::fs::File::open(image).with_context(|| format!("open {}", image.display()))?;
        let mut dst = std::fs::OpenOptions::new()
            .write(true)
            .open(self.path())
            .with_context(|| format!("open {}", self.path().display()))?;
        std::io::copy(&mut src, &mut dst)
            .and_then(|_| dst.sync_all())
            .with_context(|| format!("copy the image onto {}", self.path().display()))
    }
}

impl Drop for Zram {
    fn drop(&mut self) {
        let path = self.path();
        if std::fs::write(format!("/sys/block/zram{}/reset", self.index), "1").is_err() {
            eprintln!("aios: could not reset {}", path.display());
            return;
        }
        if self.hot_added
            && std::fs::write(format!("{ZRAM_CONTROL}/hot_remove"), self.index.to_string()).is_err()
        {
            eprintln!("aios: could not remove {}", path.display());
        }
    }
}

/// A kernel ext4 mount on a temporary directory; unmounted on drop.
pub(super) struct KernelMount {
    dir: tempfile::TempDir,
}

impl KernelMount {
    /// `mount -t ext4 -o OPTIONS DEVICE TMPDIR`.
    fn new(device: &Path, options: &str) -> Result<KernelMount> {
        let dir = tempfile::tempdir().context("make a mount point")?;
        run(Command::new("mount")
            .args(["-t", "ext4", "-o", options])
            .arg(device)
            .arg(dir.path()))?;
        Ok(KernelMount { dir })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for KernelMount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("aios: could not unmount {}", self.dir.path().display());
        }
    }
}

/// The zram target's devices: the kernel's mount of zram0 and aios's own zram device. Fields
/// drop in order: unmount, then reset both devices. aios's device must be closed before.
pub(crate) struct ZramPair {
    mount: KernelMount,
    _kernel: Zram,
    aios: Zram,
}

impl ZramPair {
    /// Loads `image` onto `/dev/zram0` (mounted by the kernel) and onto a new zram device for
    /// aios. Fails, undoing what it did, when not root or zram0 is busy.
    pub fn new(image: &Path) -> Result<ZramPair> {
        need_root("to size zram devices and mount one")?;
        let kernel = Zram::claim(KERNEL_ZRAM)?;
        kernel.load(image)?;
        let aios = Zram::hot_add()?;
        aios.load(image)?;
        let mount = KernelMount::new(&kernel.path(), "data=ordered")?;
        Ok(ZramPair {
            mount,
            _kernel: kernel,
            aios,
        })
    }

    /// Where the kernel's files are.
    pub fn kernel_dir(&self) -> &Path {
        self.mount.dir()
    }

    /// The device aios writes.
    pub fn aios_device(&self) -> PathBuf {
        self.aios.path()
    }
}

/// A loop device attached with direct I/O; detached on drop.
struct LoopDevice {
    path: PathBuf,
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        if run(Command::new("losetup").arg("-d").arg(&self.path)).is_err() {
            eprintln!("aios: could not detach {}", self.path.display());
        }
    }
}

/// The kernel's journaled ext4 on a loop device over an image file of the host disk. Fields
/// drop in order: unmount, then detach.
pub(crate) struct LoopMount {
    mount: KernelMount,
    _device: LoopDevice,
}

impl LoopMount {
    /// `losetup --direct-io=on` on `file`, then `mount -o data=ordered`.
    pub fn new(file: &Path) -> Result<LoopMount> {
        need_root("to attach a loop device and mount it")?;
        let path = run(Command::new("losetup")
            .args(["--direct-io=on", "--show", "-f"])
            .arg(file))?;
        let device = LoopDevice {
            path: PathBuf::from(path),
        };
        let dio = std::fs::read_to_string(format!(
            "/sys/block/{}/loop/dio",
            device
                .path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
        ))
        .unwrap_or_default();
        if dio.trim() != "1" {
            bail!(
                "{} did not turn direct I/O on (dio {:?})",
                device.path.display(),
                dio.trim()
            );
        }
        let mount = KernelMount::new(&device.path, "data=ordered")?;
        Ok(LoopMount {
            mount,
            _device: device,
        })
    }

    pub fn dir(&self) -> &Path {
        self.mount.dir()
    }
}
