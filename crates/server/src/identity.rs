//! Anonymous identities in a signed cookie.
//!
//! The cookie holds a random 64-bit id and an HMAC-SHA256 over it (axum-extra's signed
//! cookie jar), so a client can keep its id but cannot choose another. The key comes from
//! configuration, or is generated once and kept in the data dir, so identities survive
//! restarts; instances of one canvas must share it.

use axum_extra::extract::cookie::{Cookie, Key, SameSite, SignedCookieJar};
use rplace_domain::UserId;
use std::path::Path;

/// Name of the identity cookie.
pub const COOKIE: &str = "rplace_id";

/// Loads the signing key: configured bytes, else `cookie.key` in the data dir, created on
/// first start.
pub fn load_key(configured: Option<&[u8]>, data_dir: &Path) -> std::io::Result<Key> {
    if let Some(k) = configured {
        return Ok(Key::from(k));
    }
    let path = data_dir.join("cookie.key");
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let bytes = hex::decode(s.trim()).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?;
            if bytes.len() < 64 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} holds fewer than 64 bytes", path.display()),
                ));
            }
            Ok(Key::from(&bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)?;
            let bytes: [u8; 64] = std::array::from_fn(|_| rand::random());
            let tmp = path.with_extension("key.tmp");
            std::fs::write(&tmp, hex::encode(bytes))?;
            std::fs::rename(&tmp, &path)?;
            Ok(Key::from(&bytes))
        }
        Err(e) => Err(e),
    }
}

/// The identity in the jar, if its signature is valid.
pub fn user(jar: &SignedCookieJar) -> Option<UserId> {
    jar.get(COOKIE).and_then(|c| UserId::parse(c.value()))
}

/// The identity in the jar, or a new one added to it. `secure`: the site is served over
/// https (`--public-url`), so the cookie must never travel over plain http.
pub fn ensure(jar: SignedCookieJar, secure: bool) -> (SignedCookieJar, UserId) {
    if let Some(u) = user(&jar) {
        return (jar, u);
    }
    // Never 0: that is the admin token's identity (`auth::OPERATOR`).
    let u = UserId(rand::random::<u64>().max(1));
    let cookie = Cookie::build((COOKIE, u.to_string()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(cookie::time::Duration::days(365))
        .build();
    (jar.add(cookie), u)
}
