//! The Prometheus probe: the runbook's evidence from the backend's own metrics, as the real
//! prometheus-fastapi-instrumentator exports them.
//!
//! Requests go through `prometheus-http-query` over our own reqwest client (with timeouts; the crate's
//! default client has none), and answers are read with a size cap before they are parsed, so a proxy's
//! error page or a runaway query cannot flood memory.
//!
//! # Five queries, the formulas here
//!
//! Each poll asks, concurrently, for raw rates grouped as finely as the formulas need, and computes the
//! runbook's readings itself (see [`queries`]):
//!
//! - the per-handler latency histogram's buckets, `sum by (handler, le) (rate(…_bucket[5m]))`;
//! - the label-less high-resolution histogram's buckets, `sum by (le) (rate(…_bucket[5m]))`;
//! - the requests by handler and status, `sum by (handler, status) (rate(http_requests_total[5m]))`;
//! - the usual requests by handler and status, `sum by (handler, status) (rate(…[1h] offset 5m))`;
//! - `up`, for the backend's scrape job (and the jobs there are, to name them when it is missing).
//!
//! Every query with a `handler` label leaves out `exclude_handlers` (the scrape endpoint and health
//! checks are not traffic). The buckets come with the answer, so the probe sees the histogram layout
//! the backend really has: the library's default per-handler buckets stop at 1 s, and a quantile over
//! them can never exceed 1 s. The p95 is read from the per-handler histogram when one of its finite
//! buckets lies above the runbook's threshold, else from the high-resolution one (all handlers; the
//! slow handlers are named from the per-handler histogram's share of requests over its top bucket);
//! the share of requests slower than the threshold is exact from the bucket at the threshold when
//! there is one. The quantile is Prometheus' own `histogram_quantile` algorithm. A reading that cannot
//! show what its rule looks for is reported as a `prometheus.blind_spot`, with the fix.
//!
//! Ratios are zero, not no data, when the backend has traffic but no 5xx (or 401/403) series yet:
//! the instrumentation creates a series at its first request. With status codes grouped (`4xx`), the
//! auth ratio counts each handler's 4xx above its usual share (a wave of 401s on login, or on every
//! handler when the JWT secret is wrong, stands out; a steady trickle of 404/422 does not), leaves out
//! untemplated paths (handler `none`, where scanners' 404s land), and says so.
//!
//! Outcomes, kept apart: Prometheus unreachable, or answering something that is not its API → the
//! source fails (rules over it become unknown); one query refused → that query's keys are unknown,
//! logged once with the query named, and the source stays up; no traffic in the window → no data.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use futures_util::future::join_all;
use prometheus_http_query::error::PrometheusError;
use prometheus_http_query::response::{Data, PromqlResult};
use serde::Deserialize;

use super::http::{error_chain, read_capped, reqwest_failure};
use super::{BuildError, Probe, truncate};
use crate::clock::Timestamp;
use crate::config::PrometheusConfig;
use crate::observe::{Failure, FailureKind, Key, Observation, Outcome, Value};

/// Largest answer read from Prometheus. Buckets by handler are a few KiB per handler; this leaves room
/// for large handler sets while bounding memory.
pub const MAX_BODY: usize = 4 << 20;

/// At most this many series of one observation are kept (the rest are dropped and logged).
pub const MAX_SERIES: usize = 500;

/// Longest decode error quoted in a failure, in characters.
const MAX_ERROR: usize = 200;

/// The quantile the runbook's latency symptom reads.
const QUANTILE: f64 = 0.95;

/// The threshold assumed when no rule compares the p95 with a number (the runbook's 3 s).
const DEFAULT_THRESHOLD: f64 = 3.0;

/// Polls the configured Prometheus.
pub struct PrometheusProbe {
    config: PrometheusConfig,
    client: prometheus_http_query::Client,
    queries: Queries,
    /// The p95 thresholds the runbook's rules fire above, ascending (never empty).
    thresholds: Vec<f64>,
    /// Refusals already logged (logged once, counted every time).
    reported: HashSet<String>,
    /// The latest baseline and history answers, and when they were read (monotonic time: the
    /// refresh is about load on Prometheus, not about the watched clock).
    baseline: Option<(std::time::Instant, Traffic, Answer)>,
}

impl std::fmt::Debug for PrometheusProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusProbe")
            .field("url", &crate::redact_url(&self.config.url))
            .finish_non_exhaustive()
    }
}

