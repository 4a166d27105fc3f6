//! Everything that speaks HTTP: the only module that knows axum, cookies and JSON views.
//!
//! # Layout
//!
//! - this file: `/healthz`, `/readyz`, `/metrics`; the assembly of the served [`App`] (health and
//!   metrics, then the current configuration's [`Routes`], behind the server's bounds); the helpers
//!   the routes share (the blocking pool, the status of an [`ActionError`], the pages' security
//!   headers, the same-origin check of forms).
//! - [`server`]: the accept loop and its bounds on slow and many clients, panics answered 500.
//! - [`auth`]: who may read and act: the API token, the pages' sessions, the email links' tokens as
//!   credentials, the failure budgets, the client a request counts as.
//! - [`actions`]: the one service that acks, resolves and makes or ends maintenance windows, for
//!   every route alike, with one error ([`ActionError`]).
//! - [`api`]: the JSON API. [`pages`]: the status pages (HTML, forms). [`act`]: the
//!   `/act/{token}` pages behind the email links.
//!
//! Handlers of health and metrics only read shared state; they never block on a peer, so a hung
//! Prometheus or SMTP server cannot make the watchdog look dead to its own health check. These three
//! are always open, whatever `server.public_reads` says: orchestrators and Prometheus reach them
//! without credentials, and they show counts, never an incident's details.

pub mod act;
pub mod actions;
pub mod api;
pub mod auth;
pub mod pages;
pub mod server;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower::ServiceExt;
use url::Url;

use self::actions::Actions;
use self::auth::{Auth, AuthConfig, AuthShared};
use self::pages::FormMetrics;
use self::server::HttpMetrics;
use crate::clock::Clock;
use crate::config::{Config, ServerLimits};
use crate::doctor::BlindSpot;
use crate::email::token::LinkKeys;
use crate::engine::Symptom;
use crate::incident::ActionError;
use crate::metrics::{CONTENT_TYPE, Metrics};
use crate::pipeline::charts::ChartSource;
use crate::pipeline::pager::PagerHandle;
use crate::reload::Reloader;
use crate::runbook::Runbook;

/// What the handlers share.
#[derive(Debug)]
pub struct AppState {
    pub metrics: Metrics,
    /// Must stay writable for the daemon to be ready: the store and the `.eml` outbox live here.
    pub data_dir: PathBuf,
    /// This replica's role, which `/readyz` says (a standby is ready: it can take over).
    pub leadership: crate::ha::Leadership,
    /// A shared store (PostgreSQL), which must answer for the replica to be ready: without it no
    /// replica can lead, page or take over. `None` for the SQLite file (the data directory check
    /// covers it).
    pub shared_store: Option<Arc<crate::store::Store>>,
    /// The store finding (issue 17): while it says the store is down, `/readyz` is 503 and says
    /// since when, why and which pages wait for it.
    pub store_health: crate::store::StoreHealth,
}

/// `/healthz`, which the server keeps in front of its request bounds (`server::harden`): it
/// answers whenever the process serves at all.
pub fn liveness() -> Router {
    Router::new().route("/healthz", get(healthz))
}

/// `/readyz` and `/metrics`, ready to serve.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// The routes whose behaviour a configuration decides: the email links, the API (and
/// `/-/reload`) and the status pages. A reload builds new ones and swaps them in whole.
#[derive(Clone)]
pub struct Routes {
    router: Router,
}

