//! Configuration: the shipped files load, every fixture under `tests/fixtures/config/invalid` is refused
//! with the key it expects named, and the layers win in the documented order.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use harven_watchdog::config::{Config, ConfigError, EmailTransport, Origin, TlsMode};
use harven_watchdog::runbook::Runbook;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

/// The text after `# expect: ` on the first line of a fixture.
fn expectation(file: &Path) -> String {
    let text = std::fs::read_to_string(file).expect("fixture");
    text.lines()
        .next()
        .and_then(|l| l.strip_prefix("# expect: "))
        .unwrap_or_else(|| panic!("{} lacks a `# expect:` first line", file.display()))
        .to_owned()
}

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

fn load(files: &[PathBuf], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::load_with_env(
        files,
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

#[test]
fn shipped_default_and_every_example_are_valid() {
    let mut files = vec![root().join("config/default.toml")];
    files.extend(toml_files(&root().join("config/examples")));
    files.extend(toml_files(&root().join("tests/fixtures/config/valid")));
    for file in files {
        if let Err(e) = Config::load_with_env(std::slice::from_ref(&file), no_env()) {
            panic!("{} should be valid:\n{e}", file.display());
        }
    }
}

/// Each invalid fixture starts with `# expect: TEXT`: the problem must name the file and contain TEXT
/// (a key such as `smtp.tls`, or the decoder's words for a key it does not know).
#[test]
fn every_invalid_fixture_is_refused_naming_its_key() {
    for file in toml_files(&root().join("tests/fixtures/config/invalid")) {
        let expect = &expectation(&file);
        let err = match Config::load_with_env(std::slice::from_ref(&file), no_env()) {
            Ok(_) => panic!("{} was accepted", file.display()),
            Err(e) => e,
        };
        let hit = err
            .problems
            .iter()
            .find(|p| p.to_string().contains(expect))
            .unwrap_or_else(|| {
                panic!("{}: no problem mentions {expect:?}:\n{err}", file.display())
            });
        assert_eq!(
            hit.origin,
            Origin::File(file.clone()),
            "{}: {hit}",
            file.display()
        );
    }
}

#[test]
fn problems_in_environment_variables_name_the_variable() {
    let cases = [
        (
            "HARVEN_WATCHDOG__SMTP__HOTS",
            "smtp.example.com",
            "unknown field `hots`",
        ),
        (
            "HARVEN_WATCHDOG__PROMETEUS__URL",
            "http://x:9090",
            "unknown field `prometeus`",
        ),
        ("HARVEN_WATCHDOG__SMTP__PORT", "many", "smtp.port"),
        ("HARVEN_WATCHDOG__SMTP__TLS", "starttl", "smtp.tls"),
        (
            "HARVEN_WATCHDOG__ESCALATION__L2__AFTER",
            "half an hour",
            "escalation.l2.after",
        ),
        (
            "HARVEN_WATCHDOG__PROMETHEUS__URL",
            "prometheus:9090",
            "prometheus.url",
        ),
        (
            "HARVEN_WATCHDOG__SMTP__PASSWORD_FILE",
            "/nonexistent/harven/pw",
            "smtp.password_file",
        ),
        (
            "HARVEN_WATCHDOG__SERVER__MAX_CONNECTIONS",
            "-5",
            "server.max_connections",
        ),
        (
            "HARVEN_WATCHDOG__SERVER__HEADER_READ_TIMEOUT",
            "500ms",
            "server.header_read_timeout",
        ),
    ];
    for (var, value, expect) in cases {
        let err = load(&[], &[(var, value)])
            .err()
            .unwrap_or_else(|| panic!("{var}={value} was accepted"));
        let hit = err
            .problems
            .iter()
            .find(|p| p.to_string().contains(expect))
            .unwrap_or_else(|| panic!("{var}={value}: no problem mentions {expect:?}:\n{err}"));
        assert_eq!(hit.origin, Origin::Env(var.to_string()), "{hit}");
        assert!(
            hit.to_string().contains(var),
            "the message names the variable: {hit}"
        );
    }
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("many.toml");
    std::fs::write(
        &file,
        "[prometheus]\nurl = \"nope\"\n[smtp]\ntls = \"ssl\"\n[escalation.l2]\nafter = \"soon\"\n[runbook]\nlocale = \"de\"\n",
    )
    .expect("write");
    let err = Config::load_with_env(&[file], no_env()).expect_err("four problems");
    let text = err.to_string();
    for key in [
        "prometheus.url",
        "smtp.tls",
        "escalation.l2.after",
        "runbook.locale",
    ] {
        assert!(text.contains(key), "{key} missing from:\n{text}");
    }
    assert_eq!(err.problems.len(), 4, "{text}");

    // Two broken layers: both are named, each with its own problem.
    let other = dir.path().join("other.toml");
    std::fs::write(&other, "[smtp]\nbogus = 1\n").expect("write");
    let err = load(
        std::slice::from_ref(&other),
        &[("HARVEN_WATCHDOG__REDIS__URLL", "redis://x")],
    )
    .expect_err("two layers");
    assert_eq!(err.problems.len(), 2, "{err}");
    assert_eq!(err.problems[0].origin, Origin::File(other));
    assert_eq!(
        err.problems[1].origin,
        Origin::Env("HARVEN_WATCHDOG__REDIS__URLL".into())
    );
}

#[test]
fn a_missing_config_file_is_named() {
    let missing = PathBuf::from("/nonexistent/harven/watchdog.toml");
    let err =
        Config::load_with_env(std::slice::from_ref(&missing), no_env()).expect_err("missing file");
    assert_eq!(err.problems[0].origin, Origin::File(missing));
    assert!(err.to_string().contains("not found"), "{err}");
}

#[test]
fn layers_apply_in_order_defaults_files_then_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = dir.path().join("first.toml");
    let second = dir.path().join("second.toml");
    std::fs::write(
        &first,
        "[prometheus]\ninterval = \"20s\"\ntimeout = \"3s\"\n[redis]\ninterval = \"40s\"\n",
    )
    .expect("write");
    std::fs::write(&second, "[prometheus]\ninterval = \"25s\"\n").expect("write");
    let files = [first, second];

    let config = load(&files, &[]).expect("valid");
    assert_eq!(
        config.prometheus.interval,
        Duration::from_secs(25),
        "the later file wins"
    );
    assert_eq!(
        config.prometheus.timeout,
        Duration::from_secs(3),
        "untouched keys keep the earlier file's value"
    );
    assert_eq!(config.redis.interval, Duration::from_secs(40));
    assert_eq!(
        config.docker.interval,
        Duration::from_secs(15),
        "the embedded default"
    );

    let config = load(
        &files,
        &[
            ("HARVEN_WATCHDOG__PROMETHEUS__INTERVAL", "45s"),
            ("HARVEN_WATCHDOG__DOCKER__CONTAINERS", "api, worker"),
            (
                "HARVEN_WATCHDOG__ESCALATION__L2__TO",
                "a@harven.ai,b@harven.ai",
            ),
            ("HARVEN_WATCHDOG__SMTP__PORT", "2525"),
            ("UNRELATED__SMTP__PORT", "1"),
        ],
    )
    .expect("valid");
    assert_eq!(
        config.prometheus.interval,
        Duration::from_secs(45),
        "the environment wins over files"
    );
    assert_eq!(config.docker.containers, ["api", "worker"]);
    let l2: Vec<String> = config
        .escalation
        .l2
        .to
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(l2, ["a@harven.ai", "b@harven.ai"]);
}

#[test]
fn a_secret_file_wins_over_an_inline_value_and_keeps_its_exact_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("secrets")).expect("mkdir");
    std::fs::write(dir.path().join("secrets/smtp"), "0042-from-file\n").expect("write");
    let file = dir.path().join("watchdog.toml");
    std::fs::write(
        &file,
        "[smtp]\nhost = \"smtp.example.com\"\ntls = \"tls\"\nusername = \"w\"\npassword = \"inline\"\n",
    )
    .expect("write");

    let inline = load(std::slice::from_ref(&file), &[]).expect("valid");
    assert_eq!(smtp_password(&inline), "inline");

    // From the environment, with an absolute path.
    let abs = dir.path().join("secrets/smtp");
    let env = [(
        "HARVEN_WATCHDOG__SMTP__PASSWORD_FILE",
        abs.to_str().expect("utf-8"),
    )];
    let from_file = load(std::slice::from_ref(&file), &env).expect("valid");
    assert_eq!(
        smtp_password(&from_file),
        "0042-from-file",
        "file wins; leading zeros and all"
    );

    // In the file itself, relative to the file's directory.
    std::fs::write(
        &file,
        "[smtp]\nhost = \"smtp.example.com\"\nusername = \"w\"\npassword = \"inline\"\npassword_file = \"secrets/smtp\"\n",
    )
    .expect("write");
    let relative = load(std::slice::from_ref(&file), &[]).expect("valid");
    assert_eq!(smtp_password(&relative), "0042-from-file");

    // The secret never shows in the config's Debug output.
    let debug = format!("{relative:?}");
    assert!(
        !debug.contains("0042-from-file") && !debug.contains("inline"),
        "{debug}"
    );
}

