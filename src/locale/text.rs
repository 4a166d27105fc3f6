//! [`Text`]: every word and sentence of the emails, the status pages and the act pages, one field
//! each, grouped by who shows it. A field is named for what it means, not for a template's key:
//! the pages' and act pages' `labels()` map their templates' keys to these fields.
//!
//! Sentences hold `{placeholders}` that [`fill`](super::fill) replaces; each says what they are.
//! Both languages use the same placeholders in a sentence (tested), in whatever order reads well.

use serde::Serialize;

/// One language's words. The emails' templates read it as `t` (by field name); a field a template
/// asks for and the struct lacks fails the render (strict undefined values). Every field is set in
/// both `const`s (the compiler sees to it), none is empty and each sentence has the same
/// placeholders in both (the tests see to it).
#[derive(Debug, Serialize)]
pub struct Text {
    // The incident, as every surface names it: emails, status pages and act pages.
    /// The `lang` attribute of an HTML part or page: a BCP 47 tag.
    pub lang: &'static str,
    pub incident: &'static str,
    pub section: &'static str,
    pub severity: &'static str,
    pub state: &'static str,
    /// An incident's state, in a sentence or a table cell.
    pub state_open: &'static str,
    pub state_resolved: &'static str,
    pub opened_at: &'static str,
    pub level: &'static str,
    /// How long an incident lasted (or has lasted).
    pub duration: &'static str,

    // Emails and status pages.
    pub critical_since: &'static str,
    pub resolved_at: &'static str,
    pub symptoms: &'static str,
    pub diagnosis: &'static str,
    /// The heading of a cause's status column.
    pub status: &'static str,
    pub probable_cause: &'static str,
    /// A cause's status: its evidence holds.
    pub likely: &'static str,
    /// A cause's status: its evidence fails.
    pub ruled_out: &'static str,
    /// A cause's status, or an evidence line's result, that nothing decides; also a cause nobody
    /// found (feminine in pt-BR, as *causa* and *evidência* are).
    pub unknown: &'static str,
    /// The heading over the ways to acknowledge or resolve.
    pub act: &'static str,
    /// The verb on a link or a button.
    pub resolve: &'static str,
    pub acked: &'static str,
    pub timeline: &'static str,

    // Status pages and act pages.
    pub acks: &'static str,
    /// The label of the form field naming who acts.
    pub your_name: &'static str,
    /// The label of the form field whose note goes on the timeline.
    pub what_was_done: &'static str,

    // Status pages and the act routes' plain answers.
    pub refused: &'static str,
    pub nothing_changed: &'static str,
    /// The store could not record an action: worth trying again.
    pub unavailable: &'static str,

    // Emails.
    pub runbook: &'static str,
    /// How long an open incident has been open, in an email.
    pub open_for: &'static str,
    /// How many times the incident reopened, in an email.
    pub reopenings: &'static str,
    pub no_symptoms: &'static str,
    pub value: &'static str,
    pub threshold: &'static str,
    pub clears: &'static str,
    pub fired_at: &'static str,
    pub condition: &'static str,
    /// The heading of the diagnosis table's cause column.
    pub cause: &'static str,
    pub evidence: &'static str,
    /// Before a likely cause's share of evidence: `evidence 80%`.
    pub evidence_score: &'static str,
    pub truth: &'static str,
    pub observed: &'static str,
    pub context: &'static str,
    pub what_to_do: &'static str,
    pub no_likely: &'static str,
    pub actions: &'static str,
    pub commands: &'static str,
    pub vendor: &'static str,
    pub links: &'static str,
    /// The title of the link to the incident's status page.
    pub incident_page: &'static str,
    /// Before the level the link acknowledges as: `Acknowledge as L2`.
    pub ack_as: &'static str,
    /// Before the links' expiry time.
    pub act_note: &'static str,
    pub history: &'static str,
    pub paged_at: &'static str,
    pub last_email: &'static str,
    pub not_paged: &'static str,
    pub not_acked: &'static str,
    /// Inside a sentence: `acknowledged by Ana at …`.
    pub by: &'static str,
    /// Inside a sentence: `… by Ana at 2026-11-18 11:06:40 UTC`.
    pub at: &'static str,
    pub reminders: &'static str,
    pub checklist: &'static str,
    /// An email's heading of the note a resolver left.
    pub resolution_note: &'static str,
    pub postmortem: &'static str,
    pub footer: &'static str,
    /// A symptom's state (masculine in pt-BR, as *sintoma* is).
    pub symptom_firing: &'static str,
    pub symptom_recovering: &'static str,
    pub symptom_pending: &'static str,
    pub symptom_inactive: &'static str,
    /// A symptom whose reading is unknown.
    pub symptom_unknown: &'static str,
    /// An evidence line's result.
    pub truth_holds: &'static str,
    pub truth_fails: &'static str,
    pub truth_no_data: &'static str,
    /// The threshold of a condition on a failing source.
    pub unreachable: &'static str,

