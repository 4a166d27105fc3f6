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
    // Evidence in words and one language (issue 15).
    /// Code's English without a message yet: `{text}`, as it is.
    pub msg_untranslated: &'static str,
    /// Findings joined: `{items}`.
    pub msg_list: &'static str,
    /// `{key}`: a reading never seen.
    pub msg_not_observed: &'static str,
    /// `{source}`; `{failure}`: the source's failure.
    pub msg_source_unreachable: &'static str,
    /// `{source}`; `{failure}`: the source's failure. A blind spot's words (`doctor`).
    pub msg_blind_source_failing: &'static str,
    /// No Sentry release: the deploy is Docker's.
    pub msg_sentry_no_release: &'static str,
    /// No Sentry release.
    pub msg_sentry_no_release_short: &'static str,
    /// `{version}`: the latest release.
    pub msg_sentry_release: &'static str,
    /// `{n}` unresolved issues.
    pub msg_sentry_unresolved: &'static str,
    /// `{n}`: a floor (the page cap was reached).
    pub msg_sentry_unresolved_floor: &'static str,
    /// `{h}` hours.
    pub msg_sentry_events: &'static str,
    /// `{h}` hours; a floor.
    pub msg_sentry_events_floor: &'static str,
    /// `{id}`: the deployment in progress.
    pub msg_coolify_deployment: &'static str,
    /// Coolify lists no deployment.
    pub msg_coolify_no_deployment: &'static str,
    /// No finished deployment.
    pub msg_coolify_no_finished: &'static str,
    /// No earlier finished deployment.
    pub msg_coolify_no_earlier: &'static str,
    /// A value that is not a safe word.
    pub msg_coolify_not_safe: &'static str,
    /// `{n}` models listed.
    pub msg_openai_models: &'static str,
    /// `{timeout}`: no answer once connected.
    pub msg_openai_silent: &'static str,
    /// `{since}`, `{n}`: the month's buckets.
    pub msg_openai_since: &'static str,
    /// `{today}`, `{rest}`: hours of today and of yesterday in the burn rate.
    pub msg_openai_burn: &'static str,
    /// The budget is spent.
    pub msg_openai_spent: &'static str,
    /// Nothing spent in 24 h.
    pub msg_openai_no_burn: &'static str,
    /// `{rate}`, `{left}` in USD.
    pub msg_openai_this_month: &'static str,
    /// `{month_left}` hours, `{rate}` USD/h.
    pub msg_openai_next_month: &'static str,
    /// `{names}`: the alert names, as their sender wrote them.
    pub msg_alert_names: &'static str,
    /// `{n}`, `{last}`, `{within}`.
    pub msg_alerts_stale: &'static str,
    /// `{started}`, `{until}`.
    pub msg_alerts_warming: &'static str,
    /// `{source}`.
    pub msg_not_polled: &'static str,
    pub msg_no_data: &'static str,
    /// `{n}`: NaN or infinite.
    pub msg_not_finite: &'static str,
    /// `{section}`, `{severity}`.
    pub msg_tl_opened: &'static str,
    /// `{n}`: the how-manieth reopening.
    pub msg_tl_reopened: &'static str,
    /// `{from}`, `{to}`.
    pub msg_tl_severity: &'static str,
    /// `{rule}`, `{summary}`, `{value}` (empty or ` = 12%`).
    pub msg_tl_symptom: &'static str,
    /// `{cause}`: a cause ID.
    pub msg_tl_cause: &'static str,
    /// `{level}`, `{by}`.
    pub msg_tl_acked: &'static str,
    pub msg_tl_cleared: &'static str,
    /// `{by}`.
    pub msg_tl_resolved_by: &'static str,
    /// `{by}`, `{note}`.
    pub msg_tl_resolved_by_note: &'static str,
    /// `{level}`, `{event}`.
    pub msg_tl_paged: &'static str,
    /// An email's event, in words.
    pub msg_event_opened: &'static str,
    pub msg_event_escalated: &'static str,
    pub msg_event_reminder: &'static str,
    pub msg_event_reopened: &'static str,
    pub msg_event_resolved: &'static str,
    /// `{window}`.
    pub msg_the_last: &'static str,
    /// `{window}`, `{counted}`.
    pub msg_the_last_partly: &'static str,
    /// `{metric}`.
    pub msg_no_request_series: &'static str,
    pub msg_no_requests_in_window: &'static str,
    /// `{total}`: requests per second.
    pub msg_no_5xx_yet: &'static str,
    pub msg_no_auth_series_yet: &'static str,
    pub msg_auth_estimated: &'static str,
    /// `{handlers}`.
    pub msg_no_usual_share: &'static str,
    /// `{held}`, `{needed}`.
    pub msg_baseline_short: &'static str,
    pub msg_no_baseline_yet: &'static str,
    pub msg_baseline_zero: &'static str,
    /// `{threshold}`.
    pub msg_no_histogram_can_show: &'static str,
    /// `{lowr}`, `{highr}`.
    pub msg_neither_histogram: &'static str,
    /// `{histogram}`, `{excluded}` (empty or a `msg_without`).
    pub msg_per_handler: &'static str,
    /// `{excluded}`.
    pub msg_without: &'static str,
    /// `{highr}`, `{lowr}`, `{top}`, `{threshold}`.
    pub msg_all_handlers_lowr_short: &'static str,
    /// `{highr}`, `{lowr}`.
    pub msg_all_handlers_no_lowr: &'static str,
    /// `{highr}`, `{excluded}`.
    pub msg_cannot_exclude: &'static str,
    /// `{lowr}`, `{handlers}`.
    pub msg_slow_handlers: &'static str,
    /// `{bound}`.
    pub msg_slow_exact: &'static str,
    /// `{threshold}`, `{lo}`, `{hi}`.
    pub msg_slow_estimated: &'static str,
    /// `{top}`, `{threshold}`.
    pub msg_buckets_stop: &'static str,
    /// `{top}`.
    pub msg_share_above_top: &'static str,
    /// `{job}`.
    pub msg_no_target_for_job: &'static str,
    /// `{over}`: a window.
    pub msg_restarts_within: &'static str,
    /// `{over}`: a window.
    pub msg_lines_per_minute_over: &'static str,
    /// `{before}`, `{ago}`.
    pub msg_image_changed: &'static str,
    /// `{ago}`.
    pub msg_container_recreated: &'static str,
    /// `{ago}`.
    pub msg_container_created: &'static str,
    /// `{window}`.
    pub msg_same_container: &'static str,
    /// `{window}`.
    pub msg_oom_now: &'static str,
    /// `{ago}`, `{window}`.
    pub msg_oom_ago: &'static str,
    /// `{window}`.
    pub msg_no_oom: &'static str,
    /// `{window}`.
    pub msg_needs_samples: &'static str,
    pub msg_no_memory_limit: &'static str,
    pub msg_not_reported: &'static str,
    /// `{role}`, `{how}`.
    pub msg_no_role_match: &'static str,
    /// `{name}`, `{note}`.
    pub msg_replica_says: &'static str,
    pub msg_no_replica: &'static str,
    pub msg_no_image_change: &'static str,
    /// `{before}`, `{ago}`.
    pub msg_role_image_changed: &'static str,
    /// `{over}`: a window.
    pub msg_per_minute_over: &'static str,
    pub msg_no_maxmemory: &'static str,
    /// `{code}`, `{to}`.
    pub msg_redirected: &'static str,
    /// `{failure}`.
    pub msg_no_answer: &'static str,
    /// A timeline entry's kind, in words.
    pub kind_opened: &'static str,
    pub kind_reopened: &'static str,
    pub kind_severity: &'static str,
    pub kind_symptom: &'static str,
    pub kind_cause: &'static str,
    pub kind_paged: &'static str,
    pub kind_acknowledged: &'static str,
    pub kind_resolved: &'static str,
    pub kind_note: &'static str,
    pub kind_muted: &'static str,
    /// An evidence line in words: `{what}` (an observation's phrase), `{value}` (what was read), `{cond}` (an `op_*`).
    pub ev_needs: &'static str,
    /// A symptom in words: `{what}`, `{value}`, `{cond}` (an `op_*`).
    pub ev_fires: &'static str,
    /// `{what}`, `{why}`.
    pub ev_no_data: &'static str,
    /// `{what}`, `{why}`.
    pub ev_unknown: &'static str,
    /// `{value}` and how it was read, `{note}`.
    pub ev_with_note: &'static str,
    /// `{n}`: instances not shown.
    pub ev_more: &'static str,
    /// `{source}`, `{failure}`.
    pub ev_source_down: &'static str,
    /// `{source}`.
    pub ev_source_up: &'static str,
    /// A condition's threshold in words: `{x}`.
    pub op_gt: &'static str,
    pub op_ge: &'static str,
    pub op_lt: &'static str,
    pub op_le: &'static str,
    pub op_eq: &'static str,
    pub op_ne: &'static str,
    pub op_in: &'static str,
    pub op_not_in: &'static str,
    /// A source condition's threshold.
    pub op_failing: &'static str,
    /// A yes-or-no reading.
    pub value_yes: &'static str,
    pub value_no: &'static str,
    /// Whose, in an observation's phrase (`{of}`): `{role}`.
    pub of_role: &'static str,
    /// `{container}`.
    pub of_container: &'static str,
    /// A condition naming no container or role.
    pub of_any: &'static str,
    /// The `handler` label `*`.
    pub all_handlers: &'static str,
    /// A label a condition leaves open.
    pub any_label: &'static str,
    /// A blind spot in words: `{rule}`, `{reason}`.
    pub blind_rule: &'static str,
    /// Before a blind spot's detail (the fix).
    pub fix: &'static str,
    pub msg_no_exit_code: &'static str,
    pub msg_no_start_time: &'static str,
    pub msg_not_running: &'static str,
    pub msg_no_memory_usage: &'static str,
    pub msg_first_look: &'static str,
    /// `{role}`, `{how}`: with the fix.
    pub msg_no_role_match_fix: &'static str,
    /// `{failure}`: a query's failure.
    pub msg_failed: &'static str,
    /// The title of a vendor's status page link: `{name}`.
    pub vendor_status: &'static str,
    /// The plain email sent when the full one cannot be rendered: `{id}`, `{section}`, `{severity}`, `{opened}`, `{cause}`, `{symptoms}` (one line each).
    pub fallback_body: &'static str,
    /// A finding with its stable reason: `{detail}`, `{reason}`.
    pub msg_with_reason: &'static str,
    /// `{why}`, `{job}`.
    pub msg_fix_no_request_series: &'static str,
    /// `{job}`, `{jobs}`.
    pub msg_fix_no_job: &'static str,
    /// `{threshold}`, `{lowr}`, `{highr}` (what each histogram is), `{fix}`.
    pub msg_fix_buckets: &'static str,
    /// `{name}`, `{bounds}`.
    pub msg_has_buckets: &'static str,
    /// `{name}`.
    pub msg_no_series: &'static str,
    /// `{name}`, `{failure}`.
    pub msg_could_not_read: &'static str,
    /// `{buckets}`, `{threshold}`.
    pub msg_bucket_fix: &'static str,
    /// A form's field refused on the pages: `{field}`, and `{why}`: the API's English reason,
    /// quoted (the input checks of `config/window.rs` and `http/actions.rs` have no words of
    /// their own in pt-BR yet).
    pub err_invalid: &'static str,
    /// `{link}`: the level the link acknowledges for.
    pub err_other_level: &'static str,
    /// `{id}`.
    pub err_unknown_window: &'static str,
    /// `{id}`.
    pub err_configured_window: &'static str,
    /// `{id}`, `{ended_at}`.
    pub err_window_over: &'static str,
    /// A source's failure: `{limit}`.
    pub msg_no_answer_within: &'static str,
    /// `{what}`: which call, `{limit}`.
    pub msg_engine_no_answer_within: &'static str,
    /// `{path}`.
    pub msg_no_docker_socket: &'static str,
    pub msg_engine_no_answer: &'static str,
    /// `{kib}`.
    pub msg_answer_too_large: &'static str,
    /// `{status}`.
    pub msg_not_prometheus_json: &'static str,
    /// What each observation of the catalogue is, by name, with its labels as `{placeholders}`
    /// (`{of}`: whose, for `container` and `role`): one entry per catalogue name (tested).
    #[serde(skip)]
    pub observations: &'static [(&'static str, &'static str)],
    // Leadership (issue 17): a standby's refusals, the replica's role on the status page, and the
    // takeover on the timeline.
    /// A form or an email link refused on a standby: `{leader}`, the leader's name (or
    /// `leader_unknown`).
    pub standby_refused: &'static str,
    /// Stands for the leader's name while no replica is known to hold the lead.
    pub leader_unknown: &'static str,
    /// The heading of the replica's role on the status page.
    pub replica_role: &'static str,
    /// `{node}`: the one replica of an unshared (SQLite) store.
    pub role_solo: &'static str,
    /// `{node}`: this replica leads.
    pub role_leader: &'static str,
    /// `{node}`, `{leader}`.
    pub role_standby: &'static str,
    /// `{node}`, `{from}`.
    pub msg_tl_takeover: &'static str,
    /// `{node}`.
    pub msg_tl_takeover_unknown: &'static str,
    // The store finding (issue 17): the watchdog's own store does not answer.
    /// The finding's title on the status page: `{since}`, a UTC time.
    pub store_down: &'static str,
    /// `{count}` pages (two or more) decided and waiting for the store.
    pub store_down_pages: &'static str,
    /// One page decided and waiting for the store.
    pub store_down_one_page: &'static str,
    /// No page waits for the store (it failed outside a commit, or on a standby).
    pub store_down_no_page: &'static str,
    /// The fix on PostgreSQL: `{store}`, the database as `host:port/dbname`.
    pub store_down_fix_postgres: &'static str,
    /// The fix on SQLite: `{store}`, the file's path.
    pub store_down_fix_sqlite: &'static str,
    /// Before the store's own words about its failure.
    pub store_down_error: &'static str,
    /// In place of a list on the status page the store could not read.
    pub store_down_unreadable: &'static str,
    /// The whole 503 page when a status page's store read or write failed.
    pub store_read_failed: &'static str,
    // One language, the rest (issue 15, session 7).
    /// `{field}` is missing: `{why}` (a message).
    pub msg_input_required: &'static str,
    /// Why `by` is required.
    pub msg_input_who_acts: &'static str,
    /// Why `reason` is required.
    pub msg_input_why_muted: &'static str,
    /// `{field}`, `{max}` characters.
    pub msg_input_too_long: &'static str,
    /// `{field}` holds control characters.
    pub msg_input_control: &'static str,
    /// `{level}` as written, `{levels}` the known ones.
    pub msg_input_unknown_level: &'static str,
    /// `{section}` as written, `{known}` the runbook's.
    pub msg_input_unknown_section: &'static str,
    /// `{field}`, `{text}` as written, `{why}`.
    pub msg_window_not_a_time: &'static str,
    /// Why a time is not one: none was given.
    pub msg_window_time_missing: &'static str,
    /// Why a time is not one: before the dates a timestamp names.
    pub msg_window_before_1970: &'static str,
    /// `{ahead}`: the furthest a window is planned.
    pub msg_window_too_far_ahead: &'static str,
    /// `{text}` as written, `{why}` the parser's.
    pub msg_window_not_a_duration: &'static str,
    /// `{text}`, `{longest}`.
    pub msg_window_duration_too_long: &'static str,
    /// `{text}`.
    pub msg_window_duration_past_dates: &'static str,
    /// Both were given.
    pub msg_window_ends_and_duration: &'static str,
    /// Neither was given.
    pub msg_window_no_end: &'static str,
    /// The end is not after the start.
    pub msg_window_ends_before_starts: &'static str,
    /// `{longest}`.
    pub msg_window_too_long: &'static str,
    /// The end is not after now.
    pub msg_window_over: &'static str,
    /// `{what}` (a command), `{error}` (the client's words).
    pub msg_command_failed: &'static str,
    /// `{answer}`: what PING got.
    pub msg_redis_not_pong: &'static str,
    /// `{size}`, `{limit}`.
    pub msg_redis_info_too_large: &'static str,
    /// `{pattern}`, `{size}`, `{limit}`.
    pub msg_redis_scan_too_large: &'static str,
    /// `{pattern}`, `{limit}`.
    pub msg_redis_scan_timeout: &'static str,
    /// `{field}`.
    pub msg_redis_info_missing: &'static str,
    /// `{status}`, `{content_type}` (the peer's header).
    pub msg_http_content_type: &'static str,
    /// `{status}`.
    pub msg_http_no_content_type: &'static str,
    /// `{what}` (a message), `{error}` (the decoder's words).
    pub msg_not_json: &'static str,
    /// `{what}`, `{error}`.
    pub msg_html_not_json: &'static str,
    /// What a status page answers.
    pub msg_statuspage_json: &'static str,
    /// `{indicator}`, `{known}`.
    pub msg_unknown_indicator: &'static str,
    /// `{auth}`, `{auth_failure}`, `{rest}`, `{rest_failure}`.
    pub msg_supabase_unreachable: &'static str,
    /// `{status}`, `{said}` (the peer's words).
    pub msg_http_said: &'static str,
    /// `{column}`.
    pub msg_docker_bad_json_at: &'static str,
    /// Not the Engine's JSON.
    pub msg_docker_bad_answer: &'static str,
    /// A stream ended in an error.
    pub msg_docker_stream_broken: &'static str,
    /// The stats stream ended at once.
    pub msg_docker_stats_empty: &'static str,
    /// `{max}`.
    pub msg_docker_too_many_containers: &'static str,
    /// `{promql}`, `{said}` (Prometheus' words).
    pub msg_promql_said: &'static str,
    /// `{status}`, `{error}`.
    pub msg_not_prometheus_answer: &'static str,
    /// `{promql}`.
    pub msg_range_instant: &'static str,
    /// `{promql}`, `{n}`.
    pub msg_range_several: &'static str,
    /// `{names}`: a role's container names.
    pub msg_role_names: &'static str,
    /// `{patterns}`.
    pub msg_role_patterns: &'static str,
    /// `{service}`.
    pub msg_role_compose: &'static str,
    /// `{service}`, `{project}`.
    pub msg_role_compose_of: &'static str,
    // Issue 16 leftovers (session 7)
    /// The heading of a cause's list of Sentry's top new issues.
    pub sentry_new_issues: &'static str,
    /// One issue's figures: `{events}`, `{users}`, `{level}` (Sentry's word, quoted).
    pub sentry_issue_counts: &'static str,
    pub msg_alert_says: &'static str,
    pub msg_alert_runbook: &'static str,
    /// The status page's block of the alerts pushed by Alertmanager or Grafana.
    pub alerts_received: &'static str,
    pub alert_name: &'static str,
    pub alert_since: &'static str,
    /// An alert routed to no section.
    pub alert_unmatched: &'static str,
    pub alert_state_firing: &'static str,
    pub alert_state_stale: &'static str,
    pub alert_state_resolved: &'static str,
    pub alerts_more: &'static str,
    // SaaS probes in one language (issue 15, session 7)
    /// Elsewhere: a redirect without a location we can name.
    pub msg_elsewhere: &'static str,
    pub msg_coolify_unreachable: &'static str,
    pub msg_coolify_deployments_of: &'static str,
    pub msg_coolify_envs_of: &'static str,
    pub msg_coolify_redirected: &'static str,
    pub msg_coolify_refused_token: &'static str,
    pub msg_coolify_unknown_app: &'static str,
    pub msg_coolify_no_answer: &'static str,
    pub msg_coolify_deployments_list: &'static str,
    pub msg_coolify_envs_list: &'static str,
    pub msg_html_not: &'static str,
    pub msg_answer_not: &'static str,
    pub msg_openai_unreachable: &'static str,
    pub msg_openai_refused_key: &'static str,
    pub msg_openai_need_models: &'static str,
    pub msg_openai_need_admin: &'static str,
    pub msg_openai_refused_request: &'static str,
    pub msg_openai_costs_no_answer: &'static str,
    pub msg_openai_redirected: &'static str,
    pub msg_openai_http: &'static str,
    pub msg_openai_models_list: &'static str,
    pub msg_openai_object_not_list: &'static str,
    pub msg_openai_costs_page: &'static str,
    pub msg_openai_amount_not_finite: &'static str,
    pub msg_openai_amount_not_usd: &'static str,
    pub msg_openai_no_cursor: &'static str,
    pub msg_openai_too_many_pages: &'static str,
    pub msg_openai_costs_late: &'static str,
    pub msg_openai_costs_said: &'static str,
    pub msg_outside_calendar: &'static str,
    pub msg_sentry_bad_url: &'static str,
    pub msg_sentry_unreadable: &'static str,
    pub msg_sentry_path_of: &'static str,
    pub msg_sentry_late: &'static str,
    pub msg_sentry_redirected: &'static str,
    pub msg_sentry_refused_token: &'static str,
    pub msg_sentry_unknown_project: &'static str,
    pub msg_sentry_rate_limited: &'static str,
    pub msg_sentry_no_answer: &'static str,
    pub msg_sentry_issues_list: &'static str,
    pub msg_sentry_releases_list: &'static str,
    pub msg_sentry_first_seen_not_utc: &'static str,
    pub msg_remote_answered: &'static str,
    pub msg_remote_not_listing: &'static str,
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
