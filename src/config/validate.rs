//! The one place that checks the configuration.
//!
//! [`validate`] turns the merged [`RawConfig`] into a [`Config`] or the full list of problems. Every
//! check of every key lives here or in its submodules (`probes` for the sources the probes read,
//! `escalation` for who is told and how), including rules across keys (a timeout longer than its
//! interval, a password with no username); the rest of the program trusts a `Config` as given. The
//! typed configuration itself is `types.rs`.

mod escalation;
mod ha;
mod probes;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::Mailbox;
use url::Url;

use self::escalation::{check_escalation, check_heartbeat, check_maintenance, check_smtp};
use self::probes::{
    check_coolify, check_docker, check_openai, check_prometheus, check_redis, check_sentry,
    check_status_pages, check_supabase,
};
use super::raw::RawConfig;
use super::types::{
    Config, Locale, PgTls, PostgresConfig, RunbookConfig, ServerConfig, ServerLimits, StoreConfig,
};
use super::{Origin, Problem};
use crate::secret::Secret;

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

    /// A problem between `key` and `other` (a cross-key rule), named at `key` but blamed on the layer
    /// the user wrote: `key`'s, unless only `other` was changed from the defaults.
    fn problem_between(&mut self, key: &str, other: &str, message: impl Into<String>) {
        let origin = match (self.origin_of)(key) {
            Origin::Defaults => (self.origin_of)(other),
            o => o,
        };
        self.problems.push(Problem {
            origin,
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

/// A file of PEM CA certificates at `key` (`text` relative to the file that set it), read now, not
/// at the first connection: a missing or wrong CA file is a start-up problem. `used`: whether the
/// TLS setting beside it uses it (else `unused` says how to, and it is refused rather than silently
/// ignored).
fn ca_file(
    c: &mut Checker<'_>,
    key: &str,
    text: &str,
    used: bool,
    unused: &str,
) -> Option<PathBuf> {
    let path = resolve((c.origin_of)(key).base_dir(), text);
    match std::fs::read_to_string(&path) {
        Ok(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => {
            if used {
                Some(path)
            } else {
                c.problem(key, unused);
                None
            }
        }
        Ok(_) => {
            c.problem(key, format!("{} holds no PEM certificate", path.display()));
            None
        }
        Err(e) => {
            c.problem(key, format!("cannot read {}: {e}", path.display()));
            None
        }
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
    let coolify = check_coolify(&mut c, raw.coolify);
    let openai = check_openai(&mut c, raw.openai);
    let sentry = check_sentry(&mut c, raw.sentry);
    let redis = check_redis(&mut c, raw.redis);
    let docker = check_docker(&mut c, raw.docker);
    let smtp = check_smtp(&mut c, raw.smtp, store.as_ref());
    let escalation = check_escalation(&mut c, &raw.escalation);
    let maintenance = check_maintenance(&mut c, &raw.maintenance);
    let heartbeat = check_heartbeat(&mut c, raw.heartbeat);
    let ha = ha::check_ha(&mut c, raw.ha);
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
        Some(openai),
        Some(sentry),
        Some(coolify),
        Some(redis),
        Some(docker),
        Some(smtp),
        Some(escalation),
        Some(heartbeat),
        Some(ha),
        true,
    ) = (
        server,
        store,
        runbook,
        prometheus,
        supabase,
        openai,
        sentry,
        coolify,
        redis,
        docker,
        smtp,
        escalation,
        heartbeat,
        ha,
        problems.is_empty(),
    )
    else {
        return Err(problems);
    };
    Ok(Config {
        server,
        store,
        runbook,
        coolify,
        prometheus,
        status_pages,
        supabase,
        openai,
        sentry,
        redis,
        docker,
        smtp,
        escalation,
        maintenance,
        heartbeat,
        ha,
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
        match text.parse::<crate::config::IpNet>() {
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
        c.problem_between(
            "server.idle_timeout",
            "server.request_timeout",
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
        c.problem_between(
            "server.max_requests_in_flight",
            "server.max_connections",
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
    let postgres = match &raw.url {
        None => Some(None),
        Some(url) => check_postgres(c, raw, url).map(Some),
    };
    Some(StoreConfig {
        path: PathBuf::from(&raw.path),
        postgres: postgres?,
        retention: retention?,
    })
}

/// `[store] url` and the keys that go with it. The password comes from `password_file` (or
/// `password`) only: one inside the URL would be printed wherever the URL is, so it is refused.
fn check_postgres(
    c: &mut Checker<'_>,
    raw: &super::raw::RawStore,
    url: &str,
) -> Option<PostgresConfig> {
    let connect_timeout = c.duration("store.connect_timeout", &raw.connect_timeout);
    let statement_timeout = c.duration("store.statement_timeout", &raw.statement_timeout);
    let readers = c.check(
        "store.readers",
        usize::try_from(raw.readers)
            .ok()
            .filter(|n| (1..=64).contains(n))
            .ok_or_else(|| format!("{} must be a count from 1 to 64", raw.readers)),
    );
    let password = c.secret(
        "store.password",
        raw.password.clone(),
        raw.password_file.clone(),
    );
    let url = c.url("store.url", url, &["postgres", "postgresql"])?;
    if url.password().is_some() {
        c.problem(
            "store.url",
            "holds a password; remove it from the URL and give it in store.password_file",
        );
        return None;
    }
    let dbname = url.path().trim_start_matches('/');
    let tls = pg_tls(c, raw, &url);
    // Names as written: no `%` escapes (a Unix socket directory as host is not supported).
    if dbname.is_empty() || dbname.contains(['/', '%']) || url.fragment().is_some() {
        c.problem(
            "store.url",
            format!(
                "{:?} must name one database and nothing more, like postgres://watchdog@db:5432/watchdog",
                without_userinfo(url.as_str())
            ),
        );
        return None;
    }
    let user = match url.username() {
        "" => {
            c.problem(
                "store.url",
                "names no user; write it like postgres://watchdog@db:5432/watchdog",
            );
            return None;
        }
        u => u.to_owned(),
    };
    Some(PostgresConfig {
        host: url.host_str()?.to_owned(),
        port: url.port().unwrap_or(5432),
        user,
        dbname: dbname.to_owned(),
        password: password?,
        connect_timeout: connect_timeout?,
        statement_timeout: statement_timeout?,
        readers: readers?,
        tls: tls?,
    })
}

/// `sslmode` in `store.url` (its only query parameter) and `store.ca_file`. The watchdog never
/// falls back to plaintext, and always checks the certificate and the host name when it uses TLS:
/// `require` and `verify-ca` (what managed databases' consoles often print) mean `verify-full`
/// here, and `prefer`/`allow`, which would fall back to plaintext without a word, are refused.
fn pg_tls(c: &mut Checker<'_>, raw: &super::raw::RawStore, url: &Url) -> Option<PgTls> {
    let mut mode = None;
    for (name, value) in url.query_pairs() {
        if name != "sslmode" || mode.is_some() {
            c.problem(
                "store.url",
                format!("{name:?}: the only parameter the URL may carry is sslmode, once"),
            );
            return None;
        }
        mode = Some(value.into_owned());
    }
    let tls = match mode.as_deref() {
        None | Some("disable") => false,
        Some("require" | "verify-ca" | "verify-full") => true,
        Some(other) => {
            c.problem(
                "store.url",
                format!(
                    "sslmode={other} is not supported: write sslmode=verify-full (TLS, certificate and host name checked) or sslmode=disable (a private network); the watchdog never falls back to plaintext"
                ),
            );
            return None;
        }
    };
    let ca = match &raw.ca_file {
        None => None,
        Some(text) => Some(ca_file(
            c,
            "store.ca_file",
            text,
            tls,
            "is only used over TLS: add ?sslmode=verify-full to store.url",
        )?),
    };
    Some(if tls {
        PgTls::Verify { ca_file: ca }
    } else {
        PgTls::Off
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
