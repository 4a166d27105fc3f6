//! Step-by-step scripts over the embedded runbook: feed evidence, move `now`, assert after every step.

use std::time::Duration;

use super::*;
use crate::observe::{Failure, FailureKind, Key, Observation, ProbeReport};

const T0: i64 = 1_795_000_000_000;

fn at(secs: u64) -> Timestamp {
    Timestamp::from_unix_millis(T0) + Duration::from_secs(secs)
}

fn engine() -> Engine {
    Engine::new(Arc::new(Runbook::embedded()), Locale::En)
}

fn report(source: &str, secs: u64, obs: Vec<Observation>) -> ProbeReport {
    ProbeReport {
        source: source.into(),
        at: at(secs),
        took: Duration::ZERO,
        result: Ok(obs),
    }
}

fn down(source: &str, secs: u64) -> ProbeReport {
    ProbeReport {
        source: source.into(),
        at: at(secs),
        took: Duration::ZERO,
        result: Err(Failure::new(FailureKind::Connect, "connection refused")),
    }
}

fn p95(v: f64) -> Observation {
    Observation::number(
        Key::new("prometheus.p95_seconds").with("handler", "/api/chat"),
        v,
    )
}

fn state(e: &Evaluation, rule: &str) -> Option<SymptomState> {
    e.symptoms.iter().find(|s| s.rule == rule).map(|s| s.state)
}

fn section<'a>(e: &'a Evaluation, id: &str) -> &'a SectionState {
    e.sections
        .iter()
        .find(|s| s.section == id)
        .expect("section")
}

fn fired(e: &Evaluation, rule: &str) -> usize {
    e.events
        .iter()
        .filter(|ev| matches!(ev, Event::Fired { rule: r, .. } if r == rule))
        .count()
}

fn cleared(e: &Evaluation, rule: &str) -> usize {
    e.events
        .iter()
        .filter(|ev| matches!(ev, Event::Cleared { rule: r, .. } if r == rule))
        .count()
}

#[test]
fn p95_fires_after_for_and_clears_after_resolve_after() {
    let mut eng = engine();
    let mut ev = Evidence::new();
    ev.apply(report("prometheus", 0, vec![p95(4.0)]));
    let e = eng.evaluate(&ev, at(0));
    assert_eq!(state(&e, "latency.p95_high"), Some(SymptomState::Pending));
    assert!(!section(&e, "latency").active);

    let e = eng.evaluate(&ev, at(29));
    assert_eq!(
        state(&e, "latency.p95_high"),
        Some(SymptomState::Pending),
        "for is 30s"
    );
    let e = eng.evaluate(&ev, at(30));
    assert_eq!(state(&e, "latency.p95_high"), Some(SymptomState::Firing));
    assert_eq!(fired(&e, "latency.p95_high"), 1);
    assert!(section(&e, "latency").active);
    assert_eq!(section(&e, "latency").severity, Some(Severity::Major));

    ev.apply(report("prometheus", 40, vec![p95(1.0)]));
    let e = eng.evaluate(&ev, at(40));
    assert_eq!(
        state(&e, "latency.p95_high"),
        Some(SymptomState::Recovering)
    );
    let e = eng.evaluate(&ev, at(69));
    assert_eq!(
        state(&e, "latency.p95_high"),
        Some(SymptomState::Recovering),
        "resolve_after is 30s"
    );
    let e = eng.evaluate(&ev, at(70));
    assert_eq!(state(&e, "latency.p95_high"), None, "cleared");
    assert_eq!(cleared(&e, "latency.p95_high"), 1);
    assert!(!section(&e, "latency").active);
}

