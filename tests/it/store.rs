//! The store on a real file and on a real PostgreSQL server: migrations, the one-transaction commit
//! and its dedup, the budget, what survives a reopen and a crash, windows and secrets. Each test body
//! runs on both backends ([`on_both!`]); what only a file has (its mode, WAL, a version-1 file) is
//! checked on SQLite alone. The last tests cut the PostgreSQL connection through a fault proxy.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use harven_watchdog::clock::Timestamp;
use harven_watchdog::config::{MaintenanceWindow, PostgresConfig};
use harven_watchdog::incident::{Incident, IncidentState, Level, Page, PageEvent};
use harven_watchdog::runbook::Severity;
use harven_watchdog::secret::Secret;
use harven_watchdog::store::{
    CommitOutcome, DigestSlot, EmailStatus, EndWindow, Fence, NewDigest, NewEmail, OutboxDepth,
    Store, StoreError, WindowEnd,
};

use crate::support::fault::{Endpoint, Fault, FaultProxy};
use crate::support::postgres::{self as pg_server, Kind, on_both};

pub const T0: Timestamp = Timestamp::from_unix_millis(1_795_000_000_000);
const MIN: Duration = Duration::from_secs(60);

/// An open major incident of `section`, opened at `at`.
pub fn incident(section: &str, at: Timestamp) -> Incident {
    let mut incident = Incident::open(section, Severity::Major, "errors.supabase_down", at);
    incident.symptoms = BTreeMap::from([("error_ratio".to_owned(), "12.4% > 5%".to_owned())]);
    incident
}

/// The email of page (`level`, `event`, `n`) of `inc`, with a small plain message.
pub fn email(inc: &Incident, level: Level, event: PageEvent, n: u32) -> NewEmail {
    let page = Page::new(inc, level, event, n, inc.opened_at);
    let message = format!(
        "From: watchdog@harven.ai\r\nTo: devops@harven.ai\r\nSubject: [Harven][{level}] {} {event} {n}\r\n\
         Message-ID: <{}@harven.ai>\r\n\r\n{event} {n}\r\n",
        inc.id,
        page.key.replace('/', ".")
    );
    NewEmail::for_page(
        &page,
        vec!["devops@harven.ai".to_owned()],
        message.into_bytes(),
    )
}

fn open(path: &Path) -> Store {
    Store::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// Where a test's data lives: a file in a temporary directory, or a fresh database of its own on
/// the shared PostgreSQL server (a reopen reconnects to the same one).
struct Place {
    kind: Kind,
    dir: tempfile::TempDir,
    dbname: String,
}

impl Place {
    fn new(kind: Kind) -> Self {
        let dbname = match kind {
            Kind::Sqlite => String::new(),
            Kind::Postgres => pg_server::shared().create_database(),
        };
        Self {
            kind,
            dir: tempfile::tempdir().unwrap(),
            dbname,
        }
    }

    /// The file (SQLite).
    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("watchdog.db")
    }

    /// A store on it (again): on PostgreSQL, fenced with a lease claimed for an hour, as the
    /// leader's (the same holder after a reopen, as a restarted leader renews its own lease).
    fn open(&self) -> Store {
        match self.kind {
            Kind::Sqlite => open(&self.path()),
            Kind::Postgres => {
                let store = Store::connect(&pg_config(pg_server::shared().port(), &self.dbname))
                    .unwrap_or_else(|e| panic!("connect to {}: {e}", self.dbname));
                let claim = store
                    .claim_lease("it", Duration::from_secs(3600))
                    .unwrap()
                    .expect("the test's own lease");
                store.set_fence(Some(Fence {
                    holder: "it".into(),
                    epoch: claim.epoch,
                }));
                store
            }
        }
    }

    /// Runs `sql` on the raw database (no watchdog code involved).
    fn raw(&self, sql: &str) {
        match self.kind {
            Kind::Sqlite => rusqlite::Connection::open(self.path())
                .unwrap()
                .execute_batch(sql)
                .unwrap(),
            Kind::Postgres => {
                pg_server::shared().psql(&self.dbname, sql);
            }
        }
    }
}

/// Settings for database `dbname` on 127.0.0.1:`port`, with the test server's password (as a
/// deployment's `password_file` gives it) and `timeout` for connects and statements.
pub fn pg_config_with(port: u16, dbname: &str, timeout: Duration) -> PostgresConfig {
    PostgresConfig {
        host: "127.0.0.1".into(),
        port,
        user: pg_server::USER.into(),
        dbname: dbname.into(),
        password: Some(Secret::new(pg_server::PASSWORD)),
        connect_timeout: timeout,
        statement_timeout: timeout,
        readers: 2,
        tls: harven_watchdog::config::PgTls::Off,
    }
}

fn pg_config(port: u16, dbname: &str) -> PostgresConfig {
    pg_config_with(port, dbname, Duration::from_secs(5))
}

fn status(store: &Store, key: &str) -> EmailStatus {
    store
        .outbox_entry(key)
        .expect("read the outbox")
        .unwrap_or_else(|| panic!("{key} is not in the outbox"))
        .status
}

