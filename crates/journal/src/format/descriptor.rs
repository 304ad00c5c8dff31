//! Descriptor blocks: a `journal_header_t`, then one tag per logged data block (the data blocks
//! follow the descriptor in the log, in tag order), the 16-byte journal UUID after every tag
//! without `SAME_UUID`, and with csum v2/v3 a `jbd2_journal_block_tail` checksum in the last 4
//! bytes (crc32c over the block with the tail zeroed, seeded with `j_csum_seed`). The same tail
//! closes revoke blocks.
//!
//! Tag layouts (big-endian):
//! - csum v3, `journal_block_tag3_t` (16 bytes): `t_blocknr` 0, `t_flags` 4 (be32),
//!   `t_blocknr_high` 8, `t_checksum` 12 (crc32c of the logged block seeded with the sequence).
//! - otherwise `journal_block_tag_t`: `t_blocknr` 0, `t_checksum` 4 (be16, csum v2 only),
//!   `t_flags` 6 (be16), `t_blocknr_high` 8 (64bit only); size per
//!   [`JournalFormat::tag_size_bytes`].
//!
//! Decoding follows the kernel's loop (fs/jbd2/recovery.c `count_tags`/`do_one_pass`): it reads the
//! flags as the be16 at tag offset 6 in both layouts (for v3, the low half of `t_flags`), stops
//! after `LAST_TAG` or when the next tag would run into the tail.

use super::bytes::{be16, be32, put, put_be16, put_be32};
use super::csum::{crc32c_raw, data_block_csum};
use super::features::{CsumVersion, JournalFormat, BLOCK_TAIL_SIZE_BYTES};
use super::header::{blocktype, Header, HEADER_SIZE_BYTES};
use super::{Block, BLOCK_SIZE_BYTES};
use crate::error::{JournalError, Location, Result};

/// Tag flag bits (`JBD2_FLAG_*`).
pub mod tag_flags {
    /// The logged block had the jbd2 magic in its first 4 bytes, which were zeroed in the log.
    pub const ESCAPE: u16 = 1;
    /// The tag is not followed by a UUID (same as the previous tag's).
    pub const SAME_UUID: u16 = 2;
    /// Block deleted by this transaction (unused by jbd2).
    pub const DELETED: u16 = 4;
    /// Last tag of this descriptor block.
    pub const LAST_TAG: u16 = 8;
}

/// Offset of `t_blocknr` in either tag layout.
pub const T_BLOCKNR: usize = 0;
/// Offset of the be16 flags the kernel reads in either layout.
pub const T_FLAGS16: usize = 6;
/// Offset of `t_flags` (be32) in `journal_block_tag3_t`.
pub const T3_FLAGS: usize = 4;
/// Offset of `t_blocknr_high`.
pub const T_BLOCKNR_HIGH: usize = 8;
/// Offset of `t_checksum` (be32) in `journal_block_tag3_t`.
pub const T3_CHECKSUM: usize = 12;
/// Offset of `t_checksum` (be16) in `journal_block_tag_t` (csum v2).
pub const T_CHECKSUM16: usize = 4;
/// Bytes of the UUID following a tag without `SAME_UUID`.
pub const UUID_SIZE_BYTES: usize = 16;

/// One tag: where a logged block goes home, and how it was logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    /// File system block the logged block replays to.
    pub fs_block: u64,
    /// `JBD2_FLAG_*` bits (see [`tag_flags`]).
    pub flags: u16,
    /// Tag checksum as stored (v3: 32 bits; v2: low 16 bits; none: 0).
    pub checksum: u32,
}

impl Tag {
    /// True when the logged block's first 4 bytes stand for the jbd2 magic.
    pub fn escaped(&self) -> bool {
        self.flags & tag_flags::ESCAPE != 0
    }

    /// Whether `logged` (the block as it lies in the journal, still escaped) matches this tag's
    /// checksum for transaction `sequence` (`jbd2_block_tag_csum_verify`); true without csum.
    pub fn csum_matches(&self, fmt: &JournalFormat, sequence: u32, logged: &[u8]) -> bool {
        let computed = data_block_csum(fmt.csum_seed, sequence, logged);
        match fmt.csum {
            CsumVersion::None => true,
            CsumVersion::V2 => self.checksum == computed & 0xFFFF,
            CsumVersion::V3 => self.checksum == computed,
        }
    }
}

/// How many tags fit in one descriptor block: the first tag carries a UUID, the tail is kept free.
pub fn tags_per_descriptor(fmt: &JournalFormat) -> usize {
    (BLOCK_SIZE_BYTES - HEADER_SIZE_BYTES - fmt.tail_size_bytes() - UUID_SIZE_BYTES)
        / fmt.tag_size_bytes()
}

