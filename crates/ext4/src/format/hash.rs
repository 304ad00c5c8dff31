//! htree directory name hashes (the kernel's `fs/ext4/hash.c`): legacy, half_md4 and tea, each
//! with name bytes read as signed or unsigned chars.
//!
//! The on-disk `dx_root_info.hash_version` (and `s_def_hash_version`) is 0 legacy, 1 half_md4 or
//! 2 tea; the superblock's `s_flags` says whether names hash as unsigned chars, which the kernel
//! expresses by adding 3 ([`effective_hash_version`]). The seed is `s_hash_seed` as four le32
//! words (all zero: the MD4 initial state). The major hash has its low bit cleared (it marks
//! collisions in `dx_entry`s), and `0xFFFFFFFE` (the end-of-directory cookie) becomes
//! `0xFFFFFFFC`. `siphash` (casefolded encrypted directories) is refused.

use crate::error::{FormatError, Location, Result};

/// `DX_HASH_LEGACY`.
pub const DX_HASH_LEGACY: u8 = 0;
/// `DX_HASH_HALF_MD4` (mke2fs's default).
pub const DX_HASH_HALF_MD4: u8 = 1;
/// `DX_HASH_TEA`.
pub const DX_HASH_TEA: u8 = 2;
/// `DX_HASH_LEGACY_UNSIGNED` (in memory only).
pub const DX_HASH_LEGACY_UNSIGNED: u8 = 3;
/// `DX_HASH_HALF_MD4_UNSIGNED` (in memory only).
pub const DX_HASH_HALF_MD4_UNSIGNED: u8 = 4;
/// `DX_HASH_TEA_UNSIGNED` (in memory only).
pub const DX_HASH_TEA_UNSIGNED: u8 = 5;

/// `EXT4_HTREE_EOF_32BIT`.
const HTREE_EOF_32BIT: u32 = 0x7FFF_FFFF;
/// Initial MD4 state, used when the seed is all zero.
const DEFAULT_SEED: [u32; 4] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476];

/// A name's hash: `major` orders the htree, `minor` breaks ties within a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DxHash {
    /// The major hash (low bit clear).
    pub major: u32,
    /// The minor hash.
    pub minor: u32,
}

/// The hash version the kernel uses for on-disk version `on_disk` under superblock `s_flags`
/// (`unsigned_chars`: `FLAGS_UNSIGNED_HASH` set).
pub fn effective_hash_version(on_disk: u8, unsigned_chars: bool) -> u8 {
    if unsigned_chars && on_disk <= DX_HASH_TEA {
        on_disk + 3
    } else {
        on_disk
    }
}

/// Hash `name` with hash version `version` (0..=5, see [`effective_hash_version`]) and the
/// superblock's `s_hash_seed`; `at` names the directory for errors.
pub fn dx_hash(name: &[u8], version: u8, seed: &[u8; 16], at: Location) -> Result<DxHash> {
    let mut buf = seed_words(seed);
    let signed = version < DX_HASH_LEGACY_UNSIGNED;
    let (major, minor) = match version {
        DX_HASH_LEGACY | DX_HASH_LEGACY_UNSIGNED => (dx_hack_hash(name, signed), 0),
        DX_HASH_HALF_MD4 | DX_HASH_HALF_MD4_UNSIGNED => {
            for chunk in chunks(name, 32) {
                let input = str2hashbuf::<8>(chunk, signed);
                half_md4_transform(&mut buf, &input);
            }
            (buf[1], buf[2])
        }
        DX_HASH_TEA | DX_HASH_TEA_UNSIGNED => {
            for chunk in chunks(name, 16) {
                let input = str2hashbuf::<4>(chunk, signed);
                tea_transform(&mut buf, &input);
            }
            (buf[0], buf[1])
        }
        _ => {
            return Err(FormatError::FieldOutOfRange {
                at,
                field: "hash_version",
                value: version.into(),
                reason: "only legacy, half_md4 and tea hashes",
            })
        }
    };
    let mut major = major & !1;
    if major == HTREE_EOF_32BIT << 1 {
        major = (HTREE_EOF_32BIT - 1) << 1;
    }
    Ok(DxHash { major, minor })
}

/// The seed as four words, or the default state when it is all zero.
fn seed_words(seed: &[u8; 16]) -> [u32; 4] {
    if seed.iter().all(|&b| b == 0) {
        return DEFAULT_SEED;
    }
    let mut words = [0u32; 4];
    for (word, bytes) in words.iter_mut().zip(seed.chunks_exact(4)) {
        let mut le = [0u8; 4];
        le.copy_from_slice(bytes);
        *word = u32::from_le_bytes(le);
    }
    words
}

/// The suffixes of `name` starting every `step` bytes (the kernel passes the remaining length
/// to `str2hashbuf`, which pads with it).
fn chunks(name: &[u8], step: usize) -> impl Iterator<Item = &[u8]> {
    (0..name.len())
        .step_by(step)
        .filter_map(move |start| name.get(start..))
}

/// A name byte as the kernel's `char` would widen it.
fn widen(b: u8, signed: bool) -> u32 {
    if signed {
        i32::from(b as i8) as u32
    } else {
        u32::from(b)
    }
}

