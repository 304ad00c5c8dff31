//! `aios crashtest --concurrent`: threads under load on one mount, a deadlock watchdog, and
//! power cuts taken while they run.
//!
//! # What it does
//! 1. `mke2fs` makes a 64 MiB image; our mount creates one directory per thread (`/t0`..)
//!    and syncs. The device is the emulated `nand` (volatile write cache: unflushed writes may
//!    be lost), on the virtual clock unless `--device` says otherwise.
//! 2. `threads` OS threads each run `ops` seeded actions ([`worker`]) in their own directory
//!    through their own `RwCtx`; they share allocation, the journal, group commit and the
//!    periodic commit. Each keeps its model and what its acknowledged syncs made durable.
//! 3. The calling thread is the monitor: it watches every thread's progress counter, and when
//!    none moved for `watchdog` it dumps what each thread was doing and fails the run (the
//!    stuck threads are left behind: a deadlock cannot be joined). At `crashes` seeded moments
//!    (by actions done over all threads) it reads every thread's acknowledged-op counter and
//!    sync floor, takes `EmuDevice::crash(seed)` (the image a power cut leaves at that
//!    instant; the threads keep running), then reads the counters again (ops begun by then).
//! 4. A checker thread recovers each crash image as it comes ([`recover::recover`]: recovery,
//!    a crash inside it and recovery again, our read-back of everything) and runs `e2fsck -fn`.
//! 5. After the run, each recovered tree is checked per thread against that thread's model
//!    ([`judge`]: a prefix holding everything acknowledged before the crash, tags, in-place
//!    bytes of `data=ordered`). Then the clean unmount's image: `e2fsck -fn` and the tree
//!    equal to the final models exactly.
//!
//! # Determinism
//! The op sequence of each thread and the crash moments are fixed by the seed; the interleaving
//! of threads is not, so a run cannot be replayed state for state. A violation names the crash
//! (index, seed, counters); an image that fails recovery or `e2fsck` is saved for inspection.
//!
//! | Module | What |
//! | --- | --- |
//! | `gen` | the seeded choice of each thread's actions |
//! | `worker` | one thread running its actions: model, log, durable bounds, open files |
//! | `judge` | the per-thread check of a recovered tree |
//! | `report` | what a run did, printed |

pub mod gen;
pub mod judge;
mod report;
pub mod worker;

pub use report::Report;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use aios_device_emu::{DiskImage, EmuConfig, EmuDevice};
use aios_fs::{DataMode, RwError, RwFs, RwOptions, RwStats};
use aios_journal::runtime::CommitOrder;

use super::recover::{self, Tree};
use super::states::splitmix;
use judge::{Counters, Judge};
use worker::{Board, ThreadLog, WorkerConfig};

/// The default device: flash-like with a volatile cache, time simulated (threads never spin
/// on the device clock, so a 2-core machine runs 4 workers and a checker).
pub const DEVICE_DEFAULT: &str = "nand,arena=32M,clock=virtual";
/// The image `mke2fs` makes.
pub const IMAGE_BYTES: u64 = 64 << 20;

/// How to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub data: DataMode,
    pub order: CommitOrder,
    pub seed: u64,
    pub threads: usize,
    /// Actions per thread (ops and reads).
    pub ops_per_thread: usize,
    pub crashes: usize,
    /// No progress for this long fails the run.
    pub watchdog: Duration,
    /// The emulated device (`aios_device_emu::spec`); its size is the image's.
    pub device: String,
    /// Self-test: every crash is checked against an image taken before any op, so states
    /// after acknowledged syncs must be reported.
    pub stale_images: bool,
    /// Self-test of the watchdog: `(thread, action)` at which that thread stops progressing.
    pub stall: Option<(usize, usize)>,
    /// Where images that fail recovery or `e2fsck` are saved (`None`: the temporary directory
    /// of the run, removed at its end).
    pub keep_dir: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            data: DataMode::Ordered,
            order: CommitOrder::Async,
            seed: 0,
            threads: 4,
            ops_per_thread: 10_000,
            crashes: 100,
            watchdog: Duration::from_secs(10),
            device: DEVICE_DEFAULT.into(),
            stale_images: false,
            stall: None,
            keep_dir: None,
        }
    }
}

impl Options {
    fn rw(&self) -> RwOptions {
        RwOptions {
            data: self.data,
            order: self.order,
            // The periodic commit runs beside the threads' syncs, as on a real mount.
            commit_interval: Some(Duration::from_secs(1)),
            // Writers and the commit thread write back beside the syncs.
            ..crate::campaign_rw()
        }
    }

