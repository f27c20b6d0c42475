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
//! Restart restores the board from the latest snapshot plus the placements after it, the
//! seq from the last row, and the cooldowns from the rows younger than the cooldown.
//!
//! Pixel history without a secondary index: each row carries `prev`, the seq of the
//! placement before it on the same pixel, and memory holds the last seq of every pixel
//! (saved with each snapshot). Inserts then only append to the table's last page; an index
//! on `(y, x)` dirtied one random page per placement, which every commit had to write to
//! the WAL, and cost a third of the server's CPU per placement (see BENCHMARKS.md, b).
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
use rplace_domain::policy::{self, Decision, Now, OnceState, Params, Prior, Refusal, UserState};
use rplace_domain::tile::TILE_SIZE;
use rplace_domain::{
    AddrKey, Board, ColorIndex, Coord, Dimensions, IdempotencyKey, OnceToken, Placement, Seq,
    UserId,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

mod accounts;
mod moderation;
mod records;
mod rewrite;
mod schema;
mod writer;

pub use schema::open_database;
use schema::*;
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
    /// Board size; must match what the data dir already holds.
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
}

/// State the writer changes after each commit and others read.
struct State {
    /// Board with every committed placement applied.
    board: Board,
    /// Last committed seq.
    seq: Seq,
    /// Last accepted placement time of users still inside their cooldown (pruned).
    last_placed: HashMap<UserId, i64>,
    /// Seq of the last placement on each pixel (0: never placed), indexed like the board:
    /// where a pixel's history starts.
    pixel_seq: Vec<u64>,
}

enum Cmd {
    Place(NewPlacement, oneshot::Sender<Result<Placed, PlaceError>>),
    /// Applied between two batches of placements, in the order it arrived.
    Moderate(moderation::ModCmd),
    Close(oneshot::Sender<Result<(), StoreError>>),
    /// One chunk of a moderation change (`rewrite`), committed on its own between batches.
    Rewrite(rewrite::Chunk),
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
            dims: cfg.dims,
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
            writer: Mutex::new(Some(handle)),
        })
    }

    /// Runs `f` on a pooled read connection on the blocking pool.
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
}

impl Store for EmbeddedStore {
    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let st = self.state.lock().expect("state lock");
        Ok(Snapshot {
            seq: st.seq,
            board: st.board.clone(),
        })
    }

    fn dims(&self) -> Dimensions {
        self.state.lock().expect("state lock").board.dims()
    }

    async fn tile(&self, id: TileId) -> Result<TileRead, StoreError> {
        let st = self.state.lock().expect("state lock");
        let dims = st.board.dims();
        if !id.on(dims) {
            return Ok(TileRead {
                through: st.seq,
                version: Seq(0),
                pixels: None,
            });
        }
        let o = id.origin();
        let mut version = 0;
        for y in o.y()..(o.y() + TILE_SIZE).min(dims.height()) {
            for x in o.x()..(o.x() + TILE_SIZE).min(dims.width()) {
                version = version.max(st.pixel_seq[Coord::new_unchecked(x, y).index(dims)]);
            }
        }
        Ok(TileRead {
            through: st.seq,
            version: Seq(version),
            pixels: (version != 0).then(|| st.board.tile(id)),
        })
    }

    async fn grow(&self, _to: Dimensions) -> Result<Dimensions, StoreError> {
        Err(StoreError::Config(
            "this store cannot grow the canvas yet".into(),
        ))
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
        let head = {
            let st = self.state.lock().expect("state lock");
            let dims = st.board.dims();
            if !dims.contains(coord) {
                return Ok(Vec::new());
            }
            st.pixel_seq[coord.index(dims)]
        };
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
        let st = self.state.lock().expect("state lock");
        let now = now_ms();
        Ok(st
            .last_placed
            .get(&user)
            .map(|&last| self.policy.cooldown().next_at(last))
            .filter(|&next| next > now))
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
