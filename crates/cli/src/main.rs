//! `aios`: the command line of the user-space Asynchronous I/O Stack, a thin front end: it parses
//! arguments, dispatches to the library that does the work and prints the outcome.
//!
//! | command | done by |
//! | --- | --- |
//! | `aios mkfs/info/ls/stat/cat/get/put/rm/mkdir/rmdir/mv/fsck` | [`aios_tools`] |
//! | `aios bench [device/lbio/read/fsync]` | [`aios_bench`] |
//! | `aios crashtest` | [`aios_crashtest`] |
//!
//! `aios bench` (no arguments) is the main job: the device benchmark (the emulated
//! ultra-low-latency device and an io_uring scratch image on this machine's disk, next to the
//! kernel's own path), then the file-read and durable-write benchmarks on their defaults.

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "aios", version, about = "A user-space Asynchronous I/O Stack")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make an ext4 image aios reads (runs mke2fs with the supported features).
    Mkfs {
        image: PathBuf,
        /// Size of a new image file.
        #[arg(long, default_value = "256M", value_parser = aios_spec::parse_size)]
        size: u64,
        /// Populate it from this directory (mke2fs -d).
        #[arg(short = 'd', long = "populate")]
        populate: Option<PathBuf>,
    },
    /// Superblock, groups and journal of an image.
    Info { image: PathBuf },
    /// List directories (or files) in an image, ls -l style.
    Ls { image: PathBuf, paths: Vec<String> },
    /// Inode details of paths in an image.
    Stat {
        image: PathBuf,
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Write files of an image to standard output.
    Cat {
        image: PathBuf,
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Copy one file out of an image.
    Get {
        image: PathBuf,
        path: String,
        dest: Option<PathBuf>,
    },
    /// Create DEST in an image (or replace a regular file's contents) from the local file LOCAL.
    Put {
        image: PathBuf,
        local: PathBuf,
        dest: String,
        #[command(flatten)]
        rw: RwArgs,
    },
    /// Remove files or symlinks from an image.
    Rm {
        image: PathBuf,
        #[arg(required = true)]
        paths: Vec<String>,
        #[command(flatten)]
        rw: RwArgs,
    },
    /// Create directories in an image (parents must exist).
    Mkdir {
        image: PathBuf,
        #[arg(required = true)]
        paths: Vec<String>,
        #[command(flatten)]
        rw: RwArgs,
    },
    /// Remove empty directories from an image.
    Rmdir {
        image: PathBuf,
        #[arg(required = true)]
        paths: Vec<String>,
        #[command(flatten)]
        rw: RwArgs,
    },
    /// Rename FROM to TO inside an image (atomically; replaces a file or an empty directory).
    Mv {
        image: PathBuf,
        from: String,
        to: String,
        #[command(flatten)]
        rw: RwArgs,
    },
    /// Check an image: read everything back through aios, then e2fsck -fn.
    Fsck { image: PathBuf },
    /// Crash-consistency campaign on the emulated device: every crash point and subset of
    /// unflushed writes of each workload, recovered and checked against a model.
    Crashtest(CrashtestArgs),
    /// Measure aios next to the kernel's own I/O path (without a subcommand: the device
    /// benchmark, then the file-read and durable-write benchmarks with their defaults).
    #[command(args_conflicts_with_subcommands = true)]
    Bench {
        #[command(subcommand)]
        what: Option<BenchCommand>,
        /// Without a subcommand: the device benchmark's options.
        #[command(flatten)]
        device: Box<aios_bench::device::DeviceArgs>,
    },
}

/// Options of the write commands.
#[derive(Debug, clap::Args)]
struct RwArgs {
    /// Commit order of each transaction: sync (vanilla ext4) or async (AIOS).
    #[arg(long, default_value = "async", value_parser = parse_order)]
    order: aios_journal::runtime::CommitOrder,
}

/// Options of `aios crashtest`.
#[derive(Debug, clap::Args)]
struct CrashtestArgs {
    /// Workload set: one-op (every op of the vocabulary, then a sync), two-op (a seeded
    /// sample of pairs), random (seeded workloads of many ops on 1-4 thread contexts).
    #[arg(long, default_value = "one-op")]
    workloads: String,
    /// two-op: pairs sampled; random: workloads.
    #[arg(long, default_value_t = 500)]
    count: usize,
    /// random: the most ops of a workload.
    #[arg(long, default_value_t = 200)]
    ops_max: usize,
    /// random: crash points per workload.
    #[arg(long, default_value_t = 20)]
    points: usize,
    /// Seed of the 2-op sample, the random workloads and the random subsets (with
    /// --concurrent: of the threads' actions and the crash moments).
    #[arg(long, default_value_t = 0, value_parser = parse_seed)]
    seed: u64,
    /// Repeat every set in every mode and order on fresh seeds for --minutes.
    #[arg(long)]
    soak: bool,
    /// With --soak: how long.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// The CI budget: every set in every mode and order, bounded, on all cores.
    #[arg(long)]
    ci: bool,
    /// data=ordered or data=journal.
    #[arg(long, default_value = "ordered", value_parser = parse_mode)]
    mode: aios_fs::DataMode,
    /// Commit order: sync (vanilla) or async (AIOS).
    #[arg(long, default_value = "async", value_parser = parse_order)]
    order: aios_journal::runtime::CommitOrder,
    /// Check exactly one crash state, as a violation prints it: SEED:WORKLOAD@POINT.
    #[arg(long)]
    replay: Option<String>,
    /// Run e2fsck -fn on every N-th distinct recovered image (1: every one, 0: none).
    #[arg(long, default_value_t = 1)]
    fsck_every: usize,
    /// Only workloads whose names contain one of these (comma-separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Self-test: the model believes every write put its first byte differently, so the
    /// campaign must report violations (and each replays).
    #[arg(long)]
    sabotage_model: bool,
    /// Self-test: plant a protocol bug (test-only), stop at the first violation.
    #[arg(long, value_parser = parse_plant)]
    plant: Option<aios_journal::runtime::PlantedBug>,
    /// The EIO sweep (--replay takes write|flush:N:once|sticky).
    #[arg(long)]
    eio: bool,
    /// Where recoveries are crashed and redone: seeded (one point and subset), dropped (and
    /// every event, all dropped), every (and all kept), every:N (and N seeded subsets);
    /// default dropped, --plant every:2.
    #[arg(long, value_parser = parse_recovery_crashes)]
    recovery_crashes: Option<aios_crashtest::RecoveryCrashes>,
    #[command(flatten)]
    concurrent: ConcurrentArgs,
}

/// Options of `aios crashtest --concurrent` (with `--seed`, `--mode`, `--order`).
#[derive(Debug, clap::Args)]
struct ConcurrentArgs {
    /// Threads under load on one mount, with a deadlock watchdog and crashes taken mid-run
    /// (--seed seeds their actions and the crash moments).
    #[arg(long)]
    concurrent: bool,
    /// --concurrent: worker threads.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// --concurrent: actions (ops and reads) per thread.
    #[arg(long, default_value_t = 10_000)]
    ops: usize,
    /// --concurrent: crash images taken while the threads run.
    #[arg(long, default_value_t = 100)]
    crashes: usize,
    /// --concurrent: seconds without progress after which the watchdog fails the run.
    #[arg(long, default_value_t = 10)]
    watchdog_secs: u64,
    /// --concurrent: the emulated device (needs a volatile cache).
    #[arg(long, default_value = aios_crashtest::concurrent::DEVICE_DEFAULT)]
    device: String,
}

/// `aios crashtest --ci`: the bounded campaign of every set (see `crashtest::suite`).
fn crashtest_ci() -> Result<()> {
    use aios_crashtest::suite;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let outcome = suite::run_jobs(suite::jobs(), workers, &mut std::io::stdout());
    let total = &outcome.total;
    println!(
        "crashtest --ci: {} workloads, {} ops, {} crash states and EIO runs ({} after an \
         acknowledged sync), {} distinct images, {} e2fsck runs, {:.1} s on {workers} \
         workers, {:.0} states/s, {} violations",
        total.workloads,
        total.ops,
        total.states,
        total.acked_states,
        total.distinct_images,
        total.e2fsck_runs,
        total.elapsed.as_secs_f64(),
        total.states_per_second(),
        total.violations_total
    );
    let caught = outcome
        .planted
        .iter()
        .filter(|(_, t)| t.is_some_and(|t| t <= suite::PLANT_FIRST_VIOLATION_MAX))
        .count();
    let slowest = outcome.planted.iter().filter_map(|(_, t)| *t).max();
    println!(
        "planted bugs: {caught} of {} caught within {} s (slowest {:.1} s)",
        outcome.planted.len(),
        suite::PLANT_FIRST_VIOLATION_MAX.as_secs(),
        slowest.map_or(0.0, |t| t.as_secs_f64())
    );
    if outcome.failures() > 0 {
        anyhow::bail!("crashtest --ci: {} failures", outcome.failures());
    }
    Ok(())
}

fn parse_seed(s: &str) -> Result<u64, String> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("{s}: {e}"))
}

