//! The configuration as written: every section and key, values still as text.
//!
//! These types only describe the *shape* of a configuration layer. Keys that do not exist are rejected
//! here (`deny_unknown_fields`), types are checked here, and nothing else: durations, URLs, addresses and
//! modes stay strings so that [`super::validate`] can check all of them and report every problem at
//! once, each with the layer that set it.
//!
//! Every struct is `#[serde(default)]` so that a single layer (one `--config` file, or the environment)
//! can be decoded on its own to find the problems it introduces; the embedded defaults supply every key
//! in the merged result.
//!
//! The field types say what may stay unset: a `String` is a key the embedded defaults always set
//! (`config/default.toml` documents each one), an `Option<String>` one that may stay unset in the
//! merged result (an optional URL, a secret). Counts are `i64`, wider than what they become, so a
//! negative or huge value reaches validation and gets a message naming the key instead of a
//! decoding error. A secret comes as `x` inline or `x_file` (a path, read at validation; the file
//! wins), so it need not sit in a file that is shared or in the environment.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole file, one field per `[section]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    pub server: RawServer,
    pub store: RawStore,
    pub runbook: RawRunbook,
    pub prometheus: RawPrometheus,
    /// statuspage.io pages by name (`[status.openai]`, `[status.supabase]`, and any a team adds).
    pub status: BTreeMap<String, RawStatusPage>,
    pub supabase: RawSupabase,
    /// The OpenAI API and the organization's costs (off unless a key is set).
    pub openai: RawOpenai,
    /// The team's Coolify: the application's deployments and env names (off unless `url` is set).
    pub coolify: RawCoolify,
    /// Sentry's web API (off unless a token is set).
    pub sentry: RawSentry,
    pub redis: RawRedis,
    pub docker: RawDocker,
    pub smtp: RawSmtp,
    pub escalation: RawEscalation,
    /// Maintenance windows known at start-up (more can be created through the API).
    pub maintenance: Vec<RawWindow>,
    pub heartbeat: RawHeartbeat,
    /// Leadership between replicas of a shared store (issue 17).
    pub ha: RawHa,
}

/// `[ha]`: this replica's name and its lease. Every key may stay unset (the defaults are computed:
/// the hostname, 20 s, a quarter of the lease), so that validation knows whether `[ha]` was written
/// at all (it is ignored, and said so, on an unshared store).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawHa {
    pub node: Option<String>,
    pub lease: Option<String>,
    pub renew_every: Option<String>,
}

/// The outbound heartbeat (dead man's switch).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawHeartbeat {
    /// Unset: no heartbeat. A secret (such URLs embed their check's token).
    pub url: Option<String>,
    pub url_file: Option<String>,
    pub interval: String,
    pub timeout: String,
}

/// `[server]`: where it listens, the public URL links are built on, the API token and the limits.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawServer {
    pub listen: String,
    pub public_url: String,
    pub api_token: Option<String>,
    pub api_token_file: Option<String>,
    /// Whether the pages and `GET /api/...` need no sign-in (default true).
    pub public_reads: bool,
    /// Peers (addresses or CIDR networks) whose `X-Forwarded-For` names the client (default none).
    pub trusted_proxies: Vec<String>,
    /// The server's limits against slow and many clients (`ServerLimits`). Counts are wider than
    /// `usize` so a negative one is a validation problem with a clear message.
    pub header_read_timeout: String,
    pub request_timeout: String,
    pub idle_timeout: String,
    pub max_connections: i64,
    pub max_requests_in_flight: i64,
}

/// `[store]`: the SQLite file (or a PostgreSQL server), and how long a resolved incident and its
/// emails are kept.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawStore {
    pub path: String,
    pub retention: String,
    /// `postgres://user@host:port/dbname`; unset: the SQLite file at `path`.
    pub url: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<String>,
    pub connect_timeout: String,
    pub statement_timeout: String,
    pub readers: i64,
    /// A PEM file of CA certificates the database's certificate may chain to, beside the system's
    /// (with `sslmode=verify-full` in `url`).
    pub ca_file: Option<String>,
}

/// `[runbook]`: a runbook file (unset: the embedded one) and the emails' and pages' language.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawRunbook {
    /// Unset: the runbook compiled in.
    pub path: Option<String>,
    pub locale: String,
}

/// `[prometheus]`: the query API, the windows of the readings and the backend's metric names.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawPrometheus {
    pub url: String,
    pub interval: String,
    pub timeout: String,
    pub backend_job: String,
    pub window: String,
    pub short_window: String,
    pub fast_interval: String,
    pub baseline_window: String,
    pub requests_metric: String,
    pub latency_histogram: String,
    pub latency_highr_histogram: String,
    pub exclude_handlers: Vec<String>,
}

/// A status page added by a user may leave out `interval` and `timeout`; validation fills them in.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawStatusPage {
    pub url: String,
    pub interval: Option<String>,
    pub timeout: Option<String>,
}

/// `[supabase]`: the project to watch, off while `url` is unset.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSupabase {
    /// Unset: the Supabase probe is off (the shipped defaults leave it so).
    pub url: Option<String>,
    pub api_key: Option<String>,
    pub api_key_file: Option<String>,
    pub interval: String,
    pub timeout: String,
}

