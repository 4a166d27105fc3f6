//! The status-page and Supabase probes against fake peers speaking the real formats
//! (`support::saas`): every indicator, every way a page can fail, Supabase's symptoms versus a blind
//! source, and that the Supabase key leaks nowhere.

use std::time::Duration;

use harven_watchdog::clock::Clock;
use harven_watchdog::config::{StatusPageConfig, SupabaseConfig};
use harven_watchdog::observe::{FailureKind, Key, Outcome, ProbeReport, Value};
use harven_watchdog::probe::status::StatusPageProbe;
use harven_watchdog::probe::supabase::SupabaseProbe;
use harven_watchdog::probe::{self, Probe, ProbeMetrics, poll_once};
use harven_watchdog::secret::Secret;

use crate::support::saas::{FakeStatusPage, FakeSupabase, Health, PageScenario};
use crate::support::{self, Captured, free_port, outcome};

/// Request timeout of the probes under test: short, so hangs are cut off quickly.
const TIMEOUT: Duration = Duration::from_secs(1);

/// How long a poll may take at most before the test calls it a hang: far above `TIMEOUT`, so a
/// loaded machine never fails the test, and far below "forever".
const HANG_BOUND: Duration = Duration::from_secs(30);

fn client() -> reqwest::Client {
    support::init();
    probe::http::shared_client([TIMEOUT]).expect("the shared HTTP client")
}

fn page(name: &str, url: url::Url) -> StatusPageProbe {
    StatusPageProbe::new(
        StatusPageConfig {
            name: name.to_owned(),
            url,
            interval: Duration::from_secs(60),
            timeout: TIMEOUT,
        },
        client(),
    )
}

fn supabase(url: url::Url, key: &str) -> SupabaseProbe {
    support::init();
    SupabaseProbe::new(SupabaseConfig {
        url,
        api_key: Secret::new(key),
        interval: Duration::from_secs(30),
        timeout: TIMEOUT,
    })
    .expect("the Supabase probe")
}

/// One poll, failing the test if it is not over within [`HANG_BOUND`].
async fn poll<P: Probe>(probe: &mut P) -> ProbeReport {
    tokio::time::timeout(HANG_BOUND, poll_once(probe, &Clock::system()))
        .await
        .unwrap_or_else(|_| panic!("a poll of {} was not cut off", probe.source()))
}

fn text(report: &ProbeReport, key: &Key) -> String {
    match outcome(report, key) {
        Outcome::Value(Value::Text(t)) => t.clone(),
        other => panic!("{key}: expected text, got {other:?}"),
    }
}

fn number(report: &ProbeReport, key: &Key) -> f64 {
    match outcome(report, key) {
        Outcome::Value(Value::Number(n)) => *n,
        other => panic!("{key}: expected a number, got {other:?}"),
    }
}

fn boolean(report: &ProbeReport, key: &Key) -> bool {
    match outcome(report, key) {
        Outcome::Value(Value::Bool(b)) => *b,
        other => panic!("{key}: expected a boolean, got {other:?}"),
    }
}

fn failure_kind(report: &ProbeReport) -> FailureKind {
    match &report.result {
        Err(f) => f.kind,
        Ok(o) => panic!("{} should have failed, got {o:?}", report.source),
    }
}

#[tokio::test]
async fn status_page_reads_every_indicator_with_description_and_latency() {
    let server = FakeStatusPage::start(PageScenario::indicator("none")).await;
    let mut probe = page("openai", server.url());
    assert_eq!(probe.source(), "status.openai");
    let key = |name| Key::new(name).with("page", "openai");

    for (indicator, description) in [
        ("none", "All Systems Operational"),
        ("minor", "Partially Degraded Service"),
        ("major", "Partial System Outage"),
        ("critical", "Major System Outage"),
        ("maintenance", "Service Under Maintenance"),
    ] {
        server.set(PageScenario::indicator(indicator));
        let report = poll(&mut probe).await;
        assert_eq!(report.source, "status.openai");
        assert_eq!(text(&report, &key("status.indicator")), indicator);
        assert_eq!(text(&report, &key("status.description")), description);
        assert!(number(&report, &key("status.latency_seconds")) >= 0.0);
        assert_eq!(report.result.as_ref().unwrap().len(), 3);
    }
}

