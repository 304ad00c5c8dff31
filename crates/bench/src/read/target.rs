//! `aios bench read` targets: where the image lives, which backend aios reads it with, and
//! what the kernel reads for comparison.
//!
//! | target | aios reads the image through | the kernel reads |
//! | --- | --- | --- |
//! | `host` | io_uring, O_DIRECT on the image file | the source file on the host's ext4 |
//! | `emu:PRESET` | the emulated NVMe device, the image loaded into RAM | nothing (no kernel driver for it): the table shows mean minus modelled device time |
//! | `zram` | pread/pwrite on `/dev/zram0` (synchronous: io_uring would punt every request to a worker) | `/data` of the same image, mounted read-only by the kernel from `/dev/zram0` |
//!
//! aios's device is opened once per target and kept across runs; every run mounts it afresh.
//! With the read-write mount among `--mount` it is opened for writing: a read-write mount
//! writes block 0 at mount (`needs_recovery` set, `s_mnt_count` + 1) and at unmount (the flag
//! cleared) and marks the journal clean; a read-only workload commits nothing, so `/data` and
//! every other block stay as they were. On `host` that is the image file (the kernel reads the
//! source file, not the image); on `zram` the device the kernel has mounted read-only, which
//! never re-reads its superblock; on `emu` the copy in RAM. On `host`, a run stopped while
//! mounted leaves `needs_recovery` set in the image: the next run's check of it fails (the
//! read-only mount refuses it) and the image is made again.
//!
//! `zram` needs root and an unused `/dev/zram0` (no disksize set, not swap): it is sized to the
//! image, the image is copied onto it, the kernel mounts it; at the end it is unmounted and
//! reset. When it cannot be used the target is skipped with a message saying why.

use super::*;
use aios_device_emu::{DiskImage, EmuConfig, EmuDevice};
use aios_device_psync::{PsyncConfig, PsyncDevice};
use aios_spec::OpenDevice;
use std::process::Command;

const ZRAM_DEV: &str = "/dev/zram0";
const ZRAM_SYS: &str = "/sys/block/zram0";

/// A `--target` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    Host,
    Emu(String),
    Zram,
}

impl std::str::FromStr for TargetSpec {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text.split_once(':') {
            _ if text == "host" => Ok(TargetSpec::Host),
            _ if text == "zram" => Ok(TargetSpec::Zram),
            Some(("emu", preset)) if !preset.is_empty() => {
                EmuConfig::parse(preset).map_err(|e| format!("target {text:?}: {e}"))?;
                Ok(TargetSpec::Emu(preset.to_string()))
            }
            _ => Err(format!(
                "target {text:?}: expected host, zram or emu:PRESET (e.g. emu:ull)"
            )),
        }
    }
}

/// A prepared target.
pub(super) struct Target {
    pub spec: TargetSpec,
    /// The device column of the table.
    pub label: String,
    /// The file the kernel reads, if it has a twin here.
    pub kernel_data: Option<PathBuf>,
    /// The device aios reads, kept between runs.
    device: Mutex<Option<OpenDevice>>,
    /// Its arena: the largest cache and pools any case needs.
    arena_bytes: usize,
    /// Unmounts and resets zram when dropped (after `device` is closed: fields drop in order).
    _zram: Option<ZramMount>,
}

impl Target {
    /// aios's read orders and completion modes on this target, in table order (each runs on
    /// every requested mount).
    pub fn aios_modes(&self) -> Vec<(ReadMode, CompletionMode)> {
        match self.spec {
            TargetSpec::Host => AIOS_MODES.to_vec(),
            // The emulated device completes by the caller spinning: polling is its only mode.
            TargetSpec::Emu(_) => vec![
                (ReadMode::Sync, CompletionMode::Poll),
                (ReadMode::Async, CompletionMode::Poll),
            ],
            // pread is synchronous: the completion mode changes nothing.
            TargetSpec::Zram => vec![
                (ReadMode::Sync, CompletionMode::Interrupt),
                (ReadMode::Async, CompletionMode::Interrupt),
            ],
        }
    }

    /// The modelled device time of one `bs`-byte read, on emulated targets.
    pub fn device_time_ns(&self, bs: u64) -> Option<u64> {
        let TargetSpec::Emu(preset) = &self.spec else {
            return None;
        };
        let config = EmuConfig::parse(preset).ok()?;
        Some(config.latency.idle_latency_ns(aios_device::Op::Read, bs))
    }

    /// Runs `f` on the device aios reads on this target: opened at the first run, then kept
    /// between runs (each run mounts it afresh, so its page cache starts empty) to save
    /// re-faulting a large arena and reloading the emulated image every time.
    pub fn with_device<R>(&self, setup: &Setup, f: impl AiosRun<R>) -> Result<R> {
        let kept = self
            .device
            .lock()
            .map_err(|_| anyhow::anyhow!("device lock"))?
            .take();
        let device = match kept {
            Some(device) => device,
            None => self.open(setup)?,
        };
        let (result, device) = match device {
            OpenDevice::Uring(d) => f.run(d).map(|(r, d)| (r, OpenDevice::Uring(d)))?,
            OpenDevice::Emu(d) => f.run(d).map(|(r, d)| (r, OpenDevice::Emu(d)))?,
            OpenDevice::Psync(d) => f.run(d).map(|(r, d)| (r, OpenDevice::Psync(d)))?,
            OpenDevice::Null(d) => f.run(d).map(|(r, d)| (r, OpenDevice::Null(d)))?,
        };
        if let Ok(mut slot) = self.device.lock() {
            *slot = Some(device);
        }
        Ok(result)
    }

