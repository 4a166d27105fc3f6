//! The `harven-watchdog` binary: parse the command line, load the configuration, hand over to the
//! library. Everything a test needs to start the daemon lives in the library ([`harven_watchdog::run`]).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use harven_watchdog::cli::{Cli, Command};
use harven_watchdog::clock::Clock;
use harven_watchdog::config::{Config, ConfigSource, EmailTransport};
use harven_watchdog::reload::{Reload, Reloader, Trigger};
use harven_watchdog::runbook::Runbook;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// `println!` that stops quietly when stdout is closed (`harven-watchdog diagnose | head`) instead of
/// panicking on the broken pipe.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` with the same manners as [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

/// Only the daemon installs the log subscriber: the one-shot commands print their own report
/// (stdout) and problems (stderr), and their probes' events go nowhere. `check-config` and `test`
/// exit with their own code, having printed every problem; the others print their one error.
fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before any client is built: reqwest is built without a default TLS provider.
    harven_watchdog::install_crypto_provider();
    let command = cli.command.unwrap_or(Command::Run);
    let result = match command {
        Command::CheckConfig { live } => return check_config(&cli.config, live),
        Command::Healthcheck { url } => healthcheck(&cli.config, url),
        Command::Diagnose { json } => diagnose(&cli.config, json),
        Command::RotateLinkKey { revoke } => rotate_link_key(&cli.config, revoke),
        Command::Test { files } => return test_scenarios(&cli.config, &files),
        Command::Run => {
            harven_watchdog::logging::init(cli.log_format);
            run(&cli.config)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Each cause once: most of our errors already quote their source in their own words.
            let text = harven_watchdog::probe::http::error_chain(e.as_ref());
            eprintln!("harven-watchdog: {text}");
            ExitCode::FAILURE
        }
    }
}

