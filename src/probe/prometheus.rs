//! The Prometheus probe: the runbook's queries against the backend's own metrics.
//!
//! Requests go through `prometheus-http-query` over our own reqwest client (with timeouts; the crate's
//! default client has none), and answers are read with a size cap before they are parsed, so a proxy's
//! error page or a runaway query cannot flood memory.
//!
//! Outcomes, kept apart: Prometheus unreachable, or answering something that is not its API → the
//! source fails (rules over it become unknown); one query refused (bad PromQL) → that query's keys are
//! unknown, logged once with the query named, and the source stays up; an empty result or a NaN → no
//! data (a handler without traffic never fires and never clears anything).

use std::collections::HashSet;
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

/// Largest answer read from Prometheus. A p95 per handler is a few KiB; this leaves room for large
/// handler sets while bounding memory.
pub const MAX_BODY: usize = 4 << 20;

/// At most this many series of one query become observations (the rest are dropped and logged once).
pub const MAX_SERIES: usize = 500;

/// Longest decode error quoted in a failure, in characters.
const MAX_ERROR: usize = 200;

/// Polls the configured Prometheus.
pub struct PrometheusProbe {
    config: PrometheusConfig,
    client: prometheus_http_query::Client,
    /// Queries whose refusal has been logged already (logged once, counted every time).
    reported: HashSet<String>,
}

impl std::fmt::Debug for PrometheusProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusProbe")
            .field("url", &crate::redact_url(&self.config.url))
            .finish_non_exhaustive()
    }
}

