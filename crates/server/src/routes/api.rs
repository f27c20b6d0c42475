//! The HTTP API: config, board, placing, pixel info and catch-up. See docs/API.md.

use crate::app::AppState;
use crate::board_cache::{Encoding, Version};
use crate::error::ApiError;
use crate::hub::Recent;
use crate::routes::body::{QueryMap, int_field, json_object, query_map, read_body};
use crate::serve::Peer;
use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::SignedCookieJar;
use rplace_domain::wire::{self, Update};
use rplace_domain::{Coord, IdempotencyKey, Seq, UserId};
use rplace_store::{NewPlacement, Standing, Store};
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;

/// Largest `PUT /api/pixel` body.
pub const BODY_LIMIT: usize = 1024;
/// Most placements in one `GET /api/updates` answer.
pub const UPDATES_LIMIT: usize = 65_536;
/// Set on the answer to a repeat of an `Idempotency-Key`: nothing was placed now.
const REPLAYED: &str = "idempotent-replayed";
/// Placements listed by `GET /api/pixel`.
pub const HISTORY_LEN: usize = 10;

pub async fn config(
    State(app): State<AppState>,
    headers: HeaderMap,
    jar: SignedCookieJar,
) -> Result<Response, ApiError> {
    let (jar, user) = crate::identity::ensure(jar, app.settings.access.secure_cookies);
    let quota = app.store.user_quota(user).await?;
    let s = &app.settings;
    let dims = app.hub.dims();
    let (pow, captcha) = app.antibot.public_config();
    let mut body = json!({
        "width": dims.width(),
        "height": dims.height(),
        "tile_size": rplace_domain::tile::TILE_SIZE,
        "levels": rplace_domain::tile::levels(dims),
        "whole": dims.whole(),
        "palette": s.palette.colors().iter().map(|c| c.to_hex()).collect::<Vec<_>>(),
        "bits_per_pixel": s.palette.depth().bits(),
        "cooldown_ms": s.cooldown.as_millis(),
        "board_ttl_s": s.board_ttl.as_secs_f64(),
        "tick_ms": app.hub.tick_ms(),
        "seq": app.hub.seq().0,
        "user": crate::routes::quota::UserInfo::new(user, quota),
        "pow": pow,
        "captcha": captcha,
        "login": crate::auth::routes::login_json(&app),
        "account": crate::auth::routes::account_field(&app, &headers).await?,
    });
    for (k, v) in crate::routes::quota::model_fields(&s.policy) {
        body[k] = v;
    }
    Ok((jar, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}

/// Headers shared by the board's representations.
fn board_headers(h: &mut HeaderMap, seq: Seq, ttl_secs: u64) {
    h.insert("x-board-seq", HeaderValue::from(seq.0));
    h.insert(header::ETAG, etag(seq));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_str(&format!("public, max-age={ttl_secs}")).expect("ascii"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("x-board-seq, etag"),
    );
}

fn etag(seq: Seq) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{}\"", seq.0)).expect("digits")
}

/// `If-None-Match` uses the weak comparison (RFC 9110 13.1.2): a cache that gzipped the
/// body (Varnish) turns the ETag weak, and the board is still the same version.
pub(crate) fn not_modified(headers: &HeaderMap, seq: Seq) -> bool {
    let tag = format!("\"{}\"", seq.0);
    headers.get(header::IF_NONE_MATCH).is_some_and(|v| {
        v.to_str()
            .map(|s| {
                s.split(',')
                    .map(|t| t.trim())
                    .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == tag)
            })
            .unwrap_or(false)
    })
}

pub(crate) fn ttl_secs(app: &AppState) -> u64 {
    app.settings.board_ttl.as_secs_f64().round() as u64
}

/// Whole-canvas endpoints exist only on canvases small enough to be served whole.
pub(crate) fn require_whole(app: &AppState) -> Result<rplace_domain::Dimensions, ApiError> {
    let dims = app.hub.dims();
    if !dims.whole() {
        return Err(ApiError::NotWhole {
            width: dims.width(),
            height: dims.height(),
        });
    }
    Ok(dims)
}

