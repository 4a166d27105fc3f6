//! A container's new log lines, counted per pattern: [`read_logs`] reads the lines logged since the
//! cursor, and a [`LogWindow`] counts each line once against the configured patterns. Lines are
//! matched and dropped, never stored or logged.
//!
//! The logs endpoint filters by `since` in whole seconds. The probe asks with `timestamps=true` from
//! the second of the newest line it counted and drops every line stamped at or before that line, so the
//! boundary second is neither lost nor counted twice; at most `log_lines_cap` lines (`tail`) and
//! [`MAX_LOG_BYTES`] are read per container and poll. A container seen for the first time is counted
//! from that poll on, not over its whole history (its counts are no data until the next poll).
//!
//! It does not know rates or windows (`container` turns a poll's counts into lines per minute over
//! `log_rate_window`) or which containers' logs are read.

use std::pin::pin;
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptionsBuilder;
use futures_util::StreamExt;

use super::errors::{engine_failure, timeout_failure};
use super::requests::EngineRequests;
use super::time::{NANOS_PER_SEC, Nanos, parse_time};
use crate::config::DockerConfig;
use crate::observe::Failure;

/// Most bytes of log output read per container per poll (on top of `log_lines_cap`): a container
/// logging megabyte lines cannot flood the watchdog's memory. The rest is read by the next poll.
pub const MAX_LOG_BYTES: usize = 8 << 20;

/// The log lines of one poll, counted per pattern.
#[derive(Debug)]
pub(super) struct LogWindow {
    /// Matching lines per pattern, in `log_patterns` order.
    pub(super) counts: Vec<u64>,
    /// Engine time of the newest line counted (the cursor when none was).
    pub(super) newest: Nanos,
    /// New lines read.
    pub(super) lines: u64,
    /// The read stopped at `log_lines_cap` or [`MAX_LOG_BYTES`]: older new lines were not counted.
    pub(super) capped: bool,
}

impl LogWindow {
    /// Counts the lines of one chunk stamped after `cursor`. Each line is `<RFC 3339 time> <text>`.
    fn take(&mut self, chunk: &[u8], cursor: Nanos, patterns: &[crate::config::LogPattern]) {
        for line in chunk.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let Some(space) = line.iter().position(|b| *b == b' ') else {
                continue;
            };
            let Some(stamp) = std::str::from_utf8(&line[..space])
                .ok()
                .and_then(parse_time)
            else {
                continue;
            };
            if stamp <= cursor {
                continue;
            }
            self.lines += 1;
            self.newest = self.newest.max(stamp);
            let text = String::from_utf8_lossy(&line[space + 1..]);
            for (count, p) in self.counts.iter_mut().zip(patterns) {
                if p.regex.is_match(&text) {
                    *count += 1;
                }
            }
        }
    }
}

