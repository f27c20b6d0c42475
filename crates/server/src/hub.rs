//! The hub: the one task that consumes the store's feed of accepted placements.
//!
//! It keeps this instance's bounded tile cache (`crate::tile_cache`: every cached tile
//! exact at the hub's seq; `GET /api/tiles/..` and, composed, `GET /api/board`), the
//! in-memory log of recent updates (`GET /api/updates`, per tile
//! `GET /api/tiles/{tx}/{ty}/updates`), the canvas's current size, and every tick it
//! encodes the placements of that tick into one binary frame broadcast as the same bytes
//! to every websocket client that named no tiles (whole canvases only), and, per tile that
//! someone subscribed to (the websocket's `view`), one tile frame whose same bytes go to
//! each of its subscribers' queues.
//!
//! Whole-canvas fan-out uses one `tokio::sync::broadcast` channel: each client's queue is
//! its position in that shared ring, so a slow client costs no memory of its own; once it
//! falls more than `client_queue` frames behind it sees `Lagged` and is told to reconnect.
//! A client with a view has its own bounded queue of tile frames instead (a frame is a
//! `Bytes`, shared): when it is full the client is told to reconnect the same way.
//!
//! The tick adapts to the audience: with `c` clients and a frame budget of `f` frames/s,
//! a tick is at least `c / f` seconds long, so the frame rate stays within what the machine
//! can write however many clients connect.
//!
//! The hub trusts nothing it is fed: a placement off the board or with a color the depth
//! cannot hold is skipped, counted (`rplace_hub_bad_records_total`) and logged, never
//! applied (applying it would panic). Its lock never stays poisoned: should anything panic
//! while holding it, the next user takes the state as it is instead of panicking in turn,
//! and the supervisor (`crate::supervise`) fails readiness and stops the process.

use crate::board_cache::Version;
use crate::tile_cache::TileCache;
use bytes::Bytes;
use futures_util::StreamExt;
use rplace_domain::board::{Depth, get_packed, set_packed};
use rplace_domain::tile::{TILE_SIZE, tiles_across};
use rplace_domain::wire::{self, TileUpdate, Update};
use rplace_domain::{ColorIndex, Coord, Dimensions, Placement, Seq, Tile, TileId};
use rplace_store::{Backend, FeedEvent, Store, StoreError};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Most tiles one websocket may subscribe to with one `view`.
pub const VIEW_MAX_TILES: u32 = 256;
/// Tiles loaded from the store at once by one request or view.
const LOAD_CONCURRENCY: usize = 16;
/// Longest a tile read waits for the feed to reach the store head it was read at.
const CATCH_UP_WAIT: Duration = Duration::from_secs(5);
/// Most level-0 tiles remembered as changed between two overview refreshes; past it
/// every overview tile is rendered again.
const DIRTY_MAX: usize = 1 << 16;

/// What the hub broadcasts to websocket tasks.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// An encoded whole-canvas update frame, identical for every client.
    Frame(Bytes),
    /// Continuity was lost (the store reset): clients must refetch the board or tiles.
    Resync,
    /// The canvas grew to this size.
    Canvas(Dimensions),
    /// How many people are online across the fleet now (`crate::stats`).
    Online(u64),
}

/// Why [`Hub::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubEnd {
    /// It was told to stop.
    Stopped,
    /// The store's feed ended: no more placements will arrive.
    FeedEnded,
}

/// Why a tile could not be had.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store is ahead of the live feed by more than [`CATCH_UP_WAIT`], or the tile
    /// kept changing under the read.
    #[error("the live feed is behind the store")]
    Behind,
}

/// A rectangle of tiles a websocket client watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewRect {
    pub tx: u32,
    pub ty: u32,
    pub w: u32,
    pub h: u32,
}

impl ViewRect {
    /// The tiles in it.
    pub fn tiles(self) -> impl Iterator<Item = TileId> {
        (self.ty..self.ty + self.h).flat_map(move |y| {
            (self.tx..self.tx + self.w).map(move |x| TileId::new_unchecked(x, y))
        })
    }

    /// The part of it on a canvas of `dims`.
    pub fn clamp(self, dims: Dimensions) -> Self {
        let (across, down) = tiles_across(dims);
        let (tx, ty) = (self.tx.min(across), self.ty.min(down));
        let w = self.tx.saturating_add(self.w).min(across) - tx;
        let h = self.ty.saturating_add(self.h).min(down) - ty;
        Self { tx, ty, w, h }
    }
}

