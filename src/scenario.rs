//! Offline runbook tests (`harven-watchdog test FILE...`), like `promtool test rules`: a scenario file
//! gives a timeline of observations and source outages, and expectations about symptoms, incidents
//! and causes at given times. It runs on simulated time, through the same [`Engine`] as the daemon.
//!
//! ```toml
//! description = "p95 above 3 s while OpenAI is degraded"
//! tick = "15s"                  # evaluation interval (default 15s)
//!
//! [[step]]
//! at = "0s"
//! source = "prometheus"
//! observe = [{ obs = "prometheus.p95_seconds", labels = { handler = "/api/chat" }, value = 4.2 }]
//!
//! [[step]]
//! at = "5m"
//! source = "redis"
//! down = "connection refused"   # the source fails from here on (until a later step observes it)
//! reason = "connect"            # the failure's kind, as `source_failing … reason` reads it (default)
//!
//! [[expect]]
//! at = "2m"
//! firing = ["latency.p95_high"]
//! active = ["latency"]
//! top = { latency = "latency.openai_slow" }          # "none": no likely cause
//! causes = { "latency.redis_saturated" = "ruled_out" }  # likely | ruled_out | unknown
//! fired = { "latency.p95_high" = 1 }                 # Fired events since the start
//! pages = { latency = ["L1:opened"] }                 # every page so far, under the configured policy
//! ```
//!
//! A step merges its observations into what the source reported before (`clear = true` forgets that
//! first; a source coming back after `down` starts from nothing, as a real probe's first answer does);
//! every source is reported again at every tick, as a real probe would. `value = nan` is *no data*, for
//! any kind of observation. `fired` and `cleared` count per rule instance (one per label set).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::clock::Timestamp;
use crate::engine::{CauseStatus, Engine, Evaluation, Event, SymptomState};
use crate::incident::{Book, Policy};
use crate::observe::{
    self, Evidence, Failure, FailureKind, Key, Labels, Observation, Outcome, ProbeReport, Value,
};
use crate::runbook::{Locale, Runbook, Severity};

/// Where simulated time starts (a fixed instant, so reports are reproducible).
pub const START: Timestamp = Timestamp::from_unix_millis(1_795_000_000_000);

/// Most evaluations one scenario may ask for: a timeline of hours at a tick of seconds is a few
/// thousand; a mistyped `at` (`3000h` for `30m`) is refused instead of running for minutes.
pub const MAX_TICKS: u128 = 100_000;

/// A scenario file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// What it shows, printed with its outcome.
    #[serde(default)]
    pub description: String,
    /// Time between two evaluations, like the daemon's polls (default 15 s). Evaluations also
    /// happen at every step's and expectation's `at`, so an expectation never reads a stale one.
    #[serde(default = "default_tick", with = "humantime_serde")]
    pub tick: Duration,
    /// What the sources report, and when; in any order (applied by time).
    #[serde(default)]
    pub step: Vec<Step>,
    /// What must hold, and when.
    #[serde(default)]
    pub expect: Vec<Expect>,
}

/// The default `tick`: 15 s.
fn default_tick() -> Duration {
    Duration::from_secs(15)
}

/// A change in what one source reports.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Time since the start of the scenario.
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    /// The source's name (`prometheus`, `status.openai`), as a `source_failing` condition names it.
    pub source: String,
    /// Values it reports from this step on, merged into what it reported before.
    #[serde(default)]
    pub observe: Vec<Obs>,
    /// Forget what the source reported before this step.
    #[serde(default)]
    pub clear: bool,
    /// The source fails from this step on, with this reason.
    #[serde(default)]
    pub down: Option<String>,
    /// The kind of that failure (a `FailureKind` label: `timeout`, `connect`, …; default
    /// `connect`), which a `source_failing` condition with a `reason` tells apart.
    #[serde(default)]
    pub reason: Option<String>,
}

