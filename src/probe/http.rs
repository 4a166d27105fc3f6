//! Helpers the HTTP probes share: a size-capped body read, reqwest errors as [`Failure`]s, the two
//! clients, and the bearer header of the keyed ones.

use crate::locale::{Arg, Msg, MsgId};
use crate::observe::{Failure, FailureKind};

/// Reads at most `cap` bytes of the body; more is a failure, not a truncation.
pub async fn read_capped(mut response: reqwest::Response, cap: usize) -> Result<Vec<u8>, Failure> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(too_large(cap));
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > cap {
                    return Err(too_large(cap));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(reqwest_failure(&e)),
        }
    }
}

fn too_large(cap: usize) -> Failure {
    Failure::said(
        FailureKind::TooLarge,
        Msg::new(MsgId::AnswerTooLarge).arg("kib", cap / 1024),
    )
}

/// A reqwest error as a failure, its causes included (reqwest's own Display is terse). Request URLs are
/// left out: ours carry no credentials, but a user's proxy URL might.
pub fn reqwest_failure(e: &reqwest::Error) -> Failure {
    let kind = if e.is_timeout() {
        FailureKind::Timeout
    } else if e.is_connect() || dropped_connection(e) {
        FailureKind::Connect
    } else if e.is_status() {
        FailureKind::Status
    } else if e.is_decode() || e.is_body() {
        FailureKind::Malformed
    } else {
        FailureKind::Other
    };
    let mut text = error_chain(e);
    if let Some(url) = e.url() {
        text = text
            .replace(&format!(" for url ({url})"), "")
            .replace(url.as_str(), "<url>");
    }
    Failure::new(kind, text)
}

/// `e` and its sources, joined by `: `.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// A pooled connection the peer dropped (it died or restarted between two polls): reset, aborted,
/// closed mid-answer. Reported like a refused connection: the peer is not there.
fn dropped_connection(e: &reqwest::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        let io_kind = s.downcast_ref::<std::io::Error>().map(std::io::Error::kind);
        if matches!(
            io_kind,
            Some(ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof)
        ) {
            return true;
        }
        if s.to_string()
            .contains("connection closed before message completed")
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// Longest decode error quoted in a failure, in characters.
const MAX_DECODE_ERROR: usize = 200;

/// A body that is not the JSON expected (a SaaS API's answer): `what` it should have been (words of
/// ours, a [`MsgId`]), and the decoder's reason, cut and quoted as a library's words; an HTML page
/// (a login wall, a proxy's error) is said to be one.
pub fn malformed(body: &[u8], what: Msg, e: &dyn std::fmt::Display) -> Failure {
    let error = Arg::Peer(super::truncate(&e.to_string(), MAX_DECODE_ERROR));
    not_json(body, what, error)
}

/// [`malformed`] for a body that decodes but says something we cannot use: `why` is words of ours
/// (an amount that is not a number), shown in the reader's language rather than quoted.
pub fn malformed_because(body: &[u8], what: Msg, why: Msg) -> Failure {
    not_json(body, what, Arg::Msg(Box::new(why)))
}

fn not_json(body: &[u8], what: Msg, error: Arg) -> Failure {
    let html = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'<');
    let id = if html {
        MsgId::HtmlNotJson
    } else {
        MsgId::NotJson
    };
    let mut words = Msg::new(id).msg("what", what);
    words.args.push(("error".to_owned(), error));
    Failure::said(FailureKind::Malformed, words)
}

/// Upper bound of the shared client's connect timeout.
const MAX_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// The one reqwest client of the status-page probes (building one loads the CA roots and costs tens
/// of milliseconds). It has no overall timeout: each request sets its probe's own. It follows
/// redirects (reqwest's default, at most 10): a status page that moved is still read.
///
/// Its connect timeout is half the shortest of `timeouts` (at most 3 s), so a peer that cannot be
/// connected to fails as `connect` before the request's timeout, told apart from a peer that accepted
/// and hangs.
pub fn shared_client(
    timeouts: impl IntoIterator<Item = std::time::Duration>,
) -> Result<reqwest::Client, super::BuildError> {
    build(builder(timeouts))
}

/// A client for requests that carry a credential in a header (the Supabase probe's `apikey` and
/// `Authorization`): like [`shared_client`], but it follows **no** redirect. reqwest drops
/// `Authorization` and cookies when a redirect leaves the host, but not a custom header such as
/// `apikey`, and it keeps both across `https` → `http`; with redirects off, a 3xx is the answer the
/// caller sees (and reports), and the key never goes anywhere but the configured origin.
pub fn keyed_client(
    timeouts: impl IntoIterator<Item = std::time::Duration>,
) -> Result<reqwest::Client, super::BuildError> {
    build(builder(timeouts).redirect(reqwest::redirect::Policy::none()))
}

/// `Bearer <secret>` as a sensitive `Authorization` value (hyper leaves it out of its `Debug` and
/// HTTP/2 never indexes it), for the clients of [`keyed_client`]. `key` names the setting in the
/// error (`sentry.token`), which never quotes the secret.
pub fn bearer(
    secret: &crate::secret::Secret,
    key: &str,
) -> Result<reqwest::header::HeaderValue, super::BuildError> {
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", secret.expose()))
        .map_err(|_| {
            super::BuildError(format!(
                "{key} is not a valid HTTP header value (printable ASCII only)"
            ))
        })?;
    value.set_sensitive(true);
    Ok(value)
}

/// The settings both clients share: connect timeout and user agent.
fn builder(timeouts: impl IntoIterator<Item = std::time::Duration>) -> reqwest::ClientBuilder {
    let connect = timeouts
        .into_iter()
        .map(|t| t / 2)
        .min()
        .unwrap_or(MAX_CONNECT_TIMEOUT)
        .min(MAX_CONNECT_TIMEOUT);
    reqwest::Client::builder()
        .connect_timeout(connect)
        .user_agent(concat!("harven-watchdog/", env!("CARGO_PKG_VERSION")))
}

fn build(builder: reqwest::ClientBuilder) -> Result<reqwest::Client, super::BuildError> {
    builder.build().map_err(|e| {
        super::BuildError(format!("cannot build the HTTP client: {}", error_chain(&e)))
    })
}
