//! Seed corpora for every target: real ext4 structures cut out of a `mke2fs` image
//! ([`ext4`]), and small journals laid out with our own encoders ([`journal`]), among them the
//! e2fsprogs journal test cases.

pub mod ext4;
pub mod journal;

/// The seeds of target `name` (see [`crate::TARGETS`]): `ext4` (from [`ext4::from_image`]) for
/// the ext4 targets, the synthesized journals for the journal targets.
pub fn corpus(name: &str, ext4: &ext4::Ext4Seeds) -> Vec<Vec<u8>> {
    let cases = journal::cases();
    match name {
        "superblock" => ext4.superblock.clone(),
        "group_desc" => ext4.group_desc.clone(),
        "inode" => ext4.inode.clone(),
        "extent_node" => ext4.extent_node.clone(),
        "dir_block" => ext4.dir_block.clone(),
        "dx_block" => ext4.dx_block.clone(),
        "journal_superblock" => cases.iter().map(|c| c.log[..1024].to_vec()).collect(),
        "journal_descriptor" => journal::blocks_of_kind(&cases, journal::Kind::Descriptor),
        "journal_commit" => journal::blocks_of_kind(&cases, journal::Kind::Commit),
        "journal_revoke" => journal::blocks_of_kind(&cases, journal::Kind::Revoke),
        "journal_recovery" => cases.into_iter().map(|c| c.log).collect(),
        _ => Vec::new(),
    }
}
