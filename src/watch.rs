//! The loop around the engine: it owns the evidence table, applies every probe report, and
//! evaluates the runbook on each report and at each rule deadline (a `for` or `resolve_after`
//! coming due), reading `now` from the [`Clock`].
//!
//! This is the shell of the pure [`Engine`]: the only place that reads the clock for it, and the
//! place that turns its transitions into log lines and metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::engine::{Engine, Evaluation, Event, SymptomState};
use crate::observe::{Evidence, ProbeReport};
use crate::pager::{Command, Pager};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RuleLabels {
    section: String,
    rule: String,
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

/// `harven_watchdog_symptoms_firing`, `_symptom_transitions_total`, `_section_active`.
#[derive(Debug, Clone, Default)]
pub struct EngineMetrics {
    firing: Family<RuleLabels, Gauge>,
    transitions: Family<TransitionLabels, Counter>,
    active: Family<SectionLabels, Gauge>,
}

impl EngineMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
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
        m
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

/// Applies reports and evaluates until every probe has stopped or `shutdown` is cancelled; each
/// evaluation goes to the pager, which also gets the ack and resolve commands.
pub async fn run(
    mut engine: Engine,
    mut reports: mpsc::Receiver<ProbeReport>,
    mut pager: Pager,
    mut commands: mpsc::Receiver<Command>,
    clock: Clock,
    metrics: EngineMetrics,
    shutdown: CancellationToken,
) {
    let mut evidence = Evidence::new();
    if let Some(saved) = pager.saved_engine_state() {
        engine.restore(saved);
    }
    let mut saved = engine.snapshot();
    loop {
        let now = clock.now();
        let deadline = [engine.next_deadline(), pager.next_deadline(now)]
            .into_iter()
            .flatten()
            .min();
        let mut evaluate = true;
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
                let now = clock.now();
                pager = off_thread(pager, move |p| p.command(cmd, now)).await;
                evaluate = false;
            }
            () = shutdown.cancelled() => return,
        }
        if !evaluate {
            continue;
        }
        let now = clock.now();
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
        let state = engine.snapshot();
        let changed = (state != saved).then(|| state.clone());
        saved = state;
        pager = off_thread(pager, move |p| {
            if let Err(e) = p.on_evaluation(eval, changed.as_ref(), now) {
                tracing::error!(error = %e, "could not record the incidents and pages; retrying at the next evaluation");
            }
        })
        .await;
    }
}

/// Runs `f` on the pager on the blocking pool (it writes to SQLite) and hands the pager back.
async fn off_thread(mut pager: Pager, f: impl FnOnce(&mut Pager) + Send + 'static) -> Pager {
    tokio::task::spawn_blocking(move || {
        f(&mut pager);
        pager
    })
    .await
    .expect("the pager does not panic")
}
