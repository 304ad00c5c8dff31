//! The device contract suite on the pread/pwrite backend, on an image file on the disk.

use aios_device::{contract, Device, TargetOptions};
use aios_device_psync::{PsyncConfig, PsyncDevice};

#[test]
fn psync_on_a_file_meets_the_contract() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("disk.img");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(contract::CAPACITY_BYTES_MIN)
        .unwrap();
    let config = PsyncConfig {
        arena_bytes: contract::ARENA_BYTES_MIN,
        target: TargetOptions {
            read_only: false,
            exclusive: true,
        },
    };
    let dev = PsyncDevice::open(&path, config).unwrap();
    assert_eq!(dev.info().capacity_bytes, contract::CAPACITY_BYTES_MIN);
    contract::run_all(&dev);
}
