//! Presence and statistics: how many people are online across instances, placements per
//! color and per user, and the opt-in leaderboard (`GET /api/stats`, `GET
//! /api/stats/me`, `GET /api/leaderboard`, `PUT /api/me/leaderboard`).
//!
//! One background task per instance ([`spawn`]) counts the log after the store's
//! watermark every [`COUNT_EVERY`] (`rplace_store::stats::catch_up`: bounded pages, and
//! any instance may do it, none counts twice), and every [`PRESENCE_EVERY`] publishes
//! this instance's websocket clients and learns the fleet's sum, which websocket clients
//! then receive as `{"type":"online","n":..}` when it changed. Reads of the counts are
//! cached for [`READ_CACHE`], so a crowd asking for them costs the store one read a
//! second, not one per request.

use crate::app::AppState;
use rplace_store::Backend;
use rplace_store::stats::{LEADERBOARD_MAX, Ranked, Stats as _, Totals, catch_up};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// How often the log is counted.
pub const COUNT_EVERY: Duration = Duration::from_secs(2);
/// Pages one count may read before it yields to the next round (a history counted for
/// the first time is caught up over several rounds).
const PAGES_PER_ROUND: usize = 50;
/// How often this instance publishes its clients and learns the fleet's.
pub const PRESENCE_EVERY: Duration = Duration::from_secs(5);
/// How long a published number counts: three rounds, so one late round is not a dip.
const PRESENCE_TTL: Duration = Duration::from_secs(15);
/// How long a read of the counts or the leaderboard is served again.
const READ_CACHE: Duration = Duration::from_secs(1);

/// A value read at one moment, served until it is [`READ_CACHE`] old.
type Cached<T> = Mutex<Option<(Instant, Arc<T>)>>;

/// This instance's view of presence and its caches of the counts.
pub struct Presence {
    /// This instance's name among the fleet's presence entries: random per start.
    instance: u64,
    /// The fleet's clients at the last round, minus this instance's at that round: added
    /// to this instance's number now, so a page's own connection counts at once.
    others: AtomicU64,
    /// The last number websocket clients were told.
    told: AtomicU64,
    /// The counts, cached.
    totals: Cached<Totals>,
    /// The leaderboard's first [`LEADERBOARD_MAX`], cached.
    board: Cached<Vec<Ranked>>,
}

impl Default for Presence {
    fn default() -> Self {
        Self {
            instance: rand::random(),
            others: AtomicU64::new(0),
            told: AtomicU64::new(u64::MAX),
            totals: Mutex::new(None),
            board: Mutex::new(None),
        }
    }
}

impl Presence {
    /// People online now across the fleet (as of the last round for other instances).
    pub fn online(&self, app: &AppState) -> u64 {
        self.others.load(Ordering::Relaxed) + app.hub.clients() as u64
    }

    /// The counts, at most [`READ_CACHE`] old.
    pub async fn totals(&self, store: &Backend) -> Result<Arc<Totals>, rplace_store::StoreError> {
        cached(&self.totals, || store.stats_totals()).await
    }

    /// The leaderboard's first `limit` entries, at most [`READ_CACHE`] old.
    pub async fn leaderboard(
        &self,
        store: &Backend,
        limit: usize,
    ) -> Result<Vec<Ranked>, rplace_store::StoreError> {
        let all = cached(&self.board, || store.leaderboard(LEADERBOARD_MAX)).await?;
        Ok(all.iter().take(limit).cloned().collect())
    }

    /// One presence round: publish, learn the fleet's sum, tell clients if it changed.
    async fn round(&self, app: &AppState) {
        let mine = app.hub.clients() as u64;
        match app
            .store
            .presence(self.instance, mine, PRESENCE_TTL.as_millis() as u64)
            .await
        {
            Ok(total) => self
                .others
                .store(total.saturating_sub(mine), Ordering::Relaxed),
            // The others' numbers age out rather than staying stale forever.
            Err(e) => {
                tracing::warn!(error = %rplace_store::Chain(&e), "presence round failed");
                self.others.store(0, Ordering::Relaxed);
            }
        }
        let now = self.online(app);
        metrics::gauge!("rplace_online").set(now as f64);
        if self.told.swap(now, Ordering::Relaxed) != now {
            app.hub.online(now);
        }
    }
}

/// Serves `slot` while it is fresh, else reads it again (one reader at a time: the lock is
/// held across the read, so a crowd waits for one read instead of making many).
async fn cached<T, F, Fut>(slot: &Cached<T>, read: F) -> Result<Arc<T>, rplace_store::StoreError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, rplace_store::StoreError>>,
{
    let mut g = slot.lock().await;
    if let Some((at, v)) = g.as_ref()
        && at.elapsed() < READ_CACHE
    {
        return Ok(v.clone());
    }
    let v = Arc::new(read().await?);
    *g = Some((Instant::now(), v.clone()));
    Ok(v)
}

/// Starts the counting and presence task; it ends when websockets close (shutdown).
pub fn spawn(app: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut count = tokio::time::interval(COUNT_EVERY);
        let mut presence = tokio::time::interval(PRESENCE_EVERY);
        count.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        presence.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = app.stop.cancelled() => return,
                _ = count.tick() => {
                    if let Err(e) = catch_up(app.store.as_ref(), PAGES_PER_ROUND).await {
                        tracing::warn!(error = %rplace_store::Chain(&e), "counting placements failed; retrying");
                    }
                }
                _ = presence.tick() => app.presence.round(&app).await,
            }
        }
    })
}
