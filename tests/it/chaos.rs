//! The chaos suite: each peer the daemon talks to — Prometheus, Redis, the Docker Engine, the SMTP
//! server, a status page, Supabase — goes down, hangs, answers garbage, and answers slowly (under and
//! over the daemon's timeout) while an incident is open, through a [`FaultProxy`] in front of the real
//! peer. After every fault the daemon still serves `/healthz`, reports the source failing, raises the
//! `watchdog` section's blindness rule where the runbook has one, and picks the source up again once
//! the fault is gone; over the whole run the open latency incident sends no resolved email, and every
//! email in the ledger (the outbox) reached the SMTP server exactly once.
//!
//! One test per peer runs the faults one after another on the same daemon (one start-up per peer, and
//! the incident accumulates pages across faults). Time rules move on the manual clock; every wait is a
//! poll with a deadline, paced by the daemon's own probe counters, never a fixed sleep.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use harven_watchdog::store::{EmailStatus, Store};

use crate::support::backend::{Scenario, SimBackend, StatusStyle};
use crate::support::daemon::{T0, TestDaemon, prometheus_env, sample};
use crate::support::fault::{Endpoint, Fault, FaultProxy};
use crate::support::ledger::{assert_delivered_exactly_once, drained, rows as ledger};
use crate::support::prometheus::PrometheusServer;
use crate::support::redis::RedisServer;
use crate::support::saas::{FakeStatusPage, FakeSupabase, PageScenario};
use crate::support::smtp::{ReceivedMail, SmtpServer};

/// The daemon's timeout for the peer under test: a hanging peer costs this much real time per call.
const TIMEOUT: Duration = Duration::from_millis(900);

/// The faults every peer goes through, in order; `Slow` once under [`TIMEOUT`] and once over every
/// bound the daemon puts on one call (SMTP bounds a whole send at four timeouts, each read at one).
const FAULTS: [Fault; 5] = [
    Fault::Down,
    Fault::Hang,
    Fault::Garbage,
    Fault::Slow(Duration::from_millis(4_000)),
    Fault::Slow(Duration::from_millis(150)),
];

/// How long a test waits (real time) for any one thing before failing.
const PATIENCE: Duration = Duration::from_secs(120);

/// The clock step between evaluations. Probes poll on real time (every second here), the rules run
/// on the clock: each step waits for a fresh poll.
const STEP: Duration = Duration::from_secs(60);

/// A peer of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Prometheus,
    Redis,
    Docker,
    Smtp,
    StatusPage,
    Supabase,
}

impl Peer {
    /// The probe that reads it (`probe` label of the probe metrics); SMTP is no source.
    fn probe(self) -> Option<&'static str> {
        match self {
            Self::Prometheus => Some("prometheus"),
            Self::Redis => Some("redis"),
            Self::Docker => Some("docker"),
            Self::Smtp => None,
            Self::StatusPage => Some("status.openai"),
            Self::Supabase => Some("supabase"),
        }
    }

    /// What a fault that breaks calls must show: whether the source reads as failing, and the rule
    /// that fires (config/runbook.toml). Prometheus, Redis and Docker have a `watchdog` blindness rule
    /// each. A status page has none: a failing one is only evidence of the `watchdog.blind` cause.
    /// Supabase is the service watched, not a lens: once connected, a hang or a bad answer is its
    /// symptom (`supabase.auth_ok = false`, the auth rule fires) and only a refused connection makes
    /// the source fail (src/probe/supabase.rs).
    fn expect(self, fault: Fault) -> (bool, Option<&'static str>) {
        match self {
            Self::Prometheus => (true, Some("watchdog.prometheus_blind")),
            Self::Redis => (true, Some("watchdog.redis_blind")),
            Self::Docker => (true, Some("watchdog.docker_blind")),
            Self::Supabase if fault != Fault::Down => (false, Some("auth.supabase_auth_failing")),
            Self::Smtp | Self::StatusPage | Self::Supabase => (true, None),
        }
    }
}

/// True when `fault` makes calls fail: a slow answer fails only past every bound the daemon puts on
/// one call (see [`FAULTS`]).
fn breaks(fault: Fault) -> bool {
    match fault {
        Fault::None => false,
        Fault::Slow(d) => d > 4 * TIMEOUT,
        Fault::Down | Fault::Hang | Fault::Garbage => true,
    }
}

/// The real peer behind the proxy when the rig has no other handle on it, kept alive (it stops on
/// drop) for the test.
type Behind = Option<Box<dyn std::any::Any + Send>>;

