//! Hot configuration reload: `POST /-/reload` on the in-process daemon (a real incident paged over
//! real SMTP survives a reload, and the next page follows the new configuration; an invalid file is
//! refused and the old configuration keeps running; the route wants the API token), and SIGHUP to
//! the real binary. Every wait polls with a deadline; time rules move the manual clock.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::api::{Answer, Api, bearer};

use crate::escalation::{count, is, l1_incident, opened_at};
use crate::support::backend::{Scenario, SimBackend, StatusStyle};
use crate::support::daemon::{T0, TestDaemon, prometheus_env, sample};
use crate::support::prometheus::PrometheusServer;
use crate::support::smtp::{SmtpServer, advance_until, summary};
use crate::support::{send_signal, terminate_child, wait_for_some, wait_until};

const OLD_TOKEN: &str = "reload-old-token-5b8d1f3a9c";
const NEW_TOKEN: &str = "reload-new-token-2e7a4c6f0d";

/// How long a reload (or a SIGHUP) may take to show on a loaded machine.
const RELOAD_DEADLINE: Duration = Duration::from_secs(60);

/// `/metrics` as text.
async fn metrics(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("body")
}

/// The reload series of `/metrics`: (last reload successful, reloads by result `applied`, `invalid`).
async fn reload_figures(base: &str) -> (Option<f64>, Option<f64>, Option<f64>) {
    let text = metrics(base).await;
    (
        sample(&text, "harven_watchdog_config_last_reload_successful"),
        sample(
            &text,
            r#"harven_watchdog_config_reloads_total{result="applied"}"#,
        ),
        sample(
            &text,
            r#"harven_watchdog_config_reloads_total{result="invalid"}"#,
        ),
    )
}

/// `POST /-/reload` with `token` as a bearer token (no `Authorization` header when `None`).
async fn reload(api: &Api, token: Option<&str>) -> Answer {
    let auth = token.map(bearer);
    api.post("/-/reload", auth.as_deref(), &json!({})).await
}

/// A daemon whose sources are all out of reach, configured by `file` (and its data in `data`).
async fn start_unwatched(file: &Path, data: &Path) -> TestDaemon {
    TestDaemon::start_with_files(
        &[file.to_path_buf()],
        prometheus_env("http://127.0.0.1:1", data),
        T0,
    )
    .await
}

/// An incident paged at L1 over real SMTP survives a reload that changes the L2 recipients: the
/// reload answers 200, the incident is still open under the same ID, L1 is not paged again, and the
/// escalation at 30 minutes goes to the new L2 recipient.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_reload_keeps_the_incident_and_the_next_page_follows_the_new_config() {
    let backend = SimBackend::start(StatusStyle::Grouped, Scenario::Slow).await;
    let prom = PrometheusServer::start(&[backend.target()]).await;
    let smtp = SmtpServer::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let file = data.path().join("watchdog.toml");
    std::fs::write(&file, "[escalation.l2]\nto = [\"lead@test.harven\"]\n").expect("config");
    // The L2 recipients come from the file alone (the environment would override it).
    let mut env = crate::support::daemon::paging_env(&prom.url(), smtp.port(), data.path());
    env.retain(|(k, _)| k != "HARVEN_WATCHDOG__ESCALATION__L2__TO");
    env.push((
        "HARVEN_WATCHDOG__SERVER__API_TOKEN".into(),
        OLD_TOKEN.into(),
    ));
    let d = TestDaemon::start_with_files(std::slice::from_ref(&file), env, T0).await;
    let api = Api::new(&d.base);

    let incident = l1_incident(&d.hand, &smtp).await;

    std::fs::write(&file, "[escalation.l2]\nto = [\"newlead@test.harven\"]\n").expect("rewrite");
    let answer = reload(&api, Some(OLD_TOKEN)).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.json["status"], "applied");
    assert_eq!(answer.json["restart_required"], json!([]));
    assert_eq!(
        reload_figures(&d.base).await,
        (Some(1.0), Some(1.0), Some(0.0)),
        "one applied reload"
    );

    let detail = api.get(&format!("/api/incidents/{incident}")).await;
    assert_eq!(detail.status, 200, "{}", detail.json);
    assert_eq!(detail.json["state"], "open", "{}", detail.json);

    // To a minute before the L2 deadline in one move, then in steps until it is paged.
    let open = opened_at(&incident);
    let now = d.hand.now();
    d.hand
        .advance((open + Duration::from_secs(29 * 60)).saturating_since(now));
    let mail = advance_until(
        &d.hand,
        Duration::from_secs(15),
        &smtp,
        "the L2 email after the reload",
        |m| m.iter().any(|x| is(x, "L2", "escalated")),
    )
    .await;
    let l2 = mail.iter().find(|m| is(m, "L2", "escalated")).expect("L2");
    assert_eq!(l2.header("X-Harven-Incident"), Some(incident.as_str()));
    assert_eq!(
        l2.rcpt_to,
        vec!["newlead@test.harven".to_owned()],
        "L2 goes to the reloaded recipient"
    );
    assert_eq!(
        count(&smtp, "L1", "opened"),
        1,
        "the reload paged L1 again: {:?}",
        summary(&mail)
    );
    api.never_showed(OLD_TOKEN);
    d.stop().await;
}

