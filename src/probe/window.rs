//! Counts over a sliding window of watchdog time: what the Docker and Redis probes keep so that a log
//! line, a restart or an eviction holds as evidence for a stated window instead of for one poll.
//!
//! A per-poll count means something else at every poll interval (two 429 lines a poll is 8 a minute
//! at 15 s and 240 at 0.5 s); a count over a fixed window, or a rate over it, does not. Each poll adds
//! what it counted since the previous one, stamped with its `now`; [`WindowCounts::sums`] adds up what
//! was counted within the window. The poll at `t` counted what happened in `(t - interval, t]`, so
//! the buckets within `(now - window, now]` cover the last `window` to within one interval (which
//! `check-config` keeps at most the window).
//!
//! **Bounded however often the probe polls:** a count added less than `window / BUCKETS` after the
//! newest bucket began joins that bucket (the Docker probe is woken by Engine events, up to once a
//! second), so at most about `BUCKETS + 1` buckets are kept, and a bucket is dropped once its newest
//! count is older than the window. A joined bucket expires with its newest count: evidence is held
//! for at least the window, at most `window / BUCKETS` longer.

use std::collections::VecDeque;
use std::time::Duration;

use crate::clock::Timestamp;
use crate::locale::{Msg, MsgId};

/// Buckets per window, about: the resolution of the window's trailing edge.
const BUCKETS: u32 = 64;

/// One poll's counts (or several polls', joined).
#[derive(Debug, Clone)]
struct Bucket {
    /// When its first count was added: later counts join it until `window / BUCKETS` after this.
    first: Timestamp,
    /// When its newest count was added: it leaves the window `window` after this.
    last: Timestamp,
    counts: Vec<u64>,
}

/// Several counts (one per log pattern, say) over one sliding window of watchdog time.
#[derive(Debug, Clone)]
pub struct WindowCounts {
    buckets: VecDeque<Bucket>,
    /// How many counts each poll adds.
    width: usize,
    /// Since when the counts are complete (the probe started counting): before it, nothing is known.
    since: Timestamp,
}

impl WindowCounts {
    /// Empty counts of `width` things, counting from `since`.
    pub fn new(width: usize, since: Timestamp) -> Self {
        Self {
            buckets: VecDeque::new(),
            width,
            since,
        }
    }

    /// Adds one poll's `counts` (at most `width` of them) at `now`, and forgets what left `window`.
    pub fn add(&mut self, now: Timestamp, counts: &[u64], window: Duration) {
        self.prune(now, window);
        if counts.iter().all(|c| *c == 0) {
            // Nothing to hold: a poll that counted nothing costs no bucket.
            return;
        }
        let join = self
            .buckets
            .back()
            .is_some_and(|b| now.saturating_since(b.first) < window / BUCKETS);
        if !join {
            self.buckets.push_back(Bucket {
                first: now,
                last: now,
                counts: vec![0; self.width],
            });
        }
        if let Some(b) = self.buckets.back_mut() {
            b.last = b.last.max(now);
            for (sum, c) in b.counts.iter_mut().zip(counts) {
                *sum = sum.saturating_add(*c);
            }
        }
    }

    /// What was counted within the last `window` before `now`, per thing.
    pub fn sums(&self, now: Timestamp, window: Duration) -> Vec<u64> {
        let mut sums = vec![0u64; self.width];
        for b in self.within(now, window) {
            for (sum, c) in sums.iter_mut().zip(&b.counts) {
                *sum = sum.saturating_add(*c);
            }
        }
        sums
    }

