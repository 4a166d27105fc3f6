//! The correlator's second half: every cause of a section classified as likely, ruled out or unknown
//! from the evidence, with the values that decided it, and ranked.

use serde::{Deserialize, Serialize};

use super::condition::{self, Truth};
use crate::locale::{Msg, MsgId};
use crate::observe::{Evidence, Key, Labels, Value};
use crate::runbook::{Cause, Condition, Locale, Role, Runbook, Section};

/// The most instances an evidence line keeps for its words: the first few say it, and the rest
/// are counted.
pub const MAX_FOUND: usize = 8;

/// A cause's standing. The variants' order is the ranking (likely first); their snake_case names
/// are stored in incidents' diagnosis snapshots, so they are a stored format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CauseStatus {
    /// Some of its evidence holds.
    Likely,
    /// Not all of its evidence can be observed now, and none of what can holds.
    Unknown,
    /// All of its evidence is observed, and none holds.
    RuledOut,
}

impl CauseStatus {
    /// The words people read (`ruled out`, with a space; the JSON says `ruled_out`).
    pub fn label(self) -> &'static str {
        match self {
            Self::Likely => "likely",
            Self::Unknown => "unknown",
            Self::RuledOut => "ruled out",
        }
    }
}

/// One evidence condition of a cause, with what it found.
#[derive(Debug, Clone, Serialize)]
pub struct EvidenceLine {
    /// The condition as text.
    pub condition: String,
    /// The condition's weight in the cause's score (`against` lines carry one, but it counts for
    /// nothing: they rule out, they do not weigh).
    pub weight: f64,
    /// `evidence`, `supporting` or `against`.
    pub role: Role,
    /// `holds`, `fails`, `no_data` or `unknown`, over all the instances it selects.
    pub truth: &'static str,
    /// What was observed: `minor`, `status.indicator{page="openai"} = minor`, or why nothing was
    /// (English: the raw form the API and `diagnose --json` show).
    pub observed: String,
    /// The condition itself, for saying the line in words.
    pub cond: Condition,
    /// The instances that decided the line (those that hold when it holds, else every one), at
    /// most [`MAX_FOUND`], for saying it in words in the reader's language.
    pub found: Vec<Found>,
    /// How many instances decided it, beyond those in `found`.
    pub more: usize,
}

/// One instance an evidence line read, as its words need it: which (labels), what (the value, or
/// why there is none) and how it was read (the probe's note). Stored in incidents' diagnoses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Found {
    /// The instance's labels (`role`, `pattern`, …).
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// The value compared, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Why there was none: no data (`no_data`) or unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<Msg>,
    /// True when `why` is "no data" rather than "unknown".
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_data: bool,
    /// How the probe read the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<Msg>,
}

impl Found {
    /// The instance `labels` of `c` as `truth` says it, with the probe's note from `ev`.
    pub fn new(c: &Condition, labels: &Labels, truth: &Truth, ev: &Evidence) -> Self {
        let note = || {
            let name = c.obs.as_deref().and_then(crate::observe::intern)?;
            ev.note(&Key {
                name,
                labels: labels.clone(),
            })
            .cloned()
        };
        let (value, why, no_data, note) = match truth {
            Truth::Holds { value } | Truth::Fails { value } => {
                (Some(value.clone()), None, false, note())
            }
            Truth::NoData { why } => (None, Some(why.clone()), true, None),
            Truth::Unknown { why } => (None, Some(why.clone()), false, None),
        };
        Self {
            labels: labels.clone(),
            value,
            why,
            no_data,
            note,
        }
    }
}

/// A context value shown with a cause.
#[derive(Debug, Clone, Serialize)]
pub struct ContextLine {
    /// The name the runbook's commands use as `{{ name }}`, or the condition as text when it has
    /// none.
    pub name: String,
    /// The condition as text (`redis.used_memory_bytes`).
    pub key: String,
    /// The first instance's value; `None` when nothing was observed (the command then reads `?`).
    pub value: Option<Value>,
}

/// One cause, classified.
#[derive(Debug, Clone, Serialize)]
pub struct CauseResult {
    /// The cause's stable ID (`latency.openai_slow`): emails and the API name causes by it.
    pub id: String,
    /// Its title in the engine's locale.
    pub title: String,
    /// Likely, unknown or ruled out.
    pub status: CauseStatus,
    /// The share of evidence weight that holds, 0 to 1.
    pub score: f64,
    /// Each evidence condition in the runbook's order, with what it found.
    pub evidence: Vec<EvidenceLine>,
    /// The values shown beside the cause and filled into its commands.
    pub context: Vec<ContextLine>,
    /// `Supabase: support@supabase.com (SLA Enterprise)`, when the cause involves a supplier.
    pub vendor: Option<String>,
    /// The runbook's actions in the engine's locale, context placeholders filled in as in
    /// `commands` (the exact deployment to roll back to, in the reader's words).
    pub actions: Vec<String>,
    /// The runbook's commands with context placeholders filled in.
    pub commands: Vec<String>,
}

