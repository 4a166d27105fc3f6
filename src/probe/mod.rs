//! The probes: one task per source, each polling on its own interval with its own timeout, each turning
//! whatever its peer does (answers, refuses, hangs, sends HTML or 20 MB) into a [`ProbeReport`].
//!
//! **A probe never returns an error to its caller.** [`Probe::poll`] yields observations or a
//! [`Failure`]; [`poll_once`] adds the overall timeout, so even a probe that forgot one cannot hang the
//! daemon. [`run`] is the loop the daemon spawns per probe; `diagnose` calls [`poll_once`] directly.

pub mod coolify;
pub mod docker;
pub mod http;
pub mod openai;
pub mod prometheus;
pub mod redis;
pub mod sentry;
pub mod status;
pub mod supabase;
pub mod window;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, Timestamp};
use crate::locale::{Msg, MsgId};
use crate::observe::{Failure, FailureKind, Observation, ProbeReport};

/// One source the watchdog reads.
pub trait Probe: Send + 'static {
    /// The source name in reports and metrics (`prometheus`, `status.openai`, `redis`, …).
    fn source(&self) -> &str;
    /// Time between the starts of two polls (jitter is added by [`run`]).
    fn interval(&self) -> Duration;
    /// Bound on one whole poll; [`poll_once`] enforces it.
    fn timeout(&self) -> Duration;
    /// A signal to poll before the interval is over (the Docker probe's Engine events); [`run`] waits
    /// at least [`MIN_POLL_GAP`] between two polls anyway. `None`: the probe only polls on its interval.
    fn wake(&self) -> Option<Arc<Notify>> {
        None
    }
    /// Time between polls while a rule over this source is pending or recovering (see [`Hurry`]):
    /// a breach is confirmed, and a recovery seen, within this of the rule's `for`. `None`: always
    /// [`interval`](Probe::interval).
    fn fast_interval(&self) -> Option<Duration> {
        None
    }
    /// One poll at wall time `now`: what the source says, or why it could not be read.
    fn poll(
        &mut self,
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<Observation>, Failure>> + Send;
}

/// Polls `probe` once, bounded by its timeout, and measures it.
pub async fn poll_once<P: Probe>(probe: &mut P, clock: &Clock) -> ProbeReport {
    // The report is stamped with the wall time the poll started (what rules' `for` and the probes'
    // windows count from); its duration is measured on the monotonic clock, which a wall-clock
    // step cannot make negative.
    let at = clock.now();
    let started = Instant::now();
    let timeout = probe.timeout();
    let result = match tokio::time::timeout(timeout, probe.poll(at)).await {
        Ok(result) => result,
        Err(_) => Err(Failure::said(
            FailureKind::Timeout,
            Msg::new(MsgId::NoAnswerWithin).duration("limit", timeout),
        )),
    };
    ProbeReport {
        source: probe.source().to_owned(),
        at,
        took: started.elapsed(),
        result,
    }
}

/// The shortest time between the starts of two polls of one probe, however often it is woken.
/// A burst of Engine events (a compose project restarting, a crash loop) or a too short
/// `fast_interval` thus costs at most one poll a second.
pub const MIN_POLL_GAP: Duration = Duration::from_secs(1);

/// The probe names (`prometheus`, `docker`, … as the catalogue's specs name them) a rule over which
/// is pending or recovering now, as the watch loop last found them: those probes poll at their
/// [`Probe::fast_interval`].
pub type Hurry = tokio::sync::watch::Receiver<std::collections::BTreeSet<String>>;

/// A [`Hurry`] that never names any probe (one-off polls, tests).
pub fn never_hurry() -> Hurry {
    tokio::sync::watch::channel(std::collections::BTreeSet::new()).1
}

