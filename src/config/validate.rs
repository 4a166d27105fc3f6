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
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// The base of every link in an email.
    pub public_url: Url,
    /// Bearer token for the mutating API; `None` leaves the mutating API closed.
    pub api_token: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub path: PathBuf,
}

impl StoreConfig {
    /// The data directory: the store's directory, which also holds the `.eml` outbox.
    pub fn data_dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
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

#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// May carry a password; never log it whole (see [`crate::redact_url`]).
    pub url: Url,
    pub password: Option<Secret>,
    pub interval: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// `unix:///var/run/docker.sock` or `tcp://host:port`.
    pub host: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub containers: Vec<String>,
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

    fn duration(&mut self, key: &str, text: &str) -> Option<Duration> {
        self.check(key, parse_duration(text))
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

fn parse_url(text: &str, schemes: &[&str]) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if !schemes.contains(&url.scheme()) {
        return Err(format!(
            "{text:?} has scheme {:?}; expected {}",
            url.scheme(),
            schemes.join(" or ")
        ));
    }
    if url.scheme() != "unix" && url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{text:?} has no host"));
    }
    Ok(url)
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

    let listen = c.check(
        "server.listen",
        raw.server.listen.parse::<SocketAddr>().map_err(|_| {
            format!(
                "{:?} is not a socket address like 0.0.0.0:9464",
                raw.server.listen
            )
        }),
    );
    let public_url = c.url("server.public_url", &raw.server.public_url, HTTP);
    let api_token = c.secret(
        "server.api_token",
        raw.server.api_token,
        raw.server.api_token_file,
    );

    let store_path = if raw.store.path.trim().is_empty() {
        c.problem(
            "store.path",
            "must name the database file, like data/watchdog.db",
        );
        None
    } else {
        Some(PathBuf::from(&raw.store.path))
    };

