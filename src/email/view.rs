//! From the domain types to what an email shows: plain strings in the email's locale, with units,
//! UTC times and durations, the subject, and the data of the postmortem draft. The templates only lay
//! these out, so every decision about wording is here and tested through the rendered emails.
//!
//! **Peer strings.** What a peer chose — a status page's description, a Prometheus label value such
//! as a handler name, a container or image name, a note or failure detail quoting an answer — must
//! not pass for the watchdog's own words or links, above all in the text part, where the ack/resolve
//! links are plain lines. Every reading is shown through [`quoted`]: one line (control characters,
//! line and paragraph separators and bidirectional overrides become spaces), at most
//! [`MAX_PEER`] characters, between `«` and `»` (any guillemet inside becomes `‹` `›`, so it cannot
//! close the quote). Lines of the watchdog's that embed readings (the symptom's key with its label
//! values, which [`Key`]'s `Display` already quotes and escapes; timeline entries; commands with a
//! filled-in value) go through [`one_line`]. The HTML part escapes everything besides (its templates
//! are `*.html`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::EmailInput;
use crate::clock::Timestamp;
use crate::engine::condition::describe;
use crate::engine::diagnosis::EvidenceLine;
use crate::engine::{CauseResult, CauseStatus, Symptom, SymptomState};
use crate::incident::{IncidentState, Level, PageEvent};
use crate::observe::{Key, Value};
use crate::runbook::{Condition, Locale, Op, Operand, Rule, Section};

/// Labels of the templates, by key, in one locale. Both tables have the same keys (tested); a key a
/// template asks for and the table lacks fails the render (strict undefined values).
type Labels = BTreeMap<&'static str, &'static str>;

const PT_BR: &[(&str, &str)] = &[
    ("lang", "pt-BR"),
    ("incident", "Incidente"),
    ("section", "Seção"),
    ("severity", "Severidade"),
    ("state", "Estado"),
    ("state_open", "aberto"),
    ("state_resolved", "resolvido"),
    ("opened_at", "Aberto em"),
    ("critical_since", "Crítico desde"),
    ("open_for", "Duração até agora"),
    ("reopened", "Reaberturas"),
    ("runbook", "Runbook"),
    ("symptoms", "Sintomas"),
    ("no_symptoms", "Nenhum sintoma ativo neste momento."),
    ("value", "valor"),
    ("threshold", "limite"),
    ("clears", "normaliza com"),
    ("fired_at", "disparou em"),
    ("condition", "condição"),
    ("diagnosis", "Diagnóstico"),
    ("cause", "Causa"),
    ("status", "Situação"),
    ("score", "evidência"),
    ("evidence", "Evidência"),
    ("truth", "resultado"),
    ("observed", "observado"),
    ("context", "Contexto"),
    ("what_to_do", "O que fazer (runbook)"),
    (
        "no_likely",
        "Nenhuma causa provável: nenhuma evidência do runbook se confirmou. Veja o diagnóstico acima e siga o checklist.",
    ),
    ("actions", "Ações"),
    ("commands", "Comandos"),
    ("vendor", "Fornecedor"),
    ("links", "Links"),
    ("incident_page", "Este incidente no watchdog"),
    ("act", "Reconhecer ou resolver"),
    ("ack", "Reconhecer (ack) como"),
    ("resolve", "Resolver"),
    (
        "act_note",
        "Os links abrem uma página de confirmação; nada muda até você confirmar. Válidos até",
    ),
    ("history", "Escalonamento"),
    ("level", "Nível"),
    ("paged_at", "acionado em"),
    ("last_email", "último email"),
    ("acked", "reconhecido"),
    ("not_paged", "não acionado"),
    ("not_acked", "não reconhecido"),
    ("by", "por"),
    ("at", "em"),
    ("reminders", "Lembretes enviados"),
    ("timeline", "Linha do tempo"),
    ("checklist", "Checklist de incidente"),
    ("resolved", "Resolvido"),
    ("resolved_at", "Resolvido em"),
    ("duration", "Duração"),
    ("resolve_note", "Nota de resolução"),
    ("postmortem", "Rascunho de post-mortem (copie e complete)"),
    ("pm_title", "Post-mortem"),
    ("pm_summary", "Resumo"),
    ("pm_start", "Início"),
    ("pm_end", "Fim"),
    ("pm_cause", "Causa provável"),
    (
        "pm_cause_unknown",
        "desconhecida (nenhuma evidência do runbook se confirmou)",
    ),
    ("pm_acks", "Quem reconheceu"),
    ("pm_nobody", "ninguém reconheceu"),
    ("pm_escalations", "Escalonamentos"),
    ("pm_actions_taken", "Ações tomadas"),
    ("pm_suggested", "Ações do runbook para a causa provável"),
    ("pm_root_cause", "Causa raiz"),
    ("pm_action_items", "Action items"),
    ("pm_fill", "(completar)"),
    ("footer", "Enviado pelo harven-watchdog. Horários em UTC."),
];

