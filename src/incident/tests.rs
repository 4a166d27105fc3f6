//! Step-by-step scripts of the escalation rules on simulated time, asserting after every step.

use std::time::Duration;

use super::book::due_at;
use super::*;
use crate::clock::Timestamp;
use crate::engine::{Diagnosis, SectionState};
use crate::runbook::Severity;

const MIN: u64 = 60;

fn at(secs: u64) -> Timestamp {
    Timestamp::from_unix_millis(1_795_000_000_000) + Duration::from_secs(secs)
}

fn policy() -> Policy {
    Policy {
        l2_after: Duration::from_secs(30 * MIN),
        l3_critical_for: Duration::from_secs(60 * MIN),
        reopen_within: Duration::from_secs(30 * MIN),
        repeat_interval: Duration::from_secs(30 * MIN),
        ack_timeout: Duration::from_secs(60 * MIN),
        ack_stops_escalation: false,
        l1_only: vec!["watchdog".into()],
    }
}

fn section(id: &str, severity: Option<Severity>) -> SectionState {
    SectionState {
        section: id.into(),
        title: id.into(),
        active: severity.is_some(),
        severity,
        diagnosis: Diagnosis {
            section: id.into(),
            causes: Vec::new(),
        },
    }
}

/// One step with `errors` at `severity` (None: clear) and no windows; the (level, event) pages.
fn step(book: &mut Book, secs: u64, severity: Option<Severity>) -> Vec<(Level, PageEvent)> {
    step_w(book, secs, severity, &[])
}

fn step_w(
    book: &mut Book,
    secs: u64,
    severity: Option<Severity>,
    windows: &[Window],
) -> Vec<(Level, PageEvent)> {
    let out = book.step(
        &[section("errors", severity)],
        &[],
        at(secs),
        &policy(),
        windows,
    );
    out.pages.iter().map(|p| (p.level, p.event)).collect()
}

use Level::{L1, L2, L3};
use PageEvent::{Escalated, Opened, Reminder, Reopened, Resolved};
const MAJOR: Option<Severity> = Some(Severity::Major);
const CRITICAL: Option<Severity> = Some(Severity::Critical);

#[test]
fn l1_at_open_l2_at_exactly_30_minutes_and_never_l3_for_a_major_incident() {
    let mut b = Book::default();
    assert_eq!(step(&mut b, 0, MAJOR), [(L1, Opened)]);
    assert_eq!(step(&mut b, 60, MAJOR), [], "L1 is paged once");
    assert_eq!(step(&mut b, 30 * MIN - 1, MAJOR), [], "no L2 at 29:59");
    assert_eq!(
        step(&mut b, 30 * MIN, MAJOR),
        [(L2, Escalated)],
        "L2 at 30:00"
    );
    // Reminders to L2 (the highest paged level, unacknowledged) every 30 minutes; never L3.
    let mut l3 = 0;
    for m in (31..=600).step_by(1) {
        for (level, _) in step(&mut b, m * MIN, MAJOR) {
            if level == L3 {
                l3 += 1;
            }
        }
    }
    assert_eq!(l3, 0, "a major incident never reaches L3");
}

#[test]
fn l3_one_hour_after_becoming_critical() {
    let mut b = Book::default();
    assert_eq!(step(&mut b, 0, MAJOR), [(L1, Opened)]);
    assert_eq!(step(&mut b, 10 * MIN, CRITICAL), []);
    assert_eq!(step(&mut b, 30 * MIN, CRITICAL), [(L2, Escalated)]);
    assert_eq!(
        step(&mut b, 60 * MIN, CRITICAL),
        [(L2, Reminder)],
        "L2 has not acknowledged"
    );
    assert_eq!(
        step(&mut b, 70 * MIN - 1, CRITICAL),
        [],
        "critical for 59:59"
    );
    assert_eq!(
        step(&mut b, 70 * MIN, CRITICAL),
        [(L3, Escalated)],
        "critical for 1 h"
    );
    let inc = b.incidents().next().expect("incident");
    assert_eq!(inc.critical_since, Some(at(10 * MIN)));
    assert_eq!(inc.severity, Severity::Critical);
}

