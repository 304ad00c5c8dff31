//! `aios crashtest --eio`: the EIO sweep. A fixed 50-operation workload runs once cleanly to
//! count its device writes and flushes; then, for each of them, it runs again with that command
//! failing with `EIO`, once and sticky (every later write, or flush, failing too).
//!
//! # The checks of one run
//! 1. **No false durability**: the device's durable image at the end (every unflushed write
//!    dropped) is recovered; every op acknowledged by a sync that returned `Ok` is there byte for
//!    byte, as [`super::check::check_state`] rules (the failed ops changed nothing: the model
//!    applies only the ops that returned `Ok`; no op of the workload grows a transaction past
//!    its limits, the one way an op is applied and still fails).
//! 2. **Read-only after a failure**: once an injected write or flush failed, the mount is
//!    read-only by the end of the op that issued it, and every later op returns
//!    [`RwError::ReadOnly`] (no later `Ok`, so nothing is silently lost); unmount fails too.
//! 3. **Clean image**: recovery (crashed once inside and redone), our fsck walk, `e2fsck -fn`.
//!
//! # Invariants
//! Deterministic: the same options give the same runs (virtual clock, one thread, fault
//! counting in submission order). A run is named `write:N:once` (or `flush`, `sticky`) and
//! [`replay_one`] reruns it.

use std::path::Path;
use std::time::{Duration, Instant};

use aios_device::{Device, FaultPlan, OpFilter};
use aios_device_emu::{EmuConfig, EmuDevice};
use aios_fs::{DataMode, RwError, RwFs};

use super::check;
use super::model::Op;
use super::recover::RecoveryCrashes;
use super::workload::{self, w, Prepared, Recording, EMU_RECORD};
use super::write_violations;
use super::{check_image, Options};

/// Ops of the sweep's workload.
pub const EIO_OPS: usize = 50;

/// Which command fails in one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// Writes or flushes.
    pub ops: OpFilter,
    /// The n-th of them after mount (from 0).
    pub index: u64,
    /// Every later one fails too.
    pub sticky: bool,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.ops == OpFilter::Flushes {
            "flush"
        } else {
            "write"
        };
        let p = if self.sticky { "sticky" } else { "once" };
        write!(f, "{kind}:{}:{p}", self.index)
    }
}

/// Parses `write:N:once` (see [`Fault`]'s display).
pub fn parse_fault(s: &str) -> Result<Fault, String> {
    let bad = || format!("{s}: expected write|flush:N:once|sticky");
    let mut parts = s.split(':');
    let ops = match parts.next() {
        Some("write") => OpFilter::Writes,
        Some("flush") => OpFilter::Flushes,
        _ => return Err(bad()),
    };
    let index = parts.next().and_then(|n| n.parse().ok()).ok_or_else(bad)?;
    let sticky = match parts.next() {
        Some("once") => false,
        Some("sticky") => true,
        _ => return Err(bad()),
    };
    Ok(Fault { ops, index, sticky })
}

/// What a sweep did.
#[derive(Debug, Default)]
pub struct EioReport {
    /// Writes and flushes of the clean run (after mount, unmount included).
    pub writes: u64,
    pub flushes: u64,
    /// Runs with a fault (each once and sticky per I/O swept).
    pub runs: usize,
    /// Runs in which the injected command was reached and failed.
    pub fired: usize,
    /// Of those, runs whose recovery replayed a journal.
    pub replayed: usize,
    pub e2fsck_runs: usize,
    pub violations_total: usize,
    /// The first few, each with its replay command.
    pub violations: Vec<String>,
    pub elapsed: Duration,
    pub first_violation: Option<Duration>,
}

impl EioReport {
    /// The report: counts, time, every kept violation.
    pub fn write_to(
        &self,
        out: &mut impl std::io::Write,
        options: &Options,
    ) -> std::io::Result<()> {
        writeln!(
            out,
            "crashtest --eio ({}): {EIO_OPS} ops, {} writes and {} flushes swept, {} runs ({} \
             reached the fault, {} replayed a journal), e2fsck -fn on {}, {:.1} s",
            options.flags(),
            self.writes,
            self.flushes,
            self.runs,
            self.fired,
            self.replayed,
            self.e2fsck_runs,
            self.elapsed.as_secs_f64()
        )?;
        write_violations(
            out,
            self.violations_total,
            self.first_violation,
            &self.violations,
        )
    }
}

