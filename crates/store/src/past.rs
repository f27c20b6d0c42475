//! The canvas at any past moment: `GET /api/tiles/{tx}/{ty}?seq=S` and
//! `GET /api/board?seq=S` (or `?at=T`), from keyframes and the log after them.
//!
//! # Design: keyframes at marks, then the log
//! A background task (the keyframer, [`run_keyframer`]) walks the committed log in steps
//! of `every` placements. Each step reads the rows `(mark, mark + every]` by the log's
//! primary key, applies them to the tiles they touch (each starting from its newest
//! keyframe), writes one keyframe per touched tile at `mark + every` (its packed pixels
//! and its version, the seq of its last placement), then records the new mark. So at
//! every mark M, each painted tile's newest keyframe at or below M is exact at M: a tile
//! without one at M was not placed on since its previous keyframe.
//!
//! The tile at seq S is then: the newest mark M ≤ S, the tile's newest keyframe ≤ M
//! (one index lookup, `(key, seq)`), plus the tile's placements in `(M, S]`, read by the
//! seq range with a filter on the tile's rectangle: at most `S - M` rows scanned, which a
//! read refuses beyond `tail` (twice the interval: the keyframer lags a step at most, once
//! caught up) with [`PastError::CatchingUp`]. The board at S is every tile's keyframe at M
//! composed, plus all rows in `(M, S]`.
//!
//! Why not per-tile keyframes every K placements on that tile: reading a tile's rows after
//! its keyframe would need an index on `(tile, seq)` in the log, which costs every
//! placement a page write (see the embedded module's docs and BENCHMARKS.md, b); this
//! design adds nothing to the placing path. Its cost is space: a step writes one keyframe
//! per tile it touched, at most one per placement and at most the canvas's painted tiles,
//! so at most `log / every` times the board (far less where placing is concentrated).
//!
//! Rewrites (rollbacks, restores, fills, stamps) are ordinary placements in the log
//! (`crate::rewrite`), so the keyframes and the tails include them with nothing special.
//!
//! Catch-up: a history written before keyframes existed (or while the keyframer was off)
//! has marks only up to where it stopped; the keyframer steps on from there, one bounded
//! step at a time, with a pause between steps so that placing keeps the machine first.
//! Meanwhile past reads far from a mark answer [`PastError::CatchingUp`].
//!
//! Backends: `embedded/past.rs` (tables `tile_keyframes`, `keyframe_marks` in the SQLite
//! file, written on a connection of its own in small transactions) and
//! `shared/history/past.rs` (the same tables in PostgreSQL, one instance at a time under
//! an advisory lock).

use crate::{Snapshot, StoreError, TileRead};
use rplace_domain::board::Depth;
use rplace_domain::{Placement, Seq, Tile, TileId};
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

pub use crate::rewrite::Moment;

/// The default keyframe interval, in placements: a tile read scans at most about twice
/// this many rows (a few ms), a board read applies them.
pub const DEFAULT_KEYFRAME_EVERY: u64 = 65_536;
/// The largest interval accepted: a step holds this many rows in memory (~32 MiB).
pub const MAX_KEYFRAME_EVERY: u64 = 1 << 20;
/// Keyframes written per transaction, so that the placing path never waits long for the
/// database's write lock.
pub const KEYFRAMES_PER_TX: usize = 64;
/// Pause of an idle keyframer before it looks at the head again.
const IDLE: Duration = Duration::from_secs(1);
/// Pause between two steps of a catch-up, leaving the cores to placing.
const BETWEEN_STEPS: Duration = Duration::from_millis(20);

