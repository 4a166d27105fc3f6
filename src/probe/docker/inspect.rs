//! One container's look at a poll: its inspection ([`Snapshot`], the parts of an inspect answer the
//! probe uses, built so that the answer, which holds every environment value, is dropped at once), and
//! beside it the reads the poll asks for: memory in use, new log lines, the last run's OOM events
//! ([`look`]).
//!
//! It does not know what the previous polls saw (`container` folds what a look found into that) or
//! why a read is asked for (the runbook's wants are decided in `mod.rs`).

use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as EngineError;
use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum, HealthStatusEnum};
use bollard::query_parameters::InspectContainerOptions;

use super::Reads;
use super::errors::{engine_failure, timeout_failure};
use super::events::last_run_oom;
use super::logs::{LogWindow, read_logs};
use super::memory::memory_in_use;
use super::requests::EngineRequests;
use super::time::{Nanos, parse_time};
use crate::clock::Timestamp;
use crate::config::DockerConfig;
use crate::observe::Failure;
use crate::probe::truncate;

/// What one inspection found.
pub(super) enum Seen {
    /// The Engine has no container by that name.
    Missing,
    /// The inspection failed (timeout, Engine error).
    Failed(Failure),
    /// The container and what the poll read beside it (boxed: it is much larger than the others).
    Found(Box<Found>),
}

/// A container the Engine has: its inspection (fresh or the cached one) and the reads beside it.
pub(super) struct Found {
    /// The inspection, fresh or the one cached from an earlier poll.
    pub(super) snap: Snapshot,
    /// `None` when not asked (not running); `Ok(None)` when the Engine had no usage figure.
    pub(super) memory: Option<Result<Option<u64>, Failure>>,
    /// `None` on first sight (counting starts now).
    pub(super) logs: Option<Result<LogWindow, Failure>>,
    /// For a container ID first seen not running: the newest `oom` event of its last run.
    pub(super) run_oom: Option<Nanos>,
}

/// The parts of an inspect answer the probe uses. Built so that the answer, which holds every
/// environment value, is dropped right away.
#[derive(Debug, Clone)]
pub(super) struct Snapshot {
    /// The container ID: another ID under the same name is a recreated container.
    pub(super) id: String,
    /// Running and not restarting or paused (Docker reports `Running` during a restart backoff).
    pub(super) running: bool,
    /// Between a restart-policy decision (already in `restart_count`) and the start it leads to.
    pub(super) restarting: bool,
    /// The healthcheck's word: `healthy`, `unhealthy`, `starting`, or `none` without one.
    pub(super) health: &'static str,
    /// The last run's exit code, as Docker reports it (0 for a container that has not exited).
    pub(super) exit_code: Option<i64>,
    /// Docker's count of restart-policy restarts of this ID: 0 again on a recreated container or
    /// after a manual restart, and it moves before the restart happens (`restarting`).
    pub(super) restart_count: i64,
    /// Docker's flag that the last run was OOM-killed (not always set: see the `oom` events).
    pub(super) oom_killed: bool,
    /// When the current (or last) run started; `None` for Docker's "never".
    pub(super) started_at: Option<Nanos>,
    /// When the container was created: a recent one is a deploy.
    pub(super) created_at: Option<Nanos>,
    /// The image's full ID: another one under the same name is a deploy.
    pub(super) image_id: String,
    /// The image as configured and its short ID: `harven/backend:1.4 (sha256:0123456789ab)`.
    pub(super) image_label: String,
    /// `HostConfig.Memory` as Docker reports it (0: no limit; see [`Snapshot::limit`]).
    pub(super) memory_limit: Option<i64>,
    /// Presence of each configured variable, in `env_vars` order.
    pub(super) env_present: Vec<bool>,
}

impl Snapshot {
    /// The memory limit, if the container has one (Docker reports 0 for none).
    pub(super) fn limit(&self) -> Option<i64> {
        self.memory_limit.filter(|l| *l > 0)
    }

