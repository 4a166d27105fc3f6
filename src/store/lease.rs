//! The lease that makes exactly one replica of a shared store the pager, and the fence every pager
//! and sender write checks.
//!
//! On PostgreSQL the table `lease` has one row: who holds it (`holder`), its `epoch`, and when it
//! expires (`expires_at`, from the **database's** `now()`: replicas' clocks are never compared).
//!
//! **Invariant:** `epoch` grows by one at every change of holder and is never reused; a holder that
//! renews (even after its own lease lapsed, if nobody took it meanwhile) keeps its epoch.
//!
//! **Invariant (fencing):** a fenced write ([`Store::commit`], [`Store::save_incidents`], the
//! sender's marks, [`Store::retry_pending_now`], [`Store::release_held`], [`Store::prune`]) first
//! reads the lease row in its own transaction, `FOR SHARE`, and goes on only if it still names the
//! fence's holder and epoch and has not expired; else it fails [`StoreError::Fenced`] and writes
//! nothing. The row lock makes a concurrent claim by another replica (an `UPDATE` of that row) wait
//! until the fenced transaction ends, so no write of an old leader can commit after a new leader's
//! claim. A replica cut off from the database cannot write at all, and its lease lapses after its
//! `ttl`; the server ends its open transaction within the statement timeout.
//!
//! SQLite is one node's file: always the leader ([`Store::claim_lease`] grants epoch 1), never fenced.

use std::time::Duration;

use super::sql::{Db, Dialect, vals};
use super::{Result, Store, StoreError};

/// A lease the database granted to a holder. `epoch` grows by one at every change of holder,
/// never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// The lease's epoch now: the one to fence writes with.
    pub epoch: i64,
}

/// What every fenced write checks in its own transaction: the lease row still names this holder and
/// epoch and has not expired (database time). A write whose fence does not hold fails with
/// [`StoreError::Fenced`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The replica's holder name, as it claimed.
    pub holder: String,
    /// The epoch its claim returned.
    pub epoch: i64,
}

/// Who holds the lease now (for a standby's `/readyz`, pages and the API's refusal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The holder's name.
    pub holder: String,
    /// Its epoch.
    pub epoch: i64,
    /// How long it still holds it, by the database's clock; `ZERO` if expired.
    pub expires_in: Duration,
}

impl Store {
    /// One round: takes the lease if it is free or expired, renews it (same epoch) if `holder`
    /// holds it, for `ttl` from the database's `now()`. `Ok(None)`: another holder's lease is
    /// valid. SQLite: always `Ok(Some(Claim { epoch: 1 }))`.
    ///
    /// One statement (an upsert whose `WHERE` only lets a free, expired or own row change), so two
    /// replicas claiming at once never both win: the second waits for the first's row lock, then
    /// sees a valid lease of another holder.
    pub fn claim_lease(&self, holder: &str, ttl: Duration) -> Result<Option<Claim>> {
        if !self.is_shared() {
            return Ok(Some(Claim { epoch: 1 }));
        }
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let epoch: Option<i64> = self.on_writer(|db| {
            db.query_opt(
                "INSERT INTO lease (id, holder, epoch, expires_at)
                 VALUES (1, ?1, 1, now() + ?2::bigint * interval '1 millisecond')
                 ON CONFLICT (id) DO UPDATE SET
                     epoch = CASE WHEN lease.holder = excluded.holder THEN lease.epoch
                                  ELSE lease.epoch + 1 END,
                     holder = excluded.holder,
                     expires_at = excluded.expires_at
                 WHERE lease.holder = excluded.holder OR lease.expires_at <= now()
                 RETURNING epoch",
                vals![holder, ttl_ms],
                |mut r| r.take(0),
            )
        })?;
        Ok(epoch.map(|epoch| Claim { epoch }))
    }

    /// Gives the lease up at once (a clean shutdown), only if `holder`/`epoch` still hold it: it
    /// expires now, so a standby takes it at its next claim instead of after the `ttl`.
    pub fn release_lease(&self, holder: &str, epoch: i64) -> Result<()> {
        if !self.is_shared() {
            return Ok(());
        }
        self.on_writer(|db| {
            db.execute(
                "UPDATE lease SET expires_at = now()
                 WHERE id = 1 AND holder = ?1 AND epoch = ?2 AND expires_at > now()",
                vals![holder, epoch],
            )
        })?;
        Ok(())
    }

    /// Who holds the lease now, by the database's clock (a reader); `None` when it was never
    /// claimed, and always on SQLite (no lease: the one node is the leader).
    pub fn lease_holder(&self) -> Result<Option<Holder>> {
        if !self.is_shared() {
            return Ok(None);
        }
        self.read(|db| {
            db.query_opt(
                "SELECT holder, epoch,
                        GREATEST(0, CEIL(EXTRACT(EPOCH FROM (expires_at - now())) * 1000))::bigint
                 FROM lease WHERE id = 1",
                &[],
                |mut r| {
                    let millis: i64 = r.take(2)?;
                    Ok(Holder {
                        holder: r.take(0)?,
                        epoch: r.take(1)?,
                        expires_in: Duration::from_millis(u64::try_from(millis).unwrap_or(0)),
                    })
                },
            )
        })
    }

    /// Sets the fence every *pager and sender write* checks from now on (see the module doc).
    /// `None`: those writes fail `Fenced`. SQLite: kept, but never checked (never fenced).
    pub fn set_fence(&self, fence: Option<Fence>) {
        *self.fence.write().unwrap_or_else(|e| e.into_inner()) = fence;
    }

    /// The fence in force now.
    pub(super) fn fence(&self) -> Option<Fence> {
        self.fence.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The fence check, first in a fenced transaction: the lease row, locked `FOR SHARE` until the
/// transaction ends, must name `fence` and not have expired.
pub(super) fn check(db: &mut dyn Db, fence: &Fence) -> Result<()> {
    debug_assert_eq!(db.dialect(), Dialect::Postgres, "SQLite is never fenced");
    let holds = db.exists(
        "SELECT 1 FROM lease
         WHERE id = 1 AND holder = ?1 AND epoch = ?2 AND expires_at > now()
         FOR SHARE",
        vals![&fence.holder, fence.epoch],
    )?;
    if holds {
        Ok(())
    } else {
        Err(StoreError::Fenced)
    }
}
