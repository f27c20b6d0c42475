//! The shared backend's part of [`crate::rewrite`].
//!
//! # Planning
//! Rollbacks and restores are planned from PostgreSQL at one seq `L`, the live seq when the
//! plan starts, once the history holds every placement up to it (the history writers trail
//! Redis by a commit; a dead instance's placements arrive with the reconciler). A user's
//! placements are found through the index on `(user_id, seq)` (migration 300), a pixel's
//! through `(x, y, seq DESC)`, many pixels per query (`unnest` + `LATERAL`). Fills and
//! stamps are planned from the live tiles they touch and the seq.
//!
//! # Applying
//! Chunk by chunk through one script, `lua/place_many.lua`, which writes ordinary
//! placements (stream, tiles and their versions, seq, one `PUBLISH` per chunk) so that
//! every instance's feed
//! delivers them in order. Redis keeps no seq per pixel, so the compare-and-set works on
//! the stream instead: starting from the plan's seq, every script call reads the stream
//! entries since the previous call (other placements, a few per chunk), leaves their
//! pixels out and returns them, and this side leaves them out of the later chunks. A pixel
//! someone placed on after the plan is therefore never overwritten: it is counted as
//! skipped. Each chunk is written to PostgreSQL (`History::write`, the history writer's
//! own call, fenced by the epoch) in a transaction of its own while the next chunk's
//! script runs, and the action answers once every chunk is durable; so the placements are
//! in PostgreSQL like any other, the pace follows what the history takes, and normal
//! placements' commits never wait behind a chunk.

use super::history::{REWRITE_TIMEOUT, Written};
use super::history::{from_time, pg, row_to_placement, to_time};
use super::live::TileWrite;
use super::*;
use crate::rewrite::{
    Applied, CHUNK, Change, Moment, Plan, Rewrite, RewriteError, RollbackQuery, UserPlacements,
    seq_at_time,
};
use futures_util::{StreamExt, TryStreamExt, stream};
use rplace_domain::{ColorIndex, Rect};
use std::collections::HashSet;
use std::sync::LazyLock;
use std::time::SystemTime;

/// This area's PostgreSQL migrations: versions 300 to 399 (see
/// `history::schema::migrate`).
pub(crate) const MIGRATIONS: &[(i32, &str, &str)] = &[(
    300,
    "placements by user",
    // Rollback by user and the admin page's user lookup. Costs each placement one more
    // index entry (see BENCHMARKS.md, "Issue 9").
    "CREATE INDEX placements_user ON placements (user_id, seq)",
)];

/// The chunk script.
static PLACE_MANY: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&super::live::with_tile_prelude(include_str!(
        "lua/place_many.lua"
    )))
});

/// Pixels per history query of a plan.
const QUERY_PIXELS: usize = 8192;
/// History queries of one plan running at once.
const PLAN_QUERIES: usize = 4;

/// Per pixel of `unnest($1, $2)`: its newest placement up to seq $6, whether the
/// rollback ($3 users, times from $4 to $5) undoes it, and the color of the newest one it
/// does not undo (0: none).
const SQL_ROLLBACK: &str = "SELECT q.x, q.y, t.seq, t.color,
                                    t.user_id = ANY($3)
                                      AND ($4::timestamptz IS NULL OR t.ts >= $4)
                                      AND ($5::timestamptz IS NULL OR t.ts <= $5),
                                    coalesce(k.color, 0::smallint)
                             FROM unnest($1::integer[], $2::integer[]) AS q(x, y)
                             CROSS JOIN LATERAL (
                                 SELECT seq, color, user_id, ts FROM placements p
                                 WHERE p.x = q.x AND p.y = q.y AND p.seq <= $6
                                 ORDER BY p.seq DESC LIMIT 1) t
                             LEFT JOIN LATERAL (
                                 SELECT color FROM placements p
                                 WHERE p.x = q.x AND p.y = q.y AND p.seq <= $6
                                   AND NOT (p.user_id = ANY($3)
                                            AND ($4::timestamptz IS NULL OR p.ts >= $4)
                                            AND ($5::timestamptz IS NULL OR p.ts <= $5))
                                 ORDER BY p.seq DESC LIMIT 1) k ON true";

