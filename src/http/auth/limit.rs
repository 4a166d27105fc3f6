//! How often a client may fail to authenticate, and how often its refusals are logged.
//!
//! Each client (an IPv4 address or an IPv6 /64, [`super::client::ClientKey`]) has a budget of
//! [`PER_CLIENT`] failures: a burst of 10, then one more every 6 s. All clients together have
//! [`GLOBAL`]: a burst of 100, then one more every 600 ms, which bounds guessing from many addresses.
//! While either budget is spent, a credential is refused with `429 Too Many Requests` **without being
//! checked**, so a correct token is refused too until the budget refills: a guesser learns nothing,
//! the 20th of 20 guesses sent together is refused unchecked, and however they are spaced at most 19
//! guesses of one client are checked in any minute. A success resets the client's own
//! budget, never another's.
//!
//! The budgets are GCRA (the generic cell rate algorithm): one "theoretical arrival time" per
//! budget, no timers. Time is the `now` each call is given (from the daemon's [`Clock`]), so tests
//! move a manual clock; a wall clock stepped back delays a client by at most one burst.
//!
//! Memory is bounded: at most [`MAX_CLIENTS`] clients are tracked. When that many are, the clients
//! with nothing to remember (a full budget, no log line to hold back) are forgotten first, then the
//! one seen longest ago. Forgetting a client gives it a fresh budget, so a guesser spread over many
//! addresses is held by the global budget, not by the per-client one.
//!
//! Refusals are logged at most once a minute per client, the line saying how many were held back,
//! and at most [`GLOBAL_LOG`]'s burst of 20 lines then one every 3 s in all, so a flood of bad
//! requests cannot flood the log.
//!
//! [`Clock`]: crate::clock::Clock

use std::collections::HashMap;
use std::time::Duration;

use super::client::ClientKey;
use crate::clock::Timestamp;

/// A budget: `burst` events at once, then one more every `every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub burst: u32,
    pub every: Duration,
}

/// Failed authentications of one client.
pub const PER_CLIENT: Rate = Rate {
    burst: 10,
    every: Duration::from_secs(6),
};

/// Failed authentications of all clients together.
pub const GLOBAL: Rate = Rate {
    burst: 100,
    every: Duration::from_millis(600),
};

/// Log lines about refusals, all clients together (each client also has one a minute at most).
pub const GLOBAL_LOG: Rate = Rate {
    burst: 20,
    every: Duration::from_secs(3),
};

/// How often one client's refusals are logged.
pub const LOG_EVERY: Duration = Duration::from_secs(60);

/// The most clients tracked at once.
pub const MAX_CLIENTS: usize = 4096;

/// One budget's state: its theoretical arrival time. At or before `now`: the whole burst is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gcra {
    tat: Timestamp,
}

impl Gcra {
    const FULL: Self = Self {
        tat: Timestamp::EPOCH,
    };

    /// `Err(wait)` while the budget is spent at `now`: `wait` is how long until one more is allowed.
    fn check(&self, rate: Rate, now: Timestamp) -> Result<(), Duration> {
        let tolerance = rate.every * rate.burst.saturating_sub(1);
        // Never more than a burst ahead: a clock stepped back does not hold anyone for the step.
        let ahead = self.tat.saturating_since(now).min(rate.every * rate.burst);
        if ahead > tolerance {
            Err(ahead - tolerance)
        } else {
            Ok(())
        }
    }

    /// Spends one at `now`, keeping the budget at most a burst ahead of `now`.
    fn spend(&mut self, rate: Rate, now: Timestamp) {
        let cap = now + rate.every * rate.burst;
        self.tat = (self.tat.max(now) + rate.every).min(cap);
    }

    fn is_full(&self, now: Timestamp) -> bool {
        self.tat <= now
    }
}

/// What is remembered of one client.
#[derive(Debug, Clone)]
struct Entry {
    budget: Gcra,
    /// When its last refusal was logged.
    logged_at: Option<Timestamp>,
    /// Refusals not logged since then.
    held_back: u64,
    /// For eviction: the latest call about it.
    seen: Timestamp,
}

impl Entry {
    fn new(now: Timestamp) -> Self {
        Self {
            budget: Gcra::FULL,
            logged_at: None,
            held_back: 0,
            seen: now,
        }
    }

    /// Nothing to remember: forgetting it changes nothing.
    fn is_idle(&self, now: Timestamp) -> bool {
        self.budget.is_full(now)
            && self.held_back == 0
            && self.logged_at.is_none_or(|t| t + LOG_EVERY <= now)
    }
}

/// Whether to write a log line about a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Log {
    /// Write it, saying how many refusals of this client were held back since its last line.
    Write { held_back: u64 },
    /// Hold it back (counted for the next line).
    Quiet,
}

/// The failure budgets and log throttle of every client. Pure: no clock, no I/O.
#[derive(Debug)]
pub struct Limiter {
    clients: HashMap<ClientKey, Entry>,
    global: Gcra,
    global_log: Gcra,
    max_clients: usize,
}

