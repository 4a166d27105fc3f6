//! The sender when the shared database stops answering (issue 17), in process, on a real PostgreSQL
//! and a real SMTP server, each behind a fault proxy, with the roles set by hand and a manual clock.
//!
//! [`a_leader_cut_off_sends_its_batch_and_a_new_leader_never_repeats_it`]: node-a leads; an email
//! fails on a refusing SMTP server and waits for its retry; the database is cut off from node-a and
//! the SMTP server returns. Within its lease node-a sends the email from its batch (the row stays
//! pending: the store cannot be told). node-a loses the lead to node-b, whose new term holds the
//! rows of earlier epochs: its own email goes out at once, the earlier term's wait. node-a reaches
//! the database again and records its delivery (unfenced: it is no longer the leader); once the hold
//! ends node-b sends the earlier term's email node-a never had in its batch, and not the one node-a
//! sent. Every row of the ledger reached the server exactly once.

use std::sync::Arc;
use std::time::Duration;

use harven_watchdog::clock::Clock;
use harven_watchdog::config::{PostgresConfig, SmtpServer as SmtpServerConfig, TlsMode};
use harven_watchdog::ha::{HaMetrics, Leadership, Publish, Role};
use harven_watchdog::incident::{Level, PageEvent};
use harven_watchdog::notify::{self, NotifyMetrics, SenderConfig, SmtpTransport};
use harven_watchdog::store::{EmailStatus, Fence, Store};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::store::{T0, email, incident};
use crate::support::fault::{Endpoint, Fault, FaultProxy};
use crate::support::ledger::assert_delivered_exactly_once;
use crate::support::postgres;
use crate::support::smtp::SmtpServer;

/// Deadline for anything a peer or a sender task does (real time).
const PEER: Duration = Duration::from_secs(30);

/// How long a new term holds the earlier epochs' rows (`ha.lease` in a daemon).
const HOLD: Duration = Duration::from_secs(20);

/// node-a's lease: long enough for the test's own fenced commit after the cut, short enough that
/// node-b's claim gets it soon after.
const LEASE_A: Duration = Duration::from_secs(5);

fn pg(port: u16, db: &str) -> PostgresConfig {
    crate::store::pg_config_with(port, db, Duration::from_secs(1))
}

fn proxy_to(port: u16) -> Endpoint {
    Endpoint::Tcp(format!("127.0.0.1:{port}").parse().expect("address"))
}

