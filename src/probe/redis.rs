//! The Redis probe: PING latency, `INFO` memory/stats/clients, and key counts by pattern.
//!
//! One [`ConnectionManager`] per probe, created on the first poll (not at start-up, so a Redis that is
//! down when the daemon starts is a failing source, not a start-up error) and kept afterwards: it
//! reconnects by itself when Redis comes back. After a failed PING or INFO (but a refusal such as
//! `NOAUTH`) it is dropped and the next poll makes a new one: after a reply it cannot parse, the
//! manager would otherwise repeat that error for ever. Its response and connection timeouts are the configured
//! `timeout`, so a hanging Redis fails the command instead of the poll hanging (the redis crate's own
//! default is 500 ms).
//!
//! Keys are counted with `SCAN cursor MATCH pattern COUNT scan_count`, never `KEYS` (the runbook's
//! `redis-cli KEYS` blocks Redis for the whole key space). A pattern stops after `scan_cap` keys
//! *examined* (estimated as `COUNT` per round trip; Redis only promises roughly that many), and then says
//! so in `redis.keys_capped`. Keys SCAN returns twice (it may, while Redis resizes its table) are
//! counted once.
//!
//! # Bounded replies
//!
//! The redis crate has no cap on a reply's size: it reads each reply whole before handing it over.
//! So the probe bounds what it asks for (four small INFO sections; SCAN pages of `COUNT scan_count`,
//! at most `scan_cap` keys examined per pattern) and refuses what is larger than such an answer can
//! be ([`ReplyLimits`]): an INFO text over `info_bytes` fails the poll as `too_large` (a proxy or an
//! impostor answering, not a Redis to read), and a SCAN page whose key names add up to more than
//! `scan_page_bytes` stops that pattern's count, which reads *unknown* (`too_large`) while the rest
//! of the poll stands. Key names are hashed and dropped page by page, never kept.
//!
//! Outcomes, kept apart:
//! - **value**: every reading Redis gave.
//! - **no data**: `maxmemory` is 0 (unlimited), so `redis.maxmemory_bytes` and `redis.memory_ratio`
//!   have nothing to compare; a rule on them neither fires nor clears.
//! - **unknown**: a field missing from `INFO` (a Redis-compatible server without it), or one
//!   pattern's SCAN that failed or did not finish within the poll's `timeout`; the rest of the poll
//!   stands.
//! - **source failure** (`Err`): no connection (`connect`), no answer to PING or INFO within the
//!   timeout (`timeout`), or Redis refusing us (`status`: a wrong password, `NOAUTH`). Rules over
//!   Redis become unknown until it answers again.
//!
//! Counters (`evicted_keys`, `rejected_connections`) are reported as a rate per minute over
//! `evidence_window` (`redis.evicted_keys_per_minute`, `redis.rejected_connections_per_minute`), so an
//! eviction holds as evidence for the window and a rule reads the same at any poll interval. Each poll
//! adds the counter's increase since the previous one to a [`WindowCounts`]: nothing on the first poll
//! (what happened before the watchdog looked is not news), and the new value itself when Redis
//! restarted in between (its `run_id` changed, or the counter went down). The note says the window,
//! and that the rate is a lower bound while the probe has not been counting for a whole window.
//!
//! The configured URL may carry a password and `redis.password` is a [`Secret`](crate::secret::Secret):
//! neither reaches a log line or a failure detail (the URL is printed through [`crate::redact_url`]).

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{IntoConnectionInfo, RedisError};

use super::window::{self, WindowCounts};
use super::{BuildError, Probe, truncate};
use crate::clock::Timestamp;
use crate::config::RedisConfig;
use crate::locale::{Msg, MsgId};
use crate::observe::{Failure, FailureKind, Key, Observation, Outcome};

/// Extra time [`poll_once`](super::poll_once) allows beyond the configured timeout, for the client's own
/// bookkeeping; the commands themselves are bounded by the timeout.
const POLL_MARGIN: Duration = Duration::from_millis(500);