#[test]
fn resolving_mails_exactly_the_levels_paged() {
    let mut b = Book::default();
    step(&mut b, 0, MAJOR);
    step(&mut b, 30 * MIN, MAJOR);
    assert_eq!(
        step(&mut b, 40 * MIN, None),
        [(L1, Resolved), (L2, Resolved)]
    );
    assert_eq!(step(&mut b, 41 * MIN, None), [], "once");
    let inc = b.incidents().next().expect("incident");
    assert_eq!(inc.state, IncidentState::Resolved);
    assert_eq!(inc.resolved_at, Some(at(40 * MIN)));

    let mut b = Book::default();
    step(&mut b, 0, MAJOR);
    assert_eq!(
        step(&mut b, 5 * MIN, None),
        [(L1, Resolved)],
        "only L1 was paged"
    );
}

#[test]
fn flapping_reopens_the_same_incident_and_keeps_the_l2_clock() {
    let mut b = Book::default();
    assert_eq!(step(&mut b, 0, MAJOR), [(L1, Opened)]);
    let id = b.incidents().next().expect("incident").id.clone();
    assert_eq!(step(&mut b, 10 * MIN, None), [(L1, Resolved)]);
    assert_eq!(
        step(&mut b, 20 * MIN, MAJOR),
        [(L1, Reopened)],
        "within 30 min: reopened"
    );
    assert_eq!(
        b.incidents().next().expect("incident").id,
        id,
        "the same incident"
    );
    assert_eq!(step(&mut b, 25 * MIN, None), [(L1, Resolved)]);
    assert_eq!(step(&mut b, 28 * MIN, MAJOR), [(L1, Reopened)]);
    assert_eq!(
        step(&mut b, 30 * MIN, MAJOR),
        [(L2, Escalated)],
        "L2 at 30 min from the first open"
    );
    let inc = b.incidents().next().expect("incident");
    assert_eq!((inc.reopened, inc.opened_at), (2, at(0)));

    // Resolved for longer than reopen_within: a new incident, new clocks.
    assert_eq!(
        step(&mut b, 40 * MIN, None),
        [(L1, Resolved), (L2, Resolved)]
    );
    assert_eq!(step(&mut b, 71 * MIN, MAJOR), [(L1, Opened)]);
    let inc = b.incidents().next().expect("incident");
    assert_ne!(inc.id, id);
    assert_eq!(inc.opened_at, at(71 * MIN));
}

#[test]
fn reminders_until_acknowledged_and_again_after_the_ack_times_out() {
    let mut b = Book::default();
    step(&mut b, 0, MAJOR);
    assert_eq!(step(&mut b, 29 * MIN, MAJOR), []);
    // L2 at 30 min; the reminder clock of L2 starts there.
    assert_eq!(step(&mut b, 30 * MIN, MAJOR), [(L2, Escalated)]);
    assert_eq!(step(&mut b, 60 * MIN, MAJOR), [(L2, Reminder)]);
    let id = b.incidents().next().expect("incident").id.clone();
    assert_eq!(b.ack(&id, None, "ana", at(61 * MIN)), Ok(L2));
    assert_eq!(
        step(&mut b, 90 * MIN, MAJOR),
        [],
        "acknowledged: no reminder"
    );
    assert_eq!(
        step(&mut b, 120 * MIN, MAJOR),
        [],
        "still within ack_timeout (1 h from 61 min)"
    );
    assert_eq!(
        step(&mut b, 121 * MIN, MAJOR),
        [(L2, Reminder)],
        "the ack timed out"
    );
    assert_eq!(
        step(&mut b, 150 * MIN, MAJOR),
        [],
        "the next reminder is 30 min after the last one (121), at 151"
    );
    assert_eq!(step(&mut b, 151 * MIN, MAJOR), [(L2, Reminder)]);
    let inc = b.incidents().next().expect("incident");
    assert_eq!(inc.reminders, 3);
    assert_eq!(inc.acks[&L2].by, "ana");
}

#[test]
fn an_ack_does_not_stop_l2_unless_configured() {
    let mut b = Book::default();
    step(&mut b, 0, MAJOR);
    let id = b.incidents().next().expect("incident").id.clone();
    b.ack(&id, None, "bruno", at(MIN)).expect("ack");
    assert_eq!(
        step(&mut b, 30 * MIN, MAJOR),
        [(L2, Escalated)],
        "the runbook: after 30 min unresolved"
    );

    let mut p = policy();
    p.ack_stops_escalation = true;
    let mut b = Book::default();
    b.step(&[section("errors", MAJOR)], &[], at(0), &p, &[]);
    let id = b.incidents().next().expect("incident").id.clone();
    b.ack(&id, None, "bruno", at(MIN)).expect("ack");
    let out = b.step(&[section("errors", MAJOR)], &[], at(30 * MIN), &p, &[]);
    assert!(out.pages.is_empty(), "{out:?}");
}

