//! The seeded mutation loop: the stable-toolchain stand-in for libFuzzer. Iteration `i` of a run
//! with base seed `s` mutates a seed chosen by `Rng::new(s ^ i)`, so a failure names the one
//! number that replays it. Each input runs under `catch_unwind`; a panic is recorded with its
//! input, never stops the run.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::mutate::{mutant, Rng};
use crate::targets::{Target, Verdict};

/// One panicking input.
#[derive(Debug, Clone)]
pub struct Crash {
    /// The iteration seed (`base ^ iteration`) that rebuilds the input.
    pub seed: u64,
    /// The panic message.
    pub message: String,
    /// The input.
    pub input: Vec<u8>,
}

/// What a run of one target saw.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Inputs run (the seeds themselves first, then mutants).
    pub executions: u64,
    /// Inputs that decoded.
    pub decoded: u64,
    /// Inputs refused with a typed error.
    pub refused: u64,
    /// Panicking inputs.
    pub crashes: Vec<Crash>,
    /// The slowest input.
    pub slowest: Duration,
}

/// The panic message of a caught panic.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

fn exec(target: Target, input: &[u8], seed: u64, report: &mut Report) {
    let start = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| target(input)));
    report.slowest = report.slowest.max(start.elapsed());
    report.executions += 1;
    match outcome {
        Ok(Verdict::Decoded) => report.decoded += 1,
        Ok(Verdict::Refused) => report.refused += 1,
        Err(payload) => report.crashes.push(Crash {
            seed,
            message: panic_message(&*payload),
            input: input.to_vec(),
        }),
    }
}

/// The input of iteration seed `seed` (as [`run`] builds it).
pub fn input_for(corpus: &[Vec<u8>], seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let base = &corpus[rng.index(corpus.len())];
    mutant(base, corpus, &mut rng)
}

/// Runs `target` on every seed of `corpus`, then on `iterations` mutants. The caller installs a
/// quiet panic hook if it wants one.
pub fn run(target: Target, corpus: &[Vec<u8>], iterations: u64, base_seed: u64) -> Report {
    let mut report = Report::default();
    for seed in corpus {
        exec(target, seed, u64::MAX, &mut report);
    }
    if corpus.is_empty() {
        return report;
    }
    for i in 0..iterations {
        let seed = base_seed ^ i;
        exec(target, &input_for(corpus, seed), seed, &mut report);
    }
    report
}
