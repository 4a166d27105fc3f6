//! The incident and the page: the state that the store persists and the emails describe.
//!
//! Every time here is a wall-clock [`Timestamp`] that is persisted with the incident, so every
//! escalation deadline (L2 at `opened_at + after`, L3 at `critical_since + critical_for`, the next
//! reminder) is derived from stored data: a restart neither re-sends a page nor forgets a deadline.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::engine::{CauseStatus, Diagnosis, Found};
use crate::locale::Msg;
use crate::observe::Value;
use crate::probe::sentry::{TopIssue, top_issues_in};
use crate::runbook::{Condition, Role, Severity};

/// An escalation level of the runbook's §7. Ordered: the highest paged level is the one reminded.
/// Its name is part of stored data (incidents' maps, outbox rows, page keys, signed links).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Level {
    /// The on-call DevOps: paged when an incident opens.
    L1,
    /// The tech lead: paged when an incident is still unresolved `l2.after` after it opened.
    L2,
    /// The CTO: paged when an incident has been critical without a break for `l3.critical_for`.
    L3,
}

impl Level {
    /// Every level, lowest first (for metrics created at 0 and the history's columns).
    pub const ALL: [Level; 3] = [Level::L1, Level::L2, Level::L3];

    /// `L1`, `L2`, `L3`: as stored, in page keys and links, and in the `level` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::L1 => "L1",
            Self::L2 => "L2",
            Self::L3 => "L3",
        }
    }

    /// A level from its name; lowercase too, as a person types it in an API query.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "L1" | "l1" => Some(Self::L1),
            "L2" | "l2" => Some(Self::L2),
            "L3" | "l3" => Some(Self::L3),
            _ => None,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an email is sent: the `X-Harven-Event` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageEvent {
    /// The incident opened: to L1.
    Opened,
    /// L2 or L3, paged for the first time in the incident.
    Escalated,
    /// The highest paged level, again, while it has not acknowledged.
    Reminder,
    /// The incident fired again within `reopen_within` of resolving: every level it had paged.
    Reopened,
    /// Every symptom cleared, or someone resolved it: every level it had paged (never held by
    /// the email budget).
    Resolved,
}

impl PageEvent {
    /// Every event (for metrics created at 0).
    pub const ALL: [PageEvent; 5] = [
        PageEvent::Opened,
        PageEvent::Escalated,
        PageEvent::Reminder,
        PageEvent::Reopened,
        PageEvent::Resolved,
    ];

    /// The event in words, worded in the reader's language where shown (`escalated`, `escalonado`).
    pub fn words(self) -> Msg {
        use crate::locale::MsgId;
        Msg::new(match self {
            Self::Opened => MsgId::EventOpened,
            Self::Escalated => MsgId::EventEscalated,
            Self::Reminder => MsgId::EventReminder,
            Self::Reopened => MsgId::EventReopened,
            Self::Resolved => MsgId::EventResolved,
        })
    }

    /// The `X-Harven-Event` value, the word in page keys and outbox rows, the `event` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Escalated => "escalated",
            Self::Reminder => "reminder",
            Self::Reopened => "reopened",
            Self::Resolved => "resolved",
        }
    }
}

impl fmt::Display for PageEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Open or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentState {
    /// Some symptom of its section fires (or a manual resolve has not yet been confirmed by a
    /// clear section: see [`Incident::held_until_clear`]).
    Open,
    /// Every symptom cleared, or someone resolved it; it may still reopen within
    /// `reopen_within`.
    Resolved,
}

/// Who acknowledged, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Who, as the link's form or the API request named them.
    pub by: String,
    /// When: the level's reminders are silenced from here for `ack_timeout`.
    pub at: Timestamp,
}

/// One line of an incident's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// When it happened (the book's `now` at that step).
    pub at: Timestamp,
    /// `opened`, `reopened`, `severity`, `symptom`, `cause`, `paged`, `acknowledged`, `resolved`.
    pub kind: String,
    /// What happened, in English: what the API shows, and what an email or a page shows of an
    /// entry stored before `msg` was kept.
    pub text: String,
    /// What happened, as words worded in the reader's language; `None` in entries stored before
    /// it was kept (their `text` is shown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg: Option<Msg>,
}

