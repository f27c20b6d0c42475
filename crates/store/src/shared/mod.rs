//! The shared backend: any number of instances behind a load balancer, one Redis holding
//! the live state and one PostgreSQL holding the history.
//!
//! # Layout
//! - this file: [`SharedConfig`], [`SharedStore`] and its [`Store`] implementation.
//! - `keys`: the Redis key names, under a configurable prefix.
//! - `conn`: one connection type over one redis-server and a Redis Cluster.
//! - `cluster`: on a Redis Cluster, the repair of tiles that fell behind.
//! - `live`: the live state in Redis and the Lua scripts that change it (`lua/`).
//! - `idempotency`: answering a repeat of an idempotency key only once the first
//!   attempt's placement is durable.
//! - `batcher`: the per-instance task that sends all placements waiting for Redis as one
//!   script call.
//! - `history`: the history in PostgreSQL: migrations, batched idempotent writes, pixel
//!   history, tile snapshots and the per-tile rebuild read (`copy_rows` parses its `COPY`).
//! - `writer`: the per-instance group-commit task that makes accepted placements durable.
//! - `feed`: the per-instance Pub/Sub subscriber that turns the channel into a gap-free,
//!   duplicate-free feed in seq order.
//! - `recovery`: rebuilding Redis from PostgreSQL, reconciling the stream into
//!   PostgreSQL, and the maintenance task that runs both.
//! - `backlog`: the stream as a buffer while PostgreSQL is away (only with a durable
//!   Redis), its trimming and its cap.
//! - `probe`: the per-instance task that probes Redis for readiness, durability and the
//!   backlog, within the Redis timeout.
//!
//! # Where things live
//! Redis holds the canvas in tiles ([`rplace_domain::tile`], 256² pixels): one string key
//! per painted tile in exactly the [`rplace_domain::Tile`] byte layout (so reading it is
//! a `GET`, and a placement is `BITFIELD SET u4 #i` at the tile-local index), and beside
//! it the tile's version (the seq of its last placement, a string key under the same hash
//! tag: `<prefix>tile:{tx,ty}` and `<prefix>tile:{tx,ty}:v`, see `keys`). An unpainted
//! tile has no key, and no key is board-sized, so a 2^22² canvas costs Redis what is
//! painted (32 KiB a painted tile at 4 bits), and a placement touches one tile key and its
//! version in the same script call as everything else. Why tiles and not one board key:
//! a board key of a 65,536² canvas would be 2 GiB (past Redis's 512 MiB string limit) and
//! live in one slot; tiles are read one at a time (`tile`: one `MULTI` with the seq) or,
//! for a whole canvas (at most 32² tiles), all at once (`snapshot`: `MGET` of every tile
//! key). Redis also holds the canvas's size (`<prefix>dims`, which only grows), the global
//! seq, the
//! cooldown of each user (a key per user that expires with the cooldown; in the charges
//! model `<prefix>ch:<user>`, the pool's arrival time, expiring when the pool is full), the per-address
//! limit (GCRA, a key per address key: an IPv6 address by its prefix), the first outcome
//! of each idempotency key (a key per user and key, expiring with the window), and a
//! stream of the recent placements with IDs `<seq>-0`, trimmed to
//! [`SharedConfig::stream_capacity`] but never past the history's watermark. One Lua
//! script decides and
//! applies a batch of placements, each as if alone: checks, `BITFIELD` on the tile, the
//! tile's version, seq, `XADD`; then one `PUBLISH` for the batch. Redis serializes scripts, so the seq is global and
//! gap-free, two instances racing for one user's cooldown get exactly one acceptance, and
//! the per-address limit holds across instances. Times come from Redis's clock (`TIME`),
//! so every instance agrees, and never go backwards along the seq.
//!
//! PostgreSQL holds every accepted placement (u32 coordinates) and, every
//! [`SharedConfig::snapshot_every`] placements, a snapshot round of the tiles placed on
//! since the previous one (`history`), so a rebuild replays only what follows the latest
//! round, tile by tile, and writes Redis a page of tiles at a time.
//!
//! # Growing the canvas
//! [`Store::grow`] records the larger size in PostgreSQL (`rplace_meta`, each axis only
//! grows), then in Redis with `grow.lua`, which publishes `G <epoch> <width> <height>` on
//! the placement channel: every instance's feed turns it into [`FeedEvent::Grown`] and
//! its store's [`Store::dims`] follows. Redis runs it between two placement scripts, so
//! every feed sees the grow before any placement on the new area. Opening with a larger
//! configured size grows the same way; a smaller one keeps the stored (larger) size.
//!
//! # Redis Cluster
//! With [`SharedConfig::redis_cluster`], Redis is a Redis Cluster (`conn`: one connection
//! type over both). Every key but the tiles' is in the core slot, the prefix's hash tag
//! (`keys`); each tile's keys are in the slot of their own tag. The placement script runs
//! in the core slot as above, except that it cannot touch the tiles: it records each
//! accepted placement's tile in `tiles:last` and answers the placement before it on the
//! tile, and `live` then writes the tiles in their slots (`lua/tile_apply.lua`), which
//! apply each tile's placements in that chain's order whatever order they arrive in. A
//! tile that lags behind `tiles:last` (a write failed, its instance died, its master lost
//! its data) reads as complete only through its version, and `cluster` repairs it from the
//! history. docs/DEPLOY.md, "Redis Cluster", says why the decision stays in one slot.
//!
//! # Durability: when `place` returns `Ok`
//! `place` runs the script, then hands the placement to this instance's writer, which
//! commits it to PostgreSQL together with everything else waiting; `Ok` comes only after
//! that commit. An acknowledged placement is therefore in PostgreSQL and survives
//! `kill -9` of any instance and the loss of Redis.
//!
//! Except while PostgreSQL is away (its commits fail or time out): then, if Redis is
//! durable on its own (AOF with `appendfsync always`, checked every health interval),
//! `place` acknowledges once the script has run, since Redis answers only after its AOF
//! is fsynced, and the placement waits in the stream until the reconciler copies it
//! (`backlog`), up to [`SharedConfig::backlog_limit`] placements. Such a placement
//! survives `kill -9` of Redis (it comes back from the AOF) but not the loss of the Redis
//! machine's disk. Without a durable Redis, `place` answers `503` while PostgreSQL is
//! away, as before.
//!
//! Every Redis command is bounded by [`SharedConfig::redis_timeout`] and every PostgreSQL
//! call by [`SharedConfig::database_timeout`] (the rebuild's replay by a long bound of its
//! own), so a stalled service answers `503` within them rather than holding requests.
//! A `503` after a timeout may still have been applied (the script ran, its answer was
//! late); the reconciler then keeps it.
//!
//! A placement that reached Redis but not PostgreSQL (its instance died, or its commit
//! failed) was never acknowledged, but it is on the board and was broadcast. To keep the
//! two identical, every instance reconciles: every [`SharedConfig::reconcile_interval`] it
//! copies the stream entries past the history's watermark that are older than
//! [`SharedConfig::reconcile_grace`] into PostgreSQL (idempotent on seq). Such a placement
//! answered `503` may so still end up kept; that is the one case where an error did
//! change something.
//!
//! When Redis loses its state (restart without persistence, `FLUSHALL`), the script finds
//! the seq or epoch key missing and refuses, rather than counting again from 0.
//! One instance takes a lock key and rebuilds: it bumps the epoch in PostgreSQL (which
//! fences out writes of placements made on the lost state: those answer `503`), writes
//! every tile from the latest tile snapshots plus the rows after them, and installs the
//! seq (the history's newest), the size and the new epoch in one script. Placements meanwhile wait up to
//! [`SharedConfig::rebuild_wait`] and then answer `503`. Every feed then emits
//! [`FeedEvent::Reset`], because the lost state may have held broadcast placements that
//! never reached the history. A Redis restored from an older copy (its seq behind the
//! history's) is detected by the maintenance task and rebuilt the same way.

