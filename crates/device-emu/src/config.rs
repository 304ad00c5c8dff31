//! Configuration: the latency model, the three presets, and the knobs around them.
//!
//! All fields are public so a test can start from a preset and change one thing
//! (`EmuConfig { clock: ClockKind::Virtual, ..EmuConfig::ull() }`); [`EmuConfig::validate`] is
//! called by the device constructor, so a hand-built configuration is checked like a parsed one.
//! Parsing a spec string ([`EmuConfig::parse`]) lives with its grammar in [`crate::spec`].
//!
//! # Presets (numbers a test may rely on)
//! | preset | read | write | flush | link | channels | cache |
//! | --- | --- | --- | --- | --- | --- | --- |
//! | `ull` (Optane-like) | 5 us | 5 us | 1 us | 4.096 GB/s (4 KiB = 1 us) | 4 | non-volatile |
//! | `nand` (flash SSD) | 78 us | 18 us | 1 ms + 1 us per dirty block | 2.048 GB/s (4 KiB = 2 us) | 32 | volatile |
//! | `instant` | 0 | 0 | 0 | unlimited | unlimited | volatile |
//!
//! So a 4 KiB read costs 6 us on `ull` and 80 us on `nand`, a 4 KiB write 6 us and 20 us.

use crate::EmuError;
use aios_device::arena::ARENA_BYTES_MAX;
use aios_device::BLOCK_SIZE;
use std::path::PathBuf;

/// The largest emulated device. The image is a sparse mapping, so only touched blocks cost memory,
/// but the per-block bookkeeping is sized by capacity (16 bytes per block, also sparse).
pub const CAPACITY_BYTES_MAX: u64 = 1 << 40;
/// The most internal channels a model may have.
pub const CHANNELS_MAX: u32 = 4096;

/// How long commands take. A command first moves its data over the shared link (serialized, at
/// `link_bytes_per_sec`), then occupies one of `channels` for its media time (waiting for the
/// earliest free channel when all are busy); it completes when the media time ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyModel {
    /// Media time of a read, per command.
    pub read_ns: u64,
    /// Media time of a write, per command.
    pub write_ns: u64,
    /// Media time of a flush, per command.
    pub flush_ns: u64,
    /// Extra flush time per dirty block the flush makes durable (volatile caches only).
    pub flush_per_dirty_block_ns: u64,
    /// Bandwidth of the link that carries every command's data; 0 means unlimited.
    pub link_bytes_per_sec: u64,
    /// Commands the device works on at once; 0 means unlimited.
    pub channels: u32,
}

impl LatencyModel {
    /// Optane-like: 4 KiB read or write in 6 us, flush 1 us.
    pub const ULL: LatencyModel = LatencyModel {
        read_ns: 5_000,
        write_ns: 5_000,
        flush_ns: 1_000,
        flush_per_dirty_block_ns: 0,
        link_bytes_per_sec: 4_096_000_000,
        channels: 4,
    };

    /// Flash-like: 4 KiB read in 80 us, write into the cache in 20 us, flush 1 ms and more.
    pub const NAND: LatencyModel = LatencyModel {
        read_ns: 78_000,
        write_ns: 18_000,
        flush_ns: 1_000_000,
        flush_per_dirty_block_ns: 1_000,
        link_bytes_per_sec: 2_048_000_000,
        channels: 32,
    };

    /// No time at all: for functional and crash tests.
    pub const INSTANT: LatencyModel = LatencyModel {
        read_ns: 0,
        write_ns: 0,
        flush_ns: 0,
        flush_per_dirty_block_ns: 0,
        link_bytes_per_sec: 0,
        channels: 0,
    };

