//! `aios bench write` runs: one repetition of one stack, the file removed (untimed), written
//! sequentially and fsynced (timed).

use super::*;
use crate::target::{pattern, DeviceRun};
use aios_device::Device;
use aios_fs::{MountOptions, OpenOptions, ReadMode, RwFs, RwOptions, RwShared};
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::Instant;

/// The kernel's knob that drops its clean caches (page cache, dentries and inodes): `3`.
const DROP_CACHES: &str = "/proc/sys/vm/drop_caches";

pub(super) fn run_case(setup: &Setup, case: &WriteCase) -> Result<RunOut> {
    let target = setup.target(case.target)?;
    match case.stack {
        WriteStack::Aios(order) => {
            let read_mode = match order {
                CommitOrder::Sync => ReadMode::Sync,
                CommitOrder::Async => ReadMode::Async,
            };
            let options = RwOptions {
                mount: MountOptions {
                    read_mode,
                    completion: target.devices.completion,
                    ..MountOptions::default()
                },
                order,
                ..RwOptions::default()
            };
            target.devices.run(AiosRun {
                options,
                file_size: setup.file_size,
                bs: setup.bs,
            })?
        }
        WriteStack::Kernel => {
            let dir = target
                .devices
                .kernel_dir
                .as_deref()
                .with_context(|| format!("no kernel mount on {}", target.label()))?;
            run_kernel(dir, setup.file_size, setup.bs)
        }
    }
}

/// One aios repetition on whichever device the target holds.
struct AiosRun {
    options: RwOptions,
    file_size: u64,
    bs: u64,
}

impl DeviceRun for AiosRun {
    type Out = Result<RunOut>;

    /// Mount, write, unmount. Once mounted, the device comes back with the run's first error if
    /// any; a failed mount loses it and is the outer error.
    fn run<D: Device + 'static>(self, device: D) -> Result<(Result<RunOut>, D)> {
        let fs = RwFs::mount(device, self.options).context("mount read-write")?;
        let result = write_aios(fs.shared(), self.file_size, self.bs);
        Ok(crate::target::unmount_after(fs, result))
    }
}

/// Removes `/seq` durably if it is there, then creates it and times its writes and fsync.
fn write_aios<D: Device + 'static>(
    shared: &RwShared<D>,
    file_size: u64,
    bs: u64,
) -> Result<RunOut> {
    let mut ctx = shared.ctx()?;
    let path = format!("/{FILE_NAME}");
    if shared.lookup(&mut ctx, &path)?.is_some() {
        shared.unlink(&mut ctx, &path)?;
        shared.sync(&mut ctx)?;
    }
    let create = OpenOptions {
        create: true,
        exclusive: true,
        ..OpenOptions::default()
    };
    let file = shared.open(&mut ctx, &path, create)?;
    let data = pattern(bs as usize);
    let before = shared.stats();
    let start = Instant::now();
    let mut offset = 0;
    while offset < file_size {
        shared
            .write_at(&mut ctx, &file, offset, &data)
            .with_context(|| format!("write {path} at {offset}"))?;
        offset += bs;
    }
    let written = Instant::now();
    shared
        .fsync_file(&mut ctx, &file)
        .with_context(|| format!("fsync {path}"))?;
    let end = Instant::now();
    let stats = shared.stats().since(&before);
    shared.close(&mut ctx, file)?;
    Ok(RunOut {
        elapsed_ns: (end - start).as_nanos() as u64,
        write_ns: (written - start).as_nanos() as u64,
        stats: Some(stats),
    })
}

/// The kernel's repetition in `dir` (its mount of the image): delete `seq`, sync the file
/// system, drop the caches, then create `seq` and time its writes and fsync.
fn run_kernel(dir: &Path, file_size: u64, bs: u64) -> Result<RunOut> {
    let path = dir.join(FILE_NAME);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("remove {}", path.display())),
    }
    syncfs(dir)?;
    std::fs::write(DROP_CACHES, "3")
        .with_context(|| format!("drop the kernel's caches ({DROP_CACHES}, root)"))?;
    let mut file =
        std::fs::File::create(&path).with_context(|| format!("create {}", path.display()))?;
    let data = pattern(bs as usize);
    let start = Instant::now();
    let mut offset = 0;
    while offset < file_size {
        file.write_all(&data)
            .with_context(|| format!("write {} at {offset}", path.display()))?;
        offset += bs;
    }
    let written = Instant::now();
    file.sync_all()
        .with_context(|| format!("fsync {}", path.display()))?;
    let end = Instant::now();
    Ok(RunOut {
        elapsed_ns: (end - start).as_nanos() as u64,
        write_ns: (written - start).as_nanos() as u64,
        stats: None,
    })
}

/// `syncfs(2)` of the file system holding `dir`: the removal and its freed blocks committed
/// before the next repetition's time starts.
fn syncfs(dir: &Path) -> Result<()> {
    let handle = std::fs::File::open(dir).with_context(|| format!("open {}", dir.display()))?;
    // SAFETY: syncfs only reads its integer argument; the descriptor is open for the whole
    // call (borrowed from `handle`).
    let rc = unsafe { libc::syncfs(handle.as_raw_fd()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("syncfs {}", dir.display()));
    }
    Ok(())
}
