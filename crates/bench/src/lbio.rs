//! `aios bench lbio`: the block layer's CPU cost per request.
//!
//! One request at a time through the whole request life: take a slot, build the command, stage
//! it, submit, reap, finish, release. On the `null` device nothing else runs, so the time per
//! request is the block layer's (and the device queue's user-space) CPU work. With `--callgrind`
//! the same loop runs twice under `valgrind --tool=callgrind` with different request counts, and
//! the difference of the instruction totals divided by the difference of the counts gives
//! instructions per request with start-up cancelled out. Valgrind does not see the kernel, so on
//! a real device this counts user-space instructions only: kernel entry is excluded by
//! construction.

use aios_block::BlockQueue;
use aios_device::{CompletionMode, Device, Op, QueueConfig, BLOCK_SIZE};
use aios_spec::with_device;
use aios_spec::DeviceSpec;
use anyhow::{bail, Context, Result};
use std::process::Command;
use std::time::Instant;

#[derive(Debug, Clone, clap::Args)]
pub struct LbioArgs {
    /// Device to drive (null: nothing but the block layer).
    #[arg(long = "device", short = 'd', default_value = "null")]
    pub device: DeviceSpec,
    /// Requests to time.
    #[arg(long, default_value = "2000000")]
    pub requests: u64,
    /// Also count instructions per request with callgrind (needs valgrind).
    #[arg(long)]
    pub callgrind: bool,
    /// Print only the nanoseconds per request (used by the callgrind runs).
    #[arg(long, hide = true)]
    pub quiet: bool,
}

/// Runs the loop; prints ns/request and, if asked, instructions/request.
pub fn run(args: &LbioArgs) -> Result<()> {
    let dev = args
        .device
        .open()
        .with_context(|| format!("open {}", args.device))?;
    let ns = with_device!(&dev, d => time_requests(d, args.requests))?;
    // Devices are opened exclusively: release it before the callgrind runs below.
    drop(dev);
    if args.quiet {
        return Ok(());
    }
    println!(
        "lbio on {}: {} requests, {:.1} ns per request (wall clock, includes the device)",
        args.device, args.requests, ns
    );
    if args.callgrind {
        let small = (args.requests / 10).max(1000);
        let large = small * 2;
        let a = callgrind_total(&args.device, small)?;
        let b = callgrind_total(&args.device, large)?;
        let per_request = (b.saturating_sub(a)) as f64 / (large - small) as f64;
        println!("lbio on {}: {:.0} instructions per request in user space (callgrind, {} vs {} requests)", args.device, per_request, small, large);
    }
    Ok(())
}

/// The request loop; returns mean wall-clock ns per request.
fn time_requests<D: Device>(dev: &D, requests: u64) -> Result<f64> {
    let config = QueueConfig {
        depth: 32,
        completion: CompletionMode::Poll,
        registered_buffers: true,
    };
    let mut q = BlockQueue::open(dev, config)?;
    let mut buf = Some(dev.arena().alloc(1)?);
    let slots = dev.info().capacity_bytes / BLOCK_SIZE as u64;
    let started = Instant::now();
    for i in 0..requests {
        let offset = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % slots) * BLOCK_SIZE as u64;
        let b = buf
            .take()
            .context("buffer returned by the previous request")?;
        let tag = q.stage(Op::Read, offset, [b]).map_err(|r| r.error)?;
        q.submit()?;
        while q.wait(1)? == 0 {}
        let popped = q.pop_done();
        debug_assert_eq!(popped, Some(tag));
        let mut done = q.finish(tag);
        done.result?;
        buf = done.bufs.pop();
    }
    Ok(started.elapsed().as_nanos() as f64 / requests.max(1) as f64)
}

/// Runs this binary's lbio loop under callgrind and returns the instruction total.
fn callgrind_total(device: &DeviceSpec, requests: u64) -> Result<u64> {
    let exe = std::env::current_exe().context("locate the aios binary")?;
    let out = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(exe)
        .args([
            "bench",
            "lbio",
            "--quiet",
            "--device",
            &device.to_string(),
            "--requests",
            &requests.to_string(),
        ])
        .output()
        .context("run valgrind (apt-get install valgrind)")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("callgrind run failed: {stderr}");
    }
    // Callgrind ends with a line like "==123== Collected : 456789".
    stderr
        .lines()
        .find_map(|l| l.split("Collected :").nth(1))
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("no instruction total in callgrind's output: {stderr}"))
}
