//! The history in PostgreSQL: every accepted placement, the board snapshots that make a
//! rebuild fast, and the one-row state that fences writers across rebuilds.
//!
//! # Tables
//! - `placements (seq PK, x, y, color, user_id, ts)`: the log. Written idempotently
//!   (`ON CONFLICT (seq) DO NOTHING`), because the writer of the placing instance and the
//!   reconciler of any instance may both write one placement. `(x, y, seq DESC)` serves
//!   pixel history; a BRIN index on `ts` serves time ranges at a fraction of a B-tree's
//!   size and write cost, as `ts` grows with `seq` and rows arrive in that order.
//! - `board_snapshots (seq PK, board)`: the packed board after every placement up to
//!   `seq`, derived from this table alone; a rebuild replays only the rows after it.
//! - `rplace_state (epoch, durable_seq)`: `epoch` is the generation of the Redis state.
//!   A rebuild bumps it under `FOR UPDATE`; every write checks it under `FOR SHARE` in the
//!   same transaction. So a placement made on a Redis state that a rebuild has replaced
//!   can never land here after the rebuild read the log, and one that landed before is
//!   in the rebuilt board. `durable_seq` is the reconciler's watermark: every placement
//!   up to it that will ever be in this table is in it.
//! - `rplace_meta`: the board's shape, so that a database made for another shape is
//!   refused at start.
//! - `schema_migrations`: applied migration versions. Migrations run under a session
//!   advisory lock, so instances starting together apply each one exactly once.

use super::copy_rows::CopyRows;
use crate::{BackendError, Service, StoreError};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures_util::{StreamExt, pin_mut};
use rplace_domain::board::{Depth, set_packed};
use rplace_domain::{ColorIndex, Coord, Dimensions, Placement, Seq, UserId};
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
/// Board snapshots kept; older ones are deleted.
const SNAPSHOTS_KEPT: i64 = 2;

/// Schema versions, applied in order, each in its own transaction.
const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "placements, snapshots, state",
    "CREATE TABLE rplace_meta (
         key text PRIMARY KEY,
         value bigint NOT NULL
     );
     CREATE TABLE rplace_state (
         id int PRIMARY KEY CHECK (id = 1),
         epoch bigint NOT NULL,
         durable_seq bigint NOT NULL
     );
     INSERT INTO rplace_state (id, epoch, durable_seq) VALUES (1, 0, 0);
     CREATE TABLE placements (
         seq bigint PRIMARY KEY,
         x smallint NOT NULL,
         y smallint NOT NULL,
         color smallint NOT NULL,
         user_id bigint NOT NULL,
         ts timestamptz NOT NULL
     );
     CREATE INDEX placements_pixel ON placements (x, y, seq DESC);
     CREATE INDEX placements_ts ON placements USING brin (ts);
     CREATE TABLE board_snapshots (
         seq bigint PRIMARY KEY,
         board bytea NOT NULL,
         taken_at timestamptz NOT NULL DEFAULT now()
     );
     -- The board compresses well but is rewritten whole; skip pglz on every snapshot.
     ALTER TABLE board_snapshots ALTER COLUMN board SET STORAGE EXTERNAL;",
)];

fn pg(e: tokio_postgres::Error) -> StoreError {
    StoreError::from(e)
}

fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    StoreError::from(e)
}

fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Backend(BackendError::Corrupt(what.into()))
}

fn to_time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

