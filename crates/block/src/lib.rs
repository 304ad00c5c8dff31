//! # aios-block: LBIO, the lightweight block layer
//!
//! The paper's LBIO replaces Linux's bio -> request conversion, merging, scheduling and per-I/O
//! driver allocations with one preallocated object per I/O. Here that object is a [`Request`]
//! slot of a per-thread [`BlockQueue`]:
//!
//! - **one request per I/O, preallocated**: `depth` slots are built when the queue is opened; an
//!   I/O takes a free slot from a stack and gives it back when finished. No allocation, no lock
//!   (the queue belongs to one thread), no merging, no scheduler: the device schedules.
//! - **tag = slot index**: the device's tag for the command is the request's index.
//! - **scatter-gather** up to [`SEGMENTS_MAX`] pages ([`aios_device::IO_BYTES_MAX`] bytes) in one
//!   request.
//! - **batched submission**: [`BlockQueue::stage`] queues commands without a system call;
//!   [`BlockQueue::submit`] starts all staged ones with one kernel entry.
//! - **no flush without a volatile cache**: on a device whose write cache is not volatile
//!   ([`aios_device::DeviceInfo::volatile_cache`], read at [`BlockQueue::open`]) a completed
//!   write is durable, so a flush is done, `Ok`, when staged and never sent (Linux does the same
//!   for a queue without `QUEUE_FLAG_WC`).
//!
//! It is also the safe owner of I/O memory: the [`Buf`]s of a request live in its slot from
//! `stage` until [`BlockQueue::finish`] hands them back, which is exactly the ownership
//! [`aios_device::Queue::push`] requires. A write may instead name [`SharedBuf`]s
//! ([`BlockQueue::stage_shared_write`]): the slot keeps an owner of each until `finish`, so
//! their pages cannot go back to the arena while the device reads them.
//!
//! Life of a request: `stage` (Free -> InFlight) -> `submit` -> `wait` (InFlight -> Done, tag
//! appears in [`BlockQueue::pop_done`]) -> `finish` (Done -> Free, buffers and result returned).

use std::sync::Arc;

use aios_device::{
    Buf, Completion, Device, DeviceError, Io, Op, Queue, QueueConfig, Segment, SharedBuf, Tag,
    SEGMENTS_MAX,
};
use arrayvec::ArrayVec;

mod stats;
pub use stats::BlockStats;

/// The buffers of one request.
pub type Bufs = ArrayVec<Buf, SEGMENTS_MAX>;

/// Where a request slot is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Free,
    InFlight,
    Done,
}

/// One I/O: the command and the memory it owns. Preallocated; reused for every I/O of its tag.
#[derive(Debug)]
pub struct Request {
    state: State,
    op: Op,
    offset_bytes: u64,
    bufs: Bufs,
    /// A write's shared buffers (then `bufs` is empty), kept until `finish`.
    shared: ArrayVec<Arc<SharedBuf>, SEGMENTS_MAX>,
    segments: ArrayVec<Segment, SEGMENTS_MAX>,
    result: Result<u32, DeviceError>,
}

