//! [`Past`] for the embedded store (see [`crate::past`] for the design).
//!
//! Tables: `tile_keyframes (key, seq, version, pixels)`, primary key `(key, seq)`, the
//! pixels zstd-compressed packed tile bytes; `keyframe_marks (seq)`, the marks, each
//! recorded in the transaction after its step's last keyframes, so a mark is never seen
//! before its keyframes. Reads go through the reader connections. The keyframer writes on
//! a connection of its own, opened per step, in transactions of
//! [`KEYFRAMES_PER_TX`] keyframes: the writer thread then waits for the database's lock
//! at most one such short transaction (SQLite's busy timeout covers it); it never takes
//! work from the placing path.

use super::*;
use crate::past::{Frame, KEYFRAMES_PER_TX, KeyframeStatus, Past, PastError, by_tile, check_tail};
use rplace_domain::Tile;
use rplace_domain::tile::{TILE_SIZE, tiles_across};

/// This area's SQLite migrations: versions 500 to 599 (see `schema::migrate_areas`).
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[(
    500,
    "tile keyframes",
    "CREATE TABLE tile_keyframes (
         key INTEGER NOT NULL,
         seq INTEGER NOT NULL,
         version INTEGER NOT NULL,
         pixels BLOB NOT NULL,
         PRIMARY KEY (key, seq)
     );
     CREATE TABLE keyframe_marks (seq INTEGER PRIMARY KEY);",
)];

/// zstd level of keyframes: fast, and most of a sparse tile's bytes are zero.
const LEVEL: i32 = 1;

/// The newest mark at or below `at` (0: none).
fn mark_at(c: &Connection, at: Seq) -> Result<Seq, StoreError> {
    c.prepare_cached("SELECT coalesce(max(seq), 0) FROM keyframe_marks WHERE seq <= ?1")
        .map_err(backend)?
        .query_row([at.0 as i64], |r| r.get::<_, i64>(0))
        .map(|s| Seq(s as u64))
        .map_err(backend)
}

