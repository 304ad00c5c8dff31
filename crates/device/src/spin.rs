//! Busy-waiting that shares the CPU.
//!
//! Polled completion spins on the submitting thread instead of sleeping: on this VM a wake-up
//! costs ~16 us, a spin notices a completion within tens of nanoseconds. But a pure spinner holds
//! its vCPU for a whole scheduler slice (milliseconds) when more threads poll than there are
//! CPUs. [`PoliteSpin`] therefore yields every few spins: alone on its CPU, `sched_yield` returns
//! at once (~0.2 us, a bounded detection delay); with others runnable, they get the CPU.

/// Spins between yields: small, so a completion is noticed within ~1 us even when yielding.
pub const SPINS_PER_YIELD: u32 = 8;

/// A spin-wait step counter; call [`PoliteSpin::pause`] once per failed poll.
#[derive(Debug, Default)]
pub struct PoliteSpin {
    spins: u32,
}

impl PoliteSpin {
    pub fn new() -> Self {
        PoliteSpin::default()
    }

    /// One step of waiting: a CPU pause, or every [`SPINS_PER_YIELD`] steps a yield.
    pub fn pause(&mut self) {
        self.spins = self.spins.wrapping_add(1);
        if self.spins.is_multiple_of(SPINS_PER_YIELD) {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}
