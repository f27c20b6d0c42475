//! Reports and the audit log: `POST /api/reports` for everyone, `/api/admin/reports` and
//! `/api/admin/audit` for moderators. See docs/API.md, "Reports and the audit log".
//!
//! A report keeps what the server saw when it was filed (the pixel's color and its last
//! placement), so a moderator inspects what was reported even after the pixel changed.
//! Reports are limited per identity and per address ([`REPORT_LIMIT`]), counted in the
//! store, so every instance of a shared canvas enforces one budget.

use crate::app::AppState;
use crate::auth::{Actor, Role};
use crate::error::ApiError;
use crate::routes::body::{QueryMap, int_field, json_body, query_map};
use crate::serve::Peer;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Extension, Json};
use axum_extra::extract::cookie::SignedCookieJar;
use rplace_domain::{Rect, UserId};
use rplace_store::Store;
use rplace_store::records::{
    AuditEntry, AuditQuery, Filed, NewReport, Records, Report, ReportLimit, ReportStatus,
    Resolution, Resolved,
};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// Reports one identity, and one address, may file: 5 in 10 minutes.
pub const REPORT_LIMIT: ReportLimit = ReportLimit {
    max: 5,
    window_ms: 10 * 60 * 1000,
};
/// Longest report reason, in characters.
pub const REASON_MAX: usize = 500;
/// Longest resolution, in characters.
pub const RESOLUTION_MAX: usize = 200;
/// Longest resolution note, in characters.
pub const NOTE_MAX: usize = 2000;
/// Largest body of these endpoints.
const BODY_LIMIT: usize = 8 * 1024;
/// Most reports in one listing, and how many without `limit`.
pub const REPORTS_MAX: i64 = 200;
const REPORTS_DEFAULT: i64 = 50;
/// Most audit entries in one listing, and how many without `limit`.
pub const AUDIT_MAX: i64 = 500;
const AUDIT_DEFAULT: i64 = 100;
/// Placements of the reported pixel that an inspection shows.
const INSPECT_HISTORY: usize = 10;

/// The public endpoints (full paths).
pub fn public_table() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![("/api/reports", post(file_report))]
}

/// The moderators' endpoints, relative to `/api/admin`.
pub fn admin_table() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/reports", get(list_reports)),
        ("/reports/{id}", get(inspect_report)),
        ("/reports/{id}/resolve", post(resolve_report)),
        ("/audit", get(audit_log)),
    ]
}

// ---- request parsing -------------------------------------------------------------------

/// A text field of 1 to `max` characters (after trimming); `None` if absent and not
/// `required`.
fn text_field(
    obj: &Map<String, Value>,
    field: &'static str,
    max: usize,
    required: bool,
) -> Result<Option<String>, ApiError> {
    let allowed = format!("a string of 1 to {max} characters");
    let s = match obj.get(field) {
        None | Some(Value::Null) if required => {
            return Err(ApiError::MissingField { field, allowed });
        }
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.trim(),
        Some(v) => {
            return Err(ApiError::InvalidField {
                field,
                message: format!("{field} must be a string, got {v}"),
                allowed,
            });
        }
    };
    let n = s.chars().count();
    if n == 0 || n > max {
        return Err(ApiError::InvalidField {
            field,
            message: format!("{field} must be 1 to {max} characters, got {n}"),
            allowed,
        });
    }
    Ok(Some(s.to_string()))
}

/// An optional `rect` field: `{"x","y","w","h"}` wholly on the board.
fn rect_field(app: &AppState, obj: &Map<String, Value>) -> Result<Option<Rect>, ApiError> {
    let dims = app.hub.dims();
    let allowed = format!(
        "{{\"x\",\"y\",\"w\",\"h\"}} inside the {}x{} board",
        dims.width(),
        dims.height()
    );
    let r = match obj.get("rect") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(r)) => r,
        Some(v) => {
            return Err(ApiError::InvalidField {
                field: "rect",
                message: format!("rect must be an object, got {v}"),
                allowed,
            });
        }
    };
    let get = |k: &'static str| -> Result<i64, ApiError> {
        r.get(k)
            .and_then(Value::as_i64)
            .ok_or_else(|| ApiError::InvalidField {
                field: "rect",
                message: format!("rect.{k} must be an integer"),
                allowed: allowed.clone(),
            })
    };
    let (x, y, w, h) = (get("x")?, get("y")?, get("w")?, get("h")?);
    Rect::parse(dims, x, y, w, h)
        .map(Some)
        .map_err(|e| ApiError::InvalidField {
            field: "rect",
            message: format!("rect.{}", e.message),
            allowed,
        })
}

