//! jbd2 on-disk structures, one file each. All jbd2 fields are **big-endian**.
//!
//! | Module | Structure | Checksum (csum v2/v3, crc32c, seed = crc32c(~0, `s_uuid`)) |
//! | --- | --- | --- |
//! | [`superblock`] | `journal_superblock_t`, journal block 0, 1024 bytes | `s_checksum` at `0xFC`, seed `~0`, over 1024 bytes |
//! | [`header`] | `journal_header_t`, 12 bytes opening every block | none |
//! | [`descriptor`] | descriptor block: header, `journal_block_tag3_t`/`_tag_t` tags, 16-byte UUID after the first | tail (last 4 bytes) over the block; per tag over the data block seeded by the sequence |
//! | [`commit`] | `commit_header` | `h_chksum[0]` at `0x10` over the block |
//! | [`revoke`] | `jbd2_journal_revoke_header_t` + 4/8-byte records | tail (last 4 bytes) over the block |
//!
//! [`features`] names the feature bits and derives the [`features::JournalFormat`] (tag size,
//! checksum version) every encoder and decoder follows; [`csum`] holds the crc32c convention;
//! `bytes` the bounds-checked big-endian accessors everything reads and writes through.

mod bytes;
pub mod commit;
pub mod csum;
pub mod descriptor;
pub mod features;
pub mod header;
pub mod revoke;
pub mod superblock;

/// Size of every journal block this crate handles.
pub const BLOCK_SIZE_BYTES: usize = 4096;

/// One journal (or file system) block.
pub type Block = [u8; BLOCK_SIZE_BYTES];
