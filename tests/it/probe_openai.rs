//! The OpenAI probes against a local server speaking OpenAI's formats (`support::openai`): the API
//! probe's readings and error classes, the usage probe's spend, burn rate and forecast over paged
//! costs, every way either source fails, that neither key leaks, and `diagnose` naming each cause
//! they feed as the top cause (with a real Prometheus scraping the simulated backend where the
//! symptom is the backend's).

use std::time::Duration;

use harven_watchdog::clock::Clock;
use harven_watchdog::config::{OpenaiConfig, OpenaiUsageConfig};
use harven_watchdog::observe::{FailureKind, Key, Outcome, ProbeReport, Value};
use harven_watchdog::probe::openai::{ApiProbe, UsageProbe};
use harven_watchdog::probe::{Probe, ProbeMetrics, poll_once};
use harven_watchdog::secret::Secret;

use crate::support::backend::Scenario;
use crate::support::openai::{Answer, FakeOpenai, Spend};
use crate::support::saas::{FakeStatusPage, PageScenario};
use crate::support::{
    self, BackendSymptom, Captured, assert_top_holding, diagnose_json as diagnose,
    diagnosis_causes as causes, diagnosis_item, free_port, observed,
};

/// The keys the fake accepts: distinctive, so a leak is found by search.
const API_KEY: &str = "sk-proj-CANARYapi7Qm2Zx9Lw4Rt";
const ADMIN_KEY: &str = "sk-admin-CANARYadm3Vb8Nc1Kp6Hy";

/// Request timeout of the probes under test: short, so hangs are cut off quickly.
const TIMEOUT: Duration = Duration::from_secs(1);

/// How long a poll may take at most before the test calls it a hang.
const HANG_BOUND: Duration = Duration::from_secs(30);

fn config(url: url::Url, api_key: &str, admin_key: &str, timeout: Duration) -> OpenaiConfig {
    OpenaiConfig {
        url,
        api_key: Some(Secret::new(api_key)),
        usage: Some(OpenaiUsageConfig {
            admin_key: Secret::new(admin_key),
            monthly_budget: 100.0,
            interval: Duration::from_secs(600),
        }),
        organization: Some("org-harven123".into()),
        project: Some("proj_watchdog".into()),
        interval: Duration::from_secs(60),
        timeout,
    }
}

fn api(url: url::Url, key: &str) -> ApiProbe {
    support::init();
    ApiProbe::new(&config(url, key, ADMIN_KEY, TIMEOUT)).expect("the API probe")
}

fn usage(url: url::Url, key: &str, budget: f64) -> UsageProbe {
    support::init();
    let mut c = config(url, API_KEY, key, TIMEOUT);
    if let Some(u) = c.usage.as_mut() {
        u.monthly_budget = budget;
    }
    UsageProbe::new(&c).expect("the usage probe")
}

async fn poll<P: Probe>(probe: &mut P) -> ProbeReport {
    tokio::time::timeout(HANG_BOUND, poll_once(probe, &Clock::system()))
        .await
        .unwrap_or_else(|_| panic!("a poll of {} was not cut off", probe.source()))
}

fn outcome<'a>(report: &'a ProbeReport, name: &'static str) -> &'a Outcome {
    support::outcome(report, &Key::new(name))
}

fn number(report: &ProbeReport, name: &'static str) -> f64 {
    match outcome(report, name) {
        Outcome::Value(Value::Number(n)) => *n,
        other => panic!("{name}: expected a number, got {other:?}"),
    }
}

fn text(report: &ProbeReport, name: &'static str) -> String {
    match outcome(report, name) {
        Outcome::Value(v) => v.to_string(),
        other => panic!("{name}: expected a value, got {other:?}"),
    }
}

/// The failure of a report that should have failed: kind and detail.
fn failure(report: &ProbeReport) -> (FailureKind, String) {
    match &report.result {
        Err(f) => (f.kind, f.detail.clone()),
        Ok(o) => panic!("{} should have failed, got {o:?}", report.source),
    }
}

