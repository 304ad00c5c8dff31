//! The inode record: an `s_inode_size`-byte slot of a group's inode table.
//!
//! The first 128 bytes are the original ext2 inode; with a larger inode size, `i_extra_isize` says
//! how many of the following bytes are in use (high checksum half, nanosecond and epoch bits of
//! the times, creation time). With `metadata_csum` the checksum is
//! `crc32c_raw(inode_seed, whole record with i_checksum_lo and i_checksum_hi zeroed)` where
//! `inode_seed = crc32c_raw(crc32c_raw(fs_seed, le32 ino), le32 i_generation)`; the low 16 bits are
//! stored at 0x7C and, when `i_extra_isize` reaches it, the high 16 bits at 0x82. An all-zero
//! record (never used, in a zeroed table) is accepted without a checksum, as e2fsprogs does.
//!
//! [`Inode::encode_into`] writes every modelled field into a record (the old one, or zeros for a
//! new inode) and recomputes the checksum. Unmodelled bytes (`l_i_version`, `i_obso_faddr`,
//! `i_version_hi`, `i_projid`, in-inode extended attributes after `i_extra_isize`) are kept, so
//! `encode(decode(raw)) == raw`.

use super::bytes::{hi16, hi32, lo16, lo32, Reader, Writer};
use super::csum::{crc32c_raw, inode_csum_seed};
use super::superblock::GOOD_OLD_INODE_SIZE_BYTES;
use crate::error::{FormatError, Location, Result};

// Field offsets (Documentation/filesystems/ext4/inodes.rst).
const I_MODE: usize = 0x0;
const I_UID: usize = 0x2;
const I_SIZE_LO: usize = 0x4;
const I_ATIME: usize = 0x8;
const I_CTIME: usize = 0xC;
const I_MTIME: usize = 0x10;
const I_DTIME: usize = 0x14;
const I_GID: usize = 0x18;
const I_LINKS_COUNT: usize = 0x1A;
const I_BLOCKS_LO: usize = 0x1C;
const I_FLAGS: usize = 0x20;
/// Offset of `i_block`, the 60-byte extent root / block map / inline symlink target.
pub const I_BLOCK: usize = 0x28;
/// Size of `i_block`.
pub const I_BLOCK_SIZE_BYTES: usize = 60;
const I_GENERATION: usize = 0x64;
const I_FILE_ACL_LO: usize = 0x68;
const I_SIZE_HIGH: usize = 0x6C;
const L_I_BLOCKS_HIGH: usize = 0x74;
const L_I_FILE_ACL_HIGH: usize = 0x76;
const L_I_UID_HIGH: usize = 0x78;
const L_I_GID_HIGH: usize = 0x7A;
/// Offset of `l_i_checksum_lo`.
pub const L_I_CHECKSUM_LO: usize = 0x7C;
const I_EXTRA_ISIZE: usize = 0x80;
/// Offset of `i_checksum_hi`.
pub const I_CHECKSUM_HI: usize = 0x82;
const I_CTIME_EXTRA: usize = 0x84;
const I_MTIME_EXTRA: usize = 0x88;
const I_ATIME_EXTRA: usize = 0x8C;
const I_CRTIME: usize = 0x90;
const I_CRTIME_EXTRA: usize = 0x94;

/// `i_flags`: the file uses an extent tree.
pub const EXT4_EXTENTS_FL: u32 = 0x8_0000;
/// `i_flags`: the directory is htree-indexed.
pub const EXT4_INDEX_FL: u32 = 0x1000;
/// `i_flags`: `i_blocks` counts file system blocks, not 512-byte sectors.
pub const EXT4_HUGE_FILE_FL: u32 = 0x4_0000;
/// `i_flags`: data is stored inline.
pub const EXT4_INLINE_DATA_FL: u32 = 0x1000_0000;

/// Largest `i_blocks` value (48 bits).
pub const BLOCKS_RAW_MAX: u64 = (1 << 48) - 1;
/// Nanoseconds occupy the upper 30 bits of a `*_extra` time word.
const NSEC_LIMIT: u32 = 1 << 30;
/// The two epoch bits of a `*_extra` time word.
const EPOCH_MASK: u32 = 0x3;

/// `i_mode` file type mask and values.
pub const S_IFMT: u16 = 0xF000;
/// Regular file.
pub const S_IFREG: u16 = 0x8000;
/// Directory.
pub const S_IFDIR: u16 = 0x4000;
/// Symbolic link.
pub const S_IFLNK: u16 = 0xA000;