const EN: &[(&str, &str)] = &[
    ("lang", "en"),
    ("incident", "Incident"),
    ("section", "Section"),
    ("severity", "Severity"),
    ("state", "State"),
    ("state_open", "open"),
    ("state_resolved", "resolved"),
    ("opened_at", "Opened at"),
    ("critical_since", "Critical since"),
    ("open_for", "Open for"),
    ("reopened", "Reopened"),
    ("runbook", "Runbook"),
    ("symptoms", "Symptoms"),
    ("no_symptoms", "No symptom is active right now."),
    ("value", "value"),
    ("threshold", "threshold"),
    ("clears", "clears at"),
    ("fired_at", "fired at"),
    ("condition", "condition"),
    ("diagnosis", "Diagnosis"),
    ("cause", "Cause"),
    ("status", "Status"),
    ("score", "evidence"),
    ("evidence", "Evidence"),
    ("truth", "result"),
    ("observed", "observed"),
    ("context", "Context"),
    ("what_to_do", "What to do (runbook)"),
    (
        "no_likely",
        "No likely cause: none of the runbook's evidence holds. See the diagnosis above and follow the checklist.",
    ),
    ("actions", "Actions"),
    ("commands", "Commands"),
    ("vendor", "Vendor"),
    ("links", "Links"),
    ("incident_page", "This incident on the watchdog"),
    ("act", "Acknowledge or resolve"),
    ("ack", "Acknowledge as"),
    ("resolve", "Resolve"),
    (
        "act_note",
        "The links open a confirmation page; nothing changes until you confirm. Valid until",
    ),
    ("history", "Escalation"),
    ("level", "Level"),
    ("paged_at", "paged at"),
    ("last_email", "last email"),
    ("acked", "acknowledged"),
    ("not_paged", "not paged"),
    ("not_acked", "not acknowledged"),
    ("by", "by"),
    ("at", "at"),
    ("reminders", "Reminders sent"),
    ("timeline", "Timeline"),
    ("checklist", "Incident checklist"),
    ("resolved", "Resolved"),
    ("resolved_at", "Resolved at"),
    ("duration", "Duration"),
    ("resolve_note", "Resolution note"),
    ("postmortem", "Postmortem draft (copy and complete)"),
    ("pm_title", "Postmortem"),
    ("pm_summary", "Summary"),
    ("pm_start", "Start"),
    ("pm_end", "End"),
    ("pm_cause", "Probable cause"),
    (
        "pm_cause_unknown",
        "unknown (none of the runbook's evidence held)",
    ),
    ("pm_acks", "Acknowledged by"),
    ("pm_nobody", "nobody acknowledged"),
    ("pm_escalations", "Escalations"),
    ("pm_actions_taken", "Actions taken"),
    ("pm_suggested", "Runbook actions for the probable cause"),
    ("pm_root_cause", "Root cause"),
    ("pm_action_items", "Action items"),
    ("pm_fill", "(to complete)"),
    ("footer", "Sent by harven-watchdog. Times are UTC."),
];

/// Most characters of a peer string an email shows: as many as an incident keeps of an observed
/// value ([`MAX_TEXT`](crate::incident::model::MAX_TEXT)), enough for a blind spot's reading with
/// its fix, and one line whatever a peer sends.
pub(super) const MAX_PEER: usize = 1200;

/// Most characters of an evidence line's reading, which joins every instance it read (a blind spot
/// per rule, each with its fix): a few peer strings' worth.
const MAX_OBSERVED: usize = 4 * MAX_PEER;

/// Most characters of a watchdog line that embeds peer strings (a key with its labels, a timeline
/// entry, a command).
const MAX_LINE: usize = 1500;

/// A character that must not reach an email inside a peer string: control characters (newlines and
/// tabs included), Unicode line and paragraph separators, and the bidirectional controls that can
/// make text read in another order than it is written.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `s` on one line: unsafe characters become spaces, runs of white space one space, the ends
/// trimmed, and at most `max` characters kept (`…` marks a cut).
pub(super) fn one_line(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max * 4));
    let mut count = 0;
    let mut space = false;
    for c in s.chars() {
        let c = if unsafe_char(c) { ' ' } else { c };
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if count + usize::from(space) >= max {
            out.push('…');
            return out;
        }
        if space {
            out.push(' ');
            count += 1;
            space = false;
        }
        out.push(c);
        count += 1;
    }
    out
}