/// One observed value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Obs {
    /// A catalogue name (checked before the run).
    pub obs: String,
    /// The instance, with labels the observation carries (checked).
    #[serde(default)]
    pub labels: Labels,
    /// Its value; it must fit the observation's kind, or be `nan` for no data.
    pub value: ObsValue,
}

/// A value as TOML writes it; untagged, so TOML's own type decides.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ObsValue {
    /// `true` or `false`.
    Bool(bool),
    /// A number; `nan` is no data (an `Outcome::number` of NaN, as from a probe).
    Number(f64),
    /// A word.
    Text(String),
}

/// What must hold at one time.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Time since the start; checked after that time's steps and evaluation.
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    /// Rules with an instance firing (or recovering: still firing until it clears).
    #[serde(default)]
    pub firing: Vec<String>,
    /// Rules with no instance firing or recovering.
    #[serde(default)]
    pub not_firing: Vec<String>,
    /// Rules with an instance pending (holding, for less than `for`).
    #[serde(default)]
    pub pending: Vec<String>,
    /// Rules with an instance that cannot be evaluated now (blind source or no data).
    #[serde(default)]
    pub unknown: Vec<String>,
    /// Sections with an incident.
    #[serde(default)]
    pub active: Vec<String>,
    /// Sections without one.
    #[serde(default)]
    pub inactive: Vec<String>,
    /// Section → its severity (`major` or `critical`).
    #[serde(default)]
    pub severity: BTreeMap<String, Severity>,
    /// Cause ID → `likely`, `ruled_out` or `unknown`.
    #[serde(default)]
    pub causes: BTreeMap<String, String>,
    /// Section → the top likely cause, or `none`.
    #[serde(default)]
    pub top: BTreeMap<String, String>,
    /// Rule → Fired events since the start.
    #[serde(default)]
    pub fired: BTreeMap<String, usize>,
    /// Rule → Cleared events since the start.
    #[serde(default)]
    pub cleared: BTreeMap<String, usize>,
    /// Section → every page of its incidents since the start, in order, as `level:event`
    /// (`["L1:opened", "L2:escalated"]`), under the configured escalation policy.
    #[serde(default)]
    pub pages: BTreeMap<String, Vec<String>>,
}

/// The outcome of one scenario.
#[derive(Debug)]
pub struct ScenarioOutcome {
    /// The scenario's description.
    pub description: String,
    /// Every expectation that did not hold, with its time; empty when the scenario passes.
    pub failures: Vec<String>,
}

/// Why a scenario could not run.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ScenarioError {
    /// The file, as given.
    pub file: String,
    /// The first problem found: unreadable, not TOML, or a name the runbook or catalogue lacks.
    pub message: String,
}

/// Reads, checks and runs one scenario file; pages follow `policy` (the configured escalation).
pub fn run_file(
    path: &Path,
    runbook: &Arc<Runbook>,
    policy: &Policy,
) -> Result<ScenarioOutcome, ScenarioError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        file: file.clone(),
        message: e.to_string(),
    })?;
    run_text(&text, &file, runbook, policy)
}

/// Checks and runs scenario text; `file` names it in errors.
pub fn run_text(
    text: &str,
    file: &str,
    runbook: &Arc<Runbook>,
    policy: &Policy,
) -> Result<ScenarioOutcome, ScenarioError> {
    let err = |message: String| ScenarioError {
        file: file.to_owned(),
        message,
    };
    let scenario: Scenario =
        toml::from_str(text).map_err(|e| err(e.to_string().trim_end().to_owned()))?;
    check(&scenario, runbook).map_err(err)?;
    Ok(run(&scenario, runbook, policy))
}