/// An optional integer query parameter within `lo..=hi`.
pub(super) fn query_int(
    q: &HashMap<String, String>,
    field: &'static str,
    lo: i64,
    hi: i64,
) -> Result<Option<i64>, ApiError> {
    let Some(raw) = q.get(field) else {
        return Ok(None);
    };
    match raw.trim().parse::<i64>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(Some(v)),
        _ => Err(ApiError::InvalidQuery {
            field,
            message: format!("{field} must be an integer from {lo} to {hi}, got {raw:?}"),
        }),
    }
}

/// An id in the path; one that cannot be an id names nothing.
fn path_id(what: &'static str, raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::NoSuch {
            what,
            id: raw.chars().take(40).collect(),
        })
}

// ---- answers ---------------------------------------------------------------------------

fn no_store(body: Value) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

/// A report as the admin endpoints show it.
pub fn report_json(r: &Report) -> Value {
    let f = &r.filed;
    json!({
        "id": r.id,
        "at": f.at_ms,
        "reporter": f.reporter.to_string(),
        "addr": f.addr,
        "x": f.coord.x(),
        "y": f.coord.y(),
        "rect": f.rect,
        "reason": f.reason,
        "color": f.color.get(),
        "last_seq": f.last.map(|(s, _)| s.0),
        "last_user": f.last.map(|(_, u)| u.to_string()),
        "status": if r.resolved.is_some() { "resolved" } else { "open" },
        "resolved": r.resolved.as_ref().map(|s| json!({
            "at": s.at_ms,
            "by": s.by.to_string(),
            "by_name": s.by_name,
            "resolution": s.resolution,
            "note": s.note,
        })),
    })
}

/// An audit entry as `GET /api/admin/audit` shows it.
pub fn audit_json(e: &AuditEntry) -> Value {
    let a = &e.entry;
    json!({
        "id": e.id,
        "at": a.at_ms,
        "actor": a.actor.to_string(),
        "actor_name": a.actor_name,
        "kind": a.kind,
        "reason": a.reason,
        "pixels": a.pixels,
        // Written by `audit::record` from a JSON value; text only if that ever failed.
        "detail": serde_json::from_str::<Value>(&a.detail).unwrap_or(Value::String(a.detail.clone())),
    })
}

// ---- handlers --------------------------------------------------------------------------

/// `POST /api/reports`: any visitor with an identity reports a pixel or an area.
async fn file_report(
    State(app): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    jar: SignedCookieJar,
    body: Body,
) -> Result<Response, ApiError> {
    let reporter = crate::identity::user(&jar).ok_or(ApiError::Unauthorized)?;
    let obj = json_body(
        &app,
        &headers,
        body,
        BODY_LIMIT,
        r#"{"x":0,"y":0,"reason":"griefing"}"#,
    )
    .await?;
    let dims = app.hub.dims();
    let x_allowed = format!("integer 0..={}", dims.width() - 1);
    let y_allowed = format!("integer 0..={}", dims.height() - 1);
    let x = int_field(&obj, "x", x_allowed.clone())?;
    let y = int_field(&obj, "y", y_allowed.clone())?;
    let coord = dims.coord(x, y).map_err(|e| ApiError::InvalidField {
        field: e.axis,
        message: e.to_string(),
        allowed: if e.axis == "x" { x_allowed } else { y_allowed },
    })?;
    let reason = text_field(&obj, "reason", REASON_MAX, true)?.unwrap_or_default();
    let rect = rect_field(&app, &obj)?;
    let ip = crate::client_addr::client_ip(&app.settings.trusted_proxies, peer.ip(), &headers)?;
    let last = app.store.pixel_history(coord, 1).await?;
    let report = NewReport {
        at_ms: rplace_store::now_ms(),
        reporter,
        addr: app.settings.policy.addr_key(ip).to_string(),
        coord,
        rect,
        reason,
        // The color of the last placement, so color and last placement always agree (the
        // hub's board may trail the store by a moment); never placed: the hub's blank.
        color: match last.first() {
            Some(p) => p.color,
            None => app.hub.pixel(coord).await?,
        },
        last: last.first().map(|p| (p.seq, p.user)),
    };
    match app.store.add_report(report, REPORT_LIMIT).await? {
        Filed::Stored(id) => {
            metrics::counter!("rplace_reports_total").increment(1);
            Ok((
                StatusCode::CREATED,
                [(header::CACHE_CONTROL, "no-store")],
                Json(json!({ "id": id })),
            )
                .into_response())
        }
        Filed::Limited { retry_after_ms } => Err(ApiError::ReportLimited { retry_after_ms }),
    }
}

