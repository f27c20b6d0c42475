//! Login, logout, the account's own settings, and role management.
//!
//! - `GET /auth/login/{provider}?return_to=/path` → 302 to the provider, with the
//!   login's state, nonce and PKCE verifier in a short-lived signed cookie.
//! - `GET /auth/callback/{provider}` → checks state, exchanges the code, verifies the ID
//!   token, finds or creates the account, links the device's anonymous identity, starts a
//!   session → 302 to `return_to`.
//! - `POST /auth/logout`, `GET /api/me`, `PUT /api/me/name`.
//! - Admins: `GET/POST /api/admin/moderators`, `DELETE /api/admin/moderators/{user}`.

use super::oidc::Pending;
use super::session::{self, Session};
use super::{Actor, Role, names};
use crate::app::AppState;
use crate::config::LoginMode;
use crate::error::ApiError;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post, put};
use axum::{Extension, Json};
use axum_extra::extract::cookie::{Cookie, SameSite, SignedCookieJar};
use rplace_domain::UserId;
use rplace_store::accounts::{Account, Accounts, Login, NameSet};
use serde_json::{Value, json};
use std::collections::HashMap;
use subtle::ConstantTimeEq;

/// The signed cookie holding a login in progress.
const PENDING_COOKIE: &str = "rplace_login";
/// Where the pending login's cookie is sent: only to the callback.
const CALLBACK_PREFIX: &str = "/auth/callback";
/// How long a login may take at the provider.
const PENDING_TTL_MS: i64 = 10 * 60 * 1000;
/// Longest `return_to` kept.
const RETURN_TO_MAX: usize = 512;
/// Largest `PUT /api/me/name` body.
const NAME_BODY_LIMIT: usize = 1024;

/// The public endpoints (full paths): login, callback, logout, the account.
pub fn public_table() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/auth/login/{provider}", get(login)),
        ("/auth/callback/{provider}", get(callback)),
        ("/auth/logout", post(logout)),
        ("/api/me", get(me)),
        ("/api/me/name", put(set_name)),
    ]
}

/// Role management, relative to `/api/admin` (admins only).
pub fn admin_table() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/moderators", get(list_moderators).post(grant_moderator)),
        (
            "/moderators/{user}",
            axum::routing::delete(revoke_moderator),
        ),
    ]
}

/// The canvas's own base URL: `--public-url`, else the request's `Host` over http (for
/// local use).
fn base_url(app: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    if let Some(url) = &app.config.public_url {
        return Ok(url.trim().trim_end_matches('/').to_string());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or(ApiError::InvalidHost(
            "a login needs a Host header (or the server's --public-url)",
        ))?;
    Ok(format!("http://{host}"))
}

/// `return_to` if it is a path of this site, else `/`: never another origin (`//x`,
/// `/\x`, `https://x`).
fn safe_return(to: Option<&String>) -> String {
    match to {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.starts_with("/\\")
                && p.len() <= RETURN_TO_MAX
                && p.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            p.clone()
        }
        _ => "/".to_string(),
    }
}

