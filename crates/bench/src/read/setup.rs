//! `aios bench read` set-up: the source data file, the ext4 image made from it, and mounts.

use super::*;

/// Makes (or reuses) the source file and the image.
pub(super) fn prepare(args: &ReadArgs) -> Result<Setup> {
    let data = args.src.join(DATA_NAME);
    std::fs::create_dir_all(&args.src).with_context(|| format!("create {}", args.src.display()))?;
    let data_ok = std::fs::metadata(&data).is_ok_and(|m| m.len() == args.file_size);
    if !data_ok {
        if data.exists() {
            std::fs::remove_file(&data).with_context(|| format!("remove {}", data.display()))?;
        }
        scratch::ensure(&data, args.file_size)?;
    }
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let image_ok = data_ok
        && mtime(&args.image) >= mtime(&data)
        && image_data_size(&args.image).ok() == Some(args.file_size);
    if !image_ok {
        make_image(&args.image, &args.src, args.file_size)?;
        let size = image_data_size(&args.image)?;
        if size != args.file_size {
            bail!(
                "{}:/{DATA_NAME} has {size} bytes, expected {}",
                args.image.display(),
                args.file_size
            );
        }
    }
    Ok(Setup {
        image: args.image.clone(),
        data,
        file_size: args.file_size,
        hot_set: args.hot_set.clamp(IO_BYTES_MAX as u64, args.file_size) / PAGE * PAGE,
        cache_pages: aios_fs::mount::CACHE_PAGES_DEFAULT,
        mounts: setup_mounts(args),
        targets: Vec::new(),
    })
}

pub(super) fn make_image(image: &Path, src: &Path, file_size: u64) -> Result<()> {
    let size = (file_size + file_size / 8 + (64 << 20)).div_ceil(1 << 20) << 20;
    eprintln!(
        "aios: making a {} ext4 image at {} from {} (once)",
        show_size(size),
        image.display(),
        src.display()
    );
    if image.exists() {
        std::fs::remove_file(image).with_context(|| format!("remove {}", image.display()))?;
    }
    Ok(make_ext4(image, size, Some(src))?)
}

/// The size of `/data` in `image`, read by aios.
pub(super) fn image_data_size(image: &Path) -> Result<u64> {
    let fs = mount(image, MountOptions::default(), 1)?;
    let mut io = fs.io()?;
    let ino = fs.lookup(&mut io, format!("/{DATA_NAME}"))?;
    Ok(fs.open(&mut io, ino)?.size_bytes())
}

/// Mounts `image` read-only, shared with the kernel (the benchmark's own reads only).
pub(super) fn mount(
    image: &Path,
    options: MountOptions,
    threads: usize,
) -> Result<Fs<UringDevice>> {
    let per_thread = options.pool_pages + 256;
    let pages = options.cache_pages + threads * per_thread + 1024;
    let arena_bytes = (pages * BLOCK_SIZE).clamp(64 << 20, 1 << 30);
    let config = UringConfig {
        target: TargetOptions {
            read_only: true,
            exclusive: false,
        },
        arena_bytes,
        ..UringConfig::default()
    };
    let device =
        UringDevice::open(image, config).with_context(|| format!("open {}", image.display()))?;
    Fs::mount(device, options).with_context(|| format!("mount {}", image.display()))
}
