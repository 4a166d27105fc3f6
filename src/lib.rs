//! harven-watchdog: the Harven.AI operations runbook, run continuously.
//!
//! # Layout
//!
//! Read in this order:
//!
//! - [`config`]: embedded defaults, `--config` files and `HARVEN_WATCHDOG__*` variables, decoded and
//!   validated into one typed [`Config`](config::Config), every problem named with its source and key.
//! - [`secret`]: a string that cannot be printed by accident.
//! - [`clock`]: wall-clock [`Timestamp`](clock::Timestamp)s from one [`Clock`](clock::Clock); tests move a
//!   [`ManualClock`](clock::ManualClock).
//! - [`locale`]: the languages of emails, pages and act pages: [`Locale`](locale::Locale), every word
//!   they show (one const [`Text`](locale::Text) per language) and how times and durations read.
//! - [`observe`]: observations, the evidence table and the catalogue of observation names.
//! - [`probe`]: one task per source (Prometheus, status pages, Supabase, Redis, Docker; OpenAI,
//!   Sentry and Coolify when configured) turning whatever the peer does into a report; never an
//!   error to the caller.
//! - [`runbook`]: the runbook as data (`config/runbook.toml`), validated at load.
//! - [`alerts`]: alerts pushed by Alertmanager or Grafana, kept in an inbox and read as the
//!   `alerts` source (a probe whose poll reports what the inbox holds).
//! - [`engine`]: the pure rule state machine and correlator (no I/O, no clock).
//! - [`doctor`]: blind spots: the rules that cannot fire on what the probes see, with the fix.
//! - [`pipeline`]: the two shells around the engine and the incident book, on one task:
//!   - [`watch`](pipeline::watch): the loop around the engine: applies reports, evaluates at
//!     reports and deadlines.
//!   - [`pager`](pipeline::pager): the shell of the incident book: steps it after each evaluation,
//!     renders the due pages and commits them with the incidents in one store transaction, then
//!     wakes the sender.
//! - [`chart`]: a symptom's recent history drawn as SVG (incident page) and PNG (email): pure, from
//!   the points a Prometheus range query gave ([`probe::prometheus::RangeQuery`]), the threshold and
//!   the incident's opening; a blind chart that says why when Prometheus cannot be read.
//! - [`words`]: evidence in words: a symptom, an evidence line, a timeline entry or a blind spot
//!   as a sentence in the reader's language, from the runbook's data and what was read.
//! - [`diagnose`]: one pass of every probe and the engine, printed.
//! - [`scenario`]: offline runbook tests on simulated time.
//! - [`store`]: the embedded SQLite file: incidents, the email outbox and sent ledger, run-time
//!   maintenance windows, long-lived secrets.
//! - [`notify`]: the sender, woken by the pager: the emails the store holds out through SMTP (or
//!   `.eml` files), retried with backoff, at most once per key, over-budget ones as one digest.
//! - [`email`]: one page of an incident as an email (text and HTML, pt-BR or English), the signed
//!   ack/resolve links it carries (their tokens and URLs), and the budget digest.
//! - [`ha`]: leadership between replicas of a shared store: the lease seam ([`ha::Leases`]), the
//!   role ([`ha::Role`]) a replica has, and the task that claims and renews the lease; alone on
//!   SQLite a replica is always the leader ([`ha::Solo`]).
//! - [`heartbeat`]: the outbound dead man's switch.
//! - [`metrics`]: the daemon's own `/metrics` registry (`harven_watchdog_*`).
//! - [`http`]: everything that speaks HTTP, the only module that knows the web framework, cookies
//!   and JSON views: `/healthz`, `/readyz`, `/metrics` and the assembly of the served app;
//!   [`http::server`], the accept loop and its bounds on slow and many clients (timeouts,
//!   connections, requests in flight), panics answered 500; [`http::auth`], who may read and act
//!   (the API token, the pages' server-side sessions, the email links' tokens, the failure budgets
//!   that refuse a guesser's credentials unchecked with 429, the client a request counts as);
//!   [`http::actions`], the one service that acks, resolves and makes or ends maintenance windows
//!   for every route, with one error ([`incident::ActionError`]); and its three surfaces:
//!   [`http::api`] (JSON, behind the API token), [`http::pages`] (the status pages and their
//!   forms) and [`http::act`] (the `/act/{token}` pages behind the email links).
//! - [`reload`]: hot configuration reload: the handle SIGHUP and `POST /-/reload` use, its outcome
//!   and metrics.
//! - [`daemon`]: [`run`], which wires the pieces, serves until shut down, and swaps in a reloaded
//!   configuration.
//! - [`cli`], [`logging`]: the command line and the tracing subscriber of the binary.
//!
//! See ARCHITECTURE.md for the data flow and the invariants the modules keep.

pub mod alerts;
pub mod chart;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod diagnose;
pub mod doctor;
pub mod email;
pub mod engine;
pub mod ha;
pub mod heartbeat;
pub mod http;
pub mod incident;
pub mod locale;
pub mod logging;
pub mod metrics;
#[cfg(test)]
mod mutate;
pub mod notify;
pub mod observe;
pub mod pipeline;
pub mod probe;
pub mod reload;
pub mod runbook;
pub mod scenario;
pub mod secret;
pub mod store;
pub mod words;

pub use daemon::{RunError, RunOptions, run, run_with};
pub use reload::{Reload, Reloader};

/// `url` with any password replaced by `***`, for log lines and error messages.
pub fn redact_url(url: &url::Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    u.to_string()
}

/// Installs rustls' ring provider for the process. reqwest is built without a default provider (one TLS
/// stack, no aws-lc), so this must run before any HTTP or TLS client is built; calling it again is a no-op.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
