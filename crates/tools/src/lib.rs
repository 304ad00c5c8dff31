//! The image commands of `aios` (its file-system tools): `aios mkfs|info|ls|stat|cat|get IMAGE
//! [PATH...]`, `aios put|rm|mkdir|rmdir|mv|fsck`, in the shape of e2tools. A crate apart from the
//! binary so the binary stays a thin parser and dispatcher (and rebuilds in seconds).
//!
//! IMAGE is an image file or a block device; it is opened read-only and exclusively
//! (refused while another aios, or the kernel through a loop device or a mount, uses it).
//! Errors name the image or path and the cause.
//!
//! Write commands (`put`, `rm`, `mkdir`, `rmdir`, `mv`) mount read-write ([`aios_fs::RwFs`]): recovery of a
//! journal left by a crash first, every operation one journaled transaction, clean unmount at the
//! end (also after a failed operation, so what succeeded stays and the journal is clean).
//! `fsck` reads everything back through aios and then runs `e2fsck -fn`.

use aios_device::TargetOptions;
use aios_device_psync::{PsyncConfig, PsyncDevice};
use aios_fs::{Fs, IoCtx, MountOptions, RwFs, RwOptions, Stat, Timestamp};
use aios_journal::runtime::CommitOrder;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use aios_fs::mkfs::make_ext4;
use aios_spec::show_size;

/// Arena of a CLI mount: a few 128 KiB requests at a time.
const CLI_ARENA_BYTES: usize = 4 << 20;
/// Bytes copied out per read call.
const CHUNK_BYTES: usize = 128 * 1024;

type Mounted = Fs<PsyncDevice>;
type Io = IoCtx<<PsyncDevice as aios_device::Device>::Queue>;

fn mount(image: &Path) -> Result<(Mounted, Io)> {
    let config = PsyncConfig {
        arena_bytes: CLI_ARENA_BYTES,
        target: TargetOptions {
            read_only: true,
            exclusive: true,
        },
    };
    let device =
        PsyncDevice::open(image, config).with_context(|| format!("open {}", image.display()))?;
    let fs = Fs::mount(device, MountOptions::default())
        .with_context(|| format!("mount {}", image.display()))?;
    let io = fs
        .io()
        .with_context(|| format!("I/O context on {}", image.display()))?;
    Ok((fs, io))
}

/// Arena of a read-write CLI mount: put's 1 MiB chunks, journal buffers and checkpoints.
const RW_ARENA_BYTES: usize = 32 << 20;

type RwMounted = RwFs<PsyncDevice>;

fn mount_rw(image: &Path, order: CommitOrder) -> Result<RwMounted> {
    let config = PsyncConfig {
        arena_bytes: RW_ARENA_BYTES,
        target: TargetOptions {
            read_only: false,
            exclusive: true,
        },
    };
    let device = PsyncDevice::open(image, config)
        .with_context(|| format!("open {} read-write", image.display()))?;
    let options = RwOptions {
        mount: MountOptions::default(),
        order,
        ..RwOptions::default()
    };
    let fs = RwFs::mount(device, options)
        .with_context(|| format!("mount {} read-write", image.display()))?;
    if let Some(r) = fs.replayed() {
        eprintln!(
            "{}: journal recovered: {} transactions, {} blocks replayed",
            image.display(),
            r.transactions(),
            r.fs_blocks.len()
        );
    }
    Ok(fs)
}

/// Runs `ops` on a read-write mount, then unmounts cleanly; the first error wins.
pub(crate) fn with_rw(
    image: &Path,
    order: CommitOrder,
    ops: impl FnOnce(&mut RwMounted) -> Result<()>,
) -> Result<()> {
    let mut fs = mount_rw(image, order)?;
    let result = ops(&mut fs);
    let (_device, unmounted) = fs.unmount();
    let unmounted = unmounted.with_context(|| format!("unmount {}", image.display()));
    match (result, unmounted) {
        (Err(e), _) => Err(e),
        (Ok(()), u) => u,
    }
}

