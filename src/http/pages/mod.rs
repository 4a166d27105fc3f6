//! The status pages: server-rendered HTML for a browser at 3 a.m., with forms to act.
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | open incidents (worst first), the last [`RECENT`] resolved ones, active maintenance windows |
//! | `GET /incidents/{id}` | one incident: diagnosis table, acks, levels paged, symptoms, timeline (404 page when unknown); signed in and open: the ack and resolve forms |
//! | `POST /incidents/{id}/ack`, `/resolve` | signed in: acknowledge (`by`, `level`?) or resolve (`by`, `note`) through the pager's task, then back to the page |
//! | `GET /maintenance` | the windows not over yet; signed in: the form to create one |
//! | `POST /maintenance` | signed in: creates a window (`sections`…, `starts`?, `duration` \| `ends`, `reason`, `by`) |
//! | `POST /maintenance/{id}/end` | signed in: ends a window created at run time now (`by`); the configuration's cannot be |
//! | `GET /signin`, `POST /signin`, `POST /signout` | a session from the API token ([`crate::http::auth::session`]); signing out ends it on the server |
//!
//! Who may act: whoever signs in with the API token (a signed, expiring session cookie, never the
//! token itself, listed on the server until it signs out), or whoever holds a signed email link
//! (`/act/{token}`, [`crate::http::act`]). Sign-in spends the client's failure budget like a
//! bearer token ([`crate::http::auth::limit`]): past it, 429 and the token is not compared. Who may read:
//! anyone, unless `server.public_reads` is false, when the `GET` pages send whoever is not signed in
//! to `/signin`.
//! Every mutating form is checked, before any other field is looked at, for: a same-origin request
//! ([`crate::http::cross_site`] against `server.public_url`), a valid session, and the session's
//! CSRF token in the hidden `csrf` field. A refusal is a page saying why, and nothing changes.
//! The forms' fields are checked, and carried out, by the actions service
//! ([`super::actions::Actions`]) as the API's are: a refused field is a page with the API's words.
//!
//! Templates are `*.html`, so minijinja escapes every value (names and notes typed by people
//! included). No script runs: the CSP forbids it. Pages for a signed-in browser carry its CSRF token,
//! so they are never cached; anonymous pages have no form at all.
//!
//! Nothing secret reaches a page: incidents, the runbook, the maintenance windows, the public URL and
//! the session's CSRF token (which is worthless without its cookie).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use minijinja::Environment;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Serialize;
use url::Url;

use super::actions::{Actions, Via, WindowRequest, store_unavailable};
use super::{action_status, blocking};
use crate::clock::{Clock, Timestamp};
use crate::config::MaintenanceWindow;
use crate::doctor::BlindSpot;
use crate::email::{human_duration, human_time, public_link};
use crate::engine::CauseStatus;
use crate::http::auth::session::Session;
use crate::http::auth::{self, Auth, ClientKey, Peer};
use crate::http::{PageKind, cross_site, html_page, text_page};
use crate::incident::{ActionError, DiagnosisSnapshot, Incident, IncidentState};
use crate::runbook::{Locale, Runbook, Severity};
use crate::store::{Store, StoreError, StoredWindow};

mod labels;

use labels::labels;

/// Resolved incidents listed on `/`.
pub const RECENT: usize = 20;
/// Incidents read to find the recent resolved ones.
const SCAN: usize = 200;
/// Largest accepted form body: a name, a note and a few fields.
const MAX_FORM: usize = 16 * 1024;

/// The page templates, compiled in. `.html`: auto-escaped.
const TEMPLATES: &[(&str, &str)] = &[
    ("web_layout.html", include_str!("templates/layout.html")),
    ("web_index.html", include_str!("templates/index.html")),
    ("web_incident.html", include_str!("templates/incident.html")),
    (
        "web_maintenance.html",
        include_str!("templates/maintenance.html"),
    ),
    ("web_signin.html", include_str!("templates/signin.html")),
    ("web_refused.html", include_str!("templates/refused.html")),
];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The `reason` labels of `form_refusals_total`, each at 0 from the start.
const REFUSAL_REASONS: [&str; 7] = [
    "cross_site",
    "no_token",
    "signed_out",
    "csrf",
    "wrong_token",
    "rate_limited",
    "bad_input",
];

