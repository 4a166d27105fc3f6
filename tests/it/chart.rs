//! Issue 15's symptom chart from a real Prometheus: the real FastAPI app (the library's default
//! instrumentation) under load, a normal phase then a slow chat (4–6 s), scraped every second; the
//! latency symptom's key names its reading, the range query returns its series, and the SVG drawn
//! from it holds one point per finite sample and the threshold line, the PNG decodes at the
//! email's size. A Prometheus that is not there gives a failure the blind chart quotes.
//!
//! Then the whole path, in a running daemon: the latency incident's L1 email, received by the real
//! SMTP server, carries the p95 chart as an inline PNG its HTML names by `Content-ID`; the incident
//! page draws the series and the threshold as inline SVG, the status page a thumbnail and the value.
//! With Prometheus killed, the L2 email and the page show the blind chart saying why.

use std::time::{Duration, Instant};

use harven_watchdog::chart::{self, Chart, EMAIL_SIZE, Frame};
use harven_watchdog::clock::Clock;
use harven_watchdog::config::{Config, PrometheusConfig};
use harven_watchdog::observe::{Observation, Outcome, Value};
use harven_watchdog::probe::poll_once;
use harven_watchdog::probe::prometheus::{
    PrometheusProbe, RangeFailure, RangeQuery, Reading, step_for,
};

use crate::support;
use crate::support::daemon::{TestDaemon, paging_env, quick_runbook};
use crate::support::fastapi::{FastApiBackend, Handler, Load, LoadSpec, Profile, Scenario};
use crate::support::prometheus::PrometheusServer;
use crate::support::smtp::{ReceivedMail, SmtpServer};

const MIX: [(Handler, u32); 3] = [
    (Handler::Chat, 6),
    (Handler::Login, 2),
    (Handler::Courses, 2),
];

/// The shipped defaults, but for windows a test fills in seconds.
fn config(url: String) -> PrometheusConfig {
    support::init();
    let env = [
        ("URL", url),
        ("TIMEOUT", "2s".to_owned()),
        ("WINDOW", "15s".to_owned()),
        ("SHORT_WINDOW", "10s".to_owned()),
        ("BASELINE_WINDOW", "15s".to_owned()),
    ]
    .map(|(k, v)| (format!("HARVEN_WATCHDOG__PROMETHEUS__{k}"), v));
    Config::load_with_env(&[], env).expect("config").prometheus
}

