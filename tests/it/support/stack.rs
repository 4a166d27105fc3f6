//! The whole test stack at once, for the benches (`benches/engine.rs`, `examples/stack_bench.rs`):
//! Prometheus scraping the simulated backend, Redis, the local status pages and Supabase, and any
//! number of test containers, with the `HARVEN_WATCHDOG__*` pairs that point every probe at them.

use futures_util::StreamExt;

use super::backend::{Scenario, SimBackend, StatusStyle};
use super::docker::{ContainerOptions, TestContainer};
use super::prometheus::PrometheusServer;
use super::redis::RedisServer;
use super::saas::{FakeStatusPage, FakeSupabase, PageScenario};

/// The API key the stack's fake Supabase accepts.
pub const SUPABASE_KEY: &str = "stack-key";

/// How many containers are created (or removed) at once: enough to make 500 quick, few enough not
/// to swamp a small Docker Engine.
const DOCKER_PARALLELISM: usize = 8;

/// Every peer of the daemon, healthy; dropped together.
pub struct TestStack {
    pub backend: SimBackend,
    pub prometheus: PrometheusServer,
    pub redis: RedisServer,
    pub openai: FakeStatusPage,
    pub status_supabase: FakeStatusPage,
    pub supabase: FakeSupabase,
    pub containers: Vec<TestContainer>,
}

impl TestStack {
    /// Starts every peer with `containers` running test containers (each with `JWT_SECRET` set), and
    /// waits until Prometheus has scraped the backend.
    pub async fn start(containers: usize) -> TestStack {
        let backend = SimBackend::start(StatusStyle::Grouped, Scenario::Normal).await;
        let prometheus = PrometheusServer::start(&[backend.target()]).await;
        let stack = TestStack {
            redis: RedisServer::start().await,
            openai: FakeStatusPage::start(PageScenario::indicator("none")).await,
            status_supabase: FakeStatusPage::start(PageScenario::indicator("none")).await,
            supabase: FakeSupabase::start(SUPABASE_KEY).await,
            containers: start_containers(containers).await,
            backend,
            prometheus,
        };
        // The first scrape comes some seconds after Prometheus starts: wait for data.
        stack
            .prometheus
            .wait_for(
                "sum(rate(http_requests_total[30s]))",
                |s| !s.is_empty(),
                super::STARTUP_TIMEOUT,
            )
            .await;
        stack
    }

    /// `HARVEN_WATCHDOG__*` pairs pointing every probe at this stack, on the default intervals (the
    /// rates over 30 s, as [`WINDOW`](super::daemon::WINDOW)).
    pub fn env(&self) -> Vec<(String, String)> {
        let names: Vec<&str> = self.containers.iter().map(TestContainer::name).collect();
        [
            ("PROMETHEUS__URL", self.prometheus.url()),
            ("PROMETHEUS__WINDOW", super::daemon::WINDOW.to_owned()),
            ("REDIS__URL", self.redis.url()),
            ("STATUS__OPENAI__URL", self.openai.url().to_string()),
            (
                "STATUS__SUPABASE__URL",
                self.status_supabase.url().to_string(),
            ),
            ("SUPABASE__URL", self.supabase.url().to_string()),
            ("SUPABASE__API_KEY", SUPABASE_KEY.to_owned()),
            ("DOCKER__CONTAINERS", names.join(",")),
        ]
        .into_iter()
        .map(|(k, v)| (format!("HARVEN_WATCHDOG__{k}"), v))
        .collect()
    }

    /// Stops every peer, removing the containers several at a time (one by one, 500 take minutes).
    pub fn stop(mut self) {
        let containers = std::mem::take(&mut self.containers);
        let chunk = containers.len().div_ceil(DOCKER_PARALLELISM).max(1);
        let mut chunks = Vec::new();
        let mut rest = containers;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(chunk));
            chunks.push(std::mem::replace(&mut rest, tail));
        }
        std::thread::scope(|s| {
            for chunk in chunks {
                s.spawn(move || drop(chunk));
            }
        });
    }
}

/// Starts `n` test containers, [`DOCKER_PARALLELISM`] at a time, in creation order.
pub async fn start_containers(n: usize) -> Vec<TestContainer> {
    futures_util::stream::iter(0..n)
        .map(|i| {
            TestContainer::start(
                ContainerOptions::new()
                    .name_hint(&format!("stack{i}"))
                    .env("JWT_SECRET", "x"),
            )
        })
        .buffered(DOCKER_PARALLELISM)
        .collect()
        .await
}
