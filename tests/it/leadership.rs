//! Two replicas, one pager (issue 17): two in-process daemons on one manual clock share one store
//! file and one lease arbiter ([`MemoryLeases`], the store's lease semantics in memory), watching a
//! real Prometheus that scrapes the real FastAPI app (prometheus-fastapi-instrumentator) and paging
//! through the real SMTP server.
//!
//! One slow backend pages L1 exactly once, from the leader; the standby refuses an API ack with 503
//! naming the leader and says `standby (leader: node-a)` on `/readyz`. The leader is then cut off
//! from the lease mid-incident: it demotes itself before its lease expires, the standby takes over
//! (on the timeline), the L2 arrives once at open + 30 min from the persisted opening, and the
//! resolved emails go once to every paged level; every email of the ledger reached the server
//! exactly once.
//!
//! The PostgreSQL acceptance tests with two real binaries (`kill -9`, a partition through a fault
//! proxy) follow once the store's lease is merged: [`TestDaemon::start_replica`] takes the store
//! itself as the `Leases` then.

use std::sync::Arc;
use std::time::{Duration, Instant};

use harven_watchdog::clock::Clock;
use harven_watchdog::ha::{Leases, MemoryLeases};
use harven_watchdog::store::Store;

use crate::escalation::{count, l1_incident, opened_at};
use crate::support::daemon::{T0, TestDaemon, evaluated_at, paging_env, sample};
use crate::support::fastapi::{FastApiBackend, Handler, Load, LoadSpec, Profile, Scenario};
use crate::support::ledger::{assert_delivered_exactly_once, drained};
use crate::support::prometheus::PrometheusServer;
use crate::support::smtp::{SmtpServer, advance_until};

const TOKEN: &str = "api-token-7f3c9e1b5d2a4c6e8f0a";

/// How long (real time) a wait for the replicas may take: liveness, not timing.
const PATIENCE: Duration = Duration::from_secs(120);

/// `node`'s configuration: the paging set-up of the escalation tests, the API token, and a lease
/// long against the test's 15 s clock steps (10 min, renewed every 5 min), so that only the cut
/// moves the lead.
fn replica_env(
    prom: &str,
    smtp_port: u16,
    data: &std::path::Path,
    node: &str,
) -> Vec<(String, String)> {
    let mut env = paging_env(prom, smtp_port, data);
    env.extend(
        [
            ("SERVER__API_TOKEN", TOKEN),
            ("HA__NODE", node),
            ("HA__LEASE", "10m"),
            ("HA__RENEW_EVERY", "5m"),
        ]
        .into_iter()
        .map(|(k, v)| (format!("HARVEN_WATCHDOG__{k}"), v.to_owned())),
    );
    env
}

/// `harven_watchdog_leader` of `d`.
async fn leader_gauge(d: &TestDaemon) -> Option<f64> {
    sample(&d.metrics().await, "harven_watchdog_leader")
}