/// Tile `key`'s newest keyframe at or below `mark`, or a blank frame.
fn frame_at(c: &Connection, key: u64, mark: Seq, depth: Depth) -> Result<Frame, StoreError> {
    let row: Option<(i64, Vec<u8>)> = c
        .prepare_cached(
            "SELECT version, pixels FROM tile_keyframes WHERE key = ?1 AND seq <= ?2
             ORDER BY seq DESC LIMIT 1",
        )
        .map_err(backend)?
        .query_row(params![key as i64, mark.0 as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
        .map_err(backend)?;
    let Some((version, blob)) = row else {
        return Ok(Frame::blank(depth));
    };
    let corrupt = |what: String| {
        let id = TileId::from_key(key);
        StoreError::from(BackendError::Corrupt(format!(
            "keyframe of tile ({}, {}) at {}: {what}",
            id.tx(),
            id.ty(),
            mark.0
        )))
    };
    let raw =
        zstd::bulk::decompress(&blob, Tile::len(depth)).map_err(|e| corrupt(e.to_string()))?;
    let pixels = Tile::from_bytes(depth, raw).map_err(|e| corrupt(e.to_string()))?;
    Ok(Frame {
        version: version as u64,
        pixels,
    })
}

/// The log rows in `(after, through]`, optionally only those on one tile.
fn rows_between(
    c: &Connection,
    after: Seq,
    through: Seq,
    tile: Option<TileId>,
) -> Result<Vec<Placement>, StoreError> {
    let (x0, y0, x1, y1) = match tile {
        Some(id) => {
            let o = id.origin();
            (
                i64::from(o.x()),
                i64::from(o.y()),
                i64::from(o.x()) + i64::from(TILE_SIZE),
                i64::from(o.y()) + i64::from(TILE_SIZE),
            )
        }
        None => (0, 0, i64::MAX, i64::MAX),
    };
    // The seq range is the primary key's; the rectangle a filter on the rows it reads.
    c.prepare_cached(
        "SELECT seq, x, y, color, user, ts FROM placements
         WHERE seq > ?1 AND seq <= ?2 AND x >= ?3 AND x < ?4 AND y >= ?5 AND y < ?6
         ORDER BY seq",
    )
    .map_err(backend)?
    .query_map(
        params![after.0 as i64, through.0 as i64, x0, x1, y0, y1],
        row_to_placement,
    )
    .and_then(|rows| rows.collect())
    .map_err(backend)
}

/// One keyframer step on its own connection: see [`Past::keyframe_step`].
fn step(path: &PathBuf, head: Seq, every: u64, depth: Depth) -> Result<Option<Seq>, StoreError> {
    let mut c = Connection::open(path).map_err(backend)?;
    c.busy_timeout(Duration::from_secs(5)).map_err(backend)?;
    let mark = mark_at(&c, head)?;
    if head.0 < mark.0 + every {
        return Ok(None);
    }
    let end = Seq(mark.0 + every);
    let rows = rows_between(&c, mark, end, None)?;
    let tiles: Vec<(u64, Vec<&Placement>)> = by_tile(&rows).into_iter().collect();
    for chunk in tiles.chunks(KEYFRAMES_PER_TX) {
        let mut encoded = Vec::with_capacity(chunk.len());
        for (key, placements) in chunk {
            let id = TileId::from_key(*key);
            let mut f = frame_at(&c, *key, mark, depth)?;
            for p in placements {
                f.apply(id, p);
            }
            let blob =
                zstd::bulk::compress(f.pixels.as_bytes(), LEVEL).map_err(StoreError::from)?;
            encoded.push((*key, f.version, blob));
        }
        let tx = c.transaction().map_err(backend)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO tile_keyframes (key, seq, version, pixels)
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(backend)?;
            for (key, version, blob) in &encoded {
                stmt.execute(params![*key as i64, end.0 as i64, *version as i64, blob])
                    .map_err(backend)?;
            }
        }
        tx.commit().map_err(backend)?;
    }
    c.execute(
        "INSERT OR IGNORE INTO keyframe_marks (seq) VALUES (?1)",
        [end.0 as i64],
    )
    .map_err(backend)?;
    Ok(Some(end))
}

impl Past for EmbeddedStore {
    async fn past_status(&self) -> Result<KeyframeStatus, StoreError> {
        let head = self.state.lock().expect("state lock").seq;
        let through = self.read(move |c| mark_at(c, head)).await?;
        Ok(KeyframeStatus { through, head })
    }

    async fn seq_at_time(&self, head: Seq, ms: i64) -> Result<Seq, StoreError> {
        self.seq_at(head, ms).await
    }

    async fn tile_at(&self, id: TileId, at: Seq, tail: u64) -> Result<TileRead, PastError> {
        let depth = self.depth;
        self.read(move |c| {
            let mark = mark_at(c, at)?;
            if let Err(e) = check_tail(at, mark, tail) {
                return Ok(Err(e));
            }
            let mut f = frame_at(c, id.key(), mark, depth)?;
            for p in rows_between(c, mark, at, Some(id))? {
                f.apply(id, &p);
            }
            Ok(Ok(f.read(at)))
        })
        .await?
    }

    async fn board_at(&self, at: Seq, tail: u64) -> Result<Snapshot, PastError> {
        let dims = self.state.lock().expect("state lock").dims;
        if !dims.whole() {
            return Err(StoreError::Config(format!(
                "a {} x {} canvas is not served whole",
                dims.width(),
                dims.height()
            ))
            .into());
        }
        let depth = self.depth;
        self.read(move |c| {
            let mark = mark_at(c, at)?;
            if let Err(e) = check_tail(at, mark, tail) {
                return Ok(Err(e));
            }
            let (across, down) = tiles_across(dims);
            let mut frames = Vec::new();
            for ty in 0..down {
                for tx in 0..across {
                    let id = TileId::new_unchecked(tx, ty);
                    let f = frame_at(c, id.key(), mark, depth)?;
                    if f.version != 0 {
                        frames.push((id, f.pixels));
                    }
                }
            }
            let mut board = tiles::compose(dims, depth, frames);
            for p in rows_between(c, mark, at, None)? {
                board.set(p.coord, p.color);
            }
            Ok(Ok(Snapshot { seq: at, board }))
        })
        .await?
    }

    async fn keyframe_step(&self, every: u64) -> Result<Option<Seq>, StoreError> {
        let head = self.state.lock().expect("state lock").seq;
        // Most calls find nothing to do: ask a pooled reader before opening a connection.
        let mark = self.read(move |c| mark_at(c, head)).await?;
        if head.0 < mark.0 + every.max(1) {
            return Ok(None);
        }
        let (path, depth) = (self.path.clone(), self.depth);
        tokio::task::spawn_blocking(move || step(&path, head, every.max(1), depth))
            .await
            .map_err(|_| BackendError::Stopped("keyframe task"))?
    }
}
