//! Journal feature bits (`s_feature_compat/incompat/ro_compat`), their kernel names, the subset
//! aios implements, and [`JournalFormat`]: what the features mean for every block's layout.
//!
//! Supported: `revoke`, `64bit`, `checksum_v2`, `checksum_v3` (the set the kernel turns on when it
//! mounts a `metadata_csum` ext4, and none at all as `mke2fs` leaves a fresh journal).
//! Refused by name: `async_commit` (changes which commits end the log), `fast_commit` (a second
//! log area), the v1 compat `checksum` (crc32 of whole transactions in the commit block), any
//! ro_compat bit and any unknown bit.

/// `s_feature_compat` bits.
pub mod compat {
    /// `checksum`: v1 transaction checksums (crc32_be) in the commit block.
    pub const CHECKSUM: u32 = 0x1;
    /// Names, kernel/e2fsprogs spelling.
    pub const NAMES: &[(u32, &str)] = &[(CHECKSUM, "journal_checksum")];
}

/// `s_feature_incompat` bits.
pub mod incompat {
    /// `revoke`: revoke blocks may appear.
    pub const REVOKE: u32 = 0x1;
    /// `64bit`: tags and revoke records carry 64-bit block numbers.
    pub const BIT64: u32 = 0x2;
    /// `async_commit`: commit blocks may be written without waiting for the data.
    pub const ASYNC_COMMIT: u32 = 0x4;
    /// `checksum_v2`: crc32c block checksums, 16-bit tag checksums.
    pub const CSUM_V2: u32 = 0x8;
    /// `checksum_v3`: crc32c block checksums, 32-bit tag checksums (`journal_block_tag3_t`).
    pub const CSUM_V3: u32 = 0x10;
    /// `fast_commit`: a fast-commit area at the end of the journal.
    pub const FAST_COMMIT: u32 = 0x20;
    /// Names, e2fsprogs spelling.
    pub const NAMES: &[(u32, &str)] = &[
        (REVOKE, "journal_incompat_revoke"),
        (BIT64, "journal_64bit"),
        (ASYNC_COMMIT, "journal_async_commit"),
        (CSUM_V2, "journal_checksum_v2"),
        (CSUM_V3, "journal_checksum_v3"),
        (FAST_COMMIT, "journal_fast_commit"),
    ];
    /// The incompat features aios reads and writes.
    pub const SUPPORTED: u32 = REVOKE | BIT64 | CSUM_V2 | CSUM_V3;
}

/// `s_checksum_type` for crc32 (v1 commit checksums).
pub const CHECKSUM_TYPE_CRC32: u8 = 1;
/// `s_checksum_type` for crc32c, required with csum v2/v3.
pub const CHECKSUM_TYPE_CRC32C: u8 = 4;

/// Space-separated names of `bits` (`FEATURE_<kind>_0x..` for unnamed bits), e2fsprogs style.
pub fn feature_names(names: &[(u32, &str)], bits: u32, kind: char) -> String {
    let mut out = Vec::new();
    for bit in (0..32).map(|i| 1u32 << i).filter(|b| bits & b != 0) {
        match names.iter().find(|(b, _)| *b == bit) {
            Some((_, name)) => out.push((*name).to_string()),
            None => out.push(format!("FEATURE_{kind}{}", bit.trailing_zeros())),
        }
    }
    out.join(" ")
}

/// Which block checksums the journal carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsumVersion {
    /// No block checksums.
    None,
    /// `checksum_v2`: block tails and commit checksums; 16-bit tag checksums.
    V2,
    /// `checksum_v3`: block tails and commit checksums; 32-bit tag checksums.
    V3,
}

/// How blocks of one journal are laid out, derived from its superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalFormat {
    /// Tags and revoke records carry 64-bit block numbers.
    pub bit64: bool,
    /// Block checksums.
    pub csum: CsumVersion,
    /// `j_csum_seed` (meaningful when `csum` is not `None`).
    pub csum_seed: u32,
    /// `s_uuid`, written after the first tag of every descriptor block.
    pub uuid: [u8; 16],
}

/// Size of `struct jbd2_journal_block_tail`.
pub const BLOCK_TAIL_SIZE_BYTES: usize = 4;

impl JournalFormat {
    /// `journal_tag_bytes()`: 16 with csum v3; else 12, +2 with csum v2, -4 without 64bit.
    pub fn tag_size_bytes(&self) -> usize {
        match self.csum {
            CsumVersion::V3 => 16,
            CsumVersion::V2 if self.bit64 => 14,
            CsumVersion::V2 => 10,
            CsumVersion::None if self.bit64 => 12,
            CsumVersion::None => 8,
        }
    }

    /// Bytes of the block tail checksum at the end of descriptor and revoke blocks.
    pub fn tail_size_bytes(&self) -> usize {
        match self.csum {
            CsumVersion::None => 0,
            CsumVersion::V2 | CsumVersion::V3 => BLOCK_TAIL_SIZE_BYTES,
        }
    }

    /// Bytes of one revoke record.
    pub fn revoke_record_size_bytes(&self) -> usize {
        if self.bit64 {
            8
        } else {
            4
        }
    }

    /// True when blocks carry crc32c checksums.
    pub fn has_csum(&self) -> bool {
        self.csum != CsumVersion::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_known_and_unknown_bits() {
        assert_eq!(
            feature_names(incompat::NAMES, incompat::ASYNC_COMMIT | 0x100, 'I'),
            "journal_async_commit FEATURE_I8"
        );
    }

    #[test]
    fn tag_sizes_follow_journal_tag_bytes() {
        let f = |bit64, csum| JournalFormat {
            bit64,
            csum,
            csum_seed: 0,
            uuid: [0; 16],
        };
        assert_eq!(f(true, CsumVersion::V3).tag_size_bytes(), 16);
        assert_eq!(f(false, CsumVersion::V3).tag_size_bytes(), 16);
        assert_eq!(f(true, CsumVersion::None).tag_size_bytes(), 12);
        assert_eq!(f(false, CsumVersion::None).tag_size_bytes(), 8);
        assert_eq!(f(true, CsumVersion::V2).tag_size_bytes(), 14);
    }
}
