//! Observations and the evidence table: what the probes saw, and when.
//!
//! A probe's poll yields a [`ProbeReport`]: either the source answered, with a list of [`Observation`]s,
//! or it could not be read, with a [`Failure`]. The [`Evidence`] table keeps the latest report of every
//! source and the latest value of every observation key. The runbook's rules read only this table;
//! [`CATALOGUE`] lists every observation name a probe can produce, so a runbook that names another one is
//! refused at load time.
//!
//! Three states of a reading are kept apart on purpose: a value; *no data* (the source answered, but
//! there is nothing to compare: a handler without traffic gives `NaN`, a Redis without `maxmemory` has no
//! memory ratio); and *unknown* (the source, or this one query, could not be read). A rule must never
//! treat either of the last two as "below the threshold".

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::clock::Timestamp;

/// Label pairs of an observation, sorted by name (`handler`, `container`, `pattern`, `page`).
pub type Labels = BTreeMap<String, String>;

/// Which observation: a catalogue name plus the labels that tell its instances apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Key {
    pub name: &'static str,
    pub labels: Labels,
}

impl Key {
    /// A key without labels.
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            labels: Labels::new(),
        }
    }

    /// Adds one label.
    #[must_use]
    pub fn with(mut self, label: &str, value: impl Into<String>) -> Self {
        self.labels.insert(label.to_owned(), value.into());
        self
    }
}

/// `name{label="value",…}`, as Prometheus writes series.
impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)?;
        if !self.labels.is_empty() {
            f.write_str("{")?;
            for (i, (k, v)) in self.labels.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{k}={v:?}")?;
            }
            f.write_str("}")?;
        }
        Ok(())
    }
}

/// An observed value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    /// A finite number (ratios, seconds, bytes, counts). Never NaN or infinite: those are no data.
    Number(f64),
    Bool(bool),
    /// A word from a small set (`healthy`, `major`, an image name).
    Text(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{}", format_number(*n)),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Text(t) => f.write_str(t),
        }
    }
}

/// Up to four significant decimals, without trailing zeros: `3.2`, `0.0531`, `5000`.
fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        return format!("{n:.0}");
    }
    let s = format!("{n:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// What a probe got for one key.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    Value(Value),
    /// The source answered but has nothing to compare (no traffic, no limit set, empty result).
    NoData(String),
    /// This key could not be read although the source answered (one failing query).
    Unknown(Failure),
}

impl Outcome {
    /// A number, or no data when it is NaN or infinite (Prometheus sends `NaN` for a handler without
    /// traffic, and `+Inf` from `histogram_quantile` over an empty or overflowing histogram).
    pub fn number(n: f64) -> Self {
        if n.is_finite() {
            Self::Value(Value::Number(n))
        } else {
            Self::NoData(format!("{n} (no traffic or empty histogram)"))
        }
    }
}

/// One observation of one key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observation {
    pub key: Key,
    pub outcome: Outcome,
    /// How the value was read, when that matters to whoever weighs it (`from the high-resolution
    /// histogram, all handlers`, `no 5xx series yet: 0`). Shown beside the value in evidence lines,
    /// symptoms and `diagnose`; it must not change what the value means.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Observation {
    pub fn new(key: Key, outcome: Outcome) -> Self {
        Self {
            key,
            outcome,
            note: None,
        }
    }

    /// The same observation, with how it was read.
    #[must_use]
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    pub fn number(key: Key, n: f64) -> Self {
        Self::new(key, Outcome::number(n))
    }

    pub fn boolean(key: Key, b: bool) -> Self {
        Self::new(key, Outcome::Value(Value::Bool(b)))
    }

    pub fn text(key: Key, t: impl Into<String>) -> Self {
        Self::new(key, Outcome::Value(Value::Text(t.into())))
    }
}

/// Why a source or a key could not be read: a stable `kind` for metrics and a human `detail` for logs,
/// the status page and emails. The detail never holds a secret (probes build it from their own words
/// and the peer's status, never from a URL with credentials or a header).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub kind: FailureKind,
    pub detail: String,
}

impl Failure {
    pub fn new(kind: FailureKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.label(), self.detail)
    }
}

/// The kinds of failure, as the `reason` label of `harven_watchdog_probe_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The peer did not answer within the probe's timeout.
    Timeout,
    /// No connection (refused, reset, DNS).
    Connect,
    /// The peer answered with an HTTP error status or a protocol error.
    Status,
    /// The answer could not be parsed (HTML instead of JSON, a wrong shape).
    Malformed,
    /// The answer was larger than the probe reads.
    TooLarge,
    /// The peer refused our query itself (bad PromQL): a runbook or config problem, not an outage.
    Query,
    /// Anything else the client library reported.
    Other,
}

