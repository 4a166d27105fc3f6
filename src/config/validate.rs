//! The typed configuration and the one place that checks it.
//!
//! [`validate`] turns the merged [`RawConfig`] into a [`Config`] or the full list of problems. Every
//! check of every key lives here, including rules across keys (a timeout longer than its interval, a
//! password with no username); the rest of the program trusts a `Config` as given.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::Mailbox;
use url::Url;

use super::raw::{RawConfig, RawLevel};
use super::{Origin, Problem};
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
    pub redis: RedisConfig,
    pub docker: DockerConfig,
    pub smtp: SmtpConfig,
    pub escalation: EscalationConfig,
    pub maintenance: Vec<MaintenanceWindow>,
    /// `None`: no heartbeat.
    pub heartbeat: Option<HeartbeatConfig>,
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
    pub trusted_proxies: Vec<crate::auth::IpNet>,
    /// What the HTTP server lets slow and many clients take (restart-only, see `crate::reload`).
    pub limits: ServerLimits,
}

/// The HTTP server's bounds on its clients (`crate::server`), so a flood of slow or many connections
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
    pub path: PathBuf,
    /// How long resolved incidents, their emails and ended run-time windows are kept, and how long an
    /// undelivered email is retried. Longer than `escalation.reopen_within`, so nothing pruned can
    /// reopen and ask for its page keys again (see `store::retention`).
    pub retention: Duration,
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
}

#[derive(Debug, Clone)]
pub struct RunbookConfig {
    /// `None`: the embedded copy of the shipped runbook.
    pub path: Option<PathBuf>,
    pub locale: Locale,
}

/// The language of emails and pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locale {
    PtBr,
    En,
}

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
    /// What the role looks for, as `check-config` and a role's no-data reason say it:
    /// `names harven-backend; compose service backend`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.names.is_empty() {
            parts.push(format!("names {}", self.names.join(", ")));
        }
        if !self.patterns.is_empty() {
            let texts: Vec<&str> = self.patterns.iter().map(|p| p.text.as_str()).collect();
            parts.push(format!("patterns {}", texts.join(", ")));
        }
        match (&self.compose_service, &self.compose_project) {
            (Some(s), Some(p)) => parts.push(format!("compose service {s} of project {p}")),
            (Some(s), None) => parts.push(format!("compose service {s}")),
            (None, _) => {}
        }
        parts.join("; ")
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

