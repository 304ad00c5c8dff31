//! One fuzz target per on-disk decoder. A target takes arbitrary bytes (for some, a small
//! prefix of parameters first: checksum seed, inode number, journal format; see each target),
//! decodes them with checksums verified and, to reach the field checks behind a checksum, also
//! unverified or with the checksum resealed. On success it checks what a decode promises:
//! derived values computable without panicking, counts within the block, and a round trip
//! through the encoder giving the same value. Any panic is a bug in the decoder or encoder.

use aios_ext4::format::csum::crc32c_raw;
use aios_ext4::format::dir::{dir_entries, verify_dir_tail};
use aios_ext4::format::extent::{verify_extent_tail, ExtentNode};
use aios_ext4::format::group::GroupDesc;
use aios_ext4::format::hash::{dx_hash, effective_hash_version};
use aios_ext4::format::htree::{dx_find, verify_dx_tail, DxKind, DxNode, DxRoot};
use aios_ext4::format::inode::Inode;
use aios_ext4::format::superblock::{Superblock, S_CHECKSUM};
use aios_ext4::Location;
use aios_journal::format::commit::{verify_commit_csum, CommitBlock};
use aios_journal::format::csum::journal_csum_seed;
use aios_journal::format::descriptor::{tags_per_descriptor, verify_block_tail, Descriptor};
use aios_journal::format::features::{CsumVersion, JournalFormat};
use aios_journal::format::revoke::{records_per_revoke_block, RevokeBlock};
use aios_journal::format::superblock::{
    superblock_csum, JournalSuperblock, SUPERBLOCK_SIZE_BYTES as JSB_SIZE_BYTES,
};
use aios_journal::format::{Block, BLOCK_SIZE_BYTES};
use aios_journal::layout::Log;
use aios_journal::recovery::recover;

/// What a target made of its input (counted by the loop: a corpus that never gets past the
/// first check, or never fails one, fuzzes nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The structure decoded (with or without its checksum).
    Decoded,
    /// Every decode gave a typed error.
    Refused,
}

/// A fuzz target: arbitrary bytes in, a verdict out; panics are bugs.
pub type Target = fn(&[u8]) -> Verdict;

/// Every target, by name (the names of the cargo-fuzz targets and of the seed corpora).
pub const TARGETS: &[(&str, Target)] = &[
    ("superblock", superblock),
    ("group_desc", group_desc),
    ("inode", inode),
    ("extent_node", extent_node),
    ("dir_block", dir_block),
    ("dx_block", dx_block),
    ("journal_superblock", journal_superblock),
    ("journal_descriptor", journal_descriptor),
    ("journal_commit", journal_commit),
    ("journal_revoke", journal_revoke),
    ("journal_recovery", journal_recovery),
];

/// The UUID every synthesized journal uses (the format seed of the block targets).
pub const JOURNAL_UUID: [u8; 16] = *b"aios-fuzz-journl";

/// Parameters read off the front of an input; missing bytes read as zero.
struct Prefix<'a> {
    rest: &'a [u8],
}

impl<'a> Prefix<'a> {
    fn new(data: &'a [u8]) -> Self {
        Prefix { rest: data }
    }

    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.rest.len());
        out[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        out
    }

    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
}

/// Prefix layouts, shared with the seed builders.
pub mod prefix {
    /// `[fs csum seed: u32][group: u32][desc_size: u16][blocks_count: u64]`, then the descriptor.
    pub fn group_desc(seed: u32, group: u32, desc_size: u16, blocks_count: u64) -> Vec<u8> {
        let mut v = seed.to_le_bytes().to_vec();
        v.extend(group.to_le_bytes());
        v.extend(desc_size.to_le_bytes());
        v.extend(blocks_count.to_le_bytes());
        v
    }

    /// `[csum seed: u32][ino: u32]`: inodes (fs seed), extent, directory and dx blocks (the
    /// owning inode's seed).
    pub fn seed_ino(seed: u32, ino: u32) -> Vec<u8> {
        let mut v = seed.to_le_bytes().to_vec();
        v.extend(ino.to_le_bytes());
        v
    }

    /// `[format: u8]` for the journal block targets, see [`super::journal_format`].
    pub fn format(selector: u8) -> Vec<u8> {
        vec![selector]
    }
}

