//! Linear directory blocks: a chain of `ext4_dir_entry_2` records filling a block.
//!
//! Each entry is `inode` (le32, 0 = unused slot), `rec_len` (le16, distance to the next entry),
//! `name_len` (u8), `file_type` (u8, with `filetype`), then the name. Records are 4-byte aligned,
//! at least `8 + name_len` long, and tile the block exactly. With `metadata_csum` the last 12
//! bytes are a fake entry (`inode` 0, `rec_len` 12, `name_len` 0, `file_type` 0xDE) whose last four
//! bytes are `crc32c_raw(inode_seed, block bytes before the tail)`.
//!
//! htree (dir_index) interior blocks look like one empty entry to this decoder and carry a
//! different tail (`dx_tail`); [`super::htree`] decodes and encodes them.
//!
//! Encoders: [`encode_dir_block`] lays out a fresh block from entries; [`insert_dir_entry`] adds
//! one entry into the first record with enough slack (a dead record, or the unused tail of a live
//! one, which is split, as the kernel's `ext4_insert_dentry`); [`remove_dir_entry`] merges a
//! record into its predecessor's `rec_len`, or marks the block's first record unused
//! (`ext4_generic_delete_entry`), wiping the name. [`set_dir_tail`] writes the tail entry and
//! its checksum after any change.

use super::bytes::{Reader, Writer};
use super::csum::crc32c_raw;
use crate::error::{FormatError, Location, Result};

/// Size of the entry header before the name.
pub const DIRENT_HEADER_SIZE_BYTES: usize = 8;
/// Size of the checksum tail entry.
pub const DIRENT_TAIL_SIZE_BYTES: usize = 12;
/// `det_reserved_ft` of the tail entry.
pub const DIRENT_TAIL_FT: u8 = 0xDE;
/// Longest name.
pub const NAME_LEN_MAX: usize = 255;

// Entry fields.
const INODE: usize = 0x0;
const REC_LEN: usize = 0x4;
const NAME_LEN: usize = 0x6;
const FILE_TYPE: usize = 0x7;
// Tail fields, relative to the tail start.
const DET_REC_LEN: usize = 0x4;
const DET_RESERVED_FT: usize = 0x7;
const DET_CHECKSUM: usize = 0x8;

/// `file_type` values.
pub mod file_type {
    /// Unknown.
    pub const UNKNOWN: u8 = 0;
    /// Regular file.
    pub const REG_FILE: u8 = 1;
    /// Directory.
    pub const DIR: u8 = 2;
    /// Character device.
    pub const CHRDEV: u8 = 3;
    /// Block device.
    pub const BLKDEV: u8 = 4;
    /// FIFO.
    pub const FIFO: u8 = 5;
    /// Socket.
    pub const SOCK: u8 = 6;
    /// Symbolic link.
    pub const SYMLINK: u8 = 7;
}

/// One directory entry, borrowing its name from the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirEntry<'a> {
    /// Byte offset of the entry in the block.
    pub offset_bytes: usize,
    /// Inode number; 0 marks an unused slot.
    pub inode: u32,
    /// Record length.
    pub rec_len: u16,
    /// `file_type` (see [`file_type`]).
    pub file_type: u8,
    /// Name bytes (not NUL terminated, any bytes except `/` and NUL by convention).
    pub name: &'a [u8],
}

impl DirEntry<'_> {
    /// The slot holds a file (inode != 0).
    pub fn is_live(&self) -> bool {
        self.inode != 0
    }
}

/// Iterator over the entries of one directory block. Yields every record, live or not; after an
/// error it yields nothing more.
#[derive(Debug, Clone)]
pub struct DirEntries<'a> {
    r: Reader<'a>,
    offset_bytes: usize,
    end_bytes: usize,
    failed: bool,
}

/// Iterate the entries of directory `block`. With `has_csum_tail` (metadata_csum), the last 12
/// bytes are the tail and are not yielded; verify them with [`verify_dir_tail`].
pub fn dir_entries(block: &[u8], at: Location, has_csum_tail: bool) -> DirEntries<'_> {
    let end_bytes = if has_csum_tail {
        block.len().saturating_sub(DIRENT_TAIL_SIZE_BYTES)
    } else {
        block.len()
    };
    DirEntries {
        r: Reader::new(block, at),
        offset_bytes: 0,
        end_bytes,
        failed: false,
    }
}

