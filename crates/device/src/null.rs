//! The null device: completes every command at once, moves no data (Linux's `null_blk`/`rnull`).
//!
//! It exists to measure the layers above the device with nothing underneath: the block layer's
//! CPU cost per request is a loop over this device. Reads leave buffers untouched; writes and
//! flushes are "durable" at once. It honours fault plans, so error paths can be measured too.

use crate::{
    check_tag, Arena, Completion, Device, DeviceError, DeviceInfo, FaultInjector, Io, Queue,
    QueueConfig, Tag,
};
use std::sync::Arc;

pub struct NullDevice {
    arena: Arc<Arena>,
    faults: Arc<FaultInjector>,
    capacity_bytes: u64,
}

impl NullDevice {
    pub fn new(capacity_bytes: u64, arena_bytes: usize) -> Result<NullDevice, DeviceError> {
        let arena = Arena::new(arena_bytes).map_err(|e| DeviceError::Setup {
            what: e.to_string(),
            errno: libc::ENOMEM,
        })?;
        Ok(NullDevice {
            arena: Arc::new(arena),
            faults: Arc::default(),
            capacity_bytes,
        })
    }
}

impl Device for NullDevice {
    type Queue = NullQueue;

    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            name: "null".into(),
            capacity_bytes: self.capacity_bytes,
            volatile_cache: false,
            // Completes at push, but it stands in for a real device when measuring the layers
            // above: callers run the same steps on it as on an asynchronous device.
            completes_in_submit: false,
        }
    }

    fn arena(&self) -> &Arc<Arena> {
        &self.arena
    }

    fn open_queue(&self, config: QueueConfig) -> Result<NullQueue, DeviceError> {
        Ok(NullQueue {
            arena: self.arena.clone(),
            capacity_bytes: self.capacity_bytes,
            busy: vec![false; usize::from(config.depth)],
            done: Vec::with_capacity(usize::from(config.depth)),
            faults: self.faults.clone(),
        })
    }

    fn faults(&self) -> &FaultInjector {
        &self.faults
    }
}

/// A queue of the [`NullDevice`].
pub struct NullQueue {
    arena: Arc<Arena>,
    capacity_bytes: u64,
    busy: Vec<bool>,
    done: Vec<Completion>,
    faults: Arc<FaultInjector>,
}

impl Queue for NullQueue {
    fn depth(&self) -> u16 {
        self.busy.len() as u16
    }

    unsafe fn push(&mut self, tag: Tag, io: &Io<'_>) -> Result<(), DeviceError> {
        let len = io.validate(&self.arena, self.capacity_bytes)?;
        check_tag(tag, self.depth(), self.busy.get(usize::from(tag)).copied())?;
        let busy = &mut self.busy[usize::from(tag)];
        *busy = true;
        let result = match self.faults.check(io, len) {
            None => Ok(len),
            Some(errno) => Err(DeviceError::Io {
                op: io.op,
                tag,
                offset_bytes: io.offset_bytes,
                len_bytes: len,
                errno,
            }),
        };
        self.done.push(Completion { tag, result });
        Ok(())
    }

    fn submit(&mut self) -> Result<usize, DeviceError> {
        Ok(self.done.len())
    }

    fn reap(&mut self, _min: usize, out: &mut Vec<Completion>) -> Result<usize, DeviceError> {
        let n = self.done.len();
        for c in self.done.drain(..) {
            self.busy[usize::from(c.tag)] = false;
            out.push(c);
        }
        Ok(n)
    }

    fn outstanding(&self) -> usize {
        self.done.len()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn null_device_checks_tags_and_honours_faults() {
        // The null device moves no data, so the shared suite (which compares bytes) does not
        // apply; check tags, fault plans and batching directly.
        use crate::{Device, FaultPlan, Io, OpFilter, Queue, QueueConfig};
        let dev = super::NullDevice::new(1 << 20, 1 << 16).unwrap();
        let mut q = dev
            .open_queue(QueueConfig {
                depth: 4,
                ..QueueConfig::default()
            })
            .unwrap();
        let buf = dev.arena().alloc(1).unwrap();
        let segs = [buf.segment()];
        dev.faults().arm(FaultPlan::nth(1, OpFilter::Reads));
        // SAFETY: `buf` is not touched until both completions are reaped below.
        unsafe {
            q.push(0, &Io::read(0, &segs)).unwrap();
            q.push(1, &Io::read(4096, &segs)).unwrap();
            assert!(q.push(1, &Io::flush()).is_err(), "tag 1 is outstanding");
        }
        assert_eq!(q.submit(), Ok(2));
        let mut out = Vec::new();
        assert_eq!(q.reap(2, &mut out), Ok(2));
        assert_eq!(out[0].result, Ok(4096));
        assert!(matches!(
            out[1].result,
            Err(crate::DeviceError::Io {
                tag: 1,
                offset_bytes: 4096,
                ..
            })
        ));
        assert_eq!(q.outstanding(), 0);
    }
}
