//! The Docker probe: the watched containers' state, memory, deploys, secrets' presence and log lines,
//! read from the Docker Engine API (bollard, over the unix socket or TCP).
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
//! The task subscribes lazily (on the first poll) and again after the stream breaks (the Engine
//! restarted, the socket went away), with a doubling backoff, resuming `since` the newest event it had
//! or the latest poll, whichever is later; events in a gap the Engine no longer replays are only
//! missed by the event path, never by the reconcile.
//!
//! Restarts are counted without double counting: Docker's restart count grows when the restart policy
//! decides to restart (at `die`), the `start` event comes after the backoff, and both can land on
//! either side of a poll. The probe keeps two cumulative counts per container ID since it first saw
//! it, restart-count increases and `start` events after the run it first saw, and takes the growth
//! of their maximum as the poll's new restarts.
//!
//! # Evidence over windows, not per poll
//!
//! What a poll counts depends on how long ago the previous poll was, so nothing is reported per
//! poll: each container keeps what its polls counted in a [`WindowCounts`] (bounded, pruned by the
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
//! # Log lines, each counted once
//!
//! The logs endpoint filters by `since` in whole seconds. The probe asks with `timestamps=true` from
//! the second of the newest line it counted and drops every line stamped at or before that line, so the
//! boundary second is neither lost nor counted twice; at most `log_lines_cap` lines (`tail`) and
//! [`MAX_LOG_BYTES`] are read per container and poll. A container seen for the first time is counted
//! from that poll on, not over its whole history (its counts are no data until the next poll).
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

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, UNIX_EPOCH};

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as EngineError;
use bollard::models::{
    ContainerInspectResponse, ContainerStateStatusEnum, EventMessage, HealthStatusEnum,
};
use bollard::query_parameters::{
    EventsOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
    LogsOptionsBuilder, StatsOptionsBuilder,
};
use futures_util::StreamExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::Notify;

use super::http::error_chain;
use super::window::{self, WindowCounts};
use super::{Probe, truncate};
use crate::clock::Timestamp;
use crate::config::{DockerConfig, RoleConfig};
use crate::observe::{Failure, FailureKind, Key, Observation, Outcome, Wanted};

mod roles;

/// The label Docker Compose puts on every container of a project.
pub const COMPOSE_PROJECT_LABEL: &str = "com.docker.compose.project";

/// The label Docker Compose (v1 and v2) puts on every container of a service, replicas included.
pub const COMPOSE_SERVICE_LABEL: &str = "com.docker.compose.service";

/// Most bytes of log output read per container per poll (on top of `log_lines_cap`): a container
/// logging megabyte lines cannot flood the watchdog's memory. The rest is read by the next poll.
pub const MAX_LOG_BYTES: usize = 8 << 20;

/// Most containers the Engine may list (all of them, running or not) for the probe to read it: far
/// above a stack's, and what bounds the list answer. More is a `too_large` failure.
pub const MAX_CONTAINERS: usize = 4096;

/// Memory samples kept per container for the growth rate (a ring over `memory_growth_window`).
const MEMORY_SAMPLES: u32 = 32;

/// A `start` event this close after the run the probe saw is that run's own start, not a restart:
/// Docker logs the event a few milliseconds after it records `StartedAt`. Restarts this quick are
/// still counted by the restart count when the restart policy made them.
const SAME_RUN_SLACK: Nanos = 1_000_000_000;

/// Containers inspected at the same time: a cycle over a typical stack is one round, and a large
/// compose project cannot open hundreds of Engine connections at once.
const MAX_CONCURRENT_CONTAINERS: usize = 32;

/// A container is inspected again at least every this many polls even when nothing about it changed
/// (the reconcile), a share of the containers per poll so that the cost is spread out.
const RECONCILE_POLLS: usize = 20;

/// Containers re-inspected per poll at least, however few are watched: a typical stack is inspected
/// whole at every poll, as cheap as a smaller share.
const RECONCILE_MIN: usize = 4;

/// Containers with pending events kept between two polls, at most (events of more are dropped; the
/// reconcile poll still sees their state).
const MAX_PENDING_CONTAINERS: usize = 1024;

/// `start` event times kept per container between two polls; more are counted without their time.
const MAX_PENDING_STARTS: usize = 256;

/// Backoff of the event subscription after a failure, doubling up to the maximum.
const EVENTS_BACKOFF_MIN: Duration = Duration::from_secs(1);
const EVENTS_BACKOFF_MAX: Duration = Duration::from_secs(30);

const NANOS_PER_SEC: Nanos = 1_000_000_000;

/// Engine wall-clock times (inspect's `StartedAt`, log-line stamps, events) as Unix nanoseconds.
type Nanos = i128;

/// The observations of memory usage, read from the stats endpoint (only where the runbook reads one).
const MEMORY_OBSERVATIONS: [&str; 3] = [
    "docker.memory_bytes",
    "docker.memory_ratio",
    "docker.memory_growth_bytes_per_hour",
];

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

/// The label of [`EngineRequests`]: which Engine endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CallLabel {
    call: &'static str,
}

/// Requests to the Docker Engine by call (`version`, `list`, `inspect`, `stats`, `logs`, `events`):
/// the `harven_watchdog_docker_api_requests_total` counter, what watching costs the Engine. Clones
/// share their counts.
#[derive(Debug, Clone, Default)]
pub struct EngineRequests(Family<CallLabel, Counter>);

impl EngineRequests {
    /// The counter family, to register.
    pub fn family(&self) -> Family<CallLabel, Counter> {
        self.0.clone()
    }

    fn count(&self, call: &'static str) {
        self.0.get_or_create(&CallLabel { call }).inc();
    }

    /// Requests made so far for `call`.
    pub fn get(&self, call: &'static str) -> u64 {
        self.0.get_or_create(&CallLabel { call }).get()
    }
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

/// What the probe remembers about one watched container between polls.
#[derive(Debug)]
struct Tracked {
    /// The container ID; a new ID under the same name is a recreated container (a deploy).
    id: String,
    /// Restarts counted from Docker's restart count since this ID was first seen (a manual start
    /// resets Docker's count to 0; that start counts as one restart).
    count_restarts: u64,
    /// Docker's restart count at the previous poll.
    restart_count: i64,
    /// `start` events of this ID after `start_floor`, counted since this ID was first seen; it starts
    /// at -1 when the ID was first seen restarting (that start is in Docker's count already).
    event_restarts: i64,
    /// Start events at or before this engine time belong to the run first seen (see
    /// [`SAME_RUN_SLACK`]).
    start_floor: Nanos,
    /// `max(count_restarts, event_restarts)` at the previous poll: what was already reported.
    reported_restarts: u64,
    /// Engine time of the newest `oom` event of this ID: the last run was OOM-killed when it is at or
    /// after that run's start.
    last_oom: Option<Nanos>,
    /// Restarts counted by each poll, over `evidence_window`: `docker.restarts` is their sum, so a
    /// restart holds as evidence for the window instead of for the one poll that saw it. Kept across
    /// a recreation under the same name (it is the name's history, as the image's is).
    restarts: WindowCounts,
    /// When a poll last saw an OOM kill (watchdog clock): `docker.oom_killed` holds for
    /// `evidence_window` after it. Kept across a recreation under the same name.
    oom_seen: Option<Timestamp>,
    image_id: String,
    image_label: String,
    /// The last image change seen: the image before it, and when it was seen (watchdog clock).
    image_change: Option<(String, Timestamp)>,
    /// When a poll last saw another container ID under this name (watchdog clock): a recreated
    /// container is a deploy even on the same image (`docker-compose up -d` after a config change).
    recreated: Option<Timestamp>,
    memory: MemoryTrend,
    /// Engine time of the newest log line counted (or of the first sight): lines stamped at or
    /// before it were counted already.
    log_cursor: Nanos,
    /// Matching lines counted by each poll, per pattern (in `log_patterns` order), over
    /// `log_rate_window`: `docker.log_lines_per_minute` is their rate. Kept across a recreation.
    log_counts: WindowCounts,
    /// The previous poll read as many log lines as it may: logged when this starts and stops.
    log_capped: bool,
    /// The latest inspection, reused by the polls that do not inspect again.
    snap: Snapshot,
    /// What the list endpoint said at the latest inspection (its uptime: at the previous poll): a
    /// change asks for another inspection.
    listed: Listed,
    /// The poll of the latest inspection (the reconcile inspects the oldest first).
    inspected: u64,
}

/// What the list endpoint says of a container, cheaply, for all of them in one call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Listed {
    id: String,
    /// `running`, `exited`, `restarting`, `paused`, …
    state: String,
    /// The status text with its duration cut out (`Up _ (healthy)`, `Exited (137) _ ago`): health and
    /// exit code, the parts that do not move with time.
    status: String,
    /// Running for at least this many seconds (from `Up 5 minutes`): less than the previous poll saw
    /// is a restart, even one no event told of.
    up_for: Option<u64>,
}

impl Listed {
    /// True when this entry may say something an inspection made at `before` does not.
    fn changed_since(&self, before: &Listed) -> bool {
        self.id != before.id
            || self.state != before.state
            || self.status != before.status
            || matches!((self.up_for, before.up_for), (Some(now), Some(then)) if now < then)
    }
}