fn from_time(t: SystemTime) -> i64 {
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

/// The state a rebuild read from the history.
#[derive(Debug, Clone)]
pub(crate) struct Rebuilt {
    /// The new generation, already committed.
    pub epoch: u64,
    /// The newest seq in the history (0 when empty).
    pub seq: Seq,
    /// The packed board after every placement in the history.
    pub board: Vec<u8>,
    /// Time of the newest placement, unix ms (0 when empty).
    pub last_ms: i64,
    /// Rows replayed on top of the snapshot.
    pub replayed: u64,
}

/// Handle to the history. Cheap to clone.
#[derive(Clone)]
pub(crate) struct History {
    /// Connections for the writer, the reconciler and the reads.
    pool: Pool,
    /// Board shape, to replay placements into packed bytes.
    dims: Dimensions,
    /// Bits per pixel of the packed board.
    depth: Depth,
    /// Longest one call may take (pool checkout included) before it counts as failed, so
    /// a stalled PostgreSQL holds nobody for longer.
    timeout: Duration,
}

impl History {
    /// Connects, applies migrations and checks the board's shape. The error names the URL
    /// when PostgreSQL cannot be reached.
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
            dims,
            depth,
            timeout,
        })
    }

    /// `f`, failed with a timeout if it takes longer than the per-call timeout.
    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, f)
            .await
            .unwrap_or(Err(BackendError::Timeout(Service::Postgres).into()))
    }

    /// `f`, bounded by [`LONG_TIMEOUT`]: for the work that reads the whole history.
    async fn bounded_long<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(LONG_TIMEOUT, f)
            .await
            .unwrap_or(Err(BackendError::Timeout(Service::Postgres).into()))
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
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
        self.bounded(async {
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
                x.push(p.coord.x() as i16);
                y.push(p.coord.y() as i16);
                color.push(p.color.get() as i16);
                user.push(p.user.0 as i64);
                ts.push(to_time(p.at_ms));
            }
            let insert = tx
                .prepare_cached(
                    "INSERT INTO placements (seq, x, y, color, user_id, ts)
                     SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::smallint[],
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
        })
        .await
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
                    &[&(coord.x() as i16), &(coord.y() as i16), &(limit as i64)],
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

    /// Bumps the epoch and reads the board and seq the history holds, in one transaction:
    /// writers of the old epoch that committed before are in the result; those that had
    /// not wait for the commit and then find their epoch stale.
    pub async fn rebuild(&self) -> Result<Rebuilt, StoreError> {
        self.bounded_long(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg)?;
            let old: i64 = tx
                .query_one(
                    "SELECT epoch FROM rplace_state WHERE id = 1 FOR UPDATE",
                    &[],
                )
                .await
                .map_err(pg)?
                .get(0);
            let (from, mut board) = self.latest_snapshot(&tx).await?;
            let replayed = self.replay(&tx, from, None, &mut board).await?;
            let tail = tx
                .query_opt(
                    "SELECT seq, ts FROM placements ORDER BY seq DESC LIMIT 1",
                    &[],
                )
                .await
                .map_err(pg)?;
            let (seq, last_ms) = match tail {
                Some(r) => (
                    Seq(r.get::<_, i64>(0) as u64),
                    from_time(r.get::<_, SystemTime>(1)),
                ),
                None => (Seq(0), 0),
            };
            let epoch = old as u64 + 1;
            tx.execute(
                "UPDATE rplace_state SET epoch = $1, durable_seq = GREATEST(durable_seq, $2)
                 WHERE id = 1",
                &[&(epoch as i64), &(seq.0 as i64)],
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok(Rebuilt {
                epoch,
                seq,
                board,
                last_ms,
                replayed,
            })
        })
        .await
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

    /// Writes a new board snapshot at the watermark if it is at least `every` placements
    /// past the latest one. Returns its seq if it wrote one.
    pub async fn maybe_snapshot(&self, every: u64) -> Result<Option<Seq>, StoreError> {
        self.bounded_long(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg)?;
            let got: bool = tx
                .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&SNAPSHOT_LOCK])
                .await
                .map_err(pg)?
                .get(0);
            if !got {
                return Ok(None);
            }
            let durable = Seq(tx
                .query_one("SELECT durable_seq FROM rplace_state WHERE id = 1", &[])
                .await
                .map_err(pg)?
                .get::<_, i64>(0) as u64);
            let latest: Option<i64> = tx
                .query_one("SELECT max(seq) FROM board_snapshots", &[])
                .await
                .map_err(pg)?
                .get(0);
            let latest = Seq(latest.unwrap_or(0) as u64);
            if durable.0 < latest.0 + every.max(1) {
                return Ok(None);
            }
            let (from, mut board) = self.latest_snapshot(&tx).await?;
            self.replay(&tx, from, Some(durable), &mut board).await?;
            tx.execute(
                "INSERT INTO board_snapshots (seq, board) VALUES ($1, $2) ON CONFLICT (seq) DO NOTHING",
                &[&(durable.0 as i64), &board],
            )
            .await
            .map_err(pg)?;
            tx.execute(
                "DELETE FROM board_snapshots WHERE seq NOT IN
                     (SELECT seq FROM board_snapshots ORDER BY seq DESC LIMIT $1)",
                &[&SNAPSHOTS_KEPT],
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok(Some(durable))
        })
        .await
    }

    /// The latest snapshot's seq and board, or seq 0 and a blank board.
    async fn latest_snapshot(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
    ) -> Result<(Seq, Vec<u8>), StoreError> {
        let expected = self.depth.bytes_for(self.dims.pixels());
        let row = tx
            .query_opt(
                "SELECT seq, board FROM board_snapshots ORDER BY seq DESC LIMIT 1",
                &[],
            )
            .await
            .map_err(pg)?;
        match row {
            Some(r) => {
                let seq = Seq(r.get::<_, i64>(0) as u64);
                let board: Vec<u8> = r.get(1);
                if board.len() != expected {
                    return Err(corrupt(format!(
                        "board snapshot at seq {seq} has {} bytes, expected {expected}",
                        board.len()
                    )));
                }
                Ok((seq, board))
            }
            None => Ok((Seq(0), vec![0; expected])),
        }
    }

    /// Applies the placements in `(after, upto]` in seq order to `board`. Streams them as
    /// binary `COPY`, the fastest way out of PostgreSQL (10M rows in about 7 s on two
    /// cores), and returns how many it applied.
    async fn replay(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        after: Seq,
        upto: Option<Seq>,
        board: &mut [u8],
    ) -> Result<u64, StoreError> {
        let upto = upto.map(|s| s.0 as i64).unwrap_or(i64::MAX);
        // COPY takes no parameters; both bounds are integers.
        let sql = format!(
            "COPY (SELECT x, y, color FROM placements WHERE seq > {} AND seq <= {upto} ORDER BY seq)
             TO STDOUT (FORMAT binary)",
            after.0 as i64
        );
        let stream = tx.copy_out(sql.as_str()).await.map_err(pg)?;
        pin_mut!(stream);
        let width = self.dims.width() as usize;
        let pixels = self.dims.pixels();
        let mut rows = CopyRows::default();
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            rows.push(&chunk.map_err(pg)?);
            while let Some([x, y, color]) = rows.next_row().map_err(corrupt)? {
                let (x, y) = (x as usize, y as usize);
                let i = y * width + x;
                if x < width && i < pixels {
                    set_packed(board, self.depth, i, color as u8);
                }
                n += 1;
            }
        }
        if !rows.finished() {
            return Err(corrupt("COPY output ended early"));
        }
        Ok(n)
    }
}

