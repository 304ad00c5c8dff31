//! `aios bench fsync` set-up and targets: the image and the kernel's files, and the device aios
//! writes on each target.
//!
//! | target | aios writes the image through | the kernel writes |
//! | --- | --- | --- |
//! | `host` | io_uring, O_DIRECT on the image file | `--dir`'s files on the host's file system (no journal here); and, as root, the files in a copy of the image loop-mounted with direct I/O (journaled ext4, [`LoopMount`]) |
//! | `zram` | pread/pwrite on its own zram device holding the image | the files in the same image on `/dev/zram0`, mounted by the kernel (journaled, `data=ordered`; [`ZramPair`]) |
//! | `emu:PRESET` | the emulated NVMe device, the image loaded into RAM | nothing |
//!
//! Devices are opened at set-up (the emulated one loads the image then, before any run writes
//! the file) and kept across runs; every run mounts read-write afresh. A root-only part that
//! cannot be set up (not root, zram0 busy, losetup failing) is skipped with the reason.

use super::mounts::{LoopMount, ZramPair};
use super::*;
use aios_fs::mkfs::make_ext4;
use aios_fs::{RwFs, RwOptions};

use aios_device::{CompletionMode, TargetOptions};
use aios_device_emu::{DiskImage, EmuConfig, EmuDevice};
use aios_device_psync::{PsyncConfig, PsyncDevice};
use aios_device_uring::{UringConfig, UringDevice};
use std::path::Path;
use std::sync::Mutex;

/// Arena of every aios device: journal buffers, data copies, checkpoints.
pub(super) const ARENA_BYTES: usize = 64 << 20;

/// Bytes per write while filling the overwritten file.
const FILL_BYTES: usize = 1 << 20;

/// The prepared targets and the sizes runs use.
pub(super) struct Setup {
    pub file_size: u64,
    pub targets: Vec<Target>,
}

impl Setup {
    pub fn target(&self, case: &FsyncCase) -> Result<&Target> {
        self.targets
            .get(case.target)
            .context("case names a target that was not prepared")
    }
}

/// A prepared target.
pub(super) struct Target {
    /// The device column of the table.
    pub label: String,
    /// Where the kernel's files are, if it has a twin here.
    pub kernel_dir: Option<PathBuf>,
    /// Where the journaled kernel's files are (the loop-mounted image), on the host target.
    pub kernel_img_dir: Option<PathBuf>,
    /// The device aios writes, kept between runs (`None` while a run has it).
    device: Mutex<Option<OpenDevice>>,
    /// How queues on it complete (the emulated device completes by the caller spinning).
    pub completion: CompletionMode,
    /// Whether aios also runs with polled completions here (`sync+poll`, `async+poll`): on
    /// io_uring, where sleeping is the default and spinning a choice.
    pub poll_rows: bool,
    /// Undo the kernel's mounts and devices when dropped, after `device` is closed (fields
    /// drop in declaration order).
    _zram: Option<ZramPair>,
    _loop: Option<LoopMount>,
}

impl Target {
    /// Takes the device for a run; give it back with [`Target::put_back`].
    pub fn take(&self) -> Result<OpenDevice> {
        self.device
            .lock()
            .map_err(|_| anyhow::anyhow!("device lock"))?
            .take()
            .with_context(|| format!("the device of {} was lost by an earlier run", self.label))
    }

    pub fn put_back(&self, device: OpenDevice) {
        if let Ok(mut slot) = self.device.lock() {
            *slot = Some(device);
        }
    }

    /// The directory of `stack`'s files, for the kernel's stacks.
    pub fn dir_of(&self, stack: FsyncStack) -> Option<&Path> {
        match stack {
            FsyncStack::Aios { .. } => None,
            FsyncStack::Kernel => self.kernel_dir.as_deref(),
            FsyncStack::KernelImg => self.kernel_img_dir.as_deref(),
        }
    }

    #[cfg(test)]
    pub fn for_test(label: &str, kernel: bool, kernel_img: bool, poll_rows: bool) -> Target {
        Target {
            label: label.into(),
            kernel_dir: kernel.then(|| PathBuf::from("/nonexistent")),
            kernel_img_dir: kernel_img.then(|| PathBuf::from("/nonexistent")),
            device: Mutex::new(None),
            completion: CompletionMode::Interrupt,
            poll_rows,
            _zram: None,
            _loop: None,
        }
    }
}

