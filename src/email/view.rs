//! From the domain types to what an email shows: plain strings in the email's locale, with units,
//! UTC times and durations, the subject, and the data of the postmortem draft. The templates only lay
//! these out, so every decision about wording is here and tested through the rendered emails. The
//! words themselves are the locale's [`Text`] ([`crate::locale`]), the templates' `t`.
//!
//! Its parts: `quote` shows a peer's strings so that they cannot pass for the watchdog's words
//! (every reading goes through it); `subject` writes the subject line and the headline. Readings
//! and thresholds in their units, and the evidence, symptoms and timeline in words, are
//! [`crate::words`]'s.

mod charts;
mod quote;
mod subject;

use serde::Serialize;

use super::EmailInput;
use crate::engine::condition::describe;
use crate::engine::diagnosis::{EvidenceLine, actions_in};
use crate::engine::{CauseResult, CauseStatus, Symptom, SymptomState};
use crate::incident::{IncidentState, Level, PageEvent};
use crate::locale::{Locale, Text, human_duration, human_time};
use crate::observe::{Key, Value};
use crate::probe::sentry::top_issues_in;
use crate::runbook::{Rule, Section};
use crate::words::{
    self,
    units::{format_value, threshold},
};
use quote::{MAX_LINE, MAX_OBSERVED, MAX_PEER, one_line, quoted, quoted_max};
use subject::{headline, subject};

pub(super) use charts::{ChartView, chart_views};

/// Everything the three email templates (`email.txt`, `email.html`, `postmortem.txt`) show, as
/// plain strings: the templates make no decision. Times are [`human_time`]s (UTC, to the second) and
/// durations [`human_duration`]s, computed from the `now` of the input, never from a clock.
#[derive(Debug, Serialize)]
pub(super) struct EmailView {
    /// Every word of the email's locale: the templates' `t`.
    pub t: &'static Text,
    /// The `Subject`: see [`subject`](subject::subject).
    pub subject: String,
    /// One sentence: what happened and why this level hears of it.
    pub headline: String,
    /// The page's event and level, as the `X-Harven-*` headers spell them (`opened`, `L2`).
    pub event: &'static str,
    pub level: &'static str,
    /// The `X-Harven-Cause` value: the top likely cause, or `unknown`.
    pub cause_id: String,
    pub incident: IncidentView,
    /// The section's symptoms that fire, recover or cannot be read, in the engine's order.
    pub symptoms: Vec<SymptomView>,
    /// Every cause of the diagnosis, in its order: likely ones first by score, then unknown, then
    /// ruled out.
    pub causes: Vec<CauseView>,
    /// The likely causes, top first: their actions and commands are what to do.
    pub likely: Vec<CauseView>,
    /// The section's runbook links, the status page of each likely cause's vendor (unless a link
    /// already goes to its site), then the incident's own page.
    pub links: Vec<LinkView>,
    /// The signed ack/resolve links; `None` in the resolved email.
    pub act: Option<ActView>,
    /// One row per level, L1 to L3, paged or not.
    pub history: Vec<HistoryView>,
    pub reminders: u32,
    /// In time order, whatever order the entries were recorded in (stable among equal times).
    pub timeline: Vec<TimelineView>,
    /// The runbook's incident checklist, in the email's locale.
    pub checklist: Vec<String>,
    /// Set in the resolved email only.
    pub resolved: Option<ResolvedView>,
    pub pm: PostmortemView,
    /// The rendered postmortem draft (resolved emails), filled by the renderer.
    pub postmortem: Option<String>,
    /// The symptom charts (issue 15), filled by the renderer once it has drawn their images.
    pub charts: Vec<ChartView>,
}

/// The incident's head: who, what, since when.
#[derive(Debug, Serialize)]
pub(super) struct IncidentView {
    pub id: String,
    pub section: String,
    /// The section's title in the email's locale.
    pub title: String,
    pub runbook_ref: String,
    pub severity: String,
    /// `open` or `resolved`, in the email's locale.
    pub state: &'static str,
    pub opened_at: String,
    pub critical_since: Option<String>,
    /// From the opening to the resolution, or to the email's `now` while open.
    pub open_for: String,
    pub reopened: u32,
    /// The incident's status page under `public_url`.
    pub url: String,
}