/// Polls `probe` until the p95 reading satisfies `ready`; returns it (90 s at most).
async fn p95_when(probe: &mut PrometheusProbe, ready: impl Fn(f64) -> bool) -> Observation {
    let clock = Clock::system();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let report = poll_once(probe, &clock).await;
        let found = report.result.as_ref().ok().and_then(|obs| {
            obs.iter()
                .find(|o| {
                    o.key.name == "prometheus.p95_seconds"
                        && matches!(o.outcome, Outcome::Value(Value::Number(v)) if ready(v))
                })
                .cloned()
        });
        if let Some(o) = found {
            return o;
        }
        assert!(Instant::now() < deadline, "never held; last: {report:#?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_query_draws_the_slow_phase_and_the_threshold() {
    let backend = FastApiBackend::start(Profile::Default).await;
    let prom = PrometheusServer::start(&[backend.target()]).await;
    let config = config(prom.url());
    let mut probe = PrometheusProbe::new(config.clone()).expect("probe");
    let started = Clock::system().now();

    // A normal phase, then a slow chat: the probe sees p95 below, then above 3 s.
    let load = Load::start(&backend, LoadSpec::new(10.0, &MIX));
    p95_when(&mut probe, |v| v < 3.0).await;
    load.stop().await;
    backend.set_scenario(&Scenario::slow_chat(4.0, 6.0)).await;
    let slow_from = Clock::system().now();
    let load = Load::start(&backend, LoadSpec::new(10.0, &MIX));
    let firing = p95_when(&mut probe, |v| v > 3.0).await;
    load.stop().await;
    let ended = Clock::system().now();

    // The firing symptom's key names its reading (all handlers, high-resolution histogram with
    // the library's defaults) and its window.
    let (reading, window) = Reading::of(&config, &firing.key).expect("a charted reading");
    assert!(
        matches!(&reading, Reading::P95 { handler: None, .. }),
        "{reading:?} from {}",
        firing.key
    );
    let range = RangeQuery::new(&config).expect("range query");
    let step = step_for(started, ended, 120);
    let series = range
        .series(&reading, window, "p95", (started, ended), step)
        .await
        .unwrap_or_else(|f| panic!("the series: {f}"));
    let finite: Vec<f64> = series
        .points
        .iter()
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .collect();
    assert!(finite.len() >= 5, "{series:?}");
    assert!(
        finite.iter().any(|v| *v < 3.0),
        "the normal phase: {series:?}"
    );
    assert!(
        finite.iter().any(|v| *v > 3.0),
        "the slow phase: {series:?}"
    );
    assert!(series.points.windows(2).all(|w| w[0].0 < w[1].0));

    // The SVG holds one point per finite sample, and the threshold line.
    let chart = Chart::Seen {
        series: series.clone(),
        threshold: 3.0,
        opened: Some(slow_from),
    };
    let frame = Frame {
        from: started,
        to: ended,
        size: (720, 240),
    };
    let svg = chart::svg(&chart, &frame).expect("svg");
    let drawn: usize = polylines(&svg, "#1F77B4").iter().map(Vec::len).sum();
    assert_eq!(drawn, finite.len(), "{svg}");
    let threshold = polylines(&svg, "#D62728");
    assert_eq!(threshold.len(), 1, "{svg}");
    assert_eq!(threshold[0][0].1, threshold[0][1].1, "horizontal");
    assert_eq!(polylines(&svg, "#FF7F0E").len(), 1, "the opening: {svg}");
    assert!(svg.contains("3 s"), "{svg}");

    // What the pager and the pages do with it: one fetch through the chart source, timed (the
    // extra time an L1 email waits for its chart).
    let mut with_firing = harven_watchdog::config::Config::load_with_env(
        &[],
        [(
            "HARVEN_WATCHDOG__RUNBOOK__LOCALE".to_owned(),
            "en".to_owned(),
        )],
    )
    .expect("config");
    with_firing.prometheus = config.clone();
    let source = harven_watchdog::pipeline::charts::ChartSource::new(
        &with_firing,
        std::sync::Arc::new(harven_watchdog::runbook::Runbook::embedded()),
    )
    .expect("chart source");
    let symptom = harven_watchdog::engine::Symptom {
        rule: "latency.p95_high".into(),
        section: "latency".into(),
        labels: firing.key.labels.clone(),
        summary: "p95".into(),
        severity: harven_watchdog::runbook::Severity::Major,
        state: harven_watchdog::engine::SymptomState::Firing,
        observable: true,
        value: None,
        note: None,
        fired_at: Some(slow_from),
    };
    let wanted = source.wanted("latency", &[symptom], slow_from, ended);
    assert_eq!(wanted.len(), 1, "{wanted:?}");
    let timer = Instant::now();
    let fetched = source.fetch(&wanted, ended).await;
    println!(
        "one chart fetched from Prometheus in {:?} (budget {:?})",
        timer.elapsed(),
        source.budget()
    );
    assert!(
        matches!(fetched[0].chart, Chart::Seen { .. }),
        "{:?}",
        fetched[0]
    );

    // The PNG decodes at the email's size.
    let frame = Frame {
        size: EMAIL_SIZE,
        ..frame
    };
    let bytes = chart::png(&chart, &frame).expect("png");
    let reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .expect("a PNG");
    assert_eq!((reader.info().width, reader.info().height), EMAIL_SIZE);
}

#[tokio::test]
async fn a_prometheus_that_is_not_there_is_a_blind_chart_with_the_reason() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("its address").port()
    };
    let config = config(format!("http://127.0.0.1:{port}"));
    let range = RangeQuery::new(&config).expect("range query");
    let now = Clock::system().now();
    let failure = range
        .series(
            &Reading::ErrorRatio,
            config.window,
            "errors",
            (now - Duration::from_secs(600), now),
            Duration::from_secs(15),
        )
        .await
        .expect_err("nothing listens");
    assert!(
        matches!(failure, RangeFailure::Unreachable(_)),
        "{failure:?}"
    );
    let svg = chart::svg(
        &Chart::Blind {
            title: "errors".into(),
            reason: failure.to_string(),
        },
        &Frame::ending(now, Duration::from_secs(600), EMAIL_SIZE),
    )
    .expect("svg");
    assert!(svg.to_lowercase().contains("connect"), "{svg}");
    assert!(polylines(&svg, "#1F77B4").is_empty());
}

