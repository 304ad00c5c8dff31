//! Issue 5 acceptance, "Bad images": corrupted images (bit flips in every field region of every
//! metadata block, the same fields changed with their checksums resealed, torn and misdirected
//! metadata writes, random bytes; see [`corrupt`]) of a
//! small ext4 image whose journal holds committed transactions, put through every entry point:
//!
//! 1. read-only [`Fs::mount`] and the full walk of [`walk`] (every lookup, stat, listing,
//!    symlink and file read);
//! 2. read-write [`RwFs::mount`] (journal recovery when the image needs it), the operations of
//!    [`image::operations`] (create, write, add to the htree directory, unlink), unmount;
//! 3. our check: the full walk of what step 2 left on the device.
//!
//! Every step must return `Ok` or a typed error, never panic (each case runs under
//! `catch_unwind`; a panic fails the test naming the case and step), never hang (a watchdog
//! aborts the binary naming a case slower than [`HUNG_CASE`]; a case slower than [`SLOW_CASE`]
//! fails), and keep memory bounded (a counting allocator, [`alloc`]: one allocation above
//! 256 MiB aborts, and the watchdog aborts when the live heap passes [`HEAP_MAX_BYTES`]). For a
//! *strict* corruption (see [`corrupt`]) every `Ok` step must also give the clean image's value.
//! Outcomes are counted per class and step.
//!
//! `AIOS_CORRUPT_IMAGES` sets the number of corrupted images (default [`IMAGES_DEFAULT`]),
//! `AIOS_CORRUPT_SEED` the seed of the bit and byte choices; `AIOS_CORRUPT_ONLY=<text>` runs only
//! the cases whose name contains `<text>` (a failure prints its name: replay it with the same
//! count and seed). Skips loudly without e2fsprogs.

#[path = "../common/mod.rs"]
mod common;

mod alloc;
mod corrupt;
mod image;
mod reseal;
mod walk;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aios_fs::{Fs, RwFs};

use corrupt::{Base, Class, Corruption};
use walk::{compare, kind, walk, Walk};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

/// The CI budget: 1,000 corrupted images.
const IMAGES_DEFAULT: usize = 1000;
const SEED_DEFAULT: u64 = 0xBAD1_4A6E_0000_0005;
/// A case slower than this fails the test (a near hang).
const SLOW_CASE: Duration = Duration::from_secs(20);
/// A case slower than this aborts the binary (a hang never returns).
const HUNG_CASE: Duration = Duration::from_secs(60);
/// Live heap above this aborts the binary: each worker holds a few 8 MiB images at a time.
const HEAP_MAX_BYTES: usize = 2 << 30;
/// Name prefix of the campaign's worker threads (their panics are caught and reported per case).
const WORKER: &str = "bad-images-worker-";

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// The clean results every case is compared with.
struct Clean {
    crashed: Vec<u8>,
    recovered: Vec<u8>,
    /// Read-only walk of `R`.
    ro_walk: Walk,
    /// Walk (times masked) after the operations, from `C` and from `R`.
    after_ops: BTreeMap<Base, Walk>,
}

impl Clean {
    fn base(&self, base: Base) -> &[u8] {
        match base {
            Base::C => &self.crashed,
            Base::R => &self.recovered,
        }
    }
}

/// What one step gave.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// `Ok`, every value the clean one (for a walk: every `Ok` step of it).
    Same,
    /// `Ok` with other values where that is legitimate (not strict).
    Differs,
    /// `Ok`, with no clean value to compare (the crashed image read before recovery, or a
    /// check after operations that did not all succeed).
    Unreferenced,
    /// A typed error, by kind (for a walk: at least one step failed).
    Error(String),
}

