//! Leadership between replicas that share one store: exactly one replica pages, and a standby takes
//! over when the leader stops renewing its lease.
//!
//! # Layout
//!
//! - this file: the [`Leases`] seam (what the store offers: claim, release, who holds, the fence),
//!   [`Solo`] (the SQLite default: always leader), the [`Role`] a replica has, published on a
//!   `tokio::sync::watch` through [`Leadership`], its metrics ([`HaMetrics`]) and [`run`], the task
//!   that claims and renews the lease every `renew_every` on the daemon's [`Clock`].
//! - `machine.rs`: the pure state machine ([`Machine`]) the task feeds with times and outcomes.
//! - `memory.rs`: [`MemoryLeases`], an in-memory arbiter with the store's semantics on a [`Clock`],
//!   for tests of one or several in-process daemons.
//!
//! **Invariant:** a leader stops paging before any standby can start: its validity counts from the
//! start of the granted round trip, less a margin ([`machine::margin_of`]), so it demotes itself
//! strictly before the database lets the lease go; the store's fence refuses any pager write that
//! still arrives after that.
//!
//! **Invariant:** with a store that is not shared ([`Leases::is_shared`] false: SQLite) there is no
//! task and no lease: the replica is leader from the start, as it always was (`[ha]` is ignored).

mod machine;
mod memory;
mod store;
#[cfg(test)]
mod tests;

pub use machine::{Change, Claimed, Machine, OUTCOMES, margin_of};
pub use memory::{MemoryLeases, Replica};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, Timestamp};
use crate::config::HaConfig;
use crate::store::StoreError;
use crate::store::health::{LEASE, StoreHealth, Unrecorded};

/// Who holds the lease now, as the store says (for a standby's `/readyz`, pages and refusals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderInfo {
    /// The holder's `ha.node`.
    pub holder: String,
    /// Grows by one at every change of holder, never reused.
    pub epoch: u64,
    /// How long the lease stays valid unless renewed (database time); zero once expired.
    pub expires_in: Duration,
}

/// The lease as the store keeps it. Calls are synchronous and may block (a database round trip):
/// [`run`] makes them on the blocking pool, bounded by a timeout. The store implements it (the
/// PostgreSQL lease row; SQLite is always granted), [`Solo`] and [`MemoryLeases`] too.
pub trait Leases: Send + Sync {
    /// One round: takes the lease for `holder` if it is free or expired, or renews it (same epoch)
    /// if `holder` holds it, for `ttl` from the database's now. `Ok(None)`: another holder's lease
    /// is valid.
    fn claim(&self, holder: &str, ttl: Duration) -> Result<Option<u64>, StoreError>;
    /// Gives the lease up at once (a clean shutdown), only if `holder` still holds it at `epoch`.
    fn release(&self, holder: &str, epoch: u64) -> Result<(), StoreError>;
    /// Who holds the lease now, if anyone ever did.
    fn holder(&self) -> Result<Option<LeaderInfo>, StoreError>;
    /// Sets the fence every pager and sender write checks from now on: the lease row must still
    /// name this holder and epoch. `None`: those writes are refused. Ignored by unshared stores.
    fn set_fence(&self, fence: Option<(String, u64)>);
    /// True when replicas share the store (PostgreSQL); false for SQLite: a single node, always
    /// leader, and `[ha]` is ignored.
    fn is_shared(&self) -> bool;
}

/// A single node that is always leader: the SQLite default. Its claims are granted under epoch 1
/// and nothing is fenced.
#[derive(Debug, Clone, Copy, Default)]
pub struct Solo;

impl Leases for Solo {
    fn claim(&self, _: &str, _: Duration) -> Result<Option<u64>, StoreError> {
        Ok(Some(SOLO_EPOCH))
    }
    fn release(&self, _: &str, _: u64) -> Result<(), StoreError> {
        Ok(())
    }
    fn holder(&self) -> Result<Option<LeaderInfo>, StoreError> {
        Ok(None)
    }
    fn set_fence(&self, _: Option<(String, u64)>) {}
    fn is_shared(&self) -> bool {
        false
    }
}

/// The epoch of a replica on an unshared store.
pub const SOLO_EPOCH: u64 = 1;

