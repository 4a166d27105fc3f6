//! The JSON API: incidents read from the store, acks and resolves sent to the pager's
//! task, and maintenance windows created at run time.
//!
//! | route | auth | answer |
//! |---|---|---|
//! | `GET /api/incidents[?limit=N]` | read | `{"incidents": [incident…]}`, newest first |
//! | `GET /api/incidents/{id}` | read | the incident with its `timeline` and kept `diagnosis` (404 when unknown) |
//! | `POST /api/incidents/{id}/ack` | token or link | `{"by", "level"?}` → the updated incident |
//! | `POST /api/incidents/{id}/resolve` | token or link | `{"by", "note"?}` → the updated incident |
//! | `GET /api/maintenance` | read | `{"windows": [window…]}` (the configuration's, then those created through the API) |
//! | `POST /api/maintenance` | token | `{"sections", "starts"?, "ends" \| "duration", "reason", "by"}` → 201 |
//! | `DELETE /api/maintenance/{id}?by=NAME` | token | the window, ended now (409 for a window of the configuration or one already over) |
//! | `POST /api/webhooks/alertmanager` | token | Alertmanager's (or Grafana's) webhook payload, up to [`alerts::WEBHOOK_MAX_BODY`] → `{"status": "ok", "alerts", "firing", "unmatched", "dropped"}` |
//! | `GET /api/alerts` | read | `{"alerts": [alert…]}`: what the watchdog holds of the pushed alerts, each with its `state` (`firing`, `stale`, `resolved`) and `section` (or `unmatched` with an `unmatched_reason`) |
//! | `POST /-/reload` | token | reloads the configuration: 200 `{"status": "applied", "restart_required": [key…]}`, 422 `{"error", "problems": […]}` (invalid; the running one is kept), 500 (valid but could not start), 503 |
//!
//! Every POST and DELETE needs `Authorization: Bearer <server.api_token>`. Without a configured token
//! the mutating API is closed (403); a missing header is 401 with `WWW-Authenticate: Bearer`, a wrong
//! token 403. The check runs before the body (or the query) is read, so a refused request changes
//! nothing. The token is compared through HMAC tags under a per-process random key
//! ([`ring::hmac::verify`]), which takes the same time whatever the presented value and its length,
//! and it is never logged or echoed. A client that failed too often ([`crate::http::auth::limit`]) is
//! answered 429 with `Retry-After` and its credential is not checked at all, the right one included.
//! Refusals are logged at most once a minute per client, saying how many were held back.
//!
//! "Read" routes are open while `server.public_reads` is true (the default); when it is false they
//! need the API token or the session cookie of a signed-in page (401 otherwise).
//!
//! "Link" routes also take, in the same header, the token of an email's ack or resolve link (the part
//! after `/act/`, [`crate::email::token`]): it authorises exactly the incident and the action it was
//! signed for, until it expires, and an ack made with it acknowledges for the level the email went to.
//! A value that is not the API token is tried as a link token; a link token for another incident or
//! action, an expired or an altered one is 403. Link tokens work whether or not an API token is
//! configured (the `/act/` page takes them anyway); they never open maintenance windows or reload.
//!
//! Errors are `{"error": "…"}` with 400 (bad JSON or input, naming the field), 401, 403, 404, 409
//! (already resolved or over), 413 (body over [`MAX_BODY`]), 429 (too many failures) or 503 (the store or the pager's task is unavailable).
//!
//! Acks, resolves and windows are checked and carried out by the actions service
//! ([`super::actions`]), as for the pages and the email links; this module reads the request, checks
//! its credentials, and answers: this file holds the routes, the error answer and the credential
//! extractors (`Authorized`, `MayRead`, `MayAct`), `incidents.rs` and `windows.rs` the handlers,
//! `views.rs` the JSON shapes.

pub mod alerts;
mod incidents;
mod views;
mod windows;

use std::marker::PhantomData;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};

use super::action_status;
use super::actions::{Actions, Via};
use crate::alerts::Inbox;
use crate::clock::Clock;
use crate::email::token::{Action, Claims, LinkKeys, TokenError};
use crate::http::auth::link::authorize_with;
use crate::http::auth::{self, Auth, ClientKey, Denied};
use crate::incident::ActionError;
use crate::locale::MsgId;
use crate::reload::{Outcome, Reloader, Trigger};
use crate::store::Store;
use incidents::{ack, incident_detail, list_incidents, resolve};
use windows::{create_window, end_window_now, list_windows};

