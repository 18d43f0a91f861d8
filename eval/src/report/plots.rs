//! The report's figures, each written as SVG and PNG: accuracy against latency and against
//! energy (every policy, with the Pareto front of Triage's operating points), reliability
//! diagrams before and after calibration, and the operating point over a budgeted stream.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::Report;
use crate::error::{Error, Result};
use crate::metrics::PolicyMetrics;
use crate::outcome::Family;

const W: u32 = 1400;
const H: u32 = 900;

/// Where a TrueType font is looked for (the first that exists); `TRIAGE_FONT` comes first.
const FONT_PATHS: [&str; 6] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/Library/Fonts/Arial.ttf",
];

static FONT: OnceLock<std::result::Result<(), String>> = OnceLock::new();

/// Registers a system font with plotters once; plots need one for their text.
fn ensure_font() -> std::result::Result<(), String> {
    FONT.get_or_init(|| {
        let candidates: Vec<PathBuf> = std::env::var_os("TRIAGE_FONT")
            .map(PathBuf::from)
            .into_iter()
            .chain(FONT_PATHS.iter().map(PathBuf::from))
            .collect();
        for p in &candidates {
            if let Ok(bytes) = std::fs::read(p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return Ok(());
                }
            }
        }
        Err(format!(
            "no TrueType font found (looked at $TRIAGE_FONT and {}); install fonts-dejavu-core or set TRIAGE_FONT",
            FONT_PATHS.join(", ")
        ))
    })
    .clone()
}

fn family_color(f: Family) -> RGBColor {
    match f {
        Family::Single => RGBColor(90, 90, 90),
        Family::Remote => RGBColor(140, 86, 75),
        Family::Oracle => RGBColor(188, 189, 34),
        Family::Random => RGBColor(160, 160, 160),
        Family::TaylorKnn => RGBColor(148, 103, 189),
        Family::Cascade => RGBColor(255, 127, 14),
        Family::CascadeCalibrated => RGBColor(214, 39, 40),
        Family::Mcdnn => RGBColor(44, 160, 44),
        Family::Deepdecision => RGBColor(23, 190, 207),
        Family::Triage => RGBColor(31, 119, 180),
    }
}

type DrawResult<T, DB> =
    std::result::Result<T, DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// Indices of the Pareto-optimal (max top-1, min cost) Triage points, cheapest first.
fn triage_front(ps: &[PolicyMetrics], cost: &dyn Fn(&PolicyMetrics) -> f64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..ps.len())
        .filter(|&i| ps[i].family == Family::Triage && ps[i].name != "triage paced")
        .collect();
    idx.sort_by(|&a, &b| {
        cost(&ps[a])
            .total_cmp(&cost(&ps[b]))
            .then(ps[b].top1.total_cmp(&ps[a].top1))
    });
    let mut front: Vec<usize> = Vec::new();
    for i in idx {
        if front
            .last()
            .is_none_or(|&l| ps[i].top1 > ps[l].top1 + 1e-12)
        {
            front.push(i);
        }
    }
    front
}

