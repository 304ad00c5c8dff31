//! `aios bench fsync` set-up and targets: the image and the kernel's files, and the device aios
//! writes on each target (opened by the shared `crate::target`).
//!
//! | target | aios writes the image through | the kernel writes |
//! | --- | --- | --- |
//! | `host` | io_uring, O_DIRECT on the image file | `--dir`'s files on the host's file system (no journal here); and, as root, the files in a copy of the image loop-mounted with direct I/O (journaled ext4) |
//! | `zram` | pread/pwrite on its own zram device holding the image | the files in the same image on `/dev/zram0`, mounted by the kernel (journaled, `data=ordered`) |
//! | `emu:PRESET` | the emulated NVMe device, the image loaded into RAM | nothing |
//!
//! Devices are opened at set-up (the emulated one loads the image then, before any run writes
//! the file) and kept across runs; every run mounts read-write afresh. A root-only part that
//! cannot be set up (not root, zram0 busy, losetup failing) is skipped with the reason.

use super::*;
use crate::target::{fresh_image, pattern, with_rw, write_every_block, TargetDevices};
use aios_fs::RwOptions;
use std::path::Path;

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
    /// The device aios writes and the kernel's mount of the image (`crate::target`).
    pub devices: TargetDevices,
    /// Where the kernel's files are, if it has a twin here.
    pub kernel_dir: Option<PathBuf>,
    /// Where the journaled kernel's files are (the loop-mounted image), on the host target.
    pub kernel_img_dir: Option<PathBuf>,
    /// Whether aios also runs with polled completions here (`sync+poll`, `async+poll`): on
    /// io_uring, where sleeping is the default and spinning a choice.
    pub poll_rows: bool,
}

impl Target {
    /// The device column of the table.
    pub fn label(&self) -> &str {
        &self.devices.label
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
            devices: TargetDevices::for_test(label, false),
            kernel_dir: kernel.then(|| PathBuf::from("/nonexistent")),
            kernel_img_dir: kernel_img.then(|| PathBuf::from("/nonexistent")),
            poll_rows,
        }
    }
}

/// The image's size: room for every thread's two files twice over, plus the journal and
/// metadata.
pub(super) fn image_size(file_size: u64, threads_max: usize) -> u64 {
    (4 * file_size * threads_max as u64 + (64 << 20)).div_ceil(1 << 20) << 20
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
    fresh_image(&args.image, image_size)?;
    populate_image(&args.image, args.file_size, threads_max)?;
    write_every_block(&args.image)?;
    let mut targets = Vec::new();
    for spec in &args.target {
        let target = match spec {
            TargetSpec::Host => {
                populate_dir(&args.dir, args.file_size, threads_max)?;
                let devices = TargetDevices::host(
                    &args.image,
                    "the journaled kernel (fsync-img/fdsync-img) on the host",
                )?;
                Target {
                    kernel_dir: Some(args.dir.clone()),
                    kernel_img_dir: devices.kernel_dir.clone(),
                    devices,
                    poll_rows: true,
                }
            }
            TargetSpec::Emu(preset) => Target {
                devices: TargetDevices::emu(&args.image, preset, false)?,
                kernel_dir: None,
                kernel_img_dir: None,
                poll_rows: false,
            },
            TargetSpec::Zram => match TargetDevices::zram(&args.image) {
                Ok(devices) => Target {
                    kernel_dir: devices.kernel_dir.clone(),
                    kernel_img_dir: None,
                    devices,
                    poll_rows: false,
                },
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

/// Every thread's `/append.T` (empty) and `/overwrite.T` (`file_size` bytes of a pattern) in
/// the fresh image, through a read-write mount of it as `aios put` makes one.
fn populate_image(image: &Path, file_size: u64, threads: usize) -> Result<()> {
    let options = RwOptions {
        order: CommitOrder::Sync,
        ..RwOptions::default()
    };
    with_rw(image, options, |fs| {
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
