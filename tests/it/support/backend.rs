//! A simulated Harven FastAPI backend: an in-process HTTP server whose `/metrics` looks like
//! what `prometheus-fastapi-instrumentator` exports, fed by deterministic synthetic traffic.
//!
//! ```text
//! # TYPE http_requests_total counter
//! http_requests_total{handler="/api/chat",method="POST",status="2xx"} 1234.0
//! # TYPE http_request_duration_seconds histogram
//! http_request_duration_seconds_bucket{handler="/api/chat",le="3.0",method="POST"} 1200.0
//! ```
//!
//! A background task "serves" a fixed batch of requests every [`TICK`] (100 ms), so Prometheus
//! `rate()` sees a steady flow. The shape of that traffic is the [`Scenario`], switchable at
//! any time with [`SimBackend::set_scenario`]; `/metrics` itself can be broken with
//! [`SimBackend::set_fault`]. Everything stops when the [`SimBackend`] is dropped.
//!
//! Traffic per tick (so per 100 ms) in the `Normal` scenario: 3 × `POST /api/chat`,
//! 2 × `POST /api/login`, 1 × `GET /health` (60 requests/s). Scenario effects:
//!
//! | scenario | effect |
//! |---|---|
//! | `Normal` | p95 well under 1 s; 1% of `/api/chat` answer 500 (5xx ratio ≈ 0.5%); 5% of `/api/login` answer 401 |
//! | `Slow` | 90% of `/api/chat` and `/api/login` take 3.6–4.4 s (p95 of each > 3 s); `/health` stays fast |
//! | `Errors` | 30% of every handler's requests answer 500 or 503 |
//! | `AuthFailures` | 60% of `/api/chat` and `/api/login` answer 401/403 (overall ≈ 50%); `/health` unaffected |
//! | `Surge` | 10× the `Normal` request count per tick, same latencies and statuses as `Normal` |

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// How often the synthetic traffic is generated.
pub const TICK: Duration = Duration::from_millis(100);

/// Histogram bucket upper bounds (seconds) of `http_request_duration_seconds`, `+Inf` implied.
/// Includes the runbook's 3 s latency threshold as a boundary.
pub const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 3.0, 5.0, 10.0,
];

/// Handlers the simulated backend serves: (handler label, method label, requests per tick in
/// the `Normal` scenario).
pub const HANDLERS: [(&str, &str, u64); 3] = [
    ("/api/chat", "POST", 3),
    ("/api/login", "POST", 2),
    ("/health", "GET", 1),
];

/// How the `status` label of `http_requests_total` is written, as the instrumentator does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusStyle {
    /// The instrumentator's default: `2xx`, `4xx`, `5xx`.
    Grouped,
    /// `should_group_status_codes=False`: exact codes such as `200`, `401`, `403`, `503`.
    Exact,
}

/// The shape of the synthetic traffic (see the module documentation for the numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Healthy backend: fast, almost no errors.
    Normal,
    /// Most API requests take about 4 s, so p95 per API handler is above 3 s.
    Slow,
    /// 30% of requests answer 5xx.
    Errors,
    /// 60% of API requests answer 401/403.
    AuthFailures,
    /// Ten times the normal request rate.
    Surge,
}

/// A fault of the `/metrics` endpoint itself (for tests of an unhealthy scrape target).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `/metrics` answers normally.
    None,
    /// `/metrics` answers HTTP 500 with a plain-text body.
    Http500,
    /// `/metrics` accepts the request and never answers (until the fault is changed or the
    /// backend is dropped).
    Hang,
}

/// Counters of one (handler, method) pair.
#[derive(Debug, Default, Clone)]
struct HandlerSeries {
    /// Cumulative bucket counts, one per [`BUCKETS`] entry (non-cumulative here, summed when
    /// rendering).
    bucket_hits: [u64; BUCKETS.len()],
    /// Observations above the last finite bucket.
    overflow: u64,
    count: u64,
    sum: f64,
    /// Requests by status label.
    by_status: BTreeMap<String, u64>,
    /// Per-handler request sequence number, drives the deterministic patterns.
    seq: u64,
}

#[derive(Debug)]
struct Shared {
    style: StatusStyle,
    scenario: Mutex<Scenario>,
    series: Mutex<BTreeMap<(&'static str, &'static str), HandlerSeries>>,
    ticks: AtomicU64,
    requests: AtomicU64,
    scrapes: AtomicU64,
}

#[derive(Clone)]
struct AppState {
    shared: Arc<Shared>,
    fault: watch::Receiver<Fault>,
}