impl<'a> DirEntries<'a> {
    /// Decode the entry at the current offset and advance.
    fn next_entry(&mut self) -> Result<DirEntry<'a>> {
        let off = self.offset_bytes;
        let r = &self.r;
        if off + DIRENT_HEADER_SIZE_BYTES > self.end_bytes {
            return Err(r.out_of_range(
                "rec_len",
                (self.end_bytes - off) as u64,
                "entry header crosses the block end",
            ));
        }
        let inode = r.le32(off + INODE)?;
        let rec_len = r.le16(off + REC_LEN)?;
        let name_len = usize::from(r.u8(off + NAME_LEN)?);
        let rec = usize::from(rec_len);
        if rec < DIRENT_HEADER_SIZE_BYTES + 4 || rec % 4 != 0 {
            return Err(r.out_of_range(
                "rec_len",
                rec_len.into(),
                "less than 12 or not a multiple of 4",
            ));
        }
        if off + rec > self.end_bytes {
            return Err(r.out_of_range("rec_len", rec_len.into(), "entry crosses the block end"));
        }
        if DIRENT_HEADER_SIZE_BYTES + name_len > rec {
            return Err(r.out_of_range("name_len", name_len as u64, "name longer than the record"));
        }
        let name = r.bytes(off + DIRENT_HEADER_SIZE_BYTES, name_len)?;
        let entry = DirEntry {
            offset_bytes: off,
            inode,
            rec_len,
            file_type: r.u8(off + FILE_TYPE)?,
            name,
        };
        self.offset_bytes = off + rec;
        Ok(entry)
    }
}

impl<'a> Iterator for DirEntries<'a> {
    type Item = Result<DirEntry<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.offset_bytes >= self.end_bytes {
            return None;
        }
        let entry = self.next_entry();
        self.failed = entry.is_err();
        Some(entry)
    }
}

/// Check the fake tail entry of a `metadata_csum` directory block and its checksum.
/// `inode_csum_seed` is the directory inode's seed ([`super::inode::Inode::csum_seed`]).
pub fn verify_dir_tail(block: &[u8], at: Location, inode_csum_seed: u32) -> Result<()> {
    let r = Reader::new(block, at);
    let Some(tail) = block.len().checked_sub(DIRENT_TAIL_SIZE_BYTES) else {
        return Err(FormatError::Truncated {
            at,
            needed_bytes: DIRENT_TAIL_SIZE_BYTES as u64,
            len_bytes: block.len() as u64,
        });
    };
    let inode = r.le32(tail + INODE)?;
    let rec_len = r.le16(tail + DET_REC_LEN)?;
    let name_len = r.u8(tail + NAME_LEN)?;
    let ft = r.u8(tail + DET_RESERVED_FT)?;
    if inode != 0
        || usize::from(rec_len) != DIRENT_TAIL_SIZE_BYTES
        || name_len != 0
        || ft != DIRENT_TAIL_FT
    {
        return Err(r.out_of_range(
            "det_reserved_ft",
            ft.into(),
            "no dirent checksum tail at the block end",
        ));
    }
    let stored = r.le32(tail + DET_CHECKSUM)?;
    let computed = crc32c_raw(inode_csum_seed, r.bytes(0, tail)?);
    if computed != stored {
        return Err(FormatError::ChecksumMismatch {
            at,
            expected: computed,
            found: stored,
        });
    }
    Ok(())
}

/// An entry to write: inode, file type and name (1..=255 bytes, no `/` or NUL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewDirEntry<'a> {
    /// Inode number (non-zero).
    pub inode: u32,
    /// `file_type` (see [`file_type`]).
    pub file_type: u8,
    /// Name bytes.
    pub name: &'a [u8],
}

/// The smallest record holding a name of `name_len` bytes (`EXT4_DIR_REC_LEN`).
pub fn dir_rec_len(name_len: usize) -> usize {
    (DIRENT_HEADER_SIZE_BYTES + name_len + 3) & !3
}

/// End of the entry area: the block end, or the start of the checksum tail.
fn entries_end(len: usize, has_csum_tail: bool) -> usize {
    if has_csum_tail {
        len.saturating_sub(DIRENT_TAIL_SIZE_BYTES)
    } else {
        len
    }
}