/// The PromQL a poll sends, built from the configuration. The first three answer for both windows at
/// once: each series carries `window="long"` or `window="short"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queries {
    /// The per-handler histogram's bucket rates by handler and `le`.
    pub lowr: String,
    /// The label-less histogram's bucket rates by `le`.
    pub highr: String,
    /// Request rates by handler and status.
    pub requests: String,
    /// The usual request rates by handler and status, just before the long window (read every
    /// [`BASELINE_REFRESH`], not every poll: it moves slowly).
    pub baseline: String,
    /// At how many of [`HISTORY_STEPS`] points of the baseline window any request series existed
    /// (read with `baseline`): a baseline averaged mostly over empty time is not one.
    pub history: String,
    /// Every target's `up`.
    pub up: String,
}

/// How often the baseline and its history are read again.
pub const BASELINE_REFRESH: Duration = Duration::from_secs(60);

/// The baseline window's history is checked at this many points.
const HISTORY_STEPS: u32 = 60;

/// The share of those points that must hold data for the baseline to count.
const HISTORY_NEEDED: f64 = 0.9;

/// The queries for `config`.
pub fn queries(config: &PrometheusConfig) -> Queries {
    let long = promql_duration(config.window);
    let short = promql_duration(config.short_window);
    let filter = handler_filter(&config.exclude_handlers);
    let sel = |metric: &str| {
        if filter.is_empty() {
            metric.to_owned()
        } else {
            format!("{metric}{{{filter}}}")
        }
    };
    // One query for both windows: the same expression over each range, told apart by a label.
    let both = |expr: &dyn Fn(&str) -> String| {
        format!(
            "label_replace({}, \"window\", \"long\", \"\", \"\") or label_replace({}, \"window\", \"short\", \"\", \"\")",
            expr(&long),
            expr(&short)
        )
    };
    let lowr = sel(&format!("{}_bucket", config.latency_histogram));
    let highr = format!("{}_bucket", config.latency_highr_histogram);
    let requests = sel(&config.requests_metric);
    let base = promql_duration(config.baseline_window);
    let step =
        promql_duration((config.baseline_window / HISTORY_STEPS).max(Duration::from_millis(1)));
    Queries {
        lowr: both(&|w| format!("sum by (handler, le) (rate({lowr}[{w}]))")),
        highr: both(&|w| format!("sum by (le) (rate({highr}[{w}]))")),
        requests: both(&|w| format!("sum by (handler, status) (rate({requests}[{w}]))")),
        baseline: format!("sum by (handler, status) (rate({requests}[{base}] offset {long}))"),
        history: format!("count_over_time((sum({requests}))[{base}:{step}] offset {long})"),
        up: "up".to_owned(),
    }
}

