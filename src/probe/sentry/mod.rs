//! The Sentry probe (`[sentry]`, source `sentry`, off unless a token is set): the configured
//! projects' unresolved issues, their events now against the rest of the day, and the issues first
//! seen after the latest deploy. It is the first-hand evidence the runbook's §2 asks for ("Alerta de
//! Sentry disparado", "Verificar Sentry"; the cause "Bug no código", `errors.bad_deploy`), where the
//! watchdog otherwise infers a bad deploy from an image change and ERROR log lines.
//!
//! Each poll asks, per project, with `Authorization: Bearer <token>` (Sentry API reference,
//! "Authentication"; the token needs `project:read` and `event:read`):
//! - `GET {url}/api/0/projects/{organization}/{project}/releases/?per_page=10` ("Releases › List a
//!   Project's Releases": `[{"version", "dateCreated", "dateReleased", "lastDeploy":
//!   {"dateFinished"}, …}]`, the most recent first): the latest release is the deploy as Sentry
//!   knows it;
//! - `GET {url}/api/0/projects/{organization}/{project}/issues/?query=is:unresolved&statsPeriod=24h`
//!   ("Events & Issues › List a Project's Issues": `[{"id", "shortId", "title", "culprit",
//!   "permalink", "level", "count" (a string), "userCount", "firstSeen", "lastSeen", "stats":
//!   {"24h": [[unix_seconds, events], …]}}]`, hourly buckets), following the `Link` header's
//!   `rel="next"` part while it says `results="true"` ("Paginating Results": `<…?cursor=…>;
//!   rel="next"; results="true"; cursor="1:100:0"`), at most [`MAX_PAGES`] pages of at most
//!   [`MAX_BODY`] each. The cursor is sent as `cursor=` on our own URL, never by following the
//!   link's URL, so the token goes nowhere but the configured origin.
//!
//! Every request of a poll shares one `timeout`. What the answers mean is `reading` (pure).
//!
//! **The token** is a [`crate::secret::Secret`] exposed once, in [`SentryProbe::new`], into a
//! sensitive header value on a client that follows no redirect; it is in no URL, note, failure or
//! `Debug`. Sentry's error bodies (`{"detail": …}`) are never quoted: only the status and our fix.
//!
//! **What fails the source** (rules over it turn unknown, the doctor names the rules it blinds): a
//! host that cannot be reached, no answer within the timeout, a token Sentry refuses (401/403), a
//! project or organization it does not know (404), a 429 or 5xx, a redirect, a body that is not
//! Sentry's format or is over the cap. Sentry is evidence, never the outage itself, so any trouble
//! reading it is blindness, not a reading.
//!
//! **Deploys.** Probes do not know each other, so the probe reads the deploy Sentry knows (a
//! release) and the runbook combines the rest: `sentry.new_since_release` (issues first seen after
//! the latest release) is the strongest evidence for `errors.bad_deploy`; without releases it has
//! no data, and `sentry.new_issues` (first seen within `window`) supports the backend's start or
//! image change that the Docker probe reads (`docker.recent_deploy`), adding nothing on its own.

mod reading;

pub use reading::{TopIssue, top_issues, top_issues_in};

use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, HeaderMap};

use self::reading::{Project, Readings, parse_issues, parse_releases};
use super::http::{bearer, keyed_client, read_capped, reqwest_failure};
use super::{BuildError, Probe};
use crate::clock::Timestamp;
use crate::config::SentryConfig;
use crate::locale::{Msg, MsgId};
use crate::observe::{Failure, FailureKind, Observation};

/// Largest page read: 100 issues with their 24 hourly buckets are about 200 KiB.
pub const MAX_BODY: usize = 1 << 20;

/// Most pages of issues read per project and poll: past them the counts are floors (the note says
/// "at least"), not a failure: a project with hundreds of unresolved issues is still read.
pub const MAX_PAGES: usize = 5;

/// Releases asked for: the latest is among the first few (Sentry lists the newest first).
const RELEASES_PER_PAGE: u32 = 10;

/// Longest cursor followed (Sentry's are like `1733533200000:0:0`).
const MAX_CURSOR: usize = 128;

/// Extra time [`poll_once`](super::poll_once) allows beyond the requests' shared timeout, so the
/// probe's own timeout failure (which says what it was reading) is the one reported.
const POLL_MARGIN: Duration = Duration::from_millis(500);

