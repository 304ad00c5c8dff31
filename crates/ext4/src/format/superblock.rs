//! The ext4 superblock: 1024 bytes at byte offset 1024 of the device.
//!
//! [`Superblock::decode`] checks, in order: the magic, the `metadata_csum` checksum (crc32c over
//! bytes `0..0x3FC`, stored at `0x3FC`), the feature words (unknown incompat or ro_compat bits are
//! refused by name; `recover` is reported as [`FormatError::JournalNeedsRecovery`]), the block size
//! (4 KiB only), and the geometry fields that every later computation divides or multiplies by.
//! Unknown compat features are accepted, as the kernel does.
//! [`Superblock::decode_recovering`] is the same but accepts `recover` (for journal replay).
//!
//! [`Superblock::encode_into`] patches the fields the write path changes (free counts, state,
//! feature words, orphan list head, times, mount and error bookkeeping) into the raw 1024-byte
//! record they were decoded from, and recomputes the checksum. Every other byte, including the
//! fields this crate does not model, is left exactly as it was: encoding never loses a field.

use super::bytes::{hi32, lo32, Reader, Writer};
use super::csum::crc32c_raw;
pub use super::features::{compat, feature_names, incompat, ro_compat};
use crate::error::{FeatureKind, FormatError, Location, Result};

/// Byte offset of the primary superblock on the device.
pub const SUPERBLOCK_OFFSET_BYTES: u64 = 1024;
/// Size of the superblock record.
pub const SUPERBLOCK_SIZE_BYTES: usize = 1024;
/// `s_magic`.
pub const EXT4_SUPER_MAGIC: u16 = 0xEF53;
/// The only block size supported.
pub const BLOCK_SIZE_BYTES: u32 = 4096;
/// `s_checksum_type` value for crc32c.
pub const CHECKSUM_TYPE_CRC32C: u8 = 1;
/// Size of inodes on revision-0 file systems.
pub const GOOD_OLD_INODE_SIZE_BYTES: u16 = 128;
/// First non-reserved inode on revision-0 file systems.
pub const GOOD_OLD_FIRST_INO: u32 = 11;
/// Group descriptor size without the `64bit` feature.
pub const DESC_SIZE_32_BYTES: u16 = 32;
/// Minimum group descriptor size with the `64bit` feature.
pub const DESC_SIZE_64_MIN_BYTES: u16 = 64;
/// Maximum group descriptor size (`EXT4_MAX_DESC_SIZE`).
pub const DESC_SIZE_MAX_BYTES: u16 = 1024;

