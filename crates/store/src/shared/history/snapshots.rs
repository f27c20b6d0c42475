//! Tile snapshots: rebuilding the Redis state from the history, tile by tile, and writing
//! snapshot rounds so that a rebuild replays only the rows after the latest one.

use super::*;
use std::collections::HashMap;

/// One tile's placements in seq order: seq, tile-local index, color.
type TileRows = Vec<(u64, u16, u8)>;

/// The rows of some placements, grouped by tile.
type ByTile = HashMap<TileId, TileRows>;

/// Applies a tile's rows newer than `after` (in seq order) and returns the version after.
fn apply(tile: &mut Tile, rows: &[(u64, u16, u8)], after: u64, version: Seq) -> Seq {
    let mut version = version;
    for &(seq, i, color) in rows.iter().filter(|r| r.0 > after) {
        tile.set(i, ColorIndex::new_unchecked(color));
        version = version.max(Seq(seq));
    }
    version
}

impl History {
    /// Bumps the epoch and hands every painted tile the history holds to `sink` (a page
    /// at a time: the tile snapshots, each with the rows after its seq replayed, then the
    /// tiles only the rows paint), in one transaction: writers of the old epoch that
    /// committed before are in the result; those that had not wait for the commit and
    /// then find their epoch stale.
    pub async fn rebuild(&self, sink: &mut impl TileSink) -> Result<Rebuilt, StoreError> {
        self.bounded_long(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg)?;
            let state = tx
                .query_one(
                    "SELECT epoch, snapshot_seq FROM rplace_state WHERE id = 1 FOR UPDATE",
                    &[],
                )
                .await
                .map_err(pg)?;
            let (old, from): (i64, i64) = (state.get(0), state.get(1));
            let (mut tail, replayed) = self.rows_by_tile(&tx, Seq(from as u64), None).await?;
            let mut tiles = 0u64;
            // The snapshot tiles, a page at a time through a portal.
            let stmt = tx
                .prepare("SELECT tx, ty, seq, version, pixels FROM tile_snapshots ORDER BY ty, tx")
                .await
                .map_err(pg)?;
            let portal = tx.bind(&stmt, &[]).await.map_err(pg)?;
            loop {
                let rows = tx
                    .query_portal(&portal, TILE_PAGE as i32)
                    .await
                    .map_err(pg)?;
                if rows.is_empty() {
                    break;
                }
                let mut page = Vec::with_capacity(rows.len());
                for r in &rows {
                    let (id, seq, version, mut tile) = self.snapshot_row(r)?;
                    let version = match tail.remove(&id) {
                        Some(rows) => apply(&mut tile, &rows, seq, version),
                        None => version,
                    };
                    page.push((id, version, tile));
                }
                tiles += page.len() as u64;
                sink.put(page).await?;
            }
            // Tiles painted only after the snapshots.
            let rest: Vec<(TileId, TileRows)> = tail.into_iter().collect();
            for chunk in rest.chunks(TILE_PAGE) {
                let page: Vec<RebuiltTile> = chunk
                    .iter()
                    .map(|(id, rows)| {
                        let mut tile = Tile::new(self.depth);
                        let version = apply(&mut tile, rows, 0, Seq(0));
                        (*id, version, tile)
                    })
                    .collect();
                tiles += page.len() as u64;
                sink.put(page).await?;
            }
            let last = tx
                .query_opt(
                    "SELECT seq, ts FROM placements ORDER BY seq DESC LIMIT 1",
                    &[],
                )
                .await
                .map_err(pg)?;
            let (seq, last_ms) = match last {
                Some(r) => (
                    Seq(r.get::<_, i64>(0) as u64),
                    from_time(r.get::<_, SystemTime>(1)),
                ),
                None => (Seq(0), 0),
            };
            let dims = read_dims(&tx).await?;
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
                dims,
                last_ms,
                replayed,
                tiles,
            })
        })
        .await
    }

    /// Writes a snapshot round at the watermark if it is at least `every` placements past
    /// the previous round: every tile placed on since is rewritten (a page at a time),
    /// the others stay. Returns the round's seq if it wrote one.
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
            let state = tx
                .query_one(
                    "SELECT durable_seq, snapshot_seq FROM rplace_state WHERE id = 1",
                    &[],
                )
                .await
                .map_err(pg)?;
            let (durable, latest) = (state.get::<_, i64>(0) as u64, state.get::<_, i64>(1) as u64);
            if durable < latest + every.max(1) {
                return Ok(None);
            }
            let (changed, _) = self
                .rows_by_tile(&tx, Seq(latest), Some(Seq(durable)))
                .await?;
            let changed: Vec<(TileId, TileRows)> = changed.into_iter().collect();
            for chunk in changed.chunks(TILE_PAGE) {
                let (txs, tys): (Vec<i32>, Vec<i32>) = chunk
                    .iter()
                    .map(|(id, _)| (id.tx() as i32, id.ty() as i32))
                    .unzip();
                let old = tx
                    .query(
                        "SELECT s.tx, s.ty, s.seq, s.version, s.pixels FROM tile_snapshots s
                         JOIN unnest($1::integer[], $2::integer[]) AS q(tx, ty)
                           ON s.tx = q.tx AND s.ty = q.ty",
                        &[&txs, &tys],
                    )
                    .await
                    .map_err(pg)?;
                let mut old: HashMap<TileId, (u64, Seq, Tile)> = old
                    .iter()
                    .map(|r| self.snapshot_row(r).map(|(id, s, v, t)| (id, (s, v, t))))
                    .collect::<Result<_, _>>()?;
                let (mut versions, mut pixels) = (Vec::new(), Vec::new());
                for (id, rows) in chunk {
                    let (after, version, mut tile) =
                        old.remove(id).unwrap_or((0, Seq(0), Tile::new(self.depth)));
                    versions.push(apply(&mut tile, rows, after, version).0 as i64);
                    pixels.push(tile.into_bytes());
                }
                tx.execute(
                    "INSERT INTO tile_snapshots (tx, ty, seq, version, pixels)
                     SELECT q.tx, q.ty, $3, q.version, q.pixels
                     FROM unnest($1::integer[], $2::integer[], $4::bigint[], $5::bytea[])
                          AS q(tx, ty, version, pixels)
                     ON CONFLICT (tx, ty) DO UPDATE SET seq = excluded.seq,
                         version = excluded.version, pixels = excluded.pixels, taken_at = now()",
                    &[&txs, &tys, &(durable as i64), &versions, &pixels],
                )
                .await
                .map_err(pg)?;
            }
            tx.execute(
                "UPDATE rplace_state SET snapshot_seq = $1 WHERE id = 1",
                &[&(durable as i64)],
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok(Some(Seq(durable)))
        })
        .await
    }

    /// One `tile_snapshots` row: the tile, its snapshot's seq, its version, its pixels.
    fn snapshot_row(
        &self,
        r: &tokio_postgres::Row,
    ) -> Result<(TileId, u64, Seq, Tile), StoreError> {
        let id = TileId::new_unchecked(r.get::<_, i32>(0) as u32, r.get::<_, i32>(1) as u32);
        let seq = r.get::<_, i64>(2) as u64;
        let version = Seq(r.get::<_, i64>(3) as u64);
        let tile = Tile::from_bytes(self.depth, r.get(4)).map_err(|e| {
            corrupt(format!(
                "the snapshot of tile {},{} at seq {seq}: {e}",
                id.tx(),
                id.ty()
            ))
        })?;
        Ok((id, seq, version, tile))
    }

    /// The placements in `(after, upto]`, in seq order, grouped by tile, and how many.
    /// Streams them as binary `COPY`, the fastest way out of PostgreSQL (10M rows in
    /// about 7 s on two cores).
    async fn rows_by_tile(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        after: Seq,
        upto: Option<Seq>,
    ) -> Result<(ByTile, u64), StoreError> {
        let upto = upto.map(|s| s.0 as i64).unwrap_or(i64::MAX);
        // COPY takes no parameters; both bounds are integers.
        let sql = format!(
            "COPY (SELECT seq, x, y, color FROM placements WHERE seq > {} AND seq <= {upto}
                   ORDER BY seq)
             TO STDOUT (FORMAT binary)",
            after.0 as i64
        );
        let stream = tx.copy_out(sql.as_str()).await.map_err(pg)?;
        pin_mut!(stream);
        let mut rows = CopyRows::new([8, 4, 4, 2]);
        let mut out = ByTile::new();
        let mut n = 0u64;
        let side = i64::from(rplace_domain::board::MAX_SIDE);
        while let Some(chunk) = stream.next().await {
            rows.push(&chunk.map_err(pg)?);
            while let Some([seq, x, y, color]) = rows.next_row().map_err(corrupt)? {
                n += 1;
                // Rows come from placements that went through `Dimensions::coord`.
                if !(0..side).contains(&x) || !(0..side).contains(&y) {
                    continue;
                }
                let c = Coord::new_unchecked(x as u32, y as u32);
                let id = TileId::of(c);
                out.entry(id)
                    .or_default()
                    .push((seq as u64, id.local_index(c), color as u8));
            }
        }
        if !rows.finished() {
            return Err(corrupt("COPY output ended early"));
        }
        Ok((out, n))
    }
}
