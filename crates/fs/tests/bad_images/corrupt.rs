//! The corruptions: which bytes of which base image each corrupted image changes, and whether
//! its walk must match the clean one exactly.
//!
//! # Classes
//! - **Bit flips**: one bit in each field region of every metadata block (superblock fields,
//!   group descriptor fields, each in-use inode's fields and each unused inode slot, directory
//!   entries and tails, `dx_root` info, count/limit, entries and tail, extent headers, entries and
//!   tails, bitmap bits and padding, journal superblock fields, journal block headers, bodies and
//!   tails), the bit chosen by a seeded generator.
//! - **Resealed fields**: a bit flip or a boundary value (0, 1, all ones, the top bit) in a
//!   field region, with the structure's checksum recomputed ([`crate::reseal`]), so the value
//!   reaches the field checks and the layers above.
//! - **Torn writes**: a block whose first `k` 512-byte sectors are one version and the rest
//!   another: home blocks the journal replays (old = crashed, new = recovered), both orders; and
//!   the journal's own blocks torn against zeros (a log write cut short).
//! - **Misdirected writes**: a metadata block's contents written over another metadata block.
//! - **Random bytes**: runs of random bytes, or scattered ones, in one to three metadata blocks.
//!
//! # Bases and strictness
//! Each corruption applies to `C` (crashed: the journal holds committed transactions to replay)
//! or `R` (`C` recovered). A corruption is *strict* when a correct stack can only give the clean
//! results or typed errors: single bit flips outside the journal (every structure is checksummed
//! with `metadata_csum`: a flip is detected where it is read, or never read), and, on `C`, any
//! corruption confined to home blocks the replay overwrites whole (the journal heals them).
//! Elsewhere an `Ok` with other data can be legitimate (a torn inode table block is a mix of
//! whole, valid old and new inodes; a directory block misdirected within its own directory has a
//! valid checksum, as in the kernel; a bad commit block ends the log early): those are counted,
//! not failed.

use std::collections::BTreeSet;

use crate::image::{BlockMap, BLOCK};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    BitFlip,
    Resealed,
    Torn,
    Misdirected,
    RandomBytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Base {
    /// Crashed: needs recovery.
    C,
    /// Recovered.
    R,
}

#[derive(Debug, Clone)]
pub struct Corruption {
    pub class: Class,
    pub base: Base,
    pub name: String,
    /// `(byte offset, bytes)` written over the base image.
    pub edits: Vec<(u64, Vec<u8>)>,
    pub strict: bool,
}

/// xorshift64*.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// The inputs corruptions are made from.
pub struct Bases<'a> {
    pub crashed: &'a [u8],
    pub recovered: &'a [u8],
    pub map: &'a BlockMap,
}

impl Bases<'_> {
    fn bytes(&self, base: Base) -> &[u8] {
        match base {
            Base::C => self.crashed,
            Base::R => self.recovered,
        }
    }

    fn block(&self, base: Base, b: u64) -> &[u8] {
        let at = b as usize * BLOCK;
        &self.bytes(base)[at..at + BLOCK]
    }

    /// Home blocks the replay of `C` rewrites: outside the journal, different in `R`.
    pub fn healed(&self) -> BTreeSet<u64> {
        (0..(self.crashed.len() / BLOCK) as u64)
            .filter(|b| !self.map.journal.contains(b))
            .filter(|&b| self.block(Base::C, b) != self.block(Base::R, b))
            .collect()
    }

    /// Journal blocks of `C` that hold something (superblock and the live log).
    pub fn journal_live(&self) -> Vec<u64> {
        self.map
            .journal
            .iter()
            .copied()
            .filter(|&b| self.block(Base::C, b).iter().any(|&x| x != 0))
            .collect()
    }
}