#[test]
fn a_p95_oscillating_around_3s_is_one_symptom_not_a_flapping_series() {
    let mut eng = engine();
    let mut ev = Evidence::new();
    let (mut fires, mut clears) = (0, 0);
    for i in 0..240u64 {
        let v = if i < 10 {
            4.0
        } else if i % 2 == 0 {
            3.2
        } else {
            2.7
        };
        ev.apply(report("prometheus", i * 15, vec![p95(v)]));
        let e = eng.evaluate(&ev, at(i * 15));
        fires += fired(&e, "latency.p95_high");
        clears += cleared(&e, "latency.p95_high");
        // A sustained breach (4 s for 2.5 min), then an hour of 3.2 / 2.7 around the 3 s threshold.
        if i * 15 >= 120 {
            assert!(
                section(&e, "latency").active,
                "one incident throughout, step {i}"
            );
        }
    }
    assert_eq!(
        (fires, clears),
        (1, 0),
        "one symptom, never cleared while oscillating above 2.5 s"
    );
}

#[test]
fn no_traffic_never_fires_or_clears() {
    let mut eng = engine();
    let mut ev = Evidence::new();
    ev.apply(report("prometheus", 0, vec![p95(f64::NAN)]));
    for s in [0, 60, 120, 600] {
        let e = eng.evaluate(&ev, at(s));
        assert_eq!(
            state(&e, "latency.p95_high"),
            Some(SymptomState::Inactive),
            "shown, not observable"
        );
        assert!(!section(&e, "latency").active);
    }
    // Firing, then the handler loses its traffic: it stays firing, it does not clear.
    ev.apply(report("prometheus", 600, vec![p95(5.0)]));
    eng.evaluate(&ev, at(600));
    let e = eng.evaluate(&ev, at(720));
    assert_eq!(state(&e, "latency.p95_high"), Some(SymptomState::Firing));
    ev.apply(report("prometheus", 730, vec![p95(f64::NAN)]));
    for s in [730, 1100, 3600] {
        let e = eng.evaluate(&ev, at(s));
        assert_eq!(
            state(&e, "latency.p95_high"),
            Some(SymptomState::Firing),
            "at {s}"
        );
        assert_eq!(cleared(&e, "latency.p95_high"), 0);
        assert!(
            !e.symptoms
                .iter()
                .find(|x| x.rule == "latency.p95_high")
                .expect("shown")
                .observable
        );
    }
}

#[test]
fn a_pending_rule_past_its_for_with_an_unknown_reading_sets_no_deadline_already_past() {
    let mut eng = engine();
    let mut ev = Evidence::new();
    ev.apply(report("prometheus", 0, vec![p95(4.0)]));
    eng.evaluate(&ev, at(0));
    assert_eq!(eng.next_deadline(), Some(at(30)), "its for, 30 s on");
    // Prometheus goes blind before the for is over: nothing moves, the deadline stays ahead.
    ev.apply(down("prometheus", 10));
    eng.evaluate(&ev, at(10));
    assert_eq!(eng.next_deadline(), Some(at(30)));
    // At the deadline the reading is still unknown: the rule stays pending, and waits for evidence.
    let e = eng.evaluate(&ev, at(30));
    assert_eq!(state(&e, "latency.p95_high"), Some(SymptomState::Pending));
    assert!(
        eng.next_deadline().is_none_or(|d| d > at(30)),
        "a deadline already evaluated would wake the watch loop at once, for ever: {:?}",
        eng.next_deadline()
    );
    // The reading comes back, still high: it fires on that evaluation.
    ev.apply(report("prometheus", 45, vec![p95(4.0)]));
    let e = eng.evaluate(&ev, at(45));
    assert_eq!(state(&e, "latency.p95_high"), Some(SymptomState::Firing));
}

