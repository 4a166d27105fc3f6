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
///
/// Every `i64` is a `Timestamp`, but only those from [`Timestamp::EPOCH`] to [`Timestamp::LATEST`]
/// (years 1970 to 9999) are dates: RFC 3339 has four-digit years, and the formatters under it
/// (humantime's, the email `Date` header's) fail or panic past them. `Display` writes any other value
/// as its milliseconds, saying it is out of range, so no stored row and no configured delay can make
/// a page, an email or a log line panic; input is kept inside the range by [`Timestamp::checked_add`]
/// and by the bounds of `config/validate.rs` and the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch, the earliest date.
    pub const EPOCH: Self = Self(0);

    /// The latest date: 9999-12-31T23:59:59.999Z.
    pub const LATEST: Self = Self(253_402_300_799_999);

    /// Any value, date or not: a stored row is read back as it was written, and `Display` copes.
    pub const fn from_unix_millis(ms: i64) -> Self {
        Self(ms)
    }

    /// What the store persists and compares in SQL.
    pub const fn as_unix_millis(self) -> i64 {
        self.0
    }

    /// Whether this is a date ([`Timestamp::EPOCH`] to [`Timestamp::LATEST`]), which `Display` writes
    /// in RFC 3339.
    pub const fn is_date(self) -> bool {
        Self::EPOCH.0 <= self.0 && self.0 <= Self::LATEST.0
    }

    /// The nearest date: values before the epoch or after year 9999 are moved to the edge.
    pub fn clamped(self) -> Self {
        self.clamp(Self::EPOCH, Self::LATEST)
    }

    /// Seconds since the epoch, as Prometheus and OpenMetrics write timestamps.
    pub fn as_unix_secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    /// The time elapsed from `earlier` to `self`; zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Self) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    /// `self + d` when that is a date, else `None`: for a time that is stored or shown (a
    /// maintenance window's end, a link's expiry), where a value past year 9999 is an input error to
    /// report rather than a time to keep. Deadlines use `+`, which saturates: a deadline that far
    /// away is "never", and nothing breaks.
    pub fn checked_add(self, d: Duration) -> Option<Self> {
        let ms = i64::try_from(d.as_millis()).ok()?;
        Some(Self(self.0.checked_add(ms)?)).filter(|t| t.is_date())
    }

    /// `self - d` when that is a date, else `None` (see [`Timestamp::checked_add`]).
    pub fn checked_sub(self, d: Duration) -> Option<Self> {
        let ms = i64::try_from(d.as_millis()).ok()?;
        Some(Self(self.0.checked_sub(ms)?)).filter(|t| t.is_date())
    }

    /// The timestamp of a `SystemTime` (millisecond resolution).
    pub fn from_system_time(t: SystemTime) -> Self {
        Self::from_system(t)
    }

    /// The `SystemTime` of the nearest date ([`Timestamp::clamped`]): what the formatters that panic
    /// outside years 1970 to 9999 (an email's `Date` header) are given.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.clamped().0.unsigned_abs())
    }

    /// `ms` milliseconds, saturated at the ends of `i64`.
    fn saturating(ms: i128) -> Self {
        Self(i64::try_from(ms).unwrap_or(if ms < 0 { i64::MIN } else { i64::MAX }))
    }

    /// Before the epoch is negative (a clock set to 1969 is still a time); past `i64`
    /// milliseconds (about 292 million years) saturates.
    fn from_system(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Self(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Err(e) => Self(-i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX)),
        }
    }
}

/// A duration's whole milliseconds (at most about 1.8e22, far inside `i128`).
fn millis(d: Duration) -> i128 {
    i128::try_from(d.as_millis()).unwrap_or(i128::MAX)
}

/// Saturates at the ends of `i64`: for deadlines, where "never" is the right reading of an overflow.
/// Times to store or show use [`Timestamp::checked_add`].
impl Add<Duration> for Timestamp {
    type Output = Self;
    fn add(self, d: Duration) -> Self {
        Self::saturating(i128::from(self.0) + millis(d))
    }
}

/// Saturates at the ends of `i64`, like `+`.
impl Sub<Duration> for Timestamp {
    type Output = Self;
    fn sub(self, d: Duration) -> Self {
        Self::saturating(i128::from(self.0) - millis(d))
    }
}

/// RFC 3339 in UTC with milliseconds, e.g. `2026-11-24T21:30:00.000Z`; a value that is not a date
/// (before 1970, after 9999) as `out of range (N ms since 1970-01-01)`. Never fails or panics.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_date() {
            write!(
                f,
                "{}",
                humantime::format_rfc3339_millis(self.to_system_time())
            )
        } else {
            write!(f, "out of range ({} ms since 1970-01-01)", self.0)
        }
    }
}

/// The source of wall-clock time. Cheap to clone; all clones read the same time.
#[derive(Clone, Debug)]
pub struct Clock(Arc<Source>);

