//! The lease and the fence, on a real PostgreSQL server: two `Store`s on one database stand for two
//! replicas. Waits for an expiry are bounded polls of the database's own clock, never fixed sleeps.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Kind, Place, T0, escalation, incident};
use crate::store::{Claim, EmailStatus, Fence, Store, StoreError};

/// A short lease, so that an expiry is waited for in about a second.
const SHORT: Duration = Duration::from_secs(1);

/// The longest a poll waits for the database to see a lease expire.
const POLL_LIMIT: Duration = Duration::from_secs(20);

/// Claims for `holder` every 50 ms until the lease is granted; panics past [`POLL_LIMIT`].
fn claim_when_free(store: &Store, holder: &str, ttl: Duration) -> Claim {
    let started = Instant::now();
    loop {
        if let Some(claim) = store.claim_lease(holder, ttl).expect("claim") {
            return claim;
        }
        assert!(
            started.elapsed() < POLL_LIMIT,
            "{holder} never got the lease: {:?}",
            store.lease_holder()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn fence(holder: &str, claim: Claim) -> Option<Fence> {
    Some(Fence {
        holder: holder.into(),
        epoch: claim.epoch,
    })
}

#[test]
fn only_one_replica_claims_and_the_other_takes_over_after_expiry_with_a_new_epoch() {
    let place = Place::new(Kind::Postgres);
    let (a, b) = (place.open_bare(), place.open_bare());
    assert!(a.is_shared() && b.is_shared());
    assert_eq!(a.lease_holder().unwrap(), None, "never claimed");

    let first = a.claim_lease("a", SHORT).unwrap().expect("a free lease");
    assert_eq!(first.epoch, 1);
    assert_eq!(
        b.claim_lease("b", SHORT).unwrap(),
        None,
        "a's lease is valid"
    );
    let held = b.lease_holder().unwrap().expect("a holds it");
    assert_eq!((held.holder.as_str(), held.epoch), ("a", 1));
    assert!(held.expires_in > Duration::ZERO && held.expires_in <= SHORT);

    // a renews: same epoch. Then it stops renewing, and b gets it once it lapses.
    assert_eq!(a.claim_lease("a", SHORT).unwrap(), Some(first));
    let second = claim_when_free(&b, "b", Duration::from_secs(60));
    assert_eq!(second.epoch, 2, "a change of holder bumps the epoch");
    assert_eq!(
        a.claim_lease("a", SHORT).unwrap(),
        None,
        "b's lease is valid"
    );

    // b gives it up cleanly: a takes it at once, with a third epoch; b's old epoch releases nothing.
    b.release_lease("b", second.epoch).unwrap();
    let third = a.claim_lease("a", SHORT).unwrap().expect("released");
    assert_eq!(third.epoch, 3);
    b.release_lease("b", second.epoch).unwrap();
    assert_eq!(a.lease_holder().unwrap().map(|h| h.epoch), Some(3));
}

#[test]
fn a_fenced_commit_after_losing_the_lease_fails_and_writes_nothing() {
    let place = Place::new(Kind::Postgres);
    let (a, b) = (place.open_bare(), place.open_bare());
    let claim = a.claim_lease("a", SHORT).unwrap().expect("free");
    a.set_fence(fence("a", claim));
    let before = incident("latency", T0);
    let email = escalation(&before, 100);
    a.commit(
        std::slice::from_ref(&before),
        std::slice::from_ref(&email),
        None,
        T0,
    )
    .expect("the leader commits");

    // a stops renewing (cut off, paused); b takes over.
    let taken = claim_when_free(&b, "b", Duration::from_secs(60));
    assert_eq!(taken.epoch, claim.epoch + 1);

    let late = incident("errors", T0);
    let late_email = escalation(&late, 100);
    let refused = a.commit(
        std::slice::from_ref(&late),
        std::slice::from_ref(&late_email),
        None,
        T0,
    );
    assert!(matches!(refused, Err(StoreError::Fenced)), "{refused:?}");
    assert_eq!(refused.unwrap_err().metric_label(), "fenced");
    for (what, result) in [
        (
            "save_incidents",
            a.save_incidents(std::slice::from_ref(&late)).map(|_| ()),
        ),
        ("mark_sent", a.mark_sent(&email.key, T0).map(|_| ())),
        ("mark_retry", a.mark_retry(&email.key, T0, "x").map(|_| ())),
        (
            "mark_failed",
            a.mark_failed(&email.key, T0, "x").map(|_| ()),
        ),
        ("retry_pending_now", a.retry_pending_now(T0).map(|_| ())),
        ("prune", a.prune(T0, Duration::from_secs(86400)).map(|_| ())),
    ] {
        assert!(
            matches!(result, Err(StoreError::Fenced)),
            "{what}: {result:?}"
        );
    }
    assert_eq!(
        b.incident(&late.id).unwrap(),
        None,
        "nothing of the refused commit"
    );
    assert_eq!(b.outbox_entry(&late_email.key).unwrap(), None);
    assert_eq!(
        b.outbox_entry(&email.key).unwrap().map(|e| e.status),
        Some(EmailStatus::Pending),
        "the old leader's marks were refused too"
    );

    // The new leader, fenced with its own epoch, goes on from the shared state.
    b.set_fence(fence("b", taken));
    assert!(b.mark_sent(&email.key, T0).unwrap());
    // a's old fence stays refused even if a claims again later: a new epoch, a new fence.
    b.release_lease("b", taken.epoch).unwrap();
    let again = a.claim_lease("a", SHORT).unwrap().expect("released");
    assert!(again.epoch > taken.epoch);
    assert!(matches!(a.save_incidents(&[]), Err(StoreError::Fenced)));
}

#[test]
fn without_a_fence_pager_writes_are_refused_and_the_others_pass() {
    let place = Place::new(Kind::Postgres);
    let store = place.open_bare();
    let inc = incident("auth", T0);
    assert!(matches!(
        store.commit(std::slice::from_ref(&inc), &[], None, T0),
        Err(StoreError::Fenced)
    ));
    // The sign-in's sessions, caches and the link key are no pager's writes.
    store.put_value("sessions", b"[]").unwrap();
    assert_eq!(store.value("sessions").unwrap(), Some(b"[]".to_vec()));
    assert_eq!(store.get_or_create_secret("k").unwrap().len(), 32);
    assert_eq!(store.incident(&inc.id).unwrap(), None);
}

#[test]
fn sqlite_is_one_node_always_the_leader_and_never_fenced() {
    let place = Place::new(Kind::Sqlite);
    let store = place.open_bare();
    assert!(!store.is_shared());
    assert_eq!(
        store.claim_lease("any", SHORT).unwrap(),
        Some(Claim { epoch: 1 })
    );
    assert_eq!(store.lease_holder().unwrap(), None);
    store.set_fence(None);
    let inc = incident("auth", T0);
    store
        .save_incidents(std::slice::from_ref(&inc))
        .expect("never fenced");
    store.release_lease("any", 1).unwrap();
    assert!(store.incident(&inc.id).unwrap().is_some());
}

#[test]
fn two_replicas_opening_one_empty_database_at_once_both_succeed() {
    let place = Arc::new(Place::new(Kind::Postgres));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let place = Arc::clone(&place);
            std::thread::spawn(move || {
                Store::connect(&place.pg_config()).map(|s| s.schema_version())
            })
        })
        .collect();
    for t in threads {
        let version = t.join().expect("no panic").expect("open").expect("version");
        assert_eq!(version, crate::store::schema::VERSION);
    }
}

/// The store is called from async code (the sign-in's sessions, the pages, the daemon's start),
/// here on a current-thread runtime, where the sync `postgres` crate would panic and
/// `block_in_place` is not allowed; dropping the store (and its runtime) there must not panic either.
#[tokio::test]
async fn a_postgres_store_is_called_and_dropped_inside_async_code() {
    let place = Place::new(Kind::Postgres);
    let store = place.open();
    store.put_value("sessions", b"{}").unwrap();
    assert_eq!(store.value("sessions").unwrap(), Some(b"{}".to_vec()));
    let inc = incident("auth", T0);
    store.save_incidents(std::slice::from_ref(&inc)).unwrap();
    assert_eq!(store.incident(&inc.id).unwrap(), Some(inc));
    tokio::task::yield_now().await;
    drop(store);
}
