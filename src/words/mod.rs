//! Evidence in words: what the emails, the status pages and `diagnose` say of a symptom, an
//! evidence line, a timeline entry or a blind spot, as a sentence in the reader's language, from
//! the runbook's data and what the probes read:
//! `"error" lines per minute in the backend's log: 7, lines per minute over the last 2m (needs above 1)`.
//!
//! A sentence is made of the observation's phrase (`locale`'s table, one per catalogue name, with
//! the instance's labels woven in), the value in its unit (`units.rs`), the probe's note (a
//! [`Msg`], worded in the same language) and the condition's threshold in words. The raw condition
//! (`docker.log_lines_per_minute{pattern="error",role="backend"} > 1`) stays beside it, smaller:
//! the surfaces show both. It knows no template, no HTTP and no store.
//!
//! Nothing a peer wrote is worded here: a text reading, a failure and a label value a peer chose
//! are quoted «…» ([`crate::locale::quoted`]) or shown as values.

pub mod units;

use crate::doctor::BlindSpot;
use crate::engine::Found;
use crate::incident::TimelineEntry;
use crate::locale::{Locale, Msg, Text, fill, quoted};
use crate::observe::{Labels, OWN_WORDS, Value};
use crate::runbook::{Condition, Op, Operand};
use units::format_value;

