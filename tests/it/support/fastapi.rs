//! The real Harven-like backend for tests: a FastAPI app (`tests/fixtures/backend/app.py`)
//! instrumented with the real `prometheus-fastapi-instrumentator`, served by uvicorn on an
//! ephemeral loopback port, plus [`Load`], a bounded generator of real HTTP requests to it.
//!
//! The app runs in the virtual environment `scripts/test.sh` creates (`<target dir>/backend-venv`,
//! from `tests/fixtures/backend/requirements.txt`); its interpreter is named by
//! [`PYTHON_ENV`] (`HARVEN_TEST_BACKEND_PYTHON`, which the script exports), else found at
//! `$CARGO_TARGET_DIR/backend-venv/bin/python` or `target/backend-venv/bin/python`. A missing venv
//! fails the test, naming the script.
//!
//! Two instrumentation [`Profile`]s: the library's defaults exactly
//! (`Instrumentator().instrument(app).expose(app)`), and a tuned one (latency buckets with 3 s and
//! finite buckets above it, exact status codes, `/metrics` not counted). What each exports is
//! asserted in `tests/it/fastapi.rs`; in short:
//!
//! | series | default | tuned |
//! |---|---|---|
//! | `http_requests_total{handler,method,status}` | `status` `2xx`, `4xx`, `5xx` | `200`, `401`, `500`… |
//! | `http_request_duration_seconds{handler,method}` buckets | [`DEFAULT_BUCKETS`] | [`TUNED_BUCKETS`] |
//! | `http_request_duration_highr_seconds` (no labels) buckets | [`HIGHR_BUCKETS`] | [`HIGHR_BUCKETS`] |
//! | handler `/metrics` (Prometheus's own scrapes) | counted | not counted |
//!
//! A path no route matches is counted under the handler `none` (both profiles). The app's
//! behaviour is switched with [`FastApiBackend::set_scenario`] through its control endpoint
//! `/_control`, which is served beside the instrumented app and never counted.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::process::{PeerProcess, start_on_free_port};

/// The environment variable naming the virtual environment's Python (exported by
/// `scripts/test.sh`).
pub const PYTHON_ENV: &str = "HARVEN_TEST_BACKEND_PYTHON";

/// The app, run by the venv's interpreter.
pub const APP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/backend/app.py");

/// The library's default buckets of `http_request_duration_seconds` (`+Inf` added by it).
pub const DEFAULT_BUCKETS: [f64; 3] = [0.1, 0.5, 1.0];

/// The tuned profile's buckets of `http_request_duration_seconds` (`+Inf` added by the library).
pub const TUNED_BUCKETS: [f64; 8] = [0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0];

/// The library's default buckets of `http_request_duration_highr_seconds`, in both profiles
/// (`+Inf` added by it).
pub const HIGHR_BUCKETS: [f64; 21] = [
    0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0,
    7.5, 10.0, 30.0, 60.0,
];

/// How the app is instrumented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// `Instrumentator().instrument(app).expose(app)`: the library's defaults, exactly.
    Default,
    /// `Instrumentator(should_group_status_codes=False, excluded_handlers=["/metrics"])
    /// .instrument(app, latency_lowr_buckets=TUNED_BUCKETS).expose(app)`.
    Tuned,
}

impl Profile {
    /// The name `app.py --profile` takes.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Default => "default",
            Profile::Tuned => "tuned",
        }
    }

    /// The bucket bounds of `http_request_duration_seconds` in this profile (without `+Inf`).
    pub fn buckets(self) -> &'static [f64] {
        match self {
            Profile::Default => &DEFAULT_BUCKETS,
            Profile::Tuned => &TUNED_BUCKETS,
        }
    }

    /// The `status` label the instrumentator writes for `code` in this profile (`5xx` or `503`).
    pub fn status_label(self, code: u16) -> String {
        match self {
            Profile::Default => format!("{}xx", code / 100),
            Profile::Tuned => code.to_string(),
        }
    }
}

