//! The Engine's wall-clock times (inspect's `StartedAt`, log-line stamps, events) as Unix nanoseconds
//! ([`Nanos`]): RFC 3339 text parsed ([`parse_time`], Docker's "never" is none), the events API's
//! `secs.nanos` written ([`engine_time`]), and the watchdog's own [`Timestamp`] converted
//! ([`nanos_of`]).
//!
//! It does not know what a time is of, and never reads a clock.

use std::time::UNIX_EPOCH;

use crate::clock::Timestamp;

pub(super) const NANOS_PER_SEC: Nanos = 1_000_000_000;

/// Engine wall-clock times (inspect's `StartedAt`, log-line stamps, events) as Unix nanoseconds.
pub(super) type Nanos = i128;

/// An engine time as the events API takes it: `secs.nanos`.
pub(super) fn engine_time(ns: Nanos) -> String {
    format!(
        "{}.{:09}",
        ns.div_euclid(NANOS_PER_SEC),
        ns.rem_euclid(NANOS_PER_SEC)
    )
}

/// An RFC 3339 UTC time (Docker's, with up to nanoseconds) as Unix nanoseconds; `None` for Docker's
/// "never" (`0001-01-01T00:00:00Z`) and anything unparsable.
pub(super) fn parse_time(s: &str) -> Option<Nanos> {
    let t = humantime::parse_rfc3339(s).ok()?;
    let since_epoch = t.duration_since(UNIX_EPOCH).ok()?;
    Nanos::try_from(since_epoch.as_nanos())
        .ok()
        .filter(|n| *n > 0)
}

pub(super) fn nanos_of(t: Timestamp) -> Nanos {
    Nanos::from(t.as_unix_millis()) * 1_000_000
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn docker_times_parse_with_any_precision_and_never_is_none() {
        assert_eq!(
            parse_time("1970-01-01T00:00:01.000000002Z"),
            Some(1_000_000_002)
        );
        assert_eq!(parse_time("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(parse_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_time("garbage"), None);
    }

    proptest! {
        #![proptest_config(crate::mutate::cases(256))]

        #[test]
        fn prop_any_text_is_a_time_or_none(text in crate::mutate::garbage()) {
            if let Some(n) = parse_time(&text) {
                prop_assert!(n > 0);
            }
        }

        #[test]
        fn prop_engine_times_round_trip(nanos in 1..253_402_300_799_999_999_999 as Nanos) {
            let secs = u64::try_from(nanos.div_euclid(NANOS_PER_SEC)).expect("positive");
            let sub = u32::try_from(nanos.rem_euclid(NANOS_PER_SEC)).expect("below a second");
            let text = humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::new(secs, sub)).to_string();
            prop_assert_eq!(parse_time(&text), Some(nanos));
        }
    }
}