/// The single PromQL expressions equivalent to the probe's readings, for people and benchmarks
/// (`p95` per handler, `error_ratio`): what to paste into Prometheus to see what the probe sees.
pub fn equivalent_promql(config: &PrometheusConfig, reading: &str) -> Option<String> {
    let w = promql_duration(config.window);
    let filter = handler_filter(&config.exclude_handlers);
    let with = |extra: &str| match (filter.is_empty(), extra.is_empty()) {
        (true, true) => String::new(),
        (true, false) => format!("{{{extra}}}"),
        (false, true) => format!("{{{filter}}}"),
        (false, false) => format!("{{{extra}, {filter}}}"),
    };
    let req = &config.requests_metric;
    Some(match reading {
        "p95" => format!(
            "histogram_quantile({QUANTILE}, sum by (le, handler) (rate({}_bucket{}[{w}])))",
            config.latency_histogram,
            with("")
        ),
        "p95_highr" => format!(
            "histogram_quantile({QUANTILE}, sum by (le) (rate({}_bucket[{w}])))",
            config.latency_highr_histogram
        ),
        "error_ratio" => format!(
            "(sum(rate({req}{}[{w}])) or vector(0)) / sum(rate({req}{}[{w}]))",
            with(r#"status=~"5..""#),
            with("")
        ),
        _ => return None,
    })
}

/// `handler!~"…"` leaving out `handlers` exactly, or nothing when there are none.
fn handler_filter(handlers: &[String]) -> String {
    if handlers.is_empty() {
        return String::new();
    }
    let alternatives: Vec<String> = handlers.iter().map(|h| regex::escape(h)).collect();
    let regex = alternatives.join("|");
    format!(
        "handler!~\"{}\"",
        regex.replace('\\', "\\\\").replace('"', "\\\"")
    )
}

/// A duration as PromQL writes one: whole seconds (`300s`), milliseconds below a second.
fn promql_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

impl PrometheusProbe {
    /// A probe checking the runbook's default latency threshold.
    pub fn new(config: PrometheusConfig) -> Result<Self, BuildError> {
        Self::with_thresholds(config, &[])
    }

    /// A probe whose latency readings must be able to show p95 above each of `thresholds` (seconds;
    /// the runbook's rules over `prometheus.p95_seconds`).
    pub fn with_thresholds(
        config: PrometheusConfig,
        thresholds: &[f64],
    ) -> Result<Self, BuildError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(2)))
            .build()
            .map_err(|e| {
                BuildError(format!(
                    "cannot build the Prometheus client: {}",
                    error_chain(&e)
                ))
            })?;
        let client = prometheus_http_query::Client::from(http, config.url.as_str())
            .map_err(|e| BuildError(format!("prometheus.url: {e}")))?;
        let mut thresholds: Vec<f64> = thresholds
            .iter()
            .copied()
            .filter(|t| t.is_finite() && *t > 0.0)
            .collect();
        if thresholds.is_empty() {
            thresholds.push(DEFAULT_THRESHOLD);
        }
        thresholds.sort_by(f64::total_cmp);
        thresholds.dedup();
        Ok(Self {
            queries: queries(&config),
            config,
            client,
            thresholds,
            reported: HashSet::new(),
            baseline: None,
        })
    }

    /// The queries each poll sends.
    pub fn queries(&self) -> &Queries {
        &self.queries
    }

    /// Runs one instant query: its samples, or why not.
    async fn query(&self, promql: &str) -> Answer {
        let response = match self.client.query(promql).get_raw().await {
            Ok(r) => r,
            Err(e) => return Answer::SourceDown(client_failure(&e)),
        };
        let status = response.status();
        let is_json = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json {
            return Answer::SourceDown(Failure::new(
                FailureKind::Status,
                format!(
                    "HTTP {status} without the Prometheus API's JSON (a proxy or another service?)"
                ),
            ));
        }
        match read_capped(response, MAX_BODY).await {
            Ok(body) => interpret(promql, status, &body),
            Err(f) => Answer::SourceDown(f),
        }
    }

    /// Logs something wrong with the backend's metrics or a query the first time it is seen.
    fn note_once(&mut self, what: &str, detail: &str) {
        if self.reported.insert(detail.to_owned()) {
            tracing::error!(what, detail, "Prometheus evidence is incomplete");
        }
    }
}

/// The Prometheus API envelope.
#[derive(Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
enum ApiAnswer {
    Success { data: PromqlResult },
    Error(PrometheusError),
}

/// One query's outcome.
#[derive(Debug, Clone)]
enum Answer {
    /// The samples, labels and value, in Prometheus' order.
    Samples(Vec<Sample>),
    /// Prometheus answered but refused this query.
    Refused(Failure),
    /// Prometheus could not be read at all.
    SourceDown(Failure),
}

/// What one JSON answer of the query API says: its samples, a refusal of `promql` (with Prometheus'
/// own message), or that the body is not the API's answer at all (quoting the decode error only in
/// part: it can hold the body's text).
fn interpret(promql: &str, status: reqwest::StatusCode, body: &[u8]) -> Answer {
    match serde_json::from_slice::<ApiAnswer>(body) {
        Ok(ApiAnswer::Success { data }) => Answer::Samples(samples(&data)),
        Ok(ApiAnswer::Error(e)) if e.is_bad_data() => Answer::Refused(Failure::new(
            FailureKind::Query,
            format!("{promql}: {}", e.message()),
        )),
        Ok(ApiAnswer::Error(e)) => Answer::Refused(Failure::new(
            FailureKind::Status,
            format!("{promql}: {} ({:?})", e.message(), e.error_type()),
        )),
        // serde quotes a wrong value whole; the detail goes to logs and pages, so it is cut short.
        Err(e) => Answer::SourceDown(Failure::new(
            FailureKind::Malformed,
            format!(
                "HTTP {status}: not a Prometheus answer: {}",
                truncate(&e.to_string(), MAX_ERROR)
            ),
        )),
    }
}

fn samples(result: &PromqlResult) -> Vec<Sample> {
    match result.data() {
        Data::Vector(v) => v
            .iter()
            .map(|s| {
                let mut labels: Vec<_> = s
                    .metric()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                labels.sort();
                (labels, s.sample().value())
            })
            .collect(),
        Data::Scalar(s) => vec![(Vec::new(), s.value())],
        Data::Matrix(_) => Vec::new(),
    }
}

