//! The runbook's types, as decoded from TOML (`deny_unknown_fields` everywhere: a typo is an error).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::locale::Locale;
use crate::observe::Labels;

/// The whole runbook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runbook {
    /// Suppliers by ID (`openai`, `supabase`): support contact and SLA, from the runbook's table.
    #[serde(default)]
    pub vendors: BTreeMap<String, Vendor>,
    /// The runbook's incident checklist, shown in every email.
    #[serde(default)]
    pub checklist: Vec<Text>,
    /// The sections, in the runbook's order.
    pub sections: Vec<Section>,
    /// Which section an alert from Alertmanager or Grafana belongs to, and how long an ingested
    /// alert is believed without word from its sender (`[alerts]`; none: every alert unmatched).
    #[serde(default)]
    pub alerts: super::alerts::AlertRouting,
}

/// Text in both languages of the product. Both are required: an email or a page in either locale
/// never falls back to the other language mid-sentence.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Text {
    /// Brazilian Portuguese, the team's language (`pt-BR` in the file).
    #[serde(rename = "pt-BR")]
    pub pt_br: String,
    /// English.
    pub en: String,
}

impl Text {
    /// The text in `locale`.
    pub fn get(&self, locale: Locale) -> &str {
        match locale {
            Locale::PtBr => &self.pt_br,
            Locale::En => &self.en,
        }
    }
}

/// A supplier of the stack.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Vendor {
    /// As people call it: `Supabase`.
    pub name: String,
    /// Where to open a ticket (an address or a help site), quoted as written.
    pub support: String,
    /// The support plan (`Enterprise`), shown as `SLA …` beside the contact.
    pub sla: String,
    /// Linked from an email when a likely cause involves the vendor (unless the section links
    /// the same site already).
    #[serde(default)]
    pub status_page: Option<String>,
}

/// One runbook section: its symptoms and its probable causes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    /// A stable ID: `latency`, `errors`, `auth`, `openai_quota`, `database`, `watchdog`.
    pub id: String,
    /// The section's name, as the email subject and the pages show it.
    pub title: Text,
    /// Where it stands in the team's runbook (`§1`).
    #[serde(default)]
    pub runbook_ref: String,
    /// Links worth opening for this section (dashboards, Sentry, status pages).
    #[serde(default)]
    pub links: Vec<Link>,
    /// Its symptom rules (at least one: a section nothing can open is refused at load).
    pub rules: Vec<Rule>,
    /// Its probable causes, in the runbook's order (the order ties are ranked in).
    #[serde(default)]
    pub causes: Vec<Cause>,
}

/// A named link.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// What the link shows, in both languages.
    pub title: Text,
    /// Where it goes; not checked (a runbook is trusted configuration).
    pub url: String,
}

/// How bad an incident is. `Critical` means downtime: it starts the L3 clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Degraded but up: escalates at most to L2.
    Major,
    /// Down. Ordered above `Major`, so an incident's severity is the highest of its symptoms'.
    Critical,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Major => "major",
            Self::Critical => "critical",
        })
    }
}

/// A symptom rule: fires per label set when `when` has held for `for`; clears when `clear` (or, without
/// one, the negation of `when`) has held for `resolve_after`. Between the two thresholds nothing moves:
/// that band is the hysteresis that keeps a value oscillating around a threshold from flapping.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A stable ID under its section: `latency.p95_high`.
    pub id: String,
    /// One line saying what fired (`p95 above 3 seconds`), listed in the incident's symptoms.
    pub summary: Text,
    /// The firing condition.
    pub when: Condition,
    /// The recovery condition, over the same observation and labels as `when` (checked at load),
    /// with its own threshold: the band between the two is the hysteresis.
    #[serde(default)]
    pub clear: Option<Condition>,
    /// How long `when` must hold before the symptom fires.
    #[serde(rename = "for", with = "humantime_serde")]
    pub for_: Duration,
    /// How long the recovery condition must hold before the symptom clears.
    #[serde(with = "humantime_serde")]
    pub resolve_after: Duration,
    /// What the section's incident becomes while this rule fires.
    pub severity: Severity,
}

