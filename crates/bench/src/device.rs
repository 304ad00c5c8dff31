//! `aios bench device`: raw random reads and writes through aios and through the kernel.

use super::case::{Case, Stack, Workload};
use super::report::{self, Record};
use super::runner::{self, Run, Sample};
use super::scratch;
use aios_device::{CompletionMode, Device};
use aios_spec::size::parse_size;
use aios_spec::with_device;
use aios_spec::{DeviceSpec, OpenDevice};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The scratch image used when no device is named.
pub const DEFAULT_SCRATCH: &str = "aios-bench.img";

#[derive(Debug, Clone, clap::Args)]
pub struct DeviceArgs {
    /// Device under test, repeatable: uring:PATH, psync:PATH, emu:PRESET[,opt=val], null.
    /// A missing regular file is created as a scratch image of --scratch-size random bytes.
    /// Default: emu:ull and uring:aios-bench.img.
    #[arg(long = "device", short = 'd')]
    pub devices: Vec<DeviceSpec>,
    #[arg(long, value_delimiter = ',', default_value = "randread,randwrite")]
    pub workloads: Vec<Workload>,
    /// I/O sizes, 4k to 128k.
    #[arg(long, value_delimiter = ',', default_value = "4k,128k", value_parser = parse_size)]
    pub bs: Vec<u64>,
    /// Thread counts, each thread with its own queue.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub threads: Vec<usize>,
    /// Queue depths per thread (the kernel's pread path runs at QD1 only).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub qd: Vec<u16>,
    /// Measured seconds per case and repetition.
    #[arg(long, default_value = "1.0")]
    pub seconds: f64,
    /// Repetitions, interleaved across cases.
    #[arg(long, default_value = "3")]
    pub reps: usize,
    /// Which aios modes to run: irq, poll, irq-unreg, poll-unreg.
    #[arg(long, value_delimiter = ',', default_value = "irq,poll,irq-unreg")]
    pub modes: Vec<String>,
    /// Leave out the kernel's own pread path.
    #[arg(long)]
    pub no_kernel: bool,
    /// Size of scratch images created for missing files.
    #[arg(long, default_value = "4G", value_parser = parse_size)]
    pub scratch_size: u64,
    /// Also write the results as JSON, one record per case.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn parse_mode(text: &str) -> Result<Stack> {
    let (completion, unreg) = match text {
        "irq" => (CompletionMode::Interrupt, false),
        "poll" => (CompletionMode::Poll, false),
        "irq-unreg" => (CompletionMode::Interrupt, true),
        "poll-unreg" => (CompletionMode::Poll, true),
        _ => bail!("unknown mode {text:?} (expected irq, poll, irq-unreg or poll-unreg)"),
    };
    Ok(Stack::Aios {
        completion,
        registered_buffers: !unreg,
    })
}

/// Stacks worth running on a device: the emulated and null devices complete by spinning
/// whatever the mode, and have no buffer registration, so one aios mode says it all.
fn stacks_for(spec: &DeviceSpec, args: &DeviceArgs) -> Result<Vec<Stack>> {
    let mut stacks = Vec::new();
    match spec {
        DeviceSpec::Emu(_) | DeviceSpec::Null => stacks.push(parse_mode("poll")?),
        DeviceSpec::Psync(_) => stacks.push(Stack::AiosSync),
        DeviceSpec::Uring(_) => {
            for m in &args.modes {
                stacks.push(parse_mode(m)?);
            }
        }
    }
    if spec.kernel_path().is_some() && !args.no_kernel {
        stacks.push(Stack::KernelPread);
    }
    Ok(stacks)
}

fn validate(args: &DeviceArgs) -> Result<()> {
    super::check_run_args(&args.bs, args.reps, args.seconds)?;
    if args.threads.iter().any(|&t| t == 0 || t > 64) || args.qd.iter().any(|&q| q == 0 || q > 256)
    {
        bail!("threads must be 1..=64 and qd 1..=256");
    }
    Ok(())
}

