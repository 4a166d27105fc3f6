//! The PromQL the probe sends (`Queries`, built from the configuration, and how often the baseline
//! is read again) and the single expressions equivalent to its readings for people. It builds text
//! only: it sends nothing and reads no answer.

use std::time::Duration;

use super::QUANTILE;
use crate::config::PrometheusConfig;
use crate::observe::Key;

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
    /// At how many of `HISTORY_STEPS` (60) points of the baseline window any request series existed
    /// (read with `baseline`): a baseline averaged mostly over empty time is not one.
    pub history: String,
    /// Every target's `up`.
    pub up: String,
}

/// How often the baseline and its history are read again.
pub const BASELINE_REFRESH: Duration = Duration::from_secs(60);

/// The baseline window's history is checked at this many points.
pub(super) const HISTORY_STEPS: u32 = 60;

/// The share of those points that must hold data for the baseline to count.
pub(super) const HISTORY_NEEDED: f64 = 0.9;

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
/// (`p95` per handler, `p95_highr`, `error_ratio`): what to paste into Prometheus to see what the
/// probe sees.
pub fn equivalent_promql(config: &PrometheusConfig, reading: &str) -> Option<String> {
    let w = promql_duration(config.window);
    let filter = handler_filter(&config.exclude_handlers);
    Some(match reading {
        "p95" => format!(
            "histogram_quantile({QUANTILE}, sum by (le, handler) (rate({}_bucket{}[{w}])))",
            config.latency_histogram,
            selector(&filter, "")
        ),
        "p95_highr" => reading_promql(
            config,
            &Reading::P95 {
                histogram: config.latency_highr_histogram.clone(),
                handler: None,
            },
            config.window,
        ),
        "error_ratio" => reading_promql(config, &Reading::ErrorRatio, config.window),
        _ => return None,
    })
}

/// One reading of the probe, as one series over time: what a symptom's chart draws
/// ([`super::RangeQuery`]). Each is a single expression answering one series, whose value at an
/// instant is the value the probe reads at that instant, except where a variant says otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// `prometheus.p95_seconds` from `histogram`: one handler's (the per-handler histogram, the
    /// handler named, `exclude_handlers` left out), or all handlers' (`handler: None`: the
    /// label-less high-resolution histogram, which has no handler to leave out). The quantile is
    /// Prometheus' `histogram_quantile`, the algorithm the probe copies ([`super::Buckets`]).
    P95 {
        histogram: String,
        handler: Option<String>,
    },
    /// `prometheus.error_ratio`: 5xx (`500`…`599` or grouped `5xx`) over all requests, 0 when
    /// there is traffic and no 5xx series yet.
    ErrorRatio,
    /// `prometheus.auth_failure_ratio`: 401/403 (exact codes) or 4xx (grouped codes) outside
    /// untemplated paths, over all requests. With exact codes it is the probe's value; with grouped
    /// codes the probe counts only each handler's 4xx *above its usual share*, which no single
    /// expression of the baseline reproduces, so the chart shows the raw 4xx share: at or above
    /// the probe's value, by the usual share (the chart's title should say "4xx").
    AuthFailureRatio,
}

impl Reading {
    /// The reading a symptom's key names, and the window its rate is over (the `_short` keys read
    /// the short window); `None` for readings with no one-expression history (slow share, request
    /// rate, blind spots, `up`).
    pub fn of(config: &PrometheusConfig, key: &Key) -> Option<(Self, Duration)> {
        let (name, window) = match key.name.strip_suffix("_short") {
            Some(name) => (name, config.short_window),
            None => (key.name, config.window),
        };
        let reading = match name {
            "prometheus.p95_seconds" => {
                let histogram = key.labels.get("histogram")?;
                let handler = key.labels.get("handler").filter(|h| h.as_str() != "*");
                if *histogram == config.latency_histogram {
                    Self::P95 {
                        histogram: histogram.clone(),
                        handler: Some(handler?.clone()),
                    }
                } else if *histogram == config.latency_highr_histogram {
                    Self::P95 {
                        histogram: histogram.clone(),
                        handler: None,
                    }
                } else {
                    return None;
                }
            }
            "prometheus.error_ratio" => Self::ErrorRatio,
            "prometheus.auth_failure_ratio" => Self::AuthFailureRatio,
            _ => return None,
        };
        Some((reading, window))
    }
}

/// The expression of `reading` with its rates over `window`.
pub fn reading_promql(config: &PrometheusConfig, reading: &Reading, window: Duration) -> String {
    let w = promql_duration(window);
    let filter = handler_filter(&config.exclude_handlers);
    let req = &config.requests_metric;
    match reading {
        Reading::P95 {
            histogram,
            handler: Some(handler),
        } => format!(
            "histogram_quantile({QUANTILE}, sum by (le) (rate({histogram}_bucket{}[{w}])))",
            selector(&filter, &format!("handler=\"{}\"", promql_string(handler)))
        ),
        Reading::P95 {
            histogram,
            handler: None,
        } => format!("histogram_quantile({QUANTILE}, sum by (le) (rate({histogram}_bucket[{w}])))"),
        Reading::ErrorRatio => format!(
            "(sum(rate({req}{}[{w}])) or vector(0)) / sum(rate({req}{}[{w}]))",
            selector(&filter, r#"status=~"5..""#),
            selector(&filter, "")
        ),
        Reading::AuthFailureRatio => format!(
            "(sum(rate({req}{}[{w}])) or vector(0)) / sum(rate({req}{}[{w}]))",
            selector(&filter, r#"status=~"401|403|4xx", handler!="none""#),
            selector(&filter, "")
        ),
    }
}

/// `{extra, filter}`, either part left out when empty, nothing when both are.
fn selector(filter: &str, extra: &str) -> String {
    match (filter.is_empty(), extra.is_empty()) {
        (true, true) => String::new(),
        (true, false) => format!("{{{extra}}}"),
        (false, true) => format!("{{{filter}}}"),
        (false, false) => format!("{{{extra}, {filter}}}"),
    }
}

/// `text` inside a PromQL double-quoted string.
fn promql_string(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// `handler!~"…"` leaving out `handlers` exactly, or nothing when there are none.
pub(super) fn handler_filter(handlers: &[String]) -> String {
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
