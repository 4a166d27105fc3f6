//! Secrets never leave the daemon: the whole incident path, run by the real binary at trace log
//! level with eight distinctive secret values (the SMTP password, the Supabase key, the API token, a
//! watched container's `JWT_SECRET`, the OpenAI API and admin keys, the Sentry token and the
//! Coolify token), and then every place the daemon writes or answers is searched
//! for them and their base64 forms: its logs, `/metrics`, every email (raw and decoded), the status
//! pages, the JSON API, error pages, the `diagnose` command and the files of its data directory.
//!
//! The symptom charts are among those surfaces: the pages read while the incident is open (inline
//! SVG, the status page's thumbnail) and the emails' inline PNG parts, decoded.
//!
//! The test first proves each secret was really in play, so it cannot pass vacuously: the SMTP server
//! accepted a login over STARTTLS, the Supabase server received the key, the OpenAI server received
//! both of its keys, the Sentry server the token, the Coolify server received its token (and served
//! `JWT_SECRET`'s value in the app's envs and build logs), the container had
//! `JWT_SECRET` (and logged it) and the daemon saw it there, and the API token acknowledged and
//! resolved the incident.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;

use crate::support::backend::{Scenario, SimBackend, StatusStyle};
use crate::support::coolify::{Dep as CoolifyDep, FakeCoolify};
use crate::support::daemon::{prometheus_env, quick_runbook};
use crate::support::docker::{ContainerOptions, TestContainer};
use crate::support::openai::FakeOpenai;
use crate::support::prometheus::PrometheusServer;
use crate::support::saas::{FakeStatusPage, FakeSupabase, PageScenario};
use crate::support::sentry::FakeSentry;
use crate::support::smtp::{ReceivedMail, SmtpServer, TestCa};
use crate::support::{free_port, terminate_child, wait_for_some};

const SMTP_USER: &str = "watchdog-leaktest";
const SMTP_PASSWORD: &str = "smtp-pw-Q7xZ3kLmN9vB";
const SUPABASE_KEY: &str = "supa-key-R4tY8uIo2PaS";
const API_TOKEN: &str = "api-tok-W2eR5tY7uIdF9kLm3Qx";
const JWT_SECRET: &str = "jwt-secret-H6jK8lZ1xCgH";
const OPENAI_API_KEY: &str = "sk-proj-openai-T3mB7wQ1zXc5";
const COOLIFY_TOKEN: &str = "9|coolify-tok-G5hJ2kL8mN4b";
/// The application the fake Coolify knows.
const COOLIFY_APP: &str = "k8cw4s0kgsw4gcw8o0ckc4os";
const OPENAI_ADMIN_KEY: &str = "sk-admin-openai-P8nV2rK6yHd4";
const SENTRY_TOKEN: &str = "sntrys_sentry-leak-K5wE9pQ3mTz7";

/// How long any one step of the path may take on a loaded machine.
const STEP: Duration = Duration::from_secs(120);

/// Every form in which a secret could slip out: as is, and inside any base64 or base64url text (the
/// SMTP `AUTH PLAIN` blob, a basic-auth header, an encoded token).
///
/// Base64 turns 3 bytes into 4 characters, so a secret inside a longer encoded string reads one of
/// three ways, by its offset modulo 3. For each, the needle is the encoding of the secret behind that
/// many filler bytes, without its first group (which holds filler) and its last (which holds whatever
/// follows the secret): characters that depend on the secret's bytes alone.
fn needles() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, secret) in [
        ("SMTP password", SMTP_PASSWORD),
        ("Supabase key", SUPABASE_KEY),
        ("API token", API_TOKEN),
        ("JWT_SECRET", JWT_SECRET),
        ("Coolify token", COOLIFY_TOKEN),
        ("OpenAI API key", OPENAI_API_KEY),
        ("OpenAI admin key", OPENAI_ADMIN_KEY),
        ("Sentry token", SENTRY_TOKEN),
    ] {
        out.push((name.to_owned(), secret.to_owned()));
        for offset in 0..3 {
            let bytes = [&b"\0\0"[..offset], secret.as_bytes()].concat();
            for (form, encoded) in [
                ("base64", STANDARD.encode(&bytes)),
                ("base64url", URL_SAFE_NO_PAD.encode(&bytes)),
            ] {
                let from = if offset == 0 { 0 } else { 4 };
                let to = encoded.trim_end_matches('=').len() / 4 * 4;
                out.push((
                    format!("{name} ({form} at offset {offset})"),
                    encoded[from..to].to_owned(),
                ));
            }
        }
    }
    out
}

