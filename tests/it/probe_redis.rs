//! The Redis probe against a real `redis-server` (`support::redis`): memory ratio, evictions and
//! rejected connections as increases, key counts with SCAN and a cap (and never KEYS), a crash and
//! a restart under the same probe, a hanging Redis, and the password.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use harven_watchdog::clock::Clock;
use harven_watchdog::config::RedisConfig;
use harven_watchdog::observe::{FailureKind, Outcome, ProbeReport, Value};
use harven_watchdog::probe::poll_once;
use harven_watchdog::probe::redis::{RedisProbe, ReplyLimits};
use harven_watchdog::secret::Secret;
use redis::aio::ConnectionManager;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::redis::RedisServer;
use crate::support::{free_port, wait_for_some};

/// A poll that takes longer than this was not cut off by the probe's timeout (about 1.5 s here):
/// generous, so a loaded machine never fails the test.
const HANG_BOUND: Duration = Duration::from_secs(30);

fn config(url: &str, patterns: &[&str], scan_count: u32, scan_cap: u64) -> RedisConfig {
    RedisConfig {
        url: url.parse().expect("a redis URL"),
        password: None,
        interval: Duration::from_secs(15),
        timeout: Duration::from_secs(1),
        key_patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
        scan_count,
        scan_cap,
        evidence_window: Duration::from_secs(300),
    }
}

fn probe_for(server: &RedisServer) -> RedisProbe {
    RedisProbe::new(config(
        &server.url(),
        &["rate_limit:*", "ai:*"],
        1000,
        100_000,
    ))
    .expect("a Redis probe")
}

async fn poll(probe: &mut RedisProbe) -> ProbeReport {
    tokio::time::timeout(HANG_BOUND, poll_once(probe, &Clock::system()))
        .await
        .expect("the poll was cut off by the probe's timeout")
}

fn outcomes(report: &ProbeReport) -> HashMap<String, Outcome> {
    report
        .result
        .as_ref()
        .unwrap_or_else(|f| panic!("redis failed: {f}"))
        .iter()
        .map(|o| (o.key.to_string(), o.outcome.clone()))
        .collect()
}

fn number(report: &ProbeReport, key: &str) -> f64 {
    match outcomes(report).get(key) {
        Some(Outcome::Value(Value::Number(n))) => *n,
        other => panic!("{key}: expected a number, got {other:?} in {report:?}"),
    }
}

fn boolean(report: &ProbeReport, key: &str) -> bool {
    match outcomes(report).get(key) {
        Some(Outcome::Value(Value::Bool(b))) => *b,
        other => panic!("{key}: expected a boolean, got {other:?} in {report:?}"),
    }
}

/// The note of `key` (the window a rate is over), or an empty string.
fn note(report: &ProbeReport, key: &str) -> String {
    let found = report
        .result
        .as_ref()
        .ok()
        .and_then(|o| o.iter().find(|o| o.key.to_string() == key));
    found
        .and_then(|o| o.note.as_ref().map(ToString::to_string))
        .unwrap_or_default()
}

fn is_no_data(report: &ProbeReport, key: &str) -> bool {
    matches!(outcomes(report).get(key), Some(Outcome::NoData(_)))
}

async fn config_set(con: &mut ConnectionManager, name: &str, value: &str) {
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query_async(con)
        .await
        .unwrap_or_else(|e| panic!("CONFIG SET {name} {value}: {e}"));
}

/// `count` keys `prefix{i}` with `size`-byte values, in one pipeline.
async fn fill(con: &mut ConnectionManager, prefix: &str, count: usize, size: usize) {
    let value = vec![b'v'; size];
    let mut pipe = redis::pipe();
    for i in 0..count {
        pipe.cmd("SET")
            .arg(format!("{prefix}{i}"))
            .arg(&value)
            .ignore();
    }
    let () = pipe.query_async(con).await.expect("fill keys");
}

