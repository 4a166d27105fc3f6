//! Fake SaaS peers, in-process: a statuspage.io status page and a Supabase project.
//!
//! Each is a real HTTP server (axum on `127.0.0.1`) speaking the real format, driven by a scenario
//! the test switches at any time: [`FakeStatusPage`] serves `/api/v2/status.json` for an indicator,
//! or a CDN's HTML 502 page, malformed JSON, a 20 MB body, or hangs; [`FakeSupabase`] serves
//! `/auth/v1/health` (GoTrue) and `/rest/v1/` (PostgREST) answering, failing or hanging each on its
//! own or redirecting them elsewhere, refuses requests without the project's key as Supabase does
//! (401), and records the `apikey` and `Authorization` headers it received.
//!
//! A request hanging under a `Hang` scenario is released when the scenario changes or the fake is
//! dropped. Both can start on a chosen port ([`FakeStatusPage::start_on`]) so a test can point a
//! probe at a closed port first (connection refused) and bring the peer up there afterwards.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// Size of the oversize bodies (the probes cap status pages at 1 MiB).
pub const HUGE: usize = 20 << 20;

/// The body of [`PageScenario::Huge`], made once: building 20 MB a request took longer than the
/// probe's timeout on a loaded machine, so the test saw a timeout instead of the size cap.
static HUGE_BODY: std::sync::LazyLock<Bytes> = std::sync::LazyLock::new(|| {
    let mut body = Vec::with_capacity(HUGE + 128);
    body.extend_from_slice(br#"{"status":{"indicator":"none","description":""#);
    body.resize(body.len() + HUGE, b'x');
    body.extend_from_slice(br#""}}"#);
    Bytes::from(body)
});

/// What the fake status page answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageScenario {
    /// `200` with statuspage.io v2 JSON for this indicator and description.
    Indicator {
        indicator: String,
        description: String,
    },
    /// `502` with an HTML error page, as a CDN in front of the page sends.
    Html502,
    /// `200` with an HTML page (a captive portal, a login wall).
    Html200,
    /// `200` with a truncated JSON document.
    Malformed,
    /// `200`, a 20 MB JSON body with its `Content-Length`.
    Huge,
    /// `200`, a 20 MB body streamed in 1 MiB chunks without a `Content-Length`.
    HugeChunked,
    /// Accepts the request and never answers.
    Hang,
}

impl PageScenario {
    /// The page's usual answer for `indicator` (statuspage.io's own descriptions).
    pub fn indicator(indicator: &str) -> Self {
        let description = match indicator {
            "none" => "All Systems Operational",
            "minor" => "Partially Degraded Service",
            "major" => "Partial System Outage",
            "critical" => "Major System Outage",
            "maintenance" => "Service Under Maintenance",
            _ => "Something Unusual",
        };
        Self::Indicator {
            indicator: indicator.to_owned(),
            description: description.to_owned(),
        }
    }
}

/// The body of a statuspage.io `/api/v2/status.json`.
pub fn status_json(indicator: &str, description: &str) -> String {
    serde_json::json!({
        "page": {
            "id": "y2j98763l56x",
            "name": "Fake Status",
            "url": "https://status.example.com",
            "time_zone": "Etc/UTC",
            "updated_at": "2026-11-24T10:00:00.000Z"
        },
        "status": { "indicator": indicator, "description": description }
    })
    .to_string()
}

#[derive(Clone)]
struct PageState {
    scenario: watch::Receiver<PageScenario>,
    hits: Arc<AtomicU64>,
}

/// A running fake status page; stops on drop.
pub struct FakeStatusPage {
    scenario: watch::Sender<PageScenario>,
    hits: Arc<AtomicU64>,
    served: Served,
}

impl FakeStatusPage {
    /// Starts on `127.0.0.1:<ephemeral>`.
    pub async fn start(scenario: PageScenario) -> Self {
        Self::start_on(0, scenario).await
    }

    /// Starts on `127.0.0.1:port` (0: ephemeral). Panics when the port is taken.
    pub async fn start_on(port: u16, scenario: PageScenario) -> Self {
        let (tx, rx) = watch::channel(scenario);
        let hits = Arc::new(AtomicU64::new(0));
        let app = Router::new()
            .route("/api/v2/status.json", get(status_page))
            .with_state(PageState {
                scenario: rx,
                hits: hits.clone(),
            });
        let served = Served::start(port, app).await;
        Self {
            scenario: tx,
            hits,
            served,
        }
    }

    /// `http://127.0.0.1:port/api/v2/status.json`.
    pub fn url(&self) -> url::Url {
        self.served.url("/api/v2/status.json")
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.served.addr().port()
    }

    /// Switches the scenario, effective for the next request (and releasing hanging ones).
    pub fn set(&self, scenario: PageScenario) {
        self.scenario.send_replace(scenario);
    }

    /// Requests received so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn status_page(State(state): State<PageState>) -> Response {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let Some(scenario) = wait_unless_hang(state.scenario, |s| *s == PageScenario::Hang).await
    else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let json = [(header::CONTENT_TYPE, "application/json; charset=utf-8")];
    let html = [(header::CONTENT_TYPE, "text/html")];
    match scenario {
        PageScenario::Indicator {
            indicator,
            description,
        } => (json, status_json(&indicator, &description)).into_response(),
        PageScenario::Html502 => (
            StatusCode::BAD_GATEWAY,
            html,
            "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>cloudflare</center></body></html>\n",
        )
            .into_response(),
        PageScenario::Html200 => (
            html,
            "<!DOCTYPE html><html><body><h1>Please sign in</h1></body></html>",
        )
            .into_response(),
        PageScenario::Malformed => (json, r#"{"page":{"id":"y2j98763l56x"},"status":{"indicator":"no"#).into_response(),
        PageScenario::Huge => (json, HUGE_BODY.clone()).into_response(),
        PageScenario::HugeChunked => {
            let chunk = Bytes::from(vec![b' '; 1 << 20]);
            let chunks = (0..HUGE >> 20).map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
            (json, Body::from_stream(futures_util::stream::iter(chunks))).into_response()
        }
        PageScenario::Hang => unreachable!("waited out above"),
    }
}

/// What one Supabase endpoint does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Answers 200 with the endpoint's usual JSON.
    Ok,
    /// Answers 200 with a 1 MiB JSON body (the OpenAPI description of a large schema).
    OkLarge,
    /// Answers this status with a JSON error body.
    Status(u16),
    /// Accepts the request and never answers.
    Hang,
    /// Answers `302 Found` to the same path on another server (which may record what it is sent).
    Redirect(SocketAddr),
}

/// One request the fake Supabase received, with its key headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    /// `/auth/v1/health` or `/rest/v1/`.
    pub path: String,
    /// The `apikey` header, if sent.
    pub apikey: Option<String>,
    /// The `Authorization` header, if sent.
    pub authorization: Option<String>,
}