/// `harven_watchdog_form_refusals_total{reason}`: form posts on the pages that changed nothing
/// (reason: cross_site, no_token, signed_out, csrf, wrong_token, rate_limited, bad_input).
#[derive(Debug, Clone, Default)]
pub struct FormMetrics {
    refusals: Family<ReasonLabel, Counter>,
}

impl FormMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "form_refusals",
            "Form posts on the status pages refused or not carried out, by reason",
            m.refusals.clone(),
        );
        for reason in REFUSAL_REASONS {
            let _ = m.refusals.get_or_create(&ReasonLabel { reason });
        }
        m
    }

    fn refused(&self, reason: &'static str) {
        self.refusals.get_or_create(&ReasonLabel { reason }).inc();
    }
}

struct PagesState {
    /// Acks, resolves and windows, checked and carried out as for the API.
    actions: Arc<Actions>,
    /// What the pages read.
    store: Arc<Store>,
    runbook: Arc<Runbook>,
    clock: Clock,
    locale: Locale,
    public_url: Url,
    /// The sign-in check (the token itself is kept only as a tag), the sessions, the failure
    /// budgets and whether reading needs a session.
    auth: Arc<Auth>,
    metrics: FormMetrics,
    /// The rules that cannot fire now, as the watch loop last found them.
    blind_spots: tokio::sync::watch::Receiver<Vec<BlindSpot>>,
    env: Environment<'static>,
}

/// Everything the pages are made of.
pub struct PagesConfig {
    /// Acks, resolves and windows (which also knows the configuration's windows).
    pub actions: Arc<Actions>,
    /// The store to read.
    pub store: Arc<Store>,
    pub runbook: Arc<Runbook>,
    pub clock: Clock,
    pub locale: Locale,
    pub public_url: Url,
    /// What signing in takes (`server.api_token`), the sessions and the failure budgets, shared
    /// with the API.
    pub auth: Arc<Auth>,
    pub metrics: FormMetrics,
    /// The blind spots the watch loop finds (`crate::doctor`).
    pub blind_spots: tokio::sync::watch::Receiver<Vec<BlindSpot>>,
}

/// The email module's environment with the pages' templates.
fn environment() -> Environment<'static> {
    let mut env = crate::email::environment();
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .expect("the status page templates parse");
    }
    env
}

/// The pages' routes.
pub fn routes(config: PagesConfig) -> Router {
    let env = environment();
    let state = Arc::new(PagesState {
        auth: config.auth,
        actions: config.actions,
        store: config.store,
        runbook: config.runbook,
        clock: config.clock,
        locale: config.locale,
        public_url: config.public_url,
        metrics: config.metrics,
        blind_spots: config.blind_spots,
        env,
    });
    Router::new()
        .route("/", get(index))
        .route("/incidents/{id}", get(incident_page))
        .route("/incidents/{id}/ack", post(ack))
        .route("/incidents/{id}/resolve", post(resolve))
        .route("/maintenance", get(maintenance_page).post(create_window))
        .route("/maintenance/{id}/end", post(end_window))
        .route("/signin", get(signin_page).post(signin))
        .route("/signout", post(signout))
        .layer(DefaultBodyLimit::max(MAX_FORM))
        .with_state(state)
}

// -------------------------------------------------------------------------------------------------
// Views
// -------------------------------------------------------------------------------------------------

type Labels = BTreeMap<&'static str, &'static str>;

/// One incident as a row of `/` and the head of its page.
#[derive(Debug, Serialize)]
struct Row {
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
}

#[derive(Debug, Serialize)]
struct Detail {
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
    /// Truth, condition, what was observed.
    evidence: Vec<(String, String, String)>,
}

#[derive(Debug, Serialize)]
struct WindowRow {
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
struct SessionView {
    csrf: String,
}

#[derive(Serialize)]
struct IndexPage<'a> {
    t: &'a Labels,
    now: String,
    session: Option<SessionView>,
    open: Vec<Row>,
    resolved: Vec<Row>,
    windows: Vec<WindowRow>,
    blind_spots: Vec<BlindSpot>,
}

#[derive(Serialize)]
struct IncidentPage<'a> {
    t: &'a Labels,
    now: String,
    session: Option<SessionView>,
    incident: Detail,
    api_open: bool,
    levels: Vec<String>,
}

