//! The seeded fuzz loop on the stable toolchain: every target of `aios_fuzz::TARGETS` runs on
//! its seed corpus and then on `AIOS_FUZZ_ITERS` mutants (default [`ITERS_DEFAULT`] per target);
//! any panic fails the test, naming the target, the iteration seed and a replay command. Each
//! target must see inputs it decodes and inputs it refuses (a corpus stuck on one side fuzzes
//! nothing). The journal seeds must reproduce their e2fsprogs case's outcome.
//!
//! Environment: `AIOS_FUZZ_ITERS` (iterations per target), `AIOS_FUZZ_SEED` (base seed, default
//! fixed), `AIOS_FUZZ_TARGET` (run only this target), `AIOS_FUZZ_CORPUS_DIR` (also write every
//! seed to `DIR/<target>/seed-<n>`, the layout `cargo fuzz run <target> DIR/<target>` takes).
//! The ext4 corpora come from a `mke2fs` image; without e2fsprogs the ext4 targets are skipped
//! loudly.

use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use aios_fuzz::seeds::ext4::{from_image, Ext4Seeds};
use aios_fuzz::seeds::journal::{cases, Expect};
use aios_fuzz::{run, Report, TARGETS};
use aios_journal::format::superblock::JournalSuperblock;
use aios_journal::format::{Block, BLOCK_SIZE_BYTES};
use aios_journal::recovery::{recover, LogEnd};

/// Mutants per target when `AIOS_FUZZ_ITERS` is unset (CI: the whole test in about a minute of
/// debug build on two cores).
const ITERS_DEFAULT: u64 = 50_000;
const SEED_DEFAULT: u64 = 0xA105_F022_0000_0005;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

fn run_tool(cmd: &mut Command) {
    let out = cmd
        .env("E2FSPROGS_FAKE_TIME", "1700000000")
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0..=1)),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A small `mke2fs` image holding every structure the ext4 targets decode: files, a sparse file,
/// a fragmented file (extent tree of depth 1), fast and slow symlinks, nested directories and an
/// htree directory (indexed by `e2fsck -D`). `None` without e2fsprogs.
fn ext4_image(dir: &Path, size: &str, extra: &[&str]) -> Option<Vec<u8>> {
    if Command::new("mke2fs").arg("-V").output().is_err() {
        eprintln!("SKIPPED ext4 targets: mke2fs (e2fsprogs) not installed");
        return None;
    }
    let dir = dir.join(size);
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::write(src.join("a/b/deep.txt"), b"deep\n").unwrap();
    std::fs::write(src.join("small"), b"small\n").unwrap();
    let mut sparse = std::fs::File::create(src.join("sparse")).unwrap();
    sparse.write_all(&[7u8; 5000]).unwrap();
    sparse.seek(SeekFrom::Start(256 << 10)).unwrap();
    sparse.write_all(&[9u8; 3000]).unwrap();
    let frag = std::fs::File::create(src.join("frag")).unwrap();
    for i in 0..8u64 {
        frag.write_all_at(&[i as u8 + 1; 4096], i * 8192).unwrap();
    }
    std::os::unix::fs::symlink("a/b/deep.txt", src.join("fast_link")).unwrap();
    std::os::unix::fs::symlink("a/".repeat(40), src.join("slow_link")).unwrap();
    std::fs::create_dir(src.join("htree")).unwrap();
    for i in 0..40 {
        std::fs::write(src.join(format!("htree/{i:03}_{}", "x".repeat(120))), b"").unwrap();
    }
    let image = dir.join("img");
    run_tool(
        Command::new("mke2fs")
            .args(["-q", "-t", "ext4", "-F", "-b", "4096"])
            .args(["-U", "6b33f7ab-54d3-4bd0-9c8a-3a1c55d6e7f1"])
            .args(["-E", "hash_seed=0e5bb9b1-3d2c-4c7e-8a57-6b0f2f3c9d11", "-d"])
            .arg(&src)
            .args(extra)
            .arg(&image)
            .arg(size),
    );
    run_tool(Command::new("e2fsck").args(["-f", "-y", "-D"]).arg(&image));
    Some(std::fs::read(&image).unwrap())
}

fn dump(dir: &Path, target: &str, corpus: &[Vec<u8>]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).unwrap();
    for (i, seed) in corpus.iter().enumerate() {
        std::fs::write(d.join(format!("seed-{i:03}")), seed).unwrap();
    }
}

