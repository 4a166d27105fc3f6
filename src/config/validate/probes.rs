//! Checks the sections of the sources the probes read: `[prometheus]`, `[status.*]`, `[supabase]`,
//! `[openai]`, `[sentry]`, `[redis]` and `[docker]` with its `[docker.roles.*]`. Knows nothing of escalation or email.
//!
//! Each function checks every key of its section before it gives up (the `?`s come last), so one
//! round of `check-config` names every problem. What a check cannot know is left to the probe at
//! run time: whether the URL answers, whether a metric or a container exists (those are blind
//! spots and failing sources, not configuration errors).

use super::{Checker, HTTP};
use crate::config::Origin;
use crate::config::{
    CoolifyConfig, DockerConfig, LogPattern, NamePattern, OpenaiConfig, OpenaiUsageConfig,
    PrometheusConfig, RedisConfig, RoleConfig, SentryConfig, StatusPageConfig, SupabaseConfig,
};

/// `[prometheus]`: where it is, how often and how long to ask, the windows of its readings, and
/// the metric names of the backend's instrumentation.
pub(super) fn check_prometheus(
    c: &mut Checker<'_>,
    raw: crate::config::raw::RawPrometheus,
) -> Option<PrometheusConfig> {
    let url = c.url("prometheus.url", &raw.url, HTTP);
    let times = c.interval_timeout("prometheus", &raw.interval, &raw.timeout);
    // No job matches an empty name: `backend_up` would be a blind spot for ever.
    if raw.backend_job.trim().is_empty() {
        c.problem(
            "prometheus.backend_job",
            "must name the backend's scrape job",
        );
    }
    let window = c.duration("prometheus.window", &raw.window);
    let short_window = c.duration("prometheus.short_window", &raw.short_window);
    let fast_interval = c.duration("prometheus.fast_interval", &raw.fast_interval);
    let baseline_window = c.duration("prometheus.baseline_window", &raw.baseline_window);
    // Unlike the Docker and Redis windows, these need not span a poll: they are PromQL ranges,
    // counted by Prometheus over its own history at every query, not held by the probe. The short
    // window is the severe rules' quick look; longer than the main one it would be neither.
    if let (Some(w), Some(s)) = (window, short_window)
        && s > w
    {
        c.problem(
            "prometheus.short_window",
            format!(
                "({}) must not be longer than prometheus.window ({})",
                humantime::format_duration(s),
                humantime::format_duration(w)
            ),
        );
    }
    for (key, name) in [
        ("requests_metric", &raw.requests_metric),
        ("latency_histogram", &raw.latency_histogram),
        ("latency_highr_histogram", &raw.latency_highr_histogram),
    ] {
        if !is_metric_name(name) {
            c.problem(
                &format!("prometheus.{key}"),
                format!("{name:?} is not a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)"),
            );
        }
    }
    // An empty entry is a stray comma or quote, not a handler: said, rather than filtered on.
    for (i, handler) in raw.exclude_handlers.iter().enumerate() {
        if handler.trim().is_empty() {
            c.problem(
                "prometheus.exclude_handlers",
                format!(
                    "entry {} is empty; name a handler such as \"/metrics\"",
                    i + 1
                ),
            );
        }
    }
    // A fast interval longer than the interval changes nothing: the shorter of the two applies.
    let (interval, timeout) = times?;
    Some(PrometheusConfig {
        url: url?,
        interval,
        timeout,
        backend_job: raw.backend_job,
        window: window?,
        short_window: short_window?,
        fast_interval: fast_interval?,
        baseline_window: baseline_window?,
        requests_metric: raw.requests_metric,
        latency_histogram: raw.latency_histogram,
        latency_highr_histogram: raw.latency_highr_histogram,
        exclude_handlers: raw.exclude_handlers,
    })
}

