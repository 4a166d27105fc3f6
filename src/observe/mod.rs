//! Observations and the evidence table: what the probes saw, and when.
//!
//! A probe's poll yields a [`ProbeReport`]: either the source answered, with a list of [`Observation`]s,
//! or it could not be read, with a [`Failure`]. The [`Evidence`] table keeps the latest report of every
//! source and the latest value of every observation key. The runbook's rules read only this table;
//! [`CATALOGUE`] lists every observation name a probe can produce, so a runbook that names another one is
//! refused at load time.
//!
//! Three states of a reading are kept apart on purpose: a value; *no data* (the source answered, but
//! there is nothing to compare: a handler without traffic gives `NaN`, a Redis without `maxmemory` has no
//! memory ratio); and *unknown* (the source, or this one query, could not be read). A rule must never
//! treat either of the last two as "below the threshold".
//!
//! # Layout
//!
//! - this file: the core types, [`Key`] (a catalogue name plus labels), [`Value`], [`Outcome`] (a
//!   value, no data or unknown), [`Observation`] (with its optional note), [`Failure`] and
//!   [`FailureKind`], and [`ProbeReport`], one poll's result;
//! - `evidence`: the [`Evidence`] table, the latest report per source and outcome per key, as the
//!   rules read it ([`Reading`]);
//! - `catalogue`: the vocabulary, [`CATALOGUE`] (every observation name a probe produces, with its
//!   kind, labels and help), [`spec_of`] and [`intern`], and the [`SUBJECT_LABELS`];
//! - `wanted`: [`Wanted`], what a reader's conditions read, so a probe fetches nothing no one reads.
//!
//! None of it knows the runbook, a probe, or a peer: the runbook names observations by their
//! catalogue names, and the probes produce them.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::clock::Timestamp;
use crate::locale::{Msg, MsgId};

mod catalogue;
mod evidence;
mod wanted;

pub use catalogue::{
    CATALOGUE, Kind, OPTIONAL_PROBES, SUBJECT_LABELS, Spec, intern, is_optional_probe,
    is_source_of, spec_of,
};
pub use evidence::{Evidence, Reading, SourceState, source_unreachable};
pub use wanted::Wanted;

/// The text observations whose value is words of ours, made by [`Observation::said`]: shown
/// through their note (in the reader's language), never quoted as a peer's.
pub const OWN_WORDS: &[&str] = &["prometheus.blind_spot", "doctor.rule_blind"];

/// Label pairs of an observation, sorted by name (`handler`, `container`, `pattern`, `page`).
pub type Labels = BTreeMap<String, String>;

/// Which observation: a catalogue name plus the labels that tell its instances apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Key {
    /// The catalogue name (`prometheus.p95_seconds`); `'static` because every name a probe sends
    /// is a literal of its own, and the runbook's names are [`intern`]ed.
    pub name: &'static str,
    /// What tells this instance apart (`handler`, `container`, `page`, …); empty for a reading
    /// with one instance. Part of the identity: a label that changes makes a new key, and a rule
    /// instance timed on the old one starts over.
    pub labels: Labels,
}

impl Key {
    /// A key without labels.
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            labels: Labels::new(),
        }
    }

    /// Adds one label.
    #[must_use]
    pub fn with(mut self, label: &str, value: impl Into<String>) -> Self {
        self.labels.insert(label.to_owned(), value.into());
        self
    }
}

/// `name{label="value",…}`, as Prometheus writes series.
impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)?;
        if !self.labels.is_empty() {
            f.write_str("{")?;
            for (i, (k, v)) in self.labels.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{k}={v:?}")?;
            }
            f.write_str("}")?;
        }
        Ok(())
    }
}

/// An observed value.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// A finite number (ratios, seconds, bytes, counts). Never NaN or infinite: those are no data.
    Number(f64),
    /// A yes or no (`docker.running`, `supabase.auth_ok`).
    Bool(bool),
    /// A word from a small set (`healthy`, `major`, an image name).
    Text(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{}", format_number(*n)),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Text(t) => f.write_str(t),
        }
    }
}

