//! The embedded backend's part of [`crate::activity`]: the rasters and their watermark in
//! SQLite tables of their own, read on the reader pool and written, one step per short
//! immediate transaction, on a connection of its own (as the counts are).

use super::*;
use crate::activity::Activity;

/// This area's SQLite migrations: versions 1000 to 1099 (see `schema::migrate_areas`).
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1000,
    "activity rasters of painted tiles",
    "CREATE TABLE activity_state (
         id INTEGER PRIMARY KEY CHECK (id = 1),
         through INTEGER NOT NULL
     );
     INSERT INTO activity_state (id, through) VALUES (1, 0);
     CREATE TABLE activity_tiles (key INTEGER PRIMARY KEY, raster BLOB NOT NULL);",
)];

fn through(c: &Connection) -> Result<Seq, StoreError> {
    schema::watermark(c, "activity_state")
}

impl Activity for EmbeddedStore {
    async fn activity_through(&self) -> Result<Seq, StoreError> {
        self.read(through).await
    }

    async fn activity_tiles(&self, keys: Vec<u64>) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached("SELECT raster FROM activity_tiles WHERE key = ?1")
                .map_err(backend)?;
            let mut out = Vec::new();
            for key in keys {
                let blob: Option<Vec<u8>> = stmt
                    .query_row([key as i64], |r| r.get(0))
                    .optional()
                    .map_err(backend)?;
                out.extend(blob.map(|b| (key, b)));
            }
            Ok(out)
        })
        .await
    }

    async fn painted_in(&self, area: [u32; 4], limit: usize) -> Result<Vec<u64>, StoreError> {
        let [lo, hi, tx0, tx1] = crate::activity::key_bounds(area);
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT key FROM activity_tiles WHERE key BETWEEN ?1 AND ?2
                     AND (key & 4294967295) BETWEEN ?3 AND ?4 ORDER BY key LIMIT ?5",
                )
                .map_err(backend)?;
            stmt.query_map(params![lo, hi, tx0, tx1, limit as i64], |r| {
                r.get::<_, i64>(0)
            })
            .and_then(|rows| rows.map(|k| k.map(|k| k as u64)).collect())
            .map_err(backend)
        })
        .await
    }

    async fn activity_apply(
        &self,
        after: Seq,
        to: Seq,
        tiles: Vec<(u64, Vec<u8>)>,
    ) -> Result<bool, StoreError> {
        self.side_write(move |tx| {
            if through(tx)? != after {
                return Ok(false);
            }
            let mut put = tx
                .prepare_cached(
                    "INSERT INTO activity_tiles (key, raster) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET raster = excluded.raster",
                )
                .map_err(backend)?;
            for (key, raster) in &tiles {
                put.execute(params![*key as i64, raster]).map_err(backend)?;
            }
            tx.execute(
                "UPDATE activity_state SET through = ?1 WHERE id = 1",
                [to.0 as i64],
            )
            .map_err(backend)?;
            Ok(true)
        })
        .await
    }
}
