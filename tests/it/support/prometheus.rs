//! A real Prometheus server (the `prometheus` binary from Debian's package) for tests.
//!
//! It scrapes the given targets every second under the job [`BACKEND_JOB`], keeps its TSDB in
//! a temporary directory and listens on an ephemeral port of 127.0.0.1. Note that Prometheus
//! answers `/-/ready` almost at once, but its first scrape happens about 5 s later (the scrape
//! manager's reload throttle): the first non-empty `rate()` comes ~7 s after start, so always
//! [`PrometheusServer::wait_for`] data instead of sleeping.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::TimedOut;
use super::process::{PeerProcess, start_on_free_port};

/// The Prometheus job name given to the scrape targets.
pub const BACKEND_JOB: &str = "harven-backend";

/// How often Prometheus scrapes its targets (and evaluates rules).
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);

/// One sample of an instant-query result: its labels and value.
///
/// Values can be `NaN` (e.g. a quantile or ratio over a handler with no traffic) or infinite;
/// compare with care.
#[derive(Debug, Clone, PartialEq)]
pub struct PromSample {
    /// The series labels (`__name__` included when Prometheus keeps it).
    pub labels: HashMap<String, String>,
    /// The sample value.
    pub value: f64,
}

impl PromSample {
    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// What [`PrometheusServer::start_with`] adds to the test configuration.
#[derive(Debug, Clone, Default)]
pub struct ExtraConfig {
    /// Top-level YAML sections appended to `prometheus.yml` as they are (e.g. `rule_files:` and
    /// `alerting:`); not `global` or `scrape_configs`, which the test configuration has.
    pub yaml: String,
    /// Files written beside `prometheus.yml` before it starts: `(file name, contents)`.
    pub files: Vec<(String, String)>,
    /// The scrape (and evaluation) interval instead of the tests' [`SCRAPE_INTERVAL`], e.g. the
    /// 15 s a production Prometheus commonly uses.
    pub scrape_interval: Option<Duration>,
    /// Log every query Prometheus answers (`global.query_log_file`), read back with
    /// [`PrometheusServer::logged_queries`]: a client's queries as the server saw them, when.
    pub query_log: bool,
}

/// One entry of Prometheus' query log.
#[derive(Debug, Clone)]
pub struct LoggedQuery {
    /// When Prometheus logged it (as it finished answering).
    pub at: std::time::SystemTime,
    /// The PromQL.
    pub query: String,
}

/// A running Prometheus process; killed (and its temp dir removed) on drop.
pub struct PrometheusServer {
    /// Declared before `dir`, so the process is killed before its directory goes.
    process: PeerProcess,
    port: u16,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl PrometheusServer {
    /// Starts Prometheus scraping `targets` (`host:port` each, e.g.
    /// [`SimBackend::target`](super::backend::SimBackend::target)) every second, and waits
    /// until it is ready. Panics with a clear message when `prometheus` is missing or does not
    /// start.
    pub async fn start<S: AsRef<str>>(targets: &[S]) -> PrometheusServer {
        Self::start_with(targets, &ExtraConfig::default()).await
    }

    /// Like [`start`](Self::start), with `extra`'s top-level sections (e.g. `rule_files` and
    /// `alerting`) appended to the configuration and its files written beside it (a relative path
    /// in the configuration, such as a rule file's, is read from that directory).
    pub async fn start_with<S: AsRef<str>>(targets: &[S], extra: &ExtraConfig) -> PrometheusServer {
        super::init();
        super::require_program("prometheus", "prometheus");
        let dir = tempfile::Builder::new()
            .prefix("hwtest-prometheus-")
            .tempdir()
            .expect("create a temp dir for Prometheus");
        let targets: Vec<String> = targets.iter().map(|t| t.as_ref().to_owned()).collect();
        for (name, text) in &extra.files {
            std::fs::write(dir.path().join(name), text)
                .unwrap_or_else(|e| panic!("write {name} for Prometheus: {e}"));
        }
        std::fs::write(
            dir.path().join("prometheus.yml"),
            config_yaml(
                &targets,
                extra.scrape_interval.unwrap_or(SCRAPE_INTERVAL),
                extra
                    .query_log
                    .then(|| dir.path().join(QUERY_LOG))
                    .as_deref(),
            ) + &extra.yaml,
        )
        .expect("write prometheus.yml");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("build a reqwest client");

        let mut server = PrometheusServer {
            process: PeerProcess::new("prometheus", dir.path().join("prometheus.log")),
            port: 0,
            dir,
            http,
        };
        start_on_free_port("Prometheus", Ipv4Addr::LOCALHOST.into(), async |port| {
            server.port = port;
            server.spawn_and_wait().await
        })
        .await;
        server
    }

    /// Every query in the query log so far, oldest first (empty unless it was started with
    /// [`ExtraConfig::query_log`]); panics on an entry it cannot read.
    pub fn logged_queries(&self) -> Vec<LoggedQuery> {
        let text = std::fs::read_to_string(self.dir.path().join(QUERY_LOG)).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let entry: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("a query log line that is not JSON ({e}): {line}"));
                let at = entry["ts"]
                    .as_str()
                    .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
                    .unwrap_or_else(|| panic!("a query log line without a ts: {line}"));
                LoggedQuery {
                    at,
                    query: entry["params"]["query"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                }
            })
            .collect()
    }