/// Collects problems while the typed config is built; `origin_of` names the layer that set a key.
struct Checker<'a> {
    origin_of: &'a dyn Fn(&str) -> Origin,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn problem(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            origin: (self.origin_of)(key),
            key: key.to_owned(),
            message: message.into(),
        });
    }

    /// A problem with `key` caused by a value set at `because` (a missing companion key is blamed on
    /// the layer that set the key needing it).
    fn problem_because(&mut self, key: &str, because: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            origin: (self.origin_of)(because),
            key: key.to_owned(),
            message: message.into(),
        });
    }

    /// `Some` when `f` accepts the value; otherwise the problem is recorded under `key`.
    fn check<T>(&mut self, key: &str, r: Result<T, String>) -> Option<T> {
        r.map_err(|m| self.problem(key, m)).ok()
    }

    /// A duration within its key's bound ([`super::limits::duration_bound`]).
    fn duration(&mut self, key: &str, text: &str) -> Option<Duration> {
        let bound = super::limits::duration_bound(key);
        self.check(
            key,
            parse_duration(text).and_then(|d| super::limits::within(text, d, bound)),
        )
    }

    /// `window` (the key `<section>.<key>`) when it spans at least the section's poll `interval`;
    /// otherwise a problem naming both: evidence over a window shorter than a poll would hold for
    /// less than the time between two polls, so a rule over it would fire or not by the interval.
    fn window_of(
        &mut self,
        section: &str,
        key: &str,
        window: Duration,
        interval: Duration,
    ) -> Option<Duration> {
        if window >= interval {
            return Some(window);
        }
        let (wkey, ikey) = (format!("{section}.{key}"), format!("{section}.interval"));
        // Blame the layer the user wrote: the window's, unless only the interval was changed.
        let because = match (self.origin_of)(&wkey) {
            Origin::Defaults => ikey.clone(),
            _ => wkey.clone(),
        };
        self.problem_because(
            &wkey,
            &because,
            format!(
                "({}) must be at least {ikey} ({}): evidence over a window shorter than a poll \
                 would hold for less than the time between two polls",
                humantime::format_duration(window),
                humantime::format_duration(interval)
            ),
        );
        None
    }

    fn url(&mut self, key: &str, text: &str, schemes: &[&str]) -> Option<Url> {
        self.check(key, parse_url(text, schemes))
    }

    /// An interval and the timeout of the calls made at that interval.
    fn interval_timeout(
        &mut self,
        section: &str,
        interval: &str,
        timeout: &str,
    ) -> Option<(Duration, Duration)> {
        let i = self.duration(&format!("{section}.interval"), interval);
        let t = self.duration(&format!("{section}.timeout"), timeout);
        let (i, t) = (i?, t?);
        if t >= i {
            // Blame the layer the user wrote: the timeout's, unless only the interval was changed.
            let (tkey, ikey) = (format!("{section}.timeout"), format!("{section}.interval"));
            let origin = match (self.origin_of)(&tkey) {
                Origin::Defaults => (self.origin_of)(&ikey),
                o => o,
            };
            self.problems.push(Problem {
                origin,
                key: tkey,
                message: format!(
                    "timeout ({}) must be shorter than {section}.interval ({})",
                    humantime::format_duration(t),
                    humantime::format_duration(i)
                ),
            });
            return None;
        }
        Some((i, t))
    }

    /// A secret given inline (`key`) or as a file (`key_file`); the file wins over an inline value.
    fn secret(
        &mut self,
        key: &str,
        inline: Option<String>,
        file: Option<String>,
    ) -> Option<Option<Secret>> {
        match file {
            Some(path) => {
                let file_key = format!("{key}_file");
                let origin = (self.origin_of)(&file_key);
                let path = resolve(origin.base_dir(), &path);
                match std::fs::read_to_string(&path) {
                    Ok(text) => {
                        let value = text.trim_end_matches(['\n', '\r']);
                        if value.is_empty() {
                            self.problem(
                                &file_key,
                                format!("secret file {} is empty", path.display()),
                            );
                            None
                        } else {
                            Some(Some(Secret::new(value)))
                        }
                    }
                    Err(e) => {
                        self.problem(
                            &file_key,
                            format!("cannot read secret file {}: {e}", path.display()),
                        );
                        None
                    }
                }
            }
            None => match inline {
                Some(v) if v.is_empty() => {
                    self.problem(key, "is empty; leave it unset instead");
                    None
                }
                other => Some(other.map(Secret::new)),
            },
        }
    }

    fn mailboxes(&mut self, key: &str, list: &[String]) -> Vec<Mailbox> {
        if list.is_empty() {
            self.problem(key, "needs at least one address");
        }
        list.iter()
            .filter_map(|a| {
                self.check(
                    key,
                    a.parse::<Mailbox>()
                        .map_err(|e| format!("{a:?} is not an email address: {e}")),
                )
            })
            .collect()
    }
}

fn resolve(base: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// A humane, positive duration: `30s`, `30m`, `1h`, `1h30m`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration ({e}); write it like 30s, 30m or 1h"))?;
    if d.is_zero() {
        return Err(format!("{text:?} must be longer than zero"));
    }
    Ok(d)
}

/// A URL, quoted in problems without its user information: a mistyped URL (`redis://:pw@`, a password
/// with an unescaped `/`) is not parsed, so everything before its last `@` is hidden.
fn parse_url(text: &str, schemes: &[&str]) -> Result<Url, String> {
    let shown = without_userinfo(text);
    let url = Url::parse(text).map_err(|e| format!("{shown:?} is not a URL: {e}"))?;
    if !schemes.contains(&url.scheme()) {
        return Err(format!(
            "{shown:?} has scheme {:?}; expected {}",
            url.scheme(),
            schemes.join(" or ")
        ));
    }
    if url.scheme() != "unix" && url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{shown:?} has no host"));
    }
    Ok(url)
}

/// `text` with everything between its scheme and its last `@` replaced by `***`.
fn without_userinfo(text: &str) -> String {
    let Some(at) = text.rfind('@') else {
        return text.to_owned();
    };
    let start = text.find("://").map_or(0, |i| i + 3).min(at);
    format!("{}***{}", &text[..start], &text[at..])
}

const HTTP: &[&str] = &["http", "https"];

