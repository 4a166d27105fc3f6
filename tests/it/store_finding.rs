//! The store finding (issue 17): when the watchdog's own store does not answer, it says so in one
//! place, read by `/metrics`, `/readyz` and the status page, and the pages it decided meanwhile are
//! recorded, and sent, once when the store answers again.
//!
//! The store here is the SQLite file, locked by another connection (an operator's `sqlite3`, a
//! backup) holding its write lock: every write of the daemon fails `busy` after the store's busy
//! timeout, as a full disk fails it. The daemon is blind (every source is out of reach), which is
//! an incident of its own: its L1 is the page that waits.
//!
//! On PostgreSQL the database is cut off through a fault proxy: the lease task's rounds find it
//! down, `/readyz` names it `host:port/db`, and `/` still answers with the finding while its lists
//! cannot be read. The same finding for two real replicas is `it::ha`'s database-down test.

use std::time::{Duration, Instant};

use harven_watchdog::runbook::Locale;
use harven_watchdog::store::{EmailStatus, Store};

use crate::one_language::{Foreign, visible_html};
use crate::support::daemon::{T0, TestDaemon, blind_env, sample};
use crate::support::fault::{Endpoint, Fault, FaultProxy};
use crate::support::ledger::rows;
use crate::support::postgres;
use crate::support::smtp::{ReceivedMail, SmtpServer, advance_until};

/// How long (real time) the store may take to be found down or up again.
const PATIENCE: Duration = Duration::from_secs(120);

/// `GET {base}{path}` as anyone would: the status and the body, whatever the status.
async fn answer(base: &str, path: &str) -> (u16, String) {
    let url = format!("{base}{path}");
    let r = crate::support::http_client()
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (r.status().as_u16(), r.text().await.expect("a body"))
}

/// The blind watchdog's L1 emails in `mail`.
fn blind_l1(mail: &[ReceivedMail]) -> Vec<&ReceivedMail> {
    mail.iter()
        .filter(|m| m.header("X-Harven-Section") == Some("watchdog"))
        .filter(|m| m.header("X-Harven-Level") == Some("L1"))
        .filter(|m| m.header("X-Harven-Event") == Some("opened"))
        .collect()
}

