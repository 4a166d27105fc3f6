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
    /// A finite number; compared with `>`, `>=`, `<`, `<=`, `==`, `!=`.
    Number,
    /// Compared with `==` and `!=` only.
    Bool,
    /// A word from a small set; compared with `==`, `!=`, `in` and `not_in`.
    Text,
}

/// One entry of the catalogue: an observation name a probe produces.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spec {
    /// `probe.reading`: always prefixed by its probe's name (a test holds it), so a name says
    /// where to look.
    pub name: &'static str,
    /// The probe that produces it: a condition with nothing to read blames a failing source of
    /// that name, and a pending rule over it hurries that probe.
    pub probe: &'static str,
    /// What the runbook's loader checks a condition's operator and value against.
    pub kind: Kind,
    /// The labels its instances carry; a condition narrowing it by any other label is refused at
    /// load (it would select nothing, for ever).
    pub labels: &'static [&'static str],
    /// One line for the runbook's authors: what the reading is, and how a role folds it.
    pub help: &'static str,
}

/// A [`Spec`], positionally, so the table below stays one entry per five lines.
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
///
/// Order is by probe, for people; nothing reads it in order. A name, once a runbook uses it, is a
/// contract: renaming one breaks every runbook that names it (the loader refuses the old name).
pub const CATALOGUE: &[Spec] = &[
    // Prometheus (the backend's own metrics, prometheus-fastapi-instrumentator). The latency
    // readings carry the `histogram` they were read from, because which layout answered changes
    // what the number can show (the per-handler one stops at 1 s by default); `handler="*"` is the
    // label-less histogram, over all handlers. The ratios have no label: they are over all
    // handlers but `exclude_handlers`. The `_short` readings (and `request_rate`, so a surge
    // shows) are over `short_window`, for the severe rules that must fire within seconds.
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
    // Not a probe's: the doctor's verdict per rule, recorded into the evidence before each
    // evaluation so the runbook can page about its own blind rules like about any symptom.
    spec(
        "doctor.rule_blind",
        "doctor",
        Text,
        &["rule"],
        "a runbook rule that cannot fire on what the probes see, with why and the fix (empty: none)",
    ),
    // `obs` names the blind reading (`prometheus.*`: all of them), `reason` is a short stable word
    // (`no_series`, `no_job`, `buckets`): the doctor carries it into the `reason` label of
    // `harven_watchdog_rule_blind`, so it must stay a closed set.
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
    // Whether `auth_failure_ratio` is a count or an estimate: a cause's evidence can weigh it, and
    // a reader of the ratio can tell 401s from "4xx above usual".
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
    // No data until Prometheus holds 90 % of the baseline window: a baseline averaged over
    // mostly empty time would make any steady traffic look like a surge.
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
    // Status pages (statuspage.io v2), one instance per configured page (`page`, its name). The
    // three stand or fall together: they come from one answer.
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
    // Supabase project: one project, so no label. A status of 0 (no answer) keeps `_status` a
    // number a rule can compare, beside `_ok = false`.
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
    // ---- OpenAI (`[openai]`; both probes are off unless configured, see [`OPTIONAL_PROBES`]) ----
    // The API probe (`openai.api`): `GET /v1/models` with the team's key, OpenAI measured from our
    // side. An answer that is OpenAI's trouble (429, 5xx) is the reading; a key OpenAI refuses, an
    // unreachable host, a hang once connected (`timeout`, which "OpenAI lento" reads as the source's
    // failure) or a body that is no models list fails the source.
    spec(
        "openai.api.ok",
        "openai.api",
        Bool,
        &[],
        "GET /v1/models answered 2xx with a models list",
    ),
    spec(
        "openai.api.status",
        "openai.api",
        Number,
        &[],
        "HTTP status of GET /v1/models (0: no answer within `[openai] timeout`)",
    ),
    spec(
        "openai.api.latency_seconds",
        "openai.api",
        Number,
        &[],
        "time to answer GET /v1/models, body included (no data without an answer)",
    ),
    spec(
        "openai.api.error",
        "openai.api",
        Text,
        &[],
        "none | rate_limit | insufficient_quota | server_error: a 429 is told apart by OpenAI's error code (a hang fails the source as `timeout`)",
    ),
    // The usage probe (`openai.usage`): the organization's costs (`GET /v1/organization/costs`,
    // daily buckets, admin key) against `[openai] monthly_budget`.
    spec(
        "openai.usage.spend_usd",
        "openai.usage",
        Number,
        &[],
        "month-to-date cost in USD (calendar month, UTC)",
    ),
    spec(
        "openai.usage.budget_usd",
        "openai.usage",
        Number,
        &[],
        "`[openai] monthly_budget`, in USD",
    ),
    spec(
        "openai.usage.budget_share",
        "openai.usage",
        Number,
        &[],
        "month-to-date spend / monthly budget (1: the budget is spent)",
    ),
    spec(
        "openai.usage.burn_usd_per_hour",
        "openai.usage",
        Number,
        &[],
        "today's burn rate: the cost of the last 24 h (today's bucket and the matching share of yesterday's) / 24",
    ),
    spec(
        "openai.usage.hours_to_budget",
        "openai.usage",
        Number,
        &[],
        "hours until a month's budget is spent at today's burn rate, counting the reset at the next month (0: spent; 8760 without spend)",
    ),
    // ---- Sentry (`[sentry]`, issue 16; off unless configured, see [`OPTIONAL_PROBES`]) ----
    // The configured projects' unresolved issues (`GET …/issues/?query=is:unresolved&statsPeriod=24h`)
    // and latest release, summed over the projects; `probe::sentry` defines each reading.
    spec(
        "sentry.unresolved_issues",
        "sentry",
        Number,
        &[],
        "unresolved issues in the configured projects (the note says `at least` past the page cap)",
    ),
    spec(
        "sentry.events",
        "sentry",
        Number,
        &[],
        "events of the unresolved issues over `[sentry] window` and the current hour so far (hourly stats)",
    ),
    spec(
        "sentry.events_per_hour",
        "sentry",
        Number,
        &[],
        "`sentry.events` per hour of the window so far",
    ),
    spec(
        "sentry.events_baseline_per_hour",
        "sentry",
        Number,
        &[],
        "events per hour over the rest of the last 24 h (the baseline)",
    ),
    spec(
        "sentry.event_rate_ratio",
        "sentry",
        Number,
        &[],
        "events per hour now / baseline (a baseline under 1 an hour counts as 1): a spike reads well above 1",
    ),
    spec(
        "sentry.new_issues",
        "sentry",
        Number,
        &[],
        "unresolved issues first seen within `[sentry] window`, whatever the deploy",
    ),
    spec(
        "sentry.new_since_release",
        "sentry",
        Number,
        &[],
        "unresolved issues first seen after their project's latest release (no data without releases: the deploy is then `docker.recent_deploy`)",
    ),
    spec(
        "sentry.release_age_seconds",
        "sentry",
        Number,
        &[],
        "time since the latest release of the projects was deployed (the note names it; no data without releases)",
    ),
    spec(
        "sentry.top_new_issues",
        "sentry",
        Text,
        &[],
        "at most 5 issues first seen after the deploy (release, or window), most events first: short ID, title (a user's words, cut), events, users, level, link",
    ),
    // ---- Coolify (`[coolify]`, issue 16; off unless configured, see [`OPTIONAL_PROBES`]) ----
    // The application's deployments (newest first; previews of pull requests left out) and which
    // `[coolify] env_names` its configuration sets. Texts are peers' words cut to safe words (the
    // runbook pastes them into commands); no env value is ever read into a reading.
    spec(
        "coolify.application",
        "coolify",
        Text,
        &[],
        "`[coolify] application`: the application's UUID, for the runbook's commands",
    ),
    spec(
        "coolify.deploying",
        "coolify",
        Bool,
        &[],
        "a deployment of the application is queued or in progress",
    ),
    spec(
        "coolify.last_status",
        "coolify",
        Text,
        &[],
        "the newest deployment's status: queued | in_progress | finished | failed | cancelled-by-user",
    ),
    spec(
        "coolify.last_failed",
        "coolify",
        Bool,
        &[],
        "the newest deployment failed (`last_status` is `failed`): a yes/no a rule can read in any language",
    ),
    spec(
        "coolify.deploy_age_seconds",
        "coolify",
        Number,
        &[],
        "time since the current deployment (the newest finished one) finished (no data without one)",
    ),
    spec(
        "coolify.current_deployment",
        "coolify",
        Text,
        &[],
        "the current deployment's UUID",
    ),
    spec(
        "coolify.current_commit",
        "coolify",
        Text,
        &[],
        "the commit the current deployment built",
    ),
    spec(
        "coolify.previous_deployment",
        "coolify",
        Text,
        &[],
        "the UUID of the finished deployment before the current one: what a rollback goes back to",
    ),
    spec(
        "coolify.previous_commit",
        "coolify",
        Text,
        &[],
        "the commit the previous deployment built",
    ),
    spec(
        "coolify.env_set",
        "coolify",
        Bool,
        &["var"],
        "the env var name is set (not empty) in the application's configuration in Coolify; never its value",
    ),
    // Redis. Its two counters (evictions, rejected connections) are read as rates per minute over
    // `evidence_window`, never "since the previous poll", so a rule means the same at any interval.
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
    // Said beside the count, so a rule on `redis.keys` can tell "this many" from "at least this
    // many" (SCAN stops at `scan_cap` keys examined rather than block Redis).
    spec(
        "redis.keys_capped",
        "redis",
        Bool,
        &["pattern"],
        "true when the key count stopped at the scan cap",
    ),
    // Docker Engine, per watched container (`container`) and per role over its replicas (`role`).
    // An instance carries one of the two, never both ([`SUBJECT_LABELS`]); a role's instances
    // never name a replica in a label (a label that changed with the replicas would reset rule
    // timers), so the replicas are named in `docker.replicas` and `docker.worst_replica` texts.
    // Per container only: a role is never absent, it matches zero containers
    // (`docker.role_containers`).
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
    // The runbook reads `restarts`, not `restart_count`: Docker's count starts over on a recreated
    // container or a manual restart, and is over no stated window.
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
    // Alerts pushed by Alertmanager or Grafana (`POST /api/webhooks/alertmanager`, `crate::alerts`),
    // routed to sections by the runbook's `[alerts]`. Unknown while an alert of the section is
    // stale (its sender went silent) or, after a restart that restored its alert symptom, until the
    // alert had time to be re-sent.
    spec(
        "alerts.firing",
        "alerts",
        Number,
        &["section"],
        "alerts routed to the section that are firing now (the note names them)",
    ),
    spec(
        "alerts.critical",
        "alerts",
        Number,
        &["section"],
        "of those, the ones graded critical ([alerts] critical_label = critical_value: severity=\"critical\")",
    ),
    spec(
        "alerts.stale",
        "alerts",
        Number,
        &[],
        "firing alerts not re-sent within `[alerts] resend_within`: neither firing nor resolved",
    ),
    spec(
        "alerts.unmatched",
        "alerts",
        Number,
        &[],
        "firing alerts that reach no runbook section (listed at GET /api/alerts)",
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

/// The probes that are off unless configured (`[openai]`, `[sentry]`, `[coolify]`): while no source of one has ever reported,
/// a cause's evidence line over it is left out of the cause (neither weighed nor unknown), so a
/// runbook that reads them ranks causes as it did before the source existed. Once the source has
/// reported, its lines count like any other, and its failure makes them unknown.
pub const OPTIONAL_PROBES: &[&str] = &[
    "openai.api",
    "openai.usage",
    // [sentry] (issue 16)
    "sentry",
    // [coolify] (issue 16).
    "coolify",
];

/// True when `probe` (a [`Spec::probe`] or a source name) is one of the [`OPTIONAL_PROBES`].
pub fn is_optional_probe(probe: &str) -> bool {
    OPTIONAL_PROBES.contains(&probe)
}

/// True when the source named `source` is one of `probe`'s (a [`Spec::probe`]): the same name
/// (`openai.api`, `prometheus`), or one instance of it (`status.openai` of `status`). Whole
/// segments only: `openai.usage` is not `openai.api`'s, `statuses` is not `status`'s.
pub fn is_source_of(probe: &str, source: &str) -> bool {
    source
        .strip_prefix(probe)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// Labels that say what an observation is about: an instance carries at most one of them (a Docker
/// observation is about one `container`, or about a `role` over its replicas).
pub const SUBJECT_LABELS: &[&str] = &["container", "role"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_belongs_to_its_probe_by_whole_segments() {
        assert!(is_source_of("openai.api", "openai.api"));
        assert!(is_source_of("status", "status.openai"));
        assert!(is_source_of("prometheus", "prometheus"));
        assert!(!is_source_of("openai.api", "openai.usage"));
        assert!(!is_source_of("status", "statuses"));
        assert!(!is_source_of("openai.api", "openai"));
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
