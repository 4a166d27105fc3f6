//! The pages' symptom charts (issue 15): on an open incident's page, each firing symptom's recent
//! history as inline SVG ([`PAGE_SIZE`], scaled down to a phone by CSS); on the status page, each
//! open incident's top symptom with its value and a thumbnail ([`THUMB_SIZE`], lines only).
//!
//! The series come from [`ChartSource`](crate::pipeline::charts::ChartSource): read within its
//! budget, and cached for about a probe interval, so the index's 30-s refresh and several viewers
//! cost Prometheus one range query per chart per interval at most. The SVG is `crate::chart`'s,
//! escaped by construction (no script, no reference, every text escaped), so the templates show it
//! as is (`|safe`) under the pages' CSP.

use serde::Serialize;

use super::PagesState;
use crate::chart::{self, Chart, SymptomChart};
use crate::clock::Timestamp;
use crate::engine::Symptom;
use crate::incident::{Incident, IncidentState};
use crate::observe::Value;

/// An incident page's chart size (its `viewBox`; CSS scales it to the page's width).
pub(super) const PAGE_SIZE: (u32, u32) = (600, 220);

/// A status page thumbnail's size.
pub(super) const THUMB_SIZE: (u32, u32) = (160, 40);

/// The longest a value shown on the status page is, in characters (a peer's words are cut).
const MAX_VALUE: usize = 80;

/// One chart of an incident's page.
#[derive(Debug, Serialize)]
pub(super) struct ChartBox {
    /// The SVG text, shown as is; `None` when it could not be drawn.
    svg: Option<String>,
    /// The chart's title; for a blind chart, also why there is no history.
    caption: String,
}

/// An open incident at a glance on the status page.
#[derive(Debug, Default, Serialize)]
pub(super) struct Glance {
    /// The top firing symptom's rule summary, in the page's language.
    pub(super) summary: Option<String>,
    /// Its latest value in its unit (`8.8 s`, `12.4%`).
    pub(super) value: Option<String>,
    /// The thumbnail's SVG, when the symptom has a chart that could be drawn.
    pub(super) thumb: Option<String>,
    /// Why the thumbnail shows no history (Prometheus blind), in words.
    pub(super) note: Option<String>,
}

impl PagesState {
    /// The charts of `incident` as of `now`: its section's firing symptoms that Prometheus can
    /// chart, while it is open (a resolved incident's symptoms have cleared).
    pub(super) async fn incident_charts(
        &self,
        incident: &Incident,
        now: Timestamp,
    ) -> Vec<ChartBox> {
        if incident.state != IncidentState::Open {
            return Vec::new();
        }
        let live = self.symptoms.borrow().clone();
        let wanted = self
            .charts
            .wanted(&incident.section, &live, incident.opened_at, now);
        self.charts
            .fetch(&wanted, now)
            .await
            .iter()
            .map(|c| ChartBox {
                svg: chart::svg(&c.chart, &c.frame(PAGE_SIZE))
                    .inspect_err(|e| tracing::warn!(rule = %c.rule, error = %e, "a page chart could not be drawn"))
                    .ok(),
                caption: caption(c),
            })
            .collect()
    }

    /// The glance at each of `open` (open incidents, in order) as of `now`: its section's first
    /// firing symptom (the engine's order), its value, and the thumbnail of the first chart.
    pub(super) async fn glances(&self, open: &[&Incident], now: Timestamp) -> Vec<Glance> {
        let live = self.symptoms.borrow().clone();
        let wanted: Vec<_> = open
            .iter()
            .map(|i| {
                self.charts
                    .wanted(&i.section, &live, i.opened_at, now)
                    .into_iter()
                    .take(1)
                    .collect::<Vec<_>>()
            })
            .collect();
        let all: Vec<_> = wanted.iter().flatten().cloned().collect();
        let mut charts = self.charts.fetch(&all, now).await.into_iter();
        open.iter()
            .zip(&wanted)
            .map(|(i, w)| {
                let mut glance = self.top_symptom(&i.section, &live);
                if !w.is_empty()
                    && let Some(c) = charts.next()
                {
                    match &c.chart {
                        Chart::Seen { .. } => {
                            glance.thumb = chart::thumbnail_svg(&c.chart, &c.frame(THUMB_SIZE))
                                .inspect_err(|e| tracing::warn!(rule = %c.rule, error = %e, "a thumbnail could not be drawn"))
                                .ok();
                        }
                        Chart::Blind { reason, .. } => glance.note = Some(reason.clone()),
                    }
                }
                glance
            })
            .collect()
    }

    /// The first firing symptom of `section` in `live`, with its value in its unit.
    fn top_symptom(&self, section: &str, live: &[Symptom]) -> Glance {
        let Some(s) = live.iter().find(|s| s.section == section) else {
            return Glance::default();
        };
        let rule = self.runbook.rule(&s.rule).map(|(_, r)| r);
        let obs = rule.and_then(|r| r.when.obs.as_deref()).unwrap_or("");
        let value = s.value.as_ref().map(|v| match v {
            // A text reading is a peer's words (a failure, a status page's description): quoted,
            // so it cannot pass for the page's own, in any language.
            Value::Text(text) => crate::locale::quoted_max(text, MAX_VALUE),
            v => crate::words::units::format_value(obs, v),
        });
        Glance {
            summary: Some(rule.map_or_else(
                || s.summary.clone(),
                |r| r.summary.get(self.locale).to_owned(),
            )),
            value,
            thumb: None,
            note: None,
        }
    }
}

/// What a page says beside a chart: its title, and for a blind chart why it has no history.
fn caption(c: &SymptomChart) -> String {
    match &c.chart {
        Chart::Seen { series, .. } => series.title.clone(),
        Chart::Blind { title, reason } => format!("{title}: {reason}"),
    }
}
