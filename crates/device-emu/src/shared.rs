//! [`Shared`]: the part of the emulated device that its handles ([`crate::EmuDevice`]) and its
//! queues ([`crate::EmuQueue`]) hold in common through one `Arc`: configuration, device info,
//! arena, fault injector, clock, and the media [`State`] behind one mutex.
//!
//! # Invariants
//! - The state is reached only through [`Shared::lock`], which never poisons: a panic while
//!   holding the lock leaves the state as consistent as any single step.

use crate::clock::Clock;
use crate::config::EmuConfig;
use crate::state::State;
use aios_device::{Arena, DeviceInfo, FaultInjector};
use std::sync::{Arc, Mutex, MutexGuard};

pub(crate) struct Shared {
    pub(crate) config: EmuConfig,
    pub(crate) info: DeviceInfo,
    pub(crate) arena: Arc<Arena>,
    pub(crate) faults: FaultInjector,
    pub(crate) clock: Clock,
    state: Mutex<State>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmuDevice")
            .field("info", &self.info)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// The shared part of a new device, with no fault plan.
    pub(crate) fn new(
        config: EmuConfig,
        info: DeviceInfo,
        arena: Arc<Arena>,
        clock: Clock,
        state: State,
    ) -> Shared {
        Shared {
            clock,
            config,
            info,
            arena,
            faults: FaultInjector::default(),
            state: Mutex::new(state),
        }
    }

    #[inline]
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state as consistent as any single step; keep
        // serving rather than poisoning every later caller.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state with everything due by now completed.
    pub(crate) fn lock_now(&self) -> MutexGuard<'_, State> {
        let mut state = self.lock();
        let now_ns = self.clock.now_ns();
        state.tracker.advance(now_ns);
        state
    }
}
