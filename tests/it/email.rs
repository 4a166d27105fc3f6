//! Emails and their ack/resolve links, over a diagnosis the real engine produced.
//!
//! The scene: the Supabase REST API fails, its status page says `major`, the backend logs Supabase
//! errors and 12.4% of requests answer 5xx. The engine (the embedded runbook) fires `errors.ratio_high`
//! and names `errors.supabase_down` likely. Each email of the incident's life (L1 opened, L2
//! escalated, reminder, reopened, resolved) is rendered in pt-BR and English, then read back the way
//! a mail client would: parsed from its RFC 5322 bytes, parts transfer-decoded, headers RFC 2047-
//! decoded. One email also goes through the real SMTP server, and the `/act/{token}` routes are
//! exercised over HTTP with a recording `Actions`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harven_watchdog::chart::{Chart, EMAIL_SIZE, Series, SymptomChart, Unit};
use harven_watchdog::clock::{Clock, Timestamp};
use harven_watchdog::config::{Config, MaintenanceWindow};
use harven_watchdog::email::links;
use harven_watchdog::email::token::{self, Action, Claims, LinkKeys, TokenError};
use harven_watchdog::email::{ActionLinks, EmailInput, RenderedEmail, Renderer};
use harven_watchdog::engine::{Engine, Evaluation, SectionState, Symptom};
use harven_watchdog::http::act;
use harven_watchdog::http::actions::{Actions, Desk};
use harven_watchdog::http::auth::link::authorize;
use harven_watchdog::http::auth::session::SessionList;
use harven_watchdog::http::auth::{Auth, AuthConfig, AuthMetrics, AuthShared};
use harven_watchdog::incident::{
    Ack, ActionError, Incident, IncidentState, Level, Page, PageEvent,
};
use harven_watchdog::locale::{Msg, MsgId};
use harven_watchdog::observe::{Evidence, Key, Observation, ProbeReport};
use harven_watchdog::pipeline::charts::ChartSource;
use harven_watchdog::runbook::{Locale, Runbook, Severity};
use harven_watchdog::store::{EndWindow, StoredWindow};
use lettre::message::Mailbox;
use url::Url;

use crate::support::smtp::{ReceivedMail, SmtpServer};

/// 2026-11-18 11:06:40 UTC.
const T0: i64 = 1_795_000_000_000;
const KEY: &[u8] = b"test link key, 32 bytes long!!!!";

fn at(secs: u64) -> Timestamp {
    Timestamp::from_unix_millis(T0) + Duration::from_secs(secs)
}

fn min(m: u64) -> u64 {
    m * 60
}

fn report(source: &str, secs: u64, obs: Vec<Observation>) -> ProbeReport {
    ProbeReport {
        source: source.into(),
        at: at(secs),
        took: Duration::from_millis(5),
        result: Ok(obs),
    }
}

fn backend(name: &'static str) -> Key {
    Key::new(name).with("role", "backend")
}

fn log(pattern: &str) -> Key {
    backend("docker.log_lines_per_minute").with("pattern", pattern)
}

/// Every source of the stack at `secs`, healthy except for what `outage` breaks: Supabase REST down,
/// its status page `major`, Supabase errors in the logs, and `error_ratio` of requests failing.
fn evidence_at(ev: &mut Evidence, secs: u64, outage: bool, error_ratio: f64) {
    ev.apply(report(
        "prometheus",
        secs,
        vec![
            Observation::number(
                Key::new("prometheus.p95_seconds").with("handler", "/api/chat"),
                0.8,
            ),
            Observation::number(Key::new("prometheus.error_ratio"), error_ratio),
            Observation::number(Key::new("prometheus.auth_failure_ratio"), 0.01),
            Observation::boolean(Key::new("prometheus.auth_exact"), true),
            Observation::number(Key::new("prometheus.request_rate"), 40.0),
            Observation::number(Key::new("prometheus.request_rate_baseline"), 36.0),
            Observation::number(Key::new("prometheus.request_rate_ratio"), 1.11),
            Observation::boolean(
                Key::new("prometheus.backend_up").with("instance", "backend:8000"),
                true,
            ),
        ],
    ));
    ev.apply(report(
        "supabase",
        secs,
        vec![
            Observation::boolean(Key::new("supabase.rest_ok"), !outage),
            Observation::number(
                Key::new("supabase.rest_status"),
                if outage { 503.0 } else { 200.0 },
            ),
            Observation::number(Key::new("supabase.rest_latency_seconds"), 0.12),
            Observation::boolean(Key::new("supabase.auth_ok"), true),
            Observation::number(Key::new("supabase.auth_status"), 200.0),
            Observation::number(Key::new("supabase.auth_latency_seconds"), 0.08),
        ],
    ));
    for (page, indicator) in [
        ("supabase", if outage { "major" } else { "none" }),
        ("openai", "none"),
    ] {
        ev.apply(report(
            &format!("status.{page}"),
            secs,
            vec![Observation::text(
                Key::new("status.indicator").with("page", page),
                indicator,
            )],
        ));
    }
    ev.apply(report(
        "redis",
        secs,
        vec![
            Observation::number(Key::new("redis.ping_seconds"), 0.0008),
            Observation::number(Key::new("redis.memory_ratio"), 0.21),
            Observation::number(Key::new("redis.used_memory_bytes"), 14_000_000.0),
            Observation::number(Key::new("redis.maxmemory_bytes"), 67_108_864.0),
            Observation::number(Key::new("redis.evicted_keys_per_minute"), 0.0),
            Observation::number(Key::new("redis.rejected_connections_per_minute"), 0.0),
            Observation::number(
                Key::new("redis.keys").with("pattern", "rate_limit:*"),
                120.0,
            ),
        ],
    ));
    let supabase_lines = if outage { 37.0 } else { 0.0 };
    ev.apply(report(
        "docker",
        secs,
        vec![
            Observation::boolean(backend("docker.running"), true),
            Observation::text(backend("docker.health"), "healthy"),
            Observation::boolean(backend("docker.recent_deploy"), false),
            Observation::boolean(backend("docker.oom_killed"), false),
            Observation::number(backend("docker.memory_ratio"), 0.4),
            Observation::number(backend("docker.memory_growth_bytes_per_hour"), 1_000_000.0),
            Observation::number(backend("docker.restarts"), 0.0),
            Observation::number(backend("docker.memory_bytes"), 429_496_729.0),
            Observation::number(backend("docker.memory_limit_bytes"), 1_073_741_824.0),
            Observation::text(backend("docker.image"), "harven/backend:1.42"),
            Observation::text(backend("docker.previous_image"), "harven/backend:1.41"),
            Observation::number(backend("docker.uptime_seconds"), 86_400.0),
            Observation::boolean(
                backend("docker.env_present").with("var", "JWT_SECRET"),
                true,
            ),
            Observation::number(log("error"), if outage { 40.0 } else { 0.0 }),
            Observation::number(log("supabase"), supabase_lines),
            Observation::number(log("openai"), 0.0),
            Observation::number(log("429"), 0.0),
            Observation::number(log("jwt"), 0.0),
            Observation::number(log("too_many_connections"), 0.0),
            Observation::number(log("permission_denied"), 0.0),
        ],
    ));
}

/// The engine's view of the `errors` section at the end of a script.
struct Scene {
    runbook: Arc<Runbook>,
    eval: Evaluation,
}

impl Scene {
    fn section(&self) -> &SectionState {
        self.eval
            .sections
            .iter()
            .find(|s| s.section == "errors")
            .expect("errors section")
    }

    fn symptoms(&self) -> Vec<Symptom> {
        self.eval
            .symptoms
            .iter()
            .filter(|s| s.section == "errors")
            .cloned()
            .collect()
    }
}

/// The outage from t=0, evaluated until `until` (firing from 2 min on).
fn outage(locale: Locale, error_ratio: f64, until: u64) -> Scene {
    let runbook = Arc::new(Runbook::embedded());
    let mut engine = Engine::new(Arc::clone(&runbook), locale);
    let mut ev = Evidence::new();
    let mut eval = None;
    for secs in (0..=until).step_by(60) {
        evidence_at(&mut ev, secs, true, error_ratio);
        eval = Some(engine.evaluate(&ev, at(secs)));
    }
    Scene {
        runbook,
        eval: eval.expect("evaluated"),
    }
}

/// The outage, then recovery from `recover_at` until every symptom has cleared (resolve_after 5 min).
fn recovered(locale: Locale, recover_at: u64) -> (Scene, Timestamp) {
    let runbook = Arc::new(Runbook::embedded());
    let mut engine = Engine::new(Arc::clone(&runbook), locale);
    let mut ev = Evidence::new();
    let mut secs = 0;
    let mut cleared_at = None;
    let mut eval = None;
    while cleared_at.is_none() {
        let broken = secs < recover_at;
        evidence_at(&mut ev, secs, broken, if broken { 0.124 } else { 0.004 });
        let e = engine.evaluate(&ev, at(secs));
        if !broken && !e.sections.iter().any(|s| s.section == "errors" && s.active) {
            cleared_at = Some(at(secs));
        }
        eval = Some(e);
        secs += 60;
        assert!(secs < recover_at + min(30), "the section never cleared");
    }
    (
        Scene {
            runbook,
            eval: eval.expect("evaluated"),
        },
        cleared_at.expect("cleared"),
    )
}

fn mailbox(s: &str) -> Mailbox {
    s.parse().expect("mailbox")
}

