//! The Docker probe: the watched containers' state, memory, deploys, secrets' presence and log lines,
//! read from the Docker Engine API (bollard, over the unix socket or TCP).
//!
//! # Layout
//!
//! In the order a poll runs:
//!
//! - this file: [`DockerProbe`], its [`Probe`] implementation (one poll: connect, list, look at each
//!   container, fold, aggregate the roles), what the runbook reads of each container ([`Wanted`]), and
//!   the client's connection;
//! - `reconcile`: the one list call (which containers are watched, and their roles) and which of them
//!   this poll inspects;
//! - `inspect`: one container's look: its inspection, and the memory, log and OOM reads beside it;
//! - `container`: what the probe remembers of each container between polls, and the
//!   `docker.*{container}` observations it folds from a look;
//! - `roles`: the `docker.*{role}` observations, folded over each role's replicas;
//! - `events`: the background task that follows the Engine's event stream, and its inbox;
//! - `memory` (the stats read and the growth trend), `logs` (new log lines counted per pattern),
//!   `errors` (an Engine call under its limit, and its errors as failures), `requests` (the
//!   `harven_watchdog_docker_api_requests_total` metric), `time` (the Engine's times as nanoseconds).
//!
//! # Events plus a reconcile poll
//!
//! The polls are the source of truth. The watched containers are the configured names plus, with
//! `compose_project`, every container labelled `com.docker.compose.project=<it>`, plus every
//! container of a role (`[docker.roles]`: by name, name pattern or Compose service label; see
//! `docker/roles.rs`), found with one list call per poll, which also gives each one's ID, state,
//! status text (health, exit code, uptime), names and labels (so its roles).
//! A container is inspected again (concurrently, each call under its own timeout) only when:
//!
//! - it is first seen, or its list entry changed: another ID (recreated), another state, another
//!   status text once its duration is cut out (health, exit code), or a shorter uptime (it restarted
//!   since, even if no event said so);
//! - an event named it since its last inspection (a restart that changed nothing in the list);
//! - its last inspection failed;
//! - or the reconcile is at it: each poll also inspects the least recently inspected others,
//!   `max(n / 20, 4)` of them, so every container is inspected at least every 20 polls (5 min at
//!   15 s) and a typical stack at every poll.
//!
//! Between inspections its last one stands (uptime and `recent_deploy` move with the clock). What an
//! inspection alone shows, Docker's restart count and `OOMKilled`, is seen at the next poll when an
//! event or the list tells of the change; with the event stream down, a restart that left the list
//! as it was (a quick restart of a young container) waits for the reconcile.
//!
//! Memory (one-shot stats) and new log lines are read at every poll, but only of the containers
//! whose memory or log counts the runbook's conditions read, by name or through a role they belong
//! to ([`Wanted`], from the runbook at build time); the others' `docker.memory_bytes`,
//! `memory_ratio`, `memory_growth_bytes_per_hour` and `log_lines_per_minute` are not observed. Each role's
//! observations are folded from its containers' at the end of the poll (`roles::observe`). Every
//! Engine request is counted by call (`harven_watchdog_docker_api_requests_total`).
//!
//! Beside the polls, a background task owned by the probe follows the Engine's event stream
//! (`start`, `die`, `oom`, `restart`, `health_status`, filtered server-side) for things the polls
//! alone would get wrong:
//!
//! - **Nothing between two polls is lost.** Inspect shows only the current run: an OOM kill of a
//!   worker process (the container lives on) or of a run the restart policy already replaced leaves
//!   `OOMKilled=false`, and a manual restart resets Docker's restart count to 0. The task records `oom`
//!   and `start` events per container ID; the next poll counts them into `docker.oom_killed` and
//!   `docker.restarts`.
//! - **Engine 20.10's `OOMKilled` flag loses a race** with the exit now and then (a run killed for
//!   memory exits 137 with `OOMKilled=false`); its `oom` events do not. An exited container whose last
//!   run had an `oom` event is reported OOM-killed, and a container first seen exited has the `oom`
//!   events of its last run looked up (a bounded `since`/`until` query of the Engine's event buffer).
//! - **Bad news arrives early.** Each event of a watched container notifies [`Probe::wake`], so the
//!   runner polls within about a second instead of waiting for the interval, and that poll inspects
//!   the container the event named. Events that arrive for a container after the poll listed it and
//!   chose not to inspect it wait in the inbox for the next poll, which does.
//!
//! # Evidence over windows, not per poll
//!
//! What a poll counts depends on how long ago the previous poll was, so nothing is reported per
//! poll: each container keeps what its polls counted in a [`WindowCounts`](super::window::WindowCounts) (bounded, pruned by the
//! watchdog's `now`), and the observations are over stated windows, each saying it in its note:
//!
//! - `docker.restarts`: the restarts within `evidence_window` (10 min by default);
//! - `docker.oom_killed`: true when a poll saw an OOM kill within `evidence_window` (or the last
//!   run ended in one), so an OOM-kill loop holds between its kills;
//! - `docker.log_lines_per_minute{pattern}`: matching lines per minute over `log_rate_window`
//!   (2 min): one line a second reads 60 whatever the interval, a stray line 0.5;
//! - `docker.recent_deploy`: a new container (created, or another ID under the name) or another
//!   image within `deploy_window`. A restart of the same container on the same image is never a
//!   deploy: an OOM-kill or crash loop is restarts, not a bad release.
//!
//! The windows of a name go on when its container is recreated (the name's history is the
//! service's); they are dropped with the name when it leaves the watch list. `check-config` keeps
//! every window at least `interval`.
//!
//! # Bounded answers
//!
//! bollard reads each JSON answer whole (it has no cap on a body), so the probe bounds what it
//! asks for: the list is asked for at most [`MAX_CONTAINERS`] + 1 entries (the Engine's `limit`,
//! newest first), and an Engine holding more fails the poll as `too_large` rather than
//! watching some of them; log reads stop at `log_lines_cap` lines and [`MAX_LOG_BYTES`]. An inspect
//! or stats answer describes one container (its configuration, one memory sample) and is read
//! under the call's timeout; its size is what the container's owner configured.
//!
//! # What is never read, kept or logged
//!
//! The values of environment variables: only whether `KEY=` with a non-empty value is in the
//! container's `Config.Env` is kept, and an inspect answer (which holds every value) is never logged or
//! put in an error. Log lines are matched and dropped, never stored or logged. Failure details use the
//! probe's own words and the Engine's status, never a body the Engine could have echoed (a JSON error
//! of bollard can quote the payload).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::Notify;

