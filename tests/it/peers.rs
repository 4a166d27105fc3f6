//! Acceptance tests of the test peers themselves: each helper in `support` is exercised
//! against the real program it wraps.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use bollard::models::{HealthStatusEnum, RestartPolicyNameEnum};
use bollard::query_parameters::LogsOptionsBuilder;
use futures_util::StreamExt;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use redis::AsyncCommands;

use crate::support::backend::{Fault, Scenario, SimBackend, StatusStyle};
use crate::support::docker::{ContainerOptions, TestContainer};
use crate::support::fastapi::{
    self, APP, FastApiBackend, Handler, Load, LoadSpec, Profile, backend_python,
};
use crate::support::process::{PeerProcess, start_on_free_port};
use crate::support::prometheus::{PromSample, PrometheusServer};
use crate::support::redis::RedisServer;
use crate::support::smtp::SmtpServer;
use crate::support::{self, wait_until};

/// Deadline for Prometheus to have data (first data comes ~7 s after start, later on a loaded
/// machine).
const PROM_DATA: Duration = Duration::from_secs(60);

const P95_BY_HANDLER: &str = "histogram_quantile(0.95, sum(rate(http_request_duration_seconds_bucket[1m])) by (le, handler))";

const ERROR_RATIO_BY_INSTANCE: &str = "sum(rate(http_requests_total{status=~\"5..\"}[1m])) by (instance) \
     / sum(rate(http_requests_total[1m])) by (instance)";

fn by_label(samples: &[PromSample], label: &str) -> BTreeMap<String, f64> {
    samples
        .iter()
        .filter_map(|s| Some((s.label(label)?.to_owned(), s.value)))
        .collect()
}

/// True when every handler in `handlers` has a non-NaN value.
fn has_values_for(samples: &[PromSample], label: &str, keys: &[&str]) -> bool {
    let values = by_label(samples, label);
    keys.iter()
        .all(|k| values.get(*k).is_some_and(|v| !v.is_nan()))
}

