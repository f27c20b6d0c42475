//! Moderation changes made of many placements: `/api/admin/rollback`, `/api/admin/restore`,
//! `/api/admin/fill`, `/api/admin/stamp`, and the user lookup `/api/admin/users/{id}`.
//!
//! Each change is planned by the store ([`rplace_store::rewrite`]); with `preview` the plan
//! is answered and nothing changes, else it is applied as ordinary placements by the
//! moderator and recorded in the audit log. Every answer has the same shape: how many
//! pixels change, their bounding box and a PNG of that box with each changed pixel in its
//! new color, which the admin page draws on the canvas.

mod image;

use crate::app::AppState;
use crate::audit;
use crate::auth::{Actor, Role};
use crate::error::ApiError;
use crate::routes::body::{json_body, opt_bool, opt_int, read_body};
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use base64::Engine;
use rplace_domain::{ColorIndex, Coord, Rect, Seq, UserId};
use rplace_store::rewrite::{
    Applied, Moment, Plan, Rewrite, RewriteError, RollbackQuery, USER_PIXELS_LIMIT,
};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// Largest JSON body of these endpoints.
const JSON_LIMIT: usize = 4096;
/// Largest stamp image, bytes.
pub const STAMP_LIMIT: usize = 4 << 20;
/// Longest reason, characters.
const REASON_MAX: usize = 500;

/// This area's endpoints, relative to `/api/admin`.
pub fn table() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/rollback", post(rollback)),
        ("/restore", post(restore)),
        ("/fill", post(fill)),
        ("/stamp", post(stamp)),
        ("/users/{id}", get(user)),
    ]
}

fn invalid(field: &'static str, message: String, allowed: &str) -> ApiError {
    ApiError::InvalidField {
        field,
        message,
        allowed: allowed.into(),
    }
}

fn reason(o: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    let allowed = &format!("a string of at most {REASON_MAX} characters");
    match o.get("reason") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= REASON_MAX => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(invalid(
            "reason",
            format!("reason is longer than {REASON_MAX} characters"),
            allowed,
        )),
        Some(v) => Err(invalid(
            "reason",
            format!("reason must be a string, got {v}"),
            allowed,
        )),
    }
}

/// A rectangle field `{x, y, w, h}` on the board.
fn rect(
    app: &AppState,
    o: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<Rect>, ApiError> {
    let dims = app.hub.dims();
    let allowed = format!(
        "{{\"x\",\"y\",\"w\",\"h\"}} within the {}x{} board",
        dims.width(),
        dims.height()
    );
    let r = match o.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(r)) => r,
        Some(v) => {
            return Err(invalid(
                field,
                format!("{field} must be an object, got {v}"),
                &allowed,
            ));
        }
    };
    let mut v = [0i64; 4];
    for (slot, name) in v.iter_mut().zip(["x", "y", "w", "h"]) {
        *slot = match r.get(name).and_then(Value::as_i64) {
            Some(n) => n,
            None => {
                return Err(invalid(
                    field,
                    format!("{field}.{name} must be an integer"),
                    &allowed,
                ));
            }
        };
    }
    Rect::parse(dims, v[0], v[1], v[2], v[3])
        .map(Some)
        .map_err(|e| invalid(field, format!("{field}.{e}"), &allowed))
}

fn need_rect(app: &AppState, o: &Map<String, Value>) -> Result<Rect, ApiError> {
    rect(app, o, "rect")?.ok_or_else(|| ApiError::MissingField {
        field: "rect",
        allowed: "{\"x\",\"y\",\"w\",\"h\"} on the board".into(),
    })
}

fn parse_user(raw: &str) -> Result<UserId, ApiError> {
    UserId::parse(raw).ok_or_else(|| {
        invalid(
            "user",
            format!("user must be a public id of 16 hex digits, got {raw:?}"),
            "16 hex digits, as GET /api/pixel shows",
        )
    })
}

impl From<RewriteError> for ApiError {
    fn from(e: RewriteError) -> Self {
        match e {
            RewriteError::TooLarge { limit, found } => ApiError::Status {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                message: format!(
                    "this change touches at least {found} pixels, more than --max-rewrite-pixels \
                     allows ({limit}); narrow it by rect or time range"
                ),
            },
            e @ RewriteError::Interrupted { .. } => ApiError::unavailable(e),
            RewriteError::Store(s) => s.into(),
        }
    }
}

/// What an action is, for its answer and its audit entry.
struct Action {
    /// The audit kind.
    kind: &'static str,
    /// The moderator's reason.
    reason: Option<String>,
    /// Only answer what would change.
    preview: bool,
    /// The action's parameters for the audit log.
    detail: Value,
}

