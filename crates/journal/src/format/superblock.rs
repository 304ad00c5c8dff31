//! `journal_superblock_t`: 1024 bytes at journal block 0.
//!
//! [`JournalSuperblock::decode`] checks, in order: magic and block type (v1 or v2), the block size
//! (4 KiB only), the geometry (`1 <= s_first < s_maxlen`, `s_start` 0 or inside the log), the
//! features (unknown and unimplemented ones refused by name, see [`super::features`]), the
//! checksum type and, with csum v2/v3, `s_checksum`. A v1 superblock has no feature words: they
//! read as zero, as in the kernel.
//!
//! [`JournalSuperblock::encode`] writes the modelled fields over the raw 1024 bytes they were
//! decoded from (so `s_users` and padding are preserved) and recomputes `s_checksum` when the
//! journal has csum v2/v3.

use super::bytes::{array, be32, put, put_be32, slice_mut, u8_at};
use super::csum::{crc32c_raw, journal_csum_seed};
use super::features::{
    compat, feature_names, incompat, CsumVersion, JournalFormat, CHECKSUM_TYPE_CRC32C,
};
use super::header::{blocktype, Header, H_SEQUENCE};
use super::BLOCK_SIZE_BYTES;
use crate::error::{FeatureKind, JournalError, Location, Result};

/// Size of the journal superblock record.
pub const SUPERBLOCK_SIZE_BYTES: usize = 1024;
/// `s_blocksize`.
pub const S_BLOCKSIZE: usize = 0x0C;
/// `s_maxlen`: blocks in the journal, including the superblock.
pub const S_MAXLEN: usize = 0x10;
/// `s_first`: first block of the log.
pub const S_FIRST: usize = 0x14;
/// `s_sequence`: first transaction expected in the log.
pub const S_SEQUENCE: usize = 0x18;
/// `s_start`: journal block of the log's start; 0 when the journal is clean.
pub const S_START: usize = 0x1C;
/// `s_errno`: error set by `jbd2_journal_abort`.
pub const S_ERRNO: usize = 0x20;
/// `s_feature_compat`.
pub const S_FEATURE_COMPAT: usize = 0x24;
/// `s_feature_incompat`.
pub const S_FEATURE_INCOMPAT: usize = 0x28;
/// `s_feature_ro_compat`.
pub const S_FEATURE_RO_COMPAT: usize = 0x2C;
/// `s_uuid[16]`.
pub const S_UUID: usize = 0x30;
/// `s_nr_users`.
pub const S_NR_USERS: usize = 0x40;
/// `s_dynsuper`.
pub const S_DYNSUPER: usize = 0x44;
/// `s_max_transaction`.
pub const S_MAX_TRANSACTION: usize = 0x48;
/// `s_max_trans_data`.
pub const S_MAX_TRANS_DATA: usize = 0x4C;
/// `s_checksum_type` (one byte).
pub const S_CHECKSUM_TYPE: usize = 0x50;
/// `s_num_fc_blks`.
pub const S_NUM_FC_BLKS: usize = 0x54;
/// `s_head`: head of the log, only up to date while the file system is clean.
pub const S_HEAD: usize = 0x58;
/// `s_checksum`.
pub const S_CHECKSUM: usize = 0xFC;
/// `s_users[16 * 48]`.
pub const S_USERS: usize = 0x100;
/// Maximum `s_nr_users` (`JBD2_USERS_MAX`).
pub const USERS_MAX: u32 = 48;

/// The three feature words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    /// `s_feature_compat`.
    pub compat: u32,
    /// `s_feature_incompat`.
    pub incompat: u32,
    /// `s_feature_ro_compat`.
    pub ro_compat: u32,
}

