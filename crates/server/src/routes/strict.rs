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
    if req.uri().path() == "/ws" && !origin_allowed(&app, &req) {
        metrics::counter!("rplace_ws_origin_refused_total").increment(1);
        return ApiError::OriginNotAllowed.into_response();
    }
    json_errors(req, next).await
}

/// Whether a websocket handshake's `Origin` may open the feed. The request's own origin is
/// the authority of its target when it has one (HTTP/2, or an absolute-form HTTP/1.1
/// target: RFC 9112 3.2.2 says it wins over Host), else its `Host`.
fn origin_allowed(app: &AppState, req: &Request) -> bool {
    let target = req
        .uri()
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
    let host = target.as_ref().or(req.headers().get(header::HOST));
    app.settings
        .access
        .allowed_origins
        .allows(req.headers().get(header::ORIGIN), host)
}

/// Runs the request and turns a plain (non-JSON) error answer into the API's JSON error:
/// on `/api/*` and `/ws` every 4xx/5xx, elsewhere (the page, health) only a 405.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let api = path == "/api" || path.starts_with("/api/") || path == "/ws";
    let method = req.method().clone();
    let resp = next.run(req).await;
    let status = resp.status();
    if status.is_client_error() || status.is_server_error() {
        let is_json = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        if !is_json && (api || status == StatusCode::METHOD_NOT_ALLOWED) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::{DefaultBodyLimit, Path, Query};
    use axum::routing::{get, post};
    use serde_json::Value;
    use tower::ServiceExt;

    /// The framework's own rejections, as a future admin endpoint would meet them.
    fn app() -> Router {
        let inner = Router::new()
            .route(
                "/api/item/{id}",
                get(|Path(id): Path<u32>| async move { id.to_string() }),
            )
            .route(
                "/api/q",
                get(
                    |Query(q): Query<std::collections::HashMap<String, u32>>| async move {
                        format!("{q:?}")
                    },
                ),
            )
            .route(
                "/api/json",
                post(|axum::Json(v): axum::Json<Value>| async move { v.to_string() }),
            )
            .route(
                "/api/boom",
                get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "db password wrong") }),
            )
            .layer(DefaultBodyLimit::max(16));
        Router::new()
            .fallback_service(inner)
            .layer(axum::middleware::from_fn(json_errors))
    }

    async fn call(method: &str, uri: &str, ctype: Option<&str>, body: &str) -> (u16, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(c) = ctype {
            req = req.header(header::CONTENT_TYPE, c);
        }
        let resp = app()
            .oneshot(req.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "application/json",
            "{uri}"
        );
        let bytes = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn extractor_rejections_become_json() {
        let (s, b) = call("GET", "/api/item/abc", None, "").await;
        assert_eq!((s, b["error"].as_str()), (400, Some("bad_request")), "{b}");
        let (s, b) = call("GET", "/api/q?n=x", None, "").await;
        assert_eq!((s, b["error"].as_str()), (400, Some("bad_request")), "{b}");
        let (s, b) = call("POST", "/api/json", None, "{}").await;
        assert_eq!(
            (s, b["error"].as_str()),
            (415, Some("unsupported_media_type")),
            "{b}"
        );
        let (s, b) = call("POST", "/api/json", Some("application/json"), "{").await;
        assert_eq!(s, 400, "{b}");
        let big = format!("{{\"k\":\"{}\"}}", "a".repeat(64));
        let (s, b) = call("POST", "/api/json", Some("application/json"), &big).await;
        assert_eq!(
            (s, b["error"].as_str()),
            (413, Some("payload_too_large")),
            "{b}"
        );
        let (s, b) = call("GET", "/api/json", None, "").await;
        assert_eq!(
            (s, b["error"].as_str()),
            (405, Some("method_not_allowed")),
            "{b}"
        );
        assert_eq!(b["allowed"], "POST", "{b}");
        assert!(b["message"].as_str().unwrap().contains("GET"), "{b}");
        // A 5xx's own text could be internal: it is not passed on.
        let (s, b) = call("GET", "/api/boom", None, "").await;
        assert_eq!((s, b["error"].as_str()), (500, Some("internal")), "{b}");
        assert!(!b["message"].as_str().unwrap().contains("password"), "{b}");
    }
}
