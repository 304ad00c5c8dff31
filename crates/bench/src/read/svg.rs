//! `aios bench read` figures: the per-stage breakdown (text and SVG), latency CDF, IOPS vs threads.

use super::*;

pub(super) fn print_breakdown(bars: &[Bar]) {
    println!("breakdown: cold 4K random reads, 1 thread, mean ns per miss by stage");
    print!("{:<16}", "mode");
    for s in Stage::ALL {
        print!(" {:>12}", s.name());
    }
    println!(" {:>13}", "critical path");
    for (label, mode, sums) in bars {
        print!("{:<16}", label);
        for s in Stage::ALL {
            let mark = if s.overlapped(*mode) { "*" } else { " " };
            print!(" {:>11.0}{mark}", sums.per_miss(s));
        }
        println!(" {:>13.0}", sums.critical_per_miss());
    }
    println!("(* overlapped with the device: off the critical path)");
}

pub(crate) type DrawResult<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

pub(crate) fn stage_color(i: usize) -> plotters::style::RGBColor {
    use plotters::style::RGBColor;
    const COLORS: [RGBColor; 9] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
    ];
    COLORS[i % COLORS.len()]
}

/// A distinct color per line: the stage colors, then plotters' 99-color palette.
pub(super) fn series_color(k: usize) -> plotters::style::RGBAColor {
    use plotters::style::{Color, Palette, Palette99};
    if k < 9 {
        stage_color(k).to_rgba()
    } else {
        let (r, g, b) = Palette99::COLORS[(k - 9) % Palette99::COLORS.len()];
        plotters::style::RGBColor(r, g, b).to_rgba()
    }
}

/// Stacked horizontal bars, one per aios mode: the critical-path stages in order on top, the
/// overlapped stages hatched underneath from where the device wait starts, and a black marker at
/// the mean critical path.
pub(super) fn breakdown_svg(path: &Path, bars: &[Bar]) -> DrawResult<()> {
    use plotters::prelude::*;
    let n = bars.len();
    let height = 170 + 120 * n as u32;
    let root = SVGBackend::new(path, (1100, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut layouts = Vec::new();
    let mut max_x: f64 = 1.0;
    for (_, mode, sums) in bars {
        let mut x = 0.0;
        let mut main = Vec::new();
        let mut device_start = 0.0;
        for (i, s) in Stage::ALL.iter().enumerate() {
            if !s.applies(*mode) || s.overlapped(*mode) {
                continue;
            }
            if *s == Stage::DeviceWait {
                device_start = x;
            }
            let w = sums.per_miss(*s);
            main.push((i, x, x + w));
            x += w;
        }
        let mut ox = device_start;
        let mut over = Vec::new();
        for (i, s) in Stage::ALL.iter().enumerate() {
            if s.applies(*mode) && s.overlapped(*mode) {
                let w = sums.per_miss(*s);
                over.push((i, ox, ox + w));
                ox += w;
            }
        }
        max_x = max_x.max(x).max(ox).max(sums.critical_per_miss());
        layouts.push((main, over, sums.critical_per_miss()));
    }
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "aios cold 4 KiB random read: mean ns per miss by stage",
            ("sans-serif", 22),
        )
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(10)
        .build_cartesian_2d(0f64..max_x * 1.15, 0f64..n as f64 + 0.6)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_label_formatter(&|v| format!("{v:.0}"))
        .x_desc("ns per miss (hatched: overlapped with the device, off the critical path)")
        .draw()?;
    for (i, s) in Stage::ALL.iter().enumerate() {
        let c = stage_color(i);
        chart
            .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())?
            .label(s.name())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], c.filled()));
    }
    for (row, ((label, _, _), (main, over, critical))) in bars.iter().zip(&layouts).enumerate() {
        // The first bar on top.
        let y = (n - 1 - row) as f64 + 0.6;
        chart.draw_series(std::iter::once(Text::new(
            format!("{label}: critical path {critical:.0} ns"),
            (0.0, y + 0.93),
            ("sans-serif", 16).into_font(),
        )))?;
        chart.draw_series(main.iter().map(|&(i, x0, x1)| {
            Rectangle::new([(x0, y + 0.45), (x1, y + 0.8)], stage_color(i).filled())
        }))?;
        if let (Some(first), Some(last)) = (over.first(), over.last()) {
            chart.draw_series(std::iter::once(Text::new(
                format!("overlapped with the device: {:.0} ns", last.2 - first.1),
                (last.2 + max_x / 100.0, y + 0.3),
                ("sans-serif", 14).into_font(),
            )))?;
        }
        for &(i, x0, x1) in over {
            let c = stage_color(i);
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x0, y + 0.08), (x1, y + 0.38)],
                c.mix(0.3).filled(),
            )))?;
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x0, y + 0.08), (x1, y + 0.38)],
                c.stroke_width(1),
            )))?;
            // Hatching: slanted strokes across the box.
            let step = max_x / 400.0;
            let slant = step * 0.8;
            let mut hx = x0;
            while hx + slant <= x1 {
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(hx, y + 0.08), (hx + slant, y + 0.38)],
                    c.stroke_width(1),
                )))?;
                hx += step;
            }
        }
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(*critical, y + 0.02), (*critical, y + 0.86)],
            BLACK.stroke_width(3),
        )))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// One latency CDF line per case, log-scaled latency.