/// A valid Prometheus metric name. Checked because the names are pasted into PromQL: anything
/// else would be a refused query at every poll, or would change what the query means.
fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[status.<name>]`: one page per table, its name the probe's source (`status.openai`). A bad page
/// is left out, its problem failing the configuration.
pub(super) fn check_status_pages(
    c: &mut Checker<'_>,
    raw: &std::collections::BTreeMap<String, crate::config::raw::RawStatusPage>,
) -> Vec<StatusPageConfig> {
    let mut pages = Vec::new();
    for (name, page) in raw {
        let section = format!("status.{name}");
        let url = c.url(&format!("{section}.url"), &page.url, HTTP);
        // A page the user adds is a new table the embedded defaults say nothing about: it gets
        // the shipped pages' times.
        let times = c.interval_timeout(
            &section,
            page.interval.as_deref().unwrap_or("60s"),
            page.timeout.as_deref().unwrap_or("10s"),
        );
        if let (Some(url), Some((interval, timeout))) = (url, times) {
            pages.push(StatusPageConfig {
                name: name.clone(),
                url,
                interval,
                timeout,
            });
        }
    }
    pages
}

/// `Some(None)`: valid, and the probe is off (no `supabase.url`).
pub(super) fn check_supabase(
    c: &mut Checker<'_>,
    raw: crate::config::raw::RawSupabase,
) -> Option<Option<SupabaseConfig>> {
    // Checked even while the probe is off, so a bad value waits for no one to turn it on.
    let times = c.interval_timeout("supabase", &raw.interval, &raw.timeout);
    let key = c.secret("supabase.api_key", raw.api_key, raw.api_key_file);
    let Some(text) = raw.url else {
        return Some(None);
    };
    let url = c.url("supabase.url", &text, HTTP);
    let api_key = match key? {
        Some(k) => k,
        None => {
            c.problem_because(
                "supabase.api_key",
                "supabase.url",
                "is required when supabase.url is set (or supabase.api_key_file)",
            );
            return None;
        }
    };
    let (interval, timeout) = times?;
    Some(Some(SupabaseConfig {
        url: url?,
        api_key,
        interval,
        timeout,
    }))
}

/// The largest monthly budget accepted, in USD: far above any team's, so a bigger one is a typo
/// (a budget in cents, or digits pasted twice).
const MAX_BUDGET_USD: f64 = 1e9;

/// `[openai]`. `Some(None)`: valid, and both OpenAI probes are off (no key set). The API probe is
/// on with `api_key`; the usage probe with `admin_key`, which needs `monthly_budget` (spend is
/// read as a share of it) and works the other way round too (a budget without the key reads
/// nothing). Keys must be HTTP header values; `organization` and `project` are OpenAI IDs.
pub(super) fn check_openai(
    c: &mut Checker<'_>,
    raw: crate::config::raw::RawOpenai,
) -> Option<Option<OpenaiConfig>> {
    // Checked even while both probes are off, so a bad value waits for no one to turn them on.
    let url = c.url("openai.url", &raw.url, HTTP);
    let times = c.interval_timeout("openai", &raw.interval, &raw.timeout);
    let usage_interval = c.duration("openai.usage_interval", &raw.usage_interval);
    if let (Some((_, timeout)), Some(usage)) = (times, usage_interval)
        && timeout >= usage
    {
        c.problem_between(
            "openai.timeout",
            "openai.usage_interval",
            format!(
                "timeout ({}) must be shorter than openai.usage_interval ({})",
                humantime::format_duration(timeout),
                humantime::format_duration(usage)
            ),
        );
    }
    let api_key = c.secret("openai.api_key", raw.api_key, raw.api_key_file);
    let admin_key = c.secret("openai.admin_key", raw.admin_key, raw.admin_key_file);
    // A key goes into `Authorization: Bearer …`: anything but printable ASCII could not be sent.
    // The message never quotes it.
    for (key, secret) in [
        ("openai.api_key", &api_key),
        ("openai.admin_key", &admin_key),
    ] {
        if let Some(Some(s)) = secret
            && !s.expose().bytes().all(|b| (0x21..0x7f).contains(&b))
        {
            c.problem(
                key,
                "is not a valid HTTP header value (printable ASCII without spaces only)",
            );
        }
    }
    let budget = match raw.monthly_budget {
        Some(b) if !(b.is_finite() && b > 0.0 && b <= MAX_BUDGET_USD) => {
            c.problem(
                "openai.monthly_budget",
                format!("({b}) must be a number of USD above 0 and at most {MAX_BUDGET_USD:e}"),
            );
            None
        }
        other => other,
    };
    for (key, value, prefix) in [
        ("openai.organization", &raw.organization, "org-"),
        ("openai.project", &raw.project, "proj_"),
    ] {
        if let Some(v) = value
            && !is_openai_id(v)
        {
            c.problem(
                key,
                format!(
                    "{:?} is not an OpenAI ID (like \"{prefix}abc123\": letters, digits, `-` and `_`, at most 64)",
                    v.chars().take(80).collect::<String>()
                ),
            );
        }
    }
    let (api_key, admin_key) = (api_key?, admin_key?);
    let usage = match (admin_key, raw.monthly_budget) {
        (Some(admin_key), Some(_)) => budget.map(|monthly_budget| (admin_key, monthly_budget)),
        (Some(_), None) => {
            c.problem_because(
                "openai.monthly_budget",
                "openai.admin_key",
                "is required when openai.admin_key is set (the spend is read as a share of it)",
            );
            None
        }
        (None, Some(_)) => {
            c.problem_because(
                "openai.admin_key",
                "openai.monthly_budget",
                "is required when openai.monthly_budget is set (or openai.admin_key_file): \
                 the costs API needs an admin key",
            );
            None
        }
        (None, None) => None,
    };
    if api_key.is_none() && usage.is_none() {
        // Off, unless a problem above is what left the usage part out.
        return if raw.monthly_budget.is_some() {
            None
        } else {
            Some(None)
        };
    }
    let (interval, timeout) = times?;
    let usage_interval = usage_interval?;
    if timeout >= usage_interval {
        return None;
    }
    Some(Some(OpenaiConfig {
        url: url?,
        api_key,
        usage: usage.map(|(admin_key, monthly_budget)| OpenaiUsageConfig {
            admin_key,
            monthly_budget,
            interval: usage_interval,
        }),
        organization: raw.organization,
        project: raw.project,
        interval,
        timeout,
    }))
}

/// An OpenAI organization or project ID as OpenAI writes them (`org-…`, `proj_…`): it goes into a
/// header and a query, so nothing else is let through.
fn is_openai_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

// ---- [sentry] (issue 16) ----------------------------------------------------------------------
/// Most projects one Sentry probe reads: each costs a release list and up to a few pages of issues
/// a poll, all within one timeout.
const MAX_SENTRY_PROJECTS: usize = 10;

/// `[sentry]`. `Some(None)`: valid, and the probe is off (no token). With a token, `organization`
/// and at least one of `projects` are needed (they make the API's paths, so each must be a slug);
/// `window` is whole hours within what Sentry's hourly issue stats over 24 h can compare with a
/// baseline, and at least `interval`.
pub(super) fn check_sentry(
    c: &mut Checker<'_>,
    raw: crate::config::raw::RawSentry,
) -> Option<Option<SentryConfig>> {
    // Checked even while the probe is off, so a bad value waits for no one to turn it on.
    let url = c.url("sentry.url", &raw.url, HTTP);
    let times = c.interval_timeout("sentry", &raw.interval, &raw.timeout);
    let window = c.duration("sentry.window", &raw.window);
    let window = window.and_then(|w| {
        let hours = w.as_secs() / 3600;
        if w.subsec_nanos() == 0 && w.as_secs() % 3600 == 0 && (1..=12).contains(&hours) {
            Some(w)
        } else {
            c.problem(
                "sentry.window",
                format!(
                    "({}) must be whole hours from 1h to 12h: Sentry's issue stats are hourly \
                     over 24 h, and the rest of the 24 h is the baseline",
                    humantime::format_duration(w)
                ),
            );
            None
        }
    });
    let window = match (window, times) {
        (Some(w), Some((interval, _))) => c.window_of("sentry", "window", w, interval),
        (w, _) => w,
    };
    let token = c.secret("sentry.token", raw.token, raw.token_file);
    if let Some(Some(t)) = &token
        && !t.expose().bytes().all(|b| (0x21..0x7f).contains(&b))
    {
        // It goes into `Authorization: Bearer …`; the message never quotes it.
        c.problem(
            "sentry.token",
            "is not a valid HTTP header value (printable ASCII without spaces only)",
        );
    }
    if let Some(org) = &raw.organization
        && !is_sentry_slug(org)
    {
        c.problem("sentry.organization", not_a_slug(org));
    }
    for p in &raw.projects {
        if !is_sentry_slug(p) {
            c.problem("sentry.projects", not_a_slug(p));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(dup) = raw.projects.iter().find(|p| !seen.insert(p.as_str())) {
        c.problem("sentry.projects", format!("names {dup:?} twice"));
    }
    if raw.projects.len() > MAX_SENTRY_PROJECTS {
        c.problem(
            "sentry.projects",
            format!(
                "names {} projects; at most {MAX_SENTRY_PROJECTS} are read",
                raw.projects.len()
            ),
        );
    }
    let Some(token) = token? else {
        return Some(None);
    };
    let organization = match raw.organization {
        Some(o) => o,
        None => {
            c.problem_because(
                "sentry.organization",
                "sentry.token",
                "is required when sentry.token is set (the organization's slug)",
            );
            return None;
        }
    };
    if raw.projects.is_empty() {
        c.problem_because(
            "sentry.projects",
            "sentry.token",
            "needs at least one project slug when sentry.token is set",
        );
        return None;
    }
    let (interval, timeout) = times?;
    Some(Some(SentryConfig {
        url: url?,
        token,
        organization,
        projects: raw.projects,
        interval,
        timeout,
        window: window?,
    }))
}

/// A Sentry slug (lowercase letters, digits, `-` and `_`, at most 50): it goes into a URL path.
fn is_sentry_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 50
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn not_a_slug(s: &str) -> String {
    format!(
        "{:?} is not a Sentry slug (lowercase letters, digits, `-` and `_`, at most 50)",
        s.chars().take(80).collect::<String>()
    )
}

// ---- [coolify] (issue 16) -------------------------------------------------------------------------

/// Most env var names `[coolify] env_names` may list: each is a reading and a metric-free label,
/// and a runbook checks a handful.
const MAX_ENV_NAMES: usize = 32;

/// `[coolify]`. `Some(None)`: valid, and the probe is off (`url` unset). With `url`, `token` (a
/// Coolify API token) and `application` (the app's UUID) are required. `env_names` are env var
/// names (`JWT_SECRET`), the only thing ever checked about the app's variables.
pub(super) fn check_coolify(
    c: &mut Checker<'_>,
    raw: crate::config::raw::RawCoolify,
) -> Option<Option<CoolifyConfig>> {
    // Checked even while the probe is off, so a bad value waits for no one to turn it on.
    let times = c.interval_timeout("coolify", &raw.interval, &raw.timeout);
    let token = c.secret("coolify.token", raw.token, raw.token_file);
    if let Some(Some(t)) = &token
        && !t.expose().bytes().all(|b| (0x21..0x7f).contains(&b))
    {
        // It goes into `Authorization: Bearer …`; the message never quotes it.
        c.problem(
            "coolify.token",
            "is not a valid HTTP header value (printable ASCII without spaces only)",
        );
    }
    let mut names_ok = true;
    if raw.env_names.is_empty() || raw.env_names.len() > MAX_ENV_NAMES {
        names_ok = false;
        c.problem(
            "coolify.env_names",
            format!("must list 1 to {MAX_ENV_NAMES} env var names"),
        );
    }
    for name in raw.env_names.iter().filter(|n| !is_env_name(n)) {
        names_ok = false;
        c.problem(
            "coolify.env_names",
            format!(
                "{:?} is not an env var name (letters, digits and `_`, not starting with a digit, at most 128)",
                name.chars().take(80).collect::<String>()
            ),
        );
    }
    if let Some(app) = &raw.application
        && !is_coolify_uuid(app)
    {
        c.problem(
            "coolify.application",
            format!(
                "{:?} is not a Coolify UUID (letters and digits, `-` or `_`, at most 64)",
                app.chars().take(80).collect::<String>()
            ),
        );
    }
    let Some(text) = raw.url else {
        return Some(None);
    };
    let url = c.url("coolify.url", &text, HTTP);
    let token = match token? {
        Some(t) => Some(t),
        None => {
            c.problem_because(
                "coolify.token",
                "coolify.url",
                "is required when coolify.url is set (or coolify.token_file): a Coolify API token",
            );
            None
        }
    };
    let application = match raw.application {
        Some(a) if is_coolify_uuid(&a) => Some(a),
        Some(_) => None,
        None => {
            c.problem_because(
                "coolify.application",
                "coolify.url",
                "is required when coolify.url is set: the application's UUID in Coolify",
            );
            None
        }
    };
    let (interval, timeout) = times?;
    if !names_ok {
        return None;
    }
    Some(Some(CoolifyConfig {
        url: url?,
        token: token?,
        application: application?,
        env_names: raw.env_names,
        interval,
        timeout,
    }))
}

/// An env var name as shells and Coolify take it: `[A-Za-z_][A-Za-z0-9_]*`, at most 128 bytes.
fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A Coolify resource UUID (a cuid2, or a UUID on older instances): safe in a URL path as is.
fn is_coolify_uuid(id: &str) -> bool {
    is_openai_id(id)
}

/// `[redis]`: the URL (TCP, TLS or a Unix socket), the password, the key patterns counted and the
/// SCAN bounds, and the window its counters' rates are over.
pub(super) fn check_redis(
    c: &mut Checker<'_>,
    raw: crate::config::raw::RawRedis,
) -> Option<RedisConfig> {
    // The redis crate's schemes: TCP, TLS (`rediss`) and a Unix socket (two spellings).
    let url = c.url(
        "redis.url",
        &raw.url,
        &["redis", "rediss", "redis+unix", "unix"],
    );
    let password = c.secret("redis.password", raw.password, raw.password_file);
    let times = c.interval_timeout("redis", &raw.interval, &raw.timeout);
    for p in &raw.key_patterns {
        if p.trim().is_empty() {
            c.problem("redis.key_patterns", "has an empty pattern");
        }
    }
    // Both positive: a `COUNT 0` SCAN is an error to Redis, and a cap of 0 would count nothing.
    let scan_count = c.check(
        "redis.scan_count",
        u32::try_from(raw.scan_count)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{} must be a positive count", raw.scan_count)),
    );
    let scan_cap = c.check(
        "redis.scan_cap",
        u64::try_from(raw.scan_cap)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{} must be a positive count", raw.scan_cap)),
    );
    let evidence_window = c.duration("redis.evidence_window", &raw.evidence_window);
    let (interval, timeout) = times?;
    let evidence_window = c.window_of("redis", "evidence_window", evidence_window?, interval);
    Some(RedisConfig {
        url: url?,
        password: password?,
        interval,
        timeout,
        key_patterns: raw.key_patterns,
        scan_count: scan_count?,
        scan_cap: scan_cap?,
        evidence_window: evidence_window?,
    })
}

/// `[docker]`: the Engine's address, the watched containers, the variables whose presence is read,
/// the log patterns, the evidence windows (each at least the poll interval) and the roles.
pub(super) fn check_docker(
    c: &mut Checker<'_>,
    raw: crate::config::raw::RawDocker,
) -> Option<DockerConfig> {
    let host = c.check("docker.host", {
        let h = &raw.host;
        // The transports the probe's client opens: a socket, or plain TCP/HTTP (no TLS client).
        if h.starts_with("unix:///") || h.starts_with("tcp://") || h.starts_with("http://") {
            Ok(h.clone())
        } else {
            Err(format!(
                "{h:?} must be unix:///path/to/docker.sock or tcp://host:port"
            ))
        }
    });
    let times = c.interval_timeout("docker", &raw.interval, &raw.timeout);
    let mut seen = std::collections::BTreeSet::new();
    for name in &raw.containers {
        if name.trim().is_empty() {
            c.problem("docker.containers", "has an empty container name");
        } else if !seen.insert(name.as_str()) {
            c.problem("docker.containers", format!("names {name:?} twice"));
        }
    }
    if raw
        .compose_project
        .as_deref()
        .is_some_and(|p| p.trim().is_empty())
    {
        c.problem("docker.compose_project", "is empty; leave it unset instead");
    }
    // The probe matches `NAME=` in the container's environment: a name holding `=` never matches.
    if raw.env_vars.iter().any(|v| v.is_empty() || v.contains('=')) {
        c.problem("docker.env_vars", "names must be non-empty and hold no `=`");
    }
    let deploy_window = c.duration("docker.deploy_window", &raw.deploy_window);
    let growth_window = c.duration("docker.memory_growth_window", &raw.memory_growth_window);
    let log_lines_cap = c.check(
        "docker.log_lines_cap",
        u32::try_from(raw.log_lines_cap)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{} must be a positive count", raw.log_lines_cap)),
    );
    // Unanchored: a log pattern finds its words anywhere in a line (unlike a role's name pattern).
    let mut log_patterns = Vec::new();
    for (name, text) in &raw.log_patterns {
        let key = format!("docker.log_patterns.{name}");
        match regex::Regex::new(text) {
            Ok(regex) => log_patterns.push(LogPattern {
                name: name.clone(),
                regex,
            }),
            Err(e) => c.problem(&key, format!("is not a regular expression: {e}")),
        }
    }
    let evidence_window = c.duration("docker.evidence_window", &raw.evidence_window);
    let log_rate_window = c.duration("docker.log_rate_window", &raw.log_rate_window);
    let roles = check_roles(c, raw.roles);
    // Past this point every check needs the interval; the ones above did not wait for it.
    let (interval, timeout) = times?;
    // Every window of the probe's evidence must span at least one poll: a shorter one would hold a
    // count for less than the time between two polls, and read nothing at all in between.
    let windows = [
        ("deploy_window", deploy_window),
        ("memory_growth_window", growth_window),
        ("evidence_window", evidence_window),
        ("log_rate_window", log_rate_window),
    ]
    .map(|(key, w)| w.and_then(|w| c.window_of("docker", key, w, interval)));
    let [
        deploy_window,
        growth_window,
        evidence_window,
        log_rate_window,
    ] = windows;
    Some(DockerConfig {
        host: host?,
        interval,
        timeout,
        containers: raw.containers,
        compose_project: raw.compose_project,
        env_vars: raw.env_vars,
        deploy_window: deploy_window?,
        memory_growth_window: growth_window?,
        evidence_window: evidence_window?,
        log_rate_window: log_rate_window?,
        log_lines_cap: log_lines_cap?,
        log_patterns,
        roles: roles?,
    })
}

/// `docker.roles.*`: each role's names, patterns and Compose service. `None` when any is wrong.
pub(super) fn check_roles(
    c: &mut Checker<'_>,
    raw: std::collections::BTreeMap<String, crate::config::raw::RawRole>,
) -> Option<Vec<RoleConfig>> {
    // Problems are counted, not `?`ed: every role is checked before the section gives up.
    let before = c.problems.len();
    // An empty string unsets a key an earlier layer set (the embedded defaults' `compose_service`).
    let set = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let mut roles = Vec::new();
    for (name, role) in raw {
        let key = format!("docker.roles.{name}");
        // A table records no origin: a problem with the role as a whole is blamed on the layer that
        // set one of its keys.
        let because = ["names", "patterns", "compose_service", "compose_project"]
            .map(|k| format!("{key}.{k}"))
            .into_iter()
            .find(|k| (c.origin_of)(k) != Origin::Defaults)
            .unwrap_or_else(|| key.clone());
        let spelled = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !spelled {
            c.problem_because(
                &key,
                &because,
                format!(
                    "{name:?} is not a role name: use lowercase letters, digits, `_` and `-` (as the \
                     runbook's `role` label and an environment variable spell it)"
                ),
            );
            continue;
        }
        let mut seen = std::collections::BTreeSet::new();
        for n in &role.names {
            if n.trim().is_empty() {
                c.problem(&format!("{key}.names"), "has an empty container name");
            } else if !seen.insert(n.as_str()) {
                c.problem(&format!("{key}.names"), format!("names {n:?} twice"));
            }
        }
        let mut patterns = Vec::new();
        // Anchored: a pattern matches a whole container name, so `backend` never takes in
        // `backend-worker`, and `backend-\d+` says what it means.
        for text in &role.patterns {
            match regex::Regex::new(&format!("^(?:{text})$")) {
                Ok(regex) => patterns.push(NamePattern {
                    text: text.clone(),
                    regex,
                }),
                Err(e) => c.problem(
                    &format!("{key}.patterns"),
                    format!("{text:?} is not a regular expression: {e}"),
                ),
            }
        }
        let compose_service = set(role.compose_service);
        let compose_project = set(role.compose_project);
        // A project only narrows a service (a role matches by both together); alone it would
        // match nothing, silently.
        if compose_project.is_some() && compose_service.is_none() {
            c.problem(
                &format!("{key}.compose_project"),
                "narrows a Compose service: set compose_service too",
            );
        }
        if role.names.is_empty() && role.patterns.is_empty() && compose_service.is_none() {
            c.problem_because(
                &key,
                &because,
                "matches no container: give names, patterns or compose_service",
            );
        }
        roles.push(RoleConfig {
            name,
            names: role.names,
            patterns,
            compose_service,
            compose_project,
        });
    }
    (c.problems.len() == before).then_some(roles)
}
