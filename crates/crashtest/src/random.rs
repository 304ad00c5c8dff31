//! Seeded random workloads: up to a few hundred ops of the whole vocabulary on 1–4 thread
//! contexts, over an image whose journal is cut short so that one workload wraps it.
//!
//! # Role
//! [`generate`] turns a seed into a [`Workload`]: a thread count (1–4), an op count (three
//! quarters of `ops_max` to `ops_max`), and for each op a thread and an op inside that thread's directory
//! `/tN`. Ops are drawn by weight, then their paths from a small pool of names per thread, and
//! redrawn until POSIX allows them ([`Model::allows`]), so every op must succeed. Each write
//! has its own generation, so a stale byte names the write it came from.
//!
//! Threads are *contexts* (each with its own queue and read context, as an OS thread has),
//! taking turns on one OS thread in the drawn order: the run, its write log and therefore
//! every crash state are a function of the seed. (Truly concurrent threads are the
//! `concurrent` campaign's business; it cannot replay exactly.)
//!
//! # Invariants
//! - The name `rand-SEED-OPSMAX` ([`name`], [`parse_name`]) rebuilds the same workload.
//! - File sizes stay under [`FILE_BYTES_MAX`], so a workload never fills the 32 MiB image.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::model::{Model, Node, Op};
use super::workload::{Workload, GEN_PREPARED, GEN_WORKLOAD};

/// Thread directories prepared (the most a workload uses).
pub const THREADS_MAX: usize = 4;
/// The prepared image's journal: 44 blocks (176 KiB), so a workload's commits wrap it at
/// least three times (a commit of a few metadata blocks takes 3 to 6; transactions are
/// limited to 16 blocks).
pub const JOURNAL_BLOCKS: u32 = 44;
/// No write, truncate or fallocate reaches past this.
pub const FILE_BYTES_MAX: u64 = 256 * 1024;
/// Writes and truncates keep to whole tag records.
const RECORD: u64 = super::model::RECORD_BYTES as u64;
/// The longest write: 7 blocks, 8 when unaligned, so a write is one piece of a transaction
/// (the mount splits writes at half the transaction limit) and atomic in `data=journal`.
const WRITE_BYTES_MAX: u64 = 28 * 1024;

/// The prepared image of the random workloads: a directory per thread with one file.
pub fn prepare_ops() -> Vec<Op> {
    let mut ops = Vec::new();
    for t in 0..THREADS_MAX {
        ops.push(Op::Mkdir(format!("/t{t}")));
        ops.push(Op::Create(format!("/t{t}/f0")));
        ops.push(Op::Write {
            path: format!("/t{t}/f0"),
            offset: 0,
            len: 12_288,
            generation: GEN_PREPARED,
        });
    }
    ops
}

/// The workload name of `seed`.
pub fn name(seed: u64, ops_max: usize) -> String {
    format!("rand-{seed:016x}-{ops_max}")
}

/// The seed and op bound of a [`name`].
pub fn parse_name(name: &str) -> Option<(u64, usize)> {
    let rest = name.strip_prefix("rand-")?;
    let (seed, ops_max) = rest.split_once('-')?;
    Some((u64::from_str_radix(seed, 16).ok()?, ops_max.parse().ok()?))
}

/// The workload of `seed` over the prepared model (see the module documentation).
pub fn generate(prepared: &Model, seed: u64, ops_max: usize) -> Workload {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let threads = rng.gen_range(1..=THREADS_MAX);
    let ops_max = ops_max.max(2);
    let count = rng.gen_range(ops_max * 3 / 4..=ops_max);
    let mut model = prepared.clone();
    let mut wl = Workload::new(name(seed, ops_max), Vec::with_capacity(count));
    for k in 0..count {
        let t = rng.gen_range(0..threads);
        let generation = GEN_WORKLOAD + u32::try_from(k).unwrap_or(u32::MAX - GEN_WORKLOAD);
        let op = (0..32)
            .map(|_| draw(&mut rng, &model, t, generation))
            .find(|op| model.allows(op))
            .unwrap_or_else(|| Op::Fsync(format!("/t{t}")));
        if model.apply(&op).is_ok() {
            wl.ops.push(op);
            wl.ctx.push(t);
        }
    }
    wl
}

/// Names a thread's ops use: files, directories and a symlink, some one level down.
fn pool(t: usize) -> [String; 11] {
    let d = format!("/t{t}");
    [
        format!("{d}/f0"),
        format!("{d}/f1"),
        format!("{d}/f2"),
        format!("{d}/f3"),
        format!("{d}/d0"),
        format!("{d}/d1"),
        format!("{d}/s0"),
        format!("{d}/d0/f0"),
        format!("{d}/d0/f1"),
        format!("{d}/d1/f0"),
        format!("{d}/d0/d2"),
    ]
}

