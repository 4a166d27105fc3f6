//! The runbook engine: symptom rules with `for` and recovery hysteresis, and the correlator that
//! turns firing symptoms into one incident candidate per section with a ranked diagnosis.
//!
//! **Invariant:** nothing here does I/O, reads a clock or fails. [`Engine::evaluate`] takes the
//! evidence table and `now` and returns what changed and where everything stands; the daemon, the
//! `diagnose` command and the offline `test` command all drive it the same way.
//!
//! A rule instance (one per label set the rule's condition selects) moves
//! `inactive → pending → firing → recovering → inactive`: pending after `when` first holds, firing once
//! it has held for `for`, recovering while the recovery condition holds, cleared once that has held
//! for `resolve_after`. Between the firing and recovery thresholds it stays firing (hysteresis). When
//! the reading is unknown (a blind source) or no data (no traffic), nothing moves: a blind Prometheus
//! can neither fire nor clear a latency symptom.

pub mod condition;
pub mod diagnosis;

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::observe::{Evidence, Labels, Value};
use crate::runbook::{Locale, Runbook, Severity};
use condition::Truth;
pub use diagnosis::{CauseResult, CauseStatus, Diagnosis, Found};

/// Where one rule instance stands. Inactive is no entry at all, so the state map holds only
/// what can still move or must be remembered.
///
/// Saved in the store as JSON (inside [`EngineState`]) and read back by the next run: the tag
/// and field names are a stored format, and a rename would drop every saved rule state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum Phase {
    /// `when` holds since `since`, not yet for `for`.
    Pending { since: Timestamp },
    /// Fired at `fired_at`.
    Firing { fired_at: Timestamp },
    /// Fired at `fired_at`; the recovery condition holds since `clear_since`.
    Recovering {
        fired_at: Timestamp,
        clear_since: Timestamp,
    },
}

/// The state of a symptom as shown to people and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SymptomState {
    /// Not holding.
    Inactive,
    /// Holding, for less than `for`.
    Pending,
    /// Held for `for`; stays so until the recovery condition has held for `resolve_after`.
    Firing,
    /// Firing, and recovering for less than `resolve_after`.
    Recovering,
}

/// One rule instance now.
#[derive(Debug, Clone, Serialize)]
pub struct Symptom {
    /// The rule's ID (`latency.p95_high`).
    pub rule: String,
    /// The ID of the section the rule belongs to.
    pub section: String,
    /// The instance: the label set the condition selected (empty for a rule with one instance).
    pub labels: Labels,
    /// The rule's summary in the engine's locale.
    pub summary: String,
    /// The rule's severity, whatever the state.
    pub severity: Severity,
    /// Where the instance stands after this evaluation.
    pub state: SymptomState,
    /// False when the reading is unknown or no data: the state is held, not re-evaluated.
    pub observable: bool,
    /// The latest value, when there is one.
    pub value: Option<Value>,
    /// Why there is no value; with a value, how the probe read it (which histogram, which formula).
    /// Worded in the reader's language where shown; English in the JSON.
    #[serde(serialize_with = "crate::locale::as_english_opt")]
    pub note: Option<crate::locale::Msg>,
    /// When it fired (firing and recovering).
    pub fired_at: Option<Timestamp>,
}

/// A transition worth acting on.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// An instance became firing (from pending, or at once with a zero `for`).
    Fired {
        /// The rule's ID.
        rule: String,
        /// Its section's ID.
        section: String,
        /// The instance.
        labels: Labels,
        /// The rule's severity.
        severity: Severity,
        /// The evaluation's `now`: when the engine saw `for` elapse, not `since + for` (the
        /// two differ by up to the time between evaluations).
        at: Timestamp,
    },
    /// A firing or recovering instance became inactive.
    Cleared {
        /// The rule's ID.
        rule: String,
        /// Its section's ID.
        section: String,
        /// The instance.
        labels: Labels,
        /// The evaluation's `now`.
        at: Timestamp,
    },
}