impl Features {
    /// Space-separated names of every set bit, `dumpe2fs` order (compat, incompat, ro_compat).
    pub fn names(&self) -> String {
        let parts = [
            feature_names(compat::NAMES, self.compat, 'C'),
            feature_names(incompat::NAMES, self.incompat, 'I'),
            feature_names(&[], self.ro_compat, 'R'),
        ];
        parts
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A validated journal superblock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalSuperblock {
    /// `h_blocktype`: [`blocktype::SUPERBLOCK_V1`] or [`blocktype::SUPERBLOCK_V2`].
    pub version_blocktype: u32,
    /// `s_blocksize`.
    pub block_size_bytes: u32,
    /// `s_maxlen`: journal length in blocks; the log is `[first_block, maxlen_blocks)`.
    pub maxlen_blocks: u32,
    /// `s_first`.
    pub first_block: u32,
    /// `s_sequence`.
    pub sequence: u32,
    /// `s_start`: 0 when clean.
    pub start_block: u32,
    /// `s_errno` (negative errno after a journal abort).
    pub errno: i32,
    /// Feature words.
    pub features: Features,
    /// `s_uuid`.
    pub uuid: [u8; 16],
    /// `s_nr_users`.
    pub nr_users: u32,
    /// `s_max_transaction`.
    pub max_transaction_blocks: u32,
    /// `s_max_trans_data`.
    pub max_trans_data_blocks: u32,
    /// `s_checksum_type`.
    pub checksum_type: u8,
    /// `s_num_fc_blks`.
    pub num_fc_blocks: u32,
    /// `s_head`.
    pub head_block: u32,
    /// `s_checksum` as stored.
    pub checksum: u32,
    raw: Box<[u8; SUPERBLOCK_SIZE_BYTES]>,
}

const AT: Location = Location::Superblock;

fn out_of_range(field: &'static str, value: u64, reason: &'static str) -> JournalError {
    JournalError::FieldOutOfRange {
        at: AT,
        field,
        value,
        reason,
    }
}

/// `s_checksum` of a raw superblock: crc32c(~0) over the 1024 bytes with `s_checksum` zeroed.
pub fn superblock_csum(raw: &[u8; SUPERBLOCK_SIZE_BYTES]) -> u32 {
    let mut copy = *raw;
    if let Some(c) = copy.get_mut(S_CHECKSUM..S_CHECKSUM + 4) {
        c.fill(0);
    }
    crc32c_raw(!0, &copy)
}

impl JournalSuperblock {
    /// Decode and validate the journal superblock from the start of journal block 0.
    pub fn decode(buf: &[u8]) -> Result<Self> {
        let raw: [u8; SUPERBLOCK_SIZE_BYTES] = array(buf, AT, 0)?;
        let header = match Header::decode(&raw, AT)? {
            Some(h) => h,
            None => {
                return Err(JournalError::BadMagic {
                    at: AT,
                    found: be32(&raw, AT, 0)?,
                })
            }
        };
        if header.blocktype != blocktype::SUPERBLOCK_V1
            && header.blocktype != blocktype::SUPERBLOCK_V2
        {
            return Err(JournalError::BadBlockType {
                at: AT,
                expected: blocktype::SUPERBLOCK_V2,
                found: header.blocktype,
            });
        }
        let v2 = header.blocktype == blocktype::SUPERBLOCK_V2;
        let field = |off| be32(&raw, AT, off);
        let features = if v2 {
            Features {
                compat: field(S_FEATURE_COMPAT)?,
                incompat: field(S_FEATURE_INCOMPAT)?,
                ro_compat: field(S_FEATURE_RO_COMPAT)?,
            }
        } else {
            Features::default()
        };
        let sb = JournalSuperblock {
            version_blocktype: header.blocktype,
            block_size_bytes: field(S_BLOCKSIZE)?,
            maxlen_blocks: field(S_MAXLEN)?,
            first_block: field(S_FIRST)?,
            sequence: field(S_SEQUENCE)?,
            start_block: field(S_START)?,
            errno: field(S_ERRNO)? as i32,
            features,
            uuid: array(&raw, AT, S_UUID)?,
            nr_users: field(S_NR_USERS)?,
            max_transaction_blocks: field(S_MAX_TRANSACTION)?,
            max_trans_data_blocks: field(S_MAX_TRANS_DATA)?,
            checksum_type: u8_at(&raw, AT, S_CHECKSUM_TYPE)?,
            num_fc_blocks: field(S_NUM_FC_BLKS)?,
            head_block: field(S_HEAD)?,
            checksum: field(S_CHECKSUM)?,
            raw: Box::new(raw),
        };
        sb.validate()?;
        if sb.format()?.has_csum() {
            let computed = superblock_csum(&sb.raw);
            if computed != sb.checksum {
                return Err(JournalError::ChecksumMismatch {
                    at: AT,
                    computed,
                    stored: sb.checksum,
                });
            }
        }
        Ok(sb)
    }

    fn validate(&self) -> Result<()> {
        if self.block_size_bytes as usize != BLOCK_SIZE_BYTES {
            return Err(out_of_range(
                "s_blocksize",
                self.block_size_bytes.into(),
                "only 4096-byte journal blocks are supported",
            ));
        }
        if self.first_block == 0 || self.first_block >= self.maxlen_blocks {
            return Err(out_of_range(
                "s_first",
                self.first_block.into(),
                "must satisfy 1 <= s_first < s_maxlen",
            ));
        }
        if self.start_block != 0
            && (self.start_block < self.first_block || self.start_block >= self.maxlen_blocks)
        {
            return Err(out_of_range(
                "s_start",
                self.start_block.into(),
                "must be 0 (clean) or inside [s_first, s_maxlen)",
            ));
        }
        if self.nr_users > USERS_MAX {
            return Err(out_of_range(
                "s_nr_users",
                self.nr_users.into(),
                "more than 48 users",
            ));
        }
        let f = self.features;
        if f.compat != 0 {
            return Err(JournalError::UnsupportedFeature {
                kind: FeatureKind::Compat,
                names: feature_names(compat::NAMES, f.compat, 'C'),
                bits: f.compat,
            });
        }
        let bad = f.incompat & !incompat::SUPPORTED;
        if bad != 0 {
            return Err(JournalError::UnsupportedFeature {
                kind: FeatureKind::Incompat,
                names: feature_names(incompat::NAMES, bad, 'I'),
                bits: bad,
            });
        }
        if f.ro_compat != 0 {
            return Err(JournalError::UnsupportedFeature {
                kind: FeatureKind::RoCompat,
                names: feature_names(&[], f.ro_compat, 'R'),
                bits: f.ro_compat,
            });
        }
        let both = incompat::CSUM_V2 | incompat::CSUM_V3;
        if f.incompat & both == both {
            return Err(out_of_range(
                "s_feature_incompat",
                f.incompat.into(),
                "checksum_v2 and checksum_v3 together",
            ));
        }
        if f.incompat & both != 0 && self.checksum_type != CHECKSUM_TYPE_CRC32C {
            return Err(out_of_range(
                "s_checksum_type",
                self.checksum_type.into(),
                "checksum_v2/v3 require crc32c (4)",
            ));
        }
        Ok(())
    }

    /// The block layout the features imply.
    pub fn format(&self) -> Result<JournalFormat> {
        let inc = self.features.incompat;
        let csum = if inc & incompat::CSUM_V3 != 0 {
            CsumVersion::V3
        } else if inc & incompat::CSUM_V2 != 0 {
            CsumVersion::V2
        } else {
            CsumVersion::None
        };
        Ok(JournalFormat {
            bit64: inc & incompat::BIT64 != 0,
            csum,
            csum_seed: journal_csum_seed(&self.uuid),
            uuid: self.uuid,
        })
    }

    /// True when the journal holds a log to recover (`s_start != 0`).
    pub fn needs_recovery(&self) -> bool {
        self.start_block != 0
    }

    /// Blocks in the circular log, `s_maxlen - s_first`.
    pub fn log_blocks(&self) -> u32 {
        self.maxlen_blocks.saturating_sub(self.first_block)
    }

    /// The 1024 bytes: the raw record with every modelled field written over it and, with csum
    /// v2/v3, `s_checksum` recomputed (and stored in `self.checksum`).
    pub fn encode(&mut self) -> Result<[u8; SUPERBLOCK_SIZE_BYTES]> {
        self.validate()?;
        let mut raw = *self.raw;
        Header {
            blocktype: self.version_blocktype,
            sequence: be32(&raw, AT, H_SEQUENCE)?,
        }
        .encode(&mut raw, AT)?;
        let fields = [
            (S_BLOCKSIZE, self.block_size_bytes),
            (S_MAXLEN, self.maxlen_blocks),
            (S_FIRST, self.first_block),
            (S_SEQUENCE, self.sequence),
            (S_START, self.start_block),
            (S_ERRNO, self.errno as u32),
            (S_FEATURE_COMPAT, self.features.compat),
            (S_FEATURE_INCOMPAT, self.features.incompat),
            (S_FEATURE_RO_COMPAT, self.features.ro_compat),
            (S_NR_USERS, self.nr_users),
            (S_MAX_TRANSACTION, self.max_transaction_blocks),
            (S_MAX_TRANS_DATA, self.max_trans_data_blocks),
            (S_NUM_FC_BLKS, self.num_fc_blocks),
            (S_HEAD, self.head_block),
        ];
        for (off, v) in fields {
            put_be32(&mut raw, AT, off, v)?;
        }
        put(&mut raw, AT, S_UUID, &self.uuid)?;
        slice_mut(&mut raw, AT, S_CHECKSUM_TYPE, 1)?.fill(self.checksum_type);
        if self.format()?.has_csum() {
            self.checksum = superblock_csum(&raw);
        }
        put_be32(&mut raw, AT, S_CHECKSUM, self.checksum)?;
        *self.raw = raw;
        Ok(raw)
    }

    /// The raw record as last decoded or encoded.
    pub fn raw(&self) -> &[u8; SUPERBLOCK_SIZE_BYTES] {
        &self.raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> [u8; SUPERBLOCK_SIZE_BYTES] {
        let mut raw = [0u8; SUPERBLOCK_SIZE_BYTES];
        Header {
            blocktype: blocktype::SUPERBLOCK_V2,
            sequence: 0,
        }
        .encode(&mut raw, AT)
        .unwrap();
        put_be32(&mut raw, AT, S_BLOCKSIZE, 4096).unwrap();
        put_be32(&mut raw, AT, S_MAXLEN, 1024).unwrap();
        put_be32(&mut raw, AT, S_FIRST, 1).unwrap();
        put_be32(&mut raw, AT, S_SEQUENCE, 9).unwrap();
        put_be32(&mut raw, AT, S_NR_USERS, 1).unwrap();
        raw
    }

    #[test]
    fn decodes_and_reencodes_identically() {
        let raw = sample();
        let mut sb = JournalSuperblock::decode(&raw).unwrap();
        assert_eq!(sb.maxlen_blocks, 1024);
        assert_eq!(sb.sequence, 9);
        assert!(!sb.needs_recovery());
        assert_eq!(sb.encode().unwrap(), raw);
    }

    #[test]
    fn csum_v3_is_set_and_verified() {
        let mut sb = JournalSuperblock::decode(&sample()).unwrap();
        sb.features.incompat = incompat::CSUM_V3 | incompat::BIT64 | incompat::REVOKE;
        sb.checksum_type = CHECKSUM_TYPE_CRC32C;
        sb.start_block = 5;
        let raw = sb.encode().unwrap();
        let back = JournalSuperblock::decode(&raw).unwrap();
        assert_eq!(back, sb);
        let mut bad = raw;
        bad[S_SEQUENCE + 3] ^= 1;
        assert!(matches!(
            JournalSuperblock::decode(&bad),
            Err(JournalError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn refuses_unknown_and_unimplemented_features_by_name() {
        let mut raw = sample();
        put_be32(
            &mut raw,
            AT,
            S_FEATURE_INCOMPAT,
            incompat::FAST_COMMIT | 0x80,
        )
        .unwrap();
        let err = JournalSuperblock::decode(&raw).unwrap_err();
        assert!(
            err.to_string().contains("journal_fast_commit FEATURE_I7"),
            "{err}"
        );
        let mut raw = sample();
        put_be32(&mut raw, AT, S_FEATURE_COMPAT, compat::CHECKSUM).unwrap();
        assert!(matches!(
            JournalSuperblock::decode(&raw),
            Err(JournalError::UnsupportedFeature {
                kind: FeatureKind::Compat,
                ..
            })
        ));
    }

    #[test]
    fn refuses_bad_geometry() {
        for (off, v) in [
            (S_BLOCKSIZE, 1024),
            (S_FIRST, 0),
            (S_FIRST, 1024),
            (S_START, 2000),
        ] {
            let mut raw = sample();
            put_be32(&mut raw, AT, off, v).unwrap();
            assert!(matches!(
                JournalSuperblock::decode(&raw),
                Err(JournalError::FieldOutOfRange { .. })
            ));
        }
    }
}
