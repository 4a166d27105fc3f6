//! The soak test: a simulated day on the manual clock with an SMTP server that refuses every email for
//! now (`451`, so every page stays pending and is retried) and two sources, Prometheus and Redis, that
//! flap together: down for 5 minutes, then up, every [`CYCLE`]. Each flap opens a `watchdog` incident
//! (the blindness rules fire) and resolves it; cycles are longer than `escalation.reopen_within`, so
//! each is a new incident, and the store's retention (2 h here) must keep the store from growing with
//! the day.
//!
//! Its own test binary, so a counting global allocator can measure the live heap of the process (the
//! daemon, in-process, and the test's own peers). The figures are printed at the start, at mid-day and
//! at the end; the assertions are generous bounds on the growth between mid-day and the end, when
//! retention is in its steady state: what grows with time fails them, noise does not.

#[path = "it/support/mod.rs"]
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use harven_watchdog::store::{EmailStatus, Store};

use support::daemon::{T0, TestDaemon, prometheus_env, sample};
use support::fault::{Endpoint, Fault, FaultProxy};
use support::ledger::rows;
use support::prometheus::PrometheusServer;
use support::redis::RedisServer;
use support::smtp::{Script, ScriptedSmtp};

/// The system allocator, counting the bytes currently allocated.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; the counter is only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One flap: the sources are down for [`DOWN`] at the start of each cycle.
const CYCLE: Duration = Duration::from_secs(90 * 60);
const DOWN: Duration = Duration::from_secs(5 * 60);
const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// The store's retention in this test (it must exceed `reopen_within`, 30 min).
const RETENTION: &str = "2h";
/// How long (real time) any one wait may take.
const PATIENCE: Duration = Duration::from_secs(60);
const MIB: f64 = 1024.0 * 1024.0;

/// What the test measures at a point of the day.
#[derive(Debug, Clone, Copy)]
struct Figures {
    live_heap: usize,
    rss: usize,
    store_bytes: u64,
    outbox_rows: usize,
    incidents: usize,
}

impl Figures {
    fn take(store: &Store, db: &Path) -> Self {
        let rows = rows(store);
        Self {
            live_heap: LIVE.load(Ordering::Relaxed),
            rss: rss(),
            store_bytes: ["", "-wal"]
                .iter()
                .map(|suffix| {
                    std::fs::metadata(format!("{}{suffix}", db.display())).map_or(0, |m| m.len())
                })
                .sum(),
            outbox_rows: rows.len(),
            incidents: store.recent_incidents(100_000).expect("incidents").len(),
        }
    }

    fn print(&self, when: &str) {
        eprintln!(
            "soak {when:>8}: live heap {:7.2} MiB, RSS {:7.2} MiB, store {:6.2} MiB, {} outbox rows, {} incidents",
            self.live_heap as f64 / MIB,
            self.rss as f64 / MIB,
            self.store_bytes as f64 / MIB,
            self.outbox_rows,
            self.incidents
        );
    }
}

/// The resident set of this process, from `/proc/self/status`.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .expect("VmRSS")
        * 1024
}

