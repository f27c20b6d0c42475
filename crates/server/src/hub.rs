//! The hub: the one task that consumes the store's feed of accepted placements.
//!
//! It keeps this instance's live copy of the board (served by `GET /api/board`), the
//! in-memory log of recent updates (served by `GET /api/updates`), and every tick it
//! encodes the placements of that tick into one binary frame and broadcasts the same bytes
//! to every websocket client.
//!
//! Fan-out uses one `tokio::sync::broadcast` channel: each client's queue is its position
//! in that shared ring, so a slow client costs no memory of its own; once it falls more
//! than `client_queue` frames behind it sees `Lagged` and is told to reconnect.
//!
//! The tick adapts to the audience: with `c` clients and a frame budget of `f` frames/s,
//! a tick is at least `c / f` seconds long, so the frame rate stays within what the machine
//! can write however many clients connect.
//!
//! The hub trusts nothing it is fed: a placement off the board or with a color the depth
//! cannot hold is skipped, counted (`rplace_hub_bad_records_total`) and logged, never
//! applied (applying it would panic). Its lock never stays poisoned: should anything panic
//! while holding it, the next user takes the state as it is instead of panicking in turn,
//! and the supervisor (`crate::supervise`) fails readiness and stops the process.

use bytes::Bytes;
use rplace_domain::wire::{self, Update};
use rplace_domain::{Board, Placement, Seq};
use rplace_store::{FeedEvent, Snapshot};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// What the hub broadcasts to websocket tasks.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// An encoded update frame, identical for every client.
    Frame(Bytes),
    /// Continuity was lost (the store reset): clients must refetch the board.
    Resync,
}

/// Why [`Hub::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubEnd {
    /// It was told to stop.
    Stopped,
    /// The store's feed ended: no more placements will arrive.
    FeedEnded,
}

/// The live board and the recent log, changed together under one lock.
struct Live {
    /// This instance's copy of the board, with every placement up to `seq` applied.
    board: Board,
    /// Newest seq applied.
    seq: Seq,
    /// Recent updates, oldest first, contiguous, ending at `seq`.
    log: VecDeque<Update>,
}

/// Shared handle to the hub's state.
pub struct Hub {
    /// Board, seq and log.
    live: Mutex<Live>,
    /// Longest `log` may grow.
    log_cap: usize,
    /// The fan-out channel.
    tx: broadcast::Sender<Outgoing>,
    /// Newest seq contained in a frame already broadcast; new clients learn it in `hello`.
    last_sent: AtomicU64,
    /// Open websocket connections; drives the adaptive tick.
    clients: AtomicUsize,
    /// Shortest tick.
    min_tick: Duration,
    /// Frame budget per second across all clients.
    max_frame_rate: u64,
    /// Current tick in ms, reported to new clients.
    tick_ms: AtomicU64,
}

/// A recent-log query result.
pub enum Recent {
    /// Updates after `since`, up to the limit, and the head seq.
    Found(Vec<Update>, Seq),
    /// `since` is older than the in-memory log holds.
    TooOld,
}

impl Hub {
    pub fn new(
        start: Snapshot,
        log_cap: usize,
        client_queue: usize,
        min_tick: Duration,
        max_frame_rate: u64,
    ) -> Arc<Self> {
        let (tx, _) = broadcast::channel(client_queue);
        Arc::new(Self {
            last_sent: AtomicU64::new(start.seq.0),
            live: Mutex::new(Live {
                board: start.board,
                seq: start.seq,
                log: VecDeque::new(),
            }),
            log_cap,
            tx,
            clients: AtomicUsize::new(0),
            min_tick,
            max_frame_rate,
            tick_ms: AtomicU64::new(min_tick.as_millis() as u64),
        })
    }

    /// The live state. A panic while it was held (there is none left on bad input) must not
    /// turn every later request into a panic too: the state is used as it is, and the
    /// supervisor has already failed readiness because the hub task died.
    fn live(&self) -> MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Newest seq applied to the live board.
    pub fn seq(&self) -> Seq {
        self.live().seq
    }

