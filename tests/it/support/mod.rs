//! Test support: real peers for the integration tests, and small shared helpers.
//!
//! Every peer is a real program (the Harven backend is a real FastAPI app under uvicorn in
//! [`fastapi`]; [`backend`] is an in-process simulation kept for evidence a real app cannot produce
//! on demand) started on an ephemeral port, owned by a handle that stops it and removes its files on
//! `Drop`. Missing programs make the test **fail** with a message naming the package and
//! `scripts/test.sh` (which installs everything); nothing is ever skipped.
//!
//! Not every helper is used by every test module, hence `dead_code` is allowed here.
#![allow(dead_code)]

pub mod alertmanager;
pub mod backend;
pub mod chromium;
pub mod coolify;
pub mod daemon;
pub mod docker;
pub mod fastapi;
pub mod fault;
pub mod ledger;
pub mod load;
pub mod openai;
pub mod postgres;
pub mod process;
pub mod procfs;
pub mod prometheus;
pub mod redis;
pub mod saas;
pub mod sentry;
pub mod smtp;
pub mod stack;

use std::fmt;
use std::future::Future;
use std::net::TcpListener;
use std::path::Path;
use std::process::Child;
use std::sync::Once;
use std::time::{Duration, Instant};

/// Default deadline for a peer to become ready (generous: a loaded 2-core machine running
/// many tests in parallel can be slow to fork and start a process).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Installs the process-wide rustls crypto provider (ring), once.
///
/// reqwest is built with `rustls-no-provider` in this project and panics when a client is
/// built without a provider installed. Call this before building any reqwest (or
/// prometheus-http-query) client; every peer helper calls it already. Safe to call many
/// times and from many threads.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another provider was installed first: fine for tests.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The HTTP client the tests talk to a daemon with: a 10 s timeout, so a daemon that stops
/// answering fails the test instead of hanging it. Installs the crypto provider ([`init`]) first.
pub fn http_client() -> reqwest::Client {
    init();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("build a reqwest client")
}

/// The number in the environment variable `name` (`HARVEN_TEST_SEED`, `HARVEN_TEST_KILLS`): `None`
/// when unset; a value that is not a number fails the test, naming it.
pub fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}={text:?}: {e}")),
    )
}

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
///
/// It binds `127.0.0.1:0`, reads the port and drops the listener, so another process may
/// still grab the port before the caller uses it: callers that start a server on it should
/// retry with a new port when the server reports the address in use.
pub fn free_port() -> u16 {
    free_port_on(std::net::Ipv4Addr::LOCALHOST.into())
}

/// Like [`free_port`], on the address `ip` (e.g. a Docker network's gateway).
pub fn free_port_on(ip: std::net::IpAddr) -> u16 {
    let listener =
        TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("bind {ip}:0 for a free port: {e}"));
    listener
        .local_addr()
        .expect("local_addr of an ephemeral listener")
        .port()
}

/// The error of [`wait_until`] and [`wait_for_some`]: the condition did not hold in time.
#[derive(Debug, Clone)]
pub struct TimedOut {
    /// How long the poller waited before giving up.
    pub waited: Duration,
    /// How many times the condition was evaluated.
    pub attempts: u32,
}

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "condition still false after {:.1?} ({} attempts)",
            self.waited, self.attempts
        )
    }
}

impl std::error::Error for TimedOut {}

/// Polls the async `condition` every `poll_interval` until it returns `true`, or until
/// `timeout` has passed (then `Err(TimedOut)`).
///
/// The condition is always evaluated at least once, and once more at the deadline, so a
/// slow machine does not lose the last chance. Use it instead of fixed sleeps.
pub async fn wait_until<F, Fut>(
    timeout: Duration,
    poll_interval: Duration,
    mut condition: F,
) -> Result<(), TimedOut>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for_some(timeout, poll_interval, move || {
        let fut = condition();
        async move { fut.await.then_some(()) }
    })
    .await
}

/// Polls the async `probe` every `poll_interval` until it returns `Some(value)` and returns
/// that value, or `Err(TimedOut)` once `timeout` has passed.
///
/// Like [`wait_until`], but hands back what the probe found (a query result, a message…).
pub async fn wait_for_some<T, F, Fut>(
    timeout: Duration,
    poll_interval: Duration,
    mut probe: F,
) -> Result<T, TimedOut>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    let deadline = start + timeout;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        if let Some(value) = probe().await {
            return Ok(value);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(TimedOut {
                waited: now - start,
                attempts,
            });
        }
        tokio::time::sleep(poll_interval.min(deadline - now)).await;
    }
}