/// A string a peer chose, as an email shows it: [`one_line`] cut at [`MAX_PEER`] characters, any
/// guillemet inside turned into `‹`/`›`, between `«` and `»`. Nothing in it can start a line of its
/// own or close the quote, so it reads as a quotation, never as the watchdog speaking.
pub(super) fn quoted(s: &str) -> String {
    quoted_max(s, MAX_PEER)
}

/// [`quoted`], cut at `max` characters.
fn quoted_max(s: &str, max: usize) -> String {
    let inner: String = one_line(s, max)
        .chars()
        .map(|c| match c {
            '«' => '‹',
            '»' => '›',
            c => c,
        })
        .collect();
    format!("«{inner}»")
}

pub(super) fn labels(locale: Locale) -> Labels {
    let table = match locale {
        Locale::PtBr => PT_BR,
        Locale::En => EN,
    };
    table.iter().copied().collect()
}

#[derive(Debug, Serialize)]
pub(super) struct EmailView {
    pub t: Labels,
    pub subject: String,
    /// One sentence: what happened and why this level hears of it.
    pub headline: String,
    pub event: &'static str,
    pub level: &'static str,
    /// The `X-Harven-Cause` value: the top likely cause, or `unknown`.
    pub cause_id: String,
    pub incident: IncidentView,
    pub symptoms: Vec<SymptomView>,
    pub causes: Vec<CauseView>,
    /// The likely causes, top first: their actions and commands are what to do.
    pub likely: Vec<CauseView>,
    pub links: Vec<LinkView>,
    pub act: Option<ActView>,
    pub history: Vec<HistoryView>,
    pub reminders: u32,
    pub timeline: Vec<TimelineView>,
    pub checklist: Vec<String>,
    pub resolved: Option<ResolvedView>,
    pub pm: PostmortemView,
    /// The rendered postmortem draft (resolved emails), filled by the renderer.
    pub postmortem: Option<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct IncidentView {
    pub id: String,
    pub section: String,
    pub title: String,
    pub runbook_ref: String,
    pub severity: String,
    pub state: &'static str,
    pub opened_at: String,
    pub critical_since: Option<String>,
    pub open_for: String,
    pub reopened: u32,
    pub url: String,
}

#[derive(Debug, Serialize)]
pub(super) struct SymptomView {
    pub rule: String,
    pub summary: String,
    /// `prometheus.p95_seconds{handler="/api/chat"}`: which instance.
    pub key: String,
    pub state: &'static str,
    pub severity: String,
    pub value: String,
    /// `> 5%`, from the rule's `when`.
    pub threshold: String,
    /// The rule's `when` as the runbook writes it: `prometheus.error_ratio > 0.05`.
    pub condition: String,
    /// `< 3%`, from the rule's `clear`, when it has one.
    pub clears: Option<String>,
    pub fired_at: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct CauseView {
    pub id: String,
    pub title: String,
    /// `likely`, `ruled_out` or `unknown` (for styling).
    pub status: &'static str,
    pub status_label: &'static str,
    pub score: String,
    pub evidence: Vec<EvidenceView>,
    pub context: Vec<ContextView>,
    pub vendor: Option<String>,
    pub actions: Vec<String>,
    pub commands: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct EvidenceView {
    pub condition: String,
    /// `holds`, `fails`, `no_data`, `unknown` (for styling).
    pub truth: &'static str,
    pub truth_label: &'static str,
    pub observed: String,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct ContextView {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Serialize)]
pub(super) struct LinkView {
    pub title: String,
    pub url: String,
}

#[derive(Debug, Serialize)]
pub(super) struct ActView {
    pub ack_url: String,
    pub resolve_url: String,
    pub expires_at: String,
}

#[derive(Debug, Serialize)]
pub(super) struct HistoryView {
    pub level: &'static str,
    pub paged_at: Option<String>,
    pub last_email: Option<String>,
    pub acked_by: Option<String>,
    pub acked_at: Option<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct TimelineView {
    pub at: String,
    pub kind: String,
    pub text: String,
}

#[derive(Debug, Serialize)]
pub(super) struct ResolvedView {
    pub at: String,
    pub duration: String,
    pub note: Option<String>,
}

/// What the postmortem template needs beyond the rest of the view.
#[derive(Debug, Default, Serialize)]
pub(super) struct PostmortemView {
    /// `Error rate ≥ 25% (errors.ratio_critical): …`, one per rule that fired in the incident.
    pub symptoms: Vec<String>,
    /// `Supabase down (errors.supabase_down)`.
    pub cause: Option<String>,
    /// `supabase.rest_ok == false: false`, the evidence that held.
    pub cause_evidence: Vec<String>,
    pub suggested: Vec<String>,
    /// `L1: alice at 2026-…`.
    pub acks: Vec<String>,
    /// `L2 at 2026-…`.
    pub escalations: Vec<String>,
    /// Acks, notes and the resolution from the timeline.
    pub actions_taken: Vec<String>,
}

impl EmailView {
    pub fn build(input: &EmailInput<'_>) -> Self {
        let locale = input.locale;
        let t = labels(locale);
        let incident = input.incident;
        let runbook = input.runbook;
        let section = runbook.sections.iter().find(|s| s.id == incident.section);
        let title = section.map_or_else(
            || input.section.title.clone(),
            |s| s.title.get(locale).to_owned(),
        );
        let end = incident.resolved_at.unwrap_or(input.now);
        let open_for = human_duration(end.saturating_since(incident.opened_at));

        let symptoms: Vec<&Symptom> = input
            .symptoms
            .iter()
            .filter(|s| s.section == incident.section)
            .filter(|s| {
                matches!(s.state, SymptomState::Firing | SymptomState::Recovering) || !s.observable
            })
            .collect();
        let symptom_views: Vec<SymptomView> = symptoms
            .iter()
            .map(|s| symptom_view(s, section, locale))
            .collect();

        let causes: Vec<CauseView> = input
            .section
            .diagnosis
            .causes
            .iter()
            .map(|c| cause_view(c, section, locale))
            .collect();
        let likely: Vec<CauseView> = causes
            .iter()
            .filter(|c| c.status == "likely")
            .cloned()
            .collect();

        // The top likely cause now; for a resolved incident (whose evidence may have cleared), the
        // last one the incident recorded.
        let cause_id = input
            .section
            .diagnosis
            .top()
            .map(|c| c.id.clone())
            .or_else(|| (incident.cause != "unknown").then(|| incident.cause.clone()))
            .unwrap_or_else(|| "unknown".to_owned());
        let cause_title = (cause_id != "unknown").then(|| {
            section
                .and_then(|s| s.causes.iter().find(|c| c.id == cause_id))
                .map_or_else(|| cause_id.clone(), |c| c.title.get(locale).to_owned())
        });

        let subject = subject(input, section, &symptoms, cause_title.as_deref(), &open_for);

        let incident_url =
            super::public_link(input.public_url, &format!("incidents/{}", incident.id));
        let mut links: Vec<LinkView> = section
            .map(|s| {
                s.links
                    .iter()
                    .map(|l| LinkView {
                        title: l.title.get(locale).to_owned(),
                        url: l.url.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        // The status page of every vendor behind a likely cause, unless the section lists it already.
        for c in section.iter().flat_map(|s| &s.causes) {
            if !likely.iter().any(|l| l.id == c.id) {
                continue;
            }
            let page = c
                .vendor
                .as_ref()
                .and_then(|v| runbook.vendors.get(v))
                .and_then(|v| v.status_page.clone().map(|p| (v.name.clone(), p)));
            if let Some((name, url)) = page
                && !links.iter().any(|l| same_site(&l.url, &url))
            {
                links.push(LinkView {
                    title: format!("{name} status"),
                    url,
                });
            }
        }
        links.push(LinkView {
            title: t["incident_page"].to_owned(),
            url: incident_url.clone(),
        });

        let act = input.links.map(|l| ActView {
            ack_url: l.ack_url.clone(),
            resolve_url: l.resolve_url.clone(),
            expires_at: human_time(l.expires_at),
        });

        let history: Vec<HistoryView> = Level::ALL
            .iter()
            .map(|level| HistoryView {
                level: level.as_str(),
                paged_at: incident.paged.get(level).map(|t| human_time(*t)),
                last_email: incident.last_page.get(level).map(|t| human_time(*t)),
                acked_by: incident.acks.get(level).map(|a| one_line(&a.by, MAX_PEER)),
                acked_at: incident.acks.get(level).map(|a| human_time(a.at)),
            })
            .collect();

        // In time order, whatever order the entries were recorded in (stable among equal times).
        let mut entries: Vec<_> = incident.timeline.iter().collect();
        entries.sort_by_key(|e| e.at);
        let timeline: Vec<TimelineView> = entries
            .into_iter()
            .map(|e| TimelineView {
                at: human_time(e.at),
                kind: e.kind.clone(),
                text: one_line(&e.text, MAX_LINE),
            })
            .collect();

        let resolved = (input.page.event == PageEvent::Resolved).then(|| ResolvedView {
            at: human_time(end),
            duration: open_for.clone(),
            note: incident.resolve_note.clone(),
        });

        let pm = postmortem(
            input,
            section,
            &cause_id,
            cause_title.as_deref(),
            &likely,
            &t,
        );

        Self {
            headline: headline(input, &title, &open_for),
            subject,
            event: input.page.event.as_str(),
            level: input.page.level.as_str(),
            cause_id,
            incident: IncidentView {
                id: incident.id.clone(),
                section: incident.section.clone(),
                title,
                runbook_ref: section.map(|s| s.runbook_ref.clone()).unwrap_or_default(),
                severity: incident.severity.to_string(),
                state: match incident.state {
                    IncidentState::Open => t["state_open"],
                    IncidentState::Resolved => t["state_resolved"],
                },
                opened_at: human_time(incident.opened_at),
                critical_since: incident.critical_since.map(human_time),
                open_for,
                reopened: incident.reopened,
                url: incident_url,
            },
            symptoms: symptom_views,
            causes,
            likely,
            links,
            act,
            history,
            reminders: incident.reminders,
            timeline,
            checklist: runbook
                .checklist
                .iter()
                .map(|c| c.get(locale).to_owned())
                .collect(),
            resolved,
            pm,
            postmortem: None,
            t,
        }
    }
}

/// `[Harven][L2][critical] Error rate 12.4% > 5% — provável: Supabase down`, or for the resolved
/// email `[Harven][L1][resolved] Error rate ≥ 25% — resolvido em 42 min`.
fn subject(
    input: &EmailInput<'_>,
    section: Option<&Section>,
    symptoms: &[&Symptom],
    cause_title: Option<&str>,
    open_for: &str,
) -> String {
    let en = input.locale == Locale::En;
    let level = input.page.level;
    if input.page.event == PageEvent::Resolved {
        let what =
            worst_rule_summary(input, section).unwrap_or_else(|| section_title(input, section));
        let tail = if en { "resolved in" } else { "resolvido em" };
        return format!("[Harven][{level}][resolved] {what} — {tail} {open_for}");
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
    let cause = match (cause_title, en) {
        (Some(c), true) => format!("likely: {c}"),
        (Some(c), false) => format!("provável: {c}"),
        (None, true) => "likely cause: unknown".to_owned(),
        (None, false) => "causa provável: desconhecida".to_owned(),
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

fn headline(input: &EmailInput<'_>, title: &str, open_for: &str) -> String {
    let en = input.locale == Locale::En;
    let incident = input.incident;
    let level = input.page.level;
    let opened = human_time(incident.opened_at);
    match input.page.event {
        PageEvent::Opened if en => format!(
            "Incident opened at {opened}: {title} ({}); paging {level}.",
            incident.severity
        ),
        PageEvent::Opened => format!(
            "Incidente aberto em {opened}: {title} ({}); acionando {level}.",
            incident.severity
        ),
        PageEvent::Escalated => match (level, incident.critical_since) {
            (Level::L3, Some(since)) => {
                let critical_for = human_duration(input.now.saturating_since(since));
                let since = human_time(since);
                if en {
                    format!(
                        "Escalated to L3: critical (downtime) for {critical_for}, since {since}."
                    )
                } else {
                    format!(
                        "Escalado para L3: crítico (downtime) há {critical_for}, desde {since}."
                    )
                }
            }
            _ if en => format!(
                "Escalated to {level}: still unresolved {open_for} after it opened at {opened}."
            ),
            _ => format!(
                "Escalado para {level}: continua sem resolução {open_for} após a abertura em {opened}."
            ),
        },
        PageEvent::Reminder if en => {
            format!("Reminder: open for {open_for} and {level} has not acknowledged it.")
        }
        PageEvent::Reminder => {
            format!("Lembrete: aberto há {open_for} e {level} ainda não reconheceu.")
        }
        PageEvent::Reopened if en => format!(
            "Reopened (time {}): the section fired again soon after resolving; the escalation clocks \
             still count from {opened}.",
            incident.reopened.max(1)
        ),
        PageEvent::Reopened => format!(
            "Reaberto ({}ª vez): a seção voltou a disparar logo após resolver; os relógios de \
             escalonamento continuam contando desde {opened}.",
            incident.reopened.max(1)
        ),
        PageEvent::Resolved => {
            let at = human_time(incident.resolved_at.unwrap_or(input.now));
            if en {
                format!("Resolved at {at} after {open_for}: every symptom has cleared.")
            } else {
                format!("Resolvido em {at} após {open_for}: todos os sintomas normalizaram.")
            }
        }
    }
}

fn find_rule<'r>(section: Option<&'r Section>, id: &str) -> Option<&'r Rule> {
    section?.rules.iter().find(|r| r.id == id)
}

fn symptom_view(s: &Symptom, section: Option<&Section>, locale: Locale) -> SymptomView {
    let en = locale == Locale::En;
    let rule = find_rule(section, &s.rule);
    let obs = rule.and_then(|r| r.when.obs.as_deref()).unwrap_or("");
    let key = match crate::observe::intern(obs) {
        Some(name) => Key {
            name,
            labels: s.labels.clone(),
        }
        .to_string(),
        None => rule.map(|r| describe(&r.when)).unwrap_or_default(),
    };
    let state = match (s.observable, s.state) {
        (false, _) if en => "unknown",
        (false, _) => "desconhecido",
        (_, SymptomState::Firing) if en => "firing",
        (_, SymptomState::Firing) => "disparado",
        (_, SymptomState::Recovering) if en => "recovering",
        (_, SymptomState::Recovering) => "normalizando",
        (_, SymptomState::Pending) if en => "pending",
        (_, SymptomState::Pending) => "pendente",
        (_, SymptomState::Inactive) if en => "inactive",
        (_, SymptomState::Inactive) => "inativo",
    };
    // A number or a boolean is the watchdog's rendering; a word or a note may be a peer's.
    let value = match (&s.value, &s.note) {
        (Some(Value::Text(t)), _) => quoted(t),
        (Some(v), _) => format_value(obs, v),
        (None, Some(note)) => quoted(note),
        (None, None) => "?".to_owned(),
    };
    SymptomView {
        rule: s.rule.clone(),
        summary: rule.map_or_else(|| s.summary.clone(), |r| r.summary.get(locale).to_owned()),
        key: one_line(&key, MAX_LINE),
        state,
        severity: s.severity.to_string(),
        value,
        threshold: rule.map(|r| threshold(&r.when, locale)).unwrap_or_default(),
        condition: rule.map(|r| describe(&r.when)).unwrap_or_default(),
        clears: rule
            .and_then(|r| r.clear.as_ref())
            .map(|c| threshold(c, locale)),
        fired_at: s.fired_at.map(human_time),
    }
}

/// The right-hand side of a condition in the observation's unit: `> 5%`, `> 3 s`, `== false`.
pub(super) fn threshold(c: &Condition, locale: Locale) -> String {
    if c.source_failing.is_some() {
        return match locale {
            Locale::En => "unreachable".to_owned(),
            Locale::PtBr => "inacessível".to_owned(),
        };
    }
    let obs = c.obs.as_deref().unwrap_or("");
    match (c.op, &c.value) {
        (Some(op), Some(Operand::Number(n))) => {
            format!("{} {}", op.symbol(), format_value(obs, &Value::Number(*n)))
        }
        (Some(op), Some(v)) => format!("{} {v}", op.symbol()),
        _ => String::new(),
    }
}

fn cause_view(c: &CauseResult, section: Option<&Section>, locale: Locale) -> CauseView {
    let en = locale == Locale::En;
    let rb = section.and_then(|s| s.causes.iter().find(|x| x.id == c.id));
    let (status, status_label) = match c.status {
        CauseStatus::Likely => ("likely", if en { "likely" } else { "provável" }),
        CauseStatus::RuledOut => ("ruled_out", if en { "ruled out" } else { "descartada" }),
        CauseStatus::Unknown => ("unknown", if en { "unknown" } else { "desconhecida" }),
    };
    CauseView {
        id: c.id.clone(),
        title: rb.map_or_else(|| c.title.clone(), |x| x.title.get(locale).to_owned()),
        status,
        status_label,
        score: format!("{:.0}%", c.score * 100.0),
        evidence: c.evidence.iter().map(|e| evidence_view(e, en)).collect(),
        context: c
            .context
            .iter()
            .map(|x| ContextView {
                name: x.name.clone(),
                value: match &x.value {
                    Some(Value::Text(t)) => quoted(t),
                    Some(v) => format_value(key_name(&x.key), v),
                    None => "?".to_owned(),
                },
            })
            .collect(),
        vendor: c.vendor.clone(),
        actions: rb.map_or_else(
            || c.actions.clone(),
            |x| x.actions.iter().map(|a| a.get(locale).to_owned()).collect(),
        ),
        // Runbook commands, as the team wrote them, with context values filled in: one line each.
        commands: c.commands.iter().map(|x| one_line(x, MAX_LINE)).collect(),
    }
}

/// The observation name of a described key: `docker.memory_bytes{container="x"}` → `docker.memory_bytes`.
fn key_name(described: &str) -> &str {
    described.split(['{', ' ']).next().unwrap_or(described)
}

fn evidence_view(e: &EvidenceLine, en: bool) -> EvidenceView {
    let truth_label = match (e.truth, en) {
        ("holds", true) => "holds",
        ("holds", false) => "verdadeira",
        ("fails", true) => "does not hold",
        ("fails", false) => "falsa",
        ("no_data", true) => "no data",
        ("no_data", false) => "sem dados",
        (_, true) => "unknown",
        (_, false) => "desconhecida",
    };
    EvidenceView {
        condition: e.condition.clone(),
        truth: e.truth,
        truth_label,
        // What was read (values, notes, why nothing was): a peer's words, quoted.
        observed: quoted_max(&e.observed, MAX_OBSERVED),
    }
}

fn postmortem(
    input: &EmailInput<'_>,
    section: Option<&Section>,
    cause_id: &str,
    cause_title: Option<&str>,
    likely: &[CauseView],
    t: &Labels,
) -> PostmortemView {
    let incident = input.incident;
    let locale = input.locale;
    let symptoms = incident
        .symptoms
        .iter()
        .map(|(rule, text)| {
            let summary = find_rule(section, rule)
                .map_or_else(|| rule.clone(), |r| r.summary.get(locale).to_owned());
            if text.is_empty() || *text == summary {
                format!("{summary} ({rule})")
            } else {
                format!("{summary} ({rule}): {text}")
            }
        })
        .collect();
    let top = likely.iter().find(|c| c.id == cause_id);
    let cause_evidence = top
        .map(|c| {
            c.evidence
                .iter()
                .filter(|e| e.truth == "holds")
                .map(|e| format!("{}: {}", e.condition, e.observed))
                .collect()
        })
        .unwrap_or_default();
    let suggested = match section.and_then(|s| s.causes.iter().find(|c| c.id == cause_id)) {
        Some(c) => c.actions.iter().map(|a| a.get(locale).to_owned()).collect(),
        None => Vec::new(),
    };
    let acks = incident
        .acks
        .iter()
        .map(|(level, a)| {
            let by = one_line(&a.by, MAX_PEER);
            format!("{level}: {by} {} {}", t["at"], human_time(a.at))
        })
        .collect();
    let escalations = incident
        .paged
        .iter()
        .map(|(level, at)| format!("{level} {} {}", t["paged_at"], human_time(*at)))
        .collect();
    let mut taken: Vec<_> = incident.timeline.iter().collect();
    taken.sort_by_key(|e| e.at);
    let mut actions_taken: Vec<String> = taken
        .into_iter()
        .filter(|e| {
            matches!(
                e.kind.as_str(),
                "acknowledged" | "resolved" | "note" | "muted" | "reopened"
            )
        })
        .map(|e| format!("{} {}", human_time(e.at), one_line(&e.text, MAX_LINE)))
        .collect();
    if let Some(note) = &incident.resolve_note {
        actions_taken.push(format!("{}: {note}", t["resolve_note"]));
    }
    PostmortemView {
        symptoms,
        cause: cause_title.map(|c| format!("{c} ({cause_id})")),
        cause_evidence,
        suggested,
        acks,
        escalations,
        actions_taken,
    }
}

fn same_site(a: &str, b: &str) -> bool {
    let host = |u: &str| {
        url::Url::parse(u)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
    };
    host(a).is_some() && host(a) == host(b)
}

/// `2026-11-18 11:06:40 UTC`: to the second, so the timeline orders visibly.
pub(crate) fn human_time(t: Timestamp) -> String {
    let s = t.to_string(); // 2026-11-18T11:06:40.123Z, or "out of range (…)" for a stored absurdity
    match s.get(..19).filter(|_| t.is_date()) {
        Some(head) => format!("{} UTC", head.replace('T', " ")),
        None => s,
    }
}

/// `42 min`, `1 h 5 min`, `2 d 3 h`, `45 s`.
pub(crate) fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (days, hours, mins) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{secs} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, 0, _) => format!("{d} d"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

/// A value in the unit its observation name carries: ratios as percentages, `_seconds` as s or ms,
/// `_bytes` in KiB/MiB/GiB; anything else as the engine prints it.
pub(super) fn format_value(obs: &str, v: &Value) -> String {
    let Value::Number(n) = v else {
        return v.to_string();
    };
    let n = *n;
    if obs == "prometheus.request_rate_ratio" {
        format!("{}×", trim(n, 1))
    } else if obs.ends_with("_ratio") {
        let pct = n * 100.0;
        format!("{}%", trim(pct, if pct.abs() < 1.0 { 2 } else { 1 }))
    } else if obs.ends_with("_bytes_per_hour") {
        format!("{}/h", bytes(n))
    } else if obs.ends_with("_bytes") {
        bytes(n)
    } else if obs.ends_with("_seconds") {
        if n.abs() >= 120.0 {
            // `try_`: an infinite or absurd reading is shown as a number, never a panic.
            Duration::try_from_secs_f64(n.abs())
                .map_or_else(|_| format!("{} s", trim(n, 0)), human_duration)
        } else if n.abs() >= 1.0 {
            format!("{} s", trim(n, 2))
        } else {
            format!("{} ms", trim(n * 1000.0, 1))
        }
    } else {
        v.to_string()
    }
}

fn bytes(n: f64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n.abs() < 1024.0 {
        return format!("{} B", trim(n, 0));
    }
    let mut x = n / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if x.abs() < 1024.0 {
            break;
        }
        x /= 1024.0;
        unit = u;
    }
    format!("{} {unit}", trim(x, 1))
}

/// `n` with at most `decimals` decimals, trailing zeros dropped.
fn trim(n: f64, decimals: usize) -> String {
    let s = format!("{n:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_locales_have_the_same_labels() {
        let pt: Vec<_> = labels(Locale::PtBr).into_keys().collect();
        let en: Vec<_> = labels(Locale::En).into_keys().collect();
        assert_eq!(pt, en);
        assert_eq!(pt.len(), PT_BR.len(), "no duplicate keys");
    }

    #[test]
    fn peer_strings_are_one_quoted_line_and_cut() {
        assert_eq!(
            quoted("Partial outage\n\nClick https://evil.example/ack to acknowledge"),
            "«Partial outage Click https://evil.example/ack to acknowledge»"
        );
        assert_eq!(quoted("  a\r\n\tb\u{2028}c\u{202e}d  "), "«a b c d»");
        assert_eq!(
            quoted("x» Resolve: https://evil «y"),
            "«x› Resolve: https://evil ‹y»"
        );
        let long = quoted(&"é".repeat(2 * MAX_PEER));
        assert_eq!(long.chars().count(), MAX_PEER + 3, "{long}");
        assert!(long.ends_with("…»"));
        assert_eq!(one_line("a\n\n  b", 10), "a b");
        assert_eq!(one_line("abcdef", 3), "abc…");
        assert_eq!(one_line("", 3), "");
    }

    #[test]
    fn values_carry_their_units() {
        let n = |x| Value::Number(x);
        assert_eq!(format_value("prometheus.error_ratio", &n(0.124)), "12.4%");
        assert_eq!(format_value("prometheus.error_ratio", &n(0.05)), "5%");
        assert_eq!(format_value("prometheus.error_ratio", &n(0.0031)), "0.31%");
        assert_eq!(
            format_value("prometheus.request_rate_ratio", &n(3.25)),
            "3.2×"
        );
        assert_eq!(format_value("prometheus.p95_seconds", &n(4.2)), "4.2 s");
        assert_eq!(format_value("redis.ping_seconds", &n(0.05)), "50 ms");
        assert_eq!(
            format_value("docker.uptime_seconds", &n(7260.0)),
            "2 h 1 min"
        );
        assert_eq!(
            format_value("docker.memory_bytes", &n(536_870_912.0)),
            "512 MiB"
        );
        assert_eq!(
            format_value("docker.memory_growth_bytes_per_hour", &n(104_857_600.0)),
            "100 MiB/h"
        );
        assert_eq!(format_value("docker.log_lines_per_minute", &n(7.0)), "7");
        assert_eq!(
            format_value("supabase.rest_ok", &Value::Bool(false)),
            "false"
        );
        assert_eq!(
            format_value("docker.uptime_seconds", &n(f64::INFINITY)),
            "inf s"
        );
        assert_eq!(format_value("docker.uptime_seconds", &n(1e300)).len(), 303);
    }

    #[test]
    fn a_time_that_is_not_a_date_is_shown_as_such() {
        let t = Timestamp::from_unix_millis(1_795_000_000_123);
        assert_eq!(human_time(t), "2026-11-18 11:06:40 UTC");
        assert_eq!(
            human_time(Timestamp::from_unix_millis(i64::MAX)),
            "out of range (9223372036854775807 ms since 1970-01-01)"
        );
    }

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

    #[test]
    fn durations_and_times_read_like_people_write_them() {
        assert_eq!(human_duration(Duration::from_secs(42 * 60 + 10)), "42 min");
        assert_eq!(human_duration(Duration::from_secs(3600)), "1 h");
        assert_eq!(human_duration(Duration::from_secs(3900)), "1 h 5 min");
        assert_eq!(human_duration(Duration::from_secs(45)), "45 s");
        assert_eq!(
            human_duration(Duration::from_secs(2 * 86_400 + 7200)),
            "2 d 2 h"
        );
        assert_eq!(
            human_time(Timestamp::from_unix_millis(1_795_000_000_123)),
            "2026-11-18 11:06:40 UTC"
        );
    }
}
