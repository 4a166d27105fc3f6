//! The Prometheus probe against a real Prometheus scraping the simulated backend: the runbook's
//! readings in every scenario and both status-label styles, blind spots named when the backend's
//! metrics are not where the configuration says, and every fault of the peer turned into a failure
//! within the timeout. `fastapi.rs` runs the same readings against the real instrumentation library.

use std::time::{Duration, Instant};

use harven_watchdog::clock::Clock;
use harven_watchdog::config::Config;
use harven_watchdog::observe::{FailureKind, Observation, Outcome, ProbeReport, Value};
use harven_watchdog::probe::poll_once;
use harven_watchdog::probe::prometheus::PrometheusProbe;

use crate::support;
use crate::support::backend::{Scenario, SimBackend, StatusStyle};
use crate::support::prometheus::PrometheusServer;

/// The probe on the shipped defaults but for windows a test can fill in seconds; `overrides` are
/// more `[prometheus]` keys (`("WINDOW", "10s")`).
fn probe(url: &str, overrides: &[(&str, &str)]) -> PrometheusProbe {
    support::init();
    let mut env: Vec<(String, String)> = vec![
        ("HARVEN_WATCHDOG__PROMETHEUS__URL".into(), url.into()),
        ("HARVEN_WATCHDOG__PROMETHEUS__INTERVAL".into(), "5s".into()),
        ("HARVEN_WATCHDOG__PROMETHEUS__TIMEOUT".into(), "2s".into()),
        ("HARVEN_WATCHDOG__PROMETHEUS__WINDOW".into(), "30s".into()),
        (
            "HARVEN_WATCHDOG__PROMETHEUS__BASELINE_WINDOW".into(),
            "10s".into(),
        ),
    ];
    for (name, value) in overrides {
        env.push((
            format!("HARVEN_WATCHDOG__PROMETHEUS__{name}"),
            (*value).into(),
        ));
    }
    let config = Config::load_with_env(&[], env).expect("config");
    PrometheusProbe::new(config.prometheus).expect("probe")
}