    // Emails: the subject's tail and the headline, sentences with `{placeholders}`.
    /// `{duration}`: how long the incident lasted.
    pub subject_resolved: &'static str,
    /// `{cause}`: the top likely cause's title.
    pub subject_likely: &'static str,
    pub subject_no_cause: &'static str,
    /// `{opened}`: when; `{title}`: the section's; `{severity}`; `{level}`: the level paged.
    pub headline_opened: &'static str,
    /// `{level}`: the level paged now; `{open_for}`: how long; `{opened}`: since when.
    pub headline_escalated: &'static str,
    /// The escalation to L3 of a critical incident: `{level}`; `{critical_for}`, how long;
    /// `{since}`, since when.
    pub headline_escalated_critical: &'static str,
    /// `{open_for}`: how long; `{level}`: the level reminded.
    pub headline_reminder: &'static str,
    /// `{n}`: the how-manieth reopening; `{opened}`: when the incident first opened.
    pub headline_reopened: &'static str,
    /// `{at}`: when it resolved; `{open_for}`: how long it lasted.
    pub headline_resolved: &'static str,

    // Emails: the postmortem draft.
    pub pm_title: &'static str,
    pub pm_summary: &'static str,
    pub pm_start: &'static str,
    pub pm_end: &'static str,
    pub pm_cause_unknown: &'static str,
    pub pm_acks: &'static str,
    pub pm_nobody: &'static str,
    pub pm_escalations: &'static str,
    pub pm_actions_taken: &'static str,
    pub pm_suggested: &'static str,
    pub pm_root_cause: &'static str,
    pub pm_action_items: &'static str,
    pub pm_fill: &'static str,

    // Emails: the budget digest (`email/digest.rs`), one email for an incident's held pages.
    /// `{level}`: the highest level held; `{incident}`: its ID; `{n}`: how many emails it carries.
    pub digest_subject: &'static str,
    /// `{n}`: how many emails; `{incident}`: its ID.
    pub digest_intro: &'static str,
    /// The word before each held email's event in the digest's list.
    pub digest_event: &'static str,

    // Status pages.
    pub status_title: &'static str,
    pub updated: &'static str,
    pub open_incidents: &'static str,
    pub blind_spots: &'static str,
    pub no_open: &'static str,
    pub recent: &'static str,
    pub no_recent: &'static str,
    pub windows: &'static str,
    pub no_windows: &'static str,
    pub all_sections: &'static str,
    pub age: &'static str,
    /// A status page's heading of the reopen count.
    pub reopened: &'static str,
    pub no_acks: &'static str,
    pub paged: &'static str,
    pub no_pages: &'static str,
    /// A status page's heading of the note a resolver left.
    pub resolve_note: &'static str,
    /// The heading of a time column.
    pub when: &'static str,
    pub kind: &'static str,
    pub what: &'static str,
    /// The heading of a who column.
    pub by_heading: &'static str,
    pub reason: &'static str,
    pub starts: &'static str,
    pub ends: &'static str,
    pub act_email: &'static str,
    pub act_api: &'static str,
    pub act_api_closed: &'static str,
    pub back: &'static str,
    pub not_found: &'static str,
    pub not_found_text: &'static str,
    pub maintenance: &'static str,
    pub signin: &'static str,
    pub signout: &'static str,
    pub signed_in: &'static str,
    pub token: &'static str,
    pub signin_text: &'static str,
    pub not_acted: &'static str,
    pub refused_cross_site: &'static str,
    pub refused_no_token: &'static str,
    pub refused_signed_out: &'static str,
    pub refused_csrf: &'static str,
    pub refused_wrong_token: &'static str,
    pub refused_rate_limited: &'static str,
    pub not_open: &'static str,
    pub diagnosis_at: &'static str,
    pub no_diagnosis: &'static str,
    /// The heading of a cause's share of evidence.
    pub score: &'static str,
    /// The heading of a cause's evidence lines.
    pub evidence_lines: &'static str,
    /// The verb on a button.
    pub ack: &'static str,
    pub level_highest: &'static str,
    pub act_signin: &'static str,
    pub windows_all: &'static str,
    pub no_windows_upcoming: &'static str,
    pub active: &'static str,
    pub upcoming: &'static str,
    pub new_window: &'static str,
    pub sections_hint: &'static str,
    pub starts_field: &'static str,
    pub duration_field: &'static str,
    pub ends_field: &'static str,
    pub create: &'static str,
    pub end_now: &'static str,
    pub window_signin: &'static str,

