//! The scheduler of the latency model: when does a command submitted at `now_ns` complete?
//!
//! A command goes through two resources, in this order, each first-come first-served in
//! submission order:
//! 1. **the link** (one, shared): its data moves for `len / link_bytes_per_sec`, starting when both
//!    the command has arrived and the previous transfer has ended. Flushes carry no data.
//! 2. **a channel** (`channels` of them): it takes the channel that frees first (the lowest index
//!    on ties) once its transfer has ended, and holds it for its media time (`read_ns`,
//!    `write_ns`, or `flush_ns + dirty_blocks * flush_per_dirty_block_ns`).
//!
//! The due time is the end of the media time. Reads move their data before the media time here,
//! unlike a real device; the total and the serialization are the same, and keeping both
//! resources in submission order means a reservation never has to be slotted in before an
//! earlier one.
//!
//! Invariants: `link_free_ns` and every channel's free time only grow; a due time is never before
//! the submission time. All arithmetic saturates.

use crate::config::LatencyModel;
use aios_device::Op;

#[derive(Debug)]
pub(crate) struct Timing {
    model: LatencyModel,
    /// When the link finishes its last reserved transfer.
    link_free_ns: u64,
    /// When each channel finishes its last reserved command; empty when channels are unlimited.
    channel_free_ns: Vec<u64>,
}

impl Timing {
    pub(crate) fn new(model: LatencyModel) -> Timing {
        Timing {
            model,
            link_free_ns: 0,
            channel_free_ns: vec![0; model.channels as usize],
        }
    }

    /// Reserves the resources of one command arriving at `now_ns` and returns its due time.
    pub(crate) fn schedule(
        &mut self,
        now_ns: u64,
        op: Op,
        len_bytes: u32,
        dirty_blocks: u64,
    ) -> u64 {
        let transfer_ns = self.model.transfer_ns(u64::from(len_bytes));
        let media_ns = match op {
            Op::Read => self.model.read_ns,
            Op::Write { .. } => self.model.write_ns,
            Op::Flush => self
                .model
                .flush_ns
                .saturating_add(dirty_blocks.saturating_mul(self.model.flush_per_dirty_block_ns)),
        };
        let mut ready_ns = now_ns;
        if transfer_ns > 0 {
            ready_ns = ready_ns.max(self.link_free_ns).saturating_add(transfer_ns);
            self.link_free_ns = ready_ns;
        }
        self.occupy_channel(ready_ns, media_ns)
    }

    /// Holds the first free channel for `media_ns` from `ready_ns` on; returns the end.
    fn occupy_channel(&mut self, ready_ns: u64, media_ns: u64) -> u64 {
        let Some((index, &free_ns)) = self
            .channel_free_ns
            .iter()
            .enumerate()
            .min_by_key(|&(i, &free)| (free, i))
        else {
            return ready_ns.saturating_add(media_ns);
        };
        let end_ns = ready_ns.max(free_ns).saturating_add(media_ns);
        self.channel_free_ns[index] = end_ns;
        end_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K4: u32 = 4096;

    #[test]
    fn idle_device_costs_transfer_plus_media() {
        let mut t = Timing::new(LatencyModel::ULL);
        assert_eq!(t.schedule(100, Op::Read, K4, 0), 100 + 1_000 + 5_000);
        let mut t = Timing::new(LatencyModel::NAND);
        assert_eq!(t.schedule(0, Op::Flush, 0, 10), 1_000_000 + 10 * 1_000);
    }

    #[test]
    fn unlimited_model_is_instant() {
        let mut t = Timing::new(LatencyModel::INSTANT);
        for _ in 0..100 {
            assert_eq!(t.schedule(7, Op::Write { fua: true }, 128 << 10, 0), 7);
        }
    }

    #[test]
    fn channel_ties_take_the_lowest_index() {
        let model = LatencyModel {
            read_ns: 10,
            channels: 2,
            ..LatencyModel::INSTANT
        };
        let mut t = Timing::new(model);
        let dues: Vec<u64> = (0..5).map(|_| t.schedule(0, Op::Read, K4, 0)).collect();
        assert_eq!(dues, [10, 10, 20, 20, 30]);
    }
}