/// A timestamp: seconds since the epoch and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timestamp {
    /// Seconds since 1970 (signed; epoch bits from the extra field extend the range).
    pub secs: i64,
    /// Nanoseconds, 0 when the inode has no extra field for this time.
    pub nanos: u32,
}

/// A decoded inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    /// Inode number.
    pub ino: u32,
    /// `i_mode`: type and permission bits.
    pub mode: u16,
    /// Owner (`i_uid` | `l_i_uid_high` << 16).
    pub uid: u32,
    /// Group (`i_gid` | `l_i_gid_high` << 16).
    pub gid: u32,
    /// File size (`i_size_lo` | `i_size_high` << 32).
    pub size_bytes: u64,
    /// Access time.
    pub atime: Timestamp,
    /// Change time.
    pub ctime: Timestamp,
    /// Modification time.
    pub mtime: Timestamp,
    /// Creation time, if the extra field holds it.
    pub crtime: Option<Timestamp>,
    /// `i_dtime` (deletion time, or orphan list link).
    pub dtime: u32,
    /// `i_links_count`.
    pub links_count: u16,
    /// `i_blocks` (48 bits): 512-byte sectors, or fs blocks with [`EXT4_HUGE_FILE_FL`].
    pub blocks_raw: u64,
    /// `i_flags`.
    pub flags: u32,
    /// `i_block`: extent root, or the target of a fast symlink.
    pub block: [u8; I_BLOCK_SIZE_BYTES],
    /// `i_generation`.
    pub generation: u32,
    /// `i_file_acl` (extended attribute block).
    pub file_acl_block: u64,
    /// `i_extra_isize` (0 for 128-byte inodes).
    pub extra_isize_bytes: u16,
}

impl Inode {
    /// Decode inode `ino` from `buf` (its whole record, `s_inode_size` bytes). With
    /// `fs_csum_seed = Some(seed)` (metadata_csum), verify the checksum.
    pub fn decode(buf: &[u8], ino: u32, fs_csum_seed: Option<u32>) -> Result<Self> {
        let r = Reader::new(buf, Location::Inode { ino });
        let good_old = usize::from(GOOD_OLD_INODE_SIZE_BYTES);
        r.require(good_old)?;
        let extra_isize_bytes = if buf.len() > good_old {
            r.le16(I_EXTRA_ISIZE)?
        } else {
            0
        };
        let extra = usize::from(extra_isize_bytes);
        if good_old + extra > buf.len() || extra % 4 != 0 {
            return Err(r.out_of_range(
                "i_extra_isize",
                extra as u64,
                "must be a multiple of 4 within the inode",
            ));
        }
        let generation = r.le32(I_GENERATION)?;
        if let Some(seed) = fs_csum_seed {
            verify_csum(&r, buf, ino, generation, extra, seed)?;
        }
        let fits = |off: usize| off + 4 <= good_old + extra;
        let time = |base: usize, extra_off: usize| -> Result<Timestamp> {
            let secs = i64::from(r.le32(base)? as i32);
            if !fits(extra_off) {
                return Ok(Timestamp { secs, nanos: 0 });
            }
            let extra_word = r.le32(extra_off)?;
            let epoch = i64::from(extra_word & 0x3);
            Ok(Timestamp {
                secs: secs + (epoch << 32),
                nanos: extra_word >> 2,
            })
        };
        let crtime = if fits(I_CRTIME) {
            Some(time(I_CRTIME, I_CRTIME_EXTRA)?)
        } else {
            None
        };
        Ok(Inode {
            ino,
            mode: r.le16(I_MODE)?,
            uid: u32::from(r.le16(I_UID)?) | (u32::from(r.le16(L_I_UID_HIGH)?) << 16),
            gid: u32::from(r.le16(I_GID)?) | (u32::from(r.le16(L_I_GID_HIGH)?) << 16),
            size_bytes: u64::from(r.le32(I_SIZE_LO)?) | (u64::from(r.le32(I_SIZE_HIGH)?) << 32),
            atime: time(I_ATIME, I_ATIME_EXTRA)?,
            ctime: time(I_CTIME, I_CTIME_EXTRA)?,
            mtime: time(I_MTIME, I_MTIME_EXTRA)?,
            crtime,
            dtime: r.le32(I_DTIME)?,
            links_count: r.le16(I_LINKS_COUNT)?,
            blocks_raw: u64::from(r.le32(I_BLOCKS_LO)?)
                | (u64::from(r.le16(L_I_BLOCKS_HIGH)?) << 32),
            flags: r.le32(I_FLAGS)?,
            block: r.array(I_BLOCK)?,
            generation,
            file_acl_block: u64::from(r.le32(I_FILE_ACL_LO)?)
                | (u64::from(r.le16(L_I_FILE_ACL_HIGH)?) << 32),
            extra_isize_bytes,
        })
    }

