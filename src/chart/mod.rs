//! A symptom's recent history as a chart (issue 15): SVG text for the incident page, PNG bytes for
//! the email (mail clients strip SVG). Pure: it reads no clock, sends nothing and knows no word of
//! any language; the caller fetches the points (`probe::prometheus::RangeQuery`) and passes the
//! title and, for a blind chart, the reason, already worded in the reader's language.
//!
//! Drawn by `plotters` (its SVG and bitmap backends), the bitmap encoded by `png`: no hand-written
//! rasterising. Text in the bitmap is drawn with the embedded DejaVu Sans subset
//! (`assets/fonts/DejaVuSans-Latin1.ttf`, licence beside it), so the daemon needs no system fonts
//! (it runs `FROM scratch`); the SVG names `sans-serif` and leaves the glyphs to the browser.
//!
//! What the SVG holds, and what the page's CSP relies on: no script, no event attribute, no
//! external reference (no `href`, no font or image URL), every text escaped by the backend
//! (`&`, `<`, `>`, quotes) after control characters are replaced here (XML forbids them).
//!
//! # Files
//!
//! This file holds the input ([`Chart`], [`Series`], [`Frame`], and [`SymptomChart`], the form
//! emails and pages receive a chart in) and the outputs ([`svg`], [`png`], and [`thumbnail_svg`],
//! the status page's small line without text); `draw.rs` draws any of them on any plotters backend.

mod draw;

use std::time::Duration;

use crate::clock::Timestamp;

/// The smallest and largest side of a chart, in pixels: a caller's absurd size cannot make the
/// bitmap allocate without bound (4096 × 4096 × 3 bytes is 48 MiB, the worst case).
pub const MIN_SIDE: u32 = 64;
/// See [`MIN_SIDE`].
pub const MAX_SIDE: u32 = 4096;

/// The email's chart size: wide enough for a phone's mail client without scaling, short enough
/// to sit under the symptom's line.
pub const EMAIL_SIZE: (u32, u32) = (560, 200);

/// What one chart shows.
#[derive(Debug, Clone, PartialEq)]
pub enum Chart {
    /// A symptom's readings over the frame, the threshold its rule fires at and, when known, the
    /// instant the incident opened (a vertical marker; outside the frame it is not drawn).
    Seen {
        series: Series,
        threshold: f64,
        opened: Option<Timestamp>,
    },
    /// Prometheus could not be read: a box saying so, with `reason` (never an empty chart, which
    /// would read as "nothing happened").
    Blind { title: String, reason: String },
}

/// A symptom's readings over time.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The heading above the chart, in the reader's language (the caller words it).
    pub title: String,
    /// How the values and the threshold read on the axis.
    pub unit: Unit,
    /// The samples, in time order (as Prometheus answers a range query). Non-finite values are
    /// gaps in the line, not points; samples outside the frame are not drawn.
    pub points: Vec<(Timestamp, f64)>,
}

impl Series {
    /// The series in three numbers, for the words beside a chart (or instead of it): the latest
    /// finite value, the lowest and the highest; `None` when no value is finite.
    pub fn gist(&self) -> Option<Gist> {
        let mut values = self.points.iter().map(|p| p.1).filter(|v| v.is_finite());
        let first = values.next()?;
        let (mut last, mut min, mut max) = (first, first, first);
        for v in values {
            last = v;
            min = min.min(v);
            max = max.max(v);
        }
        Some(Gist { last, min, max })
    }
}

/// A series in words: see [`Series::gist`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gist {
    pub last: f64,
    pub min: f64,
    pub max: f64,
}

/// One symptom's chart as the emails and the pages receive it: which rule it is about, what to draw
/// (titled, and for a blind chart with its reason, in the reader's language by whoever fetched it)
/// and the span it covers. Each surface chooses the pixel size ([`EMAIL_SIZE`], the page's, a
/// thumbnail's). Plain data: rendering it is pure and deterministic.
#[derive(Debug, Clone, PartialEq)]
pub struct SymptomChart {
    /// The rule's ID (`latency.p95_high`): the symptom line the chart belongs to.
    pub rule: String,
    /// The series with its threshold and opening, or the blind box.
    pub chart: Chart,
    /// The left edge of the span.
    pub from: Timestamp,
    /// The right edge: when the series was read.
    pub to: Timestamp,
}

impl SymptomChart {
    /// Its span at `size` pixels.
    pub fn frame(&self, size: (u32, u32)) -> Frame {
        Frame {
            from: self.from,
            to: self.to,
            size,
        }
    }

