//! The periodic commit: a thread that commits the running transaction once it is older than
//! the interval (the kernel's `commit=5`), so buffered data and metadata reach the disk
//! without an fsync. In `data=ordered` this is also the background writeback: the commit
//! writes the transaction's dirty data in place.
//!
//! # Invariants
//! - The thread has its own [`super::RwCtx`] (queues stay on their thread) and never waits
//!   for another leader: when a commit is in flight it tries again at the next tick.
//! - [`Flusher::stop`] returns only after the thread ended, so unmount owns the mount alone.
//! - A failed periodic commit makes the mount read-only like any other (the next operation
//!   reports it); the thread then ends.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aios_device::Device;

use super::RwShared;

/// How often the thread looks at the running transaction's age, at most.
const TICK_MAX: Duration = Duration::from_millis(500);

/// The running periodic-commit thread.
pub(super) struct Flusher {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: Option<JoinHandle<()>>,
}

impl Flusher {
    /// Starts the thread for `shared`, committing transactions older than `interval`.
    pub(super) fn start<D: Device + 'static>(
        shared: Arc<RwShared<D>>,
        interval: Duration,
    ) -> std::io::Result<Flusher> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stop_in = Arc::clone(&stop);
        let tick = (interval / 4).clamp(Duration::from_millis(1), TICK_MAX);
        let handle = std::thread::Builder::new()
            .name("aios-commit".into())
            .spawn(move || run(&shared, &stop_in, interval, tick))?;
        Ok(Flusher {
            stop,
            handle: Some(handle),
        })
    }

    /// Stops the thread and waits for it.
    pub(super) fn stop(mut self) {
        self.signal_and_join();
    }

    fn signal_and_join(&mut self) {
        let (flag, cv) = &*self.stop;
        *flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
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

fn run<D: Device>(
    shared: &RwShared<D>,
    stop: &(Mutex<bool>, Condvar),
    interval: Duration,
    tick: Duration,
) {
    let Ok(mut ctx) = shared.ctx() else {
        // No queue for this thread: syncs and unmount still commit; nothing periodic.
        return;
    };
    let (flag, cv) = stop;
    let mut stopped = flag.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if *stopped {
            return;
        }
        stopped = cv
            .wait_timeout(stopped, tick)
            .unwrap_or_else(|p| p.into_inner())
            .0;
        if *stopped {
            return;
        }
        let due = {
            let st = shared.lock();
            st.failed.is_none()
                && st
                    .running_since
                    .is_some_and(|since| Instant::now().duration_since(since) >= interval)
        };
        if due {
            drop(stopped);
            let failed = shared.commit_if_idle(&mut ctx).is_err();
            stopped = flag.lock().unwrap_or_else(|p| p.into_inner());
            if failed {
                return;
            }
        }
    }
}
