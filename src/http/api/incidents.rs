//! `/api/incidents`: the list and one incident, read from the store; ack and resolve, carried out
//! by the actions service and answered with the updated incident.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::views::IncidentView;
use super::{
    AckRoute, ApiError, ApiState, DEFAULT_LIMIT, MAX_LIMIT, MayAct, MayRead, ResolveRoute,
};
use crate::http::actions::store_unavailable;
use crate::http::blocking;
use crate::incident::{ActionError, Incident};

async fn load(st: &ApiState, id: &str) -> Result<Option<Incident>, ApiError> {
    let store = Arc::clone(&st.store);
    let id = id.to_owned();
    Ok(blocking(move || store.incident(&id).map_err(store_unavailable)).await?)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    limit: Option<usize>,
}

/// `GET /api/incidents`: newest first.
pub(super) async fn list_incidents(
    _read: MayRead,
    State(st): State<Arc<ApiState>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let store = Arc::clone(&st.store);
    let incidents =
        blocking(move || store.recent_incidents(limit).map_err(store_unavailable)).await?;
    let views: Vec<IncidentView> = incidents.into_iter().map(IncidentView::summary).collect();
    Ok(Json(serde_json::json!({ "incidents": views })).into_response())
}

/// `GET /api/incidents/{id}`: the incident with its timeline.
pub(super) async fn incident_detail(
    _read: MayRead,
    State(st): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match load(&st, &id).await? {
        Some(i) => Ok(IncidentView::detail(i).into_response(StatusCode::OK)),
        None => Err(ApiError::not_found(&id)),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AckBody {
    by: String,
    #[serde(default)]
    level: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResolveBody {
    by: String,
    #[serde(default)]
    note: String,
}

/// The answer to an ack or a resolve: the updated incident, or why nothing was done.
async fn answer_with_incident<T>(
    st: &ApiState,
    id: &str,
    result: Result<T, ActionError>,
) -> Response {
    let answer = match result {
        Ok(_) => match load(st, id).await {
            Ok(Some(i)) => return IncidentView::detail(i).into_response(StatusCode::OK),
            Ok(None) => ApiError::not_found(id),
            Err(e) => e,
        },
        Err(e) => ApiError::from(e),
    };
    answer.into_response()
}

/// `POST /api/incidents/{id}/ack`. With a link token the ack is for the token's level; a body naming
/// another level is refused (403).
pub(super) async fn ack(
    auth: MayAct<AckRoute>,
    State(st): State<Arc<ApiState>>,
    Path(id): Path<String>,
    body: Result<Json<AckBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let level = body.level.as_deref();
    let result = st
        .actions
        .ack(&id, &body.by, level, auth.link.as_ref(), auth.via())
        .await;
    if let Err(ActionError::OtherLevel { link, asked }) = &result {
        tracing::warn!(incident = %id, token_level = %link, asked = %asked, "API ack refused: the link token is for another level");
    }
    Ok(answer_with_incident(&st, &id, result).await)
}

/// `POST /api/incidents/{id}/resolve`.
pub(super) async fn resolve(
    auth: MayAct<ResolveRoute>,
    State(st): State<Arc<ApiState>>,
    Path(id): Path<String>,
    body: Result<Json<ResolveBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let result = st
        .actions
        .resolve(&id, &body.by, &body.note, auth.link.as_ref(), auth.via())
        .await;
    Ok(answer_with_incident(&st, &id, result).await)
}
