//! Bans and protected areas: `/api/admin/bans`, `/api/admin/protect`. See docs/API.md.
//!
//! Every change answers only once it is in force where placements are decided (the
//! store's contract, [`rplace_store::moderation`]), then is recorded in the audit log.

use crate::app::AppState;
use crate::audit::{self, Action};
use crate::auth::{Actor, Role};
use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use axum::{Extension, Json};
use rplace_domain::policy::BanNet;
use rplace_domain::{Rect, UserId};
use rplace_store::moderation::{
    Ban, BanTarget, Moderation, ModerationError, NewBan, NewProtected, Protected,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;

/// Longest ban or protection reason, in characters.
pub const REASON_MAX: usize = 500;
/// Most bans one `GET /api/admin/bans` lists.
pub const LIST_MAX: usize = 1000;

/// This area's endpoints, relative to `/api/admin`.
pub fn table() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/bans", get(list_bans).post(ban)),
        ("/bans/{id}", get(show_ban).delete(unban)),
        ("/protect", get(list_protected).post(protect)),
        ("/protect/{id}", get(show_protected).delete(unprotect)),
    ]
}

impl From<ModerationError> for ApiError {
    fn from(e: ModerationError) -> Self {
        match e {
            e
            @ (ModerationError::TooManyProtected { .. } | ModerationError::TooManyBans { .. }) => {
                ApiError::Status {
                    status: StatusCode::CONFLICT,
                    message: e.to_string(),
                }
            }
            ModerationError::Store(e) => e.into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BanBody {
    /// A public id (16 hex digits).
    user: Option<String>,
    /// An address or CIDR network.
    ip: Option<String>,
    reason: Option<String>,
    /// Unix ms, in the future.
    until: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RectBody {
    x: i64,
    y: i64,
    w: i64,
    h: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProtectBody {
    rect: RectBody,
    reason: Option<String>,
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8], example: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::InvalidJson(format!("{e}; expected an object like {example}")))
}

/// A reason: trimmed, not empty if `required`, at most [`REASON_MAX`] characters.
fn reason(raw: Option<String>, required: bool) -> Result<Option<String>, ApiError> {
    let allowed = || format!("text of 1..={REASON_MAX} characters");
    match raw.map(|r| r.trim().to_string()).filter(|r| !r.is_empty()) {
        None if required => Err(ApiError::MissingField {
            field: "reason",
            allowed: allowed(),
        }),
        None => Ok(None),
        Some(r) if r.chars().count() > REASON_MAX => Err(ApiError::InvalidField {
            field: "reason",
            message: format!("reason must be at most {REASON_MAX} characters"),
            allowed: allowed(),
        }),
        Some(r) => Ok(Some(r)),
    }
}

fn ban_json(b: &Ban, now_ms: i64) -> Value {
    let mut v = json!({
        "id": b.id,
        "reason": b.reason,
        "until": b.until_ms,
        "by": b.by.to_string(),
        "at": b.at_ms,
        "lifted_at": b.lifted_at_ms,
        "lifted_by": b.lifted_by.map(|u| u.to_string()),
        "active": b.is_active_at(now_ms),
    });
    match &b.target {
        BanTarget::User { user, identities } => {
            v["user"] = json!(user.to_string());
            v["identities"] = json!(identities.iter().map(|u| u.to_string()).collect::<Vec<_>>());
        }
        BanTarget::Net(n) => v["ip"] = json!(n.to_string()),
    }
    v
}

fn protected_json(p: &Protected) -> Value {
    json!({
        "id": p.id,
        "rect": p.rect,
        "reason": p.reason,
        "by": p.by.to_string(),
        "at": p.at_ms,
    })
}

async fn ban(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    body: Bytes,
) -> Result<Response, ApiError> {
    actor.require(Role::Moderator)?;
    let b: BanBody = parse_body(&body, r#"{"user":"<16 hex digits>","reason":"spam"}"#)?;
    let reason = reason(b.reason, true)?.expect("required");
    let now = rplace_store::now_ms();
    if let Some(until) = b.until
        && until <= now
    {
        return Err(ApiError::InvalidField {
            field: "until",
            message: format!("until must be in the future (now is {now})"),
            allowed: "unix ms after now, or no until for a ban without end".into(),
        });
    }
    let target = match (b.user, b.ip) {
        (Some(user), None) => {
            let user = UserId::parse(&user).ok_or(ApiError::InvalidField {
                field: "user",
                message: "user must be a public id of 16 hex digits".into(),
                allowed: "16 lowercase hex digits, as GET /api/pixel shows".into(),
            })?;
            let identities = crate::auth::identities_of(&app, user).await?;
            BanTarget::User { user, identities }
        }
        (None, Some(ip)) => {
            let net = BanNet::parse(&ip, app.settings.policy.ipv6_prefix()).map_err(|e| {
                ApiError::InvalidField {
                    field: "ip",
                    message: e.to_string(),
                    allowed: "an address or CIDR network: IPv4 /8../32, IPv6 /16../128 (a bare \
                              IPv6 address bans its --ipv6-prefix network)"
                        .into(),
                }
            })?;
            BanTarget::Net(net)
        }
        _ => {
            return Err(ApiError::MissingField {
                field: "user",
                allowed: "exactly one of user (a public id) or ip (an address or CIDR)".into(),
            });
        }
    };
    let banned = app
        .store
        .ban(NewBan {
            target,
            reason,
            until_ms: b.until,
            by: actor.user,
        })
        .await?;
    let ban = banned.ban;
    let mut detail = ban_json(&ban, now);
    // Every placement with a greater seq was decided with the ban in force.
    detail["after_seq"] = json!(banned.after_seq.0);
    audit::record(
        &app,
        &actor,
        Action {
            kind: "ban",
            reason: Some(&ban.reason),
            pixels: 0,
            detail: detail.clone(),
        },
    )
    .await?;
    tracing::info!(ban = ban.id, by = %actor.user, "banned");
    Ok((StatusCode::CREATED, Json(detail)).into_response())
}

async fn list_bans(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    actor.require(Role::Moderator)?;
    let all = match q.get("all").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ApiError::InvalidQuery {
                field: "all",
                message: "all must be true or false".into(),
            });
        }
    };
    let now = rplace_store::now_ms();
    let bans = app.store.bans(all, now, LIST_MAX).await?;
    let list: Vec<Value> = bans.iter().map(|b| ban_json(b, now)).collect();
    Ok(Json(json!({ "bans": list, "limit": LIST_MAX })).into_response())
}

async fn show_ban(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<u64>,
) -> Result<Response, ApiError> {
    actor.require(Role::Moderator)?;
    let ban = app.store.ban_by_id(id).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(ban_json(&ban, rplace_store::now_ms())).into_response())
}

