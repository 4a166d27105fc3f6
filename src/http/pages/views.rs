//! What the pages show: the views the templates lay out (rows, an incident's detail, its diagnosis
//! table, windows, the session), built from the domain types in the page's language.

use axum::http::HeaderMap;
use serde::Serialize;

use super::charts::{ChartBox, Glance};
use super::{Labels, PagesState};
use crate::clock::Timestamp;
use crate::config::MaintenanceWindow;
use crate::doctor::BlindSpot;
use crate::email::public_link;
use crate::engine::CauseStatus;
use crate::http::PageKind;
use crate::incident::{DiagnosisSnapshot, Incident, IncidentState};
use crate::locale::{Locale, human_duration, human_time};
use crate::runbook::{Runbook, Severity};
use crate::store::StoredWindow;

/// One incident as a row of `/` and the head of its page.
#[derive(Debug, Serialize)]
pub(super) struct Row {
    id: String,
    url: String,
    section: String,
    section_title: String,
    severity: Severity,
    /// `open` or `resolved`, in the page's language.
    state: &'static str,
    open: bool,
    level: String,
    opened_at: String,
    resolved_at: Option<String>,
    /// Open: its age; resolved: how long it lasted.
    duration: String,
    cause: String,
    acked: bool,
    reopened: u32,
    /// An open incident on `/`: its top symptom's value and chart thumbnail (issue 15).
    glance: Option<Glance>,
}

impl Row {
    /// The row with its glance (the status page's open incidents).
    pub(super) fn with_glance(mut self, glance: Glance) -> Self {
        self.glance = Some(glance);
        self
    }
}

#[derive(Debug, Serialize)]
pub(super) struct Detail {
    #[serde(flatten)]
    row: Row,
    critical_since: Option<String>,
    acks: Vec<(String, String, String)>,
    paged: Vec<(String, String)>,
    symptoms: Vec<(String, String)>,
    resolve_note: Option<String>,
    timeline: Vec<(String, String, String)>,
    diagnosis: Option<DiagnosisView>,
    ack_curl: String,
    resolve_curl: String,
}

/// The diagnosis table.
#[derive(Debug, Serialize)]
struct DiagnosisView {
    at: String,
    causes: Vec<CauseRow>,
}

#[derive(Debug, Serialize)]
struct CauseRow {
    id: String,
    title: String,
    /// `likely`, `unknown` or `ruled_out`: the CSS class.
    status: &'static str,
    /// The status in the page's language.
    status_label: &'static str,
    /// The share of evidence weight that holds, as a percentage.
    score: String,
    evidence: Vec<EvidenceRow>,
    /// Sentry's top new issues (issue 16): each its own item, the peer's words quoted.
    sentry_issues: Vec<crate::words::IssueWords>,
}

/// One evidence line: in words, with the raw condition and what was observed beside it.
#[derive(Debug, Serialize)]
struct EvidenceRow {
    /// `holds`, `fails`, `no_data` or `unknown`: the CSS class.
    truth: String,
    /// The result in the page's language.
    truth_label: &'static str,
    /// A sentence per instance that decided it; empty for a diagnosis stored before they were
    /// kept (the raw line is shown).
    sentences: Vec<String>,
    condition: String,
    observed: String,
}

/// A blind spot in the page's language: the rule and why in words, the detail with the fix.
#[derive(Debug, Serialize)]
pub(super) struct BlindView {
    rule: String,
    reason: String,
    title: String,
    detail: String,
}

/// The store finding in the page's language: since when, the pages waiting, the fix, and the
/// store's own words (shown as code: they are the store's, in English).
#[derive(Debug, Serialize)]
pub(super) struct StoreDownView {
    title: String,
    pages: String,
    fix: String,
    error_label: &'static str,
    error: String,
}

/// The store finding in `locale`'s words.
pub(super) fn store_down_view(f: &crate::store::StoreFinding, locale: Locale) -> StoreDownView {
    use crate::locale::fill;
    let t = locale.text();
    let count = f.unrecorded.len().to_string();
    let pages = match f.unrecorded.len() {
        0 => t.store_down_no_page.to_owned(),
        1 => t.store_down_one_page.to_owned(),
        _ => fill(t.store_down_pages, &[("count", &count)]),
    };
    let fix = if f.shared {
        t.store_down_fix_postgres
    } else {
        t.store_down_fix_sqlite
    };
    StoreDownView {
        title: fill(
            t.store_down,
            &[("since", &crate::locale::human_time(f.since))],
        ),
        pages,
        fix: fill(fix, &[("store", &f.store)]),
        error_label: t.store_down_error,
        error: crate::locale::one_line(&f.error, crate::locale::MAX_PEER),
    }
}

