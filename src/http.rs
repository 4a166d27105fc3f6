//! The daemon's HTTP surface (axum): `/healthz`, `/readyz`, `/metrics`.
//!
//! Handlers only read shared state; they never block on a peer, so a hung Prometheus or SMTP server
//! cannot make the watchdog look dead to its own health check.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::metrics::{CONTENT_TYPE, Metrics};

/// What the handlers share.
#[derive(Debug)]
pub struct AppState {
    pub metrics: Metrics,
    /// Must stay writable for the daemon to be ready: the store and the `.eml` outbox live here.
    pub data_dir: PathBuf,
}

/// The routes, ready to serve.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Alive: the process runs and its HTTP server answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready: the configuration is loaded (it is, or the server would not exist) and the data directory
/// takes a write.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let dir = state.data_dir.clone();
    let probe = tokio::task::spawn_blocking(move || {
        let path = dir.join(".readyz");
        std::fs::write(&path, b"ready\n").and_then(|()| std::fs::remove_file(&path))
    })
    .await;
    match probe {
        Ok(Ok(())) => (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: data directory {} is not writable: {e}\n",
                state.data_dir.display()
            ),
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")).into_response(),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.encode(),
    )
        .into_response()
}
