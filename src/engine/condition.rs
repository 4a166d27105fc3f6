//! Evaluating one runbook condition against the evidence table.
//!
//! Four truths, never two: a condition over a reading that is unknown or has no data neither
//! holds nor fails, so the rule above it holds still instead of reading "below the threshold".

use serde::Serialize;

use crate::locale::{Msg, MsgId};
use crate::observe::{Evidence, Labels, Reading, Value};
use crate::runbook::{Condition, Op, Operand};

/// What one instance of a condition says now.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Truth {
    /// Observed, and the condition holds for this value.
    Holds {
        /// The value compared.
        value: Value,
    },
    /// Observed, and the condition does not hold.
    Fails {
        /// The value compared.
        value: Value,
    },
    /// The source answered without a value to compare (no traffic, no limit): neither holds nor fails.
    NoData {
        /// The probe's words for why (English in the JSON).
        #[serde(serialize_with = "crate::locale::as_english")]
        why: Msg,
    },
    /// Not observable now (blind source, refused query, never seen).
    Unknown {
        /// Which source is unreachable, which query failed, or which key was never seen (English
        /// in the JSON).
        #[serde(serialize_with = "crate::locale::as_english")]
        why: Msg,
    },
}

/// The condition's truth for every instance it selects (one per label set; a source condition has one).
///
/// Never empty for a condition that names something: when nothing matches, the one instance is
/// the condition's own labels, unknown, so a rule over a reading that vanished (or never came)
/// is shown as blind instead of silently having no instance.
pub fn instances(c: &Condition, ev: &Evidence) -> Vec<(Labels, Truth)> {
    // `source_failing`: holds while the source's latest poll failed; its value is the failure.
    if let Some(source) = &c.source_failing {
        let truth = match ev.sources().get(source) {
            None => Truth::Unknown {
                why: Msg::new(MsgId::NotPolled).arg("source", source),
            },
            Some(s) => match &s.failure {
                // With a `reason`, a failure of another kind hides whether this one would hold
                // (a host we cannot connect to may or may not hang once connected).
                Some(f) if c.reason.as_deref().is_some_and(|r| r != f.kind.label()) => {
                    Truth::Unknown {
                        why: crate::observe::source_unreachable(source, f),
                    }
                }
                Some(f) => Truth::Holds {
                    value: Value::Text(f.to_string()),
                },
                None => Truth::Fails {
                    value: Value::Text("answering".into()),
                },
            },
        };
        return vec![(Labels::new(), truth)];
    }
    let Some(name) = c.obs.as_deref() else {
        return Vec::new();
    };
    // Every instance carrying at least the condition's labels (a condition without labels reads
    // all of them: one rule, one instance per handler or container).
    let selected: Vec<_> = ev
        .instances(name)
        .into_iter()
        .filter(|(labels, _)| c.labels.iter().all(|(k, v)| labels.get(k) == Some(v)))
        .collect();
    if selected.is_empty() {
        let key = crate::observe::Key {
            name: crate::observe::intern(name).unwrap_or("?"),
            labels: c.labels.clone(),
        };
        // Say why: the source that produces it is failing, or it has simply not been seen.
        let probe = crate::observe::spec_of(name).map_or("", |s| s.probe);
        let failing = ev.sources().iter().find(|(source, state)| {
            state.failure.is_some() && crate::observe::is_source_of(probe, source)
        });
        let why = match failing.and_then(|(s, state)| Some((s, state.failure.as_ref()?))) {
            Some((source, failure)) => crate::observe::source_unreachable(source, failure),
            None => Msg::new(MsgId::NotObserved).arg("key", key),
        };
        return vec![(c.labels.clone(), Truth::Unknown { why })];
    }
    selected
        .into_iter()
        .map(|(labels, reading)| (labels.clone(), truth_of(c, &reading)))
        .collect()
}

/// True when `c` reads a probe that is off unless configured ([`crate::observe::OPTIONAL_PROBES`])
/// and no source of that probe has ever reported: the source is not configured, so the condition is
/// no evidence either way. A cause leaves such a line out (see `diagnosis`), which keeps a runbook
/// that reads an optional source ranking as before while the source is off. A source that reported
/// once and then failed is not off: its lines are unknown, as any blind source's.
pub fn source_off(c: &Condition, ev: &Evidence) -> bool {
    let probe = match (&c.obs, &c.source_failing) {
        (Some(name), _) => crate::observe::spec_of(name).map(|s| s.probe),
        (None, Some(source)) => Some(source.as_str()),
        (None, None) => None,
    };
    probe.is_some_and(|p| {
        crate::observe::is_optional_probe(p)
            && !ev
                .sources()
                .keys()
                .any(|s| crate::observe::is_source_of(p, s))
    })
}

/// The truth of `c` for one reading.
pub fn truth_of(c: &Condition, reading: &Reading<'_>) -> Truth {
    match reading {
        Reading::Unknown { why } => Truth::Unknown { why: why.clone() },
        Reading::NoData { why, .. } => Truth::NoData {
            why: (*why).clone(),
        },
        Reading::Value { value, .. } => {
            let holds = compare(value, c.op, c.value.as_ref());
            let value = (*value).clone();
            if holds {
                Truth::Holds { value }
            } else {
                Truth::Fails { value }
            }
        }
    }
}

/// `value op operand`; a comparison that does not fit (validated away at load) is false.
///
/// `==` and `!=` on numbers allow `f64::EPSILON`: a count or a ratio read as `1.0000000000000002`
/// must still equal `1`. Beyond that, numbers compare exactly.
pub fn compare(value: &Value, op: Option<Op>, operand: Option<&Operand>) -> bool {
    let (Some(op), Some(operand)) = (op, operand) else {
        return false;
    };
    match (value, operand) {
        (Value::Number(v), Operand::Number(x)) => match op {
            Op::Gt => v > x,
            Op::Ge => v >= x,
            Op::Lt => v < x,
            Op::Le => v <= x,
            Op::Eq => (v - x).abs() < f64::EPSILON,
            Op::Ne => (v - x).abs() >= f64::EPSILON,
            Op::In | Op::NotIn => false,
        },
        (Value::Bool(v), Operand::Bool(x)) => match op {
            Op::Eq => v == x,
            Op::Ne => v != x,
            _ => false,
        },
        (Value::Text(v), Operand::Text(x)) => match op {
            Op::Eq => v == x,
            Op::Ne => v != x,
            _ => false,
        },
        (Value::Text(v), Operand::List(xs)) => match op {
            Op::In => xs.iter().any(|x| x == v),
            Op::NotIn => xs.iter().all(|x| x != v),
            _ => false,
        },
        _ => false,
    }
}

/// The condition as text: `status.indicator{page="openai"} in [minor, major]`, `source_failing = "prometheus"`.
pub fn describe(c: &Condition) -> String {
    if let Some(source) = &c.source_failing {
        // As the runbook writes it: the raw form beside the sentence, the same in every language.
        return match &c.reason {
            Some(reason) => format!("source_failing = {source:?}, reason = {reason:?}"),
            None => format!("source_failing = {source:?}"),
        };
    }
    let key = crate::observe::Key {
        name: c
            .obs
            .as_deref()
            .and_then(crate::observe::intern)
            .unwrap_or("?"),
        labels: c.labels.clone(),
    };
    match (c.op, &c.value) {
        (Some(op), Some(v)) => format!("{key} {} {v}", op.symbol()),
        _ => key.to_string(),
    }
}