pub(crate) mod accounts;
pub(crate) mod activity;
mod backlog;
mod batcher;
mod cluster;
mod config;
mod conn;
mod copy_rows;
mod feed;
mod history;
mod idempotency;
mod keys;
mod live;
pub(crate) mod moderation;
mod place;
pub use place::DeferredTileWrite;
mod probe;
pub(crate) mod records;
mod recovery;
pub(crate) mod rewrite;
mod stats;
pub(crate) mod templates;
mod writer;

use crate::{
    BackendError, FeedEvent, NewPlacement, PlaceError, Placed, Service, Snapshot, Store,
    StoreError, TileRead,
};
use history::History;
use live::{Live, PlaceOutcome};
use rplace_domain::board::Depth;
use rplace_domain::policy::Params;
use rplace_domain::tile::tiles_across;
use rplace_domain::{Board, Coord, Dimensions, Placement, Seq, TileId, UserId};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use config::TASK_QUEUE;
pub(crate) use config::redact;
pub use config::{DEFAULT_PREFIX, SharedConfig};
use place::InFlight;
pub use writer::MAX_BATCH;

/// What `is_ready` is made of; set by the tasks that notice.
#[derive(Debug)]
pub(crate) struct Health {
    /// The last Redis command or probe succeeded.
    pub redis_ok: AtomicBool,
    /// History writes succeed (cleared while commits fail, set by a success or a probe).
    pub history_ok: AtomicBool,
    /// This instance is rebuilding the Redis state.
    pub rebuilding_here: AtomicBool,
    /// Another instance holds the rebuild lock.
    pub rebuilding_elsewhere: AtomicBool,
    /// `close` was called.
    pub closed: AtomicBool,
    /// Redis fsyncs every write before answering, so it may hold acknowledged placements
    /// while PostgreSQL is away (set by the probe).
    pub redis_durable: AtomicBool,
    /// The newest seq this instance has seen (probe and own placements), for the backlog.
    pub seq_seen: AtomicU64,
    /// The history's watermark as last read from Redis, for the backlog.
    pub durable_seen: AtomicU64,
}

