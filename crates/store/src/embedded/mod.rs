//! The embedded backend: everything in one SQLite file under the data dir.
//!
//! One writer thread owns the write connection and is the sequencer. It takes every
//! placement request that is waiting (up to [`MAX_BATCH`]), decides each by the domain's
//! policy ([`rplace_domain::policy::decide`]: cooldown and per-address rate together, so
//! a refusal spends nothing), assigns consecutive seqs, inserts them in one transaction
//! and commits; only after the commit does it update the in-memory state, feed the hub
//! and answer the requests. A crash at any point therefore loses only placements that
//! were never acknowledged.
//!
//! Idempotency: an accepted placement with an idempotency key is recorded (user, key →
//! seq, at, next_at) in the same transaction as the placement, so a repeat after a crash
//! and restart still gets the first answer. The writer looks the key up before deciding,
//! so two concurrent attempts with one key cannot both place: they are decided one after
//! the other on this one thread. Records older than the window are pruned.
//!
//! The canvas is held in tiles (`tiles`): a bounded cache of the tiles placed on lately
//! in the writer, over a `tiles` table whose rows are written in batches (at each
//! checkpoint, every `snapshot_every` placements, and when dirty tiles are evicted), never
//! per placement. Memory is bounded by the cache however much of a 2^22² canvas is painted;
//! an unpainted tile has no row. Restart reads nothing but the watermark: the log after it
//! is replayed onto the rows (through the same bounded cache), the seq comes from the last
//! row, and the cooldowns from the rows younger than the cooldown.
//!
//! Pixel history without a secondary index: each row of the log carries `prev`, the seq
//! of the placement before it on the same pixel, and each tile holds the last seq of each
//! of its pixels (in memory while cached, in its row otherwise). Inserts then only append
//! to the table's last page; an index on `(y, x)` dirtied one random page per placement,
//! which every commit had to write to the WAL, and cost a third of the server's CPU per
//! placement (see BENCHMARKS.md, b).
//!
//! The canvas at a past moment (`past`, the design in [`crate::past`]): keyframes in
//! tables of their own, written by a background task on a connection of its own from
//! committed rows, never by the writer.
//!
//! Growth: the size lives in `meta`; `grow` is a writer command like a moderation one
//! (committed, then in memory, then `FeedEvent::Grown`). A start configured larger than the
//! data dir grows it; one configured smaller keeps the larger size stored.
//!
//! Durability: with [`SyncMode::Full`] (the default) every commit is fsynced, so an
//! acknowledged placement survives power loss; with [`SyncMode::Normal`] it survives a
//! crash or `kill -9` of the process but not of the machine.

use crate::feed_queue::FeedSender;
use crate::limit::AddrStates;
use crate::{
    BackendError, Chain, FeedEvent, NewPlacement, PlaceError, Placed, Snapshot, Store, StoreError,
    TileRead, now_ms,
};
use rplace_domain::TileId;
use rplace_domain::board::Depth;
use rplace_domain::policy::{
    self, Decision, Now, OnceState, Params, Prior, Quota, Refusal, UserState,
};
use rplace_domain::{
    AddrKey, Board, ColorIndex, Coord, Dimensions, IdempotencyKey, OnceToken, Placement, Seq,
    UserId,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

mod accounts;
mod activity;
mod export;
mod moderation;
mod past;
mod records;
mod rewrite;
mod schema;
mod stats;
mod templates;
mod tiles;
mod writer;

pub use schema::open_database;
use schema::*;
pub use tiles::DEFAULT_TILE_CACHE;
use tiles::{TileCache, TileView};
use writer::Writer;

/// Most placements committed in one transaction.
pub const MAX_BATCH: usize = 8192;
/// A batch at least this large means placements arrive faster than commits: linger.
const LINGER_FROM: usize = 2;
/// How long the writer waits for more placements under load (added to their latency).
const LINGER: std::time::Duration = std::time::Duration::from_micros(500);
/// Requests that may wait for the writer before `place` itself waits (backpressure).
const QUEUE: usize = 65_536;
/// How often expired idempotency records are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(10);
/// How often an idle writer retries a reset it owes the feed (the hub was a whole queue
/// behind); a busy one retries after every batch.
const RESET_RETRY: Duration = Duration::from_millis(10);
/// Read connections kept open for history and catch-up queries.
const READERS: usize = 4;
/// Optimistic tries of a consistent tile read before it holds the state lock while it
/// reads rows (see [`EmbeddedStore::read_tiles`]).
const READ_TRIES: usize = 3;

/// How hard each commit is pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// fsync on every commit: survives power loss.
    Full,
    /// WAL without fsync per commit: survives a process crash, not a machine crash.
    Normal,
}

