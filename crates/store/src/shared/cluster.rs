//! On a Redis Cluster: the repair of tiles that fell behind their placements.
//!
//! A placement is decided, numbered and published in the core slot, then written to its
//! tile in the tile's slot (`live::Live::write_to_tiles`, `lua/tile_apply.lua`). A tile
//! whose write failed, or that waits for a write its instance never sent (it died between
//! the two calls), or whose node lost its data, stays behind the core slot's last seq for
//! it. Such tiles are noted (`Live::lagging`) by the write that failed or had to wait and
//! by any read that finds one; this task checks them every second and, once one has
//! lagged for longer than the reconciler's grace (by then every placement the core slot
//! numbered is in PostgreSQL, copied from the stream if its instance died), rebuilds it
//! at its last seq from the history and installs it (which also applies the writes that
//! waited behind the missing one). The placements themselves were never in danger: they
//! are in the stream and PostgreSQL; only the tile's pixels in Redis lagged.

use super::Inner;
use super::live::LAGGING_CAP;
use rplace_domain::{Seq, TileId};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the noted tiles are checked.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Tiles checked (and repaired) per round.
const PER_ROUND: usize = 256;

/// Runs until the store is dropped; returns at once on one redis-server.
pub(crate) async fn repair(inner: Arc<Inner>) {
    if !inner.live.clustered() {
        return;
    }
    // When each noted tile was first seen behind.
    let mut behind: HashMap<TileId, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let noted: Vec<TileId> = inner
            .live
            .lagging
            .lock()
            .expect("lagging tiles")
            .drain()
            .collect();
        let now = Instant::now();
        for id in noted {
            if behind.len() < LAGGING_CAP {
                behind.entry(id).or_insert(now);
            }
        }
        if behind.is_empty() {
            continue;
        }
        let ids: Vec<TileId> = behind.keys().copied().take(PER_ROUND).collect();
        match round(&inner, &ids, &behind).await {
            Ok(done) => {
                for id in done {
                    behind.remove(&id);
                }
            }
            Err(e) => {
                tracing::warn!(error = %crate::Chain(&e), "checking lagging tiles failed; retrying");
            }
        }
        metrics::gauge!("rplace_store_tiles_behind").set(behind.len() as f64);
    }
}

/// Checks `ids` and repairs those behind for longer than the grace; answers those that
/// are caught up now.
async fn round(
    inner: &Inner,
    ids: &[TileId],
    behind: &HashMap<TileId, Instant>,
) -> Result<Vec<TileId>, crate::StoreError> {
    let live = &inner.live;
    let last = live.tiles_last(ids).await?;
    let versions = live.tile_versions(ids).await?;
    let grace = inner.cfg.reconcile_grace + inner.cfg.redis_timeout * 2;
    let mut durable: Option<Seq> = None;
    let mut done = Vec::new();
    for ((&id, last), version) in ids.iter().zip(last).zip(versions) {
        if version >= last {
            done.push(id);
            continue;
        }
        if behind[&id].elapsed() < grace {
            continue;
        }
        // Every placement up to `last` must be in the history before the tile is rebuilt
        // from it; the reconciler copies what a dead instance left in the stream.
        let through = match durable {
            Some(d) => d,
            None => *durable.insert(inner.history.state().await?.1),
        };
        if through < last {
            continue;
        }
        let read = inner
            .history
            .tile_at(id, last, u64::MAX, inner.cfg.depth)
            .await
            .map_err(|e| match e {
                crate::past::PastError::Store(e) => e,
                other => crate::BackendError::Corrupt(other.to_string()).into(),
            })?;
        let pixels = read
            .pixels
            .unwrap_or_else(|| rplace_domain::Tile::new(inner.cfg.depth));
        let now = live.repair_tile(id, last, &pixels).await?;
        metrics::counter!("rplace_store_tile_repairs_total").increment(1);
        tracing::info!(
            ?id,
            from = version.0,
            to = now.0,
            "repaired a tile that fell behind"
        );
        if now >= last {
            done.push(id);
        }
    }
    Ok(done)
}