/// Checks every key of `raw`; `origin_of` tells which layer set a key, for the messages.
pub(super) fn validate(
    raw: RawConfig,
    origin_of: &dyn Fn(&str) -> Origin,
) -> Result<Config, Vec<Problem>> {
    let mut c = Checker {
        origin_of,
        problems: Vec::new(),
    };

    let server = check_server(&mut c, raw.server);
    let store = check_store(&mut c, &raw.store);
    let runbook = check_runbook(&mut c, raw.runbook);
    let prometheus = check_prometheus(&mut c, raw.prometheus);
    let status_pages = check_status_pages(&mut c, &raw.status);
    let supabase = check_supabase(&mut c, raw.supabase);
    let redis = check_redis(&mut c, raw.redis);
    let docker = check_docker(&mut c, raw.docker);
    let smtp = check_smtp(&mut c, raw.smtp, store.as_ref());
    let escalation = check_escalation(&mut c, &raw.escalation);
    let maintenance = check_maintenance(&mut c, &raw.maintenance);
    let heartbeat = check_heartbeat(&mut c, raw.heartbeat);
    if let (Some(store), Some(escalation)) = (&store, &escalation)
        && store.retention <= escalation.reopen_within
    {
        c.problem(
            "store.retention",
            format!(
                "({}) must be longer than escalation.reopen_within ({}): an incident that can still \
                 reopen must keep its sent-email ledger",
                humantime::format_duration(store.retention),
                humantime::format_duration(escalation.reopen_within)
            ),
        );
    }

    let problems = c.problems;
    // Every `None` has recorded a problem; the `else` also catches problems with no `None`.
    let (
        Some(server),
        Some(store),
        Some(runbook),
        Some(prometheus),
        Some(supabase),
        Some(redis),
        Some(docker),
        Some(smtp),
        Some(escalation),
        Some(heartbeat),
        true,
    ) = (
        server,
        store,
        runbook,
        prometheus,
        supabase,
        redis,
        docker,
        smtp,
        escalation,
        heartbeat,
        problems.is_empty(),
    )
    else {
        return Err(problems);
    };
    Ok(Config {
        server,
        store,
        runbook,
        prometheus,
        status_pages,
        supabase,
        redis,
        docker,
        smtp,
        escalation,
        maintenance,
        heartbeat,
    })
}

fn check_server(c: &mut Checker<'_>, raw: super::raw::RawServer) -> Option<ServerConfig> {
    let listen = c.check(
        "server.listen",
        raw.listen
            .parse::<SocketAddr>()
            .map_err(|_| format!("{:?} is not a socket address like 0.0.0.0:9464", raw.listen)),
    );
    let public_url = c.url("server.public_url", &raw.public_url, HTTP);
    let token_key = if raw.api_token_file.is_some() {
        "server.api_token_file"
    } else {
        "server.api_token"
    };
    let limits = check_server_limits(c, &raw);
    let api_token = c.secret("server.api_token", raw.api_token, raw.api_token_file);
    // The token guards every change and the sign-in: a guessable one is refused, never quoted.
    let api_token = api_token.and_then(|token| {
        let strength = token
            .as_ref()
            .map(|t| super::limits::token_strength(t.expose()));
        match strength {
            Some(Err(why)) => {
                c.problem(token_key, why);
                None
            }
            _ => Some(token),
        }
    });
    let mut trusted_proxies = Vec::new();
    for text in &raw.trusted_proxies {
        match text.parse::<crate::auth::IpNet>() {
            Ok(net) => trusted_proxies.push(net),
            Err(why) => c.problem("server.trusted_proxies", why),
        }
    }
    if !raw.public_reads && matches!(api_token, Some(None)) {
        c.problem(
            "server.public_reads",
            "is false, so reading needs the API token: set server.api_token_file too",
        );
    }
    Some(ServerConfig {
        listen: listen?,
        public_url: public_url?,
        api_token: api_token?,
        public_reads: raw.public_reads,
        trusted_proxies,
        limits: limits?,
    })
}