/// The incident as the store would hold it after `event` to `level`.
fn incident(event: PageEvent, level: Level) -> Incident {
    let opened = at(min(2));
    let mut i = Incident {
        id: Incident::make_id("errors", opened),
        section: "errors".into(),
        severity: Severity::Major,
        state: IncidentState::Open,
        opened_at: opened,
        critical_since: None,
        resolved_at: None,
        reopened: 0,
        paged: BTreeMap::from([(Level::L1, opened)]),
        last_page: BTreeMap::from([(Level::L1, opened)]),
        reminders: 0,
        acks: BTreeMap::new(),
        symptoms: BTreeMap::from([("errors.ratio_high".into(), "Error rate 12.4% > 5%".into())]),
        cause: "errors.supabase_down".into(),
        timeline: Vec::new(),
        resolve_note: None,
        held_until_clear: false,
        resolve_notified: false,
        reopen_pending: false,
        diagnosis: None,
    };
    // The timeline as the book writes it: words kept as messages, worded in the email's language.
    i.note(
        opened,
        "opened",
        Msg::new(MsgId::TlOpened)
            .arg("section", "errors")
            .arg("severity", "major"),
    );
    i.note(opened, "paged", paged(Level::L1, MsgId::EventOpened));
    let ack = |i: &mut Incident, secs: u64| {
        i.acks.insert(
            Level::L1,
            Ack {
                by: "Ana Souza".into(),
                at: at(secs),
            },
        );
        let msg = Msg::new(MsgId::TlAcked)
            .arg("level", "L1")
            .peer("by", "Ana Souza");
        i.note(at(secs), "acknowledged", msg);
    };
    match (event, level) {
        (PageEvent::Opened, _) => {}
        (PageEvent::Reminder, _) => {
            i.reminders = 1;
            i.last_page.insert(Level::L1, at(min(17)));
        }
        (PageEvent::Escalated, _) => {
            ack(&mut i, min(9));
            i.paged.insert(Level::L2, at(min(32)));
            i.last_page.insert(Level::L2, at(min(32)));
            i.note(
                at(min(32)),
                "paged",
                paged(Level::L2, MsgId::EventEscalated),
            );
        }
        (PageEvent::Reopened, _) => {
            ack(&mut i, min(9));
            i.reopened = 1;
            i.note(at(min(20)), "resolved", Msg::new(MsgId::TlCleared));
            i.note(
                at(min(31)),
                "reopened",
                Msg::new(MsgId::TlReopened).arg("n", 1),
            );
        }
        (PageEvent::Resolved, _) => {
            ack(&mut i, min(9));
            i.paged.insert(Level::L2, at(min(32)));
            i.last_page.insert(Level::L2, at(min(32)));
            i.note(
                at(min(32)),
                "paged",
                paged(Level::L2, MsgId::EventEscalated),
            );
            // A person's note: their own words, quoted in either language.
            i.note(
                at(min(30)),
                "note",
                Msg::new(MsgId::Untranslated)
                    .peer("text", "Supabase confirmed an incident on their side"),
            );
        }
    }
    i
}

/// The timeline's words for a page to `level` for `event` (an `Event*` message).
fn paged(level: Level, event: MsgId) -> Msg {
    Msg::new(MsgId::TlPaged)
        .arg("level", level)
        .msg("event", Msg::new(event))
}

fn public_url() -> Url {
    Url::parse("https://watchdog.harven.ai").expect("url")
}

fn recipients(level: Level) -> Vec<Mailbox> {
    vec![mailbox(match level {
        Level::L1 => "DevOps de Plantão <devops@harven.ai>",
        Level::L2 => "techlead@harven.ai",
        Level::L3 => "cto@harven.ai",
    })]
}

/// Renders one email of the incident for `level` and `event` in `locale` (also drawn by
/// `layout`, which measures the HTML part in a browser).
pub(crate) fn render_event(
    locale: Locale,
    level: Level,
    event: PageEvent,
) -> (RenderedEmail, Incident) {
    render_event_with(locale, level, event, |_| Vec::new())
}

/// [`render_event`] with the symptom charts `charts` makes for the email's `now`.
pub(crate) fn render_event_with(
    locale: Locale,
    level: Level,
    event: PageEvent,
    charts: impl Fn(Timestamp) -> Vec<SymptomChart>,
) -> (RenderedEmail, Incident) {
    let from = mailbox("Harven Watchdog <watchdog@harven.ai>");
    let to = recipients(level);
    let (scene, now, inc) = match event {
        PageEvent::Resolved => {
            let (scene, cleared) = recovered(locale, min(40));
            let mut inc = incident(event, level);
            inc.state = IncidentState::Resolved;
            inc.resolved_at = Some(cleared);
            inc.resolve_note = None;
            inc.note(cleared, "resolved", Msg::new(MsgId::TlCleared));
            (scene, cleared, inc)
        }
        PageEvent::Reminder => (
            outage(locale, 0.124, min(17)),
            at(min(17)),
            incident(event, level),
        ),
        PageEvent::Escalated => (
            outage(locale, 0.124, min(32)),
            at(min(32)),
            incident(event, level),
        ),
        PageEvent::Reopened => (
            outage(locale, 0.124, min(33)),
            at(min(33)),
            incident(event, level),
        ),
        PageEvent::Opened => (
            outage(locale, 0.124, min(2)),
            at(min(2)),
            incident(event, level),
        ),
    };
    let n = match event {
        PageEvent::Reminder => 1,
        PageEvent::Reopened => inc.reopened,
        _ => 0,
    };
    let page = Page::new(&inc, level, event, n, now);
    let links = (event != PageEvent::Resolved).then(|| {
        ActionLinks::sign(
            &LinkKeys::new(KEY),
            &public_url(),
            &inc.id,
            inc.reopened,
            level,
            now,
            Duration::from_secs(24 * 3600),
        )
    });
    let section = scene.section().clone();
    let symptoms = scene.symptoms();
    let charts = charts(now);
    let input = EmailInput {
        incident: &inc,
        page: &page,
        section: &section,
        symptoms: &symptoms,
        runbook: &scene.runbook,
        recipients: &to,
        from: &from,
        public_url: &public_url(),
        locale,
        links: links.as_ref(),
        charts: &charts,
        now,
    };
    let email = Renderer::new().render(&input).expect("render");
    (email, inc)
}

/// The email read back from its bytes, as a mail client sees it.
fn parse(email: &RenderedEmail) -> ReceivedMail {
    ReceivedMail::parse(PathBuf::from("rendered.eml"), &email.formatted())
}

/// The decoded text part, with the CRLF line ends of the wire turned back into `\n`.
fn text_of(mail: &ReceivedMail) -> String {
    mail.text()
        .expect("a text/plain part")
        .replace("\r\n", "\n")
}

/// The decoded HTML part, line ends as rendered.
fn html_of(mail: &ReceivedMail) -> String {
    mail.html().expect("a text/html part").replace("\r\n", "\n")
}

/// Whether two bodies are the same text, ignoring line-end style and the final line break.
fn same_body(sent: &str, rendered: &str) -> bool {
    sent.replace("\r\n", "\n").trim_end() == rendered.trim_end()
}

/// HTML entities back to characters, to compare text that the HTML part escapes.
fn unescape(html: &str) -> String {
    html.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&#x2f;", "/")
        .replace("&amp;", "&")
}

/// The emails of the incident's life, each to the level it goes to.
pub(crate) const EVENTS: [(Level, PageEvent); 5] = [
    (Level::L1, PageEvent::Opened),
    (Level::L2, PageEvent::Escalated),
    (Level::L1, PageEvent::Reminder),
    (Level::L1, PageEvent::Reopened),
    (Level::L1, PageEvent::Resolved),
];

#[test]
fn the_engine_names_supabase_down_for_this_scene() {
    let scene = outage(Locale::PtBr, 0.124, min(2));
    let top = scene.section().diagnosis.top().expect("a likely cause");
    assert_eq!(top.id, "errors.supabase_down");
    assert!(scene.section().active);
}

#[test]
fn subjects_follow_the_design_in_both_locales() {
    let cases = [
        (
            Locale::PtBr,
            Level::L1,
            PageEvent::Opened,
            "[Harven][L1][major] Error rate 12.4% > 5% — provável: Supabase down",
        ),
        (
            Locale::En,
            Level::L1,
            PageEvent::Opened,
            "[Harven][L1][major] Error rate 12.4% above 5% — likely: Supabase down",
        ),
        (
            Locale::PtBr,
            Level::L2,
            PageEvent::Escalated,
            "[Harven][L2][major] Error rate 12.4% > 5% — provável: Supabase down",
        ),
        (
            Locale::PtBr,
            Level::L1,
            PageEvent::Resolved,
            "[Harven][L1][resolved] Error rate > 5% — resolvido em 39 min",
        ),
        (
            Locale::En,
            Level::L1,
            PageEvent::Resolved,
            "[Harven][L1][resolved] Error rate above 5% — resolved in 39 min",
        ),
    ];
    for (locale, level, event, want) in cases {
        let (email, _) = render_event(locale, level, event);
        assert_eq!(email.subject, want, "{locale:?} {level} {event}");
        let mail = parse(&email);
        assert_eq!(
            mail.subject().as_deref(),
            Some(want),
            "the subject survives RFC 2047 encoding"
        );
    }
}

#[test]
fn a_section_without_a_likely_cause_says_so() {
    // Only the error ratio is wrong: nothing in the runbook's evidence for `errors` holds.
    let runbook = Arc::new(Runbook::embedded());
    for (locale, want) in [
        (Locale::PtBr, "— causa provável: desconhecida"),
        (Locale::En, "— likely cause: unknown"),
    ] {
        let mut engine = Engine::new(Arc::clone(&runbook), locale);
        let mut ev = Evidence::new();
        let mut eval = None;
        for secs in [0, 60, 120] {
            evidence_at(&mut ev, secs, false, 0.124);
            eval = Some(engine.evaluate(&ev, at(secs)));
        }
        let scene = Scene {
            runbook: Arc::clone(&runbook),
            eval: eval.expect("eval"),
        };
        assert!(scene.section().diagnosis.top().is_none());
        let mut inc = incident(PageEvent::Opened, Level::L1);
        inc.cause = "unknown".into();
        let page = Page::new(&inc, Level::L1, PageEvent::Opened, 0, at(120));
        let (section, symptoms, to) = (
            scene.section().clone(),
            scene.symptoms(),
            recipients(Level::L1),
        );
        let email = Renderer::new()
            .render(&EmailInput {
                incident: &inc,
                page: &page,
                section: &section,
                symptoms: &symptoms,
                runbook: &runbook,
                recipients: &to,
                from: &mailbox("watchdog@harven.ai"),
                public_url: &public_url(),
                locale,
                links: None,
                charts: &[],
                now: at(120),
            })
            .expect("render");
        assert!(email.subject.ends_with(want), "{}", email.subject);
        let mail = parse(&email);
        assert_eq!(mail.header("X-Harven-Cause"), Some("unknown"));
        let text = text_of(&mail);
        let no_likely = match locale {
            Locale::PtBr => "Nenhuma causa provável",
            Locale::En => "No likely cause",
        };
        assert!(text.contains(no_likely), "{text}");
    }
}

