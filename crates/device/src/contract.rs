//! The contract test suite: one set of checks every backend must pass.
//!
//! Each backend's `tests/contract.rs` builds a device (at least [`CAPACITY_BYTES_MIN`] bytes, an
//! arena of at least [`ARENA_BYTES_MIN`]) and calls [`run_all`], which runs every check under
//! every queue configuration (interrupt and poll, registered and unregistered buffers). A check
//! panics with a message naming the configuration when the backend breaks the contract.
//!
//! What is checked here is what a caller can observe without a crash: data read equals data
//! written, flush and FUA complete and keep data readable, completions may come in any order,
//! injected faults surface as [`DeviceError::Io`] naming the command and change nothing,
//! malformed commands are refused before reaching the device, and a device that claims
//! [`crate::DeviceInfo::completes_in_submit`] has its commands done when `submit` returns.
//! Crash behaviour (what a flush makes durable) is the emulated device's own test suite, since
//! only it can crash on demand.

use crate::{
    Buf, Completion, CompletionMode, Device, DeviceError, FaultPlan, Io, Op, OpFilter, Queue,
    QueueConfig, Segment, Tag, BLOCK_SIZE, IO_BYTES_MAX, SEGMENTS_MAX,
};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::HashMap;

/// The smallest device the suite needs.
pub const CAPACITY_BYTES_MIN: u64 = 8 << 20;
/// The smallest arena the suite needs.
pub const ARENA_BYTES_MIN: usize = 4 << 20;

/// Every queue configuration a backend must support.
pub fn configs() -> Vec<QueueConfig> {
    let mut out = Vec::new();
    for completion in [CompletionMode::Interrupt, CompletionMode::Poll] {
        for registered_buffers in [true, false] {
            out.push(QueueConfig {
                depth: 32,
                completion,
                registered_buffers,
            });
        }
    }
    out
}

type Check<D> = fn(&D, QueueConfig);

/// Runs every check under every configuration.
pub fn run_all<D: Device>(dev: &D) {
    assert!(
        dev.info().capacity_bytes >= CAPACITY_BYTES_MIN,
        "contract needs a larger device"
    );
    assert!(
        dev.arena().len_bytes() >= ARENA_BYTES_MIN,
        "contract needs a larger arena"
    );
    for config in configs() {
        let checks: [(&str, Check<D>); 8] = [
            ("read_equals_written", read_equals_written),
            ("unordered_completions", unordered_completions),
            ("flush_and_fua", flush_and_fua),
            ("injected_eio_names_command", injected_eio_names_command),
            ("malformed_commands_refused", malformed_commands_refused),
            ("batched_submission", batched_submission),
            ("nonblocking_reap_progresses", nonblocking_reap_progresses),
            ("completes_in_submit_honest", completes_in_submit_honest),
        ];
        for (name, check) in checks {
            eprintln!("contract: {} {:?}", name, config);
            dev.faults().disarm();
            check(dev, config);
        }
    }
    dev.faults().disarm();
}

/// A queue plus the buffers of its in-flight commands, so every `push` below is sound: a buffer
/// stays in `in_flight` (untouched) until its completion is reaped.
struct Harness<'d, D: Device> {
    dev: &'d D,
    queue: D::Queue,
    in_flight: HashMap<Tag, Vec<Buf>>,
}

impl<'d, D: Device> Harness<'d, D> {
    fn new(dev: &'d D, config: QueueConfig) -> Self {
        let queue = dev
            .open_queue(config)
            .unwrap_or_else(|e| panic!("open_queue {config:?}: {e}"));
        Harness {
            dev,
            queue,
            in_flight: HashMap::new(),
        }
    }

    fn buf_with(&self, pages: u32, seed: u64) -> Buf {
        let mut buf = self.dev.arena().alloc(pages).expect("arena space");
        StdRng::seed_from_u64(seed).fill(self.dev.arena().bytes_mut(&mut buf));
        buf
    }

