//! The sender: emails go out only after they are durably recorded, at most once per key, retried
//! until the server takes them.
//!
//! # The pipeline's end
//!
//! The pager renders its pages and commits them with the incidents in one store transaction
//! ([`Store::commit`]), then wakes the sender through the [`Notify`] both were given. The sender
//! ([`run`]) sends what the store holds: it never sees a page that is not on disk, and nothing else
//! sends email. It knows nothing of incidents or templates: a row's bytes, recipients, level and
//! event are all it reads (the level and event only as metric labels and log fields), and the one
//! email it makes itself, the budget digest, is composed by [`crate::email::digest`].
//!
//! # Exactly once per key, at least once across a crash
//!
//! Each email is keyed by its page key (`<incident>/<level>/<event>/<n>`), `UNIQUE` in the store's
//! outbox, which is also the sent ledger: a key already there is never queued again, so neither the
//! engine asking twice nor a restart repeats a page. The sender marks a row `sent` right after the
//! server's `250`. A crash between that `250` and the mark is the one window left: after the restart
//! that one message is sent again (at-least-once for it, never lost). The stored bytes are resent
//! unchanged, with the same `Message-ID`, so mail clients thread the duplicate onto the original.
//!
//! # Retries and failures
//!
//! A retryable failure (4xx, timeout, refused or dropped connection) keeps the row `pending` with
//! `next_attempt_at` pushed back by [`Backoff`] (2 s doubling to 5 min, with jitter) and `attempts`
//! counted. A permanent failure (5xx, TLS or configuration) marks it `failed`; it is logged at error
//! level and counted in `harven_watchdog_emails_total{result="failed"}`. All retry state lives in the
//! store: the sender holds nothing per email between rounds, so memory does not grow however long the
//! SMTP server is down, and a restart resumes the schedule where it was.
//!
//! # Budget and digest
//!
//! [`Store::commit`] holds an incident's emails beyond `max_emails_per_hour` (never a `resolved`).
//! When the incident's rolling hour frees up, the sender replaces all its held emails by one digest
//! (key `<incident>/digest/<n>`) listing each one's subject and first lines, threaded with the
//! incident; the held rows become `digested`. Its wording is [`crate::email::digest`]'s: the sender
//! only builds it at send time, from the stored messages.
//!
//! # Only the leader sends
//!
//! With replicas on a shared store, only the leader's sender runs rounds ([`crate::ha`]): a standby's
//! waits for the lead, and the role is checked again right before each send, so a leader that lost
//! its lease mid-round sends nothing more (the row stays pending for the new leader). Becoming
//! leader reschedules the pending emails as a restart does. Alone on SQLite it is always leader.
//!
//! # When the store stops answering
//!
//! Each round reads a *batch*: the pending emails, due or backing off ([`Store::batch`]), kept in
//! memory. When the store fails (the shared database is down or out of reach, a full disk), the
//! leader keeps sending the batch's due emails, each only while its lease is still valid (the role
//! is checked before each send, and the lease task demotes the leader before the database can let
//! the lease go). What the server accepts then cannot be marked: it is remembered (`unrecorded`)
//! and recorded as soon as the store answers, **unfenced** ([`Store::record_sent`]): a delivery is
//! a fact, recorded by the replica that knows it, leader or not. New pages are not sent meanwhile:
//! they are decided by the pager, which records them when the store returns.
//!
//! A new leader must not resend what its predecessor sent from its batch and has not recorded yet.
//! Every row carries the epoch of the lease it was queued under; for `hold` (`ha.lease`) after a
//! term begins, the sender leaves the rows of earlier epochs alone, so a predecessor that reaches
//! the database again records its deliveries first. A predecessor still cut off after that is the
//! at-least-once case: its emails are sent again, with the same `Message-ID`.
//!
//! # Timing
//!
//! The sender is a deadline loop: it sends what is due, then sleeps until the earliest of the next
//! retry and the next digest slot (both read from the store, on the daemon's [`Clock`], which tests
//! move by hand), or until the pager wakes it after a commit, or until shutdown.

mod file;
mod smtp;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lettre::message::Mailbox;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, Timestamp};
use crate::config::{Config, EmailTransport, Locale, SmtpConfig};
use crate::ha::{Leadership, Role};
use crate::store::{OutboxEntry, Store, StoreError};

