//! `aios bench mixed` set-up and targets: the image, and per target the device aios mounts,
//! the thread counts, and the kernel's mount of the same image (opened by the shared
//! `crate::target`).
//!
//! | target | aios reads and writes the image through | threads | the kernel runs on |
//! | --- | --- | --- | --- |
//! | `host` | io_uring, O_DIRECT on the image file, sleeping for completions | 2 + 2 | a copy of the image loop-mounted with direct I/O (root) |
//! | `zram` | pread/pwrite on its own zram device holding the image | 2 + 2 | the image on `/dev/zram0` (root, zram0 unused) |
//! | `emu:PRESET` | the emulated NVMe device, the image in RAM, spinning for completions | 1 + 1 | nothing |
//!
//! The image is made and filled once per invocation, through a read-write mount (psync on
//! the file), then every block of it is rewritten so no host extent is a hole (see
//! [`write_every_block`]). Devices are opened at set-up and kept across phases; every aios
//! phase mounts afresh. A root-only part that cannot be set up is skipped with the reason (the
//! kernel row on the host, the whole zram target).

use super::summary::TargetShape;
use super::*;
use crate::target::{fresh_image, with_rw, write_every_block, TargetDevices};
use aios_device::Device;
use aios_device_emu::EmuConfig;
use aios_fs::{RwFs, RwOptions};
use rand::{rngs::SmallRng, RngCore, SeedableRng};
use std::path::Path;

/// An appended file is emptied when it would pass this size.
pub(super) const APPEND_BYTES_MAX: u64 = 64 << 20;

/// The most appenders a target has (each has its file in the image).
const APPENDERS_MAX: usize = 2;

/// Bytes per write while filling the data file.
const FILL_BYTES: usize = 1 << 20;

/// The prepared targets and the data file's size.
pub(super) struct Setup {
    pub file_size: u64,
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
    /// The device aios mounts and the kernel's mount of the image, if it has one here
    /// (`crate::target`).
    pub devices: TargetDevices,
    /// Reader and appender threads of its phases.
    pub readers: usize,
    pub appenders: usize,
    /// The emulated device's modelled time of one 4 KiB read.
    pub device_read_ns: Option<u64>,
}

impl Target {
    /// The device column of the tables.
    pub fn label(&self) -> &str {
        &self.devices.label
    }

    pub fn shape(&self) -> TargetShape {
        TargetShape {
            device: self.label().to_string(),
            readers: self.readers,
            appenders: self.appenders,
        }
    }

    #[cfg(test)]
    pub fn for_test(label: &str, readers: usize, appenders: usize, kernel: bool) -> Target {
        Target {
            devices: TargetDevices::for_test(label, kernel),
            readers,
            appenders,
            device_read_ns: None,
        }
    }
}

/// The image's size: the data file, every appender's file twice over (blocks freed by
/// emptying it are reused only after a commit), the journal and metadata.
pub(super) fn image_size(file_size: u64) -> u64 {
    let appends = 2 * APPEND_BYTES_MAX * APPENDERS_MAX as u64;
    (file_size + appends + (64 << 20)).div_ceil(1 << 20) << 20
}

/// Makes and fills the image, then opens every requested target.
pub(super) fn prepare(args: &MixedArgs) -> Result<Setup> {
    let size = image_size(args.file_size);
    eprintln!(
        "aios: making a {} ext4 image at {} ({} data file)",
        show_size(size),
        args.image.display(),
        show_size(args.file_size)
    );
    fresh_image(&args.image, size)?;
    populate(&args.image, args.file_size)?;
    write_every_block(&args.image)?;
    let mut targets = Vec::new();
    for spec in &args.target {
        let target = match spec {
            TargetSpec::Host => Target {
                devices: TargetDevices::host(&args.image, "the kernel on the host disk")?,
                readers: 2,
                appenders: 2,
                device_read_ns: None,
            },
            TargetSpec::Emu(preset) => emu_target(&args.image, preset)?,
            TargetSpec::Zram => match TargetDevices::zram(&args.image) {
                Ok(devices) => Target {
                    devices,
                    readers: 2,
                    appenders: 2,
                    device_read_ns: None,
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

/// The emulated device with the image loaded, 1 + 1 threads; aios only.
fn emu_target(image: &Path, preset: &str) -> Result<Target> {
    let config = EmuConfig::parse(preset).map_err(|e| anyhow::anyhow!("{e}"))?;
    let device_read_ns = config
        .latency
        .idle_latency_ns(aios_device::Op::Read, IO_BYTES);
    Ok(Target {
        devices: TargetDevices::emu(image, preset, false)?,
        readers: 1,
        appenders: 1,
        device_read_ns: Some(device_read_ns),
    })
}

/// `/data` (`file_size` random bytes) and every appender's empty `/append.T`, through a
/// read-write mount of the image (psync, exclusive, no periodic commit: the fill commits at the
/// transaction's limits and at its fsync); fsynced, checkpointed, unmounted clean.
fn populate(image: &Path, file_size: u64) -> Result<()> {
    let options = RwOptions {
        commit_interval: None,
        ..RwOptions::default()
    };
    with_rw(image, options, |fs| fill(fs, file_size))
        .with_context(|| format!("populate {}", image.display()))
}

fn fill<D: Device + 'static>(fs: &mut RwFs<D>, file_size: u64) -> Result<()> {
    let data = format!("/{DATA_NAME}");
    fs.create(&data, 0o644)?;
    let mut rng = SmallRng::seed_from_u64(0x6d_6978_6564);
    let mut chunk = vec![0u8; FILL_BYTES];
    let mut offset = 0;
    while offset < file_size {
        let n = (file_size - offset).min(FILL_BYTES as u64) as usize;
        let part = chunk.get_mut(..n).unwrap_or_default();
        rng.fill_bytes(part);
        fs.write(&data, offset, part)?;
        offset += n as u64;
    }
    fs.fsync(&data)?;
    for a in 0..APPENDERS_MAX {
        fs.create(format!("/{}", append_name(a)), 0o644)?;
    }
    fs.sync()?;
    fs.checkpoint()?;
    Ok(())
}
