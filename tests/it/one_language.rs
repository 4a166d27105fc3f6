//! One language per email and page: everything a person reads is in the configured language, in
//! pt-BR and in English, and a string of the other language fails the test.
//!
//! What is read:
//! - every email: the five events of the Supabase outage that `email` renders with the real engine
//!   (opened, escalated, reminder, reopened, resolved with its postmortem draft), the budget digest
//!   of them, the plain fallback, and the L1 email a running daemon sends when it is blind;
//! - every page of that daemon: `/`, the incident's page (diagnosis in words, timeline), `/maintenance`,
//!   `/signin`, a 404 and a refused form, and the `/act/{token}` confirmation and result pages of the
//!   email's link;
//! - every string the code words for a reader: each [`MsgId`] (probe notes, reasons for no data,
//!   timeline entries), each catalogue observation's phrase in an evidence sentence and a symptom,
//!   and each timeline kind.
//!
//! **Why a word list, not a marker scheme.** A marker scheme (a test-only pseudo-locale whose every
//! string carries a tag) is stronger in principle, but here it would need a third [`Locale`] in the
//! library, compiled into the binary the integration tests link (they do not see `cfg(test)`), and
//! every `match` over locales would grow an arm for a language no one reads. The word list is
//! derived, not typed: the other language is every word of its [`Text`], its observation phrases and
//! the runbook's texts in it, minus the words this language uses too (`backend`, `deploy`, `Redis`),
//! plus a short hand list of function words (`the`, `of`, `has`; `de`, `não`, `para`) that catches
//! English the code wrote without the tables (the test was seen failing on `"errors incident opened
//! (major)"` injected into a pt-BR timeline). What is not words is taken out before the check, each
//! for a stated reason: a peer's words quoted «…» and values in `"…"` (exempt by design), `<code>`
//! and `<pre>` in HTML and `` `…` `` spans in text (observation names, conditions, IDs), command
//! lines (`$ …`), URLs, tokens with `_`, `.`, `/`, `-` or digits (identifiers, paths, sizes), the
//! subject's `[Harven][L1][major]` tags, which mail filters read, and the runbook's own texts in the
//! reader's language as the team wrote them (its pt-BR titles say `Memory leak`, `Supabase down`:
//! the team's words, quoted as written, like its commands). The IDs of the design are words of
//! no language: the section IDs (`errors`, `latency`: §2) and the severities (`major`,
//! `critical`: §3).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use harven_watchdog::email::{self, RenderedEmail};
use harven_watchdog::engine::Found;
use harven_watchdog::incident::Page;
use harven_watchdog::locale::{Msg, MsgId, Text};
use harven_watchdog::observe::{CATALOGUE, Failure, Labels, Value, source_unreachable};
use harven_watchdog::runbook::{Condition, Locale, Runbook};
use harven_watchdog::store::{EmailStatus, OutboxEntry};
use harven_watchdog::words;
use lettre::message::Mailbox;

use crate::email::EVENTS;
use crate::support::daemon::{T0, TestDaemon, blind_env};
use crate::support::smtp::{ReceivedMail, SmtpServer, advance_until};

/// Words of a language too common to be caught by the derived list alone (they may appear in no
/// table), or that the code is most likely to write by hand; none is a word of the other language
/// too (`for` is Portuguese as well, `do` English).
const ENGLISH: &[&str] = &[
    "the",
    "of",
    "and",
    "is",
    "are",
    "has",
    "have",
    "been",
    "not",
    "with",
    "from",
    "this",
    "that",
    "yet",
    "only",
    "every",
    "which",
    "when",
    "within",
    "since",
    "there",
    "cannot",
    "could",
    "its",
    "it",
    "was",
    "were",
    "will",
    "opened",
    "paged",
    "acknowledged",
    "resolved",
    "incident",
    "requests",
    "samples",
    "needs",
    "window",
    "memory",
    "limit",
    "minute",
    "seen",
    "none",
];
const PORTUGUESE: &[&str] = &[
    "de",
    "da",
    "das",
    "dos",
    "não",
    "para",
    "com",
    "uma",
    "um",
    "em",
    "na",
    "que",
    "está",
    "foi",
    "sem",
    "mais",
    "ainda",
    "por",
    "incidente",
    "linhas",
    "memória",
    "limite",
    "janela",
    "requisições",
    "aberto",
    "resolvido",
    "reconhecido",
];
/// IDs of the design read in both languages: the severities (§3) and the section IDs (§2).
const IDS: &[&str] = &[
    "major", "critical", "latency", "errors", "auth", "database", "watchdog",
];

/// Lowercase words of at least three letters (two for the hand lists' short words), split on
/// anything that is not a letter.
fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Every word `locale` uses: its `Text`, its observation phrases, and the runbook's texts in it.
fn vocabulary(locale: Locale) -> BTreeSet<String> {
    let t: &Text = locale.text();
    let mut words: BTreeSet<String> = BTreeSet::new();
    let json = serde_json::to_value(t).expect("serializes");
    for v in json.as_object().expect("an object").values() {
        words.extend(tokens(v.as_str().unwrap_or_default()));
    }
    for (_, phrase) in t.observations {
        words.extend(tokens(phrase));
    }
    let runbook = Runbook::embedded();
    for s in &runbook.sections {
        words.extend(tokens(s.title.get(locale)));
        for r in &s.rules {
            words.extend(tokens(r.summary.get(locale)));
        }
        for c in &s.causes {
            words.extend(tokens(c.title.get(locale)));
            for a in &c.actions {
                words.extend(tokens(a.get(locale)));
            }
        }
        for l in &s.links {
            words.extend(tokens(l.title.get(locale)));
        }
    }
    for c in &runbook.checklist {
        words.extend(tokens(c.get(locale)));
    }
    words
}

