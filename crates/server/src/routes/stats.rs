//! Presence, counts and the leaderboard (see `crate::stats`):
//! - `GET /api/stats`: people online, placements in all, per color, distinct placers.
//! - `GET /api/stats/me`: the visitor's own placements and whether they are listed.
//! - `GET /api/leaderboard?limit=N`: accounts that opted in, most placements first.
//! - `PUT /api/me/leaderboard` `{"show": true|false}`: opt in or out (logged in, with a
//!   display name).

use super::body::{QueryMap, bool_field, json_body, query_map};
use crate::app::AppState;
use crate::auth::session;
use crate::error::ApiError;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, put};
use axum_extra::extract::cookie::SignedCookieJar;
use rplace_store::stats::{LEADERBOARD_MAX, Listing, Stats as _};
use serde_json::{Value, json};

/// Entries `GET /api/leaderboard` lists without `limit`.
const LEADERBOARD_DEFAULT: i64 = 20;
/// Largest `PUT /api/me/leaderboard` body.
const SHOW_BODY_LIMIT: usize = 256;

/// The endpoints (full paths).
pub fn public_table() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/api/stats", get(stats)),
        ("/api/stats/me", get(mine)),
        ("/api/leaderboard", get(leaderboard)),
        ("/api/me/leaderboard", put(set_shown)),
    ]
}

/// Shared answers may be cached as briefly as the board: they change as often.
fn public_cache(app: &AppState) -> String {
    format!("public, max-age={}", app.settings.board_ttl.as_secs())
}

/// `GET /api/stats`.
async fn stats(State(app): State<AppState>) -> Result<Response, ApiError> {
    let t = app.presence.totals(&app.store).await?;
    let palette = app.settings.palette.colors();
    let mut per_color = vec![0u64; palette.len()];
    for (c, n) in &t.colors {
        if let Some(slot) = per_color.get_mut(usize::from(*c)) {
            *slot = *n;
        }
    }
    let colors: Vec<Value> = palette
        .iter()
        .zip(per_color)
        .enumerate()
        .map(|(i, (rgb, n))| json!({ "color": i, "hex": rgb.to_hex(), "placements": n }))
        .collect();
    let body = json!({
        "online": app.presence.online(&app),
        "placements": t.placements,
        "placers": t.placers,
        "counted_through": t.through.0,
        "seq": app.hub.seq().0,
        "colors": colors,
    });
    Ok(([(header::CACHE_CONTROL, public_cache(&app))], Json(body)).into_response())
}

/// `GET /api/stats/me`: by the visitor's identity cookie (none yet: nothing placed).
async fn mine(State(app): State<AppState>, jar: SignedCookieJar) -> Result<Response, ApiError> {
    let body = match crate::identity::user(&jar) {
        Some(user) => {
            let u = app.store.user_totals(user).await?;
            json!({
                "user": user.to_string(),
                "placements": u.placements,
                "last_at": u.last_ms,
                "leaderboard": u.listed,
            })
        }
        None => json!({ "user": null, "placements": 0, "last_at": null, "leaderboard": false }),
    };
    Ok(([(header::CACHE_CONTROL, "private, no-store")], Json(body)).into_response())
}

/// `GET /api/leaderboard?limit=N` (1 to [`LEADERBOARD_MAX`]).
async fn leaderboard(State(app): State<AppState>, q: QueryMap) -> Result<Response, ApiError> {
    let q = query_map(q)?;
    let limit = super::records::query_int(&q, "limit", 1, LEADERBOARD_MAX as i64)?
        .unwrap_or(LEADERBOARD_DEFAULT) as usize;
    let through = app.presence.totals(&app.store).await?.through;
    let entries: Vec<Value> = app
        .presence
        .leaderboard(&app.store, limit)
        .await?
        .into_iter()
        .enumerate()
        .map(|(i, r)| json!({ "rank": i + 1, "name": r.name, "placements": r.placements }))
        .collect();
    let body = json!({ "entries": entries, "counted_through": through.0 });
    Ok(([(header::CACHE_CONTROL, public_cache(&app))], Json(body)).into_response())
}

/// `PUT /api/me/leaderboard` `{"show": bool}`.
async fn set_shown(
    State(app): State<AppState>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let s = session::current(&app, &headers)
        .await?
        .ok_or(ApiError::NotLoggedIn)?;
    session::check_csrf(&app, &method, &headers, &s)?;
    let obj = json_body(&app, &headers, body, SHOW_BODY_LIMIT, r#"{"show": true}"#).await?;
    let show = bool_field(&obj, "show")?;
    if show && s.account.name.is_none() {
        return Err(ApiError::NameRequired);
    }
    match app.store.set_listed(s.account.id, show).await? {
        Listing::Set => {}
        Listing::NoAccount => return Err(ApiError::NotLoggedIn),
    }
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "leaderboard": show })),
    )
        .into_response())
}