/// The largest replies the probe accepts (see the module doc). The defaults are far above what a
/// real Redis answers: INFO's four sections are a few KiB, and a SCAN page of 1000 keys of 100
/// bytes is 100 KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyLimits {
    /// Most bytes of INFO text (the four sections together).
    pub info_bytes: usize,
    /// Most bytes of key names in one SCAN page.
    pub scan_page_bytes: usize,
}

impl Default for ReplyLimits {
    fn default() -> Self {
        Self {
            info_bytes: 256 << 10,
            scan_page_bytes: 4 << 20,
        }
    }
}

/// Polls one Redis.
pub struct RedisProbe {
    config: RedisConfig,
    limits: ReplyLimits,
    client: ::redis::Client,
    /// `None` until the first poll that connects; then kept (it reconnects by itself).
    manager: Option<ConnectionManager>,
    /// Counter values and server run of the previous successful INFO, for increases.
    previous: Option<Counters>,
    /// The counters' increases (evicted keys, rejected connections) over `evidence_window`; bounded
    /// by [`WindowCounts`], created by the first poll that reads INFO.
    increases: Option<WindowCounts>,
}

impl std::fmt::Debug for RedisProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisProbe")
            .field("url", &crate::redact_url(&self.config.url))
            .field("connected", &self.manager.is_some())
            .finish_non_exhaustive()
    }
}

/// The counters of one INFO answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Counters {
    /// `run_id` changes at every Redis start: a new run means the counters restarted from zero.
    run_id: Option<String>,
    evicted_keys: Option<u64>,
    rejected_connections: Option<u64>,
}

impl RedisProbe {
    /// A probe for `config`. No I/O: the connection is made on the first poll.
    pub fn new(config: RedisConfig) -> Result<Self, BuildError> {
        let url = crate::redact_url(&config.url);
        let mut info = config
            .url
            .clone()
            .into_connection_info()
            .map_err(|e| BuildError(format!("redis.url {url}: {}", e.kind_text())))?;
        if let Some(password) = &config.password {
            let settings = info
                .redis_settings()
                .clone()
                .set_password(password.expose());
            info = info.set_redis_settings(settings);
        }
        let client = ::redis::Client::open(info)
            .map_err(|e| BuildError(format!("redis.url {url}: {}", e.kind_text())))?;
        Ok(Self {
            config,
            limits: ReplyLimits::default(),
            client,
            manager: None,
            previous: None,
            increases: None,
        })
    }