/// The models list is `ok` with its latency and the headers OpenAI reads; a 429 is a rate limit or
/// the quota by OpenAI's error body; a 5xx is a server error; a slow answer is its latency.
#[tokio::test]
async fn api_probe_reads_the_models_list_and_tells_the_429s_apart() {
    let server = FakeOpenai::start(API_KEY, ADMIN_KEY).await;
    let mut probe = api(server.url(), API_KEY);

    let ok = poll(&mut probe).await;
    assert_eq!(ok.source, "openai.api");
    assert_eq!(text(&ok, "openai.api.ok"), "true");
    assert_eq!(number(&ok, "openai.api.status"), 200.0);
    assert_eq!(text(&ok, "openai.api.error"), "none");
    let latency = number(&ok, "openai.api.latency_seconds");
    assert!(latency > 0.0 && latency < 1.0, "{latency}");
    let seen = server.requests();
    let first = &seen[0];
    assert_eq!(first.path, "/v1/models");
    assert_eq!(
        first.authorization.as_deref(),
        Some(&*format!("Bearer {API_KEY}"))
    );
    assert_eq!(first.organization.as_deref(), Some("org-harven123"));
    assert_eq!(first.project.as_deref(), Some("proj_watchdog"));

    for (answer, status, class) in [
        (Answer::RateLimit, 429.0, "rate_limit"),
        (Answer::InsufficientQuota, 429.0, "insufficient_quota"),
        (Answer::Status(503), 503.0, "server_error"),
        (Answer::Status(500), 500.0, "server_error"),
    ] {
        server.set_models(answer.clone());
        let r = poll(&mut probe).await;
        assert_eq!(text(&r, "openai.api.ok"), "false", "{answer:?}");
        assert_eq!(number(&r, "openai.api.status"), status, "{answer:?}");
        assert_eq!(text(&r, "openai.api.error"), class, "{answer:?}");
        assert!(number(&r, "openai.api.latency_seconds") < 1.0);
    }

    // Slow but answering: the latency is the reading (a longer timeout, so it is not cut off).
    let mut patient = ApiProbe::new(&config(
        server.url(),
        API_KEY,
        ADMIN_KEY,
        Duration::from_secs(5),
    ))
    .expect("the API probe");
    server.set_models(Answer::Slow(Duration::from_millis(1500)));
    let slow = poll(&mut patient).await;
    assert_eq!(text(&slow, "openai.api.error"), "none");
    assert!(number(&slow, "openai.api.latency_seconds") >= 1.5);

    // Back to normal.
    server.set_models(Answer::Ok);
    assert_eq!(text(&poll(&mut probe).await, "openai.api.ok"), "true");
}

/// Everything that fails the API source (connection refused, HTML, more than 1 MiB, a refused key, a
/// hang once connected), each followed by a recovery of the same probe.
#[tokio::test]
async fn api_probe_down_hang_garbage_401_and_oversize_fail_the_source() {
    // Down: nothing listens on the port yet.
    let port = free_port();
    let url: url::Url = format!("http://127.0.0.1:{port}").parse().unwrap();
    let mut probe = api(url.clone(), API_KEY);
    let (kind, detail) = failure(&poll(&mut probe).await);
    assert_eq!(kind, FailureKind::Connect, "{detail}");
    assert!(detail.contains("cannot be reached"), "{detail}");

    // It comes up on that port: the same probe reads it.
    let server = FakeOpenai::start_on(port, API_KEY, ADMIN_KEY).await;
    assert_eq!(text(&poll(&mut probe).await, "openai.api.ok"), "true");

    server.set_models(Answer::Garbage);
    let (kind, detail) = failure(&poll(&mut probe).await);
    assert_eq!(kind, FailureKind::Malformed, "{detail}");
    assert!(detail.contains("HTML"), "{detail}");

    server.set_models(Answer::Huge);
    assert_eq!(failure(&poll(&mut probe).await).0, FailureKind::TooLarge);

    // A key OpenAI refuses: blind, not OpenAI down; the fix names the key's file, not the key.
    server.set_models(Answer::Ok);
    let mut wrong = api(server.url(), "sk-proj-wrong-key");
    let (kind, detail) = failure(&poll(&mut wrong).await);
    assert_eq!(kind, FailureKind::Status, "{detail}");
    assert!(
        detail.contains("401")
            && detail.contains("invalid_api_key")
            && detail.contains("api_key_file"),
        "{detail}"
    );
    assert!(!detail.contains("wrong-key"), "{detail}");

    // A hang once connected fails the source as `timeout`, within the poll's bound, in our words
    // (the runbook's hang line reads that reason; a refused connection above was `connect`).
    server.set_models(Answer::Hang);
    let hung = poll(&mut probe).await;
    assert!(hung.took >= TIMEOUT, "{:?}", hung.took);
    assert!(hung.took < TIMEOUT * 3, "{:?}", hung.took);
    let (kind, detail) = failure(&hung);
    assert_eq!(kind, FailureKind::Timeout, "{detail}");
    assert!(detail.contains("once connected"), "{detail}");
    server.set_models(Answer::Ok);
    assert_eq!(text(&poll(&mut probe).await, "openai.api.ok"), "true");
}