    /// Pushes a command owning `bufs`; on refusal returns the error and the buffers.
    fn push(
        &mut self,
        tag: Tag,
        op: Op,
        offset: u64,
        bufs: Vec<Buf>,
    ) -> Result<(), (DeviceError, Vec<Buf>)> {
        let segs: Vec<Segment> = bufs.iter().map(Buf::segment).collect();
        self.push_segments(tag, op, offset, &segs, bufs)
    }

    fn push_segments(
        &mut self,
        tag: Tag,
        op: Op,
        offset: u64,
        segs: &[Segment],
        bufs: Vec<Buf>,
    ) -> Result<(), (DeviceError, Vec<Buf>)> {
        let io = Io {
            op,
            offset_bytes: offset,
            segments: segs,
        };
        // SAFETY: the segments lie in `bufs`, which move into `in_flight` and are neither read nor
        // written until `reap_all` returns this tag's completion. On Err the device took nothing.
        match unsafe { self.queue.push(tag, &io) } {
            Ok(()) => {
                self.in_flight.insert(tag, bufs);
                Ok(())
            }
            Err(e) => Err((e, bufs)),
        }
    }

    /// Submits and reaps until nothing is outstanding; returns completions with their buffers.
    fn reap_all(&mut self) -> Vec<(Completion, Vec<Buf>)> {
        self.queue.submit().expect("submit");
        let mut done = Vec::new();
        let mut out = Vec::new();
        while self.queue.outstanding() > 0 {
            out.clear();
            let n = self.queue.reap(1, &mut out).expect("reap");
            assert_eq!(n, out.len(), "reap returns how many it appended");
            for c in out.drain(..) {
                let bufs = self
                    .in_flight
                    .remove(&c.tag)
                    .unwrap_or_else(|| panic!("completion for unknown tag {}", c.tag));
                done.push((c, bufs));
            }
        }
        assert!(
            self.in_flight.is_empty(),
            "every pushed command completes exactly once"
        );
        done
    }

    /// One command, waited for.
    fn run(&mut self, op: Op, offset: u64, bufs: Vec<Buf>) -> (Result<u32, DeviceError>, Vec<Buf>) {
        self.push(0, op, offset, bufs)
            .map_err(|(e, _)| e)
            .expect("push");
        let mut done = self.reap_all();
        assert_eq!(done.len(), 1);
        let (c, bufs) = done.pop().expect("one completion");
        (c.result, bufs)
    }

    fn read_back(&mut self, offset: u64, pages: u32) -> Vec<u8> {
        let buf = self.dev.arena().alloc(pages).expect("arena space");
        let (res, mut bufs) = self.run(Op::Read, offset, vec![buf]);
        assert_eq!(res, Ok(pages * BLOCK_SIZE as u32), "read at {offset}");
        let buf = bufs.pop().expect("buffer back");
        let data = self.dev.arena().bytes(&buf).to_vec();
        self.free(vec![buf]);
        data
    }

    fn free(&self, bufs: Vec<Buf>) {
        for b in bufs {
            self.dev.arena().free(b);
        }
    }
}

fn bytes_of<D: Device>(dev: &D, bufs: &[Buf]) -> Vec<u8> {
    bufs.iter()
        .flat_map(|b| dev.arena().bytes(b).to_vec())
        .collect()
}

fn read_equals_written<D: Device>(dev: &D, config: QueueConfig) {
    let mut h = Harness::new(dev, config);
    // Single pages, multi-page buffers, scatter-gather up to the command limit.
    let shapes: [&[u32]; 5] = [&[1], &[2], &[1, 1, 1], &[32], &[4; 8]];
    for (i, shape) in shapes.iter().enumerate() {
        let offset = (i as u64 * 64 + 3) * BLOCK_SIZE as u64;
        let bufs: Vec<Buf> = shape
            .iter()
            .enumerate()
            .map(|(j, &p)| h.buf_with(p, (i * 100 + j) as u64))
            .collect();
        let written = bytes_of(dev, &bufs);
        let (res, bufs) = h.run(Op::Write { fua: false }, offset, bufs);
        assert_eq!(res, Ok(written.len() as u32), "{config:?} write {shape:?}");
        h.free(bufs);
        // Read back both in one piece and scattered like the write.
        let pages: u32 = shape.iter().sum();
        assert!(
            h.read_back(offset, pages) == written,
            "{config:?} data read equals data written, {shape:?}"
        );
        let targets: Vec<Buf> = shape
            .iter()
            .map(|&p| dev.arena().alloc(p).expect("arena"))
            .collect();
        let (res, targets) = h.run(Op::Read, offset, targets);
        assert_eq!(res, Ok(written.len() as u32));
        assert!(
            bytes_of(dev, &targets) == written,
            "{config:?} scattered read {shape:?}"
        );
        h.free(targets);
    }
}