/// A websocket client with a view: where its tile frames go.
struct Viewer {
    /// Its bounded queue of tile frames.
    tx: mpsc::Sender<Bytes>,
    /// Cancelled when its queue overflowed: it is told to reconnect.
    lagged: CancellationToken,
    /// The tiles it subscribed to, by key.
    view: Vec<u64>,
}

/// The state the feed changes, under one lock.
struct Live {
    /// Newest seq applied.
    seq: Seq,
    /// Recent updates, oldest first, contiguous, ending at `seq`.
    log: VecDeque<Update>,
    /// The canvas's size now.
    dims: Dimensions,
    /// Cached tiles, each exact at `seq`.
    tiles: TileCache,
    /// Subscribers of each tile (tile key → viewer ids).
    subs: HashMap<u64, Vec<u64>>,
    /// Clients with a view.
    viewers: HashMap<u64, Viewer>,
    /// Tiles with updates for this tick's tile frames.
    touched: Vec<u64>,
    /// Tiles changed since overviews were last refreshed.
    dirty: HashSet<u64>,
    /// More changed than `dirty` may hold, or a reset: every overview is stale.
    dirty_all: bool,
}

impl Live {
    /// Tiles of the canvas that the cache always keeps: all of a whole canvas.
    fn floor(&self) -> usize {
        if self.dims.whole() {
            let (a, d) = tiles_across(self.dims);
            a as usize * d as usize
        } else {
            0
        }
    }
}

/// How the hub is set up.
pub struct HubOptions {
    /// Longest the recent log may grow.
    pub log_cap: usize,
    /// Frames a client may fall behind.
    pub client_queue: usize,
    /// Shortest tick.
    pub min_tick: Duration,
    /// Frame budget per second across all clients.
    pub max_frame_rate: u64,
    /// Unsubscribed tiles kept in memory.
    pub tile_cache: usize,
    /// How long a served tile body may be reused although the tile changed.
    pub ttl: Duration,
}

/// Shared handle to the hub's state.
pub struct Hub {
    /// Seq, log, tiles, subscriptions.
    live: Mutex<Live>,
    /// Where tiles that are not cached are read.
    store: Arc<Backend>,
    /// Longest `log` may grow.
    log_cap: usize,
    /// The whole-canvas fan-out channel (frames and control messages).
    tx: broadcast::Sender<Outgoing>,
    /// Control messages only, for clients with a view.
    control: broadcast::Sender<Outgoing>,
    /// Newest seq contained in a frame already broadcast; new clients learn it in `hello`.
    last_sent: AtomicU64,
    /// Newest seq applied, for tile loads waiting for the feed.
    seq_watch: watch::Sender<Seq>,
    /// The canvas's size, `width << 32 | height`, for reads without the lock.
    dims_now: AtomicU64,
    /// Bits per pixel.
    depth: Depth,
    /// How long a served tile body may be reused.
    ttl: Duration,
    /// Capacity of a viewer's queue.
    view_queue: usize,
    /// Numbers viewers.
    next_viewer: AtomicU64,
    /// Open websocket connections; drives the adaptive tick.
    clients: AtomicUsize,
    /// Shortest tick.
    min_tick: Duration,
    /// Frame budget per second across all clients.
    max_frame_rate: u64,
    /// Current tick in ms, reported to new clients.
    tick_ms: AtomicU64,
}

/// A recent-log query result.
pub enum Recent {
    /// Updates after `since`, up to the limit, and the head seq.
    Found(Vec<Update>, Seq),
    /// `since` is older than the in-memory log holds.
    TooOld,
}

/// A viewer's end: its queue and its overflow signal.
pub struct ViewFeed {
    pub id: u64,
    pub frames: mpsc::Receiver<Bytes>,
    pub lagged: CancellationToken,
}

fn pack(d: Dimensions) -> u64 {
    u64::from(d.width()) << 32 | u64::from(d.height())
}

