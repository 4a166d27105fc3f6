//! The OpenAI probes (`[openai]`, both off unless configured): OpenAI's API measured from our side,
//! and the organization's spend against a monthly budget. They are the first-hand evidence the
//! runbook's §1 "OpenAI lento", §2 "OpenAI rate limit" and §4 "Alerta de billing" ask for, ahead of
//! status.openai.com (which lags real outages) and of the backend's own 429s.
//!
//! - `api` ([`ApiProbe`], source `openai.api`): `GET {url}/v1/models` with the team's key, the
//!   cheapest authenticated call (API reference, "Models › List models": `{"object": "list", "data":
//!   [{"id", "object": "model", "created", "owned_by"}]}`). A 429 is told apart by OpenAI's error body
//!   (API reference, "Error codes": `{"error": {"message", "type", "param", "code"}}`):
//!   `insufficient_quota` in `type` or `code` is the quota or billing limit ("You exceeded your current
//!   quota, please check your plan and billing details"), anything else (`rate_limit_exceeded`) a
//!   rate limit.
//! - `usage` ([`UsageProbe`], source `openai.usage`): `GET {url}/v1/organization/costs` with an admin
//!   key (API reference, "Administration › Usage › Costs", and the cookbook "How to use the Usage API
//!   and Cost API to monitor your OpenAI usage"): `start_time` (Unix seconds, inclusive),
//!   `bucket_width=1d` (the only width it supports), `limit` (1–180 buckets), `project_ids[]`, and
//!   `page` with the previous answer's `next_page` while `has_more`. An answer is `{"object": "page",
//!   "data": [{"object": "bucket", "start_time", "end_time", "results": [{"object":
//!   "organization.costs.result", "amount": {"value": 0.06, "currency": "usd"}, "line_item",
//!   "project_id"}]}], "has_more", "next_page"}`.
//!
//! **Keys.** Both keys are [`Secret`]s exposed once, in the probes' constructors, into a sensitive
//! `Authorization` header value; neither is in a URL, a note, a failure or a `Debug`. OpenAI's own
//! error *message* is never quoted (a 401's names part of the key it refused): only its `type` and
//! `code`, cut to a word ([`ErrorWords`]). Requests go through a client that follows no redirect
//! ([`keyed_client`]), so the key never leaves the configured origin.
//!
//! **What fails the source** (rules over it turn unknown, the doctor names the rules it blinds): a
//! host that cannot be reached, a key OpenAI refuses (401/403: we are blind, not OpenAI down), any
//! other 4xx but 429 (our request or `url` is wrong), a redirect, a body that is not OpenAI's
//! format, a body over the cap. For the API probe, OpenAI's own trouble is the reading, not a failure:
//! a 429, a 5xx, or no answer within the timeout once connected.

mod api;
mod usage;

pub use api::ApiProbe;
pub use usage::UsageProbe;

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::BuildError;
use super::http::{bearer, malformed, read_capped};
use crate::config::OpenaiConfig;
use crate::locale::{Msg, MsgId};
use crate::observe::{Failure, FailureKind};
use crate::secret::Secret;

/// Extra time [`poll_once`](super::poll_once) allows beyond the requests' own timeout (the usage
/// probe's pages share one deadline, see [`UsageProbe`]).
const POLL_MARGIN: Duration = Duration::from_millis(500);

/// Most of an error body read for its `type` and `code` (OpenAI's are a few hundred bytes).
const MAX_ERROR_BODY: usize = 16 << 10;

/// Longest `type` or `code` word kept from an error body.
const MAX_WORD: usize = 40;

/// `Authorization: Bearer <key>` (sensitive), and `OpenAI-Organization` / `OpenAI-Project` when
/// configured. `which` names the key in the error (`openai.api_key`), which never quotes it.
fn headers(
    key: &Secret,
    config: &OpenaiConfig,
    project_header: bool,
    which: &str,
) -> Result<HeaderMap, BuildError> {
    let mut out = HeaderMap::new();
    out.insert(AUTHORIZATION, bearer(key, which)?);
    // Validation let only OpenAI IDs through; a value that still is no header is left out.
    let ids = [
        ("openai-organization", config.organization.as_deref()),
        (
            "openai-project",
            config.project.as_deref().filter(|_| project_header),
        ),
    ];
    for (name, value) in ids {
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
            out.insert(HeaderName::from_static(name), v);
        }
    }
    Ok(out)
}

/// `{base}{path}`, the base's own path kept (an API gateway in front of OpenAI may add one).
fn endpoint(config: &OpenaiConfig, path: &str) -> Result<url::Url, BuildError> {
    let base = config.url.as_str().trim_end_matches('/');
    url::Url::parse(&format!("{base}{path}")).map_err(|e| BuildError(format!("openai.url: {e}")))
}

/// OpenAI's error body, `{"error": {"message", "type", "param", "code"}}`: only `type` and `code`
/// are read (never `message`, which may quote part of the key).
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorField,
}

