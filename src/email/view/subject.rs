//! The two sentences that say what an email is about: its subject line and its headline, the first
//! line of both parts.

use super::{EmailInput, find_rule};
use crate::engine::{Symptom, SymptomState};
use crate::incident::{Level, PageEvent};
use crate::locale::{Text, fill, human_duration, human_time};
use crate::observe::Value;
use crate::runbook::{Op, Section};
use crate::words::units::format_value;

/// `[Harven][L2][critical] Error rate 12.4% > 5% — provável: Supabase down`, or for the resolved
/// email `[Harven][L1][resolved] Error rate ≥ 25% — resolvido em 42 min`. The bracketed tags are
/// the same in every language, for mail filters.
pub(super) fn subject(
    input: &EmailInput<'_>,
    t: &Text,
    section: Option<&Section>,
    symptoms: &[&Symptom],
    cause_title: Option<&str>,
    open_for: &str,
) -> String {
    let level = input.page.level;
    if input.page.event == PageEvent::Resolved {
        let what =
            worst_rule_summary(input, section).unwrap_or_else(|| section_title(input, section));
        let tail = fill(t.subject_resolved, &[("duration", &open_for)]);
        return format!("[Harven][{level}][resolved] {what} — {tail}");
    }
    // The most severe firing symptom, the first of the runbook's rules among equals.
    let top = symptoms
        .iter()
        .filter(|s| matches!(s.state, SymptomState::Firing | SymptomState::Recovering))
        .min_by_key(|s| std::cmp::Reverse(s.severity));
    let what = match top {
        Some(s) => {
            let rule = find_rule(section, &s.rule);
            let summary = rule.map_or(s.summary.as_str(), |r| r.summary.get(input.locale));
            let value = match (&s.value, rule) {
                (Some(v @ Value::Number(_)), Some(r)) => {
                    Some(format_value(r.when.obs.as_deref().unwrap_or(""), v))
                }
                _ => None,
            };
            with_value(summary, rule.and_then(|r| r.when.op), value)
        }
        None => worst_rule_summary(input, section).unwrap_or_else(|| section_title(input, section)),
    };
    let cause = match cause_title {
        Some(c) => fill(t.subject_likely, &[("cause", &c)]),
        None => t.subject_no_cause.to_owned(),
    };
    format!(
        "[Harven][{level}][{}] {what} — {cause}",
        input.incident.severity
    )
}

fn section_title(input: &EmailInput<'_>, section: Option<&Section>) -> String {
    section.map_or_else(
        || input.section.title.clone(),
        |s| s.title.get(input.locale).to_owned(),
    )
}

/// The summary of the most severe rule that fired in the incident (first among equals).
fn worst_rule_summary(input: &EmailInput<'_>, section: Option<&Section>) -> Option<String> {
    let section = section?;
    section
        .rules
        .iter()
        .filter(|r| input.incident.symptoms.contains_key(&r.id))
        .min_by_key(|r| std::cmp::Reverse(r.severity))
        .map(|r| r.summary.get(input.locale).to_owned())
}

/// Puts the observed value before the threshold the summary states: `Error rate > 5%` with `12.4%`
/// reads `Error rate 12.4% > 5%`, `Error rate above 5%` reads `Error rate 12.4% above 5%`, and
/// `Erros 401/403 em massa (> 20% …)` reads `Erros 401/403 em massa 31% (> 20% …)`. A summary that
/// states no threshold is left as it is.
pub(super) fn with_value(summary: &str, op: Option<Op>, value: Option<String>) -> String {
    let Some(value) = value else {
        return summary.to_owned();
    };
    // Symbols first (the pt-BR runbook writes `> 5%`), then the words the English one uses.
    let symbols: &[&str] = match op {
        Some(Op::Gt) => &[">", "above", "over"],
        Some(Op::Ge) => &[">=", "≥", "at or above"],
        Some(Op::Lt) => &["<", "below", "under"],
        Some(Op::Le) => &["<=", "≤", "at or below"],
        _ => &[],
    };
    for sym in symbols {
        let pattern = format!("{sym} ");
        let mut from = 0;
        while let Some(rel) = summary[from..].find(&pattern) {
            let i = from + rel;
            match summary[..i].chars().next_back() {
                Some(' ') => return format!("{}{value} {}", &summary[..i], &summary[i..]),
                Some('(') => {
                    let j = i - 1;
                    return format!("{}{value} {}", &summary[..j], &summary[j..]);
                }
                _ => from = i + pattern.len(),
            }
        }
    }
    summary.to_owned()
}

/// One sentence: what happened and why this level hears of it.
pub(super) fn headline(input: &EmailInput<'_>, t: &Text, title: &str, open_for: &str) -> String {
    let incident = input.incident;
    let level = input.page.level;
    let opened = human_time(incident.opened_at);
    match input.page.event {
        PageEvent::Opened => fill(
            t.headline_opened,
            &[
                ("opened", &opened),
                ("title", &title),
                ("severity", &incident.severity),
                ("level", &level),
            ],
        ),
        PageEvent::Escalated => match (level, incident.critical_since) {
            (Level::L3, Some(since)) => fill(
                t.headline_escalated_critical,
                &[
                    ("level", &level),
                    (
                        "critical_for",
                        &human_duration(input.now.saturating_since(since)),
                    ),
                    ("since", &human_time(since)),
                ],
            ),
            _ => fill(
                t.headline_escalated,
                &[
                    ("level", &level),
                    ("open_for", &open_for),
                    ("opened", &opened),
                ],
            ),
        },
        PageEvent::Reminder => fill(
            t.headline_reminder,
            &[("open_for", &open_for), ("level", &level)],
        ),
        PageEvent::Reopened => fill(
            t.headline_reopened,
            &[("n", &incident.reopened.max(1)), ("opened", &opened)],
        ),
        PageEvent::Resolved => fill(
            t.headline_resolved,
            &[
                ("at", &human_time(incident.resolved_at.unwrap_or(input.now))),
                ("open_for", &open_for),
            ],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_goes_before_the_threshold_the_summary_states() {
        let v = || Some("12.4%".to_owned());
        assert_eq!(
            with_value("Error rate > 5%", Some(Op::Gt), v()),
            "Error rate 12.4% > 5%"
        );
        assert_eq!(
            with_value("Error rate ≥ 25%", Some(Op::Ge), Some("31%".into())),
            "Error rate 31% ≥ 25%"
        );
        assert_eq!(
            with_value(
                "Erros 401/403 em massa (> 20% das requisições)",
                Some(Op::Gt),
                Some("31%".into())
            ),
            "Erros 401/403 em massa 31% (> 20% das requisições)"
        );
        assert_eq!(
            with_value("p95 above 3 seconds", Some(Op::Gt), Some("4.2 s".into())),
            "p95 4.2 s above 3 seconds"
        );
        assert_eq!(
            with_value(
                "Error rate at or above 25%",
                Some(Op::Ge),
                Some("31%".into())
            ),
            "Error rate 31% at or above 25%"
        );
        assert_eq!(
            with_value(
                "Supabase REST not answering",
                Some(Op::Eq),
                Some("false".into())
            ),
            "Supabase REST not answering"
        );
        assert_eq!(
            with_value(
                "Mass 401/403 (over 20% of requests)",
                Some(Op::Gt),
                Some("31%".into())
            ),
            "Mass 401/403 31% (over 20% of requests)"
        );
        assert_eq!(
            with_value("Error rate > 5%", Some(Op::Gt), None),
            "Error rate > 5%"
        );
    }
}
