//! The side-by-side benchmark of issue 12 (`scripts/bench-versus.sh`): harven-watchdog on its
//! shipped defaults against Prometheus alerting rules + Alertmanager on production defaults, in the
//! same run, on the same Prometheus and the same backend, both emailing the same SMTP server.
//!
//! ```text
//! versus_bench --bin PATH [--quick] [--rounds N] [--warmup S] [--noise S] [--diurnal S]
//!              [--scrape S] [--page-timeout S] [--resolve-timeout S] [--only NAME,NAME…]
//! ```
//!
//! Each scenario runs on a stack of its own, all stacks at once (a round); `--rounds` repeats the
//! round. A stack is:
//!
//! - the real FastAPI backend (`tests/fixtures/backend/app.py`, prometheus-fastapi-instrumentator's
//!   default profile) under [`RPS`] requests a second of real HTTP load ([`MIX`]);
//! - a real Prometheus scraping it every second (`--scrape`: e.g. 15, a common production
//!   interval), which also evaluates [`rules_yaml`] (the runbook's
//!   queries on `[5m]` windows, `for: 1m`, every 15 s as Debian's sample configuration does) and sends
//!   its alerts to
//! - a real Alertmanager (Debian's `prometheus-alertmanager`) on production defaults (`group_wait
//!   30s`, `group_interval 5m`, `repeat_interval 4h`, [`alertmanager_yaml`]) with an email receiver;
//! - the watchdog's release binary (`--bin`) on its shipped defaults, only addresses changed: the
//!   Prometheus URL, a real Redis, the status pages served locally, the SMTP server; Docker as it is
//!   (the default socket); Supabase off, as shipped;
//! - one aiosmtpd server both email.
//!
//! After `--warmup` seconds of normal traffic (idle CPU and RSS of both processes are measured over
//! its second half), the stack's scenario switches the backend and times, from the switch, each
//! system's first email for the scenario's section (the watchdog's `X-Harven-Section` with
//! `X-Harven-Event` `opened`/`reopened`; Alertmanager's `X-Alert-Section` with `X-Alert-Status:
//! firing`, headers its receiver sets), by the Maildir file's modification time. Where the scenario
//! measures recovery it then switches back to normal and times each system's resolved email. The
//! noisy-normal stack instead runs [`fastapi::noise`] for `--noise` seconds and counts every email of
//! either system in a section other than the watchdog's own (`watchdog`: its unwatched sources).
//! The diurnal stack does the same over `--diurnal` seconds of a day's swing of traffic
//! ([`diurnal_spec`]: random arrivals from 1 to 20 requests a second and back) with everyday
//! failed logins ([`everyday`]), and no spike at all.
//!
//! The table goes to stdout as markdown; progress and details go to stderr. Nothing here asserts.

// The integration tests' peers. Some imports there serve only their `#[cfg(test)]` parts.
#[allow(unused_imports)]
#[path = "../tests/it/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use support::alertmanager::Alertmanager;
use support::daemon::DaemonProcess;
use support::fastapi::{
    self, FastApiBackend, Handler, Load, LoadSpec, Profile, RateShape, Scenario,
};
use support::procfs::{Rss, cpu_percent, cpu_ticks};
use support::prometheus::{ExtraConfig, PrometheusServer};
use support::redis::RedisServer;
use support::saas::{FakeStatusPage, PageScenario};
use support::smtp::{ReceivedMail, SmtpServer};

/// Requests a second of the steady load.
const RPS: f64 = 10.0;
/// Chat dominating, plus health checks (which are not traffic), as in `tests/it/probe_fastapi.rs`.
const MIX: [(Handler, u32); 4] = [
    (Handler::Chat, 6),
    (Handler::Login, 2),
    (Handler::Courses, 1),
    (Handler::Health, 1),
];
/// The handlers both systems leave out of ratios (the watchdog's default `exclude_handlers` that
/// this app has).
const NOT_TRAFFIC: &str = "/metrics|/health";
/// How often the rules are evaluated (Debian's sample `prometheus.yml`: `evaluation_interval: 15s`).
const RULE_INTERVAL: &str = "15s";

/// One scenario of the benchmark.
#[derive(Debug, Clone)]
struct Plan {
    name: &'static str,
    /// What the backend switches to; `None` for noisy normal.
    scenario: Option<Scenario>,
    /// What the scenario is, for the table.
    what: &'static str,
    /// The section (watchdog) and `section` label (Alertmanager) that should page.
    section: &'static str,
    /// Switch back to normal after both paged, and time the resolved emails.
    recovery: bool,
    /// No switch and no spikes: a day's swing of traffic (see [`diurnal_spec`]) with its
    /// everyday failed logins, for `--diurnal` seconds; any page is a false one.
    diurnal: bool,
}

