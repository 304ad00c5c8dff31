//! The targets the write benchmarks share (`aios bench fsync`, `mixed`, `write`): per target
//! the device aios mounts read-write, kept between runs, and the kernel's ext4 mount of a copy
//! of the same image beside it; and the image helpers they share.
//!
//! | target | aios mounts the image through | the kernel mounts |
//! | --- | --- | --- |
//! | `host` | io_uring, O_DIRECT on the image file, sleeping for completions | a copy of the image file, loop-mounted with direct I/O ([`LoopMount`], root) |
//! | `zram` | pread/pwrite on its own zram device holding the image | the image on `/dev/zram0` ([`ZramPair`], root, zram0 unused) |
//! | `emu:PRESET` | the emulated NVMe device, the image in RAM, spinning for completions | nothing |
//!
//! # Lifecycle
//! The image is made once per invocation ([`fresh_image`], filled through [`with_rw`] if the
//! benchmark needs files), then every block of it rewritten ([`write_every_block`]) before any
//! copy is taken or any device opens it. The openers ([`TargetDevices::host`], `zram`, `emu`)
//! open aios's device and set up the kernel's mount; both stay until the [`TargetDevices`] is
//! dropped, which closes aios's device first, then unmounts and detaches or resets (fields drop
//! in declaration order). Every run takes the device, mounts it afresh, unmounts and gives it
//! back ([`TargetDevices::run`]). A root-only part that cannot be set up fails with the reason:
//! the host opener then goes on without the kernel's mount, a failed zram opener is for the
//! caller to skip.
//!
//! # Modules
//! | Module | What |
//! | --- | --- |
//! | `mounts` | the root-only kernel set-ups (zram devices, loop devices, mounts), each a guard that undoes itself |

mod mounts;

use aios_device::{CompletionMode, Device, TargetOptions};
use aios_device_emu::{DiskImage, EmuConfig, EmuDevice};
use aios_device_psync::{PsyncConfig, PsyncDevice};
use aios_device_uring::{UringConfig, UringDevice};
use aios_fs::mkfs::make_ext4;
use aios_fs::{RwFs, RwOptions};
use aios_spec::OpenDevice;
use anyhow::{Context, Result};
use mounts::{need_root, LoopMount, ZramPair};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Arena of every aios device of these targets: page cache (16 MiB by default), pools,
/// commits' copies.
pub(crate) const ARENA_BYTES: usize = 64 << 20;

/// Bytes per read and write while rewriting an image.
const FILL_BYTES: usize = 1 << 20;

/// One target's devices: the one aios mounts and the kernel's mount of the same image.
pub(crate) struct TargetDevices {
    /// The device column of the tables.
    pub label: String,
    /// How aios's queues complete here (the emulated device completes by the caller spinning;
    /// pread is synchronous, so the mode changes nothing on zram).
    pub completion: CompletionMode,
    /// Where the kernel's ext4 mount of a copy of the image is, if it has one here.
    pub kernel_dir: Option<PathBuf>,
    /// The device aios mounts, kept between runs (`None` while a run has it, or after a failed
    /// mount lost it).
    device: Mutex<Option<OpenDevice>>,
    /// Undo the kernel's mounts and devices when dropped, after `device` is closed.
    _zram: Option<ZramPair>,
    _loop: Option<LoopMount>,
}

/// A run on whichever backend a target holds (closures cannot be generic): it gets the device
/// and gives it back with what it produced. An `Err` is a run that lost the device (a failed
/// mount: `mount` takes it by value); a run's own failure after mounting belongs in `Out`, so
/// the device still comes back.
pub(crate) trait DeviceRun {
    type Out;
    fn run<D: Device + 'static>(self, device: D) -> Result<(Self::Out, D)>;
}

