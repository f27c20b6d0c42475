//! Statistics of the canvas: placements per color and per user, the opt-in leaderboard,
//! and how many people are online across instances.
//!
//! The trait and the catch-up written once over it; the backends' implementations are in
//! `embedded/stats.rs` (SQLite) and `shared/stats.rs` (PostgreSQL for the counts, Redis
//! for presence).
//!
//! # Counts without scanning the log
//! A `GROUP BY` over a 10-million-row log takes seconds, so the counts are kept in tables
//! of their own (`stats_colors`, `stats_users`) with a watermark (`through`): every
//! placement up to it is counted, none after it. [`catch_up`] reads the log after the
//! watermark a bounded page at a time through [`Export`] (the same reads as the dataset
//! export, up to its head, so a page never misses a row that arrives later), sums the page
//! in memory and hands the sums to [`Stats::stats_apply`], which adds them and moves the
//! watermark in one transaction, and only if the watermark is still where the page
//! started. Instances that catch up at once therefore never count a placement twice: the
//! loser's transaction changes nothing. Rewrites (rollbacks, fills) are placements like
//! any other and are counted for the moderator who made them.
//!
//! # Presence
//! Each instance knows its own websocket clients. [`Stats::presence`] publishes that
//! number under the instance's id with an expiry and answers the sum over every
//! instance whose number has not expired (the embedded store is one instance: it answers
//! the number itself). A person with two tabs counts twice: a connection is what the
//! server can count without asking anyone who they are.

use crate::StoreError;
use crate::export::Export;
use rplace_domain::{Seq, UserId};
use std::collections::HashMap;
use std::future::Future;

/// Placements read per catch-up step: a few MiB in memory, and a transaction short enough
/// that the placement writer hardly waits for it.
pub const STATS_PAGE: usize = 20_000;
/// Most leaderboard entries one request may ask for.
pub const LEADERBOARD_MAX: usize = 100;

/// The sums of one page of the log, to be added to the counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// The watermark the page starts after; the sums apply only if it is still the
    /// stored one.
    pub after: Seq,
    /// The seq of the page's last placement: the watermark after the sums.
    pub through: Seq,
    /// Placements per color index.
    pub colors: HashMap<u8, u64>,
    /// Placements per user, with the time of each user's last placement in the page
    /// (unix ms).
    pub users: HashMap<UserId, (u64, i64)>,
}

/// The counts over the whole log up to `through`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Every placement up to this seq is counted.
    pub through: Seq,
    /// Placements counted.
    pub placements: u64,
    /// Placements per color index, for the colors placed at least once.
    pub colors: Vec<(u8, u64)>,
    /// Distinct users who placed.
    pub placers: u64,
}

/// One user's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserTotals {
    /// Placements by the user, up to the watermark.
    pub placements: u64,
    /// Time of their last counted placement (unix ms), if any.
    pub last_ms: Option<i64>,
    /// Whether the account placing as this user shows on the leaderboard.
    pub listed: bool,
}

/// One leaderboard entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranked {
    /// The account's display name.
    pub name: String,
    /// Its placements, up to the watermark.
    pub placements: u64,
}

/// What opting in or out came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// Done.
    Set,
    /// No account has this id.
    NoAccount,
}

/// Everything the statistics need from storage.
pub trait Stats: Send + Sync {
    /// The watermark: every placement up to it is counted.
    fn stats_through(&self) -> impl Future<Output = Result<Seq, StoreError>> + Send;

    /// Adds `t`'s sums and moves the watermark to `t.through`, atomically, if the
    /// watermark is `t.after`; answers whether it did.
    fn stats_apply(&self, t: Tally) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The counts now.
    fn stats_totals(&self) -> impl Future<Output = Result<Totals, StoreError>> + Send;

    /// One user's counts now.
    fn user_totals(
        &self,
        user: UserId,
    ) -> impl Future<Output = Result<UserTotals, StoreError>> + Send;

