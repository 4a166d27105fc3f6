//! Alerts pushed by a real Alertmanager (Debian's `prometheus-alertmanager`) to the webhook, from a
//! real Prometheus alerting rule over the real FastAPI backend under a slow load: the mapped
//! section's incident opens and pages L1 on the real SMTP server, and the alert's resolution clears
//! it (resolved email). Beside it, the webhook's refusals and listing over HTTP.
//!
//! The daemon runs in-process on a manual clock that only the test moves: the section's
//! `resolve_after` and `[alerts] resend_within` pass when the test advances it, never by sleeping;
//! the test waits on the store (`evaluated_at`) or on the daemon's answers, never a fixed time. Its own Prometheus probe points nowhere, so only the alert can open the
//! latency section.

use std::path::{Path, PathBuf};
use std::time::Duration;

use harven_watchdog::clock::Timestamp;
use harven_watchdog::store::Store;
use serde_json::Value;

use crate::support::alertmanager::{Alertmanager, webhook_yaml};
use crate::support::daemon::{T0, TestDaemon, evaluated_at, paging_env};
use crate::support::fastapi::{FastApiBackend, Handler, Load, LoadSpec, Profile, Scenario};
use crate::support::prometheus::{ExtraConfig, PrometheusServer};
use crate::support::smtp::{ReceivedMail, SmtpServer, advance_until, summary};
use crate::support::{http_client, wait_for_some};

const TOKEN: &str = "am-webhook-token-5b1f0c8e2a7d4e96b3c1";

/// The captured notifications of the real Alertmanager 0.25 (one alert firing, then resolved).
const FIRING: &str = include_str!("../fixtures/alertmanager/webhook-v4-firing.json");
const RESOLVED: &str = include_str!("../fixtures/alertmanager/webhook-v4-resolved.json");

/// The webhook's path.
const WEBHOOK: &str = "/api/webhooks/alertmanager";

/// The shipped runbook with a two-minute `resend_within` (the belief the test's clock passes) and
/// a ten-minute `forget_after`, written to `dir/runbook.toml`.
fn runbook(dir: &Path) -> PathBuf {
    let text = harven_watchdog::runbook::DEFAULT_RUNBOOK
        .replacen("resend_within = \"4h15m\"", "resend_within = \"2m\"", 1)
        .replacen("forget_after = \"24h\"", "forget_after = \"10m\"", 1);
    assert!(
        text.contains("resend_within = \"2m\""),
        "the [alerts] block"
    );
    let path = dir.join("runbook.toml");
    std::fs::write(&path, text).expect("write the runbook");
    path
}

/// A daemon with the API token, the runbook above, paging the test SMTP server on `smtp_port`
/// (its Prometheus, Redis, Docker and status pages out of reach).
async fn daemon(dir: &Path, smtp_port: u16) -> TestDaemon {
    daemon_at(dir, smtp_port, T0).await
}

/// As [`daemon`], its clock at `at`.
async fn daemon_at(dir: &Path, smtp_port: u16, at: Timestamp) -> TestDaemon {
    let mut env = paging_env("http://127.0.0.1:1", smtp_port, dir);
    for (k, v) in [
        ("SERVER__API_TOKEN", TOKEN.to_owned()),
        ("RUNBOOK__PATH", runbook(dir).display().to_string()),
    ] {
        env.push((format!("HARVEN_WATCHDOG__{k}"), v));
    }
    TestDaemon::start(env, at).await
}

/// `GET /api/alerts`'s list.
async fn alerts(d: &TestDaemon) -> Vec<Value> {
    let body: Value = serde_json::from_str(&d.get("/api/alerts").await).expect("JSON");
    body["alerts"].as_array().cloned().unwrap_or_default()
}

