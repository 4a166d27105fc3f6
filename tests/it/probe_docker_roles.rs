//! Roles on the real Docker Engine: containers named the ways Compose names them (v2
//! `<project>-backend-1`, v1 `<project>_backend_1`, three replicas of a scaled service) are the
//! runbook's `backend` with the shipped defaults and no configuration; their observations fold into
//! `docker.*{role="backend"}`; and the shipped runbook, fed one poll of the real probe, names the
//! likely cause of a bad deploy, an OOM-killed replica, a missing `JWT_SECRET` and OpenAI 429s.
//!
//! The defaults take the Compose service `backend` of any project, so the tests here that start such
//! containers hold [`REPLICAS`] (one of them at a time in this process), and the other tests that
//! poll the real Engine keep their roles to names (`names_only` in `probe_docker.rs`, the daemon
//! tests' environment). Every wait is a poll with a deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::models::RestartPolicyNameEnum;
use harven_watchdog::clock::Clock;
use harven_watchdog::config::{Config, Locale};
use harven_watchdog::engine::{CauseResult, Engine, Evaluation};
use harven_watchdog::observe::{Evidence, Observation, Outcome, ProbeReport, Value};
use harven_watchdog::probe::docker::DockerProbe;
use harven_watchdog::probe::{self};
use harven_watchdog::runbook::Runbook;

use crate::support::docker::{ContainerOptions, TestContainer, compose_project};

/// Held by each test that starts containers of the Compose service `backend`: with the shipped
/// defaults, every probe would take in every other test's replicas too.
static REPLICAS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Deadline for anything the Engine does to show in a poll; generous for a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(90);

/// Time between two polls while waiting.
const POLL_EVERY: Duration = Duration::from_millis(250);

/// A command that idles until `/tmp/go` exists, then reads `/dev/zero` into memory until the
/// container's limit kills it (PID 1 itself, so the container exits 137).
const OOM_ON_GO: [&str; 3] = [
    "/bin/sh",
    "-c",
    "while [ ! -f /tmp/go ]; do sleep 0.2; done; exec tail /dev/zero",
];

/// The Docker probe as the daemon builds it: the shipped defaults (with `[docker]` overrides, as
/// `HARVEN_WATCHDOG__DOCKER__<KEY>`), reading what the embedded runbook reads.
fn shipped_probe(overrides: &[(&str, &str)]) -> DockerProbe {
    let env = overrides
        .iter()
        .map(|(k, v)| (format!("HARVEN_WATCHDOG__DOCKER__{k}"), (*v).to_owned()));
    let config = Config::load_with_env(&[], env).expect("test configuration");
    DockerProbe::with_wanted(config.docker, Runbook::embedded().wanted())
}

/// One poll, which must read the Engine.
async fn poll(probe: &mut DockerProbe) -> ProbeReport {
    let report = probe::poll_once(probe, &Clock::system()).await;
    if let Err(f) = &report.result {
        panic!("the Docker source failed: {f}");
    }
    report
}

fn observations(report: &ProbeReport) -> &[Observation] {
    report.result.as_deref().unwrap_or_default()
}