/// What the embedded store needs to know.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// Folder holding `rplace.sqlite3`; created if missing.
    pub data_dir: PathBuf,
    /// Canvas size: a data dir holding a smaller canvas grows to it, one holding a larger
    /// canvas keeps its own size.
    pub dims: Dimensions,
    /// Bits per pixel; must match what the data dir already holds.
    pub depth: Depth,
    /// The placement policy's parameters (cooldown, per-address rate, IPv6 prefix).
    pub policy: Params,
    /// How long an idempotency key's first outcome is remembered.
    pub idempotency_window: Duration,
    /// fsync policy.
    pub sync: SyncMode,
    /// Write a board snapshot after this many placements, to bound replay at start.
    pub snapshot_every: u64,
    /// How far back `updates_since` reads the log before answering `Gone`.
    pub max_catchup: u64,
    /// Most tiles the writer holds in memory ([`DEFAULT_TILE_CACHE`]); at least 1.
    pub tile_cache: usize,
}

/// State the writer changes after each commit and others read.
struct State {
    /// The canvas size now; only `grow` changes it.
    dims: Dimensions,
    /// Last committed seq.
    seq: Seq,
    /// Last accepted placement time of users still inside their cooldown (pruned).
    last_placed: HashMap<UserId, i64>,
    /// The charges pools' arrival times of users whose pool is not full (the charges
    /// model; pruned like `last_placed`).
    charge_tats: HashMap<UserId, i64>,
    /// The tiles in memory, with every committed placement applied; the others are current
    /// in their rows (see `tiles`).
    tiles: TileCache,
}

enum Cmd {
    Place(NewPlacement, oneshot::Sender<Result<Placed, PlaceError>>),
    /// Applied between two batches of placements, in the order it arrived.
    Moderate(moderation::ModCmd),
    Close(oneshot::Sender<Result<(), StoreError>>),
    /// One chunk of a moderation change (`rewrite`), committed on its own between batches.
    Rewrite(rewrite::Chunk),
    /// Grows the canvas, between batches.
    Grow(Dimensions, oneshot::Sender<Result<Dimensions, StoreError>>),
}

/// Which tiles a reader wants.
enum Want {
    Keys(Vec<u64>),
    /// Every painted tile: only for canvases held whole.
    All,
}

