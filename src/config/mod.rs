//! Configuration: embedded defaults, then each `--config FILE` in order, then `HARVEN_WATCHDOG__*`
//! environment variables; decoded into [`raw`] types, then validated into the typed [`Config`].
//!
//! Loading never stops at the first problem it can get past: every layer is decoded on its own (so an
//! unknown key or a wrong type is reported with the file or variable that holds it), and validation checks
//! every key of the merged result. [`ConfigError`] lists them all; `check-config` prints that list.

pub mod limits;
mod net;
mod raw;
mod types;
mod validate;
pub mod window;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use ::config::{ConfigError as LayerError, FileFormat, Map, Source, Value, ValueKind};

pub use limits::{Bound, MAX_DELAY, MAX_KEPT, MAX_WINDOW, MAX_WINDOW_AHEAD, MIN_TOKEN_CHARS};
pub use net::IpNet;
pub use types::{
    Config, CoolifyConfig, DockerConfig, EmailTransport, EscalationConfig, HaConfig,
    HeartbeatConfig, LevelConfig, Locale, LogPattern, MaintenanceWindow, NamePattern, OpenaiConfig,
    OpenaiUsageConfig, PgTls, PostgresConfig, PrometheusConfig, RedisConfig, RoleConfig,
    RunbookConfig, SentryConfig, ServerConfig, ServerLimits, SmtpConfig, SmtpServer,
    StatusPageConfig, StoreConfig, SupabaseConfig, TlsMode,
};

/// The shipped defaults, compiled in from `config/default.toml`.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// Environment variables `HARVEN_WATCHDOG__SECTION__KEY` override configuration keys.
pub const ENV_PREFIX: &str = "HARVEN_WATCHDOG__";

/// Keys that take a list; in the environment their items are separated by commas. A `*` stands for
/// any one level (a role's name).
const LIST_KEYS: &[&str] = &[
    "docker.containers",
    "docker.env_vars",
    "docker.roles.*.names",
    "docker.roles.*.patterns",
    "redis.key_patterns",
    "prometheus.exclude_handlers",
    "escalation.l1.to",
    "escalation.l2.to",
    "escalation.l3.to",
    "escalation.l1_only_sections",
    "server.trusted_proxies",
];

/// The origin string that marks a value set by an environment variable, followed by its name.
const ENV_ORIGIN: &str = "environment variable ";

/// Where a configuration value came from; every [`Problem`] names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The embedded `config/default.toml`.
    Defaults,
    /// A file given with `--config`.
    File(PathBuf),
    /// One environment variable, by name.
    Env(String),
}

impl Origin {
    fn from_value_origin(origin: Option<&str>) -> Self {
        match origin {
            None => Self::Defaults,
            Some(o) => match o.strip_prefix(ENV_ORIGIN) {
                Some(var) => Self::Env(var.to_owned()),
                None => Self::File(PathBuf::from(o)),
            },
        }
    }

    /// The directory a relative `*_file` path set here is read from: the config file's own directory,
    /// else the working directory.
    fn base_dir(&self) -> &Path {
        match self {
            Self::File(p) => p.parent().unwrap_or(Path::new("")),
            Self::Defaults | Self::Env(_) => Path::new(""),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Defaults => f.write_str("embedded defaults"),
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Env(var) => write!(f, "environment variable {var}"),
        }
    }
}

/// One thing wrong with the configuration: where, which key, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub origin: Origin,
    /// The dotted key (`smtp.tls`), or empty when the problem is with the layer as a whole.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.origin, self.message)
        } else {
            write!(f, "{}: {}: {}", self.origin, self.key, self.message)
        }
    }
}

/// Every problem found while loading; never empty.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "invalid configuration ({n} problem{})",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// Where the configuration comes from: the `--config` files and the environment. The daemon keeps
/// one so that a reload reads the same files and variables again (and the `*_file` secrets with them).
#[derive(Debug, Clone)]
pub struct ConfigSource {
    files: Vec<PathBuf>,
    /// `None`: the process environment as it is at each load; `Some`: these pairs (tests).
    env: Option<Vec<(String, String)>>,
}

