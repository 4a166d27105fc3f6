//! A reading's history: one `/api/v1/query_range` for a [`Reading`]'s expression, its answer read
//! under [`MAX_BODY`](super::MAX_BODY) and a timeout, as a [`Series`] the chart draws, or why not
//! (Prometheus unreachable, an answer that is not one series, no data in the span).
//!
//! It is I/O: the pager or the page handler calls it, never the chart renderer or the email
//! renderer, which stay pure.

use std::fmt;
use std::time::Duration;

use prometheus_http_query::response::Data;

use super::answer::{ApiAnswer, not_prometheus, promql_said};
use super::promql::{Reading, reading_promql};
use crate::chart::{Series, Unit};
use crate::clock::Timestamp;
use crate::config::PrometheusConfig;
use crate::locale::{Msg, MsgId};
use crate::observe::{Failure, FailureKind};
use crate::probe::BuildError;

/// Most points one series may hold: Prometheus' own limit per range query (it refuses more).
pub const MAX_POINTS: u32 = 11_000;

/// Why a range query gave no series.
#[derive(Debug, Clone, PartialEq)]
pub enum RangeFailure {
    /// No answer: connection refused, timeout, a body over the cap.
    Unreachable(Failure),
    /// An answer that is not one series: not the API's JSON, a refused query, an instant result,
    /// several series.
    BadAnswer(Failure),
    /// The query ran and no series had a sample in the span (no traffic, no such metric).
    NoData(String),
}

/// What a blind chart quotes as its reason (the caller adds its own words before it).
impl fmt::Display for RangeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RangeFailure::Unreachable(failure) | RangeFailure::BadAnswer(failure) => {
                write!(f, "{failure}")
            }
            RangeFailure::NoData(why) => f.write_str(why),
        }
    }
}

/// The unit a reading's values are in.
pub fn unit(reading: &Reading) -> Unit {
    match reading {
        Reading::P95 { .. } => Unit::Seconds,
        Reading::ErrorRatio | Reading::AuthFailureRatio => Unit::Ratio,
    }
}

/// The step that gives about `points` samples over `from..to`: whole seconds, at least one, and
/// never more than [`MAX_POINTS`] samples.
pub fn step_for(from: Timestamp, to: Timestamp, points: u32) -> Duration {
    let span = to.saturating_since(from).as_secs();
    let points = u64::from(points.clamp(1, MAX_POINTS));
    Duration::from_secs(span.div_ceil(points).max(1))
}

/// Range queries against the configured Prometheus, over a client with the probe's timeouts.
#[derive(Clone)]
pub struct RangeQuery {
    config: PrometheusConfig,
    client: prometheus_http_query::Client,
}

impl fmt::Debug for RangeQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RangeQuery")
            .field("url", &crate::redact_url(&self.config.url))
            .finish_non_exhaustive()
    }
}

impl RangeQuery {
    /// A client for `config.url`, each request bounded by `config.timeout` (the probe's).
    pub fn new(config: &PrometheusConfig) -> Result<Self, BuildError> {
        let client = super::api_client(config)?;
        Ok(Self {
            config: config.clone(),
            client,
        })
    }

    /// `reading` over `from..=to` every `step`, its rates over `window`, as a series titled
    /// `title` (worded by the caller).
    pub async fn series(
        &self,
        reading: &Reading,
        window: Duration,
        title: impl Into<String>,
        (from, to): (Timestamp, Timestamp),
        step: Duration,
    ) -> Result<Series, RangeFailure> {
        let promql = reading_promql(&self.config, reading, window);
        let points = self.points(&promql, from, to, step).await?;
        Ok(Series {
            title: title.into(),
            unit: unit(reading),
            points,
        })
    }

    /// The one series `promql` answers over `from..=to` every `step` (at least a second).
    pub async fn points(
        &self,
        promql: &str,
        from: Timestamp,
        to: Timestamp,
        step: Duration,
    ) -> Result<Vec<(Timestamp, f64)>, RangeFailure> {
        let (start, end) = (
            from.as_unix_millis().div_euclid(1000),
            to.as_unix_millis().div_euclid(1000),
        );
        let step = step.as_secs_f64().max(1.0);
        let (status, body) =
            super::json_answer(self.client.query_range(promql, start, end, step).get_raw())
                .await
                .map_err(|f| match f.kind {
                    // A proxy's page or another service: what answered is not the API.
                    FailureKind::Status => RangeFailure::BadAnswer(f),
                    _ => RangeFailure::Unreachable(f),
                })?;
        parse(promql, status, &body)
    }
}