/// Reads the lines logged after `cursor` (stdout and stderr), at most `log_lines_cap` of them.
pub(super) async fn read_logs(
    docker: &Docker,
    id: &str,
    cursor: Nanos,
    config: &DockerConfig,
    limit: Duration,
    requests: &EngineRequests,
) -> Result<LogWindow, Failure> {
    requests.count("logs");
    // `since` is whole seconds and inclusive: the cursor's own second is asked again and its lines
    // up to the cursor are dropped by `take`.
    let since = i32::try_from(cursor.div_euclid(NANOS_PER_SEC))
        .unwrap_or(i32::MAX)
        .max(1);
    let cap = config.log_lines_cap;
    let options = LogsOptionsBuilder::new()
        .stdout(true)
        .stderr(true)
        .timestamps(true)
        .since(since)
        .tail(&cap.to_string())
        .build();
    let read = async {
        let mut window = LogWindow {
            counts: vec![0; config.log_patterns.len()],
            newest: cursor,
            lines: 0,
            capped: false,
        };
        let mut stream = pin!(docker.logs(id, Some(options)));
        let mut bytes = 0usize;
        let mut received = 0u64;
        while let Some(chunk) = stream.next().await {
            let message = match chunk.map_err(|e| engine_failure(&e))? {
                LogOutput::StdOut { message }
                | LogOutput::StdErr { message }
                | LogOutput::Console { message } => message,
                LogOutput::StdIn { .. } => continue,
            };
            bytes += message.len();
            received += 1;
            window.take(&message, cursor, &config.log_patterns);
            if bytes >= MAX_LOG_BYTES {
                window.capped = true;
                break;
            }
        }
        // Every line returned is at or after `since`; a full tail may have cut older new lines.
        if received >= u64::from(cap) && window.lines >= u64::from(cap) {
            window.capped = true;
        }
        Ok(window)
    };
    match tokio::time::timeout(limit, read).await {
        Ok(r) => r,
        Err(_) => Err(timeout_failure("logs", limit)),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::probe::docker::fixtures::{config, default_config};

    fn line(stamp: &str, text: &str) -> String {
        format!("{stamp} {text}\n")
    }

    #[test]
    fn log_lines_at_or_before_the_cursor_are_not_counted_again() {
        let cfg = config(&[]);
        let names: Vec<_> = cfg.log_patterns.iter().map(|p| p.name.clone()).collect();
        let cursor = parse_time("2026-11-24T21:00:05.5Z").expect("time");
        let mut w = LogWindow {
            counts: vec![0; names.len()],
            newest: cursor,
            lines: 0,
            capped: false,
        };
        let chunk = [
            line(
                "2026-11-24T21:00:05.1Z",
                "ERROR openai 429 counted last poll",
            ),
            line(
                "2026-11-24T21:00:05.5Z",
                "ERROR openai 429 the cursor's own line",
            ),
            line(
                "2026-11-24T21:00:05.500000001Z",
                "ERROR calling OpenAI: 429 Too Many Requests",
            ),
            line("2026-11-24T21:00:06Z", "INFO all good"),
            "no timestamp at all\n".to_owned(),
        ]
        .concat();
        w.take(chunk.as_bytes(), cursor, &cfg.log_patterns);
        let count = |p: &str| w.counts[names.iter().position(|n| n == p).expect(p)];
        assert_eq!(w.lines, 2);
        assert_eq!((count("error"), count("openai"), count("429")), (1, 1, 1));
        assert_eq!(count("supabase"), 0);
        assert_eq!(w.newest, parse_time("2026-11-24T21:00:06Z").expect("time"));
    }

    /// Real `docker logs --timestamps` lines of the backend, the base of near-valid chunks.
    const REAL_LOG: &str = "2026-11-24T21:00:05.123456789Z INFO:     172.18.0.1:51234 - \"GET /health HTTP/1.1\" 200 OK\n2026-11-24T21:00:06.5Z ERROR calling OpenAI: 429 Too Many Requests\n2026-11-24T21:00:07Z sqlalchemy.exc.OperationalError: FATAL: too many connections for role \"postgres\"\n";

    /// Counting a chunk after `cursor`: never more lines than the chunk has, never more matches than
    /// lines, and the newest time never moves back.
    fn window_is_sound(chunk: &[u8], cursor: Nanos) -> Result<(), TestCaseError> {
        let cfg = default_config();
        let mut w = LogWindow {
            counts: vec![0; cfg.log_patterns.len()],
            newest: cursor,
            lines: 0,
            capped: false,
        };
        w.take(chunk, cursor, &cfg.log_patterns);
        let segments = chunk
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
        prop_assert!(w.lines <= segments as u64);
        prop_assert!(w.counts.iter().all(|c| *c <= w.lines), "{:?}", w);
        prop_assert!(w.newest >= cursor);
        Ok(())
    }

    proptest! {
        #![proptest_config(crate::mutate::cases(256))]

        #[test]
        fn prop_any_log_chunk_is_counted_within_bounds(
            chunk in prop::collection::vec(any::<u8>(), 0..400),
            cursor in any::<Nanos>(),
        ) {
            window_is_sound(&chunk, cursor)?;
        }

        #[test]
        fn prop_near_valid_log_chunks_are_counted_within_bounds(
            chunk in crate::mutate::near(REAL_LOG),
            cursor in prop_oneof![Just(0), Just(1_795_000_000_000_000_000), any::<Nanos>()],
        ) {
            window_is_sound(&chunk, cursor)?;
        }
    }
}
