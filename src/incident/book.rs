//! The incident book: the runbook's §7 as a pure state machine.
//!
//! [`Book::step`] takes the engine's view of every section and `now`, and returns the pages that are
//! due and the incidents that changed. It never sends anything and never reads a clock; the shell
//! records the changed incidents and the pages in the store in one transaction, and only then are
//! emails sent. Every deadline is computed from the incident's persisted timestamps, so a book
//! rebuilt from the store after a restart makes exactly the same decisions.
//!
//! The rules, the runbook's §7 (`docs/runbook.md`) with the `[escalation]` settings around it:
//! - L1 when the incident opens; L2 when it is unresolved `l2_after` after it opened (an ack does not
//!   stop this unless `ack_stops_escalation`); L3 when it has been critical, without a break, for
//!   `l3_critical_for`. Sections in `l1_only` page L1 only.
//! - Resolved when every symptom has cleared (the engine's `resolve_after`), or by hand; every level
//!   paged gets the resolved email.
//! - A section firing again within `reopen_within` of resolving reopens the same incident with its
//!   original clocks, so flapping cannot dodge L2 or L3.
//! - The highest paged level is reminded every `repeat_interval` while it has not acknowledged; an ack
//!   silences its reminders for `ack_timeout`.
//! - A maintenance window covering a section mutes its emails (they go out when the window ends, if
//!   still due) and pauses its escalation clocks for the window's length.

use std::collections::BTreeMap;
use std::time::Duration;

use super::ActionError;
use super::model::{Ack, DiagnosisSnapshot, Incident, IncidentState, Level, Page, PageEvent};
use crate::clock::Timestamp;
use crate::config::EscalationConfig;
use crate::engine::{SectionState, Symptom, SymptomState};
use crate::locale::{Msg, MsgId};
use crate::observe::Value;
use crate::runbook::Severity;

/// The escalation settings the book applies.
#[derive(Debug, Clone)]
pub struct Policy {
    pub l2_after: Duration,
    pub l3_critical_for: Duration,
    pub reopen_within: Duration,
    pub repeat_interval: Duration,
    pub ack_timeout: Duration,
    pub ack_stops_escalation: bool,
    pub l1_only: Vec<String>,
}

impl Policy {
    pub fn from_config(c: &EscalationConfig) -> Self {
        Self {
            l2_after: c.l2_after,
            l3_critical_for: c.l3_critical_for,
            reopen_within: c.reopen_within,
            repeat_interval: c.repeat_interval,
            ack_timeout: c.ack_timeout,
            ack_stops_escalation: c.ack_stops_escalation,
            l1_only: c.l1_only_sections.clone(),
        }
    }
}

/// A maintenance window as the book sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Empty: every section.
    pub sections: Vec<String>,
    pub starts: Timestamp,
    pub ends: Timestamp,
}

impl Window {
    fn covers_section(&self, section: &str) -> bool {
        self.sections.is_empty() || self.sections.iter().any(|s| s == section)
    }

    fn covers(&self, section: &str, t: Timestamp) -> bool {
        self.covers_section(section) && self.starts <= t && t < self.ends
    }
}

/// What one step decided.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StepOutcome {
    /// Emails due now, in the order to send them.
    pub pages: Vec<Page>,
    /// IDs of the incidents that changed and must be saved.
    pub changed: Vec<String>,
}

/// The newest incident of each section.
#[derive(Debug, Clone, Default)]
pub struct Book {
    by_section: BTreeMap<String, Incident>,
}

impl Book {
    /// A book holding these incidents (the newest of each section, as the store keeps them).
    pub fn new(incidents: impl IntoIterator<Item = Incident>) -> Self {
        let mut by_section = BTreeMap::new();
        for i in incidents {
            by_section.insert(i.section.clone(), i);
        }
        Self { by_section }
    }

    pub fn incidents(&self) -> impl Iterator<Item = &Incident> {
        self.by_section.values()
    }

    pub fn get(&self, id: &str) -> Option<&Incident> {
        self.by_section.values().find(|i| i.id == id)
    }

