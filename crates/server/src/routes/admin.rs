//! Operator and moderator endpoints under `/api/admin/`.
//!
//! Every request here passes [`authenticate`] first, unknown paths included (they answer
//! 404 only after it), so probing reveals nothing about which endpoints exist. It puts
//! the request's [`Actor`] into the request's extensions; each handler then asks for the
//! role it needs ([`Actor::require`]). Each area's endpoints are listed in its own file
//! and joined in [`table`].

use crate::app::AppState;
use crate::auth::{Actor, Role};
use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use axum::{Extension, Json, Router};
use rplace_store::Backend;
use serde_json::json;
use std::time::Instant;

/// Where the admin endpoints are mounted.
pub const PREFIX: &str = "/api/admin";

/// The admin endpoints, relative to [`PREFIX`].
pub fn table() -> Vec<(&'static str, MethodRouter<AppState>)> {
    let mut t = vec![
        ("/status", get(status)),
        ("/canvas", axum::routing::post(grow_canvas)),
    ];
    t.extend(super::moderation::table());
    t.extend(super::rewrite::table());
    t.extend(super::records::admin_table());
    t.extend(crate::auth::routes::admin_table());
    t
}

/// When this server started, for `uptime_s`.
#[derive(Clone, Copy)]
struct Started(Instant);

pub fn router(state: AppState) -> Router<AppState> {
    table()
        .into_iter()
        .fold(Router::new(), |r, (p, m)| r.route(p, m))
        .fallback(not_found)
        .layer(Extension(Started(Instant::now())))
        .layer(axum::middleware::from_fn_with_state(state, authenticate))
}

/// `route` behind [`authenticate`].
pub fn guarded(state: AppState, route: MethodRouter<AppState>) -> MethodRouter<AppState> {
    route.layer(axum::middleware::from_fn_with_state(state, authenticate))
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// Lets a request through only with an actor ([`crate::auth::admin_request`]: the admin
/// token, or a moderator's or admin's session that passes the CSRF check), which it puts
/// into the request's extensions for the handler. Without credentials: 401 (403
/// `admin_disabled` when nothing could authenticate: no admin token and no login).
pub async fn authenticate(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    if !crate::auth::admin_possible(&app) {
        return ApiError::AdminDisabled.into_response();
    }
    let actor = match crate::auth::admin_request(&app, req.method(), req.headers()).await {
        Ok(Some(actor)) => actor,
        Ok(None) => {
            metrics::counter!("rplace_admin_auth_failures_total").increment(1);
            return ApiError::AdminCredentialsRequired.into_response();
        }
        Err(e) => {
            metrics::counter!("rplace_admin_auth_failures_total").increment(1);
            return e.into_response();
        }
    };
    req.extensions_mut().insert(actor);
    next.run(req).await
}

/// `GET /api/admin/status`: what an operator checks first.
async fn status(
    State(app): State<AppState>,
    Extension(started): Extension<Started>,
    Extension(actor): Extension<Actor>,
) -> Result<Response, ApiError> {
    actor.require(Role::Moderator)?;
    let backend = match &*app.store {
        Backend::Embedded(_) => "embedded",
        Backend::Shared(_) => "shared",
    };
    let dims = app.hub.dims();
    Ok((
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "width": dims.width(),
            "height": dims.height(),
            "seq": app.hub.seq().0,
            "ws_clients": app.hub.clients(),
            "backend": backend,
            "draining": app.is_draining(),
            "uptime_s": started.0.elapsed().as_secs_f64(),
        })),
    )
        .into_response())
}

/// `POST /api/admin/canvas` `{"width":..,"height":..}`: grows the canvas at run time
/// (admins only). Nothing painted moves; every websocket client gets a `canvas` message
/// (on every instance: the store's feed says `Grown`).
async fn grow_canvas(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    use rplace_domain::board::MAX_SIDE;
    use rplace_store::{Store, StoreError};
    actor.require(Role::Admin)?;
    let obj = crate::routes::body::json_object(&body, r#"{"width":2000,"height":2000}"#)?;
    let now = app.hub.dims();
    let allowed = |n: u32| format!("integer {n}..={MAX_SIDE} (the canvas may only grow)");
    let w = crate::routes::body::int_field(&obj, "width", allowed(now.width()))?;
    let h = crate::routes::body::int_field(&obj, "height", allowed(now.height()))?;
    for (field, v, cur) in [("width", w, now.width()), ("height", h, now.height())] {
        if v > i64::from(MAX_SIDE) {
            return Err(ApiError::InvalidSize {
                field,
                message: format!("{field} may be at most {MAX_SIDE}, got {v}"),
                allowed: allowed(cur),
            });
        }
        if v < i64::from(cur) {
            return Err(ApiError::CannotShrink(format!(
                "{field} is {cur} now and a canvas cannot shrink, got {v}; send {}",
                allowed(cur)
            )));
        }
    }
    let to = rplace_domain::Dimensions::parse(w as u64, h as u64).map_err(|e| {
        ApiError::InvalidSize {
            field: "width",
            message: e.to_string(),
            allowed: allowed(now.width()),
        }
    })?;
    let got = match app.store.grow(to).await {
        Ok(d) => d,
        // Another instance grew it further meanwhile, or this store cannot grow.
        Err(StoreError::Config(m)) => {
            return Err(ApiError::Status {
                status: axum::http::StatusCode::CONFLICT,
                message: m,
            });
        }
        Err(e) => return Err(e.into()),
    };
    app.hub.grown(got);
    crate::audit::record(
        &app,
        &actor,
        crate::audit::Action {
            kind: "canvas.grow",
            reason: None,
            pixels: 0,
            detail: json!({
                "from": {"width": now.width(), "height": now.height()},
                "to": {"width": got.width(), "height": got.height()},
            }),
        },
    )
    .await?;
    Ok((
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(json!({ "width": got.width(), "height": got.height() })),
    )
        .into_response())
}