/// Copies a tile's pixels that lie on the canvas into a packed board buffer.
fn put_tile(raw: &mut [u8], dims: Dimensions, depth: Depth, id: TileId, tile: &Tile) {
    let o = id.origin();
    let w = dims.width() as usize;
    let n = (dims.width() - o.x()).min(TILE_SIZE) as usize;
    let src = tile.as_bytes();
    for y in o.y()..(o.y() + TILE_SIZE).min(dims.height()) {
        let ly = (y - o.y()) as usize;
        let at = y as usize * w + o.x() as usize;
        let from = ly * TILE_SIZE as usize;
        match depth {
            Depth::Eight => raw[at..at + n].copy_from_slice(&src[from..from + n]),
            Depth::Four if at.is_multiple_of(2) => {
                raw[at / 2..at / 2 + n / 2].copy_from_slice(&src[from / 2..from / 2 + n / 2]);
                if !n.is_multiple_of(2) {
                    set_packed(raw, depth, at + n - 1, get_packed(src, depth, from + n - 1));
                }
            }
            Depth::Four => {
                for i in 0..n {
                    set_packed(raw, depth, at + i, get_packed(src, depth, from + i));
                }
            }
        }
    }
}

impl Hub {
    /// A hub at `seq` (the store's head) on a canvas of `dims`.
    pub fn new(
        store: Arc<Backend>,
        seq: Seq,
        dims: Dimensions,
        depth: Depth,
        opts: HubOptions,
    ) -> Arc<Self> {
        let (tx, _) = broadcast::channel(opts.client_queue);
        let (control, _) = broadcast::channel(16);
        Arc::new(Self {
            last_sent: AtomicU64::new(seq.0),
            live: Mutex::new(Live {
                seq,
                log: VecDeque::new(),
                dims,
                tiles: TileCache::new(opts.tile_cache, depth),
                subs: HashMap::new(),
                viewers: HashMap::new(),
                touched: Vec::new(),
                dirty: HashSet::new(),
                dirty_all: false,
            }),
            store,
            log_cap: opts.log_cap,
            tx,
            control,
            seq_watch: watch::Sender::new(seq),
            dims_now: AtomicU64::new(pack(dims)),
            depth,
            ttl: opts.ttl,
            // One tick with every tile of a full view changed fits, on top of the queue.
            view_queue: opts.client_queue + VIEW_MAX_TILES as usize,
            next_viewer: AtomicU64::new(1),
            clients: AtomicUsize::new(0),
            min_tick: opts.min_tick,
            max_frame_rate: opts.max_frame_rate,
            tick_ms: AtomicU64::new(opts.min_tick.as_millis() as u64),
        })
    }

    /// The live state. A panic while it was held (there is none left on bad input) must not
    /// turn every later request into a panic too: the state is used as it is, and the
    /// supervisor has already failed readiness because the hub task died.
    fn live(&self) -> MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Newest seq applied.
    pub fn seq(&self) -> Seq {
        self.live().seq
    }

    /// The canvas's size now: the one place every handler reads it from.
    pub fn dims(&self) -> Dimensions {
        let v = self.dims_now.load(Ordering::Acquire);
        Dimensions::parse(v >> 32, v & 0xffff_ffff).expect("stored dims are valid")
    }

    /// Bits per pixel.
    pub fn depth(&self) -> Depth {
        self.depth
    }

    /// Tiles in the cache now.
    pub fn cached_tiles(&self) -> usize {
        self.live().tiles.len()
    }

    /// Reads tile `id` from the store and caches it, brought to the hub's seq with the
    /// recent log. Nothing if it is cached already.
    pub async fn ensure(&self, id: TileId) -> Result<(), LoadError> {
        if self.live().tiles.contains(id) {
            return Ok(());
        }
        for _ in 0..3 {
            let read = self.store.tile(id).await?;
            metrics::counter!("rplace_tile_loads_total").increment(1);
            let mut seq = self.seq_watch.subscribe();
            if tokio::time::timeout(CATCH_UP_WAIT, seq.wait_for(|s| *s >= read.through))
                .await
                .is_err()
            {
                // The feed did not bring what the store already has (a quiet canvas whose
                // feed started after the hub's first read): go on from the store's head.
                self.fast_forward(read.through);
                continue;
            }
            let mut live = self.live();
            if live.tiles.contains(id) {
                return Ok(());
            }
            let head = live.seq;
            let oldest = live.log.front().map_or(head, |u| Seq(u.seq.0 - 1));
            if read.through > head || read.through < oldest {
                continue; // a reset in between, or the log moved past the read: again
            }
            let (mut version, mut pixels) = (read.version, read.pixels);
            let skip = (read.through.0 - oldest.0) as usize;
            for u in live.log.iter().skip(skip) {
                if TileId::of(u.coord) == id {
                    pixels
                        .get_or_insert_with(|| Tile::new(self.depth))
                        .set(id.local_index(u.coord), u.color);
                    version = u.seq;
                }
            }
            let floor = live.floor();
            let Live { tiles, subs, .. } = &mut *live;
            tiles.insert(id, version, pixels, floor, |k| subs.contains_key(&k));
            return Ok(());
        }
        Err(LoadError::Behind)
    }