async fn unban(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<u64>,
) -> Result<Response, ApiError> {
    actor.require(Role::Moderator)?;
    let ban = app
        .store
        .unban(id, actor.user)
        .await?
        .ok_or(ApiError::NotFound)?;
    let detail = ban_json(&ban, rplace_store::now_ms());
    audit::record(
        &app,
        &actor,
        Action {
            kind: "unban",
            reason: Some(&ban.reason),
            pixels: 0,
            detail: detail.clone(),
        },
    )
    .await?;
    Ok(Json(detail).into_response())
}

async fn protect(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    body: Bytes,
) -> Result<Response, ApiError> {
    actor.require(Role::Moderator)?;
    let b: ProtectBody = parse_body(&body, r#"{"rect":{"x":0,"y":0,"w":10,"h":10}}"#)?;
    let dims = app.hub.dims();
    let rect = Rect::parse(dims, b.rect.x, b.rect.y, b.rect.w, b.rect.h).map_err(|e| {
        ApiError::InvalidField {
            field: match e.field {
                "x" => "rect.x",
                "y" => "rect.y",
                "w" => "rect.w",
                _ => "rect.h",
            },
            message: e.message.clone(),
            allowed: format!(
                "a rectangle on the {}x{} board, at least 1x1",
                dims.width(),
                dims.height()
            ),
        }
    })?;
    let reason = reason(b.reason, false)?;
    let area = app
        .store
        .protect(NewProtected {
            rect,
            reason,
            by: actor.user,
        })
        .await?;
    let detail = protected_json(&area);
    audit::record(
        &app,
        &actor,
        Action {
            kind: "protect",
            reason: area.reason.as_deref(),
            pixels: 0,
            detail: detail.clone(),
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(detail)).into_response())
}

async fn list_protected(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
) -> Result<Response, ApiError> {
    actor.require(Role::Moderator)?;
    let areas = app.store.protected_areas().await?;
    let list: Vec<Value> = areas.iter().map(protected_json).collect();
    Ok(
        Json(json!({ "areas": list, "limit": rplace_store::moderation::MAX_PROTECTED }))
            .into_response(),
    )
}

async fn show_protected(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<u64>,
) -> Result<Response, ApiError> {
    actor.require(Role::Moderator)?;
    let areas = app.store.protected_areas().await?;
    let area = areas
        .iter()
        .find(|a| a.id == id)
        .ok_or(ApiError::NotFound)?;
    Ok(Json(protected_json(area)).into_response())
}

async fn unprotect(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<u64>,
) -> Result<Response, ApiError> {
    actor.require(Role::Moderator)?;
    let area = app.store.unprotect(id).await?.ok_or(ApiError::NotFound)?;
    let detail = protected_json(&area);
    audit::record(
        &app,
        &actor,
        Action {
            kind: "unprotect",
            reason: area.reason.as_deref(),
            pixels: 0,
            detail: detail.clone(),
        },
    )
    .await?;
    Ok(Json(detail).into_response())
}
