//! The history in PostgreSQL: every accepted placement, the tile snapshots that make a
//! rebuild fast, and the one-row state that fences writers across rebuilds.
//!
//! # Tables
//! - `placements (seq PK, x, y, color, user_id, ts)`: the log, `x` and `y` `integer`
//!   (u32 coordinates up to 2^22; migration 2). Written idempotently
//!   (`ON CONFLICT (seq) DO NOTHING`), because the writer of the placing instance and the
//!   reconciler of any instance may both write one placement. `(x, y, seq DESC)` serves
//!   pixel history; a BRIN index on `ts` serves time ranges at a fraction of a B-tree's
//!   size and write cost, as `ts` grows with `seq` and rows arrive in that order.
//! - `tile_snapshots ((tx, ty) PK, seq, version, pixels)`: one row per painted tile, its
//!   packed [`rplace_domain::Tile`] after every placement up to `seq` (and `version`, the
//!   seq of its last placement), derived from `placements` alone. A snapshot round at the
//!   watermark rewrites only the tiles placed on since the previous round, and then sets
//!   `rplace_state.snapshot_seq`; so every tile is exact at `snapshot_seq`, and a rebuild
//!   replays only the rows after it, each onto its tile if newer than the tile's `seq`.
//!   Nothing is board-sized, so a 2^22² canvas costs what is painted.
//! - `rplace_state (epoch, durable_seq, snapshot_seq)`: `epoch` is the generation of the
//!   Redis state.
//!   A rebuild bumps it under `FOR UPDATE`; every write checks it under `FOR SHARE` in the
//!   same transaction. So a placement made on a Redis state that a rebuild has replaced
//!   can never land here after the rebuild read the log, and one that landed before is
//!   in the rebuilt board. `durable_seq` is the reconciler's watermark: every placement
//!   up to it that will ever be in this table is in it.
//! - `rplace_meta`: the canvas's size (it only grows: [`History::grow`], and a start with
//!   a larger size) and bit depth (a database made for another depth is refused).
//! - `tile_keyframes`, `keyframe_marks`: the past canvas's keyframes (`past.rs`, the
//!   design in [`crate::past`]), built from `placements` in the background.
//! - `schema_migrations`: applied migration versions. Migrations run under a session
//!   advisory lock, so instances starting together apply each one exactly once.

mod export;
mod past;
mod schema;
mod snapshots;

use super::copy_rows::CopyRows;
use crate::{BackendError, Service, StoreError};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures_util::{StreamExt, pin_mut};
use rplace_domain::board::Depth;
use rplace_domain::{ColorIndex, Coord, Dimensions, Placement, Seq, Tile, TileId, UserId};
use schema::{check_shape, migrate};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_postgres::NoTls;

/// Advisory lock held while migrations run (`rplace` + 1).
const MIGRATION_LOCK: i64 = 0x72_70_6c_61_63_65_00_01;
/// Advisory lock of the snapshot writer, so one instance at a time builds one (`rplace` + 2).
const SNAPSHOT_LOCK: i64 = 0x72_70_6c_61_63_65_00_02;
/// Advisory lock of the reconciler, so one instance at a time copies the stream (`rplace` + 3).
const RECONCILE_LOCK: i64 = 0x72_70_6c_61_63_65_00_03;
/// Bound of the long operations (a rebuild's replay of the whole history, a snapshot),
/// which the short per-call timeout would cut off on a large board.
const LONG_TIMEOUT: Duration = Duration::from_secs(600);
/// Bound of one step of an admin's rewrite (a chunk's script in Redis, its rows in
/// PostgreSQL): thousands of pixels at once, rare, and worse failed half done than slow.
pub(crate) const REWRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Tiles read, rebuilt or written at once by a rebuild or a snapshot round, bounding its
/// memory (256 tiles of 64 KiB at most) however much of the canvas is painted.
const TILE_PAGE: usize = 256;

pub(super) fn pg(e: tokio_postgres::Error) -> StoreError {
    StoreError::from(e)
}

fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    StoreError::from(e)
}

fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Backend(BackendError::Corrupt(what.into()))
}

pub(super) fn to_time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

pub(super) fn from_time(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What became of a batch written under one epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Written {
    /// Every row is in the table, except those listed: another placement already holds
    /// their seq, so the Redis state they were made on had diverged from the history.
    Stored { conflicts: Vec<Seq> },
    /// The epoch moved on: a rebuild replaced the Redis state these were made on, and
    /// none of them was written.
    Stale,
}

/// The state a rebuild read from the history (its tiles went to the sink).
#[derive(Debug, Clone)]
pub(crate) struct Rebuilt {
    /// The new generation, already committed.
    pub epoch: u64,
    /// The newest seq in the history (0 when empty).
    pub seq: Seq,
    /// The canvas's size the history records.
    pub dims: Dimensions,
    /// Time of the newest placement, unix ms (0 when empty).
    pub last_ms: i64,
    /// Rows replayed on top of the tile snapshots.
    pub replayed: u64,
    /// Painted tiles handed to the sink.
    pub tiles: u64,
}

/// One tile rebuilt from the history: where, its version, its pixels.
pub(crate) type RebuiltTile = (TileId, Seq, Tile);

/// Where a rebuild puts the tiles it rebuilt, a page at a time.
pub(crate) trait TileSink {
    fn put(
        &mut self,
        tiles: Vec<RebuiltTile>,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send;
}

/// Handle to the history. Cheap to clone.
#[derive(Clone)]
pub(crate) struct History {
    /// Connections for the writer, the reconciler and the reads.
    pool: Pool,
    /// Bits per pixel of the packed tiles.
    depth: Depth,
    /// Longest one call may take (pool checkout included) before it counts as failed, so
    /// a stalled PostgreSQL holds nobody for longer.
    timeout: Duration,
}

impl History {
    /// Connects, applies migrations and checks the canvas's shape (recording `dims` if
    /// larger than the recorded size: [`History::dims`] tells the size in force). The
    /// error names the URL when PostgreSQL cannot be reached.
    pub async fn connect(
        url: &str,
        pool_size: usize,
        dims: Dimensions,
        depth: Depth,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        let shown = super::redact(url);
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Config(format!("invalid PostgreSQL URL {shown}: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(timeout);
        }
        config.application_name("rplace");
        let unreachable = |source| StoreError::Connect {
            service: Service::Postgres,
            url: shown.clone(),
            source,
        };
        let (mut client, conn) = tokio::time::timeout(timeout, config.connect(NoTls))
            .await
            .map_err(|_| unreachable(BackendError::Timeout(Service::Postgres)))?
            .map_err(|e| unreachable(BackendError::Postgres(e)))?;
        let conn_task = tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "migration connection ended");
            }
        });
        let res = tokio::time::timeout(LONG_TIMEOUT, async {
            migrate(&mut client).await?;
            check_shape(&client, dims, depth, &shown).await
        })
        .await
        .unwrap_or(Err(BackendError::Timeout(Service::Postgres).into()));
        drop(client);
        let _ = conn_task.await;
        res?;
        let mgr = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(pool_size.max(2))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .build()
            .map_err(|e| StoreError::Config(format!("PostgreSQL pool: {e}")))?;
        Ok(Self {
            pool,
            depth,
            timeout,
        })
    }

    /// The canvas's size the history records.
    pub async fn dims(&self) -> Result<Dimensions, StoreError> {
        self.bounded(async { read_dims(&self.client().await?).await })
            .await
    }

    /// Records a larger size (each axis only grows) and answers the size now recorded.
    pub async fn grow(&self, to: Dimensions) -> Result<Dimensions, StoreError> {
        self.bounded(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg)?;
            for (key, value) in [("width", to.width()), ("height", to.height())] {
                tx.execute(
                    "UPDATE rplace_meta SET value = GREATEST(value, $2) WHERE key = $1",
                    &[&key, &i64::from(value)],
                )
                .await
                .map_err(pg)?;
            }
            let dims = read_dims(&tx).await?;
            tx.commit().await.map_err(pg)?;
            Ok(dims)
        })
        .await
    }

    /// `f`, failed with a timeout if it takes longer than the per-call timeout.
    pub(crate) async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, f)
            .await
            .unwrap_or(Err(BackendError::Timeout(Service::Postgres).into()))
    }

    /// `f`, bounded by [`LONG_TIMEOUT`]: for the work that reads the whole history.
    pub(super) async fn bounded_long<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(LONG_TIMEOUT, f)
            .await
            .unwrap_or(Err(BackendError::Timeout(Service::Postgres).into()))
    }

    /// In `tx`, locks a one-row state table's watermark (`FOR UPDATE`, so that instances
    /// counting the same step queue here) and says whether it is still `after`: a step
    /// counted from `after` may then be applied, once.
    pub(crate) async fn watermark_still(
        tx: &deadpool_postgres::Transaction<'_>,
        table: &'static str,
        after: Seq,
    ) -> Result<bool, StoreError> {
        let at: i64 = tx
            .query_one(
                &format!("SELECT through FROM {table} WHERE id = 1 FOR UPDATE"),
                &[],
            )
            .await
            .map_err(pg)?
            .get(0);
        Ok(at as u64 == after.0)
    }

    /// The `through` of a one-row state table along the log (`stats_state`,
    /// `activity_state`): every placement up to it is counted there.
    pub(crate) async fn watermark(&self, table: &'static str) -> Result<Seq, StoreError> {
        self.bounded(async {
            let row = self
                .client()
                .await?
                .query_one(&format!("SELECT through FROM {table} WHERE id = 1"), &[])
                .await
                .map_err(pg)?;
            Ok(Seq(row.get::<_, i64>(0) as u64))
        })
        .await
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool.get().await.map_err(pool_err)
    }

    /// Whether PostgreSQL answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.bounded(async {
            self.client()
                .await?
                .simple_query("SELECT 1")
                .await
                .map_err(pg)?;
            Ok(())
        })
        .await
    }

    /// Writes `rows`, all made in Redis generation `epoch`, in one transaction.
    pub async fn write(&self, epoch: u64, rows: &[Placement]) -> Result<Written, StoreError> {
        self.write_within(epoch, rows, self.timeout).await
    }

    /// [`Self::write`] of a rewrite's chunk of thousands of rows, bounded by
    /// [`REWRITE_TIMEOUT`]: on a busy machine it can outlast the per-call timeout meant
    /// for a placement's few rows, and failing it would fail an admin's fill half done.
    pub async fn write_chunk(&self, epoch: u64, rows: &[Placement]) -> Result<Written, StoreError> {
        self.write_within(epoch, rows, REWRITE_TIMEOUT).await
    }

    async fn write_within(
        &self,
        epoch: u64,
        rows: &[Placement],
        bound: Duration,
    ) -> Result<Written, StoreError> {
        let write = async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg)?;
            let current: i64 = tx
                .query_one("SELECT epoch FROM rplace_state WHERE id = 1 FOR SHARE", &[])
                .await
                .map_err(pg)?
                .get(0);
            if current as u64 != epoch {
                tx.rollback().await.map_err(pg)?;
                return Ok(Written::Stale);
            }
            let n = rows.len();
            let (mut seq, mut x, mut y, mut color, mut user, mut ts) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            for p in rows {
                seq.push(p.seq.0 as i64);
                x.push(p.coord.x() as i32);
                y.push(p.coord.y() as i32);
                color.push(p.color.get() as i16);
                user.push(p.user.0 as i64);
                ts.push(to_time(p.at_ms));
            }
            let insert = tx
                .prepare_cached(
                    "INSERT INTO placements (seq, x, y, color, user_id, ts)
                     SELECT * FROM unnest($1::bigint[], $2::integer[], $3::integer[],
                                          $4::smallint[], $5::bigint[], $6::timestamptz[])
                     ON CONFLICT (seq) DO NOTHING
                     RETURNING seq",
                )
                .await
                .map_err(pg)?;
            let inserted = tx
                .query(&insert, &[&seq, &x, &y, &color, &user, &ts])
                .await
                .map_err(pg)?;
            let mut conflicts = Vec::new();
            if inserted.len() < n {
                // Rows already there: fine if they are the same placement (the reconciler
                // copied it first), a divergence otherwise.
                let mut fresh: Vec<i64> = inserted.iter().map(|r| r.get(0)).collect();
                fresh.sort_unstable();
                let existing: Vec<&Placement> = rows
                    .iter()
                    .filter(|p| fresh.binary_search(&(p.seq.0 as i64)).is_err())
                    .collect();
                let seqs: Vec<i64> = existing.iter().map(|p| p.seq.0 as i64).collect();
                let stored = tx
                    .query(
                        "SELECT seq, x, y, color, user_id, ts FROM placements WHERE seq = ANY($1)",
                        &[&seqs],
                    )
                    .await
                    .map_err(pg)?;
                let stored: std::collections::HashMap<u64, Placement> = stored
                    .iter()
                    .map(|r| {
                        let p = row_to_placement(r);
                        (p.seq.0, p)
                    })
                    .collect();
                for p in existing {
                    if stored.get(&p.seq.0) != Some(p) {
                        conflicts.push(p.seq);
                    }
                }
            }
            tx.commit().await.map_err(pg)?;
            Ok(Written::Stored { conflicts })
        };
        tokio::time::timeout(bound, write)
            .await
            .unwrap_or(Err(BackendError::Timeout(Service::Postgres).into()))
    }

    /// The latest placements on one pixel, newest first.
    pub async fn pixel_history(
        &self,
        coord: Coord,
        limit: usize,
    ) -> Result<Vec<Placement>, StoreError> {
        self.bounded(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT seq, x, y, color, user_id, ts FROM placements
                     WHERE x = $1 AND y = $2 ORDER BY seq DESC LIMIT $3",
                )
                .await
                .map_err(pg)?;
            let rows = client
                .query(
                    &stmt,
                    &[&(coord.x() as i32), &(coord.y() as i32), &(limit as i64)],
                )
                .await
                .map_err(pg)?;
            Ok(rows.iter().map(row_to_placement).collect())
        })
        .await
    }

    /// The placement stored under `seq`, if any.
    pub async fn placement_at(&self, seq: Seq) -> Result<Option<Placement>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT seq, x, y, color, user_id, ts FROM placements WHERE seq = $1")
            .await
            .map_err(pg)?;
        let row = client
            .query_opt(&stmt, &[&(seq.0 as i64)])
            .await
            .map_err(pg)?;
        Ok(row.as_ref().map(row_to_placement))
    }

    /// The current epoch and watermark.
    pub async fn state(&self) -> Result<(u64, Seq), StoreError> {
        self.bounded(async {
            let row = self
                .client()
                .await?
                .query_one(
                    "SELECT epoch, durable_seq FROM rplace_state WHERE id = 1",
                    &[],
                )
                .await
                .map_err(pg)?;
            Ok((
                row.get::<_, i64>(0) as u64,
                Seq(row.get::<_, i64>(1) as u64),
            ))
        })
        .await
    }

    /// The newest seq in the history (0 when empty).
    pub async fn max_seq(&self) -> Result<Seq, StoreError> {
        self.bounded(async {
            let row = self
                .client()
                .await?
                .query_one("SELECT coalesce(max(seq), 0) FROM placements", &[])
                .await
                .map_err(pg)?;
            Ok(Seq(row.get::<_, i64>(0) as u64))
        })
        .await
    }

    /// How many of the seqs in `(after, upto]` the history holds.
    pub async fn count_between(&self, after: Seq, upto: Seq) -> Result<u64, StoreError> {
        self.bounded(async {
            let row = self
                .client()
                .await?
                .query_one(
                    "SELECT count(*) FROM placements WHERE seq > $1 AND seq <= $2",
                    &[&(after.0 as i64), &(upto.0 as i64)],
                )
                .await
                .map_err(pg)?;
            Ok(row.get::<_, i64>(0) as u64)
        })
        .await
    }

    /// Moves the watermark forward to `seq` if the epoch is still `epoch`.
    pub async fn advance_durable(&self, epoch: u64, seq: Seq) -> Result<(), StoreError> {
        self.bounded(async {
            self.client()
                .await?
                .execute(
                    "UPDATE rplace_state SET durable_seq = GREATEST(durable_seq, $2)
                     WHERE id = 1 AND epoch = $1",
                    &[&(epoch as i64), &(seq.0 as i64)],
                )
                .await
                .map_err(pg)?;
            Ok(())
        })
        .await
    }

    /// Runs `f` only if no other instance is reconciling; `None` if one is.
    pub async fn with_reconcile_lock<F, Fut, T>(&self, f: F) -> Result<Option<T>, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        // A transaction-level lock, held by a transaction that stays open while `f` works
        // on other pooled connections: however this ends (even cancelled), the transaction
        // rolls back and the lock goes with it.
        let mut client = self.bounded(self.client()).await?;
        let tx = self
            .bounded(async { client.transaction().await.map_err(pg) })
            .await?;
        let got: bool = self
            .bounded(async {
                tx.query_one("SELECT pg_try_advisory_xact_lock($1)", &[&RECONCILE_LOCK])
                    .await
                    .map_err(pg)
            })
            .await?
            .get(0);
        if !got {
            return Ok(None);
        }
        let out = f().await;
        self.bounded(async { tx.rollback().await.map_err(pg) })
            .await?;
        out.map(Some)
    }

    /// Users whose newest placement is younger than `window_ms` before the newest
    /// placement of all, with that placement's time: the cooldowns to restore.
    pub async fn recent_users(&self, window_ms: i64) -> Result<Vec<(UserId, i64)>, StoreError> {
        self.bounded(async {
            if window_ms <= 0 {
                return Ok(Vec::new());
            }
            let rows = self
                .client()
                .await?
                .query(
                    "SELECT user_id, max(ts) FROM placements
                     WHERE ts > (SELECT ts FROM placements ORDER BY seq DESC LIMIT 1)
                                - make_interval(secs => $1::double precision / 1000)
                     GROUP BY user_id",
                    &[&(window_ms as f64)],
                )
                .await
                .map_err(pg)?;
            Ok(rows
                .iter()
                .map(|r| (UserId(r.get::<_, i64>(0) as u64), from_time(r.get(1))))
                .collect())
        })
        .await
    }
}