/// What the runbook says in `locale` as the team wrote it (titles, summaries, actions, links,
/// the checklist, the vendors), longest first: shown as written, so taken out before the check.
fn runbook_texts(locale: Locale) -> Vec<String> {
    let runbook = Runbook::embedded();
    let mut texts: Vec<String> = Vec::new();
    for s in &runbook.sections {
        texts.push(s.title.get(locale).to_owned());
        texts.extend(s.rules.iter().map(|r| r.summary.get(locale).to_owned()));
        for c in &s.causes {
            texts.push(c.title.get(locale).to_owned());
            texts.extend(c.actions.iter().map(|a| a.get(locale).to_owned()));
        }
        texts.extend(s.links.iter().map(|l| l.title.get(locale).to_owned()));
    }
    texts.extend(runbook.checklist.iter().map(|c| c.get(locale).to_owned()));
    for v in runbook.vendors.values() {
        texts.push(format!("{}: {} (SLA {})", v.name, v.support, v.sla));
        texts.push(v.name.clone());
    }
    let mut texts: Vec<String> = texts
        .iter()
        .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|t| !t.is_empty())
        .collect();
    texts.sort_by_key(|t| std::cmp::Reverse(t.len()));
    texts
}

/// The words that must not appear in `locale`'s texts.
pub(crate) struct Foreign {
    locale: Locale,
    words: BTreeSet<String>,
    /// The runbook's texts in `locale`, taken out before the check.
    runbook: Vec<String>,
}

impl Foreign {
    pub(crate) fn of(locale: Locale) -> Self {
        let other = match locale {
            Locale::PtBr => Locale::En,
            Locale::En => Locale::PtBr,
        };
        let own = vocabulary(locale);
        let mut words: BTreeSet<String> = vocabulary(other)
            .difference(&own)
            .filter(|w| w.chars().count() >= 3)
            .cloned()
            .collect();
        let hand = match locale {
            Locale::PtBr => ENGLISH,
            Locale::En => PORTUGUESE,
        };
        words.extend(hand.iter().map(|w| (*w).to_owned()));
        for id in IDS {
            words.remove(*id);
        }
        Self {
            locale,
            words,
            runbook: runbook_texts(locale),
        }
    }

    /// The other language's words in `visible` (text as a reader sees it, exemptions taken out).
    fn find(&self, visible: &str) -> Vec<String> {
        let mut found = Vec::new();
        // Line by line: a runbook text is shown on one line, and a command line is one.
        let text: Vec<String> = visible
            .lines()
            .map(|line| {
                let mut line = line.split_whitespace().collect::<Vec<_>>().join(" ");
                for t in &self.runbook {
                    line = line.replace(t.as_str(), " ");
                }
                line
            })
            .collect();
        for chunk in words_only(&text.join("\n")).split_whitespace() {
            // Identifiers, paths, sizes and times: not words.
            if chunk.chars().any(|c| "_./-0123456789@=".contains(c)) {
                continue;
            }
            for w in tokens(chunk) {
                if self.words.contains(&w) && !found.contains(&w) {
                    found.push(w);
                }
            }
        }
        found
    }

    /// Fails with every foreign word of `visible`, with its context, naming `what`.
    pub(crate) fn check(&self, what: &str, visible: &str) {
        let found = self.find(visible);
        assert!(
            found.is_empty(),
            "{:?} {what}: words of the other language {found:?} in:\n{}",
            self.locale,
            context(visible, &found)
        );
    }
}

