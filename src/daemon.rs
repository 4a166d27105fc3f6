//! [`run`]: the daemon, as one function a test can start in-process.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{Config, EmailTransport, TlsMode};
use crate::engine::Engine;
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::probe::{self, ProbeMetrics};
use crate::runbook::{Runbook, RunbookError};
use crate::watch::{self, EngineMetrics};

/// How long in-flight HTTP requests get to finish once shutdown is asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error("cannot start the probes: {0}")]
    Probes(#[from] probe::BuildError),
    #[error("{0}")]
    Runbook(#[from] RunbookError),
}

impl RunError {
    /// A short, stable label for metrics and exit reporting.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::DataDir { .. } => "data_dir",
            Self::Serve(_) => "serve",
            Self::Probes(_) => "probes",
            Self::Runbook(_) => "runbook",
        }
    }
}

/// Runs the watchdog until `shutdown` is cancelled: serves HTTP on `listener` with `config`, reading
/// wall time from `clock`. Returns once the server has stopped, at most [`SHUTDOWN_GRACE`] after the
/// cancellation.
pub async fn run(
    config: Config,
    listener: TcpListener,
    clock: Clock,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let data_dir = config.store.data_dir();
    std::fs::create_dir_all(&data_dir).map_err(|source| RunError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    announce(&config, &clock, &listener);

    let mut metrics = Metrics::new();
    let probe_metrics = ProbeMetrics::register(metrics.registry_mut());
    let (reports_tx, reports_rx) = tokio::sync::mpsc::channel(64);
    let mut tasks = tokio::task::JoinSet::new();
    for p in probe::build_all(&config)? {
        tasks.spawn(probe::run(
            p,
            clock.clone(),
            reports_tx.clone(),
            probe_metrics.clone(),
            shutdown.clone(),
        ));
    }
    drop(reports_tx);
    let runbook = Arc::new(Runbook::load(config.runbook.path.as_deref())?);
    let engine = Engine::new(runbook, config.runbook.locale);
    let engine_metrics = EngineMetrics::register(metrics.registry_mut());
    tasks.spawn(watch::run(
        engine,
        reports_rx,
        clock.clone(),
        engine_metrics,
        shutdown.clone(),
    ));

    let state = Arc::new(AppState { metrics, data_dir });
    let app = http::router(state);
    let server =
        axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    tokio::select! {
        result = server => result.map_err(RunError::Serve)?,
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => tracing::warn!(grace = ?SHUTDOWN_GRACE, "requests still open at shutdown were cut off"),
    }
    tasks.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// The start-up lines an operator looks for: where we listen and where emails go.
fn announce(config: &Config, clock: &Clock, listener: &TcpListener) {
    let addr = listener
        .local_addr()
        .map_or_else(|_| config.server.listen.to_string(), |a| a.to_string());
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %addr,
        store = %config.store.path.display(),
        now = %clock.now(),
        "harven-watchdog started"
    );
    match &config.smtp.transport {
        EmailTransport::Files { dir } => tracing::warn!(
            outbox = %dir.display(),
            "no [smtp] host configured: emails will be written as .eml files under {}",
            dir.display()
        ),
        EmailTransport::Smtp(s) => {
            tracing::info!(host = %s.host, port = s.port, tls = ?s.tls, "emails will be sent over SMTP");
            if s.tls == TlsMode::None {
                tracing::warn!(host = %s.host, "smtp.tls = \"none\": emails and any SMTP login travel in plaintext");
            }
        }
    }
}