#[test]
fn journal_seeds_reproduce_the_e2fsprogs_cases() {
    let all = cases();
    assert!(all
        .iter()
        .any(|c| c.name.starts_with("j_corrupt_revoke_rcount")));
    for case in &all {
        let what = &case.name;
        let sb = JournalSuperblock::decode(&case.log[..1024]);
        if case.expect == Expect::BadSuperblock {
            assert!(sb.is_err(), "{what}: {sb:?}");
            continue;
        }
        let sb = sb.unwrap_or_else(|e| panic!("{what}: {e}"));
        let read = |i: u32| -> Result<Block, std::io::Error> {
            let at = i as usize * BLOCK_SIZE_BYTES;
            Ok(case.log[at..at + BLOCK_SIZE_BYTES].try_into().unwrap())
        };
        let rec = recover(&sb, read);
        match case.expect {
            Expect::Fails => assert!(rec.is_err(), "{what}: {rec:?}"),
            Expect::Replays(n) | Expect::BadCommit(n) | Expect::BadData(n) => {
                let rec = rec.unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(rec.transactions(), n, "{what}: {:?}", rec.end);
                assert_eq!(
                    matches!(rec.end, LogEnd::BadCommitChecksum { .. }),
                    matches!(case.expect, Expect::BadCommit(_)),
                    "{what}: {:?}",
                    rec.end
                );
                let bad = usize::from(matches!(case.expect, Expect::BadData(_)));
                assert_eq!(rec.bad_data_blocks.len(), bad, "{what}");
                assert!(!rec.writes.iter().any(|(b, _)| *b == 300), "{what}");
            }
            Expect::BadSuperblock => unreachable!(),
        }
    }
}

#[test]
fn every_decoder_target_survives_seeded_mutations() {
    let dir = tempfile::tempdir().unwrap();
    // An 8 MiB image (one group) and a 64 MiB one of four groups.
    let mut ext4 = Ext4Seeds::default();
    for (size, extra) in [("8M", &[][..]), ("64M", &["-g", "4096", "-N", "2048"][..])] {
        let Some(image) = ext4_image(dir.path(), size, extra) else {
            break;
        };
        let s = from_image(&image).expect("ext4 seeds from a clean mke2fs image");
        ext4.superblock.extend(s.superblock);
        ext4.group_desc.extend(s.group_desc);
        ext4.inode.extend(s.inode);
        ext4.extent_node.extend(s.extent_node);
        ext4.dir_block.extend(s.dir_block);
        ext4.dx_block.extend(s.dx_block);
    }
    let iters = env_u64("AIOS_FUZZ_ITERS").unwrap_or(ITERS_DEFAULT);
    let base = env_u64("AIOS_FUZZ_SEED").unwrap_or(SEED_DEFAULT);
    let only = std::env::var("AIOS_FUZZ_TARGET").ok();
    let corpus_dir = std::env::var_os("AIOS_FUZZ_CORPUS_DIR");
    let selected: Vec<_> = TARGETS
        .iter()
        .filter(|(name, _)| only.as_deref().is_none_or(|o| o == *name))
        .map(|&(name, target)| {
            let corpus = aios_fuzz::seeds::corpus(name, &ext4);
            if let Some(d) = &corpus_dir {
                dump(Path::new(d), name, &corpus);
            }
            (name, target, corpus)
        })
        .collect();
    assert!(!selected.is_empty(), "no target named {only:?}");

    let started = Instant::now();
    let prev_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut reports: Vec<(&str, usize, Report)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((name, target, corpus)) = selected.get(i) else {
                            return out;
                        };
                        out.push((*name, corpus.len(), run(*target, corpus, iters, base)));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    std::panic::set_hook(prev_hook);
    reports.sort_by_key(|(name, _, _)| TARGETS.iter().position(|(n, _)| n == name));

    eprintln!(
        "{} targets x {iters} mutants (base seed {base:#x}) in {:.1?} on {workers} threads",
        reports.len(),
        started.elapsed()
    );
    let mut failures = Vec::new();
    for (name, seeds, r) in &reports {
        eprintln!(
            "  {name:20} {seeds:3} seeds  {:6} runs  {:6} decoded  {:6} refused  {} panics  \
             slowest {:?}",
            r.executions,
            r.decoded,
            r.refused,
            r.crashes.len(),
            r.slowest
        );
        if *seeds == 0 {
            continue; // ext4 targets without e2fsprogs: skipped above, loudly.
        }
        for c in r.crashes.iter().take(5) {
            failures.push(format!(
                "{name}: panic {:?} on a {}-byte input; replay: AIOS_FUZZ_TARGET={name} \
                 AIOS_FUZZ_ITERS=1 AIOS_FUZZ_SEED={:#x}",
                c.message,
                c.input.len(),
                c.seed
            ));
        }
        if iters >= 100 && (r.decoded == 0 || r.refused == 0) {
            failures.push(format!(
                "{name}: {} decoded, {} refused: the corpus does not reach both sides",
                r.decoded, r.refused
            ));
        }
    }
    for f in &failures {
        eprintln!("FAIL {f}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
