//! The HTTP surface. One file per area:
//! - [`api`]: config, board, pixels, updates (JSON and binary).
//! - [`ws`]: the live update websocket.
//! - [`ops`]: health, readiness, metrics, OpenAPI.
//! - [`assets`]: the embedded page.

pub mod api;
pub mod assets;
pub mod ops;
pub mod ws;

use crate::app::AppState;
use crate::error::ApiError;
use axum::Router;
use axum::routing::get;

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/config", get(api::config))
        .route("/board", get(api::board))
        .route("/board.png", get(api::board_png))
        .route("/pixel", get(api::pixel_info).put(api::place))
        .route("/updates", get(api::updates))
        .route("/openapi.json", get(ops::openapi))
        .fallback(|| async { ApiError::NotFound });
    Router::new()
        .nest("/api", api)
        .route("/ws", get(ws::upgrade))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(assets::serve)
        .with_state(state)
}