const SB_FIELDS: &[(usize, usize, &str)] = &[
    (0x00, 4, "s_inodes_count"),
    (0x04, 4, "s_blocks_count_lo"),
    (0x0C, 4, "s_free_blocks_count_lo"),
    (0x14, 4, "s_first_data_block"),
    (0x18, 4, "s_log_block_size"),
    (0x20, 4, "s_blocks_per_group"),
    (0x28, 4, "s_inodes_per_group"),
    (0x38, 2, "s_magic"),
    (0x3A, 2, "s_state"),
    (0x4C, 4, "s_rev_level"),
    (0x54, 4, "s_first_ino"),
    (0x58, 2, "s_inode_size"),
    (0x5C, 4, "s_feature_compat"),
    (0x60, 4, "s_feature_incompat"),
    (0x64, 4, "s_feature_ro_compat"),
    (0x68, 16, "s_uuid"),
    (0xE0, 4, "s_journal_inum"),
    (0xE8, 4, "s_last_orphan"),
    (0xEC, 16, "s_hash_seed"),
    (0xFC, 1, "s_def_hash_version"),
    (0xFE, 2, "s_desc_size"),
    (0x150, 4, "s_blocks_count_hi"),
    (0x174, 1, "s_log_groups_per_flex"),
    (0x175, 1, "s_checksum_type"),
    (0x3FC, 4, "s_checksum"),
];

const GD_FIELDS: &[(usize, usize, &str)] = &[
    (0x00, 4, "bg_block_bitmap_lo"),
    (0x04, 4, "bg_inode_bitmap_lo"),
    (0x08, 4, "bg_inode_table_lo"),
    (0x0C, 2, "bg_free_blocks_count_lo"),
    (0x0E, 2, "bg_free_inodes_count_lo"),
    (0x10, 2, "bg_used_dirs_count_lo"),
    (0x12, 2, "bg_flags"),
    (0x18, 2, "bg_block_bitmap_csum_lo"),
    (0x1A, 2, "bg_inode_bitmap_csum_lo"),
    (0x1C, 2, "bg_itable_unused_lo"),
    (0x1E, 2, "bg_checksum"),
    (0x20, 4, "bg_block_bitmap_hi"),
    (0x28, 4, "bg_inode_table_hi"),
];

const INODE_FIELDS: &[(usize, usize, &str)] = &[
    (0x00, 2, "i_mode"),
    (0x04, 4, "i_size_lo"),
    (0x1A, 2, "i_links_count"),
    (0x1C, 4, "i_blocks_lo"),
    (0x20, 4, "i_flags"),
    (0x28, 12, "extent header"),
    (0x34, 48, "i_block entries"),
    (0x64, 4, "i_generation"),
    (0x6C, 4, "i_size_high"),
    (0x7C, 2, "l_i_checksum_lo"),
    (0x80, 2, "i_extra_isize"),
    (0x82, 2, "i_checksum_hi"),
];

const JSB_FIELDS: &[(usize, usize, &str)] = &[
    (0x00, 12, "header"),
    (0x0C, 4, "s_blocksize"),
    (0x10, 4, "s_maxlen"),
    (0x14, 4, "s_first"),
    (0x18, 4, "s_sequence"),
    (0x1C, 4, "s_start"),
    (0x24, 12, "features"),
    (0x30, 16, "s_uuid"),
    (0x50, 1, "s_checksum_type"),
    (0xFC, 4, "s_checksum"),
];