/// Everything one chaos test runs: the slow backend scraped by a real Prometheus (the latency
/// incident), the real SMTP server, the peer under test behind its proxy, and the daemon.
struct Rig {
    peer: Peer,
    _backend: SimBackend,
    _prom: PrometheusServer,
    smtp: SmtpServer,
    _behind: Behind,
    proxy: FaultProxy,
    data: tempfile::TempDir,
    d: TestDaemon,
}

impl Rig {
    async fn start(peer: Peer) -> Self {
        let backend = SimBackend::start(StatusStyle::Grouped, Scenario::Slow).await;
        let prom = PrometheusServer::start(&[backend.target()]).await;
        let smtp = SmtpServer::start().await;
        let data = tempfile::tempdir().expect("tempdir");
        let tcp = |port: u16| Endpoint::Tcp(([127, 0, 0, 1], port).into());
        let timeout = humantime::format_duration(TIMEOUT).to_string();
        let (behind, proxy, mut overrides): (Behind, FaultProxy, Vec<(&str, String)>) = match peer {
            Peer::Prometheus => {
                let proxy = FaultProxy::tcp(tcp(prom.port())).await;
                let url = format!("http://127.0.0.1:{}", proxy.port());
                (None, proxy, vec![("PROMETHEUS__URL", url)])
            }
            Peer::Redis => {
                let redis = RedisServer::start().await;
                let proxy = FaultProxy::tcp(tcp(redis.port())).await;
                let url = format!("redis://127.0.0.1:{}", proxy.port());
                let o = vec![
                    ("REDIS__URL", url),
                    ("REDIS__INTERVAL", "1s".into()),
                    ("REDIS__TIMEOUT", timeout.clone()),
                ];
                (Some(Box::new(redis)), proxy, o)
            }
            Peer::Docker => {
                let socket = data.path().join("docker.sock");
                let engine = Endpoint::Unix(PathBuf::from("/var/run/docker.sock"));
                let proxy = FaultProxy::unix(&socket, engine).await;
                let o = vec![
                    ("DOCKER__HOST", format!("unix://{}", socket.display())),
                    ("DOCKER__INTERVAL", "1s".into()),
                    ("DOCKER__TIMEOUT", timeout.clone()),
                ];
                (None, proxy, o)
            }
            Peer::Smtp => {
                let proxy = FaultProxy::tcp(tcp(smtp.port())).await;
                let o = vec![
                    ("SMTP__PORT", proxy.port().to_string()),
                    ("SMTP__TIMEOUT", timeout.clone()),
                ];
                (None, proxy, o)
            }
            Peer::StatusPage => {
                let page = FakeStatusPage::start(PageScenario::indicator("none")).await;
                let proxy = FaultProxy::tcp(tcp(page.port())).await;
                let url = format!("http://127.0.0.1:{}/api/v2/status.json", proxy.port());
                let o = vec![
                    ("STATUS__OPENAI__URL", url),
                    ("STATUS__OPENAI__INTERVAL", "1s".into()),
                    ("STATUS__OPENAI__TIMEOUT", timeout.clone()),
                ];
                (Some(Box::new(page)), proxy, o)
            }
            Peer::Supabase => {
                let key = "chaos-anon-key";
                let supabase = FakeSupabase::start(key).await;
                let port = supabase.url().port().expect("port");
                let proxy = FaultProxy::tcp(tcp(port)).await;
                let o = vec![
                    (
                        "SUPABASE__URL",
                        format!("http://127.0.0.1:{}", proxy.port()),
                    ),
                    ("SUPABASE__API_KEY", key.to_owned()),
                    ("SUPABASE__INTERVAL", "1s".into()),
                    ("SUPABASE__TIMEOUT", timeout.clone()),
                ];
                (Some(Box::new(supabase)), proxy, o)
            }
        };
        overrides.extend([
            ("SMTP__HOST", "127.0.0.1".to_owned()),
            ("SMTP__TLS", "none".into()),
            ("RUNBOOK__LOCALE", "en".into()),
            // A reminder every 5 minutes: a fresh page during every fault, so there is one to lose.
            ("ESCALATION__REPEAT_INTERVAL", "5m".into()),
            ("ESCALATION__MAX_EMAILS_PER_HOUR", "1000".into()),
        ]);
        if peer != Peer::Smtp {
            overrides.push(("SMTP__PORT", smtp.port().to_string()));
        }
        let mut env = prometheus_env(&prom.url(), data.path());
        // Later pairs win: the peer's own address replaces the unreachable default.
        env.retain(|(k, _)| {
            !overrides
                .iter()
                .any(|(o, _)| k == &format!("HARVEN_WATCHDOG__{o}"))
        });
        env.extend(
            overrides
                .into_iter()
                .map(|(k, v)| (format!("HARVEN_WATCHDOG__{k}"), v)),
        );
        let d = TestDaemon::start(env, T0).await;
        Self {
            peer,
            _backend: backend,
            _prom: prom,
            smtp,
            _behind: behind,
            proxy,
            data,
            d,
        }
    }

