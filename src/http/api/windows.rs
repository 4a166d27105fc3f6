//! `/api/maintenance`: the windows of the configuration and those made at run time; making one and
//! ending one early, through the actions service.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::views::{WindowView, window_views};
use super::{ApiError, ApiState, Authorized, MayRead};
use crate::http::actions::{Via, WindowRequest};

/// `GET /api/maintenance`: the configuration's windows, then those created through the API, oldest
/// first (ended ones included: the list is their history).
pub(super) async fn list_windows(
    _read: MayRead,
    State(st): State<Arc<ApiState>>,
) -> Result<Response, ApiError> {
    let stored = st.actions.windows().await?;
    let views = window_views(st.actions.configured(), stored);
    Ok(Json(serde_json::json!({ "windows": views })).into_response())
}

/// `POST /api/maintenance`: 201 with the stored window.
pub(super) async fn create_window(
    _auth: Authorized,
    State(st): State<Arc<ApiState>>,
    body: Result<Json<WindowRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let stored = st
        .actions
        .add_window(body, st.clock.now(), Via::Api)
        .await?;
    Ok((StatusCode::CREATED, Json(WindowView::from(stored))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EndQuery {
    by: String,
}

/// `DELETE /api/maintenance/{id}?by=NAME`: ends a window created at run time now; 200 with the
/// window as it stands (its row is kept, with who ended it).
pub(super) async fn end_window_now(
    _auth: Authorized,
    State(st): State<Arc<ApiState>>,
    Path(id): Path<String>,
    query: Result<Query<EndQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    let now = st.clock.now();
    let ended = st.actions.end_window(&id, &query.by, now, Via::Api).await?;
    Ok(Json(WindowView::from(ended)).into_response())
}
