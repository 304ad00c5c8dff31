//! The scratch image the default benchmark reads: a file of real data, so every read reaches the
//! device (holes and unwritten extents would be answered from metadata without I/O).

use anyhow::{Context, Result};
use rand::{rngs::SmallRng, RngCore, SeedableRng};
use std::io::Write;
use std::path::Path;

/// Creates `path` with `bytes` of random data unless it already has at least that many.
pub fn ensure(path: &Path, bytes: u64) -> Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() >= bytes) {
        return Ok(());
    }
    eprintln!(
        "aios: writing a {} MiB scratch image at {} (once)",
        bytes >> 20,
        path.display()
    );
    let mut file =
        std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut rng = SmallRng::seed_from_u64(42);
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        rng.fill_bytes(&mut chunk[..n]);
        file.write_all(&chunk[..n])
            .with_context(|| format!("write {}", path.display()))?;
        left -= n as u64;
    }
    file.sync_all()
        .with_context(|| format!("sync {}", path.display()))?;
    Ok(())
}
