//! The command line (clap): `harven-watchdog [--config FILE]... [COMMAND]`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Incident watchdog for the Harven.AI stack: watches Prometheus, the status pages, Supabase, Redis and
/// the stack's containers, names the runbook's probable cause, and escalates L1 → L2 → L3 by email.
#[derive(Debug, Parser)]
#[command(name = "harven-watchdog", version, about)]
pub struct Cli {
    /// A configuration file layered over the embedded defaults; repeat to layer several, in order.
    /// Environment variables `HARVEN_WATCHDOG__SECTION__KEY` are applied last.
    #[arg(long = "config", short = 'c', value_name = "FILE", global = true)]
    pub config: Vec<PathBuf>,

    /// Log format on stderr. The level comes from `RUST_LOG` (default `info`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// What to do; none means `run`.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands; each variant's doc comment is its line in `--help`.
#[derive(Debug, Subcommand, PartialEq, Eq)]
pub enum Command {
    /// Run the daemon (the default).
    Run,
    /// Validate the merged configuration; exit 0, or 1 with every problem named.
    CheckConfig {
        /// Also poll every source once and check that each runbook rule can fire on what they
        /// show (histogram buckets, request series, the backend's job, container roles); exit 1
        /// on a blind spot (printed with its fix) or a source that cannot be read.
        #[arg(long)]
        live: bool,
    },
    /// Poll every source once now and print what each one says: the first command during an incident.
    Diagnose {
        /// Print JSON (the shape is documented in the README) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run offline runbook scenarios (timelines of observations with expectations) on simulated time.
    Test {
        /// Scenario files (TOML; the format is in the README).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Replace the key that signs the emails' ack/resolve links (kept in the store). Links already
    /// sent keep working until they expire (`escalation.link_ttl`), unless `--revoke`. A running
    /// daemon signs and verifies with the new keys from its next reload (SIGHUP or
    /// `POST /-/reload`) or restart; status-page sign-ins end then too.
    RotateLinkKey {
        /// Refuse every link signed with the old key at once (it leaked), instead of until the
        /// links it signed expire.
        #[arg(long)]
        revoke: bool,
    },
    /// Ask a running watchdog whether it is alive (`GET /healthz`); for container health checks.
    Healthcheck {
        /// The health URL; default: `/healthz` on the configured `server.listen`.
        #[arg(long)]
        url: Option<String>,
    },
}

/// How the daemon's log lines are written; each variant's doc comment is its help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}