#[test]
fn every_email_carries_the_headers_and_threads_with_its_incident() {
    for locale in [Locale::PtBr, Locale::En] {
        let mut ids = Vec::new();
        for (level, event) in EVENTS {
            let (email, inc) = render_event(locale, level, event);
            let mail = parse(&email);
            let ctx = format!("{locale:?} {level} {event}");
            assert_eq!(
                mail.header("X-Harven-Incident"),
                Some(inc.id.as_str()),
                "{ctx}"
            );
            assert_eq!(mail.header("X-Harven-Section"), Some("errors"), "{ctx}");
            assert_eq!(mail.header("X-Harven-Level"), Some(level.as_str()), "{ctx}");
            assert_eq!(mail.header("X-Harven-Event"), Some(event.as_str()), "{ctx}");
            assert_eq!(
                mail.header("X-Harven-Cause"),
                Some("errors.supabase_down"),
                "{ctx}: the resolved email keeps the cause the incident recorded"
            );
            assert_eq!(mail.header("Auto-Submitted"), Some("auto-generated"));
            let root = format!("<{}@harven-watchdog>", inc.id);
            assert_eq!(mail.header("In-Reply-To"), Some(root.as_str()), "{ctx}");
            assert_eq!(mail.header("References"), Some(root.as_str()), "{ctx}");
            let n = match event {
                PageEvent::Reminder | PageEvent::Reopened => 1,
                _ => 0,
            };
            let want_id = format!("<{}.{level}.{event}.{n}@harven-watchdog>", inc.id);
            assert_eq!(mail.header("Message-ID"), Some(want_id.as_str()), "{ctx}");
            assert_eq!(email.message_id, want_id);
            ids.push(want_id);
            let to = mail.decoded_header("To").expect("To");
            let want_to = match level {
                Level::L1 => "devops@harven.ai",
                Level::L2 => "techlead@harven.ai",
                Level::L3 => "cto@harven.ai",
            };
            assert!(to.contains(want_to), "{ctx}: {to}");
            assert!(
                mail.decoded_header("From")
                    .expect("From")
                    .contains("watchdog@harven.ai")
            );
            assert!(mail.header("Date").is_some());
            let parts = mail.parts();
            assert_eq!(
                parts
                    .iter()
                    .map(|p| p.content_type.as_str())
                    .collect::<Vec<_>>(),
                ["text/plain", "text/html"],
                "{ctx}"
            );
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), EVENTS.len(), "one Message-ID per page");
    }
}

#[test]
fn rendering_the_same_page_twice_gives_the_same_message_id() {
    let (a, _) = render_event(Locale::PtBr, Level::L2, PageEvent::Escalated);
    let (b, _) = render_event(Locale::PtBr, Level::L2, PageEvent::Escalated);
    assert_eq!(a.message_id, b.message_id);
    assert_eq!(a.text, b.text, "rendering is deterministic");
    assert_eq!(a.html, b.html);
}

#[test]
fn the_html_part_holds_the_diagnosis_table_and_the_commands_verbatim() {
    for locale in [Locale::PtBr, Locale::En] {
        let (email, inc) = render_event(locale, Level::L2, PageEvent::Escalated);
        let mail = parse(&email);
        let raw_html_part = mail
            .parts()
            .into_iter()
            .find(|p| p.content_type == "text/html")
            .expect("html part");
        let cte = raw_html_part
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("Content-Transfer-Encoding"))
            .map(|(_, v)| v.to_ascii_lowercase());
        assert!(
            matches!(cte.as_deref(), Some("quoted-printable" | "base64")),
            "{cte:?}"
        );
        let html = html_of(&mail);
        assert!(
            same_body(&html, &email.html),
            "what is sent decodes to what was rendered"
        );

        assert!(html.contains("<table class=\"diagnosis\""), "{html}");
        for id in [
            "errors.supabase_down",
            "errors.bad_deploy",
            "errors.openai_rate_limit",
            "errors.memory_leak",
        ] {
            assert!(
                html.contains(id),
                "every cause of the section is listed: {id}"
            );
        }
        let (likely, ruled_out, holds) = match locale {
            Locale::PtBr => ("provável", "descartada", "verdadeira"),
            Locale::En => ("likely", "ruled out", "holds"),
        };
        assert!(html.contains(likely) && html.contains(ruled_out) && html.contains(holds));
        let plain = unescape(&html);
        assert!(
            plain.contains("supabase.rest_ok == false"),
            "evidence conditions are shown"
        );
        assert!(plain.contains("status.indicator{page=\"supabase\"} in [major, critical]"));
        let command = "curl -s https://status.supabase.com/api/v2/status.json | jq '.status'";
        assert!(
            plain.contains(&format!("<code>{command}</code>")),
            "the command, verbatim and monospace"
        );
        assert!(html.contains("<pre"), "commands are in a <pre> block");
        assert!(plain.contains("Supabase: support@supabase.com (SLA Enterprise)"));
        assert!(plain.contains("https://sentry.io/organizations/harven/issues/"));
        assert!(plain.contains("https://grafana.harven.eximiaventures.com.br"));
        assert!(plain.contains(&format!("https://watchdog.harven.ai/incidents/{}", inc.id)));
        assert!(
            html.contains("href=\"https://watchdog.harven.ai/act/"),
            "ack/resolve links, their URLs not entity-mangled"
        );
        assert!(plain.contains("12.4%"), "the symptom's value");
        assert!(plain.contains("Ana Souza"), "who acknowledged L1");
        assert!(
            !html.contains("<script"),
            "nothing executable in the HTML part"
        );
    }
}

