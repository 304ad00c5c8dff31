//! `aios bench fsync --svg`: the per-stage breakdown of a durable write, drawn in the style of
//! `aios bench read`'s breakdown (same colors, horizontal stacked bars, labels above the bars).

use super::*;
use crate::read::svg::{stage_color, DrawResult};
use std::path::Path;

/// The segments of the bars: the commit stages, the rest of aios's write, the kernel's totals.
const SEGMENTS: [&str; 9] = [
    "checkpoint",
    "build_journal",
    "submit",
    "wait",
    "flush",
    "commit",
    "in-memory op (the rest)",
    "kernel: whole write + sync",
    "kernel, journaled image: whole write + sync",
];
const OP_REST: usize = COMMIT_STAGES.len();
const KERNEL: usize = OP_REST + 1;
const KERNEL_IMG: usize = KERNEL + 1;

/// One bar: its label and its segments (index into [`SEGMENTS`], us per durable write).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Bar {
    pub label: String,
    pub segments: Vec<(usize, f64)>,
}

impl Bar {
    fn total_us(&self) -> f64 {
        self.segments.iter().map(|&(_, us)| us).sum()
    }
}

/// The bars of every one-thread case, grouped by device, workload and size (first appearance
/// order): aios's stages per durable write (stage sums over every write of the runs, warm-up
/// included; the in-memory rest is the measured mean minus them), the kernel's mean as one
/// segment.
pub(super) fn bars(records: &[Record], cases: &[FsyncCase], sums: &[CommitSums]) -> Vec<Bar> {
    let key = |r: &Record| (r.device.clone(), r.workload, r.bs);
    let mut groups = Vec::new();
    for r in records.iter().filter(|r| r.threads == 1) {
        if !groups.contains(&key(r)) {
            groups.push(key(r));
        }
    }
    let mut out = Vec::new();
    for group in groups {
        let rows = records.iter().zip(cases).zip(sums);
        for ((r, case), s) in rows.filter(|((r, _), _)| r.threads == 1 && key(r) == group) {
            let mean_us = r.mean_ns / 1e3;
            let segments = match case.stack {
                FsyncStack::Aios { .. } => {
                    let writes = s.writes.max(1) as f64;
                    let mut segments: Vec<(usize, f64)> = s
                        .stage_ns
                        .iter()
                        .enumerate()
                        .map(|(i, &ns)| (i, ns as f64 / 1e3 / writes))
                        .collect();
                    let staged: f64 = segments.iter().map(|&(_, us)| us).sum();
                    segments.push((OP_REST, (mean_us - staged).max(0.0)));
                    segments
                }
                FsyncStack::Kernel => vec![(KERNEL, mean_us)],
                FsyncStack::KernelImg => vec![(KERNEL_IMG, mean_us)],
            };
            out.push(Bar {
                label: format!(
                    "{} {} {}: {} {}",
                    r.device,
                    r.workload,
                    show_size(r.bs),
                    r.stack,
                    r.mode
                ),
                segments,
            });
        }
    }
    out
}

/// Stacked horizontal bars, one per case, the first on top, each labelled with its total.
pub(super) fn breakdown_svg(path: &Path, bars: &[Bar]) -> DrawResult<()> {
    use plotters::prelude::*;
    let n = bars.len().max(1);
    let height = 200 + 60 * n as u32;
    let root = SVGBackend::new(path, (1100, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_x = bars.iter().map(Bar::total_us).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "aios bench fsync: us per durable write (aios by commit stage; kernel total), 1 thread",
            ("sans-serif", 20),
        )
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(10)
        .build_cartesian_2d(0f64..max_x * 1.45, 0f64..n as f64 + 0.2)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_label_formatter(&|v| format!("{v:.0}"))
        .x_desc("us per durable write (aios stages: sums over all writes of the runs)")
        .draw()?;
    for (i, name) in SEGMENTS.iter().enumerate() {
        let c = stage_color(i);
        chart
            .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], c.filled()));
    }
    for (row, bar) in bars.iter().enumerate() {
        let y = (n - 1 - row) as f64 + 0.1;
        chart.draw_series(std::iter::once(Text::new(
            format!("{}: {:.1} us", bar.label, bar.total_us()),
            (0.0, y + 0.85),
            ("sans-serif", 14).into_font(),
        )))?;
        let mut x = 0.0;
        for &(i, us) in &bar.segments {
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x, y + 0.1), (x + us, y + 0.5)],
                stage_color(i).filled(),
            )))?;
            x += us;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