/// Panics naming the surface and the secret when any needle is in `text`.
fn assert_clean(surface: &str, text: &str) {
    for (name, needle) in needles() {
        if let Some(at) = text.find(&needle) {
            let from = text[..at]
                .char_indices()
                .rev()
                .nth(200)
                .map_or(0, |(i, _)| i);
            panic!(
                "the {name} leaked into {surface}:\n…{}…",
                &text[from..(at + needle.len()).min(text.len())]
            );
        }
    }
}

/// The daemon's configuration: every source a real or local peer, secrets as plain variables.
#[allow(clippy::too_many_arguments)]
fn daemon_env(
    prom: &PrometheusServer,
    smtp: &SmtpServer,
    ca: &TestCa,
    supabase: &FakeSupabase,
    coolify: &FakeCoolify,
    openai_api: &FakeOpenai,
    sentry: &FakeSentry,
    pages: [&FakeStatusPage; 2],
    container: &TestContainer,
    data: &Path,
    port: u16,
) -> Vec<(String, String)> {
    let mut env = prometheus_env(&prom.url(), data);
    let runbook = quick_runbook(data, "5m");
    env.extend(
        [
            ("SERVER__LISTEN", format!("127.0.0.1:{port}")),
            ("SERVER__PUBLIC_URL", format!("http://127.0.0.1:{port}")),
            ("SERVER__API_TOKEN", API_TOKEN.into()),
            ("RUNBOOK__PATH", runbook.display().to_string()),
            ("RUNBOOK__LOCALE", "en".into()),
            ("SMTP__HOST", smtp.host().into()),
            ("SMTP__PORT", smtp.port().to_string()),
            ("SMTP__TLS", "starttls".into()),
            ("SMTP__CA_FILE", ca.ca_pem().display().to_string()),
            ("SMTP__USERNAME", SMTP_USER.into()),
            ("SMTP__PASSWORD", SMTP_PASSWORD.into()),
            ("SUPABASE__URL", supabase.url().to_string()),
            ("SUPABASE__API_KEY", SUPABASE_KEY.into()),
            ("SUPABASE__INTERVAL", "2s".into()),
            ("SUPABASE__TIMEOUT", "1s".into()),
            ("OPENAI__URL", openai_api.url().to_string()),
            ("OPENAI__API_KEY", OPENAI_API_KEY.into()),
            ("OPENAI__ADMIN_KEY", OPENAI_ADMIN_KEY.into()),
            ("COOLIFY__URL", coolify.url().to_string()),
            ("COOLIFY__TOKEN", COOLIFY_TOKEN.into()),
            ("COOLIFY__APPLICATION", COOLIFY_APP.into()),
            ("COOLIFY__INTERVAL", "2s".into()),
            ("COOLIFY__TIMEOUT", "1s".into()),
            ("OPENAI__MONTHLY_BUDGET", "500".into()),
            ("OPENAI__INTERVAL", "2s".into()),
            ("OPENAI__USAGE_INTERVAL", "3s".into()),
            ("OPENAI__TIMEOUT", "1s".into()),
            ("SENTRY__URL", sentry.url().to_string()),
            ("SENTRY__TOKEN", SENTRY_TOKEN.into()),
            ("SENTRY__ORGANIZATION", "harven".into()),
            ("SENTRY__PROJECTS", "harven-backend".into()),
            ("SENTRY__INTERVAL", "2s".into()),
            ("SENTRY__TIMEOUT", "1s".into()),
            ("STATUS__OPENAI__URL", pages[0].url().to_string()),
            ("STATUS__SUPABASE__URL", pages[1].url().to_string()),
            ("DOCKER__HOST", "unix:///var/run/docker.sock".into()),
            // The container is the runbook's backend, so its logs (which hold the secret) are read.
            ("DOCKER__ROLES__BACKEND__NAMES", container.name().to_owned()),
            ("DOCKER__INTERVAL", "2s".into()),
            ("DOCKER__TIMEOUT", "1s".into()),
            ("ESCALATION__L1__TO", "oncall@test.harven".into()),
            ("ESCALATION__L2__TO", "lead@test.harven".into()),
            ("ESCALATION__L3__TO", "cto@test.harven".into()),
        ]
        .into_iter()
        .map(|(k, v)| (format!("HARVEN_WATCHDOG__{k}"), v)),
    );
    env
}