impl PrometheusProbe {
    pub fn new(config: PrometheusConfig) -> Result<Self, BuildError> {
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
        Ok(Self {
            config,
            client,
            reported: HashSet::new(),
        })
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

    /// Logs a refused query the first time it is refused.
    fn note_refusal(&mut self, name: &str, failure: &Failure) {
        if self.reported.insert(failure.detail.clone()) {
            tracing::error!(
                query = name,
                detail = %failure.detail,
                "Prometheus refused a runbook query; fix prometheus.queries.{name} (its rules stay unknown)"
            );
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
#[derive(Debug)]
enum Answer {
    /// The samples, labels and value, in Prometheus' order.
    Samples(Vec<(Vec<(String, String)>, f64)>),
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

fn samples(result: &PromqlResult) -> Vec<(Vec<(String, String)>, f64)> {
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

    fn timeout(&self) -> Duration {
        // One poll runs its queries concurrently: the poll is bounded by the per-request timeout plus
        // a margin for reading and parsing.
        self.config.timeout + Duration::from_millis(500)
    }

    async fn poll(&mut self, _now: Timestamp) -> Result<Vec<Observation>, Failure> {
        let q = &self.config.queries;
        let up = format!(
            "up{{job=\"{}\"}}",
            self.config.backend_job.replace('"', "\\\"")
        );
        let texts = [
            &q.p95,
            &q.error_ratio,
            &q.auth_ratio_exact,
            &q.auth_ratio_grouped,
            &q.request_rate,
            &q.request_rate_baseline,
            &up,
        ];
        let answers = join_all(texts.iter().map(|t| self.query(t))).await;
        if let Some(Answer::SourceDown(f)) =
            answers.iter().find(|a| matches!(a, Answer::SourceDown(_)))
        {
            return Err(f.clone());
        }
        let names = [
            "p95",
            "error_ratio",
            "auth_ratio_exact",
            "auth_ratio_grouped",
            "request_rate",
            "request_rate_baseline",
            "backend_up",
        ];
        for (name, answer) in names.iter().zip(&answers) {
            if let Answer::Refused(f) = answer {
                self.note_refusal(name, f);
            }
        }
        let [p95, errors, auth_exact, auth_grouped, rate, baseline, up] =
            <[Answer; 7]>::try_from(answers).expect("seven queries, seven answers");

        let mut out = Vec::new();
        per_series(
            &mut out,
            "prometheus.p95_seconds",
            "handler",
            p95,
            "no handler has traffic in the window",
        );
        out.push(single(
            "prometheus.error_ratio",
            errors,
            "no requests in the window",
        ));
        auth(&mut out, auth_exact, auth_grouped);
        let rate_obs = single("prometheus.request_rate", rate, "no requests in the window");
        let base_obs = single(
            "prometheus.request_rate_baseline",
            baseline,
            "no baseline yet (the window before now is empty)",
        );
        out.push(rate_ratio(&rate_obs.outcome, &base_obs.outcome));
        out.push(rate_obs);
        out.push(base_obs);
        match up {
            Answer::Samples(s) if s.is_empty() => out.push(Observation::new(
                Key::new("prometheus.backend_up").with("instance", "*"),
                Outcome::NoData(format!(
                    "Prometheus has no target for job {:?}",
                    self.config.backend_job
                )),
            )),
            Answer::Samples(s) => {
                for (labels, v) in s.into_iter().take(MAX_SERIES) {
                    let instance = label(&labels, "instance").unwrap_or("?").to_owned();
                    let key = Key::new("prometheus.backend_up").with("instance", instance);
                    out.push(Observation::boolean(key, v >= 1.0));
                }
            }
            Answer::Refused(f) | Answer::SourceDown(f) => out.push(Observation::new(
                Key::new("prometheus.backend_up").with("instance", "*"),
                Outcome::Unknown(f),
            )),
        }
        Ok(out)
    }
}

fn label<'a>(labels: &'a [(String, String)], name: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// One observation per series, told apart by `by` (a query that lost the label gives `*`).
fn per_series(
    out: &mut Vec<Observation>,
    name: &'static str,
    by: &str,
    answer: Answer,
    empty: &str,
) {
    match answer {
        Answer::Samples(s) if s.is_empty() => {
            out.push(Observation::new(
                Key::new(name).with(by, "*"),
                Outcome::NoData(empty.to_owned()),
            ));
        }
        Answer::Samples(s) => {
            if s.len() > MAX_SERIES {
                tracing::warn!(
                    observation = name,
                    series = s.len(),
                    kept = MAX_SERIES,
                    "too many series; the rest are ignored"
                );
            }
            for (labels, v) in s.into_iter().take(MAX_SERIES) {
                let value = label(&labels, by).unwrap_or("*").to_owned();
                out.push(Observation::number(Key::new(name).with(by, value), v));
            }
        }
        Answer::Refused(f) | Answer::SourceDown(f) => {
            out.push(Observation::new(
                Key::new(name).with(by, "*"),
                Outcome::Unknown(f),
            ));
        }
    }
}

/// The first sample of a query that sums to one series.
fn single(name: &'static str, answer: Answer, empty: &str) -> Observation {
    let outcome = match answer {
        Answer::Samples(s) => match s.first() {
            Some((_, v)) => Outcome::number(*v),
            None => Outcome::NoData(empty.to_owned()),
        },
        Answer::Refused(f) | Answer::SourceDown(f) => Outcome::Unknown(f),
    };
    Observation::new(Key::new(name), outcome)
}

/// The 401/403 ratio: exact codes when those series exist, else the 4xx group, and which it was.
fn auth(out: &mut Vec<Observation>, exact: Answer, grouped: Answer) {
    let ratio = Key::new("prometheus.auth_failure_ratio");
    let flag = Key::new("prometheus.auth_exact");
    match (exact, grouped) {
        (Answer::Samples(e), _) if !e.is_empty() => {
            out.push(Observation::number(ratio, e[0].1));
            out.push(Observation::boolean(flag, true));
        }
        (_, Answer::Samples(g)) if !g.is_empty() => {
            out.push(Observation::number(ratio, g[0].1));
            out.push(Observation::boolean(flag, false));
        }
        (Answer::Samples(_), Answer::Samples(_)) => {
            let why = "no 401, 403 or 4xx series in the window".to_owned();
            out.push(Observation::new(ratio, Outcome::NoData(why.clone())));
            out.push(Observation::new(flag, Outcome::NoData(why)));
        }
        (Answer::Refused(f) | Answer::SourceDown(f), _)
        | (_, Answer::Refused(f) | Answer::SourceDown(f)) => {
            out.push(Observation::new(ratio, Outcome::Unknown(f.clone())));
            out.push(Observation::new(flag, Outcome::Unknown(f)));
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
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A real answer of `/api/v1/query` (a p95 per handler), the base of the near-valid inputs.
    const REAL: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"handler":"/api/chat"},"value":[1795000000.123,"4.2"]},{"metric":{"handler":"/health"},"value":[1795000000.123,"NaN"]}]}}"#;

    /// Sample values as Prometheus writes them, and as nothing should.
    fn value_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<f64>().prop_map(|v| v.to_string()),
            prop::sample::select(vec![
                "NaN", "+Inf", "-Inf", "1e400", "-1e400", "1e-400", "", "x", "0x10", "1_0"
            ])
            .prop_map(str::to_owned),
            "[0-9eE+.-]{1,12}",
        ]
    }

