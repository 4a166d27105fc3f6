//! Drawing one [`Chart`] on any plotters backend (the SVG one for pages, the bitmap one for
//! emails), so both outputs show the same thing: the series as lines, the threshold as a
//! horizontal line with its value, the incident's opening as a vertical line; or the blind box.

use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{Chart, ChartError, Frame, Series};
use crate::clock::Timestamp;
use crate::locale::human_time;

/// The series' colour (a blue), also how tests find its lines in the SVG.
pub(super) const SERIES: RGBColor = RGBColor(0x1F, 0x77, 0xB4);
/// The threshold line's colour (a red).
pub(super) const THRESHOLD: RGBColor = RGBColor(0xD6, 0x27, 0x28);
/// The incident's opening marker (an orange).
pub(super) const OPENED: RGBColor = RGBColor(0xFF, 0x7F, 0x0E);

/// The family every text is drawn in: the embedded font is registered under it, and the SVG names
/// it for the browser.
const FAMILY: &str = "sans-serif";

/// The embedded font (a DejaVu Sans subset; licence in `assets/fonts/LICENSE-DejaVu.txt`).
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Latin1.ttf");

/// Longest text drawn, in characters: a runaway title or reason is cut, not drawn off the edge.
const MAX_TEXT: usize = 300;

/// Registers the embedded font with plotters once per process (plotters keeps fonts in a global
/// table); whether it loaded is remembered, so a broken font fails every chart the same way.
fn font() -> Result<(), ChartError> {
    static LOADED: OnceLock<bool> = OnceLock::new();
    let loaded = *LOADED
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if loaded {
        Ok(())
    } else {
        Err(ChartError("the embedded font does not load".into()))
    }
}

/// Any plotters error as a [`ChartError`].
fn err(e: impl std::fmt::Display) -> ChartError {
    ChartError(e.to_string())
}

/// `text` safe to draw: control characters (which XML forbids, and which mean nothing on a
/// chart) become spaces, and at most [`MAX_TEXT`] characters are kept, the cut marked `…`.
pub(super) fn clean(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_TEXT)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > MAX_TEXT {
        out.push('…');
    }
    out
}

/// Draws `chart` over `frame` on `backend`, and presents it.
pub(super) fn draw<DB: DrawingBackend>(
    backend: DB,
    chart: &Chart,
    frame: &Frame,
) -> Result<(), ChartError> {
    font()?;
    let root = backend.into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    match chart {
        Chart::Seen {
            series,
            threshold,
            opened,
        } => seen(&root, series, *threshold, *opened, frame)?,
        Chart::Blind { title, reason } => blind(&root, title, reason)?,
    }
    root.present().map_err(err)
}

/// Draws `chart` over `frame` on `backend` as a thumbnail: lines only, no text (see
/// [`super::thumbnail_svg`]).
pub(super) fn thumbnail<DB: DrawingBackend>(
    backend: DB,
    chart: &Chart,
    frame: &Frame,
) -> Result<(), ChartError> {
    let root = backend.into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (w, h) = root.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    let Chart::Seen {
        series,
        threshold,
        opened,
    } = chart
    else {
        root.draw(&Rectangle::new(
            [(1, 1), (w - 2, h - 2)],
            BLACK.mix(0.25).stroke_width(1),
        ))
        .map_err(err)?;
        return root.present().map_err(err);
    };
    let (x0, x1) = frame.seconds();
    let runs = runs(&series.points, (x0, x1));
    let all: Vec<(f64, f64)> = runs.iter().flatten().copied().collect();
    let (lo, hi) = value_range(&all, *threshold);
    let mut chart = ChartBuilder::on(&root)
        .margin(2)
        .build_cartesian_2d(x0..x1, lo..hi)
        .map_err(err)?;
    marks(&mut chart, *threshold, *opened, (x0, x1), (lo, hi), 1)?;
    for run in runs {
        chart
            .draw_series(LineSeries::new(run, SERIES.stroke_width(2)))
            .map_err(err)?;
    }
    root.present().map_err(err)
}

/// The value axis: from 0 (or the lowest value, when negative) to a tenth above the highest of
/// the values and the threshold, so the threshold line is always inside the chart.
pub(super) fn value_range(points: &[(f64, f64)], threshold: f64) -> (f64, f64) {
    let values = points.iter().map(|p| p.1);
    let lo = values.clone().fold(0.0_f64, f64::min);
    let mut hi = values.fold(f64::NEG_INFINITY, f64::max);
    if threshold.is_finite() {
        hi = hi.max(threshold);
    }
    if !hi.is_finite() || hi <= lo {
        hi = lo + 1.0;
    }
    (lo, hi + (hi - lo) * 0.1)
}

/// The runs of drawable points: finite values inside the frame, broken where a value is not
/// finite or where the time between two samples is over three times the usual spacing (the
/// median): a stretch Prometheus has no data for shows as a gap, not as a straight line.
pub(super) fn runs(points: &[(Timestamp, f64)], x: (f64, f64)) -> Vec<Vec<(f64, f64)>> {
    let mut gaps: Vec<f64> = points
        .windows(2)
        .map(|w| w[1].0.as_unix_secs_f64() - w[0].0.as_unix_secs_f64())
        .filter(|d| *d > 0.0)
        .collect();
    gaps.sort_by(f64::total_cmp);
    let usual = gaps.get(gaps.len() / 2).copied();
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut run: Vec<(f64, f64)> = Vec::new();
    for (t, v) in points {
        let t = t.as_unix_secs_f64();
        if !v.is_finite() || t < x.0 || t > x.1 {
            out.extend((!run.is_empty()).then(|| std::mem::take(&mut run)));
            continue;
        }
        if let (Some(last), Some(usual)) = (run.last(), usual)
            && t - last.0 > 3.0 * usual
        {
            out.push(std::mem::take(&mut run));
        }
        run.push((t, *v));
    }
    out.extend((!run.is_empty()).then_some(run));
    out
}

