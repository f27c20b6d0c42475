//! The accounts' settings: OpenID Connect providers, the login mode, display names and the admins named by configuration.

use super::{ConfigError, bad};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Clone, Default, Args)]
pub struct AuthArgs {
    /// Accounts: `off` hides login; `optional` lets visitors log in; `required` lets only
    /// logged-in accounts place (anonymous visitors still watch).
    #[arg(long, env = "RPLACE_LOGIN", value_enum, default_value_t = LoginMode::Optional)]
    pub login: LoginMode,

    /// An OpenID Connect provider, repeatable:
    /// `id=google;name=Google;issuer=https://accounts.google.com;client_id=..;client_secret=..`.
    /// Its redirect URI is `<public URL>/auth/callback/<id>`. In the environment, separate
    /// providers by newlines or `|`.
    #[arg(
        long = "oidc-provider",
        env = "RPLACE_OIDC_PROVIDERS",
        value_delimiter = '|',
        hide_env_values = true
    )]
    pub oidc_providers: Vec<String>,

    /// A file of words display names may not contain, one a line (`#` starts a comment),
    /// matched case-insensitively, ignoring `_`, `-` and digits written for letters. A
    /// few reserved names (admin, moderator, ...) are always refused.
    #[arg(long, env = "RPLACE_NAME_DENY_LIST")]
    pub name_deny_list: Option<PathBuf>,

    /// Admins among the accounts, comma-separated: `provider:subject` (a provider's id and
    /// the account's `sub`) or `email:address` (a verified e-mail). The `--admin-token`
    /// acts as an admin too.
    #[arg(long, env = "RPLACE_ADMINS", default_value = "")]
    pub admins: String,

    /// Days a login session lasts (1 to 365).
    #[arg(long, env = "RPLACE_SESSION_DAYS", default_value_t = 30)]
    pub session_days: u32,
}

/// Whether visitors may, or must, log in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoginMode {
    /// No login: everyone places anonymously.
    Off,
    /// Login offered; anonymous visitors place too.
    #[default]
    Optional,
    /// Only accounts place.
    Required,
}

/// One configured OpenID Connect provider, parsed.
#[derive(Clone, PartialEq, Eq)]
pub struct ProviderSpec {
    /// Short name in URLs and in `--admins` (`[a-z0-9_-]`, 1 to 32).
    pub id: String,
    /// What the login button says.
    pub name: String,
    /// The issuer URL; discovery reads `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// The client id registered with the provider.
    pub client_id: String,
    /// The client secret registered with the provider.
    pub client_secret: String,
}

impl std::fmt::Debug for ProviderSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSpec")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Who configuration names an admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRule {
    /// A provider's id and the account's subject.
    Subject { provider: String, subject: String },
    /// A verified e-mail address, lowercase.
    Email(String),
}

/// The accounts' settings, parsed.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// The login mode.
    pub login: LoginMode,
    /// The providers, in the order given (the buttons' order).
    pub providers: Vec<ProviderSpec>,
    /// Words display names may not contain, normalized (see `auth::names`).
    pub deny_words: Vec<String>,
    /// Admins by configuration.
    pub admins: Vec<AdminRule>,
    /// How long a session lasts.
    pub session_lifetime: std::time::Duration,
}

const PROVIDER_FLAG: &str = "oidc-provider";
const PROVIDER_ENV: &str = "RPLACE_OIDC_PROVIDERS";
const PROVIDER_FORMAT: &str = "id=..;name=..;issuer=https://..;client_id=..;client_secret=..";

/// Parses one `--oidc-provider` value.
pub fn parse_provider(s: &str) -> Result<ProviderSpec, ConfigError> {
    let err = |reason: String| bad(PROVIDER_FLAG, PROVIDER_ENV, reason);
    let mut fields = std::collections::HashMap::new();
    for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| {
            err(format!(
                "{part:?} is not key=value; write {PROVIDER_FORMAT}"
            ))
        })?;
        let k = k.trim();
        if !["id", "name", "issuer", "client_id", "client_secret"].contains(&k) {
            return Err(err(format!(
                "unknown key {k:?}; the keys are id, name, issuer, client_id, client_secret"
            )));
        }
        if fields.insert(k.to_string(), v.trim().to_string()).is_some() {
            return Err(err(format!("{k} is given twice")));
        }
    }
    let mut take = |k: &str| {
        fields
            .remove(k)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| err(format!("{k} is missing; write {PROVIDER_FORMAT}")))
    };
    let spec = ProviderSpec {
        id: take("id")?,
        name: take("name")?,
        issuer: take("issuer")?,
        client_id: take("client_id")?,
        client_secret: take("client_secret")?,
    };
    let id_ok = (1..=32).contains(&spec.id.len())
        && spec
            .id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !id_ok {
        return Err(err(format!(
            "id {:?} must be 1 to 32 of a-z, 0-9, _ and -",
            spec.id
        )));
    }
    if spec.name.chars().count() > 40 {
        return Err(err(format!(
            "name {:?} is longer than 40 characters",
            spec.name
        )));
    }
    let issuer_ok = (spec.issuer.starts_with("https://") || spec.issuer.starts_with("http://"))
        && spec.issuer.parse::<axum::http::Uri>().is_ok();
    if !issuer_ok {
        return Err(err(format!(
            "issuer {:?} must be an http:// or https:// URL",
            spec.issuer
        )));
    }
    Ok(spec)
}

