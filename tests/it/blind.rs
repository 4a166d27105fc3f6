//! Blind spots end to end: beside the real FastAPI app (the library's default instrumentation, whose
//! per-handler histogram stops at 1 s) with the daemon told of a high-resolution histogram the
//! backend does not export, of a scrape job Prometheus does not have, and of a backend role that
//! matches no container on the real Docker Engine, the rules that cannot fire are reported with
//! their fixes on `/metrics`, in `diagnose` and `check-config --live`, on the status page and in one
//! L1 email of the watchdog section.

use std::process::Command;
use std::time::Duration;

use harven_watchdog::store::{EmailStatus, Store};

use crate::support::daemon::{T0, TestDaemon, evaluated_at, paging_env};
use crate::support::fastapi::{FastApiBackend, Handler, Load, LoadSpec, Profile};
use crate::support::prometheus::PrometheusServer;
use crate::support::smtp::{ReceivedMail, SmtpServer, advance_until};
use crate::support::wait_until;

/// The overrides that make the watchdog blind: a high-resolution histogram name the backend does
/// not export, a job Prometheus does not scrape, and a backend role naming no container (on the real
/// Engine; the Compose match off, so other tests' containers do not count).
const BLINDING: [(&str, &str); 5] = [
    (
        "HARVEN_WATCHDOG__PROMETHEUS__LATENCY_HIGHR_HISTOGRAM",
        "harven_request_duration_highr_seconds",
    ),
    ("HARVEN_WATCHDOG__PROMETHEUS__BACKEND_JOB", "api"),
    (
        "HARVEN_WATCHDOG__DOCKER__HOST",
        "unix:///var/run/docker.sock",
    ),
    (
        "HARVEN_WATCHDOG__DOCKER__ROLES__BACKEND__NAMES",
        "harven-blind-test-no-such-backend",
    ),
    (
        "HARVEN_WATCHDOG__DOCKER__ROLES__BACKEND__COMPOSE_SERVICE",
        "",
    ),
];

fn watchdog_l1(m: &ReceivedMail) -> bool {
    m.header("X-Harven-Section") == Some("watchdog")
        && m.header("X-Harven-Level") == Some("L1")
        && m.header("X-Harven-Event") == Some("opened")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_that_cannot_fire_are_reported_with_their_fix_everywhere() {
    let backend = FastApiBackend::start(Profile::Default).await;
    let prom = PrometheusServer::start(&[backend.target()]).await;
    let smtp = SmtpServer::start().await;
    let load = Load::start(
        &backend,
        LoadSpec::new(5.0, &[(Handler::Chat, 3), (Handler::Courses, 1)]),
    );
    let data = tempfile::tempdir().expect("tempdir");
    let mut env = paging_env(&prom.url(), smtp.port(), data.path());
    env.extend(
        BLINDING
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let d = TestDaemon::start(env.clone(), T0).await;

    // /metrics: one series per blind rule, with why.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let buckets = r#"harven_watchdog_rule_blind{rule="latency.p95_high",reason="buckets"} 1"#;
    let no_job =
        r#"harven_watchdog_rule_blind{rule="errors.backend_target_down",reason="no_job"} 1"#;
    let no_container =
        r#"harven_watchdog_rule_blind{rule="errors.backend_down",reason="no_container"} 1"#;
    loop {
        let text = d.metrics().await;
        if text.contains(buckets) && text.contains(no_job) && text.contains(no_container) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no blind spots on /metrics:\n{}",
            text.lines()
                .filter(|l| l.contains("rule_blind") || l.contains("probe_up"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // One L1 email of the watchdog section, carrying each fix.
    let mail = advance_until(
        &d.hand,
        Duration::from_secs(15),
        &smtp,
        "the watchdog's L1 email",
        |m| m.iter().any(watchdog_l1),
    )
    .await;
    let email = mail.iter().find(|m| watchdog_l1(m)).expect("the email");
    let text = email.text().expect("a text part");
    for fix in [
        "latency_lowr_buckets=(",
        "prometheus.backend_job",
        "http_request_duration_seconds has buckets 0.1, 0.5, 1",
        "harven-blind-test-no-such-backend",
    ] {
        assert!(text.contains(fix), "the email says {fix:?}:\n{text}");
    }
    let incident = email
        .header("X-Harven-Incident")
        .expect("incident")
        .to_owned();
    // Time passes: no second email of that incident to L1 (reminders are a day apart here). Once the
    // book's step 20 minutes on is in the store, so is any email it decided; once that incident's
    // ledger is all sent, the server has every one.
    d.hand.advance(Duration::from_secs(20 * 60));
    let store = Store::open(data.path().join("watchdog.db")).expect("the store");
    evaluated_at(&store, &incident, d.hand.now()).await;
    let ledger = store.outbox_for(&incident).expect("read the outbox");
    assert_eq!(
        ledger.len(),
        1,
        "one email decided: {:?}",
        ledger.iter().map(|e| &e.key).collect::<Vec<_>>()
    );
    wait_until(Duration::from_secs(60), Duration::from_millis(50), || {
        let sent = store
            .outbox_for(&incident)
            .expect("read the outbox")
            .iter()
            .all(|e| e.status == EmailStatus::Sent);
        async move { sent }
    })
    .await
    .expect("the email is sent");
    let l1: Vec<_> = smtp
        .messages()
        .into_iter()
        .filter(|m| m.header("X-Harven-Incident") == Some(incident.as_str()))
        .collect();
    assert_eq!(
        l1.len(),
        1,
        "one email: {:?}",
        l1.iter().map(|m| m.subject()).collect::<Vec<_>>()
    );

    // The status page: the open watchdog incident, and its page with the fix.
    let index = d.get("/").await;
    assert!(index.contains(&incident), "the index lists {incident}");
    assert!(
        index.contains("Blind spots: rules that cannot fire"),
        "{index}"
    );
    assert!(index.contains("<code>latency.p95_high</code>"), "{index}");
    assert!(
        index.contains("latency_lowr_buckets=("),
        "the fix is on the index: {index}"
    );
    // The incident's page: its symptom and the blind spots' fixes in its kept diagnosis (bounded
    // text: with a dozen blind rules not every fix fits; the index above lists them all).
    let page = d.get(&format!("/incidents/{incident}")).await;
    assert!(page.contains("watchdog.rule_blind"), "{page}");
    assert!(page.contains("Fix: "), "{page}");

    // diagnose, the on-demand check, with the same configuration.
    let out = Command::new(env!("CARGO_BIN_EXE_harven-watchdog"))
        .arg("diagnose")
        .envs(env.iter().cloned())
        .output()
        .expect("run diagnose");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("BLIND SPOTS"), "{stdout}");
    assert!(
        stdout.contains("latency.p95_high cannot fire (buckets)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("errors.backend_target_down cannot fire (no_job)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("errors.backend_down cannot fire (no_container)"),
        "{stdout}"
    );

    // check-config --live fails, naming each blind spot with its fix.
    let out = Command::new(env!("CARGO_BIN_EXE_harven-watchdog"))
        .args(["check-config", "--live"])
        .envs(env.iter().cloned())
        .output()
        .expect("run check-config --live");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("configuration OK"), "{stdout}");
    assert!(
        stdout.contains("- latency.p95_high cannot fire (buckets)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Fix: Instrumentator().instrument(app, latency_lowr_buckets=("),
        "{stdout}"
    );
    assert!(
        stdout.contains("- errors.backend_down cannot fire (no_container)"),
        "{stdout}"
    );
    load.stop().await;
    d.stop().await;
}
