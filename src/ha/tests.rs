//! The role state machine as step-by-step scripts on a simulated clock: the pure [`Machine`] first,
//! then the [`run`] task against a [`MemoryLeases`] arbiter shared by two replicas.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::clock::{Clock, ManualClock, Timestamp};

const T0: Timestamp = Timestamp::from_unix_millis(1_795_000_000_000);
const LEASE: Duration = Duration::from_secs(20);
const EVERY: Duration = Duration::from_secs(5);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn the_margin_is_a_tenth_of_the_lease_within_bounds() {
    assert_eq!(margin_of(secs(20)), secs(2));
    assert_eq!(margin_of(secs(2)), Duration::from_millis(500));
    assert_eq!(
        margin_of(Duration::from_millis(600)),
        Duration::from_millis(300)
    );
}

/// Granted, renewed, refused, failed: after each step the role and the validity are as stated.
#[test]
fn the_machine_renews_counts_from_the_round_start_and_demotes_when_refused() {
    let mut m = Machine::new("node-b", LEASE);
    assert_eq!(m.role(), Role::Standby { leader: None });

    // node-a holds it: a standby naming the leader.
    let change = m.on_claim(
        T0,
        &Claimed::Held {
            holder: Some("node-a".into()),
        },
    );
    assert_eq!(
        change.map(|c| c.role),
        Some(Role::Standby {
            leader: Some("node-a".into())
        })
    );

    // Granted: leader, valid from the round's start for the lease less the margin, and the
    // takeover names the replica seen before.
    let start = T0 + secs(25);
    let change = m
        .on_claim(start, &Claimed::Granted { epoch: 2 })
        .expect("a change");
    assert_eq!(change.role, Role::Leader { epoch: 2 });
    assert_eq!(change.took_over_from.as_deref(), Some("node-a"));
    assert_eq!(m.valid_until(), Some(start + secs(18)));

    // Renewed under the same epoch: no change, the validity moves.
    assert_eq!(
        m.on_claim(start + EVERY, &Claimed::Granted { epoch: 2 }),
        None
    );
    assert_eq!(m.valid_until(), Some(start + EVERY + secs(18)));

    // A failed and a timed-out round keep the lead.
    assert_eq!(
        m.on_claim(start + secs(10), &Claimed::Failed { reason: "busy" }),
        None
    );
    assert_eq!(m.on_claim(start + secs(15), &Claimed::TimedOut), None);
    assert_eq!(
        m.on_time(start + EVERY + secs(18) - Duration::from_millis(1)),
        None
    );
    assert!(m.role().is_leader());

    // Another holder's valid lease demotes at once.
    let change = m.on_claim(
        start + secs(16),
        &Claimed::Held {
            holder: Some("node-c".into()),
        },
    );
    assert_eq!(
        change.map(|c| c.role),
        Some(Role::Standby {
            leader: Some("node-c".into())
        })
    );
    assert_eq!(m.valid_until(), None);
}

/// Renewals that fail: the leader keeps its role until its validity ends, then demotes itself, and
/// that is strictly before the lease the database granted expires.
#[test]
fn failing_renewals_demote_at_the_validity_strictly_before_the_database_expiry() {
    let mut m = Machine::new("node-a", LEASE);
    // The database grants at its own now, some time after the round started.
    let started = T0;
    let granted_at = T0 + Duration::from_millis(300);
    let db_expiry = granted_at + LEASE;
    m.on_claim(started, &Claimed::Granted { epoch: 1 });
    let valid = m.valid_until().expect("leader");
    assert!(valid < db_expiry, "{valid} must be before {db_expiry}");
    assert!(db_expiry.saturating_since(valid) >= margin_of(LEASE));

    for at in [5, 10, 15] {
        assert_eq!(
            m.on_claim(T0 + secs(at), &Claimed::TimedOut),
            None,
            "at {at} s"
        );
        assert_eq!(m.on_time(T0 + secs(at)), None);
    }
    let change = m.on_time(valid).expect("demoted at the validity's end");
    assert_eq!(change.role, Role::Standby { leader: None });
    // A grant regained later is a new term: a takeover again.
    let change = m.on_claim(T0 + secs(40), &Claimed::Granted { epoch: 3 });
    assert_eq!(change.map(|c| c.role), Some(Role::Leader { epoch: 3 }));
}