#[test]
fn a_maintenance_window_mutes_and_pauses_the_clocks() {
    let w = [Window {
        sections: vec!["errors".into()],
        starts: at(10 * MIN),
        ends: at(25 * MIN),
    }];
    let mut b = Book::default();
    assert_eq!(step_w(&mut b, 0, MAJOR, &w), [(L1, Opened)]);
    // 15 minutes of maintenance: L2 moves from 30 to 45 minutes.
    assert_eq!(
        step_w(&mut b, 30 * MIN, MAJOR, &w),
        [(L1, Reminder)],
        "L1, unacknowledged, is reminded"
    );
    assert_eq!(step_w(&mut b, 45 * MIN - 1, MAJOR, &w), []);
    assert_eq!(step_w(&mut b, 45 * MIN, MAJOR, &w), [(L2, Escalated)]);
    assert_eq!(
        b.next_deadline(at(45 * MIN), &policy(), &w),
        Some(at(75 * MIN)),
        "next: the L2 reminder"
    );

    // A window in progress holds the reminder back until it ends.
    let w2 = [Window {
        sections: vec![],
        starts: at(70 * MIN),
        ends: at(90 * MIN),
    }];
    assert_eq!(step_w(&mut b, 75 * MIN, MAJOR, &w2), []);
    assert_eq!(step_w(&mut b, 90 * MIN, MAJOR, &w2), [(L2, Reminder)]);

    // An incident opening inside a window pages L1 when the window ends.
    let w = [Window {
        sections: vec![],
        starts: at(0),
        ends: at(20 * MIN),
    }];
    let mut b = Book::default();
    assert_eq!(step_w(&mut b, MIN, MAJOR, &w), []);
    assert_eq!(b.next_deadline(at(MIN), &policy(), &w), Some(at(20 * MIN)));
    assert_eq!(step_w(&mut b, 20 * MIN, MAJOR, &w), [(L1, Opened)]);
    let inc = b.incidents().next().expect("incident");
    assert_eq!(
        inc.opened_at,
        at(MIN),
        "recorded when it opened, muted or not"
    );
    // A window on another section changes nothing.
    assert_eq!(
        due_at(
            at(0),
            Duration::from_secs(30 * MIN),
            "latency",
            &[Window {
                sections: vec!["errors".into()],
                starts: at(0),
                ends: at(MIN)
            }]
        ),
        at(30 * MIN)
    );
    // Stored windows spanning every `i64` (rows of an older, unchecked daemon): the deadline is
    // "never", and nothing overflows.
    let endless = Window {
        sections: vec![],
        starts: Timestamp::from_unix_millis(i64::MIN),
        ends: Timestamp::from_unix_millis(i64::MAX),
    };
    assert_eq!(
        due_at(
            at(0),
            Duration::from_secs(30 * MIN),
            "latency",
            &vec![endless; 2000]
        ),
        Timestamp::from_unix_millis(i64::MAX)
    );
}

#[test]
fn the_watchdog_section_pages_l1_only() {
    let mut b = Book::default();
    let out = b.step(&[section("watchdog", CRITICAL)], &[], at(0), &policy(), &[]);
    assert_eq!(out.pages.len(), 1);
    for m in 1..=180 {
        let out = b.step(
            &[section("watchdog", CRITICAL)],
            &[],
            at(m * MIN),
            &policy(),
            &[],
        );
        assert!(out.pages.iter().all(|p| p.level == L1), "{out:?}");
    }
}

#[test]
fn a_manual_resolve_holds_until_the_section_clears() {
    let mut b = Book::default();
    step(&mut b, 0, MAJOR);
    let id = b.incidents().next().expect("incident").id.clone();
    b.resolve(&id, "carla", "rolled back", at(5 * MIN))
        .expect("resolve");
    assert_eq!(
        step(&mut b, 6 * MIN, MAJOR),
        [(L1, Resolved)],
        "resolved mail, no reopen while still firing"
    );
    assert_eq!(step(&mut b, 7 * MIN, MAJOR), []);
    assert_eq!(step(&mut b, 8 * MIN, None), []);
    assert_eq!(
        step(&mut b, 9 * MIN, MAJOR),
        [(L1, Reopened)],
        "fired again after clearing: reopened"
    );
    assert_eq!(
        b.resolve("nope", "x", "", at(0)),
        Err(ActionError::UnknownIncident("nope".into()))
    );
}