pub use file::FileTransport;
pub use smtp::SmtpTransport;

/// Emails taken from the store per round; a full batch makes the sender go round again at once.
pub const BATCH: usize = 32;

/// How long an in-flight send may finish after shutdown is asked for; past it the email stays
/// pending and goes out after the restart.
pub const SEND_GRACE: Duration = Duration::from_secs(5);

/// Wait after a store failure (disk full, database locked) before the sender tries again.
pub const STORE_RETRY: Duration = Duration::from_secs(5);

/// How often a replica that is no longer the leader tries to record the deliveries it made from its
/// batch while the store did not answer: soon after the store returns, well within a new leader's
/// hold.
pub const RECORD_RETRY: Duration = Duration::from_secs(1);

/// Why a send failed, and whether trying again later can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct SendError {
    pub kind: SendErrorKind,
    /// True: keep the email pending and try again after a backoff. False: mark it failed.
    pub retryable: bool,
    /// What happened, for the log and the outbox row. Never holds the SMTP password (transports
    /// scrub it, whatever the server echoes).
    pub detail: String,
}

/// The kinds of send failure, each with its retry decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendErrorKind {
    /// A 4xx reply: the server asks to try later.
    Transient,
    /// No answer in time.
    Timeout,
    /// Refused, reset or dropped connection; the server is down or restarting.
    Connection,
    /// A local write failed (the `.eml` directory).
    Io,
    /// A 5xx reply (a refused recipient, a rejected message or login) or an address that cannot be
    /// sent to.
    Permanent,
    /// TLS failed: untrusted certificate, STARTTLS not offered, implicit TLS on a plaintext port.
    Tls,
    /// The client cannot proceed with this configuration (no common AUTH mechanism, …).
    Config,
}

impl SendErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Timeout => "timeout",
            Self::Connection => "connection",
            Self::Io => "io",
            Self::Permanent => "permanent",
            Self::Tls => "tls",
            Self::Config => "config",
        }
    }

    /// Whether a later attempt can succeed without anyone changing anything.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Self::Transient | Self::Timeout | Self::Connection | Self::Io
        )
    }
}

impl std::fmt::Display for SendErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl SendError {
    /// An error of `kind`; `retryable` follows from the kind.
    pub fn new(kind: SendErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            retryable: kind.retryable(),
            detail: detail.into(),
        }
    }

    /// A short, stable label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        self.kind.as_str()
    }
}

/// Why a transport could not be built from the configuration (an unreadable CA file, a TLS set-up
/// failure). The daemon reports it at start-up.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub(crate) String);

/// Where emails go. Implementations say whether a failure is worth retrying; they never retry
/// themselves (the sender does, with the schedule in the store).
pub trait Transport: Send + Sync + 'static {
    /// Sends `message` (the complete RFC 5322 bytes, unchanged) from envelope sender `from` to the
    /// envelope recipients `to`. `key` names the email (the file transport's file name).
    fn send(
        &self,
        key: &str,
        from: &str,
        to: &[String],
        message: &[u8],
    ) -> impl Future<Output = Result<(), SendError>> + Send;
}

/// The transport the configuration asks for.
#[derive(Debug)]
pub enum AnyTransport {
    Smtp(SmtpTransport),
    Files(FileTransport),
}

impl AnyTransport {
    /// SMTP when `[smtp] host` is set, else `.eml` files under the data directory.
    pub fn from_config(smtp: &SmtpConfig) -> Result<Self, BuildError> {
        Ok(match &smtp.transport {
            EmailTransport::Smtp(server) => Self::Smtp(SmtpTransport::new(server)?),
            EmailTransport::Files { dir } => Self::Files(FileTransport::new(dir)),
        })
    }
}

impl Transport for AnyTransport {
    async fn send(
        &self,
        key: &str,
        from: &str,
        to: &[String],
        message: &[u8],
    ) -> Result<(), SendError> {
        match self {
            Self::Smtp(t) => t.send(from, to, message).await,
            Self::Files(t) => t.send(key, message).await,
        }
    }
}

impl Transport for SmtpTransport {
    async fn send(
        &self,
        _key: &str,
        from: &str,
        to: &[String],
        message: &[u8],
    ) -> Result<(), SendError> {
        SmtpTransport::send(self, from, to, message).await
    }
}

