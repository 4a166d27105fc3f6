//! A fake Coolify (API v4), in-process: `GET /api/v1/deployments/applications/{uuid}` and
//! `GET /api/v1/applications/{uuid}/envs`, in the formats of Coolify's API reference ("Deployments ›
//! List application deployments", "Deployments › Get" for an `ApplicationDeploymentQueue`,
//! "Applications › List Envs") and of Coolify's own controller (`{"count", "deployments"}`, newest
//! first; errors as `{"message": "..."}`).
//!
//! The deployments and the envs are set by the test; each endpoint's answer is switched at any time
//! (its usual answer, a status, a hang, an HTML page, a 2 MiB body). Like Coolify, it refuses a
//! request without the right token with 401 and an application it does not know with 404; unlike
//! Coolify, its 401 quotes the whole token it received, so a probe that quoted Coolify's words would
//! leak it. Every env's `value` and `real_value` carry the env's value, and every deployment's `logs`
//! print them, so a test can prove that no value goes anywhere.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;

use super::saas::{Served, wait_unless_hang};

/// Size of the oversize bodies (the probe reads at most 4 MiB of deployments and 1 MiB of envs).
pub const HUGE: usize = 5 << 20;

/// What an endpoint answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Its usual answer.
    Ok,
    /// This status with Coolify's `{"message"}` body.
    Status(u16),
    /// Accepts the request and never answers.
    Hang,
    /// `200` with an HTML page (a proxy's login wall).
    Garbage,
    /// `200`, a [`HUGE`] JSON body.
    Huge,
}

/// One deployment as the test sets it (the fake fills the other fields Coolify sends).
#[derive(Debug, Clone, PartialEq)]
pub struct Dep {
    pub uuid: &'static str,
    pub commit: &'static str,
    /// `queued`, `in_progress`, `finished`, `failed`, `cancelled-by-user`.
    pub status: &'static str,
    /// Seconds before now it finished (its `updated_at`).
    pub age_seconds: i64,
    /// 0: the application's own; else a pull request's preview.
    pub pull_request_id: i64,
}

/// Every request received: its path and query, and its `Authorization`.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

#[derive(Clone)]
struct AppState {
    token: Arc<str>,
    application: Arc<str>,
    deployments: watch::Receiver<Answer>,
    envs: watch::Receiver<Answer>,
    deps: Arc<Mutex<Vec<Dep>>>,
    vars: Arc<Mutex<Vec<(String, String)>>>,
    seen: Seen,
}

/// A running fake Coolify; stops on drop.
pub struct FakeCoolify {
    deployments: watch::Sender<Answer>,
    envs: watch::Sender<Answer>,
    deps: Arc<Mutex<Vec<Dep>>>,
    vars: Arc<Mutex<Vec<(String, String)>>>,
    seen: Seen,
    served: Served,
}

impl FakeCoolify {
    /// Starts on `127.0.0.1:<ephemeral>`, accepting `token` for `application`, with no deployments
    /// and no envs.
    pub async fn start(token: &str, application: &str) -> Self {
        Self::start_on(0, token, application).await
    }

    /// Starts on `127.0.0.1:port` (0: ephemeral). Panics when the port is taken.
    pub async fn start_on(port: u16, token: &str, application: &str) -> Self {
        let (deployments_tx, deployments_rx) = watch::channel(Answer::Ok);
        let (envs_tx, envs_rx) = watch::channel(Answer::Ok);
        let deps = Arc::new(Mutex::new(Vec::new()));
        let vars = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/api/v1/deployments/applications/{uuid}", get(deployments))
            .route("/api/v1/applications/{uuid}/envs", get(envs))
            .with_state(AppState {
                token: token.into(),
                application: application.into(),
                deployments: deployments_rx,
                envs: envs_rx,
                deps: deps.clone(),
                vars: vars.clone(),
                seen: seen.clone(),
            });
        let served = Served::start(port, app).await;
        Self {
            deployments: deployments_tx,
            envs: envs_tx,
            deps,
            vars,
            seen,
            served,
        }
    }

    /// Coolify's base, `http://127.0.0.1:port` (the probe adds `/api/v1/…`).
    pub fn url(&self) -> url::Url {
        self.served.url("")
    }

    /// The deployments, newest first, from now on.
    pub fn set_deployments(&self, deps: Vec<Dep>) {
        *self.deps.lock().unwrap() = deps;
    }

    /// The application's envs (name, value) from now on.
    pub fn set_envs(&self, vars: &[(&str, &str)]) {
        *self.vars.lock().unwrap() = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
    }

    /// What the deployments endpoint does from now on (releasing hanging requests).
    pub fn set_deployments_answer(&self, answer: Answer) {
        self.deployments.send_replace(answer);
    }

    /// What the envs endpoint does from now on (releasing hanging requests).
    pub fn set_envs_answer(&self, answer: Answer) {
        self.envs.send_replace(answer);
    }

    /// Every request received so far: its path and query, and its `Authorization`.
    pub fn requests(&self) -> Vec<(String, Option<String>)> {
        self.seen.lock().unwrap().clone()
    }
}

