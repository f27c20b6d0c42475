//! Login sessions: a random token in an HttpOnly cookie, stored only as its SHA-256 with
//! an expiry, ended by logout; and the CSRF rules for requests a session authenticates.
//!
//! Lookups are cached for [`CACHE_TTL`] (bounded, [`CACHE_MAX`] entries), since every
//! placement of an account reads its session: a logout on this instance takes effect at
//! once, elsewhere (shared mode) and for role changes within the TTL.

use crate::app::AppState;
use crate::error::ApiError;
use crate::origin::Origin;
use axum::http::{HeaderMap, Method, header};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use rplace_store::accounts::{Account, Accounts, SessionHash};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// The session cookie.
pub const COOKIE: &str = "rplace_session";
/// The header a cookie-authenticated request may carry instead of a matching `Origin`.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a looked-up session is believed without asking the store again.
pub const CACHE_TTL: Duration = Duration::from_secs(5);
/// Most sessions cached; past it the cache starts over.
pub const CACHE_MAX: usize = 10_000;

/// The request's valid session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Its account, as the store had it (at most [`CACHE_TTL`] ago).
    pub account: Account,
    /// The token's hash, to end it.
    pub hash: SessionHash,
    /// The token that authenticates state-changing requests with [`CSRF_HEADER`].
    pub csrf: String,
}

/// Recent session lookups.
#[derive(Default)]
pub struct Cache {
    /// Hash → when looked up and what was found (`None`: no valid session).
    entries: Mutex<HashMap<SessionHash, (Instant, Option<Account>)>>,
}

impl Cache {
    fn get(&self, h: &SessionHash) -> Option<Option<Account>> {
        let map = self.entries.lock().expect("session cache");
        map.get(h)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, a)| a.clone())
    }

    fn put(&self, h: SessionHash, a: Option<Account>) {
        let mut map = self.entries.lock().expect("session cache");
        if map.len() >= CACHE_MAX {
            map.clear();
        }
        map.insert(h, (Instant::now(), a));
    }

    /// Forgets a session (logout, or its account changed).
    pub fn forget(&self, h: &SessionHash) {
        self.entries.lock().expect("session cache").remove(h);
    }

    /// Forgets every cached session of `account` (a rename or a role change).
    pub fn forget_account(&self, account: i64) {
        self.entries
            .lock()
            .expect("session cache")
            .retain(|_, (_, a)| a.as_ref().is_none_or(|a| a.id != account));
    }
}

/// A new session token: 32 random bytes in hex.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

pub fn hash(token: &str) -> SessionHash {
    SessionHash(Sha256::digest(token.as_bytes()).into())
}

/// The CSRF token of a session: derived from the token, which only the visitor's
/// HttpOnly cookie holds, so another site can neither read nor compute it.
fn csrf_of(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"rplace csrf\0");
    h.update(token.as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// The cookie that holds a new session.
pub fn cookie(app: &AppState, token: String) -> Cookie<'static> {
    let lifetime = app.auth.settings.session_lifetime;
    Cookie::build((COOKIE, token))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(app.settings.access.secure_cookies)
        .max_age(cookie::time::Duration::seconds(lifetime.as_secs() as i64))
        .build()
}

/// The cookie that removes the session cookie.
pub fn removal() -> Cookie<'static> {
    Cookie::build((COOKIE, "")).path("/").build()
}

/// The session token a request carries, if it looks like one.
fn token(headers: &HeaderMap) -> Option<String> {
    let jar = CookieJar::from_headers(headers);
    let t = jar.get(COOKIE)?.value().to_string();
    (t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())).then_some(t)
}

/// The request's session, if it has a valid one.
pub async fn current(app: &AppState, headers: &HeaderMap) -> Result<Option<Session>, ApiError> {
    let Some(token) = token(headers) else {
        return Ok(None);
    };
    let h = hash(&token);
    let cache = &app.auth.sessions;
    let account = match cache.get(&h) {
        Some(found) => found,
        None => {
            let found = app.store.session(h, rplace_store::now_ms()).await?;
            cache.put(h, found.clone());
            found
        }
    };
    Ok(account.map(|account| Session {
        account,
        hash: h,
        csrf: csrf_of(&token),
    }))
}

/// Whether `Origin` names this canvas: the `--public-url`'s origin, else the origin the
/// request was addressed to (its `Host`, in the scheme the `Origin` has).
fn same_origin(app: &AppState, headers: &HeaderMap) -> bool {
    let Some(origin) = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Origin::parse(v).ok())
    else {
        return false;
    };
    if let Some(public) = &app.settings.access.public_origin {
        return origin == *public;
    }
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let scheme = if origin.is_https() { "https" } else { "http" };
    Origin::parse(&format!("{scheme}://{host}")).is_ok_and(|own| own == origin)
}

/// The CSRF rule for a request that `session` authenticates: a method other than GET and
/// HEAD needs an `Origin` of this canvas or the session's [`CSRF_HEADER`]; otherwise 403
/// `csrf`.
pub fn check_csrf(
    app: &AppState,
    method: &Method,
    headers: &HeaderMap,
    session: &Session,
) -> Result<(), ApiError> {
    if method == Method::GET || method == Method::HEAD {
        return Ok(());
    }
    let token_ok = headers
        .get(CSRF_HEADER)
        .is_some_and(|v| bool::from(v.as_bytes().ct_eq(session.csrf.as_bytes())));
    if token_ok || same_origin(app, headers) {
        return Ok(());
    }
    if headers.contains_key(header::ORIGIN) {
        Err(ApiError::Csrf(
            "this request comes from another site's page; send it from this canvas's own page (Origin) or with X-CSRF-Token from GET /api/me",
        ))
    } else {
        Err(ApiError::Csrf(
            "a request authenticated by a login cookie needs an Origin header of this canvas or X-CSRF-Token from GET /api/me",
        ))
    }
}