    /// Applies the engine's evaluation at `now`: opens, updates, resolves and reopens incidents, and
    /// returns the pages due.
    pub fn step(
        &mut self,
        sections: &[SectionState],
        symptoms: &[Symptom],
        now: Timestamp,
        policy: &Policy,
        windows: &[Window],
    ) -> StepOutcome {
        let mut out = StepOutcome::default();
        for state in sections {
            let changed = self.lifecycle(state, symptoms, now, policy);
            if let Some(id) = changed {
                push_unique(&mut out.changed, id);
            }
        }
        for incident in self.by_section.values_mut() {
            if escalate(incident, now, policy, windows, &mut out.pages) {
                push_unique(&mut out.changed, incident.id.clone());
            }
        }
        out
    }

    /// Open, reopen, update or resolve the incident of one section; the ID if it changed.
    fn lifecycle(
        &mut self,
        state: &SectionState,
        symptoms: &[Symptom],
        now: Timestamp,
        policy: &Policy,
    ) -> Option<String> {
        let section = state.section.as_str();
        let Some(severity) = state.severity.filter(|_| state.active) else {
            // Every symptom clear: resolve an open incident; release a manual hold.
            let incident = self.by_section.get_mut(section)?;
            let mut changed = false;
            if incident.held_until_clear {
                incident.held_until_clear = false;
                changed = true;
            }
            if incident.state == IncidentState::Open {
                incident.state = IncidentState::Resolved;
                incident.resolved_at = Some(now);
                incident.note(now, "resolved", Msg::new(MsgId::TlCleared));
                changed = true;
            }
            return changed.then(|| incident.id.clone());
        };
        let cause = state
            .diagnosis
            .top()
            .map_or_else(|| "unknown".to_owned(), |c| c.id.clone());
        let firing: Vec<&Symptom> = symptoms
            .iter()
            .filter(|s| {
                s.section == section
                    && matches!(s.state, SymptomState::Firing | SymptomState::Recovering)
            })
            .collect();

        let mut fresh = false;
        let incident = match self.by_section.get_mut(section) {
            Some(i) if i.state == IncidentState::Open => i,
            Some(i) if i.held_until_clear => return None,
            Some(i)
                if i.resolved_at
                    .is_some_and(|r| now.saturating_since(r) <= policy.reopen_within) =>
            {
                i.state = IncidentState::Open;
                i.resolved_at = None;
                i.resolve_note = None;
                i.resolve_notified = false;
                i.reopened += 1;
                let n = i.reopened;
                i.note(now, "reopened", Msg::new(MsgId::TlReopened).arg("n", n));
                i.reopen_pending = true;
                fresh = true;
                i
            }
            _ => {
                // Opened when its first symptom fired, not when this step runs. They are the same
                // moment unless the store refused the steps in between (the book does not move
                // then, and the opening is decided again at each step): the incident keeps one ID,
                // one set of page keys and its L2/L3 clocks from the start of the problem.
                let opened = firing
                    .iter()
                    .filter_map(|s| s.fired_at)
                    .min()
                    .map_or(now, |fired| fired.min(now));
                let incident = Incident::open(section, severity, &cause, opened);
                self.by_section.insert(section.to_owned(), incident);
                let i = self.by_section.get_mut(section).expect("just inserted");
                i.note(
                    opened,
                    "opened",
                    Msg::new(MsgId::TlOpened)
                        .arg("section", section)
                        .arg("severity", severity),
                );
                fresh = true;
                i
            }
        };
        let before = incident.clone();
        if severity != incident.severity {
            let from = incident.severity;
            incident.note(
                now,
                "severity",
                Msg::new(MsgId::TlSeverity)
                    .arg("from", from)
                    .arg("to", severity),
            );
            incident.severity = severity;
        }
        match (severity, incident.critical_since) {
            (Severity::Critical, None) => incident.critical_since = Some(now),
            (Severity::Major, Some(_)) => incident.critical_since = None,
            _ => {}
        }
        for s in firing {
            if !incident.symptoms.contains_key(&s.rule) {
                // A number or a yes/no reads alike in every language; a text may be a peer's word
                // or ours in English (a blind spot's), so the timeline leaves it to the page.
                let value = match &s.value {
                    Some(v @ (Value::Number(_) | Value::Bool(_))) => format!(" = {v}"),
                    _ => String::new(),
                };
                let msg = Msg::new(MsgId::TlSymptom)
                    .arg("rule", &s.rule)
                    .arg("summary", &s.summary)
                    .arg("value", value);
                incident.note(now, "symptom", msg);
            }
            incident.symptoms.insert(s.rule.clone(), s.summary.clone());
        }
        if cause != incident.cause {
            incident.note(now, "cause", Msg::new(MsgId::TlCause).arg("cause", &cause));
            incident.cause = cause;
        }
        incident.diagnosis = Some(DiagnosisSnapshot::refreshed(
            incident.diagnosis.as_ref(),
            DiagnosisSnapshot::new(&state.diagnosis, now),
        ));
        (fresh || *incident != before).then(|| incident.id.clone())
    }