/// The one series of a `query_range` answer: its samples in time order, non-finite values kept
/// (the chart draws them as gaps). No series is [`RangeFailure::NoData`]; several, or an instant
/// result, is a bad answer: every [`Reading`] is one series by construction.
pub(super) fn parse(
    promql: &str,
    status: reqwest::StatusCode,
    body: &[u8],
) -> Result<Vec<(Timestamp, f64)>, RangeFailure> {
    let data = match serde_json::from_slice::<ApiAnswer>(body) {
        Ok(ApiAnswer::Success { data }) => data,
        Ok(ApiAnswer::Error(e)) => {
            let kind = if e.is_bad_data() {
                FailureKind::Query
            } else {
                FailureKind::Status
            };
            return Err(RangeFailure::BadAnswer(Failure::said(
                kind,
                promql_said(promql, e.message()),
            )));
        }
        Err(e) => return Err(RangeFailure::BadAnswer(not_prometheus(status, &e))),
    };
    let series = match data.data() {
        Data::Matrix(m) => m,
        Data::Vector(_) | Data::Scalar(_) => {
            return Err(RangeFailure::BadAnswer(Failure::said(
                FailureKind::Malformed,
                Msg::new(MsgId::RangeInstant).arg("promql", promql),
            )));
        }
    };
    match series.as_slice() {
        [] => Err(RangeFailure::NoData(format!(
            "{promql}: no samples in the span"
        ))),
        [one] => {
            let mut points: Vec<(Timestamp, f64)> = one
                .samples()
                .iter()
                .take(MAX_POINTS as usize)
                .map(|s| {
                    let ms = (s.timestamp() * 1000.0).round() as i64;
                    (Timestamp::from_unix_millis(ms), s.value())
                })
                .collect();
            points.sort_by_key(|p| p.0);
            Ok(points)
        }
        many => Err(RangeFailure::BadAnswer(Failure::said(
            FailureKind::Malformed,
            Msg::new(MsgId::RangeSeveral)
                .arg("promql", promql)
                .arg("n", many.len()),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::observe::Key;
    use crate::probe::prometheus::equivalent_promql;

    fn config() -> PrometheusConfig {
        Config::load_with_env(&[], Vec::new())
            .expect("the embedded defaults")
            .prometheus
    }

    const OK: reqwest::StatusCode = reqwest::StatusCode::OK;

    /// A recorded answer of `query_range` (the documentation's format): one series, values as
    /// strings, timestamps in seconds with a fraction.
    const MATRIX: &str = r#"{"status":"success","data":{"resultType":"matrix","result":[
        {"metric":{},"values":[[1790000000,"0.25"],[1790000015.5,"3.5"],[1790000031,"NaN"],[1790000045,"+Inf"]]}
    ]}}"#;

    #[test]
    fn a_matrix_of_one_series_is_its_points_in_order() {
        let points = parse("q", OK, MATRIX.as_bytes()).unwrap();
        assert_eq!(points.len(), 4);
        assert_eq!(
            points[0],
            (Timestamp::from_unix_millis(1_790_000_000_000), 0.25)
        );
        assert_eq!(
            points[1],
            (Timestamp::from_unix_millis(1_790_000_015_500), 3.5)
        );
        assert!(points[2].1.is_nan());
        assert_eq!(points[3].1, f64::INFINITY);
    }

    #[test]
    fn no_series_several_or_an_instant_result_are_told_apart() {
        let empty = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(matches!(
            parse("q", OK, empty.as_bytes()),
            Err(RangeFailure::NoData(_))
        ));
        let two = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"handler":"/a"},"values":[[1,"1"]]},{"metric":{"handler":"/b"},"values":[[1,"2"]]}]}}"#;
        let Err(RangeFailure::BadAnswer(f)) = parse("q", OK, two.as_bytes()) else {
            panic!("two series are a bad answer");
        };
        assert!(f.detail.contains("2 series"), "{f}");
        let instant = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(matches!(
            parse("q", OK, instant.as_bytes()),
            Err(RangeFailure::BadAnswer(_))
        ));
    }

    #[test]
    fn a_refusal_or_a_foreign_body_is_a_bad_answer_with_the_reason() {
        let refused =
            r#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        let Err(RangeFailure::BadAnswer(f)) = parse("rate(x[", OK, refused.as_bytes()) else {
            panic!("a refusal");
        };
        assert_eq!(f.kind, FailureKind::Query);
        assert!(f.detail.contains("parse error at char 3"), "{f}");
        let html = "<html>".to_owned() + &"x".repeat(10_000);
        let Err(RangeFailure::BadAnswer(f)) = parse("q", OK, html.as_bytes()) else {
            panic!("not JSON");
        };
        assert_eq!(f.kind, FailureKind::Malformed);
        assert!(f.detail.len() < 400, "cut short: {f}");
    }

    #[test]
    fn the_step_gives_about_the_points_asked() {
        let from = Timestamp::from_unix_millis(0);
        let to = from + Duration::from_secs(3600);
        assert_eq!(step_for(from, to, 240), Duration::from_secs(15));
        assert_eq!(step_for(from, from, 240), Duration::from_secs(1));
        assert_eq!(step_for(to, from, 0), Duration::from_secs(1));
        let year = from + Duration::from_secs(365 * 86_400);
        assert!(
            year.saturating_since(from).as_secs() / step_for(from, year, u32::MAX).as_secs()
                <= u64::from(MAX_POINTS)
        );
    }

    #[test]
    fn symptom_keys_name_their_reading_and_window() {
        let c = config();
        let p95 = Key::new("prometheus.p95_seconds")
            .with("handler", "/api/items")
            .with("histogram", c.latency_histogram.as_str());
        let (reading, window) = Reading::of(&c, &p95).unwrap();
        assert_eq!(window, c.window);
        let promql = reading_promql(&c, &reading, window);
        assert!(
            promql.starts_with("histogram_quantile(0.95, sum by (le) (rate("),
            "{promql}"
        );
        assert!(promql.contains(r#"handler="/api/items""#), "{promql}");
        assert_eq!(unit(&reading), Unit::Seconds);
        let all = Key::new("prometheus.p95_seconds")
            .with("handler", "*")
            .with("histogram", c.latency_highr_histogram.as_str());
        let (reading, _) = Reading::of(&c, &all).unwrap();
        assert_eq!(
            Some(reading_promql(&c, &reading, c.window)),
            equivalent_promql(&c, "p95_highr")
        );
        let (reading, window) = Reading::of(&c, &Key::new("prometheus.error_ratio_short")).unwrap();
        assert_eq!(
            (reading.clone(), window),
            (Reading::ErrorRatio, c.short_window)
        );
        assert_eq!(
            Some(reading_promql(&c, &reading, c.window)),
            equivalent_promql(&c, "error_ratio")
        );
        let (reading, _) = Reading::of(&c, &Key::new("prometheus.auth_failure_ratio")).unwrap();
        let promql = reading_promql(&c, &reading, c.window);
        assert!(
            promql.contains(r#"status=~"401|403|4xx", handler!="none""#),
            "{promql}"
        );
        for unknown in [
            Key::new("prometheus.slow_share"),
            Key::new("prometheus.request_rate_ratio"),
            Key::new("prometheus.p95_seconds").with("histogram", "other"),
            Key::new("prometheus.p95_seconds")
                .with("handler", "*")
                .with("histogram", c.latency_histogram.as_str()),
        ] {
            assert_eq!(Reading::of(&c, &unknown), None, "{unknown}");
        }
    }

    #[test]
    fn a_handler_is_quoted_as_a_promql_string() {
        let c = config();
        let reading = Reading::P95 {
            histogram: c.latency_histogram.clone(),
            handler: Some(r#"/a"b\c"#.into()),
        };
        let promql = reading_promql(&c, &reading, c.window);
        assert!(promql.contains(r#"handler="/a\"b\\c""#), "{promql}");
    }
}