fn verdict(decoded: bool) -> Verdict {
    if decoded {
        Verdict::Decoded
    } else {
        Verdict::Refused
    }
}

/// `Superblock::decode`, `decode_recovering`, and both again with `s_checksum` resealed. A
/// decoded superblock's geometry helpers must not panic and `encode_into` its own bytes must
/// decode to the same value.
pub fn superblock(data: &[u8]) -> Verdict {
    let _ = Superblock::decode(data);
    let mut decoded = Superblock::decode_recovering(data).ok();
    if decoded.is_none() && data.len() >= 1024 {
        let mut resealed = data[..1024].to_vec();
        let crc = crc32c_raw(!0, &resealed[..S_CHECKSUM]);
        resealed[S_CHECKSUM..S_CHECKSUM + 4].copy_from_slice(&crc.to_le_bytes());
        decoded = Superblock::decode_recovering(&resealed).ok();
        if decoded.is_some() {
            return check_superblock(decoded, &resealed);
        }
    }
    check_superblock(decoded, data)
}

fn check_superblock(decoded: Option<Superblock>, raw: &[u8]) -> Verdict {
    let Some(mut sb) = decoded else {
        return Verdict::Refused;
    };
    let groups = sb.group_count();
    for g in [0, 1, groups.saturating_sub(1), groups, u32::MAX] {
        let _ = sb.group_desc_offset_bytes(g);
    }
    for ino in [0, 1, 2, 11, sb.inodes_per_group, u32::MAX] {
        let _ = sb.inode_group_index(ino);
    }
    let _ = (sb.csum_seed(), sb.verify_seed(), sb.feature_list());
    let _ = (sb.uuid_string(), sb.volume_name_lossy(), sb.is_64bit());
    let before = sb.clone();
    let mut copy = raw[..1024].to_vec();
    if sb.encode_into(&mut copy).is_ok() {
        let again = Superblock::decode_recovering(&copy);
        assert!(
            again.as_ref().ok() == Some(&before),
            "superblock round trip: {again:?} vs {before:?}"
        );
    }
    Verdict::Decoded
}

/// `GroupDesc::decode` with and without the checksum; a decoded descriptor re-encoded into its
/// own bytes decodes to the same value. Prefix: [`prefix::group_desc`].
pub fn group_desc(data: &[u8]) -> Verdict {
    let mut p = Prefix::new(data);
    let (seed, group, desc_size, blocks_count) = (p.u32(), p.u32(), p.u16(), p.u64());
    let raw = p.rest;
    let checked = GroupDesc::decode(raw, group, desc_size, blocks_count, Some(seed));
    let unchecked = GroupDesc::decode(raw, group, desc_size, blocks_count, None);
    if let Ok(d) = &checked {
        assert!(unchecked.as_ref().ok() == Some(d), "csum changed the value");
    }
    let Ok(mut d) = unchecked else {
        return Verdict::Refused;
    };
    let before = d;
    let mut copy = raw.to_vec();
    if d.encode_into(&mut copy, desc_size, Some(seed)).is_ok() {
        let again = GroupDesc::decode(&copy, group, desc_size, blocks_count, Some(seed));
        let mut want = before;
        want.checksum = d.checksum;
        assert!(
            again.as_ref().ok() == Some(&want),
            "group descriptor round trip: {again:?} vs {want:?}"
        );
    }
    Verdict::Decoded
}

/// `Inode::decode` with and without the checksum, then its extent root; a decoded inode
/// re-encoded into its own record decodes (checksum verified) to the same value. Prefix:
/// [`prefix::seed_ino`] with the file system seed.
pub fn inode(data: &[u8]) -> Verdict {
    let mut p = Prefix::new(data);
    let (seed, ino) = (p.u32(), p.u32());
    let raw = p.rest;
    let checked = Inode::decode(raw, ino, Some(seed));
    let Ok(inode) = Inode::decode(raw, ino, None) else {
        assert!(checked.is_err(), "decodes only with its checksum verified");
        return Verdict::Refused;
    };
    if let Ok(c) = &checked {
        assert_eq!(c, &inode, "csum changed the value");
    }
    let _ = (inode.is_dir(), inode.is_regular(), inode.is_symlink());
    let _ = (
        inode.file_type(),
        inode.uses_extents(),
        inode.csum_seed(seed),
    );
    let _ = inode.blocks_512(4096);
    let _ = ExtentNode::decode(&inode.block, Location::ExtentRoot { ino }, u64::MAX >> 16);
    let mut copy = raw.to_vec();
    if inode.encode_into(&mut copy, Some(seed)).is_ok() {
        let again = Inode::decode(&copy, ino, Some(seed));
        assert!(
            again.as_ref().ok() == Some(&inode),
            "inode round trip: {again:?} vs {inode:?}"
        );
    }
    Verdict::Decoded
}

