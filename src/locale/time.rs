//! How times and durations read, in either language: UTC to the second, and `h`/`min`/`s` units that
//! pt-BR and English write alike. Emails, status pages and act pages all show them this way.

use std::time::Duration;

use crate::clock::Timestamp;

/// `2026-11-18 11:06:40 UTC`: to the second, so the timeline orders visibly. A time outside the
/// dates a timestamp can name (a stored absurdity) reads as `Timestamp`'s `Display` says it,
/// never a panic.
pub fn human_time(t: Timestamp) -> String {
    let s = t.to_string(); // 2026-11-18T11:06:40.123Z, or "out of range (…)" for a stored absurdity
    match s.get(..19).filter(|_| t.is_date()) {
        Some(head) => format!("{} UTC", head.replace('T', " ")),
        None => s,
    }
}

/// `42 min`, `1 h 5 min`, `2 d 3 h`, `45 s`: the two largest units, the smaller cut, not rounded.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (days, hours, mins) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{secs} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, 0, _) => format!("{d} d"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

/// A duration said inside a message (a timeout, a window, an age): [`human_duration`], except
/// that under a minute it keeps the milliseconds (`250 ms`, `1.5 s`), where a configured timeout
/// of 1.5 s must not read `1 s`. Nothing at all is `0 s`.
pub fn human_limit(d: Duration) -> String {
    if d >= Duration::from_secs(60) || d.subsec_millis() == 0 {
        human_duration(d)
    } else if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        let secs = format!("{:.3}", d.as_secs_f64());
        format!("{} s", secs.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_that_is_not_a_date_is_shown_as_such() {
        let t = Timestamp::from_unix_millis(1_795_000_000_123);
        assert_eq!(human_time(t), "2026-11-18 11:06:40 UTC");
        assert_eq!(
            human_time(Timestamp::from_unix_millis(i64::MAX)),
            "out of range (9223372036854775807 ms since 1970-01-01)"
        );
    }

    #[test]
    fn durations_and_times_read_like_people_write_them() {
        assert_eq!(human_duration(Duration::from_secs(42 * 60 + 10)), "42 min");
        assert_eq!(human_duration(Duration::from_secs(3600)), "1 h");
        assert_eq!(human_duration(Duration::from_secs(3900)), "1 h 5 min");
        assert_eq!(human_duration(Duration::from_secs(45)), "45 s");
        assert_eq!(human_limit(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(human_limit(Duration::from_millis(250)), "250 ms");
        assert_eq!(human_limit(Duration::ZERO), "0 s");
        assert_eq!(human_limit(Duration::from_secs(1800)), "30 min");
        assert_eq!(human_limit(Duration::from_millis(90_500)), "1 min");
        assert_eq!(
            human_duration(Duration::from_secs(2 * 86_400 + 7200)),
            "2 d 2 h"
        );
        assert_eq!(
            human_time(Timestamp::from_unix_millis(1_795_000_000_123)),
            "2026-11-18 11:06:40 UTC"
        );
    }
}