impl Transport for FileTransport {
    async fn send(
        &self,
        key: &str,
        _from: &str,
        _to: &[String],
        message: &[u8],
    ) -> Result<(), SendError> {
        FileTransport::send(self, key, message).await
    }
}

/// When a failed email is tried again: `first` after the first failure, doubling, at most `max`,
/// each delay shortened by up to a fifth at random so that retries after an outage spread out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(2),
            max: Duration::from_secs(5 * 60),
        }
    }
}

impl Backoff {
    /// The delay after `failures` failed attempts (1 = the first failure), before jitter.
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }

    /// [`delay`](Self::delay) less up to 20% at random: within `[0.8 × delay, delay]`.
    pub fn jittered(&self, failures: u32) -> Duration {
        self.delay(failures).mul_f64(1.0 - fastrand::f64() * 0.2)
    }
}

/// What the sender needs besides the store, the transport and the clock.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// The envelope sender of every email, and the `From` of digests.
    pub from: Mailbox,
    /// The per-incident hourly budget (`escalation.max_emails_per_hour`): when held emails may go out
    /// as a digest. `None`: held emails (from an earlier run with a budget) go out at once.
    pub max_emails_per_hour: Option<u32>,
    pub backoff: Backoff,
    /// The language of digests.
    pub locale: Locale,
    /// How long a new leader of a shared store leaves alone the pending emails queued under earlier
    /// epochs (`ha.lease`): see "When the store stops answering". Unused on an unshared store.
    pub takeover_hold: Duration,
}

impl SenderConfig {
    pub fn new(from: Mailbox) -> Self {
        Self {
            from,
            max_emails_per_hour: None,
            backoff: Backoff::default(),
            locale: Locale::PtBr,
            takeover_hold: Duration::ZERO,
        }
    }

    /// From `smtp.from`, `escalation.max_emails_per_hour` and `runbook.locale`.
    pub fn from_config(config: &Config) -> Self {
        Self {
            from: config.smtp.from.clone(),
            max_emails_per_hour: Some(config.escalation.max_emails_per_hour),
            backoff: Backoff::default(),
            locale: config.runbook.locale,
            takeover_hold: config.ha.lease,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EmailLabels {
    level: String,
    event: String,
    result: &'static str,
}

/// The `result` labels of `emails_total`: the sender's three, and `held`, which the pager counts
/// when its commit holds an email over the budget.
pub const EMAIL_RESULTS: [&str; 4] = ["sent", "retry", "failed", "held"];

/// `harven_watchdog_emails_total{level,event,result}`, `harven_watchdog_outbox_depth` and
/// `harven_watchdog_email_send_duration_seconds`: what became of the outbox's emails. Shared (the
/// families are handles): the sender counts what it sends and sets the gauge after each round; the
/// pager counts what its commits hold and sets the gauge after each commit.
///
/// The level and event labels are whatever the rows carry; the sender does not know their values.
/// Whoever does ([`declare`](Self::declare), from the pager's metrics) creates every label set at 0
/// from the start, so an `increase()` over them sees the first failure (a series born at 1 has no
/// increase to show).
#[derive(Debug, Clone)]
pub struct NotifyMetrics {
    emails: Family<EmailLabels, Counter>,
    depth: Gauge,
    duration: Histogram,
}

impl Default for NotifyMetrics {
    fn default() -> Self {
        Self {
            emails: Family::default(),
            depth: Gauge::default(),
            duration: Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
        }
    }
}

impl NotifyMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "emails",
            "Emails by level, event and result (sent, retry, failed, held)",
            m.emails.clone(),
        );
        registry.register(
            "outbox_depth",
            "Emails waiting in the outbox: pending and held",
            m.depth.clone(),
        );
        registry.register_with_unit(
            "email_send_duration",
            "Time one send attempt took, successful or not",
            Unit::Seconds,
            m.duration.clone(),
        );
        m
    }

    /// Creates `emails_total{level,event,result}` at 0 for every result of [`EMAIL_RESULTS`].
    pub fn declare(&self, level: &str, event: &str) {
        for result in EMAIL_RESULTS {
            let _ = self.emails.get_or_create(&EmailLabels {
                level: level.to_owned(),
                event: event.to_owned(),
                result,
            });
        }
    }

