//! [`Export`] for the shared store: the history's `placements` read with binary `COPY`,
//! a page at a time, up to the watermark (`durable_seq`: every placement up to it that
//! will ever be in the table is in it, so a page never misses a row that arrives later).

use super::{History, corrupt, pg};
use crate::StoreError;
use crate::export::Export;
use crate::shared::SharedStore;
use crate::shared::copy_rows::CopyRows;
use futures_util::{StreamExt, pin_mut};
use rplace_domain::{ColorIndex, Coord, Placement, Seq, UserId};

/// Milliseconds from the unix epoch to PostgreSQL's (2000-01-01), whose binary
/// `timestamptz` counts microseconds; reading it raw skips a per-row conversion in SQL.
const PG_EPOCH_MS: i64 = 946_684_800_000;

impl History {
    /// Up to `limit` placements with `after < seq <= through`, in seq order.
    pub(super) async fn export_page(
        &self,
        after: Seq,
        through: Seq,
        limit: usize,
    ) -> Result<Vec<Placement>, StoreError> {
        self.bounded_long(async {
            let client = self.client().await?;
            // COPY takes no parameters; the three numbers are ours, not the client's.
            let sql = format!(
                "COPY (SELECT seq, x, y, color, user_id, ts FROM placements
                       WHERE seq > {} AND seq <= {} ORDER BY seq LIMIT {})
                 TO STDOUT (FORMAT binary)",
                after.0 as i64, through.0 as i64, limit as i64
            );
            let stream = client.copy_out(sql.as_str()).await.map_err(pg)?;
            pin_mut!(stream);
            let mut rows = CopyRows::new([8, 4, 4, 2, 8, 8]);
            let mut out = Vec::with_capacity(limit.min(crate::export::EXPORT_PAGE));
            while let Some(chunk) = stream.next().await {
                rows.push(&chunk.map_err(pg)?);
                while let Some([seq, x, y, color, user, ts]) = rows.next_row().map_err(corrupt)? {
                    out.push(Placement {
                        seq: Seq(seq as u64),
                        // Rows come from placements that went through `Dimensions::coord`.
                        coord: Coord::new_unchecked(x as u32, y as u32),
                        color: ColorIndex::new_unchecked(color as u8),
                        user: UserId(user as u64),
                        at_ms: PG_EPOCH_MS + ts.div_euclid(1000),
                    });
                }
            }
            if !rows.finished() {
                return Err(corrupt("COPY output ended early"));
            }
            Ok(out)
        })
        .await
    }
}

impl Export for SharedStore {
    async fn export_head(&self) -> Result<Seq, StoreError> {
        Ok(self.inner.history.state().await?.1)
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
        self.inner.history.export_page(after, through, limit).await
    }
}
