//! What every request must satisfy, checked once in front of the router:
//! - exactly one valid `Host` (RFC 9112 3.2: a request without one, or with two, gets 400);
//! - a websocket handshake's `Origin` is one of `--allowed-origins` (403 otherwise);
//! - every error answer of the API is JSON, including those the framework makes by itself
//!   (405 with `Allow`, extractor rejections, a websocket handshake that is not one).

use crate::app::AppState;
use crate::error::ApiError;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, Version, header, uri::Authority};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Largest framework error body read to become the JSON `message`.
const MESSAGE_LIMIT: usize = 1024;

/// `router` behind [`guard`]. The guard wraps the whole router as one service (not each
/// route, as `Router::layer` would), so it sees answers complete: axum adds `Allow` to a
/// 405 only as the answer leaves the route.
pub fn guarded(state: AppState, router: Router) -> Router {
    Router::new()
        .fallback_service(router)
        .layer(axum::middleware::from_fn_with_state(state, guard))
}

pub async fn guard(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if let Err(e) = check_host(&req) {
        return e.into_response();
    }
    let path = req.uri().path();
    if path == "/ws"
        && !app.settings.access.allowed_origins.allows(
            req.headers().get(header::ORIGIN),
            req.headers().get(header::HOST),
        )
    {
        metrics::counter!("rplace_ws_origin_refused_total").increment(1);
        return ApiError::OriginNotAllowed.into_response();
    }
    let json_errors = path == "/api" || path.starts_with("/api/") || path == "/ws";
    let method = req.method().clone();
    let resp = next.run(req).await;
    let status = resp.status();
    if status.is_client_error() || status.is_server_error() {
        let is_json = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        if !is_json && (json_errors || status == StatusCode::METHOD_NOT_ALLOWED) {
            return as_json(method, resp).await;
        }
    }
    resp
}

/// RFC 9112 3.2: one Host, a valid `host[:port]`; HTTP/1.1 must send it (HTTP/1.0 may
/// not, and HTTP/2 carries the authority in the request line).
fn check_host(req: &Request) -> Result<(), ApiError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Err(ApiError::InvalidHost(
            "a request must carry exactly one Host header (RFC 9112 3.2); this one has several",
        )),
        (None, _) if req.version() == Version::HTTP_11 => Err(ApiError::InvalidHost(
            "an HTTP/1.1 request needs a Host header (RFC 9112 3.2)",
        )),
        (None, _) => Ok(()),
        (Some(h), None) if valid_host(h) => Ok(()),
        (Some(_), None) => Err(ApiError::InvalidHost(
            "the Host header must be host[:port] (RFC 9112 3.2)",
        )),
    }
}

fn valid_host(h: &HeaderValue) -> bool {
    std::str::from_utf8(h.as_bytes())
        .ok()
        .and_then(|s| s.parse::<Authority>().ok())
        .is_some_and(|a| !a.host().is_empty() && !a.as_str().contains('@'))
}

/// Rewrites a framework's plain error answer as the API's JSON error, keeping its status
/// and headers (`Allow` on a 405). A 4xx's text (an extractor's rejection) says what was
/// wrong, so it becomes the message; a 5xx's text could be internal, so it does not.
async fn as_json(method: axum::http::Method, resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    let status = parts.status;
    let text = if status.is_client_error() {
        axum::body::to_bytes(body, MESSAGE_LIMIT)
            .await
            .ok()
            .and_then(|b| String::from_utf8(b.to_vec()).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    } else {
        None
    };
    let err = if status == StatusCode::METHOD_NOT_ALLOWED {
        let allowed = parts
            .headers
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .replace(',', ", ");
        ApiError::MethodNotAllowed {
            method: method.to_string(),
            allowed,
        }
    } else {
        let message = text.unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("the request failed")
                .to_string()
        });
        ApiError::Status { status, message }
    };
    let json = err.into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in json.headers() {
        parts.headers.insert(name, value.clone());
    }
    let (_, body) = json.into_parts();
    Response::from_parts(parts, Body::new(body))
}
