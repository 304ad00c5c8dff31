//! [`EmuQueue`]: one thread's submission and completion queue on the emulated device.
//!
//! # Life of a command
//! - `push` validates it ([`Io::validate`], then the tag), asks the fault injector, and copies it
//!   into the tag's preallocated slot. Nothing reaches the device yet.
//! - `submit` takes the device lock once and starts every staged command at the same instant
//!   (one clock read): the latency model gives each a due time, data moves at once (see
//!   [`crate::state`]), and the command enters this queue's completion heap ordered by
//!   (due time, device-wide submission number), so equal due times complete in submission order.
//! - `reap` first submits anything still staged (like `io_uring_enter`), then returns every
//!   completion due by now; while fewer than `min` have been returned and commands are in flight,
//!   it waits for the earliest due time: spinning the calling thread on the real clock, or jumping
//!   the virtual clock. Both [`aios_device::CompletionMode`]s behave this way: there is no device
//!   thread and no interrupt to sleep on.
//!
//! With the virtual clock, time moves only when a reap must wait (or by
//! [`crate::EmuDevice::advance_clock_to`]), and when a `reap(0, ..)` finds nothing due while
//! commands are in flight: that call returns nothing, as `reap(0, ..)` never waits, but moves the
//! clock to the earliest due time (as if the caller had kept polling until then), so a loop of
//! `reap(0, ..)` makes progress as the device contract requires.
//!
//! # Invariants
//! - A slot is `Idle`, `Staged` (its tag is in `staged`) or `InFlight` (its tag is in `in_flight`);
//!   `outstanding() == staged.len() + in_flight.len()`, never more than `depth`.
//! - The read path allocates nothing: slots, `staged` and `in_flight` are sized at open.

use crate::config::ClockKind;
use crate::shared::Shared;
use crate::state::Command;
use aios_device::{
    Completion, DeviceError, Io, Op, Queue, QueueConfig, Segment, Tag, SEGMENTS_MAX,
};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Staged,
    InFlight,
}

/// A tag's command from push to reap.
#[derive(Debug, Clone, Copy)]
struct Slot {
    phase: Phase,
    op: Op,
    offset_bytes: u64,
    len_bytes: u32,
    /// The errno an injected fault completes the command with.
    fault_errno: Option<i32>,
    segment_count: u8,
    segments: [Segment; SEGMENTS_MAX],
}

const EMPTY_SEGMENT: Segment = Segment {
    arena_offset: 0,
    len: 0,
};

impl Slot {
    const IDLE: Slot = Slot {
        phase: Phase::Idle,
        op: Op::Flush,
        offset_bytes: 0,
        len_bytes: 0,
        fault_errno: None,
        segment_count: 0,
        segments: [EMPTY_SEGMENT; SEGMENTS_MAX],
    };

    fn segments(&self) -> &[Segment] {
        &self.segments[..usize::from(self.segment_count)]
    }

    fn result(&self, tag: Tag) -> Result<u32, DeviceError> {
        match self.fault_errno {
            None => Ok(self.len_bytes),
            Some(errno) => Err(DeviceError::Io {
                op: self.op,
                tag,
                offset_bytes: self.offset_bytes,
                len_bytes: self.len_bytes,
                errno,
            }),
        }
    }
}

/// A queue of the emulated device. Open one per thread with [`aios_device::Device::open_queue`].
pub struct EmuQueue {
    shared: Arc<Shared>,
    depth: u16,
    slots: Box<[Slot]>,
    /// Tags pushed and not yet submitted, in push order.
    staged: Vec<Tag>,
    /// `(due_ns, submission number, tag)` of submitted commands not yet reaped.
    in_flight: BinaryHeap<Reverse<(u64, u64, Tag)>>,
}

impl std::fmt::Debug for EmuQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmuQueue")
            .field("depth", &self.depth)
            .field("staged", &self.staged.len())
            .field("in_flight", &self.in_flight.len())
            .finish()
    }
}

impl EmuQueue {
    pub(crate) fn new(shared: Arc<Shared>, config: QueueConfig) -> Result<EmuQueue, DeviceError> {
        if config.depth == 0 {
            return Err(DeviceError::Setup {
                what: "emulated queue of depth 0".to_string(),
                errno: libc::EINVAL,
            });
        }
        let depth = usize::from(config.depth);
        Ok(EmuQueue {
            shared,
            depth: config.depth,
            slots: vec![Slot::IDLE; depth].into_boxed_slice(),
            staged: Vec::with_capacity(depth),
            in_flight: BinaryHeap::with_capacity(depth),
        })
    }

