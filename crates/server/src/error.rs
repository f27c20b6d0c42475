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
    #[error("{}", cooldown_message(*retry_after_ms, next_charge_at.is_some()))]
    Cooldown {
        next_at: i64,
        retry_after_ms: i64,
        /// In the charges model: the pool is empty and its next charge arrives then.
        next_charge_at: Option<i64>,
    },
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
    /// The store (or the board encoder) failed. The client learns only that it may
    /// retry; `source` is logged, never sent.
    #[error("{}", unavailable_message(*.placing))]
    Unavailable {
        /// The failure was a placement's: says so, since that is what the client asked.
        placing: bool,
        /// When a retry may help, if the store can tell.
        retry_after_ms: Option<i64>,
        /// What failed, with its chain, for the log.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{method} is not allowed here; allowed: {allowed}")]
    MethodNotAllowed { method: String, allowed: String },
    #[error("{0}")]
    InvalidHost(&'static str),
    #[error("this endpoint needs Authorization: Bearer <the server's --{flag}>")]
    TokenRequired { flag: &'static str },
    #[error("admin endpoints are disabled; start the server with --admin-token to enable them")]
    AdminDisabled,
    #[error("pages of this origin may not open the websocket (see --allowed-origins)")]
    OriginNotAllowed,
    /// An answer made by the framework (an extractor rejection, a protocol error), turned
    /// into JSON with the code its status implies. `message` is meant for the client.
    #[error("{message}")]
    Status { status: StatusCode, message: String },
    #[error("the request body did not arrive in time; send it at once after the head")]
    BodyTimeout,
    #[error("{0}; a trusted proxy must send one IP address per entry")]
    InvalidForwardedFor(#[from] crate::client_addr::ForwardedError),
    #[error("too many websockets from this address (at most {max}); close some and retry")]
    TooManyFromAddress { max: usize },
    /// The placer (user or address) is banned.
    #[error("you are banned from placing: {reason}")]
    Banned {
        reason: String,
        /// When the ban ends, unix ms; `None`: never.
        until: Option<i64>,
    },
    #[error("this area is protected; only moderators may place here")]
    Protected,
    /// The anti-bot proof was already used for a placement.
    #[error("this proof of work was already used; solve a new challenge")]
    OnceSpent,
    /// Authenticated, but without the role this needs.
    #[error("this needs the {needed} role")]
    Forbidden { needed: &'static str },
    /// A cookie-authenticated admin request without a matching Origin or CSRF token.
    #[error("{0}")]
    Csrf(&'static str),
    /// `--login required` and the visitor has no account session.
    #[error("log in to place pixels on this canvas")]
    LoginRequired,
    /// A proof of work or captcha is missing or refused (crates/server/src/antibot).
    #[error(transparent)]
    Antibot(#[from] crate::antibot::Refusal),
    /// Too many reports from this identity or address in the window.
    #[error("too many reports from you; you may report again in {} s", (*retry_after_ms).max(0).unsigned_abs().div_ceil(1000))]
    ReportLimited { retry_after_ms: i64 },
    /// An id in the path that names nothing (a report, a ban, ...).
    #[error("there is no {what} with id {id}")]
    NoSuch { what: &'static str, id: String },
    /// The report was resolved before; nothing changed.
    #[error("report {id} was already resolved")]
    AlreadyResolved { id: i64 },
    /// An `/api/admin/` request without credentials (some way to authenticate exists).
    #[error(
        "this endpoint needs a moderator's or admin's login (log in on the page) or Authorization: Bearer <the server's --admin-token>"
    )]
    AdminCredentialsRequired,
    /// An endpoint of the visitor's own account, without a login session.
    #[error("log in first: this is about your account")]
    NotLoggedIn,
    /// The leaderboard shows display names: an account without one cannot be listed.
    #[error("choose a display name first (PUT /api/me/name): the leaderboard shows it")]
    NameRequired,
    /// Another account has the display name (compared case-insensitively).
    #[error("the name {0:?} is taken; pick another")]
    NameTaken(String),
    /// A login could not be completed (expired, tampered with, or refused by the
    /// provider); the details are logged.
    #[error("{0}; start the login again")]
    LoginFailed(&'static str),
    /// A tile or overview tile off the canvas (or a path that names none).
    #[error("{message}")]
    TileNotFound { message: String, allowed: String },
    /// A whole-canvas endpoint on a canvas too large to be served whole.
    #[error(
        "this canvas ({width} x {height}) is too large to be served whole (at most 8192 on both sides); use GET /api/tiles/{{tx}}/{{ty}} (tile_size in GET /api/config), /api/tiles/{{tx}}/{{ty}}/updates and a websocket view"
    )]
    NotWhole { width: u32, height: u32 },
    /// The tile's placements after `since` are no longer in the recent log.
    #[error(
        "placements on this tile after version {since} are no longer kept; fetch the tile again with Cache-Control: no-cache"
    )]
    TileGone { since: u64 },
    /// `POST /api/admin/canvas` asked for a smaller canvas.
    #[error("{0}")]
    CannotShrink(String),
    /// A canvas size out of range.
    #[error("{message}")]
    InvalidSize {
        field: &'static str,
        message: String,
        allowed: String,
    },
    /// `--export-concurrency` exports run already.
    #[error(
        "{max} dataset exports are running, as many as this server allows at once; retry in a minute"
    )]
    ExportBusy { max: usize },
    /// `--export-concurrency 0`.
    #[error("the dataset export is turned off on this canvas")]
    ExportOff,
    /// A template upload or deletion refused (crates/server/src/templates).
    #[error(transparent)]
    Template(#[from] crate::templates::TemplateError),
    /// `?seq=` beyond the history's head.
    #[error("seq {asked} is beyond the history, which holds seqs 0..={head}")]
    PastOutOfRange { asked: u64, head: u64 },
    /// The keyframes do not reach this seq yet (built in the background after a start).
    #[error(
        "the history is still being indexed (through seq {through}); seq {asked} can be read once it is; retry in a few seconds"
    )]
    PastCatchingUp { asked: u64, through: u64 },
    /// `--history-concurrency` past reads run already.
    #[error(
        "{max} reads of the past canvas are running, as many as this server allows at once; retry in a second"
    )]
    PastBusy { max: usize },
    /// `--timelapse-concurrency 0`.
    #[error("timelapses are turned off on this canvas")]
    TimelapseOff,
    /// The timelapse queue is full (crates/server/src/timelapse).
    #[error(
        "{active} timelapses are queued or rendering, as many as this server takes; retry in a minute"
    )]
    TimelapseBusy { active: usize },
    /// The caller has as many unfinished timelapses as one identity may.
    #[error("you have {max} timelapses queued or rendering; wait until one is done")]
    TimelapsePerUser { max: usize },
    /// `GET /api/timelapse/{id}/file` before the job is done.
    #[error(
        "this timelapse is {state}, not done; poll GET /api/timelapse/{{id}} until state is done"
    )]
    TimelapseNotDone { state: &'static str },
}

