//! Helpers the `aios` integration tests share.

use std::process::Command;

/// Whether `mke2fs` and `e2fsck` run here; says loudly that `test` is skipped when not.
pub fn have_e2fsprogs(test: &str) -> bool {
    let ok = ["mke2fs", "e2fsck"]
        .iter()
        .all(|t| Command::new(t).arg("-V").output().is_ok());
    if !ok {
        eprintln!("SKIPPED {test}: e2fsprogs (mke2fs, e2fsck) not installed");
    }
    ok
}