fn smtp_password(config: &Config) -> String {
    match &config.smtp.transport {
        EmailTransport::Smtp(s) => {
            assert_eq!(s.host, "smtp.example.com");
            let (_, pass) = s.credentials.as_ref().expect("credentials");
            pass.expose().to_owned()
        }
        EmailTransport::Files { .. } => panic!("expected SMTP"),
    }
}

#[test]
fn without_an_smtp_host_emails_go_to_files_in_the_data_directory() {
    let config = load(
        &[],
        &[("HARVEN_WATCHDOG__STORE__PATH", "/var/lib/hw/watchdog.db")],
    )
    .expect("valid");
    match config.smtp.transport {
        EmailTransport::Files { dir } => assert_eq!(dir, Path::new("/var/lib/hw/outbox")),
        EmailTransport::Smtp(_) => panic!("no host configured"),
    }
    let config = load(&[], &[("HARVEN_WATCHDOG__SMTP__HOST", "mail.harven.ai")]).expect("valid");
    match config.smtp.transport {
        EmailTransport::Smtp(s) => {
            assert_eq!(
                (s.port, s.tls),
                (587, TlsMode::Starttls),
                "the embedded defaults"
            );
            assert!(s.credentials.is_none());
        }
        EmailTransport::Files { .. } => panic!("host configured"),
    }
}