/// The app's handlers (each its own route, so its own `handler` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Handler {
    /// `POST /api/chat`, an AI chat answer.
    Chat,
    /// `POST /api/auth/login`.
    Login,
    /// `GET /api/courses`.
    Courses,
    /// `GET /health`.
    Health,
}

impl Handler {
    /// Every handler.
    pub const ALL: [Handler; 4] = [
        Handler::Chat,
        Handler::Login,
        Handler::Courses,
        Handler::Health,
    ];
    /// The three `/api` handlers (the default targets of the `errors` scenario).
    pub const API: [Handler; 3] = [Handler::Chat, Handler::Login, Handler::Courses];

    /// The route, which is also the `handler` label.
    pub fn path(self) -> &'static str {
        match self {
            Handler::Chat => "/api/chat",
            Handler::Login => "/api/auth/login",
            Handler::Courses => "/api/courses",
            Handler::Health => "/health",
        }
    }

    /// The HTTP method, which is also the `method` label.
    pub fn method(self) -> &'static str {
        match self {
            Handler::Chat | Handler::Login => "POST",
            Handler::Courses | Handler::Health => "GET",
        }
    }

    /// The JSON body a client sends (the POST handlers validate one).
    fn body(self) -> Option<Value> {
        match self {
            Handler::Chat => Some(json!({"message": "Explique a regra da cadeia"})),
            Handler::Login => {
                Some(json!({"email": "aluno@harven.ai", "password": "senha-de-teste"}))
            }
            Handler::Courses | Handler::Health => None,
        }
    }
}

fn paths(handlers: &[Handler]) -> Vec<&'static str> {
    handlers.iter().map(|h| h.path()).collect()
}

/// The app's behaviour (see the docstring of `app.py` for the control API it is sent through).
#[derive(Debug, Clone, PartialEq)]
pub enum Scenario {
    /// Healthy: chat 0.1–0.4 s, login 20–80 ms, courses 5–30 ms, health at once; no errors.
    Normal,
    /// `handlers` answer after a delay drawn uniformly from `delay_s` (seconds, min and max).
    Slow {
        handlers: Vec<Handler>,
        delay_s: (f64, f64),
    },
    /// Exactly `ratio` of each of `handlers`' requests answer `status` (500–599).
    Errors {
        handlers: Vec<Handler>,
        ratio: f64,
        status: u16,
    },
    /// Exactly `ratio` of each of `handlers`' requests answer `status` (401–403).
    Auth {
        handlers: Vec<Handler>,
        ratio: f64,
        status: u16,
    },
    /// Every request also waits `per_inflight_s` per request in flight (queueing under load).
    Surge { per_inflight_s: f64 },
}

impl Scenario {
    /// Chat answers after `min_s`–`max_s` seconds.
    pub fn slow_chat(min_s: f64, max_s: f64) -> Scenario {
        Scenario::Slow {
            handlers: vec![Handler::Chat],
            delay_s: (min_s, max_s),
        }
    }

    /// `ratio` of every `/api` handler's requests answer 500.
    pub fn errors(ratio: f64) -> Scenario {
        Scenario::Errors {
            handlers: Handler::API.to_vec(),
            ratio,
            status: 500,
        }
    }

    /// `ratio` of the logins answer 401.
    pub fn login_401(ratio: f64) -> Scenario {
        Scenario::Auth {
            handlers: vec![Handler::Login],
            ratio,
            status: 401,
        }
    }

    /// The body of `POST /_control`.
    pub fn to_json(&self) -> Value {
        match self {
            Scenario::Normal => json!({"scenario": "normal"}),
            Scenario::Slow { handlers, delay_s } => json!({
                "scenario": "slow",
                "handlers": paths(handlers),
                "delay_s": [delay_s.0, delay_s.1],
            }),
            Scenario::Errors {
                handlers,
                ratio,
                status,
            } => json!({
                "scenario": "errors",
                "handlers": paths(handlers),
                "error_ratio": ratio,
                "error_status": status,
            }),
            Scenario::Auth {
                handlers,
                ratio,
                status,
            } => json!({
                "scenario": "auth",
                "handlers": paths(handlers),
                "unauthorized_ratio": ratio,
                "unauthorized_status": status,
            }),
            Scenario::Surge { per_inflight_s } => {
                json!({"scenario": "surge", "per_inflight_s": per_inflight_s})
            }
        }
    }
}

