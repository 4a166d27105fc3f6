//! A real Alertmanager (the `prometheus-alertmanager` binary from Debian's package of that name):
//! Prometheus' alerting rules send their alerts to it, and it notifies the watchdog's webhook
//! (`tests/it/alertmanager.rs`, [`webhook_yaml`]) or emails the test SMTP server (the side-by-side
//! benchmark, `examples/versus_bench.rs`).
//!
//! It runs with the configuration it is given, its data in a temporary directory, clustering off
//! (`--cluster.listen-address=`, so no gossip port), on an ephemeral port of 127.0.0.1.
//! `scripts/test.sh` installs the package when it is missing.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use super::process::{PeerProcess, start_on_free_port};

/// The program Debian's `prometheus-alertmanager` package installs.
pub const PROGRAM: &str = "prometheus-alertmanager";

/// A running Alertmanager; killed (and its temp dir removed) on drop.
pub struct Alertmanager {
    /// Declared before `dir`, so the process is killed before its directory goes.
    process: PeerProcess,
    port: u16,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Alertmanager {
    /// Starts Alertmanager with `config` (the text of its `alertmanager.yml`) and waits until it
    /// answers `/-/ready`. Panics naming the package when the program is missing, and with its log
    /// when it does not start (e.g. the configuration is refused).
    pub async fn start(config: &str) -> Alertmanager {
        super::init();
        super::require_program(PROGRAM, "prometheus-alertmanager");
        let dir = tempfile::Builder::new()
            .prefix("hwtest-alertmanager-")
            .tempdir()
            .expect("create a temp dir for Alertmanager");
        std::fs::write(dir.path().join("alertmanager.yml"), config)
            .expect("write alertmanager.yml");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("build a reqwest client");
        let mut server = Alertmanager {
            process: PeerProcess::new("alertmanager", dir.path().join("alertmanager.log")),
            port: 0,
            dir,
            http,
        };
        start_on_free_port("Alertmanager", Ipv4Addr::LOCALHOST.into(), async |port| {
            server.port = port;
            server.spawn_and_wait().await
        })
        .await;
        server
    }

    /// The base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `host:port`, for Prometheus' `alerting.alertmanagers` static targets.
    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The process ID while it runs (for its CPU time and memory from `/proc`).
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The last 4 KiB of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    async fn spawn_and_wait(&mut self) -> Result<(), String> {
        let dir = self.dir.path();
        let mut command = Command::new(PROGRAM);
        command
            .arg(format!(
                "--config.file={}",
                dir.join("alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            // No cluster: it would listen on 0.0.0.0:9094 and wait for peers.
            .arg("--cluster.listen-address=")
            .arg("--log.level=info");
        let ready_url = format!("{}/-/ready", self.url());
        let what = format!("a 200 from {ready_url}");
        let http = &self.http;
        self.process
            .spawn_and_wait(
                &mut command,
                "prometheus-alertmanager",
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

/// An `alertmanager.yml` that sends every alert, grouped by `alertname`, to the watchdog's webhook at
/// `url` with `Authorization: Bearer` read from `credentials_file` (as a deployment sets it), resolved
/// notifications included, on short timers (`resolve_timeout` 10 s for alerts sent without an end):
/// the first notification 1 s after an alert arrives,
/// changes every 2 s, and a firing group repeated every `repeat` (the watchdog's `[alerts]
/// resend_within` must exceed it plus the group interval).
pub fn webhook_yaml(url: &str, credentials_file: &std::path::Path, repeat: &str) -> String {
    format!(
        r#"global:
  resolve_timeout: 10s
route:
  receiver: watchdog
  group_by: ['alertname']
  group_wait: 1s
  group_interval: 2s
  repeat_interval: {repeat}
receivers:
  - name: watchdog
    webhook_configs:
      - url: {url}
        send_resolved: true
        http_config:
          authorization:
            credentials_file: {}
"#,
        credentials_file.display()
    )
}
