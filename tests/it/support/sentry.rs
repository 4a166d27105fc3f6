//! A fake Sentry web API, in-process: `GET /api/0/projects/{org}/{project}/releases/` and
//! `GET /api/0/projects/{org}/{project}/issues/`, in the formats of Sentry's API reference ("List a
//! Project's Releases", "List a Project's Issues", "Paginating Results") and its example responses.
//!
//! The issues are the test's, each with events per hour over the last 24 h ([`FakeIssue`]); the
//! fake writes their hourly `stats["24h"]` from the wall clock (24 buckets ending with the current
//! hour, as Sentry's), `count` as a string, and pages the list by `page_size` with Sentry's `Link`
//! header (`rel="next"; results="true"; cursor="0:N:0"`). Like Sentry, it answers 401 to a request
//! without the right token and 404 for an unknown organization or project; unlike Sentry, its 401
//! quotes the whole header it received, so a probe that quoted Sentry's words would leak it. A
//! scenario switched at any time makes both endpoints hang, send HTML, send 2 MiB, or answer a
//! status. It records every request's path, query and `Authorization`.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;

use super::saas::{Served, wait_unless_hang};

/// Size of the oversize bodies (the probe reads at most 1 MiB a page).
pub const HUGE: usize = 2 << 20;

/// What both endpoints do.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Their usual answer.
    Ok,
    /// Accepts the request and never answers.
    Hang,
    /// `200` with an HTML page (a login wall).
    Garbage,
    /// `200`, a [`HUGE`] JSON body.
    Huge,
    /// This status with Sentry's `{"detail": …}` body.
    Status(u16),
}

/// One unresolved issue of the fake project.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeIssue {
    /// `shortId`, also the `id` and the permalink's last part.
    pub short_id: String,
    pub title: String,
    /// Seconds before now it was first seen.
    pub age_secs: i64,
    /// Events each hour of the day but the last two.
    pub per_hour: u64,
    /// Events in the previous hour and in the current one so far.
    pub recent_per_hour: u64,
}

impl FakeIssue {
    /// An issue first seen `age_secs` ago, `per_hour` events an hour all day.
    pub fn steady(short_id: &str, title: &str, age_secs: i64, per_hour: u64) -> Self {
        Self {
            short_id: short_id.into(),
            title: title.into(),
            age_secs,
            per_hour,
            recent_per_hour: per_hour,
        }
    }
}

/// One request received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
}

#[derive(Debug, Clone)]
struct Data {
    issues: Vec<FakeIssue>,
    /// Releases: version and seconds before now it was released, the newest first.
    releases: Vec<(String, i64)>,
    page_size: usize,
}

#[derive(Clone)]
struct AppState {
    token: Arc<str>,
    organization: Arc<str>,
    project: Arc<str>,
    answer: watch::Receiver<Answer>,
    data: Arc<Mutex<Data>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// A running fake Sentry; stops on drop.
pub struct FakeSentry {
    answer: watch::Sender<Answer>,
    data: Arc<Mutex<Data>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    served: Served,
}

impl FakeSentry {
    /// Starts on `127.0.0.1:<ephemeral>` serving one project of one organization, accepting
    /// `token`, with no issues and no releases.
    pub async fn start(token: &str, organization: &str, project: &str) -> Self {
        Self::start_on(0, token, organization, project).await
    }

    /// Starts on `127.0.0.1:port` (0: ephemeral). Panics when the port is taken.
    pub async fn start_on(port: u16, token: &str, organization: &str, project: &str) -> Self {
        let (answer_tx, answer_rx) = watch::channel(Answer::Ok);
        let data = Arc::new(Mutex::new(Data {
            issues: Vec::new(),
            releases: Vec::new(),
            page_size: 100,
        }));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/api/0/projects/{org}/{project}/releases/", get(releases))
            .route("/api/0/projects/{org}/{project}/issues/", get(issues))
            .with_state(AppState {
                token: token.into(),
                organization: organization.into(),
                project: project.into(),
                answer: answer_rx,
                data: data.clone(),
                seen: seen.clone(),
            });
        let served = Served::start(port, app).await;
        Self {
            answer: answer_tx,
            data,
            seen,
            served,
        }
    }

    /// Sentry's base, `http://127.0.0.1:port` (the probe adds `/api/0/…`).
    pub fn url(&self) -> url::Url {
        self.served.url("")
    }

    /// What both endpoints do from now on (releasing hanging requests).
    pub fn set(&self, answer: Answer) {
        self.answer.send_replace(answer);
    }

    /// The unresolved issues from now on.
    pub fn set_issues(&self, issues: Vec<FakeIssue>) {
        self.data.lock().unwrap().issues = issues;
    }

    /// The releases from now on: version and how long ago, the newest first.
    pub fn set_releases(&self, releases: &[(&str, i64)]) {
        self.data.lock().unwrap().releases = releases
            .iter()
            .map(|(v, a)| ((*v).to_owned(), *a))
            .collect();
    }

