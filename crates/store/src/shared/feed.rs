//! The feed: one Pub/Sub subscription per instance, turned into every placement exactly
//! once, in seq order.
//!
//! Redis runs placement scripts one at a time and each publishes its placements (one
//! message per batch, consecutive seqs), so one connection receives them in seq order.
//! The task keeps the epoch and the last seq it delivered and, for each placement:
//! - seq at or below the last: a duplicate of something already delivered; skipped;
//! - seq = last + 1: delivered;
//! - seq beyond that: the gap is filled from the stream first (`XRANGE`), which holds
//!   every placement by seq; if the stream no longer reaches back that far, the feed
//!   emits [`FeedEvent::Reset`] with the seq read then (only the seq: the consumer reads
//!   the tiles it needs again, however large the canvas);
//! - another epoch: the state was rebuilt; `Reset`.
//!
//! A grow (`G <epoch> <width> <height>`, published by whichever instance grew the canvas)
//! becomes [`FeedEvent::Grown`], in its place among the placements: Redis publishes it
//! before any placement on the new area can be made. The feed also reads the size with
//! every catch-up page, so a lost message is made up for before placements on the new
//! area are delivered.
//!
//! A message that does not parse, or names a pixel off the canvas or a color the depth
//! cannot hold, is skipped and counted (`rplace_store_feed_malformed_total`); the gap it
//! leaves is filled like a lost message's. The queue to the hub is bounded (`feed_queue`):
//! when the hub is a whole queue behind, it gets a reset once it has room again.
//!
//! When the subscription drops, the task reconnects and catches up from the stream before
//! going on; it also compares its position with the seq in Redis every
//! `feed_check_interval`, so a placement whose message was lost is delivered anyway.
//!
//! The feed starts where the latest `snapshot()` before `take_feed()` left off (the server
//! loads a snapshot first, then consumes the feed), or at the current seq if there was
//! none; the first catch-up delivers everything placed since, and a grow since the store
//! opened.

use super::Inner;
use super::live::parse_record;
use crate::feed_queue::FeedSender;
use crate::{BackendError, Chain};
use futures_util::{FutureExt, StreamExt};
use rplace_domain::{Dimensions, Placement, Seq};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Stream entries read per catch-up step.
const PAGE: usize = 10_000;
/// Messages already received that are delivered as one event.
const COALESCE: usize = 4096;

/// What `take_feed` hands to the task.
pub(crate) struct Start {
    /// Where the events go; bounded, with a reset on overflow.
    pub tx: FeedSender,
    /// Epoch and seq of the snapshot the consumer holds, if it took one.
    pub from: Option<(u64, Seq)>,
}

/// One Pub/Sub message, parsed.
#[derive(Debug, PartialEq, Eq)]
enum Message {
    /// `P <epoch> <first seq> <rec>;<rec>;…`: placements with consecutive seqs.
    Placements {
        epoch: u64,
        placements: Vec<Placement>,
    },
    /// `R <epoch> <seq>`: the state was rebuilt.
    Rebuilt { epoch: u64 },
    /// `G <epoch> <width> <height>`: the canvas grew to this size.
    Grown { dims: Dimensions },
}