    /// Loads many tiles, a few at a time.
    pub async fn ensure_all(&self, ids: Vec<TileId>) -> Result<(), LoadError> {
        let mut loads = futures_util::stream::iter(ids.into_iter().map(|id| self.ensure(id)))
            .buffer_unordered(LOAD_CONCURRENCY);
        while let Some(r) = loads.next().await {
            r?;
        }
        Ok(())
    }

    /// Runs `f` on the cached tile `id`, loading it first if needed.
    async fn with_tile<T>(
        &self,
        id: TileId,
        mut f: impl FnMut(&mut Live) -> Option<T>,
    ) -> Result<T, LoadError> {
        for _ in 0..4 {
            if let Some(v) = f(&mut self.live()) {
                return Ok(v);
            }
            self.ensure(id).await?;
        }
        Err(LoadError::Behind) // evicted again and again: the cache is far too small
    }

    /// The body to serve for tile `id` (exact at most a TTL ago).
    pub async fn tile_body(&self, id: TileId) -> Result<Arc<Version>, LoadError> {
        let ttl = self.ttl;
        self.with_tile(id, |live| live.tiles.body(id, ttl)).await
    }

    /// The tile's pixels and version now.
    pub async fn tile_now(&self, id: TileId) -> Result<(Seq, Option<Tile>), LoadError> {
        self.with_tile(id, |live| {
            live.tiles.get(id).map(|c| (c.version, c.pixels.clone()))
        })
        .await
    }

    /// A cached tile's pixels (`Some(None)`: cached, never painted), without loading.
    pub fn cached_pixels(&self, id: TileId) -> Option<Option<Tile>> {
        self.live().tiles.get(id).map(|c| c.pixels.clone())
    }

    /// The color at one pixel now (0 off the canvas).
    pub async fn pixel(&self, c: Coord) -> Result<ColorIndex, LoadError> {
        if !self.dims().contains(c) {
            return Ok(ColorIndex::new_unchecked(0));
        }
        let id = TileId::of(c);
        let i = id.local_index(c);
        self.with_tile(id, |live| live.tiles.pixel(id, i)).await
    }

    /// The placements on tile `id` after version `since`, oldest first, and the tile's
    /// version now; `None` if the recent log no longer reaches back to `since` (and the
    /// tile changed after it).
    pub async fn tile_updates(
        &self,
        id: TileId,
        since: Seq,
    ) -> Result<Option<(Vec<TileUpdate>, Seq)>, LoadError> {
        self.with_tile(id, |live| {
            let version = live.tiles.get(id)?.version;
            if since >= version {
                return Some(Some((Vec::new(), version)));
            }
            let oldest = live.log.front().map_or(live.seq, |u| Seq(u.seq.0 - 1));
            if since < oldest {
                return Some(None);
            }
            let skip = (since.0 - oldest.0) as usize;
            let ups = live
                .log
                .iter()
                .skip(skip)
                .filter(|u| TileId::of(u.coord) == id)
                .map(|u| TileUpdate {
                    version: u.seq,
                    index: id.local_index(u.coord),
                    color: u.color,
                })
                .collect();
            Some(Some((ups, version)))
        })
        .await
    }

