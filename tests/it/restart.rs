//! Crash tests of the real binary: `kill -9` at random points of a scripted incident, repeatedly.
//!
//! The binary runs on the system clock (only an in-process daemon can take a manual one), so the
//! script is short in real time: a runbook whose latency rule fires after 1 s and clears after 5 s, and
//! L2 20 s after the open. The incident (the simulated backend turns slow, then normal again once L2 is
//! in the ledger) pages L1 opened, L2 escalated, then L1 and L2 resolved. The daemon is killed with
//! SIGKILL at a random moment after each start and started again; after each restart, once the outbox
//! has drained, every row of the ledger is `sent` and reached the SMTP server exactly once.
//!
//! The kill points come from a seeded RNG. The seed is printed; `HARVEN_TEST_SEED=<seed>` replays a
//! run and `HARVEN_TEST_KILLS=<n>` sets how many kills (default [`DEFAULT_KILLS`]).
//!
//! The one crash window the design leaves (after the server's `250`, before `mark_sent`: the message
//! is sent again, same bytes and `Message-ID`) lasts about a millisecond of each send; a kill landing
//! there would show as a duplicate here, with the seed to replay it.

use std::time::{Duration, Instant};

use harven_watchdog::store::{EmailStatus, Store};

use crate::support::backend::{Scenario, SimBackend, StatusStyle};
use crate::support::daemon::{paging_env, quick_runbook, spawn_binary};
use crate::support::ledger::{assert_delivered_exactly_once, drained, rows};
use crate::support::prometheus::PrometheusServer;
use crate::support::smtp::SmtpServer;
use crate::support::{env_number, kill_child};

/// Kills per run unless `HARVEN_TEST_KILLS` says otherwise.
const DEFAULT_KILLS: u32 = 5;

/// The latency pages of the script, as `level/event`.
const SCRIPT: [&str; 4] = ["L1/opened", "L2/escalated", "L1/resolved", "L2/resolved"];

/// How long (real time) any one wait may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(120);

/// The latency rows of the ledger, as `level/event`, with their status.
fn latency_rows(store: &Store) -> Vec<(String, EmailStatus)> {
    rows(store)
        .into_iter()
        .filter(|r| r.incident.starts_with("latency-"))
        .map(|r| (format!("{}/{}", r.level, r.event), r.status))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_of_an_incident_delivers_every_page_exactly_once() {
    let seed = env_number("HARVEN_TEST_SEED").unwrap_or_else(|| fastrand::u64(..));
    let kills = env_number("HARVEN_TEST_KILLS").unwrap_or(u64::from(DEFAULT_KILLS));
    eprintln!("kill -9 test: seed {seed}, {kills} kills (replay: HARVEN_TEST_SEED={seed})");
    let mut rng = fastrand::Rng::with_seed(seed);

    let backend = SimBackend::start(StatusStyle::Grouped, Scenario::Slow).await;
    let prom = PrometheusServer::start(&[backend.target()]).await;
    let smtp = SmtpServer::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let runbook = quick_runbook(data.path(), "5s");
    let mut env = paging_env(&prom.url(), smtp.port(), data.path());
    let port = crate::support::free_port();
    env.extend(
        [
            ("RUNBOOK__PATH", runbook.display().to_string()),
            ("SERVER__LISTEN", format!("127.0.0.1:{port}")),
            ("ESCALATION__L2__AFTER", "20s".into()),
        ]
        .into_iter()
        .map(|(k, v)| (format!("HARVEN_WATCHDOG__{k}"), v)),
    );
    let store = Store::open(data.path().join("watchdog.db")).expect("store");
    // The script's one input: the backend recovers once L2 is in the ledger.
    let steer = |store: &Store| {
        if latency_rows(store).iter().any(|(p, _)| p == "L2/escalated") {
            backend.set_scenario(Scenario::Normal);
        }
    };

    let mut child = spawn_binary(&env);
    for round in 1..=kills {
        let after = Duration::from_millis(rng.u64(300..12_000));
        // Not a timed assertion: the sleep only picks the moment of the kill.
        tokio::time::sleep(after).await;
        kill_child(&mut child);
        let before: Vec<String> = latency_rows(&store).into_iter().map(|r| r.0).collect();
        eprintln!("kill {round}: {after:?} after the start; latency ledger {before:?}");
        child = spawn_binary(&env);
        let deadline = Instant::now() + PATIENCE;
        while !drained(&store) {
            assert!(
                Instant::now() < deadline,
                "kill {round}: the outbox never drained"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_delivered_exactly_once(&store, &smtp.messages(), &format!("after kill {round}"));
        steer(&store);
    }

    // The rest of the script without kills.
    let deadline = Instant::now() + PATIENCE;
    loop {
        steer(&store);
        let rows = latency_rows(&store);
        if rows.len() == SCRIPT.len() && drained(&store) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the script never finished: latency ledger {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mail = smtp.messages();
    kill_child(&mut child);
    assert_delivered_exactly_once(&store, &mail, "at the end");
    let mut pages: Vec<String> = latency_rows(&store).into_iter().map(|r| r.0).collect();
    pages.sort();
    let mut want: Vec<String> = SCRIPT.iter().map(|p| (*p).to_owned()).collect();
    want.sort();
    assert_eq!(pages, want, "the script's pages, each once (seed {seed})");
}