#[derive(Debug, Serialize)]
pub(super) struct SymptomView {
    pub rule: String,
    /// The rule's summary in the email's locale.
    pub summary: String,
    /// `prometheus.p95_seconds{handler="/api/chat"}`: which instance.
    pub key: String,
    /// `firing`, `recovering`, or `unknown` when the reading is, in the email's locale.
    pub state: &'static str,
    /// The symptom in words: what, its value and when it fires (`p95 latency on /api/chat: 8.8 s
    /// (fires above 3 s)`).
    pub sentence: String,
    pub severity: String,
    /// The reading in its unit (`12.4%`); a word or a note a peer wrote, quoted.
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
    /// The status in the email's locale.
    pub status_label: &'static str,
    /// The share of evidence weight that holds, as a percentage.
    pub score: String,
    pub evidence: Vec<EvidenceView>,
    pub context: Vec<ContextView>,
    /// Sentry's top new issues from the context (`sentry.top_new_issues`), one each.
    pub sentry_issues: Vec<words::IssueWords>,
    pub vendor: Option<String>,
    /// The runbook's actions for the cause, in the email's locale.
    pub actions: Vec<String>,
    /// The runbook's commands with context values filled in, one line each.
    pub commands: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct EvidenceView {
    /// The line in words, a sentence per instance that decided it (empty: the raw line only).
    pub sentences: Vec<String>,
    pub condition: String,
    /// `holds`, `fails`, `no_data`, `unknown` (for styling).
    pub truth: &'static str,
    /// The result in the email's locale.
    pub truth_label: &'static str,
    /// What was read, quoted: a peer's words.
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

/// The signed links of this email's level, and when they stop working.
#[derive(Debug, Serialize)]
pub(super) struct ActView {
    pub ack_url: String,
    pub resolve_url: String,
    pub expires_at: String,
}

/// One level's escalation: when it was first paged, its latest email, who acknowledged.
#[derive(Debug, Serialize)]
pub(super) struct HistoryView {
    pub level: &'static str,
    pub paged_at: Option<String>,
    /// The latest email to the level (a reminder, after the first page); the text part shows it
    /// only when it differs from `paged_at`.
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
    /// From the opening to the resolution.
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
    /// The runbook's actions for that cause.
    pub suggested: Vec<String>,
    /// `L1: alice at 2026-…`.
    pub acks: Vec<String>,
    /// `L2 at 2026-…`.
    pub escalations: Vec<String>,
    /// Acks, notes and the resolution from the timeline.
    pub actions_taken: Vec<String>,
}

impl EmailView {
    /// The view of one email: pure, from the input alone (its `now`, its locale).
    pub fn build(input: &EmailInput<'_>) -> Self {
        let locale = input.locale;
        let t = locale.text();
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
            .map(|s| symptom_view(s, section, locale, t))
            .collect();

        let causes: Vec<CauseView> = input
            .section
            .diagnosis
            .causes
            .iter()
            .map(|c| cause_view(c, section, locale, t))
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

        let subject = subject(
            input,
            t,
            section,
            &symptoms,
            cause_title.as_deref(),
            &open_for,
        );

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
                    title: crate::locale::fill(t.vendor_status, &[("name", &name)]),
                    url,
                });
            }
        }
        links.push(LinkView {
            title: t.incident_page.to_owned(),
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
                kind: words::timeline_kind(locale, &e.kind),
                text: one_line(&words::timeline_text(locale, e), MAX_LINE),
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
            t,
        );

        Self {
            headline: headline(input, t, &title, &open_for),
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
                    IncidentState::Open => t.state_open,
                    IncidentState::Resolved => t.state_resolved,
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
            charts: Vec::new(),
            t,
        }
    }
}

/// The rule `id` of the section, if the runbook has it: an incident recorded under another runbook
/// (before a reload) may name one it lacks, and the view then shows what the engine recorded.
fn find_rule<'r>(section: Option<&'r Section>, id: &str) -> Option<&'r Rule> {
    section?.rules.iter().find(|r| r.id == id)
}

/// One symptom in the email's locale, its value and thresholds in the observation's unit.
fn symptom_view(s: &Symptom, section: Option<&Section>, locale: Locale, t: &Text) -> SymptomView {
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
        (false, _) => t.symptom_unknown,
        (_, SymptomState::Firing) => t.symptom_firing,
        (_, SymptomState::Recovering) => t.symptom_recovering,
        (_, SymptomState::Pending) => t.symptom_pending,
        (_, SymptomState::Inactive) => t.symptom_inactive,
    };
    // A number or a boolean is the watchdog's rendering; a word may be a peer's; a note is ours.
    let value = match (&s.value, &s.note) {
        (Some(Value::Text(_)), Some(note)) if crate::observe::OWN_WORDS.contains(&obs) => {
            note.words(locale)
        }
        (Some(Value::Text(t)), _) => quoted(t),
        (Some(v), _) => words::value(locale, obs, v),
        (None, Some(note)) => note.words(locale),
        (None, None) => "?".to_owned(),
    };
    let sentence = match rule {
        Some(r) => words::symptom(
            locale,
            &r.when,
            &s.labels,
            s.value.as_ref(),
            s.note.as_ref(),
        ),
        None => format!("{key}: {value}"),
    };
    SymptomView {
        rule: s.rule.clone(),
        summary: rule.map_or_else(|| s.summary.clone(), |r| r.summary.get(locale).to_owned()),
        key: one_line(&key, MAX_LINE),
        state,
        sentence: one_line(&sentence, MAX_LINE),
        severity: s.severity.to_string(),
        value,
        threshold: rule.map(|r| threshold(&r.when, t)).unwrap_or_default(),
        condition: rule.map(|r| describe(&r.when)).unwrap_or_default(),
        clears: rule.and_then(|r| r.clear.as_ref()).map(|c| threshold(c, t)),
        fired_at: s.fired_at.map(human_time),
    }
}