/// Splits a list entry's status text (`Up 5 minutes (healthy)`, `Exited (137) 2 hours ago`) into the
/// part that does not move with time, the duration replaced by `_`, and that duration in seconds.
/// Docker writes it with `units.HumanDuration`, whose buckets this maps to increasing numbers, so a
/// shorter text duration is a shorter real one. Text it does not recognise is kept whole.
fn split_status(status: &str) -> (String, Option<u64>) {
    let words: Vec<&str> = status.split(' ').collect();
    for i in 0..words.len() {
        let (len, secs) = match words[i..] {
            ["Less", "than", "a", "second", ..] => (4, 0),
            ["About", "a", "minute", ..] => (3, 60),
            ["About", "an", "hour", ..] => (3, 3600),
            [n, unit, ..] => match (n.parse::<u64>(), unit_seconds(unit)) {
                (Ok(n), Some(u)) => (2, n.saturating_mul(u)),
                _ => continue,
            },
            _ => continue,
        };
        let stable = [&words[..i], &["_"], &words[i + len..]].concat().join(" ");
        return (stable, Some(secs));
    }
    (status.to_owned(), None)
}

fn unit_seconds(unit: &str) -> Option<u64> {
    Some(match unit.strip_suffix('s').unwrap_or(unit) {
        "second" => 1,
        "minute" => 60,
        "hour" => 3_600,
        "day" => 86_400,
        "week" => 604_800,
        "month" => 2_592_000,
        "year" => 31_536_000,
        _ => return None,
    })
}

/// One watched container this poll: a configured name, a container of the compose project, or a
/// container of a role.
#[derive(Debug)]
struct Watched {
    name: String,
    configured: bool,
    /// `None`: the Engine has no container by that name.
    listed: Option<Listed>,
    /// The roles it belongs to (indices into `config.roles`), from its list entry.
    roles: Vec<usize>,
}

/// Events from the background task, by container ID, waiting for the next poll.
#[derive(Debug, Default)]
struct Inbox {
    pending: HashMap<String, Pending>,
    /// Engine time of the newest event recorded: a re-subscription resumes there.
    newest: Option<i64>,
    /// Start of the latest poll (watchdog clock): a subscription made after it replays the events
    /// since then, so the gap between a poll and a (re)subscription loses nothing.
    horizon: Option<Timestamp>,
}

/// One container's events since the previous poll.
#[derive(Debug, Default)]
struct Pending {
    /// Engine times of `start` events (at most [`MAX_PENDING_STARTS`]).
    starts: Vec<Nanos>,
    /// `start` events beyond the cap, counted without their time.
    extra_starts: u64,
    /// `oom` events (the kernel killed a process of the container for memory).
    ooms: u64,
    /// Engine time of the newest of them.
    last_oom: Option<Nanos>,
}

/// Which containers' events matter: the configured names, the compose project and the roles'
/// containers (an event's attributes carry the container's name and labels).
#[derive(Debug, Clone)]
struct Watch {
    names: HashSet<String>,
    project: Option<String>,
    roles: Vec<RoleConfig>,
}