/// `str2hashbuf_signed`/`_unsigned`: pack up to `N * 4` bytes of `msg` into `N` words, padding
/// with the length of the remaining name.
fn str2hashbuf<const N: usize>(msg: &[u8], signed: bool) -> [u32; N] {
    let len = msg.len() as u32;
    let mut pad = len | (len << 8);
    pad |= pad << 16;
    let mut out = [pad; N];
    let mut val = pad;
    let mut word = 0usize;
    for (i, &b) in msg.iter().take(N * 4).enumerate() {
        val = widen(b, signed).wrapping_add(val << 8);
        if i % 4 == 3 {
            if let Some(slot) = out.get_mut(word) {
                *slot = val;
            }
            word += 1;
            val = pad;
        }
    }
    if let Some(slot) = out.get_mut(word) {
        *slot = val;
    }
    out
}

/// `dx_hack_hash_signed`/`_unsigned`.
fn dx_hack_hash(name: &[u8], signed: bool) -> u32 {
    let (mut hash0, mut hash1) = (0x12A3_FE2Du32, 0x37AB_E8F9u32);
    for &b in name {
        let mut hash = hash1.wrapping_add(hash0 ^ widen(b, signed).wrapping_mul(7_152_373));
        if hash & 0x8000_0000 != 0 {
            hash = hash.wrapping_sub(0x7FFF_FFFF);
        }
        hash1 = hash0;
        hash0 = hash;
    }
    hash0 << 1
}

/// `TEA_transform`.
fn tea_transform(buf: &mut [u32; 4], input: &[u32; 4]) {
    const DELTA: u32 = 0x9E37_79B9;
    let [a, b, c, d] = *input;
    let (mut b0, mut b1) = (buf[0], buf[1]);
    let mut sum = 0u32;
    for _ in 0..16 {
        sum = sum.wrapping_add(DELTA);
        b0 = b0.wrapping_add(
            ((b1 << 4).wrapping_add(a)) ^ b1.wrapping_add(sum) ^ ((b1 >> 5).wrapping_add(b)),
        );
        b1 = b1.wrapping_add(
            ((b0 << 4).wrapping_add(c)) ^ b0.wrapping_add(sum) ^ ((b0 >> 5).wrapping_add(d)),
        );
    }
    buf[0] = buf[0].wrapping_add(b0);
    buf[1] = buf[1].wrapping_add(b1);
}

/// `half_md4_transform`: three rounds of MD4 over eight words.
fn half_md4_transform(buf: &mut [u32; 4], x: &[u32; 8]) {
    const K2: u32 = 0o13240474631;
    const K3: u32 = 0o15666365641;
    let f = |x: u32, y: u32, z: u32| z ^ (x & (y ^ z));
    let g = |x: u32, y: u32, z: u32| (x & y).wrapping_add((x ^ y) & z);
    let h = |x: u32, y: u32, z: u32| x ^ y ^ z;
    let [mut a, mut b, mut c, mut d] = *buf;
    // (function, message word, constant, shift) for each step; the roles of a..d rotate.
    let steps: [(u8, usize, u32, u32); 24] = [
        (0, 0, 0, 3),
        (0, 1, 0, 7),
        (0, 2, 0, 11),
        (0, 3, 0, 19),
        (0, 4, 0, 3),
        (0, 5, 0, 7),
        (0, 6, 0, 11),
        (0, 7, 0, 19),
        (1, 1, K2, 3),
        (1, 3, K2, 5),
        (1, 5, K2, 9),
        (1, 7, K2, 13),
        (1, 0, K2, 3),
        (1, 2, K2, 5),
        (1, 4, K2, 9),
        (1, 6, K2, 13),
        (2, 3, K3, 3),
        (2, 7, K3, 9),
        (2, 2, K3, 11),
        (2, 6, K3, 15),
        (2, 1, K3, 3),
        (2, 5, K3, 9),
        (2, 0, K3, 11),
        (2, 4, K3, 15),
    ];
    for (i, &(func, word, k, s)) in steps.iter().enumerate() {
        let m = x.get(word).copied().unwrap_or(0).wrapping_add(k);
        // Step i updates a, d, c, b in turn, reading the other three in rotated order.
        let (t, p, q, r) = match i % 4 {
            0 => (&mut a, b, c, d),
            1 => (&mut d, a, b, c),
            2 => (&mut c, d, a, b),
            _ => (&mut b, c, d, a),
        };
        let fv = match func {
            0 => f(p, q, r),
            1 => g(p, q, r),
            _ => h(p, q, r),
        };
        *t = t.wrapping_add(fv).wrapping_add(m).rotate_left(s);
    }
    buf[0] = buf[0].wrapping_add(a);
    buf[1] = buf[1].wrapping_add(b);
    buf[2] = buf[2].wrapping_add(c);
    buf[3] = buf[3].wrapping_add(d);
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: Location = Location::Inode { ino: 2 };

    #[test]
    fn versions_and_edge_cases() {
        assert_eq!(effective_hash_version(DX_HASH_HALF_MD4, true), 4);
        assert_eq!(effective_hash_version(DX_HASH_HALF_MD4, false), 1);
        assert!(dx_hash(b"x", 6, &[0; 16], AT).is_err());
        // ASCII names hash the same signed or unsigned; high bytes differ.
        let seed = [7u8; 16];
        for v in [0u8, 1, 2] {
            assert_eq!(
                dx_hash(b"plain", v, &seed, AT).unwrap(),
                dx_hash(b"plain", v + 3, &seed, AT).unwrap()
            );
            assert_ne!(
                dx_hash("é".as_bytes(), v, &seed, AT).unwrap(),
                dx_hash("é".as_bytes(), v + 3, &seed, AT).unwrap()
            );
            assert_eq!(dx_hash(b"plain", v, &seed, AT).unwrap().major & 1, 0);
        }
        assert_eq!(str2hashbuf::<2>(b"abcde", true)[1], 0x0505_0565);
    }
}