/// `aios put IMAGE LOCAL DEST`: creates DEST in the image, or replaces a regular file's
/// contents, with the bytes of the local file LOCAL.
pub fn put(image: &Path, local: &Path, dest: &str, order: CommitOrder) -> Result<()> {
    let mut src =
        std::fs::File::open(local).with_context(|| format!("open {}", local.display()))?;
    with_rw(image, order, |fs| {
        let n = fs
            .put(dest, &mut src)
            .with_context(|| format!("{}:{dest}", image.display()))?;
        eprintln!(
            "{}:{dest}: {n} bytes from {}",
            image.display(),
            local.display()
        );
        Ok(())
    })
}

/// `aios rm IMAGE PATH...`: removes files (and symlinks); `-r`-less, like `rm`.
pub fn rm(image: &Path, paths: &[String], order: CommitOrder) -> Result<()> {
    with_rw(image, order, |fs| {
        for path in paths {
            fs.unlink(path)
                .with_context(|| format!("{}:{path}", image.display()))?;
        }
        Ok(())
    })
}

/// `aios mkdir IMAGE PATH...`: creates directories (mode 0755); parents must exist.
pub fn mkdir(image: &Path, paths: &[String], order: CommitOrder) -> Result<()> {
    with_rw(image, order, |fs| {
        for path in paths {
            fs.mkdir(path, 0o755)
                .with_context(|| format!("{}:{path}", image.display()))?;
        }
        Ok(())
    })
}

/// `aios rmdir IMAGE PATH...`: removes empty directories.
pub fn rmdir(image: &Path, paths: &[String], order: CommitOrder) -> Result<()> {
    with_rw(image, order, |fs| {
        for path in paths {
            fs.rmdir(path)
                .with_context(|| format!("{}:{path}", image.display()))?;
        }
        Ok(())
    })
}

/// `aios mv IMAGE FROM TO`: renames atomically, like `rename(2)`.
pub fn mv(image: &Path, from: &str, to: &str, order: CommitOrder) -> Result<()> {
    with_rw(image, order, |fs| {
        fs.rename(from, to)
            .with_context(|| format!("{}:{from} -> {to}", image.display()))
    })
}

/// `aios fsck IMAGE`: our own check (mount read-only, walk every directory, read every file
/// and symlink through aios), then `e2fsck -fn`. Fails if either finds a problem.
pub fn fsck(image: &Path) -> Result<()> {
    let (fs, mut io) = mount(image)?;
    let mut counts = (0u64, 0u64, 0u64, 0u64); // dirs, files, links, bytes
    let mut stack = vec![("/".to_string(), aios_fs::ROOT_INO)];
    let mut buf = vec![0u8; CHUNK_BYTES];
    while let Some((path, ino)) = stack.pop() {
        counts.0 += 1;
        let at = || format!("aios check {}:{path}", image.display());
        for e in fs.read_dir(&mut io, ino).with_context(at)? {
            if e.name == b"." || e.name == b".." {
                continue;
            }
            let child = format!(
                "{}/{}",
                path.trim_end_matches('/'),
                String::from_utf8_lossy(&e.name)
            );
            let at = || format!("aios check {}:{child}", image.display());
            let st = fs.stat(&mut io, e.ino).with_context(at)?;
            match st.mode & 0o170000 {
                0o040000 => stack.push((child, e.ino)),
                0o120000 => {
                    fs.read_link(&mut io, e.ino).with_context(at)?;
                    counts.2 += 1;
                }
                0o100000 => {
                    let file = fs.open(&mut io, e.ino).with_context(at)?;
                    let mut offset = 0u64;
                    loop {
                        let n = fs
                            .read_at(&mut io, &file, offset, &mut buf)
                            .with_context(at)?;
                        if n == 0 {
                            break;
                        }
                        offset += n as u64;
                    }
                    if offset != st.size_bytes {
                        bail!(
                            "aios check {}:{child}: read {offset} of {} bytes",
                            image.display(),
                            st.size_bytes
                        );
                    }
                    counts.1 += 1;
                    counts.3 += offset;
                }
                _ => {}
            }
        }
    }
    drop(io);
    drop(fs);
    println!(
        "aios: {}: {} directories, {} files ({} bytes), {} symlinks read back without error",
        image.display(),
        counts.0,
        counts.1,
        counts.3,
        counts.2
    );
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(image)
        .output()
        .context("run e2fsck -fn (apt-get install e2fsprogs)")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    print!("e2fsck -fn: {text}");
    if out.status.code() != Some(0) {
        bail!(
            "e2fsck -fn {} exited with {:?}: the image has problems",
            image.display(),
            out.status.code()
        );
    }
    Ok(())
}

