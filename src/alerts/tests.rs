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
        Some("HighLatencyP95 (from the alert sender); HighLatencyP95 says «p95 above 3 s»")
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

/// The reading `name{section}` with its note's English words: `Some((n, note))`, `None` when
/// unknown.
fn reading(inbox: &Inbox, name: &str, section: &str, now: Timestamp) -> Option<(f64, String)> {
    let obs = inbox.observations(now);
    let o = obs
        .iter()
        .find(|o| o.key.name == name && o.key.labels["section"] == section)
        .unwrap_or_else(|| panic!("no {name} for {section}"));
    match &o.outcome {
        Outcome::Value(Value::Number(n)) => Some((
            *n,
            o.note.as_ref().map(ToString::to_string).unwrap_or_default(),
        )),
        Outcome::Unknown(_) => None,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_critical_label_counts_the_alert_as_critical_for_its_section() {
    let (inbox, within) = inbox();
    let now = T0 + within;
    let critical = |i: &Inbox| reading(i, "alerts.critical", "latency", now).map(|r| r.0);
    assert_eq!(critical(&inbox), Some(0.0));
    inbox.ingest(
        &one(
            &[("alertname", "HighLatencyP95"), ("severity", "page")],
            "firing",
        ),
        now,
    );
    assert_eq!(firing(&inbox, "latency", now), Some(1.0));
    assert_eq!(critical(&inbox), Some(0.0), "severity=page is not critical");
    inbox.ingest(
        &one(
            &[("alertname", "HighLatencyChat"), ("severity", "critical")],
            "firing",
        ),
        now,
    );
    assert_eq!(firing(&inbox, "latency", now), Some(2.0));
    let (n, note) = reading(&inbox, "alerts.critical", "latency", now).expect("known");
    assert_eq!(n, 1.0);
    assert!(
        note.contains("HighLatencyChat") && !note.contains("P95"),
        "{note}"
    );
    // The label and value are the runbook's to choose.
    let routing = AlertRouting {
        critical_label: "priority".into(),
        critical_value: "P1".into(),
        ..Runbook::embedded().alerts.clone()
    };
    let router = AlertRouter::new(&routing, vec!["latency".into()]);
    let labels = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>()
    };
    assert!(router.is_critical(&labels(&[("priority", "P1")])));
    assert!(!router.is_critical(&labels(&[("severity", "critical")])));
}

#[test]
fn a_firing_sections_note_quotes_the_alerts_summary_description_and_http_runbook_url() {
    let (inbox, within) = inbox();
    let now = T0 + within;
    inbox.ingest(&hook(FIRING), now);
    let (_, note) = reading(&inbox, "alerts.firing", "latency", now).expect("known");
    assert!(
        note.contains("HighLatencyP95 says «p95 above 3 s»"),
        "{note}"
    );
    let with = |url: &str| {
        serde_json::json!({
            "version": "4", "status": "firing", "receiver": "watchdog",
            "alerts": [{ "status": "firing",
                         "labels": { "alertname": "HighErrorRate5xx" },
                         "annotations": { "summary": "5xx above 5%", "description": "see «this»\nnow",
                                          "runbook_url": url },
                         "startsAt": "2026-12-07T00:25:52Z", "endsAt": "0001-01-01T00:00:00Z",
                         "fingerprint": "e1" }]
        })
        .to_string()
    };
    inbox.ingest(&hook(&with("https://wiki.harven.ai/runbook#errors")), now);
    let (_, note) = reading(&inbox, "alerts.firing", "errors", now).expect("known");
    assert!(
        note.contains("HighErrorRate5xx says «5xx above 5% — see ‹this› now»"),
        "{note}"
    );
    assert!(
        note.contains("HighErrorRate5xx's runbook: «https://wiki.harven.ai/runbook#errors»"),
        "{note}"
    );
    inbox.ingest(&hook(&with("javascript:alert(1)")), now);
    let (_, note) = reading(&inbox, "alerts.firing", "errors", now).expect("known");
    assert!(
        !note.contains("runbook:") && !note.contains("javascript"),
        "{note}"
    );
}

#[test]
fn the_inbox_kept_in_the_store_comes_back_after_a_restart_and_is_not_held() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path().join("w.db")).expect("store"));
    let (first, within) = inbox();
    first.persist_in(Arc::clone(&store), T0);
    first.ingest(&hook(FIRING), at(10));
    drop(first);
    // The next process, a minute later: the alert is back and its section fires on it at once,
    // although its symptom was restored (nothing is held).
    let (second, _) = inbox();
    second.persist_in(Arc::clone(&store), at(70));
    second.hold_until_resent(BTreeSet::from(["latency".to_owned()]));
    assert_eq!(firing(&second, "latency", at(70)), Some(1.0));
    // Its resolution, heard by this process, clears the section at once.
    second.ingest(&hook(RESOLVED), at(80));
    assert_eq!(firing(&second, "latency", at(80)), Some(0.0));
    // The alert's belief runs from when it was heard, across the restart.
    let (third, _) = inbox();
    store
        .put_value(STORE_NAME, &blob_of(&BTreeMap::new()))
        .expect("write");
    third.persist_in(Arc::clone(&store), at(90));
    third.ingest(&hook(FIRING), at(100));
    let (fourth, _) = inbox();
    fourth.persist_in(Arc::clone(&store), at(100) + within);
    assert_eq!(firing(&fourth, "latency", at(100) + within), None, "stale");
    // A blob of another version, or damaged, is left: the inbox starts empty and holds.
    store
        .put_value(STORE_NAME, br#"{"version":99,"alerts":[]}"#)
        .expect("write");
    let (fifth, _) = inbox();
    fifth.persist_in(Arc::clone(&store), T0);
    fifth.hold_until_resent(BTreeSet::from(["latency".to_owned()]));
    assert_eq!(firing(&fifth, "latency", at(1)), None, "held");
}

#[test]
fn the_kept_blob_is_bounded_and_keeps_the_firing_alerts_most_recently_heard_first() {
    let (inbox, within) = inbox();
    let now = T0 + within;
    let long = "x".repeat(payload::MAX_TEXT);
    for n in 0..MAX_ALERTS {
        let status = if n % 2 == 0 { "firing" } else { "resolved" };
        let body = serde_json::json!({
            "version": "4", "status": status, "receiver": "watchdog",
            "alerts": [{ "status": status,
                         "labels": { "alertname": format!("A{n}"), "note": long },
                         "annotations": { "summary": long, "description": long },
                         "startsAt": "2026-12-07T00:25:52Z", "endsAt": "0001-01-01T00:00:00Z",
                         "fingerprint": format!("f{n}") }]
        });
        inbox.ingest(
            &hook(&body.to_string()),
            now + Duration::from_secs(n as u64),
        );
    }
    let blob = blob_of(&inbox.lock().alerts);
    assert!(blob.len() <= MAX_BLOB, "{}", blob.len());
    let saved: Saved<(String, Kept)> = serde_json::from_slice(&blob).expect("reads back");
    assert_eq!(saved.version, BLOB_VERSION);
    assert!(!saved.alerts.is_empty());
    assert!(
        saved
            .alerts
            .iter()
            .all(|(_, a)| a.status == AlertStatus::Firing),
        "the resolved ones went first"
    );
    let newest = format!("A{}", MAX_ALERTS - 2);
    assert!(saved.alerts.iter().any(|(_, a)| a.alertname == newest));
}