/// Handle of a running simulated backend. Dropping it stops the HTTP server and the traffic.
pub struct SimBackend {
    addr: SocketAddr,
    shared: Arc<Shared>,
    fault: watch::Sender<Fault>,
    tasks: Vec<AbortHandle>,
}

impl SimBackend {
    /// Starts the backend on `127.0.0.1:<ephemeral>` with the given status-label style and
    /// initial scenario. Must be called inside a tokio runtime; the server and the traffic
    /// task live on that runtime.
    pub async fn start(style: StatusStyle, scenario: Scenario) -> SimBackend {
        super::init();
        let shared = Arc::new(Shared {
            style,
            scenario: Mutex::new(scenario),
            series: Mutex::new(BTreeMap::new()),
            ticks: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            scrapes: AtomicU64::new(0),
        });
        let (fault_tx, fault_rx) = watch::channel(Fault::None);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the simulated backend on 127.0.0.1:0");
        let addr = listener.local_addr().expect("backend local_addr");
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/health", get(|| async { "ok" }))
            .with_state(AppState {
                shared: shared.clone(),
                fault: fault_rx,
            });
        let server = tokio::spawn(async move {
            // Errors here only happen when the listener breaks; the test will notice through
            // failed scrapes.
            let _ = axum::serve(listener, app).await;
        });
        // Generate one batch right away so the very first scrape already has series.
        generate_tick(&shared);
        let traffic_shared = shared.clone();
        let traffic = tokio::spawn(async move {
            let mut interval = tokio::time::interval(TICK);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            interval.tick().await; // the first tick completes at once
            loop {
                interval.tick().await;
                generate_tick(&traffic_shared);
            }
        });
        SimBackend {
            addr,
            shared,
            fault: fault_tx,
            tasks: vec![server.abort_handle(), traffic.abort_handle()],
        }
    }