impl Default for Limiter {
    fn default() -> Self {
        Self::with_capacity(MAX_CLIENTS)
    }
}

impl Limiter {
    /// A limiter tracking at most `max_clients` clients (at least one).
    pub fn with_capacity(max_clients: usize) -> Self {
        Self {
            clients: HashMap::new(),
            global: Gcra::FULL,
            global_log: Gcra::FULL,
            max_clients: max_clients.max(1),
        }
    }

    /// `Err(wait)` when `client` may not try a credential at `now` (its budget or the global one is
    /// spent): refuse it unchecked and say to retry after `wait`.
    pub fn check(&self, client: ClientKey, now: Timestamp) -> Result<(), Duration> {
        let own = self
            .clients
            .get(&client)
            .map_or(Ok(()), |e| e.budget.check(PER_CLIENT, now));
        let global = self.global.check(GLOBAL, now);
        match (own, global) {
            (Ok(()), Ok(())) => Ok(()),
            (own, global) => Err(own
                .err()
                .unwrap_or_default()
                .max(global.err().unwrap_or_default())),
        }
    }

    /// [`Limiter::check`] of `client`'s own budget only, for credentials that cannot be guessed
    /// (email link tokens): a flood from many addresses spending the global budget does not stop
    /// the on-call person's links.
    pub fn check_own(&self, client: ClientKey, now: Timestamp) -> Result<(), Duration> {
        self.clients
            .get(&client)
            .map_or(Ok(()), |e| e.budget.check(PER_CLIENT, now))
    }

    /// Records a failed authentication of `client` at `now`.
    pub fn failed(&mut self, client: ClientKey, now: Timestamp) {
        self.global.spend(GLOBAL, now);
        self.entry(client, now).budget.spend(PER_CLIENT, now);
    }

    /// Records a success of `client`: its own budget is whole again (the global one is not).
    pub fn succeeded(&mut self, client: ClientKey, now: Timestamp) {
        if let Some(e) = self.clients.get_mut(&client) {
            e.budget = Gcra::FULL;
            e.seen = now;
        }
    }

    /// Whether to log a refusal of `client` at `now` (see [`Log`]).
    pub fn log(&mut self, client: ClientKey, now: Timestamp) -> Log {
        let global_ok = self.global_log.check(GLOBAL_LOG, now).is_ok();
        let entry = self.entry(client, now);
        let due = entry.logged_at.is_none_or(|t| t + LOG_EVERY <= now);
        if due && global_ok {
            let held_back = std::mem::take(&mut entry.held_back);
            entry.logged_at = Some(now);
            self.global_log.spend(GLOBAL_LOG, now);
            Log::Write { held_back }
        } else {
            entry.held_back = entry.held_back.saturating_add(1);
            Log::Quiet
        }
    }

    /// How many clients are tracked now.
    pub fn tracked(&self) -> usize {
        self.clients.len()
    }

