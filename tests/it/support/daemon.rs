//! The daemon as the tests start it: in-process, `harven_watchdog::run` on `127.0.0.1:0` with a manual
//! clock that only the test moves ([`TestDaemon`]); or a built binary as a child process on real time
//! ([`spawn_binary`], and [`DaemonProcess`] for the benches' release binary).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use harven_watchdog::clock::{Clock, ManualClock, Timestamp};
use harven_watchdog::config::ConfigSource;
use harven_watchdog::ha::Leases;
use harven_watchdog::incident::Incident;
use harven_watchdog::incident::model::DIAGNOSIS_REFRESH;
use harven_watchdog::store::Store;
use harven_watchdog::{Reload, RunOptions};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Where the tests' manual clocks start.
pub const T0: Timestamp = Timestamp::from_unix_millis(1_795_000_000_000);

/// The rate window of the Prometheus readings, one a test fills in seconds.
pub const WINDOW: &str = "30s";

/// Overrides for a daemon that watches the test Prometheus at `prom` (polled every second, rates
/// over 30 s) with its store in `data`, and whose other sources are out of reach (so it is blind to them,
/// which is an incident of its own: tests filter by section).
pub fn prometheus_env(prom: &str, data: &Path) -> Vec<(String, String)> {
    let unreachable_status = "http://127.0.0.1:1/api/v2/status.json";
    [
        (
            "STORE__PATH",
            data.join("watchdog.db").display().to_string(),
        ),
        ("PROMETHEUS__URL", prom.to_owned()),
        ("PROMETHEUS__INTERVAL", "1s".into()),
        ("PROMETHEUS__TIMEOUT", "900ms".into()),
        ("PROMETHEUS__WINDOW", WINDOW.into()),
        ("DOCKER__HOST", "unix:///nonexistent/docker.sock".into()),
        // The roles by their names only: by their Compose service (the defaults) they would take in
        // the `*-backend-*` replicas that tests/it/probe_docker.rs starts meanwhile.
        ("DOCKER__ROLES__BACKEND__COMPOSE_SERVICE", String::new()),
        ("DOCKER__ROLES__REDIS__COMPOSE_SERVICE", String::new()),
        ("REDIS__URL", "redis://127.0.0.1:1".into()),
        ("STATUS__OPENAI__URL", unreachable_status.into()),
        ("STATUS__SUPABASE__URL", unreachable_status.into()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("HARVEN_WATCHDOG__{k}"), v))
    .collect()
}

/// The value of the series named exactly `series` (with its labels) in exposition text.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

/// [`paging_env`] for a daemon blind to every source (its Prometheus out of reach too: an incident
/// of its own, `watchdog.blind`), its emails and pages in `locale` (`pt-BR`, `en`).
pub fn blind_env(smtp_port: u16, data: &Path, locale: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = paging_env("http://127.0.0.1:1", smtp_port, data)
        .into_iter()
        .filter(|(k, _)| k != "HARVEN_WATCHDOG__RUNBOOK__LOCALE")
        .collect();
    env.push(("HARVEN_WATCHDOG__RUNBOOK__LOCALE".into(), locale.into()));
    env
}

/// [`prometheus_env`] plus the test SMTP server on `smtp_port` (plaintext), distinct recipients per
/// level (`oncall@`, `lead@`, `cto@test.harven`), English emails, and no reminders (every email in
/// these scripts is one the test expects).
pub fn paging_env(prom: &str, smtp_port: u16, data: &Path) -> Vec<(String, String)> {
    let mut env = prometheus_env(prom, data);
    env.extend(
        [
            ("SMTP__HOST", "127.0.0.1".to_owned()),
            ("SMTP__PORT", smtp_port.to_string()),
            ("SMTP__TLS", "none".into()),
            ("ESCALATION__L1__TO", "oncall@test.harven".into()),
            ("ESCALATION__L2__TO", "lead@test.harven".into()),
            ("ESCALATION__L3__TO", "cto@test.harven".into()),
            ("ESCALATION__REPEAT_INTERVAL", "24h".into()),
            ("RUNBOOK__LOCALE", "en".into()),
        ]
        .into_iter()
        .map(|(k, v)| (format!("HARVEN_WATCHDOG__{k}"), v)),
    );
    env
}