/// The lines of `text` holding one of `words`.
fn context(text: &str, words: &[String]) -> String {
    text.lines()
        .filter(|l| tokens(l).iter().any(|t| words.contains(t)))
        .take(12)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `text` without what is exempt by design: peer quotes «…», values in `"…"`, code in `` `…` ``,
/// command lines and URLs.
fn words_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("$ ") {
            continue;
        }
        out.push_str(&strip_spans(line));
        out.push('\n');
    }
    out.split_whitespace()
        .filter(|w| !w.contains("://"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `line` without the spans between `«` and `»`, `"` and `"`, `` ` `` and `` ` ``.
fn strip_spans(line: &str) -> String {
    let mut out = String::new();
    let mut close: Option<char> = None;
    let mut depth = 0;
    for c in line.chars() {
        match close {
            Some('»') if c == '«' => depth += 1,
            Some(end) if c == end => {
                if depth == 0 {
                    close = None;
                    out.push(' ');
                } else {
                    depth -= 1;
                }
            }
            Some(_) => {}
            None => match c {
                '«' => close = Some('»'),
                '"' => close = Some('"'),
                '`' => close = Some('`'),
                c => out.push(c),
            },
        }
    }
    out
}

/// The text a reader sees of an HTML document: without `<style>`, `<code>` and `<pre>`, tags out,
/// entities decoded.
pub(crate) fn visible_html(html: &str) -> String {
    let mut s = html.to_owned();
    for (open, close) in [
        ("<style", "</style>"),
        ("<code", "</code>"),
        ("<pre", "</pre>"),
    ] {
        while let Some(i) = s.find(open) {
            let Some(j) = s[i..].find(close) else { break };
            s.replace_range(i..i + j + close.len(), " ");
        }
    }
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&#x2f;", "/")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
}

/// A subject without its leading `[…]` tags.
fn subject_words(subject: &str) -> &str {
    let mut s = subject;
    while let Some(rest) = s.strip_prefix('[') {
        s = rest.split_once(']').map_or("", |(_, r)| r);
    }
    s
}

/// Checks one email (subject, text part, HTML part) read back from its bytes.
fn check_mail(foreign: &Foreign, what: &str, mail: &ReceivedMail) {
    let subject = mail.subject().unwrap_or_default();
    foreign.check(&format!("{what}: subject"), subject_words(&subject));
    if let Some(text) = mail.text() {
        foreign.check(&format!("{what}: text part"), &text);
    }
    if let Some(html) = mail.html() {
        foreign.check(&format!("{what}: HTML part"), &visible_html(&html));
    }
}

fn parse(bytes: &[u8]) -> ReceivedMail {
    ReceivedMail::parse(PathBuf::from("rendered.eml"), bytes)
}

#[test]
fn every_email_speaks_one_language() {
    for locale in Locale::ALL {
        let foreign = Foreign::of(locale);
        let mut held = Vec::new();
        let mut last = None;
        for (level, event) in EVENTS {
            let (rendered, inc): (RenderedEmail, _) =
                crate::email::render_event(locale, level, event);
            check_mail(
                &foreign,
                &format!("{level} {event}"),
                &parse(&rendered.formatted()),
            );
            held.push(OutboxEntry {
                key: format!("{}/{level}/{event}/0", inc.id),
                incident: inc.id.clone(),
                level: level.to_string(),
                event: event.to_string(),
                recipients: vec!["devops@harven.ai".to_owned()],
                message: rendered.formatted(),
                created_at: inc.opened_at,
                status: EmailStatus::Held,
                attempts: 0,
                next_attempt_at: None,
                last_error: None,
                sent_at: None,
                failed_at: None,
                digest: None,
                epoch: 0,
            });
            last = Some(inc);
        }
        let from: Mailbox = "watchdog@harven.ai".parse().expect("mailbox");
        let inc = last.expect("rendered");
        let digest = email::digest::build("x/digest/1", &held, &from, inc.opened_at, locale)
            .expect("digest");
        check_mail(&foreign, "digest", &parse(&digest.message));
        for (level, event) in EVENTS {
            let page = Page::new(&inc, level, event, 0, inc.opened_at);
            let to = [from.clone()];
            let bytes = email::fallback(&inc, &page, &to, &from, inc.opened_at, locale);
            check_mail(&foreign, &format!("fallback {event}"), &parse(&bytes));
        }
    }
}

/// Message `id` with a value of neither language for each of its placeholders.
fn sample(id: MsgId) -> Msg {
    let template = Locale::En.text().msg(id);
    template
        .split('{')
        .skip(1)
        .filter_map(|s| s.split_once('}').map(|(name, _)| name))
        .fold(Msg::new(id), |m, name| m.arg(name, "x9"))
}

#[test]
fn every_message_phrase_and_timeline_kind_speaks_one_language() {
    for locale in Locale::ALL {
        let foreign = Foreign::of(locale);
        for id in MsgId::ALL {
            if *id == MsgId::Untranslated {
                continue; // `{text}`: English from code, shown as written (see `Msg::english`).
            }
            let words = sample(*id).words(locale);
            foreign.check(&format!("message {id:?}"), &words);
        }
        for kind in [
            "opened",
            "reopened",
            "severity",
            "symptom",
            "cause",
            "paged",
            "acknowledged",
            "resolved",
            "note",
            "muted",
        ] {
            foreign.check(kind, &words::timeline_kind(locale, kind));
        }
        // Each observation of the catalogue, as an evidence line and a symptom would say it, with
        // every label it may carry (a role, then a container) and a value of its kind.
        for spec in CATALOGUE {
            for subject in ["role", "container"] {
                let mut labels = Labels::new();
                for l in spec.labels {
                    if ["role", "container"].contains(l) && *l != subject {
                        continue;
                    }
                    labels.insert((*l).to_owned(), "x9".to_owned());
                }
                let (op, value, reading) = match spec.kind {
                    harven_watchdog::observe::Kind::Number => {
                        (">", "1".to_owned(), Value::Number(2.0))
                    }
                    harven_watchdog::observe::Kind::Bool => {
                        ("==", "true".to_owned(), Value::Bool(false))
                    }
                    harven_watchdog::observe::Kind::Text => {
                        ("==", "\"x9\"".to_owned(), Value::Text("x9".into()))
                    }
                };
                let c: Condition = toml::from_str(&format!(
                    "obs = \"{}\"\nop = \"{op}\"\nvalue = {value}",
                    spec.name
                ))
                .expect("a condition");
                let found = Found {
                    labels: labels.clone(),
                    value: Some(reading.clone()),
                    why: None,
                    no_data: false,
                    note: Some(Msg::new(MsgId::NoRequestsInWindow)),
                };
                let blind = Found {
                    value: None,
                    why: Some(Msg::new(MsgId::NoMemoryLimit)),
                    no_data: true,
                    ..found.clone()
                };
                for s in words::evidence(locale, &c, &[found, blind], 3) {
                    foreign.check(spec.name, &s);
                }
                let s = words::symptom(locale, &c, &labels, Some(&reading), None);
                foreign.check(spec.name, &s);
            }
        }
    }
}

#[test]
fn the_check_catches_a_string_of_the_other_language() {
    let pt = Foreign::of(Locale::PtBr);
    for english in [
        "errors incident opened (major)",
        "needs samples over a tenth of the 30m window",
        "no memory limit",
        "no 5xx series yet: 0",
    ] {
        assert!(!pt.find(english).is_empty(), "{english:?} passes as pt-BR");
    }
    assert!(pt.find("incidente errors aberto (major)").is_empty());
    assert!(
        pt.find("«connection refused» \"error\" `docker.restarts`")
            .is_empty()
    );
    let en = Foreign::of(Locale::En);
    assert!(
        !en.find("linhas com erro por minuto no log do backend")
            .is_empty()
    );
    assert!(
        en.find("\"error\" lines per minute in the backend's log")
            .is_empty()
    );
}

/// Pages of a running daemon, and the email it sends, in each language: the daemon is blind (its
/// Prometheus and every other source are out of reach), which is an incident of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_daemons_pages_and_email_speak_one_language() {
    for (locale, tag) in [(Locale::PtBr, "pt-BR"), (Locale::En, "en")] {
        let foreign = Foreign::of(locale);
        let smtp = SmtpServer::start().await;
        let data = tempfile::tempdir().expect("tempdir");
        let mut env = blind_env(smtp.port(), data.path(), tag);
        env.push((
            "HARVEN_WATCHDOG__SERVER__API_TOKEN".into(),
            ONE_LANGUAGE_TOKEN.into(),
        ));
        let d = TestDaemon::start(env, T0).await;
        let mail = advance_until(
            &d.hand,
            Duration::from_secs(30),
            &smtp,
            "the blind watchdog's L1 email",
            |m| {
                m.iter()
                    .any(|m| m.header("X-Harven-Section") == Some("watchdog"))
            },
        )
        .await;
        let email = mail
            .iter()
            .find(|m| m.header("X-Harven-Section") == Some("watchdog"))
            .expect("the email");
        check_mail(&foreign, "the daemon's L1 email", email);
        let id = email.header("X-Harven-Incident").expect("id").to_owned();
        let text = email.text().expect("text part");
        let ack = text
            .lines()
            .find_map(|l| l.split_whitespace().find(|w| w.contains("/act/")))
            .expect("an ack link")
            .to_owned();

        let http = crate::support::http_client();
        let get = |path: String| {
            let http = http.clone();
            async move {
                let r = http.get(&path).send().await.expect("GET");
                r.text().await.expect("body")
            }
        };
        for path in [
            "/".to_owned(),
            format!("/incidents/{id}"),
            "/maintenance".to_owned(),
            "/signin".to_owned(),
            "/incidents/no-such-incident".to_owned(),
        ] {
            let body = get(format!("{}{path}", d.base)).await;
            foreign.check(&format!("GET {path}"), &visible_html(&body));
        }
        // A form posted from our origin, as a browser would: `by=Ana`.
        let post = |url: String| {
            let (http, origin) = (http.clone(), d.base.clone());
            async move {
                let r = http
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("origin", origin)
                    .body("by=Ana")
                    .send()
                    .await
                    .expect("POST");
                r.text().await.expect("body")
            }
        };
        // A form without a session: the refusal page.
        let refused = post(format!("{}/incidents/{id}/ack", d.base)).await;
        foreign.check("a refused form", &visible_html(&refused));
        // The email's link: its confirmation page, then its result.
        let confirm = get(ack.clone()).await;
        foreign.check("the act page", &visible_html(&confirm));
        let done = post(ack).await;
        foreign.check("the act result", &visible_html(&done));
        // The incident's page again, its timeline now holding the acknowledgement.
        let page = get(format!("{}/incidents/{id}", d.base)).await;
        foreign.check("the incident page after the ack", &visible_html(&page));
        bad_windows_speak_one_language(&d.base, locale, &foreign).await;
    }
}

/// The API token of [`a_running_daemons_pages_and_email_speak_one_language`]'s daemon.
const ONE_LANGUAGE_TOKEN: &str = "one-language-token-3f9a1c7e5b2d4f6a8c0e";

/// A bad window's fields, the words its pt-BR refusal holds, and the API's field and code.
type BadWindow = (
    &'static [(&'static str, &'static str)],
    &'static str,
    &'static str,
    &'static str,
);

/// Bad maintenance-window forms, posted signed in to the pages at `base`: each refusal page says
/// what is wrong in the page's language (in pt-BR, with the words of its own table), and the API
/// answers the same request with its English `error`, the field and a stable `code`.
async fn bad_windows_speak_one_language(base: &str, locale: Locale, foreign: &Foreign) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a client");
    let form = |path: &str, cookie: Option<&str>, fields: &[(&str, &str)]| {
        let mut req = http
            .post(format!("{base}{path}"))
            .header("origin", base)
            .form(fields);
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        req.send()
    };
    let signed = form("/signin", None, &[("token", ONE_LANGUAGE_TOKEN)])
        .await
        .expect("sign in");
    assert_eq!(signed.status(), 303, "signed in");
    let cookie = signed
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let page = http
        .get(format!("{base}/maintenance"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("GET /maintenance")
        .text()
        .await
        .expect("body");
    foreign.check("/maintenance signed in", &visible_html(&page));
    let (_, rest) = page
        .split_once("name=\"csrf\" value=\"")
        .expect("the window form's csrf field");
    let csrf = rest.split('"').next().expect("its value").to_owned();
    // Each form, with the words the pt-BR refusal must hold and the API's field and code.
    let cases: [BadWindow; 6] = [
        (
            &[
                ("starts", "2027-03-01T02:00:00Z"),
                ("ends", "2027-03-01T01:00:00Z"),
            ],
            "deve ser depois de",
            "ends",
            "window_ends_before_starts",
        ),
        (
            &[("duration", "soon")],
            "não é uma duração",
            "duration",
            "window_not_a_duration",
        ),
        (
            &[("duration", "31d")],
            "o máximo que uma janela",
            "duration",
            "window_duration_too_long",
        ),
        (
            &[("starts", "amanhã"), ("duration", "1h")],
            "não é um horário UTC",
            "starts",
            "window_not_a_time",
        ),
        (&[], "é obrigatório", "ends", "window_no_end"),
        (
            &[("duration", "1h"), ("by", "")],
            "quem está agindo",
            "by",
            "input_required",
        ),
    ];
    for (fields, pt_words, field, code) in cases {
        let mut all: Vec<(&str, &str)> = vec![
            ("csrf", &csrf),
            ("sections", "errors"),
            ("reason", "deploy"),
        ];
        if !fields.iter().any(|(k, _)| *k == "by") {
            all.push(("by", "Ana"));
        }
        all.extend_from_slice(fields);
        let answer = form("/maintenance", Some(&cookie), &all)
            .await
            .expect("POST");
        assert_eq!(answer.status(), 400, "{fields:?}");
        let body = answer.text().await.expect("body");
        let visible = visible_html(&body);
        foreign.check(&format!("the refused window {fields:?}"), &visible);
        if locale == Locale::PtBr {
            assert!(visible.contains(pt_words), "{fields:?}: {visible}");
        }
        // The API: the same problem, its English message, the field and the code.
        let mut json = serde_json::json!({"sections": ["errors"], "reason": "deploy", "by": "Ana"});
        for (k, v) in fields.iter() {
            json[*k] = (*v).into();
        }
        let api = http
            .post(format!("{base}/api/maintenance"))
            .bearer_auth(ONE_LANGUAGE_TOKEN)
            .json(&json)
            .send()
            .await
            .expect("POST /api/maintenance");
        assert_eq!(api.status(), 400, "{json}");
        let api: serde_json::Value = api.json().await.expect("JSON");
        assert_eq!(
            (&api["field"], &api["code"]),
            (&field.into(), &code.into()),
            "{api}"
        );
        assert!(
            Foreign::of(Locale::En)
                .find(api["error"].as_str().unwrap_or_default())
                .is_empty(),
            "{api}"
        );
    }
}

/// An HTTP server on `listener` (TCP or a Unix socket) answering every request with `status`,
/// `content_type` and `body`, then closing: a peer that answers, but not what its API would.
async fn fixed_http<L, S>(
    listener: L,
    status: &'static str,
    content_type: &'static str,
    body: &'static str,
) where
    L: Accept<S> + Send + 'static,
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tokio::spawn(async move {
        while let Some(mut stream) = listener.next().await {
            let response = response.clone();
            tokio::spawn(async move {
                let (mut seen, mut buf) = (Vec::new(), [0u8; 4096]);
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
}

/// A listener [`fixed_http`] accepts from.
trait Accept<S> {
    fn next(&self) -> impl std::future::Future<Output = Option<S>> + Send;
}

impl Accept<tokio::net::TcpStream> for tokio::net::TcpListener {
    async fn next(&self) -> Option<tokio::net::TcpStream> {
        self.accept().await.ok().map(|(s, _)| s)
    }
}

impl Accept<tokio::net::UnixStream> for tokio::net::UnixListener {
    async fn next(&self) -> Option<tokio::net::UnixStream> {
        self.accept().await.ok().map(|(s, _)| s)
    }
}

/// One poll of `probe`, which must fail as a whole.
async fn failed<P: harven_watchdog::probe::Probe>(probe: &mut P) -> Failure {
    let clock = harven_watchdog::clock::Clock::system();
    let report = tokio::time::timeout(
        Duration::from_secs(30),
        harven_watchdog::probe::poll_once(probe, &clock),
    )
    .await
    .expect("the poll ends");
    report
        .result
        .expect_err("the peer answers wrongly, so the poll fails")
}

/// Each probe failing against a peer that answers wrongly (a Redis reply over the limit or no
/// protocol at all, a status page of HTML, bad JSON or an unknown word, a Prometheus and a Docker
/// Engine answering something else, a Supabase that is not there; OpenAI, Sentry and Coolify
/// answering HTML, refusing the credentials, not knowing the project or not there), with the words of ours that a
/// pt-BR reader must see around the peer's: the failure as an evidence line and as a blind source
/// shows, in each language, no word of the other; our words are never quoted as the peer's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_probe_failure_speaks_one_language() {
    use harven_watchdog::config::{Config, RedisConfig, StatusPageConfig};
    use harven_watchdog::probe::redis::{RedisProbe, ReplyLimits};
    use harven_watchdog::probe::status::StatusPageProbe;

    use crate::support::fault::{Endpoint, Fault, FaultProxy};
    use crate::support::redis::RedisServer;
    use crate::support::saas::{FakeStatusPage, PageScenario};

    crate::support::init();
    let mut failures: Vec<(String, &str, Failure, Vec<&str>)> = Vec::new();

    // Redis: an INFO over the probe's limit, then a port that answers no protocol at all.
    let redis = RedisServer::start().await;
    let redis_config = |url: String| RedisConfig {
        url: url.parse().expect("a redis URL"),
        password: None,
        interval: Duration::from_secs(15),
        timeout: Duration::from_secs(1),
        key_patterns: vec!["ai:*".to_owned()],
        scan_count: 1000,
        scan_cap: 100_000,
        evidence_window: Duration::from_secs(300),
    };
    let mut small = RedisProbe::new(redis_config(redis.url()))
        .expect("probe")
        .with_limits(ReplyLimits {
            info_bytes: 512,
            ..ReplyLimits::default()
        });
    let f = failed(&mut small).await;
    failures.push((
        "redis INFO over the limit".into(),
        "redis",
        f,
        vec!["INFO respondeu"],
    ));
    let proxy = FaultProxy::tcp(Endpoint::Tcp(([127, 0, 0, 1], redis.port()).into())).await;
    proxy.set(Fault::Garbage);
    let mut garbled = RedisProbe::new(redis_config(format!("redis://127.0.0.1:{}", proxy.port())))
        .expect("probe");
    let f = failed(&mut garbled).await;
    failures.push((
        "redis garbage".into(),
        "redis",
        f,
        vec!["falhou", "PING respondeu"],
    ));

    // A status page: HTML, not JSON, an unknown word, an error status.
    let page = FakeStatusPage::start(PageScenario::Html200).await;
    let client =
        harven_watchdog::probe::http::shared_client([Duration::from_secs(1)]).expect("a client");
    let mut status = StatusPageProbe::new(
        StatusPageConfig {
            name: "openai".into(),
            url: page.url(),
            interval: Duration::from_secs(60),
            timeout: Duration::from_secs(1),
        },
        client,
    );
    for (scenario, glue) in [
        (
            PageScenario::Html200,
            "uma página HTML, não o JSON de status",
        ),
        (
            PageScenario::Malformed,
            "não é o JSON de status do statuspage.io",
        ),
        (
            PageScenario::Indicator {
                indicator: "on fire".into(),
                description: "x".into(),
            },
            "indicador de status desconhecido",
        ),
        (PageScenario::Html502, "HTTP 502"),
    ] {
        page.set(scenario.clone());
        let f = failed(&mut status).await;
        failures.push((
            format!("status page {scenario:?}"),
            "status:openai",
            f,
            vec![glue],
        ));
    }

    // Prometheus answering an HTML page: the instant probe and the range query of the charts.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let prom_url = format!("http://{}", listener.local_addr().expect("addr"));
    fixed_http(
        listener,
        "200 OK",
        "text/html",
        "<html><body>Sign in</body></html>",
    )
    .await;
    let config = Config::load_with_env(
        &[],
        vec![("HARVEN_WATCHDOG__PROMETHEUS__URL".into(), prom_url)],
    )
    .expect("config");
    let mut prometheus =
        harven_watchdog::probe::prometheus::PrometheusProbe::new(config.prometheus.clone())
            .expect("probe");
    let f = failed(&mut prometheus).await;
    failures.push((
        "prometheus HTML".into(),
        "prometheus",
        f,
        vec![
            "sem o JSON da API do Prometheus",
            "não é uma resposta do Prometheus",
        ],
    ));
    let range =
        harven_watchdog::probe::prometheus::RangeQuery::new(&config.prometheus).expect("range");
    let now = harven_watchdog::clock::Clock::system().now();
    let answer = range
        .points(
            "up",
            now - Duration::from_secs(600),
            now,
            Duration::from_secs(15),
        )
        .await;
    let Err(harven_watchdog::probe::prometheus::RangeFailure::BadAnswer(f)) = answer else {
        panic!("an HTML page is a bad answer: {answer:?}")
    };
    failures.push((
        "prometheus range HTML".into(),
        "prometheus",
        f,
        vec![
            "sem o JSON da API do Prometheus",
            "não é uma resposta do Prometheus",
        ],
    ));

    // A Docker Engine whose answers are not its JSON.
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("docker.sock");
    let listener = tokio::net::UnixListener::bind(&socket).expect("bind the socket");
    fixed_http(listener, "200 OK", "application/json", "[{\"Id\": ").await;
    let mut env: Vec<(String, String)> = ["BACKEND", "REDIS"]
        .map(|r| {
            (
                format!("HARVEN_WATCHDOG__DOCKER__ROLES__{r}__COMPOSE_SERVICE"),
                String::new(),
            )
        })
        .to_vec();
    env.push((
        "HARVEN_WATCHDOG__DOCKER__HOST".into(),
        format!("unix://{}", socket.display()),
    ));
    env.push((
        "HARVEN_WATCHDOG__DOCKER__CONTAINERS".into(),
        "harven-backend".into(),
    ));
    let config = Config::load_with_env(&[], env).expect("config");
    let mut docker = harven_watchdog::probe::docker::DockerProbe::new(config.docker);
    let f = failed(&mut docker).await;
    failures.push((
        "docker bad JSON".into(),
        "docker",
        f,
        vec!["não é uma resposta do Docker Engine"],
    ));

    // Supabase: neither endpoint reachable.
    let port = crate::support::free_port();
    let mut supabase = harven_watchdog::probe::supabase::SupabaseProbe::new(
        harven_watchdog::config::SupabaseConfig {
            url: format!("http://127.0.0.1:{port}").parse().expect("url"),
            api_key: harven_watchdog::secret::Secret::new("sb-key"),
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(1),
        },
    )
    .expect("probe");
    let f = failed(&mut supabase).await;
    failures.push((
        "supabase unreachable".into(),
        "supabase",
        f,
        vec!["nenhum endpoint do Supabase"],
    ));

    saas_failures(&mut failures).await;

    for locale in Locale::ALL {
        let foreign = Foreign::of(locale);
        for (what, source, f, glue) in &failures {
            assert!(
                f.words.is_some(),
                "{what}: our words quoted as a peer's: {f}"
            );
            let blind = source_unreachable(source, f).words(locale);
            let line = Msg::new(MsgId::Failed)
                .msg("failure", f.reader_words())
                .words(locale);
            for shown in [&blind, &line] {
                foreign.check(what, shown);
                if locale == Locale::PtBr {
                    assert!(glue.iter().any(|g| shown.contains(g)), "{what}: {shown}");
                }
            }
        }
    }
}

/// The SaaS probes (OpenAI's API and costs, Sentry, Coolify) failing against their fakes in each
/// way that is ours to word: an HTML page, a refused key or token, an unknown project or
/// application, a 502, a closed port; each with the pt-BR words expected around the peer's.
async fn saas_failures(failures: &mut Vec<(String, &str, Failure, Vec<&str>)>) {
    use harven_watchdog::config::{CoolifyConfig, OpenaiConfig, OpenaiUsageConfig, SentryConfig};
    use harven_watchdog::probe::coolify::CoolifyProbe;
    use harven_watchdog::probe::openai::{ApiProbe, UsageProbe};
    use harven_watchdog::probe::sentry::SentryProbe;
    use harven_watchdog::secret::Secret;

    use crate::support::{coolify, openai, sentry};

    let timeout = Duration::from_secs(1);
    let closed = || -> url::Url {
        format!("http://127.0.0.1:{}", crate::support::free_port())
            .parse()
            .expect("url")
    };

    // OpenAI: the models list and the costs pages.
    let openai_config = |url: url::Url, api_key: &str, admin_key: &str| OpenaiConfig {
        url,
        api_key: Some(Secret::new(api_key)),
        usage: Some(OpenaiUsageConfig {
            admin_key: Secret::new(admin_key),
            monthly_budget: 100.0,
            interval: Duration::from_secs(600),
        }),
        organization: None,
        project: None,
        interval: Duration::from_secs(60),
        timeout,
    };
    let server = openai::FakeOpenai::start("sk-proj-right", "sk-admin-right").await;
    server.set_models(openai::Answer::Garbage);
    server.set_costs(openai::Answer::Garbage);
    let config = openai_config(server.url(), "sk-proj-right", "sk-admin-right");
    let mut api = ApiProbe::new(&config).expect("probe");
    let mut usage = UsageProbe::new(&config).expect("probe");
    let f = failed(&mut api).await;
    failures.push((
        "openai models HTML".into(),
        "openai.api",
        f,
        vec!["uma página HTML, não a lista de modelos da OpenAI"],
    ));
    let f = failed(&mut usage).await;
    failures.push((
        "openai costs HTML".into(),
        "openai.usage",
        f,
        vec!["uma página HTML, não a página de custos da OpenAI"],
    ));
    server.set_costs(openai::Answer::Status(502));
    let f = failed(&mut usage).await;
    failures.push((
        "openai costs 502".into(),
        "openai.usage",
        f,
        vec!["a API de custos não respondeu"],
    ));
    let config = openai_config(server.url(), "sk-proj-wrong", "sk-admin-wrong");
    let f = failed(&mut ApiProbe::new(&config).expect("probe")).await;
    failures.push((
        "openai wrong key".into(),
        "openai.api",
        f,
        vec!["a OpenAI recusou a chave"],
    ));
    let f = failed(&mut UsageProbe::new(&config).expect("probe")).await;
    failures.push((
        "openai wrong admin key".into(),
        "openai.usage",
        f,
        vec!["a OpenAI recusou a chave"],
    ));
    let config = openai_config(closed(), "sk-proj-right", "sk-admin-right");
    let f = failed(&mut ApiProbe::new(&config).expect("probe")).await;
    failures.push((
        "openai closed port".into(),
        "openai.api",
        f,
        vec!["a API da OpenAI não pôde ser alcançada"],
    ));
    let f = failed(&mut UsageProbe::new(&config).expect("probe")).await;
    failures.push((
        "openai costs closed port".into(),
        "openai.usage",
        f,
        vec!["API de custos da OpenAI"],
    ));

    // Sentry: its releases and issues lists.
    let sentry_config = |url: url::Url, token: &str, project: &str| SentryConfig {
        url,
        token: Secret::new(token),
        organization: "harven".into(),
        projects: vec![project.into()],
        interval: Duration::from_secs(60),
        timeout,
        window: Duration::from_secs(3600),
    };
    let server = sentry::FakeSentry::start("sntrys_right", "harven", "harven-backend").await;
    let mut right = SentryProbe::new(&sentry_config(
        server.url(),
        "sntrys_right",
        "harven-backend",
    ))
    .expect("probe");
    server.set(sentry::Answer::Garbage);
    let f = failed(&mut right).await;
    failures.push((
        "sentry HTML".into(),
        "sentry",
        f,
        vec!["uma página HTML, não a lista de"],
    ));
    server.set(sentry::Answer::Status(502));
    let f = failed(&mut right).await;
    failures.push((
        "sentry 502".into(),
        "sentry",
        f,
        vec!["o Sentry não respondeu"],
    ));
    server.set(sentry::Answer::Ok);
    let f = failed(
        &mut SentryProbe::new(&sentry_config(
            server.url(),
            "sntrys_wrong",
            "harven-backend",
        ))
        .expect("probe"),
    )
    .await;
    failures.push((
        "sentry wrong token".into(),
        "sentry",
        f,
        vec!["o Sentry recusou o token"],
    ));
    let f = failed(
        &mut SentryProbe::new(&sentry_config(
            server.url(),
            "sntrys_right",
            "harven-frontend",
        ))
        .expect("probe"),
    )
    .await;
    failures.push((
        "sentry unknown project".into(),
        "sentry",
        f,
        vec!["o Sentry não conhece o projeto"],
    ));
    let f = failed(
        &mut SentryProbe::new(&sentry_config(closed(), "sntrys_right", "harven-backend"))
            .expect("probe"),
    )
    .await;
    failures.push((
        "sentry closed port".into(),
        "sentry",
        f,
        vec!["o Sentry não pôde ser lido"],
    ));

    // Coolify: the application's deployments and envs.
    let app = "k8cw4s0kgsw4gcw8o0ckc4os";
    let coolify_config = |url: url::Url, token: &str, application: &str| CoolifyConfig {
        url,
        token: Secret::new(token),
        application: application.to_owned(),
        env_names: vec!["JWT_SECRET".into()],
        interval: Duration::from_secs(60),
        timeout,
    };
    let server = coolify::FakeCoolify::start("7|right", app).await;
    let mut right =
        CoolifyProbe::new(&coolify_config(server.url(), "7|right", app)).expect("probe");
    server.set_deployments_answer(coolify::Answer::Garbage);
    server.set_envs_answer(coolify::Answer::Garbage);
    let f = failed(&mut right).await;
    failures.push((
        "coolify HTML".into(),
        "coolify",
        f,
        vec!["uma página HTML que não é a lista de"],
    ));
    server.set_deployments_answer(coolify::Answer::Status(502));
    server.set_envs_answer(coolify::Answer::Status(502));
    let f = failed(&mut right).await;
    failures.push((
        "coolify 502".into(),
        "coolify",
        f,
        vec!["o Coolify não conseguiu responder"],
    ));
    server.set_deployments_answer(coolify::Answer::Ok);
    server.set_envs_answer(coolify::Answer::Ok);
    let f = failed(
        &mut CoolifyProbe::new(&coolify_config(server.url(), "7|wrong", app)).expect("probe"),
    )
    .await;
    failures.push((
        "coolify wrong token".into(),
        "coolify",
        f,
        vec!["o Coolify recusou o token"],
    ));
    let f = failed(
        &mut CoolifyProbe::new(&coolify_config(
            server.url(),
            "7|right",
            "nosuchapp0000000000000000",
        ))
        .expect("probe"),
    )
    .await;
    failures.push((
        "coolify unknown application".into(),
        "coolify",
        f,
        vec!["o Coolify não conhece a aplicação"],
    ));
    let f =
        failed(&mut CoolifyProbe::new(&coolify_config(closed(), "7|right", app)).expect("probe"))
            .await;
    failures.push((
        "coolify closed port".into(),
        "coolify",
        f,
        vec!["o Coolify não pôde ser alcançado"],
    ));
}
