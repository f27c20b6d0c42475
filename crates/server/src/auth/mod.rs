//! Who a request acts as: an anonymous visitor, a logged-in account, a moderator or an
//! admin. Accounts log in with OpenID Connect; the `--admin-token` bearer acts as an
//! admin for scripts and operations.
//!
//! Every endpoint under `/api/admin/` gets its [`Actor`] from [`actor`] (in the admin
//! router's middleware) and then asks for the role it needs with [`Actor::require`]:
//! no credentials answer 401, the wrong role 403.

use crate::app::AppState;
use crate::config::{AdminRule, AuthSettings, LoginMode};
use crate::error::ApiError;
use axum::http::{HeaderMap, Method};
use rplace_domain::UserId;
use rplace_store::Standing;
use rplace_store::accounts::{Account, Accounts};

/// What an authenticated actor may do. Ordered: an admin may do all a moderator may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Moderator,
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Moderator => "moderator",
            Role::Admin => "admin",
        }
    }
}

/// How the actor proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `Authorization: Bearer <--admin-token>`.
    Token,
    /// An account's session cookie (CSRF-checked for requests that change anything).
    Session,
}

/// An authenticated moderator or admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The identity their moderation placements and audit entries are attributed to.
    pub user: UserId,
    /// What they may do.
    pub role: Role,
    /// How they authenticated.
    pub via: Via,
    /// Their display name, for the audit log.
    pub name: String,
}

/// The identity the admin token acts as: no cookie can hold it, since
/// [`crate::identity::ensure`] never mints 0.
pub const OPERATOR: UserId = UserId(0);

impl Actor {
    /// The admin token's actor.
    pub fn operator() -> Self {
        Actor {
            user: OPERATOR,
            role: Role::Admin,
            via: Via::Token,
            name: "operator (admin token)".into(),
        }
    }

    /// `Ok` if this actor has at least `role`, else 403.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::Forbidden {
                needed: role.name(),
            })
        }
    }
}

/// The actor a request authenticates as, if any: the admin token first, then a
/// moderator's or admin's session. A bearer token that is not the admin token is an
/// error, not anonymity; so is a session without a role (403).
pub async fn actor(app: &AppState, headers: &HeaderMap) -> Result<Option<Actor>, ApiError> {
    Ok(admin_actor(app, headers).await?.map(|(a, _)| a))
}

/// [`actor`], with the session that authenticated it (for the CSRF check).
async fn admin_actor(
    app: &AppState,
    headers: &HeaderMap,
) -> Result<Option<(Actor, Option<session::Session>)>, ApiError> {
    if crate::secret::bearer(headers).is_some() {
        return match &app.settings.access.admin_token {
            Some(token) if token.authorizes(headers) => Ok(Some((Actor::operator(), None))),
            _ => Err(ApiError::TokenRequired {
                flag: "admin-token",
            }),
        };
    }
    let Some(s) = session::current(app, headers).await? else {
        return Ok(None);
    };
    let role = app.auth.role_of(&s.account).ok_or(ApiError::Forbidden {
        needed: Role::Moderator.name(),
    })?;
    let actor = Actor {
        user: s.account.user,
        role,
        via: Via::Session,
        name: display_name(&s.account),
    };
    Ok(Some((actor, Some(s))))
}

/// The actor of an `/api/admin/` request with `method`, CSRF-checked when a session
/// authenticates it (bearer tokens are not sent by browsers on their own, so they are
/// not subject to it).
pub async fn admin_request(
    app: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Option<Actor>, ApiError> {
    let Some((actor, s)) = admin_actor(app, headers).await? else {
        return Ok(None);
    };
    if let Some(s) = &s {
        session::check_csrf(app, method, headers, s)?;
    }
    Ok(Some(actor))
}

/// Whether anything could authenticate under `/api/admin/`: the admin token, or a login.
pub fn admin_possible(app: &AppState) -> bool {
    app.settings.access.admin_token.is_some()
        || (app.auth.settings.login != LoginMode::Off
            && app.auth.providers.specs().next().is_some())
}

/// The name an account shows: its display name, else its public id.
pub fn display_name(a: &Account) -> String {
    a.name
        .clone()
        .unwrap_or_else(|| format!("account {}", a.user))
}

pub mod names;
pub mod oidc;
pub mod routes;
pub mod session;

/// The accounts' state in [`crate::app::Inner`].
pub struct Auth {
    /// The parsed settings.
    pub settings: AuthSettings,
    /// The configured providers and their discovered metadata.
    pub providers: oidc::Providers,
    /// Recent session lookups.
    pub sessions: session::Cache,
}

impl Auth {
    pub fn new(settings: AuthSettings) -> Auth {
        Auth {
            providers: oidc::Providers::new(&settings.providers),
            settings,
            sessions: session::Cache::default(),
        }
    }

    /// The role configuration or an admin gave the account, if any.
    pub fn role_of(&self, a: &Account) -> Option<Role> {
        let admin = self.settings.admins.iter().any(|rule| match rule {
            AdminRule::Subject { provider, subject } => {
                *provider == a.provider && *subject == a.subject
            }
            AdminRule::Email(email) => {
                a.email_verified
                    && a.email
                        .as_deref()
                        .is_some_and(|e| e.eq_ignore_ascii_case(email))
            }
        });
        if admin {
            Some(Role::Admin)
        } else if a.moderator {
            Some(Role::Moderator)
        } else {
            None
        }
    }
}

/// Who places a pixel: the identity and standing the store decides by.
#[derive(Debug, Clone, Copy)]
pub struct Placer {
    /// The identity the placement is attributed to (and the cooldown keys on).
    pub user: UserId,
    /// Account and role, for the policy.
    pub standing: Standing,
}

/// Who a `PUT /api/pixel` request places as: a session's account (as its `user`), else
/// the anonymous identity `anonymous` (unless `--login required`).
pub async fn placer(
    app: &AppState,
    headers: &HeaderMap,
    anonymous: Option<UserId>,
) -> Result<Placer, ApiError> {
    if app.auth.settings.login != LoginMode::Off
        && let Some(s) = session::current(app, headers).await?
    {
        return Ok(Placer {
            user: s.account.user,
            standing: Standing {
                account: true,
                moderator: app.auth.role_of(&s.account).is_some(),
                ..Standing::default()
            },
        });
    }
    if app.auth.settings.login == LoginMode::Required {
        return Err(ApiError::LoginRequired);
    }
    Ok(Placer {
        user: anonymous.ok_or(ApiError::Unauthorized)?,
        standing: Standing::default(),
    })
}

/// Every identity that `user` names: the user itself and, if it is an account's or
/// linked to one, all identities of that account. Bans and rollbacks by user cover
/// them all, so logging in on another device does not escape a ban.
pub async fn identities_of(app: &AppState, user: UserId) -> Result<Vec<UserId>, ApiError> {
    let Some(account) = app.store.account_of(user).await? else {
        return Ok(vec![user]);
    };
    let mut all = vec![account.user];
    all.extend(app.store.linked(account.id).await?);
    if !all.contains(&user) {
        all.push(user);
    }
    Ok(all)
}

/// An error with its sources, for the log.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