    /// The whole canvas packed, and the seq it is exact at, from the tiles (loading those
    /// not cached). Whole canvases only: the caller checks [`Dimensions::whole`].
    pub async fn compose_board(&self) -> Result<(Seq, Vec<u8>), LoadError> {
        for _ in 0..4 {
            let missing: Vec<TileId> = {
                let live = self.live();
                let (a, d) = tiles_across(live.dims);
                (0..d)
                    .flat_map(|ty| (0..a).map(move |tx| TileId::new_unchecked(tx, ty)))
                    .filter(|id| !live.tiles.contains(*id))
                    .collect()
            };
            if !missing.is_empty() {
                self.ensure_all(missing).await?;
            }
            let live = self.live();
            let dims = live.dims;
            let (a, d) = tiles_across(dims);
            let mut raw = vec![0u8; self.depth.bytes_for(dims.pixels())];
            let mut complete = true;
            'tiles: for ty in 0..d {
                for tx in 0..a {
                    let id = TileId::new_unchecked(tx, ty);
                    match live.tiles.get(id) {
                        Some(c) => {
                            if let Some(p) = &c.pixels {
                                put_tile(&mut raw, dims, self.depth, id, p);
                            }
                        }
                        None => {
                            complete = false;
                            break 'tiles;
                        }
                    }
                }
            }
            if complete {
                return Ok((live.seq, raw));
            }
        }
        Err(LoadError::Behind)
    }

    /// Updates after `since` from the in-memory log, at most `limit`.
    pub fn recent(&self, since: Seq, limit: usize) -> Recent {
        let live = self.live();
        if since >= live.seq {
            return Recent::Found(Vec::new(), live.seq);
        }
        let oldest = live
            .log
            .front()
            .map_or(live.seq, |u| Seq(u.seq.0.saturating_sub(1)));
        if since < oldest {
            return Recent::TooOld;
        }
        let skip = (since.0 - oldest.0) as usize;
        Recent::Found(
            live.log.iter().skip(skip).take(limit).copied().collect(),
            live.seq,
        )
    }

    /// The tiles changed since the last call (all of them: `None`), for the overviews.
    pub fn take_dirty(&self) -> Option<HashSet<u64>> {
        let mut live = self.live();
        let dirty = std::mem::take(&mut live.dirty);
        if std::mem::take(&mut live.dirty_all) {
            return None;
        }
        Some(dirty)
    }

    /// Joins the whole-canvas fan-out; returns the receiver and the seq the client is
    /// known to be current up to through frames (frames it receives start after it).
    pub fn subscribe(&self) -> (broadcast::Receiver<Outgoing>, Seq) {
        let rx = self.tx.subscribe();
        // Read after subscribing: a frame sent in between is both received and counted
        // here, which only makes the client skip entries it already has.
        (rx, Seq(self.last_sent.load(Ordering::Acquire)))
    }

    /// Makes a client a viewer: its own queue of tile frames, and control messages
    /// (resync, canvas) on the returned receiver instead of the whole-canvas fan-out.
    pub fn join_views(&self) -> (ViewFeed, broadcast::Receiver<Outgoing>) {
        let id = self.next_viewer.fetch_add(1, Ordering::Relaxed);
        let (tx, frames) = mpsc::channel(self.view_queue);
        let lagged = CancellationToken::new();
        let control = self.control.subscribe();
        self.live().viewers.insert(
            id,
            Viewer {
                tx,
                lagged: lagged.clone(),
                view: Vec::new(),
            },
        );
        metrics::gauge!("rplace_ws_viewers").increment(1.0);
        (ViewFeed { id, frames, lagged }, control)
    }

    /// Replaces viewer `id`'s subscriptions by the tiles of `rect` on the canvas. Returns
    /// what it subscribed to and the tiles to load (not cached).
    pub fn set_view(&self, id: u64, rect: ViewRect) -> (ViewRect, Vec<TileId>) {
        let mut live = self.live();
        let rect = rect.clamp(live.dims);
        let keys: Vec<u64> = rect.tiles().map(TileId::key).collect();
        let Live {
            subs,
            viewers,
            tiles,
            ..
        } = &mut *live;
        let Some(viewer) = viewers.get_mut(&id) else {
            return (rect, Vec::new());
        };
        for k in std::mem::take(&mut viewer.view) {
            unsubscribe(subs, k, id);
        }
        for &k in &keys {
            subs.entry(k).or_default().push(id);
        }
        viewer.view = keys;
        let missing = rect.tiles().filter(|t| !tiles.contains(*t)).collect();
        (rect, missing)
    }

    /// Viewer `id` is gone.
    pub fn leave_views(&self, id: u64) {
        let mut live = self.live();
        let Live { subs, viewers, .. } = &mut *live;
        if let Some(v) = viewers.remove(&id) {
            for k in v.view {
                unsubscribe(subs, k, id);
            }
            metrics::gauge!("rplace_ws_viewers").decrement(1.0);
        }
    }

    /// The canvas grew (an admin here, or the feed saying another instance did it):
    /// clients learn it. `false` if `to` is not larger than the size now.
    pub fn grown(&self, to: Dimensions) -> bool {
        let mut live = self.live();
        if to == live.dims || !to.covers(live.dims) {
            return false;
        }
        live.dims = to;
        self.dims_now.store(pack(to), Ordering::Release);
        drop(live);
        tracing::info!(width = to.width(), height = to.height(), "the canvas grew");
        let _ = self.tx.send(Outgoing::Canvas(to));
        let _ = self.control.send(Outgoing::Canvas(to));
        true
    }

    /// Tells every websocket client how many people are online (`crate::stats`).
    pub fn online(&self, n: u64) {
        let _ = self.tx.send(Outgoing::Online(n));
        let _ = self.control.send(Outgoing::Online(n));
    }

    pub fn client_connected(&self) -> usize {
        let n = self.clients.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!("rplace_ws_clients").set(n as f64);
        n
    }

    pub fn client_disconnected(&self) {
        let n = self.clients.fetch_sub(1, Ordering::Relaxed) - 1;
        metrics::gauge!("rplace_ws_clients").set(n as f64);
    }

    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    pub fn tick_ms(&self) -> u64 {
        self.tick_ms.load(Ordering::Relaxed)
    }

    /// The tick for the current audience: long enough that one tick's frames fit the
    /// budget. Each whole-canvas client gets a frame every tick; a viewer gets one only
    /// for its tiles that changed, so viewers count by the tile frames the last tick
    /// delivered (`tile_deliveries`), not by their number (15k viewers of a world canvas
    /// receive a few thousand frames a second, and a tick made for 15k whole-canvas
    /// clients held each of them 250 ms).
    fn current_tick(&self, tile_deliveries: u64) -> Duration {
        let frames = (self.tx.receiver_count() as u64).saturating_add(tile_deliveries);
        let needed = Duration::from_micros(frames.saturating_mul(1_000_000) / self.max_frame_rate);
        let tick = needed.clamp(self.min_tick, Duration::from_secs(1).max(self.min_tick));
        self.tick_ms
            .store(tick.as_millis() as u64, Ordering::Relaxed);
        tick
    }

    /// Forgets every cached tile and the log, and goes on from `seq`: what a reset does,
    /// for the hub's own reasons. Returns whether it did (only ever forward).
    fn forget(&self, live: &mut Live, seq: Seq) -> bool {
        if seq <= live.seq {
            return false;
        }
        tracing::warn!(
            from = live.seq.0,
            to = seq.0,
            "the feed skipped placements the store has; tiles are read again"
        );
        live.tiles.clear();
        live.log.clear();
        live.touched.clear();
        live.dirty.clear();
        live.dirty_all = true;
        live.seq = seq;
        self.last_sent.store(seq.0, Ordering::Release);
        self.seq_watch.send_replace(seq);
        true
    }

    /// The store is ahead of the feed by more than [`CATCH_UP_WAIT`]: continue from `seq`
    /// as after a reset, telling clients to resync.
    fn fast_forward(&self, seq: Seq) {
        let moved = {
            let mut live = self.live();
            self.forget(&mut live, seq)
        };
        if moved {
            let _ = self.tx.send(Outgoing::Resync);
            let _ = self.control.send(Outgoing::Resync);
        }
    }

    fn apply(&self, placements: &[Placement], pending: &mut Vec<Update>) {
        let mut live = self.live();
        let mut skipped = false;
        for p in placements {
            if p.seq <= live.seq {
                continue; // already applied (a feed may overlap the starting seq)
            }
            if p.seq.0 > live.seq.0 + 1 {
                // The feed has no gaps but where it says Reset: this is the start, when
                // the feed began after the hub's first read. Cached tiles may lack what
                // is in between.
                skipped |= self.forget(&mut live, Seq(p.seq.0 - 1));
            }
            if !live.dims.contains(p.coord) || !self.depth.holds(p.color) {
                // Skipping leaves a gap in the log and the frames, which clients fill from
                // `/api/updates` like any gap; applying it would panic.
                metrics::counter!("rplace_hub_bad_records_total").increment(1);
                tracing::error!(
                    seq = p.seq.0,
                    x = p.coord.x(),
                    y = p.coord.y(),
                    color = p.color.get(),
                    "the feed delivered a placement that does not fit the canvas; skipped"
                );
                continue;
            }
            live.seq = p.seq;
            let u = Update {
                seq: p.seq,
                coord: p.coord,
                color: p.color,
            };
            if live.log.back().is_some_and(|b| b.seq.0 + 1 != u.seq.0) {
                live.log.clear(); // the log must stay contiguous
            }
            live.log.push_back(u);
            if live.log.len() > self.log_cap {
                live.log.pop_front();
            }
            if live.dims.whole() {
                pending.push(u);
            }
            let id = TileId::of(p.coord);
            let key = id.key();
            let Live {
                tiles,
                subs,
                touched,
                dirty,
                dirty_all,
                ..
            } = &mut *live;
            let up = TileUpdate {
                version: p.seq,
                index: id.local_index(p.coord),
                color: p.color,
            };
            if tiles.apply(id, up, subs.contains_key(&key)) == Some(true) {
                touched.push(key);
            }
            if !*dirty_all {
                dirty.insert(key);
                if dirty.len() > DIRTY_MAX {
                    dirty.clear();
                    *dirty_all = true;
                }
            }
        }
        self.seq_watch.send_replace(live.seq);
        drop(live);
        if skipped {
            let _ = self.tx.send(Outgoing::Resync);
            let _ = self.control.send(Outgoing::Resync);
        }
    }

    /// The store reset: every cached tile may be wrong, the log has a gap. Tiles are read
    /// again as they are asked for (subscribed ones at once, in the background), and every
    /// client is told to resync.
    fn reset(self: &Arc<Self>, seq: Seq) {
        let subscribed: Vec<TileId> = {
            let mut live = self.live();
            live.tiles.clear();
            live.log.clear();
            live.touched.clear();
            live.dirty.clear();
            live.dirty_all = true;
            live.seq = seq;
            self.last_sent.store(seq.0, Ordering::Release);
            self.seq_watch.send_replace(seq);
            live.subs.keys().map(|k| TileId::from_key(*k)).collect()
        };
        let _ = self.tx.send(Outgoing::Resync);
        let _ = self.control.send(Outgoing::Resync);
        if !subscribed.is_empty() {
            let me = self.clone();
            tokio::spawn(async move {
                if let Err(e) = me.ensure_all(subscribed).await {
                    tracing::warn!(error = %e, "reloading subscribed tiles after a reset failed");
                }
            });
        }
    }

    /// Sends this tick's frames; returns how many tile frames went to viewers.
    fn broadcast(&self, pending: &mut Vec<Update>) -> u64 {
        let started = Instant::now();
        let mut tile_deliveries = 0;
        let mut sent = false;
        if !pending.is_empty() {
            let last = pending.last().map(|u| u.seq).unwrap_or_default();
            for frame in wire::encode_frames(pending) {
                let receivers = self.tx.receiver_count() as u64;
                metrics::counter!("rplace_frames_sent_total").increment(receivers);
                metrics::counter!("rplace_frame_bytes_sent_total")
                    .increment(receivers * frame.len() as u64);
                // No receivers is not an error: nobody is watching.
                let _ = self.tx.send(Outgoing::Frame(Bytes::from(frame)));
            }
            self.last_sent.store(last.0, Ordering::Release);
            pending.clear();
            sent = true;
        }
        let mut live = self.live();
        if !live.touched.is_empty() {
            let Live {
                tiles,
                subs,
                viewers,
                touched,
                ..
            } = &mut *live;
            let (mut frames, mut deliveries, mut bytes) = (0u64, 0u64, 0u64);
            for key in touched.drain(..) {
                let Some(c) = tiles.get_mut(key) else {
                    continue;
                };
                let ups = std::mem::take(&mut c.pending);
                let Some(ids) = subs.get(&key).filter(|_| !ups.is_empty()) else {
                    continue;
                };
                let frame = Bytes::from(wire::encode_tile_frame(
                    TileId::from_key(key),
                    c.pending_prev,
                    &ups,
                ));
                frames += 1;
                for id in ids {
                    let Some(v) = viewers.get(id) else { continue };
                    match v.tx.try_send(frame.clone()) {
                        Ok(()) => {
                            deliveries += 1;
                            bytes += frame.len() as u64;
                        }
                        Err(mpsc::error::TrySendError::Full(_)) => v.lagged.cancel(),
                        Err(mpsc::error::TrySendError::Closed(_)) => {}
                    }
                }
            }
            tile_deliveries = deliveries;
            metrics::counter!("rplace_tile_frames_encoded_total").increment(frames);
            metrics::counter!("rplace_frames_sent_total").increment(deliveries);
            metrics::counter!("rplace_frame_bytes_sent_total").increment(bytes);
            sent = true;
        }
        drop(live);
        if sent {
            metrics::counter!("rplace_frames_encoded_total").increment(1);
            metrics::histogram!("rplace_tick_seconds").record(started.elapsed().as_secs_f64());
        }
        tile_deliveries
    }

    /// Runs until the feed ends or `stop` is cancelled, and says which.
    pub async fn run(
        self: Arc<Self>,
        mut feed: mpsc::Receiver<FeedEvent>,
        stop: CancellationToken,
    ) -> HubEnd {
        let mut pending: Vec<Update> = Vec::new();
        let mut next_tick = tokio::time::Instant::now() + self.current_tick(0);
        let end = loop {
            tokio::select! {
                ev = feed.recv() => match ev {
                    Some(FeedEvent::Placements(ps)) => self.apply(&ps, &mut pending),
                    Some(FeedEvent::Reset(seq)) => {
                        tracing::warn!(seq = seq.0, "store reset the feed; clients resync");
                        pending.clear();
                        self.reset(seq);
                    }
                    Some(FeedEvent::Grown(dims)) => {
                        self.grown(dims);
                    }
                    None => break HubEnd::FeedEnded,
                },
                _ = tokio::time::sleep_until(next_tick) => {
                    let delivered = self.broadcast(&mut pending);
                    next_tick = tokio::time::Instant::now() + self.current_tick(delivered);
                }
                _ = stop.cancelled() => break HubEnd::Stopped,
                _ = fault::INJECTED.cancelled() => fault::panic_holding(&self.live),
            }
        };
        self.broadcast(&mut pending);
        end
    }
}

