//! [`MemoryLeases`]: one lease kept in memory with the store's semantics, timed on a [`Clock`]
//! (the "database time" of the replicas that share it), and [`Replica`], one replica's connection
//! to it with its own fence. Tests run several in-process daemons against one arbiter, cut a
//! replica off, stall its calls, and hand the lease over, all on a manual clock.

use std::collections::BTreeSet;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::{LeaderInfo, Leases};
use crate::clock::{Clock, Timestamp};
use crate::store::StoreError;

/// The lease and the faults a test has set.
#[derive(Debug, Default)]
struct Lease {
    /// The holder, its epoch and when its lease expires.
    held: Option<(String, u64, Timestamp)>,
    /// The last epoch granted (epochs are never reused).
    epoch: u64,
    /// Replicas whose calls fail at once (cut off from the database).
    cut: BTreeSet<String>,
    /// Replicas whose calls block until released (a database that does not answer).
    stalled: BTreeSet<String>,
}

/// One lease, shared by every [`Replica`] made from it.
#[derive(Debug)]
pub struct MemoryLeases {
    clock: Clock,
    lease: Mutex<Lease>,
    /// Wakes the calls blocked by [`MemoryLeases::stall`].
    released: Condvar,
}

/// A store error as a cut-off database gives one.
fn unreachable() -> StoreError {
    StoreError::Busy(rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
        Some("the replica is cut off from the lease (test arbiter)".to_owned()),
    ))
}

impl MemoryLeases {
    /// A free lease, timed on `clock`.
    pub fn new(clock: Clock) -> Arc<Self> {
        Arc::new(Self {
            clock,
            lease: Mutex::new(Lease::default()),
            released: Condvar::new(),
        })
    }

    /// One replica's connection to the lease: its own fence, the shared lease.
    pub fn replica(self: &Arc<Self>) -> Arc<Replica> {
        Arc::new(Replica {
            arbiter: Arc::clone(self),
            fence: Mutex::new(None),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Lease> {
        self.lease
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Cuts `node` off (`true`: its calls fail) or reconnects it.
    pub fn cut(&self, node: &str, cut: bool) {
        let mut lease = self.lock();
        if cut {
            lease.cut.insert(node.to_owned());
        } else {
            lease.cut.remove(node);
        }
    }

    /// Makes `node`'s calls block (`true`) until called again with `false`.
    pub fn stall(&self, node: &str, stall: bool) {
        let mut lease = self.lock();
        if stall {
            lease.stalled.insert(node.to_owned());
        } else {
            lease.stalled.remove(node);
        }
        drop(lease);
        self.released.notify_all();
    }

    /// Ends the current lease now, as if it had expired (its holder learns at its next round).
    pub fn expire_now(&self) {
        let now = self.clock.now();
        if let Some((_, _, expires)) = self.lock().held.as_mut() {
            *expires = now;
        }
    }

    /// Who holds a valid lease now, and its epoch.
    pub fn current(&self) -> Option<(String, u64)> {
        let now = self.clock.now();
        self.lock()
            .held
            .as_ref()
            .filter(|(_, _, expires)| now < *expires)
            .map(|(h, e, _)| (h.clone(), *e))
    }

    /// When the current lease expires (database time), valid or not.
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.lock().held.as_ref().map(|(_, _, e)| *e)
    }

    /// Waits while `node` is stalled; then fails if it is cut off.
    fn reach(&self, node: &str) -> Result<MutexGuard<'_, Lease>, StoreError> {
        let mut lease = self.lock();
        while lease.stalled.contains(node) {
            lease = self
                .released
                .wait(lease)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        if lease.cut.contains(node) {
            return Err(unreachable());
        }
        Ok(lease)
    }
}

/// One replica's connection to a [`MemoryLeases`]: the lease is shared, the fence is its own.
#[derive(Debug)]
pub struct Replica {
    arbiter: Arc<MemoryLeases>,
    fence: Mutex<Option<(String, u64)>>,
}

impl Replica {
    /// The fence set now (what the store would check on each pager write).
    pub fn fence(&self) -> Option<(String, u64)> {
        self.fence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Whether a fenced write would pass now: the fence names the valid lease's holder and epoch.
    pub fn fence_holds(&self) -> bool {
        self.fence()
            .is_some_and(|f| self.arbiter.current() == Some(f))
    }
}

impl Leases for Replica {
    fn claim(&self, holder: &str, ttl: Duration) -> Result<Option<u64>, StoreError> {
        let mut lease = self.arbiter.reach(holder)?;
        let now = self.arbiter.clock.now();
        let epoch = match &lease.held {
            Some((h, e, expires)) if now < *expires => {
                if h != holder {
                    return Ok(None);
                }
                *e
            }
            // Free, or expired (its own lapsed lease too: a new term, so an old fence cannot pass).
            _ => {
                lease.epoch += 1;
                lease.epoch
            }
        };
        lease.held = Some((holder.to_owned(), epoch, now + ttl));
        Ok(Some(epoch))
    }

    fn release(&self, holder: &str, epoch: u64) -> Result<(), StoreError> {
        let mut lease = self.arbiter.reach(holder)?;
        if lease
            .held
            .as_ref()
            .is_some_and(|(h, e, _)| h == holder && *e == epoch)
        {
            let now = self.arbiter.clock.now();
            if let Some((_, _, expires)) = lease.held.as_mut() {
                *expires = now;
            }
        }
        Ok(())
    }

    fn holder(&self) -> Result<Option<LeaderInfo>, StoreError> {
        let now = self.arbiter.clock.now();
        let lease = self.arbiter.lock();
        Ok(lease.held.as_ref().map(|(h, e, expires)| LeaderInfo {
            holder: h.clone(),
            epoch: *e,
            expires_in: expires.saturating_since(now),
        }))
    }

    fn set_fence(&self, fence: Option<(String, u64)>) {
        *self
            .fence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fence;
    }

    fn is_shared(&self) -> bool {
        true
    }
}
