//! `aios bench`: measurements that put aios next to the kernel's own path, in one run.
//!
//! Methodology (the machine is a noisy 2-vCPU VM): every case of the matrix runs for a fixed time
//! per repetition; repetitions are interleaved (case A, B, C, then A, B, C again, rotated so no
//! case always runs first); ratios against the kernel path come from the same run.

pub mod case;
pub mod device;
pub mod lbio;
pub mod read;
pub mod report;
pub mod runner;
pub mod scratch;
