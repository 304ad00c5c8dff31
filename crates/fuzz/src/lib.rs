//! Fuzzing aios's on-disk decoders on the stable toolchain (issue 5, "Bad images").
//!
//! # Role
//! One target per decoder ([`targets`]): the ext4 superblock, group descriptor, inode, extent
//! node, linear directory block and htree `dx_root`/`dx_node`, and the jbd2 superblock,
//! descriptor, commit and revoke blocks, plus journal recovery over a whole small log. A target
//! takes arbitrary bytes, decodes them (with and without checksum verification, so mutations
//! reach past the checksum), checks the invariants a successful decode promises (round trips
//! through the encoders, counts within bounds) and returns a [`Verdict`]. Any panic is a bug.
//!
//! [`seeds`] builds the corpora: real structures cut out of a `mke2fs` image
//! ([`seeds::ext4::from_image`]) and journals laid out with our own encoders, among them the
//! e2fsprogs journal test cases (`j_corrupt_commit_csum`, `j_corrupt_descr_csum`,
//! `j_corrupt_revoke_csum`, `j_corrupt_revoke_rcount`, ...; see [`seeds::journal`]).
//! [`mutate`] is the seeded mutator (bit flips, byte sets, interesting values, splices,
//! truncation and extension), and [`run`] the loop that drives a target from its corpus, catches
//! panics and reports the iteration seed of each, so `AIOS_FUZZ_SEED=<seed>` replays it exactly.
//!
//! The same targets are exposed to `cargo fuzz` (libFuzzer, nightly) by the `fuzz/` directory at
//! the repository root, which is not a workspace member.

pub mod mutate;
pub mod run;
pub mod seeds;
pub mod targets;

pub use run::{run, Report};
pub use targets::{Target, Verdict, TARGETS};
