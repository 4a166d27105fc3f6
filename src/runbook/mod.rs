//! The runbook as data: sections, their symptom rules, and their probable causes with evidence and
//! actions, loaded from `config/runbook.toml` (embedded) or a user's file, and validated at load.
//!
//! A runbook refers to observations only by catalogue name ([`crate::observe::CATALOGUE`]); a name the
//! probes do not produce, a label they do not set, an operator that does not fit the value's kind, a
//! duplicate ID: each is a problem naming the file, the section and the key. Nothing here runs: the
//! engine evaluates what this module describes.

pub mod alerts;
mod model;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

pub use model::{
    Cause, Condition, Link, Locale, Op, Operand, Role, Rule, Runbook, Section, Severity, Text,
    Vendor,
};

use crate::config::{Config, DockerConfig};
use crate::observe::{self, Kind};

/// The shipped runbook, compiled in from `config/runbook.toml`.
pub const DEFAULT_RUNBOOK: &str = include_str!("../../config/runbook.toml");

/// The section and cause IDs every runbook must keep (stable: emails, the API and metrics use them).
/// A user's runbook may reword, reweigh and add, but not drop or rename these: a cause the emails
/// or the doctor name must exist.
pub const REQUIRED_IDS: &[&str] = &[
    "latency.openai_slow",
    "latency.db_slow",
    "latency.redis_saturated",
    "latency.traffic_surge",
    "errors.bad_deploy",
    "errors.supabase_down",
    "errors.openai_rate_limit",
    "errors.memory_leak",
    "auth.jwt_secret",
    "auth.supabase_auth_down",
    "auth.rate_limit",
    "auth.token_expiry",
    "openai_quota.quota_exceeded",
    "database.too_many_connections",
    "database.slow_query",
    "database.supabase_down",
    "database.rls_blocking",
    "watchdog.blind",
];

/// One problem in a runbook file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunbookProblem {
    /// The file, or `embedded runbook`.
    pub file: String,
    /// Where in it: `sections.latency.rules[0].when.obs`.
    pub key: String,
    /// What is wrong, and when it can say so, what would be right.
    pub message: String,
}

impl fmt::Display for RunbookProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.key, self.message)
        }
    }
}

/// Every problem found in a runbook; never empty.
#[derive(Debug, thiserror::Error)]
pub struct RunbookError {
    /// All of them, not the first: fixing a runbook file takes one round, not one per problem.
    pub problems: Vec<RunbookProblem>,
}

impl fmt::Display for RunbookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "invalid runbook ({n} problem{})",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl Runbook {
    /// The runbook the configuration names: the file at `path`, or the embedded one.
    pub fn load(path: Option<&Path>) -> Result<Self, RunbookError> {
        match path {
            None => Self::parse(DEFAULT_RUNBOOK, "embedded runbook"),
            Some(p) => {
                let name = p.display().to_string();
                let text = std::fs::read_to_string(p).map_err(|e| RunbookError {
                    problems: vec![RunbookProblem {
                        file: name.clone(),
                        key: String::new(),
                        message: e.to_string(),
                    }],
                })?;
                Self::parse(&text, &name)
            }
        }
    }

    /// Decodes and validates runbook text; `file` names it in problems.
    pub fn parse(text: &str, file: &str) -> Result<Self, RunbookError> {
        // A syntax or shape error stops at once (there is nothing to validate); the checks below
        // then collect every problem of a well-formed file.
        let runbook: Runbook = toml::from_str(text).map_err(|e| {
            let key = e.span().map(|s| locate(text, s.start)).unwrap_or_default();
            RunbookError {
                problems: vec![RunbookProblem {
                    file: file.to_owned(),
                    key,
                    message: e.message().to_owned(),
                }],
            }
        })?;
        let problems = validate(&runbook, file);
        if problems.is_empty() {
            Ok(runbook)
        } else {
            Err(RunbookError { problems })
        }
    }

    /// The runbook `config` names, loaded and checked against the rest of the configuration: a
    /// condition on a Docker role that `[docker.roles]` does not map could never be observed, so it
    /// is a problem naming the condition and the missing `docker.roles.<role>` key.
    pub fn load_for(config: &Config) -> Result<Self, RunbookError> {
        let runbook = Self::load(config.runbook.path.as_deref())?;
        let file = describe(config.runbook.path.as_ref());
        let problems = runbook.unmapped_roles(&config.docker, &file);
        if problems.is_empty() {
            Ok(runbook)
        } else {
            Err(RunbookError { problems })
        }
    }