/// Polls `/metrics` until `done` holds.
async fn until(d: &TestDaemon, what: &str, done: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = d.metrics().await;
        if done(&text) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never happened; firing now: {}",
            text.lines()
                .filter(|l| (l.starts_with("harven_watchdog_symptoms_firing{")
                    && !l.ends_with(" 0"))
                    || l.starts_with("harven_watchdog_rule_blind{")
                    || l.starts_with("harven_watchdog_probe_up{"))
                .collect::<Vec<_>>()
                .join("; ")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn up(text: &str, probe: &str) -> Option<f64> {
    sample(
        text,
        &format!("harven_watchdog_probe_up{{probe=\"{probe}\"}}"),
    )
}

fn watchdog_open(text: &str) -> bool {
    sample(
        text,
        r#"harven_watchdog_incidents_open{section="watchdog",severity="major"}"#,
    ) == Some(1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_of_flapping_sources_and_a_failing_smtp_server_stays_bounded() {
    let started = Instant::now();
    let backend = support::backend::SimBackend::start(
        support::backend::StatusStyle::Grouped,
        support::backend::Scenario::Normal,
    )
    .await;
    let prom = PrometheusServer::start(&[backend.target()]).await;
    let redis = RedisServer::start().await;
    let tcp = |port: u16| Endpoint::Tcp(([127, 0, 0, 1], port).into());
    let prom_proxy = FaultProxy::tcp(tcp(prom.port())).await;
    let redis_proxy = FaultProxy::tcp(tcp(redis.port())).await;
    let smtp = ScriptedSmtp::start(Script {
        rcpt_reply: Some("451 4.3.0 mailbox busy, try again later".into()),
        ..Script::default()
    })
    .await;
    // The stack's containers, by role, as a real stack has them.
    let backend_container = support::docker::TestContainer::start(
        support::docker::ContainerOptions::new()
            .name_hint("soak-backend")
            .env("JWT_SECRET", "soak"),
    )
    .await;
    let data = tempfile::tempdir().expect("tempdir");
    let mut env = prometheus_env(
        &format!("http://127.0.0.1:{}", prom_proxy.port()),
        data.path(),
    );
    // Redis behind its proxy and the real Docker Engine: the only blindness is the flapping one.
    env.retain(|(k, _)| !k.ends_with("__REDIS__URL") && !k.ends_with("__DOCKER__HOST"));
    env.extend(
        [
            (
                "REDIS__URL",
                format!("redis://127.0.0.1:{}", redis_proxy.port()),
            ),
            ("REDIS__INTERVAL", "1s".into()),
            ("REDIS__TIMEOUT", "900ms".into()),
            ("DOCKER__HOST", "unix:///var/run/docker.sock".into()),
            (
                "DOCKER__ROLES__BACKEND__NAMES",
                backend_container.name().to_owned(),
            ),
            ("DOCKER__ROLES__BACKEND__COMPOSE_SERVICE", String::new()),
            (
                "DOCKER__ROLES__REDIS__NAMES",
                backend_container.name().to_owned(),
            ),
            ("DOCKER__ROLES__REDIS__COMPOSE_SERVICE", String::new()),
            ("SMTP__HOST", "127.0.0.1".into()),
            ("SMTP__PORT", smtp.port().to_string()),
            ("SMTP__TLS", "none".into()),
            ("SMTP__TIMEOUT", "2s".into()),
            ("STORE__RETENTION", RETENTION.into()),
        ]
        .into_iter()
        .map(|(k, v)| (format!("HARVEN_WATCHDOG__{k}"), v)),
    );
    // The shipped runbook without its blind-spot rule: this Prometheus holds no request series for
    // the test's whole day (a blind spot the doctor reports, rightly, and that never clears), and
    // the day is about the flapping sources' incidents opening and resolving.
    let runbook = data.path().join("runbook.toml");
    let text = harven_watchdog::runbook::DEFAULT_RUNBOOK;
    let start = text
        .find("[[sections.rules]]\nid = \"watchdog.rule_blind\"")
        .expect("the blind-spot rule");
    let end = start + text[start..].find("\n\n").expect("the rule's end") + 2;
    std::fs::write(&runbook, format!("{}{}", &text[..start], &text[end..])).expect("runbook");
    env.push((
        "HARVEN_WATCHDOG__RUNBOOK__PATH".into(),
        runbook.display().to_string(),
    ));
    let db = data.path().join("watchdog.db");
    let d = TestDaemon::start(env, T0).await;
    until(&d, "both sources read", |t| {
        up(t, "prometheus") == Some(1.0) && up(t, "redis") == Some(1.0)
    })
    .await;
    let store = Store::open(&db).expect("store");
    let start = Figures::take(&store, &db);
    start.print("start");

    let cycles = (DAY.as_secs() / CYCLE.as_secs()) as usize;
    let mut mid = None;
    let mut seen = BTreeSet::new();
    for cycle in 1..=cycles {
        let cycle_start = d.hand.now();
        prom_proxy.set(Fault::Down);
        redis_proxy.set(Fault::Down);
        until(&d, "the sources read as failing", |t| {
            up(t, "prometheus") == Some(0.0) && up(t, "redis") == Some(0.0)
        })
        .await;
        d.hand.advance(Duration::from_secs(3 * 60));
        until(&d, "the watchdog incident open", watchdog_open).await;
        prom_proxy.set(Fault::None);
        redis_proxy.set(Fault::None);
        until(&d, "the sources back", |t| {
            up(t, "prometheus") == Some(1.0) && up(t, "redis") == Some(1.0)
        })
        .await;
        // `probe_up` is recorded before the watch loop has evaluated that poll: the clock moves on in
        // steps until the incident resolves, so a clear seen after the first step still gets its
        // `resolve_after` (one jump, then waiting, would leave it recovering for ever).
        d.hand.advance(DOWN);
        let deadline = Instant::now() + PATIENCE;
        while watchdog_open(&d.metrics().await) {
            assert!(
                Instant::now() < deadline,
                "the watchdog incident never resolved after its sources came back"
            );
            d.hand.advance(Duration::from_secs(30));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for i in store.recent_incidents(100).expect("incidents") {
            seen.insert(i.id);
        }
        // The rest of the cycle in 5-minute strides: the sender retries, retention prunes hourly.
        while d.hand.now() < cycle_start + CYCLE {
            d.hand.advance(Duration::from_secs(5 * 60));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if cycle == cycles / 2 {
            let figures = Figures::take(&store, &db);
            figures.print("mid-day");
            mid = Some(figures);
        }
    }
    // Let the retention task's last round finish before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let end = Figures::take(&store, &db);
    end.print("end");
    let mid = mid.expect("mid-day figures");
    eprintln!(
        "soak: {} cycles, {} incidents opened over the day, {:.1?} of real time",
        cycles,
        seen.len(),
        started.elapsed()
    );

    // The day really flapped, and the SMTP server really refused.
    assert!(seen.len() >= cycles, "one incident per flap: {seen:?}");
    assert!(smtp.count("RCPT") >= cycles, "the sender kept trying");
    let now = d.hand.now();
    let rows = rows(&store);
    assert!(
        rows.iter().all(|r| r.status != EmailStatus::Sent),
        "the server refused everything"
    );
    // Retention: nothing pending beyond it, no incident older than retention plus one pruning period.
    let retention = humantime::parse_duration(RETENTION).expect("retention");
    let horizon = retention + harven_watchdog::store::retention::PRUNE_EVERY + CYCLE;
    for r in &rows {
        if r.status == EmailStatus::Pending {
            assert!(
                now.saturating_since(r.created_at)
                    <= retention + harven_watchdog::store::retention::PRUNE_EVERY,
                "{} pending since {}",
                r.key,
                r.created_at
            );
        }
    }
    let max_incidents = (horizon.as_secs() / CYCLE.as_secs()) as usize + 1;
    assert!(
        end.incidents <= max_incidents,
        "{} incidents kept, at most {max_incidents} expected",
        end.incidents
    );
    // Generous bounds on growth from mid-day (retention's steady state) to the end.
    assert!(
        end.outbox_rows <= mid.outbox_rows + 10,
        "{mid:?} -> {end:?}"
    );
    assert!(
        end.store_bytes <= 2 * mid.store_bytes + (1 << 20),
        "{mid:?} -> {end:?}"
    );
    assert!(
        end.live_heap <= mid.live_heap + (16 << 20),
        "live heap grew: {mid:?} -> {end:?}"
    );
    assert!(
        end.rss <= mid.rss + (64 << 20),
        "RSS grew: {mid:?} -> {end:?}"
    );
    d.stop().await;
}