#[derive(Deserialize)]
struct ErrorField {
    #[serde(rename = "type", default)]
    kind: Option<serde_json::Value>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

/// The words of an OpenAI error: its `code` and `type`, each cut to `[a-z0-9_.-]` and
/// [`MAX_WORD`] characters, so a peer cannot put a sentence (or a key) into a note.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ErrorWords {
    code: Option<String>,
    kind: Option<String>,
}

impl ErrorWords {
    /// The words of `body`, or none when it is not OpenAI's error JSON.
    fn parse(body: &[u8]) -> Self {
        let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) else {
            return Self::default();
        };
        Self {
            code: parsed.error.code.as_ref().and_then(word),
            kind: parsed.error.kind.as_ref().and_then(word),
        }
    }

    /// Reads `response`'s body (at most [`MAX_ERROR_BODY`]) for its words; a body that breaks off
    /// or is larger has none.
    async fn read(response: reqwest::Response) -> Self {
        read_capped(response, MAX_ERROR_BODY)
            .await
            .map_or_else(|_| Self::default(), |body| Self::parse(&body))
    }

    /// True when either word is `w`: OpenAI puts `insufficient_quota` in `type`, in `code`, or in
    /// both, depending on the endpoint and the era.
    fn says(&self, w: &str) -> bool {
        self.code.as_deref() == Some(w) || self.kind.as_deref() == Some(w)
    }

    /// ` (code)` or ` (type)` for a failure or a note; empty without either.
    fn shown(&self) -> String {
        self.code
            .as_ref()
            .or(self.kind.as_ref())
            .map(|w| format!(" ({w})"))
            .unwrap_or_default()
    }
}

/// A JSON string as a short word, or `None`: lowercase letters, digits, `_`, `.` and `-` only.
fn word(v: &serde_json::Value) -> Option<String> {
    let s = v.as_str()?.trim();
    let ok = !s.is_empty()
        && s.len() <= MAX_WORD
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        });
    ok.then(|| s.to_owned())
}

/// A key OpenAI refused (401, 403), as the source's failure: the probe is blind, not OpenAI down.
/// Says which `*_file` to fix (`need`: what key it takes); never quotes OpenAI's message.
fn refused(status: reqwest::StatusCode, words: &ErrorWords, key: &str, need: MsgId) -> Failure {
    Failure::said(
        FailureKind::Status,
        Msg::new(MsgId::OpenaiRefusedKey)
            .arg("status", status.as_u16())
            .arg("code", words.shown())
            .arg("key", key)
            .msg("need", Msg::new(need)),
    )
}

/// A status the probe cannot read OpenAI through (another 4xx, or a 5xx of the costs API): `hint`
/// says which call and the fix, with `{status}` and `{code}` in it.
fn unexpected(status: reqwest::StatusCode, words: &ErrorWords, hint: MsgId) -> Failure {
    Failure::said(
        FailureKind::Status,
        Msg::new(hint)
            .arg("status", status.as_u16())
            .arg("code", words.shown()),
    )
}

/// A redirect, not followed: the key stays with the configured origin.
fn redirected(status: reqwest::StatusCode, from: &url::Url, headers: &HeaderMap) -> Failure {
    let to = headers
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|l| from.join(l).ok())
        .map(|u| u.origin().ascii_serialization());
    let words = Msg::new(MsgId::OpenaiRedirected).arg("status", status.as_u16());
    Failure::said(
        FailureKind::Status,
        match to {
            Some(origin) => words.arg("to", origin),
            None => words.msg("to", Msg::new(MsgId::Elsewhere)),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_words_are_read_from_code_and_type_never_from_the_message() {
        let quota = br#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
        let words = ErrorWords::parse(quota);
        assert!(words.says("insufficient_quota"));
        assert_eq!(words.shown(), " (insufficient_quota)");
        // An older answer has the word in `type` only.
        let old = br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":null}}"#;
        assert!(ErrorWords::parse(old).says("insufficient_quota"));
        let rate = br#"{"error":{"message":"Rate limit reached for gpt-4o in organization org-x on requests per min (RPM): Limit 500, Used 500, Requested 1.","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
        let words = ErrorWords::parse(rate);
        assert!(!words.says("insufficient_quota"));
        assert_eq!(words.shown(), " (rate_limit_exceeded)");
        let key = br#"{"error":{"message":"Incorrect API key provided: sk-proj-****************abcd. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
        assert_eq!(ErrorWords::parse(key).shown(), " (invalid_api_key)");
    }

    #[test]
    fn a_peer_cannot_put_a_sentence_or_a_secret_into_a_word() {
        let body = br#"{"error":{"type":"Bearer sk-SECRET","code":"x y"}}"#;
        assert_eq!(ErrorWords::parse(body), ErrorWords::default());
        let long = format!(r#"{{"error":{{"code":"{}"}}}}"#, "a".repeat(41));
        assert_eq!(ErrorWords::parse(long.as_bytes()), ErrorWords::default());
        assert_eq!(ErrorWords::parse(b"<html>"), ErrorWords::default());
        assert_eq!(
            ErrorWords::parse(br#"{"error":{"code":42}}"#),
            ErrorWords::default()
        );
    }
}