/// Polls `probe` until `shutdown`, sending every report to `reports` and recording it in `metrics`.
/// Polls every interval — every fast interval while `hurry` names it — or sooner when the probe's
/// [`Probe::wake`] fires (not within [`MIN_POLL_GAP`] of the previous poll). A failing source is
/// logged when it starts and stops failing, not at every poll; every failure is counted. Ends early
/// if the receiver is gone.
pub async fn run<P: Probe>(
    mut probe: P,
    clock: Clock,
    reports: mpsc::Sender<ProbeReport>,
    metrics: ProbeMetrics,
    mut hurry: Hurry,
    shutdown: CancellationToken,
) {
    let mut failing = false;
    let wake = probe.wake();
    // `hurry` holds the catalogue's probe names: `status` hurries `status.openai`, `openai.api`
    // only itself (never `openai.usage`).
    let source = probe.source().to_owned();
    let hurried = |names: &std::collections::BTreeSet<String>| {
        names
            .iter()
            .any(|p| crate::observe::is_source_of(p, &source))
    };
    // Only a probe that can hurry listens to `hurry`; a closed channel turns it off for good.
    let mut listening = probe.fast_interval().is_some();
    loop {
        // Intervals are timed on tokio's monotonic clock, not on `clock`: they are about load on
        // the peer, and tests pause tokio time to run them without sleeping.
        let started = tokio::time::Instant::now();
        let report = tokio::select! {
            r = poll_once(&mut probe, &clock) => r,
            () = shutdown.cancelled() => return,
        };
        metrics.record(&report);
        match (&report.result, failing) {
            (Err(f), false) => {
                tracing::warn!(probe = %report.source, reason = f.kind.label(), detail = %f.detail, "source unreachable");
                failing = true;
            }
            (Ok(_), true) => {
                tracing::info!(probe = %report.source, "source answers again");
                failing = false;
            }
            _ => {}
        }
        // A bounded channel: a busy watch loop delays the next poll rather than piling reports up.
        if reports.send(report).await.is_err() {
            return;
        }
        let normal = started + jittered(probe.interval());
        // Waits for the next poll; a change of `hurry` only recomputes the deadline (a hurried
        // deadline may already be past: then it polls at once), it never polls by itself.
        loop {
            // Hurried: the fast interval (never under MIN_POLL_GAP), but never later than the
            // normal deadline already set.
            let deadline = match probe.fast_interval() {
                Some(fast) if hurried(&hurry.borrow()) => {
                    normal.min(started + fast.max(MIN_POLL_GAP))
                }
                _ => normal,
            };
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => break,
                () = woken(wake.as_deref(), started + MIN_POLL_GAP) => break,
                changed = hurry.changed(), if listening => {
                    // The watch loop is gone (the generation is stopping): plain intervals.
                    listening = changed.is_ok();
                }
                () = shutdown.cancelled() => return,
            }
        }
    }
}

/// Resolves when `wake` is notified, but not before `not_before`; never without a `wake`.
async fn woken(wake: Option<&Notify>, not_before: tokio::time::Instant) {
    match wake {
        Some(wake) => {
            wake.notified().await;
            tokio::time::sleep_until(not_before).await;
        }
        None => std::future::pending().await,
    }
}

/// `interval` plus up to a tenth of it, so probes started together drift apart instead of hitting
/// their peers in step.
fn jittered(interval: Duration) -> Duration {
    interval + interval.mul_f64(fastrand::f64() / 10.0)
}

/// `probe="…"`: the source name, so `status.openai` and `status.anthropic` are two series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ProbeLabel {
    probe: String,
}

/// `probe` and `reason` ([`FailureKind::label`], a closed set: the series count stays bounded).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    probe: String,
    reason: &'static str,
}

/// `harven_watchdog_probe_{up,duration_seconds,errors_total}` and
/// `harven_watchdog_docker_api_requests_total`.
#[derive(Debug, Clone)]
pub struct ProbeMetrics {
    /// 1 or 0 by the latest report; removed by [`ProbeMetrics::forget`].
    up: Family<ProbeLabel, Gauge>,
    /// One poll's duration, timeouts included (they end at the probe's timeout).
    duration: Family<ProbeLabel, Histogram, fn() -> Histogram>,
    /// Failed polls; created at 0 by [`ProbeMetrics::attach`], never removed (a counter that
    /// vanished and came back would read as a reset).
    errors: Family<ErrorLabels, Counter>,
    /// The Docker probe's Engine requests, shared by every generation's probe.
    docker_requests: docker::EngineRequests,
}

impl Default for ProbeMetrics {
    fn default() -> Self {
        Self {
            up: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            errors: Family::default(),
            docker_requests: docker::EngineRequests::default(),
        }
    }
}

/// Buckets from 1 ms (a local Redis ping) to 10 s (the longest default probe timeout).
fn duration_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

