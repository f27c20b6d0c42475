//! What every request must satisfy, checked once in front of the router:
//! - exactly one valid `Host` (RFC 9112 3.2: a request without one, or with two, gets 400);
//! - a websocket handshake's `Origin` is one of `--allowed-origins` (403 otherwise);
//! - every error answer of the API is JSON, including those the framework makes by itself
//!   (405 with `Allow`, extractor rejections, a websocket handshake that is not one).

use crate::app::AppState;
use crate::error::ApiError;
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http;
use axum::http::{HeaderValue, StatusCode, Version, header, uri::Authority};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower::Service;

/// Largest framework error body read to become the JSON `message`.
const MESSAGE_LIMIT: usize = 1024;

/// `router` behind the checks of this module, as one service around the whole router
/// (not each route, as `Router::layer` would: axum adds `Allow` to a 405 only as the answer
/// leaves the route). Written by hand rather than with `middleware::from_fn`, which boxes
/// the inner service and the future of every request and a second router around it: that
/// cost 7-12% of the server's CPU per placement at 40,000 placements/s (BENCHMARKS.md).
#[derive(Clone)]
pub struct Guarded {
    /// For the allowed origins.
    app: AppState,
    /// The routes.
    inner: Router,
}

pub fn guarded(app: AppState, inner: Router) -> Guarded {
    Guarded { app, inner }
}

impl Guarded {
    /// As a `Router`, for `axum::serve` (the metrics listener; not on the hot path).
    pub fn into_router(self) -> Router {
        Router::new().fallback_service(self)
    }
}

impl Service<Request> for Guarded {
    type Response = Response;
    type Error = Infallible;
    type Future = GuardFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // A `Router` is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> GuardFuture {
        if let Err(e) = check_host(&req) {
            return GuardFuture::Ready(Some(e.into_response()));
        }
        let path = req.uri().path();
        if path == "/ws" && !origin_allowed(&self.app, &req) {
            metrics::counter!("rplace_ws_origin_refused_total").increment(1);
            return GuardFuture::Ready(Some(ApiError::OriginNotAllowed.into_response()));
        }
        let api = is_api(path);
        let method = req.method().clone();
        GuardFuture::Route {
            fut: self.inner.call(req),
            api,
            method: Some(method),
        }
    }
}

/// The answer of [`Guarded`]: no allocation unless an error has to become JSON.
// The routed variant is large on purpose: boxing it is the allocation this type avoids.
#[allow(clippy::large_enum_variant)]
pub enum GuardFuture {
    /// Refused before routing.
    Ready(Option<Response>),
    /// Routed; its answer is checked when it comes.
    Route {
        fut: axum::routing::future::RouteFuture<Infallible>,
        api: bool,
        method: Option<axum::http::Method>,
    },
    /// A plain error answer being rewritten as JSON.
    Json(Pin<Box<dyn Future<Output = Response> + Send>>),
}

impl Future for GuardFuture {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match this {
                GuardFuture::Ready(r) => {
                    return Poll::Ready(Ok(r.take().expect("polled after completion")));
                }
                GuardFuture::Json(f) => return f.as_mut().poll(cx).map(Ok),
                GuardFuture::Route { fut, api, method } => {
                    let Ok(resp) = std::task::ready!(Pin::new(fut).poll(cx));
                    if !needs_json(*api, &resp) {
                        return Poll::Ready(Ok(resp));
                    }
                    let method = method.take().expect("polled after completion");
                    *this = GuardFuture::Json(Box::pin(as_json(method, resp)));
                }
            }
        }
    }
}

/// Whether error answers of `path` are the API's JSON errors.
fn is_api(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/") || path == "/ws"
}

/// Whether `resp` is a plain (non-JSON) error answer that must become JSON: on `/api/*`
/// and `/ws` every 4xx/5xx, elsewhere (the page, health) only a 405.
fn needs_json(api: bool, resp: &Response) -> bool {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return false;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    !is_json && (api || status == StatusCode::METHOD_NOT_ALLOWED)
}

/// Whether a websocket handshake's `Origin` may open the feed. The request's own origin is
/// the authority of its target when it has one (HTTP/2, or an absolute-form HTTP/1.1
/// target: RFC 9112 3.2.2 says it wins over Host), else its `Host`.
fn origin_allowed<B>(app: &AppState, req: &http::Request<B>) -> bool {
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

/// [`Guarded`]'s answer check as a middleware function (for routers that a test builds).
pub async fn json_errors(req: Request, next: Next) -> Response {
    let api = is_api(req.uri().path());
    let method = req.method().clone();
    let resp = next.run(req).await;
    if needs_json(api, &resp) {
        return as_json(method, resp).await;
    }
    resp
}

/// RFC 9112 3.2: one Host, a valid `host[:port]`; HTTP/1.1 must send it (HTTP/1.0 may
/// not, and HTTP/2 carries the authority in the request line).
fn check_host<B>(req: &http::Request<B>) -> Result<(), ApiError> {
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
