//! Issue 15's symptom chart from a real Prometheus: the real FastAPI app (the library's default
//! instrumentation) under load, a normal phase then a slow chat (4–6 s), scraped every second; the
//! latency symptom's key names its reading, the range query returns its series, and the SVG drawn
//! from it holds one point per finite sample and the threshold line, the PNG decodes at the
//! email's size. A Prometheus that is not there gives a failure the blind chart quotes.

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
use crate::support::fastapi::{FastApiBackend, Handler, Load, LoadSpec, Profile, Scenario};
use crate::support::prometheus::PrometheusServer;

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
