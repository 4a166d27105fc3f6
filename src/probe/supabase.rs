//! The Supabase project probe: `GET {url}/auth/v1/health` (GoTrue) and `GET {url}/rest/v1/`
//! (PostgREST), concurrently, each with the project's key in `apikey` and `Authorization: Bearer`.
//!
//! Supabase is the service the watchdog watches, so an endpoint that fails is the **symptom**, not a
//! blind spot: an HTTP error gives `supabase.<endpoint>_ok = false` with its status, and a timeout or a
//! reset gives `_ok = false` with status 0 and no latency (*no data*: there was no answer to time).
//! The **source fails** (`Err(connect)`) only when *neither* endpoint could even be connected to:
//! that most likely means our own network or DNS is down, and saying "Supabase is down" would be a
//! guess. A timeout after connecting is an answer of sorts (Supabase accepted and hung) and counts as
//! the symptom.
//!
//! Outcomes per endpoint: answered → `_ok` (2xx, and its body did not stall), `_status`, `_latency_seconds`
//! values; no answer → `_ok = false`, `_status = 0`, `_latency_seconds` no data with the reason.
//! No key is ever *unknown* while the source stands: a failing endpoint is itself the reading.
//!
//! The key is a [`Secret`](crate::secret::Secret): it is exposed once, in [`SupabaseProbe::new`], to
//! build the two header values, which are marked sensitive (HTTP/2 never indexes them, `Debug` prints
//! `Sensitive`). It is never in a URL, a log line, a failure detail or an observation; reqwest's errors
//! carry the URL but never headers.
//!
//! The key must not follow a redirect: the probe's own client ([`keyed_client`]) follows none, so a
//! 3xx is what the probe sees. It reports it as the endpoint failing (`_ok = false` with the 3xx as
//! `_status`), noting the origin it was sent to and that the request was not sent there. The
//! `Location` is never requested, so the key never leaves the configured origin (not to another
//! host, not to `http://`).

use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};

use super::http::{keyed_client, read_capped, reqwest_failure};
use super::{BuildError, Probe};
use crate::clock::Timestamp;
use crate::config::SupabaseConfig;
use crate::locale::{Msg, MsgId};
use crate::observe::{Failure, FailureKind, Key, Observation, Outcome};

/// Most of a body read from either endpoint; only the status matters. The body is read (up to this)
/// so the latency covers the whole answer and the connection can be reused, then dropped.
pub const MAX_BODY: usize = 64 << 10;

/// Extra time [`poll_once`](super::poll_once) allows beyond the requests' own timeout.
const POLL_MARGIN: Duration = Duration::from_millis(500);

/// Polls one Supabase project.
pub struct SupabaseProbe {
    config: SupabaseConfig,
    /// The probe's own client, which follows no redirect ([`keyed_client`]); requests set their
    /// own timeout.
    http: reqwest::Client,
    /// `apikey` and `Authorization`, both sensitive.
    headers: HeaderMap,
    auth_url: url::Url,
    rest_url: url::Url,
}

impl std::fmt::Debug for SupabaseProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupabaseProbe")
            .field("url", &crate::redact_url(&self.config.url))
            .finish_non_exhaustive()
    }
}

/// One of the two endpoints.
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Auth,
    Rest,
}

impl Endpoint {
    fn keys(self) -> [&'static str; 3] {
        match self {
            Self::Auth => [
                "supabase.auth_ok",
                "supabase.auth_status",
                "supabase.auth_latency_seconds",
            ],
            Self::Rest => [
                "supabase.rest_ok",
                "supabase.rest_status",
                "supabase.rest_latency_seconds",
            ],
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::Auth => "/auth/v1/health",
            Self::Rest => "/rest/v1/",
        }
    }
}

/// What one endpoint did.
#[derive(Debug)]
enum Answer {
    /// An HTTP status came back; `ok` when it is 2xx and the body came in full (or up to the cap)
    /// within the timeout.
    Status {
        code: u16,
        ok: bool,
        latency: Duration,
    },
    /// A redirect, not followed (the key stays with the configured origin): the 3xx, and the origin
    /// its `Location` names (`none` without a usable one).
    Redirected {
        code: u16,
        to: String,
        latency: Duration,
    },
    /// No HTTP answer at all.
    Nothing(Failure),
}

impl SupabaseProbe {
    /// A probe of the project `config`, with its own client that follows no redirect. Fails when the
    /// key cannot be an HTTP header value (not printable ASCII; the error does not quote it) or the
    /// client cannot be built.
    pub fn new(config: SupabaseConfig) -> Result<Self, BuildError> {
        let http = keyed_client([config.timeout])?;
        let bad_key = || {
            BuildError(
                "supabase.api_key is not a valid HTTP header value (printable ASCII only)".into(),
            )
        };
        let key = config.api_key.expose();
        let mut apikey = HeaderValue::from_str(key).map_err(|_| bad_key())?;
        apikey.set_sensitive(true);
        let mut bearer = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| bad_key())?;
        bearer.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(HeaderName::from_static("apikey"), apikey);
        headers.insert(AUTHORIZATION, bearer);

