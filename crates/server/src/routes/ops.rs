//! Operations endpoints.

use crate::app::AppState;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use rplace_store::Store;

pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the store can take placements, live updates flow and the server is not
/// draining; a load balancer stops routing here as soon as this fails.
pub async fn readyz(State(app): State<AppState>) -> impl IntoResponse {
    if app.live_path.is_failed() {
        (StatusCode::SERVICE_UNAVAILABLE, "live updates stopped")
    } else if app.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else if !app.store.is_ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
    } else {
        (StatusCode::OK, "ready")
    }
}

pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    app.metrics.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
}

pub async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../../../../docs/openapi.json"),
    )
}
