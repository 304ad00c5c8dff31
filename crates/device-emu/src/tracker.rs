//! The live side of durability: feeds the [`Durability`] machine the events of the running device
//! in canonical order (see [`crate::log`]) and records them when the log is on.
//!
//! Completions are processed lazily: every call that looks at or changes media state first calls
//! [`Tracker::advance`], which completes every write and flush due by `now_ns` in (due, id) order.
//! Since this happens before each submission, a command due at or before a submission's time has
//! completed before that submission, which is the canonical order.
//!
//! A volatile cache holding more than `cache_bytes_max` of completed, unflushed data writes it all
//! back at the next submission: an implicit flush, submitted and completed at that instant, and
//! logged as such.

use crate::durability::Durability;
use crate::log::{LoggedCommand, WriteLog};
use crate::{DiskImage, EmuError};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

#[derive(Debug)]
pub(crate) struct Tracker {
    state: Durability,
    /// Writes and flushes submitted and not yet completed: `(due_ns, id)`.
    in_flight: BinaryHeap<Reverse<(u64, u64)>>,
    cache_bytes_max: u64,
    log: Option<WriteLog>,
}

impl Tracker {
    pub(crate) fn new(
        durable: DiskImage,
        volatile_cache: bool,
        cache_bytes_max: u64,
        record: bool,
    ) -> Result<Tracker, EmuError> {
        let log = if record {
            Some(WriteLog::new(
                Arc::new(durable.try_clone()?),
                volatile_cache,
            ))
        } else {
            None
        };
        Ok(Tracker {
            state: Durability::new(durable, volatile_cache, false),
            in_flight: BinaryHeap::new(),
            cache_bytes_max,
            log,
        })
    }

    pub(crate) fn state(&self) -> &Durability {
        &self.state
    }

    pub(crate) fn log(&self) -> Option<&WriteLog> {
        self.log.as_ref()
    }

    /// Completes everything due by `now_ns`.
    #[inline]
    pub(crate) fn advance(&mut self, now_ns: u64) {
        while let Some(&Reverse((due_ns, id))) = self.in_flight.peek() {
            if due_ns > now_ns {
                break;
            }
            self.in_flight.pop();
            // The heap holds exactly the submitted, uncompleted ids, so this cannot fail.
            let done = self.state.complete(id);
            debug_assert!(done.is_ok(), "{done:?}");
            if let Some(log) = &mut self.log {
                log.record_completion(id, due_ns);
            }
        }
    }

    /// A write reaches the device at `now_ns` and completes at `due_ns`.
    pub(crate) fn submit_write(
        &mut self,
        now_ns: u64,
        due_ns: u64,
        offset_bytes: u64,
        data: &[u8],
        fua: bool,
    ) {
        self.before_submit(now_ns);
        let id = self.state.submit_write(offset_bytes, data, fua);
        self.in_flight.push(Reverse((due_ns, id)));
        if let Some(log) = &mut self.log {
            let command = LoggedCommand::Write {
                offset_bytes,
                data: Arc::from(data),
                fua,
                submit_ns: now_ns,
                complete_ns: due_ns,
            };
            log.record_command(command, now_ns);
        }
    }

    /// A flush reaches the device at `now_ns`; `schedule(dirty_blocks)` gives its due time.
    pub(crate) fn submit_flush(&mut self, now_ns: u64, schedule: impl FnOnce(u64) -> u64) -> u64 {
        self.before_submit(now_ns);
        let (id, dirty_blocks) = self.state.submit_flush();
        let due_ns = schedule(dirty_blocks);
        self.in_flight.push(Reverse((due_ns, id)));
        self.log_flush(now_ns, due_ns, false);
        due_ns
    }

    fn before_submit(&mut self, now_ns: u64) {
        self.advance(now_ns);
        if self.state.dirty_bytes() > self.cache_bytes_max {
            let (id, _) = self.state.submit_flush();
            self.log_flush(now_ns, now_ns, true);
            let done = self.state.complete(id);
            debug_assert!(done.is_ok(), "{done:?}");
            if let Some(log) = &mut self.log {
                log.record_completion(id, now_ns);
            }
        }
    }

    fn log_flush(&mut self, submit_ns: u64, complete_ns: u64, implicit: bool) {
        if let Some(log) = &mut self.log {
            let command = LoggedCommand::Flush {
                submit_ns,
                complete_ns,
                implicit,
            };
            log.record_command(command, submit_ns);
        }
    }
}
