//! The daemon as a whole: in-process through `run(config, listener, clock, shutdown)`, and as the real
//! binary the README starts.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::support::daemon::{T0, TestDaemon, sample};
use crate::support::http_client;

/// A daemon started in-process on `127.0.0.1:0` with its data directory in a temp dir.
pub struct InProcess {
    pub base: String,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), harven_watchdog::RunError>>,
    pub data: tempfile::TempDir,
    pub hand: harven_watchdog::clock::ManualClock,
}

async fn start() -> InProcess {
    start_with(&[]).await
}

/// Starts the daemon with these `HARVEN_WATCHDOG__*` overrides, its data in a temp dir, on a manual
/// clock that only the test moves.
pub async fn start_with(overrides: &[(&str, &str)]) -> InProcess {
    let data = tempfile::tempdir().expect("tempdir");
    let store = data.path().join("watchdog.db");
    let mut env = vec![(
        "HARVEN_WATCHDOG__STORE__PATH".to_string(),
        store.display().to_string(),
    )];
    env.extend(
        overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let TestDaemon {
        base,
        shutdown,
        task,
        hand,
        ..
    } = TestDaemon::start(env, T0).await;
    InProcess {
        base,
        shutdown,
        task,
        data,
        hand,
    }
}

/// `GET base + path` with `http`, whatever the status; panics when the daemon does not answer.
async fn get(http: &reqwest::Client, base: &str, path: &str) -> reqwest::Response {
    let url = format!("{base}{path}");
    http.get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

#[tokio::test]
async fn serves_health_readiness_and_openmetrics() {
    let d = start().await;
    let http = http_client();

    let health = get(&http, &d.base, "/healthz").await;
    assert_eq!(health.status(), 200);

    let ready = get(&http, &d.base, "/readyz").await;
    assert_eq!(ready.status(), 200);

    let metrics = get(&http, &d.base, "/metrics").await;
    assert_eq!(metrics.status(), 200);
    let content_type = metrics.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = metrics.text().await.expect("body");
    assert!(text.contains("harven_watchdog_build_info{"), "{text}");
    assert!(
        text.contains("harven_watchdog_process_resident_memory_bytes "),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"), "{text}");

    let missing = get(&http, &d.base, "/nope").await;
    assert_eq!(missing.status(), 404);

    d.shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(5), d.task).await;
    stopped
        .expect("stopped within 5 s of shutdown")
        .expect("join")
        .expect("clean stop");
}

/// The counters an `increase()` alert reads exist at 0 from the first scrape, before any event: a
/// series born at 1 has no increase to show, and the alert would miss the first failure.
#[tokio::test]
async fn the_first_scrape_shows_the_counters_at_zero() {
    let d = start().await;
    let http = http_client();
    let text = get(&http, &d.base, "/metrics")
        .await
        .text()
        .await
        .expect("body");
    for series in [
        r#"harven_watchdog_emails_total{level="L1",event="opened",result="failed"} 0"#,
        r#"harven_watchdog_emails_total{level="L3",event="digest",result="sent"} 0"#,
        r#"harven_watchdog_pages_total{level="L2",event="escalated"} 0"#,
        r#"harven_watchdog_symptom_transitions_total{section="errors",rule="errors.ratio_high",event="fired"} 0"#,
        r#"harven_watchdog_config_reloads_total{result="failed"} 0"#,
        r#"harven_watchdog_config_reloads_total{result="invalid"} 0"#,
        r#"harven_watchdog_form_refusals_total{reason="csrf"} 0"#,
        r#"harven_watchdog_probe_errors_total{probe="prometheus",reason="timeout"} 0"#,
        r#"harven_watchdog_probe_errors_total{probe="docker",reason="too_large"} 0"#,
    ] {
        assert!(text.contains(series), "missing {series} in:\n{text}");
    }
    d.shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), d.task).await;
}

#[tokio::test]
async fn readiness_fails_when_the_data_directory_cannot_be_written() {
    let d = start().await;
    let http = http_client();
    let ready = get(&http, &d.base, "/readyz").await;
    assert_eq!(ready.status(), 200);

    // Replace the data directory by a plain file (root ignores permission bits, so chmod would not do).
    let dir = d.data.path();
    std::fs::remove_dir_all(dir).expect("remove data dir");
    std::fs::write(dir, b"not a directory").expect("file in its place");
    let ready = get(&http, &d.base, "/readyz").await;
    assert_eq!(ready.status(), 503);
    let body = ready.text().await.expect("body");
    assert!(body.contains("not writable"), "{body}");
    let health = get(&http, &d.base, "/healthz").await;
    assert_eq!(health.status(), 200, "still alive while not ready");

    std::fs::remove_file(dir).expect("cleanup");
    std::fs::create_dir(dir).expect("recreate for TempDir's drop");
    d.shutdown.cancel();
    d.task.await.expect("join").expect("clean stop");
}

