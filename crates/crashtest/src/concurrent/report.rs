//! The report of `aios crashtest --concurrent`: what the threads did, the crashes taken and
//! checked (and how many demanded an acknowledged sync, so a clean result is not vacuous),
//! and every violation kept in full.

use std::time::Duration;

use aios_fs::RwStats;

use super::Options;

/// What a run did.
#[derive(Debug, Default)]
pub struct Report {
    pub threads: usize,
    /// Actions each thread finished (ops and reads).
    pub actions: Vec<usize>,
    pub ops_logged: usize,
    pub reads: usize,
    /// Reads of another thread's files while it changed them.
    pub cross_reads: usize,
    pub syncs_acked: usize,
    pub stats: RwStats,
    pub crashes_taken: usize,
    /// Crashes recovered and checked for every thread.
    pub crashes_checked: usize,
    /// Of those, crashes where some thread had an acknowledged sync to show.
    pub crashes_demanding: usize,
    /// Crash images whose recovery replayed a journal.
    pub replayed: usize,
    /// Thread pairs where one's recovered ops demanded ops of the other (real-time order).
    pub cross_thread_demands: usize,
    pub e2fsck_runs: usize,
    pub violations_total: usize,
    /// The first violations in full.
    pub violations: Vec<String>,
    /// The threads' run (mount to unmount).
    pub run_elapsed: Duration,
    pub elapsed: Duration,
}

/// Violations kept in full.
const VIOLATIONS_KEPT: usize = 10;

impl Report {
    pub(super) fn violation(&mut self, what: String) {
        self.violations_total += 1;
        if self.violations.len() < VIOLATIONS_KEPT {
            self.violations.push(what);
        }
    }

    pub fn actions_per_second(&self) -> f64 {
        let total: usize = self.actions.iter().sum();
        total as f64 / self.run_elapsed.as_secs_f64().max(1e-9)
    }

    /// Prints the report to standard output (errors ignored: for tests).
    pub fn print(&self, options: &Options) {
        let _ = self.write_to(&mut std::io::stdout().lock(), options);
    }

    pub fn write_to(
        &self,
        out: &mut impl std::io::Write,
        options: &Options,
    ) -> std::io::Result<()> {
        let s = &self.stats;
        writeln!(out, "crashtest {}", options.flags())?;
        writeln!(
            out,
            "run: {} threads, actions per thread {:?} ({} ops logged, {} reads, {} of another \
             thread's files), {:.1} s, {:.0} actions/s; {} syncs acknowledged, {} commits ({} \
             periodic, {} checkpointed first), {} data syncs, {} writebacks, {} metadata blocks \
             evicted",
            self.threads,
            self.actions,
            self.ops_logged,
            self.reads + self.cross_reads,
            self.cross_reads,
            self.run_elapsed.as_secs_f64(),
            self.actions_per_second(),
            self.syncs_acked,
            s.commits,
            s.periodic_commits,
            s.checkpoints,
            s.data_syncs,
            s.writebacks,
            s.metadata_evictions
        )?;
        writeln!(
            out,
            "crashes: {} taken mid-run, {} checked ({} with acknowledged syncs to show, {} \
             replayed a journal; {} cross-thread order demands), e2fsck -fn {} runs (crashes \
             and the final image); {:.1} s in all",
            self.crashes_taken,
            self.crashes_checked,
            self.crashes_demanding,
            self.replayed,
            self.cross_thread_demands,
            self.e2fsck_runs,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(out, "violations: {}", self.violations_total)?;
        for v in &self.violations {
            writeln!(out, "{v}")?;
        }
        Ok(())
    }
}
