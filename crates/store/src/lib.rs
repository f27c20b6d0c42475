//! Storage for rplace: the durable log of placements, the authoritative board and the
//! cooldowns, behind one [`Store`] trait.
//!
//! # Layout
//! - this file: the [`Store`] trait, the types that cross it, and [`Backend`], the one
//!   enum the server holds. A deployment picks its backend by configuration once at
//!   start; nothing else branches on it.
//! - [`embedded`]: a single-process store. SQLite in WAL mode, written by one thread
//!   that is also the sequencer: it decides each placement by the domain's policy,
//!   assigns seqs and commits many placements per transaction, and only then
//!   acknowledges them.
//! - [`export`]: the whole log in order, for the dataset export.
//! - [`past`]: the canvas at any past seq or time, from keyframes and the log after them.
//! - `error`: [`PlaceError`], [`StoreError`] and the typed [`BackendError`] under both.
//! - [`limit`]: the embedded backend's per-address policy state.
//! - [`templates`]: template images and their metadata (the trait; each backend's part
//!   is in its folder).
//! - [`stats`]: counts per color and user, the leaderboard and presence.
//! - [`shared`]: a store shared by any number of instances. Redis holds the live state
//!   (board, seq, cooldowns, per-IP limits, recent updates) and sequences placements with
//!   one Lua script; PostgreSQL holds the history, written in batches before a placement
//!   is acknowledged, and Redis is rebuilt from it when lost.
//!
//! # Contract every backend keeps
//! - `place` returns `Ok` only once the placement is durable as the backend defines it
//!   (see each backend's docs); a rejected placement changes nothing.
//! - Placements are decided by [`rplace_domain::policy::decide`] with the parameters of
//!   [`rplace_domain::policy::Params`]; the shared backend's script mirrors it and is
//!   checked against the same vectors (`tests/policy_vectors.rs`).
//! - A placement with an [`IdempotencyKey`] whose first accepted attempt (same user, same
//!   key) is younger than the store's idempotency window is not decided again: `place`
//!   answers that first attempt's [`Placed`] (with `replayed` set) and places nothing.
//!   Refusals are not remembered, since they changed nothing: a retry is decided afresh.
//! - The feed yields every accepted placement exactly once, in seq order, with no gaps
//!   except where it says [`FeedEvent::Reset`]. It is bounded (`feed_queue`): a consumer
//!   that falls [`FEED_CAPACITY`] events behind gets a reset instead of a growing queue.

pub mod accounts;
pub mod activity;
pub mod embedded;
mod error;
pub mod export;
mod feed_queue;
pub mod limit;
pub mod moderation;
pub mod past;
pub mod records;
pub mod rewrite;
pub mod shared;
pub mod stats;
pub mod templates;

use rplace_domain::policy::{ChargeStatus, Quota};
use rplace_domain::{
    Board, ColorIndex, Coord, Dimensions, IdempotencyKey, OnceToken, Placement, Seq, Tile, TileId,
    UserId,
};
use std::future::Future;
use std::net::IpAddr;
use tokio::sync::mpsc;

pub use embedded::{DEFAULT_TILE_CACHE, EmbeddedConfig, EmbeddedStore, SyncMode, open_database};
pub use error::{BackendError, Chain, PlaceError, Service, StoreError};
pub use feed_queue::FEED_CAPACITY;
pub use shared::{DeferredTileWrite, SharedConfig, SharedStore};

/// A placement as asked for, before the store has accepted it.
#[derive(Debug, Clone, Copy)]
pub struct NewPlacement {
    /// Where, already checked against the board.
    pub coord: Coord,
    /// Which color, already checked against the palette.
    pub color: ColorIndex,
    /// Who asks; cooldowns key on it.
    pub user: UserId,
    /// Where the request came from; the per-address limit keys on it (an IPv6 address by
    /// its prefix, see [`rplace_domain::AddrKey`]).
    pub ip: IpAddr,
    /// Skip the cooldown and the IP limit. Only the server's admin-token path (for the
    /// load generator) sets this.
    pub bypass_limits: bool,
    /// The client's name for this intended placement: a repeat (same user, same key)
    /// within the idempotency window answers the first accepted attempt's outcome.
    pub idempotency_key: Option<IdempotencyKey>,
    /// Who the placer is beyond their id, as the server established it.
    pub standing: Standing,
}

/// What the server knows about a placer that the policy reads: their role, whether an
/// account places, and the one-time proof they present. `Default` is an anonymous
/// visitor with no proof.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Standing {
    /// A moderator or admin: may place in protected areas.
    pub moderator: bool,
    /// A logged-in account places: the per-address limit for accounts applies.
    pub account: bool,
    /// A one-time proof (an anti-bot challenge's id) that must not have been spent
    /// before; an accepted placement spends it, a refused one does not.
    pub once: Option<OnceToken>,
}

/// What the caller learns about an accepted placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    /// Its position in the global order.
    pub seq: Seq,
    /// When it was accepted, unix ms.
    pub at_ms: i64,
    /// When this user may place again, unix ms.
    pub next_at_ms: i64,
    /// In the charges model, the pool left after this placement; `None` in the fixed
    /// model and on a replay (the caller asks [`Store::user_quota`] then).
    pub charges: Option<ChargeStatus>,
    /// This answers a repeat of an idempotency key: the placement was made by the first
    /// attempt, and nothing was placed now.
    pub replayed: bool,
}