pub async fn board(
    State(app): State<AppState>,
    q: crate::routes::body::QueryMap,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let dims = require_whole(&app)?;
    if let Some(m) = crate::past::PastMoment::parse(&crate::routes::body::query_map(q)?)? {
        return crate::routes::past::board(&app, dims, false, m, &headers).await;
    }
    metrics::counter!("rplace_board_requests_total", "format" => "raw").increment(1);
    let version = app.boards.get(&app.hub).await.map_err(ApiError::from)?;
    let mut resp = packed_answer(&app, &version, &headers, true).await?;
    board_headers(resp.headers_mut(), version.seq, ttl_secs(&app));
    Ok(resp)
}

/// `v`'s packed bytes as `application/octet-stream` in the best encoding the request
/// accepts (each made once per version), or `304` when `If-None-Match` names its
/// version; `Vary: accept-encoding` either way. `sendfile`: offer the body to
/// `crate::zerocopy` (the board's large bodies, asked for by everyone).
pub(crate) async fn packed_answer(
    app: &AppState,
    v: &Version,
    req: &HeaderMap,
    sendfile: bool,
) -> Result<Response, ApiError> {
    let mut resp = if not_modified(req, v.seq) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let enc = Encoding::negotiate(
            req.get(header::ACCEPT_ENCODING)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
        );
        let body = v.body(enc).await.map_err(ApiError::unavailable)?;
        if sendfile {
            app.bodies.offer(&body).await;
        }
        let mut r = Body::from(body).into_response();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        if let Some(ce) = enc.header_value() {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(ce));
        }
        r
    };
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    Ok(resp)
}

pub async fn board_png(
    State(app): State<AppState>,
    q: crate::routes::body::QueryMap,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let dims = require_whole(&app)?;
    if let Some(m) = crate::past::PastMoment::parse(&crate::routes::body::query_map(q)?)? {
        return crate::routes::past::board(&app, dims, true, m, &headers).await;
    }
    metrics::counter!("rplace_board_requests_total", "format" => "png").increment(1);
    let version = app.boards.get(&app.hub).await.map_err(ApiError::from)?;
    let mut resp = if not_modified(&headers, version.seq) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let png = version
            .png(dims, &app.settings.palette)
            .await
            .map_err(ApiError::unavailable)?;
        app.bodies.offer(&png).await;
        ([(header::CONTENT_TYPE, "image/png")], png).into_response()
    };
    board_headers(resp.headers_mut(), version.seq, ttl_secs(&app));
    Ok(resp)
}

/// Who is placing and how the policy sees them: the admin token (the operator, a
/// moderator without cooldown or rate limit: the exempt path), the load generator's token
/// (exempt), else a login session's account or the signed cookie's anonymous identity
/// (`auth::placer`, which refuses anonymity under `--login required`). Returns the user,
/// whether the exempt path applies, and their standing.
async fn standing(
    app: &AppState,
    headers: &HeaderMap,
    jar: &SignedCookieJar,
) -> Result<(UserId, bool, Standing), ApiError> {
    if let Some(token) = &app.settings.access.admin_token
        && token.authorizes(headers)
    {
        let operator = Standing {
            moderator: true,
            ..Standing::default()
        };
        return Ok((crate::auth::OPERATOR, true, operator));
    }
    match placing_user(app, headers, jar)? {
        (Some(user), true) => Ok((user, true, Standing::default())),
        (anonymous, _) => {
            let placer = crate::auth::placer(app, headers, anonymous).await?;
            Ok((placer.user, false, placer.standing))
        }
    }
}