fn plans() -> Vec<Plan> {
    vec![
        Plan {
            name: "slow",
            scenario: Some(Scenario::slow_chat(6.0, 8.0)),
            what: "chat 6–8 s",
            section: "latency",
            recovery: true,
            diurnal: false,
        },
        Plan {
            name: "errors",
            scenario: Some(Scenario::errors(0.25)),
            what: "25 % of /api answer 500",
            section: "errors",
            recovery: true,
            diurnal: false,
        },
        Plan {
            name: "mild-slow",
            scenario: Some(Scenario::slow_chat(3.0, 4.1)),
            what: "chat 3.0–4.1 s",
            section: "latency",
            recovery: false,
            diurnal: false,
        },
        Plan {
            name: "mild-errors",
            scenario: Some(Scenario::errors(0.08)),
            what: "8 % of /api answer 500",
            section: "errors",
            recovery: false,
            diurnal: false,
        },
        Plan {
            name: "noise",
            scenario: None,
            what: "every 25–35 s a spike: 3 s all-slow chat, 4 s 60 % 5xx, 4 s login 401s, 8 s 2× traffic",
            section: "",
            recovery: false,
            diurnal: false,
        },
        Plan {
            name: "diurnal",
            scenario: None,
            what: "a day squeezed into the run: 1 → 20 → 1 requests/s, random arrivals, 8 % of logins 401, chat 0.1–1.5 s",
            section: "",
            recovery: false,
            diurnal: true,
        },
    ]
}

/// Prometheus' alerting rules: the runbook's conditions on `[5m]` windows with `for: 1m`. The p95
/// reads the label-less high-resolution histogram, the only one whose buckets can show 3 s in the
/// instrumentator's default profile (its per-handler buckets end at 1 s), as the watchdog's probe
/// does; the ratios leave out [`NOT_TRAFFIC`] like the watchdog.
fn rules_yaml() -> String {
    format!(
        r#"groups:
  - name: harven-runbook
    interval: {RULE_INTERVAL}
    rules:
      - alert: HarvenLatencyP95High
        expr: histogram_quantile(0.95, sum by (le) (rate(http_request_duration_highr_seconds_bucket[5m]))) > 3
        for: 1m
        labels: {{ section: latency, severity: page }}
      - alert: HarvenErrorRatioHigh
        expr: sum(rate(http_requests_total{{status=~"5..", handler!~"{NOT_TRAFFIC}"}}[5m])) / sum(rate(http_requests_total{{handler!~"{NOT_TRAFFIC}"}}[5m])) > 0.05
        for: 1m
        labels: {{ section: errors, severity: page }}
      - alert: HarvenAuthFailuresHigh
        expr: sum(rate(http_requests_total{{status=~"4..", handler!~"none|{NOT_TRAFFIC}"}}[5m])) / sum(rate(http_requests_total{{handler!~"{NOT_TRAFFIC}"}}[5m])) > 0.2
        for: 1m
        labels: {{ section: auth, severity: page }}
"#
    )
}

/// Alertmanager on production defaults, emailing `smtp_port` on 127.0.0.1 without TLS; its emails
/// carry `X-Bench-System`, `X-Alert-Status` and `X-Alert-Section` headers.
fn alertmanager_yaml(smtp_port: u16) -> String {
    format!(
        r#"route:
  receiver: email
  group_by: ['alertname']
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
receivers:
  - name: email
    email_configs:
      - to: oncall@test.harven
        from: alertmanager@test.harven
        smarthost: 127.0.0.1:{smtp_port}
        hello: localhost
        require_tls: false
        send_resolved: true
        headers:
          Subject: '[alertmanager {{{{ .Status }}}}] {{{{ .GroupLabels.alertname }}}}'
          X-Bench-System: alertmanager
          X-Alert-Status: '{{{{ .Status }}}}'
          X-Alert-Section: '{{{{ .CommonLabels.section }}}}'
"#
    )
}

/// The sections Prometheus adds for the rules and Alertmanager at `am_target`, scraping every
/// `scrape`.
fn prometheus_extra(am_target: &str, scrape: Duration) -> ExtraConfig {
    ExtraConfig {
        scrape_interval: Some(scrape),
        yaml: format!(
            "rule_files: ['rules.yml']\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{am_target}']\n"
        ),
        files: vec![("rules.yml".to_owned(), rules_yaml())],
        ..ExtraConfig::default()
    }
}

/// The reading the scenario moves, over the last minute, as PromQL.
fn reading_query(section: &str) -> Option<String> {
    match section {
        "latency" => Some(
            "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_highr_seconds_bucket[1m])))"
                .to_owned(),
        ),
        "errors" => Some(format!(
            "sum(rate(http_requests_total{{status=~\"5..\", handler!~\"{NOT_TRAFFIC}\"}}[1m])) / sum(rate(http_requests_total{{handler!~\"{NOT_TRAFFIC}\"}}[1m]))"
        )),
        _ => None,
    }
}

fn alert_name(section: &str) -> &'static str {
    match section {
        "latency" => "HarvenLatencyP95High",
        "errors" => "HarvenErrorRatioHigh",
        _ => "HarvenAuthFailuresHigh",
    }
}

// ------------------------------------------------------------------------------------------------
// The mail
// ------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Watchdog,
    Alertmanager,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// An incident opened or reopened (watchdog), an alert group firing (Alertmanager).
    Page,
    Resolved,
    /// Anything else the watchdog sends (escalations, reminders, digests).
    Other,
}