/// Polls until `ready` holds on a successful report; panics with the last report after 60 s.
async fn poll_until(
    probe: &mut PrometheusProbe,
    what: &str,
    ready: impl Fn(&[Observation]) -> bool,
) -> Vec<Observation> {
    let clock = Clock::system();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let report = poll_once(probe, &clock).await;
        if let Some(obs) = report.result.as_ref().ok().filter(|o| ready(o)) {
            return obs.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{what}: never held; last report: {report:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn find<'a>(
    obs: &'a [Observation],
    name: &str,
    label: Option<(&str, &str)>,
) -> Option<&'a Outcome> {
    obs.iter()
        .find(|o| {
            o.key.name == name
                && label.is_none_or(|(k, v)| o.key.labels.get(k).map(String::as_str) == Some(v))
        })
        .map(|o| &o.outcome)
}

fn number(obs: &[Observation], name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    match find(obs, name, label)? {
        Outcome::Value(Value::Number(n)) => Some(*n),
        _ => None,
    }
}

fn boolean(obs: &[Observation], name: &str) -> Option<bool> {
    match find(obs, name, None)? {
        Outcome::Value(Value::Bool(b)) => Some(*b),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_backend_shows_p95_above_3s_per_handler() {
    let backend = SimBackend::start(StatusStyle::Grouped, Scenario::Slow).await;
    let prom = PrometheusServer::start(&[backend.target()]).await;
    let mut p = probe(&prom.url(), &[]);
    let obs = poll_until(&mut p, "p95 of /api/chat above 3 s", |o| {
        number(o, "prometheus.p95_seconds", Some(("handler", "/api/chat"))).is_some_and(|v| v > 3.0)
    })
    .await;
    let chat = obs
        .iter()
        .find(|o| {
            o.key.name == "prometheus.p95_seconds"
                && o.key.labels.get("handler").map(String::as_str) == Some("/api/chat")
        })
        .expect("the chat p95");
    assert_eq!(
        chat.key.labels["histogram"], "http_request_duration_seconds",
        "the simulator's buckets go above 3 s: the per-handler histogram is used"
    );
    assert!(
        find(&obs, "prometheus.p95_seconds", Some(("handler", "/health"))).is_none(),
        "health checks are not traffic: {obs:#?}"
    );
    assert!(
        number(
            &obs,
            "prometheus.slow_share",
            Some(("handler", "/api/chat"))
        )
        .is_some_and(|s| s > 0.05),
        "{obs:#?}"
    );
    let up: Vec<_> = obs
        .iter()
        .filter(|o| o.key.name == "prometheus.backend_up")
        .collect();
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0].outcome, Outcome::Value(Value::Bool(true)));
    assert_eq!(up[0].key.labels["instance"], backend.target());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_show_a_5xx_ratio_above_5_percent_in_both_label_styles() {
    for style in [StatusStyle::Grouped, StatusStyle::Exact] {
        let backend = SimBackend::start(style, Scenario::Errors).await;
        let prom = PrometheusServer::start(&[backend.target()]).await;
        let mut p = probe(&prom.url(), &[]);
        let obs = poll_until(&mut p, "5xx ratio", |o| {
            number(o, "prometheus.error_ratio", None).is_some()
        })
        .await;
        let ratio = number(&obs, "prometheus.error_ratio", None).expect("ratio");
        assert!(ratio > 0.05, "{style:?}: 5xx ratio {ratio}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_failures_use_exact_codes_when_present_and_the_4xx_group_otherwise() {
    for (style, exact) in [(StatusStyle::Exact, true), (StatusStyle::Grouped, false)] {
        let backend = SimBackend::start(style, Scenario::AuthFailures).await;
        let prom = PrometheusServer::start(&[backend.target()]).await;
        let mut p = probe(&prom.url(), &[]);
        let obs = poll_until(&mut p, "auth ratio", |o| {
            number(o, "prometheus.auth_failure_ratio", None).is_some()
        })
        .await;
        let ratio = number(&obs, "prometheus.auth_failure_ratio", None).expect("ratio");
        // Exact: 401+403 of all requests. Grouped: the 4xx above each handler's usual share (no
        // baseline yet in a fresh Prometheus, so every 4xx): the same here.
        assert!(ratio > 0.3, "{style:?}: 401/403 ratio {ratio}");
        assert_eq!(
            boolean(&obs, "prometheus.auth_exact"),
            Some(exact),
            "{style:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_surge_is_seen_against_its_baseline() {
    let backend = SimBackend::start(StatusStyle::Grouped, Scenario::Normal).await;
    let prom = PrometheusServer::start(&[backend.target()]).await;
    let mut p = probe(&prom.url(), &[("WINDOW", "5s"), ("SHORT_WINDOW", "5s")]);
    // Normal traffic until the baseline window (10 s, ending 5 s ago) is filled.
    let obs = poll_until(&mut p, "a baseline", |o| {
        number(o, "prometheus.request_rate_ratio", None).is_some_and(|r| r < 2.0)
    })
    .await;
    let normal = number(&obs, "prometheus.request_rate", None).expect("rate");
    backend.set_scenario(Scenario::Surge);
    let obs = poll_until(&mut p, "surge ratio above 3", |o| {
        number(o, "prometheus.request_rate_ratio", None).is_some_and(|r| r > 3.0)
    })
    .await;
    let surge = number(&obs, "prometheus.request_rate", None).expect("rate");
    // The ratio above is the probe's claim; the absolute rates need only agree in direction (a loaded
    // machine delays scrapes and makes short-window rates noisy).
    assert!(surge > normal, "surge {surge} req/s vs normal {normal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_a_job_that_are_not_there_are_blind_spots_not_values() {
    let backend = SimBackend::start(StatusStyle::Grouped, Scenario::Normal).await;
    let prom = PrometheusServer::start(&[backend.target()]).await;
    let mut p = probe(
        &prom.url(),
        &[
            ("REQUESTS_METRIC", "harven_no_such_requests_total"),
            ("LATENCY_HISTOGRAM", "harven_no_such_seconds"),
            ("LATENCY_HIGHR_HISTOGRAM", "harven_no_such_highr_seconds"),
            ("BACKEND_JOB", "api"),
        ],
    );
    let obs = poll_until(&mut p, "a blind spot naming the job there is", |o| {
        o.iter().any(|o| {
            o.key.name == "prometheus.blind_spot"
                && o.key.labels.get("obs").map(String::as_str) == Some("prometheus.backend_up")
                && matches!(&o.outcome, Outcome::Value(Value::Text(t)) if t.contains(support::prometheus::BACKEND_JOB))
        })
    })
    .await;
    let blind = |obs_label: &str| -> String {
        match obs.iter().find(|o| {
            o.key.name == "prometheus.blind_spot"
                && o.key.labels.get("obs").map(String::as_str) == Some(obs_label)
        }) {
            Some(Observation {
                outcome: Outcome::Value(Value::Text(t)),
                ..
            }) => t.clone(),
            other => panic!("no blind spot for {obs_label}: {other:?} in {obs:#?}"),
        }
    };
    let job = blind("prometheus.backend_up");
    assert!(job.contains("\"api\""), "{job}");
    assert!(
        job.contains(support::prometheus::BACKEND_JOB),
        "names the jobs there are: {job}"
    );
    assert!(blind("prometheus.*").contains("harven_no_such_requests_total"));
    assert!(blind("prometheus.p95_seconds").contains("Fix: Instrumentator()"));
    for name in [
        "prometheus.error_ratio",
        "prometheus.p95_seconds",
        "prometheus.backend_up",
    ] {
        assert!(
            matches!(find(&obs, name, None), Some(Outcome::NoData(_))),
            "{name} is no data, not a value: {obs:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_killed_is_a_connect_failure_and_the_probe_recovers() {
    let backend = SimBackend::start(StatusStyle::Grouped, Scenario::Normal).await;
    let mut prom = PrometheusServer::start(&[backend.target()]).await;
    let mut p = probe(&prom.url(), &[]);
    poll_until(&mut p, "data", |o| {
        number(o, "prometheus.request_rate", None).is_some()
    })
    .await;

    prom.kill();
    let report = poll_once(&mut p, &Clock::system()).await;
    let failure = report.result.expect_err("Prometheus is down");
    assert_eq!(failure.kind, FailureKind::Connect, "{failure}");

    prom.restart().await;
    poll_until(&mut p, "recovery after restart", |o| {
        boolean(o, "prometheus.backend_up").is_some()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_or_foreign_peer_is_a_failure_within_the_timeout() {
    // Accepts connections and never answers.
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hang_url = format!("http://{}", hang.local_addr().expect("addr"));
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hang.accept().await {
            held.push(socket);
        }
    });
    let mut p = probe(&hang_url, &[]);
    let report: ProbeReport =
        tokio::time::timeout(Duration::from_secs(30), poll_once(&mut p, &Clock::system()))
            .await
            .expect("the probe's own timeout cuts the hang");
    assert_eq!(report.result.expect_err("hang").kind, FailureKind::Timeout);
    holder.abort();

    // A proxy's HTML error page instead of the Prometheus API.
    let app = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            [("content-type", "text/html")],
            "<html><body>502 Bad Gateway</body></html>",
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let html_url = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut p = probe(&html_url, &[]);
    let failure = poll_once(&mut p, &Clock::system())
        .await
        .result
        .expect_err("HTML is not the API");
    assert_eq!(failure.kind, FailureKind::Status, "{failure}");
    assert!(failure.detail.contains("503"), "{failure}");
    server.abort();
}