use super::Probe;
use crate::clock::Timestamp;
use crate::config::DockerConfig;
use crate::locale::{Msg, MsgId};
use crate::observe::{Failure, FailureKind, Key, Observation, Outcome, Wanted};

mod container;
mod errors;
mod events;
#[cfg(test)]
mod fixtures;
mod inspect;
mod logs;
mod memory;
mod reconcile;
mod requests;
mod roles;
mod time;

pub use logs::MAX_LOG_BYTES;
pub use reconcile::MAX_CONTAINERS;
pub use requests::{CallLabel, EngineRequests};

use container::Tracked;
use errors::{engine_call, engine_failure};
use events::{Inbox, Watch, follow_events, lock};
use inspect::{Seen, look};
use memory::MEMORY_OBSERVATIONS;
use reconcile::Watched;

/// The label Docker Compose puts on every container of a project.
pub const COMPOSE_PROJECT_LABEL: &str = "com.docker.compose.project";

/// The label Docker Compose (v1 and v2) puts on every container of a service, replicas included.
pub const COMPOSE_SERVICE_LABEL: &str = "com.docker.compose.service";

/// Containers inspected at the same time: a cycle over a typical stack is one round, and a large
/// compose project cannot open hundreds of Engine connections at once.
const MAX_CONCURRENT_CONTAINERS: usize = 32;

/// Polls the Docker Engine for the watched containers.
pub struct DockerProbe {
    config: DockerConfig,
    /// The Engine client: `None` until a poll connects, and again after the Engine could not be
    /// reached, so the next poll connects afresh (the socket may have been recreated).
    docker: Option<Docker>,
    /// What the previous polls saw, by container name; containers gone from the watch list are
    /// dropped at the end of each poll, so this is bounded by the watched containers.
    tracked: HashMap<String, Tracked>,
    /// Events recorded by the background task, taken by each poll after its inspections. An event can
    /// land on either side of that take; the restart accounting (a cumulative maximum, and a floor at
    /// the start of the first run seen) counts it once either way.
    inbox: Arc<Mutex<Inbox>>,
    /// Notified on every event of a watched container: the runner polls early.
    wake: Arc<Notify>,
    /// The event task, spawned by the first poll and aborted when the probe is dropped.
    events: Option<tokio::task::AbortHandle>,
    /// What the runbook reads: memory stats and logs are read only for containers it looks at.
    wanted: Wanted,
    /// Requests made to the Engine, by call.
    requests: EngineRequests,
    /// Polls made: the clock of the reconcile (each container's `inspected`).
    polls: u64,
    /// What the previous polls saw of each role (its image), by role name: bounded by the roles.
    role_state: HashMap<String, roles::RoleState>,
    /// Most containers the list may hold ([`MAX_CONTAINERS`] unless a test lowers it).
    max_containers: usize,
}