    fn store(&self) -> Store {
        Store::open(self.data.path().join("watchdog.db")).expect("open the store")
    }

    /// Polls the Prometheus probe has completed (the pacing of every step).
    async fn polls(&self) -> f64 {
        let text = self.d.metrics().await;
        sample(
            &text,
            r#"harven_watchdog_probe_duration_seconds_count{probe="prometheus"}"#,
        )
        .unwrap_or(0.0)
    }

    /// Moves the clock one [`STEP`] and waits until the daemon has polled Prometheus again, so every
    /// step is evaluated on fresh reports (however slow the machine).
    async fn step(&self) {
        let before = self.polls().await;
        self.d.hand.advance(STEP);
        let deadline = Instant::now() + PATIENCE;
        while self.polls().await <= before {
            assert!(
                Instant::now() < deadline,
                "{:?}: no poll after a step",
                self.peer
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Steps the clock until `done` holds for the daemon's metrics and received mail.
    async fn until(&self, what: &str, done: impl Fn(&str, &[ReceivedMail], &Store) -> bool) {
        let store = self.store();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = self.d.metrics().await;
            let mail = self.smtp.messages();
            if done(&text, &mail, &store) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{:?}: {what} never happened; latency mail: {:?}\n{}",
                self.peer,
                latency_mail(&mail),
                relevant(&text)
            );
            self.step().await;
        }
    }

    /// `probe_up` of the peer's probe.
    fn up(&self, text: &str) -> Option<f64> {
        let probe = self.peer.probe()?;
        sample(
            text,
            &format!("harven_watchdog_probe_up{{probe=\"{probe}\"}}"),
        )
    }

    /// Whether `rule` has a firing (or recovering) instance.
    fn firing(text: &str, rule: &str) -> bool {
        let section = rule.split('.').next().unwrap_or_default();
        let series =
            format!("harven_watchdog_symptoms_firing{{section=\"{section}\",rule=\"{rule}\"}}");
        sample(text, &series).is_some_and(|n| n > 0.0)
    }
}

/// The latency incident's emails, as `level/event`.
fn latency_mail(mail: &[ReceivedMail]) -> Vec<String> {
    mail.iter()
        .filter(|m| m.header("X-Harven-Section") == Some("latency"))
        .map(|m| {
            format!(
                "{}/{}",
                m.header("X-Harven-Level").unwrap_or("?"),
                m.header("X-Harven-Event").unwrap_or("?")
            )
        })
        .collect()
}

fn count(mail: &[ReceivedMail], level: &str, event: &str) -> usize {
    latency_mail(mail)
        .iter()
        .filter(|m| **m == format!("{level}/{event}"))
        .count()
}

/// The metric lines a failure message needs.
fn relevant(text: &str) -> String {
    text.lines()
        .filter(|l| {
            l.contains("probe_up")
                || l.contains("probe_errors")
                || l.contains("symptoms_firing")
                || l.contains("outbox")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One peer through every fault; see the module doc for what is asserted.
async fn chaos(peer: Peer) {
    let started = Instant::now();
    let rig = Rig::start(peer).await;

    // The incident that must survive the chaos.
    rig.until("the latency L1 email", |_, mail, _| {
        count(mail, "L1", "opened") == 1
    })
    .await;
    if peer.probe().is_some() {
        rig.until("the peer read while healthy", |text, _, _| {
            rig.up(text) == Some(1.0)
        })
        .await;
    }

    for fault in FAULTS {
        let failing = breaks(fault);
        let pages_before = ledger(&rig.store()).len();
        rig.proxy.set(fault);
        match peer.probe() {
            Some(_) if failing => {
                let (source_fails, rule) = peer.expect(fault);
                let want = if source_fails { 0.0 } else { 1.0 };
                rig.until(&format!("{fault:?}: probe_up {want}"), |text, _, _| {
                    rig.up(text) == Some(want)
                })
                .await;
                if let Some(rule) = rule {
                    rig.until(&format!("{fault:?}: {rule} firing"), |text, _, _| {
                        Rig::firing(text, rule)
                    })
                    .await;
                }
            }
            Some(_) => {
                // Slow under the timeout: polls go on succeeding for longer than any `for`.
                let until = rig.d.hand.now() + Duration::from_secs(3 * 60);
                rig.until(&format!("{fault:?}: three minutes of polls"), |_, _, _| {
                    rig.d.hand.now() >= until
                })
                .await;
                let text = rig.d.metrics().await;
                assert_eq!(rig.up(&text), Some(1.0), "{fault:?}: {}", relevant(&text));
                if let (_, Some(rule)) = peer.expect(fault) {
                    assert!(!Rig::firing(&text, rule), "{fault:?}: {}", relevant(&text));
                }
            }
            None => {
                // SMTP: a reminder comes due during the fault; a failing server leaves it pending
                // (never failed for good), a slow one under the timeout takes it.
                rig.until(&format!("{fault:?}: a reminder paged"), |_, _, store| {
                    ledger(store).len() > pages_before
                })
                .await;
                if failing {
                    rig.until(&format!("{fault:?}: a failed attempt"), |_, _, store| {
                        ledger(store)
                            .iter()
                            .any(|r| r.status == EmailStatus::Pending && r.attempts > 0)
                    })
                    .await;
                } else {
                    rig.until(
                        &format!("{fault:?}: the reminder delivered"),
                        |_, _, store| drained(store),
                    )
                    .await;
                }
            }
        }
        // Still serving, whatever the peer does.
        assert_eq!(rig.d.get("/healthz").await.trim(), "ok", "{fault:?}");
        let failed: Vec<String> = ledger(&rig.store())
            .into_iter()
            .filter(|r| r.status == EmailStatus::Failed)
            .map(|r| format!("{} ({:?})", r.key, r.last_error))
            .collect();
        assert!(failed.is_empty(), "{fault:?}: pages given up: {failed:?}");

        rig.proxy.set(Fault::None);
        rig.until(&format!("{fault:?}: recovery"), |text, _, store| {
            rig.up(text).is_none_or(|up| up == 1.0)
                && peer
                    .expect(fault)
                    .1
                    .is_none_or(|rule| !Rig::firing(text, rule))
                && drained(store)
        })
        .await;
    }

    // The escalation clock kept running through the chaos: L2 once, 30 minutes after the open.
    let to_l2 = (T0 + Duration::from_secs(30 * 60)).saturating_since(rig.d.hand.now());
    rig.d.hand.advance(to_l2);
    rig.until("the latency L2 email", |_, mail, _| {
        count(mail, "L2", "escalated") == 1
    })
    .await;
    rig.until("the outbox drained", |_, _, store| drained(store))
        .await;

    let mail = rig.smtp.messages();
    assert_eq!(count(&mail, "L1", "opened"), 1, "{:?}", latency_mail(&mail));
    assert_eq!(
        count(&mail, "L2", "escalated"),
        1,
        "{:?}",
        latency_mail(&mail)
    );
    assert!(
        !latency_mail(&mail).iter().any(|m| m.ends_with("/resolved")),
        "no false resolved email: {:?}",
        latency_mail(&mail)
    );
    assert_delivered_exactly_once(&rig.store(), &mail, "after the chaos");
    let rows = ledger(&rig.store());
    assert!(
        rows.iter()
            .filter(|r| r.incident.starts_with("latency-"))
            .count()
            >= 4,
        "the incident paged through the chaos (L1, reminders, L2): {:?}",
        latency_mail(&mail)
    );
    eprintln!(
        "chaos {peer:?}: {} of clock in {:.1?}",
        humantime::format_duration(rig.d.hand.now().saturating_since(T0)),
        started.elapsed()
    );
    rig.d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_faults_blind_the_watchdog_and_lose_nothing() {
    chaos(Peer::Prometheus).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_faults_blind_the_watchdog_and_lose_nothing() {
    chaos(Peer::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_engine_faults_blind_the_watchdog_and_lose_nothing() {
    chaos(Peer::Docker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_faults_delay_pages_and_lose_none() {
    chaos(Peer::Smtp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_faults_read_as_failing_and_lose_nothing() {
    chaos(Peer::StatusPage).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supabase_faults_read_as_failing_and_lose_nothing() {
    chaos(Peer::Supabase).await;
}
