//! Who a request acts as: an anonymous visitor, a logged-in account, a moderator or an
//! admin. Accounts log in with OpenID Connect; the `--admin-token` bearer acts as an
//! admin for scripts and operations.
//!
//! Every endpoint under `/api/admin/` gets its [`Actor`] from [`actor`] (in the admin
//! router's middleware) and then asks for the role it needs with [`Actor::require`]:
//! no credentials answer 401, the wrong role 403.

use crate::app::AppState;
use crate::error::ApiError;
use axum::http::HeaderMap;
use rplace_domain::UserId;

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

/// The actor a request authenticates as, if any: the admin token first, then (once
/// accounts exist) a moderator's or admin's session. A bearer token that is not the
/// admin token is an error, not anonymity.
pub fn actor(app: &AppState, headers: &HeaderMap) -> Result<Option<Actor>, ApiError> {
    if crate::secret::bearer(headers).is_some() {
        return match &app.settings.access.admin_token {
            Some(token) if token.authorizes(headers) => Ok(Some(Actor::operator())),
            _ => Err(ApiError::TokenRequired {
                flag: "admin-token",
            }),
        };
    }
    Ok(None)
}

pub mod routes;

/// Every identity that `user` names: the user itself and, if it is an account's or
/// linked to one, all identities of that account. Bans and rollbacks by user cover
/// them all, so logging in on another device does not escape a ban.
pub async fn identities_of(app: &AppState, user: UserId) -> Result<Vec<UserId>, ApiError> {
    // Accounts extend this with the linked identities.
    let _ = app;
    Ok(vec![user])
}
