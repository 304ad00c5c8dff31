//! `aios bench write` set-up: the empty image, and per target the device aios writes and the
//! kernel's mount of a copy of the same image (opened by the shared `crate::target`).
//!
//! | target | aios writes the image through | the kernel writes |
//! | --- | --- | --- |
//! | `host` | io_uring, O_DIRECT on the image file, sleeping for completions | a copy of the image loop-mounted with direct I/O (root) |
//! | `zram` | pread/pwrite on its own zram device holding the image | the image on `/dev/zram0` (root, zram0 unused) |
//! | `emu:PRESET` | the emulated NVMe device, the image in RAM (backed up front), spinning for completions | nothing |

use super::*;
use crate::target::{fresh_image, write_every_block, TargetDevices};

/// Room beside the file: the journal (64 MiB for an image of 1 to 16 GiB), inode tables,
/// bitmaps and the other metadata of `mke2fs`.
const METADATA_BYTES: u64 = 128 << 20;

/// The prepared targets and the sizes every repetition writes.
pub(super) struct Setup {
    pub file_size: u64,
    pub bs: u64,
    pub targets: Vec<Target>,
}

impl Setup {
    pub fn target(&self, index: usize) -> Result<&Target> {
        self.targets
            .get(index)
            .context("case names a target that was not prepared")
    }
}

/// A prepared target.
pub(super) struct Target {
    /// The device aios writes and the kernel's mount of the image, if it has one here.
    pub devices: TargetDevices,
}

impl Target {
    /// The device column of the tables.
    pub fn label(&self) -> &str {
        &self.devices.label
    }

    #[cfg(test)]
    pub fn for_test(label: &str, kernel: bool) -> Target {
        Target {
            devices: TargetDevices::for_test(label, kernel),
        }
    }
}

/// The image's size: the file twice over (a removed file's blocks come back at the commit of
/// its removal, which every repetition waits for, but a failed repetition may leave its file
/// behind), the journal and metadata.
pub(super) fn image_size(file_size: u64) -> u64 {
    (2 * file_size + METADATA_BYTES).div_ceil(1 << 20) << 20
}

/// Makes the empty image, then opens every requested target.
pub(super) fn prepare(args: &WriteArgs) -> Result<Setup> {
    let size = image_size(args.file_size);
    eprintln!(
        "aios: making a {} ext4 image at {} (for a {} file)",
        show_size(size),
        args.image.display(),
        show_size(args.file_size)
    );
    fresh_image(&args.image, size)?;
    write_every_block(&args.image)?;
    let mut targets = Vec::new();
    for spec in &args.target {
        let devices = match spec {
            TargetSpec::Host => TargetDevices::host(&args.image, "the kernel on the host disk")?,
            TargetSpec::Emu(preset) => TargetDevices::emu(&args.image, preset, true)?,
            TargetSpec::Zram => match TargetDevices::zram(&args.image) {
                Ok(devices) => devices,
                Err(why) => {
                    eprintln!("aios: skipping target zram: {why:#}");
                    continue;
                }
            },
        };
        targets.push(Target { devices });
    }
    if targets.is_empty() {
        bail!("no usable --target");
    }
    Ok(Setup {
        file_size: args.file_size,
        bs: args.bs,
        targets,
    })
}
