//! Building submission queue entries from validated commands.
//!
//! | command | registered buffers | vanilla |
//! | --- | --- | --- |
//! | read/write, 1 segment | `READ_FIXED` / `WRITE_FIXED`, buf_index 0 | `READ` / `WRITE` |
//! | read/write, n segments | `READV_FIXED` / `WRITEV_FIXED` (else `READV` / `WRITEV`) | `READV` / `WRITEV` |
//! | write with FUA | the above with `RWF_DSYNC` | same |
//! | flush | `FSYNC` with `DATASYNC` | same |
//!
//! The file is always the registered file at index 0 ([`FILE`]); buffer index 0 is the whole arena.
//! `user_data` is the tag.
//!
//! Assumes the command passed [`aios_device::Io::validate`] against this arena, so every segment
//! lies inside it and lengths fit in `u32`. Promises: vectored entries point at the slot's iovec
//! array, which the caller keeps untouched until the completion (see `slot.rs`).

use crate::slot::Slot;
use aios_device::{Arena, Io, Op, Tag};
use io_uring::{opcode, squeue, types};

/// The device file, registered with each ring at index 0.
pub(crate) const FILE: types::Fixed = types::Fixed(0);
/// The arena, registered with each ring as fixed buffer 0.
const ARENA_BUF_INDEX: u16 = 0;

/// How a queue turns commands into SQEs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Prep {
    /// The arena is registered: use the fixed-buffer opcodes.
    pub fixed_buffers: bool,
    /// The kernel has `READV_FIXED`/`WRITEV_FIXED`.
    pub vectored_fixed: bool,
}

/// The SQE for `io`, a command already validated against `arena`.
pub(crate) fn entry(
    prep: Prep,
    arena: &Arena,
    slot: &mut Slot,
    tag: Tag,
    io: &Io<'_>,
) -> squeue::Entry {
    let entry = match (io.op, io.segments) {
        (Op::Flush, _) => opcode::Fsync::new(FILE)
            .flags(types::FsyncFlags::DATASYNC)
            .build(),
        (op, [seg]) => single(prep, op, io.offset_bytes, arena.segment_ptr(*seg), seg.len),
        (op, segs) => {
            for (iov, seg) in slot.iovecs.iter_mut().zip(segs) {
                iov.iov_base = arena.segment_ptr(*seg).cast();
                iov.iov_len = seg.len as usize;
            }
            // At most SEGMENTS_MAX segments, checked by `Io::validate`.
            vectored(
                prep,
                op,
                io.offset_bytes,
                slot.iovecs.as_ptr(),
                segs.len() as u32,
            )
        }
    };
    entry.user_data(u64::from(tag))
}

fn rw_flags(op: Op) -> i32 {
    match op {
        Op::Write { fua: true } => libc::RWF_DSYNC,
        _ => 0,
    }
}

fn single(prep: Prep, op: Op, offset: u64, ptr: *mut u8, len: u32) -> squeue::Entry {
    let flags = rw_flags(op);
    match (op, prep.fixed_buffers) {
        (Op::Read, true) => opcode::ReadFixed::new(FILE, ptr, len, ARENA_BUF_INDEX)
            .offset(offset)
            .build(),
        (Op::Read, false) => opcode::Read::new(FILE, ptr, len).offset(offset).build(),
        (_, true) => opcode::WriteFixed::new(FILE, ptr, len, ARENA_BUF_INDEX)
            .offset(offset)
            .rw_flags(flags)
            .build(),
        (_, false) => opcode::Write::new(FILE, ptr, len)
            .offset(offset)
            .rw_flags(flags)
            .build(),
    }
}

fn vectored(prep: Prep, op: Op, offset: u64, iov: *const libc::iovec, n: u32) -> squeue::Entry {
    let flags = rw_flags(op);
    let fixed = prep.fixed_buffers && prep.vectored_fixed;
    match (op, fixed) {
        (Op::Read, true) => opcode::ReadvFixed::new(FILE, iov, n, ARENA_BUF_INDEX)
            .offset(offset)
            .build(),
        (Op::Read, false) => opcode::Readv::new(FILE, iov, n).offset(offset).build(),
        (_, true) => opcode::WritevFixed::new(FILE, iov, n, ARENA_BUF_INDEX)
            .offset(offset)
            .rw_flags(flags)
            .build(),
        (_, false) => opcode::Writev::new(FILE, iov, n)
            .offset(offset)
            .rw_flags(flags)
            .build(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slot::Slots;
    use aios_device::{Segment, BLOCK_SIZE};

    fn opcode_of(prep: Prep, io: &Io<'_>, arena: &Arena) -> u32 {
        let mut slots = Slots::new(1);
        let slot = slots.occupy(0, io, 0);
        let entry = entry(prep, arena, slot, 0, io);
        assert_eq!(entry.get_user_data(), 0, "user_data is the tag");
        entry.get_opcode()
    }

    #[test]
    fn opcodes_follow_the_table() {
        let arena = Arena::new(4 * BLOCK_SIZE).unwrap();
        let page = |i: u64| Segment {
            arena_offset: i * BLOCK_SIZE as u64,
            len: BLOCK_SIZE as u32,
        };
        let one = [page(0)];
        let two = [page(1), page(3)];
        let fixed = Prep {
            fixed_buffers: true,
            vectored_fixed: true,
        };
        let old_kernel = Prep {
            vectored_fixed: false,
            ..fixed
        };
        let vanilla = Prep {
            fixed_buffers: false,
            vectored_fixed: true,
        };
        let cases: [(Prep, Io<'_>, u8); 11] = [
            (fixed, Io::read(0, &one), opcode::ReadFixed::CODE),
            (fixed, Io::write(0, &one, true), opcode::WriteFixed::CODE),
            (fixed, Io::read(0, &two), opcode::ReadvFixed::CODE),
            (fixed, Io::write(0, &two, false), opcode::WritevFixed::CODE),
            (old_kernel, Io::read(0, &two), opcode::Readv::CODE),
            (old_kernel, Io::write(0, &two, false), opcode::Writev::CODE),
            (vanilla, Io::read(0, &one), opcode::Read::CODE),
            (vanilla, Io::write(0, &one, false), opcode::Write::CODE),
            (vanilla, Io::read(0, &two), opcode::Readv::CODE),
            (vanilla, Io::write(0, &two, true), opcode::Writev::CODE),
            (fixed, Io::flush(), opcode::Fsync::CODE),
        ];
        for (prep, io, code) in cases {
            assert_eq!(
                opcode_of(prep, &io, &arena),
                u32::from(code),
                "{prep:?} {:?} x{}",
                io.op,
                io.segments.len()
            );
        }
    }

    #[test]
    fn vectored_entries_fill_the_slot_iovecs() {
        let arena = Arena::new(4 * BLOCK_SIZE).unwrap();
        let segs = [
            Segment {
                arena_offset: 3 * BLOCK_SIZE as u64,
                len: BLOCK_SIZE as u32,
            },
            Segment {
                arena_offset: 0,
                len: 2 * BLOCK_SIZE as u32,
            },
        ];
        let io = Io::read(0, &segs);
        let mut slots = Slots::new(1);
        let slot = slots.occupy(0, &io, 3 * BLOCK_SIZE as u32);
        let prep = Prep {
            fixed_buffers: true,
            vectored_fixed: true,
        };
        let _ = entry(prep, &arena, slot, 0, &io);
        for (iov, seg) in slot.iovecs.iter().zip(&segs) {
            assert_eq!(iov.iov_base.cast::<u8>(), arena.segment_ptr(*seg));
            assert_eq!(iov.iov_len, seg.len as usize);
        }
    }
}