impl ProbeMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "probe_up",
            "1 when the probe's latest poll read its source, 0 when it failed",
            m.up.clone(),
        );
        registry.register_with_unit(
            "probe_duration",
            "Time one poll of the probe took",
            Unit::Seconds,
            m.duration.clone(),
        );
        registry.register(
            "probe_errors",
            "Failed polls, by probe and reason",
            m.errors.clone(),
        );
        registry.register(
            "docker_api_requests",
            "Requests the Docker probe made to the Docker Engine, by call",
            m.docker_requests.family(),
        );
        m
    }

    /// Has `probe` count its source's requests in these metrics (the Docker probe's Engine calls),
    /// and shows its error counters at 0 for every reason, so an `increase()` alert sees its first
    /// failure.
    pub fn attach(&self, probe: &mut AnyProbe) {
        for kind in FailureKind::ALL {
            let _ = self.errors.get_or_create(&ErrorLabels {
                probe: probe.source().to_owned(),
                reason: kind.label(),
            });
        }
        if let AnyProbe::Docker(p) = probe {
            p.count_requests_in(self.docker_requests.clone());
        }
    }

    /// Drops the `up` and `duration` series of a probe that a reloaded configuration no longer has,
    /// so its last `up` (maybe 0, alerting) does not stay for ever. Its error counters stay.
    pub fn forget(&self, source: &str) {
        let label = ProbeLabel {
            probe: source.to_owned(),
        };
        self.up.remove(&label);
        self.duration.remove(&label);
    }

    /// Records one report.
    pub fn record(&self, report: &ProbeReport) {
        let label = ProbeLabel {
            probe: report.source.clone(),
        };
        self.duration
            .get_or_create(&label)
            .observe(report.took.as_secs_f64());
        match &report.result {
            Ok(_) => {
                self.up.get_or_create(&label).set(1);
            }
            Err(f) => {
                self.up.get_or_create(&label).set(0);
                let labels = ErrorLabels {
                    probe: report.source.clone(),
                    reason: f.kind.label(),
                };
                self.errors.get_or_create(&labels).inc();
            }
        }
    }
}

/// Every configured probe, as one type so the daemon and `diagnose` can hold them in a list.
#[derive(Debug)]
pub enum AnyProbe {
    /// The backend's metrics, through Prometheus' query API.
    Prometheus(prometheus::PrometheusProbe),
    /// Redis: PING latency, `INFO` memory, stats and clients, key counts by pattern.
    Redis(redis::RedisProbe),
    /// One statuspage.io page (`status.<name>`).
    Status(status::StatusPageProbe),
    /// The Supabase project: its auth health and REST endpoints.
    Supabase(supabase::SupabaseProbe),
    /// The Docker Engine: the watched containers and the roles' replicas.
    Docker(docker::DockerProbe),
    /// OpenAI's API, from our side (`openai.api`).
    OpenaiApi(openai::ApiProbe),
    /// The team's Coolify: the application's deployments and env names (`coolify`).
    Coolify(coolify::CoolifyProbe),
    /// The OpenAI organization's costs against the monthly budget (`openai.usage`).
    OpenaiUsage(openai::UsageProbe),
    /// Sentry's issues, events and releases for the configured projects (`sentry`).
    Sentry(sentry::SentryProbe),
}

/// Why the probes could not be built (a broken environment at start-up, such as no CA certificates).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub(crate) String);