// Field offsets (Documentation/filesystems/ext4/super.rst).
const S_INODES_COUNT: usize = 0x0;
const S_BLOCKS_COUNT_LO: usize = 0x4;
const S_R_BLOCKS_COUNT_LO: usize = 0x8;
const S_FREE_BLOCKS_COUNT_LO: usize = 0xC;
const S_FREE_INODES_COUNT: usize = 0x10;
const S_FIRST_DATA_BLOCK: usize = 0x14;
const S_LOG_BLOCK_SIZE: usize = 0x18;
const S_BLOCKS_PER_GROUP: usize = 0x20;
const S_INODES_PER_GROUP: usize = 0x28;
const S_MTIME: usize = 0x2C;
const S_WTIME: usize = 0x30;
const S_MNT_COUNT: usize = 0x34;
const S_MAX_MNT_COUNT: usize = 0x36;
const S_MAGIC: usize = 0x38;
const S_STATE: usize = 0x3A;
const S_LASTCHECK: usize = 0x40;
const S_REV_LEVEL: usize = 0x4C;
const S_FIRST_INO: usize = 0x54;
const S_INODE_SIZE: usize = 0x58;
const S_FEATURE_COMPAT: usize = 0x5C;
const S_FEATURE_INCOMPAT: usize = 0x60;
const S_FEATURE_RO_COMPAT: usize = 0x64;
const S_UUID: usize = 0x68;
const S_VOLUME_NAME: usize = 0x78;
const S_RESERVED_GDT_BLOCKS: usize = 0xCE;
const S_JOURNAL_INUM: usize = 0xE0;
const S_LAST_ORPHAN: usize = 0xE8;
const S_HASH_SEED: usize = 0xEC;
const S_DEF_HASH_VERSION: usize = 0xFC;
const S_DESC_SIZE: usize = 0xFE;
const S_MKFS_TIME: usize = 0x108;
const S_BLOCKS_COUNT_HI: usize = 0x150;
const S_R_BLOCKS_COUNT_HI: usize = 0x154;
const S_FREE_BLOCKS_COUNT_HI: usize = 0x158;
const S_MIN_EXTRA_ISIZE: usize = 0x15C;
const S_WANT_EXTRA_ISIZE: usize = 0x15E;
const S_FLAGS: usize = 0x160;
const S_LOG_GROUPS_PER_FLEX: usize = 0x174;
const S_CHECKSUM_TYPE: usize = 0x175;
const S_KBYTES_WRITTEN: usize = 0x178;
const S_ERROR_COUNT: usize = 0x194;
const S_FIRST_ERROR: ErrorOffsets = ErrorOffsets {
    time: 0x198,
    time_hi: 0x278,
    ino: 0x19C,
    block: 0x1A0,
    func: 0x1A8,
    line: 0x1C8,
    errcode: 0x27C,
};
const S_LAST_ERROR: ErrorOffsets = ErrorOffsets {
    time: 0x1CC,
    time_hi: 0x279,
    ino: 0x1D0,
    line: 0x1D4,
    block: 0x1D8,
    func: 0x1E0,
    errcode: 0x27D,
};
const S_CHECKSUM_SEED: usize = 0x270;
const S_WTIME_HI: usize = 0x274;
const S_MTIME_HI: usize = 0x275;
const S_MKFS_TIME_HI: usize = 0x276;
const S_LASTCHECK_HI: usize = 0x277;
/// Length of `s_first_error_func` / `s_last_error_func`.
pub const ERROR_FUNC_LEN_BYTES: usize = 32;

/// `s_state`: cleanly unmounted.
pub const STATE_VALID_FS: u16 = 0x1;
/// `s_state`: errors detected.
pub const STATE_ERROR_FS: u16 = 0x2;
/// `s_state`: orphans being recovered.
pub const STATE_ORPHAN_FS: u16 = 0x4;
/// `s_flags`: directory hashes treat name bytes as signed chars.
pub const FLAGS_SIGNED_HASH: u32 = 0x1;
/// `s_flags`: directory hashes treat name bytes as unsigned chars.
pub const FLAGS_UNSIGNED_HASH: u32 = 0x2;

/// Where one error record (`s_first_error_*` or `s_last_error_*`) lives.
struct ErrorOffsets {
    time: usize,
    time_hi: usize,
    ino: usize,
    block: usize,
    func: usize,
    line: usize,
    errcode: usize,
}

/// One error record of the superblock (`s_first_error_*` or `s_last_error_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ErrorRecord {
    /// `s_*_error_time` (with `_hi`), seconds since the epoch; 0 = none.
    pub time_secs: i64,
    /// `s_*_error_ino`.
    pub ino: u32,
    /// `s_*_error_block`.
    pub block: u64,
    /// `s_*_error_func`, NUL padded.
    pub func: [u8; ERROR_FUNC_LEN_BYTES],
    /// `s_*_error_line`.
    pub line: u32,
    /// `s_*_error_errcode`.
    pub errcode: u8,
}
/// Offset of `s_checksum`; the checksum covers every byte before it.
pub const S_CHECKSUM: usize = 0x3FC;

