//! The outbox, which is also the sent ledger: one row per email key, kept after it is sent so the key
//! is never queued again.
//!
//! Row life: `pending` → `sent` | `failed` (permanent refusal), retried in place while `pending`;
//! `held` (over the per-incident hourly budget) → `digested` (carried by one digest email, itself a
//! `pending` row keyed `<incident>/digest/<n>`).
//!
//! Only the write side reads the outbox (the sender, and the pipeline's depth gauge), so its reads
//! use the writer's connection: a page committed by the pager is never kept from the sender by a
//! queue of HTTP reads. Rows are copied out under the writer's mutex and decoded after it is free.

use std::time::Duration;

use super::sql::{Db, Row, vals};
use super::{Result, Store, StoreError, upsert_incidents};
use crate::clock::Timestamp;
use crate::incident::{Incident, Level, Page, PageEvent};

/// The budget counts the emails created in this rolling window before `now` (the runbook's
/// `max_emails_per_hour`: an hour by definition, not configurable).
pub const BUDGET_WINDOW: Duration = Duration::from_secs(60 * 60);

/// Longest `last_error` kept per row: enough for any SMTP reply, bounded however a peer misbehaves.
const MAX_ERROR_CHARS: usize = 2000;

/// One email the pipeline wants sent: the rendered message and its envelope, keyed by its page key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEmail {
    /// The page key `<incident>/<level>/<event>/<n>`: unique for ever in the ledger.
    pub key: String,
    /// The incident's ID: the budget and the digest are per incident.
    pub incident: String,
    /// The level paged, stored as `L1`…`L3`.
    pub level: Level,
    /// Why it is sent; a `resolved` email is never held by the budget.
    pub event: PageEvent,
    /// Envelope recipients (`RCPT TO`), plain addresses.
    pub recipients: Vec<String>,
    /// The whole RFC 5322 message, headers and body, exactly as it will be sent (and resent).
    pub message: Vec<u8>,
}

impl NewEmail {
    /// The email of `page`, addressed to `recipients`, with its rendered `message`.
    pub fn for_page(page: &Page, recipients: Vec<String>, message: Vec<u8>) -> Self {
        Self {
            key: page.key.clone(),
            incident: page.incident.clone(),
            level: page.level,
            event: page.event,
            recipients,
            message,
        }
    }
}

/// Where an outbox row is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EmailStatus {
    /// Waiting for its `next_attempt_at`; the sender picks it up then.
    Pending,
    /// Accepted by the SMTP server (or written as a file).
    Sent,
    /// Refused for good (a 5xx, a TLS/configuration failure); never retried.
    Failed,
    /// Over the incident's hourly budget; waits to go out inside a digest.
    Held,
    /// Was held and went out inside the digest named by [`OutboxEntry::digest`].
    Digested,
}

impl EmailStatus {
    /// The `status` column's word, which its `CHECK` constraint lists: a stored format.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Held => "held",
            Self::Digested => "digested",
        }
    }

    /// The status a column holds; another word is a file this build did not write: `Corrupt`.
    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "pending" => Self::Pending,
            "sent" => Self::Sent,
            "failed" => Self::Failed,
            "held" => Self::Held,
            "digested" => Self::Digested,
            other => return Err(StoreError::Corrupt(format!("outbox status {other:?}"))),
        })
    }
}