impl FailureKind {
    pub const ALL: [FailureKind; 7] = [
        FailureKind::Timeout,
        FailureKind::Connect,
        FailureKind::Status,
        FailureKind::Malformed,
        FailureKind::TooLarge,
        FailureKind::Query,
        FailureKind::Other,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Status => "status",
            Self::Malformed => "malformed",
            Self::TooLarge => "too_large",
            Self::Query => "query",
            Self::Other => "other",
        }
    }
}

/// The result of one poll of one source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeReport {
    /// The source: `prometheus`, `status.openai`, `supabase`, `redis`, `docker`.
    pub source: String,
    /// When the poll started.
    pub at: Timestamp,
    /// How long the poll took.
    #[serde(with = "humantime_serde")]
    pub took: Duration,
    pub result: Result<Vec<Observation>, Failure>,
}

/// A reading of one key as the rules see it.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading<'a> {
    /// A value observed at `at`.
    Value { value: &'a Value, at: Timestamp },
    /// The source answered without a value to compare.
    NoData { why: &'a str, at: Timestamp },
    /// Not observable now: the source is unreachable, the query failed, or the key was never seen.
    Unknown { why: String },
}

/// The state of one source, from its latest report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceState {
    /// When the latest report started.
    pub last_poll: Timestamp,
    /// `None` while the source answers.
    pub failure: Option<Failure>,
    /// Since when the source has been in its current state (answering, or failing).
    pub since: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    source: String,
    outcome: Outcome,
    note: Option<String>,
    at: Timestamp,
}

/// The latest observation of every key and the state of every source.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    entries: HashMap<Key, Entry>,
    sources: BTreeMap<String, SourceState>,
}

impl Evidence {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a report. A source that answered replaces all its keys (a key it no longer reports, such
    /// as a handler that stopped serving, disappears); a source that failed keeps its last values, but
    /// they read as unknown until it answers again.
    pub fn apply(&mut self, report: ProbeReport) {
        let failed = report.result.as_ref().err().cloned();
        let since = match self.sources.get(&report.source) {
            Some(prev) if prev.failure.is_some() == failed.is_some() => prev.since,
            _ => report.at,
        };
        if let Ok(observations) = report.result {
            self.entries.retain(|_, e| e.source != report.source);
            for o in observations {
                let entry = Entry {
                    source: report.source.clone(),
                    outcome: o.outcome,
                    note: o.note,
                    at: report.at,
                };
                self.entries.insert(o.key, entry);
            }
        }
        self.sources.insert(
            report.source,
            SourceState {
                last_poll: report.at,
                failure: failed,
                since,
            },
        );
    }

    /// The reading of one key.
    pub fn get(&self, key: &Key) -> Reading<'_> {
        match self.entries.get(key) {
            None => Reading::Unknown {
                why: format!("{key} has not been observed"),
            },
            Some(e) => self.reading(e),
        }
    }

    /// How the latest value of `key` was read, when its probe said.
    pub fn note(&self, key: &Key) -> Option<&str> {
        self.entries.get(key).and_then(|e| e.note.as_deref())
    }

    fn reading<'a>(&'a self, e: &'a Entry) -> Reading<'a> {
        if let Some(f) = self.sources.get(&e.source).and_then(|s| s.failure.as_ref()) {
            return Reading::Unknown {
                why: format!("{} is unreachable ({f})", e.source),
            };
        }
        match &e.outcome {
            Outcome::Value(value) => Reading::Value { value, at: e.at },
            Outcome::NoData(why) => Reading::NoData { why, at: e.at },
            Outcome::Unknown(f) => Reading::Unknown { why: f.to_string() },
        }
    }