/// The `check-config` command: exit 0 on the shipped files, exit 1 listing every problem.
#[test]
fn check_config_command_exits_by_verdict() {
    let bin = env!("CARGO_BIN_EXE_harven-watchdog");
    let ok = Command::new(bin)
        .args([
            "--config",
            "config/examples/production.toml",
            "check-config",
        ])
        .current_dir(root())
        .env_remove("RUST_LOG")
        .output()
        .expect("run check-config");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(stdout.contains("SMTP smtp.example.com:587"), "{stdout}");
    assert!(
        stdout.contains(
            "docker role backend: names harven-backend; compose service backend of project harven"
        ),
        "what each role means: {stdout}"
    );

    let bad = Command::new(bin)
        .args([
            "--config",
            "tests/fixtures/config/invalid/bad-tls-mode.toml",
            "check-config",
        ])
        .current_dir(root())
        .env("HARVEN_WATCHDOG__REDIS__URL", "http://wrong")
        .output()
        .expect("run check-config");
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("bad-tls-mode.toml: smtp.tls: unknown TLS mode \"starttl\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("environment variable HARVEN_WATCHDOG__REDIS__URL: redis.url"),
        "{stderr}"
    );

    // A link lifetime whose expiry would be after the year 9999 (the pager once panicked rendering
    // it), and a guessable token: refused before anything runs, naming the key, never the token.
    let absurd = Command::new(bin)
        .arg("check-config")
        .current_dir(root())
        .env("HARVEN_WATCHDOG__ESCALATION__LINK_TTL", "100000y")
        .env(
            "HARVEN_WATCHDOG__SERVER__API_TOKEN",
            "secret-secret-secret-secret",
        )
        .output()
        .expect("run check-config");
    assert_eq!(absurd.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&absurd.stderr);
    assert!(
        stderr.contains(
            "HARVEN_WATCHDOG__ESCALATION__LINK_TTL: escalation.link_ttl: \"100000y\" is longer than 365 days"
        ),
        "{stderr}"
    );
    assert!(
        stderr
            .contains("HARVEN_WATCHDOG__SERVER__API_TOKEN: server.api_token: is too easy to guess"),
        "{stderr}"
    );
    assert!(stderr.contains("openssl rand -hex 32"), "{stderr}");
    assert!(!stderr.contains("secret-secret"), "{stderr}");
}

