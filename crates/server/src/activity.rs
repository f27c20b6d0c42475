//! The overlays' data on the server side: the task that keeps the activity rasters
//! (`rplace_store::activity`) counted, and a bounded cache of their served bodies.
//!
//! Every instance runs [`spawn`]: each [`COUNT_EVERY`] it steps along the log after the
//! shared watermark (a step is applied once however many instances try) until caught up
//! or [`ROUND_BUDGET`] is spent. So the rasters trail the live board by about one round;
//! where placing is spread over more tiles than a round's budget covers they fall behind
//! and catch up when it quietens, which `X-Activity-Through` tells clients, who add live
//! placements themselves.

use crate::app::AppState;
use crate::board_cache::Version;
use rplace_domain::{Seq, TileId};
use rplace_store::StoreError;
use rplace_store::activity::{catch_up, read_tile};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the log is counted into the rasters.
pub const COUNT_EVERY: Duration = Duration::from_secs(2);
/// Steps between two looks at the clock (each at most 4096 rows and 64 tiles).
const STEPS_PER_CALL: usize = 8;
/// Longest a round keeps counting: at most half a core on average, however far behind;
/// what is left waits for the next round.
const ROUND_BUDGET: Duration = Duration::from_secs(1);
/// Served bodies kept: a crowd looking at the same tiles gets each compressed once per
/// raster version.
const CACHED: usize = 256;

/// The served bodies of recently asked tiles' rasters, by tile key, newest last.
#[derive(Default)]
pub struct ActivityBodies {
    /// At most [`CACHED`] entries; the oldest goes first.
    recent: Mutex<VecDeque<(u64, Arc<Version>)>>,
}

impl ActivityBodies {
    /// Tile `id`'s times as the wire has them, at the raster's version; compressed once
    /// per version and encoding (`Version::body`).
    pub async fn get(&self, app: &AppState, id: TileId) -> Result<Arc<Version>, StoreError> {
        let raster = read_tile(app.store.as_ref(), id).await?;
        let version = raster.version();
        let key = id.key();
        if let Some(v) = self.cached(key, version) {
            return Ok(v);
        }
        let v = Arc::new(Version::new(version, raster.times_le().into()));
        let mut recent = self.recent.lock().expect("not poisoned");
        recent.retain(|(k, _)| *k != key);
        if recent.len() == CACHED {
            recent.pop_front();
        }
        recent.push_back((key, v.clone()));
        Ok(v)
    }

    fn cached(&self, key: u64, version: Seq) -> Option<Arc<Version>> {
        let recent = self.recent.lock().expect("not poisoned");
        recent
            .iter()
            .find(|(k, v)| *k == key && v.seq == version)
            .map(|(_, v)| v.clone())
    }
}

/// One round: steps until caught up or [`ROUND_BUDGET`] is spent.
async fn round(app: &AppState) {
    let started = std::time::Instant::now();
    loop {
        match catch_up(app.store.as_ref(), STEPS_PER_CALL).await {
            Ok(done) => {
                metrics::gauge!("rplace_activity_through").set(done.through.0 as f64);
                if !done.more || started.elapsed() >= ROUND_BUDGET || app.stop.is_cancelled() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(
                    error = %rplace_store::Chain(&e),
                    "counting the activity rasters failed; retrying"
                );
                return;
            }
        }
    }
}

/// Starts the counting task; it ends at shutdown.
pub fn spawn(app: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(COUNT_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = app.stop.cancelled() => return,
                _ = every.tick() => round(&app).await,
            }
        }
    })
}
