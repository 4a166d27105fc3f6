//! The emails of an incident, and the signed ack/resolve links they carry.
//!
//! # Layout
//!
//! - [`render`] (this file): one [`Page`](crate::incident::Page) of one incident as a
//!   [`lettre::Message`] with a plain-text and an HTML part, in pt-BR or English: the subject and the
//!   `X-Harven-*` and threading headers (see README.md), and a body that holds everything the on-call
//!   person needs without opening anything else.
//! - `view`: turns the domain types into the plain strings the templates show (units, times, the
//!   subject, the postmortem draft), choosing among the words of [`crate::locale`]. All the
//!   judgement lives there (its parts: `quote` for peer strings, `units`, `subject`); templates
//!   only lay it out.
//! - `templates/`: the minijinja templates, compiled in. Only `*.html` templates are auto-escaped,
//!   so every HTML template is named `*.html` (minijinja escapes by the template's name).
//! - [`digest`]: the one email that replaces an incident's held emails when its hourly budget
//!   frees up (subject, body and `X-Harven-*` headers), composed from the stored messages.
//! - [`token`]: HMAC-signed, expiring tokens binding incident, action and level.
//! - [`links`]: the URLs of the signed links an email carries ([`ActionLinks`]); the
//!   `GET/POST /act/{token}` routes behind them are `crate::http::act`'s.
//! - `images`: the symptom charts as inline PNG parts (issue 15): drawn by `crate::chart` at
//!   [`EMAIL_SIZE`](crate::chart::EMAIL_SIZE), each with a `Content-ID` derived from the page key
//!   (deterministic, unique per email) that the HTML's `<img src="cid:…">` names. With charts, the
//!   message is `multipart/alternative` [text, `multipart/related` [html, png…]] (RFC 2387), so a
//!   client shows the images in the HTML and the text part stays whole without them.
//!
//! **Invariant:** rendering is pure: no store, no clock (`now` comes in), no network. The notification
//! pipeline decides what to send and records it before sending; this module only says what it looks
//! like. Nothing secret is among its inputs, and `public_url` loses any user-info before it is used.

pub mod digest;
mod images;
pub mod links;
pub mod token;
mod view;

use lettre::Message;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior};
use url::Url;

use crate::chart::SymptomChart;
use crate::clock::Timestamp;
use crate::engine::{SectionState, Symptom};
use crate::incident::{Incident, Page};
use crate::runbook::{Locale, Runbook};

pub use links::ActionLinks;

/// The domain that every `Message-ID` of the watchdog ends with.
pub const MESSAGE_ID_DOMAIN: &str = "harven-watchdog";

/// Everything one email is made of. Plain data, independent of the store and the daemon: the
/// notification pipeline fills it from the persisted incident and the latest evaluation.
#[derive(Debug, Clone, Copy)]
pub struct EmailInput<'a> {
    pub incident: &'a Incident,
    /// The page this email delivers: its level, event and idempotency key (which becomes the
    /// `Message-ID`, so a re-send after a crash is recognisably the same message).
    pub page: &'a Page,
    /// The incident's section now: title, severity and the ranked diagnosis.
    pub section: &'a SectionState,
    /// The section's symptoms now (firing and recovering ones, with values). Symptoms of other
    /// sections and inactive ones are ignored.
    pub symptoms: &'a [Symptom],
    /// The runbook: rule thresholds, titles and actions in the email's locale, links, vendors and the
    /// incident checklist.
    pub runbook: &'a Runbook,
    /// The addresses of the paged level.
    pub recipients: &'a [Mailbox],
    pub from: &'a Mailbox,
    /// The watchdog's address as people reach it (`server.public_url`), for the incident page link.
    pub public_url: &'a Url,
    pub locale: Locale,
    /// The signed ack/resolve links for this level; `None` leaves them out (the resolved email).
    pub links: Option<&'a ActionLinks>,
    /// The firing symptoms' charts, read by the pipeline (blind ones say why); empty: none shown.
    pub charts: &'a [SymptomChart],
    /// When the email is rendered: its `Date`, and the "open for 42 min" figures.
    pub now: Timestamp,
}

/// A rendered email: the message to send and, for the outbox and tests, its parts.
#[derive(Debug, Clone)]
pub struct RenderedEmail {
    pub subject: String,
    /// `<…@harven-watchdog>`, derived from the page key.
    pub message_id: String,
    pub text: String,
    pub html: String,
    pub message: Message,
}

impl RenderedEmail {
    /// The RFC 5322 bytes, as an SMTP server or an `.eml` file receives them.
    pub fn formatted(&self) -> Vec<u8> {
        self.message.formatted()
    }
}

/// Why an email could not be rendered. None of these is retryable: the same input fails the same way.
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("no recipients for {0}")]
    NoRecipients(String),
    #[error("email template {name}: {source}")]
    Template {
        name: &'static str,
        #[source]
        source: minijinja::Error,
    },
    #[error("building the message: {0}")]
    Build(#[from] lettre::error::Error),
}

impl EmailError {
    /// A stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::NoRecipients(_) => "no_recipients",
            Self::Template { .. } => "template",
            Self::Build(_) => "build",
        }
    }
}

