//! `diagnose` end to end: the real binary against a real Prometheus scraping the slow backend, a real
//! Redis, and status pages served locally in statuspage.io's format.

use std::process::Command;
use std::time::Duration;

use crate::support::backend::{Scenario, SimBackend, StatusStyle};
use crate::support::prometheus::PrometheusServer;
use crate::support::redis::RedisServer;
use crate::support::saas::{FakeStatusPage, PageScenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_backend_with_openai_degraded_names_openai_slow_first() {
    let backend = SimBackend::start(StatusStyle::Exact, Scenario::Slow).await;
    let prom = PrometheusServer::start(&[backend.target()]).await;
    let redis = RedisServer::start().await;
    let openai = FakeStatusPage::start(PageScenario::indicator("minor")).await;
    let supabase = FakeStatusPage::start(PageScenario::indicator("none")).await;
    let p95 = "histogram_quantile(0.95, sum(rate(http_request_duration_seconds_bucket[30s])) by (le, handler))";
    prom.wait_for(
        p95,
        |s| s.iter().any(|x| x.value > 3.0),
        Duration::from_secs(60),
    )
    .await;

    let data = tempfile::tempdir().expect("tempdir");
    let run = |json: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_harven-watchdog"));
        cmd.arg("diagnose")
            .env(
                "HARVEN_WATCHDOG__STORE__PATH",
                data.path().join("watchdog.db"),
            )
            .env("HARVEN_WATCHDOG__PROMETHEUS__URL", prom.url())
            .env("HARVEN_WATCHDOG__PROMETHEUS__WINDOW", "30s")
            .env("HARVEN_WATCHDOG__REDIS__URL", redis.url())
            .env(
                "HARVEN_WATCHDOG__STATUS__OPENAI__URL",
                openai.url().as_str(),
            )
            .env(
                "HARVEN_WATCHDOG__STATUS__SUPABASE__URL",
                supabase.url().as_str(),
            )
            .env(
                "HARVEN_WATCHDOG__DOCKER__HOST",
                "unix:///nonexistent/docker.sock",
            )
            .env("HARVEN_WATCHDOG__RUNBOOK__LOCALE", "en");
        if json {
            cmd.arg("--json");
        }
        cmd.output().expect("run diagnose")
    };

    let out = run(true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let latency = report["diagnoses"]
        .as_array()
        .expect("diagnoses")
        .iter()
        .find(|d| d["section"] == "latency")
        .unwrap_or_else(|| panic!("no latency diagnosis: {report:#}"));
    let causes = latency["diagnosis"]["causes"].as_array().expect("causes");
    assert_eq!(causes[0]["id"], "latency.openai_slow", "{latency:#}");
    assert_eq!(causes[0]["status"], "likely");
    let status = |id: &str| causes.iter().find(|c| c["id"] == id).expect("cause")["status"].clone();
    assert_eq!(
        status("latency.redis_saturated"),
        "ruled_out",
        "Redis is healthy: {latency:#}"
    );
    assert!(
        report["symptoms"]
            .as_array()
            .expect("symptoms")
            .iter()
            .any(|s| s["rule"] == "latency.p95_high"
                && s["state"] == "holds"
                && s["labels"]["handler"] == "/api/chat"),
        "{report:#}"
    );
    let docker = report["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|s| s["source"] == "docker");
    if let Some(d) = docker {
        assert_eq!(
            d["state"], "failing",
            "the Docker socket does not exist: {d}"
        );
    }

    let text = run(false);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("DIAGNOSIS latency — High latency [major]"),
        "{text}"
    );
    let first = text
        .lines()
        .skip_while(|l| !l.starts_with("DIAGNOSIS latency"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        first.contains("likely") && first.contains("latency.openai_slow"),
        "{text}"
    );
    assert!(
        text.contains("$ curl -s https://status.openai.com/api/v2/status.json"),
        "{text}"
    );
}