/// Per pixel of `unnest($1, $2)`, in order: its color after seq $3 (0: none).
const SQL_COLOR_AT: &str = "SELECT coalesce(k.color, 0::smallint)
                             FROM unnest($1::integer[], $2::integer[]) WITH ORDINALITY AS q(x, y, i)
                             LEFT JOIN LATERAL (
                                 SELECT color FROM placements p
                                 WHERE p.x = q.x AND p.y = q.y AND p.seq <= $3
                                 ORDER BY p.seq DESC LIMIT 1) k ON true
                             ORDER BY q.i";

fn redis_err(e: redis::RedisError) -> StoreError {
    StoreError::Backend(BackendError::redis(e))
}

/// The rectangle's bounds as SQL parameters: x from, x to, y from, y to.
fn bounds(r: Rect) -> [i32; 4] {
    [
        r.x() as i32,
        (r.x() + r.w() - 1) as i32,
        r.y() as i32,
        (r.y() + r.h() - 1) as i32,
    ]
}

/// A pixel's name in `place_many.lua`: `y * 2^22 + x`, the same whatever the width.
fn pixel_name(c: Coord) -> u64 {
    u64::from(c.y()) << 22 | u64::from(c.x())
}

/// Tiles read per `MULTI` while planning a paint.
const PAINT_TILES: usize = 256;

/// `(x, y)` pairs as the two columns of each history query of a plan.
fn columns(pixels: impl Iterator<Item = (i32, i32)>) -> Vec<(Vec<i32>, Vec<i32>)> {
    let mut out: Vec<(Vec<i32>, Vec<i32>)> = Vec::new();
    for (i, (x, y)) in pixels.enumerate() {
        if i % QUERY_PIXELS == 0 {
            out.push((
                Vec::with_capacity(QUERY_PIXELS),
                Vec::with_capacity(QUERY_PIXELS),
            ));
        }
        let last = out.last_mut().expect("pushed above");
        last.0.push(x);
        last.1.push(y);
    }
    out
}