/// `ExtentNode::decode` of an `i_block` root or a node block, and its tail checksum; a decoded
/// node re-encoded into its own bytes decodes to the same value. Prefix: [`prefix::seed_ino`]
/// with the inode's seed, then `[blocks_count: u64]`.
pub fn extent_node(data: &[u8]) -> Verdict {
    let mut p = Prefix::new(data);
    let (seed, ino, blocks_count) = (p.u32(), p.u32(), p.u64());
    let raw = p.rest;
    let at = if raw.len() <= 60 {
        Location::ExtentRoot { ino }
    } else {
        Location::ExtentBlock { ino, block: 1 }
    };
    let _ = verify_extent_tail(raw, at, seed);
    let Ok(node) = ExtentNode::decode(raw, at, blocks_count) else {
        return Verdict::Refused;
    };
    let mut copy = raw.to_vec();
    node.encode_into(&mut copy, at)
        .unwrap_or_else(|e| panic!("a decoded extent node does not encode: {e}"));
    let again = ExtentNode::decode(&copy, at, blocks_count);
    assert!(
        again.as_ref().ok() == Some(&node),
        "extent round trip: {again:?} vs {node:?}"
    );
    Verdict::Decoded
}

/// `dir_entries` with and without a checksum tail, and `verify_dir_tail`: every yielded entry
/// lies inside the block (tail excluded), in increasing offsets. Prefix: [`prefix::seed_ino`]
/// with the directory's seed.
pub fn dir_block(data: &[u8]) -> Verdict {
    let mut p = Prefix::new(data);
    let (seed, ino) = (p.u32(), p.u32());
    let block = p.rest;
    let at = Location::DirBlock { ino, block: 7 };
    let tail_ok = verify_dir_tail(block, at, seed).is_ok();
    let mut clean = true;
    for tail in [false, true] {
        let end = if tail {
            block.len().saturating_sub(12)
        } else {
            block.len()
        };
        let mut next = 0;
        for entry in dir_entries(block, at, tail) {
            let Ok(e) = entry else {
                clean = false;
                break;
            };
            assert!(e.offset_bytes >= next, "entries go backwards");
            assert!(
                e.offset_bytes + usize::from(e.rec_len) <= end,
                "{e:?} past {end}"
            );
            assert!(e.name.len() <= usize::from(e.rec_len), "{e:?}");
            next = e.offset_bytes + usize::from(e.rec_len).max(1);
        }
    }
    verdict(clean || tail_ok)
}

/// `DxRoot::decode` and `DxNode::decode`, with and without the `dx_tail` checksum, then lookups
/// and the name hashes the root selects; a decoded root or node re-encoded into its own bytes
/// decodes to the same value. Prefix: [`prefix::seed_ino`] with the directory's seed.
pub fn dx_block(data: &[u8]) -> Verdict {
    let mut p = Prefix::new(data);
    let (seed, ino) = (p.u32(), p.u32());
    let block = p.rest;
    let at = Location::DirBlock { ino, block: 7 };
    let mut decoded = false;
    for kind in [DxKind::Root, DxKind::Node] {
        let _ = verify_dx_tail(block, kind, at, seed);
    }
    for s in [Some(seed), None] {
        if let Ok(root) = DxRoot::decode(block, at, s) {
            decoded = true;
            for hash in [0, 1, 0x7FFF_FFFE, u32::MAX] {
                let _ = dx_find(&root.entries, hash);
            }
            for unsigned in [false, true] {
                let version = effective_hash_version(root.hash_version, unsigned);
                let _ = dx_hash(b"some-name", version, &[7; 16], at);
                let _ = dx_hash(&[0xFF; 300], version, &[0; 16], at);
            }
            let mut copy = block.to_vec();
            if root.encode_into(&mut copy, at, s).is_ok() {
                let again = DxRoot::decode(&copy, at, s);
                assert!(
                    again.as_ref().ok() == Some(&root),
                    "dx_root round trip: {again:?} vs {root:?}"
                );
            }
        }
        if let Ok(node) = DxNode::decode(block, at, s) {
            decoded = true;
            let _ = dx_find(&node.entries, 0x1234_5678);
            let mut copy = block.to_vec();
            if node.encode_into(&mut copy, at, s).is_ok() {
                let again = DxNode::decode(&copy, at, s);
                assert!(
                    again.as_ref().ok() == Some(&node),
                    "dx_node round trip: {again:?} vs {node:?}"
                );
            }
        }
    }
    verdict(decoded)
}

