//! Templates: `POST /api/templates` (anyone with an identity uploads a PNG to place at a
//! position), `GET /api/templates/{id}` (its metadata), `GET /api/templates/{id}.png` (the
//! palette-mapped image, from this origin, so pages never need a CORS proxy), `DELETE
//! /api/templates/{id}` (its owner or a moderator) and `GET /api/templates` (the caller's
//! own). See docs/API.md, "Templates".
//!
//! - this file: the routes, who may do what, and the limits.
//! - [`image`]: decoding an upload (its size checked on the header first) and encoding
//!   the mapped image. The mapping itself is `rplace_domain::template`.

pub mod image;

use crate::app::AppState;
use crate::audit::{self, Action};
use crate::auth::{Actor, Role, Via};
use crate::error::ApiError;
use crate::routes::body::{QueryMap, query_map, read_body};
use crate::serve::Peer;
use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use axum_extra::extract::cookie::SignedCookieJar;
use rplace_domain::UserId;
use rplace_domain::template::{self as domain, TemplateImage};
use rplace_store::moderation::{BanTarget, MAX_ACTIVE_BANS, Moderation};
use rplace_store::templates::{Added, NewTemplate, TemplateLimits, TemplateMeta, Templates};
use serde_json::{Value, json};
use std::net::IpAddr;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Largest upload, in bytes.
pub const BODY_MAX: usize = 1024 * 1024;
/// What each identity and the whole canvas may store.
pub const LIMITS: TemplateLimits = TemplateLimits {
    per_user: 20,
    per_hour: 10,
    total: 2000,
};
/// Uploads decoded at once in this process: decoding a 2048² image takes a core for a
/// moment, and the blocking pool must stay free for the store.
static DECODING: Semaphore = Semaphore::const_new(2);
/// How long an upload waits for a decoding slot before it is told to retry.
const DECODE_WAIT: Duration = Duration::from_secs(5);
/// Tries at a fresh random id when one collides.
const ID_TRIES: usize = 3;

/// Why a template request was refused (beyond the errors every endpoint shares).
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error(transparent)]
    Image(#[from] image::ImageError),
    #[error(transparent)]
    Domain(#[from] domain::TemplateError),
    #[error("you have {max} templates, as many as one identity may keep; delete one first")]
    TooMany { max: u32 },
    #[error("you uploaded {max} templates in the last hour; retry in {} s", (*retry_after_ms).max(0).unsigned_abs().div_ceil(1000))]
    RateLimited { max: u32, retry_after_ms: i64 },
    #[error("this canvas keeps {max} templates, as many as it may; retry when some are deleted")]
    Full { max: u32 },
    #[error("only the template's owner or a moderator may delete it")]
    NotOwner,
    #[error("too many uploads are being decoded; retry in a moment")]
    Busy,
}

impl TemplateError {
    /// Status and `error` code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use domain::TemplateError as D;
        use image::ImageError as I;
        match self {
            TemplateError::Image(I::NotPng | I::Corrupt(_)) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_image")
            }
            TemplateError::Image(I::Size(_)) | TemplateError::Domain(D::BadSize { .. }) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "image_too_large")
            }
            TemplateError::Domain(D::OffCanvas { .. }) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "off_canvas")
            }
            TemplateError::Domain(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_image"),
            TemplateError::TooMany { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_templates"),
            TemplateError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            TemplateError::Full { .. } => (StatusCode::SERVICE_UNAVAILABLE, "templates_full"),
            TemplateError::NotOwner => (StatusCode::FORBIDDEN, "forbidden"),
            TemplateError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
        }
    }

    /// What is allowed, for the body's `allowed`.
    pub fn allowed(&self) -> Option<String> {
        let side = domain::MAX_SIDE;
        match self {
            TemplateError::Image(image::ImageError::Size(_))
            | TemplateError::Domain(domain::TemplateError::BadSize { .. }) => {
                Some(format!("1 to {side} pixels on each side"))
            }
            TemplateError::Image(_) => Some("a PNG image (Content-Type: image/png)".into()),
            TemplateError::Domain(domain::TemplateError::OffCanvas {
                canvas_w, canvas_h, ..
            }) => Some(format!(
                "x + width <= {canvas_w} and y + height <= {canvas_h}"
            )),
            TemplateError::TooMany { max } => Some(format!("at most {max} templates per identity")),
            TemplateError::RateLimited { max, .. } => {
                Some(format!("at most {max} uploads an hour"))
            }
            TemplateError::Full { max } => Some(format!("at most {max} templates on this canvas")),
            _ => None,
        }
    }

    /// When a retry may succeed, in ms.
    pub fn retry_after_ms(&self) -> Option<i64> {
        match self {
            TemplateError::RateLimited { retry_after_ms, .. } => Some(*retry_after_ms),
            TemplateError::Busy => Some(1000),
            _ => None,
        }
    }
}

