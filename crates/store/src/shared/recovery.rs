//! Keeping Redis and PostgreSQL identical: rebuilding the Redis state from the history,
//! reconciling the stream into the history, and the maintenance task that runs both.
//!
//! # Rebuild
//! Triggered when the seq, epoch or size key is missing (by `place`, `snapshot`, the feed
//! or the maintenance probe) or when Redis is found behind the history. One instance
//! takes `{prefix}rebuild-lock` (SET NX PX, renewed while it works); the others wait and
//! look again. The winner first copies whatever the stream still holds into the history,
//! then removes the seq and epoch (so that nothing places on the state being replaced),
//! deletes every tile key, and reads the history in one PostgreSQL transaction that also
//! bumps the epoch, writing the tiles it rebuilds to Redis a page at a time (tile
//! snapshots plus the rows after them: memory stays bounded however much is painted).
//! Then it installs seq, epoch, clock and size with one script that checks it still holds
//! the lock. The install drops the stream and publishes the new epoch, which makes every
//! feed emit a `Reset`.
//!
//! # Reconcile
//! Copies stream entries past the history's watermark (`durable_seq`) that are older
//! than the grace period into the history, then moves the watermark. Entries already
//! there are skipped by a count before anything is written. One instance at a time
//! (advisory lock); idempotent anyway.

use super::Inner;
use super::history::{RebuiltTile, TileSink, Written};
use super::live::Live;
use rplace_domain::{Placement, Seq};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::{BackendError, Chain, StoreError};

/// How long the rebuild lock lives without renewal; renewed every third of it.
const LOCK_TTL: Duration = Duration::from_secs(15);
/// Stream entries read per reconcile step.
const PAGE: usize = 10_000;

fn redis_err(e: redis::RedisError) -> StoreError {
    StoreError::from(e)
}

