//! `aios bench`: measurements that put aios next to the kernel's own path, in one run.
//!
//! Methodology (the machine is a noisy 2-vCPU VM): every case of the matrix runs for a fixed time
//! per repetition; repetitions are interleaved (case A, B, C, then A, B, C again, rotated so no
//! case always runs first); ratios against the kernel path come from the same run.
//!
//! | Module | What |
//! | --- | --- |
//! | [`device`] | `aios bench device`: raw random reads and writes per backend, next to the kernel's `pread`/`pwrite` |
//! | [`lbio`] | `aios bench lbio`: the block layer's CPU cost per request (ns, instructions under callgrind) |
//! | [`read`] | `aios bench read`: file reads in the vanilla and AIOS orders next to the kernel's buffered and O_DIRECT reads |
//! | [`fsync`] | `aios bench fsync`: durable writes in both commit orders next to the kernel's ext4 |
//! | [`mixed`] | `aios bench mixed`: readers beside appenders on one read-write mount, each alone and next to the kernel's ext4 |
//! | [`write`](mod@write) | `aios bench write`: buffered sequential write throughput (one fsync at the end) next to the kernel's ext4 |
//! | `target` | the write benchmarks' targets: aios's device and the kernel's mount of the same image (host, zram, emu), the root-only set-ups |
//! | [`case`], [`runner`] | the case matrix; threads behind a barrier, interleaved repetitions |
//! | [`report`] | tables and `--json` records |
//! | [`scratch`] | scratch images of real data for raw targets |
//!
//! Devices and sizes on the command line are parsed by [`aios_spec`]; images are made by
//! [`aios_fs::mkfs`]. The `aios` binary only parses the [`clap`] arguments defined here and calls
//! `run`.

pub mod case;
pub mod device;
pub mod fsync;
pub mod lbio;
pub mod mixed;
pub mod read;
pub mod report;
pub mod runner;
pub mod scratch;
pub(crate) mod target;
pub mod write;

/// Checks the arguments every benchmark shares: I/O sizes (multiples of 4096 up to 128 KiB) and a
/// positive number of repetitions and seconds.
pub fn check_run_args(bs: &[u64], reps: usize, seconds: f64) -> anyhow::Result<()> {
    for &bs in bs {
        if bs == 0
            || !bs.is_multiple_of(aios_device::BLOCK_SIZE as u64)
            || bs > aios_device::IO_BYTES_MAX as u64
        {
            anyhow::bail!("block size {bs}: must be a multiple of 4096 up to 128K");
        }
    }
    if reps == 0 || !seconds.is_finite() || seconds <= 0.0 {
        anyhow::bail!("--reps and --seconds must be positive");
    }
    Ok(())
}