/// What one configuration's [`Routes`] are made of.
pub struct RouteParts<'a> {
    pub config: &'a Config,
    pub runbook: &'a Arc<Runbook>,
    pub clock: &'a Clock,
    /// The pager's task (acks, resolves) and the store (reads, windows).
    pub pager: PagerHandle,
    /// The keys the email links are signed with: the `/act/` pages and the API verify them, and the
    /// pages' sessions are signed with the current one.
    pub link_keys: Arc<LinkKeys>,
    /// The blind spots the watch loop finds, for the status page.
    pub blind_spots: tokio::sync::watch::Receiver<Vec<BlindSpot>>,
    /// The firing symptoms of the watch loop's latest evaluation, for the pages' values and charts.
    pub symptoms: tokio::sync::watch::Receiver<Vec<Symptom>>,
    /// The symptom charts' source, shared with the pager (its cache too).
    pub charts: Arc<ChartSource>,
    /// What outlives a reload: the failure budgets and the sessions, the forms' refusal counters,
    /// the handle `POST /-/reload` asks through.
    pub auth: &'a Arc<AuthShared>,
    pub form_metrics: &'a FormMetrics,
    pub reloader: &'a Reloader,
    /// The alerts pushed to the webhook (the process's: a reload keeps them).
    pub alerts: &'a Arc<crate::alerts::Inbox>,
    /// This replica's role: a standby refuses every change (issue 17).
    pub leadership: &'a crate::ha::Leadership,
    /// The store finding, shown at the top of the status page's blind spots.
    pub store_health: &'a crate::store::StoreHealth,
}

/// The routes of one configuration: its credentials ([`Auth`]), one [`Actions`] service over the
/// pager shared by the three surfaces, and the links', the API's and the pages' routes.
pub fn routes(parts: RouteParts<'_>) -> Routes {
    let RouteParts {
        config,
        runbook,
        clock,
        pager,
        link_keys,
        blind_spots,
        symptoms,
        charts,
        auth,
        form_metrics,
        reloader,
        alerts,
        leadership,
        store_health,
    } = parts;
    let auth = Arc::new(Auth::new(
        AuthConfig::of(&config.server),
        link_keys.current(),
        Arc::clone(auth),
    ));
    let store = Arc::clone(&pager.store);
    let actions = Arc::new(
        Actions::new(
            Arc::new(pager),
            runbook.sections.iter().map(|s| s.id.clone()).collect(),
            config.maintenance.clone(),
        )
        .with_leadership(leadership.clone()),
    );
    let pages = pages::routes(pages::PagesConfig {
        actions: Arc::clone(&actions),
        store: Arc::clone(&store),
        runbook: Arc::clone(runbook),
        clock: clock.clone(),
        locale: config.runbook.locale,
        public_url: config.server.public_url.clone(),
        auth: Arc::clone(&auth),
        metrics: form_metrics.clone(),
        blind_spots,
        symptoms,
        charts,
        alerts: Arc::clone(alerts),
        store_health: store_health.clone(),
    });
    let api = api::routes(
        Arc::clone(&actions),
        store,
        Arc::clone(&auth),
        clock.clone(),
        reloader.clone(),
        Arc::clone(&link_keys),
        Arc::clone(alerts),
    );
    let act = act::routes(
        actions,
        link_keys,
        clock.clone(),
        config.server.public_url.clone(),
        config.runbook.locale,
        auth,
    );
    Routes {
        router: act.merge(api).merge(pages),
    }
}

/// Everything the server serves: built once, then [`server::serve`]d.
#[derive(Clone)]
pub struct App {
    router: Router,
}

/// Health and metrics, then the current configuration's routes, read from `routes` at each
/// request's arrival, all behind the server's request bounds (`server::harden`). Health and
/// metrics stay outside the swapped routes: a reload never interrupts them.
pub fn app(
    state: AppState,
    routes: tokio::sync::watch::Receiver<Routes>,
    limits: &ServerLimits,
    metrics: &HttpMetrics,
) -> App {
    let current = tower::service_fn(move |request: axum::extract::Request| {
        let routes = routes.borrow().router.clone();
        routes.oneshot(request)
    });
    let app = router(Arc::new(state)).fallback_service(current);
    App {
        router: server::harden(app, limits, metrics),
    }
}

#[cfg(test)]
impl App {
    /// One request through the whole app in-process, no socket (so no client address: every
    /// request counts as the same unknown client): the answer, its body read whole.
    pub(crate) async fn call(
        &self,
        request: ::http::Request<Vec<u8>>,
    ) -> ::http::Response<Vec<u8>> {
        let answer = self
            .router
            .clone()
            .oneshot(request.map(axum::body::Body::from))
            .await
            .unwrap_or_else(|never| match never {});
        let (parts, body) = answer.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX)
            .await
            .expect("an answer's body reads");
        ::http::Response::from_parts(parts, body.to_vec())
    }
}