    /// This probe with other reply limits (tests set them low; the defaults suit every Redis).
    #[must_use]
    pub fn with_limits(mut self, limits: ReplyLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The connection, made now if there is none yet.
    async fn connection(&mut self) -> Result<ConnectionManager, Failure> {
        if let Some(m) = &self.manager {
            return Ok(m.clone());
        }
        let timeout = self.config.timeout;
        let settings = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // No retries inside one poll: the next poll is the retry. Background reconnects after a
            // lost connection make one attempt per command, so a command never waits on a backoff.
            .set_number_of_retries(0);
        match self
            .client
            .get_connection_manager_with_config(settings)
            .await
        {
            Ok(m) => {
                self.manager = Some(m.clone());
                Ok(m)
            }
            Err(e) => {
                let mut f = self.failure("connect", &e);
                if f.kind != FailureKind::Timeout && f.kind != FailureKind::Status {
                    f.kind = FailureKind::Connect;
                }
                Err(f)
            }
        }
    }

    /// `e` as a failure of `what`, with any password scrubbed (the client never puts it in an error;
    /// this is a second lock on the same door).
    fn failure(&self, what: &str, e: &RedisError) -> Failure {
        let mut f = redis_failure(what, e);
        let passwords = self
            .config
            .password
            .iter()
            .map(|s| s.expose().to_owned())
            .chain(self.config.url.password().map(str::to_owned));
        for p in passwords {
            if p.len() >= 4 {
                f.detail = f.detail.replace(&p, "***");
            }
        }
        f
    }

    /// PING round trip. A connection found dropped (Redis restarted since the last poll) is retried
    /// once: the manager reconnected when the first attempt failed, and a Redis that is back up
    /// should not be reported down for one poll.
    async fn ping(&self, con: &mut ConnectionManager) -> Result<Duration, Failure> {
        let mut retried = false;
        loop {
            let started = Instant::now();
            match ::redis::cmd("PING").query_async::<String>(con).await {
                Ok(pong) if pong == "PONG" => return Ok(started.elapsed()),
                Ok(other) => {
                    return Err(Failure::said(
                        FailureKind::Malformed,
                        Msg::new(MsgId::RedisNotPong).peer("answer", truncate(&other, 40)),
                    ));
                }
                Err(e)
                    if !retried
                        && !e.is_timeout()
                        && (e.is_connection_dropped() || e.is_unrecoverable_error()) =>
                {
                    retried = true;
                }
                Err(e) => return Err(self.failure("PING", &e)),
            }
        }
    }

    /// The `server`, `memory`, `stats` and `clients` sections of INFO, in one round trip (one section
    /// per command, which every Redis version accepts).
    async fn info(&self, con: &mut ConnectionManager) -> Result<HashMap<String, String>, Failure> {
        let mut pipe = ::redis::pipe();
        for section in ["server", "memory", "stats", "clients"] {
            pipe.cmd("INFO").arg(section);
        }
        let texts: Vec<String> = pipe
            .query_async(con)
            .await
            .map_err(|e| self.failure("INFO", &e))?;
        let size: usize = texts.iter().map(String::len).sum();
        if size > self.limits.info_bytes {
            return Err(Failure::said(
                FailureKind::TooLarge,
                Msg::new(MsgId::RedisInfoTooLarge)
                    .arg("size", bytes(size))
                    .arg("limit", bytes(self.limits.info_bytes)),
            ));
        }
        Ok(texts.iter().flat_map(|t| parse_info(t)).collect())
    }

    /// The counters' rates per minute over the evidence window, adding this poll's increases since
    /// the previous one and remembering this poll's values.
    fn counter_rates(
        &mut self,
        now: Timestamp,
        info: &HashMap<String, String>,
        out: &mut Vec<Observation>,
    ) {
        let current = Counters {
            run_id: info.get("run_id").cloned(),
            evicted_keys: number(info, "evicted_keys"),
            rejected_connections: number(info, "rejected_connections"),
        };
        let restarted = match (&self.previous, &current.run_id) {
            (
                Some(Counters {
                    run_id: Some(a), ..
                }),
                Some(b),
            ) => a != b,
            _ => false,
        };
        let prev = self.previous.as_ref();
        let fields = [
            (
                "redis.evicted_keys_per_minute",
                "evicted_keys",
                current.evicted_keys,
                prev.and_then(|p| p.evicted_keys),
            ),
            (
                "redis.rejected_connections_per_minute",
                "rejected_connections",
                current.rejected_connections,
                prev.and_then(|p| p.rejected_connections),
            ),
        ];
        let added: Vec<u64> = fields
            .iter()
            .map(|(_, _, c, before)| c.map_or(0, |c| increase(*before, c, restarted)))
            .collect();
        let window = self.config.evidence_window;
        let counts = self
            .increases
            .get_or_insert_with(|| WindowCounts::new(fields.len(), now));
        counts.add(now, &added, window);
        let rates = counts.per_minute(now, window);
        let over = window::describe(window, counts.covered(now, window));
        for ((name, field, current, _), rate) in fields.iter().zip(rates) {
            out.push(match current {
                Some(_) => Observation::number(Key::new(name), rate)
                    .with_note(Msg::new(MsgId::PerMinuteOver).msg("over", over.clone())),
                None => Observation::new(Key::new(name), missing(field)),
            });
        }
        self.previous = Some(current);
    }
}

/// What one pattern's SCAN came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scanned {
    /// The count, and whether it stopped at the cap of keys examined before the scan was complete.
    Counted(u64, bool),
    /// A page's key names came to this many bytes, over the limit: the count stopped there.
    TooLarge(usize),
}