impl ConfigSource {
    /// `files` in order, then the process environment.
    pub fn process(files: Vec<PathBuf>) -> Self {
        Self { files, env: None }
    }

    /// `files` in order, then `env` instead of the process environment.
    pub fn with_env(files: Vec<PathBuf>, env: Vec<(String, String)>) -> Self {
        Self {
            files,
            env: Some(env),
        }
    }

    /// Loads and validates the configuration as it is now.
    pub fn load(&self) -> Result<Config, ConfigError> {
        match &self.env {
            None => Config::load(&self.files),
            Some(env) => Config::load_with_env(&self.files, env.iter().cloned()),
        }
    }
}

impl Config {
    /// Loads the embedded defaults, `files` in order, then the process environment.
    pub fn load(files: &[PathBuf]) -> Result<Self, ConfigError> {
        Self::load_with_env(files, std::env::vars())
    }

    /// As [`Config::load`], with the environment given explicitly (tests pass their own).
    pub fn load_with_env(
        files: &[PathBuf],
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let env = EnvLayer::new(env);
        let mut layers: Vec<(Origin, Box<dyn Source + Send + Sync>)> = vec![(
            Origin::Defaults,
            Box::new(::config::File::from_str(DEFAULT_TOML, FileFormat::Toml)),
        )];
        for path in files {
            layers.push((
                Origin::File(path.clone()),
                Box::new(::config::File::from(path.as_path()).format(FileFormat::Toml)),
            ));
        }

        // Each layer alone (each variable alone): its unknown keys, wrong types and syntax errors,
        // named with the file or variable that holds them.
        let mut problems = Vec::new();
        let singles = env.vars.iter().map(|(var, value)| {
            let layer = EnvLayer {
                vars: BTreeMap::from([(var.clone(), value.clone())]),
            };
            (
                Origin::Env(var.clone()),
                Box::new(layer) as Box<dyn Source + Send + Sync>,
            )
        });
        for (origin, layer) in layers
            .iter()
            .map(|(o, l)| (o.clone(), l.clone_into_box()))
            .chain(singles)
        {
            let decoded = ::config::Config::builder()
                .add_source(vec![layer])
                .build()
                .and_then(|c| c.try_deserialize::<raw::RawConfig>());
            if let Err(e) = decoded {
                problems.push(layer_problem(origin, &e));
            }
        }
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }

        let mut builder = ::config::Config::builder();
        for (_, layer) in layers {
            builder = builder.add_source(vec![layer]);
        }
        let merged = builder.add_source(env).build().map_err(|e| ConfigError {
            problems: vec![layer_problem(Origin::Defaults, &e)],
        })?;
        let raw: raw::RawConfig = merged.clone().try_deserialize().map_err(|e| ConfigError {
            problems: vec![layer_problem(Origin::Defaults, &e)],
        })?;
        // The config crate records a file's path in its own spelling; name it as the user gave it.
        let canonical: Vec<_> = files
            .iter()
            .map(|f| (std::fs::canonicalize(f).ok(), f))
            .collect();
        let origin_of = |key: &str| match Origin::from_value_origin(origin_in(&merged.cache, key)) {
            Origin::File(p) => {
                let c = std::fs::canonicalize(&p).ok();
                let given = canonical
                    .iter()
                    .find(|(cf, f)| *f == &p || (c.is_some() && *cf == c));
                Origin::File(given.map_or(p, |(_, f)| (*f).clone()))
            }
            other => other,
        };
        validate::validate(raw, &origin_of).map_err(|problems| ConfigError { problems })
    }
}

