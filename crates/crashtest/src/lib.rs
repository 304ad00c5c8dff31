//! `aios crashtest`: a deterministic crash-consistency harness on the emulated device (an
//! ACE/CrashMonkey-like campaign over our read-write mount).
//!
//! # What it does
//! For each workload ([`workload`]) it runs the ops on a recording emulated device from a small
//! prepared image, then for a crash after every event of the write log (each command's
//! submission and completion) and every subset of the unflushed block-writes there ([`states`]:
//! all of them up to 10, else 64 seeded plus all-kept and all-dropped), it builds the crash
//! image and checks ([`recover`], [`check`]):
//! - recovery mounts and unmounts cleanly, and a crash inside that recovery followed by another
//!   one gives the same tree ([`RecoveryCrashes`]: by default at one seeded point and subset,
//!   and at every event of the recovery's write log with its unflushed writes dropped);
//! - our fsck (every directory, file and symlink read back) and `e2fsck -fn` find nothing
//!   (`e2fsck` on every `fsck_every`-th distinct recovered image, default every one);
//! - the tree is the model after a prefix of the ops holding every acknowledged sync, byte for
//!   byte, with no stale or foreign data (tags, [`model`]).
//!
//! Equal crash images are recovered once (`states::image_key`); each crash state is still
//! checked against its own crash point.
//!
//! # Self-tests
//! A harness that cannot fail is worthless: `--sabotage-model` breaks the model, and
//! `--plant NAME` ([`Options::plant`], test-only) plants one known protocol bug in every mount
//! (`aios_journal::runtime::PlantedBug`), adds the multi-op workloads that expose what 1-op
//! workloads cannot (`workload::planted`), and stops at the first violation, reaching the
//! cheapest states first (`cheapest_first`). [`eio`] is the EIO sweep (`--eio`).
//!
//! # Replaying
//! A state is named `SEED:WORKLOAD@POINT`: the state seed (`states`), the workload's name and
//! the crash point (events applied). [`Violation::replay`] is the exact command that rebuilds
//! it; [`replay_one`] runs it.
//!
//! | Module | What |
//! | --- | --- |
//! | `model` | model, ops, effects, data tags |
//! | `workload` | the prepared image, the 1-op and multi-op workloads, recording a run |
//! | `states` | crash points and subsets, state seeds, image keys |
//! | `recover` | recovery (crashed and redone), our fsck walk, `e2fsck -fn` |
//! | `check` | the model checks of one recovered state |
//! | `concurrent` | `--concurrent`: threads under load, a watchdog, crashes taken mid-run |
//! | `eio` | the EIO sweep: a fault at each write and flush of a 50-op run |

pub mod check;
pub mod concurrent;
pub mod eio;
pub mod model;
pub mod random;
pub mod recover;
pub mod soak;
pub mod states;
pub mod suite;
pub mod workload;

use std::collections::hash_map::{Entry, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use aios_device_emu::DiskImage;
use aios_fs::{DataMode, RwOptions};
use aios_journal::runtime::{CommitOrder, PlantedBug};

pub use recover::RecoveryCrashes;
use recover::Tree;
use states::SubsetPolicy;
use workload::{Prepared, Recording, Workload};

/// Which workloads a campaign runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadSet {
    /// Every 1-op workload, every crash point.
    OneOp,
    /// A sample of `count` 2-op workloads (seeded by the campaign seed), every crash point.
    TwoOp { count: usize },
    /// `count` random workloads of up to `ops_max` ops (seeds drawn from the campaign
    /// seed), `points` seeded crash points each.
    Random {
        count: usize,
        ops_max: usize,
        points: usize,
    },
}

impl WorkloadSet {
    /// The subsets per crash point: the full rule for short workloads; fewer for
    /// random ones, whose many points and long logs give variety instead.
    pub fn subsets(self) -> SubsetPolicy {
        match self {
            WorkloadSet::OneOp | WorkloadSet::TwoOp { .. } => SubsetPolicy::FULL,
            WorkloadSet::Random { .. } => SubsetPolicy {
                all_max: 4,
                seeded: 14,
            },
        }
    }