/// Where a [`Clock`]'s time comes from; shared by every clone.
#[derive(Debug)]
enum Source {
    /// `SystemTime::now()`: wall time, which can jump (see [`MAX_SYSTEM_WAIT`]).
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
            // Sleeps on tokio's monotonic timer in slices, re-reading the wall clock after each:
            // a wall deadline cannot be given to a monotonic timer once and trusted.
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

    /// Sets the time, waking every wait whose deadline has come. Going backwards is allowed (a wall
    /// clock can be stepped back).
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

    #[test]
    fn the_edges_of_the_date_range_print_and_beyond_them_the_milliseconds() {
        assert_eq!(Timestamp::EPOCH.to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Timestamp::LATEST.to_string(), "9999-12-31T23:59:59.999Z");
        let after = Timestamp::from_unix_millis(Timestamp::LATEST.as_unix_millis() + 1);
        assert_eq!(
            after.to_string(),
            "out of range (253402300800000 ms since 1970-01-01)"
        );
        assert_eq!(
            Timestamp::from_unix_millis(-1).to_string(),
            "out of range (-1 ms since 1970-01-01)"
        );
        // A window ending in the year 20000, as an unchecked `starts + duration` once stored.
        let far = Timestamp::from_unix_millis(568_971_820_800_000);
        assert!(far.to_string().starts_with("out of range"));
        assert_eq!(far.clamped(), Timestamp::LATEST);
        assert_eq!(
            Timestamp::from_unix_millis(i64::MIN).clamped(),
            Timestamp::EPOCH
        );
    }

    #[test]
    fn checked_arithmetic_stays_within_the_dates() {
        let t = Timestamp::from_unix_millis(1_795_000_000_000);
        let hour = Duration::from_secs(3600);
        assert_eq!(t.checked_add(hour), Some(t + hour));
        assert_eq!(t.checked_sub(hour), Some(t - hour));
        assert_eq!(
            Timestamp::LATEST.checked_add(Duration::from_millis(1)),
            None
        );
        assert_eq!(Timestamp::EPOCH.checked_sub(Duration::from_millis(1)), None);
        assert_eq!(t.checked_add(Duration::MAX), None);
        assert_eq!(
            t.checked_add(Duration::from_secs(10_000 * 365 * 86_400)),
            None
        );
        assert_eq!(
            Timestamp::from_unix_millis(i64::MAX) + hour,
            Timestamp::from_unix_millis(i64::MAX),
            "deadlines saturate"
        );
    }

    proptest::proptest! {
        #![proptest_config(crate::mutate::cases(512))]

        /// Every `i64` prints without panicking: a date as RFC 3339 that parses back to itself,
        /// anything else as its milliseconds.
        #[test]
        fn prop_every_timestamp_prints(ms in proptest::prelude::any::<i64>()) {
            let t = Timestamp::from_unix_millis(ms);
            let text = t.to_string();
            if t.is_date() {
                let back = humantime::parse_rfc3339(&text).map(Timestamp::from_system_time);
                proptest::prop_assert_eq!(back, Ok(t));
            } else {
                proptest::prop_assert_eq!(text, format!("out of range ({ms} ms since 1970-01-01)"));
            }
            proptest::prop_assert!(t.clamped().is_date());
            // What the email `Date` header is given never panics its formatter either.
            let _ = humantime::format_rfc3339(t.to_system_time()).to_string();
        }

        /// Checked arithmetic is exact where the result is a date, `None` elsewhere; `+` and `-`
        /// saturate and never panic, whatever the duration.
        #[test]
        fn prop_timestamp_arithmetic_never_panics(
            ms in proptest::prelude::any::<i64>(),
            secs in proptest::prelude::any::<u64>(),
            nanos in 0..1_000_000_000u32,
        ) {
            let (t, d) = (Timestamp::from_unix_millis(ms), Duration::new(secs, nanos));
            let exact_add = i128::from(ms) + i128::try_from(d.as_millis()).expect("fits");
            let exact_sub = i128::from(ms) - i128::try_from(d.as_millis()).expect("fits");
            let date = |v: i128| {
                (0..=i128::from(Timestamp::LATEST.as_unix_millis()))
                    .contains(&v)
                    .then(|| Timestamp::from_unix_millis(i64::try_from(v).expect("in range")))
            };
            proptest::prop_assert_eq!(t.checked_add(d), date(exact_add));
            proptest::prop_assert_eq!(t.checked_sub(d), date(exact_sub));
            let clamp = |v: i128| i64::try_from(v.clamp(i128::from(i64::MIN), i128::from(i64::MAX))).expect("clamped");
            proptest::prop_assert_eq!((t + d).as_unix_millis(), clamp(exact_add));
            proptest::prop_assert_eq!((t - d).as_unix_millis(), clamp(exact_sub));
            let _ = (t + d).to_string();
            let _ = t.saturating_since(t - d);
        }
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
