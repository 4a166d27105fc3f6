//! The HTTP server against slow and many clients, on loopback: the daemon in-process, raw TCP
//! connections that send their request head slowly, partly or not at all, and requests whose body
//! never comes. Every wait is on the server's own answer (a close, a status line, an email), bounded
//! by a deadline so a broken server fails the test instead of hanging it; nothing asserts how long
//! the server took.
//!
//! File descriptors: at most 300 client sockets and as many server sockets at once, well under the
//! test process's limit (`ulimit -n` is 20000 here; [`assert_room_for`] checks it).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::daemon::start_with;
use crate::escalation::is;
use crate::support::backend::{Scenario, SimBackend, StatusStyle};
use crate::support::daemon::{T0, TestDaemon, paging_env, sample};
use crate::support::prometheus::PrometheusServer;
use crate::support::smtp::{SmtpServer, advance_until};

/// How long the server gets to do what a test waits for.
const DEADLINE: Duration = Duration::from_secs(60);

/// The refusals counted for `reason` in `/metrics` text.
fn refused(metrics: &str, reason: &str) -> f64 {
    let series = format!("harven_watchdog_http_refused_total{{reason=\"{reason}\"}}");
    sample(metrics, &series).unwrap_or_else(|| panic!("{series} missing:\n{metrics}"))
}

/// Panics unless this process may open `n` more file descriptors.
fn assert_room_for(n: u64) {
    let limits = procfs::process::Process::myself()
        .and_then(|me| me.limits())
        .expect("read /proc/self/limits");
    let open = procfs::process::Process::myself()
        .and_then(|me| me.fd_count())
        .expect("count fds") as u64;
    if let procfs::process::LimitValue::Value(max) = limits.max_open_files.soft_limit {
        assert!(
            open + n < max,
            "this test needs {n} more file descriptors ({open} open, limit {max}): raise ulimit -n"
        );
    }
}