#[tokio::test]
async fn status_page_failures_have_their_kind_are_bounded_and_recover() {
    let server = FakeStatusPage::start(PageScenario::indicator("none")).await;
    let mut probe = page("supabase", server.url());
    let unknown_word = PageScenario::Indicator {
        indicator: "degraded".into(),
        description: "Something".into(),
    };
    for (scenario, kind) in [
        (PageScenario::Html502, FailureKind::Status),
        (PageScenario::Html200, FailureKind::Malformed),
        (PageScenario::Malformed, FailureKind::Malformed),
        (unknown_word, FailureKind::Malformed),
        (PageScenario::Huge, FailureKind::TooLarge),
        (PageScenario::HugeChunked, FailureKind::TooLarge),
        (PageScenario::Hang, FailureKind::Timeout),
    ] {
        server.set(scenario.clone());
        let report = poll(&mut probe).await;
        assert_eq!(failure_kind(&report), kind, "{scenario:?}: {report:?}");

        // The same probe reads the page again as soon as it answers properly.
        server.set(PageScenario::indicator("minor"));
        let report = poll(&mut probe).await;
        assert_eq!(
            text(
                &report,
                &Key::new("status.indicator").with("page", "supabase")
            ),
            "minor",
            "after {scenario:?}"
        );
    }
}

#[tokio::test]
async fn status_page_refusing_connections_is_a_connect_failure_until_it_listens() {
    let port = free_port();
    let url: url::Url = format!("http://127.0.0.1:{port}/api/v2/status.json")
        .parse()
        .unwrap();
    let mut probe = page("openai", url);
    let report = poll(&mut probe).await;
    assert_eq!(failure_kind(&report), FailureKind::Connect, "{report:?}");

    let server = FakeStatusPage::start_on(port, PageScenario::indicator("major")).await;
    let report = poll(&mut probe).await;
    assert_eq!(
        text(
            &report,
            &Key::new("status.indicator").with("page", "openai")
        ),
        "major"
    );
    assert_eq!(server.hits(), 1);
}

const KEY: &str = "sb-test-key-7f3a9c";

#[tokio::test]
async fn supabase_healthy_project_and_the_key_in_both_headers() {
    let server = FakeSupabase::start(KEY).await;
    let mut probe = supabase(server.url(), KEY);
    let report = poll(&mut probe).await;
    assert_eq!(report.source, "supabase");
    for endpoint in ["auth", "rest"] {
        let k = |s: &str| Key::new(catalogue_name(format!("supabase.{endpoint}_{s}")));
        assert!(boolean(&report, &k("ok")), "{endpoint}: {report:?}");
        assert_eq!(number(&report, &k("status")), 200.0);
        assert!(number(&report, &k("latency_seconds")) >= 0.0);
    }

    let seen = server.requests();
    let mut paths: Vec<_> = seen.iter().map(|r| r.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["/auth/v1/health", "/rest/v1/"]);
    for r in &seen {
        assert_eq!(r.apikey.as_deref(), Some(KEY), "{r:?}");
        assert_eq!(
            r.authorization.as_deref(),
            Some(format!("Bearer {KEY}").as_str()),
            "{r:?}"
        );
    }
}

/// Catalogue names are `&'static str`; a test builds a few from parts.
fn catalogue_name(s: String) -> &'static str {
    harven_watchdog::observe::intern(&s).unwrap_or_else(|| panic!("{s} is not in the catalogue"))
}