/// The tail checksum of a descriptor or revoke block: crc32c over the block with the tail zeroed.
pub fn block_tail_csum(fmt: &JournalFormat, block: &Block) -> u32 {
    let tail = fmt.tail_size_bytes();
    let (body, _) = block.split_at(BLOCK_SIZE_BYTES - tail);
    let zeros = [0u8; BLOCK_TAIL_SIZE_BYTES];
    crc32c_raw(
        crc32c_raw(fmt.csum_seed, body),
        zeros.get(..tail).unwrap_or(&[]),
    )
}

/// Write the tail checksum (no-op without csum v2/v3).
pub fn set_block_tail(fmt: &JournalFormat, block: &mut Block, at: Location) -> Result<()> {
    if fmt.has_csum() {
        let csum = block_tail_csum(fmt, block);
        put_be32(block, at, BLOCK_SIZE_BYTES - 4, csum)?;
    }
    Ok(())
}

/// Check the tail checksum (`jbd2_descriptor_block_csum_verify`); Ok without csum v2/v3.
pub fn verify_block_tail(fmt: &JournalFormat, block: &Block, at: Location) -> Result<()> {
    if !fmt.has_csum() {
        return Ok(());
    }
    let stored = be32(block, at, BLOCK_SIZE_BYTES - 4)?;
    let computed = block_tail_csum(fmt, block);
    if stored != computed {
        return Err(JournalError::ChecksumMismatch {
            at,
            computed,
            stored,
        });
    }
    Ok(())
}

/// A decoded descriptor block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// `h_sequence`.
    pub sequence: u32,
    /// Tags in log order.
    pub tags: Vec<Tag>,
}

impl Descriptor {
    /// Decode the tags of the descriptor block at `journal_block` (the tail checksum is not
    /// checked here: see [`verify_block_tail`]).
    pub fn decode(fmt: &JournalFormat, block: &Block, journal_block: u32) -> Result<Self> {
        let at = Location::Descriptor { journal_block };
        let header = Header::expect(block, at, blocktype::DESCRIPTOR)?;
        let tag_size = fmt.tag_size_bytes();
        let end = BLOCK_SIZE_BYTES - fmt.tail_size_bytes();
        let mut tags = Vec::new();
        let mut off = HEADER_SIZE_BYTES;
        while off + tag_size <= end {
            let flags = be16(block, at, off + T_FLAGS16)?;
            let mut fs_block = u64::from(be32(block, at, off + T_BLOCKNR)?);
            if fmt.bit64 {
                fs_block |= u64::from(be32(block, at, off + T_BLOCKNR_HIGH)?) << 32;
            }
            let checksum = match fmt.csum {
                CsumVersion::V3 => be32(block, at, off + T3_CHECKSUM)?,
                CsumVersion::V2 => u32::from(be16(block, at, off + T_CHECKSUM16)?),
                CsumVersion::None => 0,
            };
            tags.push(Tag {
                fs_block,
                flags,
                checksum,
            });
            off += tag_size;
            if flags & tag_flags::SAME_UUID == 0 {
                off += UUID_SIZE_BYTES;
            }
            if flags & tag_flags::LAST_TAG != 0 {
                break;
            }
        }
        Ok(Descriptor {
            sequence: header.sequence,
            tags,
        })
    }