    /// The file type bits of `mode` (`S_IF*`).
    pub fn file_type(&self) -> u16 {
        self.mode & S_IFMT
    }

    /// Is a directory.
    pub fn is_dir(&self) -> bool {
        self.file_type() == S_IFDIR
    }

    /// Is a regular file.
    pub fn is_regular(&self) -> bool {
        self.file_type() == S_IFREG
    }

    /// Is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.file_type() == S_IFLNK
    }

    /// Data is mapped by an extent tree rooted in `block`.
    pub fn uses_extents(&self) -> bool {
        self.flags & EXT4_EXTENTS_FL != 0
    }

    /// Space used, in 512-byte sectors (what `stat` reports as `st_blocks`).
    pub fn blocks_512(&self, block_size_bytes: u32) -> u64 {
        if self.flags & EXT4_HUGE_FILE_FL != 0 {
            self.blocks_raw
                .saturating_mul(u64::from(block_size_bytes / 512))
        } else {
            self.blocks_raw
        }
    }

    /// The per-inode checksum seed for this inode's extent and directory blocks.
    pub fn csum_seed(&self, fs_csum_seed: u32) -> u32 {
        inode_csum_seed(fs_csum_seed, self.ino, self.generation)
    }
}

impl Inode {
    /// Write this inode into `raw`, its whole `s_inode_size`-byte record (the old record, or
    /// zeros for a new inode), then, with `fs_csum_seed = Some(seed)`, the checksum (lo, and hi
    /// when `i_extra_isize` covers it). The inode number and generation seed the checksum. A
    /// record that is all zero after the fields are written (checksum bytes included) stays so
    /// (decoders accept it unchecked). Values that
    /// do not fit (times without an extra field, nanoseconds >= 2^30, 48-bit overflows) are
    /// `FieldOutOfRange`.
    pub fn encode_into(&self, raw: &mut [u8], fs_csum_seed: Option<u32>) -> Result<()> {
        let mut w = Writer::new(raw, Location::Inode { ino: self.ino });
        let good_old = usize::from(GOOD_OLD_INODE_SIZE_BYTES);
        w.require(good_old)?;
        let len = w.len();
        let extra = usize::from(self.extra_isize_bytes);
        if (len == good_old && extra != 0) || good_old + extra > len || extra % 4 != 0 {
            return Err(w.out_of_range(
                "i_extra_isize",
                extra as u64,
                "must be a multiple of 4 within the inode",
            ));
        }
        if len > good_old {
            w.le16(I_EXTRA_ISIZE, self.extra_isize_bytes)?;
        }
        let fits = |off: usize| off + 4 <= good_old + extra;
        w.le16(I_MODE, self.mode)?;
        w.le16(I_UID, lo16(self.uid))?;
        w.le16(L_I_UID_HIGH, hi16(self.uid))?;
        w.le16(I_GID, lo16(self.gid))?;
        w.le16(L_I_GID_HIGH, hi16(self.gid))?;
        w.le32(I_SIZE_LO, lo32(self.size_bytes))?;
        w.le32(I_SIZE_HIGH, hi32(self.size_bytes))?;
        for (field, base, extra_off, t) in [
            ("i_atime", I_ATIME, I_ATIME_EXTRA, self.atime),
            ("i_ctime", I_CTIME, I_CTIME_EXTRA, self.ctime),
            ("i_mtime", I_MTIME, I_MTIME_EXTRA, self.mtime),
        ] {
            encode_time(&mut w, field, base, fits(extra_off).then_some(extra_off), t)?;
        }
        match self.crtime {
            Some(t) if fits(I_CRTIME) => {
                let extra_off = fits(I_CRTIME_EXTRA).then_some(I_CRTIME_EXTRA);
                encode_time(&mut w, "i_crtime", I_CRTIME, extra_off, t)?;
            }
            Some(t) => return Err(w.out_of_range("i_crtime", t.secs as u64, "no room in i_extra")),
            None => {}
        }
        w.le32(I_DTIME, self.dtime)?;
        w.le16(I_LINKS_COUNT, self.links_count)?;
        if self.blocks_raw > BLOCKS_RAW_MAX {
            return Err(w.out_of_range("i_blocks", self.blocks_raw, "exceeds 48 bits"));
        }
        w.le32(I_BLOCKS_LO, lo32(self.blocks_raw))?;
        w.le16(L_I_BLOCKS_HIGH, lo16(hi32(self.blocks_raw)))?;
        w.le32(I_FLAGS, self.flags)?;
        w.put(I_BLOCK, &self.block)?;
        w.le32(I_GENERATION, self.generation)?;
        if self.file_acl_block > BLOCKS_RAW_MAX {
            return Err(w.out_of_range("i_file_acl", self.file_acl_block, "exceeds 48 bits"));
        }
        w.le32(I_FILE_ACL_LO, lo32(self.file_acl_block))?;
        w.le16(L_I_FILE_ACL_HIGH, lo16(hi32(self.file_acl_block)))?;
        if let Some(seed) = fs_csum_seed {
            self.seal(&mut w, seed, extra)?;
        }
        Ok(())
    }