#[tokio::test]
async fn supabase_failing_endpoints_are_symptoms_not_a_blind_source() {
    let server = FakeSupabase::start(KEY).await;
    let mut probe = supabase(server.url(), KEY);
    let auth = |s: &str| Key::new(catalogue_name(format!("supabase.auth_{s}")));
    let rest = |s: &str| Key::new(catalogue_name(format!("supabase.rest_{s}")));

    // Auth failing, REST fine.
    server.set_auth(Health::Status(503));
    let report = poll(&mut probe).await;
    assert!(!boolean(&report, &auth("ok")));
    assert_eq!(number(&report, &auth("status")), 503.0);
    assert!(number(&report, &auth("latency_seconds")) >= 0.0);
    assert!(boolean(&report, &rest("ok")));
    assert_eq!(number(&report, &rest("status")), 200.0);

    // REST answering 500 and auth hanging: both symptoms, the source still answers.
    server.set_rest(Health::Status(500));
    server.set_auth(Health::Hang);
    let report = poll(&mut probe).await;
    assert!(!boolean(&report, &auth("ok")));
    assert_eq!(number(&report, &auth("status")), 0.0, "no answer: status 0");
    assert!(
        matches!(outcome(&report, &auth("latency_seconds")), Outcome::NoData(why) if why.to_string().contains("timeout")),
        "{report:?}"
    );
    assert!(!boolean(&report, &rest("ok")));
    assert_eq!(number(&report, &rest("status")), 500.0);

    // Both hanging: Supabase accepted and hung; still a symptom, not our network.
    server.set_rest(Health::Hang);
    let report = poll(&mut probe).await;
    assert!(!boolean(&report, &auth("ok")));
    assert!(!boolean(&report, &rest("ok")));

    // A wrong key: Supabase answers 401 on both.
    server.set_auth(Health::Ok);
    server.set_rest(Health::Ok);
    let mut wrong = supabase(server.url(), "not-the-key");
    let report = poll(&mut wrong).await;
    assert_eq!(number(&report, &auth("status")), 401.0);
    assert_eq!(number(&report, &rest("status")), 401.0);

    // And back to healthy; a large OpenAPI description from /rest/v1/ is healthy too.
    server.set_rest(Health::OkLarge);
    let report = poll(&mut probe).await;
    assert!(boolean(&report, &auth("ok")));
    assert!(boolean(&report, &rest("ok")), "{report:?}");
    assert_eq!(number(&report, &rest("status")), 200.0);
}

#[tokio::test]
async fn supabase_unreachable_on_both_endpoints_fails_the_source_then_recovers() {
    let port = free_port();
    let url: url::Url = format!("http://127.0.0.1:{port}").parse().unwrap();
    let mut probe = supabase(url, KEY);
    let report = poll(&mut probe).await;
    assert_eq!(failure_kind(&report), FailureKind::Connect, "{report:?}");

    let _server = FakeSupabase::start_on(port, KEY).await;
    let report = poll(&mut probe).await;
    assert!(boolean(&report, &Key::new("supabase.auth_ok")));
    assert!(boolean(&report, &Key::new("supabase.rest_ok")));
}

/// A Supabase that answers `302` to another server: the probe does not follow, so that server never
/// sees the key in `apikey` or `Authorization` (reqwest would strip only the latter across hosts, and
/// neither from `https` to `http`); the endpoint reads as failing, with the redirect's status and a
/// note naming where it pointed and saying it was not followed.
#[tokio::test]
async fn supabase_key_never_follows_a_redirect() {
    let server = FakeSupabase::start(KEY).await;
    // The other server: a second fake that records every request's headers, whatever its key.
    let elsewhere = FakeSupabase::start("elsewhere-key").await;
    server.set_auth(Health::Redirect(elsewhere.addr()));
    server.set_rest(Health::Redirect(elsewhere.addr()));

    let mut probe = supabase(server.url(), KEY);
    let report = poll(&mut probe).await;
    let origin = format!("http://{}", elsewhere.addr());
    for endpoint in ["auth", "rest"] {
        let k = |s: &str| Key::new(catalogue_name(format!("supabase.{endpoint}_{s}")));
        assert!(!boolean(&report, &k("ok")), "{endpoint}: {report:?}");
        assert_eq!(number(&report, &k("status")), 302.0, "{endpoint}");
        let observations = report.result.as_ref().expect("the source answered");
        let note = observations
            .iter()
            .find(|o| o.key == k("ok"))
            .and_then(|o| o.note.as_ref().map(ToString::to_string))
            .unwrap_or_default();
        assert_eq!(
            note,
            format!("HTTP 302: redirected to «{origin}» — not followed, the key stays here"),
            "{endpoint}"
        );
        assert!(!note.contains(KEY));
    }
    assert_eq!(server.requests().len(), 2, "both endpoints were asked");
    assert_eq!(
        elsewhere.requests(),
        vec![],
        "the redirect target never received a request, so never the key"
    );

    // The control: a client that follows redirects would have taken the key there.
    let follows = reqwest::Client::new();
    let answer = follows
        .get(format!("{}auth/v1/health", server.url()))
        .header("apikey", KEY)
        .send()
        .await
        .expect("a followed redirect");
    assert_eq!(
        answer.status(),
        401,
        "the other server refused its wrong key"
    );
    assert_eq!(
        elsewhere.requests()[0].apikey.as_deref(),
        Some(KEY),
        "without the probe's policy the key would have followed the redirect"
    );
}

