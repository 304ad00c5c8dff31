//! Reads of file data through the read-write mount ([`aios_fs::RwShared::read`]): planned
//! under the state lock, read from the device without it, consecutive blocks in one request;
//! freed blocks are not reused while a read of them may be in flight.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aios_device_emu::{EmuConfig, EmuDevice};
use aios_fs::{DataMode, RwFs, RwOptions};
use aios_journal::runtime::CommitOrder;
use common::{have_mke2fs, pattern};

fn options(order: CommitOrder, data: DataMode) -> RwOptions {
    RwOptions {
        order,
        data,
        commit_interval: None,
        ..RwOptions::default()
    }
}

#[test]
fn a_64k_cold_read_is_one_device_request() {
    let name = "a_64k_cold_read_is_one_device_request";
    if !have_mke2fs(name) {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for data in [DataMode::Ordered, DataMode::Journal] {
        let config = EmuConfig::parse("ull,size=32M,arena=16M").unwrap();
        let dev = EmuDevice::with_image(config, common::base_image(dir.path())).unwrap();
        let mut fs = RwFs::mount(dev, options(CommitOrder::Async, data)).unwrap();
        let want = pattern(7, 65536);
        fs.create("/f", 0o644).unwrap();
        fs.write("/f", 0, &want).unwrap();
        fs.fsync("/f").unwrap();
        // data=journal: the blocks go home at the checkpoint; until then reads take them
        // from memory.
        fs.checkpoint().unwrap();
        let shared = fs.shared();
        let mut ctx = shared.ctx().unwrap();
        let mut back = vec![0u8; 65536];
        // The first read of the inode loads its metadata; the second is the cold data read.
        shared.read(&mut ctx, "/f", 0, &mut back[..1]).unwrap();
        let before = ctx.read_stats();
        assert_eq!(shared.read(&mut ctx, "/f", 0, &mut back).unwrap(), 65536);
        let after = ctx.read_stats();
        assert_eq!(back, want, "{data:?}");
        assert_eq!(
            after.submitted - before.submitted,
            1,
            "{data:?}: 16 contiguous blocks, one request"
        );
        // An unaligned read across blocks, and a read past the end.
        let mut part = vec![0u8; 10000];
        assert_eq!(shared.read(&mut ctx, "/f", 1234, &mut part).unwrap(), 10000);
        assert_eq!(part, want[1234..11234]);
        assert_eq!(shared.read(&mut ctx, "/f", 60000, &mut part).unwrap(), 5536);
        assert_eq!(part[..5536], want[60000..]);
        drop(ctx);
        let (_, r) = fs.unmount();
        r.unwrap();
    }
}

/// Readers of a file that another thread keeps truncating and rewriting, while a third thread
/// writes and syncs other files into the blocks the truncates free: every block a reader
/// returns is zeros or a version of its own file, never another file's bytes.
#[test]
fn reads_beside_truncates_and_reuse_return_only_the_files_own_bytes() {
    let name = "reads_beside_truncates_and_reuse_return_only_the_files_own_bytes";
    if !have_mke2fs(name) {
        return;
    }
    const BLOCKS: usize = 16;
    const BS: usize = 4096;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for order in [CommitOrder::Sync, CommitOrder::Async] {
        let config = EmuConfig::parse("ull,size=32M,arena=16M").unwrap();
        let dev = EmuDevice::with_image(config, common::base_image(dir.path())).unwrap();
        let mut fs = RwFs::mount(dev, options(order, DataMode::Ordered)).unwrap();
        // Every block of /victim starts with b'V' and its version; /other's with b'O'.
        let block_of = |tag: u8, version: u8| {
            let mut b = vec![tag; BS];
            b[1] = version;
            b
        };
        let victim = |version: u8| block_of(b'V', version).repeat(BLOCKS);
        fs.create("/victim", 0o644).unwrap();
        fs.write("/victim", 0, &victim(0)).unwrap();
        fs.fsync("/victim").unwrap();
        let shared = fs.shared();
        let stop = AtomicBool::new(false);
        let deadline = Instant::now() + Duration::from_millis(1500);
        let reads = std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut ctx = shared.ctx().unwrap();
                let mut buf = vec![0u8; BLOCKS * BS];
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let n = shared.read(&mut ctx, "/victim", 0, &mut buf).unwrap();
                    for (i, block) in buf[..n].chunks(BS).enumerate() {
                        let ok = block.iter().all(|&b| b == 0)
                            || (block[0] == b'V' && block[2..].iter().all(|&b| b == b'V'));
                        assert!(
                            ok,
                            "{order:?}: block {i} of /victim holds {:?}",
                            &block[..4]
                        );
                    }
                    reads += 1;
                }
                reads
            });
            s.spawn(|| {
                let mut ctx = shared.ctx().unwrap();
                let mut version = 1u8;
                while Instant::now() < deadline {
                    shared.truncate(&mut ctx, "/victim", 0).unwrap();
                    shared.fsync(&mut ctx, "/victim").unwrap();
                    shared
                        .write(&mut ctx, "/victim", 0, &victim(version))
                        .unwrap();
                    shared.fsync(&mut ctx, "/victim").unwrap();
                    version = version.wrapping_add(1);
                }
            });
            s.spawn(|| {
                let mut ctx = shared.ctx().unwrap();
                let mut i = 0u32;
                while Instant::now() < deadline {
                    let path = format!("/other{}", i % 4);
                    if i >= 4 {
                        shared.unlink(&mut ctx, &path).unwrap();
                    }
                    shared.create(&mut ctx, &path, 0o644).unwrap();
                    let data = block_of(b'O', i as u8).repeat(BLOCKS);
                    shared.write(&mut ctx, &path, 0, &data).unwrap();
                    shared.fsync(&mut ctx, &path).unwrap();
                    i += 1;
                }
            });
            std::thread::sleep(Duration::from_millis(1600));
            stop.store(true, Ordering::Relaxed);
            reader.join().unwrap()
        });
        assert!(reads > 0, "{order:?}: the reader ran");
        let (_, r) = fs.unmount();
        r.unwrap();
    }
}