/// The month's spend summed over every page of daily buckets, the burn rate from today's and
/// yesterday's, the forecast at 0 once spent and a year without spend.
#[tokio::test]
async fn usage_probe_reads_spend_burn_and_forecast_across_pages() {
    let server = FakeOpenai::start(API_KEY, ADMIN_KEY).await;
    // Two buckets a page: a month is several pages, followed by their `next_page` cursors.
    server.set_spend(Spend {
        per_day: 2.0,
        today: 1.0,
        page_size: 2,
    });
    let mut probe = usage(server.url(), ADMIN_KEY, 100.0);
    let r = poll(&mut probe).await;
    assert_eq!(r.source, "openai.usage");
    let costs: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|s| s.path == "/v1/organization/costs")
        .collect();
    let now = Clock::system().now().as_unix_millis() / 1000;
    let today = now - now.rem_euclid(86_400);
    let frame_days = |start: i64| (today - start) / 86_400 + 1;
    let start: i64 = costs[0]
        .query
        .split('&')
        .find_map(|p| p.strip_prefix("start_time="))
        .and_then(|v| v.parse().ok())
        .expect("start_time in the query");
    let pages = usize::try_from(frame_days(start)).unwrap().div_ceil(2);
    assert_eq!(costs.len(), pages, "every page was read: {costs:?}");
    assert!(costs[0].query.contains("bucket_width=1d"), "{costs:?}");
    assert!(
        costs[0].query.contains("project_ids%5B%5D=proj_watchdog"),
        "the project's costs only: {costs:?}"
    );
    assert!(costs[1].query.contains("page=page_2"), "{costs:?}");
    assert_eq!(
        costs[0].authorization.as_deref(),
        Some(&*format!("Bearer {ADMIN_KEY}"))
    );
    assert_eq!(
        costs[0].project, None,
        "the project is a filter, not a header"
    );

    // The month so far: 2 USD each day before today, 1 today (the day before the 1st is not this
    // month's, when the query reaches back to it).
    let month_days = (1..=31)
        .map(|d| today - (d - 1) * 86_400)
        .filter(|d| {
            let secs = u64::try_from(*d).unwrap();
            let t = std::time::UNIX_EPOCH + Duration::from_secs(secs);
            let now_t = std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(now).unwrap());
            humantime::format_rfc3339(t).to_string()[..7]
                == humantime::format_rfc3339(now_t).to_string()[..7]
        })
        .count();
    #[allow(clippy::cast_precision_loss)]
    let spend = 2.0 * (month_days - 1) as f64 + 1.0;
    assert!(
        (number(&r, "openai.usage.spend_usd") - spend).abs() < 1e-9,
        "{r:?}"
    );
    assert!((number(&r, "openai.usage.budget_share") - spend / 100.0).abs() < 1e-9);
    assert_eq!(number(&r, "openai.usage.budget_usd"), 100.0);
    let burn = number(&r, "openai.usage.burn_usd_per_hour");
    assert!(
        burn > 1.0 / 24.0 - 1e-9 && burn <= 3.0 / 24.0 + 1e-9,
        "{burn}"
    );
    let hours = number(&r, "openai.usage.hours_to_budget");
    assert!(hours > 0.0, "{hours}");

    // A burst today spends the budget: 0 h, share above 1.
    server.set_spend(Spend {
        per_day: 2.0,
        today: 150.0,
        page_size: 32,
    });
    let spent = poll(&mut probe).await;
    assert_eq!(number(&spent, "openai.usage.hours_to_budget"), 0.0);
    assert!(number(&spent, "openai.usage.budget_share") > 1.0);

    // Nothing spent: a year, so a rule on the horizon clears.
    server.set_spend(Spend {
        per_day: 0.0,
        today: 0.0,
        page_size: 32,
    });
    assert_eq!(
        number(&poll(&mut probe).await, "openai.usage.hours_to_budget"),
        8760.0
    );
}