fn tradeoff<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    r: &Report,
    x_label: &str,
    cost: &dyn Fn(&PolicyMetrics) -> f64,
) -> DrawResult<(), DB> {
    root.fill(&WHITE)?;
    let ps = &r.policies;
    let xs: Vec<f64> = ps.iter().map(cost).filter(|x| *x > 0.0).collect();
    let (xmin, xmax) = xs
        .iter()
        .fold((f64::INFINITY, 0f64), |(a, b), &x| (a.min(x), b.max(x)));
    let (xmin, xmax) = if xmin.is_finite() {
        (xmin / 1.4, xmax * 1.4)
    } else {
        (0.1, 10.0)
    };
    let (ymin, ymax) = ps
        .iter()
        .fold((1f64, 0f64), |(a, b), p| (a.min(p.top1), b.max(p.top1)));
    let (ymin, ymax) = (
        (100.0 * ymin - 3.0).max(0.0),
        (100.0 * ymax + 3.0).min(100.0),
    );
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!("Top-1 vs {x_label} ({} images, {})", r.n_images, r.mode),
            ("sans-serif", 30),
        )
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(80)
        .build_cartesian_2d((xmin..xmax).log_scale(), ymin..ymax)?;
    chart
        .configure_mesh()
        .x_desc(format!("{x_label} (log scale)"))
        .y_desc("top-1 (%)")
        .label_style(("sans-serif", 20))
        .axis_desc_style(("sans-serif", 22))
        .x_label_formatter(&|x| {
            if *x >= 10.0 {
                format!("{x:.0}")
            } else if *x >= 1.0 {
                format!("{x:.1}")
            } else {
                format!("{x:.2}")
            }
        })
        .draw()?;
    let front = triage_front(ps, cost);
    let blue = family_color(Family::Triage);
    chart
        .draw_series(LineSeries::new(
            front.iter().map(|&i| (cost(&ps[i]), 100.0 * ps[i].top1)),
            blue.stroke_width(3),
        ))?
        .label("Triage Pareto front")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], blue.stroke_width(3)));
    for fam in Family::ALL {
        let members: Vec<&PolicyMetrics> = ps
            .iter()
            .filter(|p| p.family == fam && cost(p) > 0.0)
            .collect();
        if members.is_empty() {
            continue;
        }
        let c = family_color(fam);
        chart
            .draw_series(members.iter().map(|p| {
                let pos = (cost(p), 100.0 * p.top1);
                match fam {
                    Family::Triage => Circle::new(pos, 8, c.filled()).into_dyn(),
                    Family::Single | Family::Remote => {
                        TriangleMarker::new(pos, 9, c.filled()).into_dyn()
                    }
                    _ => Cross::new(pos, 8, c.stroke_width(3)).into_dyn(),
                }
            }))?
            .label(fam.name())
            .legend(move |(x, y)| Circle::new((x + 12, y), 6, c.filled()));
    }
    // Point labels, nudged apart so that crowded points stay readable, with a leader line
    // from each point to its label.
    let mut order: Vec<&PolicyMetrics> = ps.iter().filter(|p| cost(p) > 0.0).collect();
    order.sort_by(|a, b| b.top1.total_cmp(&a.top1).then(cost(a).total_cmp(&cost(b))));
    let mut placed: Vec<(i32, i32, i32, i32)> = Vec::new();
    let style = ("sans-serif", 15).into_font().color(&RGBColor(30, 30, 30));
    let mut labels = Vec::new();
    for p in order {
        let (px, py) = chart.backend_coord(&(cost(p), 100.0 * p.top1));
        let text = short_name(&p.name);
        let w = (text.chars().count() as i32) * 8 + 4;
        let h = 16;
        let (mut lx, mut ly) = (px + 10, py - 8);
        for attempt in 0..24 {
            let clash = placed
                .iter()
                .any(|&(x0, y0, x1, y1)| lx < x1 && lx + w > x0 && ly < y1 && ly + h > y0);
            if !clash {
                break;
            }
            // Alternate below and above, moving further out each time.
            let k = attempt / 2 + 1;
            ly = if attempt % 2 == 0 {
                py - 8 + k * h
            } else {
                py - 8 - k * h
            };
            lx = px + 10;
        }
        placed.push((lx, ly, lx + w, ly + h));
        labels.push(((px, py), (lx, ly), text));
    }
    for ((px, py), (lx, ly), text) in labels {
        if (ly - (py - 8)).abs() > 2 {
            root.draw(&PathElement::new(
                vec![(px, py), (lx - 2, ly + 8)],
                RGBColor(170, 170, 170).stroke_width(1),
            ))?;
        }
        root.draw(&Text::new(text, (lx, ly), style.clone()))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 20))
        .draw()?;
    root.present()?;
    Ok(())
}

/// Names shortened for point labels.
fn short_name(n: &str) -> String {
    n.replace("efficientnet_", "effnet-")
        .replace("mobilenet_", "mnet-")
        .replace("triage ", "triage:")
        .replace(" (uncalibrated)", " (raw)")
        .replace(" (calibrated)", " (cal)")
}

fn reliability<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    r: &Report,
) -> DrawResult<(), DB> {
    root.fill(&WHITE)?;
    let n = r.calibration.len().max(1);
    let cols = n.min(4);
    let rows = n.div_ceil(cols);
    let (title, body) = root.split_vertically(60);
    title.draw(&Text::new(
        "Reliability: accuracy vs confidence, before (red) and after (blue) temperature scaling (bins of 5+ images)",
        (20, 18),
        ("sans-serif", 26),
    ))?;
    let panels = body.split_evenly((rows, cols));
    for (cal, area) in r.calibration.iter().zip(panels.iter()) {
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!(
                    "{}  ECE {:.3} -> {:.3}",
                    short_name(&cal.name),
                    cal.before.ece,
                    cal.after.ece
                ),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(45)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
        chart
            .configure_mesh()
            .x_desc("confidence")
            .y_desc("accuracy")
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 14))
            .x_labels(6)
            .y_labels(6)
            .draw()?;
        chart.draw_series(LineSeries::new(
            vec![(0.0, 0.0), (1.0, 1.0)],
            RGBColor(150, 150, 150).stroke_width(1),
        ))?;
        for (rel, color) in [(&cal.before, RED), (&cal.after, BLUE)] {
            let pts: Vec<(f64, f64)> = rel
                .count
                .iter()
                .zip(rel.confidence.iter().zip(&rel.accuracy))
                // Bins of fewer than five predictions are noise, not calibration.
                .filter(|(c, _)| **c >= 5)
                .map(|(_, (&x, &y))| (x, y))
                .collect();
            chart.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?;
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
        }
    }
    root.present()?;
    Ok(())
}