/// A grant under a new epoch while leader (the lead was lost and regained between two rounds this
/// replica saw) is a new term, published as a change.
#[test]
fn a_new_epoch_while_leader_is_a_new_term() {
    let mut m = Machine::new("node-a", LEASE);
    m.on_claim(T0, &Claimed::Granted { epoch: 1 });
    let change = m.on_claim(T0 + EVERY, &Claimed::Granted { epoch: 4 });
    assert_eq!(change.map(|c| c.role), Some(Role::Leader { epoch: 4 }));
}

/// The task of one replica, on the shared clock, against the shared arbiter.
struct Running {
    role: watch::Receiver<Role>,
    leadership: Leadership,
    replica: Arc<Replica>,
    metrics: HaMetrics,
    /// The store finding its rounds report to (registered in `registry`).
    health: StoreHealth,
    registry: prometheus_client::registry::Registry,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start(arbiter: &Arc<MemoryLeases>, node: &str, clock: &Clock) -> Running {
    let mut registry = prometheus_client::registry::Registry::with_prefix("harven_watchdog");
    let metrics = HaMetrics::register(&mut registry);
    let health = StoreHealth::new("db:5432/watchdog", true);
    health.register_metrics(&mut registry);
    let (publish, leadership) = Publish::channel(node, metrics.clone());
    let publish = publish.reporting_to(health.clone());
    let role = leadership.watch();
    let replica = arbiter.replica();
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(
        Arc::clone(&replica) as Arc<dyn Leases>,
        node.to_owned(),
        Timing {
            lease: LEASE,
            renew_every: EVERY,
        },
        clock.clone(),
        publish,
        stop.clone(),
    ));
    Running {
        role,
        leadership,
        replica,
        metrics,
        health,
        registry,
        stop,
        task,
    }
}

/// The next change `r` publishes, with whom it took over from (real time bounds only the wait:
/// liveness, not timing).
async fn next_change(r: &mut Running) -> Change {
    tokio::time::timeout(Duration::from_secs(10), r.role.changed())
        .await
        .expect("a change within 10 s")
        .expect("the task runs");
    let role = r.role.borrow_and_update().clone();
    Change {
        took_over_from: role
            .is_leader()
            .then(|| r.leadership.took_over_from())
            .flatten(),
        role,
    }
}

/// Waits until `r`'s task has answered every round due by now: the arbiter's lease is as `want`
/// says. Liveness only.
async fn until(what: &str, mut want: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if want() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("never: {what}");
}

fn exposition(registry: &prometheus_client::registry::Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).expect("encode");
    out
}