/// Every failure of the costs fails the usage source, within its timeout, with its kind; a project
/// key on the costs is refused and the fix names the admin key's file.
#[tokio::test]
async fn usage_probe_down_hang_garbage_401_5xx_and_oversize_fail_the_source() {
    let port = free_port();
    let url: url::Url = format!("http://127.0.0.1:{port}").parse().unwrap();
    let mut probe = usage(url, ADMIN_KEY, 100.0);
    assert_eq!(failure(&poll(&mut probe).await).0, FailureKind::Connect);
    let server = FakeOpenai::start_on(port, API_KEY, ADMIN_KEY).await;
    assert!(poll(&mut probe).await.result.is_ok());

    for (answer, kind) in [
        (Answer::Hang, FailureKind::Timeout),
        (Answer::Garbage, FailureKind::Malformed),
        (Answer::Huge, FailureKind::TooLarge),
        (Answer::Status(503), FailureKind::Status),
        (Answer::RateLimit, FailureKind::Status),
    ] {
        server.set_costs(answer.clone());
        let report = poll(&mut probe).await;
        let (got, detail) = failure(&report);
        assert_eq!(got, kind, "{answer:?}: {detail}");
        assert!(
            report.took < TIMEOUT * 3,
            "{answer:?} within its timeout: {:?}",
            report.took
        );
    }
    server.set_costs(Answer::Ok);
    // The project key on the costs: refused, and the fix names the admin key's file.
    let mut project_key = usage(server.url(), API_KEY, 100.0);
    let (kind, detail) = failure(&poll(&mut project_key).await);
    assert_eq!(kind, FailureKind::Status);
    assert!(
        detail.contains("admin_key_file") && detail.contains("401"),
        "{detail}"
    );
    assert!(!detail.contains("CANARY"), "{detail}");
    assert!(poll(&mut probe).await.result.is_ok());
}

/// Neither key reaches an observation, a failure, `diagnose`, the probe metrics, the probes'
/// `Debug` or a log line, whether OpenAI answers, refuses (its 401 here quotes the key it got),
/// rate-limits, hangs or cannot be reached.
#[tokio::test]
async fn neither_openai_key_leaks_anywhere() {
    let (logs, _guard) = Captured::start();

    let server = FakeOpenai::start(API_KEY, ADMIN_KEY).await;
    let mut api_probe = api(server.url(), API_KEY);
    let mut usage_probe = usage(server.url(), ADMIN_KEY, 100.0);
    let mut reports = vec![poll(&mut api_probe).await, poll(&mut usage_probe).await];
    for answer in [Answer::InsufficientQuota, Answer::Status(502), Answer::Hang] {
        server.set_models(answer.clone());
        server.set_costs(answer);
        reports.push(poll(&mut api_probe).await);
        reports.push(poll(&mut usage_probe).await);
    }
    server.set_models(Answer::Ok);
    server.set_costs(Answer::Ok);
    // Each key sent where the other belongs: the fake's 401 quotes what it received.
    reports.push(poll(&mut api(server.url(), ADMIN_KEY)).await);
    reports.push(poll(&mut usage(server.url(), API_KEY, 100.0)).await);

    // Unreachable, through the daemon's own loop (which logs the failure detail).
    let dead: url::Url = format!("http://127.0.0.1:{}", free_port()).parse().unwrap();
    let debug = format!(
        "{api_probe:?} {usage_probe:?} {:?}",
        config(dead.clone(), API_KEY, ADMIN_KEY, TIMEOUT)
    );
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = ProbeMetrics::register(&mut registry);
    let failed = support::first_report_of_run(usage(dead, ADMIN_KEY, 100.0), &metrics).await;
    reports.push(failed);
    for r in &reports {
        metrics.record(r);
    }

    // Every case happened: both keys were sent, and refused where they do not belong.
    let seen = server.requests();
    for key in [API_KEY, ADMIN_KEY] {
        assert!(
            seen.iter()
                .any(|s| s.authorization.as_deref() == Some(&*format!("Bearer {key}"))),
            "the key was sent, so there was something to leak"
        );
    }
    assert_eq!(text(&reports[2], "openai.api.error"), "insufficient_quota");
    assert_eq!(failure(&reports[8]).0, FailureKind::Status);
    assert_eq!(failure(&reports[9]).0, FailureKind::Status);

    let mut haystacks = vec![("probe Debug", debug)];
    haystacks.extend(support::report_surfaces(reports, &registry));
    let (_, exposition) = haystacks.last().expect("the metrics");
    for probe in ["openai.api", "openai.usage"] {
        assert!(
            exposition.contains(&format!("probe=\"{probe}\"")),
            "{exposition}"
        );
    }
    let log_text = logs.text();
    assert!(log_text.contains("source unreachable"), "{log_text}");
    haystacks.push(("logs", log_text));
    for (what, text) in &haystacks {
        for needle in [API_KEY, ADMIN_KEY, "CANARY"] {
            assert!(
                !text.contains(needle),
                "{needle} leaked into the {what}: {text}"
            );
        }
    }
}