/// Refuse an entry that cannot be written: empty, too long or a name with `/` or NUL, inode 0.
fn check_new_entry(r: &Reader<'_>, e: &NewDirEntry<'_>) -> Result<()> {
    let name_len = e.name.len();
    if name_len == 0 || name_len > NAME_LEN_MAX || e.name.iter().any(|&b| b == b'/' || b == 0) {
        return Err(r.out_of_range(
            "name_len",
            name_len as u64,
            "name must be 1..=255 bytes without '/' or NUL",
        ));
    }
    if e.inode == 0 {
        return Err(r.out_of_range("inode", 0, "a new entry needs an inode"));
    }
    Ok(())
}

/// Write one record header and name at `off`.
fn put_entry(w: &mut Writer<'_>, off: usize, e: &NewDirEntry<'_>, rec_len: usize) -> Result<()> {
    check_new_entry(&w.reader(), e)?;
    let name_len = e.name.len();
    let rec = u16::try_from(rec_len)
        .map_err(|_| w.out_of_range("rec_len", rec_len as u64, "exceeds 16 bits"))?;
    w.le32(off + INODE, e.inode)?;
    w.le16(off + REC_LEN, rec)?;
    w.u8(off + NAME_LEN, name_len as u8)?;
    w.u8(off + FILE_TYPE, e.file_type)?;
    w.put(off + DIRENT_HEADER_SIZE_BYTES, e.name)?;
    let pad_start = off + DIRENT_HEADER_SIZE_BYTES + name_len;
    w.bytes_mut(
        pad_start,
        dir_rec_len(name_len) - DIRENT_HEADER_SIZE_BYTES - name_len,
    )?
    .fill(0);
    Ok(())
}

