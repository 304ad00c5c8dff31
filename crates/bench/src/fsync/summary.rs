//! `aios bench fsync` text after the table: the ratios to the journaled kernel and what aios's
//! commits did.

use super::*;

/// Every record's mean over the journaled kernel's (`fsync-img`/`fdsync-img`) of the same
/// device and shape, where there is one. `vs kern` in the table stays against the plain kernel.
pub(super) fn journaled_ratios(records: &[Record]) -> Vec<(usize, f64)> {
    let mut against = records.to_vec();
    report::compare_with(&mut against, is_journaled_kernel);
    against
        .iter()
        .enumerate()
        .filter(|(_, r)| !is_journaled_kernel(r))
        .filter_map(|(i, r)| r.vs_kernel.map(|v| (i, v)))
        .collect()
}

pub(super) fn print_journaled_ratios(records: &[Record]) {
    let ratios = journaled_ratios(records);
    if ratios.is_empty() {
        return;
    }
    println!(
        "vs the journaled kernel (mean / the {JOURNALED_FSYNC} or {JOURNALED_FDATASYNC} row: ext4 \
         with its journal, data=ordered, on a loop-mounted copy of the image, direct I/O, on the \
         host disk like aios; the plain kernel rows are the host root's ext4, which has no \
         journal here):"
    );
    for (i, ratio) in ratios {
        let Some(r) = records.get(i) else { continue };
        println!(
            "  {:<12} {:<7} {:<10} {:<10} {:>5} thr {:>2}  {:>6.3}",
            r.device,
            r.stack,
            r.mode,
            r.workload,
            show_size(r.bs),
            r.threads,
            ratio
        );
    }
}

/// Per aios case: the mean operation time and what its commits wrote.
pub(super) fn print_commits(records: &[Record], cases: &[FsyncCase], sums: &[CommitSums]) {
    println!(
        "aios per durable write (all writes of the runs, warm-up included); stages of the \
         commits and data-only syncs in us per write ({}), the rest of the write is the \
         in-memory operation and the waits for other threads' commits:",
        COMMIT_STAGES.join(", ")
    );
    for ((r, case), s) in records.iter().zip(cases).zip(sums) {
        if !matches!(case.stack, FsyncStack::Aios { .. }) || s.writes == 0 {
            continue;
        }
        println!(
            "  {:<12} {:<10} {:<10} {:>5} thr {}  op mean {:>8.2} us  commits/write {:.3}  data \
             syncs/write {:.3}  journal blocks/commit {:.2}  checkpoints {}",
            r.device,
            r.mode,
            r.workload,
            show_size(r.bs),
            r.threads,
            r.mean_ns / 1e3,
            s.commits as f64 / s.writes as f64,
            s.data_syncs as f64 / s.writes as f64,
            s.journal_blocks as f64 / s.commits.max(1) as f64,
            s.checkpoints
        );
        let per_commit: Vec<String> = s
            .stage_ns
            .iter()
            .map(|&ns| format!("{:.2}", ns as f64 / 1e3 / s.writes as f64))
            .collect();
        println!("      stages: {}", per_commit.join(" / "));
    }
}
