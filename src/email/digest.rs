//! The budget digest: one email that carries every held email of an incident, in pt-BR or English.
//!
//! The held messages are stored rendered, so the digest reads them back: the subject (RFC 2047
//! decoded) and the first lines of the plain-text part (quoted-printable or base64 decoded) of each,
//! in the order they were held. It threads with the incident (`In-Reply-To`/`References` copied from
//! the held messages) and carries the `X-Harven-*` headers, with `X-Harven-Event: digest`.
//!
//! Like the rest of `email/`, composing is pure: the sender reads the held rows from the store,
//! calls [`build`] and records the result; nothing here touches the store or reads a clock.

use lettre::Message;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, SinglePart};

use crate::clock::Timestamp;
use crate::incident::Level;
use crate::locale::{Locale, fill};
use crate::store::{NewDigest, OutboxEntry};

/// Lines of each held email's text shown in the digest.
pub const PREVIEW_LINES: usize = 6;

/// The subject, the first lines of the text and the top-level headers of a stored message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub subject: String,
    pub first_lines: Vec<String>,
    /// Top-level headers, unfolded, values not decoded.
    pub headers: Vec<(String, String)>,
}

impl Summary {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads a stored message back for the digest (with `mail-parser`: MIME, transfer encodings and
/// RFC 2047 words). Never fails: what cannot be read is left out.
pub fn summarize(message: &[u8], max_lines: usize) -> Summary {
    let Some(parsed) = mail_parser::MessageParser::default().parse(message) else {
        return Summary::default();
    };
    let subject = parsed.subject().unwrap_or_default().to_owned();
    let first_lines = parsed
        .body_text(0)
        .map(|text| {
            text.lines()
                .map(str::trim_end)
                .filter(|l| !l.trim().is_empty())
                .take(max_lines)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    // The headers the digest carries over, raw (IDs and ASCII values need no decoding).
    let headers = [
        "In-Reply-To",
        "References",
        "Message-ID",
        "X-Harven-Section",
        "X-Harven-Cause",
    ]
    .into_iter()
    .filter_map(|name| Some((name.to_owned(), parsed.header_raw(name)?.trim().to_owned())))
    .collect();
    Summary {
        subject,
        first_lines,
        headers,
    }
}

/// A held email's event (`opened`, …) in `locale`'s words; another word as it is.
fn event_words(event: &str, locale: Locale) -> String {
    crate::incident::PageEvent::ALL
        .iter()
        .find(|e| e.as_str() == event)
        .map_or_else(|| event.to_owned(), |e| e.words().words(locale))
}

/// The digest replacing `held` (the incident's held rows, oldest first), keyed `key`, from `from`,
/// dated `now`. Recipients are every held email's recipients, each once, in order.
pub fn build(
    key: &str,
    held: &[OutboxEntry],
    from: &Mailbox,
    now: Timestamp,
    locale: Locale,
) -> Result<NewDigest, String> {
    let first = held.first().ok_or("no held emails to digest")?;
    let incident = first.incident.clone();
    let summaries: Vec<Summary> = held
        .iter()
        .map(|e| summarize(&e.message, PREVIEW_LINES))
        .collect();
    let level = held
        .iter()
        .filter_map(|e| Level::parse(&e.level))
        .max()
        .unwrap_or(Level::L1);
    let mut recipients: Vec<String> = Vec::new();
    for r in held.iter().flat_map(|e| &e.recipients) {
        if !recipients.contains(r) {
            recipients.push(r.clone());
        }
    }

    let n = held.len();
    let t = locale.text();
    let subject = fill(
        t.digest_subject,
        &[("level", &level), ("incident", &incident), ("n", &n)],
    );
    let intro = fill(t.digest_intro, &[("n", &n), ("incident", &incident)]);
    let event_word = t.digest_event;
    let mut body = format!("{intro}\n");
    for (i, (entry, summary)) in held.iter().zip(&summaries).enumerate() {
        body.push_str(&format!(
            "\n{}. {}\n   ({event_word}: {}, {}, {})\n",
            i + 1,
            if summary.subject.is_empty() {
                entry.key.as_str()
            } else {
                summary.subject.as_str()
            },
            event_words(&entry.event, locale),
            entry.level,
            crate::locale::human_time(entry.created_at)
        ));
        for line in &summary.first_lines {
            body.push_str("   ");
            body.push_str(line);
            body.push('\n');
        }
    }

    // Thread with the incident: the held messages all answer its first email.
    let reply_to = summaries.iter().find_map(|s| s.header("In-Reply-To"));
    let references = summaries.iter().find_map(|s| s.header("References"));
    let first_id = summaries[0].header("Message-ID");
    let (in_reply_to, references) = match (reply_to, references, first_id) {
        (Some(r), refs, _) => (Some(r.to_owned()), refs.or(Some(r)).map(str::to_owned)),
        (None, Some(refs), _) => (None, Some(refs.to_owned())),
        (None, None, Some(id)) => (Some(id.to_owned()), Some(id.to_owned())),
        (None, None, None) => (None, None),
    };

    let mut builder = Message::builder()
        .from(from.clone())
        .subject(subject)
        // Clamped to the years the header's formatter takes (it panics outside them).
        .date(now.to_system_time())
        .message_id(Some(message_id(key, from)));
    for r in &recipients {
        match r.parse::<Mailbox>() {
            Ok(m) => builder = builder.to(m),
            Err(e) => tracing::warn!(recipient = %r, error = %e, "digest: skipping a bad address"),
        }
    }
    if let Some(r) = in_reply_to {
        builder = builder.in_reply_to(r);
    }
    if let Some(r) = references {
        builder = builder.references(r);
    }
    let last = summaries.last().expect("held is not empty");
    let harven = [
        ("X-Harven-Incident", Some(incident.as_str())),
        ("X-Harven-Section", last.header("X-Harven-Section")),
        ("X-Harven-Level", Some(level.as_str())),
        ("X-Harven-Event", Some("digest")),
        ("X-Harven-Cause", last.header("X-Harven-Cause")),
    ];
    for (name, value) in harven {
        if let Some(value) = value {
            let name = HeaderName::new_from_ascii(name.to_owned())
                .map_err(|_| format!("bad header name {name}"))?;
            builder = builder.raw_header(HeaderValue::new(name, value.to_owned()));
        }
    }
    let message = builder
        .singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(body),
        )
        .map_err(|e| format!("cannot build the digest: {e}"))?;
    Ok(NewDigest {
        key: key.to_owned(),
        incident,
        level,
        recipients,
        message: message.formatted(),
        replaces: held.iter().map(|e| e.key.clone()).collect(),
    })
}

/// A `Message-ID` that is a function of the key, so a resent digest is recognisably the same email.
fn message_id(key: &str, from: &Mailbox) -> String {
    let local: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '.'
            }
        })
        .collect();
    format!("<{local}@{}>", from.email.domain())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lettre::message::MultiPart;