#[derive(Serialize)]
struct MaintenancePage<'a> {
    t: &'a Labels,
    now: String,
    session: Option<SessionView>,
    windows: Vec<WindowRow>,
    /// Section ID and title, for the form's check boxes.
    sections: Vec<(String, String)>,
    api_open: bool,
}

/// A page with a title and a message: not found, sign-in, refusals and failures.
#[derive(Serialize)]
struct MessagePage<'a> {
    t: &'a Labels,
    now: String,
    session: Option<SessionView>,
    title: &'a str,
    message: String,
    api_open: bool,
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

    fn row(&self, i: &Incident, now: Timestamp, t: &Labels) -> Row {
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
            id: i.id.clone(),
            section: i.section.clone(),
        }
    }

    fn detail(&self, i: &Incident, now: Timestamp, t: &Labels) -> Detail {
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
                .map(|e| (human_time(e.at), e.kind.clone(), e.text.clone()))
                .collect(),
            diagnosis: i.diagnosis.as_ref().map(|d| diagnosis_view(d, t)),
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
    fn window_rows(
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
    fn session_view(&self, headers: &HeaderMap) -> Option<SessionView> {
        self.auth.session(headers).map(|(sessions, s)| SessionView {
            csrf: sessions.csrf(&s),
        })
    }

    /// `None` when the request may read the pages: reads are public, or it is signed in. Otherwise
    /// the way to the sign-in page.
    fn must_sign_in(&self, session: Option<&SessionView>) -> Option<Response> {
        if self.auth.public_reads() || session.is_some() {
            return None;
        }
        self.auth.refused("no_credentials");
        Some(see_other("/signin", None))
    }

    /// A page with a title and a message, in the page's kind for `session`.
    fn message(
        &self,
        status: StatusCode,
        title_key: &'static str,
        message: String,
        session: Option<SessionView>,
    ) -> Response {
        let t = labels(self.locale);
        let kind = page_kind(session.as_ref());
        let page = MessagePage {
            t: &t,
            now: human_time(self.clock.now()),
            session,
            title: t[title_key],
            message,
            api_open: self.auth.configured(),
        };
        html_page(&self.env, "web_refused.html", &page, status, kind)
    }

    /// Refuses a form of `client`: logs why (at most once a minute per client, saying how many were
    /// held back), and answers a page that says it and that nothing changed.
    fn refuse(&self, r: Refusal, client: ClientKey) -> Response {
        if let Some(held_back) = self.auth.should_log(client) {
            tracing::warn!(%client, reason = r.reason, detail = %r.detail, held_back, "refused a form on the status pages");
        }
        self.metrics
            .refused(r.reason.strip_prefix("refused_").unwrap_or(r.reason));
        let t = labels(self.locale);
        let message = format!("{} {}", t[r.reason], t["nothing_changed"]);
        let message = if r.detail.is_empty() {
            message
        } else {
            format!("{message} ({})", r.detail)
        };
        let mut page = self.message(r.status, "refused", message, None);
        if let Some(secs) = r.retry_after {
            page.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        page
    }

    /// The checks every mutating form passes before anything is read or changed: a same-origin
    /// request, a valid session, and that session's CSRF token in the `csrf` field.
    fn authorize(&self, headers: &HeaderMap, form: &FormData) -> Result<Session, Refusal> {
        if let Some(origin) = cross_site(headers, &self.public_url) {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "refused_cross_site",
                origin,
            ));
        }
        let Some(sessions) = self.auth.sessions() else {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "refused_no_token",
                String::new(),
            ));
        };
        let Some((_, session)) = self.auth.session(headers) else {
            return Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "refused_signed_out",
                String::new(),
            ));
        };
        if !sessions.check_csrf(&session, form.get("csrf")) {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "refused_csrf",
                String::new(),
            ));
        }
        Ok(session)
    }
}

/// Why a form is refused: the answer's status, the label that says why, and a detail (the foreign
/// origin).
struct Refusal {
    status: StatusCode,
    reason: &'static str,
    detail: String,
    /// 429's `Retry-After`, in seconds.
    retry_after: Option<u64>,
}

impl Refusal {
    fn new(status: StatusCode, reason: &'static str, detail: String) -> Self {
        Self {
            status,
            reason,
            detail,
            retry_after: None,
        }
    }
}

