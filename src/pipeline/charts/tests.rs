use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::observe::{Labels, Value};

const T0: Timestamp = Timestamp::from_unix_millis(1_795_000_000_000);

fn at(secs: u64) -> Timestamp {
    T0 + Duration::from_secs(secs)
}

/// The shipped defaults in `locale` with Prometheus at `url` (timeout 1 s; interval 10 s, the TTL).
fn source(url: &str, locale: &str) -> ChartSource {
    crate::install_crypto_provider();
    let env = [
        ("PROMETHEUS__URL", url.to_owned()),
        ("PROMETHEUS__TIMEOUT", "1s".to_owned()),
        ("RUNBOOK__LOCALE", locale.to_owned()),
    ]
    .map(|(k, v)| (format!("HARVEN_WATCHDOG__{k}"), v));
    let config = Config::load_with_env(&[], env).expect("config");
    ChartSource::new(&config, Arc::new(Runbook::embedded())).expect("source")
}

fn symptom(rule: &str, section: &str, state: SymptomState, labels: &[(&str, &str)]) -> Symptom {
    let (_, r) = Runbook::embedded()
        .rule(rule)
        .map(|(s, r)| (s.id.clone(), r.clone()))
        .expect("a shipped rule");
    Symptom {
        rule: rule.to_owned(),
        section: section.to_owned(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<Labels>(),
        summary: r.summary.get(Locale::En).to_owned(),
        severity: r.severity,
        state,
        observable: true,
        value: Some(Value::Number(0.3)),
        note: None,
        fired_at: Some(at(0)),
    }
}

#[test]
fn only_firing_chartable_symptoms_of_the_section_are_wanted_one_per_reading() {
    let s = source("http://127.0.0.1:1", "en");
    let symptoms = vec![
        symptom("errors.ratio_high", "errors", SymptomState::Firing, &[]),
        // The same reading, critical: its threshold is the one shown.
        symptom(
            "errors.ratio_critical",
            "errors",
            SymptomState::Recovering,
            &[],
        ),
        symptom("errors.ratio_severe", "errors", SymptomState::Firing, &[]),
        // Pending, another section, and a reading with no one-expression history: none.
        symptom("auth.mass_401_403", "errors", SymptomState::Pending, &[]),
        symptom("latency.p95_high", "latency", SymptomState::Firing, &[]),
        symptom(
            "errors.backend_target_down",
            "errors",
            SymptomState::Firing,
            &[],
        ),
    ];
    let wanted = s.wanted("errors", &symptoms, at(0), at(600));
    let rules: Vec<&str> = wanted.iter().map(|w| w.rule.as_str()).collect();
    assert_eq!(rules, ["errors.ratio_critical", "errors.ratio_severe"]);
    assert_eq!(wanted[0].threshold, 0.25);
    assert_eq!(wanted[0].key.name, "prometheus.error_ratio");
    assert_eq!(wanted[1].window, s.prometheus.short_window);
    // Titled in the source's language, with the span.
    assert_eq!(wanted[0].title, "Error rate at or above 25% (last 30 min)");
    let pt = source("http://127.0.0.1:1", "pt-BR");
    let wanted = pt.wanted("errors", &symptoms, at(0), at(600));
    assert_eq!(wanted[0].title, "Error rate ≥ 25% (últimos 30 min)");
}

#[test]
fn a_handlers_p95_names_the_handler_in_its_title() {
    let s = source("http://127.0.0.1:1", "en");
    let histogram = s.prometheus.latency_histogram.clone();
    let symptoms = vec![symptom(
        "latency.p95_high",
        "latency",
        SymptomState::Firing,
        &[("handler", "/api/chat"), ("histogram", &histogram)],
    )];
    let wanted = s.wanted("latency", &symptoms, at(0), at(60));
    assert_eq!(wanted.len(), 1);
    assert!(
        wanted[0]
            .title
            .starts_with("p95 above 3 seconds · /api/chat"),
        "{}",
        wanted[0].title
    );
    assert_eq!(wanted[0].threshold, 3.0);
}

#[test]
fn the_span_leads_the_opening_and_is_bounded() {
    let hour = 3600;
    // Opened just now: half an hour back.
    assert_eq!(
        span(at(10 * hour), at(10 * hour)),
        (at(10 * hour - 1800), at(10 * hour))
    );
    // Opened two hours ago: from ten minutes before the opening.
    assert_eq!(span(at(8 * hour), at(10 * hour)).0, at(8 * hour - 600));
    // Open for days: one day back.
    assert_eq!(span(at(0), at(100 * hour)).0, at(76 * hour));
    // Times near the epoch do not underflow.
    let epoch = Timestamp::EPOCH;
    assert_eq!(span(epoch, epoch), (epoch, epoch));
}

/// A listener that accepts connections, counts them and never answers: a Prometheus that hangs.
async fn hanging() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(conn);
        }
    });
    (url, accepted)
}

