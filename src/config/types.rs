//! The validated configuration: the typed structs and enums a [`Config`] is made of, with what each
//! key means. Nothing here checks a value; `validate.rs` is the one place that builds them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use lettre::message::Mailbox;
use url::Url;

use crate::secret::Secret;

/// The validated configuration of one daemon.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub runbook: RunbookConfig,
    pub prometheus: PrometheusConfig,
    /// statuspage.io pages, by name, sorted by name.
    pub status_pages: Vec<StatusPageConfig>,
    /// `None` when `[supabase] url` is unset: the Supabase project probe is off.
    pub supabase: Option<SupabaseConfig>,
    /// `None` when neither `[openai] api_key` nor `admin_key` is set: both OpenAI probes are off.
    pub openai: Option<OpenaiConfig>,
    /// `None` when `[coolify] url` is unset: the Coolify probe is off.
    pub coolify: Option<CoolifyConfig>,
    /// `None` when `[sentry] token` is unset: the Sentry probe is off.
    pub sentry: Option<SentryConfig>,
    pub redis: RedisConfig,
    pub docker: DockerConfig,
    pub smtp: SmtpConfig,
    pub escalation: EscalationConfig,
    pub maintenance: Vec<MaintenanceWindow>,
    /// `None`: no heartbeat.
    pub heartbeat: Option<HeartbeatConfig>,
    /// Leadership between replicas (`[ha]`); meaningful only on a shared store.
    pub ha: HaConfig,
}

/// `[ha]`: who this replica is and how it holds the lead on a shared store (`crate::ha`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaConfig {
    /// This replica's name, unique among the replicas (default: the hostname): the lease's holder,
    /// named by the standbys' `/readyz` and refusals and by the takeover on the timeline.
    pub node: String,
    /// How long a granted lease is valid. A dead leader is replaced within `lease + renew_every`.
    pub lease: Duration,
    /// Time between two claims. At most half the lease, so one failed renewal never loses it.
    pub renew_every: Duration,
    /// Whether any `[ha]` key was set: on an unshared store that is said once, as ignored.
    pub configured: bool,
}

/// A URL pinged every `interval` so that someone learns when the watchdog dies (healthchecks.io
/// style). The URL usually embeds its own secret, so it is kept as a [`Secret`].
#[derive(Debug, Clone)]
pub struct HeartbeatConfig {
    pub url: Secret,
    pub interval: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// The base of every link in an email.
    pub public_url: Url,
    /// Bearer token for the mutating API; `None` leaves the mutating API closed.
    pub api_token: Option<Secret>,
    /// True: the pages and `GET /api/...` are open to anyone who reaches the port. False: they need
    /// a session or the API token (`/healthz`, `/readyz`, `/metrics` and the email links stay open).
    pub public_reads: bool,
    /// The proxies whose `X-Forwarded-For` names the client the failure budgets count; empty: the
    /// header is ignored and the TCP peer is the client.
    pub trusted_proxies: Vec<super::IpNet>,
    /// What the HTTP server lets slow and many clients take (restart-only, see `crate::reload`).
    pub limits: ServerLimits,
}

/// The HTTP server's bounds on its clients (`crate::http::server`), so a flood of slow or many connections
/// cannot take the file descriptors and tasks the probes, the sender and the store need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// A request's head must be complete this long after its first byte (after the accept, for a
    /// connection's first request).
    pub header_read_timeout: Duration,
    /// Handling of one request, its body read included; past it the answer is 503.
    pub request_timeout: Duration,
    /// A connection on which no byte moves either way for this long, while it waits to read from or
    /// write to the client, is closed (a kept-alive connection between requests too). Longer than
    /// `request_timeout`: while a request is handled the connection waits on a read too (to notice
    /// a client that hangs up).
    pub idle_timeout: Duration,
    /// Connections open at once; past it the one waiting longest for a request is closed to make
    /// room (the new one when none waits).
    pub max_connections: usize,
    /// Requests handled at once (`/healthz` aside); past it the answer is 503 at once.
    pub max_requests_in_flight: usize,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The SQLite file; with `postgres` set, only the data directory is taken from it (the `.eml`
    /// outbox lives there).
    pub path: PathBuf,
    /// `Some` when `[store] url` is set: the store is on that PostgreSQL server, shared by every
    /// replica configured with it.
    pub postgres: Option<PostgresConfig>,
    /// How long resolved incidents, their emails and ended run-time windows are kept, and how long an
    /// undelivered email is retried. Longer than `escalation.reopen_within`, so nothing pruned can
    /// reopen and ask for its page keys again (see `store::retention`).
    pub retention: Duration,
}