/// Panics with a clear message when the program `binary` (a name looked up on `PATH`, or an
/// absolute path) is missing; `package` names the Debian package that provides it.
///
/// Tests against real peers must fail, not skip, when a peer is missing.
pub fn require_program(binary: &str, package: &str) {
    if find_program(binary).is_none() {
        panic!(
            "required test peer `{binary}` is not installed (Debian package `{package}`); \
             run `bash scripts/test.sh` as root, which installs every test peer"
        );
    }
}

/// Finds `binary` on `PATH` (or checks an absolute/relative path), like `command -v`.
pub fn find_program(binary: &str) -> Option<std::path::PathBuf> {
    if binary.contains('/') {
        let p = Path::new(binary);
        return is_executable(p).then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Kills a child process (SIGKILL) and reaps it; ignores a child that already exited.
pub fn kill_child(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends `signal` (`libc::SIGTERM`, `libc::SIGHUP`, …) to a child that has not been reaped; true when
/// it was delivered. std only offers SIGKILL; the others go through libc.
pub fn send_signal(child: &Child, signal: libc::c_int) -> bool {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits in pid_t");
    // SAFETY: kill(2) with a pid we own (our un-reaped child, so it cannot be recycled) and a
    // valid signal number has no memory-safety preconditions.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// Stops a child process gracefully: SIGTERM, then waits up to `grace` for it to exit, then
/// SIGKILL. Always reaps the child.
pub fn terminate_child(child: &mut Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    if send_signal(child, libc::SIGTERM) {
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    kill_child(child);
}

/// Returns the last `max_bytes` of a log file (lossy UTF-8), for failure messages.
pub fn log_tail(path: &Path, max_bytes: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(max_bytes);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// Every log line of the test's thread, at TRACE, into a buffer the test reads: the secret-leak
/// tests search it.
#[derive(Clone, Default)]
pub struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Starts capturing this thread's log lines at TRACE, until the guard is dropped.
    pub fn start() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Self::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer({
                let logs = logs.clone();
                move || logs.clone()
            })
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    /// What was logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The first report of `probe` polled by the daemon's own loop ([`harven_watchdog::probe::run`],
/// which logs a failure), recorded in `metrics`; the loop is stopped after it.
pub async fn first_report_of_run<P: harven_watchdog::probe::Probe>(
    probe: P,
    metrics: &harven_watchdog::probe::ProbeMetrics,
) -> harven_watchdog::observe::ProbeReport {
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(harven_watchdog::probe::run(
        probe,
        harven_watchdog::clock::Clock::system(),
        tx,
        metrics.clone(),
        harven_watchdog::probe::never_hurry(),
        shutdown.clone(),
    ));
    let report = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("a report from the run loop")
        .expect("the run loop reports");
    shutdown.cancel();
    task.await.expect("the run loop stops");
    report
}

/// Every surface a probe's reports reach besides the logs, as (what, text): each report's `Debug`
/// and JSON and its failure, `diagnose` over them (text and JSON), and the metrics in `registry`.
/// The secret-leak tests search them all.
pub fn report_surfaces(
    reports: Vec<harven_watchdog::observe::ProbeReport>,
    registry: &prometheus_client::registry::Registry,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (i, r) in reports.iter().enumerate() {
        out.push(("report Debug", format!("{i}: {r:?}")));
        out.push((
            "report JSON",
            serde_json::to_string(r).expect("a report serializes"),
        ));
        if let Err(f) = &r.result {
            out.push(("failure", f.to_string()));
        }
    }
    let Some(at) = reports.first().map(|r| r.at) else {
        return out;
    };
    let diagnosis = harven_watchdog::diagnose::build(
        at,
        harven_watchdog::clock::Clock::system().now(),
        reports,
        std::sync::Arc::new(harven_watchdog::runbook::Runbook::embedded()),
        harven_watchdog::runbook::Locale::En,
    );
    out.push(("diagnose text", diagnosis.to_text()));
    out.push((
        "diagnose JSON",
        serde_json::to_string(&diagnosis).expect("diagnose serializes"),
    ));
    let mut exposition = String::new();
    prometheus_client::encoding::text::encode(&mut exposition, registry).expect("encode");
    out.push(("metrics", exposition));
    out
}

/// The outcome of `key` in a report that should have succeeded (the probe tests' lookup).
pub fn outcome<'a>(
    report: &'a harven_watchdog::observe::ProbeReport,
    key: &harven_watchdog::observe::Key,
) -> &'a harven_watchdog::observe::Outcome {
    let observations = report
        .result
        .as_ref()
        .unwrap_or_else(|f| panic!("{} failed: {f}", report.source));
    &observations
        .iter()
        .find(|o| &o.key == key)
        .unwrap_or_else(|| panic!("no {key} in {observations:?}"))
        .outcome
}

/// `harven-watchdog diagnose --json` with the settings in `env` (`SECTION__KEY`, value) over a store
/// in `data`, no Docker, no Redis, in English: its report. The vendor probes' `diagnose` tests run it.
pub fn diagnose_json(env: &[(&str, String)], data: &Path) -> serde_json::Value {
    // `option_env!`: the benches and examples that include this module by `#[path]` have no binary.
    let Some(bin) = option_env!("CARGO_BIN_EXE_harven-watchdog") else {
        panic!("the watchdog binary is built only for the integration tests");
    };
    let mut cmd = std::process::Command::new(bin);
    cmd.args(["diagnose", "--json"])
        .env("HARVEN_WATCHDOG__STORE__PATH", data.join("watchdog.db"))
        .env(
            "HARVEN_WATCHDOG__REDIS__URL",
            format!("redis://127.0.0.1:{}", free_port()),
        )
        .env(
            "HARVEN_WATCHDOG__DOCKER__HOST",
            "unix:///nonexistent/docker.sock",
        )
        .env("HARVEN_WATCHDOG__RUNBOOK__LOCALE", "en");
    for (k, v) in env {
        cmd.env(format!("HARVEN_WATCHDOG__{k}"), v);
    }
    let out = cmd.output().expect("run diagnose");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// The ranked causes of `section` in a `diagnose --json` report.
pub fn diagnosis_causes<'a>(
    report: &'a serde_json::Value,
    section: &str,
) -> &'a Vec<serde_json::Value> {
    report["diagnoses"]
        .as_array()
        .expect("diagnoses")
        .iter()
        .find(|d| d["section"] == section)
        .unwrap_or_else(|| panic!("no {section} diagnosis: {report:#}"))["diagnosis"]["causes"]
        .as_array()
        .expect("causes")
}

/// The item of `list` (`sources`, `blind_spots`) in a `diagnose --json` report whose `field` is
/// `value` (the source `openai.api`, the rule `errors.coolify_deploy_failed`); panics, showing the report,
/// without one.
pub fn diagnosis_item<'a>(
    report: &'a serde_json::Value,
    list: &str,
    field: &str,
    value: &str,
) -> &'a serde_json::Value {
    report[list]
        .as_array()
        .unwrap_or_else(|| panic!("no {list}: {report:#}"))
        .iter()
        .find(|s| s[field] == value)
        .unwrap_or_else(|| panic!("no {list} item with {field} {value:?}: {report:#}"))
}

/// True when a `diagnose --json` report shows observation `name` with a value.
pub fn observed(report: &serde_json::Value, name: &str) -> bool {
    report["observations"]
        .as_array()
        .expect("observations")
        .iter()
        .any(|o| o["key"] == name && o["state"] == "value")
}

/// A backend symptom a real Prometheus sees: the simulated backend in `scenario`, a Prometheus
/// scraping it, and green status pages for OpenAI and Supabase. The vendor probes' `diagnose` tests
/// add their own source to it.
pub struct BackendSymptom {
    pub backend: backend::SimBackend,
    pub prometheus: prometheus::PrometheusServer,
    /// `[status.openai]` and `[status.supabase]`, both saying `none`.
    pub pages: [saas::FakeStatusPage; 2],
}

impl BackendSymptom {
    /// Starts it and waits until `query` is over `over` (the symptom shows).
    pub async fn start(scenario: backend::Scenario, query: &str, over: f64) -> Self {
        let backend = backend::SimBackend::start(backend::StatusStyle::Exact, scenario).await;
        let prometheus = prometheus::PrometheusServer::start(&[backend.target()]).await;
        let none = || saas::FakeStatusPage::start(saas::PageScenario::indicator("none"));
        let pages = [none().await, none().await];
        prometheus
            .wait_for(
                query,
                |s| s.iter().any(|x| x.value > over),
                Duration::from_secs(60),
            )
            .await;
        Self {
            backend,
            prometheus,
            pages,
        }
    }

    /// The settings (`SECTION__KEY`, value) that point the watchdog at Prometheus (over a 30 s
    /// window) and the two status pages.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PROMETHEUS__URL", self.prometheus.url().to_string()),
            ("PROMETHEUS__WINDOW", "30s".to_owned()),
            ("STATUS__OPENAI__URL", self.pages[0].url().to_string()),
            ("STATUS__SUPABASE__URL", self.pages[1].url().to_string()),
        ]
    }
}

/// The first of `causes` (a `diagnose --json` section's) is `id`, likely, with an evidence line
/// starting with `line` that holds.
pub fn assert_top_holding(causes: &[serde_json::Value], id: &str, line: &str) {
    assert_eq!(causes[0]["id"], id, "{causes:#?}");
    assert_eq!(causes[0]["status"], "likely");
    let lines = causes[0]["evidence"].as_array().expect("evidence");
    assert!(
        lines.iter().any(|l| l["condition"]
            .as_str()
            .unwrap_or_default()
            .starts_with(line)
            && l["truth"] == "holds"),
        "{lines:#?}"
    );
}