/// The binary on its embedded defaults (only the port and data directory moved, so tests can run side
/// by side): it serves, says where emails go, logs JSON when asked, and stops on SIGTERM.
#[test]
fn the_binary_runs_on_embedded_defaults_and_stops_on_sigterm() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let data = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_harven-watchdog"))
        .args(["--log-format", "json"])
        .env(
            "HARVEN_WATCHDOG__SERVER__LISTEN",
            format!("127.0.0.1:{port}"),
        )
        .env(
            "HARVEN_WATCHDOG__STORE__PATH",
            data.path().join("watchdog.db"),
        )
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the daemon");

    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !lines.iter().any(|l: &String| l.contains(".eml files")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => panic!(
                "no start-up line about the .eml outbox; got:\n{}",
                lines.join("\n")
            ),
        }
    }
    let outbox_line = lines
        .iter()
        .find(|l| l.contains(".eml files"))
        .expect("line");
    let parsed: serde_json::Value = serde_json::from_str(outbox_line).expect("JSON log line");
    assert_eq!(parsed["level"], "WARN");
    let outbox = data.path().join("outbox");
    assert_eq!(
        parsed["outbox"],
        outbox.display().to_string(),
        "{outbox_line}"
    );

    let body = raw_http::blocking_get(port);
    assert_eq!(body, "ok\n");

    // SIGTERM: a clean exit, well within the 5 s the issue allows.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running 5 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
    reader.join().expect("reader");
    lines.extend(rx.try_iter());
    assert!(
        lines.iter().any(|l| l.contains("SIGTERM")),
        "{}",
        lines.join("\n")
    );
}

/// A tiny blocking GET of `/healthz`, retried until the daemon listens.
mod raw_http {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    pub fn blocking_get(port: u16) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                s.set_read_timeout(Some(Duration::from_secs(10)))
                    .expect("timeout");
                s.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
                    .expect("write");
                let mut out = String::new();
                s.read_to_string(&mut out).expect("read");
                assert!(
                    out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200"),
                    "{out}"
                );
                return out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "the daemon never listened on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The whole chain in-process: a real Prometheus scraping the slow backend, the probe, the engine on
/// the manual clock, and `/metrics` showing the latency symptom firing once 2 minutes of clock time
/// have passed with p95 above 3 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_backend_fires_the_latency_symptom_once_its_for_has_passed() {
    use crate::support::backend::{Scenario, SimBackend, StatusStyle};
    use crate::support::prometheus::PrometheusServer;

    let backend = SimBackend::start(StatusStyle::Grouped, Scenario::Slow).await;
    let prom = PrometheusServer::start(&[backend.target()]).await;
    let url = prom.url();
    let d = start_with(&[
        ("HARVEN_WATCHDOG__PROMETHEUS__URL", &url),
        ("HARVEN_WATCHDOG__PROMETHEUS__INTERVAL", "1s"),
        ("HARVEN_WATCHDOG__PROMETHEUS__TIMEOUT", "900ms"),
        ("HARVEN_WATCHDOG__PROMETHEUS__WINDOW", "30s"),
    ])
    .await;
    let http = http_client();
    let firing = r#"harven_watchdog_symptoms_firing{section="latency",rule="latency.p95_high"}"#;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut text = String::new();
    // Both API handlers are slow in this scenario; /health is not.
    while sample(&text, firing).is_none_or(|n| n < 2.0) {
        assert!(
            std::time::Instant::now() < deadline,
            "never fired; /metrics:\n{text}"
        );
        // 15 s of clock time per half second: the 2 min `for` passes within seconds once p95 is seen.
        d.hand.advance(Duration::from_secs(15));
        tokio::time::sleep(Duration::from_millis(500)).await;
        text = get(&http, &d.base, "/metrics")
            .await
            .text()
            .await
            .expect("body");
    }
    assert!(
        text.contains(r#"harven_watchdog_section_active{section="latency"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"harven_watchdog_probe_up{probe="prometheus"} 1"#),
        "{text}"
    );
    let fired = r#"harven_watchdog_symptom_transitions_total{section="latency",rule="latency.p95_high",event="fired"}"#;
    assert_eq!(
        sample(&text, fired),
        Some(2.0),
        "one fired transition per slow handler: {text}"
    );
    d.shutdown.cancel();
    d.task.await.expect("join").expect("clean stop");
}

/// Sources die under a running daemon: it keeps serving, reports them down, and picks them up again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_stays_up_while_its_sources_die_and_recovers_with_them() {
    use crate::support::backend::{Scenario, SimBackend, StatusStyle};
    use crate::support::prometheus::PrometheusServer;
    use crate::support::redis::RedisServer;

