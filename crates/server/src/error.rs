//! The one error type handlers return, and its mapping to status codes and JSON bodies.
//! Every error says what was wrong and what is allowed; none is sent after a change.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the body is not a JSON object: {0}")]
    InvalidJson(String),
    #[error("{message}")]
    InvalidQuery {
        field: &'static str,
        message: String,
    },
    #[error("{field} is missing; send {allowed}")]
    MissingField {
        field: &'static str,
        allowed: String,
    },
    #[error("{message}")]
    InvalidField {
        field: &'static str,
        message: String,
        allowed: String,
    },
    #[error("{message}")]
    InvalidHeader {
        header: &'static str,
        message: String,
        allowed: &'static str,
    },
    #[error("this request needs Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("the body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("no valid identity; load the page or GET /api/config first to get a cookie")]
    Unauthorized,
    #[error("you placed a pixel moments ago; you may place again in {} s", (*retry_after_ms).max(0).unsigned_abs().div_ceil(1000))]
    Cooldown { next_at: i64, retry_after_ms: i64 },
    #[error("too many placements from this address; retry in {retry_after_ms} ms")]
    RateLimited { retry_after_ms: i64 },
    #[error("updates after seq {since} are no longer kept; fetch /api/board instead")]
    Gone { since: u64 },
    #[error("no such endpoint")]
    NotFound,
    #[error("too many connections; retry later")]
    TooManyConnections,
    #[error("the server is shutting down; retry on another instance")]
    ShuttingDown,
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            ApiError::InvalidQuery { .. } => (StatusCode::BAD_REQUEST, "invalid_query"),
            ApiError::InvalidHeader { .. } => (StatusCode::BAD_REQUEST, "invalid_header"),
            ApiError::MissingField { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "missing_field"),
            ApiError::InvalidField { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"),
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Cooldown { .. } => (StatusCode::TOO_MANY_REQUESTS, "cooldown"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Gone { .. } => (StatusCode::GONE, "gone"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::TooManyConnections => {
                (StatusCode::SERVICE_UNAVAILABLE, "too_many_connections")
            }
            ApiError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        }
    }

    /// The label used for the rejection metric.
    pub fn code(&self) -> &'static str {
        self.status_and_code().1
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let mut body = json!({ "error": code, "message": self.to_string() });
        let mut retry_after = None;
        match &self {
            ApiError::InvalidQuery { field, .. } => body["field"] = json!(field),
            ApiError::InvalidHeader {
                header, allowed, ..
            } => {
                body["header"] = json!(header);
                body["allowed"] = json!(allowed);
            }
            ApiError::MissingField { field, allowed } => {
                body["field"] = json!(field);
                body["allowed"] = json!(allowed);
            }
            ApiError::InvalidField { field, allowed, .. } => {
                body["field"] = json!(field);
                body["allowed"] = json!(allowed);
            }
            ApiError::Cooldown {
                next_at,
                retry_after_ms,
            } => {
                body["next_at"] = json!(next_at);
                body["retry_after_ms"] = json!(retry_after_ms);
                retry_after = Some(*retry_after_ms);
            }
            ApiError::RateLimited { retry_after_ms } => {
                body["retry_after_ms"] = json!(retry_after_ms);
                retry_after = Some(*retry_after_ms);
            }
            ApiError::PayloadTooLarge { limit } => {
                body["allowed"] = json!(format!("at most {limit} bytes"))
            }
            ApiError::Unavailable(e) => tracing::error!(error = %e, "store unavailable"),
            _ => {}
        }
        let mut resp = (status, axum::Json(body)).into_response();
        if let Some(ms) = retry_after {
            let secs = (ms.max(0) as u64).div_ceil(1000).max(1);
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}

impl From<rplace_store::PlaceError> for ApiError {
    fn from(e: rplace_store::PlaceError) -> Self {
        use rplace_store::PlaceError as P;
        match e {
            P::Cooldown { next_at_ms } => ApiError::Cooldown {
                next_at: next_at_ms,
                retry_after_ms: (next_at_ms - rplace_store::now_ms()).max(1),
            },
            P::RateLimited { retry_after_ms } => ApiError::RateLimited { retry_after_ms },
            P::ShuttingDown => ApiError::ShuttingDown,
            P::Unavailable(s) => ApiError::Unavailable(s),
        }
    }
}

impl From<rplace_store::StoreError> for ApiError {
    fn from(e: rplace_store::StoreError) -> Self {
        match e {
            rplace_store::StoreError::Gone { since, .. } => ApiError::Gone { since: since.0 },
            other => ApiError::Unavailable(other.to_string()),
        }
    }
}