/// Every name in the scenario must exist: observations in the catalogue, rules, sections and causes in
/// the runbook.
/// Checked before the run, so a misspelt rule fails the file instead of an expectation that can
/// never hold passing or failing for the wrong reason.
fn check(s: &Scenario, rb: &Runbook) -> Result<(), String> {
    if s.tick.is_zero() {
        return Err("tick: must be longer than zero".into());
    }
    let ticks = end_of(s).as_nanos() / s.tick.as_nanos();
    if ticks > MAX_TICKS {
        return Err(format!(
            "the timeline runs {ticks} ticks of {}; at most {MAX_TICKS} (a longer tick or a shorter timeline)",
            humantime::format_duration(s.tick)
        ));
    }
    let rules: BTreeSet<&str> = rb
        .sections
        .iter()
        .flat_map(|x| x.rules.iter().map(|r| r.id.as_str()))
        .collect();
    let causes: BTreeSet<&str> = rb
        .sections
        .iter()
        .flat_map(|x| x.causes.iter().map(|c| c.id.as_str()))
        .collect();
    let sections: BTreeSet<&str> = rb.sections.iter().map(|x| x.id.as_str()).collect();
    for (i, step) in s.step.iter().enumerate() {
        for (j, o) in step.observe.iter().enumerate() {
            let key = format!("step[{i}].observe[{j}]");
            let Some(spec) = observe::spec_of(&o.obs) else {
                return Err(format!("{key}.obs: unknown observation {:?}", o.obs));
            };
            if let Some(label) = o.labels.keys().find(|l| !spec.labels.contains(&l.as_str())) {
                return Err(format!(
                    "{key}.labels.{label}: {} has no label {label:?} (it has: {})",
                    spec.name,
                    spec.labels.join(", ")
                ));
            }
            let fits = match (&o.value, spec.kind) {
                (ObsValue::Number(n), _) if n.is_nan() => true, // nan: no data, for any kind
                (ObsValue::Number(_), observe::Kind::Number)
                | (ObsValue::Bool(_), observe::Kind::Bool)
                | (ObsValue::Text(_), observe::Kind::Text) => true,
                _ => false,
            };
            if !fits {
                return Err(format!(
                    "{key}.value: {} takes a {:?} value (or nan for no data)",
                    spec.name, spec.kind
                ));
            }
        }
        if step.down.is_some() && !step.observe.is_empty() {
            return Err(format!(
                "step[{i}]: a step either observes or takes the source down, not both"
            ));
        }
        if let Some(reason) = &step.reason {
            if step.down.is_none() {
                return Err(format!("step[{i}].reason: only a step with `down` has one"));
            }
            if failure_kind(reason).is_none() {
                return Err(format!("step[{i}].reason: unknown reason {reason:?}"));
            }
        }
    }
    for (i, e) in s.expect.iter().enumerate() {
        let known_rule = |what: &str, id: &String| {
            if rules.contains(id.as_str()) {
                Ok(())
            } else {
                Err(format!("expect[{i}].{what}: unknown rule {id:?}"))
            }
        };
        for id in e
            .firing
            .iter()
            .chain(&e.not_firing)
            .chain(&e.pending)
            .chain(&e.unknown)
        {
            known_rule("firing/not_firing/pending/unknown", id)?;
        }
        for id in e.fired.keys().chain(e.cleared.keys()) {
            known_rule("fired/cleared", id)?;
        }
        for (section, list) in &e.pages {
            if !sections.contains(section.as_str()) {
                return Err(format!("expect[{i}].pages: unknown section {section:?}"));
            }
            for p in list {
                let ok = p.split_once(':').is_some_and(|(l, ev)| {
                    matches!(l, "L1" | "L2" | "L3")
                        && matches!(
                            ev,
                            "opened" | "escalated" | "reminder" | "reopened" | "resolved"
                        )
                });
                if !ok {
                    return Err(format!(
                        "expect[{i}].pages.{section}: {p:?} is not level:event (L2:escalated)"
                    ));
                }
            }
        }
        for id in e
            .active
            .iter()
            .chain(&e.inactive)
            .chain(e.severity.keys())
            .chain(e.top.keys())
        {
            if !sections.contains(id.as_str()) {
                return Err(format!("expect[{i}]: unknown section {id:?}"));
            }
        }
        for (id, status) in &e.causes {
            if !causes.contains(id.as_str()) {
                return Err(format!("expect[{i}].causes: unknown cause {id:?}"));
            }
            if !matches!(status.as_str(), "likely" | "ruled_out" | "unknown") {
                return Err(format!(
                    "expect[{i}].causes.{id}: {status:?} is not likely, ruled_out or unknown"
                ));
            }
        }
        for (section, cause) in &e.top {
            if cause != "none" && !causes.contains(cause.as_str()) {
                return Err(format!(
                    "expect[{i}].top.{section}: unknown cause {cause:?}"
                ));
            }
        }
    }
    Ok(())
}

