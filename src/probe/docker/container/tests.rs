use std::collections::HashMap;

use super::*;
use crate::observe::Value;
use crate::probe::docker::fixtures::{
    S, boolean, config, default_config, found, number, poll, snap, starts, t, value, watched,
};

#[test]
fn restarts_are_counted_once_whether_the_count_or_the_event_comes_first() {
    // `docker.restarts` counts within the evidence window (10 min): every poll here is in it,
    // so each value is the running total since the first sight.
    let mut probe = DockerProbe::new(config(&[]));
    // First sight: 0, even with a count and a late event of the run it sees.
    let out = poll(&mut probe, 2_000, found(snap("c1", 4, 1_990)), vec![]);
    assert_eq!(number(&out, "docker.restarts"), 0.0);
    assert_eq!(number(&out, "docker.restart_count"), 4.0);
    let late = starts(&[1_990 * S + 4_000_000]);
    let out = poll(
        &mut probe,
        2_015,
        found(snap("c1", 4, 1_990)),
        vec![("c1", late)],
    );
    assert_eq!(
        number(&out, "docker.restarts"),
        0.0,
        "the seen run's own start"
    );

    // The policy counts the restart at `die`; the start (and its event) come after the backoff.
    let out = poll(&mut probe, 2_030, found(snap("c1", 5, 1_990)), vec![]);
    assert_eq!(number(&out, "docker.restarts"), 1.0);
    let out = poll(
        &mut probe,
        2_045,
        found(snap("c1", 5, 2_031)),
        vec![("c1", starts(&[2_031 * S]))],
    );
    assert_eq!(number(&out, "docker.restarts"), 1.0, "not counted twice");

    // A manual restart resets Docker's count to 0: the event counts it, and so does the reset.
    let out = poll(
        &mut probe,
        2_060,
        found(snap("c1", 0, 2_050)),
        vec![("c1", starts(&[2_050 * S]))],
    );
    assert_eq!(number(&out, "docker.restarts"), 2.0);

    // Events lost (stream down): the count alone still shows policy restarts.
    let out = poll(&mut probe, 2_075, found(snap("c1", 2, 2_070)), vec![]);
    assert_eq!(number(&out, "docker.restarts"), 4.0);
    // ... and their events arriving later are not counted again.
    let out = poll(
        &mut probe,
        2_090,
        found(snap("c1", 2, 2_070)),
        vec![("c1", starts(&[2_065 * S, 2_070 * S]))],
    );
    assert_eq!(number(&out, "docker.restarts"), 4.0);
    // Two manual restarts seen only as events.
    let out = poll(
        &mut probe,
        2_105,
        found(snap("c1", 0, 2_100)),
        vec![("c1", starts(&[2_095 * S, 2_100 * S]))],
    );
    assert_eq!(number(&out, "docker.restarts"), 6.0);
}

#[test]
fn first_seen_mid_restart_the_pending_start_is_not_counted_twice() {
    let mut probe = DockerProbe::new(config(&[]));
    let mut backoff = snap("c1", 1, 100);
    backoff.running = false;
    backoff.restarting = true;
    let out = poll(&mut probe, 102, found(backoff), vec![]);
    assert_eq!(number(&out, "docker.restarts"), 0.0);
    assert!(!boolean(&out, "docker.running"));
    let out = poll(
        &mut probe,
        104,
        found(snap("c1", 1, 103)),
        vec![("c1", starts(&[103 * S]))],
    );
    assert_eq!(
        number(&out, "docker.restarts"),
        0.0,
        "its start was in the count"
    );
    let out = poll(
        &mut probe,
        110,
        found(snap("c1", 2, 108)),
        vec![("c1", starts(&[108 * S]))],
    );
    assert_eq!(number(&out, "docker.restarts"), 1.0);
}