impl Health {
    /// Placements in Redis that PostgreSQL may not hold yet, as far as this instance knows.
    fn backlog(&self) -> u64 {
        self.seq_seen
            .load(Ordering::Relaxed)
            .saturating_sub(self.durable_seen.load(Ordering::Relaxed))
    }
}

/// State shared by the handle and its tasks.
pub(crate) struct Inner {
    /// The settings this store was opened with.
    cfg: SharedConfig,
    /// The live state.
    live: Live,
    /// The canvas's size as this instance knows it, `width << 32 | height`: only grows
    /// (its own `grow`, or its feed hearing another instance's).
    dims: AtomicU64,
    /// The size at open, where the feed starts: a grow before the feed is taken is then
    /// still told (the consumer may have read `dims` before it).
    opened_dims: Dimensions,
    /// The history.
    history: History,
    /// Readiness flags.
    health: Arc<Health>,
    /// Placements on their way to the placement script (the batcher).
    placer: mpsc::Sender<batcher::Request>,
    /// Requests to this instance's history writer.
    writer: mpsc::Sender<writer::Cmd>,
    /// Woken when a history write finds another placement under its seq.
    diverged: Arc<Notify>,
    /// Epoch and seq of the latest `snapshot()`, where the feed starts when it is taken.
    snapshot_mark: Mutex<Option<(u64, Seq)>>,
    /// `place` calls between their checks and their answer, so `close` can wait for them.
    in_flight: AtomicUsize,
}

/// The larger of two sizes on each axis.
pub(crate) fn max_dims(a: Dimensions, b: Dimensions) -> Dimensions {
    Dimensions::parse(
        u64::from(a.width().max(b.width())),
        u64::from(a.height().max(b.height())),
    )
    .expect("both were in range")
}

fn pack_dims(d: Dimensions) -> u64 {
    u64::from(d.width()) << 32 | u64::from(d.height())
}

impl Inner {
    /// The canvas's size as this instance knows it.
    pub(crate) fn dims(&self) -> Dimensions {
        let v = self.dims.load(Ordering::Acquire);
        Dimensions::parse(v >> 32, v & 0xffff_ffff).expect("stored from a Dimensions")
    }

    /// Takes a size learned from Redis or a grow: each axis only grows.
    pub(crate) fn learn_dims(&self, d: Dimensions) -> Dimensions {
        let mut now = self.dims();
        loop {
            let next = max_dims(now, d);
            if next == now {
                return now;
            }
            match self.dims.compare_exchange(
                pack_dims(now),
                pack_dims(next),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return next,
                Err(v) => {
                    now = Dimensions::parse(v >> 32, v & 0xffff_ffff).expect("stored");
                }
            }
        }
    }