fn diagnosis_view(d: &DiagnosisSnapshot, t: &Labels) -> DiagnosisView {
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
                        .map(|e| (e.truth.clone(), e.condition.clone(), e.observed.clone()))
                        .collect(),
                }
            })
            .collect(),
    }
}

/// Signed-in pages carry a CSRF token and forms: never cached, forms to ourselves. Anonymous pages
/// have no form.
fn page_kind(session: Option<&SessionView>) -> PageKind {
    if session.is_some() {
        PageKind::Action
    } else {
        PageKind::Status
    }
}

/// A form body (`application/x-www-form-urlencoded`), with repeated fields (the sections of a
/// window) kept.
struct FormData(Vec<(String, String)>);

impl FormData {
    fn parse(body: &[u8]) -> Self {
        Self(
            url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `name`; empty when absent.
    fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Every value of `name`.
    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The value of `name`, `None` when absent or blank.
    fn optional(&self, name: &str) -> Option<String> {
        Some(self.get(name).trim().to_owned()).filter(|v| !v.is_empty())
    }
}

/// `303 See Other` to `to` (after a form: a reload does not post again), with `cookie` set if given.
fn see_other(to: &str, cookie: Option<String>) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(to) {
        h.insert(header::LOCATION, v);
    }
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::SET_COOKIE, c);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

// -------------------------------------------------------------------------------------------------
// Handlers
// -------------------------------------------------------------------------------------------------

/// Runs a store read or write on the blocking pool; `Err` is the 503 page.
async fn store_task<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Response> {
    blocking(move || f().map_err(store_unavailable))
        .await
        .map_err(|e| unavailable(&e))
}

/// The 503 page of a read or write the store could not do.
fn unavailable(e: &ActionError) -> Response {
    tracing::warn!(error = %e, "status page: the store could not be read or written");
    text_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "The incident store could not be read now; try again in a moment.\n".to_owned(),
        PageKind::Status,
    )
}

impl PagesState {
    fn store(&self) -> Arc<Store> {
        Arc::clone(&self.store)
    }
}

/// `GET /`.
async fn index(State(st): State<Arc<PagesState>>, headers: HeaderMap) -> Response {
    let now = st.clock.now();
    let session = st.session_view(&headers);
    if let Some(sign_in) = st.must_sign_in(session.as_ref()) {
        return sign_in;
    }
    let store = st.store();
    let loaded = store_task(move || {
        let latest = store.latest_per_section()?;
        let recent = store.recent_incidents(SCAN)?;
        Ok((latest, recent))
    })
    .await;
    let (latest, recent) = match loaded {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let stored = match st.actions.windows().await {
        Ok(v) => v,
        Err(e) => return unavailable(&e),
    };
    let t = labels(st.locale);
    let mut open: Vec<&Incident> = latest
        .iter()
        .filter(|i| i.state == IncidentState::Open)
        .collect();
    // Worst first: critical before major, then the highest level paged, then the oldest.
    open.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(b.highest_paged().cmp(&a.highest_paged()))
            .then(a.opened_at.cmp(&b.opened_at))
    });
    let resolved = recent
        .iter()
        .filter(|i| i.state == IncidentState::Resolved)
        .take(RECENT)
        .map(|i| st.row(i, now, &t))
        .collect();
    let windows = st.window_rows(&stored, now, &t, |w| w.starts <= now && now < w.ends);
    let kind = page_kind(session.as_ref());
    let blind_spots = st.blind_spots.borrow().clone();
    let page = IndexPage {
        blind_spots,
        t: &t,
        now: human_time(now),
        session,
        open: open.into_iter().map(|i| st.row(i, now, &t)).collect(),
        resolved,
        windows,
    };
    html_page(&st.env, "web_index.html", &page, StatusCode::OK, kind)
}

/// `GET /incidents/{id}`.
async fn incident_page(
    State(st): State<Arc<PagesState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let now = st.clock.now();
    let session = st.session_view(&headers);
    if let Some(sign_in) = st.must_sign_in(session.as_ref()) {
        return sign_in;
    }
    let store = st.store();
    let key = id.clone();
    let incident = match store_task(move || store.incident(&key)).await {
        Ok(i) => i,
        Err(resp) => return resp,
    };
    let t = labels(st.locale);
    match incident {
        Some(i) => {
            let kind = page_kind(session.as_ref());
            let page = IncidentPage {
                t: &t,
                now: human_time(now),
                session,
                incident: st.detail(&i, now, &t),
                api_open: st.auth.configured(),
                levels: i.paged.keys().map(ToString::to_string).collect(),
            };
            html_page(&st.env, "web_incident.html", &page, StatusCode::OK, kind)
        }
        None => st.message(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{} {id}.", t["not_found_text"]),
            session,
        ),
    }
}

