use std::collections::HashMap;

use super::*;
use crate::observe::{Failure, FailureKind, Key};
use crate::probe::docker::fixtures::{S, config, default_config, found, snap, t, watched};
use crate::probe::docker::inspect::{Found, Seen, Snapshot};
use crate::probe::docker::logs::LogWindow;
use crate::probe::docker::reconcile::Watched;
use crate::probe::docker::{COMPOSE_PROJECT_LABEL, COMPOSE_SERVICE_LABEL, DockerProbe};

/// One poll of `containers` (each with what its look found) at `now`, with the roles'
/// observations folded from theirs, as [`DockerProbe::poll`] does.
fn poll_roles(
    probe: &mut DockerProbe,
    now: i64,
    containers: Vec<(Watched, Seen)>,
) -> Vec<Observation> {
    let (mut out, mut spans, mut all) = (Vec::new(), Vec::new(), Vec::new());
    let mut events = HashMap::new();
    for (w, seen) in containers {
        let start = out.len();
        probe.apply(t(now), &w, seen, &mut events, &mut out);
        spans.push(start..out.len());
        all.push(w);
    }
    let by_role = probe.role_observations(t(now), &all, &spans, &out);
    out.extend(by_role);
    out
}

/// The outcome of `name{role, extra…}`.
fn of_role(out: &[Observation], name: &str, role: &str, extra: &[(&str, &str)]) -> Outcome {
    let mut key = Key::new(crate::observe::intern(name).expect(name)).with("role", role);
    for (k, v) in extra {
        key = key.with(k, *v);
    }
    out.iter()
        .find(|o| o.key == key)
        .unwrap_or_else(|| panic!("{key} not observed in {out:?}"))
        .outcome
        .clone()
}

/// A replica's look: its inspection, memory in use and counted log lines (`(pattern, n)`).
fn replica(snap: Snapshot, memory: u64, lines: &[(&str, u64)]) -> Seen {
    let patterns = &default_config().log_patterns;
    let counts = patterns
        .iter()
        .map(|p| lines.iter().find(|(n, _)| *n == p.name).map_or(0, |l| l.1))
        .collect();
    Seen::Found(Box::new(Found {
        snap,
        memory: Some(Ok(Some(memory))),
        logs: Some(Ok(LogWindow {
            counts,
            newest: 0,
            lines: lines.iter().map(|l| l.1).sum(),
            capped: false,
        })),
        run_oom: None,
    }))
}

fn backend_role(probe: &DockerProbe) -> usize {
    probe
        .config
        .roles
        .iter()
        .position(|r| r.name == "backend")
        .expect("a backend role")
}

