//! The shared backend: any number of instances behind a load balancer, one Redis holding
//! the live state and one PostgreSQL holding the history.
//!
//! # Layout
//! - this file: [`SharedConfig`], [`SharedStore`] and its [`Store`] implementation.
//! - `keys`: the Redis key names, under a configurable prefix.
//! - `live`: the live state in Redis and the Lua scripts that change it (`lua/`).
//! - `idempotency`: answering a repeat of an idempotency key only once the first
//!   attempt's placement is durable.
//! - `batcher`: the per-instance task that sends all placements waiting for Redis as one
//!   script call.
//! - `history`: the history in PostgreSQL: migrations, batched idempotent writes, pixel
//!   history, board snapshots and the rebuild read (`copy_rows` parses its `COPY`).
//! - `writer`: the per-instance group-commit task that makes accepted placements durable.
//! - `feed`: the per-instance Pub/Sub subscriber that turns the channel into a gap-free,
//!   duplicate-free feed in seq order.
//! - `recovery`: rebuilding Redis from PostgreSQL, reconciling the stream into
//!   PostgreSQL, and the maintenance task that runs both.
//! - `backlog`: the stream as a buffer while PostgreSQL is away (only with a durable
//!   Redis), its trimming and its cap.
//! - `probe`: the per-instance task that probes Redis for readiness, durability and the
//!   backlog, within the Redis timeout.
//!
//! # Where things live
//! Redis holds the board as one string key in exactly the [`Board`] byte layout (so
//! reading it is a `GET`, and a placement is `BITFIELD SET u4 #i`), the global seq, the
//! cooldown of each user (a key per user that expires with the cooldown), the per-address
//! limit (GCRA, a key per address key: an IPv6 address by its prefix), the first outcome
//! of each idempotency key (a key per user and key, expiring with the window), and a
//! stream of the recent placements with IDs `<seq>-0`, trimmed to
//! [`SharedConfig::stream_capacity`] but never past the history's watermark. One Lua
//! script decides and
//! applies a batch of placements, each as if alone: checks, `BITFIELD`, seq, `XADD`; then
//! one `PUBLISH` for the batch. Redis serializes scripts, so the seq is global and
//! gap-free, two instances racing for one user's cooldown get exactly one acceptance, and
//! the per-address limit holds across instances. Times come from Redis's clock (`TIME`),
//! so every instance agrees, and never go backwards along the seq.
//!
//! PostgreSQL holds every accepted placement and, every [`SharedConfig::snapshot_every`]
//! placements, a board snapshot, so a rebuild replays only what follows the latest one.
//!
//! # Durability: when `place` returns `Ok`
//! `place` runs the script, then hands the placement to this instance's writer, which
//! commits it to PostgreSQL together with everything else waiting; `Ok` comes only after
//! that commit. An acknowledged placement is therefore in PostgreSQL and survives
//! `kill -9` of any instance and the loss of Redis.
//!
//! Except while PostgreSQL is away (its commits fail or time out): then, if Redis is
//! durable on its own (AOF with `appendfsync always`, checked every health interval),
//! `place` acknowledges once the script has run, since Redis answers only after its AOF
//! is fsynced, and the placement waits in the stream until the reconciler copies it
//! (`backlog`), up to [`SharedConfig::backlog_limit`] placements. Such a placement
//! survives `kill -9` of Redis (it comes back from the AOF) but not the loss of the Redis
//! machine's disk. Without a durable Redis, `place` answers `503` while PostgreSQL is
//! away, as before.
//!
//! Every Redis command is bounded by [`SharedConfig::redis_timeout`] and every PostgreSQL
//! call by [`SharedConfig::database_timeout`] (the rebuild's replay by a long bound of its
//! own), so a stalled service answers `503` within them rather than holding requests.
//! A `503` after a timeout may still have been applied (the script ran, its answer was
//! late); the reconciler then keeps it.
//!
//! A placement that reached Redis but not PostgreSQL (its instance died, or its commit
//! failed) was never acknowledged, but it is on the board and was broadcast. To keep the
//! two identical, every instance reconciles: every [`SharedConfig::reconcile_interval`] it
//! copies the stream entries past the history's watermark that are older than
//! [`SharedConfig::reconcile_grace`] into PostgreSQL (idempotent on seq). Such a placement
//! answered `503` may so still end up kept; that is the one case where an error did
//! change something.
//!
//! When Redis loses its state (restart without persistence, `FLUSHALL`), the script finds
//! the board, seq or epoch key missing and refuses, rather than counting again from 0.
//! One instance takes a lock key and rebuilds: it bumps the epoch in PostgreSQL (which
//! fences out writes of placements made on the lost state: those answer `503`), replays
//! the latest snapshot plus the rows after it, and installs the board, the seq (the
//! history's newest) and the new epoch in one script. Placements meanwhile wait up to
//! [`SharedConfig::rebuild_wait`] and then answer `503`. Every feed then emits
//! [`FeedEvent::Reset`], because the lost state may have held broadcast placements that
//! never reached the history. A Redis restored from an older copy (its seq behind the
//! history's) is detected by the maintenance task and rebuilt the same way.