/// What the observation `obs` of the instance `labels` is, in `locale`: its phrase with the labels
/// woven in (`{of}` says whose: a role's, a container's). A label the instance lacks reads "any";
/// the `handler` `*` (all handlers) reads so.
pub fn phrase(locale: Locale, obs: &str, labels: &Labels) -> String {
    let t = locale.text();
    let Some(template) = t
        .observations
        .iter()
        .find(|(name, _)| *name == obs)
        .map(|(_, p)| *p)
    else {
        return obs.to_owned();
    };
    let of = match (labels.get("role"), labels.get("container")) {
        (Some(role), _) => fill(t.of_role, &[("role", role)]),
        (None, Some(container)) => fill(t.of_container, &[("container", container)]),
        (None, None) => t.of_any.to_owned(),
    };
    let value = |name: &str| -> String {
        match labels.get(name).map(String::as_str) {
            Some("*") if name == "handler" => t.all_handlers.to_owned(),
            Some(v) => v.to_owned(),
            None => t.any_label.to_owned(),
        }
    };
    // Every label the observation may carry (the catalogue's, so a new one needs no edit here) and
    // the ones this instance has: a phrase's placeholder is always filled, `any_label` when absent.
    let mut names: Vec<&str> = vec![
        "handler", "page", "pattern", "var", "instance", "rule", "obs", "reason",
    ];
    let known = crate::observe::spec_of(obs).map_or(&[][..], |s| s.labels);
    for name in known
        .iter()
        .copied()
        .chain(labels.keys().map(String::as_str))
    {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let values: Vec<(&str, String)> = names.iter().map(|n| (*n, value(n))).collect();
    let mut args: Vec<(&str, &dyn std::fmt::Display)> = values
        .iter()
        .map(|(n, v)| (*n, v as &dyn std::fmt::Display))
        .collect();
    args.push(("of", &of));
    fill(template, &args)
}

/// A reading in words: a number in its unit, yes or no, or a peer's word quoted.
pub fn value(locale: Locale, obs: &str, v: &Value) -> String {
    said(locale, obs, v, None)
}

/// [`value`], or for the observations whose text is words of ours ([`OWN_WORDS`]), their note in
/// `locale`.
fn said(locale: Locale, obs: &str, v: &Value, note: Option<&Msg>) -> String {
    let t = locale.text();
    if let (Value::Text(_), Some(words)) = (v, note)
        && OWN_WORDS.contains(&obs)
    {
        return words.words(locale);
    }
    match v {
        Value::Bool(true) => t.value_yes.to_owned(),
        Value::Bool(false) => t.value_no.to_owned(),
        Value::Text(text) => quoted(text),
        Value::Number(_) => format_value(obs, v),
    }
}

/// What makes `c` hold, in words: `above 1`, `one of minor, major`, `no`; a source condition's
/// "cannot be read".
pub fn threshold(locale: Locale, c: &Condition) -> String {
    let t = locale.text();
    if c.source_failing.is_some() {
        // A `reason` is a closed word (`timeout`), shown as the metric label shows it.
        return match &c.reason {
            Some(reason) => format!("{} ({reason})", t.op_failing),
            None => t.op_failing.to_owned(),
        };
    }
    let obs = c.obs.as_deref().unwrap_or("");
    let x = match &c.value {
        Some(Operand::Number(n)) => format_value(obs, &Value::Number(*n)),
        Some(Operand::Bool(b)) => value(locale, obs, &Value::Bool(*b)),
        Some(Operand::Text(s)) => s.clone(),
        Some(Operand::List(l)) => l.join(", "),
        None => return String::new(),
    };
    let words = match c.op {
        Some(Op::Gt) => t.op_gt,
        Some(Op::Ge) => t.op_ge,
        Some(Op::Lt) => t.op_lt,
        Some(Op::Le) => t.op_le,
        Some(Op::Eq) | None => t.op_eq,
        Some(Op::Ne) => t.op_ne,
        Some(Op::In) => t.op_in,
        Some(Op::NotIn) => t.op_not_in,
    };
    fill(words, &[("x", &x)])
}

/// The instance's labels over the condition's (the instance carries them all; a line that read
/// nothing has only the condition's).
fn merged(c: &Condition, f: &Found) -> Labels {
    let mut labels = c.labels.clone();
    labels.extend(f.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels
}

/// A value with how it was read: `7, lines per minute over the last 2m`; a text of our own words
/// is its note alone.
fn with_note(locale: Locale, obs: &str, v: &Value, note: Option<&Msg>) -> String {
    if let Value::Text(_) = v
        && OWN_WORDS.contains(&obs)
    {
        return said(locale, obs, v, note);
    }
    let value = said(locale, obs, v, None);
    match note.map(|n| n.words(locale)).filter(|n| !n.is_empty()) {
        Some(note) => fill(
            locale.text().ev_with_note,
            &[("value", &value), ("note", &note)],
        ),
        None => value,
    }
}

/// One evidence line in words, a sentence per instance that decided it (`found`, then "and N
/// more"): what, the value and what would make it hold. Empty when the line kept no instances (a
/// diagnosis stored before they were kept): the caller shows the raw line.
pub fn evidence(locale: Locale, c: &Condition, found: &[Found], more: usize) -> Vec<String> {
    let t = locale.text();
    let mut out: Vec<String> = found
        .iter()
        .map(|f| {
            if let Some(source) = &c.source_failing {
                return match (&f.value, &f.why) {
                    (Some(Value::Text(failure)), _) if failure != "answering" => fill(
                        t.ev_source_down,
                        &[("source", source), ("failure", &quoted(failure))],
                    ),
                    (Some(_), _) => fill(t.ev_source_up, &[("source", source)]),
                    (None, why) => unknown(t, locale, source, why.as_ref(), f.no_data),
                };
            }
            let obs = c.obs.as_deref().unwrap_or("");
            let what = phrase(locale, obs, &merged(c, f));
            match &f.value {
                Some(v) => fill(
                    t.ev_needs,
                    &[
                        ("what", &what),
                        ("value", &with_note(locale, obs, v, f.note.as_ref())),
                        ("cond", &threshold(locale, c)),
                    ],
                ),
                None => unknown(t, locale, &what, f.why.as_ref(), f.no_data),
            }
        })
        .collect();
    if more > 0 {
        out.push(fill(t.ev_more, &[("n", &more)]));
    }
    out
}

/// `{what}: no data (why)` or `{what}: unknown (why)`.
fn unknown(t: &Text, locale: Locale, what: &str, why: Option<&Msg>, no_data: bool) -> String {
    let why = why.map_or_else(|| t.msg_no_data.to_owned(), |w| w.words(locale));
    let words = if no_data { t.ev_no_data } else { t.ev_unknown };
    fill(words, &[("what", &what), ("why", &why)])
}

/// A symptom in words: what the rule's `when` reads of this instance, its value (with the probe's
/// note) and when it fires: `p95 latency on /api/chat: 8.8 s (fires above 3 s)`. Without a value,
/// why there is none.
pub fn symptom(
    locale: Locale,
    when: &Condition,
    labels: &Labels,
    reading: Option<&Value>,
    note: Option<&Msg>,
) -> String {
    let t = locale.text();
    let obs = when.obs.as_deref().unwrap_or("");
    let mut all = when.labels.clone();
    all.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    let what = match &when.source_failing {
        Some(source) => source.clone(),
        None => phrase(locale, obs, &all),
    };
    match reading {
        Some(v) => fill(
            t.ev_fires,
            &[
                ("what", &what),
                ("value", &with_note(locale, obs, v, note)),
                ("cond", &threshold(locale, when)),
            ],
        ),
        None => unknown(t, locale, &what, note, false),
    }
}

/// A timeline entry's kind in words (`paged` → `acionamento`); a kind this version does not know
/// is shown as stored.
pub fn timeline_kind(locale: Locale, kind: &str) -> String {
    let t = locale.text();
    match kind {
        "opened" => t.kind_opened,
        "reopened" => t.kind_reopened,
        "severity" => t.kind_severity,
        "symptom" => t.kind_symptom,
        "cause" => t.kind_cause,
        "paged" => t.kind_paged,
        "acknowledged" => t.kind_acknowledged,
        "resolved" => t.kind_resolved,
        "note" => t.kind_note,
        "muted" => t.kind_muted,
        other => other,
    }
    .to_owned()
}

/// A timeline entry's text in words: its message in `locale`, or, for an entry stored before
/// messages were kept, its English text as stored.
pub fn timeline_text(locale: Locale, e: &TimelineEntry) -> String {
    e.msg
        .as_ref()
        .map_or_else(|| e.text.clone(), |m| m.words(locale))
}

/// A blind spot in words: which rule cannot fire and the stable reason
/// (`rule latency.p95_high cannot fire (buckets)`), and its detail with the fix.
pub fn blind_spot(locale: Locale, spot: &BlindSpot) -> (String, String) {
    let title = fill(
        locale.text().blind_rule,
        &[("rule", &spot.rule), ("reason", &spot.reason)],
    );
    (title, spot.msg.words(locale))
}

/// One of Sentry's top new issues as the email and the incident page list it: ID, title and level
/// quoted as a peer's words (a title is an exception message, any user's text), the figures in
/// the reader's words, the link only when http(s), its shown text quoted too (a peer's link must
/// not pass for one of ours).
#[derive(Debug, Clone, serde::Serialize)]
pub struct IssueWords {
    /// `«BACKEND-7F»`.
    pub id: String,
    /// `«KeyError: 'user'»`.
    pub title: String,
    /// `42 events, 7 users, «error»`.
    pub counts: String,
    /// For an `href`.
    pub link: Option<String>,
    /// The link as shown, quoted.
    pub link_text: Option<String>,
}

/// `i` in `locale`'s words.
pub fn sentry_issue(locale: Locale, i: &crate::probe::sentry::TopIssue) -> IssueWords {
    let link = i
        .link
        .clone()
        .filter(|l| l.starts_with("https://") || l.starts_with("http://"));
    IssueWords {
        id: quoted(&i.short_id),
        title: quoted(&i.title),
        counts: fill(
            locale.text().sentry_issue_counts,
            &[
                ("events", &i.events),
                ("users", &i.users),
                ("level", &quoted(&i.level)),
            ],
        ),
        link_text: link.as_deref().map(quoted),
        link,
    }
}

#[cfg(test)]
mod tests;
