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
    now_ms,
};
use rplace_domain::board::Depth;
use rplace_domain::policy::{self, Decision, Now, Params, Prior, Refusal, UserState};
use rplace_domain::{
    AddrKey, Board, ColorIndex, Coord, Dimensions, IdempotencyKey, Placement, Seq, UserId,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

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
    Close(oneshot::Sender<Result<(), StoreError>>),
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

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::from(e)
}

/// Schema versions, applied in order and recorded in `PRAGMA user_version`.
const MIGRATIONS: &[&str] = &[
    // 1: the log, a single board snapshot and the board's shape.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
     CREATE TABLE placements (
         seq INTEGER PRIMARY KEY,
         x INTEGER NOT NULL,
         y INTEGER NOT NULL,
         color INTEGER NOT NULL,
         user INTEGER NOT NULL,
         ts INTEGER NOT NULL
     );
     CREATE INDEX placements_pixel ON placements (y, x, seq);
     CREATE TABLE snapshot (
         id INTEGER PRIMARY KEY CHECK (id = 1),
         seq INTEGER NOT NULL,
         board BLOB NOT NULL
     );",
    // 2: history by `prev` links instead of an index (see the module docs), and the
    //    per-pixel last seq in the snapshot (NULL in older snapshots: restore rescans).
    "ALTER TABLE placements ADD COLUMN prev INTEGER;
     UPDATE placements SET prev = (
         SELECT max(p.seq) FROM placements p
         WHERE p.y = placements.y AND p.x = placements.x AND p.seq < placements.seq);
     DROP INDEX placements_pixel;
     ALTER TABLE snapshot ADD COLUMN pixel_seq BLOB;",
    // 3: the first outcome of each idempotency key, written with its placement.
    "CREATE TABLE idempotency (
         user INTEGER NOT NULL,
         key TEXT NOT NULL,
         seq INTEGER NOT NULL,
         at INTEGER NOT NULL,
         next_at INTEGER NOT NULL,
         PRIMARY KEY (user, key)
     ) WITHOUT ROWID;
     CREATE INDEX idempotency_at ON idempotency (at);",
];

/// zstd level for the per-pixel seqs in a snapshot: fast, since the writer pauses for it.
const PIXEL_SEQ_LEVEL: i32 = 1;

fn encode_pixel_seq(seqs: &[u64]) -> Result<Vec<u8>, StoreError> {
    use std::io::Write;
    let fail = StoreError::from;
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), PIXEL_SEQ_LEVEL).map_err(fail)?;
    // Chunk by chunk, so the raw bytes (8 per pixel) are never all in memory at once.
    let mut chunk = Vec::with_capacity(8 * 8192);
    for part in seqs.chunks(8192) {
        chunk.clear();
        chunk.extend(part.iter().flat_map(|s| s.to_le_bytes()));
        enc.write_all(&chunk).map_err(fail)?;
    }
    enc.finish().map_err(fail)
}

fn decode_pixel_seq(blob: &[u8], pixels: usize) -> Result<Vec<u64>, StoreError> {
    use std::io::Read;
    let fail = StoreError::from;
    let mut dec = zstd::stream::read::Decoder::new(blob).map_err(fail)?;
    let mut out = Vec::with_capacity(pixels);
    let mut chunk = vec![0u8; 8 * 8192];
    while out.len() < pixels {
        let n = (pixels - out.len()).min(8192);
        dec.read_exact(&mut chunk[..8 * n]).map_err(fail)?;
        out.extend(
            chunk[..8 * n]
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))),
        );
    }
    if dec.read(&mut chunk[..1]).map_err(fail)? != 0 {
        return Err(BackendError::Corrupt(format!(
            "snapshot pixel seqs hold more than the {pixels} pixels of the board"
        ))
        .into());
    }
    Ok(out)
}

fn open_write(cfg: &EmbeddedConfig, path: &PathBuf) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(backend)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(backend)?;
    let sync = match cfg.sync {
        SyncMode::Full => "FULL",
        SyncMode::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)
        .map_err(backend)?;
    // A checkpoint runs inside the commit that crosses the threshold and stalls that batch:
    // fewer, larger ones than the default 1,000 pages.
    conn.pragma_update(None, "wal_autocheckpoint", 10_000)
        .map_err(backend)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(backend)?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(backend)?;
    for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        conn.execute_batch(&format!(
            "BEGIN; {m}; PRAGMA user_version = {}; COMMIT;",
            i + 1
        ))
        .map_err(backend)?;
    }
    Ok(conn)
}