/// A decoded, validated superblock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// `s_inodes_count`.
    pub inodes_count: u32,
    /// `s_blocks_count` (hi half only with `64bit`).
    pub blocks_count: u64,
    /// `s_r_blocks_count`.
    pub reserved_blocks_count: u64,
    /// `s_free_blocks_count`.
    pub free_blocks_count: u64,
    /// `s_free_inodes_count`.
    pub free_inodes_count: u32,
    /// `s_first_data_block` (0 with 4 KiB blocks).
    pub first_data_block: u32,
    /// Block size, always [`BLOCK_SIZE_BYTES`] once decoded.
    pub block_size_bytes: u32,
    /// `s_blocks_per_group`.
    pub blocks_per_group: u32,
    /// `s_inodes_per_group`.
    pub inodes_per_group: u32,
    /// `s_mtime` (with `s_mtime_hi`), seconds since the epoch.
    pub mtime_secs: i64,
    /// `s_wtime` (with `s_wtime_hi`).
    pub wtime_secs: i64,
    /// `s_mkfs_time` (with `s_mkfs_time_hi`).
    pub mkfs_time_secs: i64,
    /// `s_state` (1 = cleanly unmounted, 2 = errors detected, 4 = orphans being recovered).
    pub state: u16,
    /// `s_mnt_count`: mounts since the last check.
    pub mount_count: u16,
    /// `s_max_mnt_count` (-1: no limit).
    pub max_mount_count: i16,
    /// `s_lastcheck` (with `s_lastcheck_hi`).
    pub lastcheck_secs: i64,
    /// `s_flags` (`FLAGS_*`: signed or unsigned directory hash).
    pub flags: u32,
    /// `s_last_orphan`: head of the orphan inode list (0 = empty).
    pub last_orphan: u32,
    /// `s_kbytes_written` over the file system's life.
    pub kbytes_written: u64,
    /// `s_error_count`.
    pub error_count: u32,
    /// `s_first_error_*`.
    pub first_error: ErrorRecord,
    /// `s_last_error_*`.
    pub last_error: ErrorRecord,
    /// `s_rev_level`.
    pub rev_level: u32,
    /// `s_first_ino`: first non-reserved inode.
    pub first_ino: u32,
    /// `s_inode_size`.
    pub inode_size_bytes: u16,
    /// Group descriptor size: `s_desc_size` with `64bit`, else 32.
    pub desc_size_bytes: u16,
    /// `s_feature_compat`.
    pub feature_compat: u32,
    /// `s_feature_incompat`.
    pub feature_incompat: u32,
    /// `s_feature_ro_compat`.
    pub feature_ro_compat: u32,
    /// `s_uuid`.
    pub uuid: [u8; 16],
    /// `s_volume_name` (NUL padded).
    pub volume_name: [u8; 16],
    /// `s_reserved_gdt_blocks`.
    pub reserved_gdt_blocks: u16,
    /// `s_journal_inum` (0 without a journal).
    pub journal_inum: u32,
    /// `s_hash_seed` (htree hash seed).
    pub hash_seed: [u8; 16],
    /// `s_def_hash_version`.
    pub def_hash_version: u8,
    /// `s_min_extra_isize`.
    pub min_extra_isize: u16,
    /// `s_want_extra_isize`.
    pub want_extra_isize: u16,
    /// `s_log_groups_per_flex`.
    pub log_groups_per_flex: u8,
    /// `s_checksum_type` (1 = crc32c).
    pub checksum_type: u8,
    /// `s_checksum_seed` as stored (meaningful only with incompat `metadata_csum_seed`).
    pub checksum_seed_field: u32,
    /// `s_checksum` as stored.
    pub checksum: u32,
}

impl Superblock {
    /// Decode and validate the 1024-byte superblock record in `buf`. A journal that needs
    /// recovery is refused ([`FormatError::JournalNeedsRecovery`]).
    pub fn decode(buf: &[u8]) -> Result<Self> {
        Self::decode_with(buf, false)
    }

    /// As [`Superblock::decode`], but accept incompat `recover` (check [`Superblock::needs_recovery`]
    /// and replay the journal before trusting anything else).
    pub fn decode_recovering(buf: &[u8]) -> Result<Self> {
        Self::decode_with(buf, true)
    }