/// The compiled-in templates, by name. The extension decides auto-escaping: `.html` escapes.
const TEMPLATES: &[(&str, &str)] = &[
    ("email.txt", include_str!("templates/email.txt")),
    ("email.html", include_str!("templates/email.html")),
    ("postmortem.txt", include_str!("templates/postmortem.txt")),
];

/// The template environment shared by emails and the HTTP pages (which add their own templates): strict about undefined
/// values (a typo fails the render and the tests, instead of printing nothing), blocks trimmed so
/// the plain-text templates read as they print. Templates are parsed on first use and cached.
pub(crate) fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()
            .expect("the default delimiters are valid"),
    );
    // minijinja's HTML escaping also turns `/` into `&#x2f;`: valid, but it mangles every URL in an
    // `href` for link scanners and the clients that show raw hrefs. Escape what HTML needs, no more.
    env.set_formatter(|out, state, value| {
        if matches!(state.auto_escape(), minijinja::AutoEscape::Html)
            && !value.is_safe()
            && let Some(s) = value.as_str()
        {
            return out
                .write_str(&escape_html(s))
                .map_err(minijinja::Error::from);
        }
        minijinja::escape_formatter(out, state, value)
    });
    env.set_loader(|name| {
        Ok(TEMPLATES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, source)| (*source).to_owned()))
    });
    env
}

/// `&`, `<`, `>`, `"` and `'` as entities: enough for text and quoted attribute values.
fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Renders `name` with `ctx`, naming the template in the error.
pub(crate) fn render_template<S: serde::Serialize>(
    env: &Environment<'static>,
    name: &'static str,
    ctx: &S,
) -> Result<String, EmailError> {
    env.get_template(name)
        .and_then(|t| t.render(Serde(ctx)))
        .map_err(|source| EmailError::Template { name, source })
}

/// Renders emails. Holds the template environment, so templates are parsed once per process.
pub struct Renderer {
    env: Environment<'static>,
}

impl Default for Renderer {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Renderer")
    }
}

impl Renderer {
    pub fn new() -> Self {
        Self { env: environment() }
    }

    /// The email for `input.page`.
    pub fn render(&self, input: &EmailInput<'_>) -> Result<RenderedEmail, EmailError> {
        if input.recipients.is_empty() {
            return Err(EmailError::NoRecipients(input.page.key.clone()));
        }
        let mut v = view::EmailView::build(input);
        let message_id = message_id(&input.page.key);
        let images = images::draw(input.charts, &message_id);
        v.charts = view::chart_views(input, &images);
        v.postmortem = match &v.resolved {
            Some(_) => Some(render_template(&self.env, "postmortem.txt", &v)?),
            None => None,
        };
        let text = render_template(&self.env, "email.txt", &v)?;
        let html = render_template(&self.env, "email.html", &v)?;

        let builder = envelope(
            input.incident,
            input.page,
            input.recipients,
            input.from,
            &v.subject,
            &v.cause_id,
            input.now,
        );
        let alternative = MultiPart::alternative().singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(text.clone()),
        );
        let html_part = SinglePart::builder()
            .header(ContentType::TEXT_HTML)
            .body(html.clone());
        // With images, the HTML and the images it names travel together in `multipart/related`.
        let alternative = match images::related(html_part.clone(), &images) {
            Some(related) => alternative.multipart(related),
            None => alternative.singlepart(html_part),
        };
        let message = builder.multipart(alternative)?;
        Ok(RenderedEmail {
            subject: v.subject,
            message_id,
            text,
            html,
            message,
        })
    }
}

/// The headers every email of a page carries: addresses, subject, date, its stable `Message-ID`, the
/// incident's thread, and the `X-Harven-*` headers (section, level, event, top cause).
fn envelope(
    incident: &Incident,
    page: &Page,
    recipients: &[Mailbox],
    from: &Mailbox,
    subject: &str,
    cause: &str,
    now: Timestamp,
) -> lettre::message::MessageBuilder {
    let root = thread_root(&incident.id);
    let mut builder = Message::builder()
        .from(from.clone())
        .subject(subject)
        // Clamped to the years the header's formatter takes (it panics outside them).
        .date(now.to_system_time())
        .message_id(Some(message_id(&page.key)))
        .in_reply_to(root.clone())
        .references(root);
    for to in recipients {
        builder = builder.to(to.clone());
    }
    let headers = [
        ("X-Harven-Incident", incident.id.clone()),
        ("X-Harven-Section", incident.section.clone()),
        ("X-Harven-Level", page.level.as_str().to_owned()),
        ("X-Harven-Event", page.event.as_str().to_owned()),
        ("X-Harven-Cause", cause.to_owned()),
        // RFC 3834: out-of-office responders and the like must not answer a page.
        ("Auto-Submitted", "auto-generated".to_owned()),
    ];
    for (name, value) in headers {
        builder = builder.raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str(name),
            value,
        ));
    }
    builder
}