/// The mail of `section` whose `X-Harven-Event` is `event`.
fn of<'a>(mail: &'a [ReceivedMail], section: &str, event: &str) -> Vec<&'a ReceivedMail> {
    mail.iter()
        .filter(|m| m.header("X-Harven-Section") == Some(section))
        .filter(|m| m.header("X-Harven-Event") == Some(event))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_alertmanager_opens_the_mapped_section_and_its_resolution_clears_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let smtp = SmtpServer::start().await;
    let d = daemon(dir.path(), smtp.port()).await;
    let token_file = dir.path().join("webhook-token");
    std::fs::write(&token_file, TOKEN).expect("token file");
    // A firing group is repeated every 20 s (the runbook's resend_within is 2 m of the test clock,
    // which does not move while the alert fires).
    let am = Alertmanager::start(&webhook_yaml(
        &format!("{}{WEBHOOK}", d.base),
        &token_file,
        "20s",
    ))
    .await;
    let backend = FastApiBackend::start(Profile::Default).await;
    // HighLatencyP95: the runbook's own query over the high-resolution histogram, on a short window.
    let rules = r#"groups:
  - name: harven
    rules:
      - alert: HighLatencyP95
        expr: histogram_quantile(0.95, sum by (le) (rate(http_request_duration_highr_seconds_bucket[10s]))) > 3
        for: 2s
        labels: { severity: page }
        annotations: { summary: "p95 above 3 s" }
"#;
    let prom = PrometheusServer::start_with(
        &[backend.target()],
        &ExtraConfig {
            yaml: format!(
                "rule_files: ['rules.yml']\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{}']\n",
                am.target()
            ),
            files: vec![("rules.yml".to_owned(), rules.to_owned())],
            ..ExtraConfig::default()
        },
    )
    .await;

    // --- Slow chat: Prometheus' rule fires, Alertmanager posts it, latency opens and pages L1 ---
    backend.set_scenario(&Scenario::slow_chat(4.0, 6.0)).await;
    let load = Load::start(&backend, LoadSpec::new(10.0, &[(Handler::Chat, 1)]));
    let found = wait_for_some(Duration::from_secs(120), Duration::from_millis(200), || {
        let mail = smtp.messages();
        async move { (!of(&mail, "latency", "opened").is_empty()).then_some(mail) }
    })
    .await;
    let mail = match found {
        Ok(mail) => mail,
        Err(e) => panic!(
            "no latency page ({e}); mail: {:?}\nAlertmanager:\n{}\nPrometheus alerts: {:?}",
            summary(&smtp.messages()),
            am.log_tail(),
            prom.query("ALERTS").await
        ),
    };
    let opened = of(&mail, "latency", "opened");
    assert_eq!(opened.len(), 1, "{:?}", summary(&mail));
    assert_eq!(opened[0].header("X-Harven-Level"), Some("L1"));
    assert_eq!(opened[0].rcpt_to, ["oncall@test.harven"]);
    let listed = alerts(&d).await;
    let ours: Vec<&Value> = listed
        .iter()
        .filter(|a| a["alertname"] == "HighLatencyP95")
        .collect();
    assert_eq!(ours.len(), 1, "{listed:?}");
    assert_eq!(ours[0]["state"], "firing");
    assert_eq!(ours[0]["section"], "latency");
    assert_eq!(ours[0]["labels"]["severity"], "page");
    // The alert's own words (its summary) are its evidence in the email, quoted as the sender's,
    // and `/` lists it under "Alerts received" with the section it routed to.
    let text = opened[0].text().unwrap_or_default();
    assert!(
        text.contains("HighLatencyP95 says «p95 above 3 s»"),
        "{text}"
    );
    let index = d.get("/").await;
    assert!(
        index.contains("id=\"alerts\"") && index.contains("«HighLatencyP95»"),
        "{index}"
    );
    assert!(index.contains("<code>latency</code>"), "{index}");
    let incidents: Value =
        serde_json::from_str(&d.get("/api/incidents").await).expect("incidents JSON");
    let latency = incidents["incidents"]
        .as_array()
        .and_then(|l| l.iter().find(|i| i["section"] == "latency"))
        .cloned()
        .expect("the latency incident");
    let detail: Value = serde_json::from_str(
        &d.get(&format!(
            "/api/incidents/{}",
            latency["id"].as_str().expect("id")
        ))
        .await,
    )
    .expect("incident JSON");
    assert!(
        detail.to_string().contains("latency.alert_firing"),
        "opened by the alert's rule: {detail}"
    );

    // --- Normal again: the rule resolves, Alertmanager posts it resolved ---------------------------
    backend.set_scenario(&Scenario::Normal).await;
    load.stop().await;
    let resolved = wait_for_some(Duration::from_secs(120), Duration::from_millis(250), || {
        let d = &d;
        async move { (by_state(&alerts(d).await, "HighLatencyP95") == "resolved").then_some(()) }
    })
    .await;
    resolved.unwrap_or_else(|e| {
        panic!(
            "Alertmanager never posted the resolution ({e}); Alertmanager:\n{}",
            am.log_tail()
        )
    });
    assert!(
        of(&smtp.messages(), "latency", "resolved").is_empty(),
        "nothing resolves before the section's resolve_after has passed on the clock"
    );

    // --- The clock passes the section's resolve_after (30 s): resolved ----------------------------
    let mail = until_resolved(&d, &smtp).await;
    let resolved = of(&mail, "latency", "resolved");
    assert_eq!(resolved.len(), 1, "{:?}", summary(&mail));
    assert_eq!(resolved[0].header("X-Harven-Level"), Some("L1"));
    assert_eq!(of(&mail, "latency", "opened").len(), 1, "paged once");
    drop(prom);
    drop(am);
    d.stop().await;
}

