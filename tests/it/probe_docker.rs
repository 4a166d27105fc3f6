//! The Docker probe against the real Docker Engine: test containers (scratch + busybox) that turn
//! unhealthy, crash-loop, get OOM-killed, log errors and carry (or lack) a secret; the probe is built
//! from a configuration with `HARVEN_WATCHDOG__DOCKER__*` overrides and polled as the daemon polls it.
//!
//! Every wait is a poll with a deadline; nothing sleeps in the hope that something happened.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bollard::models::RestartPolicyNameEnum;
use harven_watchdog::clock::Clock;
use harven_watchdog::config::Config;
use harven_watchdog::observe::{FailureKind, Observation, Outcome, ProbeReport, Value};
use harven_watchdog::probe::docker::{COMPOSE_PROJECT_LABEL, DockerProbe};
use harven_watchdog::probe::{self, Probe, ProbeMetrics};
use tokio_util::sync::CancellationToken;

use crate::support::docker::{ContainerOptions, TEST_IMAGE, TestContainer};

/// Deadline for anything the Engine does (a health flip, a crash loop's restarts, an OOM kill) to
/// show in a poll; generous for a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(90);

/// Time between two polls while waiting.
const POLL_EVERY: Duration = Duration::from_millis(250);

/// Overrides that keep the roles to their names: by their Compose services (the defaults) they
/// would take in the replicas the role tests start meanwhile, which a test of its own containers
/// must not count.
fn names_only() -> Vec<(String, String)> {
    ["BACKEND", "REDIS"]
        .map(|r| {
            let var = format!("HARVEN_WATCHDOG__DOCKER__ROLES__{r}__COMPOSE_SERVICE");
            (var, String::new())
        })
        .to_vec()
}

/// A Docker probe watching `containers`, with more `HARVEN_WATCHDOG__DOCKER__<KEY>` overrides.
fn probe_for(containers: &[&str], overrides: &[(&str, &str)]) -> DockerProbe {
    let mut env = names_only();
    env.push((
        "HARVEN_WATCHDOG__DOCKER__CONTAINERS".to_owned(),
        containers.join(","),
    ));
    for (key, value) in overrides {
        env.push((
            format!("HARVEN_WATCHDOG__DOCKER__{key}"),
            (*value).to_owned(),
        ));
    }
    let config = Config::load_with_env(&[], env).expect("test configuration");
    DockerProbe::new(config.docker)
}

/// A container name no Engine has: `hwtest-<pid>-absent-<n>`.
fn absent_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "hwtest-{}-absent-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

async fn report(probe: &mut DockerProbe) -> ProbeReport {
    probe::poll_once(probe, &Clock::system()).await
}

/// One poll, which must read the Engine.
async fn poll(probe: &mut DockerProbe) -> Vec<Observation> {
    match report(probe).await.result {
        Ok(out) => out,
        Err(f) => panic!("the Docker source failed: {f}"),
    }
}

/// Polls until `done` holds for a poll's observations and returns them; panics with the last poll
/// when [`DEADLINE`] passes. `each` sees every poll on the way (to add up per-poll counts).
async fn poll_until(
    probe: &mut DockerProbe,
    what: &str,
    mut each: impl FnMut(&[Observation]),
    done: impl Fn(&[Observation]) -> bool,
) -> Vec<Observation> {
    let start = Instant::now();
    loop {
        let out = poll(probe).await;
        each(&out);
        if done(&out) {
            return out;
        }
        if start.elapsed() > DEADLINE {
            panic!(
                "{what}: not seen within {DEADLINE:?}; last poll:\n{}",
                render(&out)
            );
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

fn render(out: &[Observation]) -> String {
    out.iter()
        .map(|o| format!("  {} = {:?}\n", o.key, o.outcome))
        .collect()
}

/// The outcome of `name{container=…, extra labels…}`, if observed.
fn outcome<'a>(
    out: &'a [Observation],
    name: &str,
    container: &str,
    extra: &[(&str, &str)],
) -> Option<&'a Outcome> {
    out.iter()
        .find(|o| {
            o.key.name == name
                && o.key.labels.get("container").map(String::as_str) == Some(container)
                && extra
                    .iter()
                    .all(|(k, v)| o.key.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|o| &o.outcome)
}

fn value<'a>(out: &'a [Observation], name: &str, container: &str) -> Option<&'a Value> {
    match outcome(out, name, container, &[]) {
        Some(Outcome::Value(v)) => Some(v),
        _ => None,
    }
}

fn number(out: &[Observation], name: &str, container: &str) -> Option<f64> {
    match value(out, name, container) {
        Some(Value::Number(n)) => Some(*n),
        _ => None,
    }
}

fn boolean(out: &[Observation], name: &str, container: &str) -> Option<bool> {
    match value(out, name, container) {
        Some(Value::Bool(b)) => Some(*b),
        _ => None,
    }
}

fn text<'a>(out: &'a [Observation], name: &str, container: &str) -> Option<&'a str> {
    match value(out, name, container) {
        Some(Value::Text(t)) => Some(t),
        _ => None,
    }
}

