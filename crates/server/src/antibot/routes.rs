//! The challenge endpoint: `GET /api/pow`.

use crate::app::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use axum_extra::extract::cookie::SignedCookieJar;

/// The public endpoints (full paths).
pub fn public_table() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![("/api/pow", get(challenge))]
}

/// A fresh challenge for the caller's identity (minted here if it has none, as
/// `GET /api/config` does). 404 with `--pow off`: there is nothing to solve.
pub async fn challenge(
    State(app): State<AppState>,
    jar: SignedCookieJar,
) -> Result<Response, ApiError> {
    let (jar, user) = crate::identity::ensure(jar, app.settings.access.secure_cookies);
    let issued = app
        .antibot
        .issue(user, rplace_store::now_ms())
        .ok_or(ApiError::Status {
            status: axum::http::StatusCode::NOT_FOUND,
            message: "proof of work is off on this canvas (--pow off)".into(),
        })?;
    Ok((jar, [(header::CACHE_CONTROL, "no-store")], Json(issued)).into_response())
}