    /// The accounts that opted in and have a display name, most placements first (ties
    /// by name), at most `limit` (capped at [`LEADERBOARD_MAX`]).
    fn leaderboard(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Ranked>, StoreError>> + Send;

    /// Opts account `account` in or out of the leaderboard.
    fn set_listed(
        &self,
        account: i64,
        listed: bool,
    ) -> impl Future<Output = Result<Listing, StoreError>> + Send;

    /// Publishes this instance's `connections` under `instance` until `ttl_ms` from now,
    /// and answers the sum over every live instance (this one included).
    fn presence(
        &self,
        instance: u64,
        connections: u64,
        ttl_ms: u64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// What one [`catch_up`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaughtUp {
    /// The watermark afterwards.
    pub through: Seq,
    /// Placements counted by this call.
    pub counted: u64,
    /// The log holds more after the watermark than this call read: call again.
    pub more: bool,
}

/// Counts at most `pages` pages of the log after the watermark (see the module docs).
pub async fn catch_up<S: Stats + Export>(store: &S, pages: usize) -> Result<CaughtUp, StoreError> {
    let head = store.export_head().await?;
    let mut through = store.stats_through().await?;
    let mut counted = 0;
    for _ in 0..pages {
        if through >= head {
            return Ok(CaughtUp {
                through,
                counted,
                more: false,
            });
        }
        let page = store.export_page(through, head, STATS_PAGE).await?;
        let Some(last) = page.last() else {
            // Seqs after the watermark that the log does not hold (none below the head
            // is missing): nothing to count up to the head.
            let t = Tally {
                after: through,
                through: head,
                ..Tally::default()
            };
            if store.stats_apply(t).await? {
                through = head;
            }
            break;
        };
        let mut t = Tally {
            after: through,
            through: if page.len() < STATS_PAGE {
                head
            } else {
                last.seq
            },
            ..Tally::default()
        };
        for p in &page {
            *t.colors.entry(p.color.get()).or_default() += 1;
            let u = t.users.entry(p.user).or_default();
            u.0 += 1;
            u.1 = u.1.max(p.at_ms);
        }
        let (n, to) = (page.len() as u64, t.through);
        if !store.stats_apply(t).await? {
            // Another instance counted this page first; start again from its watermark.
            through = store.stats_through().await?;
            continue;
        }
        counted += n;
        through = to;
    }
    Ok(CaughtUp {
        through,
        counted,
        more: through < head,
    })
}

impl Stats for crate::Backend {
    async fn stats_through(&self) -> Result<Seq, StoreError> {
        match self {
            crate::Backend::Embedded(s) => s.stats_through().await,
            crate::Backend::Shared(s) => s.stats_through().await,
        }
    }
    async fn stats_apply(&self, t: Tally) -> Result<bool, StoreError> {
        match self {
            crate::Backend::Embedded(s) => s.stats_apply(t).await,
            crate::Backend::Shared(s) => s.stats_apply(t).await,
        }
    }
    async fn stats_totals(&self) -> Result<Totals, StoreError> {
        match self {
            crate::Backend::Embedded(s) => s.stats_totals().await,
            crate::Backend::Shared(s) => s.stats_totals().await,
        }
    }
    async fn user_totals(&self, user: UserId) -> Result<UserTotals, StoreError> {
        match self {
            crate::Backend::Embedded(s) => s.user_totals(user).await,
            crate::Backend::Shared(s) => s.user_totals(user).await,
        }
    }
    async fn leaderboard(&self, limit: usize) -> Result<Vec<Ranked>, StoreError> {
        match self {
            crate::Backend::Embedded(s) => s.leaderboard(limit).await,
            crate::Backend::Shared(s) => s.leaderboard(limit).await,
        }
    }
    async fn set_listed(&self, account: i64, listed: bool) -> Result<Listing, StoreError> {
        match self {
            crate::Backend::Embedded(s) => s.set_listed(account, listed).await,
            crate::Backend::Shared(s) => s.set_listed(account, listed).await,
        }
    }
    async fn presence(
        &self,
        instance: u64,
        connections: u64,
        ttl_ms: u64,
    ) -> Result<u64, StoreError> {
        match self {
            crate::Backend::Embedded(s) => s.presence(instance, connections, ttl_ms).await,
            crate::Backend::Shared(s) => s.presence(instance, connections, ttl_ms).await,
        }
    }
}