    /// The conditions on a `role` label that `docker` does not map, as problems of `file`.
    pub fn unmapped_roles(&self, docker: &DockerConfig, file: &str) -> Vec<RunbookProblem> {
        let mapped: Vec<&str> = docker.roles.iter().map(|r| r.name.as_str()).collect();
        self.conditions()
            .into_iter()
            .filter_map(|(key, c)| {
                let role = c.labels.get("role")?;
                (!mapped.contains(&role.as_str())).then(|| RunbookProblem {
                    file: file.to_owned(),
                    key: format!("{key}.labels.role"),
                    message: format!(
                        "role {role:?} is not mapped to containers: the configuration has no \
                         docker.roles.{role} (it maps: {})",
                        if mapped.is_empty() {
                            "none".to_owned()
                        } else {
                            mapped.join(", ")
                        }
                    ),
                })
            })
            .collect()
    }

    /// Every condition, with where it is (`sections[1] (errors).rules[2].when`), in file order
    /// (so problems read top to bottom). Context lines included: they are read too.
    fn conditions(&self) -> Vec<(String, &Condition)> {
        let mut out = Vec::new();
        for (n, section) in self.sections.iter().enumerate() {
            let base = format!("sections[{n}] ({})", section.id);
            for (i, rule) in section.rules.iter().enumerate() {
                out.push((format!("{base}.rules[{i}].when"), &rule.when));
                if let Some(clear) = &rule.clear {
                    out.push((format!("{base}.rules[{i}].clear"), clear));
                }
            }
            for (i, cause) in section.causes.iter().enumerate() {
                for (j, c) in cause.evidence.iter().enumerate() {
                    out.push((format!("{base}.causes[{i}].evidence[{j}]"), c));
                }
                for (j, c) in cause.context.iter().enumerate() {
                    out.push((format!("{base}.causes[{i}].context[{j}]"), c));
                }
            }
        }
        out
    }

    /// The embedded runbook, which the test suite proves valid.
    pub fn embedded() -> Self {
        Self::parse(DEFAULT_RUNBOOK, "embedded runbook")
            .expect("the embedded runbook is valid (tested)")
    }

    /// The observations the rules and causes read (with the labels they narrow them to), so that
    /// probes fetch nothing the runbook cannot use.
    pub fn wanted(&self) -> observe::Wanted {
        let mut wanted = observe::Wanted::default();
        for (_, c) in self.conditions() {
            if let Some(obs) = &c.obs {
                wanted.add(obs, &c.labels);
            }
        }
        // Only `>` and `>=` thresholds: a rule firing above a value needs a histogram with buckets
        // above it (the Prometheus probe checks), one firing below does not.
        for rule in self.sections.iter().flat_map(|s| &s.rules) {
            let when = &rule.when;
            if let (Some(obs), Some(Op::Gt | Op::Ge), Some(Operand::Number(v))) =
                (&when.obs, when.op, &when.value)
            {
                wanted.add_threshold(obs, *v);
            }
        }
        wanted
    }

    /// The compiled `[alerts]`: the routes from alerts to this runbook's sections.
    pub fn alert_router(&self) -> alerts::AlertRouter {
        let sections = self.sections.iter().map(|s| s.id.clone()).collect();
        alerts::AlertRouter::new(&self.alerts, sections)
    }

    /// The rule with this ID, and its section.
    pub fn rule(&self, id: &str) -> Option<(&Section, &Rule)> {
        self.sections
            .iter()
            .find_map(|s| s.rules.iter().find(|r| r.id == id).map(|r| (s, r)))
    }
}

/// `line L, column C` of a byte offset, for TOML syntax errors. The column counts characters,
/// not bytes, as an editor does (the runbook is in Portuguese: `ç`, `ã`).
fn locate(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {col}")
}

