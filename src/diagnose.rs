//! `diagnose`: one pass of every probe now, printed for a person (a table) or a program (`--json`).
//!
//! The JSON shape is a public contract (documented in the README): `at`, `sources[]` and
//! `observations[]`, with the field names below. New fields may be added; none is renamed or removed.

use std::fmt::Write as _;

use serde::Serialize;

use std::sync::Arc;

use crate::alerts::remote::Remote;
use crate::clock::{Clock, Timestamp};
use crate::engine::{Diagnosis, Engine, SymptomState};
use crate::observe::{Evidence, Failure, Labels, Outcome, ProbeReport, Value};
use crate::probe::{self, AnyProbe};
use crate::runbook::alerts::Routed;
use crate::runbook::{Locale, Runbook, Severity};

/// The whole `diagnose` answer.
#[derive(Debug, Serialize)]
pub struct Report {
    /// When the pass started (RFC 3339, UTC).
    pub at: String,
    /// Every probe, in the order they are built (Prometheus first, Docker last).
    pub sources: Vec<SourceLine>,
    /// Every key the probes reported, sorted by name and labels.
    pub observations: Vec<ObservationLine>,
    /// Rules whose condition holds now (they fire once it has held for their `for`), and rules that
    /// cannot be evaluated now.
    pub symptoms: Vec<SymptomLine>,
    /// The diagnosis of every section with a symptom holding now, in runbook order.
    pub diagnoses: Vec<SectionLine>,
    /// Rules that cannot fire on what the probes see, each with why and the fix.
    pub blind_spots: Vec<crate::doctor::BlindSpot>,
    /// The alerts the running watchdog holds (pushed by Alertmanager or Grafana), firing first,
    /// the unmatched ones with why; empty when it was not asked or did not answer (its source line
    /// says which).
    pub alerts: Vec<AlertLine>,
    /// The running watchdog's role among replicas, as its `/readyz` says it (`solo`, `leader`,
    /// `standby (leader: node-a)`); `None` when it was not asked or did not answer.
    pub role: Option<String>,
}

/// One alert the running watchdog holds.
#[derive(Debug, Serialize)]
pub struct AlertLine {
    /// Its `alertname` label.
    pub alertname: String,
    /// `firing`, `stale` or `resolved`.
    pub state: &'static str,
    /// The section it is routed to, or `unmatched`.
    pub section: String,
    /// Why it reaches no section (`no_route`, `unknown_section`).
    pub unmatched_reason: Option<&'static str>,
    /// When the watchdog last heard of it (RFC 3339, UTC).
    pub heard_at: String,
}

/// A rule that holds now, or cannot be evaluated.
#[derive(Debug, Serialize)]
pub struct SymptomLine {
    /// The rule's ID.
    pub rule: String,
    /// Its section's ID.
    pub section: String,
    /// The instance (empty for a rule with one).
    pub labels: Labels,
    /// The rule's summary in the configured locale.
    pub summary: String,
    /// The rule's severity.
    pub severity: Severity,
    /// `holds` or `unknown`. One pass cannot say "firing": `for` has not elapsed on a fresh engine.
    pub state: &'static str,
    /// The value that holds (none when unknown).
    pub value: Option<Value>,
    /// Why it cannot be evaluated.
    pub note: Option<String>,
}

/// A section with a symptom holding now, and its ranked causes.
#[derive(Debug, Serialize)]
pub struct SectionLine {
    /// The section's ID.
    pub section: String,
    /// Its title in the configured locale.
    pub title: String,
    /// The highest severity among its holding rules.
    pub severity: Severity,
    /// Every cause, ranked, with its evidence lines.
    pub diagnosis: Diagnosis,
}

/// One source: whether it answered, how fast, and why not.
#[derive(Debug, Serialize)]
pub struct SourceLine {
    /// The source's name (`prometheus`, `status.openai`).
    pub source: String,
    /// `ok` or `failing`.
    pub state: &'static str,
    /// How long its poll took (a timeout ends at the probe's `timeout`).
    pub took_seconds: f64,
    /// Why it failed (`kind` and `detail`), when it did.
    pub failure: Option<Failure>,
}

