//! Placing in shared mode: the script decides in Redis, the history writer makes the
//! placement durable in PostgreSQL (or, with a durable Redis, the backlog holds it while
//! PostgreSQL is away), and the answer waits for whichever applies.

use super::*;

/// A tile write held back by [`SharedStore::place_deferring_tile_write`].
#[doc(hidden)]
#[derive(Debug)]
pub struct DeferredTileWrite(Vec<super::live::TileWrite>);

impl SharedStore {
    /// Runs the placement script only, without the history write, as an instance that
    /// dies right after it would. For tests of the reconciler.
    #[doc(hidden)]
    pub async fn place_without_history(&self, p: NewPlacement) -> Result<Placed, PlaceError> {
        self.inner.live.place(&p).await?.into_answer()
    }

    /// On a Redis Cluster, decides `p` in the core slot and returns its tile write instead
    /// of making it (nor the history write): dropped, as by an instance that dies between
    /// the two, or made later with [`SharedStore::finish_tile_write`], as by an instance
    /// that is slower than another. For tests of the tile writes and their repair.
    #[doc(hidden)]
    pub async fn place_deferring_tile_write(
        &self,
        p: NewPlacement,
    ) -> Result<(Placed, DeferredTileWrite), PlaceError> {
        let (mut out, writes) = self
            .inner
            .live
            .decide_batch(std::slice::from_ref(&p))
            .await
            .map_err(BackendError::redis)?;
        let placed = out.pop().expect("one outcome").into_answer()?;
        Ok((placed, DeferredTileWrite(writes)))
    }

    /// Makes a tile write that [`SharedStore::place_deferring_tile_write`] held back.
    #[doc(hidden)]
    pub async fn finish_tile_write(&self, w: DeferredTileWrite) {
        let live = &self.inner.live;
        live.write_to_tiles(&mut live.conn(), &w.0).await;
    }

    /// Runs the placement script once for `p` against the Redis at `redis_url`, with no
    /// PostgreSQL and no history write, and returns what it decided (a repeat of an
    /// idempotency key as `Placed { replayed: true, .. }`). For the policy vector tests,
    /// which set the Redis keys to a prior state first. `dims` is the canvas's size the
    /// placement is checked against by the caller (the script needs none: it writes tiles).
    #[doc(hidden)]
    pub async fn run_place_script(
        redis_url: &str,
        cluster: bool,
        key_prefix: &str,
        dims: Dimensions,
        depth: Depth,
        policy: Params,
        p: NewPlacement,
    ) -> Result<Placed, PlaceError> {
        debug_assert!(dims.contains(p.coord));
        let live = Live::connect(
            redis_url,
            Duration::from_secs(5),
            cluster,
            key_prefix,
            depth,
            policy,
            Duration::from_secs(600),
        )
        .await
        .map_err(|e| PlaceError::Unavailable(e.into()))?;
        let outcome = live.place(&p).await.map_err(BackendError::redis)?;
        if let PlaceOutcome::Banned { id, until_ms } = outcome {
            let reason = live.ban_reason(id).await.map_err(BackendError::redis)?;
            return Err(PlaceError::Banned {
                reason: reason.unwrap_or_default(),
                until_ms,
            });
        }
        outcome.into_answer()
    }

    /// The reason of ban `id`, as Redis holds it; a generic one if it cannot be read (the
    /// refusal stands either way).
    pub(super) async fn ban_reason(&self, id: u64) -> String {
        match self.inner.live.ban_reason(id).await {
            Ok(Some(r)) => r,
            Ok(None) => "banned".to_string(),
            Err(e) => {
                tracing::warn!(error = %e, ban = id, "reading a ban's reason failed");
                "banned".to_string()
            }
        }
    }

    /// Runs one reconcile pass now, ignoring the grace period. For tests and tools.
    #[doc(hidden)]
    pub async fn reconcile_now(&self) -> Result<(), StoreError> {
        recovery::reconcile_locked(&self.inner, Duration::ZERO).await
    }

    /// Whether a placement may be acknowledged from Redis alone now: Redis is durable
    /// and the backlog has room. The error says why not.
    pub(super) fn may_buffer(&self) -> Result<(), BackendError> {
        let h = &self.inner.health;
        if !h.redis_durable.load(Ordering::Relaxed) {
            return Err(BackendError::HistoryUnavailable);
        }
        let backlog = h.backlog();
        if backlog >= self.inner.cfg.backlog_limit {
            return Err(BackendError::BacklogFull { backlog });
        }
        Ok(())
    }