#[test]
fn a_prometheus_outage_blinds_its_rules_and_raises_watchdog_blind_without_clearing() {
    let mut eng = engine();
    let mut ev = Evidence::new();
    ev.apply(report("prometheus", 0, vec![p95(4.0)]));
    eng.evaluate(&ev, at(0));
    let e = eng.evaluate(&ev, at(120));
    assert_eq!(state(&e, "latency.p95_high"), Some(SymptomState::Firing));

    for s in (135..=600).step_by(15) {
        ev.apply(down("prometheus", s));
        let e = eng.evaluate(&ev, at(s));
        assert_eq!(
            cleared(&e, "latency.p95_high"),
            0,
            "no false recovery while blind (t={s})"
        );
        let sym = e
            .symptoms
            .iter()
            .find(|x| x.rule == "latency.p95_high")
            .expect("held");
        assert_eq!(sym.state, SymptomState::Firing);
        assert!(!sym.observable);
        let blind = state(&e, "watchdog.prometheus_blind");
        if s < 135 + 120 {
            assert_eq!(blind, Some(SymptomState::Pending), "t={s}");
        } else {
            assert_eq!(blind, Some(SymptomState::Firing), "t={s}");
            let d = &section(&e, "watchdog").diagnosis;
            assert_eq!(d.top().map(|c| c.id.as_str()), Some("watchdog.blind"));
        }
    }
    // Prometheus back, p95 fine: now the latency symptom may recover, and blind clears.
    ev.apply(report("prometheus", 615, vec![p95(1.0)]));
    let e = eng.evaluate(&ev, at(615));
    assert_eq!(
        state(&e, "latency.p95_high"),
        Some(SymptomState::Recovering)
    );
    assert_eq!(
        state(&e, "watchdog.prometheus_blind"),
        Some(SymptomState::Recovering)
    );
}

#[test]
fn openai_degraded_and_redis_healthy_ranks_openai_slow_first_and_rules_out_redis() {
    let mut eng = engine();
    let mut ev = Evidence::new();
    ev.apply(report(
        "prometheus",
        0,
        vec![
            p95(4.5),
            Observation::number(Key::new("prometheus.request_rate_ratio"), 1.1),
        ],
    ));
    ev.apply(report(
        "status.openai",
        0,
        vec![Observation::text(
            Key::new("status.indicator").with("page", "openai"),
            "minor",
        )],
    ));
    ev.apply(report(
        "redis",
        0,
        vec![
            Observation::number(Key::new("redis.memory_ratio"), 0.3),
            Observation::number(Key::new("redis.ping_seconds"), 0.001),
            Observation::number(Key::new("redis.evicted_keys_per_minute"), 0.0),
            Observation::number(Key::new("redis.rejected_connections_per_minute"), 0.0),
        ],
    ));
    let e = eng.evaluate(&ev, at(0));
    let d = &section(&e, "latency").diagnosis;
    let top = d.top().expect("a likely cause");
    assert_eq!(top.id, "latency.openai_slow");
    assert!(
        top.vendor
            .as_deref()
            .is_some_and(|v| v.contains("help.openai.com")),
        "{:?}",
        top.vendor
    );
    let line = &top.evidence[0];
    assert_eq!((line.truth, line.observed.as_str()), ("holds", "minor"));
    let status = |id: &str| d.causes.iter().find(|c| c.id == id).expect("cause").status;
    assert_eq!(status("latency.redis_saturated"), CauseStatus::RuledOut);
    assert_eq!(status("latency.traffic_surge"), CauseStatus::RuledOut);
    assert_eq!(
        status("latency.db_slow"),
        CauseStatus::Unknown,
        "Supabase not observed"
    );
}

#[test]
fn bad_deploy_fills_the_rollback_with_the_images() {
    let mut eng = engine();
    let mut ev = Evidence::new();
    let c = |name| Key::new(name).with("role", "backend");
    ev.apply(report(
        "docker",
        0,
        vec![
            Observation::boolean(c("docker.recent_deploy"), true),
            Observation::text(c("docker.image"), "harven/backend:1.4.0"),
            Observation::text(c("docker.previous_image"), "harven/backend:1.3.2"),
            Observation::number(
                Key::new("docker.log_lines_per_minute")
                    .with("role", "backend")
                    .with("pattern", "error"),
                12.0,
            ),
        ],
    ));
    let e = eng.evaluate(&ev, at(0));
    let top = section(&e, "errors")
        .diagnosis
        .top()
        .cloned()
        .expect("likely");
    assert_eq!(top.id, "errors.bad_deploy");
    assert!(
        top.commands
            .iter()
            .any(|c| c.contains("harven/backend:1.4.0") && c.contains("harven/backend:1.3.2")),
        "{:?}",
        top.commands
    );
}