/// `[openai]`: the API probe (on with `api_key`) and the usage probe (on with `admin_key`, which
/// needs `monthly_budget`). The budget is a float; a layer from the environment gives it as text,
/// which the config crate parses.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawOpenai {
    pub url: String,
    pub api_key: Option<String>,
    pub api_key_file: Option<String>,
    pub admin_key: Option<String>,
    pub admin_key_file: Option<String>,
    pub monthly_budget: Option<f64>,
    pub organization: Option<String>,
    pub project: Option<String>,
    pub interval: String,
    pub usage_interval: String,
    pub timeout: String,
}

// ---- [sentry] (issue 16) ----------------------------------------------------------------------
/// `[sentry]`: the organization's projects read through Sentry's web API, off while no token is set.
/// `projects` takes a list or one comma-separated string (the environment's form).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSentry {
    pub url: String,
    pub token: Option<String>,
    pub token_file: Option<String>,
    pub organization: Option<String>,
    #[serde(deserialize_with = "one_or_many")]
    pub projects: Vec<String>,
    pub interval: String,
    pub timeout: String,
    pub window: String,
}

// ---- [coolify] (issue 16) -------------------------------------------------------------------------
/// `[coolify]`: the team's Coolify (no default `url`: off until set), its API token, the
/// application's UUID and the env var names checked for presence.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawCoolify {
    pub url: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<String>,
    pub application: Option<String>,
    pub env_names: Vec<String>,
    pub interval: String,
    pub timeout: String,
}

/// `[redis]`: the server, the key patterns counted, the SCAN bounds and the counters' window.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawRedis {
    pub url: String,
    pub password: Option<String>,
    pub password_file: Option<String>,
    pub interval: String,
    pub timeout: String,
    pub key_patterns: Vec<String>,
    pub scan_count: i64,
    pub scan_cap: i64,
    pub evidence_window: String,
}

/// `[docker]`: the Engine, the watched containers, the evidence windows, the log patterns and the
/// roles the runbook's conditions name.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawDocker {
    pub host: String,
    pub interval: String,
    pub timeout: String,
    pub containers: Vec<String>,
    pub compose_project: Option<String>,
    pub env_vars: Vec<String>,
    pub deploy_window: String,
    pub memory_growth_window: String,
    pub evidence_window: String,
    pub log_rate_window: String,
    pub log_lines_cap: i64,
    /// By name (the `pattern` label of `docker.log_lines_per_minute`): a regular expression.
    pub log_patterns: BTreeMap<String, String>,
    /// The runbook's container roles (`backend`, `redis`), by name: which containers each means.
    pub roles: BTreeMap<String, RawRole>,
}

/// One role: a container belongs to it when any of these matches. An empty `compose_service` or
/// `compose_project` is unset (so a layer can turn off what an earlier one set).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawRole {
    pub names: Vec<String>,
    pub patterns: Vec<String>,
    pub compose_service: Option<String>,
    pub compose_project: Option<String>,
}

/// `[smtp]`: the relay and the sender's address; without a `host`, emails are written as files.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSmtp {
    /// Unset: no SMTP, `.eml` files in the store's directory.
    pub host: Option<String>,
    /// Wider than `u16` so that an out-of-range port is a validation problem with a clear message.
    pub port: i64,
    pub tls: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<String>,
    pub from: String,
    pub timeout: String,
    /// An extra root CA (PEM) trusted for the SMTP server, for a private relay with its own CA.
    pub ca_file: Option<String>,
}

/// `[escalation]`: the runbook's §7, who is paged when, and the email budget.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawEscalation {
    pub l1: RawLevel,
    pub l2: RawLevel,
    pub l3: RawLevel,
    pub reopen_within: String,
    pub repeat_interval: String,
    pub ack_timeout: String,
    pub ack_stops_escalation: bool,
    pub max_emails_per_hour: i64,
    pub l1_only_sections: Vec<String>,
    pub link_ttl: String,
}

/// A maintenance window: `sections` (empty: all) are muted and their escalation clocks paused.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawWindow {
    pub sections: Vec<String>,
    pub starts: String,
    pub ends: String,
    pub reason: String,
}

/// One escalation level. `after` belongs to L2 and `critical_for` to L3; validation rejects the others.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawLevel {
    /// A list of addresses, or one string holding one address or several separated by commas (as
    /// Alertmanager's `to` takes them).
    #[serde(deserialize_with = "one_or_many")]
    pub to: Vec<String>,
    /// L2 only: how long after an incident opened it is paged.
    pub after: Option<String>,
    /// L3 only: how long an incident must have been critical before it is paged.
    pub critical_for: Option<String>,
}

/// A list of strings, or one string of comma-separated items (`"a@x, b@x"`): a single address is the
/// natural way to write one recipient (Alertmanager's `to` takes it so), and the environment's list
/// variables read the same way.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an address, addresses separated by commas, or a list of addresses")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
            Ok(s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect())
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element::<String>()? {
                out.push(s);
            }
            Ok(out)
        }
    }
    d.deserialize_any(Visitor)
}