/// One outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The page key, or `<incident>/digest/<n>` for a digest.
    pub key: String,
    /// The incident's ID.
    pub incident: String,
    /// `L1`, `L2` or `L3` (for a digest: the highest level it carries).
    pub level: String,
    /// A page event (`opened`, …, `resolved`) or `digest`.
    pub event: String,
    /// Envelope recipients, as committed.
    pub recipients: Vec<String>,
    /// The message bytes, sent unchanged on every attempt (so a resend is the same message).
    pub message: Vec<u8>,
    /// When it was committed (watchdog clock): what the hourly budget counts by.
    pub created_at: Timestamp,
    /// Where the row is in its life.
    pub status: EmailStatus,
    /// Send attempts so far, the successful one included.
    pub attempts: u32,
    /// While pending: the earliest time the sender tries it (again).
    pub next_attempt_at: Option<Timestamp>,
    /// The latest failure (redacted by the transport), kept after a success for the record.
    pub last_error: Option<String>,
    /// Set once, when the server accepted it.
    pub sent_at: Option<Timestamp>,
    /// Set once, when it failed for good.
    pub failed_at: Option<Timestamp>,
    /// For a digested row: the key of the digest email that carried it.
    pub digest: Option<String>,
    /// The lease epoch of the leader that queued it (0 on a single node): a new leader holds the
    /// rows of earlier terms for a while, in case their leader sent them and could not record it.
    pub epoch: i64,
}

impl OutboxEntry {
    /// Whether the sender may try it at `now`: pending, its `next_attempt_at` come, and queued under
    /// `min_epoch` or later (0: any).
    pub fn is_due(&self, now: Timestamp, min_epoch: i64) -> bool {
        self.status == EmailStatus::Pending
            && self.next_attempt_at.is_some_and(|at| at <= now)
            && self.epoch >= min_epoch
    }
}

/// What [`Store::commit`] did with each email key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitOutcome {
    /// Stored `pending`, due now.
    pub queued: Vec<String>,
    /// Stored `held`: over the incident's hourly budget; it goes out in a digest.
    pub held: Vec<String>,
    /// Already in the ledger (pending, sent, failed, held or digested): not stored again.
    pub duplicates: Vec<String>,
}

/// Pending and held rows: the `harven_watchdog_outbox_depth` gauge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxDepth {
    /// Rows waiting for the sender (due or backing off).
    pub pending: u64,
    /// Rows waiting for a digest.
    pub held: u64,
}

impl OutboxDepth {
    /// Every email not out yet.
    pub fn total(self) -> u64 {
        self.pending + self.held
    }
}

/// An incident with held emails, and when its budget lets a digest out (`at <= now`: now).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestSlot {
    /// The incident whose held emails it is for.
    pub incident: String,
    /// When the digest may go: the sender sleeps until the earliest slot.
    pub at: Timestamp,
}

/// The digest that replaces an incident's held emails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDigest {
    /// From [`Store::next_digest_key`]: `<incident>/digest/<n>`.
    pub key: String,
    /// The incident whose held emails it carries (checked against each held row).
    pub incident: String,
    /// The highest level among the held emails.
    pub level: Level,
    /// Envelope recipients (the union of the held emails').
    pub recipients: Vec<String>,
    /// The rendered digest, stored and sent like any email.
    pub message: Vec<u8>,
    /// The keys of the held rows it carries.
    pub replaces: Vec<String>,
}

/// The columns [`raw_entry`] reads, in its order.
const COLUMNS: &str = "key, incident, level, event, recipients, message, created_at, status, \
                       attempts, next_attempt_at, last_error, sent_at, failed_at, digest, epoch";

/// A row as the database returns it, before the JSON and the status are decoded.
struct RawEntry {
    key: String,
    incident: String,
    level: String,
    event: String,
    recipients: String,
    message: Vec<u8>,
    created_at: i64,
    status: String,
    attempts: u32,
    next_attempt_at: Option<i64>,
    last_error: Option<String>,
    sent_at: Option<i64>,
    failed_at: Option<i64>,
    digest: Option<String>,
    epoch: i64,
}

/// One row, by [`COLUMNS`]' positions.
fn raw_entry(mut r: Row) -> Result<RawEntry> {
    Ok(RawEntry {
        key: r.take(0)?,
        incident: r.take(1)?,
        level: r.take(2)?,
        event: r.take(3)?,
        recipients: r.take(4)?,
        message: r.take(5)?,
        created_at: r.take(6)?,
        status: r.take(7)?,
        attempts: r.take(8)?,
        next_attempt_at: r.take(9)?,
        last_error: r.take(10)?,
        sent_at: r.take(11)?,
        failed_at: r.take(12)?,
        digest: r.take(13)?,
        epoch: r.take(14)?,
    })
}