fn unordered_completions<D: Device>(dev: &D, config: QueueConfig) {
    let mut h = Harness::new(dev, config);
    let base = 4 << 20;
    // Write 16 distinct blocks in one batch, then read them in one batch in reverse order.
    let mut expected = HashMap::new();
    for t in 0..16u16 {
        let buf = h.buf_with(1 + u32::from(t % 3), 1000 + u64::from(t));
        expected.insert(t, dev.arena().bytes(&buf).to_vec());
        h.push(
            t,
            Op::Write { fua: false },
            base + u64::from(t) * 4 * BLOCK_SIZE as u64,
            vec![buf],
        )
        .map_err(|(e, _)| e)
        .expect("push");
    }
    let done = h.reap_all();
    let mut seen: Vec<Tag> = done.iter().map(|(c, _)| c.tag).collect();
    for (c, bufs) in done {
        assert_eq!(
            c.result,
            Ok(expected[&c.tag].len() as u32),
            "{config:?} write tag {}",
            c.tag
        );
        h.free(bufs);
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..16).collect::<Vec<_>>(),
        "each tag completes exactly once"
    );
    for t in (0..16u16).rev() {
        let buf = dev.arena().alloc(1 + u32::from(t % 3)).expect("arena");
        h.push(
            t,
            Op::Read,
            base + u64::from(t) * 4 * BLOCK_SIZE as u64,
            vec![buf],
        )
        .map_err(|(e, _)| e)
        .expect("push");
    }
    for (c, bufs) in h.reap_all() {
        assert_eq!(c.result, Ok(expected[&c.tag].len() as u32));
        assert!(
            bytes_of(dev, &bufs) == expected[&c.tag],
            "{config:?} tag {} got its own data",
            c.tag
        );
        h.free(bufs);
    }
}

fn flush_and_fua<D: Device>(dev: &D, config: QueueConfig) {
    let mut h = Harness::new(dev, config);
    let offset = 6 << 20;
    let a = h.buf_with(1, 7);
    let a_bytes = dev.arena().bytes(&a).to_vec();
    let (res, bufs) = h.run(Op::Write { fua: true }, offset, vec![a]);
    assert_eq!(res, Ok(BLOCK_SIZE as u32), "{config:?} FUA write");
    h.free(bufs);
    assert!(
        h.read_back(offset, 1) == a_bytes,
        "{config:?} FUA write readable"
    );
    let b = h.buf_with(2, 8);
    let b_bytes = dev.arena().bytes(&b).to_vec();
    let (res, bufs) = h.run(
        Op::Write { fua: false },
        offset + BLOCK_SIZE as u64,
        vec![b],
    );
    assert_eq!(res, Ok(2 * BLOCK_SIZE as u32));
    h.free(bufs);
    let (res, bufs) = h.run(Op::Flush, 0, vec![]);
    assert_eq!(res, Ok(0), "{config:?} flush completes with no data");
    assert!(bufs.is_empty());
    assert!(
        h.read_back(offset + BLOCK_SIZE as u64, 2) == b_bytes,
        "{config:?} data survives flush"
    );
    // A flush in a batch with writes: every completion arrives, in any order.
    for t in 0..4u16 {
        let buf = h.buf_with(1, 20 + u64::from(t));
        h.push(
            t,
            Op::Write { fua: t == 3 },
            offset + (4 + u64::from(t)) * BLOCK_SIZE as u64,
            vec![buf],
        )
        .map_err(|(e, _)| e)
        .expect("push");
    }
    h.push(4, Op::Flush, 0, vec![])
        .map_err(|(e, _)| e)
        .expect("push flush");
    let done = h.reap_all();
    assert_eq!(done.len(), 5);
    for (c, bufs) in done {
        assert!(c.result.is_ok(), "{config:?} tag {}: {:?}", c.tag, c.result);
        h.free(bufs);
    }
}

