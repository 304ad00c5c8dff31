//! [`CacheId`]: whose pages a file's reads find in the page cache, and their keys. A leaf: file
//! handles, the read path and readahead name it.

/// Which pages of the page cache a file's reads use: its inode's, in the *epoch* of its data.
/// A read-only mount's files are always in epoch 0. A read-write mount bumps an inode's epoch
/// whenever an operation changes it, so a page read before a change (by a read planned before
/// it, or by readahead) is keyed in an older epoch and never found after the change: it is
/// unreachable, and CLOCK evicts it in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CacheId {
    pub(crate) ino: u32,
    pub(crate) epoch: u64,
}

impl CacheId {
    /// The cache key of file page `page`. Pages of an ext4 file are below 2^32 (a logical block
    /// is 32 bits), so the epoch's high half rides above the page and the key never repeats
    /// for one inode, however many epochs pass.
    pub(crate) fn key(self, page: u64) -> aios_cache::Key {
        debug_assert!(page >> 32 == 0, "page {page} beyond an ext4 file");
        let epoch_low = self.epoch & 0xffff_ffff;
        aios_cache::Key::new(
            u64::from(self.ino) | epoch_low << 32,
            (page & 0xffff_ffff) | (self.epoch >> 32) << 32,
        )
    }
}