    fn decode_with(buf: &[u8], allow_recovery: bool) -> Result<Self> {
        let r = Reader::new(buf, Location::Superblock);
        r.require(SUPERBLOCK_SIZE_BYTES)?;
        let magic = r.le16(S_MAGIC)?;
        if magic != EXT4_SUPER_MAGIC {
            return Err(FormatError::BadMagic {
                at: r.at(),
                expected: EXT4_SUPER_MAGIC.into(),
                found: magic.into(),
            });
        }
        let feature_incompat = r.le32(S_FEATURE_INCOMPAT)?;
        let feature_ro_compat = r.le32(S_FEATURE_RO_COMPAT)?;
        let checksum_type = r.u8(S_CHECKSUM_TYPE)?;
        let checksum = r.le32(S_CHECKSUM)?;
        if feature_ro_compat & ro_compat::METADATA_CSUM != 0 {
            if checksum_type != CHECKSUM_TYPE_CRC32C {
                return Err(r.out_of_range(
                    "s_checksum_type",
                    checksum_type.into(),
                    "only crc32c (1)",
                ));
            }
            let computed = crc32c_raw(!0, r.bytes(0, S_CHECKSUM)?);
            if computed != checksum {
                return Err(FormatError::ChecksumMismatch {
                    at: r.at(),
                    expected: computed,
                    found: checksum,
                });
            }
        }
        check_features(feature_incompat, feature_ro_compat, allow_recovery)?;
        let log_block_size = r.le32(S_LOG_BLOCK_SIZE)?;
        let block_size_bytes = 1024u64.checked_shl(log_block_size).unwrap_or(0);
        if block_size_bytes != u64::from(BLOCK_SIZE_BYTES) {
            return Err(r.out_of_range(
                "s_log_block_size",
                log_block_size.into(),
                "only 4 KiB blocks (2)",
            ));
        }
        let is_64bit = feature_incompat & incompat::BIT64 != 0;
        let hi = |offset: usize| -> Result<u64> {
            Ok(if is_64bit {
                u64::from(r.le32(offset)?) << 32
            } else {
                0
            })
        };
        let rev_level = r.le32(S_REV_LEVEL)?;
        let (inode_size_bytes, first_ino) = if rev_level == 0 {
            (GOOD_OLD_INODE_SIZE_BYTES, GOOD_OLD_FIRST_INO)
        } else {
            (r.le16(S_INODE_SIZE)?, r.le32(S_FIRST_INO)?)
        };
        let desc_size_bytes = if is_64bit {
            r.le16(S_DESC_SIZE)?
        } else {
            DESC_SIZE_32_BYTES
        };
        let time = |lo: usize, hi: usize| -> Result<i64> {
            Ok(i64::from(r.le32(lo)?) | (i64::from(r.u8(hi)?) << 32))
        };
        let sb = Superblock {
            inodes_count: r.le32(S_INODES_COUNT)?,
            blocks_count: u64::from(r.le32(S_BLOCKS_COUNT_LO)?) | hi(S_BLOCKS_COUNT_HI)?,
            reserved_blocks_count: u64::from(r.le32(S_R_BLOCKS_COUNT_LO)?)
                | hi(S_R_BLOCKS_COUNT_HI)?,
            free_blocks_count: u64::from(r.le32(S_FREE_BLOCKS_COUNT_LO)?)
                | hi(S_FREE_BLOCKS_COUNT_HI)?,
            free_inodes_count: r.le32(S_FREE_INODES_COUNT)?,
            first_data_block: r.le32(S_FIRST_DATA_BLOCK)?,
            block_size_bytes: BLOCK_SIZE_BYTES,
            blocks_per_group: r.le32(S_BLOCKS_PER_GROUP)?,
            inodes_per_group: r.le32(S_INODES_PER_GROUP)?,
            mtime_secs: time(S_MTIME, S_MTIME_HI)?,
            wtime_secs: time(S_WTIME, S_WTIME_HI)?,
            mkfs_time_secs: time(S_MKFS_TIME, S_MKFS_TIME_HI)?,
            state: r.le16(S_STATE)?,
            mount_count: r.le16(S_MNT_COUNT)?,
            max_mount_count: r.le16(S_MAX_MNT_COUNT)? as i16,
            lastcheck_secs: time(S_LASTCHECK, S_LASTCHECK_HI)?,
            flags: r.le32(S_FLAGS)?,
            last_orphan: r.le32(S_LAST_ORPHAN)?,
            kbytes_written: le64(&r, S_KBYTES_WRITTEN)?,
            error_count: r.le32(S_ERROR_COUNT)?,
            first_error: decode_error_record(&r, &S_FIRST_ERROR)?,
            last_error: decode_error_record(&r, &S_LAST_ERROR)?,
            rev_level,
            first_ino,
            inode_size_bytes,
            desc_size_bytes,
            feature_compat: r.le32(S_FEATURE_COMPAT)?,
            feature_incompat,
            feature_ro_compat,
            uuid: r.array(S_UUID)?,
            volume_name: r.array(S_VOLUME_NAME)?,
            reserved_gdt_blocks: r.le16(S_RESERVED_GDT_BLOCKS)?,
            journal_inum: r.le32(S_JOURNAL_INUM)?,
            hash_seed: r.array(S_HASH_SEED)?,
            def_hash_version: r.u8(S_DEF_HASH_VERSION)?,
            min_extra_isize: r.le16(S_MIN_EXTRA_ISIZE)?,
            want_extra_isize: r.le16(S_WANT_EXTRA_ISIZE)?,
            log_groups_per_flex: r.u8(S_LOG_GROUPS_PER_FLEX)?,
            checksum_type,
            checksum_seed_field: r.le32(S_CHECKSUM_SEED)?,
            checksum,
        };
        sb.validate_geometry(&r)?;
        Ok(sb)
    }