/// Pages waiting in the outbox for a dead SMTP server are not lost by a reload: the reloaded
/// transport (another server) delivers each, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_waiting_for_a_dead_smtp_server_go_out_through_the_reloaded_one() {
    let mut dead = SmtpServer::start().await;
    dead.stop();
    let smtp = SmtpServer::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let file = data.path().join("watchdog.toml");
    std::fs::write(&file, format!("[smtp]\nport = {}\n", dead.port())).expect("config");
    // The SMTP port comes from the file alone (the environment would override it). Every source is
    // out of reach: the watchdog's own blindness is the incident that pages.
    let mut env =
        crate::support::daemon::paging_env("http://127.0.0.1:1", dead.port(), data.path());
    env.retain(|(k, _)| k != "HARVEN_WATCHDOG__SMTP__PORT");
    env.push((
        "HARVEN_WATCHDOG__SERVER__API_TOKEN".into(),
        OLD_TOKEN.into(),
    ));
    let d = TestDaemon::start_with_files(std::slice::from_ref(&file), env, T0).await;

    // The clock moves until pages wait in the outbox (the sender cannot deliver them).
    let store =
        harven_watchdog::store::Store::open(data.path().join("watchdog.db")).expect("store");
    let pending = || store.outbox_depth().expect("outbox depth").pending;
    let queued = wait_until(Duration::from_secs(120), Duration::from_millis(250), || {
        d.hand.advance(Duration::from_secs(15));
        std::future::ready(pending() >= 1)
    })
    .await;
    assert!(queued.is_ok(), "no page reached the outbox");
    let waiting = usize::try_from(pending()).expect("a small number");
    assert!(smtp.messages().is_empty());

    std::fs::write(&file, format!("[smtp]\nport = {}\n", smtp.port())).expect("rewrite");
    let answer = reload(&Api::new(&d.base), Some(OLD_TOKEN)).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    let delivered = wait_until(RELOAD_DEADLINE, Duration::from_millis(100), || {
        std::future::ready(smtp.messages().len() >= waiting && pending() == 0)
    })
    .await;
    let mail = smtp.messages();
    assert!(
        delivered.is_ok(),
        "the {waiting} waiting pages did not go out through the reloaded server: {:?}, {} pending",
        summary(&mail),
        pending()
    );
    let ids: std::collections::BTreeSet<_> =
        mail.iter().filter_map(|m| m.header("Message-ID")).collect();
    assert_eq!(
        ids.len(),
        mail.len(),
        "each page once: {:?}",
        summary(&mail)
    );
    d.stop().await;
}

