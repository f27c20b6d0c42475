//! Moderation state the placement policy reads: bans (of users and of networks) and protected areas.
//!
//! The trait and the types that cross it; the backends' implementations are in
//! `embedded/moderation.rs` and `shared/moderation.rs`.
//!
//! Both backends decide bans and protected areas atomically with placements: a call here
//! answers only once the change is where placements are decided (the embedded writer's
//! memory, applied in order with placements; Redis, read by the placement script), so no
//! placement is accepted after a ban's answer.

use crate::{Backend, StoreError};
use rplace_domain::policy::BanNet;
use rplace_domain::{Rect, Seq, UserId};
use std::future::Future;

/// Most protected areas at once: the script checks each on every placement.
pub const MAX_PROTECTED: usize = 1000;
/// Most bans kept where placements are decided (active or expired but not yet lifted).
pub const MAX_ACTIVE_BANS: usize = 100_000;

/// Whom a ban names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanTarget {
    /// A user by the public id a moderator gave, covering every identity listed (the
    /// account's linked identities included).
    User {
        /// The id the moderator named.
        user: UserId,
        /// Every identity the ban covers, `user` among them.
        identities: Vec<UserId>,
    },
    /// An address or network.
    Net(BanNet),
}

/// A ban as asked for.
#[derive(Debug, Clone)]
pub struct NewBan {
    /// Whom it names.
    pub target: BanTarget,
    /// Shown to the banned user.
    pub reason: String,
    /// When it ends, unix ms; `None`: never.
    pub until_ms: Option<i64>,
    /// The moderator who bans.
    pub by: UserId,
}

/// A ban as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// Its id, for lifting it.
    pub id: u64,
    /// Whom it names.
    pub target: BanTarget,
    /// Shown to the banned user.
    pub reason: String,
    /// When it ends, unix ms; `None`: never.
    pub until_ms: Option<i64>,
    /// Who banned.
    pub by: UserId,
    /// When, unix ms.
    pub at_ms: i64,
    /// When it was lifted, if it was.
    pub lifted_at_ms: Option<i64>,
    /// Who lifted it.
    pub lifted_by: Option<UserId>,
}

/// What [`Moderation::ban`] answers: the ban, and where in the order of placements it
/// took effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banned {
    /// The ban as stored.
    pub ban: Ban,
    /// The newest seq when it took effect: every placement after it was decided with the
    /// ban, every one up to it without. (A placement decided before may still be
    /// answered after the ban, while its history write completes.)
    pub after_seq: Seq,
}

impl Ban {
    /// Not lifted and not over at `now_ms`.
    pub fn is_active_at(&self, now_ms: i64) -> bool {
        self.lifted_at_ms.is_none() && self.until_ms.is_none_or(|u| now_ms < u)
    }
}

/// A protected area as asked for.
#[derive(Debug, Clone)]
pub struct NewProtected {
    /// Where; inside the board.
    pub rect: Rect,
    /// Why, for other moderators.
    pub reason: Option<String>,
    /// The moderator who protects it.
    pub by: UserId,
}

/// A protected area as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protected {
    /// Its id, for removing it.
    pub id: u64,
    /// Where.
    pub rect: Rect,
    /// Why.
    pub reason: Option<String>,
    /// Who protected it.
    pub by: UserId,
    /// When, unix ms.
    pub at_ms: i64,
}