impl Watch {
    fn covers(&self, attributes: &HashMap<String, String>) -> bool {
        let name = attributes.get("name").map(String::as_str);
        name.is_some_and(|n| self.names.contains(n))
            || self
                .project
                .as_ref()
                .is_some_and(|p| attributes.get(COMPOSE_PROJECT_LABEL) == Some(p))
            || self
                .roles
                .iter()
                .any(|r| roles::matches(r, name.into_iter(), Some(attributes)))
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

    /// The watched containers, from one list call: every configured name (in order), then the
    /// compose project's and the roles' other containers by name, each with the roles it belongs to
    /// (matched on the entry's names and labels: no call per container). The list is not filtered
    /// by the Engine: its name filter is a regular expression per name, and a label filter cannot be
    /// or-ed with names.
    async fn list(&self, docker: &Docker) -> Result<Vec<Watched>, Failure> {
        // One more than the probe reads: an answer that long says there are too many.
        let limit = i32::try_from(self.max_containers.saturating_add(1)).unwrap_or(i32::MAX);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .limit(limit)
            .build();
        self.requests.count("list");
        let listed = engine_call(
            self.call_limit(),
            "list",
            docker.list_containers(Some(options)),
        )
        .await?;
        if listed.len() > self.max_containers {
            return Err(Failure::new(
                FailureKind::TooLarge,
                format!(
                    "list: the Docker Engine has more than {} containers, more than the probe reads",
                    self.max_containers
                ),
            ));
        }
        let configured: HashSet<&str> = self.config.containers.iter().map(String::as_str).collect();
        let mut by_name: HashMap<&str, (Listed, Vec<usize>)> = HashMap::new();
        let mut extra: Vec<String> = Vec::new();
        for c in &listed {
            let names = c.names.iter().flatten().map(|n| n.trim_start_matches('/'));
            let ours = names.clone().find(|n| configured.contains(n));
            let labels = c.labels.as_ref();
            let in_project = self
                .config
                .compose_project
                .as_ref()
                .is_some_and(|p| labels.and_then(|l| l.get(COMPOSE_PROJECT_LABEL)) == Some(p));
            let roles: Vec<usize> = (self.config.roles.iter().enumerate())
                .filter(|(_, r)| roles::matches(r, names.clone(), labels))
                .map(|(i, _)| i)
                .collect();
            let name = match (ours, in_project || !roles.is_empty()) {
                (Some(n), _) => n,
                (None, true) => match names.clone().next().filter(|n| !n.is_empty()) {
                    Some(n) => {
                        extra.push(n.to_owned());
                        n
                    }
                    None => continue,
                },
                (None, false) => continue,
            };
            let (status, up_for) = split_status(c.status.as_deref().unwrap_or_default());
            let state = c.state.map(|s| s.to_string()).unwrap_or_default();
            let up_for = up_for.filter(|_| status.starts_with("Up "));
            let listed = Listed {
                id: c.id.clone().unwrap_or_default(),
                state,
                status,
                up_for,
            };
            by_name.insert(name, (listed, roles));
        }
        extra.sort();
        extra.dedup();
        let configured = self.config.containers.iter().map(|n| (n, true));
        let extra = extra.iter().map(|n| (n, false));
        Ok(configured
            .chain(extra)
            .map(|(name, configured)| {
                let (listed, roles) = by_name.remove(name.as_str()).unzip();
                Watched {
                    name: name.clone(),
                    configured,
                    listed,
                    roles: roles.unwrap_or_default(),
                }
            })
            .collect())
    }

    /// Which containers this poll inspects: those first seen, changed in the list, named by an event
    /// since their inspection, or whose inspection failed; then, for the reconcile, the least
    /// recently inspected others, `max(n / RECONCILE_POLLS, RECONCILE_MIN)` of them.
    fn to_inspect(&self, watched: &[Watched], events: &HashSet<String>) -> Vec<bool> {
        let mut inspect: Vec<bool> = watched
            .iter()
            .map(|w| match (&w.listed, self.tracked.get(&w.name)) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(l), Some(t)) => {
                    l.changed_since(&t.listed) || events.contains(&l.id) || t.inspected == 0
                }
            })
            .collect();
        let budget = watched.len().div_ceil(RECONCILE_POLLS).max(RECONCILE_MIN);
        let mut rest: Vec<(u64, usize)> = watched
            .iter()
            .enumerate()
            .filter(|(i, w)| !inspect[*i] && w.listed.is_some())
            .filter_map(|(i, w)| Some((self.tracked.get(&w.name)?.inspected, i)))
            .collect();
        rest.sort_unstable();
        for (_, i) in rest.into_iter().take(budget) {
            inspect[i] = true;
        }
        inspect
    }

    /// Folds one container's inspection into the state and its observations into `out`.
    fn apply(
        &mut self,
        now: Timestamp,
        w: &Watched,
        seen: Seen,
        events: &mut HashMap<String, Pending>,
        out: &mut Vec<Observation>,
    ) {
        let (name, configured) = (w.name.as_str(), w.configured);
        let reads = self.reads(w);
        let key = |n: &'static str| Key::new(n).with("container", name);
        let found = match seen {
            Seen::Missing => {
                // A configured container that does not exist is news; a compose container removed
                // between the list and the inspection is simply gone.
                if configured {
                    out.push(Observation::boolean(key("docker.present"), false));
                }
                self.tracked.remove(name);
                return;
            }
            Seen::Failed(f) => {
                out.push(Observation::new(key("docker.present"), Outcome::Unknown(f)));
                return;
            }
            Seen::Found(found) => *found,
        };
        let Found {
            snap,
            memory,
            logs,
            run_oom,
        } = found;
        let pending = events.remove(&snap.id);
        let now_ns = nanos_of(now);
        let previous = self.tracked.remove(name);

        // Restarts, image changes and the log cursor, against what the previous poll saw.
        let first_sight = previous.is_none();
        let mut t = match previous {
            Some(p) if p.id == snap.id => p,
            Some(p) => {
                // Recreated under the same name: its restarts all happened since the last poll.
                let count = u64::try_from(snap.restart_count).unwrap_or(0);
                let patterns = self.config.log_patterns.len();
                let first = Tracked::first(&snap, p.log_cursor, now, patterns, Some(&p));
                Tracked {
                    count_restarts: count,
                    reported_restarts: 0,
                    recreated: Some(now),
                    // The name's evidence windows go on: a restart or an OOM kill of the container
                    // it replaced is still news about the service.
                    restarts: p.restarts,
                    oom_seen: p.oom_seen,
                    log_counts: p.log_counts,
                    ..first
                }
            }
            None => Tracked::first(&snap, now_ns, now, self.config.log_patterns.len(), None),
        };
        let mut oom_event = false;
        t.last_oom = t.last_oom.max(run_oom);
        if let Some(p) = pending.filter(|_| !first_sight) {
            let floor = t.start_floor;
            let new = p.starts.iter().filter(|s| **s > floor).count() as u64 + p.extra_starts;
            t.event_restarts = t
                .event_restarts
                .saturating_add(i64::try_from(new).unwrap_or(i64::MAX));
            oom_event = p.ooms > 0;
            t.last_oom = t.last_oom.max(p.last_oom);
        }
        let last_run_oom =
            !snap.running && matches!((t.last_oom, snap.started_at), (Some(o), Some(s)) if o >= s);
        // Saturating: the counts are the Engine's, and a corrupt one must not overflow.
        let counted = if snap.restart_count >= t.restart_count {
            u64::try_from(snap.restart_count.saturating_sub(t.restart_count)).unwrap_or(0)
        } else {
            // Docker resets its count on a manual start: that start, then the new count.
            1 + u64::try_from(snap.restart_count).unwrap_or(0)
        };
        t.count_restarts = t.count_restarts.saturating_add(counted);
        t.restart_count = snap.restart_count;
        let total = t
            .count_restarts
            .max(u64::try_from(t.event_restarts).unwrap_or(0));
        let restarts = if first_sight {
            0
        } else {
            total.saturating_sub(t.reported_restarts)
        };
        t.reported_restarts = total;

        if t.image_id != snap.image_id {
            t.image_change = Some((t.image_label.clone(), now));
            t.image_id.clone_from(&snap.image_id);
        }
        t.image_label.clone_from(&snap.image_label);

        out.push(Observation::boolean(key("docker.present"), true));
        out.push(Observation::boolean(key("docker.running"), snap.running));
        out.push(Observation::text(key("docker.health"), snap.health));
        out.push(match snap.exit_code {
            Some(c) => Observation::number(key("docker.exit_code"), c as f64),
            None => no_data(key("docker.exit_code"), "the Engine reports no exit code"),
        });
        out.push(Observation::number(
            key("docker.restart_count"),
            snap.restart_count as f64,
        ));
        let evidence = self.config.evidence_window;
        t.restarts.add(now, &[restarts], evidence);
        let within = window::describe(evidence, t.restarts.covered(now, evidence));
        out.push(
            Observation::number(
                key("docker.restarts"),
                t.restarts.sums(now, evidence)[0] as f64,
            )
            .with_note(format!("restarts within {within}")),
        );
        out.push(oom_observation(
            key("docker.oom_killed"),
            snap.oom_killed || oom_event || last_run_oom,
            &mut t.oom_seen,
            now,
            evidence,
        ));
        out.push(match (snap.running, snap.started_at) {
            (true, Some(s)) => Observation::number(
                key("docker.uptime_seconds"),
                ((now_ns - s).max(0) as f64) / NANOS_PER_SEC as f64,
            ),
            (true, None) => no_data(key("docker.uptime_seconds"), "no start time reported"),
            (false, _) => no_data(key("docker.uptime_seconds"), "not running"),
        });
        out.push(Observation::text(key("docker.image"), &snap.image_label));
        out.push(match &t.image_change {
            Some((before, _)) => Observation::text(key("docker.previous_image"), before),
            None => no_data(key("docker.previous_image"), "no image change seen"),
        });
        out.push(recent_deploy(
            key("docker.recent_deploy"),
            &snap,
            &t,
            now,
            self.config.deploy_window,
        ));
        out.push(match snap.limit() {
            Some(l) => Observation::number(key("docker.memory_limit_bytes"), l as f64),
            None => no_data(key("docker.memory_limit_bytes"), "no memory limit"),
        });
        // Its stats were read only if the runbook reads its memory usage.
        if reads.memory {
            self.memory_observations(now, &snap, memory, &mut t.memory, &key, out);
        }
        for (var, present) in self.config.env_vars.iter().zip(&snap.env_present) {
            out.push(Observation::boolean(
                key("docker.env_present").with("var", var.as_str()),
                *present,
            ));
        }
        if reads.logs {
            self.log_observations(now, name, logs, &mut t, &key, out);
        }
        t.snap = snap;
        self.tracked.insert(name.to_owned(), t);
    }

    /// The memory usage observations of a container whose memory the runbook reads.
    fn memory_observations(
        &self,
        now: Timestamp,
        snap: &Snapshot,
        memory: Option<Result<Option<u64>, Failure>>,
        trend: &mut MemoryTrend,
        key: &dyn Fn(&'static str) -> Key,
        out: &mut Vec<Observation>,
    ) {
        let used = match memory {
            None | Some(Ok(None)) => {
                trend.reset(None);
                let why = if snap.running {
                    "the Engine reports no memory usage"
                } else {
                    "not running"
                };
                for n in MEMORY_OBSERVATIONS {
                    out.push(no_data(key(n), why));
                }
                return;
            }
            Some(Err(f)) => {
                for n in MEMORY_OBSERVATIONS {
                    out.push(Observation::new(key(n), Outcome::Unknown(f.clone())));
                }
                return;
            }
            Some(Ok(Some(used))) => used as f64,
        };
        out.push(Observation::number(key("docker.memory_bytes"), used));
        out.push(match snap.limit() {
            Some(l) => Observation::number(key("docker.memory_ratio"), used / l as f64),
            None => no_data(key("docker.memory_ratio"), "no memory limit"),
        });
        let growth = trend.observe(snap.started_at, now, used, self.config.memory_growth_window);
        out.push(Observation::new(
            key("docker.memory_growth_bytes_per_hour"),
            growth,
        ));
    }

    /// Each pattern's `docker.log_lines_per_minute`: this poll's new lines join the window's counts.
    fn log_observations(
        &self,
        now: Timestamp,
        name: &str,
        logs: Option<Result<LogWindow, Failure>>,
        t: &mut Tracked,
        key: &dyn Fn(&'static str) -> Key,
        out: &mut Vec<Observation>,
    ) {
        let pattern_key = |p: &str| key("docker.log_lines_per_minute").with("pattern", p);
        match logs {
            // First sight: nothing counted yet (no data, not 0: a one-shot `diagnose` must not read as
            // "no errors in the logs"); counting starts at this poll.
            None => {
                for p in &self.config.log_patterns {
                    out.push(no_data(
                        pattern_key(&p.name),
                        "first look at this container: counting starts now",
                    ));
                }
            }
            Some(Ok(window)) => {
                if window.capped && !t.log_capped {
                    tracing::warn!(
                        container = name,
                        lines = window.lines,
                        "more new log lines than the probe reads per poll; counts are a lower bound"
                    );
                } else if !window.capped && t.log_capped {
                    tracing::info!(container = name, "log lines fit the per-poll cap again");
                }
                t.log_capped = window.capped;
                t.log_cursor = t.log_cursor.max(window.newest);
                let rate_window = self.config.log_rate_window;
                t.log_counts.add(now, &window.counts, rate_window);
                let rates = t.log_counts.per_minute(now, rate_window);
                let over = window::describe(rate_window, t.log_counts.covered(now, rate_window));
                for (p, rate) in self.config.log_patterns.iter().zip(rates) {
                    out.push(
                        Observation::number(pattern_key(&p.name), rate)
                            .with_note(format!("lines per minute over {over}")),
                    );
                }
            }
            Some(Err(f)) => {
                for p in &self.config.log_patterns {
                    out.push(Observation::new(
                        pattern_key(&p.name),
                        Outcome::Unknown(f.clone()),
                    ));
                }
            }
        }
    }
}

impl Tracked {
    /// Engine time of the container's latest deploy seen: its creation, or a change of its image.
    fn deployed_at(&self) -> Option<Nanos> {
        let changed = self.image_change.as_ref().map(|(_, at)| nanos_of(*at));
        self.snap.created_at.max(changed)
    }

    /// The state of a container ID seen for the first time at `now` (`patterns`: the log patterns
    /// counted); `previous` carries the image history of the name (a recreated container).
    fn first(
        snap: &Snapshot,
        log_cursor: Nanos,
        now: Timestamp,
        patterns: usize,
        previous: Option<&Tracked>,
    ) -> Self {
        let (image_id, image_label, image_change) = match previous {
            Some(p) => (
                p.image_id.clone(),
                p.image_label.clone(),
                p.image_change.clone(),
            ),
            None => (snap.image_id.clone(), snap.image_label.clone(), None),
        };
        Self {
            id: snap.id.clone(),
            count_restarts: 0,
            restart_count: snap.restart_count,
            event_restarts: if snap.restarting { -1 } else { 0 },
            start_floor: snap.started_at.unwrap_or(0) + SAME_RUN_SLACK,
            reported_restarts: 0,
            last_oom: None,
            restarts: WindowCounts::new(1, now),
            oom_seen: None,
            image_id,
            image_label,
            image_change,
            recreated: None,
            memory: MemoryTrend::default(),
            log_cursor,
            // Counting starts at the next poll (first sight reads no lines).
            log_counts: WindowCounts::new(patterns, now),
            log_capped: false,
            snap: snap.clone(),
            listed: Listed::default(),
            inspected: 0,
        }
    }
}

/// `docker.recent_deploy`: a new container or a new image within the deploy window. A new container
/// is one created within it (by the Engine's clock) or another ID under this name (seen by a poll);
/// a new image is a change of the image ID a poll saw. A restart of the same container on the same
/// image (a crash or OOM-kill loop, `docker restart`, `docker start`) is none of these: it is
/// `docker.restarts`, not a deploy. The note says which, and when.
fn recent_deploy(
    key: Key,
    snap: &Snapshot,
    t: &Tracked,
    now: Timestamp,
    window: Duration,
) -> Observation {
    let now_ns = nanos_of(now);
    let ago_ns =
        |at: Nanos| Duration::from_nanos(u64::try_from((now_ns - at).max(0)).unwrap_or(u64::MAX));
    let ago =
        |d: Duration| humantime::format_duration(Duration::from_secs(d.as_secs())).to_string();
    let mut why = Vec::new();
    if let Some((before, at)) = &t.image_change {
        let d = now.saturating_since(*at);
        if d <= window {
            why.push(format!("image changed from {before} {} ago", ago(d)));
        }
    }
    if let Some(at) = t.recreated {
        let d = now.saturating_since(at);
        if d <= window {
            why.push(format!("container recreated {} ago", ago(d)));
        }
    }
    if let Some(created) = snap.created_at {
        let d = ago_ns(created);
        if d <= window && t.recreated.is_none() {
            why.push(format!("container created {} ago", ago(d)));
        }
    }
    let w = humantime::format_duration(window);
    if why.is_empty() {
        Observation::boolean(key, false).with_note(format!(
            "same container and image for the last {w} (restarts are not deploys)"
        ))
    } else {
        Observation::boolean(key, true).with_note(why.join("; "))
    }
}

/// `docker.oom_killed`: `now_killed` (this poll sees a kill: the last run's flag or exit, or an
/// `oom` event) or a kill seen within the evidence window, so an OOM-kill loop holds between its
/// kills instead of showing at one poll. Records this poll's sighting in `seen`.
fn oom_observation(
    key: Key,
    now_killed: bool,
    seen: &mut Option<Timestamp>,
    now: Timestamp,
    window: Duration,
) -> Observation {
    if now_killed {
        *seen = Some(now);
    }
    let w = humantime::format_duration(window);
    match *seen {
        Some(at) if now.saturating_since(at) < window => {
            let d = Duration::from_secs(now.saturating_since(at).as_secs());
            let note = if now_killed {
                format!("OOM-killed now (held for {w})")
            } else {
                format!(
                    "OOM-killed {} ago (held for {w})",
                    humantime::format_duration(d)
                )
            };
            Observation::boolean(key, true).with_note(note)
        }
        _ => Observation::boolean(key, false).with_note(format!("no OOM kill within the last {w}")),
    }
}

fn no_data(key: Key, why: &str) -> Observation {
    Observation::new(key, Outcome::NoData(why.to_owned()))
}

/// A ring of `(time, bytes)` samples of the current run, for a growth rate over the window.
#[derive(Debug, Default)]
struct MemoryTrend {
    /// The run (engine `StartedAt`) the samples belong to: a restart starts a new trend.
    run: Option<Nanos>,
    samples: VecDeque<(Timestamp, f64)>,
}

impl MemoryTrend {
    fn reset(&mut self, run: Option<Nanos>) {
        self.run = run;
        self.samples.clear();
    }

    /// Records `bytes` at `now` and returns the growth rate per hour: from the oldest sample still in
    /// the window to now. No data until that sample is a tenth of the window old (a rate over a few
    /// seconds, extrapolated to an hour, is noise). Samples are taken at most every 1/32 of the
    /// window, so the ring stays small.
    fn observe(
        &mut self,
        run: Option<Nanos>,
        now: Timestamp,
        bytes: f64,
        window: Duration,
    ) -> Outcome {
        if self.run != run {
            self.reset(run);
        }
        let horizon = now - window;
        while self.samples.front().is_some_and(|(t, _)| *t < horizon) {
            self.samples.pop_front();
        }
        let outcome = match self.samples.front() {
            Some((t, b)) if now.saturating_since(*t) >= window / 10 && now > *t => {
                let hours = now.saturating_since(*t).as_secs_f64() / 3600.0;
                Outcome::number((bytes - b) / hours)
            }
            _ => Outcome::NoData(format!(
                "needs samples over a tenth of the {} window",
                humantime::format_duration(window)
            )),
        };
        let step = window / MEMORY_SAMPLES;
        if self
            .samples
            .back()
            .is_none_or(|(t, _)| now.saturating_since(*t) >= step)
        {
            if self.samples.len() > MEMORY_SAMPLES as usize {
                self.samples.pop_front();
            }
            self.samples.push_back((now, bytes));
        }
        outcome
    }
}

/// What one inspection found.
enum Seen {
    /// The Engine has no container by that name.
    Missing,
    /// The inspection failed (timeout, Engine error).
    Failed(Failure),
    Found(Box<Found>),
}

struct Found {
    snap: Snapshot,
    /// `None` when not asked (not running); `Ok(None)` when the Engine had no usage figure.
    memory: Option<Result<Option<u64>, Failure>>,
    /// `None` on first sight (counting starts now).
    logs: Option<Result<LogWindow, Failure>>,
    /// For a container ID first seen not running: the newest `oom` event of its last run.
    run_oom: Option<Nanos>,
}

/// The parts of an inspect answer the probe uses. Built so that the answer, which holds every
/// environment value, is dropped right away.
#[derive(Debug, Clone)]
struct Snapshot {
    id: String,
    /// Running and not restarting or paused (Docker reports `Running` during a restart backoff).
    running: bool,
    /// Between a restart-policy decision (already in `restart_count`) and the start it leads to.
    restarting: bool,
    health: &'static str,
    exit_code: Option<i64>,
    restart_count: i64,
    oom_killed: bool,
    started_at: Option<Nanos>,
    created_at: Option<Nanos>,
    image_id: String,
    /// The image as configured and its short ID: `harven/backend:1.4 (sha256:0123456789ab)`.
    image_label: String,
    memory_limit: Option<i64>,
    /// Presence of each configured variable, in `env_vars` order.
    env_present: Vec<bool>,
}

impl Snapshot {
    /// The memory limit, if the container has one (Docker reports 0 for none).
    fn limit(&self) -> Option<i64> {
        self.memory_limit.filter(|l| *l > 0)
    }

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

/// What one poll reads of one container besides its state.
#[derive(Debug, Clone, Copy)]
struct Reads {
    /// Memory stats (when running): the runbook reads its memory usage.
    memory: bool,
    /// New log lines (after the first sight): the runbook reads its log counts.
    logs: bool,
}

/// One container this poll: inspects it unless `cached` holds an inspection still good (or the list
/// had no such container), then reads what `reads` asks for.
#[allow(clippy::too_many_arguments)]
async fn look(
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

/// The newest `oom` event of container `id` from `since` (engine time) to `until`, from the Engine's
/// event buffer; `None` when there is none or the question fails (then only the state's flag counts).
async fn last_run_oom(
    docker: &Docker,
    id: &str,
    since: Nanos,
    until: Timestamp,
    limit: Duration,
    requests: &EngineRequests,
) -> Option<Nanos> {
    let filters = HashMap::from([
        ("type", vec!["container"]),
        ("container", vec![id]),
        ("event", vec!["oom"]),
    ]);
    // An `until` in the Engine's past makes it answer from its buffer and close the stream at once.
    let options = EventsOptionsBuilder::new()
        .filters(&filters)
        .since(&engine_time(since))
        .until(&engine_time(nanos_of(until)))
        .build();
    requests.count("events");
    let read = async {
        let mut newest = None;
        let mut stream = pin!(docker.events(Some(options)));
        while let Some(item) = stream.next().await {
            newest = newest.max(event_time(&item.map_err(|e| engine_failure(&e))?));
        }
        Ok::<_, Failure>(newest)
    };
    match tokio::time::timeout(limit, read).await {
        Ok(Ok(newest)) => newest,
        Ok(Err(f)) => {
            tracing::debug!(container = id, detail = %f, "cannot look up the last run's OOM events");
            None
        }
        Err(_) => {
            tracing::debug!(
                container = id,
                "looking up the last run's OOM events timed out"
            );
            None
        }
    }
}

/// An engine time as the events API takes it: `secs.nanos`.
fn engine_time(ns: Nanos) -> String {
    format!(
        "{}.{:09}",
        ns.div_euclid(NANOS_PER_SEC),
        ns.rem_euclid(NANOS_PER_SEC)
    )
}

/// When the Engine logged `event`, in Unix nanoseconds.
fn event_time(event: &EventMessage) -> Option<Nanos> {
    event
        .time_nano
        .map(Nanos::from)
        .or_else(|| event.time.map(|s| Nanos::from(s) * NANOS_PER_SEC))
}

/// Memory in use as `docker stats` shows it: usage minus the inactive page cache. One-shot stats
/// (API 1.41+) answer at once instead of waiting for a second CPU sample.
async fn memory_in_use(
    docker: &Docker,
    id: &str,
    limit: Duration,
    requests: &EngineRequests,
) -> Result<Option<u64>, Failure> {
    requests.count("stats");
    let options = StatsOptionsBuilder::new()
        .stream(false)
        .one_shot(true)
        .build();
    let read = async {
        let mut stream = pin!(docker.stats(id, Some(options)));
        stream.next().await
    };
    let stats = match tokio::time::timeout(limit, read).await {
        Err(_) => return Err(timeout_failure("stats", limit)),
        Ok(None) => return Err(Failure::new(FailureKind::Malformed, "stats: empty answer")),
        Ok(Some(Err(e))) => return Err(engine_failure(&e)),
        Ok(Some(Ok(s))) => s,
    };
    let Some(m) = stats.memory_stats else {
        return Ok(None);
    };
    let Some(usage) = m.usage else {
        return Ok(None);
    };
    // cgroup v1 names it total_inactive_file, v2 inactive_file.
    let inactive = m
        .stats
        .as_ref()
        .and_then(|s| {
            s.get("total_inactive_file")
                .or_else(|| s.get("inactive_file"))
        })
        .copied()
        .unwrap_or(0);
    Ok(Some(usage.saturating_sub(inactive)))
}

/// The log lines of one poll, counted per pattern.
#[derive(Debug)]
struct LogWindow {
    /// Matching lines per pattern, in `log_patterns` order.
    counts: Vec<u64>,
    /// Engine time of the newest line counted (the cursor when none was).
    newest: Nanos,
    /// New lines read.
    lines: u64,
    /// The read stopped at `log_lines_cap` or [`MAX_LOG_BYTES`]: older new lines were not counted.
    capped: bool,
}

impl LogWindow {
    /// Counts the lines of one chunk stamped after `cursor`. Each line is `<RFC 3339 time> <text>`.
    fn take(&mut self, chunk: &[u8], cursor: Nanos, patterns: &[crate::config::LogPattern]) {
        for line in chunk.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let Some(space) = line.iter().position(|b| *b == b' ') else {
                continue;
            };
            let Some(stamp) = std::str::from_utf8(&line[..space])
                .ok()
                .and_then(parse_time)
            else {
                continue;
            };
            if stamp <= cursor {
                continue;
            }
            self.lines += 1;
            self.newest = self.newest.max(stamp);
            let text = String::from_utf8_lossy(&line[space + 1..]);
            for (count, p) in self.counts.iter_mut().zip(patterns) {
                if p.regex.is_match(&text) {
                    *count += 1;
                }
            }
        }
    }
}

/// Reads the lines logged after `cursor` (stdout and stderr), at most `log_lines_cap` of them.
async fn read_logs(
    docker: &Docker,
    id: &str,
    cursor: Nanos,
    config: &DockerConfig,
    limit: Duration,
    requests: &EngineRequests,
) -> Result<LogWindow, Failure> {
    requests.count("logs");
    // `since` is whole seconds and inclusive: the cursor's own second is asked again and its lines
    // up to the cursor are dropped by `take`.
    let since = i32::try_from(cursor.div_euclid(NANOS_PER_SEC))
        .unwrap_or(i32::MAX)
        .max(1);
    let cap = config.log_lines_cap;
    let options = LogsOptionsBuilder::new()
        .stdout(true)
        .stderr(true)
        .timestamps(true)
        .since(since)
        .tail(&cap.to_string())
        .build();
    let read = async {
        let mut window = LogWindow {
            counts: vec![0; config.log_patterns.len()],
            newest: cursor,
            lines: 0,
            capped: false,
        };
        let mut stream = pin!(docker.logs(id, Some(options)));
        let mut bytes = 0usize;
        let mut received = 0u64;
        while let Some(chunk) = stream.next().await {
            let message = match chunk.map_err(|e| engine_failure(&e))? {
                LogOutput::StdOut { message }
                | LogOutput::StdErr { message }
                | LogOutput::Console { message } => message,
                LogOutput::StdIn { .. } => continue,
            };
            bytes += message.len();
            received += 1;
            window.take(&message, cursor, &config.log_patterns);
            if bytes >= MAX_LOG_BYTES {
                window.capped = true;
                break;
            }
        }
        // Every line returned is at or after `since`; a full tail may have cut older new lines.
        if received >= u64::from(cap) && window.lines >= u64::from(cap) {
            window.capped = true;
        }
        Ok(window)
    };
    match tokio::time::timeout(limit, read).await {
        Ok(r) => r,
        Err(_) => Err(timeout_failure("logs", limit)),
    }
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

/// Runs one Engine call under `limit`.
async fn engine_call<T>(
    limit: Duration,
    what: &str,
    call: impl Future<Output = Result<T, EngineError>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            let f = engine_failure(&e);
            Err(Failure::new(f.kind, format!("{what}: {}", f.detail)))
        }
        Err(_) => Err(timeout_failure(what, limit)),
    }
}

fn timeout_failure(what: &str, limit: Duration) -> Failure {
    Failure::new(
        FailureKind::Timeout,
        format!(
            "{what}: no answer from the Docker Engine within {}",
            humantime::format_duration(limit)
        ),
    )
}

/// A bollard error as a failure. Bodies are never quoted: a JSON error can hold part of an inspect
/// answer, and so environment values.
fn engine_failure(e: &EngineError) -> Failure {
    use FailureKind::{Connect, Malformed, Other, Status, Timeout};
    match e {
        EngineError::SocketNotFoundError(path) => {
            Failure::new(Connect, format!("no Docker socket at {path}"))
        }
        EngineError::HyperLegacyError { .. }
        | EngineError::HyperResponseError { .. }
        | EngineError::IOError { .. } => Failure::new(Connect, error_chain(e)),
        EngineError::RequestTimeoutError => {
            Failure::new(Timeout, "no answer from the Docker Engine")
        }
        EngineError::DockerResponseServerError {
            status_code,
            message,
        } => {
            let message: String = message.chars().take(200).collect();
            Failure::new(Status, format!("HTTP {status_code}: {message}"))
        }
        EngineError::JsonDataError { column, .. } => Failure::new(
            Malformed,
            format!("not a Docker Engine answer (invalid JSON near column {column})"),
        ),
        EngineError::JsonSerdeError { .. }
        | EngineError::StrParseError { .. }
        | EngineError::APIVersionParseError {} => {
            Failure::new(Malformed, "not a Docker Engine answer")
        }
        EngineError::DockerStreamError { .. } => Failure::new(
            Status,
            "the Docker Engine broke off the stream with an error",
        ),
        other => Failure::new(Other, other.to_string()),
    }
}

/// An RFC 3339 UTC time (Docker's, with up to nanoseconds) as Unix nanoseconds; `None` for Docker's
/// "never" (`0001-01-01T00:00:00Z`) and anything unparsable.
fn parse_time(s: &str) -> Option<Nanos> {
    let t = humantime::parse_rfc3339(s).ok()?;
    let since_epoch = t.duration_since(UNIX_EPOCH).ok()?;
    Nanos::try_from(since_epoch.as_nanos())
        .ok()
        .filter(|n| *n > 0)
}

fn nanos_of(t: Timestamp) -> Nanos {
    Nanos::from(t.as_unix_millis()) * 1_000_000
}

/// Follows the Engine's events until aborted, recording those of watched containers into `inbox`
/// and waking the runner. Re-subscribes after any failure with a doubling backoff.
async fn follow_events(
    host: String,
    timeout: Duration,
    watch: Watch,
    inbox: Arc<Mutex<Inbox>>,
    wake: Arc<Notify>,
    requests: EngineRequests,
) {
    let filters = HashMap::from([
        ("type", vec!["container"]),
        (
            "event",
            vec!["start", "die", "oom", "restart", "health_status"],
        ),
    ]);
    let mut backoff = EVENTS_BACKOFF_MIN;
    loop {
        let (since, skip_upto) = resume_point(&lock(&inbox));
        let subscribed = Instant::now();
        match connect(&host, timeout) {
            Err(f) => tracing::debug!(detail = %f, "Docker events: cannot connect"),
            Ok(docker) => {
                let mut options = EventsOptionsBuilder::new().filters(&filters);
                if let Some(since) = &since {
                    options = options.since(since);
                }
                requests.count("events");
                let mut stream = pin!(docker.events(Some(options.build())));
                tracing::debug!(since = ?since, "Docker events: subscribed");
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(event) => {
                            if record(&inbox, &watch, &event, skip_upto) {
                                wake.notify_one();
                            }
                        }
                        Err(e) => {
                            tracing::debug!(detail = %engine_failure(&e), "Docker events: stream broke");
                            break;
                        }
                    }
                }
                tracing::debug!("Docker events: stream ended; subscribing again");
            }
        }
        if subscribed.elapsed() >= EVENTS_BACKOFF_MAX {
            backoff = EVENTS_BACKOFF_MIN;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(EVENTS_BACKOFF_MAX);
    }
}

