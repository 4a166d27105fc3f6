//! The sender against real peers: Debian's aiosmtpd (plaintext, STARTTLS and implicit TLS with a
//! test CA), a scripted SMTP responder for refusals, and the `.eml` directory. Time rules (backoff,
//! the budget hour) run on a manual clock; real-time waits are only for the peers, with deadlines.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harven_watchdog::clock::{Clock, ManualClock};
use harven_watchdog::config::{Locale, SmtpServer as SmtpServerConfig, TlsMode};
use harven_watchdog::incident::{Incident, Level, Page, PageEvent};
use harven_watchdog::notify::{
    self, AnyTransport, Backoff, FileTransport, NotifyMetrics, SenderConfig, SmtpTransport,
    Transport,
};
use harven_watchdog::pipeline::pager::PagerMetrics;
use harven_watchdog::secret::Secret;
use harven_watchdog::store::{EmailStatus, NewEmail, OutboxEntry, Store};
use lettre::Message;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{MultiPart, SinglePart};
use prometheus_client::registry::Registry;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::store::{T0, incident};
use crate::support::smtp::{ReceivedMail, Script, ScriptedSmtp, SmtpServer, TestCa};

/// Deadline for anything a real peer or the sender task does.
const PEER: Duration = Duration::from_secs(30);
const FROM: &str = "watchdog@harven.ai";

/// The rendered email of page (`level`, `event`, `n`) of `inc`: multipart, threaded to the
/// incident's first email, with a Message-ID made from the key.
fn page_email(inc: &Incident, level: Level, event: PageEvent, n: u32, to: &str) -> NewEmail {
    let page = Page::new(inc, level, event, n, inc.opened_at);
    let root = format!("<{}@harven.ai>", inc.id);
    let id = format!("<{}@harven.ai>", page.key.replace('/', "."));
    let subject = format!(
        "[Harven][{level}][major] Taxa de erro 12,4% > 5% — provável: Supabase ({event} {n})"
    );
    let text = format!(
        "Incidente {}: {event} para {level} (#{n}).\nSintoma: taxa de erro 12,4% (limite 5%)\n\
         Causa provável: errors.supabase_down\nAção: verificar status.supabase.com\n",
        inc.id
    );
    let x = |name: &str, value: &str| {
        HeaderValue::new(
            HeaderName::new_from_ascii(name.to_owned()).expect("header name"),
            value.to_owned(),
        )
    };
    let mut b = Message::builder()
        .from(FROM.parse().unwrap())
        .to(to.parse().unwrap())
        .subject(subject)
        .message_id(Some(if event == PageEvent::Opened && level == Level::L1 {
            root.clone()
        } else {
            id
        }))
        .raw_header(x("X-Harven-Incident", &inc.id))
        .raw_header(x("X-Harven-Section", &inc.section))
        .raw_header(x("X-Harven-Level", level.as_str()))
        .raw_header(x("X-Harven-Event", event.as_str()))
        .raw_header(x("X-Harven-Cause", &inc.cause));
    if !(event == PageEvent::Opened && level == Level::L1) {
        b = b.in_reply_to(root.clone()).references(root);
    }
    let message = b
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(text.clone()),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(format!("<pre>{text}</pre>")),
                ),
        )
        .expect("message")
        .formatted();
    NewEmail::for_page(&page, vec![to.to_owned()], message)
}

fn l1(inc: &Incident, event: PageEvent, n: u32) -> NewEmail {
    page_email(inc, Level::L1, event, n, "devops@harven.ai")
}

/// A sender task on a manual clock, with its store, registry and handles.
struct Rig {
    _dir: tempfile::TempDir,
    path: PathBuf,
    store: Arc<Store>,
    clock: Clock,
    hand: ManualClock,
    wake: Arc<Notify>,
    metrics: NotifyMetrics,
    /// The pager's counts (held emails), over `metrics`: what the pager's commit records.
    pager_metrics: PagerMetrics,
    registry: Registry,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
    budget: Option<u32>,
}