#[test]
fn a_recreated_container_with_another_image_is_a_deploy_with_a_previous_image() {
    let mut probe = DockerProbe::new(config(&[("HARVEN_WATCHDOG__DOCKER__DEPLOY_WINDOW", "10m")]));
    let mut old = snap("c1", 0, 1_000);
    old.created_at = Some(1_000 * S);
    let out = poll(&mut probe, 5_000, found(old), vec![]);
    assert!(!boolean(&out, "docker.recent_deploy"), "started long ago");
    assert!(matches!(
        value(&out, "docker.previous_image"),
        Outcome::NoData(_)
    ));

    let mut new = snap("c2", 1, 5_010);
    new.image_id = "sha256:bbbb".into();
    new.image_label = "app:2 (sha256:bbbb)".into();
    new.created_at = Some(5_005 * S);
    let out = poll(&mut probe, 5_015, found(new), vec![]);
    assert_eq!(
        value(&out, "docker.previous_image"),
        Outcome::Value(Value::Text("app:1 (sha256:aaaa)".into()))
    );
    assert_eq!(
        value(&out, "docker.image"),
        Outcome::Value(Value::Text("app:2 (sha256:bbbb)".into()))
    );
    assert!(boolean(&out, "docker.recent_deploy"));
    assert_eq!(
        number(&out, "docker.restarts"),
        1.0,
        "the new container's restarts all happened since the last poll"
    );

    // Ten minutes later neither the creation nor the image change is recent.
    let mut same = snap("c2", 1, 5_010);
    same.image_id = "sha256:bbbb".into();
    same.created_at = Some(5_005 * S);
    let out = poll(&mut probe, 5_700, found(same), vec![]);
    assert!(!boolean(&out, "docker.recent_deploy"));
    assert!(matches!(
        value(&out, "docker.previous_image"),
        Outcome::Value(_)
    ));
}

#[test]
fn a_restart_of_the_same_container_and_image_is_never_a_deploy_but_a_new_container_is() {
    let mut probe = DockerProbe::new(config(&[("HARVEN_WATCHDOG__DOCKER__DEPLOY_WINDOW", "15m")]));
    let mut run = |id: &str, count: i64, started: i64, now: i64| {
        let mut s = snap(id, count, started);
        s.created_at = Some(1_000 * S);
        poll(&mut probe, now, found(s), vec![])
    };
    let out = run("c1", 0, 1_000, 10_000);
    assert!(!boolean(&out, "docker.recent_deploy"), "created long ago");
    // The restart policy restarts it (an OOM-kill or crash loop), then someone runs
    // `docker restart` (Docker's count back to 0): restarts, not deploys.
    let out = run("c1", 3, 10_010, 10_015);
    assert!(!boolean(&out, "docker.recent_deploy"), "restart policy");
    assert_eq!(number(&out, "docker.restarts"), 3.0);
    let out = run("c1", 0, 10_020, 10_030);
    assert!(!boolean(&out, "docker.recent_deploy"), "a manual restart");
    let note = out
        .iter()
        .find(|o| o.key.name == "docker.recent_deploy")
        .and_then(|o| o.note.as_ref().map(ToString::to_string));
    assert_eq!(
        note.as_deref(),
        Some("same container and image for the last 15 min (restarts are not deploys)")
    );
    // `docker-compose up -d` recreates it on the same image: another ID is a deploy.
    let out = run("c2", 0, 10_040, 10_045);
    assert!(boolean(&out, "docker.recent_deploy"), "recreated");
    assert_eq!(
        number(&out, "docker.restarts"),
        4.0,
        "the name's restarts are still within the window"
    );
    let out = run("c2", 0, 10_040, 10_045 + 15 * 60 + 1);
    assert!(!boolean(&out, "docker.recent_deploy"), "the window is over");
    assert_eq!(
        number(&out, "docker.restarts"),
        0.0,
        "and so is the restarts'"
    );
}