    fn flag(self) -> String {
        match self {
            WorkloadSet::OneOp => "--workloads one-op".into(),
            WorkloadSet::TwoOp { count } => format!("--workloads two-op --count {count}"),
            WorkloadSet::Random {
                count,
                ops_max,
                points,
            } => {
                format!("--workloads random --count {count} --ops-max {ops_max} --points {points}")
            }
        }
    }
}

/// How to run a campaign.
#[derive(Debug, Clone)]
pub struct Options {
    pub set: WorkloadSet,
    pub data: DataMode,
    pub order: CommitOrder,
    /// Salts the seeded subsets.
    pub seed: u64,
    /// Run `e2fsck -fn` on every n-th distinct recovered image (1: all; 0: none).
    pub fsck_every: usize,
    /// Only workloads whose name contains one of these (empty: all).
    pub only: Vec<String>,
    /// Violations kept in full per workload (all are counted).
    pub keep_per_workload: usize,
    /// `(n, r)`: only the workloads whose index is `r` modulo `n` (a bounded share).
    pub stride: Option<(usize, usize)>,
    /// Self-test of the harness: the model believes every write put one byte differently
    /// (its first), so states holding an acknowledged write must be reported.
    pub sabotage_model: bool,
    /// Self-test of the harness, test-only: a protocol bug planted in every mount (the
    /// workload runs and the recoveries), and the workloads that expose bugs (`workload::planted`)
    /// run first.
    pub plant: Option<PlantedBug>,
    /// End the campaign at the first violation (its time is in [`Report::first_violation`]).
    pub stop_at_first: bool,
    /// Where each replaying recovery is crashed and redone.
    pub recovery_crashes: RecoveryCrashes,
    /// Subsets per crash point (`None`: the set's own, [`WorkloadSet::subsets`]).
    pub subsets: Option<SubsetPolicy>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            set: WorkloadSet::OneOp,
            data: DataMode::Ordered,
            order: CommitOrder::Async,
            seed: 0,
            fsck_every: 1,
            only: Vec::new(),
            keep_per_workload: 3,
            stride: None,
            sabotage_model: false,
            plant: None,
            stop_at_first: false,
            recovery_crashes: RECOVERY_CRASHES_DEFAULT,
            subsets: None,
        }
    }
}

/// Metadata blocks the campaigns' mounts keep: few, so checkpointed ones are evicted and read
/// from home again (`RwOptions::metadata_pages`).
pub const METADATA_PAGES_CAMPAIGN: usize = 8;

/// The memory limits every campaign mounts with, on the defaults: the least dirty data the
/// mount allows (16 blocks), so workloads that write more cross writeback (`data=ordered`) or
/// a commit (`data=journal`) on the way, and [`METADATA_PAGES_CAMPAIGN`].
pub fn campaign_rw() -> RwOptions {
    RwOptions {
        dirty_percent: 0,
        dirty_background_percent: 0,
        metadata_pages: Some(METADATA_PAGES_CAMPAIGN),
        ..RwOptions::default()
    }
}

/// The default campaign's recovery crashes: the seeded one, and every event with its
/// unflushed writes all dropped (where a recovery that marks the journal clean too early
/// loses its replay).
pub const RECOVERY_CRASHES_DEFAULT: RecoveryCrashes = RecoveryCrashes::EveryPoint {
    all_kept: false,
    seeded_subsets: 0,
};
/// A `--plant` campaign's: every event all dropped, all kept and two seeded subsets.
pub const RECOVERY_CRASHES_PLANT: RecoveryCrashes = RecoveryCrashes::EveryPoint {
    all_kept: true,
    seeded_subsets: 2,
};

impl Options {
    /// The options of a `--plant` campaign for `bug` (data mode and order as `self`): stops at
    /// the first violation, crashes recoveries more densely.
    pub fn planted(&self, bug: PlantedBug) -> Options {
        Options {
            plant: Some(bug),
            stop_at_first: true,
            recovery_crashes: RECOVERY_CRASHES_PLANT,
            ..self.clone()
        }
    }

    /// The subsets each crash point gets.
    pub fn subsets(&self) -> SubsetPolicy {
        self.subsets.unwrap_or(self.set.subsets())
    }

    pub fn rw(&self) -> RwOptions {
        RwOptions {
            data: self.data,
            order: self.order,
            commit_interval: None,
            plant: self.plant,
            ..campaign_rw()
        }
    }

