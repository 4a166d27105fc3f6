//! The monitoring artefacts in `deploy/`: a real Prometheus scrapes the daemon and finds its main
//! series; the Grafana dashboard and the alert rules reference only series the daemon exports; and
//! `promtool` accepts the rules.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::daemon::{InProcess, start_with};
use crate::support::backend::{Scenario, SimBackend, StatusStyle};
use crate::support::prometheus::PrometheusServer;
use crate::support::redis::RedisServer;

const DASHBOARD: &str = "deploy/grafana/harven-watchdog.json";
const RULES: &str = "deploy/prometheus/rules.yml";

/// Series every family of the exposition must show once the daemon has watched, paged and mailed.
const EXERCISED: &[&str] = &[
    "harven_watchdog_build_info",
    "harven_watchdog_probe_up",
    "harven_watchdog_probe_duration_seconds_bucket",
    "harven_watchdog_docker_api_requests_total",
    "harven_watchdog_incidents_open",
    "harven_watchdog_incident_level",
    "harven_watchdog_pages_total",
    "harven_watchdog_emails_total",
    "harven_watchdog_outbox_depth",
    "harven_watchdog_email_send_duration_seconds_bucket",
    "harven_watchdog_observation_error_ratio",
    "harven_watchdog_observation_auth_failure_ratio",
    "harven_watchdog_observation_request_rate",
    "harven_watchdog_observation_p95_seconds",
    "harven_watchdog_observation_redis_ping_seconds",
    "harven_watchdog_observation_redis_memory_ratio",
    "harven_watchdog_rule_blind",
];

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The peers and the daemon of one test: a backend answering 30% 5xx behind its own Prometheus,
/// a real Redis, and the daemon watching them on a manual clock.
struct Watched {
    _backend: SimBackend,
    _prom: PrometheusServer,
    _redis: RedisServer,
    daemon: InProcess,
    http: reqwest::Client,
}

impl Watched {
    async fn start() -> Self {
        let backend = SimBackend::start(StatusStyle::Grouped, Scenario::Errors).await;
        let prom = PrometheusServer::start(&[backend.target()]).await;
        let redis = RedisServer::start().await;
        // Without a maxmemory the memory ratio is no data: give it one, as production does.
        let mut conn = redis.connection_manager().await;
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg("256mb")
            .query_async(&mut conn)
            .await
            .expect("CONFIG SET maxmemory");
        let (prom_url, redis_url) = (prom.url(), redis.url());
        let daemon = start_with(&[
            ("HARVEN_WATCHDOG__PROMETHEUS__URL", &prom_url),
            ("HARVEN_WATCHDOG__PROMETHEUS__INTERVAL", "1s"),
            ("HARVEN_WATCHDOG__PROMETHEUS__TIMEOUT", "900ms"),
            ("HARVEN_WATCHDOG__REDIS__URL", &redis_url),
            ("HARVEN_WATCHDOG__REDIS__INTERVAL", "1s"),
            ("HARVEN_WATCHDOG__REDIS__TIMEOUT", "900ms"),
            // One blind spot on purpose (a job Prometheus does not scrape), so rule_blind has a
            // series to show.
            (
                "HARVEN_WATCHDOG__PROMETHEUS__BACKEND_JOB",
                "harven-backend-elsewhere",
            ),
        ])
        .await;
        let http = crate::support::http_client();
        Self {
            _backend: backend,
            _prom: prom,
            _redis: redis,
            daemon,
            http,
        }
    }

    async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.daemon.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("body")
    }

    /// Moves the clock until the errors incident is open and an email sent, and every
    /// family of [`EXERCISED`] has samples; returns the exposition.
    async fn exercise(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let text = self.metrics().await;
            let names = sample_names(&text);
            let missing: Vec<_> = EXERCISED.iter().filter(|n| !names.contains(**n)).collect();
            let sent = text.lines().any(|l| {
                l.starts_with("harven_watchdog_emails_total{") && l.contains("result=\"sent\"")
            });
            // The errors incident itself (the watchdog's own findings about the sources this test
            // leaves out open an incident of their own, whose email can come first).
            let errors_open = text.lines().any(|l| {
                l.starts_with("harven_watchdog_incidents_open{")
                    && l.contains("section=\"errors\"")
                    && l.ends_with(" 1")
            });
            if missing.is_empty() && sent && errors_open {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "still missing {missing:?} (an email sent: {sent}); /metrics:\n{text}"
            );
            self.daemon.hand.advance(Duration::from_secs(5));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    async fn stop(self) {
        self.daemon.shutdown.cancel();
        self.daemon.task.await.expect("join").expect("clean stop");
    }
}

/// The series names of the samples in an exposition (`_total`, `_bucket`, `_info`… as Prometheus
/// stores them).
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// Every `harven_watchdog_*` name in `text` (PromQL expressions, JSON or YAML).
fn referenced_names(text: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"harven_watchdog_[a-z0-9_]+").expect("regex");
    re.find_iter(text).map(|m| m.as_str().to_owned()).collect()
}

