//! The loop around the engine: it owns the evidence table, applies every probe report, and
//! evaluates the runbook on each report and at each rule deadline (a `for` or `resolve_after`
//! coming due), reading `now` from the [`Clock`].
//!
//! This is the shell of the pure [`Engine`]: the only place that reads the clock for it, and the
//! place that turns its transitions into log lines and metrics.
//!
//! Only the leader pages (issue 17): a standby applies reports and evaluates (it stays warm), its
//! incident gauges follow the leader's book (read from the store every [`FOLLOW_EVERY`]), and
//! its pager neither steps nor writes; acks and resolves sent to it are refused. On becoming leader
//! the pager is taken over from the store ([`Pager::take_over`]); on losing the lead it stops at
//! once. Alone on its store a replica is always leader, as before.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::doctor::BlindSpot;
use crate::engine::{Engine, Evaluation, Event, Symptom, SymptomState};
use crate::ha::{Leadership, Role};
use crate::incident::{ActionError, Book, IncidentState, Level};
use crate::observe::{Evidence, ProbeReport, Reading, Value};
use crate::pipeline::pager::{Charts, Command, Pager};
use crate::runbook::Runbook;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RuleLabels {
    section: String,
    rule: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, EncodeLabelSet)]
struct BlindLabels {
    rule: String,
    reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TransitionLabels {
    section: String,
    rule: String,
    event: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SectionLabels {
    section: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OpenLabels {
    section: String,
    severity: &'static str,
}

/// Labels of an observation gauge: the observation's own labels (`handler`), or none.
type ObsLabels = Vec<(String, String)>;

/// A float gauge family.
type FloatGauges = Family<ObsLabels, Gauge<f64, AtomicU64>>;

/// The observations exported as gauges: (catalogue name, metric name without prefix and unit, unit,
/// help). Only numbers worth a graph; the rest stays in `diagnose` and the API.
const OBSERVATIONS: &[(&str, &str, Option<Unit>, &str)] = &[
    (
        "prometheus.p95_seconds",
        "observation_p95",
        Some(Unit::Seconds),
        "p95 request latency per handler, as the watchdog last read it from Prometheus",
    ),
    (
        "prometheus.error_ratio",
        "observation_error_ratio",
        None,
        "Share of the backend's requests answered 5xx, as the watchdog last read it",
    ),
    (
        "prometheus.auth_failure_ratio",
        "observation_auth_failure_ratio",
        None,
        "Share of the backend's requests answered 401/403, as the watchdog last read it",
    ),
    (
        "prometheus.request_rate",
        "observation_request_rate",
        None,
        "The backend's requests per second, as the watchdog last read it",
    ),
    (
        "redis.memory_ratio",
        "observation_redis_memory_ratio",
        None,
        "Redis used memory over maxmemory, as the watchdog last read it",
    ),
    (
        "redis.ping_seconds",
        "observation_redis_ping",
        Some(Unit::Seconds),
        "Redis PING round trip, as the watchdog last read it",
    ),
    // [openai] (no series while it is off).
    (
        "openai.api.latency_seconds",
        "observation_openai_api_latency",
        Some(Unit::Seconds),
        "Time OpenAI's API took to answer GET /v1/models, as the watchdog last read it",
    ),
    (
        "openai.usage.spend_usd",
        "observation_openai_spend_usd",
        None,
        "The OpenAI organization's month-to-date cost in USD, as the watchdog last read it",
    ),
    (
        "openai.usage.budget_share",
        "observation_openai_budget_share",
        None,
        "The OpenAI month-to-date cost over the monthly budget, as the watchdog last read it",
    ),
    (
        "openai.usage.hours_to_budget",
        "observation_openai_hours_to_budget",
        None,
        "Hours until the OpenAI monthly budget is spent at today's burn rate, as the watchdog last read it",
    ),
    // [sentry] (no series while it is off).
    (
        "sentry.unresolved_issues",
        "observation_sentry_unresolved_issues",
        None,
        "Unresolved Sentry issues in the configured projects, as the watchdog last read them",
    ),
    (
        "sentry.events_per_hour",
        "observation_sentry_events_per_hour",
        None,
        "Sentry events per hour over the recent window, as the watchdog last read them",
    ),
    (
        "sentry.event_rate_ratio",
        "observation_sentry_event_rate_ratio",
        None,
        "Sentry events per hour now over the day's baseline, as the watchdog last read it",
    ),
    // [coolify] (issue 16; no series while it is off).
    (
        "coolify.deploy_age_seconds",
        "observation_coolify_deploy_age",
        Some(Unit::Seconds),
        "Time since the application's current Coolify deployment finished, as the watchdog last read it",
    ),
];

/// The `severity` labels of `incidents_open`: every section has a series for each.
const SEVERITIES: [&str; 2] = ["major", "critical"];

/// `harven_watchdog_symptoms_firing`, `_symptom_transitions_total`, `_section_active`,
/// `_incidents_open`, `_incident_level` and the `_observation_*` gauges.
#[derive(Debug, Clone, Default)]
pub struct EngineMetrics {
    firing: Family<RuleLabels, Gauge>,
    transitions: Family<TransitionLabels, Counter>,
    active: Family<SectionLabels, Gauge>,
    open: Family<OpenLabels, Gauge>,
    level: Family<SectionLabels, Gauge>,
    /// 1 per rule that cannot fire, by why (`crate::doctor`).
    blind: Family<BlindLabels, Gauge>,
    /// The blind spots shown now, so one that is fixed is removed (and logged) once.
    blind_shown: BTreeSet<BlindLabels>,
    /// One family per entry of [`OBSERVATIONS`], in its order.
    observations: Vec<FloatGauges>,
    /// The label sets each observation family shows now, so a set that disappears from the evidence
    /// (or stops being a finite number) is removed instead of showing its last value for ever.
    shown: BTreeSet<(usize, ObsLabels)>,
}

impl EngineMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let mut m = Self::default();
        registry.register(
            "symptoms_firing",
            "Instances (label sets) of each rule that are firing or recovering",
            m.firing.clone(),
        );
        registry.register(
            "symptom_transitions",
            "Symptoms fired and cleared, by rule",
            m.transitions.clone(),
        );
        registry.register(
            "section_active",
            "1 when a runbook section has a firing symptom (an incident), else 0",
            m.active.clone(),
        );
        registry.register(
            "incidents_open",
            "Open incidents by section and severity",
            m.open.clone(),
        );
        registry.register(
            "incident_level",
            "Highest escalation level paged (1, 2, 3) of the section's open incident; 0 when none",
            m.level.clone(),
        );
        registry.register(
            "rule_blind",
            "1 for each runbook rule that cannot fire on what the watchdog sees (a blind spot), by reason; diagnose prints the fix",
            m.blind.clone(),
        );
        for (_, name, unit, help) in OBSERVATIONS {
            let family = FloatGauges::default();
            match unit {
                Some(u) => registry.register_with_unit(*name, *help, u.clone(), family.clone()),
                None => registry.register(*name, *help, family.clone()),
            }
            m.observations.push(family);
        }
        m
    }

    /// Sets the observation gauges from `evidence`: finite numbers only; a label set that is gone, or
    /// reads as unknown or no data, is removed (a gap in the graph, not a stale flat line).
    fn record_observations(&mut self, evidence: &Evidence) {
        let mut now_shown = BTreeSet::new();
        for (i, (name, ..)) in OBSERVATIONS.iter().enumerate() {
            let Some(family) = self.observations.get(i) else {
                continue;
            };
            for (labels, reading) in evidence.instances(name) {
                if let Reading::Value {
                    value: Value::Number(n),
                    ..
                } = reading
                    && n.is_finite()
                {
                    let labels: ObsLabels =
                        labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                    family.get_or_create(&labels).set(*n);
                    now_shown.insert((i, labels));
                }
            }
        }
        for (i, labels) in self.shown.difference(&now_shown) {
            self.observations[*i].remove(labels);
        }
        self.shown = now_shown;
    }

    /// Sets `rule_blind` to `spots`, logging each one once when it appears (with its fix) and once
    /// when it is gone.
    fn record_blind_spots(&mut self, spots: &[BlindSpot]) {
        let mut now_shown = BTreeSet::new();
        for spot in spots {
            let labels = BlindLabels {
                rule: spot.rule.clone(),
                reason: spot.reason.clone(),
            };
            if !self.blind_shown.contains(&labels) {
                tracing::error!(rule = %spot.rule, reason = %spot.reason, detail = %spot.detail, "blind spot: this rule cannot fire");
            }
            self.blind.get_or_create(&labels).set(1);
            now_shown.insert(labels);
        }
        for gone in self.blind_shown.difference(&now_shown) {
            tracing::info!(rule = %gone.rule, reason = %gone.reason, "blind spot fixed: the rule can fire again");
            self.blind.remove(gone);
        }
        self.blind_shown = now_shown;
    }

    /// Removes every observation series.
    fn clear_observations(&mut self) {
        for family in &self.observations {
            family.clear();
        }
        self.shown.clear();
    }

    /// Drops the series of the sections and rules that `before` had and `after` no longer has, so a
    /// reload that removes them does not leave their last values (a firing symptom, an open
    /// incident) on `/metrics` until the next restart. The transition counters stay, as the probes'
    /// error counters do ([`crate::probe::ProbeMetrics::forget`]); what stays is set again by the
    /// new generation's loop.
    pub fn forget_removed(&self, before: &Runbook, after: &Runbook) {
        let kept = |section: &str| after.sections.iter().find(|s| s.id == section);
        for section in &before.sections {
            let now = kept(&section.id);
            for rule in &section.rules {
                if now.is_some_and(|s| s.rules.iter().any(|r| r.id == rule.id)) {
                    continue;
                }
                self.firing.remove(&RuleLabels {
                    section: section.id.clone(),
                    rule: rule.id.clone(),
                });
            }
            if now.is_some() {
                continue;
            }
            let labels = SectionLabels {
                section: section.id.clone(),
            };
            self.active.remove(&labels);
            self.level.remove(&labels);
            for severity in SEVERITIES {
                self.open.remove(&OpenLabels {
                    section: section.id.clone(),
                    severity,
                });
            }
        }
    }

    /// Sets the incident gauges from the book: every section and severity has a series (0 when no
    /// incident is open), so a dashboard shows zeros rather than no data.
    fn record_book(&self, sections: &[String], book: &Book) {
        for section in sections {
            let open = book
                .incidents()
                .find(|i| &i.section == section && i.state == IncidentState::Open);
            for severity in SEVERITIES {
                let n = open.is_some_and(|i| i.severity.to_string() == severity);
                self.open
                    .get_or_create(&OpenLabels {
                        section: section.clone(),
                        severity,
                    })
                    .set(i64::from(n));
            }
            let level = open.and_then(|i| i.highest_paged()).map_or(0, |l| match l {
                Level::L1 => 1,
                Level::L2 => 2,
                Level::L3 => 3,
            });
            self.level
                .get_or_create(&SectionLabels {
                    section: section.clone(),
                })
                .set(level);
        }
    }

    /// Shows `symptom_transitions_total` at 0 for every rule of `runbook`, fired and cleared, so an
    /// `increase()` alert sees a rule's first transition (a series born at 1 has no increase).
    pub fn init_transitions(&self, runbook: &Runbook) {
        for section in &runbook.sections {
            for rule in &section.rules {
                for event in ["fired", "cleared"] {
                    let _ = self.transitions.get_or_create(&TransitionLabels {
                        section: section.id.clone(),
                        rule: rule.id.clone(),
                        event,
                    });
                }
            }
        }
    }

    fn record(&self, engine: &Engine, eval: &Evaluation) {
        for section in &engine.runbook().sections {
            for rule in &section.rules {
                let n = eval
                    .symptoms
                    .iter()
                    .filter(|s| s.rule == rule.id)
                    .filter(|s| matches!(s.state, SymptomState::Firing | SymptomState::Recovering))
                    .count();
                let labels = RuleLabels {
                    section: section.id.clone(),
                    rule: rule.id.clone(),
                };
                self.firing
                    .get_or_create(&labels)
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        for s in &eval.sections {
            self.active
                .get_or_create(&SectionLabels {
                    section: s.section.clone(),
                })
                .set(i64::from(s.active));
        }
        for e in &eval.events {
            let (section, rule, event) = match e {
                Event::Fired { section, rule, .. } => (section, rule, "fired"),
                Event::Cleared { section, rule, .. } => (section, rule, "cleared"),
            };
            self.transitions
                .get_or_create(&TransitionLabels {
                    section: section.clone(),
                    rule: rule.clone(),
                    event,
                })
                .inc();
        }
    }
}

/// What the loop publishes besides the pages: its metrics, and the blind spots for the status page.
pub struct Published {
    pub metrics: EngineMetrics,
    /// The rules that cannot fire now, replaced when they change.
    pub blind_spots: tokio::sync::watch::Sender<Vec<BlindSpot>>,
    /// The probes to poll at their fast interval: those a pending or recovering rule reads.
    pub hurry: tokio::sync::watch::Sender<BTreeSet<String>>,
    /// The firing and recovering symptoms of the latest evaluation, for the status pages' values
    /// and charts.
    pub symptoms: tokio::sync::watch::Sender<Vec<Symptom>>,
}

/// Applies reports and evaluates until every probe has stopped or `shutdown` is cancelled; each
/// evaluation goes to the pager while `leadership` says this replica leads, and so do the ack and
/// resolve commands (a standby refuses them).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    mut engine: Engine,
    mut reports: mpsc::Receiver<ProbeReport>,
    mut pager: Pager,
    mut commands: mpsc::Receiver<Command>,
    clock: Clock,
    published: Published,
    leadership: Leadership,
    shutdown: CancellationToken,
) {
    let Published {
        mut metrics,
        blind_spots: blind,
        hurry,
        symptoms: live,
    } = published;
    let sections: Vec<String> = engine
        .runbook()
        .sections
        .iter()
        .map(|s| s.id.clone())
        .collect();
    metrics.record_book(&sections, pager.book());
    // The evidence starts empty (after a reload too, when the families still show the previous
    // loop's readings): so do the observation gauges.
    metrics.clear_observations();
    let mut evidence = Evidence::new();
    if let Some(saved) = pager.saved_engine_state() {
        engine.restore(saved);
    }
    let mut saved = engine.snapshot();
    let mut role = leadership.watch();
    // When a standby last read the leader's book (its incident gauges follow it).
    let mut followed: Option<crate::clock::Timestamp> = None;
    // The term the pager works for: `Some(epoch)` while it leads and has taken over. A generation
    // that starts as leader read the store as it opened (a start or a reload): no takeover then.
    let mut leading: Option<u64> = match &*role.borrow_and_update() {
        Role::Leader { epoch } => Some(*epoch),
        Role::Standby { .. } => None,
    };
    loop {
        let now = clock.now();
        let book_deadline = leading.and_then(|_| pager.next_deadline(now));
        let deadline = [engine.next_deadline(), book_deadline]
            .into_iter()
            .flatten()
            .min();
        let mut evaluate = true;
        // A takeover the store refused is tried again at each evaluation.
        let wanted = match &*role.borrow() {
            Role::Leader { epoch } if leading != Some(*epoch) => Some(*epoch),
            _ => None,
        };
        if let Some(epoch) = wanted {
            let (node, from, now) = (
                leadership.node().to_owned(),
                leadership.took_over_from(),
                clock.now(),
            );
            let taken;
            (pager, taken) =
                off_thread(pager, move |p| p.take_over(&node, from.as_deref(), now)).await;
            match taken {
                Ok(()) => {
                    leading = Some(epoch);
                    // The new leader saves its own rule states at its next evaluation.
                    saved = crate::engine::EngineState::default();
                    metrics.record_book(&sections, pager.book());
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not take the pager over; trying again at the next evaluation")
                }
            }
        }
        tokio::select! {
            report = reports.recv() => match report {
                Some(r) => evidence.apply(r),
                None => return,
            },
            () = async {
                match deadline {
                    Some(d) => clock.sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => {}
            Some(cmd) = commands.recv() => {
                if leading.is_none() {
                    let leader = match &*role.borrow() {
                        Role::Standby { leader } => leader.clone(),
                        Role::Leader { .. } => None,
                    };
                    cmd.refuse(ActionError::Standby { leader });
                } else {
                    let now = clock.now();
                    (pager, ()) = off_thread(pager, move |p| p.command(cmd, now)).await;
                    metrics.record_book(&sections, pager.book());
                }
                evaluate = false;
            }
            Ok(()) = role.changed() => {
                // Losing the lead stops the pager at once; gaining it takes over at the top of
                // the loop.
                if !role.borrow_and_update().is_leader() {
                    if leading.take().is_some() {
                        tracing::warn!("no longer the leader: the pager stops");
                    }
                    // A takeover that failed was the pager's word on the store too.
                    pager.stand_down();
                }
                evaluate = false;
            }
            () = shutdown.cancelled() => return,
        }
        if !evaluate {
            continue;
        }
        let now = clock.now();
        let spots = crate::doctor::apply(engine.runbook(), &mut evidence, now);
        let eval = engine.evaluate(&evidence, now);
        for e in &eval.events {
            match e {
                Event::Fired {
                    rule,
                    labels,
                    severity,
                    ..
                } => {
                    tracing::warn!(rule = %rule, ?labels, %severity, "symptom fired");
                }
                Event::Cleared { rule, labels, .. } => {
                    tracing::info!(rule = %rule, ?labels, "symptom cleared")
                }
            }
        }
        metrics.record(&engine, &eval);
        metrics.record_observations(&evidence);
        metrics.record_blind_spots(&spots);
        let hurried = hurried_probes(engine.runbook(), &eval);
        hurry.send_if_modified(|shown| {
            let changed = *shown != hurried;
            *shown = hurried;
            changed
        });
        blind.send_if_modified(|shown| {
            let changed = *shown != spots;
            *shown = spots;
            changed
        });
        live.send_replace(
            eval.symptoms
                .iter()
                .filter(|s| matches!(s.state, SymptomState::Firing | SymptomState::Recovering))
                .cloned()
                .collect(),
        );
        if leading.is_none() {
            // A standby evaluates (warm) and records nothing; its incident gauges follow the
            // leader's book, read from the store at most every FOLLOW_EVERY.
            if followed.is_none_or(|at| now.saturating_since(at) >= FOLLOW_EVERY) {
                followed = Some(now);
                let read;
                (pager, read) = off_thread(pager, Pager::follow).await;
                match read {
                    Ok(()) => metrics.record_book(&sections, pager.book()),
                    // The store finding says the store is failing; the gauges keep the last read.
                    Err(e) => {
                        tracing::debug!(error = %e, "a standby could not read the leader's incidents")
                    }
                }
            }
            continue;
        }
        let state = engine.snapshot();
        let changed = (state != saved).then(|| state.clone());
        let decided;
        (pager, decided) =
            off_thread(pager, move |p| p.decide_on(eval, changed.as_ref(), now)).await;
        let recorded = match decided {
            Ok(None) => Ok(()),
            Ok(Some(decision)) => {
                // Between deciding and recording: the charts of the emails about to be rendered,
                // read within the source's short budget; nothing is committed while they are.
                let wants = pager.chart_wants(&decision);
                let source = pager.chart_source();
                // Every incident's at once: the step waits one budget at most.
                let charts: Charts =
                    futures_util::future::join_all(wants.into_iter().map(|(incident, wanted)| {
                        let source = &source;
                        async move { (incident, source.fetch(&wanted, now).await) }
                    }))
                    .await
                    .into_iter()
                    .collect();
                let result;
                (pager, result) = off_thread(pager, move |p| p.record(decision, &charts)).await;
                result
            }
            Err(e) => Err(e),
        };
        let recorded = recorded
            .inspect_err(|e| tracing::error!(error = %e, "could not record the incidents and pages; retrying at the next evaluation"))
            .is_ok();
        // Only what reached the store counts as saved: after a failed write the next evaluation
        // saves the rule states again.
        if recorded {
            saved = state;
        }
        metrics.record_book(&sections, pager.book());
    }
}

/// How often a standby reads the leader's incidents from the shared store, so that its
/// `incidents_open` and `incident_level` gauges follow the leader's (one small read).
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// The probes that produce what a pending or recovering rule reads: polled sooner, so its `for` or
/// `resolve_after` is decided on fresh readings.
fn hurried_probes(runbook: &Runbook, eval: &Evaluation) -> BTreeSet<String> {
    eval.symptoms
        .iter()
        .filter(|s| matches!(s.state, SymptomState::Pending | SymptomState::Recovering))
        .filter_map(|s| runbook.rule(&s.rule))
        .filter_map(|(_, rule)| rule.when.obs.as_deref())
        .filter_map(crate::observe::spec_of)
        .map(|spec| spec.probe.to_owned())
        .collect()
}

/// Runs `f` on the pager on the blocking pool (it writes to SQLite) and hands the pager back.
async fn off_thread<R: Send + 'static>(
    mut pager: Pager,
    f: impl FnOnce(&mut Pager) -> R + Send + 'static,
) -> (Pager, R) {
    tokio::task::spawn_blocking(move || {
        let r = f(&mut pager);
        (pager, r)
    })
    .await
    .expect("the pager does not panic")
}