/// A time-axis label: `11:06` (UTC, as every time the daemon shows), with the day when the frame
/// spans more than one (`11-18 11:06`).
fn time_label(seconds: f64, span: f64) -> String {
    let text = human_time(Timestamp::from_unix_millis(
        (seconds * 1000.0).round() as i64
    ));
    let range = if span > 86_400.0 { 5..16 } else { 11..16 };
    text.get(range).map_or(text.clone(), str::to_owned)
}

/// The chart of a series.
fn seen<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    series: &Series,
    threshold: f64,
    opened: Option<Timestamp>,
    frame: &Frame,
) -> Result<(), ChartError> {
    let (x0, x1) = frame.seconds();
    let runs = runs(&series.points, (x0, x1));
    let all: Vec<(f64, f64)> = runs.iter().flatten().copied().collect();
    let (lo, hi) = value_range(&all, threshold);
    let unit = series.unit;
    let mut chart = ChartBuilder::on(root)
        .caption(clean(&series.title), (FAMILY, 15))
        .margin(8)
        // Room for the last time label, centred on the right edge.
        .margin_right(20)
        .x_label_area_size(24)
        .y_label_area_size(52)
        .build_cartesian_2d(x0..x1, lo..hi)
        .map_err(err)?;
    let span = x1 - x0;
    chart
        .configure_mesh()
        .x_labels(5)
        .y_labels(4)
        .x_label_formatter(&|x| time_label(*x, span))
        .y_label_formatter(&|y| unit.format(*y))
        .label_style((FAMILY, 12))
        .bold_line_style(BLACK.mix(0.08))
        .light_line_style(TRANSPARENT)
        .draw()
        .map_err(err)?;
    for run in runs {
        if let [only] = run.as_slice() {
            // One sample between gaps: a dot, or it would not show at all.
            chart
                .draw_series(std::iter::once(Circle::new(*only, 2, SERIES.filled())))
                .map_err(err)?;
        }
        chart
            .draw_series(LineSeries::new(run, SERIES.stroke_width(2)))
            .map_err(err)?;
    }
    marks(&mut chart, threshold, opened, (x0, x1), (lo, hi), 2)?;
    if threshold.is_finite() {
        let label = (FAMILY, 12)
            .into_font()
            .color(&THRESHOLD)
            .pos(Pos::new(HPos::Right, VPos::Bottom));
        chart
            .draw_series(std::iter::once(Text::new(
                unit.format(threshold),
                (x1, threshold),
                label,
            )))
            .map_err(err)?;
    }
    Ok(())
}

/// The axes a chart draws on: time in seconds, values.
type Axes<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The threshold (a horizontal line across the frame, when finite) and the incident's opening (a
/// vertical line `opened_width` wide, when inside the frame) on `chart`.
fn marks<DB: DrawingBackend>(
    chart: &mut Axes<'_, DB>,
    threshold: f64,
    opened: Option<Timestamp>,
    (x0, x1): (f64, f64),
    (lo, hi): (f64, f64),
    opened_width: u32,
) -> Result<(), ChartError> {
    if threshold.is_finite() {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x0, threshold), (x1, threshold)],
                THRESHOLD.stroke_width(1),
            )))
            .map_err(err)?;
    }
    if let Some(t) = opened.map(Timestamp::as_unix_secs_f64)
        && (x0..=x1).contains(&t)
    {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(t, lo), (t, hi)],
                OPENED.stroke_width(opened_width),
            )))
            .map_err(err)?;
    }
    Ok(())
}

/// The blind chart: a framed box with the title at the top and the reason in the middle,
/// wrapped to the box's width.
fn blind<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    reason: &str,
) -> Result<(), ChartError> {
    let (w, h) = root.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    root.draw(&Rectangle::new(
        [(4, 4), (w - 5, h - 5)],
        BLACK.mix(0.4).stroke_width(1),
    ))
    .map_err(err)?;
    let title_style = (FAMILY, 15)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Top));
    root.draw(&Text::new(clean(title), (12, 12), title_style))
        .map_err(err)?;
    // About 7 px per character at 13 px: a line that fits the box, at most 5 of them.
    let per_line = ((w - 24) / 7).max(10) as usize;
    let lines = wrap(&clean(reason), per_line, 5);
    let style = (FAMILY, 13)
        .into_font()
        .color(&THRESHOLD)
        .pos(Pos::new(HPos::Center, VPos::Top));
    let top = h / 2 - 9 * lines.len() as i32;
    for (i, line) in lines.into_iter().enumerate() {
        root.draw(&Text::new(
            line,
            (w / 2, top + 18 * i as i32),
            style.clone(),
        ))
        .map_err(err)?;
    }
    Ok(())
}

/// `text` in lines of at most `width` characters, broken at spaces (a longer word is cut), at
/// most `max` lines, the last one ending `…` when text is left over.
pub(super) fn wrap(text: &str, width: usize, max: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word: String = word.to_owned();
        loop {
            let used = line.chars().count();
            let len = word.chars().count();
            if used > 0 && used + 1 + len <= width {
                line.push(' ');
                line.push_str(&word);
                break;
            }
            if used == 0 && len <= width {
                line = word;
                break;
            }
            if used > 0 {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            // A word longer than a line: cut it.
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            lines.push(head);
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    if lines.len() > max {
        lines.truncate(max);
        if let Some(last) = lines.last_mut() {
            last.push('…');
        }
    }
    lines
}
