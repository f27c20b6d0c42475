//! Wiring: open the store, start the hub, serve the routes, drain on shutdown.

use crate::board_cache::BoardCache;
use crate::config::{Config, ConfigError, Settings};
use crate::hub::Hub;
use crate::supervise::LivePath;
use crate::ws_runtime::WsRuntime;
use axum::extract::FromRef;
use axum_extra::extract::cookie::Key;
use metrics_exporter_prometheus::PrometheusHandle;
use rplace_store::{
    Backend, BackendError, EmbeddedConfig, EmbeddedStore, SharedConfig, SharedStore, Store,
    StoreError,
};
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long requests in flight when the drain ends may take to finish.
const IN_FLIGHT_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("cookie key: {0}")]
    CookieKey(std::io::Error),
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
    /// The hub or the store's feed died: live updates stopped, so the process must be
    /// restarted (see `crate::supervise`).
    #[error("live updates stopped: {0}")]
    LivePath(String),
}

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    /// Parsed configuration. The canvas's size here is the configured one: the current
    /// size (it may grow) is [`crate::hub::Hub::dims`].
    pub settings: Settings,
    /// Raw configuration, for settings used as they are (limits, tokens).
    pub config: Config,
    /// The storage backend chosen at start.
    pub store: Arc<Backend>,
    /// Tile cache, recent log, current canvas size and fan-out.
    pub hub: Arc<Hub>,
    /// Board versions for `GET /api/board`.
    pub boards: BoardCache,
    /// The overview pyramid, `GET /api/tiles/{z}/{tx}/{ty}.png`.
    pub overviews: crate::overview::Overviews,
    /// Signs identity cookies.
    pub key: Key,
    /// Set when shutdown begins: readiness fails; everything else works until the drain
    /// period ends.
    pub draining: AtomicBool,
    /// Cancelled when websockets must close (after the drain period).
    pub stop: CancellationToken,
    /// Websocket tasks, awaited on shutdown so their close frames are sent.
    pub ws_tasks: TaskTracker,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Board bodies sent with `sendfile`, shared with every connection's socket.
    pub bodies: crate::zerocopy::Bodies,
    /// Open websockets per client address, for `--max-websockets-per-ip`.
    pub ws_per_ip: crate::serve::per_ip::PerIp,
    /// Whether the hub and the feed still run; readiness fails once they do not.
    pub live_path: Arc<LivePath>,
    /// Where websocket tasks run, apart from request handling.
    pub ws_runtime: WsRuntime,
    /// Proof of work and captcha: their keys, clients and counters.
    pub antibot: crate::antibot::Antibot,
    /// Accounts: providers, settings, session cache.
    pub auth: crate::auth::Auth,
    /// The dataset export's pseudonym key and concurrency cap.
    pub exports: crate::export::Exports,
    /// Presence across the fleet, and the cached counts (`crate::stats`).
    pub presence: crate::stats::Presence,
    /// Past reads' concurrency cap and replay bound.
    pub past: crate::past::PastReads,
    /// Timelapse jobs, their queue and their files.
    pub timelapses: crate::timelapse::jobs::Jobs,
    /// The overlays' served activity bodies (`crate::activity`).
    pub activity: crate::activity::ActivityBodies,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl FromRef<AppState> for Key {
    fn from_ref(s: &AppState) -> Key {
        s.key.clone()
    }
}