    pub(super) async fn place_inner(&self, p: NewPlacement) -> Result<Placed, PlaceError> {
        let inner = &self.inner;
        // PostgreSQL is away: go on only if Redis can hold the placement durably.
        let buffered = !inner.health.history_ok.load(Ordering::Relaxed);
        if buffered {
            self.may_buffer()?;
        }
        let deadline = Instant::now() + inner.cfg.rebuild_wait;
        let outcome = loop {
            let (reply, outcome) = oneshot::channel();
            let request = batcher::Request {
                placement: p,
                reply,
            };
            // The batcher drops requests whose caller has given up, so a placement that
            // timed out here before its script call is not applied.
            let wait = inner.live.timeout();
            let sent = tokio::time::timeout(wait, inner.placer.send(request)).await;
            match sent {
                Err(_) => return Err(BackendError::Timeout(Service::Redis).into()),
                Ok(Err(_)) => return Err(PlaceError::ShuttingDown),
                Ok(Ok(())) => {}
            }
            let outcome = match tokio::time::timeout(wait, outcome).await {
                Err(_) => {
                    inner.health.redis_ok.store(false, Ordering::Relaxed);
                    return Err(BackendError::Timeout(Service::Redis).into());
                }
                Ok(Err(_)) => return Err(PlaceError::ShuttingDown),
                Ok(Ok(o)) => o,
            };
            match outcome {
                Ok(PlaceOutcome::Missing) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    recovery::ensure_state(inner, left).await?;
                }
                Ok(o) => {
                    inner.health.redis_ok.store(true, Ordering::Relaxed);
                    break o;
                }
                Err(e) => {
                    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                        inner.health.redis_ok.store(false, Ordering::Relaxed);
                    } else if matches!(backlog::stream_ahead(&inner.live).await, Ok(true)) {
                        // XADD refused the new seq: the stream is ahead of the seq key, so
                        // Redis went back in time. Nothing was written; repair it now.
                        inner.diverged.notify_one();
                    }
                    return Err(e.into());
                }
            }
        };
        let (seq, at_ms, next_at_ms, epoch, charges) = match outcome {
            PlaceOutcome::Accepted {
                seq,
                at_ms,
                next_at_ms,
                epoch,
                charges,
            } => (seq, at_ms, next_at_ms, epoch, charges),
            PlaceOutcome::Cooldown { next_at_ms } => {
                return Err(PlaceError::Cooldown { next_at_ms });
            }
            PlaceOutcome::RateLimited { retry_after_ms } => {
                return Err(PlaceError::RateLimited { retry_after_ms });
            }
            PlaceOutcome::Banned { id, until_ms } => {
                let reason = self.ban_reason(id).await;
                return Err(PlaceError::Banned { reason, until_ms });
            }
            PlaceOutcome::Protected => return Err(PlaceError::Protected),
            PlaceOutcome::OnceSpent => return Err(PlaceError::OnceSpent),
            replayed @ PlaceOutcome::Replayed { .. } => {
                return idempotency::confirm(inner, &p, replayed.into_answer()?).await;
            }
            PlaceOutcome::Missing => unreachable!("the loop retries it"),
        };
        inner.health.seq_seen.fetch_max(seq.0, Ordering::Relaxed);
        let placed = Placed {
            seq,
            at_ms,
            next_at_ms,
            charges,
            replayed: false,
        };
        if buffered {
            // Redis answered after its AOF fsync; the reconciler copies it to the history
            // when PostgreSQL is back.
            metrics::counter!("rplace_store_placements_buffered_total").increment(1);
            return Ok(placed);
        }
        let (tx, rx) = oneshot::channel();
        let pending = writer::Pending {
            placement: Placement {
                seq,
                coord: p.coord,
                color: p.color,
                user: p.user,
                at_ms,
            },
            epoch,
            reply: tx,
        };
        // If the writer is gone (closing), the placement is in Redis only: the reconciler
        // of this or another instance copies it into the history.
        inner
            .writer
            .send(writer::Cmd::Write(pending))
            .await
            .map_err(|_| PlaceError::ShuttingDown)?;
        // With a durable Redis a late commit need not hold the answer for long.
        let durable = inner.health.redis_durable.load(Ordering::Relaxed);
        let wait = if durable {
            inner.cfg.ack_timeout.min(inner.cfg.database_timeout)
        } else {
            inner.cfg.ack_timeout
        };
        let failure = match tokio::time::timeout(wait, rx).await {
            Ok(Ok(Ok(()))) => return Ok(placed),
            Ok(Ok(Err(writer::Failure::Superseded))) => {
                return Err(BackendError::Superseded.into());
            }
            Ok(Ok(Err(writer::Failure::Diverged))) => return Err(BackendError::Diverged.into()),
            Ok(Ok(Err(writer::Failure::Unavailable(e)))) => BackendError::Shared(e),
            Ok(Err(_)) => return Err(PlaceError::ShuttingDown),
            Err(_) => BackendError::Timeout(Service::Postgres),
        };
        // The history is away, but the placement is in Redis already: acknowledge it if
        // Redis holds it durably (the reconciler copies it later), else refuse.
        match self.may_buffer() {
            Ok(()) => {
                metrics::counter!("rplace_store_placements_buffered_total").increment(1);
                tracing::debug!(seq = seq.0, error = %crate::Chain(&failure), "acknowledged from the durable Redis");
                Ok(placed)
            }
            Err(_) => Err(failure.into()),
        }
    }
}

/// Counts a `place` call as in flight until dropped.
pub(super) struct InFlight<'a>(pub(super) &'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