impl Rig {
    fn new(budget: Option<u32>) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/watchdog.db");
        let store = Arc::new(Store::open(&path).unwrap());
        let (clock, hand) = Clock::manual(T0);
        let mut registry = Registry::with_prefix("harven_watchdog");
        let metrics = NotifyMetrics::register(&mut registry);
        let pager_metrics = PagerMetrics::register(&mut registry, metrics.clone());
        Rig {
            _dir: dir,
            path,
            store,
            clock,
            hand,
            wake: Arc::new(Notify::new()),
            metrics,
            pager_metrics,
            registry,
            shutdown: CancellationToken::new(),
            task: None,
            budget,
        }
    }

    fn start<T: Transport>(&mut self, transport: T) {
        let mut config = SenderConfig::new(FROM.parse().unwrap());
        config.max_emails_per_hour = self.budget;
        config.locale = Locale::En;
        self.shutdown = CancellationToken::new();
        self.task = Some(tokio::spawn(notify::run(
            self.store.clone(),
            transport,
            config,
            self.clock.clone(),
            self.wake.clone(),
            self.metrics.clone(),
            harven_watchdog::ha::Leadership::solo("node-a"),
            self.shutdown.clone(),
        )));
    }

    /// Commits `emails` as the pager does (one transaction, held ones counted, the sender woken).
    fn enqueue(&self, emails: &[NewEmail]) -> harven_watchdog::store::CommitOutcome {
        harven_watchdog::pipeline::pager::commit(
            &self.store,
            &[],
            emails,
            self.budget,
            self.hand.now(),
            &self.pager_metrics,
            &self.wake,
        )
        .expect("enqueue")
    }

    fn entry(&self, key: &str) -> OutboxEntry {
        self.store.outbox_entry(key).unwrap().expect("row")
    }

    /// Waits (real time, bounded) until every row of `keys` is sent.
    async fn wait_sent(&self, keys: &[&str]) {
        self.wait_rows("sent", keys, |r| r.status == EmailStatus::Sent)
            .await;
    }

    /// Waits (real time, bounded) until every row of `keys` satisfies `ok`.
    async fn wait_rows(&self, what: &str, keys: &[&str], ok: impl Fn(&OutboxEntry) -> bool) {
        let found = crate::support::wait_until(PEER, Duration::from_millis(20), || {
            let all = keys.iter().all(|k| ok(&self.entry(k)));
            async move { all }
        })
        .await;
        if let Err(e) = found {
            let rows: Vec<OutboxEntry> = keys.iter().map(|k| self.entry(k)).collect();
            panic!(
                "{what}: {e}; rows: {:#?}",
                rows.iter()
                    .map(|r| (
                        &r.key,
                        r.status,
                        r.attempts,
                        r.next_attempt_at,
                        &r.last_error
                    ))
                    .collect::<Vec<_>>()
            );
        }
    }

    fn metrics_text(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).unwrap();
        out
    }

    /// Waits until the sender has set the outbox gauge to `depth` (it does so after each round).
    async fn wait_depth(&self, depth: f64) {
        self.wait_sample("harven_watchdog_outbox_depth", depth)
            .await;
    }

    /// Waits until `series` reads `value` (the sender records after its store writes).
    async fn wait_sample(&self, series: &str, value: f64) {
        let found = crate::support::wait_until(PEER, Duration::from_millis(20), || {
            let text = self.metrics_text();
            let now = text
                .lines()
                .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
                .and_then(|v| v.trim().parse::<f64>().ok());
            async move { now == Some(value) }
        })
        .await;
        if let Err(e) = found {
            panic!("{series} never read {value}: {e}\n{}", self.metrics_text());
        }
    }

    /// Stops the sender and checks it stops promptly.
    async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the sender stops promptly at shutdown")
                .expect("the sender task did not panic");
        }
    }
}

fn smtp_config(port: u16, tls: TlsMode) -> SmtpServerConfig {
    SmtpServerConfig {
        host: "127.0.0.1".to_owned(),
        port,
        tls,
        credentials: None,
        timeout: Duration::from_secs(10),
        ca_file: None,
    }
}

fn smtp_to(server: &SmtpServer) -> SmtpTransport {
    SmtpTransport::new(&smtp_config(server.port(), TlsMode::None)).expect("transport")
}