/// Up to four decimals, without trailing zeros: `3.2`, `0.0531`, `5000`. Integral values
/// below 1e15 print without a point, so counts and byte sizes read as integers.
fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        return format!("{n:.0}");
    }
    let s = format!("{n:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// What a probe got for one key.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    /// The source answered with a value to compare.
    Value(Value),
    /// The source answered but has nothing to compare (no traffic, no limit set, empty result),
    /// and why, in words worded where shown (the JSON keeps the English string).
    #[serde(serialize_with = "crate::locale::as_english")]
    NoData(Msg),
    /// This key could not be read although the source answered (one failing query).
    Unknown(Failure),
}

impl Outcome {
    /// A number, or no data when it is NaN or infinite (Prometheus sends `NaN` for a handler without
    /// traffic, and `+Inf` from `histogram_quantile` over an empty or overflowing histogram).
    pub fn number(n: f64) -> Self {
        if n.is_finite() {
            Self::Value(Value::Number(n))
        } else {
            Self::NoData(Msg::new(MsgId::NotFinite).arg("n", n))
        }
    }
}

/// One observation of one key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observation {
    /// Which reading, and of which instance.
    pub key: Key,
    /// What the probe got for it.
    pub outcome: Outcome,
    /// How the value was read, when that matters to whoever weighs it (`from the high-resolution
    /// histogram, all handlers`, `no 5xx series yet: 0`). Shown beside the value in evidence lines,
    /// symptoms and `diagnose`; it must not change what the value means. Words of ours, worded
    /// in the reader's language where shown (the JSON keeps the English string).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::locale::as_english_opt"
    )]
    pub note: Option<Msg>,
}

impl Observation {
    /// An observation without a note.
    pub fn new(key: Key, outcome: Outcome) -> Self {
        Self {
            key,
            outcome,
            note: None,
        }
    }

    /// The same observation, with how it was read.
    ///
    /// A note is a [`Msg`], worded in the reader's language: `Msg::new(MsgId::…).arg(…)`, with its
    /// words in `locale` (a line in `msgs!` of `locale/msg.rs` and a field in each language). A
    /// string still compiles (`with_note("…")` or `with_note(format!(…))`): it becomes
    /// [`Msg::english`], shown as written in every language, which the one-language test of the
    /// emails and pages reports as English in a pt-BR email once a test renders it.
    #[must_use]
    pub fn with_note(mut self, note: impl Into<Msg>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// A number, or no data when it is not finite (see [`Outcome::number`]): the one way probes
    /// record numbers, so no NaN reaches a comparison.
    pub fn number(key: Key, n: f64) -> Self {
        Self::new(key, Outcome::number(n))
    }

    /// A yes or no.
    pub fn boolean(key: Key, b: bool) -> Self {
        Self::new(key, Outcome::Value(Value::Bool(b)))
    }

    /// A text: a word from a small set, or words for a person (a blind spot's fix, a status
    /// page's description).
    pub fn text(key: Key, t: impl Into<String>) -> Self {
        Self::new(key, Outcome::Value(Value::Text(t.into())))
    }

    /// A text of our own words (a blind spot with its fix): its English as the value, which rules
    /// compare and the API and metrics show, and the words themselves as the note, so a reader
    /// sees them in their language ([`OWN_WORDS`] lists the observations said so).
    pub fn said(key: Key, words: Msg) -> Self {
        Self::text(key, words.to_string()).with_note(words)
    }
}

/// Why a source or a key could not be read: a stable `kind` for metrics and a human `detail` for logs,
/// the status page and emails. The detail never holds a secret (probes build it from their own words
/// and the peer's status, never from a URL with credentials or a header).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The metric label: a closed set, so the error counters stay bounded.
    pub kind: FailureKind,
    /// The human words: any length the probe chose (a peer's words quoted are cut short). English:
    /// logs, the API and `diagnose` show it.
    pub detail: String,
    /// The same, as words of ours a reader sees in their language, when the failure is ours to
    /// word ([`Failure::said`]); `None` when `detail` is a peer's or a library's words, which
    /// emails and pages then quote «…».
    #[serde(skip)]
    pub words: Option<Msg>,
}

