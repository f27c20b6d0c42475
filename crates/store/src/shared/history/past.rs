//! [`Past`] for the shared store (see [`crate::past`] for the design): keyframes in
//! PostgreSQL beside the log, so every instance answers past reads from the history alone
//! (Redis holds only the live state).
//!
//! Tables: `tile_keyframes (key, seq, version, pixels)`, primary key `(key, seq)`, the
//! packed tile bytes (TOAST compresses them); `keyframe_marks (seq)`. A step runs in one
//! transaction under a transaction-level advisory lock, so one instance at a time builds
//! keyframes and a mark commits with its keyframes; MVCC keeps the history writer from
//! ever waiting on it. The head is the watermark `durable_seq`: every placement up to it
//! is in `placements`.

use super::{History, corrupt, pg};
use crate::StoreError;
use crate::past::{Frame, KEYFRAMES_PER_TX, KeyframeStatus, Past, PastError, by_tile, check_tail};
use crate::shared::SharedStore;
use crate::{Snapshot, Store, TileRead};
use rplace_domain::board::Depth;
use rplace_domain::tile::{TILE_SIZE, tiles_across};
use rplace_domain::{Board, ColorIndex, Coord, Placement, Seq, Tile, TileId};
use std::collections::HashMap;

/// Advisory lock of the keyframer, so one instance at a time builds (`rplace` + 4).
const KEYFRAME_LOCK: i64 = 0x72_70_6c_61_63_65_00_04;

/// This area's PostgreSQL migrations: versions 500 to 599 (see `schema::migrate`).
pub(crate) const MIGRATIONS: &[(i32, &str, &str)] = &[(
    500,
    "tile keyframes",
    "CREATE TABLE tile_keyframes (
         key bigint NOT NULL,
         seq bigint NOT NULL,
         version bigint NOT NULL,
         pixels bytea NOT NULL,
         PRIMARY KEY (key, seq)
     );
     CREATE TABLE keyframe_marks (seq bigint PRIMARY KEY);",
)];

const MARK_AT: &str = "SELECT coalesce(max(seq), 0) FROM keyframe_marks WHERE seq <= $1";
/// Each key's newest keyframe at or below a mark.
const FRAMES_AT: &str = "SELECT k.key, f.version, f.pixels FROM unnest($1::bigint[]) AS k(key)
     CROSS JOIN LATERAL (SELECT version, pixels FROM tile_keyframes
                         WHERE key = k.key AND seq <= $2 ORDER BY seq DESC LIMIT 1) f";

fn frames(rows: &[tokio_postgres::Row], depth: Depth) -> Result<HashMap<u64, Frame>, StoreError> {
    rows.iter()
        .map(|r| {
            let key = r.get::<_, i64>(0) as u64;
            let pixels = Tile::from_bytes(depth, r.get::<_, Vec<u8>>(2))
                .map_err(|e| corrupt(format!("keyframe of tile key {key}: {e}")))?;
            Ok((
                key,
                Frame {
                    version: r.get::<_, i64>(1) as u64,
                    pixels,
                },
            ))
        })
        .collect()
}

impl History {
    /// Tile `id` right after placement `at` (the nearest keyframe at or below it, then
    /// the tile's rows), replaying at most `tail` rows: the past reads, and on a Redis
    /// Cluster the repair of a tile that lost a write (`shared/cluster.rs`).
    pub(crate) async fn tile_at(
        &self,
        id: TileId,
        at: Seq,
        tail: u64,
        depth: Depth,
    ) -> Result<TileRead, PastError> {
        let mark = self.mark_at(at).await?;
        check_tail(at, mark, tail)?;
        let mut f = self
            .frames_at(&[id.key()], mark, depth)
            .await?
            .remove(&id.key())
            .unwrap_or_else(|| Frame::blank(depth));
        for (c, color, seq) in self.tile_rows(id, mark, at).await? {
            f.pixels.set(id.local_index(c), color);
            f.version = f.version.max(seq);
        }
        Ok(f.read(at))
    }

    async fn mark_at(&self, at: Seq) -> Result<Seq, StoreError> {
        self.bounded(async {
            let row = self
                .client()
                .await?
                .query_one(MARK_AT, &[&(at.0 as i64)])
                .await
                .map_err(pg)?;
            Ok(Seq(row.get::<_, i64>(0) as u64))
        })
        .await
    }

    /// Newest keyframes at or below `mark` of `keys` (those that have one).
    async fn frames_at(
        &self,
        keys: &[u64],
        mark: Seq,
        depth: Depth,
    ) -> Result<HashMap<u64, Frame>, StoreError> {
        let keys: Vec<i64> = keys.iter().map(|k| *k as i64).collect();
        self.bounded_long(async {
            let rows = self
                .client()
                .await?
                .query(FRAMES_AT, &[&keys, &(mark.0 as i64)])
                .await
                .map_err(pg)?;
            frames(&rows, depth)
        })
        .await
    }