    /// Write the checksum fields (see the module doc).
    fn seal(&self, w: &mut Writer<'_>, fs_seed: u32, extra: usize) -> Result<()> {
        let has_hi = I_CHECKSUM_HI + 2 <= usize::from(GOOD_OLD_INODE_SIZE_BYTES) + extra;
        let r = w.reader();
        let record = r.bytes(0, w.len())?;
        if record.iter().all(|&b| b == 0) {
            return Ok(());
        }
        let crc = inode_csum(fs_seed, self.ino, self.generation, record, has_hi);
        w.le16(L_I_CHECKSUM_LO, lo16(crc))?;
        if has_hi {
            w.le16(I_CHECKSUM_HI, hi16(crc))?;
        }
        Ok(())
    }

    /// Set `i_blocks` from a count of 512-byte sectors as the kernel does
    /// (`ext4_inode_blocks_set`): up to 2^48-1 sectors directly (clearing [`EXT4_HUGE_FILE_FL`]),
    /// beyond that in file system blocks with the flag set. Above 2^32-1 sectors `huge_file`
    /// (`fs_has_huge_file`) is required.
    pub fn set_blocks_512(
        &mut self,
        sectors: u64,
        block_size_bytes: u32,
        fs_has_huge_file: bool,
    ) -> Result<()> {
        let at = Location::Inode { ino: self.ino };
        let too_big = |reason| FormatError::FieldOutOfRange {
            at,
            field: "i_blocks",
            value: sectors,
            reason,
        };
        if sectors <= u32::MAX.into() {
            self.blocks_raw = sectors;
            self.flags &= !EXT4_HUGE_FILE_FL;
            return Ok(());
        }
        if !fs_has_huge_file {
            return Err(too_big("above 2^32 sectors needs huge_file"));
        }
        if sectors <= BLOCKS_RAW_MAX {
            self.blocks_raw = sectors;
            self.flags &= !EXT4_HUGE_FILE_FL;
            return Ok(());
        }
        let per_block = u64::from((block_size_bytes / 512).max(1));
        let blocks = sectors / per_block;
        if blocks > BLOCKS_RAW_MAX {
            return Err(too_big("exceeds 2^48 blocks"));
        }
        self.blocks_raw = blocks;
        self.flags |= EXT4_HUGE_FILE_FL;
        Ok(())
    }
}

/// Encode a time: low 32 bits of the seconds at `base`, and at `extra_off` (when the extra field
/// holds it) the epoch bits and nanoseconds (the kernel's `ext4_encode_extra_time`).
fn encode_time(
    w: &mut Writer<'_>,
    field: &'static str,
    base: usize,
    extra_off: Option<usize>,
    t: Timestamp,
) -> Result<()> {
    let lo = lo32(t.secs as u64);
    w.le32(base, lo)?;
    let Some(extra_off) = extra_off else {
        if t.nanos != 0 || i32::try_from(t.secs).is_err() {
            return Err(w.out_of_range(field, t.secs as u64, "needs the extra time field"));
        }
        return Ok(());
    };
    let epoch = (t.secs - i64::from(lo as i32)) >> 32;
    if !(0..=i64::from(EPOCH_MASK)).contains(&epoch) {
        return Err(w.out_of_range(field, t.secs as u64, "beyond the epoch bits (year 2446)"));
    }
    if t.nanos >= NSEC_LIMIT {
        return Err(w.out_of_range(field, t.nanos.into(), "nanoseconds exceed 30 bits"));
    }
    w.le32(extra_off, (epoch as u32) | (t.nanos << 2))
}