/// Where a subscription starts (`secs.nanos`, as the Engine accepts), and the engine time up to
/// which replayed events were recorded already (the Engine's `since` is inclusive).
fn resume_point(inbox: &Inbox) -> (Option<String>, Option<i64>) {
    let horizon = inbox
        .horizon
        .map(|t| i64::try_from(nanos_of(t)).unwrap_or(i64::MAX));
    let from = match (inbox.newest, horizon) {
        (Some(n), Some(h)) => Some(n.max(h)),
        (n, h) => n.or(h),
    };
    let since = from.map(|ns| engine_time(Nanos::from(ns)));
    let skip = inbox.newest.filter(|n| Some(*n) == from);
    (since, skip)
}

/// Records one event if it concerns a watched container; true when the runner should poll early.
fn record(
    inbox: &Mutex<Inbox>,
    watch: &Watch,
    event: &EventMessage,
    skip_upto: Option<i64>,
) -> bool {
    let Some(actor) = &event.actor else {
        return false;
    };
    let (Some(id), Some(attributes)) = (&actor.id, &actor.attributes) else {
        return false;
    };
    if !watch.covers(attributes) {
        return false;
    }
    let time = event_time(event).and_then(|t| i64::try_from(t).ok());
    if let (Some(t), Some(skip)) = (time, skip_upto)
        && t <= skip
    {
        return false;
    }
    let action = event.action.as_deref().unwrap_or_default();
    let mut inbox = lock(inbox);
    if let Some(t) = time {
        inbox.newest = Some(inbox.newest.map_or(t, |n| n.max(t)));
    }
    if !inbox.pending.contains_key(id) && inbox.pending.len() >= MAX_PENDING_CONTAINERS {
        return true;
    }
    let pending = inbox.pending.entry(id.clone()).or_default();
    match action {
        "start" => match time {
            Some(t) if pending.starts.len() < MAX_PENDING_STARTS => {
                pending.starts.push(Nanos::from(t));
            }
            _ => pending.extra_starts += 1,
        },
        "oom" => {
            pending.ooms += 1;
            pending.last_oom = pending.last_oom.max(time.map(Nanos::from));
        }
        _ => {}
    }
    true
}