/// Polls Sentry's web API for the configured projects.
pub struct SentryProbe {
    /// Follows no redirect; requests set their own timeout.
    http: reqwest::Client,
    /// `Authorization: Bearer` (sensitive).
    headers: HeaderMap,
    /// `{url}/api/0/projects/{organization}/`: each project's paths are joined to it.
    base: url::Url,
    projects: Vec<String>,
    interval: Duration,
    /// Bound on the whole poll, every request within it.
    timeout: Duration,
    /// `[sentry] window` in whole hours (validated: 1 to 12).
    window_hours: i64,
}

impl std::fmt::Debug for SentryProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentryProbe")
            .field("base", &self.base.as_str())
            .field("projects", &self.projects)
            .finish_non_exhaustive()
    }
}

impl SentryProbe {
    /// A probe of `config`'s projects; fails when the token cannot be a header value (the error
    /// does not quote it) or the client cannot be built.
    pub fn new(config: &SentryConfig) -> Result<Self, BuildError> {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, bearer(&config.token, "sentry.token")?);
        let root = config.url.as_str().trim_end_matches('/');
        let base = url::Url::parse(&format!("{root}/api/0/projects/{}/", config.organization))
            .map_err(|e| BuildError(format!("sentry.url: {e}")))?;
        Ok(Self {
            http: keyed_client([config.timeout])?,
            headers,
            base,
            projects: config.projects.clone(),
            interval: config.interval,
            timeout: config.timeout,
            window_hours: i64::try_from(config.window.as_secs() / 3600)
                .unwrap_or(1)
                .clamp(1, 12),
        })
    }

    /// One project: its latest release and its unresolved issues, page after page.
    async fn project(&self, slug: &str, deadline: Instant) -> Result<Project, Failure> {
        let releases = self
            .get(
                slug,
                "releases/",
                &[("per_page", RELEASES_PER_PAGE.to_string())],
                deadline,
            )
            .await?;
        let release = parse_releases(&releases.0)?;
        let mut issues = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = vec![
                ("query", "is:unresolved".to_owned()),
                ("statsPeriod", "24h".to_owned()),
            ];
            if let Some(c) = cursor.take() {
                query.push(("cursor", c));
            }
            let (body, next) = self.get(slug, "issues/", &query, deadline).await?;
            issues.extend(parse_issues(&body)?);
            match next {
                Some(c) => cursor = Some(c),
                None => {
                    return Ok(Project {
                        release,
                        issues,
                        capped: false,
                    });
                }
            }
        }
        Ok(Project {
            release,
            issues,
            capped: true,
        })
    }

    /// `GET {base}{slug}/{path}?{query}` within the deadline: the body, and the next page's cursor
    /// when the `Link` header says there are more results.
    async fn get(
        &self,
        slug: &str,
        path: &str,
        query: &[(&str, String)],
        deadline: Instant,
    ) -> Result<(Vec<u8>, Option<String>), Failure> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.timed_out());
        }
        let mut url = self.base.join(&format!("{slug}/{path}")).map_err(|e| {
            Failure::said(
                FailureKind::Other,
                Msg::new(MsgId::SentryBadUrl).peer("error", e),
            )
        })?;
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        let response = self
            .http
            .get(url)
            .headers(self.headers.clone())
            .timeout(left)
            .send()
            .await
            .map_err(|e| {
                let f = reqwest_failure(&e);
                Failure::said(
                    f.kind,
                    Msg::new(MsgId::SentryUnreadable).msg("failure", f.reader_words()),
                )
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(refusal(status, slug, response.headers()));
        }
        let next = next_cursor(response.headers());
        let body = read_capped(response, MAX_BODY).await.map_err(|f| {
            Failure::said(
                f.kind,
                Msg::new(MsgId::SentryPathOf)
                    .arg("path", path)
                    .arg("slug", slug)
                    .msg("failure", f.reader_words()),
            )
        })?;
        Ok((body, next))
    }

    fn timed_out(&self) -> Failure {
        Failure::said(
            FailureKind::Timeout,
            Msg::new(MsgId::SentryLate).duration("timeout", self.timeout),
        )
    }
}

