//! The inbox as step-by-step scripts on simulated time: what each notification and each silence
//! makes of the sections' readings.

use std::time::Duration;

use super::*;
use crate::observe::Value;
use crate::runbook::Runbook;

/// The notifications the real Alertmanager (0.25, Debian) sent for one alert firing then resolved,
/// captured as they arrived (tests/fixtures/alertmanager).
const FIRING: &str = include_str!("../../tests/fixtures/alertmanager/webhook-v4-firing.json");
const RESOLVED: &str = include_str!("../../tests/fixtures/alertmanager/webhook-v4-resolved.json");

const T0: Timestamp = Timestamp::from_unix_millis(1_795_000_000_000);

fn at(secs: u64) -> Timestamp {
    T0 + Duration::from_secs(secs)
}

/// An inbox routing by the shipped runbook, started at T0, and the runbook's `resend_within`.
fn inbox() -> (Inbox, Duration) {
    let inbox = Inbox::new(T0, AlertMetrics::default());
    let router = Runbook::embedded().alert_router();
    let within = router.resend_within;
    inbox.set_router(router);
    (inbox, within)
}

fn hook(text: &str) -> Webhook {
    serde_json::from_str(text).expect("a webhook payload")
}

/// A one-alert notification with these labels and status.
fn one(labels: &[(&str, &str)], status: &str) -> Webhook {
    let labels: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
        .collect();
    hook(
        &serde_json::json!({
            "version": "4", "status": status, "receiver": "watchdog",
            "alerts": [{ "status": status, "labels": labels, "startsAt": "2026-12-07T00:25:52Z",
                         "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "" }]
        })
        .to_string(),
    )
}

/// The reading of `alerts.firing{section}`: `Some(n)` or `None` when unknown.
fn firing(inbox: &Inbox, section: &str, now: Timestamp) -> Option<f64> {
    let obs = inbox.observations(now);
    let o = obs
        .iter()
        .find(|o| o.key.name == "alerts.firing" && o.key.labels["section"] == section)
        .unwrap_or_else(|| panic!("no alerts.firing for {section}"));
    match &o.outcome {
        Outcome::Value(Value::Number(n)) => Some(*n),
        Outcome::Unknown(_) => None,
        other => panic!("{other:?}"),
    }
}

fn number(inbox: &Inbox, name: &str, now: Timestamp) -> f64 {
    let obs = inbox.observations(now);
    match obs.iter().find(|o| o.key.name == name).map(|o| &o.outcome) {
        Some(Outcome::Value(Value::Number(n))) => *n,
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn the_real_alertmanagers_payloads_fire_and_resolve_the_mapped_section() {
    let (inbox, within) = inbox();
    let warm = T0 + within;
    let fired = inbox.ingest(&hook(FIRING), warm);
    assert_eq!(
        fired,
        Ingested {
            alerts: 1,
            firing: 1,
            unmatched: 0,
            dropped: 0
        }
    );
    assert_eq!(firing(&inbox, "latency", warm), Some(1.0));
    assert_eq!(firing(&inbox, "errors", warm), Some(0.0));
    let obs = inbox.observations(warm);
    let latency = obs
        .iter()
        .find(|o| o.key.labels.get("section").is_some_and(|s| s == "latency"))
        .expect("latency");
    assert_eq!(
        latency.note.as_ref().map(ToString::to_string).as_deref(),
        Some("HighLatencyP95 (from the alert sender)")
    );

    inbox.ingest(&hook(RESOLVED), warm + Duration::from_secs(60));
    assert_eq!(
        firing(&inbox, "latency", warm + Duration::from_secs(60)),
        Some(0.0)
    );
    let listed = inbox.list(warm + Duration::from_secs(60));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, "65caee540e5b8086");
    assert_eq!(listed[0].state, AlertState::Resolved);
    assert!(inbox.list(warm + KEEP_RESOLVED * 2).is_empty(), "forgotten");
}

#[test]
fn a_silent_sender_makes_the_section_unknown_never_resolved_then_forgotten() {
    let (inbox, within) = inbox();
    let heard = T0 + within;
    inbox.ingest(&hook(FIRING), heard);
    // Alertmanager does not re-send a firing alert before its repeat_interval: still firing.
    let just_before = heard + within - Duration::from_secs(1);
    assert_eq!(firing(&inbox, "latency", just_before), Some(1.0));
    assert_eq!(number(&inbox, "alerts.stale", just_before), 0.0);
    // Past it without word: stale. Unknown (the symptom holds), and counted as stale.
    let stale = heard + within;
    assert_eq!(firing(&inbox, "latency", stale), None, "unknown, not 0");
    assert_eq!(number(&inbox, "alerts.stale", stale), 1.0);
    assert_eq!(inbox.list(stale)[0].state, AlertState::Stale);
    // The sender speaks again (its repeat): firing again, fresh.
    inbox.ingest(&hook(FIRING), stale + Duration::from_secs(5));
    assert_eq!(
        firing(&inbox, "latency", stale + Duration::from_secs(5)),
        Some(1.0)
    );
    // Silent for good: after forget_after it goes, and the section reads 0 again.
    let forget = Runbook::embedded().alerts.forget_after;
    let gone = stale + Duration::from_secs(5) + forget;
    assert_eq!(firing(&inbox, "latency", gone), Some(0.0));
    assert_eq!(number(&inbox, "alerts.stale", gone), 0.0);
    assert!(inbox.list(gone).is_empty());
}

#[test]
fn after_a_start_a_restored_alert_symptom_is_held_until_the_sender_had_time_to_resend() {
    let (inbox, within) = inbox();
    // The store restored latency's alert symptom (it fired before the restart); nothing else.
    inbox.hold_until_resent(["latency".to_owned()].into());
    inbox.hold_until_resent(["errors".to_owned()].into()); // a reload: ignored
    assert_eq!(firing(&inbox, "latency", T0), None, "unknown, not 0");
    assert_eq!(firing(&inbox, "latency", T0 + within / 2), None);
    assert_eq!(firing(&inbox, "errors", T0), Some(0.0), "not held");
    // A firing alert is known at once.
    inbox.ingest(&hook(FIRING), at(60));
    assert_eq!(firing(&inbox, "latency", at(60)), Some(1.0));
    // Its resolution during the warm-up leaves the section unknown: another alert of the section
    // may have fired before the start and not been re-sent yet.
    inbox.ingest(&hook(RESOLVED), at(120));
    assert_eq!(firing(&inbox, "latency", at(120)), None);
    assert_eq!(firing(&inbox, "latency", T0 + within), Some(0.0));
}

#[test]
fn a_start_with_nothing_restored_reads_zero_at_once() {
    let (inbox, _) = inbox();
    inbox.hold_until_resent(std::collections::BTreeSet::new());
    assert_eq!(firing(&inbox, "latency", T0), Some(0.0));
    assert_eq!(number(&inbox, "alerts.stale", T0), 0.0);
}

#[test]
fn unmatched_alerts_are_listed_and_counted_by_reason_never_dropped() {
    let (inbox, within) = inbox();
    let now = T0 + within;
    let got = inbox.ingest(&one(&[("alertname", "DiskFull")], "firing"), now);
    assert_eq!(got.unmatched, 1);
    inbox.ingest(
        &one(
            &[("alertname", "BillingHigh"), ("harven_section", "billing")],
            "firing",
        ),
        now,
    );
    inbox.ingest(
        &one(
            &[
                ("alertname", "QuotaNear"),
                ("harven_section", "openai_quota"),
            ],
            "firing",
        ),
        now,
    );
    assert_eq!(number(&inbox, "alerts.unmatched", now), 2.0);
    assert_eq!(firing(&inbox, "openai_quota", now), Some(1.0));
    let listed = inbox.list(now);
    let routed: Vec<(&str, Routed)> = listed
        .iter()
        .map(|a| (a.alertname.as_str(), a.routed.clone()))
        .collect();
    assert_eq!(
        routed,
        [
            ("BillingHigh", Routed::Unmatched(Unmatched::UnknownSection)),
            ("DiskFull", Routed::Unmatched(Unmatched::NoRoute)),
            ("QuotaNear", Routed::Section("openai_quota".into())),
        ]
    );
    let unmatched = |why: Unmatched| {
        inbox
            .metrics
            .unmatched
            .get_or_create(&ReasonLabel {
                reason: why.label(),
            })
            .get()
    };
    assert_eq!(
        (
            unmatched(Unmatched::NoRoute),
            unmatched(Unmatched::UnknownSection)
        ),
        (1, 1)
    );
}

#[test]
fn a_real_end_time_ahead_ends_the_belief_sooner_and_a_full_inbox_drops_new_alerts_counted() {
    let (inbox, within) = inbox();
    let now = T0 + within;
    let mut h = one(&[("alertname", "HighErrorRateAPI")], "firing");
    h.alerts[0].ends_at = "2026-11-18T16:21:40Z".into(); // an hour after `now`
    let end = payload::parse_time(&h.alerts[0].ends_at).expect("a time");
    assert!(end > now && end < now + within, "the test's end lies ahead");
    inbox.ingest(&h, now);
    assert_eq!(firing(&inbox, "errors", now), Some(1.0));
    assert_eq!(firing(&inbox, "errors", end), None, "stale at its own end");

    let full = Inbox::new(T0, AlertMetrics::default());
    let alerts: Vec<serde_json::Value> = (0..=MAX_ALERTS)
        .map(|i| serde_json::json!({"status": "firing", "labels": {"alertname": format!("A{i}")}}))
        .collect();
    let got = full.ingest(
        &hook(&serde_json::json!({ "alerts": alerts }).to_string()),
        now,
    );
    assert_eq!((got.alerts, got.dropped), (MAX_ALERTS + 1, 1));
    assert_eq!(full.list(now).len(), MAX_ALERTS);
    assert_eq!(full.metrics.dropped.get(), 1);
}