    fn flags(&self) -> String {
        let mode = match self.data {
            DataMode::Ordered => "ordered",
            DataMode::Journal => "journal",
        };
        let order = match self.order {
            CommitOrder::Sync => "sync",
            CommitOrder::Async => "async",
        };
        let sabotage = if self.sabotage_model {
            " --sabotage-model"
        } else {
            ""
        };
        let plant = self
            .plant
            .map_or(String::new(), |b| format!(" --plant {}", b.name()));
        // What `--plant` sets by itself is not repeated.
        let recovery = match self.recovery_crashes {
            c if c == RECOVERY_CRASHES_DEFAULT || self.plant.is_some() => String::new(),
            RecoveryCrashes::Seeded => " --recovery-crashes seeded".into(),
            RecoveryCrashes::EveryPoint {
                seeded_subsets: 0, ..
            } => " --recovery-crashes every".into(),
            RecoveryCrashes::EveryPoint {
                seeded_subsets: n, ..
            } => format!(" --recovery-crashes every:{n}"),
        };
        format!(
            "{} --mode {mode} --order {order} --seed {:#x}{sabotage}{plant}{recovery}",
            self.set.flag(),
            self.seed
        )
    }
}

/// One failed check.
#[derive(Debug, Clone)]
pub struct Violation {
    pub workload: String,
    pub point: usize,
    pub events: usize,
    pub seed: u64,
    pub what: String,
    pub replay: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} crash point {}/{} state seed {:#x}: {}\n  replay: {}",
            self.workload, self.point, self.events, self.seed, self.what, self.replay
        )
    }
}

/// What a campaign did.
#[derive(Debug, Default)]
pub struct Report {
    pub workloads: usize,
    /// Ops the workloads ran.
    pub ops: usize,
    /// Journal blocks the workloads wrote, in lengths of their log: the fewest and the sum.
    pub wraps_min: Option<f64>,
    pub wraps_total: f64,
    /// Workloads whose run wrote dirty data back (in place, without a commit), and how often.
    pub writeback_workloads: usize,
    pub writebacks: u64,
    /// Metadata blocks the workloads' mounts evicted (and read from home again when needed).
    pub metadata_evictions: u64,
    pub crash_points: usize,
    pub states: usize,
    /// Of those, states in which an acknowledged sync must show.
    pub acked_states: usize,
    pub distinct_images: usize,
    /// Distinct images whose recovery replayed a journal (and was crashed and redone).
    pub replayed: usize,
    pub e2fsck_runs: usize,
    /// Crash states whose image `e2fsck -fn` checked.
    pub e2fsck_states: usize,
    pub violations_total: usize,
    pub violations: Vec<Violation>,
    pub elapsed: Duration,
    /// From the campaign's start (image preparation included) to its first violation.
    pub first_violation: Option<Duration>,
    /// Crashed recoveries redone (distinct images, see [`RecoveryCrashes`]).
    pub recovery_crashes: usize,
    /// With `--replay`: the state described (ops, acknowledgements, candidates kept).
    pub detail: Vec<String>,
}

