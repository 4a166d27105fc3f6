//! The status pages: server-rendered HTML for a browser at 3 a.m., with forms to act.
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | open incidents (worst first, each with its top symptom's value and chart thumbnail), the last [`RECENT`] resolved ones, active maintenance windows |
//! | `GET /incidents/{id}` | one incident: its firing symptoms' charts, diagnosis table, acks, levels paged, symptoms, timeline (404 page when unknown); signed in and open: the ack and resolve forms |
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
//! The symptom charts (`charts.rs`, issue 15) are inline SVG drawn on the server (`crate::chart`:
//! no script, no external reference, every text escaped), so the CSP (`default-src 'none'`, styles
//! inline only) needs nothing more: an inline `<svg>` is markup, fetches nothing and runs nothing.
//!
//! Nothing secret reaches a page: incidents, the runbook, the maintenance windows, the public URL and
//! the session's CSRF token (which is worthless without its cookie).

mod charts;
mod forms;
mod handlers;
mod labels;
mod views;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use minijinja::Environment;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use url::Url;

use super::actions::Actions;
use crate::clock::Clock;
use crate::doctor::BlindSpot;
use crate::engine::Symptom;
use crate::http::auth::Auth;
use crate::pipeline::charts::ChartSource;
use crate::runbook::{Locale, Runbook};
use crate::store::Store;

use handlers::{
    ack, create_window, end_window, incident_page, index, maintenance_page, resolve, signin,
    signin_page, signout,
};
use labels::labels;

/// A page's labels: key → text in the page's language.
type Labels = BTreeMap<&'static str, &'static str>;

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
    /// The firing symptoms of the watch loop's latest evaluation: the values and charts shown.
    symptoms: tokio::sync::watch::Receiver<Vec<Symptom>>,
    /// The symptom charts' source (bounded time, cached).
    charts: Arc<ChartSource>,
    /// The alerts pushed to the webhook, listed on `/` ("Alerts received").
    alerts: Arc<crate::alerts::Inbox>,
    /// The store finding, first of the blind spots on `/` while the store is down.
    store_health: crate::store::StoreHealth,
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
    /// The firing symptoms the watch loop last evaluated.
    pub symptoms: tokio::sync::watch::Receiver<Vec<Symptom>>,
    /// Where the symptom charts come from.
    pub charts: Arc<ChartSource>,
    /// The alerts pushed to the webhook (the process's: a reload keeps them).
    pub alerts: Arc<crate::alerts::Inbox>,
    /// The store finding (the process's: the pager and the lease task report to it).
    pub store_health: crate::store::StoreHealth,
}

/// The email module's template environment with these pages' templates.
fn environment() -> Environment<'static> {
    super::page_environment(TEMPLATES)
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
        symptoms: config.symptoms,
        charts: config.charts,
        alerts: config.alerts,
        store_health: config.store_health,
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
