//! The periodic commit: a thread that commits the running transaction once it is older than
//! the interval (the kernel's `commit=5`), so buffered data and metadata reach the disk
//! without an fsync. It is also the background writeback: kicked past the background dirty
//! mark, it writes the dirty data in place without a commit (`data=ordered`; `data=journal`
//! commits, since its data may go home only after its commit).
//!
//! # Invariants
//! - The thread has its own [`super::RwCtx`] (queues stay on their thread) and never waits
//!   for another leader: when a commit is in flight it tries again at the next tick.
//! - [`Flusher::stop`] returns only after the thread ended, so unmount owns the mount alone.
//! - A failed periodic commit makes the mount read-only like any other (the next operation
//!   reports it); the thread then ends.
//! - Lock order: the state lock, then the thread's signals (a writer kicks holding the state
//!   lock); the thread never holds its signals while it takes the state lock.
//! - Dirty data past [`super::RwOptions::dirty_background_percent`] of the cache kicks the
//!   thread: it writes the data back at once (the kernel's background writeback), while the
//!   writers go on; past [`super::RwOptions::dirty_percent`] a writer writes back itself down
//!   to the background mark (`state`, `sync::write_back_to`; `data=journal`: commits).

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use aios_device::Device;

use super::RwShared;

/// How often the thread looks at the running transaction's age, at most.
const TICK_MAX: Duration = Duration::from_millis(500);

/// What the thread is told between ticks.
#[derive(Debug, Default)]
struct Signals {
    stop: bool,
    /// Dirty data passed the background mark: commit now.
    kicked: bool,
}

/// The thread's wake-up: stop, or commit now (dirty data past the background mark). Owned by
/// the mount, so writers can kick it; a kick with no thread running is a no-op.
#[derive(Debug, Default)]
pub(super) struct Kick {
    signals: Mutex<Signals>,
    cv: Condvar,
}

impl Kick {
    /// Asks the thread to commit now.
    pub(super) fn kick(&self) {
        let mut s = self.signals.lock().unwrap_or_else(|p| p.into_inner());
        if !s.kicked {
            s.kicked = true;
            self.cv.notify_all();
        }
    }

    fn stop(&self) {
        self.signals.lock().unwrap_or_else(|p| p.into_inner()).stop = true;
        self.cv.notify_all();
    }
}

/// The running periodic-commit thread.
pub(super) struct Flusher {
    kick: Arc<Kick>,
    handle: Option<JoinHandle<()>>,
}

impl Flusher {
    /// Starts the thread for `shared`, committing transactions older than `interval`, or at
    /// once when kicked.
    pub(super) fn start<D: Device + 'static>(
        shared: Arc<RwShared<D>>,
        interval: Duration,
    ) -> std::io::Result<Flusher> {
        let kick = Arc::clone(&shared.flusher_kick);
        let tick = (interval / 4).clamp(Duration::from_millis(1), TICK_MAX);
        let handle = std::thread::Builder::new()
            .name("aios-commit".into())
            .spawn(move || run(&shared, interval, tick))?;
        Ok(Flusher {
            kick,
            handle: Some(handle),
        })
    }

    /// Stops the thread and waits for it.
    pub(super) fn stop(mut self) {
        self.signal_and_join();
    }

    fn signal_and_join(&mut self) {
        self.kick.stop();
        if let Some(h) = self.handle.take() {
            // A panic in the thread was already reported on it; nothing to add here.
            let _ = h.join();
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.signal_and_join();
    }
}

fn run<D: Device>(shared: &RwShared<D>, interval: Duration, tick: Duration) {
    let Ok(mut ctx) = shared.ctx() else {
        // No queue for this thread: syncs and unmount still commit; nothing periodic.
        return;
    };
    let Kick { signals, cv } = &*shared.flusher_kick;
    loop {
        let kicked = {
            let mut s = signals.lock().unwrap_or_else(|p| p.into_inner());
            if !s.stop && !s.kicked {
                s = cv
                    .wait_timeout(s, tick)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            if s.stop {
                return;
            }
            std::mem::take(&mut s.kicked)
        };
        // The signals are released before the state lock is taken: a writer kicks with the
        // state lock held, so holding both here in the other order would deadlock.
        let ordered = shared.options.data == super::DataMode::Ordered;
        if kicked && ordered && shared.write_back_if_idle(&mut ctx).is_err() {
            return;
        }
        let due = {
            let st = shared.lock();
            st.failed.is_none()
                && st
                    .running_since
                    .is_some_and(|since| (kicked && !ordered) || since.elapsed() >= interval)
        };
        if due && shared.commit_if_idle(&mut ctx).is_err() {
            return;
        }
    }
}
