//! The device contract suite on the io_uring backend: a temporary image file on the disk, and
//! `/dev/zram0` (4096-byte logical blocks) when we are root and it is free.

use aios_device::contract::{run_all, ARENA_BYTES_MIN, CAPACITY_BYTES_MIN};
use aios_device::Device;
use aios_device_uring::{UringConfig, UringDevice};
use std::path::Path;

fn config() -> UringConfig {
    UringConfig {
        arena_bytes: 2 * ARENA_BYTES_MIN,
        ..UringConfig::default()
    }
}

#[test]
fn contract_on_image_file() {
    // /tmp is on the ext4 root here, which takes O_DIRECT; tmpfs would refuse it at open.
    let image = tempfile::NamedTempFile::new().expect("temp image");
    image
        .as_file()
        .set_len(8 * CAPACITY_BYTES_MIN)
        .expect("size the image");
    let dev = UringDevice::open(image.path(), config()).expect("open image");
    assert_eq!(dev.info().capacity_bytes, 8 * CAPACITY_BYTES_MIN);
    assert!(dev.info().name.starts_with("uring:"));
    run_all(&dev);
}

const ZRAM: &str = "/sys/block/zram0";

/// Resets zram0 on drop if this test initialised it.
struct ZramGuard {
    initialised_here: bool,
}

impl Drop for ZramGuard {
    fn drop(&mut self) {
        if !self.initialised_here {
            return;
        }
        // A ring's teardown is asynchronous; give a straggling reference a moment to go.
        for attempt in 0..50 {
            match std::fs::write(format!("{ZRAM}/reset"), "1") {
                Ok(()) => return,
                Err(e) if attempt == 49 => {
                    eprintln!("=== contract_on_zram: zram0 NOT reset: {e} ===")
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
    }
}

/// Initialises zram0 with 1 GiB if it exists, we are root, and nobody set it up; else says why not.
fn setup_zram() -> Result<ZramGuard, String> {
    if !Path::new("/dev/zram0").exists() {
        return Err("no /dev/zram0".into());
    }
    // SAFETY: geteuid has no preconditions and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root".into());
    }
    let disksize = std::fs::read_to_string(format!("{ZRAM}/disksize"))
        .map_err(|e| format!("cannot read zram0 disksize: {e}"))?;
    if disksize.trim() != "0" {
        return Err(format!(
            "zram0 is already initialised ({} bytes): someone else may be using it",
            disksize.trim()
        ));
    }
    std::fs::write(format!("{ZRAM}/disksize"), "1G")
        .map_err(|e| format!("cannot initialise zram0: {e}"))?;
    Ok(ZramGuard {
        initialised_here: true,
    })
}

#[test]
fn contract_on_zram() {
    let _guard = match setup_zram() {
        Ok(guard) => guard,
        Err(why) => {
            eprintln!("=== SKIPPED contract_on_zram: {why} ===");
            return;
        }
    };
    let dev = match UringDevice::open("/dev/zram0", config()) {
        Ok(dev) => dev,
        Err(e) => {
            eprintln!("=== SKIPPED contract_on_zram: {e} ===");
            return;
        }
    };
    assert_eq!(dev.info().capacity_bytes, 1 << 30);
    run_all(&dev);
}