impl fmt::Debug for DockerProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerProbe")
            .field("host", &self.config.host)
            .field("containers", &self.config.containers)
            .field("compose_project", &self.config.compose_project)
            .field(
                "roles",
                &self
                    .config
                    .roles
                    .iter()
                    .map(|r| &r.name)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Drop for DockerProbe {
    fn drop(&mut self) {
        if let Some(task) = self.events.take() {
            task.abort();
        }
    }
}

impl DockerProbe {
    /// A probe for `config`. Nothing is contacted yet: the first poll connects, so an absent Engine is
    /// a failing source, never a start-up error.
    pub fn new(config: DockerConfig) -> Self {
        Self {
            config,
            docker: None,
            tracked: HashMap::new(),
            inbox: Arc::default(),
            wake: Arc::new(Notify::new()),
            events: None,
            wanted: Wanted::everything(),
            requests: EngineRequests::default(),
            polls: 0,
            role_state: HashMap::new(),
            max_containers: MAX_CONTAINERS,
        }
    }

    /// This probe, failing as `too_large` when the Engine lists more than `max` containers (tests
    /// lower it; [`MAX_CONTAINERS`] suits every host).
    #[must_use]
    pub fn with_max_containers(mut self, max: usize) -> Self {
        self.max_containers = max.max(1);
        self
    }

    /// A probe for `config` that reads memory stats and logs only of the containers `wanted` names
    /// (the runbook's conditions); [`new`](Self::new) reads them for every container.
    pub fn with_wanted(config: DockerConfig, wanted: Wanted) -> Self {
        let mut probe = Self::new(config);
        probe.wanted = wanted;
        probe
    }

    /// Counts this probe's Engine requests in `requests` (the registered family) from now on.
    pub fn count_requests_in(&mut self, requests: EngineRequests) {
        self.requests = requests;
    }

    /// The Engine requests this probe made, by call.
    pub fn requests(&self) -> &EngineRequests {
        &self.requests
    }

    /// What this poll reads of a watched container: its memory stats and logs when the runbook
    /// reads them of the container itself or of a role it belongs to (a role's counts and worst
    /// ratio are its replicas').
    fn reads(&self, w: &Watched) -> Reads {
        let wants = |name: &str| {
            self.wanted.wants(name, "container", &w.name)
                || w.roles
                    .iter()
                    .any(|r| self.wanted.wants(name, "role", &self.config.roles[*r].name))
        };
        Reads {
            memory: MEMORY_OBSERVATIONS.iter().any(|n| wants(n)),
            logs: wants("docker.log_lines_per_minute"),
        }
    }

    /// What the runbook reads of role `r` (its replicas are read for it).
    fn role_reads(&self, r: usize) -> Reads {
        let role = &self.config.roles[r].name;
        Reads {
            memory: MEMORY_OBSERVATIONS
                .iter()
                .any(|n| self.wanted.wants(n, "role", role)),
            logs: self
                .wanted
                .wants("docker.log_lines_per_minute", "role", role),
        }
    }

    /// Bound on each Engine call. A poll makes at most four in sequence (connect, list, inspect,
    /// then stats, logs and an OOM lookup together), so one slow container cannot eat the whole
    /// poll's budget.
    fn call_limit(&self) -> Duration {
        (self.config.timeout / 4).max(Duration::from_millis(100))
    }

    /// Starts the event task unless it runs.
    fn ensure_events_task(&mut self) {
        if self.events.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let watch = Watch {
            names: self.config.containers.iter().cloned().collect(),
            project: self.config.compose_project.clone(),
            roles: self.config.roles.clone(),
        };
        let task = tokio::spawn(follow_events(
            self.config.host.clone(),
            self.config.timeout,
            watch,
            Arc::clone(&self.inbox),
            Arc::clone(&self.wake),
            self.requests.clone(),
        ));
        self.events = Some(task.abort_handle());
    }

    /// The connected client, connecting first when needed (which also proves the Engine answers).
    async fn client(&mut self) -> Result<Docker, Failure> {
        if let Some(d) = &self.docker {
            return Ok(d.clone());
        }
        let docker = connect(&self.config.host, self.config.timeout)?;
        self.requests.count("version");
        let docker = engine_call(self.call_limit(), "version", docker.negotiate_version()).await?;
        tracing::debug!(host = %self.config.host, "connected to the Docker Engine");
        self.docker = Some(docker.clone());
        Ok(docker)
    }
}

/// What one poll reads of one container besides its state.
#[derive(Debug, Clone, Copy)]
struct Reads {
    /// Memory stats (when running): the runbook reads its memory usage.
    memory: bool,
    /// New log lines (after the first sight): the runbook reads its log counts.
    logs: bool,
}

fn no_data(key: Key, why: MsgId) -> Observation {
    Observation::new(key, Outcome::NoData(Msg::new(why)))
}

/// A client for `host` (no request is made). The unix transport checks that the socket exists.
fn connect(host: &str, timeout: Duration) -> Result<Docker, Failure> {
    let secs = timeout.as_secs().max(1);
    let docker = if host.starts_with("unix://") {
        Docker::connect_with_unix(host, secs, bollard::API_DEFAULT_VERSION)
    } else {
        Docker::connect_with_http(host, secs, bollard::API_DEFAULT_VERSION)
    };
    docker.map_err(|e| engine_failure(&e))
}

impl Probe for DockerProbe {
    fn source(&self) -> &str {
        "docker"
    }

    fn interval(&self) -> Duration {
        self.config.interval
    }

    fn timeout(&self) -> Duration {
        // The calls of a poll are bounded by `call_limit` each (at most four in sequence); the margin
        // covers folding the answers.
        self.config.timeout + Duration::from_millis(500)
    }

    fn wake(&self) -> Option<Arc<Notify>> {
        Some(Arc::clone(&self.wake))
    }

    async fn poll(&mut self, now: Timestamp) -> Result<Vec<Observation>, Failure> {
        lock(&self.inbox).horizon = Some(now);
        self.ensure_events_task();
        let docker = match self.client().await {
            Ok(c) => c,
            Err(f) => {
                self.docker = None;
                return Err(f);
            }
        };
        self.polls += 1;
        let watched = match self.list(&docker).await {
            Ok(w) => w,
            Err(f) => {
                self.docker = None;
                return Err(f);
            }
        };
        let named: HashSet<String> = lock(&self.inbox).pending.keys().cloned().collect();
        let inspect = self.to_inspect(&watched, &named);
        let limit = self.call_limit();
        let seen = {
            let config = &self.config;
            let tracked = &self.tracked;
            let requests = &self.requests;
            // Built into a Vec first: a closure inside the stream would make the poll's future
            // fail the `Send` check (a higher-ranked lifetime rustc cannot prove).
            let looks: Vec<_> = watched
                .iter()
                .zip(&inspect)
                .map(|(w, inspect)| {
                    let t = tracked.get(&w.name);
                    let known = t.map(|t| (t.id.as_str(), t.log_cursor));
                    let cached = t.filter(|_| !*inspect).map(|t| t.snap.clone());
                    let reads = self.reads(w);
                    look(
                        &docker,
                        &w.name,
                        w.listed.is_some(),
                        cached,
                        known,
                        reads,
                        now,
                        config,
                        limit,
                        requests,
                    )
                })
                .collect();
            futures_util::stream::iter(looks)
                .buffered(MAX_CONCURRENT_CONTAINERS)
                .collect::<Vec<_>>()
                .await
        };
        // An Engine that stopped answering mid-poll fails the source, not each container.
        if let Some(Seen::Failed(f)) = seen
            .iter()
            .find(|s| matches!(s, Seen::Failed(f) if f.kind == FailureKind::Connect))
        {
            let f = f.clone();
            self.docker = None;
            return Err(f);
        }
        let mut events = {
            let mut inbox = lock(&self.inbox);
            let mut all = std::mem::take(&mut inbox.pending);
            // Events of a container this poll did not inspect came after the list: they wait for
            // the next poll (the runner was woken for it), which inspects it.
            for (w, inspected) in watched.iter().zip(&inspect) {
                if let (Some(l), false) = (&w.listed, inspected)
                    && let Some(p) = all.remove(&l.id)
                {
                    inbox.pending.insert(l.id.clone(), p);
                }
            }
            all
        };
        let mut out = Vec::new();
        // Where each container's observations are in `out`, for its roles' aggregates.
        let mut spans = Vec::with_capacity(watched.len());
        for ((w, inspected), seen) in watched.iter().zip(&inspect).zip(seen) {
            let found = matches!(seen, Seen::Found(_));
            let failed = matches!(seen, Seen::Failed(_));
            let start = out.len();
            self.apply(now, w, seen, &mut events, &mut out);
            spans.push(start..out.len());
            if let Some(t) = self.tracked.get_mut(&w.name) {
                if failed {
                    // Inspected again at the next poll.
                    t.inspected = 0;
                } else if let Some(l) = &w.listed {
                    if found && *inspected {
                        t.listed = l.clone();
                        t.inspected = self.polls;
                    } else {
                        // The uptime is compared with the previous poll's, the rest with the
                        // latest inspection's.
                        t.listed.up_for = l.up_for;
                    }
                }
            }
        }
        let names: HashSet<&str> = watched.iter().map(|w| w.name.as_str()).collect();
        self.tracked.retain(|name, _| names.contains(name.as_str()));
        let by_role = self.role_observations(now, &watched, &spans, &out);
        out.extend(by_role);
        Ok(out)
    }
}

impl DockerProbe {
    /// Every role's observations this poll, aggregated over the containers that belong to it
    /// (`spans[i]`: where `watched[i]`'s observations are in `out`).
    fn role_observations(
        &mut self,
        now: Timestamp,
        watched: &[Watched],
        spans: &[std::ops::Range<usize>],
        out: &[Observation],
    ) -> Vec<Observation> {
        let mut by_role = Vec::new();
        for r in 0..self.config.roles.len() {
            let reads = self.role_reads(r);
            let mut members: Vec<roles::Member<'_>> = watched
                .iter()
                .zip(spans)
                .filter(|(w, _)| w.roles.contains(&r))
                .map(|(w, span)| roles::Member {
                    name: &w.name,
                    observations: &out[span.clone()],
                    deployed_at: self.tracked.get(&w.name).and_then(Tracked::deployed_at),
                })
                .collect();
            members.sort_by(|a, b| a.name.cmp(b.name));
            let role = &self.config.roles[r];
            let state = self.role_state.entry(role.name.clone()).or_default();
            let facts = roles::Facts {
                config: &self.config,
                reads,
                now,
            };
            roles::observe(role, &members, &facts, state, &mut by_role);
        }
        by_role
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::fixtures::{config, snap, t, watched};
    use super::inspect::Found;
    use super::*;

    #[test]
    fn memory_and_logs_are_observed_only_for_containers_the_runbook_reads() {
        let runbook = crate::runbook::Runbook::embedded();
        let mut probe = DockerProbe::with_wanted(config(&[]), runbook.wanted());
        let role = |name: &str| {
            let roles = &probe.config.roles;
            roles.iter().position(|r| r.name == name).expect(name)
        };
        // The runbook reads the backend role's memory and logs, so its replicas'; of Redis, neither.
        let backend = watched("proj-backend-1", &[role("backend")]);
        let redis = watched("proj-redis-1", &[role("redis")]);
        let alone = watched("harven-backend-old", &[]);
        let both = |r: Reads| (r.memory, r.logs);
        assert_eq!(both(probe.reads(&backend)), (true, true));
        assert_eq!(both(probe.reads(&redis)), (false, false));
        assert_eq!(both(probe.reads(&alone)), (false, false), "in no role");
        let mut out = Vec::new();
        let mut events = HashMap::new();
        for w in [backend, redis] {
            let seen = Seen::Found(Box::new(Found {
                snap: snap(&w.name, 0, 100),
                memory: Some(Ok(Some(1 << 20))),
                logs: None,
                run_oom: None,
            }));
            probe.apply(t(200), &w, seen, &mut events, &mut out);
        }
        let of = |container: &str, name: &str| {
            out.iter()
                .filter(|o| {
                    o.key.name == name
                        && o.key.labels.get("container").map(String::as_str) == Some(container)
                })
                .count()
        };
        assert_eq!(of("proj-backend-1", "docker.memory_bytes"), 1);
        assert!(of("proj-backend-1", "docker.log_lines_per_minute") > 0);
        assert_eq!(of("proj-redis-1", "docker.memory_bytes"), 0);
        assert_eq!(of("proj-redis-1", "docker.log_lines_per_minute"), 0);
        assert_eq!(
            of("proj-redis-1", "docker.running"),
            1,
            "its state still is"
        );
        assert_eq!(of("proj-redis-1", "docker.memory_limit_bytes"), 1);
    }
}