/// Records the board's shape on first use and refuses a data dir made for another shape.
fn check_shape(conn: &Connection, cfg: &EmbeddedConfig) -> Result<(), StoreError> {
    let want = [
        ("width", cfg.dims.width() as i64),
        ("height", cfg.dims.height() as i64),
        ("bits_per_pixel", cfg.depth.bits() as i64),
    ];
    for (key, value) in want {
        let have: Option<i64> = conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(backend)?;
        match have {
            None => {
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                    params![key, value],
                )
                .map_err(backend)?;
            }
            Some(h) if h != value => {
                return Err(StoreError::Config(format!(
                    "the data dir {} holds a board with {key} = {h}, but this start asks for {value}; \
                     start with the same size and palette depth, or use another --data-dir",
                    cfg.data_dir.display()
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Rebuilds the committed state from the snapshot and the log after it.
fn restore(conn: &Connection, cfg: &EmbeddedConfig) -> Result<State, StoreError> {
    let started = Instant::now();
    let snap: Option<(i64, Vec<u8>, Option<Vec<u8>>)> = conn
        .query_row(
            "SELECT seq, board, pixel_seq FROM snapshot WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(backend)?;
    let pixels = cfg.dims.pixels();
    let (mut seq, mut board, pixel_seq) = match snap {
        Some((seq, bytes, pixel_seq)) => (
            Seq(seq as u64),
            Board::from_bytes(cfg.dims, cfg.depth, bytes)
                .map_err(|e| BackendError::Corrupt(format!("snapshot board: {e}")))?,
            pixel_seq
                .map(|blob| decode_pixel_seq(&blob, pixels))
                .transpose()?,
        ),
        None => (Seq(0), Board::new(cfg.dims, cfg.depth), None),
    };
    let snapshot_seq = seq;
    // A snapshot from before migration 2 has no pixel seqs: read them from the whole log.
    let scan_from = if pixel_seq.is_some() { seq } else { Seq(0) };
    let mut pixel_seq = pixel_seq.unwrap_or_else(|| vec![0; pixels]);
    let mut replayed = 0u64;
    {
        let mut stmt = conn
            .prepare("SELECT seq, x, y, color FROM placements WHERE seq > ?1 ORDER BY seq")
            .map_err(backend)?;
        let mut rows = stmt.query([scan_from.0 as i64]).map_err(backend)?;
        while let Some(r) = rows.next().map_err(backend)? {
            let s = Seq(r.get::<_, i64>(0).map_err(backend)? as u64);
            // A row off this board is a corrupt database, not a panic in `Board::set`.
            let (x, y) = (
                r.get::<_, i64>(1).map_err(backend)?,
                r.get::<_, i64>(2).map_err(backend)?,
            );
            let coord = cfg.dims.coord(x, y).map_err(|e| {
                StoreError::Backend(BackendError::Corrupt(format!("placement {}: {e}", s.0)))
            })?;
            pixel_seq[coord.index(cfg.dims)] = s.0;
            if s > snapshot_seq {
                board.set(
                    coord,
                    ColorIndex::new_unchecked(r.get::<_, i64>(3).map_err(backend)? as u8),
                );
                seq = s;
                replayed += 1;
            }
        }
    }
    let mut last_placed = HashMap::new();
    let cooldown = cfg.policy.cooldown();
    if cooldown.as_millis() > 0 {
        let cutoff = now_ms() - cooldown.as_millis();
        let mut stmt = conn
            .prepare("SELECT user, ts FROM placements ORDER BY seq DESC")
            .map_err(backend)?;
        let mut rows = stmt.query([]).map_err(backend)?;
        while let Some(r) = rows.next().map_err(backend)? {
            let ts: i64 = r.get(1).map_err(backend)?;
            if ts < cutoff {
                break;
            }
            let user = UserId(r.get::<_, i64>(0).map_err(backend)? as u64);
            last_placed.entry(user).or_insert(ts);
        }
    }
    tracing::info!(
        seq = seq.0,
        replayed,
        cooldowns = last_placed.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "embedded store restored"
    );
    Ok(State {
        board,
        seq,
        last_placed,
        pixel_seq,
    })
}

fn open_reader(path: &PathBuf) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(backend)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(backend)?;
    Ok(conn)
}

fn row_to_placement(r: &rusqlite::Row<'_>) -> rusqlite::Result<Placement> {
    Ok(Placement {
        seq: Seq(r.get::<_, i64>(0)? as u64),
        // Read back from rows that went through `Dimensions::coord` when placed.
        coord: Coord::new_unchecked(r.get::<_, i64>(1)? as u16, r.get::<_, i64>(2)? as u16),
        color: ColorIndex::new_unchecked(r.get::<_, i64>(3)? as u8),
        user: UserId(r.get::<_, i64>(4)? as u64),
        at_ms: r.get(5)?,
    })
}

/// Opens (or creates) the database of `cfg.data_dir` with the current schema and checks its
/// shape, without starting a store: for tools that fill a data dir directly (the load
/// generator's `make-history`).
pub fn open_database(cfg: &EmbeddedConfig) -> Result<Connection, StoreError> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| {
        StoreError::Config(format!(
            "cannot create data dir {}: {e}",
            cfg.data_dir.display()
        ))
    })?;
    let conn = open_write(cfg, &cfg.data_dir.join(DB_FILE))?;
    check_shape(&conn, cfg)?;
    Ok(conn)
}

/// The database file inside the data dir.
const DB_FILE: &str = "rplace.sqlite3";

impl EmbeddedStore {
    /// Opens (or creates) the store in `cfg.data_dir`, restores its state and starts the
    /// writer thread.
    pub fn open(cfg: EmbeddedConfig) -> Result<Self, StoreError> {
        let path = cfg.data_dir.join(DB_FILE);
        let conn = open_database(&cfg)?;
        let state = Arc::new(Mutex::new(restore(&conn, &cfg)?));
        let (tx, rx) = mpsc::channel(QUEUE);
        let (feed_tx, feed_rx) = crate::feed_queue::channel(crate::FEED_CAPACITY);
        let writer = Writer {
            conn,
            state: state.clone(),
            feed: feed_tx,
            policy: cfg.policy,
            addrs: AddrStates::default(),
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

/// The writer thread's own state.
struct Writer {
    /// The only connection that writes.
    conn: Connection,
    /// Shared committed state, updated after each commit.
    state: Arc<Mutex<State>>,
    /// Where committed placements go, in seq order; bounded, with a reset on overflow.
    feed: FeedSender,
    /// The rules to apply.
    policy: Params,
    /// Per-address policy state; only this thread reads and writes it.
    addrs: AddrStates,
    /// How long an idempotency record answers repeats, ms.
    idempotency_window_ms: i64,
    /// When expired idempotency records were last deleted.
    pruned_at: Instant,
    /// Board shape, to index `State::pixel_seq`.
    dims: Dimensions,
    /// Snapshot cadence, in placements.
    snapshot_every: u64,
    /// Placements committed since the last snapshot.
    since_snapshot: u64,
    /// Last timestamp handed out, so timestamps never go backwards with seq.
    last_ts: i64,
}

impl Writer {
    /// Sends the reset the feed owes, if there is room now; `true` when none is owed.
    fn flush_reset(&mut self) -> bool {
        let state = &self.state;
        self.feed.try_reset(|| {
            let st = state.lock().expect("state lock");
            Snapshot {
                seq: st.seq,
                board: st.board.clone(),
            }
        })
    }

    /// The next command. While the feed owes a reset it polls, so the reset goes out as
    /// soon as the hub makes room even when no placement comes.
    fn next_cmd(&mut self, rx: &mut mpsc::Receiver<Cmd>) -> Option<Cmd> {
        loop {
            if self.flush_reset() {
                return rx.blocking_recv();
            }
            match rx.try_recv() {
                Ok(cmd) => return Some(cmd),
                Err(mpsc::error::TryRecvError::Empty) => std::thread::sleep(RESET_RETRY),
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
            }
        }
    }

    fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            let Some(first) = self.next_cmd(&mut rx) else {
                // Every handle is gone without a close: still leave a snapshot behind.
                let _ = self.snapshot();
                return;
            };
            let mut close = None;
            match first {
                Cmd::Place(p, tx) => batch.push((p, tx)),
                Cmd::Close(tx) => close = Some(tx),
            }
            let mut drain = |batch: &mut Vec<_>, close: &mut Option<_>| {
                while close.is_none() && batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(Cmd::Place(p, tx)) => batch.push((p, tx)),
                        Ok(Cmd::Close(tx)) => *close = Some(tx),
                        Err(_) => break,
                    }
                }
            };
            drain(&mut batch, &mut close);
            // Under load, wait a moment for more, so that one commit (one WAL write, one
            // fsync, one wake-up of this thread) serves more placements. A lone placement
            // does not wait.
            if batch.len() >= LINGER_FROM && close.is_none() {
                std::thread::sleep(LINGER);
                drain(&mut batch, &mut close);
            }
            if !batch.is_empty() {
                self.commit_batch(&mut batch);
            }
            if self.since_snapshot >= self.snapshot_every
                && let Err(e) = self.snapshot()
            {
                tracing::error!(error = %e, "board snapshot failed; will retry");
            }
            if let Some(tx) = close {
                rx.close();
                // Requests that raced the close are answered, not dropped.
                while let Ok(cmd) = rx.try_recv() {
                    if let Cmd::Place(p, tx) = cmd {
                        batch.push((p, tx));
                    }
                }
                if !batch.is_empty() {
                    self.commit_batch(&mut batch);
                }
                let res = self.snapshot().and_then(|_| {
                    self.conn
                        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                        .map_err(backend)
                });
                let _ = tx.send(res);
                return;
            }
        }
    }

    /// The first outcome of `key` for `user`, if it is younger than the window.
    fn idempotent_outcome(
        &self,
        user: UserId,
        key: &IdempotencyKey,
        now_ms: i64,
    ) -> Result<Option<Placed>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, at, next_at FROM idempotency WHERE user = ?1 AND key = ?2 AND at >= ?3",
            )
            .map_err(backend)?;
        stmt.query_row(
            params![
                user.0 as i64,
                key.as_str(),
                now_ms - self.idempotency_window_ms
            ],
            |r| {
                Ok(Placed {
                    seq: Seq(r.get::<_, i64>(0)? as u64),
                    at_ms: r.get(1)?,
                    next_at_ms: r.get(2)?,
                    replayed: true,
                })
            },
        )
        .optional()
        .map_err(backend)
    }

    /// Decides, commits and answers one batch.
    fn commit_batch(
        &mut self,
        batch: &mut Vec<(NewPlacement, oneshot::Sender<Result<Placed, PlaceError>>)>,
    ) {
        let started = Instant::now();
        let clock_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        let now = Now::not_before_ms(clock_us, self.last_ts);
        let now_ms = now.millis();
        let mut decided = Vec::with_capacity(batch.len());
        // Placements in one batch are decided as if one by one: later ones see the state
        // that earlier ones leave, which is stored only once the commit succeeds.
        let mut users: HashMap<UserId, UserState> = HashMap::new();
        let mut addrs: HashMap<AddrKey, policy::AddrState> = HashMap::new();
        let mut keys: HashMap<(UserId, IdempotencyKey), Placed> = HashMap::new();
        // Pixels placed twice in one batch: the second links to the first.
        let mut pixel_in_batch: HashMap<usize, Seq> = HashMap::new();
        let mut accepted = Vec::with_capacity(batch.len());
        let mut prevs = Vec::with_capacity(batch.len());
        let mut records = Vec::new();
        // Earlier outcomes of the keys in this batch, read before the state lock is taken
        // so that readers of the state never wait behind these queries.
        let mut earlier: HashMap<
            (UserId, IdempotencyKey),
            Result<Option<Placed>, Arc<BackendError>>,
        > = HashMap::new();
        for (p, _) in batch.iter() {
            if let Some(key) = p.idempotency_key {
                earlier.entry((p.user, key)).or_insert_with(|| {
                    self.idempotent_outcome(p.user, &key, now_ms)
                        .map_err(|e| Arc::new(BackendError::from(e)))
                });
            }
        }
        if let Some(Err(e)) = earlier.values().find(|r| r.is_err()) {
            tracing::error!(error = %Chain(&**e), "idempotency lookup failed");
        }
        let seq = {
            let st = self.state.lock().expect("state lock");
            let mut seq = st.seq;
            for (p, _) in batch.iter() {
                // A repeat of a key is answered before any rule: it is not a new attempt.
                if let Some(key) = p.idempotency_key {
                    let first = match keys.get(&(p.user, key)) {
                        Some(placed) => Some(*placed),
                        None => match &earlier[&(p.user, key)] {
                            Ok(found) => *found,
                            Err(e) => {
                                decided.push(Err(PlaceError::Unavailable(BackendError::Shared(
                                    e.clone(),
                                ))));
                                continue;
                            }
                        },
                    };
                    if let Some(placed) = first {
                        decided.push(Ok(Placed {
                            replayed: true,
                            ..placed
                        }));
                        continue;
                    }
                }
                let user = users
                    .get(&p.user)
                    .copied()
                    .unwrap_or_else(|| UserState::new(st.last_placed.get(&p.user).copied()));
                // The address rule reads (and changes) its state only when it applies, so
                // the load generator's path and a canvas without the limit skip the map.
                let addr_key = (!p.bypass_limits && !self.policy.addr_rate().is_off())
                    .then(|| self.policy.addr_key(p.ip));
                let addr = addr_key.map_or_else(policy::AddrState::default, |k| {
                    addrs.get(&k).copied().unwrap_or_else(|| self.addrs.get(&k))
                });
                let prior = Prior::new(user, addr, p.bypass_limits);
                match policy::decide(&self.policy, &prior, now) {
                    Decision::Accept(a) => {
                        seq = seq.next();
                        users.insert(p.user, a.user());
                        if let Some(k) = addr_key {
                            addrs.insert(k, a.addr());
                        }
                        let pixel = p.coord.index(self.dims);
                        let prev = pixel_in_batch
                            .insert(pixel, seq)
                            .map_or(st.pixel_seq[pixel], |s| s.0);
                        prevs.push(prev);
                        accepted.push(Placement {
                            seq,
                            coord: p.coord,
                            color: p.color,
                            user: p.user,
                            at_ms: a.at_ms(),
                        });
                        let placed = Placed {
                            seq,
                            at_ms: a.at_ms(),
                            next_at_ms: a.next_at_ms(),
                            replayed: false,
                        };
                        if let Some(key) = p.idempotency_key {
                            keys.insert((p.user, key), placed);
                            records.push((p.user, key, placed));
                        }
                        decided.push(Ok(placed));
                    }
                    Decision::Refuse(Refusal::Cooldown { next_at_ms }) => {
                        decided.push(Err(PlaceError::Cooldown { next_at_ms }))
                    }
                    Decision::Refuse(Refusal::RateLimited { retry_after_ms }) => {
                        decided.push(Err(PlaceError::RateLimited { retry_after_ms }))
                    }
                }
            }
            seq
        };
        let outcome = if accepted.is_empty() {
            Ok(())
        } else {
            self.insert(&accepted, &prevs, &records)
        };
        match outcome {
            Ok(()) => {
                for (key, state) in addrs {
                    self.addrs.set(key, state, now);
                }
                if !accepted.is_empty() {
                    let mut st = self.state.lock().expect("state lock");
                    for a in &accepted {
                        st.board.set(a.coord, a.color);
                        st.pixel_seq[a.coord.index(self.dims)] = a.seq.0;
                    }
                    for (user, state) in users {
                        if let Some(last) = state.last_ms() {
                            st.last_placed.insert(user, last);
                        }
                    }
                    st.seq = seq;
                    if st.last_placed.len() > 100_000 {
                        let cutoff = now_ms - self.policy.cooldown().as_millis();
                        st.last_placed.retain(|_, &mut t| t >= cutoff);
                    }
                    drop(st);
                    self.last_ts = now_ms;
                    self.since_snapshot += accepted.len() as u64;
                    metrics::counter!("rplace_store_placements_committed_total")
                        .increment(accepted.len() as u64);
                    self.feed.placements(accepted);
                }
                for ((_, tx), d) in batch.drain(..).zip(decided) {
                    let _ = tx.send(d);
                }
            }
            Err(e) => {
                tracing::error!(error = %Chain(&e), "commit failed; rejecting the batch");
                let e = Arc::new(e);
                metrics::counter!("rplace_store_commit_failures_total").increment(1);
                for ((_, tx), d) in batch.drain(..).zip(decided) {
                    let _ = tx.send(match d {
                        Ok(_) => Err(PlaceError::Unavailable(BackendError::Shared(e.clone()))),
                        Err(rejected) => Err(rejected),
                    });
                }
            }
        }
        self.prune_idempotency(now_ms);
        metrics::histogram!("rplace_store_commit_seconds").record(started.elapsed().as_secs_f64());
    }

    /// Deletes idempotency records older than the window, at most every few seconds.
    fn prune_idempotency(&mut self, now_ms: i64) {
        if self.pruned_at.elapsed() < PRUNE_EVERY {
            return;
        }
        self.pruned_at = Instant::now();
        if let Err(e) = self
            .conn
            .execute(
                "DELETE FROM idempotency WHERE at < ?1",
                [now_ms - self.idempotency_window_ms],
            )
            .map_err(BackendError::from)
        {
            tracing::warn!(error = %e, "pruning idempotency records failed; will retry");
        }
    }

    /// Inserts `rows`, each with the seq of the placement before it on its pixel, and the
    /// idempotency records of those that carried a key, in one transaction.
    fn insert(
        &mut self,
        rows: &[Placement],
        prevs: &[u64],
        records: &[(UserId, IdempotencyKey, Placed)],
    ) -> Result<(), BackendError> {
        let tx = self.conn.transaction().map_err(BackendError::from)?;
        {
            let mut stmt = tx
                .prepare_cached("INSERT INTO placements (seq, x, y, color, user, ts, prev) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
                .map_err(BackendError::from)?;
            for (p, &prev) in rows.iter().zip(prevs) {
                stmt.execute(params![
                    p.seq.0 as i64,
                    p.coord.x(),
                    p.coord.y(),
                    p.color.get(),
                    p.user.0 as i64,
                    p.at_ms,
                    (prev != 0).then_some(prev as i64)
                ])
                .map_err(BackendError::from)?;
            }
        }
        if !records.is_empty() {
            // REPLACE: a record past the window that pruning has not reached yet.
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO idempotency (user, key, seq, at, next_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(BackendError::from)?;
            for (user, key, placed) in records {
                stmt.execute(params![
                    user.0 as i64,
                    key.as_str(),
                    placed.seq.0 as i64,
                    placed.at_ms,
                    placed.next_at_ms
                ])
                .map_err(BackendError::from)?;
            }
        }
        tx.commit().map_err(BackendError::from)
    }

    fn snapshot(&mut self) -> Result<(), StoreError> {
        // Only the writer changes the state, so compressing outside the lock is consistent.
        let (seq, bytes, pixel_seq) = {
            let st = self.state.lock().expect("state lock");
            (st.seq, st.board.as_bytes().to_vec(), st.pixel_seq.clone())
        };
        let pixel_seq = encode_pixel_seq(&pixel_seq)?;
        self.conn
            .execute(
                "INSERT INTO snapshot (id, seq, board, pixel_seq) VALUES (1, ?1, ?2, ?3) \
                 ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, board = excluded.board, \
                 pixel_seq = excluded.pixel_seq",
                params![seq.0 as i64, bytes, pixel_seq],
            )
            .map_err(backend)?;
        self.since_snapshot = 0;
        tracing::debug!(seq = seq.0, "board snapshot written");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rplace_domain::Cooldown;
    use rplace_domain::policy::AddrRate;
    use std::net::Ipv4Addr;

    fn cfg(dir: &std::path::Path) -> EmbeddedConfig {
        EmbeddedConfig {
            data_dir: dir.to_path_buf(),
            dims: Dimensions::parse(8, 4).unwrap(),
            depth: Depth::Four,
            policy: Params::new(
                Cooldown::from_secs(60),
                AddrRate::OFF,
                rplace_domain::Ipv6Prefix::DEFAULT,
            ),
            idempotency_window: Duration::from_secs(600),
            sync: SyncMode::Normal,
            snapshot_every: 3,
            max_catchup: 1000,
        }
    }

    fn new(x: u16, user: u64) -> NewPlacement {
        NewPlacement {
            coord: Coord::new_unchecked(x, 1),
            color: ColorIndex::new_unchecked(5),
            user: UserId(user),
            ip: Ipv4Addr::LOCALHOST.into(),
            bypass_limits: false,
            idempotency_key: None,
        }
    }

    /// A hub that stops reading costs at most the feed queue: the placements past it are
    /// dropped and it gets one reset (the board at the newest seq) once it reads again.
    #[tokio::test]
    async fn a_feed_nobody_reads_stays_bounded_and_resets() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(cfg(dir.path())).unwrap();
        let mut feed = store.take_feed().unwrap();
        let total = crate::FEED_CAPACITY as u64 + 20;
        for i in 0..total {
            let mut p = new((i % 8) as u16, i);
            p.bypass_limits = true;
            store.place(p).await.unwrap();
        }
        let mut next = 1;
        let reset = loop {
            match tokio::time::timeout(std::time::Duration::from_secs(20), feed.recv())
                .await
                .expect("the feed goes on")
                .unwrap()
            {
                FeedEvent::Placements(ps) => {
                    for p in ps {
                        assert_eq!(p.seq, Seq(next));
                        next += 1;
                    }
                }
                FeedEvent::Reset(s) => break s,
            }
        };
        assert_eq!(
            next - 1,
            crate::FEED_CAPACITY as u64,
            "the queue held its capacity"
        );
        let now = store.snapshot().await.unwrap();
        assert_eq!((reset.seq, &reset.board), (Seq(total), &now.board));
        // After the reset, placements flow again.
        let mut p = new(0, 0);
        p.bypass_limits = true;
        store.place(p).await.unwrap();
        match feed.recv().await.unwrap() {
            FeedEvent::Placements(ps) => assert_eq!(ps[0].seq, Seq(total + 1)),
            FeedEvent::Reset(_) => panic!("one reset only"),
        }
    }

    #[tokio::test]
    async fn places_persists_and_restores() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(cfg(dir.path())).unwrap();
        let mut feed = store.take_feed().unwrap();
        assert!(store.take_feed().is_none());
        for i in 0..5u16 {
            let placed = store.place(new(i, i as u64)).await.unwrap();
            assert_eq!(placed.seq, Seq(i as u64 + 1));
        }
        assert!(matches!(
            store.place(new(7, 0)).await,
            Err(PlaceError::Cooldown { .. })
        ));
        let mut seen = Vec::new();
        while seen.len() < 5 {
            match feed.recv().await.unwrap() {
                FeedEvent::Placements(p) => seen.extend(p),
                FeedEvent::Reset(_) => panic!("no reset expected"),
            }
        }
        assert_eq!(
            seen.iter().map(|p| p.seq.0).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        let ups = store.updates_since(Seq(3), 100).await.unwrap();
        assert_eq!(ups.len(), 2);
        let hist = store
            .pixel_history(Coord::new_unchecked(2, 1), 5)
            .await
            .unwrap();
        assert_eq!(hist[0].user, UserId(2));
        let before = store.snapshot().await.unwrap();
        // Drop without close: the restore must still see every committed row.
        drop(store);
        let again = EmbeddedStore::open(cfg(dir.path())).unwrap();
        let after = again.snapshot().await.unwrap();
        assert_eq!(after.seq, Seq(5));
        assert_eq!(after.board, before.board);
        assert!(again.next_allowed(UserId(3)).await.unwrap().is_some());
        assert!(matches!(
            again.place(new(7, 4)).await,
            Err(PlaceError::Cooldown { .. })
        ));
        again.close().await.unwrap();
    }

    fn seqs(h: &[Placement]) -> Vec<u64> {
        h.iter().map(|p| p.seq.0).collect()
    }

    #[tokio::test]
    async fn pixel_history_follows_links_across_snapshots_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(cfg(dir.path())).unwrap();
        // Seqs 1..=7 alternate between pixels (2,1) and (3,1); snapshot_every = 3 puts
        // snapshots in between.
        for user in 1..=7u64 {
            store
                .place(new(if user % 2 == 1 { 2 } else { 3 }, user))
                .await
                .unwrap();
        }
        let at = |x| Coord::new_unchecked(x, 1);
        assert_eq!(
            seqs(&store.pixel_history(at(2), 10).await.unwrap()),
            [7, 5, 3, 1]
        );
        assert_eq!(seqs(&store.pixel_history(at(3), 2).await.unwrap()), [6, 4]);
        assert!(store.pixel_history(at(4), 10).await.unwrap().is_empty());
        assert!(store.pixel_history(at(9), 10).await.unwrap().is_empty());
        drop(store);
        // Restart from the last snapshot (seq 6) plus replay, then place on top.
        let again = EmbeddedStore::open(cfg(dir.path())).unwrap();
        again.place(new(3, 8)).await.unwrap();
        let hist = again.pixel_history(at(3), 10).await.unwrap();
        assert_eq!(seqs(&hist), [8, 6, 4, 2]);
        assert_eq!(hist[0].user, UserId(8));
        assert_eq!(
            seqs(&again.pixel_history(at(2), 10).await.unwrap()),
            [7, 5, 3, 1]
        );
        again.close().await.unwrap();
    }

    /// A row off the board (a database edited by hand, or from a larger canvas) is
    /// reported as corrupt when the store opens, not a panic in `Board::set`.
    #[tokio::test]
    async fn a_placement_row_off_the_board_is_corrupt_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(cfg(dir.path())).unwrap();
        store.place(new(1, 1)).await.unwrap();
        store.close().await.unwrap();
        drop(store);
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        // After the close's snapshot, so that the opening store replays it.
        conn.execute(
            "INSERT INTO placements (seq, x, y, color, user, ts) VALUES (2, 500, 1, 5, 2, ?1)",
            [now_ms()],
        )
        .unwrap();
        drop(conn);
        let err = EmbeddedStore::open(cfg(dir.path())).err().expect("refused");
        assert!(
            matches!(err, StoreError::Backend(BackendError::Corrupt(_))),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_version_1_data_dir_is_migrated_with_its_history() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path());
        {
            // What the first schema left: an index instead of links, a snapshot without
            // pixel seqs (taken at seq 2), and rows after it.
            let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
            conn.execute_batch(&format!("{}; PRAGMA user_version = 1;", MIGRATIONS[0]))
                .unwrap();
            check_shape(&conn, &c).unwrap();
            let old = now_ms() - 3_600_000;
            for (seq, x) in [(1, 2), (2, 3), (3, 2), (4, 2)] {
                conn.execute(
                    "INSERT INTO placements (seq, x, y, color, user, ts) VALUES (?1, ?2, 1, 5, ?1, ?3)",
                    params![seq, x, old + seq],
                )
                .unwrap();
            }
            let mut board = Board::new(c.dims, c.depth);
            for x in [2, 3] {
                board.set(Coord::new_unchecked(x, 1), ColorIndex::new_unchecked(5));
            }
            conn.execute(
                "INSERT INTO snapshot (id, seq, board) VALUES (1, 2, ?1)",
                [board.as_bytes()],
            )
            .unwrap();
        }
        let store = EmbeddedStore::open(c).unwrap();
        let at = |x| Coord::new_unchecked(x, 1);
        assert_eq!(
            seqs(&store.pixel_history(at(2), 10).await.unwrap()),
            [4, 3, 1]
        );
        assert_eq!(seqs(&store.pixel_history(at(3), 10).await.unwrap()), [2]);
        assert_eq!(store.place(new(3, 9)).await.unwrap().seq, Seq(5));
        assert_eq!(seqs(&store.pixel_history(at(3), 10).await.unwrap()), [5, 2]);
        store.close().await.unwrap();
    }

    #[test]
    fn pixel_seqs_round_trip_and_must_fit_the_board() {
        let seqs: Vec<u64> = (0..20_000u64).map(|i| i * i * 7919 % 1_000_003).collect();
        let blob = encode_pixel_seq(&seqs).unwrap();
        assert_eq!(decode_pixel_seq(&blob, seqs.len()).unwrap(), seqs);
        assert!(decode_pixel_seq(&blob, seqs.len() + 1).is_err());
        assert!(decode_pixel_seq(&blob, seqs.len() - 1).is_err());
        assert!(decode_pixel_seq(b"not zstd", 4).is_err());
    }

    #[tokio::test]
    async fn refuses_a_data_dir_of_another_size() {
        let dir = tempfile::tempdir().unwrap();
        EmbeddedStore::open(cfg(dir.path()))
            .unwrap()
            .close()
            .await
            .unwrap();
        let mut other = cfg(dir.path());
        other.dims = Dimensions::parse(9, 4).unwrap();
        let err = EmbeddedStore::open(other).err().unwrap();
        assert!(err.to_string().contains("width = 8"), "{err}");
    }

    #[tokio::test]
    async fn too_old_catch_up_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path());
        c.max_catchup = 2;
        c.policy = Params::new(
            Cooldown::from_secs(0),
            AddrRate::OFF,
            rplace_domain::Ipv6Prefix::DEFAULT,
        );
        let store = EmbeddedStore::open(c).unwrap();
        for i in 0..5 {
            store.place(new(i, 1)).await.unwrap();
        }
        assert!(matches!(
            store.updates_since(Seq(1), 10).await,
            Err(StoreError::Gone { .. })
        ));
        assert_eq!(store.updates_since(Seq(3), 10).await.unwrap().len(), 2);
    }
}