fn mount_emu(dir: &std::path::Path, options: RwOptions) -> RwFs<EmuDevice> {
    let config = EmuConfig::parse("ull,size=32M,arena=16M").unwrap();
    let dev = EmuDevice::with_image(config, common::base_image(dir)).unwrap();
    RwFs::mount(dev, options).unwrap()
}

#[test]
fn a_hot_read_is_a_cache_hit_and_a_write_is_never_hidden_by_one() {
    let name = "a_hot_read_is_a_cache_hit_and_a_write_is_never_hidden_by_one";
    if !have_mke2fs(name) {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for order in [CommitOrder::Sync, CommitOrder::Async] {
        let mut fs = mount_emu(dir.path(), options(order, DataMode::Ordered));
        let mut want = pattern(11, 8 * 4096);
        fs.create("/f", 0o644).unwrap();
        fs.write("/f", 0, &want).unwrap();
        fs.fsync("/f").unwrap();
        let shared = fs.shared();
        let mut ctx = shared.ctx().unwrap();
        let mut back = vec![0u8; want.len()];
        shared.read(&mut ctx, "/f", 0, &mut back).unwrap();
        let before = ctx.read_stats().submitted;
        shared.read(&mut ctx, "/f", 0, &mut back).unwrap();
        assert_eq!(back, want);
        assert_eq!(
            ctx.read_stats().submitted,
            before,
            "{order:?}: all 8 pages hit"
        );

        // An overwrite made durable in place (no commit): the cached pages must not hide it.
        let over = pattern(12, 4096 + 100);
        shared.write(&mut ctx, "/f", 4000, &over).unwrap();
        want[4000..4000 + over.len()].copy_from_slice(&over);
        shared.read(&mut ctx, "/f", 0, &mut back).unwrap();
        assert_eq!(
            back, want,
            "{order:?}: dirty pages read back before the sync"
        );
        shared.fdatasync(&mut ctx, "/f").unwrap();
        shared.read(&mut ctx, "/f", 0, &mut back).unwrap();
        assert_eq!(back, want, "{order:?}: after the data sync, from home");

        // Truncated and rewritten: the old pages are gone.
        shared.truncate(&mut ctx, "/f", 4096).unwrap();
        let tail = pattern(13, 4096);
        shared.write(&mut ctx, "/f", 8192, &tail).unwrap();
        shared.fsync(&mut ctx, "/f").unwrap();
        let mut now = want[..4096].to_vec();
        now.extend_from_slice(&[0u8; 4096]);
        now.extend_from_slice(&tail);
        let mut back = vec![0u8; now.len() + 100];
        assert_eq!(
            shared.read(&mut ctx, "/f", 0, &mut back).unwrap(),
            now.len()
        );
        assert_eq!(
            &back[..now.len()],
            &now[..],
            "{order:?}: a hole where the file was cut"
        );

        // Unlinked and its inode number reused: the new file never shows the old one's pages.
        shared.unlink(&mut ctx, "/f").unwrap();
        let ino = shared.create(&mut ctx, "/g", 0o644).unwrap();
        let fresh = pattern(14, 8 * 4096);
        shared.write(&mut ctx, "/g", 0, &fresh).unwrap();
        shared.fsync(&mut ctx, "/g").unwrap();
        let mut back = vec![0u8; fresh.len()];
        shared.read(&mut ctx, "/g", 0, &mut back).unwrap();
        assert_eq!(back, fresh, "{order:?}: inode {ino}");
        drop(ctx);
        let (_, r) = fs.unmount();
        r.unwrap();
    }
}

#[test]
fn a_write_then_fsync_then_eviction_then_a_read() {
    let name = "a_write_then_fsync_then_eviction_then_a_read";
    if !have_mke2fs(name) {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut options = options(CommitOrder::Async, DataMode::Ordered);
    options.mount.cache_pages = 64;
    let mut fs = mount_emu(dir.path(), options);
    let files: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| (format!("/f{i}"), pattern(20 + i, 256 * 4096)))
        .collect();
    for (path, data) in &files {
        fs.create(path, 0o644).unwrap();
        fs.write(path, 0, data).unwrap();
        fs.fsync(path).unwrap();
    }
    // 1024 pages through a 64-page cache, twice: every page is evicted before it is read again.
    let mut back = vec![0u8; 256 * 4096];
    for _ in 0..2 {
        for (path, data) in &files {
            assert_eq!(fs.read(path, 0, &mut back).unwrap(), back.len());
            assert!(back == *data, "{path} after eviction");
        }
    }
    let (_, r) = fs.unmount();
    r.unwrap();
}

/// Regression: the page cache took the whole arena (its default size is the arena's here) and
/// the next commit failed for memory, turning the mount read-only.
#[test]
fn a_full_page_cache_never_makes_a_commit_fail_for_memory() {
    let name = "a_full_page_cache_never_makes_a_commit_fail_for_memory";
    if !have_mke2fs(name) {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut fs = mount_emu(dir.path(), options(CommitOrder::Async, DataMode::Ordered));
    let big = pattern(30, 20 << 20);
    fs.create("/big", 0o644).unwrap();
    fs.write("/big", 0, &big).unwrap();
    fs.fsync("/big").unwrap();
    let mut back = vec![0u8; big.len()];
    assert_eq!(fs.read("/big", 0, &mut back).unwrap(), big.len());
    assert!(back == big);
    let more = pattern(31, 2 << 20);
    fs.create("/more", 0o644).unwrap();
    fs.write("/more", 0, &more).unwrap();
    fs.fsync("/more").unwrap();
    assert!(!fs.is_read_only());
    let (_, r) = fs.unmount();
    r.unwrap();
}

#[test]
fn sequential_reads_by_handle_are_read_ahead() {
    let name = "sequential_reads_by_handle_are_read_ahead";
    if !have_mke2fs(name) {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let config = EmuConfig::parse("ull,size=32M,arena=16M").unwrap();
    let dev = EmuDevice::with_image(config, common::base_image(dir.path())).unwrap();
    let mut fs = RwFs::mount(dev, options(CommitOrder::Async, DataMode::Ordered)).unwrap();
    let want = pattern(11, 4 << 20);
    fs.create("/seq", 0o644).unwrap();
    fs.write("/seq", 0, &want).unwrap();
    fs.fsync("/seq").unwrap();
    let shared = fs.shared();
    let mut ctx = shared.ctx().unwrap();
    let file = shared
        .open(&mut ctx, "/seq", aios_fs::OpenOptions::default())
        .unwrap();
    let before = ctx.read_stats().submitted;
    let mut back = vec![0u8; want.len()];
    for (i, chunk) in back.chunks_mut(4096).enumerate() {
        let n = shared
            .read_at(&mut ctx, &file, i as u64 * 4096, chunk)
            .unwrap();
        assert_eq!(n, 4096);
    }
    let requests = ctx.read_stats().submitted - before;
    assert!(back == want, "sequential reads returned other bytes");
    // 1024 pages in windows of 32: one request per window, plus the first reads.
    assert!(
        requests <= 64,
        "{requests} device requests for 1024 sequential pages"
    );
    shared.close(&mut ctx, file).unwrap();
}

#[test]
fn readahead_never_caches_a_page_whose_newest_bytes_are_in_memory() {
    let name = "readahead_never_caches_a_page_whose_newest_bytes_are_in_memory";
    if !have_mke2fs(name) {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for data in [DataMode::Ordered, DataMode::Journal] {
        let config = EmuConfig::parse("ull,size=32M,arena=16M").unwrap();
        let dev = EmuDevice::with_image(config, common::base_image(dir.path())).unwrap();
        let mut fs = RwFs::mount(dev, options(CommitOrder::Async, data)).unwrap();
        fs.create("/f", 0o644).unwrap();
        fs.write("/f", 0, &pattern(1, 64 * 4096)).unwrap();
        fs.fsync("/f").unwrap();
        fs.checkpoint().unwrap();
        // Page 20's newest bytes are in memory only; pages 0..20 are read in sequence, so
        // readahead runs towards it.
        let newer = pattern(2, 4096);
        fs.write("/f", 20 * 4096, &newer).unwrap();
        let shared = fs.shared();
        let mut ctx = shared.ctx().unwrap();
        let file = shared
            .open(&mut ctx, "/f", aios_fs::OpenOptions::default())
            .unwrap();
        let mut page = vec![0u8; 4096];
        // Pages 0..18 in one read: readahead takes 18 and 19, and stops before 20.
        let mut head = vec![0u8; 18 * 4096];
        shared.read_at(&mut ctx, &file, 0, &mut head).unwrap();
        // Still in sequence, a read of pages 18..21: page 20 comes from memory, the rest
        // from the cache; readahead must not start from the end of pages 18..20.
        let mut three = vec![0u8; 3 * 4096];
        shared
            .read_at(&mut ctx, &file, 18 * 4096, &mut three)
            .unwrap();
        assert!(
            three[2 * 4096..] == newer[..],
            "{data:?}: page 20 from memory"
        );
        // Page 20 goes home; nothing moves the file's cache epoch on.
        shared.fsync_file(&mut ctx, &file).unwrap();
        shared.checkpoint(&mut ctx).unwrap();
        shared
            .read_at(&mut ctx, &file, 20 * 4096, &mut page)
            .unwrap();
        assert!(
            page == newer,
            "{data:?}: by handle, a stale read-ahead page"
        );
        shared.read(&mut ctx, "/f", 20 * 4096, &mut page).unwrap();
        assert!(page == newer, "{data:?}: by path, a stale read-ahead page");
        shared.close(&mut ctx, file).unwrap();
    }
}

#[test]
fn reads_by_handle_see_every_size_and_block_map_change() {
    let name = "reads_by_handle_see_every_size_and_block_map_change";
    if !have_mke2fs(name) {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let config = EmuConfig::parse("ull,size=32M,arena=16M").unwrap();
    let dev = EmuDevice::with_image(config, common::base_image(dir.path())).unwrap();
    let mut fs = RwFs::mount(dev, options(CommitOrder::Async, DataMode::Ordered)).unwrap();
    fs.create("/v", 0o644).unwrap();
    fs.write("/v", 0, &pattern(1, 8192)).unwrap();
    fs.fsync("/v").unwrap();
    let shared = fs.shared();
    let mut ctx = shared.ctx().unwrap();
    let file = shared
        .open(&mut ctx, "/v", aios_fs::OpenOptions::default())
        .unwrap();
    let mut page = vec![0u8; 4096];
    // The first reads load the file's view; the next ones reuse it.
    assert_eq!(shared.read_at(&mut ctx, &file, 0, &mut page).unwrap(), 4096);
    assert_eq!(shared.read_at(&mut ctx, &file, 8192, &mut page).unwrap(), 0);
    // Grown through the path: the handle reads the new size and blocks.
    let grown = pattern(2, 3 * 4096);
    shared.write(&mut ctx, "/v", 8192, &grown).unwrap();
    assert_eq!(
        shared.read_at(&mut ctx, &file, 8192, &mut page).unwrap(),
        4096
    );
    assert!(page == grown[..4096], "the grown blocks");
    // Made durable, then shrunk: the handle reads the shorter file.
    shared.fsync(&mut ctx, "/v").unwrap();
    shared
        .read_at(&mut ctx, &file, 4 * 4096, &mut page)
        .unwrap();
    shared.truncate(&mut ctx, "/v", 4096 + 10).unwrap();
    assert_eq!(
        shared.read_at(&mut ctx, &file, 4096, &mut page).unwrap(),
        10
    );
    assert_eq!(
        shared
            .read_at(&mut ctx, &file, 4 * 4096, &mut page)
            .unwrap(),
        0
    );
    // Punched to a hole and rewritten elsewhere: the handle follows the new map.
    shared.truncate(&mut ctx, "/v", 0).unwrap();
    shared
        .write(&mut ctx, "/v", 5 * 4096, &pattern(3, 4096))
        .unwrap();
    assert_eq!(shared.read_at(&mut ctx, &file, 0, &mut page).unwrap(), 4096);
    assert!(page.iter().all(|&b| b == 0), "a hole reads as zeros");
    assert_eq!(
        shared
            .read_at(&mut ctx, &file, 5 * 4096, &mut page)
            .unwrap(),
        4096
    );
    assert!(page == pattern(3, 4096), "the rewritten block");
    shared.close(&mut ctx, file).unwrap();
}