#[test]
fn a_role_folds_its_replicas_and_names_the_one_to_look_at() {
    let mut probe = DockerProbe::new(default_config());
    let r = backend_role(&probe);
    let names = ["proj-backend-1", "proj-backend-2", "proj-backend-3"];
    let limited = |id: &str, restarts: i64| Snapshot {
        memory_limit: Some(1000),
        ..snap(id, restarts, 100)
    };
    let first: Vec<_> = names
        .iter()
        .map(|n| (watched(n, &[r]), replica(limited(n, 0), 400, &[])))
        .collect();
    let out = poll_roles(&mut probe, 5_000, first);
    assert_eq!(
        of_role(&out, "docker.role_containers", "backend", &[]),
        Outcome::number(3.0)
    );
    assert_eq!(
        of_role(&out, "docker.running", "backend", &[]),
        Outcome::Value(Value::Bool(true))
    );
    assert_eq!(
        of_role(&out, "docker.worst_replica", "backend", &[]),
        Outcome::Value(Value::Text("proj-backend-1".into())),
        "none is worse: the first by name"
    );

    // Replica 2 is OOM-killed and restarted by its policy; 3 logs errors and 429s; 1 is fine.
    let mut oom = limited("proj-backend-2", 1);
    oom.oom_killed = true;
    oom.running = false;
    oom.exit_code = Some(137);
    oom.health = "unhealthy";
    let mut unset = limited("proj-backend-3", 0);
    unset.env_present = vec![false];
    let second = vec![
        (
            watched(names[0], &[r]),
            replica(limited(names[0], 0), 300, &[("error", 1)]),
        ),
        (watched(names[1], &[r]), replica(oom, 950, &[])),
        (
            watched(names[2], &[r]),
            replica(unset, 500, &[("error", 4), ("429", 3)]),
        ),
    ];
    let out = poll_roles(&mut probe, 5_015, second);
    let role = |name: &str, extra: &[(&str, &str)]| of_role(&out, name, "backend", extra);
    let yes = |b| Outcome::Value(Value::Bool(b));
    assert_eq!(role("docker.running", &[]), yes(false));
    assert_eq!(role("docker.oom_killed", &[]), yes(true));
    assert_eq!(
        role("docker.health", &[]),
        Outcome::Value(Value::Text("unhealthy".into()))
    );
    assert_eq!(role("docker.restarts", &[]), Outcome::number(1.0));
    assert_eq!(role("docker.restart_count", &[]), Outcome::number(1.0));
    assert_eq!(role("docker.exit_code", &[]), Outcome::number(137.0));
    assert_eq!(
        role("docker.log_lines_per_minute", &[("pattern", "error")]),
        Outcome::number(2.5),
        "5 lines over the 2 min window"
    );
    assert_eq!(
        role("docker.log_lines_per_minute", &[("pattern", "429")]),
        Outcome::number(1.5)
    );
    assert_eq!(
        role("docker.env_present", &[("var", "JWT_SECRET")]),
        yes(false)
    );
    assert_eq!(role("docker.memory_ratio", &[]), Outcome::number(0.95));
    assert_eq!(role("docker.memory_bytes", &[]), Outcome::number(950.0));
    assert_eq!(
        role("docker.memory_limit_bytes", &[]),
        Outcome::number(1000.0)
    );
    assert!(
        matches!(role("docker.uptime_seconds", &[]), Outcome::Value(Value::Number(n)) if n == 4_915.0),
        "the youngest running replica's: {:?}",
        role("docker.uptime_seconds", &[])
    );
    assert_eq!(
        role("docker.worst_replica", &[]),
        Outcome::Value(Value::Text("proj-backend-2".into()))
    );
    assert_eq!(
            role("docker.replicas", &[]),
            Outcome::Value(Value::Text(
                "proj-backend-2: not running (exit 137), OOM-killed, unhealthy, 1 restart lately, memory at 95% of its limit; \
                 proj-backend-3: JWT_SECRET missing, log lines per minute 429 1.5, error 2; \
                 proj-backend-1: log lines per minute error 0.5"
                    .into()
            ))
        );
    // The replicas keep their own observations.
    assert!(out.iter().any(|o| o.key
        == Key::new("docker.oom_killed").with("container", "proj-backend-2")
        && o.outcome == yes(true)));
}

