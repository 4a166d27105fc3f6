//! The end-to-end figures of `scripts/bench.sh`, measured on real peers with the release binary.
//!
//! ```text
//! stack_bench latency    --bin PATH [--default-trials N] [--tight-flips N] [--warmup SECONDS]
//! stack_bench containers --bin PATH --count N [--seconds S]
//! ```
//!
//! `latency` runs, all at once, `--default-trials` fresh stacks per scenario with the default
//! configuration and one stack per scenario with the tight one, for the `slow` and `errors` scenarios
//! of the simulated backend. A stack is a real Prometheus scraping the simulated backend, an aiosmtpd
//! server and the daemon (the binary at `--bin`) watching them (its other sources out of reach, so
//! they are an incident of the `watchdog` section, which the figures ignore). Each flip switches the
//! backend's scenario, polls Prometheus every 100 ms with the rule's own query to timestamp the moment
//! its condition first holds, and waits for the section's L1 email (its time is the Maildir file's
//! modification time, written by the SMTP server on receipt). The tight stacks then switch back to
//! normal and wait for the resolved email, and flip again. A flip's *breach* is the condition first
//! holding plus the rule's `for`: the earliest moment the rule may fire.
//!
//! - default: `[prometheus] interval = 15s`, 5 min windows, the shipped runbook (`for` 2 min). Each
//!   trial first serves `--warmup` seconds of normal traffic so the 5 min windows hold normal data.
//! - tight: `interval = 1s`, 30 s windows, the shipped runbook with every `for` at 0 s and every
//!   `resolve_after` at 10 s, `reopen_within = 1s` (so each flip opens a new incident).
//!
//! `containers` starts `--count` busybox containers and the daemon on its default runbook and
//! intervals watching them (and the whole test stack), then reads its CPU time and resident memory
//! from `/proc` over `--seconds`, and the Docker probe's poll time from its `/metrics`.
//!
//! Every figure is printed as a tab-separated `FIGURE` line (name, measured, target, met) that
//! `scripts/bench.sh` gathers into its summary table. Nothing here asserts a target.

// The integration tests' peers. Some imports there serve only their `#[cfg(test)]` parts.
#[allow(unused_imports)]
#[path = "../tests/it/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use harven_watchdog::config::Config;
use harven_watchdog::probe::prometheus::equivalent_promql;
use harven_watchdog::runbook::Runbook;
use support::backend::{Scenario, SimBackend, StatusStyle};
use support::daemon::DaemonProcess;
use support::procfs::{Rss, cpu_ticks};
use support::prometheus::PrometheusServer;
use support::smtp::{ReceivedMail, SmtpServer};
use support::stack::TestStack;

/// How often the condition of the rule under test is queried.
const CONDITION_POLL: Duration = Duration::from_millis(100);
/// The longest a flip may take to page or to resolve before the run is abandoned.
const FLIP_TIMEOUT: Duration = Duration::from_secs(600);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let num = |name: &str, default: u64| {
        opt(name).map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| usage(&format!("{name}: {v:?} is not a number")))
        })
    };
    let bin = PathBuf::from(opt("--bin").unwrap_or_else(|| usage("--bin PATH is required")));
    if !bin.is_file() {
        usage(&format!("{} is not a file", bin.display()));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match args.first().map(String::as_str) {
        Some("latency") => rt.block_on(latency(
            &bin,
            num("--default-trials", 3) as usize,
            num("--tight-flips", 5) as usize,
            Duration::from_secs(num("--warmup", 300)),
        )),
        Some("containers") => rt.block_on(containers(
            &bin,
            num("--count", 50) as usize,
            Duration::from_secs(num("--seconds", 60)),
        )),
        _ => usage("the first argument is latency or containers"),
    }
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "stack_bench: {problem}\nusage: stack_bench latency --bin PATH [--default-trials N] [--tight-flips N] [--warmup SECONDS]\n       stack_bench containers --bin PATH --count N [--seconds S]"
    );
    std::process::exit(2)
}

/// One summary line for `scripts/bench.sh`.
fn figure(name: &str, measured: &str, target: &str, met: Option<bool>) {
    let met = match met {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "-",
    };
    println!("FIGURE\t{name}\t{measured}\t{target}\t{met}");
}

// ------------------------------------------------------------------------------------------------
// latency
// ------------------------------------------------------------------------------------------------

/// A backend scenario and the rule it should page through.
#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    scenario: Scenario,
    section: &'static str,
    rule: &'static str,
    /// The rule's threshold on the query's value (the query selects by `max`).
    threshold: f64,
    /// The probe's reading the rule compares (`probe::prometheus::equivalent_promql`).
    reading: &'static str,
}

