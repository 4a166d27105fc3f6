//! Blind spots: the runbook's rules that cannot fire on what the watchdog can see, each with why and
//! the fix.
//!
//! The probes report what they find wrong with their peer as observations (the Prometheus probe's
//! `prometheus.blind_spot{obs, reason}`, whose text carries the fix; the Docker probe's
//! `docker.role_containers{role}` at 0), and a source that is off unless configured (`[openai]`)
//! fails when configured; this module maps them onto the rules that read those
//! observations. It is pure, like the engine. Before each evaluation [`apply`] records the result in
//! the evidence as the `doctor` source's `doctor.rule_blind{rule}` observations, one per rule (the
//! text is the detail with the fix, empty while the rule can fire), so the shipped runbook's
//! `watchdog.rule_blind` rule opens the watchdog section's incident (L1 only), its email and status
//! page say it with the fix, and it clears once fixed; the watch loop exports the result on
//! `/metrics` (`harven_watchdog_rule_blind{rule,reason}`) and logs each blind spot once, and
//! `diagnose` prints it.

use std::collections::BTreeMap;

use serde::Serialize;

use std::time::Duration;

use crate::clock::Timestamp;
use crate::locale::{Msg, MsgId};
use crate::observe::{Evidence, Key, Observation, ProbeReport, Reading, Value};
use crate::runbook::{Condition, Runbook};

/// One rule that cannot fire, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct BlindSpot {
    /// The rule's ID (`latency.p95_high`).
    pub rule: String,
    /// A stable word for metrics: `buckets`, `no_series`, `no_job`, `no_container`,
    /// `source_failing`.
    pub reason: String,
    /// What is missing and the fix, in the probe's words (English: metrics' logs and the API).
    pub detail: String,
    /// The same, worded in the reader's language where shown.
    #[serde(skip)]
    pub msg: Msg,
}

/// The source name of the blind-spot observations.
pub const SOURCE: &str = "doctor";

/// Finds the blind spots of `runbook` in `ev` and records them in `ev` as the [`SOURCE`]'s
/// `doctor.rule_blind{rule}` observations at `now`, one per rule of the runbook: its blind spots'
/// details with their reasons, or an empty text when it can fire; returns them.
pub fn apply(runbook: &Runbook, ev: &mut Evidence, now: Timestamp) -> Vec<BlindSpot> {
    let spots = blind_spots(runbook, ev);
    // One instance per rule, always: a blind spot that is fixed reads "" and its symptom clears
    // (an instance that vanished would be held as it was, firing for ever).
    let observations = runbook
        .sections
        .iter()
        .flat_map(|s| &s.rules)
        .map(|rule| {
            let words: Vec<Msg> = spots
                .iter()
                .filter(|s| s.rule == rule.id)
                .map(|s| {
                    Msg::new(MsgId::WithReason)
                        .msg("detail", s.msg.clone())
                        .arg("reason", &s.reason)
                })
                .collect();
            let key = Key::new("doctor.rule_blind").with("rule", rule.id.as_str());
            // Empty while the rule can fire: no note then (nothing to say in any language).
            if words.is_empty() {
                Observation::text(key, "")
            } else {
                Observation::said(key, Msg::list(words))
            }
        })
        .collect();
    ev.apply(ProbeReport {
        source: SOURCE.to_owned(),
        at: now,
        took: Duration::ZERO,
        result: Ok(observations),
    });
    spots
}

/// Every rule of `runbook` that the blind spots in `ev` make unable to fire, sorted by rule.
pub fn blind_spots(runbook: &Runbook, ev: &Evidence) -> Vec<BlindSpot> {
    // What the probes said: by observation name (or `prometheus.*`), the reason and detail.
    let mut by_obs: BTreeMap<String, Vec<(String, Msg)>> = BTreeMap::new();
    for (labels, reading) in ev.instances("prometheus.blind_spot") {
        if let (
            Some(obs),
            Reading::Value {
                value: Value::Text(detail),
                ..
            },
        ) = (labels.get("obs"), reading)
            && !detail.is_empty()
        {
            let reason = labels.get("reason").cloned().unwrap_or_default();
            // The probe's words, in the reader's language where it kept them (`Observation::said`).
            let key = Key {
                name: "prometheus.blind_spot",
                labels: labels.clone(),
            };
            let msg = ev
                .note(&key)
                .cloned()
                .unwrap_or_else(|| Msg::english(detail.clone()));
            by_obs.entry(obs.clone()).or_default().push((reason, msg));
        }
    }
    let mut empty_roles: BTreeMap<String, Msg> = BTreeMap::new();
    for (labels, reading) in ev.instances("docker.role_containers") {
        if let (
            Some(role),
            Reading::Value {
                value: Value::Number(n),
                ..
            },
        ) = (labels.get("role"), reading)
            && *n == 0.0
        {
            let detail = ev
                .note(&crate::observe::Key {
                    name: "docker.role_containers",
                    labels: labels.clone(),
                })
                .cloned()
                .unwrap_or_else(|| {
                    Msg::new(MsgId::NoRoleMatchFix)
                        .arg("role", role)
                        .arg("how", "?")
                });
            empty_roles.insert(role.clone(), detail);
        }
    }
    let mut out = Vec::new();
    for section in &runbook.sections {
        for rule in &section.rules {
            let conditions = std::iter::once(&rule.when).chain(&rule.clear);
            for c in conditions {
                let found = causes_of(c, &by_obs, &empty_roles)
                    .into_iter()
                    .chain(optional_source_failing(c, ev));
                for (reason, msg) in found {
                    let spot = BlindSpot {
                        rule: rule.id.clone(),
                        reason,
                        detail: msg.to_string(),
                        msg,
                    };
                    if !out.contains(&spot) {
                        out.push(spot);
                    }
                }
            }
        }
    }
    out.sort();
    out
}