    fn check_tag(&self, tag: Tag) -> Result<(), DeviceError> {
        let busy = self
            .slots
            .get(usize::from(tag))
            .map(|slot| slot.phase != Phase::Idle);
        aios_device::check_tag(tag, self.depth, busy)
    }

    /// Marks a due command's slot idle and builds its completion.
    fn finish(&mut self, tag: Tag) -> Completion {
        let slot = &mut self.slots[usize::from(tag)];
        slot.phase = Phase::Idle;
        Completion {
            tag,
            result: slot.result(tag),
        }
    }

    /// Moves every completion due by now into `out`; returns how many.
    fn pop_due(&mut self, out: &mut Vec<Completion>) -> usize {
        let now_ns = self.shared.clock.now_ns();
        let mut n = 0;
        while let Some(&Reverse((due_ns, _, tag))) = self.in_flight.peek() {
            if due_ns > now_ns {
                break;
            }
            self.in_flight.pop();
            out.push(self.finish(tag));
            n += 1;
        }
        n
    }
}

impl Queue for EmuQueue {
    fn depth(&self) -> u16 {
        self.depth
    }

    /// Stages `io` under `tag` (see the module docs). Refusals, in order: the contract checks of
    /// [`Io::validate`], then [`DeviceError::BadTag`]. A fault plan is consulted only for
    /// commands that pass both.
    unsafe fn push(&mut self, tag: Tag, io: &Io<'_>) -> Result<(), DeviceError> {
        let shared = &*self.shared;
        let len_bytes = io.validate(&shared.arena, shared.info.capacity_bytes)?;
        self.check_tag(tag)?;
        let fault_errno = shared.faults.check(io, len_bytes);
        let slot = &mut self.slots[usize::from(tag)];
        slot.phase = Phase::Staged;
        slot.op = io.op;
        slot.offset_bytes = io.offset_bytes;
        slot.len_bytes = len_bytes;
        slot.fault_errno = fault_errno;
        // At most SEGMENTS_MAX (32) segments: validated above.
        slot.segment_count = io.segments.len() as u8;
        slot.segments[..io.segments.len()].copy_from_slice(io.segments);
        self.staged.push(tag);
        Ok(())
    }

    fn submit(&mut self) -> Result<usize, DeviceError> {
        let n = self.staged.len();
        if n == 0 {
            return Ok(0);
        }
        let shared = &*self.shared;
        let mut state = shared.lock();
        let now_ns = shared.clock.now_ns();
        for &tag in &self.staged {
            let slot = &mut self.slots[usize::from(tag)];
            let cmd = Command {
                op: slot.op,
                offset_bytes: slot.offset_bytes,
                len_bytes: slot.len_bytes,
                segments: slot.segments(),
                failed: slot.fault_errno.is_some(),
            };
            // SAFETY: the slot was filled by `push` from an `Io` that passed `validate` against
            // this arena and capacity, and `push`'s caller handed its segments' memory to the
            // device until this tag's completion is reaped, which cannot have happened: the slot
            // is still staged.
            let due_ns = unsafe { state.start(now_ns, cmd, &shared.arena) };
            let seq = state.next_seq;
            state.next_seq += 1;
            slot.phase = Phase::InFlight;
            self.in_flight.push(Reverse((due_ns, seq, tag)));
        }
        drop(state);
        self.staged.clear();
        Ok(n)
    }

    fn reap(&mut self, min: usize, out: &mut Vec<Completion>) -> Result<usize, DeviceError> {
        self.submit()?;
        let mut appended = self.pop_due(out);
        if appended == 0 && self.shared.config.clock == ClockKind::Virtual {
            if let Some(&Reverse((due_ns, _, _))) = self.in_flight.peek() {
                // Nothing due: an idle poll on a virtual clock lasts until the next due time.
                self.shared.clock.wait_until(due_ns);
            }
        }
        while appended < min {
            let Some(&Reverse((due_ns, _, _))) = self.in_flight.peek() else {
                break;
            };
            self.shared.clock.wait_until(due_ns);
            appended += self.pop_due(out);
        }
        Ok(appended)
    }

    fn outstanding(&self) -> usize {
        self.staged.len() + self.in_flight.len()
    }
}