#[test]
fn a_recipient_may_be_one_address_or_a_comma_separated_string() {
    let config = load(
        &[root().join("tests/fixtures/config/valid/single-recipients.toml")],
        &[("HARVEN_WATCHDOG__ESCALATION__L3__TO", "cto@harven.ai")],
    )
    .expect("valid");
    let emails = |to: &[lettre::message::Mailbox]| -> Vec<String> {
        to.iter().map(|m| m.email.to_string()).collect()
    };
    assert_eq!(emails(&config.escalation.l1.to), ["devops@harven.ai"]);
    assert_eq!(
        emails(&config.escalation.l2.to),
        ["techlead@harven.ai", "oncall-lead@harven.ai"]
    );
    assert_eq!(emails(&config.escalation.l3.to), ["cto@harven.ai"]);
    assert_eq!(
        config.prometheus.exclude_handlers,
        ["/metrics", "/internal/ping"]
    );
    // A number is still refused, naming the key.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("w.toml");
    std::fs::write(&file, "[escalation.l1]\nto = 7\n").expect("write");
    let err = load(&[file], &[]).expect_err("a number is not an address");
    assert!(err.to_string().contains("escalation.l1.to"), "{err}");
}

/// Roles map to containers by name, pattern or Compose service; the defaults take `harven-backend`
/// and any Compose service `backend`, and the environment sets a role's lists like any list key.
#[test]
fn roles_come_from_the_defaults_files_and_the_environment() {
    let config = load(&[], &[]).expect("defaults");
    let role = |c: &Config, name: &str| {
        c.docker
            .roles
            .iter()
            .find(|r| r.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("no role {name}"))
    };
    let backend = role(&config, "backend");
    assert_eq!(backend.names, ["harven-backend"]);
    assert_eq!(backend.compose_service.as_deref(), Some("backend"));
    assert_eq!(backend.compose_project, None, "any project");
    assert_eq!(
        role(&config, "redis").compose_service.as_deref(),
        Some("redis")
    );
    assert!(config.docker.containers.is_empty());

    let file = root().join("tests/fixtures/config/valid/compose-roles.toml");
    let config = load(
        std::slice::from_ref(&file),
        &[
            (
                "HARVEN_WATCHDOG__DOCKER__ROLES__BACKEND__NAMES",
                "api-a, api-b",
            ),
            (
                "HARVEN_WATCHDOG__DOCKER__ROLES__QUEUE__PATTERNS",
                r"queue-\d+,jobs",
            ),
        ],
    )
    .expect("valid");
    let backend = role(&config, "backend");
    assert_eq!(backend.names, ["api-a", "api-b"], "the environment wins");
    assert_eq!(backend.compose_service.as_deref(), Some("api"));
    assert_eq!(backend.compose_project.as_deref(), Some("shop"));
    assert!(backend.patterns[0].regex.is_match("shop_api_2"));
    assert!(
        !backend.patterns[0].regex.is_match("old_shop_api_2"),
        "anchored"
    );
    assert_eq!(role(&config, "redis").compose_service, None, "turned off");
    let queue = role(&config, "queue");
    let texts: Vec<&str> = queue.patterns.iter().map(|p| p.text.as_str()).collect();
    assert_eq!(texts, [r"queue-\d+", "jobs"]);
    let names: Vec<&str> = config
        .docker
        .roles
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, ["backend", "queue", "redis", "worker"]);
}

