//! The probe's formulas on answers shaped like the real instrumentator's, and its parsers on any input.

use proptest::prelude::*;

use super::answer::*;
use super::latency::*;
use super::promql::*;
use super::traffic::*;
use super::up::*;
use super::*;
use crate::config::Config;

/// A real answer of `/api/v1/query` (bucket rates by handler), the base of the near-valid inputs.
const REAL: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"handler":"/api/chat","le":"0.5"},"value":[1795000000.123,"0.2"]},{"metric":{"handler":"/api/chat","le":"+Inf"},"value":[1795000000.123,"1"]}]}}"#;

fn config() -> PrometheusConfig {
    Config::load_with_env(&[], Vec::new())
        .expect("the embedded defaults")
        .prometheus
}

fn sample(labels: &[(&str, &str)], v: f64) -> Sample {
    let mut l: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    l.sort();
    (l, v)
}

/// Cumulative bucket rates of `handler` for `bounds` (`le` strings as Python's client writes them).
fn buckets_of(handler: Option<&str>, bounds: &[(&str, f64)]) -> Vec<Sample> {
    bounds
        .iter()
        .map(|(le, v)| match handler {
            Some(h) => sample(&[("handler", h), ("le", le)], *v),
            None => sample(&[("le", le)], *v),
        })
        .collect()
}

/// The library's default per-handler buckets, with `slow` of `total` requests/s above 1 s.
fn lowr_default(handler: &str, total: f64, slow: f64) -> Vec<Sample> {
    let fast = total - slow;
    buckets_of(
        Some(handler),
        &[
            ("0.1", fast * 0.5),
            ("0.5", fast),
            ("1.0", fast),
            ("+Inf", total),
        ],
    )
}

/// The library's high-resolution buckets (a subset) with every request at about 5 s or 0.05 s.
fn highr(total: f64, slow: f64) -> Vec<Sample> {
    let fast = total - slow;
    let mut out = Vec::new();
    for le in ["0.05", "0.1", "1.0", "2.5", "3.0", "3.5", "4.0", "4.5"] {
        out.push(sample(&[("le", le)], fast));
    }
    for le in ["5.0", "7.5", "10.0", "+Inf"] {
        out.push(sample(&[("le", le)], total));
    }
    out
}

