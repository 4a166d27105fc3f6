//! `cargo bench --bench engine`: what one evaluation and one probe cycle cost.
//!
//! - `evaluate/10k_series_500_containers`: [`Engine::evaluate`] with the shipped runbook over an
//!   evidence table as large as a big deployment makes it: 10 000 Prometheus series (p95 per handler,
//!   a few of them above the 3 s threshold so rules are pending and firing) and every observation the
//!   Docker probe reports for 500 containers and the `backend` and `redis` roles the runbook reads.
//! - `probe_cycle/test_stack`: one pass of every probe ([`probe::poll_all`]) against the integration
//!   tests' real peers: Prometheus scraping the simulated backend, Redis, three containers on the Docker
//!   Engine, and the local status pages and Supabase. It needs what `scripts/test.sh` installs and
//!   fails loudly without it, as the tests do.
//!
//! `scripts/bench.sh` runs these benches and the end-to-end figures (`examples/stack_bench.rs`).

// The integration tests' peers. Some imports there serve only their `#[cfg(test)]` parts.
#[allow(unused_imports)]
#[path = "../tests/it/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use harven_watchdog::clock::{Clock, Timestamp};
use harven_watchdog::config::{Config, Locale};
use harven_watchdog::engine::Engine;
use harven_watchdog::observe::{Evidence, Key, Observation, ProbeReport};
use harven_watchdog::probe;
use harven_watchdog::runbook::Runbook;

use support::stack::TestStack;

/// Prometheus series in the evaluation bench's snapshot.
const SERIES: usize = 10_000;
/// Containers in the evaluation bench's snapshot.
const CONTAINERS: usize = 500;
/// The log patterns of the default configuration, as the Docker probe labels them.
const LOG_PATTERNS: [&str; 7] = [
    "error",
    "openai",
    "429",
    "supabase",
    "jwt",
    "too_many_connections",
    "permission_denied",
];

/// One successful report of `source` at `at`.
fn report(source: &str, at: Timestamp, observations: Vec<Observation>) -> ProbeReport {
    ProbeReport {
        source: source.to_owned(),
        at,
        took: Duration::from_millis(5),
        result: Ok(observations),
    }
}

/// The Prometheus probe's report: [`SERIES`] series, mostly p95 per handler; every 1000th handler is
/// slow, so the latency rule has instances to hold.
fn prometheus_report(at: Timestamp) -> ProbeReport {
    let scalars = [
        ("prometheus.error_ratio", 0.004),
        ("prometheus.auth_failure_ratio", 0.015),
        ("prometheus.request_rate", 41.0),
        ("prometheus.request_rate_baseline", 37.5),
        ("prometheus.request_rate_ratio", 1.09),
    ];
    let mut obs: Vec<Observation> = scalars
        .iter()
        .map(|(name, v)| Observation::number(Key::new(name), *v))
        .collect();
    obs.push(Observation::boolean(
        Key::new("prometheus.auth_exact"),
        true,
    ));
    obs.push(Observation::boolean(
        Key::new("prometheus.backend_up").with("instance", "harven-backend:8000"),
        true,
    ));
    for i in 0..SERIES - obs.len() {
        let p95 = if i % 1000 == 0 {
            3.4
        } else {
            0.05 + (i % 97) as f64 * 0.02
        };
        obs.push(Observation::number(
            Key::new("prometheus.p95_seconds").with("handler", format!("/api/h{i}")),
            p95,
        ));
    }
    report("prometheus", at, obs)
}

/// The Docker probe's report for [`CONTAINERS`] healthy containers, `harven-backend` first, and for
/// the `backend` and `redis` roles over them (the ones the runbook reads).
fn docker_report(at: Timestamp) -> ProbeReport {
    let mut obs = Vec::new();
    let roles = ["backend", "redis"].map(|r| ("role", r.to_owned()));
    let containers = (0..CONTAINERS).map(|i| {
        let name = match i {
            0 => "harven-backend".to_owned(),
            1 => "harven-redis".to_owned(),
            _ => format!("svc-{i}"),
        };
        ("container", name)
    });
    for (label, name) in roles.into_iter().chain(containers) {
        let key = |n: &'static str| Key::new(n).with(label, name.clone());
        if label == "container" {
            obs.push(Observation::boolean(key("docker.present"), true));
        }
        obs.extend([
            Observation::boolean(key("docker.running"), true),
            Observation::text(key("docker.health"), "healthy"),
            Observation::number(key("docker.exit_code"), 0.0),
            Observation::number(key("docker.restart_count"), 0.0),
            Observation::number(key("docker.restarts"), 0.0),
            Observation::boolean(key("docker.oom_killed"), false),
            Observation::number(key("docker.uptime_seconds"), 259_200.0),
            Observation::text(key("docker.image"), "ghcr.io/harven-ai/backend:1.14.2"),
            Observation::boolean(key("docker.recent_deploy"), false),
            Observation::number(key("docker.memory_bytes"), 432_013_312.0),
            Observation::number(key("docker.memory_limit_bytes"), 1_073_741_824.0),
            Observation::number(key("docker.memory_ratio"), 0.4),
            Observation::number(key("docker.memory_growth_bytes_per_hour"), 2_097_152.0),
            Observation::boolean(key("docker.env_present").with("var", "JWT_SECRET"), true),
        ]);
        for pattern in LOG_PATTERNS {
            obs.push(Observation::number(
                key("docker.log_lines_per_minute").with("pattern", pattern),
                0.0,
            ));
        }
    }
    report("docker", at, obs)
}

fn evaluate(c: &mut Criterion) {
    let t0 = Timestamp::from_unix_millis(1_795_000_000_000);
    let mut evidence = Evidence::new();
    evidence.apply(prometheus_report(t0));
    evidence.apply(docker_report(t0));
    let runbook = Arc::new(Runbook::embedded());
    let mut engine = Engine::new(runbook, Locale::PtBr);
    // Bring the slow handlers' rule instances to firing (past the rule's 2m), as in a real incident.
    engine.evaluate(&evidence, t0);
    let now = t0 + Duration::from_secs(180);
    let first = engine.evaluate(&evidence, now);
    assert!(
        first.symptoms.len() >= SERIES / 1000,
        "the snapshot should hold firing symptoms: {:?}",
        first.symptoms.len()
    );
    let mut group = c.benchmark_group("evaluate");
    group.sample_size(20);
    group.bench_function("10k_series_500_containers", |b| {
        b.iter_batched_ref(
            || engine.clone(),
            |engine| engine.evaluate(&evidence, now),
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

fn probe_cycle(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let stack = rt.block_on(TestStack::start(3));
    let config = Config::load_with_env(&[], stack.env()).expect("the bench configuration");
    let clock = Clock::system();
    let mut probes = rt
        .block_on(async { probe::build_all(&config, &Runbook::embedded().wanted()) })
        .expect("probes");
    // Every source must answer, or the bench would time failures instead of a cycle.
    let reports = rt.block_on(probe::poll_all(&mut probes, &clock));
    for r in &reports {
        assert!(r.result.is_ok(), "{} failed: {:?}", r.source, r.result);
    }
    let mut group = c.benchmark_group("probe_cycle");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("test_stack", |b| {
        b.iter(|| rt.block_on(probe::poll_all(&mut probes, &clock)));
    });
    group.finish();
    drop(probes);
    stack.stop();
}

criterion_group!(benches, evaluate, probe_cycle);
criterion_main!(benches);
