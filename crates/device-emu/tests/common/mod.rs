//! A small test driver over one emulated device and one queue: it owns the buffers of in-flight
//! commands (so every `push` is sound), picks free tags, and records when each completion was
//! reaped on the device clock.

#![allow(dead_code)]

use aios_device::{Buf, Completion, Device, DeviceError, Io, Op, Queue, QueueConfig, Segment, Tag};
use aios_device_emu::{EmuConfig, EmuDevice, EmuQueue};
use std::collections::HashMap;

pub const BLOCK: usize = aios_device::BLOCK_SIZE;

/// A completed command: its tag, result, the data a read returned, and the device time at reap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub tag: Tag,
    pub result: Result<u32, DeviceError>,
    pub data: Vec<u8>,
    pub reaped_ns: u64,
}

pub struct Driver {
    pub dev: EmuDevice,
    pub q: EmuQueue,
    in_flight: HashMap<Tag, Vec<Buf>>,
}

/// One block whose every byte says which write it came from: `id` and the block within it.
pub fn pattern(id: u64, block_in_write: u64) -> Vec<u8> {
    let mut out = vec![0u8; BLOCK];
    for (i, chunk) in out.chunks_exact_mut(16).enumerate() {
        chunk[..8].copy_from_slice(&id.to_le_bytes());
        chunk[8..].copy_from_slice(&(block_in_write ^ (i as u64) << 16).to_le_bytes());
    }
    out
}

/// `blocks` blocks of write `id`.
pub fn patterns(id: u64, blocks: u64) -> Vec<u8> {
    (0..blocks).flat_map(|b| pattern(id, b)).collect()
}

impl Driver {
    pub fn open(spec: &str) -> Driver {
        Driver::new(EmuDevice::open(spec).unwrap_or_else(|e| panic!("{spec}: {e}")))
    }

    pub fn with_config(config: EmuConfig) -> Driver {
        Driver::new(EmuDevice::new(config).expect("device"))
    }

    pub fn new(dev: EmuDevice) -> Driver {
        let q = dev
            .open_queue(QueueConfig {
                depth: 64,
                ..QueueConfig::default()
            })
            .expect("queue");
        Driver {
            dev,
            q,
            in_flight: HashMap::new(),
        }
    }

    fn free_tag(&self) -> Tag {
        (0..self.q.depth())
            .find(|t| !self.in_flight.contains_key(t))
            .expect("a free tag")
    }

    fn push(&mut self, op: Op, offset_bytes: u64, bufs: Vec<Buf>) -> Result<Tag, DeviceError> {
        let tag = self.free_tag();
        self.push_as(tag, op, offset_bytes, bufs)
    }

    fn push_as(
        &mut self,
        tag: Tag,
        op: Op,
        offset_bytes: u64,
        bufs: Vec<Buf>,
    ) -> Result<Tag, DeviceError> {
        let segs: Vec<Segment> = bufs.iter().map(Buf::segment).collect();
        let io = Io {
            op,
            offset_bytes,
            segments: &segs,
        };
        // SAFETY: the buffers move into `in_flight` and are not touched until their completion
        // is reaped; on Err the device took nothing.
        match unsafe { self.q.push(tag, &io) } {
            Ok(()) => {
                self.in_flight.insert(tag, bufs);
                Ok(tag)
            }
            Err(e) => {
                for b in bufs {
                    self.dev.arena().free(b);
                }
                Err(e)
            }
        }
    }

    /// Stages a write of `data` (whole blocks) at block `block`.
    pub fn push_write(&mut self, block: u64, data: &[u8], fua: bool) -> Tag {
        let mut buf = self.dev.arena().alloc_bytes(data.len()).expect("arena");
        self.dev.arena().bytes_mut(&mut buf).copy_from_slice(data);
        self.push(Op::Write { fua }, block * BLOCK as u64, vec![buf])
            .expect("push write")
    }

    pub fn push_flush(&mut self) -> Tag {
        self.push(Op::Flush, 0, Vec::new()).expect("push flush")
    }

    pub fn push_read(&mut self, block: u64, blocks: u32) -> Tag {
        let buf = self.dev.arena().alloc(blocks).expect("arena");
        self.push(Op::Read, block * BLOCK as u64, vec![buf])
            .expect("push read")
    }

    /// Stages a read under a chosen tag.
    pub fn push_read_as(&mut self, tag: Tag, block: u64, blocks: u32) -> Result<Tag, DeviceError> {
        let buf = self.dev.arena().alloc(blocks).expect("arena");
        self.push_as(tag, Op::Read, block * BLOCK as u64, vec![buf])
    }

    pub fn submit(&mut self) {
        self.q.submit().expect("submit");
    }

    /// Reaps at least `min` completions (or until nothing is in flight).
    pub fn reap(&mut self, min: usize) -> Vec<Done> {
        let mut out: Vec<Completion> = Vec::new();
        self.q.reap(min, &mut out).expect("reap");
        let reaped_ns = self.dev.now_ns();
        out.into_iter()
            .map(|c| {
                let bufs = self.in_flight.remove(&c.tag).expect("known tag");
                let data = bufs
                    .iter()
                    .flat_map(|b| self.dev.arena().bytes(b).to_vec())
                    .collect();
                for b in bufs {
                    self.dev.arena().free(b);
                }
                Done {
                    tag: c.tag,
                    result: c.result,
                    data,
                    reaped_ns,
                }
            })
            .collect()
    }

    /// Reaps one completion at a time until nothing is outstanding, in completion order.
    pub fn reap_all(&mut self) -> Vec<Done> {
        let mut all = Vec::new();
        while self.q.outstanding() > 0 {
            all.extend(self.reap(1));
        }
        all
    }

    /// Writes and waits.
    pub fn write(&mut self, block: u64, data: &[u8], fua: bool) -> Result<u32, DeviceError> {
        self.push_write(block, data, fua);
        self.single()
    }

    /// Flushes and waits.
    pub fn flush(&mut self) -> Result<u32, DeviceError> {
        self.push_flush();
        self.single()
    }

    /// Reads and waits.
    pub fn read(&mut self, block: u64, blocks: u32) -> Vec<u8> {
        self.push_read(block, blocks);
        let mut done = self.reap_all();
        assert_eq!(done.len(), 1);
        let d = done.pop().expect("one");
        assert_eq!(d.result, Ok(blocks * BLOCK as u32));
        d.data
    }

    fn single(&mut self) -> Result<u32, DeviceError> {
        let mut done = self.reap_all();
        assert_eq!(done.len(), 1, "one command outstanding");
        done.pop().expect("one").result
    }
}