/// One incident: a runbook section that has had a firing symptom.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Stable and unique: `<section>-<opened, UTC, yyyymmddThhmmssZ>`.
    pub id: String,
    /// The runbook section it is about; one incident per section at a time.
    pub section: String,
    /// Its section's severity at the latest step (the highest of its firing or recovering
    /// symptoms'); it can go down as well as up.
    pub severity: Severity,
    /// Open or resolved.
    pub state: IncidentState,
    /// When the section first fired. Reopening keeps it, so flapping cannot dodge L2.
    pub opened_at: Timestamp,
    /// Since when the incident has been critical without a break; `None` while major. L3 counts from here.
    pub critical_since: Option<Timestamp>,
    /// When it last resolved (`None` while open): `reopen_within` and retention count from here.
    pub resolved_at: Option<Timestamp>,
    /// How many times it reopened after resolving.
    pub reopened: u32,
    /// When each level was first paged for this incident.
    pub paged: BTreeMap<Level, Timestamp>,
    /// The latest email to each level (open, escalation, reminder), for the reminder clock.
    pub last_page: BTreeMap<Level, Timestamp>,
    /// Reminders sent so far (numbers each reminder's dedup key).
    pub reminders: u32,
    /// Acknowledgements by level. An ack silences that level's reminders for `ack_timeout`.
    pub acks: BTreeMap<Level, Ack>,
    /// The rules that have fired in this incident, with their latest summary text.
    pub symptoms: BTreeMap<String, String>,
    /// The top likely cause at the latest evaluation (`unknown` when none is likely).
    pub cause: String,
    /// What happened, oldest first; at most [`MAX_TIMELINE`] entries, the opening always kept.
    pub timeline: Vec<TimelineEntry>,
    /// A note given with a manual resolve.
    pub resolve_note: Option<String>,
    /// Set by a manual resolve: the incident does not reopen until its section has been clear once
    /// (else a resolve while symptoms still fire would reopen it at the next evaluation).
    #[serde(default)]
    pub held_until_clear: bool,
    /// The resolved emails have been queued (they wait while a maintenance window mutes the section).
    #[serde(default)]
    pub resolve_notified: bool,
    /// Reopened, and the reopened emails are not queued yet (a maintenance window may hold them).
    #[serde(default)]
    pub reopen_pending: bool,
    /// The section's ranked diagnosis as it stood at the latest evaluation while the incident was
    /// open (kept as it was when it resolved); `None` for incidents stored before it was kept.
    #[serde(default)]
    pub diagnosis: Option<DiagnosisSnapshot>,
}

/// The most entries an incident's timeline keeps (see [`Incident::note`]).
pub const MAX_TIMELINE: usize = 200;

impl Incident {
    /// A new open incident of `section`, opened at `at` with `cause` as its probable cause: nothing
    /// paged, acknowledged or noted yet (the book, which opens incidents, fills in the rest). A critical
    /// one is critical from its opening, which starts the L3 clock.
    pub fn open(section: &str, severity: Severity, cause: &str, at: Timestamp) -> Self {
        Self {
            id: Self::make_id(section, at),
            section: section.to_owned(),
            severity,
            state: IncidentState::Open,
            opened_at: at,
            critical_since: (severity == Severity::Critical).then_some(at),
            resolved_at: None,
            reopened: 0,
            paged: BTreeMap::new(),
            last_page: BTreeMap::new(),
            reminders: 0,
            acks: BTreeMap::new(),
            symptoms: BTreeMap::new(),
            cause: cause.to_owned(),
            timeline: Vec::new(),
            resolve_note: None,
            held_until_clear: false,
            resolve_notified: false,
            reopen_pending: false,
            diagnosis: None,
        }
    }

    /// The ID for an incident of `section` opened at `at`, to the second
    /// (`latency-20261124T213000Z`): readable in a subject line and sortable by time. A time
    /// outside the printable years is clamped, never a panic.
    pub fn make_id(section: &str, at: Timestamp) -> String {
        let text = at.clamped().to_string(); // 2026-11-24T21:30:00.000Z
        let compact: String = text
            .chars()
            .take(19)
            .filter(|c| c.is_ascii_digit() || *c == 'T')
            .collect();
        format!("{section}-{compact}Z")
    }

    /// The highest level paged so far.
    pub fn highest_paged(&self) -> Option<Level> {
        self.paged.keys().max().copied()
    }