/// Largest accepted request body.
pub const MAX_BODY: usize = 16 * 1024;
/// Incidents listed when `?limit=` is absent.
pub const DEFAULT_LIMIT: usize = 100;
/// Most incidents one list returns.
pub const MAX_LIMIT: usize = 500;

/// The answer when no token is configured.
const NO_TOKEN: &str = "the API token is not configured (server.api_token_file)";

struct ApiState {
    /// Acks, resolves and windows: checked and carried out for every route alike.
    actions: Arc<Actions>,
    /// What the reads read.
    store: Arc<Store>,
    /// The API token, the sessions (reads when `server.public_reads` is false), the budgets.
    auth: Arc<Auth>,
    clock: Clock,
    /// Asks the daemon to reload its configuration.
    reloader: Reloader,
    /// The keys the email links are signed with: their tokens may ack or resolve their incident.
    link_key: Arc<LinkKeys>,
    /// The pushed alerts: the webhook writes, `GET /api/alerts` reads.
    alerts: Arc<Inbox>,
}

/// The `/api/*` routes, with their state. `actions` acts (and knows the runbook's sections and the
/// configuration's windows); `store` is read; `auth` checks the token (and sessions, for reads);
/// `reloader` serves `POST /-/reload`; `link_key` verifies the email links' tokens; `alerts` takes
/// the alert webhook.
pub fn routes(
    actions: Arc<Actions>,
    store: Arc<Store>,
    auth: Arc<Auth>,
    clock: Clock,
    reloader: Reloader,
    link_key: Arc<LinkKeys>,
    alerts: Arc<Inbox>,
) -> Router {
    let state = Arc::new(ApiState {
        actions,
        store,
        auth,
        clock,
        reloader,
        link_key,
        alerts,
    });
    Router::new()
        .route("/api/incidents", get(list_incidents))
        .route("/api/incidents/{id}", get(incident_detail))
        .route("/api/incidents/{id}/ack", post(ack))
        .route("/api/incidents/{id}/resolve", post(resolve))
        .route("/api/maintenance", get(list_windows).post(create_window))
        .route("/api/maintenance/{id}", delete(end_window_now))
        .route("/-/reload", post(reload))
        .route("/api/alerts", get(alerts::list_alerts))
        // Its own, larger bound (a group of many alerts), set inside the API's.
        .route(
            "/api/webhooks/alertmanager",
            post(alerts::webhook).layer(DefaultBodyLimit::max(alerts::WEBHOOK_MAX_BODY)),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// An error answer: `{"error": message}` with `status`; a refused input adds `"field"` (the one at
/// fault) and `"code"` (which problem, a stable machine word: the message's ID), so a client need
/// not parse the English `error`.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    /// 429's `Retry-After`, in seconds.
    pub(crate) retry_after: Option<u64>,
    /// A standby's refusal (issue 17): the body is `{"error": "standby", "leader": …}`, the
    /// leader's name or `null` while none is known, so a client can go there.
    pub(crate) standby: Option<Option<String>>,
    /// A refused input's field and problem.
    pub(crate) invalid: Option<(&'static str, MsgId)>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
            standby: None,
            invalid: None,
        }
    }

    /// 429: the client failed too often; nothing was checked.
    fn rate_limited(wait: std::time::Duration) -> Self {
        let secs = auth::retry_after_secs(wait);
        Self {
            retry_after: Some(secs),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many failed attempts from this address; nothing was checked: retry in {secs} s"
                ),
            )
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn unavailable(message: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %message, "API request failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unavailable: {message}"),
        )
    }

    fn not_found(id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("no incident {id}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = match &self.standby {
            Some(leader) => serde_json::json!({ "error": "standby", "leader": leader }),
            None => serde_json::json!({ "error": self.message }),
        };
        if let Some((field, code)) = self.invalid {
            body["field"] = field.into();
            body["code"] = serde_json::to_value(code).unwrap_or_default();
        }
        let body = Json(body);
        if self.status == StatusCode::UNAUTHORIZED {
            (self.status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else if let Some(secs) = self.retry_after {
            (self.status, [(header::RETRY_AFTER, secs.to_string())], body).into_response()
        } else {
            (self.status, body).into_response()
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        Self::new(status, r.body_text())
    }
}

/// An action not taken, as the API says it: its status ([`action_status`]) and its message. An
/// unavailable store or pager is logged.
impl From<ActionError> for ApiError {
    fn from(e: ActionError) -> Self {
        match e {
            ActionError::Unavailable(why) => Self::unavailable(why),
            ActionError::Standby { leader } => Self {
                standby: Some(leader.clone()),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ActionError::Standby { leader }.to_string(),
                )
            },
            ActionError::Invalid { field, words } => Self {
                invalid: Some((field, words.id)),
                ..Self::new(StatusCode::BAD_REQUEST, words.to_string())
            },
            e => Self::new(action_status(&e), e.to_string()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::bad_request(r.body_text())
    }
}

/// The value of `Authorization: Bearer <value>`, if the request has one.
fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
}

/// Logs a refused request (never the presented value), at most once a minute per client with how
/// many were held back ([`Auth::should_log`]), and makes its answer.
fn refuse(parts: &Parts, st: &ApiState, client: ClientKey, error: ApiError, why: &str) -> ApiError {
    if let Some(held_back) = st.auth.should_log(client) {
        tracing::warn!(
            %client,
            method = %parts.method,
            path = %parts.uri.path(),
            reason = why,
            held_back,
            "API request refused"
        );
    }
    error
}

/// Checks `presented` against the API token for `client`: `Ok` when it is the token, else the
/// refusal to answer (429 unchecked when the client is over its failure budget).
fn check_api_token(
    parts: &Parts,
    st: &ApiState,
    client: ClientKey,
    presented: Option<&str>,
) -> Result<(), ApiError> {
    let refused =
        |status, message: &str, why| refuse(parts, st, client, ApiError::new(status, message), why);
    if !st.auth.configured() {
        st.auth.refused("not_configured");
        return Err(refused(
            StatusCode::FORBIDDEN,
            NO_TOKEN,
            "no token configured",
        ));
    }
    let Some(presented) = presented else {
        st.auth.refused("no_credentials");
        return Err(refused(
            StatusCode::UNAUTHORIZED,
            "this request needs `Authorization: Bearer <token>`",
            "no bearer token",
        ));
    };
    match st.auth.check_token(client, presented) {
        Ok(()) => Ok(()),
        Err(Denied::RateLimited(wait)) => Err(refuse(
            parts,
            st,
            client,
            ApiError::rate_limited(wait),
            "rate limited",
        )),
        Err(Denied::NotConfigured) => Err(refused(
            StatusCode::FORBIDDEN,
            NO_TOKEN,
            "no token configured",
        )),
        Err(Denied::Wrong) => Err(refused(
            StatusCode::FORBIDDEN,
            "the API token is not valid",
            "wrong token",
        )),
    }
}

/// Proof that the request carried the configured token. Extracted before the body, so a refused
/// request is answered before anything is parsed or changed.
struct Authorized;

impl FromRequestParts<Arc<ApiState>> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        st: &Arc<ApiState>,
    ) -> Result<Self, Self::Rejection> {
        let client = st.auth.client(&parts.extensions, &parts.headers);
        check_api_token(parts, st, client, bearer(parts))?;
        Ok(Self)
    }
}

