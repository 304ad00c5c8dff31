//! The spec parser: one string that names an emulated device, for command lines and test setups.
//!
//! ```text
//! spec    = preset *("," option)
//! preset  = "ull" | "nand" | "instant"
//! option  = "size=" SIZE          device capacity (default 1G; with file= and no size: the file's length)
//!         | "arena=" SIZE         buffer arena (default 64M)
//!         | "cache=" ("volatile" | "nonvolatile")   overrides the preset's cache
//!         | "cache_size=" SIZE    completed unflushed data a volatile cache holds (default 256M)
//!         | "channels=" N         internal parallelism, 0 = unlimited
//!         | "clock=" ("real" | "virtual")
//!         | "file=" PATH          image to load at open (PATH may not contain ',')
//!         | "record" | "record=" ("on" | "off")     keep the write log
//!         | "prefault" | "prefault=" ("on" | "off") back the images with RAM at open (default: unset, sparse)
//!         | "read=" DUR | "write=" DUR | "flush=" DUR | "flush_block=" DUR   media times
//!         | "bw=" RATE            link bandwidth in bytes/s, 0 = unlimited
//! SIZE    = digits [K|M|G|T] ["iB"|"B"]       binary: 64M = 64 MiB
//! DUR     = digits ["ns"|"us"|"ms"|"s"]       bare digits are nanoseconds
//! RATE    = digits [K|M|G]                    decimal, as links are sold: 4G = 4,000,000,000
//! ```
//!
//! Promises: an unknown preset or option, a malformed value, or an option given twice is an
//! [`EmuError`] that names it; nothing is silently ignored. Parsing touches the file system only to
//! read the length of `file=` when no `size=` is given.
//!
//! This file holds the parser, [`EmuConfig::parse`] (the constructor from a spec) and the unit
//! parsers; the configuration it fills is [`crate::config`]'s. The option list [`OPTIONS`] is
//! defined in `error.rs` (the unknown-option message quotes it) and re-exported here.

use crate::config::{ClockKind, EmuConfig, Preset};
use crate::EmuError;
use std::path::PathBuf;

// The option names: defined beside `EmuError`, whose unknown-option message lists them.
pub use crate::error::OPTIONS;

impl EmuConfig {
    /// Parses a spec such as `ull,size=1G,cache=volatile,clock=virtual` (see [`crate::spec`]).
    pub fn parse(spec: &str) -> Result<EmuConfig, EmuError> {
        parse(spec)
    }
}

/// Parses a spec (see the module docs).
pub fn parse(spec: &str) -> Result<EmuConfig, EmuError> {
    let mut items = spec.split(',').map(str::trim);
    let preset = match items.next() {
        None | Some("") => return Err(EmuError::EmptySpec),
        Some("ull") => Preset::Ull,
        Some("nand") => Preset::Nand,
        Some("instant") => Preset::Instant,
        Some(other) => return Err(EmuError::UnknownPreset(other.to_string())),
    };
    let mut config = EmuConfig::preset(preset);
    let mut seen: Vec<&str> = Vec::new();
    let mut size_given = false;
    for item in items {
        let (key, value) = item.split_once('=').unwrap_or((item, ""));
        let key = key.trim();
        let value = value.trim();
        if seen.contains(&key) {
            return Err(EmuError::DuplicateOption(key.to_string()));
        }
        seen.push(key);
        size_given |= key == "size";
        apply(&mut config, key, value)?;
    }
    if !size_given {
        if let Some(path) = &config.image_file {
            config.capacity_bytes = file_len(path)?;
        }
    }
    config.validate()?;
    Ok(config)
}

