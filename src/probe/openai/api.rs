//! The API probe (source `openai.api`): `GET {url}/v1/models` with the team's key, timed.
//!
//! Outcomes (see the module above for what fails the source):
//!
//! | OpenAI answers | `ok` | `status` | `latency_seconds` | `error` |
//! |---|---|---|---|---|
//! | 2xx with a models list | true | the code | the time | `none` |
//! | 429 `insufficient_quota` | false | 429 | the time | `insufficient_quota` |
//! | 429, any other code | false | 429 | the time | `rate_limit` |
//! | 5xx | false | the code | the time | `server_error` |
//!
//! **A hang fails the source**, as the acceptance list of issue 16 asks: connected, and no answer
//! (or no whole body) within `timeout`, is the failure `timeout` (`OpenaiSilent`), so the source is
//! failing for the doctor, the blind spots, `watchdog.blind` and `/metrics` like any other, and the
//! rules over its readings turn unknown. It is still OpenAI's trouble, not ours: the runbook's
//! "OpenAI lento" reads it with `{ source_failing = "openai.api", reason = "timeout" }`. A host we
//! cannot connect to at all (refused, or the connect timeout) is our network's trouble as likely as
//! OpenAI's, so it fails as `connect`, which that line does not take as a hang.

use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde::Deserialize;

use super::{
    ErrorWords, POLL_MARGIN, endpoint, headers, malformed, redirected, refused, unexpected,
};
use crate::clock::Timestamp;
use crate::config::OpenaiConfig;
use crate::locale::{Msg, MsgId};
use crate::observe::{Failure, FailureKind, Key, Observation};
use crate::probe::http::{keyed_client, malformed_because, read_capped, reqwest_failure};
use crate::probe::{BuildError, Probe};

/// Largest models list read: about a hundred models is 10 KiB; a list a hundred times longer is
/// not OpenAI's.
pub const MAX_BODY: usize = 1 << 20;

/// Polls OpenAI's API with the team's key.
pub struct ApiProbe {
    /// Follows no redirect; requests set their own timeout.
    http: reqwest::Client,
    /// `Authorization` (sensitive), `OpenAI-Organization`, `OpenAI-Project`.
    headers: HeaderMap,
    /// `{url}/v1/models`.
    url: url::Url,
    /// `[openai] interval`.
    interval: Duration,
    /// Bound on the request, body included; a hang past it is the `timeout` failure, and the poll's
    /// own bound is this plus a margin, so the probe's own words (connected, silent) are the ones
    /// reported.
    timeout: Duration,
}

impl std::fmt::Debug for ApiProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiProbe")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

/// What OpenAI did, before it is turned into observations (in one place, [`observe`]).
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    /// A models list.
    Models {
        /// The 2xx status.
        status: u16,
        /// From sending to the end of the body.
        latency: Duration,
        /// How many models it listed (the `ok` note).
        models: usize,
    },
    /// OpenAI's own trouble: a 429 or a 5xx, with its class and OpenAI's words.
    Trouble {
        /// 429 or 5xx.
        status: u16,
        /// From sending to the end of the (error) body.
        latency: Duration,
        /// `rate_limit`, `insufficient_quota` or `server_error`: the `error` reading.
        class: &'static str,
        /// OpenAI's `code`/`type`, for the note.
        words: ErrorWords,
    },
}

impl ApiProbe {
    /// A probe of `config`'s API with its `api_key`; fails when the key is unset or cannot be a
    /// header value (the error does not quote it), or the client cannot be built.
    pub fn new(config: &OpenaiConfig) -> Result<Self, BuildError> {
        let key = config
            .api_key
            .as_ref()
            .ok_or_else(|| BuildError("openai.api_key is not set".into()))?;
        Ok(Self {
            http: keyed_client([config.timeout])?,
            headers: headers(key, config, true, "openai.api_key")?,
            url: endpoint(config, "/v1/models")?,
            interval: config.interval,
            timeout: config.timeout,
        })
    }

    /// One request, classified.
    async fn ask(&self) -> Result<Answer, Failure> {
        let started = Instant::now();
        let response = match self
            .http
            .get(self.url.clone())
            .headers(self.headers.clone())
            .timeout(self.timeout)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) if e.is_timeout() && !e.is_connect() => return Err(self.silent()),
            Err(e) => {
                let f = reqwest_failure(&e);
                // A connect timeout is a connect error too: not reaching OpenAI is not OpenAI
                // hanging, and the runbook's hang line must not take it for one.
                let kind = if e.is_connect() {
                    FailureKind::Connect
                } else {
                    f.kind
                };
                return Err(Failure::said(
                    kind,
                    Msg::new(MsgId::OpenaiUnreachable).msg("failure", f.reader_words()),
                ));
            }
        };
        let status = response.status();
        let code = status.as_u16();
        if status.is_redirection() {
            return Err(redirected(status, &self.url, response.headers()));
        }
        if status.is_success() {
            let body = match read_capped(response, MAX_BODY).await {
                Ok(b) => b,
                Err(f) if f.kind == FailureKind::Timeout => return Err(self.silent()),
                Err(f) => return Err(f),
            };
            let models = parse_models(&body)?;
            return Ok(Answer::Models {
                status: code,
                latency: started.elapsed(),
                models,
            });
        }
        // An error answer: its body is read for OpenAI's words (and to time the whole answer).
        let words = ErrorWords::read(response).await;
        let latency = started.elapsed();
        match code {
            // OpenAI's own trouble is the reading: 429s told apart by the words, 5xx alike.
            429 => Ok(Answer::Trouble {
                status: code,
                latency,
                class: if words.says("insufficient_quota") {
                    "insufficient_quota"
                } else {
                    "rate_limit"
                },
                words,
            }),
            500..=599 => Ok(Answer::Trouble {
                status: code,
                latency,
                class: "server_error",
                words,
            }),
            // Our key, not OpenAI: the probe is blind until the key is fixed.
            401 | 403 => Err(refused(status, &words, "api_key", MsgId::OpenaiNeedModels)),
            // Another 4xx: our request or `url` is wrong (a path OpenAI does not serve, a proxy).
            _ => Err(unexpected(status, &words, MsgId::OpenaiRefusedRequest)),
        }
    }
}