fn row_to_placement(r: &tokio_postgres::Row) -> Placement {
    Placement {
        seq: Seq(r.get::<_, i64>(0) as u64),
        // Rows come from placements that went through `Dimensions::coord`.
        coord: Coord::new_unchecked(r.get::<_, i16>(1) as u16, r.get::<_, i16>(2) as u16),
        color: ColorIndex::new_unchecked(r.get::<_, i16>(3) as u8),
        user: UserId(r.get::<_, i64>(4) as u64),
        at_ms: from_time(r.get(5)),
    }
}

async fn migrate(client: &mut tokio_postgres::Client) -> Result<(), StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg)?;
    let res = async {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                     version int PRIMARY KEY,
                     name text NOT NULL,
                     applied_at timestamptz NOT NULL DEFAULT now()
                 )",
            )
            .await
            .map_err(pg)?;
        let applied: i32 = client
            .query_one(
                "SELECT coalesce(max(version), 0) FROM schema_migrations",
                &[],
            )
            .await
            .map_err(pg)?
            .get(0);
        for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > applied) {
            let tx = client.transaction().await.map_err(pg)?;
            tx.batch_execute(sql).await.map_err(|e| {
                tracing::error!(version, name, error = %crate::Chain(&e), "migration failed");
                pg(e)
            })?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            tracing::info!(version, name, "applied PostgreSQL migration");
        }
        Ok(())
    }
    .await;
    // The lock is also released when the session ends, which follows right after.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    res
}