/// Lay out a fresh directory block (zeroing it first): `entries` packed in order, the last one
/// stretched to the end of the entry area (one unused record if `entries` is empty), and with
/// `has_csum_tail` the tail entry (checksum 0: seal with [`set_dir_tail`]). Entries that do not
/// fit are `FieldOutOfRange` on `rec_len`.
pub fn encode_dir_block(
    block: &mut [u8],
    at: Location,
    entries: &[NewDirEntry<'_>],
    has_csum_tail: bool,
) -> Result<()> {
    let mut w = Writer::new(block, at);
    let len = w.len();
    w.bytes_mut(0, len)?.fill(0);
    let end = entries_end(len, has_csum_tail);
    let mut off = 0usize;
    for (i, e) in entries.iter().enumerate() {
        let need = dir_rec_len(e.name.len());
        let rec = if i + 1 == entries.len() {
            end.saturating_sub(off)
        } else {
            need
        };
        if off + need > end || rec < need {
            return Err(w.out_of_range(
                "rec_len",
                (off + need) as u64,
                "entries overflow the block",
            ));
        }
        put_entry(&mut w, off, e, rec)?;
        off += rec;
    }
    if entries.is_empty() {
        let rec = u16::try_from(end)
            .map_err(|_| w.out_of_range("rec_len", end as u64, "exceeds 16 bits"))?;
        w.le16(REC_LEN, rec)?;
    }
    if has_csum_tail {
        put_tail_header(&mut w, end)?;
    }
    Ok(())
}

/// The fake tail entry header (inode 0, rec_len 12, name_len 0, file_type 0xDE) at `tail`.
fn put_tail_header(w: &mut Writer<'_>, tail: usize) -> Result<()> {
    w.le32(tail + INODE, 0)?;
    w.le16(tail + DET_REC_LEN, DIRENT_TAIL_SIZE_BYTES as u16)?;
    w.u8(tail + NAME_LEN, 0)?;
    w.u8(tail + DET_RESERVED_FT, DIRENT_TAIL_FT)
}

/// Write the tail entry of a `metadata_csum` directory block and its checksum over the block
/// before it (`inode_csum_seed`: the directory inode's seed).
pub fn set_dir_tail(block: &mut [u8], at: Location, inode_csum_seed: u32) -> Result<()> {
    let mut w = Writer::new(block, at);
    let Some(tail) = w.len().checked_sub(DIRENT_TAIL_SIZE_BYTES) else {
        return Err(FormatError::Truncated {
            at,
            needed_bytes: DIRENT_TAIL_SIZE_BYTES as u64,
            len_bytes: w.len() as u64,
        });
    };
    put_tail_header(&mut w, tail)?;
    let crc = crc32c_raw(inode_csum_seed, w.reader().bytes(0, tail)?);
    w.le32(tail + DET_CHECKSUM, crc)
}

/// Insert `entry` into `block` if some record has room; returns its offset, or `None` when the
/// block is full (the caller adds a block). Refuses a corrupt block. Does not check for an
/// existing entry of the same name (look it up first); re-seal the tail afterwards.
pub fn insert_dir_entry(
    block: &mut [u8],
    at: Location,
    has_csum_tail: bool,
    entry: &NewDirEntry<'_>,
) -> Result<Option<usize>> {
    check_new_entry(&Reader::new(block, at), entry)?;
    let need = dir_rec_len(entry.name.len());
    let mut found = None;
    for e in dir_entries(block, at, has_csum_tail) {
        let e = e?;
        let used = if e.is_live() {
            dir_rec_len(e.name.len())
        } else {
            0
        };
        if usize::from(e.rec_len) >= used + need {
            found = Some((e.offset_bytes, used, usize::from(e.rec_len)));
            break;
        }
    }
    let Some((off, used, rec)) = found else {
        return Ok(None);
    };
    let mut w = Writer::new(block, at);
    if used > 0 {
        w.le16(off + REC_LEN, used as u16)?;
    }
    put_entry(&mut w, off + used, entry, rec - used)?;
    Ok(Some(off + used))
}

/// Remove the live entry called `name` from `block`: its record joins the previous record's
/// `rec_len` (or, first in the block, is marked unused), and its bytes are wiped. Returns the
/// inode it named, or `None` if absent. Re-seal the tail afterwards.
pub fn remove_dir_entry(
    block: &mut [u8],
    at: Location,
    has_csum_tail: bool,
    name: &[u8],
) -> Result<Option<u32>> {
    let mut prev: Option<(usize, u16)> = None;
    let mut found = None;
    for e in dir_entries(block, at, has_csum_tail) {
        let e = e?;
        if e.is_live() && e.name == name {
            found = Some((e.offset_bytes, e.rec_len, e.inode));
            break;
        }
        prev = Some((e.offset_bytes, e.rec_len));
    }
    let Some((off, rec_len, inode)) = found else {
        return Ok(None);
    };
    let mut w = Writer::new(block, at);
    match prev {
        Some((prev_off, prev_rec)) => {
            let merged = u32::from(prev_rec) + u32::from(rec_len);
            let merged = u16::try_from(merged)
                .map_err(|_| w.out_of_range("rec_len", merged.into(), "exceeds 16 bits"))?;
            w.le16(prev_off + REC_LEN, merged)?;
            w.bytes_mut(off, rec_len.into())?.fill(0);
        }
        None => {
            w.le32(off + INODE, 0)?;
            w.bytes_mut(off + NAME_LEN, usize::from(rec_len) - NAME_LEN)?
                .fill(0);
        }
    }
    Ok(Some(inode))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: Location = Location::DirBlock { ino: 2, block: 100 };

    /// Append an entry with the given record length.
    fn push(block: &mut Vec<u8>, inode: u32, name: &[u8], ft: u8, rec_len: u16) {
        let start = block.len();
        block.extend_from_slice(&inode.to_le_bytes());
        block.extend_from_slice(&rec_len.to_le_bytes());
        block.extend_from_slice(&[name.len() as u8, ft]);
        block.extend_from_slice(name);
        block.resize(start + usize::from(rec_len), 0);
    }

    fn sealed_block(seed: u32) -> Vec<u8> {
        let mut block = Vec::new();
        push(&mut block, 2, b".", file_type::DIR, 12);
        push(&mut block, 2, b"..", file_type::DIR, 12);
        push(&mut block, 0, b"gone", file_type::REG_FILE, 16);
        push(
            &mut block,
            12,
            b"file",
            file_type::REG_FILE,
            (4096 - 12 - 40) as u16,
        );
        let crc = crc32c_raw(seed, &block);
        block.extend_from_slice(&[0, 0, 0, 0, 12, 0, 0, DIRENT_TAIL_FT]);
        block.extend_from_slice(&crc.to_le_bytes());
        block
    }

    #[test]
    fn iterates_live_and_dead_entries_and_verifies_the_tail() {
        let block = sealed_block(99);
        assert_eq!(block.len(), 4096);
        let entries: Vec<DirEntry<'_>> =
            dir_entries(&block, AT, true).map(|e| e.unwrap()).collect();
        let names: Vec<&[u8]> = entries.iter().map(|e| e.name).collect();
        assert_eq!(names, [&b"."[..], b"..", b"gone", b"file"]);
        assert!(!entries[2].is_live() && entries[3].is_live());
        assert_eq!(entries[3].offset_bytes, 40);
        verify_dir_tail(&block, AT, 99).unwrap();
        assert!(matches!(
            verify_dir_tail(&block, AT, 98),
            Err(FormatError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn bad_records_stop_the_iteration_with_an_error() {
        let mut block = sealed_block(1);
        block[16..18].copy_from_slice(&13u16.to_le_bytes()); // ".." rec_len not a multiple of 4
        let results: Vec<_> = dir_entries(&block, AT, true).collect();
        assert_eq!(results.len(), 2);
        assert!(matches!(
            results[1],
            Err(FormatError::FieldOutOfRange {
                field: "rec_len",
                ..
            })
        ));
        let mut block = sealed_block(1);
        block[6] = 200; // "." name_len longer than its 12-byte record
        assert!(matches!(
            dir_entries(&block, AT, true).next(),
            Some(Err(FormatError::FieldOutOfRange {
                field: "name_len",
                ..
            }))
        ));
        // Without the tail, the last entry must reach the block end: the tail entry is then
        // decoded as an ordinary (dead) entry.
        let block = sealed_block(1);
        assert_eq!(
            dir_entries(&block, AT, false).filter(|e| e.is_ok()).count(),
            5
        );
        assert!(verify_dir_tail(&block[..8], AT, 1).is_err());
    }

    fn live(block: &[u8]) -> Vec<(Vec<u8>, u32)> {
        dir_entries(block, AT, true)
            .map(|e| e.unwrap())
            .filter(|e| e.is_live())
            .map(|e| (e.name.to_vec(), e.inode))
            .collect()
    }

    #[test]
    fn encode_insert_remove_round_trip() {
        let new = |inode, name| NewDirEntry {
            inode,
            file_type: file_type::REG_FILE,
            name,
        };
        let mut block = vec![0xFFu8; 4096];
        encode_dir_block(&mut block, AT, &[new(2, b"."), new(2, b"..")], true).unwrap();
        set_dir_tail(&mut block, AT, 5).unwrap();
        verify_dir_tail(&block, AT, 5).unwrap();
        // ".." spans to the tail, so the insert splits it.
        assert_eq!(
            insert_dir_entry(&mut block, AT, true, &new(12, b"a")).unwrap(),
            Some(24)
        );
        assert_eq!(
            insert_dir_entry(&mut block, AT, true, &new(13, b"bcdef")).unwrap(),
            Some(36)
        );
        set_dir_tail(&mut block, AT, 5).unwrap();
        verify_dir_tail(&block, AT, 5).unwrap();
        assert_eq!(live(&block).len(), 4);
        // Removing "a" merges its record into ".."; the next insert reuses that slack.
        assert_eq!(
            remove_dir_entry(&mut block, AT, true, b"a").unwrap(),
            Some(12)
        );
        assert_eq!(remove_dir_entry(&mut block, AT, true, b"a").unwrap(), None);
        assert_eq!(
            insert_dir_entry(&mut block, AT, true, &new(14, b"x")).unwrap(),
            Some(24)
        );
        // Removing the first record marks it unused; an insert that fits reuses it.
        assert_eq!(
            remove_dir_entry(&mut block, AT, true, b".").unwrap(),
            Some(2)
        );
        assert_eq!(
            insert_dir_entry(&mut block, AT, true, &new(15, b"y")).unwrap(),
            Some(0)
        );
        let names: Vec<Vec<u8>> = live(&block).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, [&b"y"[..], b"..", b"x", b"bcdef"]);
        // A full block says so.
        let long = [b'n'; 255];
        let mut inserted = 0;
        while insert_dir_entry(&mut block, AT, true, &new(20, &long))
            .unwrap()
            .is_some()
        {
            inserted += 1;
        }
        assert_eq!(inserted, (4096 - 12 - 60) / 264);
        assert!(insert_dir_entry(&mut block, AT, true, &new(20, b"/")).is_err());
        let mut bad = vec![0u8; 4096];
        assert!(encode_dir_block(&mut bad, AT, &[new(1, b"a/b")], true).is_err());
        assert!(encode_dir_block(&mut bad, AT, &[new(0, b"a")], true).is_err());
        let many: Vec<NewDirEntry<'_>> = (0..20).map(|_| new(3, &long[..])).collect();
        assert!(matches!(
            encode_dir_block(&mut bad, AT, &many, true),
            Err(FormatError::FieldOutOfRange {
                field: "rec_len",
                ..
            })
        ));
    }
}