impl Report {
    /// Adds `other`'s counts and violations to this report (elapsed times add up too).
    pub fn absorb(&mut self, other: Report) {
        self.workloads += other.workloads;
        self.ops += other.ops;
        self.wraps_total += other.wraps_total;
        self.writeback_workloads += other.writeback_workloads;
        self.writebacks += other.writebacks;
        self.metadata_evictions += other.metadata_evictions;
        self.wraps_min = match (self.wraps_min, other.wraps_min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.crash_points += other.crash_points;
        self.states += other.states;
        self.acked_states += other.acked_states;
        self.distinct_images += other.distinct_images;
        self.replayed += other.replayed;
        self.e2fsck_runs += other.e2fsck_runs;
        self.e2fsck_states += other.e2fsck_states;
        self.violations_total += other.violations_total;
        self.violations.extend(other.violations);
        self.recovery_crashes += other.recovery_crashes;
        self.first_violation = match (self.first_violation, other.first_violation) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.elapsed += other.elapsed;
    }

    pub fn states_per_second(&self) -> f64 {
        self.states as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Prints the report to standard output (errors ignored: for tests).
    pub fn print(&self, options: &Options) {
        let _ = self.write_to(&mut std::io::stdout().lock(), options);
    }

    /// The report: counts, rates, the `e2fsck` share, and every kept violation with its replay.
    pub fn write_to(
        &self,
        out: &mut impl std::io::Write,
        options: &Options,
    ) -> std::io::Result<()> {
        for line in &self.detail {
            writeln!(out, "{line}")?;
        }
        writeln!(
            out,
            "crashtest ({}): {} workloads, {} crash points, {} crash states ({} after an \
             acknowledged sync), {} distinct images ({} replayed a journal), {:.1} s, {:.0} \
             states/s",
            options.flags(),
            self.workloads,
            self.crash_points,
            self.states,
            self.acked_states,
            self.distinct_images,
            self.replayed,
            self.elapsed.as_secs_f64(),
            self.states_per_second()
        )?;
        // Short workloads write a sliver of the log; the wrap count says something only for
        // workloads meant to wrap it (random ones).
        let mean = self.wraps_total / self.workloads.max(1) as f64;
        if let Some(min) = self.wraps_min.filter(|_| mean >= 1.0) {
            writeln!(
                out,
                "{} ops; journal written {:.1} times its length per workload on average, {:.1} \
                 at least",
                self.ops, mean, min
            )?;
        }
        if self.writebacks > 0 || self.metadata_evictions > 0 {
            writeln!(
                out,
                "writeback: {} in {} of {} workloads; metadata blocks evicted: {}",
                self.writebacks, self.writeback_workloads, self.workloads, self.metadata_evictions
            )?;
        }
        writeln!(
            out,
            "e2fsck -fn: {} runs, on {} of {} distinct images, covering {} of {} states ({:.1}%)",
            self.e2fsck_runs,
            self.e2fsck_runs,
            self.distinct_images,
            self.e2fsck_states,
            self.states,
            100.0 * self.e2fsck_states as f64 / self.states.max(1) as f64
        )?;
        writeln!(
            out,
            "recovery crashed and redone: {} distinct images",
            self.recovery_crashes
        )?;
        write_violations(
            out,
            self.violations_total,
            self.first_violation,
            &self.violations,
        )
    }
}

/// A report's closing lines: the violation count, the time to the first, each one kept.
pub(crate) fn write_violations<V: std::fmt::Display>(
    out: &mut impl std::io::Write,
    total: usize,
    first: Option<Duration>,
    kept: &[V],
) -> std::io::Result<()> {
    write!(out, "violations: {total}")?;
    match first {
        Some(t) => writeln!(out, " (first after {:.2} s)", t.as_secs_f64())?,
        None => writeln!(out)?,
    }
    for v in kept {
        writeln!(out, "{v}")?;
    }
    Ok(())
}

/// The cached outcome of recovering one distinct image.
type Outcome = Result<std::rc::Rc<Tree>, String>;

/// Campaign state shared by the workloads.
struct Campaign<'a> {
    options: &'a Options,
    prepared: &'a Prepared,
    dir: &'a Path,
    report: Report,
    started: Instant,
}

/// The prepared image a workload set starts from.
fn prepare(dir: &Path, options: &Options, random: bool) -> Result<Prepared, String> {
    if random {
        let ops = random::prepare_ops();
        workload::prepare_with(dir, options.rw(), &ops, Some(random::JOURNAL_BLOCKS))
    } else {
        workload::prepare(dir, options.rw())
    }
}

/// Runs the workloads of `options.set` (filtered by `options.only` and `options.stride`).
pub fn run(options: &Options) -> Result<Report, String> {
    let started = Instant::now();
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let random = matches!(options.set, WorkloadSet::Random { .. });
    let prepared = prepare(dir.path(), options, random)?;
    let mut c = Campaign {
        options,
        prepared: &prepared,
        dir: dir.path(),
        report: Report::default(),
        started,
    };
    let wls = selected(&prepared, options);
    if options.stop_at_first {
        for (wl, pass) in cheapest_first(&prepared, options, wls) {
            if !c.stopped() {
                c.workload(&wl, None, pass);
            }
        }
    } else {
        for wl in wls {
            c.workload(&wl, None, Pass::All);
        }
    }
    c.report.elapsed = started.elapsed();
    Ok(c.report)
}

fn selected(prepared: &Prepared, options: &Options) -> Vec<Workload> {
    let all = match options.set {
        WorkloadSet::OneOp => all_workloads(prepared, options),
        WorkloadSet::TwoOp { count } => workload::two_op(&prepared.model, options.seed, count),
        WorkloadSet::Random { count, ops_max, .. } => (0..count as u64)
            .map(|i| {
                let seed = states::splitmix(options.seed ^ i.wrapping_mul(0x9E37_79B9));
                random::generate(&prepared.model, seed, ops_max)
            })
            .collect(),
    };
    all.into_iter()
        .enumerate()
        .filter(|(i, _)| options.stride.is_none_or(|(n, r)| i % n.max(1) == r))
        .map(|(_, w)| w)
        .filter(|w| options.only.is_empty() || options.only.iter().any(|o| w.name.contains(o)))
        .collect()
}

/// The 1-op workloads, after the multi-op ones that expose planted bugs when one is planted
/// or `only` names them (`plant-`).
fn all_workloads(prepared: &Prepared, options: &Options) -> Vec<Workload> {
    let wanted = options.plant.is_some() || options.only.iter().any(|o| o.starts_with("plant-"));
    let mut all = if wanted {
        workload::planted()
    } else {
        Vec::new()
    };
    all.extend(workload::one_op(&prepared.model));
    all
}

/// The order of a campaign that stops at its first violation: the cheapest states first,
/// every state still checked unless a violation ends it. First the all-dropped and all-kept
/// states of the multi-op workloads (`plant-`, they expose what 1-op workloads cannot), then
/// each 1-op workload by write-log length, its extreme states before the other subsets,
/// then the other subsets of the multi-op workloads.
fn cheapest_first(
    prepared: &Prepared,
    options: &Options,
    wls: Vec<Workload>,
) -> Vec<(Workload, Pass)> {
    let (multi, one): (Vec<Workload>, Vec<Workload>) =
        wls.into_iter().partition(|w| w.ops.len() > 2);
    let mut sized: Vec<(usize, Workload)> = one
        .into_iter()
        .map(|wl| {
            let rec = workload::record(prepared, &wl, options.rw());
            (rec.map_or(0, |r| r.log.events().len()), wl)
        })
        .collect();
    sized.sort_by_key(|(events, _)| *events);
    let mut order: Vec<(Workload, Pass)> =
        multi.iter().map(|w| (w.clone(), Pass::Extremes)).collect();
    for (_, wl) in sized {
        order.push((wl.clone(), Pass::Extremes));
        order.push((wl, Pass::Rest));
    }
    order.extend(multi.into_iter().map(|w| (w, Pass::Rest)));
    order
}

/// Which subsets of each crash point a walk over a workload checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    All,
    /// All-dropped and all-kept only.
    Extremes,
    /// The others.
    Rest,
}