/// The probes `config` asks for, in a stable order.
///
/// `wanted` is what the runbook reads: a probe may leave out what it does not name (the Docker probe
/// reads memory stats and logs only of the containers the runbook looks at).
pub fn build_all(
    config: &crate::config::Config,
    wanted: &crate::observe::Wanted,
) -> Result<Vec<AnyProbe>, BuildError> {
    let mut probes = vec![AnyProbe::Prometheus(
        prometheus::PrometheusProbe::with_thresholds(
            config.prometheus.clone(),
            wanted.thresholds("prometheus.p95_seconds"),
        )?,
    )];
    // One HTTP client for the status pages, built only when one is configured. The Supabase probe
    // has its own, which follows no redirect (its requests carry the key).
    if !config.status_pages.is_empty() {
        let client = http::shared_client(config.status_pages.iter().map(|p| p.timeout))?;
        for page in &config.status_pages {
            probes.push(AnyProbe::Status(status::StatusPageProbe::new(
                page.clone(),
                client.clone(),
            )));
        }
    }
    if let Some(s) = &config.supabase {
        probes.push(AnyProbe::Supabase(supabase::SupabaseProbe::new(s.clone())?));
    }
    // Each OpenAI probe is on with its own key; each has its own client, which follows no
    // redirect (its requests carry a key).
    if let Some(o) = &config.openai {
        if o.api_key.is_some() {
            probes.push(AnyProbe::OpenaiApi(openai::ApiProbe::new(o)?));
        }
        if o.usage.is_some() {
            probes.push(AnyProbe::OpenaiUsage(openai::UsageProbe::new(o)?));
        }
    }
    // [sentry]: on with a token; its own client, which follows no redirect.
    if let Some(s) = &config.sentry {
        probes.push(AnyProbe::Sentry(sentry::SentryProbe::new(s)?));
    }
    // [coolify]: its own client, which follows no redirect (its requests carry the token).
    if let Some(c) = &config.coolify {
        probes.push(AnyProbe::Coolify(coolify::CoolifyProbe::new(c)?));
    }
    probes.push(AnyProbe::Redis(redis::RedisProbe::new(
        config.redis.clone(),
    )?));
    probes.push(AnyProbe::Docker(docker::DockerProbe::with_wanted(
        config.docker.clone(),
        wanted.clone(),
    )));
    Ok(probes)
}

impl Probe for AnyProbe {
    fn source(&self) -> &str {
        match self {
            Self::Prometheus(p) => p.source(),
            Self::Redis(p) => p.source(),
            Self::Status(p) => p.source(),
            Self::Supabase(p) => p.source(),
            Self::Docker(p) => p.source(),
            Self::OpenaiApi(p) => p.source(),
            Self::OpenaiUsage(p) => p.source(),
            Self::Coolify(p) => p.source(),
            Self::Sentry(p) => p.source(),
        }
    }

    fn interval(&self) -> Duration {
        match self {
            Self::Prometheus(p) => p.interval(),
            Self::Redis(p) => p.interval(),
            Self::Status(p) => p.interval(),
            Self::Supabase(p) => p.interval(),
            Self::Docker(p) => p.interval(),
            Self::OpenaiApi(p) => p.interval(),
            Self::Coolify(p) => p.interval(),
            Self::OpenaiUsage(p) => p.interval(),
            Self::Sentry(p) => p.interval(),
        }
    }

    fn timeout(&self) -> Duration {
        match self {
            Self::Prometheus(p) => p.timeout(),
            Self::Redis(p) => p.timeout(),
            Self::Status(p) => p.timeout(),
            Self::Supabase(p) => p.timeout(),
            Self::Docker(p) => p.timeout(),
            Self::Coolify(p) => p.timeout(),
            Self::OpenaiApi(p) => p.timeout(),
            Self::OpenaiUsage(p) => p.timeout(),
            Self::Sentry(p) => p.timeout(),
        }
    }

    fn wake(&self) -> Option<Arc<Notify>> {
        match self {
            Self::Prometheus(p) => p.wake(),
            Self::Redis(p) => p.wake(),
            Self::Status(p) => p.wake(),
            Self::Supabase(p) => p.wake(),
            Self::Coolify(p) => p.wake(),
            Self::Docker(p) => p.wake(),
            Self::OpenaiApi(p) => p.wake(),
            Self::OpenaiUsage(p) => p.wake(),
            Self::Sentry(p) => p.wake(),
        }
    }

    fn fast_interval(&self) -> Option<Duration> {
        match self {
            Self::Prometheus(p) => p.fast_interval(),
            Self::Redis(p) => p.fast_interval(),
            Self::Status(p) => p.fast_interval(),
            Self::Coolify(p) => p.fast_interval(),
            Self::Supabase(p) => p.fast_interval(),
            Self::Docker(p) => p.fast_interval(),
            Self::OpenaiApi(p) => p.fast_interval(),
            Self::OpenaiUsage(p) => p.fast_interval(),
            Self::Sentry(p) => p.fast_interval(),
        }
    }

    async fn poll(&mut self, now: Timestamp) -> Result<Vec<Observation>, Failure> {
        match self {
            Self::Prometheus(p) => p.poll(now).await,
            Self::Redis(p) => p.poll(now).await,
            Self::Coolify(p) => p.poll(now).await,
            Self::Status(p) => p.poll(now).await,
            Self::Supabase(p) => p.poll(now).await,
            Self::Docker(p) => p.poll(now).await,
            Self::OpenaiApi(p) => p.poll(now).await,
            Self::OpenaiUsage(p) => p.poll(now).await,
            Self::Sentry(p) => p.poll(now).await,
        }
    }
}