#[derive(Default)]
struct CaseResult {
    steps: Vec<(&'static str, Outcome)>,
    failures: Vec<String>,
}

fn judge_walk(
    r: &mut CaseResult,
    step: &'static str,
    got: &Walk,
    clean: Option<&Walk>,
    strict: bool,
) {
    let Some(clean) = clean else {
        let err = walk::error_kinds(got).next().cloned();
        r.steps
            .push((step, err.map_or(Outcome::Unreferenced, Outcome::Error)));
        return;
    };
    let (c, first) = compare(got, clean);
    if c.differ > 0 && strict {
        r.failures
            .push(format!("{step}: {}", first.unwrap_or_default()));
    }
    let outcome = match (c.differ, walk::error_kinds(got).next()) {
        (0, None) => Outcome::Same,
        (_, Some(e)) => Outcome::Error(e.clone()),
        _ => Outcome::Differs,
    };
    r.steps.push((step, outcome));
}

/// Steps 1 to 3 for one corrupted image; `stage` names the step running (for a panic report).
fn run_case(case: &Corruption, clean: &Clean, stage: &Mutex<&'static str>) -> CaseResult {
    let mut r = CaseResult::default();
    let mut bytes = clean.base(case.base).to_vec();
    for (at, b) in &case.edits {
        bytes[*at as usize..*at as usize + b.len()].copy_from_slice(b);
    }
    let timing = std::env::var_os("AIOS_CORRUPT_TIMING").is_some();
    let mut last = Instant::now();
    let mut set = |s| {
        if timing {
            eprintln!("  {:?} then: {s}", last.elapsed());
            last = Instant::now();
        }
        *stage.lock().unwrap() = s;
    };

    set("read-only mount and walk");
    match Fs::mount(image::device(&bytes), image::options()) {
        Ok(fs) => {
            let w = walk(&fs, false);
            let reference = (case.base == Base::R).then_some(&clean.ro_walk);
            judge_walk(&mut r, "ro walk", &w, reference, case.strict);
        }
        Err(e) => r.steps.push(("ro mount", Outcome::Error(kind(&e)))),
    }

    set("read-write mount, operations, unmount");
    let dev = image::device(&bytes);
    let mut all_ok = false;
    match RwFs::mount(dev.clone(), image::rw_options()) {
        Ok(mut fs) => {
            r.steps.push(("rw mount", Outcome::Same));
            let ops = image::operations(&mut fs);
            all_ok = ops.iter().all(Result::is_ok);
            for o in ops {
                let outcome = o.map_or_else(|e| Outcome::Error(kind(&e)), |_| Outcome::Same);
                r.steps.push(("operation", outcome));
            }
            let (_, u) = fs.unmount();
            all_ok &= u.is_ok();
            let outcome = u.map_or_else(|e| Outcome::Error(kind(&e)), |_| Outcome::Same);
            r.steps.push(("unmount", outcome));
        }
        Err(e) => r.steps.push(("rw mount", Outcome::Error(kind(&e)))),
    }

    set("check (walk after read-write)");
    let after = image::bytes_of(&dev.current_image().unwrap());
    match Fs::mount(image::device(&after), image::options()) {
        Ok(fs) => {
            let w = walk(&fs, true);
            let reference = all_ok.then(|| &clean.after_ops[&case.base]);
            judge_walk(&mut r, "check walk", &w, reference, case.strict);
        }
        Err(e) => r.steps.push(("check mount", Outcome::Error(kind(&e)))),
    }
    r
}

#[derive(Default)]
struct Tally {
    images: BTreeMap<Class, usize>,
    strict: usize,
    outcomes: BTreeMap<(Class, &'static str, Outcome), usize>,
    failures: Vec<String>,
    slowest: Duration,
    slowest_case: String,
}

impl Tally {
    fn timed(&mut self, took: Duration, case: &str) {
        if took > self.slowest {
            self.slowest = took;
            self.slowest_case = case.to_string();
        }
    }
}

/// A worker's view for the watchdog: when its case started (ms since epoch + 1; 0 idle) and
/// which.
#[derive(Default)]
struct Watch {
    started_ms: AtomicU64,
    case: AtomicUsize,
}

fn clean_results(dir: &std::path::Path) -> (Clean, image::BlockMap) {
    let base = image::build_base(dir);
    let crashed = image::crash(&base);
    let recovered = image::recover(&crashed);
    let map = image::block_map(&recovered);

    // Read-only on the crashed image: refused until recovery.
    let ro = Fs::mount(image::device(&crashed), image::options());
    let ro_err = ro.err().map(|e| kind(&e)).unwrap_or_default();
    assert!(ro_err.contains("JournalNeedsRecovery"), "{ro_err}");

    let fs = Fs::mount(image::device(&recovered), image::options()).unwrap();
    let ro_walk = walk(&fs, false);
    drop(fs);
    assert!(walk::error_kinds(&ro_walk).next().is_none(), "{ro_walk:?}");
    for key in [
        "data:/w/f1",
        "follow:/w/l1",
        "lookup:/htree/added",
        "data:/frag",
    ] {
        assert!(ro_walk.contains_key(key), "clean walk lacks {key}");
    }

    let mut after_ops = BTreeMap::new();
    for (base, bytes) in [(Base::C, &crashed), (Base::R, &recovered)] {
        let dev = image::device(bytes);
        let mut fs = RwFs::mount(dev.clone(), image::rw_options()).unwrap();
        for (i, r) in image::operations(&mut fs).into_iter().enumerate() {
            r.unwrap_or_else(|e| panic!("clean {base:?}: operation {i}: {e}"));
        }
        fs.unmount().1.unwrap();
        let after = image::bytes_of(&dev.current_image().unwrap());
        let fs = Fs::mount(image::device(&after), image::options()).unwrap();
        let w = walk(&fs, true);
        assert!(walk::error_kinds(&w).next().is_none());
        assert!(w.contains_key("data:/bad_new") && !w.contains_key("stat:/small"));
        after_ops.insert(base, w);
    }
    assert_eq!(after_ops[&Base::C], after_ops[&Base::R]);
    let clean = Clean {
        crashed,
        recovered,
        ro_walk,
        after_ops,
    };
    (clean, map)
}

#[test]
fn corrupted_images_give_typed_errors_or_correct_data() {
    let name = "corrupted_images_give_typed_errors_or_correct_data";
    if !common::have_mke2fs(name) {
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (clean, map) = clean_results(dir.path());
    let total = env_u64("AIOS_CORRUPT_IMAGES").map_or(IMAGES_DEFAULT, |n| n as usize);
    let seed = env_u64("AIOS_CORRUPT_SEED").unwrap_or(SEED_DEFAULT);
    let bases = corrupt::Bases {
        crashed: &clean.crashed,
        recovered: &clean.recovered,
        map: &map,
    };
    let mut cases = corrupt::corruptions(&bases, total, seed);
    assert_eq!(cases.len(), total);
    if let Ok(only) = std::env::var("AIOS_CORRUPT_ONLY") {
        cases.retain(|c| c.name.contains(&only));
        eprintln!("AIOS_CORRUPT_ONLY={only:?}: {} cases", cases.len());
    }
    let healed = bases.healed().len();
    eprintln!(
        "{name}: {} metadata blocks, {} journal blocks ({} live), {healed} replayed home blocks; \
         setup {:.1?}",
        map.kinds.len(),
        map.journal.len(),
        bases.journal_live().len(),
        started.elapsed()
    );

    // The judge sees wrong data: a file data block changed in R must be a strict failure.
    {
        let fs = Fs::mount(image::device(&clean.recovered), image::options()).unwrap();
        let mut io = fs.io().unwrap();
        let ino = fs.lookup(&mut io, "/w/f1").unwrap();
        let inode = fs.read_inode(&mut io, ino).unwrap();
        let data_block = fs.extent_map(&mut io, &inode).unwrap().mappings()[0].physical_block;
        drop(io);
        drop(fs);
        let at = data_block * image::BLOCK as u64 + 5;
        let byte = clean.recovered[at as usize] ^ 1;
        let probe = Corruption {
            class: Class::BitFlip,
            base: Base::R,
            name: "file data".into(),
            edits: vec![(at, vec![byte])],
            strict: true,
        };
        let r = run_case(&probe, &clean, &Mutex::new(""));
        assert!(!r.failures.is_empty(), "a flipped data byte went unseen");
    }

    let campaign = Instant::now();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let watches: Vec<Watch> = (0..workers).map(|_| Watch::default()).collect();
    let stages: Vec<Mutex<&'static str>> = (0..workers).map(|_| Mutex::new("")).collect();
    // Panics of the workers are caught per case and reported with it; any other panic (a thread
    // of the stack's own, the harness) prints as usual.
    let prev_hook = std::sync::Arc::new(std::panic::take_hook());
    let forward = prev_hook.clone();
    std::panic::set_hook(Box::new(move |info| {
        let name = std::thread::current().name().map(str::to_string);
        if !name.is_some_and(|n| n.starts_with(WORKER)) {
            forward(info);
        }
    }));
    let mut tally = Tally::default();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (cases, clean, watch, stage) = (&cases, &clean, &watches[w], &stages[w]);
                let worker = std::thread::Builder::new().name(format!("{WORKER}{w}"));
                worker
                    .spawn_scoped(scope, move || {
                        let mut t = Tally::default();
                        for (i, case) in cases.iter().enumerate().skip(w).step_by(workers) {
                            watch.case.store(i, Ordering::Relaxed);
                            let ms = campaign.elapsed().as_millis() as u64 + 1;
                            watch.started_ms.store(ms, Ordering::Relaxed);
                            let start = Instant::now();
                            let result =
                                catch_unwind(AssertUnwindSafe(|| run_case(case, clean, stage)));
                            let took = start.elapsed();
                            watch.started_ms.store(0, Ordering::Relaxed);
                            t.timed(took, &case.name);
                            *t.images.entry(case.class).or_default() += 1;
                            t.strict += usize::from(case.strict);
                            let mut r = result.unwrap_or_else(|payload| CaseResult {
                                steps: Vec::new(),
                                failures: vec![format!(
                                    "panic in {}: {}",
                                    stage.lock().map_or("?", |s| *s),
                                    common_panic_message(&*payload)
                                )],
                            });
                            if took > SLOW_CASE {
                                r.failures.push(format!("took {took:?}"));
                            }
                            for (step, o) in r.steps {
                                *t.outcomes.entry((case.class, step, o)).or_default() += 1;
                            }
                            for f in r.failures {
                                t.failures.push(format!("case {i} [{}]: {f}", case.name));
                            }
                        }
                        t
                    })
                    .unwrap()
            })
            .collect();
        while !handles.iter().all(|h| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(100));
            let now = campaign.elapsed().as_millis() as u64 + 1;
            let heap = alloc::live_bytes();
            for watch in &watches {
                let started = watch.started_ms.load(Ordering::Relaxed);
                let case = &cases[watch.case.load(Ordering::Relaxed)];
                if started != 0 && now - started > HUNG_CASE.as_millis() as u64 {
                    eprintln!("HUNG for {HUNG_CASE:?}: {}", case.name);
                    std::process::abort();
                }
                if heap > HEAP_MAX_BYTES && started != 0 {
                    eprintln!("HEAP {heap} bytes; in flight: {}", case.name);
                }
            }
            if heap > HEAP_MAX_BYTES {
                std::process::abort();
            }
        }
        for h in handles {
            let t = h.join().unwrap();
            for (k, n) in t.images {
                *tally.images.entry(k).or_default() += n;
            }
            tally.strict += t.strict;
            for (k, n) in t.outcomes {
                *tally.outcomes.entry(k).or_default() += n;
            }
            tally.failures.extend(t.failures);
            tally.timed(t.slowest, &t.slowest_case);
        }
    });
    drop(std::panic::take_hook());
    if let Ok(hook) = std::sync::Arc::try_unwrap(prev_hook) {
        std::panic::set_hook(hook);
    }

    eprintln!(
        "{} corrupted images ({} strict) in {:.1?} on {workers} threads (seed {seed:#x}); \
         slowest case {:.1?} [{}]; peak heap {} MiB",
        cases.len(),
        tally.strict,
        campaign.elapsed(),
        tally.slowest,
        tally.slowest_case,
        alloc::peak_bytes() >> 20
    );
    for (class, n) in &tally.images {
        eprintln!("  {class:?}: {n} images");
    }
    for ((class, step, outcome), n) in &tally.outcomes {
        eprintln!("  {n:6}  {class:?} / {step}: {outcome:?}");
    }
    for f in tally.failures.iter().take(40) {
        eprintln!("FAIL {f}");
    }
    assert!(alloc::peak_bytes() < HEAP_MAX_BYTES);
    assert!(
        tally.failures.is_empty(),
        "{} failures, first: {}",
        tally.failures.len(),
        tally.failures[0]
    );
}

fn common_panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}