impl Pass {
    fn wants(self, seed: u64) -> bool {
        let extreme = seed == 0 || seed == u64::MAX;
        match self {
            Pass::All => true,
            Pass::Extremes => extreme,
            Pass::Rest => !extreme,
        }
    }
}

/// Parses `SEED:WORKLOAD@POINT`.
pub fn parse_replay(s: &str) -> Result<(u64, String, usize), String> {
    let bad = || format!("{s}: expected SEED:WORKLOAD@POINT");
    let (seed, rest) = s.split_once(':').ok_or_else(bad)?;
    let (name, point) = rest.rsplit_once('@').ok_or_else(bad)?;
    let seed = match seed.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => seed.parse(),
    }
    .map_err(|_| bad())?;
    Ok((seed, name.to_string(), point.parse().map_err(|_| bad())?))
}

/// Rebuilds and checks exactly one crash state (`SEED:WORKLOAD@POINT`).
pub fn replay_one(options: &Options, spec: &str) -> Result<Report, String> {
    let (seed, name, point) = parse_replay(spec)?;
    let started = Instant::now();
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let (prepared, wl) = named(dir.path(), options, &name)?;
    let mut c = Campaign {
        options,
        prepared: &prepared,
        dir: dir.path(),
        report: Report::default(),
        started,
    };
    c.workload(&wl, Some((seed, point)), Pass::All);
    c.report.elapsed = started.elapsed();
    Ok(c.report)
}