/// A token nobody else holds: this process, this moment, a counter.
fn token() -> String {
    use std::sync::atomic::AtomicU64;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Returns once the Redis state exists, rebuilding it (or waiting for the instance that
/// does) for at most `wait`.
pub(crate) async fn ensure_state(inner: &Inner, wait: Duration) -> Result<(), BackendError> {
    let deadline = Instant::now() + wait;
    let mut last_error = BackendError::Rebuilding;
    loop {
        match inner.live.status().await {
            Ok(s) if s.complete => {
                inner.health.redis_ok.store(true, Ordering::Relaxed);
                return Ok(());
            }
            Ok(s) => {
                inner.health.redis_ok.store(true, Ordering::Relaxed);
                if !s.rebuild_locked {
                    match rebuild(inner, false).await {
                        Ok(true) => continue,
                        Ok(false) => {}
                        Err(e) => {
                            tracing::error!(error = %Chain(&e), "rebuilding the Redis state failed");
                            last_error = e.into();
                        }
                    }
                }
            }
            Err(e) => {
                inner.health.redis_ok.store(false, Ordering::Relaxed);
                last_error = e.into();
            }
        }
        if Instant::now() >= deadline {
            return Err(last_error);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Clears `rebuilding_here` when the rebuild ends, however it ends.
struct Rebuilding<'a>(&'a Inner);

impl Drop for Rebuilding<'_> {
    fn drop(&mut self) {
        self.0
            .health
            .rebuilding_here
            .store(false, Ordering::Relaxed);
    }
}

/// Aborts the task when dropped, so that a cancelled rebuild stops renewing its lock.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Writes the tiles a rebuild hands out to Redis (the seq and epoch are missing meanwhile,
/// so no placement mixes with them).
struct RedisTiles<'a> {
    live: &'a Live,
}

impl TileSink for RedisTiles<'_> {
    async fn put(&mut self, tiles: Vec<RebuiltTile>) -> Result<(), StoreError> {
        self.live.write_tiles(&tiles).await.map_err(redis_err)
    }
}

/// Rebuilds the Redis state from the history if this instance gets the lock. With
/// `force`, even if the state exists (it is behind or diverged). Returns whether it did.
pub(crate) async fn rebuild(inner: &Inner, force: bool) -> Result<bool, StoreError> {
    let live = &inner.live;
    let token = token();
    if !live.try_lock(&token, LOCK_TTL).await.map_err(redis_err)? {
        return Ok(false);
    }
    inner.health.rebuilding_here.store(true, Ordering::Relaxed);
    let _flag = Rebuilding(inner);
    if !force {
        // Another instance may have finished between our look and our lock.
        let complete = live.status().await.map(|s| s.complete).unwrap_or(false);
        if complete {
            let _ = live.renew_lock(&token, None).await;
            return Ok(false);
        }
    }
    let started = Instant::now();
    let _renew = {
        let live = live.clone();
        let token = token.clone();
        AbortOnDrop(tokio::spawn(async move {
            loop {
                tokio::time::sleep(LOCK_TTL / 3).await;
                match live.renew_lock(&token, Some(LOCK_TTL)).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => {
                        tracing::warn!(error = %Chain(&e), "renewing the rebuild lock failed")
                    }
                }
            }
        }))
    };
    let res = async {
        // Save what the stream still holds of the state being replaced; entries of another
        // epoch than the history's are refused by the fence.
        match reconcile(inner, Duration::ZERO).await {
            Ok(n) if n > 0 => tracing::info!(copied = n, "saved stream entries before rebuilding"),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "could not save the stream before rebuilding")
            }
        }
        // From here on nothing places on the old state (the script finds it missing) and
        // none of its tiles is left to mix with the history's.
        if !live.unset_state(&token).await.map_err(redis_err)? {
            return Err(BackendError::Rebuilding.into());
        }
        let cleared = live.clear_tiles().await.map_err(redis_err)?;
        if cleared > 0 {
            tracing::info!(cleared, "deleted the tile keys of the replaced state");
        }
        let r = inner.history.rebuild(&mut RedisTiles { live }).await?;
        // Cooldowns went with the lost state; bring back the ones still running before
        // anyone can place again.
        let window = live.restore_window_ms();
        match inner.history.recent_users(window).await {
            Ok(users) => match live.restore_cooldowns(&users).await {
                Ok(n) => tracing::info!(restored = n, "restored cooldowns from the history"),
                Err(e) => tracing::warn!(error = %Chain(&e), "could not restore cooldowns"),
            },
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "could not read recent placements for cooldowns")
            }
        }
        // Bans and protected areas went with it too; they must be back before the seq,
        // since the seq is what lets the script place again.
        let (bans, areas) = super::moderation::reload(inner).await?;
        tracing::info!(
            bans,
            areas,
            "reloaded bans and protected areas from the history"
        );
        // Never smaller than this instance knows (a grow whose Redis write was lost).
        let dims = super::max_dims(r.dims, inner.dims());
        let installed = live
            .install(&token, r.epoch, r.seq, dims, r.last_ms)
            .await
            .map_err(redis_err)?;
        if !installed {
            tracing::warn!(
                "lost the rebuild lock before installing; another instance will rebuild"
            );
            return Err(BackendError::Rebuilding.into());
        }
        Ok(r)
    }
    .await;
    match res {
        Ok(r) => {
            metrics::counter!("rplace_store_rebuilds_total").increment(1);
            tracing::warn!(
                epoch = r.epoch,
                seq = r.seq.0,
                replayed = r.replayed,
                tiles = r.tiles,
                elapsed_ms = started.elapsed().as_millis() as u64,
                force,
                "rebuilt the Redis state from PostgreSQL"
            );
            Ok(true)
        }
        Err(e) => {
            let _ = live.renew_lock(&token, None).await;
            Err(e)
        }
    }
}

/// [`reconcile`] if no other instance is reconciling right now, then [`settle`]s the
/// stream.
///
/// [`settle`]: super::backlog::settle
pub(crate) async fn reconcile_locked(inner: &Inner, grace: Duration) -> Result<(), StoreError> {
    inner
        .history
        .with_reconcile_lock(|| async {
            let n = reconcile(inner, grace).await?;
            let (_, mark) = inner.history.state().await?;
            let len = super::backlog::settle(&inner.live, mark, inner.cfg.stream_capacity).await?;
            inner.health.durable_seen.store(mark.0, Ordering::Relaxed);
            metrics::gauge!("rplace_store_stream_entries").set(len as f64);
            Ok::<_, StoreError>(n)
        })
        .await?;
    Ok(())
}