/// Verify the inode checksum (see the module doc).
fn verify_csum(
    r: &Reader<'_>,
    buf: &[u8],
    ino: u32,
    generation: u32,
    extra: usize,
    fs_seed: u32,
) -> Result<()> {
    if buf.iter().all(|&b| b == 0) {
        return Ok(());
    }
    let has_hi = I_CHECKSUM_HI + 2 <= usize::from(GOOD_OLD_INODE_SIZE_BYTES) + extra;
    let stored_lo = u32::from(r.le16(L_I_CHECKSUM_LO)?);
    let stored = if has_hi {
        stored_lo | (u32::from(r.le16(I_CHECKSUM_HI)?) << 16)
    } else {
        stored_lo
    };
    let computed = inode_csum(fs_seed, ino, generation, buf, has_hi);
    let computed = if has_hi { computed } else { computed & 0xFFFF };
    if computed != stored {
        return Err(FormatError::ChecksumMismatch {
            at: r.at(),
            expected: computed,
            found: stored,
        });
    }
    Ok(())
}

/// The full 32-bit inode checksum over `raw` with both checksum fields zeroed (`has_hi`: the
/// high field lies within `i_extra_isize`).
pub fn inode_csum(fs_seed: u32, ino: u32, generation: u32, raw: &[u8], has_hi: bool) -> u32 {
    let seed = inode_csum_seed(fs_seed, ino, generation);
    let mut crc = crc32c_raw(seed, raw.get(..L_I_CHECKSUM_LO).unwrap_or(raw));
    crc = crc32c_raw(crc, &[0, 0]);
    if has_hi {
        crc = crc32c_raw(
            crc,
            raw.get(L_I_CHECKSUM_LO + 2..I_CHECKSUM_HI)
                .unwrap_or_default(),
        );
        crc = crc32c_raw(crc, &[0, 0]);
        crc32c_raw(crc, raw.get(I_CHECKSUM_HI + 2..).unwrap_or_default())
    } else {
        crc32c_raw(crc, raw.get(L_I_CHECKSUM_LO + 2..).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put32(raw: &mut [u8], off: usize, v: u32) {
        raw[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    #[test]
    fn decodes_split_fields_and_extra_times() {
        let mut raw = vec![0u8; 256];
        raw[I_MODE..I_MODE + 2].copy_from_slice(&(S_IFREG | 0o644).to_le_bytes());
        put32(&mut raw, I_SIZE_LO, 5);
        put32(&mut raw, I_SIZE_HIGH, 1);
        raw[I_UID..I_UID + 2].copy_from_slice(&1u16.to_le_bytes());
        raw[L_I_UID_HIGH..L_I_UID_HIGH + 2].copy_from_slice(&2u16.to_le_bytes());
        put32(&mut raw, I_MTIME, 0x8000_0000); // negative seconds before the epoch bits
        put32(&mut raw, I_MTIME_EXTRA, (123_456_789 << 2) | 1);
        raw[I_EXTRA_ISIZE..I_EXTRA_ISIZE + 2].copy_from_slice(&32u16.to_le_bytes());
        let seed = 77;
        let csum = inode_csum(seed, 12, 0, &raw, true);
        raw[L_I_CHECKSUM_LO..L_I_CHECKSUM_LO + 2].copy_from_slice(&(csum as u16).to_le_bytes());
        raw[I_CHECKSUM_HI..I_CHECKSUM_HI + 2].copy_from_slice(&((csum >> 16) as u16).to_le_bytes());
        let inode = Inode::decode(&raw, 12, Some(seed)).unwrap();
        assert_eq!(inode.size_bytes, (1 << 32) + 5);
        assert_eq!(inode.uid, 0x2_0001);
        assert_eq!(
            inode.mtime,
            Timestamp {
                secs: -(1i64 << 31) + (1i64 << 32),
                nanos: 123_456_789
            }
        );
        assert!(inode.is_regular() && inode.crtime.is_some());
        assert!(Inode::decode(&raw, 13, Some(seed)).is_err());
    }

    #[test]
    fn small_inodes_and_bad_extra_isize() {
        let raw = vec![0u8; 128];
        let inode = Inode::decode(&raw, 5, Some(1)).unwrap(); // all zero: accepted unchecked
        assert_eq!((inode.extra_isize_bytes, inode.crtime), (0, None));
        let mut raw = vec![0u8; 256];
        raw[I_EXTRA_ISIZE..I_EXTRA_ISIZE + 2].copy_from_slice(&200u16.to_le_bytes());
        assert!(matches!(
            Inode::decode(&raw, 5, None),
            Err(FormatError::FieldOutOfRange {
                field: "i_extra_isize",
                value: 200,
                ..
            })
        ));
        assert!(matches!(
            Inode::decode(&raw[..100], 5, None),
            Err(FormatError::Truncated { .. })
        ));
    }
}
