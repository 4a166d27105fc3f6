//! Alerts pushed to the watchdog by Alertmanager or Grafana (`POST /api/webhooks/alertmanager`),
//! kept in an [`Inbox`] and read like any source: the [`Feed`] is a [`Probe`] whose poll reports
//! what the inbox holds, so the alerts reach the engine through the same channel, evidence table and
//! rules as Prometheus' readings.
//!
//! # What it reports (source `alerts`)
//!
//! - `alerts.firing{section}`: for every section of the runbook, how many alerts routed to it
//!   ([`crate::runbook::alerts`]) are firing. The runbook's `<section>.alert_firing` rules fire at
//!   once (`for = "0s"`: the sender already waited its own `for`) and clear after the section's
//!   `resolve_after` once it reads 0.
//! - `alerts.stale`: alerts gone stale (below); `watchdog.alerts_stale` pages about them.
//! - `alerts.unmatched`: firing alerts that reach no section: listed (`GET /api/alerts`, `diagnose`),
//!   counted by reason and logged once per alert name, never dropped silently.
//!
//! # Time: when an alert is believed
//!
//! A firing alert is believed until its sender says it resolved, or for
//! [`resend_within`](crate::runbook::alerts::AlertRouting::resend_within) after the sender last
//! said it fires (or until the `endsAt` the sender gave, when it gave a real, earlier one). Why
//! not `endsAt` alone: Alertmanager sends `endsAt = 0001-01-01T00:00:00Z` for every firing alert
//! (it hides an end not reached yet; Grafana does the same) and notifies again only on a change or
//! every `repeat_interval` (4h by default), so a firing alert is *not* re-sent before its end time
//! would pass. Past its time without word the alert is **stale**: the sender went silent (it is
//! down, or a resolution was lost on the way). A stale alert is never read as resolved (no false
//! "resolved" email): its section's reading is unknown, so the symptom neither fires nor clears,
//! and `watchdog.alerts_stale` pages that the watchdog lost sight of it. After
//! [`forget_after`](crate::runbook::alerts::AlertRouting::forget_after) (a day) it is forgotten,
//! and its section reads what the other alerts say: no symptom is held for ever.
//!
//! The inbox lives in memory, outlives a reload, and is kept in the store ([`Inbox::persist_in`]:
//! one versioned, bounded JSON blob under [`STORE_NAME`], each replica's its own on a shared store
//! ([`Store::own_name`]), rewritten after each notification), so a
//! restart reads back what the senders said: a firing alert stays firing (or goes stale on its own
//! time), a resolution heard before the restart stays heard. Without a blob to read (the first start
//! of this version, a damaged blob), a section whose alert symptom the store restored reads unknown
//! without an alert for `resend_within` (an alert still firing is re-sent by then), so the empty
//! inbox of a new process does not clear it ([`Inbox::hold_until_resent`]); every other section
//! reads 0 at once.
//!
//! An alert graded critical by its sender (`[alerts] critical_label = critical_value`,
//! `severity="critical"` by default) also counts in `alerts.critical{section}`, whose rule makes
//! the incident critical. A firing section's note names its alerts and quotes their `summary`,
//! `description` and http(s) `runbook_url` annotations: the alert's own evidence in emails and on
//! the incident page.
//!
//! It knows nothing of HTTP (the route decodes the body and calls [`Inbox::ingest`]) and nothing of
//! the engine: it turns what senders said into observations.

pub mod payload;
pub mod remote;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::Notify;

use crate::clock::Timestamp;
use crate::observe::{Failure, FailureKind, Key, Observation, Outcome};
use crate::probe::Probe;
use crate::runbook::alerts::{AlertRouter, AlertRouting, Routed, Unmatched};
use crate::store::Store;
pub use payload::{AlertStatus, Webhook};

/// The source name of the alerts' reports (`probe_up{probe="alerts"}`, `source_failing`).
pub const SOURCE: &str = "alerts";

/// Most alerts kept at once. Past it a new alert is dropped, counted and logged (a sender that
/// floods cannot grow the daemon's memory); those already kept go on being updated.
pub const MAX_ALERTS: usize = 2_000;