/// Turns the outcome of a form into the way back to the incident, or a page saying why not.
fn acted<T>(st: &PagesState, id: &str, result: Result<T, ActionError>) -> Response {
    let t = labels(st.locale);
    match result {
        Ok(_) => see_other(&format!("/incidents/{id}"), None),
        // (`Reopened` answers email links only; the pages act on the incident as it is now.)
        Err(
            ActionError::AlreadyResolved(_)
            | ActionError::UnknownIncident(_)
            | ActionError::Reopened { .. },
        ) => st.message(
            StatusCode::CONFLICT,
            "not_acted",
            format!("{} {}", t["not_open"], t["nothing_changed"]),
            None,
        ),
        Err(ActionError::Unavailable(why)) => {
            tracing::warn!(error = %why, "a form on the status pages could not be carried out");
            st.message(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_acted",
                t["unavailable"].to_owned(),
                None,
            )
        }
        Err(e) => not_done(st, &e),
    }
}

/// A form that was not carried out (bad input, a window that cannot be ended, a store failure): a
/// page saying why, with the API's status and words.
fn not_done(st: &PagesState, e: &ActionError) -> Response {
    tracing::warn!(error = %e, "a form on the status pages was not carried out");
    let status = action_status(e);
    if status.is_client_error() {
        st.metrics.refused("bad_input");
    }
    let t = labels(st.locale);
    st.message(
        status,
        "not_acted",
        format!("{e} {}", t["nothing_changed"]),
        None,
    )
}

/// `POST /incidents/{id}/ack`: `csrf`, `by`, `level` (blank: the highest level paged).
async fn ack(
    State(st): State<Arc<PagesState>>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = FormData::parse(&body);
    if let Err(refused) = st.authorize(&headers, &form) {
        return st.refuse(refused, st.auth.client_at(peer, &headers));
    }
    let (by, level) = (form.get("by"), Some(form.get("level")));
    let result = st.actions.ack(&id, by, level, None, Via::Pages).await;
    acted(&st, &id, result)
}

/// `POST /incidents/{id}/resolve`: `csrf`, `by`, `note`.
async fn resolve(
    State(st): State<Arc<PagesState>>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = FormData::parse(&body);
    if let Err(refused) = st.authorize(&headers, &form) {
        return st.refuse(refused, st.auth.client_at(peer, &headers));
    }
    let (by, note) = (form.get("by"), form.get("note"));
    let result = st.actions.resolve(&id, by, note, None, Via::Pages).await;
    acted(&st, &id, result)
}

/// `GET /maintenance`: the windows not over yet, and the form to add one when signed in.
async fn maintenance_page(State(st): State<Arc<PagesState>>, headers: HeaderMap) -> Response {
    let now = st.clock.now();
    let session = st.session_view(&headers);
    if let Some(sign_in) = st.must_sign_in(session.as_ref()) {
        return sign_in;
    }
    let stored = match st.actions.windows().await {
        Ok(v) => v,
        Err(e) => return unavailable(&e),
    };
    let t = labels(st.locale);
    let kind = page_kind(session.as_ref());
    let page = MaintenancePage {
        t: &t,
        now: human_time(now),
        session,
        windows: st.window_rows(&stored, now, &t, |w| now < w.ends),
        sections: st
            .runbook
            .sections
            .iter()
            .map(|s| (s.id.clone(), s.title.get(st.locale).to_owned()))
            .collect(),
        api_open: st.auth.configured(),
    };
    html_page(&st.env, "web_maintenance.html", &page, StatusCode::OK, kind)
}