#[test]
fn the_text_part_holds_symptoms_actions_links_history_and_the_checklist() {
    let (email, inc) = render_event(Locale::PtBr, Level::L2, PageEvent::Escalated);
    let mail = parse(&email);
    let text = text_of(&mail);
    assert!(
        same_body(&text, &email.text),
        "what is sent decodes to what was rendered"
    );
    for want in [
        "Escalado para L2: continua sem resolução 30 min após a abertura",
        "Error rate > 5%",
        "valor: 12.4%; limite: > 5%; normaliza com: < 3%",
        "prometheus.error_ratio (condição: prometheus.error_ratio > 0.05)",
        "[provável] Supabase down (errors.supabase_down)",
        "- [verdadeira] o REST do Supabase responde: não (precisa: não)\n        supabase.rest_ok == false\n",
        "[descartada] Memory leak (errors.memory_leak)",
        "Verificar status.supabase.com",
        "      $ curl -s https://status.supabase.com/api/v2/status.json | jq '.status'",
        "Fornecedor: Supabase: support@supabase.com (SLA Enterprise)",
        "Sentry: https://sentry.io/organizations/harven/issues/",
        "Este incidente no watchdog: https://watchdog.harven.ai/incidents/",
        "Reconhecer (ack) como L2: https://watchdog.harven.ai/act/",
        "Resolver: https://watchdog.harven.ai/act/",
        "- L1: acionado em 2026-11-18 11:08:40 UTC; reconhecido por Ana Souza em 2026-11-18 11:15:40 UTC",
        "- L2: acionado em 2026-11-18 11:38:40 UTC; não reconhecido",
        "- L3: não acionado",
        "== Checklist de incidente ==",
        "[ ] Identificar sintomas",
        "[ ] Verificar dashboards (Grafana, Sentry)",
        "[ ] Criar action items",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(text.contains(&inc.id));
    assert!(
        !text.contains("&#x"),
        "the text part is not HTML-escaped:\n{text}"
    );

    let (email, _) = render_event(Locale::En, Level::L1, PageEvent::Opened);
    let text = text_of(&parse(&email));
    for want in [
        "Incident opened at 2026-11-18 11:08:40 UTC: High error rate (major); paging L1.",
        "value: 12.4%; threshold: > 5%; clears at: < 3%",
        "[likely] Supabase down (errors.supabase_down)",
        "Check status.supabase.com",
        "== Incident checklist ==",
        "[ ] Identify the symptoms",
        "Acknowledge as L1: https://watchdog.harven.ai/act/",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn reminders_and_reopenings_say_what_they_are() {
    let (email, _) = render_event(Locale::PtBr, Level::L1, PageEvent::Reminder);
    let text = text_of(&parse(&email));
    assert!(
        text.starts_with("Lembrete: aberto há 15 min e L1 ainda não reconheceu."),
        "{text}"
    );
    assert!(text.contains("Lembretes enviados: 1"));
    let (email, _) = render_event(Locale::En, Level::L1, PageEvent::Reopened);
    let text = text_of(&parse(&email));
    assert!(text.starts_with("Reopened (time 1)"), "{text}");
    assert!(text.contains("Reopened: 1"));
    assert!(
        text.contains("reopened: the section fired again (reopening #1)"),
        "the timeline: {text}"
    );
}

#[test]
fn the_resolved_email_has_duration_timeline_and_a_postmortem_draft() {
    let (email, inc) = render_event(Locale::PtBr, Level::L1, PageEvent::Resolved);
    let mail = parse(&email);
    let text = text_of(&mail);
    let html = unescape(&html_of(&mail));
    assert!(
        text.starts_with("Resolvido em 2026-11-18 11:47:40 UTC após 39 min"),
        "{text}"
    );
    assert!(text.contains("Duração: 39 min"));
    assert!(
        !text.contains("/act/"),
        "no ack/resolve links once resolved"
    );
    assert!(
        !text.contains("O que fazer"),
        "no runbook actions once resolved (the draft lists them)"
    );
    for want in [
        "== Linha do tempo ==",
        "abertura: incidente errors aberto (major)",
        "reconhecimento: L1 reconhecido por «Ana Souza»",
        "resolução: todos os sintomas normalizaram",
        "== Rascunho de post-mortem (copie e complete) ==",
        "Post-mortem: Error Rate Alto",
        "- Início: 2026-11-18 11:08:40 UTC",
        "- Fim: 2026-11-18 11:47:40 UTC",
        "- Error rate > 5% (errors.ratio_high): Error rate 12.4% > 5%",
        "Causa provável\n- Supabase down (errors.supabase_down)",
        "Quem reconheceu\n- L1: Ana Souza em 2026-11-18 11:15:40 UTC",
        "Escalonamentos\n- L1 acionado em 2026-11-18 11:08:40 UTC\n- L2 acionado em 2026-11-18 11:38:40 UTC",
        "Ações tomadas\n",
        "«Supabase confirmed an incident on their side»",
        "- Verificar status.supabase.com",
        "Causa raiz\n- (completar)",
        "Action items\n- [ ] (completar)",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(
        html.contains("<pre class=\"postmortem\""),
        "the HTML part carries the draft too"
    );
    assert!(html.contains("- L1: Ana Souza em 2026-11-18 11:15:40 UTC"));
    assert_eq!(mail.header("X-Harven-Incident"), Some(inc.id.as_str()));

    let (email, _) = render_event(Locale::En, Level::L1, PageEvent::Resolved);
    let text = text_of(&parse(&email));
    for want in [
        "Resolved at 2026-11-18 11:47:40 UTC after 39 min",
        "== Postmortem draft (copy and complete) ==",
        "Probable cause\n- Supabase down (errors.supabase_down)",
        "Acknowledged by\n- L1: Ana Souza at",
        "Root cause\n- (to complete)",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn no_secret_of_the_configuration_reaches_an_email() {
    let secrets = [
        ("HARVEN_WATCHDOG__SMTP__HOST", "smtp.example.com", None),
        ("HARVEN_WATCHDOG__SMTP__USERNAME", "watchdog", None),
        (
            "HARVEN_WATCHDOG__SMTP__PASSWORD",
            "smtp-pass-9f2c1e",
            Some("smtp-pass-9f2c1e"),
        ),
        (
            "HARVEN_WATCHDOG__SERVER__API_TOKEN",
            "api-token-77ab31c9e5f2d8a4b6",
            Some("api-token-77ab31c9e5f2d8a4b6"),
        ),
        (
            "HARVEN_WATCHDOG__SERVER__PUBLIC_URL",
            "https://ops:url-pass-5d1e@watchdog.harven.ai/",
            Some("url-pass-5d1e"),
        ),
        (
            "HARVEN_WATCHDOG__SUPABASE__URL",
            "https://abc.supabase.co",
            None,
        ),
        (
            "HARVEN_WATCHDOG__SUPABASE__API_KEY",
            "sb-key-0c4f9a",
            Some("sb-key-0c4f9a"),
        ),
        (
            "HARVEN_WATCHDOG__REDIS__PASSWORD",
            "redis-pass-31be",
            Some("redis-pass-31be"),
        ),
    ];
    let data = tempfile::tempdir().expect("tempdir");
    let mut env: Vec<(String, String)> = secrets
        .iter()
        .map(|(k, v, _)| (k.to_string(), v.to_string()))
        .collect();
    env.push((
        "HARVEN_WATCHDOG__STORE__PATH".into(),
        data.path().join("w.db").display().to_string(),
    ));
    let config = Config::load_with_env(&[], env).expect("config");

    let scene = outage(config.runbook.locale, 0.124, min(32));
    let inc = incident(PageEvent::Escalated, Level::L2);
    let page = Page::new(&inc, Level::L2, PageEvent::Escalated, 0, at(min(32)));
    let links = ActionLinks::sign(
        &LinkKeys::new(KEY),
        &config.server.public_url,
        &inc.id,
        inc.reopened,
        Level::L2,
        at(min(32)),
        config.escalation.link_ttl,
    );
    let (section, symptoms) = (scene.section().clone(), scene.symptoms());
    let email = Renderer::new()
        .render(&EmailInput {
            incident: &inc,
            page: &page,
            section: &section,
            symptoms: &symptoms,
            runbook: &scene.runbook,
            recipients: &config.escalation.l2.to,
            from: &config.smtp.from,
            public_url: &config.server.public_url,
            locale: config.runbook.locale,
            links: Some(&links),
            charts: &[],
            now: at(min(32)),
        })
        .expect("render");
    let mail = parse(&email);
    let everything = format!(
        "{}\n{}\n{}\n{}\n{:?}",
        String::from_utf8_lossy(&email.formatted()),
        email.text,
        email.html,
        links.ack_url,
        mail.headers
    );
    for (var, _, secret) in secrets {
        if let Some(secret) = secret {
            assert!(!everything.contains(secret), "{var} leaked into the email");
        }
    }
    assert!(
        email.text.contains("https://watchdog.harven.ai/incidents/"),
        "links drop the URL's user-info but keep working"
    );
}

/// `email` sent through a real SMTP server (aiosmtpd), as it arrived there.
async fn through_smtp(email: &RenderedEmail) -> ReceivedMail {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

    let server = SmtpServer::start().await;
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(server.host())
        .port(server.port())
        .timeout(Some(Duration::from_secs(10)))
        .build();
    mailer
        .send_raw(email.message.envelope(), &email.formatted())
        .await
        .expect("the SMTP server accepts the email");
    server
        .wait_for_messages(1, Duration::from_secs(30))
        .await
        .remove(0)
}

#[tokio::test]
async fn what_we_render_is_what_arrives_through_a_real_smtp_server() {
    let (email, inc) = render_event(Locale::PtBr, Level::L2, PageEvent::Escalated);
    let got = through_smtp(&email).await;

    assert_eq!(got.rcpt_to, vec!["techlead@harven.ai"]);
    assert_eq!(got.subject().as_deref(), Some(email.subject.as_str()));
    assert!(email.subject.contains("provável: Supabase down"));
    for (name, want) in [
        ("X-Harven-Incident", inc.id.as_str()),
        ("X-Harven-Section", "errors"),
        ("X-Harven-Level", "L2"),
        ("X-Harven-Event", "escalated"),
        ("X-Harven-Cause", "errors.supabase_down"),
        ("Message-ID", email.message_id.as_str()),
    ] {
        assert_eq!(got.header(name), Some(want), "{name}");
    }
    let root = format!("<{}@harven-watchdog>", inc.id);
    assert_eq!(got.header("In-Reply-To"), Some(root.as_str()));
    assert_eq!(got.header("References"), Some(root.as_str()));
    assert!(
        same_body(&text_of(&got), &email.text),
        "the text part arrives intact"
    );
    assert!(
        same_body(&html_of(&got), &email.html),
        "the HTML part arrives intact"
    );
    assert!(text_of(&got).contains("[ ] Identificar sintomas"));
}

// ------------------------------------------------------------------------------------------------
// A bad deploy with Sentry and Coolify configured (issue 16)
// ------------------------------------------------------------------------------------------------

/// Sentry's top new issues as its probe words them: a hostile title (quotes, a guillemet, a line
/// break) with Sentry's link, and an issue whose "link" is no http(s) URL.
const SENTRY_TOP: &str = "BACKEND-7F \"KeyError: 'user_id' in /api/chat » fake\" (42 events, 7 users, error) https://harven.sentry.io/issues/7/ · BACKEND-80 \"TimeoutError: upstream\" (5 events, 2 users, fatal) javascript:alert(1)";

/// The stack healthy but for a bad deploy at `secs`: 12.4% of requests fail, ERROR lines, a deploy
/// 5 min ago in Coolify (previous deployment `h7pz3a`, commit `1234abcd`), and two issues Sentry
/// first saw after the latest release.
fn bad_deploy_at(ev: &mut Evidence, secs: u64) {
    evidence_at(ev, secs, false, 0.124);
    ev.apply(report(
        "docker",
        secs,
        vec![
            Observation::boolean(backend("docker.running"), true),
            Observation::boolean(backend("docker.recent_deploy"), true),
            Observation::number(backend("docker.restarts"), 0.0),
            Observation::text(backend("docker.image"), "harven/backend:1.42"),
            Observation::text(backend("docker.previous_image"), "harven/backend:1.41"),
            Observation::number(log("error"), 40.0),
            Observation::number(log("supabase"), 0.0),
            Observation::number(log("openai"), 0.0),
        ],
    ));
    let word = |name: &'static str, v: &str| Observation::text(Key::new(name), v);
    ev.apply(report(
        "coolify",
        secs,
        vec![
            Observation::number(Key::new("coolify.deploy_age_seconds"), 300.0),
            Observation::boolean(Key::new("coolify.deploying"), false),
            word("coolify.current_deployment", "m2kq9x"),
            word("coolify.current_commit", "9f8e7d6c"),
            word("coolify.previous_deployment", "h7pz3a"),
            word("coolify.previous_commit", "1234abcd"),
            word("coolify.application", "k8cw4s0k"),
        ],
    ));
    ev.apply(report(
        "sentry",
        secs,
        vec![
            Observation::number(Key::new("sentry.new_since_release"), 2.0),
            Observation::number(Key::new("sentry.new_issues"), 2.0),
            Observation::number(Key::new("sentry.event_rate_ratio"), 1.0),
            Observation::number(Key::new("sentry.release_age_seconds"), 300.0),
            word("sentry.top_new_issues", SENTRY_TOP),
        ],
    ));
}

/// The L1 `opened` email of that bad deploy in `locale`, through a real SMTP server (aiosmtpd):
/// what arrived, and what was rendered.
async fn bad_deploy_email(locale: Locale) -> (ReceivedMail, RenderedEmail) {
    let runbook = Arc::new(Runbook::embedded());
    let mut engine = Engine::new(Arc::clone(&runbook), locale);
    let mut ev = Evidence::new();
    let mut eval = None;
    for secs in (0..=min(2)).step_by(60) {
        bad_deploy_at(&mut ev, secs);
        eval = Some(engine.evaluate(&ev, at(secs)));
    }
    let scene = Scene {
        runbook,
        eval: eval.expect("evaluated"),
    };
    let now = at(min(2));
    let mut inc = incident(PageEvent::Opened, Level::L1);
    inc.cause = "errors.bad_deploy".into();
    let page = Page::new(&inc, Level::L1, PageEvent::Opened, 0, now);
    let links = ActionLinks::sign(
        &LinkKeys::new(KEY),
        &public_url(),
        &inc.id,
        0,
        Level::L1,
        now,
        Duration::from_secs(24 * 3600),
    );
    let section = scene.section().clone();
    assert_eq!(
        section.diagnosis.top().map(|c| c.id.as_str()),
        Some("errors.bad_deploy"),
        "{:#?}",
        section.diagnosis
    );
    let symptoms = scene.symptoms();
    let (from, to) = (
        mailbox("Harven Watchdog <watchdog@harven.ai>"),
        recipients(Level::L1),
    );
    let input = EmailInput {
        incident: &inc,
        page: &page,
        section: &section,
        symptoms: &symptoms,
        runbook: &scene.runbook,
        recipients: &to,
        from: &from,
        public_url: &public_url(),
        locale,
        links: Some(&links),
        charts: &[],
        now,
    };
    let email = Renderer::new().render(&input).expect("render");
    (through_smtp(&email).await, email)
}

/// Sentry's top new issues are their own list under the bad deploy: each title quoted as a peer's
/// words (the guillemet inside cannot close the quote), with its figures in the email's words and
/// Sentry's link (quoted in the text part, a link in the HTML part); an issue whose link is no
/// http(s) URL is listed without one. The raw reading is not a context value any more.
#[tokio::test]
async fn a_bad_deploy_email_lists_sentrys_top_new_issues_each_quoted_with_its_link() {
    let (got, _) = bad_deploy_email(Locale::PtBr).await;
    let text = text_of(&got);
    assert!(text.contains("Novos issues no Sentry:"), "{text}");
    assert!(
        text.contains(
            "- «BACKEND-7F» «KeyError: 'user_id' in /api/chat › fake» (42 eventos, 7 usuários, «error»)\n    «https://harven.sentry.io/issues/7/»"
        ),
        "{text}"
    );
    assert!(
        text.contains("- «BACKEND-80» «TimeoutError: upstream» (5 eventos, 2 usuários, «fatal»)\n"),
        "{text}"
    );
    assert!(!text.contains("javascript:"), "{text}");
    assert!(!text.contains("sentry_new_issues ="), "{text}");
    let html = html_of(&got);
    assert!(
        html.contains(r#"<a href="https://harven.sentry.io/issues/7/">"#),
        "{html}"
    );
    assert!(!html.contains("javascript:"), "{html}");

    let (got, _) = bad_deploy_email(Locale::En).await;
    let text = text_of(&got);
    assert!(text.contains("New issues in Sentry:"), "{text}");
    assert!(text.contains("(42 events, 7 users, «error»)"), "{text}");
}

/// The bad deploy's email names the exact Coolify deployment to go back to as an action in the
/// email's language (not a `# …` command comment), beside §6's Docker and git steps, and the
/// Coolify command with the previous commit.
#[tokio::test]
async fn a_bad_deploy_email_names_the_coolify_deployment_and_commit_to_roll_back_to() {
    for (locale, action) in [
        (
            Locale::PtBr,
            "No Coolify, o deployment anterior é h7pz3a (commit 1234abcd); o atual é m2kq9x (commit 9f8e7d6c)",
        ),
        (
            Locale::En,
            "In Coolify, the previous deployment is h7pz3a (commit 1234abcd); the current one is m2kq9x (commit 9f8e7d6c)",
        ),
    ] {
        let (got, email) = bad_deploy_email(locale).await;
        assert_eq!(got.header("X-Harven-Cause"), Some("errors.bad_deploy"));
        let text = text_of(&got);
        assert!(text.contains(&format!("  - {action}\n")), "{text}");
        assert!(unescape(&html_of(&got)).contains(&format!("<li>{action}</li>")));
        assert!(
            text.contains("$ coolify app rollback run k8cw4s0k --commit 1234abcd"),
            "{text}"
        );
        assert!(text.contains("$ git checkout HEAD~1"), "{text}");
        assert!(!text.contains("$ # Coolify"), "{text}");
        assert!(!email.text.contains("{{"), "{}", email.text);
    }
}

// ------------------------------------------------------------------------------------------------
// The /act/{token} routes
// ------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Call {
    Ack(String, Level, String),
    Resolve(String, String, String),
}

/// A `Desk` over a map of incidents that records every call that changes something.
#[derive(Default)]
struct Recorder {
    incidents: Mutex<BTreeMap<String, Incident>>,
    calls: Mutex<Vec<Call>>,
}

impl Recorder {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("lock").clone()
    }
}

impl Desk for Recorder {
    fn incident(&self, id: &str) -> Result<Option<Incident>, ActionError> {
        Ok(self.incidents.lock().expect("lock").get(id).cloned())
    }

    fn ack(
        &self,
        incident: &str,
        level: Option<Level>,
        episode: Option<u32>,
        by: &str,
    ) -> Result<Level, ActionError> {
        let level = level.expect("a link acks for its level");
        let mut map = self.incidents.lock().expect("lock");
        let inc = map
            .get_mut(incident)
            .ok_or_else(|| ActionError::UnknownIncident(incident.into()))?;
        assert_eq!(
            episode,
            Some(inc.reopened),
            "the recorder's incidents never reopen"
        );
        inc.acks.insert(
            level,
            Ack {
                by: by.into(),
                at: at(0),
            },
        );
        self.calls
            .lock()
            .expect("lock")
            .push(Call::Ack(incident.into(), level, by.into()));
        Ok(level)
    }

    fn resolve(
        &self,
        incident: &str,
        episode: Option<u32>,
        by: &str,
        note: &str,
    ) -> Result<(), ActionError> {
        let mut map = self.incidents.lock().expect("lock");
        let inc = map
            .get_mut(incident)
            .ok_or_else(|| ActionError::UnknownIncident(incident.into()))?;
        assert_eq!(
            episode,
            Some(inc.reopened),
            "the recorder's incidents never reopen"
        );
        if inc.state == IncidentState::Resolved {
            return Err(ActionError::AlreadyResolved(incident.into()));
        }
        inc.state = IncidentState::Resolved;
        self.calls.lock().expect("lock").push(Call::Resolve(
            incident.into(),
            by.into(),
            note.into(),
        ));
        Ok(())
    }

    fn windows(&self) -> Result<Vec<StoredWindow>, ActionError> {
        unreachable!("the link pages never list windows")
    }

    fn add_window(&self, _: &MaintenanceWindow, _: &str, _: Timestamp) -> Result<i64, ActionError> {
        unreachable!("the link pages never create windows")
    }

    fn end_window(&self, _: i64, _: &str, _: Timestamp) -> Result<EndWindow, ActionError> {
        unreachable!("the link pages never end windows")
    }
}

/// The actions service over `desk`, as the `/act/` routes take it (no section, no configured
/// window: links act on incidents only).
fn actions_over(desk: Arc<dyn Desk>) -> Arc<Actions> {
    Arc::new(Actions::new(desk, Vec::new(), Vec::new()))
}

struct ActServer {
    base: String,
    recorder: Arc<Recorder>,
    hand: harven_watchdog::clock::ManualClock,
    incident: String,
    http: reqwest::Client,
    _task: tokio::task::JoinHandle<()>,
}

impl ActServer {
    async fn start(locale: Locale) -> Self {
        crate::support::init();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let recorder = Arc::new(Recorder::default());
        let inc = incident(PageEvent::Opened, Level::L1);
        let id = inc.id.clone();
        recorder
            .incidents
            .lock()
            .expect("lock")
            .insert(id.clone(), inc);
        let (clock, hand) = Clock::manual(at(min(3)));
        let auth = link_auth(&clock);
        let router = act::routes(
            actions_over(Arc::clone(&recorder) as Arc<dyn Desk>),
            Arc::new(LinkKeys::new(KEY)),
            clock,
            Url::parse(&base).expect("url"),
            locale,
            auth,
        );
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("serve");
        });
        Self {
            base,
            recorder,
            hand,
            incident: id,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            _task: task,
        }
    }

    fn url_for(&self, claims: &Claims, key: &[u8]) -> String {
        links::act_url(
            &Url::parse(&self.base).expect("url"),
            &token::sign(key, claims),
        )
    }

    fn claims(&self, action: Action) -> Claims {
        Claims::new(
            self.incident.clone(),
            action,
            Level::L1,
            at(min(2)),
            Duration::from_secs(3600),
        )
    }

    async fn get(&self, url: &str) -> (u16, String) {
        let r = self.http.get(url).send().await.expect("GET");
        (r.status().as_u16(), r.text().await.expect("body"))
    }

    async fn post(&self, url: &str, form: &[(&str, &str)], origin: Option<&str>) -> (u16, String) {
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut req = self
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let r = req.send().await.expect("POST");
        (r.status().as_u16(), r.text().await.expect("body"))
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn get_shows_a_confirmation_and_changes_nothing() {
    let s = ActServer::start(Locale::PtBr).await;
    for action in [Action::Ack, Action::Resolve] {
        let url = s.url_for(&s.claims(action), KEY);
        let resp = s.http.get(&url).send().await.expect("GET");
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["cache-control"],
            "no-store",
            "a page behind a secret URL is not cached"
        );
        assert_eq!(resp.headers()["x-frame-options"], "DENY");
        assert_eq!(resp.headers()["referrer-policy"], "no-referrer");
        let page = resp.text().await.expect("body");
        assert!(page.contains(&s.incident), "{page}");
        assert!(page.contains("<form method=\"post\">"), "{page}");
        assert!(page.contains("Nada muda até você confirmar"));
        assert!(page.contains(&format!(
            "<input type=\"hidden\" name=\"incident\" value=\"{}\">",
            s.incident
        )));
        match action {
            Action::Ack => assert!(page.contains("Confirmar reconhecimento")),
            Action::Resolve => {
                assert!(page.contains("Confirmar resolução"));
                assert!(page.contains("name=\"note\""), "resolve asks for a note");
            }
        }
        // A mail scanner fetching the link twice more changes nothing either.
        s.get(&url).await;
        s.get(&url).await;
    }
    assert_eq!(s.recorder.calls(), vec![], "GET never acts");
}

#[tokio::test]
async fn post_with_a_valid_token_acts_once_and_shows_the_result() {
    let s = ActServer::start(Locale::En).await;
    let ack = s.url_for(&s.claims(Action::Ack), KEY);
    let (status, page) = s
        .post(
            &ack,
            &[
                ("incident", &s.incident),
                ("action", "ack"),
                ("by", "Ana Souza"),
            ],
            Some(&s.base),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Acknowledged by Ana Souza as L1 at 2026-11-18 11:09:40 UTC."),
        "{page}"
    );
    assert_eq!(
        s.recorder.calls(),
        vec![Call::Ack(s.incident.clone(), Level::L1, "Ana Souza".into())]
    );

    let resolve = s.url_for(&s.claims(Action::Resolve), KEY);
    let (status, page) = s
        .post(
            &resolve,
            &[
                ("incident", &s.incident),
                ("action", "resolve"),
                ("by", ""),
                ("note", "Supabase recovered; <b>nothing</b> to roll back"),
            ],
            None,
        )
        .await;
    assert_eq!(status, 200, "no Origin (curl): the token alone authorises");
    assert!(page.contains("Resolved by L1 via email link"), "{page}");
    assert_eq!(
        s.recorder.calls()[1],
        Call::Resolve(
            s.incident.clone(),
            "L1 via email link".into(),
            "Supabase recovered; <b>nothing</b> to roll back".into()
        )
    );

    let (status, body) = s.post(&resolve, &[("incident", &s.incident)], None).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("already resolved"));
    assert_eq!(s.recorder.calls().len(), 2);

    // The confirmation page of a resolved incident offers no form.
    let (status, page) = s.get(&ack).await;
    assert_eq!(status, 200);
    assert!(!page.contains("<form"), "{page}");
    assert!(page.contains("already resolved"));
}

#[tokio::test]
async fn forged_expired_and_mismatched_tokens_are_refused_and_change_nothing() {
    let s = ActServer::start(Locale::En).await;
    let good = s.claims(Action::Ack);
    let form = [
        ("incident", s.incident.as_str()),
        ("action", "ack"),
        ("by", "mallory"),
    ];

    // Another key (forged, or another watchdog's link).
    let forged = s.url_for(&good, b"another key, also 32 bytes long!");
    // The claims altered after signing: L1's token turned into a resolve.
    let signed = token::sign(KEY, &good);
    let (_, tag) = signed.split_once('.').expect("two parts");
    use base64::Engine as _;
    let altered = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("v1\nresolve\nL1\n{}\n{}", good.expires, s.incident));
    let tampered = links::act_url(
        &Url::parse(&s.base).expect("url"),
        &format!("{altered}.{tag}"),
    );
    let malformed = format!("{}/act/not-a-token", s.base);
    let truncated = format!("{}/act/{}", s.base, &signed[..signed.len() - 10]);

    for (what, url, why) in [
        ("forged", &forged, "not issued by this watchdog"),
        ("tampered", &tampered, "not issued by this watchdog"),
        ("malformed", &malformed, "damaged or incomplete"),
        ("truncated", &truncated, "damaged or incomplete"),
    ] {
        let (status, body) = s.get(url).await;
        assert_eq!(status, 403, "GET {what}: {body}");
        assert!(body.contains(why), "GET {what}: {body}");
        let (status, body) = s.post(url, &form, Some(&s.base)).await;
        assert_eq!(status, 403, "POST {what}: {body}");
        assert!(body.contains("Nothing was changed"), "{body}");
    }

    // Expired: an hour and a second after it was issued.
    let url = s.url_for(&good, KEY);
    s.hand.set(at(min(2) + 3601));
    let (status, body) = s.post(&url, &form, Some(&s.base)).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("expired at 2026-11-18 12:08:40 UTC"),
        "{body}"
    );
    let (status, _) = s.get(&url).await;
    assert_eq!(status, 403);
    s.hand.set(at(min(3)));

    // A valid token for another incident than the form names.
    let other = Claims::new(
        "latency-20261118T110640Z",
        Action::Ack,
        Level::L1,
        at(min(2)),
        Duration::from_secs(3600),
    );
    let (status, body) = s.post(&s.url_for(&other, KEY), &form, Some(&s.base)).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("another incident"), "{body}");
    // … and for the other action than the form names.
    let (status, _) = s
        .post(
            &s.url_for(&s.claims(Action::Resolve), KEY),
            &form,
            Some(&s.base),
        )
        .await;
    assert_eq!(status, 403);

    // A valid token for an incident that does not exist.
    let (status, body) = s.get(&s.url_for(&other, KEY)).await;
    assert_eq!(status, 404, "{body}");

    assert_eq!(s.recorder.calls(), vec![], "nothing was recorded");
}

