//! The history writer: one task per instance that writes the placements this instance
//! accepted in Redis to PostgreSQL, many per transaction (group commit), and only then
//! lets `place` answer `Ok`.
//!
//! While one batch commits, the next requests queue up; the next batch takes all of
//! them. A failed commit is retried with backoff for as long as somebody still waits for
//! it (at most `retry_for`); what is given up on is left to the reconciler, which copies
//! it from the Redis stream.

use super::Health;
use super::history::{History, Written};
use crate::{BackendError, Chain};
use rplace_domain::Placement;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, oneshot};

/// Most placements written in one transaction.
pub const MAX_BATCH: usize = 8192;

/// A placement accepted in Redis, waiting to be written.
pub(crate) struct Pending {
    pub placement: Placement,
    /// The Redis generation it was made in; the write is refused if that has changed.
    pub epoch: u64,
    /// Answered once the placement is durable (or will not be).
    pub reply: oneshot::Sender<Result<(), Failure>>,
}

/// Why a placement was not written.
#[derive(Debug)]
pub(crate) enum Failure {
    /// PostgreSQL failed (for the whole batch, hence shared); the reconciler copies the
    /// placement from the stream later.
    Unavailable(Arc<BackendError>),
    /// A rebuild replaced the Redis state it was made on; it is not kept.
    Superseded,
    /// Another placement holds its seq in the history.
    Diverged,
}

pub(crate) enum Cmd {
    Write(Pending),
    /// Write everything queued, answer, and stop.
    Close(oneshot::Sender<()>),
}

pub(crate) struct Writer {
    /// Where the placements go.
    pub history: History,
    /// `history_ok` is cleared while commits fail, so `place` stops adding to Redis what
    /// cannot be made durable.
    pub health: Arc<Health>,
    /// Woken when a write finds a different placement under its seq: Redis diverged from
    /// the history and the maintenance task should check it now.
    pub diverged: Arc<Notify>,
    /// Longest time one batch is retried.
    pub retry_for: Duration,
}

impl Writer {
    pub async fn run(self, mut rx: mpsc::Receiver<Cmd>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            let Some(first) = rx.recv().await else { return };
            let mut close = None;
            match first {
                Cmd::Write(p) => batch.push(p),
                Cmd::Close(tx) => close = Some(tx),
            }
            while close.is_none() && batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(Cmd::Write(p)) => batch.push(p),
                    Ok(Cmd::Close(tx)) => close = Some(tx),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.commit(std::mem::take(&mut batch)).await;
            }
            if let Some(done) = close {
                rx.close();
                // Requests that raced the close are written, not dropped.
                while let Ok(cmd) = rx.try_recv() {
                    if let Cmd::Write(p) = cmd {
                        batch.push(p);
                    }
                }
                if !batch.is_empty() {
                    self.commit(std::mem::take(&mut batch)).await;
                }
                let _ = done.send(());
                return;
            }
        }
    }

    async fn commit(&self, batch: Vec<Pending>) {
        let started = Instant::now();
        let size = batch.len();
        // Around a rebuild one batch may hold two generations; each is fenced on its own.
        let mut by_epoch: BTreeMap<u64, Vec<Pending>> = BTreeMap::new();
        for p in batch {
            by_epoch.entry(p.epoch).or_default().push(p);
        }
        for (epoch, items) in by_epoch {
            let rows: Vec<Placement> = items.iter().map(|p| p.placement).collect();
            let mut delay = Duration::from_millis(20);
            let outcome = loop {
                match self.history.write(epoch, &rows).await {
                    Ok(w) => {
                        self.health.history_ok.store(true, Ordering::Relaxed);
                        break Ok(w);
                    }
                    Err(e) => {
                        self.health.history_ok.store(false, Ordering::Relaxed);
                        metrics::counter!("rplace_store_commit_failures_total").increment(1);
                        let abandoned = items.iter().all(|p| p.reply.is_closed());
                        if abandoned || started.elapsed() >= self.retry_for {
                            break Err(e);
                        }
                        tracing::warn!(error = %Chain(&e), rows = rows.len(), "history write failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(1));
                    }
                }
            };
            match outcome {
                Ok(Written::Stored { conflicts }) => {
                    metrics::counter!("rplace_store_placements_committed_total")
                        .increment((rows.len() - conflicts.len()) as u64);
                    if !conflicts.is_empty() {
                        tracing::error!(
                            ?conflicts,
                            "the history already holds other placements under these seqs: \
                             Redis has diverged from PostgreSQL"
                        );
                        self.diverged.notify_one();
                    }
                    for p in items {
                        let res = if conflicts.contains(&p.placement.seq) {
                            Err(Failure::Diverged)
                        } else {
                            Ok(())
                        };
                        let _ = p.reply.send(res);
                    }
                }
                Ok(Written::Stale) => {
                    tracing::warn!(
                        epoch,
                        rows = rows.len(),
                        "placements made before a rebuild were not kept"
                    );
                    for p in items {
                        let _ = p.reply.send(Err(Failure::Superseded));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %Chain(&e), rows = rows.len(), "history write given up; the reconciler will copy these from the stream");
                    let e = Arc::new(BackendError::from(e));
                    for p in items {
                        let _ = p.reply.send(Err(Failure::Unavailable(e.clone())));
                    }
                }
            }
        }
        metrics::histogram!("rplace_store_commit_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("rplace_store_batch_size").record(size as f64);
    }
}