impl Campaign<'_> {
    /// True once `stop_at_first` has its violation.
    fn stopped(&self) -> bool {
        self.options.stop_at_first && self.report.violations_total > 0
    }

    fn violation(&mut self, wl: &Workload, at: (usize, usize, u64), what: String) {
        self.report.violations_total += 1;
        if self.report.first_violation.is_none() {
            self.report.first_violation = Some(self.started.elapsed());
        }
        let kept = self
            .report
            .violations
            .iter()
            .filter(|v| v.workload == wl.name)
            .count();
        if kept >= self.options.keep_per_workload {
            return;
        }
        let (point, events, seed) = at;
        self.report.violations.push(Violation {
            workload: wl.name.clone(),
            point,
            events,
            seed,
            what,
            replay: format!(
                "aios crashtest {} --replay {seed:#x}:{}@{point}",
                self.options.flags(),
                wl.name
            ),
        });
    }

    /// Records `wl` and checks its crash states (only `one` when given: seed and point), those
    /// of `pass`.
    fn workload(&mut self, wl: &Workload, one: Option<(u64, usize)>, pass: Pass) {
        let first_pass = pass != Pass::Rest;
        self.report.workloads += usize::from(first_pass);
        let rec = match workload::record(self.prepared, wl, self.options.rw()) {
            Ok(r) if self.options.sabotage_model => sabotage(r),
            Ok(r) => r,
            Err(e) => return self.violation(wl, (0, 0, 0), format!("workload run: {e}")),
        };
        let log = rec.log.clone();
        let events = log.events().len();
        let mut replay = match log.replay() {
            Ok(r) => r,
            Err(e) => return self.violation(wl, (0, events, 0), format!("replay: {e}")),
        };
        self.report.ops += wl.ops.len();
        self.report.writebacks += rec.writebacks;
        self.report.metadata_evictions += rec.metadata_evictions;
        self.report.writeback_workloads += usize::from(rec.writebacks > 0);
        if rec.log_blocks > 0 {
            let wraps = rec.journal_blocks as f64 / rec.log_blocks as f64;
            self.report.wraps_total += wraps;
            self.report.wraps_min = Some(self.report.wraps_min.map_or(wraps, |m| m.min(wraps)));
        }
        let mut cache: HashMap<u64, (Outcome, bool)> = HashMap::new();
        let points: Vec<usize> = match (one, self.options.set) {
            (Some((_, p)), _) => vec![p],
            (None, WorkloadSet::Random { points, .. }) => {
                states::seeded_points(events, points, states::name_hash(&wl.name))
            }
            (None, _) => (0..=events).collect(),
        };
        for point in points {
            if self.stopped() {
                return;
            }
            if let Err(e) = replay.advance_to(log.point(point)) {
                return self.violation(wl, (point, events, 0), format!("replay: {e}"));
            }
            self.report.crash_points += usize::from(first_pass);
            let cands = replay.candidates();
            let salt = states::splitmix(
                self.options.seed
                    ^ states::name_hash(&wl.name)
                    ^ (point as u64).wrapping_mul(0x9E37),
            );
            let seeds = match one {
                Some((s, _)) => {
                    let flags = states::kept(s, &cands);
                    self.report.detail = describe_state(wl, &rec, (point, events), &cands, &flags);
                    vec![s]
                }
                None => states::subset_seeds(cands.len(), salt, self.options.subsets()),
            };
            let seeds = seeds.into_iter().filter(|&s| pass.wants(s));
            let ordered = self.options.data == DataMode::Ordered;
            let acked = check::has_acknowledged(&rec, &wl.ops, point, ordered);
            for seed in seeds {
                if self.stopped() {
                    return;
                }
                self.report.states += 1;
                self.report.acked_states += usize::from(acked);
                let flags = states::kept(seed, &cands);
                let key = states::image_key(&log, &replay, &cands, &flags);
                let (outcome, fscked) = match cache.entry(key) {
                    Entry::Occupied(o) => o.into_mut(),
                    Entry::Vacant(v) => v.insert(self.recover_distinct(&replay, &flags, key)),
                };
                self.report.e2fsck_states += usize::from(*fscked);
                let result = match outcome {
                    Ok(tree) => check::check_state(&rec, &wl.ops, tree, point, ordered),
                    Err(e) => Err(e.clone()),
                };
                if let Err(what) = result {
                    self.violation(wl, (point, events, seed), what);
                }
            }
        }
    }

    /// Builds, recovers and fscks one distinct image; `true` when `e2fsck` ran on it.
    fn recover_distinct(
        &mut self,
        replay: &aios_device_emu::Replay<'_>,
        flags: &[bool],
        key: u64,
    ) -> (Outcome, bool) {
        self.report.distinct_images += 1;
        let image = match replay.image_subset(flags) {
            Ok(i) => i,
            Err(e) => return (Err(format!("crash image: {e}")), false),
        };
        let fsck = self.options.fsck_every > 0
            && (self.report.distinct_images - 1).is_multiple_of(self.options.fsck_every);
        let outcome = check_image(
            image,
            self.options.rw(),
            (key, self.options.recovery_crashes),
            fsck.then_some(self.dir),
        );
        if let Ok(c) = &outcome {
            self.report.replayed += usize::from(c.replayed);
            self.report.recovery_crashes += c.redone;
        }
        self.report.e2fsck_runs += usize::from(fsck);
        (outcome.map(|c| std::rc::Rc::new(c.tree)), fsck)
    }
}