/// What one received email is, by its headers.
#[derive(Debug, Clone, PartialEq)]
struct Mail {
    system: System,
    section: String,
    event: Event,
    subject: String,
}

fn classify(mail: &ReceivedMail) -> Option<Mail> {
    let subject = mail.subject().unwrap_or_default();
    if let Some(section) = mail.header("X-Harven-Section") {
        let event = match mail.header("X-Harven-Event") {
            Some("opened" | "reopened") => Event::Page,
            Some("resolved") => Event::Resolved,
            _ => Event::Other,
        };
        return Some(Mail {
            system: System::Watchdog,
            section: section.to_owned(),
            event,
            subject,
        });
    }
    if mail.header("X-Bench-System") == Some("alertmanager") {
        let event = match mail.header("X-Alert-Status") {
            Some("firing") => Event::Page,
            Some("resolved") => Event::Resolved,
            _ => Event::Other,
        };
        return Some(Mail {
            system: System::Alertmanager,
            section: mail
                .header("X-Alert-Section")
                .unwrap_or_default()
                .to_owned(),
            event,
            subject,
        });
    }
    None
}

/// Every email the server received since `since`, classified, with when it was received.
fn mails_since(smtp: &SmtpServer, since: SystemTime) -> Vec<(SystemTime, Mail)> {
    smtp.messages()
        .into_iter()
        .filter_map(|m| {
            let at = std::fs::metadata(&m.path)
                .and_then(|md| md.modified())
                .ok()?;
            let mail = classify(&m)?;
            (at >= since).then_some((at, mail))
        })
        .collect()
}

/// Waits up to `timeout` for the first email of `system` about `section` with `event` received
/// since `since`; its delay from `since` in seconds, or `None`.
async fn first_mail(
    smtp: &SmtpServer,
    system: System,
    section: &str,
    event: Event,
    since: SystemTime,
    timeout: Duration,
) -> Option<f64> {
    support::wait_for_some(timeout, Duration::from_millis(200), || {
        let found = mails_since(smtp, since)
            .into_iter()
            .find(|(_, m)| m.system == system && m.section == section && m.event == event)
            .map(|(at, _)| secs(at, since));
        async move { found }
    })
    .await
    .ok()
}

