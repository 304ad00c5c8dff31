//! jbd2 checksums: crc32c in the kernel's raw convention (`jbd2_chksum(seed, data)` =
//! `crc32c_le(seed, data)`, no inversion on entry or exit), the same convention as ext4's
//! `metadata_csum` (`aios_ext4::format::csum`).
//!
//! Seeds (include/linux/jbd2.h, fs/jbd2/journal.c):
//! - journal superblock: `raw(~0, superblock with s_checksum = 0)`;
//! - everything else: `j_csum_seed = raw(~0, s_uuid)`;
//! - a data block tag: `raw(raw(j_csum_seed, be32 sequence), data block as logged)`; csum v2
//!   keeps its low 16 bits.

/// `crc32c_le(seed, data)` as the kernel computes it.
pub fn crc32c_raw(seed: u32, data: &[u8]) -> u32 {
    !crc32c::crc32c_append(!seed, data)
}

/// The journal checksum seed, `j_csum_seed`, from the superblock's `s_uuid`.
pub fn journal_csum_seed(uuid: &[u8; 16]) -> u32 {
    crc32c_raw(!0, uuid)
}

/// The checksum of a logged data block of transaction `sequence` (v3: all 32 bits are stored).
pub fn data_block_csum(seed: u32, sequence: u32, logged: &[u8]) -> u32 {
    crc32c_raw(crc32c_raw(seed, &sequence.to_be_bytes()), logged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_is_standard_crc32c_without_inversions() {
        assert_eq!(!crc32c_raw(!0, b"123456789"), 0xE306_9283);
        assert_eq!(
            crc32c_raw(crc32c_raw(5, b"ab"), b"cd"),
            crc32c_raw(5, b"abcd")
        );
    }
}