/// The cooldown refusal's message: the fixed model's, or the charges model's empty pool.
fn cooldown_message(retry_after_ms: i64, charges: bool) -> String {
    let secs = retry_after_ms.max(0).unsigned_abs().div_ceil(1000);
    if charges {
        format!("no charges left; the next one arrives in {secs} s")
    } else {
        format!("you placed a pixel moments ago; you may place again in {secs} s")
    }
}

fn unavailable_message(placing: bool) -> &'static str {
    if placing {
        "the canvas cannot take placements right now; retry in a moment"
    } else {
        "the canvas cannot answer this right now; retry in a moment"
    }
}

/// The `error` code of a status for which no specific one exists.
fn code_of_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        411 => "length_required",
        413 => "payload_too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        422 => "unprocessable",
        426 => "upgrade_required",
        429 => "too_many_requests",
        431 => "headers_too_large",
        503 => "unavailable",
        400..=499 => "bad_request",
        _ => "internal",
    }
}

impl ApiError {
    /// A failure outside the store (board encoding) as a `503` that names nothing.
    pub fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        ApiError::Unavailable {
            placing: false,
            retry_after_ms: None,
            source: Box::new(e),
        }
    }

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
            ApiError::ExportBusy { .. } => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            ApiError::ExportOff => (StatusCode::NOT_FOUND, "export_off"),
            ApiError::PastOutOfRange { .. } => (StatusCode::NOT_FOUND, "seq_out_of_range"),
            ApiError::PastCatchingUp { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "history_catching_up")
            }
            ApiError::PastBusy { .. } => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            ApiError::TimelapseOff => (StatusCode::NOT_FOUND, "timelapse_off"),
            ApiError::TimelapseBusy { .. } => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            ApiError::TimelapsePerUser { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_jobs"),
            ApiError::TimelapseNotDone { .. } => (StatusCode::CONFLICT, "not_done"),
            ApiError::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
            }
            ApiError::InvalidHost(_) => (StatusCode::BAD_REQUEST, "invalid_host"),
            ApiError::TokenRequired { .. } => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::AdminDisabled => (StatusCode::FORBIDDEN, "admin_disabled"),
            ApiError::OriginNotAllowed => (StatusCode::FORBIDDEN, "origin_not_allowed"),
            ApiError::Status { status, .. } => (*status, code_of_status(*status)),
            ApiError::BodyTimeout => (StatusCode::REQUEST_TIMEOUT, "body_timeout"),
            ApiError::InvalidForwardedFor(_) => (StatusCode::BAD_REQUEST, "invalid_forwarded_for"),
            ApiError::TooManyFromAddress { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_connections_from_address",
            ),
            ApiError::Banned { .. } => (StatusCode::FORBIDDEN, "banned"),
            ApiError::Protected => (StatusCode::FORBIDDEN, "protected"),
            ApiError::OnceSpent => (StatusCode::FORBIDDEN, "pow_replayed"),
            ApiError::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::Csrf(_) => (StatusCode::FORBIDDEN, "csrf"),
            ApiError::LoginRequired => (StatusCode::UNAUTHORIZED, "login_required"),
            ApiError::Antibot(r) => r.status_and_code(),
            ApiError::ReportLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::NoSuch { .. } => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::AlreadyResolved { .. } => (StatusCode::CONFLICT, "already_resolved"),
            ApiError::AdminCredentialsRequired => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NotLoggedIn => (StatusCode::UNAUTHORIZED, "not_logged_in"),
            ApiError::NameTaken(_) => (StatusCode::CONFLICT, "name_taken"),
            ApiError::NameRequired => (StatusCode::CONFLICT, "name_required"),
            ApiError::LoginFailed(_) => (StatusCode::BAD_REQUEST, "login_failed"),
            ApiError::TileNotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::NotWhole { .. } => (StatusCode::NOT_FOUND, "not_whole"),
            ApiError::TileGone { .. } => (StatusCode::GONE, "gone"),
            ApiError::CannotShrink(_) => (StatusCode::BAD_REQUEST, "cannot_shrink"),
            ApiError::InvalidSize { .. } => (StatusCode::BAD_REQUEST, "invalid_size"),
            ApiError::Template(t) => t.status_and_code(),
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
            ApiError::InvalidField { field, allowed, .. }
            | ApiError::InvalidSize { field, allowed, .. } => {
                body["field"] = json!(field);
                body["allowed"] = json!(allowed);
            }
            ApiError::TileNotFound { allowed, .. } => body["allowed"] = json!(allowed),
            ApiError::NotWhole { .. } => {
                body["allowed"] = json!([
                    "/api/tiles/{tx}/{ty}",
                    "/api/tiles/{tx}/{ty}.png",
                    "/api/tiles/{z}/{tx}/{ty}.png",
                    "/api/tiles/{tx}/{ty}/updates?since=V"
                ])
            }
            ApiError::Cooldown {
                next_at,
                retry_after_ms,
                next_charge_at,
            } => {
                body["next_at"] = json!(next_at);
                if let Some(at) = next_charge_at {
                    body["charges"] = json!(0);
                    body["next_charge_at"] = json!(at);
                }
                body["retry_after_ms"] = json!(retry_after_ms);
                retry_after = Some(*retry_after_ms);
            }
            ApiError::RateLimited { retry_after_ms }
            | ApiError::ReportLimited { retry_after_ms } => {
                body["retry_after_ms"] = json!(retry_after_ms);
                retry_after = Some(*retry_after_ms);
            }
            ApiError::PayloadTooLarge { limit } => {
                body["allowed"] = json!(format!("at most {limit} bytes"))
            }
            ApiError::Unavailable {
                retry_after_ms,
                source,
                ..
            } => {
                // The whole chain for the operator; the client got only the code.
                tracing::error!(error = %rplace_store::Chain(&**source), "store unavailable");
                if let Some(ms) = retry_after_ms {
                    body["retry_after_ms"] = json!(ms);
                    retry_after = Some(*ms);
                }
            }
            ApiError::MethodNotAllowed { allowed, .. } => body["allowed"] = json!(allowed),
            ApiError::Banned { reason, until } => {
                body["reason"] = json!(reason);
                body["until"] = json!(until);
            }
            ApiError::Forbidden { needed } => body["needed"] = json!(needed),
            ApiError::Antibot(r) => r.extend(&mut body),
            ApiError::ExportBusy { max } => {
                body["allowed"] = json!(format!("at most {max} exports at once"));
                retry_after = Some(60_000);
            }
            ApiError::Template(t) => {
                if let Some(allowed) = t.allowed() {
                    body["allowed"] = json!(allowed);
                }
                if let Some(ms) = t.retry_after_ms() {
                    body["retry_after_ms"] = json!(ms);
                    retry_after = Some(ms);
                }
            }
            ApiError::PastOutOfRange { head, .. } => {
                body["allowed"] = json!(format!("seq 0..={head}"));
                body["head"] = json!(head);
            }
            ApiError::PastCatchingUp { through, .. } => {
                body["through"] = json!(through);
                retry_after = Some(5_000);
            }
            ApiError::PastBusy { max } => {
                body["allowed"] = json!(format!("at most {max} past reads at once"));
                retry_after = Some(1_000);
            }
            ApiError::TimelapseBusy { .. } => retry_after = Some(60_000),
            ApiError::TimelapsePerUser { max } => {
                body["allowed"] = json!(format!("at most {max} unfinished timelapses per identity"))
            }
            ApiError::TimelapseNotDone { state } => body["state"] = json!(state),
            _ => {}
        }
        if let ApiError::TooManyFromAddress { max } = &self {
            body["allowed"] = json!(format!("at most {max} websockets per address"));
        }
        let mut resp = (status, axum::Json(body)).into_response();
        if matches!(self, ApiError::BodyTimeout) {
            // The rest of the body may still come: the connection cannot be reused.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(ms) = retry_after {
            let secs = (ms.max(0) as u64).div_ceil(1000).max(1);
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let ApiError::AdminCredentialsRequired = &self {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"rplace admin-token\""),
            );
        }
        if let ApiError::TokenRequired { flag } = &self {
            let challenge = format!("Bearer realm=\"rplace {flag}\"");
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_str(&challenge).expect("ascii"),
            );
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
                next_charge_at: None,
            },
            P::RateLimited { retry_after_ms } => ApiError::RateLimited { retry_after_ms },
            P::Banned { reason, until_ms } => ApiError::Banned {
                reason,
                until: until_ms,
            },
            P::Protected => ApiError::Protected,
            P::OnceSpent => ApiError::OnceSpent,
            P::ShuttingDown => ApiError::ShuttingDown,
            P::Unavailable(b) => ApiError::Unavailable {
                placing: true,
                retry_after_ms: b.retry_after_ms(),
                source: Box::new(b),
            },
        }
    }
}

impl From<rplace_store::StoreError> for ApiError {
    fn from(e: rplace_store::StoreError) -> Self {
        match e {
            rplace_store::StoreError::Gone { since, .. } => ApiError::Gone { since: since.0 },
            other => ApiError::Unavailable {
                placing: false,
                retry_after_ms: other.backend().and_then(|b| b.retry_after_ms()),
                source: Box::new(other),
            },
        }
    }
}

impl From<crate::hub::LoadError> for ApiError {
    fn from(e: crate::hub::LoadError) -> Self {
        match e {
            crate::hub::LoadError::Store(e) => e.into(),
            e @ crate::hub::LoadError::Behind => ApiError::unavailable(e),
        }
    }
}
