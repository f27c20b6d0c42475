//! The shared backend's part of [`crate::activity`]: the rasters in PostgreSQL, which
//! every instance shares; the watermark row, locked `FOR UPDATE`, lets one step be
//! applied once whichever instances run it.

use super::SharedStore;
use super::history::{History, pg};
use crate::StoreError;
use crate::activity::Activity;
use rplace_domain::Seq;

/// This area's PostgreSQL migrations: versions 1000 to 1099 (see `history::schema::migrate`).
pub(crate) const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1000,
    "activity rasters of painted tiles",
    "CREATE TABLE activity_state (
         id int PRIMARY KEY CHECK (id = 1),
         through bigint NOT NULL
     );
     INSERT INTO activity_state (id, through) VALUES (1, 0);
     CREATE TABLE activity_tiles (key bigint PRIMARY KEY, raster bytea NOT NULL);",
)];

impl Activity for SharedStore {
    async fn activity_through(&self) -> Result<Seq, StoreError> {
        self.inner.history.watermark("activity_state").await
    }

    async fn activity_tiles(&self, keys: Vec<u64>) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let h = &self.inner.history;
        let keys: Vec<i64> = keys.iter().map(|k| *k as i64).collect();
        h.bounded(async {
            let rows = h
                .client()
                .await?
                .query(
                    "SELECT key, raster FROM activity_tiles WHERE key = ANY($1)",
                    &[&keys],
                )
                .await
                .map_err(pg)?;
            Ok(rows
                .iter()
                .map(|r| (r.get::<_, i64>(0) as u64, r.get(1)))
                .collect())
        })
        .await
    }

    async fn painted_in(&self, area: [u32; 4], limit: usize) -> Result<Vec<u64>, StoreError> {
        let h = &self.inner.history;
        let [lo, hi, tx0, tx1] = crate::activity::key_bounds(area);
        h.bounded(async {
            let rows = h
                .client()
                .await?
                .query(
                    "SELECT key FROM activity_tiles WHERE key BETWEEN $1 AND $2
                     AND (key & 4294967295) BETWEEN $3 AND $4 ORDER BY key LIMIT $5",
                    &[&lo, &hi, &tx0, &tx1, &(limit as i64)],
                )
                .await
                .map_err(pg)?;
            Ok(rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect())
        })
        .await
    }

    async fn activity_apply(
        &self,
        after: Seq,
        to: Seq,
        tiles: Vec<(u64, Vec<u8>)>,
    ) -> Result<bool, StoreError> {
        let h = &self.inner.history;
        h.bounded(async {
            let mut client = h.client().await?;
            let tx = client.transaction().await.map_err(pg)?;
            if !History::watermark_still(&tx, "activity_state", after).await? {
                return Ok(false);
            }
            let (keys, rasters): (Vec<i64>, Vec<Vec<u8>>) =
                tiles.into_iter().map(|(k, r)| (k as i64, r)).unzip();
            tx.execute(
                "INSERT INTO activity_tiles (key, raster)
                 SELECT * FROM unnest($1::bigint[], $2::bytea[])
                 ON CONFLICT (key) DO UPDATE SET raster = excluded.raster",
                &[&keys, &rasters],
            )
            .await
            .map_err(pg)?;
            tx.execute(
                "UPDATE activity_state SET through = $1 WHERE id = 1",
                &[&(to.0 as i64)],
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok(true)
        })
        .await
    }
}