/// Who is placing: the load generator's token path, else the signed cookie (if any).
fn placing_user(
    app: &AppState,
    headers: &HeaderMap,
    jar: &SignedCookieJar,
) -> Result<(Option<UserId>, bool), ApiError> {
    if let Some(token) = &app.settings.access.bench_token
        && let Some(presented) = crate::secret::bearer(headers)
    {
        // Digests compared in constant time: neither the bytes nor the length leak.
        if !token.matches(presented) {
            return Err(ApiError::Unauthorized);
        }
        let user = headers
            .get("x-rplace-user")
            .and_then(|v| v.to_str().ok())
            .and_then(UserId::parse)
            .ok_or(ApiError::InvalidField {
                field: "X-Rplace-User",
                message: "X-Rplace-User must be 16 hex digits".into(),
                allowed: "16 lowercase hex digits".into(),
            })?;
        return Ok((Some(user), true));
    }
    // Without a valid cookie the placer may still have a login session (auth::placer).
    Ok((crate::identity::user(jar), false))
}

fn parse_placement(
    app: &AppState,
    body: &[u8],
) -> Result<(Coord, rplace_domain::ColorIndex), ApiError> {
    let obj = json_object(body, r#"{"x":0,"y":0,"color":0}"#)?;
    let dims = app.hub.dims();
    let x_allowed = format!("integer 0..={}", dims.width() - 1);
    let y_allowed = format!("integer 0..={}", dims.height() - 1);
    let c_allowed = format!("palette index 0..={}", app.settings.palette.len() - 1);
    let x = int_field(&obj, "x", x_allowed.clone())?;
    let y = int_field(&obj, "y", y_allowed.clone())?;
    let color = int_field(&obj, "color", c_allowed.clone())?;
    let coord = dims.coord(x, y).map_err(|e| ApiError::InvalidField {
        field: e.axis,
        message: e.to_string(),
        allowed: if e.axis == "x" { x_allowed } else { y_allowed },
    })?;
    let color = app
        .settings
        .palette
        .color(color)
        .map_err(|e| ApiError::InvalidField {
            field: "color",
            message: e.to_string(),
            allowed: c_allowed,
        })?;
    Ok((coord, color))
}

/// The `Idempotency-Key` header, if sent: one, valid.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    let invalid = |message: String| ApiError::InvalidHeader {
        header: "Idempotency-Key",
        message,
        allowed: IdempotencyKey::ALLOWED,
    };
    let mut values = headers.get_all("idempotency-key").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(invalid("send Idempotency-Key at most once".into()));
    }
    let key = value
        .to_str()
        .ok()
        .and_then(|v| IdempotencyKey::parse(v).ok())
        .ok_or_else(|| {
            invalid(format!(
                "Idempotency-Key must be {}",
                IdempotencyKey::ALLOWED
            ))
        })?;
    Ok(Some(key))
}

#[tracing::instrument(level = "debug", skip_all, fields(ip, user, seq))]
pub async fn place(
    State(app): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    jar: SignedCookieJar,
    body: Body,
) -> Result<Response, ApiError> {
    let result = place_inner(&app, peer, &headers, &jar, body).await;
    match &result {
        Ok(r) if r.headers().contains_key(REPLAYED) => {
            metrics::counter!("rplace_placements_replayed_total").increment(1)
        }
        Ok(_) => metrics::counter!("rplace_placements_total").increment(1),
        Err(e) => metrics::counter!("rplace_rejections_total", "reason" => e.code()).increment(1),
    }
    result
}

