//! Incidents and escalation end to end: a real Prometheus scraping the simulated backend, the daemon
//! (in-process on a manual clock, or the real binary), and the real SMTP server whose received mail
//! the assertions read. Time rules move with the manual clock, never by sleeping.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harven_watchdog::clock::Timestamp;
use harven_watchdog::store::{EmailStatus, Store};
use tokio_util::sync::CancellationToken;

use crate::support::backend::{Scenario, SimBackend, StatusStyle};
use crate::support::prometheus::PrometheusServer;
use crate::support::smtp::{ReceivedMail, SmtpServer, advance_until, summary};
use crate::support::{load, wait_for_some, wait_until};

use crate::support::daemon::{
    T0, TestDaemon as Daemon, evaluated_at, evaluated_once, paging_env as env, quick_runbook,
    sample, spawn_binary, watch_loop_barrier,
};
use crate::support::ledger::{drained, rows};

async fn start(env: Vec<(String, String)>, at: Timestamp) -> Daemon {
    Daemon::start(env, at).await
}

/// An email of the latency incident (the watchdog's own blindness to the peers these tests leave
/// out is an incident too, with its own emails).
pub(crate) fn is(mail: &ReceivedMail, level: &str, event: &str) -> bool {
    mail.header("X-Harven-Section") == Some("latency")
        && mail.header("X-Harven-Level") == Some(level)
        && mail.header("X-Harven-Event") == Some(event)
}

/// The latency incidents' pages in the store's outbox (the ledger) at `level` for `event`, whatever
/// their status: what the book decided, sent or not.
fn latency_pages(store: &Store, level: &str, event: &str) -> usize {
    rows(store)
        .iter()
        .filter(|r| r.incident.starts_with("latency-") && r.level == level && r.event == event)
        .count()
}

pub(crate) fn count(smtp: &SmtpServer, level: &str, event: &str) -> usize {
    smtp.messages()
        .iter()
        .filter(|m| is(m, level, event))
        .count()
}

/// Moves the clock until the latency incident's L1 email arrives; returns the incident's ID.
pub(crate) async fn l1_incident(
    hand: &harven_watchdog::clock::ManualClock,
    smtp: &SmtpServer,
) -> String {
    let mail = advance_until(hand, Duration::from_secs(15), smtp, "the L1 email", |m| {
        m.iter().any(|x| is(x, "L1", "opened"))
    })
    .await;
    mail.iter()
        .find(|m| is(m, "L1", "opened"))
        .and_then(|m| m.header("X-Harven-Incident"))
        .expect("the L1 email names its incident")
        .to_owned()
}