pub(super) fn latency_cdf_svg(path: &Path, hists: &[(String, Histogram<u64>)]) -> DrawResult<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (1100, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let lo = hists
        .iter()
        .map(|(_, h)| h.min())
        .filter(|&v| v > 0)
        .min()
        .unwrap_or(100) as f64
        / 1e3;
    let hi = hists
        .iter()
        .map(|(_, h)| h.value_at_quantile(0.9999))
        .max()
        .unwrap_or(1000) as f64
        / 1e3;
    let mut chart = ChartBuilder::on(&root)
        .caption("aios bench read: latency CDF", ("sans-serif", 22))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d((lo * 0.8..hi * 1.2).log_scale(), 0f64..1f64)?;
    chart
        .configure_mesh()
        .x_desc("latency (us)")
        .y_desc("fraction of reads")
        .draw()?;
    for (k, (label, h)) in hists.iter().enumerate() {
        if h.is_empty() {
            continue;
        }
        let c = series_color(k);
        let total = h.len() as f64;
        let mut acc = 0u64;
        let points: Vec<(f64, f64)> = h
            .iter_recorded()
            .map(|v| {
                acc += v.count_at_value();
                (v.value_iterated_to() as f64 / 1e3, acc as f64 / total)
            })
            .collect();
        chart
            .draw_series(LineSeries::new(points, c.stroke_width(2)))?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// IOPS against thread count, one line per (device, stack, mode, workload, bs).
pub(super) fn iops_svg(path: &Path, records: &[Record]) -> DrawResult<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (1100, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_threads = records.iter().map(|r| r.threads).max().unwrap_or(1) as f64;
    let max_iops = records.iter().map(|r| r.iops).fold(1.0, f64::max);
    let min_iops = records
        .iter()
        .map(|r| r.iops)
        .filter(|&v| v > 0.0)
        .fold(max_iops, f64::min);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "aios bench read: IOPS vs threads (QD1 per thread)",
            ("sans-serif", 22),
        )
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(
            0.5f64..max_threads + 0.5,
            (min_iops * 0.5..max_iops * 2.0).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("threads")
        .y_desc("IOPS (log scale)")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    let key_of = |r: &'_ Record| (r.device.clone(), r.stack, r.mode.clone(), r.workload, r.bs);
    let mut keys = Vec::new();
    for r in records {
        let key = key_of(r);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    for (k, key) in keys.iter().enumerate() {
        let c = series_color(k);
        let mut points: Vec<(f64, f64)> = records
            .iter()
            .filter(|r| key_of(r) == *key)
            .map(|r| (r.threads as f64, r.iops))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))?
            .label(format!(
                "{}: {} {} {} {}",
                key.0,
                key.1,
                key.2,
                key.3,
                show_size(key.4)
            ))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], c.stroke_width(2)));
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, c.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