/// A PostgreSQL store (`[store] url`, `password_file`, the timeouts): what `store::Store` connects
/// with. The password is a [`Secret`], never part of the URL (validation refuses one there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// A host name or an address.
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
    pub password: Option<Secret>,
    /// The longest wait for a connection: a call fails `unavailable` past it.
    pub connect_timeout: Duration,
    /// The longest a statement runs (the server cancels it then), lock waits included; also the
    /// longest a session may sit idle inside a transaction before the server ends it.
    pub statement_timeout: Duration,
    /// Read-only connections for the HTTP routes' reads (the writer's is one more).
    pub readers: usize,
    /// Plaintext or TLS: `sslmode` in `store.url`.
    pub tls: PgTls,
}

/// How the store talks to PostgreSQL, from `sslmode` in `store.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgTls {
    /// `sslmode=disable`, or no `sslmode`: plaintext, for a private network.
    Off,
    /// `sslmode=require`, `verify-ca` or `verify-full`: TLS, the server's certificate and name
    /// checked against the system's roots plus `ca_file` (`store.ca_file`). Never plaintext: a
    /// server without TLS, or with a certificate that does not check, is unreachable, said so.
    Verify { ca_file: Option<PathBuf> },
}

impl PostgresConfig {
    /// `user@host:port/dbname`: how logs and errors name the database (never with the password).
    pub fn target(&self) -> String {
        format!("{}@{}", self.user, self.address())
    }

    /// `host:port/dbname`: the database without its user (the store finding's name).
    pub fn address(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.dbname)
    }
}

impl StoreConfig {
    /// The data directory: the store's directory, which also holds the `.eml` outbox.
    pub fn data_dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// Where emails are written as `.eml` files when no `[smtp] host` is set.
    pub fn outbox_dir(&self) -> PathBuf {
        self.data_dir().join("outbox")
    }