impl ApiProbe {
    /// Connected, and no whole answer within the timeout: OpenAI hangs. The `timeout` failure
    /// the runbook's "OpenAI lento" reads (`reason = "timeout"`).
    fn silent(&self) -> Failure {
        Failure::said(
            FailureKind::Timeout,
            Msg::new(MsgId::OpenaiSilent).duration("timeout", self.timeout),
        )
    }
}

impl Probe for ApiProbe {
    fn source(&self) -> &str {
        "openai.api"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn timeout(&self) -> Duration {
        self.timeout + POLL_MARGIN
    }

    async fn poll(&mut self, _now: Timestamp) -> Result<Vec<Observation>, Failure> {
        self.ask().await.map(observe)
    }
}

/// `GET /v1/models`' answer: only its shape is checked, and its models counted.
#[derive(Deserialize)]
struct ModelList {
    object: String,
    data: Vec<Model>,
}

#[derive(Deserialize)]
struct Model {
    #[allow(dead_code)]
    id: String,
}

/// The number of models in a models list, or why the body is not one.
fn parse_models(body: &[u8]) -> Result<usize, Failure> {
    let what = || Msg::new(MsgId::OpenaiModelsList);
    let list: ModelList = serde_json::from_slice(body).map_err(|e| malformed(body, what(), &e))?;
    if list.object != "list" {
        return Err(malformed_because(
            body,
            what(),
            Msg::new(MsgId::OpenaiObjectNotList)
                .peer("object", crate::probe::truncate(&list.object, 40)),
        ));
    }
    Ok(list.data.len())
}

/// The four observations of one answer, with their notes: the one place this probe words them.
fn observe(answer: Answer) -> Vec<Observation> {
    let [ok, status, latency, error] = [
        "openai.api.ok",
        "openai.api.status",
        "openai.api.latency_seconds",
        "openai.api.error",
    ]
    .map(Key::new);
    match answer {
        Answer::Models {
            status: code,
            latency: took,
            models,
        } => vec![
            Observation::boolean(ok, true)
                .with_note(Msg::new(MsgId::OpenaiModels).arg("n", models)),
            Observation::number(status, f64::from(code)),
            Observation::number(latency, took.as_secs_f64()),
            Observation::text(error, "none"),
        ],
        Answer::Trouble {
            status: code,
            latency: took,
            class,
            words,
        } => vec![
            Observation::boolean(ok, false),
            Observation::number(status, f64::from(code)),
            Observation::number(latency, took.as_secs_f64()),
            Observation::text(error, class).with_note(
                Msg::new(MsgId::OpenaiHttp)
                    .arg("status", code)
                    .arg("code", words.shown()),
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::observe::{Outcome, Value};

    #[test]
    fn parses_the_models_list_of_the_api_reference() {
        let body = br#"{"object":"list","data":[{"id":"gpt-4o-mini","object":"model","created":1721172741,"owned_by":"system"},{"id":"text-embedding-3-small","object":"model","created":1705948997,"owned_by":"system"}]}"#;
        assert_eq!(parse_models(body).unwrap(), 2);
        let html = parse_models(b"<html><body>Sign in</body></html>").unwrap_err();
        assert_eq!(html.kind, FailureKind::Malformed);
        assert!(html.detail.contains("HTML"), "{}", html.detail);
        let other = parse_models(br#"{"object":"page","data":[]}"#).unwrap_err();
        assert!(other.detail.contains("«page»"), "{}", other.detail);
    }

    fn text(obs: &[Observation], name: &str) -> Option<Value> {
        obs.iter()
            .find(|o| o.key.name == name)
            .and_then(|o| match &o.outcome {
                Outcome::Value(v) => Some(v.clone()),
                _ => None,
            })
    }

    proptest! {
        #![proptest_config(crate::mutate::cases(256))]

        /// Any body is a models list or a short, malformed-kind refusal.
        #[test]
        fn prop_any_body_is_a_list_or_refused_briefly(body in prop::collection::vec(any::<u8>(), 0..400)) {
            if let Err(f) = parse_models(&body) {
                prop_assert_eq!(f.kind, FailureKind::Malformed);
                prop_assert!(f.detail.chars().count() <= 300, "{}", f.detail);
            }
        }

        /// Every answer is the four readings, the error class one of the catalogue's words.
        #[test]
        fn prop_every_answer_is_four_readings(code in 100u16..600, nanos in any::<u32>(), quota in any::<bool>()) {
            let words = ErrorWords {
                code: quota.then(|| "insufficient_quota".to_owned()),
                kind: None,
            };
            let class = if quota { "insufficient_quota" } else { "server_error" };
            let obs = observe(Answer::Trouble {
                status: code,
                latency: Duration::from_nanos(u64::from(nanos)),
                class,
                words,
            });
            prop_assert_eq!(obs.len(), 4);
            prop_assert_eq!(text(&obs, "openai.api.error"), Some(Value::Text(class.into())));
            prop_assert_eq!(text(&obs, "openai.api.ok"), Some(Value::Bool(false)));
        }
    }
}