fn find<'a>(out: &'a [Observation], name: &str, labels: &[(&str, &str)]) -> &'a Observation {
    out.iter()
        .find(|o| {
            o.key.name == name
                && labels
                    .iter()
                    .all(|(k, v)| o.key.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .unwrap_or_else(|| panic!("no {name}{labels:?} in {out:#?}"))
}

fn number(o: &Observation) -> f64 {
    match o.outcome {
        Outcome::Value(Value::Number(n)) => n,
        ref other => panic!("{} is not a number: {other:?}", o.key),
    }
}

/// The latency readings of these bucket answers against the runbook's 3 s.
fn latency_of(c: &PrometheusConfig, lowr: Vec<Sample>, highr: Vec<Sample>) -> Vec<Observation> {
    let mut out = Vec::new();
    latency(
        &mut out,
        c,
        &[3.0],
        Answer::Samples(lowr),
        Answer::Samples(highr),
    );
    out
}

#[test]
fn the_quantile_is_prometheus_histogram_quantile() {
    // Worked by hand from promql/quantile.go: rank 0.95 * 100 = 95 falls in (1, 3] holding 40.
    let b = Buckets::new(vec![
        (0.1, 10.0),
        (0.5, 30.0),
        (1.0, 60.0),
        (3.0, 100.0),
        (f64::INFINITY, 100.0),
    ]);
    assert!((b.quantile(0.95) - (1.0 + 2.0 * (35.0 / 40.0))).abs() < 1e-12);
    // In the +Inf bucket: the highest finite bound, so a default histogram never exceeds 1 s.
    let capped = Buckets::new(vec![
        (0.1, 0.0),
        (0.5, 0.0),
        (1.0, 1.0),
        (f64::INFINITY, 10.0),
    ]);
    assert_eq!(capped.quantile(0.95), 1.0);
    assert!(!capped.can_exceed(3.0));
    // The first bucket interpolates from 0; no traffic and no +Inf are NaN.
    let first = Buckets::new(vec![(2.0, 10.0), (f64::INFINITY, 10.0)]);
    assert!((first.quantile(0.5) - 1.0).abs() < 1e-12);
    assert!(
        Buckets::new(vec![(1.0, 0.0), (f64::INFINITY, 0.0)])
            .quantile(0.95)
            .is_nan()
    );
    assert!(
        Buckets::new(vec![(1.0, 3.0), (2.0, 4.0)])
            .quantile(0.5)
            .is_nan()
    );
    // Equal bounds written two ways are one bucket; a dip is made monotonic.
    let merged = Buckets::new(vec![
        (1.0, 2.0),
        (1.0, 3.0),
        (0.5, 6.0),
        (f64::INFINITY, 10.0),
    ]);
    assert_eq!(
        merged.0,
        vec![(0.5, 6.0), (1.0, 6.0), (f64::INFINITY, 10.0)]
    );
}

#[test]
fn the_share_above_the_threshold_is_exact_at_a_bucket_and_interpolated_between() {
    let b = Buckets::new(vec![
        (1.0, 50.0),
        (3.0, 80.0),
        (10.0, 95.0),
        (f64::INFINITY, 100.0),
    ]);
    let (share, how) = b.share_above(3.0).expect("a share");
    assert!((share - 0.2).abs() < 1e-12);
    assert_eq!(how, Exactness::Exact(3.0));
    let (share, how) = b.share_above(2.0).expect("a share");
    assert!((share - 0.35).abs() < 1e-12, "{share}");
    assert_eq!(how, Exactness::Interpolated(1.0, 3.0));
    assert_eq!(b.share_above(20.0), None, "beyond the top finite bound");
    assert_eq!(
        Buckets::new(vec![(3.0, 0.0), (f64::INFINITY, 0.0)]).share_above(3.0),
        None,
        "no traffic"
    );
}

#[test]
fn default_buckets_read_the_p95_from_the_high_resolution_histogram_and_name_the_slow_handler() {
    let c = config();
    let mut lowr = lowr_default("/api/chat", 2.0, 1.8);
    lowr.extend(lowr_default("/api/courses", 8.0, 0.0));
    let out = latency_of(&c, lowr, highr(10.0, 1.8));
    let p95 = find(
        &out,
        "prometheus.p95_seconds",
        &[
            ("handler", "*"),
            ("histogram", "http_request_duration_highr_seconds"),
        ],
    );
    assert!(number(p95) > 3.0, "{p95:?}");
    let note = p95.note.as_ref().map(ToString::to_string).expect("a note");
    assert!(note.contains("all handlers"), "{note}");
    assert!(note.contains("up to 1 s only"), "{note}");
    assert!(note.contains("/api/chat 90% above 1 s"), "{note}");
    assert!(!note.contains("/api/courses"), "{note}");
    assert!(note.contains("cannot be left out"), "{note}");
    let share = find(&out, "prometheus.slow_share", &[("handler", "*")]);
    assert!((number(share) - 0.18).abs() < 1e-9);
    assert!(
        share
            .note
            .as_ref()
            .map(ToString::to_string)
            .unwrap()
            .starts_with("exact"),
        "{share:?}"
    );
    let chat = find(
        &out,
        "prometheus.handler_slow_share",
        &[("handler", "/api/chat")],
    );
    assert!((number(chat) - 0.9).abs() < 1e-9);
    assert!(
        out.iter().all(|o| o.key.name != "prometheus.blind_spot"),
        "{out:#?}"
    );
}

#[test]
fn tuned_buckets_read_the_p95_per_handler() {
    let c = config();
    let lowr = buckets_of(
        Some("/api/chat"),
        &[("1.0", 0.0), ("3.0", 1.0), ("5.0", 10.0), ("+Inf", 10.0)],
    );
    let out = latency_of(&c, lowr, highr(10.0, 9.0));
    let p95 = find(
        &out,
        "prometheus.p95_seconds",
        &[
            ("handler", "/api/chat"),
            ("histogram", "http_request_duration_seconds"),
        ],
    );
    assert!(
        (number(p95) - (3.0 + 2.0 * (8.5 / 9.0))).abs() < 1e-9,
        "{p95:?}"
    );
    assert!(
        p95.note
            .as_ref()
            .map(ToString::to_string)
            .unwrap()
            .contains("per handler")
    );
    let share = find(&out, "prometheus.slow_share", &[("handler", "/api/chat")]);
    assert!((number(share) - 0.9).abs() < 1e-9);
    assert!(
        out.iter()
            .all(|o| o.key.name != "prometheus.handler_slow_share")
    );
}

#[test]
fn a_histogram_topping_out_below_the_threshold_is_a_blind_spot_with_the_fix() {
    let c = config();
    let mut out = Vec::new();
    latency(
        &mut out,
        &c,
        &[3.0],
        Answer::Samples(lowr_default("/api/chat", 1.0, 1.0)),
        Answer::Samples(Vec::new()),
    );
    let blind = find(
        &out,
        "prometheus.blind_spot",
        &[("obs", "prometheus.p95_seconds"), ("reason", "buckets")],
    );
    let Outcome::Value(Value::Text(text)) = &blind.outcome else {
        panic!("{blind:?}")
    };
    assert!(text.contains("buckets 0.1, 0.5, 1"), "{text}");
    assert!(
        text.contains("no http_request_duration_highr_seconds series"),
        "{text}"
    );
    assert!(text.contains("latency_lowr_buckets=("), "{text}");
    // What can be read still is: the capped per-handler p95.
    let p95 = find(&out, "prometheus.p95_seconds", &[("handler", "/api/chat")]);
    assert_eq!(number(p95), 1.0);
}

#[test]
fn an_error_ratio_without_5xx_series_is_zero_and_says_so() {
    let c = config();
    let mut out = Vec::new();
    let reqs = vec![
        sample(&[("handler", "/api/chat"), ("status", "2xx")], 4.0),
        sample(&[("handler", "/api/courses"), ("status", "2xx")], 6.0),
    ];
    let total = ratios(&mut out, &c, Answer::Samples(reqs), &no_baseline());
    assert_eq!(total, Outcome::number(10.0));
    let e = find(&out, "prometheus.error_ratio", &[]);
    assert_eq!(number(e), 0.0);
    assert!(
        e.note
            .as_ref()
            .map(ToString::to_string)
            .unwrap()
            .contains("no 5xx series yet"),
        "{e:?}"
    );
    // No traffic at all stays no data.
    let mut out = Vec::new();
    let idle = vec![sample(&[("handler", "/api/chat"), ("status", "2xx")], 0.0)];
    ratios(&mut out, &c, Answer::Samples(idle), &no_baseline());
    assert!(matches!(
        find(&out, "prometheus.error_ratio", &[]).outcome,
        Outcome::NoData(_)
    ));
}

fn no_baseline() -> Traffic {
    Traffic::Rates(Vec::new())
}

#[test]
fn grouped_status_codes_count_the_4xx_above_each_handlers_usual_share() {
    let c = config();
    // Usually: login refuses 10 % (wrong passwords), courses answers 20 % 404, scanners hit `none`.
    let usual = Traffic::Rates(vec![
        sample(&[("handler", "/api/auth/login"), ("status", "4xx")], 0.1),
        sample(&[("handler", "/api/auth/login"), ("status", "2xx")], 0.9),
        sample(&[("handler", "/api/courses"), ("status", "4xx")], 1.0),
        sample(&[("handler", "/api/courses"), ("status", "2xx")], 4.0),
    ]);
    // Now: login refuses 90 %; courses as usual; a scan of untemplated paths; chat new (no baseline).
    let reqs = vec![
        sample(&[("handler", "/api/auth/login"), ("status", "4xx")], 3.6),
        sample(&[("handler", "/api/auth/login"), ("status", "2xx")], 0.4),
        sample(&[("handler", "/api/courses"), ("status", "4xx")], 1.0),
        sample(&[("handler", "/api/courses"), ("status", "2xx")], 4.0),
        sample(&[("handler", "none"), ("status", "4xx")], 5.0),
        sample(&[("handler", "/api/chat"), ("status", "5xx")], 1.0),
        sample(&[("handler", "/api/chat"), ("status", "4xx")], 0.5),
        sample(&[("handler", "/api/chat"), ("status", "2xx")], 3.5),
    ];
    let mut out = Vec::new();
    ratios(&mut out, &c, Answer::Samples(reqs), &usual);
    let auth = find(&out, "prometheus.auth_failure_ratio", &[]);
    // (3.6 - 0.1 * 4) + (1 - 0.2 * 5) + 0.5 (chat: no usual share) over 19 requests/s (the scan counts as traffic).
    assert!((number(auth) - 3.7 / 19.0).abs() < 1e-12, "{auth:?}");
    let note = auth.note.as_ref().map(ToString::to_string).unwrap();
    assert!(note.contains("cannot be told from 404/422"), "{note}");
    assert!(note.contains("no usual share yet for /api/chat"), "{note}");
    assert!(note.contains("should_group_status_codes=False"), "{note}");
    assert_eq!(
        find(&out, "prometheus.auth_exact", &[]).outcome,
        Outcome::Value(Value::Bool(false))
    );
    assert!((number(find(&out, "prometheus.error_ratio", &[])) - 1.0 / 19.0).abs() < 1e-12);
}

#[test]
fn exact_status_codes_count_401_and_403() {
    let c = config();
    let reqs = vec![
        sample(&[("handler", "/api/auth/login"), ("status", "401")], 3.0),
        sample(&[("handler", "/api/courses"), ("status", "403")], 1.0),
        sample(&[("handler", "/api/courses"), ("status", "404")], 2.0),
        sample(&[("handler", "/api/chat"), ("status", "200")], 4.0),
    ];
    let mut out = Vec::new();
    ratios(&mut out, &c, Answer::Samples(reqs), &no_baseline());
    assert!((number(find(&out, "prometheus.auth_failure_ratio", &[])) - 0.4).abs() < 1e-12);
    assert_eq!(
        find(&out, "prometheus.auth_exact", &[]).outcome,
        Outcome::Value(Value::Bool(true))
    );
}

#[test]
fn a_missing_job_and_missing_series_are_blind_spots() {
    let mut out = Vec::new();
    let up = vec![sample(
        &[("job", "prometheus"), ("instance", "localhost:9090")],
        1.0,
    )];
    backend_up(&mut out, "harven-backend", Answer::Samples(up));
    let blind = find(
        &out,
        "prometheus.blind_spot",
        &[("obs", "prometheus.backend_up")],
    );
    let Outcome::Value(Value::Text(text)) = &blind.outcome else {
        panic!("{blind:?}")
    };
    assert!(text.contains("its jobs: prometheus"), "{text}");
    assert!(text.contains("prometheus.backend_job"), "{text}");

    let mut out = Vec::new();
    ratios(
        &mut out,
        &config(),
        Answer::Samples(Vec::new()),
        &no_baseline(),
    );
    find(
        &out,
        "prometheus.blind_spot",
        &[("obs", "prometheus.*"), ("reason", "no_series")],
    );
}

#[test]
fn the_queries_leave_out_the_excluded_handlers_and_ask_for_both_windows() {
    let q = queries(&config());
    assert!(
        q.requests.starts_with(
            r#"label_replace(sum by (handler, status) (rate(http_requests_total{handler!~"/metrics|/health|"#
        ),
        "{}",
        q.requests
    );
    assert!(
        q.requests
            .contains(r#"[120s])), "window", "long", "", "") or "#),
        "{}",
        q.requests
    );
    assert!(
        q.lowr.contains(r#"[30s])), "window", "short", "", "")"#),
        "{}",
        q.lowr
    );
    assert_eq!(
        q.highr,
        r#"label_replace(sum by (le) (rate(http_request_duration_highr_seconds_bucket[120s])), "window", "long", "", "") or label_replace(sum by (le) (rate(http_request_duration_highr_seconds_bucket[30s])), "window", "short", "", "")"#
    );
    assert!(
        q.baseline.ends_with("[3600s] offset 120s))"),
        "{}",
        q.baseline
    );
    assert!(
        q.history.ends_with("[3600s:60s] offset 120s)"),
        "{}",
        q.history
    );
    assert_eq!(handler_filter(&["/a.b\"".into()]), r#"handler!~"/a\\.b\"""#);
}

#[test]
fn answers_for_both_windows_are_told_apart() {
    let both = Answer::Samples(vec![
        sample(
            &[("window", "long"), ("handler", "/a"), ("status", "2xx")],
            1.0,
        ),
        sample(
            &[("window", "short"), ("handler", "/a"), ("status", "5xx")],
            2.0,
        ),
    ]);
    let (Answer::Samples(long), Answer::Samples(short)) = by_window(both) else {
        panic!("samples")
    };
    assert_eq!(
        long,
        vec![sample(&[("handler", "/a"), ("status", "2xx")], 1.0)]
    );
    assert_eq!(
        short,
        vec![sample(&[("handler", "/a"), ("status", "5xx")], 2.0)]
    );
}

#[test]
fn a_baseline_without_the_history_it_claims_is_no_data() {
    let c = config();
    let usual = Traffic::Rates(vec![sample(&[("handler", "/a"), ("status", "2xx")], 1.0)]);
    let mut out = Vec::new();
    rates(&mut out, Outcome::number(5.0), &usual, Ok(12.0), &c);
    let base = find(&out, "prometheus.request_rate_baseline", &[]);
    let Outcome::NoData(why) = &base.outcome else {
        panic!("{base:?}")
    };
    assert!(why.to_string().contains("only 12 min of the 1 h"), "{why}");
    assert!(matches!(
        find(&out, "prometheus.request_rate_ratio", &[]).outcome,
        Outcome::NoData(_)
    ));
    let mut out = Vec::new();
    rates(&mut out, Outcome::number(5.0), &usual, Ok(60.0), &c);
    assert_eq!(
        number(find(&out, "prometheus.request_rate_ratio", &[])),
        5.0
    );
}

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

/// Every observation the probe would make of `answer` as each of its queries: numbers are finite
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
    let c = config();
    let mut out = Vec::new();
    latency(&mut out, &c, &[3.0], answer(), answer());
    let baseline = Traffic::of(answer());
    let total = ratios(&mut out, &c, answer(), &baseline);
    rates(&mut out, total, &baseline, history_points(&answer()), &c);
    latency_short(&mut out, &c, &[3.0], answer(), answer());
    let (long, short) = by_window(answer());
    ratios_short(&mut out, &c, short, &baseline);
    ratios(&mut out, &c, long, &baseline);
    backend_up(&mut out, "harven-backend", answer());
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
        values in prop::collection::vec(value_text(), 0..6),
        les in prop::collection::vec(value_text(), 0..6),
        scalar in value_text(),
    ) {
        let result: Vec<_> = values
            .iter()
            .zip(les.iter().chain(std::iter::repeat(&"+Inf".to_owned())))
            .enumerate()
            .map(|(i, (v, le))| serde_json::json!({"metric": {"handler": format!("/h{}", i % 2), "le": le, "status": "5xx", "job": "harven-backend"}, "value": [1795000000.5, v]}))
            .collect();
        let vector = serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": result}});
        observations_are_sound(vector.to_string().as_bytes())?;
        let scalar = serde_json::json!({"status": "success", "data": {"resultType": "scalar", "result": [1795000000.5, scalar]}});
        observations_are_sound(scalar.to_string().as_bytes())?;
    }

    #[test]
    fn prop_quantile_lies_within_the_buckets(counts in prop::collection::vec(0.0f64..1000.0, 1..8), q in 0.0f64..=1.0) {
        let mut cumulative = 0.0;
        let mut pairs = Vec::new();
        for (i, c) in counts.iter().enumerate() {
            cumulative += c;
            pairs.push(((i + 1) as f64 * 0.5, cumulative));
        }
        let top = pairs.last().map(|p| p.0).unwrap();
        pairs.push((f64::INFINITY, cumulative + 1.0));
        let v = Buckets::new(pairs).quantile(q);
        prop_assert!((0.0..=top).contains(&v), "{v}");
    }
}