/// One tile as the store holds it at one moment.
#[derive(Debug, Clone)]
pub struct TileRead {
    /// Every placement up to this seq is reflected in `version` and `pixels` (the store's
    /// head when the tile was read), and none after it.
    pub through: Seq,
    /// The seq of the last placement on the tile; `Seq(0)` if it was never painted.
    pub version: Seq,
    /// The tile's pixels; `None` if it was never painted (color 0 everywhere).
    pub pixels: Option<Tile>,
}

/// The board at one seq.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Every placement up to and including this seq is on the board.
    pub seq: Seq,
    pub board: Board,
}

/// What the feed delivers to the server.
#[derive(Debug)]
pub enum FeedEvent {
    /// Placements that follow the previous event without a gap, in seq order.
    Placements(Vec<Placement>),
    /// The stream had a gap it could not fill: any tile may have changed, so whatever the
    /// consumer holds must be read again from the store; the feed goes on after this seq.
    Reset(Seq),
    /// The canvas grew to this size (an admin's `grow`, on any instance).
    Grown(Dimensions),
}

/// Everything the server needs from storage.
pub trait Store: Send + Sync + 'static {
    /// The current board and its seq, as the store holds them now. Only for canvases that
    /// are [`Dimensions::whole`]; larger ones answer [`StoreError::Config`].
    fn snapshot(&self) -> impl Future<Output = Result<Snapshot, StoreError>> + Send;

    /// The canvas's size now (it may grow while the store runs).
    fn dims(&self) -> Dimensions;

    /// One tile and its version, as the store holds them now. A tile off the canvas reads
    /// as never painted.
    fn tile(&self, id: TileId) -> impl Future<Output = Result<TileRead, StoreError>> + Send;

    /// Grows the canvas to `to` (at least as large on both axes as now, else
    /// [`StoreError::Config`]), durably; every instance's feed then says
    /// [`FeedEvent::Grown`]. Nothing painted moves. Answers the size now in force.
    fn grow(&self, to: Dimensions) -> impl Future<Output = Result<Dimensions, StoreError>> + Send;

    /// Checks the cooldown and rate limit, assigns a seq and makes the placement durable,
    /// all or nothing.
    fn place(&self, p: NewPlacement) -> impl Future<Output = Result<Placed, PlaceError>> + Send;

    /// The ordered stream of accepted placements. Called once, by the server's hub; a
    /// second call returns `None`. It holds at most [`FEED_CAPACITY`] events: a consumer
    /// that far behind gets a [`FeedEvent::Reset`] instead of the placements it missed.
    fn take_feed(&self) -> Option<mpsc::Receiver<FeedEvent>>;

    /// Placements with seq greater than `since`, oldest first, at most `limit`; `Gone`
    /// if some of them are no longer kept.
    fn updates_since(
        &self,
        since: Seq,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Placement>, StoreError>> + Send;

    /// The latest placements on one pixel, newest first.
    fn pixel_history(
        &self,
        coord: Coord,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Placement>, StoreError>> + Send;

    /// When `user` may place next (unix ms), if a cooldown applies now.
    fn next_allowed(
        &self,
        user: UserId,
    ) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;

    /// What `user` may do now by the policy ([`rplace_domain::policy::Params::quota`]):
    /// when they may place next and, in the charges model, their pool.
    fn user_quota(&self, user: UserId) -> impl Future<Output = Result<Quota, StoreError>> + Send;

    /// Whether the store can take placements now.
    fn is_ready(&self) -> bool;

    /// Stops taking placements, makes everything durable and releases resources.
    fn close(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The backend a deployment runs, chosen once at start from configuration.
pub enum Backend {
    Embedded(EmbeddedStore),
    Shared(SharedStore),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Backend::Embedded($s) => $e,
            Backend::Shared($s) => $e,
        }
    };
}

impl Store for Backend {
    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        delegate!(self, s => s.snapshot().await)
    }
    fn dims(&self) -> Dimensions {
        delegate!(self, s => s.dims())
    }
    async fn tile(&self, id: TileId) -> Result<TileRead, StoreError> {
        delegate!(self, s => s.tile(id).await)
    }
    async fn grow(&self, to: Dimensions) -> Result<Dimensions, StoreError> {
        delegate!(self, s => s.grow(to).await)
    }
    async fn place(&self, p: NewPlacement) -> Result<Placed, PlaceError> {
        delegate!(self, s => s.place(p).await)
    }
    fn take_feed(&self) -> Option<mpsc::Receiver<FeedEvent>> {
        delegate!(self, s => s.take_feed())
    }
    async fn updates_since(&self, since: Seq, limit: usize) -> Result<Vec<Placement>, StoreError> {
        delegate!(self, s => s.updates_since(since, limit).await)
    }
    async fn pixel_history(
        &self,
        coord: Coord,
        limit: usize,
    ) -> Result<Vec<Placement>, StoreError> {
        delegate!(self, s => s.pixel_history(coord, limit).await)
    }
    async fn next_allowed(&self, user: UserId) -> Result<Option<i64>, StoreError> {
        delegate!(self, s => s.next_allowed(user).await)
    }
    async fn user_quota(&self, user: UserId) -> Result<Quota, StoreError> {
        delegate!(self, s => s.user_quota(user).await)
    }
    fn is_ready(&self) -> bool {
        delegate!(self, s => s.is_ready())
    }
    async fn close(&self) -> Result<(), StoreError> {
        delegate!(self, s => s.close().await)
    }
}

/// Current unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