/// Alive: the process runs and its HTTP server answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready: the configuration is loaded (it is, or the server would not exist) and the data directory
/// takes a write. Each check writes a file of its own (a random name, created new), so two checks at
/// once never remove each other's file and read as not ready. The answer names the replica's role
/// (`role: solo`, `role: leader`, `role: standby (leader: node-a)`); a standby is ready (200): it
/// serves the pages and can take over.
///
/// While the store finding says the store is down (its latest commit or lease round failed), the
/// answer is 503 at once, with the finding ([`store_finding_words`]; after the data directory's
/// reason when that fails too); else a shared store must still answer a read of the lease row.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let dir = state.data_dir.clone();
    let probe = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let path = dir.join(format!(".readyz-{:016x}", fastrand::u64(..)));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut file| file.write_all(b"ready\n"))
            .and_then(|()| std::fs::remove_file(&path))
    })
    .await;
    match probe {
        Ok(Ok(())) if !state.store_health.is_up() => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: {}role: {}\n",
                state
                    .store_health
                    .finding()
                    .map_or_else(String::new, |f| store_finding_words(&f)),
                state.leadership.describe()
            ),
        )
            .into_response(),
        Ok(Ok(())) => match shared_store_answers(&state).await {
            Ok(()) => (
                StatusCode::OK,
                format!("ready\nrole: {}\n", state.leadership.describe()),
            )
                .into_response(),
            Err(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\nrole: {}\n", state.leadership.describe()),
            )
                .into_response(),
        },
        // A full disk: the directory's reason first, then the store finding it caused, if any.
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: data directory {} is not writable: {e}\n{}",
                state.data_dir.display(),
                state
                    .store_health
                    .finding()
                    .map_or_else(String::new, |f| store_finding_words(&f)),
            ),
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")).into_response(),
    }
}

/// Most page keys `/readyz` lists; the rest are counted.
const MAX_KEYS_SHOWN: usize = 10;

/// The store finding as `/readyz` says it, one line each:
///
/// ```text
/// the store db:5432/watchdog does not answer since 2026-12-07 07:00:00 UTC: <error>
/// 12 pages wait for it: k1, …, k10 and 2 more
/// ```
///
/// (`no page waits for it` when none does). The store is named without credentials, and the error
/// is the store's own words, which never hold a password.
pub fn store_finding_words(f: &crate::store::StoreFinding) -> String {
    let n = f.unrecorded.len();
    let pages = match n {
        0 => "no page waits for it".to_owned(),
        _ => {
            let shown = f.unrecorded[..n.min(MAX_KEYS_SHOWN)].join(", ");
            let noun = if n == 1 { "page waits" } else { "pages wait" };
            match n.checked_sub(MAX_KEYS_SHOWN).filter(|more| *more > 0) {
                Some(more) => format!("{n} {noun} for it: {shown} and {more} more"),
                None => format!("{n} {noun} for it: {shown}"),
            }
        }
    };
    format!(
        "the store {} does not answer since {}: {}\n{pages}\n",
        f.store,
        crate::locale::human_time(f.since),
        crate::locale::one_line(&f.error, crate::locale::MAX_PEER),
    )
}

/// `Ok` when the store is not shared or answers a read of the lease row (bounded by the store's
/// own connect and statement timeouts); else why, naming the database but never its password.
async fn shared_store_answers(state: &AppState) -> Result<(), String> {
    let Some(store) = state.shared_store.clone() else {
        return Ok(());
    };
    let target = store.path().display().to_string();
    match tokio::task::spawn_blocking(move || store.lease_holder()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!(
            "the shared store {target} does not answer ({e}): no replica can page until it does"
        )),
        Err(e) => Err(format!("the shared store check did not finish: {e}")),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.encode(),
    )
        .into_response()
}

/// Runs `f` (a store read or write, a wait for the pager's task) on the blocking pool; a task that
/// could not finish is [`ActionError::Unavailable`].
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ActionError> + Send + 'static,
) -> Result<T, ActionError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ActionError::Unavailable(format!("store task: {e}"))))
}