/// Proof that the request may read: reads are public (`server.public_reads`, the default), or it
/// carries a session cookie of the pages or the API token. Without either: 401.
struct MayRead;

impl FromRequestParts<Arc<ApiState>> for MayRead {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        st: &Arc<ApiState>,
    ) -> Result<Self, Self::Rejection> {
        if st.auth.public_reads() || st.auth.session(&parts.headers).is_some() {
            return Ok(Self);
        }
        let client = st.auth.client(&parts.extensions, &parts.headers);
        let presented = bearer(parts);
        if presented.is_none() {
            st.auth.refused("no_credentials");
            return Err(refuse(
                parts,
                st,
                client,
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "reading needs `Authorization: Bearer <token>` or a signed-in session \
                     (server.public_reads is false)",
                ),
                "read without credentials",
            ));
        }
        check_api_token(parts, st, client, presented)?;
        Ok(Self)
    }
}

/// What an incident route does, for [`MayAct`].
trait RouteAction: Send + Sync {
    const ACTION: Action;
}

/// `POST /api/incidents/{id}/ack`.
struct AckRoute;

impl RouteAction for AckRoute {
    const ACTION: Action = Action::Ack;
}

/// `POST /api/incidents/{id}/resolve`.
struct ResolveRoute;

impl RouteAction for ResolveRoute {
    const ACTION: Action = Action::Resolve;
}