/// Every PromQL expression of the dashboard (`targets[].expr` of each panel).
fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(repo_file(DASHBOARD)).expect("read the dashboard");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let panels = dash["panels"].as_array().expect("panels");
    let exprs: Vec<String> = panels
        .iter()
        .filter_map(|p| p["targets"].as_array())
        .flatten()
        .filter_map(|t| t["expr"].as_str())
        .map(str::to_owned)
        .collect();
    assert!(
        exprs.len() >= 10,
        "too few queries in the dashboard: {exprs:?}"
    );
    exprs
}

/// (a) The real Prometheus scrapes the daemon and the main series are queryable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_daemon_and_queries_its_main_series() {
    let w = Watched::start().await;
    w.exercise().await;
    let target = w
        .daemon
        .base
        .strip_prefix("http://")
        .expect("an http base")
        .to_owned();
    let scraper = PrometheusServer::start(&[target]).await;
    let non_empty = |s: &[crate::support::prometheus::PromSample]| !s.is_empty();
    let wait = Duration::from_secs(60);
    let build = scraper
        .wait_for("harven_watchdog_build_info", non_empty, wait)
        .await;
    assert_eq!(build[0].value, 1.0);
    assert_eq!(
        build[0].label("version"),
        Some(env!("CARGO_PKG_VERSION")),
        "{build:?}"
    );
    scraper
        .wait_for(
            r#"harven_watchdog_probe_up{probe="prometheus"} == 1"#,
            non_empty,
            wait,
        )
        .await;
    for query in [
        r#"harven_watchdog_probe_up{probe="redis"}"#,
        "harven_watchdog_probe_duration_seconds_count",
        "harven_watchdog_outbox_depth",
        r#"harven_watchdog_incidents_open{section="errors"} == 1"#,
        r#"harven_watchdog_incident_level{section="errors"} >= 1"#,
        r#"harven_watchdog_pages_total{level="L1",event="opened"}"#,
        r#"harven_watchdog_emails_total{result="sent"}"#,
        "harven_watchdog_observation_error_ratio > 0.05",
        "harven_watchdog_observation_request_rate > 0",
        "harven_watchdog_observation_redis_ping_seconds",
    ] {
        scraper.wait_for(query, non_empty, wait).await;
    }
    // Every dashboard query is valid PromQL for this Prometheus (empty results are fine).
    for expr in dashboard_exprs() {
        let expr = expr.replace("$__rate_interval", "1m");
        scraper
            .query(&expr)
            .await
            .unwrap_or_else(|e| panic!("dashboard query {expr:?} failed: {e}"));
    }
    w.stop().await;
}

/// (b) The dashboard and the alert rules name only series the daemon exports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_the_rules_reference_only_exported_series() {
    let w = Watched::start().await;
    let exported = sample_names(&w.exercise().await);
    w.stop().await;

    let dashboard = referenced_names(&dashboard_exprs().join("\n"));
    let rules = referenced_names(&std::fs::read_to_string(repo_file(RULES)).expect("read rules"));
    for (file, names) in [(DASHBOARD, &dashboard), (RULES, &rules)] {
        let unknown: Vec<_> = names.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{file} references series the daemon does not export: {unknown:?}\nexported: {exported:?}"
        );
    }
    for name in [
        "harven_watchdog_incidents_open",
        "harven_watchdog_incident_level",
        "harven_watchdog_probe_up",
        "harven_watchdog_probe_duration_seconds_bucket",
        "harven_watchdog_observation_p95_seconds",
        "harven_watchdog_observation_error_ratio",
        "harven_watchdog_emails_total",
        "harven_watchdog_outbox_depth",
        "harven_watchdog_rule_blind",
    ] {
        assert!(
            dashboard.contains(name),
            "the dashboard does not show {name}"
        );
    }
    for name in [
        "harven_watchdog_probe_up",
        "harven_watchdog_outbox_depth",
        "harven_watchdog_emails_total",
        "harven_watchdog_config_last_reload_successful",
        "harven_watchdog_rule_blind",
    ] {
        assert!(rules.contains(name), "no alert rule reads {name}");
    }
}

/// (c) `promtool check rules` accepts the alert rules (and `check config` the scrape job).
#[test]
fn promtool_accepts_the_rules_and_the_scrape_job() {
    crate::support::require_program("promtool", "prometheus");
    for args in [
        ["check", "rules", RULES],
        ["check", "config", "deploy/prometheus/harven-watchdog.yml"],
    ] {
        let out = std::process::Command::new("promtool")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rules = std::fs::read_to_string(repo_file(RULES)).expect("read rules");
    for expr in [
        r#"up{job="harven-watchdog"} == 0"#,
        "harven_watchdog_probe_up == 0",
        "harven_watchdog_outbox_depth > 0",
        r#"increase(harven_watchdog_emails_total{result="failed"}[15m]) > 0"#,
        "harven_watchdog_config_last_reload_successful == 0",
    ] {
        assert!(rules.contains(expr), "no rule `{expr}` in {RULES}");
    }
}
