//! Moderation changes made of many placements: rollback by user, restore of an area to a
//! moment, fill and stamp, and the history queries they need.
//!
//! The trait and the types that cross it; the backends' implementations are in
//! `embedded/rewrite.rs` and `shared/rewrite.rs`.
//!
//! # Plan, then apply
//! Every such change is first *planned* from the history and the live board: a [`Plan`]
//! lists each pixel whose color would change, its new color, and what the plan saw on it.
//! A preview stops there. Applying turns the plan into ordinary placements (new seqs,
//! attributed to the moderator, in the history like any other, broadcast like any other),
//! in chunks of [`CHUNK`] so that normal placements interleave and are never held for
//! more than one chunk. Each pixel is changed only if nobody placed on it since the plan
//! saw it (a compare-and-set in the writer or the script); those are counted as skipped
//! and keep the newer placement.

use crate::StoreError;
use rplace_domain::{ColorIndex, Coord, Placement, Rect, Seq, UserId};
use std::future::Future;

/// Pixels applied per writer transaction or script call: large enough that 100,000 pixels
/// take a few dozen steps, small enough that one step holds other placements for a few
/// milliseconds only.
pub const CHUNK: usize = 4096;

/// The most placements [`Rewrite::user_placements`] lists.
pub const USER_PIXELS_LIMIT: usize = 10_000;

/// One pixel of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// Which pixel.
    pub coord: Coord,
    /// Its new color.
    pub color: ColorIndex,
    /// The seq of the newest placement on it that the plan saw (0: none): applying
    /// changes the pixel only if that is still its newest. The embedded writer compares
    /// it directly; the shared script, which keeps no seq per pixel, checks the stream
    /// after [`Plan::at`] instead (see `shared/rewrite.rs`).
    pub expected: Seq,
}

/// What a change would do, before anything is applied.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Every pixel whose color changes, each once.
    pub changes: Vec<Change>,
    /// The seq the plan is consistent with: every placement up to it was seen.
    pub at: Seq,
}

/// What applying a plan did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Seq of the first placement made, if any.
    pub first_seq: Option<Seq>,
    /// Seq of the last placement made, if any.
    pub last_seq: Option<Seq>,
    /// Indexes into the plan's changes that were not applied because someone placed on
    /// the pixel after the plan saw it.
    pub skipped: Vec<usize>,
}

/// Whose placements a rollback undoes.
#[derive(Debug, Clone)]
pub struct RollbackQuery {
    /// Every identity of the user (an account's linked identities too).
    pub users: Vec<UserId>,
    /// Only placements at or after this time, unix ms.
    pub since_ms: Option<i64>,
    /// Only placements at or before this time, unix ms.
    pub until_ms: Option<i64>,
    /// Only placements in this rectangle.
    pub rect: Option<Rect>,
}

impl RollbackQuery {
    /// Whether the rollback undoes `p`.
    pub fn undoes(&self, p: &Placement) -> bool {
        self.users.contains(&p.user)
            && self.since_ms.is_none_or(|s| p.at_ms >= s)
            && self.until_ms.is_none_or(|u| p.at_ms <= u)
            && self.rect.is_none_or(|r| r.contains(p.coord))
    }
}

/// The moment an area is restored to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// Every placement made at or before this time, unix ms.
    At(i64),
    /// Every placement up to and including this seq.
    Seq(Seq),
}

/// A user's placements, for the admin page's lookup.
#[derive(Debug, Clone, Default)]
pub struct UserPlacements {
    /// How many placements they made in all.
    pub count: u64,
    /// Time of their first placement, unix ms.
    pub first_at: Option<i64>,
    /// Time of their last placement, unix ms.
    pub last_at: Option<i64>,
    /// Their newest placements, newest first, at most the limit asked for.
    pub newest: Vec<Placement>,
}

/// Why a change could not be planned or applied.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// The change would touch more pixels than one action may.
    #[error("this change touches more than {limit} pixels (at least {found})")]
    TooLarge { limit: u64, found: u64 },
    /// The live state was replaced (a rebuild) or changed too much to check while the
    /// change was applied; `applied` pixels had been changed by then.
    #[error(
        "the board's live state changed under this action after {applied} pixels; plan it again"
    )]
    Interrupted { applied: u64 },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Bulk moderation changes, on both backends.