/// `JournalSuperblock::decode`, and again with `s_checksum` resealed; a decoded superblock gives
/// its format and log, and encodes to bytes that decode to the same value.
pub fn journal_superblock(data: &[u8]) -> Verdict {
    let mut decoded = JournalSuperblock::decode(data).ok();
    if decoded.is_none() && data.len() >= JSB_SIZE_BYTES {
        decoded = JournalSuperblock::decode(&reseal_journal_superblock(data)).ok();
    }
    let Some(mut sb) = decoded else {
        return Verdict::Refused;
    };
    let _ = (sb.needs_recovery(), sb.log_blocks(), sb.features.names());
    if let Ok(fmt) = sb.format() {
        let _ = (fmt.tag_size_bytes(), tags_per_descriptor(&fmt));
        let _ = records_per_revoke_block(&fmt);
    }
    if let Ok(log) = Log::from_superblock(&sb) {
        let last = log.maxlen_blocks.saturating_sub(1);
        for b in [0, log.first_block, last, u32::MAX] {
            let _ = (log.next_block(b), log.advance(b, u64::MAX));
        }
    }
    let before = sb.clone();
    if let Ok(raw) = sb.encode() {
        let again = JournalSuperblock::decode(&raw);
        let mut want = before;
        want.checksum = sb.checksum;
        assert!(
            again
                .as_ref()
                .ok()
                .map(|s| (s.start_block, s.sequence, s.maxlen_blocks))
                == Some((want.start_block, want.sequence, want.maxlen_blocks)),
            "journal superblock round trip: {again:?} vs {want:?}"
        );
    }
    Verdict::Decoded
}

/// The first 1024 bytes of `data` with a correct `s_checksum` (whatever the features say).
pub fn reseal_journal_superblock(data: &[u8]) -> Vec<u8> {
    let mut raw = [0u8; JSB_SIZE_BYTES];
    let n = JSB_SIZE_BYTES.min(data.len());
    raw[..n].copy_from_slice(&data[..n]);
    let csum = superblock_csum(&raw);
    raw[0xFC..0x100].copy_from_slice(&csum.to_be_bytes());
    raw.to_vec()
}

/// The journal formats the block targets choose from by their first input byte.
pub fn journal_format(selector: u8) -> JournalFormat {
    let (bit64, csum) = match selector % 6 {
        0 => (true, CsumVersion::V3),
        1 => (false, CsumVersion::V3),
        2 => (true, CsumVersion::V2),
        3 => (false, CsumVersion::V2),
        4 => (true, CsumVersion::None),
        _ => (false, CsumVersion::None),
    };
    JournalFormat {
        bit64,
        csum,
        csum_seed: journal_csum_seed(&JOURNAL_UUID),
        uuid: JOURNAL_UUID,
    }
}

/// `[format][block]`: the block cut or zero-padded to 4 KiB.
fn format_and_block(data: &[u8]) -> (JournalFormat, Box<Block>) {
    let mut p = Prefix::new(data);
    let fmt = journal_format(p.u8());
    let mut block = Box::new([0u8; BLOCK_SIZE_BYTES]);
    let n = p.rest.len().min(BLOCK_SIZE_BYTES);
    block[..n].copy_from_slice(&p.rest[..n]);
    (fmt, block)
}