fn parse_recovery_crashes(s: &str) -> Result<aios_crashtest::RecoveryCrashes, String> {
    use aios_crashtest::RecoveryCrashes;
    let every = |all_kept, seeded_subsets| RecoveryCrashes::EveryPoint {
        all_kept,
        seeded_subsets,
    };
    match s.split_once(':') {
        _ if s == "seeded" => Ok(RecoveryCrashes::Seeded),
        _ if s == "dropped" => Ok(every(false, 0)),
        _ if s == "every" => Ok(every(true, 0)),
        Some(("every", n)) => n
            .parse()
            .map(|n| every(true, n))
            .map_err(|_| format!("{s}: expected seeded, dropped, every or every:N")),
        _ => Err(format!("{s}: expected seeded, dropped, every or every:N")),
    }
}

fn parse_plant(s: &str) -> Result<aios_journal::runtime::PlantedBug, String> {
    aios_journal::runtime::PlantedBug::parse(s).ok_or_else(|| {
        let names: Vec<&str> = aios_journal::runtime::PlantedBug::ALL
            .iter()
            .map(|b| b.name())
            .collect();
        format!("{s}: expected one of {}", names.join(", "))
    })
}

fn parse_mode(s: &str) -> Result<aios_fs::DataMode, String> {
    match s {
        "ordered" => Ok(aios_fs::DataMode::Ordered),
        "journal" => Ok(aios_fs::DataMode::Journal),
        other => Err(format!("{other}: expected ordered or journal")),
    }
}

