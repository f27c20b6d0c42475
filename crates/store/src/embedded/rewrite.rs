//! The embedded backend's part of [`crate::rewrite`].
//!
//! Plans read the history on a read connection, never the writer: a pixel's placements by
//! following its `prev` links from the newest (which the writer keeps in memory), a user's
//! placements by a scan of the seq range their time range covers. There is no index on
//! `placements (user)`: it would cost every placement a random page write (see the module
//! docs of `embedded` and BENCHMARKS.md, "Issue 9"), to speed up a rare moderator action.
//!
//! Applying sends the plan to the writer in chunks ([`Cmd::Rewrite`]); the writer commits
//! each chunk as one transaction of ordinary placements, between batches of normal ones.

use super::writer::Writer;
use super::*;
use crate::rewrite::{
    Applied, CHUNK, Change, Moment, Plan, Rewrite, RewriteError, RollbackQuery, UserPlacements,
};
use rplace_domain::Rect;

/// This area's SQLite migrations: versions 300 to 399, recorded in
/// `schema_migrations` (see `schema::migrate_areas`).
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[];

/// One chunk of a plan on its way to the writer.
pub(crate) struct Chunk {
    /// The pixels, each with the seq the plan saw on it.
    pub changes: Vec<Change>,
    /// The moderator the placements are attributed to.
    pub by: UserId,
    /// Answered once the chunk is committed (or failed).
    pub reply: oneshot::Sender<Result<ChunkDone, StoreError>>,
}

/// What the writer did with one chunk.
pub(crate) struct ChunkDone {
    /// Seqs of the first and last placement made, if any.
    pub seqs: Option<(Seq, Seq)>,
    /// Indexes into the chunk of the pixels someone placed on since the plan.
    pub skipped: Vec<usize>,
}

/// One row of the log, as a plan walks a pixel's history.
struct Row {
    placement: Placement,
    /// Seq of the placement before it on the same pixel (0: none).
    prev: u64,
}

fn read_row(c: &Connection, seq: u64) -> Result<Row, StoreError> {
    let mut stmt = c
        .prepare_cached("SELECT seq, x, y, color, user, ts, prev FROM placements WHERE seq = ?1")
        .map_err(backend)?;
    stmt.query_row([seq as i64], |r| {
        Ok(Row {
            placement: row_to_placement(r)?,
            prev: r.get::<_, Option<i64>>(6)?.unwrap_or(0) as u64,
        })
    })
    .map_err(backend)
}

/// The seq and time of the first placement at or after `seq`.
fn first_at(c: &Connection, seq: Seq) -> Result<Option<(Seq, i64)>, StoreError> {
    c.prepare_cached("SELECT seq, ts FROM placements WHERE seq >= ?1 ORDER BY seq LIMIT 1")
        .map_err(backend)?
        .query_row([seq.0 as i64], |r| {
            Ok((Seq(r.get::<_, i64>(0)? as u64), r.get(1)?))
        })
        .optional()
        .map_err(backend)
}

/// `?, ?, …` for `n` values.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

fn too_large(limit: u64, found: usize) -> Result<(), RewriteError> {
    if found as u64 > limit {
        return Err(RewriteError::TooLarge {
            limit,
            found: found as u64,
        });
    }
    Ok(())
}

impl EmbeddedStore {
    /// The last seq whose placement is at or before `t` (0: none).
    pub(super) async fn seq_at(&self, head: Seq, t: i64) -> Result<Seq, StoreError> {
        // Each probe is one lookup by seq: the search takes a few dozen of them.
        self.read(move |c| {
            let mut lo_hi = (0u64, head.0);
            while lo_hi.0 < lo_hi.1 {
                let (lo, hi) = lo_hi;
                let mid = lo + (hi - lo).div_ceil(2);
                lo_hi = match first_at(c, Seq(mid))? {
                    Some((s, at)) if s.0 <= hi && at <= t => (s.0, hi),
                    _ => (lo, mid - 1),
                };
            }
            Ok(Seq(lo_hi.0))
        })
        .await
    }

    /// The current color and newest seq of each of `coords` whose newest seq is above
    /// `above`, at one moment, with the seq of that moment.
    async fn pixels_now(
        &self,
        coords: impl Iterator<Item = Coord>,
        above: Seq,
    ) -> Result<(Seq, Vec<(Coord, ColorIndex, u64)>), StoreError> {
        let (at, all) = self.pixels_at(coords.collect()).await?;
        Ok((
            at,
            all.into_iter()
                .filter(|&(_, _, top)| top > above.0)
                .collect(),
        ))
    }
}

/// `changes` in runs of at most [`CHUNK`] that each touch at most `tiles` tiles, so that
/// the writer holds every tile of a chunk at once.
fn tile_chunks(changes: &[Change], tiles: usize) -> impl Iterator<Item = &[Change]> {
    let mut rest = changes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut keys = HashSet::new();
        let n = rest
            .iter()
            .take(CHUNK)
            .position(|c| {
                keys.insert(TileId::of(c.coord).key());
                keys.len() > tiles
            })
            .unwrap_or(rest.len().min(CHUNK));
        let (part, tail) = rest.split_at(n.max(1));
        rest = tail;
        Some(part)
    })
}