impl Failure {
    /// A failure of `kind` saying `detail`: a peer's or a library's words, or ours not yet worded
    /// in every language (then [`Failure::said`] is the way to words in each).
    pub fn new(kind: FailureKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            words: None,
        }
    }

    /// A failure of `kind` in words of ours: `detail` is their English.
    pub fn said(kind: FailureKind, words: Msg) -> Self {
        Self {
            kind,
            detail: words.to_string(),
            words: Some(words),
        }
    }

    /// The same failure, said to be of `what` (`inspect: …`, a replica's name).
    #[must_use]
    pub fn of(self, what: &str) -> Self {
        Self {
            kind: self.kind,
            detail: format!("{what}: {}", self.detail),
            words: self.words.map(|w| {
                Msg::new(MsgId::ReplicaSays)
                    .arg("name", what)
                    .msg("note", w)
            }),
        }
    }

    /// What a reader sees of it: our words in their language, else the failure quoted as the
    /// peer's (`«timeout: …»`).
    pub fn reader_words(&self) -> Msg {
        match &self.words {
            Some(w) => w.clone(),
            None => Msg::new(MsgId::Untranslated).peer("text", self),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.label(), self.detail)
    }
}

/// The kinds of failure, as the `reason` label of `harven_watchdog_probe_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The peer did not answer within the probe's timeout.
    Timeout,
    /// No connection (refused, reset, DNS).
    Connect,
    /// The peer answered with an HTTP error status or a protocol error.
    Status,
    /// The answer could not be parsed (HTML instead of JSON, a wrong shape).
    Malformed,
    /// The answer was larger than the probe reads.
    TooLarge,
    /// The peer refused our query itself (bad PromQL): a runbook or config problem, not an outage.
    Query,
    /// Anything else the client library reported.
    Other,
}

impl FailureKind {
    /// Every kind, for creating each probe's error counters at 0 (so an `increase()` alert sees
    /// the first failure).
    pub const ALL: [FailureKind; 7] = [
        FailureKind::Timeout,
        FailureKind::Connect,
        FailureKind::Status,
        FailureKind::Malformed,
        FailureKind::TooLarge,
        FailureKind::Query,
        FailureKind::Other,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Status => "status",
            Self::Malformed => "malformed",
            Self::TooLarge => "too_large",
            Self::Query => "query",
            Self::Other => "other",
        }
    }
}

/// The result of one poll of one source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeReport {
    /// The source: `prometheus`, `status.openai`, `supabase`, `redis`, `docker`.
    pub source: String,
    /// When the poll started.
    pub at: Timestamp,
    /// How long the poll took.
    #[serde(with = "humantime_serde")]
    pub took: Duration,
    /// What it read, or why the whole source could not be read (then the evidence table keeps its
    /// previous keys, read as unknown).
    pub result: Result<Vec<Observation>, Failure>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_and_infinity_are_no_data_never_a_number() {
        assert!(matches!(Outcome::number(f64::NAN), Outcome::NoData(_)));
        assert!(matches!(Outcome::number(f64::INFINITY), Outcome::NoData(_)));
        assert!(matches!(
            Outcome::number(f64::NEG_INFINITY),
            Outcome::NoData(_)
        ));
        assert_eq!(Outcome::number(3.2), Outcome::Value(Value::Number(3.2)));
    }

    #[test]
    fn keys_print_like_prometheus_series() {
        let k = Key::new("docker.log_lines_per_minute")
            .with("pattern", "openai")
            .with("container", "harven-backend");
        assert_eq!(
            k.to_string(),
            r#"docker.log_lines_per_minute{container="harven-backend",pattern="openai"}"#
        );
        assert_eq!(Value::Number(0.053_12).to_string(), "0.0531");
        assert_eq!(Value::Number(5000.0).to_string(), "5000");
    }
}
