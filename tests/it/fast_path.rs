//! The fast path, on real time beside a real Prometheus and the real FastAPI app: while a rule is
//! pending the Prometheus probe polls at `fast_interval` instead of `interval`, so a severe breach is
//! confirmed on fresh readings and paged `for` after it was first seen, not a regular interval
//! later.
//!
//! The test reads the sequence of events, never the wall time between the test's own steps: the
//! watchdog's polls as Prometheus logged them (its query log), the incident's `opened_at` from the
//! store, and the L1 email. The configuration is tight on purpose: a 30 s interval (so a page
//! confirmed by regular polls alone would come at least 30 s after the first sighting), a 1 s fast
//! interval, and the shipped runbook, whose severe latency rule has `for = "10s"`.

use std::time::{Duration, Instant, SystemTime};

use harven_watchdog::incident::IncidentState;
use harven_watchdog::store::Store;

use crate::support::daemon::{paging_env, spawn_binary};
use crate::support::fastapi::{FastApiBackend, Handler, Load, LoadSpec, Profile, Scenario};
use crate::support::prometheus::{ExtraConfig, PrometheusServer};
use crate::support::smtp::SmtpServer;

/// The regular interval of the test's configuration.
const INTERVAL: Duration = Duration::from_secs(30);
/// Its fast interval.
const FAST: Duration = Duration::from_secs(1);
/// The shipped `for` of `latency.slow_severe`.
const FOR: Duration = Duration::from_secs(10);
/// Queries Prometheus logs less than this apart belong to one poll (a poll's four queries are
/// sent together; polls are at least a second apart).
const SAME_POLL: Duration = Duration::from_millis(500);

