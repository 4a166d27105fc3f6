//! The PromQL the probe sends (`Queries`, built from the configuration, and how often the baseline
//! is read again) and the single expressions equivalent to its readings for people. It builds text
//! only: it sends nothing and reads no answer.

use std::time::Duration;

use super::QUANTILE;
use crate::config::PrometheusConfig;

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
