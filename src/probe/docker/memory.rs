//! A container's memory: the one-shot stats read ([`memory_in_use`], usage minus the inactive page
//! cache, as `docker stats` shows it), the observations it feeds ([`MEMORY_OBSERVATIONS`]), and the
//! growth rate over a window ([`MemoryTrend`], a bounded ring of samples of the current run).
//!
//! It does not know which containers are read (the runbook's wants decide) or what a ratio or a
//! growth rate means for a rule.

use std::collections::VecDeque;
use std::pin::pin;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::StatsOptionsBuilder;
use futures_util::StreamExt;

use super::errors::{engine_failure, timeout_failure};
use super::requests::EngineRequests;
use super::time::Nanos;
use crate::clock::Timestamp;
use crate::locale::{Msg, MsgId};
use crate::observe::{Failure, FailureKind, Outcome};

/// Memory samples kept per container for the growth rate (a ring over `memory_growth_window`).
const MEMORY_SAMPLES: u32 = 32;

/// The observations of memory usage, read from the stats endpoint (only where the runbook reads one).
pub(super) const MEMORY_OBSERVATIONS: [&str; 3] = [
    "docker.memory_bytes",
    "docker.memory_ratio",
    "docker.memory_growth_bytes_per_hour",
];

/// A ring of `(time, bytes)` samples of the current run, for a growth rate over the window.
#[derive(Debug, Default)]
pub(super) struct MemoryTrend {
    /// The run (engine `StartedAt`) the samples belong to: a restart starts a new trend.
    run: Option<Nanos>,
    /// Oldest first, stamped with the watchdog's `now` (not the Engine's clock), at least
    /// `window / MEMORY_SAMPLES` apart, at most `MEMORY_SAMPLES + 1` of them.
    samples: VecDeque<(Timestamp, f64)>,
}

impl MemoryTrend {
    /// Forgets the samples: they were of another run (a restart frees the memory, so a rate
    /// across it would read as a fall, and a leak starts over).
    pub(super) fn reset(&mut self, run: Option<Nanos>) {
        self.run = run;
        self.samples.clear();
    }

    /// Records `bytes` at `now` and returns the growth rate per hour: from the oldest sample still in
    /// the window to now. No data until that sample is a tenth of the window old (a rate over a few
    /// seconds, extrapolated to an hour, is noise). Samples are taken at most every 1/32 of the
    /// window, so the ring stays small.
    pub(super) fn observe(
        &mut self,
        run: Option<Nanos>,
        now: Timestamp,
        bytes: f64,
        window: Duration,
    ) -> Outcome {
        if self.run != run {
            self.reset(run);
        }
        // Samples older than the window go first, so the rate is never over more than the window.
        let horizon = now - window;
        while self.samples.front().is_some_and(|(t, _)| *t < horizon) {
            self.samples.pop_front();
        }
        let outcome = match self.samples.front() {
            Some((t, b)) if now.saturating_since(*t) >= window / 10 && now > *t => {
                let hours = now.saturating_since(*t).as_secs_f64() / 3600.0;
                Outcome::number((bytes - b) / hours)
            }
            _ => Outcome::NoData(Msg::new(MsgId::NeedsSamples).duration("window", window)),
        };
        let step = window / MEMORY_SAMPLES;
        if self
            .samples
            .back()
            .is_none_or(|(t, _)| now.saturating_since(*t) >= step)
        {
            if self.samples.len() > MEMORY_SAMPLES as usize {
                self.samples.pop_front();
            }
            self.samples.push_back((now, bytes));
        }
        outcome
    }
}

/// Memory in use as `docker stats` shows it: usage minus the inactive page cache. One-shot stats
/// (API 1.41+) answer at once instead of waiting for a second CPU sample.
pub(super) async fn memory_in_use(
    docker: &Docker,
    id: &str,
    limit: Duration,
    requests: &EngineRequests,
) -> Result<Option<u64>, Failure> {
    requests.count("stats");
    let options = StatsOptionsBuilder::new()
        .stream(false)
        .one_shot(true)
        .build();
    let read = async {
        let mut stream = pin!(docker.stats(id, Some(options)));
        stream.next().await
    };
    let stats = match tokio::time::timeout(limit, read).await {
        Err(_) => return Err(timeout_failure("stats", limit)),
        Ok(None) => {
            let words = Msg::new(MsgId::DockerStatsEmpty);
            return Err(Failure::said(FailureKind::Malformed, words));
        }
        Ok(Some(Err(e))) => return Err(engine_failure(&e)),
        Ok(Some(Ok(s))) => s,
    };
    let Some(m) = stats.memory_stats else {
        return Ok(None);
    };
    // An answer without a usage figure is no data for the caller, not a failure of the source.
    let Some(usage) = m.usage else {
        return Ok(None);
    };
    // cgroup v1 names it total_inactive_file, v2 inactive_file.
    let inactive = m
        .stats
        .as_ref()
        .and_then(|s| {
            s.get("total_inactive_file")
                .or_else(|| s.get("inactive_file"))
        })
        .copied()
        .unwrap_or(0);
    Ok(Some(usage.saturating_sub(inactive)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::docker::fixtures::t;

    #[test]
    fn memory_growth_needs_a_tenth_of_the_window_and_restarts_with_the_run() {
        let window = Duration::from_secs(1000);
        let mut m = MemoryTrend::default();
        let run = Some(1);
        assert!(matches!(
            m.observe(run, t(0), 100.0, window),
            Outcome::NoData(_)
        ));
        assert!(matches!(
            m.observe(run, t(50), 150.0, window),
            Outcome::NoData(_)
        ));
        // 100 s after the first sample: +3600 bytes over 100 s = 129600 bytes per hour.
        assert_eq!(
            m.observe(run, t(100), 3_700.0, window),
            Outcome::number(129_600.0)
        );
        assert!(m.samples.len() <= MEMORY_SAMPLES as usize + 1);
        // A new run starts over.
        assert!(matches!(
            m.observe(Some(2), t(110), 10.0, window),
            Outcome::NoData(_)
        ));
        // Samples older than the window are forgotten; the ring stays bounded.
        for i in 0..10_000 {
            let _ = m.observe(Some(2), t(110 + i * 7), 10.0 + i as f64, window);
        }
        assert!(
            m.samples.len() <= MEMORY_SAMPLES as usize + 1,
            "{}",
            m.samples.len()
        );
        let oldest = m.samples.front().expect("samples").0;
        assert!(t(110 + 9_999 * 7).saturating_since(oldest) <= window);
    }
}