    /// Where the data is, for logs: the file, or `postgres user@host:port/db` (with `, TLS`),
    /// never a password.
    pub fn describe(&self) -> String {
        match &self.postgres {
            None => self.path.display().to_string(),
            Some(pg) => match pg.tls {
                PgTls::Off => format!("postgres {}", pg.target()),
                PgTls::Verify { .. } => format!("postgres {}, TLS", pg.target()),
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunbookConfig {
    /// `None`: the embedded copy of the shipped runbook.
    pub path: Option<PathBuf>,
    pub locale: Locale,
}

/// The language of emails and pages, defined with their words in [`crate::locale`].
pub use crate::locale::Locale;
use crate::locale::{Msg, MsgId};

#[derive(Debug, Clone)]
pub struct PrometheusConfig {
    pub url: Url,
    pub interval: Duration,
    /// Bound on every HTTP call to Prometheus; shorter than `interval`.
    pub timeout: Duration,
    /// The backend's scrape job, for `up`.
    pub backend_job: String,
    /// The range of the rates behind the rules for mild, lasting breaches (`p95_seconds`,
    /// `error_ratio`, `auth_failure_ratio`).
    pub window: Duration,
    /// The range of the rates behind the rules for severe breaches (the `_short` readings) and of
    /// the request rate compared with its baseline: short enough to page in under a minute, long
    /// enough to hold a few scrapes.
    pub short_window: Duration,
    /// How often Prometheus is polled while a rule over it is pending or recovering (instead of
    /// `interval`), so a breach is confirmed and a recovery seen within a few seconds of its `for`.
    pub fast_interval: Duration,
    /// The range of the usual request rate, read just before `window` (`[1h] offset 5m`).
    pub baseline_window: Duration,
    /// The backend's request counter (`http_requests_total{handler,method,status}`).
    pub requests_metric: String,
    /// The per-handler latency histogram (`http_request_duration_seconds{handler,method}`).
    pub latency_histogram: String,
    /// The label-less, fine-bucketed latency histogram (`http_request_duration_highr_seconds`).
    pub latency_highr_histogram: String,
    /// Handlers that are not traffic (the scrape endpoint, health checks): left out of every ratio,
    /// rate and percentile that has a `handler` label.
    pub exclude_handlers: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct StatusPageConfig {
    /// The name after `status.` (`openai`, `supabase`).
    pub name: String,
    pub url: Url,
    pub interval: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct SupabaseConfig {
    pub url: Url,
    pub api_key: Secret,
    pub interval: Duration,
    pub timeout: Duration,
}

/// `[openai]`: the API itself (a cheap authenticated call) and the organization's costs against a
/// monthly budget. Either part may be on alone; at least one is, or the section is `None`.
#[derive(Debug, Clone)]
pub struct OpenaiConfig {
    /// The API's base (`https://api.openai.com`); `/v1/...` paths are joined to it.
    pub url: Url,
    /// A project or user key for `GET /v1/models`; `None`: the API probe is off.
    pub api_key: Option<Secret>,
    /// The organization's costs; `None`: the usage probe is off.
    pub usage: Option<OpenaiUsageConfig>,
    /// `OpenAI-Organization` on every request (`org-…`), when the keys belong to several.
    pub organization: Option<String>,
    /// `OpenAI-Project` on the API probe's request and `project_ids` on the costs query
    /// (`proj_…`): the spend of that project only.
    pub project: Option<String>,
    /// Between two API probes.
    pub interval: Duration,
    /// Bound on each request of either probe; shorter than both intervals.
    pub timeout: Duration,
}

/// The usage probe's part of `[openai]`.
#[derive(Debug, Clone)]
pub struct OpenaiUsageConfig {
    /// An admin key (`sk-admin-…`): the costs endpoint refuses project keys.
    pub admin_key: Secret,
    /// USD a calendar month (UTC), finite and above 0: what spend is a share of.
    pub monthly_budget: f64,
    /// Between two reads of the costs (they move by the day; OpenAI need not be asked often).
    pub interval: Duration,
}

// ---- [sentry] (issue 16) ----------------------------------------------------------------------
/// `[sentry]`: the unresolved issues, their events and the latest release of some projects of one
/// organization, read through Sentry's web API with an auth token.
#[derive(Debug, Clone)]
pub struct SentryConfig {
    /// Sentry's base (`https://sentry.io`, or a self-hosted one); `/api/0/...` is joined to it.
    pub url: Url,
    /// An auth token (`Authorization: Bearer`), with `project:read` and `event:read`.
    pub token: Secret,
    /// The organization's slug: it goes into the API's paths, so validation lets only a slug through.
    pub organization: String,
    /// The projects' slugs, at least one, no repeats (each is one path).
    pub projects: Vec<String>,
    /// Between two polls.
    pub interval: Duration,
    /// Bound on one poll, every request of every project within it; shorter than `interval`.
    pub timeout: Duration,
    /// The recent window: events over it are the rate compared with the rest of the last 24 h, and
    /// an issue first seen within it is new. Whole hours from 1 h to 12 h (Sentry's issue stats
    /// are hourly over 24 h), and at least `interval`.
    pub window: Duration,
}

// ---- [coolify] (issue 16) -------------------------------------------------------------------------
/// `[coolify]`: the team's Coolify and the one application the probe reads (its deployments and
/// which env var names its configuration sets; never a value).
#[derive(Debug, Clone)]
pub struct CoolifyConfig {
    /// Coolify's base (`https://coolify.example.com`); `/api/v1/...` paths are joined to it.
    pub url: Url,
    /// A Coolify API token (Keys & Tokens › API tokens), sent as `Authorization: Bearer`.
    pub token: Secret,
    /// The application's UUID in Coolify (letters and digits, as Coolify makes them).
    pub application: String,
    /// The env var names whose presence is checked (`JWT_SECRET`): names only, never values.
    pub env_names: Vec<String>,
    /// Between two polls.
    pub interval: Duration,
    /// Bound on each poll's requests together; shorter than `interval`.
    pub timeout: Duration,
}

/// `Debug` shows the URL with its password replaced (see [`crate::redact_url`]).
#[derive(Clone)]
pub struct RedisConfig {
    /// May carry a password; never log it whole (see [`crate::redact_url`]).
    pub url: Url,
    pub password: Option<Secret>,
    pub interval: Duration,
    pub timeout: Duration,
    /// Patterns counted with SCAN (`rate_limit:*`, `ai:*`).
    pub key_patterns: Vec<String>,
    /// Keys examined per SCAN round trip.
    pub scan_count: u32,
    /// Keys examined per pattern per poll, at most: bounds the work one poll does on a large Redis.
    pub scan_cap: u64,
    /// Evictions and rejected connections are read as a rate per minute over this window, so they
    /// mean the same at any poll interval and hold as evidence for the window (at least `interval`).
    pub evidence_window: Duration,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &crate::redact_url(&self.url))
            .field("password", &self.password)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("key_patterns", &self.key_patterns)
            .field("scan_count", &self.scan_count)
            .field("scan_cap", &self.scan_cap)
            .field("evidence_window", &self.evidence_window)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// `unix:///var/run/docker.sock` or `tcp://host:port`.
    pub host: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub containers: Vec<String>,
    /// Also watch every container labelled `com.docker.compose.project=<this>`.
    pub compose_project: Option<String>,
    /// Variables whose presence (never value) is reported.
    pub env_vars: Vec<String>,
    /// A new container (another ID, or created) or an image change this recent is a recent deploy;
    /// a restart of the same container on the same image never is.
    pub deploy_window: Duration,
    /// The window memory growth is measured over.
    pub memory_growth_window: Duration,
    /// Restarts and OOM kills hold as evidence for this long (`docker.restarts` counts the restarts
    /// within it, `docker.oom_killed` holds for it after a kill), whatever the poll interval.
    pub evidence_window: Duration,
    /// Log lines matching each pattern are read as a rate per minute over this window
    /// (`docker.log_lines_per_minute`), so a rule means the same at any poll interval.
    pub log_rate_window: Duration,
    /// Log lines read per container per poll, at most.
    pub log_lines_cap: u32,
    /// Named log-line patterns, counted per poll.
    pub log_patterns: Vec<LogPattern>,
    /// The runbook's container roles, sorted by name: what `role = "backend"` in a condition means.
    pub roles: Vec<RoleConfig>,
}

/// One container role of the runbook (`backend`, `redis`) and the containers it means, matched on
/// the Engine's list answer alone (names and labels): a container belongs to the role when its name
/// is one of `names`, matches one of `patterns`, or it carries the Compose label
/// `com.docker.compose.service=<compose_service>` (of `compose_project`, when that is set). Compose
/// v1 (`proj_backend_1`) and v2 (`proj-backend-1`) names and scaled replicas all carry the label.
#[derive(Debug, Clone)]
pub struct RoleConfig {
    /// The role as the runbook's `role` label spells it.
    pub name: String,
    /// Exact container names.
    pub names: Vec<String>,
    /// Regular expressions over the whole container name.
    pub patterns: Vec<NamePattern>,
    /// The Compose service; `None`: no Compose match.
    pub compose_service: Option<String>,
    /// Only containers of this Compose project; `None`: any project.
    pub compose_project: Option<String>,
}

impl RoleConfig {
    /// What the role looks for, as `check-config` says it (English, like every configuration
    /// message): `names harven-backend; compose service backend`.
    pub fn describe(&self) -> String {
        self.looks_for().to_string()
    }

    /// What the role looks for, in words of the reader's language (a role's no-data reason): its
    /// names, patterns and Compose service, joined by `; `.
    pub fn looks_for(&self) -> Msg {
        let mut parts = Vec::new();
        if !self.names.is_empty() {
            parts.push(Msg::new(MsgId::RoleNames).arg("names", self.names.join(", ")));
        }
        if !self.patterns.is_empty() {
            let texts: Vec<&str> = self.patterns.iter().map(|p| p.text.as_str()).collect();
            parts.push(Msg::new(MsgId::RolePatterns).arg("patterns", texts.join(", ")));
        }
        match (&self.compose_service, &self.compose_project) {
            (Some(s), Some(p)) => parts.push(
                Msg::new(MsgId::RoleComposeOf)
                    .arg("service", s)
                    .arg("project", p),
            ),
            (Some(s), None) => parts.push(Msg::new(MsgId::RoleCompose).arg("service", s)),
            (None, _) => {}
        }
        Msg::list(parts)
    }
}

/// A regular expression over a whole container name: `text` as written, `regex` anchored at both
/// ends (`harven-backend-\d+` does not match `harven-backend-12-old`).
#[derive(Debug, Clone)]
pub struct NamePattern {
    pub text: String,
    pub regex: regex::Regex,
}

/// A named regular expression over log lines.
#[derive(Debug, Clone)]
pub struct LogPattern {
    pub name: String,
    pub regex: regex::Regex,
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub transport: EmailTransport,
    pub from: Mailbox,
}

/// Where emails go.
#[derive(Debug, Clone)]
pub enum EmailTransport {
    /// An SMTP server.
    Smtp(SmtpServer),
    /// No `[smtp] host`: each email is written as an `.eml` file in `dir`.
    Files { dir: PathBuf },
}

#[derive(Debug, Clone)]
pub struct SmtpServer {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    /// Username and password, when the server wants a login.
    pub credentials: Option<(String, Secret)>,
    pub timeout: Duration,
    /// An extra root CA (PEM file) trusted besides the system's, for a private relay. Checked at
    /// load to be a readable file holding at least one certificate.
    pub ca_file: Option<PathBuf>,
}

/// How the SMTP connection is protected. There is no opportunistic mode: a configured TLS mode that the
/// server cannot do fails the send instead of falling back to plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    None,
    Starttls,
    Tls,
}

#[derive(Debug, Clone)]
pub struct EscalationConfig {
    pub l1: LevelConfig,
    pub l2: LevelConfig,
    pub l3: LevelConfig,
    /// L2 is paged when an incident is unresolved this long after it opened.
    pub l2_after: Duration,
    /// L3 is paged when an incident has been critical for longer than this.
    pub l3_critical_for: Duration,
    /// A section firing again this soon after its incident resolved reopens that incident, clocks kept.
    pub reopen_within: Duration,
    /// The highest paged level is reminded this often while it has not acknowledged.
    pub repeat_interval: Duration,
    /// An acknowledgement silences that level's reminders for this long.
    pub ack_timeout: Duration,
    /// When true, an acknowledgement also stops escalation to the next level (the runbook says it
    /// does not: L2 comes "após 30min sem resolução").
    pub ack_stops_escalation: bool,
    /// Emails per incident per rolling hour; past it, pages wait and go out as one digest.
    pub max_emails_per_hour: u32,
    /// Sections whose incidents page L1 only (the watchdog's own blindness by default).
    pub l1_only_sections: Vec<String>,
    /// How long the ack/resolve links in an email stay valid.
    pub link_ttl: Duration,
}

/// A maintenance window from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceWindow {
    /// Empty: every section.
    pub sections: Vec<String>,
    pub starts: crate::clock::Timestamp,
    pub ends: crate::clock::Timestamp,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct LevelConfig {
    pub to: Vec<Mailbox>,
}