/// One cause of the diagnosis, its titles and actions from the runbook in the email's locale.
fn cause_view(c: &CauseResult, section: Option<&Section>, locale: Locale, t: &Text) -> CauseView {
    let rb = section.and_then(|s| s.causes.iter().find(|x| x.id == c.id));
    let (status, status_label) = match c.status {
        CauseStatus::Likely => ("likely", t.likely),
        CauseStatus::RuledOut => ("ruled_out", t.ruled_out),
        CauseStatus::Unknown => ("unknown", t.unknown),
    };
    CauseView {
        id: c.id.clone(),
        title: rb.map_or_else(|| c.title.clone(), |x| x.title.get(locale).to_owned()),
        status,
        status_label,
        score: format!("{:.0}%", c.score * 100.0),
        evidence: c
            .evidence
            .iter()
            .map(|e| evidence_view(e, locale, t))
            .collect(),
        // Sentry's top new issues get their own list; every other line is a `name = value`.
        sentry_issues: top_issues_in(&c.context)
            .iter()
            .map(|i| words::sentry_issue(locale, i))
            .collect(),
        context: c
            .context
            .iter()
            .filter(|x| key_name(&x.key) != SENTRY_TOP)
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
        actions: rb.map_or_else(|| c.actions.clone(), |x| actions_in(x, &c.context, locale)),
        // Runbook commands, as the team wrote them, with context values filled in: one line each.
        commands: c.commands.iter().map(|x| one_line(x, MAX_LINE)).collect(),
    }
}

/// The context line listed as Sentry's issues rather than as a value.
const SENTRY_TOP: &str = "sentry.top_new_issues";

/// The observation name of a described key: `docker.memory_bytes{container="x"}` → `docker.memory_bytes`.
fn key_name(described: &str) -> &str {
    described.split(['{', ' ']).next().unwrap_or(described)
}

/// One line of a cause's evidence, its result in the email's locale.
fn evidence_view(e: &EvidenceLine, locale: Locale, t: &Text) -> EvidenceView {
    let truth_label = match e.truth {
        "holds" => t.truth_holds,
        "fails" => t.truth_fails,
        "no_data" => t.truth_no_data,
        _ => t.unknown,
    };
    EvidenceView {
        sentences: words::evidence(locale, &e.cond, &e.found, e.more)
            .iter()
            .map(|s| one_line(s, MAX_LINE))
            .collect(),
        condition: e.condition.clone(),
        truth: e.truth,
        truth_label,
        // What was read (values, notes, why nothing was): a peer's words, quoted.
        observed: quoted_max(&e.observed, MAX_OBSERVED),
    }
}

/// The facts of the postmortem draft, from the incident as recorded: every rule that fired, the
/// cause and the evidence that held, who acknowledged and when each level was paged, the actions on
/// the timeline in time order.
fn postmortem(
    input: &EmailInput<'_>,
    section: Option<&Section>,
    cause_id: &str,
    cause_title: Option<&str>,
    likely: &[CauseView],
    t: &Text,
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
                .map(|e| match e.sentences.as_slice() {
                    [] => format!("{}: {}", e.condition, e.observed),
                    s => s.join("; "),
                })
                .collect()
        })
        .unwrap_or_default();
    // The top cause's actions as the email shows them (placeholders filled); without it in the
    // diagnosis, the runbook's that name no context.
    let suggested = match (
        top,
        section.and_then(|s| s.causes.iter().find(|c| c.id == cause_id)),
    ) {
        (Some(c), _) => c.actions.clone(),
        (None, Some(c)) => actions_in(c, &[], locale),
        (None, None) => Vec::new(),
    };
    let acks = incident
        .acks
        .iter()
        .map(|(level, a)| {
            let by = one_line(&a.by, MAX_PEER);
            format!("{level}: {by} {} {}", t.at, human_time(a.at))
        })
        .collect();
    let escalations = incident
        .paged
        .iter()
        .map(|(level, at)| format!("{level} {} {}", t.paged_at, human_time(*at)))
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
        .map(|e| {
            let text = words::timeline_text(locale, e);
            format!("{} {}", human_time(e.at), one_line(&text, MAX_LINE))
        })
        .collect();
    if let Some(note) = &incident.resolve_note {
        actions_taken.push(format!("{}: {note}", t.resolution_note));
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

/// Whether two URLs have the same host: a vendor's status page a section already links to.
fn same_site(a: &str, b: &str) -> bool {
    let host = |u: &str| {
        url::Url::parse(u)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
    };
    host(a).is_some() && host(a) == host(b)
}