/// The daemon's process, stopped when dropped (so a failing assertion leaves no daemon running).
struct Daemon(Child);

impl Daemon {
    /// Stops it with SIGTERM (SIGKILL after 10 s), so its log is complete.
    fn stop(&mut self) {
        terminate_child(&mut self.0, Duration::from_secs(10));
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The real binary running `harven-watchdog run` with `env`, logging everything (`trace`) into `log`.
fn spawn(env: &[(String, String)], log: &Path) -> Daemon {
    let out = std::fs::File::create(log).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_harven-watchdog"))
        .arg("run")
        .envs(env.iter().cloned())
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log file"))
        .stderr(out)
        .spawn()
        .expect("spawn harven-watchdog");
    Daemon(child)
}

fn latency_mail<'a>(mail: &'a [ReceivedMail], event: &str) -> Option<&'a ReceivedMail> {
    mail.iter().find(|m| {
        m.header("X-Harven-Section") == Some("latency") && m.header("X-Harven-Event") == Some(event)
    })
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(Result::ok)
    {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_logs_metrics_emails_pages_api_or_files() {
    let backend = SimBackend::start(StatusStyle::Grouped, Scenario::Slow).await;
    let prom = PrometheusServer::start(&[backend.target()]).await;
    let ca = TestCa::generate();
    let smtp = SmtpServer::start_with_login(ca.starttls(), SMTP_USER, SMTP_PASSWORD).await;
    // The needles find the AUTH PLAIN blob this login sends (base64 of "\0user\0password").
    let plain = STANDARD.encode(format!("\0{SMTP_USER}\0{SMTP_PASSWORD}"));
    assert!(
        needles().iter().any(|(_, n)| plain.contains(n.as_str())),
        "{plain}"
    );
    let supabase = FakeSupabase::start(SUPABASE_KEY).await;
    let openai_api = FakeOpenai::start(OPENAI_API_KEY, OPENAI_ADMIN_KEY).await;
    // Coolify serves JWT_SECRET's value in the envs and prints it in every deployment's logs.
    let coolify = FakeCoolify::start(COOLIFY_TOKEN, COOLIFY_APP).await;
    coolify.set_envs(&[("JWT_SECRET", JWT_SECRET)]);
    coolify.set_deployments(vec![CoolifyDep {
        uuid: "m2kq9xw8c0s4",
        commit: "9f8e7d6c5b4a39281706f5e4d3c2b1a098f7e6d5",
        status: "finished",
        age_seconds: 600,
        pull_request_id: 0,
    }]);
    let openai = FakeStatusPage::start(PageScenario::indicator("minor")).await;
    let sentry = FakeSentry::start(SENTRY_TOKEN, "harven", "harven-backend").await;
    let supabase_status = FakeStatusPage::start(PageScenario::indicator("none")).await;
    let container = TestContainer::start(
        ContainerOptions::new()
            .name_hint("leak")
            .env("JWT_SECRET", JWT_SECRET),
    )
    .await;
    // An application that logs its own secret: the daemon counts such lines, never quotes them.
    container
        .emit_log(&format!(
            "ERROR jwt signature invalid with secret {JWT_SECRET}"
        ))
        .await;

    let data = tempfile::tempdir().expect("tempdir");
    let logs = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let env = daemon_env(
        &prom,
        &smtp,
        &ca,
        &supabase,
        &coolify,
        &openai_api,
        &sentry,
        [&openai, &supabase_status],
        &container,
        data.path(),
        port,
    );
    let daemon_log = logs.path().join("daemon.log");
    let mut daemon = spawn(&env, &daemon_log);
    let http = crate::support::http_client();

    // The incident opens and its L1 email goes out through the login.
    let opened = wait_for_some(STEP, Duration::from_millis(300), || {
        let mail = smtp.messages();
        async move { latency_mail(&mail, "opened").cloned() }
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "no L1 email ({e}); daemon log tail:\n{}",
            crate::support::log_tail(&daemon_log, 4096)
        )
    });
    let incident = opened
        .header("X-Harven-Incident")
        .expect("incident header")
        .to_owned();
    container
        .emit_log(&format!("ERROR token expired; JWT_SECRET={JWT_SECRET}"))
        .await;

    // While the incident is open its pages draw its charts (inline SVG, a thumbnail on `/`):
    // read now, checked with every other surface below.
    let mut answers = Vec::new();
    for (path, shows) in [
        ("/".to_owned(), "class=\"glance\""),
        (
            format!("/incidents/{incident}"),
            "<figure class=\"chart\"><svg",
        ),
    ] {
        let resp = http.get(format!("{base}{path}")).send().await.expect("GET");
        let body = resp.text().await.expect("body");
        assert!(body.contains(shows), "GET {path} shows {shows}: {body}");
        answers.push((format!("GET {path} (open, with its charts)"), body));
    }

    // Acknowledged and resolved with the API token; a wrong token is refused.
    let post = |path: String, token: &str, body: serde_json::Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let wrong = post(
        format!("/api/incidents/{incident}/ack"),
        "not-the-token",
        json!({"by": "Mallory"}),
    )
    .await
    .expect("POST");
    assert_eq!(wrong.status(), 403);
    let refused = wrong.text().await.expect("body");
    assert!(
        refused.contains("not valid"),
        "a token is configured: {refused}"
    );
    answers.push(("a refused ack".to_owned(), refused));
    let ack = post(
        format!("/api/incidents/{incident}/ack"),
        API_TOKEN,
        json!({"by": "Ana (on call)"}),
    )
    .await
    .expect("POST");
    assert_eq!(ack.status(), 200);
    answers.push(("the ack".to_owned(), ack.text().await.expect("body")));
    let resolve = post(
        format!("/api/incidents/{incident}/resolve"),
        API_TOKEN,
        json!({"by": "Ana (on call)", "note": "restarted the backend"}),
    )
    .await
    .expect("POST");
    assert_eq!(resolve.status(), 200);
    answers.push((
        "the resolve".to_owned(),
        resolve.text().await.expect("body"),
    ));
    // The alert webhook: the token in Alertmanager's header, a wrong one, and garbage behind the
    // right one (the refusals must not echo what was presented).
    let firing: serde_json::Value = serde_json::from_str(include_str!(
        "../fixtures/alertmanager/webhook-v4-firing.json"
    ))
    .expect("the captured payload");
    let hook = post(
        "/api/webhooks/alertmanager".to_owned(),
        API_TOKEN,
        firing.clone(),
    )
    .await
    .expect("POST");
    assert_eq!(hook.status(), 200);
    answers.push((
        "the alert webhook".to_owned(),
        hook.text().await.expect("body"),
    ));
    for path in ["/deployments/applications/", "/envs"] {
        assert!(
            coolify.requests().iter().any(|(p, a)| p.contains(path)
                && a.as_deref() == Some(&*format!("Bearer {COOLIFY_TOKEN}"))),
            "the Coolify token was sent for {path}: {:?}",
            coolify.requests()
        );
    }
    let wrong_hook = post(
        "/api/webhooks/alertmanager".to_owned(),
        &format!("{API_TOKEN}x"),
        firing,
    )
    .await
    .expect("POST");
    assert_eq!(wrong_hook.status(), 403);
    answers.push((
        "a refused alert webhook".to_owned(),
        wrong_hook.text().await.expect("body"),
    ));
    let garbage = http
        .post(format!("{base}/api/webhooks/alertmanager"))
        .bearer_auth(API_TOKEN)
        .header("Content-Type", "application/json")
        // Valid JSON of the wrong shape, the token as the value the parser would quote.
        .body(format!("{{\"alerts\": \"{API_TOKEN}\"}}"))
        .send()
        .await
        .expect("POST");
    assert_eq!(garbage.status(), 400);
    answers.push((
        "a garbage alert webhook".to_owned(),
        garbage.text().await.expect("body"),
    ));
    let mail = wait_for_some(STEP, Duration::from_millis(300), || {
        let mail = smtp.messages();
        async move { latency_mail(&mail, "resolved").is_some().then_some(mail) }
    })
    .await
    .expect("the resolved email");

    // Each secret was in play.
    let logins = smtp.logins();
    assert!(
        !logins.is_empty() && logins.iter().all(|l| l.ends_with(" accepted")),
        "every email went through an accepted login: {logins:?}"
    );
    assert!(
        supabase
            .requests()
            .iter()
            .any(|r| r.apikey.as_deref() == Some(SUPABASE_KEY)),
        "the Supabase key was sent: {:?}",
        supabase.requests()
    );
    for (path, key) in [
        ("/v1/models", OPENAI_API_KEY),
        ("/v1/organization/costs", OPENAI_ADMIN_KEY),
    ] {
        assert!(
            openai_api
                .requests()
                .iter()
                .any(|r| r.path == path
                    && r.authorization.as_deref() == Some(&*format!("Bearer {key}"))),
            "the OpenAI key for {path} was sent: {:?}",
            openai_api.requests()
        );
    }
    assert!(
        sentry
            .requests()
            .iter()
            .any(|r| r.authorization.as_deref() == Some(&*format!("Bearer {SENTRY_TOKEN}"))),
        "the Sentry token was sent: {:?}",
        sentry.requests()
    );
    let inspected = container.inspect().await;
    let container_env = inspected.config.and_then(|c| c.env).unwrap_or_default();
    assert!(
        container_env.contains(&format!("JWT_SECRET={JWT_SECRET}")),
        "{container_env:?}"
    );

    // Every surface, the error pages included.
    for path in [
        "/metrics".to_owned(),
        "/".to_owned(),
        format!("/incidents/{incident}"),
        "/incidents/latency-19700101T000000Z".to_owned(),
        "/api/incidents".to_owned(),
        format!("/api/incidents/{incident}"),
        "/api/incidents/latency-19700101T000000Z".to_owned(),
        "/api/maintenance".to_owned(),
        "/api/alerts".to_owned(),
        "/act/not-a-token".to_owned(),
        "/healthz".to_owned(),
        "/readyz".to_owned(),
    ] {
        let resp = http.get(format!("{base}{path}")).send().await.expect("GET");
        let head = format!("{} {:?}", resp.status(), resp.headers());
        answers.push((
            format!("GET {path}"),
            head + &resp.text().await.expect("body"),
        ));
    }
    let metrics = &answers
        .iter()
        .find(|(s, _)| s == "GET /metrics")
        .expect("metrics")
        .1;
    assert!(metrics.contains("harven_watchdog_"), "{metrics}");
    for probe in ["openai.api", "openai.usage", "sentry", "coolify"] {
        assert!(
            metrics.contains(&format!("harven_watchdog_probe_up{{probe=\"{probe}\"}} 1")),
            "the OpenAI, Sentry and Coolify probes are in the probe families: {metrics}"
        );
    }
    assert!(
        metrics.contains("harven_watchdog_observation_openai_spend_usd "),
        "the month's spend is graphed: {metrics}"
    );
    for (surface, text) in &answers {
        assert_clean(surface, text);
    }
    for m in &mail {
        let surface = format!("the email {:?}", m.subject());
        assert_clean(&surface, &m.raw);
        for (name, _) in &m.headers {
            if let Some(value) = m.decoded_header(name) {
                assert_clean(&surface, &value);
            }
        }
        for part in m.parts() {
            assert_clean(&format!("{surface} ({})", part.content_type), &part.body);
        }
    }
    // The charts are in the emails checked: the L1 email's inline PNG, whose decoded bytes were
    // searched above as its part's body (a PNG holds no text chunk of ours either).
    let png = opened
        .parts()
        .into_iter()
        .find(|p| p.content_type == "image/png")
        .expect("the L1 email carries its chart as an inline PNG");
    assert!(
        png.body.starts_with("\u{FFFD}PNG"),
        "a PNG: {:?}",
        &png.body[..8.min(png.body.len())]
    );
    assert_clean("the L1 email's chart", &png.body);
    assert!(
        mail.iter()
            .any(|m| m.header("X-Harven-Event") == Some("opened"))
            && mail
                .iter()
                .any(|m| m.header("X-Harven-Event") == Some("resolved")),
        "the emails checked include the opened and resolved ones"
    );

    // One pass of `diagnose` with the same configuration: it sees the container's JWT_SECRET (so
    // the Docker probe read that environment) and prints no secret.
    let diagnose_log = logs.path().join("diagnose.log");
    let out = Command::new(env!("CARGO_BIN_EXE_harven-watchdog"))
        .args(["diagnose", "--json"])
        .envs(env.iter().cloned())
        .env("RUST_LOG", "trace")
        .output()
        .expect("run diagnose");
    std::fs::write(&diagnose_log, [&out.stdout[..], &out.stderr[..]].concat()).expect("write");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("docker.env_present") && report.contains("JWT_SECRET"),
        "diagnose shows the Docker probe's JWT_SECRET observation: {report}"
    );
    assert!(
        report.contains("openai.api.latency_seconds") && report.contains("openai.usage.spend_usd"),
        "diagnose shows the OpenAI probes' observations: {report}"
    );
    assert!(
        report.contains("coolify.env_set") && report.contains("coolify.current_commit"),
        "diagnose shows the Coolify probe's observations: {report}"
    );
    assert_clean("diagnose --json", &report);
    assert_clean("the diagnose log", &String::from_utf8_lossy(&out.stderr));

    // The daemon's own log, read after a clean stop (everything it wrote is in it).
    daemon.stop();
    let log = std::fs::read_to_string(&daemon_log).expect("daemon log");
    assert!(
        log.contains("TRACE") && log.contains(&incident),
        "the log is at trace level and follows the incident:\n{}",
        crate::support::log_tail(&daemon_log, 4096)
    );
    assert_clean("the daemon's log", &log);

    // The store, its journal and anything else in the data directory.
    let files = files_under(data.path());
    assert!(
        files.iter().any(|f| f.ends_with("watchdog.db")),
        "{files:?}"
    );
    for file in files {
        let bytes = std::fs::read(&file).expect("read");
        assert_clean(
            &file.display().to_string(),
            &String::from_utf8_lossy(&bytes),
        );
    }
}
