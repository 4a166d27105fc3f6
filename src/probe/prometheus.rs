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
//!
//! # Files
//!
//! This file is the probe itself (`PrometheusProbe`, its queries sent concurrently, its poll);
//! `promql.rs` builds the queries, `answer.rs` reads one answer, `latency.rs`, `traffic.rs` and `up.rs`
//! compute the readings from the answers. `range.rs` is not part of a poll: it reads one reading's
//! history (`query_range`, [`Reading`]) for a symptom's chart.

mod answer;
mod latency;
mod promql;
mod range;
mod traffic;
mod up;

use std::collections::HashSet;
use std::time::Duration;

use futures_util::future::join_all;

use super::http::{error_chain, read_capped};
use super::{BuildError, Probe};
use crate::clock::Timestamp;
use crate::config::PrometheusConfig;
use crate::locale::{Msg, MsgId};
use crate::observe::{Failure, FailureKind, Key, Observation, Outcome, Value};

use self::answer::{Answer, by_window, client_failure, interpret};
pub use self::latency::{Buckets, Exactness};
use self::latency::{latency, latency_short};
pub use self::promql::{
    BASELINE_REFRESH, Queries, Reading, equivalent_promql, queries, reading_promql,
};
pub use self::range::{MAX_POINTS, RangeFailure, RangeQuery, step_for, unit};
use self::traffic::{Traffic, history_points, rates, ratios, ratios_short};
use self::up::backend_up;

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
        let client = api_client(&config)?;
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
        match json_answer(self.client.query(promql).get_raw()).await {
            Ok((status, body)) => interpret(promql, status, &body),
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

/// The Prometheus API client of `config`: every request bounded by `config.timeout`, a connection
/// by at most 2 s of it. The probe and the chart's range queries (`range.rs`) use the same.
pub(super) fn api_client(
    config: &PrometheusConfig,
) -> Result<prometheus_http_query::Client, BuildError> {
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
    prometheus_http_query::Client::from(http, config.url.as_str())
        .map_err(|e| BuildError(format!("prometheus.url: {e}")))
}

/// Sends a request and reads its answer's body, at most [`MAX_BODY`], when it is the API's JSON;
/// anything else (unreachable, a proxy's HTML page, a body too large) is the failure to report.
pub(super) async fn json_answer(
    request: impl std::future::Future<Output = Result<reqwest::Response, prometheus_http_query::Error>>,
) -> Result<(reqwest::StatusCode, Vec<u8>), Failure> {
    let response = request.await.map_err(|e| client_failure(&e))?;
    let status = response.status();
    let is_json = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Err(Failure::said(
            FailureKind::Status,
            Msg::new(MsgId::NotPrometheusJson).arg("status", status),
        ));
    }
    let body = read_capped(response, MAX_BODY).await?;
    Ok((status, body))
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

/// `3 s`, `0.5 s`, `1 s`.
fn secs(v: f64) -> String {
    format!("{} s", Value::Number(v))
}

/// `12%`, `0.5%`.
fn percent(v: f64) -> String {
    format!("{}%", Value::Number((v * 1000.0).round() / 10.0))
}

#[cfg(test)]
mod tests;
