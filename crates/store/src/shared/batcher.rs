//! The placement batcher: one task per instance that sends every placement waiting for
//! Redis as one script call, the way the history writer groups its commits.
//!
//! One call is in flight at a time; what arrives meanwhile waits and goes in the next, so
//! batches grow with the load and a lone placement goes out at once. Per placement this
//! saves Redis a script call, the state reads and a `PUBLISH`, every instance a Pub/Sub
//! message, and this instance a round trip (BENCHMARKS.md, shared b).

use super::live::{Live, PlaceOutcome};
use crate::NewPlacement;
use redis::RedisResult;
use tokio::sync::{mpsc, oneshot};

/// Most placements decided in one script call; Redis runs nothing else meanwhile, so this
/// bounds how long one call holds it (a few ms).
pub const MAX_BATCH: usize = 512;

/// One placement waiting for Redis, and where its outcome goes.
pub(crate) struct Request {
    pub placement: NewPlacement,
    pub reply: oneshot::Sender<RedisResult<PlaceOutcome>>,
}

pub(crate) async fn run(live: Live, mut rx: mpsc::Receiver<Request>) {
    let mut placements = Vec::with_capacity(MAX_BATCH);
    let mut replies = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(r) = next.take() {
            // Its caller timed out and answered 503: it must not be applied after that.
            if !r.reply.is_closed() {
                placements.push(r.placement);
                replies.push(r.reply);
            }
            if placements.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if placements.is_empty() {
            continue;
        }
        metrics::histogram!("rplace_store_script_batch_size").record(placements.len() as f64);
        match live.place_batch(&placements).await {
            Ok(outcomes) => {
                for (reply, outcome) in replies.drain(..).zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
        placements.clear();
    }
}