/// Polls until `done` holds for a poll's observations and returns that poll; `each` sees every poll
/// on the way (to add up per-poll counts).
async fn poll_until(
    probe: &mut DockerProbe,
    what: &str,
    mut each: impl FnMut(&[Observation]),
    done: impl Fn(&[Observation]) -> bool,
) -> ProbeReport {
    let start = Instant::now();
    loop {
        let report = poll(probe).await;
        let out = observations(&report);
        each(out);
        if done(out) {
            return report;
        }
        if start.elapsed() > DEADLINE {
            let shown: String = out
                .iter()
                .map(|o| format!("  {} = {:?}\n", o.key, o.outcome))
                .collect();
            panic!("{what}: not seen within {DEADLINE:?}; last poll:\n{shown}");
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// The outcome of `name{label=subject, extra…}` (`label`: `role` or `container`), if observed.
fn outcome<'a>(
    out: &'a [Observation],
    name: &str,
    (label, subject): (&str, &str),
    extra: &[(&str, &str)],
) -> Option<&'a Outcome> {
    out.iter()
        .find(|o| {
            o.key.name == name
                && o.key.labels.len() == 1 + extra.len()
                && o.key.labels.get(label).map(String::as_str) == Some(subject)
                && extra
                    .iter()
                    .all(|(k, v)| o.key.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|o| &o.outcome)
}

fn value<'a>(out: &'a [Observation], name: &str, of: (&str, &str)) -> Option<&'a Value> {
    match outcome(out, name, of, &[]) {
        Some(Outcome::Value(v)) => Some(v),
        _ => None,
    }
}

fn backend(out: &[Observation], name: &str) -> Option<Value> {
    value(out, name, ("role", "backend")).cloned()
}

fn number(n: f64) -> Option<Value> {
    Some(Value::Number(n))
}

fn boolean(b: bool) -> Option<Value> {
    Some(Value::Bool(b))
}

fn text(out: &[Observation], name: &str, of: (&str, &str)) -> String {
    match value(out, name, of) {
        Some(Value::Text(t)) => t.clone(),
        other => panic!("{name}{of:?}: {other:?}"),
    }
}

/// Log lines matching `pattern` in this poll (0 for a first look, which counts none yet).
fn lines(out: &[Observation], of: (&str, &str), pattern: &str) -> f64 {
    match outcome(
        out,
        "docker.log_lines_per_minute",
        of,
        &[("pattern", pattern)],
    ) {
        Some(Outcome::Value(Value::Number(n))) => *n,
        Some(Outcome::NoData(_)) => 0.0,
        other => panic!("docker.log_lines_per_minute{of:?}{{pattern={pattern:?}}}: {other:?}"),
    }
}

fn restarts(out: &[Observation], of: (&str, &str)) -> f64 {
    match value(out, "docker.restarts", of) {
        Some(Value::Number(n)) => *n,
        other => panic!("docker.restarts{of:?}: {other:?}"),
    }
}

fn exact(project: &str, name: &str, number: u32) -> ContainerOptions {
    ContainerOptions::new()
        .exact_name(name)
        .compose(project, "backend", number)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_v1_v2_and_scaled_replicas_are_the_backend_with_the_defaults() {
    let _one_at_a_time = REPLICAS.lock().await;
    let (v2, v1, scaled) = (compose_project(), compose_project(), compose_project());
    let v2_name = format!("{v2}-backend-1");
    let v1_name = format!("{v1}_backend_1");
    let replica = |n: u32| format!("{scaled}-backend-{n}");
    let c_v2 = TestContainer::start(exact(&v2, &v2_name, 1)).await;
    let _c_v1 = TestContainer::start(exact(&v1, &v1_name, 1)).await;
    let r1 = TestContainer::start(exact(&scaled, &replica(1), 1)).await;
    // Replica 2 is killed for memory when told to; replica 3 exits 3 when told to and its restart
    // policy starts it again (the command removes the marker, so once).
    let r2 = TestContainer::start(
        exact(&scaled, &replica(2), 2)
            .cmd(&OOM_ON_GO)
            .memory(16 << 20),
    )
    .await;
    let r3 = TestContainer::start(
        exact(&scaled, &replica(3), 3)
            .cmd(&[
                "/bin/sh",
                "-c",
                "trap 'exit 0' TERM; rm -f /tmp/die; \
                 while [ ! -f /tmp/die ]; do sleep 0.2; done; exit 3",
            ])
            .restart_policy(RestartPolicyNameEnum::ON_FAILURE, 5),
    )
    .await;
    let _redis = TestContainer::start(
        ContainerOptions::new()
            .exact_name(&format!("{scaled}-redis-1"))
            .compose(&scaled, "redis", 1),
    )
    .await;
    let outsider = TestContainer::start(ContainerOptions::new().name_hint("outsider")).await;
    let backends = [
        v2_name.clone(),
        v1_name.clone(),
        replica(1),
        replica(2),
        replica(3),
    ];

    let mut probe = shipped_probe(&[]);
    let first = poll(&mut probe).await;
    let out = observations(&first);
    assert_eq!(backend(out, "docker.role_containers"), number(5.0));
    assert_eq!(
        value(out, "docker.role_containers", ("role", "redis")),
        Some(&Value::Number(1.0))
    );
    let listed = text(out, "docker.replicas", ("role", "backend"));
    for name in &backends {
        assert!(
            listed
                .split("; ")
                .any(|r| r == name || r.starts_with(&format!("{name}:"))),
            "{name} is a replica: {listed}"
        );
        assert_eq!(
            value(out, "docker.running", ("container", name)),
            Some(&Value::Bool(true)),
            "{name} keeps its own observations"
        );
    }
    assert_eq!(backend(out, "docker.running"), boolean(true));
    assert!(
        !out.iter()
            .any(|o| o.key.labels.get("container").map(String::as_str) == Some(outsider.name())),
        "a container of no role is not watched"
    );
    // The runbook reads the backend's logs, not Redis's: only the backend role's are read.
    assert!(
        outcome(
            out,
            "docker.log_lines_per_minute",
            ("role", "redis"),
            &[("pattern", "error")]
        )
        .is_none()
    );

    // Errors logged by three replicas, one replica OOM-killed, one restarted by its policy.
    c_v2.emit_log("ERROR:    Exception in ASGI application")
        .await;
    r1.emit_log("ERROR:    Exception in ASGI application").await;
    r1.emit_log("ERROR KeyError: 'course_id'").await;
    r3.emit_log("ERROR could not serialize the course").await;
    for (c, marker) in [(&r2, "/tmp/go"), (&r3, "/tmp/die")] {
        let touched = c.exec(&["touch", marker]).await;
        assert_eq!(touched.exit_code, Some(0), "{}", touched.output);
    }
    let role = ("role", "backend");
    let restarted = ("container", backends[4].as_str());
    // Rates and counts over windows (2 min of log lines, 10 min of restarts): they hold, so the
    // last poll says it all. Four error lines over 2 min are 2 a minute.
    poll_until(
        &mut probe,
        "the OOM kill, the restart and the errors",
        |_| {},
        |o| {
            backend(o, "docker.oom_killed") == boolean(true)
                && value(o, "docker.restart_count", restarted) == Some(&Value::Number(1.0))
                && value(o, "docker.running", restarted) == Some(&Value::Bool(true))
                && lines(o, role, "error") >= 2.0
        },
    )
    .await;
    // Later polls count nothing twice, and forget nothing.
    let mut last = None;
    for _ in 0..3 {
        tokio::time::sleep(POLL_EVERY).await;
        let report = poll(&mut probe).await;
        let o = observations(&report);
        assert_eq!(
            lines(o, role, "error"),
            2.0,
            "error lines summed over the replicas"
        );
        let own: f64 = backends
            .iter()
            .map(|n| lines(o, ("container", n), "error"))
            .sum();
        assert_eq!(own, 2.0);
        assert_eq!(restarts(o, role), 1.0, "restarts summed over the replicas");
        let own: f64 = backends.iter().map(|n| restarts(o, ("container", n))).sum();
        assert_eq!(own, 1.0);
        last = Some(report);
    }

    let last = last.expect("polled");
    let out = observations(&last);
    assert_eq!(backend(out, "docker.oom_killed"), boolean(true));
    assert_eq!(backend(out, "docker.running"), boolean(false));
    assert_eq!(backend(out, "docker.exit_code"), number(137.0));
    assert_eq!(backend(out, "docker.restart_count"), number(1.0));
    let listed = text(out, "docker.replicas", role);
    assert!(
        listed.starts_with(&format!(
            "{}: not running (exit 137), OOM-killed",
            replica(2)
        )),
        "the OOM-killed replica first: {listed}"
    );
    assert_eq!(text(out, "docker.worst_replica", role), replica(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_that_matches_no_container_counts_none_and_has_no_data() {
    let absent = format!("hwtest-{}-absent-worker", std::process::id());
    let mut probe = shipped_probe(&[("ROLES__WORKER__NAMES", &absent)]);
    let report = poll(&mut probe).await;
    let out = observations(&report);
    let worker = ("role", "worker");
    assert_eq!(
        value(out, "docker.role_containers", worker),
        Some(&Value::Number(0.0))
    );
    let why = format!("no container matches role worker (names {absent})");
    for name in [
        "docker.running",
        "docker.oom_killed",
        "docker.restarts",
        "docker.replicas",
        "docker.worst_replica",
    ] {
        assert!(
            matches!(outcome(out, name, worker, &[]), Some(Outcome::NoData(w)) if w.to_string() == why),
            "{name}"
        );
    }
    assert!(
        !out.iter()
            .any(|o| o.key.labels.get("container") == Some(&absent)),
        "a role's name is looked for, not reported missing as a configured container is"
    );
}

/// `[docker]` overrides under which the test's containers, created seconds ago, are soon no recent
/// deploy: a 6 s deploy window (and so a 6 s interval, which no window may be shorter than; the
/// test polls by hand, so the interval only bounds the windows).
const LONG_AGO: [(&str, &str); 2] = [("INTERVAL", "6s"), ("DEPLOY_WINDOW", "6s")];

/// One evaluation of the shipped runbook over one poll of the probe.
fn evaluate(report: &ProbeReport) -> Evaluation {
    let mut evidence = Evidence::new();
    evidence.apply(report.clone());
    Engine::new(Arc::new(Runbook::embedded()), Locale::En).evaluate(&evidence, report.at)
}

/// The top likely cause of `section`, which must be `id`.
fn top<'a>(eval: &'a Evaluation, section: &str, id: &str) -> &'a CauseResult {
    let s = eval
        .sections
        .iter()
        .find(|s| s.section == section)
        .unwrap_or_else(|| panic!("no section {section}"));
    let top = s.diagnosis.top();
    assert_eq!(
        top.map(|c| c.id.as_str()),
        Some(id),
        "{section}: {:#?}",
        s.diagnosis.causes
    );
    top.expect("a likely cause")
}

/// A context value of `cause`, as text.
fn context(cause: &CauseResult, name: &str) -> String {
    let line = cause.context.iter().find(|c| c.name == name);
    match line.and_then(|c| c.value.as_ref()) {
        Some(Value::Text(t)) => t.clone(),
        other => panic!("{}: context {name}: {other:?}", cause.id),
    }
}

/// The shipped runbook names each cause for a backend of `replicas` Compose replicas
/// (`<project>-backend-<n>`): replica `min(2, replicas)` is the one OOM-killed, the last one lacks
/// `JWT_SECRET` and logs OpenAI's 429s, the first one logs the tracebacks of a bad deploy.
async fn each_cause_is_named(replicas: u32) {
    let _one_at_a_time = REPLICAS.lock().await;
    let project = compose_project();
    let name = |n: u32| format!("{project}-backend-{n}");
    let (errors_n, oom_n, last) = (1, replicas.min(2), replicas);
    let mut containers = Vec::new();
    for n in 1..=replicas {
        let mut options = exact(&project, &name(n), n);
        if n != last {
            options = options.env("JWT_SECRET", "test-signing-key");
        }
        if n == oom_n {
            options = options.cmd(&OOM_ON_GO).memory(16 << 20);
        }
        containers.push(TestContainer::start(options).await);
    }
    let container = |n: u32| &containers[n as usize - 1];
    let role = ("role", "backend");

    // A deploy: containers just created, then tracebacks in the logs.
    let mut probe = shipped_probe(&[]);
    let first = poll(&mut probe).await;
    assert_eq!(
        backend(observations(&first), "docker.role_containers"),
        number(f64::from(replicas))
    );
    container(errors_n)
        .emit_log("ERROR:    Exception in ASGI application")
        .await;
    let deploy = poll_until(
        &mut probe,
        "the traceback",
        |_| {},
        |o| lines(o, role, "error") > 0.0,
    )
    .await;
    let eval = evaluate(&deploy);
    let bad = top(&eval, "errors", "errors.bad_deploy");
    let logs = format!("docker logs {project}-backend-");
    assert!(
        bad.commands.iter().any(|c| c.starts_with(&logs)),
        "the command names a replica: {:?}",
        bad.commands
    );
    // The same poll: the replica without the secret makes the wrong secret likely.
    let jwt = top(&eval, "auth", "auth.jwt_secret");
    let replicas_text = context(jwt, "replicas");
    assert!(
        replicas_text.starts_with(&format!("{}: JWT_SECRET missing", name(last))),
        "{replicas_text}"
    );

    // Later (a probe whose deploy window is 6 s, which has lapsed once the role is not a recent
    // deploy): OpenAI answers 429, as its client logs it.
    let mut probe = shipped_probe(&LONG_AGO);
    poll_until(
        &mut probe,
        "the deploy window over",
        |_| {},
        |o| backend(o, "docker.recent_deploy") == boolean(false),
    )
    .await;
    let line = concat!(
        "HTTP Request: POST https://api.openai.com/v1/chat/completions ",
        r#""HTTP/1.1 429 Too Many Requests""#
    );
    let logged = container(last)
        .exec(&[
            "/bin/sh",
            "-c",
            "for i in 1 2 3; do printf '%s\\n' \"$1\" > /proc/1/fd/1; done",
            "sh",
            line,
        ])
        .await;
    assert_eq!(logged.exit_code, Some(0), "{}", logged.output);
    let rate = poll_until(
        &mut probe,
        "the 429 lines",
        |_| {},
        |o| lines(o, role, "429") > 0.0,
    )
    .await;
    top(&evaluate(&rate), "errors", "errors.openai_rate_limit");

    // A replica killed for memory (watched by a fresh probe: the 429 lines still hold for the
    // other probe's 2 min window, and would rightly outrank a lone kill).
    let mut probe = shipped_probe(&LONG_AGO);
    poll_until(
        &mut probe,
        "the deploy window over",
        |_| {},
        |o| backend(o, "docker.recent_deploy") == boolean(false),
    )
    .await;
    let go = container(oom_n).exec(&["touch", "/tmp/go"]).await;
    assert_eq!(go.exit_code, Some(0), "{}", go.output);
    let killed = name(oom_n);
    let oom = poll_until(
        &mut probe,
        "the OOM kill",
        |_| {},
        |o| {
            backend(o, "docker.oom_killed") == boolean(true)
                && value(o, "docker.running", ("container", &killed)) == Some(&Value::Bool(false))
        },
    )
    .await;
    let eval = evaluate(&oom);
    let leak = top(&eval, "errors", "errors.memory_leak");
    let replicas_text = context(leak, "replicas");
    assert!(
        replicas_text.starts_with(&format!(
            "{}: not running (exit 137), OOM-killed",
            name(oom_n)
        )),
        "{replicas_text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_runbook_names_each_cause_of_a_compose_v2_backend() {
    each_cause_is_named(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_runbook_names_each_cause_of_three_backend_replicas() {
    each_cause_is_named(3).await;
}