on_both!(
    a_fresh_store_gets_the_schema_and_a_reopen_keeps_it,
    a_store_from_a_newer_watchdog_is_refused,
    commit_stores_incidents_and_emails_and_never_queues_a_key_twice,
    over_budget_emails_are_held_and_resolved_never_is,
    held_emails_are_replaced_by_one_digest_row,
    the_sender_bookkeeping_counts_attempts_and_schedules_retries,
    the_batch_puts_due_rows_first_and_a_hold_leaves_earlier_epochs_alone,
    each_replica_keeps_its_own_values_on_a_shared_store,
    the_latest_incident_of_each_section_survives_a_reopen,
    an_email_not_marked_sent_is_still_due_after_a_crash,
    maintenance_windows_and_secrets_are_kept,
    a_window_ended_early_keeps_its_row_with_who_ended_it,
    the_store_is_shared_across_threads,
    prune_forgets_only_what_can_never_be_paged_again,
);

fn a_fresh_store_gets_the_schema_and_a_reopen_keeps_it(kind: Kind) {
    let place = &Place::new(kind);
    let store = place.open();
    assert_eq!(store.schema_version().unwrap(), 3);
    let inc = incident("errors", T0);
    store.save_incidents(std::slice::from_ref(&inc)).unwrap();
    drop(store);
    let store = place.open();
    assert_eq!(
        store.schema_version().unwrap(),
        3,
        "reopening migrates nothing"
    );
    assert_eq!(store.incident(&inc.id).unwrap(), Some(inc));
}

/// What only the file has: its directories made, its mode, WAL.
#[test]
fn a_fresh_file_is_made_owner_only_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/data/watchdog.db");
    drop(open(&path));
    assert!(path.is_file(), "the file and its directories are created");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the store holds the ack-link key: owner only");
    }
    // The setting is on the file (checked through a second connection).
    let raw = rusqlite::Connection::open(&path).unwrap();
    let mode: String = raw
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