fn unsubscribe(subs: &mut HashMap<u64, Vec<u64>>, key: u64, id: u64) {
    if let Some(list) = subs.get_mut(&key) {
        list.retain(|v| *v != id);
        if list.is_empty() {
            subs.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_compose_into_the_board_layout() {
        for (w, h, depth) in [
            (300u64, 5u64, Depth::Four),
            (301, 5, Depth::Four),
            (300, 5, Depth::Eight),
        ] {
            let dims = Dimensions::parse(w, h).unwrap();
            let mut board = rplace_domain::Board::new(dims, depth);
            for (i, (x, y)) in [
                (0u32, 0u32),
                (255, 1),
                (256, 2),
                (299, 4),
                (w as u32 - 1, 3),
            ]
            .into_iter()
            .enumerate()
            {
                board.set(
                    Coord::new_unchecked(x, y),
                    ColorIndex::new_unchecked(i as u8 + 1),
                );
            }
            let mut raw = vec![0u8; depth.bytes_for(dims.pixels())];
            for tx in 0..2 {
                let id = TileId::new_unchecked(tx, 0);
                put_tile(&mut raw, dims, depth, id, &board.tile(id));
            }
            assert_eq!(raw, board.as_bytes(), "{w}x{h}");
        }
    }

    #[test]
    fn views_are_clamped_to_the_canvas() {
        let dims = Dimensions::parse(1000, 300).unwrap(); // 4 x 2 tiles
        let r = ViewRect {
            tx: 2,
            ty: 1,
            w: 5,
            h: 5,
        }
        .clamp(dims);
        assert_eq!(
            r,
            ViewRect {
                tx: 2,
                ty: 1,
                w: 2,
                h: 1
            }
        );
        let off = ViewRect {
            tx: 9,
            ty: 0,
            w: 2,
            h: 2,
        }
        .clamp(dims);
        assert_eq!((off.w, off.tiles().count()), (0, 0));
    }
}

/// A way for tests to kill the hub the way a bug would, since no bad input can any more.
#[doc(hidden)]
pub mod fault {
    use std::sync::{LazyLock, Mutex};
    use tokio_util::sync::CancellationToken;

    /// Cancelled by [`panic_every_hub`].
    pub(super) static INJECTED: LazyLock<CancellationToken> = LazyLock::new(CancellationToken::new);

    /// Makes every hub in this process panic while holding its lock (poisoning it). For
    /// tests of the supervisor only; a test that calls it must run in a process of its own.
    pub fn panic_every_hub() {
        INJECTED.cancel();
    }

    pub(super) fn panic_holding<T>(lock: &Mutex<T>) -> ! {
        let _held = lock.lock();
        panic!("fault injected into the hub");
    }
}