/// One observation with its value and age.
#[derive(Debug, Serialize)]
pub struct ObservationLine {
    /// The catalogue name, e.g. `prometheus.p95_seconds`.
    pub key: &'static str,
    /// The instance's labels, as an object (`{}` without).
    pub labels: Labels,
    /// `value`, `no_data` or `unknown`.
    pub state: &'static str,
    /// The value (number, boolean or text) when `state` is `value`, else null.
    pub value: Option<Value>,
    /// Why there is no value (no traffic, a refused query); with a value, how the probe read it
    /// (which histogram, which formula), or null.
    pub detail: Option<String>,
    /// When the poll that read it started (RFC 3339, UTC).
    pub observed_at: String,
    /// Seconds from then to when the report was built: a slow source's values are older.
    pub age_seconds: f64,
}

/// Polls every probe once, and the running watchdog's alerts when `alerts` is given, and builds
/// the report.
pub async fn run(
    probes: &mut [AnyProbe],
    alerts: Option<&mut Remote>,
    clock: &Clock,
    runbook: Arc<Runbook>,
    locale: Locale,
) -> Report {
    // Every probe at once, each under its own timeout: the pass takes as long as the slowest.
    let at = clock.now();
    let (reports, remote) = match alerts {
        Some(remote) => {
            let (mut reports, report) = tokio::join!(
                probe::poll_all(probes, clock),
                probe::poll_once(remote, clock)
            );
            reports.push(report);
            (reports, Some(remote))
        }
        None => (probe::poll_all(probes, clock).await, None),
    };
    let mut report = build(at, clock.now(), reports, runbook, locale);
    if let Some(remote) = remote {
        report.alerts = remote.listing().iter().map(alert_line).collect();
        report.role = remote.role().await;
    }
    report
}

/// One listed alert as the report shows it.
fn alert_line(a: &crate::alerts::Listed) -> AlertLine {
    let (section, unmatched_reason) = match &a.routed {
        Routed::Section(s) => (s.clone(), None),
        Routed::Unmatched(why) => ("unmatched".to_owned(), Some(why.label())),
    };
    AlertLine {
        alertname: a.alertname.clone(),
        state: a.state.label(),
        section,
        unmatched_reason,
        heard_at: a.heard_at.to_string(),
    }
}

/// The report for `reports`, ages measured at `now`. Pure, for tests.
pub fn build(
    at: Timestamp,
    now: Timestamp,
    reports: Vec<ProbeReport>,
    runbook: Arc<Runbook>,
    locale: Locale,
) -> Report {
    let sources = reports
        .iter()
        .map(|r| SourceLine {
            source: r.source.clone(),
            state: if r.result.is_ok() { "ok" } else { "failing" },
            took_seconds: r.took.as_secs_f64(),
            failure: r.result.as_ref().err().cloned(),
        })
        .collect();
    let mut evidence = Evidence::new();
    for r in reports {
        evidence.apply(r);
    }
    let observations = evidence
        .entries()
        .into_iter()
        .map(|(key, outcome, note, observed)| {
            let (state, value, detail) = match outcome {
                Outcome::Value(v) => ("value", Some(v.clone()), note.map(ToString::to_string)),
                Outcome::NoData(why) => ("no_data", None, Some(why.to_string())),
                Outcome::Unknown(f) => ("unknown", None, Some(f.to_string())),
            };
            ObservationLine {
                key: key.name,
                labels: key.labels.clone(),
                state,
                value,
                detail,
                observed_at: observed.to_string(),
                age_seconds: now.saturating_since(observed).as_secs_f64(),
            }
        })
        .collect();
    // One evaluation on a fresh engine: a rule holding now is pending (or firing when its `for` is 0).
    // The doctor first, as the watch loop does, so `watchdog.rule_blind` reads its verdicts.
    let blind_spots = crate::doctor::apply(&runbook, &mut evidence, now);
    let eval = Engine::new(runbook, locale).evaluate(&evidence, now);
    let symptoms: Vec<SymptomLine> = eval
        .symptoms
        .iter()
        .filter(|s| s.state != SymptomState::Inactive || !s.observable)
        .map(|s| SymptomLine {
            rule: s.rule.clone(),
            section: s.section.clone(),
            labels: s.labels.clone(),
            summary: s.summary.clone(),
            severity: s.severity,
            state: if s.observable { "holds" } else { "unknown" },
            value: s.value.clone(),
            note: s.note.as_ref().map(ToString::to_string),
        })
        .collect();
    // Only sections with a rule holding: the ranking is what to read during an incident, and the
    // quiet sections' would bury it.
    let diagnoses = eval
        .sections
        .into_iter()
        .filter_map(|sec| {
            let severity = symptoms
                .iter()
                .filter(|s| s.section == sec.section && s.state == "holds")
                .map(|s| s.severity)
                .max()?;
            Some(SectionLine {
                section: sec.section,
                title: sec.title,
                severity,
                diagnosis: sec.diagnosis,
            })
        })
        .collect();
    Report {
        at: at.to_string(),
        sources,
        observations,
        symptoms,
        diagnoses,
        blind_spots,
        alerts: Vec::new(),
        role: None,
    }
}