/// A restart while a critical alert holds a section open: the inbox is kept in the store, so the
/// new process has the alert back (listed firing) and its section keeps firing on it, neither
/// resolved falsely nor held unknown; the sender's resolution heard after the restart then clears
/// it within the section's `resolve_after`, long before `resend_within` (the wait an inbox that
/// forgot its alerts would need). The alert's `severity="critical"` label made the incident
/// critical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_alerts_so_their_section_neither_resolves_falsely_nor_waits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let smtp = SmtpServer::start().await;
    let first = daemon(dir.path(), smtp.port()).await;
    let critical = FIRING.replace("\"severity\": \"page\"", "\"severity\": \"critical\"");
    assert_ne!(critical, FIRING, "the fixture's severity label");
    let (status, _) = post(&first, Some(TOKEN), critical.into_bytes()).await;
    assert_eq!(status, 200);
    smtp.wait_for_messages(1, Duration::from_secs(60)).await;
    let mail = smtp.messages();
    let opened = of(&mail, "latency", "opened");
    assert_eq!(opened.len(), 1, "{:?}", summary(&mail));
    let subject = opened[0].subject().unwrap_or_default();
    assert!(subject.contains("[critical]"), "{subject}");
    let incident = opened[0]
        .header("X-Harven-Incident")
        .expect("incident")
        .to_owned();
    let hand = first.stop().await;

    // The next process, on the same store, 30 s later: the alert is back from the store.
    let started = hand.now() + Duration::from_secs(30);
    let second = daemon_at(dir.path(), smtp.port(), started).await;
    assert_eq!(by_state(&alerts(&second).await, "HighLatencyP95"), "firing");
    // Past the section's resolve_after (30 s), within resend_within (2 m) of the alert's last
    // word: the section still fires, on the alert itself.
    second.hand.advance(Duration::from_secs(40));
    let store = Store::open(dir.path().join("watchdog.db")).expect("the store");
    evaluated_at(&store, &incident, second.hand.now()).await;
    let gauge =
        "harven_watchdog_symptoms_firing{section=\"latency\",rule=\"latency.alert_firing\"}";
    assert_eq!(
        sample(&second, gauge).await,
        1.0,
        "firing on the kept alert"
    );
    assert!(of(&smtp.messages(), "latency", "resolved").is_empty());
    // The sender's resolution: the section clears after its resolve_after, not resend_within.
    let (status, _) = post(&second, Some(TOKEN), RESOLVED.into()).await;
    assert_eq!(status, 200);
    let mail = until_resolved(&second, &smtp).await;
    assert_eq!(of(&mail, "latency", "opened").len(), 1, "one incident");
    assert_eq!(of(&mail, "latency", "resolved").len(), 1);
    assert!(
        second.hand.now() < started + Duration::from_secs(120),
        "resolved at {}, not held until resend_within after the start",
        second.hand.now()
    );
    second.stop().await;
}