fn a_store_from_a_newer_watchdog_is_refused(kind: Kind) {
    let place = &Place::new(kind);
    drop(place.open());
    place.raw(match place.kind {
        Kind::Sqlite => "PRAGMA user_version = 99",
        Kind::Postgres => "UPDATE schema_version SET version = 99",
    });
    let err = match place.kind {
        Kind::Sqlite => Store::open(place.path()).unwrap_err(),
        Kind::Postgres => {
            Store::connect(&pg_config(pg_server::shared().port(), &place.dbname)).unwrap_err()
        }
    };
    assert!(
        matches!(
            err,
            StoreError::SchemaTooNew {
                found: 99,
                known: 3,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.metric_label(), "schema_too_new");
    assert!(err.to_string().contains("newer"), "{err}");
}

fn commit_stores_incidents_and_emails_and_never_queues_a_key_twice(kind: Kind) {
    let place = &Place::new(kind);
    let store = place.open();
    let mut inc = incident("errors", T0);
    let opened = email(&inc, Level::L1, PageEvent::Opened, 0);

    let out = store
        .commit(
            std::slice::from_ref(&inc),
            &[opened.clone(), opened.clone()],
            None,
            T0,
        )
        .unwrap();
    assert_eq!(
        out,
        CommitOutcome {
            queued: vec![opened.key.clone()],
            held: vec![],
            duplicates: vec![opened.key.clone()],
        },
        "the same key twice in one commit is stored once"
    );
    assert_eq!(store.incident(&inc.id).unwrap().as_ref(), Some(&inc));

    // The engine asks again (e.g. after a restart): nothing new, whatever the row's status.
    inc.note(T0 + MIN, "note", "again");
    let out = store
        .commit(
            std::slice::from_ref(&inc),
            std::slice::from_ref(&opened),
            None,
            T0 + MIN,
        )
        .unwrap();
    assert_eq!(out.duplicates, vec![opened.key.clone()]);
    assert!(out.queued.is_empty());
    assert_eq!(
        store.incident(&inc.id).unwrap().unwrap().timeline.len(),
        1,
        "the incident is still upserted"
    );
    assert!(store.mark_sent(&opened.key, T0 + MIN).unwrap());
    let out = store
        .commit(&[], std::slice::from_ref(&opened), None, T0 + 2 * MIN)
        .unwrap();
    assert_eq!(
        out.duplicates,
        vec![opened.key.clone()],
        "sent keys stay in the ledger"
    );
    assert_eq!(store.outbox_for(&inc.id).unwrap().len(), 1);
    let row = store.outbox_entry(&opened.key).unwrap().unwrap();
    assert_eq!(row.status, EmailStatus::Sent);
    assert_eq!(row.message, opened.message, "the bytes are stored whole");
    assert_eq!(row.recipients, opened.recipients);
    assert_eq!((row.level.as_str(), row.event.as_str()), ("L1", "opened"));
}

fn over_budget_emails_are_held_and_resolved_never_is(kind: Kind) {
    let place = &Place::new(kind);
    let store = place.open();
    let inc = incident("latency", T0);
    let other = incident("errors", T0);
    let budget = Some(2);
    let e1 = email(&inc, Level::L1, PageEvent::Opened, 0);
    let e2 = email(&inc, Level::L1, PageEvent::Reminder, 1);
    let e3 = email(&inc, Level::L1, PageEvent::Reminder, 2);
    store
        .commit(&[], std::slice::from_ref(&e1), budget, T0)
        .unwrap();
    let out = store
        .commit(&[], &[e2.clone(), e3.clone()], budget, T0 + 10 * MIN)
        .unwrap();
    assert_eq!(out.queued, vec![e2.key.clone()]);
    assert_eq!(out.held, vec![e3.key.clone()]);
    assert_eq!(status(&store, &e3.key), EmailStatus::Held);

    // Once an incident has held emails, later ones join them (the digest keeps their order),
    // but the all-clear always goes out at once; other incidents have their own budget.
    let e4 = email(&inc, Level::L2, PageEvent::Escalated, 0);
    let resolved = email(&inc, Level::L1, PageEvent::Resolved, 0);
    let elsewhere = email(&other, Level::L1, PageEvent::Opened, 0);
    let out = store
        .commit(
            &[],
            &[e4.clone(), resolved.clone(), elsewhere.clone()],
            budget,
            T0 + 20 * MIN,
        )
        .unwrap();
    assert_eq!(out.held, vec![e4.key.clone()]);
    assert_eq!(
        out.queued,
        vec![resolved.key.clone(), elsewhere.key.clone()]
    );
    assert_eq!(
        store.outbox_depth().unwrap(),
        OutboxDepth {
            pending: 4,
            held: 2
        }
    );

    // The rolling hour: 3 counted emails (T0, T0+10m, T0+20m); with a budget of 2 the digest
    // may go when the second newest (T0+10m) leaves the window.
    let slots = store.digest_slots(T0 + 30 * MIN, budget).unwrap();
    assert_eq!(
        slots,
        vec![DigestSlot {
            incident: inc.id.clone(),
            at: T0 + 70 * MIN
        }]
    );
    let slots = store.digest_slots(T0 + 70 * MIN, budget).unwrap();
    assert_eq!(slots[0].at, T0 + 70 * MIN, "free at the slot itself");
    assert_eq!(
        store.digest_slots(T0, None).unwrap()[0].at,
        T0,
        "no budget: at once"
    );
    assert_eq!(
        store
            .held_for(&inc.id)
            .unwrap()
            .iter()
            .map(|e| e.key.clone())
            .collect::<Vec<_>>(),
        vec![e3.key.clone(), e4.key.clone()]
    );
}

fn held_emails_are_replaced_by_one_digest_row(kind: Kind) {
    let place = &Place::new(kind);
    let store = place.open();
    let inc = incident("latency", T0);
    let emails: Vec<NewEmail> = (0..3)
        .map(|n| email(&inc, Level::L1, PageEvent::Reminder, n))
        .collect();
    let out = store.commit(&[], &emails, Some(1), T0).unwrap();
    assert_eq!(out.held.len(), 2);
    let key = store.next_digest_key(&inc.id).unwrap();
    assert_eq!(key, format!("{}/digest/1", inc.id));
    let digest = NewDigest {
        key: key.clone(),
        incident: inc.id.clone(),
        level: Level::L1,
        recipients: vec!["devops@harven.ai".to_owned()],
        message: b"Subject: digest\r\n\r\nboth\r\n".to_vec(),
        replaces: out.held.clone(),
    };
    let now = T0 + 61 * MIN;
    assert!(store.release_held(&digest, now).unwrap());
    for k in &out.held {
        let row = store.outbox_entry(k).unwrap().unwrap();
        assert_eq!(row.status, EmailStatus::Digested);
        assert_eq!(row.digest.as_deref(), Some(key.as_str()));
    }
    let row = store.outbox_entry(&key).unwrap().unwrap();
    assert_eq!(
        (row.status, row.event.as_str()),
        (EmailStatus::Pending, "digest")
    );
    assert_eq!(row.next_attempt_at, Some(now));
    assert!(store.held_for(&inc.id).unwrap().is_empty());
    assert!(store.digest_slots(now, Some(1)).unwrap().is_empty());
    assert!(
        !store.release_held(&digest, now).unwrap(),
        "rows no longer held: nothing changes"
    );
    assert_eq!(
        store.next_digest_key(&inc.id).unwrap(),
        format!("{}/digest/2", inc.id)
    );
    // A digested key is in the ledger like any other.
    let again = store.commit(&[], &emails[1..], Some(1), now).unwrap();
    assert_eq!(again.duplicates.len(), 2);
}

fn the_sender_bookkeeping_counts_attempts_and_schedules_retries(kind: Kind) {
    let place = &Place::new(kind);
    let store = place.open();
    let inc = incident("errors", T0);
    let a = email(&inc, Level::L1, PageEvent::Opened, 0);
    let b = email(&inc, Level::L2, PageEvent::Escalated, 0);
    store
        .commit(&[], &[a.clone(), b.clone()], None, T0)
        .unwrap();
    let due: Vec<String> = store
        .due(T0, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(due, vec![a.key.clone(), b.key.clone()], "oldest first");
    assert!(
        store.due(T0 - MIN, 10).unwrap().is_empty(),
        "not before it was created"
    );
    assert_eq!(store.due(T0, 1).unwrap().len(), 1, "the limit holds");

    assert!(
        store
            .mark_retry(&a.key, T0 + 2 * MIN, "connection refused")
            .unwrap()
    );
    assert_eq!(store.next_due().unwrap(), Some(T0), "b is still due now");
    assert!(store.mark_failed(&b.key, T0, "550 no such user").unwrap());
    assert_eq!(store.next_due().unwrap(), Some(T0 + 2 * MIN));
    assert!(store.due(T0 + MIN, 10).unwrap().is_empty());
    let row = store.outbox_entry(&a.key).unwrap().unwrap();
    assert_eq!(row.attempts, 1);
    assert_eq!(row.last_error.as_deref(), Some("connection refused"));
    let row = store.outbox_entry(&b.key).unwrap().unwrap();
    assert_eq!((row.status, row.attempts), (EmailStatus::Failed, 1));
    assert_eq!(row.failed_at, Some(T0));
    assert!(
        !store.mark_sent(&b.key, T0).unwrap(),
        "a failed email is never sent"
    );

    assert!(store.mark_sent(&a.key, T0 + 2 * MIN).unwrap());
    let row = store.outbox_entry(&a.key).unwrap().unwrap();
    assert_eq!((row.status, row.attempts), (EmailStatus::Sent, 2));
    assert_eq!(row.sent_at, Some(T0 + 2 * MIN));
    assert_eq!(store.next_due().unwrap(), None);
    assert_eq!(store.outbox_depth().unwrap().total(), 0);

    let long = "x".repeat(10_000);
    let c = email(&inc, Level::L1, PageEvent::Reminder, 1);
    store
        .commit(&[], std::slice::from_ref(&c), None, T0)
        .unwrap();
    store.mark_retry(&c.key, T0, &long).unwrap();
    let kept = store
        .outbox_entry(&c.key)
        .unwrap()
        .unwrap()
        .last_error
        .unwrap();
    assert!(kept.chars().count() <= 2001, "errors are bounded per row");
}

/// A value each replica keeps for itself (its alert inbox, its sessions) is named after the replica
/// on a shared store, so two replicas never overwrite each other's; a single node's file keeps the
/// plain name (what it always had).
fn each_replica_keeps_its_own_values_on_a_shared_store(kind: Kind) {
    let place = &Place::new(kind);
    let (a, b) = (place.open(), place.open());
    a.set_replica("node-a");
    b.set_replica("node-b");
    a.put_value(&a.own_name("web-sessions"), b"a's").unwrap();
    b.put_value(&b.own_name("web-sessions"), b"b's").unwrap();
    match kind {
        Kind::Sqlite => {
            assert_eq!(a.own_name("web-sessions"), "web-sessions");
            assert_eq!(
                a.value("web-sessions").unwrap().as_deref(),
                Some(&b"b's"[..])
            );
        }
        Kind::Postgres => {
            assert_eq!(a.own_name("web-sessions"), "web-sessions@node-a");
            let again = place.open();
            again.set_replica("node-a");
            assert_eq!(
                again
                    .value(&again.own_name("web-sessions"))
                    .unwrap()
                    .as_deref(),
                Some(&b"a's"[..]),
                "node-a reads back its own after a restart"
            );
            assert_eq!(
                b.value(&b.own_name("web-sessions")).unwrap().as_deref(),
                Some(&b"b's"[..])
            );
        }
    }
}

/// The sender's batch (due rows first, then the rest), the epoch each row is queued under (the
/// fence's on PostgreSQL, 0 on SQLite), a hold of earlier epochs, and a delivery recorded unfenced.
fn the_batch_puts_due_rows_first_and_a_hold_leaves_earlier_epochs_alone(kind: Kind) {
    let place = &Place::new(kind);
    let store = place.open();
    let inc = incident("errors", T0);
    let a = email(&inc, Level::L1, PageEvent::Opened, 0);
    let b = email(&inc, Level::L2, PageEvent::Escalated, 0);
    let c = email(&inc, Level::L1, PageEvent::Reminder, 1);
    store
        .commit(&[], &[a.clone(), b.clone(), c.clone()], None, T0)
        .unwrap();
    assert!(
        store
            .mark_retry(&a.key, T0 + 2 * MIN, "421 try later")
            .unwrap()
    );
    let keys = |rows: Vec<harven_watchdog::store::OutboxEntry>| -> Vec<String> {
        rows.into_iter().map(|e| e.key).collect()
    };
    let batch = store.batch(T0, 0, 10).unwrap();
    let epoch = batch[0].epoch;
    match kind {
        Kind::Sqlite => assert_eq!(epoch, 0, "a single node stamps no epoch"),
        Kind::Postgres => assert!(epoch >= 1, "the fence's epoch, {epoch}"),
    }
    assert!(batch.iter().all(|e| e.epoch == epoch));
    assert_eq!(
        keys(batch),
        [b.key.as_str(), &c.key, &a.key],
        "the due rows first, oldest first, then the one backing off"
    );
    assert_eq!(
        keys(store.batch(T0, 0, 2).unwrap()),
        [b.key.as_str(), &c.key]
    );
    assert_eq!(keys(store.due(T0, 10).unwrap()), [b.key.as_str(), &c.key]);

    // A hold of the rows queued before epoch + 1: nothing is due, and nothing comes due.
    let held = store.batch(T0, epoch + 1, 10).unwrap();
    assert_eq!(held.len(), 3, "the batch still holds them");
    assert!(held.iter().all(|e| !e.is_due(T0 + 5 * MIN, epoch + 1)));
    assert_eq!(store.next_due_from(epoch + 1).unwrap(), None);
    assert_eq!(store.next_due_from(epoch).unwrap(), Some(T0));

    // A delivery is recorded without the fence (a former leader's), once; a failed row the old
    // leader had in fact delivered turns sent.
    store.set_fence(None);
    assert!(store.record_sent(&b.key, T0 + MIN).unwrap());
    assert!(
        !store.record_sent(&b.key, T0 + MIN).unwrap(),
        "already sent"
    );
    let row = store.outbox_entry(&b.key).unwrap().unwrap();
    assert_eq!(
        (row.status, row.sent_at),
        (EmailStatus::Sent, Some(T0 + MIN))
    );
    if kind == Kind::Postgres {
        assert!(
            matches!(store.mark_sent(&c.key, T0), Err(StoreError::Fenced)),
            "the sender's own marks stay fenced"
        );
    }
    let store = place.open();
    assert!(store.mark_failed(&c.key, T0, "550 no").unwrap());
    assert!(store.record_sent(&c.key, T0 + MIN).unwrap());
    assert_eq!(status(&store, &c.key), EmailStatus::Sent);
}

fn the_latest_incident_of_each_section_survives_a_reopen(kind: Kind) {
    let place = &Place::new(kind);
    let store = place.open();
    let mut old = incident("latency", T0);
    old.state = IncidentState::Resolved;
    old.resolved_at = Some(T0 + 10 * MIN);
    let newer = incident("latency", T0 + 60 * MIN);
    let errors = incident("errors", T0 + 5 * MIN);
    store
        .save_incidents(&[newer.clone(), old.clone(), errors.clone()])
        .unwrap();
    drop(store);

    let store = place.open();
    assert_eq!(
        store.latest_per_section().unwrap(),
        vec![errors.clone(), newer.clone()]
    );
    assert_eq!(
        store.recent_incidents(2).unwrap(),
        vec![newer.clone(), errors.clone()]
    );
    assert_eq!(store.recent_incidents(10).unwrap().len(), 3);
    assert_eq!(store.incident(&old.id).unwrap(), Some(old));
    assert_eq!(store.incident("nope").unwrap(), None);
}

fn an_email_not_marked_sent_is_still_due_after_a_crash(kind: Kind) {
    let place = &Place::new(kind);
    let store = place.open();
    let inc = incident("database", T0);
    let e = email(&inc, Level::L1, PageEvent::Opened, 0);
    store
        .commit(
            std::slice::from_ref(&inc),
            std::slice::from_ref(&e),
            None,
            T0,
        )
        .unwrap();
    // A crash: the connection is never closed (SQLite: no checkpoint, the WAL left as it is).
    std::mem::forget(store);

    let store = place.open();
    let due = store.due(T0 + MIN, 10).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].key, e.key);
    assert_eq!(due[0].attempts, 0);
    assert_eq!(store.incident(&inc.id).unwrap(), Some(inc));
}

fn maintenance_windows_and_secrets_are_kept(kind: Kind) {
    let place = &Place::new(kind);
    let store = place.open();
    let w = MaintenanceWindow {
        sections: vec!["database".to_owned()],
        starts: T0,
        ends: T0 + 60 * MIN,
        reason: "Supabase upgrade".to_owned(),
    };
    let id = store.add_window(&w, "api:devops", T0 - MIN).unwrap();
    let key = store.get_or_create_secret("ack_hmac").unwrap();
    assert_eq!(key.len(), 32);
    assert_ne!(key, vec![0u8; 32]);
    assert_eq!(store.get_or_create_secret("ack_hmac").unwrap(), key);
    assert_ne!(store.get_or_create_secret("other").unwrap(), key);
    drop(store);

    let store = place.open();
    let windows = store.windows().unwrap();
    assert_eq!(windows.len(), 1);
    assert_eq!(windows[0].id, id);
    assert_eq!(windows[0].window, w);
    assert_eq!(windows[0].created_by, "api:devops");
    assert_eq!(windows[0].created_at, T0 - MIN);
    assert_eq!(
        store.get_or_create_secret("ack_hmac").unwrap(),
        key,
        "the same key after a restart: links already sent keep working"
    );
}

fn a_window_ended_early_keeps_its_row_with_who_ended_it(kind: Kind) {
    let place = &Place::new(kind);
    let store = place.open();
    let planned = MaintenanceWindow {
        sections: vec!["latency".to_owned()],
        starts: T0,
        ends: T0 + 120 * MIN,
        reason: "deploy".to_owned(),
    };
    let id = store.add_window(&planned, "Ana", T0).unwrap();
    assert_eq!(
        store.end_window(id + 1, "Bob", T0).unwrap(),
        EndWindow::NotFound
    );

    let EndWindow::Ended(ended) = store.end_window(id, "Bob", T0 + 30 * MIN).unwrap() else {
        panic!("not ended");
    };
    let end = WindowEnd {
        at: T0 + 30 * MIN,
        by: "Bob".to_owned(),
        planned_ends: T0 + 120 * MIN,
    };
    assert_eq!(ended.window.ends, T0 + 30 * MIN, "in force until now");
    assert_eq!(ended.ended, Some(end.clone()));
    assert_eq!(store.windows().unwrap(), vec![ended.clone()]);
    assert_eq!(
        store.end_window(id, "Carla", T0 + 31 * MIN).unwrap(),
        EndWindow::AlreadyOver(ended.clone()),
        "ending it again changes nothing"
    );
    drop(store);
    assert_eq!(place.open().windows().unwrap(), vec![ended]);

    // A window already over as planned is not ended again; one not started yet is cancelled.
    let store = place.open();
    let past = store.add_window(&planned, "Ana", T0).unwrap();
    assert!(matches!(
        store.end_window(past, "Bob", T0 + 120 * MIN).unwrap(),
        EndWindow::AlreadyOver(w) if w.ended.is_none()
    ));
    let later = MaintenanceWindow {
        starts: T0 + 60 * MIN,
        ..planned
    };
    let future = store.add_window(&later, "Ana", T0).unwrap();
    let EndWindow::Ended(cancelled) = store.end_window(future, "Bob", T0).unwrap() else {
        panic!("not ended");
    };
    assert!(
        cancelled.window.ends < cancelled.window.starts,
        "covers nothing"
    );
}

#[test]
fn a_version_1_file_is_migrated_and_keeps_its_windows_and_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    {
        // The `windows` and `outbox` tables as version 1 made them, with a row each.
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch(
            "CREATE TABLE windows (
                id INTEGER PRIMARY KEY AUTOINCREMENT, sections TEXT NOT NULL,
                starts INTEGER NOT NULL, ends INTEGER NOT NULL, reason TEXT NOT NULL,
                created_by TEXT NOT NULL, created_at INTEGER NOT NULL);
             INSERT INTO windows (sections, starts, ends, reason, created_by, created_at)
                VALUES ('[\"errors\"]', 1795000000000, 1795003600000, 'deploy', 'Ana', 1795000000000);
             CREATE TABLE outbox (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE,
                incident TEXT NOT NULL, level TEXT NOT NULL, event TEXT NOT NULL,
                recipients TEXT NOT NULL, message BLOB NOT NULL, created_at INTEGER NOT NULL,
                status TEXT NOT NULL
                    CHECK (status IN ('pending', 'sent', 'failed', 'held', 'digested')),
                attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER, last_error TEXT,
                sent_at INTEGER, failed_at INTEGER, digest TEXT);
             INSERT INTO outbox (key, incident, level, event, recipients, message, created_at,
                    status, next_attempt_at)
                VALUES ('errors-1/L1/opened/0', 'errors-1', 'L1', 'opened', '[\"devops@harven.ai\"]',
                    X'00', 1795000000000, 'pending', 1795000000000);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let store = open(&path);
    assert_eq!(store.schema_version().unwrap(), 3);
    let due = store.due(T0, 10).unwrap();
    assert_eq!(due.len(), 1, "a pending email of version 1 is still due");
    assert_eq!(due[0].epoch, 0, "queued before epochs: 0");
    let windows = store.windows().unwrap();
    assert_eq!(windows.len(), 1);
    assert_eq!(windows[0].window.ends, T0 + 60 * MIN);
    assert_eq!(windows[0].ended, None);
    assert!(matches!(
        store.end_window(windows[0].id, "Bob", T0).unwrap(),
        EndWindow::Ended(_)
    ));
}

fn the_store_is_shared_across_threads(kind: Kind) {
    let place = &Place::new(kind);
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
    let store = std::sync::Arc::new(place.open());
    let inc = incident("auth", T0);
    let handles: Vec<_> = (0..4)
        .map(|n| {
            let store = store.clone();
            let e = email(&inc, Level::L1, PageEvent::Reminder, n % 2);
            std::thread::spawn(move || store.commit(&[], &[e], None, T0).unwrap())
        })
        .collect();
    let outcomes: Vec<CommitOutcome> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let queued: usize = outcomes.iter().map(|o| o.queued.len()).sum();
    let dups: usize = outcomes.iter().map(|o| o.duplicates.len()).sum();
    assert_eq!((queued, dups), (2, 2), "two keys, each queued exactly once");
}

/// `inc` resolved at `at`.
fn resolved(mut inc: Incident, at: Timestamp) -> Incident {
    inc.state = IncidentState::Resolved;
    inc.resolved_at = Some(at);
    inc
}

/// Retention forgets an incident resolved before the cutoff with all its (final) emails, keeps one
/// resolved after it and an open one with its old sent email (it can still page), gives up an email
/// pending since before the cutoff, drops ended windows, and does nothing the second time.
fn prune_forgets_only_what_can_never_be_paged_again(kind: Kind) {
    let place = &Place::new(kind);
    let store = place.open();
    let retention = Duration::from_secs(24 * 60 * 60);
    let old = incident("latency", T0);
    let recent = incident("errors", T0);
    let open_one = incident("redis", T0);
    let old_keys = [
        email(&old, Level::L1, PageEvent::Opened, 0),
        email(&old, Level::L1, PageEvent::Resolved, 0),
    ];
    let open_sent = email(&open_one, Level::L1, PageEvent::Opened, 0);
    let open_pending = email(&open_one, Level::L2, PageEvent::Escalated, 0);
    let mut all = old_keys.to_vec();
    all.extend([
        email(&recent, Level::L1, PageEvent::Opened, 0),
        open_sent.clone(),
        open_pending.clone(),
    ]);
    store
        .commit(
            &[old.clone(), recent.clone(), open_one.clone()],
            &all,
            None,
            T0,
        )
        .unwrap();
    for e in &all {
        if e.key != open_pending.key {
            assert!(store.mark_sent(&e.key, T0 + MIN).unwrap());
        }
    }
    store
        .save_incidents(&[
            resolved(old.clone(), T0 + 10 * MIN),
            resolved(recent.clone(), T0 + 23 * 60 * MIN),
        ])
        .unwrap();
    let window = MaintenanceWindow {
        sections: vec![],
        starts: T0,
        ends: T0 + 5 * MIN,
        reason: "upgrade".into(),
    };
    store.add_window(&window, "ana", T0).unwrap();
    // Planned for a year, ended early at once: it goes by when it really ended.
    let long = MaintenanceWindow {
        ends: T0 + 365 * 24 * 60 * MIN,
        reason: "migration".into(),
        ..window.clone()
    };
    let long_id = store.add_window(&long, "ana", T0).unwrap();
    assert!(matches!(
        store.end_window(long_id, "bob", T0 + MIN).unwrap(),
        EndWindow::Ended(_)
    ));

    let now = T0 + 10 * MIN + retention + MIN;
    let pruned = store.prune(now, retention).unwrap();
    assert_eq!(
        (
            pruned.expired,
            pruned.emails,
            pruned.incidents,
            pruned.windows
        ),
        (1, 2, 1, 2),
        "{pruned:?}"
    );
    assert!(store.incident(&old.id).unwrap().is_none());
    for e in &old_keys {
        assert!(store.outbox_entry(&e.key).unwrap().is_none(), "{}", e.key);
    }
    assert!(store.incident(&recent.id).unwrap().is_some());
    assert!(store.incident(&open_one.id).unwrap().is_some());
    assert_eq!(status(&store, &open_sent.key), EmailStatus::Sent);
    let expired = store.outbox_entry(&open_pending.key).unwrap().unwrap();
    assert_eq!(expired.status, EmailStatus::Failed);
    assert!(
        expired
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("retention")),
        "{expired:?}"
    );
    assert_eq!(store.outbox_depth().unwrap(), OutboxDepth::default());
    assert!(store.windows().unwrap().is_empty());
    assert!(store.prune(now, retention).unwrap().is_empty());
}

