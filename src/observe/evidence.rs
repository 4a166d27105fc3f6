//! The evidence table: the latest report of every source and the latest outcome of every key, as
//! the rules read them. A source that fails keeps its keys, read as unknown until it answers again.
//!
//! It stores what the probes reported and nothing else: it does not know the catalogue (a key is
//! whatever a probe sent), the runbook's conditions, or when to poll.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::{Failure, Key, Labels, Outcome, ProbeReport, Value};
use crate::clock::Timestamp;
use crate::locale::{Msg, MsgId};

/// A reading of one key as the rules see it.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading<'a> {
    /// A value observed at `at`.
    Value {
        /// Borrowed from the table: a reading lives only as long as one evaluation.
        value: &'a Value,
        /// The start of the poll that read it (the report's `at`).
        at: Timestamp,
    },
    /// The source answered without a value to compare.
    NoData {
        /// The probe's words for why (`no requests in the window`).
        why: &'a Msg,
        /// The start of the poll that said so.
        at: Timestamp,
    },
    /// Not observable now: the source is unreachable, the query failed, or the key was never seen.
    Unknown {
        /// Owned: it is often composed here (`redis cannot be read (…)`), not stored.
        why: Msg,
    },
}

/// The state of one source, from its latest report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceState {
    /// When the latest report started.
    pub last_poll: Timestamp,
    /// `None` while the source answers.
    pub failure: Option<Failure>,
    /// Since when the source has been in its current state (answering, or failing).
    pub since: Timestamp,
}

/// One key's latest observation.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    /// The source that reported it: its next answer replaces the key, and its failure makes the
    /// key unknown.
    source: String,
    outcome: Outcome,
    note: Option<Msg>,
    /// The start of the poll that read it.
    at: Timestamp,
}

/// The latest observation of every key and the state of every source.
///
/// Owned by one task (the watch loop, or `diagnose` and the scenario runner for their own): no
/// lock, and a reading borrows from it for the length of an evaluation.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// By key; a key belongs to one source (the last that reported it).
    entries: HashMap<Key, Entry>,
    /// By source name; sorted, so the failing source a missing key is blamed on (the first that
    /// matches its probe) is the same at every evaluation.
    sources: BTreeMap<String, SourceState>,
}

impl Evidence {
    /// An empty table: every key reads unknown ("has not been observed").
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a report. A source that answered replaces all its keys (a key it no longer reports, such
    /// as a handler that stopped serving, disappears); a source that failed keeps its last values, but
    /// they read as unknown until it answers again.
    pub fn apply(&mut self, report: ProbeReport) {
        let failed = report.result.as_ref().err().cloned();
        let since = match self.sources.get(&report.source) {
            Some(prev) if prev.failure.is_some() == failed.is_some() => prev.since,
            _ => report.at,
        };
        if let Ok(observations) = report.result {
            self.entries.retain(|_, e| e.source != report.source);
            for o in observations {
                let entry = Entry {
                    source: report.source.clone(),
                    outcome: o.outcome,
                    note: o.note,
                    at: report.at,
                };
                self.entries.insert(o.key, entry);
            }
        }
        self.sources.insert(
            report.source,
            SourceState {
                last_poll: report.at,
                failure: failed,
                since,
            },
        );
    }

    /// The reading of one key.
    pub fn get(&self, key: &Key) -> Reading<'_> {
        match self.entries.get(key) {
            None => Reading::Unknown {
                why: Msg::new(MsgId::NotObserved).arg("key", key),
            },
            Some(e) => self.reading(e),
        }
    }

    /// How the latest value of `key` was read, when its probe said.
    pub fn note(&self, key: &Key) -> Option<&Msg> {
        self.entries.get(key).and_then(|e| e.note.as_ref())
    }

    fn reading<'a>(&'a self, e: &'a Entry) -> Reading<'a> {
        if let Some(f) = self.sources.get(&e.source).and_then(|s| s.failure.as_ref()) {
            return Reading::Unknown {
                why: source_unreachable(&e.source, f),
            };
        }
        match &e.outcome {
            Outcome::Value(value) => Reading::Value { value, at: e.at },
            Outcome::NoData(why) => Reading::NoData { why, at: e.at },
            Outcome::Unknown(f) => Reading::Unknown {
                why: Msg::new(MsgId::Failed).msg("failure", f.reader_words()),
            },
        }
    }

