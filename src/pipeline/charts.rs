//! The symptom charts' data (issue 15): which of a section's firing symptoms Prometheus can chart,
//! and their recent history, one range query each, all within a short budget, as
//! [`SymptomChart`]s titled in the reader's language. A Prometheus that is down, slow, answers
//! nonsense or has no data gives a blind chart saying so in words: never an error, never a wait
//! past [`ChartSource::budget`].
//!
//! This is the I/O half of the charts. The pager's shell (`watch.rs`) calls it between deciding a
//! step's pages and rendering them (so nothing is committed while it waits); the status pages call
//! it for what they show. The email renderer and the page templates only draw what it returns, with
//! the pure `crate::chart`. A small cache, bounded in entries and in age, keeps the pages' 30-s
//! refresh and several viewers from asking Prometheus again for what it answered moments ago.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::chart::{Chart, Series, SymptomChart};
use crate::clock::Timestamp;
use crate::config::{Config, PrometheusConfig};
use crate::engine::{Symptom, SymptomState};
use crate::locale::{Locale, fill, human_duration, human_limit};
use crate::observe::{FailureKind, Key};
use crate::probe::BuildError;
use crate::probe::prometheus::{RangeFailure, RangeQuery, Reading, step_for};
use crate::runbook::{Operand, Runbook, Severity};

/// The longest a fetch of charts may take, whatever `prometheus.timeout` says: an email or a page
/// waits for its charts at most this long, then shows a blind chart for what is still missing.
pub const MAX_BUDGET: Duration = Duration::from_secs(3);

/// Charts kept in the cache: a few per open incident (a handful of sections).
pub const CACHE_ENTRIES: usize = 64;

/// Charts one incident shows at most (a section's readings: p95, error ratio, auth ratio).
pub const MAX_CHARTS: usize = 4;

/// Samples asked for per chart: about two per horizontal pixel pair of the email's 560.
pub const POINTS: u32 = 240;

/// A chart starts this long before its incident opened, so the climb that fired it shows.
pub const LEAD: Duration = Duration::from_secs(10 * 60);

/// The shortest span a chart covers: half an hour, whatever the incident's age.
pub const MIN_SPAN: Duration = Duration::from_secs(30 * 60);

/// The longest: a day, for an incident open for days (the step grows with the span).
pub const MAX_SPAN: Duration = Duration::from_secs(24 * 3600);

/// One symptom to chart: its reading and threshold, titled, over the span it will cover.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    /// The rule's ID, which the chart carries to the symptom's line.
    pub rule: String,
    /// The observation key (`prometheus.p95_seconds{…}`) the rule fired on.
    pub key: Key,
    reading: Reading,
    window: Duration,
    threshold: f64,
    title: String,
    /// When the incident opened: the marker, and what the span and the cache are anchored on.
    opened: Timestamp,
    from: Timestamp,
    to: Timestamp,
}

/// One cached answer: what [`ChartSource::fetch`] made of a reading's history, and when.
#[derive(Debug, Clone)]
struct Cached {
    reading: Reading,
    window: Duration,
    opened: Timestamp,
    threshold: u64,
    /// When it was read (the caller's `now`), for [`ChartSource::ttl`].
    at: Timestamp,
    chart: SymptomChart,
}

/// Range queries for the charts against the configured Prometheus, with their words and a cache.
pub struct ChartSource {
    range: RangeQuery,
    prometheus: PrometheusConfig,
    runbook: Arc<Runbook>,
    locale: Locale,
    /// `prometheus.timeout`, at most [`MAX_BUDGET`].
    budget: Duration,
    /// How long a cached chart is shown again: `prometheus.interval` (no newer sample is likely
    /// sooner), between 5 s and a minute.
    ttl: Duration,
    /// At most [`CACHE_ENTRIES`], oldest first.
    cache: Mutex<VecDeque<Cached>>,
}