impl RawEntry {
    /// Decodes the recipients' JSON and the status, after the connection is given back.
    fn decode(self) -> Result<OutboxEntry> {
        let ts = Timestamp::from_unix_millis;
        Ok(OutboxEntry {
            recipients: serde_json::from_str(&self.recipients)?,
            status: EmailStatus::parse(&self.status)?,
            key: self.key,
            incident: self.incident,
            level: self.level,
            event: self.event,
            message: self.message,
            created_at: ts(self.created_at),
            attempts: self.attempts,
            next_attempt_at: self.next_attempt_at.map(ts),
            last_error: self.last_error,
            sent_at: self.sent_at.map(ts),
            failed_at: self.failed_at.map(ts),
            digest: self.digest,
            epoch: self.epoch,
        })
    }
}

/// `error` cut at [`MAX_ERROR_CHARS`] characters (never inside one), marked `…` when cut.
fn truncate(error: &str) -> String {
    match error.char_indices().nth(MAX_ERROR_CHARS) {
        Some((i, _)) => format!("{}…", &error[..i]),
        None => error.to_owned(),
    }
}

/// Emails of `incident` that count against its budget at `now`: pending or sent, created in the
/// rolling hour before `now`. Held rows do not count (they have not gone out); a digest does, once.
fn budget_used(db: &mut dyn Db, incident: &str, now: Timestamp) -> Result<u32> {
    db.query_value(
        "SELECT COUNT(*) FROM outbox WHERE incident = ?1 AND status IN ('pending', 'sent')
         AND created_at > ?2",
        vals![incident, (now - BUDGET_WINDOW).as_unix_millis()],
    )
}

/// Whether `incident` has emails waiting for a digest: a new one then waits too, even within
/// the budget, so nothing overtakes what is already held.
fn has_held(db: &mut dyn Db, incident: &str) -> Result<bool> {
    db.exists(
        "SELECT 1 FROM outbox WHERE incident = ?1 AND status = 'held' LIMIT 1",
        vals![incident],
    )
}