/// Kept in full; the rest are counted.
const VIOLATIONS_KEPT: usize = 8;

/// The sweep's 50 ops over the prepared image: every kind of change, each followed soon by a
/// sync (fsync, fdatasync of overwrites, i.e. data-only syncs, and of appends, sync), a second
/// fdatasync with nothing new (op 9), renames over a file, truncates down and up. Offsets and
/// lengths are whole 32-byte records (the tag check reads a partial record as torn).
pub fn workload() -> Vec<Op> {
    let c = |p: &str| Op::Create(p.into());
    let fsync = |p: &str| Op::Fsync(p.into());
    let fdatasync = |p: &str| Op::Fdatasync(p.into());
    let ops = vec![
        c("/e0"),
        w("/e0", 0, 8192, 10),
        fsync("/e0"),
        c("/e1"),
        w("/e1", 0, 4096, 11),
        w("/e0", 8192, 4096, 12),
        fdatasync("/e0"),
        w("/e0", 0, 4096, 13),
        fdatasync("/e0"),
        fdatasync("/e0"),
        w("/foo", 0, 4096, 14),
        fsync("/foo"),
        Op::Rename("/e1".into(), "/A/e1".into()),
        fsync("/A"),
        Op::Truncate("/e0".into(), 6016),
        fsync("/e0"),
        c("/e2"),
        w("/e2", 0, 12_288, 15),
        Op::Sync,
        Op::Unlink("/A/bar".into()),
        fsync("/A"),
        w("/e2", 4096, 4096, 16),
        fdatasync("/e2"),
        fsync("/e2"),
        w("/A/e1", 4096, 4992, 17),
        fdatasync("/A/e1"),
        Op::Truncate("/e2".into(), 0),
        w("/e2", 0, 4096, 18),
        fsync("/e2"),
        Op::Rename("/e0".into(), "/B/e0".into()),
        Op::Sync,
        w("/B/e0", 0, 2048, 19),
        fdatasync("/B/e0"),
        Op::Unlink("/A/e1".into()),
        fsync("/A"),
        c("/e3"),
        w("/e3", 0, 20_000, 20),
        fdatasync("/e3"),
        w("/e3", 96, 320, 21),
        fsync("/e3"),
        Op::Rename("/e3".into(), "/e2".into()),
        fsync("/e2"),
        w("/e2", 20_000, 4096, 22),
        fdatasync("/e2"),
        Op::Truncate("/foo".into(), 4096),
        fsync("/foo"),
        w("/B/e0", 6016, 3008, 23),
        fsync("/B/e0"),
        Op::Unlink("/e2".into()),
        Op::Sync,
    ];
    debug_assert_eq!(ops.len(), EIO_OPS);
    ops
}

/// Runs the sweep (bounded by `options.stride` over the I/O indexes, `e2fsck` on every
/// `options.fsck_every`-th run).
pub fn run(options: &Options) -> Result<EioReport, String> {
    sweep(options, None)
}

/// Reruns exactly one fault (`write:N:once` ...).
pub fn replay_one(options: &Options, spec: &str) -> Result<EioReport, String> {
    sweep(options, Some(parse_fault(spec)?))
}