fn parse_message(payload: &str) -> Option<Message> {
    let (kind, rest) = payload.split_once(' ')?;
    let (epoch, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let epoch = epoch.parse().ok()?;
    match kind {
        "P" => {
            let (first, recs) = rest.split_once(' ')?;
            let first: u64 = first.parse().ok()?;
            let placements = recs
                .split(';')
                .enumerate()
                .map(|(i, rec)| parse_record(Seq(first.checked_add(i as u64)?), rec))
                .collect::<Option<Vec<_>>>()?;
            Some(Message::Placements { epoch, placements })
        }
        "R" => Some(Message::Rebuilt { epoch }),
        "G" => Some(Message::Grown {
            dims: super::live::parse_dims(rest)?,
        }),
        _ => None,
    }
}

/// Why a step could not go on; the task reconnects after it.
#[derive(Debug)]
struct Interrupted(BackendError);

impl<E: Into<BackendError>> From<E> for Interrupted {
    fn from(e: E) -> Self {
        Interrupted(e.into())
    }
}

/// The task's position.
struct Feed {
    /// Shared store state.
    inner: Arc<Inner>,
    /// Where events go.
    tx: FeedSender,
    /// The Redis generation the delivered placements belong to.
    epoch: u64,
    /// The last seq delivered (or the seq of the last reset).
    last: Seq,
    /// The canvas's size as last told to the consumer.
    dims: Dimensions,
}

pub(crate) async fn run(inner: Arc<Inner>, start: oneshot::Receiver<Start>) {
    let Ok(Start { tx, from }) = start.await else {
        return;
    };
    let (epoch, last) = match from {
        Some(from) => from,
        None => loop {
            match inner.live_head().await {
                Ok(s) => break (s.epoch, s.seq),
                Err(e) => {
                    tracing::warn!(error = %Chain(&e), "feed cannot read its starting point; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        },
    };
    // A grow since open is told again by the first catch-up (a repeat is harmless, a
    // miss is not: the consumer may have read the size before the grow).
    let dims = inner.opened_dims;
    let mut feed = Feed {
        inner,
        tx,
        epoch,
        last,
        dims,
    };
    feed.run().await;
}

impl Feed {
    async fn run(&mut self) {
        let mut backoff = Duration::from_millis(50);
        loop {
            if self.tx.is_closed() {
                return;
            }
            let mut messages = match self.inner.live.subscribe().await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %Chain(&e), "feed cannot subscribe; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            // Whatever was placed while we were not subscribed comes from the stream.
            if let Err(Interrupted(e)) = self.catch_up().await {
                tracing::warn!(error = %Chain(&e), "feed catch-up failed; resubscribing");
                tokio::time::sleep(backoff).await;
                continue;
            }
            backoff = Duration::from_millis(50);
            let mut check = tokio::time::interval(self.inner.cfg.feed_check_interval);
            check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            check.tick().await;
            loop {
                let step = tokio::select! {
                    msg = messages.next() => match msg {
                        Some(first) => {
                            let mut batch = vec![first];
                            while batch.len() < COALESCE {
                                match messages.next().now_or_never() {
                                    Some(Some(m)) => batch.push(m),
                                    _ => break,
                                }
                            }
                            self.on_messages(batch).await
                        }
                        None => Err(Interrupted(BackendError::Stopped("Pub/Sub subscription"))),
                    },
                    _ = check.tick() => self.catch_up().await,
                    // The hub was a whole queue behind and placements were dropped: once it
                    // has room, it gets the board instead.
                    _ = self.tx.room(), if self.tx.owes_reset() => self.reset().await,
                    _ = self.tx.closed() => return,
                };
                if let Err(Interrupted(e)) = step {
                    metrics::counter!("rplace_store_feed_reconnects_total").increment(1);
                    tracing::warn!(error = %Chain(&e), last = self.last.0, "feed interrupted; reconnecting");
                    break;
                }
            }
        }
    }

    async fn on_messages(&mut self, batch: Vec<redis::Msg>) -> Result<(), Interrupted> {
        let mut run: Vec<Placement> = Vec::new();
        for msg in batch {
            let payload = String::from_utf8_lossy(msg.get_payload_bytes());
            let depth = self.inner.cfg.depth;
            let dims = self.dims;
            let parsed = parse_message(&payload).filter(|m| match m {
                Message::Placements { placements, .. } => placements
                    .iter()
                    .all(|p| dims.contains(p.coord) && depth.holds(p.color)),
                Message::Rebuilt { .. } | Message::Grown { .. } => true,
            });
            let Some(parsed) = parsed else {
                // Skipped, not fatal: if it stood for real placements, the gap it leaves is
                // filled from the stream (or reset) like a lost message.
                metrics::counter!("rplace_store_feed_malformed_total").increment(1);
                tracing::warn!(%payload, "ignoring a malformed feed message");
                continue;
            };
            match parsed {
                Message::Grown { dims } => {
                    self.deliver(std::mem::take(&mut run));
                    self.grow_to(dims).await;
                }
                Message::Placements { epoch, placements } if epoch == self.epoch => {
                    for placement in placements {
                        let expected = Seq(self.last.0 + run.len() as u64 + 1);
                        if placement.seq < expected {
                            continue;
                        }
                        if placement.seq > expected {
                            self.deliver(std::mem::take(&mut run));
                            metrics::counter!("rplace_store_feed_gaps_total").increment(1);
                            // Fills up to the newest seq, which includes this message.
                            self.catch_up().await?;
                            break;
                        }
                        run.push(placement);
                    }
                }
                Message::Rebuilt { epoch } if epoch == self.epoch => {}
                // Left over from a generation the feed has already reset past.
                Message::Placements { epoch, .. } | Message::Rebuilt { epoch }
                    if epoch < self.epoch => {}
                Message::Placements { .. } | Message::Rebuilt { .. } => {
                    self.deliver(std::mem::take(&mut run));
                    self.reset().await?;
                }
            }
        }
        self.deliver(run);
        Ok(())
    }

    /// Sends placements that follow `last` without a gap.
    fn deliver(&mut self, run: Vec<Placement>) {
        if let Some(p) = run.last() {
            debug_assert_eq!(run[0].seq, self.last.next());
            self.last = p.seq;
            self.tx.placements(run);
        }
    }

    /// Delivers everything in the stream after `last` up to the newest seq, or resets if
    /// the stream no longer reaches back to `last`.
    async fn catch_up(&mut self) -> Result<(), Interrupted> {
        loop {
            let page = self.inner.live.read_after(self.last, PAGE).await?;
            let Some(epoch) = page.epoch else {
                // Redis lost its state; the rebuild's announcement (or the next check)
                // brings us back.
                return Ok(());
            };
            if epoch != self.epoch {
                return self.reset().await;
            }
            if let Some(dims) = page.dims {
                self.grow_to(dims).await;
            }
            if page.seq <= self.last {
                return Ok(());
            }
            let contiguous = page
                .entries
                .iter()
                .enumerate()
                .all(|(i, p)| p.seq.0 == self.last.0 + 1 + i as u64);
            if page.entries.is_empty() || !contiguous {
                metrics::counter!("rplace_store_feed_trimmed_gaps_total").increment(1);
                tracing::warn!(
                    last = self.last.0,
                    newest = page.seq.0,
                    "feed gap no longer in the stream"
                );
                return self.reset().await;
            }
            let full = page.entries.len() == PAGE;
            self.deliver(page.entries);
            if !full && self.last >= page.seq {
                return Ok(());
            }
        }
    }

    /// Tells the consumer the canvas grew, if `dims` is larger than what it knows (each
    /// axis only grows), and lets the store know too.
    async fn grow_to(&mut self, dims: Dimensions) {
        let grown = super::max_dims(self.dims, dims);
        if grown != self.dims {
            self.dims = grown;
            self.inner.learn_dims(grown);
            tracing::info!(
                width = grown.width(),
                height = grown.height(),
                "the canvas grew"
            );
            self.tx.grown_waiting(grown).await;
        }
    }

    /// Emits a reset at the seq read now, and goes on from there. Reads the seq only.
    async fn reset(&mut self) -> Result<(), Interrupted> {
        let s = self.inner.live_head().await?;
        metrics::counter!("rplace_store_feed_resets_total").increment(1);
        tracing::warn!(epoch = s.epoch, seq = s.seq.0, "feed reset");
        self.epoch = s.epoch;
        self.last = s.seq;
        self.tx.reset(s.seq).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rplace_domain::{ColorIndex, Coord, UserId};

    #[test]
    fn messages_parse() {
        let p = |seq, x, user| Placement {
            seq: Seq(seq),
            coord: Coord::new_unchecked(x, 2),
            color: ColorIndex::new_unchecked(5),
            user: UserId(user),
            at_ms: 1000,
        };
        assert_eq!(
            parse_message("P 3 17 1 2 5 42 1000"),
            Some(Message::Placements {
                epoch: 3,
                placements: vec![p(17, 1, 42)]
            })
        );
        assert_eq!(
            parse_message("P 3 17 1 2 5 42 1000;4 2 5 43 1000"),
            Some(Message::Placements {
                epoch: 3,
                placements: vec![p(17, 1, 42), p(18, 4, 43)]
            })
        );
        assert_eq!(parse_message("P 3 17 1 2 5 42 1000;4 2"), None);
        assert_eq!(parse_message("R 4 99"), Some(Message::Rebuilt { epoch: 4 }));
        assert_eq!(
            parse_message("G 4 100000 3"),
            Some(Message::Grown {
                dims: Dimensions::parse(100_000, 3).unwrap()
            })
        );
        assert_eq!(parse_message("G 4 0 3"), None);
        assert_eq!(parse_message("G 4 5"), None);
        assert_eq!(parse_message("X 1 2"), None);
        assert_eq!(parse_message("P x 1 1 1 1 1 1"), None);
        // A seq past u64::MAX is malformed, not an overflow panic.
        assert_eq!(
            parse_message("P 3 18446744073709551615 1 2 5 42 1000;4 2 5 43 1000"),
            None
        );
    }
}
