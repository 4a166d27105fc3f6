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
use crate::notify::{self, AnyTransport, NotifyMetrics, SenderConfig};
use crate::pager::{Pager, PagerConfig, PagerHandle};
use crate::probe::{self, ProbeMetrics};
use crate::runbook::{Runbook, RunbookError};
use crate::store::{Store, StoreError};
use crate::watch::{self, EngineMetrics};
use tokio::sync::Notify;

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
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot start the email sender: {0}")]
    Transport(#[from] crate::notify::BuildError),
    #[error("cannot load the incidents: {0}")]
    Pager(#[from] crate::pager::PagerError),
    #[error("cannot build the heartbeat client: {0}")]
    Heartbeat(String),
}

impl RunError {
    /// A short, stable label for metrics and exit reporting.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::DataDir { .. } => "data_dir",
            Self::Serve(_) => "serve",
            Self::Probes(_) => "probes",
            Self::Runbook(_) => "runbook",
            Self::Store(_) => "store",
            Self::Transport(_) => "transport",
            Self::Pager(_) => "pager",
            Self::Heartbeat(_) => "heartbeat",
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
    let engine = Engine::new(Arc::clone(&runbook), config.runbook.locale);
    let engine_metrics = EngineMetrics::register(metrics.registry_mut());

    // The store, then the sender, then the pager that feeds it: a page is on disk before any email.
    let store = Arc::new(Store::open(&config.store.path)?);
    let wake_sender = Arc::new(Notify::new());
    let notify_metrics = NotifyMetrics::register(metrics.registry_mut());
    let transport = AnyTransport::from_config(&config.smtp)?;
    // The sender gets its own token, cancelled after the other tasks stopped, so a send in flight
    // finishes (the pages it carries are already durable either way).
    let sender_stop = CancellationToken::new();
    let sender = tokio::spawn(notify::run(
        Arc::clone(&store),
        transport,
        SenderConfig::from_config(&config),
        clock.clone(),
        Arc::clone(&wake_sender),
        notify_metrics.clone(),
        sender_stop.clone(),
    ));
    tasks.spawn(crate::store::retention::run(
        Arc::clone(&store),
        config.store.retention,
        clock.clone(),
        shutdown.clone(),
    ));
    let sections: Vec<String> = runbook.sections.iter().map(|s| s.id.clone()).collect();
    let web_routes = crate::web::routes(crate::web::WebConfig {
        store: Arc::clone(&store),
        runbook: Arc::clone(&runbook),
        clock: clock.clone(),
        locale: config.runbook.locale,
        public_url: config.server.public_url.clone(),
        windows: config.maintenance.clone(),
        api_open: config.server.api_token.is_some(),
    });
    let pager = Pager::open(
        Arc::clone(&store),
        PagerConfig::from_config(&config),
        runbook,
        wake_sender,
        notify_metrics,
    )?;
    let (commands_tx, commands_rx) = tokio::sync::mpsc::channel(16);
    let handle = PagerHandle {
        store: Arc::clone(&store),
        commands: commands_tx,
    };
    let api_routes = crate::api::routes(
        handle.clone(),
        config.server.api_token.clone(),
        clock.clone(),
        sections,
        config.maintenance.clone(),
    );
    let act_routes = crate::email::links::routes(
        Arc::new(handle),
        pager.link_key(),
        clock.clone(),
        config.server.public_url.clone(),
        config.runbook.locale,
    );
    tasks.spawn(watch::run(
        engine,
        reports_rx,
        pager,
        commands_rx,
        clock.clone(),
        engine_metrics,
        shutdown.clone(),
    ));

    if let Some(hb) = config.heartbeat.clone() {
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| RunError::Heartbeat(crate::probe::http::error_chain(&e)))?;
        let hb_metrics = crate::heartbeat::HeartbeatMetrics::register(metrics.registry_mut());
        tasks.spawn(crate::heartbeat::run(
            hb,
            client,
            hb_metrics,
            shutdown.clone(),
        ));
    }

    let state = Arc::new(AppState { metrics, data_dir });
    let app = http::router(state)
        .merge(act_routes)
        .merge(api_routes)
        .merge(web_routes);
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
    sender_stop.cancel();
    let _ = sender.await;
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