#[test]
fn page_keys_are_stable_and_distinct() {
    let mut b = Book::default();
    let p1 = b
        .step(&[section("errors", MAJOR)], &[], at(0), &policy(), &[])
        .pages;
    let id = b.incidents().next().expect("incident").id.clone();
    assert_eq!(p1[0].key, format!("{id}/L1/opened/0"));
    b.step(&[section("errors", None)], &[], at(MIN), &policy(), &[]);
    let p2 = b
        .step(
            &[section("errors", MAJOR)],
            &[],
            at(2 * MIN),
            &policy(),
            &[],
        )
        .pages;
    assert_eq!(p2[0].key, format!("{id}/L1/reopened/1"));
}

#[test]
fn a_book_rebuilt_from_its_incidents_decides_the_same() {
    let mut b = Book::default();
    step(&mut b, 0, MAJOR);
    step(&mut b, 10 * MIN, MAJOR);
    // Restart: rebuild from the persisted incidents (JSON round trip, as the store keeps them).
    let saved: Vec<String> = b
        .incidents()
        .map(|i| serde_json::to_string(i).expect("json"))
        .collect();
    let mut again = Book::new(
        saved
            .iter()
            .map(|s| serde_json::from_str::<Incident>(s).expect("json")),
    );
    assert_eq!(step(&mut again, 11 * MIN, MAJOR), [], "no L1 re-sent");
    assert_eq!(
        step(&mut again, 30 * MIN, MAJOR),
        [(L2, Escalated)],
        "L2 still at 30 min from the original open"
    );
}

#[test]
fn an_incident_flapping_for_days_keeps_a_bounded_timeline_and_its_opening() {
    let mut b = Book::default();
    step(&mut b, 0, MAJOR);
    // Clear and fire again every 10 minutes (within reopen_within) for three days.
    for n in 1..(3 * 24 * 6) {
        let severity = if n % 2 == 1 { None } else { MAJOR };
        step(&mut b, n * 10 * MIN, severity);
    }
    let inc = b.incidents().next().expect("incident");
    assert!(inc.reopened > 100, "it kept reopening: {}", inc.reopened);
    assert_eq!(inc.timeline.len(), crate::incident::model::MAX_TIMELINE);
    assert_eq!(inc.timeline[0].kind, "opened", "the opening is kept");
    let last = inc.timeline.last().expect("entry");
    assert!(
        last.at >= at(3 * 24 * 60 * MIN - 20 * MIN),
        "the newest are kept: {last:?}"
    );
}

/// A symptom of `errors` firing since `fired` (seconds after `at(0)`).
fn firing_since(fired: u64) -> crate::engine::Symptom {
    crate::engine::Symptom {
        rule: "errors.rate_high".into(),
        section: "errors".into(),
        labels: Default::default(),
        summary: "5xx above 5%".into(),
        severity: Severity::Major,
        state: crate::engine::SymptomState::Firing,
        observable: true,
        value: None,
        note: None,
        fired_at: Some(at(fired)),
    }
}

/// The store refused the steps of the first three minutes (the book did not move, as the pager
/// leaves it then): the step that is finally recorded opens the incident when its symptom fired,
/// with the ID, page key and L2 clock it would have had at once; a symptom's time never sets an
/// opening in the future.
#[test]
fn an_incident_opens_when_its_symptom_fired_even_if_recorded_later() {
    let on_time = {
        let mut b = Book::default();
        let out = b.step(
            &[section("errors", MAJOR)],
            &[firing_since(0)],
            at(0),
            &policy(),
            &[],
        );
        out.pages[0].key.clone()
    };
    let mut b = Book::default();
    let late = b.step(
        &[section("errors", MAJOR)],
        &[firing_since(0)],
        at(3 * MIN),
        &policy(),
        &[],
    );
    assert_eq!(late.pages.len(), 1, "the L1, now");
    assert_eq!(late.pages[0].key, on_time, "the same page key");
    let incident = b.get(&late.pages[0].incident).expect("opened");
    assert_eq!(incident.opened_at, at(0), "opened when the symptom fired");
    assert_eq!(
        step(&mut b, 30 * MIN - 1, MAJOR),
        [],
        "no L2 at 29:59 from the firing"
    );
    assert_eq!(
        step(&mut b, 30 * MIN, MAJOR),
        [(L2, Escalated)],
        "L2 at 30:00 from the firing"
    );

    let mut b = Book::default();
    let out = b.step(
        &[section("errors", MAJOR)],
        &[firing_since(10 * MIN)],
        at(0),
        &policy(),
        &[],
    );
    let incident = b.get(&out.pages[0].incident).expect("opened");
    assert_eq!(incident.opened_at, at(0), "never after the step");
}