    /// The parts of `inspect` the probe uses; it takes the answer by value and drops it, and with
    /// it every environment value, before returning.
    fn of(inspect: ContainerInspectResponse, env_vars: &[String]) -> Self {
        let state = inspect.state.unwrap_or_default();
        let config = inspect.config.unwrap_or_default();
        let env = config.env.unwrap_or_default();
        // Only `KEY=` with a non-empty value counts; the value itself is never copied.
        let env_present = env_vars
            .iter()
            .map(|var| {
                env.iter().any(|e| {
                    e.split_once('=')
                        .is_some_and(|(k, v)| k == var && !v.is_empty())
                })
            })
            .collect();
        drop(env);
        let image_id = inspect.image.unwrap_or_default();
        let short_id = short_image_id(&image_id);
        let image_label = match (config.image.filter(|i| !i.is_empty()), short_id) {
            // Created from an image ID (full or short): the ID alone says it.
            (Some(name), Some(id)) if names_image_id(&name, &image_id) => id,
            (Some(name), Some(id)) => format!("{name} ({id})"),
            (Some(name), None) => name,
            (None, Some(id)) => id,
            (None, None) => "unknown".to_owned(),
        };
        let health = match state.health.and_then(|h| h.status) {
            Some(HealthStatusEnum::HEALTHY) => "healthy",
            Some(HealthStatusEnum::UNHEALTHY) => "unhealthy",
            Some(HealthStatusEnum::STARTING) => "starting",
            Some(HealthStatusEnum::NONE | HealthStatusEnum::EMPTY) | None => "none",
        };
        let restarting = state.restarting.unwrap_or(false);
        // `Status` is the Engine's one word for the state; only an Engine that leaves it out is
        // read from the `Running`, `Restarting` and `Paused` flags, which can all be true at once.
        let running = match state.status {
            Some(ContainerStateStatusEnum::RUNNING) => true,
            Some(ContainerStateStatusEnum::EMPTY) | None => {
                state.running.unwrap_or(false) && !restarting && !state.paused.unwrap_or(false)
            }
            Some(_) => false,
        };
        Self {
            id: inspect.id.unwrap_or_default(),
            running,
            restarting,
            health,
            exit_code: state.exit_code,
            restart_count: inspect.restart_count.unwrap_or(0),
            oom_killed: state.oom_killed.unwrap_or(false),
            started_at: state.started_at.as_deref().and_then(parse_time),
            created_at: inspect.created.as_deref().and_then(parse_time),
            image_id,
            image_label,
            memory_limit: inspect.host_config.and_then(|h| h.memory),
            env_present,
        }
    }
}

/// True when the image reference `name` is the image ID `id` itself, or a prefix of its hex.
fn names_image_id(name: &str, id: &str) -> bool {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    let name = name.strip_prefix("sha256:").unwrap_or(name);
    name.len() >= 12 && hex.starts_with(name)
}

/// `sha256:0123456789ab` from a full image ID.
fn short_image_id(id: &str) -> Option<String> {
    let (algo, hex) = id.split_once(':').unwrap_or(("sha256", id));
    // By characters: the ID is the Engine's text, and a byte slice could split a character.
    (!hex.is_empty()).then(|| format!("{algo}:{}", truncate(hex, 12)))
}