/// Each fixture under `tests/fixtures/config/runbook-roles` is a valid configuration whose runbook
/// names a role it does not map: loading the runbook for it fails, naming the runbook condition and
/// the missing `docker.roles.<role>` key (its `# expect:` line). Mapped, the same runbook loads.
#[test]
fn a_runbook_role_the_configuration_does_not_map_is_a_problem() {
    for file in toml_files(&root().join("tests/fixtures/config/runbook-roles")) {
        let expect = &expectation(&file);
        let config =
            Config::load_with_env(std::slice::from_ref(&file), no_env()).unwrap_or_else(|e| {
                panic!("{}: the configuration itself is valid: {e}", file.display())
            });
        let err = match Runbook::load_for(&config) {
            Ok(_) => panic!("{}: the unmapped role was accepted", file.display()),
            Err(e) => e,
        };
        assert!(
            err.problems.iter().any(|p| p.to_string().contains(expect)),
            "{}: no problem mentions {expect:?}:\n{err}",
            file.display()
        );
        // Every condition on the role is named: the rule, its clear, an evidence and a context line.
        assert_eq!(err.problems.len(), 5, "{err}");
        assert!(
            err.problems.iter().all(
                |p| p.file.ends_with("runbooks/worker.toml") && p.key.ends_with(".labels.role")
            ),
            "{err}"
        );
    }
    let file = root().join("tests/fixtures/config/runbook-roles/unmapped-worker.toml");
    let mapped = load(
        std::slice::from_ref(&file),
        &[(
            "HARVEN_WATCHDOG__DOCKER__ROLES__WORKER__COMPOSE_SERVICE",
            "worker",
        )],
    )
    .expect("valid");
    if let Err(e) = Runbook::load_for(&mapped) {
        panic!("mapped, the runbook loads: {e}");
    }

    // check-config says so, and fails.
    let out = Command::new(env!("CARGO_BIN_EXE_harven-watchdog"))
        .args([
            "--config",
            "tests/fixtures/config/runbook-roles/unmapped-worker.toml",
            "check-config",
        ])
        .current_dir(root())
        .output()
        .expect("run check-config");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "runbooks/worker.toml: sections[1] (errors).causes[0].context[0].labels.role: role \"worker\" is not mapped"
        ),
        "{stderr}"
    );
}

/// Reads are open and `X-Forwarded-For` ignored unless configured; both can come from the
/// environment (the proxies as a comma-separated list).
#[test]
fn access_is_open_by_default_and_proxies_are_trusted_only_when_listed() {
    let c = load(&[], &[]).expect("defaults");
    assert!(c.server.public_reads);
    assert!(c.server.trusted_proxies.is_empty());
    let c = load(
        &[],
        &[
            ("HARVEN_WATCHDOG__SERVER__PUBLIC_READS", "false"),
            (
                "HARVEN_WATCHDOG__SERVER__TRUSTED_PROXIES",
                "10.0.0.2, fd00::/8",
            ),
            (
                "HARVEN_WATCHDOG__SERVER__API_TOKEN",
                "5b1e9d3a7c2f4e6a8b0d1c3e5f7a9b2d",
            ),
        ],
    )
    .expect("valid");
    assert!(!c.server.public_reads);
    let proxies: Vec<String> = c
        .server
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(proxies, ["10.0.0.2/32", "fd00::/8"]);
}

