//! Retention: what the store may forget after `[store] retention`, and the task that forgets it.
//!
//! The outbox is also the sent ledger, so a row may only go once its key can never be asked for again.
//! A page key names its incident (`<incident>/…`), and an incident's pages can only be asked for while
//! it is open or may still reopen. Validation makes `retention` longer than `escalation.reopen_within`,
//! so an incident resolved more than `retention` ago can never reopen, and nothing can produce its keys
//! again: its final rows (`sent`, `failed`, `digested`) and then the incident itself are deleted. A new
//! incident of the same section gets a new ID (the time it opened), hence new keys.
//!
//! A row still `pending` or `held` after `retention` is a page the SMTP server never took in all that
//! time: it is marked `failed` (logged, so an operator sees it) rather than retried for ever, so an
//! outage of any length leaves the store bounded. Run-time maintenance windows that ended more than
//! `retention` ago go too.
//!
//! Emails written as `.eml` files (no `[smtp] host`) hold live signed links: after each prune the task
//! hands a [`Sweep`] the keys of the rows it deleted and those still in the outbox, so the file of
//! every deleted row goes and older files left without a row are swept, and the directory is bounded
//! like the store. The store knows nothing of files: the sender's file transport implements
//! [`Sweep`] (`notify::FileTransport`), and the daemon hands it to [`run`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::sql::vals;
use super::{Result, Store};
use crate::clock::{Clock, Timestamp};

/// How often the retention task runs (on the daemon's clock); it also runs once at start-up.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60 * 60);

/// What one [`Store::prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Pending or held emails older than the retention, given up (marked `failed`).
    pub expired: usize,
    /// Outbox rows deleted (every one final, of an incident resolved before the cutoff).
    pub emails: usize,
    /// Resolved incidents deleted.
    pub incidents: usize,
    /// Run-time maintenance windows deleted.
    pub windows: usize,
    /// The keys of the outbox rows deleted (`emails` of them), whose `.eml` files go too.
    pub forgotten: Vec<String>,
}

impl Pruned {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl Store {
    /// Forgets what is older than `retention` at `now`, in one transaction (see the module doc for what
    /// may go and why a pruned key can never be queued again). Fenced: on a shared store only the
    /// leader prunes.
    pub fn prune(&self, now: Timestamp, retention: Duration) -> Result<Pruned> {
        let cutoff = (now - retention).as_unix_millis();
        let reason = format!(
            "not delivered within the store retention ({})",
            humantime::format_duration(retention)
        );
        self.fenced(|db| {
            let expired = db.execute(
                "UPDATE outbox SET status = 'failed', failed_at = ?1, next_attempt_at = NULL,
                     last_error = ?3
                 WHERE status IN ('pending', 'held') AND created_at < ?2",
                vals![now.as_unix_millis(), cutoff, reason],
            )?;
            let forgotten: Vec<String> = db.query_map(
                "DELETE FROM outbox WHERE status IN ('sent', 'failed', 'digested') AND incident IN (
                     SELECT id FROM incidents WHERE state = 'resolved' AND resolved_at < ?1)
                 RETURNING key",
                vals![cutoff],
                |mut r| r.take(0),
            )?;
            let emails = forgotten.len();
            let incidents = db.execute(
                "DELETE FROM incidents WHERE state = 'resolved' AND resolved_at < ?1
                     AND NOT EXISTS (SELECT 1 FROM outbox WHERE outbox.incident = incidents.id)",
                vals![cutoff],
            )?;
            // A window ended early goes by when it really ended (the earlier of the two ends).
            let windows = db.execute(
                "DELETE FROM windows WHERE
                     CASE WHEN ended_at IS NOT NULL AND ended_at < ends THEN ended_at ELSE ends END < ?1",
                vals![cutoff],
            )?;
            let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
            Ok(Pruned {
                expired: count(expired),
                emails,
                incidents: count(incidents),
                windows: count(windows),
                forgotten,
            })
        })
    }

    /// Every key in the outbox (the emails whose `.eml` files, if any, stay).
    pub fn outbox_keys(&self) -> Result<Vec<String>> {
        self.on_writer(|db| db.query_map("SELECT key FROM outbox", &[], |mut r| r.take(0)))
    }
}

/// What goes with the outbox rows retention deletes, outside the store: the `.eml` files the file
/// transport wrote (`notify::FileTransport` implements it). The store says which keys went and which
/// stay; the implementation deletes what is its own.
pub trait Sweep: Send + Sync + 'static {
    /// Deletes what belongs to `forgotten` (the keys whose rows were just deleted), then what was last
    /// modified before `cutoff` and belongs to no key of `live` (the keys still in the outbox).
    /// Synchronous: called on the blocking pool. A failure is the implementation's to log; the next
    /// round tries again, and the store's pruning stands.
    fn sweep(&self, forgotten: &[String], live: &[String], cutoff: SystemTime);
}

/// One round of retention at `now`: the store, then `files` (the `.eml` files of the rows deleted,
/// and older ones left without a row). A failure to delete files is logged by `files` and left for
/// the next round; the store's pruning stands.
pub fn prune_once<S: Sweep + ?Sized>(
    store: &Store,
    files: &S,
    now: Timestamp,
    retention: Duration,
) -> Result<Pruned> {
    let pruned = store.prune(now, retention)?;
    let live = store.outbox_keys()?;
    let cutoff = std::time::UNIX_EPOCH
        + Duration::from_millis(u64::try_from((now - retention).as_unix_millis()).unwrap_or(0));
    files.sweep(&pruned.forgotten, &live, cutoff);
    Ok(pruned)
}

/// Prunes `store` and sweeps `files` ([`prune_once`]) at start-up and then every [`PRUNE_EVERY`] of
/// `clock` time, until `shutdown`. A failure is logged and tried again at the next round: nothing
/// depends on pruning being prompt.
pub async fn run<S: Sweep>(
    store: Arc<Store>,
    files: S,
    retention: Duration,
    clock: Clock,
    shutdown: CancellationToken,
) {
    let files = Arc::new(files);
    loop {
        let now = clock.now();
        let (task_store, task_files) = (Arc::clone(&store), Arc::clone(&files));
        match tokio::task::spawn_blocking(move || {
            prune_once(&task_store, &*task_files, now, retention)
        })
        .await
        {
            Ok(Ok(p)) if p.is_empty() => {}
            Ok(Ok(p)) => {
                if p.expired > 0 {
                    tracing::error!(
                        emails = p.expired,
                        retention = %humantime::format_duration(retention),
                        "emails never delivered within the store retention were given up"
                    );
                }
                tracing::info!(
                    emails = p.emails,
                    incidents = p.incidents,
                    windows = p.windows,
                    "store pruned"
                );
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "store pruning failed; retried later"),
            Err(e) => tracing::warn!(error = %e, "store pruning task failed; retried later"),
        }
        tokio::select! {
            () = clock.sleep_until(now + PRUNE_EVERY) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
