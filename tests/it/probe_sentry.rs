//! The Sentry probe against a local server speaking Sentry's web API formats (`support::sentry`):
//! the readings over paged issues and releases, every way the source fails, that the token never
//! leaks, and `diagnose` naming `errors.bad_deploy` from issues first seen after the latest
//! release, and not naming it for a spike of old issues with no deploy (the confounded case).

use std::process::Command;
use std::time::Duration;

use harven_watchdog::clock::Clock;
use harven_watchdog::config::SentryConfig;
use harven_watchdog::observe::{FailureKind, Key, Outcome, ProbeReport, Value};
use harven_watchdog::probe::sentry::SentryProbe;
use harven_watchdog::probe::{ProbeMetrics, poll_once};
use harven_watchdog::secret::Secret;

use crate::support::sentry::{Answer, FakeIssue, FakeSentry};
use crate::support::{self, Captured, free_port};

/// The token the fake accepts: distinctive, so a leak is found by search.
const TOKEN: &str = "sntrys_CANARYsentry5Jq8Wz2Xv";
const ORG: &str = "harven";
const PROJECT: &str = "harven-backend";

/// Timeout of the probes under test: short, so hangs are cut off quickly.
const TIMEOUT: Duration = Duration::from_secs(1);

/// How long a poll may take at most before the test calls it a hang.
const HANG_BOUND: Duration = Duration::from_secs(30);

fn config(url: url::Url, token: &str, project: &str) -> SentryConfig {
    SentryConfig {
        url,
        token: Secret::new(token),
        organization: ORG.into(),
        projects: vec![project.into()],
        interval: Duration::from_secs(60),
        timeout: TIMEOUT,
        window: Duration::from_secs(3600),
    }
}

fn probe(url: url::Url, token: &str) -> SentryProbe {
    support::init();
    SentryProbe::new(&config(url, token, PROJECT)).expect("the Sentry probe")
}

async fn poll(probe: &mut SentryProbe) -> ProbeReport {
    tokio::time::timeout(HANG_BOUND, poll_once(probe, &Clock::system()))
        .await
        .expect("a poll of Sentry was not cut off")
}

fn value(report: &ProbeReport, name: &'static str) -> Value {
    let observations = report
        .result
        .as_ref()
        .unwrap_or_else(|f| panic!("sentry failed: {f}"));
    match &observations
        .iter()
        .find(|o| o.key == Key::new(name))
        .unwrap_or_else(|| panic!("no {name} in {observations:?}"))
        .outcome
    {
        Outcome::Value(v) => v.clone(),
        other => panic!("{name}: expected a value, got {other:?}"),
    }
}

fn number(report: &ProbeReport, name: &'static str) -> f64 {
    match value(report, name) {
        Value::Number(n) => n,
        other => panic!("{name}: expected a number, got {other:?}"),
    }
}

fn failure(report: &ProbeReport) -> (FailureKind, String) {
    match &report.result {
        Err(f) => (f.kind, f.detail.clone()),
        Ok(o) => panic!("sentry should have failed, got {o:?}"),
    }
}

/// Three old issues at 2 events an hour and two new since a release 30 minutes ago.
fn after_a_release(server: &FakeSentry) {
    server.set_releases(&[("backend@1.4.2", 1800), ("backend@1.4.1", 7 * 86_400)]);
    let mut issues: Vec<_> = (1..=3)
        .map(|n| {
            FakeIssue::steady(
                &format!("BACKEND-{n}"),
                "TimeoutError: upstream",
                30 * 86_400,
                2,
            )
        })
        .collect();
    issues.push(FakeIssue {
        recent_per_hour: 120,
        per_hour: 0,
        ..FakeIssue::steady("BACKEND-7", "KeyError: 'tenant_id' in /api/v1/chat", 600, 0)
    });
    issues.push(FakeIssue {
        recent_per_hour: 15,
        per_hour: 0,
        ..FakeIssue::steady("BACKEND-8", "ValidationError: plan", 900, 0)
    });
    server.set_issues(issues);
}

