//! Revoke blocks (`jbd2_journal_revoke_header_t`): a header, `r_count` (bytes used, header
//! included) and big-endian block numbers (8 bytes with `64bit`, else 4), then with csum v2/v3 the
//! same tail checksum as descriptor blocks. A record of transaction T stops recovery from
//! replaying that block from any transaction up to and including T.

use super::bytes::{be32, be64, put_be32, put_be64};
use super::descriptor::set_block_tail;
use super::features::JournalFormat;
use super::header::{blocktype, Header, HEADER_SIZE_BYTES};
use super::{Block, BLOCK_SIZE_BYTES};
use crate::error::{JournalError, Location, Result};

/// Offset of `r_count`.
pub const R_COUNT: usize = HEADER_SIZE_BYTES;
/// Size of `jbd2_journal_revoke_header_t`: records start here.
pub const REVOKE_HEADER_SIZE_BYTES: usize = 16;

/// How many records fit in one revoke block.
pub fn records_per_revoke_block(fmt: &JournalFormat) -> usize {
    (BLOCK_SIZE_BYTES - REVOKE_HEADER_SIZE_BYTES - fmt.tail_size_bytes())
        / fmt.revoke_record_size_bytes()
}

/// A decoded revoke block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeBlock {
    /// `h_sequence`.
    pub sequence: u32,
    /// Revoked file system blocks.
    pub blocks: Vec<u64>,
}

impl RevokeBlock {
    /// Decode the records as `scan_revoke_records` does: `r_count` larger than the block minus
    /// its tail is refused (kernel `-EINVAL`); records are read while a whole one fits below
    /// `r_count`. The tail checksum is checked separately
    /// ([`super::descriptor::verify_block_tail`]).
    pub fn decode(fmt: &JournalFormat, block: &Block, journal_block: u32) -> Result<Self> {
        let at = Location::Revoke { journal_block };
        let header = Header::expect(block, at, blocktype::REVOKE)?;
        let count = be32(block, at, R_COUNT)?;
        if count as usize > BLOCK_SIZE_BYTES - fmt.tail_size_bytes() {
            return Err(JournalError::FieldOutOfRange {
                at,
                field: "r_count",
                value: count.into(),
                reason: "larger than the block minus its checksum tail",
            });
        }
        let len = fmt.revoke_record_size_bytes();
        let mut blocks = Vec::new();
        let mut off = REVOKE_HEADER_SIZE_BYTES;
        while off + len <= count as usize {
            blocks.push(if fmt.bit64 {
                be64(block, at, off)?
            } else {
                u64::from(be32(block, at, off)?)
            });
            off += len;
        }
        Ok(RevokeBlock {
            sequence: header.sequence,
            blocks,
        })
    }

    /// Encode at most [`records_per_revoke_block`] records, with the tail checksum.
    pub fn encode(&self, fmt: &JournalFormat, journal_block: u32) -> Result<Block> {
        let at = Location::Revoke { journal_block };
        if self.blocks.len() > records_per_revoke_block(fmt) {
            return Err(JournalError::FieldOutOfRange {
                at,
                field: "r_count",
                value: self.blocks.len() as u64,
                reason: "more records than fit in a revoke block",
            });
        }
        let mut block = [0u8; BLOCK_SIZE_BYTES];
        Header {
            blocktype: blocktype::REVOKE,
            sequence: self.sequence,
        }
        .encode(&mut block, at)?;
        let len = fmt.revoke_record_size_bytes();
        let mut off = REVOKE_HEADER_SIZE_BYTES;
        for &b in &self.blocks {
            if fmt.bit64 {
                put_be64(&mut block, at, off, b)?;
            } else {
                let b32 = u32::try_from(b).map_err(|_| JournalError::FieldOutOfRange {
                    at,
                    field: "revoke record",
                    value: b,
                    reason: "block number above 2^32 without the 64bit feature",
                })?;
                put_be32(&mut block, at, off, b32)?;
            }
            off += len;
        }
        put_be32(&mut block, at, R_COUNT, off as u32)?;
        set_block_tail(fmt, &mut block, at)?;
        Ok(block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::descriptor::verify_block_tail;
    use crate::format::features::CsumVersion;

    #[test]
    fn round_trip_and_count_limit() {
        let f = JournalFormat {
            bit64: true,
            csum: CsumVersion::V3,
            csum_seed: 99,
            uuid: [0; 16],
        };
        assert_eq!(records_per_revoke_block(&f), 509);
        let r = RevokeBlock {
            sequence: 5,
            blocks: (0..509u64).map(|i| i << 20 | 3).collect(),
        };
        let block = r.encode(&f, 2).unwrap();
        verify_block_tail(&f, &block, Location::Revoke { journal_block: 2 }).unwrap();
        assert_eq!(RevokeBlock::decode(&f, &block, 2).unwrap(), r);
        let mut bad = block;
        bad[R_COUNT..R_COUNT + 4].copy_from_slice(&4093u32.to_be_bytes());
        assert!(RevokeBlock::decode(&f, &bad, 2).is_err());
        let too_many = RevokeBlock {
            sequence: 5,
            blocks: vec![1; 510],
        };
        assert!(too_many.encode(&f, 2).is_err());
    }
}