/// `aios mkfs IMAGE --size SIZE [-d DIR]`: runs mke2fs with the supported features, then mounts
/// the result to prove aios reads it.
pub fn mkfs(image: &Path, size_bytes: u64, populate_from: Option<&Path>) -> Result<()> {
    if size_bytes < (8 << 20) {
        bail!("--size {size_bytes}: an ext4 image with a journal needs at least 8M");
    }
    make_ext4(image, size_bytes, populate_from)?;
    let (fs, _io) = mount(image)?;
    let sb = fs.superblock();
    println!(
        "{}: ext4, {} blocks of {} bytes, {} inodes, {} groups, features: {}",
        image.display(),
        sb.blocks_count,
        sb.block_size_bytes,
        sb.inodes_count,
        sb.group_count(),
        sb.feature_list().join(" ")
    );
    Ok(())
}

/// The journal superblock in a line: size, features, sequence, state.
fn journal_summary(fs: &Mounted, io: &mut Io, ino: u32) -> Result<String> {
    let file = fs.open(io, ino)?;
    let mut raw = vec![0u8; aios_journal::format::superblock::SUPERBLOCK_SIZE_BYTES];
    let n = fs.read_at(io, &file, 0, &mut raw)?;
    let jsb = aios_journal::format::superblock::JournalSuperblock::decode(
        raw.get(..n).unwrap_or_default(),
    )?;
    let state = if jsb.needs_recovery() {
        format!("needs recovery from block {}", jsb.start_block)
    } else {
        "clean".to_string()
    };
    let features = match jsb.features.names() {
        names if names.is_empty() => "none".to_string(),
        names => names,
    };
    Ok(format!(
        "{} blocks ({}), journal features {features}, next sequence {}, {state}",
        jsb.maxlen_blocks,
        show_size(u64::from(jsb.maxlen_blocks) * u64::from(jsb.block_size_bytes)),
        jsb.sequence,
    ))
}

/// `aios info IMAGE`: superblock, groups and journal summary.
pub fn info(image: &Path) -> Result<()> {
    let (fs, mut io) = mount(image)?;
    let sb = fs.superblock();
    let mut out = std::io::stdout().lock();
    writeln!(out, "image:            {}", image.display())?;
    writeln!(out, "volume name:      {}", sb.volume_name_lossy())?;
    writeln!(out, "uuid:             {}", sb.uuid_string())?;
    writeln!(out, "block size:       {}", sb.block_size_bytes)?;
    writeln!(
        out,
        "blocks:           {} ({} free)",
        sb.blocks_count, sb.free_blocks_count
    )?;
    writeln!(
        out,
        "inodes:           {} ({} free), {} bytes each",
        sb.inodes_count, sb.free_inodes_count, sb.inode_size_bytes
    )?;
    writeln!(
        out,
        "groups:           {} ({} blocks, {} inodes each)",
        sb.group_count(),
        sb.blocks_per_group,
        sb.inodes_per_group
    )?;
    writeln!(out, "features:         {}", sb.feature_list().join(" "))?;
    if sb.has_journal() {
        let summary = journal_summary(&fs, &mut io, sb.journal_inum)
            .with_context(|| format!("journal inode {}", sb.journal_inum))?;
        writeln!(
            out,
            "journal:          inode {}, {summary}",
            sb.journal_inum
        )?;
    } else {
        writeln!(out, "journal:          none")?;
    }
    writeln!(
        out,
        "group  block-bitmap  inode-bitmap  inode-table  free-blocks  free-inodes  flags"
    )?;
    for g in fs.groups() {
        writeln!(
            out,
            "{:>5}  {:>12}  {:>12}  {:>11}  {:>11}  {:>11}  {:#06x}",
            g.group,
            g.block_bitmap_block,
            g.inode_bitmap_block,
            g.inode_table_block,
            g.free_blocks_count,
            g.free_inodes_count,
            g.flags
        )?;
    }
    Ok(())
}