    /// A copy of the live board and its seq.
    pub fn board_copy(&self) -> (Seq, Bytes) {
        let live = self.live();
        (live.seq, Bytes::copy_from_slice(live.board.as_bytes()))
    }

    /// The color at one pixel on the live board.
    pub fn pixel(&self, c: rplace_domain::Coord) -> rplace_domain::ColorIndex {
        let live = self.live();
        if !live.board.dims().contains(c) {
            return rplace_domain::ColorIndex::new_unchecked(0);
        }
        live.board.get(c)
    }

    /// Updates after `since` from the in-memory log, at most `limit`.
    pub fn recent(&self, since: Seq, limit: usize) -> Recent {
        let live = self.live();
        if since >= live.seq {
            return Recent::Found(Vec::new(), live.seq);
        }
        let oldest = live
            .log
            .front()
            .map_or(live.seq, |u| Seq(u.seq.0.saturating_sub(1)));
        if since < oldest {
            return Recent::TooOld;
        }
        let skip = (since.0 - oldest.0) as usize;
        Recent::Found(
            live.log.iter().skip(skip).take(limit).copied().collect(),
            live.seq,
        )
    }

    /// Joins the fan-out; returns the receiver and the seq the client is known to be
    /// current up to through frames (frames it receives start after it).
    pub fn subscribe(&self) -> (broadcast::Receiver<Outgoing>, Seq) {
        let rx = self.tx.subscribe();
        // Read after subscribing: a frame sent in between is both received and counted
        // here, which only makes the client skip entries it already has.
        (rx, Seq(self.last_sent.load(Ordering::Acquire)))
    }

    pub fn client_connected(&self) -> usize {
        let n = self.clients.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!("rplace_ws_clients").set(n as f64);
        n
    }

    pub fn client_disconnected(&self) {
        let n = self.clients.fetch_sub(1, Ordering::Relaxed) - 1;
        metrics::gauge!("rplace_ws_clients").set(n as f64);
    }

    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    pub fn tick_ms(&self) -> u64 {
        self.tick_ms.load(Ordering::Relaxed)
    }

    /// The tick for the current audience.
    fn current_tick(&self) -> Duration {
        let clients = self.clients() as u64;
        let needed = Duration::from_micros(clients.saturating_mul(1_000_000) / self.max_frame_rate);
        let tick = needed.clamp(self.min_tick, Duration::from_secs(1).max(self.min_tick));
        self.tick_ms
            .store(tick.as_millis() as u64, Ordering::Relaxed);
        tick
    }

    fn apply(&self, placements: &[Placement], pending: &mut Vec<Update>) {
        let mut live = self.live();
        for p in placements {
            if p.seq <= live.seq {
                continue; // already applied (a feed may overlap a snapshot)
            }
            if !live.board.fits(p.coord, p.color) {
                // Skipping leaves a gap in the log and the frames, which clients fill from
                // `/api/updates` like any gap; applying it would panic.
                metrics::counter!("rplace_hub_bad_records_total").increment(1);
                tracing::error!(
                    seq = p.seq.0,
                    x = p.coord.x(),
                    y = p.coord.y(),
                    color = p.color.get(),
                    "the feed delivered a placement that does not fit the board; skipped"
                );
                continue;
            }
            live.board.set(p.coord, p.color);
            live.seq = p.seq;
            let u = Update {
                seq: p.seq,
                coord: p.coord,
                color: p.color,
            };
            if live.log.back().is_some_and(|b| b.seq.0 + 1 != u.seq.0) {
                live.log.clear(); // the log must stay contiguous
            }
            live.log.push_back(u);
            if live.log.len() > self.log_cap {
                live.log.pop_front();
            }
            pending.push(u);
        }
    }