    /// Patch the fields the write path changes into `raw`, the 1024-byte record this superblock
    /// was decoded from, then recompute `s_checksum` (with `metadata_csum`) and store it in `raw`
    /// and in `self.checksum`. Written: free block and inode counts, `s_state`, the three feature
    /// words (e.g. `recover`), `s_last_orphan`, `s_mtime`/`s_wtime`/`s_lastcheck` (with `_hi`),
    /// mount counts, `s_flags`, `s_kbytes_written` and the error fields. Geometry, UUID, seeds
    /// and every unmodelled byte are kept; `raw` must hold this file system's superblock (magic
    /// and UUID are checked). Values that do not fit their field are `FieldOutOfRange`.
    pub fn encode_into(&mut self, raw: &mut [u8]) -> Result<()> {
        let mut w = Writer::new(raw, Location::Superblock);
        w.require(SUPERBLOCK_SIZE_BYTES)?;
        let r = w.reader();
        let magic = r.le16(S_MAGIC)?;
        if magic != EXT4_SUPER_MAGIC {
            return Err(FormatError::BadMagic {
                at: r.at(),
                expected: EXT4_SUPER_MAGIC.into(),
                found: magic.into(),
            });
        }
        if r.array::<16>(S_UUID)? != self.uuid {
            return Err(r.out_of_range("s_uuid", 0, "not this file system's superblock"));
        }
        if !self.is_64bit() && hi32(self.free_blocks_count) != 0 {
            return Err(w.out_of_range(
                "s_free_blocks_count",
                self.free_blocks_count,
                "above 2^32 without 64bit",
            ));
        }
        w.le32(S_FREE_BLOCKS_COUNT_LO, lo32(self.free_blocks_count))?;
        if self.is_64bit() {
            w.le32(S_FREE_BLOCKS_COUNT_HI, hi32(self.free_blocks_count))?;
        }
        w.le32(S_FREE_INODES_COUNT, self.free_inodes_count)?;
        encode_time(&mut w, S_MTIME, S_MTIME_HI, self.mtime_secs, "s_mtime")?;
        encode_time(&mut w, S_WTIME, S_WTIME_HI, self.wtime_secs, "s_wtime")?;
        encode_time(
            &mut w,
            S_LASTCHECK,
            S_LASTCHECK_HI,
            self.lastcheck_secs,
            "s_lastcheck",
        )?;
        w.le16(S_MNT_COUNT, self.mount_count)?;
        w.le16(S_MAX_MNT_COUNT, self.max_mount_count as u16)?;
        w.le16(S_STATE, self.state)?;
        w.le32(S_FEATURE_COMPAT, self.feature_compat)?;
        w.le32(S_FEATURE_INCOMPAT, self.feature_incompat)?;
        w.le32(S_FEATURE_RO_COMPAT, self.feature_ro_compat)?;
        w.le32(S_LAST_ORPHAN, self.last_orphan)?;
        w.le32(S_FLAGS, self.flags)?;
        put_le64(&mut w, S_KBYTES_WRITTEN, self.kbytes_written)?;
        w.le32(S_ERROR_COUNT, self.error_count)?;
        encode_error_record(&mut w, &S_FIRST_ERROR, &self.first_error)?;
        encode_error_record(&mut w, &S_LAST_ERROR, &self.last_error)?;
        if self.has_metadata_csum() {
            self.checksum = crc32c_raw(!0, w.reader().bytes(0, S_CHECKSUM)?);
            w.le32(S_CHECKSUM, self.checksum)?;
        }
        Ok(())
    }