    /// Every instance of the observation `name`, with its labels, sorted by labels.
    pub fn instances(&self, name: &str) -> Vec<(&Labels, Reading<'_>)> {
        let mut out: Vec<_> = self
            .entries
            .iter()
            .filter(|(k, _)| k.name == name)
            .map(|(k, e)| (&k.labels, self.reading(e)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }

    /// Every key with its latest outcome and time, sorted by key (for `diagnose` and the API).
    /// With each: its outcome, how it was read (the probe's note) and when.
    pub fn entries(&self) -> Vec<(&Key, &Outcome, Option<&str>, Timestamp)> {
        let mut out: Vec<_> = self
            .entries
            .iter()
            .map(|(k, e)| (k, &e.outcome, e.note.as_deref(), e.at))
            .collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }

    /// Every source that has reported, with its state.
    pub fn sources(&self) -> &BTreeMap<String, SourceState> {
        &self.sources
    }
}

/// What kind of value an observation carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Number,
    Bool,
    Text,
}

/// One entry of the catalogue: an observation name a probe produces.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spec {
    pub name: &'static str,
    /// The probe that produces it.
    pub probe: &'static str,
    pub kind: Kind,
    /// The labels its instances carry.
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

const fn spec(
    name: &'static str,
    probe: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    help: &'static str,
) -> Spec {
    Spec {
        name,
        probe,
        kind,
        labels,
        help,
    }
}

use Kind::{Bool, Number, Text};

/// Every observation the probes produce: the vocabulary of the runbook's conditions.
pub const CATALOGUE: &[Spec] = &[
    // Prometheus (the backend's own metrics, prometheus-fastapi-instrumentator)
    spec(
        "prometheus.p95_seconds",
        "prometheus",
        Number,
        &["handler", "histogram"],
        "p95 request latency per handler (`*`: all handlers), from the histogram named",
    ),
    spec(
        "prometheus.slow_share",
        "prometheus",
        Number,
        &["handler", "histogram"],
        "share of requests slower than the runbook's latency threshold (exact from the bucket at the threshold when there is one)",
    ),
    spec(
        "prometheus.slow_share_short",
        "prometheus",
        Number,
        &["handler", "histogram"],
        "share of requests slower than the runbook's latency threshold over the short window (severe breaches)",
    ),
    spec(
        "prometheus.error_ratio_short",
        "prometheus",
        Number,
        &[],
        "share of requests answered 5xx over the short window (severe breaches)",
    ),
    spec(
        "prometheus.auth_failure_ratio_short",
        "prometheus",
        Number,
        &[],
        "share of requests refused 401/403 (or 4xx above usual) over the short window (severe breaches)",
    ),
    spec(
        "prometheus.handler_slow_share",
        "prometheus",
        Number,
        &["handler"],
        "share of a handler's requests slower than the per-handler histogram's highest bucket (names the slow handlers when the p95 is read over all handlers)",
    ),
    spec(
        "doctor.rule_blind",
        "doctor",
        Text,
        &["rule"],
        "a runbook rule that cannot fire on what the probes see, with why and the fix (empty: none)",
    ),
    spec(
        "prometheus.blind_spot",
        "prometheus",
        Text,
        &["obs", "reason"],
        "why an observation the runbook's rules read cannot show what they look for, with the fix",
    ),
    spec(
        "prometheus.error_ratio",
        "prometheus",
        Number,
        &[],
        "share of requests answered 5xx",
    ),
    spec(
        "prometheus.auth_failure_ratio",
        "prometheus",
        Number,
        &[],
        "share of requests answered 401/403 (4xx when status codes are grouped)",
    ),
    spec(
        "prometheus.auth_exact",
        "prometheus",
        Bool,
        &[],
        "true when 401/403 are counted exactly, false when only the 4xx group exists",
    ),
    spec(
        "prometheus.request_rate",
        "prometheus",
        Number,
        &[],
        "requests per second over the short window (a surge shows within it)",
    ),
    spec(
        "prometheus.request_rate_baseline",
        "prometheus",
        Number,
        &[],
        "requests per second over the baseline window",
    ),
    spec(
        "prometheus.request_rate_ratio",
        "prometheus",
        Number,
        &[],
        "request rate now divided by its baseline",
    ),
    spec(
        "prometheus.backend_up",
        "prometheus",
        Bool,
        &["instance"],
        "Prometheus' `up` for the backend's scrape job",
    ),
    // Status pages (statuspage.io v2)
    spec(
        "status.indicator",
        "status",
        Text,
        &["page"],
        "none | minor | major | critical | maintenance",
    ),
    spec(
        "status.description",
        "status",
        Text,
        &["page"],
        "the page's own one-line status",
    ),
    spec(
        "status.latency_seconds",
        "status",
        Number,
        &["page"],
        "time to fetch the status page",
    ),
    // Supabase project
    spec(
        "supabase.auth_ok",
        "supabase",
        Bool,
        &[],
        "GET /auth/v1/health answered 2xx",
    ),
    spec(
        "supabase.auth_status",
        "supabase",
        Number,
        &[],
        "HTTP status of /auth/v1/health (0: no answer)",
    ),
    spec(
        "supabase.auth_latency_seconds",
        "supabase",
        Number,
        &[],
        "time to answer /auth/v1/health",
    ),
    spec(
        "supabase.rest_ok",
        "supabase",
        Bool,
        &[],
        "GET /rest/v1/ answered 2xx",
    ),
    spec(
        "supabase.rest_status",
        "supabase",
        Number,
        &[],
        "HTTP status of /rest/v1/ (0: no answer)",
    ),
    spec(
        "supabase.rest_latency_seconds",
        "supabase",
        Number,
        &[],
        "time to answer /rest/v1/",
    ),
    // Redis
    spec(
        "redis.ping_seconds",
        "redis",
        Number,
        &[],
        "PING round trip",
    ),
    spec(
        "redis.used_memory_bytes",
        "redis",
        Number,
        &[],
        "INFO memory used_memory",
    ),
    spec(
        "redis.maxmemory_bytes",
        "redis",
        Number,
        &[],
        "INFO memory maxmemory (no data when unlimited)",
    ),
    spec(
        "redis.memory_ratio",
        "redis",
        Number,
        &[],
        "used_memory / maxmemory",
    ),
    spec(
        "redis.evicted_keys_per_minute",
        "redis",
        Number,
        &[],
        "keys evicted per minute over `[redis] evidence_window` (5m; the note says it)",
    ),
    spec(
        "redis.rejected_connections_per_minute",
        "redis",
        Number,
        &[],
        "connections rejected per minute over `[redis] evidence_window` (5m; the note says it)",
    ),
    spec(
        "redis.connected_clients",
        "redis",
        Number,
        &[],
        "INFO clients connected_clients",
    ),
    spec(
        "redis.blocked_clients",
        "redis",
        Number,
        &[],
        "INFO clients blocked_clients",
    ),
    spec(
        "redis.keys",
        "redis",
        Number,
        &["pattern"],
        "keys matching the pattern (SCAN, capped)",
    ),
    spec(
        "redis.keys_capped",
        "redis",
        Bool,
        &["pattern"],
        "true when the key count stopped at the scan cap",
    ),
    // Docker Engine, per watched container (`container`) and per role over its replicas (`role`)
    spec(
        "docker.present",
        "docker",
        Bool,
        &["container"],
        "the container exists",
    ),
    spec(
        "docker.running",
        "docker",
        Bool,
        &["container", "role"],
        "the container is running (a role: every replica is)",
    ),
    spec(
        "docker.health",
        "docker",
        Text,
        &["container", "role"],
        "healthy | unhealthy | starting | none (a role: its worst replica's)",
    ),
    spec(
        "docker.exit_code",
        "docker",
        Number,
        &["container", "role"],
        "exit code of the last run (a role: the highest)",
    ),
    spec(
        "docker.restart_count",
        "docker",
        Number,
        &["container", "role"],
        "Docker's restart count (a role: summed)",
    ),
    spec(
        "docker.restarts",
        "docker",
        Number,
        &["container", "role"],
        "restarts within `[docker] evidence_window` (10m; the note says it; a role: summed)",
    ),
    spec(
        "docker.oom_killed",
        "docker",
        Bool,
        &["container", "role"],
        "OOM-killed within `[docker] evidence_window` (10m), or the last run ended so (a role: any replica's)",
    ),
    spec(
        "docker.uptime_seconds",
        "docker",
        Number,
        &["container", "role"],
        "time since the container started (a role: its youngest replica's)",
    ),
    spec(
        "docker.image",
        "docker",
        Text,
        &["container", "role"],
        "the image the container runs (a role: its most recently deployed replica's)",
    ),
    spec(
        "docker.previous_image",
        "docker",
        Text,
        &["container", "role"],
        "the image it ran before the last change seen",
    ),
    spec(
        "docker.recent_deploy",
        "docker",
        Bool,
        &["container", "role"],
        "a new container (created, or another ID under the name) or another image within `[docker] deploy_window`; never a restart of the same container on the same image (a role: any replica, or its image)",
    ),
    spec(
        "docker.memory_bytes",
        "docker",
        Number,
        &["container", "role"],
        "memory in use (a role: the most of any replica)",
    ),
    spec(
        "docker.memory_limit_bytes",
        "docker",
        Number,
        &["container", "role"],
        "memory limit, no data when unlimited (a role: the tightest)",
    ),
    spec(
        "docker.memory_ratio",
        "docker",
        Number,
        &["container", "role"],
        "memory in use / limit (a role: the highest)",
    ),
    spec(
        "docker.memory_growth_bytes_per_hour",
        "docker",
        Number,
        &["container", "role"],
        "memory growth rate over the growth window (a role: the fastest)",
    ),
    spec(
        "docker.env_present",
        "docker",
        Bool,
        &["container", "role", "var"],
        "the variable is set in the container, never its value (a role: in every replica)",
    ),
    spec(
        "docker.log_lines_per_minute",
        "docker",
        Number,
        &["container", "role", "pattern"],
        "log lines matching the pattern per minute over `[docker] log_rate_window` (2m; the note says it; a role: summed)",
    ),
    spec(
        "docker.role_containers",
        "docker",
        Number,
        &["role"],
        "containers the role matches now (0: the role's other observations have no data)",
    ),
    spec(
        "docker.replicas",
        "docker",
        Text,
        &["role"],
        "the role's containers, the notable ones first with what is notable about each",
    ),
    spec(
        "docker.worst_replica",
        "docker",
        Text,
        &["role"],
        "the role's container to look at first (the worst, else the first by name)",
    ),
];

/// The catalogue entry of `name`.
pub fn spec_of(name: &str) -> Option<&'static Spec> {
    CATALOGUE.iter().find(|s| s.name == name)
}