pub trait Rewrite: Send + Sync {
    /// The pixels a rollback of `q` changes: each pixel whose newest placement is undone
    /// returns to the newest placement on it that is not (or the blank color 0).
    fn plan_rollback(
        &self,
        q: &RollbackQuery,
        limit: u64,
    ) -> impl Future<Output = Result<Plan, RewriteError>> + Send;

    /// The pixels of `rect` that differ from how they were at `to`.
    fn plan_restore(
        &self,
        rect: Rect,
        to: Moment,
        limit: u64,
    ) -> impl Future<Output = Result<Plan, RewriteError>> + Send;

    /// The pixels of `paint` (each at most once) whose color differs from the wanted one.
    fn plan_paint(
        &self,
        paint: Vec<(Coord, ColorIndex)>,
    ) -> impl Future<Output = Result<Plan, RewriteError>> + Send;

    /// Makes `plan` ordinary placements by `by`, exempt from cooldown and rate limits, in
    /// chunks of [`CHUNK`], each pixel only if nobody placed on it since the plan.
    fn apply(
        &self,
        plan: &Plan,
        by: UserId,
    ) -> impl Future<Output = Result<Applied, RewriteError>> + Send;

    /// The placements of `users`, newest first, at most `limit` of them, with counts.
    fn user_placements(
        &self,
        users: &[UserId],
        limit: usize,
    ) -> impl Future<Output = Result<UserPlacements, StoreError>> + Send;
}

/// The largest seq in `1..=head` whose time is at most `t`, by binary search over a
/// history whose times never go backwards along the seq. `first_at(s)` answers the seq
/// and time of the first placement at or after seq `s`, if any.
pub(crate) async fn seq_at_time<F, Fut>(
    head: Seq,
    t: i64,
    mut first_at: F,
) -> Result<Seq, StoreError>
where
    F: FnMut(Seq) -> Fut,
    Fut: Future<Output = Result<Option<(Seq, i64)>, StoreError>>,
{
    // Invariant: every placement up to `lo` is at or before t; none after `hi` is.
    let (mut lo, mut hi) = (0u64, head.0);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        match first_at(Seq(mid)).await? {
            Some((s, at)) if s.0 <= hi && at <= t => lo = s.0,
            // The first placement from mid on is after t (so are all later ones), or
            // there is none in mid..=hi: the answer is below mid.
            _ => hi = mid - 1,
        }
    }
    Ok(Seq(lo))
}

impl Rewrite for crate::Backend {
    async fn plan_rollback(&self, q: &RollbackQuery, limit: u64) -> Result<Plan, RewriteError> {
        match self {
            crate::Backend::Embedded(s) => s.plan_rollback(q, limit).await,
            crate::Backend::Shared(s) => s.plan_rollback(q, limit).await,
        }
    }
    async fn plan_restore(&self, rect: Rect, to: Moment, limit: u64) -> Result<Plan, RewriteError> {
        match self {
            crate::Backend::Embedded(s) => s.plan_restore(rect, to, limit).await,
            crate::Backend::Shared(s) => s.plan_restore(rect, to, limit).await,
        }
    }
    async fn plan_paint(&self, paint: Vec<(Coord, ColorIndex)>) -> Result<Plan, RewriteError> {
        match self {
            crate::Backend::Embedded(s) => s.plan_paint(paint).await,
            crate::Backend::Shared(s) => s.plan_paint(paint).await,
        }
    }
    async fn apply(&self, plan: &Plan, by: UserId) -> Result<Applied, RewriteError> {
        match self {
            crate::Backend::Embedded(s) => s.apply(plan, by).await,
            crate::Backend::Shared(s) => s.apply(plan, by).await,
        }
    }
    async fn user_placements(
        &self,
        users: &[UserId],
        limit: usize,
    ) -> Result<UserPlacements, StoreError> {
        match self {
            crate::Backend::Embedded(s) => s.user_placements(users, limit).await,
            crate::Backend::Shared(s) => s.user_placements(users, limit).await,
        }
    }
}