    /// The journal holds transactions to replay (incompat `recover`).
    pub fn needs_recovery(&self) -> bool {
        self.feature_incompat & incompat::RECOVER != 0
    }

    /// Set or clear incompat `recover` (set while the journal holds uncheckpointed transactions).
    pub fn set_needs_recovery(&mut self, on: bool) {
        if on {
            self.feature_incompat |= incompat::RECOVER;
        } else {
            self.feature_incompat &= !incompat::RECOVER;
        }
    }

    /// Directory hashes treat name bytes as unsigned chars (`s_flags`).
    pub fn unsigned_dir_hash(&self) -> bool {
        self.flags & FLAGS_UNSIGNED_HASH != 0
    }

    /// Refuse geometry that later arithmetic could not survive.
    fn validate_geometry(&self, r: &Reader<'_>) -> Result<()> {
        let bits_per_block = u64::from(self.block_size_bytes) * 8;
        if self.first_data_block != 0 {
            return Err(r.out_of_range(
                "s_first_data_block",
                self.first_data_block.into(),
                "must be 0 with 4 KiB blocks",
            ));
        }
        if self.blocks_per_group == 0 || u64::from(self.blocks_per_group) > bits_per_block {
            return Err(r.out_of_range(
                "s_blocks_per_group",
                self.blocks_per_group.into(),
                "must be 1..=8*block size",
            ));
        }
        if self.inodes_per_group == 0 || u64::from(self.inodes_per_group) > bits_per_block {
            return Err(r.out_of_range(
                "s_inodes_per_group",
                self.inodes_per_group.into(),
                "must be 1..=8*block size",
            ));
        }
        if self.blocks_count <= u64::from(self.first_data_block) || self.blocks_count >= 1 << 48 {
            return Err(r.out_of_range(
                "s_blocks_count",
                self.blocks_count,
                "must be in (first_data_block, 2^48)",
            ));
        }
        let expected_inodes = u64::from(self.group_count()) * u64::from(self.inodes_per_group);
        if u64::from(self.inodes_count) != expected_inodes {
            return Err(r.out_of_range(
                "s_inodes_count",
                self.inodes_count.into(),
                "must equal groups * inodes_per_group",
            ));
        }
        let isz = self.inode_size_bytes;
        if isz < GOOD_OLD_INODE_SIZE_BYTES
            || !isz.is_power_of_two()
            || u32::from(isz) > self.block_size_bytes
        {
            return Err(r.out_of_range(
                "s_inode_size",
                isz.into(),
                "must be a power of two in 128..=block size",
            ));
        }
        if self.first_ino < GOOD_OLD_FIRST_INO || self.first_ino > self.inodes_count {
            return Err(r.out_of_range(
                "s_first_ino",
                self.first_ino.into(),
                "must be in 11..=s_inodes_count",
            ));
        }
        let dsz = self.desc_size_bytes;
        if self.is_64bit()
            && (!(DESC_SIZE_64_MIN_BYTES..=DESC_SIZE_MAX_BYTES).contains(&dsz)
                || !dsz.is_power_of_two())
        {
            return Err(r.out_of_range(
                "s_desc_size",
                dsz.into(),
                "must be a power of two in 64..=1024",
            ));
        }
        if self.has_journal() && self.journal_inum == 0 {
            return Err(r.out_of_range(
                "s_journal_inum",
                0,
                "has_journal set but no journal inode",
            ));
        }
        Ok(())
    }