/// One section now: whether it has an incident, how bad, and why.
#[derive(Debug, Clone, Serialize)]
pub struct SectionState {
    /// The section's ID (`latency`): the book keys incidents by it.
    pub section: String,
    /// The section's title in the engine's locale.
    pub title: String,
    /// Some symptom of the section is firing or recovering.
    pub active: bool,
    /// The highest severity among its firing or recovering symptoms.
    pub severity: Option<Severity>,
    /// Its causes, ranked; computed for every section at every evaluation, active or not.
    pub diagnosis: Diagnosis,
}

/// The outcome of one evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// The `now` it was evaluated at.
    pub at: Timestamp,
    /// Transitions at this evaluation, in rule order.
    pub events: Vec<Event>,
    /// Every rule instance that is not inactive, and every rule whose condition is unobservable.
    pub symptoms: Vec<Symptom>,
    /// Every section, in runbook order.
    pub sections: Vec<SectionState>,
}

/// The engine's rule states, as persisted across restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineState {
    /// Sorted by rule and labels, so that two snapshots of the same states compare equal (the
    /// watch loop writes the state only when it changed).
    states: Vec<SavedPhase>,
}

impl EngineState {
    /// Every saved instance (pending, firing or recovering): its rule's ID and its labels. The
    /// alert inbox reads which alert symptoms a restart restored (see `crate::alerts`).
    pub fn instances(&self) -> impl Iterator<Item = (&str, &Labels)> {
        self.states.iter().map(|s| (s.rule.as_str(), &s.labels))
    }
}

/// One saved rule instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SavedPhase {
    /// By ID, not by position: a runbook edited between two runs still finds its rules, and a
    /// rule it no longer has is dropped.
    rule: String,
    labels: Labels,
    #[serde(flatten)]
    phase: Phase,
}

/// The engine: the runbook and the state of every rule instance.
#[derive(Debug, Clone)]
pub struct Engine {
    runbook: Arc<Runbook>,
    locale: Locale,
    /// Keyed by (section index, rule index, labels); inactive instances are removed, so the map holds
    /// only what is pending, firing or recovering.
    states: HashMap<(usize, usize, Labels), Phase>,
    /// The `now` of the last evaluation. A deadline at or before it has already been evaluated: what
    /// did not move then (a pending rule past its `for` whose reading is unknown or gone) moves only
    /// on new evidence, never on the clock, so it is no deadline (else the shell would wake at once,
    /// again and again: a busy loop for as long as the reading stays unknown).
    evaluated_at: Option<Timestamp>,
}

impl Engine {
    /// An engine with every rule inactive; [`Engine::restore`] brings back a previous run's.
    pub fn new(runbook: Arc<Runbook>, locale: Locale) -> Self {
        Self {
            runbook,
            locale,
            states: HashMap::new(),
            evaluated_at: None,
        }
    }

    /// The runbook it evaluates.
    pub fn runbook(&self) -> &Runbook {
        &self.runbook
    }

    /// Every rule instance that is not inactive, by rule ID: what must survive a restart, or the first
    /// evaluation after it would find every symptom inactive and resolve every incident.
    pub fn snapshot(&self) -> EngineState {
        let mut states: Vec<SavedPhase> = self
            .states
            .iter()
            .map(|((si, ri, labels), phase)| SavedPhase {
                rule: self.runbook.sections[*si].rules[*ri].id.clone(),
                labels: labels.clone(),
                phase: *phase,
            })
            .collect();
        states.sort_by(|a, b| (&a.rule, &a.labels).cmp(&(&b.rule, &b.labels)));
        EngineState { states }
    }

