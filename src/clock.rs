//! Wall-clock time: one [`Clock`] for the whole daemon, and a [`ManualClock`] that tests advance.
//!
//! The engine never reads a clock; the shell reads this one and passes `now` in. Every escalation
//! deadline is a persisted [`Timestamp`] plus a configured delay, so the same arithmetic holds across a
//! restart. Tests drive the 30-minute and one-hour rules with a [`ManualClock`], never by sleeping.

use std::fmt;
use std::ops::{Add, Sub};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// A point in wall-clock time, in milliseconds since the Unix epoch (UTC). Millisecond resolution is
/// what the store persists, so a value survives a save and a load unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Self = Self(0);

    pub const fn from_unix_millis(ms: i64) -> Self {
        Self(ms)
    }

    pub const fn as_unix_millis(self) -> i64 {
        self.0
    }

    /// Seconds since the epoch, as Prometheus and OpenMetrics write timestamps.
    pub fn as_unix_secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    /// The time elapsed from `earlier` to `self`; zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Self) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    /// The timestamp of a `SystemTime` (millisecond resolution).
    pub fn from_system_time(t: SystemTime) -> Self {
        Self::from_system(t)
    }

    fn from_system(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Self(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Err(e) => Self(-i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX)),
        }
    }

    fn to_system(self) -> SystemTime {
        if self.0 >= 0 {
            UNIX_EPOCH + Duration::from_millis(self.0.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_millis(self.0.unsigned_abs())
        }
    }
}

impl Add<Duration> for Timestamp {
    type Output = Self;
    fn add(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Self;
    fn sub(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }
}

/// RFC 3339 in UTC with milliseconds, e.g. `2026-11-24T21:30:00.000Z`.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_rfc3339_millis(self.to_system()))
    }
}

/// The source of wall-clock time. Cheap to clone; all clones read the same time.
#[derive(Clone, Debug)]
pub struct Clock(Arc<Source>);

#[derive(Debug)]
enum Source {
    System,
    /// Time moves only when a [`ManualClock`] sets it; waiters are woken through the channel.
    Manual(watch::Sender<Timestamp>),
}

/// Longest single wait on the system clock: waits are re-checked at least this often, so a wall-clock
/// jump (NTP step, suspend and resume) delays a deadline by at most this much.
const MAX_SYSTEM_WAIT: Duration = Duration::from_secs(30);

impl Clock {
    /// The operating system's wall clock.
    pub fn system() -> Self {
        Self(Arc::new(Source::System))
    }

    /// A clock that stands still at `start` until the returned handle moves it.
    pub fn manual(start: Timestamp) -> (Self, ManualClock) {
        let (tx, _) = watch::channel(start);
        let clock = Self(Arc::new(Source::Manual(tx)));
        (clock.clone(), ManualClock(clock))
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        match &*self.0 {
            Source::System => Timestamp::from_system(SystemTime::now()),
            Source::Manual(tx) => *tx.borrow(),
        }
    }

    /// Completes once `now() >= deadline`. Cancel-safe: dropping the future abandons the wait.
    pub async fn sleep_until(&self, deadline: Timestamp) {
        match &*self.0 {
            Source::System => loop {
                let left = deadline.saturating_since(self.now());
                if left.is_zero() {
                    return;
                }
                tokio::time::sleep(left.min(MAX_SYSTEM_WAIT)).await;
            },
            Source::Manual(tx) => {
                let mut rx = tx.subscribe();
                // The sender lives in `self`, so `wait_for` cannot fail while we hold `self`.
                let _ = rx.wait_for(|now| *now >= deadline).await;
            }
        }
    }

    /// Completes after `d` of this clock's time has passed.
    pub async fn sleep(&self, d: Duration) {
        self.sleep_until(self.now() + d).await;
    }
}

/// The handle that moves a manual [`Clock`]; only tests and the offline `test` command hold one.
#[derive(Clone, Debug)]
pub struct ManualClock(Clock);

impl ManualClock {
    /// Moves time forward by `d`, waking every wait whose deadline has come.
    pub fn advance(&self, d: Duration) {
        if let Source::Manual(tx) = &*self.0.0 {
            tx.send_modify(|now| *now = *now + d);
        }
    }

    /// Sets the time. Going backwards is allowed (a wall clock can be stepped back).
    pub fn set(&self, t: Timestamp) {
        if let Source::Manual(tx) = &*self.0.0 {
            tx.send_replace(t);
        }
    }

    /// The current time of the clock this handle moves.
    pub fn now(&self) -> Timestamp {
        self.0.now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_as_rfc3339_utc() {
        let t = Timestamp::from_unix_millis(1_795_000_000_123);
        assert_eq!(t.to_string(), "2026-11-18T11:06:40.123Z");
        assert_eq!(
            (t + Duration::from_secs(1)).as_unix_millis(),
            1_795_000_001_123
        );
        assert_eq!(
            (t + Duration::from_secs(90)).saturating_since(t),
            Duration::from_secs(90)
        );
        assert_eq!(
            t.saturating_since(t + Duration::from_secs(1)),
            Duration::ZERO
        );
    }

    #[tokio::test]
    async fn manual_clock_wakes_waiters_only_at_their_deadline() {
        let start = Timestamp::from_unix_millis(1_000_000);
        let (clock, hand) = Clock::manual(start);
        let deadline = start + Duration::from_secs(30 * 60);
        let waiter = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until(deadline).await }
        });
        hand.advance(Duration::from_secs(30 * 60 - 1));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "woke one second before the deadline");
        hand.advance(Duration::from_secs(1));
        waiter.await.expect("waiter completes at the deadline");
        assert_eq!(clock.now(), deadline);
    }

    #[tokio::test]
    async fn system_clock_sleep_returns_after_the_deadline() {
        let clock = Clock::system();
        let deadline = clock.now() + Duration::from_millis(20);
        clock.sleep_until(deadline).await;
        assert!(clock.now() >= deadline);
    }
}