/// The field regions of block `b` (offset in the block, length, name).
fn regions(bases: &Bases<'_>, base: Base, b: u64, kind: &str) -> Vec<(usize, usize, String)> {
    let owned = |list: &[(usize, usize, &str)], shift: usize| -> Vec<(usize, usize, String)> {
        list.iter()
            .map(|&(o, l, n)| (o + shift, l, n.to_string()))
            .collect()
    };
    let block = bases.block(base, b);
    if kind == "superblock" {
        return owned(SB_FIELDS, 1024);
    }
    if kind == "group descriptors" {
        let mut v = owned(GD_FIELDS, 0);
        v.push((64, BLOCK - 64, "unused descriptor slots".into()));
        return v;
    }
    if kind == "journal superblock" {
        return owned(JSB_FIELDS, 0);
    }
    if kind == "journal block" {
        return vec![
            (0, 12, "header".into()),
            (12, BLOCK - 16, "body".into()),
            (BLOCK - 4, 4, "tail".into()),
        ];
    }
    if kind.starts_with("inode table") {
        let mut v = Vec::new();
        for slot in 0..BLOCK / 256 {
            let at = slot * 256;
            if block[at..at + 2] == [0, 0] {
                v.push((at, 256, format!("unused inode slot {slot}")));
            } else {
                for &(o, l, n) in INODE_FIELDS {
                    v.push((at + o, l, format!("slot {slot} {n}")));
                }
            }
        }
        return v;
    }
    if kind.starts_with("extent node") {
        return vec![
            (0, 12, "extent header".into()),
            (12, 48, "extent entries".into()),
            (BLOCK - 4, 4, "extent tail".into()),
        ];
    }
    if kind.contains("bitmap") {
        return vec![
            (0, 256, "bits".into()),
            (256, BLOCK - 256, "padding".into()),
        ];
    }
    if kind.starts_with("directory /htree/ block 0") {
        return vec![
            (0, 24, "dx_root . and ..".into()),
            (0x18, 8, "dx_root_info".into()),
            (0x20, 8, "dx countlimit".into()),
            (0x28, 32, "dx entries".into()),
            (BLOCK - 8, 8, "dx_tail".into()),
        ];
    }
    vec![
        (0, 12, "first dirent".into()),
        (12, BLOCK - 24, "dirents".into()),
        (BLOCK - 12, 12, "dirent tail".into()),
    ]
}

/// Every metadata block with its kind, journal blocks included (for `C`).
fn metadata(bases: &Bases<'_>, base: Base) -> Vec<(u64, String)> {
    let mut v: Vec<(u64, String)> = bases
        .map
        .kinds
        .iter()
        .map(|(b, k)| (*b, k.clone()))
        .collect();
    let journal = match base {
        Base::C => bases.journal_live(),
        Base::R => bases.map.journal.first().copied().into_iter().collect(),
    };
    for (i, b) in journal.into_iter().enumerate() {
        let kind = if i == 0 {
            "journal superblock"
        } else {
            "journal block"
        };
        v.push((b, kind.to_string()));
    }
    v
}

fn bit_flips(bases: &Bases<'_>, rng: &mut Rng) -> Vec<Corruption> {
    let mut out = Vec::new();
    for base in [Base::C, Base::R] {
        for (b, kind) in metadata(bases, base) {
            let journal = bases.map.journal.contains(&b);
            for (off, len, field) in regions(bases, base, b, &kind) {
                let bit = rng.below(len as u64 * 8) as usize;
                let at = b as usize * BLOCK + off + bit / 8;
                let byte = bases.bytes(base)[at] ^ (1 << (bit % 8));
                out.push(Corruption {
                    class: Class::BitFlip,
                    base,
                    name: format!("{base:?}: bit {} of {field} in block {b} ({kind})", bit),
                    edits: vec![(at as u64, vec![byte])],
                    strict: !journal,
                });
            }
        }
    }
    out
}