/// The key must not reach an observation, a failure, `diagnose` (text and JSON), the probe metrics,
/// the probe's `Debug`, or any log line (everything at TRACE, on this thread, is captured), whether
/// Supabase answers, fails, hangs, refuses the key or cannot be reached.
#[tokio::test]
async fn supabase_key_leaks_nowhere() {
    const CANARY: &str = "sbp_CANARY_5e1f0c7d9a2b4e6f8a0c";
    let (logs, _guard) = Captured::start();

    let server = FakeSupabase::start(CANARY).await;
    let mut probe = supabase(server.url(), CANARY);
    let mut reports = Vec::new();
    reports.push(poll(&mut probe).await);
    server.set_auth(Health::Status(503));
    server.set_rest(Health::Status(500));
    reports.push(poll(&mut probe).await);
    server.set_rest(Health::Hang);
    reports.push(poll(&mut probe).await);
    server.set_auth(Health::Ok);
    server.set_rest(Health::Ok);
    let mut wrong_key = supabase(server.url(), &format!("{CANARY}-wrong"));
    reports.push(poll(&mut wrong_key).await);

    // Unreachable, through the daemon's own loop (which logs the failure detail).
    let dead: url::Url = format!("http://127.0.0.1:{}", free_port()).parse().unwrap();
    let unreachable = supabase(dead, CANARY);
    let probe_debug = format!("{unreachable:?} {probe:?}");
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = ProbeMetrics::register(&mut registry);
    let failed = support::first_report_of_run(unreachable, &metrics).await;
    assert_eq!(failure_kind(&failed), FailureKind::Connect);
    reports.push(failed);
    for r in &reports {
        metrics.record(r);
    }

    // Every case actually happened.
    assert!(reports[0].result.is_ok());
    assert_eq!(
        number(&reports[1], &Key::new("supabase.auth_status")),
        503.0
    );
    assert_eq!(number(&reports[2], &Key::new("supabase.rest_status")), 0.0);
    assert_eq!(
        number(&reports[3], &Key::new("supabase.rest_status")),
        401.0
    );
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.apikey.as_deref() == Some(CANARY)),
        "the key was sent, so there was something to leak"
    );

    let mut haystacks = vec![("probe Debug", probe_debug)];
    haystacks.extend(support::report_surfaces(reports, &registry));
    let (_, exposition) = haystacks.last().expect("the metrics");
    assert!(exposition.contains("probe=\"supabase\""), "{exposition}");
    let log_text = logs.text();
    assert!(
        log_text.contains("source unreachable"),
        "the run loop logged the failure: {log_text}"
    );
    haystacks.push(("logs", log_text));

    for (what, text) in &haystacks {
        assert!(
            !text.contains(CANARY),
            "the key leaked into the {what}: {text}"
        );
        // Not even its distinctive middle part (a truncated or re-encoded copy).
        assert!(
            !text.contains("CANARY_5e1f"),
            "part of the key leaked into the {what}: {text}"
        );
    }
}
