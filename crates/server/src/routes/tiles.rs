//! Tiles over HTTP (docs/API.md, Tiles): `GET /api/tiles/{tx}/{ty}` (packed bytes),
//! `GET /api/tiles/{tx}/{ty}.png` (both also at a past `?seq=` or `?at=`: `past`), the overview pyramid `GET /api/tiles/{z}/{tx}/{ty}.png`
//! and per-tile catch-up `GET /api/tiles/{tx}/{ty}/updates?since=V`.
//!
//! A tile's body comes from the hub's tile cache (`crate::tile_cache`), each encoding made
//! once per served version; every unpainted tile answers with one shared body.

use crate::app::AppState;
use crate::board_cache::Version;
use crate::error::ApiError;
use crate::routes::api::{not_modified, packed_answer, ttl_secs};
use crate::routes::body::{QueryMap, query_map};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rplace_domain::tile::{OverviewId, TILE_SIZE, TileError, levels, tiles_across};
use rplace_domain::wire::encode_tile_frame;
use rplace_domain::{Dimensions, Seq, TileId};
use std::sync::Arc;

/// Most entries in one tile frame of an `/updates` body (a body may hold several).
const FRAME_ENTRIES: usize = 4096;

/// A path segment that must be a number, possibly with `.png` after it.
fn number(raw: &str, field: &'static str, allowed: impl Fn() -> String) -> Result<i64, ApiError> {
    raw.parse::<i64>().map_err(|_| ApiError::TileNotFound {
        message: format!("{field} must be an integer, got {raw:?}"),
        allowed: allowed(),
    })
}

pub(super) fn tile_allowed(dims: Dimensions) -> String {
    let (a, d) = tiles_across(dims);
    format!(
        "tx 0..={}, ty 0..={} (tiles of {TILE_SIZE} pixels on a {} x {} canvas)",
        a - 1,
        d - 1,
        dims.width(),
        dims.height()
    )
}

fn off_canvas(e: TileError, allowed: String) -> ApiError {
    ApiError::TileNotFound {
        message: format!("no such tile: {e}"),
        allowed,
    }
}

/// Parses `tx` and `ty` (maybe `N.png`) against the canvas; says whether PNG was asked.
pub(super) fn parse_tile(dims: Dimensions, tx: &str, ty: &str) -> Result<(TileId, bool), ApiError> {
    let allowed = || tile_allowed(dims);
    let (ty, png) = match ty.strip_suffix(".png") {
        Some(t) => (t, true),
        None => (ty, false),
    };
    let id = TileId::parse(dims, number(tx, "tx", allowed)?, number(ty, "ty", allowed)?)
        .map_err(|e| off_canvas(e, allowed()))?;
    Ok((id, png))
}

/// Headers of every tile representation.
fn tile_headers(h: &mut HeaderMap, version: Seq, ttl: u64) {
    h.insert("x-tile-version", HeaderValue::from(version.0));
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{}\"", version.0)).expect("digits"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_str(&format!("public, max-age={ttl}")).expect("ascii"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("x-tile-version, etag"),
    );
}

/// The packed body of `v`, negotiated and compressed once per version.
async fn raw_answer(
    app: &AppState,
    v: &Version,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let mut resp = packed_answer(app, v, headers, false).await?;
    tile_headers(resp.headers_mut(), v.seq, ttl_secs(app));
    Ok(resp)
}

/// `v` as an indexed PNG of 256² pixels, rendered once per version.
async fn png_answer(
    app: &AppState,
    v: &Version,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let mut resp = if not_modified(headers, v.seq) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let side = Dimensions::parse(u64::from(TILE_SIZE), u64::from(TILE_SIZE)).expect("256");
        let png = v
            .png(side, &app.settings.palette)
            .await
            .map_err(ApiError::unavailable)?;
        ([(header::CONTENT_TYPE, "image/png")], png).into_response()
    };
    tile_headers(resp.headers_mut(), v.seq, ttl_secs(app));
    Ok(resp)
}