    /// Acknowledges an incident for `level` (default: the highest paged level).
    pub fn ack(
        &mut self,
        id: &str,
        level: Option<Level>,
        by: &str,
        now: Timestamp,
    ) -> Result<Level, ActionError> {
        let incident = self.find_mut(id)?;
        if incident.state == IncidentState::Resolved {
            return Err(ActionError::AlreadyResolved(id.to_owned()));
        }
        let level = level
            .or_else(|| incident.highest_paged())
            .unwrap_or(Level::L1);
        incident.acks.insert(
            level,
            Ack {
                by: by.to_owned(),
                at: now,
            },
        );
        let msg = Msg::new(MsgId::TlAcked).arg("level", level).peer("by", by);
        incident.note(now, "acknowledged", msg);
        Ok(level)
    }

    /// Resolves an incident by hand; it will not reopen until its section has been clear once.
    pub fn resolve(
        &mut self,
        id: &str,
        by: &str,
        note: &str,
        now: Timestamp,
    ) -> Result<(), ActionError> {
        let incident = self.find_mut(id)?;
        if incident.state == IncidentState::Resolved {
            return Err(ActionError::AlreadyResolved(id.to_owned()));
        }
        incident.state = IncidentState::Resolved;
        incident.resolved_at = Some(now);
        incident.resolve_note = (!note.is_empty()).then(|| note.to_owned());
        incident.held_until_clear = true;
        let msg = if note.is_empty() {
            Msg::new(MsgId::TlResolvedBy).peer("by", by)
        } else {
            Msg::new(MsgId::TlResolvedByNote)
                .peer("by", by)
                .peer("note", note)
        };
        incident.note(now, "resolved", msg);
        Ok(())
    }

    fn find_mut(&mut self, id: &str) -> Result<&mut Incident, ActionError> {
        self.by_section
            .values_mut()
            .find(|i| i.id == id)
            .ok_or_else(|| ActionError::UnknownIncident(id.to_owned()))
    }

    /// The earliest time a page could come due without new evidence: an escalation, a reminder, the
    /// end of a maintenance window that holds emails back.
    pub fn next_deadline(
        &self,
        now: Timestamp,
        policy: &Policy,
        windows: &[Window],
    ) -> Option<Timestamp> {
        let mut best: Option<Timestamp> = None;
        let mut consider = |t: Timestamp| best = Some(best.map_or(t, |b| b.min(t)));
        for i in self.by_section.values() {
            for w in windows
                .iter()
                .filter(|w| w.covers_section(&i.section) && w.ends > now)
            {
                consider(w.ends);
            }
            if i.state != IncidentState::Open {
                continue;
            }
            for t in [l2_due(i, policy, windows), l3_due(i, policy, windows)]
                .into_iter()
                .flatten()
            {
                consider(t);
            }
            if let Some(t) = reminder_due(i, policy) {
                consider(t);
            }
        }
        best
    }
}

fn push_unique(v: &mut Vec<String>, id: String) {
    if !v.contains(&id) {
        v.push(id);
    }
}

/// The timeline's words for a page: `L2 paged (escalated)`.
fn paged(level: Level, event: PageEvent) -> Msg {
    Msg::new(MsgId::TlPaged)
        .arg("level", level)
        .msg("event", event.words())
}

