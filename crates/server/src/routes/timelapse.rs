//! `POST /api/timelapse`, `GET /api/timelapse/{id}`, `GET /api/timelapse/{id}/file`: an
//! animated PNG of a region over time, rendered in the background (see
//! [`crate::timelapse`]).

use crate::app::AppState;
use crate::error::ApiError;
use crate::routes::body::json_body;
use crate::timelapse::jobs::{Job, Refused, State as JobState};
use crate::timelapse::spec;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::SignedCookieJar;
use serde_json::json;

/// Largest request body.
const BODY_LIMIT: usize = 1024;
/// Bytes read from the file per chunk of a download.
const CHUNK: usize = 256 * 1024;

/// Queues a timelapse for the caller's identity; `202 {"id", ...}`.
pub async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    jar: SignedCookieJar,
    body: Body,
) -> Result<Response, ApiError> {
    if !app.timelapses.enabled() {
        return Err(ApiError::TimelapseOff);
    }
    // Anyone with an identity (the page gets one from GET /api/config); the per-user
    // limit counts per identity.
    let user = crate::identity::user(&jar).ok_or(ApiError::Unauthorized)?;
    let obj = json_body(&app, &headers, body, BODY_LIMIT, spec::EXAMPLE).await?;
    let req = spec::parse(&obj, app.hub.dims())?;
    let frames = crate::timelapse::render::Frames {
        x: req.x,
        y: req.y,
        w: req.w,
        h: req.h,
        // Resolved when rendering starts (the history's first and last placement).
        from_ms: req.from_ms.unwrap_or(0),
        to_ms: req.to_ms.unwrap_or(0),
        frames: req.frames,
        fps: req.fps,
        scale: req.scale,
    };
    let id = app.timelapses.submit(user, frames).map_err(|e| match e {
        Refused::Busy { active } => ApiError::TimelapseBusy { active },
        Refused::PerUser { max } => ApiError::TimelapsePerUser { max },
    })?;
    crate::timelapse::spawn(app.clone(), id.clone(), req);
    let job = app.timelapses.get(&id).ok_or(ApiError::NotFound)?;
    let mut body = status_json(&id, &job);
    body["status_url"] = json!(format!("/api/timelapse/{id}"));
    body["file_url"] = json!(format!("/api/timelapse/{id}/file"));
    Ok((
        StatusCode::ACCEPTED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(body),
    )
        .into_response())
}

/// What `GET /api/timelapse/{id}` says about a job.
fn status_json(id: &str, job: &Job) -> serde_json::Value {
    let s = &job.spec;
    let mut v = json!({
        "id": id,
        "state": job.state,
        "progress": job.progress,
        "frames": s.frames,
        "frames_done": job.frames_done,
        "bytes": job.bytes,
        "x": s.x, "y": s.y, "w": s.w, "h": s.h,
        "fps": s.fps,
        "scale": s.scale,
        "format": "apng",
        "width": s.w * s.scale,
        "height": s.h * s.scale,
    });
    // from/to are known once rendering starts (they may default to the history's ends).
    if job.state != JobState::Queued {
        v["from"] = json!(s.from_ms);
        v["to"] = json!(s.to_ms);
    }
    if let Some(e) = &job.error {
        v["error"] = json!(e);
    }
    v
}

fn no_such(id: String) -> ApiError {
    ApiError::NoSuch {
        what: "timelapse (jobs are kept for an hour and not across restarts)",
        id,
    }
}

/// A job's state and progress.
pub async fn status(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = app.timelapses.get(&id).ok_or_else(|| no_such(id.clone()))?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(status_json(&id, &job)),
    )
        .into_response())
}

/// The finished file, as an attachment; 409 while it is not done.
pub async fn file(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = app
        .timelapses
        .touch(&id)
        .ok_or_else(|| no_such(id.clone()))?;
    if job.state != JobState::Done {
        return Err(ApiError::TimelapseNotDone {
            state: match job.state {
                JobState::Queued => "queued",
                JobState::Rendering => "rendering",
                JobState::Failed => "failed",
                JobState::Done => "done",
            },
        });
    }
    // Opened before it could be evicted; an open file outlives its name.
    let f = tokio::fs::File::open(app.timelapses.path(&id))
        .await
        .map_err(|_| no_such(id.clone()))?;
    // A read error ends the body early (the length then does not match), never loops.
    let stream = futures_util::stream::unfold(Some(f), |f| async move {
        use tokio::io::AsyncReadExt;
        let mut f = f?;
        let mut buf = vec![0; CHUNK];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), Some(f)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    let mut resp = Body::from_stream(stream).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/apng"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(job.bytes));
    let name = format!(
        "attachment; filename=\"timelapse-{}-{}-{}x{}.png\"",
        job.spec.x, job.spec.y, job.spec.w, job.spec.h
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&name).expect("ascii"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    Ok(resp)
}
