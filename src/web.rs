//! The status pages (DESIGN.md §5): server-rendered HTML for a browser at 3 a.m., read-only.
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | open incidents (worst first), the last [`RECENT`] resolved ones, active maintenance windows |
//! | `GET /incidents/{id}` | one incident: acks, levels paged, symptoms, cause, timeline (404 page when unknown) |
//!
//! The pages read the store and the runbook and change nothing. Acknowledging and resolving stay
//! with the signed email links (`/act/{token}`) and the token-protected JSON API, which the incident
//! page explains; there is no unauthenticated form here. Templates are `*.html`, so minijinja escapes
//! every value (names and notes typed by people included). No script runs: the CSP forbids it.
//!
//! Nothing secret is among the inputs: incidents, the runbook, the maintenance windows and the public
//! URL (without any user-info).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use minijinja::Environment;
use serde::Serialize;
use url::Url;

use crate::clock::{Clock, Timestamp};
use crate::config::MaintenanceWindow;
use crate::email::{human_duration, human_time, public_link};
use crate::http::{PageKind, html_page, text_page};
use crate::incident::{Incident, IncidentState};
use crate::runbook::{Locale, Runbook, Severity};
use crate::store::Store;

/// Resolved incidents listed on `/`.
pub const RECENT: usize = 20;
/// Incidents read to find the recent resolved ones.
const SCAN: usize = 200;

/// The page templates, compiled in. `.html`: auto-escaped.
const TEMPLATES: &[(&str, &str)] = &[
    ("web_layout.html", include_str!("web/templates/layout.html")),
    ("web_index.html", include_str!("web/templates/index.html")),
    (
        "web_incident.html",
        include_str!("web/templates/incident.html"),
    ),
    (
        "web_not_found.html",
        include_str!("web/templates/not_found.html"),
    ),
];

struct WebState {
    store: Arc<Store>,
    runbook: Arc<Runbook>,
    clock: Clock,
    locale: Locale,
    public_url: Url,
    /// The windows of the configuration (those created at run time are in the store).
    windows: Vec<MaintenanceWindow>,
    /// Whether the API's mutating routes are open (a token is configured); the token itself never
    /// comes here.
    api_open: bool,
    env: Environment<'static>,
}

/// Everything the pages are made of.
pub struct WebConfig {
    pub store: Arc<Store>,
    pub runbook: Arc<Runbook>,
    pub clock: Clock,
    pub locale: Locale,
    pub public_url: Url,
    pub windows: Vec<MaintenanceWindow>,
    pub api_open: bool,
}

/// The `/` and `/incidents/{id}` routes.
pub fn routes(config: WebConfig) -> Router {
    let mut env = crate::email::environment();
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .expect("the status page templates parse");
    }
    let state = Arc::new(WebState {
        store: config.store,
        runbook: config.runbook,
        clock: config.clock,
        locale: config.locale,
        public_url: config.public_url,
        windows: config.windows,
        api_open: config.api_open,
        env,
    });
    Router::new()
        .route("/", get(index))
        .route("/incidents/{id}", get(incident_page))
        .with_state(state)
}

// -------------------------------------------------------------------------------------------------
// Views
// -------------------------------------------------------------------------------------------------

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
    ack_curl: String,
    resolve_curl: String,
}

#[derive(Debug, Serialize)]
struct WindowRow {
    sections: String,
    starts: String,
    ends: String,
    reason: String,
    by: Option<String>,
}

#[derive(Serialize)]
struct IndexPage<'a> {
    t: &'a BTreeMap<&'static str, &'static str>,
    now: String,
    open: Vec<Row>,
    resolved: Vec<Row>,
    windows: Vec<WindowRow>,
}

#[derive(Serialize)]
struct IncidentPage<'a> {
    t: &'a BTreeMap<&'static str, &'static str>,
    now: String,
    incident: Detail,
    api_open: bool,
}

#[derive(Serialize)]
struct NotFoundPage<'a> {
    t: &'a BTreeMap<&'static str, &'static str>,
    now: String,
    id: String,
}

impl WebState {
    fn section_title(&self, id: &str) -> String {
        self.runbook
            .sections
            .iter()
            .find(|s| s.id == id)
            .map_or_else(|| id.to_owned(), |s| s.title.get(self.locale).to_owned())
    }

