//! Tests of the probes (`super`), each on a [`crate::UringDevice`] opened over a temporary file.

use super::*;
use crate::{UringConfig, UringDevice};
use std::os::unix::fs::FileExt;

/// The probe I/O itself, on a block that really reaches the device (data, not a hole).
#[test]
fn iopoll_probe_read_reaches_the_device() {
    let image = tempfile::NamedTempFile::new().unwrap();
    image
        .as_file()
        .write_all_at(&[7u8; 2 * BLOCK_SIZE], 0)
        .unwrap();
    image.as_file().sync_all().unwrap();
    let config = UringConfig {
        arena_bytes: BLOCK_SIZE,
        ..UringConfig::default()
    };
    let dev = UringDevice::open(image.path(), config).unwrap();
    let shared = dev.shared();
    assert_eq!(
        probe_offset(shared),
        Some(0),
        "SEEK_DATA finds the written block"
    );
    let polls = shared.target().queue_attr("io_poll");
    match probe_read(shared, 0) {
        Ok(()) => assert_eq!(polls.as_deref(), Some("1"), "only polling queues complete"),
        Err(errno) => {
            assert_eq!(errno, libc::EOPNOTSUPP, "refused in the CQE, not at setup");
            assert_ne!(polls.as_deref(), Some("1"));
        }
    }
    assert_eq!(
        probe_iopoll(shared),
        probe_read(shared, 0).map_err(|_| libc::EOPNOTSUPP)
    );
}

#[test]
fn holes_are_not_probed() {
    let image = tempfile::NamedTempFile::new().unwrap();
    image.as_file().set_len(1 << 20).unwrap();
    let config = UringConfig {
        arena_bytes: BLOCK_SIZE,
        ..UringConfig::default()
    };
    let dev = UringDevice::open(image.path(), config).unwrap();
    assert_eq!(
        probe_offset(dev.shared()),
        None,
        "a sparse file has no block to probe"
    );
}