#[test]
fn supporting_evidence_alone_makes_nothing_likely_and_against_rules_out() {
    let mut eng = engine();
    let mut ev = Evidence::new();
    let c = |name| Key::new(name).with("role", "backend");
    // A healthy stack: the secret is set and Supabase Auth answers, no JWT errors in the logs.
    ev.apply(report(
        "docker",
        0,
        vec![
            Observation::boolean(c("docker.env_present").with("var", "JWT_SECRET"), true),
            Observation::number(c("docker.log_lines_per_minute").with("pattern", "jwt"), 0.0),
        ],
    ));
    ev.apply(report(
        "supabase",
        0,
        vec![Observation::boolean(Key::new("supabase.auth_ok"), true)],
    ));
    let e = eng.evaluate(&ev, at(0));
    let auth = &section(&e, "auth").diagnosis;
    let expiry = auth
        .causes
        .iter()
        .find(|x| x.id == "auth.token_expiry")
        .expect("cause");
    assert_eq!(
        expiry.status,
        CauseStatus::RuledOut,
        "supporting lines hold, but no evidence does"
    );
    assert!(expiry.score > 0.0);

    // JWT errors with the secret set: now expired tokens are likely, with the supporting weight.
    ev.apply(report(
        "docker",
        15,
        vec![
            Observation::boolean(c("docker.env_present").with("var", "JWT_SECRET"), true),
            Observation::number(c("docker.log_lines_per_minute").with("pattern", "jwt"), 7.0),
        ],
    ));
    let e = eng.evaluate(&ev, at(15));
    let auth = &section(&e, "auth").diagnosis;
    assert_eq!(auth.top().map(|x| x.id.as_str()), Some("auth.token_expiry"));

    // An `against` line rules a cause out whatever holds: a runbook whose traffic surge is ruled out
    // while the backend's target is down (its rate cannot be trusted then).
    let text = crate::runbook::DEFAULT_RUNBOOK.replacen(
        r#"{ obs = "prometheus.request_rate_ratio", op = ">", value = 3.0, weight = 3 },"#,
        r#"{ obs = "prometheus.request_rate_ratio", op = ">", value = 3.0, weight = 3 },
  { obs = "prometheus.backend_up", op = "==", value = false, role = "against" },"#,
        1,
    );
    let rb = Arc::new(Runbook::parse(&text, "test").expect("valid"));
    let mut eng = Engine::new(rb, Locale::En);
    let mut ev = Evidence::new();
    let up = |b| {
        Observation::boolean(
            Key::new("prometheus.backend_up").with("instance", "backend:8000"),
            b,
        )
    };
    let ratio = Observation::number(Key::new("prometheus.request_rate_ratio"), 6.0);
    ev.apply(report("prometheus", 0, vec![ratio.clone(), up(true)]));
    let surge = |e: &Evaluation| {
        section(e, "latency")
            .diagnosis
            .causes
            .iter()
            .find(|c| c.id == "latency.traffic_surge")
            .expect("cause")
            .status
    };
    assert_eq!(surge(&eng.evaluate(&ev, at(0))), CauseStatus::Likely);
    ev.apply(report("prometheus", 15, vec![ratio, up(false)]));
    assert_eq!(surge(&eng.evaluate(&ev, at(15))), CauseStatus::RuledOut);
}