/// `base` (`http://127.0.0.1:PORT`) as a socket address.
fn addr(base: &str) -> String {
    base.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection (end of stream, or a reset); what it had sent.
async fn until_closed(stream: &mut (impl AsyncReadExt + Unpin)) -> Vec<u8> {
    until(stream, None).await
}

/// Reads until what the server sent holds `needle`, or it closes the connection.
async fn until(stream: &mut (impl AsyncReadExt + Unpin), needle: Option<&str>) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        if needle.is_some_and(|n| String::from_utf8_lossy(&got).contains(n)) {
            return got;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Waits until `n` more slow clients report that the server closed them; their indices.
async fn closed_clients(
    closed: &mut mpsc::UnboundedReceiver<(usize, Vec<u8>)>,
    n: usize,
) -> Vec<usize> {
    let mut seen = Vec::new();
    let waited = tokio::time::timeout(DEADLINE, async {
        while seen.len() < n {
            let (i, got) = closed.recv().await.expect("clients report");
            assert!(got.is_empty(), "closed without an answer");
            seen.push(i);
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "only {} of {n} slow clients were closed",
        seen.len()
    );
    seen
}

/// Whether the server has answered or closed `stream` (without waiting).
fn answered(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 256];
    !matches!(stream.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Slowloris and silent clients: each is closed by the server once `header_read_timeout` (1 s
/// here) has passed without a complete request head, counted as `header_timeout`, while `/healthz`
/// answers throughout; a kept-alive connection idle for longer is not closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_clients_are_closed_after_the_header_read_timeout() {
    const EACH: usize = 40;
    assert_room_for(4 * EACH as u64 + 64);
    let d = start_with(&[("HARVEN_WATCHDOG__SERVER__HEADER_READ_TIMEOUT", "1s")]).await;
    let http = crate::support::http_client();
    let target = addr(&d.base);

    let mut clients = tokio::task::JoinSet::new();
    for i in 0..2 * EACH {
        let mut stream = TcpStream::connect(&target).await.expect("connect");
        let trickle = i % 2 == 0;
        clients.spawn(async move {
            if trickle {
                // A head that never ends, one byte at a time, until the server hangs up.
                stream
                    .write_all(b"GET /healthz HTTP/1.1\r\nHost: slow\r\nX-Slow: ")
                    .await
                    .expect("the start of a head");
                let (mut read, mut write) = stream.into_split();
                let trickler = async {
                    loop {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        if write.write_all(b"a").await.is_err() {
                            return;
                        }
                    }
                };
                tokio::select! {
                    got = until_closed(&mut read) => got,
                    () = trickler => until_closed(&mut read).await,
                }
            } else {
                until_closed(&mut stream).await
            }
        });
    }
    let health = http
        .get(format!("{}/healthz", d.base))
        .send()
        .await
        .expect("/healthz answers while they are held");
    assert_eq!(health.status(), 200);

    let closed = tokio::time::timeout(DEADLINE, async {
        let mut n = 0;
        while let Some(got) = clients.join_next().await {
            let got = got.expect("client task");
            // hyper closes a timed-out head without an answer.
            assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
            n += 1;
        }
        n
    })
    .await
    .expect("every slow client was closed by the server");
    assert_eq!(closed, 2 * EACH);

    // A kept-alive connection idle for longer than header_read_timeout stays open: a head is timed
    // from its first byte. (The silent connection, accepted after the first answer and closed by the
    // server after 1 s, shows that more than 1 s went by.)
    const REQUEST: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: kept\r\n\r\n";
    let mut kept = TcpStream::connect(&target).await.expect("connect");
    kept.write_all(REQUEST).await.expect("request");
    let first = until(&mut kept, Some("ok\n")).await;
    assert!(
        first.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&first)
    );
    let mut silent = TcpStream::connect(&target).await.expect("connect");
    tokio::time::timeout(DEADLINE, until_closed(&mut silent))
        .await
        .expect("the silent connection was closed");
    kept.write_all(REQUEST)
        .await
        .expect("the kept-alive connection is open");
    let second = until(&mut kept, Some("ok\n")).await;
    assert!(
        second.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&second)
    );

    let metrics = crate::support::http_client()
        .get(format!("{}/metrics", d.base))
        .send()
        .await
        .expect("/metrics")
        .text()
        .await
        .expect("body");
    assert_eq!(refused(&metrics, "header_timeout"), (2 * EACH + 1) as f64);
    assert_eq!(refused(&metrics, "connection_limit"), 0.0);
    d.shutdown.cancel();
    d.task.await.expect("join").expect("clean stop");
}

/// Past `max_connections` (200 here), each new connection closes the one that has waited longest
/// for a request: 300 slow clients that never finish their head leave 100 of theirs closed and
/// displace one more for the health check, which answers; the other 199 stay open while a real
/// incident (the slow backend, through a real Prometheus) pages L1 over real SMTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_limit_slow_clients_make_room_and_the_watchdog_still_pages() {
    const MAX: usize = 200;
    const SLOW: usize = 300;
    assert_room_for(2 * SLOW as u64 + 64);
    let backend = SimBackend::start(StatusStyle::Grouped, Scenario::Slow).await;
    let prom = PrometheusServer::start(&[backend.target()]).await;
    let smtp = SmtpServer::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let mut env = paging_env(&prom.url(), smtp.port(), data.path());
    for (key, value) in [
        ("SERVER__MAX_CONNECTIONS", MAX.to_string()),
        ("SERVER__MAX_REQUESTS_IN_FLIGHT", "64".to_owned()),
        // Long, so the slow clients are held through the incident (closed only to make room).
        ("SERVER__HEADER_READ_TIMEOUT", "30m".to_owned()),
        ("SERVER__IDLE_TIMEOUT", "59m".to_owned()),
    ] {
        env.push((format!("HARVEN_WATCHDOG__{key}"), value));
    }
    let d = TestDaemon::start(env, T0).await;
    let target = addr(&d.base);

    // Each slow client reports its index when the server closes it.
    let (closed_tx, mut closed) = mpsc::unbounded_channel();
    let mut writers = Vec::new();
    for i in 0..SLOW {
        let mut stream = TcpStream::connect(&target).await.expect("connect");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: slow\r\n")
            .await
            .expect("half a head");
        let (mut read, write) = stream.into_split();
        writers.push(write);
        let closed_tx = closed_tx.clone();
        tokio::spawn(async move {
            let got = until_closed(&mut read).await;
            let _ = closed_tx.send((i, got));
        });
    }
    closed_clients(&mut closed, SLOW - MAX).await;

    // A health check gets in (its connection displaces one more slow client) and is answered; the
    // metrics come over the same kept-alive connection. One raw connection, written by hand: a
    // client's pool may open a second one (a connection not yet back in the pool when the next
    // request goes), which would displace one more slow client.
    let mut probe = TcpStream::connect(&target).await.expect("connect");
    let mut get = async |path: &'static str, end: &'static str| {
        probe
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: probe\r\n\r\n").as_bytes())
            .await
            .expect("the kept-alive connection is open");
        let answer = String::from_utf8_lossy(&until(&mut probe, Some(end)).await).into_owned();
        assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
        answer
    };
    assert!(get("/healthz", "ok\n").await.ends_with("\r\n\r\nok\n"));
    closed_clients(&mut closed, 1).await;
    let metrics = get("/metrics", "# EOF\n").await;
    assert_eq!(
        refused(&metrics, "connection_limit"),
        (SLOW - MAX + 1) as f64
    );
    assert_eq!(
        sample(&metrics, "harven_watchdog_http_connections"),
        Some(MAX as f64)
    );

    // The incident pages while the slow clients hold the rest of the connections.
    advance_until(
        &d.hand,
        Duration::from_secs(15),
        &smtp,
        "the L1 email",
        |m| m.iter().any(|x| is(x, "L1", "opened")),
    )
    .await;
    assert!(get("/healthz", "ok\n").await.ends_with("\r\n\r\nok\n"));
    assert!(
        closed.try_recv().is_err(),
        "the other slow clients were held throughout"
    );
    let metrics = get("/metrics", "# EOF\n").await;
    assert_eq!(
        refused(&metrics, "connection_limit"),
        (SLOW - MAX + 1) as f64
    );
    assert_eq!(
        sample(&metrics, "harven_watchdog_http_connections"),
        Some(MAX as f64)
    );

    drop(writers);
    d.stop().await;
}

/// Past `max_requests_in_flight` (4 here: four requests whose body never comes), a request is
/// answered 503 at once with `Retry-After`, and `/healthz` still 200; once they go, requests are
/// served again. With a 1 s `request_timeout`, such a request is answered 503 by the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_in_flight_bound_503_at_once_and_slow_bodies_time_out() {
    const IN_FLIGHT: usize = 4;
    assert_room_for(64);
    // A body announced, never sent: the handler waits for it, holding its place in flight.
    const STUCK: &[u8] = b"POST /signin HTTP/1.1\r\nHost: slow\r\n\
        Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ntoken=";

    let d = start_with(&[
        ("HARVEN_WATCHDOG__SERVER__MAX_REQUESTS_IN_FLIGHT", "4"),
        ("HARVEN_WATCHDOG__SERVER__REQUEST_TIMEOUT", "10m"),
        ("HARVEN_WATCHDOG__SERVER__IDLE_TIMEOUT", "59m"),
    ])
    .await;
    let http = crate::support::http_client();
    let stuck_request = || async {
        let mut stream = TcpStream::connect(addr(&d.base)).await.expect("connect");
        stream.write_all(STUCK).await.expect("head");
        stream
    };
    let mut stuck = Vec::new();
    for _ in 0..IN_FLIGHT {
        stuck.push(stuck_request().await);
    }
    // They reach their handlers in their own time, racing the probe below: one that arrived while
    // the probe held a place was itself answered 503, and is sent again, until the probe is refused.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let refused_answer = loop {
        for s in &mut stuck {
            if answered(s) {
                *s = stuck_request().await;
            }
        }
        let answer = http
            .get(format!("{}/api/incidents", d.base))
            .send()
            .await
            .expect("answered");
        if answer.status() == 503 {
            break answer;
        }
        assert_eq!(answer.status(), 200);
        assert!(tokio::time::Instant::now() < deadline, "never overloaded");
        tokio::task::yield_now().await;
    };
    assert_eq!(refused_answer.headers()["retry-after"], "1");
    let body: serde_json::Value = refused_answer.json().await.expect("JSON under /api/");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("too many requests"),
        "{body}"
    );
    let health = http
        .get(format!("{}/healthz", d.base))
        .send()
        .await
        .expect("/healthz");
    assert_eq!(health.status(), 200, "/healthz is outside the bound");

    drop(stuck);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let metrics = loop {
        let answer = http
            .get(format!("{}/metrics", d.base))
            .send()
            .await
            .expect("answered");
        if answer.status() == 200 {
            break answer.text().await.expect("body");
        }
        assert!(tokio::time::Instant::now() < deadline, "never served again");
        tokio::task::yield_now().await;
    };
    assert!(refused(&metrics, "overloaded") >= 1.0);
    assert_eq!(refused(&metrics, "request_timeout"), 0.0);
    d.shutdown.cancel();
    d.task.await.expect("join").expect("clean stop");

    let d = start_with(&[("HARVEN_WATCHDOG__SERVER__REQUEST_TIMEOUT", "1s")]).await;
    let mut stream = TcpStream::connect(addr(&d.base)).await.expect("connect");
    stream.write_all(STUCK).await.expect("head");
    let answer = tokio::time::timeout(DEADLINE, until(&mut stream, Some("took too long")))
        .await
        .expect("the server answered");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("took too long"), "{answer}");
    let metrics = http
        .get(format!("{}/metrics", d.base))
        .send()
        .await
        .expect("/metrics")
        .text()
        .await
        .expect("body");
    assert_eq!(refused(&metrics, "request_timeout"), 1.0);
    d.shutdown.cancel();
    d.task.await.expect("join").expect("clean stop");
}
