//! The status-page probe: one per configured page (`status.openai`, `status.supabase`), reading a
//! statuspage.io v2 `/api/v2/status.json`:
//!
//! ```json
//! {"page":{"id":"…","name":"OpenAI","url":"https://status.openai.com"},
//!  "status":{"indicator":"minor","description":"Partially Degraded Service"}}
//! ```
//!
//! Outcomes: the page answered with a known indicator → `status.indicator`, `status.description` and
//! `status.latency_seconds` values (label `page=<name>`). Anything else is a **source failure**, never
//! a guess: no connection (`connect`), no complete answer within the timeout (`timeout`), a non-2xx
//! status such as a CDN's HTML 502 page (`status`), a body that is not that JSON or an indicator word
//! outside the known set (`malformed`), a body over [`MAX_BODY`] (`too_large`). Rules over the page
//! then read unknown, which is the honest answer: we do not know whether OpenAI is degraded.
//!
//! Known indicators are statuspage.io's documented `none`, `minor`, `major`, `critical`, plus
//! `maintenance`, which live pages send during a scheduled maintenance although the API docs omit it.
//! There is no *no data* and no per-key *unknown* outcome: a status page always has a status, and
//! its three readings come from one answer, so they stand or fall together.

use std::time::{Duration, Instant};

use serde::Deserialize;

use super::http::{malformed, read_capped, reqwest_failure};
use super::{Probe, truncate};
use crate::clock::Timestamp;
use crate::config::StatusPageConfig;
use crate::locale::{Msg, MsgId};
use crate::observe::{Failure, FailureKind, Key, Observation};

/// Largest status answer read. `status.json` is well under 1 KiB; `summary.json` with every component
/// is tens of KiB.
pub const MAX_BODY: usize = 1 << 20;

/// Extra time [`poll_once`](super::poll_once) allows beyond the request's own timeout.
const POLL_MARGIN: Duration = Duration::from_millis(500);

/// The indicator words a page may send.
pub const INDICATORS: [&str; 5] = ["none", "minor", "major", "critical", "maintenance"];

/// Longest description kept (the page's own one-liner; anything longer is cut).
const MAX_DESCRIPTION: usize = 200;

/// Polls one statuspage.io page.
#[derive(Debug)]
pub struct StatusPageProbe {
    config: StatusPageConfig,
    /// `status.<name>`.
    source: String,
    /// Shared by every HTTP probe (see [`build_all`](super::build_all)); requests set their own timeout.
    http: reqwest::Client,
}

impl StatusPageProbe {
    /// A probe of the page `config`, sending its requests through `http`.
    pub fn new(config: StatusPageConfig, http: reqwest::Client) -> Self {
        Self {
            source: format!("status.{}", config.name),
            config,
            http,
        }
    }
}

/// The part of `status.json` (or `summary.json`) that is read.
#[derive(Deserialize)]
struct StatusJson {
    status: StatusField,
}

#[derive(Deserialize)]
struct StatusField {
    indicator: String,
    #[serde(default)]
    description: String,
}

impl Probe for StatusPageProbe {
    fn source(&self) -> &str {
        &self.source
    }

    fn interval(&self) -> Duration {
        self.config.interval
    }

    fn timeout(&self) -> Duration {
        self.config.timeout + POLL_MARGIN
    }