/// Moves `hand` forward `by` in one-second steps, letting the tasks run after each.
async fn advance(hand: &ManualClock, by: Duration) {
    let mut left = by;
    while !left.is_zero() {
        let step = left.min(secs(1));
        hand.advance(step);
        left -= step;
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Two replicas: the first to claim leads, the other names it; the leader is cut off, keeps its
/// role until its validity, demotes itself before the lease expires, and the standby takes over
/// within lease + renew_every; reconnected, the old leader is a standby naming the new one; the
/// new one stops cleanly and releases, and the first takes over at its next round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_hand_the_lead_over_when_the_leader_is_cut_off() {
    let (clock, hand) = Clock::manual(T0);
    let arbiter = MemoryLeases::new(clock.clone());
    let mut a = start(&arbiter, "node-a", &clock);
    assert_eq!(next_change(&mut a).await.role, Role::Leader { epoch: 1 });
    assert_eq!(a.replica.fence(), Some(("node-a".to_owned(), 1)));
    let mut b = start(&arbiter, "node-b", &clock);
    assert_eq!(
        next_change(&mut b).await.role,
        Role::Standby {
            leader: Some("node-a".into())
        }
    );
    assert_eq!(b.replica.fence(), None, "a standby has no fence");

    // Renewals keep the lead: several rounds, one epoch.
    advance(&hand, secs(12)).await;
    until("node-a renewed", || {
        arbiter.expires_at() == Some(T0 + secs(10) + LEASE)
    })
    .await;
    assert!(a.role.borrow().is_leader());

    // Cut off: node-a's rounds fail, it keeps the lead until its validity and then demotes, while
    // the database still holds its lease.
    arbiter.cut("node-a", true);
    let expiry = arbiter.expires_at().expect("held");
    let cut_at = hand.now();
    loop {
        advance(&hand, secs(1)).await;
        if !a.role.borrow().is_leader() {
            break;
        }
        assert!(hand.now() < expiry, "still leader at the expiry");
    }
    let demoted_at = hand.now();
    assert!(
        demoted_at < expiry,
        "demoted at {demoted_at}, the lease expires at {expiry}"
    );
    assert_eq!(arbiter.current().map(|c| c.0).as_deref(), Some("node-a"));
    assert_eq!(
        next_change(&mut a).await.role,
        Role::Standby { leader: None }
    );
    assert_eq!(a.replica.fence(), None, "the fence is cleared on demotion");
    assert!(!a.replica.fence_holds());

    // node-b takes over once the lease expires, within the bound from the cut.
    loop {
        advance(&hand, secs(1)).await;
        if b.role.borrow().is_leader() {
            break;
        }
        assert!(
            hand.now().saturating_since(cut_at) <= LEASE + EVERY + secs(1),
            "no takeover within the bound"
        );
    }
    let change = next_change(&mut b).await;
    assert_eq!(change.role, Role::Leader { epoch: 2 });
    assert_eq!(change.took_over_from.as_deref(), Some("node-a"));
    assert!(b.replica.fence_holds(), "the new leader's fence passes");
    let text = exposition(&b.registry);
    for line in [
        "harven_watchdog_leader 1",
        "harven_watchdog_takeovers_total 1",
        "harven_watchdog_lease_renewals_total{outcome=\"held_elsewhere\"} ",
    ] {
        assert!(text.contains(line), "no {line} in\n{text}");
    }
    let text = exposition(&a.registry);
    assert!(text.contains("harven_watchdog_leader 0"), "{text}");
    assert!(
        !text.contains("lease_renewals_total{outcome=\"failed\"} 0"),
        "{text}"
    );

    // Reconnected: node-a names the new leader.
    arbiter.cut("node-a", false);
    advance(&hand, EVERY).await;
    assert_eq!(
        next_change(&mut a).await.role,
        Role::Standby {
            leader: Some("node-b".into())
        }
    );

    // node-b stops cleanly: it releases, and node-a takes over at its next round.
    b.stop.cancel();
    b.task.await.expect("stops");
    advance(&hand, EVERY).await;
    let change = next_change(&mut a).await;
    assert_eq!(change.role, Role::Leader { epoch: 3 });
    assert_eq!(change.took_over_from.as_deref(), Some("node-b"));
    a.stop.cancel();
    a.task.await.expect("stops");
    let _ = a.metrics;
}

/// A renewal that never answers times out after one interval; the leader still demotes itself at
/// its validity's end, and not later, while the call hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_renewal_times_out_and_the_leader_demotes_at_its_validity() {
    let (clock, hand) = Clock::manual(T0);
    let arbiter = MemoryLeases::new(clock.clone());
    let mut a = start(&arbiter, "node-a", &clock);
    assert_eq!(next_change(&mut a).await.role, Role::Leader { epoch: 1 });
    let valid_until = T0 + LEASE - margin_of(LEASE);

    arbiter.stall("node-a", true);
    loop {
        advance(&hand, secs(1)).await;
        if !a.role.borrow().is_leader() {
            break;
        }
        assert!(hand.now() <= valid_until, "still leader past its validity");
    }
    assert!(hand.now() >= valid_until && hand.now() < T0 + LEASE);
    let text = exposition(&a.registry);
    assert!(
        !text.contains("harven_watchdog_lease_renewals_total{outcome=\"timeout\"} 0"),
        "{text}"
    );
    assert_eq!(
        next_change(&mut a).await.role,
        Role::Standby { leader: None }
    );
    // Unblocked: the next grant is a new term (the lease lapsed meanwhile).
    arbiter.stall("node-a", false);
    advance(&hand, LEASE).await;
    until("node-a leads again", || a.role.borrow().is_leader()).await;
    a.stop.cancel();
    a.task.await.expect("stops");
}