/// The status code of an action that was not taken, for the API and the pages (the email links
/// answer in their own way): 400 bad input, 403 a link used beyond what it grants, 404 unknown, 409
/// the state forbids it, 503 worth trying again.
pub(crate) fn action_status(e: &ActionError) -> StatusCode {
    match e {
        ActionError::Invalid { .. } => StatusCode::BAD_REQUEST,
        ActionError::OtherLevel { .. } => StatusCode::FORBIDDEN,
        ActionError::UnknownIncident(_) | ActionError::UnknownWindow(_) => StatusCode::NOT_FOUND,
        ActionError::AlreadyResolved(_)
        | ActionError::Reopened { .. }
        | ActionError::ConfiguredWindow(_)
        | ActionError::WindowOver { .. } => StatusCode::CONFLICT,
        ActionError::Unavailable(_) | ActionError::Standby { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// The email module's template environment (its escaping, its strictness about undefined values)
/// with a surface's own page templates added. Named `*.html`, they are auto-escaped.
pub(crate) fn page_environment(
    templates: &[(&'static str, &'static str)],
) -> minijinja::Environment<'static> {
    let mut env = crate::email::environment();
    for (name, source) in templates {
        env.add_template(name, source)
            .unwrap_or_else(|e| panic!("the compiled-in page template {name} parses: {e:#}"));
    }
    env
}

/// What a server-rendered page is, for its security headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PageKind {
    /// A page with forms posting to the watchdog itself: reached through a secret link, or signed
    /// in (it carries the session's CSRF token). Never cached, so no token lingers in a cache.
    Action,
    /// A page without forms (an anonymous status page).
    Status,
}

/// A rendered template as an HTML response with the page's security headers; a template error is a
/// logged 500, never a panic.
pub(crate) fn html_page<S: serde::Serialize>(
    env: &minijinja::Environment<'static>,
    name: &'static str,
    view: &S,
    status: StatusCode,
    kind: PageKind,
) -> Response {
    match crate::email::render_template(env, name, view) {
        Ok(body) => with_headers(
            (status, body).into_response(),
            "text/html; charset=utf-8",
            kind,
        ),
        Err(e) => {
            tracing::error!(error = %e, template = name, "rendering a page");
            text_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error\n".to_owned(),
                kind,
            )
        }
    }
}

/// A plain-text answer with the page's security headers.
pub(crate) fn text_page(status: StatusCode, body: String, kind: PageKind) -> Response {
    with_headers(
        (status, body).into_response(),
        "text/plain; charset=utf-8",
        kind,
    )
}