/// A section's diagnosis: its causes, likely ones first by score, then unknown, then ruled out.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnosis {
    /// The section's ID.
    pub section: String,
    /// Ranked: likely by score (highest first), then unknown, then ruled out; equal ranks in the
    /// runbook's order.
    pub causes: Vec<CauseResult>,
}

impl Diagnosis {
    /// The top likely cause, if any.
    pub fn top(&self) -> Option<&CauseResult> {
        self.causes
            .first()
            .filter(|c| c.status == CauseStatus::Likely)
    }
}

/// Classifies every cause of `section` against `ev`.
pub fn diagnose(runbook: &Runbook, section: &Section, ev: &Evidence, locale: Locale) -> Diagnosis {
    let mut causes: Vec<_> = section
        .causes
        .iter()
        .map(|c| classify(runbook, c, ev, locale))
        .collect();
    // Stable: equal ranks keep the runbook's order.
    causes.sort_by(|a, b| a.status.cmp(&b.status).then(b.score.total_cmp(&a.score)));
    Diagnosis {
        section: section.id.clone(),
        causes,
    }
}

/// One cause against the evidence (its lines over an optional source that is not configured left
/// out). Likely needs an `evidence` line that holds (supporting lines
/// only add weight); one `against` line that holds rules it out whatever else holds; a cause
/// none of whose `evidence` lines holds but one of which is unknown is unknown, never ruled out,
/// since what cannot be seen might be the cause. A condition holds when any instance it selects
/// holds.
fn classify(runbook: &Runbook, cause: &Cause, ev: &Evidence, locale: Locale) -> CauseResult {
    // `total` is the weight of the evidence and supporting lines (the score's denominator).
    let mut total = 0.0;
    let mut held = 0.0;
    let mut primary_held = false;
    let mut contradicted = false;
    let mut any_unknown = false;
    let mut evidence = Vec::new();
    // A line over an optional source that is not configured is left out whole: not weighed, not
    // unknown, not shown (see `condition::source_off`).
    for c in cause
        .evidence
        .iter()
        .filter(|c| !condition::source_off(c, ev))
    {
        if c.role != Role::Against {
            total += c.weight;
        }
        let found = condition::instances(c, ev);
        let holding: Vec<_> = found
            .iter()
            .filter(|(_, t)| matches!(t, Truth::Holds { .. }))
            .collect();
        // The instances that decide the line: those that hold, when any does; else every one.
        let deciding: Vec<&(Labels, Truth)> = if holding.is_empty() {
            found.iter().collect()
        } else {
            holding.clone()
        };
        let words: Vec<Found> = deciding
            .iter()
            .take(MAX_FOUND)
            .map(|(labels, t)| Found::new(c, labels, t, ev))
            .collect();
        let more = deciding.len().saturating_sub(MAX_FOUND);
        let (truth, observed) = if !holding.is_empty() {
            match c.role {
                Role::Evidence => {
                    held += c.weight;
                    primary_held = true;
                }
                Role::Supporting => held += c.weight,
                Role::Against => contradicted = true,
            }
            ("holds", values(c, &holding, ev))
        } else if let Some((_, Truth::Unknown { why })) = found
            .iter()
            .find(|(_, t)| matches!(t, Truth::Unknown { .. }))
        {
            // An unknown supporting or contradicting line does not make the cause unknown.
            any_unknown |= c.role == Role::Evidence;
            ("unknown", why.to_string())
        } else if found.iter().all(|(_, t)| matches!(t, Truth::NoData { .. })) {
            let why = match found.first() {
                Some((_, Truth::NoData { why })) => why.to_string(),
                _ => Msg::new(MsgId::NoData).to_string(),
            };
            ("no_data", why)
        } else {
            let all: Vec<_> = found.iter().collect();
            ("fails", values(c, &all, ev))
        };
        evidence.push(EvidenceLine {
            condition: condition::describe(c),
            weight: c.weight,
            role: c.role,
            truth,
            observed,
            cond: c.clone(),
            found: words,
            more,
        });
    }
    let status = if contradicted {
        CauseStatus::RuledOut
    } else if primary_held {
        CauseStatus::Likely
    } else if any_unknown {
        CauseStatus::Unknown
    } else {
        CauseStatus::RuledOut
    };

    let context: Vec<ContextLine> = cause
        .context
        .iter()
        .filter(|c| !condition::source_off(c, ev))
        .map(|c| {
            let found = condition::instances(c, ev);
            let value = found.iter().find_map(|(_, t)| match t {
                Truth::Holds { value } | Truth::Fails { value } => Some(value.clone()),
                _ => None,
            });
            ContextLine {
                name: c.name.clone().unwrap_or_else(|| condition::describe(c)),
                key: condition::describe(c),
                value,
            }
        })
        .collect();
    // A command or an action that names a context line over an optional source that is off (a
    // Coolify step while [coolify] is unset) is left out with that line, rather than shown with a
    // raw `{{ }}`.
    let off: Vec<&str> = cause
        .context
        .iter()
        .filter(|c| condition::source_off(c, ev))
        .filter_map(|c| c.name.as_deref())
        .collect();
    let commands = cause
        .commands
        .iter()
        .filter(|cmd| !off.iter().any(|name| names_placeholder(cmd, name)))
        .map(|cmd| fill(cmd, &context))
        .collect();
    let actions = actions_in(cause, &context, locale);
    let vendor = cause
        .vendor
        .as_ref()
        .and_then(|v| runbook.vendors.get(v))
        .map(|v| format!("{}: {} (SLA {})", v.name, v.support, v.sla));
    CauseResult {
        id: cause.id.clone(),
        title: cause.title.get(locale).to_owned(),
        status,
        score: if total > 0.0 { held / total } else { 0.0 },
        evidence,
        context,
        vendor,
        actions,
        commands,
    }
}