/// How long a resolved alert stays listed at `GET /api/alerts` (it counts for nothing).
pub const KEEP_RESOLVED: Duration = Duration::from_secs(3600);

/// Most alert names logged as unmatched (once each): past it, unmatched alerts are only counted.
const MAX_LOGGED_NAMES: usize = 1_000;

/// How often the feed reports without a notification: a stale alert is seen this soon.
const FEED_INTERVAL: Duration = Duration::from_secs(10);

/// The name of the inbox's blob in the store's key-value table ([`Store::put_value`]): every kept
/// alert, rewritten after each notification, read back at the start ([`Inbox::persist_in`]).
pub const STORE_NAME: &str = "alerts.inbox";

/// The blob's format version: a blob of another version is ignored (logged), never misread.
pub const BLOB_VERSION: u32 = 1;

/// Largest blob written. [`MAX_ALERTS`] alerts with long annotations could pass it: then the
/// resolved ones go first, then the firing ones least recently heard (see [`blob_of`]).
pub const MAX_BLOB: usize = 4 << 20;

/// The blob: its version and the alerts by identity.
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved<A> {
    version: u32,
    alerts: Vec<A>,
}

/// One alert as the inbox keeps it: the sender's latest word on it, bounded. Also the form it is
/// kept in the store ([`STORE_NAME`]), so its fields are the blob's format: add fields with a
/// `serde(default)`, or raise [`BLOB_VERSION`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Kept {
    alertname: String,
    status: AlertStatus,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    starts_at: String,
    ends_at: String,
    generator_url: String,
    /// When the latest notification carrying it arrived (our clock): staleness counts from here.
    heard_at: Timestamp,
    /// Past this without word, a firing alert is stale.
    believed_until: Timestamp,
}

/// An alert's state at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    /// Firing, by a word recent enough.
    Firing,
    /// Said to fire, but not said again within its time: unknown, never resolved.
    Stale,
    /// Resolved by its sender (listed for [`KEEP_RESOLVED`]).
    Resolved,
}

impl AlertState {
    /// The API's word.
    pub fn label(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Stale => "stale",
            Self::Resolved => "resolved",
        }
    }
}

/// One alert as `GET /api/alerts` and `diagnose` list it.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The sender's fingerprint (or the labels, without one).
    pub id: String,
    /// Its `alertname` label.
    pub alertname: String,
    /// Now.
    pub state: AlertState,
    /// The section it is routed to, or why none.
    pub routed: Routed,
    /// Graded critical by its sender (`[alerts] critical_label = critical_value`).
    pub critical: bool,
    /// Its labels, bounded ([`payload::bounded`]).
    pub labels: BTreeMap<String, String>,
    /// Its annotations (`summary`, `description`), bounded.
    pub annotations: BTreeMap<String, String>,
    /// `startsAt` as the sender wrote it.
    pub starts_at: String,
    /// `endsAt` as the sender wrote it (`0001-01-01…` while firing, from Alertmanager).
    pub ends_at: String,
    /// The rule's page in Prometheus or Grafana.
    pub generator_url: String,
    /// When the latest notification carrying it arrived (our clock).
    pub heard_at: Timestamp,
    /// Until when a firing alert is believed without a word: then it is stale.
    pub believed_until: Timestamp,
}

/// What one notification changed, for the webhook's answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ingested {
    /// Alerts in the notification.
    pub alerts: usize,
    /// Of them, firing.
    pub firing: usize,
    /// Of them, routed to no section.
    pub unmatched: usize,
    /// Of them, dropped: new while the inbox holds [`MAX_ALERTS`].
    pub dropped: usize,
}

/// The alerts pushed to the watchdog; shared by the webhook route (writes), the feed (reads) and
/// `GET /api/alerts`. One per process: a reload keeps it (and hands it the new runbook's routes).
#[derive(Debug)]
pub struct Inbox {
    state: Mutex<State>,
    /// Notified at each notification, so the feed reports it within a second.
    wake: Arc<Notify>,
    metrics: AlertMetrics,
    /// Where every notification's result is kept ([`Inbox::persist_in`]); unset: memory only.
    store: std::sync::OnceLock<Arc<Store>>,
}

