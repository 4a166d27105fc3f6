//! The traffic readings from requests by handler and status: the error and auth ratios (4xx above
//! each handler's usual share when status codes are grouped), and the request rate against its
//! baseline, which counts only when Prometheus holds the history it claims. It sends no query and
//! knows nothing of latency histograms.

use std::collections::BTreeMap;
use std::time::Duration;

use super::answer::{Answer, Sample, label};
use super::promql::{HISTORY_NEEDED, HISTORY_STEPS};
use crate::config::PrometheusConfig;
use crate::locale::{Msg, MsgId};
use crate::observe::{Failure, Key, Observation, Outcome, Value};

/// The error and auth ratios from the requests by handler and status; returns the total rate (for
/// the request rate), or the outcome standing in for it.
///
/// The three keys always come together and in the same state: a refused query makes all three
/// unknown, no series or no traffic makes all three no data, so no rule reads one of them as a
/// value while its siblings are missing.
pub(super) fn ratios(
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
        let why = Msg::new(MsgId::NoRequestSeries).arg("metric", metric);
        out.push(Observation::said(
            Key::new("prometheus.blind_spot")
                .with("obs", "prometheus.*")
                .with("reason", "no_series"),
            Msg::new(MsgId::FixNoRequestSeries)
                .msg("why", why.clone())
                .arg("job", format_args!("{:?}", config.backend_job)),
        ));
        for k in [error, auth, exact] {
            out.push(Observation::new(k, Outcome::NoData(why.clone())));
        }
        return Outcome::NoData(why);
    }
    // The summed rate of the series `pred` selects, and whether any such series exists (a ratio
    // over no series is 0 only because the instrumentation has not created it yet: the note says
    // so). Non-finite samples are skipped: a NaN would poison the sum.
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
        let why = Msg::new(MsgId::NoRequestsInWindow);
        for k in [error, auth, exact] {
            out.push(Observation::new(k, Outcome::NoData(why.clone())));
        }
        return Outcome::NoData(why);
    }
    let (errors, any_5xx) = rate(&|_, s| s.starts_with('5'));
    let mut e = Observation::number(error, errors / total);
    if !any_5xx {
        e = e.with_note(Msg::new(MsgId::No5xxYet).arg("total", Value::Number(total)));
    }
    out.push(e);

    // The instrumentation groups status codes by default (`4xx`); only when no exact code is seen
    // and some are grouped is the auth ratio estimated from the 4xx above each handler's usual share.
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
            o = o.with_note(Msg::new(MsgId::NoAuthSeriesYet));
        }
        out.push(o);
        out.push(Observation::boolean(exact, true));
    } else {
        let (failures, notes) = excess_4xx(&samples, baseline);
        let mut note = vec![Msg::new(MsgId::AuthEstimated)];
        note.extend(notes);
        out.push(Observation::number(auth, failures / total).with_note(Msg::list(note)));
        out.push(Observation::boolean(exact, false));
    }
    Outcome::number(total)
}

/// The error and auth ratios over the short window (`_short`; the long window's blind spot and
/// `auth_exact` say the rest); returns the short window's total rate, the request rate compared
/// with the baseline.
pub(super) fn ratios_short(
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
/// The `count_over_time` answer is one sample, absent when no series existed at any point: 0.
pub(super) fn history_points(history: &Answer) -> Result<f64, Outcome> {
    match history {
        Answer::Samples(s) => Ok(s.first().map_or(0.0, |(_, v)| *v)),
        Answer::Refused(f) | Answer::SourceDown(f) => Err(Outcome::Unknown(f.clone())),
    }
}

/// The usual traffic: request rates by handler and status over the baseline window.
#[derive(Debug)]
pub(super) enum Traffic {
    /// The baseline query's samples (empty when the window before now had no requests).
    Rates(Vec<Sample>),
    /// The baseline query failed: the baseline and its ratio read as unknown.
    Failed(Failure),
}

impl Traffic {
    /// The baseline from its answer. A source that is down has already failed the whole poll
    /// before this is built, so `Failed` holds in practice a refused query.
    pub(super) fn of(answer: Answer) -> Self {
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
/// Handler `none` is where the instrumentation puts every path no route matched, so scanners'
/// 404s land there; counting it would make any scan look like an auth failure wave.
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
///
/// Each handler's excess is floored at 0 before summing: a handler quieter than usual must not
/// hide another's surge. A handler with no baseline (new, or silent in the baseline window) has
/// all its 4xx counted, which errs towards firing, and the note names it.
fn excess_4xx(samples: &[Sample], baseline: &Traffic) -> (f64, Vec<Msg>) {
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
        vec![Msg::new(MsgId::NoUsualShare).arg(
            "handlers",
            unknown.into_iter().take(5).collect::<Vec<_>>().join(", "),
        )]
    };
    (excess, notes)
}

/// The request rate, its baseline and their ratio. The baseline counts only when Prometheus holds
/// the history it claims: a rate over an hour of which it holds ten minutes averages mostly empty
/// time, and a steady backend would read as a surge.
pub(super) fn rates(
    out: &mut Vec<Observation>,
    total: Outcome,
    baseline: &Traffic,
    history: Result<f64, Outcome>,
    config: &PrometheusConfig,
) {
    let rate_obs = Observation::new(Key::new("prometheus.request_rate"), total);
    // 54 of the 60 points: a few missed scrapes or a short restart of Prometheus still count.
    let needed = (f64::from(HISTORY_STEPS) * HISTORY_NEEDED).floor();
    let base_outcome = match (baseline, history) {
        (Traffic::Failed(f), _) => Outcome::Unknown(f.clone()),
        (_, Err(outcome)) => outcome,
        (_, Ok(points)) if points < needed => Outcome::NoData(
            Msg::new(MsgId::BaselineShort)
                .duration(
                    "held",
                    Duration::from_secs(
                        (config.baseline_window.as_secs_f64() * points / f64::from(HISTORY_STEPS))
                            as u64,
                    ),
                )
                .duration("needed", config.baseline_window),
        ),
        (Traffic::Rates(s), Ok(_)) if s.is_empty() => {
            Outcome::NoData(Msg::new(MsgId::NoBaselineYet))
        }
        (Traffic::Rates(s), Ok(_)) => Outcome::number(s.iter().map(|(_, v)| v).sum::<f64>()),
    };
    let base_obs = Observation::new(Key::new("prometheus.request_rate_baseline"), base_outcome);
    out.push(rate_ratio(&rate_obs.outcome, &base_obs.outcome));
    out.push(rate_obs);
    out.push(base_obs);
}

/// Request rate now over its baseline, when both are numbers and the baseline is above zero.
/// Unknown wins over no data (the arms' order): a failed read must not pass for a quiet backend.
fn rate_ratio(rate: &Outcome, baseline: &Outcome) -> Observation {
    let key = Key::new("prometheus.request_rate_ratio");
    let outcome = match (rate, baseline) {
        (Outcome::Value(Value::Number(r)), Outcome::Value(Value::Number(b))) if *b > 0.0 => {
            Outcome::number(r / b)
        }
        (Outcome::Value(_), Outcome::Value(_)) => Outcome::NoData(Msg::new(MsgId::BaselineZero)),
        (Outcome::Unknown(f), _) | (_, Outcome::Unknown(f)) => Outcome::Unknown(f.clone()),
        (Outcome::NoData(w), _) | (_, Outcome::NoData(w)) => Outcome::NoData(w.clone()),
    };
    Observation::new(key, outcome)
}