fn crashtest(args: CrashtestArgs) -> Result<()> {
    use aios_crashtest as crashtest;
    if args.ci {
        return crashtest_ci();
    }
    if args.concurrent.concurrent {
        return crashtest_concurrent(&args);
    }
    let set = match args.workloads.as_str() {
        "one-op" => crashtest::WorkloadSet::OneOp,
        "two-op" => crashtest::WorkloadSet::TwoOp { count: args.count },
        "random" => crashtest::WorkloadSet::Random {
            count: args.count,
            ops_max: args.ops_max,
            points: args.points,
        },
        other => anyhow::bail!("--workloads {other}: expected one-op, two-op or random"),
    };
    let options = crashtest::Options {
        set,
        data: args.mode,
        order: args.order,
        seed: args.seed,
        fsck_every: args.fsck_every,
        only: args.only,
        sabotage_model: args.sabotage_model,
        ..crashtest::Options::default()
    };
    let mut options = match args.plant {
        Some(bug) => options.planted(bug),
        None => options,
    };
    if let Some(c) = args.recovery_crashes {
        options.recovery_crashes = c;
    }
    if args.soak && args.replay.is_none() {
        let report = crashtest::soak::soak(&options, args.minutes, &mut std::io::stdout().lock())
            .map_err(|e| anyhow::anyhow!("crashtest --soak: {e}"))?;
        if report.violations_total > 0 {
            anyhow::bail!("crashtest --soak: {} violations", report.violations_total);
        }
        return Ok(());
    }
    // Bug (h) needs a failing write: only the EIO sweep exposes it.
    let eio =
        args.eio || args.plant == Some(aios_journal::runtime::PlantedBug::CleanAfterFailedWrite);
    let violations = if eio {
        let report = match &args.replay {
            Some(spec) => crashtest::eio::replay_one(&options, spec),
            None => crashtest::eio::run(&options),
        }
        .map_err(|e| anyhow::anyhow!("crashtest --eio: {e}"))?;
        report.write_to(&mut std::io::stdout().lock(), &options)?;
        report.violations_total
    } else {
        let report = match &args.replay {
            Some(spec) => crashtest::replay_one(&options, spec),
            None => crashtest::run(&options),
        }
        .map_err(|e| anyhow::anyhow!("crashtest: {e}"))?;
        report.write_to(&mut std::io::stdout().lock(), &options)?;
        report.violations_total
    };
    if violations > 0 {
        anyhow::bail!("crashtest: {violations} violations");
    }
    Ok(())
}

