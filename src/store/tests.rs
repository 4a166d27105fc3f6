//! The store's two paths: reads on the readers never wait for the writer, and the writer never waits
//! for reads. Each test pins one thread where a single shared connection would deadlock, so a
//! regression fails (after [`STUCK`]) instead of merely being slower; nothing here times anything.
//!
//! Every test runs on both backends ([`on_both!`]): the SQLite file and a real PostgreSQL server
//! (one per test binary, a fresh database per test). The lease and fencing tests are in `lease`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use super::*;
use crate::incident::{Level, Page, PageEvent};
use crate::runbook::Severity;

#[path = "../../tests/it/support/postgres.rs"]
pub(super) mod pg_server;

mod lease;

use pg_server::{Kind, on_both};

/// Where a test's data lives: the file's temporary directory, or its own database on the shared
/// PostgreSQL server. [`Place::open`] opens (or reopens) a store on it.
pub(super) struct Place {
    kind: Kind,
    dir: tempfile::TempDir,
    dbname: String,
}

impl Place {
    pub(super) fn new(kind: Kind) -> Self {
        let dbname = match kind {
            Kind::Sqlite => String::new(),
            Kind::Postgres => pg_server::shared().create_database(),
        };
        Self {
            kind,
            dir: tempfile::tempdir().expect("tempdir"),
            dbname,
        }
    }

    /// The connection settings of this test's database (tight timeouts: a test fails fast).
    pub(super) fn pg_config(&self) -> PostgresConfig {
        pg_config(pg_server::shared().port(), &self.dbname)
    }

    /// A store on it, unfenced.
    pub(super) fn open_bare(&self) -> Store {
        match self.kind {
            Kind::Sqlite => Store::open(self.dir.path().join("watchdog.db")).expect("open"),
            Kind::Postgres => Store::connect(&self.pg_config()).expect("connect"),
        }
    }

    /// A store on it whose pager writes pass: on PostgreSQL the lease is claimed for an hour, by
    /// another `Store` (so the test's own metrics count only its calls), and the fence set.
    pub(super) fn open(&self) -> Store {
        let store = self.open_bare();
        if self.kind == Kind::Postgres {
            let claim = self
                .open_bare()
                .claim_lease("test", Duration::from_secs(3600))
                .expect("claim")
                .expect("the lease is free");
            store.set_fence(Some(Fence {
                holder: "test".into(),
                epoch: claim.epoch,
            }));
        }
        store
    }
}

/// Settings for database `dbname` on the test server at `port`, with [`READERS`] readers.
pub(super) fn pg_config(port: u16, dbname: &str) -> PostgresConfig {
    PostgresConfig {
        host: "127.0.0.1".into(),
        port,
        user: pg_server::USER.into(),
        dbname: dbname.into(),
        password: Some(crate::secret::Secret::new(pg_server::PASSWORD)),
        connect_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
        readers: READERS,
        tls: crate::config::PgTls::Off,
    }
}

/// How long a test waits for another thread before calling it stuck. Not a latency bound: every wait
/// here either ends in milliseconds or never (a read and a write waiting for each other).
const STUCK: Duration = Duration::from_secs(60);

const T0: Timestamp = Timestamp::from_unix_millis(1_795_000_000_000);

/// An open major incident of `section`, opened at `at`, with a few timeline entries.
fn incident(section: &str, at: Timestamp) -> Incident {
    let mut incident = Incident::open(section, Severity::Major, "unknown", at);
    incident.symptoms = BTreeMap::from([("latency.p95_high".to_owned(), "4.2 s > 3 s".to_owned())]);
    incident.timeline = (0..20)
        .map(|i| crate::incident::TimelineEntry {
            at,
            kind: "note".to_owned(),
            text: format!("entry {i}"),
            msg: None,
        })
        .collect();
    incident
}

/// The L2 escalation email of `inc`, with a `size`-byte message.
fn escalation(inc: &Incident, size: usize) -> NewEmail {
    let page = Page::new(inc, Level::L2, PageEvent::Escalated, 0, inc.opened_at);
    NewEmail::for_page(
        &page,
        vec!["techlead@harven.ai".to_owned()],
        vec![b'x'; size],
    )
}

/// A store holding `count` incidents, an hour apart before [`T0`].
fn seeded(kind: Kind, count: u64) -> (Place, Arc<Store>) {
    let place = Place::new(kind);
    let store = place.open();
    let incidents: Vec<Incident> = (1..=count)
        .map(|n| incident("latency", T0 - Duration::from_secs(3600 * n)))
        .collect();
    store.save_incidents(&incidents).expect("seed");
    (place, Arc::new(store))
}