fn sweep(options: &Options, one: Option<Fault>) -> Result<EioReport, String> {
    let started = Instant::now();
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let prepared = workload::prepare(dir.path(), options.rw())?;
    let ops = workload();
    let mut report = EioReport::default();
    // The clean run: counts, and a run that must pass every check itself.
    let clean = run_one(&prepared, &ops, options, None, None)?;
    if let Some(v) = clean.violation() {
        return Err(format!("the run without a fault fails: {v}"));
    }
    let counts = clean.counts;
    report.writes = counts.first().copied().unwrap_or(0);
    report.flushes = counts.get(1).copied().unwrap_or(0);
    let faults: Vec<Fault> = match one {
        Some(f) => vec![f],
        None => [
            (OpFilter::Writes, report.writes),
            (OpFilter::Flushes, report.flushes),
        ]
        .into_iter()
        .flat_map(|(ops, n)| (0..n).map(move |index| (ops, index)))
        .enumerate()
        .filter(|(i, _)| options.stride.is_none_or(|(n, r)| i % n.max(1) == r))
        .flat_map(|(_, (ops, index))| [false, true].map(|sticky| Fault { ops, index, sticky }))
        .collect(),
    };
    for fault in faults {
        if options.stop_at_first && report.violations_total > 0 {
            break;
        }
        let fsck = options.fsck_every > 0 && report.runs.is_multiple_of(options.fsck_every);
        report.runs += 1;
        report.e2fsck_runs += usize::from(fsck);
        let out = run_one(
            &prepared,
            &ops,
            options,
            Some(fault),
            fsck.then_some(dir.path()),
        )
        .unwrap_or_else(|e| RunOutcome {
            image: Some(e),
            ..RunOutcome::default()
        });
        report.fired += usize::from(out.fired);
        report.replayed += usize::from(out.replayed);
        if let Some(what) = out.violation() {
            report.violations_total += 1;
            report.first_violation.get_or_insert(started.elapsed());
            if report.violations.len() < VIOLATIONS_KEPT {
                report.violations.push(format!(
                    "{fault}: {what}\n  replay: aios crashtest --eio {} --replay {fault}",
                    options.flags()
                ));
            }
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// What one run found.
#[derive(Debug, Default)]
struct RunOutcome {
    /// Writes and flushes after mount (without a fault).
    counts: Vec<u64>,
    fired: bool,
    replayed: bool,
    /// The first failure of check 2 (read-only), then of checks 1 and 3 (the durable image).
    read_only: Option<String>,
    image: Option<String>,
}

impl RunOutcome {
    /// Every failed check of the run, in one message.
    fn violation(&self) -> Option<String> {
        match (&self.read_only, &self.image) {
            (Some(a), Some(b)) => Some(format!("{a}\n  and {b}")),
            (a, b) => a.clone().or_else(|| b.clone()),
        }
    }
}

/// Whether `op` can succeed on `model` (the ops that returned `Ok` so far): a sync needs its
/// path, other ops what the model checks. An op that cannot may fail with its own error
/// (e.g. not found) after the mount went read-only.
fn valid(model: &super::model::Model, op: &Op) -> bool {
    match op {
        Op::Fsync(p) | Op::Fdatasync(p) => p == "/" || model.get(p).is_some(),
        _ => model.clone().apply(op).is_ok(),
    }
}

/// One run with `fault` (none: counting), then the three checks (see the module doc).
fn run_one(
    p: &Prepared,
    ops: &[Op],
    options: &Options,
    fault: Option<Fault>,
    e2fsck_dir: Option<&Path>,
) -> Result<RunOutcome, String> {
    let config = EmuConfig::parse(EMU_RECORD).map_err(|e| e.to_string())?;
    let image = p.image.try_clone().map_err(|e| e.to_string())?;
    let dev = EmuDevice::with_image(config, image).map_err(|e| e.to_string())?;
    let events = |dev: &EmuDevice| dev.log().map(|l| l.events().len()).unwrap_or(0);
    let fs = RwFs::mount(dev.clone(), options.rw()).map_err(|e| format!("mount: {e}"))?;
    let mut ctx = fs
        .shared()
        .ctx()
        .map_err(|e| format!("thread context: {e}"))?;
    let plan = match fault {
        Some(f) if f.sticky => FaultPlan::nth(f.index, f.ops).sticky(),
        Some(f) => FaultPlan::nth(f.index, f.ops),
        // Rules that never fire, to count writes and flushes.
        None => FaultPlan {
            rules: [OpFilter::Writes, OpFilter::Flushes]
                .into_iter()
                .flat_map(|o| FaultPlan::nth(u64::MAX, o).rules)
                .collect(),
        },
    };
    dev.faults().arm(plan);
    let mut model = p.model.clone();
    let mut rec = Recording {
        log: dev.log().map_err(|e| e.to_string())?,
        acked: Vec::new(),
        unmounted: usize::MAX,
        states: vec![model.clone()],
        effects: Vec::new(),
        tids: Vec::new(),
        journal_blocks: 0,
        log_blocks: 0,
        writebacks: 0,
        metadata_evictions: 0,
    };
    let mut done_ops = Vec::new();
    let mut failed_ops = Vec::new();
    let mut out = RunOutcome::default();
    let mut read_only_at: Option<usize> = None;
    for (i, op) in ops.iter().enumerate() {
        let tid_before = fs.shared().running_tid();
        let result = workload::run_op(fs.shared(), &mut ctx, &model, op);
        match (&result, read_only_at) {
            // Every op of the workload changes or syncs something.
            (Ok(()), Some(at)) => {
                out.read_only.get_or_insert(format!(
                    "op {i} ({op}) returned Ok after op {at} left the mount read-only"
                ));
            }
            (Err(e), Some(at)) if !matches!(e, RwError::ReadOnly { .. }) && valid(&model, op) => {
                out.read_only.get_or_insert(format!(
                    "op {i} ({op}) failed with {e}, not the read-only error, after op {at} \
                     left the mount read-only"
                ));
            }
            (Err(e), None) if fault.is_none() => return Err(format!("op {i} ({op}): {e}")),
            _ => {}
        }
        if result.is_ok() {
            rec.tids.push((tid_before, fs.shared().running_tid()));
            rec.acked.push(events(&dev));
            rec.effects.push(model.apply(op)?);
            rec.states.push(model.clone());
            done_ops.push(op.clone());
        } else {
            failed_ops.push(i);
        }
        if fs.is_read_only() {
            read_only_at.get_or_insert(i);
        } else if dev.faults().fired() {
            out.read_only.get_or_insert(format!(
                "op {i} ({op}): an injected write or flush failed ({}), the mount stays \
                 writable",
                match &result {
                    Ok(()) => "the op returned Ok".to_string(),
                    Err(e) => format!("the op returned: {e}"),
                }
            ));
        }
    }
    drop(ctx);
    let (_, unmounted) = fs.unmount();
    out.fired = dev.faults().fired();
    out.counts = dev.faults().counts();
    match (&unmounted, read_only_at) {
        (Ok(()), Some(at)) => {
            out.read_only.get_or_insert(format!(
                "unmount returned Ok after op {at} left the mount read-only"
            ));
        }
        (Err(e), None) if !out.fired => return Err(format!("unmount: {e}")),
        _ => {}
    }
    dev.faults().disarm();
    rec.log = dev.log().map_err(|e| e.to_string())?;
    if unmounted.is_ok() {
        rec.unmounted = rec.log.events().len();
    }
    let key = fault.map_or(0, |f| f.index * 4 + u64::from(f.sticky) * 2);
    let ran = Ran {
        rec: &rec,
        done_ops: &done_ops,
        failed_ops: &failed_ops,
    };
    match check_durable(&dev, &ran, options, key, e2fsck_dir) {
        Ok(replayed) => out.replayed = replayed,
        Err(e) => out.image = Some(format!("durable image: {e}")),
    }
    Ok(out)
}

/// What a run did, for [`check_durable`].
struct Ran<'a> {
    rec: &'a Recording,
    /// The ops that returned `Ok` (the model applied only those).
    done_ops: &'a [Op],
    /// Indexes of the others in the workload.
    failed_ops: &'a [usize],
}

/// Checks 1 and 3 on the durable image of `dev` (every unflushed write dropped) after the
/// whole run; `Ok(true)` when its recovery replayed a journal.
fn check_durable(
    dev: &EmuDevice,
    ran: &Ran<'_>,
    options: &Options,
    key: u64,
    e2fsck_dir: Option<&Path>,
) -> Result<bool, String> {
    let durable = dev.crash_with(|_| false).map_err(|e| e.to_string())?;
    let crashes = (key, RecoveryCrashes::Seeded);
    let r = check_image(durable, options.rw(), crashes, e2fsck_dir)?;
    let point = ran.rec.log.events().len();
    let ordered = options.data == DataMode::Ordered;
    check::check_state(ran.rec, ran.done_ops, &r.tree, point, ordered).map_err(|mut e| {
        if !ran.failed_ops.is_empty() {
            // The check numbers ops and prefixes among those that returned Ok.
            e.push_str(&format!(
                "\n  (ops and prefixes counted without the ops that failed: {:?})",
                ran.failed_ops
            ));
        }
        e
    })?;
    Ok(r.replayed)
}
