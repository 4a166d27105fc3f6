//! The latency readings: a histogram's cumulative buckets (`Buckets`, with Prometheus' own
//! `histogram_quantile` algorithm and the share above a threshold), the choice of the histogram whose
//! buckets can show the runbook's thresholds, the p95 and slow share, and the blind spot with its fix
//! when neither can. It sends no query and knows nothing of the request counts.

use std::collections::BTreeMap;

use super::answer::{Answer, Sample, label};
use super::{DEFAULT_THRESHOLD, MAX_SERIES, QUANTILE, percent, secs};
use crate::config::PrometheusConfig;
use crate::locale::{Msg, MsgId};
use crate::observe::{Failure, Key, Observation, Outcome, Value};

/// One histogram's cumulative bucket rates, ascending by upper bound, `+Inf` last.
///
/// Made by [`Buckets::new`], which keeps what [`Buckets::quantile`] relies on: bounds strictly
/// ascending and never NaN, counts finite and non-decreasing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets(pub(super) Vec<(f64, f64)>);

impl Buckets {
    /// Buckets from `(le, cumulative)` pairs in any order: equal bounds merged (Prometheus'
    /// `coalesceBuckets`), counts made monotonic (its `ensureMonotonic`: rates of counters reset at
    /// different moments can dip).
    pub fn new(mut pairs: Vec<(f64, f64)>) -> Self {
        pairs.retain(|(le, c)| !le.is_nan() && c.is_finite());
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut merged: Vec<(f64, f64)> = Vec::with_capacity(pairs.len());
        for (le, c) in pairs {
            match merged.last_mut() {
                Some(last) if last.0 == le => last.1 += c,
                _ => merged.push((le, c)),
            }
        }
        let mut max = f64::NEG_INFINITY;
        for b in &mut merged {
            max = max.max(b.1);
            b.1 = max;
        }
        Self(merged)
    }

    /// The finite upper bounds.
    pub fn bounds(&self) -> Vec<f64> {
        self.0
            .iter()
            .map(|b| b.0)
            .filter(|le| le.is_finite())
            .collect()
    }

    /// The highest finite upper bound.
    pub fn top(&self) -> Option<f64> {
        self.bounds().last().copied()
    }

    /// Requests per second in the window (the `+Inf` bucket), when the histogram is whole.
    pub fn total(&self) -> Option<f64> {
        self.0.last().filter(|b| b.0 == f64::INFINITY).map(|b| b.1)
    }

    /// True when a quantile over these buckets can exceed `t`: some finite bound lies above it.
    pub fn can_exceed(&self, t: f64) -> bool {
        self.top().is_some_and(|top| top > t)
    }

    /// The `q` quantile exactly as Prometheus' `histogram_quantile` computes it over classic
    /// buckets (linear interpolation within the bucket; the highest finite bound when the rank falls
    /// in `+Inf`); NaN when there is nothing to rank.
    ///
    /// Same algorithm, not a better one, so that the probe's p95 and the one a person pastes into
    /// Prometheus ([`super::equivalent_promql`]) agree; the tests work cases from `quantile.go`.
    pub fn quantile(&self, q: f64) -> f64 {
        let b = &self.0;
        if q.is_nan() {
            return f64::NAN;
        }
        if q < 0.0 {
            return f64::NEG_INFINITY;
        }
        if q > 1.0 {
            return f64::INFINITY;
        }
        if b.len() < 2 || b[b.len() - 1].0 != f64::INFINITY {
            return f64::NAN;
        }
        let observations = b[b.len() - 1].1;
        // Rates are never negative; a peer answering so has nothing to rank (Prometheus would
        // index past its buckets here).
        if observations <= 0.0 || !observations.is_finite() {
            return f64::NAN;
        }
        // The first bucket whose cumulative count reaches the rank (Prometheus' `sort.Search`).
        let mut rank = q * observations;
        let i = b.partition_point(|x| x.1 < rank);
        if i >= b.len() - 1 {
            return b[b.len() - 2].0;
        }
        // A first bucket at or below zero has no lower edge to interpolate from.
        if i == 0 && b[0].0 <= 0.0 {
            return b[0].0;
        }
        let (mut start, end, mut count) = (0.0, b[i].0, b[i].1);
        if i > 0 {
            start = b[i - 1].0;
            count -= b[i - 1].1;
            rank -= b[i - 1].1;
        }
        start + (end - start) * (rank / count)
    }