/// Writes `dir/runbook.toml`: the shipped runbook with both latency rules (the 2 m p95 and the 30 s
/// severe share) firing after 1 s and clearing after `resolve_after`, for tests of the real binary,
/// which runs on real time.
pub fn quick_runbook(dir: &Path, resolve_after: &str) -> PathBuf {
    let mut text = harven_watchdog::runbook::DEFAULT_RUNBOOK.to_owned();
    for (clear, timing) in [
        (
            "clear = { obs = \"prometheus.p95_seconds\", op = \"<\", value = 2.5 }\n",
            "for = \"30s\"\nresolve_after = \"30s\"",
        ),
        (
            "clear = { obs = \"prometheus.slow_share_short\", op = \"<\", value = 0.05 }\n",
            "for = \"10s\"\nresolve_after = \"30s\"",
        ),
    ] {
        let quick = text.replacen(
            &format!("{clear}{timing}"),
            &format!("{clear}for = \"1s\"\nresolve_after = \"{resolve_after}\""),
            1,
        );
        assert_ne!(quick, text, "the latency rule {clear:?} was found");
        text = quick;
    }
    let path = dir.join("runbook.toml");
    std::fs::write(&path, text).expect("write the runbook");
    path
}

/// Starts the real binary with `env` (warnings only, output discarded).
pub fn spawn_binary(env: &[(String, String)]) -> Child {
    // `option_env!`: the benches and examples that include this module by `#[path]` have no binary.
    let Some(bin) = option_env!("CARGO_BIN_EXE_harven-watchdog") else {
        panic!("the watchdog binary is built only for the integration tests");
    };
    Command::new(bin)
        .envs(env.iter().cloned())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the watchdog binary")
}

/// Writes `watchdog.toml` in `dir` with one `[[maintenance]]` window (the `errors` section, in 2030,
/// `Supabase upgrade`): the window of the configuration that `GET /api/maintenance` lists as
/// `config-1`. Returns its path.
pub fn configured_window_file(dir: &std::path::Path) -> std::path::PathBuf {
    let file = dir.join("watchdog.toml");
    std::fs::write(
        &file,
        "[[maintenance]]\nsections = [\"errors\"]\nstarts = \"2030-01-01T00:00:00Z\"\nends = \"2030-01-01T02:00:00Z\"\nreason = \"Supabase upgrade\"\n",
    )
    .expect("config");
    file
}

/// How long (real time) [`evaluated_at`] and [`evaluated_once`] wait for the daemon: liveness, not
/// latency (an evaluation follows the next probe report, a second or so on these configurations).
pub const EVALUATION_PATIENCE: Duration = Duration::from_secs(60);

/// Returns incident `id` once the daemon's store holds it with a diagnosis evaluated at `at` or
/// later: the sync point for "nothing happened at `at`" on a manual clock held at `at`.
///
/// The pager commits an incident (its diagnosis included) and the pages of the same step in one
/// transaction, and steps in order, so once this returns every page the book decided up to that
/// evaluation is in the store's outbox (whether or not the sender got to it). An unchanged diagnosis
/// is saved again only once [`DIAGNOSIS_REFRESH`] old: move the clock at least that far past the
/// incident's latest saved evaluation (this panics otherwise), and keep the incident's section
/// active. Panics after [`EVALUATION_PATIENCE`].
pub async fn evaluated_at(store: &Store, id: &str, at: Timestamp) -> Incident {
    let read = || {
        store
            .incident(id)
            .expect("read the store")
            .unwrap_or_else(|| panic!("no incident {id} in the store"))
    };
    let saved = read().diagnosis.map(|d| d.at);
    if let Some(saved) = saved
        && saved < at
    {
        assert!(
            at.saturating_since(saved) >= DIAGNOSIS_REFRESH,
            "{id}: its diagnosis was saved at {saved}, less than {DIAGNOSIS_REFRESH:?} before {at}: \
             an unchanged one is not saved again, so it proves no evaluation at {at}"
        );
    }
    super::wait_for_some(EVALUATION_PATIENCE, Duration::from_millis(50), || {
        let incident = read();
        let done = incident.diagnosis.as_ref().is_some_and(|d| d.at >= at);
        async move { done.then_some(incident) }
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{id}: no evaluation at {at} or later reached the store ({e}); its diagnosis is of {:?}",
            read().diagnosis.map(|d| d.at)
        )
    })
}

