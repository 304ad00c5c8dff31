//! Commit blocks (`struct commit_header`): the block whose presence, at the expected place and
//! with the expected sequence and checksum, makes a transaction part of the log.
//!
//! With csum v2/v3 the kernel (fs/jbd2/commit.c `journal_submit_commit_record` and
//! `jbd2_commit_block_csum_set`) writes `h_chksum_type = 0`, `h_chksum_size = 0`, and
//! `h_chksum[0]` = crc32c(`j_csum_seed`) over the whole block with `h_chksum[0]` zeroed; the
//! commit time goes in `h_commit_sec`/`h_commit_nsec`. Without checksums the three fields are 0.

use super::bytes::{be32, be64, put_be32, put_be64, u8_at};
use super::csum::crc32c_raw;
use super::features::JournalFormat;
use super::header::{blocktype, Header};
use super::{Block, BLOCK_SIZE_BYTES};
use crate::error::{JournalError, Location, Result};

/// Offset of `h_chksum_type`.
pub const H_CHKSUM_TYPE: usize = 0x0C;
/// Offset of `h_chksum_size`.
pub const H_CHKSUM_SIZE: usize = 0x0D;
/// Offset of `h_chksum[0]` (8 be32 slots, `JBD2_CHECKSUM_BYTES`).
pub const H_CHKSUM: usize = 0x10;
/// Offset of `h_commit_sec` (be64).
pub const H_COMMIT_SEC: usize = 0x30;
/// Offset of `h_commit_nsec` (be32).
pub const H_COMMIT_NSEC: usize = 0x38;

/// A decoded commit block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitBlock {
    /// `h_sequence`.
    pub sequence: u32,
    /// `h_chksum_type`.
    pub chksum_type: u8,
    /// `h_chksum_size`.
    pub chksum_size: u8,
    /// `h_chksum[0]`.
    pub checksum: u32,
    /// `h_commit_sec`.
    pub commit_sec: u64,
    /// `h_commit_nsec`.
    pub commit_nsec: u32,
}

/// crc32c of a commit block with `h_chksum[0]` zeroed.
pub fn commit_csum(fmt: &JournalFormat, block: &Block) -> u32 {
    let (head, rest) = block.split_at(H_CHKSUM);
    let rest = rest.get(4..).unwrap_or(&[]);
    let c = crc32c_raw(fmt.csum_seed, head);
    crc32c_raw(crc32c_raw(c, &[0u8; 4]), rest)
}

impl CommitBlock {
    /// Decode the commit block at `journal_block` (the checksum is not checked here: see
    /// [`verify_commit_csum`]).
    pub fn decode(block: &Block, journal_block: u32) -> Result<Self> {
        let at = Location::Commit { journal_block };
        let header = Header::expect(block, at, blocktype::COMMIT)?;
        Ok(CommitBlock {
            sequence: header.sequence,
            chksum_type: u8_at(block, at, H_CHKSUM_TYPE)?,
            chksum_size: u8_at(block, at, H_CHKSUM_SIZE)?,
            checksum: be32(block, at, H_CHKSUM)?,
            commit_sec: be64(block, at, H_COMMIT_SEC)?,
            commit_nsec: be32(block, at, H_COMMIT_NSEC)?,
        })
    }

    /// The commit block of transaction `sequence`, as the kernel writes it.
    pub fn build(
        fmt: &JournalFormat,
        sequence: u32,
        commit_sec: u64,
        commit_nsec: u32,
        journal_block: u32,
    ) -> Result<Block> {
        let at = Location::Commit { journal_block };
        let mut block = [0u8; BLOCK_SIZE_BYTES];
        Header {
            blocktype: blocktype::COMMIT,
            sequence,
        }
        .encode(&mut block, at)?;
        put_be64(&mut block, at, H_COMMIT_SEC, commit_sec)?;
        put_be32(&mut block, at, H_COMMIT_NSEC, commit_nsec)?;
        if fmt.has_csum() {
            let csum = commit_csum(fmt, &block);
            put_be32(&mut block, at, H_CHKSUM, csum)?;
        }
        Ok(block)
    }
}

/// Check `h_chksum[0]` (`jbd2_commit_block_csum_verify`); Ok without csum v2/v3.
pub fn verify_commit_csum(fmt: &JournalFormat, block: &Block, journal_block: u32) -> Result<()> {
    if !fmt.has_csum() {
        return Ok(());
    }
    let at = Location::Commit { journal_block };
    let stored = be32(block, at, H_CHKSUM)?;
    let computed = commit_csum(fmt, block);
    if stored != computed {
        return Err(JournalError::ChecksumMismatch {
            at,
            computed,
            stored,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::features::CsumVersion;

    #[test]
    fn build_decode_verify() {
        let f = JournalFormat {
            bit64: true,
            csum: CsumVersion::V3,
            csum_seed: 0x1234_5678,
            uuid: [0; 16],
        };
        let block = CommitBlock::build(&f, 7, 1_700_000_000, 999, 30).unwrap();
        let c = CommitBlock::decode(&block, 30).unwrap();
        assert_eq!(c.sequence, 7);
        assert_eq!((c.commit_sec, c.commit_nsec), (1_700_000_000, 999));
        assert_eq!((c.chksum_type, c.chksum_size), (0, 0));
        verify_commit_csum(&f, &block, 30).unwrap();
        let mut copy = block;
        copy[H_CHKSUM] = 0;
        copy[H_CHKSUM + 1] = 0;
        copy[H_CHKSUM + 2] = 0;
        copy[H_CHKSUM + 3] = 0;
        assert_eq!(crc32c_raw(f.csum_seed, &copy), c.checksum);
        let mut bad = block;
        bad[4000] ^= 1;
        assert!(verify_commit_csum(&f, &bad, 30).is_err());
    }
}