/// One replica's sender, with the watch channel the test sets its role through.
struct Sender {
    role: watch::Sender<Role>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Sender {
    fn start(node: &str, store: Arc<Store>, smtp_port: u16, clock: Clock) -> Sender {
        let (publish, leadership): (Publish, Leadership) =
            Publish::channel(node, HaMetrics::default());
        let mut config = SenderConfig::new("watchdog@harven.ai".parse().expect("from"));
        config.takeover_hold = HOLD;
        let transport = SmtpTransport::new(&SmtpServerConfig {
            host: "127.0.0.1".to_owned(),
            port: smtp_port,
            tls: TlsMode::None,
            credentials: None,
            timeout: Duration::from_secs(5),
            ca_file: None,
        })
        .expect("transport");
        let wake = Arc::new(Notify::new());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(notify::run(
            store,
            transport,
            config,
            clock,
            wake.clone(),
            NotifyMetrics::default(),
            leadership,
            shutdown.clone(),
        ));
        Sender {
            role: publish.role,
            wake,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(PEER, self.task)
            .await
            .expect("the sender stops")
            .expect("the sender does not panic");
    }
}

/// Waits (real time, bounded) until `ok` holds of the row `key` as the test's own connection reads it.
async fn until_row(ledger: &Store, key: &str, what: &str, ok: impl Fn(EmailStatus, u32) -> bool) {
    let found = crate::support::wait_until(PEER, Duration::from_millis(20), || {
        let row = ledger.outbox_entry(key).expect("read").expect("row");
        let done = ok(row.status, row.attempts);
        async move { done }
    })
    .await;
    if let Err(e) = found {
        let row = ledger.outbox_entry(key).expect("read").expect("row");
        panic!(
            "{key}: {what}: {e}; row: {:?} {} {:?}",
            row.status, row.attempts, row.last_error
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_sends_its_batch_and_a_new_leader_never_repeats_it() {
    let server = postgres::shared();
    let db = server.create_database();
    let ledger = Store::connect(&pg(server.port(), &db)).expect("the test's connection");
    let smtp = SmtpServer::start().await;
    let smtp_gate = FaultProxy::tcp(proxy_to(smtp.port())).await;
    let db_gate = FaultProxy::tcp(proxy_to(server.port())).await;
    let (clock, hand) = Clock::manual(T0);

    // node-a leads, reaching the database through the gate.
    let store_a = Arc::new(Store::connect(&pg(db_gate.port(), &db)).expect("node-a connects"));
    let epoch_a = store_a
        .claim_lease("node-a", LEASE_A)
        .expect("claim")
        .expect("the lease is free")
        .epoch;
    let fence_a = Fence {
        holder: "node-a".into(),
        epoch: epoch_a,
    };
    store_a.set_fence(Some(fence_a.clone()));
    let a = Sender::start("node-a", store_a.clone(), smtp_gate.port(), clock.clone());
    a.role.send_replace(Role::Leader {
        epoch: u64::try_from(epoch_a).expect("epoch"),
    });

    // Its first email meets a refusing SMTP server and waits for a retry.
    smtp_gate.set(Fault::Down);
    let inc = incident("errors", T0);
    let first = email(&inc, Level::L1, PageEvent::Opened, 0);
    store_a
        .commit(
            std::slice::from_ref(&inc),
            std::slice::from_ref(&first),
            None,
            T0,
        )
        .expect("node-a commits");
    a.wake.notify_one();
    until_row(&ledger, &first.key, "one failed attempt", |s, n| {
        s == EmailStatus::Pending && n == 1
    })
    .await;
    assert_eq!(smtp.messages().len(), 0);

    // The database is cut off from node-a; the SMTP server is back; the retry comes due.
    db_gate.set(Fault::Down);
    smtp_gate.set(Fault::None);
    // node-a's pager had committed one more page its sender never read (the test commits it under
    // node-a's fence, on its own connection, while the lease is still valid).
    let missed = email(&inc, Level::L2, PageEvent::Escalated, 0);
    ledger.set_fence(Some(fence_a));
    ledger
        .commit(&[], std::slice::from_ref(&missed), None, T0)
        .expect("a commit under node-a's lease");
    ledger.set_fence(None);
    hand.advance(Duration::from_secs(3));
    a.wake.notify_one();
    let sent = smtp.wait_for_messages(1, PEER).await;
    assert_eq!(sent.len(), 1, "node-a sent its batch's email while cut off");
    assert_eq!(
        ledger
            .outbox_entry(&first.key)
            .expect("read")
            .expect("row")
            .status,
        EmailStatus::Pending,
        "the store could not be told"
    );

    // node-a's lease ends; node-b claims it once the database lets it go, and leads.
    a.role.send_replace(Role::Standby { leader: None });
    let store_b = Arc::new(Store::connect(&pg(server.port(), &db)).expect("node-b connects"));
    let claimed = crate::support::wait_until(PEER, Duration::from_millis(100), || {
        let got = store_b.claim_lease("node-b", Duration::from_secs(3600));
        async move { matches!(got, Ok(Some(_))) }
    })
    .await;
    claimed.expect("node-b claims the lapsed lease");
    let epoch_b = store_b
        .lease_holder()
        .expect("holder")
        .expect("a holder")
        .epoch;
    assert!(epoch_b > epoch_a, "a new holder, a new epoch");
    store_b.set_fence(Some(Fence {
        holder: "node-b".into(),
        epoch: epoch_b,
    }));
    let b = Sender::start("node-b", store_b.clone(), smtp.port(), clock.clone());
    b.role.send_replace(Role::Leader {
        epoch: u64::try_from(epoch_b).expect("epoch"),
    });

    // Its own page goes out at once; the earlier term's two rows wait for the hold.
    let own = email(&inc, Level::L1, PageEvent::Reminder, 1);
    store_b
        .commit(&[], std::slice::from_ref(&own), None, hand.now())
        .expect("node-b commits");
    b.wake.notify_one();
    until_row(&ledger, &own.key, "node-b's own email sent", |s, _| {
        s == EmailStatus::Sent
    })
    .await;
    for key in [&first.key, &missed.key] {
        assert_eq!(
            ledger.outbox_entry(key).expect("read").expect("row").status,
            EmailStatus::Pending,
            "{key} is held by node-b's new term"
        );
    }

    // node-a reaches the database again and records what it sent, though it no longer leads.
    db_gate.set(Fault::None);
    until_row(
        &ledger,
        &first.key,
        "node-a records its delivery",
        |s, _| s == EmailStatus::Sent,
    )
    .await;

    // The hold ends: node-b sends what node-a never had, and nothing node-a sent.
    hand.advance(HOLD);
    b.wake.notify_one();
    until_row(
        &ledger,
        &missed.key,
        "the earlier term's email, after the hold",
        |s, _| s == EmailStatus::Sent,
    )
    .await;
    assert_delivered_exactly_once(&ledger, &smtp.messages(), "after the handover");
    a.stop().await;
    b.stop().await;
}