    /// Number of block groups.
    pub fn group_count(&self) -> u32 {
        let data_blocks = self
            .blocks_count
            .saturating_sub(u64::from(self.first_data_block));
        let groups = data_blocks.div_ceil(u64::from(self.blocks_per_group.max(1)));
        u32::try_from(groups).unwrap_or(u32::MAX)
    }

    /// `64bit` is set: block numbers and group descriptors are 64-bit.
    pub fn is_64bit(&self) -> bool {
        self.feature_incompat & incompat::BIT64 != 0
    }

    /// `metadata_csum` is set: every metadata structure carries a crc32c.
    pub fn has_metadata_csum(&self) -> bool {
        self.feature_ro_compat & ro_compat::METADATA_CSUM != 0
    }

    /// `has_journal` is set.
    pub fn has_journal(&self) -> bool {
        self.feature_compat & compat::HAS_JOURNAL != 0
    }

    /// The file-system-wide checksum seed (`s_csum_seed` in the kernel).
    pub fn csum_seed(&self) -> u32 {
        if self.feature_incompat & incompat::CSUM_SEED != 0 {
            self.checksum_seed_field
        } else {
            crc32c_raw(!0, &self.uuid)
        }
    }

    /// The seed to pass to checksum-verifying decoders: `Some` iff `metadata_csum` is set.
    pub fn verify_seed(&self) -> Option<u32> {
        self.has_metadata_csum().then(|| self.csum_seed())
    }

    /// The volume name up to its first NUL, lossily as UTF-8.
    pub fn volume_name_lossy(&self) -> String {
        let end = self
            .volume_name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.volume_name.len());
        String::from_utf8_lossy(self.volume_name.get(..end).unwrap_or_default()).into_owned()
    }

    /// The UUID in the usual 8-4-4-4-12 hex form.
    pub fn uuid_string(&self) -> String {
        let hex: String = self.uuid.iter().map(|b| format!("{b:02x}")).collect();
        let part = |a: usize, b: usize| hex.get(a..b).unwrap_or_default().to_string();
        format!(
            "{}-{}-{}-{}-{}",
            part(0, 8),
            part(8, 12),
            part(12, 16),
            part(16, 20),
            part(20, 32)
        )
    }

    /// All feature names, compat then incompat then ro_compat, as `dumpe2fs` lists them (modulo order).
    pub fn feature_list(&self) -> Vec<String> {
        [
            feature_names(self.feature_compat, compat::NAMES),
            feature_names(self.feature_incompat, incompat::NAMES),
            feature_names(self.feature_ro_compat, ro_compat::NAMES),
        ]
        .iter()
        .flat_map(|s| s.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect()
    }

    /// Group and index within the group of inode `ino`, or `None` if `ino` is 0 or too large.
    pub fn inode_group_index(&self, ino: u32) -> Option<(u32, u32)> {
        if ino == 0 || ino > self.inodes_count {
            return None;
        }
        let ipg = self.inodes_per_group.max(1);
        Some(((ino - 1) / ipg, (ino - 1) % ipg))
    }

    /// Byte offset on the device of group descriptor `group` (primary table, no `meta_bg`).
    pub fn group_desc_offset_bytes(&self, group: u32) -> Option<u64> {
        if group >= self.group_count() {
            return None;
        }
        let table_start_bytes =
            (u64::from(self.first_data_block) + 1) * u64::from(self.block_size_bytes);
        Some(table_start_bytes + u64::from(group) * u64::from(self.desc_size_bytes))
    }
}

/// A little-endian u64 stored as two le32 halves (lo first).
fn le64(r: &Reader<'_>, offset: usize) -> Result<u64> {
    Ok(u64::from(r.le32(offset)?) | (u64::from(r.le32(offset + 4)?) << 32))
}

/// Write `value` as le32 lo, le32 hi.
fn put_le64(w: &mut Writer<'_>, offset: usize, value: u64) -> Result<()> {
    w.le32(offset, lo32(value))?;
    w.le32(offset + 4, hi32(value))
}