#[test]
fn solo_is_always_leader_and_says_so() {
    let solo = Leadership::solo("node-a");
    assert!(solo.is_leader());
    assert_eq!(solo.describe(), "solo");
    assert!(!Solo.is_shared());
    assert_eq!(Solo.claim("x", LEASE).expect("granted"), Some(SOLO_EPOCH));
    let (publish, shared) = Publish::channel("node-b", HaMetrics::default());
    let tx = publish.role;
    tx.send_replace(Role::Standby {
        leader: Some("node-a".into()),
    });
    assert_eq!(shared.describe(), "standby (leader: node-a)");
    tx.send_replace(Role::Standby { leader: None });
    assert_eq!(shared.describe(), "standby (leader: unknown)");
    tx.send_replace(Role::Leader { epoch: 7 });
    assert_eq!(shared.describe(), "leader");
}

/// The store finding from the lease rounds (issue 17): the database cut off from both replicas is
/// a failing store on each, the standby's rounds counting as much as the leader's, since the first
/// failing round; a round that hangs is one too; answered again, both are up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_replicas_find_the_store_down_while_their_rounds_fail() {
    let (clock, hand) = Clock::manual(T0);
    let arbiter = MemoryLeases::new(clock.clone());
    let mut a = start(&arbiter, "node-a", &clock);
    assert_eq!(next_change(&mut a).await.role, Role::Leader { epoch: 1 });
    let mut b = start(&arbiter, "node-b", &clock);
    next_change(&mut b).await;
    for r in [&a, &b] {
        assert!(r.health.is_up());
        assert!(exposition(&r.registry).contains("harven_watchdog_store_up 1\n"));
    }

    // The database is gone for both: each finds it down at its next round.
    arbiter.cut("node-a", true);
    arbiter.cut("node-b", true);
    let cut_at = hand.now();
    advance(&hand, EVERY).await;
    for r in [&a, &b] {
        until("the round failed", || !r.health.is_up()).await;
        let f = r.health.finding().expect("down");
        assert!(f.since >= cut_at && f.since <= cut_at + EVERY, "{f:?}");
        assert!(f.shared);
        assert!(f.unrecorded.is_empty(), "the lease records no page");
        let text = exposition(&r.registry);
        assert!(text.contains("harven_watchdog_store_up 0\n"), "{text}");
        assert!(
            text.contains("harven_watchdog_pages_unrecorded 0\n"),
            "{text}"
        );
    }
    let since = a.health.finding().expect("down").since;
    // More failing rounds keep the first failure's time.
    advance(&hand, EVERY * 2).await;
    assert_eq!(a.health.finding().expect("down").since, since);

    // Back: the next round of each answers.
    arbiter.cut("node-a", false);
    arbiter.cut("node-b", false);
    advance(&hand, EVERY).await;
    for r in [&a, &b] {
        until("the round answered", || r.health.is_up()).await;
        assert!(exposition(&r.registry).contains("harven_watchdog_store_up 1\n"));
    }

    // A round that hangs past its timeout is no answer either.
    arbiter.stall("node-b", true);
    advance(&hand, EVERY * 2).await;
    until("the round timed out", || !b.health.is_up()).await;
    let f = b.health.finding().expect("down");
    assert!(f.error.contains("no answer within"), "{}", f.error);
    arbiter.stall("node-b", false);
    advance(&hand, EVERY * 2).await;
    until("answered again", || b.health.is_up()).await;

    for r in [a, b] {
        r.stop.cancel();
        r.task.await.expect("stops");
    }
}