/// The longest a call may take while the database is cut: a connect or a statement past its
/// timeout (1 s here), the client's grace for a hung network, and slack for a loaded machine.
const CUT_BOUND: Duration = Duration::from_secs(5);

/// PostgreSQL unreachable (the proxy closed) or hung (it accepts and never answers): every call fails
/// fast with `unavailable`, never hangs past its timeouts, never panics, never names the password;
/// once the database is back the store reconnects by itself and nothing committed is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_database_fails_calls_fast_and_the_store_reconnects_when_it_heals() {
    let server = tokio::task::spawn_blocking(pg_server::shared)
        .await
        .unwrap();
    let dbname = tokio::task::spawn_blocking(|| pg_server::shared().create_database())
        .await
        .unwrap();
    let proxy = FaultProxy::tcp(Endpoint::Tcp(([127, 0, 0, 1], server.port()).into())).await;
    let config = pg_config_with(proxy.port(), &dbname, Duration::from_secs(1));
    let store = std::sync::Arc::new(
        tokio::task::spawn_blocking(move || {
            let store = Store::connect(&config)?;
            let claim = store.claim_lease("it", Duration::from_secs(3600))?;
            store.set_fence(claim.map(|c| Fence {
                holder: "it".into(),
                epoch: c.epoch,
            }));
            Ok::<_, StoreError>(store)
        })
        .await
        .unwrap()
        .expect("connect through the proxy"),
    );
    let kept = incident("database", T0);
    let first = email(&kept, Level::L1, PageEvent::Opened, 0);

    // One call of each path (the pager's commit, a reader's read, the sender's read), timed.
    let round = |n: u32| {
        let store = std::sync::Arc::clone(&store);
        let (inc, mail) = (kept.clone(), first.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                let mut results = Vec::new();
                for what in ["commit", "incident", "outbox_depth"] {
                    let started = std::time::Instant::now();
                    let result = match what {
                        "commit" => store
                            .commit(
                                std::slice::from_ref(&inc),
                                std::slice::from_ref(&mail),
                                None,
                                T0,
                            )
                            .map(|_| ()),
                        "incident" => store.incident(&inc.id).map(|_| ()),
                        _ => store.outbox_depth().map(|_| ()),
                    };
                    results.push((format!("{what} #{n}"), result, started.elapsed()));
                }
                results
            })
            .await
            .expect("no store call panics")
        }
    };
    for (what, result, _) in round(0).await {
        result.unwrap_or_else(|e| panic!("{what} through a healthy proxy: {e}"));
    }

    for fault in [Fault::Down, Fault::Hang] {
        proxy.set(fault);
        for n in 1..=3 {
            for (what, result, took) in round(n).await {
                let err = result.expect_err(&format!("{what} under {fault:?} must fail"));
                assert_eq!(
                    err.metric_label(),
                    "unavailable",
                    "{what} under {fault:?}: {err}"
                );
                assert!(
                    took < CUT_BOUND,
                    "{what} under {fault:?} took {took:?}: {err}"
                );
                let shown = format!("{err} {err:?}");
                assert!(!shown.contains(pg_server::PASSWORD), "{shown}");
            }
        }
    }

    // Healed: within the reconnect backoff, every path works again and the data is all there.
    proxy.set(Fault::None);
    let started = std::time::Instant::now();
    loop {
        let results = round(99).await;
        if results.iter().all(|(_, r, _)| r.is_ok()) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the store never reconnected: {:?}",
            results
                .iter()
                .map(|(w, r, _)| (w, r.as_ref().err().map(ToString::to_string)))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let check = std::sync::Arc::clone(&store);
    let (row, again) = tokio::task::spawn_blocking(move || {
        (
            check.outbox_entry(&first.key).unwrap(),
            check
                .commit(&[], std::slice::from_ref(&first), None, T0)
                .unwrap(),
        )
    })
    .await
    .unwrap();
    assert_eq!(row.map(|r| r.status), Some(EmailStatus::Pending));
    assert_eq!(
        again.duplicates.len(),
        1,
        "the key committed before the cut is in the ledger"
    );
    assert!(proxy.accepted() > 1, "the store went through the proxy");
}