fn json() -> [(header::HeaderName, &'static str); 1] {
    [(header::CONTENT_TYPE, "application/json")]
}

fn message(status: StatusCode, text: &str) -> Response {
    (
        status,
        json(),
        serde_json::json!({ "message": text }).to_string(),
    )
        .into_response()
}

/// Records the request; Coolify's 401 without the token (quoting what it got), 404 for another
/// application, the scenario's trouble, or `None` for the endpoint's own answer.
async fn gate(
    state: &AppState,
    headers: &HeaderMap,
    path: String,
    uuid: &str,
    scenario: watch::Receiver<Answer>,
) -> Option<Response> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    state
        .seen
        .lock()
        .unwrap()
        .push((path, authorization.clone()));
    if authorization.as_deref() != Some(&format!("Bearer {}", state.token)) {
        let got = authorization.unwrap_or_default();
        return Some(message(
            StatusCode::UNAUTHORIZED,
            &format!("Unauthenticated. ({got})"),
        ));
    }
    if uuid != &*state.application {
        return Some(message(StatusCode::NOT_FOUND, "Application not found"));
    }
    let answer = match wait_unless_hang(scenario, |a| *a == Answer::Hang).await {
        Some(a) => a,
        None => return Some(StatusCode::SERVICE_UNAVAILABLE.into_response()),
    };
    match answer {
        Answer::Ok => None,
        Answer::Status(code) => Some(message(
            StatusCode::from_u16(code).expect("a valid HTTP status"),
            "Server Error",
        )),
        Answer::Garbage => Some(
            (
                [(header::CONTENT_TYPE, "text/html")],
                "<!DOCTYPE html><html><body><h1>Coolify | Login</h1></body></html>",
            )
                .into_response(),
        ),
        Answer::Huge => {
            let mut body = String::with_capacity(HUGE + 64);
            body.push_str(r#"{"count":0,"deployments":[],"padding":""#);
            body.push_str(&"x".repeat(HUGE));
            body.push_str(r#""}"#);
            Some((json(), body).into_response())
        }
        Answer::Hang => unreachable!("waited out above"),
    }
}

/// Laravel's serialization of a time `ago` seconds before now: `2026-12-07T01:00:00.000000Z`.
fn laravel_time(ago: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs((now - ago).max(0) as u64);
    let text = humantime::format_rfc3339_seconds(t).to_string();
    text.replace('Z', ".000000Z")
}

async fn deployments(
    State(state): State<AppState>,
    Path(uuid): Path<String>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let path = format!(
        "/api/v1/deployments/applications/{uuid}?{}",
        query.unwrap_or_default()
    );
    if let Some(r) = gate(&state, &headers, path, &uuid, state.deployments.clone()).await {
        return r;
    }
    let deps = state.deps.lock().unwrap().clone();
    // Build logs print the app's variables, as a careless build step does.
    let printed: String = state
        .vars
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k}={v} "))
        .collect();
    let rows: Vec<_> = deps
        .iter()
        .enumerate()
        .map(|(i, d)| {
            serde_json::json!({
                "id": 100 - i as i64,
                "application_id": "7",
                "deployment_uuid": d.uuid,
                "pull_request_id": d.pull_request_id,
                "force_rebuild": false,
                "commit": d.commit,
                "status": d.status,
                "is_webhook": true,
                "is_api": false,
                "created_at": laravel_time(d.age_seconds + 90),
                "updated_at": laravel_time(d.age_seconds),
                "logs": serde_json::json!([{"output": printed, "type": "stdout", "hidden": false}]).to_string(),
                "current_process_id": null,
                "restart_only": false,
                "git_type": "github",
                "server_id": 0,
                "application_name": "harven-backend",
                "server_name": "localhost",
                "deployment_url": format!("/project/p1/environment/e1/application/{uuid}/deployment/{}", d.uuid),
                "destination_id": "1",
                "only_this_server": false,
                "rollback": false,
                "commit_message": "feat: the change",
            })
        })
        .collect();
    let body = serde_json::json!({ "count": rows.len(), "deployments": rows });
    (json(), body.to_string()).into_response()
}

async fn envs(
    State(state): State<AppState>,
    Path(uuid): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/api/v1/applications/{uuid}/envs");
    if let Some(r) = gate(&state, &headers, path, &uuid, state.envs.clone()).await {
        return r;
    }
    let vars = state.vars.lock().unwrap().clone();
    let rows: Vec<_> = vars
        .iter()
        .enumerate()
        .map(|(i, (k, v))| {
            serde_json::json!({
                "id": i + 1,
                "uuid": format!("env{i}"),
                "resourceable_type": "App\\Models\\Application",
                "resourceable_id": 7,
                "is_literal": false,
                "is_multiline": false,
                "is_preview": false,
                "is_runtime": true,
                "is_buildtime": true,
                "is_shared": false,
                "is_shown_once": false,
                "key": k,
                "value": v,
                "real_value": v,
                "comment": null,
                "version": "4.0.0",
                "created_at": laravel_time(86_400),
                "updated_at": laravel_time(86_400),
            })
        })
        .collect();
    (json(), serde_json::Value::Array(rows).to_string()).into_response()
}