/// `harven_watchdog_incidents_open` of `d`, summed over its series.
async fn open_incidents(d: &TestDaemon) -> f64 {
    d.metrics()
        .await
        .lines()
        .filter(|l| l.starts_with("harven_watchdog_incidents_open{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Moves the shared clock in 15 s steps until `done`, giving the replicas real time between steps.
async fn advance_while(d: &TestDaemon, what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done().await {
        assert!(Instant::now() < deadline, "{what}: never happened");
        d.hand.advance(Duration::from_secs(15));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_pages_and_the_standby_takes_over_mid_incident_without_repeating_a_page() {
    let backend = FastApiBackend::start(Profile::Default).await;
    backend.set_scenario(&Scenario::slow_chat(4.0, 6.0)).await;
    let load = Load::start(
        &backend,
        LoadSpec {
            cap: Duration::from_secs(600),
            ..LoadSpec::new(10.0, &[(Handler::Chat, 3), (Handler::Courses, 1)])
        },
    );
    let prom = PrometheusServer::start(&[backend.target()]).await;
    let smtp = SmtpServer::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let (clock, hand) = Clock::manual(T0);
    let arbiter = MemoryLeases::new(clock.clone());

    // node-a starts first and takes the lead; node-b finds it held.
    let a = TestDaemon::start_replica(
        replica_env(&prom.url(), smtp.port(), data.path(), "node-a"),
        clock.clone(),
        hand.clone(),
        arbiter.replica() as Arc<dyn Leases>,
    )
    .await;
    crate::support::wait_until(PATIENCE, Duration::from_millis(20), || {
        let leads = arbiter
            .current()
            .is_some_and(|(holder, _)| holder == "node-a");
        async move { leads }
    })
    .await
    .expect("node-a takes the lead");
    let b = TestDaemon::start_replica(
        replica_env(&prom.url(), smtp.port(), data.path(), "node-b"),
        clock.clone(),
        hand.clone(),
        arbiter.replica() as Arc<dyn Leases>,
    )
    .await;
    let http = crate::support::http_client();
    crate::support::wait_until(PATIENCE, Duration::from_millis(50), || {
        let request = http.get(format!("{}/readyz", b.base)).send();
        async move {
            match request.await {
                Ok(r) if r.status() == 200 => r
                    .text()
                    .await
                    .is_ok_and(|t| t == "ready\nrole: standby (leader: node-a)\n"),
                _ => false,
            }
        }
    })
    .await
    .expect("node-b is a ready standby naming node-a");
    assert_eq!(a.get("/readyz").await, "ready\nrole: leader\n");
    assert_eq!(leader_gauge(&a).await, Some(1.0));
    assert_eq!(leader_gauge(&b).await, Some(0.0));

    // One slow backend: exactly one L1, sent by the leader.
    let incident = l1_incident(&hand, &smtp).await;
    let store = Store::open(data.path().join("watchdog.db")).expect("store");
    let open = opened_at(&incident);

    // The standby's incident gauges follow the leader's book (read from the store).
    assert!(
        open_incidents(&a).await >= 1.0,
        "the leader counts its incident"
    );
    advance_while(&b, "node-b's gauges follow the leader's book", async || {
        open_incidents(&b).await == open_incidents(&a).await
    })
    .await;

    // The standby refuses an ack with 503 naming the leader, and changes nothing.
    let refused = http
        .post(format!("{}/api/incidents/{incident}/ack", b.base))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "by": "Ana" }))
        .send()
        .await
        .expect("POST ack to the standby");
    assert_eq!(refused.status(), 503);
    let body: serde_json::Value = refused.json().await.expect("JSON");
    assert_eq!(
        body,
        serde_json::json!({ "error": "standby", "leader": "node-a" })
    );
    let page = b.get("/").await;
    assert!(
        page.contains("node-b: standby (the leader is node-a)"),
        "the standby's status page says its role"
    );

    // node-a is cut off from the lease: it demotes itself (before the lease expires) and node-b
    // takes over once it has, all before the L2 is due.
    arbiter.cut("node-a", true);
    let cut_at = hand.now();
    advance_while(&b, "node-b takes over", async || {
        leader_gauge(&b).await == Some(1.0)
    })
    .await;
    assert_eq!(leader_gauge(&a).await, Some(0.0), "node-a stopped paging");
    let took_over = hand.now();
    assert!(
        took_over.saturating_since(cut_at) <= Duration::from_secs(15 * 60 + 30),
        "the takeover came {:?} after the cut (lease 10 min + renew 5 min)",
        took_over.saturating_since(cut_at)
    );
    assert!(
        took_over < open + Duration::from_secs(30 * 60 - 1),
        "the takeover at {took_over} must come before the L2 (opened {open})"
    );
    assert_eq!(arbiter.current().map(|c| c.0).as_deref(), Some("node-b"));
    assert!(b.get("/readyz").await.ends_with("role: leader\n"));
    let timeline = store
        .incident(&incident)
        .expect("read")
        .expect("incident")
        .timeline;
    assert!(
        timeline
            .iter()
            .any(|t| t.kind == "takeover" && t.text == "node-b took over from node-a"),
        "the takeover is on the timeline: {timeline:?}"
    );
    assert_eq!(
        count(&smtp, "L1", "opened"),
        1,
        "no L1 again after the takeover"
    );

    // The L2 from the persisted opening: not at 29:59, once at 30:00.
    hand.advance((open + Duration::from_secs(30 * 60 - 1)).saturating_since(hand.now()));
    evaluated_at(&store, &incident, hand.now()).await;
    assert_eq!(count(&smtp, "L2", "escalated"), 0, "no L2 at 29:59");
    advance_until(&hand, Duration::from_secs(1), &smtp, "the L2 email", |m| {
        m.iter()
            .any(|x| crate::escalation::is(x, "L2", "escalated"))
    })
    .await;

    // Recovery: the resolved emails go to both paged levels, once each.
    load.stop().await;
    backend.set_scenario(&Scenario::Normal).await;
    let load = Load::start(
        &backend,
        LoadSpec {
            cap: Duration::from_secs(600),
            ..LoadSpec::new(10.0, &[(Handler::Chat, 3), (Handler::Courses, 1)])
        },
    );
    advance_until(
        &hand,
        Duration::from_secs(15),
        &smtp,
        "the resolved emails",
        |m| {
            ["L1", "L2"]
                .iter()
                .all(|l| m.iter().any(|x| crate::escalation::is(x, l, "resolved")))
        },
    )
    .await;
    load.stop().await;
    crate::support::wait_until(PATIENCE, Duration::from_millis(100), || {
        let done = drained(&store);
        async move { done }
    })
    .await
    .expect("the outbox drains");
    for (level, event) in [
        ("L1", "opened"),
        ("L2", "escalated"),
        ("L1", "resolved"),
        ("L2", "resolved"),
    ] {
        assert_eq!(count(&smtp, level, event), 1, "{level} {event}");
    }
    assert_delivered_exactly_once(&store, &smtp.messages(), "after the takeover");

    b.stop().await;
    a.stop().await;
}
