//! `aios bench fsync` set-up and targets: the image and the kernel's files, and the device aios
//! writes on each target.
//!
//! | target | aios writes the image through | the kernel writes |
//! | --- | --- | --- |
//! | `host` | io_uring, O_DIRECT on the image file | `--dir`'s files on the host's file system |
//! | `emu:PRESET` | the emulated NVMe device, the image loaded into RAM | nothing |
//!
//! Devices are opened at set-up (the emulated one loads the image then, before any run writes
//! the file) and kept across runs; every run mounts read-write afresh.

use super::*;
use crate::fscmd::{make_ext4, with_rw};

use aios_device::CompletionMode;
use aios_device_emu::{DiskImage, EmuConfig, EmuDevice};
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
    /// The device aios writes, kept between runs (`None` while a run has it).
    device: Mutex<Option<OpenDevice>>,
    /// How queues on it complete (the emulated device completes by the caller spinning).
    pub completion: CompletionMode,
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

    #[cfg(test)]
    pub fn for_test(label: &str, kernel: bool) -> Target {
        Target {
            label: label.into(),
            kernel_dir: kernel.then(|| PathBuf::from("/nonexistent")),
            device: Mutex::new(None),
            completion: CompletionMode::Interrupt,
        }
    }
}

/// Makes the image and the kernel's files, then opens every requested target.
pub(super) fn prepare(args: &FsyncArgs) -> Result<Setup> {
    let image_size = (4 * args.file_size + (64 << 20)).div_ceil(1 << 20) << 20;
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
    populate_image(&args.image, args.file_size)?;
    write_every_block(&args.image)?;
    let needs_kernel = args.target.contains(&TargetSpec::Host);
    if needs_kernel {
        populate_dir(&args.dir, args.file_size)?;
    }
    let mut targets = Vec::new();
    for spec in &args.target {
        let target = match spec {
            TargetSpec::Host => {
                let config = UringConfig {
                    arena_bytes: ARENA_BYTES,
                    ..UringConfig::default()
                };
                let device = UringDevice::open(&args.image, config)
                    .with_context(|| format!("open {}", args.image.display()))?;
                Target {
                    label: "host disk".into(),
                    kernel_dir: Some(args.dir.clone()),
                    device: Mutex::new(Some(OpenDevice::Uring(device))),
                    completion: CompletionMode::Interrupt,
                }
            }
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
                    device: Mutex::new(Some(OpenDevice::Emu(EmuDevice::with_image(
                        config, image,
                    )?))),
                    completion: CompletionMode::Poll,
                }
            }
            TargetSpec::Zram => {
                eprintln!("aios: skipping target zram: not supported by bench fsync yet");
                continue;
            }
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

/// `/append` (empty) and `/overwrite` (`file_size` bytes of a pattern) in the fresh image,
/// through the same read-write mount as `aios put`.
fn populate_image(image: &Path, file_size: u64) -> Result<()> {
    with_rw(image, CommitOrder::Sync, |fs| {
        fs.create(format!("/{APPEND_NAME}"), 0o644)?;
        let path = format!("/{OVERWRITE_NAME}");
        fs.create(&path, 0o644)?;
        let chunk = pattern(FILL_BYTES);
        let mut offset = 0;
        while offset < file_size {
            let n = (file_size - offset).min(FILL_BYTES as u64) as usize;
            fs.write(&path, offset, chunk.get(..n).unwrap_or_default())?;
            offset += n as u64;
        }
        Ok(())
    })
    .with_context(|| format!("populate {}", image.display()))
}

/// Rewrites every byte of the image file in place and makes it durable, so that no block of it
/// is a hole or an unwritten extent of the host's file system. mke2fs leaves both (sparse
/// writes, `FALLOC_FL_ZERO_RANGE` for the inode tables and the journal); an O_DIRECT write into
/// one makes the host file system allocate or convert the extent, and the next flush then
/// commits the host's journal: the benchmark would time the host file system's metadata, not
/// the device (a VM image with full preallocation avoids the same cost).
fn write_every_block(image: &Path) -> Result<()> {
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

/// The kernel's twin files: `append` (empty) and `overwrite`, both made durable.
fn populate_dir(dir: &Path, file_size: u64) -> Result<()> {
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
    write(APPEND_NAME, 0)?;
    write(OVERWRITE_NAME, file_size)?;
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
