//! Unit tests' mount: a fresh 32 MiB image (made by `mke2fs`) on an `instant` emulated device,
//! `data=ordered`, no periodic commit. Test-only.

use aios_device_emu::{DiskImage, EmuConfig, EmuDevice};

use super::{DataMode, RwFs, RwOptions};

/// `data=ordered`, no periodic commit.
pub(super) fn options() -> RwOptions {
    RwOptions {
        data: DataMode::Ordered,
        commit_interval: None,
        ..RwOptions::default()
    }
}

/// A fresh mount with [`options`]; `None` (said on stderr) without `mke2fs`.
pub(super) fn mount() -> Option<RwFs<EmuDevice>> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fs.img");
    if let Err(e) = crate::mkfs::make_ext4(&path, 32 << 20, None) {
        eprintln!("SKIPPED: {e}");
        return None;
    }
    let image = DiskImage::load(&path).unwrap();
    let config = EmuConfig::parse("instant,size=32M,arena=16M").unwrap();
    let dev = EmuDevice::with_image(config, image).unwrap();
    Some(RwFs::mount(dev, options()).unwrap())
}