/// Runs `f` on a thread of its own and returns its result, or panics naming `what` when it has not
/// returned after [`STUCK`] (the thread is left behind, blocked).
fn on_thread<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(STUCK)
        .unwrap_or_else(|e| panic!("{what}: stuck ({e}): it waited for something that never ends"))
}

/// A read that stops midway: in one read transaction (SQLite's WAL snapshot, PostgreSQL's
/// `REPEATABLE READ`), it counts the incidents, then waits for its release before counting again.
struct HeldRead {
    release: mpsc::Sender<()>,
    /// What the second count found, once released.
    rows: mpsc::Receiver<Result<i64>>,
}

impl HeldRead {
    /// Starts the read on a thread of its own; returns once it holds a reader mid-iteration.
    fn start(store: &Arc<Store>) -> Self {
        let (holding_tx, holding) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let (rows_tx, rows) = mpsc::channel();
        let store = Arc::clone(store);
        thread::spawn(move || {
            let counted = store.read(|db| {
                db.batch(match db.dialect() {
                    sql::Dialect::Sqlite => "BEGIN",
                    sql::Dialect::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ",
                })?;
                let count = "SELECT COUNT(*) FROM incidents";
                db.query_value::<i64>(count, &[])?;
                holding_tx.send(()).expect("the test waits");
                // Dropped sender (the test failed): finish rather than hang.
                let _ = release_rx.recv_timeout(STUCK);
                let n = db.query_value(count, &[]);
                db.batch("COMMIT")?;
                n
            });
            let _ = rows_tx.send(counted);
        });
        holding
            .recv_timeout(STUCK)
            .expect("the read never got a reader");
        Self { release, rows }
    }

    /// Lets it count again; returns what it counted.
    fn finish(self) -> i64 {
        self.release.send(()).expect("the read waits");
        self.rows
            .recv_timeout(STUCK)
            .expect("the read finishes")
            .expect("the read succeeds")
    }
}

on_both!(
    a_write_commits_while_a_read_is_held_mid_iteration,
    with_every_reader_held_the_writer_and_its_own_reads_go_on_and_a_new_read_waits_its_turn,
    no_read_of_the_http_routes_takes_the_writers_lock,
    the_readers_cannot_write,
    reads_beside_commits_and_checkpoints_never_fail_busy,
    each_wait_is_counted_on_its_own_path,
);

fn a_write_commits_while_a_read_is_held_mid_iteration(kind: Kind) {
    let (_place, store) = seeded(kind, 50);
    let read = HeldRead::start(&store);

    // With one shared connection this commit would wait for the read, which waits for the test.
    let new = incident("errors", T0);
    let email = escalation(&new, 4096);
    let writer = Arc::clone(&store);
    let (committed, email_key) = (new.clone(), email.key.clone());
    let outcome = on_thread("the commit during a held read", move || {
        writer.commit(&[committed], &[email], None, T0)
    })
    .expect("commit");
    assert_eq!(outcome.queued, vec![email_key.clone()]);
    assert_eq!(
        store
            .outbox_entry(&email_key)
            .expect("read")
            .map(|e| e.status),
        Some(EmailStatus::Pending),
        "the page is durably queued while the read still runs"
    );

    // The held read stays on the snapshot it began with; a new read sees the commit.
    assert_eq!(read.finish(), 50, "the held read sees its own snapshot");
    assert_eq!(store.recent_incidents(500).expect("read").len(), 51);
    assert_eq!(store.incident(&new.id).expect("read"), Some(new));
}

fn with_every_reader_held_the_writer_and_its_own_reads_go_on_and_a_new_read_waits_its_turn(
    kind: Kind,
) {
    let (_place, store) = seeded(kind, 20);
    let held: Vec<HeldRead> = (0..READERS).map(|_| HeldRead::start(&store)).collect();
    assert_eq!(store.idle_readers(), 0, "every reader is lent out");

    // The pager's step (its windows, then its commit) and the sender's round all use the writer.
    let writer = Arc::clone(&store);
    let new = incident("errors", T0);
    let key = on_thread(
        "the pager and the sender with every reader held",
        move || {
            writer.pager_windows()?;
            writer.put_value("engine-state", b"{}")?;
            let email = escalation(&new, 1024);
            writer.commit(&[new], std::slice::from_ref(&email), None, T0)?;
            let due = writer.due(T0, 10)?;
            assert_eq!(due.len(), 1);
            assert!(writer.mark_sent(&email.key, T0)?);
            assert_eq!(writer.value("engine-state")?, Some(b"{}".to_vec()));
            assert_eq!(writer.outbox_depth()?, OutboxDepth::default());
            Ok::<_, StoreError>(email.key)
        },
    )
    .expect("the write side");

    // A read now finds no reader free: it waits (it does not fail), and gets the first one back.
    let reader = Arc::clone(&store);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(reader.recent_incidents(500));
    });
    let mut held = held.into_iter();
    assert_eq!(held.next().expect("one").finish(), 20);
    let seen = rx
        .recv_timeout(STUCK)
        .expect("the waiting read got the returned reader")
        .expect("and succeeded");
    assert_eq!(seen.len(), 21, "it reads the latest commit");
    for read in held {
        assert_eq!(read.finish(), 20);
    }
    assert_eq!(store.idle_readers(), READERS, "every reader came back");
    assert_eq!(
        store.outbox_entry(&key).expect("read").map(|e| e.status),
        Some(EmailStatus::Sent)
    );
}

