//! The Coolify probe against a local server speaking Coolify's API v4 formats (`support::coolify`):
//! the deployments (current, previous, in progress, the deploy's age) and the env names; every way
//! the source fails (down, hang, garbage, 401, 404, oversize); that neither the token nor any env
//! value leaks; and `diagnose` naming `errors.bad_deploy` (with §6's Coolify rollback step filled in)
//! and `auth.jwt_secret` as top causes from Coolify alone.

use std::time::Duration;

use harven_watchdog::clock::Clock;
use harven_watchdog::config::CoolifyConfig;
use harven_watchdog::observe::{FailureKind, Key, Outcome, ProbeReport, Value};
use harven_watchdog::probe::coolify::CoolifyProbe;
use harven_watchdog::probe::{ProbeMetrics, poll_once};
use harven_watchdog::secret::Secret;

use crate::support::backend::Scenario;
use crate::support::coolify::{Answer, Dep, FakeCoolify};
use crate::support::{
    self, BackendSymptom, Captured, assert_top_holding, diagnose_json, diagnosis_causes as causes,
    free_port, observed, outcome,
};

/// The token the fake accepts: distinctive, so a leak is found by search.
const TOKEN: &str = "7|CANARYcoolifyTk9Qw2Er5Ty8Ui";

/// An env value that must never leave the parse: in the envs' `value` and `real_value`, and printed
/// by every deployment's build logs.
const VALUE: &str = "CANARYvalue-jwt-6Hn3Jm8Kp1";

/// The application's UUID (a cuid2, as Coolify makes them).
const APP: &str = "k8cw4s0kgsw4gcw8o0ckc4os";

/// Request timeout of the probe under test: short, so hangs are cut off quickly.
const TIMEOUT: Duration = Duration::from_secs(1);

/// How long a poll may take at most before the test calls it a hang.
const HANG_BOUND: Duration = Duration::from_secs(30);

fn probe(url: url::Url, token: &str, application: &str) -> CoolifyProbe {
    support::init();
    CoolifyProbe::new(&CoolifyConfig {
        url,
        token: Secret::new(token),
        application: application.to_owned(),
        env_names: vec!["JWT_SECRET".into(), "SUPABASE_KEY".into()],
        interval: Duration::from_secs(60),
        timeout: TIMEOUT,
    })
    .expect("the Coolify probe")
}

async fn poll(probe: &mut CoolifyProbe) -> ProbeReport {
    tokio::time::timeout(HANG_BOUND, poll_once(probe, &Clock::system()))
        .await
        .expect("a poll was not cut off")
}

fn value(report: &ProbeReport, name: &'static str) -> Value {
    match outcome(report, &Key::new(name)) {
        Outcome::Value(v) => v.clone(),
        other => panic!("{name}: expected a value, got {other:?}"),
    }
}

fn env_set(report: &ProbeReport, var: &str) -> Value {
    match outcome(report, &Key::new("coolify.env_set").with("var", var)) {
        Outcome::Value(v) => v.clone(),
        other => panic!("env_set{{var={var}}}: expected a value, got {other:?}"),
    }
}