    let runbook_path = raw.runbook.path.map(|p| {
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
        match raw.runbook.locale.as_str() {
            "pt-BR" => Ok(Locale::PtBr),
            "en" => Ok(Locale::En),
            other => Err(format!("unknown locale {other:?}; expected pt-BR or en")),
        },
    );

    let prom_url = c.url("prometheus.url", &raw.prometheus.url, HTTP);
    let prom_times = c.interval_timeout(
        "prometheus",
        &raw.prometheus.interval,
        &raw.prometheus.timeout,
    );

    let mut status_pages = Vec::new();
    for (name, page) in &raw.status {
        let section = format!("status.{name}");
        let url = c.url(&format!("{section}.url"), &page.url, HTTP);
        let times = c.interval_timeout(
            &section,
            page.interval.as_deref().unwrap_or("60s"),
            page.timeout.as_deref().unwrap_or("10s"),
        );
        if let (Some(url), Some((interval, timeout))) = (url, times) {
            status_pages.push(StatusPageConfig {
                name: name.clone(),
                url,
                interval,
                timeout,
            });
        }
    }

    let supa_times = c.interval_timeout("supabase", &raw.supabase.interval, &raw.supabase.timeout);
    let supa_key = c.secret(
        "supabase.api_key",
        raw.supabase.api_key,
        raw.supabase.api_key_file,
    );
    let supabase = match raw.supabase.url {
        None => None,
        Some(text) => {
            let url = c.url("supabase.url", &text, HTTP);
            let key = match supa_key {
                Some(None) => {
                    c.problem_because(
                        "supabase.api_key",
                        "supabase.url",
                        "is required when supabase.url is set (or supabase.api_key_file)",
                    );
                    None
                }
                Some(Some(k)) => Some(k),
                None => None,
            };
            match (url, key, supa_times) {
                (Some(url), Some(api_key), Some((interval, timeout))) => Some(SupabaseConfig {
                    url,
                    api_key,
                    interval,
                    timeout,
                }),
                _ => None,
            }
        }
    };

    let redis_url = c.url(
        "redis.url",
        &raw.redis.url,
        &["redis", "rediss", "redis+unix", "unix"],
    );
    let redis_password = c.secret(
        "redis.password",
        raw.redis.password,
        raw.redis.password_file,
    );
    let redis_times = c.interval_timeout("redis", &raw.redis.interval, &raw.redis.timeout);

    let docker_host = c.check("docker.host", {
        let h = &raw.docker.host;
        if h.starts_with("unix:///") || h.starts_with("tcp://") || h.starts_with("http://") {
            Ok(h.clone())
        } else {
            Err(format!(
                "{h:?} must be unix:///path/to/docker.sock or tcp://host:port"
            ))
        }
    });
    let docker_times = c.interval_timeout("docker", &raw.docker.interval, &raw.docker.timeout);
    let mut seen = std::collections::BTreeSet::new();
    for name in &raw.docker.containers {
        if name.trim().is_empty() {
            c.problem("docker.containers", "has an empty container name");
        } else if !seen.insert(name.as_str()) {
            c.problem("docker.containers", format!("names {name:?} twice"));
        }
    }

    let smtp = check_smtp(&mut c, raw.smtp, store_path.as_deref());

    let l1 = c.mailboxes("escalation.l1.to", &raw.escalation.l1.to);
    let l2 = c.mailboxes("escalation.l2.to", &raw.escalation.l2.to);
    let l3 = c.mailboxes("escalation.l3.to", &raw.escalation.l3.to);
    reject_level_keys(&mut c, "l1", &raw.escalation.l1, true, true);
    reject_level_keys(&mut c, "l2", &raw.escalation.l2, false, true);
    reject_level_keys(&mut c, "l3", &raw.escalation.l3, true, false);
    let l2_after = match raw.escalation.l2.after.as_deref() {
        Some(text) => c.duration("escalation.l2.after", text),
        None => {
            c.problem("escalation.l2.after", "is required (the runbook says 30m)");
            None
        }
    };
    let l3_critical_for = match raw.escalation.l3.critical_for.as_deref() {
        Some(text) => c.duration("escalation.l3.critical_for", text),
        None => {
            c.problem(
                "escalation.l3.critical_for",
                "is required (the runbook says 1h)",
            );
            None
        }
    };

    let problems = c.problems;
    // Every `None` below has recorded a problem; the `let ... else` only runs when there is none.
    let (
        Some(listen),
        Some(public_url),
        Some(api_token),
        Some(store_path),
        Some(locale),
        Some(prom_url),
        Some((prom_interval, prom_timeout)),
        Some(redis_url),
        Some(redis_password),
        Some((redis_interval, redis_timeout)),
        Some(docker_host),
        Some((docker_interval, docker_timeout)),
        Some(smtp),
        Some(l2_after),
        Some(l3_critical_for),
        true,
    ) = (
        listen,
        public_url,
        api_token,
        store_path,
        locale,
        prom_url,
        prom_times,
        redis_url,
        redis_password,
        redis_times,
        docker_host,
        docker_times,
        smtp,
        l2_after,
        l3_critical_for,
        problems.is_empty(),
    )
    else {
        return Err(problems);
    };

    Ok(Config {
        server: ServerConfig {
            listen,
            public_url,
            api_token,
        },
        store: StoreConfig { path: store_path },
        runbook: RunbookConfig {
            path: runbook_path,
            locale,
        },
        prometheus: PrometheusConfig {
            url: prom_url,
            interval: prom_interval,
            timeout: prom_timeout,
        },
        status_pages,
        supabase,
        redis: RedisConfig {
            url: redis_url,
            password: redis_password,
            interval: redis_interval,
            timeout: redis_timeout,
        },
        docker: DockerConfig {
            host: docker_host,
            interval: docker_interval,
            timeout: docker_timeout,
            containers: raw.docker.containers,
        },
        smtp,
        escalation: EscalationConfig {
            l1: LevelConfig { to: l1 },
            l2: LevelConfig { to: l2 },
            l3: LevelConfig { to: l3 },
            l2_after,
            l3_critical_for,
        },
    })
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
    store_path: Option<&Path>,
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
    let transport = match raw.host {
        None => Some(EmailTransport::Files {
            dir: store_path.map(|p| {
                StoreConfig {
                    path: p.to_path_buf(),
                }
                .data_dir()
                .join("outbox")
            })?,
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
        })),
    };
    Some(SmtpConfig {
        transport: transport?,
        from: from?,
    })
}