/// `GET /api/admin/reports?status=open|resolved|all&before=<id>&limit=<n>`, newest first.
async fn list_reports(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    q: QueryMap,
) -> Result<Response, ApiError> {
    actor.require(Role::Moderator)?;
    let q = query_map(q)?;
    let status = match q.get("status").map(String::as_str) {
        None | Some("open") => ReportStatus::Open,
        Some("resolved") => ReportStatus::Resolved,
        Some("all") => ReportStatus::All,
        Some(other) => {
            return Err(ApiError::InvalidQuery {
                field: "status",
                message: format!("status must be open, resolved or all, got {other:?}"),
            });
        }
    };
    let before = query_int(&q, "before", 1, i64::MAX)?;
    let limit = query_int(&q, "limit", 1, REPORTS_MAX)?.unwrap_or(REPORTS_DEFAULT) as usize;
    let reports = app.store.reports(status, before, limit).await?;
    let next_before = (reports.len() == limit)
        .then(|| reports.last().map(|r| r.id))
        .flatten();
    Ok(no_store(json!({
        "reports": reports.iter().map(report_json).collect::<Vec<_>>(),
        "next_before": next_before,
    })))
}

/// `GET /api/admin/reports/{id}`: the report, the pixel now and its latest placements.
async fn inspect_report(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    actor.require(Role::Moderator)?;
    let id = path_id("report", &raw)?;
    let report = app.store.report(id).await?.ok_or(ApiError::NoSuch {
        what: "report",
        id: id.to_string(),
    })?;
    let coord = report.filed.coord;
    let history = app.store.pixel_history(coord, INSPECT_HISTORY).await?;
    let color = app.hub.pixel(coord).await?;
    Ok(no_store(json!({
        "report": report_json(&report),
        "color": color.get(),
        "history": history.iter().map(|p| json!({
            "seq": p.seq.0, "color": p.color.get(), "user": p.user.to_string(), "at": p.at_ms,
        })).collect::<Vec<_>>(),
    })))
}

/// `POST /api/admin/reports/{id}/resolve` `{"resolution", "note"?}`: closes a report,
/// recorded in the audit log as `resolve_report`.
async fn resolve_report(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    actor.require(Role::Moderator)?;
    let id = path_id("report", &raw)?;
    let obj = json_body(
        &app,
        &headers,
        body,
        BODY_LIMIT,
        r#"{"resolution":"rolled back"}"#,
    )
    .await?;
    let resolution = text_field(&obj, "resolution", RESOLUTION_MAX, true)?.unwrap_or_default();
    let note = text_field(&obj, "note", NOTE_MAX, false)?;
    let res = Resolution {
        at_ms: rplace_store::now_ms(),
        by: actor.user,
        by_name: actor.name.clone(),
        resolution,
        note,
    };
    match app.store.resolve_report(id, res).await? {
        Resolved::Now(report) => {
            let f = &report.filed;
            let resolved = report.resolved.as_ref();
            crate::audit::record(
                &app,
                &actor,
                crate::audit::Action {
                    kind: "resolve_report",
                    reason: resolved.map(|r| r.resolution.as_str()),
                    pixels: 0,
                    detail: json!({
                        "report": report.id,
                        "x": f.coord.x(),
                        "y": f.coord.y(),
                        "rect": f.rect,
                        "note": resolved.and_then(|r| r.note.as_deref()),
                    }),
                },
            )
            .await?;
            Ok(no_store(report_json(&report)))
        }
        Resolved::Already(_) => Err(ApiError::AlreadyResolved { id }),
        Resolved::Missing => Err(ApiError::NoSuch {
            what: "report",
            id: id.to_string(),
        }),
    }
}

/// `GET /api/admin/audit?before=<id>&limit=<n>&kind=<k>&actor=<user>`, newest first.
async fn audit_log(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    q: QueryMap,
) -> Result<Response, ApiError> {
    actor.require(Role::Moderator)?;
    let q = query_map(q)?;
    let before = query_int(&q, "before", 1, i64::MAX)?;
    let limit = query_int(&q, "limit", 1, AUDIT_MAX)?.unwrap_or(AUDIT_DEFAULT) as usize;
    let kind = match q.get("kind") {
        None => None,
        Some(k)
            if (1..=40).contains(&k.len())
                && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') =>
        {
            Some(k.clone())
        }
        Some(k) => {
            return Err(ApiError::InvalidQuery {
                field: "kind",
                message: format!("kind must be an action name like rollback, got {k:?}"),
            });
        }
    };
    let who = match q.get("actor") {
        None => None,
        Some(a) => Some(UserId::parse(a).ok_or_else(|| ApiError::InvalidQuery {
            field: "actor",
            message: format!("actor must be a user id of 16 hex digits, got {a:?}"),
        })?),
    };
    let entries = app
        .store
        .audit(AuditQuery {
            before,
            limit,
            kind,
            actor: who,
        })
        .await?;
    let next_before = (entries.len() == limit)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    Ok(no_store(json!({
        "entries": entries.iter().map(audit_json).collect::<Vec<_>>(),
        "next_before": next_before,
    })))
}