fn injected_eio_names_command<D: Device>(dev: &D, config: QueueConfig) {
    let mut h = Harness::new(dev, config);
    let offset = 7 << 20;
    let old = h.buf_with(1, 30);
    let old_bytes = dev.arena().bytes(&old).to_vec();
    let (res, bufs) = h.run(Op::Write { fua: false }, offset, vec![old]);
    assert!(res.is_ok());
    h.free(bufs);

    // The second write of a batch fails; the first and third do not.
    dev.faults().arm(FaultPlan::nth(1, OpFilter::Writes));
    for t in 0..3u16 {
        let buf = h.buf_with(1, 40 + u64::from(t));
        h.push(
            t,
            Op::Write { fua: false },
            offset + u64::from(t) * BLOCK_SIZE as u64,
            vec![buf],
        )
        .map_err(|(e, _)| e)
        .expect("push");
    }
    let mut done = h.reap_all();
    done.sort_by_key(|(c, _)| c.tag);
    let results: Vec<_> = done.iter().map(|(c, _)| c.result.clone()).collect();
    assert_eq!(results[0], Ok(BLOCK_SIZE as u32), "{config:?}");
    assert_eq!(
        results[1],
        Err(DeviceError::Io {
            op: Op::Write { fua: false },
            tag: 1,
            offset_bytes: offset + BLOCK_SIZE as u64,
            len_bytes: BLOCK_SIZE as u32,
            errno: libc::EIO
        }),
        "{config:?} the failed command is named"
    );
    let msg = results[1].clone().unwrap_err().to_string();
    assert!(
        msg.contains("write tag 1") && msg.contains(&(offset + BLOCK_SIZE as u64).to_string()),
        "message names the command: {msg}"
    );
    assert_eq!(results[2], Ok(BLOCK_SIZE as u32));
    for (_, bufs) in done {
        h.free(bufs);
    }
    dev.faults().disarm();

    // A failed write changed nothing... (the block at `offset` was rewritten by tag 0, so check
    // tag 1's block against a fresh failing write over known data).
    let known = h.buf_with(1, 50);
    let known_bytes = dev.arena().bytes(&known).to_vec();
    let (res, bufs) = h.run(
        Op::Write { fua: false },
        offset + 5 * BLOCK_SIZE as u64,
        vec![known],
    );
    assert!(res.is_ok());
    h.free(bufs);
    dev.faults().arm(FaultPlan::nth(0, OpFilter::Writes));
    let over = h.buf_with(1, 51);
    let (res, bufs) = h.run(
        Op::Write { fua: true },
        offset + 5 * BLOCK_SIZE as u64,
        vec![over],
    );
    assert!(
        matches!(
            res,
            Err(DeviceError::Io {
                errno: libc::EIO,
                ..
            })
        ),
        "{config:?} {res:?}"
    );
    h.free(bufs);
    dev.faults().disarm();
    assert!(
        h.read_back(offset + 5 * BLOCK_SIZE as u64, 1) == known_bytes,
        "{config:?} a failed write has no effect"
    );
    let _ = old_bytes;

    // Reads of a failing range fail, every time, and flushes can fail too.
    dev.faults().arm(FaultPlan::range(
        offset,
        offset + BLOCK_SIZE as u64,
        OpFilter::Reads,
    ));
    for _ in 0..2 {
        let buf = dev.arena().alloc(1).expect("arena");
        let (res, bufs) = h.run(Op::Read, offset, vec![buf]);
        assert!(
            matches!(res, Err(DeviceError::Io { op: Op::Read, offset_bytes, .. }) if offset_bytes == offset),
            "{config:?} {res:?}"
        );
        h.free(bufs);
    }
    dev.faults().arm(FaultPlan::nth(0, OpFilter::Flushes));
    let (res, _) = h.run(Op::Flush, 0, vec![]);
    assert!(
        matches!(res, Err(DeviceError::Io { op: Op::Flush, .. })),
        "{config:?} {res:?}"
    );
    dev.faults().disarm();
}