    /// Restores a snapshot; rules the runbook no longer has are dropped.
    pub fn restore(&mut self, state: EngineState) {
        for s in state.states {
            let found = self
                .runbook
                .sections
                .iter()
                .enumerate()
                .find_map(|(si, sec)| {
                    sec.rules
                        .iter()
                        .position(|r| r.id == s.rule)
                        .map(|ri| (si, ri))
                });
            if let Some((si, ri)) = found {
                self.states.insert((si, ri, s.labels), s.phase);
            }
        }
    }

    /// The earliest time at which a rule would move without new evidence: a pending rule reaching its
    /// `for`, a recovering one its `resolve_after`, after the last evaluation. The shell sleeps until
    /// then (or the next report).
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.states
            .iter()
            .filter_map(|((si, ri, _), phase)| {
                let rule = &self.runbook.sections[*si].rules[*ri];
                match phase {
                    Phase::Pending { since } => Some(*since + rule.for_),
                    Phase::Recovering { clear_since, .. } => {
                        Some(*clear_since + rule.resolve_after)
                    }
                    Phase::Firing { .. } => None,
                }
            })
            .filter(|d| self.evaluated_at.is_none_or(|at| *d > at))
            .min()
    }

    /// Advances every rule to `now` over `ev` and reports where everything stands.
    pub fn evaluate(&mut self, ev: &Evidence, now: Timestamp) -> Evaluation {
        self.evaluated_at = Some(now);
        let runbook = Arc::clone(&self.runbook);
        let mut events = Vec::new();
        let mut symptoms = Vec::new();
        let mut section_severity: Vec<Option<Severity>> = vec![None; runbook.sections.len()];
        for (si, section) in runbook.sections.iter().enumerate() {
            for (ri, rule) in section.rules.iter().enumerate() {
                let whens = condition::instances(&rule.when, ev);
                let mut seen = Vec::new();
                for (labels, truth) in whens {
                    let key = (si, ri, labels.clone());
                    let (observable, value, note) = match &truth {
                        Truth::Holds { value } | Truth::Fails { value } => {
                            let note = rule.when.obs.as_deref().and_then(|name| {
                                let key = crate::observe::Key {
                                    name: crate::observe::intern(name)?,
                                    labels: labels.clone(),
                                };
                                ev.note(&key).cloned()
                            });
                            (true, Some(value.clone()), note)
                        }
                        Truth::NoData { why } | Truth::Unknown { why } => {
                            (false, None, Some(why.clone()))
                        }
                    };
                    // Without a `clear` condition, recovery is `when` failing; with one, the value
                    // must cross the second threshold (the hysteresis band lies between them).
                    let recovered = match (&rule.clear, &value) {
                        (Some(clear), Some(v)) => {
                            condition::compare(v, clear.op, clear.value.as_ref())
                        }
                        (None, Some(_)) => matches!(truth, Truth::Fails { .. }),
                        (_, None) => false,
                    };
                    let holds = matches!(truth, Truth::Holds { .. });
                    let before = self.states.get(&key).copied();
                    // Unknown or no data: the instance holds its phase, timers included, so a
                    // blind source neither fires nor clears anything.
                    let after = if observable {
                        step(before, holds, recovered, now, rule)
                    } else {
                        before
                    };
                    let base = || (rule.id.clone(), section.id.clone(), labels.clone());
                    match (before, after) {
                        (Some(Phase::Pending { .. }) | None, Some(Phase::Firing { .. })) => {
                            let (rule, section, labels) = base();
                            events.push(Event::Fired {
                                rule,
                                section,
                                labels,
                                severity: rule_severity(&runbook, si, ri),
                                at: now,
                            });
                        }
                        (Some(Phase::Firing { .. } | Phase::Recovering { .. }), None) => {
                            let (rule, section, labels) = base();
                            events.push(Event::Cleared {
                                rule,
                                section,
                                labels,
                                at: now,
                            });
                        }
                        _ => {}
                    }
                    match after {
                        Some(p) => {
                            self.states.insert(key, p);
                        }
                        None => {
                            self.states.remove(&key);
                        }
                    }
                    let state = match after {
                        None => SymptomState::Inactive,
                        Some(Phase::Pending { .. }) => SymptomState::Pending,
                        Some(Phase::Firing { .. }) => SymptomState::Firing,
                        Some(Phase::Recovering { .. }) => SymptomState::Recovering,
                    };
                    if matches!(state, SymptomState::Firing | SymptomState::Recovering) {
                        section_severity[si] = section_severity[si].max(Some(rule.severity));
                    }
                    // An unobservable instance is listed even when inactive: `diagnose`, the
                    // emails and the scenario expectations show what cannot be seen.
                    if state != SymptomState::Inactive || !observable {
                        symptoms.push(Symptom {
                            rule: rule.id.clone(),
                            section: section.id.clone(),
                            labels: labels.clone(),
                            summary: rule.summary.get(self.locale).to_owned(),
                            severity: rule.severity,
                            state,
                            observable,
                            value,
                            note,
                            fired_at: match after {
                                Some(
                                    Phase::Firing { fired_at } | Phase::Recovering { fired_at, .. },
                                ) => Some(fired_at),
                                _ => None,
                            },
                        });
                    }
                    seen.push(labels);
                }
                // Instances no longer selected at all (a label set that vanished) are held as they are;
                // they still count for their section's severity.
                for ((s, r, labels), phase) in &self.states {
                    let held = matches!(phase, Phase::Firing { .. } | Phase::Recovering { .. });
                    if *s == si && *r == ri && held && !seen.contains(labels) {
                        section_severity[si] = section_severity[si].max(Some(rule.severity));
                    }
                }
            }
        }
        let sections = runbook
            .sections
            .iter()
            .enumerate()
            .map(|(si, section)| SectionState {
                section: section.id.clone(),
                title: section.title.get(self.locale).to_owned(),
                active: section_severity[si].is_some(),
                severity: section_severity[si],
                diagnosis: diagnosis::diagnose(&runbook, section, ev, self.locale),
            })
            .collect();
        Evaluation {
            at: now,
            events,
            symptoms,
            sections,
        }
    }
}