/// The readings over several pages (the `Link` cursor followed), the release as the deploy, the
/// token and the documented query on every request.
#[tokio::test]
async fn reads_issues_events_and_the_release_across_pages() {
    let server = FakeSentry::start(TOKEN, ORG, PROJECT).await;
    after_a_release(&server);
    server.set_page_size(2);
    let mut p = probe(server.url(), TOKEN);
    let r = poll(&mut p).await;
    assert_eq!(r.source, "sentry");
    assert_eq!(number(&r, "sentry.unresolved_issues"), 5.0);
    assert_eq!(number(&r, "sentry.new_since_release"), 2.0);
    assert_eq!(number(&r, "sentry.new_issues"), 2.0);
    // The window (the previous hour and this one): 3 × 2 × 2 old events, 2 × 135 new ones.
    assert_eq!(number(&r, "sentry.events"), 12.0 + 270.0);
    assert!((number(&r, "sentry.events_baseline_per_hour") - 6.0).abs() < 1e-9);
    assert!(number(&r, "sentry.event_rate_ratio") > 5.0);
    let age = number(&r, "sentry.release_age_seconds");
    assert!((1800.0..1900.0).contains(&age), "{age}");
    let Value::Text(top) = value(&r, "sentry.top_new_issues") else {
        panic!("a text")
    };
    assert!(
        top.starts_with("BACKEND-7 \"KeyError: 'tenant_id' in /api/v1/chat\" (240 events, 3 users, error) https://harven.sentry.io/issues/BACKEND-7/"),
        "{top}"
    );
    assert!(
        top.contains("BACKEND-8") && !top.contains("BACKEND-1"),
        "{top}"
    );

    let seen = server.requests();
    let issue_pages: Vec<_> = seen
        .iter()
        .filter(|s| s.path.ends_with("/issues/"))
        .collect();
    assert_eq!(issue_pages.len(), 3, "five issues, two a page: {seen:?}");
    assert!(
        issue_pages[0].query.contains("query=is%3Aunresolved"),
        "{seen:?}"
    );
    assert!(issue_pages[0].query.contains("statsPeriod=24h"), "{seen:?}");
    assert!(
        issue_pages[1].query.contains("cursor=0%3A2%3A0"),
        "{seen:?}"
    );
    assert_eq!(
        seen[0].path,
        format!("/api/0/projects/{ORG}/{PROJECT}/releases/")
    );
    assert!(
        seen.iter()
            .all(|s| s.authorization.as_deref() == Some(&*format!("Bearer {TOKEN}")))
    );

    // No releases: nothing since a release (no data), the window's new issues are the top list.
    server.set_releases(&[]);
    let r = poll(&mut p).await;
    let obs = r.result.as_ref().expect("answers");
    let since = obs
        .iter()
        .find(|o| o.key.name == "sentry.new_since_release")
        .expect("the reading");
    assert!(matches!(since.outcome, Outcome::NoData(_)), "{since:?}");
    assert_eq!(number(&r, "sentry.new_issues"), 2.0);
}