/// The endpoints (full paths). `{id}` also matches `{id}.png`, which the GET handler
/// tells apart (the router's segments are whole).
pub fn public_table() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/api/templates", get(list_mine).post(upload)),
        ("/api/templates/{id}", get(read).delete(delete)),
    ]
}

/// A template as the API shows it.
pub fn meta_json(t: &TemplateMeta) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "x": t.x,
        "y": t.y,
        "width": t.width,
        "height": t.height,
        "owner": t.owner.to_string(),
        "created_at": t.created_ms,
    })
}

fn no_such(id: &str) -> ApiError {
    ApiError::NoSuch {
        what: "template",
        id: id.chars().take(40).collect(),
    }
}

/// An integer query parameter `0..=max`.
fn coord_param(
    q: &std::collections::HashMap<String, String>,
    field: &'static str,
    max: u32,
) -> Result<u32, ApiError> {
    let raw = q.get(field).ok_or_else(|| ApiError::InvalidQuery {
        field,
        message: format!("query parameter {field} is missing; send an integer 0..={max}"),
    })?;
    raw.trim()
        .parse::<u32>()
        .ok()
        .filter(|v| *v <= max)
        .ok_or_else(|| ApiError::InvalidQuery {
            field,
            message: format!("{field} must be an integer 0..={max}, got {raw:?}"),
        })
}

/// Refuses a banned identity (any of its account's) or address, as placing does.
async fn check_not_banned(app: &AppState, user: UserId, ip: IpAddr) -> Result<(), ApiError> {
    let now = rplace_store::now_ms();
    let bans = app.store.bans(false, now, MAX_ACTIVE_BANS).await?;
    if bans.is_empty() {
        return Ok(());
    }
    let mine = crate::auth::identities_of(app, user).await?;
    let hit = bans.into_iter().find(|b| {
        b.is_active_at(now)
            && match &b.target {
                BanTarget::User { identities, .. } => identities.iter().any(|u| mine.contains(u)),
                BanTarget::Net(net) => net.contains(ip),
            }
    });
    match hit {
        Some(b) => Err(ApiError::Banned {
            reason: b.reason,
            until: b.until_ms,
        }),
        None => Ok(()),
    }
}

/// `POST /api/templates?x=..&y=..&name=..` with a PNG body.
async fn upload(
    State(app): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    jar: SignedCookieJar,
    q: QueryMap,
    body: Body,
) -> Result<Response, ApiError> {
    let q = query_map(q)?;
    let dims = app.hub.dims();
    let x = coord_param(&q, "x", dims.width() - 1)?;
    let y = coord_param(&q, "y", dims.height() - 1)?;
    let name = domain::parse_name(q.get("name").map_or("", String::as_str)).map_err(|e| {
        ApiError::InvalidQuery {
            field: "name",
            message: e.to_string(),
        }
    })?;
    let owner = crate::auth::placer(&app, &headers, crate::identity::user(&jar))
        .await?
        .user;
    let ip = crate::client_addr::client_ip(&app.settings.trusted_proxies, peer.ip(), &headers)?;
    check_not_banned(&app, owner, ip).await?;
    let bytes = read_body(&app, &headers, body, "image/png", BODY_MAX).await?;

    let slot = tokio::time::timeout(DECODE_WAIT, DECODING.acquire())
        .await
        .map_err(|_| TemplateError::Busy)?
        .expect("the semaphore is never closed");
    let palette = app.settings.palette.clone();
    let mapped = tokio::task::spawn_blocking(move || -> Result<_, TemplateError> {
        let (w, h, rgba) = image::decode(&bytes)?;
        domain::check_fits(dims, x, y, w, h)?;
        let img = TemplateImage::from_rgba(&palette, w, h, &rgba)?;
        let png = image::encode(&palette, &img).map_err(ApiError::unavailable);
        Ok(png)
    })
    .await
    .map_err(ApiError::unavailable)??;
    let png = mapped?;
    drop(slot);

    let (width, height) = png_size(&png);
    for _ in 0..ID_TRIES {
        let meta = TemplateMeta {
            id: domain::id_from(rand::random()),
            name: name.clone(),
            x,
            y,
            width,
            height,
            owner,
            created_ms: rplace_store::now_ms(),
        };
        let added = app
            .store
            .add_template(
                NewTemplate {
                    meta: meta.clone(),
                    png: png.clone(),
                },
                LIMITS,
            )
            .await?;
        let refused = match added {
            Added::Added => {
                tracing::info!(id = %meta.id, owner = %owner, width, height, "template uploaded");
                metrics::counter!("rplace_templates_uploaded_total").increment(1);
                let mut resp = (StatusCode::CREATED, Json(meta_json(&meta))).into_response();
                let location = format!("/api/templates/{}", meta.id);
                resp.headers_mut().insert(
                    header::LOCATION,
                    HeaderValue::from_str(&location).expect("ids are ascii"),
                );
                return Ok(resp);
            }
            Added::IdTaken => continue,
            Added::TooManyOfUser => TemplateError::TooMany {
                max: LIMITS.per_user,
            },
            Added::RateLimited { retry_after_ms } => TemplateError::RateLimited {
                max: LIMITS.per_hour,
                retry_after_ms,
            },
            Added::Full => TemplateError::Full { max: LIMITS.total },
        };
        return Err(refused.into());
    }
    Err(ApiError::unavailable(std::io::Error::other(
        "template ids collided on every try",
    )))
}

