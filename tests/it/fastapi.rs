//! The real FastAPI backend (`tests/fixtures/backend/app.py`, prometheus-fastapi-instrumentator
//! under uvicorn) driven by real HTTP load and scraped every second by a real Prometheus, in the
//! library's default profile and in a tuned one: what its exposition really contains, and what
//! Prometheus reads from it through a normal phase, a slow chat (4–6 s), 25 % of 500s and a wave
//! of 401s on login.
//!
//! The two profiles run as two tests (concurrently under the default test harness), each with its
//! own backend and Prometheus; each takes about a minute, bounded by waits for Prometheus, never
//! by fixed sleeps.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support::fastapi::{
    Exposition, FastApiBackend, HIGHR_BUCKETS, Handler, Load, LoadReport, LoadSpec, Profile,
    Scenario,
};
use crate::support::prometheus::{BACKEND_JOB, PromSample, PrometheusServer};
use crate::support::{self};

/// Deadline for something to show in Prometheus (first data comes ~7 s after it starts, later
/// on a loaded machine).
const PROM_DATA: Duration = Duration::from_secs(60);

/// The load: ten requests a second, chat dominating (as in the real app), plus health checks.
const RPS: f64 = 10.0;
const MIX: [(Handler, u32); 4] = [
    (Handler::Chat, 6),
    (Handler::Login, 2),
    (Handler::Courses, 1),
    (Handler::Health, 1),
];

/// p95 over every request, from the histogram without labels and with fine buckets.
const P95_HIGHR: &str =
    "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_highr_seconds_bucket[1m])))";

/// The runbook's p95 by handler, over the few-bucket histogram (on a 1 m window).
const P95_BY_HANDLER: &str = "histogram_quantile(0.95, sum by (le, handler) (rate(http_request_duration_seconds_bucket[1m])))";

/// The runbook's 5xx ratio (on a 1 m window): `5..` matches `5xx` and `500` alike.
const ERROR_RATIO: &str =
    "sum(rate(http_requests_total{status=~\"5..\"}[1m])) / sum(rate(http_requests_total[1m]))";

/// The share of logins answered 4xx over the last 15 s, whichever way statuses are written.
const LOGIN_4XX_RATIO: &str = "sum(rate(http_requests_total{handler=\"/api/auth/login\",status=~\"4..\"}[15s])) \
     / sum(rate(http_requests_total{handler=\"/api/auth/login\"}[15s]))";

/// The `le` strings of `bounds` plus `+Inf`, as prometheus_client writes them (Python's float repr,
/// which Rust's `{:?}` matches for these values: `0.1`, `1.0`, `60.0`).
fn le_strings(bounds: &[f64]) -> Vec<String> {
    bounds
        .iter()
        .map(|b| format!("{b:?}"))
        .chain(["+Inf".to_owned()])
        .collect()
}

/// The `le` values of the samples named `name` in the order they are written, each once.
fn le_in_order(exposition: &Exposition, name: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for sample in exposition.select(name, &[]) {
        let le = sample.labels.get("le").expect("a bucket has le").clone();
        if !seen.contains(&le) {
            seen.push(le);
        }
    }
    seen
}

fn label_names(exposition: &Exposition, name: &str) -> BTreeSet<String> {
    exposition
        .select(name, &[])
        .flat_map(|s| s.labels.keys().cloned())
        .collect()
}

