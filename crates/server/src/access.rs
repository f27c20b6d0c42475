//! Who may reach what, parsed from the configuration once: the public origin (and so
//! whether cookies are `Secure`), which pages may open the websocket, and the secrets of
//! the admin endpoints and `/metrics`.

use crate::config::{Config, ConfigError, bad};
use crate::origin::{AllowedOrigins, Origin};
use crate::secret::Secret;

/// Shortest admin token: enough entropy that guessing it over HTTP is hopeless.
pub const ADMIN_TOKEN_MIN: usize = 32;
/// Shortest metrics token.
pub const METRICS_TOKEN_MIN: usize = 16;

/// The access settings.
#[derive(Debug, Clone)]
pub struct Access {
    /// Origin of `--public-url`, if configured.
    pub public_origin: Option<Origin>,
    /// Set the identity cookie's `Secure` attribute: the site is served over https.
    pub secure_cookies: bool,
    /// Origins whose pages may open the websocket.
    pub allowed_origins: AllowedOrigins,
    /// Authenticates `/api/admin/*`; `None`: admin endpoints are disabled.
    pub admin_token: Option<Secret>,
    /// If set, `/metrics` needs it as a bearer token.
    pub metrics_token: Option<Secret>,
    /// If set, the load generator places as any user it names with this bearer token.
    pub bench_token: Option<Secret>,
}

impl Access {
    pub fn parse(c: &Config) -> Result<Access, ConfigError> {
        let public_origin = c
            .public_url
            .as_deref()
            .map(Origin::parse)
            .transpose()
            .map_err(|e| bad("public-url", "RPLACE_PUBLIC_URL", e))?;
        let allowed_origins =
            AllowedOrigins::parse(c.allowed_origins.as_deref(), public_origin.as_ref())
                .map_err(|e| bad("allowed-origins", "RPLACE_ALLOWED_ORIGINS", e))?;
        let admin_token = match c.admin_token.as_deref() {
            Some(t) if t.chars().count() < ADMIN_TOKEN_MIN => {
                return Err(bad(
                    "admin-token",
                    "RPLACE_ADMIN_TOKEN",
                    format!(
                        "must be at least {ADMIN_TOKEN_MIN} characters (e.g. `openssl rand -hex 32`)"
                    ),
                ));
            }
            Some(t) if c.bench_token.as_deref() == Some(t) => {
                return Err(bad(
                    "admin-token",
                    "RPLACE_ADMIN_TOKEN",
                    "must differ from --bench-token",
                ));
            }
            t => t.map(Secret::new),
        };
        let metrics_token = match c.metrics_token.as_deref() {
            Some(t) if t.chars().count() < METRICS_TOKEN_MIN => {
                return Err(bad(
                    "metrics-token",
                    "RPLACE_METRICS_TOKEN",
                    format!("must be at least {METRICS_TOKEN_MIN} characters"),
                ));
            }
            t => t.map(Secret::new),
        };
        Ok(Access {
            secure_cookies: public_origin.as_ref().is_some_and(Origin::is_https),
            public_origin,
            allowed_origins,
            admin_token,
            metrics_token,
            bench_token: c.bench_token.as_deref().map(Secret::new),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Access, String> {
        Access::parse(&Config::from_args(args).unwrap()).map_err(|e| e.to_string())
    }

    #[test]
    fn tokens_are_checked_and_named() {
        let e = parse(&["--admin-token", "short"]).unwrap_err();
        assert!(e.contains("--admin-token") && e.contains("32"), "{e}");
        let t = "a".repeat(32);
        assert!(parse(&["--admin-token", &t]).unwrap().admin_token.is_some());
        let e = parse(&["--admin-token", &t, "--bench-token", &t]).unwrap_err();
        assert!(e.contains("--bench-token"), "{e}");
        let e = parse(&["--metrics-token", "short"]).unwrap_err();
        assert!(e.contains("--metrics-token"), "{e}");
        assert!(parse(&[]).unwrap().admin_token.is_none());
        let bench = parse(&["--bench-token", "0123456789abcdef"]).unwrap();
        let bench = bench.bench_token.unwrap();
        assert!(bench.matches(b"0123456789abcdef") && !bench.matches(b"0123456789abcde"));
    }

    #[test]
    fn https_public_url_makes_cookies_secure() {
        assert!(!parse(&[]).unwrap().secure_cookies);
        assert!(
            !parse(&["--public-url", "http://p.example"])
                .unwrap()
                .secure_cookies
        );
        assert!(
            parse(&["--public-url", "https://p.example"])
                .unwrap()
                .secure_cookies
        );
        let e = parse(&["--public-url", "p.example"]).unwrap_err();
        assert!(e.contains("--public-url"), "{e}");
        let e = parse(&["--allowed-origins", "nope"]).unwrap_err();
        assert!(e.contains("--allowed-origins"), "{e}");
    }
}