    /// The tiles `ids` with the head they are consistent with; waits for a rebuild if
    /// the state is missing.
    async fn live_tiles(&self, ids: &[TileId]) -> Result<live::TilesRead, StoreError> {
        let deadline = Instant::now() + self.cfg.rebuild_wait;
        loop {
            match self.live.tiles(ids).await {
                Ok(Some(s)) => {
                    self.health.redis_ok.store(true, Ordering::Relaxed);
                    return Ok(s);
                }
                Ok(None) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    recovery::ensure_state(self, left).await?;
                }
                Err(e) => {
                    self.health.redis_ok.store(false, Ordering::Relaxed);
                    return Err(e.into());
                }
            }
        }
    }

    /// The live seq and epoch; waits for a rebuild if the state is missing.
    async fn live_head(&self) -> Result<live::Head, StoreError> {
        let deadline = Instant::now() + self.cfg.rebuild_wait;
        loop {
            match self.live.head().await {
                Ok(Some(s)) => {
                    self.health.redis_ok.store(true, Ordering::Relaxed);
                    return Ok(s);
                }
                Ok(None) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    recovery::ensure_state(self, left).await?;
                }
                Err(e) => {
                    self.health.redis_ok.store(false, Ordering::Relaxed);
                    return Err(e.into());
                }
            }
        }
    }
}

/// Handle to the shared store.
pub struct SharedStore {
    /// Everything the tasks share.
    inner: Arc<Inner>,
    /// Starts the feed task; taken by `take_feed`.
    feed_start: Mutex<Option<oneshot::Sender<feed::Start>>>,
    /// The writer, awaited on close.
    writer: Mutex<Option<JoinHandle<()>>>,
    /// The feed and maintenance tasks, aborted on close and drop.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl SharedStore {
    /// Connects to Redis and PostgreSQL, applies migrations, rebuilds the Redis state from
    /// the history if it is missing, reconciles once and starts this instance's tasks.
    ///
    /// Fails with [`StoreError::Connect`], naming the service and its URL, if either is
    /// unreachable; fails with [`StoreError::Config`] if PostgreSQL holds a canvas of
    /// another bit depth. A larger configured size than the stored one grows the canvas;
    /// a smaller one keeps the stored size ([`Store::dims`] says which).
    pub async fn open(cfg: SharedConfig) -> Result<Self, StoreError> {
        if cfg.key_prefix.is_empty() {
            return Err(StoreError::Config(
                "the Redis key prefix must not be empty".into(),
            ));
        }
        let live = Live::connect(
            &cfg.redis_url,
            cfg.redis_timeout,
            cfg.redis_cluster,
            &cfg.key_prefix,
            cfg.depth,
            cfg.policy,
            cfg.idempotency_window,
        )
        .await?;
        let history = History::connect(
            &cfg.postgres_url,
            cfg.pg_pool_size,
            cfg.dims,
            cfg.depth,
            cfg.database_timeout,
        )
        .await?;
        let status = live.status().await?;
        let durable = backlog::durable(&live).await?;
        // The size only grows: the largest of the configured, the recorded and Redis's.
        let stored = history.dims().await?;
        let dims = max_dims(max_dims(cfg.dims, stored), status.dims.unwrap_or(stored));
        if dims != stored {
            tracing::info!(
                width = dims.width(),
                height = dims.height(),
                "growing the canvas to the configured size"
            );
            history.grow(dims).await?;
        }
        if let Some(have) = status.dims
            && have != dims
        {
            live.grow(dims).await?;
        }
        if dims != cfg.dims {
            tracing::info!(
                width = dims.width(),
                height = dims.height(),
                "the canvas is larger than configured; keeping the stored size"
            );
        }
        let health = Arc::new(Health {
            redis_ok: AtomicBool::new(true),
            history_ok: AtomicBool::new(true),
            rebuilding_here: AtomicBool::new(false),
            rebuilding_elsewhere: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            redis_durable: AtomicBool::new(durable),
            seq_seen: AtomicU64::new(0),
            durable_seen: AtomicU64::new(0),
        });
        let diverged = Arc::new(Notify::new());
        let (writer_tx, writer_rx) = mpsc::channel(TASK_QUEUE);
        let (placer_tx, placer_rx) = mpsc::channel(TASK_QUEUE);
        let batcher = tokio::spawn(batcher::run(live.clone(), placer_rx));
        tracing::info!(
            durable,
            "Redis is {}durable on its own: placements {} while PostgreSQL is away",
            if durable { "" } else { "not " },
            if durable {
                "are buffered in Redis"
            } else {
                "answer 503"
            }
        );
        let writer = writer::Writer {
            history: history.clone(),
            health: health.clone(),
            diverged: diverged.clone(),
            retry_for: cfg.ack_timeout,
        };
        let inner = Arc::new(Inner {
            cfg,
            live,
            dims: AtomicU64::new(pack_dims(dims)),
            opened_dims: dims,
            history,
            health,
            placer: placer_tx,
            writer: writer_tx,
            diverged,
            snapshot_mark: Mutex::new(None),
            in_flight: AtomicUsize::new(0),
        });
        // Another instance may be rebuilding a large board right now: wait longer than a
        // placement would.
        let wait = inner.cfg.rebuild_wait.max(Duration::from_secs(60));
        recovery::ensure_state(&inner, wait).await?;
        // Placements that an instance made just before dying are saved now, whatever
        // their age.
        if let Err(e) = recovery::reconcile_locked(&inner, Duration::ZERO).await {
            tracing::warn!(error = %crate::Chain(&e), "reconciling at start failed; the maintenance task will retry");
        }
        let writer = tokio::spawn(writer.run(writer_rx));
        let (start_tx, start_rx) = oneshot::channel();
        let tasks = vec![
            batcher,
            tokio::spawn(feed::run(inner.clone(), start_rx)),
            tokio::spawn(recovery::maintain(inner.clone())),
            tokio::spawn(probe::run(inner.clone())),
            tokio::spawn(cluster::repair(inner.clone())),
        ];
        tracing::info!(
            prefix = %inner.cfg.key_prefix,
            redis = %redact(&inner.cfg.redis_url),
            postgres = %redact(&inner.cfg.postgres_url),
            "shared store open"
        );
        Ok(Self {
            inner,
            feed_start: Mutex::new(Some(start_tx)),
            writer: Mutex::new(Some(writer)),
            tasks: Mutex::new(tasks),
        })
    }
}