/// Every check a decoded runbook must pass, collecting all problems.
///
/// It checks what decoding cannot: names against the catalogue, operators against kinds, IDs
/// unique and under their section, the stable IDs present. It does not check Docker roles
/// against the configuration ([`Runbook::load_for`] does): `parse` needs no configuration.
fn validate(rb: &Runbook, file: &str) -> Vec<RunbookProblem> {
    let mut problems = Vec::new();
    let mut problem = |key: String, message: String| {
        problems.push(RunbookProblem {
            file: file.to_owned(),
            key,
            message,
        });
    };
    let mut ids = BTreeSet::new();
    let mut section_ids = BTreeSet::new();
    for (n, section) in rb.sections.iter().enumerate() {
        let sid = section.id.as_str();
        let base = format!("sections[{n}] ({sid})");
        if !section_ids.insert(sid) {
            problem(format!("{base}.id"), format!("duplicate section {sid:?}"));
        }
        if section.rules.is_empty() {
            problem(
                format!("{base}.rules"),
                "a section needs at least one symptom rule".into(),
            );
        }
        for (i, rule) in section.rules.iter().enumerate() {
            let key = format!("{base}.rules[{i}]");
            check_id(&rule.id, sid, &key, &mut ids, &mut problem);
            check_condition(&rule.when, &format!("{key}.when"), &mut problem);
            if let Some(clear) = &rule.clear {
                check_condition(clear, &format!("{key}.clear"), &mut problem);
                if clear.obs != rule.when.obs || clear.labels != rule.when.labels {
                    problem(
                        format!("{key}.clear"),
                        "must watch the same observation and labels as `when` (it is the same symptom's recovery)".into(),
                    );
                }
            }
            // Zero would clear on the first reading back under the threshold: no hysteresis in
            // time, and a value hovering at the threshold would open and resolve incidents.
            if rule.resolve_after.is_zero() {
                problem(
                    format!("{key}.resolve_after"),
                    "must be longer than zero (it is the recovery hysteresis)".into(),
                );
            }
            // The same bound as the configuration's delays: a deadline is `since + for`, and it
            // must stay a date that can be written (see `config::limits`).
            let bound = crate::config::MAX_DELAY;
            for (name, d) in [("for", rule.for_), ("resolve_after", rule.resolve_after)] {
                if d > bound.max {
                    problem(
                        format!("{key}.{name}"),
                        format!(
                            "({}) is longer than {}, the most it may be",
                            crate::config::limits::short(d),
                            bound.text
                        ),
                    );
                }
            }
        }
        for (i, cause) in section.causes.iter().enumerate() {
            let key = format!("{base}.causes[{i}]");
            check_id(&cause.id, sid, &key, &mut ids, &mut problem);
            if cause.evidence.is_empty() {
                problem(
                    format!("{key}.evidence"),
                    "a cause needs at least one evidence condition".into(),
                );
            }
            for (j, c) in cause.evidence.iter().enumerate() {
                check_condition(c, &format!("{key}.evidence[{j}]"), &mut problem);
            }
            // A context line is only shown: its name and labels must exist, it needs no `op`.
            for (j, c) in cause.context.iter().enumerate() {
                let ckey = format!("{key}.context[{j}]");
                match c.obs.as_deref().and_then(observe::spec_of) {
                    None => problem(
                        format!("{ckey}.obs"),
                        format!("unknown observation {:?}", c.obs.as_deref().unwrap_or("")),
                    ),
                    Some(spec) => check_labels(c, spec, &ckey, &mut problem),
                }
            }
            if let Some(v) = cause
                .vendor
                .as_ref()
                .filter(|v| !rb.vendors.contains_key(*v))
            {
                problem(
                    format!("{key}.vendor"),
                    format!("unknown vendor {v:?}; declare it under [vendors.{v}]"),
                );
            }
        }
    }
    let sections: Vec<&str> = rb.sections.iter().map(|s| s.id.as_str()).collect();
    for (key, message) in alerts::check(&rb.alerts, &sections) {
        problem(key, message);
    }
    for id in REQUIRED_IDS {
        if !ids.contains(*id) {
            problem(
                String::new(),
                format!("the stable cause ID {id:?} is missing (emails and the API depend on it)"),
            );
        }
    }
    problems
}

/// An ID must start with `<section>.` and be unique across the runbook (rules and causes
/// together): emails, the API and the links name a rule or a cause by its ID alone.
fn check_id(
    id: &str,
    section: &str,
    key: &str,
    ids: &mut BTreeSet<String>,
    problem: &mut impl FnMut(String, String),
) {
    if !id.starts_with(&format!("{section}.")) {
        problem(
            format!("{key}.id"),
            format!("{id:?} must start with its section, \"{section}.\""),
        );
    }
    if !ids.insert(id.to_owned()) {
        problem(format!("{key}.id"), format!("duplicate ID {id:?}"));
    }
}