/// Keys matching `pattern`, counted with SCAN, stopping at `cap` keys examined or at a page whose
/// key names exceed `page_bytes`.
async fn count_keys(
    con: &mut ConnectionManager,
    pattern: &str,
    count: u32,
    cap: u64,
    page_bytes: usize,
) -> Result<Scanned, RedisError> {
    // Hashes, not the keys: SCAN may return a key twice, and remembering 100 000 keys' hashes costs
    // 800 KB where the keys themselves could cost far more.
    let hasher = std::collections::hash_map::RandomState::new();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut cursor: u64 = 0;
    let mut examined: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = ::redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count)
            .query_async(con)
            .await?;
        let size: usize = keys.iter().map(Vec::len).sum();
        if size > page_bytes {
            return Ok(Scanned::TooLarge(size));
        }
        seen.extend(keys.iter().map(|k| hasher.hash_one(k)));
        examined += u64::from(count);
        cursor = next;
        if cursor == 0 {
            return Ok(Scanned::Counted(seen.len() as u64, false));
        }
        if examined >= cap {
            return Ok(Scanned::Counted(seen.len() as u64, true));
        }
    }
}

impl Probe for RedisProbe {
    fn source(&self) -> &str {
        "redis"
    }

    fn interval(&self) -> Duration {
        self.config.interval
    }

    fn timeout(&self) -> Duration {
        self.config.timeout + POLL_MARGIN
    }

    async fn poll(&mut self, now: Timestamp) -> Result<Vec<Observation>, Failure> {
        let deadline = tokio::time::Instant::now() + self.config.timeout;
        let mut con = self.connection().await?;
        let read: Result<_, Failure> =
            async { Ok((self.ping(&mut con).await?, self.info(&mut con).await?)) }.await;
        let (ping, info) = match read {
            Ok(read) => read,
            Err(f) => {
                // The manager reconnects only after errors it sees as a dropped connection: after a
                // reply it could not parse (a proxy or a non-Redis server answering garbage) it would
                // return the same error for ever. Start afresh at the next poll; a refusal (`Status`,
                // such as NOAUTH) is Redis answering, and a new connection would not change it.
                if f.kind != FailureKind::Status {
                    self.manager = None;
                }
                return Err(f);
            }
        };

        let mut out = vec![Observation::number(
            Key::new("redis.ping_seconds"),
            ping.as_secs_f64(),
        )];
        memory(&info, &mut out);
        self.counter_rates(now, &info, &mut out);
        for (name, field) in [
            ("redis.connected_clients", "connected_clients"),
            ("redis.blocked_clients", "blocked_clients"),
        ] {
            let outcome = match number(&info, field) {
                Some(n) => Outcome::number(n as f64),
                None => missing(field),
            };
            out.push(Observation::new(Key::new(name), outcome));
        }

        let (count, cap) = (self.config.scan_count, self.config.scan_cap);
        let page_bytes = self.limits.scan_page_bytes;
        for pattern in &self.config.key_patterns {
            let keys = Key::new("redis.keys").with("pattern", pattern.as_str());
            let capped = Key::new("redis.keys_capped").with("pattern", pattern.as_str());
            let scan = count_keys(&mut con, pattern, count, cap, page_bytes);
            match tokio::time::timeout_at(deadline, scan).await {
                Ok(Ok(Scanned::Counted(n, was_capped))) => {
                    out.push(Observation::number(keys, n as f64));
                    out.push(Observation::boolean(capped, was_capped));
                }
                Ok(Ok(Scanned::TooLarge(size))) => {
                    let f = Failure::said(
                        FailureKind::TooLarge,
                        Msg::new(MsgId::RedisScanTooLarge)
                            .arg("pattern", pattern)
                            .arg("size", bytes(size))
                            .arg("limit", bytes(page_bytes)),
                    );
                    out.push(Observation::new(keys, Outcome::Unknown(f.clone())));
                    out.push(Observation::new(capped, Outcome::Unknown(f)));
                }
                Ok(Err(e)) => {
                    let f = self.failure(&format!("SCAN MATCH {pattern}"), &e);
                    out.push(Observation::new(keys, Outcome::Unknown(f.clone())));
                    out.push(Observation::new(capped, Outcome::Unknown(f)));
                }
                Err(_) => {
                    let f = Failure::said(
                        FailureKind::Timeout,
                        Msg::new(MsgId::RedisScanTimeout)
                            .arg("pattern", pattern)
                            .duration("limit", self.config.timeout),
                    );
                    out.push(Observation::new(keys, Outcome::Unknown(f.clone())));
                    out.push(Observation::new(capped, Outcome::Unknown(f)));
                }
            }
        }
        Ok(out)
    }
}