fn found(location: &str) -> Response {
    let mut r = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn login_enabled(app: &AppState) -> Result<(), ApiError> {
    if app.auth.settings.login == LoginMode::Off {
        return Err(ApiError::NotFound);
    }
    Ok(())
}

fn discovery_failed(e: super::oidc::OidcError) -> ApiError {
    tracing::warn!(error = %e, "login provider not usable");
    match e {
        super::oidc::OidcError::UnknownProvider(_) => ApiError::NotFound,
        other => ApiError::Unavailable {
            placing: false,
            retry_after_ms: Some(5000),
            source: Box::new(other),
        },
    }
}

/// `GET /auth/login/{provider}`.
async fn login(
    State(app): State<AppState>,
    Path(provider): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    jar: SignedCookieJar,
) -> Result<Response, ApiError> {
    login_enabled(&app)?;
    let redirect = format!("{}{CALLBACK_PREFIX}/{provider}", base_url(&app, &headers)?);
    let expires_ms = rplace_store::now_ms() + PENDING_TTL_MS;
    let (url, pending) = app
        .auth
        .providers
        .start(
            &provider,
            &redirect,
            safe_return(q.get("return_to")),
            expires_ms,
        )
        .await
        .map_err(discovery_failed)?;
    let value = hex::encode(serde_json::to_vec(&pending).expect("serializable"));
    let cookie = Cookie::build((PENDING_COOKIE, value))
        .path(CALLBACK_PREFIX)
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(app.settings.access.secure_cookies)
        .max_age(cookie::time::Duration::milliseconds(PENDING_TTL_MS))
        .build();
    Ok((jar.add(cookie), found(&url)).into_response())
}

/// The login in progress, if the signed cookie holds a valid, unexpired one for
/// `provider`.
fn pending_of(jar: &SignedCookieJar, provider: &str) -> Option<Pending> {
    let c = jar.get(PENDING_COOKIE)?;
    let bytes = hex::decode(c.value()).ok()?;
    let p: Pending = serde_json::from_slice(&bytes).ok()?;
    (p.provider == provider && p.expires_ms > rplace_store::now_ms()).then_some(p)
}

/// `GET /auth/callback/{provider}`.
async fn callback(
    State(app): State<AppState>,
    Path(provider): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    jar: SignedCookieJar,
) -> Result<Response, ApiError> {
    login_enabled(&app)?;
    let pending = pending_of(&jar, &provider).ok_or(ApiError::LoginFailed(
        "this login expired or was started in another browser",
    ))?;
    let jar = jar.remove(Cookie::build(PENDING_COOKIE).path(CALLBACK_PREFIX));
    if let Some(error) = q.get("error") {
        tracing::info!(provider, error, "the provider refused a login");
        return Err(ApiError::LoginFailed("the provider did not log you in"));
    }
    let state_ok = q
        .get("state")
        .is_some_and(|s| bool::from(s.as_bytes().ct_eq(pending.state.as_bytes())));
    if !state_ok {
        return Err(ApiError::LoginFailed(
            "the login's state does not match this browser's",
        ));
    }
    let code = q
        .get("code")
        .ok_or(ApiError::LoginFailed("the provider sent no code"))?;
    let identity = match app.auth.providers.finish(&pending, code.clone()).await {
        Ok(i) => i,
        Err(e @ super::oidc::OidcError::Discovery { .. }) => return Err(discovery_failed(e)),
        Err(e) => {
            tracing::warn!(provider, error = %e, "a login did not verify");
            return Err(ApiError::LoginFailed("the login could not be verified"));
        }
    };
    let now = rplace_store::now_ms();
    let device = crate::identity::user(&jar);
    let logged_in = app
        .store
        .login(Login {
            provider: identity.provider,
            subject: identity.subject,
            email: identity.email,
            email_verified: identity.email_verified,
            device,
            // Never 0: that is the admin token's identity.
            fresh: UserId(rand::random::<u64>().max(1)),
            now_ms: now,
        })
        .await?;
    let account = &logged_in.account;
    if let Some(d) = logged_in.linked
        && d != account.user
    {
        // The account may not place before the device's identity could.
        app.store.carry_cooldown(d, account.user).await?;
    }
    let token = session::new_token();
    let lifetime = app.auth.settings.session_lifetime.as_millis() as i64;
    app.store
        .create_session(session::hash(&token), account.id, now, now + lifetime)
        .await?;
    // The subject is logged so that an operator can name this account in `--admins`.
    tracing::info!(
        account = account.id,
        user = %account.user,
        provider,
        subject = %account.subject,
        created = logged_in.created,
        "login"
    );
    // The session cookie is not signed: its token is random and checked by the store.
    let plain = axum_extra::extract::cookie::CookieJar::new().add(session::cookie(&app, token));
    Ok((jar, plain, found(&pending.return_to)).into_response())
}

/// `POST /auth/logout`: ends the session (CSRF-checked like every cookie-authenticated
/// change) and removes its cookie.
async fn logout(
    State(app): State<AppState>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(s) = session::current(&app, &headers).await? {
        session::check_csrf(&app, &method, &headers, &s)?;
        app.store.end_session(s.hash).await?;
        app.auth.sessions.forget(&s.hash);
    }
    let jar = axum_extra::extract::cookie::CookieJar::new().add(session::removal());
    Ok((
        jar,
        [(header::CACHE_CONTROL, "no-store")],
        StatusCode::NO_CONTENT,
    )
        .into_response())
}

/// An account as the API shows it.
pub fn account_json(app: &AppState, a: &Account) -> Value {
    json!({
        "id": a.id,
        "user": a.user.to_string(),
        "name": a.name,
        "role": app.auth.role_of(a).map(Role::name),
        "provider": a.provider,
        "created_at": a.created_ms,
        "last_login_at": a.last_login_ms,
    })
}

/// The `login` field of `GET /api/config`: the mode and the providers' buttons.
pub fn login_json(app: &AppState) -> Value {
    let mode = app.auth.settings.login;
    let providers: Vec<Value> = if mode == LoginMode::Off {
        Vec::new()
    } else {
        app.auth
            .providers
            .specs()
            .map(|p| json!({"id": p.id, "name": p.name, "login_url": format!("/auth/login/{}", p.id)}))
            .collect()
    };
    json!({ "mode": mode, "providers": providers })
}

/// The `account` field of `GET /api/config`: the session's account, or null.
pub async fn account_field(app: &AppState, headers: &HeaderMap) -> Result<Value, ApiError> {
    Ok(match session::current(app, headers).await? {
        Some(s) if app.auth.settings.login != LoginMode::Off => account_json(app, &s.account),
        _ => Value::Null,
    })
}

fn me_json(app: &AppState, s: Option<&Session>) -> Value {
    match s {
        Some(s) => json!({
            "account": account_json(app, &s.account),
            "csrf_token": s.csrf,
        }),
        None => json!({ "account": null, "csrf_token": null }),
    }
}

/// `GET /api/me`: the session's account and CSRF token, or `{"account": null}`.
async fn me(State(app): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let s = session::current(&app, &headers).await?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(me_json(&app, s.as_ref())),
    )
        .into_response())
}