    /// Counts one email held over its incident's hourly budget (by the pager's commit).
    pub fn held(&self, level: &str, event: &str) {
        self.count(level, event, "held");
    }

    fn count(&self, level: &str, event: &str, result: &'static str) {
        self.emails
            .get_or_create(&EmailLabels {
                level: level.to_owned(),
                event: event.to_owned(),
                result,
            })
            .inc();
    }

    /// Sets `outbox_depth` from the store (pending and held rows); a failed read is logged and
    /// leaves the gauge as it was. Synchronous, like the store.
    pub fn set_depth(&self, store: &Store) {
        match store.outbox_depth() {
            Ok(d) => {
                self.depth.set(i64::try_from(d.total()).unwrap_or(i64::MAX));
            }
            Err(e) => {
                tracing::warn!(error = %e, reason = e.metric_label(), "cannot read the outbox depth")
            }
        }
    }
}

/// Sends due emails until `shutdown`: see the module documentation. `wake` is notified by whoever
/// commits emails (the pager, after each commit that queued or held one); `clock` is the daemon's
/// wall clock; `leadership` says whether this replica may send now.
#[allow(clippy::too_many_arguments)]
pub async fn run<T: Transport>(
    store: Arc<Store>,
    transport: T,
    config: SenderConfig,
    clock: Clock,
    wake: Arc<Notify>,
    metrics: NotifyMetrics,
    leadership: Leadership,
    shutdown: CancellationToken,
) {
    let mut role = leadership.watch();
    let mut sender = Sender {
        store,
        transport,
        envelope_from: config.from.email.to_string(),
        config,
        clock,
        metrics,
        unrecorded: Vec::new(),
        batch: Vec::new(),
        hold: None,
        leadership,
    };
    tracing::debug!("email sender started");
    // The epoch whose pending emails were rescheduled: once per term, as at a restart.
    let mut term: Option<u64> = None;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let Role::Leader { epoch } = role.borrow_and_update().clone() else {
            // A standby sends nothing: wait for the lead (or shutdown).
            term = None;
            sender.batch.clear();
            sender.hold = None;
            // What it sent as the leader and could not record yet, it records as soon as it can.
            if !sender.unrecorded.is_empty() && sender.record_unrecorded().await.is_err() {
                tokio::select! {
                    () = tokio::time::sleep(RECORD_RETRY) => {}
                    Ok(()) = role.changed() => {}
                    () = shutdown.cancelled() => return,
                }
                continue;
            }
            tokio::select! {
                changed = role.changed() => if changed.is_err() {
                    // The role's publisher is gone (the daemon is stopping): nothing more to send.
                    shutdown.cancelled().await;
                    return;
                },
                () = shutdown.cancelled() => return,
            }
            continue;
        };
        if term != Some(epoch) {
            term = Some(epoch);
            sender.begin_term(epoch).await;
        }
        let next = match sender.round(&shutdown).await {
            Ok(Round::Again) => continue,
            Ok(Round::Idle(next)) => next,
            Ok(Round::Stop) => return,
            Err(RoundError::Store(e)) if !matches!(e, StoreError::Fenced) => {
                tracing::error!(error = %e, reason = e.metric_label(), retry_in = ?STORE_RETRY, batch = sender.batch.len(), "the store does not answer: the sender sends what its batch holds while the lead lasts, and records it when the store returns");
                let Some(next) = sender.send_from_batch(&shutdown).await else {
                    return;
                };
                let retry = sender.clock.now() + STORE_RETRY;
                Some(next.map_or(retry, |n| n.min(retry)))
            }
            Err(e) => {
                tracing::error!(error = %e, reason = e.metric_label(), retry_in = ?STORE_RETRY, "email sender round failed");
                tokio::select! {
                    () = tokio::time::sleep(STORE_RETRY) => continue,
                    () = shutdown.cancelled() => return,
                }
            }
        };
        let clock = sender.clock.clone();
        let sleep = async move {
            match next {
                Some(at) => clock.sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = sleep => {}
            () = wake.notified() => {}
            Ok(()) = role.changed() => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Why a round of the sender stopped early; the loop logs it and tries again after [`STORE_RETRY`].
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot build the digest of {incident}: {detail}")]
    Digest { incident: String, detail: String },
    #[error("the runtime is shutting down")]
    Cancelled,
}

impl RoundError {
    fn metric_label(&self) -> &'static str {
        match self {
            Self::Store(e) => e.metric_label(),
            Self::Digest { .. } => "digest",
            Self::Cancelled => "cancelled",
        }
    }
}

enum Round {
    /// A full batch went out: there may be more due now.
    Again,
    /// Nothing more is due; sleep until this time (`None`: until woken).
    Idle(Option<Timestamp>),
    /// Shutdown was asked for mid-round.
    Stop,
}

struct Sender<T> {
    store: Arc<Store>,
    transport: T,
    config: SenderConfig,
    envelope_from: String,
    clock: Clock,
    metrics: NotifyMetrics,
    /// Keys the server accepted but whose `mark_sent` failed (the store was failing): recorded
    /// before anything else is sent, so they are not sent twice. At most one batch long.
    unrecorded: Vec<(String, Timestamp)>,
    /// The pending emails of the latest round, less those sent or refused since (at most [`BATCH`]):
    /// what the leader may still send while the store does not answer. Empty while a standby.
    batch: Vec<OutboxEntry>,
    /// While this term's hold lasts: the rows of earlier epochs wait (see the module doc).
    hold: Option<Hold>,
    /// Read right before each send: a replica that lost the lead sends nothing more.
    leadership: Leadership,
}

/// The start of a term's hold: rows queued under an epoch before `min_epoch` wait until `until`.
#[derive(Debug, Clone, Copy)]
struct Hold {
    min_epoch: i64,
    until: Timestamp,
}

/// Runs `f` on the blocking pool with the store.
async fn blocking<T, E, F>(store: &Arc<Store>, f: F) -> Result<T, RoundError>
where
    T: Send + 'static,
    E: Into<RoundError> + Send + 'static,
    F: FnOnce(&Store) -> Result<T, E> + Send + 'static,
{
    let store = Arc::clone(store);
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(r) => r.map_err(Into::into),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(RoundError::Cancelled),
    }
}