    /// Time to move `len_bytes` over the link, rounded up to whole nanoseconds.
    pub fn transfer_ns(&self, len_bytes: u64) -> u64 {
        if self.link_bytes_per_sec == 0 {
            return 0;
        }
        let ns =
            (u128::from(len_bytes) * 1_000_000_000).div_ceil(u128::from(self.link_bytes_per_sec));
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    /// The modelled time of one command on an idle device: transfer plus media time.
    pub fn idle_latency_ns(&self, op: aios_device::Op, len_bytes: u64) -> u64 {
        let media_ns = match op {
            aios_device::Op::Read => self.read_ns,
            aios_device::Op::Write { .. } => self.write_ns,
            aios_device::Op::Flush => self.flush_ns,
        };
        self.transfer_ns(len_bytes).saturating_add(media_ns)
    }
}

/// The named starting points of a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preset {
    Ull,
    Nand,
    Instant,
}

impl Preset {
    pub fn name(self) -> &'static str {
        match self {
            Preset::Ull => "ull",
            Preset::Nand => "nand",
            Preset::Instant => "instant",
        }
    }
}

/// Where time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ClockKind {
    /// The monotonic clock; waits spin the calling thread.
    #[default]
    Real,
    /// A simulated nanosecond counter, shared by the device's queues, starting at 0, that jumps to
    /// the next due time when a reap must wait. Deterministic with one thread.
    Virtual,
}

impl ClockKind {
    pub fn name(self) -> &'static str {
        match self {
            ClockKind::Real => "real",
            ClockKind::Virtual => "virtual",
        }
    }
}

/// Everything [`crate::EmuDevice::new`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmuConfig {
    /// The preset this configuration started from (for names and reports).
    pub preset: Preset,
    /// Device size; a multiple of [`BLOCK_SIZE`]. With `image_file` and no explicit size, the
    /// parser takes the file's length.
    pub capacity_bytes: u64,
    /// Size of the buffer arena (pre-faulted at open).
    pub arena_bytes: usize,
    pub latency: LatencyModel,
    /// True: non-FUA writes are lost at a crash until a flush covers them.
    pub volatile_cache: bool,
    /// A volatile cache holding more completed, unflushed data than this writes it all back, as if
    /// an (implicit, logged) flush was issued. Bounds memory on long benchmarks without flushes.
    pub cache_bytes_max: u64,
    pub clock: ClockKind,
    /// An image to load at open (its length must not exceed the capacity; the rest reads zero).
    pub image_file: Option<PathBuf>,
    /// Keep the write log (every write's data: memory grows with the workload).
    pub record: bool,
    /// Back the images with RAM at open, so no write takes a page fault (a first-touch fault
    /// costs microseconds, more than a modelled write; a 128 KiB write touches 64 pages). Costs
    /// `2 * capacity_bytes` of memory for the device's life (what reads see and what is durable)
    /// and 0.1 to 1.5 s per GiB of it at open; refused when that exceeds the available memory.
    /// `None`: the opener did not choose, and the device stays sparse (benchmark harnesses may
    /// turn it on, as `aios bench` does).
    pub prefault: Option<bool>,
}

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

impl EmuConfig {
    /// The `ull` preset: non-volatile cache, 1 GiB, arena 64 MiB, real clock.
    pub fn ull() -> EmuConfig {
        EmuConfig::preset(Preset::Ull)
    }

    /// The `nand` preset: volatile cache, 1 GiB, arena 64 MiB, real clock.
    pub fn nand() -> EmuConfig {
        EmuConfig::preset(Preset::Nand)
    }

    /// The `instant` preset: zero latency, volatile cache, 1 GiB, arena 64 MiB, real clock.
    pub fn instant() -> EmuConfig {
        EmuConfig::preset(Preset::Instant)
    }

    /// The defaults of a preset.
    pub fn preset(preset: Preset) -> EmuConfig {
        let (latency, volatile_cache) = match preset {
            Preset::Ull => (LatencyModel::ULL, false),
            Preset::Nand => (LatencyModel::NAND, true),
            Preset::Instant => (LatencyModel::INSTANT, true),
        };
        EmuConfig {
            preset,
            capacity_bytes: GIB,
            arena_bytes: 64 * MIB as usize,
            latency,
            volatile_cache,
            cache_bytes_max: 256 * MIB,
            clock: ClockKind::Real,
            image_file: None,
            record: false,
            prefault: None,
        }
    }