mod backlog;
mod batcher;
mod copy_rows;
mod feed;
mod history;
mod idempotency;
mod keys;
mod live;
mod probe;
mod recovery;
mod writer;

use crate::{
    BackendError, FeedEvent, NewPlacement, PlaceError, Placed, Service, Snapshot, Store, StoreError,
};
use history::History;
use live::{Live, PlaceOutcome};
use rplace_domain::board::Depth;
use rplace_domain::policy::Params;
use rplace_domain::{Board, Coord, Dimensions, Placement, Seq, UserId};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

pub use writer::MAX_BATCH;

/// The key prefix used when none is configured.
pub const DEFAULT_PREFIX: &str = "rplace:";

/// Requests that may wait for the batcher or the writer before `place` itself waits
/// (backpressure).
const TASK_QUEUE: usize = 65_536;

/// What the shared store needs to know. [`SharedConfig::new`] fills in the defaults.
#[derive(Clone)]
pub struct SharedConfig {
    /// `redis://[:password@]host:port[/db]`.
    pub redis_url: String,
    /// `postgres://user[:password]@host:port/database`.
    pub postgres_url: String,
    /// Board size; must match what Redis and PostgreSQL already hold.
    pub dims: Dimensions,
    /// Bits per pixel; must match what Redis and PostgreSQL already hold.
    pub depth: Depth,
    /// The placement policy's parameters (cooldown, per-address rate, IPv6 prefix),
    /// enforced across all instances by the placement script.
    pub policy: Params,
    /// How long an idempotency key's first outcome is kept in Redis. Default 600 s.
    pub idempotency_window: Duration,
    /// Prefix of every Redis key and of the channel, so that deployments (and tests) can
    /// share a Redis. Default [`DEFAULT_PREFIX`].
    pub key_prefix: String,
    /// Recent placements kept in the Redis stream for catch-up (`updates_since`, feed gap
    /// filling, reconciling); approximate, at least this many. Default 100,000.
    pub stream_capacity: u64,
    /// Most placements that may wait in Redis for PostgreSQL while it is away (durable
    /// Redis only); past it placements answer `503`. Bounds Redis's memory (about 100
    /// bytes each). Default 1,000,000.
    pub backlog_limit: u64,
    /// Longest one Redis command (or connection attempt) may take. Default 1 s.
    pub redis_timeout: Duration,
    /// Longest one PostgreSQL call (pool checkout included) may take. Default 2 s.
    pub database_timeout: Duration,
    /// PostgreSQL connections of this instance. Default 8.
    pub pg_pool_size: usize,
    /// Longest `place` waits for its history commit (retries included) before answering
    /// `Unavailable`, or, with a durable Redis, acknowledging from Redis. Default 3 s.
    pub ack_timeout: Duration,
    /// Longest `place` and `snapshot` wait for a running rebuild. Default 10 s.
    pub rebuild_wait: Duration,
    /// How often the stream is reconciled into PostgreSQL (and snapshots are considered).
    /// Default 2 s.
    pub reconcile_interval: Duration,
    /// Stream entries younger than this are left to the writer of the instance that made
    /// them. Default 5 s.
    pub reconcile_grace: Duration,
    /// Write a board snapshot to PostgreSQL after this many placements. Default 100,000.
    pub snapshot_every: u64,
    /// How often Redis (and a failing PostgreSQL) is probed and missing state noticed.
    /// Default 250 ms, so that readiness fails within it plus `redis_timeout`.
    pub health_interval: Duration,
    /// How often the feed compares its position with the seq in Redis, in case a Pub/Sub
    /// message was lost without the connection dropping. Default 1 s.
    pub feed_check_interval: Duration,
}