    /// Per minute over the last `window`: [`sums`](Self::sums) divided by the window (not by the
    /// time counted: until the probe has counted for a whole window the rate is a lower bound, and
    /// [`covered`](Self::covered) says so).
    pub fn per_minute(&self, now: Timestamp, window: Duration) -> Vec<f64> {
        let minutes = window.as_secs_f64() / 60.0;
        self.sums(now, window)
            .into_iter()
            .map(|n| {
                if minutes > 0.0 {
                    n as f64 / minutes
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// How much of the last `window` was counted: less than the window while the probe has not been
    /// counting that long.
    pub fn covered(&self, now: Timestamp, window: Duration) -> Duration {
        now.saturating_since(self.since).min(window)
    }

    /// Counting starts again from `since`, keeping nothing.
    pub fn restart(&mut self, since: Timestamp) {
        self.buckets.clear();
        self.since = since;
    }

    /// Buckets kept (for the bound's tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.len()
    }

    fn within(&self, now: Timestamp, window: Duration) -> impl Iterator<Item = &Bucket> {
        self.buckets
            .iter()
            .filter(move |b| now.saturating_since(b.last) < window)
    }

    fn prune(&mut self, now: Timestamp, window: Duration) {
        while self
            .buckets
            .front()
            .is_some_and(|b| now.saturating_since(b.last) >= window)
        {
            self.buckets.pop_front();
        }
    }
}

/// `the last 2m`, or `the last 2m (counted for 45s of it: a lower bound)` while counting has not
/// covered the whole window: how a probe's note says which window a count or rate is over.
pub fn describe(window: Duration, covered: Duration) -> Msg {
    if covered < window {
        let c = Duration::from_secs(covered.as_secs());
        Msg::new(MsgId::TheLastPartly)
            .duration("window", window)
            .duration("counted", c)
    } else {
        Msg::new(MsgId::TheLast).duration("window", window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_unix_millis(s * 1000)
    }

    const TWO_MIN: Duration = Duration::from_secs(120);

    /// One line a second, polled every `every` seconds for `for_secs`: the rate per minute at the end.
    fn rate_at_interval(every: i64, for_secs: i64) -> f64 {
        let mut w = WindowCounts::new(1, t(0));
        let mut at = 0;
        while at < for_secs {
            at += every;
            w.add(t(at), &[every as u64], TWO_MIN);
        }
        w.per_minute(t(at), TWO_MIN)[0]
    }

    #[test]
    fn the_same_stream_reads_the_same_rate_at_any_poll_interval() {
        for every in [1, 2, 5, 15, 30, 60] {
            assert_eq!(rate_at_interval(every, 600), 60.0, "polled every {every}s");
        }
    }

    #[test]
    fn a_count_holds_for_the_window_then_leaves_it() {
        let mut w = WindowCounts::new(2, t(0));
        w.add(t(10), &[1, 3], TWO_MIN);
        for s in [10, 60, 129] {
            w.add(t(s), &[0, 0], TWO_MIN);
            assert_eq!(w.sums(t(s), TWO_MIN), vec![1, 3], "at {s}s");
        }
        assert_eq!(w.sums(t(130), TWO_MIN), vec![0, 0], "120 s after it");
        assert_eq!(w.per_minute(t(60), TWO_MIN), vec![0.5, 1.5]);
        w.add(t(200), &[0, 0], TWO_MIN);
        assert_eq!(w.len(), 0, "pruned");
    }

    #[test]
    fn frequent_polls_join_buckets_so_memory_is_bounded() {
        let mut w = WindowCounts::new(1, t(0));
        // A poll every 100 ms for ten minutes (far more often than the runner polls).
        for ms in (0..600_000).step_by(100) {
            w.add(Timestamp::from_unix_millis(ms), &[1], TWO_MIN);
            assert!(w.len() <= BUCKETS as usize + 1, "{} buckets", w.len());
        }
        let now = Timestamp::from_unix_millis(599_900);
        let n = w.sums(now, TWO_MIN)[0];
        // 1200 counts in the last 120 s, give or take one bucket (window / 64 = 1.875 s) at the edge.
        assert!((1200..=1220).contains(&n), "{n}");
    }

    #[test]
    fn coverage_says_when_the_window_is_not_full_yet() {
        let w = WindowCounts::new(1, t(100));
        assert_eq!(w.covered(t(145), TWO_MIN), Duration::from_secs(45));
        assert_eq!(w.covered(t(1000), TWO_MIN), TWO_MIN);
        assert_eq!(
            describe(TWO_MIN, Duration::from_secs(45)).to_string(),
            "the last 2 min (counted for 45 s of it: a lower bound)"
        );
        assert_eq!(describe(TWO_MIN, TWO_MIN).to_string(), "the last 2 min");
        // A duration is worded when shown, so pt-BR reads its own units too, never `2m`.
        let pt = describe(TWO_MIN, Duration::from_secs(45)).words(crate::locale::Locale::PtBr);
        assert!(pt.contains("2 min") && pt.contains("45 s"), "{pt}");
    }
}
