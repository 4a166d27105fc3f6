//! The vocabulary between probes and runbook: [`CATALOGUE`], every observation name a probe
//! produces, with its value's kind, its labels and a line of help; [`spec_of`] and [`intern`] to look
//! a name up; and the [`SUBJECT_LABELS`] that say what an instance is about.
//!
//! It is data: it does not know how a probe reads a value, what any rule compares it with, or which
//! names the runbook uses (the runbook's loader refuses a name that is not here).

use serde::Serialize;

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

#[cfg(test)]
mod tests {
    use super::*;

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
