//! [`run`]: the daemon, as one function a test can start in-process, and its reload.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::alerts::{AlertMetrics, Feed, Inbox};
use crate::clock::Clock;
use crate::config::{Config, ConfigSource, EmailTransport, HeartbeatConfig, TlsMode};
use crate::engine::Engine;
use crate::ha::{self, HaMetrics, Leadership, Leases, Solo};
use crate::heartbeat::HeartbeatMetrics;
use crate::http::auth::{AuthMetrics, AuthShared};
use crate::http::pages::FormMetrics;
use crate::http::server::HttpMetrics;
use crate::http::{self, AppState, RouteParts, Routes};
use crate::metrics::Metrics;
use crate::notify::{self, AnyTransport, NotifyMetrics, SenderConfig};
use crate::pipeline::charts::ChartSource;
use crate::pipeline::pager::{Pager, PagerConfig, PagerHandle, PagerMetrics};
use crate::pipeline::watch::{self, EngineMetrics};
use crate::probe::{self, Probe, ProbeMetrics};
use crate::reload::{Outcome, Reload, ReloadMetrics, Reloader, Trigger};
use crate::runbook::{Runbook, RunbookError};
use crate::store::{Store, StoreError, StoreHealth};

#[cfg(test)]
mod route_fuzz;

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
    Pager(#[from] crate::pipeline::pager::PagerError),
    #[error("cannot build the heartbeat client: {0}")]
    Heartbeat(String),
    #[error(
        "the {task} task stopped unexpectedly ({how}); the watchdog stops so that its supervisor \
         restarts it (incidents and pages are in the store)"
    )]
    Task { task: String, how: String },
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
            Self::Task { .. } => "task",
        }
    }
}

/// What [`run_with`] takes besides the configuration: the seams a test (or another store) fills in.
/// The default is what [`run`] uses.
#[derive(Default)]
pub struct RunOptions {
    /// The lease the replicas share (issue 17). `None`: the store's own lease row when the store
    /// is shared (PostgreSQL), else [`Solo`], a single node that is always the leader (the SQLite
    /// store: `[ha]` is ignored). Tests give several in-process daemons one
    /// [`ha::MemoryLeases`] arbiter, a replica each.
    pub leases: Option<Arc<dyn Leases>>,
}

/// [`run_with`] with the default [`RunOptions`].
pub async fn run(
    config: Config,
    reload: Reload,
    listener: TcpListener,
    clock: Clock,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    run_with(
        config,
        reload,
        listener,
        clock,
        shutdown,
        RunOptions::default(),
    )
    .await
}