/// The server's limits, each within bounds that still serve a person and a scraper (a second at
/// least) and still bound something (an hour at most; counts up to what one process can hold).
fn check_server_limits(c: &mut Checker<'_>, raw: &super::raw::RawServer) -> Option<ServerLimits> {
    fn timeout(c: &mut Checker<'_>, key: &str, text: &str) -> Option<Duration> {
        const BOUNDS: std::ops::RangeInclusive<Duration> =
            Duration::from_secs(1)..=Duration::from_secs(3600);
        let d = c.duration(key, text)?;
        c.check(
            key,
            BOUNDS
                .contains(&d)
                .then_some(d)
                .ok_or_else(|| format!("({text}) must be between 1s and 1h")),
        )
    }
    fn count(c: &mut Checker<'_>, key: &str, n: i64) -> Option<usize> {
        c.check(
            key,
            usize::try_from(n)
                .ok()
                .filter(|n| (1..=1_000_000).contains(n))
                .ok_or_else(|| format!("{n} must be a count from 1 to 1000000")),
        )
    }
    let header_read_timeout = timeout(c, "server.header_read_timeout", &raw.header_read_timeout);
    let request_timeout = timeout(c, "server.request_timeout", &raw.request_timeout);
    let idle_timeout = timeout(c, "server.idle_timeout", &raw.idle_timeout);
    let max_connections = count(c, "server.max_connections", raw.max_connections);
    let max_in_flight = count(
        c,
        "server.max_requests_in_flight",
        raw.max_requests_in_flight,
    );
    if let (Some(idle), Some(request)) = (idle_timeout, request_timeout)
        && idle <= request
    {
        c.problem(
            "server.idle_timeout",
            format!(
                "({}) must be longer than server.request_timeout ({}): a connection waits on its \
                 client while its request is handled, and would be closed before the request timed out",
                humantime::format_duration(idle),
                humantime::format_duration(request)
            ),
        );
        return None;
    }
    if let (Some(conns), Some(in_flight)) = (max_connections, max_in_flight)
        && in_flight > conns
    {
        c.problem(
            "server.max_requests_in_flight",
            format!(
                "({in_flight}) must not exceed server.max_connections ({conns}): each request in \
                 flight holds a connection"
            ),
        );
        return None;
    }
    Some(ServerLimits {
        header_read_timeout: header_read_timeout?,
        request_timeout: request_timeout?,
        idle_timeout: idle_timeout?,
        max_connections: max_connections?,
        max_requests_in_flight: max_in_flight?,
    })
}

fn check_store(c: &mut Checker<'_>, raw: &super::raw::RawStore) -> Option<StoreConfig> {
    let retention = c.duration("store.retention", &raw.retention);
    if raw.path.trim().is_empty() {
        c.problem(
            "store.path",
            "must name the database file, like data/watchdog.db",
        );
        return None;
    }
    Some(StoreConfig {
        path: PathBuf::from(&raw.path),
        retention: retention?,
    })
}

fn check_runbook(c: &mut Checker<'_>, raw: super::raw::RawRunbook) -> Option<RunbookConfig> {
    let path = raw.path.map(|p| {
        let path = resolve((c.origin_of)("runbook.path").base_dir(), &p);
        if !path.is_file() {
            c.problem(
                "runbook.path",
                format!("{} is not a readable file", path.display()),
            );
        }
        path
    });
    let locale = c.check(
        "runbook.locale",
        match raw.locale.as_str() {
            "pt-BR" => Ok(Locale::PtBr),
            "en" => Ok(Locale::En),
            other => Err(format!("unknown locale {other:?}; expected pt-BR or en")),
        },
    );
    Some(RunbookConfig {
        path,
        locale: locale?,
    })
}

fn check_prometheus(
    c: &mut Checker<'_>,
    raw: super::raw::RawPrometheus,
) -> Option<PrometheusConfig> {
    let url = c.url("prometheus.url", &raw.url, HTTP);
    let times = c.interval_timeout("prometheus", &raw.interval, &raw.timeout);
    if raw.backend_job.trim().is_empty() {
        c.problem(
            "prometheus.backend_job",
            "must name the backend's scrape job",
        );
    }
    let window = c.duration("prometheus.window", &raw.window);
    let short_window = c.duration("prometheus.short_window", &raw.short_window);
    let fast_interval = c.duration("prometheus.fast_interval", &raw.fast_interval);
    let baseline_window = c.duration("prometheus.baseline_window", &raw.baseline_window);
    if let (Some(w), Some(s)) = (window, short_window)
        && s > w
    {
        c.problem(
            "prometheus.short_window",
            format!(
                "({}) must not be longer than prometheus.window ({})",
                humantime::format_duration(s),
                humantime::format_duration(w)
            ),
        );
    }
    for (key, name) in [
        ("requests_metric", &raw.requests_metric),
        ("latency_histogram", &raw.latency_histogram),
        ("latency_highr_histogram", &raw.latency_highr_histogram),
    ] {
        if !is_metric_name(name) {
            c.problem(
                &format!("prometheus.{key}"),
                format!("{name:?} is not a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)"),
            );
        }
    }
    for (i, handler) in raw.exclude_handlers.iter().enumerate() {
        if handler.trim().is_empty() {
            c.problem(
                "prometheus.exclude_handlers",
                format!(
                    "entry {} is empty; name a handler such as \"/metrics\"",
                    i + 1
                ),
            );
        }
    }
    // A fast interval longer than the interval changes nothing: the shorter of the two applies.
    let (interval, timeout) = times?;
    Some(PrometheusConfig {
        url: url?,
        interval,
        timeout,
        backend_job: raw.backend_job,
        window: window?,
        short_window: short_window?,
        fast_interval: fast_interval?,
        baseline_window: baseline_window?,
        requests_metric: raw.requests_metric,
        latency_histogram: raw.latency_histogram,
        latency_highr_histogram: raw.latency_highr_histogram,
        exclude_handlers: raw.exclude_handlers,
    })
}

