//! `aios bench mixed` on aios: one phase on one read-write mount of the target's device,
//! mounted afresh (cold page cache) and unmounted (checkpoint) after the window.
//!
//! Every thread makes its own context on the shared mount ([`aios_fs::RwShared::ctx`]) and
//! opens its file by handle: a reader `/data`, read with `read_at`; an appender its own
//! `/append.T`, emptied and fsynced before the window, then `write_at` at its end + `fsync_file`
//! per operation. Concurrent fsyncs share commits; the readers' misses go to the device without
//! the mount's state lock (`aios_fs::rw` module docs).

use super::phase::{append_loop, read_loop, run_phase, Role, ThreadOut};
use super::target::APPEND_BYTES_MAX;
use super::*;
use crate::target::DeviceRun;
use aios_device::Device;
use aios_fs::{MountOptions, OpenOptions, RwFs, RwOptions};
use std::cell::RefCell;

/// Runs `phase` on `target`'s device in `order`; the device goes back to the target unless
/// the mount failed (then it is lost, and later phases on the target fail saying so).
pub(super) fn run_case(
    setup: &Setup,
    target: &Target,
    order: MixedOrder,
    phase: Phase,
    run: Run,
) -> Result<PhaseOut> {
    let options = RwOptions {
        mount: MountOptions {
            read_mode: order.read_mode(),
            completion: target.devices.completion,
            ..MountOptions::default()
        },
        order: order.commit(),
        ..RwOptions::default()
    };
    target.devices.run(PhaseRun {
        options,
        file_size: setup.file_size,
        phase,
        run,
    })?
}

/// One phase on whichever device the target holds.
struct PhaseRun {
    options: RwOptions,
    file_size: u64,
    phase: Phase,
    run: Run,
}

impl DeviceRun for PhaseRun {
    type Out = Result<PhaseOut>;

    fn run<D: Device + 'static>(self, device: D) -> Result<(Result<PhaseOut>, D)> {
        run_mount(device, self.options, self.file_size, self.phase, self.run)
    }
}

/// Mount, run the phase, unmount. Once mounted, the device comes back with the phase's first
/// error if any; a failed mount loses it (`mount` takes it by value) and is the outer error.
fn run_mount<D: Device + 'static>(
    device: D,
    options: RwOptions,
    file_size: u64,
    phase: Phase,
    run: Run,
) -> Result<(Result<PhaseOut>, D)> {
    let fs = RwFs::mount(device, options).context("mount read-write")?;
    let shared = fs.shared();
    let result = run_phase(phase, run, |role, index, gate| {
        let mut ctx = shared.ctx()?;
        let out = match role {
            Role::Reader => {
                let before = ctx.read_stats().submitted;
                let file =
                    shared.open(&mut ctx, format!("/{DATA_NAME}"), OpenOptions::default())?;
                let mut page = vec![0u8; IO_BYTES as usize];
                let out = read_loop(
                    gate.go(),
                    file_size / IO_BYTES,
                    run.thread_seed(index),
                    |offset| {
                        let n = shared.read_at(&mut ctx, &file, offset, &mut page)?;
                        if n != page.len() {
                            bail!("read of /{DATA_NAME} at {offset}: {n} bytes");
                        }
                        Ok(())
                    },
                    |_| Ok(()),
                );
                let requests = ctx.read_stats().submitted - before;
                shared.close(&mut ctx, file)?;
                ThreadOut { requests, ..out? }
            }
            Role::Appender => {
                let path = format!("/{}", append_name(index));
                let file = shared.open(&mut ctx, &path, OpenOptions::default())?;
                let data = vec![0xa5u8; IO_BYTES as usize];
                let restart = |ctx: &mut aios_fs::RwCtx<D>| -> Result<()> {
                    shared.truncate(ctx, &path, 0)?;
                    Ok(shared.fsync_file(ctx, &file)?)
                };
                restart(&mut ctx)?;
                let ctx = RefCell::new(ctx);
                let out = append_loop(
                    gate.go(),
                    APPEND_BYTES_MAX,
                    |offset| {
                        let ctx = &mut *ctx.borrow_mut();
                        shared.write_at(ctx, &file, offset, &data)?;
                        Ok(shared.fsync_file(ctx, &file)?)
                    },
                    || restart(&mut ctx.borrow_mut()),
                );
                let mut ctx = ctx.into_inner();
                shared.close(&mut ctx, file)?;
                out?
            }
        };
        Ok(out)
    });
    Ok(crate::target::unmount_after(fs, result))
}