    /// Every instance of the observation `name`, with its labels, sorted by labels.
    pub fn instances(&self, name: &str) -> Vec<(&Labels, Reading<'_>)> {
        let mut out: Vec<_> = self
            .entries
            .iter()
            .filter(|(k, _)| k.name == name)
            .map(|(k, e)| (&k.labels, self.reading(e)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }

    /// Every key with its latest outcome and time, sorted by key (for `diagnose` and the API).
    /// With each: its outcome, how it was read (the probe's note) and when.
    pub fn entries(&self) -> Vec<(&Key, &Outcome, Option<&Msg>, Timestamp)> {
        let mut out: Vec<_> = self
            .entries
            .iter()
            .map(|(k, e)| (k, &e.outcome, e.note.as_ref(), e.at))
            .collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }

    /// Every source that has reported, with its state.
    pub fn sources(&self) -> &BTreeMap<String, SourceState> {
        &self.sources
    }
}

/// `source` cannot be read, with its failure (the peer's or the library's words, quoted).
pub fn source_unreachable(source: &str, f: &Failure) -> Msg {
    Msg::new(MsgId::SourceUnreachable)
        .arg("source", source)
        .msg("failure", f.reader_words())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::observe::{FailureKind, Observation};

    fn t(s: i64) -> Timestamp {
        Timestamp::from_unix_millis(s * 1000)
    }

    fn report(source: &str, at: i64, result: Result<Vec<Observation>, Failure>) -> ProbeReport {
        ProbeReport {
            source: source.into(),
            at: t(at),
            took: Duration::from_millis(3),
            result,
        }
    }

    #[test]
    fn a_failing_source_makes_its_keys_unknown_and_keeps_its_since() {
        let p95 = Key::new("prometheus.p95_seconds").with("handler", "/api/chat");
        let mut ev = Evidence::new();
        ev.apply(report(
            "prometheus",
            10,
            Ok(vec![Observation::number(p95.clone(), 4.2)]),
        ));
        assert!(
            matches!(ev.get(&p95), Reading::Value { value: Value::Number(n), .. } if *n == 4.2)
        );

        let down = Failure::new(FailureKind::Connect, "connection refused");
        ev.apply(report("prometheus", 25, Err(down.clone())));
        ev.apply(report("prometheus", 40, Err(down)));
        match ev.get(&p95) {
            Reading::Unknown { why } => {
                assert!(why.to_string().contains("connection refused"), "{why}");
            }
            other => panic!("expected unknown, got {other:?}"),
        }
        assert_eq!(
            ev.sources()["prometheus"].since,
            t(25),
            "failing since the first failed poll"
        );

        ev.apply(report("prometheus", 55, Ok(vec![])));
        assert!(
            matches!(ev.get(&p95), Reading::Unknown { .. }),
            "a key no longer reported is gone"
        );
        assert_eq!(ev.sources()["prometheus"].since, t(55));
        assert!(ev.sources()["prometheus"].failure.is_none());
    }

    #[test]
    fn sources_do_not_replace_each_others_keys() {
        let mut ev = Evidence::new();
        let a = Key::new("redis.ping_seconds");
        let b = Key::new("status.indicator").with("page", "openai");
        ev.apply(report(
            "redis",
            1,
            Ok(vec![Observation::number(a.clone(), 0.001)]),
        ));
        ev.apply(report(
            "status.openai",
            2,
            Ok(vec![Observation::text(b.clone(), "minor")]),
        ));
        ev.apply(report(
            "redis",
            3,
            Ok(vec![Observation::number(a.clone(), 0.002)]),
        ));
        assert!(matches!(ev.get(&b), Reading::Value { value: Value::Text(s), .. } if s == "minor"));
        assert_eq!(ev.instances("redis.ping_seconds").len(), 1);
    }
}