/// `PUT /api/me/name` `{"name": ".."}`.
async fn set_name(
    State(app): State<AppState>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let s = session::current(&app, &headers)
        .await?
        .ok_or(ApiError::NotLoggedIn)?;
    session::check_csrf(&app, &method, &headers, &s)?;
    let bytes = tokio::time::timeout(
        app.settings.body_timeout,
        axum::body::to_bytes(body, NAME_BODY_LIMIT),
    )
    .await
    .map_err(|_| ApiError::BodyTimeout)?
    .map_err(|_| ApiError::PayloadTooLarge {
        limit: NAME_BODY_LIMIT,
    })?;
    let value = crate::json::parse(&bytes).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let name = match value.get("name") {
        Some(Value::String(n)) => n.clone(),
        Some(other) => {
            return Err(ApiError::InvalidField {
                field: "name",
                message: format!("name must be a string, got {other}"),
                allowed: names::ALLOWED.into(),
            });
        }
        None => {
            return Err(ApiError::MissingField {
                field: "name",
                allowed: names::ALLOWED.into(),
            });
        }
    };
    names::check(&name, &app.auth.settings.deny_words)?;
    match app
        .store
        .set_name(s.account.id, &name, &names::key(&name))
        .await?
    {
        NameSet::Set => {}
        NameSet::Taken => return Err(ApiError::NameTaken(name)),
        NameSet::NoAccount => return Err(ApiError::NotLoggedIn),
    }
    app.auth.sessions.forget_account(s.account.id);
    let s = Session {
        account: Account {
            name: Some(name),
            ..s.account
        },
        ..s
    };
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(me_json(&app, Some(&s))),
    )
        .into_response())
}

/// The account a public id names (its own or a linked identity), or 422.
async fn account_named(app: &AppState, user: &str) -> Result<Account, ApiError> {
    let allowed = || "the 16-hex-digit public id of a user who logged in once".to_string();
    let id = UserId::parse(user).ok_or_else(|| ApiError::InvalidField {
        field: "user",
        message: format!("{user:?} is not a public id"),
        allowed: allowed(),
    })?;
    app.store
        .account_of(id)
        .await?
        .ok_or_else(|| ApiError::InvalidField {
            field: "user",
            message: format!("no account has the identity {id}; they must log in once first"),
            allowed: allowed(),
        })
}

/// `GET /api/admin/moderators`: the moderators, and the admins configuration names.
async fn list_moderators(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
) -> Result<Response, ApiError> {
    actor.require(Role::Admin)?;
    let mods = app.store.moderators().await?;
    let admins: Vec<String> = app
        .auth
        .settings
        .admins
        .iter()
        .map(|r| match r {
            crate::config::AdminRule::Subject { provider, subject } => {
                format!("{provider}:{subject}")
            }
            crate::config::AdminRule::Email(e) => format!("email:{e}"),
        })
        .collect();
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "moderators": mods.iter().map(|a| account_json(&app, a)).collect::<Vec<_>>(),
            "admins": admins,
        })),
    )
        .into_response())
}

async fn change_moderator(
    app: &AppState,
    actor: &Actor,
    user: &str,
    moderator: bool,
) -> Result<Response, ApiError> {
    actor.require(Role::Admin)?;
    let account = account_named(app, user).await?;
    if !app.store.set_moderator(account.id, moderator).await? {
        return Err(ApiError::NotFound);
    }
    app.auth.sessions.forget_account(account.id);
    let account = Account {
        moderator,
        ..account
    };
    let shown = account_json(app, &account);
    crate::audit::record(
        app,
        actor,
        crate::audit::Action {
            kind: if moderator {
                "grant_moderator"
            } else {
                "revoke_moderator"
            },
            reason: None,
            pixels: 0,
            detail: json!({ "account": shown }),
        },
    )
    .await?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(shown)).into_response())
}

/// `POST /api/admin/moderators` `{"user": "<public id>"}`.
async fn grant_moderator(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    actor.require(Role::Admin)?;
    let value = crate::json::parse(&body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let user = value
        .get("user")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::MissingField {
            field: "user",
            allowed: "the public id of a user, as GET /api/pixel shows it".into(),
        })?
        .to_string();
    change_moderator(&app, &actor, &user, true).await
}

/// `DELETE /api/admin/moderators/{user}`.
async fn revoke_moderator(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(user): Path<String>,
) -> Result<Response, ApiError> {
    change_moderator(&app, &actor, &user, false).await
}