/// The Python of the backend's virtual environment: [`PYTHON_ENV`] when set, else
/// `backend-venv/bin/python` under `$CARGO_TARGET_DIR` (relative to the crate) or `target/`.
pub fn backend_python() -> PathBuf {
    if let Some(python) = std::env::var_os(PYTHON_ENV) {
        return PathBuf::from(python);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| manifest.join(dir))
        .unwrap_or_else(|| manifest.join("target"));
    target.join("backend-venv").join("bin").join("python")
}

/// A running backend (uvicorn serving `app.py`); killed (and its temp dir removed) on drop.
pub struct FastApiBackend {
    /// Declared before `dir`, so the process is killed before its directory goes.
    process: PeerProcess,
    port: u16,
    profile: Profile,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl FastApiBackend {
    /// Starts the app in `profile` on a free port of 127.0.0.1 and waits until its control
    /// endpoint answers (so no request of the start-up is counted). Panics, saying to run
    /// `scripts/test.sh`, when the virtual environment is missing, and with the app's log when it
    /// does not start.
    pub async fn start(profile: Profile) -> FastApiBackend {
        super::init();
        let python = backend_python();
        if !python.is_file() {
            panic!(
                "the FastAPI test backend's Python {} does not exist: run `bash scripts/test.sh`, \
                 which creates the virtual environment (pip install -r \
                 tests/fixtures/backend/requirements.txt) and exports {PYTHON_ENV}",
                python.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("hwtest-fastapi-")
            .tempdir()
            .expect("create a temp dir for the FastAPI backend");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("build a reqwest client");
        let mut backend = FastApiBackend {
            process: PeerProcess::new("uvicorn (FastAPI backend)", dir.path().join("app.log")),
            port: 0,
            profile,
            dir,
            http,
        };
        start_on_free_port(
            "the FastAPI backend",
            Ipv4Addr::LOCALHOST.into(),
            async |port| {
                backend.port = port;
                backend.spawn_and_wait(&python).await.map_err(|e| {
                    format!(
                        "{e}\n(with {}; `bash scripts/test.sh` rebuilds the venv when \
                     requirements.txt changes)",
                        python.display()
                    )
                })
            },
        )
        .await;
        backend
    }

    async fn spawn_and_wait(&mut self, python: &Path) -> Result<(), String> {
        let mut command = Command::new(python);
        command
            .arg(APP)
            .args(["--profile", self.profile.name()])
            .args(["--host", "127.0.0.1"])
            .args(["--port", &self.port.to_string()])
            .current_dir(self.dir.path())
            // No __pycache__ in the repository; output unbuffered, so the log is current.
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            // The instrumentator switches to multiprocess mode when this is set.
            .env_remove("PROMETHEUS_MULTIPROC_DIR")
            .env_remove("prometheus_multiproc_dir")
            .env_remove("BACKEND_PROFILE");
        let control = self.control_url();
        let what = format!("a 200 from {control}");
        let http = &self.http;
        self.process
            .spawn_and_wait(
                &mut command,
                "python3-venv",
                &what,
                Duration::from_millis(100),
                || {
                    let request = http.get(&control).send();
                    async move { request.await.is_ok_and(|r| r.status().is_success()) }
                },
            )
            .await
    }

    /// The instrumentation profile.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `host:port`, for a Prometheus scrape config.
    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The URL of `/metrics`.
    pub fn metrics_url(&self) -> String {
        format!("{}/metrics", self.url())
    }

    fn control_url(&self) -> String {
        format!("{}/_control", self.url())
    }

    /// Switches the app's behaviour; returns the effective behaviour the app answers with.
    /// Panics when the app refuses it.
    pub async fn set_scenario(&self, scenario: &Scenario) -> Value {
        self.control(scenario.to_json())
            .await
            .unwrap_or_else(|e| panic!("the backend refused {scenario:?}: {e}"))
    }

    /// Posts `body` to the control endpoint as it is: the app's answer, or `Err` with its status
    /// and body (422 for an unknown scenario, parameter or handler).
    pub async fn control(&self, body: Value) -> Result<Value, String> {
        let response = self
            .http
            .post(self.control_url())
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("POST /_control: {e}\nlog tail:\n{}", self.log_tail()))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status}: {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
    }

    /// The app's state: profile, scenario and its parameters, requests in flight and the requests
    /// answered so far (`served` → handler → status → count; counted by the app itself, whatever
    /// the instrumentation).
    pub async fn state(&self) -> Value {
        let response = self
            .http
            .get(self.control_url())
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET /_control: {e}\nlog tail:\n{}", self.log_tail()));
        response.json().await.expect("GET /_control answers JSON")
    }

    /// The exposition text of `/metrics`. In the default profile this request is itself counted
    /// (under the handler `/metrics`, once its answer is sent).
    pub async fn metrics_text(&self) -> String {
        let response = self
            .http
            .get(self.metrics_url())
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET /metrics: {e}\nlog tail:\n{}", self.log_tail()));
        assert!(
            response.status().is_success(),
            "GET /metrics answered {}",
            response.status()
        );
        response.text().await.expect("the /metrics body")
    }

    /// The parsed samples of `/metrics` (see [`metrics_text`](Self::metrics_text)).
    pub async fn metrics(&self) -> Exposition {
        Exposition::parse(&self.metrics_text().await)
    }

    /// Whether uvicorn is running.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// The last 4 KiB of the app's log (uvicorn's and the app's lines, on stderr).
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}

/// One sample line of a Prometheus text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpositionSample {
    /// The series name (`http_requests_total`, `…_bucket`, `…_count`).
    pub name: String,
    /// The labels, as written.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// The samples of a text exposition (format 0.0.4, as `prometheus_client` writes it).
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    pub samples: Vec<ExpositionSample>,
}

impl Exposition {
    /// Parses the sample lines of `text` (comments skipped). Panics on a line it cannot read.
    pub fn parse(text: &str) -> Exposition {
        let samples = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| {
                parse_sample(line).unwrap_or_else(|| panic!("unreadable exposition line {line:?}"))
            })
            .collect();
        Exposition { samples }
    }