/// An invalid file is refused with its key named, and the old configuration (here its API token)
/// keeps running; a valid one then applies, a changed `server.listen` is reported and kept. The
/// route wants the token throughout: without one 401, with a wrong one 403, and neither reloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_reload_is_refused_and_the_old_config_keeps_running() {
    let data = tempfile::tempdir().expect("tempdir");
    let file = data.path().join("watchdog.toml");
    let old = format!("[server]\napi_token = \"{OLD_TOKEN}\"\n");
    std::fs::write(&file, &old).expect("config");
    let d = start_unwatched(&file, data.path()).await;
    let api = Api::new(&d.base);
    assert_eq!(
        reload_figures(&d.base).await,
        (Some(1.0), Some(0.0), Some(0.0)),
        "both results at 0 from the start"
    );

    // The new file is valid, but the requests are not allowed: nothing is reloaded.
    std::fs::write(
        &file,
        format!("[server]\napi_token = \"{NEW_TOKEN}\"\nlisten = \"127.0.0.1:1\"\n"),
    )
    .expect("rewrite");
    let missing = reload(&api, None).await;
    assert_eq!(missing.status, 401, "{}", missing.json);
    assert_eq!(missing.www_authenticate.as_deref(), Some("Bearer"));
    let wrong = reload(&api, Some(NEW_TOKEN)).await;
    assert_eq!(wrong.status, 403, "{}", wrong.json);
    assert_eq!(
        reload_figures(&d.base).await,
        (Some(1.0), Some(0.0), Some(0.0)),
        "refused requests reload nothing"
    );

    // Invalid: a bad duration. Refused with the file and the key named; the old token still rules.
    std::fs::write(
        &file,
        format!("[server]\napi_token = \"{NEW_TOKEN}\"\n[escalation.l2]\nafter = \"soon\"\n"),
    )
    .expect("rewrite");
    let refused = reload(&api, Some(OLD_TOKEN)).await;
    assert_eq!(refused.status, 422, "{}", refused.json);
    let problems = refused.json["problems"].as_array().expect("problems");
    assert!(
        problems.iter().any(|p| p.as_str().is_some_and(
            |p| p.contains("escalation.l2.after") && p.contains(&file.display().to_string())
        )),
        "{}",
        refused.json
    );
    assert_eq!(
        reload_figures(&d.base).await,
        (Some(0.0), Some(0.0), Some(1.0)),
        "the refusal is on /metrics"
    );
    let still_old = reload(&api, Some(NEW_TOKEN)).await;
    assert_eq!(
        still_old.status, 403,
        "the refused file's token is not in force: {}",
        still_old.json
    );

    // A valid file naming a broken runbook is refused too, with the runbook's problems.
    let runbook = data.path().join("runbook.toml");
    std::fs::write(&runbook, "[[section]]\nid = \"latency\"\nbogus = true\n").expect("runbook");
    std::fs::write(
        &file,
        format!(
            "[server]\napi_token = \"{NEW_TOKEN}\"\n[runbook]\npath = \"{}\"\n",
            runbook.display()
        ),
    )
    .expect("rewrite");
    let refused = reload(&api, Some(OLD_TOKEN)).await;
    assert_eq!(refused.status, 422, "{}", refused.json);
    assert!(
        refused.json["problems"].as_array().is_some_and(|ps| ps
            .iter()
            .any(|p| p.as_str().is_some_and(|p| p.contains("runbook.toml")))),
        "{}",
        refused.json
    );
    assert_eq!(
        reload_figures(&d.base).await,
        (Some(0.0), Some(0.0), Some(2.0))
    );

    // Valid again, with a listen address that only a restart can change.
    std::fs::write(
        &file,
        format!("[server]\napi_token = \"{NEW_TOKEN}\"\nlisten = \"127.0.0.1:1\"\n"),
    )
    .expect("rewrite");
    let applied = reload(&api, Some(OLD_TOKEN)).await;
    assert_eq!(applied.status, 200, "{}", applied.json);
    assert_eq!(applied.json["restart_required"], json!(["server.listen"]));
    let text = metrics(&d.base).await;
    assert_eq!(
        sample(
            &text,
            "harven_watchdog_config_last_reload_success_timestamp_seconds"
        ),
        Some(T0.as_unix_secs_f64()),
        "stamped by the daemon's clock"
    );
    assert_eq!(
        reload_figures(&d.base).await,
        (Some(1.0), Some(1.0), Some(2.0))
    );
    let old_now = reload(&api, Some(OLD_TOKEN)).await;
    assert_eq!(
        old_now.status, 403,
        "the old token is gone: {}",
        old_now.json
    );
    let new_now = reload(&api, Some(NEW_TOKEN)).await;
    assert_eq!(new_now.status, 200, "{}", new_now.json);
    // Two at once: both are carried out, one after the other.
    let (a, b) = tokio::join!(reload(&api, Some(NEW_TOKEN)), reload(&api, Some(NEW_TOKEN)));
    assert!(a.status == 200 && b.status == 200, "{} {}", a.json, b.json);
    assert_eq!(
        reload_figures(&d.base).await,
        (Some(1.0), Some(4.0), Some(2.0))
    );
    let health = reqwest::get(format!("{}/healthz", d.base))
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200, "still serving on the old address");
    api.never_showed(OLD_TOKEN);
    api.never_showed(NEW_TOKEN);
    d.stop().await;
}