/// What `--replay` prints about the state: ops, their acknowledgements, candidates kept.
fn describe_state(
    wl: &Workload,
    rec: &Recording,
    (point, events): (usize, usize),
    cands: &[aios_device_emu::BlockWrite],
    flags: &[bool],
) -> Vec<String> {
    let mut d = vec![format!("workload {}:", wl.name)];
    for (op, at) in wl.ops.iter().zip(&rec.acked) {
        d.push(format!("  {op} (returned at event {at})"));
    }
    d.push(format!("  unmount returned at event {}", rec.unmounted));
    d.push(format!(
        "crash point {point}/{events}, {} candidates:",
        cands.len()
    ));
    for (c, k) in cands.iter().zip(flags) {
        let what = if *k { "kept" } else { "dropped" };
        d.push(format!("  write {} block {}: {what}", c.write_id, c.block));
    }
    d
}

/// Flips the first byte of every write in the model states after it (see
/// [`Options::sabotage_model`]).
fn sabotage(mut rec: Recording) -> Recording {
    for k in 0..rec.effects.len() {
        let Some((id, start, _)) = rec.effects[k].wrote else {
            continue;
        };
        for state in &mut rec.states[k + 1..] {
            if let Some(model::Node::File(d)) = state.inodes.get_mut(&id) {
                if let Some(b) = d.get_mut(start as usize) {
                    *b ^= 0xff;
                }
            }
        }
    }
    rec
}

/// Recovery (then crashed and redone as `crashes` says, `key` seeding it), our fsck and, with
/// a directory for the copy, `e2fsck -fn`.
pub fn check_image(
    image: DiskImage,
    options: RwOptions,
    (key, crashes): (u64, RecoveryCrashes),
    e2fsck_dir: Option<&Path>,
) -> Result<recover::Recovered, String> {
    let rv = recover::recover(image, options, key, crashes)?;
    if let Some(dir) = e2fsck_dir {
        recover::e2fsck(&rv.image, &dir.join("recovered.img"))?;
    }
    Ok(rv)
}

/// For tests: the prepared image, a workload by name, its recording.
pub fn record_named(
    dir: &Path,
    options: &Options,
    name: &str,
) -> Result<(Prepared, Workload, Recording), String> {
    let (prepared, wl) = named(dir, options, name)?;
    let rec = workload::record(&prepared, &wl, options.rw())?;
    Ok((prepared, wl, rec))
}

/// The workload named `name` (of any set) and the image it starts from.
fn named(dir: &Path, options: &Options, name: &str) -> Result<(Prepared, Workload), String> {
    if let Some((seed, ops_max)) = random::parse_name(name) {
        let prepared = prepare(dir, options, true)?;
        let wl = random::generate(&prepared.model, seed, ops_max);
        return Ok((prepared, wl));
    }
    let prepared = prepare(dir, options, false)?;
    let wl = workload::planted()
        .into_iter()
        .chain(workload::one_op(&prepared.model))
        .chain(workload::two_op_all(&prepared.model))
        .find(|w| w.name == name)
        .ok_or_else(|| format!("no workload named {name}"))?;
    Ok((prepared, wl))
}
