//! `aios bench`: measurements that put aios next to the kernel's own path, in one run.
//!
//! Methodology (the machine is a noisy 2-vCPU VM): every case of the matrix runs for a fixed time
//! per repetition; repetitions are interleaved (case A, B, C, then A, B, C again, rotated so no
//! case always runs first); ratios against the kernel path come from the same run.

pub mod case;
pub mod device;
pub mod fsync;
pub mod lbio;
pub mod read;
pub mod report;
pub mod runner;
pub mod scratch;

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