fn malformed_commands_refused<D: Device>(dev: &D, config: QueueConfig) {
    let mut h = Harness::new(dev, config);
    let cap = dev.info().capacity_bytes;
    let w = Op::Write { fua: false };
    let refuse = |h: &mut Harness<'_, D>, tag: Tag, op: Op, offset: u64, segs: &[Segment]| {
        let err = h
            .push_segments(tag, op, offset, segs, vec![])
            .expect_err("must be refused");
        err.0
    };
    let buf = h.buf_with(33, 60);
    let whole = buf.segment();
    let page = buf.segment_range(0, BLOCK_SIZE);
    assert!(matches!(
        refuse(&mut h, 0, Op::Read, 100, &[page]),
        DeviceError::Misaligned {
            what: "device offset",
            ..
        }
    ));
    assert!(matches!(
        refuse(&mut h, 0, w, 512, &[page]),
        DeviceError::Misaligned {
            what: "device offset",
            ..
        }
    ));
    assert!(matches!(
        refuse(
            &mut h,
            0,
            Op::Read,
            0,
            &[buf.segment_range(512, BLOCK_SIZE)]
        ),
        DeviceError::Misaligned {
            what: "buffer address",
            ..
        }
    ));
    assert!(matches!(
        refuse(&mut h, 0, w, 0, &[buf.segment_range(0, 1000)]),
        DeviceError::Misaligned {
            what: "buffer length",
            ..
        }
    ));
    assert!(matches!(
        refuse(&mut h, 0, Op::Read, cap, &[page]),
        DeviceError::OutOfRange { .. }
    ));
    assert!(matches!(
        refuse(&mut h, 0, Op::Read, u64::MAX - 4095, &[page]),
        DeviceError::OutOfRange { .. }
    ));
    assert!(
        matches!(
            refuse(&mut h, 0, Op::Read, 0, &[whole]),
            DeviceError::TooLarge { .. }
        ),
        "33 pages > {IO_BYTES_MAX}"
    );
    let many = vec![page; SEGMENTS_MAX + 1];
    assert!(matches!(
        refuse(&mut h, 0, Op::Read, 0, &many),
        DeviceError::TooLarge { .. }
    ));
    assert!(matches!(
        refuse(&mut h, 0, Op::Read, 0, &[]),
        DeviceError::Invalid { .. }
    ));
    assert!(matches!(
        refuse(&mut h, 0, Op::Flush, 0, &[page]),
        DeviceError::Invalid { .. }
    ));
    let outside = crate::Segment {
        arena_offset: dev.arena().len_bytes() as u64,
        len: BLOCK_SIZE as u32,
    };
    assert!(matches!(
        refuse(&mut h, 0, Op::Read, 0, &[outside]),
        DeviceError::Invalid { .. }
    ));
    let depth = h.queue.depth();
    assert!(matches!(
        refuse(&mut h, depth, Op::Flush, 0, &[]),
        DeviceError::BadTag { .. }
    ));
    // A tag already outstanding is refused; the queue keeps working afterwards.
    h.push(3, Op::Flush, 0, vec![])
        .map_err(|(e, _)| e)
        .expect("push");
    assert!(matches!(
        refuse(&mut h, 3, Op::Flush, 0, &[]),
        DeviceError::BadTag { tag: 3, .. }
    ));
    assert_eq!(h.reap_all().len(), 1);
    h.free(vec![buf]);
    let ok = h.buf_with(1, 61);
    let bytes = dev.arena().bytes(&ok).to_vec();
    let (res, bufs) = h.run(w, 0, vec![ok]);
    assert!(res.is_ok());
    h.free(bufs);
    assert!(
        h.read_back(0, 1) == bytes,
        "{config:?} queue usable after refusals"
    );
}