/// The blind spots in `locale`'s words.
pub(super) fn blind_views(spots: &[BlindSpot], locale: Locale) -> Vec<BlindView> {
    spots
        .iter()
        .map(|b| {
            let (title, detail) = crate::words::blind_spot(locale, b);
            BlindView {
                rule: b.rule.clone(),
                reason: b.reason.clone(),
                title,
                detail,
            }
        })
        .collect()
}

#[derive(Debug, Serialize)]
pub(super) struct WindowRow {
    sections: String,
    starts: String,
    ends: String,
    reason: String,
    by: Option<String>,
    active: bool,
    /// The store's ID of a window created at run time, which the "end now" form names; `None` for
    /// the configuration's windows, which only the configuration can end.
    end_id: Option<i64>,
}

/// What every page's layout shows of the session: signed in, with the CSRF token of its forms.
#[derive(Debug, Serialize)]
pub(super) struct SessionView {
    csrf: String,
}

#[derive(Serialize)]
pub(super) struct IndexPage<'a> {
    pub(super) t: &'a Labels,
    pub(super) now: String,
    /// Seconds between the page's own reloads; `None` when the reader turned them off.
    pub(super) refresh: Option<u64>,
    pub(super) session: Option<SessionView>,
    pub(super) open: Vec<Row>,
    pub(super) resolved: Vec<Row>,
    pub(super) windows: Vec<WindowRow>,
    pub(super) blind_spots: Vec<BlindView>,
    /// The store finding, above the blind spots, while the watchdog's own store is down.
    pub(super) store_down: Option<StoreDownView>,
    /// The store did not answer this page's reads (while its finding says it is down): the lists
    /// say so instead of reading empty.
    pub(super) unreadable: bool,
    /// This replica's role in the page's language (issue 17): solo, leader, or standby naming
    /// the leader.
    pub(super) role: String,
    /// The alerts received from Alertmanager or Grafana (issue 16), at most [`MAX_ALERT_ROWS`].
    pub(super) alerts: Vec<AlertRow>,
    /// How many more the inbox holds than are listed.
    pub(super) alerts_more: usize,
}

/// This replica's role in `locale`'s words: `node-b: standby (the leader is node-a)`.
pub(super) fn role_words(
    leadership: &crate::ha::Leadership,
    locale: crate::locale::Locale,
) -> String {
    use crate::locale::fill;
    let t = locale.text();
    let node = leadership.node();
    if !leadership.is_shared() {
        return fill(t.role_solo, &[("node", &node)]);
    }
    match leadership.role() {
        crate::ha::Role::Leader { .. } => fill(t.role_leader, &[("node", &node)]),
        crate::ha::Role::Standby { leader } => fill(
            t.role_standby,
            &[
                ("node", &node),
                ("leader", &leader.as_deref().unwrap_or(t.leader_unknown)),
            ],
        ),
    }
}

/// Most alerts listed on `/` (the inbox may hold thousands: `GET /api/alerts` lists them all).
pub(super) const MAX_ALERT_ROWS: usize = 20;

/// One alert received, as `/` lists it: its name and its `severity` label quoted (the sender's
/// words), the section it routed to (or "unmatched"), its state and since when it fires.
#[derive(Debug, Serialize)]
pub(super) struct AlertRow {
    name: String,
    /// `firing`, `stale` or `resolved`: the CSS class.
    state: &'static str,
    /// The state in the page's language.
    state_label: &'static str,
    /// The section's title, or the page's word for "unmatched".
    section: String,
    /// The section's ID; `None` when unmatched.
    section_id: Option<String>,
    /// `startsAt` as a UTC time (the sender's), or as the sender wrote it when it is not one.
    since: String,
    /// The `severity` label quoted, or empty.
    severity: String,
}