    /// Issues per page from now on.
    pub fn set_page_size(&self, n: usize) {
        self.data.lock().unwrap().page_size = n.max(1);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn json() -> [(header::HeaderName, &'static str); 1] {
    [(header::CONTENT_TYPE, "application/json")]
}

fn detail(status: StatusCode, text: &str) -> Response {
    (
        status,
        json(),
        serde_json::json!({ "detail": text }).to_string(),
    )
        .into_response()
}

/// Records the request; Sentry's refusal when the token, organization or project is wrong, or the
/// scenario's answer other than `Ok`; `None` for the endpoint's own answer.
async fn check(
    state: &AppState,
    org: &str,
    project: &str,
    path: String,
    query: String,
    headers: &HeaderMap,
) -> Option<Response> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    state.seen.lock().unwrap().push(Seen {
        path,
        query,
        authorization: authorization.clone(),
    });
    if authorization.as_deref() != Some(&*format!("Bearer {}", state.token)) {
        // Sentry says "Invalid token"; the fake quotes what it got, to catch a probe that quotes.
        let got = authorization.unwrap_or_default();
        return Some(detail(
            StatusCode::UNAUTHORIZED,
            &format!("Invalid token header: {got}"),
        ));
    }
    if org != &*state.organization || project != &*state.project {
        return Some(detail(
            StatusCode::NOT_FOUND,
            "The requested resource does not exist",
        ));
    }
    let Some(answer) = wait_unless_hang(state.answer.clone(), |a| *a == Answer::Hang).await else {
        return Some(StatusCode::SERVICE_UNAVAILABLE.into_response());
    };
    match answer {
        Answer::Ok => None,
        Answer::Garbage => Some(
            (
                [(header::CONTENT_TYPE, "text/html")],
                "<!DOCTYPE html><html><body><h1>Sign in to Sentry</h1></body></html>",
            )
                .into_response(),
        ),
        Answer::Huge => {
            let mut body = String::with_capacity(HUGE + 64);
            body.push_str(r#"[{"padding":""#);
            body.push_str(&"x".repeat(HUGE));
            body.push_str(r#""}]"#);
            Some((json(), body).into_response())
        }
        Answer::Status(code) => Some(detail(
            StatusCode::from_u16(code).expect("a valid HTTP status"),
            "Internal Error",
        )),
        Answer::Hang => unreachable!("waited out above"),
    }
}

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs(),
    )
    .expect("a time")
}

fn iso(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(secs).unwrap());
    humantime::format_rfc3339_micros(t).to_string()
}

async fn releases(
    State(state): State<AppState>,
    Path((org, project)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let path = format!("/api/0/projects/{org}/{project}/releases/");
    if let Some(r) = check(
        &state,
        &org,
        &project,
        path,
        query.unwrap_or_default(),
        &headers,
    )
    .await
    {
        return r;
    }
    let now = now();
    let data = state.data.lock().unwrap().clone();
    let body: Vec<_> = data
        .releases
        .iter()
        .enumerate()
        .map(|(i, (version, ago))| {
            serde_json::json!({
                "id": i + 1,
                "version": version,
                "shortVersion": version,
                "ref": null,
                "url": null,
                // Created by CI a little before it went live.
                "dateCreated": iso(now - ago - 300),
                "dateReleased": iso(now - ago),
                "lastDeploy": null,
                "newGroups": 0,
                "commitCount": 0,
                "projects": [{"slug": project, "name": project}]
            })
        })
        .collect();
    (json(), serde_json::Value::Array(body).to_string()).into_response()
}

async fn issues(
    State(state): State<AppState>,
    Path((org, project)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let raw = query.unwrap_or_default();
    let path = format!("/api/0/projects/{org}/{project}/issues/");
    if let Some(r) = check(&state, &org, &project, path, raw.clone(), &headers).await {
        return r;
    }
    let from: usize = url::form_urlencoded::parse(raw.as_bytes())
        .find(|(k, _)| k == "cursor")
        .and_then(|(_, v)| v.split(':').nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    let now = now();
    let floor = now - now.rem_euclid(3600);
    let data = state.data.lock().unwrap().clone();
    let page: Vec<_> = data
        .issues
        .iter()
        .skip(from)
        .take(data.page_size)
        .map(|i| {
            let stats: Vec<_> = (0..24)
                .map(|k| {
                    let t = floor - (23 - k) * 3600;
                    let n = if t >= floor - 3600 {
                        i.recent_per_hour
                    } else {
                        i.per_hour
                    };
                    serde_json::json!([t, n])
                })
                .collect();
            let total = i.per_hour * 22 + i.recent_per_hour * 2;
            serde_json::json!({
                "annotations": [],
                "assignedTo": null,
                "count": total.to_string(),
                "culprit": "app.api.handlers in run",
                "firstSeen": iso(now - i.age_secs),
                "hasSeen": false,
                "id": i.short_id,
                "isBookmarked": false,
                "isPublic": false,
                "isSubscribed": true,
                "lastSeen": iso(now),
                "level": "error",
                "logger": null,
                "metadata": {"title": i.title},
                "numComments": 0,
                "permalink": format!("https://harven.sentry.io/issues/{}/", i.short_id),
                "project": {"id": "2", "name": project, "slug": project},
                "shareId": null,
                "shortId": i.short_id,
                "stats": {"24h": stats},
                "status": "unresolved",
                "statusDetails": {},
                "subscriptionDetails": null,
                "title": i.title,
                "type": "error",
                "userCount": 3
            })
        })
        .collect();
    let next = from + data.page_size;
    let more = next < data.issues.len();
    let base = format!(
        "http://{}/api/0/projects/{org}/{project}/issues/",
        "sentry.invalid"
    );
    let link = format!(
        r#"<{base}?&cursor=0:{from}:1>; rel="previous"; results="{}"; cursor="0:{from}:1", <{base}?&cursor=0:{next}:0>; rel="next"; results="{more}"; cursor="0:{next}:0""#,
        from > 0
    );
    (
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::LINK, link),
        ],
        serde_json::Value::Array(page).to_string(),
    )
        .into_response()
}