/// `later - earlier` in seconds (negative when `later` is earlier).
fn secs(later: SystemTime, earlier: SystemTime) -> f64 {
    match later.duration_since(earlier) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

// ------------------------------------------------------------------------------------------------
// The stack
// ------------------------------------------------------------------------------------------------

/// Every process of one scenario's run; dropped together.
struct Stack {
    // The load first, so no request is sent to a backend that is going away.
    _load: Load,
    daemon: DaemonProcess,
    prometheus: PrometheusServer,
    alertmanager: Alertmanager,
    _status: [FakeStatusPage; 2],
    _redis: RedisServer,
    backend: FastApiBackend,
    smtp: SmtpServer,
}

impl Stack {
    /// Starts a stack whose backend gets `load` and whose Prometheus scrapes every `scrape`.
    async fn start(bin: &Path, load: LoadSpec, scrape: Duration) -> Stack {
        let smtp = SmtpServer::start().await;
        let backend = FastApiBackend::start(Profile::Default).await;
        let load = Load::start(&backend, load);
        let redis = RedisServer::start().await;
        let status = [
            FakeStatusPage::start(PageScenario::indicator("none")).await,
            FakeStatusPage::start(PageScenario::indicator("none")).await,
        ];
        let alertmanager = Alertmanager::start(&alertmanager_yaml(smtp.port())).await;
        let prometheus = PrometheusServer::start_with(
            &[backend.target()],
            &prometheus_extra(&alertmanager.target(), scrape),
        )
        .await;
        // The first scrapes come some seconds after Prometheus starts; a rate needs two.
        let window = (scrape * 4).max(Duration::from_secs(30)).as_secs();
        prometheus
            .wait_for(
                &format!("sum(rate(http_requests_total[{window}s]))"),
                |s| !s.is_empty(),
                support::STARTUP_TIMEOUT,
            )
            .await;
        let env: Vec<(String, String)> = [
            ("PROMETHEUS__URL", prometheus.url()),
            ("REDIS__URL", redis.url()),
            ("STATUS__OPENAI__URL", status[0].url().to_string()),
            ("STATUS__SUPABASE__URL", status[1].url().to_string()),
            ("SMTP__HOST", smtp.host().to_owned()),
            ("SMTP__PORT", smtp.port().to_string()),
            ("SMTP__TLS", "none".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (format!("HARVEN_WATCHDOG__{k}"), v))
        .collect();
        let daemon = DaemonProcess::start(bin, env).await;
        Stack {
            _load: load,
            daemon,
            prometheus,
            alertmanager,
            _status: status,
            _redis: redis,
            backend,
            smtp,
        }
    }

    /// The scenario's reading over the last minute.
    async fn reading(&self, section: &str) -> Option<f64> {
        let query = reading_query(section)?;
        let samples = self.prometheus.query(&query).await.ok()?;
        samples.first().map(|s| s.value)
    }

    /// When the rule of `section` first became pending and firing in Prometheus after `since`
    /// (polled every second until firing or `timeout`), in seconds from `since`.
    async fn alert_path(&self, section: &str, since: SystemTime, timeout: Duration) -> AlertPath {
        let alert = alert_name(section);
        let mut path = AlertPath::default();
        let http = support::http_client();
        let url = format!("{}/api/v1/alerts", self.prometheus.url());
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let polled = Instant::now();
            if let Some(this) = async {
                let body: serde_json::Value =
                    http.get(&url).send().await.ok()?.json().await.ok()?;
                body["data"]["alerts"]
                    .as_array()?
                    .iter()
                    .find(|a| a["labels"]["alertname"].as_str() == Some(alert))
                    .cloned()
            }
            .await
            {
                if path.pending.is_none() {
                    // activeAt: the evaluation at which the condition first held.
                    path.pending = this["activeAt"]
                        .as_str()
                        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
                        .map(|t| secs(t, since));
                }
                if this["state"].as_str() == Some("firing") {
                    path.firing = Some(secs(SystemTime::now(), since));
                    break;
                }
            }
            tokio::time::sleep_until((polled + Duration::from_secs(1)).into()).await;
        }
        path
    }
}

fn load_spec() -> LoadSpec {
    LoadSpec {
        max_in_flight: 256,
        cap: Duration::from_secs(24 * 3600),
        ..LoadSpec::new(RPS, &MIX)
    }
}

/// The peak of the diurnal swing, requests a second (its night is [`DIURNAL_LOW_RPS`]).
const DIURNAL_PEAK_RPS: f64 = 20.0;
const DIURNAL_LOW_RPS: f64 = 1.0;

/// A day of traffic squeezed into `day`, night at the start: [`DIURNAL_LOW_RPS`] rising to
/// [`DIURNAL_PEAK_RPS`] at half of it and back, with random arrivals.
fn diurnal_spec(day: Duration, seed: u64) -> LoadSpec {
    LoadSpec {
        rps: DIURNAL_PEAK_RPS,
        shape: Some(RateShape {
            low_rps: DIURNAL_LOW_RPS,
            period: day,
            seed,
        }),
        ..load_spec()
    }
}

/// The diurnal stack's everyday behaviour, not an incident: users mistyping passwords (8 % of
/// logins answer 401) and chat answers spread over 0.1–1.5 s.
fn everyday() -> serde_json::Value {
    serde_json::json!({
        "scenario": "auth",
        "handlers": [Handler::Login.path()],
        "unauthorized_ratio": 0.08,
        "unauthorized_status": 401,
        "latency_s": {Handler::Chat.path(): [0.1, 1.5]},
    })
}

/// When Prometheus' rule for the scenario first held (`activeAt`) and when it was first seen
/// firing (polled every second), in seconds from the switch.
#[derive(Debug, Default, Clone, Copy)]
struct AlertPath {
    pending: Option<f64>,
    firing: Option<f64>,
}

/// What one stack measured.
#[derive(Debug, Default, Clone)]
struct Outcome {
    /// Seconds from the switch to each system's first page (watchdog, Alertmanager).
    page: [Option<f64>; 2],
    /// Seconds from the switch back to normal to each system's resolved email.
    resolved: Option<[Option<f64>; 2]>,
    /// The reading over the last minute when the later page came.
    reading: Option<f64>,
    alert_path: AlertPath,
    /// Noisy normal: spikes run, and each system's pages (subject lines).
    spikes: usize,
    false_pages: [Vec<String>; 2],
    /// Idle RSS (MiB) and CPU (% of a core) of each process (watchdog, Alertmanager), over
    /// `idle_seconds`: the warm-up's second half, or the noise (no incident in either) where the
    /// stack runs it, long enough for the 10 ms ticks of `/proc` to tell 0.01 % apart.
    idle_rss: [f64; 2],
    idle_cpu: [f64; 2],
    idle_seconds: f64,
    /// Requests the app answered over its whole run (noise and diurnal stacks).
    served: u64,
}

/// The requests counted in one handler's entry of the app's `served` state: a number, or an
/// object of numbers by status.
fn count_of(entry: &serde_json::Value) -> Option<u64> {
    entry.as_u64().or_else(|| {
        entry
            .as_object()
            .map(|by| by.values().filter_map(serde_json::Value::as_u64).sum())
    })
}

struct Settings {
    warmup: Duration,
    noise: Duration,
    /// How long the diurnal stack runs after its warm-up (one whole day of its swing).
    diurnal: Duration,
    /// Prometheus' scrape interval.
    scrape: Duration,
    page_timeout: Duration,
    resolve_timeout: Duration,
}

async fn run_plan(bin: &Path, plan: &Plan, settings: &Settings, seed: u64) -> Outcome {
    let load = if plan.diurnal {
        diurnal_spec(settings.diurnal, seed)
    } else {
        load_spec()
    };
    let stack = Stack::start(bin, load, settings.scrape).await;
    if plan.diurnal {
        stack
            .backend
            .control(everyday())
            .await
            .expect("the app takes the everyday behaviour");
    }
    let started = SystemTime::now();
    eprintln!("[{}] stack up; warming up {:?}", plan.name, settings.warmup);
    let mut outcome = Outcome::default();

    // Idle: the second half of the warm-up (start-up's first polls are over by then).
    tokio::time::sleep(settings.warmup / 2).await;
    let pids = [
        stack.daemon.pid(),
        stack.alertmanager.pid().expect("alertmanager runs"),
    ];
    let before = pids.map(cpu_ticks);
    let t0 = Instant::now();
    tokio::time::sleep(settings.warmup - settings.warmup / 2).await;
    let after = pids.map(cpu_ticks);
    let elapsed = t0.elapsed();
    for i in 0..2 {
        outcome.idle_cpu[i] = cpu_percent(before[i], after[i], elapsed);
        outcome.idle_rss[i] = Rss::of(pids[i]).total;
    }
    outcome.idle_seconds = elapsed.as_secs_f64();
    let early: Vec<String> = mails_since(&stack.smtp, started)
        .into_iter()
        .filter(|(_, m)| m.section != "watchdog")
        .map(|(_, m)| format!("{:?} {}", m.system, m.subject))
        .collect();
    if !early.is_empty() {
        eprintln!("[{}] pages during the warm-up: {early:?}", plan.name);
    }

    let Some(scenario) = &plan.scenario else {
        let since = SystemTime::now();
        let (before, t0) = (pids.map(cpu_ticks), Instant::now());
        let traffic = async {
            if plan.diurnal {
                eprintln!("[{}] a day of traffic in {:?}", plan.name, settings.diurnal);
                tokio::time::sleep(settings.diurnal).await;
                Vec::new()
            } else {
                eprintln!("[{}] noise for {:?}", plan.name, settings.noise);
                fastapi::noise(&stack.backend, &load_spec(), settings.noise, seed).await
            }
        };
        // The watchdog's CPU minute by minute, so a figure out of line says when it was spent.
        let sampler = async {
            let mut last = (cpu_ticks(pids[0]), Instant::now());
            for minute in 1.. {
                tokio::time::sleep(Duration::from_secs(60)).await;
                let now = (cpu_ticks(pids[0]), Instant::now());
                eprintln!(
                    "[{}] minute {minute}: watchdog CPU {:.3} % of a core",
                    plan.name,
                    cpu_percent(last.0, now.0, now.1 - last.1)
                );
                last = now;
            }
        };
        let spikes = tokio::select! {
            spikes = traffic => spikes,
            () = sampler => unreachable!("the sampler runs until the traffic ends"),
        };
        let (after, elapsed) = (pids.map(cpu_ticks), t0.elapsed());
        for i in 0..2 {
            outcome.idle_cpu[i] = cpu_percent(before[i], after[i], elapsed);
            outcome.idle_rss[i] = Rss::of(pids[i]).total;
        }
        outcome.idle_seconds = elapsed.as_secs_f64();
        outcome.spikes = spikes.len();
        outcome.served = stack.backend.state().await["served"]
            .as_object()
            .map_or(0, |by| by.values().filter_map(count_of).sum());
        for (at, mail) in mails_since(&stack.smtp, since) {
            if mail.section == "watchdog" {
                continue;
            }
            let i = usize::from(mail.system == System::Alertmanager);
            outcome.false_pages[i].push(format!(
                "{:.0} s: [{}] {}",
                secs(at, since),
                mail.section,
                mail.subject
            ));
        }
        eprintln!(
            "[{}] {} spikes; false pages: {:?}",
            plan.name, outcome.spikes, outcome.false_pages
        );
        return outcome;
    };

    let switched = SystemTime::now();
    stack.backend.set_scenario(scenario).await;
    eprintln!("[{}] switched to {scenario:?}", plan.name);
    let (watchdog, alertmanager, path) = tokio::join!(
        first_mail(
            &stack.smtp,
            System::Watchdog,
            plan.section,
            Event::Page,
            switched,
            settings.page_timeout
        ),
        first_mail(
            &stack.smtp,
            System::Alertmanager,
            plan.section,
            Event::Page,
            switched,
            settings.page_timeout
        ),
        stack.alert_path(plan.section, switched, settings.page_timeout),
    );
    outcome.page = [watchdog, alertmanager];
    outcome.alert_path = path;
    outcome.reading = stack.reading(plan.section).await;
    eprintln!(
        "[{}] pages: watchdog {watchdog:?} s, Alertmanager {alertmanager:?} s (rule pending {:?} s, firing {:?} s); reading {:?}",
        plan.name, path.pending, path.firing, outcome.reading
    );
    if watchdog.is_none() {
        eprintln!(
            "[{}] daemon log tail:\n{}",
            plan.name,
            stack.daemon.log_tail()
        );
    }
    if alertmanager.is_none() {
        eprintln!(
            "[{}] Alertmanager log tail:\n{}",
            plan.name,
            stack.alertmanager.log_tail()
        );
    }
    if plan.recovery && watchdog.is_some() && alertmanager.is_some() {
        let back = SystemTime::now();
        stack.backend.set_scenario(&Scenario::Normal).await;
        let (watchdog, alertmanager) = tokio::join!(
            first_mail(
                &stack.smtp,
                System::Watchdog,
                plan.section,
                Event::Resolved,
                back,
                settings.resolve_timeout
            ),
            first_mail(
                &stack.smtp,
                System::Alertmanager,
                plan.section,
                Event::Resolved,
                back,
                settings.resolve_timeout
            ),
        );
        outcome.resolved = Some([watchdog, alertmanager]);
        eprintln!(
            "[{}] resolved: watchdog {watchdog:?} s, Alertmanager {alertmanager:?} s",
            plan.name
        );
    }
    outcome
}

// ------------------------------------------------------------------------------------------------
// The table
// ------------------------------------------------------------------------------------------------

/// `median (min–max)` of the values, or the median alone for one; `none in T s` counts misses.
fn summary(values: &[Option<f64>], unit: &str, decimals: usize, timeout: Duration) -> String {
    let mut got: Vec<f64> = values.iter().flatten().copied().collect();
    let missed = values.len() - got.len();
    let mut text = if got.is_empty() {
        String::new()
    } else {
        got.sort_by(f64::total_cmp);
        let median = median(&got);
        let (low, high) = (
            format!("{:.decimals$}", got[0]),
            format!("{:.decimals$}", got[got.len() - 1]),
        );
        if low == high {
            format!("{median:.decimals$}{unit}")
        } else {
            format!("{median:.decimals$}{unit} ({low}–{high})")
        }
    };
    if missed > 0 {
        if !text.is_empty() {
            text.push_str("; ");
        }
        text.push_str(&format!(
            "{missed}× none within {:.0} s",
            timeout.as_secs_f64()
        ));
    }
    text
}

/// The median of sorted `values` (not empty).
fn median(values: &[f64]) -> f64 {
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The median ratio watchdog / Alertmanager over the rounds where both emailed.
fn ratio(pairs: &[[Option<f64>; 2]]) -> String {
    let mut ratios: Vec<f64> = pairs
        .iter()
        .filter_map(|[w, a]| Some((*w)? / (*a).filter(|a| *a > 0.0)?))
        .collect();
    if ratios.is_empty() {
        return "—".to_owned();
    }
    ratios.sort_by(f64::total_cmp);
    format!("{:.2}", median(&ratios))
}

fn table(results: &[(Plan, Vec<Outcome>)], settings: &Settings) -> String {
    let mut out = String::from(
        "| scenario (from the switch) | reading over the last minute at the later page | harven-watchdog | Alertmanager | watchdog / AM |\n|---|---|---|---|---|\n",
    );
    let pt = settings.page_timeout;
    let rt = settings.resolve_timeout;
    for (plan, outcomes) in results {
        if plan.scenario.is_none() {
            let [w, a] = [0, 1].map(|i| {
                outcomes
                    .iter()
                    .map(|o| o.false_pages[i].len())
                    .sum::<usize>()
            });
            let served: u64 = outcomes.iter().map(|o| o.served).sum();
            if plan.diurnal {
                let minutes = settings.diurnal.as_secs_f64() / 60.0 * outcomes.len() as f64;
                out.push_str(&format!(
                    "| a day's swing in {minutes:.0} min ({}; {served} requests): false pages | — | {w} | {a} | — |\n",
                    plan.what
                ));
                continue;
            }
            let spikes: usize = outcomes.iter().map(|o| o.spikes).sum();
            let minutes = settings.noise.as_secs_f64() / 60.0 * outcomes.len() as f64;
            out.push_str(&format!(
                "| noisy normal, {minutes:.0} min, {spikes} spikes: false pages | — | {w} | {a} | — |\n"
            ));
            continue;
        }
        let pages: Vec<[Option<f64>; 2]> = outcomes.iter().map(|o| o.page).collect();
        let readings: Vec<Option<f64>> = outcomes.iter().map(|o| o.reading).collect();
        let reading = if plan.section == "latency" {
            summary(&readings, " s p95", 1, pt)
        } else {
            summary(
                &readings
                    .iter()
                    .map(|r| r.map(|v| v * 100.0))
                    .collect::<Vec<_>>(),
                " % 5xx",
                1,
                pt,
            )
        };
        out.push_str(&format!(
            "| {} ({}) → page | {reading} | {} | {} | {} |\n",
            plan.name,
            plan.what,
            summary(&pages.iter().map(|p| p[0]).collect::<Vec<_>>(), " s", 0, pt),
            summary(&pages.iter().map(|p| p[1]).collect::<Vec<_>>(), " s", 0, pt),
            ratio(&pages),
        ));
        let resolved: Vec<[Option<f64>; 2]> = outcomes.iter().filter_map(|o| o.resolved).collect();
        if plan.recovery && !resolved.is_empty() {
            out.push_str(&format!(
                "| recovery after {}: back to normal → resolved | — | {} | {} | {} |\n",
                plan.name,
                summary(
                    &resolved.iter().map(|p| p[0]).collect::<Vec<_>>(),
                    " s",
                    0,
                    rt
                ),
                summary(
                    &resolved.iter().map(|p| p[1]).collect::<Vec<_>>(),
                    " s",
                    0,
                    rt
                ),
                ratio(&resolved),
            ));
        }
    }
    // The noise stacks' figures (the longest idle), else every stack's warm-up.
    let noise: Vec<&Outcome> = results
        .iter()
        .filter(|(p, _)| p.scenario.is_none() && !p.diurnal)
        .flat_map(|(_, o)| o)
        .collect();
    let over = if noise.is_empty() {
        "warm-up's second half"
    } else {
        "noisy normal"
    };
    let all: Vec<&Outcome> = if noise.is_empty() {
        results.iter().flat_map(|(_, o)| o).collect()
    } else {
        noise
    };
    let seconds: Vec<f64> = all.iter().map(|o| o.idle_seconds).collect();
    let seconds = seconds.iter().copied().fold(f64::INFINITY, f64::min);
    let rss: [Vec<Option<f64>>; 2] =
        [0, 1].map(|i| all.iter().map(|o| Some(o.idle_rss[i])).collect());
    let cpu: [Vec<Option<f64>>; 2] =
        [0, 1].map(|i| all.iter().map(|o| Some(o.idle_cpu[i])).collect());
    let ratio_of = |v: &[Vec<Option<f64>>; 2]| {
        let pairs: Vec<[Option<f64>; 2]> = v[0].iter().zip(&v[1]).map(|(w, a)| [*w, *a]).collect();
        ratio(&pairs)
    };
    let n = all.len();
    out.push_str(&format!(
        "| idle RSS, end of the {over} (no incident; {n} stack(s)) | — | {} | {} | {} |\n",
        summary(&rss[0], " MiB", 1, pt),
        summary(&rss[1], " MiB", 1, pt),
        ratio_of(&rss),
    ));
    out.push_str(&format!(
        "| idle CPU, % of a core, over the {over} ({seconds:.0} s; {n} stack(s)) | — | {} | {} | {} |\n",
        summary(&cpu[0], " %", 3, pt),
        summary(&cpu[1], " %", 3, pt),
        ratio_of(&cpu),
    ));
    out
}

/// Alertmanager's path per scenario: rule condition first true, firing, email (medians).
fn alert_paths(results: &[(Plan, Vec<Outcome>)]) -> String {
    let mut out = String::from(
        "| scenario | rule first true (activeAt) | rule firing (for 1m, seen) | Alertmanager email (group_wait 30s) |\n|---|---|---|---|\n",
    );
    let cell = |values: Vec<Option<f64>>| {
        let mut got: Vec<f64> = values.into_iter().flatten().collect();
        if got.is_empty() {
            return "—".to_owned();
        }
        got.sort_by(f64::total_cmp);
        format!("{:.0} s", median(&got))
    };
    for (plan, outcomes) in results.iter().filter(|(p, _)| p.scenario.is_some()) {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            plan.name,
            cell(outcomes.iter().map(|o| o.alert_path.pending).collect()),
            cell(outcomes.iter().map(|o| o.alert_path.firing).collect()),
            cell(outcomes.iter().map(|o| o.page[1]).collect()),
        ));
    }
    out
}