impl std::fmt::Debug for ChartSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChartSource")
            .field("range", &self.range)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl ChartSource {
    /// Charts of `runbook`'s symptoms from `config.prometheus`, worded in `config.runbook.locale`.
    pub fn new(config: &Config, runbook: Arc<Runbook>) -> Result<Self, BuildError> {
        let prometheus = config.prometheus.clone();
        Ok(Self {
            range: RangeQuery::new(&prometheus)?,
            budget: prometheus.timeout.min(MAX_BUDGET),
            ttl: prometheus
                .interval
                .clamp(Duration::from_secs(5), Duration::from_secs(60)),
            prometheus,
            runbook,
            locale: config.runbook.locale,
            cache: Mutex::new(VecDeque::new()),
        })
    }

    /// The longest [`fetch`](Self::fetch) takes.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// The symptoms of `section` among `symptoms` that a chart can show: firing or recovering, on
    /// a reading with a one-expression history ([`Reading::of`]); one per reading (the most
    /// severe rule's, whose threshold matters most), at most [`MAX_CHARTS`], in the engine's order.
    /// Framed for an incident opened at `opened`, as of `now`.
    pub fn wanted(
        &self,
        section: &str,
        symptoms: &[Symptom],
        opened: Timestamp,
        now: Timestamp,
    ) -> Vec<Wanted> {
        let (from, to) = span(opened, now);
        let t = self.locale.text();
        let mut out: Vec<(Severity, Wanted)> = Vec::new();
        for s in symptoms {
            if s.section != section
                || !matches!(s.state, SymptomState::Firing | SymptomState::Recovering)
            {
                continue;
            }
            let Some((_, rule)) = self.runbook.rule(&s.rule) else {
                continue;
            };
            let Some(name) = rule.when.obs.as_deref().and_then(crate::observe::intern) else {
                continue;
            };
            let key = Key {
                name,
                labels: s.labels.clone(),
            };
            let Some((reading, window)) = Reading::of(&self.prometheus, &key) else {
                continue;
            };
            let threshold = match rule.when.value {
                Some(Operand::Number(n)) => n,
                _ => f64::NAN,
            };
            let mut summary = rule.summary.get(self.locale).to_owned();
            if let Some(handler) = key.labels.get("handler").filter(|h| *h != "*") {
                summary = format!("{summary} · {handler}");
            }
            let title = fill(
                t.chart_title,
                &[
                    ("summary", &summary),
                    ("span", &human_duration(to.saturating_since(from))),
                ],
            );
            let wanted = Wanted {
                rule: s.rule.clone(),
                key,
                reading,
                window,
                threshold,
                title,
                opened,
                from,
                to,
            };
            match out
                .iter_mut()
                .find(|(_, w)| w.reading == wanted.reading && w.window == wanted.window)
            {
                Some(kept) if kept.0 < rule.severity => *kept = (rule.severity, wanted),
                Some(_) => {}
                None => out.push((rule.severity, wanted)),
            }
        }
        out.into_iter().map(|(_, w)| w).take(MAX_CHARTS).collect()
    }

    /// The chart of each of `wanted`, in its order: from the cache when read less than the TTL
    /// before `now`, else asked of Prometheus, every query at once, each given what is left of
    /// [`budget`](Self::budget). A failure or a late answer is a blind chart with the reason in
    /// the reader's language. Returns at once when `wanted` is empty.
    pub async fn fetch(&self, wanted: &[Wanted], now: Timestamp) -> Vec<SymptomChart> {
        let started = std::time::Instant::now();
        let cached: Vec<Option<SymptomChart>> =
            wanted.iter().map(|w| self.cached(w, now)).collect();
        let asks = wanted.iter().zip(&cached).map(|(w, hit)| async move {
            if let Some(chart) = hit {
                return chart.clone();
            }
            let step = step_for(w.from, w.to, POINTS);
            let answer = tokio::time::timeout(
                self.budget,
                self.range
                    .series(&w.reading, w.window, w.title.clone(), (w.from, w.to), step),
            )
            .await;
            let chart = self.chart(w, answer.map_err(|_| ()));
            self.remember(w, now, &chart);
            chart
        });
        let charts = futures_util::future::join_all(asks).await;
        let asked = cached.iter().filter(|c| c.is_none()).count();
        if asked > 0 {
            tracing::debug!(
                charts = charts.len(),
                asked,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "symptom charts read from Prometheus"
            );
        }
        charts
    }

    /// The chart of `w` from an answer (`Err(())`: no answer within the budget).
    fn chart(&self, w: &Wanted, answer: Result<Result<Series, RangeFailure>, ()>) -> SymptomChart {
        let t = self.locale.text();
        let reason = match answer {
            Ok(Ok(series)) if series.gist().is_some() => {
                return SymptomChart {
                    rule: w.rule.clone(),
                    chart: Chart::Seen {
                        series,
                        threshold: w.threshold,
                        opened: Some(w.opened),
                    },
                    from: w.from,
                    to: w.to,
                };
            }
            // Samples, none of them a number (a quantile with no traffic): nothing to draw.
            Ok(Ok(_)) | Ok(Err(RangeFailure::NoData(_))) => t.chart_blind_no_data.to_owned(),
            Ok(Err(RangeFailure::Unreachable(f))) if f.kind == FailureKind::Timeout => fill(
                t.chart_blind_timeout,
                &[("timeout", &human_limit(self.prometheus.timeout))],
            ),
            Ok(Err(RangeFailure::Unreachable(_))) => t.chart_blind_unreachable.to_owned(),
            Ok(Err(RangeFailure::BadAnswer(_))) => t.chart_blind_bad_answer.to_owned(),
            Err(()) => fill(
                t.chart_blind_timeout,
                &[("timeout", &human_limit(self.budget))],
            ),
        };
        SymptomChart {
            rule: w.rule.clone(),
            chart: Chart::Blind {
                title: w.title.clone(),
                reason,
            },
            from: w.from,
            to: w.to,
        }
    }

    /// The cached chart of `w`, if one was read less than the TTL before `now`.
    fn cached(&self, w: &Wanted, now: Timestamp) -> Option<SymptomChart> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .iter()
            .rev()
            .find(|c| {
                c.reading == w.reading
                    && c.window == w.window
                    && c.opened == w.opened
                    && c.threshold == w.threshold.to_bits()
                    && c.at <= now
                    && now.saturating_since(c.at) < self.ttl
            })
            .map(|c| SymptomChart {
                rule: w.rule.clone(),
                ..c.chart.clone()
            })
    }

    /// Keeps `chart`, read at `now`, dropping the oldest entry past [`CACHE_ENTRIES`].
    fn remember(&self, w: &Wanted, now: Timestamp, chart: &SymptomChart) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|c| {
            !(c.reading == w.reading && c.window == w.window && c.opened == w.opened)
                && now.saturating_since(c.at) < self.ttl
        });
        while cache.len() >= CACHE_ENTRIES {
            cache.pop_front();
        }
        cache.push_back(Cached {
            reading: w.reading.clone(),
            window: w.window,
            opened: w.opened,
            threshold: w.threshold.to_bits(),
            at: now,
            chart: chart.clone(),
        });
    }

    /// Entries in the cache (tests).
    #[cfg(test)]
    fn cache_len(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }
}

/// The span a chart of an incident opened at `opened` covers at `now`: from [`LEAD`] before the
/// opening (or [`MIN_SPAN`] back, if that is earlier) to `now`, at most [`MAX_SPAN`].
pub fn span(opened: Timestamp, now: Timestamp) -> (Timestamp, Timestamp) {
    let from = opened
        .checked_sub(LEAD)
        .unwrap_or(Timestamp::EPOCH)
        .min(now.checked_sub(MIN_SPAN).unwrap_or(Timestamp::EPOCH))
        .max(now.checked_sub(MAX_SPAN).unwrap_or(Timestamp::EPOCH));
    (from, now)
}

#[cfg(test)]
mod tests;