/// Pages due for one incident now; true if it changed.
fn escalate(
    i: &mut Incident,
    now: Timestamp,
    policy: &Policy,
    windows: &[Window],
    pages: &mut Vec<Page>,
) -> bool {
    if windows.iter().any(|w| w.covers(&i.section, now)) {
        // Muted: nothing goes out; what is due stays due and goes out when the window ends.
        return false;
    }
    let mut changed = false;
    let mut page = |i: &mut Incident, level: Level, event: PageEvent, n: u32| {
        pages.push(Page::new(i, level, event, n, now));
        i.paged.entry(level).or_insert(now);
        i.last_page.insert(level, now);
        i.note(now, "paged", paged(level, event));
    };
    match i.state {
        IncidentState::Open => {
            if i.reopen_pending {
                let levels: Vec<Level> = i.paged.keys().copied().collect();
                for level in levels {
                    page(i, level, PageEvent::Reopened, i.reopened);
                }
                i.reopen_pending = false;
                changed = true;
            }
            if !i.paged.contains_key(&Level::L1) {
                page(i, Level::L1, PageEvent::Opened, i.reopened);
                changed = true;
            }
            if l2_due(i, policy, windows).is_some_and(|due| now >= due) {
                page(i, Level::L2, PageEvent::Escalated, i.reopened);
                changed = true;
            }
            if l3_due(i, policy, windows).is_some_and(|due| now >= due) {
                page(i, Level::L3, PageEvent::Escalated, i.reopened);
                changed = true;
            }
            let reminder = i.highest_paged().zip(reminder_due(i, policy));
            if let Some((level, _)) = reminder.filter(|(_, due)| now >= *due) {
                i.reminders += 1;
                let n = i.reminders;
                page(i, level, PageEvent::Reminder, n);
                changed = true;
            }
        }
        IncidentState::Resolved if !i.resolve_notified => {
            let levels: Vec<Level> = i.paged.keys().copied().collect();
            let n = i.reopened;
            for level in levels {
                pages.push(Page::new(i, level, PageEvent::Resolved, n, now));
                i.note(now, "paged", paged(level, PageEvent::Resolved));
            }
            i.resolve_notified = true;
            changed = true;
        }
        IncidentState::Resolved => {}
    }
    changed
}

/// When L2 is due, if it still can be: not for L1-only sections, not once paged, not after an ack
/// when acks stop escalation.
fn l2_due(i: &Incident, policy: &Policy, windows: &[Window]) -> Option<Timestamp> {
    let eligible = !policy.l1_only.contains(&i.section)
        && !i.paged.contains_key(&Level::L2)
        && (!policy.ack_stops_escalation || i.acks.is_empty());
    eligible.then(|| due_at(i.opened_at, policy.l2_after, &i.section, windows))
}

/// When L3 is due, if the incident is critical and L3 has not been paged.
fn l3_due(i: &Incident, policy: &Policy, windows: &[Window]) -> Option<Timestamp> {
    let since = i.critical_since?;
    let eligible = !policy.l1_only.contains(&i.section) && !i.paged.contains_key(&Level::L3);
    eligible.then(|| due_at(since, policy.l3_critical_for, &i.section, windows))
}

/// When the highest paged level is next reminded: `repeat_interval` after its latest email, and not
/// before its acknowledgement expires.
fn reminder_due(i: &Incident, policy: &Policy) -> Option<Timestamp> {
    let level = i.highest_paged()?;
    let last = *i.last_page.get(&level)?;
    let mut due = last + policy.repeat_interval;
    if let Some(ack) = i.acks.get(&level) {
        due = due.max(ack.at + policy.ack_timeout);
    }
    Some(due)
}

/// The time at which `wait` of clock time has passed since `from`, not counting the time windows
/// covering `section` paused it.
pub fn due_at(from: Timestamp, wait: Duration, section: &str, windows: &[Window]) -> Timestamp {
    let mut due = from + wait;
    // Each pass adds the paused time inside [from, due); windows are few, so this settles fast.
    for _ in 0..=windows.len() {
        let paused: Duration = windows
            .iter()
            .filter(|w| w.covers_section(section))
            .map(|w| {
                let start = w.starts.max(from);
                let end = w.ends.min(due);
                if end > start {
                    end.saturating_since(start)
                } else {
                    Duration::ZERO
                }
            })
            // Saturating: stored windows spanning the whole of `i64` must not overflow a sum.
            .fold(Duration::ZERO, Duration::saturating_add);
        let next = from + wait + paused;
        if next == due {
            break;
        }
        due = next;
    }
    due
}