impl TargetDevices {
    /// Runs `run` on the device and keeps the device for the next run; a run that lost it makes
    /// every later run on this target fail saying so.
    pub fn run<R: DeviceRun>(&self, run: R) -> Result<R::Out> {
        let device = self
            .device
            .lock()
            .map_err(|_| anyhow::anyhow!("device lock"))?
            .take()
            .with_context(|| format!("the device of {} was lost by an earlier run", self.label))?;
        let (out, device) = match device {
            OpenDevice::Uring(d) => run.run(d).map(|(o, d)| (o, OpenDevice::Uring(d))),
            OpenDevice::Emu(d) => run.run(d).map(|(o, d)| (o, OpenDevice::Emu(d))),
            OpenDevice::Psync(d) => run.run(d).map(|(o, d)| (o, OpenDevice::Psync(d))),
            OpenDevice::Null(d) => run.run(d).map(|(o, d)| (o, OpenDevice::Null(d))),
        }?;
        if let Ok(mut slot) = self.device.lock() {
            *slot = Some(device);
        }
        Ok(out)
    }

    /// aios on the image file by io_uring (O_DIRECT); the kernel, as root, on a copy of it
    /// (`IMAGE.kernel.img`) loop-mounted with direct I/O. Without root, or when the loop mount
    /// fails, the target has no kernel mount and says so, naming `kernel_rows` (what goes
    /// missing).
    pub fn host(image: &Path, kernel_rows: &str) -> Result<TargetDevices> {
        let kernel = match loop_mount_copy(image) {
            Ok(mount) => Some(mount),
            Err(why) => {
                eprintln!("aios: skipping {kernel_rows}: {why:#}");
                None
            }
        };
        let config = UringConfig {
            arena_bytes: ARENA_BYTES,
            ..UringConfig::default()
        };
        let device = UringDevice::open(image, config)
            .with_context(|| format!("open {}", image.display()))?;
        Ok(TargetDevices {
            label: "host disk".into(),
            completion: CompletionMode::Interrupt,
            kernel_dir: kernel.as_ref().map(|m| m.dir().to_path_buf()),
            device: Mutex::new(Some(OpenDevice::Uring(device))),
            _zram: None,
            _loop: kernel,
        })
    }

    /// aios through pread/pwrite on its own zram copy of the image; the kernel on zram0's.
    /// Fails, undoing what it did, when not root or zram0 is busy.
    pub fn zram(image: &Path) -> Result<TargetDevices> {
        let zram = ZramPair::new(image)?;
        let config = PsyncConfig {
            arena_bytes: ARENA_BYTES,
            target: TargetOptions::default(),
        };
        let path = zram.aios_device();
        let device =
            PsyncDevice::open(&path, config).with_context(|| format!("open {}", path.display()))?;
        Ok(TargetDevices {
            label: "zram".into(),
            // pread is synchronous: the completion mode changes nothing.
            completion: CompletionMode::Interrupt,
            kernel_dir: Some(zram.kernel_dir().to_path_buf()),
            device: Mutex::new(Some(OpenDevice::Psync(device))),
            _zram: Some(zram),
            _loop: None,
        })
    }

    /// The emulated device `preset` with the image loaded; aios only. `prefault`: back its RAM
    /// up front unless the preset says otherwise (`EmuConfig::prefault`), so writes pay no
    /// first-touch page faults.
    pub fn emu(image: &Path, preset: &str, prefault: bool) -> Result<TargetDevices> {
        eprintln!("aios: loading {} into the emulated device", image.display());
        let disk =
            DiskImage::load(image).with_context(|| format!("load {} into RAM", image.display()))?;
        let mut config = EmuConfig::parse(preset).map_err(|e| anyhow::anyhow!("{e}"))?;
        config.arena_bytes = ARENA_BYTES;
        if prefault {
            config.prefault.get_or_insert(true);
        }
        Ok(TargetDevices {
            label: format!("emu:{preset}"),
            completion: CompletionMode::Poll,
            kernel_dir: None,
            device: Mutex::new(Some(OpenDevice::Emu(EmuDevice::with_image(config, disk)?))),
            _zram: None,
            _loop: None,
        })
    }

    /// A target with no device, for tests of the case matrices; `kernel`: whether it has a
    /// kernel mount (a path that does not exist).
    #[cfg(test)]
    pub fn for_test(label: &str, kernel: bool) -> TargetDevices {
        TargetDevices {
            label: label.into(),
            completion: CompletionMode::Interrupt,
            kernel_dir: kernel.then(|| PathBuf::from("/nonexistent")),
            device: Mutex::new(None),
            _zram: None,
            _loop: None,
        }
    }
}

