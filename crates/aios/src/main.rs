//! `aios`: the command line of the user-space Asynchronous I/O Stack.
//!
//! `aios bench` (no arguments) runs the default device benchmark: the emulated ultra-low-latency
//! device and an io_uring scratch image on this machine's disk, next to the kernel's own path.

mod bench;
mod spec;
mod units;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "aios", version, about = "A user-space Asynchronous I/O Stack")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure aios next to the kernel's own I/O path (default: the device benchmark).
    #[command(args_conflicts_with_subcommands = true)]
    Bench {
        #[command(subcommand)]
        what: Option<BenchCommand>,
        /// Without a subcommand: the device benchmark's options.
        #[command(flatten)]
        device: bench::device::DeviceArgs,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Raw random reads and writes: latency (mean, p50, p99, p99.9) and IOPS.
    Device(bench::device::DeviceArgs),
    /// The block layer's CPU cost per request (ns and, with --callgrind, instructions).
    Lbio(bench::lbio::LbioArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Bench { what, device } => match what {
            None => bench::device::run(device).map(drop),
            Some(BenchCommand::Device(args)) => bench::device::run(args).map(drop),
            Some(BenchCommand::Lbio(args)) => bench::lbio::run(&args),
        },
    }
}