    /// The flags that reproduce this run.
    pub fn flags(&self) -> String {
        let mode = match self.data {
            DataMode::Ordered => "ordered",
            DataMode::Journal => "journal",
        };
        let order = match self.order {
            CommitOrder::Sync => "sync",
            CommitOrder::Async => "async",
        };
        format!(
            "--concurrent --mode {mode} --order {order} --seed {} --threads {} --ops {} \
             --crashes {} --device {}",
            self.seed, self.threads, self.ops_per_thread, self.crashes, self.device
        )
    }
}

/// One crash taken mid-run.
struct Crash {
    index: usize,
    seed: u64,
    image: DiskImage,
    counters: Vec<Counters>,
}

/// A crash after recovery: its tree, or what failed.
struct Recovered {
    index: usize,
    seed: u64,
    counters: Vec<Counters>,
    tree: Result<Tree, String>,
    replayed: bool,
}

/// What the thread that owns the mount returns.
struct RunEnd {
    logs: Vec<ThreadLog>,
    stats: RwStats,
    unmount: Result<(), RwError>,
    elapsed: Duration,
}

/// Runs the whole test (see the module documentation). `Err` when the run could not be set
/// up or the watchdog fired (the message is its dump).
pub fn run(options: &Options) -> Result<Report, String> {
    let started = Instant::now();
    if options.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    let tmp = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let keep = options.keep_dir.clone().unwrap_or(tmp.path().to_path_buf());
    let (dev, fs) = setup(tmp.path(), options)?;
    let stale = if options.stale_images {
        Some(dev.crash(options.seed).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let board = Arc::new(Board::new(options.threads));
    let runner = spawn_run(fs, Arc::clone(&board), options);
    let (to_checker, from_monitor) = mpsc::channel::<Crash>();
    let checker = spawn_checker(
        from_monitor,
        options.rw(),
        tmp.path().join("crash.img"),
        keep,
    );

    let taken = monitor(&dev, &board, &runner, options, stale.as_ref(), &to_checker)?;
    drop(to_checker);
    let end = runner
        .join()
        .map_err(|_| "the thread owning the mount panicked".to_string())?;
    let recovered = checker
        .join()
        .map_err(|_| "the checker thread panicked".to_string())?;

    let mut report = Report {
        threads: options.threads,
        actions: end.logs.iter().map(|l| l.actions).collect(),
        ops_logged: end.logs.iter().map(|l| l.steps.len()).sum(),
        reads: end.logs.iter().map(|l| l.reads).sum(),
        cross_reads: end.logs.iter().map(|l| l.cross_reads).sum(),
        syncs_acked: end.logs.iter().map(|l| l.syncs_acked).sum(),
        stats: end.stats,
        crashes_taken: taken,
        run_elapsed: end.elapsed,
        ..Report::default()
    };
    for log in &end.logs {
        for f in &log.failures {
            report.violation(format!("during the run: {f}"));
        }
    }
    judge_crashes(&end.logs, recovered, options, &mut report);
    match end.unmount {
        Ok(()) => final_check(&dev, &end.logs, options, tmp.path(), &mut report),
        Err(e) => report.violation(format!("unmount: {e}")),
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// The image, the device on it, and the mount with one synced directory per thread.
fn setup(dir: &Path, options: &Options) -> Result<(EmuDevice, RwFs<EmuDevice>), String> {
    let path = dir.join("concurrent.img");
    let out = std::process::Command::new("mke2fs")
        .args(["-q", "-t", "ext4", "-F", "-b", "4096"])
        .arg(&path)
        .arg(format!("{}k", IMAGE_BYTES / 1024))
        .output()
        .map_err(|e| format!("run mke2fs (apt-get install e2fsprogs): {e}"))?;
    if !out.status.success() {
        return Err(format!("mke2fs: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let image = DiskImage::load(&path).map_err(|e| format!("load {}: {e}", path.display()))?;
    let config = EmuConfig::parse(&options.device).map_err(|e| format!("--device: {e}"))?;
    if !config.volatile_cache {
        return Err("--device: needs a volatile cache (else a crash loses nothing)".into());
    }
    let dev = EmuDevice::with_image(config, image).map_err(|e| e.to_string())?;
    let mut fs = RwFs::mount(dev.clone(), options.rw()).map_err(|e| format!("mount: {e}"))?;
    for t in 0..options.threads {
        fs.mkdir(worker::thread_dir(t), 0o755)
            .map_err(|e| format!("mkdir {}: {e}", worker::thread_dir(t)))?;
    }
    fs.sync().map_err(|e| format!("sync: {e}"))?;
    Ok((dev, fs))
}

/// The thread that owns the mount: runs the workers, then unmounts.
fn spawn_run(
    fs: RwFs<EmuDevice>,
    board: Arc<Board>,
    options: &Options,
) -> std::thread::JoinHandle<RunEnd> {
    let configs: Vec<WorkerConfig> = (0..options.threads)
        .map(|thread| WorkerConfig {
            thread,
            actions: options.ops_per_thread,
            seed: options.seed,
            data: options.data,
            stall_at: options.stall.filter(|s| s.0 == thread).map(|s| s.1),
        })
        .collect();
    std::thread::spawn(move || {
        let started = Instant::now();
        let shared = fs.shared();
        let logs = std::thread::scope(|s| {
            let handles: Vec<_> = configs
                .iter()
                .map(|cfg| {
                    let board = &board;
                    s.spawn(move || worker::work(shared, cfg, board))
                })
                .collect();
            handles
                .into_iter()
                .enumerate()
                .map(|(t, h)| {
                    h.join().unwrap_or_else(|_| ThreadLog {
                        thread: t,
                        failures: vec![format!("thread {t} panicked")],
                        ..ThreadLog::default()
                    })
                })
                .collect()
        });
        let stats = fs.stats();
        let (_, unmount) = fs.unmount();
        RunEnd {
            logs,
            stats,
            unmount,
            elapsed: started.elapsed(),
        }
    })
}

/// Recovers and fscks each crash as it arrives; saves the images that fail to `keep`.
fn spawn_checker(
    crashes: mpsc::Receiver<Crash>,
    rw: RwOptions,
    scratch: PathBuf,
    keep: PathBuf,
) -> std::thread::JoinHandle<Vec<Recovered>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        for c in crashes {
            let saved = keep.join(format!("concurrent-crash{}-{:#x}.img", c.index, c.seed));
            let failed_copy = c.image.try_clone().ok();
            let result = recover::recover(c.image, rw, c.seed, recover::RecoveryCrashes::Seeded)
                .and_then(|rv| {
                    recover::e2fsck(&rv.image, &scratch)?;
                    Ok(rv)
                });
            let (tree, replayed) = match result {
                Ok(rv) => (Ok(rv.tree), rv.replayed),
                Err(e) => {
                    let note = match failed_copy.map(|i| i.save(&saved)) {
                        Some(Ok(())) => format!(" (crash image saved as {})", saved.display()),
                        _ => String::new(),
                    };
                    (Err(format!("{e}{note}")), false)
                }
            };
            out.push(Recovered {
                index: c.index,
                seed: c.seed,
                counters: c.counters,
                tree,
                replayed,
            });
        }
        out
    })
}

/// Seeded crash moments: `crashes` counts of actions done (all threads), sorted, inside the
/// run.
fn crash_moments(options: &Options) -> Vec<usize> {
    let total = (options.threads * options.ops_per_thread).max(2) as u64;
    let mut x = splitmix(options.seed ^ 0x00C0_FFEE);
    let mut at: Vec<usize> = (0..options.crashes)
        .map(|_| {
            x = splitmix(x);
            1 + (x % (total - 1)) as usize
        })
        .collect();
    at.sort_unstable();
    at
}

/// Watches progress, takes the crashes; returns how many were taken. `Err`: the watchdog's dump.
fn monitor(
    dev: &EmuDevice,
    board: &Board,
    runner: &std::thread::JoinHandle<RunEnd>,
    options: &Options,
    stale: Option<&DiskImage>,
    to_checker: &mpsc::Sender<Crash>,
) -> Result<usize, String> {
    let moments = crash_moments(options);
    let mut next = 0;
    let mut last_total = usize::MAX;
    let mut last_change = Instant::now();
    while !runner.is_finished() {
        let total = board.actions_total();
        if total != last_total {
            (last_total, last_change) = (total, Instant::now());
        } else if last_change.elapsed() >= options.watchdog {
            return Err(stall_dump(board, runner, options));
        }
        while next < moments.len() && moments[next] <= total {
            let seed = splitmix(options.seed ^ (next as u64 + 1));
            let crash = take_crash(dev, board, stale, next, seed)?;
            // A closed channel means the checker died; its join reports why.
            let _ = to_checker.send(crash);
            next += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    Ok(next)
}

/// Counters, the crash image, counters again (see the module documentation).
fn take_crash(
    dev: &EmuDevice,
    board: &Board,
    stale: Option<&DiskImage>,
    index: usize,
    seed: u64,
) -> Result<Crash, String> {
    let acked = board.acked();
    let floors = board.floors();
    let image = match stale {
        Some(i) => i.try_clone(),
        None => dev.crash(seed),
    }
    .map_err(|e| format!("crash {index}: {e}"))?;
    let after = board.acked();
    let counters = (0..acked.len())
        .map(|t| Counters {
            acked: acked[t],
            floor: floors[t],
            // The op under way when the counter was read may have begun before the crash.
            started: after[t] + 1,
        })
        .collect();
    Ok(Crash {
        index,
        seed,
        image,
        counters,
    })
}

/// The watchdog's message: every thread's last action; stops the threads that can stop.
fn stall_dump(
    board: &Board,
    runner: &std::thread::JoinHandle<RunEnd>,
    options: &Options,
) -> String {
    let mut lines = vec![format!(
        "watchdog: no action finished for {:.1} s ({}); threads:",
        options.watchdog.as_secs_f64(),
        options.flags()
    )];
    for (t, p) in board.threads.iter().enumerate() {
        let doing = p.doing.lock().map(|d| d.clone()).unwrap_or_default();
        lines.push(format!(
            "  thread {t}: {} actions, {} ops acknowledged, {}: {doing}",
            p.actions.load(Ordering::Acquire),
            p.acked.load(Ordering::Acquire),
            if p.finished.load(Ordering::Acquire) {
                "finished"
            } else {
                "in"
            }
        ));
    }
    board.abort.store(true, Ordering::Release);
    // Threads that were only slow (or stalled on purpose) stop now; a deadlock stays behind.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !runner.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if !runner.is_finished() {
        lines.push("  (still stuck 2 s after the stop request: left running)".into());
    }
    lines.join("\n")
}

/// Checks every recovered crash per thread, in the order they were taken.
fn judge_crashes(
    logs: &[ThreadLog],
    mut recovered: Vec<Recovered>,
    options: &Options,
    report: &mut Report,
) {
    recovered.sort_by_key(|r| r.index);
    let ordered = options.data == DataMode::Ordered;
    let mut judges: Vec<Judge> = logs.iter().map(|l| Judge::new(l, ordered)).collect();
    for r in recovered {
        report.e2fsck_runs += usize::from(r.tree.is_ok());
        report.replayed += usize::from(r.replayed);
        let name = format!("crash {} (seed {:#x})", r.index, r.seed);
        let tree = match r.tree {
            Ok(t) => t,
            Err(e) => {
                report.violation(format!("{name}: {e}"));
                continue;
            }
        };
        if let Err(e) = only_thread_dirs(&tree, logs.len()) {
            report.violation(format!("{name}: {e}"));
        }
        let mut demanding = false;
        let mut matching = Vec::new();
        for (judge, &c) in judges.iter_mut().zip(&r.counters) {
            demanding |= judge.demands(c);
            match judge.prefixes(&tree, c) {
                Ok(m) => matching.push(m),
                Err(e) => report.violation(format!("{name}: {e}")),
            }
        }
        if matching.len() == logs.len() {
            match judge::cross_thread_order(logs, &matching) {
                Ok((_, demands)) => report.cross_thread_demands += demands,
                Err(e) => report.violation(format!("{name}: {e}")),
            }
        }
        report.crashes_checked += 1;
        report.crashes_demanding += usize::from(demanding);
    }
}

/// Nothing but the threads' directories (and what they hold) at the root.
fn only_thread_dirs(tree: &Tree, threads: usize) -> Result<(), String> {
    let dirs: Vec<String> = (0..threads).map(worker::thread_dir).collect();
    let stray: Vec<&String> = tree
        .keys()
        .filter(|k| {
            !dirs
                .iter()
                .any(|d| *k == d || k.starts_with(&format!("{d}/")))
        })
        .take(8)
        .collect();
    if stray.is_empty() {
        Ok(())
    } else {
        Err(format!("names outside the threads' directories: {stray:?}"))
    }
}

/// The clean unmount's image: `e2fsck -fn`, and every thread's directory is its final model.
fn final_check(
    dev: &EmuDevice,
    logs: &[ThreadLog],
    options: &Options,
    dir: &Path,
    report: &mut Report,
) {
    let image = match dev.durable_image() {
        Ok(i) => i,
        Err(e) => return report.violation(format!("final image: {e}")),
    };
    if let Err(e) = recover::e2fsck(&image, &dir.join("final.img")) {
        return report.violation(format!("final image: {e}"));
    }
    report.e2fsck_runs += 1;
    let tree = match recover::recover(image, options.rw(), 0, recover::RecoveryCrashes::Seeded) {
        Ok(rv) if rv.replayed => {
            return report.violation("final image: a clean unmount left a journal to replay".into())
        }
        Ok(rv) => rv.tree,
        Err(e) => return report.violation(format!("final image: {e}")),
    };
    if let Err(e) = only_thread_dirs(&tree, logs.len()) {
        report.violation(format!("final image: {e}"));
    }
    for log in logs {
        let n = log.steps.len();
        let all = Counters {
            acked: n,
            floor: n,
            started: n,
        };
        if let Err(e) = Judge::new(log, options.data == DataMode::Ordered).check(&tree, all) {
            report.violation(format!("final image: {e}"));
        }
    }
}