/// `aios ls IMAGE [PATH...]`: one line per entry, `ls -l` style; a file lists itself.
pub fn ls(image: &Path, paths: &[String]) -> Result<()> {
    let (fs, mut io) = mount(image)?;
    let paths = if paths.is_empty() {
        vec!["/".to_string()]
    } else {
        paths.to_vec()
    };
    let mut out = std::io::stdout().lock();
    for path in &paths {
        let ino = fs
            .lookup_follow(&mut io, path)
            .with_context(|| format!("{}:{path}", image.display()))?;
        let st = fs
            .stat(&mut io, ino)
            .with_context(|| format!("{}:{path}", image.display()))?;
        if paths.len() > 1 {
            writeln!(out, "{path}:")?;
        }
        if !is_dir(&st) {
            writeln!(out, "{}", long_line(&fs, &mut io, &st, path.as_bytes())?)?;
            continue;
        }
        let mut entries = fs
            .read_dir(&mut io, ino)
            .with_context(|| format!("{}:{path}", image.display()))?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        for e in entries {
            let st = fs.stat(&mut io, e.ino).with_context(|| {
                format!(
                    "{}:{path}/{}",
                    image.display(),
                    String::from_utf8_lossy(&e.name)
                )
            })?;
            writeln!(out, "{}", long_line(&fs, &mut io, &st, &e.name)?)?;
        }
    }
    Ok(())
}

/// `aios stat IMAGE PATH...`.
pub fn stat(image: &Path, paths: &[String]) -> Result<()> {
    let (fs, mut io) = mount(image)?;
    let mut out = std::io::stdout().lock();
    for path in paths {
        let ino = fs
            .lookup(&mut io, path)
            .with_context(|| format!("{}:{path}", image.display()))?;
        let st = fs
            .stat(&mut io, ino)
            .with_context(|| format!("{}:{path}", image.display()))?;
        writeln!(out, "  File: {path}")?;
        writeln!(
            out,
            "  Size: {:<12} Blocks: {:<10} Inode: {:<8} Links: {}",
            st.size_bytes, st.blocks_512, st.ino, st.nlink
        )?;
        writeln!(
            out,
            "Access: ({:04o}/{})  Uid: {}  Gid: {}",
            st.mode & 0o7777,
            mode_string(st.mode),
            st.uid,
            st.gid
        )?;
        writeln!(out, "Access: {}", show_time(st.atime))?;
        writeln!(out, "Modify: {}", show_time(st.mtime))?;
        writeln!(out, "Change: {}", show_time(st.ctime))?;
        if let Some(crtime) = st.crtime {
            writeln!(out, " Birth: {}", show_time(crtime))?;
        }
    }
    Ok(())
}

/// `aios cat IMAGE PATH...`: the files' bytes to standard output.
pub fn cat(image: &Path, paths: &[String]) -> Result<()> {
    let (fs, mut io) = mount(image)?;
    let mut out = std::io::stdout().lock();
    for path in paths {
        copy_file(&fs, &mut io, image, path, &mut out)?;
    }
    out.flush()?;
    Ok(())
}