/// The size `rplace_meta` records.
async fn read_dims(c: &impl deadpool_postgres::GenericClient) -> Result<Dimensions, StoreError> {
    let rows = c
        .query(
            "SELECT key, value FROM rplace_meta WHERE key IN ('width', 'height')",
            &[],
        )
        .await
        .map_err(pg)?;
    let get = |k: &str| {
        rows.iter()
            .find(|r| r.get::<_, &str>(0) == k)
            .map(|r| r.get::<_, i64>(1).max(0) as u64)
            .unwrap_or(0)
    };
    Dimensions::parse(get("width"), get("height"))
        .map_err(|e| corrupt(format!("the canvas size in rplace_meta: {e}")))
}

pub(super) fn row_to_placement(r: &tokio_postgres::Row) -> Placement {
    Placement {
        seq: Seq(r.get::<_, i64>(0) as u64),
        // Rows come from placements that went through `Dimensions::coord`.
        coord: Coord::new_unchecked(r.get::<_, i32>(1) as u32, r.get::<_, i32>(2) as u32),
        color: ColorIndex::new_unchecked(r.get::<_, i16>(3) as u8),
        user: UserId(r.get::<_, i64>(4) as u64),
        at_ms: from_time(r.get(5)),
    }
}

#[cfg(test)]
mod tests;