/// The OpenAI and status-page settings of a `diagnose` run against the fakes.
fn openai_env(
    server: &FakeOpenai,
    pages: [&FakeStatusPage; 2],
    admin_key: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("OPENAI__URL", server.url().to_string()),
        ("OPENAI__API_KEY", API_KEY.to_owned()),
        ("OPENAI__ADMIN_KEY", admin_key.to_owned()),
        ("OPENAI__MONTHLY_BUDGET", "100".to_owned()),
        ("OPENAI__TIMEOUT", "5s".to_owned()),
        ("STATUS__OPENAI__URL", pages[0].url().to_string()),
        ("STATUS__SUPABASE__URL", pages[1].url().to_string()),
    ]
}

/// The quota section opens on the usage probe alone (the budget is spent) with OpenAI refusing our
/// key for quota, before any 429 reaches the backend's logs: `quota_exceeded` is the top cause. With
/// a refused admin key the usage source fails, and the doctor names the rule it blinds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_names_quota_exceeded_from_the_openai_probes_before_any_429_in_the_logs() {
    let server = FakeOpenai::start(API_KEY, ADMIN_KEY).await;
    server.set_spend(Spend {
        per_day: 3.0,
        today: 120.0,
        page_size: 32,
    });
    server.set_models(Answer::InsufficientQuota);
    let openai_page = FakeStatusPage::start(PageScenario::indicator("none")).await;
    let supabase_page = FakeStatusPage::start(PageScenario::indicator("none")).await;
    let data = tempfile::tempdir().expect("tempdir");
    let mut env = openai_env(&server, [&openai_page, &supabase_page], ADMIN_KEY);
    env.push((
        "PROMETHEUS__URL",
        format!("http://127.0.0.1:{}", free_port()),
    ));

    let report = diagnose(&env, data.path());
    let quota = causes(&report, "openai_quota");
    assert_eq!(quota[0]["id"], "openai_quota.quota_exceeded", "{quota:#?}");
    assert_eq!(quota[0]["status"], "likely");
    let symptoms: Vec<_> = report["symptoms"]
        .as_array()
        .expect("symptoms")
        .iter()
        .filter(|s| s["state"] == "holds")
        .map(|s| s["rule"].as_str().unwrap_or_default().to_owned())
        .collect();
    for rule in ["openai_quota.budget_forecast", "openai_quota.api_quota"] {
        assert!(
            symptoms.iter().any(|s| s == rule),
            "{rule} holds: {symptoms:?}"
        );
    }
    for name in [
        "openai.api.error",
        "openai.usage.spend_usd",
        "openai.usage.hours_to_budget",
    ] {
        assert!(observed(&report, name), "diagnose shows {name}: {report:#}");
    }

    // The admin key refused: the usage source fails, and its rule is a blind spot with the fix.
    let mut env = openai_env(&server, [&openai_page, &supabase_page], "sk-admin-revoked");
    env.push((
        "PROMETHEUS__URL",
        format!("http://127.0.0.1:{}", free_port()),
    ));
    let report = diagnose(&env, data.path());
    let usage = diagnosis_item(&report, "sources", "source", "openai.usage");
    assert_eq!(usage["state"], "failing", "{usage}");
    let spot = diagnosis_item(
        &report,
        "blind_spots",
        "rule",
        "openai_quota.budget_forecast",
    );
    assert_eq!(spot["reason"], "source_failing");
    assert!(
        spot["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("admin_key_file"),
        "{spot}"
    );
}

