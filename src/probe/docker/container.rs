//! One watched container between polls and at each: what the probe remembers of it ([`Tracked`]: its
//! ID, restart accounting, image history, evidence windows, log cursor, latest inspection), and the
//! `docker.*{container}` observations a poll folds from its look ([`DockerProbe::apply`]): restarts,
//! OOM kills and deploys over their windows, memory, secrets' presence and log rates.
//!
//! Restarts are counted without double counting: Docker's restart count grows when the restart policy
//! decides to restart (at `die`), the `start` event comes after the backoff, and both can land on
//! either side of a poll. The probe keeps two cumulative counts per container ID since it first saw
//! it, restart-count increases and `start` events after the run it first saw, and takes the growth
//! of their maximum as the poll's new restarts.
//!
//! It does not talk to the Engine (the look in `inspect` did) and knows no roles: `roles` folds these
//! observations per role afterwards.

use std::collections::HashMap;
use std::time::Duration;

use super::events::Pending;
use super::inspect::{Found, Seen, Snapshot};
use super::logs::LogWindow;
use super::memory::{MEMORY_OBSERVATIONS, MemoryTrend};
use super::reconcile::{Listed, Watched};
use super::time::{NANOS_PER_SEC, Nanos, nanos_of};
use super::{DockerProbe, no_data};
use crate::clock::Timestamp;
use crate::locale::{Msg, MsgId};
use crate::observe::{Failure, Key, Observation, Outcome};
use crate::probe::window::{self, WindowCounts};

/// A `start` event this close after the run the probe saw is that run's own start, not a restart:
/// Docker logs the event a few milliseconds after it records `StartedAt`. Restarts this quick are
/// still counted by the restart count when the restart policy made them.
const SAME_RUN_SLACK: Nanos = 1_000_000_000;

/// What the probe remembers about one watched container between polls.
#[derive(Debug)]
pub(super) struct Tracked {
    /// The container ID; a new ID under the same name is a recreated container (a deploy).
    pub(super) id: String,
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
    pub(super) log_cursor: Nanos,
    /// Matching lines counted by each poll, per pattern (in `log_patterns` order), over
    /// `log_rate_window`: `docker.log_lines_per_minute` is their rate. Kept across a recreation.
    log_counts: WindowCounts,
    /// The previous poll read as many log lines as it may: logged when this starts and stops.
    log_capped: bool,
    /// The latest inspection, reused by the polls that do not inspect again.
    pub(super) snap: Snapshot,
    /// What the list endpoint said at the latest inspection (its uptime: at the previous poll): a
    /// change asks for another inspection.
    pub(super) listed: Listed,
    /// The poll of the latest inspection (the reconcile inspects the oldest first).
    pub(super) inspected: u64,
}

impl DockerProbe {
    /// Folds one container's inspection into the state and its observations into `out`.
    pub(super) fn apply(
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
            None => no_data(key("docker.exit_code"), MsgId::NoExitCode),
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
            .with_note(Msg::new(MsgId::RestartsWithin).msg("over", within)),
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
            (true, None) => no_data(key("docker.uptime_seconds"), MsgId::NoStartTime),
            (false, _) => no_data(key("docker.uptime_seconds"), MsgId::NotRunning),
        });
        out.push(Observation::text(key("docker.image"), &snap.image_label));
        out.push(match &t.image_change {
            Some((before, _)) => Observation::text(key("docker.previous_image"), before),
            None => no_data(key("docker.previous_image"), MsgId::NoImageChange),
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
            None => no_data(key("docker.memory_limit_bytes"), MsgId::NoMemoryLimit),
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
                    MsgId::NoMemoryUsage
                } else {
                    MsgId::NotRunning
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
            None => no_data(key("docker.memory_ratio"), MsgId::NoMemoryLimit),
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
                    out.push(no_data(pattern_key(&p.name), MsgId::FirstLook));
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
                        Observation::number(pattern_key(&p.name), rate).with_note(
                            Msg::new(MsgId::LinesPerMinuteOver).msg("over", over.clone()),
                        ),
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
    pub(super) fn deployed_at(&self) -> Option<Nanos> {
        let changed = self.image_change.as_ref().map(|(_, at)| nanos_of(*at));
        self.snap.created_at.max(changed)
    }

    /// The state of a container ID seen for the first time at `now` (`patterns`: the log patterns
    /// counted); `previous` carries the image history of the name (a recreated container).
    pub(super) fn first(
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
    let ago = |d: Duration| Duration::from_secs(d.as_secs());
    let mut why = Vec::new();
    if let Some((before, at)) = &t.image_change {
        let d = now.saturating_since(*at);
        if d <= window {
            why.push(
                Msg::new(MsgId::ImageChanged)
                    .arg("before", before)
                    .duration("ago", ago(d)),
            );
        }
    }
    if let Some(at) = t.recreated {
        let d = now.saturating_since(at);
        if d <= window {
            why.push(Msg::new(MsgId::ContainerRecreated).duration("ago", ago(d)));
        }
    }
    if let Some(created) = snap.created_at {
        let d = ago_ns(created);
        if d <= window && t.recreated.is_none() {
            why.push(Msg::new(MsgId::ContainerCreated).duration("ago", ago(d)));
        }
    }
    if why.is_empty() {
        Observation::boolean(key, false)
            .with_note(Msg::new(MsgId::SameContainer).duration("window", window))
    } else {
        Observation::boolean(key, true).with_note(Msg::list(why))
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
    match *seen {
        Some(at) if now.saturating_since(at) < window => {
            let d = Duration::from_secs(now.saturating_since(at).as_secs());
            let note = if now_killed {
                Msg::new(MsgId::OomNow).duration("window", window)
            } else {
                Msg::new(MsgId::OomAgo)
                    .duration("ago", d)
                    .duration("window", window)
            };
            Observation::boolean(key, true).with_note(note)
        }
        _ => Observation::boolean(key, false)
            .with_note(Msg::new(MsgId::NoOom).duration("window", window)),
    }
}

#[cfg(test)]
mod tests;