/// Answers `plan` (previewed or applied) in the common shape, applying and auditing it
/// unless it is a preview.
async fn finish(
    app: &AppState,
    actor: &Actor,
    plan: Plan,
    action: Action,
) -> Result<Response, ApiError> {
    let limit = app.config.moderation.max_rewrite_pixels;
    if plan.changes.len() as u64 > limit {
        return Err(RewriteError::TooLarge {
            limit,
            found: plan.changes.len() as u64,
        }
        .into());
    }
    let applied = if action.preview {
        None
    } else {
        let started = std::time::Instant::now();
        let applied = app.store.apply(&plan, actor.user).await?;
        tracing::info!(
            kind = action.kind,
            pixels = plan.changes.len() - applied.skipped.len(),
            skipped = applied.skipped.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "moderation change applied"
        );
        Some(applied)
    };
    let skipped: std::collections::HashSet<usize> = applied
        .as_ref()
        .map(|a| a.skipped.iter().copied().collect())
        .unwrap_or_default();
    let changed = || {
        plan.changes
            .iter()
            .enumerate()
            .filter(|(i, _)| !skipped.contains(i))
            .map(|(_, c)| c)
    };
    let pixels = changed().count() as u64;
    let bbox = image::bbox(changed().map(|c| c.coord));
    let png = match bbox {
        Some(b) => {
            let bytes = image::diff_png(b, changed(), &app.settings.palette)
                .map_err(ApiError::unavailable)?;
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        None => Value::Null,
    };
    let Applied {
        first_seq,
        last_seq,
        skipped: _,
    } = applied.clone().unwrap_or_default();
    let mut body = json!({
        "pixels": pixels,
        "bbox": bbox,
        "png": png,
        "applied": applied.is_some(),
        "first_seq": first_seq.map(|s| s.0),
        "last_seq": last_seq.map(|s| s.0),
        "skipped": skipped.len(),
        "seq": plan.at.0,
    });
    if applied.is_some() {
        let mut detail = action.detail;
        detail["first_seq"] = json!(first_seq.map(|s| s.0));
        detail["last_seq"] = json!(last_seq.map(|s| s.0));
        detail["skipped"] = json!(skipped.len());
        audit::record(
            app,
            actor,
            audit::Action {
                kind: action.kind,
                reason: action.reason.as_deref(),
                pixels,
                detail,
            },
        )
        .await?;
    } else {
        body["skipped"] = json!(0);
    }
    Ok(([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response())
}

/// `POST /api/admin/rollback`: undo a user's placements (within a time range and a
/// rectangle).
async fn rollback(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    actor.require(Role::Moderator)?;
    let o = json_body(
        &app,
        &headers,
        body,
        JSON_LIMIT,
        r#"{"user":"00ab12cd34ef5678","preview":true}"#,
    )
    .await?;
    let user = match o.get("user") {
        Some(Value::String(s)) => parse_user(s)?,
        None | Some(Value::Null) => {
            return Err(ApiError::MissingField {
                field: "user",
                allowed: "the user's public id (16 hex digits)".into(),
            });
        }
        Some(v) => {
            return Err(invalid(
                "user",
                format!("user must be a string, got {v}"),
                "16 hex digits, as GET /api/pixel shows",
            ));
        }
    };
    let ms = "unix time in ms";
    let since = opt_int(&o, "since", ms)?;
    let until = opt_int(&o, "until", ms)?;
    let rect = rect(&app, &o, "rect")?;
    let action = Action {
        kind: "rollback",
        reason: reason(&o)?,
        preview: opt_bool(&o, "preview")?.unwrap_or(false),
        detail: json!({ "user": user.to_string(), "since": since, "until": until, "rect": rect }),
    };
    let users = crate::auth::identities_of(&app, user).await?;
    let q = RollbackQuery {
        users,
        since_ms: since,
        until_ms: until,
        rect,
    };
    let plan = app
        .store
        .plan_rollback(&q, app.config.moderation.max_rewrite_pixels)
        .await?;
    finish(&app, &actor, plan, action).await
}

/// `POST /api/admin/restore`: a rectangle back to how it was at a time or a seq.
async fn restore(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    actor.require(Role::Moderator)?;
    let o = json_body(
        &app,
        &headers,
        body,
        JSON_LIMIT,
        r#"{"rect":{"x":0,"y":0,"w":10,"h":10},"at":1764300000000}"#,
    )
    .await?;
    let rect = need_rect(&app, &o)?;
    let one_of = "exactly one of \"at\" (unix ms) or \"seq\"";
    let to = match (opt_int(&o, "at", one_of)?, opt_int(&o, "seq", one_of)?) {
        (Some(at), None) => Moment::At(at),
        (None, Some(seq)) if seq >= 0 => Moment::Seq(Seq(seq as u64)),
        (None, Some(seq)) => {
            return Err(invalid(
                "seq",
                format!("seq must be at least 0, got {seq}"),
                one_of,
            ));
        }
        (None, None) => {
            return Err(ApiError::MissingField {
                field: "at",
                allowed: one_of.into(),
            });
        }
        (Some(_), Some(_)) => {
            return Err(invalid(
                "seq",
                "send \"at\" or \"seq\", not both".into(),
                one_of,
            ));
        }
    };
    let (at, seq) = match to {
        Moment::At(t) => (Some(t), None),
        Moment::Seq(s) => (None, Some(s.0)),
    };
    let action = Action {
        kind: "restore",
        reason: reason(&o)?,
        preview: opt_bool(&o, "preview")?.unwrap_or(false),
        detail: json!({ "rect": rect, "at": at, "seq": seq }),
    };
    let plan = app
        .store
        .plan_restore(rect, to, app.config.moderation.max_rewrite_pixels)
        .await?;
    finish(&app, &actor, plan, action).await
}

/// Refuses a paint larger than one action may change before planning it.
fn check_area(app: &AppState, area: u64) -> Result<(), ApiError> {
    let limit = app.config.moderation.max_rewrite_pixels;
    if area > limit {
        return Err(RewriteError::TooLarge { limit, found: area }.into());
    }
    Ok(())
}

/// `POST /api/admin/fill`: a rectangle in one color.
async fn fill(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    actor.require(Role::Moderator)?;
    let o = json_body(
        &app,
        &headers,
        body,
        JSON_LIMIT,
        r#"{"rect":{"x":0,"y":0,"w":10,"h":10},"color":0}"#,
    )
    .await?;
    let rect = need_rect(&app, &o)?;
    let palette = &app.settings.palette;
    let allowed = format!("palette index 0..={}", palette.len() - 1);
    let color = opt_int(&o, "color", &allowed)?.ok_or_else(|| ApiError::MissingField {
        field: "color",
        allowed: allowed.clone(),
    })?;
    let color = palette
        .color(color)
        .map_err(|e| invalid("color", e.to_string(), &allowed))?;
    check_area(&app, rect.area())?;
    let action = Action {
        kind: "fill",
        reason: reason(&o)?,
        preview: opt_bool(&o, "preview")?.unwrap_or(false),
        detail: json!({ "rect": rect, "color": color.get() }),
    };
    let plan = app
        .store
        .plan_paint(rect.coords().map(|c| (c, color)).collect())
        .await?;
    finish(&app, &actor, plan, action).await
}

/// `POST /api/admin/stamp?x=..&y=..[&preview=true][&reason=..]` with an `image/png`
/// body: the image, mapped to the nearest palette colors, with its top left at (x, y).
async fn stamp(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    actor.require(Role::Moderator)?;
    let dims = app.hub.dims();
    let int = |field: &'static str, max: u32| -> Result<u32, ApiError> {
        let raw = q.get(field).ok_or_else(|| ApiError::InvalidQuery {
            field,
            message: format!("query parameter {field} is missing; send 0..={max}"),
        })?;
        raw.parse::<u32>()
            .ok()
            .filter(|v| *v <= max)
            .ok_or_else(|| ApiError::InvalidQuery {
                field,
                message: format!("query parameter {field} must be 0..={max}, got {raw:?}"),
            })
    };
    let x = int("x", dims.width() - 1)?;
    let y = int("y", dims.height() - 1)?;
    let preview = match q.get("preview").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::InvalidQuery {
                field: "preview",
                message: format!("preview must be true or false, got {other:?}"),
            });
        }
    };
    let reason = q
        .get("reason")
        .map(|r| r.chars().take(REASON_MAX).collect::<String>());
    let bytes = read_body(&app, &headers, body, "image/png", STAMP_LIMIT).await?;
    let stamp = image::decode_stamp(&bytes, &app.settings.palette, (dims.width(), dims.height()))?;
    // It must fit where it goes.
    let (room_w, room_h) = (dims.width() - x, dims.height() - y);
    if stamp.width > room_w || stamp.height > room_h {
        return Err(invalid(
            "body",
            format!(
                "a {}x{} image at ({x}, {y}) reaches past the {}x{} board",
                stamp.width,
                stamp.height,
                dims.width(),
                dims.height()
            ),
            &format!("an image of at most {room_w}x{room_h} pixels at ({x}, {y})"),
        ));
    }
    check_area(&app, u64::from(stamp.width) * u64::from(stamp.height))?;
    let paint: Vec<(Coord, ColorIndex)> = stamp
        .pixels
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let (dx, dy) = (i as u32 % stamp.width, i as u32 / stamp.width);
            p.map(|c| (Coord::new_unchecked(x + dx, y + dy), c))
        })
        .collect();
    let action = Action {
        kind: "stamp",
        reason,
        preview,
        detail: json!({ "x": x, "y": y, "w": stamp.width, "h": stamp.height }),
    };
    let plan = app.store.plan_paint(paint).await?;
    finish(&app, &actor, plan, action).await
}

/// `GET /api/admin/users/{id}`: a user's placements for the admin page.
async fn user(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    actor.require(Role::Moderator)?;
    let user = parse_user(&id)?;
    let identities = crate::auth::identities_of(&app, user).await?;
    let found = app
        .store
        .user_placements(&identities, USER_PIXELS_LIMIT)
        .await?;
    let body = json!({
        "user": user.to_string(),
        "identities": identities.iter().map(|u| u.to_string()).collect::<Vec<_>>(),
        "placements": found.count,
        "first_at": found.first_at,
        "last_at": found.last_at,
        "pixels": found.newest.iter().map(|p| json!([p.coord.x(), p.coord.y(), p.color.get(), p.seq.0, p.at_ms])).collect::<Vec<_>>(),
        "truncated": found.count > found.newest.len() as u64,
    });
    Ok(([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response())
}