    fn open(&self, setup: &Setup) -> Result<OpenDevice> {
        let target = TargetOptions {
            // The read-write mount writes the superblock at mount and unmount (see the module
            // documentation); the read-only mount writes nothing.
            read_only: !setup.has_rw(),
            // Shared with the kernel's reads of the same bytes (the kernel's side read-only).
            exclusive: false,
        };
        let arena_bytes = self.arena_bytes;
        match &self.spec {
            TargetSpec::Host => {
                let config = UringConfig {
                    target,
                    arena_bytes,
                    ..UringConfig::default()
                };
                let device = UringDevice::open(&setup.image, config)
                    .with_context(|| format!("open {}", setup.image.display()))?;
                Ok(OpenDevice::Uring(device))
            }
            TargetSpec::Emu(preset) => {
                eprintln!(
                    "aios: loading {} into the emulated device",
                    setup.image.display()
                );
                let image = DiskImage::load(&setup.image)
                    .with_context(|| format!("load {} into RAM", setup.image.display()))?;
                let mut config = EmuConfig::parse(preset).map_err(|e| anyhow::anyhow!("{e}"))?;
                config.arena_bytes = arena_bytes;
                Ok(OpenDevice::Emu(EmuDevice::with_image(config, image)?))
            }
            TargetSpec::Zram => {
                let config = PsyncConfig {
                    arena_bytes,
                    target,
                };
                let device = PsyncDevice::open(Path::new(ZRAM_DEV), config)
                    .with_context(|| format!("open {ZRAM_DEV}"))?;
                Ok(OpenDevice::Psync(device))
            }
        }
    }
}

/// A benchmark body generic over the device (closures cannot be generic). Gives the device
/// back for the next run.
pub(super) trait AiosRun<R> {
    fn run<D: Device + Sync + 'static>(self, device: D) -> Result<(R, D)>;
}

/// Prepares every requested target; unusable optional ones (zram) are skipped with a reason.
/// `arena_bytes`: the arena of each target's device.
pub(super) fn prepare_targets(
    specs: &[TargetSpec],
    setup: &Setup,
    arena_bytes: usize,
) -> Result<Vec<Target>> {
    let mut targets = Vec::new();
    for spec in specs {
        let (label, kernel_data, zram) = match spec {
            TargetSpec::Host => ("host disk".to_string(), Some(setup.data.clone()), None),
            TargetSpec::Emu(preset) => (format!("emu:{preset}"), None, None),
            TargetSpec::Zram => match ZramMount::new(&setup.image) {
                Ok(zram) => {
                    let data = zram.mount_point.path().join(DATA_NAME);
                    ("zram".to_string(), Some(data), Some(zram))
                }
                Err(why) => {
                    eprintln!("aios: skipping target zram: {why:#}");
                    continue;
                }
            },
        };
        targets.push(Target {
            spec: spec.clone(),
            label,
            kernel_data,
            device: Mutex::new(None),
            arena_bytes,
            _zram: zram,
        });
    }
    if targets.is_empty() {
        bail!("no usable --target");
    }
    Ok(targets)
}

/// The image on `/dev/zram0`, mounted read-only by the kernel.
struct ZramMount {
    mount_point: tempfile::TempDir,
    mounted: bool,
}

impl ZramMount {
    fn new(image: &Path) -> Result<ZramMount> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!("needs root (to size /dev/zram0 and mount it)");
        }
        if !Path::new(ZRAM_SYS).exists() {
            bail!("{ZRAM_DEV} not present (modprobe zram)");
        }
        let disksize: u64 = std::fs::read_to_string(format!("{ZRAM_SYS}/disksize"))?
            .trim()
            .parse()
            .unwrap_or(u64::MAX);
        let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
        if disksize != 0 || swaps.contains(ZRAM_DEV) {
            bail!(
                "{ZRAM_DEV} is in use (disksize {disksize}); reset it to let the benchmark use it"
            );
        }
        let len = std::fs::metadata(image)?.len();
        std::fs::write(format!("{ZRAM_SYS}/disksize"), len.to_string())
            .context("set zram disksize")?;
        let mut zram = ZramMount {
            mount_point: tempfile::tempdir()?,
            mounted: false,
        };
        eprintln!("aios: copying {} onto {ZRAM_DEV}", image.display());
        let mut src = std::fs::File::open(image)?;
        let mut dst = std::fs::OpenOptions::new().write(true).open(ZRAM_DEV)?;
        std::io::copy(&mut src, &mut dst).context("copy the image onto zram")?;
        dst.sync_all()?;
        drop(dst);
        let out = Command::new("mount")
            .args(["-t", "ext4", "-o", "ro,noatime", ZRAM_DEV])
            .arg(zram.mount_point.path())
            .output()
            .context("run mount")?;
        if !out.status.success() {
            bail!(
                "mount {ZRAM_DEV}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        zram.mounted = true;
        Ok(zram)
    }
}

impl Drop for ZramMount {
    fn drop(&mut self) {
        if self.mounted {
            let ok = Command::new("umount")
                .arg(self.mount_point.path())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                eprintln!(
                    "aios: could not unmount {}; {ZRAM_DEV} left as is",
                    self.mount_point.path().display()
                );
                return;
            }
        }
        if std::fs::write(format!("{ZRAM_SYS}/reset"), "1").is_err() {
            eprintln!("aios: could not reset {ZRAM_DEV}");
        }
    }
}