/// The backend's own symptom, from a real Prometheus scraping the simulated backend, diagnosed
/// while status.openai.com still says all is well: our own probe of OpenAI names the cause.
async fn diagnose_backend_symptom(
    scenario: Scenario,
    query: &str,
    over: f64,
    models: Answer,
) -> serde_json::Value {
    let symptom = BackendSymptom::start(scenario, query, over).await;
    let server = FakeOpenai::start(API_KEY, ADMIN_KEY).await;
    server.set_models(models);
    let data = tempfile::tempdir().expect("tempdir");
    let [openai_page, supabase_page] = &symptom.pages;
    let mut env = openai_env(&server, [openai_page, supabase_page], ADMIN_KEY);
    env.extend(symptom.env());
    diagnose(&env, data.path())
}

/// The backend is slow and OpenAI answers our probe in 2.5 s: `latency.openai_slow` is top on that
/// line alone (the status page says all is well, the backend's logs are not read here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_names_openai_slow_from_our_own_probe_while_the_status_page_is_green() {
    let p95 = "histogram_quantile(0.95, sum(rate(http_request_duration_seconds_bucket[30s])) by (le, handler))";
    let report = diagnose_backend_symptom(
        Scenario::Slow,
        p95,
        3.0,
        Answer::Slow(Duration::from_millis(2500)),
    )
    .await;
    assert_top_holding(
        causes(&report, "latency"),
        "latency.openai_slow",
        "openai.api.latency_seconds",
    );
}

/// The backend fails 30% of requests and OpenAI answers our probe 429 `rate_limit_exceeded`:
/// `errors.openai_rate_limit` is top.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_names_openai_rate_limit_from_our_own_probe_while_the_status_page_is_green() {
    let ratio = r#"sum(rate(http_requests_total{status=~"5.."}[30s])) / sum(rate(http_requests_total[30s]))"#;
    let report = diagnose_backend_symptom(Scenario::Errors, ratio, 0.05, Answer::RateLimit).await;
    let errors = causes(&report, "errors");
    assert_eq!(errors[0]["id"], "errors.openai_rate_limit", "{errors:#?}");
    assert_eq!(errors[0]["status"], "likely");
}

/// The backend is slow and OpenAI accepts our probe's connection and never answers: the source is
/// failing (listed so, and the rule over its readings a blind spot, as for any failing source), and
/// `latency.openai_slow` is still top, on the runbook's hang line (`reason = "timeout"`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_names_openai_slow_when_the_api_hangs_and_reports_the_source_failing() {
    let p95 = "histogram_quantile(0.95, sum(rate(http_request_duration_seconds_bucket[30s])) by (le, handler))";
    let report = diagnose_backend_symptom(Scenario::Slow, p95, 3.0, Answer::Hang).await;
    assert_top_holding(
        causes(&report, "latency"),
        "latency.openai_slow",
        "source_failing = \"openai.api\", reason = \"timeout\"",
    );
    let api = diagnosis_item(&report, "sources", "source", "openai.api");
    assert_eq!(api["state"], "failing", "{api}");
    let spot = diagnosis_item(&report, "blind_spots", "rule", "openai_quota.api_quota");
    assert_eq!(spot["reason"], "source_failing", "{spot}");
}