/// The host target's kernel mount: a copy of `image` next to it, rewritten block by block,
/// loop-mounted with direct I/O. Root only.
fn loop_mount_copy(image: &Path) -> Result<LoopMount> {
    need_root("to attach a loop device and mount it")?;
    let copy = image.with_extension("kernel.img");
    eprintln!(
        "aios: copying {} to {} for the kernel's loop mount",
        image.display(),
        copy.display()
    );
    if copy.exists() {
        std::fs::remove_file(&copy).with_context(|| format!("remove {}", copy.display()))?;
    }
    std::fs::copy(image, &copy).with_context(|| format!("copy to {}", copy.display()))?;
    write_every_block(&copy)?;
    LoopMount::new(&copy)
}

/// Makes a fresh ext4 image of `size_bytes` at `image` (`mke2fs` with the features aios
/// mounts), replacing any file there.
pub(crate) fn fresh_image(image: &Path, size_bytes: u64) -> Result<()> {
    if image.exists() {
        std::fs::remove_file(image).with_context(|| format!("remove {}", image.display()))?;
    }
    Ok(make_ext4(image, size_bytes, None)?)
}

/// Runs `ops` on a read-write mount of `image` (psync, exclusive, `options`), then unmounts
/// cleanly; the first error wins.
pub(crate) fn with_rw(
    image: &Path,
    options: RwOptions,
    ops: impl FnOnce(&mut RwFs<PsyncDevice>) -> Result<()>,
) -> Result<()> {
    let config = PsyncConfig {
        arena_bytes: ARENA_BYTES,
        target: TargetOptions {
            read_only: false,
            exclusive: true,
        },
    };
    let device =
        PsyncDevice::open(image, config).with_context(|| format!("open {}", image.display()))?;
    let mut fs = RwFs::mount(device, options).context("mount read-write")?;
    let result = ops(&mut fs);
    let (_device, unmounted) = fs.unmount();
    result.and(unmounted.context("unmount"))
}

/// Unmounts `fs` after a run that gave `result`: the device comes back with the run's error if
/// it failed, else with the unmount's (the image is left clean either way when it can be).
pub(crate) fn unmount_after<D: Device + 'static, T>(
    fs: RwFs<D>,
    result: Result<T>,
) -> (Result<T>, D) {
    let (device, unmounted) = fs.unmount();
    let result = match (result, unmounted) {
        (Err(e), _) => Err(e),
        (Ok(out), Ok(())) => Ok(out),
        (Ok(_), Err(e)) => Err(anyhow::Error::new(e).context("unmount")),
    };
    (result, device)
}

/// Rewrites every byte of the image file in place and makes it durable, so that no block of it
/// is a hole or an unwritten extent of the host's file system. mke2fs leaves both (sparse
/// writes, `FALLOC_FL_ZERO_RANGE` for the inode tables and the journal); an O_DIRECT write into
/// one makes the host file system allocate or convert the extent, and the next flush then
/// commits the host's journal: the benchmark would time the host file system's metadata, not
/// the device (a VM image with full preallocation avoids the same cost).
pub(crate) fn write_every_block(image: &Path) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .with_context(|| format!("open {}", image.display()))?;
    let len = file.metadata()?.len();
    let mut chunk = vec![0u8; FILL_BYTES];
    let mut offset = 0u64;
    while offset < len {
        let n = (len - offset).min(FILL_BYTES as u64) as usize;
        let part = chunk.get_mut(..n).unwrap_or_default();
        file.read_exact_at(part, offset)
            .and_then(|()| file.write_all_at(part, offset))
            .with_context(|| format!("rewrite {} at {offset}", image.display()))?;
        offset += n as u64;
    }
    file.sync_all()
        .with_context(|| format!("fsync {}", image.display()))
}

/// `len` bytes of a fixed non-zero pattern (no zero pages a file system could skip).
pub(crate) fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] | 1)
        .collect()
}