    /// The samples named `name` whose labels include every `(label, value)` of `labels`.
    pub fn select<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a ExpositionSample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The sum of the samples [`select`](Self::select) finds (0 when none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.select(name, labels).map(|s| s.value).sum()
    }

    /// The distinct values of `label` over the samples named `name`.
    pub fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        let mut values: Vec<String> = self
            .select(name, &[])
            .filter_map(|s| s.labels.get(label).cloned())
            .collect();
        values.sort();
        values.dedup();
        values
    }
}

/// `name{a="x",b="y"} value` or `name value` (an optional timestamp is ignored).
fn parse_sample(line: &str) -> Option<ExpositionSample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let end = loop {
            // Skip separators; stop at the closing brace.
            while let Some(&(_, c)) = chars.peek() {
                if c == ',' || c == ' ' {
                    chars.next();
                } else {
                    break;
                }
            }
            let &(start, c) = chars.peek()?;
            if c == '}' {
                break start + 1;
            }
            let eq = body[start..].find('=')? + start;
            let key = body[start..eq].trim().to_owned();
            while chars.peek()?.0 <= eq {
                chars.next();
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    '"' => break,
                    other => value.push(other),
                }
            }
            labels.insert(key, value);
        };
        rest = &body[end..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(ExpositionSample {
        name,
        labels,
        value,
    })
}