/// What each source reports at the current simulated time.
#[derive(Default)]
struct World {
    /// By source: its current keys, or how it is down. Sorted, so reports come in one order and
    /// a run is reproducible.
    sources: BTreeMap<String, Result<BTreeMap<Key, Outcome>, Failure>>,
}

/// The failure kind whose label is `label`.
fn failure_kind(label: &str) -> Option<FailureKind> {
    FailureKind::ALL.into_iter().find(|k| k.label() == label)
}

impl World {
    /// Applies one step to its source.
    fn apply(&mut self, step: &Step) {
        if let Some(detail) = &step.down {
            let kind = step
                .reason
                .as_deref()
                .and_then(failure_kind)
                .unwrap_or(FailureKind::Connect);
            self.sources
                .insert(step.source.clone(), Err(Failure::new(kind, detail.clone())));
            return;
        }
        let entry = self
            .sources
            .entry(step.source.clone())
            .or_insert_with(|| Ok(BTreeMap::new()));
        if step.clear || entry.is_err() {
            *entry = Ok(BTreeMap::new());
        }
        if let Ok(map) = entry {
            for o in &step.observe {
                let name = observe::intern(&o.obs).expect("checked");
                let key = Key {
                    name,
                    labels: o.labels.clone(),
                };
                let outcome = match &o.value {
                    ObsValue::Number(n) => Outcome::number(*n),
                    ObsValue::Bool(b) => Outcome::Value(Value::Bool(*b)),
                    ObsValue::Text(t) => Outcome::Value(Value::Text(t.clone())),
                };
                map.insert(key, outcome);
            }
        }
    }

    /// Every source's report at `at`: each is reported again at every evaluation, as a polling
    /// probe would, so readings stay as fresh as the daemon's. A down source fails as its step's
    /// `reason` (default `connect`).
    fn reports(&self, at: Timestamp) -> Vec<ProbeReport> {
        self.sources
            .iter()
            .map(|(source, state)| ProbeReport {
                source: source.clone(),
                at,
                took: Duration::ZERO,
                result: match state {
                    Ok(map) => Ok(map
                        .iter()
                        .map(|(k, o)| Observation::new(k.clone(), o.clone()))
                        .collect()),
                    Err(failure) => Err(failure.clone()),
                },
            })
            .collect()
    }
}

/// The time of the scenario's last step or expectation.
fn end_of(s: &Scenario) -> Duration {
    s.step
        .iter()
        .map(|x| x.at)
        .chain(s.expect.iter().map(|x| x.at))
        .max()
        .unwrap_or_default()
}