fn client_failure(e: &prometheus_http_query::Error) -> Failure {
    match e {
        prometheus_http_query::Error::Client(c) => match c.inner() {
            Some(inner) => reqwest_failure(inner),
            None => Failure::new(FailureKind::Other, c.to_string()),
        },
        other => Failure::new(FailureKind::Other, other.to_string()),
    }
}

impl Probe for PrometheusProbe {
    fn source(&self) -> &str {
        "prometheus"
    }

    fn interval(&self) -> Duration {
        self.config.interval
    }

    fn fast_interval(&self) -> Option<Duration> {
        Some(self.config.fast_interval)
    }

    fn timeout(&self) -> Duration {
        // One poll runs its queries concurrently: the poll is bounded by the per-request timeout plus
        // a margin for reading and parsing.
        self.config.timeout + Duration::from_millis(500)
    }

    async fn poll(&mut self, _now: Timestamp) -> Result<Vec<Observation>, Failure> {
        let refresh = BASELINE_REFRESH.min(self.config.baseline_window / 10);
        let stale = self
            .baseline
            .as_ref()
            .is_none_or(|(at, ..)| at.elapsed() >= refresh);
        let q = &self.queries;
        let mut texts = vec![&q.lowr, &q.highr, &q.requests, &q.up];
        if stale {
            texts.extend([&q.baseline, &q.history]);
        }
        let mut answers = join_all(texts.iter().map(|t| self.query(t))).await;
        if let Some(Answer::SourceDown(f)) =
            answers.iter().find(|a| matches!(a, Answer::SourceDown(_)))
        {
            return Err(f.clone());
        }
        for answer in &answers {
            if let Answer::Refused(f) = answer {
                let detail = format!("Prometheus refused a query: {}", f.detail);
                self.note_once("query", &detail);
            }
        }
        if stale {
            let history = answers.pop().expect("the history answer");
            let baseline = Traffic::of(answers.pop().expect("the baseline answer"));
            self.baseline = Some((std::time::Instant::now(), baseline, history));
        }
        let [lowr, highr, requests, up] =
            <[Answer; 4]>::try_from(answers).expect("four queries, four answers");
        let (baseline, history) = match &self.baseline {
            Some((_, b, h)) => (b, h),
            None => unreachable!("read above when missing"),
        };
        let mut out = Vec::new();
        let (lowr, lowr_short) = by_window(lowr);
        let (highr, highr_short) = by_window(highr);
        let (requests, requests_short) = by_window(requests);
        latency(&mut out, &self.config, &self.thresholds, lowr, highr);
        latency_short(
            &mut out,
            &self.config,
            &self.thresholds,
            lowr_short,
            highr_short,
        );
        ratios(&mut out, &self.config, requests, baseline);
        let total = ratios_short(&mut out, &self.config, requests_short, baseline);
        rates(
            &mut out,
            total,
            baseline,
            history_points(history),
            &self.config,
        );
        backend_up(&mut out, &self.config.backend_job, up);
        for o in &out {
            if let (
                Key {
                    name: "prometheus.blind_spot",
                    ..
                },
                Outcome::Value(Value::Text(t)),
            ) = (&o.key, &o.outcome)
            {
                let detail = t.clone();
                self.note_once("blind spot", &detail);
            }
        }
        Ok(out)
    }
}

/// A sample's labels and value.
type Sample = (Vec<(String, String)>, f64);

fn label<'a>(labels: &'a [(String, String)], name: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `3 s`, `0.5 s`, `1 s`.
fn secs(v: f64) -> String {
    format!("{} s", Value::Number(v))
}

/// `12%`, `0.5%`.
fn percent(v: f64) -> String {
    format!("{}%", Value::Number((v * 1000.0).round() / 10.0))
}

// ------------------------------------------------------------------------------------------------
// Histograms
// ------------------------------------------------------------------------------------------------

