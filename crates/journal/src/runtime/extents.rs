//! Where the journal lies on the device: journal block index -> device block, as runs.
//!
//! # Invariants
//! - The extents are sorted, contiguous from journal block 0, and none is empty, so every
//!   journal block below [`JournalExtents::len_blocks`] has exactly one device block.
//!
//! # Assumptions
//! - The caller built them from the journal inode's extent map (inode 8), in file system blocks
//!   of 4 KiB, which are device blocks of the same size.

use super::error::RuntimeError;

/// One run: `len_blocks` journal blocks from `journal_block` lie at consecutive device blocks
/// from `device_block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalExtent {
    /// First journal block of the run.
    pub journal_block: u32,
    /// Its device block.
    pub device_block: u64,
    /// Blocks in the run.
    pub len_blocks: u32,
}

/// The journal's placement on the device. See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalExtents {
    extents: Vec<JournalExtent>,
    len_blocks: u32,
}

impl JournalExtents {
    /// Checks and keeps `extents` (sorted by journal block, contiguous from 0, none empty, no
    /// device block overflow).
    pub fn new(extents: Vec<JournalExtent>) -> Result<Self, RuntimeError> {
        let mut next: u32 = 0;
        for e in &extents {
            let bad = |reason| RuntimeError::BadExtents {
                journal_block: e.journal_block,
                reason,
            };
            if e.journal_block != next {
                return Err(bad(
                    "extents must be sorted and contiguous from journal block 0",
                ));
            }
            if e.len_blocks == 0 {
                return Err(bad("empty extent"));
            }
            if e.device_block
                .checked_add(u64::from(e.len_blocks))
                .is_none()
            {
                return Err(bad("device block overflows"));
            }
            next = e
                .journal_block
                .checked_add(e.len_blocks)
                .ok_or_else(|| bad("more than 2^32 journal blocks"))?;
        }
        if next == 0 {
            return Err(RuntimeError::BadExtents {
                journal_block: 0,
                reason: "no extents",
            });
        }
        Ok(JournalExtents {
            extents,
            len_blocks: next,
        })
    }

    /// Extents from the device block of every journal block, in journal order (what
    /// `debugfs -R "blocks <8>"` prints), merging consecutive blocks into runs.
    pub fn from_blocks(device_blocks: &[u64]) -> Result<Self, RuntimeError> {
        let mut extents: Vec<JournalExtent> = Vec::new();
        for (i, &b) in device_blocks.iter().enumerate() {
            let journal_block = u32::try_from(i).map_err(|_| RuntimeError::BadExtents {
                journal_block: u32::MAX,
                reason: "more than 2^32 journal blocks",
            })?;
            match extents.last_mut() {
                Some(last)
                    if last.device_block.checked_add(u64::from(last.len_blocks)) == Some(b) =>
                {
                    last.len_blocks += 1;
                }
                _ => extents.push(JournalExtent {
                    journal_block,
                    device_block: b,
                    len_blocks: 1,
                }),
            }
        }
        JournalExtents::new(extents)
    }

    /// Journal blocks mapped.
    pub fn len_blocks(&self) -> u32 {
        self.len_blocks
    }

    /// The extents.
    pub fn extents(&self) -> &[JournalExtent] {
        &self.extents
    }

    /// The device block of `journal_block` and how many journal blocks from it stay physically
    /// contiguous (to the end of its extent).
    pub fn run(&self, journal_block: u32) -> Result<(u64, u32), RuntimeError> {
        let i = self
            .extents
            .partition_point(|e| e.journal_block <= journal_block);
        let unmapped = RuntimeError::Unmapped {
            journal_block,
            mapped_blocks: self.len_blocks,
        };
        let e = i
            .checked_sub(1)
            .and_then(|i| self.extents.get(i))
            .ok_or_else(|| RuntimeError::Unmapped {
                journal_block,
                mapped_blocks: self.len_blocks,
            })?;
        let within = journal_block - e.journal_block;
        if within >= e.len_blocks {
            return Err(unmapped);
        }
        Ok((e.device_block + u64::from(within), e.len_blocks - within))
    }

    /// The device block of `journal_block`.
    pub fn device_block(&self, journal_block: u32) -> Result<u64, RuntimeError> {
        self.run(journal_block).map(|(b, _)| b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_runs_and_refuses_gaps() {
        let x = JournalExtents::from_blocks(&[10, 11, 12, 20, 21, 5]).unwrap();
        assert_eq!(x.extents().len(), 3);
        assert_eq!(x.len_blocks(), 6);
        assert_eq!(x.run(0).unwrap(), (10, 3));
        assert_eq!(x.run(2).unwrap(), (12, 1));
        assert_eq!(x.run(3).unwrap(), (20, 2));
        assert_eq!(x.run(5).unwrap(), (5, 1));
        assert!(matches!(
            x.run(6),
            Err(RuntimeError::Unmapped {
                journal_block: 6,
                mapped_blocks: 6
            })
        ));
        let gap = vec![
            JournalExtent {
                journal_block: 0,
                device_block: 1,
                len_blocks: 2,
            },
            JournalExtent {
                journal_block: 3,
                device_block: 9,
                len_blocks: 2,
            },
        ];
        assert!(JournalExtents::new(gap).is_err());
        assert!(JournalExtents::new(Vec::new()).is_err());
        assert!(JournalExtents::from_blocks(&[]).is_err());
    }
}