#[tokio::test]
async fn cross_site_posts_are_refused() {
    let s = ActServer::start(Locale::PtBr).await;
    let url = s.url_for(&s.claims(Action::Ack), KEY);
    let form = [("incident", s.incident.as_str()), ("action", "ack")];
    for origin in ["https://evil.example", "null"] {
        let (status, body) = s.post(&url, &form, Some(origin)).await;
        assert_eq!(status, 403, "{origin}: {body}");
        assert!(body.contains("Nada foi alterado"), "{body}");
    }
    let r = s
        .http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("referer", "https://evil.example/page")
        .body(format!("incident={}&action=ack", s.incident))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 403, "a foreign Referer without Origin");
    assert_eq!(s.recorder.calls(), vec![]);

    let (status, _) = s.post(&url, &form, Some(&s.base)).await;
    assert_eq!(status, 200, "the watchdog's own origin is accepted");
    assert_eq!(s.recorder.calls().len(), 1);
}

#[test]
fn tokens_round_trip_and_each_refusal_has_its_error() {
    let now = at(0);
    let claims = Claims::new(
        "errors-20261118T110640Z",
        Action::Resolve,
        Level::L3,
        now,
        Duration::from_secs(600),
    );
    let t = token::sign(KEY, &claims);
    assert_eq!(token::verify(KEY, &t, now), Ok(claims.clone()));
    assert_eq!(
        token::verify(b"other key", &t, now),
        Err(TokenError::BadSignature)
    );
    let mut flipped = t.clone().into_bytes();
    flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        token::verify(KEY, &String::from_utf8(flipped).expect("ascii"), now),
        Err(TokenError::BadSignature),
        "a changed claim"
    );
    assert_eq!(
        token::verify(KEY, &t, now + Duration::from_secs(600)),
        Err(TokenError::Expired {
            expired_at: now + Duration::from_secs(600)
        })
    );
    for bad in ["", ".", "abc", "abc.def", "!!!.???", &t.replace('.', "")] {
        assert_eq!(
            token::verify(KEY, bad, now),
            Err(TokenError::Malformed),
            "{bad:?}"
        );
    }
    assert_eq!(
        authorize(KEY, &t, "latency-20261118T110640Z", Action::Resolve, now),
        Err(TokenError::WrongIncident),
        "the API's check: a token for another incident"
    );
    assert_eq!(
        authorize(KEY, &t, &claims.incident, Action::Ack, now),
        Err(TokenError::WrongAction)
    );
    assert!(authorize(KEY, &t, &claims.incident, Action::Resolve, now).is_ok());
}