const CASES: [Case; 2] = [
    Case {
        name: "slow",
        scenario: Scenario::Slow,
        section: "latency",
        rule: "latency.p95_high",
        threshold: 3.0,
        reading: "p95",
    },
    Case {
        name: "errors",
        scenario: Scenario::Errors,
        section: "errors",
        rule: "errors.ratio_high",
        threshold: 0.05,
        reading: "error_ratio",
    },
];

/// A configuration under test: the daemon's extra variables, the query the rule reads, and its `for`.
struct Setup {
    name: &'static str,
    env: Vec<(String, String)>,
    query: String,
    for_: Duration,
}

/// The shipped runbook with every `for` at 0 s and every `resolve_after` at 10 s.
fn tight_runbook() -> String {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/runbook.toml"))
            .expect("config/runbook.toml");
    let for_ = regex::Regex::new(r#"(?m)^for = "[^"]*""#).expect("regex");
    let resolve = regex::Regex::new(r#"(?m)^resolve_after = "[^"]*""#).expect("regex");
    let text = for_.replace_all(&text, r#"for = "0s""#);
    resolve
        .replace_all(&text, r#"resolve_after = "10s""#)
        .into_owned()
}

fn setups(case: Case, tight_runbook: &Path) -> (Setup, Setup) {
    let promql = |env: &[(String, String)]| {
        let config = Config::load_with_env(&[], env.to_vec()).expect("the configuration");
        equivalent_promql(&config.prometheus, case.reading).expect("a known reading")
    };
    let rule_for = Runbook::embedded()
        .sections
        .iter()
        .flat_map(|s| &s.rules)
        .find(|r| r.id == case.rule)
        .map(|r| r.for_)
        .expect("the rule is in the shipped runbook");
    let default = Setup {
        name: "default",
        env: Vec::new(),
        query: promql(&[]),
        for_: rule_for,
    };
    let env: Vec<(String, String)> = [
        ("PROMETHEUS__INTERVAL", "1s".to_owned()),
        ("PROMETHEUS__TIMEOUT", "900ms".to_owned()),
        ("PROMETHEUS__WINDOW", "30s".to_owned()),
        ("RUNBOOK__PATH", tight_runbook.display().to_string()),
        ("ESCALATION__REOPEN_WITHIN", "1s".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("HARVEN_WATCHDOG__{k}"), v))
    .collect();
    let tight = Setup {
        name: "tight",
        query: promql(&env),
        env,
        for_: Duration::ZERO,
    };
    (default, tight)
}

/// What one flip measured, in seconds.
#[derive(Debug, Default, Clone, Copy)]
struct Flip {
    switch_to_email: f64,
    breach_to_email: f64,
    normal_to_resolved: Option<f64>,
}

/// A Prometheus scraping a simulated backend, an SMTP server and the daemon on them.
struct Rig {
    backend: SimBackend,
    prometheus: PrometheusServer,
    smtp: SmtpServer,
    daemon: DaemonProcess,
}

impl Rig {
    async fn start(bin: &Path, setup: &Setup) -> Rig {
        let backend = SimBackend::start(StatusStyle::Grouped, Scenario::Normal).await;
        let prometheus = PrometheusServer::start(&[backend.target()]).await;
        let smtp = SmtpServer::start().await;
        // The test daemon's set-up on this configuration's intervals (the daemon has its own store).
        let mut env: Vec<(String, String)> =
            support::daemon::prometheus_env(&prometheus.url(), Path::new("."))
                .into_iter()
                .filter(|(k, _)| !k.contains("__PROMETHEUS__") || k.ends_with("__URL"))
                .filter(|(k, _)| !k.ends_with("__STORE__PATH"))
                .collect();
        env.extend(setup.env.iter().cloned());
        env.extend([
            (
                "HARVEN_WATCHDOG__SMTP__HOST".to_owned(),
                smtp.host().to_owned(),
            ),
            (
                "HARVEN_WATCHDOG__SMTP__PORT".to_owned(),
                smtp.port().to_string(),
            ),
            ("HARVEN_WATCHDOG__SMTP__TLS".to_owned(), "none".to_owned()),
        ]);
        let daemon = DaemonProcess::start(bin, env).await;
        Rig {
            backend,
            prometheus,
            smtp,
            daemon,
        }
    }

    /// Whether the rule's condition holds in Prometheus now.
    async fn holds(&self, case: Case, setup: &Setup) -> bool {
        let promql = format!("max({}) > {}", setup.query, case.threshold);
        matches!(self.prometheus.query(&promql).await, Ok(s) if !s.is_empty())
    }

    /// Polls the condition until it is `want`; returns when it first was.
    async fn condition(&self, case: Case, setup: &Setup, want: bool) -> SystemTime {
        support::wait_for_some(FLIP_TIMEOUT, CONDITION_POLL, || async {
            (self.holds(case, setup).await == want).then(SystemTime::now)
        })
        .await
        .unwrap_or_else(|e| panic!("{} condition never became {want}: {e}", case.rule))
    }

    /// Waits for the section's `n`-th L1 email of `events`; returns when the server received it.
    async fn email(&self, case: Case, events: &[&str], n: usize) -> SystemTime {
        let mail = support::wait_for_some(FLIP_TIMEOUT, Duration::from_millis(20), || {
            let found: Vec<ReceivedMail> = self
                .smtp
                .messages()
                .into_iter()
                .filter(|m| {
                    m.header("X-Harven-Section") == Some(case.section)
                        && m.header("X-Harven-Level") == Some("L1")
                        && m.header("X-Harven-Event")
                            .is_some_and(|e| events.contains(&e))
                })
                .collect();
            async move { found.into_iter().nth(n - 1) }
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "no L1 {events:?} email #{n} for {}: {e}; daemon log:\n{}",
                case.section,
                self.daemon.log_tail()
            )
        });
        std::fs::metadata(&mail.path)
            .and_then(|m| m.modified())
            .expect("the mail file's time")
    }

    /// Switches to the case's scenario and measures until the L1 email (the `n`-th of the rig).
    async fn flip(&self, case: Case, setup: &Setup, n: usize) -> Flip {
        let switched = SystemTime::now();
        self.backend.set_scenario(case.scenario);
        let (first_true, emailed) = tokio::join!(
            self.condition(case, setup, true),
            self.email(case, &["opened", "reopened"], n)
        );
        Flip {
            switch_to_email: secs(emailed, switched),
            breach_to_email: secs(emailed, first_true + setup.for_),
            normal_to_resolved: None,
        }
    }
}

/// `later - earlier` in seconds (negative when `later` is earlier).
fn secs(later: SystemTime, earlier: SystemTime) -> f64 {
    match later.duration_since(earlier) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// A default-config trial: a fresh rig, `warmup` of normal traffic, one flip.
async fn default_trial(bin: &Path, case: Case, setup: &Setup, warmup: Duration) -> Flip {
    let rig = Rig::start(bin, setup).await;
    tokio::time::sleep(warmup).await;
    let flip = rig.flip(case, setup, 1).await;
    eprintln!("  {} default: {flip:?}", case.name);
    flip
}

/// The tight config: one rig, `flips` flips each back to normal until the resolved email.
async fn tight_flips(bin: &Path, case: Case, setup: &Setup, flips: usize) -> Vec<Flip> {
    let rig = Rig::start(bin, setup).await;
    // Let the daemon see normal traffic first.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut out = Vec::new();
    for n in 1..=flips {
        let mut flip = rig.flip(case, setup, n).await;
        let back = SystemTime::now();
        rig.backend.set_scenario(Scenario::Normal);
        let resolved = rig.email(case, &["resolved"], n).await;
        flip.normal_to_resolved = Some(secs(resolved, back));
        // Start the next flip from a condition that does not hold.
        rig.condition(case, setup, false).await;
        eprintln!("  {} tight #{n}: {flip:?}", case.name);
        out.push(flip);
    }
    out
}

/// `median / max` of `values`, in seconds.
fn median_max(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    (median, values[n - 1])
}

fn report(case: Case, setup: &Setup, interval: Duration, flips: &[Flip]) {
    let label = |what: &str| {
        format!(
            "{what}, {} ({} config, n={})",
            case.name,
            setup.name,
            flips.len()
        )
    };
    let mut switch: Vec<f64> = flips.iter().map(|f| f.switch_to_email).collect();
    let (median, max) = median_max(&mut switch);
    figure(
        &label("scenario switch -> L1 email"),
        &format!("median {median:.2} s, max {max:.2} s"),
        "-",
        None,
    );
    let mut breach: Vec<f64> = flips.iter().map(|f| f.breach_to_email).collect();
    let (median, max) = median_max(&mut breach);
    let (target, bound) = if setup.name == "default" {
        ("<= 30 s".to_owned(), 30.0)
    } else {
        let bound = interval.as_secs_f64() + 0.3;
        (format!("<= poll interval + 0.3 s = {bound:.1} s"), bound)
    };
    figure(
        &label(&format!(
            "condition true (+ for {}) -> L1 email",
            humantime::format_duration(setup.for_)
        )),
        &format!("median {median:.2} s, max {max:.2} s"),
        &target,
        Some(max <= bound),
    );
    let mut resolved: Vec<f64> = flips.iter().filter_map(|f| f.normal_to_resolved).collect();
    if !resolved.is_empty() {
        let (median, max) = median_max(&mut resolved);
        figure(
            &label("back to normal -> resolved email"),
            &format!("median {median:.2} s, max {max:.2} s"),
            "- (30 s window + resolve_after 10 s)",
            None,
        );
    }
}

async fn latency(bin: &Path, default_trials: usize, tight_flips_n: usize, warmup: Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let runbook = dir.path().join("tight-runbook.toml");
    std::fs::write(&runbook, tight_runbook()).expect("write the tight runbook");
    let started = Instant::now();
    let mut jobs = Vec::new();
    for case in CASES {
        let (default, tight) = setups(case, &runbook);
        jobs.push(async move {
            let defaults = futures_util::future::join_all(
                (0..default_trials).map(|_| default_trial(bin, case, &default, warmup)),
            );
            let (defaults, tights) =
                tokio::join!(defaults, tight_flips(bin, case, &tight, tight_flips_n));
            (case, default, defaults, tight, tights)
        });
    }
    let results = futures_util::future::join_all(jobs).await;
    eprintln!("latency runs took {:.0?}", started.elapsed());
    for (case, default, defaults, tight, tights) in results {
        report(case, &default, Duration::from_secs(15), &defaults);
        report(case, &tight, Duration::from_secs(1), &tights);
    }
}

// ------------------------------------------------------------------------------------------------
// containers
// ------------------------------------------------------------------------------------------------

/// The sum and count of the Docker probe's poll durations, and its failed polls, from `/metrics`.
fn docker_polls(metrics: &str) -> (f64, f64, f64) {
    let sum = |prefix: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    (
        sum("harven_watchdog_probe_duration_seconds_sum{probe=\"docker\"}"),
        sum("harven_watchdog_probe_duration_seconds_count{probe=\"docker\"}"),
        sum("harven_watchdog_probe_errors_total{probe=\"docker\""),
    )
}

async fn containers(bin: &Path, count: usize, window: Duration) {
    let started = Instant::now();
    let stack = TestStack::start(count).await;
    eprintln!(
        "{count} containers and the stack up in {:.0?}",
        started.elapsed()
    );
    let daemon = DaemonProcess::start(bin, stack.env()).await;
    // Start-up: the first polls of every probe, the store's creation.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let pid = daemon.pid();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let (sum0, count0, failed0) = docker_polls(&daemon.metrics().await);
    // The start-up polls include the first, which inspects every container.
    eprintln!(
        "Docker polls during start-up: {count0} (mean {:.3} s, {} failed)",
        sum0 / count0,
        failed0 as u64
    );
    let (c0, t0) = (cpu_ticks(pid), Instant::now());
    tokio::time::sleep(window).await;
    let (c1, elapsed) = (cpu_ticks(pid), t0.elapsed());
    let rss = Rss::of(pid);
    let (sum1, count1, failed1) = docker_polls(&daemon.metrics().await);
    let cpu = 100.0 * (c1 - c0) as f64 / hz / elapsed.as_secs_f64();
    let polls = count1 - count0;
    let cycle = if polls > 0.0 {
        (sum1 - sum0) / polls
    } else {
        f64::NAN
    };
    drop(daemon);
    let removing = Instant::now();
    stack.stop();
    eprintln!("containers removed in {:.0?}", removing.elapsed());
    let secs = elapsed.as_secs_f64();
    let measured_rss = rss.to_string();
    let measured_cycle = format!(
        "{cycle:.3} s (mean of {polls} polls, {} failed)",
        failed1 - failed0
    );
    if count <= 50 {
        figure(
            &format!("idle RSS, default runbook, {count} containers, {secs:.0} s"),
            &measured_rss,
            "<= 10 MiB",
            Some(rss.total <= 10.0),
        );
        figure(
            &format!("idle CPU, default runbook, {count} containers, {secs:.0} s"),
            &format!("{cpu:.3} % of a core"),
            "<= 0.2 %",
            Some(cpu <= 0.2),
        );
        figure(
            &format!("Docker poll time, {count} containers"),
            &measured_cycle,
            "-",
            None,
        );
    } else {
        figure(
            &format!("RSS watching {count} containers"),
            &measured_rss,
            "<= 50 MiB",
            Some(rss.peak <= 50.0),
        );
        figure(
            &format!("Docker poll time (one cycle), {count} containers"),
            &measured_cycle,
            "<= 1 s",
            Some(cycle <= 1.0),
        );
        figure(
            &format!("CPU watching {count} containers, {secs:.0} s"),
            &format!("{cpu:.3} % of a core"),
            "-",
            None,
        );
    }
}