/// Runs a checked scenario: at every evaluation time, the steps due, every source's report, the
/// doctor, the engine and the book, in the daemon's order; then the expectations due.
fn run(s: &Scenario, runbook: &Arc<Runbook>, policy: &Policy) -> ScenarioOutcome {
    let end = end_of(s);
    let mut times: BTreeSet<Duration> = s
        .step
        .iter()
        .map(|x| x.at)
        .chain(s.expect.iter().map(|x| x.at))
        .collect();
    let mut t = Duration::ZERO;
    while t <= end {
        times.insert(t);
        match t.checked_add(s.tick) {
            Some(next) => t = next,
            None => break,
        }
    }
    // English: expectations compare IDs, never texts, so the locale changes nothing a scenario
    // checks.
    let mut engine = Engine::new(Arc::clone(runbook), Locale::En);
    let mut world = World::default();
    let mut evidence = Evidence::new();
    let mut fired: BTreeMap<String, usize> = BTreeMap::new();
    let mut cleared: BTreeMap<String, usize> = BTreeMap::new();
    let mut book = Book::default();
    let mut pages: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut failures = Vec::new();
    for t in times {
        for step in s.step.iter().filter(|x| x.at == t) {
            world.apply(step);
        }
        let now = START + t;
        for r in world.reports(now) {
            evidence.apply(r);
        }
        crate::doctor::apply(engine.runbook(), &mut evidence, now);
        let eval = engine.evaluate(&evidence, now);
        for e in &eval.events {
            match e {
                Event::Fired { rule, .. } => *fired.entry(rule.clone()).or_default() += 1,
                Event::Cleared { rule, .. } => *cleared.entry(rule.clone()).or_default() += 1,
            }
        }
        // No maintenance windows: a scenario tests the runbook and the escalation policy.
        for p in book
            .step(&eval.sections, &eval.symptoms, now, policy, &[])
            .pages
        {
            let section = book
                .get(&p.incident)
                .map_or_else(|| "?".to_owned(), |i| i.section.clone());
            pages
                .entry(section)
                .or_default()
                .push(format!("{}:{}", p.level, p.event));
        }
        for e in s.expect.iter().filter(|x| x.at == t) {
            check_expect(e, &eval, &fired, &cleared, &mut failures);
            for (section, want) in &e.pages {
                let got = pages.get(section).cloned().unwrap_or_default();
                if &got != want {
                    let at = humantime::format_duration(e.at);
                    failures.push(format!(
                        "at {at}: pages of {section} should be {want:?}; they are {got:?}"
                    ));
                }
            }
        }
    }
    ScenarioOutcome {
        description: s.description.clone(),
        failures,
    }
}

