//! The outbound heartbeat: a dead man's switch. Every `interval` the watchdog requests the configured
//! URL (healthchecks.io and the like alert when the pings stop), so someone learns when the watchdog
//! itself dies or loses its network.
//!
//! The URL usually embeds the check's secret: it never reaches a log line, a metric or an error; logs
//! name only its host.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::config::HeartbeatConfig;

/// `result="ok"`, `"failed"` or `"standby"` (not sent: this replica cannot page); never the URL or its host (the URL is a secret, and a label would
/// outlive a reload that changed it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// `harven_watchdog_heartbeats_total{result}` (result: ok | failed | standby).
#[derive(Debug, Clone, Default)]
pub struct HeartbeatMetrics {
    sent: Family<ResultLabel, Counter>,
}

impl HeartbeatMetrics {
    /// Registers the family in `registry` (once: every configuration generation's heartbeat
    /// records into the same counters).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "heartbeats",
            "Heartbeat requests, by result",
            m.sent.clone(),
        );
        m
    }
}

/// Pings the heartbeat URL every interval until `shutdown`: one request at once, then one per
/// interval. A failure is logged when the heartbeat starts and stops failing, and always counted.
///
/// A tick when `may_page()` is false sends nothing (counted as `result="standby"`): the switch
/// must hear from a watchdog that can page. With replicas on a shared store only the leader pings,
/// so when none can lead (the database is down for all of them, or both died) the pings stop and
/// the dead man's switch alerts, instead of a standby keeping it quiet while nobody pages. A single
/// node always leads.
pub async fn run(
    config: HeartbeatConfig,
    client: reqwest::Client,
    metrics: HeartbeatMetrics,
    may_page: impl Fn() -> bool + Send,
    shutdown: CancellationToken,
) {
    let host = url::Url::parse(config.url.expose())
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    // Both results at 0 from the start, so an `increase()` alert sees the first failure.
    for result in ["ok", "failed", "standby"] {
        let _ = metrics.sent.get_or_create(&ResultLabel { result });
    }
    let mut failing = false;
    // Monotonic ticks, the first at once. `Delay`: a ping that ran long (up to the timeout, which
    // is shorter than the interval) or a stalled runtime pushes the next one back instead of
    // firing a burst to catch up; the checker only needs pings to keep coming.
    let mut ticks = tokio::time::interval(config.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.cancelled() => return,
        }
        if !may_page() {
            metrics
                .sent
                .get_or_create(&ResultLabel { result: "standby" })
                .inc();
            continue;
        }
        let outcome = client
            .get(config.url.expose())
            .timeout(config.timeout)
            .send()
            .await;
        // Success is a 2xx (after the redirects the default client follows): a 4xx means the URL is
        // wrong, and then the checker is not being pinged at all.
        let ok = matches!(&outcome, Ok(r) if r.status().is_success());
        metrics
            .sent
            .get_or_create(&ResultLabel {
                result: if ok { "ok" } else { "failed" },
            })
            .inc();
        match (ok, failing) {
            (false, false) => {
                // Status or error kind only: the error's own text could quote the URL.
                let why = match &outcome {
                    Ok(r) => format!("HTTP {}", r.status()),
                    Err(e) if e.is_timeout() => "timeout".to_owned(),
                    Err(e) if e.is_connect() => "connection failed".to_owned(),
                    Err(_) => "request failed".to_owned(),
                };
                tracing::warn!(host = %host, %why, "heartbeat failing: the dead man's switch may alert");
                failing = true;
            }
            (true, true) => {
                tracing::info!(host = %host, "heartbeat answered again");
                failing = false;
            }
            _ => {}
        }
    }
}
