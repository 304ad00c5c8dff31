//! The per-stage latency breakdown of cached-read misses (the paper's stacked-bar figures).
//!
//! # Role
//! An [`IoCtx`](crate::IoCtx) may carry a [`Breakdown`]. When it does, every miss run of
//! [`Fs::read`](crate::Fs::read) (one device request, 1..=32 pages) records the nanoseconds it
//! spent in each [`Stage`], plus its critical path: from the start of its first lookup to the
//! end of its copy-out. Totals and counts accumulate until [`Breakdown::reset`].
//!
//! # Cost when off
//! The recorder is an `Option`: when it is `None` the read path makes no clock reads at all
//! (the stopwatch holds `None` and each lap is one branch). Cache hits are never recorded; with
//! the recorder on, a hit costs one clock read that is then dropped.
//!
//! # Reading the numbers
//! - Sync (vanilla) mode: every stage is on the critical path, one after another, so the stages
//!   sum to (about) the critical path.
//! - Async (AIOS) mode: [`Stage::CacheInsert`] and [`Stage::PoolRefill`] run after the submit,
//!   *inside* the device window, and [`Stage::DeviceWait`] is that whole window (submit return
//!   to completion seen). Those two stages therefore left the critical path: the stages sum to
//!   more than [`Breakdown::critical_path_ns`] by about their total.
//! - Read a breakdown in the order the misses ran, [`Fs::miss_order`](crate::Fs::miss_order):
//!   an async mount on a device that completes inside `submit` runs the vanilla steps (no
//!   window to overlap), so it records the sync stages and no [`Stage::PoolRefill`].

use std::time::Instant;

use crate::ReadMode;

/// A stage of a cached-read miss, named after the paper's read path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// Page-cache lookups that missed (the whole run's).
    Lookup,
    /// Memory for the pages: sync, from the arena; async, from the per-thread pool.
    PageAlloc,
    /// Inserting the pages into the cache: sync, before the submit; async, in the device window.
    CacheInsert,
    /// File offset -> device block with the extent map loaded at open.
    Map,
    /// Staging the request and ringing the device.
    Submit,
    /// From the submit's return to the completion seen.
    DeviceWait,
    /// Topping the page pool up (async only, in the device window).
    PoolRefill,
    /// Finishing the request and publishing the pages (`complete_fill`) or releasing duplicates.
    Complete,
    /// Copying the bytes to the caller.
    CopyOut,
}

/// Number of [`Stage`]s.
pub const STAGES: usize = 9;

impl Stage {
    /// Every stage, in the vanilla order of the read path.
    pub const ALL: [Stage; STAGES] = [
        Stage::Lookup,
        Stage::PageAlloc,
        Stage::CacheInsert,
        Stage::Map,
        Stage::Submit,
        Stage::DeviceWait,
        Stage::PoolRefill,
        Stage::Complete,
        Stage::CopyOut,
    ];

    /// The name used in tables and plots.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Lookup => "lookup",
            Stage::PageAlloc => "page_alloc",
            Stage::CacheInsert => "cache_insert",
            Stage::Map => "map",
            Stage::Submit => "submit",
            Stage::DeviceWait => "device_wait",
            Stage::PoolRefill => "pool_refill",
            Stage::Complete => "complete",
            Stage::CopyOut => "copy_out",
        }
    }

    /// True if a miss in `mode` goes through this stage (sync mode has no pool to refill).
    pub fn applies(self, mode: ReadMode) -> bool {
        !(self == Stage::PoolRefill && mode == ReadMode::Sync)
    }

    /// True if, in `mode`, the stage runs while the device works (off the critical path). Pass
    /// the order the misses ran in ([`Fs::miss_order`](crate::Fs::miss_order)), not the mount's
    /// read mode: an async mount on a device that completes inside `submit` overlaps nothing.
    pub fn overlapped(self, mode: ReadMode) -> bool {
        mode == ReadMode::Async && matches!(self, Stage::CacheInsert | Stage::PoolRefill)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Accumulated per-stage totals of the miss runs recorded since the last reset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Breakdown {
    totals_ns: [u64; STAGES],
    counts: [u64; STAGES],
    /// Miss runs recorded (one device request each, or one wait for another thread's page).
    pub misses: u64,
    /// Pages those runs covered.
    pub pages: u64,
    /// Sum over runs of first-lookup start to copy-out end.
    pub critical_path_ns: u64,
}

impl Breakdown {
    /// Total nanoseconds spent in `stage`.
    pub fn total_ns(&self, stage: Stage) -> u64 {
        self.totals_ns.get(stage.index()).copied().unwrap_or(0)
    }

    /// Runs that recorded `stage`.
    pub fn count(&self, stage: Stage) -> u64 {
        self.counts.get(stage.index()).copied().unwrap_or(0)
    }

    /// Mean nanoseconds per recorded run in `stage` (0 if none).
    pub fn mean_ns(&self, stage: Stage) -> u64 {
        self.total_ns(stage)
            .checked_div(self.count(stage))
            .unwrap_or(0)
    }

    /// Mean critical path per miss run (0 if none).
    pub fn mean_critical_path_ns(&self) -> u64 {
        self.critical_path_ns.checked_div(self.misses).unwrap_or(0)
    }

    /// Forgets everything recorded.
    pub fn reset(&mut self) {
        *self = Breakdown::default();
    }

    pub(crate) fn add(&mut self, sample: &Sample) {
        self.misses += 1;
        self.pages += sample.pages;
        self.critical_path_ns += sample.critical_path_ns;
        for stage in Stage::ALL {
            if let Some(ns) = sample.ns.get(stage.index()).copied().flatten() {
                if let Some(total) = self.totals_ns.get_mut(stage.index()) {
                    *total += ns;
                }
                if let Some(count) = self.counts.get_mut(stage.index()) {
                    *count += 1;
                }
            }
        }
    }
}

/// One miss run's stage times, before they are added to a [`Breakdown`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    ns: [Option<u64>; STAGES],
    pages: u64,
    critical_path_ns: u64,
}