impl AppState {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

/// Opens the backend that the configuration asks for.
async fn open_store(config: &Config, settings: &Settings) -> Result<Backend, RunError> {
    if let (Some(redis), Some(pg)) = (&config.redis_url, &config.database_url) {
        let mut cfg = SharedConfig::new(
            redis.clone(),
            pg.clone(),
            settings.dims,
            settings.palette.depth(),
            settings.policy,
        );
        cfg.idempotency_window = settings.idempotency_window;
        cfg.key_prefix = config.redis_prefix.clone();
        cfg.redis_cluster = config.redis_cluster;
        cfg.snapshot_every = config.snapshot_every;
        cfg.stream_capacity = config.updates_log as u64;
        cfg.redis_timeout = settings.redis_timeout;
        cfg.database_timeout = settings.database_timeout;
        // Time for one commit and a retry, not more: then 503 (or, with a durable Redis,
        // an acknowledgement from Redis).
        cfg.ack_timeout = settings.database_timeout + std::time::Duration::from_secs(1);
        cfg.backlog_limit = config.redis_backlog;
        return Ok(Backend::Shared(SharedStore::open(cfg).await?));
    }
    let cfg = EmbeddedConfig {
        data_dir: config.data_dir.clone(),
        dims: settings.dims,
        depth: settings.palette.depth(),
        policy: settings.policy,
        idempotency_window: settings.idempotency_window,
        sync: settings.sync,
        snapshot_every: config.snapshot_every,
        max_catchup: config.updates_log as u64,
        tile_cache: config.tile_cache,
    };
    let store = tokio::task::spawn_blocking(move || EmbeddedStore::open(cfg))
        .await
        .map_err(|_| StoreError::Backend(BackendError::Stopped("opening task")))??;
    Ok(Backend::Embedded(store))
}

/// Serves the canvas on `listener` until `shutdown` resolves, then drains: readiness
/// fails, websockets close with 1001 after the drain period, in-flight requests finish,
/// and the store flushes. Returns once everything is durable.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let settings = config.settings()?;
    let auth = crate::auth::Auth::new(config.auth.settings()?);
    if !auth.settings.providers.is_empty() && config.public_url.is_none() {
        tracing::warn!(
            "OpenID Connect providers without --public-url: login redirect URIs use the \
             request's Host over http, which suits local use only"
        );
    }
    let metrics = crate::telemetry::metrics();
    let key = crate::identity::load_key(settings.cookie_key.as_deref(), &config.data_dir)
        .map_err(RunError::CookieKey)?;
    let antibot = crate::antibot::Antibot::new(&config, key.master())?;
    let exports = crate::export::Exports::new(key.master(), config.export_concurrency);
    let timelapses = config.timelapse.jobs(&config)?;
    let store = Arc::new(open_store(&config, &settings).await?);
    let ws_runtime = WsRuntime::new(settings.ws.threads, settings.ws.nice)?;
    let live = start_live_path(&store, &config, &settings, &ws_runtime).await?;
    let hub = live.hub.clone();
    let state = AppState(Arc::new(Inner {
        boards: BoardCache::new(settings.board_ttl),
        overviews: crate::overview::Overviews::new(config.tile_cache, settings.board_ttl),
        settings,
        config: config.clone(),
        store: store.clone(),
        hub,
        key,
        draining: AtomicBool::new(false),
        stop: CancellationToken::new(),
        ws_tasks: TaskTracker::new(),
        metrics,
        bodies: crate::zerocopy::Bodies::new(config.sendfile),
        ws_per_ip: crate::serve::per_ip::PerIp::new(config.max_websockets_per_ip),
        live_path: live.health.clone(),
        ws_runtime,
        antibot,
        auth,
        exports,
        presence: crate::stats::Presence::default(),
        past: crate::past::PastReads::new(
            config.history_concurrency as usize,
            config.history_keyframe_every,
        ),
        timelapses,
        activity: crate::activity::ActivityBodies::default(),
    }));
    let counting = crate::stats::spawn(state.clone());
    let activity = crate::activity::spawn(state.clone());
    let keyframer = spawn_keyframer(&store, config.history_keyframe_every);
    let addr = listener.local_addr()?;
    tracing::info!(
        addr = %format!("http://{addr}"),
        width = state.hub.dims().width(),
        height = state.hub.dims().height(),
        seq = state.hub.seq().0,
        "rplace listening"
    );