/// The catalogue's own spelling of `name`, so keys can hold `&'static str`.
pub fn intern(name: &str) -> Option<&'static str> {
    spec_of(name).map(|s| s.name)
}

/// Labels that say what an observation is about: an instance carries at most one of them (a Docker
/// observation is about one `container`, or about a `role` over its replicas).
pub const SUBJECT_LABELS: &[&str] = &["container", "role"];

/// The observations a reader (the runbook) can use: catalogue names, each with the label sets its
/// conditions narrow it to. A probe asks it before reading something costly per instance (the Docker
/// probe's memory stats and logs of each container), so a value nothing reads is not fetched.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    /// Every observation is wanted (no reader known: tests, one-off tools).
    everything: bool,
    /// By catalogue name, the label sets of the conditions over it.
    by_name: HashMap<String, Vec<Labels>>,
    /// By catalogue name, the numbers its rules fire above (`p95 > 3`): a probe that reads a
    /// histogram checks that its buckets can tell them.
    thresholds: HashMap<String, Vec<f64>>,
}

impl Wanted {
    /// Every observation of every instance.
    pub fn everything() -> Self {
        Self {
            everything: true,
            by_name: HashMap::new(),
            thresholds: HashMap::new(),
        }
    }

    /// Records that a condition reads `name` narrowed to `labels`.
    pub fn add(&mut self, name: &str, labels: &Labels) {
        self.by_name
            .entry(name.to_owned())
            .or_default()
            .push(labels.clone());
    }