fn http_client() -> reqwest::Client {
    support::init();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .expect("reqwest client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sees_p95_above_3s_in_slow_scenario() {
    let backend = SimBackend::start(StatusStyle::Grouped, Scenario::Slow).await;
    let prom = PrometheusServer::start(&[backend.target()]).await;

    // The backend is a healthy scrape target.
    prom.wait_for(
        "up{job=\"harven-backend\"}",
        |s| s.len() == 1 && s[0].value == 1.0,
        PROM_DATA,
    )
    .await;

    // Wait for the quantile to exist, then assert on it with prometheus-http-query directly.
    prom.wait_for(
        P95_BY_HANDLER,
        |s| has_values_for(s, "handler", &["/api/chat", "/api/login", "/health"]),
        PROM_DATA,
    )
    .await;
    let client = prom.client();
    let result = client
        .query(P95_BY_HANDLER)
        .get()
        .await
        .expect("p95 query succeeds");
    let vector = result.data().as_vector().expect("an instant vector");
    let p95: BTreeMap<String, f64> = vector
        .iter()
        .map(|s| {
            (
                s.metric().get("handler").cloned().unwrap_or_default(),
                s.sample().value(),
            )
        })
        .collect();
    for handler in ["/api/chat", "/api/login"] {
        let v = p95[handler];
        assert!(
            v > 3.0,
            "p95 of {handler} should be above 3 s in Slow, got {v} ({p95:?})"
        );
        assert!(v <= 5.0, "slow requests take ~4 s (bucket 3–5 s), got {v}");
    }
    let health = p95["/health"];
    assert!(health < 3.0, "/health stays fast in Slow, got {health}");
    assert!(backend.scrapes() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_normal_p95_stays_below_3s_then_follows_a_switch_to_slow() {
    let backend = SimBackend::start(StatusStyle::Exact, Scenario::Normal).await;
    let prom = PrometheusServer::start(&[backend.target()]).await;

    let samples = prom
        .wait_for(
            P95_BY_HANDLER,
            |s| has_values_for(s, "handler", &["/api/chat", "/api/login", "/health"]),
            PROM_DATA,
        )
        .await;
    for (handler, v) in by_label(&samples, "handler") {
        assert!(
            v < 3.0,
            "p95 of {handler} in Normal should be < 3 s, got {v}"
        );
        assert!(
            v < 1.0,
            "p95 of {handler} in Normal should even be < 1 s, got {v}"
        );
    }
    let ratio = prom
        .wait_for(
            ERROR_RATIO_BY_INSTANCE,
            |s| s.len() == 1 && !s[0].value.is_nan(),
            PROM_DATA,
        )
        .await;
    assert!(
        ratio[0].value < 0.05,
        "5xx ratio in Normal should be below 5%, got {}",
        ratio[0].value
    );

    // Switching the scenario shows up in Prometheus (the [1m] window fills with slow requests).
    backend.set_scenario(Scenario::Slow);
    assert_eq!(backend.scenario(), Scenario::Slow);
    let query = format!("{P95_BY_HANDLER} > 3");
    let slow = prom
        .wait_for(
            &query,
            |s| s.iter().any(|x| x.label("handler") == Some("/api/chat")),
            PROM_DATA,
        )
        .await;
    assert!(
        slow.iter().all(|x| x.label("handler") != Some("/health")),
        "/health must stay fast: {slow:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_5xx_ratio_above_5_percent_in_both_status_styles() {
    let grouped = SimBackend::start(StatusStyle::Grouped, Scenario::Errors).await;
    let exact = SimBackend::start(StatusStyle::Exact, Scenario::Errors).await;
    let prom = PrometheusServer::start(&[grouped.target(), exact.target()]).await;

    let instances = [grouped.target(), exact.target()];
    let keys: Vec<&str> = instances.iter().map(String::as_str).collect();
    let samples = prom
        .wait_for(
            ERROR_RATIO_BY_INSTANCE,
            |s| has_values_for(s, "instance", &keys),
            PROM_DATA,
        )
        .await;
    let ratios = by_label(&samples, "instance");
    for instance in &instances {
        let r = ratios[instance];
        assert!(r > 0.05, "5xx ratio of {instance} should be > 5%, got {r}");
        assert!(
            r >= 0.2,
            "the Errors scenario gives >= 20% 5xx, got {r} for {instance}"
        );
        assert!(
            r < 0.5,
            "the Errors scenario gives ~30% 5xx, got {r} for {instance}"
        );
    }

    // `5..` matched the grouped label in one target and exact codes in the other.
    let statuses = prom
        .query("count by (instance, status) (http_requests_total{status=~\"5..\"})")
        .await
        .expect("status query");
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in &statuses {
        seen.entry(s.label("instance").unwrap_or_default().to_owned())
            .or_default()
            .insert(s.label("status").unwrap_or_default().to_owned());
    }
    assert_eq!(
        seen.get(&grouped.target())
            .map(|s| s.iter().cloned().collect::<Vec<_>>()),
        Some(vec!["5xx".to_owned()]),
        "grouped style: {seen:?}"
    );
    assert_eq!(
        seen.get(&exact.target())
            .map(|s| s.iter().cloned().collect::<Vec<_>>()),
        Some(vec!["500".to_owned(), "503".to_owned()]),
        "exact style: {seen:?}"
    );
}

/// Totals of `http_requests_total` in a `/metrics` body: (all, 5xx, 401+403/4xx-auth).
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    all: f64,
    server_errors: f64,
    auth_failures: f64,
}

fn parse_totals(body: &str, handler_filter: Option<&str>) -> Totals {
    let mut t = Totals::default();
    for line in body.lines() {
        let Some(rest) = line.strip_prefix("http_requests_total{") else {
            continue;
        };
        let (labels, value) = rest.rsplit_once("} ").expect("sample line");
        let value: f64 = value.parse().expect("sample value");
        if let Some(h) = handler_filter
            && !labels.contains(&format!("handler=\"{h}\""))
        {
            continue;
        }
        t.all += value;
        if labels.contains("status=\"5") {
            t.server_errors += value;
        }
        if labels.contains("status=\"401\"") || labels.contains("status=\"403\"") {
            t.auth_failures += value;
        }
    }
    t
}

async fn scrape(client: &reqwest::Client, backend: &SimBackend) -> String {
    let resp = client
        .get(backend.metrics_url())
        .send()
        .await
        .expect("scrape /metrics");
    assert_eq!(resp.status(), 200);
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    resp.text().await.expect("metrics body")
}

/// Ratio of a scenario, measured on the counter deltas over 200 extra ticks.
async fn measure(
    client: &reqwest::Client,
    backend: &SimBackend,
    scenario: Scenario,
    handler: Option<&str>,
) -> (Totals, f64) {
    backend.set_scenario(scenario);
    let before_body = scrape(client, backend).await;
    let before_requests = backend.requests_total();
    let before_ticks = backend.ticks();
    for _ in 0..200 {
        backend.tick_now();
    }
    let after_body = scrape(client, backend).await;
    let per_tick = (backend.requests_total() - before_requests) as f64
        / (backend.ticks() - before_ticks) as f64;
    let (a, b) = (
        parse_totals(&before_body, handler),
        parse_totals(&after_body, handler),
    );
    let delta = Totals {
        all: b.all - a.all,
        server_errors: b.server_errors - a.server_errors,
        auth_failures: b.auth_failures - a.auth_failures,
    };
    (delta, per_tick)
}

#[tokio::test]
async fn backend_scenarios_have_the_advertised_shape() {
    let backend = SimBackend::start(StatusStyle::Exact, Scenario::Normal).await;
    let client = http_client();

    let (normal, normal_rate) = measure(&client, &backend, Scenario::Normal, None).await;
    assert!(normal.server_errors / normal.all < 0.05, "{normal:?}");
    assert_eq!(normal_rate, 6.0, "6 requests per tick in Normal");

    let (errors, _) = measure(&client, &backend, Scenario::Errors, None).await;
    assert!(errors.server_errors / errors.all >= 0.2, "{errors:?}");

    let (auth, _) = measure(&client, &backend, Scenario::AuthFailures, None).await;
    assert!(auth.auth_failures / auth.all >= 0.4, "{auth:?}");
    let (auth_login, _) = measure(
        &client,
        &backend,
        Scenario::AuthFailures,
        Some("/api/login"),
    )
    .await;
    assert!(
        auth_login.auth_failures / auth_login.all >= 0.5,
        "{auth_login:?}"
    );

    let (_, surge_rate) = measure(&client, &backend, Scenario::Surge, None).await;
    assert_eq!(
        surge_rate,
        10.0 * normal_rate,
        "Surge is 10x the normal rate"
    );

    // Histogram shape: 3 s is a bucket boundary, and buckets are cumulative up to +Inf = count.
    let body = backend.render_metrics();
    assert!(body.contains(
        "http_request_duration_seconds_bucket{handler=\"/api/chat\",le=\"3.0\",method=\"POST\"}"
    ));
    assert!(body.contains("# TYPE http_request_duration_seconds histogram"));
    assert!(body.contains("# TYPE http_requests_total counter"));

    // Grouped style writes 2xx/4xx/5xx only.
    let grouped = SimBackend::start(StatusStyle::Grouped, Scenario::AuthFailures).await;
    grouped.tick_now();
    let grouped_body = grouped.render_metrics();
    assert!(grouped_body.contains("status=\"4xx\""), "{grouped_body}");
    assert!(!grouped_body.contains("status=\"401\""), "{grouped_body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_metrics_faults_500_and_hang() {
    let backend = SimBackend::start(StatusStyle::Grouped, Scenario::Normal).await;
    let client = http_client();

    backend.set_fault(Fault::Http500);
    let resp = client
        .get(backend.metrics_url())
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 500);

    backend.set_fault(Fault::Hang);
    let short = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .expect("client");
    let err = short
        .get(backend.metrics_url())
        .send()
        .await
        .expect_err("a hanging /metrics never answers");
    assert!(err.is_timeout(), "expected a timeout, got {err}");

    // A request hanging now is released (and answered) when the fault is cleared.
    let url = backend.metrics_url();
    let scrapes_before = backend.scrapes();
    let pending = tokio::spawn({
        let client = client.clone();
        async move { client.get(url).send().await.map(|r| r.status()) }
    });
    wait_until(
        Duration::from_secs(30),
        Duration::from_millis(20),
        || async { backend.scrapes() > scrapes_before },
    )
    .await
    .expect("the hanging request reached the backend");
    assert!(
        !pending.is_finished(),
        "the request should hang under Fault::Hang"
    );
    backend.set_fault(Fault::None);
    let status = pending.await.expect("join").expect("released request");
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_answers_ping_and_comes_back_after_restart() {
    let mut server = RedisServer::start().await;
    let mut con = server.connection_manager().await;

    let pong: String = redis::cmd("PING")
        .query_async(&mut con)
        .await
        .expect("PING");
    assert_eq!(pong, "PONG");
    let _: () = con.set("rate_limit:test", 3).await.expect("SET");
    let v: i64 = con.get("rate_limit:test").await.expect("GET");
    assert_eq!(v, 3);

    // Crash and restart on the same port: the ConnectionManager reconnects by itself, and
    // the data set is empty (no persistence).
    let port = server.port();
    server.kill();
    assert!(!server.is_running());
    server.restart().await;
    assert_eq!(server.port(), port);
    wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        let mut con = con.clone();
        async move {
            redis::cmd("PING")
                .query_async::<String>(&mut con)
                .await
                .is_ok_and(|p| p == "PONG")
        }
    })
    .await
    .expect("ConnectionManager answers PING again after the restart");
    let gone: Option<i64> = con.get("rate_limit:test").await.expect("GET after restart");
    assert_eq!(gone, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_test_container_health_follows_the_health_file() {
    let container = TestContainer::start(
        ContainerOptions::new()
            .name_hint("health")
            .health_cmd("test -f /tmp/healthy")
            .env("JWT_SECRET", "not-a-real-secret")
            .memory(64 << 20)
            .label("com.harven.role", "backend"),
    )
    .await;
    assert!(
        container
            .name()
            .starts_with(&format!("hwtest-{}-", std::process::id()))
    );

    let info = container
        .wait_health(HealthStatusEnum::HEALTHY, Duration::from_secs(60))
        .await;
    let config = info.config.expect("config");
    assert!(
        config
            .env
            .unwrap_or_default()
            .iter()
            .any(|e| e.starts_with("JWT_SECRET="))
    );
    assert_eq!(
        config
            .labels
            .unwrap_or_default()
            .get("com.harven.role")
            .map(String::as_str),
        Some("backend")
    );
    assert_eq!(info.host_config.and_then(|h| h.memory), Some(64 << 20));

    container.set_healthy(false).await;
    container
        .wait_health(HealthStatusEnum::UNHEALTHY, Duration::from_secs(60))
        .await;
    container.set_healthy(true).await;
    container
        .wait_health(HealthStatusEnum::HEALTHY, Duration::from_secs(60))
        .await;

    // exec output and log lines reach the engine.
    let out = container.exec(&["echo", "hello"]).await;
    assert_eq!(out.exit_code, Some(0));
    assert_eq!(out.output.trim(), "hello");
    container
        .emit_log("ERROR openai 429 Too Many Requests")
        .await;
    let mut logs = container.docker().logs(
        container.id(),
        Some(LogsOptionsBuilder::new().stdout(true).stderr(true).build()),
    );
    let mut text = String::new();
    while let Some(chunk) = logs.next().await {
        text.push_str(&chunk.expect("log chunk").to_string());
    }
    assert!(
        text.contains("ERROR openai 429 Too Many Requests"),
        "logs: {text:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_test_container_restart_policy_counts_restarts() {
    let container = TestContainer::start(
        ContainerOptions::new()
            .name_hint("crashloop")
            .cmd(&["/bin/sh", "-c", "sleep 1; exit 3"])
            .restart_policy(RestartPolicyNameEnum::ON_FAILURE, 2),
    )
    .await;
    let info = container
        .wait_inspect(
            "2 restarts then exited",
            |i| {
                i.restart_count == Some(2)
                    && i.state.as_ref().and_then(|s| s.running) == Some(false)
            },
            Duration::from_secs(90),
        )
        .await;
    assert_eq!(info.state.and_then(|s| s.exit_code), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_server_receives_mail_sent_with_lettre() {
    let mut server = SmtpServer::start().await;
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(server.host())
        .port(server.port())
        .timeout(Some(Duration::from_secs(20)))
        .build();

    let subject = "[Harven][L1][critical] Error rate 12.4% > 5% — provável: Supabase down";
    let message = Message::builder()
        .from("watchdog@harven.ai".parse().expect("from"))
        .to("devops@harven.ai".parse().expect("to"))
        .cc("techlead@harven.ai".parse().expect("cc"))
        .subject(subject)
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Harven-Incident"),
            "inc-42".to_owned(),
        ))
        .body("Sintoma: taxa de erro 12.4% (limite 5%)\nAção: verificar o Supabase".to_owned())
        .expect("message");
    mailer.send(message).await.expect("send over SMTP");

    let mails = server.wait_for_messages(1, Duration::from_secs(30)).await;
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.subject().as_deref(), Some(subject));
    assert_eq!(mail.header("x-harven-incident"), Some("inc-42"));
    assert_eq!(mail.mail_from.as_deref(), Some("watchdog@harven.ai"));
    assert_eq!(
        mail.rcpt_to.iter().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from([
            "devops@harven.ai".to_owned(),
            "techlead@harven.ai".to_owned()
        ])
    );
    let text = mail.text().expect("a text body");
    assert!(text.contains("Ação: verificar o Supabase"), "{text:?}");
    assert!(mail.raw.contains("X-Harven-Incident: inc-42"));

    // Down and back up on the same port: sending fails while it is down, works after.
    server.stop();
    let refused = mailer
        .send(
            Message::builder()
                .from("watchdog@harven.ai".parse().expect("from"))
                .to("devops@harven.ai".parse().expect("to"))
                .subject("while down")
                .body(String::from("x"))
                .expect("message"),
        )
        .await;
    assert!(
        refused.is_err(),
        "sending to a stopped SMTP server must fail"
    );
    server.restart().await;
    mailer
        .send(
            Message::builder()
                .from("watchdog@harven.ai".parse().expect("from"))
                .to("cto@harven.ai".parse().expect("to"))
                .subject("after restart")
                .body(String::from("y"))
                .expect("message"),
        )
        .await
        .expect("send after restart");
    let mails = server.wait_for_messages(2, Duration::from_secs(30)).await;
    assert_eq!(mails.len(), 2);
    assert_eq!(mails[1].subject().as_deref(), Some("after restart"));
    assert_eq!(mails[1].rcpt_to, vec!["cto@harven.ai".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_process_that_dies_while_starting_is_reported_with_its_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut process = PeerProcess::new("sh", dir.path().join("sh.log"));
    let err = process
        .spawn_and_wait(
            Command::new("sh").args(["-c", "echo boom >&2; exit 3"]),
            "dash",
            "never",
            Duration::from_millis(10),
            || async { false },
        )
        .await
        .expect_err("the process exits before it is ready");
    // "exited", not "was not ready": the exit was noticed, not the startup deadline.
    assert!(err.contains("sh exited with exit status: 3"), "{err}");
    assert!(err.contains("boom"), "the log tail: {err}");
    assert!(!process.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_process_is_ready_then_stopped_and_its_log_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut process = PeerProcess::new("sh", dir.path().join("sh.log"));
    let log = process.log_path().to_owned();
    process
        .spawn_and_wait(
            Command::new("sh").args(["-c", "echo up; exec sleep 600"]),
            "dash",
            "`up` in its log",
            Duration::from_millis(10),
            || {
                let up = support::log_tail(&log, 64).contains("up");
                async move { up }
            },
        )
        .await
        .expect("ready once it has written `up`");
    assert!(process.is_running());
    process.terminate(Duration::from_secs(10));
    assert!(!process.is_running());
    assert!(process.log_tail().contains("up"), "{}", process.log_tail());
}

#[tokio::test]
async fn a_port_clash_is_retried_on_a_new_port_and_other_errors_are_not() {
    let mut ports = Vec::new();
    start_on_free_port("a peer", Ipv4Addr::LOCALHOST.into(), async |port| {
        ports.push(port);
        if ports.len() == 1 {
            Err("bind: Address already in use".to_owned())
        } else {
            Ok(())
        }
    })
    .await;
    assert_eq!(ports.len(), 2, "{ports:?}");

    let other = tokio::spawn(start_on_free_port(
        "a peer",
        Ipv4Addr::LOCALHOST.into(),
        async |_| Err("permission denied".to_owned()),
    ))
    .await
    .expect_err("a start that fails for another reason panics at once");
    let message = other.into_panic();
    let message = message
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(
        message.contains("a peer did not start: permission denied"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fastapi_backend_control_api_load_report_and_stop() {
    let backend = FastApiBackend::start(Profile::Tuned).await;

    // Refusals name what is wrong, and change nothing.
    for (body, words) in [
        (
            serde_json::json!({"scenario": "meltdown"}),
            "unknown scenario",
        ),
        (
            serde_json::json!({"scenario": "errors", "delay_s": [1, 2]}),
            "unknown parameters ['delay_s']",
        ),
        (
            serde_json::json!({"scenario": "slow", "handlers": ["/api/nope"]}),
            "unknown handlers",
        ),
        (
            serde_json::json!({"scenario": "errors", "error_ratio": 2}),
            "error_ratio must be a number from 0 to 1",
        ),
    ] {
        let error = backend.control(body).await.expect_err("refused");
        assert!(error.starts_with("422") && error.contains(words), "{error}");
    }
    assert_eq!(backend.state().await["scenario"], "normal");

    // Exactly every second courses request answers 503; health is untouched.
    let state = backend
        .set_scenario(&fastapi::Scenario::Errors {
            handlers: vec![Handler::Courses],
            ratio: 0.5,
            status: 503,
        })
        .await;
    assert_eq!(state["scenario"], "errors");
    assert_eq!(state["error_status"], 503);
    assert_eq!(state["profile"], "tuned");
    let mut spec = LoadSpec::new(40.0, &[(Handler::Courses, 3), (Handler::Health, 1)]);
    spec.cap = Duration::from_secs(1);
    let report = Load::start(&backend, spec).finish().await;
    assert_eq!(report.total_failed(), 0, "{report:?}");
    assert_eq!(report.total_answered(), report.sent, "{report:?}");
    let courses = report.answered(Handler::Courses);
    let health = report.answered(Handler::Health);
    assert!(courses >= 6, "{report:?}");
    assert!(courses.abs_diff(3 * health) <= 3, "a 3:1 mix: {report:?}");
    assert_eq!(
        report.count(Handler::Courses, 503),
        courses / 2,
        "{report:?}"
    );
    assert_eq!(report.count(Handler::Health, 200), health);

    // The app's own counts and the exposition (exact codes in the tuned profile) agree.
    let state = backend.state().await;
    assert_eq!(
        state["served"]["/api/courses"]["503"].as_u64(),
        Some(courses / 2),
        "{state}"
    );
    let metrics = backend.metrics().await;
    assert_eq!(
        metrics.sum(
            "http_requests_total",
            &[("handler", "/api/courses"), ("status", "503")]
        ),
        (courses / 2) as f64
    );
    assert!(backend.log_tail().contains("/api/courses: answering 503"));

    // Surge: every request also waits per request in flight, so concurrent requests queue up
    // (courses take 0.5 s here, so the four overlap on any machine).
    let state = backend
        .control(serde_json::json!({
            "scenario": "surge",
            "per_inflight_s": 0.3,
            "latency_s": {"/api/courses": [0.5, 0.5]},
        }))
        .await
        .expect("surge with a fixed courses latency");
    assert_eq!(state["per_inflight_s"], 0.3);
    assert_eq!(state["latency_s"]["/api/courses"][0], 0.5);
    let http = support::http_client();
    let timed = (0..4).map(|_| {
        let request = http.get(format!("{}/api/courses", backend.url())).send();
        async move {
            let started = std::time::Instant::now();
            let status = request.await.expect("GET /api/courses").status();
            (status, started.elapsed())
        }
    });
    let answers = futures_util::future::join_all(timed).await;
    assert!(answers.iter().all(|(status, _)| status.is_success()));
    let slowest = answers.iter().map(|(_, took)| *took).max().unwrap();
    assert!(
        slowest >= Duration::from_millis(800),
        "a request that found another in flight waited 0.3 s more than 0.5 s: {answers:?}"
    );

    // Stopped on drop: the port no longer answers.
    let url = backend.url();
    drop(backend);
    assert!(http.get(format!("{url}/_control")).send().await.is_err());
}

#[tokio::test]
async fn fastapi_backend_reports_a_taken_port_as_address_in_use() {
    let python = backend_python();
    assert!(
        python.is_file(),
        "{} is missing: run `bash scripts/test.sh`",
        python.display()
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let port = taken.local_addr().expect("its address").port();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut process = PeerProcess::new("uvicorn", dir.path().join("app.log"));
    let mut command = Command::new(&python);
    command.arg(APP).args(["--port", &port.to_string()]);
    let error = process
        .spawn_and_wait(
            &mut command,
            "python3-venv",
            "never ready",
            Duration::from_millis(50),
            || async { false },
        )
        .await
        .expect_err("the port is taken");
    // What start_on_free_port looks for to retry on another port.
    assert!(
        error.to_lowercase().contains("address already in use"),
        "{error}"
    );
}
