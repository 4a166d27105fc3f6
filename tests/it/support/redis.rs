//! A real `redis-server` (Debian's `redis-server` package) for tests.
//!
//! Started as `redis-server --port P --bind 127.0.0.1 --save "" --appendonly no
//! --enable-debug-command local` in a temporary directory (so `DEBUG SLEEP` works for
//! response-timeout tests), on an ephemeral port. No persistence: a restart starts empty.
//! [`RedisServer::start_on`] binds another address instead (a Docker network's gateway, so that
//! network's containers reach it), with `--protected-mode no`: without a password, protected mode
//! refuses every client that is not on loopback.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::process::{PeerProcess, start_on_free_port};

/// A running redis-server; killed (and its temp dir removed) on drop.
pub struct RedisServer {
    /// Declared before `dir`, so the process is killed before its directory goes.
    process: PeerProcess,
    bind: IpAddr,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts redis-server on an ephemeral port and waits until it answers PING. Panics with a
    /// clear message when `redis-server` is missing or does not start.
    pub async fn start() -> RedisServer {
        Self::start_on(Ipv4Addr::LOCALHOST.into()).await
    }

    /// Like [`start`](Self::start), listening on `bind` instead of 127.0.0.1.
    pub async fn start_on(bind: IpAddr) -> RedisServer {
        super::require_program("redis-server", "redis-server");
        let dir = tempfile::Builder::new()
            .prefix("hwtest-redis-")
            .tempdir()
            .expect("create a temp dir for redis");
        let mut server = RedisServer {
            process: PeerProcess::new("redis-server", dir.path().join("redis.log")),
            bind,
            port: 0,
            dir,
        };
        start_on_free_port("redis-server", bind, async |port| {
            server.port = port;
            server.spawn_and_wait().await
        })
        .await;
        server
    }

    /// The connection URL, e.g. `redis://127.0.0.1:40123/`.
    pub fn url(&self) -> String {
        format!("redis://{}:{}/", self.bind, self.port)
    }

    /// The port redis listens on (kept across [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A `redis::Client` for this server.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("a redis client for a valid URL")
    }

    /// A `ConnectionManager` (reconnects by itself after a restart) to this server.
    pub async fn connection_manager(&self) -> redis::aio::ConnectionManager {
        self.client()
            .get_connection_manager()
            .await
            .unwrap_or_else(|e| panic!("connect a ConnectionManager to {}: {e}", self.url()))
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Kills redis at once (SIGKILL), as a crash would; the port stays reserved for
    /// [`restart`](Self::restart).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Stops redis gracefully (SIGTERM, SIGKILL after 10 s).
    pub fn stop(&mut self) {
        self.process.terminate(Duration::from_secs(10));
    }

    /// Starts redis again on the same port (stopping it first if it runs) and waits for PING.
    /// The data set starts empty (no persistence). Panics if the port was taken meanwhile.
    pub async fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn_and_wait().await {
            panic!("redis-server did not restart on port {}: {e}", self.port);
        }
    }

    /// The last 4 KiB of redis's log, for failure messages.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// Spawns redis-server on `self.bind:self.port` and waits until it answers PING; on failure
    /// the process is reaped and the error says why (with the log tail).
    async fn spawn_and_wait(&mut self) -> Result<(), String> {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", &self.bind.to_string()])
            .args([
                "--protected-mode",
                if self.bind.is_loopback() { "yes" } else { "no" },
            ])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--enable-debug-command", "local"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .current_dir(self.dir.path());
        let addr = (self.bind, self.port);
        let what = format!("+PONG to PING on {}:{}", self.bind, self.port);
        self.process
            .spawn_and_wait(
                &mut command,
                "redis-server",
                &what,
                Duration::from_millis(25),
                || raw_ping(addr),
            )
            .await
    }
}

/// Sends an inline `PING` over a fresh TCP connection and checks for `+PONG` (no client
/// library involved, so readiness does not depend on the code under test).
async fn raw_ping(addr: (IpAddr, u16)) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).await.ok()?;
        Some(buf[..n].starts_with(b"+PONG"))
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}