/// What a [`Load`] sends.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Requests started per second (the peak rate when `shape` is set).
    pub rps: f64,
    /// A rate that changes over time (a diurnal swing) with random (Poisson) arrivals; `None`:
    /// `rps` at regular intervals.
    pub shape: Option<RateShape>,
    /// The handlers and their weights, interleaved (smooth weighted round robin, so `[(Chat, 3),
    /// (Login, 1)]` sends chat, chat, login, chat, chat, chat, login…).
    pub mix: Vec<(Handler, u32)>,
    /// At most this many requests in flight; a start that would exceed it is skipped (counted in
    /// [`LoadReport::skipped`]).
    pub max_in_flight: usize,
    /// No request is started after this long.
    pub cap: Duration,
    /// Every request's timeout (connect, answer and body).
    pub timeout: Duration,
}

impl LoadSpec {
    /// `rps` requests per second over `mix`, at most 64 in flight, for at most 2 min, each
    /// timing out after 15 s.
    pub fn new(rps: f64, mix: &[(Handler, u32)]) -> LoadSpec {
        LoadSpec {
            rps,
            shape: None,
            mix: mix.to_vec(),
            max_in_flight: 64,
            cap: Duration::from_secs(120),
            timeout: Duration::from_secs(15),
        }
    }
}

/// A day's swing of traffic squeezed into `period`: the rate starts at `low_rps` (night), rises
/// smoothly to the spec's `rps` at half the period (the afternoon peak) and falls back, as
/// `low + (peak - low) · (1 - cos(2π t / period)) / 2`; requests arrive at random (exponential
/// gaps, seeded), as independent users do, rather than on a metronome.
#[derive(Debug, Clone, Copy)]
pub struct RateShape {
    /// The lowest rate, at the start and the end of each period.
    pub low_rps: f64,
    /// One whole day.
    pub period: Duration,
    /// The seed of the arrival times.
    pub seed: u64,
}

impl RateShape {
    /// The rate `elapsed` into the load, peaking at `peak_rps`.
    pub fn rps_at(&self, peak_rps: f64, elapsed: Duration) -> f64 {
        let phase = elapsed.as_secs_f64() / self.period.as_secs_f64().max(1e-3);
        let swing = (1.0 - (std::f64::consts::TAU * phase).cos()) / 2.0;
        self.low_rps + (peak_rps - self.low_rps) * swing
    }
}

/// What a [`Load`] got so far.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Answers by handler and HTTP status.
    pub answers: BTreeMap<(Handler, u16), u64>,
    /// Requests without an answer (timeout, connection error), by handler.
    pub failed: BTreeMap<Handler, u64>,
    /// Starts skipped because `max_in_flight` requests were in flight.
    pub skipped: u64,
    /// Requests started.
    pub sent: u64,
    /// Requests in flight now.
    pub in_flight: usize,
}

impl LoadReport {
    /// The answers of `handler` with `status`.
    pub fn count(&self, handler: Handler, status: u16) -> u64 {
        self.answers.get(&(handler, status)).copied().unwrap_or(0)
    }

    /// Every answer of `handler`.
    pub fn answered(&self, handler: Handler) -> u64 {
        self.answers
            .iter()
            .filter(|((h, _), _)| *h == handler)
            .map(|(_, n)| n)
            .sum()
    }

    /// Every answer.
    pub fn total_answered(&self) -> u64 {
        self.answers.values().sum()
    }

    /// Every request without an answer.
    pub fn total_failed(&self) -> u64 {
        self.failed.values().sum()
    }
}

