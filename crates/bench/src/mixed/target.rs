//! `aios bench mixed` set-up and targets: the image, and per target the device aios mounts,
//! the thread counts, and the kernel's mount of the same image.
//!
//! | target | aios reads and writes the image through | threads | the kernel runs on |
//! | --- | --- | --- | --- |
//! | `host` | io_uring, O_DIRECT on the image file, sleeping for completions | 2 + 2 | a copy of the image loop-mounted with direct I/O ([`LoopMount`], root) |
//! | `zram` | pread/pwrite on its own zram device holding the image | 2 + 2 | the image on `/dev/zram0` ([`ZramPair`], root, zram0 unused) |
//! | `emu:PRESET` | the emulated NVMe device, the image in RAM, spinning for completions | 1 + 1 | nothing |
//!
//! The image is made and filled once per invocation, through a read-write mount (psync on
//! the file), then every block of it is rewritten so no host extent is a hole (see
//! [`write_every_block`]). Devices are opened at set-up and kept across phases; every aios
//! phase mounts afresh. A root-only part that cannot be set up is skipped with the reason (the
//! kernel row on the host, the whole zram target).

use super::summary::TargetShape;
use super::*;
use crate::fsync::mounts::{need_root, LoopMount, ZramPair};
use crate::fsync::target::write_every_block;
use aios_device::{CompletionMode, Device, TargetOptions};
use aios_device_emu::{DiskImage, EmuConfig, EmuDevice};
use aios_device_psync::{PsyncConfig, PsyncDevice};
use aios_device_uring::{UringConfig, UringDevice};
use aios_fs::mkfs::make_ext4;
use aios_fs::{RwFs, RwOptions};
use aios_spec::OpenDevice;
use rand::{rngs::SmallRng, RngCore, SeedableRng};
use std::path::Path;
use std::sync::Mutex;

/// Arena of every aios device: page cache (16 MiB by default), pools, commits' copies.
pub(super) const ARENA_BYTES: usize = 64 << 20;

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
    /// The device column of the tables.
    pub label: String,
    /// Reader and appender threads of its phases.
    pub readers: usize,
    pub appenders: usize,
    /// Where the kernel's mount of the image is, if it has one here.
    pub kernel_dir: Option<PathBuf>,
    /// The emulated device's modelled time of one 4 KiB read.
    pub device_read_ns: Option<u64>,
    /// How aios's queues complete here.
    pub completion: CompletionMode,
    /// The device aios mounts, kept between phases (`None` while a phase has it, or after a
    /// failed mount lost it).
    device: Mutex<Option<OpenDevice>>,
    /// Undo the kernel's mounts and devices when dropped, after `device` is closed (fields drop
    /// in declaration order).
    _zram: Option<ZramPair>,
    _loop: Option<LoopMount>,
}

impl Target {
    /// Takes the device for a phase; give it back with [`Target::put_back`].
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

    pub fn shape(&self) -> TargetShape {
        TargetShape {
            device: self.label.clone(),
            readers: self.readers,
            appenders: self.appenders,
        }
    }

    #[cfg(test)]
    pub fn for_test(label: &str, readers: usize, appenders: usize, kernel: bool) -> Target {
        Target {
            label: label.into(),
            readers,
            appenders,
            kernel_dir: kernel.then(|| PathBuf::from("/nonexistent")),
            device_read_ns: None,
            completion: CompletionMode::Interrupt,
            device: Mutex::new(None),
            _zram: None,
            _loop: None,
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
    if args.image.exists() {
        std::fs::remove_file(&args.image)
            .with_context(|| format!("remove {}", args.image.display()))?;
    }
    make_ext4(&args.image, size, None)?;
    populate(&args.image, args.file_size)?;
    write_every_block(&args.image)?;
    let mut targets = Vec::new();
    for spec in &args.target {
        let target = match spec {
            TargetSpec::Host => host_target(&args.image)?,
            TargetSpec::Emu(preset) => emu_target(&args.image, preset)?,
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

/// aios on the image file; the kernel, as root, on a loop-mounted copy of it.
fn host_target(image: &Path) -> Result<Target> {
    let copy = image.with_extension("kernel.img");
    let kernel = (|| -> Result<LoopMount> {
        need_root("to attach a loop device and mount it")?;
        eprintln!(
            "aios: copying {} to {} for the kernel",
            image.display(),
            copy.display()
        );
        std::fs::copy(image, &copy).with_context(|| format!("copy to {}", copy.display()))?;
        write_every_block(&copy)?;
        LoopMount::new(&copy)
    })();
    let kernel = match kernel {
        Ok(mount) => Some(mount),
        Err(why) => {
            eprintln!("aios: skipping the kernel on the host disk: {why:#}");
            None
        }
    };
    let config = UringConfig {
        arena_bytes: ARENA_BYTES,
        ..UringConfig::default()
    };
    let device =
        UringDevice::open(image, config).with_context(|| format!("open {}", image.display()))?;
    Ok(Target {
        label: "host disk".into(),
        readers: 2,
        appenders: 2,
        kernel_dir: kernel.as_ref().map(|m| m.dir().to_path_buf()),
        device_read_ns: None,
        completion: CompletionMode::Interrupt,
        device: Mutex::new(Some(OpenDevice::Uring(device))),
        _zram: None,
        _loop: kernel,
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
        readers: 2,
        appenders: 2,
        kernel_dir: Some(zram.kernel_dir().to_path_buf()),
        device_read_ns: None,
        // pread is synchronous: the completion mode changes nothing.
        completion: CompletionMode::Interrupt,
        device: Mutex::new(Some(OpenDevice::Psync(device))),
        _zram: Some(zram),
        _loop: None,
    })
}

/// The emulated device with the image loaded; aios only.
fn emu_target(image: &Path, preset: &str) -> Result<Target> {
    eprintln!("aios: loading {} into the emulated device", image.display());
    let disk =
        DiskImage::load(image).with_context(|| format!("load {} into RAM", image.display()))?;
    let mut config = EmuConfig::parse(preset).map_err(|e| anyhow::anyhow!("{e}"))?;
    config.arena_bytes = ARENA_BYTES;
    let device_read_ns = config
        .latency
        .idle_latency_ns(aios_device::Op::Read, IO_BYTES);
    Ok(Target {
        label: format!("emu:{preset}"),
        readers: 1,
        appenders: 1,
        kernel_dir: None,
        device_read_ns: Some(device_read_ns),
        completion: CompletionMode::Poll,
        device: Mutex::new(Some(OpenDevice::Emu(EmuDevice::with_image(config, disk)?))),
        _zram: None,
        _loop: None,
    })
}

/// `/data` (`file_size` random bytes) and every appender's empty `/append.T`, through a
/// read-write mount of the image (psync, exclusive, no periodic commit: the fill commits at the
/// transaction's limits and at its fsync); fsynced, checkpointed, unmounted clean.
fn populate(image: &Path, file_size: u64) -> Result<()> {
    let config = PsyncConfig {
        arena_bytes: ARENA_BYTES,
        target: TargetOptions {
            read_only: false,
            exclusive: true,
        },
    };
    let device =
        PsyncDevice::open(image, config).with_context(|| format!("open {}", image.display()))?;
    let options = RwOptions {
        commit_interval: None,
        ..RwOptions::default()
    };
    let mut fs = RwFs::mount(device, options).context("mount read-write")?;
    let result = fill(&mut fs, file_size);
    let (_device, unmounted) = fs.unmount();
    result
        .and(unmounted.context("unmount"))
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