    /// The base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port Prometheus listens on (kept across [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A prometheus-http-query client for this server (backed by a reqwest client with a 5 s
    /// timeout).
    pub fn client(&self) -> prometheus_http_query::Client {
        prometheus_http_query::Client::from(self.http.clone(), &self.url())
            .expect("a prometheus-http-query client for a valid URL")
    }

    /// The process ID while it runs (for its CPU time and memory from `/proc`).
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Whether the process is running (it may have been stopped or killed by the test).
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }
    /// Runs an instant PromQL query now. A scalar result is returned as one sample without
    /// labels; a range (matrix) result is an error (use the client directly for those).
    pub async fn query(&self, promql: &str) -> Result<Vec<PromSample>, String> {
        let result = self
            .client()
            .query(promql)
            .get()
            .await
            .map_err(|e| describe_error(&e))?;
        match result.data() {
            prometheus_http_query::response::Data::Vector(v) => Ok(v
                .iter()
                .map(|s| PromSample {
                    labels: s.metric().clone(),
                    value: s.sample().value(),
                })
                .collect()),
            prometheus_http_query::response::Data::Scalar(s) => Ok(vec![PromSample {
                labels: HashMap::new(),
                value: s.value(),
            }]),
            prometheus_http_query::response::Data::Matrix(_) => {
                Err(format!("query {promql:?} returned a range vector"))
            }
        }
    }

    /// Polls the instant query `promql` every 500 ms until `predicate` holds for its result,
    /// and returns that result; panics (naming the query and the last result or error) when
    /// `timeout` passes first. Remember that the first data arrives ~7 s after start.
    pub async fn wait_for<P>(
        &self,
        promql: &str,
        predicate: P,
        timeout: Duration,
    ) -> Vec<PromSample>
    where
        P: Fn(&[PromSample]) -> bool,
    {
        // A Mutex (not a RefCell) keeps the future Send, so callers may spawn it.
        let last = std::sync::Mutex::new(String::from("<not queried>"));
        let outcome = super::wait_for_some(timeout, Duration::from_millis(500), || {
            let fut = self.query(promql);
            let last = &last;
            let predicate = &predicate;
            async move {
                match fut.await {
                    Ok(samples) if predicate(&samples) => Some(samples),
                    Ok(samples) => {
                        *last.lock().unwrap() = format!("{samples:?}");
                        None
                    }
                    Err(e) => {
                        *last.lock().unwrap() = format!("error: {e}");
                        None
                    }
                }
            }
        })
        .await;
        match outcome {
            Ok(samples) => samples,
            Err(TimedOut { waited, .. }) => panic!(
                "Prometheus query {promql:?} did not satisfy the predicate within {waited:.1?}; \
                 last result: {}\nPrometheus log tail:\n{}",
                last.lock().unwrap(),
                self.log_tail()
            ),
        }
    }

    /// Kills the process at once (SIGKILL), keeping its data directory and port, as a crash
    /// would. Queries then fail with a connection error until [`restart`](Self::restart).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Stops the process gracefully (SIGTERM, SIGKILL after 10 s), keeping its data and port.
    pub fn stop(&mut self) {
        self.process.terminate(Duration::from_secs(10));
    }

    /// Starts Prometheus again on the same port with the same data (stopping it first if it
    /// runs), and waits until it is ready. Panics if it cannot (e.g. the port was taken).
    pub async fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn_and_wait().await {
            panic!("Prometheus did not restart on port {}: {e}", self.port);
        }
    }

    /// The last 4 KiB of Prometheus's log (stdout and stderr), for failure messages.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// Spawns the process on `self.port` and waits for `/-/ready`; on failure the process is
    /// reaped and the error names the reason (with the log tail).
    async fn spawn_and_wait(&mut self) -> Result<(), String> {
        let dir = self.dir.path();
        let mut command = Command::new("prometheus");
        command
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--storage.tsdb.retention.time=1h")
            .arg("--web.enable-lifecycle")
            .arg("--log.level=info");
        let ready_url = format!("{}/-/ready", self.url());
        let what = format!("a 200 from {ready_url}");
        let http = &self.http;
        self.process
            .spawn_and_wait(
                &mut command,
                "prometheus",
                &what,
                Duration::from_millis(50),
                || {
                    let request = http.get(&ready_url).send();
                    async move { request.await.is_ok_and(|resp| resp.status().is_success()) }
                },
            )
            .await
    }
}

/// The query log's file name in Prometheus' directory.
const QUERY_LOG: &str = "queries.log";

fn config_yaml(targets: &[String], interval: Duration, query_log: Option<&Path>) -> String {
    let list = targets
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let secs = interval.as_secs().max(1);
    // A scrape must end within its interval; 10 s is Prometheus' own default timeout.
    let timeout = secs.min(10);
    let query_log = query_log
        .map(|path| format!("  query_log_file: '{}'\n", path.display()))
        .unwrap_or_default();
    format!(
        "global:\n  scrape_interval: {secs}s\n  scrape_timeout: {timeout}s\n  evaluation_interval: {secs}s\n{query_log}\
         scrape_configs:\n  - job_name: '{BACKEND_JOB}'\n    static_configs:\n      - targets: [{list}]\n"
    )
}

/// Renders a prometheus-http-query error with its source chain (its Display alone is vague,
/// e.g. "failed to send request to server").
pub fn describe_error(e: &prometheus_http_query::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
