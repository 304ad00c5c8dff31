//! Superblock feature flags: named constants for `s_feature_compat`, `s_feature_incompat` and
//! `s_feature_ro_compat`, their kernel/e2fsprogs names, and the sets this crate supports.
//!
//! Supported incompat and ro_compat features are exactly `mke2fs -t ext4`'s defaults on the
//! reference machine; compat features never need support to read safely.

/// `s_feature_compat` flags.
pub mod compat {
    /// `dir_prealloc`.
    pub const DIR_PREALLOC: u32 = 0x1;
    /// `imagic_inodes`.
    pub const IMAGIC_INODES: u32 = 0x2;
    /// `has_journal`.
    pub const HAS_JOURNAL: u32 = 0x4;
    /// `ext_attr`.
    pub const EXT_ATTR: u32 = 0x8;
    /// `resize_inode`.
    pub const RESIZE_INODE: u32 = 0x10;
    /// `dir_index`.
    pub const DIR_INDEX: u32 = 0x20;
    /// `sparse_super2`.
    pub const SPARSE_SUPER2: u32 = 0x200;
    /// `fast_commit`.
    pub const FAST_COMMIT: u32 = 0x400;
    /// `stable_inodes`.
    pub const STABLE_INODES: u32 = 0x800;
    /// `orphan_file`.
    pub const ORPHAN_FILE: u32 = 0x1000;
    /// Names, kernel spelling.
    pub const NAMES: &[(u32, &str)] = &[
        (DIR_PREALLOC, "dir_prealloc"),
        (IMAGIC_INODES, "imagic_inodes"),
        (HAS_JOURNAL, "has_journal"),
        (EXT_ATTR, "ext_attr"),
        (RESIZE_INODE, "resize_inode"),
        (DIR_INDEX, "dir_index"),
        (SPARSE_SUPER2, "sparse_super2"),
        (FAST_COMMIT, "fast_commit"),
        (STABLE_INODES, "stable_inodes"),
        (ORPHAN_FILE, "orphan_file"),
    ];
}

/// `s_feature_incompat` flags.
pub mod incompat {
    /// `compression`.
    pub const COMPRESSION: u32 = 0x1;
    /// `filetype`: directory entries carry a file type byte.
    pub const FILETYPE: u32 = 0x2;
    /// `needs_recovery`: the journal must be replayed.
    pub const RECOVER: u32 = 0x4;
    /// `journal_dev`.
    pub const JOURNAL_DEV: u32 = 0x8;
    /// `meta_bg`.
    pub const META_BG: u32 = 0x10;
    /// `extent`.
    pub const EXTENTS: u32 = 0x40;
    /// `64bit`.
    pub const BIT64: u32 = 0x80;
    /// `mmp`.
    pub const MMP: u32 = 0x100;
    /// `flex_bg`.
    pub const FLEX_BG: u32 = 0x200;
    /// `ea_inode`.
    pub const EA_INODE: u32 = 0x400;
    /// `dirdata`.
    pub const DIRDATA: u32 = 0x1000;
    /// `metadata_csum_seed`.
    pub const CSUM_SEED: u32 = 0x2000;
    /// `large_dir`.
    pub const LARGEDIR: u32 = 0x4000;
    /// `inline_data`.
    pub const INLINE_DATA: u32 = 0x8000;
    /// `encrypt`.
    pub const ENCRYPT: u32 = 0x10000;
    /// `casefold`.
    pub const CASEFOLD: u32 = 0x20000;
    /// What this crate reads (`mke2fs -t ext4` defaults).
    pub const SUPPORTED: u32 = FILETYPE | EXTENTS | BIT64 | FLEX_BG;
    /// Names, kernel/e2fsprogs spelling.
    pub const NAMES: &[(u32, &str)] = &[
        (COMPRESSION, "compression"),
        (FILETYPE, "filetype"),
        (RECOVER, "needs_recovery"),
        (JOURNAL_DEV, "journal_dev"),
        (META_BG, "meta_bg"),
        (EXTENTS, "extent"),
        (BIT64, "64bit"),
        (MMP, "mmp"),
        (FLEX_BG, "flex_bg"),
        (EA_INODE, "ea_inode"),
        (DIRDATA, "dirdata"),
        (CSUM_SEED, "metadata_csum_seed"),
        (LARGEDIR, "large_dir"),
        (INLINE_DATA, "inline_data"),
        (ENCRYPT, "encrypt"),
        (CASEFOLD, "casefold"),
    ];
}