/// The image's size: room for every thread's two files twice over, plus the journal and
/// metadata.
pub(super) fn image_size(file_size: u64, threads_max: usize) -> u64 {
    (4 * file_size * threads_max as u64 + (64 << 20)).div_ceil(1 << 20) << 20
}

/// The copy of the image the journaled kernel loop-mounts on the host target.
fn kernel_image_path(image: &Path) -> PathBuf {
    image.with_extension("kernel.img")
}

/// Makes the image and the kernel's files, then opens every requested target.
pub(super) fn prepare(args: &FsyncArgs) -> Result<Setup> {
    let threads_max = args.threads.iter().copied().max().unwrap_or(1);
    let image_size = image_size(args.file_size, threads_max);
    eprintln!(
        "aios: making a {} ext4 image at {}",
        show_size(image_size),
        args.image.display()
    );
    if args.image.exists() {
        std::fs::remove_file(&args.image)
            .with_context(|| format!("remove {}", args.image.display()))?;
    }
    make_ext4(&args.image, image_size, None)?;
    populate_image(&args.image, args.file_size, threads_max)?;
    write_every_block(&args.image)?;
    let mut targets = Vec::new();
    for spec in &args.target {
        let target = match spec {
            TargetSpec::Host => host_target(args, threads_max)?,
            TargetSpec::Emu(preset) => {
                eprintln!(
                    "aios: loading {} into the emulated device",
                    args.image.display()
                );
                let image = DiskImage::load(&args.image)
                    .with_context(|| format!("load {} into RAM", args.image.display()))?;
                let mut config = EmuConfig::parse(preset).map_err(|e| anyhow::anyhow!("{e}"))?;
                config.arena_bytes = ARENA_BYTES;
                Target {
                    label: format!("emu:{preset}"),
                    kernel_dir: None,
                    kernel_img_dir: None,
                    device: Mutex::new(Some(OpenDevice::Emu(EmuDevice::with_image(
                        config, image,
                    )?))),
                    completion: CompletionMode::Poll,
                    poll_rows: false,
                    _zram: None,
                    _loop: None,
                }
            }
            TargetSpec::Zram => match zram_target(&args.image) {
                Ok(target) => target,
                Err(why) => {
                    eprintln!("aios: skipping target zram: {why:#}");
                    continue;
                }
            },
        };
        targets.push(target);
    }
    if targets.is_empty() {
        bail!("no usable --target");
    }
    Ok(Setup {
        file_size: args.file_size,
        targets,
    })
}

/// aios on the image file; the kernel in `--dir`, and (as root) in a loop-mounted copy of the
/// image.
fn host_target(args: &FsyncArgs, threads_max: usize) -> Result<Target> {
    populate_dir(&args.dir, args.file_size, threads_max)?;
    let copy = kernel_image_path(&args.image);
    let journaled = (|| -> Result<LoopMount> {
        mounts::need_root("to attach a loop device and mount it")?;
        eprintln!(
            "aios: copying {} to {} for the journaled kernel",
            args.image.display(),
            copy.display()
        );
        if copy.exists() {
            std::fs::remove_file(&copy).with_context(|| format!("remove {}", copy.display()))?;
        }
        std::fs::copy(&args.image, &copy).with_context(|| format!("copy to {}", copy.display()))?;
        write_every_block(&copy)?;
        LoopMount::new(&copy)
    })();
    let journaled = match journaled {
        Ok(mount) => Some(mount),
        Err(why) => {
            eprintln!(
                "aios: skipping the journaled kernel (fsync-img/fdsync-img) on the host: {why:#}"
            );
            None
        }
    };
    let config = UringConfig {
        arena_bytes: ARENA_BYTES,
        ..UringConfig::default()
    };
    let device = UringDevice::open(&args.image, config)
        .with_context(|| format!("open {}", args.image.display()))?;
    Ok(Target {
        label: "host disk".into(),
        kernel_dir: Some(args.dir.clone()),
        kernel_img_dir: journaled.as_ref().map(|m| m.dir().to_path_buf()),
        device: Mutex::new(Some(OpenDevice::Uring(device))),
        completion: CompletionMode::Interrupt,
        poll_rows: true,
        _zram: None,
        _loop: journaled,
    })
}

