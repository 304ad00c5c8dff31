//! Crash states of a recorded workload: every crash point of its write log, and at each the
//! subsets of the unflushed block-writes a power cut may keep.
//!
//! # Which subsets
//! At a point with `n` candidates (4 KiB block-writes not yet durable, see
//! `aios_device_emu::log`): all `2^n` subsets when `n <= SUBSETS_ALL_MAX`, else all-dropped,
//! all-kept and [`SEEDED_SUBSETS`] seeded random ones. Each subset has a *state seed* that
//! rebuilds it exactly ([`build`]): `0` drops every candidate, `u64::MAX` keeps every one; with
//! `n <= SUBSETS_ALL_MAX` other seeds are bit masks (bit `i` keeps candidate `i`), above that they
//! seed `aios_device_emu::seeded_choice` (each candidate kept with probability 1/2).
//!
//! # Equal images
//! [`image_key`] names the image a subset builds without building it: the durable writes, and
//! for each block the contents the last kept candidate leaves there when they differ from the
//! durable block. Equal keys -> equal images, so the checker recovers each distinct image once.

use aios_device_emu::{seeded_choice, BlockWrite, DiskImage, LoggedCommand, Replay, WriteLog};

/// Every subset is enumerated up to this many candidates (bit masks need it below 64).
pub const SUBSETS_ALL_MAX: usize = 10;
/// Seeded random subsets above it (besides all-kept and all-dropped).
pub const SEEDED_SUBSETS: usize = 64;

/// How many subsets a crash point gets: all of them up to `all_max` candidates, else
/// all-kept, all-dropped and `seeded` random ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubsetPolicy {
    pub all_max: usize,
    pub seeded: usize,
}

impl SubsetPolicy {
    /// The rule, for short workloads: every subset up to 10 candidates, else 64.
    pub const FULL: SubsetPolicy = SubsetPolicy {
        all_max: SUBSETS_ALL_MAX,
        seeded: SEEDED_SUBSETS,
    };
}

/// The state seeds to check at a point with `candidates` candidates; `salt` varies the random
/// ones by campaign seed, workload and point.
pub fn subset_seeds(candidates: usize, salt: u64, policy: SubsetPolicy) -> Vec<u64> {
    if candidates == 0 {
        return vec![0];
    }
    if candidates <= policy.all_max.min(SUBSETS_ALL_MAX) {
        let all = (1u64 << candidates) - 1;
        return (0..all).chain([u64::MAX]).collect();
    }
    let mut seeds = vec![0, u64::MAX];
    let mut x = salt;
    while seeds.len() < policy.seeded + 2 {
        x = splitmix(x);
        if x != 0 && x != u64::MAX && !seeds.contains(&x) {
            seeds.push(x);
        }
    }
    seeds
}

/// `count` distinct crash points of `0..=events`, seeded, in increasing order (all of them
/// when there are no more).
pub fn seeded_points(events: usize, count: usize, salt: u64) -> Vec<usize> {
    if count > events {
        return (0..=events).collect();
    }
    let mut chosen = std::collections::BTreeSet::new();
    let mut x = salt;
    while chosen.len() < count {
        x = splitmix(x);
        chosen.insert((x % (events as u64 + 1)) as usize);
    }
    chosen.into_iter().collect()
}

/// splitmix64: a well-mixed step, for salts and seeds.
pub fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A stable 64-bit hash of a name (FNV-1a).
pub fn name_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Which candidates state seed `seed` keeps, one flag per candidate.
pub fn kept(seed: u64, candidates: &[BlockWrite]) -> Vec<bool> {
    let n = candidates.len();
    match seed {
        0 => vec![false; n],
        u64::MAX => vec![true; n],
        mask if n <= SUBSETS_ALL_MAX => (0..n).map(|i| mask >> i & 1 == 1).collect(),
        s => {
            let mut choose = seeded_choice(s);
            candidates.iter().map(&mut choose).collect()
        }
    }
}

/// The crash image of state seed `seed` at the replay's point.
pub fn build(replay: &Replay<'_>, seed: u64) -> Result<DiskImage, String> {
    let flags = kept(seed, &replay.candidates());
    replay.image_subset(&flags).map_err(|e| e.to_string())
}

/// The 4 KiB block of `write_id` at device block `block`.
fn candidate_block<'a>(log: &'a WriteLog, c: &BlockWrite) -> Option<&'a [u8]> {
    let Some(LoggedCommand::Write {
        offset_bytes, data, ..
    }) = log.command(c.write_id)
    else {
        return None;
    };
    let at = usize::try_from(c.block.checked_sub(offset_bytes / 4096)?).ok()? * 4096;
    data.get(at..at + 4096)
}

/// A name for the image that keeping `flags` of the candidates builds (see the module doc).
pub fn image_key(log: &WriteLog, replay: &Replay<'_>, cands: &[BlockWrite], flags: &[bool]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    };
    for id in replay.durable_writes() {
        feed(&id.to_le_bytes());
    }
    feed(b"|");
    // The last kept write of each block wins (images apply candidates in id order).
    let mut last: std::collections::BTreeMap<u64, &BlockWrite> = Default::default();
    for (c, _) in cands.iter().zip(flags).filter(|(_, &k)| k) {
        last.insert(c.block, c);
    }
    let durable = replay.durable_image();
    for (block, c) in last {
        let data = candidate_block(log, c);
        if data.is_some() && data == durable.block(block) {
            continue;
        }
        feed(&block.to_le_bytes());
        match data {
            Some(d) => feed(&name_hash_bytes(d).to_le_bytes()),
            None => feed(&c.write_id.to_le_bytes()),
        }
    }
    h
}

fn name_hash_bytes(d: &[u8]) -> u64 {
    d.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_are_all_up_to_ten_candidates_else_sixty_six() {
        let full = SubsetPolicy::FULL;
        assert_eq!(subset_seeds(0, 1, full), vec![0]);
        assert_eq!(subset_seeds(3, 1, full).len(), 8);
        assert_eq!(subset_seeds(10, 1, full).len(), 1024);
        let s = subset_seeds(11, 1, full);
        assert_eq!(s.len(), 66);
        assert_eq!(&s[..2], &[0, u64::MAX]);
        assert_eq!(s, subset_seeds(11, 1, full));
        let small = SubsetPolicy {
            all_max: 4,
            seeded: 14,
        };
        assert_eq!(subset_seeds(4, 1, small).len(), 16);
        assert_eq!(subset_seeds(5, 1, small).len(), 16);
    }
}
