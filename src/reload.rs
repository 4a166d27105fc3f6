//! Hot configuration reload: the handle that asks for one (SIGHUP in the binary, `POST /-/reload` in
//! the API), what a reload answers, and its metrics. [`crate::daemon`] carries it out: it reads the
//! configuration again from its [`ConfigSource`], refuses an invalid one (the running configuration
//! stays), and otherwise replaces its running generation of tasks by one built from the new
//! configuration. Incidents, the outbox and the engine's rule states live in the store, so a new
//! generation resumes them the way a restart does.
//!
//! Requests go over one channel to the daemon's own task, which handles them one at a time: two
//! reloads asked together run one after the other, never interleaved.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::{mpsc, oneshot};

use crate::clock::Timestamp;
use crate::config::{Config, ConfigSource, EmailTransport};

/// Keys that a running daemon cannot change: the listening socket is bound, the store is open, and
/// the HTTP server's limits are built into its accept loop and request stack (`crate::http::server`).
/// A reload that changes one reports it and keeps the running value until the next restart.
pub const RESTART_ONLY: &[&str] = &[
    "server.listen",
    "server.header_read_timeout",
    "server.request_timeout",
    "server.idle_timeout",
    "server.max_connections",
    "server.max_requests_in_flight",
    "store.path",
    "store.url",
];

/// Who asked for a reload, for the log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `SIGHUP` to the process.
    Signal,
    /// `POST /-/reload`.
    Api,
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Signal => "SIGHUP",
            Self::Api => "POST /-/reload",
        })
    }
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The new configuration runs. `restart_required` names the keys of [`RESTART_ONLY`] that changed;
    /// their running values stay in force.
    Applied {
        /// The restart-only keys the new configuration changed, in [`RESTART_ONLY`]'s order.
        restart_required: Vec<&'static str>,
    },
    /// The configuration (or the runbook it names) is invalid: every problem, as `check-config`
    /// words it. The running configuration stays.
    Invalid {
        /// Every problem, one line each.
        problems: Vec<String>,
    },
    /// The configuration is valid but its tasks could not be started; the running configuration
    /// stays (or was started again).
    Failed {
        /// Why the new generation could not start (a probe's client, the email transport).
        reason: String,
    },
    /// The daemon is shutting down and reloads nothing.
    Unavailable,
}

impl Outcome {
    /// The `result` label of `harven_watchdog_config_reloads_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Applied { .. } => "applied",
            Self::Invalid { .. } => "invalid",
            Self::Failed { .. } => "failed",
            Self::Unavailable => "unavailable",
        }
    }
}

/// One reload request and where its answer goes.
#[derive(Debug)]
pub(crate) struct Request {
    /// Who asked, for the log line.
    pub(crate) trigger: Trigger,
    /// Answered once the reload is done; a caller that went away is not waited for.
    pub(crate) reply: oneshot::Sender<Outcome>,
}

/// Asks the daemon to reload; cheap to clone. The binary's SIGHUP task and the API each hold one.
#[derive(Debug, Clone)]
pub struct Reloader {
    /// Bounded: a burst of requests waits to be queued instead of growing a queue.
    tx: mpsc::Sender<Request>,
}

impl Reloader {
    /// Asks for a reload and waits for its outcome (after any reload already under way).
    pub async fn reload(&self, trigger: Trigger) -> Outcome {
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Request { trigger, reply }).await.is_err() {
            return Outcome::Unavailable;
        }
        answer.await.unwrap_or(Outcome::Unavailable)
    }
}

/// What [`crate::run`] needs to reload: where the configuration is read again, and the channel the
/// requests arrive on.
#[derive(Debug)]
pub struct Reload {
    /// The files and environment to read again, as at start-up.
    pub(crate) source: ConfigSource,
    /// The sending side, cloned out to whoever may ask.
    pub(crate) handle: Reloader,
    /// Read by the daemon's own task only, one request at a time.
    pub(crate) requests: mpsc::Receiver<Request>,
}

impl Reload {
    /// Reloads will read `source` again (the same files and environment the daemon started with).
    pub fn new(source: ConfigSource) -> Self {
        // Requests wait here while one is handled; a burst of SIGHUPs only waits longer.
        let (tx, requests) = mpsc::channel(8);
        Self {
            source,
            handle: Reloader { tx },
            requests,
        }
    }

    /// A handle that asks this daemon to reload.
    pub fn handle(&self) -> Reloader {
        self.handle.clone()
    }
}

