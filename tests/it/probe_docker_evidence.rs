//! Evidence over windows on the real Docker Engine (issue 12): what the probe reports is fed to the
//! shipped runbook, as the daemon does, and the diagnosis must not depend on how often it polls.
//!
//! - An OOM-kill loop on an unchanged image (the same container, restarted by its policy) is a
//!   memory leak, not a deploy: the kill and the restarts hold between two kills.
//! - A redeploy from a new image (the container recreated under its name) is a bad deploy.
//! - One 429 line a second reads about 60 a minute whether the probe polls every 1 s or every
//!   5 s, and holds the `openai_quota` rule's condition at both (the offline scenario
//!   `openai_quota.http_429_at_30s_poll.toml` runs the 30 s case through the rule's `for`).
//!
//! The containers' roles are set by name (no Compose service), so other tests' replicas are never
//! taken in. Every wait is a poll with a deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::models::RestartPolicyNameEnum;
use harven_watchdog::clock::Clock;
use harven_watchdog::config::{Config, Locale};
use harven_watchdog::engine::{Engine, Evaluation, SymptomState};
use harven_watchdog::observe::{Evidence, Observation, Outcome, ProbeReport, Value};
use harven_watchdog::probe::docker::DockerProbe;
use harven_watchdog::probe::{self};
use harven_watchdog::runbook::Runbook;

use crate::support::docker::{ContainerOptions, TestContainer, TestImage};

/// Deadline for anything the Engine does to show in a poll; generous for a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(60);

/// A probe as the daemon builds it (shipped defaults, the embedded runbook's reads), with the
/// backend role mapped to `backend` by name and `[docker]` overrides.
fn probe_for(backend: &str, overrides: &[(&str, &str)]) -> DockerProbe {
    let mut env = vec![
        ("ROLES__BACKEND__NAMES", backend),
        ("ROLES__BACKEND__COMPOSE_SERVICE", ""),
        ("ROLES__REDIS__COMPOSE_SERVICE", ""),
    ];
    env.extend_from_slice(overrides);
    let env = env
        .into_iter()
        .map(|(k, v)| (format!("HARVEN_WATCHDOG__DOCKER__{k}"), v.to_owned()));
    let config = Config::load_with_env(&[], env).expect("test configuration");
    DockerProbe::with_wanted(config.docker, Runbook::embedded().wanted())
}

/// Overrides under which containers created seconds ago soon stop being a recent deploy: a 6 s
/// deploy window (so a 6 s interval, which no window may be shorter than; the tests poll by hand).
const SHORT_DEPLOY_WINDOW: [(&str, &str); 2] = [("INTERVAL", "6s"), ("DEPLOY_WINDOW", "6s")];

/// One poll; `None` when the Engine did not answer in time (a loaded machine), as the daemon
/// would skip it.
async fn try_poll(probe: &mut DockerProbe) -> Option<ProbeReport> {
    let report = probe::poll_once(probe, &Clock::system()).await;
    report.result.is_ok().then_some(report)
}

/// Polls every `every` until `done` holds for a report, and returns it.
async fn poll_until(
    probe: &mut DockerProbe,
    what: &str,
    every: Duration,
    done: impl Fn(&[Observation]) -> bool,
) -> ProbeReport {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        if let Some(report) = try_poll(probe).await {
            let out = report.result.as_deref().unwrap_or_default();
            if done(out) {
                return report;
            }
            last = out
                .iter()
                .filter(|o| o.key.labels.contains_key("role"))
                .map(|o| format!("  {} = {:?} ({:?})\n", o.key, o.outcome, o.note))
                .collect();
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: not seen within {DEADLINE:?}; last poll:\n{last}"
        );
        tokio::time::sleep(every).await;
    }
}