/// A valid Prometheus metric name.
fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn check_status_pages(
    c: &mut Checker<'_>,
    raw: &std::collections::BTreeMap<String, super::raw::RawStatusPage>,
) -> Vec<StatusPageConfig> {
    let mut pages = Vec::new();
    for (name, page) in raw {
        let section = format!("status.{name}");
        let url = c.url(&format!("{section}.url"), &page.url, HTTP);
        let times = c.interval_timeout(
            &section,
            page.interval.as_deref().unwrap_or("60s"),
            page.timeout.as_deref().unwrap_or("10s"),
        );
        if let (Some(url), Some((interval, timeout))) = (url, times) {
            pages.push(StatusPageConfig {
                name: name.clone(),
                url,
                interval,
                timeout,
            });
        }
    }
    pages
}

/// `Some(None)`: valid, and the probe is off (no `supabase.url`).
fn check_supabase(
    c: &mut Checker<'_>,
    raw: super::raw::RawSupabase,
) -> Option<Option<SupabaseConfig>> {
    let times = c.interval_timeout("supabase", &raw.interval, &raw.timeout);
    let key = c.secret("supabase.api_key", raw.api_key, raw.api_key_file);
    let Some(text) = raw.url else {
        return Some(None);
    };
    let url = c.url("supabase.url", &text, HTTP);
    let api_key = match key? {
        Some(k) => k,
        None => {
            c.problem_because(
                "supabase.api_key",
                "supabase.url",
                "is required when supabase.url is set (or supabase.api_key_file)",
            );
            return None;
        }
    };
    let (interval, timeout) = times?;
    Some(Some(SupabaseConfig {
        url: url?,
        api_key,
        interval,
        timeout,
    }))
}

fn check_redis(c: &mut Checker<'_>, raw: super::raw::RawRedis) -> Option<RedisConfig> {
    let url = c.url(
        "redis.url",
        &raw.url,
        &["redis", "rediss", "redis+unix", "unix"],
    );
    let password = c.secret("redis.password", raw.password, raw.password_file);
    let times = c.interval_timeout("redis", &raw.interval, &raw.timeout);
    for p in &raw.key_patterns {
        if p.trim().is_empty() {
            c.problem("redis.key_patterns", "has an empty pattern");
        }
    }
    let scan_count = c.check(
        "redis.scan_count",
        u32::try_from(raw.scan_count)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{} must be a positive count", raw.scan_count)),
    );
    let scan_cap = c.check(
        "redis.scan_cap",
        u64::try_from(raw.scan_cap)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{} must be a positive count", raw.scan_cap)),
    );
    let evidence_window = c.duration("redis.evidence_window", &raw.evidence_window);
    let (interval, timeout) = times?;
    let evidence_window = c.window_of("redis", "evidence_window", evidence_window?, interval);
    Some(RedisConfig {
        url: url?,
        password: password?,
        interval,
        timeout,
        key_patterns: raw.key_patterns,
        scan_count: scan_count?,
        scan_cap: scan_cap?,
        evidence_window: evidence_window?,
    })
}

