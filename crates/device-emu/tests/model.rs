//! Property test: random writes, flushes, FUA writes, submissions, reaps and crashes, checked
//! against a model that knows only what the caller can see (what was submitted and reaped, and in
//! which order). After every crash, each block must hold its newest durable value or a value
//! written after it; losing every candidate must give exactly the durable values, keeping every
//! one exactly the newest values; and the log must replay the live crash.
//!
//! On the virtual clock a command has completed exactly when it was reaped (positive latencies:
//! a reap returns everything due, and time moves only in reaps) or, on `instant`, when it was
//! submitted. A write is durable once completed if it had FUA or the cache is non-volatile, and
//! otherwise once a flush submitted after its completion has completed.

mod common;

use common::{pattern, Driver};
use proptest::prelude::*;
use std::collections::HashMap;

const BLOCKS: u64 = 16;

#[derive(Debug, Clone)]
enum Step {
    Write { block: u64, blocks: u64, fua: bool },
    Flush,
    Submit,
    Reap(usize),
    Crash(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..BLOCKS, 1..4u64, any::<bool>()).prop_map(|(block, blocks, fua)| Step::Write {
            block: block.min(BLOCKS - blocks),
            blocks,
            fua,
        }),
        2 => Just(Step::Flush),
        2 => Just(Step::Submit),
        3 => (1..4usize).prop_map(Step::Reap),
        2 => any::<u64>().prop_map(Step::Crash),
    ]
}

#[derive(Debug, Default)]
struct Cmd {
    /// `None` for a flush.
    write: Option<(u64, u64, bool)>,
    submitted: Option<u64>,
    reaped: Option<u64>,
}

/// What the caller knows, stamped with a logical clock of its own actions.
struct Model {
    volatile: bool,
    /// Zero latency: commands complete when submitted.
    instant: bool,
    cmds: Vec<Cmd>,
    by_tag: HashMap<u16, usize>,
    staged: Vec<usize>,
    now: u64,
}

impl Model {
    fn tick(&mut self) -> u64 {
        self.now += 1;
        self.now
    }

    fn submit(&mut self) {
        for i in std::mem::take(&mut self.staged) {
            self.cmds[i].submitted = Some(self.tick());
        }
    }

    /// When the command completed, on the model's logical clock.
    fn completed(&self, cmd: &Cmd) -> Option<u64> {
        if self.instant {
            cmd.submitted
        } else {
            cmd.reaped
        }
    }

    fn durable(&self, w: usize) -> bool {
        let cmd = &self.cmds[w];
        let (Some(completed), Some((_, _, fua))) = (self.completed(cmd), cmd.write) else {
            return false;
        };
        fua || !self.volatile
            || self.cmds.iter().any(|f| {
                f.write.is_none()
                    && self.completed(f).is_some()
                    && f.submitted.is_some_and(|s| s > completed)
            })
    }

    /// The values block `b` may hold after a crash now: the newest durable value first, then
    /// every value written after it, in submission order.
    fn allowed(&self, b: u64) -> Vec<Vec<u8>> {
        let writes: Vec<(usize, u64)> = self
            .cmds
            .iter()
            .enumerate()
            .filter(|(_, c)| c.submitted.is_some())
            .filter_map(|(i, c)| {
                let (first, n, _) = c.write?;
                (first..first + n).contains(&b).then(|| (i, b - first))
            })
            .collect();
        let newest_durable = writes.iter().rposition(|&(i, _)| self.durable(i));
        let mut allowed = match newest_durable {
            None => vec![vec![0u8; common::BLOCK]],
            Some(_) => Vec::new(),
        };
        for &(i, offset) in &writes[newest_durable.unwrap_or(0)..] {
            allowed.push(pattern(i as u64, offset));
        }
        allowed
    }
}

fn check_crash(d: &Driver, model: &Model, seed: u64) -> Result<(), TestCaseError> {
    let image = d.dev.crash(seed).unwrap();
    let lose_all = d.dev.crash_with(|_| false).unwrap();
    let keep_all = d.dev.crash_with(|_| true).unwrap();
    for b in 0..BLOCKS {
        let allowed = model.allowed(b);
        let got = image.block(b).unwrap().to_vec();
        prop_assert!(
            allowed.contains(&got),
            "seed {seed} block {b}: a value the model does not allow"
        );
        prop_assert!(
            lose_all.block(b) == allowed.first().map(Vec::as_slice),
            "block {b} durable"
        );
        prop_assert!(
            keep_all.block(b) == allowed.last().map(Vec::as_slice),
            "block {b} newest"
        );
    }
    let log = d.dev.log().unwrap();
    let replay = log.replay_to(log.point_at(d.dev.now_ns())).unwrap();
    prop_assert_eq!(
        replay.image_seeded(seed).unwrap(),
        image,
        "log replay differs"
    );
    Ok(())
}

fn run(spec: &str, steps: &[Step]) -> Result<(), TestCaseError> {
    let mut d = Driver::open(spec);
    let mut model = Model {
        volatile: d.dev.config().volatile_cache,
        instant: d
            .dev
            .config()
            .latency
            .idle_latency_ns(aios_device::Op::Read, 0)
            == 0,
        cmds: Vec::new(),
        by_tag: HashMap::new(),
        staged: Vec::new(),
        now: 0,
    };
    for step in steps {
        if aios_device::Queue::outstanding(&d.q) >= 48 {
            reap(&mut d, &mut model, usize::MAX);
        }
        match *step {
            Step::Write { block, blocks, fua } => {
                let id = model.cmds.len() as u64;
                let data: Vec<u8> = (0..blocks).flat_map(|j| pattern(id, j)).collect();
                let tag = d.push_write(block, &data, fua);
                stage(&mut model, tag, Some((block, blocks, fua)));
            }
            Step::Flush => {
                let tag = d.push_flush();
                stage(&mut model, tag, None);
            }
            Step::Submit => {
                d.submit();
                model.submit();
            }
            Step::Reap(min) => reap(&mut d, &mut model, min),
            Step::Crash(seed) => check_crash(&d, &model, seed)?,
        }
    }
    reap(&mut d, &mut model, usize::MAX);
    check_crash(&d, &model, 7)?;
    Ok(())
}

fn stage(model: &mut Model, tag: u16, write: Option<(u64, u64, bool)>) {
    model.by_tag.insert(tag, model.cmds.len());
    model.staged.push(model.cmds.len());
    model.cmds.push(Cmd {
        write,
        ..Cmd::default()
    });
}

fn reap(d: &mut Driver, model: &mut Model, min: usize) {
    model.submit(); // reap submits whatever is staged first
    let done = if min == usize::MAX {
        d.reap_all()
    } else {
        d.reap(min)
    };
    for c in done {
        assert!(c.result.is_ok(), "{c:?}");
        let i = model.by_tag.remove(&c.tag).expect("known tag");
        model.cmds[i].reaped = Some(model.tick());
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn crash_images_hold_only_values_the_model_allows(
        preset in prop_oneof![
            Just("instant"),
            Just("nand"),
            Just("ull,cache=volatile"),
            Just("ull"),
            Just("ull,cache=volatile,channels=1,bw=0,flush=20us"),
        ],
        steps in proptest::collection::vec(step(), 1..60),
    ) {
        run(&format!("{preset},size=64K,arena=1M,clock=virtual,record"), &steps)?;
    }
}