/// Polls every probe once, concurrently; the reports in the probes' order.
pub async fn poll_all(probes: &mut [AnyProbe], clock: &Clock) -> Vec<ProbeReport> {
    futures_util::future::join_all(probes.iter_mut().map(|p| poll_once(p, clock))).await
}

/// The first `max` characters of an untrusted string (a peer's words quoted in a failure or a value).
/// Cut by characters, not bytes, so a cut never splits a UTF-8 sequence.
fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    use super::*;

    /// A probe that records when it is polled.
    struct Ticker {
        polls: Arc<Mutex<Vec<tokio::time::Instant>>>,
    }

    impl Probe for Ticker {
        fn source(&self) -> &str {
            "prometheus"
        }
        fn interval(&self) -> Duration {
            Duration::from_secs(10)
        }
        fn timeout(&self) -> Duration {
            Duration::from_secs(1)
        }
        fn fast_interval(&self) -> Option<Duration> {
            Some(Duration::from_secs(2))
        }
        async fn poll(&mut self, _now: Timestamp) -> Result<Vec<Observation>, Failure> {
            self.polls
                .lock()
                .expect("lock")
                .push(tokio::time::Instant::now());
            Ok(Vec::new())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hurried_probe_polls_at_its_fast_interval_then_at_its_interval_again() {
        let polls = Arc::new(Mutex::new(Vec::new()));
        let (hurry_tx, hurry_rx) = tokio::sync::watch::channel(BTreeSet::new());
        let (tx, mut rx) = mpsc::channel(16);
        let shutdown = CancellationToken::new();
        let probe = Ticker {
            polls: Arc::clone(&polls),
        };
        let runner = tokio::spawn(run(
            probe,
            Clock::system(),
            tx,
            ProbeMetrics::default(),
            hurry_rx,
            shutdown.clone(),
        ));
        rx.recv().await.expect("the first poll");
        // A rule over Prometheus is pending now (the watch loop says so after that report).
        hurry_tx.send_replace(BTreeSet::from(["prometheus".to_owned()]));
        for _ in 0..3 {
            rx.recv().await.expect("a fast poll");
        }
        hurry_tx.send_replace(BTreeSet::new());
        rx.recv().await.expect("the poll already due");
        rx.recv().await.expect("a poll on the interval");
        shutdown.cancel();
        runner.await.expect("join");
        let at = polls.lock().expect("lock").clone();
        let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(&gaps[..3], [Duration::from_secs(2); 3], "{gaps:?}");
        let slow = gaps[4];
        assert!(
            slow >= Duration::from_secs(10) && slow <= Duration::from_secs(11),
            "back to the 10 s interval (plus its jitter): {gaps:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_without_a_fast_interval_ignores_hurry() {
        struct Plain(Ticker);
        impl Probe for Plain {
            fn source(&self) -> &str {
                "prometheus"
            }
            fn interval(&self) -> Duration {
                self.0.interval()
            }
            fn timeout(&self) -> Duration {
                self.0.timeout()
            }
            async fn poll(&mut self, now: Timestamp) -> Result<Vec<Observation>, Failure> {
                self.0.poll(now).await
            }
        }
        let polls = Arc::new(Mutex::new(Vec::new()));
        let (hurry_tx, hurry_rx) = tokio::sync::watch::channel(BTreeSet::new());
        hurry_tx.send_replace(BTreeSet::from(["prometheus".to_owned()]));
        let (tx, mut rx) = mpsc::channel(16);
        let shutdown = CancellationToken::new();
        let runner = tokio::spawn(run(
            Plain(Ticker {
                polls: Arc::clone(&polls),
            }),
            Clock::system(),
            tx,
            ProbeMetrics::default(),
            hurry_rx,
            shutdown.clone(),
        ));
        rx.recv().await.expect("a poll");
        rx.recv().await.expect("a poll");
        shutdown.cancel();
        runner.await.expect("join");
        let at = polls.lock().expect("lock").clone();
        assert!(at[1] - at[0] >= Duration::from_secs(10), "{at:?}");
        drop(hurry_tx);
    }
}