/// Down, hang, HTML, 2 MiB, a refused token, an unknown project, a 5xx and a 429 each fail the
/// source within its timeout, and the same probe reads Sentry again afterwards.
#[tokio::test]
async fn down_hang_garbage_401_404_5xx_and_oversize_fail_the_source() {
    let port = free_port();
    let url: url::Url = format!("http://127.0.0.1:{port}").parse().unwrap();
    let mut p = probe(url, TOKEN);
    let (kind, detail) = failure(&poll(&mut p).await);
    assert_eq!(kind, FailureKind::Connect, "{detail}");
    let server = FakeSentry::start_on(port, TOKEN, ORG, PROJECT).await;
    assert!(poll(&mut p).await.result.is_ok());

    for (answer, kind) in [
        (Answer::Hang, FailureKind::Timeout),
        (Answer::Garbage, FailureKind::Malformed),
        (Answer::Huge, FailureKind::TooLarge),
        (Answer::Status(502), FailureKind::Status),
        (Answer::Status(429), FailureKind::Status),
    ] {
        server.set(answer.clone());
        let report = poll(&mut p).await;
        let (got, detail) = failure(&report);
        assert_eq!(got, kind, "{answer:?}: {detail}");
        assert!(report.took < TIMEOUT * 3, "{answer:?}: {:?}", report.took);
        if answer == Answer::Garbage {
            assert!(detail.contains("HTML"), "{detail}");
        }
    }
    server.set(Answer::Ok);
    assert!(poll(&mut p).await.result.is_ok());

    // A token Sentry refuses: the fix names the token's file, never the token or Sentry's words.
    let (kind, detail) = failure(&poll(&mut probe(server.url(), "sntrys_wrong-token")).await);
    assert_eq!(kind, FailureKind::Status);
    assert!(
        detail.contains("401") && detail.contains("token_file"),
        "{detail}"
    );
    assert!(
        !detail.contains("wrong-token") && !detail.contains("Invalid"),
        "{detail}"
    );

    // A project Sentry does not know: named, with the fix.
    let mut unknown =
        SentryProbe::new(&config(server.url(), TOKEN, "harven-frontend")).expect("a probe");
    let (kind, detail) = failure(&poll(&mut unknown).await);
    assert_eq!(kind, FailureKind::Status);
    assert!(
        detail.contains("404") && detail.contains("harven-frontend"),
        "{detail}"
    );
}

/// The token reaches no observation, failure, `diagnose`, metric, `Debug` or log line, whether
/// Sentry answers, refuses (its 401 here quotes the header it got), hangs or cannot be reached.
#[tokio::test]
async fn the_sentry_token_never_leaks() {
    let (logs, _guard) = Captured::start();
    let server = FakeSentry::start(TOKEN, ORG, PROJECT).await;
    after_a_release(&server);
    let mut p = probe(server.url(), TOKEN);
    let mut reports = vec![poll(&mut p).await];
    for answer in [Answer::Status(500), Answer::Hang, Answer::Garbage] {
        server.set(answer);
        reports.push(poll(&mut p).await);
    }
    server.set(Answer::Ok);
    reports.push(poll(&mut probe(server.url(), "sntrys_CANARYwrong")).await);
    let dead: url::Url = format!("http://127.0.0.1:{}", free_port()).parse().unwrap();
    let debug = format!("{p:?} {:?}", config(dead.clone(), TOKEN, PROJECT));
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = ProbeMetrics::register(&mut registry);
    reports.push(support::first_report_of_run(probe(dead, TOKEN), &metrics).await);
    for r in &reports {
        metrics.record(r);
    }
    assert!(
        server
            .requests()
            .iter()
            .any(|s| s.authorization.as_deref() == Some(&*format!("Bearer {TOKEN}"))),
        "the token was sent, so there was something to leak"
    );
    assert!(reports[0].result.is_ok());
    assert_eq!(failure(&reports[4]).0, FailureKind::Status);

    let mut haystacks = vec![("probe Debug", debug)];
    haystacks.extend(support::report_surfaces(reports, &registry));
    let (_, exposition) = haystacks.last().expect("the metrics");
    assert!(exposition.contains("probe=\"sentry\""), "{exposition}");
    let log_text = logs.text();
    assert!(log_text.contains("source unreachable"), "{log_text}");
    haystacks.push(("logs", log_text));
    for (what, text) in &haystacks {
        for needle in [TOKEN, "CANARY"] {
            assert!(
                !text.contains(needle),
                "{needle} leaked into the {what}: {text}"
            );
        }
    }
}