/// Width and height from a PNG this module encoded (its IHDR is at a fixed place).
fn png_size(png: &[u8]) -> (u32, u32) {
    let be = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().expect("4 bytes"));
    (be(16), be(20))
}

/// `GET /api/templates/{id}` (JSON) and `GET /api/templates/{id}.png` (the image).
async fn read(
    State(app): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (id, png) = match raw.strip_suffix(".png") {
        Some(id) => (id, true),
        None => (raw.as_str(), false),
    };
    if !domain::is_id(id) {
        return Err(no_such(id));
    }
    if !png {
        let meta = app.store.template(id).await?.ok_or_else(|| no_such(id))?;
        // Short: a template never changes, but a deletion should show soon.
        return Ok((
            [(header::CACHE_CONTROL, "public, max-age=60")],
            Json(meta_json(&meta)),
        )
            .into_response());
    }
    let etag = format!("\"{id}\"");
    let cache = [
        (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        (header::ETAG, etag.as_str()),
    ];
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    // A revalidation is answered only for a template that still exists.
    let Some(bytes) = app.store.template_png(id).await? else {
        return Err(no_such(id));
    };
    if matches {
        return Ok((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    Ok((cache, [(header::CONTENT_TYPE, "image/png")], bytes).into_response())
}

/// Who asks to delete: a moderator (the admin token, or a session of an account with a
/// role, CSRF-checked), else the identity of the session or the cookie.
async fn deleter(
    app: &AppState,
    headers: &HeaderMap,
    jar: &SignedCookieJar,
) -> Result<(Option<Actor>, UserId), ApiError> {
    if crate::secret::bearer(headers).is_some() {
        let actor = crate::auth::actor(app, headers)
            .await?
            .expect("a bearer token authenticates or errs");
        return Ok((Some(actor.clone()), actor.user));
    }
    if let Some(s) = crate::auth::session::current(app, headers).await? {
        let user = s.account.user;
        if let Some(role) = app.auth.role_of(&s.account) {
            crate::auth::session::check_csrf(app, &Method::DELETE, headers, &s)?;
            let actor = Actor {
                user,
                role,
                via: Via::Session,
                name: crate::auth::display_name(&s.account),
            };
            return Ok((Some(actor), user));
        }
        return Ok((None, user));
    }
    let user = crate::identity::user(jar).ok_or(ApiError::Unauthorized)?;
    Ok((None, user))
}

/// `DELETE /api/templates/{id}`: its owner (any identity of the owner's account), or a
/// moderator, which the audit log records.
async fn delete(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    jar: SignedCookieJar,
) -> Result<Response, ApiError> {
    if !domain::is_id(&id) {
        return Err(no_such(&id));
    }
    let (moderator, user) = deleter(&app, &headers, &jar).await?;
    let meta = app.store.template(&id).await?.ok_or_else(|| no_such(&id))?;
    let owns = meta.owner == user
        || crate::auth::identities_of(&app, meta.owner)
            .await?
            .contains(&user);
    let by_role = match (&moderator, owns) {
        (_, true) => None,
        (Some(actor), false) if actor.role >= Role::Moderator => Some(actor),
        _ => return Err(TemplateError::NotOwner.into()),
    };
    if !app
        .store
        .delete_template(&id, rplace_store::now_ms())
        .await?
    {
        return Err(no_such(&id));
    }
    let detail = meta_json(&meta);
    if let Some(actor) = by_role {
        audit::record(
            &app,
            actor,
            Action {
                kind: "delete_template",
                reason: None,
                pixels: 0,
                detail: detail.clone(),
            },
        )
        .await?;
    }
    tracing::info!(id = %id, by = %user, moderator = by_role.is_some(), "template deleted");
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "deleted": detail })),
    )
        .into_response())
}

/// `GET /api/templates`: the caller's own templates, newest first.
async fn list_mine(
    State(app): State<AppState>,
    headers: HeaderMap,
    jar: SignedCookieJar,
) -> Result<Response, ApiError> {
    let user = crate::auth::placer(&app, &headers, crate::identity::user(&jar))
        .await?
        .user;
    let list = app.store.templates_of(user).await?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "templates": list.iter().map(meta_json).collect::<Vec<_>>() })),
    )
        .into_response())
}
