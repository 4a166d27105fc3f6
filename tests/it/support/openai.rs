//! A fake OpenAI API, in-process: `GET /v1/models` and `GET /v1/organization/costs`, in the formats of
//! OpenAI's API reference ("Models › List models", "Administration › Usage › Costs", "Error codes")
//! and its example responses.
//!
//! Each endpoint is driven by its own scenario, switched by the test at any time: the models list,
//! a slow answer, a 429 with OpenAI's `rate_limit_exceeded` or `insufficient_quota` body, a 5xx, a
//! hang, an HTML page, a 2 MiB body. Like OpenAI, it refuses a request without the right key with
//! 401 `invalid_api_key`; unlike OpenAI, whose message masks the key, its message quotes the whole
//! key it received, so a probe that quoted OpenAI's words would leak it. It records every request's
//! path, query and headers.
//!
//! The costs are daily buckets from the query's `start_time` to the present (UTC), each costing
//! `per_day` USD but today's, which costs `today`, paged by `page_size` buckets with `next_page`
//! cursors as OpenAI pages them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;

use super::saas::{Served, wait_unless_hang};

/// Size of the oversize bodies (the probes read at most 1 MiB).
pub const HUGE: usize = 2 << 20;

/// What an endpoint answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Its usual answer (the models list, or the costs).
    Ok,
    /// Its usual answer after this delay.
    Slow(Duration),
    /// `429` with OpenAI's rate-limit body (`rate_limit_exceeded`).
    RateLimit,
    /// `429` with OpenAI's quota body (`insufficient_quota`).
    InsufficientQuota,
    /// This status with OpenAI's `server_error` body.
    Status(u16),
    /// Accepts the request and never answers.
    Hang,
    /// `200` with an HTML page (a proxy's login wall).
    Garbage,
    /// `200`, a [`HUGE`] JSON body.
    Huge,
}

/// The organization's spend, as the costs endpoint reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spend {
    /// USD each day before today.
    pub per_day: f64,
    /// USD today so far.
    pub today: f64,
    /// Buckets per page (OpenAI's `limit`, or fewer to make the fake page).
    pub page_size: usize,
}

/// One request received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// `/v1/models` or `/v1/organization/costs`.
    pub path: String,
    /// The raw query string.
    pub query: String,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// `OpenAI-Organization`.
    pub organization: Option<String>,
    /// `OpenAI-Project`.
    pub project: Option<String>,
}

#[derive(Clone)]
struct AppState {
    api_key: Arc<str>,
    admin_key: Arc<str>,
    models: watch::Receiver<Answer>,
    costs: watch::Receiver<Answer>,
    spend: Arc<Mutex<Spend>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// A running fake OpenAI API; stops on drop.
pub struct FakeOpenai {
    models: watch::Sender<Answer>,
    costs: watch::Sender<Answer>,
    spend: Arc<Mutex<Spend>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    served: Served,
}

impl FakeOpenai {
    /// Starts on `127.0.0.1:<ephemeral>`, accepting `api_key` on `/v1/models` and `admin_key` on the
    /// costs, both answering normally, with 2 USD a day and 1 USD today.
    pub async fn start(api_key: &str, admin_key: &str) -> Self {
        Self::start_on(0, api_key, admin_key).await
    }

    /// Starts on `127.0.0.1:port` (0: ephemeral). Panics when the port is taken.
    pub async fn start_on(port: u16, api_key: &str, admin_key: &str) -> Self {
        let (models_tx, models_rx) = watch::channel(Answer::Ok);
        let (costs_tx, costs_rx) = watch::channel(Answer::Ok);
        let spend = Arc::new(Mutex::new(Spend {
            per_day: 2.0,
            today: 1.0,
            page_size: 32,
        }));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/v1/models", get(models))
            .route("/v1/organization/costs", get(costs))
            .with_state(AppState {
                api_key: api_key.into(),
                admin_key: admin_key.into(),
                models: models_rx,
                costs: costs_rx,
                spend: spend.clone(),
                seen: seen.clone(),
            });
        let served = Served::start(port, app).await;
        Self {
            models: models_tx,
            costs: costs_tx,
            spend,
            seen,
            served,
        }
    }