    let metrics_listener = crate::routes::ops::spawn_metrics_listener(&state).await?;
    let router = crate::routes::router(state.clone());
    let drain_state = state.clone();
    // During the drain only readiness fails, so that the load balancer moves traffic away
    // while every request it still sends here succeeds; then the listener closes and
    // websockets get 1001. A dead live path starts the same drain (readiness already
    // fails), so that the process exits and is restarted.
    let stop_accepting = async move {
        tokio::select! {
            _ = shutdown => {}
            _ = drain_state.live_path.failed() => {}
        }
        drain_state.draining.store(true, Ordering::Release);
        tracing::info!(drain = ?drain_state.settings.drain, "draining: readiness now fails");
        tokio::time::sleep(drain_state.settings.drain).await;
        drain_state.stop.cancel();
    };
    let opts = crate::serve::Options {
        header_timeout: state.settings.header_timeout,
        send_timeout: state.settings.send_timeout,
        max_buf: crate::serve::MAX_BUF,
        per_ip: crate::serve::per_ip::PerIp::new(config.max_connections_per_ip),
        trusted: state.settings.trusted_proxies.clone(),
        proxy_protocol: config.proxy_protocol,
    };
    crate::serve::serve(
        listener,
        router,
        opts,
        state.bodies.clone(),
        stop_accepting,
        IN_FLIGHT_GRACE,
    )
    .await;

    // Upgraded websockets are not tracked by the HTTP server; wait for their close frames.
    state.stop.cancel();
    state.ws_tasks.close();
    if tokio::time::timeout(std::time::Duration::from_secs(5), state.ws_tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("some websockets did not close within 5 s");
    }
    if let Some(t) = metrics_listener {
        let _ = t.await;
    }
    // Ends with the websockets (`stop`); a count in progress is one short transaction.
    let _ = counting.await;
    let _ = activity.await;
    live.health.expect_end();
    keyframer.0.cancel();
    let _ = keyframer.1.await;
    store.close().await?;
    live.stop.cancel();
    let _ = live.watcher.await;
    // After the hub, which runs there too.
    state.ws_runtime.shutdown();
    if let Some(reason) = live.health.reason() {
        return Err(RunError::LivePath(reason));
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// The hub, its stop switch and the task that watches it.
struct LiveTasks {
    /// The hub, shared with the handlers.
    hub: Arc<Hub>,
    /// Whether the hub (and through it the feed) still runs.
    health: Arc<LivePath>,
    /// Stops the hub once the store is closed.
    stop: CancellationToken,
    /// The watcher; done once the hub is.
    watcher: tokio::task::JoinHandle<()>,
}

/// Learns the store's head and size, takes the store's feed and starts the hub on it,
/// watched by `crate::supervise`. Tiles are read as they are asked for.
async fn start_live_path(
    store: &Arc<Backend>,
    config: &Config,
    settings: &Settings,
    ws_runtime: &WsRuntime,
) -> Result<LiveTasks, RunError> {
    // A tile read says the head it is consistent with: the hub starts there, and the
    // feed's placements after it follow.
    let head = store
        .tile(rplace_domain::TileId::new_unchecked(0, 0))
        .await?
        .through;
    let feed = store
        .take_feed()
        .ok_or(StoreError::Backend(BackendError::Stopped("feed")))?;
    let hub = Hub::new(
        store.clone(),
        head,
        store.dims(),
        settings.palette.depth(),
        crate::hub::HubOptions {
            log_cap: config.updates_log,
            client_queue: config.client_queue,
            min_tick: settings.tick,
            max_frame_rate: config.max_frame_rate,
            tile_cache: config.tile_cache,
            ttl: settings.board_ttl,
        },
    );
    let stop = CancellationToken::new();
    // On the websocket runtime: the hub's broadcast then wakes the websocket tasks on
    // their own threads' queues instead of pushing 15k wake-ups across runtimes.
    let hub_task = ws_runtime
        .handle()
        .spawn(hub.clone().run(feed, stop.child_token()));
    let health = Arc::new(LivePath::default());
    let watcher = health.watch(hub_task);
    Ok(LiveTasks {
        hub,
        health,
        stop,
        watcher,
    })
}

/// Starts the keyframer of the past canvas (`rplace_store::past`); cancel the token and
/// await the task before the store closes.
fn spawn_keyframer(
    store: &Arc<Backend>,
    every: u64,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let (s, token) = (store.clone(), stop.clone());
    let task = tokio::spawn(async move {
        rplace_store::past::run_keyframer(&*s, every, token.cancelled_owned()).await
    });
    (stop, task)
}