/// The rows of `listed` (firing first, as the inbox lists them), in `locale`'s words.
pub(super) fn alert_rows(
    listed: &[crate::alerts::Listed],
    runbook: &Runbook,
    locale: Locale,
) -> Vec<AlertRow> {
    use crate::alerts::AlertState;
    use crate::locale::quoted;
    use crate::runbook::alerts::Routed;
    let words = locale.text();
    listed
        .iter()
        .take(MAX_ALERT_ROWS)
        .map(|a| {
            let (state, state_label) = match a.state {
                AlertState::Firing => ("firing", words.alert_state_firing),
                AlertState::Stale => ("stale", words.alert_state_stale),
                AlertState::Resolved => ("resolved", words.alert_state_resolved),
            };
            let (section, section_id) = match &a.routed {
                Routed::Section(id) => (
                    runbook
                        .sections
                        .iter()
                        .find(|s| &s.id == id)
                        .map_or_else(|| id.clone(), |s| s.title.get(locale).to_owned()),
                    Some(id.clone()),
                ),
                Routed::Unmatched(_) => (words.alert_unmatched.to_owned(), None),
            };
            AlertRow {
                name: quoted(&a.alertname),
                state,
                state_label,
                section,
                section_id,
                since: crate::alerts::payload::parse_time(&a.starts_at)
                    .map_or_else(|| quoted(&a.starts_at), human_time),
                severity: a
                    .labels
                    .get("severity")
                    .map(|s| quoted(s))
                    .unwrap_or_default(),
            }
        })
        .collect()
}

#[derive(Serialize)]
pub(super) struct IncidentPage<'a> {
    pub(super) t: &'a Labels,
    pub(super) now: String,
    pub(super) session: Option<SessionView>,
    pub(super) incident: Detail,
    pub(super) api_open: bool,
    pub(super) levels: Vec<String>,
    /// The firing symptoms' charts (open incidents; issue 15).
    pub(super) charts: Vec<ChartBox>,
}

#[derive(Serialize)]
pub(super) struct MaintenancePage<'a> {
    pub(super) t: &'a Labels,
    pub(super) now: String,
    pub(super) session: Option<SessionView>,
    pub(super) windows: Vec<WindowRow>,
    /// Section ID and title, for the form's check boxes.
    pub(super) sections: Vec<(String, String)>,
    pub(super) api_open: bool,
}

/// A page with a title and a message: not found, sign-in, refusals and failures.
#[derive(Serialize)]
pub(super) struct MessagePage<'a> {
    pub(super) t: &'a Labels,
    pub(super) now: String,
    pub(super) session: Option<SessionView>,
    pub(super) title: &'a str,
    pub(super) message: String,
    pub(super) api_open: bool,
}

impl PagesState {
    fn section_title(&self, id: &str) -> String {
        self.runbook
            .sections
            .iter()
            .find(|s| s.id == id)
            .map_or_else(|| id.to_owned(), |s| s.title.get(self.locale).to_owned())
    }

    /// The cause's title in the page's language, with its ID; `unknown` said so.
    fn cause(&self, id: &str, t: &Labels) -> String {
        if id.is_empty() || id == "unknown" {
            return t["cause_unknown"].to_owned();
        }
        self.runbook
            .sections
            .iter()
            .flat_map(|s| s.causes.iter())
            .find(|c| c.id == id)
            .map_or_else(
                || id.to_owned(),
                |c| format!("{} ({id})", c.title.get(self.locale)),
            )
    }

    pub(super) fn row(&self, i: &Incident, now: Timestamp, t: &Labels) -> Row {
        let open = i.state == IncidentState::Open;
        Row {
            url: format!("/incidents/{}", i.id),
            section_title: self.section_title(&i.section),
            severity: i.severity,
            state: if open {
                t["state_open"]
            } else {
                t["state_resolved"]
            },
            open,
            level: i
                .highest_paged()
                .map_or_else(|| "—".to_owned(), |l| l.to_string()),
            opened_at: human_time(i.opened_at),
            resolved_at: i.resolved_at.map(human_time),
            duration: human_duration(i.resolved_at.unwrap_or(now).saturating_since(i.opened_at)),
            cause: self.cause(&i.cause, t),
            acked: !i.acks.is_empty(),
            reopened: i.reopened,
            glance: None,
            id: i.id.clone(),
            section: i.section.clone(),
        }
    }