    fn rendered(subject: &str, text: &str) -> Vec<u8> {
        Message::builder()
            .from("watchdog@harven.ai".parse().unwrap())
            .to("devops@harven.ai".parse().unwrap())
            .subject(subject)
            .in_reply_to("<root@harven.ai>".to_owned())
            .references("<root@harven.ai>".to_owned())
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(text.to_owned()),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(format!("<p>{text}</p>")),
                    ),
            )
            .unwrap()
            .formatted()
    }

    #[test]
    fn reads_back_what_lettre_writes() {
        let long = "x".repeat(200);
        let text = format!(
            "Sintoma: taxa de erro 12,4% > 5%\n\nCausa provável: Supabase fora do ar\n{long}\nlinha 4\n"
        );
        let s = summarize(
            &rendered("[Harven][L2][critical] Erro — provável: Supabase", &text),
            3,
        );
        assert_eq!(
            s.subject,
            "[Harven][L2][critical] Erro — provável: Supabase"
        );
        assert_eq!(
            s.first_lines,
            vec![
                "Sintoma: taxa de erro 12,4% > 5%".to_owned(),
                "Causa provável: Supabase fora do ar".to_owned(),
                long
            ]
        );
        assert_eq!(s.header("References"), Some("<root@harven.ai>"));
    }

    fn held(key: &str, level: &str, subject: &str) -> OutboxEntry {
        OutboxEntry {
            key: key.to_owned(),
            incident: "latency-20261206T120000Z".to_owned(),
            level: level.to_owned(),
            event: "reminder".to_owned(),
            recipients: vec!["devops@harven.ai".to_owned()],
            message: rendered(subject, "Sintoma: p95 9,2 s > 3 s\n"),
            created_at: Timestamp::from_unix_millis(1_796_558_400_000),
            status: crate::store::EmailStatus::Held,
            attempts: 0,
            next_attempt_at: None,
            last_error: None,
            sent_at: None,
            failed_at: None,
            digest: None,
            epoch: 0,
        }
    }

    /// The digest's words come from the locale, in the language asked for, with its numbers filled.
    #[test]
    fn the_digest_speaks_the_locale() {
        let from: Mailbox = "watchdog@harven.ai".parse().unwrap();
        let rows = [
            held("latency-20261206T120000Z/L1/reminder/1", "L1", "um"),
            held("latency-20261206T120000Z/L2/reminder/2", "L2", "dois"),
        ];
        let at = Timestamp::from_unix_millis(1_796_562_000_000);
        for (locale, subject, intro, event) in [
            (
                Locale::PtBr,
                "[Harven][L2][digest] latency-20261206T120000Z: 2 e-mails retidos pelo limite por hora",
                "2 e-mails do incidente latency-20261206T120000Z passaram do limite de e-mails por hora e foram retidos.",
                "(evento: lembrete, L1,",
            ),
            (
                Locale::En,
                "[Harven][L2][digest] latency-20261206T120000Z: 2 emails held by the hourly limit",
                "2 emails about incident latency-20261206T120000Z went over the hourly email limit and were held.",
                "(event: reminder, L1,",
            ),
        ] {
            let d = build(
                "latency-20261206T120000Z/digest/1",
                &rows,
                &from,
                at,
                locale,
            )
            .unwrap();
            let s = summarize(&d.message, 40);
            assert_eq!(s.subject, subject, "{locale:?}");
            let text = s.first_lines.join("\n");
            assert!(text.starts_with(intro), "{locale:?}: {text}");
            assert!(text.contains(event), "{locale:?}: {text}");
            assert!(text.contains("1. um") && text.contains("2. dois"), "{text}");
        }
    }
}