#[test]
fn an_unreadable_replica_leaves_sums_unknown_but_not_a_decisive_value() {
    let mut probe = DockerProbe::new(default_config());
    let r = backend_role(&probe);
    let mut oom = snap("b1", 0, 100);
    oom.oom_killed = true;
    let failed = Failure::new(FailureKind::Timeout, "inspect: no answer");
    let out = poll_roles(
        &mut probe,
        5_000,
        vec![
            (watched("b1", &[r]), replica(oom, 10, &[])),
            (watched("b2", &[r]), Seen::Failed(failed)),
        ],
    );
    assert_eq!(
        of_role(&out, "docker.oom_killed", "backend", &[]),
        Outcome::Value(Value::Bool(true))
    );
    match of_role(&out, "docker.restarts", "backend", &[]) {
        Outcome::Unknown(f) => assert_eq!(f.detail, "b2: inspect: no answer"),
        other => panic!("{other:?}"),
    }
    match of_role(&out, "docker.replicas", "backend", &[]) {
        Outcome::Value(Value::Text(t)) => assert!(
            t.starts_with("b1: OOM-killed; b2: not read (timeout"),
            "{t}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_role_that_matches_nothing_says_what_it_looks_for() {
    let mut probe = DockerProbe::new(default_config());
    let out = poll_roles(&mut probe, 1_000, Vec::new());
    for role in ["backend", "redis"] {
        assert_eq!(
            of_role(&out, "docker.role_containers", role, &[]),
            Outcome::number(0.0)
        );
    }
    let why = "no container matches role backend (names harven-backend; compose service backend)";
    for name in [
        "docker.running",
        "docker.oom_killed",
        "docker.image",
        "docker.replicas",
        "docker.worst_replica",
    ] {
        assert_eq!(
            english(of_role(&out, name, "backend", &[])),
            Some(why.to_owned()),
            "{name}"
        );
    }
    assert_eq!(
        english(of_role(
            &out,
            "docker.log_lines_per_minute",
            "backend",
            &[("pattern", "error")]
        )),
        Some(why.to_owned())
    );
}

/// The English words of a no-data outcome's reason.
fn english(o: Outcome) -> Option<String> {
    match o {
        Outcome::NoData(why) => Some(why.to_string()),
        _ => None,
    }
}

#[test]
fn a_roles_image_is_its_newest_replicas_and_a_change_is_a_deploy() {
    let mut probe = DockerProbe::new(config(&[("HARVEN_WATCHDOG__DOCKER__DEPLOY_WINDOW", "10m")]));
    let r = backend_role(&probe);
    let old = |id: &str| Snapshot {
        created_at: Some(100 * S),
        ..snap(id, 0, 100)
    };
    let both = |a: Snapshot, b: Snapshot| {
        vec![
            (watched("shop-backend-1", &[r]), found(a)),
            (watched("shop-backend-2", &[r]), found(b)),
        ]
    };
    let out = poll_roles(&mut probe, 5_000, both(old("c1"), old("c2")));
    let text = |out: &[Observation], name: &str| of_role(out, name, "backend", &[]);
    assert_eq!(
        text(&out, "docker.image"),
        Outcome::Value(Value::Text("app:1 (sha256:aaaa)".into()))
    );
    assert!(matches!(
        text(&out, "docker.previous_image"),
        Outcome::NoData(_)
    ));
    assert_eq!(
        text(&out, "docker.recent_deploy"),
        Outcome::Value(Value::Bool(false))
    );

    // Replica 2 is replaced by a new container of a new image: the role runs it now.
    let new = Snapshot {
        image_id: "sha256:bbbb".into(),
        image_label: "app:2 (sha256:bbbb)".into(),
        created_at: Some(5_010 * S),
        ..snap("c3", 0, 5_010)
    };
    let out = poll_roles(&mut probe, 5_015, both(old("c1"), new.clone()));
    assert_eq!(
        text(&out, "docker.image"),
        Outcome::Value(Value::Text("app:2 (sha256:bbbb)".into()))
    );
    assert_eq!(
        text(&out, "docker.previous_image"),
        Outcome::Value(Value::Text("app:1 (sha256:aaaa)".into()))
    );
    assert_eq!(
        text(&out, "docker.recent_deploy"),
        Outcome::Value(Value::Bool(true))
    );
    match text(&out, "docker.replicas") {
        Outcome::Value(Value::Text(t)) => {
            assert_eq!(
                t,
                "shop-backend-1: image app:1 (sha256:aaaa); shop-backend-2: recently deployed"
            );
        }
        other => panic!("{other:?}"),
    }
    // Ten minutes on, the change is history: still the previous image, no longer recent.
    let out = poll_roles(&mut probe, 5_700, both(old("c1"), new));
    assert_eq!(
        text(&out, "docker.recent_deploy"),
        Outcome::Value(Value::Bool(false))
    );
    assert_eq!(
        text(&out, "docker.previous_image"),
        Outcome::Value(Value::Text("app:1 (sha256:aaaa)".into()))
    );
}

#[test]
fn roles_match_names_whole_name_patterns_and_compose_services() {
    let cfg = config(&[
        (
            "HARVEN_WATCHDOG__DOCKER__ROLES__WORKER__PATTERNS",
            r"worker-\d+",
        ),
        (
            "HARVEN_WATCHDOG__DOCKER__ROLES__WORKER__COMPOSE_SERVICE",
            "worker",
        ),
        (
            "HARVEN_WATCHDOG__DOCKER__ROLES__WORKER__COMPOSE_PROJECT",
            "shop",
        ),
    ]);
    let role = |n: &str| cfg.roles.iter().find(|r| r.name == n).expect(n);
    let labels = |project: &str, service: &str| {
        HashMap::from([
            (COMPOSE_PROJECT_LABEL.to_owned(), project.to_owned()),
            (COMPOSE_SERVICE_LABEL.to_owned(), service.to_owned()),
        ])
    };
    let matches = |r: &str, name: &str, l: Option<&HashMap<String, String>>| {
        super::matches(role(r), std::iter::once(name), l)
    };
    let v2 = labels("shop", "backend");
    assert!(matches("backend", "harven-backend", None), "the exact name");
    assert!(
        matches("backend", "shop-backend-1", Some(&v2)),
        "Compose v2"
    );
    assert!(
        matches("backend", "shop_backend_1", Some(&v2)),
        "Compose v1"
    );
    assert!(
        matches("backend", "anything", Some(&labels("other", "backend"))),
        "any project"
    );
    assert!(
        !matches("backend", "harven-backend-2", None),
        "names are exact"
    );
    assert!(!matches(
        "backend",
        "shop-redis-1",
        Some(&labels("shop", "redis"))
    ));
    assert!(matches("worker", "worker-12", None));
    assert!(
        !matches("worker", "old-worker-12", None),
        "a pattern matches the whole name"
    );
    assert!(matches("worker", "w", Some(&labels("shop", "worker"))));
    assert!(
        !matches("worker", "w", Some(&labels("other", "worker"))),
        "another project"
    );
}