fn no_read_of_the_http_routes_takes_the_writers_lock(kind: Kind) {
    let (_place, store) = seeded(kind, 5);
    let id = Incident::make_id("latency", T0 - Duration::from_secs(3600));
    let _writer = store.hold_writer();
    let reader = Arc::clone(&store);
    let (one, latest, recent, windows, version) =
        on_thread("the reads while the writer's lock is held", move || {
            (
                reader.incident(&id),
                reader.latest_per_section(),
                reader.recent_incidents(500),
                reader.windows(),
                reader.schema_version(),
            )
        });
    assert!(one.expect("incident").is_some());
    assert_eq!(latest.expect("latest_per_section").len(), 1);
    assert_eq!(recent.expect("recent_incidents").len(), 5);
    assert!(windows.expect("windows").is_empty());
    assert_eq!(version.expect("schema_version"), schema::VERSION);
}

fn the_readers_cannot_write(kind: Kind) {
    let (_place, store) = seeded(kind, 3);
    let refused = store.read(|db| db.execute("DELETE FROM incidents", &[]));
    assert!(refused.is_err(), "{refused:?}");
    // Belt and braces over the read-only open (SQLite) or session (PostgreSQL).
    let read_only = store
        .read(|db| match db.dialect() {
            sql::Dialect::Sqlite => Ok(db.query_value::<i64>("PRAGMA query_only", &[])? == 1),
            sql::Dialect::Postgres => {
                Ok(db.query_value::<String>("SHOW default_transaction_read_only", &[])? == "on")
            }
        })
        .expect("read-only setting");
    assert!(read_only);
    assert_eq!(store.recent_incidents(10).expect("read").len(), 3);
}

fn reads_beside_commits_and_checkpoints_never_fail_busy(kind: Kind) {
    let (_place, store) = seeded(kind, 30);
    let readers: Vec<_> = (0..2 * READERS)
        .map(|_| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                for _ in 0..40 {
                    let got = store
                        .recent_incidents(500)
                        .expect("a read beside the writer");
                    assert!(got.len() >= 30);
                }
            })
        })
        .collect();
    // 48 commits of 128 KiB emails: several times the 1000 pages after which a commit checkpoints
    // the log, so the readers meet the automatic checkpoints too.
    for n in 0..48u64 {
        let inc = incident("errors", T0 + Duration::from_secs(n));
        store
            .commit(
                std::slice::from_ref(&inc),
                &[escalation(&inc, 128 * 1024)],
                None,
                T0,
            )
            .expect("a commit beside the readers");
    }
    for r in readers {
        r.join().expect("every read succeeded");
    }
    assert_eq!(store.recent_incidents(500).expect("read").len(), 78);
}

#[test]
fn an_in_memory_store_is_refused() {
    let err = Store::open(":memory:").expect_err("the readers need a file");
    assert!(err.to_string().contains("WAL"), "{err}");
    assert!(!Path::new(":memory:").exists(), "no file was made");
}

fn each_wait_is_counted_on_its_own_path(kind: Kind) {
    let (_place, store) = seeded(kind, 2);
    let mut registry = Registry::with_prefix("harven_watchdog");
    store.register_metrics(&mut registry);
    let inc = incident("errors", T0);
    store
        .commit(
            std::slice::from_ref(&inc),
            &[escalation(&inc, 100)],
            None,
            T0,
        )
        .expect("commit");
    store.outbox_depth().expect("depth");
    for _ in 0..3 {
        store.recent_incidents(10).expect("read");
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    assert!(
        text.contains("harven_watchdog_store_write_wait_seconds_count 3\n"),
        "the seed, a commit and a read of the sender:\n{text}"
    );
    assert!(
        text.contains("harven_watchdog_store_read_wait_seconds_count 3\n"),
        "{text}"
    );
}