impl SharedStore {
    /// The live seq, once the history holds every placement up to it; waits at most as
    /// long as the reconciler takes to copy a dead instance's placements.
    async fn settled_seq(&self) -> Result<Seq, StoreError> {
        let inner = &self.inner;
        let seq = inner.live_head().await?.seq;
        let deadline = Instant::now()
            + inner.cfg.reconcile_grace
            + inner.cfg.reconcile_interval
            + Duration::from_secs(2);
        loop {
            let (_, durable) = inner.history.state().await?;
            if durable >= seq
                || inner.history.count_between(durable, seq).await? == seq.0 - durable.0
            {
                return Ok(seq);
            }
            if Instant::now() >= deadline {
                return Err(BackendError::HistoryUnavailable.into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The seq and time of the first placement at or after `seq`.
    pub(crate) async fn first_at(&self, seq: Seq) -> Result<Option<(Seq, i64)>, StoreError> {
        let h = &self.inner.history;
        h.bounded_long(async {
            let row = h
                .client()
                .await?
                .query_opt(
                    "SELECT seq, ts FROM placements WHERE seq >= $1 ORDER BY seq LIMIT 1",
                    &[&(seq.0 as i64)],
                )
                .await
                .map_err(pg)?;
            Ok(row.map(|r| (Seq(r.get::<_, i64>(0) as u64), from_time(r.get(1)))))
        })
        .await
    }

    /// Writes one applied chunk to PostgreSQL in a transaction of its own, beside the
    /// history writer's: a placement's commit never waits behind a chunk's thousands of
    /// rows. Answered through [`wait_durable`].
    fn send_durable(&self, rows: Vec<Placement>, epoch: u64) -> JoinHandle<Result<(), StoreError>> {
        let history = self.inner.history.clone();
        let diverged = self.inner.diverged.clone();
        tokio::spawn(async move {
            match history.write_chunk(epoch, &rows).await? {
                Written::Stored { conflicts } if conflicts.is_empty() => Ok(()),
                Written::Stored { conflicts } => {
                    tracing::error!(
                        ?conflicts,
                        "the history already holds other placements under these seqs"
                    );
                    diverged.notify_one();
                    Err(BackendError::Diverged.into())
                }
                Written::Stale => Err(BackendError::Superseded.into()),
            }
        })
    }
}

/// Waits until a chunk is in PostgreSQL. A failed write leaves the chunk in the Redis
/// stream, from where the reconciler copies it.
async fn wait_durable(write: JoinHandle<Result<(), StoreError>>) -> Result<(), StoreError> {
    write
        .await
        .map_err(|_| BackendError::Stopped("history write"))?
}

impl Rewrite for SharedStore {
    async fn plan_rollback(&self, q: &RollbackQuery, limit: u64) -> Result<Plan, RewriteError> {
        let at = self.settled_seq().await?;
        let h = &self.inner.history;
        let dims = self.inner.dims();
        let users: Vec<i64> = q.users.iter().map(|u| u.0 as i64).collect();
        let since: Option<SystemTime> = q.since_ms.map(to_time);
        let until: Option<SystemTime> = q.until_ms.map(to_time);
        let [x0, x1, y0, y1] = bounds(q.rect.unwrap_or(Rect::board(dims)));
        let pixels: Vec<(i32, i32)> = h
            .bounded_long(async {
                let rows = h
                    .client()
                    .await?
                    .query(
                        "SELECT DISTINCT x, y FROM placements
                         WHERE user_id = ANY($1) AND seq <= $2
                           AND ($3::timestamptz IS NULL OR ts >= $3)
                           AND ($4::timestamptz IS NULL OR ts <= $4)
                           AND x BETWEEN $5 AND $6 AND y BETWEEN $7 AND $8",
                        &[&users, &(at.0 as i64), &since, &until, &x0, &x1, &y0, &y1],
                    )
                    .await
                    .map_err(pg)?;
                Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
            })
            .await?;
        // Per pixel: its newest placement up to the plan's seq, whether the rollback
        // undoes it, and the color of the newest one it does not undo. A few batches at
        // once, on pooled connections.
        let (users, since, until) = (&users, &since, &until);
        let batches: Vec<Vec<tokio_postgres::Row>> =
            stream::iter(columns(pixels.iter().map(|p| (p.0, p.1))))
                .map(|(xs, ys)| async move {
                    h.bounded_long(async {
                        h.client()
                            .await?
                            .query(
                                SQL_ROLLBACK,
                                &[&xs, &ys, users, since, until, &(at.0 as i64)],
                            )
                            .await
                            .map_err(pg)
                    })
                    .await
                })
                .buffered(PLAN_QUERIES)
                .try_collect()
                .await?;
        let mut changes = Vec::new();
        for r in batches.into_iter().flatten() {
            let (undone, current, target): (bool, i16, i16) = (r.get(4), r.get(3), r.get(5));
            if undone && current != target {
                changes.push(Change {
                    coord: Coord::new_unchecked(
                        r.get::<_, i32>(0) as u32,
                        r.get::<_, i32>(1) as u32,
                    ),
                    color: ColorIndex::new_unchecked(target as u8),
                    expected: Seq(r.get::<_, i64>(2) as u64),
                });
            }
        }
        if changes.len() as u64 > limit {
            return Err(RewriteError::TooLarge {
                limit,
                found: changes.len() as u64,
            });
        }
        Ok(Plan { changes, at })
    }

    async fn plan_restore(&self, rect: Rect, to: Moment, limit: u64) -> Result<Plan, RewriteError> {
        let at = self.settled_seq().await?;
        let s = match to {
            Moment::Seq(s) => s.min(at),
            Moment::At(t) => seq_at_time(at, t, |s| self.first_at(s)).await?,
        };
        let h = &self.inner.history;
        let [x0, x1, y0, y1] = bounds(rect);
        // The pixels placed on after the moment, each with its newest placement.
        let moved: Vec<(i32, i32, i16, i64)> = h
            .bounded_long(async {
                let rows = h
                    .client()
                    .await?
                    .query(
                        "SELECT DISTINCT ON (x, y) x, y, color, seq FROM placements
                         WHERE seq > $1 AND seq <= $2
                           AND x BETWEEN $3 AND $4 AND y BETWEEN $5 AND $6
                         ORDER BY x, y, seq DESC",
                        &[&(s.0 as i64), &(at.0 as i64), &x0, &x1, &y0, &y1],
                    )
                    .await
                    .map_err(pg)?;
                Ok(rows
                    .iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                    .collect())
            })
            .await?;
        let batches: Vec<Vec<tokio_postgres::Row>> =
            stream::iter(columns(moved.iter().map(|p| (p.0, p.1))))
                .map(|(xs, ys)| async move {
                    h.bounded_long(async {
                        h.client()
                            .await?
                            .query(SQL_COLOR_AT, &[&xs, &ys, &(s.0 as i64)])
                            .await
                            .map_err(pg)
                    })
                    .await
                })
                .buffered(PLAN_QUERIES)
                .try_collect()
                .await?;
        let mut changes = Vec::new();
        for (&(x, y, current, top), r) in moved.iter().zip(batches.into_iter().flatten()) {
            let then: i16 = r.get(0);
            if then != current {
                changes.push(Change {
                    coord: Coord::new_unchecked(x as u32, y as u32),
                    color: ColorIndex::new_unchecked(then as u8),
                    expected: Seq(top as u64),
                });
            }
        }
        if changes.len() as u64 > limit {
            return Err(RewriteError::TooLarge {
                limit,
                found: changes.len() as u64,
            });
        }
        Ok(Plan { changes, at })
    }

    /// Reads only the tiles the paint touches, a few hundred per `MULTI`. The plan's seq
    /// is the first read's: a pixel someone placed on after it is left alone by `apply`
    /// (it finds the placement in the stream), whatever a later read saw of it.
    async fn plan_paint(&self, paint: Vec<(Coord, ColorIndex)>) -> Result<Plan, RewriteError> {
        let inner = &self.inner;
        let dims = inner.dims();
        let paint: Vec<(Coord, ColorIndex)> = paint
            .into_iter()
            .filter(|&(c, _)| dims.contains(c))
            .collect();
        let mut ids: Vec<TileId> = paint.iter().map(|&(c, _)| TileId::of(c)).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut tiles = std::collections::HashMap::with_capacity(ids.len());
        let mut at = None;
        for chunk in ids.chunks(PAINT_TILES) {
            let read = inner.live_tiles(chunk).await?;
            at.get_or_insert(read.head.seq);
            tiles.extend(chunk.iter().copied().zip(read.tiles));
        }
        let at = match at {
            Some(at) => at,
            None => inner.live_head().await?.seq,
        };
        let changes = paint
            .into_iter()
            .filter(|&(c, color)| {
                let id = TileId::of(c);
                let now = tiles[&id]
                    .pixels
                    .as_ref()
                    .map(|t| t.get(id.local_index(c)).get())
                    .unwrap_or(0);
                now != color.get()
            })
            .map(|(coord, color)| Change {
                coord,
                color,
                expected: Seq(0),
            })
            .collect();
        Ok(Plan { changes, at })
    }

    async fn apply(&self, plan: &Plan, by: UserId) -> Result<Applied, RewriteError> {
        let inner = &self.inner;
        let keys = &inner.live.keys;
        let bitfield = match inner.cfg.depth {
            Depth::Four => "u4",
            Depth::Eight => "u8",
        };
        let epoch = inner.live_head().await?.epoch;
        let mut cursor = plan.at;
        // Pixels placed on by others since the plan, by `pixel_name`.
        let mut touched: HashSet<u64> = HashSet::new();
        let mut out = Applied::default();
        let mut done = 0u64;
        let mut in_flight = None;
        let mut conn = inner.live.long_conn(REWRITE_TIMEOUT).await?;
        let clustered = inner.live.clustered();
        for (n, part) in plan.changes.chunks(CHUNK).enumerate() {
            let mut inv = PLACE_MANY.prepare_invoke();
            inv.key(&keys.dims)
                .key(&keys.seq)
                .key(&keys.epoch)
                .key(&keys.clock)
                .key(&keys.stream)
                .arg(bitfield)
                .arg(&keys.channel)
                .arg(epoch)
                .arg(cursor.0)
                .arg(if clustered { "1" } else { "0" })
                .arg(by.0 as i64);
            let mut sent = Vec::with_capacity(part.len());
            for (i, c) in part.iter().enumerate() {
                if touched.contains(&pixel_name(c.coord)) {
                    out.skipped.push(n * CHUNK + i);
                    continue;
                }
                let tile = TileId::of(c.coord);
                if clustered {
                    inv.key(&keys.tiles_last).key(&keys.tiles_last);
                } else {
                    inv.key(keys.tile(tile)).key(keys.tile_version(tile));
                }
                inv.arg(tile.local_index(c.coord))
                    .arg(c.color.get())
                    .arg(c.coord.x())
                    .arg(c.coord.y());
                sent.push((i, c));
            }
            if sent.is_empty() {
                continue;
            }
            let call = inv.invoke_async::<Vec<i64>>(&mut conn);
            // A chunk's script runs thousands of pixels: the bound of a rewrite, not of one
            // placement.
            let reply = tokio::time::timeout(REWRITE_TIMEOUT, call)
                .await
                .map_err(|_| StoreError::from(BackendError::Timeout(Service::Redis)))?
                .map_err(redis_err)?;
            let (at_ms, first, now_seq, others, prevs) = match reply.as_slice() {
                [_, at_ms, first, now_seq, named, rest @ ..] if *named as usize <= rest.len() => {
                    let (others, prevs) = rest.split_at(*named as usize);
                    (*at_ms, *first as u64, *now_seq as u64, others, prevs)
                }
                _ => return Err(RewriteError::Interrupted { applied: done }),
            };
            touched.extend(others.iter().map(|&i| i as u64));
            cursor = Seq(now_seq);
            inner.health.seq_seen.fetch_max(now_seq, Ordering::Relaxed);
            // Which of the sent pixels the script applied, as it decided: those nobody
            // placed on, each once.
            let mut rows = Vec::with_capacity(sent.len());
            let mut seq = first;
            for (i, c) in sent {
                if !touched.insert(pixel_name(c.coord)) {
                    out.skipped.push(n * CHUNK + i);
                    continue;
                }
                rows.push(Placement {
                    seq: Seq(seq),
                    coord: c.coord,
                    color: c.color,
                    user: by,
                    at_ms,
                });
                seq += 1;
            }
            if clustered {
                // The script chained each written pixel to its tile's previous placement;
                // now the tiles, in their slots.
                if prevs.len() != rows.len() {
                    return Err(RewriteError::Interrupted { applied: done });
                }
                let writes: Vec<TileWrite> = rows
                    .iter()
                    .zip(prevs)
                    .map(|(r, &prev)| {
                        let tile = TileId::of(r.coord);
                        TileWrite {
                            tile,
                            prev: Seq(prev as u64),
                            seq: r.seq,
                            index: tile.local_index(r.coord) as u32,
                            color: r.color.get(),
                        }
                    })
                    .collect();
                inner.live.write_to_tiles(&mut conn, &writes).await;
            }
            if let (Some(f), Some(l)) = (rows.first(), rows.last()) {
                out.first_seq.get_or_insert(f.seq);
                out.last_seq = Some(l.seq);
                done += rows.len() as u64;
            }
            metrics::counter!("rplace_store_rewrite_placements_total").increment(rows.len() as u64);
            // One chunk's history write overlaps the next chunk's script: at most two
            // chunks wait for PostgreSQL at once.
            let waits = self.send_durable(rows, epoch);
            if let Some(prev) = in_flight.replace(waits) {
                wait_durable(prev).await?;
            }
        }
        if let Some(last) = in_flight {
            wait_durable(last).await?;
        }
        Ok(out)
    }

    async fn user_placements(
        &self,
        users: &[UserId],
        limit: usize,
    ) -> Result<UserPlacements, StoreError> {
        let h = &self.inner.history;
        let users: Vec<i64> = users.iter().map(|u| u.0 as i64).collect();
        h.bounded_long(async {
            let client = h.client().await?;
            let row = client
                .query_one(
                    "SELECT count(*), min(ts), max(ts) FROM placements WHERE user_id = ANY($1)",
                    &[&users],
                )
                .await
                .map_err(pg)?;
            let newest = client
                .query(
                    "SELECT seq, x, y, color, user_id, ts FROM placements
                     WHERE user_id = ANY($1) ORDER BY seq DESC LIMIT $2",
                    &[&users, &(limit as i64)],
                )
                .await
                .map_err(pg)?;
            Ok(UserPlacements {
                count: row.get::<_, i64>(0) as u64,
                first_at: row.get::<_, Option<SystemTime>>(1).map(from_time),
                last_at: row.get::<_, Option<SystemTime>>(2).map(from_time),
                newest: newest.iter().map(row_to_placement).collect(),
            })
        })
        .await
    }
}