impl Probe for SentryProbe {
    fn source(&self) -> &str {
        "sentry"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn timeout(&self) -> Duration {
        self.timeout + POLL_MARGIN
    }

    async fn poll(&mut self, now: Timestamp) -> Result<Vec<Observation>, Failure> {
        let deadline = Instant::now() + self.timeout;
        let mut projects = Vec::with_capacity(self.projects.len());
        for slug in &self.projects {
            let p = self.project(slug, deadline).await.map_err(|f| {
                if f.kind == FailureKind::Timeout {
                    self.timed_out()
                } else {
                    f
                }
            })?;
            projects.push(p);
        }
        let now = now.as_unix_millis().div_euclid(1000);
        Ok(Readings::of(&projects, now, self.window_hours).observe())
    }
}

/// A status other than 2xx as the source's failure, with the fix; Sentry's words are not quoted.
fn refusal(status: reqwest::StatusCode, slug: &str, headers: &HeaderMap) -> Failure {
    let code = status.as_u16();
    let words = match code {
        300..=399 => {
            let to = headers
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| url::Url::parse(l).ok())
                .map(|u| u.origin().ascii_serialization());
            let words = Msg::new(MsgId::SentryRedirected).arg("status", code);
            match to {
                Some(origin) => words.arg("to", origin),
                None => words.msg("to", Msg::new(MsgId::Elsewhere)),
            }
        }
        401 | 403 => Msg::new(MsgId::SentryRefusedToken).arg("status", code),
        404 => Msg::new(MsgId::SentryUnknownProject)
            .arg("status", code)
            .arg("slug", format!("{slug:?}")),
        429 => Msg::new(MsgId::SentryRateLimited).arg("status", code),
        _ => Msg::new(MsgId::SentryNoAnswer).arg("status", code),
    };
    Failure::said(FailureKind::Status, words)
}

/// The cursor of the `Link` header's `rel="next"` part when it says `results="true"`; `None` on the
/// last page, without a header, or with a cursor that is not one.
fn next_cursor(headers: &HeaderMap) -> Option<String> {
    let link = headers.get(reqwest::header::LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let attrs: Vec<(&str, &str)> = part
            .split(';')
            .skip(1)
            .filter_map(|a| {
                let (k, v) = a.split_once('=')?;
                Some((k.trim(), v.trim().trim_matches('"')))
            })
            .collect();
        let has = |k: &str, v: &str| attrs.iter().any(|(a, b)| *a == k && *b == v);
        if !(has("rel", "next") && has("results", "true")) {
            return None;
        }
        let cursor = attrs.iter().find(|(k, _)| *k == "cursor")?.1;
        (!cursor.is_empty()
            && cursor.len() <= MAX_CURSOR
            && cursor
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'-' | b'_' | b'.')))
        .then(|| cursor.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            reqwest::header::LINK,
            reqwest::header::HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    #[test]
    fn the_link_header_gives_the_next_cursor_only_while_there_are_results() {
        let more = r#"<https://sentry.io/api/0/projects/o/p/issues/?&cursor=1733533200000:0:1>; rel="previous"; results="false"; cursor="1733533200000:0:1", <https://sentry.io/api/0/projects/o/p/issues/?&cursor=1733533200000:100:0>; rel="next"; results="true"; cursor="1733533200000:100:0""#;
        assert_eq!(
            next_cursor(&link(more)).as_deref(),
            Some("1733533200000:100:0")
        );
        let last = more.replace(r#"results="true""#, r#"results="false""#);
        assert_eq!(next_cursor(&link(&last)), None);
        assert_eq!(next_cursor(&HeaderMap::new()), None);
        let odd = r#"<x>; rel="next"; results="true"; cursor="a&b=c""#;
        assert_eq!(next_cursor(&link(odd)), None, "a cursor that is not one");
    }

    #[test]
    fn a_refusal_names_the_fix_and_never_sentrys_words() {
        let f = refusal(
            reqwest::StatusCode::UNAUTHORIZED,
            "backend",
            &HeaderMap::new(),
        );
        assert!(f.detail.contains("token_file"), "{}", f.detail);
        let f = refusal(reqwest::StatusCode::NOT_FOUND, "backend", &HeaderMap::new());
        assert!(f.detail.contains("\"backend\""), "{}", f.detail);
    }
}