/// Why a moderation change was not made.
#[derive(Debug, thiserror::Error)]
pub enum ModerationError {
    #[error("at most {limit} protected areas may exist at once; remove one first")]
    TooManyProtected { limit: usize },
    #[error("at most {limit} bans may be in force at once; lift some first")]
    TooManyBans { limit: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<crate::BackendError> for ModerationError {
    fn from(e: crate::BackendError) -> Self {
        ModerationError::Store(e.into())
    }
}

/// Bans and protected areas.
pub trait Moderation: Send + Sync {
    /// Bans; in force for every placement decided after this answers.
    fn ban(&self, b: NewBan) -> impl Future<Output = Result<Banned, ModerationError>> + Send;

    /// Lifts ban `id`; `None` if there is no such ban or it was lifted already.
    fn unban(
        &self,
        id: u64,
        by: UserId,
    ) -> impl Future<Output = Result<Option<Ban>, ModerationError>> + Send;

    /// Bans, newest first, at most `limit`: those in force at `now_ms`, or with `all`
    /// also the lifted and expired ones.
    fn bans(
        &self,
        all: bool,
        now_ms: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Ban>, StoreError>> + Send;

    /// Ban `id` in whatever state (in force, lifted, expired), if it exists.
    fn ban_by_id(&self, id: u64) -> impl Future<Output = Result<Option<Ban>, StoreError>> + Send;

    /// Protects an area; in force for every placement decided after this answers.
    fn protect(
        &self,
        p: NewProtected,
    ) -> impl Future<Output = Result<Protected, ModerationError>> + Send;

    /// Removes protected area `id`; `None` if there is none.
    fn unprotect(
        &self,
        id: u64,
    ) -> impl Future<Output = Result<Option<Protected>, ModerationError>> + Send;

    /// Every protected area, oldest first (at most [`MAX_PROTECTED`]).
    fn protected_areas(&self) -> impl Future<Output = Result<Vec<Protected>, StoreError>> + Send;
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Backend::Embedded($s) => $e,
            Backend::Shared($s) => $e,
        }
    };
}

impl Moderation for Backend {
    async fn ban(&self, b: NewBan) -> Result<Banned, ModerationError> {
        delegate!(self, s => s.ban(b).await)
    }
    async fn unban(&self, id: u64, by: UserId) -> Result<Option<Ban>, ModerationError> {
        delegate!(self, s => s.unban(id, by).await)
    }
    async fn bans(&self, all: bool, now_ms: i64, limit: usize) -> Result<Vec<Ban>, StoreError> {
        delegate!(self, s => s.bans(all, now_ms, limit).await)
    }
    async fn ban_by_id(&self, id: u64) -> Result<Option<Ban>, StoreError> {
        delegate!(self, s => s.ban_by_id(id).await)
    }
    async fn protect(&self, p: NewProtected) -> Result<Protected, ModerationError> {
        delegate!(self, s => s.protect(p).await)
    }
    async fn unprotect(&self, id: u64) -> Result<Option<Protected>, ModerationError> {
        delegate!(self, s => s.unprotect(id).await)
    }
    async fn protected_areas(&self) -> Result<Vec<Protected>, StoreError> {
        delegate!(self, s => s.protected_areas().await)
    }
}

/// How a ban's target is stored in both databases: `kind` (`user` or `net`), the named
/// user (or NULL), the identities as comma-separated hex ids (or the CIDR network).
pub(crate) fn target_columns(t: &BanTarget) -> (&'static str, Option<i64>, String) {
    match t {
        BanTarget::User { user, identities } => (
            "user",
            Some(user.0 as i64),
            identities
                .iter()
                .map(|u| u.to_string())
                .collect::<Vec<_>>()
                .join(","),
        ),
        BanTarget::Net(n) => ("net", None, n.to_string()),
    }
}

/// The inverse of [`target_columns`]; `None` if the row is malformed.
pub(crate) fn target_from_columns(
    kind: &str,
    user: Option<i64>,
    covers: &str,
) -> Option<BanTarget> {
    match kind {
        "user" => Some(BanTarget::User {
            user: UserId(user? as u64),
            identities: covers
                .split(',')
                .filter(|s| !s.is_empty())
                .map(UserId::parse)
                .collect::<Option<Vec<_>>>()?,
        }),
        // Stored masked in CIDR form: parsing it back gives the same network.
        "net" => BanNet::parse(covers, rplace_domain::Ipv6Prefix::DEFAULT)
            .ok()
            .map(BanTarget::Net),
        _ => None,
    }
}