/// `used_memory`, `maxmemory` and their ratio (no data when `maxmemory` is 0: unlimited).
fn memory(info: &HashMap<String, String>, out: &mut Vec<Observation>) {
    let used = number(info, "used_memory");
    let max = number(info, "maxmemory");
    out.push(Observation::new(
        Key::new("redis.used_memory_bytes"),
        used.map_or_else(|| missing("used_memory"), |u| Outcome::number(u as f64)),
    ));
    let unlimited = || Outcome::NoData(Msg::new(MsgId::NoMaxmemory));
    out.push(Observation::new(
        Key::new("redis.maxmemory_bytes"),
        match max {
            None => missing("maxmemory"),
            Some(0) => unlimited(),
            Some(m) => Outcome::number(m as f64),
        },
    ));
    out.push(Observation::new(
        Key::new("redis.memory_ratio"),
        match (used, max) {
            (_, Some(0)) => unlimited(),
            (Some(u), Some(m)) => Outcome::number(u as f64 / m as f64),
            (None, _) => missing("used_memory"),
            (_, None) => missing("maxmemory"),
        },
    ));
}

/// Increase of a counter since the previous reading: 0 without one (the first poll); the current value
/// when Redis restarted (`restarted`, or the counter went down: counters only grow within one run).
fn increase(previous: Option<u64>, current: u64, restarted: bool) -> u64 {
    match previous {
        None => 0,
        Some(_) if restarted => current,
        Some(p) if current < p => current,
        Some(p) => current - p,
    }
}

/// `field:value` lines of INFO text (section headers and blank lines skipped).
fn parse_info(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// `512 B`, `4 KiB`, `2.5 MiB`: a size in a failure detail.
fn bytes(n: usize) -> String {
    if n < 1024 {
        format!("{n} B")
    } else if n < 1 << 20 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", n as f64 / f64::from(1 << 20))
    }
}

fn number(info: &HashMap<String, String>, field: &str) -> Option<u64> {
    info.get(field).and_then(|v| v.parse().ok())
}

fn missing(field: &str) -> Outcome {
    Outcome::Unknown(Failure::said(
        FailureKind::Malformed,
        Msg::new(MsgId::RedisInfoMissing).arg("field", field),
    ))
}

/// A redis error as a failure of the command `what`: timeouts, lost connections and refusals by the
/// server told apart.
fn redis_failure(what: &str, e: &RedisError) -> Failure {
    let kind = if e.is_timeout() {
        FailureKind::Timeout
    } else if e.is_connection_refusal() || e.is_connection_dropped() || e.is_io_error() {
        FailureKind::Connect
    } else if matches!(
        e.kind(),
        ::redis::ErrorKind::Server(_)
            | ::redis::ErrorKind::Extension
            | ::redis::ErrorKind::AuthenticationFailed
    ) {
        // Redis answered with an error (NOAUTH, WRONGPASS, a refused command).
        FailureKind::Status
    } else if matches!(
        e.kind(),
        ::redis::ErrorKind::Parse | ::redis::ErrorKind::UnexpectedReturnType
    ) {
        FailureKind::Malformed
    } else {
        FailureKind::Other
    };
    // The command is ours (`PING`, `SCAN MATCH x`), the error the client's words.
    Failure::said(
        kind,
        Msg::new(MsgId::CommandFailed)
            .arg("what", what)
            .peer("error", super::http::error_chain(e)),
    )
}

