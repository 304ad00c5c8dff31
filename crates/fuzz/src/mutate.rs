//! The seeded mutator: a deterministic random generator and the mutations a fuzz iteration
//! stacks on a seed (bit flips, byte sets, little- and big-endian interesting values, splices
//! from another seed, duplicated chunks, truncation and extension). Bounded: an input never
//! grows past [`MAX_INPUT_BYTES`].

/// Inputs are cut at this length (a whole small journal log plus slack).
pub const MAX_INPUT_BYTES: usize = 256 << 10;
/// At most this many mutations are stacked on one seed per iteration.
pub const MUTATIONS_MAX: u64 = 8;

/// xorshift64*: deterministic, seedable, no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; 0 is remapped).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (0 when `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// An index into a slice of `len` elements (0 when empty).
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }
}

/// Values that sit on the boundaries decoders check: zero, one, signed and unsigned extremes,
/// powers of two around block and record sizes.
const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    12,
    16,
    32,
    60,
    64,
    127,
    128,
    255,
    256,
    1023,
    1024,
    4084,
    4095,
    4096,
    4097,
    32767,
    32768,
    32769,
    65535,
    65536,
    0x7FFF_FFFF,
    0x8000_0000,
    0xFFFF_FFFF,
    0x1_0000_0000,
    u64::MAX,
];

/// One mutation of `data` in place; `corpus` provides splice material.
fn mutate_once(data: &mut Vec<u8>, corpus: &[Vec<u8>], rng: &mut Rng) {
    if data.is_empty() {
        data.extend((0..1 + rng.below(64)).map(|_| rng.next_u64() as u8));
        return;
    }
    let len = data.len();
    match rng.below(10) {
        // A single bit.
        0..=2 => {
            let bit = rng.index(len * 8);
            data[bit / 8] ^= 1 << (bit % 8);
        }
        // A random byte.
        3 => {
            let at = rng.index(len);
            data[at] = rng.next_u64() as u8;
        }
        // An interesting value, 1/2/4/8 bytes, either endianness (ext4 is LE, jbd2 BE).
        4 | 5 => {
            let width = 1usize << rng.below(4);
            let value = INTERESTING[rng.index(INTERESTING.len())];
            let value = if rng.below(4) == 0 {
                value.wrapping_neg()
            } else {
                value
            };
            let bytes = if rng.below(2) == 0 {
                value.to_le_bytes()
            } else {
                value.to_be_bytes()
            };
            let slice = if rng.below(2) == 0 {
                &bytes[..width]
            } else {
                &bytes[8 - width..]
            };
            // Field offsets are mostly aligned: prefer aligned positions.
            let mut at = rng.index(len);
            if rng.below(4) != 0 {
                at -= at % width;
            }
            let n = slice.len().min(len - at);
            data[at..at + n].copy_from_slice(&slice[..n]);
        }
        // Splice: a chunk of another seed at the same or a random offset.
        6 => {
            let Some(other) = corpus.get(rng.index(corpus.len())) else {
                return;
            };
            if other.is_empty() {
                return;
            }
            let from = rng.index(other.len());
            let n = (1 + rng.index(other.len() - from)).min(512);
            let to = if rng.below(2) == 0 {
                from.min(len - 1)
            } else {
                rng.index(len)
            };
            let n = n.min(len - to);
            data[to..to + n].copy_from_slice(&other[from..from + n]);
        }
        // Duplicate a chunk of itself elsewhere (records copied over records).
        7 => {
            let from = rng.index(len);
            let n = (1 + rng.index(len - from)).min(256);
            let to = rng.index(len);
            let n = n.min(len - to);
            data.copy_within(from..from + n, to);
        }
        // Truncate.
        8 => {
            let keep = if rng.below(2) == 0 {
                rng.index(len)
            } else {
                len - 1 - rng.index(len.min(16))
            };
            data.truncate(keep);
        }
        // Extend with zeros or random bytes.
        _ => {
            let most = if rng.below(4) == 0 { 4096 } else { 16 };
            let n = 1 + rng.index(most);
            let random = rng.below(2) == 0;
            data.extend((0..n).map(|_| if random { rng.next_u64() as u8 } else { 0 }));
        }
    }
    data.truncate(MAX_INPUT_BYTES);
}

/// A mutant of `seed`: 1 to [`MUTATIONS_MAX`] stacked mutations (biased toward few, so most
/// mutants stay close to a valid structure).
pub fn mutant(seed: &[u8], corpus: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut data = seed.to_vec();
    let n = 1 + rng.below(MUTATIONS_MAX).min(rng.below(MUTATIONS_MAX));
    for _ in 0..n {
        mutate_once(&mut data, corpus, rng);
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutants_are_deterministic_bounded_and_differ() {
        let seed = vec![0xABu8; 4096];
        let corpus = vec![vec![1u8; 100], Vec::new()];
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let mut differ = 0;
        for _ in 0..2000 {
            let (x, y) = (
                mutant(&seed, &corpus, &mut a),
                mutant(&seed, &corpus, &mut b),
            );
            assert_eq!(x, y);
            assert!(x.len() <= MAX_INPUT_BYTES);
            differ += usize::from(x != seed);
        }
        assert!(
            differ > 1800,
            "{differ} of 2000 mutants differ from the seed"
        );
    }
}