/// One histogram's cumulative bucket rates, ascending by upper bound, `+Inf` last.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets(Vec<(f64, f64)>);

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
        let mut rank = q * observations;
        let i = b.partition_point(|x| x.1 < rank);
        if i >= b.len() - 1 {
            return b[b.len() - 2].0;
        }
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
enum Layout {
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

fn layout(answer: Answer, by: Option<&str>) -> Layout {
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
fn bucket_fix(threshold: f64) -> String {
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
    format!(
        "Instrumentator().instrument(app, latency_lowr_buckets=({})).expose(app) in the backend \
         (prometheus-fastapi-instrumentator; buckets that include {} and go above it)",
        bounds_text(&buckets),
        secs(threshold)
    )
}

/// The two windows of a query that asked for both (`window="long"` and `"short"`), each without
/// that label; a failure is both windows' failure.
fn by_window(answer: Answer) -> (Answer, Answer) {
    match answer {
        Answer::Samples(samples) => {
            let (mut long, mut short) = (Vec::new(), Vec::new());
            for (mut labels, v) in samples {
                let window = labels
                    .iter()
                    .position(|(k, _)| k == "window")
                    .map(|i| labels.remove(i).1);
                match window.as_deref() {
                    Some("short") => short.push((labels, v)),
                    _ => long.push((labels, v)),
                }
            }
            (Answer::Samples(long), Answer::Samples(short))
        }
        other => (other.clone(), other),
    }
}

/// The share of requests slower than the lowest threshold over the short window, from the same
/// histogram the long window's p95 comes from (the one whose buckets can show the threshold); no
/// reading when neither can (the long window's blind spot says why).
fn latency_short(
    out: &mut Vec<Observation>,
    config: &PrometheusConfig,
    thresholds: &[f64],
    lowr: Answer,
    highr: Answer,
) {
    let name = "prometheus.slow_share_short";
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
                Outcome::NoData(format!(
                    "no latency histogram can show {} (see prometheus.blind_spot)",
                    secs(top)
                )),
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
fn latency(
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
    let can = |l: &Layout| l.can_exceed(top_threshold);
    let describe = |name: &str, l: &Layout| match l {
        Layout::Found(g) => format!("{name} has buckets {}", bounds_text(&all_bounds(g))),
        Layout::Missing => format!("Prometheus has no {name} series"),
        Layout::Failed(f) => format!("{name} could not be read ({f})"),
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
        let mut why = match &lowr {
            Layout::Found(g) => format!(
                "all handlers, from {highr_name}: {lowr_name} has buckets up to {} only, below the {} threshold",
                secs(all_bounds(g).last().copied().unwrap_or(0.0)),
                secs(top_threshold)
            ),
            _ => format!("all handlers, from {highr_name}: Prometheus has no {lowr_name} series"),
        };
        if !config.exclude_handlers.is_empty() {
            why.push_str(&format!(
                "; {highr_name} has no handler label, so {} cannot be left out",
                config.exclude_handlers.join(", ")
            ));
        }
        let slow = if let Layout::Found(g) = &lowr {
            slow_handlers(out, g)
        } else {
            Vec::new()
        };
        if !slow.is_empty() {
            why.push_str(&format!(
                "; slow handlers ({lowr_name}, share of requests above its top bucket): {}",
                slow.join(", ")
            ));
        }
        let key = |name| {
            Key::new(name)
                .with("handler", "*")
                .with("histogram", highr_name.as_str())
        };
        out.push(Observation::number(key(p95), buckets.quantile(QUANTILE)).with_note(why.clone()));
        out.push(slow_share(
            key("prometheus.slow_share"),
            &buckets,
            low_threshold,
        ));
        return;
    }
    // Neither histogram can show the threshold: a blind spot, and what can be read is still read.
    let detail = format!(
        "p95 > {} cannot be seen: {}; {}. Fix: {}",
        secs(top_threshold),
        describe(lowr_name, &lowr),
        describe(highr_name, &highr),
        bucket_fix(top_threshold)
    );
    let reason = match (&lowr, &highr) {
        (Layout::Missing, Layout::Missing) => "no_series",
        _ => "buckets",
    };
    out.push(Observation::text(
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
            Outcome::NoData(format!(
                "Prometheus has neither {lowr_name} nor {highr_name} series"
            )),
        )),
    }
}

/// p95 and slow share per handler from the per-handler histogram.
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
        String::new()
    } else {
        format!(", without {}", config.exclude_handlers.join(", "))
    };
    for (handler, buckets) in groups.iter().take(MAX_SERIES) {
        let key = |n| {
            Key::new(n)
                .with("handler", handler.as_str())
                .with("histogram", name)
        };
        let note = format!("per handler, from {name}{excluded}");
        out.push(
            Observation::number(key("prometheus.p95_seconds"), buckets.quantile(QUANTILE))
                .with_note(note),
        );
        out.push(slow_share(key("prometheus.slow_share"), buckets, threshold));
    }
}