/// `GET /api/tiles/{tx}/{ty}` and `GET /api/tiles/{tx}/{ty}.png`.
pub async fn tile(
    State(app): State<AppState>,
    Path((tx, ty)): Path<(String, String)>,
    q: QueryMap,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (id, png) = parse_tile(app.hub.dims(), &tx, &ty)?;
    if let Some(m) = crate::past::PastMoment::parse(&query_map(q)?)? {
        return crate::routes::past::tile(&app, id, png, m, &headers).await;
    }
    let format = if png { "png" } else { "raw" };
    metrics::counter!("rplace_tile_requests_total", "format" => format).increment(1);
    let v: Arc<Version> = app.hub.tile_body(id).await?;
    if png {
        png_answer(&app, &v, &headers).await
    } else {
        raw_answer(&app, &v, &headers).await
    }
}

/// `GET /api/tiles/{z}/{tx}/{ty}.png`: the overview pyramid (z = 0: the tile itself).
pub async fn overview(
    State(app): State<AppState>,
    Path((z, tx, ty)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let dims = app.hub.dims();
    let top = levels(dims);
    let allowed = || {
        format!(
            "z 0..={} (then tx, ty among that level's tiles, each covering 256 * 2^z pixels), as /api/tiles/{{z}}/{{tx}}/{{ty}}.png",
            top - 1
        )
    };
    let Some(ty) = ty.strip_suffix(".png") else {
        return Err(ApiError::TileNotFound {
            message: "overview tiles are PNG only: end the path with .png".into(),
            allowed: allowed(),
        });
    };
    let id = OverviewId::parse(
        dims,
        number(&z, "z", allowed)?,
        number(&tx, "tx", allowed)?,
        number(ty, "ty", allowed)?,
    )
    .map_err(|e| off_canvas(e, allowed()))?;
    metrics::counter!("rplace_tile_requests_total", "format" => "overview").increment(1);
    let v = match id.as_tile() {
        Some(t) => app.hub.tile_body(t).await?,
        None => app.overviews.get(&app.hub, &app.store, id).await?,
    };
    png_answer(&app, &v, &headers).await
}

/// `GET /api/tiles/{tx}/{ty}/updates?since=V`: the tile's placements after version V as
/// tile frames, from the recent log; 410 when it no longer reaches back to V.
pub async fn updates(
    State(app): State<AppState>,
    Path((tx, ty)): Path<(String, String)>,
    q: QueryMap,
) -> Result<Response, ApiError> {
    let dims = app.hub.dims();
    let allowed = || tile_allowed(dims);
    let id = TileId::parse(
        dims,
        number(&tx, "tx", allowed)?,
        number(&ty, "ty", allowed)?,
    )
    .map_err(|e| off_canvas(e, allowed()))?;
    let q = query_map(q)?;
    let raw = q.get("since").ok_or(ApiError::InvalidQuery {
        field: "since",
        message: "query parameter since is missing: the tile version you have (0 for none)".into(),
    })?;
    let since = raw
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|v| *v <= i64::MAX as u64)
        .ok_or_else(|| ApiError::InvalidQuery {
            field: "since",
            message: format!("since must be a tile version from 0, got {raw:?}"),
        })?;
    let Some((ups, version)) = app.hub.tile_updates(id, Seq(since)).await? else {
        return Err(ApiError::TileGone { since });
    };
    let mut body = Vec::new();
    let mut prev = Seq(since);
    for chunk in ups.chunks(FRAME_ENTRIES) {
        body.extend_from_slice(&encode_tile_frame(id, prev, chunk));
        prev = chunk.last().map_or(prev, |u| u.version);
    }
    let mut resp = (
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response();
    let h = resp.headers_mut();
    h.insert("x-tile-version", HeaderValue::from(version.0));
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("x-tile-version"),
    );
    Ok(resp)
}