/// `later - earlier` in seconds (negative when `later` is earlier).
fn secs(later: SystemTime, earlier: SystemTime) -> f64 {
    match later.duration_since(earlier) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// The watchdog's polls as Prometheus saw them: the time of the first query of each group of
/// queries logged less than [`SAME_POLL`] apart.
fn polls(prom: &PrometheusServer) -> Vec<SystemTime> {
    let mut polls: Vec<SystemTime> = Vec::new();
    let mut last: Option<SystemTime> = None;
    for q in prom.logged_queries() {
        if last.is_none_or(|l| secs(q.at, l) >= SAME_POLL.as_secs_f64()) {
            polls.push(q.at);
        }
        last = Some(q.at);
    }
    polls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_severe_breach_is_confirmed_by_fast_polls_and_paged_for_after_it_is_seen() {
    let backend = FastApiBackend::start(Profile::Default).await;
    let load = Load::start(
        &backend,
        LoadSpec {
            cap: Duration::from_secs(600),
            ..LoadSpec::new(
                8.0,
                &[
                    (Handler::Chat, 3),
                    (Handler::Login, 1),
                    (Handler::Courses, 1),
                ],
            )
        },
    );
    let prom = PrometheusServer::start_with(
        &[backend.target()],
        &ExtraConfig {
            query_log: true,
            ..ExtraConfig::default()
        },
    )
    .await;
    let smtp = SmtpServer::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let mut env = paging_env(&prom.url(), smtp.port(), data.path());
    env.retain(|(k, _)| {
        !k.starts_with("HARVEN_WATCHDOG__PROMETHEUS__INTERVAL")
            && k != "HARVEN_WATCHDOG__PROMETHEUS__WINDOW"
    });
    env.extend(
        [
            ("PROMETHEUS__INTERVAL", format!("{}s", INTERVAL.as_secs())),
            ("PROMETHEUS__FAST_INTERVAL", format!("{}s", FAST.as_secs())),
            ("PROMETHEUS__TIMEOUT", "5s".to_owned()),
            // Shipped windows: the severe rule reads the 30 s one.
            ("PROMETHEUS__WINDOW", "2m".to_owned()),
            ("PROMETHEUS__SHORT_WINDOW", "30s".to_owned()),
            (
                "SERVER__LISTEN",
                format!("127.0.0.1:{}", crate::support::free_port()),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (format!("HARVEN_WATCHDOG__{k}"), v)),
    );
    let mut child = spawn_binary(&env);

    // Normal traffic first, until the watchdog has polled at its regular interval (two gaps).
    let settled = Instant::now() + Duration::from_secs(120);
    while polls(&prom).len() < 3 {
        assert!(
            Instant::now() < settled,
            "the watchdog did not poll Prometheus 3 times in 2 min: {:?}",
            polls(&prom)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let before = polls(&prom);

    let switched = SystemTime::now();
    backend.set_scenario(&Scenario::slow_chat(6.0, 8.0)).await;
    let store = Store::open(data.path().join("watchdog.db")).expect("the store");
    let deadline = Instant::now() + Duration::from_secs(180);
    let incident = loop {
        let latency = store
            .latest_per_section()
            .expect("read the store")
            .into_iter()
            .find(|i| i.section == "latency" && i.state != IncidentState::Resolved);
        let mailed = smtp.messages().into_iter().any(|m| {
            m.header("X-Harven-Section") == Some("latency")
                && m.header("X-Harven-Level") == Some("L1")
                && m.header("X-Harven-Event") == Some("opened")
        });
        if let (Some(incident), true) = (latency, mailed) {
            break incident;
        }
        assert!(
            Instant::now() < deadline,
            "no latency page within 3 min of the switch; polls after it: {:?}",
            polls(&prom)
                .iter()
                .map(|p| format!("{:.1}", secs(*p, switched)))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    child.kill().expect("kill the watchdog");
    child.wait().expect("reaped");
    drop(load);

    let opened = SystemTime::UNIX_EPOCH
        + Duration::from_millis(
            u64::try_from(incident.opened_at.as_unix_millis()).expect("after 1970"),
        );
    let all = polls(&prom);
    let shown = |from: SystemTime| {
        all.iter()
            .map(|p| format!("{:+.1}", secs(*p, from)))
            .collect::<Vec<_>>()
            .join(" ")
    };

    eprintln!(
        "polls (s from the switch): {}; opened at {:+.1} s",
        shown(switched),
        secs(opened, switched)
    );

    // 1. Before the switch, with nothing pending, the watchdog polled at its regular interval.
    let regular = INTERVAL.as_secs_f64() * 0.9;
    for pair in before[1..].windows(2) {
        assert!(
            secs(pair[1], pair[0]) >= regular,
            "polls before the switch were not {INTERVAL:?} apart (s from the switch): {}",
            shown(switched)
        );
    }

    // 2. The poll that first saw the breach: the last before the first fast gap after the switch.
    let fast_gap = INTERVAL.as_secs_f64() / 2.0;
    let first_fast = all
        .windows(2)
        .position(|pair| secs(pair[0], switched) >= 0.0 && secs(pair[1], pair[0]) < fast_gap)
        .unwrap_or_else(|| {
            panic!(
                "the watchdog never polled faster after the switch (s from the switch): {}",
                shown(switched)
            )
        });
    let seen = all[first_fast];

    // 3. It paged `for` after that sighting (give or take a fast interval and the time a poll's
    //    queries take), which no regular poll could have confirmed: the next regular poll was
    //    due a whole interval after the sighting.
    let to_open = secs(opened, seen);
    assert!(
        to_open >= FOR.as_secs_f64() - 1.0,
        "opened {to_open:.1} s after the breach was first seen, before its for ({FOR:?}); polls (s from the opening): {}",
        shown(opened)
    );
    assert!(
        to_open < INTERVAL.as_secs_f64() * 0.9,
        "opened {to_open:.1} s after the breach was first seen: no sooner than regular polls would; polls (s from the opening): {}",
        shown(opened)
    );

    // 4. Fresh readings confirmed it: between the sighting and the opening, the watchdog polled at
    //    the fast interval, once a second or so, never at the regular one.
    let confirming: Vec<&SystemTime> = all
        .iter()
        .filter(|p| secs(**p, seen) > 0.0 && secs(opened, **p) > -SAME_POLL.as_secs_f64())
        .collect();
    assert!(
        confirming.len() as f64 >= FOR.as_secs_f64() / FAST.as_secs_f64() / 2.0,
        "only {} polls confirmed the breach over its for; polls (s from the sighting): {}",
        confirming.len(),
        shown(seen)
    );
    let mut previous = seen;
    for p in confirming {
        assert!(
            secs(*p, previous) < fast_gap,
            "a regular gap while the rule was pending; polls (s from the sighting): {}",
            shown(seen)
        );
        previous = *p;
    }
}