/// A time as a le32 low part and an 8-bit high byte (40 bits, unsigned).
fn encode_time(
    w: &mut Writer<'_>,
    lo: usize,
    hi: usize,
    secs: i64,
    field: &'static str,
) -> Result<()> {
    if !(0..1 << 40).contains(&secs) {
        return Err(w.out_of_range(field, secs as u64, "must be in 0..2^40"));
    }
    w.le32(lo, lo32(secs as u64))?;
    w.u8(hi, (secs >> 32) as u8)
}

fn decode_error_record(r: &Reader<'_>, o: &ErrorOffsets) -> Result<ErrorRecord> {
    Ok(ErrorRecord {
        time_secs: i64::from(r.le32(o.time)?) | (i64::from(r.u8(o.time_hi)?) << 32),
        ino: r.le32(o.ino)?,
        block: le64(r, o.block)?,
        func: r.array(o.func)?,
        line: r.le32(o.line)?,
        errcode: r.u8(o.errcode)?,
    })
}

fn encode_error_record(w: &mut Writer<'_>, o: &ErrorOffsets, e: &ErrorRecord) -> Result<()> {
    encode_time(w, o.time, o.time_hi, e.time_secs, "s_error_time")?;
    w.le32(o.ino, e.ino)?;
    put_le64(w, o.block, e.block)?;
    w.put(o.func, &e.func)?;
    w.le32(o.line, e.line)?;
    w.u8(o.errcode, e.errcode)
}

/// Refuse unknown incompat and ro_compat bits; `recover` gets its own error unless allowed.
fn check_features(
    feature_incompat: u32,
    feature_ro_compat: u32,
    allow_recovery: bool,
) -> Result<()> {
    let unknown_incompat = feature_incompat & !(incompat::SUPPORTED | incompat::RECOVER);
    if unknown_incompat != 0 {
        return Err(FormatError::UnsupportedFeature {
            kind: FeatureKind::Incompat,
            names: feature_names(unknown_incompat, incompat::NAMES),
            bits: unknown_incompat,
        });
    }
    let unknown_ro = feature_ro_compat & !ro_compat::SUPPORTED;
    if unknown_ro != 0 {
        return Err(FormatError::UnsupportedFeature {
            kind: FeatureKind::RoCompat,
            names: feature_names(unknown_ro, ro_compat::NAMES),
            bits: unknown_ro,
        });
    }
    if feature_incompat & incompat::RECOVER != 0 && !allow_recovery {
        return Err(FormatError::JournalNeedsRecovery);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_names_cover_known_and_unknown_bits() {
        assert_eq!(
            feature_names(incompat::FILETYPE | incompat::BIT64, incompat::NAMES),
            "filetype 64bit"
        );
        assert_eq!(
            feature_names(0x8000_0000, incompat::NAMES),
            "FEATURE_0x80000000"
        );
        assert_eq!(feature_names(0, ro_compat::NAMES), "");
        assert_eq!(
            check_features(incompat::SUPPORTED, ro_compat::SUPPORTED, false),
            Ok(())
        );
        assert_eq!(
            check_features(incompat::RECOVER | incompat::FILETYPE, 0, false),
            Err(FormatError::JournalNeedsRecovery)
        );
        assert_eq!(
            check_features(incompat::RECOVER | incompat::FILETYPE, 0, true),
            Ok(())
        );
        // An unknown feature is reported before needs_recovery.
        assert!(matches!(
            check_features(incompat::RECOVER | incompat::META_BG, 0, true),
            Err(FormatError::UnsupportedFeature {
                kind: FeatureKind::Incompat,
                bits: incompat::META_BG,
                ..
            })
        ));
    }

    #[test]
    fn refuses_wrong_magic_and_short_buffers() {
        assert!(matches!(
            Superblock::decode(&[0u8; 1024]),
            Err(FormatError::BadMagic { found: 0, .. })
        ));
        assert!(matches!(
            Superblock::decode(&[0u8; 100]),
            Err(FormatError::Truncated { len_bytes: 100, .. })
        ));
    }
}
