//! The store as the replicas' lease: the PostgreSQL lease row of `crate::store::lease`, seen through
//! [`Leases`]. On SQLite the store is a single node ([`Store::is_shared`] is false) and the daemon
//! uses [`super::Solo`] instead; the store's own answers there (always granted, never fenced) agree.
//!
//! The store counts epochs as `i64` (a PostgreSQL `BIGINT`) and this module as `u64`: an epoch
//! starts at 1 and only grows, so both conversions are exact for any epoch a database can hold.

use std::time::Duration;

use super::{LeaderInfo, Leases};
use crate::store::{Fence, Store, StoreError};

/// An epoch of ours as the store's `BIGINT`; saturates (an epoch past `i64::MAX` cannot exist).
fn to_store(epoch: u64) -> i64 {
    i64::try_from(epoch).unwrap_or(i64::MAX)
}

/// An epoch of the store's as ours; the store never grants one below 1.
fn from_store(epoch: i64) -> u64 {
    u64::try_from(epoch).unwrap_or(0)
}

impl Leases for Store {
    fn claim(&self, holder: &str, ttl: Duration) -> Result<Option<u64>, StoreError> {
        Ok(self.claim_lease(holder, ttl)?.map(|c| from_store(c.epoch)))
    }

    fn release(&self, holder: &str, epoch: u64) -> Result<(), StoreError> {
        self.release_lease(holder, to_store(epoch))
    }

    fn holder(&self) -> Result<Option<LeaderInfo>, StoreError> {
        Ok(self.lease_holder()?.map(|h| LeaderInfo {
            holder: h.holder,
            epoch: from_store(h.epoch),
            expires_in: h.expires_in,
        }))
    }

    fn set_fence(&self, fence: Option<(String, u64)>) {
        Store::set_fence(
            self,
            fence.map(|(holder, epoch)| Fence {
                holder,
                epoch: to_store(epoch),
            }),
        );
    }

    fn is_shared(&self) -> bool {
        Store::is_shared(self)
    }
}