/// One `when`, `clear` or evidence condition: exactly one subject, a known name or source, labels
/// the observation has, and an operator and value that fit its kind.
fn check_condition(c: &Condition, key: &str, problem: &mut impl FnMut(String, String)) {
    match (&c.obs, &c.source_failing) {
        (Some(_), Some(_)) | (None, None) => {
            problem(
                key.to_owned(),
                "needs exactly one of `obs` (an observation) or `source_failing` (a source name)"
                    .into(),
            );
        }
        (None, Some(source)) => {
            // A status page's source is `status.<name>`, named by the configuration, which the
            // runbook is checked without: any such name is accepted here.
            let known = observe::CATALOGUE
                .iter()
                .any(|s| s.probe == source || source.starts_with("status."));
            if !known {
                problem(
                    format!("{key}.source_failing"),
                    format!("unknown source {source:?}"),
                );
            }
            let kinds = observe::FailureKind::ALL.map(observe::FailureKind::label);
            if let Some(reason) = c.reason.as_deref().filter(|r| !kinds.contains(r)) {
                problem(
                    format!("{key}.reason"),
                    format!("unknown reason {reason:?} (one of {})", kinds.join(", ")),
                );
            }
        }
        (Some(_), None) if c.reason.is_some() => problem(
            format!("{key}.reason"),
            "`reason` goes with `source_failing`, not with `obs`".into(),
        ),
        (Some(name), None) => match observe::spec_of(name) {
            None => problem(
                format!("{key}.obs"),
                format!("unknown observation {name:?}"),
            ),
            Some(spec) => {
                check_labels(c, spec, key, problem);
                let (Some(op), Some(value)) = (c.op, &c.value) else {
                    problem(
                        key.to_owned(),
                        "an observation condition needs `op` and `value`".into(),
                    );
                    return;
                };
                if let Err(e) = op.fits(spec.kind, value) {
                    problem(format!("{key}.value"), e);
                }
            }
        },
    }
}

/// Every label a condition narrows by must be one the observation carries; another would select
/// nothing, and the rule would read "never observed" for ever.
fn check_labels(
    c: &Condition,
    spec: &observe::Spec,
    key: &str,
    problem: &mut impl FnMut(String, String),
) {
    for label in c.labels.keys() {
        if !spec.labels.contains(&label.as_str()) {
            problem(
                format!("{key}.labels.{label}"),
                format!(
                    "{} has no label {label:?} (it has: {})",
                    spec.name,
                    spec.labels.join(", ")
                ),
            );
        }
    }
}

impl Op {
    /// Whether this operator can compare an observation of `kind` with `value`.
    fn fits(self, kind: Kind, value: &Operand) -> Result<(), String> {
        let ok = matches!(
            (self, kind, value),
            (
                Op::Gt | Op::Ge | Op::Lt | Op::Le | Op::Eq | Op::Ne,
                Kind::Number,
                Operand::Number(_)
            ) | (Op::Eq | Op::Ne, Kind::Bool, Operand::Bool(_))
                | (Op::Eq | Op::Ne, Kind::Text, Operand::Text(_))
                | (Op::In | Op::NotIn, Kind::Text, Operand::List(_))
        );
        if ok {
            Ok(())
        } else {
            Err(format!(
                "operator {} does not fit a {kind:?} observation compared with {value}",
                self.symbol()
            ))
        }
    }
}

