//! A real Alertmanager (the `prometheus-alertmanager` binary from Debian's package of that name) for
//! the side-by-side benchmark (`examples/versus_bench.rs`): Prometheus' alerting rules send their
//! alerts to it, and it emails them to the test SMTP server.
//!
//! It runs with the configuration it is given, its data in a temporary directory, clustering off
//! (`--cluster.listen-address=`, so no gossip port), on an ephemeral port of 127.0.0.1. No test
//! needs it, so `scripts/test.sh` does not install it; `scripts/bench-versus.sh` does.

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
