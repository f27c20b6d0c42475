//! Operations endpoints.

use crate::app::AppState;
use crate::error::ApiError;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rplace_store::Store;
use serde_json::{Value, json};
use tokio::net::TcpListener;

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

/// Prometheus text; with `--metrics-token`, only for `Authorization: Bearer <token>`.
pub async fn metrics(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = &app.settings.access.metrics_token
        && !token.authorizes(&headers)
    {
        return ApiError::TokenRequired {
            flag: "metrics-token",
        }
        .into_response();
    }
    app.metrics.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}

/// The OpenAPI document as written in docs/openapi.json.
const OPENAPI: &str = include_str!("../../../../docs/openapi.json");

/// docs/openapi.json with the limits of this server's configuration (board size, palette)
/// in place of the static maxima.
pub fn openapi_document(app: &AppState) -> Value {
    let mut doc: Value = serde_json::from_str(OPENAPI).expect("docs/openapi.json is JSON");
    let s = &app.settings;
    let dims = app.hub.dims();
    let (x_max, y_max) = (dims.width() - 1, dims.height() - 1);
    let c_max = s.palette.len() - 1;
    let place = &mut doc["components"]["schemas"]["PlaceRequest"]["properties"];
    place["x"]["maximum"] = json!(x_max);
    place["y"]["maximum"] = json!(y_max);
    place["color"]["maximum"] = json!(c_max);
    if let Some(params) = doc["paths"]["/api/pixel"]["get"]["parameters"].as_array_mut() {
        for p in params {
            match p["name"].as_str() {
                Some("x") => p["schema"]["maximum"] = json!(x_max),
                Some("y") => p["schema"]["maximum"] = json!(y_max),
                _ => {}
            }
        }
    }
    doc
}

pub async fn openapi(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "no-cache")],
        axum::Json(openapi_document(&app)),
    )
}

/// With `--metrics-listen`, binds it and serves `/metrics` there (only) until the server's
/// stop token is cancelled. The main router then leaves `/metrics` out.
pub async fn spawn_metrics_listener(
    app: &AppState,
) -> std::io::Result<Option<tokio::task::JoinHandle<std::io::Result<()>>>> {
    let Some(addr) = app.config.metrics_listen else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(addr = %format!("http://{}", listener.local_addr()?), "metrics listening");
    let router = Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::NotFound })
        .with_state(app.clone());
    let router = super::strict::guarded(app.clone(), router).into_router();
    let stop = app.stop.clone();
    Ok(Some(tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    })))
}