/// The time an incident opened, from its ID (`latency-20261118T110640Z`).
pub(crate) fn opened_at(incident: &str) -> Timestamp {
    let stamp = incident.rsplit('-').next().expect("id");
    let rfc = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[9..11],
        &stamp[11..13],
        &stamp[13..15]
    );
    Timestamp::from_system_time(humantime::parse_rfc3339(&rfc).expect("rfc3339"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_backend_pages_l1_then_l2_at_30_minutes_then_resolves_both() {
    let backend = SimBackend::start(StatusStyle::Grouped, Scenario::Slow).await;
    let prom = PrometheusServer::start(&[backend.target()]).await;
    let smtp = SmtpServer::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let d = start(env(&prom.url(), smtp.port(), data.path()), T0).await;

    let mail = advance_until(
        &d.hand,
        Duration::from_secs(15),
        &smtp,
        "the L1 email",
        |m| m.iter().any(|x| is(x, "L1", "opened")),
    )
    .await;
    let l1 = mail.iter().find(|m| is(m, "L1", "opened")).expect("L1");
    assert_eq!(l1.header("X-Harven-Section"), Some("latency"));
    let incident = l1
        .header("X-Harven-Incident")
        .expect("incident header")
        .to_owned();
    assert!(incident.starts_with("latency-"), "{incident}");
    assert!(l1.header("X-Harven-Cause").is_some());
    assert!(
        l1.rcpt_to.iter().any(|r| r.contains("oncall@test.harven")),
        "{:?}",
        l1.rcpt_to
    );
    let subject = l1.subject().expect("subject");
    assert!(subject.starts_with("[Harven][L1][major]"), "{subject}");
    let text = l1.text().expect("text part");
    assert!(
        text.contains("latency.slow_severe")
            || text.contains("latency.p95_high")
            || text.contains("p95 above 3 seconds"),
        "{text}"
    );
    assert!(
        text.contains("latency.openai_slow"),
        "the diagnosis lists the section's causes:\n{text}"
    );
    let root = l1.header("References").expect("threaded").to_owned();

    // The ack link of the email: GET shows a confirmation and changes nothing; POST acknowledges,
    // and the acknowledgement is on the incident's timeline in the store.
    let ack = text
        .split_whitespace()
        .find(|w| w.starts_with(&d.base) && w.contains("/act/"))
        .unwrap_or_else(|| panic!("no ack link in:\n{text}"))
        .to_owned();
    let http = crate::support::http_client();
    let page = http.get(&ack).send().await.expect("GET");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("body").contains(&incident));
    let store =
        harven_watchdog::store::Store::open(data.path().join("watchdog.db")).expect("store");
    let acks = |store: &harven_watchdog::store::Store| {
        store
            .incident(&incident)
            .expect("read")
            .expect("incident")
            .acks
    };
    assert!(acks(&store).is_empty(), "a GET changes nothing");
    let posted = http
        .post(&ack)
        .form(&[
            ("incident", incident.as_str()),
            ("action", "ack"),
            ("by", "Ana (on call)"),
            ("note", ""),
        ])
        .send()
        .await
        .expect("POST");
    assert_eq!(
        posted.status(),
        200,
        "{}",
        posted.text().await.unwrap_or_default()
    );
    let acked = acks(&store);
    assert_eq!(
        acked
            .get(&harven_watchdog::incident::Level::L1)
            .map(|a| a.by.as_str()),
        Some("Ana (on call)")
    );
    let timeline = store
        .incident(&incident)
        .expect("read")
        .expect("incident")
        .timeline;
    assert!(
        timeline
            .iter()
            .any(|t| t.kind == "acknowledged" && t.text.contains("Ana (on call)")),
        "{timeline:?}"
    );

    // L2 exactly when 30 minutes have passed since the incident opened, not before.
    let open = opened_at(&incident);
    let now = d.hand.now();
    d.hand
        .advance((open + Duration::from_secs(30 * 60 - 1)).saturating_since(now));
    // Once the book's step at 29:59 is in the store, so is any page it decided.
    evaluated_at(&store, &incident, d.hand.now()).await;
    assert_eq!(
        latency_pages(&store, "L2", "escalated"),
        0,
        "no L2 decided at 29:59"
    );
    assert_eq!(count(&smtp, "L2", "escalated"), 0, "no L2 at 29:59");
    let mail = advance_until(
        &d.hand,
        Duration::from_secs(1),
        &smtp,
        "the L2 email",
        |m| m.iter().any(|x| is(x, "L2", "escalated")),
    )
    .await;
    let l2 = mail.iter().find(|m| is(m, "L2", "escalated")).expect("L2");
    assert!(
        d.hand.now().saturating_since(open) < Duration::from_secs(30 * 60 + 15),
        "L2 within a tick of 30:00"
    );
    assert_eq!(l2.header("X-Harven-Incident"), Some(incident.as_str()));
    assert_eq!(
        l2.header("References"),
        Some(root.as_str()),
        "one thread per incident"
    );
    assert!(l2.rcpt_to.iter().any(|r| r.contains("lead@test.harven")));

    // Back to normal: after resolve_after, one resolved email to each level paged.
    backend.set_scenario(Scenario::Normal);
    advance_until(
        &d.hand,
        Duration::from_secs(15),
        &smtp,
        "the resolved emails",
        |m| {
            m.iter()
                .filter(|x| is(x, "L1", "resolved") || is(x, "L2", "resolved"))
                .count()
                == 2
        },
    )
    .await;
    assert_eq!(
        (
            count(&smtp, "L1", "resolved"),
            count(&smtp, "L2", "resolved")
        ),
        (1, 1)
    );
    assert_eq!(
        count(&smtp, "L3", "escalated"),
        0,
        "a major incident never reaches L3"
    );
    assert_eq!(count(&smtp, "L1", "opened"), 1);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_escalation_neither_repeats_l1_nor_forgets_the_l2_clock() {
    let backend = SimBackend::start(StatusStyle::Grouped, Scenario::Slow).await;
    let prom = PrometheusServer::start(&[backend.target()]).await;
    let smtp = SmtpServer::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let env = env(&prom.url(), smtp.port(), data.path());

    let store = Store::open(data.path().join("watchdog.db")).expect("store");

    let d = start(env.clone(), T0).await;
    let incident = l1_incident(&d.hand, &smtp).await;
    let open = opened_at(&incident);
    d.hand.advance(Duration::from_secs(10 * 60));
    evaluated_at(&store, &incident, d.hand.now()).await;

    // First a clean stop, then a crash (the task dropped mid-flight, as kill -9 would leave the store)
    // once the restarted daemon is at work: it has evaluated a report.
    let hand = d.stop().await;
    let d = start(env.clone(), hand.now()).await;
    evaluated_once(&d.base).await;
    d.task.abort();
    let _ = d.task.await;
    let d = start(env, d.hand.now()).await;

    // Nearly 30 minutes after the original open: no L2 yet, and L1 was never re-sent. Once the book's
    // step at 29:59 is in the store, so is every page decided since the restarts; once the outbox has
    // drained, the server has every email that will ever be sent of them.
    let now = d.hand.now();
    d.hand
        .advance((open + Duration::from_secs(30 * 60 - 1)).saturating_since(now));
    evaluated_at(&store, &incident, d.hand.now()).await;
    assert_eq!(
        (
            latency_pages(&store, "L1", "opened"),
            latency_pages(&store, "L2", "escalated")
        ),
        (1, 0),
        "no L1 decided again after the restarts, no L2 at 29:59"
    );
    wait_until(Duration::from_secs(60), Duration::from_millis(50), || {
        let done = drained(&store);
        async move { done }
    })
    .await
    .expect("the outbox drains");
    assert_eq!(
        count(&smtp, "L1", "opened"),
        1,
        "no L1 re-sent after the restarts"
    );
    assert_eq!(count(&smtp, "L2", "escalated"), 0);
    let mail = advance_until(
        &d.hand,
        Duration::from_secs(1),
        &smtp,
        "L2 after the restart",
        |m| m.iter().any(|x| is(x, "L2", "escalated")),
    )
    .await;
    assert!(
        d.hand.now().saturating_since(open) < Duration::from_secs(30 * 60 + 15),
        "L2 at 30 min from the original open"
    );
    let l2 = mail.iter().find(|m| is(m, "L2", "escalated")).expect("L2");
    assert_eq!(
        l2.header("X-Harven-Incident"),
        Some(incident.as_str()),
        "the same incident"
    );
    d.stop().await;
}

/// The real binary, killed with SIGKILL while its L1 page waits in the outbox for an SMTP server that
/// is down: after the restart the page is delivered once, and no second L1 is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_a_page_in_the_outbox_delivers_it_exactly_once() {
    let backend = SimBackend::start(StatusStyle::Grouped, Scenario::Slow).await;
    let prom = PrometheusServer::start(&[backend.target()]).await;
    let mut smtp = SmtpServer::start().await;
    smtp.stop();
    let data = tempfile::tempdir().expect("tempdir");
    // A runbook whose latency rule fires after 1 s, so real time suffices.
    let runbook = quick_runbook(data.path(), "5m");
    let mut env = env(&prom.url(), smtp.port(), data.path());
    env.push((
        "HARVEN_WATCHDOG__RUNBOOK__PATH".into(),
        runbook.display().to_string(),
    ));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    env.push((
        "HARVEN_WATCHDOG__SERVER__LISTEN".into(),
        format!("127.0.0.1:{port}"),
    ));
    // For the barrier below, nothing else.
    env.push((
        "HARVEN_WATCHDOG__SERVER__API_TOKEN".into(),
        BARRIER_TOKEN.into(),
    ));
    let base = format!("http://127.0.0.1:{port}");

    let mut child = spawn_binary(&env);
    // Wait until the L1 page is in the outbox (the sender keeps retrying: SMTP is down).
    let store = data.path().join("watchdog.db");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let queued = harven_watchdog::store::Store::open(&store)
            .ok()
            .and_then(|s| s.outbox_depth().ok())
            .is_some_and(|d| d.pending >= 1);
        if queued {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the L1 page never reached the outbox"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");

    smtp.restart().await;
    let mut child = spawn_binary(&env);
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&smtp, "L1", "opened") == 0 {
        assert!(
            Instant::now() < deadline,
            "the L1 page never arrived: {:?}",
            summary(&smtp.messages())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nothing more comes of the restart. A lost rule state or a forgotten incident would show at the
    // restarted daemon's first evaluation (a resolve, or a second L1): once it has evaluated a report
    // and its watch loop has then answered a command, that evaluation's step is in the store; once
    // the outbox has drained, the server has every email of it.
    evaluated_once(&base).await;
    watch_loop_barrier(&base, BARRIER_TOKEN).await;
    let ledger = Store::open(&store).expect("the store");
    let latency: Vec<String> = rows(&ledger)
        .iter()
        .filter(|r| r.incident.starts_with("latency-"))
        .map(|r| format!("{}/{}", r.level, r.event))
        .collect();
    assert_eq!(latency, ["L1/opened"], "the pages decided");
    wait_until(Duration::from_secs(60), Duration::from_millis(50), || {
        let done = drained(&ledger);
        async move { done }
    })
    .await
    .expect("the outbox drains");
    let mail = smtp.messages();
    child.kill().expect("kill");
    child.wait().expect("reaped");
    assert_eq!(
        count(&smtp, "L1", "opened"),
        1,
        "delivered once: {:?}",
        summary(&mail)
    );
    assert_eq!(
        count(&smtp, "L1", "resolved"),
        0,
        "the restart did not resolve the incident: {:?}",
        summary(&mail)
    );
}

/// The API token of the real binary in [`kill_9_with_a_page_in_the_outbox_delivers_it_exactly_once`],
/// used only by its [`watch_loop_barrier`].
const BARRIER_TOKEN: &str = "escalation-barrier-4d8b2f6a1c9e";

/// Large incidents in the store of the read-flood test (about 12 MB of JSON: a limit-500 list reads
/// every one).
const SEEDED: usize = 300;
/// Concurrent anonymous clients in the read flood.
const FLOODERS: usize = 8;
/// How long (real time) the flood test waits for anything before failing: liveness, not latency.
const PATIENCE: Duration = Duration::from_secs(180);

/// Anonymous clients reading `GET /api/incidents?limit=500` and `GET /` back to back, each request
/// read to its last byte, until stopped.
struct Flood {
    /// Requests answered so far, per client.
    done: Arc<Vec<AtomicUsize>>,
    /// Every request that was not answered 200 with a whole body.
    failures: Arc<Mutex<Vec<String>>>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Flood {
    fn start(base: &str, clients: usize) -> Self {
        crate::support::init();
        let done: Arc<Vec<AtomicUsize>> =
            Arc::new((0..clients).map(|_| AtomicUsize::new(0)).collect());
        let failures = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let tasks = (0..clients)
            .map(|c| {
                let (done, failures, stop) =
                    (Arc::clone(&done), Arc::clone(&failures), stop.clone());
                // Its own client (its own connection), with a timeout far above any answer.
                let http = reqwest::Client::builder()
                    .timeout(PATIENCE)
                    .build()
                    .expect("client");
                let urls = [
                    format!("{base}/api/incidents?limit=500"),
                    format!("{base}/"),
                ];
                tokio::spawn(async move {
                    let mut n = c;
                    while !stop.is_cancelled() {
                        let url = &urls[n % 2];
                        let answer = match http.get(url).send().await {
                            Ok(r) if r.status() == 200 => {
                                r.bytes().await.map(|_| ()).map_err(|e| e.to_string())
                            }
                            Ok(r) => Err(format!("status {}", r.status())),
                            Err(e) => Err(e.to_string()),
                        };
                        if let Err(e) = answer {
                            failures
                                .lock()
                                .expect("failures")
                                .push(format!("GET {url}: {e}"));
                        }
                        done[c].fetch_add(1, Ordering::Relaxed);
                        n += 1;
                    }
                })
            })
            .collect();
        Self {
            done,
            failures,
            stop,
            tasks,
        }
    }

    /// Returns once every client has had an answer: the flood is under way.
    async fn wait_under_way(&self) {
        let done = Arc::clone(&self.done);
        wait_until(PATIENCE, Duration::from_millis(50), move || {
            let all = done.iter().all(|d| d.load(Ordering::Relaxed) > 0);
            async move { all }
        })
        .await
        .expect("every flooding client had an answer");
    }

    /// Stops it (each client after its request in flight); returns the requests answered per client.
    async fn stop(self) -> (Vec<usize>, Vec<String>) {
        self.stop.cancel();
        for t in self.tasks {
            t.await.expect("flooding client");
        }
        let done = self
            .done
            .iter()
            .map(|d| d.load(Ordering::Relaxed))
            .collect();
        let failures = self.failures.lock().expect("failures").clone();
        (done, failures)
    }
}

/// The store's wait histograms as `/metrics` shows them.
#[derive(Debug, Clone, Copy)]
struct StoreWaits {
    write_sum: f64,
    write_count: f64,
    /// Writes (and write-side reads) that waited more than 5 ms for the writer's connection.
    write_over_5ms: f64,
    read_sum: f64,
    read_count: f64,
}

impl StoreWaits {
    async fn read(d: &Daemon) -> Self {
        let text = d.metrics().await;
        let get =
            |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series} in:\n{text}"));
        let w = "harven_watchdog_store_write_wait_seconds";
        let r = "harven_watchdog_store_read_wait_seconds";
        Self {
            write_sum: get(&format!("{w}_sum")),
            write_count: get(&format!("{w}_count")),
            write_over_5ms: get(&format!("{w}_count"))
                - get(&format!("{w}_bucket{{le=\"0.005\"}}")),
            read_sum: get(&format!("{r}_sum")),
            read_count: get(&format!("{r}_count")),
        }
    }

    /// What happened between `earlier` and `self`, as a log line.
    fn since(self, earlier: Self) -> String {
        let writes = self.write_count - earlier.write_count;
        let reads = self.read_count - earlier.read_count;
        format!(
            "{writes} uses of the writer, mean wait {:.3} ms, {} over 5 ms; {reads} reads, mean wait for a reader {:.1} ms",
            (self.write_sum - earlier.write_sum) * 1e3 / writes.max(1.0),
            self.write_over_5ms - earlier.write_over_5ms,
            (self.read_sum - earlier.read_sum) * 1e3 / reads.max(1.0),
        )
    }
}

/// Issue 13, "reads under load don't delay a page": anonymous clients flood the incident list and the
/// status page of a store holding a few hundred large incidents while an incident escalates. The
/// L2 page is committed to the outbox at the simulated instant it is due (the manual clock stands
/// still there until it is), and is delivered, while the flood goes on; every read is answered,
/// and every one went through the store's readers. No wall-clock time is asserted: the figures
/// (the store's waits with and without the flood) go to the test log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_reads_does_not_move_the_l2_page_off_its_instant() {
    let backend = SimBackend::start(StatusStyle::Grouped, Scenario::Slow).await;
    let prom = PrometheusServer::start(&[backend.target()]).await;
    let smtp = SmtpServer::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let store = Store::open(data.path().join("watchdog.db")).expect("store");
    let bytes = load::seed(&store, SEEDED, T0);
    let d = start(env(&prom.url(), smtp.port(), data.path()), T0).await;

    // Without the flood: L1, recorded with the incident it opens.
    let started = StoreWaits::read(&d).await;
    let incident = l1_incident(&d.hand, &smtp).await;
    let opened = store
        .incident(&incident)
        .expect("read")
        .expect("the incident")
        .opened_at;
    let l1 = store
        .outbox_entry(&format!("{incident}/L1/opened/0"))
        .expect("read")
        .expect("the L1 row");
    assert_eq!(
        l1.created_at, opened,
        "L1 is committed with the incident it opens"
    );
    let quiet = StoreWaits::read(&d).await;

    // With the flood under way, the clock jumps to the instant L2 is due and stays there.
    let flood = Flood::start(&d.base, FLOODERS);
    flood.wait_under_way().await;
    let due = opened + Duration::from_secs(30 * 60);
    let now = d.hand.now();
    assert!(now < due, "L1 came before L2 was due");
    d.hand.advance(due.saturating_since(now));
    let l2 = wait_for_some(PATIENCE, Duration::from_millis(100), || {
        let row = store
            .outbox_for(&incident)
            .expect("read the outbox")
            .into_iter()
            .find(|e| e.level == "L2" && e.event == "escalated");
        async move { row }
    })
    .await
    .expect("the L2 page is committed during the flood");
    assert_eq!(d.hand.now(), due, "the clock did not move meanwhile");
    assert_eq!(l2.created_at, due, "committed at the instant it was due");
    let delivered = wait_for_some(PATIENCE, Duration::from_millis(100), || {
        let mail = smtp.messages();
        async move { mail.iter().any(|m| is(m, "L2", "escalated")).then_some(()) }
    })
    .await;
    assert!(
        delivered.is_ok(),
        "the L2 email is delivered during the flood: {:?}",
        summary(&smtp.messages())
    );
    let (answered, failures) = flood.stop().await;
    let flooded = StoreWaits::read(&d).await;

    assert!(failures.is_empty(), "every read is answered: {failures:#?}");
    assert!(answered.iter().all(|&n| n > 0), "{answered:?}");
    assert_eq!(
        store.outbox_entry(&l2.key).expect("read").map(|e| e.status),
        Some(EmailStatus::Sent)
    );
    // Each list is one read and each status page three, all on the readers, none on the writer.
    let requests: usize = answered.iter().sum();
    assert!(
        flooded.read_count - quiet.read_count >= requests as f64,
        "{requests} requests, {} reads through the readers",
        flooded.read_count - quiet.read_count
    );
    eprintln!(
        "read flood: {SEEDED} incidents ({:.1} MB of JSON), {FLOODERS} clients, {requests} requests answered ({answered:?})\n\
         without the flood (start to L1): {}\n\
         with the flood (L1 to L2 delivered): {}",
        bytes as f64 / 1e6,
        quiet.since(started),
        flooded.since(quiet),
    );
    d.stop().await;
}