fn stream<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, r: &Report) -> DrawResult<(), DB> {
    root.fill(&WHITE)?;
    let Some(s) = &r.stream else {
        return Ok(());
    };
    let n = s.level.len().max(1);
    let (top, bottom) = root.split_vertically((H as f64 * 0.55) as u32);
    let levels = s.points.len().max(1);
    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!(
                "Budgeted stream: operating point per image (budget {:.1} mJ/image)",
                s.energy_budget_mj
            ),
            ("sans-serif", 26),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(210)
        .build_cartesian_2d(0..n, -0.5f64..(levels as f64 - 0.5))?;
    let names = s.points.clone();
    chart
        .configure_mesh()
        .y_labels(levels)
        .y_label_formatter(&|y| {
            let k = y.round();
            if (y - k).abs() < 1e-6 && k >= 0.0 {
                names.get(k as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc("image in sequence")
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()?;
    chart.draw_series(
        s.level
            .iter()
            .enumerate()
            .map(|(k, &l)| Circle::new((k, l as f64), 2, family_color(Family::Triage).filled())),
    )?;
    let total_budget = s.energy_budget_mj * n as f64;
    let ymax = s
        .cumulative_mj
        .last()
        .copied()
        .unwrap_or(0.0)
        .max(total_budget)
        * 1.05
        / 1e3;
    let mut c2 = ChartBuilder::on(&bottom)
        .caption(
            "Cumulative energy (J): spent vs pro-rata budget",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(210)
        .build_cartesian_2d(0..n, 0f64..ymax.max(1e-6))?;
    c2.configure_mesh()
        .x_desc("image in sequence")
        .y_desc("J")
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()?;
    c2.draw_series(LineSeries::new(
        (0..n).map(|k| (k, s.energy_budget_mj * (k + 1) as f64 / 1e3)),
        RGBColor(120, 120, 120).stroke_width(2),
    ))?
    .label("budget")
    .legend(|(x, y)| {
        PathElement::new(
            vec![(x, y), (x + 24, y)],
            RGBColor(120, 120, 120).stroke_width(2),
        )
    });
    c2.draw_series(LineSeries::new(
        s.cumulative_mj
            .iter()
            .enumerate()
            .map(|(k, &c)| (k, c / 1e3)),
        family_color(Family::Triage).stroke_width(3),
    ))?
    .label("spent")
    .legend(|(x, y)| {
        PathElement::new(
            vec![(x, y), (x + 24, y)],
            family_color(Family::Triage).stroke_width(3),
        )
    });
    c2.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 18))
        .draw()?;
    root.present()?;
    Ok(())
}

/// The figures of a report.
enum Figure<'a> {
    Tradeoff {
        r: &'a Report,
        x_label: &'a str,
        cost: fn(&PolicyMetrics) -> f64,
    },
    Reliability(&'a Report),
    Stream(&'a Report),
}

impl Figure<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<(), DB> {
        match self {
            Figure::Tradeoff { r, x_label, cost } => tradeoff(root, r, x_label, cost),
            Figure::Reliability(r) => reliability(root, r),
            Figure::Stream(r) => stream(root, r),
        }
    }
}

/// Draws one figure into an SVG and a PNG of the same name.
fn both(dir: &Path, stem: &str, fig: &Figure) -> Result<Vec<PathBuf>> {
    let svg = dir.join(format!("{stem}.svg"));
    let png = dir.join(format!("{stem}.png"));
    let err = |path: &Path, e: String| Error::Plot {
        path: path.to_path_buf(),
        message: e,
    };
    {
        let root = SVGBackend::new(&svg, (W, H)).into_drawing_area();
        fig.draw(&root).map_err(|e| err(&svg, e.to_string()))?;
    }
    let mut buf = vec![0u8; (W * H * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (W, H)).into_drawing_area();
        fig.draw(&root).map_err(|e| err(&png, e.to_string()))?;
    }
    image::save_buffer(&png, &buf, W, H, image::ExtendedColorType::Rgb8)
        .map_err(|e| err(&png, e.to_string()))?;
    Ok(vec![svg, png])
}

/// Writes every figure into `dir`; returns the files written.
pub fn write_all(dir: &Path, r: &Report) -> Result<Vec<PathBuf>> {
    ensure_font().map_err(|m| Error::Plot {
        path: dir.to_path_buf(),
        message: m,
    })?;
    let figures = [
        (
            "accuracy_vs_latency",
            Figure::Tradeoff {
                r,
                x_label: "mean latency per image (ms)",
                cost: |p| p.mean_latency_ms,
            },
        ),
        (
            "accuracy_vs_energy",
            Figure::Tradeoff {
                r,
                x_label: "energy per image (mJ)",
                cost: |p| p.mean_energy_mj,
            },
        ),
        ("reliability", Figure::Reliability(r)),
        ("stream", Figure::Stream(r)),
    ];
    let mut out = Vec::new();
    for (stem, fig) in &figures {
        if matches!(fig, Figure::Stream(_)) && r.stream.is_none()
            || matches!(fig, Figure::Reliability(_)) && r.calibration.is_empty()
        {
            continue;
        }
        out.extend(both(dir, stem, fig)?);
    }
    Ok(out)
}