/// Puts the running values of the [`RESTART_ONLY`] keys back into `new` and names those that differed.
pub(crate) fn keep_restart_only(running: &Config, new: &mut Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if new.server.listen != running.server.listen {
        new.server.listen = running.server.listen;
        changed.push("server.listen");
    }
    let (run, new_limits) = (&running.server.limits, &mut new.server.limits);
    for (key, differs) in [
        (
            "server.header_read_timeout",
            run.header_read_timeout != new_limits.header_read_timeout,
        ),
        (
            "server.request_timeout",
            run.request_timeout != new_limits.request_timeout,
        ),
        (
            "server.idle_timeout",
            run.idle_timeout != new_limits.idle_timeout,
        ),
        (
            "server.max_connections",
            run.max_connections != new_limits.max_connections,
        ),
        (
            "server.max_requests_in_flight",
            run.max_requests_in_flight != new_limits.max_requests_in_flight,
        ),
    ] {
        if differs {
            changed.push(key);
        }
    }
    *new_limits = *run;
    if new.store.path != running.store.path {
        new.store.path.clone_from(&running.store.path);
        // The `.eml` outbox lives in the data directory: it stays with the running store.
        if let EmailTransport::Files { dir } = &mut new.smtp.transport {
            *dir = running.store.outbox_dir();
        }
        changed.push("store.path");
    }
    // The database and its connections' settings (`url`, the password, the timeouts, the readers)
    // are the open store's: any change waits for a restart, named by its main key.
    if new.store.postgres != running.store.postgres {
        new.store.postgres.clone_from(&running.store.postgres);
        changed.push("store.url");
    }
    changed
}

/// `result`: an [`Outcome::metric_label`] (a closed set).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// `harven_watchdog_config_last_reload_successful`, `_config_last_reload_success_timestamp_seconds`
/// and `_config_reloads_total{result}`, named after Prometheus's own `prometheus_config_*`. The start
/// counts as a successful load, as in Prometheus.
#[derive(Debug, Clone, Default)]
pub struct ReloadMetrics {
    /// 1 or 0 by the latest load; a refused reload sets 0 while the old configuration still runs.
    successful: Gauge,
    /// When the running configuration was loaded (Unix seconds, the watchdog's clock); unchanged
    /// by a refused reload.
    success_time: Gauge<f64, AtomicU64>,
    /// Reloads by result; the start is not counted here.
    reloads: Family<ResultLabel, Counter>,
}

impl ReloadMetrics {
    /// Registers the families; the daemon does it once, so reloads never register twice.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "config_last_reload_successful",
            "1 when the latest configuration load (start or reload) was applied, 0 when it was refused or failed",
            m.successful.clone(),
        );
        registry.register_with_unit(
            "config_last_reload_success_timestamp",
            "When the running configuration was loaded (Unix time)",
            Unit::Seconds,
            m.success_time.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads, by result (applied | invalid | failed)",
            m.reloads.clone(),
        );
        // At 0 from the start, so an `increase()` alert sees the first failed reload.
        for result in ["applied", "invalid", "failed"] {
            let _ = m.reloads.get_or_create(&ResultLabel { result });
        }
        m
    }

    /// The configuration the daemon started with is loaded, at `now`.
    pub fn started(&self, now: Timestamp) {
        self.successful.set(1);
        self.success_time.set(now.as_unix_secs_f64());
    }

    /// Records a reload's outcome at `now`.
    pub fn record(&self, outcome: &Outcome, now: Timestamp) {
        self.reloads
            .get_or_create(&ResultLabel {
                result: outcome.metric_label(),
            })
            .inc();
        match outcome {
            Outcome::Applied { .. } => self.started(now),
            Outcome::Invalid { .. } | Outcome::Failed { .. } => {
                self.successful.set(0);
            }
            Outcome::Unavailable => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_keys_keep_their_running_values() {
        let running = Config::load_with_env(&[], Vec::new()).expect("defaults");
        let mut new = Config::load_with_env(
            &[],
            vec![
                (
                    "HARVEN_WATCHDOG__SERVER__LISTEN".into(),
                    "127.0.0.1:1".into(),
                ),
                (
                    "HARVEN_WATCHDOG__STORE__PATH".into(),
                    "/elsewhere/w.db".into(),
                ),
                (
                    "HARVEN_WATCHDOG__SERVER__MAX_CONNECTIONS".into(),
                    "256".into(),
                ),
            ],
        )
        .expect("valid");
        assert_eq!(
            keep_restart_only(&running, &mut new),
            vec!["server.listen", "server.max_connections", "store.path"]
        );
        assert_eq!(new.server.listen, running.server.listen);
        assert_eq!(new.server.limits, running.server.limits);
        assert_eq!(new.store.path, running.store.path);
        assert!(
            matches!(&new.smtp.transport, EmailTransport::Files { dir } if *dir == running.store.outbox_dir()),
            "the .eml outbox stays with the running store: {:?}",
            new.smtp.transport
        );
        assert!(keep_restart_only(&running, &mut new).is_empty());
    }

    #[test]
    fn a_refused_reload_clears_the_success_gauge_and_keeps_the_timestamp() {
        let mut registry = Registry::with_prefix("t");
        let m = ReloadMetrics::register(&mut registry);
        m.started(Timestamp::from_unix_millis(1_000));
        m.record(
            &Outcome::Invalid {
                problems: vec!["x".into()],
            },
            Timestamp::from_unix_millis(5_000),
        );
        assert_eq!(m.successful.get(), 0);
        assert_eq!(m.success_time.get(), 1.0);
        m.record(
            &Outcome::Applied {
                restart_required: Vec::new(),
            },
            Timestamp::from_unix_millis(9_000),
        );
        assert_eq!(m.successful.get(), 1);
        assert_eq!(m.success_time.get(), 9.0);
        let text = {
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, &registry).expect("encode");
            out
        };
        assert!(
            text.contains(r#"t_config_reloads_total{result="invalid"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("t_config_last_reload_success_timestamp_seconds 9.0"),
            "{text}"
        );
    }
}
