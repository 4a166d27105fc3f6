//! Test fixtures of the Docker probe's modules: configurations, inspections (`snap`), looks
//! (`found`), one container's poll (`poll`) and readers of its observations.
//!
//! Test builds only; it knows the probe's types, never the Engine.

use std::collections::HashMap;

use super::DockerProbe;
use super::events::Pending;
use super::inspect::{Found, Seen, Snapshot};
use super::reconcile::Watched;
use super::time::{NANOS_PER_SEC, Nanos};
use crate::clock::Timestamp;
use crate::config::DockerConfig;
use crate::observe::{Observation, Outcome, Value};

pub(super) const S: Nanos = NANOS_PER_SEC;

pub(super) fn config(env: &[(&str, &str)]) -> DockerConfig {
    let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
    crate::config::Config::load_with_env(&[], env)
        .expect("config")
        .docker
}

pub(super) fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix_millis(secs * 1000)
}

/// A running container `id`, started at `started` (Unix seconds), with Docker's restart count.
pub(super) fn snap(id: &str, restart_count: i64, started: i64) -> Snapshot {
    Snapshot {
        id: id.to_owned(),
        running: true,
        restarting: false,
        health: "healthy",
        exit_code: Some(0),
        restart_count,
        oom_killed: false,
        started_at: Some(Nanos::from(started) * S),
        created_at: Some(Nanos::from(1_000) * S),
        image_id: "sha256:aaaa".to_owned(),
        image_label: "app:1 (sha256:aaaa)".to_owned(),
        memory_limit: None,
        env_present: vec![true],
    }
}

pub(super) fn found(snap: Snapshot) -> Seen {
    Seen::Found(Box::new(Found {
        snap,
        memory: None,
        logs: None,
        run_oom: None,
    }))
}

pub(super) fn value(out: &[Observation], name: &str) -> Outcome {
    out.iter()
        .find(|o| o.key.name == name)
        .unwrap_or_else(|| panic!("{name} not observed in {out:?}"))
        .outcome
        .clone()
}

pub(super) fn number(out: &[Observation], name: &str) -> f64 {
    match value(out, name) {
        Outcome::Value(Value::Number(n)) => n,
        other => panic!("{name}: {other:?}"),
    }
}

pub(super) fn boolean(out: &[Observation], name: &str) -> bool {
    match value(out, name) {
        Outcome::Value(Value::Bool(b)) => b,
        other => panic!("{name}: {other:?}"),
    }
}

/// One poll of container `app` at `now` with `events` pending.
pub(super) fn poll(
    probe: &mut DockerProbe,
    now: i64,
    seen: Seen,
    events: Vec<(&str, Pending)>,
) -> Vec<Observation> {
    let mut events: HashMap<String, Pending> = events
        .into_iter()
        .map(|(id, p)| (id.to_owned(), p))
        .collect();
    let mut out = Vec::new();
    probe.apply(t(now), &watched("app", &[]), seen, &mut events, &mut out);
    out
}

/// A configured container `name` in `roles` (indices into the configuration's roles).
pub(super) fn watched(name: &str, roles: &[usize]) -> Watched {
    Watched {
        name: name.to_owned(),
        configured: true,
        listed: None,
        roles: roles.to_vec(),
    }
}

pub(super) fn starts(times: &[Nanos]) -> Pending {
    Pending {
        starts: times.to_vec(),
        ..Pending::default()
    }
}

/// The default configuration, loaded once: compiling its log patterns per case would be most of
/// a property's time.
pub(super) fn default_config() -> DockerConfig {
    static CONFIG: std::sync::LazyLock<DockerConfig> = std::sync::LazyLock::new(|| config(&[]));
    CONFIG.clone()
}