/// The blind spot of a condition over a source that is off unless configured
/// ([`crate::observe::OPTIONAL_PROBES`]) and is configured but failing: its rule cannot fire (nor
/// clear) until the source answers, and the failure's detail says what to fix (the probe words it
/// so: a refused key names its `*_file`). The core sources have rules of their own for that
/// (`watchdog.prometheus_blind`, …); these have none, so the doctor says it. The reason is
/// `source_failing`, one more word of the closed set.
fn optional_source_failing(c: &Condition, ev: &Evidence) -> Option<(String, Msg)> {
    let probe = crate::observe::spec_of(c.obs.as_deref()?)?.probe;
    if !crate::observe::is_optional_probe(probe) {
        return None;
    }
    let (source, state) = ev.sources().iter().find(|(s, _)| s.as_str() == probe)?;
    let failure = state.failure.as_ref()?;
    Some((
        "source_failing".to_owned(),
        Msg::new(MsgId::BlindSourceFailing)
            .arg("source", source)
            .msg("failure", failure.reader_words()),
    ))
}

/// The blind spots that keep `c` from seeing anything.
fn causes_of(
    c: &Condition,
    by_obs: &BTreeMap<String, Vec<(String, Msg)>>,
    empty_roles: &BTreeMap<String, Msg>,
) -> Vec<(String, Msg)> {
    let Some(obs) = c.obs.as_deref() else {
        return Vec::new();
    };
    // The rules about blind spots themselves read these.
    if matches!(
        obs,
        "prometheus.blind_spot" | "docker.role_containers" | "doctor.rule_blind"
    ) {
        return Vec::new();
    }
    let mut found = Vec::new();
    if let Some(list) = by_obs.get(obs) {
        found.extend(list.iter().cloned());
    }
    // `prometheus.*` (no request series) blinds every reading made from the backend's metrics,
    // but not `backend_up`: it reads Prometheus' own `up`, which has its own blind spot (`no_job`).
    if obs.starts_with("prometheus.")
        && obs != "prometheus.backend_up"
        && let Some(list) = by_obs.get("prometheus.*")
    {
        found.extend(list.iter().cloned());
    }
    if obs.starts_with("docker.")
        && let Some(detail) = c.labels.get("role").and_then(|r| empty_roles.get(r))
    {
        found.push(("no_container".to_owned(), detail.clone()));
    }
    found
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn evidence(observations: Vec<Observation>) -> Evidence {
        let mut ev = Evidence::new();
        ev.apply(ProbeReport {
            source: "prometheus".into(),
            at: Timestamp::from_unix_millis(1_790_000_000_000),
            took: Duration::from_millis(1),
            result: Ok(observations),
        });
        ev
    }

    #[test]
    fn a_blind_spot_names_every_rule_reading_its_observation() {
        let runbook = Runbook::embedded();
        let ev = evidence(vec![
            Observation::text(
                Key::new("prometheus.blind_spot")
                    .with("obs", "prometheus.p95_seconds")
                    .with("reason", "buckets"),
                "p95 > 3 s cannot be seen. Fix: …",
            ),
            Observation::text(
                Key::new("prometheus.blind_spot")
                    .with("obs", "prometheus.backend_up")
                    .with("reason", "no_job"),
                "no job",
            ),
        ]);
        let spots = blind_spots(&runbook, &ev);
        let rules: Vec<(&str, &str)> = spots
            .iter()
            .map(|s| (s.rule.as_str(), s.reason.as_str()))
            .collect();
        assert_eq!(
            rules,
            [
                ("errors.backend_target_down", "no_job"),
                ("latency.p95_high", "buckets")
            ]
        );
        assert!(spots[1].detail.contains("Fix"));
    }

    #[test]
    fn missing_series_blind_every_prometheus_rule_but_up_and_no_blind_spot_blinds_nothing() {
        let runbook = Runbook::embedded();
        let ev = evidence(vec![Observation::text(
            Key::new("prometheus.blind_spot")
                .with("obs", "prometheus.*")
                .with("reason", "no_series"),
            "no http_requests_total series",
        )]);
        let rules: Vec<String> = blind_spots(&runbook, &ev)
            .into_iter()
            .map(|s| s.rule)
            .collect();
        for rule in ["latency.p95_high", "errors.ratio_high", "auth.mass_401_403"] {
            assert!(rules.iter().any(|r| r == rule), "{rule} in {rules:?}");
        }
        assert!(!rules.iter().any(|r| r == "errors.backend_target_down"));
        let mut none = evidence(vec![Observation::number(
            Key::new("prometheus.error_ratio"),
            0.0,
        )]);
        let now = Timestamp::from_unix_millis(1_790_000_000_000);
        assert!(apply(&runbook, &mut none, now).is_empty());
        let said = none.instances("doctor.rule_blind");
        let rules = runbook
            .sections
            .iter()
            .map(|s| s.rules.len())
            .sum::<usize>();
        assert_eq!(
            said.len(),
            rules,
            "one reading per rule, so a fixed one clears"
        );
        assert!(said.iter().all(
            |(_, r)| matches!(r, Reading::Value { value: Value::Text(t), .. } if t.is_empty())
        ));
    }

    #[test]
    fn a_role_matching_no_container_blinds_the_rules_on_that_role() {
        let runbook = Runbook::embedded();
        let mut ev = Evidence::new();
        ev.apply(ProbeReport {
            source: "docker".into(),
            at: Timestamp::from_unix_millis(1_790_000_000_000),
            took: Duration::from_millis(1),
            result: Ok(vec![
                Observation::number(
                    Key::new("docker.role_containers").with("role", "backend"),
                    0.0,
                ),
                Observation::number(
                    Key::new("docker.role_containers").with("role", "redis"),
                    1.0,
                ),
            ]),
        });
        let spots = apply(
            &runbook,
            &mut ev,
            Timestamp::from_unix_millis(1_790_000_000_000),
        );
        let rules: Vec<&str> = spots.iter().map(|s| s.rule.as_str()).collect();
        assert!(rules.contains(&"errors.backend_down"), "{rules:?}");
        assert!(rules.contains(&"openai_quota.http_429"), "{rules:?}");
        assert!(
            spots.iter().all(|s| s.reason == "no_container"),
            "{spots:?}"
        );
        assert!(
            spots[0].detail.contains("docker.roles.backend"),
            "{spots:?}"
        );
        let blind = ev
            .instances("doctor.rule_blind")
            .into_iter()
            .filter(
                |(_, r)| matches!(r, Reading::Value { value: Value::Text(t), .. } if !t.is_empty()),
            )
            .count();
        assert_eq!(blind, spots.len());
    }

    /// `source` failing with `detail` (a status), as its probe reports it.
    fn failing(source: &str, detail: &str) -> ProbeReport {
        ProbeReport {
            source: source.into(),
            at: Timestamp::from_unix_millis(1_790_000_000_000),
            took: Duration::from_millis(1),
            result: Err(crate::observe::Failure::new(
                crate::observe::FailureKind::Status,
                detail,
            )),
        }
    }

    /// The rules of `spots` with their reasons.
    fn rules(spots: &[BlindSpot]) -> Vec<(&str, &str)> {
        spots
            .iter()
            .map(|s| (s.rule.as_str(), s.reason.as_str()))
            .collect()
    }

    #[test]
    fn a_failing_optional_source_blinds_its_rules_with_the_probes_fix() {
        let runbook = Runbook::embedded();
        let mut ev = Evidence::new();
        // A core source failing has its own watchdog rule: no blind spot from here.
        ev.apply(failing("redis", "connection refused"));
        assert!(blind_spots(&runbook, &ev).is_empty());
        ev.apply(failing(
            "openai.usage",
            "HTTP 401 Unauthorized (invalid_api_key): OpenAI refused the key. Fix: check [openai] admin_key_file",
        ));
        let spots = blind_spots(&runbook, &ev);
        assert_eq!(
            rules(&spots),
            [("openai_quota.budget_forecast", "source_failing")]
        );
        assert!(spots[0].detail.contains("admin_key_file"), "{spots:?}");
    }

    /// `[coolify]` off: no rule over it is blind (never reported is not failing). Configured and
    /// failing: the rule that reads it (`errors.coolify_deploy_failed`) is a blind spot with the fix.
    #[test]
    fn coolify_failing_blinds_the_failed_deploy_rule_and_coolify_off_blinds_nothing() {
        let runbook = Runbook::embedded();
        let mut ev = Evidence::new();
        assert!(blind_spots(&runbook, &ev).is_empty());
        ev.apply(failing(
            "coolify",
            "HTTP 401 Unauthorized. Fix: check [coolify] token_file",
        ));
        let spots = blind_spots(&runbook, &ev);
        assert_eq!(
            rules(&spots),
            [("errors.coolify_deploy_failed", "source_failing")]
        );
        assert!(spots[0].detail.contains("token_file"), "{spots:?}");
    }
}