    /// The share of requests slower than `t`, and whether it is exact (a bucket bound at `t`) or
    /// interpolated linearly inside the bucket holding `t` (the same assumption as the quantile).
    /// `None` without traffic, or when `t` is beyond the highest finite bound.
    pub fn share_above(&self, t: f64) -> Option<(f64, Exactness)> {
        let total = self.total().filter(|t| *t > 0.0)?;
        // A bound within a relative 1e-9 of `t` is at `t`: the bound (the backend's `le`) and the
        // threshold (the runbook's value) are parsed from two texts, and a last-bit difference
        // must not turn an exact share into an interpolated one.
        if let Some(b) = self
            .0
            .iter()
            .find(|b| (b.0 - t).abs() <= 1e-9 * t.abs().max(1.0))
        {
            return Some(((1.0 - b.1 / total).clamp(0.0, 1.0), Exactness::Exact(b.0)));
        }
        let i = self.0.iter().position(|b| b.0 > t)?;
        if self.0[i].0 == f64::INFINITY {
            return None;
        }
        let (lo, below) = if i == 0 { (0.0, 0.0) } else { self.0[i - 1] };
        let (hi, upto) = self.0[i];
        let at = below + (upto - below) * (t - lo) / (hi - lo);
        Some((
            (1.0 - at / total).clamp(0.0, 1.0),
            Exactness::Interpolated(lo, hi),
        ))
    }
}

/// How a share above a threshold was read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Exactness {
    /// From the bucket whose bound is the threshold.
    Exact(f64),
    /// Interpolated between these two bounds.
    Interpolated(f64, f64),
}

/// Bucket samples grouped by the `by` label (`*` when the query has none): `le` values are parsed as
/// numbers (`1`, `1.0` and `1e+00` are one bound; `+Inf` is infinity); unparsable ones are skipped.
fn group_buckets(samples: &[Sample], by: Option<&str>) -> BTreeMap<String, Buckets> {
    let mut pairs: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for (labels, v) in samples {
        let Some(le) = label(labels, "le").and_then(parse_le) else {
            continue;
        };
        let who = by.and_then(|b| label(labels, b)).unwrap_or("*").to_owned();
        pairs.entry(who).or_default().push((le, *v));
    }
    pairs
        .into_iter()
        .map(|(k, v)| (k, Buckets::new(v)))
        .collect()
}

/// An `le` label as a bound (`+Inf` as infinity, other spellings of it too); NaN is refused: it
/// cannot be ordered among the bounds.
fn parse_le(text: &str) -> Option<f64> {
    match text.trim() {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        t => t.parse::<f64>().ok().filter(|v| !v.is_nan()),
    }
}

/// Every finite bound seen across the groups.
fn all_bounds(groups: &BTreeMap<String, Buckets>) -> Vec<f64> {
    let mut bounds: Vec<f64> = groups.values().flat_map(Buckets::bounds).collect();
    bounds.sort_by(f64::total_cmp);
    bounds.dedup();
    bounds
}

