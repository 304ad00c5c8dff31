//! The write log: what a crash-state enumerator (a CrashMonkey/ACE-like harness) needs to crash a
//! recorded workload "at every boundary".
//!
//! # What is recorded
//! With `record=on`, from the moment the device opens:
//! - the **base image**: the device's contents at open (nothing is pending then);
//! - every **command** that changes media state, in submission order, numbered from 1 (its *id*):
//!   writes (offset, data, FUA, submit and completion time) and flushes (submit and completion
//!   time; `implicit` for the write-backs of a full volatile cache). Reads and failed (injected)
//!   commands leave no trace: they change nothing;
//! - the **events**, in *canonical order*: each command's `Submit` and `Complete`. Submissions come
//!   in id order; before the submission at time `t`, every command due at or before `t` completes,
//!   in (due time, id) order. So a command due at its own submission time (a zero-latency device)
//!   completes before the next submission. Event times never decrease.
//!
//! # Crash points and crash states
//! A crash point `k` (`0..=events.len()`) is the state after the first `k` events; several points
//! may share a time. The live device crashing at time `T` is in the state of the last point whose
//! events all have times `<= T` ([`WriteLog::point_at`]). At a point, the durability rules of
//! [`crate::durability`] give the set of *durable writes* and the *candidates*: 4 KiB block-writes
//! of not-yet-durable writes whose block holds no newer durable write. A crash image is the
//! durable image plus any subset of candidates applied in id order ([`Replay::image_with`]); with a
//! seed, each candidate is kept with probability 1/2 ([`Replay::image_seeded`]), exactly as
//! [`crate::EmuDevice::crash`] chooses. Same log, point and seed: same image.
//!
//! A [`Replay`] walks the log forward once, so enumerating every point of a log costs one pass
//! plus the images built.

use crate::durability::{seeded_choice, BadEvent, BlockWrite, Durability};
use crate::{DiskImage, EmuError};
use std::sync::Arc;

/// A write or flush as the device saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoggedCommand {
    Write {
        offset_bytes: u64,
        data: Arc<[u8]>,
        fua: bool,
        submit_ns: u64,
        complete_ns: u64,
    },
    Flush {
        submit_ns: u64,
        complete_ns: u64,
        /// A write-back of a full volatile cache, not a flush anybody issued.
        implicit: bool,
    },
}

/// The two moments of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Submit,
    Complete,
}

/// One event of the canonical order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LogEvent {
    /// The command's id (index into [`WriteLog::commands`] plus one).
    pub id: u64,
    pub kind: EventKind,
    pub time_ns: u64,
}

/// A boundary between events: the state after the first `events` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CrashPoint {
    pub events: usize,
    /// The time of the last applied event (0 before the first).
    pub time_ns: u64,
}

/// A recorded workload: base image, commands and events. Cloning is cheap (shared data).
#[derive(Debug, Clone)]
pub struct WriteLog {
    base: Arc<DiskImage>,
    volatile_cache: bool,
    commands: Vec<LoggedCommand>,
    events: Vec<LogEvent>,
}

impl WriteLog {
    pub(crate) fn new(base: Arc<DiskImage>, volatile_cache: bool) -> WriteLog {
        WriteLog {
            base,
            volatile_cache,
            commands: Vec::new(),
            events: Vec::new(),
        }
    }

    pub(crate) fn record_command(&mut self, command: LoggedCommand, now_ns: u64) {
        self.commands.push(command);
        self.events.push(LogEvent {
            id: self.commands.len() as u64,
            kind: EventKind::Submit,
            time_ns: now_ns,
        });
    }

    pub(crate) fn record_completion(&mut self, id: u64, due_ns: u64) {
        self.events.push(LogEvent {
            id,
            kind: EventKind::Complete,
            time_ns: due_ns,
        });
    }

    /// The image when recording started.
    pub fn base_image(&self) -> &DiskImage {
        &self.base
    }

    pub fn volatile_cache(&self) -> bool {
        self.volatile_cache
    }

    /// Writes and flushes in submission order; id `n` is `commands()[n - 1]`.
    pub fn commands(&self) -> &[LoggedCommand] {
        &self.commands
    }

    /// The command with id `id`.
    pub fn command(&self, id: u64) -> Option<&LoggedCommand> {
        self.commands.get(usize::try_from(id.checked_sub(1)?).ok()?)
    }

    /// Events in canonical order.
    pub fn events(&self) -> &[LogEvent] {
        &self.events
    }

    /// Every boundary, from before the first event to after the last.
    pub fn crash_points(&self) -> Vec<CrashPoint> {
        (0..=self.events.len()).map(|k| self.point(k)).collect()
    }