    pub(super) fn detail(&self, i: &Incident, now: Timestamp, t: &Labels) -> Detail {
        let api = |action: &str, body: &str| {
            format!(
                "curl -X POST -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' -d '{body}' {}",
                public_link(
                    &self.public_url,
                    &format!("api/incidents/{}/{action}", i.id)
                )
            )
        };
        Detail {
            row: self.row(i, now, t),
            critical_since: i.critical_since.map(human_time),
            acks: i
                .acks
                .iter()
                .map(|(l, a)| (l.to_string(), a.by.clone(), human_time(a.at)))
                .collect(),
            paged: i
                .paged
                .iter()
                .map(|(l, at)| (l.to_string(), human_time(*at)))
                .collect(),
            symptoms: i
                .symptoms
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            resolve_note: i.resolve_note.clone().filter(|n| !n.is_empty()),
            timeline: i
                .timeline
                .iter()
                .map(|e| {
                    (
                        human_time(e.at),
                        crate::words::timeline_kind(self.locale, &e.kind),
                        crate::words::timeline_text(self.locale, e),
                    )
                })
                .collect(),
            diagnosis: i
                .diagnosis
                .as_ref()
                .map(|d| diagnosis_view(d, t, self.locale)),
            ack_curl: api("ack", r#"{"by": "NAME"}"#),
            resolve_curl: api("resolve", r#"{"by": "NAME", "note": "..."}"#),
        }
    }

    fn window_row(
        &self,
        w: &MaintenanceWindow,
        by: Option<String>,
        end_id: Option<i64>,
        now: Timestamp,
        t: &Labels,
    ) -> WindowRow {
        WindowRow {
            sections: if w.sections.is_empty() {
                t["all_sections"].to_owned()
            } else {
                w.sections.join(", ")
            },
            starts: human_time(w.starts),
            ends: human_time(w.ends),
            reason: w.reason.clone(),
            by,
            active: w.starts <= now && now < w.ends,
            end_id,
        }
    }

    /// The configured and the stored windows that pass `keep`, configured first.
    pub(super) fn window_rows(
        &self,
        stored: &[StoredWindow],
        now: Timestamp,
        t: &Labels,
        keep: impl Fn(&MaintenanceWindow) -> bool,
    ) -> Vec<WindowRow> {
        self.actions
            .configured()
            .iter()
            .filter(|w| keep(w))
            .map(|w| self.window_row(w, None, None, now, t))
            .chain(stored.iter().filter(|s| keep(&s.window)).map(|s| {
                let by = Some(s.created_by.clone());
                self.window_row(&s.window, by, Some(s.id), now, t)
            }))
            .collect()
    }

    /// The layout's view of the request's session.
    pub(super) fn session_view(&self, headers: &HeaderMap) -> Option<SessionView> {
        self.auth.session(headers).map(|(sessions, s)| SessionView {
            csrf: sessions.csrf(&s),
        })
    }
}

fn diagnosis_view(d: &DiagnosisSnapshot, t: &Labels, locale: Locale) -> DiagnosisView {
    let words = locale.text();
    DiagnosisView {
        at: human_time(d.at),
        causes: d
            .causes
            .iter()
            .map(|c| {
                let (status, status_label) = match c.status {
                    CauseStatus::Likely => ("likely", t["likely"]),
                    CauseStatus::Unknown => ("unknown", t["status_unknown"]),
                    CauseStatus::RuledOut => ("ruled_out", t["ruled_out"]),
                };
                CauseRow {
                    status,
                    status_label,
                    id: c.id.clone(),
                    title: c.title.clone(),
                    score: format!("{:.0}%", c.score * 100.0),
                    evidence: c
                        .evidence
                        .iter()
                        .map(|e| EvidenceRow {
                            truth: e.truth.clone(),
                            truth_label: match e.truth.as_str() {
                                "holds" => words.truth_holds,
                                "fails" => words.truth_fails,
                                "no_data" => words.truth_no_data,
                                _ => words.unknown,
                            },
                            sentences: e.cond.as_ref().map_or_else(Vec::new, |c| {
                                crate::words::evidence(locale, c, &e.found, e.more)
                            }),
                            condition: e.condition.clone(),
                            observed: e.observed.clone(),
                        })
                        .collect(),
                    sentry_issues: c
                        .sentry_issues
                        .iter()
                        .map(|i| crate::words::sentry_issue(locale, i))
                        .collect(),
                }
            })
            .collect(),
    }
}

/// Signed-in pages carry a CSRF token and forms: never cached, forms to ourselves. Anonymous pages
/// have no form.
pub(super) fn page_kind(session: Option<&SessionView>) -> PageKind {
    if session.is_some() {
        PageKind::Action
    } else {
        PageKind::Status
    }
}
