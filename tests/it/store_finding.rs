//! The store finding (issue 17): when the watchdog's own store does not answer, it says so in one
//! place, read by `/metrics`, `/readyz` and the status page, and the pages it decided meanwhile are
//! recorded, and sent, once when the store answers again.
//!
//! The store here is the SQLite file, locked by another connection (an operator's `sqlite3`, a
//! backup) holding its write lock: every write of the daemon fails `busy` after the store's busy
//! timeout, as a full disk fails it. The daemon is blind (every source is out of reach), which is
//! an incident of its own: its L1 is the page that waits. The same finding on PostgreSQL, for both
//! replicas, is `it::ha`'s database-down test; the lease task's part is `ha::tests`.

use std::time::{Duration, Instant};

use harven_watchdog::runbook::Locale;
use harven_watchdog::store::{EmailStatus, Store};

use crate::one_language::{Foreign, visible_html};
use crate::support::daemon::{T0, TestDaemon, blind_env, sample};
use crate::support::ledger::rows;
use crate::support::smtp::{ReceivedMail, SmtpServer, advance_until};

/// How long (real time) the store may take to be found down or up again.
const PATIENCE: Duration = Duration::from_secs(120);

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
    let http = crate::support::http_client();
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

        let r = http
            .get(format!("{}/readyz", d.base))
            .send()
            .await
            .expect("readyz");
        assert_eq!(r.status().as_u16(), 503);
        let body = r.text().await.expect("body");
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
        let r = http
            .get(format!("{}/readyz", d.base))
            .send()
            .await
            .expect("readyz");
        assert_eq!(r.status().as_u16(), 200, "{tag}");
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