/// One op for thread `t` by weight; its paths may not fit (the caller redraws).
fn draw(rng: &mut ChaCha8Rng, model: &Model, t: usize, generation: u32) -> Op {
    let names = pool(t);
    let any = |rng: &mut ChaCha8Rng| names[rng.gen_range(0..names.len())].clone();
    let files: Vec<&String> = names
        .iter()
        .filter(|p| matches!(model.get(p), Some(Node::File(_))))
        .collect();
    let file = |rng: &mut ChaCha8Rng| match files.len() {
        0 => format!("/t{t}/f0"),
        n => files[rng.gen_range(0..n)].clone(),
    };
    let size = |p: &str| match model.get(p) {
        Some(Node::File(d)) => d.len() as u64,
        _ => 0,
    };
    match rng.gen_range(0..100) {
        0..=7 => Op::Create(any(rng)),
        8..=11 => Op::Mkdir(any(rng)),
        12..=13 => Op::Symlink(any(rng), "f0".into()),
        38..=42 => {
            let path = file(rng);
            let to = rng.gen_range(0..=(size(&path) + 8192).min(FILE_BYTES_MAX));
            Op::Truncate(path, to / RECORD * RECORD)
        }
        43..=45 => {
            let path = file(rng);
            let offset = rng.gen_range(0..FILE_BYTES_MAX / 2) / 512 * 512;
            let len = rng
                .gen_range(1..=WRITE_BYTES_MAX)
                .min(FILE_BYTES_MAX - offset);
            Op::Fallocate {
                path,
                offset,
                len,
                keep_size: rng.gen_bool(0.5),
            }
        }
        46..=50 => Op::Unlink(any(rng)),
        51..=52 => Op::Rmdir(any(rng)),
        53..=58 => Op::Rename(any(rng), any(rng)),
        59..=61 => Op::Link(file(rng), any(rng)),
        62..=79 => {
            let p = if rng.gen_bool(0.3) {
                format!("/t{t}")
            } else {
                any(rng)
            };
            Op::Fsync(p)
        }
        80..=89 => Op::Fdatasync(file(rng)),
        90..=94 => Op::Sync,
        // The rest (14..=37 and 95..): writes, the commonest op of real workloads.
        _ => {
            let path = file(rng);
            let (offset, len) = write_range(rng, size(&path));
            Op::Write {
                path,
                offset,
                len,
                generation,
            }
        }
    }
}

/// Where a write goes in a file of `size` bytes: an overwrite, an append, or past the end
/// (a hole); block-aligned or not, one record to [`WRITE_BYTES_MAX`]. Offsets and lengths are
/// whole tag records, so each record read back is one write's (or zeros).
fn write_range(rng: &mut ChaCha8Rng, size: u64) -> (u64, usize) {
    let offset = match rng.gen_range(0..3) {
        0 if size > 0 => rng.gen_range(0..size),
        1 => size,
        _ => size + rng.gen_range(0..32_768),
    };
    let offset = if rng.gen_bool(0.5) {
        offset / 4096 * 4096
    } else {
        offset
    };
    let offset = offset.min(FILE_BYTES_MAX - 1);
    let len = match rng.gen_range(0..3) {
        0 => rng.gen_range(1..=4096),
        1 => 4096 * rng.gen_range(1..=WRITE_BYTES_MAX / 4096),
        _ => rng.gen_range(1..=WRITE_BYTES_MAX),
    };
    let offset = offset / RECORD * RECORD;
    let len = (len.min(FILE_BYTES_MAX - offset) / RECORD).max(1) * RECORD;
    (offset, usize::try_from(len).unwrap_or(4096))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared() -> Model {
        let mut m = Model::default();
        for op in prepare_ops() {
            m.apply(&op).expect("prepare op");
        }
        m
    }

    #[test]
    fn same_seed_same_workload_and_names_round_trip() {
        let m = prepared();
        let a = generate(&m, 7, 200);
        let b = generate(&m, 7, 200);
        assert_eq!(a.ops, b.ops);
        assert_eq!(a.ctx, b.ctx);
        assert_eq!(parse_name(&a.name), Some((7, 200)));
        assert!(a.ops.len() >= 150 && a.ops.len() <= 200, "{}", a.ops.len());
        assert_ne!(generate(&m, 8, 200).ops, a.ops);
    }

    #[test]
    fn workloads_use_the_vocabulary_and_every_op_applies() {
        let m = prepared();
        let mut kinds = std::collections::BTreeSet::new();
        for seed in 0..20 {
            let wl = generate(&m, seed, 200);
            let mut model = m.clone();
            for op in &wl.ops {
                model.apply(op).expect("generated op applies");
                kinds.insert(op.to_string().split(' ').next().unwrap_or("").to_string());
            }
            assert!(wl.threads() <= THREADS_MAX);
        }
        for k in [
            "create",
            "mkdir",
            "symlink",
            "write",
            "truncate",
            "fallocate",
            "unlink",
            "rmdir",
            "rename",
            "link",
            "fsync",
            "fdatasync",
            "sync",
        ] {
            assert!(kinds.contains(k), "{k} never drawn: {kinds:?}");
        }
    }
}