/// Proof that the request may take `R`'s action on the incident of its path: it carried the API
/// token, or an email link token signed for exactly that incident and action and not expired.
/// Extracted before the body, like [`Authorized`].
struct MayAct<R> {
    /// `None`: the API token (any incident, any level). `Some`: an email link token's claims, whose
    /// level an ack is for.
    link: Option<Claims>,
    route: PhantomData<R>,
}

impl<R> MayAct<R> {
    fn new(link: Option<Claims>) -> Self {
        Self {
            link,
            route: PhantomData,
        }
    }

    /// The route, for the action's log line.
    fn via(&self) -> Via {
        if self.link.is_some() {
            Via::ApiLink
        } else {
            Via::Api
        }
    }
}

impl<R: RouteAction> FromRequestParts<Arc<ApiState>> for MayAct<R> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        st: &Arc<ApiState>,
    ) -> Result<Self, Self::Rejection> {
        let client = st.auth.client(&parts.extensions, &parts.headers);
        // Owned: reading the path below borrows `parts` mutably.
        let Some(presented) = bearer(parts).map(str::to_owned) else {
            check_api_token(parts, st, client, None)?;
            return Ok(Self::new(None));
        };
        let limited = |parts: &Parts, wait| {
            refuse(
                parts,
                st,
                client,
                ApiError::rate_limited(wait),
                "rate limited",
            )
        };
        // The client over its own budget: refused before either kind of token is looked at.
        if let Err(wait) = st.auth.admit_link(client) {
            return Err(limited(parts, wait));
        }
        // The API token is compared only within the global budget too; a link token need not be.
        if st.auth.within_budget(client) && st.auth.is_token(client, &presented) {
            return Ok(Self::new(None));
        }
        let Path(id) = Path::<String>::from_request_parts(parts, st)
            .await
            .map_err(|r| ApiError::bad_request(r.body_text()))?;
        let checked = authorize_with(&st.link_key, &presented, &id, R::ACTION, st.clock.now());
        match checked {
            Ok(claims) => Ok(Self::new(Some(claims))),
            // Not shaped like a link token: a wrong API token.
            Err(TokenError::Malformed) if !st.auth.configured() => {
                st.auth.refused("not_configured");
                let error = ApiError::new(StatusCode::FORBIDDEN, NO_TOKEN);
                Err(refuse(parts, st, client, error, "no token configured"))
            }
            Err(TokenError::Malformed) => {
                if let Err(wait) = st.auth.admit(client) {
                    return Err(limited(parts, wait));
                }
                st.auth.wrong_token(client);
                let error = ApiError::new(StatusCode::FORBIDDEN, "the API token is not valid");
                Err(refuse(parts, st, client, error, "wrong token"))
            }
            // A link token cannot be guessed (HMAC): its refusals spend no budget.
            Err(e) => {
                st.auth.refused("bad_link_token");
                let message = format!("the email link token is refused: {e}");
                let error = ApiError::new(StatusCode::FORBIDDEN, message);
                Err(refuse(parts, st, client, error, e.label()))
            }
        }
    }
}

/// `POST /-/reload`: reloads the configuration (after any reload under way) and says what happened.
/// An invalid configuration is 422 with every problem; the running one is kept.
async fn reload(_auth: Authorized, State(st): State<Arc<ApiState>>) -> Response {
    match st.reloader.reload(Trigger::Api).await {
        Outcome::Applied { restart_required } => Json(serde_json::json!({
            "status": "applied",
            "restart_required": restart_required,
        }))
        .into_response(),
        Outcome::Invalid { problems } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({
                "error": "invalid configuration; the running configuration is kept",
                "problems": problems,
            })),
        )
            .into_response(),
        Outcome::Failed { reason } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "the configuration could not start ({reason}); the running configuration is kept"
            ),
        )
        .into_response(),
        Outcome::Unavailable => {
            ApiError::unavailable("the watchdog is shutting down").into_response()
        }
    }
}