impl Rewrite for EmbeddedStore {
    async fn plan_rollback(&self, q: &RollbackQuery, limit: u64) -> Result<Plan, RewriteError> {
        let head = self.state.lock().expect("state lock").seq;
        // Times grow with the seq: the time range is a seq range, found by binary search.
        let from = match q.since_ms {
            Some(t) => Seq(self.seq_at(head, t.saturating_sub(1)).await?.0 + 1),
            None => Seq(1),
        };
        let to = match q.until_ms {
            Some(t) => self.seq_at(head, t).await?,
            None => head,
        };
        if from > to || q.users.is_empty() {
            return Ok(Plan {
                changes: Vec::new(),
                at: head,
            });
        }
        let users: Vec<i64> = q.users.iter().map(|u| u.0 as i64).collect();
        let rect = q.rect;
        let pixels: Vec<(u32, u32)> = self
            .read(move |c| {
                let mut sql = format!(
                    "SELECT DISTINCT x, y FROM placements WHERE seq BETWEEN ? AND ? AND user IN ({})",
                    placeholders(users.len())
                );
                let mut args: Vec<i64> = vec![from.0 as i64, to.0 as i64];
                args.extend(&users);
                if let Some(r) = rect {
                    sql.push_str(" AND x BETWEEN ? AND ? AND y BETWEEN ? AND ?");
                    args.extend([
                        i64::from(r.x()),
                        i64::from(r.x()) + i64::from(r.w()) - 1,
                        i64::from(r.y()),
                        i64::from(r.y()) + i64::from(r.h()) - 1,
                    ]);
                }
                let mut stmt = c.prepare(&sql).map_err(backend)?;
                stmt.query_map(rusqlite::params_from_iter(args), |r| {
                    Ok((r.get::<_, i64>(0)? as u32, r.get::<_, i64>(1)? as u32))
                })
                .and_then(|rows| rows.collect())
                .map_err(backend)
            })
            .await?;
        let (at, now) = self
            .pixels_now(
                pixels.iter().map(|&(x, y)| Coord::new_unchecked(x, y)),
                Seq(0),
            )
            .await?;
        let q = q.clone();
        let changes = self
            .read(move |c| {
                let mut changes = Vec::new();
                for (coord, current, top) in now {
                    // Walk back over the undone placements from the newest one.
                    let mut next = top;
                    let mut target = ColorIndex::new_unchecked(0);
                    let mut undone_on_top = false;
                    while next != 0 {
                        let row = read_row(c, next)?;
                        if !q.undoes(&row.placement) {
                            target = row.placement.color;
                            break;
                        }
                        undone_on_top = true;
                        next = row.prev;
                    }
                    // The newest placement is someone else's: it stays.
                    if undone_on_top && target != current {
                        changes.push(Change {
                            coord,
                            color: target,
                            expected: Seq(top),
                        });
                        if changes.len() as u64 > limit {
                            // Stop walking: the answer is a refusal anyway.
                            return Ok(changes);
                        }
                    }
                }
                Ok(changes)
            })
            .await?;
        too_large(limit, changes.len())?;
        Ok(Plan { changes, at })
    }

    async fn plan_restore(&self, rect: Rect, to: Moment, limit: u64) -> Result<Plan, RewriteError> {
        let head = self.state.lock().expect("state lock").seq;
        let s = match to {
            Moment::Seq(s) => s.min(head),
            Moment::At(t) => self.seq_at(head, t).await?,
        };
        // Only pixels placed on after the moment can differ from it.
        let (at, moved) = self.pixels_now(rect.coords(), s).await?;
        let changes = self
            .read(move |c| {
                let mut changes = Vec::new();
                for (coord, current, top) in moved {
                    let mut next = top;
                    while next > s.0 {
                        next = read_row(c, next)?.prev;
                    }
                    let then = if next == 0 {
                        ColorIndex::new_unchecked(0)
                    } else {
                        read_row(c, next)?.placement.color
                    };
                    if then != current {
                        changes.push(Change {
                            coord,
                            color: then,
                            expected: Seq(top),
                        });
                    }
                }
                Ok(changes)
            })
            .await?;
        too_large(limit, changes.len())?;
        Ok(Plan { changes, at })
    }

    async fn plan_paint(&self, paint: Vec<(Coord, ColorIndex)>) -> Result<Plan, RewriteError> {
        let dims = self.dims();
        let paint: Vec<(Coord, ColorIndex)> = paint
            .into_iter()
            .filter(|&(c, _)| dims.contains(c))
            .collect();
        let (at, now) = self
            .pixels_at(paint.iter().map(|&(c, _)| c).collect())
            .await?;
        let changes = paint
            .into_iter()
            .zip(now)
            .filter(|&((_, color), (_, current, _))| current != color)
            .map(|((coord, color), (_, _, top))| Change {
                coord,
                color,
                expected: Seq(top),
            })
            .collect();
        Ok(Plan { changes, at })
    }