fn check_docker(c: &mut Checker<'_>, raw: super::raw::RawDocker) -> Option<DockerConfig> {
    let host = c.check("docker.host", {
        let h = &raw.host;
        if h.starts_with("unix:///") || h.starts_with("tcp://") || h.starts_with("http://") {
            Ok(h.clone())
        } else {
            Err(format!(
                "{h:?} must be unix:///path/to/docker.sock or tcp://host:port"
            ))
        }
    });
    let times = c.interval_timeout("docker", &raw.interval, &raw.timeout);
    let mut seen = std::collections::BTreeSet::new();
    for name in &raw.containers {
        if name.trim().is_empty() {
            c.problem("docker.containers", "has an empty container name");
        } else if !seen.insert(name.as_str()) {
            c.problem("docker.containers", format!("names {name:?} twice"));
        }
    }
    if raw
        .compose_project
        .as_deref()
        .is_some_and(|p| p.trim().is_empty())
    {
        c.problem("docker.compose_project", "is empty; leave it unset instead");
    }
    if raw.env_vars.iter().any(|v| v.is_empty() || v.contains('=')) {
        c.problem("docker.env_vars", "names must be non-empty and hold no `=`");
    }
    let deploy_window = c.duration("docker.deploy_window", &raw.deploy_window);
    let growth_window = c.duration("docker.memory_growth_window", &raw.memory_growth_window);
    let log_lines_cap = c.check(
        "docker.log_lines_cap",
        u32::try_from(raw.log_lines_cap)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{} must be a positive count", raw.log_lines_cap)),
    );
    let mut log_patterns = Vec::new();
    for (name, text) in &raw.log_patterns {
        let key = format!("docker.log_patterns.{name}");
        match regex::Regex::new(text) {
            Ok(regex) => log_patterns.push(LogPattern {
                name: name.clone(),
                regex,
            }),
            Err(e) => c.problem(&key, format!("is not a regular expression: {e}")),
        }
    }
    let evidence_window = c.duration("docker.evidence_window", &raw.evidence_window);
    let log_rate_window = c.duration("docker.log_rate_window", &raw.log_rate_window);
    let roles = check_roles(c, raw.roles);
    let (interval, timeout) = times?;
    // Every window of the probe's evidence must span at least one poll: a shorter one would hold a
    // count for less than the time between two polls, and read nothing at all in between.
    let windows = [
        ("deploy_window", deploy_window),
        ("memory_growth_window", growth_window),
        ("evidence_window", evidence_window),
        ("log_rate_window", log_rate_window),
    ]
    .map(|(key, w)| w.and_then(|w| c.window_of("docker", key, w, interval)));
    let [
        deploy_window,
        growth_window,
        evidence_window,
        log_rate_window,
    ] = windows;
    Some(DockerConfig {
        host: host?,
        interval,
        timeout,
        containers: raw.containers,
        compose_project: raw.compose_project,
        env_vars: raw.env_vars,
        deploy_window: deploy_window?,
        memory_growth_window: growth_window?,
        evidence_window: evidence_window?,
        log_rate_window: log_rate_window?,
        log_lines_cap: log_lines_cap?,
        log_patterns,
        roles: roles?,
    })
}

/// `docker.roles.*`: each role's names, patterns and Compose service. `None` when any is wrong.
fn check_roles(
    c: &mut Checker<'_>,
    raw: std::collections::BTreeMap<String, super::raw::RawRole>,
) -> Option<Vec<RoleConfig>> {
    let before = c.problems.len();
    // An empty string unsets a key an earlier layer set (the embedded defaults' `compose_service`).
    let set = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let mut roles = Vec::new();
    for (name, role) in raw {
        let key = format!("docker.roles.{name}");
        // A table records no origin: a problem with the role as a whole is blamed on the layer that
        // set one of its keys.
        let because = ["names", "patterns", "compose_service", "compose_project"]
            .map(|k| format!("{key}.{k}"))
            .into_iter()
            .find(|k| (c.origin_of)(k) != Origin::Defaults)
            .unwrap_or_else(|| key.clone());
        let spelled = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !spelled {
            c.problem_because(
                &key,
                &because,
                format!(
                    "{name:?} is not a role name: use lowercase letters, digits, `_` and `-` (as the \
                     runbook's `role` label and an environment variable spell it)"
                ),
            );
            continue;
        }
        let mut seen = std::collections::BTreeSet::new();
        for n in &role.names {
            if n.trim().is_empty() {
                c.problem(&format!("{key}.names"), "has an empty container name");
            } else if !seen.insert(n.as_str()) {
                c.problem(&format!("{key}.names"), format!("names {n:?} twice"));
            }
        }
        let mut patterns = Vec::new();
        for text in &role.patterns {
            match regex::Regex::new(&format!("^(?:{text})$")) {
                Ok(regex) => patterns.push(NamePattern {
                    text: text.clone(),
                    regex,
                }),
                Err(e) => c.problem(
                    &format!("{key}.patterns"),
                    format!("{text:?} is not a regular expression: {e}"),
                ),
            }
        }
        let compose_service = set(role.compose_service);
        let compose_project = set(role.compose_project);
        if compose_project.is_some() && compose_service.is_none() {
            c.problem(
                &format!("{key}.compose_project"),
                "narrows a Compose service: set compose_service too",
            );
        }
        if role.names.is_empty() && role.patterns.is_empty() && compose_service.is_none() {
            c.problem_because(
                &key,
                &because,
                "matches no container: give names, patterns or compose_service",
            );
        }
        roles.push(RoleConfig {
            name,
            names: role.names,
            patterns,
            compose_service,
            compose_project,
        });
    }
    (c.problems.len() == before).then_some(roles)
}