    /// Appends to the timeline. Past [`MAX_TIMELINE`] entries the oldest after the first (the
    /// opening) is dropped, so an incident that flaps for weeks without resolving stays bounded in
    /// memory, in the store and on its page.
    /// `msg` is worded in the reader's language when shown; a string is English as it is
    /// ([`Msg::english`]).
    pub fn note(&mut self, at: Timestamp, kind: &str, msg: impl Into<Msg>) {
        let msg = msg.into();
        if self.timeline.len() >= MAX_TIMELINE {
            self.timeline.remove(1);
        }
        self.timeline.push(TimelineEntry {
            at,
            kind: kind.to_owned(),
            text: msg.to_string(),
            msg: Some(msg),
        });
    }
}

/// Causes kept in a [`DiagnosisSnapshot`] (the runbook's sections have a handful).
pub const MAX_CAUSES: usize = 16;
/// Evidence lines kept per cause.
pub const MAX_LINES: usize = 16;
/// Characters kept of a condition or an observed value (a label set can be long, and a blind spot's
/// observed value carries its fix: two of them, the instrumentator call included, fit).
pub const MAX_TEXT: usize = 1200;
/// How often a diagnosis whose findings did not change is saved again for its newer values: each
/// save is a durable SQLite write, and the values drift at every evaluation.
pub const DIAGNOSIS_REFRESH: std::time::Duration = std::time::Duration::from_secs(60);

/// A section's ranked diagnosis as the incident keeps it: every cause with its status, score and
/// evidence lines, bounded by [`MAX_CAUSES`], [`MAX_LINES`] and [`MAX_TEXT`]. The runbook's actions and
/// commands are not copied: they are the runbook's, not the incident's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiagnosisSnapshot {
    /// The evaluation it comes from.
    pub at: Timestamp,
    /// Likely causes first by score, then unknown, then ruled out (the engine's order).
    pub causes: Vec<CauseSnapshot>,
}

/// One cause of a [`DiagnosisSnapshot`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CauseSnapshot {
    /// The cause's stable ID.
    pub id: String,
    /// Its title in the engine's locale at the time (a later locale change leaves it).
    pub title: String,
    /// Likely, unknown or ruled out; what [`DiagnosisSnapshot::same_findings`] compares.
    pub status: CauseStatus,
    /// The share of evidence weight that holds, 0 to 1.
    pub score: f64,
    /// At most [`MAX_LINES`], in the runbook's order.
    pub evidence: Vec<EvidenceSnapshot>,
    /// Sentry's top new issues from the cause's context (at most five, each field cut when read),
    /// for the incident page's list; empty without Sentry, and in diagnoses stored before it was
    /// kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sentry_issues: Vec<TopIssue>,
}

/// One evidence line of a [`CauseSnapshot`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceSnapshot {
    /// The condition as text, cut at [`MAX_TEXT`] characters.
    pub condition: String,
    /// Its weight in the cause's score.
    pub weight: f64,
    /// Evidence, supporting or against.
    pub role: Role,
    /// `holds`, `fails`, `no_data` or `unknown`.
    pub truth: String,
    /// What was observed (or why nothing was), cut at [`MAX_TEXT`] characters. It drifts at every
    /// evaluation, so it is left out of [`DiagnosisSnapshot::same_findings`].
    pub observed: String,
    /// The condition, for saying the line in words; `None` in diagnoses stored before it was kept
    /// (their `condition` and `observed` are shown as they are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cond: Option<Condition>,
    /// The instances that decided the line (texts cut at [`MAX_TEXT`]), as the engine's
    /// [`EvidenceLine::found`](crate::engine::diagnosis::EvidenceLine::found).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub found: Vec<Found>,
    /// How many more instances decided it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub more: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl DiagnosisSnapshot {
    /// The bounded copy of `d`, evaluated at `at`.
    pub fn new(d: &Diagnosis, at: Timestamp) -> Self {
        let text = |s: &str| s.chars().take(MAX_TEXT).collect::<String>();
        Self {
            at,
            causes: d
                .causes
                .iter()
                .take(MAX_CAUSES)
                .map(|c| CauseSnapshot {
                    id: c.id.clone(),
                    title: text(&c.title),
                    status: c.status,
                    score: c.score,
                    evidence: c
                        .evidence
                        .iter()
                        .take(MAX_LINES)
                        .map(|e| EvidenceSnapshot {
                            condition: text(&e.condition),
                            weight: e.weight,
                            role: e.role,
                            truth: e.truth.to_owned(),
                            observed: text(&e.observed),
                            cond: Some(e.cond.clone()),
                            found: e
                                .found
                                .iter()
                                .map(|f| Found {
                                    value: f.value.as_ref().map(|v| match v {
                                        Value::Text(t) => Value::Text(text(t)),
                                        v => v.clone(),
                                    }),
                                    ..f.clone()
                                })
                                .collect(),
                            more: e.more,
                        })
                        .collect(),
                    sentry_issues: top_issues_in(&c.context),
                })
                .collect(),
        }
    }

    /// Whether `other` finds the same: the same causes in the same order with the same statuses and
    /// the same truth on every line (observed values and scores aside).
    pub fn same_findings(&self, other: &Self) -> bool {
        self.causes.len() == other.causes.len()
            && self.causes.iter().zip(&other.causes).all(|(a, b)| {
                a.id == b.id
                    && a.status == b.status
                    && a.evidence.len() == b.evidence.len()
                    && a.evidence
                        .iter()
                        .zip(&b.evidence)
                        .all(|(x, y)| x.truth == y.truth)
            })
    }

    /// What an incident should keep when the latest evaluation found `fresh`: `fresh` when the
    /// findings changed or the kept one is [`DIAGNOSIS_REFRESH`] old, else the kept one (so an
    /// unchanged diagnosis costs no write at every evaluation).
    pub fn refreshed(kept: Option<&Self>, fresh: Self) -> Self {
        match kept {
            Some(k)
                if k.same_findings(&fresh)
                    && fresh.at.saturating_since(k.at) < DIAGNOSIS_REFRESH =>
            {
                k.clone()
            }
            _ => fresh,
        }
    }
}