/// Runs the watchdog until `shutdown` is cancelled: serves HTTP on `listener` with `config`, reading
/// wall time from `clock`, and reloads its configuration from `reload`'s source when asked (see
/// [`crate::reload`]). Returns once the server has stopped, at most [`SHUTDOWN_GRACE`] after the
/// cancellation.
///
/// A task of the running generation that ends on its own (a panic in the watch loop, the sender, a
/// probe...) ends the daemon with [`RunError::Task`] rather than leaving it half alive, serving
/// `/healthz` while nothing pages: the process exits non-zero and its supervisor restarts it, which
/// resumes every incident and page from the store.
///
/// The process-long parts (`Shared`: store, metrics, the HTTP server) are built once; the parts a
/// configuration decides (`Generation`: probes, engine and pager, sender, heartbeat, routes) are
/// replaced whole by a reload.
///
/// With a shared lease (`options.leases`), a task claims and renews it for `ha.node` for the whole
/// process (see [`crate::ha`]): only while it leads do the pager and the sender work. At a clean
/// stop the generation stops first, then the lease is released, so a standby takes over at its
/// next round.
pub async fn run_with(
    config: Config,
    reload: Reload,
    listener: TcpListener,
    clock: Clock,
    shutdown: CancellationToken,
    options: RunOptions,
) -> Result<(), RunError> {
    let data_dir = config.store.data_dir();
    std::fs::create_dir_all(&data_dir).map_err(|source| RunError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    announce(&config, &clock, &listener);
    let Reload {
        source,
        handle,
        mut requests,
    } = reload;

    let prepared = prepare(config)?;
    let limits = prepared.config.server.limits;
    crate::http::server::check_fd_headroom(&limits);
    let (mut shared, metrics) = Shared::open(&prepared.config, handle, &clock, &shutdown)?;
    // The lease outlives generations (a reload keeps the lead); its task stops after the last
    // generation, on every way out of this function (the guard cancels it when dropped).
    let ha_stop = CancellationToken::new();
    let _ha_guard = ha_stop.clone().drop_guard();
    // A shared store is the lease itself; an unshared one (SQLite) is a single node.
    let leases: Arc<dyn Leases> = match options.leases {
        Some(leases) => leases,
        None if shared.store.is_shared() => Arc::clone(&shared.store) as Arc<dyn Leases>,
        None => Arc::new(Solo),
    };
    let mut ha_task = start_leadership(&prepared.config, leases, &mut shared, &ha_stop);
    let (mut generation, routes) = Generation::start(prepared, &shared)?;
    shared.reload_metrics.started(clock.now());

    let (routes_tx, routes_rx) = tokio::sync::watch::channel(routes);
    let app = http::app(
        AppState {
            metrics,
            data_dir,
            leadership: shared.leadership.clone(),
            shared_store: shared.store.is_shared().then(|| Arc::clone(&shared.store)),
            store_health: shared.store_health.clone(),
        },
        routes_rx,
        &limits,
        &shared.http_metrics,
    );
    let mut server = tokio::spawn(crate::http::server::serve(
        listener,
        app,
        limits,
        shared.http_metrics.clone(),
        shutdown.clone(),
    ));

    // One request at a time: concurrent reloads serialize here. Biased, shutdown first: once it is
    // cancelled the server finishes too, and that is a clean stop, not a server failure.
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            served = &mut server => {
                generation.stop().await;
                let error = match served {
                    Ok(()) => std::io::Error::other("the HTTP server stopped"),
                    Err(e) => std::io::Error::other(e.to_string()),
                };
                return Err(RunError::Serve(error));
            }
            Some(ended) = generation.ended() => {
                tracing::error!(task = %ended.task, how = %ended.how, "a task of the watchdog stopped unexpectedly: stopping");
                server.abort();
                generation.stop().await;
                return Err(RunError::Task { task: ended.task, how: ended.how });
            }
            Some(request) = requests.recv() => {
                let reloaded = reload_config(generation, &source, &shared, &routes_tx, request.trigger).await;
                let outcome;
                (generation, outcome) = match reloaded {
                    Ok(both) => both,
                    Err(e) => {
                        // Neither configuration can run: stop serving too, as a failed start would.
                        server.abort();
                        return Err(e);
                    }
                };
                shared.reload_metrics.record(&outcome, clock.now());
                let _ = request.reply.send(outcome);
            }
        }
    }
    match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "the HTTP server task failed"),
        Err(_) => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "requests still open at shutdown were cut off");
            server.abort();
        }
    }
    generation.stop().await;
    // The pager and the sender have stopped: the lease can go.
    ha_stop.cancel();
    if let Some(task) = ha_task.as_mut()
        && tokio::time::timeout(SHUTDOWN_GRACE, task).await.is_err()
    {
        tracing::warn!("the lease task did not stop in time");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Starts what decides this replica's role: on a shared store the lease task (returned), else
/// [`Leadership::solo`] (and `[ha]`, if written, is said to be ignored, once).
fn start_leadership(
    config: &Config,
    leases: Arc<dyn Leases>,
    shared: &mut Shared,
    stop: &CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let ha = &config.ha;
    if !leases.is_shared() {
        if ha.configured {
            tracing::warn!(node = %ha.node, "[ha] is ignored: the store is not shared (SQLite), so this replica always pages");
        }
        shared.leadership = Leadership::solo(ha.node.clone());
        shared.ha_metrics.set_role(&ha::Role::Leader {
            epoch: ha::SOLO_EPOCH,
        });
        return None;
    }
    let timing = ha::Timing::of(ha);
    tracing::info!(node = %ha.node, lease = ?timing.lease, renew_every = ?timing.renew_every, takeover_within = ?timing.takeover_bound(), "shared store: claiming the lead; until granted this replica is a standby");
    let (publish, leadership) = ha::Publish::channel(&ha.node, shared.ha_metrics.clone());
    let publish = publish.reporting_to(shared.store_health.clone());
    shared.leadership = leadership;
    Some(tokio::spawn(ha::run(
        leases,
        ha.node.clone(),
        timing,
        shared.clock.clone(),
        publish,
        stop.clone(),
    )))
}

/// What outlives a reload: the store, the sender's wake-up, the clock and every metric family (a
/// registry must not see a family twice, and counters must not restart at zero).
struct Shared {
    store: Arc<Store>,
    wake_sender: Arc<Notify>,
    clock: Clock,
    /// The process's shutdown; each generation's tasks stop on a child of it.
    shutdown: CancellationToken,
    /// For the `POST /-/reload` route of each generation.
    reloader: Reloader,
    probe_metrics: ProbeMetrics,
    engine_metrics: EngineMetrics,
    notify_metrics: NotifyMetrics,
    pager_metrics: PagerMetrics,
    heartbeat_metrics: HeartbeatMetrics,
    reload_metrics: ReloadMetrics,
    form_metrics: FormMetrics,
    /// The failure budgets and the signed-in sessions: a reload forgives no guesser and signs
    /// nobody out.
    auth: Arc<AuthShared>,
    http_metrics: HttpMetrics,
    /// The alerts pushed to the webhook: a reload keeps them (Alertmanager re-sends a firing
    /// alert only every `repeat_interval`), and hands them the new runbook's routes.
    alerts: Arc<Inbox>,
    /// This replica's role, for the pager, the sender, the routes and `/readyz`: it outlives
    /// generations (a reload neither gives up nor takes the lead).
    leadership: Leadership,
    ha_metrics: HaMetrics,
    /// The store finding (issue 17): the pager and the lease task report to it, `/metrics`,
    /// `/readyz` and the status page read it. It outlives generations, as the store does.
    store_health: StoreHealth,
}

impl Shared {
    /// Opens the store of `config` and registers every metric family in a new registry, returned
    /// beside for `/metrics`.
    fn open(
        config: &Config,
        reloader: Reloader,
        clock: &Clock,
        shutdown: &CancellationToken,
    ) -> Result<(Self, Metrics), RunError> {
        let store = Arc::new(Store::open_config(&config.store)?);
        store.set_replica(&config.ha.node);
        let mut metrics = Metrics::new();
        store.register_metrics(metrics.registry_mut());
        let store_health = StoreHealth::of(&config.store);
        store_health.register_metrics(metrics.registry_mut());
        let auth_metrics = AuthMetrics::register(metrics.registry_mut());
        let probe_metrics = ProbeMetrics::register(metrics.registry_mut());
        let engine_metrics = EngineMetrics::register(metrics.registry_mut());
        let notify_metrics = NotifyMetrics::register(metrics.registry_mut());
        let pager_metrics = PagerMetrics::register(metrics.registry_mut(), notify_metrics.clone());
        let alerts = Arc::new(Inbox::new(
            clock.now(),
            AlertMetrics::register(metrics.registry_mut()),
        ));
        // The alerts the previous process heard come back, and each notification is kept.
        alerts.persist_in(Arc::clone(&store), clock.now());
        let shared = Self {
            alerts,
            probe_metrics,
            engine_metrics,
            notify_metrics,
            pager_metrics,
            heartbeat_metrics: HeartbeatMetrics::register(metrics.registry_mut()),
            reload_metrics: ReloadMetrics::register(metrics.registry_mut()),
            form_metrics: FormMetrics::register(metrics.registry_mut()),
            http_metrics: HttpMetrics::register(metrics.registry_mut()),
            ha_metrics: HaMetrics::register(metrics.registry_mut()),
            leadership: Leadership::solo(config.ha.node.clone()),
            store_health,
            auth: Arc::new(AuthShared::new(
                Arc::clone(&store),
                clock.clone(),
                auth_metrics,
            )),
            store,
            wake_sender: Arc::new(Notify::new()),
            reloader,
            clock: clock.clone(),
            shutdown: shutdown.clone(),
        };
        Ok((shared, metrics))
    }
}

/// The parts of a configuration that can fail to build, built before anything running is touched: a
/// reload that fails here leaves the running generation as it was.
struct Prepared {
    config: Config,
    probes: Vec<probe::AnyProbe>,
    runbook: Arc<Runbook>,
    transport: AnyTransport,
    heartbeat: Option<(HeartbeatConfig, reqwest::Client)>,
}

/// Builds `config`'s probes, runbook, email transport and heartbeat client; starts nothing.
fn prepare(config: Config) -> Result<Prepared, RunError> {
    let runbook = Arc::new(Runbook::load_for(&config)?);
    let probes = probe::build_all(&config, &runbook.wanted())?;
    let transport = AnyTransport::from_config(&config.smtp)?;
    let heartbeat = match config.heartbeat.clone() {
        Some(hb) => {
            let client = reqwest::Client::builder()
                .build()
                .map_err(|e| RunError::Heartbeat(crate::probe::http::error_chain(&e)))?;
            Some((hb, client))
        }
        None => None,
    };
    Ok(Prepared {
        config,
        probes,
        runbook,
        transport,
        heartbeat,
    })
}

/// The tasks one configuration runs. A reload stops one generation and starts the next; the
/// durable state (incidents, outbox, rule states) is in the store, which both share.
struct Generation {
    config: Config,
    /// The probes' source names, so that a reload can drop the series of those it removes.
    sources: Vec<String>,
    /// The runbook, so that a reload can drop the series of the sections and rules it removes.
    runbook: Arc<Runbook>,
    /// Stops the probes, the watch loop and the heartbeat (a child of the process's shutdown).
    stop: CancellationToken,
    tasks: Tasks,
    /// Cancelled only after the other tasks stopped, so a send in flight finishes and the pager's
    /// last commit is picked up by the next sender (the pages it carries are durable either way).
    sender_stop: CancellationToken,
    /// The sender, alone (it stops after the others).
    sender: Tasks,
}

/// Tasks by name, so that one that ends before it is asked to can be named. None of a generation's
/// tasks ends before its stop token is cancelled: a loop that returns early or panics is a bug that
/// would leave the daemon half alive.
#[derive(Default)]
struct Tasks {
    set: JoinSet<()>,
    names: HashMap<tokio::task::Id, String>,
}

/// A task that ended, and how.
struct Ended {
    task: String,
    /// `panicked: <message>`, `returned` or `was cancelled`.
    how: String,
}

impl Tasks {
    fn spawn(
        &mut self,
        name: impl Into<String>,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let id = self.set.spawn(task).id();
        self.names.insert(id, name.into());
    }

    /// The next task to end; `None` once none is left. Cancel-safe.
    async fn next_ended(&mut self) -> Option<Ended> {
        let (id, how) = match self.set.join_next_with_id().await? {
            Ok((id, ())) => (id, "returned".to_owned()),
            Err(e) if e.is_panic() => {
                let id = e.id();
                let payload = e.into_panic();
                let message = crate::http::server::panic_message(payload.as_ref());
                (id, format!("panicked: {message}"))
            }
            Err(e) => (e.id(), "was cancelled".to_owned()),
        };
        let task = self.names.remove(&id).unwrap_or_else(|| id.to_string());
        Some(Ended { task, how })
    }

    /// Waits for every task to end.
    async fn join_all(&mut self) {
        while self.set.join_next().await.is_some() {}
        self.names.clear();
    }
}

impl Generation {
    /// Starts the tasks of `p` and builds its routes.
    fn start(p: Prepared, shared: &Shared) -> Result<(Self, Routes), RunError> {
        let Prepared {
            config,
            probes,
            runbook,
            transport,
            heartbeat,
        } = p;
        let stop = shared.shutdown.child_token();
        let clock = &shared.clock;
        let store = &shared.store;
        // The symptom charts' source (emails and pages), then the pager: the fallible steps, before
        // anything is spawned.
        let charts = Arc::new(ChartSource::new(&config, Arc::clone(&runbook))?);
        let pager = Pager::open(
            Arc::clone(store),
            PagerConfig::from_config(&config),
            Arc::clone(&runbook),
            Arc::clone(&shared.wake_sender),
            shared.pager_metrics.clone(),
            Arc::clone(&charts),
        )?
        .reporting_to(shared.store_health.clone());

        let mut sources: Vec<String> = probes.iter().map(|p| p.source().to_owned()).collect();
        sources.push(crate::alerts::SOURCE.to_owned());
        // Before anything is served: a scrape right after start shows every rule's transitions at 0.
        shared.engine_metrics.init_transitions(&runbook);
        // The probes a pending or recovering rule reads, from the watch loop to the probes' runners.
        let (hurry_tx, hurry_rx) = tokio::sync::watch::channel(std::collections::BTreeSet::new());
        let (reports_tx, reports_rx) = tokio::sync::mpsc::channel(64);
        let mut tasks = Tasks::default();
        for mut p in probes {
            shared.probe_metrics.attach(&mut p);
            let name = format!("probe {}", p.source());
            tasks.spawn(
                name,
                probe::run(
                    p,
                    clock.clone(),
                    reports_tx.clone(),
                    shared.probe_metrics.clone(),
                    hurry_rx.clone(),
                    stop.clone(),
                ),
            );
        }
        // The pushed alerts, routed by this runbook, reach the loop as a source like the others.
        shared.alerts.set_router(runbook.alert_router());
        shared
            .alerts
            .hold_until_resent(restored_alert_sections(&runbook, &pager));
        tasks.spawn(
            format!("probe {}", crate::alerts::SOURCE),
            probe::run(
                Feed::new(Arc::clone(&shared.alerts)),
                clock.clone(),
                reports_tx.clone(),
                shared.probe_metrics.clone(),
                hurry_rx.clone(),
                stop.clone(),
            ),
        );
        drop(reports_tx);

        // The sender before the pager's loop: a page is on disk before any email.
        let sender_stop = CancellationToken::new();
        let mut sender = Tasks::default();
        sender.spawn(
            "email sender",
            notify::run(
                Arc::clone(store),
                transport,
                SenderConfig::from_config(&config),
                clock.clone(),
                Arc::clone(&shared.wake_sender),
                shared.notify_metrics.clone(),
                shared.leadership.clone(),
                sender_stop.clone(),
            ),
        );
        // Retention follows the configuration (`store.retention`); a new generation prunes at once.
        // The `.eml` directory is pruned whatever the transport: files written before a switch to
        // SMTP still hold live links.
        // Pruning is a pager write: the leader's only (a new term prunes at once too).
        let (retention_store, outbox_dir, retention, retention_clock) = (
            Arc::clone(store),
            config.store.outbox_dir(),
            config.store.retention,
            clock.clone(),
        );
        tasks.spawn(
            "store retention",
            lead_only(shared.leadership.clone(), stop.clone(), move |term| {
                crate::store::retention::run(
                    Arc::clone(&retention_store),
                    notify::FileTransport::new(outbox_dir.clone()),
                    retention,
                    retention_clock.clone(),
                    term,
                )
            }),
        );

        let (commands_tx, commands_rx) = tokio::sync::mpsc::channel(16);
        let handle = PagerHandle {
            store: Arc::clone(store),
            commands: commands_tx,
        };
        // The blind spots the watch loop finds, for the status page.
        let (blind_tx, blind_rx) = tokio::sync::watch::channel(Vec::new());
        // The firing symptoms of its latest evaluation, for the status pages' values and charts.
        let (symptoms_tx, symptoms_rx) = tokio::sync::watch::channel(Vec::new());
        let routes = http::routes(RouteParts {
            config: &config,
            runbook: &runbook,
            clock,
            pager: handle,
            link_keys: pager.link_keys(),
            blind_spots: blind_rx,
            symptoms: symptoms_rx,
            charts,
            auth: &shared.auth,
            form_metrics: &shared.form_metrics,
            reloader: &shared.reloader,
            alerts: &shared.alerts,
            leadership: &shared.leadership,
            store_health: &shared.store_health,
        });
        tasks.spawn(
            "watch loop",
            watch::run(
                Engine::new(Arc::clone(&runbook), config.runbook.locale),
                reports_rx,
                pager,
                commands_rx,
                clock.clone(),
                watch::Published {
                    metrics: shared.engine_metrics.clone(),
                    blind_spots: blind_tx,
                    hurry: hurry_tx,
                    symptoms: symptoms_tx,
                },
                shared.leadership.clone(),
                stop.clone(),
            ),
        );
        if let Some((hb, client)) = heartbeat {
            tasks.spawn(
                "heartbeat",
                crate::heartbeat::run(
                    hb,
                    client,
                    shared.heartbeat_metrics.clone(),
                    {
                        let leadership = shared.leadership.clone();
                        move || leadership.is_leader()
                    },
                    stop.clone(),
                ),
            );
        }
        let generation = Self {
            config,
            sources,
            runbook,
            stop,
            tasks,
            sender_stop,
            sender,
        };
        Ok((generation, routes))
    }

    /// Stops the tasks and waits for them: each ends at its next await point (the watch loop after
    /// the store write it may be in), then the sender after its send in flight.
    async fn stop(mut self) {
        self.stop.cancel();
        self.tasks.join_all().await;
        self.sender_stop.cancel();
        self.sender.join_all().await;
    }

    /// The first of this generation's tasks to end before [`Generation::stop`]; pending while they
    /// all run. Cancel-safe.
    async fn ended(&mut self) -> Option<Ended> {
        tokio::select! {
            Some(ended) = self.tasks.next_ended() => Some(ended),
            Some(ended) = self.sender.next_ended() => Some(ended),
            else => None,
        }
    }
}

/// Runs `task(term)` only while `leadership` leads: started at each term with a child of `stop`,
/// which is cancelled when the lead is lost; returns once `stop` is cancelled (or the task ends on
/// its own, which its [`Tasks`] then reports). Alone on its store, the task simply runs.
async fn lead_only<F, Fut>(leadership: Leadership, stop: CancellationToken, mut task: F)
where
    F: FnMut(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut role = leadership.watch();
    loop {
        while !role.borrow_and_update().is_leader() {
            tokio::select! {
                changed = role.changed() => if changed.is_err() {
                    // No publisher left: the lead cannot come; wait for the stop.
                    stop.cancelled().await;
                    return;
                },
                () = stop.cancelled() => return,
            }
        }
        let term = stop.child_token();
        let run = task(term.clone());
        tokio::pin!(run);
        // A solo replica's role never changes (its publisher is gone at once): stop watching it.
        let mut watching = true;
        loop {
            tokio::select! {
                () = &mut run => break,
                changed = role.changed(), if watching => match changed {
                    Ok(()) if !role.borrow_and_update().is_leader() => term.cancel(),
                    Ok(()) => {}
                    Err(_) => watching = false,
                },
            }
        }
        if stop.is_cancelled() || !term.is_cancelled() {
            return;
        }
    }
}

/// The sections whose alert symptom (a rule over `alerts.firing`) the store holds as pending, firing
/// or recovering: the inbox keeps them unknown until their alerts are re-sent.
fn restored_alert_sections(runbook: &Runbook, pager: &Pager) -> std::collections::BTreeSet<String> {
    let Some(saved) = pager.saved_engine_state() else {
        return std::collections::BTreeSet::new();
    };
    saved
        .instances()
        .filter_map(|(rule, labels)| {
            let (_, rule) = runbook.rule(rule)?;
            (rule.when.obs.as_deref() == Some("alerts.firing"))
                .then(|| labels.get("section").or(rule.when.labels.get("section")))?
                .cloned()
        })
        .collect()
}

/// Reads the configuration again and, when it is valid and its parts build, replaces `running` by a
/// generation of it and publishes its routes. Otherwise `running` keeps running untouched, and every
/// problem is logged. Errs only when neither the new nor the running configuration can start again
/// (the store stopped answering), which ends the daemon as it would at start-up.
async fn reload_config(
    running: Generation,
    source: &ConfigSource,
    shared: &Shared,
    routes: &tokio::sync::watch::Sender<Routes>,
    trigger: Trigger,
) -> Result<(Generation, Outcome), RunError> {
    tracing::info!(%trigger, "reloading the configuration");
    // Files, secrets, the runbook, CA bundles: read on the blocking pool, not on the async threads.
    let (source, running_config) = (source.clone(), running.config.clone());
    let invalid = |problems: Vec<String>| Outcome::Invalid { problems };
    let built = tokio::task::spawn_blocking(move || {
        let mut config = source
            .load()
            .map_err(|e| invalid(e.problems.iter().map(ToString::to_string).collect()))?;
        let restart_required = crate::reload::keep_restart_only(&running_config, &mut config);
        match prepare(config) {
            Ok(p) => Ok((p, restart_required)),
            Err(RunError::Runbook(e)) => Err(invalid(
                e.problems.iter().map(ToString::to_string).collect(),
            )),
            Err(e) => Err(Outcome::Failed {
                reason: e.to_string(),
            }),
        }
    })
    .await
    .unwrap_or_else(|e| {
        Err(Outcome::Failed {
            reason: format!("the reload task failed: {e}"),
        })
    });
    let (prepared, restart_required) = match built {
        Ok(both) => both,
        Err(refusal) => {
            match &refusal {
                Outcome::Invalid { problems } => {
                    for p in problems {
                        tracing::error!(%trigger, problem = %p, "configuration problem");
                    }
                    tracing::error!(%trigger, problems = problems.len(), "configuration reload refused: the running configuration is kept");
                }
                Outcome::Failed { reason } => {
                    tracing::error!(%trigger, error = %reason, "configuration reload failed: the running configuration is kept");
                }
                Outcome::Applied { .. } | Outcome::Unavailable => {}
            }
            return Ok((running, refusal));
        }
    };

    // The old generation stops before the new one reads the store, so the new pager sees every
    // incident and page the old one committed.
    let previous = running.config.clone();
    let previous_sources = running.sources.clone();
    let previous_runbook = Arc::clone(&running.runbook);
    running.stop().await;
    match Generation::start(prepared, shared) {
        Ok((generation, new_routes)) => {
            routes.send_modify(|r| *r = new_routes);
            for gone in previous_sources
                .iter()
                .filter(|s| !generation.sources.contains(s))
            {
                shared.probe_metrics.forget(gone);
            }
            shared
                .engine_metrics
                .forget_removed(&previous_runbook, &generation.runbook);
            for key in &restart_required {
                tracing::warn!(%trigger, key, "this key changed but takes effect only at the next restart; its running value is kept");
            }
            announce_email(&generation.config);
            tracing::info!(%trigger, "configuration reloaded");
            Ok((generation, Outcome::Applied { restart_required }))
        }
        Err(e) => {
            tracing::error!(%trigger, error = %e, "the new configuration could not start; starting the previous one again");
            let (generation, old_routes) = Generation::start(prepare(previous)?, shared)?;
            routes.send_modify(|r| *r = old_routes);
            let reason = e.to_string();
            Ok((generation, Outcome::Failed { reason }))
        }
    }
}

/// The start-up lines an operator looks for: where we listen and where emails go.
fn announce(config: &Config, clock: &Clock, listener: &TcpListener) {
    let addr = listener
        .local_addr()
        .map_or_else(|_| config.server.listen.to_string(), |a| a.to_string());
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %addr,
        store = %config.store.describe(),
        now = %clock.now(),
        "harven-watchdog started"
    );
    announce_email(config);
}