#[test]
fn an_optional_source_that_is_off_is_left_out_and_once_configured_it_counts() {
    let mut eng = engine();
    let mut ev = Evidence::new();
    for source in [
        "prometheus",
        "redis",
        "docker",
        "supabase",
        "status.openai",
        "status.supabase",
    ] {
        ev.apply(report(source, 0, Vec::new()));
    }
    let cause = |e: &Evaluation, section_id: &str, id: &str| {
        section(e, section_id)
            .diagnosis
            .causes
            .iter()
            .find(|c| c.id == id)
            .expect("cause")
            .clone()
    };
    // `[openai]` off: its lines are neither weighed, nor unknown, nor shown; the core sources all
    // answer, so the watchdog is not blind, as before the OpenAI probes existed.
    let e = eng.evaluate(&ev, at(0));
    let blind = cause(&e, "watchdog", "watchdog.blind");
    assert_eq!(blind.status, CauseStatus::RuledOut);
    assert!(
        !blind
            .evidence
            .iter()
            .any(|l| l.condition.contains("openai.")),
        "{:?}",
        blind.evidence
    );
    let quota = cause(&e, "openai_quota", "openai_quota.quota_exceeded");
    assert!(
        quota
            .evidence
            .iter()
            .all(|l| !l.condition.starts_with("openai.")),
        "{:?}",
        quota.evidence
    );

    // The usage probe configured and failing: its lines count, the watchdog is blind on it, and
    // the lines over the API probe (still off) stay out.
    ev.apply(down("openai.usage", 15));
    let e = eng.evaluate(&ev, at(15));
    let blind = cause(&e, "watchdog", "watchdog.blind");
    assert_eq!(blind.status, CauseStatus::Likely);
    assert!(
        blind
            .evidence
            .iter()
            .any(|l| l.condition == "source_failing = \"openai.usage\"" && l.truth == "holds")
    );
    assert!(
        !blind
            .evidence
            .iter()
            .any(|l| l.condition == "source_failing = \"openai.api\"")
    );
    let quota = cause(&e, "openai_quota", "openai_quota.quota_exceeded");
    assert!(
        quota
            .evidence
            .iter()
            .any(|l| l.condition.starts_with("openai.usage.budget_share") && l.truth == "unknown")
    );
    assert!(
        !quota
            .evidence
            .iter()
            .any(|l| l.condition.starts_with("openai.api."))
    );

    // The API probe says 429 `rate_limit_exceeded`: the quota is ruled out, whatever else holds.
    ev.apply(report(
        "openai.api",
        30,
        vec![Observation::text(
            Key::new("openai.api.error"),
            "rate_limit",
        )],
    ));
    let e = eng.evaluate(&ev, at(30));
    let quota = cause(&e, "openai_quota", "openai_quota.quota_exceeded");
    assert_eq!(quota.status, CauseStatus::RuledOut);
}

/// A `source_failing` line with a `reason` (issue 16's OpenAI hang): it holds while the source
/// fails for that reason, is unknown while it fails for another (a refused connection says nothing
/// about a hang) and fails while the source answers. The plain line over the same source holds
/// for both failures: the hang is a failing source *and* evidence.
#[test]
fn a_source_failing_line_with_a_reason_holds_only_for_that_reason() {
    let mut eng = engine();
    let mut ev = Evidence::new();
    // The truth of the line `cond` of cause `id` (in `section_id`).
    let truth = |e: &Evaluation, section_id: &str, id: &str, cond: &str| {
        section(e, section_id)
            .diagnosis
            .causes
            .iter()
            .find(|c| c.id == id)
            .expect("cause")
            .evidence
            .iter()
            .find(|l| l.condition == cond)
            .map(|l| l.truth)
    };
    let lines = |e: &Evaluation| {
        (
            truth(
                e,
                "latency",
                "latency.openai_slow",
                "source_failing = \"openai.api\", reason = \"timeout\"",
            ),
            truth(
                e,
                "watchdog",
                "watchdog.blind",
                "source_failing = \"openai.api\"",
            ),
        )
    };
    let failing = |kind: FailureKind, secs| ProbeReport {
        source: "openai.api".into(),
        at: at(secs),
        took: Duration::ZERO,
        result: Err(Failure::new(kind, "…")),
    };
    ev.apply(failing(FailureKind::Timeout, 0));
    let (hang, blind) = lines(&eng.evaluate(&ev, at(0)));
    assert_eq!(hang, Some("holds"));
    assert_eq!(blind, Some("holds"));
    ev.apply(failing(FailureKind::Connect, 15));
    let (hang, blind) = lines(&eng.evaluate(&ev, at(15)));
    assert_eq!(hang, Some("unknown"));
    assert_eq!(blind, Some("holds"));
    ev.apply(report(
        "openai.api",
        30,
        vec![Observation::text(Key::new("openai.api.error"), "none")],
    ));
    let (hang, blind) = lines(&eng.evaluate(&ev, at(30)));
    assert_eq!(hang, Some("fails"));
    assert_eq!(blind, Some("fails"));
}