    /// The entry of `client`, made if new; at capacity, idle clients are forgotten first, then the
    /// one seen longest ago.
    fn entry(&mut self, client: ClientKey, now: Timestamp) -> &mut Entry {
        if !self.clients.contains_key(&client) && self.clients.len() >= self.max_clients {
            self.clients.retain(|_, e| !e.is_idle(now));
            if self.clients.len() >= self.max_clients
                && let Some(oldest) = self
                    .clients
                    .iter()
                    .min_by_key(|(_, e)| e.seen)
                    .map(|(k, _)| *k)
            {
                self.clients.remove(&oldest);
            }
        }
        let entry = self
            .clients
            .entry(client)
            .or_insert_with(|| Entry::new(now));
        entry.seen = entry.seen.max(now);
        entry
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    const T0: Timestamp = Timestamp::from_unix_millis(1_795_000_000_000);

    fn client(n: u8) -> ClientKey {
        ClientKey::of(IpAddr::V4(Ipv4Addr::new(192, 0, 2, n)))
    }

    fn at(ms: u64) -> Timestamp {
        T0 + Duration::from_millis(ms)
    }

    /// Fails `client` at `now` if its credential may be checked; says which happened.
    fn attempt(l: &mut Limiter, c: ClientKey, now: Timestamp) -> Result<(), Duration> {
        l.check(c, now)?;
        l.failed(c, now);
        Ok(())
    }

    #[test]
    fn ten_failures_at_once_then_one_every_six_seconds() {
        let mut l = Limiter::default();
        let a = client(1);
        for i in 0..10 {
            assert_eq!(attempt(&mut l, a, T0), Ok(()), "failure {i} is checked");
        }
        assert_eq!(attempt(&mut l, a, T0), Err(Duration::from_secs(6)));
        assert_eq!(attempt(&mut l, a, at(5_999)), Err(Duration::from_millis(1)));
        assert_eq!(attempt(&mut l, a, at(6_000)), Ok(()), "one more after 6 s");
        assert!(attempt(&mut l, a, at(6_000)).is_err());
        // Another client is not held by this one.
        assert_eq!(attempt(&mut l, client(2), at(6_000)), Ok(()));
    }

    /// The acceptance: 20 wrong tokens sent back to back: the 20th (whatever it carries) is refused
    /// unchecked.
    #[test]
    fn the_twentieth_attempt_in_a_burst_is_not_checked() {
        for spacing_ms in [0, 100, 500] {
            let mut l = Limiter::default();
            let a = client(1);
            let results: Vec<_> = (0..20u64)
                .map(|i| attempt(&mut l, a, at(i * spacing_ms)))
                .collect();
            assert!(results[..10].iter().all(Result::is_ok), "{results:?}");
            assert!(results[19].is_err(), "spacing {spacing_ms} ms: {results:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(crate::mutate::cases(256))]

        /// However one client spaces its attempts, at most 19 of its credentials are checked in any
        /// minute (a burst of 10, then one every 6 s).
        #[test]
        fn prop_at_most_19_checks_a_minute(gaps in proptest::collection::vec(0..8_000u64, 1..200)) {
            let mut l = Limiter::default();
            let a = client(1);
            let mut t = 0;
            let mut checked = Vec::new();
            for gap in gaps {
                t += gap;
                if attempt(&mut l, a, at(t)).is_ok() {
                    checked.push(t);
                }
            }
            for (i, start) in checked.iter().enumerate() {
                let in_minute = checked[i..].iter().take_while(|c| **c < start + 60_000).count();
                proptest::prop_assert!(in_minute <= 19, "{} checks from {}: {:?}", in_minute, start, checked);
            }
        }
    }

    #[test]
    fn a_success_resets_only_its_own_client() {
        let mut l = Limiter::default();
        let (a, b) = (client(1), client(2));
        for _ in 0..10 {
            attempt(&mut l, a, T0).expect("checked");
            attempt(&mut l, b, T0).expect("checked");
        }
        l.succeeded(a, T0);
        assert_eq!(l.check(a, T0), Ok(()));
        assert!(
            l.check(b, T0).is_err(),
            "another client's success forgives nothing"
        );
    }

    #[test]
    fn many_clients_together_spend_the_global_budget() {
        let mut l = Limiter::default();
        for n in 0..100u8 {
            attempt(&mut l, client(n), T0).expect("checked");
        }
        assert_eq!(
            attempt(&mut l, client(200), T0),
            Err(Duration::from_millis(600)),
            "a fresh client is held by the global budget"
        );
        assert_eq!(attempt(&mut l, client(200), at(600)), Ok(()));
        assert_eq!(
            l.check_own(client(201), at(600)),
            Ok(()),
            "links ignore the global budget"
        );
        assert!(l.check_own(client(200), at(600)).is_ok());
    }

    #[test]
    fn memory_is_bounded_forgetting_idle_clients_first_then_the_oldest() {
        let mut l = Limiter::with_capacity(3);
        let (a, b, c, d) = (client(1), client(2), client(3), client(4));
        l.failed(a, T0);
        l.failed(b, at(1));
        // `c` spent its budget long ago: idle by now.
        l.failed(c, T0);
        let later = at(60_000);
        l.failed(a, later);
        l.failed(b, later);
        l.failed(d, later);
        assert_eq!(l.tracked(), 3);
        assert!(!l.clients.contains_key(&c), "the idle one went first");
        // No idle one left: the one seen longest ago goes.
        l.failed(client(5), at(60_001));
        assert_eq!(l.tracked(), 3);
        for n in 6..200 {
            l.failed(client(n), at(60_002));
        }
        assert_eq!(l.tracked(), 3);
    }

    #[test]
    fn refusals_are_logged_once_a_minute_per_client_saying_how_many_were_held_back() {
        let mut l = Limiter::default();
        let a = client(1);
        assert_eq!(l.log(a, T0), Log::Write { held_back: 0 });
        for _ in 0..41 {
            assert_eq!(l.log(a, at(30_000)), Log::Quiet);
        }
        assert_eq!(l.log(a, at(60_000)), Log::Write { held_back: 41 });
        assert_eq!(l.log(client(2), at(60_000)), Log::Write { held_back: 0 });
    }

    #[test]
    fn log_lines_of_all_clients_together_are_bounded() {
        let mut l = Limiter::default();
        let written = (0..=255u8)
            .filter(|n| l.log(client(*n), T0) != Log::Quiet)
            .count();
        assert_eq!(written, 20);
        assert_eq!(l.log(client(254), at(3_000)), Log::Write { held_back: 1 });
    }

    #[test]
    fn a_clock_stepped_back_holds_a_client_for_at_most_a_burst() {
        let mut l = Limiter::default();
        let a = client(1);
        for _ in 0..10 {
            attempt(&mut l, a, at(3_600_000)).expect("checked");
        }
        // An hour back: still held, for one refill at most, not for the hour.
        let back = T0;
        assert_eq!(l.check(a, back), Err(Duration::from_secs(6)));
        l.failed(a, back);
        assert_eq!(l.check(a, back), Err(Duration::from_secs(6)));
        assert_eq!(l.check(a, back + Duration::from_secs(6)), Ok(()));
    }
}