/// A probe that the reloaded configuration no longer has leaves `/metrics`: its last `probe_up`
/// (0 here, which would keep an alert firing) does not stay behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_removed_by_a_reload_leaves_the_metrics() {
    let data = tempfile::tempdir().expect("tempdir");
    let file = data.path().join("watchdog.toml");
    let token = format!("[server]\napi_token = \"{OLD_TOKEN}\"\n");
    let supabase = "[supabase]\nurl = \"http://127.0.0.1:1\"\napi_key = \"k\"\n";
    std::fs::write(&file, format!("{token}{supabase}")).expect("config");
    let d = start_unwatched(&file, data.path()).await;
    let series = r#"harven_watchdog_probe_up{probe="supabase"}"#;
    let redis = r#"harven_watchdog_probe_up{probe="redis"}"#;
    let polled = wait_until(RELOAD_DEADLINE, Duration::from_millis(100), || async {
        let text = metrics(&d.base).await;
        sample(&text, series) == Some(0.0) && sample(&text, redis).is_some()
    })
    .await;
    assert!(
        polled.is_ok(),
        "the supabase and redis probes never reported"
    );

    std::fs::write(&file, &token).expect("rewrite");
    let api = Api::new(&d.base);
    let applied = reload(&api, Some(OLD_TOKEN)).await;
    assert_eq!(applied.status, 200, "{}", applied.json);
    let text = metrics(&d.base).await;
    assert_eq!(sample(&text, series), None, "{text}");
    assert!(
        sample(&text, redis).is_some(),
        "the probes that stay keep their series: {text}"
    );
    d.stop().await;
}

/// The shipped runbook, and the shipped runbook with an extra section (`ai_quota`, a copy of
/// `openai_quota`) but without the `errors.ratio_critical` rule. (The shipped sections hold stable
/// cause IDs and cannot be removed; a section of the user's own can.)
fn runbooks() -> (String, String) {
    let shipped = include_str!("../../config/runbook.toml");
    let (_, rest) = shipped
        .split_once("[[sections]]\nid = \"openai_quota\"")
        .expect("the openai_quota section");
    let (section, _) = rest
        .split_once("[[sections]]\nid = \"database\"")
        .expect("the database section");
    let extra = format!(
        "{shipped}\n[[sections]]\nid = \"ai_quota\"{}",
        section.replace("openai_quota.", "ai_quota.")
    );
    let (head, rest) = shipped
        .split_once("[[sections.rules]]\nid = \"errors.ratio_critical\"")
        .expect("the errors.ratio_critical rule");
    let (_, tail) = rest
        .split_once("[[sections.")
        .expect("what follows the rule");
    (extra, format!("{head}[[sections.{tail}"))
}

/// A section or a rule that a reloaded runbook no longer has leaves `/metrics`: its `section_active`,
/// `incidents_open`, `incident_level` and `symptoms_firing` series do not keep their last values,
/// while those of the sections and rules that stay are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sections_and_rules_removed_by_a_reload_leave_the_metrics() {
    let data = tempfile::tempdir().expect("tempdir");
    let file = data.path().join("watchdog.toml");
    let runbook = data.path().join("runbook.toml");
    let (extra, trimmed) = runbooks();
    std::fs::write(&runbook, extra).expect("runbook");
    let config = format!(
        "[server]\napi_token = \"{OLD_TOKEN}\"\n[runbook]\npath = \"{}\"\n",
        runbook.display()
    );
    std::fs::write(&file, config).expect("config");
    let d = start_unwatched(&file, data.path()).await;
    let gone = [
        r#"harven_watchdog_section_active{section="ai_quota"}"#,
        r#"harven_watchdog_incidents_open{section="ai_quota",severity="major"}"#,
        r#"harven_watchdog_incidents_open{section="ai_quota",severity="critical"}"#,
        r#"harven_watchdog_incident_level{section="ai_quota"}"#,
        r#"harven_watchdog_symptoms_firing{section="ai_quota",rule="ai_quota.http_429"}"#,
        r#"harven_watchdog_symptoms_firing{section="errors",rule="errors.ratio_critical"}"#,
    ];
    let kept = [
        r#"harven_watchdog_section_active{section="errors"}"#,
        r#"harven_watchdog_incidents_open{section="errors",severity="major"}"#,
        r#"harven_watchdog_incident_level{section="database"}"#,
        r#"harven_watchdog_symptoms_firing{section="errors",rule="errors.ratio_high"}"#,
    ];
    let evaluated = wait_until(RELOAD_DEADLINE, Duration::from_millis(100), || async {
        let text = metrics(&d.base).await;
        gone.iter().chain(&kept).all(|s| sample(&text, s).is_some())
    })
    .await;
    assert!(
        evaluated.is_ok(),
        "the engine never evaluated: {}",
        metrics(&d.base).await
    );

    std::fs::write(&runbook, trimmed).expect("runbook");
    let api = Api::new(&d.base);
    let applied = reload(&api, Some(OLD_TOKEN)).await;
    assert_eq!(applied.status, 200, "{}", applied.json);
    let text = metrics(&d.base).await;
    for series in gone {
        assert_eq!(sample(&text, series), None, "{series} stayed:\n{text}");
    }
    for series in kept {
        assert!(sample(&text, series).is_some(), "{series} went:\n{text}");
    }
    d.stop().await;
}

