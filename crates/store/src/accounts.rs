//! Accounts: OpenID Connect identities, display names, sessions, roles and the anonymous identities linked to an account.
//!
//! The trait and the types that cross it; the backends' implementations are in
//! `embedded/accounts.rs` and `shared/accounts.rs`.
//!
//! # Identities
//! An account places as one [`UserId`], its `user`: at its first login it adopts the
//! visitor's anonymous id (so cooldown and history carry over), unless that id already
//! belongs to another account, when it gets a fresh one. Every later login from a device
//! whose anonymous id belongs to no account links that id to the account
//! ([`Accounts::linked`]), so bans and rollbacks by user cover it. An anonymous id belongs
//! to at most one account.
//!
//! # Sessions
//! The store keeps only a session token's SHA-256 ([`SessionHash`]), with its expiry; the
//! token itself lives only in the visitor's cookie.

use crate::{Backend, StoreError};
use rplace_domain::UserId;
use std::future::Future;

/// Most moderators [`Accounts::moderators`] lists.
pub const MODERATORS_LIMIT: usize = 1000;
/// Most linked identities [`Accounts::linked`] returns.
pub const LINKED_LIMIT: usize = 1000;
/// Sessions one account may hold at once; a login beyond it ends the oldest.
pub const SESSIONS_PER_ACCOUNT: usize = 20;

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Stable internal id; never reused.
    pub id: i64,
    /// The identity the account places as (the public id `GET /api/pixel` shows).
    pub user: UserId,
    /// Which configured OpenID Connect provider (its `id`) the account logs in with.
    pub provider: String,
    /// The provider's `sub` claim: with `provider`, what names the account.
    pub subject: String,
    /// The provider's `email` claim at the last login, if it sent one.
    pub email: Option<String>,
    /// Whether the provider said `email_verified`: only then may configuration name an
    /// admin by e-mail.
    pub email_verified: bool,
    /// The display name the user picked; `None` until they pick one.
    pub name: Option<String>,
    /// Granted the moderator role by an admin.
    pub moderator: bool,
    /// When the account was created, unix ms.
    pub created_ms: i64,
    /// When it last logged in, unix ms.
    pub last_login_ms: i64,
}

/// What a successful OpenID Connect login tells the store.
#[derive(Debug, Clone)]
pub struct Login {
    /// The configured provider's id.
    pub provider: String,
    /// The verified ID token's subject.
    pub subject: String,
    /// Its e-mail claim, if any.
    pub email: Option<String>,
    /// Its `email_verified` claim (false when absent).
    pub email_verified: bool,
    /// The anonymous identity of the device that logs in, if it had one.
    pub device: Option<UserId>,
    /// A never-used identity for a new account whose device id is taken (or missing).
    pub fresh: UserId,
    /// Now, unix ms.
    pub now_ms: i64,
}

/// The outcome of [`Accounts::login`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedIn {
    /// The account, as it is after this login.
    pub account: Account,
    /// The account was made by this login.
    pub created: bool,
    /// The device's anonymous id, if this login linked it to the account (or the new
    /// account adopted it): its cooldown must carry over to the account's `user`.
    pub linked: Option<UserId>,
}

/// The SHA-256 of a session token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionHash(pub [u8; 32]);

/// What setting a display name came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameSet {
    /// The name is the account's now.
    Set,
    /// Another account has this name (compared case-insensitively).
    Taken,
    /// No such account.
    NoAccount,
}

/// Accounts, sessions and roles, in both backends.
pub trait Accounts: Send + Sync {
    /// Finds the account of `(provider, subject)` or creates it, records the login and
    /// links the device's anonymous id (see the module docs).
    fn login(&self, login: Login) -> impl Future<Output = Result<LoggedIn, StoreError>> + Send;

    /// The account whose `user` is `user`, or to which `user` is linked.
    fn account_of(
        &self,
        user: UserId,
    ) -> impl Future<Output = Result<Option<Account>, StoreError>> + Send;

    /// The anonymous identities linked to account `id` (not its `user`), at most
    /// [`LINKED_LIMIT`].
    fn linked(&self, id: i64) -> impl Future<Output = Result<Vec<UserId>, StoreError>> + Send;

    /// Sets account `id`'s display name; `key` is its case-folded form, unique.
    fn set_name(
        &self,
        id: i64,
        name: &str,
        key: &str,
    ) -> impl Future<Output = Result<NameSet, StoreError>> + Send;

    /// Grants or revokes the moderator role; `false` if there is no such account.
    fn set_moderator(
        &self,
        id: i64,
        moderator: bool,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The accounts with the moderator role, oldest first, at most [`MODERATORS_LIMIT`].
    fn moderators(&self) -> impl Future<Output = Result<Vec<Account>, StoreError>> + Send;

    /// Stores a new session of account `id` until `expires_ms`, ending the account's
    /// oldest sessions beyond [`SESSIONS_PER_ACCOUNT`] and every expired one.
    fn create_session(
        &self,
        hash: SessionHash,
        id: i64,
        now_ms: i64,
        expires_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The account of an unexpired session.
    fn session(
        &self,
        hash: SessionHash,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<Account>, StoreError>> + Send;

    /// Ends a session (logout). Ending an unknown one is no error.
    fn end_session(&self, hash: SessionHash)
    -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Makes `to`'s cooldown end no earlier than `from`'s: an account that takes over a
    /// device's identity may not place before that identity could.
    fn carry_cooldown(
        &self,
        from: UserId,
        to: UserId,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Backend::Embedded($s) => $e,
            Backend::Shared($s) => $e,
        }
    };
}

impl Accounts for Backend {
    async fn login(&self, login: Login) -> Result<LoggedIn, StoreError> {
        delegate!(self, s => s.login(login).await)
    }
    async fn account_of(&self, user: UserId) -> Result<Option<Account>, StoreError> {
        delegate!(self, s => s.account_of(user).await)
    }
    async fn linked(&self, id: i64) -> Result<Vec<UserId>, StoreError> {
        delegate!(self, s => s.linked(id).await)
    }
    async fn set_name(&self, id: i64, name: &str, key: &str) -> Result<NameSet, StoreError> {
        delegate!(self, s => s.set_name(id, name, key).await)
    }
    async fn set_moderator(&self, id: i64, moderator: bool) -> Result<bool, StoreError> {
        delegate!(self, s => s.set_moderator(id, moderator).await)
    }
    async fn moderators(&self) -> Result<Vec<Account>, StoreError> {
        delegate!(self, s => s.moderators().await)
    }
    async fn create_session(
        &self,
        hash: SessionHash,
        id: i64,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<(), StoreError> {
        delegate!(self, s => s.create_session(hash, id, now_ms, expires_ms).await)
    }
    async fn session(&self, hash: SessionHash, now_ms: i64) -> Result<Option<Account>, StoreError> {
        delegate!(self, s => s.session(hash, now_ms).await)
    }
    async fn end_session(&self, hash: SessionHash) -> Result<(), StoreError> {
        delegate!(self, s => s.end_session(hash).await)
    }
    async fn carry_cooldown(&self, from: UserId, to: UserId) -> Result<(), StoreError> {
        delegate!(self, s => s.carry_cooldown(from, to).await)
    }
}