/// `aios get IMAGE PATH [DEST]`: copies one file out of the image (DEST defaults to its name).
pub fn get(image: &Path, path: &str, dest: Option<&Path>) -> Result<()> {
    let (fs, mut io) = mount(image)?;
    let dest: PathBuf = match dest {
        Some(d) => d.to_path_buf(),
        None => Path::new(path)
            .file_name()
            .map(PathBuf::from)
            .with_context(|| format!("{path}: no file name; give DEST"))?,
    };
    let mut file =
        std::fs::File::create(&dest).with_context(|| format!("create {}", dest.display()))?;
    copy_file(&fs, &mut io, image, path, &mut file)?;
    file.sync_all()
        .with_context(|| format!("sync {}", dest.display()))?;
    Ok(())
}

fn copy_file(
    fs: &Mounted,
    io: &mut Io,
    image: &Path,
    path: &str,
    out: &mut dyn Write,
) -> Result<()> {
    let at = || format!("{}:{path}", image.display());
    let ino = fs.lookup_follow(io, path).with_context(at)?;
    let file = fs.open(io, ino).with_context(at)?;
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut offset = 0u64;
    loop {
        let n = fs.read_at(io, &file, offset, &mut buf).with_context(at)?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(buf.get(..n).unwrap_or(&buf))
            .context("write output")?;
        offset += n as u64;
    }
}

fn is_dir(st: &Stat) -> bool {
    st.mode & 0o170000 == 0o040000
}

fn long_line(fs: &Mounted, io: &mut Io, st: &Stat, name: &[u8]) -> Result<String> {
    let mut line = format!(
        "{} {:>3} {:>5} {:>5} {:>10} {} {}",
        mode_string(st.mode),
        st.nlink,
        st.uid,
        st.gid,
        st.size_bytes,
        show_time(st.mtime),
        String::from_utf8_lossy(name)
    );
    if st.mode & 0o170000 == 0o120000 {
        let target = fs.read_link(io, st.ino)?;
        line.push_str(" -> ");
        line.push_str(&String::from_utf8_lossy(&target));
    }
    Ok(line)
}

/// `drwxr-xr-x` from `st_mode`.
pub fn mode_string(mode: u16) -> String {
    let kind = match mode & 0o170000 {
        0o040000 => 'd',
        0o120000 => 'l',
        0o100000 => '-',
        0o020000 => 'c',
        0o060000 => 'b',
        0o010000 => 'p',
        0o140000 => 's',
        _ => '?',
    };
    let mut s = String::with_capacity(10);
    s.push(kind);
    for (shift, setid, sticky_char) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        let special = mode & setid != 0;
        s.push(match (bits & 1 != 0, special) {
            (true, true) => sticky_char,
            (false, true) => sticky_char.to_ascii_uppercase(),
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// `2026-11-24 09:17:31.123456789 UTC`.
fn show_time(t: Timestamp) -> String {
    let days = t.secs.div_euclid(86_400);
    let secs_of_day = t.secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);
    format!(
        "{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}.{:09} UTC",
        t.nanos
    )
}

/// Gregorian (year, month, day) of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::{mode_string, show_time};
    use aios_fs::Timestamp;

    #[test]
    fn times_print_as_utc() {
        assert_eq!(
            show_time(Timestamp { secs: 0, nanos: 0 }),
            "1970-01-01 00:00:00.000000000 UTC"
        );
        assert_eq!(
            show_time(Timestamp {
                secs: 951_782_400,
                nanos: 5
            }),
            "2000-02-29 00:00:00.000000005 UTC"
        );
        assert_eq!(
            show_time(Timestamp {
                secs: 1_795_517_470,
                nanos: 0
            }),
            "2026-11-24 10:51:10.000000000 UTC"
        );
        assert_eq!(
            show_time(Timestamp { secs: -1, nanos: 0 }),
            "1969-12-31 23:59:59.000000000 UTC"
        );
    }

    #[test]
    fn mode_strings_match_ls() {
        assert_eq!(mode_string(0o040755), "drwxr-xr-x");
        assert_eq!(mode_string(0o100644), "-rw-r--r--");
        assert_eq!(mode_string(0o120777), "lrwxrwxrwx");
        assert_eq!(mode_string(0o104755), "-rwsr-xr-x");
        assert_eq!(mode_string(0o041777), "drwxrwxrwt");
    }
}