/// One container this poll: inspects it unless `cached` holds an inspection still good (or the list
/// had no such container), then reads what `reads` asks for.
#[allow(clippy::too_many_arguments)]
pub(super) async fn look(
    docker: &Docker,
    name: &str,
    listed: bool,
    cached: Option<Snapshot>,
    known: Option<(&str, Nanos)>,
    reads: Reads,
    now: Timestamp,
    config: &DockerConfig,
    limit: Duration,
    requests: &EngineRequests,
) -> Seen {
    if !listed {
        return Seen::Missing;
    }
    let (known_id, log_cursor) = known.unzip();
    let inspected = cached.is_none();
    let snap = match cached {
        Some(snap) => snap,
        None => {
            requests.count("inspect");
            let inspect = docker.inspect_container(name, None::<InspectContainerOptions>);
            match tokio::time::timeout(limit, inspect).await {
                Err(_) => return Seen::Failed(timeout_failure("inspect", limit)),
                Ok(Err(EngineError::DockerResponseServerError {
                    status_code: 404, ..
                })) => return Seen::Missing,
                Ok(Err(e)) => return Seen::Failed(engine_failure(&e)),
                Ok(Ok(i)) => Snapshot::of(i, &config.env_vars),
            }
        }
    };
    let memory = async {
        if snap.running && reads.memory {
            Some(memory_in_use(docker, &snap.id, limit, requests).await)
        } else {
            None
        }
    };
    let logs = async {
        match log_cursor.filter(|_| reads.logs) {
            Some(cursor) => {
                Some(read_logs(docker, &snap.id, cursor, config, limit, requests).await)
            }
            None => None,
        }
    };
    // The OOM flag can lose a race with the exit (Engine 20.10), so an ID first met already stopped
    // without it has its last run's `oom` events looked up. Only then: an ID already known had its
    // run watched by the event task, which records `oom` events as they come.
    let run_oom = async {
        match snap.started_at {
            Some(start)
                if inspected
                    && known_id != Some(snap.id.as_str())
                    && !snap.running
                    && !snap.oom_killed =>
            {
                last_run_oom(docker, &snap.id, start, now, limit, requests).await
            }
            _ => None,
        }
    };
    let (memory, logs, run_oom) = futures_util::future::join3(memory, logs, run_oom).await;
    Seen::Found(Box::new(Found {
        snap,
        memory,
        logs,
        run_oom,
    }))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use bollard::models::{ContainerConfig, ContainerState};
    use proptest::prelude::*;

    use super::*;
    use crate::observe::{Outcome, Value};
    use crate::probe::docker::DockerProbe;
    use crate::probe::docker::fixtures::{config, default_config, found, poll};

    #[test]
    fn env_presence_keeps_no_value_and_an_empty_value_is_missing() {
        let inspect = ContainerInspectResponse {
            id: Some("c1".into()),
            state: Some(ContainerState::default()),
            config: Some(ContainerConfig {
                env: Some(vec![
                    "JWT_SECRET=s3cr3t-value".into(),
                    "EMPTY=".into(),
                    "JWT_SECRET_FILE=/run/x".into(),
                ]),
                ..ContainerConfig::default()
            }),
            ..ContainerInspectResponse::default()
        };
        let vars = ["JWT_SECRET", "EMPTY", "JWT"].map(String::from);
        let s = Snapshot::of(inspect, &vars);
        assert_eq!(s.env_present, vec![true, false, false]);
        let mut probe = DockerProbe::new(config(&[(
            "HARVEN_WATCHDOG__DOCKER__ENV_VARS",
            "JWT_SECRET,EMPTY,JWT",
        )]));
        let out = poll(&mut probe, 100, found(s), vec![]);
        let text = format!("{out:?} {}", serde_json::to_string(&out).expect("json"));
        assert!(!text.contains("s3cr3t"), "{text}");
    }

    #[test]
    fn image_labels_name_the_image_and_its_short_id() {
        assert_eq!(
            short_image_id("sha256:0123456789abcdef").as_deref(),
            Some("sha256:0123456789ab")
        );
        assert_eq!(short_image_id(""), None);
        let id = "sha256:0123456789abcdef0123";
        assert!(names_image_id("0123456789ab", id));
        assert!(names_image_id(id, id));
        assert!(!names_image_id("harven/backend:1.4", id));
        let label = |image: &str| {
            let inspect = ContainerInspectResponse {
                image: Some(id.into()),
                config: Some(ContainerConfig {
                    image: Some(image.into()),
                    ..ContainerConfig::default()
                }),
                ..ContainerInspectResponse::default()
            };
            Snapshot::of(inspect, &[]).image_label
        };
        assert_eq!(
            label("harven/backend:1.4"),
            "harven/backend:1.4 (sha256:0123456789ab)"
        );
        assert_eq!(label("0123456789abcdef"), "sha256:0123456789ab");
    }

    #[test]
    fn an_image_id_that_is_not_hex_is_cut_between_characters() {
        assert_eq!(
            short_image_id("sha256:aé😀aé😀aé😀aé😀").as_deref(),
            Some("sha256:aé😀aé😀aé😀aé😀")
        );
        assert_eq!(
            short_image_id("sha256:0123456789abcdef").as_deref(),
            Some("sha256:0123456789ab")
        );
    }

    /// A real `docker inspect` answer (the backend, abridged), the base of near-valid answers.
    const REAL_INSPECT: &str = r#"{"Id":"4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b","Created":"2026-11-24T20:00:00.123456789Z","State":{"Status":"running","Running":true,"Paused":false,"Restarting":false,"OOMKilled":false,"Dead":false,"Pid":1234,"ExitCode":0,"Error":"","StartedAt":"2026-11-24T20:00:01.5Z","FinishedAt":"0001-01-01T00:00:00Z","Health":{"Status":"healthy","FailingStreak":0,"Log":[]}},"Image":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","Name":"/harven-backend","RestartCount":3,"HostConfig":{"Memory":536870912},"Config":{"Image":"harven/backend:1.4","Env":["JWT_SECRET=x","PATH=/bin"]}}"#;

    /// Polls of one container seeing `answers` in turn (an answer that is not an inspection reads as
    /// the container missing), using `memory` bytes: every number observed is finite.
    fn inspections_are_sound(answers: &[Vec<u8>], memory: u64) -> Result<(), TestCaseError> {
        let cfg = default_config();
        let env_vars = cfg.env_vars.clone();
        let mut probe = DockerProbe::new(cfg);
        for (i, body) in answers.iter().enumerate() {
            let seen = match serde_json::from_slice::<ContainerInspectResponse>(body) {
                Ok(inspect) => Seen::Found(Box::new(Found {
                    snap: Snapshot::of(inspect, &env_vars),
                    memory: Some(Ok(Some(memory))),
                    logs: None,
                    run_oom: None,
                })),
                Err(_) => Seen::Missing,
            };
            let now = 1_795_000_000 + 15 * i64::try_from(i).expect("few polls");
            for o in poll(&mut probe, now, seen, vec![]) {
                if let Outcome::Value(Value::Number(n)) = o.outcome {
                    prop_assert!(n.is_finite(), "{o:?}");
                }
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(crate::mutate::cases(256))]

        #[test]
        fn prop_near_valid_inspections_are_observed(
            answers in prop::collection::vec(crate::mutate::near(REAL_INSPECT), 1..4),
            memory in any::<u64>(),
        ) {
            inspections_are_sound(&answers, memory)?;
        }

        #[test]
        fn prop_any_restart_counts_and_ids_are_observed(
            polls in prop::collection::vec(
                (prop::sample::select(vec!["c1", "c2", "aé😀", ""]), any::<i64>(), any::<i64>()),
                1..5,
            ),
        ) {
            let answers: Vec<Vec<u8>> = polls
                .iter()
                .map(|(id, count, started)| {
                    serde_json::json!({
                        "Id": id,
                        "Image": format!("sha256:{id}{id}{id}{id}"),
                        "RestartCount": count,
                        "State": {"Status": "running", "StartedAt": humantime::format_rfc3339(
                            UNIX_EPOCH + Duration::from_secs(started.unsigned_abs() % 253_402_300_799))
                            .to_string()},
                        "Config": {"Image": id},
                    })
                    .to_string()
                    .into_bytes()
                })
                .collect();
            inspections_are_sound(&answers, 1 << 20)?;
        }
    }
}
