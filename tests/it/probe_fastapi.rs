//! The Prometheus probe and the shipped runbook beside the real FastAPI app
//! (prometheus-fastapi-instrumentator under uvicorn, real HTTP load, a real Prometheus scraping it
//! every second), in the library's default profile and in a tuned one: a slow chat pages latency, a
//! quarter of 500s pages errors, a wave of 401s on login opens auth, before any error the error
//! ratio reads 0, not "no data", and a surge stands out against the usual rate. Each reading is fed to the engine with the embedded runbook, and the
//! rule must fire once its `for` has passed (on the engine's own clock, not by waiting).

use std::sync::Arc;
use std::time::{Duration, Instant};

use harven_watchdog::clock::{Clock, Timestamp};
use harven_watchdog::config::{Config, Locale};
use harven_watchdog::engine::{Engine, SymptomState};
use harven_watchdog::observe::{Evidence, Observation, Outcome, ProbeReport, Value};
use harven_watchdog::probe::poll_once;
use harven_watchdog::probe::prometheus::PrometheusProbe;
use harven_watchdog::runbook::Runbook;

use crate::support;
use crate::support::fastapi::{FastApiBackend, Handler, Load, LoadSpec, Profile, Scenario};
use crate::support::prometheus::PrometheusServer;

/// Ten requests a second, chat dominating, plus health checks (which are not traffic).
const RPS: f64 = 10.0;
const MIX: [(Handler, u32); 4] = [
    (Handler::Chat, 6),
    (Handler::Login, 2),
    (Handler::Courses, 1),
    (Handler::Health, 1),
];
/// A login storm: users retrying a login that refuses them.
const LOGIN_STORM: [(Handler, u32); 4] = [
    (Handler::Login, 6),
    (Handler::Chat, 2),
    (Handler::Courses, 1),
    (Handler::Health, 1),
];

/// The shipped defaults and runbook, but for windows a test fills in seconds.
fn probe(prom: &PrometheusServer) -> PrometheusProbe {
    support::init();
    let env = [
        ("URL", prom.url()),
        ("INTERVAL", "2s".to_owned()),
        ("TIMEOUT", "1s".to_owned()),
        ("WINDOW", "15s".to_owned()),
        ("SHORT_WINDOW", "10s".to_owned()),
        ("BASELINE_WINDOW", "15s".to_owned()),
    ]
    .map(|(k, v)| (format!("HARVEN_WATCHDOG__PROMETHEUS__{k}"), v));
    let config = Config::load_with_env(&[], env).expect("config");
    let wanted = Runbook::embedded().wanted();
    PrometheusProbe::with_thresholds(
        config.prometheus,
        wanted.thresholds("prometheus.p95_seconds"),
    )
    .expect("probe")
}