/// `POST /maintenance`: `csrf`, `sections` (repeated; none: every section), `starts`?, `duration` or
/// `ends`, `reason`, `by`; checked like the API's windows.
async fn create_window(
    State(st): State<Arc<PagesState>>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = FormData::parse(&body);
    if let Err(refused) = st.authorize(&headers, &form) {
        return st.refuse(refused, st.auth.client_at(peer, &headers));
    }
    let request = WindowRequest {
        sections: form.all("sections"),
        starts: form.optional("starts"),
        ends: form.optional("ends"),
        duration: form.optional("duration"),
        reason: form.get("reason").to_owned(),
        by: form.get("by").to_owned(),
    };
    let now = st.clock.now();
    if let Err(e) = st.actions.add_window(request, now, Via::Pages).await {
        return not_done(&st, &e);
    }
    see_other("/maintenance", None)
}

/// `POST /maintenance/{id}/end`: `csrf`, `by`; ends the window now, like
/// `DELETE /api/maintenance/{id}`.
async fn end_window(
    State(st): State<Arc<PagesState>>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = FormData::parse(&body);
    if let Err(refused) = st.authorize(&headers, &form) {
        return st.refuse(refused, st.auth.client_at(peer, &headers));
    }
    let now = st.clock.now();
    let ended = st.actions.end_window(&id, form.get("by"), now, Via::Pages);
    if let Err(e) = ended.await {
        return not_done(&st, &e);
    }
    see_other("/maintenance", None)
}

/// `GET /signin`.
async fn signin_page(State(st): State<Arc<PagesState>>, headers: HeaderMap) -> Response {
    let now = st.clock.now();
    let t = labels(st.locale);
    let session = st.session_view(&headers);
    let page = MessagePage {
        t: &t,
        now: human_time(now),
        session,
        title: t["signin"],
        message: String::new(),
        api_open: st.auth.configured(),
    };
    // The sign-in form posts to us whether signed in or not.
    html_page(
        &st.env,
        "web_signin.html",
        &page,
        StatusCode::OK,
        PageKind::Action,
    )
}

/// `POST /signin`: `token` is the API token; a session cookie on success. There is no session yet
/// to hold a CSRF token, so the same-origin check stands alone here (a forged sign-in would need the
/// token anyway).
async fn signin(
    State(st): State<Arc<PagesState>>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = FormData::parse(&body);
    let client = st.auth.client_at(peer, &headers);
    let refuse =
        |reason, detail| st.refuse(Refusal::new(StatusCode::FORBIDDEN, reason, detail), client);
    if let Some(origin) = cross_site(&headers, &st.public_url) {
        return refuse("refused_cross_site", origin);
    }
    let Some(sessions) = st.auth.sessions().cloned() else {
        return refuse("refused_no_token", String::new());
    };
    // Over budget, the token is not even compared: a guesser learns nothing.
    match st.auth.check_token(client, form.get("token").trim()) {
        Ok(()) => {}
        Err(auth::Denied::RateLimited(wait)) => {
            let secs = auth::retry_after_secs(wait);
            let refusal = Refusal {
                retry_after: Some(secs),
                ..Refusal::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "refused_rate_limited",
                    format!("{secs} s"),
                )
            };
            return st.refuse(refusal, client);
        }
        Err(auth::Denied::NotConfigured) => return refuse("refused_no_token", String::new()),
        Err(auth::Denied::Wrong) => return refuse("refused_wrong_token", String::new()),
    }
    let now = st.clock.now();
    let cookie = match store_task(move || sessions.issue(now)).await {
        Ok((_, cookie)) => cookie,
        Err(resp) => return resp,
    };
    tracing::info!("signed in on the status pages");
    see_other("/", Some(cookie))
}

/// `POST /signout`: `csrf`; ends the session on the server and clears the cookie.
async fn signout(
    State(st): State<Arc<PagesState>>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = FormData::parse(&body);
    let session = match st.authorize(&headers, &form) {
        Ok(session) => session,
        Err(refused) => return st.refuse(refused, st.auth.client_at(peer, &headers)),
    };
    let Some(sessions) = st.auth.sessions().cloned() else {
        return see_other("/", None);
    };
    // Ended on the server: the same cookie, replayed, is refused from now on.
    let cookie = sessions.clear_cookie();
    if let Err(resp) = store_task(move || sessions.revoke(&session)).await {
        return resp;
    }
    tracing::info!("signed out of the status pages");
    see_other("/", Some(cookie))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        let env = environment();
        for (name, _) in TEMPLATES {
            env.get_template(name).expect("parses");
        }
    }
}