/// Runs the device benchmark and prints the table; returns the records.
pub fn run(mut args: DeviceArgs) -> Result<Vec<Record>> {
    validate(&args)?;
    if args.devices.is_empty() {
        args.devices = vec![
            DeviceSpec::Emu("ull".into()),
            DeviceSpec::Uring(DEFAULT_SCRATCH.into()),
        ];
    }
    let mut opened = Vec::new();
    for spec in &args.devices {
        if let Some(path) = spec.kernel_path() {
            // A user's existing file is never rewritten; our own default scratch image is
            // regrown when it is smaller than asked.
            if !path.exists() || path == Path::new(DEFAULT_SCRATCH) {
                scratch::ensure(path, args.scratch_size)?;
            }
        }
        opened.push(spec.open().with_context(|| format!("open device {spec}"))?);
    }
    let cases = matrix(&args)?;
    let mut samples: Vec<Vec<Sample>> = cases.iter().map(|_| Vec::new()).collect();
    let progress = progress_bar((cases.len() * args.reps) as u64);
    let duration = Duration::from_secs_f64(args.seconds);
    let warmup = duration.mul_f64(0.1).max(Duration::from_millis(20));
    for rep in 0..args.reps {
        for k in 0..cases.len() {
            // Rotate the order each repetition so no case always runs first.
            let i = (k + rep * 7) % cases.len();
            let case = &cases[i];
            progress.set_message(describe(&args.devices[case.device], case));
            let run = Run {
                warmup,
                duration,
                seed: ((rep as u64) << 32) | i as u64,
            };
            let sample = run_case(&args.devices[case.device], &opened[case.device], case, run)
                .with_context(|| describe(&args.devices[case.device], case))?;
            samples[i].push(sample);
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    let mut records: Vec<Record> = cases
        .iter()
        .zip(&samples)
        .map(|(case, s)| {
            let device_time = device_time_ns(&opened[case.device], case);
            report::record(case, &args.devices[case.device].to_string(), s, device_time)
        })
        .collect();
    report::compare_with_kernel(&mut records);
    print!("{}", report::table(&records));
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&records)?;
        std::fs::write(path, json).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(records)
}

fn matrix(args: &DeviceArgs) -> Result<Vec<Case>> {
    let mut cases = Vec::new();
    for (device, spec) in args.devices.iter().enumerate() {
        for stack in stacks_for(spec, args)? {
            for &workload in &args.workloads {
                for &bs_bytes in &args.bs {
                    for &threads in &args.threads {
                        for &qd in &args.qd {
                            if stack == Stack::KernelPread && qd != 1 {
                                continue;
                            }
                            cases.push(Case {
                                device,
                                stack,
                                workload,
                                bs_bytes,
                                threads,
                                qd,
                            });
                        }
                    }
                }
            }
        }
    }
    Ok(cases)
}

fn run_case(spec: &DeviceSpec, dev: &OpenDevice, case: &Case, run: Run) -> Result<Sample> {
    match case.stack {
        Stack::KernelPread => {
            let path = spec
                .kernel_path()
                .context("kernel path needs a file or block device")?;
            let capacity = with_device!(dev, d => d.info().capacity_bytes);
            runner::run_kernel(path, capacity, case, run)
        }
        Stack::Aios { .. } | Stack::AiosSync => {
            with_device!(dev, d => runner::run_aios(d, case, run))
        }
    }
}

/// The modelled device time of one command of this case, for emulated devices.
fn device_time_ns(dev: &OpenDevice, case: &Case) -> Option<u64> {
    DeviceSpec::modelled_ns(dev, runner::op_of(case.workload), case.bs_bytes)
}

fn describe(spec: &DeviceSpec, case: &Case) -> String {
    format!(
        "{spec} {} {} {} bs={} threads={} qd={}",
        case.stack.stack_name(),
        case.stack.mode_name(),
        case.workload.name(),
        aios_spec::size::show_size(case.bs_bytes),
        case.threads,
        case.qd
    )
}

pub(crate) fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if std::io::stderr().is_terminal() && std::env::var_os("CI").is_none() {
        bar.set_draw_target(ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed_precise} {msg}")
        {
            bar.set_style(style);
        }
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar
}