fn apply(config: &mut EmuConfig, key: &str, value: &str) -> Result<(), EmuError> {
    let bad = |expected| EmuError::BadValue {
        option: key.to_string(),
        value: value.to_string(),
        expected,
    };
    match key {
        "size" => config.capacity_bytes = size(value).ok_or_else(|| bad(SIZE_HINT))?,
        "arena" => {
            let bytes = size(value).ok_or_else(|| bad(SIZE_HINT))?;
            config.arena_bytes = usize::try_from(bytes).map_err(|_| bad(SIZE_HINT))?;
        }
        "cache" => {
            config.volatile_cache = match value {
                "volatile" => true,
                "nonvolatile" | "non-volatile" => false,
                _ => return Err(bad("`volatile` or `nonvolatile`")),
            }
        }
        "cache_size" => config.cache_bytes_max = size(value).ok_or_else(|| bad(SIZE_HINT))?,
        "channels" => config.latency.channels = value.parse().map_err(|_| bad("a count"))?,
        "clock" => {
            config.clock = match value {
                "real" => ClockKind::Real,
                "virtual" => ClockKind::Virtual,
                _ => return Err(bad("`real` or `virtual`")),
            }
        }
        "file" if !value.is_empty() => config.image_file = Some(PathBuf::from(value)),
        "file" => return Err(bad("a path")),
        "record" => config.record = on_off(value).ok_or_else(|| bad("`on` or `off`"))?,
        "prefault" => config.prefault = Some(on_off(value).ok_or_else(|| bad("`on` or `off`"))?),
        "read" => config.latency.read_ns = duration_ns(value).ok_or_else(|| bad(DUR_HINT))?,
        "write" => config.latency.write_ns = duration_ns(value).ok_or_else(|| bad(DUR_HINT))?,
        "flush" => config.latency.flush_ns = duration_ns(value).ok_or_else(|| bad(DUR_HINT))?,
        "flush_block" => {
            config.latency.flush_per_dirty_block_ns =
                duration_ns(value).ok_or_else(|| bad(DUR_HINT))?
        }
        "bw" => {
            config.latency.link_bytes_per_sec = rate(value)
                .ok_or_else(|| bad("bytes per second such as 4G (decimal) or 0 for unlimited"))?
        }
        _ => {
            return Err(EmuError::UnknownOption {
                option: key.to_string(),
            })
        }
    }
    Ok(())
}

const SIZE_HINT: &str = "a size such as 4096, 64M or 1G (binary units)";
const DUR_HINT: &str = "a duration such as 500ns, 5us or 1ms (bare digits: ns)";

/// Splits `value` into its leading digits and the rest.
fn number_and_unit(value: &str) -> Option<(u64, &str)> {
    let digits = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let number = value[..digits].parse().ok()?;
    Some((number, &value[digits..]))
}

/// A switch: bare (on), `on`/`off`, `true`/`false`, `1`/`0`.
fn on_off(value: &str) -> Option<bool> {
    match value {
        "" | "on" | "true" | "1" => Some(true),
        "off" | "false" | "0" => Some(false),
        _ => None,
    }
}

/// `64M`, `1GiB`, `4096`: binary units.
pub(crate) fn size(value: &str) -> Option<u64> {
    let (n, unit) = number_and_unit(value)?;
    let unit = unit
        .strip_suffix("iB")
        .or_else(|| unit.strip_suffix('B'))
        .unwrap_or(unit);
    let shift = match unit {
        "" => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        "T" | "t" => 40,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

/// `5us`, `1ms`, `500`: nanoseconds.
pub(crate) fn duration_ns(value: &str) -> Option<u64> {
    let (n, unit) = number_and_unit(value)?;
    let scale: u64 = match unit {
        "" | "ns" => 1,
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// `4G`, `500M`, `0`: bytes per second, decimal units.
pub(crate) fn rate(value: &str) -> Option<u64> {
    let (n, unit) = number_and_unit(value)?;
    let scale: u64 = match unit {
        "" => 1,
        "K" | "k" => 1_000,
        "M" | "m" => 1_000_000,
        "G" | "g" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(scale)
}

fn file_len(path: &PathBuf) -> Result<u64, EmuError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| EmuError::ImageIo {
            op: "stat",
            path: path.clone(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(size("4096"), Some(4096));
        assert_eq!(size("64M"), Some(64 << 20));
        assert_eq!(size("1GiB"), Some(1 << 30));
        assert_eq!(size("2KB"), Some(2048));
        assert_eq!(size("1X"), None);
        assert_eq!(size("M"), None);
        assert_eq!(size("99999999999T"), None, "overflow is refused");
        assert_eq!(duration_ns("5us"), Some(5_000));
        assert_eq!(duration_ns("1ms"), Some(1_000_000));
        assert_eq!(duration_ns("7"), Some(7));
        assert_eq!(duration_ns("5 us"), None);
        assert_eq!(rate("4G"), Some(4_000_000_000));
        assert_eq!(rate("0"), Some(0));
        assert_eq!(rate("4GiB"), None);
    }
}