fn ratio_symptoms() -> Vec<Symptom> {
    vec![symptom(
        "errors.ratio_high",
        "errors",
        SymptomState::Firing,
        &[],
    )]
}

#[tokio::test]
async fn a_hanging_prometheus_is_a_blind_chart_within_the_budget_and_is_cached() {
    let (url, accepted) = hanging().await;
    let s = source(&url, "en");
    assert_eq!(
        s.budget(),
        Duration::from_secs(1),
        "the timeout, under the cap"
    );
    let wanted = s.wanted("errors", &ratio_symptoms(), at(0), at(60));
    let started = std::time::Instant::now();
    let charts = s.fetch(&wanted, at(60)).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(charts.len(), 1);
    let Chart::Blind { title, reason } = &charts[0].chart else {
        panic!("{charts:?}")
    };
    assert!(title.starts_with("Error rate above 5%"), "{title}");
    assert_eq!(
        reason,
        "Prometheus did not answer within 1 s, so there is no history to show."
    );
    assert_eq!((charts[0].from, charts[0].to), span(at(0), at(60)));
    let asked = accepted.load(Ordering::SeqCst);
    assert!(asked >= 1);
    // Within the TTL the same chart comes from the cache: no new connection, no wait.
    // (The TTL is `prometheus.interval`, 10 s by default.)
    let again = s.fetch(&wanted, at(65)).await;
    assert_eq!(again, charts);
    assert_eq!(accepted.load(Ordering::SeqCst), asked);
    // Past it, Prometheus is asked again.
    let later = s.wanted("errors", &ratio_symptoms(), at(0), at(90));
    s.fetch(&later, at(90)).await;
    assert!(accepted.load(Ordering::SeqCst) > asked);
    assert_eq!(s.cache_len(), 1, "the stale entry was replaced");
}

#[tokio::test]
async fn an_unreachable_prometheus_is_a_blind_chart_in_the_readers_language() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        l.local_addr().expect("addr").port()
    };
    let s = source(&format!("http://127.0.0.1:{port}"), "pt-BR");
    let wanted = s.wanted("errors", &ratio_symptoms(), at(0), at(60));
    let charts = s.fetch(&wanted, at(60)).await;
    let Chart::Blind { reason, .. } = &charts[0].chart else {
        panic!("{charts:?}")
    };
    assert_eq!(
        reason,
        "O Prometheus não pôde ser contatado, então não há histórico para mostrar."
    );
}

#[tokio::test]
async fn nothing_wanted_asks_nothing() {
    let (url, accepted) = hanging().await;
    let s = source(&url, "en");
    assert!(s.fetch(&[], at(0)).await.is_empty());
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
}

#[test]
fn the_cache_is_bounded() {
    let s = source("http://127.0.0.1:1", "en");
    let wanted = s.wanted("errors", &ratio_symptoms(), at(0), at(60));
    let chart = s.chart(&wanted[0], Err(()));
    for i in 0..(CACHE_ENTRIES as u64 * 2) {
        // Each a different incident (opening): a distinct entry.
        let mut w = wanted[0].clone();
        w.opened = at(i);
        s.remember(&w, at(60), &chart);
    }
    assert_eq!(s.cache_len(), CACHE_ENTRIES);
}

#[test]
fn an_answer_without_a_number_is_no_data() {
    let s = source("http://127.0.0.1:1", "en");
    let wanted = s.wanted("errors", &ratio_symptoms(), at(0), at(60));
    let nan = Series {
        title: "x".into(),
        unit: crate::chart::Unit::Ratio,
        points: vec![(at(10), f64::NAN)],
    };
    let Chart::Blind { reason, .. } = s.chart(&wanted[0], Ok(Ok(nan))).chart else {
        panic!("blind")
    };
    assert_eq!(
        reason,
        "Prometheus has no samples of this reading in the chart's span."
    );
    let seen = Series {
        title: "x".into(),
        unit: crate::chart::Unit::Ratio,
        points: vec![(at(10), 0.3)],
    };
    let c = s.chart(&wanted[0], Ok(Ok(seen)));
    assert!(
        matches!(c.chart, Chart::Seen { threshold, opened: Some(o), .. } if threshold == 0.05 && o == at(0)),
        "{c:?}"
    );
}
