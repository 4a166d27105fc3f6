use super::*;
use crate::locale::MsgId;

fn cond(toml: &str) -> Condition {
    toml::from_str(toml).expect("a condition")
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn an_evidence_line_reads_as_a_sentence_with_its_labels_value_note_and_threshold() {
    let c = cond(
        r#"obs = "docker.log_lines_per_minute"
labels = { role = "backend", pattern = "error" }
op = ">"
value = 1"#,
    );
    let found = [Found {
        labels: labels(&[("role", "backend"), ("pattern", "error")]),
        value: Some(Value::Number(0.0)),
        why: None,
        no_data: false,
        note: Some(
            Msg::new(MsgId::LinesPerMinuteOver)
                .msg("over", Msg::new(MsgId::TheLast).arg("window", "2m")),
        ),
    }];
    assert_eq!(
        evidence(Locale::En, &c, &found, 0),
        [
            "\"error\" lines per minute in the backend's log: 0, lines per minute over the last 2m (needs above 1)"
        ]
    );
    assert_eq!(
        evidence(Locale::PtBr, &c, &found, 2),
        [
            "linhas com \"error\" por minuto no log do backend: 0, linhas por minuto nos últimos 2m (precisa: acima de 1)",
            "e mais 2"
        ]
    );
}

#[test]
fn a_symptom_reads_with_its_handler_and_when_it_fires() {
    let when = cond(
        r#"obs = "prometheus.p95_seconds"
op = ">"
value = 3.0"#,
    );
    let l = labels(&[("handler", "/api/chat"), ("histogram", "h")]);
    assert_eq!(
        symptom(Locale::En, &when, &l, Some(&Value::Number(8.8)), None),
        "p95 latency on /api/chat: 8.8 s (fires above 3 s)"
    );
    assert_eq!(
        symptom(Locale::PtBr, &when, &l, Some(&Value::Number(8.8)), None),
        "latência p95 em /api/chat: 8.8 s (dispara: acima de 3 s)"
    );
    let star = labels(&[("handler", "*")]);
    assert_eq!(
        symptom(
            Locale::PtBr,
            &when,
            &star,
            None,
            Some(&Msg::new(MsgId::NoRequestsInWindow))
        ),
        "latência p95 em todos os handlers: desconhecido (nenhuma requisição na janela)"
    );
}

#[test]
fn yes_no_and_peer_words_and_failing_sources_read_in_the_language() {
    let c = cond(
        r#"obs = "docker.running"
labels = { container = "harven-backend" }
op = "=="
value = false"#,
    );
    let f = Found {
        labels: labels(&[("container", "harven-backend")]),
        value: Some(Value::Bool(true)),
        why: None,
        no_data: false,
        note: None,
    };
    assert_eq!(
        evidence(Locale::PtBr, &c, &[f], 0),
        ["o contêiner de harven-backend está rodando: sim (precisa: não)"]
    );
    let down = cond(r#"source_failing = "prometheus""#);
    let f = Found {
        labels: Labels::new(),
        value: Some(Value::Text("connect: refused".into())),
        why: None,
        no_data: false,
        note: None,
    };
    assert_eq!(
        evidence(Locale::En, &down, &[f], 0),
        ["prometheus cannot be read: «connect: refused»"]
    );
}

/// An incident stored by a version before messages and evidence instances were kept: its JSON has
/// no `msg` in the timeline and no `cond`/`found` in the diagnosis. It loads, its timeline shows the
/// stored English text, and its evidence lines have no sentences (the surfaces show the raw line).
#[test]
fn an_incident_stored_before_words_were_kept_still_loads_and_shows_its_text() {
    use crate::clock::Timestamp;
    use crate::engine::diagnosis::EvidenceLine;
    use crate::engine::{CauseResult, CauseStatus, Diagnosis};
    use crate::incident::{DiagnosisSnapshot, Incident};
    use crate::runbook::{Role, Severity};

    let at = Timestamp::from_unix_millis(1_795_000_000_000);
    let mut i = Incident::open("errors", Severity::Major, "unknown", at);
    i.note(
        at,
        "opened",
        Msg::new(MsgId::TlOpened)
            .arg("section", "errors")
            .arg("severity", "major"),
    );
    let c = cond(r#"source_failing = "prometheus""#);
    let line = EvidenceLine {
        condition: "source_failing = \"prometheus\"".into(),
        weight: 1.0,
        role: Role::Evidence,
        truth: "holds",
        observed: "connect: refused".into(),
        cond: c,
        found: vec![Found {
            labels: Labels::new(),
            value: Some(Value::Text("connect: refused".into())),
            why: None,
            no_data: false,
            note: None,
        }],
        more: 0,
    };
    let d = Diagnosis {
        section: "errors".into(),
        causes: vec![CauseResult {
            id: "watchdog.blind".into(),
            title: "Blind".into(),
            status: CauseStatus::Likely,
            score: 1.0,
            evidence: vec![line],
            context: Vec::new(),
            vendor: None,
            actions: Vec::new(),
            commands: Vec::new(),
        }],
    };
    i.diagnosis = Some(DiagnosisSnapshot::new(&d, at));
    // Today's JSON, then without what older versions did not write.
    let mut json = serde_json::to_value(&i).expect("serializes");
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                for k in ["msg", "cond", "found", "more"] {
                    map.remove(k);
                }
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let new = i.clone();
    strip(&mut json);
    assert!(!json.to_string().contains("\"msg\""), "{json}");
    let old: Incident = serde_json::from_value(json).expect("an old incident loads");
    let entry = &old.timeline[0];
    assert_eq!(entry.msg, None);
    for locale in Locale::ALL {
        assert_eq!(
            timeline_text(locale, entry),
            "errors incident opened (major)"
        );
    }
    assert_eq!(
        timeline_text(Locale::PtBr, &new.timeline[0]),
        "incidente errors aberto (major)"
    );
    let e = &old.diagnosis.expect("kept").causes[0].evidence[0];
    assert!(e.cond.is_none() && e.found.is_empty());
    assert_eq!(e.observed, "connect: refused");
    // Today's snapshot says it in words.
    let e = &new.diagnosis.expect("kept").causes[0].evidence[0];
    assert_eq!(
        evidence(
            Locale::PtBr,
            e.cond.as_ref().expect("kept"),
            &e.found,
            e.more
        ),
        ["prometheus não pode ser lido: «connect: refused»"]
    );
}