    /// The distinct event times, ascending (several boundaries may share one).
    pub fn crash_times_ns(&self) -> Vec<u64> {
        let mut times: Vec<u64> = self.events.iter().map(|e| e.time_ns).collect();
        times.dedup();
        times
    }

    /// The state of a crash at time `time_ns`: every event at or before it applied.
    pub fn point_at(&self, time_ns: u64) -> CrashPoint {
        self.point(self.events.partition_point(|e| e.time_ns <= time_ns))
    }

    /// The crash point after `events` events (clamped to the log's length).
    pub fn point(&self, events: usize) -> CrashPoint {
        let events = events.min(self.events.len());
        let time_ns = events
            .checked_sub(1)
            .map_or(0, |last| self.events[last].time_ns);
        CrashPoint { events, time_ns }
    }

    /// A replay at crash point 0 (the base image, nothing pending).
    pub fn replay(&self) -> Result<Replay<'_>, EmuError> {
        Ok(Replay {
            log: self,
            state: Durability::new(self.base.try_clone()?, self.volatile_cache, true),
            applied: 0,
        })
    }

    /// A replay at the state of a crash at `time_ns` (see [`WriteLog::point_at`]).
    pub fn replay_at_time(&self, time_ns: u64) -> Result<Replay<'_>, EmuError> {
        self.replay_to(self.point_at(time_ns))
    }

    /// A replay at `point`.
    pub fn replay_to(&self, point: CrashPoint) -> Result<Replay<'_>, EmuError> {
        let mut replay = self.replay()?;
        replay.advance_to(point)?;
        Ok(replay)
    }
}

/// The durability state at one crash point of a log, moving forward only.
#[derive(Debug)]
pub struct Replay<'a> {
    log: &'a WriteLog,
    state: Durability,
    applied: usize,
}

impl Replay<'_> {
    /// Where the replay stands.
    pub fn point(&self) -> CrashPoint {
        self.log.point(self.applied)
    }

    /// Applies events up to `point`.
    pub fn advance_to(&mut self, point: CrashPoint) -> Result<(), EmuError> {
        let events = self.log.events.len();
        if point.events > events {
            return Err(EmuError::BadCrashPoint {
                requested: point.events,
                events,
            });
        }
        if point.events < self.applied {
            return Err(EmuError::ReplayBackwards {
                at: self.applied,
                requested: point.events,
            });
        }
        while self.applied < point.events {
            self.apply(self.applied)?;
            self.applied += 1;
        }
        Ok(())
    }

    fn apply(&mut self, index: usize) -> Result<(), EmuError> {
        let bad = |BadEvent(reason)| EmuError::BadLog { index, reason };
        let event = self.log.events[index];
        match event.kind {
            EventKind::Complete => self.state.complete(event.id).map_err(bad),
            EventKind::Submit => {
                let id = match self.log.command(event.id) {
                    Some(LoggedCommand::Write {
                        offset_bytes,
                        data,
                        fua,
                        ..
                    }) => self.state.submit_write(*offset_bytes, data, *fua),
                    Some(LoggedCommand::Flush { .. }) => self.state.submit_flush().0,
                    None => return Err(bad(BadEvent("submission of an unknown command"))),
                };
                if id != event.id {
                    return Err(bad(BadEvent("submissions out of id order")));
                }
                Ok(())
            }
        }
    }

    /// The ids of the writes that are durable here, ascending. (Some of their blocks may hold a
    /// newer durable write.)
    pub fn durable_writes(&self) -> Vec<u64> {
        let mut ids = self.state.durable_ids().to_vec();
        ids.sort_unstable();
        ids
    }

    /// The image with durable writes only (every candidate lost).
    pub fn durable_image(&self) -> &DiskImage {
        self.state.durable()
    }

    /// The block-writes a crash here may or may not keep, in (id, block) order.
    pub fn candidates(&self) -> Vec<BlockWrite> {
        self.state.candidates()
    }

    /// The crash image keeping the candidates `keep` accepts (asked in candidate order).
    pub fn image_with(&self, keep: impl FnMut(&BlockWrite) -> bool) -> Result<DiskImage, EmuError> {
        self.state.image_with(keep)
    }

    /// The crash image keeping `candidates()[i]` where `chosen[i]`.
    pub fn image_subset(&self, chosen: &[bool]) -> Result<DiskImage, EmuError> {
        let candidates = self.state.candidates().len();
        if chosen.len() != candidates {
            return Err(EmuError::SubsetLength {
                given: chosen.len(),
                candidates,
            });
        }
        let mut next = chosen.iter();
        self.state
            .image_with(|_| next.next().copied().unwrap_or(false))
    }

    /// The crash image [`crate::EmuDevice::crash`] would give with this seed at this point.
    pub fn image_seeded(&self, seed: u64) -> Result<DiskImage, EmuError> {
        self.state.image_with(seeded_choice(seed))
    }
}
