//! The pure role state machine: what a replica is after each claim round and at each deadline.
//! No I/O and no clock: the loop in `super` reads the [`Clock`](crate::clock::Clock), calls the
//! store, and feeds [`Machine`] the times and outcomes.
//!
//! **Invariant:** a leader's validity is local and conservative. It counts from the *start* of the
//! round trip that the database granted (the database's `now()` at the grant is later, and so is its
//! expiry), less a margin for clock rate drift and for the time the demotion takes to reach the
//! pager and the sender. When renewals fail or time out, the leader keeps its role until then and
//! demotes itself, before any standby can claim the expired lease.

use std::time::Duration;

use super::Role;
use crate::clock::Timestamp;

/// What one claim round answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// The store granted (or renewed) the lease under this epoch.
    Granted { epoch: u64 },
    /// Another replica's lease is valid; `holder` names it when the store could say.
    Held { holder: Option<String> },
    /// The store could not be asked: the error's metric label (`busy`, `fenced`, …).
    Failed { reason: &'static str },
    /// No answer within the round's timeout.
    TimedOut,
}

impl Claimed {
    /// The `outcome` label of `harven_watchdog_lease_renewals_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Granted { .. } => "granted",
            Self::Held { .. } => "held_elsewhere",
            Self::Failed { .. } => "failed",
            Self::TimedOut => "timeout",
        }
    }
}

/// Every `outcome` label, created at 0 when the metrics register.
pub const OUTCOMES: [&str; 4] = ["granted", "held_elsewhere", "failed", "timeout"];

/// A change of role the loop publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The role from now on.
    pub role: Role,
    /// On becoming leader: the replica that held the lead before, when known (for the timeline's
    /// takeover entry). `None` otherwise.
    pub took_over_from: Option<String>,
}

/// One replica's view of the lease.
#[derive(Debug, Clone)]
pub struct Machine {
    /// This replica's name (`ha.node`).
    node: String,
    /// The lease asked for at each claim (`ha.lease`).
    ttl: Duration,
    /// Taken off `ttl` when a grant's validity is computed: see the module's invariant.
    margin: Duration,
    state: State,
    /// The last other replica seen holding the lease (for "node-b took over from node-a").
    last_leader: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Holds the lease under `epoch`, trusted until `valid_until` unless renewed.
    Leader { epoch: u64, valid_until: Timestamp },
    /// Does not; `leader` is who does, when known.
    Standby { leader: Option<String> },
}

/// The part of the lease a leader does not count on: a tenth of it, at least 500 ms (the time a
/// demotion takes to stop the pager and the sender, and any difference between the rates of this
/// host's clock and the database's).
pub fn margin_of(ttl: Duration) -> Duration {
    (ttl / 10).max(Duration::from_millis(500)).min(ttl / 2)
}

impl Machine {
    /// A standby that knows no leader yet.
    pub fn new(node: impl Into<String>, ttl: Duration) -> Self {
        Self {
            node: node.into(),
            ttl,
            margin: margin_of(ttl),
            state: State::Standby { leader: None },
            last_leader: None,
        }
    }

    /// The role now.
    pub fn role(&self) -> Role {
        match &self.state {
            State::Leader { epoch, .. } => Role::Leader { epoch: *epoch },
            State::Standby { leader } => Role::Standby {
                leader: leader.clone(),
            },
        }
    }

    /// While leader: the time it stops counting on the lease unless a renewal is granted first.
    pub fn valid_until(&self) -> Option<Timestamp> {
        match self.state {
            State::Leader { valid_until, .. } => Some(valid_until),
            State::Standby { .. } => None,
        }
    }

    /// Takes a claim round's answer: `started` is when the round trip began. Returns the change
    /// of role, if any.
    pub fn on_claim(&mut self, started: Timestamp, claimed: &Claimed) -> Option<Change> {
        let before = self.role();
        let mut took_over_from = None;
        self.state = match (&self.state, claimed) {
            (_, Claimed::Granted { epoch }) => {
                let valid_until = started + self.ttl.saturating_sub(self.margin);
                if !matches!(before, Role::Leader { epoch: e } if e == *epoch) {
                    took_over_from = self.last_leader.clone();
                }
                State::Leader {
                    epoch: *epoch,
                    valid_until,
                }
            }
            (_, Claimed::Held { holder }) => {
                // Another replica holds a valid lease: a leader that thought otherwise stops at once.
                if let Some(h) = holder.as_ref().filter(|h| **h != self.node) {
                    self.last_leader = Some(h.clone());
                }
                State::Standby {
                    leader: holder.clone(),
                }
            }
            // No answer: a leader keeps its role until its validity ends (`on_time`); a standby
            // stays one, still naming the leader it last saw.
            (state, Claimed::Failed { .. } | Claimed::TimedOut) => state.clone(),
        };
        self.change_from(&before, took_over_from)
    }

    /// The clock reached `now`: a leader whose validity has ended demotes itself, naming no leader
    /// (it cannot know who holds the lease).
    pub fn on_time(&mut self, now: Timestamp) -> Option<Change> {
        let before = self.role();
        if let State::Leader { valid_until, .. } = self.state
            && now >= valid_until
        {
            self.state = State::Standby { leader: None };
        }
        self.change_from(&before, None)
    }

    /// Gives the lead up (shutdown, after releasing the lease).
    pub fn step_down(&mut self) -> Option<Change> {
        let before = self.role();
        self.state = State::Standby { leader: None };
        self.change_from(&before, None)
    }

    fn change_from(&self, before: &Role, took_over_from: Option<String>) -> Option<Change> {
        let role = self.role();
        (role != *before).then_some(Change {
            role,
            took_over_from,
        })
    }
}