#[derive(Clone)]
struct SupabaseState {
    key: Arc<str>,
    auth: watch::Receiver<Health>,
    rest: watch::Receiver<Health>,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
}

/// A running fake Supabase project; stops on drop.
pub struct FakeSupabase {
    auth: watch::Sender<Health>,
    rest: watch::Sender<Health>,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    served: Served,
}

impl FakeSupabase {
    /// Starts on `127.0.0.1:<ephemeral>`, accepting requests that carry `key` as `apikey`.
    pub async fn start(key: &str) -> Self {
        Self::start_on(0, key).await
    }

    /// Starts on `127.0.0.1:port` (0: ephemeral). Panics when the port is taken.
    pub async fn start_on(port: u16, key: &str) -> Self {
        let (auth_tx, auth_rx) = watch::channel(Health::Ok);
        let (rest_tx, rest_rx) = watch::channel(Health::Ok);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/auth/v1/health", get(auth_health))
            .route("/rest/v1/", get(rest_root))
            .with_state(SupabaseState {
                key: key.into(),
                auth: auth_rx,
                rest: rest_rx,
                seen: seen.clone(),
            });
        let served = Served::start(port, app).await;
        Self {
            auth: auth_tx,
            rest: rest_tx,
            seen,
            served,
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.served.addr()
    }

    /// The project URL, `http://127.0.0.1:port`.
    pub fn url(&self) -> url::Url {
        self.served.url("")
    }

    /// What `/auth/v1/health` does from now on.
    pub fn set_auth(&self, health: Health) {
        self.auth.send_replace(health);
    }

    /// What `/rest/v1/` does from now on.
    pub fn set_rest(&self, health: Health) {
        self.rest.send_replace(health);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }
}

async fn auth_health(State(state): State<SupabaseState>, headers: HeaderMap) -> Response {
    let body = r#"{"version":"v2.170.0","name":"GoTrue","description":"GoTrue is a user registration and authentication API"}"#;
    endpoint(
        &state,
        &headers,
        "/auth/v1/health",
        state.auth.clone(),
        body,
    )
    .await
}

async fn rest_root(State(state): State<SupabaseState>, headers: HeaderMap) -> Response {
    let body = r#"{"swagger":"2.0","info":{"description":"","title":"standard public schema","version":"12.2.3"},"host":"localhost:3000","basePath":"/","schemes":["http"],"paths":{"/":{"get":{"produces":["application/openapi+json","application/json"],"responses":{"200":{"description":"OK"}},"summary":"OpenAPI description (this document)","tags":["Introspection"]}}}}"#;
    endpoint(&state, &headers, "/rest/v1/", state.rest.clone(), body).await
}

async fn endpoint(
    state: &SupabaseState,
    headers: &HeaderMap,
    path: &str,
    health: watch::Receiver<Health>,
    ok_body: &'static str,
) -> Response {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let apikey = text("apikey");
    state.seen.lock().unwrap().push(SeenRequest {
        path: path.to_owned(),
        apikey: apikey.clone(),
        authorization: text("authorization"),
    });
    let json = [(header::CONTENT_TYPE, "application/json")];
    if apikey.as_deref() != Some(&*state.key) {
        // What Supabase's API gateway answers without a (valid) key.
        return (
            StatusCode::UNAUTHORIZED,
            json,
            r#"{"message":"Invalid API key","hint":"Double check your Supabase `anon` or `service_role` API key."}"#,
        )
            .into_response();
    }
    let Some(health) = wait_unless_hang(health, |h| *h == Health::Hang).await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    match health {
        Health::Ok => (json, ok_body).into_response(),
        Health::OkLarge => {
            let padding = " ".repeat(1 << 20);
            (json, format!("{{\"definitions\":{{}}{padding}}}")).into_response()
        }
        Health::Status(code) => {
            let status = StatusCode::from_u16(code).expect("a valid HTTP status");
            let body = format!(
                r#"{{"code":{code},"error_code":"unexpected_failure","msg":"{}"}}"#,
                status.canonical_reason().unwrap_or("error")
            );
            (status, json, body).into_response()
        }
        Health::Redirect(to) => (
            StatusCode::FOUND,
            [(header::LOCATION, format!("http://{to}{path}"))],
        )
            .into_response(),
        Health::Hang => unreachable!("waited out above"),
    }
}

/// Waits while `hang(current)` holds; the scenario that ended the wait, or `None` when the fake
/// was dropped meanwhile. Shared with the other fakes (`support::openai`).
pub async fn wait_unless_hang<T: Clone>(
    mut rx: watch::Receiver<T>,
    hang: impl Fn(&T) -> bool,
) -> Option<T> {
    loop {
        let current = rx.borrow_and_update().clone();
        if !hang(&current) {
            return Some(current);
        }
        rx.changed().await.ok()?;
    }
}

/// A fake SaaS peer's server: `app` served on `127.0.0.1` in a task, stopped when this is dropped
/// (every fake holds one, so dropping the fake closes its port). Shared by the status-page,
/// Supabase, OpenAI, Sentry and Coolify fakes.
pub struct Served {
    addr: SocketAddr,
    task: AbortHandle,
}

impl Served {
    /// Serves `app` on `127.0.0.1:port` (0: ephemeral). Panics when the port is taken.
    pub async fn start(port: u16, app: Router) -> Self {
        super::init();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("bind a fake SaaS peer on 127.0.0.1:{port}: {e}"));
        let addr = listener.local_addr().expect("local_addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            task: task.abort_handle(),
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:port{path}`.
    pub fn url(&self, path: &str) -> url::Url {
        format!("http://{}{path}", self.addr)
            .parse()
            .expect("a valid URL")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}