fn failure(report: &ProbeReport) -> (FailureKind, String) {
    match &report.result {
        Err(f) => (f.kind, f.detail.clone()),
        Ok(o) => panic!("{} should have failed, got {o:?}", report.source),
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

/// A redeploy in progress over a deploy finished 10 min ago, a preview between them, and the
/// deploy before it (the rollback target).
fn history() -> Vec<Dep> {
    vec![
        Dep {
            uuid: "q0wc8k4ss8g0",
            commit: "a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2",
            status: "in_progress",
            age_seconds: 5,
            pull_request_id: 0,
        },
        Dep {
            uuid: "pr12dep0000x",
            commit: "ffffffffffffffffffffffffffffffffffffffff",
            status: "finished",
            age_seconds: 300,
            pull_request_id: 12,
        },
        Dep {
            uuid: "m2kq9xw8c0s4",
            commit: "9f8e7d6c5b4a39281706f5e4d3c2b1a098f7e6d5",
            status: "finished",
            age_seconds: 600,
            pull_request_id: 0,
        },
        Dep {
            uuid: "x9failed0000",
            commit: "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
            status: "failed",
            age_seconds: 3000,
            pull_request_id: 0,
        },
        Dep {
            uuid: "h7pz3a0gk8ow",
            commit: "1234abcd5678ef901234abcd5678ef901234abcd",
            status: "finished",
            age_seconds: 86_400,
            pull_request_id: 0,
        },
    ]
}

/// Current and previous deployments (skipping the preview and the failed one), the deploy in
/// progress, the current one's age, and which configured names the app's configuration sets.
#[tokio::test]
async fn reads_the_deployments_and_the_env_names_of_the_application() {
    let server = FakeCoolify::start(TOKEN, APP).await;
    server.set_deployments(history());
    server.set_envs(&[("JWT_SECRET", VALUE), ("OTHER", "x"), ("SUPABASE_KEY", "")]);
    let mut p = probe(server.url(), TOKEN, APP);
    let report = poll(&mut p).await;

    assert_eq!(value(&report, "coolify.deploying"), Value::Bool(true));
    assert_eq!(value(&report, "coolify.application"), text(APP));
    assert_eq!(value(&report, "coolify.last_status"), text("in_progress"));
    assert_eq!(
        value(&report, "coolify.current_deployment"),
        text("m2kq9xw8c0s4")
    );
    assert_eq!(
        value(&report, "coolify.current_commit"),
        text("9f8e7d6c5b4a39281706f5e4d3c2b1a098f7e6d5")
    );
    assert_eq!(
        value(&report, "coolify.previous_deployment"),
        text("h7pz3a0gk8ow")
    );
    assert_eq!(
        value(&report, "coolify.previous_commit"),
        text("1234abcd5678ef901234abcd5678ef901234abcd")
    );
    let Value::Number(age) = value(&report, "coolify.deploy_age_seconds") else {
        panic!("the age is a number");
    };
    assert!((595.0..=620.0).contains(&age), "{age}");
    assert_eq!(env_set(&report, "JWT_SECRET"), Value::Bool(true));
    // Set to the empty string: not set.
    assert_eq!(env_set(&report, "SUPABASE_KEY"), Value::Bool(false));

    // The documented requests, with the token.
    let seen = server.requests();
    assert!(
        seen.iter()
            .any(|(p, _)| p == &format!("/api/v1/deployments/applications/{APP}?skip=0&take=10")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(p, _)| p == &format!("/api/v1/applications/{APP}/envs")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .all(|(_, a)| a.as_deref() == Some(&*format!("Bearer {TOKEN}")))
    );

    // JWT_SECRET removed from the configuration; no deployment at all.
    server.set_envs(&[("OTHER", "x")]);
    server.set_deployments(Vec::new());
    let report = poll(&mut p).await;
    assert_eq!(env_set(&report, "JWT_SECRET"), Value::Bool(false));
    assert_eq!(value(&report, "coolify.deploying"), Value::Bool(false));
    assert!(matches!(
        outcome(&report, &Key::new("coolify.deploy_age_seconds")),
        Outcome::NoData(_)
    ));
}

/// Down, hang, garbage, 401, 404, 5xx and oversize each fail the source, with the fix where there
/// is one, and the source answers again once Coolify does.
#[tokio::test]
async fn down_hang_garbage_401_404_5xx_and_oversize_fail_the_source() {
    // Down: nothing listens, then Coolify comes up on that port.
    let port = free_port();
    let mut p = probe(
        format!("http://127.0.0.1:{port}").parse().unwrap(),
        TOKEN,
        APP,
    );
    let (kind, detail) = failure(&poll(&mut p).await);
    assert_eq!(kind, FailureKind::Connect, "{detail}");
    assert!(detail.contains("Coolify cannot be reached"), "{detail}");
    let server = FakeCoolify::start_on(port, TOKEN, APP).await;
    server.set_deployments(history());
    assert!(poll(&mut p).await.result.is_ok());

    for (set, answer, want, says) in [
        ("deployments", Answer::Hang, FailureKind::Timeout, ""),
        ("envs", Answer::Hang, FailureKind::Timeout, ""),
        (
            "deployments",
            Answer::Garbage,
            FailureKind::Malformed,
            "HTML",
        ),
        ("envs", Answer::Garbage, FailureKind::Malformed, "HTML"),
        ("deployments", Answer::Huge, FailureKind::TooLarge, ""),
        ("envs", Answer::Huge, FailureKind::TooLarge, ""),
        (
            "deployments",
            Answer::Status(500),
            FailureKind::Status,
            "500",
        ),
        ("envs", Answer::Status(503), FailureKind::Status, "503"),
    ] {
        let set_answer = |a: Answer| match set {
            "deployments" => server.set_deployments_answer(a),
            _ => server.set_envs_answer(a),
        };
        set_answer(answer.clone());
        let (kind, detail) = failure(&poll(&mut p).await);
        assert_eq!(kind, want, "{set} {answer:?}: {detail}");
        assert!(detail.contains(says), "{set} {answer:?}: {detail}");
        set_answer(Answer::Ok);
        assert!(
            poll(&mut p).await.result.is_ok(),
            "{set}: answers again after {answer:?}"
        );
    }

    // A token Coolify refuses (its 401 here quotes it) and an application it does not know.
    let (kind, detail) = failure(&poll(&mut probe(server.url(), "7|revoked", APP)).await);
    assert_eq!(kind, FailureKind::Status);
    assert!(
        detail.contains("401") && detail.contains("token_file"),
        "{detail}"
    );
    assert!(!detail.contains("revoked"), "{detail}");
    let (kind, detail) = failure(&poll(&mut probe(server.url(), TOKEN, "otherapp123")).await);
    assert_eq!(kind, FailureKind::Status);
    assert!(
        detail.contains("404") && detail.contains("[coolify] application"),
        "{detail}"
    );
}

/// Neither the token nor any env value reaches an observation, a failure, `diagnose`, the probe
/// metrics, the probe's `Debug` or a log line, whether Coolify answers (its deployments' logs print
/// the values), refuses (its 401 here quotes the token), fails, hangs or cannot be reached.
#[tokio::test]
async fn neither_the_token_nor_an_env_value_leaks_anywhere() {
    let (logs, _guard) = Captured::start();
    let server = FakeCoolify::start(TOKEN, APP).await;
    server.set_deployments(history());
    server.set_envs(&[("JWT_SECRET", VALUE), ("SUPABASE_KEY", VALUE)]);
    let mut p = probe(server.url(), TOKEN, APP);
    let mut reports = vec![poll(&mut p).await];
    for answer in [Answer::Status(500), Answer::Garbage, Answer::Hang] {
        server.set_envs_answer(answer.clone());
        server.set_deployments_answer(answer);
        reports.push(poll(&mut p).await);
    }
    server.set_envs_answer(Answer::Ok);
    server.set_deployments_answer(Answer::Ok);
    reports.push(poll(&mut probe(server.url(), &format!("{TOKEN}x"), APP)).await);

    let dead: url::Url = format!("http://127.0.0.1:{}", free_port()).parse().unwrap();
    let debug = format!("{p:?}");
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = ProbeMetrics::register(&mut registry);
    reports.push(support::first_report_of_run(probe(dead, TOKEN, APP), &metrics).await);
    for r in &reports {
        metrics.record(r);
    }

    // Every case happened: the token was sent and the values served.
    assert!(reports[0].result.is_ok());
    assert_eq!(env_set(&reports[0], "JWT_SECRET"), Value::Bool(true));
    assert!(
        server
            .requests()
            .iter()
            .any(|(_, a)| a.as_deref() == Some(&*format!("Bearer {TOKEN}")))
    );
    assert_eq!(failure(&reports[4]).0, FailureKind::Status);

    let mut haystacks = vec![("probe Debug", debug)];
    haystacks.extend(support::report_surfaces(reports, &registry));
    let (_, exposition) = haystacks.last().expect("the metrics");
    assert!(exposition.contains("probe=\"coolify\""), "{exposition}");
    let log_text = logs.text();
    assert!(log_text.contains("source unreachable"), "{log_text}");
    haystacks.push(("logs", log_text));
    for (what, text) in &haystacks {
        for needle in [TOKEN, VALUE, "CANARY"] {
            assert!(
                !text.contains(needle),
                "{needle} leaked into the {what}: {text}"
            );
        }
    }
}

/// `harven-watchdog diagnose --json` with Coolify at `server`, the backend's `scenario` read by a
/// real Prometheus scraping the simulated backend (once `query` is over `over`), two green status
/// pages, and no Docker or Redis to see the deploy or the container's environment.
async fn diagnose(
    server: &FakeCoolify,
    scenario: Scenario,
    query: &str,
    over: f64,
) -> serde_json::Value {
    let symptom = BackendSymptom::start(scenario, query, over).await;
    let data = tempfile::tempdir().expect("tempdir");
    let mut env = vec![
        ("COOLIFY__URL", server.url().to_string()),
        ("COOLIFY__TOKEN", TOKEN.to_owned()),
        ("COOLIFY__APPLICATION", APP.to_owned()),
        ("COOLIFY__TIMEOUT", "5s".to_owned()),
    ];
    env.extend(symptom.env());
    let report = diagnose_json(&env, data.path());
    let text = report.to_string();
    assert!(!text.contains(VALUE) && !text.contains(TOKEN), "{text}");
    report
}

/// The backend fails 30% of requests and Coolify finished a deploy 10 min ago: `errors.bad_deploy`
/// is the top cause with no Docker to see the deploy; an action names the previous deployment and
/// commit for §6's Coolify rollback, and a command the Coolify CLI's; `diagnose` shows the Coolify
/// observations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_names_bad_deploy_from_coolify_with_the_rollback_target() {
    let server = FakeCoolify::start(TOKEN, APP).await;
    server.set_deployments(history()[2..].to_vec());
    server.set_envs(&[("JWT_SECRET", VALUE)]);
    let ratio = r#"sum(rate(http_requests_total{status=~"5.."}[30s])) / sum(rate(http_requests_total[30s]))"#;
    let report = diagnose(&server, Scenario::Errors, ratio, 0.05).await;
    let errors = causes(&report, "errors");
    assert_top_holding(errors, "errors.bad_deploy", "coolify.deploy_age_seconds");
    let commands: Vec<&str> = errors[0]["commands"]
        .as_array()
        .expect("commands")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    // The exact deployment to go back to is an action in the report's language.
    let actions: Vec<&str> = errors[0]["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    assert!(
        actions
            .iter()
            .any(|a| a.contains("the previous deployment is h7pz3a0gk8ow")
                && a.contains("1234abcd5678ef901234abcd5678ef901234abcd")),
        "{actions:#?}"
    );
    assert!(
        commands.iter().any(|c| c
            == &format!(
                "coolify app rollback run {APP} --commit 1234abcd5678ef901234abcd5678ef901234abcd"
            )),
        "{commands:#?}"
    );
    assert!(
        commands.iter().any(|c| c.contains("git checkout HEAD~1")),
        "§6's own steps stay: {commands:#?}"
    );
    for name in [
        "coolify.deploy_age_seconds",
        "coolify.previous_commit",
        "coolify.deploying",
    ] {
        assert!(observed(&report, name), "diagnose shows {name}: {report:#}");
    }
}

/// The backend answers 401/403 to most requests and JWT_SECRET is empty in the application's
/// configuration in Coolify: `auth.jwt_secret` is the top cause with no Docker to read the
/// container's environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_names_jwt_secret_when_coolify_does_not_set_it() {
    let server = FakeCoolify::start(TOKEN, APP).await;
    server.set_deployments(history()[4..].to_vec());
    server.set_envs(&[("SUPABASE_KEY", VALUE), ("JWT_SECRET", "")]);
    let ratio = r#"sum(rate(http_requests_total{status=~"401|403"}[30s])) / sum(rate(http_requests_total[30s]))"#;
    let report = diagnose(&server, Scenario::AuthFailures, ratio, 0.2).await;
    assert_top_holding(
        causes(&report, "auth"),
        "auth.jwt_secret",
        "coolify.env_set",
    );
}

/// Coolify configured but refusing the token: `diagnose` lists the source as failing and the rule
/// that reads it (`errors.coolify_deploy_failed`) as a blind spot whose detail names the fix, as for any
/// failing source. (With `[coolify]` off no rule over it is blind: `doctor`'s unit tests.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_reports_a_failing_coolify_as_a_blind_spot_of_the_failed_deploy_rule() {
    let server = FakeCoolify::start(TOKEN, APP).await;
    let data = tempfile::tempdir().expect("tempdir");
    let env = vec![
        ("COOLIFY__URL", server.url().to_string()),
        ("COOLIFY__TOKEN", "wrong-token-CANARY".to_owned()),
        ("COOLIFY__APPLICATION", APP.to_owned()),
        ("COOLIFY__TIMEOUT", "5s".to_owned()),
        (
            "PROMETHEUS__URL",
            format!("http://127.0.0.1:{}", support::free_port()),
        ),
    ];
    let report = diagnose_json(&env, data.path());
    let coolify = support::diagnosis_item(&report, "sources", "source", "coolify");
    assert_eq!(coolify["state"], "failing", "{coolify}");
    let spot = support::diagnosis_item(
        &report,
        "blind_spots",
        "rule",
        "errors.coolify_deploy_failed",
    );
    assert_eq!(spot["reason"], "source_failing", "{spot}");
    assert!(!report.to_string().contains("CANARY"), "{report:#}");
}