/// Without a configured token the reload route is closed, like the rest of the mutating API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_api_token_the_reload_route_is_closed() {
    let data = tempfile::tempdir().expect("tempdir");
    let file = data.path().join("watchdog.toml");
    std::fs::write(&file, "").expect("config");
    let d = start_unwatched(&file, data.path()).await;
    let api = Api::new(&d.base);
    let answer = reload(&api, Some(OLD_TOKEN)).await;
    assert_eq!(answer.status, 403, "{}", answer.json);
    assert!(
        answer.json["error"]
            .as_str()
            .is_some_and(|e| e.contains("not configured")),
        "{}",
        answer.json
    );
    assert_eq!(
        reload_figures(&d.base).await,
        (Some(1.0), Some(0.0), Some(0.0)),
        "both results at 0 from the start"
    );
    d.stop().await;
}

/// The real binary: SIGHUP with a broken file keeps it running on the old configuration and logs
/// the refusal with the key; SIGHUP with a valid file applies it (its API token opens the route).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_refuses_a_broken_config_and_applies_a_valid_one() {
    crate::support::init();
    let data = tempfile::tempdir().expect("tempdir");
    let file = data.path().join("watchdog.toml");
    let log = data.path().join("stderr.log");
    let port = crate::support::free_port();
    let base = format!("http://127.0.0.1:{port}");
    std::fs::write(&file, format!("[server]\nlisten = \"127.0.0.1:{port}\"\n")).expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_harven-watchdog"))
        .arg("--config")
        .arg(&file)
        .envs(prometheus_env("http://127.0.0.1:1", data.path()))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn the daemon");
    let api = Api::new(&base);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let healthy = || async {
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    };
    let logged = |what: &'static str| {
        let log = log.clone();
        move || {
            let log = log.clone();
            async move { crate::support::log_tail(&log, 1 << 20).contains(what) }
        }
    };
    if wait_until(RELOAD_DEADLINE, Duration::from_millis(100), healthy)
        .await
        .is_err()
    {
        terminate_child(&mut child, Duration::from_secs(5));
        panic!(
            "the daemon never answered:\n{}",
            crate::support::log_tail(&log, 4096)
        );
    }
    let closed = reload(&api, Some(NEW_TOKEN)).await;
    assert_eq!(closed.status, 403, "no token yet: {}", closed.json);

    // Broken: an unknown key. Still running, still the old configuration, the refusal logged.
    std::fs::write(
        &file,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\napi_token = \"{NEW_TOKEN}\"\nbogus = 1\n"
        ),
    )
    .expect("rewrite");
    assert!(send_signal(&child, libc::SIGHUP), "SIGHUP sent");
    let refused = wait_until(
        RELOAD_DEADLINE,
        Duration::from_millis(100),
        logged("configuration reload refused"),
    )
    .await;
    let text = crate::support::log_tail(&log, 1 << 20);
    assert!(refused.is_ok(), "no refusal logged:\n{text}");
    assert!(text.contains("bogus"), "the key is named:\n{text}");
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the daemon died:\n{text}"
    );
    assert!(healthy().await, "still serving");
    assert_eq!(
        reload_figures(&base).await,
        (Some(0.0), Some(0.0), Some(1.0))
    );
    let still_closed = reload(&api, Some(NEW_TOKEN)).await;
    assert_eq!(
        still_closed.status, 403,
        "the broken file's token is not in force: {}",
        still_closed.json
    );

    // Valid: applied, and its token opens the route.
    std::fs::write(
        &file,
        format!("[server]\nlisten = \"127.0.0.1:{port}\"\napi_token = \"{NEW_TOKEN}\"\n"),
    )
    .expect("rewrite");
    assert!(send_signal(&child, libc::SIGHUP), "SIGHUP sent");
    let applied = wait_for_some(RELOAD_DEADLINE, Duration::from_millis(100), || async {
        let figures = reload_figures(&base).await;
        (figures.1 == Some(1.0)).then_some(figures)
    })
    .await;
    let text = crate::support::log_tail(&log, 1 << 20);
    assert_eq!(
        applied.ok(),
        Some((Some(1.0), Some(1.0), Some(1.0))),
        "the valid file was not applied:\n{text}"
    );
    assert!(text.contains("configuration reloaded"), "{text}");
    let open: Value = reload(&api, Some(NEW_TOKEN)).await.json;
    assert_eq!(open["status"], "applied", "{open}");
    terminate_child(&mut child, Duration::from_secs(5));
}
