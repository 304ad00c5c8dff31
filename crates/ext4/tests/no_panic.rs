//! Decoding never panics: random bytes of random lengths into every decoder, and every single-bit
//! flip of real structures (superblock, group descriptor, inodes, extent root and block, directory
//! blocks). With checksums on, every single-bit flip must also be detected (crc32c catches all
//! single-bit errors; the 16-bit group descriptor checksum is only required not to panic).

mod common;

use aios_ext4::format::csum::crc32c_raw;
use aios_ext4::format::dir::{dir_entries, verify_dir_tail};
use aios_ext4::format::extent::{verify_extent_tail, ExtentNode};
use aios_ext4::format::group::GroupDesc;
use aios_ext4::format::inode::Inode;
use aios_ext4::format::superblock::{Superblock, S_CHECKSUM};
use aios_ext4::Location;
use common::{build, have_e2fsprogs, Image};

/// xorshift64*: deterministic, seedable, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Run every decoder over `buf`, as every structure, ignoring results.
fn decode_all(buf: &[u8]) {
    let _ = Superblock::decode(buf);
    for desc_size in [0u16, 32, 64, 1024] {
        let _ = GroupDesc::decode(buf, 3, desc_size, 1 << 20, Some(7));
        let _ = GroupDesc::decode(buf, 3, desc_size, 1 << 20, None);
    }
    let _ = Inode::decode(buf, 12, Some(7));
    let _ = Inode::decode(buf, 12, None);
    let _ = ExtentNode::decode(buf, Location::ExtentRoot { ino: 12 }, 1 << 20);
    let _ = verify_extent_tail(buf, Location::ExtentBlock { ino: 12, block: 9 }, 7);
    for tail in [false, true] {
        let _ = dir_entries(buf, Location::DirBlock { ino: 2, block: 9 }, tail).count();
    }
    let _ = verify_dir_tail(buf, Location::DirBlock { ino: 2, block: 9 }, 7);
}

#[test]
fn random_bytes_never_panic() {
    let seed = 0x5EED_0000_0000_0001u64;
    eprintln!("random_bytes_never_panic seed {seed:#x}");
    let mut rng = Rng(seed);
    for round in 0..4000 {
        let len = match round % 4 {
            0 => (rng.next() % 80) as usize,
            1 => 1024,
            2 => 4096,
            _ => (rng.next() % 5000) as usize,
        };
        let mut buf = rng.bytes(len);
        // Plant plausible magics so decoders get past their first check.
        if buf.len() >= 0x3A && round % 3 == 0 {
            buf[0x38..0x3A].copy_from_slice(&0xEF53u16.to_le_bytes());
        }
        if buf.len() >= 2 && round % 3 == 1 {
            buf[0..2].copy_from_slice(&0xF30Au16.to_le_bytes());
            if buf.len() >= 8 {
                buf[4..6].copy_from_slice(&((rng.next() % 400) as u16).to_le_bytes());
                buf[6..8].copy_from_slice(&((rng.next() % 7) as u16).to_le_bytes());
            }
        }
        decode_all(&buf);
    }
}

/// Every single-bit flip of `original`, passed to `check`.
fn each_flip(original: &[u8], mut check: impl FnMut(&[u8], usize)) {
    let mut buf = original.to_vec();
    for bit in 0..original.len() * 8 {
        buf[bit / 8] ^= 1 << (bit % 8);
        check(&buf, bit);
        buf[bit / 8] ^= 1 << (bit % 8);
    }
}

#[test]
fn every_bit_flip_of_real_metadata_is_an_error_or_decodes() {
    if !have_e2fsprogs("every_bit_flip_of_real_metadata_is_an_error_or_decodes") {
        return;
    }
    let fx = build(&["-g", "8192"]);
    let img = Image::open(&fx.image);
    let sb = &img.sb;
    let seed = sb.verify_seed().unwrap();

    // Clearing the metadata_csum bit itself turns verification off (as in the kernel); every other
    // flip must be caught.
    let metadata_csum_bit = 0x64 * 8 + 10;
    each_flip(img.superblock_bytes(), |buf, bit| {
        let decoded = Superblock::decode(buf);
        assert!(
            decoded.is_err() || bit == metadata_csum_bit,
            "superblock bit {bit} undetected"
        );
        let mut resealed = buf.to_vec();
        let crc = crc32c_raw(!0, &resealed[..S_CHECKSUM]);
        resealed[S_CHECKSUM..].copy_from_slice(&crc.to_le_bytes());
        let _ = Superblock::decode(&resealed);
    });

    for group in 0..sb.group_count() {
        each_flip(img.group_desc_bytes(group), |buf, _| {
            let _ = GroupDesc::decode(buf, group, sb.desc_size_bytes, sb.blocks_count, Some(seed));
            let _ = GroupDesc::decode(buf, group, sb.desc_size_bytes, sb.blocks_count, None);
        });
    }

    for path in [
        "/",
        "/hello.txt",
        "/fast_link",
        "/sparse",
        "/many",
        "/sub/big.bin",
    ] {
        let ino = img.lookup(path);
        let inode = img.inode(ino);
        each_flip(img.inode_bytes(ino), |buf, bit| {
            assert!(
                Inode::decode(buf, ino, Some(seed)).is_err(),
                "{path} inode bit {bit} undetected"
            );
            if let Ok(decoded) = Inode::decode(buf, ino, None) {
                let _ = ExtentNode::decode(
                    &decoded.block,
                    Location::ExtentRoot { ino },
                    sb.blocks_count,
                );
            }
        });
        each_flip(&inode.block, |buf, _| {
            let _ = ExtentNode::decode(buf, Location::ExtentRoot { ino }, sb.blocks_count);
        });
        let inode_seed = inode.csum_seed(seed);
        let node_blocks = if inode.uses_extents() {
            img.extent_node_blocks(&inode)
        } else {
            Vec::new()
        };
        for node_block in node_blocks {
            let at = Location::ExtentBlock {
                ino,
                block: node_block,
            };
            each_flip(img.block(node_block), |buf, bit| {
                assert!(
                    verify_extent_tail(buf, at, inode_seed).is_err(),
                    "{path} extent block bit {bit} undetected"
                );
                let _ = ExtentNode::decode(buf, at, sb.blocks_count);
            });
        }
        if inode.is_dir() {
            for dir_block in img.dir_blocks(&inode) {
                let at = Location::DirBlock {
                    ino,
                    block: dir_block,
                };
                each_flip(img.block(dir_block), |buf, bit| {
                    assert!(
                        verify_dir_tail(buf, at, inode_seed).is_err(),
                        "{path} dir block bit {bit} undetected"
                    );
                    for entry in dir_entries(buf, at, true).flatten() {
                        assert!(entry.offset_bytes + usize::from(entry.rec_len) <= buf.len() - 12);
                    }
                });
            }
        }
    }
}
