//! The store's two paths: reads on the readers never wait for the writer, and the writer never waits
//! for reads. Each test pins one thread where a single shared connection would deadlock, so a
//! regression fails (after [`STUCK`]) instead of merely being slower; nothing here times anything.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use super::*;
use crate::incident::{Level, Page, PageEvent};
use crate::runbook::Severity;

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

/// A store in a temporary directory holding `count` incidents, an hour apart before [`T0`].
fn seeded(count: u64) -> (tempfile::TempDir, Arc<Store>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("watchdog.db")).expect("open");
    let incidents: Vec<Incident> = (1..=count)
        .map(|n| incident("latency", T0 - Duration::from_secs(3600 * n)))
        .collect();
    store.save_incidents(&incidents).expect("seed");
    (dir, Arc::new(store))
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

/// A read that stops mid-iteration: it steps the first row of every incident, oldest first, then
/// waits for its release before stepping the rest.
struct HeldRead {
    release: mpsc::Sender<()>,
    /// How many rows the read stepped in all, once released.
    rows: mpsc::Receiver<Result<usize>>,
}

impl HeldRead {
    /// Starts the read on a thread of its own; returns once it holds a reader mid-iteration.
    fn start(store: &Arc<Store>) -> Self {
        let (holding_tx, holding) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let (rows_tx, rows) = mpsc::channel();
        let store = Arc::clone(store);
        thread::spawn(move || {
            let counted = store.read(|conn| {
                let mut stmt = conn.prepare("SELECT data FROM incidents ORDER BY opened_at")?;
                let mut cursor = stmt.query([])?;
                let mut n = 0;
                while cursor.next()?.is_some() {
                    n += 1;
                    if n == 1 {
                        holding_tx.send(()).expect("the test waits");
                        // Dropped sender (the test failed): finish rather than hang.
                        let _ = release_rx.recv_timeout(STUCK);
                    }
                }
                Ok(n)
            });
            let _ = rows_tx.send(counted);
        });
        holding
            .recv_timeout(STUCK)
            .expect("the read never got a reader");
        Self { release, rows }
    }

    /// Lets it step the rest of its rows; returns how many it stepped.
    fn finish(self) -> usize {
        self.release.send(()).expect("the read waits");
        self.rows
            .recv_timeout(STUCK)
            .expect("the read finishes")
            .expect("the read succeeds")
    }
}

#[test]
fn a_write_commits_while_a_read_is_held_mid_iteration() {
    let (_dir, store) = seeded(50);
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

#[test]
fn with_every_reader_held_the_writer_and_its_own_reads_go_on_and_a_new_read_waits_its_turn() {
    let (_dir, store) = seeded(20);
    let held: Vec<HeldRead> = (0..READERS).map(|_| HeldRead::start(&store)).collect();
    assert_eq!(store.readers.idle(), 0, "every reader is lent out");

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
    assert_eq!(store.readers.idle(), READERS, "every reader came back");
    assert_eq!(
        store.outbox_entry(&key).expect("read").map(|e| e.status),
        Some(EmailStatus::Sent)
    );
}

#[test]
fn no_read_of_the_http_routes_takes_the_writers_lock() {
    let (_dir, store) = seeded(5);
    let id = Incident::make_id("latency", T0 - Duration::from_secs(3600));
    let _writer = store.lock_writer();
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

#[test]
fn the_readers_cannot_write() {
    let (_dir, store) = seeded(3);
    let refused = store.read(|conn| Ok(conn.execute("DELETE FROM incidents", [])?));
    assert!(refused.is_err(), "{refused:?}");
    let query_only: bool = store
        .read(|conn| Ok(conn.query_row("PRAGMA query_only", [], |r| r.get(0))?))
        .expect("pragma");
    assert!(query_only);
    assert_eq!(store.recent_incidents(10).expect("read").len(), 3);
}

#[test]
fn reads_beside_commits_and_checkpoints_never_fail_busy() {
    let (_dir, store) = seeded(30);
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

#[test]
fn each_wait_is_counted_on_its_own_path() {
    let (_dir, store) = seeded(2);
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