/// The share of requests slower than `threshold`, saying how it was read.
fn slow_share(key: Key, buckets: &Buckets, threshold: f64) -> Observation {
    match buckets.share_above(threshold) {
        Some((share, Exactness::Exact(bound))) => {
            Observation::number(key, share).with_note(format!(
                "exact: requests above the le=\"{}\" bucket, over all requests",
                Value::Number(bound)
            ))
        }
        Some((share, Exactness::Interpolated(lo, hi))) => Observation::number(key, share)
            .with_note(format!(
                "estimated: no bucket at {}, interpolated between {} and {}",
                secs(threshold),
                secs(lo),
                secs(hi)
            )),
        None if buckets.total().is_some_and(|t| t > 0.0) => Observation::new(
            key,
            Outcome::NoData(format!(
                "the buckets stop at {}, below {}",
                secs(buckets.top().unwrap_or(0.0)),
                secs(threshold)
            )),
        ),
        None => Observation::new(key, Outcome::NoData("no requests in the window".into())),
    }
}

/// Each handler's share of requests above the per-handler histogram's top bucket (it can say no
/// more), as observations; returns the handlers where it is above 5 %, slowest first, as text.
fn slow_handlers(out: &mut Vec<Observation>, groups: &BTreeMap<String, Buckets>) -> Vec<String> {
    let mut slow = Vec::new();
    for (handler, buckets) in groups.iter().take(MAX_SERIES) {
        let Some(top) = buckets.top() else { continue };
        let key = Key::new("prometheus.handler_slow_share").with("handler", handler.as_str());
        match buckets.share_above(top) {
            Some((share, _)) => {
                out.push(
                    Observation::number(key, share)
                        .with_note(format!("share of its requests above {}", secs(top))),
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
                Outcome::NoData("no requests in the window".into()),
            )),
        }
    }
    slow.sort_by(|a, b| b.0.total_cmp(&a.0));
    slow.into_iter().take(5).map(|(_, t)| t).collect()
}

// ------------------------------------------------------------------------------------------------
// Ratios and rates
// ------------------------------------------------------------------------------------------------

/// The error and auth ratios from the requests by handler and status; returns the total rate (for
/// the request rate), or the outcome standing in for it.
fn ratios(
    out: &mut Vec<Observation>,
    config: &PrometheusConfig,
    requests: Answer,
    baseline: &Traffic,
) -> Outcome {
    let error = Key::new("prometheus.error_ratio");
    let auth = Key::new("prometheus.auth_failure_ratio");
    let exact = Key::new("prometheus.auth_exact");
    let samples = match requests {
        Answer::Samples(s) => s,
        Answer::Refused(f) | Answer::SourceDown(f) => {
            for k in [error, auth, exact] {
                out.push(Observation::new(k, Outcome::Unknown(f.clone())));
            }
            return Outcome::Unknown(f);
        }
    };
    let metric = &config.requests_metric;
    if samples.is_empty() {
        let why = format!(
            "Prometheus has no {metric} series: the backend's requests are not there (is it scraped? is it instrumented?)"
        );
        out.push(Observation::text(
            Key::new("prometheus.blind_spot")
                .with("obs", "prometheus.*")
                .with("reason", "no_series"),
            format!(
                "{why}. Fix: instrument the backend (Instrumentator().instrument(app).expose(app)) and add it to Prometheus' scrape_configs as job {:?}, or set prometheus.requests_metric",
                config.backend_job
            ),
        ));
        for k in [error, auth, exact] {
            out.push(Observation::new(k, Outcome::NoData(why.clone())));
        }
        return Outcome::NoData(why);
    }
    let rate = |pred: &dyn Fn(&str, &str) -> bool| -> (f64, bool) {
        let mut sum = 0.0;
        let mut any = false;
        for (labels, v) in &samples {
            let status = label(labels, "status").unwrap_or("");
            let handler = label(labels, "handler").unwrap_or("");
            if pred(handler, status) && v.is_finite() {
                sum += v;
                any = true;
            }
        }
        (sum, any)
    };
    let (total, _) = rate(&|_, _| true);
    if total <= 0.0 {
        let why = "no requests in the window".to_owned();
        for k in [error, auth, exact] {
            out.push(Observation::new(k, Outcome::NoData(why.clone())));
        }
        return Outcome::NoData(why);
    }
    let (errors, any_5xx) = rate(&|_, s| s.starts_with('5'));
    let mut e = Observation::number(error, errors / total);
    if !any_5xx {
        e = e.with_note(format!(
            "no 5xx series yet: 0 of {} requests/s",
            Value::Number(total)
        ));
    }
    out.push(e);

    let is_exact = |s: &str| s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit());
    let grouped = samples
        .iter()
        .any(|(l, _)| label(l, "status").is_some_and(|s| s.ends_with("xx")));
    let exact_codes = samples
        .iter()
        .any(|(l, _)| label(l, "status").is_some_and(is_exact));
    if exact_codes || !grouped {
        let (failures, any) = rate(&|_, s| s == "401" || s == "403");
        let mut o = Observation::number(auth, failures / total);
        if !any {
            o = o.with_note("no 401/403 series yet: 0");
        }
        out.push(o);
        out.push(Observation::boolean(exact, true));
    } else {
        let (failures, notes) = excess_4xx(&samples, baseline);
        let mut note = "status codes are grouped, so 401/403 cannot be told from 404/422: counted each handler's 4xx above its usual share, over all requests".to_owned();
        if !notes.is_empty() {
            note.push_str(&format!(" ({})", notes.join(", ")));
        }
        note.push_str("; for exact codes: Instrumentator(should_group_status_codes=False)");
        out.push(Observation::number(auth, failures / total).with_note(note));
        out.push(Observation::boolean(exact, false));
    }
    Outcome::number(total)
}