/// One email to send: who, why, about which incident. `key` makes it idempotent: the ledger records
/// sent keys, so a page is delivered at most once however often the engine or a restart asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// The incident's ID.
    pub incident: String,
    /// Who is paged.
    pub level: Level,
    /// Why.
    pub event: PageEvent,
    /// `<incident>/<level>/<event>/<n>`: `n` counts reopenings (for opened/reopened/escalated and
    /// resolved) or reminders.
    pub key: String,
    /// When the book decided it (the step's `now`).
    pub at: Timestamp,
}

impl Page {
    /// The page of `incident` to `level` for `event`; `n` numbers its key (see [`Page::key`]), so
    /// each reopening and each reminder is a new page while a repeated decision is the same one.
    pub fn new(incident: &Incident, level: Level, event: PageEvent, n: u32, at: Timestamp) -> Self {
        Self {
            incident: incident.id.clone(),
            level,
            event,
            key: format!("{}/{}/{}/{}", incident.id, level, event, n),
            at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(at: u64, status: CauseStatus, truth: &str, observed: &str) -> DiagnosisSnapshot {
        DiagnosisSnapshot {
            at: Timestamp::from_unix_millis(1_795_000_000_000) + std::time::Duration::from_secs(at),
            causes: vec![CauseSnapshot {
                id: "latency.openai_slow".into(),
                title: "OpenAI lento".into(),
                status,
                score: 1.0,
                evidence: vec![EvidenceSnapshot {
                    condition: "status.indicator in [minor, major]".into(),
                    weight: 1.0,
                    role: Role::Evidence,
                    truth: truth.into(),
                    observed: observed.into(),
                    cond: None,
                    found: Vec::new(),
                    more: 0,
                }],
                sentry_issues: Vec::new(),
            }],
        }
    }

    #[test]
    fn a_diagnosis_is_kept_until_its_findings_change_or_it_is_a_minute_old() {
        let kept = snapshot(0, CauseStatus::Likely, "holds", "minor");
        let same = snapshot(30, CauseStatus::Likely, "holds", "major");
        assert_eq!(DiagnosisSnapshot::refreshed(Some(&kept), same), kept);
        let later = snapshot(60, CauseStatus::Likely, "holds", "major");
        assert_eq!(
            DiagnosisSnapshot::refreshed(Some(&kept), later.clone()),
            later
        );
        let changed = snapshot(15, CauseStatus::RuledOut, "fails", "none");
        assert_eq!(
            DiagnosisSnapshot::refreshed(Some(&kept), changed.clone()),
            changed
        );
        assert_eq!(DiagnosisSnapshot::refreshed(None, kept.clone()), kept);
    }

    #[test]
    fn ids_are_section_and_opening_time() {
        let at = Timestamp::from_unix_millis(1_795_000_000_123);
        assert_eq!(Incident::make_id("latency", at), "latency-20261118T110640Z");
    }
}