impl Store {
    /// Records `incidents` and queues `emails` in **one transaction**, so a page is on disk exactly
    /// when the incident state that produced it is.
    ///
    /// An email whose key is already in the outbox (whatever its status) is not stored again: it is
    /// reported in [`CommitOutcome::duplicates`]. With a `budget`, an email of an incident that already
    /// has `budget` emails created in the rolling hour before `now` (pending or sent), or that already
    /// has held emails (so the digest keeps their order), is stored `held` instead of `pending`;
    /// `resolved` emails are never held: the all-clear always goes out at once.
    ///
    /// Fenced: on a shared store, only the replica holding the lease commits (see `lease.rs`).
    pub fn commit(
        &self,
        incidents: &[Incident],
        emails: &[NewEmail],
        budget: Option<u32>,
        now: Timestamp,
    ) -> Result<CommitOutcome> {
        let epoch = self.queued_epoch();
        self.fenced(|db| {
            upsert_incidents(db, incidents)?;
            let mut outcome = CommitOutcome::default();
            for email in emails {
                if db.exists("SELECT 1 FROM outbox WHERE key = ?1", vals![&email.key])? {
                    outcome.duplicates.push(email.key.clone());
                    continue;
                }
                let held = match budget {
                    Some(budget) if email.event != PageEvent::Resolved => {
                        has_held(db, &email.incident)?
                            || budget_used(db, &email.incident, now)? >= budget
                    }
                    _ => false,
                };
                let (status, next) = if held {
                    (EmailStatus::Held, None)
                } else {
                    (EmailStatus::Pending, Some(now.as_unix_millis()))
                };
                db.execute(
                    "INSERT INTO outbox (key, incident, level, event, recipients, message,
                         created_at, status, next_attempt_at, epoch)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    vals![
                        &email.key,
                        &email.incident,
                        email.level.as_str(),
                        email.event.as_str(),
                        serde_json::to_string(&email.recipients)?,
                        &email.message,
                        now.as_unix_millis(),
                        status.as_str(),
                        next,
                        epoch,
                    ],
                )?;
                if held {
                    outcome.held.push(email.key.clone());
                } else {
                    outcome.queued.push(email.key.clone());
                }
            }
            Ok(outcome)
        })
    }

    /// Up to `limit` pending emails whose `next_attempt_at` has come, oldest (first created) first.
    /// By `seq`, not `created_at`: one commit stamps its emails with one `now`, and `seq` keeps
    /// their order (an incident's `opened` before its `escalated`).
    pub fn due(&self, now: Timestamp, limit: usize) -> Result<Vec<OutboxEntry>> {
        let batch = self.batch(now, 0, limit)?;
        Ok(batch.into_iter().take_while(|e| e.is_due(now, 0)).collect())
    }

    /// The sender's batch: up to `limit` pending emails, first those due at `now` from `min_epoch`
    /// on ([`OutboxEntry::is_due`]), then the others, each part oldest first (by `seq`). The sender
    /// sends the due ones and keeps the batch in memory: what it may still send, within its lease,
    /// if the store stops answering.
    pub fn batch(&self, now: Timestamp, min_epoch: i64, limit: usize) -> Result<Vec<OutboxEntry>> {
        self.entries(
            &format!(
                "SELECT {COLUMNS} FROM outbox WHERE status = 'pending'
                 ORDER BY CASE WHEN next_attempt_at <= ?1 AND epoch >= ?2 THEN 0 ELSE 1 END, seq
                 LIMIT ?3"
            ),
            vals![
                now.as_unix_millis(),
                min_epoch,
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
        )
    }

    /// Records that `key` was accepted by the server at `now`. False when `key` was not pending.
    pub fn mark_sent(&self, key: &str, now: Timestamp) -> Result<bool> {
        self.update_pending(
            "UPDATE outbox SET status = 'sent', sent_at = ?2, attempts = attempts + 1,
                 next_attempt_at = NULL
             WHERE key = ?1 AND status = 'pending'",
            vals![key, now.as_unix_millis()],
        )
    }

    /// Records a failed attempt that will be retried at `next_at`. False when `key` was not pending.
    pub fn mark_retry(&self, key: &str, next_at: Timestamp, error: &str) -> Result<bool> {
        self.update_pending(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3
             WHERE key = ?1 AND status = 'pending'",
            vals![key, next_at.as_unix_millis(), truncate(error)],
        )
    }

    /// Records a permanent failure at `now`: the email is never tried again. False when `key` was not
    /// pending.
    pub fn mark_failed(&self, key: &str, now: Timestamp, error: &str) -> Result<bool> {
        self.update_pending(
            "UPDATE outbox SET status = 'failed', failed_at = ?2, attempts = attempts + 1,
                 next_attempt_at = NULL, last_error = ?3
             WHERE key = ?1 AND status = 'pending'",
            vals![key, now.as_unix_millis(), truncate(error)],
        )
    }

    /// Records that the server accepted `key` at `at`, **unfenced**: a delivery is a fact, not a
    /// decision, so whichever replica knows it records it, leader or not (one that sent from its
    /// batch while the store was down, and lost the lead meanwhile). A pending or failed row becomes
    /// sent; false when it already was (or is no email of the outbox).
    pub fn record_sent(&self, key: &str, at: Timestamp) -> Result<bool> {
        self.write(|db| {
            let changed = db.execute(
                "UPDATE outbox SET status = 'sent', sent_at = ?2, attempts = attempts + 1,
                     next_attempt_at = NULL, failed_at = NULL
                 WHERE key = ?1 AND status IN ('pending', 'failed')",
                vals![key, at.as_unix_millis()],
            )?;
            Ok(changed == 1)
        })
    }

    /// Runs an `UPDATE … WHERE key = ?1 AND status = 'pending'`: only a pending row moves, so a
    /// repeated or late mark changes nothing (a sent row never turns failed) and says so. Fenced:
    /// the sender's bookkeeping.
    fn update_pending(&self, sql: &str, params: &[super::sql::Value]) -> Result<bool> {
        self.fenced(|db| Ok(db.execute(sql, params)? == 1))
    }

    /// Makes every pending email due at `now`: a new sender (after a restart, often one that fixed the
    /// SMTP settings) tries the backlog at once instead of waiting out the old backoff.
    pub fn retry_pending_now(&self, now: Timestamp) -> Result<usize> {
        self.fenced(|db| {
            let changed = db.execute(
                "UPDATE outbox SET next_attempt_at = ?1 WHERE status = 'pending' AND next_attempt_at > ?1",
                vals![now.as_unix_millis()],
            )?;
            Ok(usize::try_from(changed).unwrap_or(usize::MAX))
        })
    }

    /// The earliest `next_attempt_at` of the pending emails: when the sender next has work.
    pub fn next_due(&self) -> Result<Option<Timestamp>> {
        self.next_due_from(0)
    }

    /// [`next_due`](Self::next_due) of the emails queued under `min_epoch` or later.
    pub fn next_due_from(&self, min_epoch: i64) -> Result<Option<Timestamp>> {
        let at: Option<i64> = self.on_writer(|db| {
            db.query_value(
                "SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending' AND epoch >= ?1",
                vals![min_epoch],
            )
        })?;
        Ok(at.map(Timestamp::from_unix_millis))
    }

    /// How many emails are pending and held.
    pub fn outbox_depth(&self) -> Result<OutboxDepth> {
        let (pending, held): (i64, i64) = self.on_writer(|db| {
            db.query_opt(
                "SELECT COALESCE(SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END), 0),
                        COALESCE(SUM(CASE WHEN status = 'held' THEN 1 ELSE 0 END), 0)
                 FROM outbox WHERE status IN ('pending', 'held')",
                &[],
                |mut r| Ok((r.take(0)?, r.take(1)?)),
            )
            .map(Option::unwrap_or_default)
        })?;
        Ok(OutboxDepth {
            pending: u64::try_from(pending).unwrap_or(0),
            held: u64::try_from(held).unwrap_or(0),
        })
    }

    /// The row of `key`.
    pub fn outbox_entry(&self, key: &str) -> Result<Option<OutboxEntry>> {
        let mut rows = self.entries(
            &format!("SELECT {COLUMNS} FROM outbox WHERE key = ?1"),
            vals![key],
        )?;
        Ok(rows.pop())
    }

    /// Every row of `incident`, in creation order (the incident's email history).
    pub fn outbox_for(&self, incident: &str) -> Result<Vec<OutboxEntry>> {
        self.entries(
            &format!("SELECT {COLUMNS} FROM outbox WHERE incident = ?1 ORDER BY seq"),
            vals![incident],
        )
    }

    /// The held emails of `incident`, in creation order.
    pub fn held_for(&self, incident: &str) -> Result<Vec<OutboxEntry>> {
        self.entries(
            &format!(
                "SELECT {COLUMNS} FROM outbox WHERE incident = ?1 AND status = 'held' ORDER BY seq"
            ),
            vals![incident],
        )
    }

    /// Every incident with held emails and when `budget` lets its digest out: `now` when fewer than
    /// `budget` of its emails were created in the hour before `now` (or there is no budget), else
    /// when the oldest of the newest `budget` ones leaves the window.
    pub fn digest_slots(&self, now: Timestamp, budget: Option<u32>) -> Result<Vec<DigestSlot>> {
        self.on_writer(|db| {
            let incidents: Vec<String> = db.query_map(
                "SELECT DISTINCT incident FROM outbox WHERE status = 'held' ORDER BY incident",
                &[],
                |mut r| r.take(0),
            )?;
            let mut slots = Vec::with_capacity(incidents.len());
            for incident in incidents {
                let at = match budget {
                    None => now,
                    Some(budget) => {
                        // The `budget`-th newest email in the window: once it is an hour old, fewer
                        // than `budget` count. `max(1)` only keeps the offset from underflowing; the
                        // configuration refuses a budget of 0.
                        let oldest_of_newest: Option<i64> = db.query_opt(
                            "SELECT created_at FROM outbox WHERE incident = ?1
                             AND status IN ('pending', 'sent') AND created_at > ?2
                             ORDER BY created_at DESC LIMIT 1 OFFSET ?3",
                            vals![
                                &incident,
                                (now - BUDGET_WINDOW).as_unix_millis(),
                                i64::from(budget.max(1) - 1)
                            ],
                            |mut r| r.take(0),
                        )?;
                        oldest_of_newest
                            .map_or(now, |c| Timestamp::from_unix_millis(c) + BUDGET_WINDOW)
                    }
                };
                slots.push(DigestSlot { incident, at });
            }
            Ok(slots)
        })
    }

    /// The key for the next digest of `incident`: `<incident>/digest/<n>`, `n` counting from 1.
    /// Read on the writer but outside [`Store::release_held`]'s transaction: a key taken in
    /// between makes that call return false, and the caller tries again.
    pub fn next_digest_key(&self, incident: &str) -> Result<String> {
        let n: u32 = self.on_writer(|db| {
            db.query_value(
                "SELECT COUNT(*) FROM outbox WHERE incident = ?1 AND event = 'digest'",
                vals![incident],
            )
        })?;
        Ok(format!("{incident}/digest/{}", n + 1))
    }

    /// In one transaction: queues `digest` (pending, due at `now`) and marks each row it replaces
    /// `digested`. Returns false, changing nothing, when one of those rows is no longer held or the
    /// digest key is taken (the caller builds a fresh digest from [`Store::held_for`]). Fenced.
    pub fn release_held(&self, digest: &NewDigest, now: Timestamp) -> Result<bool> {
        let epoch = self.queued_epoch();
        self.transact(true, |db| {
            for key in &digest.replaces {
                let changed = db.execute(
                    "UPDATE outbox SET status = 'digested', digest = ?2
                     WHERE key = ?1 AND status = 'held' AND incident = ?3",
                    vals![key, &digest.key, &digest.incident],
                )?;
                if changed != 1 {
                    return Ok((false, false)); // rolled back
                }
            }
            let inserted = db.execute(
                "INSERT INTO outbox (key, incident, level, event, recipients, message, created_at,
                     status, next_attempt_at, epoch)
                 VALUES (?1, ?2, ?3, 'digest', ?4, ?5, ?6, 'pending', ?6, ?7)
                 ON CONFLICT (key) DO NOTHING",
                vals![
                    &digest.key,
                    &digest.incident,
                    digest.level.as_str(),
                    serde_json::to_string(&digest.recipients)?,
                    &digest.message,
                    now.as_unix_millis(),
                    epoch,
                ],
            )?;
            Ok((inserted == 1, inserted == 1))
        })
    }

    /// The epoch a row queued now is stamped with: the fence's (the lease this replica pages
    /// under), 0 without one (SQLite).
    fn queued_epoch(&self) -> i64 {
        if self.is_shared() {
            self.fence().map_or(0, |f| f.epoch)
        } else {
            0
        }
    }

    /// The rows `sql` selects ([`COLUMNS`]), copied out on the writer's connection and decoded after.
    fn entries(&self, sql: &str, params: &[super::sql::Value]) -> Result<Vec<OutboxEntry>> {
        let rows: Vec<RawEntry> = self.on_writer(|db| db.query_map(sql, params, raw_entry))?;
        rows.into_iter().map(RawEntry::decode).collect()
    }
}