impl Request {
    fn new() -> Self {
        Request {
            state: State::Free,
            op: Op::Flush,
            offset_bytes: 0,
            bufs: ArrayVec::new(),
            shared: ArrayVec::new(),
            segments: ArrayVec::new(),
            result: Ok(0),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn op(&self) -> Op {
        self.op
    }

    pub fn offset_bytes(&self) -> u64 {
        self.offset_bytes
    }
}

/// A command the block layer refused; the buffers come back to the caller.
#[derive(Debug)]
pub struct Refused {
    pub error: DeviceError,
    pub bufs: Vec<Buf>,
}

/// What [`BlockQueue::finish`] hands back.
#[derive(Debug)]
pub struct Finished {
    pub tag: Tag,
    pub op: Op,
    pub offset_bytes: u64,
    /// Bytes transferred, or the device's error naming the command.
    pub result: Result<u32, DeviceError>,
    pub bufs: Bufs,
}

/// One thread's block layer over one device queue.
///
/// # Invariants
/// - `free` holds exactly the tags of `Free` slots; `done` exactly those of `Done` slots.
/// - A slot is `InFlight` iff the device queue holds its command, and then its `segments` name
///   exactly the pages of its `bufs`, or of its `shared` buffers (a write).
pub struct BlockQueue<Q: Queue> {
    queue: Q,
    /// The device has no volatile write cache: a completed write is already durable, so a
    /// flush is done the moment it is staged and never reaches the device (Linux's block
    /// layer does the same for a queue without `QUEUE_FLAG_WC`; the paper: "flush, if the
    /// device has a volatile cache").
    flush_done_at_stage: bool,
    requests: Box<[Request]>,
    free: Vec<Tag>,
    done: Vec<Tag>,
    completions: Vec<Completion>,
    stats: BlockStats,
}

impl<Q: Queue> BlockQueue<Q> {
    /// Opens a device queue for this thread and preallocates `config.depth` requests.
    pub fn open<D: Device<Queue = Q>>(
        device: &D,
        config: QueueConfig,
    ) -> Result<Self, DeviceError> {
        let mut q = Self::over(device.open_queue(config)?);
        q.flush_done_at_stage = !device.info().volatile_cache;
        Ok(q)
    }

    /// Wraps an open device queue. Its flushes all reach the device (nothing says whether its
    /// write cache is volatile).
    pub fn over(queue: Q) -> Self {
        let depth = queue.depth();
        BlockQueue {
            flush_done_at_stage: false,
            requests: (0..depth).map(|_| Request::new()).collect(),
            // Reversed so tag 0 is used first; LIFO reuse keeps hot slots in cache.
            free: (0..depth).rev().collect(),
            done: Vec::with_capacity(usize::from(depth)),
            completions: Vec::with_capacity(usize::from(depth)),
            stats: BlockStats::default(),
            queue,
        }
    }

    pub fn depth(&self) -> u16 {
        self.requests.len() as u16
    }

    /// Requests neither free nor finished: in flight or done but not yet finished.
    pub fn busy(&self) -> usize {
        self.requests.len() - self.free.len()
    }

    /// True if a request slot is free for [`stage`](Self::stage).
    pub fn has_free_slot(&self) -> bool {
        !self.free.is_empty()
    }

    /// Takes a free request, fills it and stages it for the next [`submit`](Self::submit).
    /// On refusal (no free slot, too many buffers, misaligned, out of range...) nothing is
    /// staged and the buffers come back.
    pub fn stage<I>(&mut self, op: Op, offset_bytes: u64, bufs: I) -> Result<Tag, Refused>
    where
        I: IntoIterator<Item = Buf>,
    {
        let tag = match self.take_slot(op, offset_bytes) {
            Ok(tag) => tag,
            Err(error) => {
                return Err(Refused {
                    error,
                    bufs: bufs.into_iter().collect(),
                })
            }
        };
        if op == Op::Flush && self.flush_done_at_stage {
            return self.done_at_stage(tag, bufs);
        }
        let req = &mut self.requests[usize::from(tag)];
        let mut bufs = bufs.into_iter();
        for buf in bufs.by_ref() {
            if req.bufs.is_full() {
                // Over the scatter-gather limit: hand everything back (allocating on this error
                // path only) and report the true size.
                let mut all: Vec<Buf> = req.bufs.drain(..).collect();
                all.push(buf);
                all.extend(bufs);
                self.free.push(tag);
                let len_bytes = all.iter().map(|b| b.len() as u64).sum();
                let error = DeviceError::TooLarge {
                    op,
                    len_bytes,
                    segments: all.len(),
                };
                return Err(Refused { error, bufs: all });
            }
            req.segments.push(buf.segment());
            req.bufs.push(buf);
        }
        // SAFETY: the segments name exactly the pages of `req.bufs`, which stay in this slot,
        // unreachable by the caller, until `wait` has seen the tag's completion and `finish`
        // hands them back (the slot's `InFlight` state guards `finish`).
        match unsafe { self.push_slot(tag) } {
            Ok(()) => Ok(tag),
            Err(error) => {
                let bufs = self.requests[usize::from(tag)].bufs.drain(..).collect();
                Err(Refused { error, bufs })
            }
        }
    }

    /// Takes a free request and stages a write of `pages` to `offset_bytes` (in order), like
    /// [`stage`](Self::stage) but from frozen buffers others may share: the request keeps an
    /// owner of each until [`finish`](Self::finish) (which hands back no buffers). On refusal
    /// nothing is staged.
    pub fn stage_shared_write<I>(
        &mut self,
        fua: bool,
        offset_bytes: u64,
        pages: I,
    ) -> Result<Tag, DeviceError>
    where
        I: IntoIterator<Item = Arc<SharedBuf>>,
    {
        let op = Op::Write { fua };
        let tag = self.take_slot(op, offset_bytes)?;
        let req = &mut self.requests[usize::from(tag)];
        let mut pages = pages.into_iter();
        for page in pages.by_ref() {
            if req.shared.is_full() {
                // Over the scatter-gather limit: report the true size.
                let rest: Vec<Arc<SharedBuf>> = pages.collect();
                let len_bytes = req
                    .shared
                    .iter()
                    .chain(std::iter::once(&page))
                    .chain(&rest)
                    .map(|b| b.len() as u64)
                    .sum();
                let segments = req.shared.len() + 1 + rest.len();
                req.shared.clear();
                self.free.push(tag);
                return Err(DeviceError::TooLarge {
                    op,
                    len_bytes,
                    segments,
                });
            }
            req.segments.push(page.segment());
            req.shared.push(page);
        }
        // SAFETY: the segments name exactly the pages of `req.shared`, owners of which stay in
        // this slot until `finish`, so the pages are not returned to the arena while the device
        // reads them; a `SharedBuf` is never written, and a write only reads its memory (the
        // relaxation of `Queue::push` for writes).
        let pushed = unsafe { self.push_slot(tag) };
        pushed.map(|()| tag).inspect_err(|_| {
            self.requests[usize::from(tag)].shared.clear();
        })
    }

    /// A flush on a device without a volatile cache: done at once, `Ok`, without the device.
    /// Refused, as the device would refuse it, if it names memory.
    fn done_at_stage<I>(&mut self, tag: Tag, bufs: I) -> Result<Tag, Refused>
    where
        I: IntoIterator<Item = Buf>,
    {
        let bufs: Vec<Buf> = bufs.into_iter().collect();
        if !bufs.is_empty() {
            self.free.push(tag);
            let error = DeviceError::Invalid {
                op: Op::Flush,
                reason: "a flush carries no data",
            };
            return Err(Refused { error, bufs });
        }
        let req = &mut self.requests[usize::from(tag)];
        req.state = State::Done;
        req.result = Ok(0);
        self.done.push(tag);
        self.stats.staged += 1;
        self.stats.flushes_done_at_stage += 1;
        Ok(tag)
    }

    /// Takes a free request slot for `op` at `offset_bytes`, its segments empty.
    fn take_slot(&mut self, op: Op, offset_bytes: u64) -> Result<Tag, DeviceError> {
        let Some(tag) = self.free.pop() else {
            let depth = self.depth();
            return Err(DeviceError::BadTag {
                tag: depth,
                depth,
                reason: "unavailable: every request is busy",
            });
        };
        let req = &mut self.requests[usize::from(tag)];
        debug_assert!(req.state == State::Free && req.bufs.is_empty() && req.shared.is_empty());
        req.op = op;
        req.offset_bytes = offset_bytes;
        req.segments.clear();
        Ok(tag)
    }

    /// Hands slot `tag`'s command to the device queue: `InFlight` on success; on refusal the
    /// slot is free again and its buffers are the caller's to take back.
    ///
    /// # Safety
    /// The slot's `segments` name exactly memory the slot keeps alive (its `bufs` or `shared`)
    /// until `finish`, as [`Queue::push`] requires.
    unsafe fn push_slot(&mut self, tag: Tag) -> Result<(), DeviceError> {
        let req = &mut self.requests[usize::from(tag)];
        let io = Io {
            op: req.op,
            offset_bytes: req.offset_bytes,
            segments: &req.segments,
        };
        // SAFETY: the caller's contract, above.
        match unsafe { self.queue.push(tag, &io) } {
            Ok(()) => {
                req.state = State::InFlight;
                self.stats.staged += 1;
                Ok(())
            }
            Err(error) => {
                self.free.push(tag);
                Err(error)
            }
        }
    }

    /// Starts every staged request with at most one kernel entry.
    pub fn submit(&mut self) -> Result<usize, DeviceError> {
        let n = self.queue.submit()?;
        if n > 0 {
            self.stats.submit_calls += 1;
            self.stats.submitted += n as u64;
        }
        Ok(n)
    }

    /// Waits until at least `min` more requests are done (fewer if fewer are in flight), and
    /// marks them done. Returns how many completed.
    pub fn wait(&mut self, min: usize) -> Result<usize, DeviceError> {
        self.completions.clear();
        let n = self.queue.reap(min, &mut self.completions)?;
        for c in self.completions.drain(..) {
            let req = &mut self.requests[usize::from(c.tag)];
            assert_eq!(
                req.state,
                State::InFlight,
                "completion for tag {} that is not in flight",
                c.tag
            );
            req.state = State::Done;
            if c.result.is_err() {
                self.stats.errors += 1;
            }
            req.result = c.result;
            self.done.push(c.tag);
        }
        self.stats.completed += n as u64;
        Ok(n)
    }

    /// A done request's tag, if any, most recent first.
    pub fn pop_done(&mut self) -> Option<Tag> {
        self.done.pop()
    }

    /// Returns a done request's result and buffers and frees its slot.
    ///
    /// # Panics
    /// If the tag is not done: finishing an in-flight request would hand out memory the device
    /// still owns.
    pub fn finish(&mut self, tag: Tag) -> Finished {
        let req = &mut self.requests[usize::from(tag)];
        assert_eq!(
            req.state,
            State::Done,
            "finish of tag {tag} that is not done"
        );
        req.state = State::Free;
        let result = std::mem::replace(&mut req.result, Ok(0));
        let bufs = std::mem::take(&mut req.bufs);
        req.shared.clear();
        let finished = Finished {
            tag,
            op: req.op,
            offset_bytes: req.offset_bytes,
            result,
            bufs,
        };
        self.done.retain(|&t| t != tag);
        self.free.push(tag);
        finished
    }

    /// Stages, submits and waits for one command: the synchronous convenience path.
    pub fn run<I>(&mut self, op: Op, offset_bytes: u64, bufs: I) -> Result<Finished, Refused>
    where
        I: IntoIterator<Item = Buf>,
    {
        let tag = self.stage(op, offset_bytes, bufs)?;
        let waited = self.submit().and_then(|_| {
            while self.requests[usize::from(tag)].state != State::Done {
                self.wait(1)?;
            }
            Ok(())
        });
        match waited {
            Ok(()) => Ok(self.finish(tag)),
            // The device refused to take or report commands: the request cannot be finished
            // safely, so it stays in flight and its buffers stay with the device.
            Err(error) => Err(Refused {
                error,
                bufs: Vec::new(),
            }),
        }
    }

    pub fn request(&self, tag: Tag) -> &Request {
        &self.requests[usize::from(tag)]
    }

    pub fn stats(&self) -> BlockStats {
        self.stats
    }

    pub fn device_queue(&self) -> &Q {
        &self.queue
    }
}

impl<Q: Queue> Drop for BlockQueue<Q> {
    /// A request still in flight (the device queue failed, or an owner left early) keeps its
    /// memory: owned buffers are simply not returned, and shared ones are leaked here, so their
    /// pages never go back to the arena while a device may still read them.
    fn drop(&mut self) {
        for req in self.requests.iter_mut() {
            if req.state == State::InFlight {
                for page in req.shared.drain(..) {
                    std::mem::forget(page);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