impl Report {
    /// The report as a table for a terminal (the JSON, not this, is the stable shape); actions,
    /// commands and the vendor are shown for likely causes only.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "harven-watchdog diagnose at {}\n", self.at);
        let role = self
            .role
            .as_deref()
            .unwrap_or("unknown (no running watchdog answered)");
        let _ = writeln!(out, "ROLE\n  {role}\n");
        let _ = writeln!(out, "SOURCES");
        for s in &self.sources {
            let took = format!("{:.0} ms", s.took_seconds * 1000.0);
            match &s.failure {
                None => {
                    let _ = writeln!(out, "  {:<18} ok        {took}", s.source);
                }
                Some(f) => {
                    let _ = writeln!(out, "  {:<18} FAILING   {took}  {f}", s.source);
                }
            }
        }
        let _ = writeln!(out, "\nOBSERVATIONS");
        let rows: Vec<(String, String)> = self
            .observations
            .iter()
            .map(|o| {
                let key = crate::observe::Key {
                    name: o.key,
                    labels: o.labels.clone(),
                }
                .to_string();
                let value = match (&o.value, &o.detail) {
                    (Some(v), Some(d)) => format!("{v}  ({:.1}s ago; {d})", o.age_seconds),
                    (Some(v), None) => format!("{v}  ({:.1}s ago)", o.age_seconds),
                    (None, Some(d)) if o.state == "no_data" => format!("no data: {d}"),
                    (None, Some(d)) => format!("UNKNOWN: {d}"),
                    (None, None) => o.state.to_owned(),
                };
                (key, value)
            })
            .collect();
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (key, value) in rows {
            let _ = writeln!(out, "  {key:<width$}  {value}");
        }
        if self.observations.is_empty() {
            let _ = writeln!(out, "  (none: no source answered)");
        }
        if !self.alerts.is_empty() {
            let _ = writeln!(out, "\nALERTS (pushed to the running watchdog)");
            for a in &self.alerts {
                let to = match a.unmatched_reason {
                    Some(why) => format!("UNMATCHED ({why})"),
                    None => format!("→ {}", a.section),
                };
                let _ = writeln!(
                    out,
                    "  {:<8} {:<32} {to}  (last heard {})",
                    a.state, a.alertname, a.heard_at
                );
            }
        }
        let _ = writeln!(out, "\nSYMPTOMS");
        for s in &self.symptoms {
            let key = crate::observe::Key {
                name: "",
                labels: s.labels.clone(),
            }
            .to_string();
            let what = match (&s.value, &s.note) {
                (Some(v), Some(n)) => format!("= {v} ({n})"),
                (Some(v), None) => format!("= {v}"),
                (None, Some(n)) => format!("cannot evaluate: {n}"),
                (None, None) => String::new(),
            };
            let state = if s.state == "holds" {
                "HOLDS  "
            } else {
                "UNKNOWN"
            };
            let _ = writeln!(
                out,
                "  {state} [{}] {}{key} {} {what}",
                s.severity, s.rule, s.summary
            );
        }
        if !self.symptoms.iter().any(|s| s.state == "holds") {
            let _ = writeln!(out, "  (no symptom holds now)");
        }
        let _ = writeln!(out, "\nBLIND SPOTS");
        for b in &self.blind_spots {
            let _ = writeln!(out, "  {} cannot fire ({}): {}", b.rule, b.reason, b.detail);
        }
        if self.blind_spots.is_empty() {
            let _ = writeln!(out, "  (none: every rule can fire on what the probes see)");
        }
        for d in &self.diagnoses {
            let _ = writeln!(
                out,
                "\nDIAGNOSIS {} — {} [{}]",
                d.section, d.title, d.severity
            );
            if d.diagnosis.top().is_none() {
                let _ = writeln!(out, "  no likely cause: the evidence points nowhere yet");
            }
            for c in &d.diagnosis.causes {
                let _ = writeln!(
                    out,
                    "  {:<9} {:<32} {}  (score {:.2})",
                    c.status.label(),
                    c.id,
                    c.title,
                    c.score
                );
                // In words (the same words as the English emails), then the raw line.
                for e in &c.evidence {
                    let words = crate::words::evidence(Locale::En, &e.cond, &e.found, e.more);
                    let _ = writeln!(out, "      {:<8} {}", e.truth, words.join("; "));
                    let _ = writeln!(out, "               {}  → {}", e.condition, e.observed);
                }
                if c.status == crate::engine::CauseStatus::Likely {
                    for a in &c.actions {
                        let _ = writeln!(out, "      action: {a}");
                    }
                    for cmd in &c.commands {
                        let _ = writeln!(out, "      $ {cmd}");
                    }
                    if let Some(v) = &c.vendor {
                        let _ = writeln!(out, "      vendor: {v}");
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::observe::{FailureKind, Key, Observation};

    #[test]
    fn text_and_json_show_values_no_data_and_failures() {
        let at = Timestamp::from_unix_millis(1_795_000_000_000);
        let reports = vec![
            ProbeReport {
                source: "prometheus".into(),
                at,
                took: Duration::from_millis(12),
                result: Ok(vec![
                    Observation::number(
                        Key::new("prometheus.p95_seconds").with("handler", "/api/chat"),
                        4.25,
                    ),
                    Observation::number(Key::new("prometheus.error_ratio"), f64::NAN),
                ]),
            },
            ProbeReport {
                source: "redis".into(),
                at,
                took: Duration::from_millis(2),
                result: Err(Failure::new(FailureKind::Connect, "connection refused")),
            },
        ];
        let runbook = Arc::new(Runbook::embedded());
        let report = build(
            at,
            at + Duration::from_secs(2),
            reports,
            runbook,
            Locale::En,
        );
        let text = report.to_text();
        assert!(
            text.contains("prometheus.p95_seconds{handler=\"/api/chat\"}  4.25  (2.0s ago)"),
            "{text}"
        );
        assert!(text.contains("prometheus.error_ratio"), "{text}");
        assert!(text.contains("no data: NaN"), "{text}");
        assert!(
            text.contains("redis              FAILING   2 ms  connect: connection refused"),
            "{text}"
        );

        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["sources"][1]["state"], "failing");
        assert_eq!(json["sources"][1]["failure"]["kind"], "connect");
        let p95 = &json["observations"][1];
        assert_eq!(p95["key"], "prometheus.p95_seconds");
        assert_eq!(p95["labels"]["handler"], "/api/chat");
        assert_eq!(p95["value"], 4.25);
        assert_eq!(p95["age_seconds"], 2.0);
        assert_eq!(json["observations"][0]["state"], "no_data");

        // p95 above 3 s holds now; the error rule cannot be evaluated (NaN); Redis rules are unknown.
        assert!(
            text.contains("HOLDS   [major] latency.p95_high{handler=\"/api/chat\"}"),
            "{text}"
        );
        assert!(text.contains("DIAGNOSIS latency"), "{text}");
        assert_eq!(json["diagnoses"][0]["section"], "latency");
        assert!(
            json["symptoms"]
                .as_array()
                .expect("list")
                .iter()
                .any(|s| s["rule"] == "errors.ratio_high" && s["state"] == "unknown")
        );
    }
}