/// Moves `d`'s clock until the latency incident's resolved email arrives; all the mail then.
async fn until_resolved(d: &TestDaemon, smtp: &SmtpServer) -> Vec<ReceivedMail> {
    advance_until(
        &d.hand,
        Duration::from_secs(5),
        smtp,
        "the latency incident resolves",
        |mail| !of(mail, "latency", "resolved").is_empty(),
    )
    .await
}

/// A raw request to the daemon.
async fn post(d: &TestDaemon, token: Option<&str>, body: Vec<u8>) -> (u16, Value) {
    let mut request = http_client()
        .post(format!("{}{WEBHOOK}", d.base))
        .header("Content-Type", "application/json")
        .body(body);
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let answer = request.send().await.expect("POST the webhook");
    let status = answer.status().as_u16();
    let body = answer.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// The value of `series` on /metrics.
async fn sample(d: &TestDaemon, series: &str) -> f64 {
    crate::support::daemon::sample(&d.metrics().await, series).unwrap_or(f64::NAN)
}

#[tokio::test]
async fn the_webhook_refuses_without_the_token_garbage_and_oversize_and_lists_the_unmatched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(dir.path(), 1).await;
    let no_credentials = "harven_watchdog_auth_refusals_total{reason=\"no_credentials\"}";
    let before = sample(&d, no_credentials).await;

    // No token: 401, nothing recorded, counted.
    let (status, _) = post(&d, None, FIRING.as_bytes().to_vec()).await;
    assert_eq!(status, 401);
    let (status, _) = post(&d, Some("not-the-token-at-all-000000"), FIRING.into()).await;
    assert_eq!(status, 403);
    assert!(
        alerts(&d).await.is_empty(),
        "a refused request changes nothing"
    );
    assert_eq!(sample(&d, no_credentials).await, before + 1.0);

    // Garbage and a wrong shape: 400, counted as malformed.
    for body in [&b"{not json"[..], br#"{"alerts": "many"}"#, b"[]"] {
        let (status, answer) = post(&d, Some(TOKEN), body.to_vec()).await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer["error"].is_string());
    }
    let malformed = "harven_watchdog_alert_webhooks_total{result=\"malformed\"}";
    assert_eq!(sample(&d, malformed).await, 3.0);

    // Over 1 MiB: 413, counted.
    let mut huge = br#"{"alerts": [], "receiver": ""#.to_vec();
    huge.extend(std::iter::repeat_n(b'x', 1024 * 1024 + 1));
    huge.extend(br#""}"#);
    let (status, _) = post(&d, Some(TOKEN), huge).await;
    assert_eq!(status, 413);
    let too_large = "harven_watchdog_alert_webhooks_total{result=\"too_large\"}";
    assert_eq!(sample(&d, too_large).await, 1.0);

    // The real Alertmanager's payload (captured), then an alert no route takes and one naming an
    // unknown section: both listed as unmatched with why, and counted by reason.
    let (status, answer) = post(&d, Some(TOKEN), FIRING.into()).await;
    assert_eq!(
        (status, &answer["firing"]),
        (200, &Value::from(1)),
        "{answer}"
    );
    let unmatched = serde_json::json!({
        "version": "4", "status": "firing", "receiver": "watchdog", "groupKey": "{}:{}",
        "alerts": [
            { "status": "firing", "labels": { "alertname": "DiskFull" }, "fingerprint": "aa01" },
            { "status": "firing", "labels": { "alertname": "Billing", "harven_section": "billing" },
              "fingerprint": "aa02" },
        ]
    });
    let (status, answer) = post(&d, Some(TOKEN), unmatched.to_string().into_bytes()).await;
    assert_eq!(
        (status, &answer["unmatched"]),
        (200, &Value::from(2)),
        "{answer}"
    );
    let listed = alerts(&d).await;
    let by_name = |name: &str| {
        listed
            .iter()
            .find(|a| a["alertname"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} listed: {listed:?}"))
    };
    assert_eq!(by_name("HighLatencyP95")["section"], "latency");
    assert_eq!(by_name("DiskFull")["section"], "unmatched");
    assert_eq!(by_name("DiskFull")["unmatched_reason"], "no_route");
    assert_eq!(by_name("Billing")["unmatched_reason"], "unknown_section");
    for reason in ["no_route", "unknown_section"] {
        let series = format!("harven_watchdog_alerts_unmatched_total{{reason=\"{reason}\"}}");
        assert_eq!(sample(&d, &series).await, 1.0, "{series}");
    }

    // Resolved by the captured payload: listed as resolved.
    let (status, _) = post(&d, Some(TOKEN), RESOLVED.into()).await;
    assert_eq!(status, 200);
    assert_eq!(by_state(&alerts(&d).await, "HighLatencyP95"), "resolved");
    d.stop().await;
}

/// The state of the alert named `name` in a listing.
fn by_state(listed: &[Value], name: &str) -> String {
    listed
        .iter()
        .find(|a| a["alertname"] == name)
        .and_then(|a| a["state"].as_str())
        .unwrap_or("absent")
        .to_owned()
}

/// `deploy/alertmanager/alertmanager.yml`, the example the deployment ships, is a configuration
/// the real Alertmanager accepts (its `amtool check-config`), with the token file it names.
#[test]
fn the_deploy_example_is_a_configuration_alertmanager_accepts() {
    crate::support::require_program("amtool", "prometheus-alertmanager");
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("watchdog_api_token");
    std::fs::write(&token, TOKEN).expect("token");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read_to_string(root.join("deploy/alertmanager/alertmanager.yml"))
        .expect("the example");
    assert!(example.contains("/api/webhooks/alertmanager"), "{example}");
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        example.replace(
            "/run/secrets/watchdog_api_token",
            &token.display().to_string(),
        ),
    )
    .expect("write");
    let out = std::process::Command::new("amtool")
        .arg("check-config")
        .arg(&config)
        .output()
        .expect("run amtool");
    assert!(
        out.status.success(),
        "amtool refused the example:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `deploy/grafana/provisioning/alerting/harven-watchdog.yaml`, the Grafana contact point the
/// deployment ships, is YAML (parsed by Debian's PyYAML, `python3-yaml`) and names what the daemon
/// expects: a webhook POSTing to the webhook route on the compose service's default port, with the
/// API token as a Bearer credential read from the file `deploy/watchdog.toml` gives the daemon.
#[test]
fn the_grafana_example_names_the_webhook_and_token_the_daemon_expects() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("deploy/grafana/provisioning/alerting/harven-watchdog.yaml");
    let out = std::process::Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(&path)
        .output()
        .expect("run /usr/bin/python3 (scripts/test.sh installs python3-yaml)");
    assert!(
        out.status.success(),
        "not YAML PyYAML reads:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON from python");
    assert_eq!(doc["apiVersion"], 1, "{doc:#}");
    let receiver = &doc["contactPoints"][0]["receivers"][0];
    assert_eq!(receiver["type"], "webhook", "{doc:#}");
    let settings = &receiver["settings"];
    let url = url::Url::parse(settings["url"].as_str().expect("a url")).expect("a URL");
    assert_eq!(url.path(), WEBHOOK);
    assert_eq!(url.host_str(), Some("harven-watchdog"), "compose's service");
    let listen = harven_watchdog::config::Config::load_with_env(&[], Vec::new())
        .expect("the defaults")
        .server
        .listen;
    assert_eq!(url.port(), Some(listen.port()), "the daemon's default port");
    assert_eq!(settings["httpMethod"], "POST");
    assert_eq!(settings["authorization_scheme"], "Bearer");
    let deployed: toml::Value = toml::from_str(
        &std::fs::read_to_string(root.join("deploy/watchdog.toml")).expect("deploy/watchdog.toml"),
    )
    .expect("TOML");
    let token_file = deployed["server"]["api_token_file"]
        .as_str()
        .expect("server.api_token_file");
    assert_eq!(
        settings["authorization_credentials"],
        format!("$__file{{{token_file}}}"),
        "the token file the daemon reads"
    );
}
