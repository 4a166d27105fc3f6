//! The limits values stay within, beyond their syntax: how long a duration may be, and how strong the
//! API token must be. `validate.rs` applies them to the configuration; the runbook's `for` and
//! `resolve_after` and the API's maintenance windows use the same bounds.
//!
//! Why durations are bounded: every time the watchdog stores or shows is a [`Timestamp`] plus a
//! configured or requested duration, and a date past the year 9999 cannot be written (see
//! [`Timestamp::LATEST`]). The bounds are far inside that, and far above anything an operator means:
//! a value beyond them is a typo (`30d` for `30s`, `1000000h`), said as such by `check-config`.
//!
//! [`Timestamp`]: crate::clock::Timestamp
//! [`Timestamp::LATEST`]: crate::clock::Timestamp::LATEST

use std::time::Duration;

const DAY: u64 = 86_400;

/// The largest value a duration takes, and how a problem says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// Inclusive: a value equal to it is accepted.
    pub max: Duration,
    /// `30 days`: the bound as `check-config` and the API's errors write it.
    pub text: &'static str,
}

/// Intervals, timeouts, evidence windows, escalation delays and the runbook's `for` and
/// `resolve_after`: 30 days. A probe interval or an escalation delay longer than a month watches or
/// pages nothing in practice.
pub const MAX_DELAY: Bound = Bound {
    max: Duration::from_secs(30 * DAY),
    text: "30 days",
};

/// How long things are kept or stay valid (`store.retention`, `escalation.link_ttl`): a year.
pub const MAX_KEPT: Bound = Bound {
    max: Duration::from_secs(365 * DAY),
    text: "365 days",
};

/// A maintenance window's length (configured or through the API): 30 days. Longer muting is an
/// edit of the runbook, not maintenance.
pub const MAX_WINDOW: Bound = Bound {
    max: Duration::from_secs(30 * DAY),
    text: "30 days",
};

/// How far ahead of now a window created through the API may start: a year.
pub const MAX_WINDOW_AHEAD: Bound = Bound {
    max: Duration::from_secs(365 * DAY),
    text: "365 days",
};

/// The bound of the duration key `key` (`store.retention`, `prometheus.interval`, …).
pub fn duration_bound(key: &str) -> Bound {
    match key {
        "store.retention" | "escalation.link_ttl" => MAX_KEPT,
        _ => MAX_DELAY,
    }
}

/// `d` when it is within `bound`; otherwise the problem, quoting `text` as written.
pub fn within(text: &str, d: Duration, bound: Bound) -> Result<Duration, String> {
    if d > bound.max {
        return Err(format!(
            "{text:?} is longer than {}, the most it may be",
            bound.text
        ));
    }
    Ok(d)
}

/// `d` in its largest whole unit, as a person would write it: `400d`, `36h`, `90m`, `45s`, `1500ms`.
pub fn short(d: Duration) -> String {
    let ms = d.as_millis();
    [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1000, "s"),
    ]
    .iter()
    .find(|(unit, _)| ms.is_multiple_of(*unit) && ms > 0)
    .map_or_else(
        || format!("{ms}ms"),
        |(unit, name)| format!("{}{name}", ms / unit),
    )
}

/// The shortest API token accepted, in characters.
pub const MIN_TOKEN_CHARS: usize = 24;

/// The least estimated strength of an API token, in bits: its length times the Shannon entropy of its
/// characters' frequencies. 24 random hex digits estimate about 80; a word repeated estimates far
/// less.
const MIN_TOKEN_BITS: f64 = 64.0;

/// How to make a good token, for the problems.
const MAKE_ONE: &str = "make one with `openssl rand -hex 32`";