fn parse_admins(s: &str, providers: &[ProviderSpec]) -> Result<Vec<AdminRule>, ConfigError> {
    let err = |reason: String| bad("admins", "RPLACE_ADMINS", reason);
    s.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let (kind, rest) = entry
                .split_once(':')
                .filter(|(_, r)| !r.is_empty())
                .ok_or_else(|| {
                    err(format!(
                        "{entry:?} must be provider:subject or email:address"
                    ))
                })?;
            if kind == "email" {
                if !rest.contains('@') {
                    return Err(err(format!("{rest:?} is not an e-mail address")));
                }
                return Ok(AdminRule::Email(rest.to_lowercase()));
            }
            if !providers.iter().any(|p| p.id == kind) {
                return Err(err(format!(
                    "{entry:?} names provider {kind:?}, which no --oidc-provider has"
                )));
            }
            Ok(AdminRule::Subject {
                provider: kind.to_string(),
                subject: rest.to_string(),
            })
        })
        .collect()
}

impl AuthArgs {
    /// Parses the flags; an invalid value names its flag.
    pub fn settings(&self) -> Result<AuthSettings, ConfigError> {
        let mut providers: Vec<ProviderSpec> = Vec::new();
        for value in self.oidc_providers.iter().flat_map(|v| v.lines()) {
            if value.trim().is_empty() {
                continue;
            }
            let p = parse_provider(value)?;
            if providers.iter().any(|q| q.id == p.id) {
                return Err(bad(
                    PROVIDER_FLAG,
                    PROVIDER_ENV,
                    format!("two providers have the id {:?}", p.id),
                ));
            }
            providers.push(p);
        }
        let deny_words = match &self.name_deny_list {
            None => Vec::new(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    bad(
                        "name-deny-list",
                        "RPLACE_NAME_DENY_LIST",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                crate::auth::names::parse_deny_list(&text)
            }
        };
        if !(1..=365).contains(&self.session_days) {
            return Err(bad(
                "session-days",
                "RPLACE_SESSION_DAYS",
                format!("{} is not 1 to 365", self.session_days),
            ));
        }
        Ok(AuthSettings {
            login: self.login,
            admins: parse_admins(&self.admins, &providers)?,
            providers,
            deny_words,
            session_lifetime: std::time::Duration::from_secs(u64::from(self.session_days) * 86_400),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn err(args: &[&str]) -> String {
        Config::from_args(args)
            .unwrap()
            .auth
            .settings()
            .unwrap_err()
            .to_string()
    }

    const LOCAL: &str = "id=local;name=Local;issuer=http://127.0.0.1:9;client_id=c;client_secret=s";

    #[test]
    fn providers_parse_and_bad_ones_are_named() {
        let c = Config::from_args(["--oidc-provider", LOCAL]).unwrap();
        let s = c.auth.settings().unwrap();
        assert_eq!(s.providers.len(), 1);
        assert_eq!(s.providers[0].name, "Local");
        assert!(!format!("{:?}", s.providers[0]).contains("client_secret: \"s\""));
        for bad in [
            "id=local;name=Local",
            "id=Lo cal;name=L;issuer=http://x;client_id=c;client_secret=s",
            "id=l;name=L;issuer=ftp://x;client_id=c;client_secret=s",
            "id=l;name=L;issuer=http://x;client_id=c;client_secret=s;color=red",
            "nonsense",
        ] {
            let e = err(&["--oidc-provider", bad]);
            assert!(e.contains("--oidc-provider"), "{bad}: {e}");
        }
        let e = err(&["--oidc-provider", LOCAL, "--oidc-provider", LOCAL]);
        assert!(e.contains("two providers"), "{e}");
    }

    #[test]
    fn several_providers_in_one_value() {
        let two = format!("{LOCAL}|{}", LOCAL.replace("id=local", "id=other"));
        let c = Config::from_args(["--oidc-provider", &two]).unwrap();
        assert_eq!(c.auth.settings().unwrap().providers.len(), 2);
        let lines = format!("{LOCAL}\n{}\n", LOCAL.replace("id=local", "id=third"));
        let c = Config::from_args(["--oidc-provider", &lines]).unwrap();
        assert_eq!(c.auth.settings().unwrap().providers.len(), 2);
    }

    #[test]
    fn admins_parse_and_name_known_providers() {
        let c = Config::from_args([
            "--oidc-provider",
            LOCAL,
            "--admins",
            "local:abc, email:A@B.org",
        ])
        .unwrap();
        assert_eq!(c.auth.settings().unwrap().admins.len(), 2);
        assert!(err(&["--admins", "nobody:abc"]).contains("--admins"));
        assert!(err(&["--admins", "email:nope"]).contains("--admins"));
        assert!(err(&["--session-days", "0"]).contains("--session-days"));
        assert!(err(&["--name-deny-list", "/nonexistent/x"]).contains("--name-deny-list"));
    }
}