    /// The socket address the backend listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `host:port`, as a Prometheus static scrape target.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// `http://host:port` of the backend.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Full URL of the metrics endpoint.
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }

    /// The status-label style chosen at construction.
    pub fn status_style(&self) -> StatusStyle {
        self.shared.style
    }

    /// Switches the traffic to `scenario`, effective from the next tick.
    pub fn set_scenario(&self, scenario: Scenario) {
        *self.shared.scenario.lock().unwrap() = scenario;
    }

    /// The current scenario.
    pub fn scenario(&self) -> Scenario {
        *self.shared.scenario.lock().unwrap()
    }

    /// Breaks (or repairs, with `Fault::None`) the `/metrics` endpoint, effective at once;
    /// requests hanging under `Fault::Hang` are released when the fault changes.
    pub fn set_fault(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// How many traffic ticks have been generated so far.
    pub fn ticks(&self) -> u64 {
        self.shared.ticks.load(Ordering::SeqCst)
    }

    /// How many synthetic requests have been counted so far (all handlers).
    pub fn requests_total(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// How many times `/metrics` has been requested (whatever the fault).
    pub fn scrapes(&self) -> u64 {
        self.shared.scrapes.load(Ordering::SeqCst)
    }

    /// Generates one tick of traffic now, in addition to the background ticks (lets a test
    /// add traffic without waiting).
    pub fn tick_now(&self) {
        generate_tick(&self.shared);
    }

    /// The current `/metrics` body (Prometheus text format 0.0.4), without going over HTTP.
    pub fn render_metrics(&self) -> String {
        render(&self.shared)
    }
}

impl Drop for SimBackend {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // Dropping `self.fault` (the only sender) releases every request hanging in
        // `Fault::Hang`.
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    state.shared.scrapes.fetch_add(1, Ordering::SeqCst);
    let mut fault = state.fault.clone();
    loop {
        let current = *fault.borrow_and_update();
        match current {
            Fault::None => break,
            Fault::Http500 => {
                return (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n")
                    .into_response();
            }
            Fault::Hang => {
                if fault.changed().await.is_err() {
                    // The backend was dropped while we hung: give up the connection.
                    return StatusCode::SERVICE_UNAVAILABLE.into_response();
                }
            }
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&state.shared),
    )
        .into_response()
}

/// Outcome of one synthetic request.
struct Request {
    status: u16,
    seconds: f64,
}

/// Position of request `seq` in its cycle of 100, permuted (37 is coprime with 100) so that
/// every run of 100 consecutive requests of a handler holds each position exactly once and
/// the "bad" positions are spread out instead of clumped together.
fn slot(seq: u64) -> u64 {
    (seq % 100) * 37 % 100
}

/// A latency in `Normal` conditions: 90% ≤ 100 ms, 8% ≤ 500 ms, 2% ≈ 0.8 s.
fn normal_latency(seq: u64) -> f64 {
    let r = seq % 50;
    match r {
        0 => 0.8,
        1..=4 => 0.3 + (r as f64) * 0.04,
        _ => 0.015 + (r as f64) * 0.0015,
    }
}

fn simulate(handler: &str, seq: u64, scenario: Scenario) -> Request {
    let is_api = handler != "/health";
    // Status and latency follow fixed cycles of 100 requests per handler, so every run of
    // 100 requests has exactly the advertised proportions.
    let slot = slot(seq);
    let status = match scenario {
        Scenario::Errors => match slot {
            0..=14 => 500,
            15..=29 => 503,
            _ => 200,
        },
        Scenario::AuthFailures if is_api => match slot {
            0..=29 => 401,
            30..=59 => 403,
            _ => 200,
        },
        _ => match (handler, slot) {
            ("/api/chat", 0) => 500,
            ("/api/login", 0..=4) => 401,
            _ => 200,
        },
    };
    let seconds = match scenario {
        // Slots 10..100 (90%) take 3.6–4.4 s.
        Scenario::Slow if is_api && slot >= 10 => 3.6 + 0.8 * ((seq * 53 % 100) as f64) / 100.0,
        _ => normal_latency(seq),
    };
    Request { status, seconds }
}

fn status_label(style: StatusStyle, status: u16) -> String {
    match style {
        StatusStyle::Exact => status.to_string(),
        StatusStyle::Grouped => format!("{}xx", status / 100),
    }
}

fn generate_tick(shared: &Shared) {
    // Read the scenario while holding the series lock: a tick that lands after a snapshot
    // of the counters then always used the scenario current at that snapshot or later.
    let mut series = shared.series.lock().unwrap();
    let scenario = *shared.scenario.lock().unwrap();
    let multiplier = if scenario == Scenario::Surge { 10 } else { 1 };
    let mut generated = 0;
    for (handler, method, per_tick) in HANDLERS {
        let s = series.entry((handler, method)).or_default();
        for _ in 0..per_tick * multiplier {
            let req = simulate(handler, s.seq, scenario);
            s.seq += 1;
            match BUCKETS.iter().position(|&le| req.seconds <= le) {
                Some(i) => s.bucket_hits[i] += 1,
                None => s.overflow += 1,
            }
            s.count += 1;
            s.sum += req.seconds;
            *s.by_status
                .entry(status_label(shared.style, req.status))
                .or_default() += 1;
            generated += 1;
        }
    }
    shared.requests.fetch_add(generated, Ordering::SeqCst);
    shared.ticks.fetch_add(1, Ordering::SeqCst);
}

/// Formats a float like Python's `repr` (what prometheus_client writes): `1.0`, `0.25`.
fn py_float(v: f64) -> String {
    format!("{v:?}")
}

fn render(shared: &Shared) -> String {
    use std::fmt::Write as _;
    let series = shared.series.lock().unwrap().clone();
    let mut out = String::new();
    out.push_str(
        "# HELP http_requests_total Total number of requests by method, status and handler.\n",
    );
    out.push_str("# TYPE http_requests_total counter\n");
    for ((handler, method), s) in &series {
        for (status, n) in &s.by_status {
            let _ = writeln!(
                out,
                "http_requests_total{{handler=\"{handler}\",method=\"{method}\",status=\"{status}\"}} {}",
                py_float(*n as f64)
            );
        }
    }
    out.push_str("# HELP http_request_duration_seconds Latency with many buckets but no API specific labels. Made for more accurate percentile calculations.\n");
    out.push_str("# TYPE http_request_duration_seconds histogram\n");
    for ((handler, method), s) in &series {
        let mut cumulative = 0u64;
        for (le, hits) in BUCKETS.iter().zip(s.bucket_hits) {
            cumulative += hits;
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{handler=\"{handler}\",le=\"{}\",method=\"{method}\"}} {}",
                py_float(*le),
                py_float(cumulative as f64)
            );
        }
        let _ = writeln!(
            out,
            "http_request_duration_seconds_bucket{{handler=\"{handler}\",le=\"+Inf\",method=\"{method}\"}} {}",
            py_float((cumulative + s.overflow) as f64)
        );
        let _ = writeln!(
            out,
            "http_request_duration_seconds_count{{handler=\"{handler}\",method=\"{method}\"}} {}",
            py_float(s.count as f64)
        );
        let _ = writeln!(
            out,
            "http_request_duration_seconds_sum{{handler=\"{handler}\",method=\"{method}\"}} {}",
            py_float(s.sum)
        );
    }
    out
}