async fn info_field(con: &mut ConnectionManager, section: &str, field: &str) -> Option<u64> {
    let text: String = redis::cmd("INFO")
        .arg(section)
        .query_async(con)
        .await
        .expect("INFO");
    text.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{field}:"))?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_ratio_with_a_limit_and_no_data_without() {
    let server = RedisServer::start().await;
    let mut con = server.connection_manager().await;
    let mut probe = probe_for(&server);

    config_set(&mut con, "maxmemory", "64mb").await;
    fill(&mut con, "blob:", 200, 50_000).await; // ~10 MB
    let report = poll(&mut probe).await;
    let used = number(&report, "redis.used_memory_bytes");
    let max = number(&report, "redis.maxmemory_bytes");
    let ratio = number(&report, "redis.memory_ratio");
    assert_eq!(max, 64.0 * 1024.0 * 1024.0);
    assert!(used > 10_000_000.0, "used_memory {used}");
    assert!((ratio - used / max).abs() < 1e-9, "{ratio} vs {used}/{max}");
    assert!(ratio > 0.1 && ratio < 1.0, "ratio {ratio}");
    assert!(number(&report, "redis.ping_seconds") >= 0.0);
    assert!(
        number(&report, "redis.connected_clients") >= 2.0,
        "the test and the probe"
    );
    assert_eq!(number(&report, "redis.blocked_clients"), 0.0);

    config_set(&mut con, "maxmemory", "0").await;
    let report = poll(&mut probe).await;
    assert!(is_no_data(&report, "redis.maxmemory_bytes"), "{report:?}");
    assert!(is_no_data(&report, "redis.memory_ratio"), "{report:?}");
    assert!(number(&report, "redis.used_memory_bytes") > 10_000_000.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evictions_and_rejected_connections_are_rates_over_the_evidence_window() {
    let server = RedisServer::start().await;
    let mut con = server.connection_manager().await;
    let mut probe = probe_for(&server);
    // The test's configuration: a 5 min window, so a rate is the increase divided by 5.
    let per_minute = |n: u64| n as f64 / 5.0;

    config_set(&mut con, "maxmemory-policy", "allkeys-lru").await;
    config_set(&mut con, "maxmemory", "4mb").await;
    let first = poll(&mut probe).await;
    assert_eq!(
        number(&first, "redis.evicted_keys_per_minute"),
        0.0,
        "first poll"
    );
    assert_eq!(number(&first, "redis.rejected_connections_per_minute"), 0.0);

    fill(&mut con, "cache:", 400, 20_000).await; // ~8 MB into a 4 MB Redis
    let evicted_total = info_field(&mut con, "stats", "evicted_keys")
        .await
        .expect("evicted_keys");
    assert!(evicted_total > 0, "Redis evicted nothing");
    let report = poll(&mut probe).await;
    assert_eq!(
        number(&report, "redis.evicted_keys_per_minute"),
        per_minute(evicted_total),
        "every eviction since the first poll, per minute of the window"
    );
    let note = note(&report, "redis.evicted_keys_per_minute");
    assert!(note.starts_with("per minute over the last 5 min"), "{note}");
    let report = poll(&mut probe).await;
    assert_eq!(
        number(&report, "redis.evicted_keys_per_minute"),
        per_minute(evicted_total),
        "no new evictions since, but the window still holds them"
    );

    // With the test's and the probe's connections open, a third one is rejected.
    config_set(&mut con, "maxclients", "2").await;
    let mut extra = tokio::net::TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .expect("TCP connect (Redis accepts, then refuses)");
    let _ = extra.write_all(b"PING\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(HANG_BOUND, extra.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.contains("max number of clients"), "{answer:?}");
    let report = poll(&mut probe).await;
    assert_eq!(
        number(&report, "redis.rejected_connections_per_minute"),
        per_minute(1)
    );
    config_set(&mut con, "maxclients", "10000").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_counted_with_scan_exactly_and_capped() {
    let server = RedisServer::start().await;
    let mut con = server.connection_manager().await;
    fill(&mut con, "rate_limit:user:", 5000, 1).await;
    fill(&mut con, "ai:session:", 300, 1).await;
    fill(&mut con, "session:", 2000, 1).await;
    fill(&mut con, "cache:ai:", 100, 1).await; // contains "ai:" but does not match `ai:*`

    let mut probe = probe_for(&server);
    let report = poll(&mut probe).await;
    assert_eq!(
        number(&report, r#"redis.keys{pattern="rate_limit:*"}"#),
        5000.0
    );
    assert_eq!(number(&report, r#"redis.keys{pattern="ai:*"}"#), 300.0);
    assert!(!boolean(
        &report,
        r#"redis.keys_capped{pattern="rate_limit:*"}"#
    ));
    assert!(!boolean(&report, r#"redis.keys_capped{pattern="ai:*"}"#));

    // A cap below the key space: the count stops early and says so.
    let mut capped = RedisProbe::new(config(&server.url(), &["rate_limit:*"], 500, 2000))
        .expect("a Redis probe");
    let report = poll(&mut capped).await;
    assert!(boolean(
        &report,
        r#"redis.keys_capped{pattern="rate_limit:*"}"#
    ));
    let partial = number(&report, r#"redis.keys{pattern="rate_limit:*"}"#);
    assert!(partial < 5000.0, "stopped before the end: {partial}");

    // SCAN did the work, and KEYS was never sent.
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut con)
        .await
        .expect("INFO commandstats");
    assert!(stats.contains("cmdstat_scan:"), "{stats}");
    assert!(!stats.contains("cmdstat_keys:"), "KEYS was used: {stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_fails_the_poll_quickly_and_the_same_probe_recovers() {
    let mut server = RedisServer::start().await;
    let mut probe = probe_for(&server);
    let report = poll(&mut probe).await;
    assert!(report.result.is_ok(), "{report:?}");

    server.kill();
    for _ in 0..2 {
        let report = poll(&mut probe).await;
        match &report.result {
            Err(f) => assert!(
                matches!(f.kind, FailureKind::Connect | FailureKind::Timeout),
                "{f}"
            ),
            Ok(o) => panic!("Redis is down, yet the poll answered {o:?}"),
        }
    }

    server.restart().await;
    // Poll until it answers (the first poll after the restart normally does).
    let deadline = Instant::now() + HANG_BOUND;
    let report = loop {
        let report = poll(&mut probe).await;
        if report.result.is_ok() {
            break report;
        }
        assert!(
            Instant::now() < deadline,
            "the probe does not read Redis again after its restart: {report:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        number(&report, r#"redis.keys{pattern="rate_limit:*"}"#),
        0.0
    );
    assert_eq!(
        number(&report, "redis.evicted_keys_per_minute"),
        0.0,
        "a fresh Redis has evicted nothing"
    );
}

/// The manager notices the lost connection only when a command fails; the probe retries that one
/// command once, so a Redis that restarted between two polls is not reported down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_between_polls_is_not_reported_as_down() {
    let mut server = RedisServer::start().await;
    let mut probe = probe_for(&server);
    assert!(poll(&mut probe).await.result.is_ok());
    server.kill();
    server.restart().await;
    let report = poll(&mut probe).await;
    assert!(report.result.is_ok(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_is_not_there_fails_at_connect() {
    let url = format!("redis://127.0.0.1:{}/", free_port());
    let mut probe = RedisProbe::new(config(&url, &["ai:*"], 1000, 100_000)).expect("probe");
    let report = poll(&mut probe).await;
    match &report.result {
        Err(f) => assert_eq!(f.kind, FailureKind::Connect, "{f}"),
        Ok(o) => panic!("nothing listens there, yet {o:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_redis_is_cut_off_by_the_timeout() {
    let server = RedisServer::start().await;
    let mut probe = probe_for(&server);
    assert!(poll(&mut probe).await.result.is_ok());

    // DEBUG SLEEP blocks the whole server (far longer than the test needs; the server is killed
    // when the test ends); the probe's PING waits behind it.
    let mut sleeper = server.connection_manager().await;
    let sleeping = tokio::spawn(async move {
        redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(60)
            .query_async::<()>(&mut sleeper)
            .await
    });
    // Wait until the server is really blocked: a fresh connection's PING gets no answer.
    let port = server.port();
    let blocked = wait_for_some(HANG_BOUND, Duration::from_millis(20), move || async move {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await;
        read.is_err().then_some(())
    })
    .await;
    assert!(blocked.is_ok(), "DEBUG SLEEP did not block Redis");

    let report = poll(&mut probe).await;
    match &report.result {
        Err(f) => assert_eq!(f.kind, FailureKind::Timeout, "{f}"),
        Ok(o) => panic!("Redis is blocked, yet {o:?}"),
    }
    sleeping.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_is_used_and_never_shown() {
    const PASSWORD: &str = "rds-CANARY-4c2e9b";
    let server = RedisServer::start().await;
    let mut con = server.connection_manager().await;
    config_set(&mut con, "requirepass", PASSWORD).await;

    let mut without = probe_for(&server);
    let refused = poll(&mut without).await;
    match &refused.result {
        Err(f) => assert_eq!(f.kind, FailureKind::Status, "{f}"),
        Ok(o) => panic!("Redis requires a password, yet {o:?}"),
    }

    let mut with_secret = config(&server.url(), &["ai:*"], 1000, 100_000);
    with_secret.password = Some(Secret::new(PASSWORD));
    let mut probe = RedisProbe::new(with_secret).expect("probe");
    let report = poll(&mut probe).await;
    assert!(report.result.is_ok(), "{report:?}");

    let in_url = format!("redis://:{PASSWORD}@127.0.0.1:{}/", server.port());
    let mut url_probe = RedisProbe::new(config(&in_url, &["ai:*"], 1000, 100_000)).expect("probe");
    let from_url = poll(&mut url_probe).await;
    assert!(from_url.result.is_ok(), "{from_url:?}");

    let mut wrong = config(&server.url(), &["ai:*"], 1000, 100_000);
    wrong.password = Some(Secret::new(format!("{PASSWORD}-wrong")));
    let mut wrong_probe = RedisProbe::new(wrong).expect("probe");
    let wrong_report = poll(&mut wrong_probe).await;
    assert!(wrong_report.result.is_err(), "{wrong_report:?}");

    for text in [
        format!("{probe:?} {url_probe:?} {wrong_probe:?}"),
        format!("{refused:?} {report:?} {from_url:?} {wrong_report:?}"),
        serde_json::to_string(&wrong_report).unwrap(),
    ] {
        assert!(!text.contains(PASSWORD), "the password leaked: {text}");
    }
}

/// One garbage reply (a proxy or a non-Redis server on the port) fails that poll as malformed; the
/// same probe reads Redis again once it answers properly (the connection manager alone would repeat
/// the parse error for ever), at the latest on the third poll (one connection may be cut by the
/// healing itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_garbage_reply_the_same_probe_reads_redis_again() {
    use crate::support::fault::{Endpoint, Fault, FaultProxy};
    let server = RedisServer::start().await;
    let proxy = FaultProxy::tcp(Endpoint::Tcp(([127, 0, 0, 1], server.port()).into())).await;
    let url = format!("redis://127.0.0.1:{}", proxy.port());
    let mut probe = RedisProbe::new(config(&url, &["ai:*"], 1000, 100_000)).expect("probe");
    let report = poll(&mut probe).await;
    assert!(report.result.is_ok(), "{report:?}");

    proxy.set(Fault::Garbage);
    let report = poll(&mut probe).await;
    match &report.result {
        Err(f) => assert!(
            matches!(f.kind, FailureKind::Malformed | FailureKind::Connect),
            "{f}"
        ),
        Ok(o) => panic!("garbage was read as Redis: {o:?}"),
    }

    proxy.set(Fault::None);
    // Healing cuts every connection the proxy holds, and the connection manager may have opened
    // one under the garbage (it reconnects in the background): a poll on that one fails to
    // connect. The same probe must then read Redis again by itself, without being rebuilt.
    let mut report = poll(&mut probe).await;
    for _ in 0..2 {
        match &report.result {
            Ok(_) => break,
            Err(f) => assert!(
                matches!(f.kind, FailureKind::Connect),
                "after healing only a cut connection may fail a poll: {f}"
            ),
        }
        report = poll(&mut probe).await;
    }
    assert!(report.result.is_ok(), "Redis is back: {report:?}");
}

/// Replies larger than the probe can have asked for are refused, not used (the redis crate has no
/// reply cap, so the probe checks what it got): an INFO over the limit fails the poll as
/// `too_large`; a SCAN page whose key names exceed the limit leaves that pattern's count unknown
/// (`too_large`) while the rest of the poll, another pattern's count included, stands. The limits
/// are set low here; the defaults read this Redis whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_larger_than_the_probe_reads_are_too_large_not_used() {
    let server = RedisServer::start().await;
    let mut con = server.connection_manager().await;
    fill(&mut con, "rate_limit:user:", 10, 1).await;
    // 50 keys whose names are over 1 KiB each: one SCAN page of them is over 50 KiB.
    fill(&mut con, &format!("ai:{}:", "x".repeat(1024)), 50, 1).await;

    let mut probe = probe_for(&server);
    let report = poll(&mut probe).await;
    assert_eq!(number(&report, r#"redis.keys{pattern="ai:*"}"#), 50.0);

    let mut small_info = probe_for(&server).with_limits(ReplyLimits {
        info_bytes: 512,
        ..ReplyLimits::default()
    });
    let failure = poll(&mut small_info)
        .await
        .result
        .expect_err("INFO over 512 B");
    assert_eq!(failure.kind, FailureKind::TooLarge, "{failure}");
    assert!(
        failure.detail.starts_with("INFO answered ")
            && failure
                .detail
                .ends_with("more than the 512 B the probe reads"),
        "{failure}"
    );

    let mut small_page = probe_for(&server).with_limits(ReplyLimits {
        scan_page_bytes: 8 << 10,
        ..ReplyLimits::default()
    });
    let report = poll(&mut small_page).await;
    let found = outcomes(&report);
    for key in [
        r#"redis.keys{pattern="ai:*"}"#,
        r#"redis.keys_capped{pattern="ai:*"}"#,
    ] {
        match found.get(key) {
            Some(Outcome::Unknown(f)) => {
                assert_eq!(f.kind, FailureKind::TooLarge, "{key}: {f}");
                assert!(
                    f.detail
                        .contains("SCAN MATCH ai:*: a page of key names came to")
                        && f.detail.contains("more than the 8.0 KiB the probe reads"),
                    "{f}"
                );
            }
            other => panic!("{key}: expected unknown, got {other:?}"),
        }
    }
    assert_eq!(
        number(&report, r#"redis.keys{pattern="rate_limit:*"}"#),
        10.0,
        "the other pattern is counted"
    );
    assert!(
        number(&report, "redis.ping_seconds") >= 0.0,
        "the poll stands"
    );
}