/// Records every expectation of `e` that does not hold in `eval`, with what holds instead.
fn check_expect(
    e: &Expect,
    eval: &Evaluation,
    fired: &BTreeMap<String, usize>,
    cleared: &BTreeMap<String, usize>,
    failures: &mut Vec<String>,
) {
    let at = humantime::format_duration(e.at);
    let mut fail = |m: String| failures.push(format!("at {at}: {m}"));
    let states = |rule: &str| -> Vec<SymptomState> {
        eval.symptoms
            .iter()
            .filter(|s| s.rule == rule)
            .map(|s| s.state)
            .collect()
    };
    let firing = |rule: &str| {
        states(rule)
            .iter()
            .any(|s| matches!(s, SymptomState::Firing | SymptomState::Recovering))
    };
    for r in &e.firing {
        if !firing(r) {
            fail(format!("{r} should be firing; it is {:?}", states(r)));
        }
    }
    for r in &e.not_firing {
        if firing(r) {
            fail(format!("{r} should not be firing; it is {:?}", states(r)));
        }
    }
    for r in &e.pending {
        if !states(r).contains(&SymptomState::Pending) {
            fail(format!("{r} should be pending; it is {:?}", states(r)));
        }
    }
    for r in &e.unknown {
        if !eval.symptoms.iter().any(|s| &s.rule == r && !s.observable) {
            fail(format!(
                "{r} should be unknown (not observable); it is {:?}",
                states(r)
            ));
        }
    }
    let section = |id: &str| {
        eval.sections
            .iter()
            .find(|s| s.section == id)
            .expect("checked")
    };
    for id in &e.active {
        if !section(id).active {
            fail(format!("section {id} should have an incident"));
        }
    }
    for id in &e.inactive {
        if section(id).active {
            fail(format!(
                "section {id} should have no incident (severity {:?})",
                section(id).severity
            ));
        }
    }
    for (id, sev) in &e.severity {
        if section(id).severity != Some(*sev) {
            fail(format!(
                "section {id} should be {sev}; it is {:?}",
                section(id).severity
            ));
        }
    }
    for (id, want) in &e.causes {
        let got = eval
            .sections
            .iter()
            .flat_map(|s| &s.diagnosis.causes)
            .find(|c| &c.id == id)
            .map(|c| c.status);
        let want_status = match want.as_str() {
            "likely" => CauseStatus::Likely,
            "ruled_out" => CauseStatus::RuledOut,
            _ => CauseStatus::Unknown,
        };
        if got != Some(want_status) {
            let detail = eval
                .sections
                .iter()
                .flat_map(|s| &s.diagnosis.causes)
                .find(|c| &c.id == id)
                .map(|c| {
                    c.evidence
                        .iter()
                        .map(|l| format!("{} → {} ({})", l.condition, l.truth, l.observed))
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default();
            fail(format!(
                "{id} should be {want}; it is {:?} [{detail}]",
                got.map(CauseStatus::label)
            ));
        }
    }
    for (sid, want) in &e.top {
        let top = section(sid)
            .diagnosis
            .top()
            .map_or("none", |c| c.id.as_str());
        if top != want {
            let ranking: Vec<_> = section(sid)
                .diagnosis
                .causes
                .iter()
                .map(|c| format!("{} {} {:.2}", c.id, c.status.label(), c.score))
                .collect();
            fail(format!(
                "top cause of {sid} should be {want}; it is {top} (ranking: {})",
                ranking.join(", ")
            ));
        }
    }
    for (rule, n) in &e.fired {
        let got = fired.get(rule).copied().unwrap_or(0);
        if got != *n {
            fail(format!(
                "{rule} should have fired {n} time(s); it fired {got}"
            ));
        }
    }
    for (rule, n) in &e.cleared {
        let got = cleared.get(rule).copied().unwrap_or(0);
        if got != *n {
            fail(format!(
                "{rule} should have cleared {n} time(s); it cleared {got}"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The shipped scenarios, the bases of the near-valid inputs.
    const REAL: &[&str] = &[
        include_str!("../tests/scenarios/escalation.timeline.toml"),
        include_str!("../tests/scenarios/escalation.flapping_reopen.toml"),
        include_str!("../tests/scenarios/latency.openai_slow.toml"),
        include_str!("../tests/scenarios/errors.memory_leak.toml"),
        include_str!("../tests/scenarios/watchdog.blind.toml"),
        include_str!("../tests/scenarios/no_traffic_nan.toml"),
        include_str!("../tests/scenarios/redis_outage.toml"),
    ];

    /// The embedded runbook, loaded once.
    fn runbook() -> Arc<Runbook> {
        static RUNBOOK: std::sync::LazyLock<Arc<Runbook>> =
            std::sync::LazyLock::new(|| Arc::new(Runbook::embedded()));
        Arc::clone(&RUNBOOK)
    }

    /// The default escalation policy.
    fn policy() -> Policy {
        let config = crate::config::Config::load_with_env(&[], Vec::new()).expect("defaults");
        Policy::from_config(&config.escalation)
    }

    fn fuzz(text: &str) -> Result<(), TestCaseError> {
        if let Err(e) = run_text(text, "fuzz.toml", &runbook(), &policy()) {
            prop_assert_eq!(&e.file, "fuzz.toml");
            prop_assert!(!e.message.is_empty());
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(crate::mutate::cases(64))]

        /// Any scenario text is run or refused with the file named, and runs end.
        #[test]
        fn prop_any_scenario_is_run_or_refused(
            text in prop_oneof![crate::mutate::near_any(REAL), crate::mutate::garbage()],
        ) {
            fuzz(&text)?;
        }
    }

    #[test]
    fn a_timeline_of_too_many_ticks_is_refused_and_the_longest_does_not_overflow() {
        for text in [
            "tick = \"1ns\"\n[[expect]]\nat = \"1h\"\n",
            "[[expect]]\nat = \"584542046090y\"\n",
        ] {
            let e = run_text(text, "long.toml", &runbook(), &policy()).expect_err("too long");
            assert!(e.message.contains("ticks"), "{e}");
        }
        let huge = "tick = \"584542046090y\"\n[[expect]]\nat = \"584542046090y\"\n";
        let outcome = run_text(huge, "huge.toml", &runbook(), &policy()).expect("one tick");
        assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    }
}