fn batched_submission<D: Device>(dev: &D, config: QueueConfig) {
    let mut h = Harness::new(dev, config);
    let depth = h.queue.depth();
    // Fill the whole queue, submit once, then do it again: tags are reusable after completion.
    for round in 0..2u64 {
        for t in 0..depth {
            let buf = dev.arena().alloc(1).expect("arena");
            h.push(t, Op::Read, u64::from(t) * BLOCK_SIZE as u64, vec![buf])
                .map_err(|(e, _)| e)
                .expect("push");
        }
        assert_eq!(h.queue.outstanding(), usize::from(depth));
        let done = h.reap_all();
        assert_eq!(done.len(), usize::from(depth), "{config:?} round {round}");
        for (c, bufs) in done {
            assert_eq!(c.result, Ok(BLOCK_SIZE as u32));
            h.free(bufs);
        }
    }
}

/// `reap(0)` never blocks, yet repeated calls deliver every completion (the shape of a caller that
/// overlaps its own work with the device), and `reap` submits what was only pushed. Reads of
/// written data, so the device really works (holes in a sparse image complete without I/O).
/// A device that claims [`crate::DeviceInfo::completes_in_submit`] has every submitted command
/// done when `submit` returns: one non-blocking `reap(0)` hands out all of them. (Nothing to
/// check on a device that does not claim it.)
fn completes_in_submit_honest<D: Device>(dev: &D, config: QueueConfig) {
    if !dev.info().completes_in_submit {
        return;
    }
    let mut h = Harness::new(dev, config);
    let offset = 6 << 20;
    for t in 0..4u16 {
        let buf = dev.arena().alloc(1).expect("arena");
        h.push(
            t,
            Op::Read,
            offset + u64::from(t) * BLOCK_SIZE as u64,
            vec![buf],
        )
        .map_err(|(e, _)| e)
        .expect("push");
    }
    assert_eq!(h.queue.submit().expect("submit"), 4);
    let mut out = Vec::new();
    h.queue.reap(0, &mut out).expect("reap(0)");
    assert_eq!(
        out.len(),
        4,
        "{config:?}: claims completes_in_submit, but reap(0) right after submit returned {} of 4",
        out.len()
    );
    assert_eq!(h.queue.outstanding(), 0);
    for c in out {
        assert_eq!(c.result, Ok(BLOCK_SIZE as u32));
        let bufs = h.in_flight.remove(&c.tag).expect("known tag");
        h.free(bufs);
    }
}

fn nonblocking_reap_progresses<D: Device>(dev: &D, config: QueueConfig) {
    let mut h = Harness::new(dev, config);
    let offset = 5 << 20;
    let data = h.buf_with(4, 70);
    let expected = dev.arena().bytes(&data).to_vec();
    let (res, bufs) = h.run(Op::Write { fua: false }, offset, vec![data]);
    assert!(res.is_ok());
    h.free(bufs);
    for t in 0..4u16 {
        let buf = dev.arena().alloc(1).expect("arena");
        h.push(
            t,
            Op::Read,
            offset + u64::from(t) * BLOCK_SIZE as u64,
            vec![buf],
        )
        .map_err(|(e, _)| e)
        .expect("push");
    }
    // No submit: reap must start staged commands itself.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut out = Vec::new();
    while out.len() < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "{config:?}: reap(0) made no progress in 10 s"
        );
        h.queue.reap(0, &mut out).expect("reap(0)");
    }
    assert_eq!(h.queue.outstanding(), 0);
    for c in out {
        let bufs = h.in_flight.remove(&c.tag).expect("known tag");
        assert_eq!(c.result, Ok(BLOCK_SIZE as u32));
        let start = usize::from(c.tag) * BLOCK_SIZE;
        assert!(
            bytes_of(dev, &bufs) == expected[start..start + BLOCK_SIZE],
            "{config:?} tag {} data",
            c.tag
        );
        h.free(bufs);
    }
}