/// The error and auth ratios over the short window (`_short`; the long window's blind spot and
/// `auth_exact` say the rest); returns the short window's total rate, the request rate compared
/// with the baseline.
fn ratios_short(
    out: &mut Vec<Observation>,
    config: &PrometheusConfig,
    requests: Answer,
    baseline: &Traffic,
) -> Outcome {
    let mut long = Vec::new();
    let total = ratios(&mut long, config, requests, baseline);
    for mut o in long {
        o.key.name = match o.key.name {
            "prometheus.error_ratio" => "prometheus.error_ratio_short",
            "prometheus.auth_failure_ratio" => "prometheus.auth_failure_ratio_short",
            _ => continue,
        };
        out.push(o);
    }
    total
}

/// At how many points of the baseline window request series existed, or why that is not known.
fn history_points(history: &Answer) -> Result<f64, Outcome> {
    match history {
        Answer::Samples(s) => Ok(s.first().map_or(0.0, |(_, v)| *v)),
        Answer::Refused(f) | Answer::SourceDown(f) => Err(Outcome::Unknown(f.clone())),
    }
}

/// The usual traffic: request rates by handler and status over the baseline window.
#[derive(Debug)]
enum Traffic {
    Rates(Vec<Sample>),
    Failed(Failure),
}

impl Traffic {
    fn of(answer: Answer) -> Self {
        match answer {
            Answer::Samples(s) => Self::Rates(s),
            Answer::Refused(f) | Answer::SourceDown(f) => Self::Failed(f),
        }
    }

    /// The usual share of 4xx of each handler that had traffic (one pass over the baseline).
    fn usual_4xx_shares(&self) -> BTreeMap<&str, f64> {
        let Self::Rates(s) = self else {
            return BTreeMap::new();
        };
        by_handler(s)
            .into_iter()
            .filter(|(_, (total, _))| *total > 0.0)
            .map(|(handler, (total, four))| (handler, four / total))
            .collect()
    }
}

/// Requests per second by handler (untemplated paths, handler `none`, left out): all, and 4xx.
fn by_handler(samples: &[Sample]) -> BTreeMap<&str, (f64, f64)> {
    let mut by_handler: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for (labels, v) in samples {
        let handler = label(labels, "handler").unwrap_or("");
        if handler == "none" || !v.is_finite() {
            continue;
        }
        let entry = by_handler.entry(handler).or_default();
        entry.0 += v;
        if label(labels, "status").is_some_and(|s| s.starts_with('4')) {
            entry.1 += v;
        }
    }
    by_handler
}

/// Requests per second of 4xx above each handler's usual 4xx share (untemplated paths, handler
/// `none`, left out), and notes on handlers without a baseline.
fn excess_4xx(samples: &[Sample], baseline: &Traffic) -> (f64, Vec<String>) {
    let usual_shares = baseline.usual_4xx_shares();
    let mut excess = 0.0;
    let mut unknown = Vec::new();
    for (handler, (total, four)) in by_handler(samples) {
        let usual = usual_shares.get(handler).copied().unwrap_or_else(|| {
            if four > 0.0 {
                unknown.push(handler);
            }
            0.0
        });
        excess += (four - usual * total).max(0.0);
    }
    let notes = if unknown.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "no usual share yet for {}: all its 4xx counted",
            unknown.into_iter().take(5).collect::<Vec<_>>().join(", ")
        )]
    };
    (excess, notes)
}