fn resealed(bases: &Bases<'_>, rng: &mut Rng) -> Vec<Corruption> {
    let mut out = Vec::new();
    for base in [Base::C, Base::R] {
        for (b, kind) in metadata(bases, base) {
            if bases.map.journal.contains(&b) || kind.contains("bitmap") {
                continue;
            }
            for (off, len, field) in regions(bases, base, b, &kind) {
                let mut block = bases.block(base, b).to_vec();
                let len = len.min(8);
                let what = match rng.below(5) {
                    0 => {
                        let bit = rng.below(len as u64 * 8) as usize;
                        block[off + bit / 8] ^= 1 << (bit % 8);
                        format!("bit {bit}")
                    }
                    1 => {
                        block[off..off + len].fill(0);
                        "zeroed".to_string()
                    }
                    2 => {
                        block[off..off + len].fill(0xFF);
                        "all ones".to_string()
                    }
                    3 => {
                        block[off..off + len].fill(0);
                        block[off] = 1;
                        "one".to_string()
                    }
                    _ => {
                        block[off + len - 1] ^= 0x80;
                        "top bit".to_string()
                    }
                };
                crate::reseal::reseal(&mut block, b, &kind, bases.map);
                out.push(Corruption {
                    class: Class::Resealed,
                    base,
                    name: format!("{base:?}: {field} {what}, resealed, in block {b} ({kind})"),
                    edits: vec![(b * BLOCK as u64, block)],
                    strict: false,
                });
            }
        }
    }
    out
}

/// Descriptor tags of `C`'s log pointed elsewhere, the descriptor's tail resealed: the logged
/// data (whose tag checksum does not cover the block number) replays to block 0, the journal
/// superblock, the last block, just past the end, or far past any device.
fn journal_tags(bases: &Bases<'_>) -> Vec<Corruption> {
    use aios_journal::format::descriptor::Descriptor;
    use aios_journal::format::superblock::JournalSuperblock;
    let mut out = Vec::new();
    let live = bases.journal_live();
    let Some(&jsb) = live.first() else {
        return out;
    };
    let fmt = JournalSuperblock::decode(bases.block(Base::C, jsb))
        .and_then(|sb| sb.format())
        .unwrap();
    let last = (bases.crashed.len() / BLOCK) as u64 - 1;
    let targets = [
        (0, "block 0"),
        (jsb, "the journal superblock"),
        (last, "the last block"),
        (last + 1, "just past the end"),
        (u64::from(u32::MAX), "2^32 - 1"),
        (1 << 52, "2^52"),
        (u64::MAX, "2^64 - 1"),
    ];
    for &b in &live[1..] {
        let block: &[u8; BLOCK] = bases.block(Base::C, b).try_into().unwrap();
        let Ok(desc) = Descriptor::decode(&fmt, block, 0) else {
            continue;
        };
        for (home, what) in targets {
            let mut d = desc.clone();
            let tag = (home as usize) % d.tags.len();
            d.tags[tag].fs_block = home;
            let Ok(raw) = d.encode(&fmt, 0) else {
                continue;
            };
            out.push(Corruption {
                class: Class::Resealed,
                base: Base::C,
                name: format!("C: descriptor at {b}, tag {tag} homed at {what}, resealed"),
                edits: vec![(b * BLOCK as u64, raw.to_vec())],
                strict: false,
            });
        }
    }
    out
}

fn torn(bases: &Bases<'_>, healed: &BTreeSet<u64>) -> Vec<Corruption> {
    let mut out = Vec::new();
    let sectors = BLOCK / 512;
    for &b in healed {
        let (old, new) = (bases.block(Base::C, b), bases.block(Base::R, b));
        for k in 1..sectors {
            for (base, first, rest, order) in [
                (Base::C, new, old, "new then old"),
                (Base::C, old, new, "old then new"),
                (Base::R, old, new, "old then new"),
            ] {
                let mut block = rest.to_vec();
                block[..k * 512].copy_from_slice(&first[..k * 512]);
                out.push(Corruption {
                    class: Class::Torn,
                    base,
                    name: format!("{base:?}: block {b} torn after sector {k} ({order})"),
                    edits: vec![(b * BLOCK as u64, block)],
                    strict: base == Base::C,
                });
            }
        }
    }
    for b in bases.journal_live() {
        for k in [1, 4, 7] {
            let mut block = bases.block(Base::C, b).to_vec();
            block[k * 512..].fill(0);
            out.push(Corruption {
                class: Class::Torn,
                base: Base::C,
                name: format!("C: journal block {b} cut after sector {k}"),
                edits: vec![(b * BLOCK as u64, block)],
                strict: false,
            });
        }
    }
    out
}

