//! The device's media state, behind one mutex: the current image, the latency scheduler and the
//! durability tracker. [`State::start`] is where a submitted command takes effect.
//!
//! A command takes effect when it is *submitted* (the moment it reaches the device): its due
//! time is scheduled from the submission time, and its data moves at once (reads copy out of the
//! current image into the arena, writes copy from the arena into the current image and the
//! tracker). Its completion becomes visible to `reap` at the due time. So a read overlapping an
//! in-flight write may see the new data before the write completes, which the contract allows
//! (overlapping in-flight commands have no defined order).
//!
//! A command the fault injector matched takes time like any other but moves no data and changes
//! no durability state; it is not logged.
//!
//! The only `unsafe` of the crate lives here: copying between the image and arena segments, which
//! the device owns while the command is in flight.

use crate::timing::Timing;
use crate::tracker::Tracker;
use crate::DiskImage;
use aios_device::{Arena, Op, Segment, BLOCK_SIZE};

#[derive(Debug)]
pub(crate) struct State {
    /// Every submitted write applied, in submission order: what reads see.
    pub(crate) current: DiskImage,
    pub(crate) timing: Timing,
    pub(crate) tracker: Tracker,
    /// Orders completions with equal due times, across all queues: submission order.
    pub(crate) next_seq: u64,
}

/// A validated command, as a queue keeps it from push to completion.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Command<'a> {
    pub(crate) op: Op,
    pub(crate) offset_bytes: u64,
    pub(crate) len_bytes: u32,
    pub(crate) segments: &'a [Segment],
    pub(crate) failed: bool,
}

impl State {
    /// Starts `cmd` at `now_ns`; returns its due time.
    ///
    /// # Safety
    /// `cmd.segments` passed [`aios_device::Io::validate`] against `arena` (they lie inside it
    /// and add up to `cmd.len_bytes`, inside the device), and their memory belongs to the device
    /// (it was handed over by a successful `Queue::push`, and the completion has not been reaped):
    /// nobody else reads or writes it now.
    pub(crate) unsafe fn start(&mut self, now_ns: u64, cmd: Command<'_>, arena: &Arena) -> u64 {
        if cmd.failed {
            return self.timing.schedule(now_ns, cmd.op, cmd.len_bytes, 0);
        }
        match cmd.op {
            Op::Read => {
                let due_ns = self.timing.schedule(now_ns, cmd.op, cmd.len_bytes, 0);
                // SAFETY: forwarded from this function's contract.
                unsafe { scatter(arena, cmd.segments, &self.current, cmd.offset_bytes) };
                due_ns
            }
            Op::Write { fua } => {
                let due_ns = self.timing.schedule(now_ns, cmd.op, cmd.len_bytes, 0);
                let len_bytes = u64::from(cmd.len_bytes);
                let dst = self.current.region_mut(cmd.offset_bytes, len_bytes);
                // SAFETY: forwarded from this function's contract.
                unsafe { gather(arena, cmd.segments, dst) };
                let data = self.current.slice(cmd.offset_bytes, len_bytes);
                self.tracker
                    .submit_write(now_ns, due_ns, cmd.offset_bytes, data, fua);
                due_ns
            }
            Op::Flush => {
                let timing = &mut self.timing;
                self.tracker.submit_flush(now_ns, |dirty_blocks| {
                    timing.schedule(now_ns, Op::Flush, 0, dirty_blocks)
                })
            }
        }
    }
}

/// Copies the image from `offset_bytes` on into the segments, in order. Blocks never written are
/// zero-filled without touching the image, so reading a fresh region costs no page faults.
///
/// # Safety
/// As for [`State::start`]: the segments lie in `arena`, their total lies inside the image from
/// `offset_bytes`, and the device owns their memory.
unsafe fn scatter(arena: &Arena, segments: &[Segment], image: &DiskImage, offset_bytes: u64) {
    let mut block = offset_bytes / BLOCK_SIZE as u64;
    for &seg in segments {
        let dst = arena.segment_ptr(seg);
        for i in 0..seg.len as usize / BLOCK_SIZE {
            // SAFETY: `seg` lies inside the arena mapping (validated), so `dst + i * BLOCK_SIZE`
            // starts a block of it; the device owns that memory (contract), so no other reference
            // to it exists; the image mapping never overlaps the arena.
            unsafe {
                let to = dst.add(i * BLOCK_SIZE);
                match image.block_if_written(block) {
                    Some(from) => std::ptr::copy_nonoverlapping(from.as_ptr(), to, BLOCK_SIZE),
                    None => std::ptr::write_bytes(to, 0, BLOCK_SIZE),
                }
            }
            block += 1;
        }
    }
}

/// Copies the segments, in order, into `dst`.
///
/// # Safety
/// As for [`State::start`]: the segments lie in `arena`, total `dst.len()` bytes, and the device
/// owns their memory.
unsafe fn gather(arena: &Arena, segments: &[Segment], dst: &mut [u8]) {
    let mut pos = 0;
    for &seg in segments {
        let len = seg.len as usize;
        let to = &mut dst[pos..pos + len];
        // SAFETY: `seg` lies inside the arena mapping (validated), so `segment_ptr` points at
        // `len` readable bytes that nobody writes while the device owns them (contract); `to` is
        // in the image mapping, which never overlaps the arena.
        unsafe { std::ptr::copy_nonoverlapping(arena.segment_ptr(seg), to.as_mut_ptr(), len) };
        pos += len;
    }
    debug_assert_eq!(pos, dst.len());
}
