//! One query's answer: the API envelope read into samples, a refusal or a source that is down, and
//! the split of a two-window answer. It knows no metric names and computes no reading.

use prometheus_http_query::error::PrometheusError;
use prometheus_http_query::response::{Data, PromqlResult};
use serde::Deserialize;

use super::MAX_ERROR;
use crate::locale::{Msg, MsgId};
use crate::observe::{Failure, FailureKind};
use crate::probe::http::reqwest_failure;
use crate::probe::truncate;

/// The Prometheus API envelope. Read here rather than by the crate's `get()`, which would need the
/// whole body unbounded: the body has already been read under [`super::MAX_BODY`].
#[derive(Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub(super) enum ApiAnswer {
    Success { data: PromqlResult },
    Error(PrometheusError),
}

/// One query's outcome.
#[derive(Debug, Clone)]
pub(super) enum Answer {
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
pub(super) fn interpret(promql: &str, status: reqwest::StatusCode, body: &[u8]) -> Answer {
    match serde_json::from_slice::<ApiAnswer>(body) {
        Ok(ApiAnswer::Success { data }) => Answer::Samples(samples(&data)),
        Ok(ApiAnswer::Error(e)) if e.is_bad_data() => Answer::Refused(Failure::said(
            FailureKind::Query,
            promql_said(promql, e.message()),
        )),
        Ok(ApiAnswer::Error(e)) => Answer::Refused(Failure::said(
            FailureKind::Status,
            promql_said(
                promql,
                format_args!("{} ({:?})", e.message(), e.error_type()),
            ),
        )),
        Err(e) => Answer::SourceDown(not_prometheus(status, &e)),
    }
}

/// `promql` refused, in Prometheus' own words (quoted).
pub(super) fn promql_said(promql: &str, said: impl std::fmt::Display) -> Msg {
    Msg::new(MsgId::PromqlSaid)
        .arg("promql", promql)
        .peer("said", said)
}

/// A body that is not the query API's JSON, with the decoder's reason quoted in part: serde quotes
/// a wrong value whole, and the detail goes to logs and pages.
pub(super) fn not_prometheus(status: reqwest::StatusCode, e: &serde_json::Error) -> Failure {
    Failure::said(
        FailureKind::Malformed,
        Msg::new(MsgId::NotPrometheusAnswer)
            .arg("status", status)
            .peer("error", truncate(&e.to_string(), MAX_ERROR)),
    )
}

/// The samples of an instant query's result, labels sorted by name so that two answers' series
/// compare equal whatever order Prometheus wrote the labels in. A scalar is one sample without
/// labels; a range result (no query here asks for one) is nothing.
pub(super) fn samples(result: &PromqlResult) -> Vec<Sample> {
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

/// A request that got no answer, classified like the other HTTP probes' (timeout, connect, …)
/// from the reqwest error the crate wraps.
pub(super) fn client_failure(e: &prometheus_http_query::Error) -> Failure {
    match e {
        prometheus_http_query::Error::Client(c) => match c.inner() {
            Some(inner) => reqwest_failure(inner),
            None => Failure::new(FailureKind::Other, c.to_string()),
        },
        other => Failure::new(FailureKind::Other, other.to_string()),
    }
}

/// A sample's labels and value.
pub(super) type Sample = (Vec<(String, String)>, f64);

/// The value of label `name`, if the sample has it.
pub(super) fn label<'a>(labels: &'a [(String, String)], name: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The two windows of a query that asked for both (`window="long"` and `"short"`), each without
/// that label; a failure is both windows' failure.
pub(super) fn by_window(answer: Answer) -> (Answer, Answer) {
    match answer {
        Answer::Samples(samples) => {
            let (mut long, mut short) = (Vec::new(), Vec::new());
            for (mut labels, v) in samples {
                let window = labels
                    .iter()
                    .position(|(k, _)| k == "window")
                    .map(|i| labels.remove(i).1);
                // Only `short` is told apart: a series without the label is read as the long
                // window's, which is what the query without `label_replace` would have meant.
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