/// Locks the inbox; a panic while it was held cannot leave it inconsistent (every update is one
/// assignment), so a poisoned lock is used as is.
fn lock(inbox: &Mutex<Inbox>) -> MutexGuard<'_, Inbox> {
    inbox
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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

    use bollard::models::{ContainerConfig, ContainerState, EventActor};
    use proptest::prelude::*;

    use super::*;
    use crate::observe::Value;

    const S: Nanos = NANOS_PER_SEC;

    fn config(env: &[(&str, &str)]) -> DockerConfig {
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        crate::config::Config::load_with_env(&[], env)
            .expect("config")
            .docker
    }

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_unix_millis(secs * 1000)
    }

    /// A running container `id`, started at `started` (Unix seconds), with Docker's restart count.
    fn snap(id: &str, restart_count: i64, started: i64) -> Snapshot {
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

    fn found(snap: Snapshot) -> Seen {
        Seen::Found(Box::new(Found {
            snap,
            memory: None,
            logs: None,
            run_oom: None,
        }))
    }

    fn value(out: &[Observation], name: &str) -> Outcome {
        out.iter()
            .find(|o| o.key.name == name)
            .unwrap_or_else(|| panic!("{name} not observed in {out:?}"))
            .outcome
            .clone()
    }

    fn number(out: &[Observation], name: &str) -> f64 {
        match value(out, name) {
            Outcome::Value(Value::Number(n)) => n,
            other => panic!("{name}: {other:?}"),
        }
    }

    fn boolean(out: &[Observation], name: &str) -> bool {
        match value(out, name) {
            Outcome::Value(Value::Bool(b)) => b,
            other => panic!("{name}: {other:?}"),
        }
    }

    /// One poll of container `app` at `now` with `events` pending.
    fn poll(
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
    fn watched(name: &str, roles: &[usize]) -> Watched {
        Watched {
            name: name.to_owned(),
            configured: true,
            listed: None,
            roles: roles.to_vec(),
        }
    }

    fn starts(times: &[Nanos]) -> Pending {
        Pending {
            starts: times.to_vec(),
            ..Pending::default()
        }
    }

    #[test]
    fn restarts_are_counted_once_whether_the_count_or_the_event_comes_first() {
        // `docker.restarts` counts within the evidence window (10 min): every poll here is in it,
        // so each value is the running total since the first sight.
        let mut probe = DockerProbe::new(config(&[]));
        // First sight: 0, even with a count and a late event of the run it sees.
        let out = poll(&mut probe, 2_000, found(snap("c1", 4, 1_990)), vec![]);
        assert_eq!(number(&out, "docker.restarts"), 0.0);
        assert_eq!(number(&out, "docker.restart_count"), 4.0);
        let late = starts(&[1_990 * S + 4_000_000]);
        let out = poll(
            &mut probe,
            2_015,
            found(snap("c1", 4, 1_990)),
            vec![("c1", late)],
        );
        assert_eq!(
            number(&out, "docker.restarts"),
            0.0,
            "the seen run's own start"
        );

        // The policy counts the restart at `die`; the start (and its event) come after the backoff.
        let out = poll(&mut probe, 2_030, found(snap("c1", 5, 1_990)), vec![]);
        assert_eq!(number(&out, "docker.restarts"), 1.0);
        let out = poll(
            &mut probe,
            2_045,
            found(snap("c1", 5, 2_031)),
            vec![("c1", starts(&[2_031 * S]))],
        );
        assert_eq!(number(&out, "docker.restarts"), 1.0, "not counted twice");

        // A manual restart resets Docker's count to 0: the event counts it, and so does the reset.
        let out = poll(
            &mut probe,
            2_060,
            found(snap("c1", 0, 2_050)),
            vec![("c1", starts(&[2_050 * S]))],
        );
        assert_eq!(number(&out, "docker.restarts"), 2.0);

        // Events lost (stream down): the count alone still shows policy restarts.
        let out = poll(&mut probe, 2_075, found(snap("c1", 2, 2_070)), vec![]);
        assert_eq!(number(&out, "docker.restarts"), 4.0);
        // ... and their events arriving later are not counted again.
        let out = poll(
            &mut probe,
            2_090,
            found(snap("c1", 2, 2_070)),
            vec![("c1", starts(&[2_065 * S, 2_070 * S]))],
        );
        assert_eq!(number(&out, "docker.restarts"), 4.0);
        // Two manual restarts seen only as events.
        let out = poll(
            &mut probe,
            2_105,
            found(snap("c1", 0, 2_100)),
            vec![("c1", starts(&[2_095 * S, 2_100 * S]))],
        );
        assert_eq!(number(&out, "docker.restarts"), 6.0);
    }

    #[test]
    fn first_seen_mid_restart_the_pending_start_is_not_counted_twice() {
        let mut probe = DockerProbe::new(config(&[]));
        let mut backoff = snap("c1", 1, 100);
        backoff.running = false;
        backoff.restarting = true;
        let out = poll(&mut probe, 102, found(backoff), vec![]);
        assert_eq!(number(&out, "docker.restarts"), 0.0);
        assert!(!boolean(&out, "docker.running"));
        let out = poll(
            &mut probe,
            104,
            found(snap("c1", 1, 103)),
            vec![("c1", starts(&[103 * S]))],
        );
        assert_eq!(
            number(&out, "docker.restarts"),
            0.0,
            "its start was in the count"
        );
        let out = poll(
            &mut probe,
            110,
            found(snap("c1", 2, 108)),
            vec![("c1", starts(&[108 * S]))],
        );
        assert_eq!(number(&out, "docker.restarts"), 1.0);
    }

    #[test]
    fn a_recreated_container_with_another_image_is_a_deploy_with_a_previous_image() {
        let mut probe =
            DockerProbe::new(config(&[("HARVEN_WATCHDOG__DOCKER__DEPLOY_WINDOW", "10m")]));
        let mut old = snap("c1", 0, 1_000);
        old.created_at = Some(1_000 * S);
        let out = poll(&mut probe, 5_000, found(old), vec![]);
        assert!(!boolean(&out, "docker.recent_deploy"), "started long ago");
        assert!(matches!(
            value(&out, "docker.previous_image"),
            Outcome::NoData(_)
        ));

        let mut new = snap("c2", 1, 5_010);
        new.image_id = "sha256:bbbb".into();
        new.image_label = "app:2 (sha256:bbbb)".into();
        new.created_at = Some(5_005 * S);
        let out = poll(&mut probe, 5_015, found(new), vec![]);
        assert_eq!(
            value(&out, "docker.previous_image"),
            Outcome::Value(Value::Text("app:1 (sha256:aaaa)".into()))
        );
        assert_eq!(
            value(&out, "docker.image"),
            Outcome::Value(Value::Text("app:2 (sha256:bbbb)".into()))
        );
        assert!(boolean(&out, "docker.recent_deploy"));
        assert_eq!(
            number(&out, "docker.restarts"),
            1.0,
            "the new container's restarts all happened since the last poll"
        );

        // Ten minutes later neither the creation nor the image change is recent.
        let mut same = snap("c2", 1, 5_010);
        same.image_id = "sha256:bbbb".into();
        same.created_at = Some(5_005 * S);
        let out = poll(&mut probe, 5_700, found(same), vec![]);
        assert!(!boolean(&out, "docker.recent_deploy"));
        assert!(matches!(
            value(&out, "docker.previous_image"),
            Outcome::Value(_)
        ));
    }

    #[test]
    fn a_restart_of_the_same_container_and_image_is_never_a_deploy_but_a_new_container_is() {
        let mut probe =
            DockerProbe::new(config(&[("HARVEN_WATCHDOG__DOCKER__DEPLOY_WINDOW", "15m")]));
        let mut run = |id: &str, count: i64, started: i64, now: i64| {
            let mut s = snap(id, count, started);
            s.created_at = Some(1_000 * S);
            poll(&mut probe, now, found(s), vec![])
        };
        let out = run("c1", 0, 1_000, 10_000);
        assert!(!boolean(&out, "docker.recent_deploy"), "created long ago");
        // The restart policy restarts it (an OOM-kill or crash loop), then someone runs
        // `docker restart` (Docker's count back to 0): restarts, not deploys.
        let out = run("c1", 3, 10_010, 10_015);
        assert!(!boolean(&out, "docker.recent_deploy"), "restart policy");
        assert_eq!(number(&out, "docker.restarts"), 3.0);
        let out = run("c1", 0, 10_020, 10_030);
        assert!(!boolean(&out, "docker.recent_deploy"), "a manual restart");
        let note = out
            .iter()
            .find(|o| o.key.name == "docker.recent_deploy")
            .and_then(|o| o.note.clone());
        assert_eq!(
            note.as_deref(),
            Some("same container and image for the last 15m (restarts are not deploys)")
        );
        // `docker-compose up -d` recreates it on the same image: another ID is a deploy.
        let out = run("c2", 0, 10_040, 10_045);
        assert!(boolean(&out, "docker.recent_deploy"), "recreated");
        assert_eq!(
            number(&out, "docker.restarts"),
            4.0,
            "the name's restarts are still within the window"
        );
        let out = run("c2", 0, 10_040, 10_045 + 15 * 60 + 1);
        assert!(!boolean(&out, "docker.recent_deploy"), "the window is over");
        assert_eq!(
            number(&out, "docker.restarts"),
            0.0,
            "and so is the restarts'"
        );
    }

    #[test]
    fn oom_events_count_after_first_sight_even_when_inspect_says_no() {
        let mut probe = DockerProbe::new(config(&[]));
        let oom = || Pending {
            ooms: 3,
            ..Pending::default()
        };
        let out = poll(
            &mut probe,
            100,
            found(snap("c1", 0, 90)),
            vec![("c1", oom())],
        );
        assert!(
            !boolean(&out, "docker.oom_killed"),
            "first sight: state only"
        );
        let out = poll(
            &mut probe,
            115,
            found(snap("c1", 0, 90)),
            vec![("c1", oom())],
        );
        assert!(boolean(&out, "docker.oom_killed"));
        // Held for the evidence window (10 min), not for the one poll that saw it.
        let out = poll(&mut probe, 130, found(snap("c1", 0, 90)), vec![]);
        assert!(boolean(&out, "docker.oom_killed"), "held");
        let note = out
            .iter()
            .find(|o| o.key.name == "docker.oom_killed")
            .and_then(|o| o.note.clone());
        assert_eq!(note.as_deref(), Some("OOM-killed 15s ago (held for 10m)"));
        let out = poll(&mut probe, 714, found(snap("c1", 0, 90)), vec![]);
        assert!(boolean(&out, "docker.oom_killed"), "still within 10 min");
        let out = poll(&mut probe, 715, found(snap("c1", 0, 90)), vec![]);
        assert!(!boolean(&out, "docker.oom_killed"), "10 min after the kill");
    }

    #[test]
    fn an_exited_run_with_an_oom_event_stays_oom_killed_until_the_next_run() {
        let mut probe = DockerProbe::new(config(&[]));
        let out = poll(&mut probe, 100, found(snap("c1", 0, 90)), vec![]);
        assert!(!boolean(&out, "docker.oom_killed"));
        // Killed for memory, but the Engine's flag lost its race: exit 137, OOMKilled=false.
        let mut dead = snap("c1", 0, 90);
        dead.running = false;
        dead.exit_code = Some(137);
        let oom = Pending {
            ooms: 1,
            last_oom: Some(101 * S),
            ..Pending::default()
        };
        let out = poll(&mut probe, 115, found(dead), vec![("c1", oom)]);
        assert!(boolean(&out, "docker.oom_killed"));
        let mut dead = snap("c1", 0, 90);
        dead.running = false;
        let out = poll(&mut probe, 130, found(dead), vec![]);
        assert!(boolean(&out, "docker.oom_killed"), "still the last run");
        // Started again (by hand): the new run was not killed, but the kill stays evidence for the
        // window after the last poll that saw the killed run.
        let mut again = snap("c1", 0, 140);
        again.running = false;
        let out = poll(&mut probe, 145, found(again.clone()), vec![]);
        assert!(boolean(&out, "docker.oom_killed"), "held");
        let out = poll(&mut probe, 730, found(again), vec![]);
        assert!(!boolean(&out, "docker.oom_killed"), "10 min after");
    }

    #[test]
    fn a_container_first_seen_exited_counts_the_oom_events_of_its_last_run() {
        let mut probe = DockerProbe::new(config(&[]));
        let mut dead = snap("c1", 0, 90);
        dead.running = false;
        let seen = Seen::Found(Box::new(Found {
            snap: dead,
            memory: None,
            logs: None,
            run_oom: Some(91 * S),
        }));
        let out = poll(&mut probe, 100, seen, vec![]);
        assert!(boolean(&out, "docker.oom_killed"));
    }

    #[test]
    fn a_missing_configured_container_is_only_not_present() {
        let mut probe = DockerProbe::new(config(&[]));
        let out = poll(&mut probe, 100, Seen::Missing, vec![]);
        assert_eq!(out.len(), 1);
        assert!(!boolean(&out, "docker.present"));
        let mut out = Vec::new();
        let gone = Watched {
            configured: false,
            ..watched("gone", &[])
        };
        probe.apply(t(100), &gone, Seen::Missing, &mut HashMap::new(), &mut out);
        assert!(
            out.is_empty(),
            "a compose container removed meanwhile is just gone"
        );
    }

    fn line(stamp: &str, text: &str) -> String {
        format!("{stamp} {text}\n")
    }

    #[test]
    fn log_lines_at_or_before_the_cursor_are_not_counted_again() {
        let cfg = config(&[]);
        let names: Vec<_> = cfg.log_patterns.iter().map(|p| p.name.clone()).collect();
        let cursor = parse_time("2026-11-24T21:00:05.5Z").expect("time");
        let mut w = LogWindow {
            counts: vec![0; names.len()],
            newest: cursor,
            lines: 0,
            capped: false,
        };
        let chunk = [
            line(
                "2026-11-24T21:00:05.1Z",
                "ERROR openai 429 counted last poll",
            ),
            line(
                "2026-11-24T21:00:05.5Z",
                "ERROR openai 429 the cursor's own line",
            ),
            line(
                "2026-11-24T21:00:05.500000001Z",
                "ERROR calling OpenAI: 429 Too Many Requests",
            ),
            line("2026-11-24T21:00:06Z", "INFO all good"),
            "no timestamp at all\n".to_owned(),
        ]
        .concat();
        w.take(chunk.as_bytes(), cursor, &cfg.log_patterns);
        let count = |p: &str| w.counts[names.iter().position(|n| n == p).expect(p)];
        assert_eq!(w.lines, 2);
        assert_eq!((count("error"), count("openai"), count("429")), (1, 1, 1));
        assert_eq!(count("supabase"), 0);
        assert_eq!(w.newest, parse_time("2026-11-24T21:00:06Z").expect("time"));
    }

    #[test]
    fn list_statuses_keep_what_does_not_move_with_time() {
        let cases = [
            ("Up 5 minutes (healthy)", "Up _ (healthy)", Some(300)),
            ("Up Less than a second", "Up _", Some(0)),
            (
                "Up About an hour (health: starting)",
                "Up _ (health: starting)",
                Some(3_600),
            ),
            (
                "Exited (137) 2 hours ago",
                "Exited (137) _ ago",
                Some(7_200),
            ),
            (
                "Restarting (1) 1 second ago",
                "Restarting (1) _ ago",
                Some(1),
            ),
            ("Created", "Created", None),
            ("", "", None),
        ];
        for (text, stable, secs) in cases {
            assert_eq!(split_status(text), (stable.to_owned(), secs), "{text}");
        }
        // Docker's buckets map to increasing numbers: a later text never reads as shorter.
        let ladder = [
            "Less than a second",
            "59 seconds",
            "About a minute",
            "59 minutes",
            "About an hour",
            "47 hours",
            "2 days",
            "13 days",
            "2 weeks",
            "8 weeks",
            "2 months",
            "23 months",
            "2 years",
        ];
        let secs: Vec<u64> = ladder
            .iter()
            .map(|d| split_status(&format!("Up {d}")).1.expect(d))
            .collect();
        assert!(secs.windows(2).all(|w| w[0] < w[1]), "{secs:?}");
    }

    #[test]
    fn a_list_entry_changed_when_its_state_health_or_run_did() {
        let listed = |id: &str, status: &str| {
            let (status, up_for) = split_status(status);
            Listed {
                id: id.to_owned(),
                state: "running".to_owned(),
                status,
                up_for,
            }
        };
        let before = listed("c1", "Up 5 minutes (healthy)");
        assert!(!listed("c1", "Up 6 minutes (healthy)").changed_since(&before));
        assert!(listed("c1", "Up 6 minutes (unhealthy)").changed_since(&before));
        assert!(
            listed("c1", "Up 3 seconds (healthy)").changed_since(&before),
            "restarted"
        );
        assert!(
            listed("c2", "Up 6 minutes (healthy)").changed_since(&before),
            "recreated"
        );
        let mut exited = listed("c1", "Exited (1) 2 seconds ago");
        exited.state = "exited".to_owned();
        assert!(exited.changed_since(&before));
    }

    #[test]
    fn the_reconcile_inspects_changed_containers_and_a_bounded_share_of_the_rest() {
        let mut probe = DockerProbe::new(config(&[]));
        let listed = Listed {
            id: "c".to_owned(),
            state: "running".to_owned(),
            status: "Up _".to_owned(),
            up_for: Some(600),
        };
        let watched: Vec<Watched> = (0..100)
            .map(|i| Watched {
                listed: Some(Listed {
                    id: format!("c{i}"),
                    ..listed.clone()
                }),
                ..watched(&format!("app{i}"), &[])
            })
            .collect();
        // First sight: every container.
        assert!(
            probe
                .to_inspect(&watched, &HashSet::new())
                .iter()
                .all(|i| *i)
        );
        for (n, w) in watched.iter().enumerate() {
            let mut t = Tracked::first(&snap(&format!("c{n}"), 0, 100), 0, t(0), 0, None);
            t.listed = w.listed.clone().expect("listed");
            // app0 was inspected longest ago, app99 most recently.
            t.inspected = 1 + n as u64;
            probe.tracked.insert(w.name.clone(), t);
        }
        let chosen = |inspect: Vec<bool>| -> Vec<usize> {
            inspect
                .iter()
                .enumerate()
                .filter_map(|(i, b)| b.then_some(i))
                .collect()
        };
        assert_eq!(
            chosen(probe.to_inspect(&watched, &HashSet::new())),
            (0..5).collect::<Vec<_>>(),
            "the oldest twentieth"
        );
        // An event, a health change and a failed inspection each add their container.
        let mut changed = watched;
        changed[50].listed.as_mut().expect("listed").status = "Up _ (unhealthy)".to_owned();
        probe.tracked.get_mut("app70").expect("tracked").inspected = 0;
        let events = HashSet::from(["c60".to_owned()]);
        assert_eq!(
            chosen(probe.to_inspect(&changed, &events)),
            vec![0, 1, 2, 3, 4, 50, 60, 70]
        );
        // A container the list does not have is not inspected (it is reported missing).
        changed[0].listed = None;
        assert!(!probe.to_inspect(&changed, &events)[0]);
    }

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
        let why =
            "no container matches role backend (names harven-backend; compose service backend)";
        for name in [
            "docker.running",
            "docker.oom_killed",
            "docker.image",
            "docker.replicas",
            "docker.worst_replica",
        ] {
            assert_eq!(
                of_role(&out, name, "backend", &[]),
                Outcome::NoData(why.into()),
                "{name}"
            );
        }
        assert_eq!(
            of_role(
                &out,
                "docker.log_lines_per_minute",
                "backend",
                &[("pattern", "error")]
            ),
            Outcome::NoData(why.into())
        );
    }

    #[test]
    fn a_roles_image_is_its_newest_replicas_and_a_change_is_a_deploy() {
        let mut probe =
            DockerProbe::new(config(&[("HARVEN_WATCHDOG__DOCKER__DEPLOY_WINDOW", "10m")]));
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
            roles::matches(role(r), std::iter::once(name), l)
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

    #[test]
    fn docker_times_parse_with_any_precision_and_never_is_none() {
        assert_eq!(
            parse_time("1970-01-01T00:00:01.000000002Z"),
            Some(1_000_000_002)
        );
        assert_eq!(parse_time("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(parse_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_time("garbage"), None);
    }

    #[test]
    fn memory_growth_needs_a_tenth_of_the_window_and_restarts_with_the_run() {
        let window = Duration::from_secs(1000);
        let mut m = MemoryTrend::default();
        let run = Some(1);
        assert!(matches!(
            m.observe(run, t(0), 100.0, window),
            Outcome::NoData(_)
        ));
        assert!(matches!(
            m.observe(run, t(50), 150.0, window),
            Outcome::NoData(_)
        ));
        // 100 s after the first sample: +3600 bytes over 100 s = 129600 bytes per hour.
        assert_eq!(
            m.observe(run, t(100), 3_700.0, window),
            Outcome::number(129_600.0)
        );
        assert!(m.samples.len() <= MEMORY_SAMPLES as usize + 1);
        // A new run starts over.
        assert!(matches!(
            m.observe(Some(2), t(110), 10.0, window),
            Outcome::NoData(_)
        ));
        // Samples older than the window are forgotten; the ring stays bounded.
        for i in 0..10_000 {
            let _ = m.observe(Some(2), t(110 + i * 7), 10.0 + i as f64, window);
        }
        assert!(
            m.samples.len() <= MEMORY_SAMPLES as usize + 1,
            "{}",
            m.samples.len()
        );
        let oldest = m.samples.front().expect("samples").0;
        assert!(t(110 + 9_999 * 7).saturating_since(oldest) <= window);
    }

    fn event(action: &str, name: &str, project: Option<&str>, time_nano: i64) -> EventMessage {
        let mut attributes = HashMap::from([("name".to_owned(), name.to_owned())]);
        if let Some(p) = project {
            attributes.insert(COMPOSE_PROJECT_LABEL.to_owned(), p.to_owned());
        }
        EventMessage {
            action: Some(action.to_owned()),
            actor: Some(EventActor {
                id: Some(format!("id-{name}")),
                attributes: Some(attributes),
            }),
            time_nano: Some(time_nano),
            ..EventMessage::default()
        }
    }

    #[test]
    fn events_of_watched_containers_are_recorded_and_replays_skipped() {
        let inbox = Mutex::new(Inbox::default());
        let watch = Watch {
            names: HashSet::from(["app".to_owned()]),
            project: Some("harven".to_owned()),
            roles: default_config().roles,
        };
        assert!(record(
            &inbox,
            &watch,
            &event("start", "app", None, 10),
            None
        ));
        assert!(record(
            &inbox,
            &watch,
            &event("oom", "worker", Some("harven"), 11),
            None
        ));
        assert!(!record(
            &inbox,
            &watch,
            &event("start", "other", Some("x"), 12),
            None
        ));
        assert!(record(
            &inbox,
            &watch,
            &event("health_status: unhealthy", "app", None, 13),
            None
        ));
        // A replica of the backend role in any project, by its Compose service label.
        let mut replica = event("oom", "shop-backend-2", Some("shop"), 12);
        if let Some(a) = replica.actor.as_mut().and_then(|a| a.attributes.as_mut()) {
            a.insert(COMPOSE_SERVICE_LABEL.to_owned(), "backend".to_owned());
        }
        assert!(record(&inbox, &watch, &replica, None));
        // A re-subscription from the newest event skips what it replays up to there.
        assert!(!record(
            &inbox,
            &watch,
            &event("start", "app", None, 13),
            Some(13)
        ));
        let i = lock(&inbox);
        assert_eq!(i.pending["id-app"].starts, vec![10]);
        assert_eq!(i.pending["id-worker"].ooms, 1);
        assert_eq!(i.pending["id-shop-backend-2"].ooms, 1);
        assert!(!i.pending.contains_key("id-other"));
        assert_eq!(i.newest, Some(13));
    }

    #[test]
    fn subscriptions_resume_at_the_newest_event_or_the_latest_poll() {
        let mut inbox = Inbox::default();
        assert_eq!(resume_point(&inbox), (None, None));
        inbox.horizon = Some(Timestamp::from_unix_millis(1_795_000_000_250));
        assert_eq!(
            resume_point(&inbox),
            (Some("1795000000.250000000".to_owned()), None)
        );
        inbox.newest = Some(1_795_000_001_000_000_007);
        assert_eq!(
            resume_point(&inbox),
            (
                Some("1795000001.000000007".to_owned()),
                Some(1_795_000_001_000_000_007)
            )
        );
    }

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
    fn engine_errors_never_quote_a_payload() {
        let e = EngineError::JsonDataError {
            message: "\"Env\":[\"JWT_SECRET=s3cr3t\"".into(),
            column: 42,
        };
        let f = engine_failure(&e);
        assert_eq!(f.kind, FailureKind::Malformed);
        assert!(!f.detail.contains("s3cr3t"), "{}", f.detail);
        let f = engine_failure(&EngineError::SocketNotFoundError("/x.sock".into()));
        assert_eq!(f.kind, FailureKind::Connect);
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

    /// The default configuration, loaded once: compiling its log patterns per case would be most of
    /// a property's time.
    fn default_config() -> DockerConfig {
        static CONFIG: std::sync::LazyLock<DockerConfig> = std::sync::LazyLock::new(|| config(&[]));
        CONFIG.clone()
    }

    /// Real `docker logs --timestamps` lines of the backend, the base of near-valid chunks.
    const REAL_LOG: &str = "2026-11-24T21:00:05.123456789Z INFO:     172.18.0.1:51234 - \"GET /health HTTP/1.1\" 200 OK\n2026-11-24T21:00:06.5Z ERROR calling OpenAI: 429 Too Many Requests\n2026-11-24T21:00:07Z sqlalchemy.exc.OperationalError: FATAL: too many connections for role \"postgres\"\n";

    /// Counting a chunk after `cursor`: never more lines than the chunk has, never more matches than
    /// lines, and the newest time never moves back.
    fn window_is_sound(chunk: &[u8], cursor: Nanos) -> Result<(), TestCaseError> {
        let cfg = default_config();
        let mut w = LogWindow {
            counts: vec![0; cfg.log_patterns.len()],
            newest: cursor,
            lines: 0,
            capped: false,
        };
        w.take(chunk, cursor, &cfg.log_patterns);
        let segments = chunk
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
        prop_assert!(w.lines <= segments as u64);
        prop_assert!(w.counts.iter().all(|c| *c <= w.lines), "{:?}", w);
        prop_assert!(w.newest >= cursor);
        Ok(())
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

    #[test]
    fn a_corrupt_restart_count_does_not_overflow() {
        let mut probe = DockerProbe::new(default_config());
        poll(
            &mut probe,
            2_000,
            found(snap("c1", -587_284_364_793_339_017, 1_990)),
            vec![],
        );
        let out = poll(
            &mut probe,
            2_015,
            found(snap("c1", i64::MAX, 1_990)),
            vec![],
        );
        assert_eq!(number(&out, "docker.restarts"), i64::MAX as f64);
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

        #[test]
        fn prop_any_text_is_a_time_or_none(text in crate::mutate::garbage()) {
            if let Some(n) = parse_time(&text) {
                prop_assert!(n > 0);
            }
        }

        #[test]
        fn prop_engine_times_round_trip(nanos in 1..253_402_300_799_999_999_999 as Nanos) {
            let secs = u64::try_from(nanos.div_euclid(NANOS_PER_SEC)).expect("positive");
            let sub = u32::try_from(nanos.rem_euclid(NANOS_PER_SEC)).expect("below a second");
            let text = humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::new(secs, sub)).to_string();
            prop_assert_eq!(parse_time(&text), Some(nanos));
        }

        #[test]
        fn prop_any_log_chunk_is_counted_within_bounds(
            chunk in prop::collection::vec(any::<u8>(), 0..400),
            cursor in any::<Nanos>(),
        ) {
            window_is_sound(&chunk, cursor)?;
        }

        #[test]
        fn prop_near_valid_log_chunks_are_counted_within_bounds(
            chunk in crate::mutate::near(REAL_LOG),
            cursor in prop_oneof![Just(0), Just(1_795_000_000_000_000_000), any::<Nanos>()],
        ) {
            window_is_sound(&chunk, cursor)?;
        }
    }
}