fn misdirected(bases: &Bases<'_>, healed: &BTreeSet<u64>) -> Vec<Corruption> {
    let mut out = Vec::new();
    for base in [Base::C, Base::R] {
        let blocks = metadata(bases, base);
        for (src, src_kind) in &blocks {
            for (dst, dst_kind) in &blocks {
                if src == dst || bases.block(base, *src) == bases.block(base, *dst) {
                    continue;
                }
                out.push(Corruption {
                    class: Class::Misdirected,
                    base,
                    name: format!(
                        "{base:?}: block {src} ({src_kind}) written at {dst} ({dst_kind})"
                    ),
                    edits: vec![(dst * BLOCK as u64, bases.block(base, *src).to_vec())],
                    strict: base == Base::C && healed.contains(dst),
                });
            }
        }
    }
    out
}

fn random_bytes(
    bases: &Bases<'_>,
    healed: &BTreeSet<u64>,
    n: usize,
    rng: &mut Rng,
) -> Vec<Corruption> {
    let mut out = Vec::new();
    for i in 0..n {
        let base = if i % 2 == 0 { Base::C } else { Base::R };
        let blocks = metadata(bases, base);
        let mut edits = Vec::new();
        let mut names = Vec::new();
        let mut all_healed = true;
        for _ in 0..1 + rng.below(3) {
            let (b, kind) = &blocks[rng.below(blocks.len() as u64) as usize];
            all_healed &= healed.contains(b);
            let run = rng.below(2) == 0;
            let count = if run {
                1 + rng.below(64)
            } else {
                1 + rng.below(8)
            };
            let start = rng.below(BLOCK as u64);
            for j in 0..count {
                let off = if run {
                    (start + j) % BLOCK as u64
                } else {
                    rng.below(BLOCK as u64)
                };
                edits.push((b * BLOCK as u64 + off, vec![rng.next() as u8]));
            }
            names.push(format!(
                "{count} {} bytes in block {b} ({kind})",
                if run { "running" } else { "scattered" }
            ));
        }
        out.push(Corruption {
            class: Class::RandomBytes,
            base,
            name: format!("{base:?}: {}", names.join(", ")),
            edits,
            strict: base == Base::C && all_healed,
        });
    }
    out
}

/// `n` evenly spaced picks of `v` (all of it when shorter).
fn sample(v: Vec<Corruption>, n: usize) -> Vec<Corruption> {
    if v.len() <= n {
        return v;
    }
    let len = v.len();
    v.into_iter()
        .enumerate()
        .filter(|(i, _)| (i * n / len) != ((i + 1) * n / len))
        .map(|(_, c)| c)
        .collect()
}

/// `total` corruptions: 40% bit flips, 20% resealed fields, 10% torn, 10% misdirected, the rest
/// random bytes (and whatever a class has too few candidates for).
pub fn corruptions(bases: &Bases<'_>, total: usize, seed: u64) -> Vec<Corruption> {
    let mut rng = Rng::new(seed);
    let healed = bases.healed();
    let mut out = sample(bit_flips(bases, &mut rng), total * 40 / 100);
    let journal = journal_tags(bases);
    let n = journal.len().min(total * 5 / 100);
    out.extend(sample(journal, n));
    out.extend(sample(resealed(bases, &mut rng), total * 20 / 100 - n));
    out.extend(sample(torn(bases, &healed), total * 10 / 100));
    out.extend(sample(misdirected(bases, &healed), total * 10 / 100));
    let rest = total.saturating_sub(out.len());
    out.extend(random_bytes(bases, &healed, rest, &mut rng));
    out
}
