//! Property: any read at any offset and length returns exactly the source file's bytes.

mod common;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

#[test]
fn random_reads_match_the_source_files() {
    if !common::have_mke2fs("random_reads_match_the_source_files") {
        return;
    }
    let fx = common::build();
    let fs = common::mount(&fx.image);
    let mut io = fs.io().unwrap();
    let names = [
        "size1", "size4095", "size4097", "size1m3", "sparse", "frag", "a/b/mid",
    ];
    let files: Vec<(aios_fs::File, Vec<u8>)> = names
        .iter()
        .map(|name| {
            let ino = fs.lookup(&mut io, format!("/{name}")).unwrap();
            let file = fs.open(&mut io, ino).unwrap();
            (file, std::fs::read(fx.src.join(name)).unwrap())
        })
        .collect();
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    let io = std::cell::RefCell::new(io);
    let strategy = (0..files.len(), any::<u64>(), 0usize..300_000, any::<bool>());
    runner
        .run(&strategy, |(which, raw_offset, len, near_end)| {
            let (file, source) = &files[which];
            let size = source.len() as u64;
            // Half the cases land within 64 KiB of the end, where reads turn short.
            let offset = if near_end {
                size.saturating_sub(raw_offset % 65_536)
            } else {
                raw_offset % (size + 4096)
            };
            let mut buf = vec![0xA5u8; len];
            let n = fs
                .read_at(&mut io.borrow_mut(), file, offset, &mut buf)
                .unwrap();
            let start = (offset.min(size)) as usize;
            let end = (start + len).min(source.len());
            prop_assert_eq!(
                n,
                end - start,
                "length at offset {} of {}",
                offset,
                names[which]
            );
            prop_assert!(
                buf[..n] == source[start..end],
                "bytes at offset {} of {}",
                offset,
                names[which]
            );
            prop_assert!(
                buf[n..].iter().all(|&b| b == 0xA5),
                "wrote past the returned length"
            );
            Ok(())
        })
        .unwrap();
}