impl SharedConfig {
    pub fn new(
        redis_url: impl Into<String>,
        postgres_url: impl Into<String>,
        dims: Dimensions,
        depth: Depth,
        policy: Params,
    ) -> Self {
        Self {
            redis_url: redis_url.into(),
            postgres_url: postgres_url.into(),
            dims,
            depth,
            policy,
            idempotency_window: Duration::from_secs(600),
            key_prefix: DEFAULT_PREFIX.into(),
            stream_capacity: 100_000,
            backlog_limit: 1_000_000,
            redis_timeout: Duration::from_secs(1),
            database_timeout: Duration::from_secs(2),
            pg_pool_size: 8,
            ack_timeout: Duration::from_secs(3),
            rebuild_wait: Duration::from_secs(10),
            reconcile_interval: Duration::from_secs(2),
            reconcile_grace: Duration::from_secs(5),
            snapshot_every: 100_000,
            health_interval: Duration::from_millis(250),
            feed_check_interval: Duration::from_secs(1),
        }
    }
}

impl std::fmt::Debug for SharedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedConfig")
            .field("redis_url", &redact(&self.redis_url))
            .field("postgres_url", &redact(&self.postgres_url))
            .field("dims", &self.dims)
            .field("depth", &self.depth)
            .field("policy", &self.policy)
            .field("idempotency_window", &self.idempotency_window)
            .field("key_prefix", &self.key_prefix)
            .field("stream_capacity", &self.stream_capacity)
            .field("backlog_limit", &self.backlog_limit)
            .field("redis_timeout", &self.redis_timeout)
            .field("database_timeout", &self.database_timeout)
            .field("pg_pool_size", &self.pg_pool_size)
            .field("ack_timeout", &self.ack_timeout)
            .field("rebuild_wait", &self.rebuild_wait)
            .field("reconcile_interval", &self.reconcile_interval)
            .field("reconcile_grace", &self.reconcile_grace)
            .field("snapshot_every", &self.snapshot_every)
            .field("health_interval", &self.health_interval)
            .field("feed_check_interval", &self.feed_check_interval)
            .finish()
    }
}