    /// Encode a descriptor block for `tags` (at most [`tags_per_descriptor`], at least one):
    /// `SAME_UUID` is set on every tag but the first (which is followed by the UUID), `LAST_TAG`
    /// on the last; the caller's `ESCAPE` bits and checksums are kept; the tail is set.
    pub fn encode(&self, fmt: &JournalFormat, journal_block: u32) -> Result<Block> {
        let at = Location::Descriptor { journal_block };
        let capacity = tags_per_descriptor(fmt);
        if self.tags.is_empty() || self.tags.len() > capacity {
            return Err(JournalError::FieldOutOfRange {
                at,
                field: "tags",
                value: self.tags.len() as u64,
                reason: "a descriptor block holds 1 to tags_per_descriptor() tags",
            });
        }
        let mut block = [0u8; BLOCK_SIZE_BYTES];
        Header {
            blocktype: blocktype::DESCRIPTOR,
            sequence: self.sequence,
        }
        .encode(&mut block, at)?;
        let tag_size = fmt.tag_size_bytes();
        let mut off = HEADER_SIZE_BYTES;
        let last = self.tags.len() - 1;
        for (i, tag) in self.tags.iter().enumerate() {
            let mut flags = tag.flags & !(tag_flags::SAME_UUID | tag_flags::LAST_TAG);
            if i > 0 {
                flags |= tag_flags::SAME_UUID;
            }
            if i == last {
                flags |= tag_flags::LAST_TAG;
            }
            put_be32(&mut block, at, off + T_BLOCKNR, tag.fs_block as u32)?;
            if fmt.bit64 {
                put_be32(
                    &mut block,
                    at,
                    off + T_BLOCKNR_HIGH,
                    (tag.fs_block >> 32) as u32,
                )?;
            } else if tag.fs_block > u64::from(u32::MAX) {
                return Err(JournalError::FieldOutOfRange {
                    at,
                    field: "t_blocknr",
                    value: tag.fs_block,
                    reason: "block number above 2^32 without the 64bit feature",
                });
            }
            match fmt.csum {
                CsumVersion::V3 => {
                    put_be32(&mut block, at, off + T3_FLAGS, u32::from(flags))?;
                    put_be32(&mut block, at, off + T3_CHECKSUM, tag.checksum)?;
                }
                CsumVersion::V2 => {
                    put_be16(&mut block, at, off + T_FLAGS16, flags)?;
                    put_be16(&mut block, at, off + T_CHECKSUM16, tag.checksum as u16)?;
                }
                CsumVersion::None => put_be16(&mut block, at, off + T_FLAGS16, flags)?,
            }
            off += tag_size;
            if i == 0 {
                put(&mut block, at, off, &fmt.uuid)?;
                off += UUID_SIZE_BYTES;
            }
        }
        set_block_tail(fmt, &mut block, at)?;
        Ok(block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(csum: CsumVersion, bit64: bool) -> JournalFormat {
        let uuid = *b"0123456789abcdef";
        JournalFormat {
            bit64,
            csum,
            csum_seed: super::super::csum::journal_csum_seed(&uuid),
            uuid,
        }
    }

    #[test]
    fn capacity_fills_the_block() {
        let f = fmt(CsumVersion::V3, true);
        assert_eq!(tags_per_descriptor(&f), 254);
        assert_eq!(12 + 16 + 254 * 16, BLOCK_SIZE_BYTES - 4);
    }

    #[test]
    fn round_trips_every_format() {
        for (csum, bit64) in [
            (CsumVersion::V3, true),
            (CsumVersion::V3, false),
            (CsumVersion::V2, true),
            (CsumVersion::None, true),
            (CsumVersion::None, false),
        ] {
            let f = fmt(csum, bit64);
            let n = tags_per_descriptor(&f);
            let tags: Vec<Tag> = (0..n as u64)
                .map(|i| Tag {
                    fs_block: if bit64 { (i << 33) | i } else { i * 7 },
                    flags: if i % 3 == 0 { tag_flags::ESCAPE } else { 0 },
                    checksum: match csum {
                        CsumVersion::V3 => 0xDEAD_0000 | i as u32,
                        CsumVersion::V2 => i as u32,
                        CsumVersion::None => 0,
                    },
                })
                .collect();
            let d = Descriptor {
                sequence: 42,
                tags: tags.clone(),
            };
            let block = d.encode(&f, 9).unwrap();
            verify_block_tail(&f, &block, Location::Descriptor { journal_block: 9 }).unwrap();
            let back = Descriptor::decode(&f, &block, 9).unwrap();
            assert_eq!(back.sequence, 42);
            assert_eq!(back.tags.len(), n, "{csum:?} {bit64}");
            for (i, (a, b)) in back.tags.iter().zip(&tags).enumerate() {
                assert_eq!(a.fs_block, b.fs_block);
                assert_eq!(a.checksum, b.checksum);
                assert_eq!(a.escaped(), b.escaped());
                assert_eq!(a.flags & tag_flags::SAME_UUID != 0, i > 0);
                assert_eq!(a.flags & tag_flags::LAST_TAG != 0, i == n - 1);
            }
            assert!(Descriptor {
                sequence: 1,
                tags: vec![tags[0]; n + 1]
            }
            .encode(&f, 9)
            .is_err());
        }
    }

    #[test]
    fn tail_catches_a_flipped_bit() {
        let f = fmt(CsumVersion::V3, true);
        let d = Descriptor {
            sequence: 3,
            tags: vec![Tag {
                fs_block: 5,
                flags: 0,
                checksum: 0,
            }],
        };
        let mut block = d.encode(&f, 1).unwrap();
        block[100] ^= 0x10;
        assert!(matches!(
            verify_block_tail(&f, &block, Location::Descriptor { journal_block: 1 }),
            Err(JournalError::ChecksumMismatch { .. })
        ));
    }
}