async fn place_inner(
    app: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    jar: &SignedCookieJar,
    body: Body,
) -> Result<Response, ApiError> {
    let (user, bypass, standing) = standing(app, headers, jar).await?;
    let idempotency_key = idempotency_key(headers)?;
    let bytes = read_body(app, headers, body, "application/json", BODY_LIMIT).await?;
    let (coord, color) = parse_placement(app, &bytes)?;
    let ip = crate::client_addr::client_ip(&app.settings.trusted_proxies, peer.ip(), headers)?;
    let span = tracing::Span::current();
    span.record("ip", tracing::field::display(ip));
    span.record("user", tracing::field::display(user));
    // Proof of work and captcha (crate::antibot); the load generator's token skips them.
    let now_ms = rplace_store::now_ms();
    let addr = app.settings.policy.addr_key(ip);
    let pass = match bypass {
        true => None,
        false => Some(app.antibot.check(user, ip, addr, headers, now_ms).await?),
    };
    let placed = app
        .store
        .place(NewPlacement {
            coord,
            color,
            user,
            ip,
            bypass_limits: bypass,
            idempotency_key,
            standing: Standing {
                once: pass.and_then(|p| p.once),
                ..standing
            },
        })
        .await
        .map_err(|e| crate::routes::quota::refusal(app, e))?;
    if let Some(p) = &pass
        && !placed.replayed
    {
        app.antibot.placed(p, now_ms);
    }
    span.record("seq", placed.seq.0);
    let mut answer =
        json!({ "seq": placed.seq.0, "at": placed.at_ms, "next_at": placed.next_at_ms });
    crate::routes::quota::add_pool(app, user, &placed, &mut answer).await;
    let mut resp = ([(header::CACHE_CONTROL, "no-store")], Json(answer)).into_response();
    if placed.replayed {
        // The same answer as the first attempt's; this header only tells it was a repeat.
        resp.headers_mut()
            .insert(REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(resp)
}

fn query_int(q: &HashMap<String, String>, field: &'static str) -> Result<i64, ApiError> {
    let raw = q.get(field).ok_or_else(|| ApiError::InvalidQuery {
        field,
        message: format!("query parameter {field} is missing"),
    })?;
    raw.trim().parse().map_err(|_| ApiError::InvalidQuery {
        field,
        message: format!("query parameter {field} must be an integer, got {raw:?}"),
    })
}

pub async fn pixel_info(State(app): State<AppState>, q: QueryMap) -> Result<Response, ApiError> {
    let q = query_map(q)?;
    let dims = app.hub.dims();
    let (x, y) = (query_int(&q, "x")?, query_int(&q, "y")?);
    let coord = dims.coord(x, y).map_err(|e| ApiError::InvalidField {
        field: e.axis,
        message: e.to_string(),
        allowed: format!("integer 0..={}", e.max),
    })?;
    let history = app.store.pixel_history(coord, HISTORY_LEN).await?;
    let latest = history.first();
    let color = app.hub.pixel(coord).await?;
    let body = json!({
        "x": x,
        "y": y,
        "color": color.get(),
        "seq": latest.map(|p| p.seq.0),
        "user": latest.map(|p| p.user.to_string()),
        "at": latest.map(|p| p.at_ms),
        "history": history.iter().map(|p| json!({
            "seq": p.seq.0, "color": p.color.get(), "user": p.user.to_string(), "at": p.at_ms,
        })).collect::<Vec<_>>(),
    });
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}

pub async fn updates(State(app): State<AppState>, q: QueryMap) -> Result<Response, ApiError> {
    // Whole-canvas frames carry 16-bit coordinates: larger canvases catch up per tile.
    require_whole(&app)?;
    let q = query_map(q)?;
    let since = query_int(&q, "since")?;
    if since < 0 {
        return Err(ApiError::InvalidQuery {
            field: "since",
            message: format!("since must be a seq from 0, got {since}"),
        });
    }
    let since = Seq(since as u64);
    let (ups, head) = match app.hub.recent(since, UPDATES_LIMIT) {
        Recent::Found(ups, head) => (ups, head),
        Recent::TooOld => {
            // Older than this instance's memory: the store may still have them.
            let head = app.hub.seq();
            let rows = app.store.updates_since(since, UPDATES_LIMIT).await?;
            let ups = rows
                .into_iter()
                .take_while(|p| p.seq <= head)
                .map(|p| Update {
                    seq: p.seq,
                    coord: p.coord,
                    color: p.color,
                })
                .collect();
            (ups, head)
        }
    };
    let last = ups.last().map_or(since, |u: &Update| u.seq);
    let body: Vec<u8> = wire::encode_frames(&ups).concat();
    let mut resp = (
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response();
    let h = resp.headers_mut();
    h.insert("x-board-seq", HeaderValue::from(head.0));
    if last < head {
        h.insert("x-updates-more", HeaderValue::from_static("true"));
    }
    Ok(resp)
}