/// Sends a throwaway one-line email to `devops@harven.ai` through `transport`, for the tests that
/// expect it refused, and returns the error; panics with `why` it should have failed when it goes
/// through.
async fn refused_send(transport: &SmtpTransport, why: &str) -> notify::SendError {
    transport
        .send(
            "k",
            FROM,
            &["devops@harven.ai".to_owned()],
            b"Subject: x\r\n\r\nx\r\n",
        )
        .await
        .expect_err(why)
}

/// Asserts that `mails` are `n` distinct emails, each arrived exactly once (by Message-ID).
fn assert_each_once(mails: &[ReceivedMail], n: usize) {
    let mut seen = BTreeMap::<&str, usize>::new();
    for m in mails {
        let id = m
            .header("Message-ID")
            .expect("every email has a Message-ID");
        *seen.entry(id).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), n, "{seen:?}\n{mails:#?}");
    assert!(seen.values().all(|c| *c == 1), "{seen:?}\n{mails:#?}");
}

fn sample(text: &str, series: &str) -> f64 {
    crate::support::daemon::sample(text, series)
        .unwrap_or_else(|| panic!("{series} missing from:\n{text}"))
}

#[test]
fn backoff_doubles_from_two_seconds_to_five_minutes_with_bounded_jitter() {
    let b = Backoff::default();
    let secs: Vec<u64> = (1..=10).map(|n| b.delay(n).as_secs()).collect();
    assert_eq!(secs, vec![2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    assert_eq!(b.delay(u32::MAX), Duration::from_secs(300));
    for n in 1..=12 {
        for _ in 0..200 {
            let d = b.jittered(n);
            assert!(
                d <= b.delay(n) && d >= b.delay(n).mul_f64(0.8),
                "{n}: {d:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_email_is_delivered_once_and_marked_sent() {
    let server = SmtpServer::start().await;
    let mut rig = Rig::new(None);
    rig.start(smtp_to(&server));
    let inc = incident("errors", T0);
    let opened = l1(&inc, PageEvent::Opened, 0);
    let out = rig.enqueue(std::slice::from_ref(&opened));
    assert_eq!(out.queued, vec![opened.key.clone()]);

    let mails = server.wait_for_messages(1, PEER).await;
    rig.wait_sent(&[&opened.key]).await;
    let row = rig.entry(&opened.key);
    assert_eq!((row.attempts, row.sent_at), (1, Some(T0)));
    let mail = &mails[0];
    assert_eq!(mail.mail_from.as_deref(), Some(FROM));
    assert_eq!(mail.rcpt_to, vec!["devops@harven.ai".to_owned()]);
    assert_eq!(
        mail.header("Message-ID"),
        Some(format!("<{}@harven.ai>", inc.id).as_str())
    );
    assert!(mail.subject().unwrap().contains("provável: Supabase"));

    // Asked again for the same page (and a new one): the page is not repeated.
    let reminder = l1(&inc, PageEvent::Reminder, 1);
    let out = rig.enqueue(&[opened.clone(), reminder.clone()]);
    assert_eq!(out.duplicates, vec![opened.key.clone()]);
    let mails = server.wait_for_messages(2, PEER).await;
    rig.wait_sent(&[&reminder.key]).await;
    assert_each_once(&mails, 2);

    rig.wait_depth(0.0).await;
    rig.wait_sample(
        "harven_watchdog_emails_total{level=\"L1\",event=\"reminder\",result=\"sent\"}",
        1.0,
    )
    .await;
    let text = rig.metrics_text();
    assert_eq!(
        sample(
            &text,
            "harven_watchdog_emails_total{level=\"L1\",event=\"opened\",result=\"sent\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(&text, "harven_watchdog_email_send_duration_seconds_count"),
        2.0
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_smtp_is_down_emails_wait_with_growing_backoff_and_then_arrive_once() {
    let mut server = SmtpServer::start().await;
    server.stop();
    let mut rig = Rig::new(None);
    rig.start(smtp_to(&server));
    let inc = incident("database", T0);
    let emails = [
        l1(&inc, PageEvent::Opened, 0),
        page_email(
            &inc,
            Level::L2,
            PageEvent::Escalated,
            0,
            "techlead@harven.ai",
        ),
        l1(&inc, PageEvent::Reminder, 1),
    ];
    let keys: Vec<&str> = emails.iter().map(|e| e.key.as_str()).collect();
    rig.enqueue(&emails);

    // Each round of failures pushes every email back by the doubled delay (less jitter), counts
    // the attempt and keeps the email pending; nothing is lost.
    for round in 1..=4u32 {
        let now = rig.hand.now();
        rig.wait_rows(&format!("attempt {round}"), &keys, |r| r.attempts == round)
            .await;
        let delay = Backoff::default().delay(round);
        for key in &keys {
            let row = rig.entry(key);
            assert_eq!(row.status, EmailStatus::Pending);
            let next = row
                .next_attempt_at
                .expect("pending rows have a next attempt");
            assert!(
                next <= now + delay && next >= now + delay.mul_f64(0.8),
                "round {round}: {next} not within 80-100% of {delay:?} after {now}"
            );
            let error = row.last_error.expect("the failure is recorded");
            assert!(error.starts_with("connection:"), "{error}");
        }
        assert!(server.messages().is_empty());
        if round < 4 {
            rig.hand.advance(delay);
        }
    }
    rig.wait_sample(
        "harven_watchdog_emails_total{level=\"L2\",event=\"escalated\",result=\"retry\"}",
        4.0,
    )
    .await;
    rig.wait_depth(3.0).await;

    // The server comes back; at the next retry every email arrives, each exactly once.
    server.restart().await;
    rig.hand.advance(Backoff::default().delay(4));
    rig.wait_rows("attempt 5", &keys, |r| r.attempts >= 5).await;
    server.wait_for_messages(3, PEER).await;
    rig.wait_sent(&keys).await;
    assert_each_once(&server.messages(), 3);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_refusal_fails_the_email_and_it_is_never_retried() {
    let peer = ScriptedSmtp::start(Script {
        rcpt_reply: Some("550 5.1.1 <devops@harven.ai>: Recipient address rejected".to_owned()),
        ..Script::default()
    })
    .await;
    let mut rig = Rig::new(None);
    rig.start(SmtpTransport::new(&smtp_config(peer.port(), TlsMode::None)).unwrap());
    let inc = incident("auth", T0);
    let first = l1(&inc, PageEvent::Opened, 0);
    rig.enqueue(std::slice::from_ref(&first));
    rig.wait_rows("failed", &[&first.key], |r| r.status == EmailStatus::Failed)
        .await;
    let row = rig.entry(&first.key);
    assert_eq!(row.attempts, 1);
    assert_eq!(row.failed_at, Some(T0));
    let error = row.last_error.unwrap();
    assert!(
        error.starts_with("permanent:") && error.contains("550"),
        "{error}"
    );

    // An hour later, and after another email went through a full round, the first one has still
    // been tried exactly once.
    rig.hand.advance(Duration::from_secs(3600));
    let second = l1(&inc, PageEvent::Reminder, 1);
    rig.enqueue(std::slice::from_ref(&second));
    rig.wait_rows("failed", &[&second.key], |r| {
        r.status == EmailStatus::Failed
    })
    .await;
    assert_eq!(peer.count("RCPT"), 2, "{:?}", peer.commands());
    assert_eq!(peer.count("DATA"), 0);
    assert_eq!(rig.entry(&first.key).attempts, 1);
    rig.wait_sample(
        "harven_watchdog_emails_total{level=\"L1\",event=\"reminder\",result=\"failed\"}",
        1.0,
    )
    .await;
    let text = rig.metrics_text();
    assert_eq!(
        sample(
            &text,
            "harven_watchdog_emails_total{level=\"L1\",event=\"opened\",result=\"failed\"}"
        ),
        1.0
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_tls_against_a_plaintext_server_sends_nothing() {
    let peer = ScriptedSmtp::start(Script::default()).await;
    let server = SmtpServer::start().await;
    for (port, mode) in [
        (peer.port(), TlsMode::Starttls),
        (server.port(), TlsMode::Starttls),
        (server.port(), TlsMode::Tls),
    ] {
        let transport = SmtpTransport::new(&smtp_config(port, mode)).unwrap();
        let err = refused_send(&transport, "a plaintext server cannot do TLS").await;
        assert_eq!(err.metric_label(), "tls", "{mode:?}: {err}");
        assert!(
            !err.retryable,
            "{mode:?}: a configuration problem is not retried"
        );
    }
    // STARTTLS is not offered: the client says EHLO and stops, before any mail command.
    let commands = peer.commands();
    assert!(
        commands
            .iter()
            .all(|c| !c.starts_with("MAIL") && !c.starts_with("RCPT")),
        "{commands:?}"
    );
    assert!(server.messages().is_empty());

    // Through the sender: the email is failed, not sent in plaintext.
    let mut rig = Rig::new(None);
    rig.start(SmtpTransport::new(&smtp_config(peer.port(), TlsMode::Starttls)).unwrap());
    let inc = incident("errors", T0);
    let e = l1(&inc, PageEvent::Opened, 0);
    rig.enqueue(std::slice::from_ref(&e));
    rig.wait_rows("failed", &[&e.key], |r| r.status == EmailStatus::Failed)
        .await;
    let error = rig.entry(&e.key).last_error.unwrap();
    assert!(
        error.starts_with("tls:") && error.contains("STARTTLS"),
        "{error}"
    );
    assert_eq!(peer.count("MAIL"), 0);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_and_implicit_tls_deliver_with_a_private_ca() {
    crate::support::init();
    let ca = TestCa::generate();
    for (tls, mode) in [
        (ca.starttls(), TlsMode::Starttls),
        (ca.implicit(), TlsMode::Tls),
    ] {
        let server = SmtpServer::start_with(tls).await;

        // Without the CA the certificate is not trusted: a clear, non-retried TLS failure.
        let untrusted = SmtpTransport::new(&smtp_config(server.port(), mode)).unwrap();
        let err = refused_send(&untrusted, "an unknown CA").await;
        assert_eq!(err.metric_label(), "tls", "{mode:?}: {err}");
        assert!(err.detail.contains("UnknownIssuer"), "{mode:?}: {err}");
        assert!(server.messages().is_empty());

        let mut config = smtp_config(server.port(), mode);
        config.ca_file = Some(ca.ca_pem());
        let mut rig = Rig::new(None);
        rig.start(SmtpTransport::new(&config).unwrap());
        let inc = incident("latency", T0);
        let e = l1(&inc, PageEvent::Opened, 0);
        rig.enqueue(std::slice::from_ref(&e));
        let mails = server.wait_for_messages(1, PEER).await;
        rig.wait_sent(&[&e.key]).await;
        assert_eq!(mails.len(), 1, "{mode:?}");
        assert_eq!(mails[0].header("X-Harven-Incident"), Some(inc.id.as_str()));
        rig.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_smtp_each_key_becomes_one_eml_file_written_whole() {
    let mut rig = Rig::new(None);
    let dir = rig.path.parent().unwrap().join("outbox/not/yet/there");
    let files = FileTransport::new(&dir);
    rig.start(AnyTransport::Files(files.clone()));
    let inc = incident("openai_quota", T0);
    let emails = [
        l1(&inc, PageEvent::Opened, 0),
        l1(&inc, PageEvent::Reminder, 1),
    ];
    rig.enqueue(&emails);
    let keys: Vec<&str> = emails.iter().map(|e| e.key.as_str()).collect();
    rig.wait_sent(&keys).await;

    // Sent again (as after a crash before mark_sent): the same file, replaced whole.
    files
        .send(
            &emails[0].key,
            FROM,
            &emails[0].recipients,
            &emails[0].message,
        )
        .await
        .unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            format!("{}_L1_opened_0.eml", inc.id),
            format!("{}_L1_reminder_1.eml", inc.id)
        ],
        "one file per key and no temporary file left behind"
    );
    for e in &emails {
        assert_eq!(std::fs::read(files.path_for(&e.key)).unwrap(), e.message);
        assert_eq!(
            mode(&files.path_for(&e.key)),
            0o600,
            "an email holds live links: its file is the owner's alone"
        );
    }
    assert_eq!(mode(&dir), 0o700, "and so is its directory");
    rig.stop().await;

    // A directory that cannot be created: a retryable failure, the email stays pending.
    let blocker = rig.path.parent().unwrap().join("a-file");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let err = FileTransport::new(blocker.join("outbox"))
        .send("k/L1/opened/0", FROM, &[], b"x")
        .await
        .unwrap_err();
    assert!(err.retryable && err.metric_label() == "io", "{err}");
}

/// The permission bits of `path`.
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Retention takes the `.eml` files with their rows: the files of an incident resolved before the
/// cutoff go with its outbox rows, an older file whose row is already gone (pruned before files
/// were) goes too, and what is recent or still has its row stays, made `0600` if an older version
/// left it readable by others; a directory left `0755` is brought to `0700`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_the_eml_files_of_the_rows_it_prunes_and_keeps_the_rest() {
    use harven_watchdog::incident::IncidentState;
    use std::os::unix::fs::PermissionsExt as _;

    const MIN: Duration = Duration::from_secs(60);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("watchdog.db")).unwrap();
    let outbox = dir.path().join("outbox");
    std::fs::create_dir(&outbox).unwrap();
    std::fs::set_permissions(&outbox, std::fs::Permissions::from_mode(0o755)).unwrap();
    let files = FileTransport::new(&outbox);
    let retention = Duration::from_secs(24 * 60 * 60);

    let old = incident("latency", T0);
    let recent = incident("errors", T0);
    let open_one = incident("redis", T0);
    let old_emails = [
        l1(&old, PageEvent::Opened, 0),
        l1(&old, PageEvent::Resolved, 0),
    ];
    let recent_email = l1(&recent, PageEvent::Opened, 0);
    let open_email = l1(&open_one, PageEvent::Opened, 0);
    let mut all = old_emails.to_vec();
    all.extend([recent_email.clone(), open_email.clone()]);
    store
        .commit(
            &[old.clone(), recent.clone(), open_one.clone()],
            &all,
            None,
            T0,
        )
        .unwrap();
    for e in &all {
        files
            .send(&e.key, FROM, &e.recipients, &e.message)
            .await
            .unwrap();
        assert!(store.mark_sent(&e.key, T0 + MIN).unwrap());
    }
    let resolved = |mut inc: Incident, at| {
        inc.state = IncidentState::Resolved;
        inc.resolved_at = Some(at);
        inc
    };
    store
        .save_incidents(&[
            resolved(old.clone(), T0 + 10 * MIN),
            resolved(recent.clone(), T0 + 23 * 60 * MIN),
        ])
        .unwrap();

    let now = T0 + 10 * MIN + retention + MIN;
    let cutoff = std::time::UNIX_EPOCH
        + Duration::from_millis(u64::try_from((now - retention).as_unix_millis()).unwrap());
    let hour = Duration::from_secs(3600);
    // Files without a row: one older than the cutoff (its row pruned by an older version), one newer
    // (not this round's business), and a temporary file a crash left long ago.
    let orphan_old = outbox.join("auth-20261118T110640Z_L1_opened_0.eml");
    let orphan_new = outbox.join("auth-20261119T110640Z_L1_opened_0.eml");
    let stale_tmp = outbox.join(".auth-20261118T110640Z_L1_reminder_1.eml.tmp");
    for f in [&orphan_old, &orphan_new, &stale_tmp] {
        std::fs::write(f, b"x").unwrap();
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    // Every file's age, explicitly: the old ones before the cutoff, the rest after it.
    let age = |path: &std::path::Path, at: std::time::SystemTime| {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(at)
            .unwrap();
    };
    for e in old_emails.iter().chain([&open_email]) {
        age(&files.path_for(&e.key), cutoff - hour);
    }
    age(&files.path_for(&recent_email.key), cutoff + hour);
    age(&orphan_old, cutoff - hour);
    age(&stale_tmp, cutoff - hour);
    age(&orphan_new, cutoff + hour);

    let pruned =
        harven_watchdog::store::retention::prune_once(&store, &files, now, retention).unwrap();
    assert_eq!((pruned.emails, pruned.incidents), (2, 1), "{pruned:?}");
    for e in &old_emails {
        assert!(
            !files.path_for(&e.key).exists(),
            "{} went with its row",
            e.key
        );
    }
    assert!(!orphan_old.exists(), "an old file without a row goes");
    assert!(!stale_tmp.exists(), "an old temporary file goes");
    for kept in [
        files.path_for(&recent_email.key),
        files.path_for(&open_email.key),
        orphan_new.clone(),
    ] {
        assert!(kept.exists(), "{} stays", kept.display());
        assert_eq!(mode(&kept), 0o600, "{}", kept.display());
    }
    assert_eq!(mode(&outbox), 0o700);

    // Nothing more to do the second time; a missing directory is nothing to do either.
    let again =
        harven_watchdog::store::retention::prune_once(&store, &files, now, retention).unwrap();
    assert!(again.is_empty(), "{again:?}");
    let none = FileTransport::new(dir.path().join("never-written"));
    harven_watchdog::store::retention::prune_once(&store, &none, now, retention).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_way_delivers_every_email_exactly_once() {
    let mut server = SmtpServer::start().await;
    let mut rig = Rig::new(None);
    rig.start(smtp_to(&server));
    let inc = incident("errors", T0);
    let first = l1(&inc, PageEvent::Opened, 0);
    rig.enqueue(std::slice::from_ref(&first));
    server.wait_for_messages(1, PEER).await;
    rig.wait_sent(&[&first.key]).await;

    server.stop();
    let later = [
        page_email(
            &inc,
            Level::L2,
            PageEvent::Escalated,
            0,
            "techlead@harven.ai",
        ),
        l1(&inc, PageEvent::Reminder, 1),
    ];
    rig.enqueue(&later);
    let keys: Vec<&str> = later.iter().map(|e| e.key.as_str()).collect();
    rig.wait_rows("tried", &keys, |r| r.attempts >= 1).await;

    // The daemon dies: the sender task is aborted where it is, the store dropped unclosed.
    rig.task.take().unwrap().abort();
    let path = rig.path.clone();
    let store = std::mem::replace(&mut rig.store, Arc::new(Store::open(&path).unwrap()));
    std::mem::forget(store);
    server.restart().await;

    // A new process, an hour later: reopened store, new sender, new clock.
    let mut rig2 = Rig::new(None);
    rig2.store = Arc::new(Store::open(&path).unwrap());
    rig2.hand.set(T0 + Duration::from_secs(3600));
    rig2.start(smtp_to(&server));
    // Pages the engine re-derives after the restart are duplicates, not new emails.
    let again = rig2.enqueue(&[first.clone(), later[0].clone(), later[1].clone()]);
    assert_eq!(again.duplicates.len(), 3);
    server.wait_for_messages(3, PEER).await;
    rig2.wait_sent(&keys).await;
    assert_each_once(&server.messages(), 3);
    rig2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_emails_go_out_as_one_digest_threaded_with_the_incident() {
    let server = SmtpServer::start().await;
    let mut rig = Rig::new(Some(1));
    rig.start(smtp_to(&server));
    let inc = incident("latency", T0);
    let opened = l1(&inc, PageEvent::Opened, 0);
    let r1 = l1(&inc, PageEvent::Reminder, 1);
    let r2 = page_email(
        &inc,
        Level::L2,
        PageEvent::Escalated,
        0,
        "techlead@harven.ai",
    );
    let out = rig.enqueue(&[opened.clone(), r1.clone(), r2.clone()]);
    assert_eq!(out.queued, vec![opened.key.clone()]);
    assert_eq!(out.held, vec![r1.key.clone(), r2.key.clone()]);
    server.wait_for_messages(1, PEER).await;
    rig.wait_sent(&[&opened.key]).await;
    rig.wait_depth(2.0).await;
    let text = rig.metrics_text();
    assert_eq!(
        sample(
            &text,
            "harven_watchdog_emails_total{level=\"L2\",event=\"escalated\",result=\"held\"}"
        ),
        1.0
    );

    // Just before the hour the budget is still spent: another incident's email goes through a
    // whole round of the sender, and the held ones stay held.
    rig.hand.advance(Duration::from_secs(3599));
    let other = l1(&incident("errors", T0), PageEvent::Opened, 0);
    rig.enqueue(std::slice::from_ref(&other));
    server.wait_for_messages(2, PEER).await;
    rig.wait_sent(&[&other.key]).await;
    assert_eq!(rig.store.held_for(&inc.id).unwrap().len(), 2);

    // At the hour one digest carries both.
    rig.hand.advance(Duration::from_secs(1));
    let mails = server.wait_for_messages(3, PEER).await;
    rig.wait_rows("digested", &[&r1.key, &r2.key], |r| {
        r.status == EmailStatus::Digested
    })
    .await;
    let digest_key = format!("{}/digest/1", inc.id);
    rig.wait_sent(&[&digest_key]).await;
    assert_eq!(mails.len(), 3);
    let digest = &mails[2];
    assert_eq!(digest.header("X-Harven-Event"), Some("digest"));
    assert_eq!(digest.header("X-Harven-Level"), Some("L2"));
    assert_eq!(digest.header("X-Harven-Incident"), Some(inc.id.as_str()));
    assert_eq!(digest.header("X-Harven-Section"), Some("latency"));
    let root = format!("<{}@harven.ai>", inc.id);
    assert_eq!(digest.header("In-Reply-To"), Some(root.as_str()));
    assert_eq!(digest.header("References"), Some(root.as_str()));
    let mut rcpt = digest.rcpt_to.clone();
    rcpt.sort();
    assert_eq!(rcpt, vec!["devops@harven.ai", "techlead@harven.ai"]);
    let body = digest.text().expect("a text body");
    for held in [&r1, &r2] {
        let subject = harven_watchdog::email::digest::summarize(&held.message, 1).subject;
        assert!(body.contains(&subject), "{subject:?} not in:\n{body}");
    }
    assert!(
        body.contains("Sintoma: taxa de erro 12,4% (limite 5%)"),
        "{body}"
    );
    assert!(
        digest.subject().unwrap().contains("2 emails held"),
        "{:?}",
        digest.subject()
    );
    assert_eq!(
        server.messages().len(),
        3,
        "the held emails themselves never go out"
    );
    rig.stop().await;
}

/// Collects everything the tracing subscriber writes.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A single-threaded runtime, so the thread-local subscriber sees the sender task's log lines.
#[tokio::test(flavor = "current_thread")]
async fn the_smtp_password_never_reaches_an_error_a_log_line_or_a_metric() {
    use base64::Engine as _;
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let password = "s3cr3t-Pässwörd!";
    let b64 = base64::engine::general_purpose::STANDARD;
    let forms = [
        password.to_owned(),
        b64.encode(password),
        b64.encode(format!("\0watchdog\0{password}")),
    ];
    let peer = ScriptedSmtp::start(Script {
        auth_reply: Some("535 5.7.8 Authentication credentials invalid".to_owned()),
        ..Script::default()
    })
    .await;
    let mut config = smtp_config(peer.port(), TlsMode::None);
    config.credentials = Some(("watchdog".to_owned(), Secret::new(password)));

    let transport = SmtpTransport::new(&config).unwrap();
    let err = refused_send(&transport, "the login is refused").await;
    assert_eq!(err.metric_label(), "permanent");
    assert!(
        err.detail.contains("535") && err.detail.contains("***"),
        "{err}"
    );
    let debug = format!("{err:?} {transport:?}");

    let mut rig = Rig::new(None);
    rig.start(transport);
    let inc = incident("errors", T0);
    let e = l1(&inc, PageEvent::Opened, 0);
    rig.enqueue(std::slice::from_ref(&e));
    rig.wait_rows("failed", &[&e.key], |r| r.status == EmailStatus::Failed)
        .await;
    rig.stop().await;

    // The peer did get (and echo) the credentials, so the checks below are not vacuous.
    assert!(
        peer.commands().iter().any(|c| c.contains(&forms[2])),
        "{:?}",
        peer.commands()
    );
    let stored = rig.entry(&e.key).last_error.unwrap();
    let log_text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(log_text.contains("email refused for good"), "{log_text}");
    let metrics = rig.metrics_text();
    for (what, text) in [
        ("the SendError", err.to_string()),
        ("Debug output", debug),
        ("the outbox row", stored),
        ("the log", log_text),
        ("/metrics", metrics),
    ] {
        for form in &forms {
            assert!(
                !text.contains(form.as_str()),
                "{what} leaks {form:?}:\n{text}"
            );
        }
    }
}
