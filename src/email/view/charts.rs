//! The symptom charts as the templates show them: the image's `cid:` source, size and `alt` text
//! in the HTML part, and the chart in words (latest, lowest and highest value against the
//! threshold, in the symptom line's units) in both parts, so the text part says what the picture
//! shows and a blind chart says why there is none.

use serde::Serialize;

use super::super::EmailInput;
use super::super::images::Image;
use crate::chart::Chart;
use crate::locale::fill;
use crate::observe::Value;
use crate::words::units::format_value;

/// One chart of the email.
#[derive(Debug, Serialize)]
pub(in crate::email) struct ChartView {
    /// The rule it is about.
    pub rule: String,
    /// `cid:<Content-ID>` of its image; `None` when it could not be drawn (the words say so).
    pub src: Option<String>,
    pub alt: String,
    pub width: u32,
    pub height: u32,
    /// The chart in words, one sentence or two.
    pub words: String,
}

/// The views of `input.charts`, beside their `images` (same order; `None`: not drawn).
pub(in crate::email) fn chart_views(
    input: &EmailInput<'_>,
    images: &[Option<Image>],
) -> Vec<ChartView> {
    let t = input.locale.text();
    input
        .charts
        .iter()
        .zip(images)
        .map(|(c, image)| {
            let title = c.title();
            let obs = input
                .runbook
                .rule(&c.rule)
                .and_then(|(_, r)| r.when.obs.as_deref())
                .unwrap_or("");
            let number = |v: f64| format_value(obs, &Value::Number(v));
            let mut words = match &c.chart {
                Chart::Seen {
                    series, threshold, ..
                } => match series.gist() {
                    Some(g) => fill(
                        t.chart_gist,
                        &[
                            ("title", &title),
                            ("last", &number(g.last)),
                            ("min", &number(g.min)),
                            ("max", &number(g.max)),
                            (
                                "threshold",
                                &if threshold.is_finite() {
                                    number(*threshold)
                                } else {
                                    "?".to_owned()
                                },
                            ),
                        ],
                    ),
                    None => fill(
                        t.chart_none,
                        &[("title", &title), ("reason", &t.chart_blind_no_data)],
                    ),
                },
                Chart::Blind { reason, .. } => {
                    fill(t.chart_none, &[("title", &title), ("reason", reason)])
                }
            };
            if image.is_none() {
                words = format!("{words} {}", t.chart_blind_draw);
            }
            ChartView {
                rule: c.rule.clone(),
                src: image.as_ref().map(|i| format!("cid:{}", i.cid)),
                alt: fill(t.chart_alt, &[("title", &title)]),
                width: image.as_ref().map_or(0, |i| i.size.0),
                height: image.as_ref().map_or(0, |i| i.size.1),
                words,
            }
        })
        .collect()
}