    /// Every observation the probe would make of `answer` as each kind of query: numbers are finite
    /// (NaN and infinities are no data), and failures are short.
    fn observations_are_sound(body: &[u8]) -> Result<(), TestCaseError> {
        let status = reqwest::StatusCode::OK;
        let answer = || interpret("q", status, body);
        if let Answer::SourceDown(f) | Answer::Refused(f) = answer() {
            prop_assert!(!f.detail.is_empty());
            if f.kind == FailureKind::Malformed {
                prop_assert!(f.detail.chars().count() <= 300, "{}", f.detail);
            }
        }
        let mut out = Vec::new();
        per_series(
            &mut out,
            "prometheus.p95_seconds",
            "handler",
            answer(),
            "empty",
        );
        out.push(single("prometheus.error_ratio", answer(), "empty"));
        auth(&mut out, answer(), answer());
        let rate = single("prometheus.request_rate", answer(), "empty");
        let baseline = single("prometheus.request_rate_baseline", answer(), "empty");
        out.push(rate_ratio(&rate.outcome, &baseline.outcome));
        for o in &out {
            if let Outcome::Value(Value::Number(n)) = o.outcome {
                prop_assert!(n.is_finite(), "{o:?}");
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(crate::mutate::cases(256))]

        #[test]
        fn prop_any_body_is_read_or_refused(body in prop::collection::vec(any::<u8>(), 0..400)) {
            observations_are_sound(&body)?;
        }

        #[test]
        fn prop_near_valid_answers_are_read_or_refused(body in crate::mutate::near(REAL)) {
            observations_are_sound(&body)?;
        }

        #[test]
        fn prop_any_sample_value_is_a_number_or_no_data(
            values in prop::collection::vec(value_text(), 0..4),
            scalar in value_text(),
        ) {
            let result: Vec<_> = values
                .iter()
                .enumerate()
                .map(|(i, v)| serde_json::json!({"metric": {"handler": format!("/h{i}")}, "value": [1795000000.5, v]}))
                .collect();
            let vector = serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": result}});
            observations_are_sound(vector.to_string().as_bytes())?;
            let scalar = serde_json::json!({"status": "success", "data": {"resultType": "scalar", "result": [1795000000.5, scalar]}});
            observations_are_sound(scalar.to_string().as_bytes())?;
        }

        #[test]
        fn prop_finite_values_round_trip(values in prop::collection::vec(any::<f64>(), 1..5)) {
            let result: Vec<_> = values
                .iter()
                .enumerate()
                .map(|(i, v)| serde_json::json!({"metric": {"handler": format!("/h{i}")}, "value": [1795000000.5, v.to_string()]}))
                .collect();
            let body = serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": result}});
            let Answer::Samples(samples) = interpret("q", reqwest::StatusCode::OK, body.to_string().as_bytes()) else {
                panic!("a valid answer");
            };
            let got: Vec<f64> = samples.iter().map(|(_, v)| *v).collect();
            prop_assert_eq!(got.len(), values.len());
            for (g, v) in got.iter().zip(&values) {
                prop_assert!(g == v || (g.is_nan() && v.is_nan()), "{g} != {v}");
            }
        }
    }
}