/// A short description of a client-side redis error, for build errors.
trait KindText {
    fn kind_text(&self) -> String;
}

impl KindText for RedisError {
    fn kind_text(&self) -> String {
        // The error of a URL parse can quote the URL; print only its category.
        format!("{:?}", self.kind())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn counters_increase_reset_and_first_poll() {
        assert_eq!(
            increase(None, 42, false),
            0,
            "first poll: nothing to compare"
        );
        assert_eq!(increase(Some(40), 42, false), 2);
        assert_eq!(increase(Some(42), 42, false), 0);
        assert_eq!(
            increase(Some(50), 7, false),
            7,
            "a counter that went down was reset by a restart"
        );
        assert_eq!(
            increase(Some(5), 9, true),
            9,
            "a new run_id: everything since the restart is new"
        );
    }

    /// The evictions rate after `polls` polls `every` seconds apart, 10 keys evicted a minute.
    fn eviction_rate(every: u64, polls: u64) -> (f64, Option<String>) {
        let mut probe = probe();
        let mut last = Vec::new();
        for i in 0..=polls {
            let evicted = 10 * i * every / 60;
            let info: HashMap<String, String> = [
                ("run_id".to_owned(), "a".to_owned()),
                ("evicted_keys".to_owned(), evicted.to_string()),
                ("rejected_connections".to_owned(), "0".to_owned()),
            ]
            .into();
            last.clear();
            let now = Timestamp::from_unix_millis(i64::try_from(i * every * 1000).unwrap());
            probe.counter_rates(now, &info, &mut last);
        }
        let o = &last[0];
        assert_eq!(o.key.name, "redis.evicted_keys_per_minute");
        match o.outcome {
            Outcome::Value(crate::observe::Value::Number(n)) => {
                (n, o.note.as_ref().map(ToString::to_string))
            }
            ref other => panic!("{other:?}"),
        }
    }

    #[test]
    fn evictions_read_the_same_rate_at_any_poll_interval_and_say_their_window() {
        for every in [6, 15, 30, 60] {
            let (rate, note) = eviction_rate(every, 900 / every);
            assert!((rate - 10.0).abs() < 0.5, "every {every}s: {rate}");
            assert_eq!(note.as_deref(), Some("per minute over the last 5 min"));
        }
        // One poll after the first, 15 s in: a lower bound, and the note says so.
        let (rate, note) = eviction_rate(15, 1);
        assert!(rate < 1.0, "{rate}");
        assert!(note.unwrap().contains("lower bound"));
    }

    #[test]
    fn info_text_is_parsed_into_fields() {
        let text = "# Memory\r\nused_memory:1048576\r\nmaxmemory:0\r\nmaxmemory_policy:noeviction\r\n\r\n# Stats\r\nevicted_keys:3\r\n";
        let info: HashMap<_, _> = parse_info(text).into_iter().collect();
        assert_eq!(number(&info, "used_memory"), Some(1_048_576));
        assert_eq!(number(&info, "evicted_keys"), Some(3));
        assert_eq!(
            info.get("maxmemory_policy").map(String::as_str),
            Some("noeviction")
        );
        assert_eq!(number(&info, "maxmemory_policy"), None);
    }

    #[test]
    fn unlimited_memory_is_no_data_and_a_missing_field_unknown() {
        let info: HashMap<String, String> = [("used_memory", "1000"), ("maxmemory", "0")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let mut out = Vec::new();
        memory(&info, &mut out);
        assert_eq!(out[0].outcome, Outcome::number(1000.0));
        assert!(matches!(out[1].outcome, Outcome::NoData(_)));
        assert!(matches!(out[2].outcome, Outcome::NoData(_)));

        let info: HashMap<String, String> = [("maxmemory", "4000")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let mut out = Vec::new();
        memory(&info, &mut out);
        assert!(matches!(out[0].outcome, Outcome::Unknown(_)));
        assert_eq!(out[1].outcome, Outcome::number(4000.0));
        assert!(matches!(out[2].outcome, Outcome::Unknown(_)));
    }

    #[test]
    fn debug_hides_the_url_password() {
        let config = RedisConfig {
            url: "redis://user:hunter22@127.0.0.1:6379/".parse().unwrap(),
            password: Some(crate::secret::Secret::new("s3cr3t-pass")),
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(2),
            key_patterns: vec![],
            scan_count: 1000,
            scan_cap: 100_000,
            evidence_window: Duration::from_secs(300),
        };
        let probe = RedisProbe::new(config).expect("probe");
        let text = format!("{probe:?}");
        assert!(!text.contains("hunter22"), "{text}");
        assert!(!text.contains("s3cr3t-pass"), "{text}");
        assert!(text.contains("127.0.0.1:6379"), "{text}");
    }

    /// Real `INFO server|memory|stats|clients` text (Redis 7, abridged), the base of near-valid inputs.
    const REAL: &str = "# Server\r\nredis_version:7.0.15\r\nrun_id:8d1c3bd9bd4f8d3b4f4fbd3fd3d5c0c5a3d4e0f1\r\nuptime_in_seconds:86400\r\n\r\n# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\nmaxmemory:4194304\r\nmaxmemory_policy:allkeys-lru\r\n\r\n# Stats\r\nevicted_keys:12\r\nrejected_connections:0\r\n\r\n# Clients\r\nconnected_clients:7\r\n";

    fn probe() -> RedisProbe {
        RedisProbe::new(RedisConfig {
            url: "redis://127.0.0.1:6379/".parse().expect("url"),
            password: None,
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(2),
            key_patterns: vec![],
            scan_count: 1000,
            scan_cap: 100_000,
            evidence_window: Duration::from_secs(300),
        })
        .expect("probe")
    }

    /// Two polls reading `first` then `second`: every memory and counter observation is made, and its
    /// number is finite and not negative.
    fn polls_are_sound(first: &str, second: &str) -> Result<(), TestCaseError> {
        let mut probe = probe();
        for (i, text) in [first, second].into_iter().enumerate() {
            let info: HashMap<_, _> = parse_info(text).into_iter().collect();
            let mut out = Vec::new();
            memory(&info, &mut out);
            probe.counter_rates(
                Timestamp::from_unix_millis(i as i64 * 15_000),
                &info,
                &mut out,
            );
            prop_assert_eq!(out.len(), 5);
            for o in &out {
                if let Outcome::Value(crate::observe::Value::Number(n)) = o.outcome {
                    prop_assert!(n.is_finite() && n >= 0.0, "{:?}", o);
                }
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(crate::mutate::cases(256))]

        #[test]
        fn prop_any_info_text_gives_every_observation(
            first in crate::mutate::garbage(),
            second in crate::mutate::garbage(),
        ) {
            polls_are_sound(&first, &second)?;
        }

        #[test]
        fn prop_near_valid_info_gives_every_observation(
            first in crate::mutate::near_text(REAL),
            second in crate::mutate::near_text(REAL),
        ) {
            polls_are_sound(&first, &second)?;
        }

        #[test]
        fn prop_fields_round_trip(fields in prop::collection::btree_map("[a-z_]{1,20}", "[ -~]{0,30}", 0..10)) {
            let text: String = fields.iter().map(|(k, v)| format!("{k}:{v}\r\n")).collect();
            let parsed = parse_info(&format!("# Stats\r\n{text}"));
            let expected: Vec<_> = fields.into_iter().map(|(k, v)| (k, v.trim_end().to_owned())).collect();
            prop_assert_eq!(parsed, expected);
        }
    }
}