/// The points of every `<polyline>` drawn in `stroke` (`#RRGGBB`).
fn polylines(svg: &str, stroke: &str) -> Vec<Vec<(f64, f64)>> {
    let stroke = format!("stroke=\"{stroke}\"");
    svg.split("<polyline")
        .skip(1)
        .map(|rest| &rest[..rest.find("/>").expect("closed tag")])
        .filter(|tag| tag.contains(&stroke))
        .map(|tag| {
            let start = tag.find("points=\"").expect("points") + 8;
            let end = start + tag[start..].find('"').expect("end of points");
            tag[start..end]
                .split_whitespace()
                .map(|p| {
                    let (x, y) = p.split_once(',').expect("x,y");
                    (x.parse().expect("x"), y.parse().expect("y"))
                })
                .collect()
        })
        .collect()
}

/// The L1 or L2 email of the latency incident.
fn latency_mail(mail: &[ReceivedMail], event: &str) -> Option<ReceivedMail> {
    mail.iter()
        .find(|m| {
            m.header("X-Harven-Section") == Some("latency")
                && m.header("X-Harven-Event") == Some(event)
        })
        .cloned()
}

/// The inline PNG parts of `mail`: (Content-ID without brackets, disposition, bytes).
fn inline_pngs(mail: &ReceivedMail) -> Vec<(String, String, Vec<u8>)> {
    use mail_parser::MimeHeaders;
    let parsed = mail_parser::MessageParser::default()
        .parse(mail.raw.as_bytes())
        .expect("a message");
    parsed
        .parts
        .iter()
        .filter(|p| p.content_type().and_then(|c| c.subtype()) == Some("png"))
        .map(|p| {
            (
                p.content_id()
                    .unwrap_or_default()
                    .trim_matches(['<', '>'])
                    .to_owned(),
                p.content_disposition()
                    .map(|d| d.ctype().to_owned())
                    .unwrap_or_default(),
                p.contents().to_vec(),
            )
        })
        .collect()
}

/// The RGB pixels of a PNG, and its size.
fn pixels(bytes: &[u8]) -> ((u32, u32), Vec<u8>) {
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes.to_vec()))
        .read_info()
        .expect("a PNG");
    let size = (reader.info().width, reader.info().height);
    let mut image = vec![0; reader.output_buffer_size().expect("a size")];
    reader.next_frame(&mut image).expect("the pixels");
    (size, image)
}