#[test]
fn oom_events_count_after_first_sight_even_when_inspect_says_no() {
    let mut probe = DockerProbe::new(config(&[]));
    let oom = || Pending {
        ooms: 3,
        ..Pending::default()
    };
    let out = poll(
        &mut probe,
        100,
        found(snap("c1", 0, 90)),
        vec![("c1", oom())],
    );
    assert!(
        !boolean(&out, "docker.oom_killed"),
        "first sight: state only"
    );
    let out = poll(
        &mut probe,
        115,
        found(snap("c1", 0, 90)),
        vec![("c1", oom())],
    );
    assert!(boolean(&out, "docker.oom_killed"));
    // Held for the evidence window (10 min), not for the one poll that saw it.
    let out = poll(&mut probe, 130, found(snap("c1", 0, 90)), vec![]);
    assert!(boolean(&out, "docker.oom_killed"), "held");
    let note = out
        .iter()
        .find(|o| o.key.name == "docker.oom_killed")
        .and_then(|o| o.note.as_ref().map(ToString::to_string));
    assert_eq!(
        note.as_deref(),
        Some("OOM-killed 15 s ago (held for 10 min)")
    );
    let out = poll(&mut probe, 714, found(snap("c1", 0, 90)), vec![]);
    assert!(boolean(&out, "docker.oom_killed"), "still within 10 min");
    let out = poll(&mut probe, 715, found(snap("c1", 0, 90)), vec![]);
    assert!(!boolean(&out, "docker.oom_killed"), "10 min after the kill");
}

#[test]
fn an_exited_run_with_an_oom_event_stays_oom_killed_until_the_next_run() {
    let mut probe = DockerProbe::new(config(&[]));
    let out = poll(&mut probe, 100, found(snap("c1", 0, 90)), vec![]);
    assert!(!boolean(&out, "docker.oom_killed"));
    // Killed for memory, but the Engine's flag lost its race: exit 137, OOMKilled=false.
    let mut dead = snap("c1", 0, 90);
    dead.running = false;
    dead.exit_code = Some(137);
    let oom = Pending {
        ooms: 1,
        last_oom: Some(101 * S),
        ..Pending::default()
    };
    let out = poll(&mut probe, 115, found(dead), vec![("c1", oom)]);
    assert!(boolean(&out, "docker.oom_killed"));
    let mut dead = snap("c1", 0, 90);
    dead.running = false;
    let out = poll(&mut probe, 130, found(dead), vec![]);
    assert!(boolean(&out, "docker.oom_killed"), "still the last run");
    // Started again (by hand): the new run was not killed, but the kill stays evidence for the
    // window after the last poll that saw the killed run.
    let mut again = snap("c1", 0, 140);
    again.running = false;
    let out = poll(&mut probe, 145, found(again.clone()), vec![]);
    assert!(boolean(&out, "docker.oom_killed"), "held");
    let out = poll(&mut probe, 730, found(again), vec![]);
    assert!(!boolean(&out, "docker.oom_killed"), "10 min after");
}

#[test]
fn a_container_first_seen_exited_counts_the_oom_events_of_its_last_run() {
    let mut probe = DockerProbe::new(config(&[]));
    let mut dead = snap("c1", 0, 90);
    dead.running = false;
    let seen = Seen::Found(Box::new(Found {
        snap: dead,
        memory: None,
        logs: None,
        run_oom: Some(91 * S),
    }));
    let out = poll(&mut probe, 100, seen, vec![]);
    assert!(boolean(&out, "docker.oom_killed"));
}

#[test]
fn a_missing_configured_container_is_only_not_present() {
    let mut probe = DockerProbe::new(config(&[]));
    let out = poll(&mut probe, 100, Seen::Missing, vec![]);
    assert_eq!(out.len(), 1);
    assert!(!boolean(&out, "docker.present"));
    let mut out = Vec::new();
    let gone = Watched {
        configured: false,
        ..watched("gone", &[])
    };
    probe.apply(t(100), &gone, Seen::Missing, &mut HashMap::new(), &mut out);
    assert!(
        out.is_empty(),
        "a compose container removed meanwhile is just gone"
    );
}

#[test]
fn a_corrupt_restart_count_does_not_overflow() {
    let mut probe = DockerProbe::new(default_config());
    poll(
        &mut probe,
        2_000,
        found(snap("c1", -587_284_364_793_339_017, 1_990)),
        vec![],
    );
    let out = poll(
        &mut probe,
        2_015,
        found(snap("c1", i64::MAX, 1_990)),
        vec![],
    );
    assert_eq!(number(&out, "docker.restarts"), i64::MAX as f64);
}
