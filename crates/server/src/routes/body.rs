//! Reading requests the same way for every endpoint: bodies (the content type, a size
//! limit and the body timeout, a JSON object without repeated keys), their fields, which
//! answer what was wrong and what is allowed, and query strings.

use crate::app::AppState;
use crate::error::ApiError;
use axum::body::{Body, Bytes};
use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// The body, within `limit` bytes and the body timeout, if its type is `mime`.
pub async fn read_body(
    app: &AppState,
    headers: &HeaderMap,
    body: Body,
    mime: &str,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(mime));
    if !ok {
        return Err(if mime == "application/json" {
            ApiError::UnsupportedMediaType
        } else {
            ApiError::Status {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                message: format!("this request needs Content-Type: {mime}"),
            }
        });
    }
    tokio::time::timeout(app.settings.body_timeout, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| ApiError::BodyTimeout)?
        .map_err(|_| ApiError::PayloadTooLarge { limit })
}

/// `bytes` as a JSON object (no repeated keys); `example` shows the caller the shape.
pub fn json_object(bytes: &[u8], example: &str) -> Result<Map<String, Value>, ApiError> {
    match crate::json::parse(bytes).map_err(|e| ApiError::InvalidJson(e.to_string()))? {
        Value::Object(obj) => Ok(obj),
        _ => Err(ApiError::InvalidJson(format!(
            "expected an object like {example}"
        ))),
    }
}

/// A JSON body (within `limit` bytes) as an object; `example` shows the caller the shape.
pub async fn json_body(
    app: &AppState,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    example: &str,
) -> Result<Map<String, Value>, ApiError> {
    json_object(
        &read_body(app, headers, body, "application/json", limit).await?,
        example,
    )
}

/// The query string as axum's extractor gives it, rejection included.
pub type QueryMap =
    Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>;

/// The query string's parameters, or a JSON 400 saying why it does not parse.
pub fn query_map(q: QueryMap) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(m)| m).map_err(|e| ApiError::InvalidQuery {
        field: "query",
        message: e.body_text(),
    })
}

/// A required integer field.
pub fn int_field(
    obj: &Map<String, Value>,
    field: &'static str,
    allowed: String,
) -> Result<i64, ApiError> {
    opt_int(obj, field, &allowed)?.ok_or(ApiError::MissingField { field, allowed })
}

/// An optional integer field.
pub fn opt_int(
    obj: &Map<String, Value>,
    field: &'static str,
    allowed: &str,
) -> Result<Option<i64>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| ApiError::InvalidField {
            field,
            message: format!("{field} must be an integer, got {v}"),
            allowed: allowed.into(),
        }),
    }
}

/// A required boolean field.
pub fn bool_field(obj: &Map<String, Value>, field: &'static str) -> Result<bool, ApiError> {
    opt_bool(obj, field)?.ok_or(ApiError::MissingField {
        field,
        allowed: "true or false".into(),
    })
}

/// An optional boolean field.
pub fn opt_bool(obj: &Map<String, Value>, field: &'static str) -> Result<Option<bool>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(ApiError::InvalidField {
            field,
            message: format!("{field} must be true or false, got {v}"),
            allowed: "true or false".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_say_what_is_wrong() {
        let obj = json_object(br#"{"x": 3, "y": "a", "z": null}"#, "{}").unwrap();
        assert_eq!(int_field(&obj, "x", "any".into()).unwrap(), 3);
        assert!(matches!(
            int_field(&obj, "y", "any".into()),
            Err(ApiError::InvalidField { field: "y", .. })
        ));
        assert!(matches!(
            int_field(&obj, "z", "any".into()),
            Err(ApiError::MissingField { field: "z", .. })
        ));
        assert_eq!(opt_int(&obj, "w", "any").unwrap(), None);
        assert!(matches!(
            json_object(b"[1]", "{}"),
            Err(ApiError::InvalidJson(_))
        ));
        assert!(matches!(
            json_object(br#"{"a":1,"a":2}"#, "{}"),
            Err(ApiError::InvalidJson(_))
        ));
    }
}