/// Handle to the embedded store. Cheap to share behind an `Arc`.
pub struct EmbeddedStore {
    /// Requests to the writer thread.
    tx: mpsc::Sender<Cmd>,
    /// Committed state, shared with the writer.
    state: Arc<Mutex<State>>,
    /// The feed, until the hub takes it.
    feed: Mutex<Option<mpsc::Receiver<FeedEvent>>>,
    /// Open read-only connections for queries that must not wait behind the writer.
    readers: Arc<Mutex<Vec<Connection>>>,
    /// Where the database lives, to open more readers.
    path: PathBuf,
    /// Needed by `next_allowed`.
    policy: Params,
    /// How far back the log is served.
    max_catchup: u64,
    /// Bits per pixel of every tile.
    depth: Depth,
    /// Most tiles the writer holds: a rewrite chunk touches no more.
    tile_cache: usize,
    /// The writer, joined on close.
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `cfg.data_dir`, restores its state and starts the
    /// writer thread.
    pub fn open(cfg: EmbeddedConfig) -> Result<Self, StoreError> {
        let path = cfg.data_dir.join(DB_FILE);
        let conn = open_database(&cfg)?;
        let state = Arc::new(Mutex::new(restore(&conn, &cfg)?));
        let (tx, rx) = mpsc::channel(QUEUE);
        let (feed_tx, feed_rx) = crate::feed_queue::channel(crate::FEED_CAPACITY);
        let active = moderation::Active::load(&conn, now_ms())?;
        let writer = Writer {
            conn,
            state: state.clone(),
            feed: feed_tx,
            policy: cfg.policy,
            addrs: AddrStates::default(),
            active,
            idempotency_window_ms: cfg.idempotency_window.as_millis() as i64,
            pruned_at: Instant::now(),
            depth: cfg.depth,
            snapshot_every: cfg.snapshot_every.max(1),
            since_snapshot: 0,
            last_ts: 0,
        };
        let handle = std::thread::Builder::new()
            .name("rplace-sqlite-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(StoreError::from)?;
        let readers = (0..READERS)
            .map(|_| open_reader(&path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            tx,
            state,
            feed: Mutex::new(Some(feed_rx)),
            readers: Arc::new(Mutex::new(readers)),
            path,
            policy: cfg.policy,
            max_catchup: cfg.max_catchup,
            depth: cfg.depth,
            tile_cache: cfg.tile_cache.max(1),
            writer: Mutex::new(Some(handle)),
        })
    }

    /// Runs `f` on a pooled read connection on the blocking pool.
    /// Runs `f` in one immediate transaction on a connection of its own, on the blocking
    /// pool, and commits if it returns `Ok`: the rare writes beside placements (records,
    /// templates, the stats' counts) wait for the writer's short transactions
    /// (`busy_timeout`) instead of queueing behind it.
    async fn side_write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = Connection::open(&path).map_err(backend)?;
            conn.busy_timeout(Duration::from_secs(5)).map_err(backend)?;
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(backend)?;
            let out = f(&tx)?;
            tx.commit().map_err(backend)?;
            Ok(out)
        })
        .await
        .map_err(|_| BackendError::Stopped("side write task"))?
    }

    async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = readers.lock().expect("reader pool").pop();
            let conn = match conn {
                Some(c) => c,
                None => open_reader(&path)?,
            };
            let out = f(&conn);
            let mut pool = readers.lock().expect("reader pool");
            if pool.len() < READERS {
                pool.push(conn);
            }
            out
        })
        .await
        .map_err(|_| BackendError::Stopped("reader task"))?
    }

    /// Tiles as they all were at one seq, each passed to `pick` (`None`: never painted),
    /// with that seq and the canvas size then. Cached tiles are picked under the state
    /// lock; the others are read from their rows without it, which is consistent because
    /// a row changes only while its tile is cached, and then only by a placement newer
    /// than the seq noted: a row read back newer than that means a retry. The last try
    /// reads the rows under the lock (a few primary-key reads; decompressed after it).
    async fn read_tiles<T: Send + 'static>(
        &self,
        want: Want,
        with_seqs: bool,
        pick: impl Fn(u64, Option<TileView<'_>>) -> T + Send + 'static,
    ) -> Result<(Seq, Dimensions, Vec<T>), StoreError> {
        let state = self.state.clone();
        let depth = self.depth;
        self.read(move |conn| {
            for attempt in 1..=READ_TRIES {
                let st = state.lock().expect("state lock");
                let (head, dims) = (st.seq, st.dims);
                fn view(t: &tiles::Cached, with_seqs: bool) -> TileView<'_> {
                    TileView {
                        version: t.version,
                        pixels: &t.pixels,
                        seqs: with_seqs.then_some(&t.seqs),
                    }
                }
                let mut out = Vec::new();
                let mut missing = Vec::new();
                match &want {
                    Want::Keys(keys) => {
                        for &k in keys {
                            match st.tiles.get(k) {
                                Some(t) => out.push(pick(k, Some(view(t, with_seqs)))),
                                None => missing.push(k),
                            }
                        }
                    }
                    Want::All => out.extend(
                        st.tiles
                            .iter()
                            .map(|(&k, t)| pick(k, Some(view(t, with_seqs)))),
                    ),
                }
                let cached: HashSet<u64> = match want {
                    Want::All => st.tiles.iter().map(|(&k, _)| k).collect(),
                    Want::Keys(_) => HashSet::new(),
                };
                let last = attempt == READ_TRIES;
                let guard = if last {
                    Some(st)
                } else {
                    drop(st);
                    None
                };
                let rows: Vec<(u64, Option<tiles::RawRow>)> = match want {
                    Want::Keys(_) => missing
                        .iter()
                        .map(|&k| Ok((k, tiles::read_row(conn, k, with_seqs)?)))
                        .collect::<Result<_, StoreError>>()?,
                    Want::All => tiles::read_all_rows(conn, with_seqs)?
                        .into_iter()
                        .filter(|r| !cached.contains(&r.key))
                        .map(|r| (r.key, Some(r)))
                        .collect(),
                };
                drop(guard);
                if !last
                    && rows
                        .iter()
                        .any(|(_, r)| r.as_ref().is_some_and(|r| r.version > head.0))
                {
                    continue;
                }
                for (k, r) in rows {
                    match r {
                        None => out.push(pick(k, None)),
                        Some(r) => {
                            let pixels = r.pixels(depth)?;
                            let seqs = if with_seqs { Some(r.seqs()?) } else { None };
                            out.push(pick(
                                k,
                                Some(TileView {
                                    version: r.version,
                                    pixels: &pixels,
                                    seqs: seqs.as_ref(),
                                }),
                            ));
                        }
                    }
                }
                return Ok((head, dims, out));
            }
            unreachable!("the last try returns")
        })
        .await
    }

    /// The color and last seq of each of `coords` (on the canvas) at one seq, in order,
    /// with that seq.
    async fn pixels_at(
        &self,
        coords: Vec<Coord>,
    ) -> Result<(Seq, Vec<(Coord, ColorIndex, u64)>), StoreError> {
        let mut by_tile: HashMap<u64, Vec<Coord>> = HashMap::new();
        for &c in &coords {
            by_tile.entry(TileId::of(c).key()).or_default().push(c);
        }
        let keys: Vec<u64> = by_tile.keys().copied().collect();
        let (head, _, found) = self
            .read_tiles(Want::Keys(keys), true, move |k, v| {
                let id = TileId::from_key(k);
                by_tile[&k]
                    .iter()
                    .map(|&c| {
                        let i = id.local_index(c);
                        match &v {
                            Some(v) => (c, v.pixels.get(i), v.seqs.map_or(0, |s| s.get(i))),
                            None => (c, ColorIndex::new_unchecked(0), 0),
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .await?;
        let found: HashMap<Coord, (ColorIndex, u64)> = found
            .into_iter()
            .flatten()
            .map(|(c, color, s)| (c, (color, s)))
            .collect();
        Ok((
            head,
            coords
                .into_iter()
                .map(|c| {
                    let (color, s) = found[&c];
                    (c, color, s)
                })
                .collect(),
        ))
    }

    /// Tiles the writer holds now (for tests and the gauge).
    pub fn cached_tiles(&self) -> usize {
        self.state.lock().expect("state lock").tiles.len()
    }
}

impl Store for EmbeddedStore {
    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let dims = self.dims();
        if !dims.whole() {
            return Err(StoreError::Config(format!(
                "the canvas is {}x{}, larger than can be held whole: read it in tiles",
                dims.width(),
                dims.height()
            )));
        }
        let (seq, dims, tiles) = self
            .read_tiles(Want::All, false, |k, v| v.map(|v| (k, v.pixels.clone())))
            .await?;
        let board = tiles::compose(
            dims,
            self.depth,
            tiles
                .into_iter()
                .flatten()
                .map(|(k, t)| (TileId::from_key(k), t)),
        );
        Ok(Snapshot { seq, board })
    }

    fn dims(&self) -> Dimensions {
        self.state.lock().expect("state lock").dims
    }

    async fn tile(&self, id: TileId) -> Result<TileRead, StoreError> {
        {
            let st = self.state.lock().expect("state lock");
            if !id.on(st.dims) {
                return Ok(TileRead {
                    through: st.seq,
                    version: Seq(0),
                    pixels: None,
                });
            }
        }
        let (through, _, mut found) = self
            .read_tiles(Want::Keys(vec![id.key()]), false, |_, v| {
                v.map(|v| (v.version, v.pixels.clone()))
            })
            .await?;
        // A tile the writer holds but no committed placement touched yet (version 0) is
        // still unpainted, however it came into the cache.
        let (version, pixels) = match found.pop().flatten() {
            Some((version, pixels)) if version != 0 => (Seq(version), Some(pixels)),
            _ => (Seq(0), None),
        };
        Ok(TileRead {
            through,
            version,
            pixels,
        })
    }

    async fn grow(&self, to: Dimensions) -> Result<Dimensions, StoreError> {
        let (tx, rx) = oneshot::channel();
        let stopped = || StoreError::from(BackendError::Stopped("writer"));
        self.tx
            .send(Cmd::Grow(to, tx))
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    async fn place(&self, p: NewPlacement) -> Result<Placed, PlaceError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Place(p, tx))
            .await
            .map_err(|_| PlaceError::ShuttingDown)?;
        rx.await.map_err(|_| PlaceError::ShuttingDown)?
    }

    fn take_feed(&self) -> Option<mpsc::Receiver<FeedEvent>> {
        self.feed.lock().expect("feed lock").take()
    }

    async fn updates_since(&self, since: Seq, limit: usize) -> Result<Vec<Placement>, StoreError> {
        let head = self.state.lock().expect("state lock").seq;
        if since >= head {
            return Ok(Vec::new());
        }
        let oldest = Seq(head.0.saturating_sub(self.max_catchup));
        if since < oldest {
            return Err(StoreError::Gone { since, oldest });
        }
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT seq, x, y, color, user, ts FROM placements WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )
                .map_err(backend)?;
            stmt.query_map(params![since.0 as i64, limit as i64], row_to_placement)
                .and_then(|rows| rows.collect())
                .map_err(backend)
        })
        .await
    }

    async fn pixel_history(
        &self,
        coord: Coord,
        limit: usize,
    ) -> Result<Vec<Placement>, StoreError> {
        if !self.dims().contains(coord) {
            return Ok(Vec::new());
        }
        let (_, mut found) = self.pixels_at(vec![coord]).await?;
        let head = found.pop().map_or(0, |(_, _, s)| s);
        // Follow the `prev` links from the pixel's last placement, newest first.
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT seq, x, y, color, user, ts, prev FROM placements WHERE seq = ?1",
                )
                .map_err(backend)?;
            let mut out = Vec::with_capacity(limit.min(64));
            let mut next = head;
            while next != 0 && out.len() < limit {
                let (p, prev) = stmt
                    .query_row([next as i64], |r| {
                        Ok((row_to_placement(r)?, r.get::<_, Option<i64>>(6)?))
                    })
                    .map_err(backend)?;
                out.push(p);
                next = prev.unwrap_or(0) as u64;
            }
            Ok(out)
        })
        .await
    }

    async fn next_allowed(&self, user: UserId) -> Result<Option<i64>, StoreError> {
        Ok(self.user_quota(user).await?.next_at_ms())
    }

    async fn user_quota(&self, user: UserId) -> Result<Quota, StoreError> {
        let st = self.state.lock().expect("state lock");
        let state = UserState::new(st.last_placed.get(&user).copied())
            .with_tat(st.charge_tats.get(&user).copied());
        Ok(self.policy.quota(state, now_ms()))
    }

    fn is_ready(&self) -> bool {
        !self.tx.is_closed()
    }

    async fn close(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Cmd::Close(tx)).await.is_ok() {
            rx.await.map_err(|_| BackendError::Stopped("writer"))??;
        }
        let handle = self.writer.lock().expect("writer lock").take();
        if let Some(h) = handle {
            tokio::task::spawn_blocking(move || h.join())
                .await
                .map_err(|_| BackendError::Stopped("writer"))?
                .map_err(|_| BackendError::Stopped("writer thread"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