/// A probable cause of a section, with the evidence that points to it and what to do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cause {
    /// A stable ID under its section: `latency.openai_slow`.
    pub id: String,
    /// What people read as the probable cause.
    pub title: Text,
    /// The supplier involved, for its support contact and SLA.
    #[serde(default)]
    pub vendor: Option<String>,
    /// Conditions that point to this cause; the more (by weight) hold, the higher it ranks.
    pub evidence: Vec<Condition>,
    /// Observations shown with the cause for context (the backend's image, its start time), whether
    /// or not they hold anything.
    #[serde(default)]
    pub context: Vec<Condition>,
    /// The runbook's actions, in both languages; `{{ name }}` placeholders are filled from the
    /// context as in `commands`.
    #[serde(default)]
    pub actions: Vec<Text>,
    /// The runbook's commands, quoted as the team wrote them. `{{ name }}` placeholders are filled
    /// from the context (`{{ previous_image }}`).
    #[serde(default)]
    pub commands: Vec<String>,
}

/// A condition over one observation (`obs` with `op` and `value`, optionally narrowed by `labels`) or
/// over a source (`source_failing`: true while that source cannot be read).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// A catalogue name; exactly one of `obs` and `source_failing` (checked at load).
    #[serde(default)]
    pub obs: Option<String>,
    /// Only instances whose labels include these.
    #[serde(default)]
    pub labels: Labels,
    /// How `obs` compares with `value`; required with `obs` except in a context line (which only
    /// shows the value).
    #[serde(default)]
    pub op: Option<Op>,
    /// What `obs` is compared with; it must fit the observation's kind and `op` (checked at load).
    #[serde(default)]
    pub value: Option<Operand>,
    /// A source name (`prometheus`, `status.openai`): holds while its latest poll failed.
    #[serde(default)]
    pub source_failing: Option<String>,
    /// With `source_failing` only: holds only while the source fails for this reason (a
    /// `FailureKind` label, as in `harven_watchdog_probe_errors_total{reason}`: `timeout`,
    /// `connect`, …), and is unknown while it fails for another. A peer's hang thus fails its
    /// source (rules over its readings turn unknown) and is still evidence for a cause ("OpenAI
    /// lento"); failing for another reason says nothing about a hang.
    #[serde(default)]
    pub reason: Option<String>,
    /// How much this evidence counts when ranking causes (default 1).
    #[serde(default = "one")]
    pub weight: f64,
    /// What this condition does for a cause (evidence conditions only).
    #[serde(default)]
    pub role: Role,
    /// A name for this value in commands' placeholders (context conditions).
    #[serde(default)]
    pub name: Option<String>,
}

/// The part a condition plays in a cause's evidence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Points to the cause: when it holds, the cause is likely.
    #[default]
    Evidence,
    /// Adds weight when it holds, but does not make the cause likely on its own (it tells causes
    /// apart: "the secret is set" favours expired tokens over a missing secret).
    Supporting,
    /// Rules the cause out when it holds, whatever else does ("OpenAI reports an outage" rules out
    /// our own quota).
    Against,
}

fn one() -> f64 {
    1.0
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Op {
    /// `>`, numbers only. With `>=`, what the Prometheus probe reads thresholds from.
    #[serde(rename = ">")]
    Gt,
    /// `>=`, numbers only.
    #[serde(rename = ">=")]
    Ge,
    /// `<`, numbers only.
    #[serde(rename = "<")]
    Lt,
    /// `<=`, numbers only.
    #[serde(rename = "<=")]
    Le,
    /// `==`: numbers (within `f64::EPSILON`), booleans, texts.
    #[serde(rename = "==")]
    Eq,
    /// `!=`: numbers, booleans, texts.
    #[serde(rename = "!=")]
    Ne,
    /// `in`: a text among a list (`indicator in ["minor", "major"]`).
    #[serde(rename = "in")]
    In,
    /// `not_in` in the file (one word, as TOML values go), `not in` when shown.
    #[serde(rename = "not_in")]
    NotIn,
}

impl Op {
    /// The operator as written in the runbook.
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Eq => "==",
            Self::Ne => "!=",
            Self::In => "in",
            Self::NotIn => "not in",
        }
    }
}

/// The right-hand side of a condition.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Operand {
    /// `true` or `false`.
    Bool(bool),
    /// A number; a TOML integer reads as one too.
    Number(f64),
    /// A word (`"major"`).
    Text(String),
    /// Words, for `in` and `not_in`.
    List(Vec<String>),
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool(b) => write!(f, "{b}"),
            Self::Number(n) => write!(f, "{}", crate::observe::Value::Number(*n)),
            Self::Text(t) => write!(f, "{t}"),
            Self::List(l) => write!(f, "[{}]", l.join(", ")),
        }
    }
}