    /// The cause's title in the page's language, with its ID; `unknown` said so.
    fn cause(&self, id: &str, t: &BTreeMap<&'static str, &'static str>) -> String {
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

    fn row(&self, i: &Incident, now: Timestamp, t: &BTreeMap<&'static str, &'static str>) -> Row {
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

    fn detail(
        &self,
        i: &Incident,
        now: Timestamp,
        t: &BTreeMap<&'static str, &'static str>,
    ) -> Detail {
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
            ack_curl: api("ack", r#"{"by": "NAME"}"#),
            resolve_curl: api("resolve", r#"{"by": "NAME", "note": "..."}"#),
        }
    }
}

// -------------------------------------------------------------------------------------------------
// Handlers
// -------------------------------------------------------------------------------------------------

/// Runs a store read on the blocking pool; `Err` is the 503 page.
async fn read<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, Response> {
    let failed = |e: String| {
        tracing::warn!(error = %e, "status page: the store could not be read");
        text_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "The incident store could not be read now; try again in a moment.\n".to_owned(),
            PageKind::Status,
        )
    };
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(failed(e.to_string())),
        Err(e) => Err(failed(e.to_string())),
    }
}

/// `GET /`.
async fn index(State(st): State<Arc<WebState>>) -> Response {
    let now = st.clock.now();
    let store = Arc::clone(&st.store);
    let loaded = read(move || {
        let latest = store.latest_per_section()?;
        let recent = store.recent_incidents(SCAN)?;
        let windows = store.windows()?;
        Ok((latest, recent, windows))
    })
    .await;
    let (latest, recent, stored) = match loaded {
        Ok(v) => v,
        Err(resp) => return resp,
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
    let active = |w: &MaintenanceWindow| w.starts <= now && now < w.ends;
    let window_row = |w: &MaintenanceWindow, by: Option<String>| WindowRow {
        sections: if w.sections.is_empty() {
            t["all_sections"].to_owned()
        } else {
            w.sections.join(", ")
        },
        starts: human_time(w.starts),
        ends: human_time(w.ends),
        reason: w.reason.clone(),
        by,
    };
    let windows = st
        .windows
        .iter()
        .filter(|w| active(w))
        .map(|w| window_row(w, None))
        .chain(
            stored
                .iter()
                .filter(|s| active(&s.window))
                .map(|s| window_row(&s.window, Some(s.created_by.clone()))),
        )
        .collect();
    let page = IndexPage {
        t: &t,
        now: human_time(now),
        open: open.into_iter().map(|i| st.row(i, now, &t)).collect(),
        resolved,
        windows,
    };
    html_page(
        &st.env,
        "web_index.html",
        &page,
        StatusCode::OK,
        PageKind::Status,
    )
}

/// `GET /incidents/{id}`.
async fn incident_page(State(st): State<Arc<WebState>>, Path(id): Path<String>) -> Response {
    let now = st.clock.now();
    let store = Arc::clone(&st.store);
    let key = id.clone();
    let incident = match read(move || store.incident(&key)).await {
        Ok(i) => i,
        Err(resp) => return resp,
    };
    let t = labels(st.locale);
    match incident {
        Some(i) => {
            let page = IncidentPage {
                t: &t,
                now: human_time(now),
                incident: st.detail(&i, now, &t),
                api_open: st.api_open,
            };
            html_page(
                &st.env,
                "web_incident.html",
                &page,
                StatusCode::OK,
                PageKind::Status,
            )
        }
        None => {
            let page = NotFoundPage {
                t: &t,
                now: human_time(now),
                id,
            };
            html_page(
                &st.env,
                "web_not_found.html",
                &page,
                StatusCode::NOT_FOUND,
                PageKind::Status,
            )
        }
    }
}

// -------------------------------------------------------------------------------------------------
// Responses
// -------------------------------------------------------------------------------------------------

fn labels(locale: Locale) -> BTreeMap<&'static str, &'static str> {
    let table: &[(&str, &str)] = match locale {
        Locale::PtBr => &[
            ("lang", "pt-BR"),
            ("title", "Status do watchdog"),
            ("updated", "Atualizado em"),
            ("open_incidents", "Incidentes abertos"),
            ("no_open", "Nenhum incidente aberto."),
            ("recent", "Resolvidos recentemente"),
            ("no_recent", "Nenhum incidente resolvido ainda."),
            ("windows", "Janelas de manutenção ativas"),
            ("no_windows", "Nenhuma janela de manutenção ativa."),
            ("all_sections", "todas as seções"),
            ("incident", "Incidente"),
            ("section", "Seção"),
            ("severity", "Severidade"),
            ("state", "Estado"),
            ("state_open", "aberto"),
            ("state_resolved", "resolvido"),
            ("level", "Nível"),
            ("age", "Há"),
            ("duration", "Duração"),
            ("cause", "Causa provável"),
            ("cause_unknown", "desconhecida"),
            ("acked", "reconhecido"),
            ("opened_at", "Aberto em"),
            ("resolved_at", "Resolvido em"),
            ("critical_since", "Crítico desde"),
            ("reopened", "Reaberto"),
            ("acks", "Reconhecimentos"),
            ("no_acks", "Ninguém reconheceu ainda."),
            ("paged", "Níveis acionados"),
            ("no_pages", "Nenhum nível acionado."),
            ("symptoms", "Sintomas"),
            ("resolve_note", "Nota da resolução"),
            ("timeline", "Linha do tempo"),
            ("at", "Quando"),
            ("kind", "Evento"),
            ("what", "O quê"),
            ("by", "Por"),
            ("reason", "Motivo"),
            ("starts", "Início"),
            ("ends", "Fim"),
            ("act", "Reconhecer ou resolver"),
            (
                "act_email",
                "Use os links \"Reconhecer\" e \"Resolver\" do email do incidente: eles pedem confirmação antes de agir.",
            ),
            (
                "act_api",
                "Ou a API, com o token do watchdog (server.api_token_file):",
            ),
            (
                "act_api_closed",
                "A API de alterações está fechada: nenhum token está configurado (server.api_token_file).",
            ),
            ("back", "Todos os incidentes"),
            ("not_found", "Incidente não encontrado"),
            ("not_found_text", "Não há incidente com o ID"),
        ],
        Locale::En => &[
            ("lang", "en"),
            ("title", "Watchdog status"),
            ("updated", "Updated at"),
            ("open_incidents", "Open incidents"),
            ("no_open", "No open incident."),
            ("recent", "Recently resolved"),
            ("no_recent", "No resolved incident yet."),
            ("windows", "Active maintenance windows"),
            ("no_windows", "No active maintenance window."),
            ("all_sections", "every section"),
            ("incident", "Incident"),
            ("section", "Section"),
            ("severity", "Severity"),
            ("state", "State"),
            ("state_open", "open"),
            ("state_resolved", "resolved"),
            ("level", "Level"),
            ("age", "Age"),
            ("duration", "Duration"),
            ("cause", "Probable cause"),
            ("cause_unknown", "unknown"),
            ("acked", "acknowledged"),
            ("opened_at", "Opened at"),
            ("resolved_at", "Resolved at"),
            ("critical_since", "Critical since"),
            ("reopened", "Reopened"),
            ("acks", "Acknowledgements"),
            ("no_acks", "Nobody has acknowledged yet."),
            ("paged", "Levels paged"),
            ("no_pages", "No level paged."),
            ("symptoms", "Symptoms"),
            ("resolve_note", "Resolve note"),
            ("timeline", "Timeline"),
            ("at", "When"),
            ("kind", "Event"),
            ("what", "What"),
            ("by", "By"),
            ("reason", "Reason"),
            ("starts", "Starts"),
            ("ends", "Ends"),
            ("act", "Acknowledge or resolve"),
            (
                "act_email",
                "Use the \"Acknowledge\" and \"Resolve\" links of the incident email: they ask for confirmation before acting.",
            ),
            (
                "act_api",
                "Or the API, with the watchdog's token (server.api_token_file):",
            ),
            (
                "act_api_closed",
                "The mutating API is closed: no token is configured (server.api_token_file).",
            ),
            ("back", "All incidents"),
            ("not_found", "Incident not found"),
            ("not_found_text", "There is no incident with the ID"),
        ],
    };
    table.iter().copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_locales_have_the_same_labels() {
        let pt: Vec<_> = labels(Locale::PtBr).into_keys().collect();
        let en: Vec<_> = labels(Locale::En).into_keys().collect();
        assert_eq!(pt, en);
    }
}
