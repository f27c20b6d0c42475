//! The overlays' endpoints (docs/API.md, Overlays; `crate::activity`):
//! - `GET /api/tiles/{tx}/{ty}/activity`: when each pixel of a tile was last placed, as
//!   65,536 little-endian `u32` unix seconds (0: never placed), for the heatmap and the
//!   virgin map;
//! - `GET /api/me/pixels?tx=..&ty=..`: the visitor's own pixels still standing on a tile.

use super::body::{QueryMap, query_map};
use super::records::query_int;
use crate::app::AppState;
use crate::error::ApiError;
use crate::routes::api::{packed_answer, ttl_secs};
use crate::routes::tiles::parse_tile;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use axum_extra::extract::cookie::SignedCookieJar;
use rplace_domain::TileId;
use rplace_store::activity::{Activity as _, read_tile};
use serde_json::json;

/// The endpoints (full paths).
pub fn public_table() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/api/tiles/{tx}/{ty}/activity", get(activity)),
        ("/api/me/pixels", get(my_pixels)),
    ]
}

/// The watermark as a header: every placement up to it is counted.
fn through_header(h: &mut HeaderMap, through: u64) {
    h.insert("x-activity-through", HeaderValue::from(through));
}

/// `GET /api/tiles/{tx}/{ty}/activity`.
async fn activity(
    State(app): State<AppState>,
    Path((tx, ty)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (id, png) = parse_tile(app.hub.dims(), &tx, &ty)?;
    if png {
        return Err(ApiError::TileNotFound {
            message: "activity is served as packed u32 only: drop the .png".into(),
            allowed: "/api/tiles/{tx}/{ty}/activity".into(),
        });
    }
    metrics::counter!("rplace_tile_requests_total", "format" => "activity").increment(1);
    let through = app.store.activity_through().await?.0;
    let v = app.activity.get(&app, id).await?;
    let mut resp = packed_answer(&app, &v, &headers, false).await?;
    let h = resp.headers_mut();
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{}\"", v.seq.0)).expect("digits"),
    );
    h.insert("x-activity-version", HeaderValue::from(v.seq.0));
    through_header(h, through);
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_str(&format!("public, max-age={}", ttl_secs(&app))).expect("ascii"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("x-activity-version, x-activity-through, etag"),
    );
    Ok(resp)
}

/// `GET /api/me/pixels?tx=..&ty=..`: by the identity cookie; none yet, no pixels.
async fn my_pixels(
    State(app): State<AppState>,
    jar: SignedCookieJar,
    q: QueryMap,
) -> Result<Response, ApiError> {
    let q = query_map(q)?;
    let dims = app.hub.dims();
    let coord = |field| -> Result<i64, ApiError> {
        query_int(&q, field, 0, i64::from(u32::MAX))?.ok_or(ApiError::InvalidQuery {
            field,
            message: format!("query parameter {field} is missing: the tile's column and row"),
        })
    };
    let (tx, ty) = (coord("tx")?, coord("ty")?);
    let id = TileId::parse(dims, tx, ty).map_err(|e| ApiError::TileNotFound {
        message: format!("no such tile: {e}"),
        allowed: super::tiles::tile_allowed(dims),
    })?;
    let through = app.store.activity_through().await?.0;
    let pixels = match crate::identity::user(&jar) {
        Some(user) => read_tile(app.store.as_ref(), id).await?.owned_by(user),
        None => Vec::new(),
    };
    let body = json!({ "tx": tx, "ty": ty, "through": through, "pixels": pixels });
    let mut resp = ([(header::CACHE_CONTROL, "private, no-store")], Json(body)).into_response();
    through_header(resp.headers_mut(), through);
    Ok(resp)
}