#[derive(Debug)]
struct State {
    /// When this process started listening: the end of the warm-up counts from it.
    started: Timestamp,
    /// The current runbook's routes and times.
    router: Arc<AlertRouter>,
    /// By identity.
    alerts: BTreeMap<String, Kept>,
    /// The sections whose alert symptom was restored at the start: unknown without an alert until
    /// `started + resend_within`. `None` until the first generation says.
    held: Option<BTreeSet<String>>,
    /// Alert names already logged as unmatched.
    logged: BTreeSet<String>,
    /// The alerts were read back from the store at the start: they speak for their sections,
    /// which are then never held ([`Inbox::hold_until_resent`]).
    restored: bool,
}

impl Inbox {
    /// An empty inbox started at `now`, routing nowhere until [`Inbox::set_router`].
    pub fn new(now: Timestamp, metrics: AlertMetrics) -> Self {
        let router = AlertRouter::new(&AlertRouting::default(), Vec::new());
        Self {
            state: Mutex::new(State {
                started: now,
                router: Arc::new(router),
                alerts: BTreeMap::new(),
                held: None,
                logged: BTreeSet::new(),
                restored: false,
            }),
            wake: Arc::new(Notify::new()),
            metrics,
            store: std::sync::OnceLock::new(),
        }
    }

    /// Keeps the inbox in `store` from now on (each notification rewrites its blob), after reading
    /// back at `now` what the previous process kept there: a restart then neither forgets a firing
    /// alert nor holds its section unknown for `resend_within`. A blob that cannot be read (another
    /// version, damaged, the store failing) is logged and left: the inbox starts empty, and the
    /// restored sections are held as without a store. Only the first call counts.
    pub fn persist_in(&self, store: Arc<Store>, now: Timestamp) {
        if self.store.get().is_some() {
            return;
        }
        match store.value(&store.own_name(STORE_NAME)) {
            Ok(Some(blob)) => match serde_json::from_slice::<Saved<(String, Kept)>>(&blob) {
                Ok(saved) if saved.version == BLOB_VERSION => {
                    let mut state = self.lock();
                    let n = saved.alerts.len().min(MAX_ALERTS);
                    state
                        .alerts
                        .extend(saved.alerts.into_iter().take(MAX_ALERTS));
                    state.restored = true;
                    Self::prune(&mut state, now);
                    tracing::info!(alerts = n, "the alerts kept before the restart are back");
                }
                Ok(saved) => tracing::warn!(
                    version = saved.version,
                    "the kept alerts are of another version: ignored"
                ),
                Err(e) => tracing::warn!(error = %e, "the kept alerts cannot be read: ignored"),
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "the kept alerts cannot be read from the store"),
        }
        let _ = self.store.set(store);
        self.wake.notify_one();
    }

    /// Writes the inbox to its store, when it has one; a failure is logged (the alerts stay in
    /// memory, and the next notification writes them again).
    fn save(&self) {
        let Some(store) = self.store.get() else {
            return;
        };
        let blob = blob_of(&self.lock().alerts);
        if let Err(e) = store.put_value(&store.own_name(STORE_NAME), &blob) {
            tracing::warn!(error = %e, "the alerts cannot be kept in the store: a restart would forget them");
        }
    }

    /// Holds `sections` (their alert symptoms were restored from the store at the start) unknown
    /// without an alert for `resend_within` after the start: the alerts that fired them are re-sent
    /// by then if they still fire. Only the first call counts: a reload's restored states are this
    /// process's own, and its inbox heard everything since the start.
    pub fn hold_until_resent(&self, sections: BTreeSet<String>) {
        let mut state = self.lock();
        if state.held.is_none() && state.restored {
            // The alerts themselves came back: each section reads what they say.
            state.held = Some(BTreeSet::new());
        }
        if state.held.is_none() {
            if !sections.is_empty() {
                tracing::info!(
                    ?sections,
                    "alert symptoms restored: unknown until their alerts are re-sent or resend_within passes"
                );
            }
            state.held = Some(sections);
        }
    }