    let backend = SimBackend::start(StatusStyle::Grouped, Scenario::Normal).await;
    let mut prom = PrometheusServer::start(&[backend.target()]).await;
    let mut redis = RedisServer::start().await;
    let (prom_url, redis_url) = (prom.url(), redis.url());
    let d = start_with(&[
        ("HARVEN_WATCHDOG__PROMETHEUS__URL", &prom_url),
        ("HARVEN_WATCHDOG__PROMETHEUS__INTERVAL", "1s"),
        ("HARVEN_WATCHDOG__PROMETHEUS__TIMEOUT", "900ms"),
        ("HARVEN_WATCHDOG__REDIS__URL", &redis_url),
        ("HARVEN_WATCHDOG__REDIS__INTERVAL", "1s"),
        ("HARVEN_WATCHDOG__REDIS__TIMEOUT", "900ms"),
    ])
    .await;
    let http = http_client();
    let metrics = || async {
        get(&http, &d.base, "/metrics")
            .await
            .text()
            .await
            .expect("body")
    };
    let up = |text: &str, probe: &str| {
        sample(
            text,
            &format!("harven_watchdog_probe_up{{probe=\"{probe}\"}}"),
        )
    };
    let wait = |probe: &'static str, want: f64| {
        let metrics = &metrics;
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            loop {
                let text = metrics().await;
                if up(&text, probe) == Some(want) {
                    return;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{probe} never reached up={want}:\n{text}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    wait("prometheus", 1.0).await;
    wait("redis", 1.0).await;

    prom.kill();
    redis.kill();
    wait("prometheus", 0.0).await;
    wait("redis", 0.0).await;
    let health = get(&http, &d.base, "/healthz").await;
    assert_eq!(
        health.status(),
        200,
        "the daemon is up while its sources are down"
    );
    let text = metrics().await;
    assert!(
        sample(
            &text,
            r#"harven_watchdog_probe_errors_total{probe="redis",reason="connect"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );

    prom.restart().await;
    redis.restart().await;
    wait("prometheus", 1.0).await;
    wait("redis", 1.0).await;
    d.shutdown.cancel();
    d.task.await.expect("join").expect("clean stop");
}

/// The heartbeat pings its URL every interval, counts the pings, and never shows the URL's secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_pings_its_url_and_keeps_the_url_secret() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let hits = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/ping/{check}",
        axum::routing::get({
            let hits = Arc::clone(&hits);
            move |axum::extract::Path(check): axum::extract::Path<String>| {
                let hits = Arc::clone(&hits);
                async move {
                    assert_eq!(check, "s3cr3t-check-uuid");
                    hits.fetch_add(1, Ordering::SeqCst);
                    "OK"
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/ping/s3cr3t-check-uuid",
        listener.local_addr().expect("addr")
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let d = start_with(&[
        ("HARVEN_WATCHDOG__HEARTBEAT__URL", &url),
        ("HARVEN_WATCHDOG__HEARTBEAT__INTERVAL", "1s"),
        ("HARVEN_WATCHDOG__HEARTBEAT__TIMEOUT", "500ms"),
    ])
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while hits.load(Ordering::SeqCst) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the heartbeat never pinged twice"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = http_client()
        .get(format!("{}/metrics", d.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    assert!(
        sample(&text, r#"harven_watchdog_heartbeats_total{result="ok"}"#).is_some_and(|n| n >= 2.0),
        "{text}"
    );
    assert!(
        !text.contains("s3cr3t"),
        "the heartbeat URL's secret is not in /metrics"
    );

    // The server goes away: failures are counted, the daemon stays up.
    server.abort();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = http_client()
            .get(format!("{}/metrics", d.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("body");
        if sample(
            &text,
            r#"harven_watchdog_heartbeats_total{result="failed"}"#,
        )
        .is_some_and(|n| n >= 1.0)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "failures were never counted:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    d.shutdown.cancel();
    d.task.await.expect("join").expect("clean stop");
}