    /// One tile's placements in `(after, through]`.
    async fn tile_rows(
        &self,
        id: TileId,
        after: Seq,
        through: Seq,
    ) -> Result<Vec<(Coord, ColorIndex, u64)>, StoreError> {
        let o = id.origin();
        let (x0, y0) = (o.x() as i32, o.y() as i32);
        let side = TILE_SIZE as i32;
        self.bounded(async {
            let rows = self
                .client()
                .await?
                .query(
                    "SELECT seq, x, y, color FROM placements
                     WHERE seq > $1 AND seq <= $2
                       AND x >= $3 AND x < $4 AND y >= $5 AND y < $6
                     ORDER BY seq",
                    &[
                        &(after.0 as i64),
                        &(through.0 as i64),
                        &x0,
                        &(x0 + side),
                        &y0,
                        &(y0 + side),
                    ],
                )
                .await
                .map_err(pg)?;
            Ok(rows
                .iter()
                .map(|r| {
                    (
                        Coord::new_unchecked(r.get::<_, i32>(1) as u32, r.get::<_, i32>(2) as u32),
                        ColorIndex::new_unchecked(r.get::<_, i16>(3) as u8),
                        r.get::<_, i64>(0) as u64,
                    )
                })
                .collect())
        })
        .await
    }

    /// All rows in `(after, through]`, at most `limit` (the caller bounded the range).
    async fn all_rows(
        &self,
        after: Seq,
        through: Seq,
        limit: u64,
    ) -> Result<Vec<Placement>, StoreError> {
        if after >= through {
            return Ok(Vec::new());
        }
        self.export_page(after, through, limit as usize).await
    }

    /// One keyframer step (see [`Past::keyframe_step`]), all in one transaction.
    async fn keyframe_step(&self, every: u64, depth: Depth) -> Result<Option<Seq>, StoreError> {
        let head = self.state().await?.1;
        let mark = self.mark_at(head).await?;
        if head.0 < mark.0 + every {
            return Ok(None);
        }
        let end = Seq(mark.0 + every);
        let rows = self.all_rows(mark, end, every).await?;
        let tiles: Vec<(u64, Vec<&Placement>)> = by_tile(&rows).into_iter().collect();
        self.bounded_long(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg)?;
            let locked: bool = tx
                .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&KEYFRAME_LOCK])
                .await
                .map_err(pg)?
                .get(0);
            // Another instance steps; or it stepped since this one read the mark.
            if !locked
                || tx
                    .query_one(MARK_AT, &[&(head.0 as i64)])
                    .await
                    .map_err(pg)?
                    .get::<_, i64>(0) as u64
                    != mark.0
            {
                return Ok(None);
            }
            for chunk in tiles.chunks(KEYFRAMES_PER_TX) {
                let keys: Vec<i64> = chunk.iter().map(|(k, _)| *k as i64).collect();
                let mut base = frames(
                    &tx.query(FRAMES_AT, &[&keys, &(mark.0 as i64)])
                        .await
                        .map_err(pg)?,
                    depth,
                )?;
                let (mut versions, mut pixels) = (Vec::new(), Vec::new());
                for (key, placements) in chunk {
                    let id = TileId::from_key(*key);
                    let mut f = base.remove(key).unwrap_or_else(|| Frame::blank(depth));
                    for p in placements {
                        f.apply(id, p);
                    }
                    versions.push(f.version as i64);
                    pixels.push(f.pixels.into_bytes());
                }
                tx.execute(
                    "INSERT INTO tile_keyframes (key, seq, version, pixels)
                     SELECT q.key, $2, q.version, q.pixels
                     FROM unnest($1::bigint[], $3::bigint[], $4::bytea[]) AS q(key, version, pixels)
                     ON CONFLICT (key, seq) DO UPDATE SET
                         version = excluded.version, pixels = excluded.pixels",
                    &[&keys, &(end.0 as i64), &versions, &pixels],
                )
                .await
                .map_err(pg)?;
            }
            tx.execute(
                "INSERT INTO keyframe_marks (seq) VALUES ($1) ON CONFLICT DO NOTHING",
                &[&(end.0 as i64)],
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok(Some(end))
        })
        .await
    }
}

impl Past for SharedStore {
    async fn past_status(&self) -> Result<KeyframeStatus, StoreError> {
        let h = &self.inner.history;
        let head = h.state().await?.1;
        Ok(KeyframeStatus {
            through: h.mark_at(head).await?,
            head,
        })
    }

    async fn seq_at_time(&self, head: Seq, ms: i64) -> Result<Seq, StoreError> {
        crate::rewrite::seq_at_time(head, ms, |s| self.first_at(s)).await
    }

    async fn tile_at(&self, id: TileId, at: Seq, tail: u64) -> Result<TileRead, PastError> {
        let inner = &self.inner;
        inner.history.tile_at(id, at, tail, inner.cfg.depth).await
    }

    async fn board_at(&self, at: Seq, tail: u64) -> Result<Snapshot, PastError> {
        let dims = self.dims();
        if !dims.whole() {
            return Err(StoreError::Config(format!(
                "a {} x {} canvas is not served whole",
                dims.width(),
                dims.height()
            ))
            .into());
        }
        let h = &self.inner.history;
        let depth = self.inner.cfg.depth;
        let mark = h.mark_at(at).await?;
        check_tail(at, mark, tail)?;
        let (across, down) = tiles_across(dims);
        let keys: Vec<u64> = (0..down)
            .flat_map(|ty| (0..across).map(move |tx| TileId::new_unchecked(tx, ty).key()))
            .collect();
        let mut board = Board::new(dims, depth);
        for (key, f) in h.frames_at(&keys, mark, depth).await? {
            board.put_tile(TileId::from_key(key), &f.pixels);
        }
        for p in h.all_rows(mark, at, tail).await? {
            board.set(p.coord, p.color);
        }
        Ok(Snapshot { seq: at, board })
    }

    async fn keyframe_step(&self, every: u64) -> Result<Option<Seq>, StoreError> {
        self.inner
            .history
            .keyframe_step(every.max(1), self.inner.cfg.depth)
            .await
    }
}