// ------------------------------------------------------------------------------------------------
// main
// ------------------------------------------------------------------------------------------------

fn usage(problem: &str) -> ! {
    eprintln!(
        "versus_bench: {problem}\nusage: versus_bench --bin PATH [--quick] [--rounds N] [--warmup S] [--noise S] [--diurnal S] [--scrape S] [--page-timeout S] [--resolve-timeout S] [--only NAME,…]"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let quick = args.iter().any(|a| a == "--quick");
    let num = |name: &str, quick_default: u64, full_default: u64| {
        opt(name).map_or(if quick { quick_default } else { full_default }, |v| {
            v.parse()
                .unwrap_or_else(|_| usage(&format!("{name}: {v:?} is not a number")))
        })
    };
    let bin = PathBuf::from(opt("--bin").unwrap_or_else(|| usage("--bin PATH is required")));
    if !bin.is_file() {
        usage(&format!("{} is not a file", bin.display()));
    }
    let rounds = num("--rounds", 1, 3).max(1);
    let settings = Settings {
        warmup: Duration::from_secs(num("--warmup", 90, 330).max(10)),
        noise: Duration::from_secs(num("--noise", 480, 1200)),
        diurnal: Duration::from_secs(num("--diurnal", 600, 3600).max(60)),
        scrape: Duration::from_secs(num("--scrape", 1, 1).max(1)),
        page_timeout: Duration::from_secs(num("--page-timeout", 600, 900)),
        resolve_timeout: Duration::from_secs(num("--resolve-timeout", 780, 1200)),
    };
    let mut chosen = plans();
    if let Some(only) = opt("--only") {
        let names: Vec<&str> = only.split(',').collect();
        chosen.retain(|p| names.contains(&p.name));
        if chosen.is_empty() {
            usage(&format!("--only {only}: no such scenario"));
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let started = Instant::now();
    let mut results: Vec<(Plan, Vec<Outcome>)> =
        chosen.iter().map(|p| (p.clone(), Vec::new())).collect();
    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        let outcomes = rt.block_on(futures_util::future::join_all(
            chosen
                .iter()
                .enumerate()
                .map(|(i, plan)| run_plan(&bin, plan, &settings, (round * 16 + i as u64) + 1)),
        ));
        for (slot, outcome) in results.iter_mut().zip(outcomes) {
            slot.1.push(outcome);
        }
    }
    let took = started.elapsed();
    println!(
        "harven-watchdog (shipped defaults) vs Prometheus rules + Alertmanager (production defaults), {} mode: {rounds} round(s), Prometheus scraping every {} s, warm-up {} s, noise {} s, a day in {} s; took {:.0} min\n",
        if quick { "quick" } else { "full" },
        settings.scrape.as_secs(),
        settings.warmup.as_secs(),
        settings.noise.as_secs(),
        settings.diurnal.as_secs(),
        took.as_secs_f64() / 60.0
    );
    println!("{}", table(&results, &settings));
    println!("Alertmanager's path, from the switch (medians):\n");
    println!("{}", alert_paths(&results));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_are_the_runbooks_on_five_minute_windows_with_for_one_minute() {
        let rules = rules_yaml();
        assert_eq!(rules.matches("[5m]").count(), 5, "{rules}");
        assert_eq!(rules.matches("for: 1m").count(), 3, "{rules}");
        assert!(
            rules.contains("> 3\n") && rules.contains("> 0.05\n"),
            "{rules}"
        );
        assert!(rules.contains("section: latency") && rules.contains("section: errors"));
        assert!(rules.contains(r#"handler!~"/metrics|/health""#), "{rules}");
    }

    #[test]
    fn alertmanager_uses_the_production_timers_and_marks_its_mail() {
        let config = alertmanager_yaml(2525);
        for line in [
            "group_wait: 30s",
            "group_interval: 5m",
            "repeat_interval: 4h",
            "smarthost: 127.0.0.1:2525",
            "require_tls: false",
            "send_resolved: true",
            "X-Alert-Status: '{{ .Status }}'",
            "X-Alert-Section: '{{ .CommonLabels.section }}'",
        ] {
            assert!(config.contains(line), "{line} missing from\n{config}");
        }
        let extra = prometheus_extra("127.0.0.1:9093", Duration::from_secs(15));
        assert!(extra.yaml.contains("targets: ['127.0.0.1:9093']"));
        assert_eq!(extra.scrape_interval, Some(Duration::from_secs(15)));
        assert_eq!(extra.files[0].0, "rules.yml");
    }

    fn mail(headers: &str) -> ReceivedMail {
        let raw = format!("{headers}Subject: x\r\n\r\nbody\r\n");
        ReceivedMail::parse(PathBuf::from("m"), raw.as_bytes())
    }

    #[test]
    fn mail_is_told_apart_by_its_headers() {
        let page = classify(&mail(
            "X-Harven-Section: latency\r\nX-Harven-Event: opened\r\nX-Harven-Level: L1\r\n",
        ))
        .expect("a watchdog mail");
        assert_eq!(
            (page.system, page.section.as_str(), page.event),
            (System::Watchdog, "latency", Event::Page)
        );
        let resolved = classify(&mail(
            "X-Bench-System: alertmanager\r\nX-Alert-Status: resolved\r\nX-Alert-Section: errors\r\n",
        ))
        .expect("an Alertmanager mail");
        assert_eq!(
            (resolved.system, resolved.section.as_str(), resolved.event),
            (System::Alertmanager, "errors", Event::Resolved)
        );
        assert_eq!(classify(&mail("X-Other: 1\r\n")), None);
    }

    #[test]
    fn the_table_has_every_scenario_misses_and_ratios() {
        let settings = Settings {
            warmup: Duration::from_secs(90),
            noise: Duration::from_secs(480),
            diurnal: Duration::from_secs(600),
            scrape: Duration::from_secs(1),
            page_timeout: Duration::from_secs(600),
            resolve_timeout: Duration::from_secs(780),
        };
        let results: Vec<(Plan, Vec<Outcome>)> = plans()
            .into_iter()
            .map(|p| {
                let outcome = Outcome {
                    page: [Some(150.0), Some(100.0)],
                    resolved: p.recovery.then_some([None, Some(300.0)]),
                    reading: Some(0.25),
                    spikes: 16,
                    idle_rss: [12.0, 24.0],
                    idle_cpu: [0.05, 0.1],
                    idle_seconds: 480.0,
                    ..Outcome::default()
                };
                (p, vec![outcome])
            })
            .collect();
        let text = table(&results, &settings);
        assert!(text.contains("| 150 s | 100 s | 1.50 |"), "{text}");
        assert!(text.contains("1× none within 780 s"), "{text}");
        assert!(
            text.contains("16 spikes: false pages | — | 0 | 0 |"),
            "{text}"
        );
        assert!(text.contains("| 12.0 MiB | 24.0 MiB | 0.50 |"), "{text}");
        assert!(
            text.contains("noisy normal (480 s; 1 stack(s)) | — | 0.050 % | 0.100 % | 0.50 |"),
            "{text}"
        );
        assert!(ratio(&[[Some(0.05), Some(0.0)]]) == "—");
        assert!(
            text.contains("a day's swing in 10 min")
                && text.contains("requests): false pages | — | 0 | 0 |"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 2 + 4 + 2 + 1 + 1 + 2, "{text}");
    }
}
