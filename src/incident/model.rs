//! The incident and the page: the state that the store persists and the emails describe.
//!
//! Every time here is a wall-clock [`Timestamp`] that is persisted with the incident, so every
//! escalation deadline (L2 at `opened_at + after`, L3 at `critical_since + critical_for`, the next
//! reminder) is derived from stored data: a restart neither re-sends a page nor forgets a deadline.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::runbook::Severity;

/// An escalation level of the runbook's §7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Level {
    L1,
    L2,
    L3,
}

impl Level {
    pub const ALL: [Level; 3] = [Level::L1, Level::L2, Level::L3];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::L1 => "L1",
            Self::L2 => "L2",
            Self::L3 => "L3",
        }
    }

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
    Opened,
    Escalated,
    Reminder,
    Reopened,
    Resolved,
}

impl PageEvent {
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
    Open,
    Resolved,
}

/// Who acknowledged, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub by: String,
    pub at: Timestamp,
}

/// One line of an incident's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub at: Timestamp,
    /// `opened`, `symptom_fired`, `severity`, `paged`, `acknowledged`, `resolved`, `reopened`,
    /// `muted`, `note`, …
    pub kind: String,
    pub text: String,
}

/// One incident: a runbook section that has had a firing symptom.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Stable and unique: `<section>-<opened, UTC, yyyymmddThhmmssZ>`.
    pub id: String,
    pub section: String,
    pub severity: Severity,
    pub state: IncidentState,
    /// When the section first fired. Reopening keeps it, so flapping cannot dodge L2.
    pub opened_at: Timestamp,
    /// Since when the incident has been critical without a break; `None` while major. L3 counts from here.
    pub critical_since: Option<Timestamp>,
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
}

/// The most entries an incident's timeline keeps (see [`Incident::note`]).
pub const MAX_TIMELINE: usize = 200;

impl Incident {
    /// The ID for an incident of `section` opened at `at`.
    pub fn make_id(section: &str, at: Timestamp) -> String {
        let text = at.to_string(); // 2026-11-24T21:30:00.000Z
        let compact: String = text[..19]
            .chars()
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
    pub fn note(&mut self, at: Timestamp, kind: &str, text: impl Into<String>) {
        if self.timeline.len() >= MAX_TIMELINE {
            self.timeline.remove(1);
        }
        self.timeline.push(TimelineEntry {
            at,
            kind: kind.to_owned(),
            text: text.into(),
        });
    }
}

/// One email to send: who, why, about which incident. `key` makes it idempotent: the ledger records
/// sent keys, so a page is delivered at most once however often the engine or a restart asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    pub incident: String,
    pub level: Level,
    pub event: PageEvent,
    /// `<incident>/<level>/<event>/<n>`: `n` counts reopenings (for opened/reopened/escalated and
    /// resolved) or reminders.
    pub key: String,
    pub at: Timestamp,
}

impl Page {
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

    #[test]
    fn ids_are_section_and_opening_time() {
        let at = Timestamp::from_unix_millis(1_795_000_000_123);
        assert_eq!(Incident::make_id("latency", at), "latency-20261118T110640Z");
    }
}