/// `docker.log_lines_per_minute{container, pattern}`: matching lines per minute over the window.
fn log_rate(out: &[Observation], container: &str, pattern: &str) -> f64 {
    match outcome(
        out,
        "docker.log_lines_per_minute",
        container,
        &[("pattern", pattern)],
    ) {
        Some(Outcome::Value(Value::Number(n))) => *n,
        other => panic!("docker.log_lines_per_minute{{pattern={pattern:?}}}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_turning_unhealthy_is_reported() {
    let c = TestContainer::start(
        ContainerOptions::new()
            .name_hint("health")
            .health_cmd("test -f /tmp/healthy"),
    )
    .await;
    let mut probe = probe_for(&[c.name()], &[]);
    poll_until(
        &mut probe,
        "healthy",
        |_| {},
        |o| text(o, "docker.health", c.name()) == Some("healthy"),
    )
    .await;
    c.set_healthy(false).await;
    let out = poll_until(
        &mut probe,
        "unhealthy",
        |_| {},
        |o| text(o, "docker.health", c.name()) == Some("unhealthy"),
    )
    .await;
    assert_eq!(boolean(&out, "docker.running", c.name()), Some(true));
    assert_eq!(boolean(&out, "docker.present", c.name()), Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_shows_in_the_restart_count_and_each_restart_once() {
    let c = TestContainer::start(
        ContainerOptions::new()
            .name_hint("crashloop")
            .cmd(&["/bin/sh", "-c", "sleep 1; exit 1"])
            .restart_policy(RestartPolicyNameEnum::ON_FAILURE, 3),
    )
    .await;
    let name = c.name().to_owned();
    let mut probe = probe_for(&[&name], &[]);
    let first = poll(&mut probe).await;
    let initial = number(&first, "docker.restart_count", &name).expect("restart count");
    assert_eq!(
        number(&first, "docker.restarts", &name),
        Some(0.0),
        "first sight"
    );

    // `docker.restarts` counts within the evidence window (10 min): it only grows here.
    let out = poll_until(
        &mut probe,
        "three restarts, then exited",
        |_| {},
        |o| {
            number(o, "docker.restart_count", &name) == Some(3.0)
                && boolean(o, "docker.running", &name) == Some(false)
        },
    )
    .await;
    assert_eq!(number(&out, "docker.exit_code", &name), Some(1.0));
    // The events of the last restarts may reach the probe after the count: a few more polls must
    // not add to the total, and the restarts hold (they do not fade after the poll that saw them).
    for _ in 0..4 {
        tokio::time::sleep(POLL_EVERY).await;
        let restarts = number(&poll(&mut probe).await, "docker.restarts", &name);
        assert_eq!(
            restarts,
            Some(3.0 - initial),
            "every restart since the first poll counted exactly once, and held"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_restarts_between_two_polls_are_all_counted_through_events() {
    let c = TestContainer::start(ContainerOptions::new().name_hint("restarts")).await;
    let name = c.name().to_owned();
    let mut probe = probe_for(&[&name], &[]);
    // Restarts within a second of the run the probe first saw are that run's own start for the
    // event path; wait (by polling) until the run is older than that.
    poll_until(
        &mut probe,
        "an uptime over 1.5 s",
        |_| {},
        |o| number(o, "docker.uptime_seconds", &name).is_some_and(|s| s > 1.5),
    )
    .await;

    // Docker resets its restart count on every manual start, so the count shows at most one of
    // these; the `start` events show both.
    c.restart(Duration::from_secs(1)).await;
    c.restart(Duration::from_secs(1)).await;
    poll_until(
        &mut probe,
        "two restarts counted",
        |_| {},
        |o| number(o, "docker.restarts", &name).is_some_and(|n| n >= 2.0),
    )
    .await;
    for _ in 0..4 {
        tokio::time::sleep(POLL_EVERY).await;
        let restarts = number(&poll(&mut probe).await, "docker.restarts", &name);
        assert_eq!(restarts, Some(2.0), "counted once each, and held");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_kill_is_reported() {
    // `tail` buffers /dev/zero looking for a newline until the 16 MiB limit kills it.
    let c = TestContainer::start(
        ContainerOptions::new()
            .name_hint("oom")
            .cmd(&["/bin/tail", "/dev/zero"])
            .memory(16 << 20),
    )
    .await;
    let mut probe = probe_for(&[c.name()], &[]);
    let out = poll_until(
        &mut probe,
        "OOM-killed",
        |_| {},
        |o| boolean(o, "docker.oom_killed", c.name()) == Some(true),
    )
    .await;
    assert_eq!(boolean(&out, "docker.running", c.name()), Some(false));
    assert_eq!(number(&out, "docker.exit_code", c.name()), Some(137.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_kill_inside_a_surviving_container_is_caught_from_events() {
    // PID 1 survives; only its child is killed, so inspect keeps saying OOMKilled=false.
    let c = TestContainer::start(
        ContainerOptions::new()
            .name_hint("oomchild")
            .cmd(&[
                "/bin/sh",
                "-c",
                "while [ ! -f /tmp/go ]; do sleep 1; done; \
                 head -c 100m /dev/zero | tail > /dev/null; \
                 trap 'exit 0' TERM; while true; do sleep 1; done",
            ])
            .memory(16 << 20),
    )
    .await;
    let mut probe = probe_for(&[c.name()], &[]);
    let first = poll(&mut probe).await;
    assert_eq!(boolean(&first, "docker.oom_killed", c.name()), Some(false));

    let go = c.exec(&["touch", "/tmp/go"]).await;
    assert_eq!(go.exit_code, Some(0), "{}", go.output);
    let out = poll_until(
        &mut probe,
        "an OOM event",
        |_| {},
        |o| boolean(o, "docker.oom_killed", c.name()) == Some(true),
    )
    .await;
    // Engine 20.10 sometimes also sets its own flag meanwhile, sometimes not; without the events
    // this test fails whenever it does not.
    assert_eq!(boolean(&out, "docker.running", c.name()), Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_killed_for_memory_stays_reported_while_it_is_down() {
    // PID 1 itself is killed once it is told to go: the container exits 137, and Engine 20.10's
    // OOMKilled flag is false now and then (it loses a race with the exit); the `oom` event is not.
    let c = TestContainer::start(
        ContainerOptions::new()
            .name_hint("oomexit")
            .cmd(&[
                "/bin/sh",
                "-c",
                "while [ ! -f /tmp/go ]; do sleep 1; done; exec tail /dev/zero",
            ])
            .memory(16 << 20),
    )
    .await;
    let mut probe = probe_for(&[c.name()], &[]);
    let first = poll(&mut probe).await;
    assert_eq!(boolean(&first, "docker.oom_killed", c.name()), Some(false));
    let go = c.exec(&["touch", "/tmp/go"]).await;
    assert_eq!(go.exit_code, Some(0), "{}", go.output);
    poll_until(
        &mut probe,
        "exited, OOM-killed",
        |_| {},
        |o| {
            boolean(o, "docker.running", c.name()) == Some(false)
                && boolean(o, "docker.oom_killed", c.name()) == Some(true)
        },
    )
    .await;
    for _ in 0..3 {
        tokio::time::sleep(POLL_EVERY).await;
        let out = poll(&mut probe).await;
        assert_eq!(boolean(&out, "docker.oom_killed", c.name()), Some(true));
        assert_eq!(number(&out, "docker.exit_code", c.name()), Some(137.0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_secret_presence_is_reported_and_its_value_never_is() {
    let secret = format!(
        "hw-secret-{}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    );
    let with = TestContainer::start(
        ContainerOptions::new()
            .name_hint("jwt")
            .env("JWT_SECRET", &secret),
    )
    .await;
    let without = TestContainer::start(ContainerOptions::new().name_hint("nojwt")).await;
    let mut probe = probe_for(
        &[with.name(), without.name()],
        &[("ENV_VARS", "JWT_SECRET,SUPABASE_KEY")],
    );
    let report = report(&mut probe).await;
    let out = report.result.clone().expect("the Docker source answers");
    let present = |c: &str, var: &str| match outcome(&out, "docker.env_present", c, &[("var", var)])
    {
        Some(Outcome::Value(Value::Bool(b))) => *b,
        other => panic!("env_present{{container={c:?},var={var:?}}}: {other:?}"),
    };
    assert!(present(with.name(), "JWT_SECRET"));
    assert!(!present(without.name(), "JWT_SECRET"));
    assert!(!present(with.name(), "SUPABASE_KEY"));

    // The value is nowhere: not in the observations (Debug, JSON), the probe, nor `diagnose`.
    let at = report.at;
    let diagnosis = harven_watchdog::diagnose::build(
        at,
        at,
        vec![report.clone()],
        std::sync::Arc::new(harven_watchdog::runbook::Runbook::embedded()),
        harven_watchdog::runbook::Locale::En,
    );
    let outputs = [
        format!("{out:?}"),
        serde_json::to_string(&out).expect("observations as JSON"),
        format!("{report:?}"),
        serde_json::to_string(&report).expect("report as JSON"),
        format!("{probe:?}"),
        diagnosis.to_text(),
        serde_json::to_string(&diagnosis).expect("diagnose JSON"),
    ];
    for o in &outputs {
        assert!(!o.contains(&secret), "the secret leaked into: {o}");
    }
    assert!(
        outputs[5].contains("docker.env_present"),
        "diagnose shows the presence: {}",
        outputs[5]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_are_counted_once_per_pattern() {
    let c = TestContainer::start(ContainerOptions::new().name_hint("logs")).await;
    let name = c.name().to_owned();
    c.emit_log("ERROR openai 429 logged before the watchdog looked")
        .await;
    let mut probe = probe_for(&[&name], &[]);
    let first = poll(&mut probe).await;
    for p in ["error", "openai", "429", "supabase"] {
        assert!(
            matches!(
                outcome(
                    &first,
                    "docker.log_lines_per_minute",
                    &name,
                    &[("pattern", p)]
                ),
                Some(Outcome::NoData(_))
            ),
            "first sight, no count yet: {p}"
        );
    }

    c.emit_log("ERROR calling OpenAI: HTTP 429 Too Many Requests")
        .await;
    // One line over the default 2 min window: 0.5 a minute for the patterns it matches, however
    // many polls see the window meanwhile (later polls, in the same second or after, do not count
    // it again).
    let patterns = ["error", "openai", "429", "supabase", "jwt"];
    let rates = |o: &[Observation]| -> BTreeMap<&str, f64> {
        patterns
            .iter()
            .map(|p| (*p, log_rate(o, &name, p)))
            .collect()
    };
    poll_until(
        &mut probe,
        "the openai line",
        |_| {},
        |o| log_rate(o, &name, "openai") > 0.0,
    )
    .await;
    for _ in 0..4 {
        let out = poll(&mut probe).await;
        assert_eq!(
            rates(&out),
            BTreeMap::from([
                ("error", 0.5),
                ("openai", 0.5),
                ("429", 0.5),
                ("supabase", 0.0),
                ("jwt", 0.0)
            ])
        );
        let note = out
            .iter()
            .find(|o| o.key.name == "docker.log_lines_per_minute")
            .and_then(|o| o.note.as_ref().map(ToString::to_string))
            .unwrap_or_default();
        assert!(
            note.starts_with("lines per minute over the last 2 min"),
            "{note}"
        );
        tokio::time::sleep(POLL_EVERY).await;
    }

    // A second line is one more, on stderr too.
    c.exec(&[
        "/bin/sh",
        "-c",
        "echo 'supabase: permission denied for table chats' > /proc/1/fd/2",
    ])
    .await;
    poll_until(
        &mut probe,
        "the stderr line",
        |_| {},
        |o| log_rate(o, &name, "supabase") > 0.0,
    )
    .await;
    for _ in 0..3 {
        let out = poll(&mut probe).await;
        assert_eq!(log_rate(&out, &name, "supabase"), 0.5);
        assert_eq!(log_rate(&out, &name, "error"), 0.5);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_container_that_does_not_exist_is_not_present() {
    let absent = absent_name();
    let present = TestContainer::start(ContainerOptions::new().name_hint("present")).await;
    let mut probe = probe_for(&[&absent, present.name()], &[]);
    let out = poll(&mut probe).await;
    assert_eq!(boolean(&out, "docker.present", &absent), Some(false));
    let about_absent: Vec<_> = out
        .iter()
        .filter(|o| o.key.labels.get("container") == Some(&absent))
        .collect();
    assert_eq!(
        about_absent.len(),
        1,
        "only docker.present: {about_absent:?}"
    );
    assert_eq!(boolean(&out, "docker.present", present.name()), Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_engine_fails_the_source_with_connect() {
    let mut probe = probe_for(
        &["harven-backend"],
        &[("HOST", "unix:///nonexistent/docker.sock")],
    );
    for _ in 0..2 {
        let report = report(&mut probe).await;
        let failure = report.result.expect_err("no Engine there");
        assert_eq!(failure.kind, FailureKind::Connect, "{failure}");
        assert!(
            failure.detail.contains("/nonexistent/docker.sock"),
            "{failure}"
        );
    }
    // A TCP port nobody listens on: refused, also a connect failure.
    let port = crate::support::free_port();
    let mut probe = probe_for(
        &["harven-backend"],
        &[("HOST", &format!("tcp://127.0.0.1:{port}"))],
    );
    let failure = report(&mut probe)
        .await
        .result
        .expect_err("no Engine there");
    assert_eq!(failure.kind, FailureKind::Connect, "{failure}");
}

/// An Engine with more containers than the probe reads fails the poll as `too_large` (the list is
/// asked for one more than that, so the answer stays bounded) rather than watching some of them.
/// Two test containers exist, so a limit of one is exceeded whatever else the Engine runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_containers_than_the_probe_reads_fail_the_poll_as_too_large() {
    let a = TestContainer::start(ContainerOptions::new().name_hint("many-a")).await;
    let b = TestContainer::start(ContainerOptions::new().name_hint("many-b")).await;
    let mut probe = probe_for(&[a.name(), b.name()], &[]).with_max_containers(1);
    let failure = report(&mut probe)
        .await
        .result
        .expect_err("more than one container");
    assert_eq!(failure.kind, FailureKind::TooLarge, "{failure}");
    assert_eq!(
        failure.detail,
        "list: the Docker Engine has more than 1 containers, more than the probe reads"
    );
    // The default limit reads them.
    let mut probe = probe_for(&[a.name(), b.name()], &[]);
    let out = poll(&mut probe).await;
    assert_eq!(boolean(&out, "docker.present", a.name()), Some(true));
    assert_eq!(boolean(&out, "docker.present", b.name()), Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_just_started_container_is_a_recent_deploy_running_its_image() {
    let c = TestContainer::start(ContainerOptions::new().name_hint("deploy")).await;
    let mut probe = probe_for(&[c.name()], &[("DEPLOY_WINDOW", "10m")]);
    let out = poll(&mut probe).await;
    assert_eq!(boolean(&out, "docker.recent_deploy", c.name()), Some(true));
    let image = text(&out, "docker.image", c.name()).expect("image");
    assert!(image.starts_with(TEST_IMAGE), "{image}");
    assert!(image.contains("sha256:"), "{image}");
    assert!(matches!(
        outcome(&out, "docker.previous_image", c.name(), &[]),
        Some(Outcome::NoData(_))
    ));
    let uptime = number(&out, "docker.uptime_seconds", c.name()).expect("uptime");
    assert!((0.0..600.0).contains(&uptime), "{uptime}");
    assert_eq!(number(&out, "docker.restart_count", c.name()), Some(0.0));
    assert_eq!(text(&out, "docker.health", c.name()), Some("none"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_usage_limit_and_ratio_for_a_limited_container() {
    let limited =
        TestContainer::start(ContainerOptions::new().name_hint("mem").memory(64 << 20)).await;
    let unlimited = TestContainer::start(ContainerOptions::new().name_hint("nomem")).await;
    let mut probe = probe_for(&[limited.name(), unlimited.name()], &[]);
    let out = poll(&mut probe).await;
    let used = number(&out, "docker.memory_bytes", limited.name()).expect("memory in use");
    assert!(used > 0.0, "{used}");
    assert_eq!(
        number(&out, "docker.memory_limit_bytes", limited.name()),
        Some(f64::from(64u32 << 20))
    );
    let ratio = number(&out, "docker.memory_ratio", limited.name()).expect("ratio");
    assert!(ratio > 0.0 && ratio < 1.0, "{ratio}");
    assert!((ratio - used / f64::from(64u32 << 20)).abs() < 1e-9);
    assert!(matches!(
        outcome(
            &out,
            "docker.memory_growth_bytes_per_hour",
            limited.name(),
            &[]
        ),
        Some(Outcome::NoData(_))
    ));

    assert!(number(&out, "docker.memory_bytes", unlimited.name()).is_some());
    for key in ["docker.memory_limit_bytes", "docker.memory_ratio"] {
        assert!(
            matches!(
                outcome(&out, key, unlimited.name(), &[]),
                Some(Outcome::NoData(_))
            ),
            "{key} without a limit: {:?}",
            outcome(&out, key, unlimited.name(), &[])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compose_project_is_watched_by_its_label() {
    let project = format!("hwtest-{}-project", std::process::id());
    let a = TestContainer::start(
        ContainerOptions::new()
            .name_hint("web")
            .label(COMPOSE_PROJECT_LABEL, &project),
    )
    .await;
    let b = TestContainer::start(
        ContainerOptions::new()
            .name_hint("worker")
            .label(COMPOSE_PROJECT_LABEL, &project)
            .cmd(&["/bin/sh", "-c", "exit 2"]),
    )
    .await;
    let outsider = TestContainer::start(ContainerOptions::new().name_hint("outsider")).await;
    let mut probe = probe_for(&[], &[("COMPOSE_PROJECT", &project)]);
    let out = poll_until(
        &mut probe,
        "the worker exited",
        |_| {},
        |o| boolean(o, "docker.running", b.name()) == Some(false),
    )
    .await;
    assert_eq!(boolean(&out, "docker.running", a.name()), Some(true));
    assert_eq!(number(&out, "docker.exit_code", b.name()), Some(2.0));
    assert!(outcome(&out, "docker.present", outsider.name(), &[]).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_events_make_the_runner_poll_before_its_interval() {
    let c = TestContainer::start(
        ContainerOptions::new()
            .name_hint("wake")
            .health_cmd("test -f /tmp/healthy"),
    )
    .await;
    let name = c.name().to_owned();
    // A ten-minute interval: any report after the first within the deadline came from a wake.
    let probe = probe_for(&[&name], &[("INTERVAL", "10m"), ("LOG_RATE_WINDOW", "10m")]);
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let shutdown = CancellationToken::new();
    let runner = tokio::spawn(probe::run(
        probe,
        Clock::system(),
        tx,
        ProbeMetrics::default(),
        harven_watchdog::probe::never_hurry(),
        shutdown.clone(),
    ));
    let health = |r: &ProbeReport| {
        r.result
            .as_ref()
            .ok()
            .and_then(|o| text(o, "docker.health", &name).map(str::to_owned))
    };
    let mut next = async || {
        tokio::time::timeout(DEADLINE, rx.recv())
            .await
            .expect("a report before the deadline")
            .expect("the runner is alive")
    };
    let first = next().await;
    if health(&first).as_deref() != Some("healthy") {
        // The health check turns healthy about a second after the start; its event wakes the runner.
        loop {
            if health(&next().await).as_deref() == Some("healthy") {
                break;
            }
        }
    }
    c.set_healthy(false).await;
    loop {
        if health(&next().await).as_deref() == Some("unhealthy") {
            break;
        }
    }
    shutdown.cancel();
    runner.await.expect("the runner stops");
}

#[test]
fn the_docker_probe_is_built_with_the_others_and_can_wake_the_runner() {
    crate::support::init();
    let config = Config::load_with_env(&[], Vec::<(String, String)>::new()).expect("defaults");
    let probes = probe::build_all(
        &config,
        &harven_watchdog::runbook::Runbook::embedded().wanted(),
    )
    .expect("probes");
    let docker = probes
        .iter()
        .find(|p| p.source() == "docker")
        .expect("a docker probe");
    assert!(docker.wake().is_some());
    assert_eq!(docker.interval(), Duration::from_secs(15));
}

/// Engine requests of `call` counted by `probe` so far.
fn requests(probe: &DockerProbe, call: &'static str) -> u64 {
    probe.requests().get(call)
}

/// Watching many containers costs one list call per poll plus a bounded share of inspections; memory
/// stats and logs are read only of containers the runbook reads (none of these); a health flip and
/// a restart by the restart policy are still seen, through a fresh inspection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_containers_cost_a_list_and_a_bounded_share_of_inspections_per_poll() {
    let idle = crate::support::stack::start_containers(10).await;
    let health = TestContainer::start(
        ContainerOptions::new()
            .name_hint("scale-health")
            .health_cmd("test -f /tmp/healthy"),
    )
    .await;
    // Exits 3 when told to (a file), then the restart policy starts it again (which removes it).
    let crash = TestContainer::start(
        ContainerOptions::new()
            .name_hint("scale-crash")
            .cmd(&[
                "/bin/sh",
                "-c",
                "rm -f /tmp/die; while [ ! -f /tmp/die ]; do sleep 0.2; done; exit 3",
            ])
            .restart_policy(RestartPolicyNameEnum::ON_FAILURE, 5),
    )
    .await;
    let mut names: Vec<&str> = idle.iter().map(TestContainer::name).collect();
    names.extend([health.name(), crash.name()]);
    let mut env = names_only();
    env.push((
        "HARVEN_WATCHDOG__DOCKER__CONTAINERS".to_owned(),
        names.join(","),
    ));
    let config = Config::load_with_env(&[], env).expect("test configuration");
    let wanted = harven_watchdog::runbook::Runbook::embedded().wanted();
    let mut probe = DockerProbe::with_wanted(config.docker, wanted);

    poll_until(
        &mut probe,
        "healthy",
        |_| {},
        |o| text(o, "docker.health", health.name()) == Some("healthy"),
    )
    .await;
    // Steady polls: nothing changes, so at most the reconcile's share (4 of 12) is inspected again,
    // plus the health container if its checks' events name it.
    for _ in 0..5 {
        let (lists, inspects) = (requests(&probe, "list"), requests(&probe, "inspect"));
        let out = poll(&mut probe).await;
        assert_eq!(
            requests(&probe, "list") - lists,
            1,
            "one list call per poll"
        );
        let inspected = requests(&probe, "inspect") - inspects;
        assert!(
            inspected <= 5,
            "{inspected} inspections in a steady poll of 12"
        );
        for name in &names {
            assert_eq!(boolean(&out, "docker.running", name), Some(true), "{name}");
            assert_eq!(number(&out, "docker.restarts", name), Some(0.0), "{name}");
            assert_eq!(
                boolean(&out, "docker.env_present", name),
                Some(name.contains("stack")),
                "{name}: JWT_SECRET presence is kept between inspections"
            );
            assert!(
                outcome(&out, "docker.memory_bytes", name, &[]).is_none(),
                "{name}: the runbook reads no memory of it"
            );
        }
    }
    assert_eq!(requests(&probe, "stats"), 0, "no memory the runbook reads");
    assert_eq!(requests(&probe, "logs"), 0, "no logs the runbook reads");

    let inspects = requests(&probe, "inspect");
    health.set_healthy(false).await;
    poll_until(
        &mut probe,
        "unhealthy",
        |_| {},
        |o| text(o, "docker.health", health.name()) == Some("unhealthy"),
    )
    .await;
    assert!(requests(&probe, "inspect") > inspects);

    let exec = crash.exec(&["touch", "/tmp/die"]).await;
    assert_eq!(exec.exit_code, Some(0), "{}", exec.output);
    let out = poll_until(
        &mut probe,
        "the restart counted, with Docker's restart count",
        |_| {},
        |o| {
            number(o, "docker.restart_count", crash.name()) == Some(1.0)
                && boolean(o, "docker.running", crash.name()) == Some(true)
        },
    )
    .await;
    assert_eq!(number(&out, "docker.exit_code", crash.name()), Some(0.0));
    for _ in 0..3 {
        tokio::time::sleep(POLL_EVERY).await;
        let out = poll(&mut probe).await;
        assert_eq!(
            number(&out, "docker.restarts", crash.name()),
            Some(1.0),
            "the restart counted exactly once, and held"
        );
    }
}