/// Real HTTP load on a [`FastApiBackend`]: a task starts `rps` requests per second (reqwest, each
/// with its timeout, at most `max_in_flight` at once) until its cap, [`stop`](Self::stop) or drop
/// (which cancels the requests in flight).
pub struct Load {
    report: Arc<Mutex<LoadReport>>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Load {
    /// Starts sending `spec`'s requests to `backend` now.
    pub fn start(backend: &FastApiBackend, spec: LoadSpec) -> Load {
        assert!(
            spec.rps > 0.0 && spec.rps <= 200.0,
            "rps {} out of 0–200",
            spec.rps
        );
        assert!(
            spec.mix.iter().any(|(_, w)| *w > 0),
            "the mix needs a handler"
        );
        super::init();
        let client = reqwest::Client::builder()
            .timeout(spec.timeout)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("build a reqwest client");
        let report = Arc::new(Mutex::new(LoadReport::default()));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(drive(client, backend.url(), spec, report.clone(), stopped));
        Load {
            report,
            stop,
            task: Some(task),
        }
    }

    /// What was answered so far.
    pub fn report(&self) -> LoadReport {
        self.report.lock().unwrap().clone()
    }

    /// Stops starting requests, waits for the ones in flight (each bounded by its timeout) and
    /// returns the final report.
    pub async fn stop(mut self) -> LoadReport {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.await.expect("the load task does not panic");
        }
        self.report()
    }

    /// Waits until the cap has passed and every request has been answered (or failed), and
    /// returns the final report.
    pub async fn finish(mut self) -> LoadReport {
        if let Some(task) = self.task.take() {
            task.await.expect("the load task does not panic");
        }
        self.report()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            // Aborting the task drops its JoinSet, which aborts the requests in flight.
            task.abort();
        }
    }
}

/// When the next request starts: a regular ticker at `rps`, or random arrivals at a
/// [`RateShape`]'s rate.
enum Arrivals {
    Regular(tokio::time::Interval),
    Shaped {
        shape: RateShape,
        peak_rps: f64,
        rng: fastrand::Rng,
        next: Instant,
    },
}

impl Arrivals {
    fn new(spec: &LoadSpec) -> Arrivals {
        match spec.shape {
            None => {
                let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / spec.rps));
                // A late tick (a busy machine) is not made up with a burst.
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                Arrivals::Regular(ticker)
            }
            Some(shape) => Arrivals::Shaped {
                shape,
                peak_rps: spec.rps,
                rng: fastrand::Rng::with_seed(shape.seed),
                next: Instant::now(),
            },
        }
    }

    /// Waits for the next start.
    async fn next(&mut self, started: Instant) {
        match self {
            Arrivals::Regular(ticker) => {
                ticker.tick().await;
            }
            Arrivals::Shaped {
                shape,
                peak_rps,
                rng,
                next,
            } => {
                tokio::time::sleep_until((*next).into()).await;
                let rate = shape.rps_at(*peak_rps, started.elapsed()).max(0.01);
                // An exponential gap (inverse transform); 1 - u is in (0, 1], so ln is finite.
                let gap = -(1.0 - rng.f64()).ln() / rate;
                // A late start (a busy machine) is not made up with a burst.
                *next = Instant::now().max(*next) + Duration::from_secs_f64(gap.min(60.0));
            }
        }
    }
}

/// Smooth weighted round robin (nginx's): every handler gets its share, interleaved.
struct Mix {
    entries: Vec<(Handler, i64, i64)>,
    total: i64,
}

impl Mix {
    fn new(mix: &[(Handler, u32)]) -> Mix {
        let entries: Vec<(Handler, i64, i64)> = mix
            .iter()
            .filter(|(_, w)| *w > 0)
            .map(|&(h, w)| (h, i64::from(w), 0))
            .collect();
        let total = entries.iter().map(|e| e.1).sum();
        Mix { entries, total }
    }

    fn next(&mut self) -> Handler {
        for entry in &mut self.entries {
            entry.2 += entry.1;
        }
        let best = self
            .entries
            .iter_mut()
            .max_by_key(|e| e.2)
            .expect("a non-empty mix");
        best.2 -= self.total;
        best.0
    }
}