    // Act pages (`GET /act/{token}` and its result).
    pub title_ack: &'static str,
    pub title_resolve: &'static str,
    pub explain_ack: &'static str,
    pub explain_resolve: &'static str,
    pub nothing_yet: &'static str,
    pub confirm_ack: &'static str,
    pub confirm_resolve: &'static str,
    /// The act page of an incident already resolved.
    pub nothing_to_do: &'static str,
    pub expires: &'static str,
    /// The act page's link to the incident.
    pub see_incident: &'static str,
    pub done: &'static str,

    // The `/act/{token}` routes' plain-text answers (`http/act`), sentences with `{placeholders}`
    // and without the closing newline, which the routes add. A result page's message (`link_acked`,
    // `link_resolved`) is shown in the page as it is.
    /// `{by}`: who; `{level}`: as which level; `{at}`: when.
    pub link_acked: &'static str,
    /// `{by}`: who; `{at}`: when.
    pub link_resolved: &'static str,
    /// `{why}`: a `link_why_*` clause, without its period.
    pub link_refused: &'static str,
    /// `{why}`: a whole sentence ([`link_why_reopened`](Self::link_why_reopened)).
    pub link_refused_because: &'static str,
    /// `{origin}`: where the form came from; `{ours}`: the watchdog's own origin.
    pub link_cross_site: &'static str,
    /// `{secs}`: the `Retry-After` seconds.
    pub link_rate_limited: &'static str,
    /// `{id}`: the incident the link names.
    pub link_not_found: &'static str,
    /// `{id}`: the incident the link names.
    pub link_already_resolved: &'static str,
    pub link_why_malformed: &'static str,
    pub link_why_bad_signature: &'static str,
    /// `{at}`: when the link expired.
    pub link_why_expired: &'static str,
    pub link_why_mismatch: &'static str,
    /// `{id}`: the incident; `{reopened}`: its reopen count now. Also the act page's reason not to
    /// act, so a whole sentence.
    pub link_why_reopened: &'static str,

    // Charts (issue 15): the symptom charts of the emails, the incident page and the status page
    // (`pipeline::charts` words the titles and blind reasons, `email` and `http::pages` the rest).
    /// The heading over the charts.
    pub chart_heading: &'static str,
    /// Under the charts: what the colours mean (the series, the threshold, the opening).
    pub chart_legend: &'static str,
    /// A chart's title. `{summary}`: the rule's summary; `{span}`: how far back it reaches.
    pub chart_title: &'static str,
    /// An email image's `alt` text. `{title}`: the chart's title.
    pub chart_alt: &'static str,
    /// The chart in words (the text part). `{title}`; `{last}`, `{min}`, `{max}`: values in the
    /// reading's unit; `{threshold}`: the rule's threshold in the same unit.
    pub chart_gist: &'static str,
    /// A chart that could not be drawn, in words. `{title}`; `{reason}`: a `chart_blind_*`
    /// sentence.
    pub chart_none: &'static str,
    /// Why there is no chart: Prometheus could not be reached.
    pub chart_blind_unreachable: &'static str,
    /// Why there is no chart: `{timeout}`, how long Prometheus was given.
    pub chart_blind_timeout: &'static str,
    /// Why there is no chart: Prometheus answered something that is not the reading's history.
    pub chart_blind_bad_answer: &'static str,
    /// Why there is no chart: no sample of the reading in the chart's span.
    pub chart_blind_no_data: &'static str,
    /// Why there is no chart: the drawing itself failed (not expected).
    pub chart_blind_draw: &'static str,
    /// The status page's column of each open incident's chart thumbnail.
    pub chart_trend: &'static str,
}

impl Text {
    /// The words that name an incident wherever one is shown, under their field names, which are
    /// also the keys every template asks for them by (`lang`, `incident`, `state_open`, …): the
    /// start of the pages' and the act pages' `labels()`.
    pub fn incident_labels(&self) -> [(&'static str, &'static str); 9] {
        [
            ("lang", self.lang),
            ("incident", self.incident),
            ("section", self.section),
            ("severity", self.severity),
            ("state", self.state),
            ("state_open", self.state_open),
            ("state_resolved", self.state_resolved),
            ("opened_at", self.opened_at),
            ("level", self.level),
        ]
    }
}