/// The text part of the newest outbox email of `id` whose key contains `event`.
fn outbox_text(store: &harven_watchdog::store::Store, id: &str, event: &str) -> String {
    let entry = store
        .outbox_for(id)
        .expect("the outbox")
        .into_iter()
        .rev()
        .find(|e| e.key.contains(event))
        .unwrap_or_else(|| panic!("no {event} email of {id}"));
    let mail = ReceivedMail::parse(PathBuf::from("outbox.eml"), &entry.message);
    text_of(&mail)
}

/// The URL on the text part's line that starts with `label`.
fn link_on(text: &str, label: &str) -> String {
    text.lines()
        .find(|l| l.starts_with(label))
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{text}"))
        .to_owned()
}

/// A resolve link works once, and no link outlives a reopen, over the real pager and store: the
/// email's resolve link resolves; posted again it changes nothing (already resolved); the section
/// clears and fires again, the incident reopens, and the same link is refused with a page that says
/// the incident reopened after it was sent, the incident staying open with its timeline as it was;
/// the old ack link is refused the same way (an ack never lands silently on an episode its reader
/// was not told about); the reopened email's own links act.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolve_link_works_once_and_no_link_outlives_a_reopen() {
    use harven_watchdog::pipeline::pager::{Pager, PagerConfig, PagerHandle, PagerMetrics};
    use harven_watchdog::store::Store;

    crate::support::init();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let data = tempfile::tempdir().expect("tempdir");
    let env = vec![
        (
            "HARVEN_WATCHDOG__STORE__PATH".to_owned(),
            data.path().join("w.db").display().to_string(),
        ),
        ("HARVEN_WATCHDOG__RUNBOOK__LOCALE".into(), "en".into()),
        ("HARVEN_WATCHDOG__SERVER__PUBLIC_URL".into(), base.clone()),
    ];
    let config = Config::load_with_env(&[], env).expect("config");
    let store = Arc::new(Store::open(&config.store.path).expect("store"));
    let scene = outage(Locale::En, 0.124, min(3));
    let firing = scene.eval.clone();
    let mut clear = firing.clone();
    for s in &mut clear.sections {
        s.active = false;
        s.severity = None;
    }
    clear.symptoms.clear();

    let pager = Pager::open(
        Arc::clone(&store),
        PagerConfig::from_config(&config),
        Arc::clone(&scene.runbook),
        Arc::new(tokio::sync::Notify::new()),
        PagerMetrics::default(),
        Arc::new(ChartSource::new(&config, Arc::clone(&scene.runbook)).expect("charts")),
    )
    .expect("the pager");
    let keys = pager.link_keys();
    let pager = Arc::new(Mutex::new(pager));
    let (clock, hand) = Clock::manual(at(min(3)));
    // The pager's task, as the watch loop runs it: one owner, commands in turn.
    let (commands, mut inbox) = tokio::sync::mpsc::channel(4);
    let owner = Arc::clone(&pager);
    let task_clock = clock.clone();
    tokio::spawn(async move {
        while let Some(cmd) = inbox.recv().await {
            owner.lock().expect("lock").command(cmd, task_clock.now());
        }
    });
    let handle = PagerHandle {
        store: Arc::clone(&store),
        commands,
    };
    let auth = link_auth(&clock);
    let router = act::routes(
        actions_over(Arc::new(handle)),
        keys,
        clock,
        Url::parse(&base).expect("url"),
        Locale::En,
        auth,
    );
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("serve");
    });
    let step = |eval: &Evaluation, secs: u64| {
        pager
            .lock()
            .expect("lock")
            .on_evaluation(eval.clone(), None, at(secs))
            .expect("step");
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let post = |url: String, action: &'static str, incident: String| {
        let http = http.clone();
        async move {
            let r = http
                .post(&url)
                .form(&[
                    ("incident", incident.as_str()),
                    ("action", action),
                    ("by", "Ana"),
                ])
                .send()
                .await
                .expect("POST");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    };

    // Opened: the L1 email's links.
    step(&firing, min(3));
    let id = store
        .latest_per_section()
        .expect("read")
        .into_iter()
        .find(|i| i.section == "errors")
        .expect("the errors incident")
        .id;
    let text = outbox_text(&store, &id, "/L1/opened/");
    let (ack, resolve) = (
        link_on(&text, "Acknowledge as L1:"),
        link_on(&text, "Resolve:"),
    );

    // Resolved through the link, once.
    hand.set(at(min(4)));
    let (status, page) = post(resolve.clone(), "resolve", id.clone()).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Resolved by Ana"), "{page}");
    let resolved = store.incident(&id).expect("read").expect("incident");
    assert_eq!(resolved.state, IncidentState::Resolved);
    let (status, body) = post(resolve.clone(), "resolve", id.clone()).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("already resolved"), "{body}");
    assert_eq!(
        store
            .incident(&id)
            .expect("read")
            .expect("incident")
            .timeline,
        resolved.timeline,
        "a second post changed nothing"
    );

    // The section clears, then fires again within `reopen_within`: the same incident reopens.
    step(&clear, min(6));
    step(&firing, min(8));
    let reopened = store.incident(&id).expect("read").expect("incident");
    assert_eq!(
        (reopened.state, reopened.reopened),
        (IncidentState::Open, 1)
    );

    // The first email's links are void now, with a page that says why.
    hand.set(at(min(9)));
    let (status, body) = post(resolve.clone(), "resolve", id.clone()).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains(&format!(
            "incident {id} reopened (reopening #1) after the email with this link was sent"
        )) && body.contains("Nothing was changed"),
        "{body}"
    );
    let (status, body) = post(ack.clone(), "ack", id.clone()).await;
    assert_eq!(status, 409, "the old ack link: {body}");
    assert!(body.contains("reopened"), "{body}");
    let page = http.get(&resolve).send().await.expect("GET");
    assert_eq!(page.status(), 200);
    let page = page.text().await.expect("body");
    assert!(!page.contains("<form"), "{page}");
    assert!(page.contains("reopened (reopening #1)"), "{page}");
    let after = store.incident(&id).expect("read").expect("incident");
    assert_eq!(after.state, IncidentState::Open, "the incident stays open");
    assert!(after.acks.is_empty(), "and unacknowledged");
    assert_eq!(after.timeline, reopened.timeline, "nothing was recorded");

    // The reopened email carries links of the new episode, which act.
    let text = outbox_text(&store, &id, "/L1/reopened/");
    let (status, page) = post(link_on(&text, "Acknowledge as L1:"), "ack", id.clone()).await;
    assert_eq!(status, 200, "{page}");
    let (status, page) = post(link_on(&text, "Resolve:"), "resolve", id.clone()).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        store.incident(&id).expect("read").expect("incident").state,
        IncidentState::Resolved
    );
}

