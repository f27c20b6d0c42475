//! The HTTP surface. One file per area:
//! - [`api`]: config, board, pixels, updates (JSON and binary).
//! - [`ws`]: the live update websocket.
//! - [`ops`]: health, readiness, metrics, OpenAPI.
//! - [`admin`]: operator endpoints under `/api/admin/`, behind `--admin-token`.
//! - [`strict`]: what every request must satisfy (Host, websocket Origin), and JSON for
//!   every error the framework answers by itself.
//! - [`assets`]: the embedded page.

pub mod admin;
pub mod api;
pub mod assets;
pub mod ops;
pub mod strict;
pub mod ws;

use crate::app::AppState;
use crate::error::ApiError;
use axum::Router;
use axum::routing::{MethodRouter, get};

/// Every route of the main listener with its handlers (full paths). The router is built
/// from this list, so tests that iterate over it ([`paths`]) cover every route.
pub fn table() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/api/config", get(api::config)),
        ("/api/board", get(api::board)),
        ("/api/board.png", get(api::board_png)),
        ("/api/pixel", get(api::pixel_info).put(api::place)),
        ("/api/updates", get(api::updates)),
        ("/api/openapi.json", get(ops::openapi)),
        ("/ws", get(ws::upgrade)),
        ("/healthz", get(ops::healthz)),
        ("/readyz", get(ops::readyz)),
        ("/metrics", get(ops::metrics)),
    ]
}

/// Every path the server routes, the admin endpoints included.
pub fn paths() -> Vec<String> {
    let admin = admin::table()
        .into_iter()
        .map(|(p, _)| format!("{}{p}", admin::PREFIX));
    table()
        .into_iter()
        .map(|(p, _)| p.to_string())
        .chain(admin)
        .collect()
}

pub fn router(state: AppState) -> Router {
    let separate_metrics = state.config.metrics_listen.is_some();
    let routes = table()
        .into_iter()
        // With --metrics-listen, /metrics is served only there (ops::serve_metrics).
        .filter(|(p, _)| !(separate_metrics && *p == "/metrics"))
        .fold(Router::new(), |r, (p, m)| r.route(p, m));
    routes
        .nest(admin::PREFIX, admin::router(state.clone()))
        .route("/api", axum::routing::any(not_found))
        .route("/api/{*rest}", axum::routing::any(not_found))
        .fallback(assets::serve)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            strict::guard,
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}