    /// Records that a rule fires when `name` rises above `value`.
    pub fn add_threshold(&mut self, name: &str, value: f64) {
        let list = self.thresholds.entry(name.to_owned()).or_default();
        if !list.contains(&value) {
            list.push(value);
            list.sort_by(f64::total_cmp);
        }
    }

    /// The numbers rules fire above on `name`, ascending (empty when no rule compares it so).
    pub fn thresholds(&self, name: &str) -> &[f64] {
        self.thresholds.get(name).map_or(&[], Vec::as_slice)
    }

    /// True when some condition over `name` can read the instance about `label = value` (`label`
    /// one of [`SUBJECT_LABELS`]): one that narrows `label` to `value`, or narrows no subject at all
    /// (it reads every instance). A condition on a `role` does not read a `container` instance.
    pub fn wants(&self, name: &str, label: &str, value: &str) -> bool {
        let reads = |l: &Labels| match l.get(label) {
            Some(v) => v == value,
            None => !SUBJECT_LABELS.iter().any(|s| l.contains_key(*s)),
        };
        self.everything
            || self
                .by_name
                .get(name)
                .is_some_and(|sets| sets.iter().any(reads))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_unix_millis(s * 1000)
    }

    fn report(source: &str, at: i64, result: Result<Vec<Observation>, Failure>) -> ProbeReport {
        ProbeReport {
            source: source.into(),
            at: t(at),
            took: Duration::from_millis(3),
            result,
        }
    }