    /// Routes by `router` from now on (a generation's runbook); kept alerts are routed again.
    pub fn set_router(&self, router: AlertRouter) {
        self.lock().router = Arc::new(router);
        self.wake.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding it leaves whole alerts (each update is one insert): go on.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one notification received at `now`.
    pub fn ingest(&self, hook: &Webhook, now: Timestamp) -> Ingested {
        let mut out = Ingested {
            alerts: hook.alerts.len(),
            ..Ingested::default()
        };
        let mut state = self.lock();
        let router = Arc::clone(&state.router);
        for alert in &hook.alerts {
            let id = alert.identity();
            let labels = payload::bounded(&alert.labels);
            let alertname = labels.get("alertname").cloned().unwrap_or_default();
            self.metrics.received(alert.status);
            if alert.status == AlertStatus::Firing {
                out.firing += 1;
            }
            if let Routed::Unmatched(why) = router.route(&labels) {
                out.unmatched += 1;
                self.metrics.unmatched(why);
                let room = state.logged.len() < MAX_LOGGED_NAMES;
                if room && state.logged.insert(alertname.clone()) {
                    tracing::warn!(
                        alertname = %alertname,
                        reason = why.label(),
                        "an alert matches no runbook section: it is listed (GET /api/alerts) and counted, never paged; add a route under [alerts] or a section label"
                    );
                }
            }
            if !state.alerts.contains_key(&id) && state.alerts.len() >= MAX_ALERTS {
                out.dropped += 1;
                self.metrics.dropped.inc();
                tracing::warn!(alertname = %alertname, max = MAX_ALERTS, "alert dropped: the inbox is full");
                continue;
            }
            // The sender's end, when it gave a real one ahead of us, can end the belief sooner.
            let resend = now + router.resend_within;
            let believed_until = payload::parse_time(&alert.ends_at)
                .filter(|end| *end > now)
                .map_or(resend, |end| end.min(resend));
            state.alerts.insert(
                id,
                Kept {
                    alertname,
                    status: alert.status,
                    labels,
                    annotations: payload::bounded(&alert.annotations),
                    starts_at: payload::cut(&alert.starts_at),
                    ends_at: payload::cut(&alert.ends_at),
                    generator_url: payload::cut(&alert.generator_url),
                    heard_at: now,
                    believed_until,
                },
            );
        }
        drop(state);
        self.save();
        self.metrics.webhook("accepted");
        self.wake.notify_one();
        out
    }

    /// Counts a refused notification (`malformed`, `too_large`), whose body was not read.
    pub fn rejected(&self, reason: &'static str) {
        self.metrics.webhook(reason);
    }

    /// Forgets what has had its time at `now`: resolved alerts after [`KEEP_RESOLVED`], stale
    /// ones `forget_after` after their last word (logged).
    fn prune(state: &mut State, now: Timestamp) {
        let forget_after = state.router.forget_after;
        state.alerts.retain(|id, a| {
            let keep = match a.status {
                AlertStatus::Resolved => now.saturating_since(a.heard_at) < KEEP_RESOLVED,
                AlertStatus::Firing => now.saturating_since(a.heard_at) < forget_after,
            };
            if !keep && a.status == AlertStatus::Firing {
                tracing::warn!(alertname = %a.alertname, id = %id, heard_at = %a.heard_at, "a stale alert is forgotten: no word from its sender since it was last sent");
            }
            keep
        });
    }

    /// Every kept alert at `now`, routed by the current routes: firing first, then stale, then
    /// resolved, each by name.
    pub fn list(&self, now: Timestamp) -> Vec<Listed> {
        let mut state = self.lock();
        Self::prune(&mut state, now);
        let mut out: Vec<Listed> = state
            .alerts
            .iter()
            .map(|(id, a)| Listed {
                id: id.clone(),
                alertname: a.alertname.clone(),
                state: state_of(a, now),
                routed: state.router.route(&a.labels),
                critical: state.router.is_critical(&a.labels),
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                starts_at: a.starts_at.clone(),
                ends_at: a.ends_at.clone(),
                generator_url: a.generator_url.clone(),
                heard_at: a.heard_at,
                believed_until: a.believed_until,
            })
            .collect();
        let rank = |s: AlertState| match s {
            AlertState::Firing => 0,
            AlertState::Stale => 1,
            AlertState::Resolved => 2,
        };
        out.sort_by(|a, b| {
            (rank(a.state), &a.alertname, &a.id).cmp(&(rank(b.state), &b.alertname, &b.id))
        });
        out
    }

    /// The observations at `now` (see the module's header): one `alerts.firing` per section, and
    /// `alerts.stale` and `alerts.unmatched`.
    pub fn observations(&self, now: Timestamp) -> Vec<Observation> {
        let listed = self.list(now);
        let (warm, router) = {
            let state = self.lock();
            let warm = Warm {
                started: state.started,
                until: state.started + state.router.resend_within,
                sections: state.held.clone().unwrap_or_default(),
            };
            (warm, Arc::clone(&state.router))
        };
        self.metrics.show(&listed);
        observe(
            &listed,
            router.sections(),
            now,
            Some(&warm),
            router.resend_within,
        )
    }
}

/// The blob of `alerts`, at most [`MAX_BLOB`] bytes: firing alerts first, most recently heard
/// first, halved until it fits (a flood of long annotations cannot make the write unbounded).
fn blob_of(alerts: &BTreeMap<String, Kept>) -> Vec<u8> {
    let mut kept: Vec<(&String, &Kept)> = alerts.iter().collect();
    kept.sort_by_key(|(_, a)| {
        (
            a.status == AlertStatus::Resolved,
            std::cmp::Reverse(a.heard_at),
        )
    });
    loop {
        let blob = serde_json::to_vec(&Saved {
            version: BLOB_VERSION,
            alerts: kept.clone(),
        })
        .unwrap_or_default();
        if blob.len() <= MAX_BLOB || kept.is_empty() {
            return blob;
        }
        kept.truncate(kept.len() / 2);
    }
}

/// The start of an inbox, the end of its warm-up and the sections it holds.
#[derive(Debug, Clone)]
pub struct Warm {
    /// When the inbox started.
    pub started: Timestamp,
    /// Until then a held section without alerts is unknown, not 0.
    pub until: Timestamp,
    /// The sections whose alert symptoms were restored at the start.
    pub sections: BTreeSet<String>,
}

/// The observations of `listed` at `now`, one `alerts.firing` for each of `sections`; `warm`: the
/// inbox's warm-up (none for a listing read from a running daemon, which is past its own).
pub fn observe(
    listed: &[Listed],
    sections: &[String],
    now: Timestamp,
    warm: Option<&Warm>,
    resend_within: Duration,
) -> Vec<Observation> {
    let mut out = Vec::new();
    for section in sections {
        let of = |want: AlertState| -> Vec<&Listed> {
            listed
                .iter()
                .filter(|a| a.state == want)
                .filter(|a| matches!(&a.routed, Routed::Section(s) if s == section))
                .collect()
        };
        let (firing, stale) = (of(AlertState::Firing), of(AlertState::Stale));
        let critical: Vec<&Listed> = firing.iter().copied().filter(|a| a.critical).collect();
        // Both readings of a section are known, unknown or 0 together: a stale or held section
        // neither fires nor clears either rule.
        for (name, these) in [("alerts.firing", &firing), ("alerts.critical", &critical)] {
            let key = Key::new(name).with("section", section.clone());
            let obs = if !firing.is_empty() {
                let obs = Observation::number(key, count(these.len()));
                if these.is_empty() {
                    obs
                } else {
                    obs.with_note(said(these))
                }
            } else if let Some(last) = stale.iter().map(|a| a.heard_at).max() {
                let detail = notes::stale(stale.len(), last, resend_within);
                Observation::new(key, unknown(detail))
            } else if let Some(w) = warm.filter(|w| now < w.until && w.sections.contains(section)) {
                Observation::new(key, unknown(notes::warming(w.started, w.until)))
            } else {
                Observation::number(key, 0.0)
            };
            out.push(obs);
        }
    }
    for (name, pick) in [
        ("alerts.stale", AlertState::Stale),
        ("alerts.unmatched", AlertState::Firing),
    ] {
        let these: Vec<&Listed> = listed
            .iter()
            .filter(|a| a.state == pick)
            .filter(|a| pick == AlertState::Stale || matches!(a.routed, Routed::Unmatched(_)))
            .collect();
        let mut obs = Observation::number(Key::new(name), count(these.len()));
        if !these.is_empty() {
            obs = obs.with_note(names(&these));
        }
        out.push(obs);
    }
    out
}

/// The state of `a` at `now`.
fn state_of(a: &Kept, now: Timestamp) -> AlertState {
    match a.status {
        AlertStatus::Resolved => AlertState::Resolved,
        AlertStatus::Firing if now < a.believed_until => AlertState::Firing,
        AlertStatus::Firing => AlertState::Stale,
    }
}

/// A count as an observation's number.
fn count(n: usize) -> f64 {
    f64::from(u32::try_from(n).unwrap_or(u32::MAX))
}

/// An unknown reading: the sender's silence is a timeout of sorts.
fn unknown(words: crate::locale::Msg) -> Outcome {
    Outcome::Unknown(Failure::said(FailureKind::Timeout, words))
}

/// What the firing `alerts` say, as their section's note: their names, then the annotations of the
/// first [`MAX_SAID`] of them (`summary`, `description` and an http(s) `runbook_url`, each a peer's
/// words, quoted wherever shown), so the email and the incident page show the alert's evidence.
fn said(alerts: &[&Listed]) -> crate::locale::Msg {
    let mut items = vec![names(alerts)];
    for a in alerts.iter().take(MAX_SAID) {
        items.extend(notes::annotations(&a.alertname, &a.annotations));
    }
    if items.len() == 1 {
        items.remove(0)
    } else {
        crate::locale::Msg::list(items)
    }
}

/// Most alerts whose annotations a section's note quotes.
const MAX_SAID: usize = 3;

/// The alert names of `alerts`, sorted, each once, with how many share it (`HighLatencyP95 ×2`).
fn names(alerts: &[&Listed]) -> crate::locale::Msg {
    let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
    for a in alerts {
        *by_name.entry(a.alertname.as_str()).or_default() += 1;
    }
    notes::names(&by_name)
}

/// The words of the alerts' notes and unknown readings, in one place (they are shown beside the
/// values in symptoms, emails and `diagnose`).
mod notes {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use crate::clock::Timestamp;
    use crate::locale::{Msg, MsgId};

