//! ext4 `metadata_csum` checksums: crc32c in the kernel's "raw" convention.
//!
//! The kernel's `ext4_chksum(seed, data)` is `crc32c_le(seed, data)`: no inversion on entry or
//! exit, unlike the standard CRC-32C that the `crc32c` crate computes (which inverts both). So
//! `raw(seed, data) = !crc32c_append(!seed, data)`.
//!
//! Seeds (Documentation/filesystems/ext4/checksums.rst):
//! - file system seed: `s_checksum_seed` if incompat `csum_seed` is set, else `raw(!0, s_uuid)`;
//! - per-inode seed: `raw(raw(fs_seed, le32 ino), le32 i_generation)`, used by the inode itself,
//!   its extent blocks and its directory blocks.

/// `crc32c_le(seed, data)` as the kernel computes it (no pre/post inversion).
pub fn crc32c_raw(seed: u32, data: &[u8]) -> u32 {
    !crc32c::crc32c_append(!seed, data)
}

/// The per-inode checksum seed for inode `ino` with generation `generation`.
pub fn inode_csum_seed(fs_csum_seed: u32, ino: u32, generation: u32) -> u32 {
    let seed = crc32c_raw(fs_csum_seed, &ino.to_le_bytes());
    crc32c_raw(seed, &generation.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_convention_matches_standard_crc32c_with_inversions() {
        // Standard CRC-32C check value of "123456789" is 0xE3069283.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(!crc32c_raw(!0, b"123456789"), 0xE306_9283);
        // Chaining raw calls equals one raw call over the concatenation.
        let whole = crc32c_raw(7, b"abcdef");
        assert_eq!(crc32c_raw(crc32c_raw(7, b"abc"), b"def"), whole);
    }
}