/// Not framed (a framed button is a clickjacking target), not indexed, no `Referer` carrying a token
/// to wherever a link leads, no scripts; forms only to the page itself, and only on action pages.
fn with_headers(mut resp: Response, content_type: &'static str, kind: PageKind) -> Response {
    use axum::http::HeaderValue;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let (cache, csp) = match kind {
        PageKind::Action => (
            "no-store",
            "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
        PageKind::Status => (
            "no-cache",
            "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::HeaderName::from_static("x-robots-tag"),
        HeaderValue::from_static("noindex"),
    );
    resp
}

/// The origin of a cross-site request, if this is one, for the checks on form posts.
///
/// A browser's `Sec-Fetch-Site` decides when sent (pages cannot set it): `same-origin` is ours,
/// `none` (typed, bookmarked) is ours unless `Origin` names another, `cross-site` and `same-site` (a
/// sibling host is not us either) are not. It must decide: our pages send `Referrer-Policy:
/// no-referrer`, under which a browser posts our own forms with `Origin: null`. Without it (an older
/// browser), `Origin` when sent (`null` included), else the origin of `Referer`, must be
/// `public_url`'s. `None` when the request names no origin at all (a script such as curl) or ours.
pub(crate) fn cross_site(headers: &HeaderMap, public_url: &Url) -> Option<String> {
    let ours = public_url.origin();
    let named = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let foreign = || {
        named.clone().and_then(|text| match Url::parse(&text) {
            Ok(u) if u.origin() == ours => None,
            Ok(u) => Some(u.origin().ascii_serialization()),
            Err(_) => Some(text),
        })
    };
    let fetch_site = headers
        .get("sec-fetch-site")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase());
    match fetch_site.as_deref() {
        Some("same-origin") => None,
        Some("none") => foreign().filter(|o| o != "null"),
        Some(site @ ("cross-site" | "same-site")) => {
            Some(foreign().unwrap_or_else(|| format!("a {site} page")))
        }
        _ => foreign(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use tower::ServiceExt;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readiness_checks_at_once_all_answer_ready() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = router(Arc::new(AppState {
            metrics: Metrics::new(),
            data_dir: dir.path().to_path_buf(),
            leadership: crate::ha::Leadership::solo("node-a"),
            shared_store: None,
            store_health: crate::store::StoreHealth::new("data/watchdog.db", false),
        }));
        let checks = (0..64).map(|_| {
            let request = axum::http::Request::get("/readyz")
                .body(axum::body::Body::empty())
                .expect("request");
            app.clone().oneshot(request)
        });
        for answer in futures_util::future::join_all(checks).await {
            assert_eq!(answer.expect("infallible").status(), StatusCode::OK);
        }
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
        assert!(left.is_empty(), "every check removed its file: {left:?}");
    }

    /// `/readyz`'s words for the store finding: the store, since when in UTC, the error on one
    /// line, and the waiting pages' keys, ten at most and then how many more.
    #[test]
    fn the_store_finding_lists_ten_keys_then_counts_the_rest() {
        let mut f = crate::store::StoreFinding {
            store: "db:5432/watchdog".into(),
            shared: true,
            since: crate::clock::Timestamp::from_unix_millis(1_796_000_000_000),
            error: "the store's database is unavailable:\nrefused".into(),
            unrecorded: Vec::new(),
        };
        assert_eq!(
            store_finding_words(&f),
            "the store db:5432/watchdog does not answer since 2026-11-30 00:53:20 UTC: the \
             store's database is unavailable: refused\nno page waits for it\n"
        );
        f.unrecorded = vec!["a/L1/opened/0".into()];
        assert!(store_finding_words(&f).ends_with("\n1 page waits for it: a/L1/opened/0\n"));
        f.unrecorded = (0..12).map(|i| format!("k{i:02}")).collect();
        let words = store_finding_words(&f);
        let shown: Vec<String> = (0..10).map(|i| format!("k{i:02}")).collect();
        assert!(
            words.ends_with(&format!(
                "\n12 pages wait for it: {} and 2 more\n",
                shown.join(", ")
            )),
            "{words}"
        );
        f.unrecorded.truncate(10);
        assert!(
            store_finding_words(&f)
                .ends_with(&format!("\n10 pages wait for it: {}\n", shown.join(", ")))
        );
    }

    #[test]
    fn foreign_origins_are_named_and_ours_pass() {
        let ours = Url::parse("https://watch.example.com:8443/prefix/").expect("url");
        let mut h = HeaderMap::new();
        assert_eq!(cross_site(&h, &ours), None, "no origin named: allowed");
        h.insert(
            header::REFERER,
            HeaderValue::from_static("https://watch.example.com:8443/act/x"),
        );
        assert_eq!(cross_site(&h, &ours), None);
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert_eq!(
            cross_site(&h, &ours).as_deref(),
            Some("https://evil.example"),
            "Origin wins over Referer"
        );
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert_eq!(cross_site(&h, &ours).as_deref(), Some("null"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://watch.example.com:8443"),
        );
        assert!(cross_site(&h, &ours).is_some(), "scheme counts");
    }

    #[test]
    fn sec_fetch_site_names_cross_site_posts_without_an_origin() {
        let ours = Url::parse("http://127.0.0.1:9464/").expect("url");
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(
            cross_site(&h, &ours).is_some(),
            "null, and nothing else said"
        );
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert_eq!(
            cross_site(&h, &ours),
            None,
            "our own form under Referrer-Policy: no-referrer"
        );
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("none"));
        assert_eq!(cross_site(&h, &ours), None, "typed or bookmarked");
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert_eq!(cross_site(&h, &ours).as_deref(), Some("a cross-site page"));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-site"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:9999"),
        );
        assert_eq!(
            cross_site(&h, &ours).as_deref(),
            Some("http://127.0.0.1:9999")
        );
    }
}