/// `Descriptor::decode` and its tail checksum: no more tags than fit the block. Prefix:
/// [`prefix::format`].
pub fn journal_descriptor(data: &[u8]) -> Verdict {
    let (fmt, block) = format_and_block(data);
    let _ = verify_block_tail(
        &fmt,
        &block,
        aios_journal::Location::Block { journal_block: 3 },
    );
    let Ok(desc) = Descriptor::decode(&fmt, &block, 3) else {
        return Verdict::Refused;
    };
    let most = (BLOCK_SIZE_BYTES - 12) / fmt.tag_size_bytes();
    assert!(desc.tags.len() <= most, "{} tags", desc.tags.len());
    for tag in &desc.tags {
        let _ = (
            tag.escaped(),
            tag.csum_matches(&fmt, desc.sequence, &block[..]),
        );
    }
    Verdict::Decoded
}

/// `CommitBlock::decode` and `verify_commit_csum`. Prefix: [`prefix::format`].
pub fn journal_commit(data: &[u8]) -> Verdict {
    let (fmt, block) = format_and_block(data);
    let csum_ok = verify_commit_csum(&fmt, &block, 5).is_ok();
    verdict(CommitBlock::decode(&block, 5).is_ok() && csum_ok)
}

/// `RevokeBlock::decode` and its tail checksum: no more records than fit the block; records
/// that fit one block re-encode and decode to the same blocks. Prefix: [`prefix::format`].
pub fn journal_revoke(data: &[u8]) -> Verdict {
    let (fmt, block) = format_and_block(data);
    let _ = verify_block_tail(
        &fmt,
        &block,
        aios_journal::Location::Block { journal_block: 4 },
    );
    let Ok(rev) = RevokeBlock::decode(&fmt, &block, 4) else {
        return Verdict::Refused;
    };
    let most = (BLOCK_SIZE_BYTES - 16) / fmt.revoke_record_size_bytes();
    assert!(rev.blocks.len() <= most, "{} records", rev.blocks.len());
    if rev.blocks.len() <= records_per_revoke_block(&fmt) {
        let fits = fmt.bit64 || rev.blocks.iter().all(|&b| b <= u64::from(u32::MAX));
        if let (true, Ok(raw)) = (fits, rev.encode(&fmt, 4)) {
            let again = RevokeBlock::decode(&fmt, &raw, 4);
            assert!(
                again.as_ref().ok() == Some(&rev),
                "revoke round trip: {again:?} vs {rev:?}"
            );
        }
    }
    Verdict::Decoded
}

/// Journal recovery (all three passes) over a whole log: the input is the journal, 4 KiB per
/// journal block, block 0 the journal superblock (its checksum resealed so mutations reach the
/// log); blocks past the input read as zeros. Recovery returns each home block once, no more
/// of them than blocks it could read, and never more transactions than log blocks.
pub fn journal_recovery(data: &[u8]) -> Verdict {
    let sealed = reseal_journal_superblock(data);
    let Ok(sb) = JournalSuperblock::decode(&sealed) else {
        return Verdict::Refused;
    };
    let blocks = data.len().div_ceil(BLOCK_SIZE_BYTES) as u64;
    let mut reads = 0u64;
    let read = |i: u32| -> Result<Block, std::io::Error> {
        reads += 1;
        let mut b = [0u8; BLOCK_SIZE_BYTES];
        let start = (i as usize).saturating_mul(BLOCK_SIZE_BYTES);
        if i == 0 {
            b[..JSB_SIZE_BYTES].copy_from_slice(&sealed);
        } else if let Some(src) = data.get(start..) {
            let n = src.len().min(BLOCK_SIZE_BYTES);
            b[..n].copy_from_slice(&src[..n]);
        }
        Ok(b)
    };
    let Ok(rec) = recover(&sb, read) else {
        return Verdict::Refused;
    };
    let mut homes: Vec<u64> = rec.writes.iter().map(|(b, _)| *b).collect();
    homes.sort_unstable();
    homes.dedup();
    assert_eq!(homes.len(), rec.writes.len(), "a home block written twice");
    let log_blocks = u64::from(sb.log_blocks());
    assert!(rec.writes.len() as u64 <= log_blocks.max(blocks) * 3);
    assert!(u64::from(rec.transactions()) <= log_blocks + 1);
    Verdict::Decoded
}