/// Why a past read cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum PastError {
    /// The seq is beyond what the history holds.
    #[error("seq {asked} is beyond the history, which holds seqs 0..={head}")]
    OutOfRange { asked: Seq, head: Seq },
    /// The keyframes do not reach close enough to this seq yet (they are being built).
    #[error(
        "the history's keyframes are built through seq {through}; seq {asked} needs them within {tail} placements"
    )]
    CatchingUp { asked: Seq, through: Seq, tail: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where the keyframes stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyframeStatus {
    /// The newest mark: every tile's state at it can be read from keyframes.
    pub through: Seq,
    /// The newest seq past reads may ask for.
    pub head: Seq,
}

/// Everything past reads need from storage.
pub trait Past: Send + Sync {
    /// The newest seq whose board the history can answer (the embedded store's committed
    /// seq; the shared history's watermark), and the newest keyframe mark.
    fn past_status(&self) -> impl Future<Output = Result<KeyframeStatus, StoreError>> + Send;

    /// The seq of the last placement made at or before `ms` (unix ms), at most `head`;
    /// 0 if none was.
    fn seq_at_time(
        &self,
        head: Seq,
        ms: i64,
    ) -> impl Future<Output = Result<Seq, StoreError>> + Send;

    /// Tile `id` as it was right after placement `at` (`at` at most the head), replaying
    /// at most `tail` rows of the log. `through` of the answer is `at`.
    fn tile_at(
        &self,
        id: TileId,
        at: Seq,
        tail: u64,
    ) -> impl Future<Output = Result<TileRead, PastError>> + Send;

    /// The whole board (a [`rplace_domain::Dimensions::whole`] canvas) right after `at`,
    /// replaying at most `tail` rows of the log.
    fn board_at(
        &self,
        at: Seq,
        tail: u64,
    ) -> impl Future<Output = Result<Snapshot, PastError>> + Send;

    /// One keyframer step of `every` placements, if the head is that far past the newest
    /// mark: answers the new mark, or `None` if there was nothing to do (or another
    /// instance holds the keyframer's lock).
    fn keyframe_step(
        &self,
        every: u64,
    ) -> impl Future<Output = Result<Option<Seq>, StoreError>> + Send;

    /// Resolves a moment to a seq within the history, or says the range allowed.
    fn resolve(&self, m: Moment) -> impl Future<Output = Result<Seq, PastError>> + Send {
        async move {
            let head = self.past_status().await?.head;
            match m {
                Moment::Seq(s) if s > head => Err(PastError::OutOfRange { asked: s, head }),
                Moment::Seq(s) => Ok(s),
                Moment::At(ms) => Ok(self.seq_at_time(head, ms).await?),
            }
        }
    }
}

impl Past for crate::Backend {
    async fn past_status(&self) -> Result<KeyframeStatus, StoreError> {
        match self {
            crate::Backend::Embedded(s) => s.past_status().await,
            crate::Backend::Shared(s) => s.past_status().await,
        }
    }
    async fn seq_at_time(&self, head: Seq, ms: i64) -> Result<Seq, StoreError> {
        match self {
            crate::Backend::Embedded(s) => s.seq_at_time(head, ms).await,
            crate::Backend::Shared(s) => s.seq_at_time(head, ms).await,
        }
    }
    async fn tile_at(&self, id: TileId, at: Seq, tail: u64) -> Result<TileRead, PastError> {
        match self {
            crate::Backend::Embedded(s) => s.tile_at(id, at, tail).await,
            crate::Backend::Shared(s) => s.tile_at(id, at, tail).await,
        }
    }
    async fn board_at(&self, at: Seq, tail: u64) -> Result<Snapshot, PastError> {
        match self {
            crate::Backend::Embedded(s) => s.board_at(at, tail).await,
            crate::Backend::Shared(s) => s.board_at(at, tail).await,
        }
    }
    async fn keyframe_step(&self, every: u64) -> Result<Option<Seq>, StoreError> {
        match self {
            crate::Backend::Embedded(s) => s.keyframe_step(every).await,
            crate::Backend::Shared(s) => s.keyframe_step(every).await,
        }
    }
}

/// A tile's state in a keyframe or being rebuilt.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Seq of the tile's last placement (0: never painted).
    pub version: u64,
    pub pixels: Tile,
}

impl Frame {
    pub fn blank(depth: Depth) -> Self {
        Self {
            version: 0,
            pixels: Tile::new(depth),
        }
    }

    /// Applies one row of the log that lies on this tile.
    pub fn apply(&mut self, id: TileId, p: &Placement) {
        self.pixels.set(id.local_index(p.coord), p.color);
        self.version = self.version.max(p.seq.0);
    }

    /// As the store's answer at `at`.
    pub fn read(self, at: Seq) -> TileRead {
        TileRead {
            through: at,
            version: Seq(self.version),
            pixels: (self.version != 0).then_some(self.pixels),
        }
    }
}

/// The rows of one step grouped by tile key, in seq order within each tile.
pub fn by_tile(rows: &[Placement]) -> HashMap<u64, Vec<&Placement>> {
    let mut out: HashMap<u64, Vec<&Placement>> = HashMap::new();
    for p in rows {
        out.entry(TileId::of(p.coord).key()).or_default().push(p);
    }
    out
}

/// Whether `tail` rows of the log after `mark` reach `at`; else the refusal.
pub fn check_tail(at: Seq, mark: Seq, tail: u64) -> Result<(), PastError> {
    if at.0.saturating_sub(mark.0) > tail {
        return Err(PastError::CatchingUp {
            asked: at,
            through: mark,
            tail,
        });
    }
    Ok(())
}

/// Steps the keyframes along the log until `stop`: bounded steps, a short pause between
/// them while catching up, a longer one when caught up. Errors are logged and retried.
pub async fn run_keyframer<P: Past>(store: &P, every: u64, stop: impl Future<Output = ()>) {
    let every = every.clamp(1, MAX_KEYFRAME_EVERY);
    tokio::pin!(stop);
    loop {
        let pause = match store.keyframe_step(every).await {
            Ok(Some(mark)) => {
                tracing::debug!(mark = mark.0, "keyframes built");
                BETWEEN_STEPS
            }
            Ok(None) => IDLE,
            Err(e) => {
                tracing::warn!(error = %crate::Chain(&e), "keyframe step failed; retrying");
                IDLE
            }
        };
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}