/// `value` alone for one unlabelled instance, else `key = value` per instance.
fn values(c: &crate::runbook::Condition, found: &[&(Labels, Truth)], ev: &Evidence) -> String {
    let name = c
        .obs
        .as_deref()
        .and_then(crate::observe::intern)
        .unwrap_or("?");
    let parts: Vec<String> = found
        .iter()
        .filter_map(|(labels, t)| match t {
            Truth::Holds { value } | Truth::Fails { value } => Some((labels, value)),
            _ => None,
        })
        .map(|(labels, value)| {
            let key = Key {
                name,
                labels: labels.clone(),
            };
            let note = ev.note(&key).map(|n| format!(" ({n})")).unwrap_or_default();
            if found.len() == 1 || c.source_failing.is_some() {
                format!("{value}{note}")
            } else {
                format!("{key} = {value}{note}")
            }
        })
        .collect();
    parts.join(", ")
}

/// `cause`'s actions in `locale`, their `{{ name }}` placeholders filled from `context` (a
/// diagnosis's, in any locale: values are not words). An action naming a line that is not in the
/// context (its optional source is off) is left out, as the commands naming it are. The email
/// calls this in its own locale.
pub fn actions_in(
    cause: &crate::runbook::Cause,
    context: &[ContextLine],
    locale: Locale,
) -> Vec<String> {
    cause
        .actions
        .iter()
        .map(|a| a.get(locale))
        .filter(|a| placeholders(a).all(|name| context.iter().any(|c| c.name == name)))
        .map(|a| fill(a, context))
        .collect()
}

/// The names of `text`'s `{{ name }}` placeholders.
fn placeholders(text: &str) -> impl Iterator<Item = &str> {
    text.split("{{")
        .skip(1)
        .filter_map(|rest| rest.split_once("}}").map(|(name, _)| name.trim()))
}

/// True when `command` has a `{{ name }}` (or `{{name}}`) placeholder.
fn names_placeholder(command: &str, name: &str) -> bool {
    command.contains(&format!("{{{{ {name} }}}}")) || command.contains(&format!("{{{{{name}}}}}"))
}

/// Fills `{{ name }}` placeholders from the context; an unobserved one reads `?` (a command
/// with a visible hole, rather than one that silently runs on an empty argument). Both spacings,
/// `{{ name }}` and `{{name}}`, are filled.
fn fill(command: &str, context: &[ContextLine]) -> String {
    let mut out = command.to_owned();
    for c in context {
        let value = c
            .value
            .as_ref()
            .map_or_else(|| "?".to_owned(), ToString::to_string);
        out = out
            .replace(&format!("{{{{ {} }}}}", c.name), &value)
            .replace(&format!("{{{{{}}}}}", c.name), &value);
    }
    out
}
