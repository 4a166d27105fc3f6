//! `POST /api/webhooks/alertmanager`, where Alertmanager (`webhook_configs` with
//! `http_config.authorization.credentials_file`) and Grafana (a webhook contact point with
//! `Authorization: Bearer`) push their alerts, and `GET /api/alerts`, what the watchdog holds of
//! them (see [`crate::alerts`]).
//!
//! The webhook is behind the API token like every POST: checked before the body is read, so a
//! refused request changes nothing and is counted (`auth_refusals_total`). Its body may be up to
//! [`WEBHOOK_MAX_BODY`] (a group of many alerts), beyond it 413; a body that is not the payload is
//! 400; both are logged (where it went wrong, never a value of the body) and counted
//! (`alert_webhooks_total{result}`).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::error::Category;

use super::{ApiError, ApiState, Authorized, MayRead};
use crate::alerts::{Listed, Webhook};
use crate::runbook::alerts::Routed;

/// Largest webhook body: a group of a few hundred alerts with their annotations.
pub const WEBHOOK_MAX_BODY: usize = 1024 * 1024;

/// `POST /api/webhooks/alertmanager`: records the notification; 200 with what it held.
///
/// The body is read as bytes and decoded here, not by axum's `Json`: the parser's own messages
/// quote the offending value, and a body's values (whatever a sender put in them) are never
/// echoed in an answer or a log line; the refusal says where, not what.
pub(super) async fn webhook(
    _auth: Authorized,
    State(st): State<Arc<ApiState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let refuse = |status: StatusCode, result: &'static str, reason: String| {
        st.alerts.rejected(result);
        tracing::warn!(result, %reason, "alert webhook refused");
        ApiError::new(status, reason)
    };
    let bytes = match body {
        Ok(bytes) => bytes,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body is over {WEBHOOK_MAX_BODY} bytes"),
            ));
        }
        Err(r) => {
            return Err(refuse(
                r.status(),
                "malformed",
                "the body could not be read".to_owned(),
            ));
        }
    };
    let hook: Webhook = match serde_json::from_slice(&bytes) {
        Ok(hook) => hook,
        Err(e) => {
            let what = match e.classify() {
                Category::Syntax => "not JSON",
                Category::Eof => "cut short",
                Category::Data | Category::Io => "JSON, but not Alertmanager's webhook payload",
            };
            let reason = format!(
                "the body is {what} (line {}, column {})",
                e.line(),
                e.column()
            );
            return Err(refuse(StatusCode::BAD_REQUEST, "malformed", reason));
        }
    };
    let got = st.alerts.ingest(&hook, st.clock.now());
    tracing::debug!(
        alerts = got.alerts,
        firing = got.firing,
        unmatched = got.unmatched,
        "alert notification received"
    );
    Ok(Json(serde_json::json!({
        "status": "ok",
        "alerts": got.alerts,
        "firing": got.firing,
        "unmatched": got.unmatched,
        "dropped": got.dropped,
    }))
    .into_response())
}

/// `GET /api/alerts`: every alert held, firing first, with its section or `unmatched` and why.
pub(super) async fn list_alerts(
    _read: MayRead,
    State(st): State<Arc<ApiState>>,
) -> Result<Response, ApiError> {
    let listed = st.alerts.list(st.clock.now());
    let views: Vec<serde_json::Value> = listed.iter().map(view).collect();
    Ok(Json(serde_json::json!({ "alerts": views })).into_response())
}

/// One alert as JSON.
fn view(a: &Listed) -> serde_json::Value {
    let (section, reason) = match &a.routed {
        Routed::Section(s) => (s.as_str(), None),
        Routed::Unmatched(why) => ("unmatched", Some(why.label())),
    };
    serde_json::json!({
        "id": a.id,
        "alertname": a.alertname,
        "state": a.state.label(),
        "section": section,
        "unmatched_reason": reason,
        "critical": a.critical,
        "labels": a.labels,
        "annotations": a.annotations,
        "starts_at": a.starts_at,
        "ends_at": a.ends_at,
        "generator_url": a.generator_url,
        "heard_at": a.heard_at.to_string(),
        "believed_until": a.believed_until.to_string(),
    })
}