/// Polls until `ready` holds; panics with the last observations after 90 s.
async fn poll_until(
    p: &mut PrometheusProbe,
    what: &str,
    ready: impl Fn(&[Observation]) -> bool,
) -> Vec<Observation> {
    let clock = Clock::system();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let report = poll_once(p, &clock).await;
        if let Some(obs) = report.result.as_ref().ok().filter(|o| ready(o)) {
            return obs.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{what}: never held; last: {report:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn get<'a>(obs: &'a [Observation], name: &str, labels: &[(&str, &str)]) -> Option<&'a Observation> {
    obs.iter().find(|o| {
        o.key.name == name
            && labels
                .iter()
                .all(|(k, v)| o.key.labels.get(*k).map(String::as_str) == Some(*v))
    })
}

fn number(obs: &[Observation], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    match get(obs, name, labels)?.outcome {
        Outcome::Value(Value::Number(n)) => Some(n),
        _ => None,
    }
}

/// The embedded runbook's `rule` on these observations: evaluated now and again once its `for` has
/// passed; returns the firing symptom's value and note.
fn fires(obs: &[Observation], rule: &str) -> (Option<Value>, Option<String>) {
    let runbook = Arc::new(Runbook::embedded());
    let for_ = runbook.rule(rule).expect("a shipped rule").1.for_;
    let t0 = Timestamp::from_unix_millis(1_790_000_000_000);
    let mut ev = Evidence::new();
    ev.apply(ProbeReport {
        source: "prometheus".into(),
        at: t0,
        took: Duration::from_millis(5),
        result: Ok(obs.to_vec()),
    });
    let mut engine = Engine::new(runbook, Locale::En);
    engine.evaluate(&ev, t0);
    let eval = engine.evaluate(&ev, t0 + for_ + Duration::from_secs(1));
    let symptom = eval
        .symptoms
        .iter()
        .find(|s| s.rule == rule && s.state == SymptomState::Firing)
        .unwrap_or_else(|| panic!("{rule} does not fire on {obs:#?}\n{:#?}", eval.symptoms));
    (
        symptom.value.clone(),
        symptom.note.as_ref().map(ToString::to_string),
    )
}

async fn exercise(profile: Profile) {
    let backend = FastApiBackend::start(profile).await;
    let prom = PrometheusServer::start(&[backend.target()]).await;
    let mut p = probe(&prom);
    let p95_key: &[(&str, &str)] = match profile {
        Profile::Default => &[
            ("handler", "*"),
            ("histogram", "http_request_duration_highr_seconds"),
        ],
        Profile::Tuned => &[
            ("handler", "/api/chat"),
            ("histogram", "http_request_duration_seconds"),
        ],
    };

    // Normal traffic: the ratios are 0, not no data, though no 5xx or 4xx series exists yet.
    let load = Load::start(&backend, LoadSpec::new(RPS, &MIX));
    let obs = poll_until(&mut p, "an error ratio", |o| {
        number(o, "prometheus.error_ratio", &[]).is_some()
            && number(o, "prometheus.p95_seconds", p95_key).is_some()
    })
    .await;
    let error = get(&obs, "prometheus.error_ratio", &[]).expect("error ratio");
    assert_eq!(
        error.outcome,
        Outcome::Value(Value::Number(0.0)),
        "{profile:?}: {obs:#?}"
    );
    assert!(
        error
            .note
            .as_ref()
            .map(ToString::to_string)
            .as_deref()
            .is_some_and(|n| n.contains("no 5xx series yet")),
        "{error:?}"
    );
    assert_eq!(
        number(&obs, "prometheus.auth_failure_ratio", &[]),
        Some(0.0),
        "{obs:#?}"
    );
    assert!(
        obs.iter().all(|o| o
            .key
            .labels
            .get("handler")
            .is_none_or(|h| h != "/metrics" && h != "/health")),
        "scrapes and health checks are not traffic: {obs:#?}"
    );
    assert!(
        obs.iter().all(|o| o.key.name != "prometheus.blind_spot"),
        "{obs:#?}"
    );
    load.stop().await;

    // A slow chat (4–6 s): latency pages, from the histogram that can show it.
    backend.set_scenario(&Scenario::slow_chat(4.0, 6.0)).await;
    let load = Load::start(&backend, LoadSpec::new(RPS, &MIX));
    let obs = poll_until(&mut p, "p95 above 3 s", |o| {
        number(o, "prometheus.p95_seconds", p95_key).is_some_and(|v| v > 3.0)
    })
    .await;
    let (value, note) = fires(&obs, "latency.p95_high");
    let note = note.unwrap_or_default();
    eprintln!("{profile:?}: latency.p95_high fires at {value:?} ({note})");
    match profile {
        Profile::Default => {
            assert!(note.contains("all handlers"), "{note}");
            assert!(note.contains("/api/chat"), "names the slow handler: {note}");
            assert!(!note.contains("/api/courses"), "{note}");
        }
        Profile::Tuned => assert!(note.contains("per handler"), "{note}"),
    }
    load.stop().await;

    // A quarter of the API's requests answer 500: errors pages.
    backend.set_scenario(&Scenario::errors(0.25)).await;
    let load = Load::start(&backend, LoadSpec::new(RPS, &MIX));
    let obs = poll_until(&mut p, "a 5xx ratio above 20 %", |o| {
        number(o, "prometheus.error_ratio", &[]).is_some_and(|v| v > 0.2)
    })
    .await;
    fires(&obs, "errors.ratio_high");
    load.stop().await;

    // A wave of 401s on login: auth opens, saying whether 401/403 could be told apart.
    backend.set_scenario(&Scenario::login_401(0.9)).await;
    let load = Load::start(&backend, LoadSpec::new(RPS, &LOGIN_STORM));
    let obs = poll_until(&mut p, "an auth failure ratio above 30 %", |o| {
        number(o, "prometheus.auth_failure_ratio", &[]).is_some_and(|v| v > 0.3)
    })
    .await;
    let (_, note) = fires(&obs, "auth.mass_401_403");
    let exact = get(&obs, "prometheus.auth_exact", &[]).map(|o| o.outcome.clone());
    match profile {
        Profile::Default => {
            assert_eq!(exact, Some(Outcome::Value(Value::Bool(false))));
            let note = note.unwrap_or_default();
            assert!(note.contains("cannot be told from 404/422"), "{note}");
            assert!(note.contains("should_group_status_codes=False"), "{note}");
        }
        Profile::Tuned => assert_eq!(exact, Some(Outcome::Value(Value::Bool(true)))),
    }
    load.stop().await;

    // A surge: five times the usual traffic is seen against the usual rate just before it.
    if profile == Profile::Default {
        backend.set_scenario(&Scenario::Normal).await;
        let quiet = Load::start(&backend, LoadSpec::new(4.0, &MIX));
        // Both windows quiet (3.6 counted requests/s; the storm before was 9).
        poll_until(&mut p, "a baseline of quiet traffic", |o| {
            number(o, "prometheus.request_rate", &[]).is_some_and(|r| r < 5.0)
                && number(o, "prometheus.request_rate_baseline", &[]).is_some_and(|r| r < 5.0)
        })
        .await;
        quiet.stop().await;
        let surge = Load::start(&backend, LoadSpec::new(20.0, &MIX));
        let obs = poll_until(&mut p, "a request rate 3 times its baseline", |o| {
            number(o, "prometheus.request_rate_ratio", &[]).is_some_and(|r| r > 3.0)
        })
        .await;
        let rate = number(&obs, "prometheus.request_rate", &[]).expect("a rate");
        assert!(
            rate > 8.0,
            "health checks are not counted, the rest is: {rate} req/s"
        );
        surge.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_defaults_page_latency_errors_and_auth() {
    exercise(Profile::Default).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tuned_instrumentation_pages_the_same_per_handler() {
    exercise(Profile::Tuned).await;
}