fn set(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

fn labels_of(samples: &[PromSample], label: &str) -> BTreeSet<String> {
    samples
        .iter()
        .filter_map(|s| s.label(label).map(str::to_owned))
        .collect()
}

/// The value of the only sample, or NaN when there is none.
fn single(samples: &[PromSample]) -> f64 {
    match samples {
        [one] => one.value,
        _ => f64::NAN,
    }
}

/// The value of the sample whose `handler` is `handler`, or NaN.
fn of_handler(samples: &[PromSample], handler: &str) -> f64 {
    samples
        .iter()
        .find(|s| s.label("handler") == Some(handler))
        .map_or(f64::NAN, |s| s.value)
}

/// Requests of `handler` answered `status` between two expositions (`status` written as the
/// profile writes it).
fn delta(before: &Exposition, after: &Exposition, handler: Handler, status: Option<&str>) -> u64 {
    let mut labels = vec![("handler", handler.path())];
    if let Some(status) = status {
        labels.push(("status", status));
    }
    let d = after.sum("http_requests_total", &labels) - before.sum("http_requests_total", &labels);
    d as u64
}

/// A finished phase's load: every request answered, none skipped, none lost.
fn assert_clean(phase: &str, report: &LoadReport) {
    assert_eq!(
        report.total_failed(),
        0,
        "{phase}: requests without an answer: {report:?}"
    );
    assert_eq!(
        report.skipped, 0,
        "{phase}: starts skipped (in-flight bound reached): {report:?}"
    );
    assert_eq!(report.total_answered(), report.sent, "{phase}: {report:?}");
    assert!(report.sent > 0, "{phase}: no request was sent");
}

/// Stops `load`, waiting for its requests in flight, and returns its report and the exposition
/// right after.
async fn end_phase(phase: &str, load: Load, backend: &FastApiBackend) -> (LoadReport, Exposition) {
    let report = load.stop().await;
    assert_clean(phase, &report);
    (report, backend.metrics().await)
}

/// What both profiles export whatever the traffic: names, labels, buckets, status style, which
/// handlers are counted.
fn assert_exposition_shape(profile: Profile, exposition: &Exposition) {
    let highr = le_strings(&HIGHR_BUCKETS);
    assert_eq!(
        le_in_order(exposition, "http_request_duration_highr_seconds_bucket"),
        highr,
        "{profile:?}: the high-resolution histogram's buckets"
    );
    assert!(highr.contains(&"3.0".to_owned()));
    assert_eq!(
        le_in_order(exposition, "http_request_duration_seconds_bucket"),
        le_strings(profile.buckets()),
        "{profile:?}: http_request_duration_seconds buckets"
    );
    if profile == Profile::Default {
        assert_eq!(
            le_in_order(exposition, "http_request_duration_seconds_bucket"),
            ["0.1", "0.5", "1.0", "+Inf"]
        );
    }
    assert_eq!(
        label_names(exposition, "http_request_duration_highr_seconds_bucket"),
        set(&["le"]),
        "the high-resolution histogram has no handler, method or status label"
    );
    assert_eq!(
        label_names(exposition, "http_request_duration_seconds_bucket"),
        set(&["handler", "le", "method"])
    );
    assert_eq!(
        label_names(exposition, "http_requests_total"),
        set(&["handler", "method", "status"])
    );
    for name in [
        "http_request_duration_highr_seconds_count",
        "http_request_duration_highr_seconds_sum",
        "http_request_duration_seconds_count",
        "http_request_duration_seconds_sum",
        "http_request_size_bytes_count",
        "http_response_size_bytes_count",
    ] {
        assert!(
            exposition.select(name, &[]).next().is_some(),
            "{profile:?}: {name} is exported"
        );
    }

    let handlers = exposition.label_values("http_requests_total", "handler");
    let mut expected = vec![
        "/api/auth/login",
        "/api/chat",
        "/api/courses",
        "/health",
        "none",
    ];
    if profile == Profile::Default {
        // Prometheus's own scrapes (and the test's GET /metrics) are requests like any other.
        expected.push("/metrics");
    }
    expected.sort_unstable();
    assert_eq!(handlers, expected, "{profile:?}: the handler label values");
    assert!(
        !handlers.iter().any(|h| h.contains("_control")),
        "the control endpoint is never counted"
    );

    let statuses: BTreeSet<String> = exposition
        .label_values("http_requests_total", "status")
        .into_iter()
        .collect();
    match profile {
        Profile::Default => assert!(
            statuses
                .iter()
                .all(|s| ["2xx", "4xx", "5xx"].contains(&s.as_str())),
            "grouped statuses only: {statuses:?}"
        ),
        Profile::Tuned => assert!(
            statuses
                .iter()
                .all(|s| s.len() == 3 && s.chars().all(|c| c.is_ascii_digit())),
            "exact statuses only: {statuses:?}"
        ),
    }
    // The untemplated request of the normal phase.
    assert_eq!(
        exposition.sum(
            "http_requests_total",
            &[("handler", "none"), ("status", &profile.status_label(404))]
        ),
        1.0,
        "{profile:?}: a path no route matches is counted once under handler none"
    );
}

async fn exercise(profile: Profile) {
    let started = Instant::now();
    let mut phases = Vec::new();
    let backend = FastApiBackend::start(profile).await;
    let prom = PrometheusServer::start(&[backend.target()]).await;
    phases.push(("start", started.elapsed()));
    let http = support::http_client();

    // --- Normal ------------------------------------------------------------------------------
    let phase = Instant::now();
    let load = Load::start(&backend, LoadSpec::new(RPS, &MIX));
    let unknown = http
        .get(format!("{}/api/nao-existe", backend.url()))
        .send()
        .await
        .expect("GET an unknown path");
    assert_eq!(unknown.status().as_u16(), 404);
    prom.wait_for(
        &format!("up{{job=\"{BACKEND_JOB}\"}}"),
        |s| single(s) == 1.0,
        PROM_DATA,
    )
    .await;
    let p95 = prom
        .wait_for(P95_HIGHR, |s| single(s) < 1.0, PROM_DATA)
        .await;
    assert!(single(&p95) > 0.0, "p95 in normal: {p95:?}");
    let (normal, after_normal) = end_phase("normal", load, &backend).await;
    assert_eq!(
        normal
            .answers
            .keys()
            .map(|(_, status)| *status)
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([200]),
        "normal: every answer is 200: {normal:?}"
    );
    assert_exposition_shape(profile, &after_normal);

    // The `le` strings Prometheus stores are the ones the exposition wrote.
    let lowr_le = prom
        .query("count by (le) (http_request_duration_seconds_bucket)")
        .await
        .expect("le query");
    let highr_le = prom
        .query("count by (le) (http_request_duration_highr_seconds_bucket)")
        .await
        .expect("le query");
    eprintln!(
        "{profile:?}: le through Prometheus: http_request_duration_seconds {:?}; \
         http_request_duration_highr_seconds {:?}",
        labels_of(&lowr_le, "le"),
        labels_of(&highr_le, "le")
    );
    assert_eq!(
        labels_of(&lowr_le, "le"),
        le_strings(profile.buckets()).into_iter().collect()
    );
    assert_eq!(
        labels_of(&highr_le, "le"),
        le_strings(&HIGHR_BUCKETS).into_iter().collect()
    );
    // /metrics as a handler, through Prometheus too.
    let metrics_handler = prom
        .query("http_requests_total{handler=\"/metrics\"}")
        .await
        .expect("/metrics query");
    match profile {
        Profile::Default => assert_eq!(
            labels_of(&metrics_handler, "status"),
            set(&["2xx"]),
            "Prometheus's scrapes are counted in the default profile"
        ),
        Profile::Tuned => assert!(
            metrics_handler.is_empty(),
            "/metrics is excluded in the tuned profile: {metrics_handler:?}"
        ),
    }
    phases.push(("normal", phase.elapsed()));

    // --- Slow chat (4–6 s), chat dominating the traffic ----------------------------------------
    let phase = Instant::now();
    backend.set_scenario(&Scenario::slow_chat(4.0, 6.0)).await;
    let load = Load::start(&backend, LoadSpec::new(RPS, &MIX));
    let p95 = prom
        .wait_for(P95_HIGHR, |s| single(s) > 3.0, PROM_DATA)
        .await;
    let p95 = single(&p95);
    assert!(
        p95 <= 7.5,
        "4–6 s answers put p95 in the 3.5–7.5 s buckets, got {p95}"
    );
    match profile {
        Profile::Default => {
            // The default buckets end at 1 s: the quantile of a handler whose p95 is beyond them
            // is the highest finite bound, 1, and can never read above 3 s.
            let by_handler = prom
                .wait_for(
                    P95_BY_HANDLER,
                    |s| of_handler(s, "/api/chat") == 1.0,
                    PROM_DATA,
                )
                .await;
            assert!(
                by_handler
                    .iter()
                    .all(|s| s.value.is_nan() || s.value <= 1.0),
                "no p95 by handler can exceed 1 s with the default buckets: {by_handler:?}"
            );
        }
        Profile::Tuned => {
            let by_handler = prom
                .wait_for(
                    P95_BY_HANDLER,
                    |s| of_handler(s, "/api/chat") > 3.0,
                    PROM_DATA,
                )
                .await;
            let chat = of_handler(&by_handler, "/api/chat");
            assert!(chat <= 10.0, "chat p95 within the 10 s bucket, got {chat}");
            let courses = of_handler(&by_handler, "/api/courses");
            assert!(courses < 1.0, "courses stay fast, got {courses}");
        }
    }
    let (slow, after_slow) = end_phase("slow", load, &backend).await;
    let slow_chats = slow.count(Handler::Chat, 200);
    assert!(slow_chats > 0 && slow.answered(Handler::Chat) == slow_chats);
    // Every chat of this phase took 4–6 s: none under 3 s (nor under the default's 1 s), all
    // within the tuned 10 s bucket.
    let chat = [("handler", "/api/chat")];
    let bucket = |e: &Exposition, name: &str, le: &str| {
        let mut labels = chat.to_vec();
        labels.push(("le", le));
        if name.contains("highr") {
            labels.clear();
            labels.push(("le", le));
        }
        e.sum(name, &labels)
    };
    let lowr = "http_request_duration_seconds_bucket";
    let top = if profile == Profile::Default {
        "1.0"
    } else {
        "3.0"
    };
    assert_eq!(
        bucket(&after_slow, lowr, top),
        bucket(&after_normal, lowr, top)
    );
    assert_eq!(
        bucket(&after_slow, lowr, "+Inf") - bucket(&after_normal, lowr, "+Inf"),
        slow_chats as f64
    );
    if profile == Profile::Tuned {
        assert_eq!(
            bucket(&after_slow, lowr, "10.0") - bucket(&after_normal, lowr, "10.0"),
            slow_chats as f64
        );
    }
    // The high-resolution histogram has every slow chat above 3 s, and nothing else there.
    let highr = "http_request_duration_highr_seconds_bucket";
    let above_3s = |e: &Exposition| bucket(e, highr, "+Inf") - bucket(e, highr, "3.0");
    assert_eq!(
        above_3s(&after_slow) - above_3s(&after_normal),
        slow_chats as f64
    );
    phases.push(("slow", phase.elapsed()));

    // --- 25 % of the API answers 500 -----------------------------------------------------------
    let phase = Instant::now();
    backend.set_scenario(&Scenario::errors(0.25)).await;
    let load = Load::start(&backend, LoadSpec::new(RPS, &MIX));
    let ratio = prom
        .wait_for(ERROR_RATIO, |s| single(s) > 0.05, PROM_DATA)
        .await;
    assert!(
        single(&ratio) < 0.25,
        "diluted by the earlier minute: {ratio:?}"
    );
    let (errors, after_errors) = end_phase("errors", load, &backend).await;
    let e500 = profile.status_label(500);
    for handler in Handler::API {
        let n = delta(&after_slow, &after_errors, handler, None);
        let failed = delta(&after_slow, &after_errors, handler, Some(&e500));
        assert_eq!(
            n,
            errors.answered(handler),
            "{handler:?}: counted = answered"
        );
        assert_eq!(
            failed,
            n / 4,
            "{handler:?}: exactly one in four answered 500 ({n})"
        );
        assert_eq!(failed, errors.count(handler, 500));
    }
    assert_eq!(errors.count(Handler::Health, 500), 0);
    let statuses = prom
        .query("count by (status) (http_requests_total{status=~\"5..\"})")
        .await
        .expect("status query");
    assert_eq!(labels_of(&statuses, "status"), set(&[&e500]));
    assert!(backend.log_tail().contains("answering 500"));
    phases.push(("errors", phase.elapsed()));

    // --- A wave of 401s on login (90 %) --------------------------------------------------------
    let phase = Instant::now();
    backend.set_scenario(&Scenario::login_401(0.9)).await;
    let load = Load::start(&backend, LoadSpec::new(RPS, &MIX));
    prom.wait_for(LOGIN_4XX_RATIO, |s| single(s) > 0.5, PROM_DATA)
        .await;
    let (auth, after_auth) = end_phase("auth", load, &backend).await;
    let logins = delta(&after_errors, &after_auth, Handler::Login, None);
    let unauthorized = delta(
        &after_errors,
        &after_auth,
        Handler::Login,
        Some(&profile.status_label(401)),
    );
    assert_eq!(logins, auth.answered(Handler::Login));
    assert_eq!(unauthorized, auth.count(Handler::Login, 401));
    assert_eq!(
        unauthorized,
        (logins as f64 * 0.9 + 1e-9).floor() as u64,
        "exactly 90 % of {logins} logins answered 401"
    );
    let login_statuses = prom
        .query("count by (status) (http_requests_total{handler=\"/api/auth/login\"})")
        .await
        .expect("status query");
    let exact_401 = prom
        .query("sum(rate(http_requests_total{status=~\"401|403\"}[1m]))")
        .await
        .expect("401 query");
    match profile {
        Profile::Default => {
            assert_eq!(
                labels_of(&login_statuses, "status"),
                set(&["2xx", "4xx", "5xx"])
            );
            assert!(
                exact_401.is_empty(),
                "no exact 401 series when statuses are grouped: {exact_401:?}"
            );
        }
        Profile::Tuned => {
            assert_eq!(
                labels_of(&login_statuses, "status"),
                set(&["200", "401", "500"])
            );
            assert!(single(&exact_401) > 0.0, "{exact_401:?}");
        }
    }
    phases.push(("auth", phase.elapsed()));
    eprintln!(
        "{profile:?} profile: {phases:?}, total {:.1?}; requests {} + {} + {} + {}",
        started.elapsed(),
        normal.sent,
        slow.sent,
        errors.sent,
        auth.sent
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_profile_exposition_and_prometheus_through_four_phases() {
    exercise(Profile::Default).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tuned_profile_exposition_and_prometheus_through_four_phases() {
    exercise(Profile::Tuned).await;
}
