//! The HTTP surface. One file per area:
//! - [`api`]: config, board, pixels, updates (JSON and binary).
//! - [`tiles`]: tiles, their PNGs, the overview pyramid and per-tile catch-up.
//! - [`ws`]: the live update websocket.
//! - [`export`]: the dataset of every placement as gzipped CSV.
//! - [`stats`]: presence, placement counts and the leaderboard.
//! - [`overlays`]: per-tile activity (heatmap, virgin map) and the visitor's own pixels.
//! - [`past`]: the board and tiles at a past seq or time (`?seq=`, `?at=`).
//! - [`timelapse`]: animated PNGs of a region over time, rendered in the background.
//! - [`ops`]: health, readiness, metrics, OpenAPI.
//! - [`admin`]: operator and moderator endpoints under `/api/admin/`, which join those of
//!   [`moderation`] (bans, protected areas), [`rewrite`] (rollback, restore, fill,
//!   stamp), [`records`] (reports, audit log) and `crate::auth::routes` (roles).
//! - [`strict`]: what every request must satisfy (Host, websocket Origin), and JSON for
//!   every error the framework answers by itself.
//! - [`assets`]: the embedded page.
//! - `crate::templates`: template images (upload, metadata, PNG, delete).

pub mod admin;
pub mod api;
pub mod assets;
pub mod body;
pub mod export;
pub mod moderation;
pub mod ops;
pub mod overlays;
pub mod past;
pub mod quota;
pub mod records;
pub mod rewrite;
pub mod stats;
pub mod strict;
pub mod tiles;
pub mod timelapse;
pub mod ws;

use crate::app::AppState;
use axum::Router;
use axum::routing::{MethodRouter, any, get};

/// Every route of the main listener with its handlers (full paths). The router is built
/// from this list, so tests that iterate over it ([`paths`]) cover every route.
pub fn table() -> Vec<(&'static str, MethodRouter<AppState>)> {
    let mut t = vec![
        ("/api/config", get(api::config)),
        ("/api/board", get(api::board)),
        ("/api/board.png", get(api::board_png)),
        ("/api/pixel", get(api::pixel_info).put(api::place)),
        ("/api/updates", get(api::updates)),
        ("/api/tiles/{tx}/{ty}", get(tiles::tile)),
        ("/api/tiles/{tx}/{ty}/updates", get(tiles::updates)),
        ("/api/tiles/{z}/{tx}/{ty}", get(tiles::overview)),
        ("/api/export/placements.csv.gz", get(export::placements)),
        ("/api/timelapse", axum::routing::post(timelapse::create)),
        ("/api/timelapse/{id}", get(timelapse::status)),
        ("/api/timelapse/{id}/file", get(timelapse::file)),
        ("/api/openapi.json", get(ops::openapi)),
        ("/ws", get(ws::upgrade).head(only_get)),
        ("/healthz", get(ops::healthz)),
        ("/readyz", get(ops::readyz)),
        ("/metrics", get(ops::metrics)),
    ];
    t.extend(records::public_table());
    t.extend(crate::templates::public_table());
    t.extend(stats::public_table());
    t.extend(overlays::public_table());
    t.extend(crate::auth::routes::public_table());
    t.extend(crate::antibot::routes::public_table());
    t
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

pub fn router(state: AppState) -> strict::Guarded {
    let separate_metrics = state.config.metrics_listen.is_some();
    let routes = table()
        .into_iter()
        // With --metrics-listen, /metrics is served only there (ops::serve_metrics).
        .filter(|(p, _)| !(separate_metrics && *p == "/metrics"))
        .fold(Router::new(), |r, (p, m)| r.route(p, m));
    let routes = routes
        .nest(admin::PREFIX, admin::router(state.clone()))
        // The nest covers /api/admin and /api/admin/x, not the bare trailing slash.
        .route(
            "/api/admin/",
            admin::guarded(state.clone(), any(admin::not_found)),
        )
        // Unknown paths, /api/* included, answer a JSON 404 there.
        .fallback(assets::serve)
        .with_state(state.clone());
    strict::guarded(state, routes)
}

/// A websocket handshake is a GET (RFC 6455 4.1); HEAD, which axum would otherwise route
/// to the GET handler, gets a proper 405.
async fn only_get() -> impl axum::response::IntoResponse {
    (
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        [(axum::http::header::ALLOW, "GET")],
    )
}