async fn drive(
    client: reqwest::Client,
    base: String,
    spec: LoadSpec,
    report: Arc<Mutex<LoadReport>>,
    mut stopped: watch::Receiver<bool>,
) {
    let started = Instant::now();
    let mut requests = JoinSet::new();
    let mut mix = Mix::new(&spec.mix);
    let mut arrivals = Arrivals::new(&spec);
    loop {
        tokio::select! {
            _ = arrivals.next(started) => {}
            // A stop request, or the Load is gone.
            _ = stopped.changed() => break,
        }
        if started.elapsed() >= spec.cap {
            break;
        }
        while requests.try_join_next().is_some() {}
        if requests.len() >= spec.max_in_flight {
            report.lock().unwrap().skipped += 1;
            continue;
        }
        let handler = mix.next();
        let url = format!("{base}{}", handler.path());
        let request = match handler.body() {
            Some(body) => client.post(url).json(&body),
            None => client.get(url),
        };
        {
            let mut r = report.lock().unwrap();
            r.sent += 1;
            r.in_flight += 1;
        }
        let report = report.clone();
        requests.spawn(async move {
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    // The body too: the request is done when it is read (or the timeout hits).
                    response.bytes().await.map(|_| status)
                }
                Err(e) => Err(e),
            };
            let mut r = report.lock().unwrap();
            r.in_flight -= 1;
            match outcome {
                Ok(status) => *r.answers.entry((handler, status)).or_default() += 1,
                Err(_) => *r.failed.entry(handler).or_default() += 1,
            }
        });
    }
    while requests.join_next().await.is_some() {}
}

/// One short spike of noisy normal traffic (issue 12's noise shapes), each shorter than any rule's
/// `for` and far from filling a rate window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spike {
    /// 3 s in which every chat request answers after 6–8 s.
    SlowChat,
    /// 4 s in which 60 % of every `/api` handler's requests answer 500.
    Errors,
    /// 4 s in which every login answers 401.
    LoginFailures,
    /// 8 s of twice the traffic (a second [`Load`] of the same spec).
    DoubleTraffic,
}

impl Spike {
    /// The rotation [`noise`] goes through, in order.
    pub const ROTATION: [Spike; 4] = [
        Spike::SlowChat,
        Spike::Errors,
        Spike::LoginFailures,
        Spike::DoubleTraffic,
    ];

    /// How long the spike lasts.
    pub fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Spike::SlowChat => 3,
            Spike::Errors | Spike::LoginFailures => 4,
            Spike::DoubleTraffic => 8,
        })
    }

    /// The app's behaviour during the spike (normal for the traffic spike, which is load).
    pub fn scenario(self) -> Scenario {
        match self {
            Spike::SlowChat => Scenario::slow_chat(6.0, 8.0),
            Spike::Errors => Scenario::errors(0.6),
            Spike::LoginFailures => Scenario::login_401(1.0),
            Spike::DoubleTraffic => Scenario::Normal,
        }
    }
}

/// Noisy normal traffic on `backend` for `length`, on top of the caller's steady [`Load`] (whose
/// `spec` the traffic spike repeats): every 25–35 s (drawn from `seed`) the next spike of
/// [`Spike::ROTATION`], then back to normal. Returns the spikes with when they started, relative
/// to the call. Ends back at [`Scenario::Normal`].
pub async fn noise(
    backend: &FastApiBackend,
    spec: &LoadSpec,
    length: Duration,
    seed: u64,
) -> Vec<(Duration, Spike)> {
    let started = Instant::now();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut spikes = Vec::new();
    for spike in Spike::ROTATION.into_iter().cycle() {
        let gap = Duration::from_millis(rng.u64(25_000..=35_000));
        let at = started.elapsed() + gap;
        if at + spike.duration() > length {
            break;
        }
        tokio::time::sleep_until((started + at).into()).await;
        spikes.push((started.elapsed(), spike));
        let extra = match spike {
            Spike::DoubleTraffic => Some(Load::start(backend, spec.clone())),
            _ => {
                backend.set_scenario(&spike.scenario()).await;
                None
            }
        };
        tokio::time::sleep(spike.duration()).await;
        match extra {
            // Its requests in flight are answered quickly (the app is normal), or time out.
            Some(load) => {
                load.stop().await;
            }
            None => {
                backend.set_scenario(&Scenario::Normal).await;
            }
        }
    }
    let rest = length.saturating_sub(started.elapsed());
    tokio::time::sleep(rest).await;
    spikes
}
