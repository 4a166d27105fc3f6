//! The budget digest: one email that carries every held email of an incident.
//!
//! The held messages are stored rendered, so the digest reads them back: the subject (RFC 2047
//! decoded) and the first lines of the plain-text part (quoted-printable or base64 decoded) of each,
//! in the order they were held. It threads with the incident (`In-Reply-To`/`References` copied from
//! the held messages) and carries the `X-Harven-*` headers, with `X-Harven-Event: digest`.

use std::time::{Duration, UNIX_EPOCH};

use lettre::Message;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, SinglePart};

use crate::clock::Timestamp;
use crate::config::Locale;
use crate::incident::Level;
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

/// Reads a stored message back for the digest. Never fails: what cannot be read is left out.
pub fn summarize(message: &[u8], max_lines: usize) -> Summary {
    let text = String::from_utf8_lossy(message);
    let (headers, body) = split_entity(&text);
    let subject = find(&headers, "Subject")
        .map(decode_words)
        .unwrap_or_default();
    let plain = plain_text(&headers, body, 0).unwrap_or_default();
    let first_lines = plain
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .take(max_lines)
        .map(str::to_owned)
        .collect();
    Summary {
        subject,
        first_lines,
        headers,
    }
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
    let (subject, intro, event_word) = match locale {
        Locale::PtBr => (
            format!(
                "[Harven][{level}][digest] {incident}: {n} e-mails retidos pelo limite por hora"
            ),
            format!(
                "{n} e-mails do incidente {incident} passaram do limite de e-mails por hora e foram \
                 retidos. Seguem reunidos nesta mensagem, na ordem em que foram gerados."
            ),
            "evento",
        ),
        Locale::En => (
            format!("[Harven][{level}][digest] {incident}: {n} emails held by the hourly limit"),
            format!(
                "{n} emails about incident {incident} went over the hourly email limit and were held. \
                 Here they are together, in the order they were produced."
            ),
            "event",
        ),
    };
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
            entry.event,
            entry.level,
            entry.created_at
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
        .date(UNIX_EPOCH + Duration::from_millis(now.as_unix_millis().max(0).unsigned_abs()))
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

// -------------------------------------------------------------------------------------------------
// A small reader for the messages lettre writes: headers, multipart, quoted-printable, base64, RFC 2047.
// -------------------------------------------------------------------------------------------------

fn find<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Unfolded headers and the body of an entity.
fn split_entity(text: &str) -> (Vec<(String, String)>, &str) {
    let (head, body) = match (text.find("\r\n\r\n"), text.find("\n\n")) {
        (Some(a), Some(b)) if b < a => (&text[..b], &text[b + 2..]),
        (Some(a), _) => (&text[..a], &text[a + 4..]),
        (None, Some(b)) => (&text[..b], &text[b + 2..]),
        (None, None) => (text, ""),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    (headers, body)
}

fn param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// The decoded text of the first `text/plain` part (depth-first), or of a non-multipart text body.
fn plain_text(headers: &[(String, String)], body: &str, depth: usize) -> Option<String> {
    let content_type = find(headers, "Content-Type").unwrap_or("text/plain");
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media.starts_with("multipart/") {
        let boundary = param(content_type, "boundary")?;
        if depth >= 4 {
            return None;
        }
        let delimiter = format!("--{boundary}");
        return body
            .split(delimiter.as_str())
            .skip(1)
            .filter(|chunk| !chunk.starts_with("--"))
            .find_map(|chunk| {
                let chunk = chunk
                    .strip_prefix("\r\n")
                    .or_else(|| chunk.strip_prefix('\n'))
                    .unwrap_or(chunk);
                let (h, b) = split_entity(chunk);
                plain_text(&h, b, depth + 1)
            });
    }
    if media != "text/plain" {
        return None;
    }
    let encoding = find(headers, "Content-Transfer-Encoding")
        .unwrap_or("7bit")
        .to_ascii_lowercase();
    Some(match encoding.as_str() {
        "base64" => {
            use base64::Engine as _;
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        }
        "quoted-printable" => quoted_printable::decode(body, quoted_printable::ParseMode::Robust)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default(),
        _ => body.to_owned(),
    })
}

/// Decodes RFC 2047 encoded words (`=?utf-8?b?...?=`, `=?utf-8?q?...?=`); whitespace between two
/// encoded words is dropped, as the RFC says.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut pending_space = String::new();
    let mut last_was_word = false;
    let mut rest = value;
    while let Some(ch) = rest.chars().next() {
        if let Some((decoded, used)) = encoded_word(rest) {
            if !last_was_word {
                out.push_str(&pending_space);
            }
            pending_space.clear();
            out.push_str(&decoded);
            rest = &rest[used..];
            last_was_word = true;
            continue;
        }
        if ch.is_whitespace() {
            pending_space.push(ch);
        } else {
            out.push_str(&pending_space);
            pending_space.clear();
            out.push(ch);
            last_was_word = false;
        }
        rest = &rest[ch.len_utf8()..];
    }
    out.push_str(&pending_space);
    out
}

fn encoded_word(s: &str) -> Option<(String, usize)> {
    let inner = s.strip_prefix("=?")?;
    let (_charset, after_charset) = inner.split_once('?')?;
    let (encoding, after_encoding) = after_charset.split_once('?')?;
    let end = after_encoding.find("?=")?;
    let text = &after_encoding[..end];
    if text.contains(char::is_whitespace) {
        return None;
    }
    let bytes = match encoding {
        "B" | "b" => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .ok()?
        }
        "Q" | "q" => {
            quoted_printable::decode(text.replace('_', " "), quoted_printable::ParseMode::Robust)
                .ok()?
        }
        _ => return None,
    };
    let used = s.len() - after_encoding.len() + end + 2;
    Some((String::from_utf8_lossy(&bytes).into_owned(), used))
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

    #[test]
    fn decodes_encoded_words() {
        assert_eq!(
            decode_words("=?utf-8?b?cHJvdsOhdmVs?= =?utf-8?q?_Supabase?= down"),
            "provável Supabase down"
        );
    }
}
