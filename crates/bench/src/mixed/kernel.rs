//! `aios bench mixed` on the kernel: the same phase on the kernel's ext4 mount of the image
//! (a loop-mounted copy on the host disk, `/dev/zram0` on zram), through `std::fs`.
//!
//! Before the phase the data file's cached pages are dropped (`posix_fadvise(DONTNEED)`).
//! A reader opens its own descriptor of `data`, asks for no readahead (`POSIX_FADV_RANDOM`),
//! and `pread`s (`FileExt::read_at`) random 4 KiB pages, dropping each page again right after
//! its read (untimed): the kernel's cache is unbounded, so without that the whole file would
//! be cached within a phase and its "cold" reads would be hits. An appender empties its own
//! `append.T` (`set_len(0)` + `fsync`) before the window, then `pwrite`s 4 KiB at its end and
//! `fsync`s (`sync_all`) per operation.

use super::phase::{append_loop, read_loop, run_phase, Role};
use super::target::APPEND_BYTES_MAX;
use super::*;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// Runs `phase` on the files in `dir` (the kernel's mount of the image).
pub(super) fn run_case(dir: &Path, file_size: u64, phase: Phase, run: Run) -> Result<PhaseOut> {
    let data = dir.join(DATA_NAME);
    if phase.readers() > 0 {
        let file = File::open(&data).with_context(|| format!("open {}", data.display()))?;
        fadvise(&file, 0, 0, libc::POSIX_FADV_DONTNEED)
            .with_context(|| format!("drop the cached pages of {}", data.display()))?;
    }
    run_phase(phase, run, |role, index, gate| match role {
        Role::Reader => {
            let file = File::open(&data).with_context(|| format!("open {}", data.display()))?;
            fadvise(&file, 0, 0, libc::POSIX_FADV_RANDOM)
                .with_context(|| format!("fadvise RANDOM {}", data.display()))?;
            let mut page = vec![0u8; IO_BYTES as usize];
            read_loop(
                gate.go(),
                file_size / IO_BYTES,
                run.thread_seed(index),
                |offset| {
                    file.read_exact_at(&mut page, offset)
                        .with_context(|| format!("pread {} at {offset}", data.display()))
                },
                |offset| {
                    fadvise(&file, offset, IO_BYTES, libc::POSIX_FADV_DONTNEED)
                        .with_context(|| format!("drop {} at {offset}", data.display()))
                },
            )
        }
        Role::Appender => {
            let path = dir.join(append_name(index));
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .with_context(|| format!("open {}", path.display()))?;
            let restart = || -> Result<()> {
                file.set_len(0)
                    .and_then(|()| file.sync_all())
                    .with_context(|| format!("truncate and fsync {}", path.display()))
            };
            restart()?;
            let bytes = vec![0xa5u8; IO_BYTES as usize];
            append_loop(
                gate.go(),
                APPEND_BYTES_MAX,
                |offset| {
                    file.write_all_at(&bytes, offset)
                        .and_then(|()| file.sync_all())
                        .with_context(|| format!("pwrite + fsync {} at {offset}", path.display()))
                },
                restart,
            )
        }
    })
}

/// `posix_fadvise(2)` of `len` bytes at `offset` (0: to the end).
fn fadvise(file: &File, offset: u64, len: u64, advice: libc::c_int) -> std::io::Result<()> {
    // SAFETY: posix_fadvise only reads its integer arguments; the descriptor is open for the
    // whole call (borrowed from `file`).
    let rc = unsafe {
        libc::posix_fadvise(
            file.as_raw_fd(),
            offset as libc::off_t,
            len as libc::off_t,
            advice,
        )
    };
    // posix_fadvise returns the error number instead of setting errno.
    match rc {
        0 => Ok(()),
        errno => Err(std::io::Error::from_raw_os_error(errno)),
    }
}