    /// `HighLatencyP95, HighLatencyChat ×2 (from the alert sender)`.
    pub(super) fn names(by_name: &BTreeMap<&str, usize>) -> Msg {
        let list: Vec<String> = by_name
            .iter()
            .map(|(name, n)| match n {
                1 => (*name).to_owned(),
                n => format!("{name} ×{n}"),
            })
            .collect();
        Msg::new(MsgId::AlertNames).arg("names", list.join(", "))
    }

    /// Why a section with stale alerts is unknown.
    pub(super) fn stale(n: usize, last: Timestamp, within: Duration) -> Msg {
        Msg::new(MsgId::AlertsStale)
            .arg("n", n)
            .arg("last", last)
            .duration("within", within)
    }

    /// An alert's `summary` and `description` (joined by ` — `) and its `runbook_url` when it is
    /// an http(s) URL: peers' words, quoted wherever shown.
    pub(super) fn annotations(name: &str, annotations: &BTreeMap<String, String>) -> Vec<Msg> {
        let text: Vec<&str> = ["summary", "description"]
            .iter()
            .filter_map(|k| annotations.get(*k))
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .collect();
        let mut out = Vec::new();
        if !text.is_empty() {
            out.push(
                Msg::new(MsgId::AlertSays)
                    .arg("name", name)
                    .peer("text", text.join(" — ")),
            );
        }
        let url = annotations
            .get("runbook_url")
            .and_then(|u| url::Url::parse(u.trim()).ok())
            .filter(|u| matches!(u.scheme(), "http" | "https"));
        if let Some(url) = url {
            out.push(
                Msg::new(MsgId::AlertRunbook)
                    .arg("name", name)
                    .peer("url", url),
            );
        }
        out
    }