/// A runbook path as given, for messages (`embedded runbook` without one).
pub fn describe(path: Option<&PathBuf>) -> String {
    path.map_or_else(
        || "embedded runbook".to_owned(),
        |p| p.display().to_string(),
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_embedded_runbook_is_valid_and_has_every_stable_id() {
        let rb =
            Runbook::parse(DEFAULT_RUNBOOK, "embedded runbook").unwrap_or_else(|e| panic!("{e}"));
        let sections: Vec<_> = rb.sections.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            sections,
            [
                "latency",
                "errors",
                "auth",
                "openai_quota",
                "database",
                "watchdog"
            ]
        );
        assert_eq!(rb.checklist.len(), 7);
    }

    #[test]
    fn problems_name_the_key() {
        let text = DEFAULT_RUNBOOK.replacen(
            "prometheus.p95_seconds\", op = \">\"",
            "prometheus.p99_seconds\", op = \">\"",
            1,
        );
        let err = Runbook::parse(&text, "rb.toml").expect_err("unknown observation");
        let p = &err.problems[0];
        assert_eq!(p.file, "rb.toml");
        assert_eq!(p.key, "sections[0] (latency).rules[0].when.obs", "{err}");
        assert!(p.message.contains("prometheus.p99_seconds"), "{err}");
    }

    #[test]
    fn a_source_failing_reason_must_be_a_failure_kind_and_only_goes_with_a_source() {
        let text = DEFAULT_RUNBOOK.replacen("reason = \"timeout\"", "reason = \"hung\"", 1);
        let err = Runbook::parse(&text, "rb.toml").expect_err("an unknown reason");
        let p = &err.problems[0];
        assert!(p.key.ends_with(".reason"), "{err}");
        assert!(
            p.message.contains("\"hung\"") && p.message.contains("timeout"),
            "{err}"
        );
        let text = DEFAULT_RUNBOOK.replacen(
            "value = \"server_error\", weight = 3 },",
            "value = \"server_error\", reason = \"timeout\", weight = 3 },",
            1,
        );
        let err = Runbook::parse(&text, "rb.toml").expect_err("a reason on an observation");
        assert!(err.problems[0].key.ends_with(".reason"), "{err}");
    }

    #[test]
    fn a_rule_timer_longer_than_30_days_is_refused_naming_it() {
        let text =
            DEFAULT_RUNBOOK.replacen("resolve_after = \"30s\"", "resolve_after = \"400d\"", 1);
        let err = Runbook::parse(&text, "rb.toml").expect_err("a year-long hysteresis");
        let p = &err.problems[0];
        assert_eq!(
            p.key, "sections[0] (latency).rules[0].resolve_after",
            "{err}"
        );
        assert_eq!(
            p.message, "(400d) is longer than 30 days, the most it may be",
            "{err}"
        );
    }

    #[test]
    fn bad_alert_routes_are_problems_naming_the_key() {
        let text = DEFAULT_RUNBOOK
            .replacen(
                "matchers = ['alertname=~\"HighLatency.*\"']",
                "matchers = ['alertname=~\"(HighLatency\"']",
                1,
            )
            .replacen(
                "section = \"errors\"\nmatchers",
                "section = \"billing\"\nmatchers",
                1,
            )
            .replacen("forget_after = \"24h\"", "forget_after = \"1h\"", 1);
        let err = Runbook::parse(&text, "rb.toml").expect_err("three problems");
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "alerts.routes[0].matchers[0]",
                "alerts.routes[1].section",
                "alerts.forget_after"
            ],
            "{err}"
        );
        assert!(
            err.problems[0].message.contains("not a regular expression"),
            "{err}"
        );
        assert!(err.problems[1].message.contains("\"billing\""), "{err}");
    }

    #[test]
    fn the_shipped_alert_routes_map_as_the_runbook_says() {
        use alerts::Routed;
        let router = Runbook::embedded().alert_router();
        let route = |pairs: &[(&str, &str)]| {
            let labels = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            router.route(&labels)
        };
        let to = |s: &str| Routed::Section(s.to_owned());
        assert_eq!(route(&[("alertname", "HighLatencyP95")]), to("latency"));
        assert_eq!(route(&[("alertname", "HighErrorRate5xx")]), to("errors"));
        assert_eq!(
            route(&[("alertname", "DiskFull"), ("harven_section", "database")]),
            to("database")
        );
        assert!(matches!(
            route(&[("alertname", "DiskFull")]),
            Routed::Unmatched(_)
        ));
    }

    proptest! {
        // Most edits of a large file break its syntax (about 4 in 5): enough cases that a few dozen reach
        // validation.
        #![proptest_config(crate::mutate::cases(128))]

        /// Any runbook text is loaded or refused, every problem naming the file and saying what.
        #[test]
        fn prop_any_runbook_is_loaded_or_refused_by_name(
            text in prop_oneof![
                crate::mutate::near_text(DEFAULT_RUNBOOK),
                crate::mutate::near_text(include_str!("../../tests/fixtures/runbook/invalid.toml")),
                crate::mutate::garbage(),
            ],
        ) {
            if let Err(e) = Runbook::parse(&text, "fuzz.toml") {
                prop_assert!(!e.problems.is_empty());
                for p in &e.problems {
                    prop_assert_eq!(&p.file, "fuzz.toml");
                    prop_assert!(!p.message.is_empty(), "{}", e);
                }
            }
        }
    }
}