    /// The API's base, `http://127.0.0.1:port` (the probes add `/v1/…`).
    pub fn url(&self) -> url::Url {
        self.served.url("")
    }

    /// What `/v1/models` does from now on (releasing hanging requests).
    pub fn set_models(&self, answer: Answer) {
        self.models.send_replace(answer);
    }

    /// What `/v1/organization/costs` does from now on (releasing hanging requests).
    pub fn set_costs(&self, answer: Answer) {
        self.costs.send_replace(answer);
    }

    /// The spend the costs report from now on.
    pub fn set_spend(&self, spend: Spend) {
        *self.spend.lock().unwrap() = spend;
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn json_headers() -> [(header::HeaderName, &'static str); 1] {
    [(header::CONTENT_TYPE, "application/json")]
}

/// OpenAI's error JSON.
fn error_body(message: &str, kind: &str, code: Option<&str>) -> String {
    serde_json::json!({
        "error": {"message": message, "type": kind, "param": null, "code": code}
    })
    .to_string()
}

/// Records the request; OpenAI's 401 when it does not carry `key`, else `None`.
fn check(
    state: &AppState,
    headers: &HeaderMap,
    path: &str,
    query: String,
    key: &str,
) -> Option<Response> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let authorization = text("authorization");
    state.seen.lock().unwrap().push(Seen {
        path: path.to_owned(),
        query,
        authorization: authorization.clone(),
        organization: text("openai-organization"),
        project: text("openai-project"),
    });
    if authorization.as_deref() == Some(&format!("Bearer {key}")) {
        return None;
    }
    // OpenAI masks the key in this message; the fake quotes it whole, to catch a probe that quotes.
    let got = authorization.unwrap_or_default();
    let message = format!(
        "Incorrect API key provided: {got}. You can find your API key at https://platform.openai.com/account/api-keys."
    );
    Some(
        (
            StatusCode::UNAUTHORIZED,
            json_headers(),
            error_body(&message, "invalid_request_error", Some("invalid_api_key")),
        )
            .into_response(),
    )
}

/// The answer of `scenario` other than `Ok`, or `None` for the endpoint's own answer (after the
/// delay of `Slow`); waits out `Hang`.
async fn trouble(scenario: watch::Receiver<Answer>) -> Option<Response> {
    let Some(answer) = wait_unless_hang(scenario, |a| *a == Answer::Hang).await else {
        return Some(StatusCode::SERVICE_UNAVAILABLE.into_response());
    };
    let json = json_headers();
    Some(match answer {
        Answer::Ok => return None,
        Answer::Slow(d) => {
            tokio::time::sleep(d).await;
            return None;
        }
        Answer::RateLimit => (
            StatusCode::TOO_MANY_REQUESTS,
            json,
            error_body(
                "Rate limit reached for gpt-4o-mini in organization org-fake on requests per min (RPM): Limit 500, Used 500, Requested 1. Please try again in 120ms.",
                "requests",
                Some("rate_limit_exceeded"),
            ),
        )
            .into_response(),
        Answer::InsufficientQuota => (
            StatusCode::TOO_MANY_REQUESTS,
            json,
            error_body(
                "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
                "insufficient_quota",
                Some("insufficient_quota"),
            ),
        )
            .into_response(),
        Answer::Status(code) => (
            StatusCode::from_u16(code).expect("a valid HTTP status"),
            json,
            error_body(
                "The server had an error while processing your request. Sorry about that!",
                "server_error",
                None,
            ),
        )
            .into_response(),
        Answer::Garbage => (
            [(header::CONTENT_TYPE, "text/html")],
            "<!DOCTYPE html><html><body><h1>Sign in to continue</h1></body></html>",
        )
            .into_response(),
        Answer::Huge => {
            let mut body = String::with_capacity(HUGE + 64);
            body.push_str(r#"{"object":"list","data":[],"padding":""#);
            body.push_str(&"x".repeat(HUGE));
            body.push_str(r#""}"#);
            (json, body).into_response()
        }
        Answer::Hang => unreachable!("waited out above"),
    })
}

async fn models(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let key = state.api_key.clone();
    if let Some(r) = check(
        &state,
        &headers,
        "/v1/models",
        query.unwrap_or_default(),
        &key,
    ) {
        return r;
    }
    if let Some(r) = trouble(state.models.clone()).await {
        return r;
    }
    let body = serde_json::json!({
        "object": "list",
        "data": [
            {"id": "gpt-4o-mini", "object": "model", "created": 1_721_172_741, "owned_by": "system"},
            {"id": "gpt-4o", "object": "model", "created": 1_715_367_049, "owned_by": "system"},
            {"id": "text-embedding-3-small", "object": "model", "created": 1_705_948_997, "owned_by": "system"},
        ]
    });
    (json_headers(), body.to_string()).into_response()
}

/// The costs query's parameters the fake reads (others, such as `project_ids[]`, are recorded only).
#[derive(Debug, Default)]
struct CostsQuery {
    start_time: Option<i64>,
    bucket_width: Option<String>,
    limit: Option<usize>,
    page: Option<String>,
}

impl CostsQuery {
    fn parse(raw: &str) -> Self {
        let mut q = Self::default();
        for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
            match &*k {
                "start_time" => q.start_time = v.parse().ok(),
                "bucket_width" => q.bucket_width = Some(v.into_owned()),
                "limit" => q.limit = v.parse().ok(),
                "page" => q.page = Some(v.into_owned()),
                _ => {}
            }
        }
        q
    }
}

const DAY: i64 = 86_400;

async fn costs(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Response {
    let key = state.admin_key.clone();
    let raw = raw.unwrap_or_default();
    let q = CostsQuery::parse(&raw);
    if let Some(r) = check(&state, &headers, "/v1/organization/costs", raw, &key) {
        return r;
    }
    if let Some(r) = trouble(state.costs.clone()).await {
        return r;
    }
    let Some(start_time) = q.start_time else {
        return (
            StatusCode::BAD_REQUEST,
            json_headers(),
            error_body(
                "Missing required parameter: 'start_time'.",
                "invalid_request_error",
                None,
            ),
        )
            .into_response();
    };
    if q.bucket_width.as_deref().is_some_and(|w| w != "1d") {
        return (
            StatusCode::BAD_REQUEST,
            json_headers(),
            error_body("Invalid bucket_width", "invalid_request_error", None),
        )
            .into_response();
    }
    let spend = *state.spend.lock().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let today = now - now.rem_euclid(DAY);
    let first = start_time - start_time.rem_euclid(DAY);
    let days: Vec<i64> = (0..)
        .map(|i| first + i * DAY)
        .take_while(|d| *d <= today)
        .collect();
    let size = spend.page_size.min(q.limit.unwrap_or(7)).max(1);
    let from: usize = q
        .page
        .as_deref()
        .and_then(|p| p.strip_prefix("page_"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let page: Vec<_> = days.iter().skip(from).take(size).collect();
    let data: Vec<_> = page
        .iter()
        .map(|&&d| {
            let usd = if d == today {
                spend.today
            } else {
                spend.per_day
            };
            serde_json::json!({
                "object": "bucket",
                "start_time": d,
                "end_time": d + DAY,
                "results": [{
                    "object": "organization.costs.result",
                    "amount": {"value": usd, "currency": "usd"},
                    "line_item": null,
                    "project_id": null
                }]
            })
        })
        .collect();
    let more = from + size < days.len();
    let body = serde_json::json!({
        "object": "page",
        "data": data,
        "has_more": more,
        "next_page": more.then(|| format!("page_{}", from + size)),
    });
    (json_headers(), body.to_string()).into_response()
}