/// The stopwatch of one miss run. Holds `None` (and reads no clock) when recording is off.
#[derive(Debug)]
pub(crate) struct Laps {
    start: Option<Instant>,
    last: Option<Instant>,
    sample: Sample,
}

impl Laps {
    /// Timing since `start` if it is set (the hit path reads the clock, and builds a `Laps`
    /// only once it knows it missed); otherwise every method is a no-op.
    pub fn started_at(start: Option<Instant>) -> Laps {
        Laps {
            start,
            last: start,
            sample: Sample::default(),
        }
    }

    /// Charges the time since the previous lap to `stage`.
    pub fn lap(&mut self, stage: Stage) {
        if let Some(last) = self.last {
            let now = Instant::now();
            self.charge(stage, now.saturating_duration_since(last).as_nanos());
            self.last = Some(now);
        }
    }

    /// The last lap boundary, if recording: the start of a window that spans several laps.
    pub fn mark(&self) -> Option<Instant> {
        self.last
    }

    /// Charges the time since `since` (a [`mark`](Self::mark)) to `stage` and makes now the lap
    /// boundary: the stages lapped inside the window are counted twice, on purpose (they overlap
    /// it).
    pub fn window(&mut self, stage: Stage, since: Option<Instant>) {
        if let Some(since) = since {
            let now = Instant::now();
            self.charge(stage, now.saturating_duration_since(since).as_nanos());
            self.last = Some(now);
        }
    }

    fn charge(&mut self, stage: Stage, ns: u128) {
        let ns = u64::try_from(ns).unwrap_or(u64::MAX);
        if let Some(slot) = self.sample.ns.get_mut(stage.index()) {
            *slot = Some(slot.unwrap_or(0).saturating_add(ns));
        }
    }

    /// Ends the run: the critical path is start to now. `None` when recording is off.
    pub fn finish(mut self, pages: usize) -> Option<Sample> {
        let start = self.start?;
        self.sample.pages = pages as u64;
        self.sample.critical_path_ns =
            u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        Some(self.sample)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_records_nothing() {
        let mut laps = Laps::started_at(None);
        laps.lap(Stage::Lookup);
        assert!(laps.mark().is_none());
        assert!(laps.finish(1).is_none());
    }

    #[test]
    fn on_accumulates_counts_and_totals() {
        let mut b = Breakdown::default();
        for _ in 0..3 {
            let mut laps = Laps::started_at(Some(Instant::now()));
            std::thread::sleep(std::time::Duration::from_micros(10));
            laps.lap(Stage::Lookup);
            let mark = laps.mark();
            laps.lap(Stage::Submit);
            laps.window(Stage::DeviceWait, mark);
            b.add(&laps.finish(2).unwrap());
        }
        assert_eq!(b.misses, 3);
        assert_eq!(b.pages, 6);
        assert_eq!(b.count(Stage::Lookup), 3);
        assert_eq!(b.count(Stage::CopyOut), 0);
        assert!(b.total_ns(Stage::Lookup) >= 30_000);
        assert!(b.critical_path_ns >= b.total_ns(Stage::Lookup));
        assert!(Stage::ALL.iter().enumerate().all(|(i, s)| s.index() == i));
    }
}