    /// Why a section is unknown right after the start.
    pub(super) fn warming(started: Timestamp, until: Timestamp) -> Msg {
        Msg::new(MsgId::AlertsWarming)
            .arg("started", started)
            .arg("until", until)
    }
}

/// `status` of `alerts_received_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

/// `reason` of `alerts_unmatched_total`, `result` of `alert_webhooks_total`, `state` of `alerts`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

/// `harven_watchdog_alert_webhooks_total{result}`, `_alerts_received_total{status}`,
/// `_alerts_unmatched_total{reason}`, `_alerts_dropped_total` and `_alerts{state}`: every label a
/// closed set, created at 0.
#[derive(Debug, Clone, Default)]
pub struct AlertMetrics {
    webhooks: Family<ResultLabel, Counter>,
    received: Family<StatusLabel, Counter>,
    unmatched: Family<ReasonLabel, Counter>,
    dropped: Counter,
    /// By state (`firing`, `stale`, `resolved`, `unmatched`: firing ones routed nowhere).
    current: Family<StateLabel, Gauge>,
}

impl AlertMetrics {
    /// Creates the families at 0 and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        for result in ["accepted", "malformed", "too_large"] {
            let _ = m.webhooks.get_or_create(&ResultLabel { result });
        }
        for status in ["firing", "resolved"] {
            let _ = m.received.get_or_create(&StatusLabel { status });
        }
        for why in Unmatched::ALL {
            let _ = m.unmatched.get_or_create(&ReasonLabel {
                reason: why.label(),
            });
        }
        for state in ["firing", "stale", "resolved", "unmatched"] {
            let _ = m.current.get_or_create(&StateLabel { state });
        }
        registry.register(
            "alert_webhooks",
            "Alert notifications received at POST /api/webhooks/alertmanager, by result (refused credentials are in auth_refusals_total)",
            m.webhooks.clone(),
        );
        registry.register(
            "alerts_received",
            "Alerts in the notifications received, by their status",
            m.received.clone(),
        );
        registry.register(
            "alerts_unmatched",
            "Alerts received that reach no runbook section, by reason (listed at GET /api/alerts)",
            m.unmatched.clone(),
        );
        registry.register(
            "alerts_dropped",
            "New alerts dropped because the inbox held its maximum",
            m.dropped.clone(),
        );
        registry.register(
            "alerts",
            "Alerts the watchdog holds now, by state (unmatched: firing and routed to no section)",
            m.current.clone(),
        );
        m
    }

    fn webhook(&self, result: &'static str) {
        self.webhooks.get_or_create(&ResultLabel { result }).inc();
    }

    fn received(&self, status: AlertStatus) {
        let status = match status {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        };
        self.received.get_or_create(&StatusLabel { status }).inc();
    }

    fn unmatched(&self, why: Unmatched) {
        self.unmatched
            .get_or_create(&ReasonLabel {
                reason: why.label(),
            })
            .inc();
    }

    /// Sets the `alerts{state}` gauges from a listing.
    fn show(&self, listed: &[Listed]) {
        let n = |f: &dyn Fn(&Listed) -> bool| {
            i64::try_from(listed.iter().filter(|a| f(a)).count()).unwrap_or(i64::MAX)
        };
        for (state, value) in [
            ("firing", n(&|a| a.state == AlertState::Firing)),
            ("stale", n(&|a| a.state == AlertState::Stale)),
            ("resolved", n(&|a| a.state == AlertState::Resolved)),
            (
                "unmatched",
                n(&|a| a.state == AlertState::Firing && matches!(a.routed, Routed::Unmatched(_))),
            ),
        ] {
            self.current.get_or_create(&StateLabel { state }).set(value);
        }
    }
}

/// The inbox as a source: each poll reports what it holds at that time, woken by every
/// notification. It never fails (the inbox is memory); a silent sender is read per alert, as stale.
#[derive(Debug)]
pub struct Feed {
    inbox: Arc<Inbox>,
}

impl Feed {
    /// The feed of `inbox`.
    pub fn new(inbox: Arc<Inbox>) -> Self {
        Self { inbox }
    }
}

impl Probe for Feed {
    fn source(&self) -> &str {
        SOURCE
    }

    fn interval(&self) -> Duration {
        FEED_INTERVAL
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn wake(&self) -> Option<Arc<Notify>> {
        Some(Arc::clone(&self.inbox.wake))
    }

    async fn poll(&mut self, now: Timestamp) -> Result<Vec<Observation>, Failure> {
        Ok(self.inbox.observations(now))
    }
}

#[cfg(test)]
mod tests;