/// The email of a page when the full one cannot be rendered (a template bug, or no evaluation of its
/// section at hand): plain text in `locale`, the same headers and thread, the incident's essentials.
/// A page is never dropped for want of a pretty email.
pub fn fallback(
    incident: &Incident,
    page: &Page,
    recipients: &[Mailbox],
    from: &Mailbox,
    now: Timestamp,
    locale: Locale,
) -> Vec<u8> {
    use crate::incident::PageEvent;
    let event = page.event.words();
    let subject = format!(
        "[Harven][{}][{}] {} — {}",
        page.level,
        if page.event == PageEvent::Resolved {
            "resolved".to_owned()
        } else {
            incident.severity.to_string()
        },
        incident.id,
        event.words(locale)
    );
    let symptoms: Vec<String> = incident
        .symptoms
        .iter()
        .map(|(rule, summary)| format!("- {rule}: {summary}"))
        .collect();
    let body = format!(
        "{}\n",
        crate::locale::fill(
            locale.text().fallback_body,
            &[
                ("id", &incident.id),
                ("section", &incident.section),
                ("severity", &incident.severity),
                ("opened", &crate::locale::human_time(incident.opened_at)),
                ("cause", &incident.cause),
                ("symptoms", &symptoms.join("\n")),
            ],
        )
    );
    match envelope(
        incident,
        page,
        recipients,
        from,
        &subject,
        &incident.cause,
        now,
    )
    .header(ContentType::TEXT_PLAIN)
    .body(body.clone())
    {
        Ok(message) => message.formatted(),
        Err(e) => {
            tracing::error!(key = %page.key, error = %e, "even the fallback email could not be built");
            format!(
                "Subject: {subject}\r\nX-Harven-Incident: {}\r\n\r\n{body}",
                incident.id
            )
            .into_bytes()
        }
    }
}

/// Renders one email with a fresh [`Renderer`] (tests, one-offs; the daemon keeps a `Renderer`).
pub fn render(input: &EmailInput<'_>) -> Result<RenderedEmail, EmailError> {
    Renderer::new().render(input)
}

/// The thread root of an incident, `<{incident}@harven-watchdog>`: every email of the incident names
/// it in `In-Reply-To` and `References`, so mail clients thread them even though no message carries
/// that ID itself.
pub fn thread_root(incident: &str) -> String {
    format!("<{incident}@{MESSAGE_ID_DOMAIN}>")
}

/// The `Message-ID` of a page, `<{key, '/' → '.'}@harven-watchdog>`: stable, so a re-send of the same
/// page after a crash is the same message to every client and deduplicating server.
pub fn message_id(page_key: &str) -> String {
    let local: String = page_key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '.'
            }
        })
        .collect();
    format!("<{local}@{MESSAGE_ID_DOMAIN}>")
}

/// `base` + `/` + `path`, keeping any path prefix of `base` (a watchdog behind a reverse proxy at
/// `/watchdog`) and dropping any user-info, which must never reach an email or a page.
pub fn public_link(base: &Url, path: &str) -> String {
    let mut base = base.clone();
    let _ = base.set_username("");
    let _ = base.set_password(None);
    base.set_query(None);
    base.set_fragment(None);
    format!(
        "{}/{}",
        base.as_str().trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        let env = environment();
        for (name, _) in TEMPLATES {
            env.get_template(name)
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        }
    }

    #[test]
    fn html_templates_escape_and_text_templates_do_not() {
        let env = environment();
        let ctx = serde_json::json!({"x": "<b>&", "u": "https://a/b?c=1&d='2'\""});
        let html = env
            .template_from_named_str("probe.html", "{{ x }} <a href=\"{{ u }}\">")
            .and_then(|t| t.render(Serde(&ctx)))
            .expect("render");
        assert_eq!(
            html,
            "&lt;b&gt;&amp; <a href=\"https://a/b?c=1&amp;d=&#39;2&#39;&quot;\">"
        );
        let text = env
            .template_from_named_str("probe.txt", "{{ x }}")
            .and_then(|t| t.render(Serde(&ctx)))
            .expect("render");
        assert_eq!(text, "<b>&");
        let strict = env
            .template_from_named_str("probe.txt", "{{ y }}")
            .and_then(|t| t.render(Serde(&ctx)));
        assert!(strict.is_err(), "undefined values fail the render");
    }

    #[test]
    fn message_ids_are_stable_and_valid() {
        assert_eq!(
            message_id("errors-20261118T110640Z/L2/escalated/0"),
            "<errors-20261118T110640Z.L2.escalated.0@harven-watchdog>"
        );
        assert_eq!(
            thread_root("errors-20261118T110640Z"),
            "<errors-20261118T110640Z@harven-watchdog>"
        );
    }

    #[test]
    fn public_links_keep_the_prefix_and_drop_credentials() {
        let u = Url::parse("https://ops:hunter2@watch.example.com/watchdog/").expect("url");
        assert_eq!(
            public_link(&u, "/incidents/x"),
            "https://watch.example.com/watchdog/incidents/x"
        );
        let u = Url::parse("http://localhost:9464").expect("url");
        assert_eq!(public_link(&u, "act/t"), "http://localhost:9464/act/t");
    }
}