fn check_escalation(
    c: &mut Checker<'_>,
    raw: &super::raw::RawEscalation,
) -> Option<EscalationConfig> {
    let l1 = c.mailboxes("escalation.l1.to", &raw.l1.to);
    let l2 = c.mailboxes("escalation.l2.to", &raw.l2.to);
    let l3 = c.mailboxes("escalation.l3.to", &raw.l3.to);
    reject_level_keys(c, "l1", &raw.l1, true, true);
    reject_level_keys(c, "l2", &raw.l2, false, true);
    reject_level_keys(c, "l3", &raw.l3, true, false);
    let l2_after = match raw.l2.after.as_deref() {
        Some(text) => c.duration("escalation.l2.after", text),
        None => {
            c.problem("escalation.l2.after", "is required (the runbook says 30m)");
            None
        }
    };
    let reopen_within = c.duration("escalation.reopen_within", &raw.reopen_within);
    let repeat_interval = c.duration("escalation.repeat_interval", &raw.repeat_interval);
    let ack_timeout = c.duration("escalation.ack_timeout", &raw.ack_timeout);
    let link_ttl = c.duration("escalation.link_ttl", &raw.link_ttl);
    let max_emails = c.check(
        "escalation.max_emails_per_hour",
        u32::try_from(raw.max_emails_per_hour)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{} must be a positive count", raw.max_emails_per_hour)),
    );
    let l3_critical_for = match raw.l3.critical_for.as_deref() {
        Some(text) => c.duration("escalation.l3.critical_for", text),
        None => {
            c.problem(
                "escalation.l3.critical_for",
                "is required (the runbook says 1h)",
            );
            None
        }
    };
    Some(EscalationConfig {
        l1: LevelConfig { to: l1 },
        l2: LevelConfig { to: l2 },
        l3: LevelConfig { to: l3 },
        l2_after: l2_after?,
        l3_critical_for: l3_critical_for?,
        reopen_within: reopen_within?,
        repeat_interval: repeat_interval?,
        ack_timeout: ack_timeout?,
        ack_stops_escalation: raw.ack_stops_escalation,
        max_emails_per_hour: max_emails?,
        l1_only_sections: raw.l1_only_sections.clone(),
        link_ttl: link_ttl?,
    })
}

/// `Some(None)`: valid, no heartbeat configured.
fn check_heartbeat(
    c: &mut Checker<'_>,
    raw: super::raw::RawHeartbeat,
) -> Option<Option<HeartbeatConfig>> {
    let times = c.interval_timeout("heartbeat", &raw.interval, &raw.timeout);
    let url = c.secret("heartbeat.url", raw.url, raw.url_file)?;
    let Some(url) = url else { return Some(None) };
    // Checked without echoing the URL: it usually holds the check's secret.
    if parse_url(url.expose(), HTTP).is_err() {
        c.problem(
            "heartbeat.url",
            "is not an http(s) URL (the value is not shown: it may hold a secret)",
        );
        return None;
    }
    let (interval, timeout) = times?;
    Some(Some(HeartbeatConfig {
        url,
        interval,
        timeout,
    }))
}

fn check_maintenance(c: &mut Checker<'_>, raw: &[super::raw::RawWindow]) -> Vec<MaintenanceWindow> {
    let mut out = Vec::new();
    for (i, w) in raw.iter().enumerate() {
        let key = format!("maintenance[{i}]");
        let parse = |c: &mut Checker<'_>, field: &str, text: &str| {
            c.check(
                &format!("{key}.{field}"),
                humantime::parse_rfc3339_weak(text)
                    .map(crate::clock::Timestamp::from_system_time)
                    .map_err(|e| {
                        format!("{text:?} is not a UTC time like 2026-11-24T22:00:00Z ({e})")
                    }),
            )
        };
        let (Some(starts), Some(ends)) = (parse(c, "starts", &w.starts), parse(c, "ends", &w.ends))
        else {
            continue;
        };
        if ends <= starts {
            c.problem(&format!("{key}.ends"), "must be after starts");
            continue;
        }
        if ends.saturating_since(starts) > super::limits::MAX_WINDOW.max {
            c.problem(
                &format!("{key}.ends"),
                format!(
                    "is more than {} after starts, the longest a maintenance window may be",
                    super::limits::MAX_WINDOW.text
                ),
            );
            continue;
        }
        out.push(MaintenanceWindow {
            sections: w.sections.clone(),
            starts,
            ends,
            reason: w.reason.clone(),
        });
    }
    out
}

/// `after` is only L2's and `critical_for` only L3's; naming them elsewhere is a mistake worth saying.
fn reject_level_keys(
    c: &mut Checker<'_>,
    level: &str,
    raw: &RawLevel,
    no_after: bool,
    no_critical_for: bool,
) {
    if no_after && raw.after.is_some() {
        c.problem(
            &format!("escalation.{level}.after"),
            "only escalation.l2 has a delay `after`",
        );
    }
    if no_critical_for && raw.critical_for.is_some() {
        c.problem(
            &format!("escalation.{level}.critical_for"),
            "only escalation.l3 has `critical_for`",
        );
    }
}