        let base = config.url.as_str().trim_end_matches('/');
        let join = |path: &str| {
            url::Url::parse(&format!("{base}{path}"))
                .map_err(|e| BuildError(format!("supabase.url: {e}")))
        };
        Ok(Self {
            auth_url: join(Endpoint::Auth.path())?,
            rest_url: join(Endpoint::Rest.path())?,
            config,
            http,
            headers,
        })
    }

    async fn check(&self, endpoint: Endpoint) -> Answer {
        let url = match endpoint {
            Endpoint::Auth => &self.auth_url,
            Endpoint::Rest => &self.rest_url,
        };
        let started = Instant::now();
        let response = match self
            .http
            .get(url.clone())
            .headers(self.headers.clone())
            .timeout(self.config.timeout)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return Answer::Nothing(reqwest_failure(&e)),
        };
        let code = response.status();
        if code.is_redirection() {
            let to = redirect_origin(url, response.headers());
            return Answer::Redirected {
                code: code.as_u16(),
                to,
                latency: started.elapsed(),
            };
        }
        // The body is read (to time the whole answer) but not kept. A large one is fine: `/rest/v1/`
        // is the OpenAPI description of the whole schema, and reading stops at the cap. A body that
        // breaks off or stalls past the timeout is not a healthy answer.
        let body_ok = match read_capped(response, MAX_BODY).await {
            Ok(_) => true,
            Err(f) => f.kind == FailureKind::TooLarge,
        };
        Answer::Status {
            code: code.as_u16(),
            ok: code.is_success() && body_ok,
            latency: started.elapsed(),
        }
    }
}

impl Probe for SupabaseProbe {
    fn source(&self) -> &str {
        "supabase"
    }

    fn interval(&self) -> Duration {
        self.config.interval
    }

    fn timeout(&self) -> Duration {
        self.config.timeout + POLL_MARGIN
    }

    async fn poll(&mut self, _now: Timestamp) -> Result<Vec<Observation>, Failure> {
        let (auth, rest) = tokio::join!(self.check(Endpoint::Auth), self.check(Endpoint::Rest));
        if let (Answer::Nothing(a), Answer::Nothing(r)) = (&auth, &rest)
            && a.kind == FailureKind::Connect
            && r.kind == FailureKind::Connect
        {
            return Err(Failure::said(
                FailureKind::Connect,
                Msg::new(MsgId::SupabaseUnreachable)
                    .arg("auth", Endpoint::Auth.path())
                    .msg("auth_failure", a.reader_words())
                    .arg("rest", Endpoint::Rest.path())
                    .msg("rest_failure", r.reader_words()),
            ));
        }
        let mut out = Vec::with_capacity(6);
        observe(&mut out, Endpoint::Auth, auth);
        observe(&mut out, Endpoint::Rest, rest);
        Ok(out)
    }
}

/// The origin (`scheme://host:port`) a redirect's `Location` names, resolved against `from`; only
/// the origin, since the rest of a URL a peer chose may carry anything. `none` without one.
fn redirect_origin(from: &url::Url, headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|l| from.join(l).ok())
        .map_or_else(|| "none".to_owned(), |u| u.origin().ascii_serialization())
}

/// The three observations of one endpoint.
fn observe(out: &mut Vec<Observation>, endpoint: Endpoint, answer: Answer) {
    let [ok, status, latency] = endpoint.keys().map(Key::new);
    match answer {
        Answer::Status {
            code,
            ok: good,
            latency: took,
        } => {
            out.push(Observation::boolean(ok, good));
            out.push(Observation::number(status, f64::from(code)));
            out.push(Observation::number(latency, took.as_secs_f64()));
        }
        Answer::Redirected {
            code,
            to,
            latency: took,
        } => {
            out.push(
                Observation::boolean(ok, false)
                    .with_note(Msg::new(MsgId::Redirected).arg("code", code).peer("to", to)),
            );
            out.push(Observation::number(status, f64::from(code)));
            out.push(Observation::number(latency, took.as_secs_f64()));
        }
        Answer::Nothing(f) => {
            out.push(Observation::boolean(ok, false));
            out.push(Observation::number(status, 0.0));
            out.push(Observation::new(
                latency,
                Outcome::NoData(Msg::new(MsgId::NoAnswer).peer("failure", f)),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::observe::Value;

    proptest! {
        #![proptest_config(crate::mutate::cases(256))]

        /// The probe reads no body, only the status and the time: any answer of either endpoint is its
        /// three observations, with the status as given and a finite latency.
        #[test]
        fn prop_any_answer_is_three_observations(
            code in any::<u16>(),
            ok in any::<bool>(),
            nanos in any::<u64>(),
            auth in any::<bool>(),
        ) {
            let endpoint = if auth { Endpoint::Auth } else { Endpoint::Rest };
            let mut out = Vec::new();
            let latency = Duration::from_nanos(nanos);
            observe(&mut out, endpoint, Answer::Status { code, ok, latency });
            prop_assert_eq!(out.len(), 3);
            prop_assert_eq!(&out[0].outcome, &Outcome::Value(Value::Bool(ok)));
            prop_assert_eq!(&out[1].outcome, &Outcome::Value(Value::Number(f64::from(code))));
            prop_assert_eq!(
                &out[2].outcome,
                &Outcome::Value(Value::Number(latency.as_secs_f64()))
            );
        }
    }
}