/// `s_feature_ro_compat` flags.
pub mod ro_compat {
    /// `sparse_super`.
    pub const SPARSE_SUPER: u32 = 0x1;
    /// `large_file`.
    pub const LARGE_FILE: u32 = 0x2;
    /// `btree_dir` (never used).
    pub const BTREE_DIR: u32 = 0x4;
    /// `huge_file`.
    pub const HUGE_FILE: u32 = 0x8;
    /// `uninit_bg` (gdt_csum).
    pub const GDT_CSUM: u32 = 0x10;
    /// `dir_nlink`.
    pub const DIR_NLINK: u32 = 0x20;
    /// `extra_isize`.
    pub const EXTRA_ISIZE: u32 = 0x40;
    /// `snapshot`.
    pub const HAS_SNAPSHOT: u32 = 0x80;
    /// `quota`.
    pub const QUOTA: u32 = 0x100;
    /// `bigalloc`.
    pub const BIGALLOC: u32 = 0x200;
    /// `metadata_csum`.
    pub const METADATA_CSUM: u32 = 0x400;
    /// `replica`.
    pub const REPLICA: u32 = 0x800;
    /// `read-only`.
    pub const READONLY: u32 = 0x1000;
    /// `project`.
    pub const PROJECT: u32 = 0x2000;
    /// `shared_blocks`.
    pub const SHARED_BLOCKS: u32 = 0x4000;
    /// `verity`.
    pub const VERITY: u32 = 0x8000;
    /// `orphan_present`.
    pub const ORPHAN_PRESENT: u32 = 0x10000;
    /// What this crate reads (`mke2fs -t ext4` defaults).
    pub const SUPPORTED: u32 =
        SPARSE_SUPER | LARGE_FILE | HUGE_FILE | DIR_NLINK | EXTRA_ISIZE | METADATA_CSUM;
    /// Names, kernel/e2fsprogs spelling.
    pub const NAMES: &[(u32, &str)] = &[
        (SPARSE_SUPER, "sparse_super"),
        (LARGE_FILE, "large_file"),
        (BTREE_DIR, "btree_dir"),
        (HUGE_FILE, "huge_file"),
        (GDT_CSUM, "uninit_bg"),
        (DIR_NLINK, "dir_nlink"),
        (EXTRA_ISIZE, "extra_isize"),
        (HAS_SNAPSHOT, "snapshot"),
        (QUOTA, "quota"),
        (BIGALLOC, "bigalloc"),
        (METADATA_CSUM, "metadata_csum"),
        (REPLICA, "replica"),
        (READONLY, "read-only"),
        (PROJECT, "project"),
        (SHARED_BLOCKS, "shared_blocks"),
        (VERITY, "verity"),
        (ORPHAN_PRESENT, "orphan_present"),
    ];
}

/// Space-separated names of the bits set in `bits`, in table order; unnamed bits as `FEATURE_0x..`.
pub fn feature_names(bits: u32, table: &[(u32, &str)]) -> String {
    let mut names: Vec<String> = Vec::new();
    for bit in (0..32)
        .map(|shift| 1u32 << shift)
        .filter(|bit| bits & bit != 0)
    {
        match table.iter().find(|(flag, _)| *flag == bit) {
            Some((_, name)) => names.push((*name).to_string()),
            None => names.push(format!("FEATURE_{bit:#x}")),
        }
    }
    names.join(" ")
}