/// `harven-watchdog rotate-link-key` (the real binary, on a store): the new key signs; a link
/// signed with the old key still verifies until `link_ttl` after the rotation, when every link it
/// signed has expired, and not after; `--revoke` refuses the old key's links at once. A pager reads
/// the keys when it opens ([`load_link_keys`]), which is what a reload or restart does.
#[test]
fn rotating_the_link_key_keeps_old_links_until_they_expire_unless_revoked() {
    use harven_watchdog::pipeline::pager::load_link_keys;
    use harven_watchdog::store::Store;

    let data = tempfile::tempdir().expect("tempdir");
    let path = data.path().join("w.db");
    let env = vec![(
        "HARVEN_WATCHDOG__STORE__PATH".to_owned(),
        path.display().to_string(),
    )];
    let ttl = Config::load_with_env(&[], env)
        .expect("config")
        .escalation
        .link_ttl;
    let store = Store::open(&path).expect("store");
    let first = load_link_keys(&store).expect("keys");
    let now = Clock::system().now();
    let claims = Claims::new(
        "errors-20261118T110640Z",
        Action::Resolve,
        Level::L1,
        now,
        ttl,
    );
    let old_link = first.sign(&claims);
    let rotate = |revoke: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_harven-watchdog"));
        cmd.arg("rotate-link-key")
            .env("HARVEN_WATCHDOG__STORE__PATH", &path);
        if revoke {
            cmd.arg("--revoke");
        }
        let out = cmd.output().expect("run rotate-link-key");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };

    let said = rotate(false);
    assert!(
        said.contains("links signed with the previous key work until"),
        "{said}"
    );
    assert!(said.contains("reload"), "{said}");
    let second = load_link_keys(&store).expect("keys");
    assert_ne!(second.current(), first.current(), "a new key");
    assert_eq!(
        second.verify(&old_link, now),
        Ok(claims.clone()),
        "links already sent keep working"
    );
    let later = now + ttl + Duration::from_secs(60);
    assert_eq!(
        second.verify(&old_link, later),
        Err(TokenError::BadSignature),
        "not once every link the old key signed has expired"
    );
    let new_link = second.sign(&claims);
    assert_eq!(first.verify(&new_link, now), Err(TokenError::BadSignature));
    assert_eq!(second.verify(&new_link, now), Ok(claims.clone()));

    let said = rotate(true);
    assert!(said.contains("is refused"), "{said}");
    let third = load_link_keys(&store).expect("keys");
    for (what, link) in [
        ("the last key's", &new_link),
        ("the first key's", &old_link),
    ] {
        assert_eq!(
            third.verify(link, now),
            Err(TokenError::BadSignature),
            "{what} link after --revoke"
        );
    }
    assert_eq!(third.verify(&third.sign(&claims), now), Ok(claims));
}

/// A status page's own words (its description, read by the real probe from a fake statuspage.io
/// page) reach the email only as one quoted line: a description that tries to start a line of its
/// own with a fake "click here to acknowledge" shows, in the text part, on the line of the reading
/// it belongs to, between « and », and the email's real links stay the only lines that carry them;
/// in the HTML part it is escaped, and never a link. (The shipped runbook does not show the
/// description; this one adds it as a cause's context, as a team might.)
#[tokio::test]
async fn a_status_pages_words_stay_one_quoted_line_in_both_parts() {
    use harven_watchdog::config::StatusPageConfig;
    use harven_watchdog::probe::status::StatusPageProbe;

    use crate::support::saas::{FakeStatusPage, PageScenario};

    const EVIL: &str = "Partial outage\n\nClick https://evil.example/ack to acknowledge";
    let page = FakeStatusPage::start(PageScenario::Indicator {
        indicator: "major".into(),
        description: EVIL.into(),
    })
    .await;
    let timeout = Duration::from_secs(5);
    let mut probe = StatusPageProbe::new(
        StatusPageConfig {
            name: "supabase".into(),
            url: page.url(),
            interval: Duration::from_secs(60),
            timeout,
        },
        harven_watchdog::probe::http::shared_client([timeout]).expect("client"),
    );
    let read = harven_watchdog::probe::poll_once(&mut probe, &Clock::system()).await;
    assert!(read.result.is_ok(), "{read:?}");

    let text = include_str!("../../config/runbook.toml").replace(
        "id = \"errors.supabase_down\"\n",
        "id = \"errors.supabase_down\"\ncontext = [{ obs = \"status.description\", labels = { page = \"supabase\" }, name = \"supabase_says\" }]\n",
    );
    let runbook = Arc::new(Runbook::parse(&text, "runbook.toml").expect("the runbook"));
    let mut engine = Engine::new(Arc::clone(&runbook), Locale::En);
    let mut ev = Evidence::new();
    let mut eval = None;
    for secs in (0..=min(2)).step_by(60) {
        evidence_at(&mut ev, secs, true, 0.124);
        let mut report = read.clone();
        report.at = at(secs);
        ev.apply(report);
        eval = Some(engine.evaluate(&ev, at(secs)));
    }
    let scene = Scene {
        runbook,
        eval: eval.expect("evaluated"),
    };
    let inc = incident(PageEvent::Opened, Level::L1);
    let now = at(min(2));
    let pg = Page::new(&inc, Level::L1, PageEvent::Opened, 0, now);
    let links = ActionLinks::sign(
        &LinkKeys::new(KEY),
        &public_url(),
        &inc.id,
        0,
        Level::L1,
        now,
        Duration::from_secs(3600),
    );
    let (section, symptoms) = (scene.section().clone(), scene.symptoms());
    let to = recipients(Level::L1);
    let email = Renderer::new()
        .render(&EmailInput {
            incident: &inc,
            page: &pg,
            section: &section,
            symptoms: &symptoms,
            runbook: &scene.runbook,
            recipients: &to,
            from: &mailbox("watchdog@harven.ai"),
            public_url: &public_url(),
            locale: Locale::En,
            links: Some(&links),
            charts: &[],
            now,
        })
        .expect("render");
    let mail = parse(&email);

    let text = text_of(&mail);
    let quoted = "«Partial outage Click https://evil.example/ack to acknowledge»";
    let line = text
        .lines()
        .find(|l| l.contains("evil.example"))
        .unwrap_or_else(|| panic!("the description is shown:\n{text}"));
    assert_eq!(
        line.trim(),
        format!("Context: supabase_says = {quoted}"),
        "one line, quoted, on the line of the reading it belongs to:\n{text}"
    );
    assert_eq!(
        text.lines().filter(|l| l.contains("evil.example")).count(),
        1,
        "{text}"
    );
    assert!(
        !text.lines().any(|l| l.trim_start().starts_with("Click")),
        "no line of its own:\n{text}"
    );
    assert!(
        text.contains(
            "the supabase status page's indicator: «major» (needs one of major, critical)"
        ),
        "the indicator it read is quoted too, in its sentence:\n{text}"
    );
    assert!(
        text.lines()
            .filter(|l| l.contains("/act/"))
            .all(|l| l.starts_with("Acknowledge as L1: ") || l.starts_with("Resolve: ")),
        "the real links are the only link lines:\n{text}"
    );

    let html = html_of(&mail);
    assert!(
        unescape(&html).contains(quoted),
        "the HTML part shows it quoted too:\n{html}"
    );
    assert!(!html.contains("href=\"https://evil.example"), "{html}");
}

