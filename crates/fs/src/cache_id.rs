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

/// Pages of an ext4 file lie below this (a logical block number is 32 bits): a read at or past
/// it is a hole, and is never looked up in the cache.
pub(crate) const FILE_PAGES_MAX: u64 = 1 << 32;

impl CacheId {
    /// The cache key of file page `page` (below [`FILE_PAGES_MAX`]). The epoch's low half rides
    /// above the inode number, multiplied by an odd constant (a bijection, so keys stay unique)
    /// so that the cache's hash does not map epoch `e`, page `p` and epoch `p`, page `e` alike;
    /// its high half rides above the page. A key never repeats for one inode.
    pub(crate) fn key(self, page: u64) -> aios_cache::Key {
        debug_assert!(page < FILE_PAGES_MAX, "page {page} beyond an ext4 file");
        let epoch_low = (self.epoch & 0xffff_ffff).wrapping_mul(0x9e37_79b9) & 0xffff_ffff;
        aios_cache::Key::new(
            u64::from(self.ino) | epoch_low << 32,
            (page & 0xffff_ffff) | (self.epoch >> 32) << 32,
        )
    }
}
