//! The board and tiles at a past moment: what `GET /api/board`, `/api/board.png`,
//! `/api/tiles/{tx}/{ty}` and its `.png` answer when the query has `seq=S` or `at=T`
//! (docs/API.md, "The canvas at a past moment"; bounds and caching in [`crate::past`]).
//! The bodies have the live answers' layouts; `X-Board-Seq` says which moment it is.

use crate::app::AppState;
use crate::board_cache::Version;
use crate::error::ApiError;
use crate::past::PastMoment;
use crate::routes::api::{not_modified, packed_answer, ttl_secs};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use rplace_domain::tile::TILE_SIZE;
use rplace_domain::{Dimensions, Seq, Tile, TileId};
use rplace_store::past::{Moment, Past, PastError};

/// A year: answers about a fixed seq never change.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

fn past_error(e: PastError) -> ApiError {
    match e {
        PastError::OutOfRange { asked, head } => ApiError::PastOutOfRange {
            asked: asked.0,
            head: head.0,
        },
        PastError::CatchingUp { asked, through, .. } => ApiError::PastCatchingUp {
            asked: asked.0,
            through: through.0,
        },
        PastError::Store(e) => ApiError::unavailable(e),
    }
}

/// The seq of `m` and whether answers about it can never change: a seq always; a time
/// only if a placement after it exists already (times grow with seqs).
async fn resolve(app: &AppState, m: PastMoment) -> Result<(Seq, bool), ApiError> {
    let seq = app.store.resolve(m.0).await.map_err(past_error)?;
    let fixed = match m.0 {
        Moment::Seq(_) => true,
        Moment::At(_) => {
            let head = app
                .store
                .past_status()
                .await
                .map_err(ApiError::unavailable)?
                .head;
            seq < head
        }
    };
    Ok((seq, fixed))
}

fn headers(h: &mut HeaderMap, app: &AppState, seq: Seq, tag: Seq, fixed: bool, tile: bool) {
    h.insert("x-board-seq", HeaderValue::from(seq.0));
    if tile {
        h.insert("x-tile-version", HeaderValue::from(tag.0));
    }
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{}\"", tag.0)).expect("digits"),
    );
    let cache = if fixed {
        HeaderValue::from_static(IMMUTABLE)
    } else {
        HeaderValue::from_str(&format!("public, max-age={}", ttl_secs(app))).expect("ascii")
    };
    h.insert(header::CACHE_CONTROL, cache);
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("x-board-seq, x-tile-version, etag"),
    );
}

/// `v` packed (negotiated encoding) or as a PNG of `side`.
async fn body(
    app: &AppState,
    v: &Version,
    png: Option<Dimensions>,
    req: &HeaderMap,
) -> Result<Response, ApiError> {
    let Some(side) = png else {
        return packed_answer(app, v, req, false).await;
    };
    if not_modified(req, v.seq) {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let png = v
        .png(side, &app.settings.palette)
        .await
        .map_err(ApiError::unavailable)?;
    Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
}

/// Tile `id` at moment `m`; `X-Tile-Version` and the ETag are the tile's version then.
pub async fn tile(
    app: &AppState,
    id: TileId,
    png: bool,
    m: PastMoment,
    req: &HeaderMap,
) -> Result<Response, ApiError> {
    let _permit = app.past.try_start()?;
    metrics::counter!("rplace_past_requests_total", "what" => "tile").increment(1);
    let (seq, fixed) = resolve(app, m).await?;
    let read = app
        .store
        .tile_at(id, seq, app.past.tail)
        .await
        .map_err(past_error)?;
    let depth = app.settings.palette.depth();
    let raw = read.pixels.unwrap_or_else(|| Tile::new(depth)).into_bytes();
    let v = Version::new(read.version, Bytes::from(raw));
    let side = Dimensions::parse(u64::from(TILE_SIZE), u64::from(TILE_SIZE)).expect("256");
    let mut resp = body(app, &v, png.then_some(side), req).await?;
    headers(resp.headers_mut(), app, seq, read.version, fixed, true);
    Ok(resp)
}

/// The whole board at moment `m` (the caller checked that it is served whole).
pub async fn board(
    app: &AppState,
    dims: Dimensions,
    png: bool,
    m: PastMoment,
    req: &HeaderMap,
) -> Result<Response, ApiError> {
    let _permit = app.past.try_start()?;
    metrics::counter!("rplace_past_requests_total", "what" => "board").increment(1);
    let (seq, fixed) = resolve(app, m).await?;
    // The ETag is the seq: a revalidation needs no board.
    if not_modified(req, seq) {
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        headers(resp.headers_mut(), app, seq, seq, fixed, false);
        return Ok(resp);
    }
    let snap = app
        .store
        .board_at(seq, app.past.tail)
        .await
        .map_err(past_error)?;
    let v = Version::new(seq, Bytes::from(snap.board.as_bytes().to_vec()));
    let mut resp = body(app, &v, png.then_some(dims), req).await?;
    headers(resp.headers_mut(), app, seq, seq, fixed, false);
    Ok(resp)
}