/// Returns once the daemon at `base` has evaluated at least one probe report since it started: its
/// `/metrics` shows an observation gauge, which the watch loop sets only after an evaluation (they
/// start empty in each run and each generation). Needs a reachable Prometheus. Panics after
/// [`EVALUATION_PATIENCE`].
pub async fn evaluated_once(base: &str) {
    let http = super::http_client();
    let url = format!("{base}/metrics");
    super::wait_until(EVALUATION_PATIENCE, Duration::from_millis(50), || {
        let request = http.get(&url).send();
        async move {
            match request.await {
                Ok(r) => r
                    .text()
                    .await
                    .is_ok_and(|t| t.contains("\nharven_watchdog_observation_p95_seconds{")),
                Err(_) => false,
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("the daemon at {base} never evaluated a report: {e}"));
}

/// Returns once the watch loop of the daemon at `base` (its API token `token`) has answered a command:
/// an ack of an incident that does not exist, refused 404 without a change. The loop takes commands
/// only between evaluations, so every evaluation it had begun before (see [`evaluated_once`]) has
/// been stepped and committed by then; the sync point on system time, where [`evaluated_at`] would
/// wait a minute. Panics unless answered 404 within 10 s.
pub async fn watch_loop_barrier(base: &str, token: &str) {
    let url = format!("{base}/api/incidents/latency-19700101T000000Z/ack");
    let answer = super::http_client()
        .post(&url)
        .bearer_auth(token)
        .json(&serde_json::json!({ "by": "the test's barrier" }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    assert_eq!(
        answer.status(),
        404,
        "the barrier's ack: {}",
        answer.text().await.unwrap_or_default()
    );
}

/// A running in-process daemon.
pub struct TestDaemon {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), harven_watchdog::RunError>>,
    /// Moves the daemon's clock.
    pub hand: ManualClock,
    /// The client of [`TestDaemon::get`] (one, so its connection is reused).
    http: reqwest::Client,
}

impl TestDaemon {
    /// Starts a daemon configured by the embedded defaults and `env` (`HARVEN_WATCHDOG__*` pairs), its
    /// clock at `at`. Unless `env` sets it, `server.public_url` is this daemon, so email links work.
    pub async fn start(env: Vec<(String, String)>, at: Timestamp) -> Self {
        Self::start_with_files(&[], env, at).await
    }

    /// As [`TestDaemon::start`], with `files` layered as `--config` files under `env`. A reload
    /// (`POST /-/reload`) reads them and `env` again.
    pub async fn start_with_files(
        files: &[std::path::PathBuf],
        env: Vec<(String, String)>,
        at: Timestamp,
    ) -> Self {
        let (clock, hand) = Clock::manual(at);
        Self::launch(files, env, clock, hand, RunOptions::default()).await
    }

    /// One replica of several (issue 17): configured by `env`, on a clock the test shares between
    /// them (so the lease's time is theirs), with `leases` (a replica of one
    /// [`MemoryLeases`](harven_watchdog::ha::MemoryLeases) arbiter) deciding who leads.
    pub async fn start_replica(
        env: Vec<(String, String)>,
        clock: Clock,
        hand: ManualClock,
        leases: Arc<dyn Leases>,
    ) -> Self {
        let options = RunOptions {
            leases: Some(leases),
        };
        Self::launch(&[], env, clock, hand, options).await
    }

    async fn launch(
        files: &[std::path::PathBuf],
        mut env: Vec<(String, String)>,
        clock: Clock,
        hand: ManualClock,
        options: RunOptions,
    ) -> Self {
        super::init();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        if !env
            .iter()
            .any(|(k, _)| k == "HARVEN_WATCHDOG__SERVER__PUBLIC_URL")
        {
            env.push(("HARVEN_WATCHDOG__SERVER__PUBLIC_URL".into(), base.clone()));
        }
        let source = ConfigSource::with_env(files.to_vec(), env);
        let config = source.load().expect("test config");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(harven_watchdog::run_with(
            config,
            Reload::new(source),
            listener,
            clock,
            shutdown.clone(),
            options,
        ));
        Self {
            base,
            shutdown,
            task,
            hand,
            http: super::http_client(),
        }
    }

    /// The body of `GET /metrics`; panics when the daemon does not answer (it must always serve).
    pub async fn metrics(&self) -> String {
        self.get("/metrics").await
    }

    /// The body of a `GET` of `path`; panics unless the daemon answers 200 within 10 s.
    pub async fn get(&self, path: &str) -> String {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(response.status(), 200, "GET {url}");
        response.text().await.expect("body")
    }

    /// Stops it cleanly (panicking if it does not stop cleanly) and returns its clock.
    pub async fn stop(self) -> ManualClock {
        self.shutdown.cancel();
        self.task.await.expect("join").expect("clean stop");
        self.hand
    }
}

/// A watchdog binary (the benches' release build) as a child process on real time, its store and
/// log (`daemon.log`, warnings) in a fresh directory and its HTTP on a free port; stopped
/// (SIGTERM, then SIGKILL) on drop.
pub struct DaemonProcess {
    child: Child,
    base: String,
    data: tempfile::TempDir,
}

impl DaemonProcess {
    /// Starts `bin` with `env` (`HARVEN_WATCHDOG__*` pairs) and waits until `/healthz` answers;
    /// panics with the log's tail when it does not.
    pub async fn start(bin: &Path, env: Vec<(String, String)>) -> DaemonProcess {
        let data = tempfile::Builder::new()
            .prefix("hwbench-daemon-")
            .tempdir()
            .expect("a temp dir for the daemon");
        let port = super::free_port();
        let log = std::fs::File::create(data.path().join("daemon.log")).expect("the daemon log");
        let child = Command::new(bin)
            .envs(env)
            .env(
                "HARVEN_WATCHDOG__STORE__PATH",
                data.path().join("watchdog.db"),
            )
            .env(
                "HARVEN_WATCHDOG__SERVER__LISTEN",
                format!("127.0.0.1:{port}"),
            )
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        let daemon = DaemonProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
            data,
        };
        let http = super::http_client();
        let healthz = format!("{}/healthz", daemon.base);
        super::wait_until(super::STARTUP_TIMEOUT, Duration::from_millis(50), || {
            let request = http.get(&healthz).send();
            async move { request.await.is_ok_and(|r| r.status().is_success()) }
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the daemon did not answer /healthz: {e}; log:\n{}",
                daemon.log_tail()
            )
        });
        daemon
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last 4 KiB of its log.
    pub fn log_tail(&self) -> String {
        super::log_tail(&self.data.path().join("daemon.log"), 4096)
    }

    /// Its `/metrics` text; panics when it does not answer.
    pub async fn metrics(&self) -> String {
        super::http_client()
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("GET /metrics")
            .text()
            .await
            .expect("the /metrics body")
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        super::terminate_child(&mut self.child, Duration::from_secs(10));
    }
}