/// Whether an RGB image has a pixel of exactly `rgb`.
fn has_colour(image: &[u8], rgb: [u8; 3]) -> bool {
    image.chunks(3).any(|p| p == rgb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_incident_shows_its_chart_in_the_email_and_the_pages_and_says_when_prometheus_is_blind()
{
    let backend = FastApiBackend::start(Profile::Default).await;
    let mut prom = PrometheusServer::start(&[backend.target()]).await;
    let smtp = SmtpServer::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let mut env = paging_env(&prom.url(), smtp.port(), data.path());
    let runbook = quick_runbook(data.path(), "5m");
    env.push((
        "HARVEN_WATCHDOG__RUNBOOK__PATH".into(),
        runbook.display().to_string(),
    ));
    // A normal phase first, so the chart shows the climb.
    let load = Load::start(&backend, LoadSpec::new(10.0, &MIX));
    prom.wait_for(
        "sum(http_request_duration_highr_seconds_count)",
        |s| s.first().is_some_and(|x| x.value > 20.0),
        Duration::from_secs(60),
    )
    .await;
    // The daemon's clock is a manual one, kept at real time: the range queries ask for the
    // minutes Prometheus has, and the test can jump to the escalation later.
    let d = TestDaemon::start(env, Clock::system().now()).await;
    backend.set_scenario(&Scenario::slow_chat(4.0, 6.0)).await;
    let hand = d.hand.clone();
    let l1 = support::wait_for_some(Duration::from_secs(120), Duration::from_millis(250), || {
        hand.set(Clock::system().now());
        let mail = smtp.messages();
        async move { latency_mail(&mail, "opened") }
    })
    .await
    .expect("the latency incident's L1 email");
    load.stop().await;
    let id = l1.header("X-Harven-Incident").expect("incident").to_owned();

    // The L1 email: an inline PNG per chart, named by Content-ID from the HTML, of the email's
    // size, drawing the series (its blue), not a blind box.
    let html = l1.html().expect("an HTML part");
    let pngs = inline_pngs(&l1);
    assert!(!pngs.is_empty(), "no inline PNG: {}", l1.raw.len());
    for (cid, disposition, bytes) in &pngs {
        assert!(
            html.contains(&format!("src=\"cid:{cid}\"")),
            "{cid}: {html}"
        );
        assert_eq!(disposition, "inline");
        let (size, image) = pixels(bytes);
        assert_eq!(size, EMAIL_SIZE);
        assert!(
            has_colour(&image, [0x1F, 0x77, 0xB4]),
            "the series is drawn"
        );
        assert!(
            has_colour(&image, [0xD6, 0x27, 0x28]),
            "the threshold is drawn"
        );
    }
    let text = l1.text().expect("a text part");
    assert!(text.contains("The symptom over time"), "{text}");
    assert!(
        text.contains(": now ") && text.contains("(threshold 3 s)"),
        "{text}"
    );
    println!(
        "the L1 email with {} chart(s): {} bytes",
        pngs.len(),
        l1.raw.len()
    );

    // The incident page: inline SVG with the series and the threshold line, under the pages' CSP
    // as it was (no script source; an inline SVG needs none).
    let answer = support::http_client()
        .get(format!("{}/incidents/{id}", d.base))
        .send()
        .await
        .expect("GET the incident page");
    let csp = answer
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        csp.starts_with("default-src 'none'; style-src 'unsafe-inline';")
            && !csp.contains("script"),
        "{csp}"
    );
    let page = answer.text().await.expect("the page");
    let svg_at = page.find("<svg").expect("an inline SVG");
    let svg = &page[svg_at..page[svg_at..].find("</svg>").expect("closed") + svg_at];
    assert!(!polylines(svg, "#1F77B4").is_empty(), "the series: {svg}");
    assert_eq!(polylines(svg, "#D62728").len(), 1, "the threshold: {svg}");
    assert!(!page.contains("<script"), "no script");
    // The status page: the value and a thumbnail.
    let index = d.get("/").await;
    let open = &index[index.find("class=\"glance\"").expect("a glance")..];
    assert!(open.contains("<div class=\"thumb\"><svg"), "{open}");
    assert!(open.contains(" s</strong>"), "the p95 value: {open}");

    // Prometheus dies; half an hour later L2 is paged, and its charts say Prometheus is blind.
    prom.kill();
    hand.advance(Duration::from_secs(31 * 60));
    let l2 = support::wait_for_some(Duration::from_secs(120), Duration::from_millis(250), || {
        let mail = smtp.messages();
        async move { latency_mail(&mail, "escalated") }
    })
    .await
    .expect("the L2 email");
    let text = l2.text().expect("a text part");
    assert!(
        text.contains("no chart. Prometheus could not be reached"),
        "{text}"
    );
    let pngs = inline_pngs(&l2);
    assert!(!pngs.is_empty(), "the blind chart is an image too");
    let (_, image) = pixels(&pngs[0].2);
    assert!(!has_colour(&image, [0x1F, 0x77, 0xB4]), "no series drawn");
    let page = d.get(&format!("/incidents/{id}")).await;
    assert!(
        page.contains("Prometheus could not be reached, so there is no history to show."),
        "{page}"
    );
    assert!(polylines(&page, "#1F77B4").is_empty());
    d.stop().await;
}