/// What a replica is allowed to do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Holds the lease under `epoch`: runs the pager and the sender.
    Leader { epoch: u64 },
    /// Does not: probes and evaluates (warm), serves reads, refuses changes. `leader`: who leads,
    /// when known.
    Standby { leader: Option<String> },
}

impl Role {
    /// Whether this is the leader's role.
    pub fn is_leader(&self) -> bool {
        matches!(self, Self::Leader { .. })
    }
}

/// A replica's role as the rest of the daemon reads it: the current [`Role`] (watched), this
/// replica's name, and whether there are replicas at all. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Leadership {
    node: String,
    shared: bool,
    role: watch::Receiver<Role>,
    /// The replica that led before this one's latest takeover, when known.
    took_over_from: Arc<Mutex<Option<String>>>,
}

impl Leadership {
    /// A replica alone on its store: leader for good, `solo` on `/readyz`.
    pub fn solo(node: impl Into<String>) -> Self {
        let (_, role) = watch::channel(Role::Leader { epoch: SOLO_EPOCH });
        Self {
            node: node.into(),
            shared: false,
            role,
            took_over_from: Arc::default(),
        }
    }

    /// The replica that led before this one's latest takeover, when it was seen.
    pub fn took_over_from(&self) -> Option<String> {
        self.took_over_from
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The role now.
    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// Whether this replica may page and send now.
    pub fn is_leader(&self) -> bool {
        self.role.borrow().is_leader()
    }

    /// This replica's name (`ha.node`).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether replicas share the store (false: solo).
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// A receiver of the role's changes (the watch loop and the sender select on it).
    pub fn watch(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    /// The role in words, for `/readyz`, the status page and `diagnose`: `solo`, `leader` or
    /// `standby (leader: node-a)` (`standby (leader: unknown)` while no holder is known).
    pub fn describe(&self) -> String {
        if !self.shared {
            return "solo".to_owned();
        }
        match self.role() {
            Role::Leader { .. } => "leader".to_owned(),
            Role::Standby { leader } => format!(
                "standby (leader: {})",
                leader.as_deref().unwrap_or("unknown")
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// `harven_watchdog_leader` (1 while this replica pages), `harven_watchdog_takeovers_total` (times it
/// became leader while replicas share the store) and `harven_watchdog_lease_renewals_total{outcome}`
/// (claim rounds by outcome: granted, held_elsewhere, failed, timeout).
#[derive(Debug, Clone, Default)]
pub struct HaMetrics {
    leader: Gauge,
    takeovers: Counter,
    renewals: Family<OutcomeLabels, Counter>,
}

impl HaMetrics {
    /// Registers the families in `registry`, every outcome at 0.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "leader",
            "1 while this replica holds the lead (pages and sends email), else 0; always 1 on an unshared (SQLite) store",
            m.leader.clone(),
        );
        registry.register(
            "takeovers",
            "Times this replica became the leader of a shared store",
            m.takeovers.clone(),
        );
        registry.register(
            "lease_renewals",
            "Lease claim rounds by outcome (granted, held_elsewhere, failed, timeout)",
            m.renewals.clone(),
        );
        for outcome in OUTCOMES {
            let _ = m.renewals.get_or_create(&OutcomeLabels { outcome });
        }
        m
    }

    /// Sets the gauge for `role`.
    pub fn set_role(&self, role: &Role) {
        self.leader.set(i64::from(role.is_leader()));
    }

    fn round(&self, claimed: &Claimed) {
        self.renewals
            .get_or_create(&OutcomeLabels {
                outcome: claimed.outcome(),
            })
            .inc();
    }
}

/// How the task claims: the lease asked for, how often, and how long one round may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// `ha.lease`: how long a grant is valid (database time).
    pub lease: Duration,
    /// `ha.renew_every`: the time between two rounds' starts.
    pub renew_every: Duration,
}

impl Timing {
    /// From `[ha]`.
    pub fn of(config: &HaConfig) -> Self {
        Self {
            lease: config.lease,
            renew_every: config.renew_every,
        }
    }

    /// The longest one round may take before it counts as `timeout`: the interval (a round that
    /// takes longer would overlap the next), and never past the validity a grant gives.
    pub fn round_timeout(&self) -> Duration {
        self.renew_every
            .min(self.lease.saturating_sub(margin_of(self.lease)))
    }

    /// The longest a standby may wait for a dead leader's lease to lapse and be claimed: the lease,
    /// plus one interval until the next round.
    pub fn takeover_bound(&self) -> Duration {
        self.lease + self.renew_every
    }
}

/// Where the task publishes: the role's watch channel, who the lead was taken over from (read by
/// the pager's takeover through [`Leadership::took_over_from`]), the metrics, and the store
/// finding each round reports to.
pub struct Publish {
    pub role: watch::Sender<Role>,
    /// Written before each change of role is sent.
    pub took_over_from: Arc<Mutex<Option<String>>>,
    pub metrics: HaMetrics,
    /// Told after each round whether the database answered it (as [`LEASE`]): a standby's round
    /// counts as much as the leader's, as both ask the same database.
    pub health: StoreHealth,
}

impl Publish {
    /// A channel starting as a standby that knows no leader, and the [`Leadership`] that reads it.
    pub fn channel(node: &str, metrics: HaMetrics) -> (Self, Leadership) {
        let (role, rx) = watch::channel(Role::Standby { leader: None });
        let took_over_from = Arc::new(Mutex::new(None));
        let leadership = Leadership {
            node: node.to_owned(),
            shared: true,
            role: rx,
            took_over_from: Arc::clone(&took_over_from),
        };
        metrics.set_role(&Role::Standby { leader: None });
        (
            Self {
                role,
                took_over_from,
                metrics,
                health: StoreHealth::new("the shared store", true),
            },
            leadership,
        )
    }

    /// Reports the rounds to `health` (the daemon's one finding) instead of a finding of its own.
    #[must_use]
    pub fn reporting_to(mut self, health: StoreHealth) -> Self {
        self.health = health;
        self
    }
}

/// Claims and renews the lease for `node` until `shutdown`: a round every `timing.renew_every` on
/// `clock`, each bounded by [`Timing::round_timeout`] (on the same clock, so a test moves it), and a
/// demotion at the leader's validity's end whatever the store does. At shutdown a leader releases
/// the lease (bounded too), so a standby takes over at its next round rather than at the expiry.
pub async fn run(
    leases: Arc<dyn Leases>,
    node: String,
    timing: Timing,
    clock: Clock,
    publish: Publish,
    shutdown: CancellationToken,
) {
    let mut machine = Machine::new(node.clone(), timing.lease);
    let announce = |change: Option<Change>, machine: &Machine| {
        let Some(change) = change else { return };
        apply_fence(&*leases, &node, &change.role);
        match &change.role {
            Role::Leader { epoch } => {
                publish.metrics.takeovers.inc();
                tracing::warn!(node = %node, epoch, from = ?change.took_over_from, valid_until = ?machine.valid_until().map(|t| t.to_string()), "this replica is now the leader: it pages and sends email");
            }
            Role::Standby { leader } => {
                tracing::warn!(node = %node, leader = ?leader, "this replica is a standby: it probes and evaluates, and neither pages nor sends email");
            }
        }
        publish.metrics.set_role(&change.role);
        *publish
            .took_over_from
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = change.took_over_from;
        publish.role.send_replace(change.role);
    };
    'rounds: loop {
        let started = clock.now();
        let round = {
            let leases = Arc::clone(&leases);
            let (node, ttl) = (node.clone(), timing.lease);
            // Who holds it is asked in the same blocking call: a refusal names the leader.
            tokio::task::spawn_blocking(move || match leases.claim(&node, ttl) {
                Ok(Some(epoch)) => Ok(Claimed::Granted { epoch }),
                Ok(None) => Ok(Claimed::Held {
                    holder: holder_name(&*leases),
                }),
                Err(e) => Err(e),
            })
        };
        tokio::pin!(round);
        let timeout = started + timing.round_timeout();
        // The store's words when the round fails, for the finding.
        let mut failure: Option<StoreError> = None;
        // Wait for the answer, the round's timeout, the leader's validity's end, or shutdown.
        let claimed = loop {
            let expiry = machine.valid_until();
            tokio::select! {
                answer = &mut round => break match answer {
                    Ok(Ok(claimed)) => claimed,
                    Ok(Err(e)) => {
                        tracing::warn!(node = %node, error = %e, reason = e.metric_label(), "the lease could not be claimed or renewed");
                        let reason = e.metric_label();
                        failure = Some(e);
                        Claimed::Failed { reason }
                    }
                    Err(e) => {
                        tracing::error!(node = %node, error = %e, "the lease claim task failed");
                        Claimed::Failed { reason: "task" }
                    }
                },
                () = clock.sleep_until(timeout) => {
                    tracing::warn!(node = %node, limit = ?timing.round_timeout(), "the lease claim got no answer in time");
                    break Claimed::TimedOut;
                }
                () = sleep_until_some(&clock, expiry) => {
                    announce(machine.on_time(clock.now()), &machine);
                }
                () = shutdown.cancelled() => break 'rounds,
            }
        };
        publish.metrics.round(&claimed);
        report_round(&publish.health, &claimed, failure, timing, clock.now());
        let change = machine.on_claim(started, &claimed);
        // A grant that came back after the validity it gives had passed (a slow round) is no lead.
        let change = match machine.on_time(clock.now()) {
            Some(late) => Some(late),
            None => change,
        };
        announce(change, &machine);
        // Until the next round, the validity's end still demotes.
        let next = started + timing.renew_every;
        loop {
            let expiry = machine.valid_until().filter(|v| *v < next);
            tokio::select! {
                () = clock.sleep_until(next) => break,
                () = sleep_until_some(&clock, expiry) => {
                    announce(machine.on_time(clock.now()), &machine);
                }
                () = shutdown.cancelled() => break 'rounds,
            }
        }
    }
    // Shutdown: release the lead (bounded), then say so.
    step_down(&leases, &node, &machine, timing).await;
    announce(machine.step_down(), &machine);
}

/// Tells the store finding how the database answered a round at `now`: granted or held elsewhere
/// is an answer, and so is a fenced refusal; a failure or no answer in time is not.
fn report_round(
    health: &StoreHealth,
    claimed: &Claimed,
    failure: Option<StoreError>,
    timing: Timing,
    now: Timestamp,
) {
    match (claimed, failure) {
        (Claimed::Granted { .. } | Claimed::Held { .. }, _) => health.answered(LEASE),
        (Claimed::Failed { .. }, Some(e)) => health.failed(LEASE, now, &e, Unrecorded::Unknown),
        (Claimed::Failed { reason }, None) => health.no_answer(
            LEASE,
            now,
            format!("the lease round failed ({reason})"),
            Unrecorded::Unknown,
        ),
        (Claimed::TimedOut, _) => health.no_answer(
            LEASE,
            now,
            format!(
                "the lease round got no answer within {}",
                humantime::format_duration(timing.round_timeout())
            ),
            Unrecorded::Unknown,
        ),
    }
}

/// Who holds the lease, as the store says; `None` when it cannot say.
fn holder_name(leases: &dyn Leases) -> Option<String> {
    leases.holder().ok().flatten().map(|h| h.holder)
}

/// Sets the store's fence for `role`: this replica's epoch while leader, none otherwise.
fn apply_fence(leases: &dyn Leases, node: &str, role: &Role) {
    match role {
        Role::Leader { epoch } => leases.set_fence(Some((node.to_owned(), *epoch))),
        Role::Standby { .. } => leases.set_fence(None),
    }
}

/// Completes at `at`; never when `None`.
async fn sleep_until_some(clock: &Clock, at: Option<Timestamp>) {
    match at {
        Some(at) => clock.sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// At shutdown: a leader releases its lease, within one round's timeout of real time (shutdown is
/// bounded whatever the clock; a store that does not answer lets the lease expire instead).
async fn step_down(leases: &Arc<dyn Leases>, node: &str, machine: &Machine, timing: Timing) {
    let Role::Leader { epoch } = machine.role() else {
        return;
    };
    leases.set_fence(None);
    let release = {
        let (leases, node) = (Arc::clone(leases), node.to_owned());
        tokio::task::spawn_blocking(move || leases.release(&node, epoch))
    };
    match tokio::time::timeout(timing.round_timeout(), release).await {
        Ok(Ok(Ok(()))) => tracing::info!(node, epoch, "lease released"),
        Ok(Ok(Err(e))) => {
            tracing::warn!(node, error = %e, "the lease could not be released; it expires on its own")
        }
        Ok(Err(e)) => {
            tracing::warn!(node, error = %e, "the lease release task failed; it expires on its own")
        }
        Err(_) => {
            tracing::warn!(
                node,
                "the lease release got no answer in time; it expires on its own"
            )
        }
    }
}