/// `harven-watchdog diagnose --json` with Sentry at `server` (no Prometheus, Docker or Redis).
fn diagnose(server: &FakeSentry) -> serde_json::Value {
    let data = tempfile::tempdir().expect("tempdir");
    let dead = |scheme: &str| format!("{scheme}://127.0.0.1:{}", free_port());
    let out = Command::new(env!("CARGO_BIN_EXE_harven-watchdog"))
        .args(["diagnose", "--json"])
        .env(
            "HARVEN_WATCHDOG__STORE__PATH",
            data.path().join("watchdog.db"),
        )
        .env("HARVEN_WATCHDOG__REDIS__URL", dead("redis"))
        .env("HARVEN_WATCHDOG__PROMETHEUS__URL", dead("http"))
        .env("HARVEN_WATCHDOG__STATUS__OPENAI__URL", dead("http"))
        .env("HARVEN_WATCHDOG__STATUS__SUPABASE__URL", dead("http"))
        .env(
            "HARVEN_WATCHDOG__DOCKER__HOST",
            "unix:///nonexistent/docker.sock",
        )
        .env("HARVEN_WATCHDOG__RUNBOOK__LOCALE", "en")
        .env("HARVEN_WATCHDOG__SENTRY__URL", server.url().to_string())
        .env("HARVEN_WATCHDOG__SENTRY__TOKEN", TOKEN)
        .env("HARVEN_WATCHDOG__SENTRY__ORGANIZATION", ORG)
        .env("HARVEN_WATCHDOG__SENTRY__PROJECTS", PROJECT)
        .env("HARVEN_WATCHDOG__SENTRY__TIMEOUT", "5s")
        .output()
        .expect("run diagnose");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// The errors section's ranked causes in a `diagnose` report.
fn errors(report: &serde_json::Value) -> &Vec<serde_json::Value> {
    report["diagnoses"]
        .as_array()
        .expect("diagnoses")
        .iter()
        .find(|d| d["section"] == "errors")
        .unwrap_or_else(|| panic!("no errors diagnosis: {report:#}"))["diagnosis"]["causes"]
        .as_array()
        .expect("causes")
}

fn holds(report: &serde_json::Value, rule: &str) -> bool {
    report["symptoms"]
        .as_array()
        .expect("symptoms")
        .iter()
        .any(|s| s["rule"] == rule && s["state"] == "holds")
}

/// Issues first seen after the latest release: `errors.bad_deploy` is top, its context lists the
/// new issues with titles, counts and links (what the email shows), and `diagnose` shows the
/// readings. A spike of old issues with no release and no deploy seen: the spike symptom holds,
/// and `bad_deploy` is not likely (the confounded case).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_names_bad_deploy_from_new_issues_and_not_from_a_spike_without_a_deploy() {
    let server = FakeSentry::start(TOKEN, ORG, PROJECT).await;
    after_a_release(&server);
    let report = diagnose(&server);
    let causes = errors(&report);
    assert_eq!(causes[0]["id"], "errors.bad_deploy", "{causes:#?}");
    assert_eq!(causes[0]["status"], "likely");
    let context = causes[0]["context"].as_array().expect("context");
    let top = context
        .iter()
        .find(|c| c["name"] == "sentry_new_issues")
        .unwrap_or_else(|| panic!("no sentry_new_issues: {context:#?}"));
    let text = top["value"].as_str().unwrap_or_default();
    assert!(
        text.contains("KeyError: 'tenant_id'")
            && text.contains("240 events")
            && text.contains("https://harven.sentry.io/issues/BACKEND-7/"),
        "{top}"
    );
    assert!(holds(&report, "errors.sentry_spike"), "{report:#}");
    for name in [
        "sentry.unresolved_issues",
        "sentry.new_since_release",
        "sentry.event_rate_ratio",
    ] {
        assert!(
            report["observations"]
                .as_array()
                .expect("observations")
                .iter()
                .any(|o| o["key"] == name && o["state"] == "value"),
            "diagnose shows {name}: {report:#}"
        );
    }

    // The confounded case: old issues spike, no release, no new issue.
    server.set_releases(&[]);
    server.set_issues(vec![FakeIssue {
        recent_per_hour: 300,
        ..FakeIssue::steady("BACKEND-1", "TimeoutError: upstream", 30 * 86_400, 3)
    }]);
    let report = diagnose(&server);
    assert!(holds(&report, "errors.sentry_spike"), "{report:#}");
    let bad_deploy = errors(&report)
        .iter()
        .find(|c| c["id"] == "errors.bad_deploy")
        .expect("bad_deploy");
    assert_ne!(bad_deploy["status"], "likely", "{bad_deploy:#}");
}