/// In each language: the file locked, the blind watchdog's L1 is decided and refused; the gauges
/// say the store is down with one page waiting, `/readyz` answers 503 naming the file, since when,
/// the error and the page's key, and `/` shows the finding in the page's language. The lock
/// released, the gauges are back to 1 and 0, the page is recorded once under that key and its
/// email arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_store_is_a_finding_and_its_pages_are_recorded_once_when_it_answers() {
    for (locale, tag) in [(Locale::En, "en"), (Locale::PtBr, "pt-BR")] {
        let smtp = SmtpServer::start().await;
        let data = tempfile::tempdir().expect("tempdir");
        let env = blind_env(smtp.port(), data.path(), tag);
        let d = TestDaemon::start(env, T0).await;
        let file = data.path().join("watchdog.db");
        let metrics = d.metrics().await;
        assert_eq!(sample(&metrics, "harven_watchdog_store_up"), Some(1.0));
        assert_eq!(
            sample(&metrics, "harven_watchdog_pages_unrecorded"),
            Some(0.0)
        );

        // Another connection takes the file's write lock and keeps it.
        let lock = rusqlite::Connection::open(&file).expect("a second connection");
        lock.execute_batch("BEGIN EXCLUSIVE")
            .expect("the write lock");
        let locked_at = d.hand.now();

        // The blind watchdog decides its L1; the store refuses it (after its busy timeout).
        let started = Instant::now();
        let waiting = loop {
            let metrics = d.metrics().await;
            let unrecorded = sample(&metrics, "harven_watchdog_pages_unrecorded");
            if unrecorded.is_some_and(|n| n >= 1.0) {
                assert_eq!(sample(&metrics, "harven_watchdog_store_up"), Some(0.0));
                break unrecorded.expect("a count");
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{tag}: no page found waiting for the store:\n{metrics}"
            );
            d.hand.advance(Duration::from_secs(10));
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        assert!(
            blind_l1(&smtp.messages()).is_empty(),
            "nothing sent meanwhile"
        );

        let (status, body) = answer(&d.base, "/readyz").await;
        assert_eq!(status, 503, "{tag}: {body}");
        let head = format!(
            "not ready: the store {} does not answer since ",
            file.display()
        );
        assert!(body.starts_with(&head), "{tag}: {body}");
        assert!(body.contains("UTC: the store is busy"), "{tag}: {body}");
        assert!(body.ends_with("role: solo\n"), "{tag}: {body}");
        let pages = body
            .lines()
            .find(|l| l.contains(" for it: "))
            .unwrap_or_else(|| panic!("{tag}: no pages line in {body}"));
        let (count, keys) = pages.split_once(" for it: ").expect("split");
        assert!(count.starts_with(&format!("{waiting} ")), "{tag}: {body}");
        let key = keys
            .split(", ")
            .find(|k| k.contains("/L1/opened/"))
            .unwrap_or_else(|| panic!("{tag}: no L1 key in {body}"))
            .to_owned();
        // Since when: a time between the lock and now, to the second.
        let since = body[head.len()..].split(" UTC").next().expect("a time");
        let lower = harven_watchdog::locale::human_time(locked_at);
        assert!(since >= &lower[..19], "{since} before the lock at {lower}");

        // The status page: the finding first among the blind spots, in the page's language.
        let page = d.get("/").await;
        let finding = page
            .split("<tr id=\"store-down\">")
            .nth(1)
            .and_then(|rest| rest.split("</tr>").next())
            .unwrap_or_else(|| panic!("{tag}: no finding on /:\n{page}"));
        let (title, fix, returns) = match locale {
            Locale::En => (
                "The watchdog's own store does not answer since",
                "Fix: free disk space",
                "never twice",
            ),
            Locale::PtBr => (
                "O armazenamento do próprio watchdog não responde desde",
                "Correção: libere espaço em disco",
                "nunca duas vezes",
            ),
        };
        let finding = visible_html(finding);
        for words in [title, fix, returns, &file.display().to_string()] {
            assert!(finding.contains(words), "{tag}: no {words:?} in {finding}");
        }
        Foreign::of(locale).check("the store finding on /", &visible_html(&page));

        // The lock goes: the next step records the page, once, and the email follows.
        lock.execute_batch("ROLLBACK").expect("release");
        drop(lock);
        let mail = advance_until(
            &d.hand,
            Duration::from_secs(10),
            &smtp,
            "the L1 once the store answers",
            |m| !blind_l1(m).is_empty(),
        )
        .await;
        let started = Instant::now();
        loop {
            let metrics = d.metrics().await;
            if sample(&metrics, "harven_watchdog_store_up") == Some(1.0) {
                assert_eq!(
                    sample(&metrics, "harven_watchdog_pages_unrecorded"),
                    Some(0.0),
                    "{tag}: {metrics}"
                );
                break;
            }
            assert!(started.elapsed() < PATIENCE, "{tag}: never up:\n{metrics}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(answer(&d.base, "/readyz").await.0, 200, "{tag}");
        assert!(!d.get("/").await.contains("store-down"), "{tag}");
        // A few more steps: nothing is recorded or sent twice.
        for _ in 0..5 {
            d.hand.advance(Duration::from_secs(10));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        d.stop().await;
        let store = Store::open(&file).expect("reopen");
        // The page is decided again at each step until recorded: its incident's ID (and so its
        // key) is the step's that recorded it, and there is one.
        let all: Vec<String> = rows(&store).into_iter().map(|r| r.key).collect();
        let recorded: Vec<_> = rows(&store)
            .into_iter()
            .filter(|r| r.key.starts_with("watchdog-") && r.key.contains("/L1/opened/"))
            .collect();
        assert_eq!(recorded.len(), 1, "{tag}: {key} waited; recorded {all:?}");
        assert_eq!(recorded[0].status, EmailStatus::Sent, "{tag}");
        let sent = blind_l1(&smtp.messages()).len();
        assert_eq!(
            sent,
            1,
            "{tag}: the L1 sent once ({} before)",
            blind_l1(&mail).len()
        );
    }
}

/// The finding while `d` answers `/metrics`: waits (moving the clock `step` at a time, so the
/// lease task's rounds run) until `harven_watchdog_store_up` is `want`.
async fn until_store_up(d: &TestDaemon, step: Duration, want: f64, what: &str) {
    let started = Instant::now();
    loop {
        let metrics = d.metrics().await;
        if sample(&metrics, "harven_watchdog_store_up") == Some(want) {
            return;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{what}: never {want}:\n{metrics}"
        );
        d.hand.advance(step);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// PostgreSQL, in each language: the database cut off (its proxy down), the lease rounds find the
/// store down; `/readyz` answers 503 naming it `127.0.0.1:port/db` (never the password); `/`
/// answers 503 with the finding, the PostgreSQL fix naming `store.url`, and its lists saying they
/// cannot be read. Healed, the store is up again and `/` is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_database_is_a_finding_on_readyz_and_the_status_page() {
    let server = tokio::task::spawn_blocking(postgres::shared)
        .await
        .expect("the server");
    let password = std::fs::read_to_string(server.password_file()).expect("the password");
    for (locale, tag) in [(Locale::En, "en"), (Locale::PtBr, "pt-BR")] {
        let db = tokio::task::spawn_blocking(|| postgres::shared().create_database())
            .await
            .expect("a database");
        let proxy = FaultProxy::tcp(Endpoint::Tcp(([127, 0, 0, 1], server.port()).into())).await;
        let smtp = SmtpServer::start().await;
        let data = tempfile::tempdir().expect("tempdir");
        let mut env = blind_env(smtp.port(), data.path(), tag);
        let url = format!(
            "postgres://{}@127.0.0.1:{}/{db}",
            postgres::USER,
            proxy.port()
        );
        env.extend(
            [
                ("STORE__URL", url),
                (
                    "STORE__PASSWORD_FILE",
                    server.password_file().display().to_string(),
                ),
                ("STORE__CONNECT_TIMEOUT", "1s".into()),
                ("STORE__STATEMENT_TIMEOUT", "1s".into()),
                ("HA__NODE", "node-a".into()),
                ("HA__LEASE", "20s".into()),
                ("HA__RENEW_EVERY", "5s".into()),
            ]
            .into_iter()
            .map(|(k, v)| (format!("HARVEN_WATCHDOG__{k}"), v)),
        );
        let d = TestDaemon::start(env, T0).await;
        until_store_up(&d, Duration::from_secs(1), 1.0, tag).await;

        proxy.set(Fault::Down);
        until_store_up(&d, Duration::from_secs(5), 0.0, tag).await;
        let name = format!("127.0.0.1:{}/{db}", proxy.port());

        let (status, body) = answer(&d.base, "/readyz").await;
        assert_eq!(status, 503, "{tag}: {body}");
        let head = format!("not ready: the store {name} does not answer since ");
        assert!(body.starts_with(&head), "{tag}: {body}");
        // The pages line (a page the leader decided before standing down may wait too).
        let pages = body.lines().nth(1).unwrap_or_default();
        assert!(
            pages == "no page waits for it" || pages.contains(" for it: "),
            "{tag}: {body}"
        );
        assert!(body.contains("\nrole: "), "{tag}: {body}");
        assert!(
            !body.contains(password.trim()),
            "{tag}: the password in {body}"
        );

        let (status, page) = answer(&d.base, "/").await;
        assert_eq!(status, 503, "{tag}");
        assert!(!page.contains(password.trim()), "{tag}: the password on /");
        let visible = visible_html(&page);
        let (title, fix, unreadable) = match locale {
            Locale::En => (
                "The watchdog's own store does not answer since",
                "Fix: check that the database named by store.url",
                "Cannot be read while the store does not answer.",
            ),
            Locale::PtBr => (
                "O armazenamento do próprio watchdog não responde desde",
                "Correção: verifique se o banco de dados indicado em store.url",
                "Não é possível ler enquanto o armazenamento não responde.",
            ),
        };
        for words in [title, fix, unreadable, &name] {
            assert!(visible.contains(words), "{tag}: no {words:?} in {visible}");
        }
        Foreign::of(locale).check("/ while the database is cut off", &visible);

        proxy.set(Fault::None);
        until_store_up(&d, Duration::from_secs(5), 1.0, tag).await;
        let (status, page) = answer(&d.base, "/").await;
        assert_eq!(status, 200, "{tag}");
        assert!(!page.contains("store-down"), "{tag}");
        d.stop().await;
    }
}