/// The severity of the rule at (section index, rule index).
fn rule_severity(runbook: &Runbook, si: usize, ri: usize) -> Severity {
    runbook.sections[si].rules[ri].severity
}

/// One observable step of a rule instance: `holds` is `when` now, `recovered` the recovery
/// condition now. A pending instance that stops holding is dropped at once (no hysteresis before
/// firing); a firing one recovers only while `when` no longer holds.
fn step(
    before: Option<Phase>,
    holds: bool,
    recovered: bool,
    now: Timestamp,
    rule: &crate::runbook::Rule,
) -> Option<Phase> {
    let fire_or_pend = |since: Timestamp| {
        if now.saturating_since(since) >= rule.for_ {
            Some(Phase::Firing { fired_at: now })
        } else {
            Some(Phase::Pending { since })
        }
    };
    match before {
        None if holds => fire_or_pend(now),
        None => None,
        Some(Phase::Pending { since }) if holds => fire_or_pend(since),
        Some(Phase::Pending { .. }) => None,
        Some(Phase::Firing { fired_at }) if recovered && !holds => {
            if rule.resolve_after.is_zero() {
                None
            } else {
                Some(Phase::Recovering {
                    fired_at,
                    clear_since: now,
                })
            }
        }
        Some(Phase::Firing { fired_at }) => Some(Phase::Firing { fired_at }),
        Some(Phase::Recovering {
            fired_at,
            clear_since,
        }) if recovered && !holds => {
            if now.saturating_since(clear_since) >= rule.resolve_after {
                None
            } else {
                Some(Phase::Recovering {
                    fired_at,
                    clear_since,
                })
            }
        }
        // Holding again, or back in the band between the thresholds: the recovery restarts later.
        Some(Phase::Recovering { fired_at, .. }) => Some(Phase::Firing { fired_at }),
    }
}

#[cfg(test)]
mod tests;