/// aios through pread/pwrite on its own zram copy of the image; the kernel on zram0's.
fn zram_target(image: &Path) -> Result<Target> {
    let zram = ZramPair::new(image)?;
    let config = PsyncConfig {
        arena_bytes: ARENA_BYTES,
        target: TargetOptions::default(),
    };
    let path = zram.aios_device();
    let device =
        PsyncDevice::open(&path, config).with_context(|| format!("open {}", path.display()))?;
    Ok(Target {
        label: "zram".into(),
        kernel_dir: Some(zram.kernel_dir().to_path_buf()),
        kernel_img_dir: None,
        device: Mutex::new(Some(OpenDevice::Psync(device))),
        // pread is synchronous: the completion mode changes nothing.
        completion: CompletionMode::Interrupt,
        poll_rows: false,
        _zram: Some(zram),
        _loop: None,
    })
}

/// Every thread's `/append.T` (empty) and `/overwrite.T` (`file_size` bytes of a pattern) in
/// the fresh image, through a read-write mount of it as `aios put` makes one.
fn populate_image(image: &Path, file_size: u64, threads: usize) -> Result<()> {
    with_rw(image, |fs| {
        let chunk = pattern(FILL_BYTES);
        for t in 0..threads {
            fs.create(format!("/{}", FsyncWorkload::Append.file_name(t)), 0o644)?;
            let path = format!("/{}", FsyncWorkload::Overwrite.file_name(t));
            fs.create(&path, 0o644)?;
            let mut offset = 0;
            while offset < file_size {
                let n = (file_size - offset).min(FILL_BYTES as u64) as usize;
                fs.write(&path, offset, chunk.get(..n).unwrap_or_default())?;
                offset += n as u64;
            }
        }
        Ok(())
    })
    .with_context(|| format!("populate {}", image.display()))
}

/// Runs `ops` on a read-write mount of `image` (psync, exclusive, vanilla commit order), then
/// unmounts cleanly; the first error wins.
fn with_rw(image: &Path, ops: impl FnOnce(&mut RwFs<PsyncDevice>) -> Result<()>) -> Result<()> {
    let config = PsyncConfig {
        arena_bytes: ARENA_BYTES,
        target: TargetOptions {
            read_only: false,
            exclusive: true,
        },
    };
    let device = PsyncDevice::open(image, config)?;
    let options = RwOptions {
        order: CommitOrder::Sync,
        ..RwOptions::default()
    };
    let mut fs = RwFs::mount(device, options).context("mount read-write")?;
    let result = ops(&mut fs);
    let (_device, unmounted) = fs.unmount();
    result.and(unmounted.context("unmount"))
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

/// The kernel's twin files: every thread's `append.T` (empty) and `overwrite.T`, all durable.
fn populate_dir(dir: &Path, file_size: u64, threads: usize) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let chunk = pattern(FILL_BYTES);
    let write = |name: &str, size: u64| -> Result<()> {
        let path = dir.join(name);
        let file =
            std::fs::File::create(&path).with_context(|| format!("create {}", path.display()))?;
        let mut offset = 0;
        while offset < size {
            let n = (size - offset).min(FILL_BYTES as u64) as usize;
            std::os::unix::fs::FileExt::write_all_at(
                &file,
                chunk.get(..n).unwrap_or_default(),
                offset,
            )?;
            offset += n as u64;
        }
        file.sync_all()
            .with_context(|| format!("fsync {}", path.display()))
    };
    for t in 0..threads {
        write(&FsyncWorkload::Append.file_name(t), 0)?;
        write(&FsyncWorkload::Overwrite.file_name(t), file_size)?;
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("fsync {}", dir.display()))
}

/// `len` bytes of a fixed non-zero pattern (no zero pages a file system could skip).
pub(super) fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] | 1)
        .collect()
}