/// Copies stream entries past the watermark and older than `grace` into the history.
/// Returns how many it wrote.
pub(crate) async fn reconcile(inner: &Inner, grace: Duration) -> Result<u64, StoreError> {
    let history = &inner.history;
    let (epoch, mut mark) = history.state().await?;
    let mut written = 0u64;
    loop {
        let page = inner.live.read_after(mark, PAGE).await.map_err(redis_err)?;
        // Missing state is the rebuild's business; another epoch means a rebuild is under
        // way (or Redis was replaced behind our back, which the maintenance check sees).
        if page.epoch != Some(epoch) || page.seq <= mark {
            return Ok(written);
        }
        let first = page
            .entries
            .first()
            .map(|p| p.seq)
            .unwrap_or(page.seq.next());
        if first > mark.next() {
            // Trimmed before anyone copied it: whatever of it is not in the history is lost.
            let upto = Seq(first.0 - 1);
            let have = history.count_between(mark, upto).await?;
            let lost = (upto.0 - mark.0).saturating_sub(have);
            if lost > 0 {
                metrics::counter!("rplace_store_unreconciled_total").increment(lost);
                tracing::error!(
                    lost,
                    after = mark.0,
                    upto = upto.0,
                    "placements left the Redis stream before reaching PostgreSQL"
                );
            }
            history.advance_durable(epoch, upto).await?;
            mark = upto;
        }
        let cutoff = page.now_ms - grace.as_millis() as i64;
        let ripe: Vec<Placement> = page
            .entries
            .iter()
            .take_while(|p| p.at_ms <= cutoff)
            .copied()
            .collect();
        let Some(last) = ripe.last().map(|p| p.seq) else {
            return Ok(written);
        };
        // Usually their own instances wrote them all; only write when some are missing.
        if history.count_between(mark, last).await? < last.0 - mark.0 {
            match history.write(epoch, &ripe).await? {
                Written::Stale => return Ok(written),
                Written::Stored { conflicts } => {
                    if !conflicts.is_empty() {
                        tracing::error!(
                            ?conflicts,
                            "the history holds other placements under these stream seqs"
                        );
                        inner.diverged.notify_one();
                    }
                }
            }
            written += ripe.len() as u64;
            metrics::counter!("rplace_store_reconciled_total").increment(ripe.len() as u64);
        }
        history.advance_durable(epoch, last).await?;
        mark = last;
        if ripe.len() < page.entries.len() || page.entries.len() < PAGE {
            return Ok(written);
        }
    }
}

/// Rebuilds if Redis is behind the history (restored from an old copy, say): its seq
/// would hand out seqs the history already holds.
async fn check_behind(inner: &Inner) -> Result<(), StoreError> {
    // History first: every seq in it was handed out by Redis before this read, so a
    // healthy Redis read afterwards can only be at or past it.
    let newest = inner.history.max_seq().await?;
    let Some(seq) = inner.live.seq().await.map_err(redis_err)? else {
        return Ok(());
    };
    if seq < newest {
        tracing::error!(
            redis_seq = seq.0,
            history_seq = newest.0,
            "Redis is behind PostgreSQL; rebuilding it"
        );
        rebuild(inner, true).await?;
    }
    Ok(())
}

/// Probes health, rebuilds missing state, reconciles and writes snapshots, until the
/// store closes.
pub(crate) async fn maintain(inner: Arc<Inner>) {
    let cfg = &inner.cfg;
    let mut tick = tokio::time::interval(cfg.health_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_reconcile = Instant::now();
    loop {
        let diverged = tokio::select! {
            _ = tick.tick() => false,
            _ = inner.diverged.notified() => true,
        };
        if inner.health.closed.load(Ordering::Relaxed) {
            return;
        }
        match inner.live.status().await {
            Ok(s) => {
                inner.health.redis_ok.store(true, Ordering::Relaxed);
                let here = inner.health.rebuilding_here.load(Ordering::Relaxed);
                inner
                    .health
                    .rebuilding_elsewhere
                    .store(s.rebuild_locked && !here, Ordering::Relaxed);
                if !s.complete
                    && !s.rebuild_locked
                    && let Err(e) = rebuild(&inner, false).await
                {
                    tracing::error!(error = %Chain(&e), "rebuilding the Redis state failed");
                }
            }
            Err(e) => {
                if inner.health.redis_ok.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %Chain(&e), "Redis is unreachable");
                }
                continue;
            }
        }
        if diverged && let Err(e) = rebuild(&inner, true).await {
            tracing::error!(error = %Chain(&e), "rebuilding a diverged Redis state failed");
        }
        let due = last_reconcile.elapsed() >= cfg.reconcile_interval;
        if !due && inner.health.history_ok.load(Ordering::Relaxed) {
            continue;
        }
        match inner.history.ping().await {
            Ok(()) => inner.health.history_ok.store(true, Ordering::Relaxed),
            Err(e) => {
                if inner.health.history_ok.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %Chain(&e), "PostgreSQL is unreachable");
                }
                continue;
            }
        }
        if !due {
            continue;
        }
        last_reconcile = Instant::now();
        if let Err(e) = reconcile_locked(&inner, cfg.reconcile_grace).await {
            tracing::warn!(error = %Chain(&e), "reconciling the stream into PostgreSQL failed");
        }
        if let Err(e) = check_behind(&inner).await {
            tracing::warn!(error = %Chain(&e), "checking Redis against PostgreSQL failed");
        }
        match inner.history.maybe_snapshot(cfg.snapshot_every).await {
            Ok(Some(seq)) => tracing::info!(seq = seq.0, "tile snapshots written to PostgreSQL"),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %Chain(&e), "writing tile snapshots failed"),
        }
    }
}