    /// The chart's title (the series' or the blind box's).
    pub fn title(&self) -> &str {
        match &self.chart {
            Chart::Seen { series, .. } => &series.title,
            Chart::Blind { title, .. } => title,
        }
    }
}

/// How a value reads: the same numbers the symptom's line in the email shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Seconds (`p95_seconds`): `0.5 s`, `3 s`.
    Seconds,
    /// A share of 0 to 1 (`error_ratio`): `12%`.
    Ratio,
    /// A bare number.
    Number,
}

impl Unit {
    /// `v` as an axis label or the threshold's label reads it.
    pub fn format(self, v: f64) -> String {
        match self {
            Unit::Seconds => format!("{} s", short_number(v)),
            Unit::Ratio => format!("{}%", short_number(v * 100.0)),
            Unit::Number => short_number(v),
        }
    }
}

/// A number with at most three significant digits after the point, trailing zeros dropped:
/// `3`, `0.25`, `12.5`, `0.001`.
fn short_number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let decimals = if v.abs() >= 100.0 {
        0
    } else if v.abs() >= 10.0 {
        1
    } else if v.abs() >= 1.0 {
        2
    } else {
        3
    };
    let text = format!("{v:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    };
    if text == "-0" { "0".to_owned() } else { text }
}

/// The time span and pixel size of a chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// The left edge of the time axis.
    pub from: Timestamp,
    /// The right edge; a frame whose `to` is not after `from` is widened to one minute, so the
    /// axis never has zero width.
    pub to: Timestamp,
    /// Width and height in pixels, clamped to [`MIN_SIDE`]..=[`MAX_SIDE`].
    pub size: (u32, u32),
}

impl Frame {
    /// The frame ending at `to` and reaching `span` back.
    pub fn ending(to: Timestamp, span: Duration, size: (u32, u32)) -> Self {
        Self {
            from: to.checked_sub(span).unwrap_or(Timestamp::EPOCH),
            to,
            size,
        }
    }

    /// The size actually drawn.
    fn pixels(&self) -> (u32, u32) {
        (
            self.size.0.clamp(MIN_SIDE, MAX_SIDE),
            self.size.1.clamp(MIN_SIDE, MAX_SIDE),
        )
    }

    /// The time axis in seconds since the epoch, never empty.
    fn seconds(&self) -> (f64, f64) {
        let from = self.from.as_unix_secs_f64();
        let to = self.to.as_unix_secs_f64();
        if to > from {
            (from, to)
        } else {
            (from, from + 60.0)
        }
    }
}

/// Why a chart could not be drawn: plotters refused (a font that does not load, a backend error).
/// Not expected in practice; the caller shows the symptom without its chart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the chart could not be drawn: {0}")]
pub struct ChartError(pub String);

/// The chart as SVG text, for the incident page (inline, under its CSP: no script, no external
/// reference).
pub fn svg(chart: &Chart, frame: &Frame) -> Result<String, ChartError> {
    svg_by(frame, |backend| draw::draw(backend, chart, frame))
}

/// The chart as a small SVG with no text at all (the status page's thumbnail): the series, the
/// threshold and the opening as lines, without title, axes or labels, which would not fit; a blind
/// chart is an empty grey box (the page says why beside it).
pub fn thumbnail_svg(chart: &Chart, frame: &Frame) -> Result<String, ChartError> {
    svg_by(frame, |backend| draw::thumbnail(backend, chart, frame))
}

/// The SVG text `draw` writes on a backend of `frame`'s size.
fn svg_by(
    frame: &Frame,
    draw: impl FnOnce(plotters::backend::SVGBackend<'_>) -> Result<(), ChartError>,
) -> Result<String, ChartError> {
    let (w, h) = frame.pixels();
    let mut out = String::new();
    draw(plotters::backend::SVGBackend::with_string(&mut out, (w, h)))?;
    Ok(out)
}

/// The chart as PNG bytes (8-bit RGB, `frame.size` clamped), for the email.
pub fn png(chart: &Chart, frame: &Frame) -> Result<Vec<u8>, ChartError> {
    let (w, h) = frame.pixels();
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let backend = plotters::backend::BitMapBackend::with_buffer(&mut rgb, (w, h));
        draw::draw(backend, chart, frame)?;
    }
    let mut out = Vec::new();
    let mut encoder = ::png::Encoder::new(&mut out, w, h);
    encoder.set_color(::png::ColorType::Rgb);
    encoder.set_depth(::png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .map_err(|e| ChartError(e.to_string()))?;
    writer
        .write_image_data(&rgb)
        .map_err(|e| ChartError(e.to_string()))?;
    writer.finish().map_err(|e| ChartError(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests;