    #[test]
    fn nan_and_infinity_are_no_data_never_a_number() {
        assert!(matches!(Outcome::number(f64::NAN), Outcome::NoData(_)));
        assert!(matches!(Outcome::number(f64::INFINITY), Outcome::NoData(_)));
        assert!(matches!(
            Outcome::number(f64::NEG_INFINITY),
            Outcome::NoData(_)
        ));
        assert_eq!(Outcome::number(3.2), Outcome::Value(Value::Number(3.2)));
    }

    #[test]
    fn a_failing_source_makes_its_keys_unknown_and_keeps_its_since() {
        let p95 = Key::new("prometheus.p95_seconds").with("handler", "/api/chat");
        let mut ev = Evidence::new();
        ev.apply(report(
            "prometheus",
            10,
            Ok(vec![Observation::number(p95.clone(), 4.2)]),
        ));
        assert!(
            matches!(ev.get(&p95), Reading::Value { value: Value::Number(n), .. } if *n == 4.2)
        );

        let down = Failure::new(FailureKind::Connect, "connection refused");
        ev.apply(report("prometheus", 25, Err(down.clone())));
        ev.apply(report("prometheus", 40, Err(down)));
        match ev.get(&p95) {
            Reading::Unknown { why } => assert!(why.contains("connection refused"), "{why}"),
            other => panic!("expected unknown, got {other:?}"),
        }
        assert_eq!(
            ev.sources()["prometheus"].since,
            t(25),
            "failing since the first failed poll"
        );

        ev.apply(report("prometheus", 55, Ok(vec![])));
        assert!(
            matches!(ev.get(&p95), Reading::Unknown { .. }),
            "a key no longer reported is gone"
        );
        assert_eq!(ev.sources()["prometheus"].since, t(55));
        assert!(ev.sources()["prometheus"].failure.is_none());
    }

    #[test]
    fn sources_do_not_replace_each_others_keys() {
        let mut ev = Evidence::new();
        let a = Key::new("redis.ping_seconds");
        let b = Key::new("status.indicator").with("page", "openai");
        ev.apply(report(
            "redis",
            1,
            Ok(vec![Observation::number(a.clone(), 0.001)]),
        ));
        ev.apply(report(
            "status.openai",
            2,
            Ok(vec![Observation::text(b.clone(), "minor")]),
        ));
        ev.apply(report(
            "redis",
            3,
            Ok(vec![Observation::number(a.clone(), 0.002)]),
        ));
        assert!(matches!(ev.get(&b), Reading::Value { value: Value::Text(s), .. } if s == "minor"));
        assert_eq!(ev.instances("redis.ping_seconds").len(), 1);
    }

    #[test]
    fn keys_print_like_prometheus_series() {
        let k = Key::new("docker.log_lines_per_minute")
            .with("pattern", "openai")
            .with("container", "harven-backend");
        assert_eq!(
            k.to_string(),
            r#"docker.log_lines_per_minute{container="harven-backend",pattern="openai"}"#
        );
        assert_eq!(Value::Number(0.053_12).to_string(), "0.0531");
        assert_eq!(Value::Number(5000.0).to_string(), "5000");
    }

    #[test]
    fn a_condition_reads_the_instances_of_its_subject_only() {
        let labels = |pairs: &[(&str, &str)]| -> Labels {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let mut w = Wanted::default();
        w.add(
            "docker.log_lines_per_minute",
            &labels(&[("role", "backend"), ("pattern", "error")]),
        );
        w.add("docker.memory_ratio", &labels(&[("container", "db")]));
        w.add("docker.running", &labels(&[]));
        assert!(w.wants("docker.log_lines_per_minute", "role", "backend"));
        assert!(!w.wants("docker.log_lines_per_minute", "role", "redis"));
        assert!(
            !w.wants("docker.log_lines_per_minute", "container", "backend"),
            "a role condition reads no container instance"
        );
        assert!(w.wants("docker.memory_ratio", "container", "db"));
        assert!(!w.wants("docker.memory_ratio", "role", "db"));
        assert!(
            w.wants("docker.running", "container", "x") && w.wants("docker.running", "role", "y")
        );
        assert!(!w.wants("docker.memory_bytes", "role", "backend"));
    }

    #[test]
    fn catalogue_names_are_unique_and_prefixed_by_their_probe() {
        let mut names: Vec<_> = CATALOGUE.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CATALOGUE.len());
        for s in CATALOGUE {
            assert!(s.name.starts_with(&format!("{}.", s.probe)), "{}", s.name);
        }
    }
}
