//! The Redis probe: one task per instance that checks, every health interval and within
//! the Redis timeout, that Redis answers, whether it is durable on its own, and how many
//! placements wait in it for PostgreSQL.
//!
//! It runs apart from the maintenance task, whose PostgreSQL work (reconciling, snapshots)
//! may take long, so that readiness follows a stalled Redis within one interval plus the
//! timeout.

use super::{Inner, backlog};
use crate::{BackendError, Chain, Service};
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub(crate) async fn run(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(inner.cfg.health_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_durable = None;
    loop {
        tick.tick().await;
        if inner.health.closed.load(Ordering::Relaxed) {
            return;
        }
        let probe = async {
            let durable = backlog::durable(&inner.live).await?;
            let (seq, mark) = backlog::positions(&inner.live).await?;
            Ok::<_, BackendError>((durable, seq, mark))
        };
        let h = &inner.health;
        match tokio::time::timeout(inner.live.timeout(), probe).await {
            Ok(Ok((durable, seq, mark))) => {
                h.redis_ok.store(true, Ordering::Relaxed);
                h.redis_durable.store(durable, Ordering::Relaxed);
                // The truth as of now (it may have gone down with a rebuild); placements
                // raise it between probes.
                h.seq_seen.store(seq.0, Ordering::Relaxed);
                h.durable_seen.store(mark.0, Ordering::Relaxed);
                if was_durable != Some(durable) {
                    tracing::info!(
                        durable,
                        "Redis {} placements while PostgreSQL is away",
                        if durable {
                            "buffers"
                        } else {
                            "does not buffer"
                        }
                    );
                    was_durable = Some(durable);
                }
            }
            res => {
                let e = match res {
                    Ok(Err(e)) => e,
                    _ => BackendError::Timeout(Service::Redis),
                };
                if h.redis_ok.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %Chain(&e), "Redis probe failed; not ready");
                }
            }
        }
    }
}