/// The origin recorded on the merged value at a dotted `key`, if the key is set.
fn origin_in<'a>(root: &'a Value, key: &str) -> Option<&'a str> {
    let mut value = root;
    for part in key.split('.') {
        // `name[3]`: a table entry, then an array element.
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        match &value.kind {
            ValueKind::Table(table) => value = table.get(name)?,
            _ => return None,
        }
        if let Some(i) = index {
            match &value.kind {
                ValueKind::Array(items) => value = items.get(i)?,
                _ => return None,
            }
        }
    }
    value.origin()
}

/// A decode error of one layer, led by the layer's name (the config crate's own trailing
/// "in <origin>" is dropped, since the layer is named already).
fn layer_problem(origin: Origin, e: &LayerError) -> Problem {
    let mut message = without_source_lines(&e.to_string());
    let suffix = match &origin {
        Origin::Env(var) => format!(" in {ENV_ORIGIN}{var}"),
        Origin::File(path) => format!(" in {}", path.display()),
        Origin::Defaults => String::new(),
    };
    if let Some(i) = message.find(&suffix).filter(|_| !suffix.is_empty()) {
        message.replace_range(i..i + suffix.len(), "");
    }
    Problem {
        origin,
        key: String::new(),
        message,
    }
}

/// A TOML syntax error without the source line it quotes (and its `^^^` marker): that line may hold a
/// secret (`password = s3cr3t`, unquoted). The line and column stay in the message.
fn without_source_lines(message: &str) -> String {
    let quoted = |line: &str| {
        let line = line.trim_start();
        line.starts_with('|')
            || line.starts_with('^')
            || line
                .split_once(" |")
                .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    message
        .lines()
        .filter(|l| !quoted(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `HARVEN_WATCHDOG__*` variables as a configuration layer, each value tagged with its variable's
/// name. Values stay strings (numbers are parsed when decoded, so a password of digits keeps its
/// leading zeros); the list keys split on commas.
#[derive(Debug, Clone)]
struct EnvLayer {
    vars: BTreeMap<String, String>,
}

impl EnvLayer {
    fn new(env: impl IntoIterator<Item = (String, String)>) -> Self {
        let vars = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.len() > ENV_PREFIX.len())
            .collect();
        Self { vars }
    }
}

/// The dotted key an environment variable sets: `HARVEN_WATCHDOG__SMTP__TLS` → `smtp.tls`.
pub fn env_key(var: &str) -> Option<String> {
    var.strip_prefix(ENV_PREFIX).map(|rest| {
        rest.split("__")
            .collect::<Vec<_>>()
            .join(".")
            .to_lowercase()
    })
}

/// The environment variable that sets a dotted key: `smtp.tls` → `HARVEN_WATCHDOG__SMTP__TLS`.
pub fn env_var(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "__").to_uppercase())
}

/// True when the dotted `key` takes a list (one of [`LIST_KEYS`], `*` matching any one level).
fn is_list_key(key: &str) -> bool {
    LIST_KEYS.iter().any(|pattern| {
        let (mut want, mut have) = (pattern.split('.'), key.split('.'));
        loop {
            match (want.next(), have.next()) {
                (None, None) => return true,
                (Some(w), Some(h)) if w == "*" || w == h => {}
                _ => return false,
            }
        }
    })
}

impl Source for EnvLayer {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, LayerError> {
        let mut map = Map::new();
        for (var, value) in &self.vars {
            let Some(key) = env_key(var) else { continue };
            let origin = format!("{ENV_ORIGIN}{var}");
            let kind = if is_list_key(&key) {
                ValueKind::Array(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| Value::new(Some(&origin), s))
                        .collect(),
                )
            } else {
                ValueKind::String(value.clone())
            };
            map.insert(key, Value::new(Some(&origin), kind));
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn env_names_map_both_ways() {
        assert_eq!(
            env_key("HARVEN_WATCHDOG__SMTP__TLS").as_deref(),
            Some("smtp.tls")
        );
        assert_eq!(
            env_key("HARVEN_WATCHDOG__STATUS__OPENAI__URL").as_deref(),
            Some("status.openai.url")
        );
        assert_eq!(env_key("OTHER__SMTP"), None);
        assert_eq!(
            env_var("escalation.l2.after"),
            "HARVEN_WATCHDOG__ESCALATION__L2__AFTER"
        );
    }

    #[test]
    fn list_keys_match_any_role() {
        assert!(is_list_key("docker.containers"));
        assert!(is_list_key("docker.roles.backend.names"));
        assert!(is_list_key("docker.roles.worker.patterns"));
        assert!(!is_list_key("docker.roles.backend.compose_service"));
        assert!(!is_list_key("docker.roles.names"));
        assert!(!is_list_key("docker.roles.a.b.names"));
    }

    #[test]
    fn embedded_defaults_load_alone() {
        let config = Config::load_with_env(&[], Vec::new()).expect("defaults are valid");
        assert_eq!(config.server.listen.port(), 9464);
        assert!(matches!(
            config.smtp.transport,
            EmailTransport::Files { .. }
        ));
    }

    /// Real configuration files: the defaults, the shipped examples and the valid fixtures.
    const REAL: &[&str] = &[
        DEFAULT_TOML,
        include_str!("../../config/examples/production.toml"),
        include_str!("../../config/examples/fast-local.toml"),
        include_str!("../../tests/fixtures/config/valid/maintenance-window.toml"),
        include_str!("../../tests/fixtures/config/valid/smtps-and-extra-status-page.toml"),
        include_str!("../../tests/fixtures/config/valid/tighter-escalation.toml"),
        include_str!("../../tests/fixtures/config/valid/compose-roles.toml"),
    ];

    /// Every leaf key of the defaults, dotted (`smtp.tls`), and the secret keys they leave unset.
    fn keys() -> Vec<String> {
        fn walk(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
            for (k, v) in table {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match v {
                    toml::Value::Table(t) => walk(&key, t, out),
                    _ => out.push(key),
                }
            }
        }
        let mut out = Vec::new();
        walk(
            "",
            &DEFAULT_TOML.parse().expect("defaults are TOML"),
            &mut out,
        );
        out.extend(
            [
                "smtp.host",
                "smtp.username",
                "smtp.password",
                "smtp.password_file",
                "server.api_token",
                "server.api_token_file",
                "supabase.url",
                "supabase.api_key",
                "supabase.api_key_file",
                "openai.api_key",
                "openai.api_key_file",
                "openai.admin_key",
                "openai.admin_key_file",
                "openai.monthly_budget",
                "openai.organization",
                "openai.project",
                "coolify.url",
                "coolify.token",
                "coolify.token_file",
                "coolify.application",
                "sentry.token",
                "sentry.token_file",
                "sentry.organization",
                "sentry.projects",
                "redis.password",
                "store.url",
                "store.password",
                "store.password_file",
                "runbook.path",
                "heartbeat.url",
            ]
            .map(str::to_owned),
        );
        out
    }

    #[test]
    fn a_syntax_error_names_its_line_without_quoting_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("layer.toml");
        std::fs::write(&path, "[smtp]\npassword = s3cr3t-M4RK\n").expect("write");
        let e = Config::load_with_env(std::slice::from_ref(&path), Vec::new()).unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains("line 2, column 12"), "{shown}");
        assert!(shown.contains("string values must be quoted"), "{shown}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    /// A mark no configuration holds by chance: found in an error or a `Debug` output, it leaked.
    const MARK: &str = "s3cr3t-M4RK";

    proptest! {
        #![proptest_config(crate::mutate::cases(64))]

        /// A secret, valid or not and whatever else is set, is never quoted by a refusal, nor shown by
        /// a loaded configuration's `Debug`.
        #[test]
        fn prop_no_secret_value_is_quoted(
            (key, value) in prop_oneof![
                prop::sample::select(vec!["smtp.password", "server.api_token", "supabase.api_key",
                    "redis.password", "openai.api_key", "openai.admin_key", "sentry.token"])
                    .prop_flat_map(|k| (Just(k), crate::mutate::garbage().prop_map(|g| format!("{MARK}{g}")))),
                prop::sample::select(vec!["smtp.password", "server.api_token", "supabase.api_key",
                    "openai.api_key", "openai.admin_key", "sentry.token"])
                    .prop_flat_map(|k| (Just(k), crate::mutate::garbage().prop_map(|g| format!("\"{MARK}{g}")))),
                crate::mutate::garbage().prop_map(|g| ("redis.url", format!("redis://:{MARK}@{g}"))),
                crate::mutate::garbage().prop_map(|g| ("redis.url", format!("redis://u:{MARK}{g}@localhost"))),
                crate::mutate::garbage().prop_map(|g| ("heartbeat.url", format!("https://hc.example/{MARK}{g}"))),
                crate::mutate::garbage().prop_map(|g| ("heartbeat.url", format!("{g}{MARK}"))),
            ],
            also in prop::sample::select(vec![None, Some(("smtp.username", "u")), Some(("smtp.host", "")),
                Some(("supabase.url", "http://127.0.0.1:1")), Some(("redis.url", "http://x"))]),
            in_file in any::<bool>(),
        ) {
            // In a file the value is written bare: quoted, unquoted or half-quoted, as typed.
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("layer.toml");
            let (section, name) = key.rsplit_once('.').expect("a dotted key");
            std::fs::write(&path, format!("[{section}]\n{name} = {value}\n")).expect("write");
            let files = if in_file { vec![path] } else { Vec::new() };
            let mut env = Vec::new();
            if !in_file {
                env.push((env_var(key), value));
            }
            env.extend(also.map(|(k, v)| (env_var(k), v.to_owned())));
            match Config::load_with_env(&files, env) {
                Ok(config) => {
                    let shown = format!("{config:?}");
                    prop_assert!(!shown.contains(MARK), "{}", shown);
                }
                Err(e) => prop_assert!(!e.to_string().contains(MARK), "{}", e),
            }
        }

        /// A `--config` file of any text is loaded or refused, and every problem names the file or a
        /// key (never an anonymous "invalid configuration").
        #[test]
        fn prop_any_file_is_loaded_or_refused_by_name(
            text in prop_oneof![crate::mutate::near_any(REAL), crate::mutate::garbage()],
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("layer.toml");
            std::fs::write(&path, &text).expect("write");
            if let Err(e) = Config::load_with_env(std::slice::from_ref(&path), Vec::new()) {
                prop_assert!(!e.problems.is_empty());
                for p in &e.problems {
                    prop_assert!(!p.message.is_empty(), "{e}");
                    prop_assert!(p.origin == Origin::File(path.clone()) || !p.key.is_empty(), "{e}");
                }
            }
        }

        /// Any value in any `HARVEN_WATCHDOG__*` variable is taken or refused naming that variable or
        /// its key.
        #[test]
        fn prop_any_env_value_is_taken_or_refused_by_name(
            key in prop::sample::select(keys()),
            value in prop_oneof![
                crate::mutate::garbage(),
                prop::sample::select(vec!["", "0", "-1", "1e999", "18446744073709551616", "nan", "0s",
                    "99999999999999999999h", "true", "[1]", "a,b,,c", "http://", "redis://:@", "\u{0}"])
                    .prop_map(str::to_owned),
            ],
        ) {
            let var = env_var(&key);
            if let Err(e) = Config::load_with_env(&[], [(var.clone(), value)]) {
                prop_assert!(
                    e.problems.iter().any(|p| p.origin == Origin::Env(var.clone()) || p.key == key),
                    "{e}"
                );
            }
        }
    }
}