fn check_smtp(
    c: &mut Checker<'_>,
    raw: super::raw::RawSmtp,
    store: Option<&StoreConfig>,
) -> Option<SmtpConfig> {
    let from = c.check(
        "smtp.from",
        raw.from
            .parse::<Mailbox>()
            .map_err(|e| format!("{:?} is not an email address: {e}", raw.from)),
    );
    let tls = c.check(
        "smtp.tls",
        match raw.tls.as_str() {
            "none" => Ok(TlsMode::None),
            "starttls" => Ok(TlsMode::Starttls),
            "tls" => Ok(TlsMode::Tls),
            other => Err(format!(
                "unknown TLS mode {other:?}; expected none, starttls or tls"
            )),
        },
    );
    let port = c.check(
        "smtp.port",
        u16::try_from(raw.port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{} is not a TCP port (1-65535)", raw.port)),
    );
    let timeout = c.duration("smtp.timeout", &raw.timeout);
    let has_password_file = raw.password_file.is_some();
    let password = c.secret("smtp.password", raw.password, raw.password_file);
    let credentials = match (raw.username, password) {
        (Some(user), Some(Some(pass))) => Some(Some((user, pass))),
        (None, Some(Some(_))) => {
            let set = if has_password_file {
                "smtp.password_file"
            } else {
                "smtp.password"
            };
            c.problem_because(
                "smtp.username",
                set,
                "is required when smtp.password is set",
            );
            None
        }
        (Some(_), Some(None)) => {
            c.problem_because(
                "smtp.password",
                "smtp.username",
                "is required when smtp.username is set (or smtp.password_file)",
            );
            None
        }
        (None, Some(None)) => Some(None),
        (_, None) => None,
    };
    let ca_file = match raw.ca_file {
        None => Some(None),
        Some(text) => {
            let path = resolve((c.origin_of)("smtp.ca_file").base_dir(), &text);
            match std::fs::read_to_string(&path) {
                Ok(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => {
                    if tls == Some(TlsMode::None) {
                        c.problem(
                            "smtp.ca_file",
                            "is only used with smtp.tls = \"starttls\" or \"tls\"",
                        );
                        None
                    } else {
                        Some(Some(path))
                    }
                }
                Ok(_) => {
                    c.problem(
                        "smtp.ca_file",
                        format!("{} holds no PEM certificate", path.display()),
                    );
                    None
                }
                Err(e) => {
                    c.problem(
                        "smtp.ca_file",
                        format!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            }
        }
    };
    let transport = match raw.host {
        None => Some(EmailTransport::Files {
            dir: store?.outbox_dir(),
        }),
        Some(host) if host.trim().is_empty() || host.contains(['/', ' ']) => {
            c.problem("smtp.host", format!("{host:?} is not a host name"));
            None
        }
        Some(host) => Some(EmailTransport::Smtp(SmtpServer {
            host,
            port: port?,
            tls: tls?,
            credentials: credentials?,
            timeout: timeout?,
            ca_file: ca_file?,
        })),
    };
    Some(SmtpConfig {
        transport: transport?,
        from: from?,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_url_is_quoted_without_its_user_information() {
        let e = parse_url("redis://:s3cr3t@", &["redis"]).unwrap_err();
        assert_eq!(e, "\"redis://***@\" is not a URL: empty host");
        let e = parse_url("http://u:pa/ss@host", &["redis"]).unwrap_err();
        assert!(e.starts_with("\"http://***@host\""), "{e}");
        assert_eq!(without_userinfo("http://host:9090/x"), "http://host:9090/x");
        assert_eq!(without_userinfo("u:pw@host"), "***@host");
    }

    proptest! {
        #![proptest_config(crate::mutate::cases(256))]

        #[test]
        fn prop_any_duration_text_is_a_duration_or_refused_quoting_it(text in crate::mutate::garbage()) {
            if let Err(message) = parse_duration(&text) {
                prop_assert!(message.contains(&format!("{text:?}")), "{message}");
            }
        }

        #[test]
        fn prop_durations_round_trip(secs in 1..100_000_000u64, nanos in 0..1_000_000_000u32) {
            let d = Duration::new(secs, nanos);
            let text = humantime::format_duration(d).to_string();
            prop_assert_eq!(parse_duration(&text), Ok(d));
        }
    }
}