/// `check-config`: the merged configuration and the runbook checked against it (roles included),
/// then a summary of what the daemon would do (who is paged when, where emails go), so a person
/// sees the effect of the layers, not just "OK". Secrets are never printed.
fn check_config(files: &[std::path::PathBuf], live: bool) -> ExitCode {
    match Config::load(files) {
        Ok(config) => {
            let runbook = match Runbook::load_for(&config) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            let email = match &config.smtp.transport {
                EmailTransport::Files { dir } => format!(".eml files under {}", dir.display()),
                EmailTransport::Smtp(s) => format!("SMTP {}:{} ({:?})", s.host, s.port, s.tls),
            };
            let to = |l: &harven_watchdog::config::LevelConfig| {
                l.to.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let e = &config.escalation;
            outln!("configuration OK");
            outln!(
                "  runbook: {} ({} sections, {} rules, {} causes)",
                harven_watchdog::runbook::describe(config.runbook.path.as_ref()),
                runbook.sections.len(),
                runbook
                    .sections
                    .iter()
                    .map(|s| s.rules.len())
                    .sum::<usize>(),
                runbook
                    .sections
                    .iter()
                    .map(|s| s.causes.len())
                    .sum::<usize>(),
            );
            outln!("  listen: {}", config.server.listen);
            let server = &config.server;
            outln!(
                "  access: {}",
                match (server.api_token.is_some(), server.public_reads) {
                    (true, true) => "anyone reads; changes need the API token",
                    (true, false) => "reads and changes need the API token or a signed-in session",
                    (false, _) => "anyone reads; changes are closed (no server.api_token)",
                }
            );
            if !server.trusted_proxies.is_empty() {
                let proxies: Vec<String> = server
                    .trusted_proxies
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                outln!("  X-Forwarded-For from: {}", proxies.join(", "));
            }
            for role in &config.docker.roles {
                outln!("  docker role {}: {}", role.name, role.describe());
            }
            outln!("  emails: {email}");
            outln!("  L1 at open: {}", to(&e.l1));
            outln!(
                "  L2 after {}: {}",
                humantime::format_duration(e.l2_after),
                to(&e.l2)
            );
            outln!(
                "  L3 critical for {}: {}",
                humantime::format_duration(e.l3_critical_for),
                to(&e.l3)
            );
            if live {
                return check_live(&config, runbook);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `check-config --live`: one pass of every probe, then the blind spots of the runbook on what they
/// show, each with its fix. Fails on a blind spot, or on a source that cannot be read (its rules
/// cannot be checked).
fn check_live(config: &Config, runbook: Runbook) -> ExitCode {
    // A one-shot: a current-thread runtime is enough, and the probes poll concurrently on it.
    let report = (|| -> anyhow::Result<harven_watchdog::diagnose::Report> {
        let mut probes = harven_watchdog::probe::build_all(config, &runbook.wanted())?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(runtime.block_on(harven_watchdog::diagnose::run(
            &mut probes,
            None,
            &Clock::system(),
            std::sync::Arc::new(runbook),
            config.runbook.locale,
        )))
    })();
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("live check: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    // A source that cannot be read fails the check as a blind spot does: its rules could not be
    // checked, and passing would say they can fire.
    outln!("live check");
    let mut ok = true;
    for s in &report.sources {
        match &s.failure {
            None => outln!("  {:<18} ok", s.source),
            Some(f) => {
                ok = false;
                outln!(
                    "  {:<18} CANNOT BE READ: {f} (its rules cannot be checked)",
                    s.source
                );
            }
        }
    }
    if report.blind_spots.is_empty() {
        outln!("  blind spots: none (every rule can fire on what the sources show)");
    } else {
        ok = false;
        outln!("  blind spots ({}):", report.blind_spots.len());
        for b in &report.blind_spots {
            outln!("  - {} cannot fire ({}): {}", b.rule, b.reason, b.detail);
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// One malloc arena for the daemon. glibc's default (up to 8 per core) gives every thread that allocates
/// under contention a heap of its own, kept resident while the daemon idles; one arena is plenty for a
/// process this quiet (measured by `scripts/bench.sh` watching 50 containers: anonymous memory 7.5 MiB
/// with the default, 5.6 MiB with one arena).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of the allocator; it is called before the runtime starts
    // any other thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// The daemon: configuration, runtime, the listening socket, the signal handlers, then the
/// library's [`harven_watchdog::run`] until a signal stops it.
fn run(files: &[std::path::PathBuf]) -> anyhow::Result<()> {
    limit_malloc_arenas();
    // Kept for reloads: a SIGHUP reads the same files and environment again.
    let source = ConfigSource::process(files.to_vec());
    let config = source.load()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        // Bound here, before anything starts: a port in use fails the start, naming the key.
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .with_context(|| {
                format!("cannot listen on server.listen = {}", config.server.listen)
            })?;
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        let reload = Reload::new(source);
        // Installed before the daemon serves: SIGHUP's default action would end the process.
        let hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        tokio::spawn(reload_on_sighup(hangup, reload.handle()));
        harven_watchdog::run(config, reload, listener, Clock::system(), shutdown).await?;
        Ok(())
    })
}

/// Reloads the configuration at each SIGHUP; the daemon logs what the reload did.
async fn reload_on_sighup(mut hangup: Signal, reloader: Reloader) {
    while hangup.recv().await.is_some() {
        reloader.reload(Trigger::Signal).await;
    }
}

/// Cancels `shutdown` on the first SIGINT or SIGTERM.
async fn stop_on_signal(shutdown: CancellationToken) {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the daemon with SIGKILL");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "shutting down");
    shutdown.cancel();
}

/// Runs scenario files against the configured runbook; exit 1 if any fails or cannot run.
fn test_scenarios(files: &[std::path::PathBuf], scenarios: &[std::path::PathBuf]) -> ExitCode {
    // `load`, not `load_for`: a scenario reports role observations itself, so the runbook's roles
    // need no mapping to containers offline.
    let loaded = Config::load(files)
        .map_err(anyhow::Error::from)
        .and_then(|c| {
            let runbook = Runbook::load(c.runbook.path.as_deref())?;
            Ok((
                std::sync::Arc::new(runbook),
                harven_watchdog::incident::Policy::from_config(&c.escalation),
            ))
        });
    let (runbook, policy) = match loaded {
        Ok(both) => both,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // Every file runs, whatever an earlier one did: one report of all of them, like `promtool`.
    let (mut passed, mut failed) = (0, 0);
    for path in scenarios {
        match harven_watchdog::scenario::run_file(path, &runbook, &policy) {
            Ok(outcome) if outcome.failures.is_empty() => {
                passed += 1;
                outln!("PASS {}  {}", path.display(), outcome.description);
            }
            Ok(outcome) => {
                failed += 1;
                outln!("FAIL {}  {}", path.display(), outcome.description);
                for f in outcome.failures {
                    outln!("     {f}");
                }
            }
            Err(e) => {
                failed += 1;
                outln!("FAIL {e}");
            }
        }
    }
    outln!("scenarios: {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// One pass of every probe, printed.
fn diagnose(files: &[std::path::PathBuf], json: bool) -> anyhow::Result<()> {
    let config = Config::load(files)?;
    let runbook = std::sync::Arc::new(Runbook::load_for(&config)?);
    let mut probes = harven_watchdog::probe::build_all(&config, &runbook.wanted())?;
    // The alerts pushed to the running watchdog: a one-off pass receives no webhook.
    let mut alerts = harven_watchdog::alerts::remote::Remote::new(
        config.server.listen,
        config.server.api_token.clone(),
        runbook.sections.iter().map(|s| s.id.clone()).collect(),
        runbook.alerts.resend_within,
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(harven_watchdog::diagnose::run(
        &mut probes,
        Some(&mut alerts),
        &Clock::system(),
        runbook,
        config.runbook.locale,
    ));
    // The table ends with its own newline; the JSON does not.
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        out!("{}", report.to_text());
    }
    Ok(())
}

/// `rotate-link-key`: a new link key in the configured store, the old one accepted until the links
/// it signed expire (or not at all with `--revoke`).
fn rotate_link_key(files: &[std::path::PathBuf], revoke: bool) -> anyhow::Result<()> {
    let config = Config::load(files)?;
    // Safe beside a running daemon: the store is WAL with a busy timeout, made for a second
    // process on the file; the daemon reads the new key at its next reload.
    let store = harven_watchdog::store::Store::open_config(&config.store)?;
    let keep = (!revoke).then_some(config.escalation.link_ttl);
    let until =
        harven_watchdog::pipeline::pager::rotate_link_key(&store, Clock::system().now(), keep)?;
    match until {
        Some(until) => outln!(
            "link key rotated in {}; links signed with the previous key work until {until}",
            store.path().display()
        ),
        None => outln!(
            "link key rotated in {}; every link signed with the previous key is refused",
            store.path().display()
        ),
    }
    outln!(
        "a running watchdog uses the new key after a reload (SIGHUP or POST /-/reload) or a restart"
    );
    Ok(())
}

/// `GET /healthz` on the local daemon; success means it answered 200 within two seconds.
fn healthcheck(files: &[std::path::PathBuf], url: Option<String>) -> anyhow::Result<()> {
    let url = match url {
        Some(u) => u,
        None => {
            let config = Config::load(files)?;
            let mut addr = config.server.listen;
            // Listening on every address (`0.0.0.0`, `::`): ask on 127.0.0.1.
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{addr}/healthz")
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Any 2xx is alive; `/healthz` answers 200 while the process serves (readiness is `/readyz`).
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let response = client
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        anyhow::ensure!(
            response.status().is_success(),
            "GET {url}: {}",
            response.status()
        );
        Ok(())
    })
}
