//! Per-tag command slots: what a queue remembers about each outstanding command.
//!
//! One [`Slot`] per tag, allocated once when the queue opens; nothing here allocates per I/O.
//! A slot holds the command's identity (op, offset, length, for naming it in errors) and the
//! iovec array of a vectored command, which must stay put until the completion arrives because
//! the SQE points at it.
//!
//! # Invariants
//! - A slot is `busy` from a successful push until its completion is handed out by `finish` or
//!   `fail`; `outstanding` counts the busy slots.
//! - While busy, a slot's `iovecs` are not written (the kernel may read them).
//! - The slot array is a boxed slice that is never resized, so `iovecs` never move.

use aios_device::{Completion, DeviceError, Io, Op, Tag, SEGMENTS_MAX};

/// What the queue knows about one tag.
pub(crate) struct Slot {
    busy: bool,
    op: Op,
    offset_bytes: u64,
    len_bytes: u32,
    /// Segments of a vectored command, as the kernel reads them.
    pub iovecs: [libc::iovec; SEGMENTS_MAX],
}

impl Slot {
    fn idle() -> Slot {
        Slot {
            busy: false,
            op: Op::Flush,
            offset_bytes: 0,
            len_bytes: 0,
            iovecs: [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; SEGMENTS_MAX],
        }
    }

    fn io_error(&self, tag: Tag, errno: i32) -> DeviceError {
        DeviceError::Io {
            op: self.op,
            tag,
            offset_bytes: self.offset_bytes,
            len_bytes: self.len_bytes,
            errno,
        }
    }

    /// Turns a CQE result into the command's outcome.
    fn outcome(&self, tag: Tag, res: i32) -> Result<u32, DeviceError> {
        if res < 0 {
            return Err(self.io_error(tag, -res));
        }
        // Short transfer: `Io::validate` keeps every command below the capacity, so the kernel has
        // no end of file to stop at; fewer bytes than asked means the device (or a file truncated
        // under us) failed partway. The contract has no partial success, so it is an I/O error.
        if (res as u32) < self.len_bytes {
            return Err(self.io_error(tag, libc::EIO));
        }
        Ok(self.len_bytes)
    }
}

/// The slot table of one queue.
pub(crate) struct Slots {
    slots: Box<[Slot]>,
    outstanding: usize,
}

impl Slots {
    pub fn new(depth: u16) -> Slots {
        Slots {
            slots: (0..depth).map(|_| Slot::idle()).collect(),
            outstanding: 0,
        }
    }

    pub fn depth(&self) -> u16 {
        self.slots.len() as u16
    }

    /// Commands pushed and not yet completed.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Refuses a tag outside `0..depth` or already outstanding.
    pub fn check_free(&self, tag: Tag) -> Result<(), DeviceError> {
        let busy = self.slots.get(usize::from(tag)).map(|slot| slot.busy);
        aios_device::check_tag(tag, self.depth(), busy)
    }

    /// Marks a free tag (see [`Slots::check_free`]) busy with `io` and returns its slot.
    pub fn occupy(&mut self, tag: Tag, io: &Io<'_>, len_bytes: u32) -> &mut Slot {
        let slot = &mut self.slots[usize::from(tag)];
        debug_assert!(!slot.busy, "occupy after check_free");
        slot.busy = true;
        slot.op = io.op;
        slot.offset_bytes = io.offset_bytes;
        slot.len_bytes = len_bytes;
        self.outstanding += 1;
        slot
    }

    /// Undoes [`Slots::occupy`] for a command that never reached the kernel.
    pub fn release(&mut self, tag: Tag) {
        let slot = &mut self.slots[usize::from(tag)];
        debug_assert!(slot.busy);
        slot.busy = false;
        self.outstanding -= 1;
    }

    /// Completes `tag` with a CQE result. `None` for a user_data that names no busy slot (never
    /// expected: every SQE we build carries its busy tag).
    pub fn finish(&mut self, user_data: u64, res: i32) -> Option<Completion> {
        let tag = Tag::try_from(user_data).ok()?;
        let slot = self.slots.get_mut(usize::from(tag)).filter(|s| s.busy)?;
        let result = slot.outcome(tag, res);
        slot.busy = false;
        self.outstanding -= 1;
        Some(Completion { tag, result })
    }

    /// Completes `tag` with an injected failure.
    pub fn fail(&mut self, tag: Tag, errno: i32) -> Completion {
        self.finish(u64::from(tag), -errno)
            .expect("injected failures are recorded for busy tags only")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aios_device::Segment;

    const SEG: [Segment; 1] = [Segment {
        arena_offset: 0,
        len: 8192,
    }];

    #[test]
    fn tags_are_checked_and_recycled() {
        let mut slots = Slots::new(4);
        let io = Io::read(4096, &SEG);
        assert!(matches!(
            slots.check_free(4),
            Err(DeviceError::BadTag {
                tag: 4,
                depth: 4,
                ..
            })
        ));
        slots.check_free(2).unwrap();
        slots.occupy(2, &io, 8192);
        assert!(matches!(
            slots.check_free(2),
            Err(DeviceError::BadTag {
                reason: "already outstanding",
                ..
            })
        ));
        assert_eq!(slots.outstanding(), 1);
        let done = slots.finish(2, 8192).unwrap();
        assert_eq!(
            done,
            Completion {
                tag: 2,
                result: Ok(8192)
            }
        );
        assert_eq!(slots.outstanding(), 0);
        assert_eq!(slots.finish(2, 0), None, "a second completion is ignored");
        assert_eq!(
            slots.finish(1 << 20, 0),
            None,
            "foreign user_data is ignored"
        );
    }

    #[test]
    fn errors_and_short_transfers_name_the_command() {
        let mut slots = Slots::new(2);
        slots.occupy(0, &Io::write(8192, &SEG, true), 8192);
        slots.occupy(1, &Io::read(0, &SEG), 8192);
        let expect = |tag, op, offset_bytes, errno| DeviceError::Io {
            op,
            tag,
            offset_bytes,
            len_bytes: 8192,
            errno,
        };
        let failed = slots.finish(0, -libc::EBADF).unwrap();
        assert_eq!(
            failed.result,
            Err(expect(0, Op::Write { fua: true }, 8192, libc::EBADF))
        );
        let short = slots.finish(1, 4096).unwrap();
        assert_eq!(short.result, Err(expect(1, Op::Read, 0, libc::EIO)));
        slots.occupy(1, &Io::flush(), 0);
        assert_eq!(
            slots.fail(1, libc::EIO).result.unwrap_err().errno(),
            Some(libc::EIO)
        );
    }
}