/// The links' failure budgets and log throttle, on `clock`; no API token (the links need none).
fn link_auth(clock: &Clock) -> Arc<Auth> {
    let shared = Arc::new(AuthShared::with(
        Arc::new(SessionList::in_memory()),
        clock.clone(),
        AuthMetrics::default(),
    ));
    let config = AuthConfig {
        api_token: None,
        secure_cookies: false,
        public_reads: true,
        trusted_proxies: Vec::new(),
    };
    Arc::new(Auth::new(config, KEY, shared))
}

// ------------------------------------------------------------------------------------------------
// The symptom charts (issue 15): inline PNG parts in multipart/related
// ------------------------------------------------------------------------------------------------

/// The error ratio of the scene over the half hour before `now`: 1% until the outage (at 0),
/// then climbing to 12.4%; charted against the rule's 5%, the opening marked.
pub(crate) fn outage_charts(now: Timestamp) -> Vec<SymptomChart> {
    let from = Timestamp::from_unix_millis(now.as_unix_millis() - 30 * 60 * 1000);
    let points = (0..=120)
        .map(|i| {
            let t = Timestamp::from_unix_millis(from.as_unix_millis() + i * 15_000);
            let v = if t < at(0) {
                0.01
            } else {
                (0.01 + t.saturating_since(at(0)).as_secs_f64() / 600.0).min(0.124)
            };
            (t, v)
        })
        .collect();
    vec![
        SymptomChart {
            rule: "errors.ratio_high".into(),
            chart: Chart::Seen {
                series: Series {
                    title: "Error rate above 5% (last 30 min)".into(),
                    unit: Unit::Ratio,
                    points,
                },
                threshold: 0.05,
                opened: Some(at(0)),
            },
            from,
            to: now,
        },
        SymptomChart {
            rule: "errors.ratio_severe".into(),
            chart: Chart::Blind {
                title: "Error rate at or above 15% in the last 30 s (last 30 min)".into(),
                reason: "Prometheus did not answer within 3 s, so there is no history to show."
                    .into(),
            },
            from,
            to: now,
        },
    ]
}

/// The MIME tree of `bytes` as `type[children]`, e.g. `multipart/alternative[text/plain, …]`.
fn mime_tree(bytes: &[u8]) -> String {
    use mail_parser::MimeHeaders;
    fn walk(m: &mail_parser::Message<'_>, id: usize) -> String {
        let part = &m.parts[id];
        let ct = part
            .content_type()
            .map(|c| match c.subtype() {
                Some(sub) => format!("{}/{sub}", c.ctype()),
                None => c.ctype().to_owned(),
            })
            .unwrap_or_else(|| "text/plain".to_owned());
        match &part.body {
            mail_parser::PartType::Multipart(children) => format!(
                "{ct}[{}]",
                children
                    .iter()
                    .map(|c| walk(m, *c as usize))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => ct,
        }
    }
    let m = mail_parser::MessageParser::default()
        .parse(bytes)
        .expect("a message");
    walk(&m, 0)
}

/// The `cid:` references of an HTML part, in order.
fn cids(html: &str) -> Vec<String> {
    html.match_indices("src=\"cid:")
        .map(|(i, m)| {
            let rest = &html[i + m.len()..];
            rest[..rest.find('"').expect("closing quote")].to_owned()
        })
        .collect()
}

#[test]
fn charts_travel_as_inline_pngs_beside_the_html_in_multipart_related() {
    use mail_parser::MimeHeaders;
    let (email, _) = render_event_with(Locale::En, Level::L1, PageEvent::Opened, outage_charts);
    let bytes = email.formatted();
    assert_eq!(
        mime_tree(&bytes),
        "multipart/alternative[text/plain, multipart/related[text/html, image/png, image/png]]"
    );
    let mail = parse(&email);
    let refs = cids(&html_of(&mail));
    assert_eq!(refs.len(), 2, "{}", email.html);
    let parsed = mail_parser::MessageParser::default()
        .parse(&bytes[..])
        .expect("parse");
    let pngs: Vec<&mail_parser::MessagePart<'_>> = parsed
        .parts
        .iter()
        .filter(|p| p.content_type().and_then(|c| c.subtype()) == Some("png"))
        .collect();
    assert_eq!(pngs.len(), 2);
    for (png, cid) in pngs.iter().zip(&refs) {
        // Named by the HTML, shown inline, with a file name.
        let id = png.content_id().expect("a Content-ID");
        assert_eq!(id.trim_matches(['<', '>']), cid.as_str());
        let disposition = png.content_disposition().expect("a disposition");
        assert_eq!(disposition.ctype(), "inline");
        let name = disposition.attribute("filename").expect("a file name");
        assert!(
            name.starts_with("chart-") && name.ends_with(".png"),
            "{name}"
        );
        // It decodes as a PNG of the email's size.
        let decoder = png::Decoder::new(std::io::Cursor::new(png.contents().to_vec()));
        let reader = decoder.read_info().expect("a PNG");
        assert_eq!((reader.info().width, reader.info().height), EMAIL_SIZE);
    }
    // Each <img> has its size and alt text.
    let html = html_of(&mail);
    assert!(
        html.contains(&format!(
            "width=\"{}\" height=\"{}\" alt=\"Chart: Error rate above 5% (last 30 min)\"",
            EMAIL_SIZE.0, EMAIL_SIZE.1
        )),
        "{html}"
    );
    // The text part says the chart's gist and the blind one's reason, and names no image.
    let text = text_of(&mail);
    assert!(
        text.contains("- Error rate above 5% (last 30 min): now 12.4%; lowest 1%, highest 12.4% (threshold 5%)."),
        "{text}"
    );
    assert!(
        text.contains("no chart. Prometheus did not answer within 3 s"),
        "{text}"
    );
    assert!(!text.contains("cid:"), "{text}");
}

#[test]
fn content_ids_are_deterministic_and_unique_per_email() {
    use mail_parser::MimeHeaders;
    let render = |level, event| {
        render_event_with(Locale::PtBr, level, event, outage_charts)
            .0
            .html
    };
    let first = cids(&render(Level::L1, PageEvent::Opened));
    assert_eq!(first, cids(&render(Level::L1, PageEvent::Opened)));
    assert_eq!(first.len(), 2);
    assert_ne!(first[0], first[1]);
    let other = cids(&render(Level::L2, PageEvent::Escalated));
    assert!(
        first.iter().all(|c| !other.contains(c)),
        "{first:?} {other:?}"
    );
    assert!(first[0].ends_with("@harven-watchdog"), "{first:?}");
    // The same page renders the same bytes apart from the MIME boundaries.
    let (a, _) = render_event_with(Locale::PtBr, Level::L1, PageEvent::Opened, outage_charts);
    let (b, _) = render_event_with(Locale::PtBr, Level::L1, PageEvent::Opened, outage_charts);
    let pngs = |e: &RenderedEmail| -> Vec<Vec<u8>> {
        let bytes = e.formatted();
        let m = mail_parser::MessageParser::default()
            .parse(&bytes[..])
            .expect("parse");
        m.parts
            .iter()
            .filter(|p| p.content_type().and_then(|c| c.subtype()) == Some("png"))
            .map(|p| p.contents().to_vec())
            .collect()
    };
    assert_eq!(pngs(&a), pngs(&b));
}

#[test]
fn an_email_without_charts_keeps_its_two_parts() {
    let (email, _) = render_event(Locale::En, Level::L1, PageEvent::Opened);
    assert_eq!(
        mime_tree(&email.formatted()),
        "multipart/alternative[text/plain, text/html]"
    );
    assert!(!email.html.contains("cid:"));
    // The cost of the charts, printed for the record (`--nocapture`).
    let (charted, _) = render_event_with(Locale::En, Level::L1, PageEvent::Opened, outage_charts);
    println!(
        "the L1 email: {} bytes without charts, {} with a series chart and a blind one",
        email.formatted().len(),
        charted.formatted().len()
    );
}

#[test]
fn the_digest_reads_the_text_part_and_skips_the_images() {
    let (email, _) = render_event_with(Locale::En, Level::L1, PageEvent::Opened, outage_charts);
    let summary = harven_watchdog::email::digest::summarize(&email.formatted(), 200);
    assert!(!summary.first_lines.is_empty());
    let all = summary.first_lines.join("\n");
    assert!(
        all.contains("now 12.4%"),
        "the text part's chart words: {all}"
    );
    for line in &summary.first_lines {
        assert!(!line.contains("PNG") && !line.contains("iVBOR"), "{line}");
        for html in ["<img", "<html", "<p", "cid:"] {
            assert!(!line.contains(html), "no HTML: {line}");
        }
    }
}
