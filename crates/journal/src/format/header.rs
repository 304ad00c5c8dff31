//! `journal_header_t`: the 12 bytes opening every journal metadata block.

use super::bytes::{be32, put_be32};
use crate::error::{JournalError, Location, Result};

/// `JBD2_MAGIC_NUMBER`, big-endian at byte 0 of every journal metadata block.
pub const JBD2_MAGIC: u32 = 0xC03B_3998;
/// Offset of `h_magic`.
pub const H_MAGIC: usize = 0x0;
/// Offset of `h_blocktype`.
pub const H_BLOCKTYPE: usize = 0x4;
/// Offset of `h_sequence`.
pub const H_SEQUENCE: usize = 0x8;
/// Size of `journal_header_t`.
pub const HEADER_SIZE_BYTES: usize = 12;

/// `h_blocktype` values.
pub mod blocktype {
    /// `JBD2_DESCRIPTOR_BLOCK`.
    pub const DESCRIPTOR: u32 = 1;
    /// `JBD2_COMMIT_BLOCK`.
    pub const COMMIT: u32 = 2;
    /// `JBD2_SUPERBLOCK_V1`.
    pub const SUPERBLOCK_V1: u32 = 3;
    /// `JBD2_SUPERBLOCK_V2`.
    pub const SUPERBLOCK_V2: u32 = 4;
    /// `JBD2_REVOKE_BLOCK`.
    pub const REVOKE: u32 = 5;
    /// `JBD2_FC_BLOCK` (fast commit).
    pub const FAST_COMMIT: u32 = 6;
}

/// A decoded `journal_header_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// `h_blocktype`.
    pub blocktype: u32,
    /// `h_sequence`: the transaction the block belongs to.
    pub sequence: u32,
}

impl Header {
    /// Decode the header of `buf`; `Ok(None)` when `h_magic` is not the jbd2 magic (not a
    /// journal metadata block, e.g. the end of the log or a logged data block).
    pub fn decode(buf: &[u8], at: Location) -> Result<Option<Self>> {
        if be32(buf, at, H_MAGIC)? != JBD2_MAGIC {
            return Ok(None);
        }
        Ok(Some(Header {
            blocktype: be32(buf, at, H_BLOCKTYPE)?,
            sequence: be32(buf, at, H_SEQUENCE)?,
        }))
    }

    /// Decode, requiring the magic and `blocktype`.
    pub fn expect(buf: &[u8], at: Location, blocktype: u32) -> Result<Self> {
        match Self::decode(buf, at)? {
            None => Err(JournalError::BadMagic {
                at,
                found: be32(buf, at, H_MAGIC)?,
            }),
            Some(h) if h.blocktype != blocktype => Err(JournalError::BadBlockType {
                at,
                expected: blocktype,
                found: h.blocktype,
            }),
            Some(h) => Ok(h),
        }
    }

    /// Write magic, block type and sequence at the start of `buf`.
    pub fn encode(&self, buf: &mut [u8], at: Location) -> Result<()> {
        put_be32(buf, at, H_MAGIC, JBD2_MAGIC)?;
        put_be32(buf, at, H_BLOCKTYPE, self.blocktype)?;
        put_be32(buf, at, H_SEQUENCE, self.sequence)
    }
}

/// True when `block` begins with the jbd2 magic: logging it unchanged would make recovery take
/// it for a metadata block, so it must be escaped.
pub fn starts_with_magic(block: &[u8]) -> bool {
    block.get(..4) == Some(&JBD2_MAGIC.to_be_bytes()[..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_magic() {
        let mut buf = [0u8; 16];
        let at = Location::Block { journal_block: 3 };
        assert_eq!(Header::decode(&buf, at).unwrap(), None);
        let h = Header {
            blocktype: blocktype::COMMIT,
            sequence: 77,
        };
        h.encode(&mut buf, at).unwrap();
        assert_eq!(&buf[..4], &[0xC0, 0x3B, 0x39, 0x98]);
        assert!(starts_with_magic(&buf));
        assert_eq!(Header::decode(&buf, at).unwrap(), Some(h));
        assert!(matches!(
            Header::expect(&buf, at, blocktype::REVOKE),
            Err(JournalError::BadBlockType {
                expected: 5,
                found: 2,
                ..
            })
        ));
        assert!(Header::decode(&buf[..8], at).is_err());
    }
}