impl Store for SharedStore {
    /// Every tile of the canvas in one `MULTI` (`MGET` of the tile keys and versions, with
    /// the seq): at most 32² tiles, as only whole canvases have a snapshot.
    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let inner = &self.inner;
        let dims = inner.dims();
        if !dims.whole() {
            return Err(StoreError::Config(format!(
                "a {}x{} canvas is read in tiles, not whole (at most {} pixels a side)",
                dims.width(),
                dims.height(),
                rplace_domain::board::MAX_BOARD_SIDE
            )));
        }
        let (across, down) = tiles_across(dims);
        let ids: Vec<TileId> = (0..down)
            .flat_map(|ty| (0..across).map(move |tx| TileId::new_unchecked(tx, ty)))
            .collect();
        let read = inner.live_tiles(&ids).await?;
        let mut board = Board::new(dims, inner.cfg.depth);
        for (id, t) in ids.iter().zip(&read.tiles) {
            if let Some(pixels) = &t.pixels {
                board.put_tile(*id, pixels);
            }
        }
        *inner.snapshot_mark.lock().expect("snapshot mark") =
            Some((read.head.epoch, read.head.seq));
        Ok(Snapshot {
            seq: read.head.seq,
            board,
        })
    }

    fn dims(&self) -> Dimensions {
        self.inner.dims()
    }

    /// The tile's pixels and version with the seq, one `MULTI`; a tile off the canvas
    /// reads as never painted.
    async fn tile(&self, id: TileId) -> Result<TileRead, StoreError> {
        let inner = &self.inner;
        if !id.on(inner.dims()) {
            let head = inner.live_head().await?;
            return Ok(TileRead {
                through: head.seq,
                version: Seq(0),
                pixels: None,
            });
        }
        let read = inner.live_tiles(&[id]).await?;
        let t = read.tiles.into_iter().next().expect("one tile asked for");
        Ok(TileRead {
            through: read.head.seq,
            version: t.version,
            pixels: t.pixels,
        })
    }

    /// PostgreSQL first (durable), then Redis, which tells every instance's feed.
    async fn grow(&self, to: Dimensions) -> Result<Dimensions, StoreError> {
        let inner = &self.inner;
        let now = inner.dims();
        if !to.covers(now) {
            return Err(StoreError::Config(format!(
                "the canvas can only grow: it is {}x{}, asked for {}x{}",
                now.width(),
                now.height(),
                to.width(),
                to.height()
            )));
        }
        let recorded = inner.history.grow(to).await?;
        let live = inner.live.grow(recorded).await.map_err(StoreError::from)?;
        Ok(inner.learn_dims(live))
    }

    async fn place(&self, p: NewPlacement) -> Result<Placed, PlaceError> {
        self.inner.in_flight.fetch_add(1, Ordering::AcqRel);
        let _guard = InFlight(&self.inner.in_flight);
        if self.inner.health.closed.load(Ordering::Acquire) {
            return Err(PlaceError::ShuttingDown);
        }
        let started = Instant::now();
        let res = self.place_inner(p).await;
        let outcome = match &res {
            Ok(p) if p.replayed => "replayed",
            Ok(_) => "accepted",
            Err(PlaceError::Cooldown { .. }) => "cooldown",
            Err(PlaceError::RateLimited { .. }) => "rate_limited",
            Err(PlaceError::Banned { .. }) => "banned",
            Err(PlaceError::Protected) => "protected",
            Err(PlaceError::OnceSpent) => "once_spent",
            Err(PlaceError::ShuttingDown) => "shutting_down",
            Err(PlaceError::Unavailable(_)) => "unavailable",
        };
        metrics::histogram!("rplace_store_place_seconds", "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        res
    }

    fn take_feed(&self) -> Option<mpsc::Receiver<FeedEvent>> {
        let start = self.feed_start.lock().expect("feed start").take()?;
        let (tx, rx) = crate::feed_queue::channel(crate::FEED_CAPACITY);
        let from = *self.inner.snapshot_mark.lock().expect("snapshot mark");
        // If the feed task is gone (closed store), the receiver simply ends.
        let _ = start.send(feed::Start { tx, from });
        Some(rx)
    }

    async fn updates_since(&self, since: Seq, limit: usize) -> Result<Vec<Placement>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let inner = &self.inner;
        let deadline = Instant::now() + inner.cfg.rebuild_wait;
        loop {
            let page = inner.live.read_after(since, limit).await?;
            if page.epoch.is_none() {
                let left = deadline.saturating_duration_since(Instant::now());
                recovery::ensure_state(inner, left).await?;
                continue;
            }
            if since >= page.seq {
                return Ok(Vec::new());
            }
            return match page.entries.first() {
                Some(first) if first.seq == since.next() => Ok(page.entries),
                first => Err(StoreError::Gone {
                    since,
                    oldest: Seq(first.map(|p| p.seq.0 - 1).unwrap_or(page.seq.0)),
                }),
            };
        }
    }

    async fn pixel_history(
        &self,
        coord: Coord,
        limit: usize,
    ) -> Result<Vec<Placement>, StoreError> {
        self.inner.history.pixel_history(coord, limit).await
    }

    async fn next_allowed(&self, user: UserId) -> Result<Option<i64>, StoreError> {
        Ok(self.inner.live.user_quota(user).await?.next_at_ms())
    }

    async fn user_quota(&self, user: UserId) -> Result<rplace_domain::policy::Quota, StoreError> {
        Ok(self.inner.live.user_quota(user).await?)
    }

    fn is_ready(&self) -> bool {
        let h = &self.inner.health;
        !h.closed.load(Ordering::Relaxed)
            && h.redis_ok.load(Ordering::Relaxed)
            && (h.history_ok.load(Ordering::Relaxed) || self.may_buffer().is_ok())
            && !h.rebuilding_here.load(Ordering::Relaxed)
            && !h.rebuilding_elsewhere.load(Ordering::Relaxed)
    }

    async fn close(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        inner.health.closed.store(true, Ordering::Release);
        // Let placements that passed the check reach the writer.
        let deadline = Instant::now() + inner.cfg.ack_timeout;
        while inner.in_flight.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (tx, rx) = oneshot::channel();
        if inner.writer.send(writer::Cmd::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
        let writer = self.writer.lock().expect("writer").take();
        if let Some(w) = writer {
            let _ = w.await;
        }
        for t in self.tasks.lock().expect("tasks").drain(..) {
            t.abort();
        }
        Ok(())
    }
}

impl Drop for SharedStore {
    fn drop(&mut self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            for t in tasks.drain(..) {
                t.abort();
            }
        }
    }
}