    async fn apply(&self, plan: &Plan, by: UserId) -> Result<Applied, RewriteError> {
        let mut out = Applied::default();
        let mut done = 0u64;
        let mut offset = 0;
        for part in tile_chunks(&plan.changes, self.tile_cache) {
            let (reply, rx) = oneshot::channel();
            let chunk = Chunk {
                changes: part.to_vec(),
                by,
                reply,
            };
            let interrupted = RewriteError::Interrupted { applied: done };
            if self.tx.send(Cmd::Rewrite(chunk)).await.is_err() {
                return Err(interrupted);
            }
            let Ok(res) = rx.await else {
                return Err(interrupted);
            };
            let chunk = res?;
            if let Some((first, last)) = chunk.seqs {
                out.first_seq.get_or_insert(first);
                out.last_seq = Some(last);
                done += last.0 - first.0 + 1;
            }
            out.skipped
                .extend(chunk.skipped.into_iter().map(|i| offset + i));
            offset += part.len();
        }
        Ok(out)
    }

    async fn user_placements(
        &self,
        users: &[UserId],
        limit: usize,
    ) -> Result<UserPlacements, StoreError> {
        if users.is_empty() {
            return Ok(UserPlacements::default());
        }
        let users: Vec<i64> = users.iter().map(|u| u.0 as i64).collect();
        self.read(move |c| {
            let list = placeholders(users.len());
            let (count, first_at, last_at) = c
                .query_row(
                    &format!(
                        "SELECT count(*), min(ts), max(ts) FROM placements WHERE user IN ({list})"
                    ),
                    rusqlite::params_from_iter(&users),
                    |r| Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?)),
                )
                .map_err(backend)?;
            let mut args = users.clone();
            args.push(limit as i64);
            let mut stmt = c
                .prepare(&format!(
                    "SELECT seq, x, y, color, user, ts FROM placements WHERE user IN ({list}) \
                     ORDER BY seq DESC LIMIT ?"
                ))
                .map_err(backend)?;
            let newest = stmt
                .query_map(rusqlite::params_from_iter(args), row_to_placement)
                .and_then(|rows| rows.collect())
                .map_err(backend)?;
            Ok(UserPlacements {
                count: count as u64,
                first_at,
                last_at,
                newest,
            })
        })
        .await
    }
}

impl Writer {
    /// Commits one chunk of a plan as ordinary placements by the moderator: each pixel only
    /// if its newest placement is still the one the plan saw. Exempt from the cooldown and
    /// the rate limit, and leaves the moderator's cooldown as it is.
    pub(super) fn apply_chunk(&mut self, chunk: Chunk) {
        let clock_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        let now_ms = Now::not_before_ms(clock_us, self.last_ts).millis();
        let keys: HashSet<u64> = chunk
            .changes
            .iter()
            .map(|c| TileId::of(c.coord).key())
            .collect();
        if let Err(e) = self.prepare(&keys) {
            tracing::error!(error = %Chain(&e), "loading tiles for a moderation chunk failed");
            let _ = chunk.reply.send(Err(e));
            return;
        }
        let mut rows = Vec::with_capacity(chunk.changes.len());
        let mut prevs = Vec::with_capacity(chunk.changes.len());
        let mut skipped = Vec::new();
        {
            let st = self.state.lock().expect("state lock");
            let mut seq = st.seq;
            // A pixel twice in one chunk: the second sees the first.
            let mut in_chunk: HashMap<Coord, u64> = HashMap::new();
            for (i, c) in chunk.changes.iter().enumerate() {
                let newest = in_chunk
                    .get(&c.coord)
                    .copied()
                    .unwrap_or_else(|| st.tiles.seq_of(c.coord));
                if newest != c.expected.0 {
                    skipped.push(i);
                    continue;
                }
                seq = seq.next();
                in_chunk.insert(c.coord, seq.0);
                prevs.push(newest);
                rows.push(Placement {
                    seq,
                    coord: c.coord,
                    color: c.color,
                    user: chunk.by,
                    at_ms: now_ms,
                });
            }
        }
        if rows.is_empty() {
            let _ = chunk.reply.send(Ok(ChunkDone {
                seqs: None,
                skipped,
            }));
            return;
        }
        if let Err(e) = self.insert(&rows, &prevs, &[], &HashMap::new()) {
            tracing::error!(error = %Chain(&e), "committing a moderation chunk failed");
            let _ = chunk.reply.send(Err(e.into()));
            return;
        }
        let seqs = (rows[0].seq, rows[rows.len() - 1].seq);
        {
            let mut st = self.state.lock().expect("state lock");
            for p in &rows {
                st.tiles.apply(p.coord, p.color, p.seq.0);
            }
            st.seq = seqs.1;
        }
        self.last_ts = now_ms;
        self.since_snapshot += rows.len() as u64;
        metrics::counter!("rplace_store_placements_committed_total").increment(rows.len() as u64);
        metrics::counter!("rplace_store_rewrite_placements_total").increment(rows.len() as u64);
        self.feed.placements(rows);
        let _ = chunk.reply.send(Ok(ChunkDone {
            seqs: Some(seqs),
            skipped,
        }));
    }
}