fn crashtest_concurrent(args: &CrashtestArgs) -> Result<()> {
    use aios_crashtest::concurrent;
    let c = &args.concurrent;
    let options = concurrent::Options {
        data: args.mode,
        order: args.order,
        seed: args.seed,
        threads: c.threads,
        ops_per_thread: c.ops,
        crashes: c.crashes,
        watchdog: std::time::Duration::from_secs(c.watchdog_secs),
        device: c.device.clone(),
        keep_dir: Some(std::env::temp_dir()),
        ..concurrent::Options::default()
    };
    let report = concurrent::run(&options).map_err(|e| anyhow::anyhow!("crashtest: {e}"))?;
    report.write_to(&mut std::io::stdout().lock(), &options)?;
    if report.violations_total > 0 {
        anyhow::bail!("crashtest: {} violations", report.violations_total);
    }
    Ok(())
}

fn parse_order(s: &str) -> Result<aios_journal::runtime::CommitOrder, String> {
    match s {
        "sync" => Ok(aios_journal::runtime::CommitOrder::Sync),
        "async" => Ok(aios_journal::runtime::CommitOrder::Async),
        other => Err(format!("{other}: expected sync or async")),
    }
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Raw random reads and writes: latency (mean, p50, p99, p99.9) and IOPS.
    Device(aios_bench::device::DeviceArgs),
    /// The block layer's CPU cost per request (ns and, with --callgrind, instructions).
    Lbio(aios_bench::lbio::LbioArgs),
    /// Random file reads: aios sync/async/async+poll on an ext4 image next to the kernel's
    /// buffered and O_DIRECT pread of the same bytes; cold and hot cache.
    Read(aios_bench::read::ReadArgs),
    /// Durable writes (write + fsync), one thread: aios sync/async commit order through its
    /// read-write mount next to the kernel's pwrite + fsync/fdatasync; append and overwrite.
    Fsync(aios_bench::fsync::FsyncArgs),
    /// Readers of a cold file beside appenders (write + fsync) on one read-write mount, each
    /// alone and mixed, next to the kernel's ext4 on the same device path.
    Mixed(aios_bench::mixed::MixedArgs),
    /// Buffered sequential write throughput: one new file written in --bs writes, one fsync at
    /// the end; aios sync/async through its read-write mount next to the kernel's ext4 on the
    /// same device path (MiB/s, ratio to the kernel).
    Write(aios_bench::write::WriteArgs),
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A closed pipe (`aios cat ... | head`) is the reader's choice, not a failure.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            // The whole chain on one line: what was being done, down to the root cause.
            eprintln!("aios: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Mkfs {
            image,
            size,
            populate,
        } => aios_tools::mkfs(&image, size, populate.as_deref()),
        Command::Info { image } => aios_tools::info(&image),
        Command::Ls { image, paths } => aios_tools::ls(&image, &paths),
        Command::Stat { image, paths } => aios_tools::stat(&image, &paths),
        Command::Cat { image, paths } => aios_tools::cat(&image, &paths),
        Command::Get { image, path, dest } => aios_tools::get(&image, &path, dest.as_deref()),
        Command::Put {
            image,
            local,
            dest,
            rw,
        } => aios_tools::put(&image, &local, &dest, rw.order),
        Command::Rm { image, paths, rw } => aios_tools::rm(&image, &paths, rw.order),
        Command::Mkdir { image, paths, rw } => aios_tools::mkdir(&image, &paths, rw.order),
        Command::Rmdir { image, paths, rw } => aios_tools::rmdir(&image, &paths, rw.order),
        Command::Mv {
            image,
            from,
            to,
            rw,
        } => aios_tools::mv(&image, &from, &to, rw.order),
        Command::Fsck { image } => aios_tools::fsck(&image),
        Command::Crashtest(args) => crashtest(args),
        Command::Bench { what, device } => match what {
            // The main job: the device benchmark (with the given options), then the file-read
            // and the durable-write benchmarks on their defaults.
            None => {
                aios_bench::device::run(*device)?;
                println!();
                aios_bench::read::run(aios_bench::read::ReadArgs::defaults())?;
                println!();
                aios_bench::fsync::run(aios_bench::fsync::FsyncArgs::defaults()).map(drop)
            }
            Some(BenchCommand::Device(args)) => aios_bench::device::run(args).map(drop),
            Some(BenchCommand::Lbio(args)) => aios_bench::lbio::run(&args),
            Some(BenchCommand::Read(args)) => aios_bench::read::run(args).map(drop),
            Some(BenchCommand::Fsync(args)) => aios_bench::fsync::run(args).map(drop),
            Some(BenchCommand::Mixed(args)) => aios_bench::mixed::run(args).map(drop),
            Some(BenchCommand::Write(args)) => aios_bench::write::run(args).map(drop),
        },
    }
}