    async fn poll(&mut self, _now: Timestamp) -> Result<Vec<Observation>, Failure> {
        let started = Instant::now();
        let response = self
            .http
            .get(self.config.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(self.config.timeout)
            .send()
            .await
            .map_err(|e| reqwest_failure(&e))?;
        let status = response.status();
        if !status.is_success() {
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            let words = match content_type {
                Some(ct) => Msg::new(MsgId::HttpContentType)
                    .arg("status", status)
                    .peer("content_type", truncate(ct, 60)),
                None => Msg::new(MsgId::HttpNoContentType).arg("status", status),
            };
            return Err(Failure::said(FailureKind::Status, words));
        }
        let body = read_capped(response, MAX_BODY).await?;
        let latency = started.elapsed();
        let parsed = parse(&body)?;

        let page = self.config.name.as_str();
        Ok(vec![
            Observation::text(
                Key::new("status.indicator").with("page", page),
                parsed.indicator,
            ),
            Observation::text(
                Key::new("status.description").with("page", page),
                truncate(parsed.description.trim(), MAX_DESCRIPTION),
            ),
            Observation::number(
                Key::new("status.latency_seconds").with("page", page),
                latency.as_secs_f64(),
            ),
        ])
    }
}

/// A validated answer: a known indicator and the page's description.
#[derive(Debug, PartialEq)]
struct Parsed {
    indicator: &'static str,
    description: String,
}

/// Parses a statuspage.io answer, refusing anything that is not one.
fn parse(body: &[u8]) -> Result<Parsed, Failure> {
    // serde quotes a wrong value whole; the detail goes to logs and pages, so it is cut short.
    let answer: StatusJson = serde_json::from_slice(body)
        .map_err(|e| malformed(body, Msg::new(MsgId::StatuspageJson), &e))?;
    let word = answer.status.indicator.trim().to_ascii_lowercase();
    let indicator = INDICATORS
        .iter()
        .find(|known| **known == word)
        .ok_or_else(|| {
            Failure::said(
                FailureKind::Malformed,
                Msg::new(MsgId::UnknownIndicator)
                    .peer("indicator", truncate(&answer.status.indicator, 40))
                    // statuspage.io's words, the same in every language: code, not prose.
                    .arg("known", format_args!("`{}`", INDICATORS.join("`, `"))),
            )
        })?;
    Ok(Parsed {
        indicator,
        description: answer.status.description,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn parses_the_statuspage_answer() {
        let body = br#"{"page":{"id":"x","name":"OpenAI","url":"https://status.openai.com","time_zone":"Etc/UTC","updated_at":"2026-11-24T10:00:00Z"},"status":{"indicator":"major","description":"Partial System Outage"}}"#;
        assert_eq!(
            parse(body).unwrap(),
            Parsed {
                indicator: "major",
                description: "Partial System Outage".into()
            }
        );
        let maintenance =
            br#"{"status":{"indicator":"maintenance","description":"Service Under Maintenance"}}"#;
        assert_eq!(parse(maintenance).unwrap().indicator, "maintenance");
    }

    #[test]
    fn refuses_html_other_shapes_and_unknown_words() {
        let html = parse(b"\n<html><body>502 Bad Gateway</body></html>").unwrap_err();
        assert_eq!(html.kind, FailureKind::Malformed);
        assert!(html.detail.contains("HTML"), "{}", html.detail);

        let shape =
            parse(br#"{"result":{"status_overall":{"status":"Operational"}}}"#).unwrap_err();
        assert_eq!(shape.kind, FailureKind::Malformed);

        let word = parse(br#"{"status":{"indicator":"on fire","description":"x"}}"#).unwrap_err();
        assert_eq!(word.kind, FailureKind::Malformed);
        assert!(word.detail.contains("«on fire»"), "{}", word.detail);
    }

    /// A real statuspage.io answer (OpenAI's page, abridged), the base of the near-valid inputs.
    const REAL: &str = r#"{"page":{"id":"01JMBBQGKC3ST1HSJ3KGA1NA4V","name":"OpenAI","url":"https://status.openai.com","time_zone":"Etc/UTC","updated_at":"2026-11-24T10:00:00.123Z"},"status":{"indicator":"minor","description":"Partially Degraded Service"}}"#;

    /// A refusal is a short, malformed-kind failure: the detail goes to logs, the status page and
    /// emails, so an answer's own text is quoted only in part.
    fn refused_well(body: &[u8]) -> Result<(), TestCaseError> {
        if let Err(f) = parse(body) {
            prop_assert_eq!(f.kind, FailureKind::Malformed);
            prop_assert!(!f.detail.is_empty());
            prop_assert!(
                f.detail.chars().count() <= 300,
                "{} chars: {}",
                f.detail.chars().count(),
                f.detail
            );
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(crate::mutate::cases(256))]

        #[test]
        fn prop_any_bytes_are_parsed_or_refused(body in prop::collection::vec(any::<u8>(), 0..400)) {
            refused_well(&body)?;
        }

        #[test]
        fn prop_near_valid_answers_are_parsed_or_refused(body in crate::mutate::near(REAL)) {
            refused_well(&body)?;
        }

        #[test]
        fn prop_every_indicator_and_description_round_trip(
            indicator in prop::sample::select(&INDICATORS[..]),
            description in any::<String>(),
        ) {
            let body = serde_json::json!({
                "page": {"id": "x", "name": "Supabase"},
                "status": {"indicator": indicator.to_uppercase(), "description": description},
            });
            let parsed = parse(body.to_string().as_bytes()).expect("a valid answer");
            prop_assert_eq!(parsed, Parsed { indicator, description });
        }
    }

    #[test]
    fn a_long_wrong_value_is_not_quoted_whole() {
        let body = format!(r#"{{"status":"{}"}}"#, "A".repeat(10_000));
        let f = parse(body.as_bytes()).unwrap_err();
        assert!(f.detail.len() < 300, "{}", f.detail);
    }
}