/// The bounds as a person reads them: `0.1, 0.5, 1`.
fn bounds_text(bounds: &[f64]) -> String {
    bounds
        .iter()
        .map(|b| Value::Number(*b).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a histogram's answer was.
pub(super) enum Layout {
    /// Its buckets, by handler (or `*`).
    Found(BTreeMap<String, Buckets>),
    /// Prometheus has no series of it.
    Missing,
    /// Its query failed.
    Failed(Failure),
}

impl Layout {
    /// True when a quantile over these buckets can exceed `t` (see [`Buckets::can_exceed`]): the
    /// one test both windows' readings choose their histogram by.
    fn can_exceed(&self, t: f64) -> bool {
        match self {
            Layout::Found(g) => all_bounds(g).last().is_some_and(|top| *top > t),
            _ => false,
        }
    }
}

/// The histogram's layout from its answer, its buckets grouped by the `by` label (`handler` for
/// the per-handler histogram, none for the label-less one). An answer without a single parsable
/// `le` counts as missing: there is no layout to judge.
pub(super) fn layout(answer: Answer, by: Option<&str>) -> Layout {
    match answer {
        Answer::Samples(s) => {
            let groups = group_buckets(&s, by);
            if groups.is_empty() {
                Layout::Missing
            } else {
                Layout::Found(groups)
            }
        }
        Answer::Refused(f) | Answer::SourceDown(f) => Layout::Failed(f),
    }
}

/// The instrumentator call that gives the per-handler histogram buckets able to tell `threshold`.
/// The buckets keep low ones (fast requests still resolved), put one at the threshold (an exact
/// slow share) and two above it (a p95 past the threshold reads as a number, not as the top bound).
fn bucket_fix(threshold: f64) -> Msg {
    let mut buckets = vec![
        0.1,
        0.25,
        0.5,
        1.0,
        2.0,
        threshold,
        threshold * 2.0,
        threshold * 5.0,
    ];
    buckets.sort_by(f64::total_cmp);
    buckets.dedup();
    Msg::new(MsgId::BucketFix)
        .arg("buckets", bounds_text(&buckets))
        .arg("threshold", secs(threshold))
}

/// The share of requests slower than the lowest threshold over the short window, from the same
/// histogram the long window's p95 comes from (the one whose buckets can show the threshold); no
/// reading when neither can (the long window's blind spot says why).
pub(super) fn latency_short(
    out: &mut Vec<Observation>,
    config: &PrometheusConfig,
    thresholds: &[f64],
    lowr: Answer,
    highr: Answer,
) {
    let name = "prometheus.slow_share_short";
    // The histogram is chosen by the highest threshold (one that can show it can show every lower
    // one), exactly as `latency` chooses, so both windows read the same histogram; the share is
    // over the lowest, the first a rule fires at.
    let top = thresholds.last().copied().unwrap_or(DEFAULT_THRESHOLD);
    let low = thresholds.first().copied().unwrap_or(DEFAULT_THRESHOLD);
    let (lowr, highr) = (layout(lowr, Some("handler")), layout(highr, None));
    let can = |l: &Layout| l.can_exceed(top);
    let (histogram, groups) = match (lowr, highr) {
        (Layout::Failed(f), _) | (_, Layout::Failed(f)) => {
            out.push(Observation::new(
                Key::new(name).with("handler", "*").with("histogram", "*"),
                Outcome::Unknown(f),
            ));
            return;
        }
        (l, _) if can(&l) => match l {
            Layout::Found(g) => (&config.latency_histogram, g),
            _ => unreachable!("can() holds only for found histograms"),
        },
        (_, h) if can(&h) => match h {
            Layout::Found(g) => (&config.latency_highr_histogram, g),
            _ => unreachable!("can() holds only for found histograms"),
        },
        _ => {
            out.push(Observation::new(
                Key::new(name).with("handler", "*").with("histogram", "*"),
                Outcome::NoData(Msg::new(MsgId::NoHistogramCanShow).arg("threshold", secs(top))),
            ));
            return;
        }
    };
    for (handler, buckets) in groups.iter().take(MAX_SERIES) {
        let key = Key::new(name)
            .with("handler", handler.as_str())
            .with("histogram", histogram.as_str());
        out.push(slow_share(key, buckets, low));
    }
}

/// The latency readings: p95 and the share of slow requests, from the histogram able to show the
/// thresholds, with the slow handlers named when it is the label-less one; blind spots otherwise.
pub(super) fn latency(
    out: &mut Vec<Observation>,
    config: &PrometheusConfig,
    thresholds: &[f64],
    lowr: Answer,
    highr: Answer,
) {
    let (lowr_name, highr_name) = (&config.latency_histogram, &config.latency_highr_histogram);
    let top_threshold = thresholds.last().copied().unwrap_or(DEFAULT_THRESHOLD);
    let low_threshold = thresholds.first().copied().unwrap_or(DEFAULT_THRESHOLD);
    let lowr = layout(lowr, Some("handler"));
    let highr = layout(highr, None);
    let p95 = "prometheus.p95_seconds";
    // Preference order: the per-handler histogram when it can show the highest threshold (it names
    // the handler), else the high-resolution one (all handlers together), else a blind spot.
    let can = |l: &Layout| l.can_exceed(top_threshold);
    let describe = |name: &str, l: &Layout| match l {
        Layout::Found(g) => Msg::new(MsgId::HasBuckets)
            .arg("name", name)
            .arg("bounds", bounds_text(&all_bounds(g))),
        Layout::Missing => Msg::new(MsgId::NoSeries).arg("name", name),
        Layout::Failed(f) => Msg::new(MsgId::CouldNotRead)
            .arg("name", name)
            .peer("failure", f),
    };
    if let (Layout::Failed(f), _) | (_, Layout::Failed(f)) = (&lowr, &highr) {
        // A refused query: nothing can be said about the layout, so no blind spot either.
        for name in [p95, "prometheus.slow_share"] {
            out.push(Observation::new(
                Key::new(name).with("handler", "*").with("histogram", "*"),
                Outcome::Unknown(f.clone()),
            ));
        }
        return;
    }
    if can(&lowr) {
        let Layout::Found(groups) = lowr else {
            unreachable!("can() holds only for found histograms")
        };
        per_handler(out, lowr_name, &groups, low_threshold, config);
        return;
    }
    if can(&highr) {
        let Layout::Found(all) = highr else {
            unreachable!("can() holds only for found histograms")
        };
        let buckets = all.into_values().next().unwrap_or_default();
        let mut why = vec![match &lowr {
            Layout::Found(g) => Msg::new(MsgId::AllHandlersLowrShort)
                .arg("highr", highr_name)
                .arg("lowr", lowr_name)
                .arg("top", secs(all_bounds(g).last().copied().unwrap_or(0.0)))
                .arg("threshold", secs(top_threshold)),
            _ => Msg::new(MsgId::AllHandlersNoLowr)
                .arg("highr", highr_name)
                .arg("lowr", lowr_name),
        }];
        if !config.exclude_handlers.is_empty() {
            why.push(
                Msg::new(MsgId::CannotExclude)
                    .arg("highr", highr_name)
                    .arg("excluded", config.exclude_handlers.join(", ")),
            );
        }
        let slow = if let Layout::Found(g) = &lowr {
            slow_handlers(out, g)
        } else {
            Vec::new()
        };
        if !slow.is_empty() {
            why.push(
                Msg::new(MsgId::SlowHandlers)
                    .arg("lowr", lowr_name)
                    .arg("handlers", slow.join(", ")),
            );
        }
        let key = |name| {
            Key::new(name)
                .with("handler", "*")
                .with("histogram", highr_name.as_str())
        };
        out.push(
            Observation::number(key(p95), buckets.quantile(QUANTILE)).with_note(Msg::list(why)),
        );
        out.push(slow_share(
            key("prometheus.slow_share"),
            &buckets,
            low_threshold,
        ));
        return;
    }
    // Neither histogram can show the threshold: a blind spot, and what can be read is still read.
    let detail = Msg::new(MsgId::FixBuckets)
        .arg("threshold", secs(top_threshold))
        .msg("lowr", describe(lowr_name, &lowr))
        .msg("highr", describe(highr_name, &highr))
        .msg("fix", bucket_fix(top_threshold));
    let reason = match (&lowr, &highr) {
        (Layout::Missing, Layout::Missing) => "no_series",
        _ => "buckets",
    };
    out.push(Observation::said(
        Key::new("prometheus.blind_spot")
            .with("obs", p95)
            .with("reason", reason),
        detail,
    ));
    match (lowr, highr) {
        (Layout::Found(groups), _) => per_handler(out, lowr_name, &groups, low_threshold, config),
        (_, Layout::Found(all)) => {
            let buckets = all.into_values().next().unwrap_or_default();
            let key = Key::new(p95)
                .with("handler", "*")
                .with("histogram", highr_name.as_str());
            out.push(Observation::number(key, buckets.quantile(QUANTILE)));
        }
        _ => out.push(Observation::new(
            Key::new(p95).with("handler", "*").with("histogram", "*"),
            Outcome::NoData(
                Msg::new(MsgId::NeitherHistogram)
                    .arg("lowr", lowr_name)
                    .arg("highr", highr_name),
            ),
        )),
    }
}

/// p95 and slow share per handler from the per-handler histogram. At most [`MAX_SERIES`]
/// handlers, in name order, so a backend that templates nothing (a handler per URL) cannot grow
/// the evidence table without bound; the cut is logged at every poll it happens.
fn per_handler(
    out: &mut Vec<Observation>,
    name: &str,
    groups: &BTreeMap<String, Buckets>,
    threshold: f64,
    config: &PrometheusConfig,
) {
    if groups.len() > MAX_SERIES {
        tracing::warn!(
            handlers = groups.len(),
            kept = MAX_SERIES,
            "too many handlers; the rest are ignored"
        );
    }
    let excluded = if config.exclude_handlers.is_empty() {
        Msg::list(Vec::new())
    } else {
        Msg::new(MsgId::Without).arg("excluded", config.exclude_handlers.join(", "))
    };
    for (handler, buckets) in groups.iter().take(MAX_SERIES) {
        let key = |n| {
            Key::new(n)
                .with("handler", handler.as_str())
                .with("histogram", name)
        };
        let note = Msg::new(MsgId::PerHandler)
            .arg("histogram", name)
            .msg("excluded", excluded.clone());
        out.push(
            Observation::number(key("prometheus.p95_seconds"), buckets.quantile(QUANTILE))
                .with_note(note),
        );
        out.push(slow_share(key("prometheus.slow_share"), buckets, threshold));
    }
}

/// The share of requests slower than `threshold`, saying how it was read.
pub(super) fn slow_share(key: Key, buckets: &Buckets, threshold: f64) -> Observation {
    match buckets.share_above(threshold) {
        Some((share, Exactness::Exact(bound))) => Observation::number(key, share)
            .with_note(Msg::new(MsgId::SlowExact).arg("bound", Value::Number(bound))),
        Some((share, Exactness::Interpolated(lo, hi))) => Observation::number(key, share)
            .with_note(
                Msg::new(MsgId::SlowEstimated)
                    .arg("threshold", secs(threshold))
                    .arg("lo", secs(lo))
                    .arg("hi", secs(hi)),
            ),
        None if buckets.total().is_some_and(|t| t > 0.0) => Observation::new(
            key,
            Outcome::NoData(
                Msg::new(MsgId::BucketsStop)
                    .arg("top", secs(buckets.top().unwrap_or(0.0)))
                    .arg("threshold", secs(threshold)),
            ),
        ),
        None => Observation::new(key, Outcome::NoData(Msg::new(MsgId::NoRequestsInWindow))),
    }
}

/// Each handler's share of requests above the per-handler histogram's top bucket (it can say no
/// more), as observations; returns the handlers where it is above 5 %, slowest first, as text.
/// Above 5 % (`1 - QUANTILE`) means that handler's own p95 lies above the top bucket: the
/// handlers that may be behind an all-handlers p95 over the threshold. Five named are enough for
/// the note.
fn slow_handlers(out: &mut Vec<Observation>, groups: &BTreeMap<String, Buckets>) -> Vec<String> {
    let mut slow = Vec::new();
    for (handler, buckets) in groups.iter().take(MAX_SERIES) {
        let Some(top) = buckets.top() else { continue };
        let key = Key::new("prometheus.handler_slow_share").with("handler", handler.as_str());
        match buckets.share_above(top) {
            Some((share, _)) => {
                out.push(
                    Observation::number(key, share)
                        .with_note(Msg::new(MsgId::ShareAboveTop).arg("top", secs(top))),
                );
                if share > 1.0 - QUANTILE {
                    slow.push((
                        share,
                        format!("{handler} {} above {}", percent(share), secs(top)),
                    ));
                }
            }
            None => out.push(Observation::new(
                key,
                Outcome::NoData(Msg::new(MsgId::NoRequestsInWindow)),
            )),
        }
    }
    slow.sort_by(|a, b| b.0.total_cmp(&a.0));
    slow.into_iter().take(5).map(|(_, t)| t).collect()
}