    /// Checks sizes and limits; the device constructor calls it.
    pub fn validate(&self) -> Result<(), EmuError> {
        let block = BLOCK_SIZE as u64;
        if self.capacity_bytes == 0
            || !self.capacity_bytes.is_multiple_of(block)
            || self.capacity_bytes > CAPACITY_BYTES_MAX
        {
            return Err(EmuError::BadConfig(format!(
                "capacity {} bytes: must be a positive multiple of 4096 of at most {CAPACITY_BYTES_MAX}",
                self.capacity_bytes
            )));
        }
        if self.arena_bytes == 0
            || !self.arena_bytes.is_multiple_of(BLOCK_SIZE)
            || self.arena_bytes > ARENA_BYTES_MAX
        {
            return Err(EmuError::BadConfig(format!(
                "arena {} bytes: must be a positive multiple of 4096 of at most {ARENA_BYTES_MAX}",
                self.arena_bytes
            )));
        }
        if self.latency.channels > CHANNELS_MAX {
            return Err(EmuError::BadConfig(format!(
                "{} channels: at most {CHANNELS_MAX}",
                self.latency.channels
            )));
        }
        Ok(())
    }

    /// A short name for [`aios_device::DeviceInfo::name`], e.g. `emu:ull` or
    /// `emu:nand,clock=virtual`.
    pub fn name(&self) -> String {
        let mut name = format!("emu:{}", self.preset.name());
        let preset_volatile = EmuConfig::preset(self.preset).volatile_cache;
        if self.volatile_cache != preset_volatile {
            name.push_str(if self.volatile_cache {
                ",cache=volatile"
            } else {
                ",cache=nonvolatile"
            });
        }
        if self.clock == ClockKind::Virtual {
            name.push_str(",clock=virtual");
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aios_device::Op;

    #[test]
    fn presets_give_the_documented_4k_latencies() {
        let k4 = BLOCK_SIZE as u64;
        assert_eq!(LatencyModel::ULL.idle_latency_ns(Op::Read, k4), 6_000);
        assert_eq!(
            LatencyModel::ULL.idle_latency_ns(Op::Write { fua: false }, k4),
            6_000
        );
        assert_eq!(LatencyModel::NAND.idle_latency_ns(Op::Read, k4), 80_000);
        assert_eq!(
            LatencyModel::NAND.idle_latency_ns(Op::Write { fua: true }, k4),
            20_000
        );
        assert_eq!(
            LatencyModel::INSTANT.idle_latency_ns(Op::Read, 128 << 10),
            0
        );
        assert!(!EmuConfig::ull().volatile_cache);
        assert!(EmuConfig::nand().volatile_cache && EmuConfig::instant().volatile_cache);
    }

    #[test]
    fn transfer_rounds_up_and_never_overflows() {
        let m = LatencyModel {
            link_bytes_per_sec: 3,
            ..LatencyModel::INSTANT
        };
        assert_eq!(m.transfer_ns(1), 333_333_334);
        assert_eq!(
            LatencyModel {
                link_bytes_per_sec: 1,
                ..m
            }
            .transfer_ns(u64::MAX),
            u64::MAX
        );
    }

    #[test]
    fn validate_refuses_bad_sizes() {
        let bad = [
            EmuConfig {
                capacity_bytes: 0,
                ..EmuConfig::instant()
            },
            EmuConfig {
                capacity_bytes: 4097,
                ..EmuConfig::instant()
            },
            EmuConfig {
                arena_bytes: 100,
                ..EmuConfig::instant()
            },
        ];
        for c in bad {
            assert!(matches!(c.validate(), Err(EmuError::BadConfig(_))), "{c:?}");
        }
        assert!(EmuConfig::nand().validate().is_ok());
    }
}