/// Where emails go: logged at start and after each reload.
fn announce_email(config: &Config) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A generation's task that panics or returns is named with how it ended, so `run` can stop the
    /// daemon saying which; none ends while they all run. On paused time the 50 ms timeout fires only
    /// once every task has run as far as it can (tokio moves the paused clock only when nothing is
    /// ready to run): "nothing ended" is checked after the tasks had every chance, not after a real
    /// pause.
    #[tokio::test(start_paused = true)]
    async fn a_task_that_ends_early_is_named_with_how() {
        let mut tasks = Tasks::default();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn("watch loop", async move {
            let _ = released.await;
            panic!("the book is inconsistent");
        });
        tasks.spawn("probe redis", std::future::pending());
        let running = tokio::time::timeout(Duration::from_millis(50), tasks.next_ended()).await;
        assert!(running.is_err(), "nothing ended while all run");

        release.send(()).expect("the task waits");
        let ended = tasks.next_ended().await.expect("one ended");
        assert_eq!(ended.task, "watch loop");
        assert_eq!(ended.how, "panicked: the book is inconsistent");
        let error = RunError::Task {
            task: ended.task,
            how: ended.how,
        };
        assert_eq!(error.metric_label(), "task");
        assert!(
            error.to_string().starts_with(
                "the watch loop task stopped unexpectedly (panicked: the book is inconsistent)"
            ),
            "{error}"
        );

        let mut returned = Tasks::default();
        returned.spawn("heartbeat", async {});
        let ended = returned.next_ended().await.expect("it returned");
        assert_eq!(
            (ended.task.as_str(), ended.how.as_str()),
            ("heartbeat", "returned")
        );
        assert!(returned.next_ended().await.is_none(), "none left");
    }

    /// A leader-only task runs in each term and stops when the lead is lost; alone on its store it
    /// runs until the stop.
    #[tokio::test(start_paused = true)]
    async fn a_leader_only_task_runs_in_each_term_and_stops_with_the_lead() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (publish, leadership) = ha::Publish::channel("node-a", HaMetrics::default());
        let (started, running) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let stop = CancellationToken::new();
        let task = {
            let (started, running) = (Arc::clone(&started), Arc::clone(&running));
            tokio::spawn(lead_only(leadership, stop.clone(), move |term| {
                let (started, running) = (Arc::clone(&started), Arc::clone(&running));
                async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    running.fetch_add(1, Ordering::SeqCst);
                    term.cancelled().await;
                    running.fetch_sub(1, Ordering::SeqCst);
                }
            }))
        };
        let settle = || tokio::time::sleep(Duration::from_millis(10));
        settle().await;
        assert_eq!(started.load(Ordering::SeqCst), 0, "a standby runs nothing");
        for term in 1..=2 {
            publish.role.send_replace(ha::Role::Leader { epoch: term });
            settle().await;
            assert_eq!(
                (
                    started.load(Ordering::SeqCst),
                    running.load(Ordering::SeqCst)
                ),
                (term as usize, 1)
            );
            publish
                .role
                .send_replace(ha::Role::Standby { leader: None });
            settle().await;
            assert_eq!(running.load(Ordering::SeqCst), 0, "stopped with the lead");
        }
        stop.cancel();
        task.await.expect("returns at the stop");

        let stop = CancellationToken::new();
        let solo = tokio::spawn(lead_only(
            Leadership::solo("node-a"),
            stop.clone(),
            |term| async move {
                term.cancelled().await;
            },
        ));
        settle().await;
        assert!(!solo.is_finished(), "a solo replica's task runs");
        stop.cancel();
        solo.await.expect("returns at the stop");
    }
}