impl<T: Transport> Sender<T> {
    /// A new term of this replica as the leader under `epoch`: the pending emails are rescheduled
    /// as at a restart, and on a shared store (the one that stamps rows with epochs) those of
    /// earlier epochs are held (module doc).
    async fn begin_term(&mut self, epoch: u64) {
        self.batch.clear();
        self.hold =
            (self.store.is_shared() && !self.config.takeover_hold.is_zero()).then(|| Hold {
                min_epoch: i64::try_from(epoch).unwrap_or(i64::MAX),
                until: self.clock.now() + self.config.takeover_hold,
            });
        self.reschedule_pending().await;
    }

    /// The lowest epoch whose rows may be sent at `now` (0: any).
    fn min_epoch(&self, now: Timestamp) -> i64 {
        match self.hold {
            Some(hold) if now < hold.until => hold.min_epoch,
            _ => 0,
        }
    }

    /// The end of the hold, while it lasts: the sender wakes then for the rows it held.
    fn hold_end(&self, now: Timestamp) -> Option<Timestamp> {
        self.hold.map(|h| h.until).filter(|until| now < *until)
    }

    /// Makes the pending emails due now, as at a restart: those the previous run (or the previous
    /// leader) left waiting on a backoff go out at once.
    async fn reschedule_pending(&self) {
        let now = self.clock.now();
        match blocking(&self.store, move |s| s.retry_pending_now(now)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                emails = n,
                "retrying the emails left pending by the previous run"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "could not reschedule the pending emails; they keep their backoff")
            }
        }
    }

    async fn round(&mut self, shutdown: &CancellationToken) -> Result<Round, RoundError> {
        self.record_unrecorded().await?;
        self.release_digests().await?;

        let now = self.clock.now();
        let min_epoch = self.min_epoch(now);
        self.batch = blocking(&self.store, move |s| s.batch(now, min_epoch, BATCH)).await?;
        let due = self.due_in_batch(now);
        let full = due.len() == BATCH;
        for entry in due {
            if shutdown.is_cancelled() {
                return Ok(Round::Stop);
            }
            // The role right before each send: a demoted leader stops here, the row stays pending.
            if !self.leadership.is_leader() {
                tracing::info!(key = %entry.key, "no longer the leader: this email is left to the new leader");
                return Ok(Round::Idle(None));
            }
            let Some(result) = self.attempt(&entry, shutdown).await else {
                return Ok(Round::Stop);
            };
            self.record(&entry, result).await?;
        }
        let metrics = self.metrics.clone();
        blocking(&self.store, move |s| {
            metrics.set_depth(s);
            Ok::<_, StoreError>(())
        })
        .await?;
        if full {
            return Ok(Round::Again);
        }
        let budget = self.config.max_emails_per_hour;
        let now = self.clock.now();
        let min_epoch = self.min_epoch(now);
        let hold_end = self.hold_end(now);
        let next = blocking(&self.store, move |s| {
            let retry = s.next_due_from(min_epoch)?;
            let digest = s
                .digest_slots(now, budget)?
                .into_iter()
                .map(|slot| slot.at)
                .min();
            Ok::<_, StoreError>(retry.into_iter().chain(digest).chain(hold_end).min())
        })
        .await?;
        Ok(Round::Idle(next))
    }

    /// One send, bounded at shutdown by [`SEND_GRACE`]. `None`: abandoned at shutdown (the email stays
    /// pending and goes out after the restart).
    async fn attempt(
        &self,
        entry: &OutboxEntry,
        shutdown: &CancellationToken,
    ) -> Option<Result<(), SendError>> {
        let started = Instant::now();
        let send = self.transport.send(
            &entry.key,
            &self.envelope_from,
            &entry.recipients,
            &entry.message,
        );
        tokio::pin!(send);
        let result = tokio::select! {
            r = &mut send => r,
            () = shutdown.cancelled() => match tokio::time::timeout(SEND_GRACE, &mut send).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!(key = %entry.key, "shutdown: abandoned an unfinished send; the email stays pending");
                    return None;
                }
            },
        };
        self.metrics
            .duration
            .observe(started.elapsed().as_secs_f64());
        Some(result)
    }

    /// Writes the result of one attempt to the store, logs it and counts it.
    async fn record(
        &mut self,
        entry: &OutboxEntry,
        result: Result<(), SendError>,
    ) -> Result<(), RoundError> {
        let now = self.clock.now();
        let attempt = entry.attempts + 1;
        let key = entry.key.clone();
        match result {
            Ok(()) => {
                self.forget(&key);
                let k = key.clone();
                if let Err(e) = blocking(&self.store, move |s| s.mark_sent(&k, now)).await {
                    self.unrecorded.push((key, now));
                    return Err(e);
                }
                self.metrics.count(&entry.level, &entry.event, "sent");
                tracing::info!(key = %entry.key, level = %entry.level, event = %entry.event, attempt, "email sent");
            }
            Err(e) if e.retryable => {
                let wait = self.config.backoff.jittered(attempt);
                let next = now + wait;
                self.postpone(&key, next);
                let detail = e.to_string();
                blocking(&self.store, move |s| s.mark_retry(&key, next, &detail)).await?;
                self.metrics.count(&entry.level, &entry.event, "retry");
                tracing::warn!(
                    key = %entry.key, level = %entry.level, event = %entry.event, attempt,
                    reason = e.metric_label(), error = %e.detail, next_attempt = %next,
                    "email not sent; will retry"
                );
            }
            Err(e) => {
                self.forget(&key);
                let detail = e.to_string();
                blocking(&self.store, move |s| s.mark_failed(&key, now, &detail)).await?;
                self.metrics.count(&entry.level, &entry.event, "failed");
                tracing::error!(
                    key = %entry.key, level = %entry.level, event = %entry.event, attempt,
                    reason = e.metric_label(), error = %e.detail,
                    "email refused for good; it will not be retried"
                );
            }
        }
        Ok(())
    }

    /// Marks sent what the server accepted while the store was failing (unfenced: a fact, whoever
    /// leads now).
    async fn record_unrecorded(&mut self) -> Result<(), RoundError> {
        while let Some((key, at)) = self.unrecorded.last().cloned() {
            let k = key.clone();
            blocking(&self.store, move |s| s.record_sent(&k, at)).await?;
            tracing::info!(key = %key, "recorded an email sent while the store did not answer");
            self.unrecorded.pop();
        }
        Ok(())
    }

    /// The store does not answer: sends the batch's due emails while this replica still leads,
    /// remembering each delivery for the store. `None`: shutdown came. Else when the batch next has
    /// an email due (or the hold ends), if ever.
    async fn send_from_batch(&mut self, shutdown: &CancellationToken) -> Option<Option<Timestamp>> {
        let now = self.clock.now();
        let due = self.due_in_batch(now);
        for entry in due {
            if shutdown.is_cancelled() {
                return None;
            }
            if !self.leadership.is_leader() {
                tracing::info!(key = %entry.key, "no longer the leader: this email is left to the new leader");
                return Some(None);
            }
            let result = self.attempt(&entry, shutdown).await?;
            let now = self.clock.now();
            let attempt = entry.attempts + 1;
            match result {
                Ok(()) => {
                    self.forget(&entry.key);
                    self.unrecorded.push((entry.key.clone(), now));
                    self.metrics.count(&entry.level, &entry.event, "sent");
                    tracing::info!(key = %entry.key, level = %entry.level, event = %entry.event, attempt, "email sent from the batch while the store does not answer; recorded when it does");
                }
                Err(e) if e.retryable => {
                    let next = now + self.config.backoff.jittered(attempt);
                    self.postpone(&entry.key, next);
                    self.metrics.count(&entry.level, &entry.event, "retry");
                    tracing::warn!(key = %entry.key, reason = e.metric_label(), error = %e.detail, next_attempt = %next, "email from the batch not sent; will retry");
                }
                Err(e) => {
                    // Not recorded as failed: the row stays pending and is tried (and marked) again
                    // once the store answers.
                    self.forget(&entry.key);
                    tracing::warn!(key = %entry.key, reason = e.metric_label(), error = %e.detail, "email from the batch refused; tried again once the store answers");
                }
            }
        }
        let now = self.clock.now();
        let min_epoch = self.min_epoch(now);
        let next = self
            .batch
            .iter()
            .filter(|e| e.epoch >= min_epoch)
            .filter_map(|e| e.next_attempt_at)
            .chain(self.hold_end(now))
            .min();
        Some(next)
    }

    /// The batch's emails due at `now` (the hold's earlier epochs left out), oldest first.
    fn due_in_batch(&self, now: Timestamp) -> Vec<OutboxEntry> {
        let min_epoch = self.min_epoch(now);
        self.batch
            .iter()
            .filter(|e| e.is_due(now, min_epoch))
            .cloned()
            .collect()
    }

    /// Takes `key` out of the batch: sent or refused, it is never sent from there again.
    fn forget(&mut self, key: &str) {
        self.batch.retain(|e| e.key != key);
    }

    /// A retry of `key` at `next`, in the batch (the store is told too, when it answers).
    fn postpone(&mut self, key: &str, next: Timestamp) {
        if let Some(e) = self.batch.iter_mut().find(|e| e.key == key) {
            e.attempts += 1;
            e.next_attempt_at = Some(next);
        }
    }

    /// Replaces the held emails of every incident whose budget has room by one digest each.
    async fn release_digests(&self) -> Result<(), RoundError> {
        let now = self.clock.now();
        let budget = self.config.max_emails_per_hour;
        let slots = blocking(&self.store, move |s| s.digest_slots(now, budget)).await?;
        for slot in slots.into_iter().filter(|s| s.at <= now) {
            let from = self.config.from.clone();
            let locale = self.config.locale;
            let incident = slot.incident.clone();
            let released = blocking(&self.store, move |s| {
                let held = s.held_for(&incident)?;
                if held.is_empty() {
                    return Ok(None);
                }
                let key = s.next_digest_key(&incident)?;
                let digest = crate::email::digest::build(&key, &held, &from, now, locale).map_err(
                    |detail| RoundError::Digest {
                        incident: incident.clone(),
                        detail,
                    },
                )?;
                Ok::<_, RoundError>(s.release_held(&digest, now)?.then_some((key, held.len())))
            })
            .await?;
            if let Some((key, n)) = released {
                tracing::info!(incident = %slot.incident, digest = %key, held = n, "held emails go out as one digest");
            }
        }
        Ok(())
    }
}
