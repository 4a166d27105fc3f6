//! The Engine's event stream: a background task owned by the probe follows it (`start`, `die`, `oom`,
//! `restart`, `health_status`, filtered server-side), records the events of watched containers
//! ([`Watch`]) in the [`Inbox`] by container ID, and wakes the runner; and [`last_run_oom`] asks the
//! Engine's event buffer for the OOM events of one past run.
//!
//! The task subscribes lazily (on the first poll) and again after the stream breaks (the Engine
//! restarted, the socket went away), with a doubling backoff, resuming `since` the newest event it had
//! or the latest poll, whichever is later; events in a gap the Engine no longer replays are only
//! missed by the event path, never by the reconcile.
//!
//! It counts and decides nothing: a poll takes the inbox and folds it (`container`), and the polls stay
//! the source of truth.

use std::collections::{HashMap, HashSet};
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::EventMessage;
use bollard::query_parameters::EventsOptionsBuilder;
use futures_util::StreamExt;
use tokio::sync::Notify;

use super::errors::engine_failure;
use super::requests::EngineRequests;
use super::time::{NANOS_PER_SEC, Nanos, engine_time, nanos_of};
use super::{COMPOSE_PROJECT_LABEL, connect, roles};
use crate::clock::Timestamp;
use crate::config::RoleConfig;
use crate::observe::Failure;

/// Containers with pending events kept between two polls, at most (events of more are dropped; the
/// reconcile poll still sees their state).
const MAX_PENDING_CONTAINERS: usize = 1024;

/// `start` event times kept per container between two polls; more are counted without their time.
const MAX_PENDING_STARTS: usize = 256;

/// Backoff of the event subscription after a failure, doubling up to the maximum.
const EVENTS_BACKOFF_MIN: Duration = Duration::from_secs(1);
const EVENTS_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Events from the background task, by container ID, waiting for the next poll.
#[derive(Debug, Default)]
pub(super) struct Inbox {
    pub(super) pending: HashMap<String, Pending>,
    /// Engine time of the newest event recorded: a re-subscription resumes there.
    newest: Option<i64>,
    /// Start of the latest poll (watchdog clock): a subscription made after it replays the events
    /// since then, so the gap between a poll and a (re)subscription loses nothing.
    pub(super) horizon: Option<Timestamp>,
}

/// One container's events since the previous poll.
#[derive(Debug, Default)]
pub(super) struct Pending {
    /// Engine times of `start` events (at most [`MAX_PENDING_STARTS`]).
    pub(super) starts: Vec<Nanos>,
    /// `start` events beyond the cap, counted without their time.
    pub(super) extra_starts: u64,
    /// `oom` events (the kernel killed a process of the container for memory).
    pub(super) ooms: u64,
    /// Engine time of the newest of them.
    pub(super) last_oom: Option<Nanos>,
}

/// Which containers' events matter: the configured names, the compose project and the roles'
/// containers (an event's attributes carry the container's name and labels).
#[derive(Debug, Clone)]
pub(super) struct Watch {
    pub(super) names: HashSet<String>,
    pub(super) project: Option<String>,
    pub(super) roles: Vec<RoleConfig>,
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

/// The newest `oom` event of container `id` from `since` (engine time) to `until`, from the Engine's
/// event buffer; `None` when there is none or the question fails (then only the state's flag counts).
pub(super) async fn last_run_oom(
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

/// When the Engine logged `event`, in Unix nanoseconds.
fn event_time(event: &EventMessage) -> Option<Nanos> {
    event
        .time_nano
        .map(Nanos::from)
        .or_else(|| event.time.map(|s| Nanos::from(s) * NANOS_PER_SEC))
}

/// Follows the Engine's events until aborted, recording those of watched containers into `inbox`
/// and waking the runner. Re-subscribes after any failure with a doubling backoff.
pub(super) async fn follow_events(
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
pub(super) fn lock(inbox: &Mutex<Inbox>) -> MutexGuard<'_, Inbox> {
    inbox
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use bollard::models::EventActor;

    use super::*;
    use crate::probe::docker::COMPOSE_SERVICE_LABEL;
    use crate::probe::docker::fixtures::default_config;

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
}
