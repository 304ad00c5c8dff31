//! Device specs on the command line: one string picks the backend and its target.
//!
//! | spec | backend |
//! | --- | --- |
//! | `uring:PATH` | io_uring, O_DIRECT, on an image file or block device |
//! | `psync:PATH` | preadv/pwritev2, O_DIRECT (synchronous devices such as `/dev/zram0`) |
//! | `emu:PRESET[,opt=val...]` | the emulated NVMe device (`ull`, `nand`, `instant`) |
//! | `null` | the null device: completes at once, moves no data |

use aios_device::{DeviceError, NullDevice, Op, TargetOptions};
use aios_device_emu::{EmuConfig, EmuDevice};
use aios_device_psync::{PsyncConfig, PsyncDevice};
use aios_device_uring::{UringConfig, UringDevice};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Arena each benchmark device gets: enough for 8 threads x QD32 x 128 KiB.
pub const BENCH_ARENA_BYTES: usize = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    Uring(PathBuf),
    Psync(PathBuf),
    Emu(String),
    Null,
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (kind, rest) = text.split_once(':').unwrap_or((text, ""));
        let need_path = |kind: &str| {
            if rest.is_empty() {
                Err(format!(
                    "device {text:?}: {kind} needs a path, e.g. {kind}:/dev/zram0"
                ))
            } else {
                Ok(PathBuf::from(rest))
            }
        };
        match kind {
            "uring" => Ok(DeviceSpec::Uring(need_path("uring")?)),
            "psync" => Ok(DeviceSpec::Psync(need_path("psync")?)),
            "emu" if !rest.is_empty() => Ok(DeviceSpec::Emu(rest.to_string())),
            "emu" => Err(format!("device {text:?}: emu needs a preset, e.g. emu:ull")),
            "null" => Ok(DeviceSpec::Null),
            _ => Err(format!("device {text:?}: unknown backend {kind:?} (expected uring:PATH, psync:PATH, emu:PRESET or null)")),
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Uring(p) => write!(f, "uring:{}", p.display()),
            DeviceSpec::Psync(p) => write!(f, "psync:{}", p.display()),
            DeviceSpec::Emu(s) => write!(f, "emu:{s}"),
            DeviceSpec::Null => write!(f, "null"),
        }
    }
}

/// An open device of any backend.
pub enum OpenDevice {
    Uring(UringDevice),
    Emu(EmuDevice),
    Psync(PsyncDevice),
    Null(NullDevice),
}

/// Runs `$body` with `$d` bound to the concrete device inside an [`OpenDevice`].
#[macro_export]
macro_rules! with_device {
    ($dev:expr, $d:ident => $body:expr) => {
        match $dev {
            $crate::OpenDevice::Uring($d) => $body,
            $crate::OpenDevice::Emu($d) => $body,
            $crate::OpenDevice::Psync($d) => $body,
            $crate::OpenDevice::Null($d) => $body,
        }
    };
}

impl DeviceSpec {
    /// The file the kernel's own path can read for comparison, if the target is one.
    pub fn kernel_path(&self) -> Option<&Path> {
        match self {
            DeviceSpec::Uring(p) | DeviceSpec::Psync(p) => Some(p),
            DeviceSpec::Emu(_) | DeviceSpec::Null => None,
        }
    }

    /// The modelled time of one command on an idle emulated device; `None` for real devices.
    pub fn modelled_ns(dev: &OpenDevice, op: Op, len_bytes: u64) -> Option<u64> {
        match dev {
            OpenDevice::Emu(d) => Some(d.config().latency.idle_latency_ns(op, len_bytes)),
            OpenDevice::Uring(_) | OpenDevice::Psync(_) | OpenDevice::Null(_) => None,
        }
    }

    /// Opens the device for a benchmark.
    pub fn open(&self) -> Result<OpenDevice, DeviceError> {
        // Not exclusive: the raw benchmark shares its target with the kernel path and with other
        // backends by design, and never interprets what is on it.
        let target = TargetOptions {
            read_only: false,
            exclusive: false,
        };
        match self {
            DeviceSpec::Psync(path) => Ok(OpenDevice::Psync(PsyncDevice::open(
                path,
                PsyncConfig {
                    arena_bytes: BENCH_ARENA_BYTES,
                    target,
                },
            )?)),
            DeviceSpec::Null => Ok(OpenDevice::Null(NullDevice::new(
                1 << 40,
                BENCH_ARENA_BYTES,
            )?)),
            DeviceSpec::Emu(text) => {
                let mut config = EmuConfig::parse(text).map_err(DeviceError::from)?;
                config.arena_bytes = config.arena_bytes.max(BENCH_ARENA_BYTES);
                // Page faults on first touch would be charged to the writes being measured.
                config.prefault.get_or_insert(true);
                Ok(OpenDevice::Emu(
                    EmuDevice::new(config).map_err(DeviceError::from)?,
                ))
            }
            DeviceSpec::Uring(path) => {
                let config = UringConfig {
                    target,
                    arena_bytes: BENCH_ARENA_BYTES,
                    ..UringConfig::default()
                };
                Ok(OpenDevice::Uring(UringDevice::open(path, config)?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print() {
        for text in [
            "uring:/dev/vda",
            "psync:/dev/zram0",
            "emu:ull",
            "emu:nand,cache=volatile",
            "null",
        ] {
            let spec: DeviceSpec = text.parse().unwrap();
            assert_eq!(spec.to_string(), text);
        }
        assert!("uring:"
            .parse::<DeviceSpec>()
            .unwrap_err()
            .contains("needs a path"));
        assert!("emu".parse::<DeviceSpec>().unwrap_err().contains("preset"));
        assert!("nvme:/dev/x"
            .parse::<DeviceSpec>()
            .unwrap_err()
            .contains("unknown backend"));
    }
}
