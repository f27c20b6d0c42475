//! [`Export`] for the embedded store: the `placements` table by its primary key, read on
//! a reader connection (WAL: the writer goes on meanwhile).

use super::EmbeddedStore;
use super::schema::row_to_placement;
use crate::StoreError;
use crate::export::Export;
use rplace_domain::{Placement, Seq};
use rusqlite::params;

impl Export for EmbeddedStore {
    async fn export_head(&self) -> Result<Seq, StoreError> {
        // The committed seq: every placement up to it is in the table.
        Ok(self.state.lock().expect("state lock").seq)
    }

    async fn export_page(
        &self,
        after: Seq,
        through: Seq,
        limit: usize,
    ) -> Result<Vec<Placement>, StoreError> {
        if after >= through || limit == 0 {
            return Ok(Vec::new());
        }
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT seq, x, y, color, user, ts FROM placements
                     WHERE seq > ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3",
                )
                .map_err(super::backend)?;
            stmt.query_map(
                params![after.0 as i64, through.0 as i64, limit as i64],
                row_to_placement,
            )
            .and_then(|rows| rows.collect())
            .map_err(super::backend)
        })
        .await
    }
}
