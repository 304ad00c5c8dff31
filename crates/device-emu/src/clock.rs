//! The device's clock: nanoseconds since the device was opened, real or virtual.
//!
//! Promises:
//! - `now_ns` never goes backwards (per clock, across threads).
//! - `wait_until` returns with `now_ns() >= due_ns`. The real clock busy-waits the calling thread
//!   on the monotonic clock (never a sleep: sleeping overshoots by ~80 us here), yielding the CPU
//!   while the due time is more than 2 us away and spinning the rest; the virtual clock jumps
//!   forward to `due_ns` at once.
//! - The virtual clock starts at 0 and moves only through `wait_until`/`advance_to`, so one thread
//!   running the same workload sees the same times every run.

use crate::config::ClockKind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Closer than this to a due time, the waiting thread spins instead of yielding: a yield that
/// lets another thread run could overshoot by that thread's time on the CPU.
const YIELD_WINDOW_NS: u64 = 2_000;

#[derive(Debug)]
pub(crate) enum Clock {
    Real { epoch: Instant },
    Virtual { now_ns: AtomicU64 },
}

impl Clock {
    pub(crate) fn new(kind: ClockKind) -> Clock {
        match kind {
            ClockKind::Real => Clock::Real {
                epoch: Instant::now(),
            },
            ClockKind::Virtual => Clock::Virtual {
                now_ns: AtomicU64::new(0),
            },
        }
    }

    /// Nanoseconds since the device was opened (real), or the simulated time (virtual).
    #[inline]
    pub(crate) fn now_ns(&self) -> u64 {
        match self {
            // An u64 of nanoseconds lasts 584 years.
            Clock::Real { epoch } => epoch.elapsed().as_nanos() as u64,
            Clock::Virtual { now_ns } => now_ns.load(Ordering::Acquire),
        }
    }

    /// Returns once `now_ns() >= due_ns`.
    #[inline]
    pub(crate) fn wait_until(&self, due_ns: u64) {
        match self {
            Clock::Real { .. } => {
                // Yield while the due time is far (other polling threads may need this CPU),
                // spin the last stretch so the completion is noticed on time.
                loop {
                    let now_ns = self.now_ns();
                    if now_ns >= due_ns {
                        break;
                    }
                    if due_ns - now_ns > YIELD_WINDOW_NS {
                        std::thread::yield_now();
                    } else {
                        std::hint::spin_loop();
                    }
                }
            }
            Clock::Virtual { now_ns } => {
                now_ns.fetch_max(due_ns, Ordering::AcqRel);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_clock_jumps_and_never_goes_back() {
        let c = Clock::new(ClockKind::Virtual);
        assert_eq!(c.now_ns(), 0);
        c.wait_until(5_000);
        assert_eq!(c.now_ns(), 5_000);
        c.wait_until(10);
        assert_eq!(c.now_ns(), 5_000);
    }

    #[test]
    fn real_clock_spins_to_the_due_time() {
        let c = Clock::new(ClockKind::Real);
        let due = c.now_ns() + 20_000;
        c.wait_until(due);
        let now = c.now_ns();
        assert!(now >= due, "{now} < {due}");
    }
}
