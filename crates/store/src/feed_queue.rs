//! The bounded queue between a store's feed producer and the server's hub.
//!
//! The queue holds at most [`FEED_CAPACITY`] events. When the consumer falls that far
//! behind, the producer does not wait (the embedded writer must keep committing, the shared
//! feed must keep reading its subscription) and does not grow the queue: it drops the
//! placements and owes the consumer a [`FeedEvent::Reset`] (everything may have changed;
//! the feed goes on after this seq), which it sends as soon as there is room again. The consumer so ends up exact either way;
//! its clients resync once instead of the process running out of memory.

use crate::FeedEvent;
use rplace_domain::{Dimensions, Placement, Seq};
use tokio::sync::mpsc::{self, error::TrySendError};

/// Events the feed queue holds. Each event carries a batch of placements (up to a whole
/// commit or a coalesced run of messages), so this is far more placements than the hub
/// falls behind by in normal operation: reaching it means the hub is stuck or starved.
pub const FEED_CAPACITY: usize = 1024;

/// The producer's end of the feed queue.
pub(crate) struct FeedSender {
    /// The queue itself.
    tx: mpsc::Sender<FeedEvent>,
    /// Placements were dropped on a full queue: the next event must be a reset.
    owes_reset: bool,
}

/// A bounded feed queue of `capacity` events.
pub(crate) fn channel(capacity: usize) -> (FeedSender, mpsc::Receiver<FeedEvent>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (
        FeedSender {
            tx,
            owes_reset: false,
        },
        rx,
    )
}

impl FeedSender {
    /// Queues placements that follow the previous event; on a full queue drops them and
    /// owes a reset (so nothing after them may be sent either until it is).
    pub fn placements(&mut self, run: Vec<Placement>) {
        if self.owes_reset || run.is_empty() {
            return;
        }
        match self.tx.try_send(FeedEvent::Placements(run)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.owes_reset = true;
                metrics::counter!("rplace_store_feed_overflows_total").increment(1);
                tracing::warn!(
                    capacity = FEED_CAPACITY,
                    "the hub is a whole feed queue behind; it will get a reset"
                );
            }
            // Nobody listens any more: nothing to keep exact.
            Err(TrySendError::Closed(_)) => {}
        }
    }

    /// Queues the canvas's new size; on a full queue owes a reset instead (a consumer
    /// reads the size again on a reset, as everything else).
    pub fn grown(&mut self, dims: Dimensions) {
        if self.owes_reset {
            return;
        }
        if let Err(TrySendError::Full(_)) = self.tx.try_send(FeedEvent::Grown(dims)) {
            self.owes_reset = true;
        }
    }

    /// Whether placements were dropped and a reset has not been sent yet.
    pub fn owes_reset(&self) -> bool {
        self.owes_reset
    }

    /// Sends the owed reset, its seq read by `seq` only once there is room; `true` when no
    /// reset is owed any more.
    pub fn try_reset(&mut self, seq: impl FnOnce() -> Seq) -> bool {
        if !self.owes_reset {
            return true;
        }
        match self.tx.try_reserve() {
            Ok(permit) => {
                permit.send(FeedEvent::Reset(seq()));
                self.owes_reset = false;
                true
            }
            Err(TrySendError::Full(())) => false,
            Err(TrySendError::Closed(())) => {
                self.owes_reset = false;
                true
            }
        }
    }

    /// Sends a reset, waiting for room; it settles any reset owed.
    pub async fn reset(&mut self, seq: Seq) {
        self.owes_reset = false;
        let _ = self.tx.send(FeedEvent::Reset(seq)).await;
    }

    /// Sends that the canvas grew, waiting for room: a size change is never dropped (an
    /// owed reset still follows it).
    pub async fn grown_waiting(&mut self, dims: Dimensions) {
        let _ = self.tx.send(FeedEvent::Grown(dims)).await;
    }

    /// Resolves once the queue has room for one event (or is closed).
    pub async fn room(&self) {
        let _ = self.tx.reserve().await;
    }

    /// Whether the consumer is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Resolves when the consumer is gone.
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rplace_domain::{ColorIndex, Coord, Seq, UserId};

    fn p(seq: u64) -> Vec<Placement> {
        vec![Placement {
            seq: Seq(seq),
            coord: Coord::new_unchecked(0, 0),
            color: ColorIndex::new_unchecked(1),
            user: UserId(1),
            at_ms: 0,
        }]
    }

    #[tokio::test]
    async fn a_full_queue_drops_placements_and_then_sends_one_reset() {
        let (mut tx, mut rx) = channel(2);
        tx.placements(p(1));
        tx.placements(p(2));
        assert!(!tx.owes_reset());
        tx.placements(p(3)); // full: dropped
        assert!(tx.owes_reset());
        tx.placements(p(4)); // must not jump over the owed reset
        assert!(!tx.try_reset(|| unreachable!("no room yet")));
        assert!(matches!(rx.recv().await, Some(FeedEvent::Placements(v)) if v[0].seq == Seq(1)));
        assert!(tx.try_reset(|| Seq(4)));
        assert!(!tx.owes_reset());
        assert!(matches!(rx.recv().await, Some(FeedEvent::Placements(v)) if v[0].seq == Seq(2)));
        assert!(matches!(rx.recv().await, Some(FeedEvent::Reset(s)) if s == Seq(4)));
        tx.placements(p(5));
        assert!(matches!(rx.recv().await, Some(FeedEvent::Placements(v)) if v[0].seq == Seq(5)));
        assert!(rx.try_recv().is_err());
    }
}