/// `[coolify]` (issue 16): while it is off, §6's Coolify rollback commands of `errors.bad_deploy`
/// are left out with the context lines they name (never shown with a raw `{{ }}`), and the Docker and
/// git steps stay; once Coolify reports, they name the previous deployment and its commit, and an
/// action line (in the reader's language) names the exact deployment to go back to.
#[test]
fn coolify_rollback_commands_are_left_out_while_off_and_filled_once_it_reports() {
    let mut eng = engine();
    let mut ev = Evidence::new();
    let bad_deploy = |e: &Evaluation| {
        section(e, "errors")
            .diagnosis
            .causes
            .iter()
            .find(|c| c.id == "errors.bad_deploy")
            .expect("cause")
            .clone()
    };
    ev.apply(report("docker", 0, Vec::new()));
    let off = bad_deploy(&eng.evaluate(&ev, at(0)));
    assert!(
        off.commands
            .iter()
            .all(|c| !c.contains("{{") && !c.contains("oolify")),
        "{:?}",
        off.commands
    );
    assert!(off.commands.iter().any(|c| c == "git checkout HEAD~1"));
    assert!(
        !off.evidence
            .iter()
            .any(|l| l.condition.starts_with("coolify."))
    );

    let word = |name: &'static str, v: &str| Observation::text(Key::new(name), v);
    ev.apply(report(
        "coolify",
        15,
        vec![
            Observation::number(Key::new("coolify.deploy_age_seconds"), 300.0),
            Observation::boolean(Key::new("coolify.deploying"), false),
            word("coolify.current_deployment", "m2kq9x"),
            word("coolify.current_commit", "9f8e7d6c"),
            word("coolify.previous_deployment", "h7pz3a"),
            word("coolify.previous_commit", "1234abcd"),
            word("coolify.application", "k8cw4s0k"),
        ],
    ));
    let on = bad_deploy(&eng.evaluate(&ev, at(15)));
    assert_eq!(on.status, CauseStatus::Likely);
    // The exact deployment is a localized action line, not a `# …` command comment.
    assert!(
        on.actions.iter().any(|a| a
            == "In Coolify, the previous deployment is h7pz3a (commit 1234abcd); the current one is m2kq9x (commit 9f8e7d6c)"),
        "{:?}",
        on.actions
    );
    assert!(
        on.commands
            .iter()
            .all(|c| !c.starts_with('#') || !c.contains("oolify"))
    );
    assert!(
        off.actions.iter().all(|a| !a.contains("{{")) && on.actions.len() == off.actions.len() + 1,
        "{:?} / {:?}",
        off.actions,
        on.actions
    );
    assert!(
        on.commands
            .iter()
            .any(|c| c == "coolify app rollback run k8cw4s0k --commit 1234abcd"),
        "{:?}",
        on.commands
    );
    assert!(on.commands.len() > off.commands.len());
}