    fn reset(&self, snap: Snapshot) {
        let mut live = self.live();
        if snap.board.dims() != live.board.dims() || snap.board.depth() != live.board.depth() {
            metrics::counter!("rplace_hub_bad_records_total").increment(1);
            tracing::error!(
                seq = snap.seq.0,
                "the feed reset to a board of another shape; skipped"
            );
            return;
        }
        live.board = snap.board;
        live.seq = snap.seq;
        live.log.clear();
        self.last_sent.store(snap.seq.0, Ordering::Release);
    }

    fn broadcast(&self, pending: &mut Vec<Update>) {
        if pending.is_empty() {
            return;
        }
        let started = Instant::now();
        let last = pending.last().map(|u| u.seq).unwrap_or_default();
        for frame in wire::encode_frames(pending) {
            let receivers = self.tx.receiver_count() as u64;
            metrics::counter!("rplace_frames_sent_total").increment(receivers);
            metrics::counter!("rplace_frame_bytes_sent_total")
                .increment(receivers * frame.len() as u64);
            // No receivers is not an error: nobody is watching.
            let _ = self.tx.send(Outgoing::Frame(Bytes::from(frame)));
        }
        self.last_sent.store(last.0, Ordering::Release);
        metrics::counter!("rplace_frames_encoded_total").increment(1);
        metrics::histogram!("rplace_tick_seconds").record(started.elapsed().as_secs_f64());
        pending.clear();
    }

    /// Runs until the feed ends or `stop` is cancelled, and says which.
    pub async fn run(
        self: Arc<Self>,
        mut feed: mpsc::Receiver<FeedEvent>,
        store: Arc<rplace_store::Backend>,
        stop: CancellationToken,
    ) -> HubEnd {
        use rplace_store::Store;
        let mut pending: Vec<Update> = Vec::new();
        let mut next_tick = tokio::time::Instant::now() + self.current_tick();
        let end = loop {
            tokio::select! {
                ev = feed.recv() => match ev {
                    Some(FeedEvent::Placements(ps)) => self.apply(&ps, &mut pending),
                    Some(FeedEvent::Reset(seq)) => {
                        tracing::warn!(seq = seq.0, "store reset the feed; clients resync");
                        pending.clear();
                        match store.snapshot().await {
                            Ok(snap) => self.reset(snap),
                            Err(e) => {
                                tracing::error!(error = %rplace_store::Chain(&e), "reading the board after a reset failed");
                                break HubEnd::FeedEnded;
                            }
                        }
                        let _ = self.tx.send(Outgoing::Resync);
                    }
                    Some(FeedEvent::Grown(dims)) => {
                        tracing::info!(width = dims.width(), height = dims.height(), "the canvas grew");
                    }
                    None => break HubEnd::FeedEnded,
                },
                _ = tokio::time::sleep_until(next_tick) => {
                    self.broadcast(&mut pending);
                    next_tick = tokio::time::Instant::now() + self.current_tick();
                }
                _ = stop.cancelled() => break HubEnd::Stopped,
                _ = fault::INJECTED.cancelled() => fault::panic_holding(&self.live),
            }
        };
        self.broadcast(&mut pending);
        end
    }
}

/// A way for tests to kill the hub the way a bug would, since no bad input can any more.
#[doc(hidden)]
pub mod fault {
    use std::sync::{LazyLock, Mutex};
    use tokio_util::sync::CancellationToken;

    /// Cancelled by [`panic_every_hub`].
    pub(super) static INJECTED: LazyLock<CancellationToken> = LazyLock::new(CancellationToken::new);

    /// Makes every hub in this process panic while holding its lock (poisoning it). For
    /// tests of the supervisor only; a test that calls it must run in a process of its own.
    pub fn panic_every_hub() {
        INJECTED.cancel();
    }

    pub(super) fn panic_holding<T>(lock: &Mutex<T>) -> ! {
        let _held = lock.lock();
        panic!("fault injected into the hub");
    }
}