/// The request rate, its baseline and their ratio. The baseline counts only when Prometheus holds
/// the history it claims: a rate over an hour of which it holds ten minutes averages mostly empty
/// time, and a steady backend would read as a surge.
fn rates(
    out: &mut Vec<Observation>,
    total: Outcome,
    baseline: &Traffic,
    history: Result<f64, Outcome>,
    config: &PrometheusConfig,
) {
    let rate_obs = Observation::new(Key::new("prometheus.request_rate"), total);
    let needed = (f64::from(HISTORY_STEPS) * HISTORY_NEEDED).floor();
    let base_outcome = match (baseline, history) {
        (Traffic::Failed(f), _) => Outcome::Unknown(f.clone()),
        (_, Err(outcome)) => outcome,
        (_, Ok(points)) if points < needed => Outcome::NoData(format!(
            "Prometheus holds requests for only {} of the {} the baseline needs",
            humantime::format_duration(Duration::from_secs(
                (config.baseline_window.as_secs_f64() * points / f64::from(HISTORY_STEPS)) as u64
            )),
            humantime::format_duration(config.baseline_window)
        )),
        (Traffic::Rates(s), Ok(_)) if s.is_empty() => {
            Outcome::NoData("no baseline yet (the window before now is empty)".into())
        }
        (Traffic::Rates(s), Ok(_)) => Outcome::number(s.iter().map(|(_, v)| v).sum::<f64>()),
    };
    let base_obs = Observation::new(Key::new("prometheus.request_rate_baseline"), base_outcome);
    out.push(rate_ratio(&rate_obs.outcome, &base_obs.outcome));
    out.push(rate_obs);
    out.push(base_obs);
}

/// `up` of the backend's job; a missing job is a blind spot naming the jobs Prometheus has.
fn backend_up(out: &mut Vec<Observation>, job: &str, up: Answer) {
    let star = || Key::new("prometheus.backend_up").with("instance", "*");
    match up {
        Answer::Samples(s) => {
            let mine: Vec<_> = s
                .iter()
                .filter(|(l, _)| label(l, "job") == Some(job))
                .take(MAX_SERIES)
                .collect();
            if mine.is_empty() {
                let jobs: BTreeSet<&str> = s.iter().filter_map(|(l, _)| label(l, "job")).collect();
                let jobs = if jobs.is_empty() {
                    "none".to_owned()
                } else {
                    jobs.into_iter().take(10).collect::<Vec<_>>().join(", ")
                };
                out.push(Observation::new(
                    star(),
                    Outcome::NoData(format!("Prometheus has no target for job {job:?}")),
                ));
                out.push(Observation::text(
                    Key::new("prometheus.blind_spot")
                        .with("obs", "prometheus.backend_up")
                        .with("reason", "no_job"),
                    format!(
                        "Prometheus has no target for job {job:?} (its jobs: {jobs}), so a backend Prometheus cannot scrape goes unseen. Fix: set prometheus.backend_job to the backend's job, or add a scrape job {job:?} for it"
                    ),
                ));
            }
            for (labels, v) in mine {
                let instance = label(labels, "instance").unwrap_or("?").to_owned();
                let key = Key::new("prometheus.backend_up").with("instance", instance);
                out.push(Observation::boolean(key, *v >= 1.0));
            }
        }
        Answer::Refused(f) | Answer::SourceDown(f) => {
            out.push(Observation::new(star(), Outcome::Unknown(f)));
        }
    }
}

/// Request rate now over its baseline, when both are numbers and the baseline is above zero.
fn rate_ratio(rate: &Outcome, baseline: &Outcome) -> Observation {
    let key = Key::new("prometheus.request_rate_ratio");
    let outcome = match (rate, baseline) {
        (Outcome::Value(Value::Number(r)), Outcome::Value(Value::Number(b))) if *b > 0.0 => {
            Outcome::number(r / b)
        }
        (Outcome::Value(_), Outcome::Value(_)) => {
            Outcome::NoData("the baseline rate is zero".into())
        }
        (Outcome::Unknown(f), _) | (_, Outcome::Unknown(f)) => Outcome::Unknown(f.clone()),
        (Outcome::NoData(w), _) | (_, Outcome::NoData(w)) => Outcome::NoData(w.clone()),
    };
    Observation::new(key, outcome)
}

#[cfg(test)]
mod tests;