/// `[store] url` puts the store on PostgreSQL; its password comes from `password_file` only: one
/// in the URL is refused, naming `store.url`, without the message quoting it.
#[test]
fn a_postgres_store_takes_its_password_from_a_file_never_from_the_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("db_password");
    std::fs::write(&secret, "0042-db-secret\n").expect("write");
    let secret = secret.to_str().expect("utf-8");
    let config = load(
        &[],
        &[
            (
                "HARVEN_WATCHDOG__STORE__URL",
                "postgres://watchdog@db.internal:6543/harven",
            ),
            ("HARVEN_WATCHDOG__STORE__PASSWORD_FILE", secret),
            ("HARVEN_WATCHDOG__STORE__STATEMENT_TIMEOUT", "2s"),
        ],
    )
    .expect("valid");
    let pg = config.store.postgres.as_ref().expect("PostgreSQL");
    assert_eq!(
        (
            pg.host.as_str(),
            pg.port,
            pg.user.as_str(),
            pg.dbname.as_str()
        ),
        ("db.internal", 6543, "watchdog", "harven")
    );
    assert_eq!(
        pg.password.as_ref().map(|p| p.expose()),
        Some("0042-db-secret")
    );
    assert_eq!(pg.connect_timeout, Duration::from_secs(5), "the default");
    assert_eq!(pg.statement_timeout, Duration::from_secs(2));
    assert_eq!(pg.readers, 2);
    assert_eq!(pg.target(), "watchdog@db.internal:6543/harven");
    assert_eq!(
        config.store.describe(),
        "postgres watchdog@db.internal:6543/harven",
        "the start-up line names the database"
    );
    assert!(!format!("{config:?}").contains("0042-db-secret"));
    assert!(
        load(&[], &[]).expect("defaults").store.postgres.is_none(),
        "SQLite by default"
    );

    for (url, why) in [
        ("postgres://watchdog:hunter2-pw@db/harven", "password_file"),
        ("postgres://db.internal/harven", "no user"),
        ("postgres://watchdog@db.internal/", "one database"),
        ("mysql://watchdog@db.internal/harven", "scheme"),
    ] {
        let err = load(&[], &[("HARVEN_WATCHDOG__STORE__URL", url)])
            .err()
            .unwrap_or_else(|| panic!("{url} was accepted"));
        let text = err.to_string();
        assert!(
            text.contains("store.url") && text.contains(why),
            "{url}: {text}"
        );
        assert!(!text.contains("hunter2-pw"), "{text}");
    }
}

/// TLS to PostgreSQL is `sslmode` in `store.url`: `require`, `verify-ca` and `verify-full` all check
/// the certificate and the name (with `store.ca_file` beside the system's roots); modes that could
/// fall back to plaintext, other parameters, and a CA file without TLS are refused, naming the key.
#[test]
fn store_tls_is_sslmode_in_the_url_and_never_falls_back_to_plaintext() {
    use harven_watchdog::config::PgTls;

    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("db-ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let ca_text = ca.to_str().expect("utf-8");
    let tls_of = |url: &str, ca_file: Option<&str>| {
        let mut env = vec![("HARVEN_WATCHDOG__STORE__URL", url)];
        if let Some(f) = ca_file {
            env.push(("HARVEN_WATCHDOG__STORE__CA_FILE", f));
        }
        load(&[], &env).map(|c| c.store.postgres.expect("PostgreSQL").tls)
    };
    let base = "postgres://watchdog@db.internal/harven";
    assert_eq!(
        tls_of(base, None).expect("valid"),
        PgTls::Off,
        "plaintext by default"
    );
    assert_eq!(
        tls_of(&format!("{base}?sslmode=disable"), None).expect("valid"),
        PgTls::Off
    );
    for mode in ["require", "verify-ca", "verify-full"] {
        assert_eq!(
            tls_of(&format!("{base}?sslmode={mode}"), Some(ca_text)).expect("valid"),
            PgTls::Verify {
                ca_file: Some(ca.clone())
            },
            "{mode}"
        );
    }
    assert_eq!(
        tls_of(&format!("{base}?sslmode=verify-full"), None).expect("valid"),
        PgTls::Verify { ca_file: None },
        "the system's roots alone"
    );
    for (url, ca_file, key, why) in [
        (
            format!("{base}?sslmode=prefer"),
            None,
            "store.url",
            "never falls back",
        ),
        (
            format!("{base}?sslmode=allow"),
            None,
            "store.url",
            "never falls back",
        ),
        (
            format!("{base}?connect_timeout=3"),
            None,
            "store.url",
            "only parameter",
        ),
        (
            format!("{base}?sslmode=require&sslmode=disable"),
            None,
            "store.url",
            "once",
        ),
        (
            base.to_owned(),
            Some(ca_text),
            "store.ca_file",
            "sslmode=verify-full",
        ),
        (
            format!("{base}?sslmode=verify-full"),
            Some("/nonexistent/ca.pem"),
            "store.ca_file",
            "cannot read",
        ),
    ] {
        let err = tls_of(&url, ca_file)
            .err()
            .unwrap_or_else(|| panic!("{url} {ca_file:?} was accepted"));
        let text = err.to_string();
        assert!(text.contains(key) && text.contains(why), "{url}: {text}");
    }
}