/// A URL with its password replaced, for messages and logs.
pub(crate) fn redact(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let auth_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..auth_end].rfind('@')
            && let Some(colon) = rest[..at].find(':')
        {
            return format!(
                "{}://{}:***{}",
                &url[..scheme_end],
                &rest[..colon],
                &rest[at..]
            );
        }
        return url.to_string();
    }
    // key=value form: hide the password's value.
    url.split_whitespace()
        .map(|kv| match kv.split_once('=') {
            Some(("password", _)) => "password=***".to_string(),
            _ => kv.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What `is_ready` is made of; set by the tasks that notice.
#[derive(Debug)]
pub(crate) struct Health {
    /// The last Redis command or probe succeeded.
    pub redis_ok: AtomicBool,
    /// History writes succeed (cleared while commits fail, set by a success or a probe).
    pub history_ok: AtomicBool,
    /// This instance is rebuilding the Redis state.
    pub rebuilding_here: AtomicBool,
    /// Another instance holds the rebuild lock.
    pub rebuilding_elsewhere: AtomicBool,
    /// `close` was called.
    pub closed: AtomicBool,
    /// Redis fsyncs every write before answering, so it may hold acknowledged placements
    /// while PostgreSQL is away (set by the probe).
    pub redis_durable: AtomicBool,
    /// The newest seq this instance has seen (probe and own placements), for the backlog.
    pub seq_seen: AtomicU64,
    /// The history's watermark as last read from Redis, for the backlog.
    pub durable_seen: AtomicU64,
}

impl Health {
    /// Placements in Redis that PostgreSQL may not hold yet, as far as this instance knows.
    fn backlog(&self) -> u64 {
        self.seq_seen
            .load(Ordering::Relaxed)
            .saturating_sub(self.durable_seen.load(Ordering::Relaxed))
    }
}

/// State shared by the handle and its tasks.
pub(crate) struct Inner {
    /// The settings this store was opened with.
    cfg: SharedConfig,
    /// The live state.
    live: Live,
    /// The history.
    history: History,
    /// Readiness flags.
    health: Arc<Health>,
    /// Placements on their way to the placement script (the batcher).
    placer: mpsc::Sender<batcher::Request>,
    /// Requests to this instance's history writer.
    writer: mpsc::Sender<writer::Cmd>,
    /// Woken when a history write finds another placement under its seq.
    diverged: Arc<Notify>,
    /// Epoch and seq of the latest `snapshot()`, where the feed starts when it is taken.
    snapshot_mark: Mutex<Option<(u64, Seq)>>,
    /// `place` calls between their checks and their answer, so `close` can wait for them.
    in_flight: AtomicUsize,
}

impl Inner {
    /// The live board, seq and epoch; waits for a rebuild if the state is missing.
    async fn live_snapshot(&self) -> Result<live::LiveSnapshot, StoreError> {
        let deadline = Instant::now() + self.cfg.rebuild_wait;
        loop {
            match self.live.snapshot().await {
                Ok(Some(s)) => {
                    self.health.redis_ok.store(true, Ordering::Relaxed);
                    return Ok(s);
                }
                Ok(None) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    recovery::ensure_state(self, left).await?;
                }
                Err(e) => {
                    self.health.redis_ok.store(false, Ordering::Relaxed);
                    return Err(e.into());
                }
            }
        }
    }
}

/// Handle to the shared store.
pub struct SharedStore {
    /// Everything the tasks share.
    inner: Arc<Inner>,
    /// Starts the feed task; taken by `take_feed`.
    feed_start: Mutex<Option<oneshot::Sender<feed::Start>>>,
    /// The writer, awaited on close.
    writer: Mutex<Option<JoinHandle<()>>>,
    /// The feed and maintenance tasks, aborted on close and drop.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl SharedStore {
    /// Connects to Redis and PostgreSQL, applies migrations, rebuilds the Redis state from
    /// the history if it is missing, reconciles once and starts this instance's tasks.
    ///
    /// Fails with [`StoreError::Connect`], naming the service and its URL, if either is
    /// unreachable; fails with [`StoreError::Config`] if either holds a board of another
    /// shape.
    pub async fn open(cfg: SharedConfig) -> Result<Self, StoreError> {
        if cfg.key_prefix.is_empty() {
            return Err(StoreError::Config(
                "the Redis key prefix must not be empty".into(),
            ));
        }
        let live = Live::connect(
            &cfg.redis_url,
            cfg.redis_timeout,
            &cfg.key_prefix,
            cfg.dims,
            cfg.depth,
            cfg.policy,
            cfg.idempotency_window,
            cfg.stream_capacity,
        )
        .await?;
        let history = History::connect(
            &cfg.postgres_url,
            cfg.pg_pool_size,
            cfg.dims,
            cfg.depth,
            cfg.database_timeout,
        )
        .await?;
        let expected = cfg.depth.bytes_for(cfg.dims.pixels());
        let status = live.status().await?;
        let durable = backlog::durable(&live).await?;
        if status.board_len != 0 && status.board_len != expected {
            return Err(StoreError::Config(format!(
                "the Redis key {} holds {} bytes, but a {}x{} board at {} bits per pixel needs \
                 {expected}; start with the same size and palette depth, or use another key prefix",
                live.keys.board,
                status.board_len,
                cfg.dims.width(),
                cfg.dims.height(),
                cfg.depth.bits()
            )));
        }
        let health = Arc::new(Health {
            redis_ok: AtomicBool::new(true),
            history_ok: AtomicBool::new(true),
            rebuilding_here: AtomicBool::new(false),
            rebuilding_elsewhere: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            redis_durable: AtomicBool::new(durable),
            seq_seen: AtomicU64::new(0),
            durable_seen: AtomicU64::new(0),
        });
        let diverged = Arc::new(Notify::new());
        let (writer_tx, writer_rx) = mpsc::channel(TASK_QUEUE);
        let (placer_tx, placer_rx) = mpsc::channel(TASK_QUEUE);
        let batcher = tokio::spawn(batcher::run(live.clone(), placer_rx));
        tracing::info!(
            durable,
            "Redis is {}durable on its own: placements {} while PostgreSQL is away",
            if durable { "" } else { "not " },
            if durable {
                "are buffered in Redis"
            } else {
                "answer 503"
            }
        );
        let writer = writer::Writer {
            history: history.clone(),
            health: health.clone(),
            diverged: diverged.clone(),
            retry_for: cfg.ack_timeout,
        };
        let inner = Arc::new(Inner {
            cfg,
            live,
            history,
            health,
            placer: placer_tx,
            writer: writer_tx,
            diverged,
            snapshot_mark: Mutex::new(None),
            in_flight: AtomicUsize::new(0),
        });
        // Another instance may be rebuilding a large board right now: wait longer than a
        // placement would.
        let wait = inner.cfg.rebuild_wait.max(Duration::from_secs(60));
        recovery::ensure_state(&inner, wait).await?;
        // Placements that an instance made just before dying are saved now, whatever
        // their age.
        if let Err(e) = recovery::reconcile_locked(&inner, Duration::ZERO).await {
            tracing::warn!(error = %crate::Chain(&e), "reconciling at start failed; the maintenance task will retry");
        }
        let writer = tokio::spawn(writer.run(writer_rx));
        let (start_tx, start_rx) = oneshot::channel();
        let tasks = vec![
            batcher,
            tokio::spawn(feed::run(inner.clone(), start_rx)),
            tokio::spawn(recovery::maintain(inner.clone())),
            tokio::spawn(probe::run(inner.clone())),
        ];
        tracing::info!(
            prefix = %inner.cfg.key_prefix,
            redis = %redact(&inner.cfg.redis_url),
            postgres = %redact(&inner.cfg.postgres_url),
            "shared store open"
        );
        Ok(Self {
            inner,
            feed_start: Mutex::new(Some(start_tx)),
            writer: Mutex::new(Some(writer)),
            tasks: Mutex::new(tasks),
        })
    }

    /// Runs the placement script only, without the history write, as an instance that
    /// dies right after it would. For tests of the reconciler.
    #[doc(hidden)]
    pub async fn place_without_history(&self, p: NewPlacement) -> Result<Placed, PlaceError> {
        match self.inner.live.place(&p).await {
            Ok(PlaceOutcome::Accepted {
                seq,
                at_ms,
                next_at_ms,
                ..
            }) => Ok(Placed {
                seq,
                at_ms,
                next_at_ms,
                replayed: false,
            }),
            Ok(_) => Err(PlaceError::Unavailable(BackendError::Corrupt(
                "the placement was not accepted".into(),
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs the placement script once for `p` against the Redis at `redis_url`, with no
    /// PostgreSQL and no history write, and returns what it decided (a repeat of an
    /// idempotency key as `Placed { replayed: true, .. }`). For the policy vector tests,
    /// which set the Redis keys to a prior state first.
    #[doc(hidden)]
    pub async fn run_place_script(
        redis_url: &str,
        key_prefix: &str,
        dims: Dimensions,
        depth: Depth,
        policy: Params,
        p: NewPlacement,
    ) -> Result<Placed, PlaceError> {
        let live = Live::connect(
            redis_url,
            Duration::from_secs(5),
            key_prefix,
            dims,
            depth,
            policy,
            Duration::from_secs(600),
            1000,
        )
        .await
        .map_err(|e| PlaceError::Unavailable(e.into()))?;
        match live.place(&p).await {
            Ok(PlaceOutcome::Accepted {
                seq,
                at_ms,
                next_at_ms,
                ..
            }) => Ok(Placed {
                seq,
                at_ms,
                next_at_ms,
                replayed: false,
            }),
            Ok(PlaceOutcome::Replayed {
                seq,
                at_ms,
                next_at_ms,
            }) => Ok(Placed {
                seq,
                at_ms,
                next_at_ms,
                replayed: true,
            }),
            Ok(PlaceOutcome::Cooldown { next_at_ms }) => Err(PlaceError::Cooldown { next_at_ms }),
            Ok(PlaceOutcome::RateLimited { retry_after_ms }) => {
                Err(PlaceError::RateLimited { retry_after_ms })
            }
            Ok(PlaceOutcome::Missing) => Err(BackendError::Rebuilding.into()),
            Err(e) => Err(BackendError::redis(e).into()),
        }
    }

    /// Runs one reconcile pass now, ignoring the grace period. For tests and tools.
    #[doc(hidden)]
    pub async fn reconcile_now(&self) -> Result<(), StoreError> {
        recovery::reconcile_locked(&self.inner, Duration::ZERO).await
    }

    /// Whether a placement may be acknowledged from Redis alone now: Redis is durable
    /// and the backlog has room. The error says why not.
    fn may_buffer(&self) -> Result<(), BackendError> {
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

    async fn place_inner(&self, p: NewPlacement) -> Result<Placed, PlaceError> {
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
        let (seq, at_ms, next_at_ms, epoch) = match outcome {
            PlaceOutcome::Accepted {
                seq,
                at_ms,
                next_at_ms,
                epoch,
            } => (seq, at_ms, next_at_ms, epoch),
            PlaceOutcome::Cooldown { next_at_ms } => {
                return Err(PlaceError::Cooldown { next_at_ms });
            }
            PlaceOutcome::RateLimited { retry_after_ms } => {
                return Err(PlaceError::RateLimited { retry_after_ms });
            }
            PlaceOutcome::Replayed {
                seq,
                at_ms,
                next_at_ms,
            } => {
                let placed = Placed {
                    seq,
                    at_ms,
                    next_at_ms,
                    replayed: true,
                };
                return idempotency::confirm(inner, &p, placed).await;
            }
            PlaceOutcome::Missing => unreachable!("the loop retries it"),
        };
        inner.health.seq_seen.fetch_max(seq.0, Ordering::Relaxed);
        let placed = Placed {
            seq,
            at_ms,
            next_at_ms,
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
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Store for SharedStore {
    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let s = self.inner.live_snapshot().await?;
        let cfg = &self.inner.cfg;
        let board = Board::from_bytes(cfg.dims, cfg.depth, s.board)
            .map_err(|e| BackendError::Corrupt(format!("the Redis board key: {e}")))?;
        *self.inner.snapshot_mark.lock().expect("snapshot mark") = Some((s.epoch, s.seq));
        Ok(Snapshot { seq: s.seq, board })
    }

    async fn place(&self, p: NewPlacement) -> Result<Placed, PlaceError> {
        self.inner.in_flight.fetch_add(1, Ordering::AcqRel);
        let _guard = InFlight(&self.inner.in_flight);
        if self.inner.health.closed.load(Ordering::Acquire) {
            return Err(PlaceError::ShuttingDown);
        }
        let started = Instant::now();
        let res = self.place_inner(p).await;
        let outcome = match &res {
            Ok(p) if p.replayed => "replayed",
            Ok(_) => "accepted",
            Err(PlaceError::Cooldown { .. }) => "cooldown",
            Err(PlaceError::RateLimited { .. }) => "rate_limited",
            Err(PlaceError::ShuttingDown) => "shutting_down",
            Err(PlaceError::Unavailable(_)) => "unavailable",
        };
        metrics::histogram!("rplace_store_place_seconds", "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        res
    }

    fn take_feed(&self) -> Option<mpsc::Receiver<FeedEvent>> {
        let start = self.feed_start.lock().expect("feed start").take()?;
        let (tx, rx) = crate::feed_queue::channel(crate::FEED_CAPACITY);
        let from = *self.inner.snapshot_mark.lock().expect("snapshot mark");
        // If the feed task is gone (closed store), the receiver simply ends.
        let _ = start.send(feed::Start { tx, from });
        Some(rx)
    }

    async fn updates_since(&self, since: Seq, limit: usize) -> Result<Vec<Placement>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let inner = &self.inner;
        let deadline = Instant::now() + inner.cfg.rebuild_wait;
        loop {
            let page = inner.live.read_after(since, limit).await?;
            if page.epoch.is_none() {
                let left = deadline.saturating_duration_since(Instant::now());
                recovery::ensure_state(inner, left).await?;
                continue;
            }
            if since >= page.seq {
                return Ok(Vec::new());
            }
            return match page.entries.first() {
                Some(first) if first.seq == since.next() => Ok(page.entries),
                first => Err(StoreError::Gone {
                    since,
                    oldest: Seq(first.map(|p| p.seq.0 - 1).unwrap_or(page.seq.0)),
                }),
            };
        }
    }

    async fn pixel_history(
        &self,
        coord: Coord,
        limit: usize,
    ) -> Result<Vec<Placement>, StoreError> {
        self.inner.history.pixel_history(coord, limit).await
    }

    async fn next_allowed(&self, user: UserId) -> Result<Option<i64>, StoreError> {
        Ok(self.inner.live.next_allowed(user).await?)
    }

    fn is_ready(&self) -> bool {
        let h = &self.inner.health;
        !h.closed.load(Ordering::Relaxed)
            && h.redis_ok.load(Ordering::Relaxed)
            && (h.history_ok.load(Ordering::Relaxed) || self.may_buffer().is_ok())
            && !h.rebuilding_here.load(Ordering::Relaxed)
            && !h.rebuilding_elsewhere.load(Ordering::Relaxed)
    }

    async fn close(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        inner.health.closed.store(true, Ordering::Release);
        // Let placements that passed the check reach the writer.
        let deadline = Instant::now() + inner.cfg.ack_timeout;
        while inner.in_flight.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (tx, rx) = oneshot::channel();
        if inner.writer.send(writer::Cmd::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
        let writer = self.writer.lock().expect("writer").take();
        if let Some(w) = writer {
            let _ = w.await;
        }
        for t in self.tasks.lock().expect("tasks").drain(..) {
            t.abort();
        }
        Ok(())
    }
}

impl Drop for SharedStore {
    fn drop(&mut self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            for t in tasks.drain(..) {
                t.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/rplace"),
            "postgres://app:***@db:5432/rplace"
        );
        assert_eq!(
            redact("redis://:pw@cache:6379/0"),
            "redis://:***@cache:6379/0"
        );
        assert_eq!(redact("redis://cache:6379/"), "redis://cache:6379/");
        assert_eq!(
            redact("host=db user=app password=s3cret"),
            "host=db user=app password=***"
        );
    }
}