/// `name{role="backend", extra…}`.
fn backend<'a>(out: &'a [Observation], name: &str, extra: &[(&str, &str)]) -> &'a Observation {
    out.iter()
        .find(|o| {
            o.key.name == name
                && o.key.labels.get("role").map(String::as_str) == Some("backend")
                && extra
                    .iter()
                    .all(|(k, v)| o.key.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .unwrap_or_else(|| panic!("{name}{{role=backend}} not observed"))
}

fn is(out: &[Observation], name: &str, want: Value) -> bool {
    backend(out, name, &[]).outcome == Outcome::Value(want)
}

fn number(out: &[Observation], name: &str, extra: &[(&str, &str)]) -> f64 {
    match &backend(out, name, extra).outcome {
        Outcome::Value(Value::Number(n)) => *n,
        other => panic!("{name}: {other:?}"),
    }
}

/// One evaluation of the shipped runbook over `report`.
fn evaluate(report: &ProbeReport) -> Evaluation {
    let mut evidence = Evidence::new();
    evidence.apply(report.clone());
    Engine::new(Arc::new(Runbook::embedded()), Locale::En).evaluate(&evidence, report.at)
}

/// The top likely cause of `section`, and every cause's status, for messages.
fn top(eval: &Evaluation, section: &str) -> (Option<String>, String) {
    let s = eval
        .sections
        .iter()
        .find(|s| s.section == section)
        .unwrap_or_else(|| panic!("no section {section}"));
    let all = format!("{:#?}", s.diagnosis.causes);
    (s.diagnosis.top().map(|c| c.id.clone()), all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_kill_loop_on_the_same_image_is_a_memory_leak_not_a_deploy() {
    // Idles until told to go, then reads /dev/zero into memory until the 16 MiB limit kills it;
    // the restart policy starts the same container again, the marker is still there: a loop.
    let c = TestContainer::start(
        ContainerOptions::new()
            .name_hint("oomloop")
            .cmd(&[
                "/bin/sh",
                "-c",
                "while [ ! -f /tmp/go ]; do sleep 0.2; done; exec tail /dev/zero",
            ])
            .memory(16 << 20)
            .restart_policy(RestartPolicyNameEnum::ON_FAILURE, 4),
    )
    .await;
    let mut probe = probe_for(c.name(), &SHORT_DEPLOY_WINDOW);
    let before = poll_until(
        &mut probe,
        "no recent deploy",
        Duration::from_millis(500),
        |o| is(o, "docker.recent_deploy", Value::Bool(false)),
    )
    .await;
    let image = backend(
        before.result.as_deref().unwrap_or_default(),
        "docker.image",
        &[],
    )
    .outcome
    .clone();

    let go = c.exec(&["touch", "/tmp/go"]).await;
    assert_eq!(go.exit_code, Some(0), "{}", go.output);
    let looping = poll_until(
        &mut probe,
        "two OOM kills and restarts",
        Duration::from_millis(250),
        |o| {
            number(o, "docker.restarts", &[]) >= 2.0
                && is(o, "docker.oom_killed", Value::Bool(true))
        },
    )
    .await;
    let out = looping.result.as_deref().unwrap_or_default();
    assert!(
        is(out, "docker.recent_deploy", Value::Bool(false)),
        "a restart is no deploy"
    );
    assert_eq!(
        backend(out, "docker.image", &[]).outcome,
        image,
        "the same image"
    );
    let note = backend(out, "docker.restarts", &[])
        .note
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        note.starts_with("restarts within the last 10 min"),
        "{note}"
    );
    let (top_cause, all) = top(&evaluate(&looping), "errors");
    assert_eq!(top_cause.as_deref(), Some("errors.memory_leak"), "{all}");

    // Later polls (running again between two kills, or given up) still hold the kill and the
    // restarts: they do not fade after the poll that saw them.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let Some(report) = try_poll(&mut probe).await else {
            continue;
        };
        let out = report.result.as_deref().unwrap_or_default();
        assert!(is(out, "docker.oom_killed", Value::Bool(true)));
        assert!(number(out, "docker.restarts", &[]) >= 2.0);
        let (top_cause, all) = top(&evaluate(&report), "errors");
        assert_eq!(top_cause.as_deref(), Some("errors.memory_leak"), "{all}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redeploy_from_a_new_image_is_a_bad_deploy() {
    let name = format!("hwtest-{}-redeploy", std::process::id());
    let old = TestContainer::start(ContainerOptions::new().exact_name(&name)).await;
    let mut probe = probe_for(&name, &SHORT_DEPLOY_WINDOW);
    poll_until(
        &mut probe,
        "no recent deploy",
        Duration::from_millis(500),
        |o| is(o, "docker.recent_deploy", Value::Bool(false)),
    )
    .await;

    // A new release: another image ID, and `docker-compose up -d` recreating the container from
    // it under the same name; the new code logs tracebacks.
    let release = TestImage::commit(&old, "release");
    drop(old);
    let new = TestContainer::start(
        ContainerOptions::new()
            .exact_name(&name)
            .image(release.tag()),
    )
    .await;
    for _ in 0..3 {
        new.emit_log("ERROR:    Exception in ASGI application")
            .await;
    }
    let deployed = poll_until(
        &mut probe,
        "the redeploy and its errors",
        Duration::from_millis(250),
        |o| {
            is(o, "docker.recent_deploy", Value::Bool(true))
                && number(o, "docker.log_lines_per_minute", &[("pattern", "error")]) > 1.0
        },
    )
    .await;
    let out = deployed.result.as_deref().unwrap_or_default();
    let Outcome::Value(Value::Text(image)) = &backend(out, "docker.image", &[]).outcome else {
        panic!("no image");
    };
    assert!(image.starts_with(release.tag()), "{image}");
    assert!(
        matches!(&backend(out, "docker.previous_image", &[]).outcome,
            Outcome::Value(Value::Text(t)) if t.starts_with(crate::support::docker::TEST_IMAGE)),
        "{:?}",
        backend(out, "docker.previous_image", &[])
    );
    let note = backend(out, "docker.recent_deploy", &[])
        .note
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(note.contains("image changed from"), "{note}");
    let (top_cause, all) = top(&evaluate(&deployed), "errors");
    assert_eq!(top_cause.as_deref(), Some("errors.bad_deploy"), "{all}");
}

/// Polls `probe` every `every` for `for_` and returns the last report.
async fn poll_for(probe: &mut DockerProbe, every: Duration, for_: Duration) -> ProbeReport {
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < for_ || last.is_none() {
        if let Some(report) = try_poll(probe).await {
            last = Some(report);
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no poll of the Engine succeeded"
        );
        tokio::time::sleep(every).await;
    }
    last.expect("a report")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_429_line_a_second_reads_the_same_rate_at_a_1s_and_a_5s_poll() {
    let line = r#"HTTP Request: POST https://api.openai.com/v1/chat/completions "HTTP/1.1 429 Too Many Requests""#;
    let c = TestContainer::start(ContainerOptions::new().name_hint("429s").cmd(&[
        "/bin/sh",
        "-c",
        "while true; do printf '%s\\n' \"$1\"; sleep 1; done",
        "sh",
        line,
    ]))
    .await;
    // A 10 s log-rate window keeps the test short; the rate is per minute whatever the window.
    let mut fast = probe_for(
        c.name(),
        &[
            ("INTERVAL", "1s"),
            ("TIMEOUT", "900ms"),
            ("LOG_RATE_WINDOW", "10s"),
        ],
    );
    let mut slow = probe_for(
        c.name(),
        &[
            ("INTERVAL", "5s"),
            ("TIMEOUT", "4s"),
            ("LOG_RATE_WINDOW", "10s"),
        ],
    );
    // First sight: counting starts.
    let (_, _) = tokio::join!(try_poll(&mut fast), try_poll(&mut slow));
    let (fast, slow) = tokio::join!(
        poll_for(&mut fast, Duration::from_secs(1), Duration::from_secs(16)),
        poll_for(&mut slow, Duration::from_secs(5), Duration::from_secs(16)),
    );
    for (report, every) in [(&fast, "1 s"), (&slow, "5 s")] {
        let out = report.result.as_deref().unwrap_or_default();
        let rate = number(out, "docker.log_lines_per_minute", &[("pattern", "429")]);
        // 10 lines in a 10 s window, give or take one at each edge (and `sleep 1` drifts).
        assert!(
            (42.0..=72.0).contains(&rate),
            "at a {every} poll: {rate} a minute"
        );
        let eval = evaluate(report);
        let symptom = eval
            .symptoms
            .iter()
            .find(|s| s.rule == "openai_quota.http_429")
            .unwrap_or_else(|| panic!("at a {every} poll: the 429 rule is inactive"));
        assert_eq!(symptom.state, SymptomState::Pending, "at a {every} poll");
        assert!(
            symptom
                .note
                .as_ref()
                .map(ToString::to_string)
                .as_deref()
                .is_some_and(|n| n.starts_with("lines per minute over the last 10 s")),
            "{:?}",
            symptom.note
        );
    }
}
