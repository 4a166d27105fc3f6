//! A store full of large incidents: what a flood of `GET /api/incidents?limit=500` and `GET /` reads
//! in the tests of reads under load (`tests/it/store.rs`, `tests/it/escalation.rs`) and in the
//! measurement `examples/store_flood.rs` (which includes this file alone, by `#[path]`: it uses
//! nothing but the library).

use std::collections::BTreeMap;
use std::time::Duration;

use harven_watchdog::clock::Timestamp;
use harven_watchdog::engine::CauseStatus;
use harven_watchdog::incident::{
    Ack, CauseSnapshot, DiagnosisSnapshot, EvidenceSnapshot, Incident, IncidentState, Level,
    TimelineEntry,
};
use harven_watchdog::runbook::{Role, Severity};
use harven_watchdog::store::Store;

/// The shipped runbook's sections, which the seeded incidents take in turn.
pub const SECTIONS: [&str; 6] = [
    "latency",
    "errors",
    "auth",
    "openai_quota",
    "database",
    "watchdog",
];

/// Timeline entries per seeded incident (the model keeps at most 200).
pub const TIMELINE: usize = 120;
/// Causes, and evidence lines per cause, of a seeded incident's diagnosis.
pub const CAUSES: usize = 6;
pub const LINES: usize = 6;

/// A resolved incident of `section` opened at `opened`, one hour long, with a [`TIMELINE`]-entry
/// timeline and a [`CAUSES`] × [`LINES`] diagnosis of long texts: about 40 KB of JSON, as an
/// incident that flapped for a day looks. `n` varies the texts.
pub fn large_incident(section: &str, opened: Timestamp, n: usize) -> Incident {
    let resolved = opened + Duration::from_secs(3600);
    let filler =
        "the backend answered slowly while the pool of database connections was exhausted; ";
    let timeline = (0..TIMELINE)
        .map(|i| TimelineEntry {
            at: opened + Duration::from_secs(30 * i as u64),
            kind: ["symptom_fired", "note", "paged", "muted"][i % 4].to_owned(),
            text: format!("#{n}.{i}: {}", filler.repeat(2)),
            msg: None,
        })
        .collect();
    let causes = (0..CAUSES)
        .map(|c| CauseSnapshot {
            id: format!("{section}.cause_{c}"),
            title: format!("Cause {c} of incident {n}: {filler}"),
            status: [
                CauseStatus::Likely,
                CauseStatus::Unknown,
                CauseStatus::RuledOut,
            ][c % 3],
            score: 1.0 / (c + 1) as f64,
            evidence: (0..LINES)
                .map(|l| EvidenceSnapshot {
                    condition: format!(
                        "prometheus.p95_seconds{{handler=\"/api/v1/h{l}\"}} > 3 ({filler})"
                    ),
                    weight: 1.0,
                    role: Role::Evidence,
                    truth: ["holds", "fails", "no_data", "unknown"][l % 4].to_owned(),
                    observed: format!("{}.{l} s, {}", n % 10, filler.repeat(2)),
                    cond: None,
                    found: Vec::new(),
                    more: 0,
                })
                .collect(),
            sentry_issues: Vec::new(),
        })
        .collect();
    Incident {
        id: Incident::make_id(section, opened),
        section: section.to_owned(),
        severity: Severity::Major,
        state: IncidentState::Resolved,
        opened_at: opened,
        critical_since: None,
        resolved_at: Some(resolved),
        reopened: 0,
        paged: BTreeMap::from([
            (Level::L1, opened),
            (Level::L2, opened + Duration::from_secs(1800)),
        ]),
        last_page: BTreeMap::from([(Level::L2, opened + Duration::from_secs(1800))]),
        reminders: 0,
        acks: BTreeMap::from([(
            Level::L1,
            Ack {
                by: "Ana (on call)".to_owned(),
                at: opened + Duration::from_secs(120),
            },
        )]),
        symptoms: BTreeMap::from([(
            format!("{section}.rule"),
            format!("p95 4.2 s > 3 s ({filler})"),
        )]),
        cause: format!("{section}.cause_0"),
        timeline,
        resolve_note: Some(filler.to_owned()),
        held_until_clear: false,
        resolve_notified: true,
        reopen_pending: false,
        diagnosis: Some(DiagnosisSnapshot {
            at: resolved,
            causes,
        }),
    }
}

/// Saves `count` large resolved incidents (the sections in turn), the newest resolved two hours
/// before `now` and each opened an hour and a half before the next: long enough ago that none can
/// reopen (`reopen_within` is 30 min by default) and recent enough that the default retention (30
/// days, pruned at start-up) keeps a few hundred. Returns how many bytes of JSON they take.
pub fn seed(store: &Store, count: usize, now: Timestamp) -> usize {
    let newest = now - Duration::from_secs(3 * 3600);
    let incidents: Vec<Incident> = (0..count)
        .map(|n| {
            let opened = newest - Duration::from_secs(5400 * n as u64);
            large_incident(SECTIONS[n % SECTIONS.len()], opened, n)
        })
        .collect();
    let bytes = incidents
        .iter()
        .map(|i| serde_json::to_string(i).expect("encode").len())
        .sum();
    for chunk in incidents.chunks(50) {
        store.save_incidents(chunk).expect("seed the store");
    }
    bytes
}