/// Why `token` is too weak to guard the API and the pages, or `Ok`. Never quotes the token.
///
/// A heuristic, not a proof: it refuses short tokens and obviously guessable ones (one character
/// repeated, a short pattern repeated, few distinct characters, runs like `abcdef` or `123456`), and
/// accepts the output of any random generator of at least 24 characters.
pub fn token_strength(token: &str) -> Result<(), String> {
    let chars: Vec<char> = token.chars().collect();
    let n = chars.len();
    if n < MIN_TOKEN_CHARS {
        return Err(format!(
            "is {n} characters long; use at least {MIN_TOKEN_CHARS} random ones ({MAKE_ONE})"
        ));
    }
    let weak = |why: &str| Err(format!("is too easy to guess ({why}); {MAKE_ONE}"));
    if let Some(p) =
        (1..=n / 2).find(|p| n.is_multiple_of(*p) && chars.chunks(*p).all(|c| c == &chars[..*p]))
    {
        return weak(&format!("a pattern of {p} characters repeated"));
    }
    let mut counts = std::collections::BTreeMap::new();
    for c in &chars {
        *counts.entry(*c).or_insert(0usize) += 1;
    }
    // 24 random hex digits hold about 12 distinct ones; under 8 is next to never chance.
    if counts.len() < 8 {
        return weak(&format!("only {} distinct characters", counts.len()));
    }
    // Steps of +1 or -1 between neighbours (`abcd`, `4321`): about 1 in 8 in random hex.
    let runs = chars
        .windows(2)
        .filter(|w| (i64::from(u32::from(w[1])) - i64::from(u32::from(w[0]))).abs() == 1)
        .count();
    // More than half of the neighbour steps: far from random, whatever the alphabet.
    if runs * 2 > n - 1 {
        return weak("mostly runs of consecutive characters");
    }
    let bits: f64 = counts
        .values()
        .map(|&k| {
            let p = k as f64 / n as f64;
            -p * p.log2()
        })
        .sum::<f64>()
        * n as f64;
    if bits < MIN_TOKEN_BITS {
        return weak("too few distinct characters for its length");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn durations_beyond_their_bound_are_refused_naming_it() {
        let day = Duration::from_secs(DAY);
        assert_eq!(duration_bound("escalation.link_ttl"), MAX_KEPT);
        assert_eq!(duration_bound("prometheus.interval"), MAX_DELAY);
        assert_eq!(within("30d", 30 * day, MAX_DELAY), Ok(30 * day));
        let e = within("31d", 31 * day, MAX_DELAY).unwrap_err();
        assert_eq!(e, "\"31d\" is longer than 30 days, the most it may be");
        assert_eq!(short(400 * day), "400d");
        assert_eq!(short(Duration::from_secs(5400)), "90m");
        assert_eq!(short(Duration::from_millis(1500)), "1500ms");
        assert_eq!(short(Duration::ZERO), "0ms");
    }

    #[test]
    fn weak_tokens_are_refused_saying_how_to_make_one_and_never_quoting_them() {
        for (weak, why) in [
            ("short-token-1234", "16 characters"),
            ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "1 characters repeated"),
            ("abc123abc123abc123abc123", "pattern of 6 characters"),
            ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaabbb", "2 distinct"),
            ("abcdefghijklmnopqrstuvwxyz", "runs of consecutive"),
            ("9876543210zyxwvutsrqponm", "runs of consecutive"),
            ("aaaaaaaaaaaaaaaaaaaaabcdefghaaaa", "too few distinct"),
        ] {
            let e = token_strength(weak).expect_err(weak);
            assert!(e.contains(why), "{weak}: {e}");
            assert!(e.contains("openssl rand -hex 32"), "{e}");
            assert!(!e.contains(weak), "quoted: {e}");
        }
        for strong in [
            "3f9c2a7e1b5d4c8a9e0f6b2d7a1c5e3f9b8d2a4c6e1f7a3b5c9d0e2f4a6b8c1d",
            "api-token-7f3c9e1b5d2a4c6e8f0a",
            "change-me-to-the-output-of-openssl-rand-hex-32",
            "Zq8vN2rT5xW9yB3mK7pL1sD4",
        ] {
            assert_eq!(token_strength(strong), Ok(()), "{strong}");
        }
    }

    proptest! {
        #![proptest_config(crate::mutate::cases(512))]

        /// What `openssl rand -hex 12` (and longer) makes is always accepted.
        #[test]
        fn prop_random_hex_tokens_are_strong(bytes in proptest::collection::vec(any::<u8>(), 12..48)) {
            let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            prop_assert_eq!(token_strength(&token), Ok(()), "{}", token);
        }
    }
}
