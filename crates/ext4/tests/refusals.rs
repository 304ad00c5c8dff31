//! Corruption and refusal on real images: a damaged structure is a typed error naming it and its
//! block or inode; features outside the supported set are refused by name; a journal that needs
//! recovery is reported as such; block sizes other than 4 KiB are refused.

mod common;

use aios_ext4::format::csum::crc32c_raw;
use aios_ext4::format::dir::{dir_entries, verify_dir_tail};
use aios_ext4::format::extent::{verify_extent_tail, ExtentNode};
use aios_ext4::format::group::GroupDesc;
use aios_ext4::format::inode::Inode;
use aios_ext4::format::superblock::{incompat, ro_compat, Superblock, S_CHECKSUM};
use aios_ext4::{FeatureKind, FormatError, Location};
use common::{build, have_e2fsprogs, Image};

/// Recompute the superblock checksum after editing it.
fn reseal(sb: &mut [u8]) {
    let crc = crc32c_raw(!0, &sb[..S_CHECKSUM]);
    sb[S_CHECKSUM..S_CHECKSUM + 4].copy_from_slice(&crc.to_le_bytes());
}

fn set_le32(buf: &mut [u8], offset: usize, value: u32) {
    buf[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

fn le32(buf: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(buf[offset..offset + 4].try_into().unwrap())
}

const S_FEATURE_INCOMPAT: usize = 0x60;
const S_FEATURE_RO_COMPAT: usize = 0x64;

#[test]
fn feature_refusals_name_the_features() {
    if !have_e2fsprogs("feature_refusals_name_the_features") {
        return;
    }
    let fx = build(&[]);
    let img = Image::open(&fx.image);
    let base = img.superblock_bytes().to_vec();

    let mut sb = base.clone();
    set_le32(
        &mut sb,
        S_FEATURE_INCOMPAT,
        le32(&base, S_FEATURE_INCOMPAT) | incompat::INLINE_DATA | incompat::CASEFOLD,
    );
    reseal(&mut sb);
    match Superblock::decode(&sb) {
        Err(FormatError::UnsupportedFeature {
            kind: FeatureKind::Incompat,
            names,
            ..
        }) => {
            assert_eq!(names, "inline_data casefold");
        }
        other => panic!("expected unsupported incompat, got {other:?}"),
    }

    let mut sb = base.clone();
    set_le32(
        &mut sb,
        S_FEATURE_RO_COMPAT,
        le32(&base, S_FEATURE_RO_COMPAT) | ro_compat::BIGALLOC | 0x8000_0000,
    );
    reseal(&mut sb);
    let err = Superblock::decode(&sb).unwrap_err();
    assert!(
        err.to_string()
            .contains("ro_compat features: bigalloc FEATURE_0x80000000"),
        "{err}"
    );

    let mut sb = base.clone();
    set_le32(
        &mut sb,
        S_FEATURE_INCOMPAT,
        le32(&base, S_FEATURE_INCOMPAT) | incompat::RECOVER,
    );
    reseal(&mut sb);
    assert_eq!(
        Superblock::decode(&sb),
        Err(FormatError::JournalNeedsRecovery)
    );
    assert!(FormatError::JournalNeedsRecovery
        .to_string()
        .contains("journal needs recovery"));

    // An unknown compat feature is fine.
    let mut sb = base.clone();
    set_le32(&mut sb, 0x5C, le32(&base, 0x5C) | 0x4000_0000);
    reseal(&mut sb);
    assert!(Superblock::decode(&sb).is_ok());
}

#[test]
fn real_images_with_unsupported_formats_are_refused() {
    if !have_e2fsprogs("real_images_with_unsupported_formats_are_refused") {
        return;
    }
    let read_sb = |args: &[&str]| {
        let fx = build(args);
        let bytes = std::fs::read(&fx.image).unwrap();
        Superblock::decode(&bytes[1024..2048])
    };
    match read_sb(&["-O", "inline_data"]) {
        Err(FormatError::UnsupportedFeature { names, .. }) => assert_eq!(names, "inline_data"),
        other => panic!("inline_data image: {other:?}"),
    }
    match read_sb(&["-O", "bigalloc", "-C", "16384"]) {
        Err(FormatError::UnsupportedFeature {
            kind: FeatureKind::RoCompat,
            names,
            ..
        }) => assert_eq!(names, "bigalloc"),
        other => panic!("bigalloc image: {other:?}"),
    }
    // `-b 1024` is overridden by the explicit `-b 4096` in build, so edit the field instead.
    let fx = build(&[]);
    let mut sb = std::fs::read(&fx.image).unwrap()[1024..2048].to_vec();
    set_le32(&mut sb, 0x18, 0);
    reseal(&mut sb);
    match Superblock::decode(&sb) {
        Err(FormatError::FieldOutOfRange {
            field: "s_log_block_size",
            value: 0,
            ..
        }) => {}
        other => panic!("1 KiB blocks: {other:?}"),
    }
}

#[test]
fn corruption_is_a_checksum_error_naming_the_structure() {
    if !have_e2fsprogs("corruption_is_a_checksum_error_naming_the_structure") {
        return;
    }
    let fx = build(&[]);
    let img = Image::open(&fx.image);
    let seed = img.sb.verify_seed().unwrap();

    let mut sb = img.superblock_bytes().to_vec();
    sb[0x10] ^= 1;
    assert!(matches!(
        Superblock::decode(&sb),
        Err(FormatError::ChecksumMismatch {
            at: Location::Superblock,
            ..
        })
    ));

    let mut gd = img.group_desc_bytes(0).to_vec();
    gd[0xC] ^= 0x40;
    let err = GroupDesc::decode(
        &gd,
        0,
        img.sb.desc_size_bytes,
        img.sb.blocks_count,
        Some(seed),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            FormatError::ChecksumMismatch {
                at: Location::GroupDesc { group: 0 },
                ..
            }
        ),
        "{err}"
    );
    // Decoding the same descriptor as group 1 fails too: the group number is in the checksum.
    let good = img.group_desc_bytes(0);
    assert!(GroupDesc::decode(
        good,
        1,
        img.sb.desc_size_bytes,
        img.sb.blocks_count,
        Some(seed)
    )
    .is_err());

    let ino = img.lookup("/hello.txt");
    let mut raw = img.inode_bytes(ino).to_vec();
    raw[0x4] ^= 0x1;
    let err = Inode::decode(&raw, ino, Some(seed)).unwrap_err();
    assert!(
        matches!(err, FormatError::ChecksumMismatch { at: Location::Inode { ino: i }, .. } if i == ino),
        "{err}"
    );
    // The same bytes decoded as another inode number fail: the number is in the seed.
    assert!(Inode::decode(img.inode_bytes(ino), ino + 1, Some(seed)).is_err());

    let sparse = img.inode(img.lookup("/sparse"));
    let node_block = img.extent_node_blocks(&sparse)[0];
    let mut block = img.block(node_block).to_vec();
    let at = Location::ExtentBlock {
        ino: sparse.ino,
        block: node_block,
    };
    verify_extent_tail(&block, at, sparse.csum_seed(seed)).unwrap();
    block[20] ^= 0x2;
    let err = verify_extent_tail(&block, at, sparse.csum_seed(seed)).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "extent block {node_block} of inode {}",
            sparse.ino
        )),
        "{err}"
    );

    let root = img.inode(2);
    let root_block = img.dir_blocks(&root)[0];
    let at = Location::DirBlock {
        ino: 2,
        block: root_block,
    };
    let mut block = img.block(root_block).to_vec();
    block[8] ^= 0x4; // the name "."
    assert!(matches!(
        verify_dir_tail(&block, at, root.csum_seed(seed)),
        Err(FormatError::ChecksumMismatch { .. })
    ));
    // A rec_len pointing past the block is a range error, not a panic.
    let mut block = img.block(root_block).to_vec();
    block[4..6].copy_from_slice(&5000u16.to_le_bytes());
    let results: Vec<_> = dir_entries(&block, at, true).collect();
    assert_eq!(results.len(), 1);
    assert!(matches!(
        results[0],
        Err(FormatError::FieldOutOfRange {
            field: "rec_len",
            ..
        })
    ));

    let mut iblock = sparse.block;
    iblock[0] = 0;
    let err = ExtentNode::decode(
        &iblock,
        Location::ExtentRoot { ino: sparse.ino },
        img.sb.blocks_count,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            FormatError::BadMagic {
                expected: 0xF30A,
                ..
            }
        ),
        "{err}"
    );
}