/// Records the board's shape on first use and refuses a database made for another one.
async fn check_shape(
    client: &tokio_postgres::Client,
    dims: Dimensions,
    depth: Depth,
    shown: &str,
) -> Result<(), StoreError> {
    let want = [
        ("width", dims.width() as i64),
        ("height", dims.height() as i64),
        ("bits_per_pixel", depth.bits() as i64),
    ];
    for (key, value) in want {
        client
            .execute(
                "INSERT INTO rplace_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                &[&key, &value],
            )
            .await
            .map_err(pg)?;
        let have: i64 = client
            .query_one("SELECT value FROM rplace_meta WHERE key = $1", &[&key])
            .await
            .map_err(pg)?
            .get(0);
        if have != value {
            return Err(StoreError::Config(format!(
                "the PostgreSQL database {shown} holds a board with {key} = {have}, but this \
                 start asks for {value}; start with the same size and palette depth, or use \
                 another database"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: u64, x: u16, color: u8, user: u64) -> Placement {
        Placement {
            seq: Seq(seq),
            coord: Coord::new_unchecked(x, 1),
            color: ColorIndex::new_unchecked(color),
            user: UserId(user),
            at_ms: 1_764_300_000_000 + seq as i64,
        }
    }

    #[tokio::test]
    async fn writes_are_fenced_by_the_epoch_and_checked_on_conflict() {
        let url = rplace_testsupport::Postgres::shared().create_database();
        let dims = Dimensions::parse(4, 2).unwrap();
        let h = History::connect(&url, 2, dims, Depth::Four, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(h.state().await.unwrap(), (0, Seq(0)));
        let first = [row(1, 0, 3, 10), row(2, 1, 4, 11)];
        assert_eq!(
            h.write(0, &first).await.unwrap(),
            Written::Stored { conflicts: vec![] }
        );
        // The same rows again (the reconciler after the writer): nothing to report.
        assert_eq!(
            h.write(0, &first).await.unwrap(),
            Written::Stored { conflicts: vec![] }
        );

        let r = h.rebuild().await.unwrap();
        assert_eq!((r.epoch, r.seq, r.replayed), (1, Seq(2), 2));
        assert_eq!(r.board, vec![0, 0, 0x34, 0]);
        assert_eq!(r.last_ms, first[1].at_ms);

        // A placement made on the state the rebuild replaced is not written.
        assert_eq!(
            h.write(0, &[row(3, 2, 5, 12)]).await.unwrap(),
            Written::Stale
        );
        assert_eq!(h.max_seq().await.unwrap(), Seq(2));
        // Another placement under a taken seq is reported, and the stored one stays.
        let other = row(2, 3, 9, 99);
        assert_eq!(
            h.write(1, &[other, row(3, 2, 5, 12)]).await.unwrap(),
            Written::Stored {
                conflicts: vec![Seq(2)]
            }
        );
        let hist = h
            .pixel_history(Coord::new_unchecked(1, 1), 5)
            .await
            .unwrap();
        assert_eq!(hist, vec![first[1]]);
        assert_eq!(h.count_between(Seq(0), Seq(3)).await.unwrap(), 3);
    }

    #[tokio::test]
    async fn snapshots_shorten_the_replay_without_changing_the_board() {
        let url = rplace_testsupport::Postgres::shared().create_database();
        let dims = Dimensions::parse(3, 3).unwrap();
        let h = History::connect(&url, 2, dims, Depth::Eight, Duration::from_secs(5))
            .await
            .unwrap();
        let rows: Vec<Placement> = (1..=10)
            .map(|s| row(s, (s % 3) as u16, s as u8, s))
            .collect();
        h.write(0, &rows).await.unwrap();
        let full = h.rebuild().await.unwrap();
        assert_eq!(full.replayed, 10);
        // The watermark is at 10 after the rebuild; a snapshot is due.
        assert_eq!(h.maybe_snapshot(5).await.unwrap(), Some(Seq(10)));
        assert_eq!(h.maybe_snapshot(5).await.unwrap(), None);
        let more: Vec<Placement> = (11..=12).map(|s| row(s, 0, 200, s)).collect();
        h.write(full.epoch, &more).await.unwrap();
        let fast = h.rebuild().await.unwrap();
        assert_eq!((fast.replayed, fast.seq), (2, Seq(12)));
        let mut expected = full.board.clone();
        expected[3] = 200;
        assert_eq!(fast.board, expected);
    }

    #[tokio::test]
    async fn another_shape_is_refused() {
        let url = rplace_testsupport::Postgres::shared().create_database();
        let dims = Dimensions::parse(3, 3).unwrap();
        History::connect(&url, 2, dims, Depth::Four, Duration::from_secs(5))
            .await
            .unwrap();
        let err = History::connect(&url, 2, dims, Depth::Eight, Duration::from_secs(5))
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("bits_per_pixel = 4"), "{err}");
    }
}