/// `sslmode=verify-full`: the store speaks TLS to a real PostgreSQL that has it, checks its
/// certificate against `store.ca_file` (and the name, 127.0.0.1), and never falls back to
/// plaintext: without the CA, or against a server without TLS, it cannot connect, and says why.
#[test]
fn tls_to_postgresql_checks_the_certificate_and_never_falls_back_to_plaintext() {
    use harven_watchdog::config::PgTls;

    let ca = crate::support::smtp::TestCa::generate();
    let server = pg_server::PgServer::start_tls(&ca.leaf_pem(), &ca.leaf_key());
    let db = server.create_database();
    let verify = |port: u16, dbname: &str, ca_file: Option<std::path::PathBuf>| PostgresConfig {
        tls: PgTls::Verify { ca_file },
        ..pg_config_with(port, dbname, Duration::from_secs(5))
    };

    let store = Store::connect(&verify(server.port(), &db, Some(ca.ca_pem())))
        .unwrap_or_else(|e| panic!("TLS with the test CA: {e}"));
    assert!(
        store
            .claim_lease("it", Duration::from_secs(60))
            .unwrap()
            .is_some(),
        "the store works over TLS"
    );
    let encrypted = server.psql(
        &db,
        "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid)
         WHERE application_name = 'harven-watchdog' AND ssl",
    );
    assert_ne!(encrypted, "0", "the watchdog's session is encrypted");
    let plain = server.psql(
        &db,
        "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid)
         WHERE application_name = 'harven-watchdog' AND NOT ssl",
    );
    assert_eq!(plain, "0", "no session of the watchdog in plaintext");
    drop(store);

    // The system's roots alone do not know the test CA: refused, saying why.
    let err = Store::connect(&verify(server.port(), &db, None)).expect_err("an unknown issuer");
    let text = err.to_string();
    assert_eq!(err.metric_label(), "unavailable", "{text}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    eprintln!("without the CA: {text}");

    // A server without TLS (the shared one): no silent plaintext.
    let plain_server = pg_server::shared();
    let plain_db = plain_server.create_database();
    let err = Store::connect(&verify(plain_server.port(), &plain_db, Some(ca.ca_pem())))
        .expect_err("a server without TLS");
    let text = err.to_string();
    assert!(text.contains("TLS"), "{text}");
    eprintln!("a server without TLS: {text}");
    assert!(!text.contains(pg_server::PASSWORD), "{text}");
}
